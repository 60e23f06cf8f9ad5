//! # tla-sim: world files, ground truths and the simulation loop
//!
//! A world file (`tla-creative-world/v1`, see `worlds/README.md`) fully defines a
//! simulated campaign's ground truth: [`world::World`] reads it and checks it against
//! the file's reference rows. A `tla-creative-world/v2` world adds a flight ([`flight`]):
//! days and hourly traffic, a cost per impression by segment and hour, a budget, effects
//! that drift and options launched mid-flight; the loop plays each impression at its
//! flight fraction. [`generate`] draws such a world for any campaign design
//! and computes its exact truths (each segment's oracle and even split, each option's
//! value). The learner is only given what a campaign team would know
//! ([`world::World::design`]).
//!
//! ## One loop, observers for each mode
//!
//! [`online::run`] is the one place where the world answers a learner. Per impression a
//! segment arrives, the learner decides (a version with its exact propensity), the
//! world answers (conversion, donation, spend, and the true expected value of the
//! version served), the learner learns it and rebuilds what is due at the impression's
//! simulated time. The loop keeps no score and prints nothing: it pushes each
//! [`online::Impression`] and each checkpoint to an [`online::Observer`] the caller
//! supplies, whose methods all default to doing nothing; an observer may stop the run,
//! and a pair `(A, B)` of observers is one. The simulator's modes are observers:
//!
//! - [`sim::Scorer`], run by [`sim::simulate`] (`tla simulate --world`): the policy's
//!   expected value as a percentage of the oracle's on the same audience, and the
//!   learning curve at the checkpoints;
//! - [`ope::RowLog`], run by [`ope::log_impressions`] (`tla evaluate --world`): the
//!   logged rows the off-policy estimators are validated on;
//! - [`campaign::CampaignRecorder`], run by [`campaign::run_campaign`] (`tla simulate
//!   --campaign`): the decision log, donations and spend of the service's engine;
//! - [`online::Progress`]: a progress bar's counter.
//!
//! The learner is any [`tla_core::policy::Policy`] that learns of launches
//! ([`online::Launch`], such as [`build_policy`]'s [`AnyPolicy`]: in a world whose
//! options launch mid-flight it knows only those launched so far and is revised as
//! others launch, [`launch`]) or a campaign's engine ([`online::EngineLearner`]). [`online::Streams`] owns the random
//! streams (audience, outcome, policy) seeded from one seed, in one layout that every
//! mode uses (the plain simulation, the validation logs and the campaign run), so the
//! same seed meets the same audience and the same luck in every mode and with every
//! learner; [`online::RunConfig`] holds the impressions, the
//! checkpoints, the simulated [`online::Clock`], the spend per impression and whether
//! donations are in cents.
//!
//! ```
//! use tla_core::design::{Interactions, Objective};
//! use tla_sim::online::{self, Flow, Impression, Observer, RunConfig, Streams};
//! use tla_sim::sim::{SimConfig, Truth, simulate};
//! use tla_sim::{PolicyChoice, build_policy, world::World};
//!
//! /// Counts donors and stops the run at the 50th.
//! struct Donors(u64);
//!
//! impl<L> Observer<L> for Donors {
//!     fn impression(&mut self, impression: &Impression) -> Flow {
//!         self.0 += u64::from(impression.answer.converted);
//!         if self.0 == 50 { Flow::Stop } else { Flow::Continue }
//!     }
//! }
//!
//! let world = World::from_json(include_str!("../../../worlds/small.json")).unwrap();
//! assert!(world.verify_checks().unwrap() < 1e-9);
//! let design = world.design(Interactions::segment_only(4), Objective::Value);
//! let policy = || build_policy(PolicyChoice::FactorizedTs, &design, &tla_sim::default_settings(), 7);
//!
//! let mut donors = Donors(0);
//! let mut streams = Streams::new(7, &world.segment_probs);
//! let served = online::run(&world, &mut streams, &mut policy(), &RunConfig::new(20_000), &mut donors);
//! assert_eq!(donors.0, 50);
//! assert!(served < 20_000);
//!
//! // The plain simulation is the same loop with another observer: at the same seed
//! // its first `served` impressions are these.
//! let truth = Truth::new(&world);
//! let report = simulate(&world, &truth, &mut policy(), &SimConfig::new(served, 7), |_| {});
//! assert_eq!((report.impressions, report.conversions), (served, 50));
//! ```

