//! Revisions: a running campaign takes a new spec without losing what it learned.
//!
//! A [`Revision`] relates two validated specs of one campaign, the one in force and the
//! next. Components must stay the same, in the same order (a version index is a
//! mixed-radix number over them); options and segments are matched by *name*, so an
//! option may be added anywhere in its component's list, and one that never received
//! an event may be removed. The objective, the ask-carrying component and the holdout
//! share stay, and an ask option keeps its amount. Everything else may change: texts, assets, exclusions,
//! shares, the floor, the cadence, `retired` flags and `[[pins]]`.
//!
//! The revision maps what the engine holds from the old indices to the new ones: an
//! option ([`Revision::map_options`]), a segment ([`Revision::map_segment`]), a version
//! ([`Revision::map_version`], which is how an event for a decision of an older
//! revision teaches the right options), and every weight of the conversion model
//! ([`Revision::conversion_feature_map`]) and of the value model. New options and
//! segments join at their prior. [`crate::engine::Engine::revise`] applies it.
//!
//! ```
//! use tla_core::revision::Revision;
//! use tla_core::spec::CampaignSpec;
//!
//! let v1 = CampaignSpec::from_toml_str(r#"
//! version = 1
//! name = "demo"
//! objective = "conversions"
//! segments = [{ name = "everyone" }]
//! [[components]]
//! name = "headline"
//! options = [{ name = "river", text = "Save the river" }, { name = "trees", text = "Plant trees" }]
//! "#).unwrap().validate().unwrap();
//! let v2 = CampaignSpec::from_toml_str(r#"
//! version = 1
//! name = "demo"
//! objective = "conversions"
//! segments = [{ name = "everyone" }]
//! [[components]]
//! name = "headline"
//! options = [{ name = "bees", text = "Save the bees" }, { name = "river", text = "Save the river" }, { name = "trees", text = "Plant trees", retired = true }]
//! "#).unwrap().validate().unwrap();
//! let revision = Revision::between(&v1, &v2).unwrap();
//! assert_eq!(revision.map_version(0), Some(1)); // "river" moved from 0 to 1
//! assert!(revision.removed_options().is_empty());
//! assert_eq!(revision.added_options().len(), 1);
//! ```

use crate::design::Design;
use crate::model::conversion::FeatureLayout;
use crate::space::{OptionRef, VersionSpace};
use crate::spec::Campaign;
use std::collections::HashMap;

/// Why a new spec cannot revise a running campaign. Each message names the field and
/// says what a revision accepts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RevisionError {
    /// Components added, removed, renamed or reordered.
    #[error("components: {problem}")]
    Components {
        /// What changed and what is accepted.
        problem: String,
    },
    /// The objective changed.
    #[error(
        "objective: changed from {from:?} to {to:?}; a revision keeps the campaign's objective (start a new campaign to optimize another)"
    )]
    Objective {
        /// The objective in force.
        from: &'static str,
        /// The objective asked for.
        to: &'static str,
    },
    /// The ask-carrying component changed, or an ask option's amount did.
    #[error("{field}: {problem}")]
    Ask {
        /// Path of the field at fault.
        field: String,
        /// What changed and what is accepted.
        problem: String,
    },
    /// The holdout share changed.
    #[error(
        "holdout: changed from {from} to {to}; a revision keeps the campaign's holdout share, so that every look compares the same two arms (start a new campaign for another share)"
    )]
    Holdout {
        /// The share in force.
        from: f64,
        /// The share asked for.
        to: f64,
    },
    /// An option that received events was removed from the spec.
    #[error(
        "{field}: option {name:?} has {events} events and cannot be removed; retire it instead: keep it in the spec with `retired = true`"
    )]
    OptionHasEvents {
        /// Path of the option's component, `components[k].options`.
        field: String,
        /// `component.option`.
        name: String,
        /// Events counted for the option.
        events: u64,
    },
    /// A segment that received events was removed from the spec.
    #[error(
        "segments: segment {name:?} has {events} events and cannot be removed; keep it (a small `share` sends it little traffic)"
    )]
    SegmentHasEvents {
        /// The segment's name.
        name: String,
        /// Events counted for the segment.
        events: u64,
    },
}

