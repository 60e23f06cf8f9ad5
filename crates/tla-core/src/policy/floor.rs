//! The exploration floor: a wrapper that keeps every allowed version possible.
//!
//! With probability `epsilon` the version is drawn uniformly from the allowed space,
//! otherwise the base policy decides. The propensity of version `v` is therefore
//! `epsilon / |allowed| + (1 - epsilon) * base.propensity(v)`, never below
//! `epsilon / |allowed|`, which is what bounds the variance of off-policy estimates.
//!
//! Under an [`Availability`] rule (retired options, a segment's pins) the floor spreads
//! over the versions available to the segment instead: `|allowed|` becomes that
//! segment's count, and a version not available to it has propensity 0.

use super::{Choice, Decision, Outcome, Policy, PricedPolicy};
use crate::availability::Availability;
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
    /// The versions each segment may be served, when some are not
    /// ([`ExplorationFloor::set_availability`]); `None`: every allowed version.
    availability: Option<Availability>,
    /// Per segment, `epsilon / |available to the segment|` (with `availability`).
    segment_floors: Vec<f64>,
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
            availability: None,
            segment_floors: Vec::new(),
        }
    }

    /// Restricts the floor to the versions `availability` leaves each segment (and
    /// with it every propensity: a version not available to a segment has 0). An
    /// availability with nothing restricted is the plain floor. The base policy must
    /// keep to the same rule (the factorized sampler's
    /// [`super::factorized::FactorizedSampler::set_availability`]).
    pub fn set_availability(&mut self, availability: Availability) {
        if availability.is_everything() {
            self.availability = None;
            self.segment_floors.clear();
            return;
        }
        self.segment_floors = (0..availability.segments())
            .map(|segment| self.epsilon / availability.count(segment) as f64)
            .collect();
        self.availability = Some(availability);
    }

    /// The availability rule in force, if any version is unavailable somewhere.
    pub fn availability(&self) -> Option<&Availability> {
        self.availability.as_ref()
    }

    /// Whether `version` may be served to `segment`.
    pub fn is_available(&self, segment: usize, version: u64) -> bool {
        match &self.availability {
            None => self.space.is_allowed(version),
            Some(availability) => availability.is_available(&self.space, segment, version),
        }
    }

    /// The floor's share of each available version of `segment`: `epsilon / count`.
    fn floor_of(&self, segment: usize) -> f64 {
        match &self.availability {
            None => self.floor,
            Some(_) => self.segment_floors[segment],
        }
    }

    /// A version drawn uniformly from those available to `segment`.
    fn sample_uniform<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> u64 {
        match &self.availability {
            None => self.space.sample_uniform(rng),
            Some(availability) => availability.sample_uniform(&self.space, segment, rng),
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
            let version = self.sample_uniform(segment, rng);
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
        if !self.is_available(segment, version) {
            return 0.0;
        }
        self.floor_of(segment) + (1.0 - self.epsilon) * self.base.propensity(segment, version)
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
            self.sample_uniform(segment, rng)
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
        if !self.is_available(segment, version) {
            return 0.0;
        }
        let buys = 1.0 - self.base.skip_probability(segment, price);
        self.floor_of(segment) * buys
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
        self.floor_of(segment) * buys * picked_allowed as f64
            + (1.0 - self.epsilon) * self.base.mass_priced(segment, price, pick, picked_allowed)
    }
}