#![warn(missing_docs)]

pub mod campaign;
pub mod flight;
pub mod generate;
pub mod launch;
pub mod online;
pub mod ope;
pub mod platform;
pub mod sim;
pub mod world;

use launch::LaunchView;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use tla_core::availability::Availability;
use tla_core::design::Design;
use tla_core::model::forgetting::half_life_text;
use tla_core::policy::campaign::{CampaignPolicy, CampaignPolicySettings};
use tla_core::policy::floor::ExplorationFloor;
use tla_core::policy::independent::IndependentSampler;
use tla_core::policy::thompson::ThompsonPolicy;
use tla_core::policy::uniform::Uniform;
use tla_core::policy::{Choice, Decision, Outcome, Policy, PricedPolicy};
use tla_core::revision::Revision;
use world::World;

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

/// How a factorized learner forgot by the end of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ForgettingSummary {
    /// The setting (`auto`, `off`, a half-life).
    pub setting: String,
    /// The half-life in force at the end (`off`: none).
    pub in_force: String,
    /// Times the candidate in force changed.
    pub switches: u64,
    /// Each candidate's half-life and discounted prequential log-loss at the end.
    pub candidates: Vec<(String, f64)>,
}

/// The settings the simulator runs a policy with: the campaign policy's settings and
/// defaults ([`CampaignPolicySettings::default`]), refreshed on events only, since the
/// simulator has no clock.
pub fn default_settings() -> CampaignPolicySettings {
    CampaignPolicySettings::default().without_clock()
}

/// One of the simulator's policies.
#[derive(Debug, Clone)]
pub enum PolicyKind {
    /// The even split.
    Uniform(Uniform),
    /// Independent Thompson sampling with the exploration floor.
    IndependentTs(Box<ExplorationFloor<ThompsonPolicy<IndependentSampler>>>),
    /// Factorized Thompson sampling with the exploration floor.
    FactorizedTs(Box<CampaignPolicy>),
}

/// One of the simulator's policies behind one type, with the design and settings it was
/// built with, speaking the world's version indices.
///
/// In a world whose options launch during its flight the policy knows only the options
/// launched so far ([`launch`]): [`AnyPolicy::launch_due`] revises it when options
/// launch (the revision path of a running campaign), and its versions are translated
/// to the world's. [`AnyPolicy::end_flight`] hands it back over every option.
#[derive(Debug, Clone)]
pub struct AnyPolicy {
    /// The policy, over the versions of the options it knows.
    kind: PolicyKind,
    /// The design it was built for: every option of the world.
    design: Design,
    /// The settings it was built with.
    settings: CampaignPolicySettings,
    /// In a flight with launches: what it knows now (`None`: every option of `design`).
    view: Option<LaunchView>,
    /// Revisions taken (launches, and the first view of a flight).
    revisions: u32,
}

/// Builds a policy for a design; `seed` seeds the first decision distributions. The
/// adaptive policies are the campaign policy's stack ([`CampaignPolicySettings::build`]
/// and, around the independent baseline's sampler, [`CampaignPolicySettings::wrap`]).
pub fn build_policy(
    choice: PolicyChoice,
    design: &Design,
    settings: &CampaignPolicySettings,
    seed: u64,
) -> AnyPolicy {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5851_F42D_4C95_7F2D);
    let kind = match choice {
        PolicyChoice::Uniform => PolicyKind::Uniform(Uniform::new(design.space.clone())),
        PolicyChoice::IndependentTs => {
            let sampler = IndependentSampler::new(design, settings.factorized.conversion.base_rate);
            PolicyKind::IndependentTs(Box::new(settings.wrap(
                sampler,
                design.space.clone(),
                &mut rng,
            )))
        }
        PolicyChoice::FactorizedTs => {
            PolicyKind::FactorizedTs(Box::new(settings.build(design, &mut rng)))
        }
    };
    AnyPolicy {
        kind,
        design: design.clone(),
        settings: *settings,
        view: None,
        revisions: 0,
    }
}