impl RevisionError {
    /// The path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            RevisionError::Components { .. } => "components",
            RevisionError::Objective { .. } => "objective",
            RevisionError::Holdout { .. } => "holdout",
            RevisionError::Ask { field, .. } | RevisionError::OptionHasEvents { field, .. } => {
                field
            }
            RevisionError::SegmentHasEvents { .. } => "segments",
        }
    }
}

/// What a revision changed, by name (see [`crate::engine::Engine::revise`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionSummary {
    /// The revision now in force (the first spec is revision 1).
    pub revision: u32,
    /// Options new in this revision, as `component.option`; they start at their prior.
    pub added_options: Vec<String>,
    /// Options removed from the spec (none had an event), as `component.option`.
    pub removed_options: Vec<String>,
    /// Options retired by this revision (served before, never from now on).
    pub retired_options: Vec<String>,
    /// Options a retirement no longer holds back (`retired` set back to false).
    pub restored_options: Vec<String>,
    /// Segments new in this revision.
    pub added_segments: Vec<String>,
    /// Segments removed from the spec (none had an event).
    pub removed_segments: Vec<String>,
    /// Pins in force from this revision on.
    pub pins: usize,
}

/// How the indices of one revision of a campaign map onto the next (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// The version space in force.
    old_space: VersionSpace,
    /// The next version space.
    new_space: VersionSpace,
    /// Component names, shared by both revisions.
    component_names: Vec<String>,
    /// Per component, the old options' names.
    old_option_names: Vec<Vec<String>>,
    /// Per component, the new options' names.
    new_option_names: Vec<Vec<String>>,
    /// Per component, the new position of each old option.
    option_to_new: Vec<Vec<Option<u32>>>,
    /// Per component, the old position of each new option.
    option_to_old: Vec<Vec<Option<u32>>>,
    /// Old segment names.
    old_segment_names: Vec<String>,
    /// New segment names.
    new_segment_names: Vec<String>,
    /// The new position of each old segment.
    segment_to_new: Vec<Option<usize>>,
    /// The old position of each new segment.
    segment_to_old: Vec<Option<usize>>,
    /// Old options absent from the next spec.
    removed: Vec<OptionRef>,
    /// New options absent from the spec in force.
    added: Vec<OptionRef>,
}

/// Position of each name of `from` in `to`.
fn match_names(from: &[String], to: &[String]) -> Vec<Option<usize>> {
    let positions: HashMap<&str, usize> = to
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    from.iter()
        .map(|name| positions.get(name.as_str()).copied())
        .collect()
}

impl Revision {
    /// The revision from the campaign in force, `current`, to `next`; refused when the
    /// components, the objective, the ask component, an ask amount or the holdout share
    /// changed.
    pub fn between(current: &Campaign, next: &Campaign) -> Result<Self, RevisionError> {
        if current.holdout() != next.holdout() {
            return Err(RevisionError::Holdout {
                from: current.holdout(),
                to: next.holdout(),
            });
        }
        let names = |campaign: &Campaign| -> Vec<Vec<String>> {
            campaign
                .spec()
                .components
                .iter()
                .map(|c| c.options.iter().map(|o| o.name.clone()).collect())
                .collect()
        };
        Self::between_designs(
            current.design(),
            &names(current),
            next.design(),
            &names(next),
        )
    }

