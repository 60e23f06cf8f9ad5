//! Policies: who sees which version.
//!
//! Every [`Policy`] returns a [`Decision`] that carries the exact probability
//! (propensity) with which the policy would have chosen that version for that segment,
//! so any decision log can later be used to evaluate another policy off-line.
//!
//! - [`uniform::Uniform`]: the even split, propensity `1 / |allowed versions|`.
//! - [`thompson::ThompsonPolicy`]: per segment, a decision distribution rebuilt from `M`
//!   Thompson draws of a [`thompson::PosteriorSampler`] on a cadence, sampled in O(1).
//!   Two samplers: [`factorized::FactorizedSampler`] (the campaign model: components,
//!   segments, interactions) and [`independent::IndependentSampler`] (Beta-Bernoulli
//!   per segment and version, for small campaigns and comparison).
//! - [`floor::ExplorationFloor`]: wraps any policy; with probability `epsilon` the
//!   version is drawn uniformly from the whole allowed space instead.
//!
//! - [`campaign`]: the campaign policy (factorized Thompson sampling under the floor),
//!   its settings with every default, and the one constructor the engine, the trained
//!   target and the simulator use.
//!
//! Policies are generic over the random number generator and take it as an argument;
//! they hold no clock (time, where a cadence needs it, is passed in as milliseconds).

pub mod campaign;
pub mod factorized;
pub mod floor;
pub mod independent;
pub mod thompson;
pub mod uniform;

use rand::Rng;

/// One decision: the version chosen for one impression, with its propensity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Index of the chosen version in the version space.
    pub version: u64,
    /// Exact probability that the policy chooses this version for this segment, in (0, 1].
    pub propensity: f64,
    /// Version of the model the decision was made with (events learned when the
    /// decision distribution was built).
    pub model_version: u64,
}

/// What happened after one impression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Segment of the impression.
    pub segment: usize,
    /// Version shown.
    pub version: u64,
    /// Whether the reader clicked.
    pub clicked: bool,
    /// Whether the reader converted (donated, signed up, ...).
    pub converted: bool,
    /// Donation amount when converted (positive, finite); 0 otherwise.
    pub value: f64,
}

/// A decision policy.
pub trait Policy {
    /// A short name for reports.
    fn name(&self) -> &'static str;

    /// Chooses a version for an impression of `segment`. Never blocks, never learns.
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision;

    /// The exact probability that [`Policy::decide`] returns `version` for `segment`
    /// under the current decision distribution.
    fn propensity(&self, segment: usize, version: u64) -> f64;

    /// The model version of the decision distribution in force for `segment`.
    fn model_version(&self, _segment: usize) -> u64 {
        0
    }

    /// Learns one outcome.
    fn observe(&mut self, outcome: &Outcome);

    /// Rebuilds the decision distributions whose refresh cadence is due; returns how many
    /// were rebuilt. This is the work kept off the decision path. `now_millis` is the
    /// caller's clock, if it has one.
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize;

    /// Approximate bytes of model state held in memory.
    fn model_bytes(&self) -> usize;
}
