//! The even split: every allowed version equally likely, whatever happened.

use super::{Choice, Decision, Outcome, Policy, PricedPolicy};
use crate::space::VersionSpace;
use rand::Rng;

/// Uniform random choice over the allowed versions.
#[derive(Debug, Clone)]
pub struct Uniform {
    space: VersionSpace,
    propensity: f64,
}

impl Uniform {
    /// The even split over `space`.
    pub fn new(space: VersionSpace) -> Self {
        let propensity = 1.0 / space.allowed_count() as f64;
        Self { space, propensity }
    }
}

impl Policy for Uniform {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn decide<R: Rng + ?Sized>(&self, _segment: usize, rng: &mut R) -> Decision {
        Decision {
            version: self.space.sample_uniform(rng),
            propensity: self.propensity,
            model_version: 0,
        }
    }

    fn propensity(&self, _segment: usize, version: u64) -> f64 {
        if self.space.is_allowed(version) {
            self.propensity
        } else {
            0.0
        }
    }

    fn observe(&mut self, _outcome: &Outcome) {}

    fn refresh_due<R: Rng + ?Sized>(&mut self, _rng: &mut R, _now_millis: Option<u64>) -> usize {
        0
    }

    fn model_bytes(&self) -> usize {
        0
    }
}

/// The even split knows no value: under a price it never skips.
impl PricedPolicy for Uniform {
    fn skip_probability(&self, _segment: usize, _price: f64) -> f64 {
        0.0
    }

    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, _price: f64, rng: &mut R) -> Choice {
        let d = self.decide(segment, rng);
        Choice {
            version: Some(d.version),
            propensity: d.propensity,
            model_version: d.model_version,
        }
    }

    fn propensity_priced(&self, segment: usize, version: u64, _price: f64) -> f64 {
        self.propensity(segment, version)
    }

    fn mass_priced(
        &self,
        _segment: usize,
        _price: f64,
        _pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        self.propensity * picked_allowed as f64
    }
}