impl PolicyKind {
    /// The policy of `next`, revised from this one through `revision`: the factorized
    /// model through the campaign policy's revision path
    /// ([`CampaignPolicySettings::revise`]), the independent one carrying each
    /// version's evidence, the even split over the new space. Every decision
    /// distribution is drawn anew from `rng`.
    fn revise<R: Rng + ?Sized>(
        &self,
        settings: &CampaignPolicySettings,
        revision: &Revision,
        next: &Design,
        rng: &mut R,
    ) -> PolicyKind {
        match self {
            PolicyKind::Uniform(_) => PolicyKind::Uniform(Uniform::new(next.space.clone())),
            PolicyKind::IndependentTs(floor) => {
                let sampler = floor.base().sampler().revised(revision, next);
                PolicyKind::IndependentTs(Box::new(settings.wrap(sampler, next.space.clone(), rng)))
            }
            PolicyKind::FactorizedTs(policy) => {
                let everything = Availability::everything(&next.space, next.segments());
                PolicyKind::FactorizedTs(Box::new(settings.revise(
                    policy,
                    revision,
                    next,
                    &everything,
                    rng,
                )))
            }
        }
    }
}

impl AnyPolicy {
    /// The policy behind, over the versions of the options it knows.
    pub fn kind(&self) -> &PolicyKind {
        &self.kind
    }

    /// The factorized policy, when it is one.
    pub fn factorized_mut(&mut self) -> Option<&mut CampaignPolicy> {
        match &mut self.kind {
            PolicyKind::FactorizedTs(policy) => Some(policy),
            _ => None,
        }
    }

    /// Revisions the policy took in flights: one when a flight with launches starts
    /// (it then knows only the options launched at its start), one per launch after.
    pub fn revisions(&self) -> u32 {
        self.revisions
    }

    /// At flight fraction `f` of `world`: the first time, a world whose options launch
    /// during the flight leaves the policy only those launched by `f`; afterwards, when
    /// options launch, it learns of them through a revision (new options at their
    /// prior, every learned belief carried, every decision distribution drawn anew from
    /// `rng`). Returns whether it was revised.
    pub fn launch_due<R: Rng + ?Sized>(&mut self, world: &World, f: f64, rng: &mut R) -> bool {
        let (view, revision) = match &self.view {
            None if self.revisions == 0 => match LaunchView::start(world, &self.design, f) {
                Some(start) => start,
                None => return false,
            },
            Some(view) if view.is_due(f) => view.advance(world, &self.design, f),
            _ => return false,
        };
        self.kind = self
            .kind
            .revise(&self.settings, &revision, view.design(), rng);
        self.view = Some(view);
        self.revisions += 1;
        true
    }

    /// After a flight: the policy over every option again, in the world's order (those
    /// never launched at their prior), so that it speaks the design it was built for.
    pub fn end_flight<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        if let Some(view) = self.view.take() {
            let revision = view.to_full(&self.design);
            self.kind = self
                .kind
                .revise(&self.settings, &revision, &self.design, rng);
        }
        self.revisions = 0;
    }

    /// The world's version of the policy's `version`.
    fn to_world(&self, version: u64) -> u64 {
        match &self.view {
            Some(view) => view.to_world(version),
            None => version,
        }
    }

    /// The policy's version of the world's `version` (`None`: not known to it).
    fn to_policy(&self, version: u64) -> Option<u64> {
        match &self.view {
            Some(view) => view.to_learner(version),
            None => Some(version),
        }
    }
}

