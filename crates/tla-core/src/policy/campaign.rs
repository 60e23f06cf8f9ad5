//! The campaign policy: one settings type with every default, one constructor.
//!
//! A campaign serves factorized Thompson sampling under the exploration floor:
//! [`CampaignPolicy`] = [`ExplorationFloor`]`<`[`ThompsonPolicy`]`<`[`FactorizedSampler`]`>>`.
//! [`CampaignPolicySettings`] holds what configures that stack (the draws per decision
//! table, the refresh cadence, the floor, the model's priors and search) and
//! [`CampaignPolicySettings::build`] assembles it. Everything that runs a campaign's
//! policy builds it here: the live [`crate::engine::Engine`], the trained off-policy
//! target ([`crate::target::TrainedTarget`]) and the simulator. The `DEFAULT_*`
//! constants below are the only place the defaults are written; the spec's serde
//! defaults, its refusal messages and the docs quote them.
//!
//! ```
//! use tla_core::design::{Design, Interactions, Objective};
//! use tla_core::policy::campaign::CampaignPolicySettings;
//! use tla_core::policy::Policy;
//! use tla_core::space::VersionSpace;
//! use rand::SeedableRng;
//!
//! let space = VersionSpace::product(vec![3, 4]).unwrap();
//! let design = Design {
//!     component_names: vec!["headline".into(), "cta".into()],
//!     segment_names: vec!["everyone".into()],
//!     space,
//!     ask: None,
//!     objective: Objective::Conversions,
//!     interactions: Interactions::segment_only(2),
//! };
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let policy = CampaignPolicySettings::default().build(&design, &mut rng);
//! let decision = policy.decide(0, &mut rng);
//! assert_eq!(decision.propensity, policy.propensity(0, decision.version));
//! ```

use super::factorized::{FactorizedSampler, FactorizedSettings};
use super::floor::ExplorationFloor;
use super::thompson::{PosteriorSampler, RefreshCadence, ThompsonPolicy, ThompsonSettings};
use crate::availability::Availability;
use crate::design::Design;
use crate::revision::Revision;
use crate::space::VersionSpace;
use rand::Rng;

/// Default exploration floor epsilon: the share of decisions drawn evenly from every
/// allowed version.
pub const DEFAULT_EXPLORATION: f64 = 0.02;
/// Default number of a segment's events between two refreshes of its decision
/// distribution (chosen by measurement in the simulator, see `docs/models.md`).
pub const DEFAULT_REFRESH_EVERY_EVENTS: u64 = 250;
/// Default milliseconds between two refreshes of the decision distributions, for a
/// caller with a clock.
pub const DEFAULT_REFRESH_EVERY_MILLIS: u64 = 1000;
/// Default number of Thompson draws per decision distribution (`M`).
pub const DEFAULT_DRAWS: u32 = 64;

/// The policy a campaign serves: factorized Thompson sampling under the floor.
pub type CampaignPolicy = ExplorationFloor<ThompsonPolicy<FactorizedSampler>>;

/// What configures a campaign's policy. [`Default`] holds every default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CampaignPolicySettings {
    /// Thompson draws per decision distribution (`M`, at least 1).
    pub draws: usize,
    /// When the decision distributions are rebuilt.
    pub cadence: RefreshCadence,
    /// Exploration floor epsilon, in `[0, 1)`.
    pub exploration: f64,
    /// The factorized model's priors, argmax search and draw scale.
    pub factorized: FactorizedSettings,
}

impl Default for CampaignPolicySettings {
    /// [`DEFAULT_DRAWS`] draws, a refresh every [`DEFAULT_REFRESH_EVERY_EVENTS`] events
    /// of a segment or [`DEFAULT_REFRESH_EVERY_MILLIS`] ms, floor
    /// [`DEFAULT_EXPLORATION`], the model's default settings.
    fn default() -> Self {
        Self {
            draws: DEFAULT_DRAWS as usize,
            cadence: RefreshCadence::default(),
            exploration: DEFAULT_EXPLORATION,
            factorized: FactorizedSettings::default(),
        }
    }
}

impl CampaignPolicySettings {
    /// The settings a campaign spec asks for: its draws, refresh cadence and floor,
    /// with the model's default settings.
    pub fn for_campaign(campaign: &crate::spec::Campaign) -> Self {
        let spec = campaign.spec();
        Self {
            draws: spec.draws.max(1) as usize,
            cadence: RefreshCadence {
                every_events: spec.refresh.every_events.max(1),
                every_millis: Some(spec.refresh.every_millis.max(1)),
            },
            exploration: spec.exploration,
            factorized: FactorizedSettings::default(),
        }
    }

