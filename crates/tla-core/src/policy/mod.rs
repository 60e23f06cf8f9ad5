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
//! A [`PricedPolicy`] can also *skip* an opportunity (buy nothing, pay nothing): under a
//! [`Gate`] the pacing rule ([`crate::pacing`]) sets per opportunity, a Thompson draw
//! whose sampled value is at most the opportunity's price skips, and the skip and every
//! version keep exact propensities ([`decide_gated`], [`gated_propensity`]).
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

    /// Learns one outcome that happened at `at_millis` on the caller's clock: a model
    /// that forgets first brings what the outcome touches up to that time. The default
    /// ignores the time.
    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        let _ = at_millis;
        self.observe(outcome);
    }

    /// [`Policy::observe_at`] with the weight, in `[0, 1]`, the outcome carries in
    /// scoring how well models predict the even split: the probability that the
    /// decision came from the exploration floor's even draw (see
    /// [`crate::model::forgetting`]). The default ignores the weight.
    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        let _ = score_weight;
        self.observe_at(outcome, at_millis);
    }

    /// Rebuilds the decision distributions whose refresh cadence is due; returns how many
    /// were rebuilt. This is the work kept off the decision path. `now_millis` is the
    /// caller's clock, if it has one.
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize;

    /// Approximate bytes of model state held in memory.
    fn model_bytes(&self) -> usize;
}

/// How a decision may decline an opportunity, as the pacing rule sets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// Every opportunity is bought: the policy's plain decision.
    Open,
    /// A draw whose sampled value per impression is at most this price skips.
    Price(f64),
    /// Bought with this probability, whatever it is worth; the version is the policy's
    /// plain decision.
    Throttle(f64),
    /// Skipped.
    Closed,
}

/// A decision that may skip: the version bought (`None`: skipped), with the exact
/// probability of that outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The version bought, or `None` for a skip.
    pub version: Option<u64>,
    /// Exact probability of this outcome (the version, or the skip), in (0, 1].
    pub propensity: f64,
    /// Version of the model the decision was made with.
    pub model_version: u64,
}

/// A policy that can skip an opportunity whose price is above what its Thompson draw
/// expects of it.
pub trait PricedPolicy: Policy {
    /// The probability that [`PricedPolicy::decide_priced`] skips for `segment` under
    /// `price`.
    fn skip_probability(&self, segment: usize, price: f64) -> f64;

    /// A decision under `price`: skipped when the draw's sampled value is at most
    /// `price`.
    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, price: f64, rng: &mut R) -> Choice;

    /// The exact probability that [`PricedPolicy::decide_priced`] buys `version` for
    /// `segment` under `price`.
    fn propensity_priced(&self, segment: usize, version: u64, price: f64) -> f64;

    /// The probability that [`PricedPolicy::decide_priced`] buys a version for which
    /// `pick` holds; `picked_allowed` is how many versions available to `segment` it
    /// holds for (allowed, and not ruled out by a retirement or the segment's pins).
    fn mass_priced(
        &self,
        segment: usize,
        price: f64,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64;
}

/// The decision of `policy` for `segment` under `gate`, with its exact propensity.
/// [`Gate::Open`] is the policy's plain [`Policy::decide`], drawn exactly as without a
/// gate.
pub fn decide_gated<P: PricedPolicy, R: Rng + ?Sized>(
    policy: &P,
    segment: usize,
    gate: Gate,
    rng: &mut R,
) -> Choice {
    let model_version = policy.model_version(segment);
    match gate {
        Gate::Open => {
            let d = policy.decide(segment, rng);
            Choice {
                version: Some(d.version),
                propensity: d.propensity,
                model_version: d.model_version,
            }
        }
        Gate::Price(price) => policy.decide_priced(segment, price, rng),
        Gate::Throttle(buy) => {
            let buy = buy.clamp(0.0, 1.0);
            if rng.random::<f64>() < buy {
                let d = policy.decide(segment, rng);
                Choice {
                    version: Some(d.version),
                    propensity: buy * d.propensity,
                    model_version: d.model_version,
                }
            } else {
                Choice {
                    version: None,
                    propensity: 1.0 - buy,
                    model_version,
                }
            }
        }
        Gate::Closed => Choice {
            version: None,
            propensity: 1.0,
            model_version,
        },
    }
}

/// The exact probability that [`decide_gated`] gives `version` (`None`: the skip).
pub fn gated_propensity<P: PricedPolicy>(
    policy: &P,
    segment: usize,
    version: Option<u64>,
    gate: Gate,
) -> f64 {
    match (gate, version) {
        (Gate::Open, Some(v)) => policy.propensity(segment, v),
        (Gate::Open, None) => 0.0,
        (Gate::Price(price), Some(v)) => policy.propensity_priced(segment, v, price),
        (Gate::Price(price), None) => policy.skip_probability(segment, price),
        (Gate::Throttle(buy), Some(v)) => buy.clamp(0.0, 1.0) * policy.propensity(segment, v),
        (Gate::Throttle(buy), None) => 1.0 - buy.clamp(0.0, 1.0),
        (Gate::Closed, Some(_)) => 0.0,
        (Gate::Closed, None) => 1.0,
    }
}

/// The probability that [`decide_gated`] buys a version for which `pick` holds
/// (`picked_allowed`: how many versions available to `segment` it holds for).
pub fn gated_mass<P: PricedPolicy>(
    policy: &P,
    segment: usize,
    gate: Gate,
    pick: &dyn Fn(u64) -> bool,
    picked_allowed: u64,
) -> f64 {
    match gate {
        Gate::Open => policy.mass_priced(segment, f64::NEG_INFINITY, pick, picked_allowed),
        Gate::Price(price) => policy.mass_priced(segment, price, pick, picked_allowed),
        Gate::Throttle(buy) => {
            buy.clamp(0.0, 1.0)
                * policy.mass_priced(segment, f64::NEG_INFINITY, pick, picked_allowed)
        }
        Gate::Closed => 0.0,
    }
}