/// How far the configured argmax (coordinate ascent on large blocks) falls short of
/// the exact argmax, measured on posterior draws of a trained factorized model.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ArgmaxGap {
    /// Draws compared.
    pub draws: u64,
    /// Share of draws where the configured search found the exact optimum's objective.
    pub share_exact: f64,
    /// Mean of `1 - configured / exact` over the draws, in percent.
    pub mean_gap_pct: f64,
    /// Largest such gap, in percent.
    pub max_gap_pct: f64,
    /// Mean microseconds per configured search draw (sampling included).
    pub configured_micros: f64,
    /// Mean microseconds per exact search draw.
    pub exact_micros: f64,
}

impl AnyPolicy {
    /// How the factorized model forgot by the end of the run (`None` for the other
    /// policies).
    pub fn forgetting(&self) -> Option<ForgettingSummary> {
        let PolicyKind::FactorizedTs(floor) = &self.kind else {
            return None;
        };
        let candidates = floor.base().sampler().forgetting();
        Some(ForgettingSummary {
            setting: candidates.setting().to_string(),
            in_force: half_life_text(candidates.half_life_in_force()),
            switches: candidates.switches(),
            candidates: candidates
                .candidates()
                .into_iter()
                .map(|(half_life, loss)| (half_life_text(half_life), loss))
                .collect(),
        })
    }

    /// For the factorized policy: compares the configured argmax with the exact one on
    /// `draws_per_segment` posterior draws of every segment (see [`ArgmaxGap`]). `None`
    /// for other policies.
    pub fn argmax_gap(&mut self, draws_per_segment: u64, seed: u64) -> Option<ArgmaxGap> {
        let floor = self.factorized_mut()?;
        let sampler = floor.base_mut().sampler_mut();
        let segments = tla_core::policy::thompson::PosteriorSampler::segments(sampler);
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let (mut exact_hits, mut gap_sum, mut gap_max) = (0u64, 0.0, 0.0f64);
        let (mut configured_time, mut exact_time) = (0.0, 0.0);
        let mut draws = 0u64;
        let clock = std::time::Instant::now();
        for segment in 0..segments {
            for _ in 0..draws_per_segment {
                let comparison =
                    sampler.compare_with_exact(segment, &mut rng, || clock.elapsed().as_secs_f64());
                configured_time += comparison.configured_seconds;
                exact_time += comparison.exact_seconds;
                let gap = (1.0 - comparison.configured / comparison.exact).max(0.0);
                if gap <= 1e-12 {
                    exact_hits += 1;
                }
                gap_sum += gap;
                gap_max = gap_max.max(gap);
                draws += 1;
            }
        }
        let n = draws.max(1) as f64;
        Some(ArgmaxGap {
            draws,
            share_exact: exact_hits as f64 / n,
            mean_gap_pct: 100.0 * gap_sum / n,
            max_gap_pct: 100.0 * gap_max,
            configured_micros: 1e6 * configured_time / n,
            exact_micros: 1e6 * exact_time / n,
        })
    }
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.kind {
            PolicyKind::Uniform($p) => $body,
            PolicyKind::IndependentTs($p) => $body,
            PolicyKind::FactorizedTs($p) => $body,
        }
    };
    (mut $self:expr, $p:ident => $body:expr) => {
        match &mut $self.kind {
            PolicyKind::Uniform($p) => $body,
            PolicyKind::IndependentTs($p) => $body,
            PolicyKind::FactorizedTs($p) => $body,
        }
    };
}

impl AnyPolicy {
    /// An outcome of a world version, in the policy's versions.
    ///
    /// # Panics
    /// If the outcome's version holds an option the policy does not know.
    fn policy_outcome(&self, outcome: &Outcome) -> Outcome {
        let version = self
            .to_policy(outcome.version)
            .expect("an outcome of a version the policy served");
        Outcome {
            version,
            ..*outcome
        }
    }
}