    /// [`Revision::between`] for designs whose options are named by `*_option_names`
    /// (per component, in declared order): what a caller without specs (the
    /// simulator) revises with.
    ///
    /// # Panics
    /// If an option-name list does not have one name per option of its design.
    pub fn between_designs(
        current: &Design,
        current_option_names: &[Vec<String>],
        next: &Design,
        next_option_names: &[Vec<String>],
    ) -> Result<Self, RevisionError> {
        for (design, names) in [(current, current_option_names), (next, next_option_names)] {
            assert_eq!(
                names.len(),
                design.components(),
                "one name list per component"
            );
            for (k, names) in names.iter().enumerate() {
                assert_eq!(names.len(), design.space.option_count(k) as usize);
            }
        }
        check_components(&current.component_names, &next.component_names)?;
        if current.objective != next.objective {
            return Err(RevisionError::Objective {
                from: current.objective.as_str(),
                to: next.objective.as_str(),
            });
        }
        let option_to_new: Vec<Vec<Option<u32>>> = current_option_names
            .iter()
            .zip(next_option_names)
            .map(|(from, to)| {
                match_names(from, to)
                    .into_iter()
                    .map(|o| o.map(|o| o as u32))
                    .collect()
            })
            .collect();
        let option_to_old: Vec<Vec<Option<u32>>> = next_option_names
            .iter()
            .zip(current_option_names)
            .map(|(from, to)| {
                match_names(from, to)
                    .into_iter()
                    .map(|o| o.map(|o| o as u32))
                    .collect()
            })
            .collect();
        let flagged = |map: &[Vec<Option<u32>>]| -> Vec<OptionRef> {
            map.iter()
                .enumerate()
                .flat_map(|(component, options)| {
                    options
                        .iter()
                        .enumerate()
                        .filter(|(_, to)| to.is_none())
                        .map(move |(option, _)| OptionRef {
                            component,
                            option: option as u32,
                        })
                })
                .collect()
        };
        let revision = Self {
            old_space: current.space.clone(),
            new_space: next.space.clone(),
            component_names: current.component_names.clone(),
            old_option_names: current_option_names.to_vec(),
            new_option_names: next_option_names.to_vec(),
            removed: flagged(&option_to_new),
            added: flagged(&option_to_old),
            option_to_new,
            option_to_old,
            old_segment_names: current.segment_names.clone(),
            new_segment_names: next.segment_names.clone(),
            segment_to_new: match_names(&current.segment_names, &next.segment_names),
            segment_to_old: match_names(&next.segment_names, &current.segment_names),
        };
        revision.check_ask(current, next)?;
        Ok(revision)
    }

    /// The ask component stays, and each ask option both revisions hold keeps its amount.
    fn check_ask(&self, current: &Design, next: &Design) -> Result<(), RevisionError> {
        let name = |ask: &Option<crate::design::AskComponent>| {
            ask.as_ref().map_or("none".to_owned(), |a| {
                format!("{:?}", self.component_names[a.component])
            })
        };
        match (&current.ask, &next.ask) {
            (None, None) => Ok(()),
            (Some(old), Some(new)) if old.component == new.component => {
                let k = old.component;
                for (o, amount) in old.amounts.iter().enumerate() {
                    let Some(n) = self.option_to_new[k][o] else {
                        continue;
                    };
                    let new_amount = new.amounts[n as usize];
                    if new_amount != *amount {
                        return Err(RevisionError::Ask {
                            field: format!("components[{k}].options[{n}].ask"),
                            problem: format!(
                                "option {:?} asks {new_amount} where it asked {amount}; a revision keeps each option's ask (add an option with the new ask and retire this one)",
                                self.old_option_names[k][o]
                            ),
                        });
                    }
                }
                Ok(())
            }
            (old, new) => Err(RevisionError::Ask {
                field: "components".into(),
                problem: format!(
                    "the ask-carrying component is {} where it was {}; a revision keeps the component that carries the asks",
                    name(new),
                    name(old)
                ),
            }),
        }
    }

    /// The version space in force before the revision.
    pub fn old_space(&self) -> &VersionSpace {
        &self.old_space
    }

    /// The version space of the next revision.
    pub fn new_space(&self) -> &VersionSpace {
        &self.new_space
    }

    /// Writes into `out` the new position of each old option of `old` (one per
    /// component); false, leaving `out` partly written, when an option was removed.
    pub fn map_options(&self, old: &[u32], out: &mut [u32]) -> bool {
        for (k, (&o, slot)) in old.iter().zip(out.iter_mut()).enumerate() {
            match self.option_to_new[k].get(o as usize).copied().flatten() {
                Some(n) => *slot = n,
                None => return false,
            }
        }
        true
    }

