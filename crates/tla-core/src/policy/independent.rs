//! Independent Beta-Bernoulli Thompson sampling per (segment, version): the classic
//! bandit, kept for small campaigns and as a baseline.
//!
//! Each (segment, version) has its own `Beta(1 + conversions, b0 + misses)` belief, with
//! `b0` set so the prior mean is the expected base rate; the value objective multiplies
//! the sampled rate by the version's mean donation, shrunk toward the campaign's mean
//! donation for its ask with one pseudo-donation. State is sparse: only versions a
//! segment has seen are stored. The versions a segment has never seen share the prior,
//! so one draw of their best is the maximum of `n` prior draws, sampled exactly from its
//! distribution function `F(x)^n` with `F(x) = 1 - (1 - x)^b0`, per ask option; the
//! winning unseen version is then drawn uniformly among the unseen ones with that ask.

use super::Outcome;
use super::thompson::PosteriorSampler;
use crate::design::{Design, Objective};
use crate::space::VersionSpace;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

/// A map with a fixed hasher: its iteration order, and so the order in which a draw
/// consumes random numbers, depends only on what was inserted, never on the process.
type ArmMap = HashMap<u64, Arm, BuildHasherDefault<DefaultHasher>>;

/// Evidence about one (segment, version).
#[derive(Debug, Clone, Copy, Default)]
struct Arm {
    impressions: u64,
    successes: u64,
    amount_sum: f64,
}

/// Per-segment evidence.
#[derive(Debug, Clone, Default)]
struct SegmentArms {
    arms: ArmMap,
    /// Seen versions per ask option (a single group without asks).
    seen_per_group: Vec<u64>,
}

/// Independent Beta-Bernoulli Thompson sampling.
#[derive(Debug, Clone)]
pub struct IndependentSampler {
    space: VersionSpace,
    objective: Objective,
    /// Component whose option groups unseen versions (the ask), if any.
    group_component: Option<usize>,
    /// Allowed versions per group.
    allowed_per_group: Vec<u64>,
    /// Prior `Beta(1, b0)`.
    prior_failures: f64,
    segments: Vec<SegmentArms>,
    /// Campaign-wide donation sums and counts per group, for shrinkage.
    group_amount_sum: Vec<f64>,
    group_donations: Vec<u64>,
    observations: u64,
    options: Vec<u32>,
}

/// Allowed versions whose component `k` holds option `option`.
pub fn allowed_with_option(space: &VersionSpace, k: usize, option: u32) -> u64 {
    let keep: Vec<Vec<bool>> = (0..space.components())
        .map(|c| {
            (0..space.option_count(c))
                .map(|o| c != k || o == option)
                .collect()
        })
        .collect();
    space.allowed_within(&keep).unwrap_or(0)
}

impl IndependentSampler {
    /// A sampler at its prior; `base_rate` is the expected conversion rate (sets `b0`).
    pub fn new(design: &Design, base_rate: f64) -> Self {
        let group_component = match (design.objective, &design.ask) {
            (Objective::Value, Some(ask)) => Some(ask.component),
            _ => None,
        };
        let allowed_per_group: Vec<u64> = match group_component {
            Some(k) => (0..design.space.option_count(k))
                .map(|o| allowed_with_option(&design.space, k, o))
                .collect(),
            None => vec![design.space.allowed_count()],
        };
        let groups = allowed_per_group.len();
        Self {
            space: design.space.clone(),
            objective: design.objective,
            group_component,
            allowed_per_group,
            prior_failures: ((1.0 - base_rate) / base_rate).max(1.0),
            segments: (0..design.segments())
                .map(|_| SegmentArms {
                    arms: ArmMap::default(),
                    seen_per_group: vec![0; groups],
                })
                .collect(),
            group_amount_sum: vec![0.0; groups],
            group_donations: vec![0; groups],
            observations: 0,
            options: vec![0; design.space.components()],
        }
    }

    /// The sampler of the next revision of its campaign, `next`, carrying what this one
    /// learned by name ([`crate::revision::Revision`]): each (segment, version) whose
    /// segment and options both revisions hold keeps its evidence, and each ask keeps
    /// its donations; new versions start at the same prior.
    pub fn revised(&self, revision: &crate::revision::Revision, next: &Design) -> Self {
        let mut sampler = Self::new(next, 0.5);
        sampler.prior_failures = self.prior_failures;
        for (old_segment, arms) in self.segments.iter().enumerate() {
            let Some(segment) = revision.map_segment(old_segment) else {
                continue;
            };
            let mut versions: Vec<(&u64, &Arm)> = arms.arms.iter().collect();
            versions.sort_by_key(|(version, _)| **version);
            for (&old_version, arm) in versions {
                let Some(version) = revision
                    .map_version(old_version)
                    .filter(|&v| next.space.is_allowed(v))
                else {
                    continue;
                };
                let group = sampler.group_of(version);
                sampler.segments[segment].arms.insert(version, *arm);
                sampler.segments[segment].seen_per_group[group] += 1;
            }
        }
        for (old_group, (&sum, &donations)) in self
            .group_amount_sum
            .iter()
            .zip(&self.group_donations)
            .enumerate()
        {
            let group = match (self.group_component, sampler.group_component) {
                (Some(k), Some(_)) => revision.map_options_of(k, old_group as u32),
                (None, None) => Some(0),
                _ => None,
            };
            if let Some(group) = group {
                sampler.group_amount_sum[group as usize] = sum;
                sampler.group_donations[group as usize] = donations;
            }
        }
        sampler.observations = self.observations;
        sampler
    }

