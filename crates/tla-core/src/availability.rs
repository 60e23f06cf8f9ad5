//! Which versions may be served to each segment: the allowed space minus retired
//! options and minus what a segment's pins rule out.
//!
//! A campaign's spec can retire an option (`retired = true`: never served again) and
//! pin options for a segment (`[[pins]]`: only that option of its component is served
//! to the segment; pinning every component pins one version, "stop and ship"). Both
//! reduce to one rule per segment and component: which options are *kept*. A version
//! is available to a segment when no exclusion removes it and each of its options is
//! kept for that segment.
//!
//! [`Availability`] holds that rule with what the policy needs to keep propensities
//! exact: each segment's number of available versions (counted exactly with
//! [`VersionSpace::allowed_within`]), the options the factorized sampler must never
//! choose, and a uniform draw over a segment's available versions for the exploration
//! floor. A segment whose every option is kept draws exactly as the plain space does
//! ([`VersionSpace::sample_uniform`], the same random numbers), so a campaign without
//! retirements or pins decides as it did before either existed.

use crate::space::{OptionRef, SpaceError, VersionSpace};
use rand::Rng;

/// Why an availability rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvailabilityError {
    /// The rule does not have one entry per segment, component and option.
    #[error(
        "the availability rule has the wrong shape: {0}; give one entry per segment, component and option"
    )]
    Shape(String),
    /// A segment is left without any version to serve.
    #[error(
        "segment {segment} has no version left to serve: every allowed version holds a retired or unpinned option"
    )]
    NothingLeft {
        /// Position of the segment.
        segment: usize,
    },
    /// Counting the available versions under the exclusions is too costly.
    #[error("{0}")]
    Space(#[from] SpaceError),
}

/// The versions each segment may be served (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// `keep[segment][component][option]`: whether the option may be served to the
    /// segment.
    keep: Vec<Vec<Vec<bool>>>,
    /// Per segment and component, the kept options in increasing order (the uniform
    /// draw picks among them).
    kept_options: Vec<Vec<Vec<u32>>>,
    /// Per segment, the options not kept (the sampler scores them `-inf`).
    unavailable: Vec<Vec<OptionRef>>,
    /// Per segment, the number of available versions (at least 1).
    counts: Vec<u64>,
}

impl Availability {
    /// Every allowed version available to each of `segments` segments.
    pub fn everything(space: &VersionSpace, segments: usize) -> Self {
        let keep: Vec<Vec<bool>> = space
            .option_counts()
            .iter()
            .map(|&n| vec![true; n as usize])
            .collect();
        let kept: Vec<Vec<u32>> = space
            .option_counts()
            .iter()
            .map(|&n| (0..n).collect())
            .collect();
        Self {
            keep: vec![keep; segments],
            kept_options: vec![kept; segments],
            unavailable: vec![Vec::new(); segments],
            counts: vec![space.allowed_count(); segments],
        }
    }

    /// The rule `keep[segment][component][option]` over `space`, with each segment's
    /// available versions counted exactly. Refused when a segment keeps no allowed
    /// version.
    pub fn new(space: &VersionSpace, keep: Vec<Vec<Vec<bool>>>) -> Result<Self, AvailabilityError> {
        let mut kept_options = Vec::with_capacity(keep.len());
        let mut unavailable = Vec::with_capacity(keep.len());
        let mut counts = Vec::with_capacity(keep.len());
        for (segment, rule) in keep.iter().enumerate() {
            if rule.len() != space.components() {
                return Err(AvailabilityError::Shape(format!(
                    "segment {segment} has {} components, the space {}",
                    rule.len(),
                    space.components()
                )));
            }
            let mut kept = Vec::with_capacity(rule.len());
            let mut missing = Vec::new();
            for (component, options) in rule.iter().enumerate() {
                if options.len() != space.option_count(component) as usize {
                    return Err(AvailabilityError::Shape(format!(
                        "segment {segment}, component {component} has {} options, the space {}",
                        options.len(),
                        space.option_count(component)
                    )));
                }
                kept.push(
                    (0..options.len() as u32)
                        .filter(|&o| options[o as usize])
                        .collect::<Vec<u32>>(),
                );
                missing.extend(
                    (0..options.len() as u32)
                        .filter(|&o| !options[o as usize])
                        .map(|option| OptionRef { component, option }),
                );
            }
            let count = if missing.is_empty() {
                space.allowed_count()
            } else {
                space.allowed_within(rule)?
            };
            if count == 0 {
                return Err(AvailabilityError::NothingLeft { segment });
            }
            kept_options.push(kept);
            unavailable.push(missing);
            counts.push(count);
        }
        Ok(Self {
            keep,
            kept_options,
            unavailable,
            counts,
        })
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.counts.len()
    }