    /// The new position of old option `option` of `component`, or `None` when it was
    /// removed.
    pub fn map_options_of(&self, component: usize, option: u32) -> Option<u32> {
        self.option_to_new[component]
            .get(option as usize)
            .copied()
            .flatten()
    }

    /// The new position of old segment `old`, or `None` when it was removed.
    pub fn map_segment(&self, old: usize) -> Option<usize> {
        self.segment_to_new.get(old).copied().flatten()
    }

    /// The index in the new space of old version `old`, or `None` when one of its
    /// options was removed (or `old` is outside the old space). Whether the new
    /// version is served is another matter (retired options, pins, exclusions).
    pub fn map_version(&self, old: u64) -> Option<u64> {
        if old >= self.old_space.total() {
            return None;
        }
        let options = self.old_space.decode(old);
        let mut mapped = vec![0u32; options.len()];
        self.map_options(&options, &mut mapped)
            .then(|| self.new_space.encode(&mapped))
    }

    /// What this revision from `current` to `next` changes, by name (the revision
    /// number left 0): what [`crate::engine::Engine::revise`] answers, and what a
    /// service answers again for a revision made before.
    pub fn summary(&self, current: &Campaign, next: &Campaign) -> RevisionSummary {
        let revision = self;
        let retired = |campaign: &Campaign, component: usize, option: u32| {
            campaign.spec().components[component].options[option as usize].retired
        };
        let mut summary = RevisionSummary {
            added_options: revision
                .added_options()
                .iter()
                .map(|&o| revision.new_option_name(o))
                .collect(),
            removed_options: revision
                .removed_options()
                .iter()
                .map(|&o| revision.old_option_name(o))
                .collect(),
            added_segments: revision
                .added_segments()
                .into_iter()
                .map(|s| revision.new_segment_name(s).to_owned())
                .collect(),
            removed_segments: revision
                .removed_segments()
                .into_iter()
                .map(|s| revision.old_segment_name(s).to_owned())
                .collect(),
            pins: next.spec().pins.len(),
            ..RevisionSummary::default()
        };
        let space = &next.design().space;
        for component in 0..space.components() {
            for option in 0..space.option_count(component) {
                let now = retired(next, component, option);
                let before = revision
                    .old_option(component, option)
                    .map(|old| retired(current, component, old));
                let name = || revision.new_option_name(OptionRef { component, option });
                match (before, now) {
                    (Some(false), true) | (None, true) => summary.retired_options.push(name()),
                    (Some(true), false) => summary.restored_options.push(name()),
                    _ => {}
                }
            }
        }
        summary
    }

    /// The old position of new option `option` of `component`, or `None` for a new
    /// option.
    pub fn old_option(&self, component: usize, option: u32) -> Option<u32> {
        self.option_to_old[component]
            .get(option as usize)
            .copied()
            .flatten()
    }

    /// The old position of new segment `segment`, or `None` for a new segment.
    pub fn old_segment(&self, segment: usize) -> Option<usize> {
        self.segment_to_old.get(segment).copied().flatten()
    }

    /// Old options the next spec no longer lists (old positions).
    pub fn removed_options(&self) -> &[OptionRef] {
        &self.removed
    }

    /// Options the next spec adds (new positions).
    pub fn added_options(&self) -> &[OptionRef] {
        &self.added
    }

    /// Old segments the next spec no longer lists (old positions).
    pub fn removed_segments(&self) -> Vec<usize> {
        (0..self.segment_to_new.len())
            .filter(|&s| self.segment_to_new[s].is_none())
            .collect()
    }

    /// Segments the next spec adds (new positions).
    pub fn added_segments(&self) -> Vec<usize> {
        (0..self.segment_to_old.len())
            .filter(|&s| self.segment_to_old[s].is_none())
            .collect()
    }

    /// `component.option` of an old option.
    pub fn old_option_name(&self, option: OptionRef) -> String {
        format!(
            "{}.{}",
            self.component_names[option.component],
            self.old_option_names[option.component][option.option as usize]
        )
    }

