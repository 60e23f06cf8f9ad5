//! # tla-sim: world files and the simulator
//!
//! A world file (`tla-creative-world/v1`, see `worlds/README.md`) fully defines a
//! simulated campaign's ground truth. This crate reads it ([`world::World`]), checks it
//! against the file's reference rows, and runs any [`tla_core::policy::Policy`] online
//! against it ([`sim::simulate`]), scoring the policy as a percentage of the oracle that
//! knows the truth. The learner is only given what a campaign team would know
//! ([`world::World::design`]).
//!
//! ```
//! use tla_sim::{world::World, sim::{simulate, SimConfig, Truth}, PolicyChoice, build_policy};
//! use tla_core::design::{Interactions, Objective};
//! let world = World::from_json(include_str!("../../../worlds/small.json")).unwrap();
//! assert!(world.verify_checks().unwrap() < 1e-9);
//! let design = world.design(Interactions::segment_only(4), Objective::Value);
//! let mut policy = build_policy(PolicyChoice::FactorizedTs, &design, &Default::default(), 7);
//! let report = simulate(&world, &Truth::new(&world), &mut policy, &SimConfig::new(20_000, 7), |_| {});
//! assert_eq!(report.impressions, 20_000);
//! ```

pub mod sim;
pub mod world;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use tla_core::design::Design;
use tla_core::policy::factorized::{FactorizedSampler, FactorizedSettings};
use tla_core::policy::floor::ExplorationFloor;
use tla_core::policy::independent::IndependentSampler;
use tla_core::policy::thompson::{ThompsonPolicy, ThompsonSettings};
use tla_core::policy::uniform::Uniform;
use tla_core::policy::{Decision, Outcome, Policy};

/// The policies the simulator can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    /// The even split.
    Uniform,
    /// Beta-Bernoulli Thompson sampling per (segment, version).
    IndependentTs,
    /// Factorized Thompson sampling.
    FactorizedTs,
}

/// Settings shared by the adaptive policies.
#[derive(Debug, Clone, Copy)]
pub struct PolicySettings {
    /// Thompson draws and refresh cadence.
    pub thompson: ThompsonSettings,
    /// Exploration floor.
    pub epsilon: f64,
    /// Factorized model settings.
    pub factorized: FactorizedSettings,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            thompson: ThompsonSettings::default(),
            epsilon: 0.02,
            factorized: FactorizedSettings::default(),
        }
    }
}

/// One of the simulator's policies, behind one type.
#[derive(Debug, Clone)]
pub enum AnyPolicy {
    /// The even split.
    Uniform(Uniform),
    /// Independent Thompson sampling with the exploration floor.
    IndependentTs(Box<ExplorationFloor<ThompsonPolicy<IndependentSampler>>>),
    /// Factorized Thompson sampling with the exploration floor.
    FactorizedTs(Box<ExplorationFloor<ThompsonPolicy<FactorizedSampler>>>),
}

/// Builds a policy for a design; `seed` seeds the first decision distributions.
pub fn build_policy(
    choice: PolicyChoice,
    design: &Design,
    settings: &PolicySettings,
    seed: u64,
) -> AnyPolicy {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5851_F42D_4C95_7F2D);
    match choice {
        PolicyChoice::Uniform => AnyPolicy::Uniform(Uniform::new(design.space.clone())),
        PolicyChoice::IndependentTs => {
            let sampler = IndependentSampler::new(design, settings.factorized.conversion.base_rate);
            let base = ThompsonPolicy::new(sampler, settings.thompson, &mut rng);
            AnyPolicy::IndependentTs(Box::new(ExplorationFloor::new(
                base,
                design.space.clone(),
                settings.epsilon,
            )))
        }
        PolicyChoice::FactorizedTs => {
            let sampler = FactorizedSampler::new(design, settings.factorized);
            let base = ThompsonPolicy::new(sampler, settings.thompson, &mut rng);
            AnyPolicy::FactorizedTs(Box::new(ExplorationFloor::new(
                base,
                design.space.clone(),
                settings.epsilon,
            )))
        }
    }
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $body:expr) => {
        match $self {
            AnyPolicy::Uniform($p) => $body,
            AnyPolicy::IndependentTs($p) => $body,
            AnyPolicy::FactorizedTs($p) => $body,
        }
    };
}

impl Policy for AnyPolicy {
    fn name(&self) -> &'static str {
        dispatch!(self, p => p.name())
    }
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        dispatch!(self, p => p.decide(segment, rng))
    }
    fn propensity(&self, segment: usize, version: u64) -> f64 {
        dispatch!(self, p => p.propensity(segment, version))
    }
    fn model_version(&self, segment: usize) -> u64 {
        dispatch!(self, p => p.model_version(segment))
    }
    fn observe(&mut self, outcome: &Outcome) {
        dispatch!(self, p => p.observe(outcome))
    }
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        dispatch!(self, p => p.refresh_due(rng, now_millis))
    }
    fn model_bytes(&self) -> usize {
        dispatch!(self, p => p.model_bytes())
    }
}