    /// Whether every allowed version is available to `segment`.
    pub fn is_unrestricted(&self, segment: usize) -> bool {
        self.unavailable[segment].is_empty()
    }

    /// Whether every allowed version is available to every segment.
    pub fn is_everything(&self) -> bool {
        self.unavailable.iter().all(Vec::is_empty)
    }

    /// Number of versions available to `segment` (at least 1).
    pub fn count(&self, segment: usize) -> u64 {
        self.counts[segment]
    }

    /// Whether option `option` of `component` may be served to `segment`.
    pub fn is_option_available(&self, segment: usize, component: usize, option: u32) -> bool {
        self.keep[segment][component][option as usize]
    }

    /// `keep[component][option]` of `segment`.
    pub fn keep(&self, segment: usize) -> &[Vec<bool>] {
        &self.keep[segment]
    }

    /// The options never served to `segment`.
    pub fn unavailable(&self, segment: usize) -> &[OptionRef] {
        &self.unavailable[segment]
    }

    /// Whether version `version` exists in `space`, no exclusion removes it and each of
    /// its options may be served to `segment`.
    pub fn is_available(&self, space: &VersionSpace, segment: usize, version: u64) -> bool {
        if !space.is_allowed(version) {
            return false;
        }
        self.is_unrestricted(segment)
            || self.unavailable[segment]
                .iter()
                .all(|r| space.option_of(version, r.component) != r.option)
    }

    /// A version drawn uniformly from those available to `segment`: each component's
    /// option uniformly among the kept ones, redrawn until no exclusion removes the
    /// version (exactly uniform over the available versions). An unrestricted segment
    /// draws with [`VersionSpace::sample_uniform`].
    pub fn sample_uniform<R: Rng + ?Sized>(
        &self,
        space: &VersionSpace,
        segment: usize,
        rng: &mut R,
    ) -> u64 {
        if self.is_unrestricted(segment) {
            return space.sample_uniform(rng);
        }
        let kept = &self.kept_options[segment];
        let mut options = vec![0u32; kept.len()];
        loop {
            for (slot, choices) in options.iter_mut().zip(kept) {
                *slot = choices[rng.random_range(0..choices.len())];
            }
            if space.is_allowed_options(&options) {
                return space.encode(&options);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Exclusion;
    use rand::SeedableRng;

    #[test]
    fn counts_and_draws_cover_exactly_the_available_versions() {
        let exclusion = Exclusion {
            first: OptionRef {
                component: 0,
                option: 0,
            },
            second: OptionRef {
                component: 1,
                option: 1,
            },
        };
        let space = VersionSpace::new(vec![3, 3], vec![exclusion]).unwrap();
        // Segment 0: option 2 of component 0 retired; segment 1: component 1 pinned to 1.
        let keep = vec![
            vec![vec![true, true, false], vec![true; 3]],
            vec![vec![true, true, false], vec![false, true, false]],
        ];
        let availability = Availability::new(&space, keep).unwrap();
        for segment in 0..2 {
            let available: Vec<u64> = (0..space.total())
                .filter(|&v| availability.is_available(&space, segment, v))
                .collect();
            assert_eq!(availability.count(segment), available.len() as u64);
            let mut rng = rand::rngs::StdRng::seed_from_u64(segment as u64);
            for _ in 0..200 {
                let v = availability.sample_uniform(&space, segment, &mut rng);
                assert!(available.contains(&v));
            }
        }
        assert_eq!(availability.count(1), 1);
        assert_eq!(
            Availability::new(
                &space,
                vec![vec![vec![true, false, false], vec![false, true, false]]]
            ),
            Err(AvailabilityError::NothingLeft { segment: 0 })
        );
    }
}