    /// `component.option` of a new option.
    pub fn new_option_name(&self, option: OptionRef) -> String {
        format!(
            "{}.{}",
            self.component_names[option.component],
            self.new_option_names[option.component][option.option as usize]
        )
    }

    /// The name of an old segment.
    pub fn old_segment_name(&self, segment: usize) -> &str {
        &self.old_segment_names[segment]
    }

    /// The name of a new segment.
    pub fn new_segment_name(&self, segment: usize) -> &str {
        &self.new_segment_names[segment]
    }

    /// For each weight of the next conversion model (`new`), the weight of the old
    /// model (`old`) it carries over from: the bias; a segment's weight from the same
    /// segment; an option's main effect from the same option; an (option, segment)
    /// weight when the component is crossed with the segment in both and both exist; a
    /// pair cell when the pair is modelled in both and both options exist. `None`
    /// keeps the prior.
    pub fn conversion_feature_map(
        &self,
        old: &FeatureLayout,
        new: &FeatureLayout,
    ) -> Vec<Option<usize>> {
        let mut map = vec![None; new.len];
        map[0] = Some(0);
        for s in 0..new.segments {
            map[new.segment_offset + s] = self.old_segment(s).map(|o| old.segment_offset + o);
        }
        for (k, &n) in new.option_counts.iter().enumerate() {
            for o in 0..n {
                let Some(from) = self.old_option(k, o as u32) else {
                    continue;
                };
                map[new.option_offset[k] + o] = Some(old.option_offset[k] + from as usize);
                if let (Some(new_offset), Some(old_offset)) = (
                    new.segment_interaction_offset[k],
                    old.segment_interaction_offset[k],
                ) {
                    for s in 0..new.segments {
                        if let Some(old_s) = self.old_segment(s) {
                            map[new_offset + s * n + o] =
                                Some(old_offset + old_s * old.option_counts[k] + from as usize);
                        }
                    }
                }
            }
        }
        for &(a, b, new_offset) in &new.pairs {
            let Some(&(_, _, old_offset)) = old.pairs.iter().find(|p| (p.0, p.1) == (a, b)) else {
                continue;
            };
            for oa in 0..new.option_counts[a] {
                let Some(from_a) = self.old_option(a, oa as u32) else {
                    continue;
                };
                for ob in 0..new.option_counts[b] {
                    let Some(from_b) = self.old_option(b, ob as u32) else {
                        continue;
                    };
                    map[new_offset + oa * new.option_counts[b] + ob] =
                        Some(old_offset + from_a as usize * old.option_counts[b] + from_b as usize);
                }
            }
        }
        map
    }
}