/// Versions are the world's: a decision of the policy is translated to the world's
/// version, and a world version the policy does not know (an option not launched) has
/// propensity 0.
impl Policy for AnyPolicy {
    fn name(&self) -> &'static str {
        dispatch!(self, p => p.name())
    }
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        let decision = dispatch!(self, p => p.decide(segment, rng));
        Decision {
            version: self.to_world(decision.version),
            ..decision
        }
    }
    fn propensity(&self, segment: usize, version: u64) -> f64 {
        match self.to_policy(version) {
            Some(version) => dispatch!(self, p => p.propensity(segment, version)),
            None => 0.0,
        }
    }
    fn model_version(&self, segment: usize) -> u64 {
        dispatch!(self, p => p.model_version(segment))
    }
    /// # Panics
    /// If the outcome's version holds an option the policy does not know.
    fn observe(&mut self, outcome: &Outcome) {
        let outcome = self.policy_outcome(outcome);
        dispatch!(mut self, p => p.observe(&outcome))
    }
    /// # Panics
    /// If the outcome's version holds an option the policy does not know.
    fn observe_at(&mut self, outcome: &Outcome, at_millis: u64) {
        let outcome = self.policy_outcome(outcome);
        dispatch!(mut self, p => p.observe_at(&outcome, at_millis))
    }
    /// # Panics
    /// If the outcome's version holds an option the policy does not know.
    fn observe_scored(&mut self, outcome: &Outcome, at_millis: u64, score_weight: f64) {
        let outcome = self.policy_outcome(outcome);
        dispatch!(mut self, p => p.observe_scored(&outcome, at_millis, score_weight))
    }
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        dispatch!(mut self, p => p.refresh_due(rng, now_millis))
    }
    fn model_bytes(&self) -> usize {
        dispatch!(self, p => p.model_bytes())
    }
}

impl PricedPolicy for AnyPolicy {
    fn skip_probability(&self, segment: usize, price: f64) -> f64 {
        dispatch!(self, p => p.skip_probability(segment, price))
    }
    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, price: f64, rng: &mut R) -> Choice {
        let choice = dispatch!(self, p => p.decide_priced(segment, price, rng));
        Choice {
            version: choice.version.map(|v| self.to_world(v)),
            ..choice
        }
    }
    fn propensity_priced(&self, segment: usize, version: u64, price: f64) -> f64 {
        match self.to_policy(version) {
            Some(version) => dispatch!(self, p => p.propensity_priced(segment, version, price)),
            None => 0.0,
        }
    }
    fn mass_priced(
        &self,
        segment: usize,
        price: f64,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        let pick_world = |version: u64| pick(self.to_world(version));
        dispatch!(self, p => p.mass_priced(segment, price, &pick_world, picked_allowed))
    }
}

/// A plan drawn from the policy (`tla simulate --mode plan`, [`platform`]): the batch
/// Thompson draws of its decision tables, in the versions of the options it knows;
/// [`AnyPolicy::make_plan`] translates the plan to the world's versions.
impl tla_core::plan::PlanModel for AnyPolicy {
    fn segments(&self) -> usize {
        self.design.segments()
    }

    fn revision(&self) -> u32 {
        self.revisions + 1
    }

    fn segment_shares(&self) -> Vec<f64> {
        let n = self.design.segments();
        vec![1.0 / n as f64; n]
    }

    fn draw_tables<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now_millis: u64,
        draws: usize,
        draw_scale: Option<f64>,
    ) -> Vec<tla_core::decision::DecisionTable> {
        use tla_core::policy::thompson::{PosteriorSampler, ThompsonPolicy};
        let segments = self.design.segments();
        match &self.kind {
            PolicyKind::FactorizedTs(policy) => {
                let base = policy.base();
                let mut sampler = base.sampler().clone();
                if let Some(scale) = draw_scale {
                    sampler.set_draw_scale(scale);
                }
                sampler.advance_clock(now_millis);
                (0..segments)
                    .map(|s| ThompsonPolicy::draw_table_of(&mut sampler, s, draws, rng))
                    .collect()
            }
            PolicyKind::IndependentTs(policy) => {
                let base = policy.base();
                let mut sampler = base.sampler().clone();
                sampler.advance_clock(now_millis);
                (0..segments)
                    .map(|s| ThompsonPolicy::draw_table_of(&mut sampler, s, draws, rng))
                    .collect()
            }
            PolicyKind::Uniform(_) => {
                let space = self.known_space();
                (0..segments)
                    .map(|_| {
                        let chosen = (0..draws.max(1))
                            .map(|_| space.sample_uniform(rng))
                            .collect();
                        tla_core::decision::DecisionTable::from_draws(chosen, 0)
                    })
                    .collect()
            }
        }
    }

    fn tables_draw_scale(&self) -> Option<f64> {
        match &self.kind {
            PolicyKind::FactorizedTs(policy) => Some(policy.base().sampler().draw_scale()),
            PolicyKind::Uniform(_) | PolicyKind::IndependentTs(_) => None,
        }
    }

    fn available(&self, _segment: usize) -> u64 {
        self.known_space().allowed_count()
    }

    fn sample_available<R: Rng + ?Sized>(&self, _segment: usize, rng: &mut R) -> u64 {
        self.known_space().sample_uniform(rng)
    }

    fn options_into(&self, version: u64, out: &mut Vec<u32>) {
        let space = self.known_space();
        out.resize(space.components(), 0);
        space.decode_into(version, out);
    }
}