    /// The same settings for a caller without a clock (a simulator, a frozen target):
    /// the decision distributions are rebuilt on events only.
    pub fn without_clock(self) -> Self {
        Self {
            cadence: RefreshCadence {
                every_millis: None,
                ..self.cadence
            },
            ..self
        }
    }

    /// The Thompson layer's settings.
    pub fn thompson(&self) -> ThompsonSettings {
        ThompsonSettings {
            draws: self.draws.max(1),
            cadence: self.cadence,
        }
    }

    /// The campaign policy of `design` at its prior; `rng` draws the first decision
    /// distributions.
    ///
    /// # Panics
    /// If `exploration` is outside `[0, 1)` (specs validate it before this point).
    pub fn build<R: Rng + ?Sized>(&self, design: &Design, rng: &mut R) -> CampaignPolicy {
        let sampler = FactorizedSampler::new(design, self.factorized);
        self.wrap(sampler, design.space.clone(), rng)
    }

    /// The campaign policy of `design` at its prior, serving each segment only the
    /// versions `availability` leaves it (retired options and pins,
    /// [`crate::spec::Campaign::availability`]): the sampler never draws another and
    /// the floor spreads over those. With nothing restricted it is [`Self::build`],
    /// drawing the same random numbers.
    ///
    /// # Panics
    /// If `exploration` is outside `[0, 1)`.
    pub fn build_available<R: Rng + ?Sized>(
        &self,
        design: &Design,
        availability: &Availability,
        rng: &mut R,
    ) -> CampaignPolicy {
        let mut sampler = FactorizedSampler::new(design, self.factorized);
        sampler.set_availability(availability);
        self.wrap_available(sampler, design.space.clone(), availability, rng)
    }

    /// The campaign policy of the next revision of a campaign (`next`, under
    /// `availability`), from the policy in force: a sampler of `next` at its prior
    /// takes every learned weight of `current`'s that `revision` maps by name
    /// ([`FactorizedSampler::carry_from`]), new options and segments at their prior,
    /// and every segment's decision distribution is drawn from it at once.
    ///
    /// # Panics
    /// If `exploration` is outside `[0, 1)`.
    pub fn revise<R: Rng + ?Sized>(
        &self,
        current: &CampaignPolicy,
        revision: &Revision,
        next: &Design,
        availability: &Availability,
        rng: &mut R,
    ) -> CampaignPolicy {
        let mut sampler = FactorizedSampler::new(next, self.factorized);
        sampler.carry_from(current.base().sampler(), revision);
        sampler.set_availability(availability);
        self.wrap_available(sampler, next.space.clone(), availability, rng)
    }

    /// [`Self::wrap`] with the floor restricted to `availability` (the sampler already
    /// keeps to it).
    fn wrap_available<R: Rng + ?Sized>(
        &self,
        sampler: FactorizedSampler,
        space: VersionSpace,
        availability: &Availability,
        rng: &mut R,
    ) -> CampaignPolicy {
        let mut policy = self.wrap(sampler, space, rng);
        policy.set_availability(availability.clone());
        policy
    }

    /// The same stack around another posterior `sampler` (a trained model, or a
    /// baseline such as [`super::independent::IndependentSampler`]): Thompson decision
    /// distributions drawn from it now, under the floor over `space`.
    ///
    /// # Panics
    /// If `exploration` is outside `[0, 1)`.
    pub fn wrap<S: PosteriorSampler, R: Rng + ?Sized>(
        &self,
        sampler: S,
        space: VersionSpace,
        rng: &mut R,
    ) -> ExplorationFloor<ThompsonPolicy<S>> {
        let base = ThompsonPolicy::new(sampler, self.thompson(), rng);
        ExplorationFloor::new(base, space, self.exploration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_thompson_layers_defaults() {
        let settings = CampaignPolicySettings::default();
        assert_eq!(settings.thompson(), ThompsonSettings::default());
        assert_eq!(
            settings.cadence,
            RefreshCadence {
                every_events: DEFAULT_REFRESH_EVERY_EVENTS,
                every_millis: Some(DEFAULT_REFRESH_EVERY_MILLIS),
            }
        );
        assert_eq!(settings.without_clock().cadence.every_millis, None);
        assert_eq!(
            settings.without_clock().cadence.every_events,
            DEFAULT_REFRESH_EVERY_EVENTS
        );
    }
}