/// Components are matched by name and position: none added, removed, renamed or
/// moved.
fn check_components(current: &[String], next: &[String]) -> Result<(), RevisionError> {
    let kept = "a revision keeps the components, in the same order (add or retire options instead)";
    for name in next {
        if !current.contains(name) {
            return Err(RevisionError::Components {
                problem: format!("component {name:?} is new; {kept}"),
            });
        }
    }
    for name in current {
        if !next.contains(name) {
            return Err(RevisionError::Components {
                problem: format!("component {name:?} was removed; {kept}"),
            });
        }
    }
    if current != next {
        return Err(RevisionError::Components {
            problem: format!(
                "the components are in the order {} where they were in the order {}; {kept}",
                next.join(", "),
                current.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;
    use crate::engine::{Engine, Feedback};
    use crate::spec::CampaignSpec;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Revision 1: 3 headlines x 2 images x 2 calls to action, two segments.
    const V1: &str = r#"
version = 1
name = "test"
segments = [{ name = "s1" }, { name = "s2" }]

[[components]]
name = "headline"
options = [
  { name = "h1", text = "Rivers need you" },
  { name = "h2", text = "Donate to clean water" },
  { name = "h3", text = "Spring is here" },
]

[[components]]
name = "image"
options = [{ name = "i1", asset = "img/one.jpg" }, { name = "i2", asset = "img/two.jpg" }]

[[components]]
name = "cta"
options = [
  { name = "c1", text = "Donate $5", ask = 5 },
  { name = "c2", text = "Give $25", ask = 25 },
]
"#;

    fn campaign(text: &str) -> Campaign {
        CampaignSpec::from_toml_str(text)
            .unwrap()
            .validate()
            .unwrap()
    }

    /// Revision 2: a new headline first, `h2` retired, a new ask, a new segment first.
    fn v2() -> Campaign {
        campaign(
            &V1.replace(
                "{ name = \"h1\", text = \"Rivers need you\" },",
                "{ name = \"h0\", text = \"Bees need you\" },\n  { name = \"h1\", text = \"Rivers need you\" },",
            )
            .replace(
                "{ name = \"h2\", text = \"Donate to clean water\" }",
                "{ name = \"h2\", text = \"Donate to clean water\", retired = true }",
            )
            .replace(
                "{ name = \"c2\", text = \"Give $25\", ask = 25 },",
                "{ name = \"c2\", text = \"Give $25\", ask = 25 },\n  { name = \"c3\", text = \"Give $50\", ask = 50 },",
            )
            .replace(
                "segments = [{ name = \"s1\" }, { name = \"s2\" }]",
                "segments = [{ name = \"s0\" }, { name = \"s1\" }, { name = \"s2\" }]",
            ),
        )
    }

    /// An engine of V1 that has served and learned `n` impressions with conversions.
    fn fed(n: u64) -> Engine {
        let mut rng = StdRng::seed_from_u64(1);
        let mut engine = Engine::new(&campaign(V1), &mut rng);
        for i in 0..n {
            let segment = (i % 2) as usize;
            let decision = engine.decide(segment, &mut rng);
            engine.learn(segment, decision.version, Feedback::Impression);
            if i % 9 == 0 {
                let amount = Some(5.0 + (i % 4) as f64 * 10.0);
                engine.learn(segment, decision.version, Feedback::Conversion { amount });
            }
            engine.refresh_due(&mut rng, i);
        }
        engine
    }

    #[test]
    fn options_and_segments_are_matched_by_name() {
        let (v1, v2) = (campaign(V1), v2());
        let revision = Revision::between(&v1, &v2).unwrap();
        assert_eq!(revision.map_segment(0), Some(1));
        assert_eq!(revision.old_segment(0), None);
        let mut out = [0; 3];
        assert!(revision.map_options(&[2, 1, 1], &mut out));
        assert_eq!(out, [3, 1, 1]);
        let old = v1.design().space.encode(&[0, 1, 1]);
        assert_eq!(
            revision.map_version(old),
            Some(v2.design().space.encode(&[1, 1, 1]))
        );
        assert_eq!(revision.map_version(v1.total_versions()), None);
        assert!(revision.removed_options().is_empty());
        let added: Vec<String> = revision
            .added_options()
            .iter()
            .map(|&o| revision.new_option_name(o))
            .collect();
        assert_eq!(added, ["headline.h0", "cta.c3"]);
        assert_eq!(revision.added_segments(), [0]);
    }

    #[test]
    fn components_objective_and_asks_stay() {
        let v1 = campaign(V1);
        let refused = |text: String| Revision::between(&v1, &campaign(&text)).unwrap_err();
        let error = refused(V1.replace("name = \"image\"", "name = \"picture\""));
        assert_eq!(error.field(), "components");
        assert!(
            error.to_string().contains(
                "component \"picture\" is new; a revision keeps the components, in the same order"
            ),
            "{error}"
        );
        let without_image = V1.replace(
            "[[components]]\nname = \"image\"\noptions = [{ name = \"i1\", asset = \"img/one.jpg\" }, { name = \"i2\", asset = \"img/two.jpg\" }]\n",
            "",
        );
        assert!(
            refused(without_image)
                .to_string()
                .contains("component \"image\" was removed")
        );
        let error = refused(
            V1.replace("objective", "x")
                .replace("name = \"test\"", "name = \"test\"\nobjective = \"clicks\""),
        );
        assert_eq!(
            error.to_string(),
            "objective: changed from \"value\" to \"clicks\"; a revision keeps the campaign's objective (start a new campaign to optimize another)"
        );
        let error = refused(V1.replace("ask = 25", "ask = 30"));
        assert_eq!(error.field(), "components[2].options[1].ask");
        assert!(
            error
                .to_string()
                .contains("\"c2\" asks 30 where it asked 25"),
            "{error}"
        );
    }

    #[test]
    fn components_in_another_order_are_refused() {
        let v1 = campaign(V1);
        let image = "[[components]]\nname = \"image\"\noptions = [{ name = \"i1\", asset = \"img/one.jpg\" }, { name = \"i2\", asset = \"img/two.jpg\" }]\n";
        let reordered = V1.replace(image, "").replace(
            "[[components]]\nname = \"headline\"",
            &format!("{image}\n[[components]]\nname = \"headline\""),
        );
        let error = Revision::between(&v1, &campaign(&reordered)).unwrap_err();
        assert!(
            error.to_string().contains("in the order image, headline, cta where they were in the order headline, image, cta"),
            "{error}"
        );
    }

    #[test]
    fn a_revision_carries_beliefs_and_counts_by_name_and_serves_no_retired_option() {
        let mut engine = fed(3_000);
        let old_counts = engine.option_counts().to_vec();
        let old_segments = engine.segment_counts().to_vec();
        let old_versions = engine.version_counts().clone();
        let old_layout = engine.sampler().conversion().layout().clone();
        let old_weights = engine.sampler().conversion().weights().to_vec();
        let old_amount = engine
            .sampler()
            .value()
            .unwrap()
            .expected_amount(1, Some(1));
        let old_events = engine.events();
        let next = v2();
        let revision = Revision::between(engine.campaign(), &next).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let summary = engine.revise(&next, &mut rng, 1_000).unwrap();
        assert_eq!(engine.revision(), 2);
        assert_eq!(
            summary,
            RevisionSummary {
                revision: 2,
                added_options: vec!["headline.h0".into(), "cta.c3".into()],
                retired_options: vec!["headline.h2".into()],
                added_segments: vec!["s0".into()],
                ..RevisionSummary::default()
            }
        );
        assert_eq!(engine.events(), old_events);
        // Counts moved to the new positions; new options and segments start empty.
        assert_eq!(engine.option_counts()[0][1..], old_counts[0][..]);
        assert_eq!(engine.option_counts()[0][0], Default::default());
        assert_eq!(engine.option_counts()[2][..2], old_counts[2][..]);
        assert_eq!(engine.segment_counts()[1..], old_segments[..]);
        assert_eq!(engine.version_counts().len(), old_versions.len());
        for (&(segment, version), counts) in &old_versions {
            let key = (
                revision.map_segment(segment as usize).unwrap() as u32,
                revision.map_version(version).unwrap(),
            );
            assert_eq!(engine.version_counts()[&key], *counts);
        }
        // Every learned weight moved with its option and segment; new ones are at prior.
        let conversion = engine.sampler().conversion();
        let map = revision.conversion_feature_map(&old_layout, conversion.layout());
        let mut carried = 0;
        for (i, from) in map.iter().enumerate() {
            match from {
                Some(j) => {
                    assert_eq!(conversion.weights()[i], old_weights[*j]);
                    carried += 1;
                }
                None => assert_eq!(conversion.weights()[i].mean, 0.0),
            }
        }
        assert_eq!(
            carried,
            old_weights.len(),
            "every old weight is carried once"
        );
        let layout = conversion.layout();
        assert_eq!(
            conversion.weights()[layout.option_offset[0] + 1],
            old_weights[old_layout.option_offset[0]],
            "h1 keeps its main effect"
        );
        // The value model still expects what it did of (s2, $25) (old segment 1, ask 1).
        let amount = engine
            .sampler()
            .value()
            .unwrap()
            .expected_amount(2, Some(1));
        assert!(
            (amount - old_amount).abs() < 1e-9 * old_amount,
            "{amount} vs {old_amount}"
        );
        // The retired headline is never served; propensities stay exact.
        let space = engine.space().clone();
        for segment in 0..3 {
            let sum: f64 = (0..space.total())
                .map(|v| engine.propensity(segment, v))
                .sum();
            assert!((sum - 1.0).abs() < 1e-9, "segment {segment}: {sum}");
            for _ in 0..2_000 {
                let decision = engine.decide(segment, &mut rng);
                assert_ne!(space.option_of(decision.version, 0), 2, "h2 is retired");
            }
            let h2 = space.encode(&[2, 0, 0]);
            assert_eq!(engine.propensity(segment, h2), 0.0);
        }
        // The new headline is explored at once: the floor and the prior's spread give it
        // traffic in every segment.
        let h0: f64 = (0..space.total())
            .filter(|&v| space.option_of(v, 0) == 0)
            .map(|v| engine.propensity(1, v))
            .sum();
        assert!(h0 > 0.02, "h0 has {h0}");
    }

    #[test]
    fn removing_an_option_with_events_is_refused_and_changes_nothing() {
        let mut engine = fed(500);
        let before = engine.snapshot();
        let without_h3 = V1.replace("  { name = \"h3\", text = \"Spring is here\" },\n", "");
        let error = engine
            .revise(&campaign(&without_h3), &mut StdRng::seed_from_u64(2), 0)
            .unwrap_err();
        assert_eq!(error.field(), "components[0].options");
        let message = error.to_string();
        assert!(
            message.starts_with("components[0].options: option \"headline.h3\" has ")
                && message.ends_with("events and cannot be removed; retire it instead: keep it in the spec with `retired = true`"),
            "{message}"
        );
        assert_eq!(engine.revision(), 1);
        assert_eq!(engine.snapshot(), before);
        let without_s2 = V1.replace(", { name = \"s2\" }", "");
        let error = engine
            .revise(&campaign(&without_s2), &mut StdRng::seed_from_u64(2), 0)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("segments: segment \"s2\" has "),
            "{error}"
        );
        // An option that never had an event may go.
        let mut fresh = Engine::new(&campaign(V1), &mut StdRng::seed_from_u64(3));
        let summary = fresh
            .revise(&campaign(&without_h3), &mut StdRng::seed_from_u64(2), 0)
            .unwrap();
        assert_eq!(summary.removed_options, ["headline.h3"]);
        assert_eq!(fresh.space().option_count(0), 2);
    }

    #[test]
    fn the_snapshot_records_the_revision() {
        let mut engine = fed(500);
        let next = v2();
        engine
            .revise(&next, &mut StdRng::seed_from_u64(2), 0)
            .unwrap();
        let bytes = engine.snapshot();
        let mut restored = Engine::new(&next, &mut StdRng::seed_from_u64(3));
        assert_eq!(restored.revision(), 1);
        assert!(matches!(
            restored.restore_revision(&bytes, 3),
            Err(crate::snapshot::SnapshotError::Mismatch(_))
        ));
        restored.restore_revision(&bytes, 2).unwrap();
        assert_eq!(restored.revision(), 2);
        assert_eq!(restored.snapshot(), bytes);
        let mut adopted = Engine::new(&next, &mut StdRng::seed_from_u64(3));
        adopted.restore(&bytes).unwrap();
        assert_eq!(adopted.revision(), 2);
    }

    #[test]
    fn an_event_of_an_older_revision_teaches_the_mapped_version() {
        let mut engine = fed(200);
        let v1 = engine.campaign().clone();
        let old_version = v1.design().space.encode(&[0, 1, 0]);
        let next = v2();
        engine
            .revise(&next, &mut StdRng::seed_from_u64(2), 0)
            .unwrap();
        let revision = Revision::between(&v1, &next).unwrap();
        let version = revision.map_version(old_version).unwrap();
        assert_eq!(
            next.options_of(version),
            [("headline", "h1"), ("image", "i2"), ("cta", "c1")]
        );
        let before = engine.option_counts()[0][1].conversions;
        engine.learn(
            revision.map_segment(0).unwrap(),
            version,
            Feedback::Conversion { amount: Some(5.0) },
        );
        assert_eq!(engine.option_counts()[0][1].conversions, before + 1);
    }
}