impl AnyPolicy {
    /// The version space of the options the policy knows.
    fn known_space(&self) -> &tla_core::space::VersionSpace {
        match &self.view {
            Some(view) => &view.design().space,
            None => &self.design.space,
        }
    }

    /// Learns a platform's aggregates (in the world's versions), all at `at_millis`, as
    /// [`tla_core::engine::Engine::learn_results`] does: one outcome per impression
    /// ([`tla_core::plan::for_each_event`]; a conversion marks the impression it
    /// follows) and, for the factorized model, each result's mean amount once as the
    /// mean of its conversions' amounts (`FactorizedSampler::observe_mean_amount_at`).
    /// The independent model keeps sums of amounts, which the mean on each conversion
    /// adds up exactly.
    ///
    /// # Panics
    /// If a result's version holds an option the policy does not know.
    pub fn learn_results_at(&mut self, results: &[tla_core::plan::AdResult], at_millis: u64) {
        use tla_core::engine::Feedback;
        let means_apart = matches!(self.kind, PolicyKind::FactorizedTs(_));
        let mut pending: Option<Outcome> = None;
        tla_core::plan::for_each_event(results, |segment, version, feedback| match feedback {
            Feedback::Impression => {
                if let Some(outcome) = pending.take() {
                    self.observe_at(&outcome, at_millis);
                }
                pending = Some(Outcome {
                    segment,
                    version,
                    clicked: false,
                    converted: false,
                    value: 0.0,
                });
            }
            Feedback::Conversion { amount } => {
                if let Some(outcome) = pending.as_mut() {
                    outcome.clicked = true;
                    outcome.converted = true;
                    outcome.value = if means_apart {
                        0.0
                    } else {
                        amount.unwrap_or(0.0)
                    };
                }
            }
            _ => {}
        });
        if let Some(outcome) = pending {
            self.observe_at(&outcome, at_millis);
        }
        if !means_apart {
            return;
        }
        for result in results {
            let Some(mean) = result.mean_amount() else {
                continue;
            };
            let version = self
                .to_policy(result.version)
                .expect("a result of a version the policy served");
            if let PolicyKind::FactorizedTs(policy) = &mut self.kind {
                policy.base_mut().sampler_mut().observe_mean_amount_at(
                    result.segment,
                    version,
                    mean,
                    result.conversions,
                    at_millis,
                );
            }
        }
    }

    /// The plan of a period ([`tla_core::plan::make_plan_with`] over this policy), in
    /// the world's versions.
    pub fn make_plan<R: Rng + ?Sized>(
        &self,
        request: &tla_core::plan::PlanRequest<'_>,
        rng: &mut R,
    ) -> Result<tla_core::plan::Plan, tla_core::plan::PlanError> {
        let mut plan = tla_core::plan::make_plan_with(self, request, rng)?;
        for set in &mut plan.ad_sets {
            for ad in &mut set.ads {
                ad.version = self.to_world(ad.version);
            }
        }
        Ok(plan)
    }
}
