//! The exploration floor: a wrapper that keeps every allowed version possible.
//!
//! With probability `epsilon` the version is drawn uniformly from the allowed space,
//! otherwise the base policy decides. The propensity of version `v` is therefore
//! `epsilon / |allowed| + (1 - epsilon) * base.propensity(v)`, never below
//! `epsilon / |allowed|`, which is what bounds the variance of off-policy estimates.

use super::{Choice, Decision, Outcome, Policy, PricedPolicy};
use crate::space::VersionSpace;
use rand::Rng;

/// Any policy, mixed with a uniform exploration floor.
#[derive(Debug, Clone)]
pub struct ExplorationFloor<P> {
    base: P,
    space: VersionSpace,
    epsilon: f64,
    /// `epsilon / |allowed|`.
    floor: f64,
}

impl<P: Policy> ExplorationFloor<P> {
    /// Wraps `base`; `epsilon` must lie in `[0, 1)`.
    ///
    /// # Panics
    /// If `epsilon` is outside `[0, 1)` (specs validate it before this point).
    pub fn new(base: P, space: VersionSpace, epsilon: f64) -> Self {
        assert!((0.0..1.0).contains(&epsilon), "epsilon must lie in [0, 1)");
        let floor = epsilon / space.allowed_count() as f64;
        Self {
            base,
            space,
            epsilon,
            floor,
        }
    }

    /// The wrapped policy.
    pub fn base(&self) -> &P {
        &self.base
    }

    /// The wrapped policy, mutably.
    pub fn base_mut(&mut self) -> &mut P {
        &mut self.base
    }

    /// The space the floor spreads over.
    pub fn space(&self) -> &VersionSpace {
        &self.space
    }

    /// The exploration probability.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

impl<P: Policy> Policy for ExplorationFloor<P> {
    fn name(&self) -> &'static str {
        self.base.name()
    }

    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        let explore = self.epsilon > 0.0 && rng.random::<f64>() < self.epsilon;
        let (version, model_version) = if explore {
            // The base's model version still names the distribution in force.
            let version = self.space.sample_uniform(rng);
            (version, self.base.model_version(segment))
        } else {
            let decision = self.base.decide(segment, rng);
            (decision.version, decision.model_version)
        };
        Decision {
            version,
            propensity: self.propensity(segment, version),
            model_version,
        }
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        if !self.space.is_allowed(version) {
            return 0.0;
        }
        self.floor + (1.0 - self.epsilon) * self.base.propensity(segment, version)
    }

    fn model_version(&self, segment: usize) -> u64 {
        self.base.model_version(segment)
    }

    fn observe(&mut self, outcome: &Outcome) {
        self.base.observe(outcome);
    }

    /// The outcome is learned by the base with its score weight: the probability
    /// that its version came from the floor's even draw, `floor / propensity`, in the
    /// decision distribution in force now.
    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        let propensity = self.propensity(outcome.segment, outcome.version);
        let weight = if propensity > 0.0 {
            (self.floor / propensity).min(1.0)
        } else {
            0.0
        };
        self.base.observe_scored(outcome, at_millis, weight);
    }

    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        self.base.observe_scored(outcome, at_millis, score_weight);
    }

    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        self.base.refresh_due(rng, now_millis)
    }

    fn model_bytes(&self) -> usize {
        self.base.model_bytes()
    }
}

/// Under a price, the floor explores only on the opportunities its base buys: the skip
/// keeps the base's probability `q`, and version `v` has `ε (1 - q) / N + (1 - ε)
/// p_base(v)`.
impl<P: PricedPolicy> PricedPolicy for ExplorationFloor<P> {
    fn skip_probability(&self, segment: usize, price: f64) -> f64 {
        self.base.skip_probability(segment, price)
    }

    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, price: f64, rng: &mut R) -> Choice {
        let base = self.base.decide_priced(segment, price, rng);
        let Some(version) = base.version else {
            return base;
        };
        let explore = self.epsilon > 0.0 && rng.random::<f64>() < self.epsilon;
        let version = if explore {
            self.space.sample_uniform(rng)
        } else {
            version
        };
        Choice {
            version: Some(version),
            propensity: self.propensity_priced(segment, version, price),
            model_version: base.model_version,
        }
    }

    fn propensity_priced(&self, segment: usize, version: u64, price: f64) -> f64 {
        if !self.space.is_allowed(version) {
            return 0.0;
        }
        let buys = 1.0 - self.base.skip_probability(segment, price);
        self.floor * buys
            + (1.0 - self.epsilon) * self.base.propensity_priced(segment, version, price)
    }

    fn mass_priced(
        &self,
        segment: usize,
        price: f64,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        let buys = 1.0 - self.base.skip_probability(segment, price);
        self.floor * buys * picked_allowed as f64
            + (1.0 - self.epsilon) * self.base.mass_priced(segment, price, pick, picked_allowed)
    }
}