    fn group_of(&self, version: u64) -> usize {
        self.group_component
            .map_or(0, |k| self.space.option_of(version, k) as usize)
    }

    /// Campaign-wide mean donation of a group (1 before any donation, so rates decide).
    fn group_mean_amount(&self, group: usize) -> f64 {
        let total_n: u64 = self.group_donations.iter().sum();
        let total_sum: f64 = self.group_amount_sum.iter().sum();
        let overall = if total_n > 0 {
            total_sum / total_n as f64
        } else {
            1.0
        };
        (self.group_amount_sum[group] + overall) / (self.group_donations[group] as f64 + 1.0)
    }

    fn amount_of(&self, arm: &Arm, group: usize) -> f64 {
        match self.objective {
            Objective::Value => {
                (arm.amount_sum + self.group_mean_amount(group)) / (arm.successes as f64 + 1.0)
            }
            _ => 1.0,
        }
    }

    /// A uniform allowed version of `group` not yet seen in `segment`.
    fn sample_unseen<R: Rng + ?Sized>(&mut self, segment: usize, group: usize, rng: &mut R) -> u64 {
        loop {
            for k in 0..self.options.len() {
                self.options[k] = rng.random_range(0..self.space.option_count(k));
            }
            if let Some(k) = self.group_component {
                self.options[k] = group as u32;
            }
            if !self.space.is_allowed_options(&self.options) {
                continue;
            }
            let version = self.space.encode(&self.options);
            if !self.segments[segment].arms.contains_key(&version) {
                return version;
            }
        }
    }
}

impl PosteriorSampler for IndependentSampler {
    fn name(&self) -> &'static str {
        "independent-ts"
    }

    fn segments(&self) -> usize {
        self.segments.len()
    }

    fn draw_best_valued<R: Rng + ?Sized>(&mut self, segment: usize, rng: &mut R) -> (u64, f64) {
        let b0 = self.prior_failures;
        let mut best_value = f64::NEG_INFINITY;
        let mut best_version = None;
        for (&version, arm) in &self.segments[segment].arms {
            let failures = (arm.impressions - arm.successes) as f64;
            let rate = Beta::new(1.0 + arm.successes as f64, b0 + failures)
                .expect("positive parameters")
                .sample(rng);
            let value = rate * self.amount_of(arm, self.group_of(version));
            if value > best_value {
                best_value = value;
                best_version = Some(version);
            }
        }
        let mut best_unseen_group = None;
        for group in 0..self.allowed_per_group.len() {
            let unseen =
                self.allowed_per_group[group] - self.segments[segment].seen_per_group[group];
            if unseen == 0 {
                continue;
            }
            // Max of `unseen` Beta(1, b0) draws, by inversion of F(x)^unseen.
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let tail = -(u.ln() / unseen as f64).exp_m1(); // 1 - u^(1/n)
            let rate = -(tail.ln() / b0).exp_m1(); // 1 - tail^(1/b0)
            let value = rate * self.amount_of(&Arm::default(), group);
            if value > best_value {
                best_value = value;
                best_unseen_group = Some(group);
            }
        }
        match best_unseen_group {
            Some(group) => (self.sample_unseen(segment, group, rng), best_value),
            None => (
                best_version.expect("some version is seen or unseen"),
                best_value,
            ),
        }
    }

    fn observe(&mut self, outcome: &Outcome) {
        let group = self.group_of(outcome.version);
        let positive = match self.objective {
            Objective::Clicks => outcome.clicked,
            _ => outcome.converted,
        };
        let segment = &mut self.segments[outcome.segment];
        let arm = segment.arms.entry(outcome.version).or_insert_with(|| {
            segment.seen_per_group[group] += 1;
            Arm::default()
        });
        arm.impressions += 1;
        if positive {
            arm.successes += 1;
        }
        if outcome.converted && outcome.value > 0.0 && outcome.value.is_finite() {
            arm.amount_sum += outcome.value;
            self.group_amount_sum[group] += outcome.value;
            self.group_donations[group] += 1;
        }
        self.observations += 1;
    }

    fn observations(&self) -> u64 {
        self.observations
    }

    fn heap_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(u64, Arm)>() + 8;
        self.segments
            .iter()
            .map(|s| s.arms.capacity() * per_entry + s.seen_per_group.capacity() * 8)
            .sum()
    }
}
