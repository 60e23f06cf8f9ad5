//! The one online loop: a segment arrives, the learner decides, the world answers, the
//! learner learns, and whatever happened is pushed to an [`Observer`] the caller
//! supplies.
//!
//! [`run`] never keeps a score and never writes output. It pushes each impression (the
//! decision with its propensity, the world's answer, the refreshes that followed) and
//! each checkpoint to the observer, the way a searcher pushes matches into a sink; the
//! plain simulation ([`crate::sim::simulate`]), the logs of the estimator validation
//! ([`crate::ope::log_impressions`]) and the campaign run
//! ([`crate::campaign::run_campaign`]) are observers of this loop. Observers compose:
//! a pair `(A, B)` of observers is an observer, and so is `&mut O`.
//!
//! What decides and learns is a [`Learner`]: every [`Policy`] is one (it learns one
//! [`Outcome`] per impression), and [`EngineLearner`] teaches a campaign's [`Engine`]
//! the events the service would (impression, cost, conversion).
//!
//! [`Streams`] owns every random stream of a run (audience, outcome, policy), seeded
//! from one seed, in one layout that serves every mode: the plain simulation, the
//! validation logs and the campaign run draw their segments, conversions and donations
//! the same way. The world's streams consume a fixed number of values per impression
//! whatever the learner does, so every learner, in every mode, run with the same seed
//! meets the same audience and the same luck (common random numbers); the policy has
//! a stream of its own. Time is carried by the loop too: each impression has its index and, when the
//! run has a [`Clock`], a simulated time in milliseconds that the learner's refresh
//! cadence sees.

use crate::flight::Flight;
use crate::world::World;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use tla_core::design::{Interactions, Objective};
use tla_core::engine::{Engine, Feedback};
use tla_core::holdout;
use tla_core::pacing::{Pacer, PacingConfig, PacingMode, PacingStatus, SkipReason};
use tla_core::policy::{
    Choice, Decision, Gate, Outcome, Policy, PricedPolicy, decide_gated, gated_mass,
};

/// Seed offsets of the streams of [`Streams::new`] (the segment stream takes the seed
/// itself).
const CONVERSION_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;
const DONATION_STREAM: u64 = 0xD1B5_4A32_D192_ED03;
const POLICY_STREAM: u64 = 0x94D0_49BB_1331_11EB;
const COST_STREAM: u64 = 0xBF58_476D_1CE4_E5B9;

/// Every random stream of one run, seeded from one seed: one stream per draw of the
/// world (the segment, the conversion, the donation), each advanced by exactly one
/// value per impression whatever the learner does, and the policy's stream. Every mode
/// (the plain simulation, the estimator validation's logs, the campaign run) uses this
/// one layout, so the same seed gives every mode the same audience.
#[derive(Debug, Clone)]
pub struct Streams {
    /// Cumulative segment probabilities; the segment is the first whose cumulative
    /// probability exceeds a uniform draw (the last if rounding leaves the total below
    /// it).
    cumulative: Vec<f64>,
    /// One uniform per impression: its segment.
    segment: Pcg64Mcg,
    /// One uniform per impression: whether it converts.
    conversion: Pcg64Mcg,
    /// One standard normal per impression, drawn whether or not it converts: the
    /// donation's log-normal noise.
    donation: Pcg64Mcg,
    /// The policy's decisions and refreshes.
    policy: Pcg64Mcg,
    /// In a run with a budget, one standard normal per opportunity, bought or not: the
    /// log-normal noise of its cost.
    cost: Pcg64Mcg,
}

impl Streams {
    /// The streams of a run at `seed` whose segments arrive with probabilities
    /// `segment_probs` (summing to 1: a world's `segment_probs`, or a validated
    /// campaign's `segment_shares`).
    ///
    /// # Panics
    /// If `segment_probs` is empty.
    pub fn new(seed: u64, segment_probs: &[f64]) -> Self {
        assert!(!segment_probs.is_empty(), "a run has at least one segment");
        let mut acc = 0.0;
        let cumulative = segment_probs
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Self {
            cumulative,
            segment: Pcg64Mcg::seed_from_u64(seed),
            conversion: Pcg64Mcg::seed_from_u64(seed ^ CONVERSION_STREAM),
            donation: Pcg64Mcg::seed_from_u64(seed ^ DONATION_STREAM),
            policy: Pcg64Mcg::seed_from_u64(seed ^ POLICY_STREAM),
            cost: Pcg64Mcg::seed_from_u64(seed ^ COST_STREAM),
        }
    }

    /// The policy's stream: its decisions and its refreshes draw from it (and a
    /// campaign run's engine its first decision tables, before the run).
    pub fn policy(&mut self) -> &mut Pcg64Mcg {
        &mut self.policy
    }

    /// The segment of the next impression.
    fn segment(&mut self) -> usize {
        let u: f64 = self.segment.random();
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }

    /// The standard normal of the next opportunity's cost.
    fn cost_noise(&mut self) -> f64 {
        self.cost.sample(StandardNormal)
    }

    /// Whether an impression that converts with probability `conversion_probability`
    /// converts and, if so, the standard normal draw of its donation.
    fn conversion(&mut self, conversion_probability: f64) -> Option<f64> {
        let u: f64 = self.conversion.random();
        let z: f64 = self.donation.sample(StandardNormal);
        (u < conversion_probability).then_some(z)
    }
}

/// The simulated clock of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// Impressions per simulated second; `None`: the run has no clock, and learners are
    /// refreshed on their event cadence only.
    pub impressions_per_second: Option<u64>,
}

impl Clock {
    /// No clock: learners see no time.
    pub fn none() -> Self {
        Self::default()
    }

    /// `rate` impressions per simulated second (at least 1).
    pub fn per_second(rate: u64) -> Self {
        Self {
            impressions_per_second: Some(rate.max(1)),
        }
    }

    /// Simulated milliseconds at the impression that follows `before` others:
    /// `before * 1000 / rate`.
    pub fn millis(&self, before: u64) -> Option<u64> {
        self.impressions_per_second
            .map(|rate| before.saturating_mul(1000) / rate)
    }
}

/// How a run goes, apart from its random streams.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Impressions to serve, unless an observer stops the run first.
    pub impressions: u64,
    /// Impression counts after which [`Observer::checkpoint`] is called, in increasing
    /// order.
    pub checkpoints: Vec<u64>,
    /// The simulated clock.
    pub clock: Clock,
    /// Spend per impression, part of each answer (0: none).
    pub cost_per_impression: f64,
    /// Whether donations are rounded to cents (at least one cent), as a payment
    /// processor reports them.
    pub donations_in_cents: bool,
    /// A budget to keep to, in a world with a flight: each impression is then an
    /// opportunity the learner may skip, and one bought costs what the flight says.
    pub pacing: Option<PacingRun>,
    /// A holdout: a share of units (each impression a new unit) served the even split.
    pub holdout: Option<HoldoutRun>,
}

/// The holdout of a run ([`tla_core::holdout`]): each impression is a new unit, held
/// out by the salted hash of its index ([`tla_core::holdout::held_out`]) and then
/// served the even split over the versions the learner knows (a uniform policy told
/// of launches as the learner is). The learner decides the others, and learns from
/// every impression, held out or not, as a campaign's engine does. With a budget each
/// arm has its own pacer ([`tla_core::pacing::PacingConfig::split_holdout`]): the
/// holdout spends its share of the budget evenly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutRun {
    /// The share of units held out, in (0, 0.5].
    pub share: f64,
    /// The salt of the assignment (a run's seed: runs at other seeds hold out other
    /// impressions).
    pub salt: u64,
}

/// The money of a run with a budget (the flight's days are its flight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingRun {
    /// How the budget is spent.
    pub mode: PacingMode,
    /// The flight budget.
    pub budget: f64,
    /// The most spent in one day.
    pub daily_cap: Option<f64>,
    /// Minimum return on spend.
    pub min_roas: Option<f64>,
}

impl RunConfig {
    /// `impressions` with no checkpoint, no clock, no spend and exact donations.
    pub fn new(impressions: u64) -> Self {
        Self {
            impressions,
            checkpoints: Vec::new(),
            clock: Clock::none(),
            cost_per_impression: 0.0,
            donations_in_cents: false,
            pacing: None,
            holdout: None,
        }
    }
}

/// When in the run an impression happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Impressions served so far, this one included (1 for the first).
    pub served: u64,
    /// Simulated milliseconds since the start ([`Clock::millis`]), if the run has a
    /// clock.
    pub now_millis: Option<u64>,
}

/// What the world answered to one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// Whether the impression converted.
    pub converted: bool,
    /// The donation (0 without a conversion).
    pub donation: f64,
    /// Spend on the impression.
    pub cost: f64,
    /// The true expected value of the version served to the segment: `P(conversion) x
    /// E[donation | conversion]`.
    pub expected_value: f64,
    /// When it happened on the learner's clock, ms ([`learner_millis`]): the time the
    /// learner learns it at (forgetting counts it).
    pub at_millis: u64,
}

/// Impressions per simulated second of the learner's clock in a world without a
/// flight (and a run without a [`Clock`]): one, so 200,000 impressions span about 2.3
/// days and 1,000,000 about 11.6, the scale of the flight worlds' two weeks.
pub const V1_IMPRESSIONS_PER_SECOND: u64 = 1;

/// The learner's clock at opportunity `before` (from 0) of a run: in a world with a
/// flight, the flight's clock at the opportunity's flight fraction
/// ([`Flight::clock`]); otherwise the run's [`Clock`], or
/// [`V1_IMPRESSIONS_PER_SECOND`] without one.
pub fn learner_millis(world: &World, config: &RunConfig, before: u64) -> u64 {
    match (&world.flight, config.clock.millis(before)) {
        (Some(flight), _) => {
            let (_, _, ms) = flight.clock(Flight::fraction(before, config.impressions));
            u64::try_from(ms).unwrap_or(0)
        }
        (None, Some(ms)) => ms,
        (None, None) => before.saturating_mul(1000) / V1_IMPRESSIONS_PER_SECOND,
    }
}

/// One impression as the loop pushes it to the observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impression {
    /// When it happened.
    pub moment: Moment,
    /// Where in the flight it happened, in a world with a flight: opportunity `t` (from
    /// 0) of a run of `T` impressions is at `(t + 0.5) / T` ([`Flight::fraction`]).
    pub flight_fraction: Option<f64>,
    /// The segment that arrived.
    pub segment: usize,
    /// The learner's decision, with its exact propensity (the holdout's, given the arm,
    /// for an impression held out).
    pub decision: Decision,
    /// Whether the impression's unit was held out ([`HoldoutRun`]).
    pub held_out: bool,
    /// What the world answered.
    pub answer: Answer,
    /// Decision distributions the learner rebuilt after learning it.
    pub refreshes: usize,
}

/// An opportunity the learner skipped, in a run with a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skip {
    /// When it happened.
    pub moment: Moment,
    /// Where in the flight it happened.
    pub flight_fraction: Option<f64>,
    /// The segment that arrived.
    pub segment: usize,
    /// Why it was skipped.
    pub reason: SkipReason,
    /// The exact probability of the skip.
    pub propensity: f64,
    /// Whether the opportunity's unit was held out ([`HoldoutRun`]).
    pub held_out: bool,
}

/// Whether the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// Serve the next impression.
    #[default]
    Continue,
    /// End the run after this impression.
    Stop,
}

impl Flow {
    /// `Stop` if either says stop.
    pub fn and(self, other: Flow) -> Flow {
        if self == Flow::Stop || other == Flow::Stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// What decides and learns in a run.
pub trait Learner {
    /// Chooses a version for an impression of `segment`, with its exact propensity.
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision;

    /// The probability that [`Learner::decide`] chooses `version` for `segment` now.
    fn propensity(&self, segment: usize, version: u64) -> f64;

    /// Learns what the world answered to `decision` for `segment`.
    fn learn(&mut self, segment: usize, decision: &Decision, answer: &Answer);

    /// Rebuilds the decision distributions that are due at `now_millis` (`None`: the
    /// run has no clock); returns how many.
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize;

    /// Chooses a version or a skip under the pacing rule's `gate`, with the exact
    /// propensity of the outcome ([`tla_core::policy::decide_gated`]).
    fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice;

    /// The probability of buying an opportunity of `segment` priced at `price`.
    fn buy_probability(&self, segment: usize, price: f64) -> f64;

    /// The probability that [`Learner::decide_gated`] buys a version for which `pick`
    /// holds (`picked_allowed`: how many versions available to `segment` it holds for).
    fn gated_mass(
        &self,
        segment: usize,
        gate: Gate,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64;

    /// Called before each impression of a world with a flight, at its flight fraction
    /// `f`: a learner that learns of options as they launch ([`Launch`]) is revised
    /// here; returns whether it was. Others learn of nothing (the default), and may only
    /// play worlds whose options all exist from the start.
    fn launch_due<R: Rng + ?Sized>(&mut self, _world: &World, _f: f64, _rng: &mut R) -> bool {
        false
    }

    /// Called once after a run: a learner revised by launches takes back every option.
    fn end_flight<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

/// How a policy learns of options that launch during a flight ([`crate::launch`]):
/// through the revision path of a running campaign.
pub trait Launch {
    /// At flight fraction `f` of `world`, revises the policy when options launched that
    /// it does not know (and, the first time, leaves it only the options launched by
    /// `f`); returns whether it was revised.
    fn launch_due<R: Rng + ?Sized>(&mut self, world: &World, f: f64, rng: &mut R) -> bool;

    /// After a run: the policy over every option again, in the world's order.
    fn end_flight<R: Rng + ?Sized>(&mut self, rng: &mut R);
}

impl Launch for crate::AnyPolicy {
    fn launch_due<R: Rng + ?Sized>(&mut self, world: &World, f: f64, rng: &mut R) -> bool {
        crate::AnyPolicy::launch_due(self, world, f, rng)
    }

    fn end_flight<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        crate::AnyPolicy::end_flight(self, rng)
    }
}

/// A policy learns one outcome per impression: converted or not, with its donation.
impl<P: PricedPolicy + Launch> Learner for P {
    fn launch_due<R: Rng + ?Sized>(&mut self, world: &World, f: f64, rng: &mut R) -> bool {
        Launch::launch_due(self, world, f, rng)
    }

    fn end_flight<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        Launch::end_flight(self, rng)
    }

    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        Policy::decide(self, segment, rng)
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        Policy::propensity(self, segment, version)
    }

    fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice {
        decide_gated(self, segment, gate, rng)
    }

    fn buy_probability(&self, segment: usize, price: f64) -> f64 {
        1.0 - self.skip_probability(segment, price)
    }

    fn gated_mass(
        &self,
        segment: usize,
        gate: Gate,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        gated_mass(self, segment, gate, pick, picked_allowed)
    }

    fn learn(&mut self, segment: usize, decision: &Decision, answer: &Answer) {
        let outcome = Outcome {
            segment,
            version: decision.version,
            clicked: answer.converted,
            converted: answer.converted,
            value: answer.donation,
        };
        self.observe_at(&outcome, answer.at_millis);
    }

    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        Policy::refresh_due(self, rng, now_millis)
    }
}

/// A campaign's [`Engine`] as the service feeds it: each impression is learned as an
/// impression event, then a cost event when it cost something, then a conversion
/// event with its donation when it converted.
#[derive(Debug)]
pub struct EngineLearner<'a> {
    /// The engine taught.
    pub engine: &'a mut Engine,
}

impl Learner for EngineLearner<'_> {
    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        self.engine.decide(segment, rng)
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        self.engine.propensity(segment, version)
    }

    fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice {
        self.engine.decide_gated(segment, gate, rng)
    }

    fn buy_probability(&self, segment: usize, price: f64) -> f64 {
        self.engine.buy_probability(segment, price)
    }

    fn gated_mass(
        &self,
        segment: usize,
        gate: Gate,
        pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        self.engine.gated_mass(segment, gate, pick, picked_allowed)
    }

    fn learn(&mut self, segment: usize, decision: &Decision, answer: &Answer) {
        let (version, at) = (decision.version, answer.at_millis);
        self.engine
            .learn_at(segment, version, Feedback::Impression, at);
        if answer.cost > 0.0 {
            let amount = answer.cost;
            self.engine
                .learn_at(segment, version, Feedback::Cost { amount }, at);
        }
        if answer.converted {
            let amount = answer.donation;
            self.engine.learn_at(
                segment,
                version,
                Feedback::Conversion {
                    amount: Some(amount),
                },
                at,
            );
        }
    }

    /// Without a clock the engine's time stands at 0: only its event cadence refreshes.
    fn refresh_due<R: Rng + ?Sized>(&mut self, rng: &mut R, now_millis: Option<u64>) -> usize {
        self.engine.refresh_due(rng, now_millis.unwrap_or(0))
    }
}

/// What a run tells its caller, as it happens. Every method has a default that does
/// nothing, so an observer implements only what it needs.
pub trait Observer<L: ?Sized> {
    /// Before the first impression.
    fn begin(&mut self) {}

    /// Before each decision, with the learner whose decision distribution is about to be
    /// used (to record, say, the propensity it gives some version at that moment).
    fn before_decision(&mut self, _learner: &L, _segment: usize) {}

    /// After each impression has been learned and the due refreshes done.
    fn impression(&mut self, _impression: &Impression) -> Flow {
        Flow::Continue
    }

    /// After an opportunity the learner skipped (a run with a budget).
    fn skip(&mut self, _skip: &Skip) -> Flow {
        Flow::Continue
    }

    /// In a run with a budget, where its spend stands: before each checkpoint and
    /// before [`Observer::finish`].
    fn paced(&mut self, _status: &PacingStatus) {}

    /// After the impression that brings the count served to one of
    /// [`RunConfig::checkpoints`].
    fn checkpoint(&mut self, _moment: &Moment) -> Flow {
        Flow::Continue
    }

    /// After the last impression, with the learner as the run leaves it and the number
    /// of impressions served.
    fn finish(&mut self, _learner: &L, _served: u64) {}
}

impl<L: ?Sized, O: Observer<L> + ?Sized> Observer<L> for &mut O {
    fn begin(&mut self) {
        (**self).begin();
    }
    fn before_decision(&mut self, learner: &L, segment: usize) {
        (**self).before_decision(learner, segment);
    }
    fn impression(&mut self, impression: &Impression) -> Flow {
        (**self).impression(impression)
    }
    fn skip(&mut self, skip: &Skip) -> Flow {
        (**self).skip(skip)
    }
    fn paced(&mut self, status: &PacingStatus) {
        (**self).paced(status);
    }
    fn checkpoint(&mut self, moment: &Moment) -> Flow {
        (**self).checkpoint(moment)
    }
    fn finish(&mut self, learner: &L, served: u64) {
        (**self).finish(learner, served);
    }
}

/// An observer that may be absent: `None` sees nothing and never stops the run.
impl<L: ?Sized, O: Observer<L>> Observer<L> for Option<O> {
    fn begin(&mut self) {
        if let Some(o) = self {
            o.begin();
        }
    }
    fn before_decision(&mut self, learner: &L, segment: usize) {
        if let Some(o) = self {
            o.before_decision(learner, segment);
        }
    }
    fn impression(&mut self, impression: &Impression) -> Flow {
        self.as_mut()
            .map_or(Flow::Continue, |o| o.impression(impression))
    }
    fn skip(&mut self, skip: &Skip) -> Flow {
        self.as_mut().map_or(Flow::Continue, |o| o.skip(skip))
    }
    fn paced(&mut self, status: &PacingStatus) {
        if let Some(o) = self {
            o.paced(status);
        }
    }
    fn checkpoint(&mut self, moment: &Moment) -> Flow {
        self.as_mut()
            .map_or(Flow::Continue, |o| o.checkpoint(moment))
    }
    fn finish(&mut self, learner: &L, served: u64) {
        if let Some(o) = self {
            o.finish(learner, served);
        }
    }
}

/// Both observers see everything, the first first; the run stops if either asks.
impl<L: ?Sized, A: Observer<L>, B: Observer<L>> Observer<L> for (A, B) {
    fn begin(&mut self) {
        self.0.begin();
        self.1.begin();
    }
    fn before_decision(&mut self, learner: &L, segment: usize) {
        self.0.before_decision(learner, segment);
        self.1.before_decision(learner, segment);
    }
    fn impression(&mut self, impression: &Impression) -> Flow {
        let first = self.0.impression(impression);
        first.and(self.1.impression(impression))
    }
    fn skip(&mut self, skip: &Skip) -> Flow {
        let first = self.0.skip(skip);
        first.and(self.1.skip(skip))
    }
    fn paced(&mut self, status: &PacingStatus) {
        self.0.paced(status);
        self.1.paced(status);
    }
    fn checkpoint(&mut self, moment: &Moment) -> Flow {
        let first = self.0.checkpoint(moment);
        first.and(self.1.checkpoint(moment))
    }
    fn finish(&mut self, learner: &L, served: u64) {
        self.0.finish(learner, served);
        self.1.finish(learner, served);
    }
}

/// Calls a function with the impressions served every `every` impressions and once at
/// the end of the run (for a progress bar).
#[derive(Debug)]
pub struct Progress<F> {
    every: u64,
    report: F,
}

impl<F: FnMut(u64)> Progress<F> {
    /// Calls `report(served)` every `every` impressions (at least 1) and at the end.
    pub fn new(every: u64, report: F) -> Self {
        Self {
            every: every.max(1),
            report,
        }
    }
}

impl<L: ?Sized, F: FnMut(u64)> Observer<L> for Progress<F> {
    fn impression(&mut self, impression: &Impression) -> Flow {
        if impression.moment.served % self.every == 0 {
            (self.report)(impression.moment.served);
        }
        Flow::Continue
    }
    fn skip(&mut self, skip: &Skip) -> Flow {
        if skip.moment.served % self.every == 0 {
            (self.report)(skip.moment.served);
        }
        Flow::Continue
    }
    fn finish(&mut self, _learner: &L, served: u64) {
        (self.report)(served);
    }
}

/// Runs `learner` online against `world` for `config.impressions` impressions (fewer if
/// the observer stops the run), drawing from `streams`, and pushes every impression and
/// checkpoint to `observer`. Returns the number of impressions served.
///
/// Per impression: the segment is drawn, [`Observer::before_decision`] is called, the
/// learner decides from the policy stream, the world answers (conversion with its
/// donation, the spend, the version's true expected value), the learner learns the
/// answer and rebuilds what is due at the impression's simulated time, then
/// [`Observer::impression`] and, at a checkpoint, [`Observer::checkpoint`] are called.
///
/// In a world with a flight ([`crate::flight`]) each impression happens at its flight
/// fraction: the truth drifts, and an option exists only from its launch. Before each
/// impression the learner is told the fraction ([`Learner::launch_due`]): it starts
/// with the options launched at the start and learns of each other option when it
/// launches, through a revision ([`crate::launch`]), so it never serves a version that
/// does not exist and its propensities stay exact as they are. After the run it takes
/// back every option ([`Learner::end_flight`]). A v1 world draws exactly as before.
///
/// # Panics
/// If the world's space cannot decode a version the learner chose, or if in a world
/// with a flight the learner serves a version holding an option not launched (a
/// learner that does not learn of launches, in a world with launches).
pub fn run<L: Learner, O: Observer<L>>(
    world: &World,
    streams: &mut Streams,
    learner: &mut L,
    config: &RunConfig,
    mut observer: O,
) -> u64 {
    let sigma = world.sigma();
    let half_sigma2 = 0.5 * sigma * sigma;
    let mut options = vec![0u32; world.space.components()];
    let mut checkpoints = config.checkpoints.iter().copied().peekable();
    let mut served = 0;
    let share = config.holdout.map_or(0.0, |h| h.share);
    let salt = config.holdout.map_or(0, |h| h.salt).to_le_bytes();
    // The holdout arm: the even split over the versions known, told of launches.
    let mut holdout_arm = config.holdout.map(|_| {
        let design = world.design(
            Interactions::segment_only(world.space.components()),
            Objective::Value,
        );
        crate::build_policy(
            crate::PolicyChoice::Uniform,
            &design,
            &crate::default_settings(),
            0,
        )
    });
    let mut holdout_pacer = None;
    let mut pacer = config.pacing.map(|p| {
        let flight = world
            .flight
            .as_ref()
            .expect("a run with a budget plays a world with a flight");
        let pacing = PacingConfig {
            mode: p.mode,
            budget: p.budget,
            daily_cap: p.daily_cap,
            start_ms: 0,
            end_ms: flight.length_ms(),
            min_roas: p.min_roas,
            // The campaign team's expected traffic by hour, as it declares its
            // segment shares.
            hourly_traffic: flight.hour_weights.clone().try_into().ok(),
        };
        if share > 0.0 {
            let (policy, holdout) = pacing.split_holdout(share);
            holdout_pacer = Some(Pacer::new(holdout, world.segments()));
            Pacer::new(policy, world.segments())
        } else {
            Pacer::new(pacing, world.segments())
        }
    });
    let mut last_ms = 0;
    observer.begin();
    while served < config.impressions {
        let now_millis = config.clock.millis(served);
        let flight_fraction = world
            .flight
            .as_ref()
            .map(|_| Flight::fraction(served, config.impressions));
        served += 1;
        let moment = Moment { served, now_millis };
        let segment = streams.segment();
        if let Some(f) = flight_fraction {
            learner.launch_due(world, f, streams.policy());
            if let Some(arm) = holdout_arm.as_mut() {
                arm.launch_due(world, f, streams.policy());
            }
        }
        // Each impression a new unit: its index, hashed with the run's salt.
        let held_out = share > 0.0 && holdout::held_out(&salt, &served.to_le_bytes(), share);
        observer.before_decision(learner, segment);

        // The decision: a version with its propensity and the impression's cost; a skip
        // (a run with a budget only) is pushed and the loop goes on.
        let (decision, cost) = match (pacer.as_mut(), flight_fraction, world.flight.as_ref()) {
            (Some(policy_pacer), Some(f), Some(flight)) => {
                let (_, hour, ms) = flight.clock(f);
                last_ms = ms;
                let pacer = match (held_out, holdout_pacer.as_mut()) {
                    (true, Some(holdout)) => holdout,
                    _ => &mut *policy_pacer,
                };
                if pacer.replan_due(ms) {
                    pacer.replan(ms, &|s, price| learner.buy_probability(s, price));
                }
                let bid = pacer.bid(segment, ms);
                let choice = match (held_out, &holdout_arm) {
                    (true, Some(arm)) => decide_gated(arm, segment, bid.gate, streams.policy()),
                    _ => learner.decide_gated(segment, bid.gate, streams.policy()),
                };
                let z = streams.cost_noise();
                match choice.version {
                    Some(version) => {
                        let cost = flight.expected_cost(segment, hour)
                            * (flight.cost_sigma * z - 0.5 * flight.cost_sigma * flight.cost_sigma)
                                .exp();
                        pacer.reserve(bid.reserve, ms);
                        pacer.settle(bid.reserve, segment, hour, cost, ms);
                        let decision = Decision {
                            version,
                            propensity: choice.propensity,
                            model_version: choice.model_version,
                        };
                        (decision, cost)
                    }
                    None => {
                        // The world's streams advance as for an impression.
                        streams.conversion(0.0);
                        let skip = Skip {
                            moment,
                            flight_fraction,
                            segment,
                            reason: bid.skip_reason,
                            propensity: choice.propensity,
                            held_out,
                        };
                        let flow = observer.skip(&skip);
                        let at_checkpoint = pass_checkpoints(&mut checkpoints, served);
                        if stop_after(
                            flow,
                            at_checkpoint,
                            &mut observer,
                            &moment,
                            Some(&*policy_pacer),
                            ms,
                        ) {
                            break;
                        }
                        continue;
                    }
                }
            }
            _ => {
                let decision = match (held_out, &holdout_arm) {
                    (true, Some(arm)) => Policy::decide(arm, segment, streams.policy()),
                    _ => learner.decide(segment, streams.policy()),
                };
                (decision, config.cost_per_impression)
            }
        };
        world.space.decode_into(decision.version, &mut options);

        let conversion_probability = match flight_fraction {
            Some(f) => {
                assert!(
                    world.available_at(&options, f),
                    "version {} holds an option not launched at flight fraction {f}; the learner must learn of launches (Learner::launch_due)",
                    decision.version
                );
                world.conversion_probability_at(segment, &options, f)
            }
            None => world.conversion_probability(segment, &options),
        };
        let log_mean = world.log_mean_amount(segment, options[world.value_component]);
        let drawn = streams.conversion(conversion_probability);
        let donation = match drawn {
            Some(z) => {
                let amount = (log_mean - half_sigma2 + sigma * z).exp();
                if config.donations_in_cents {
                    (amount * 100.0).round().max(1.0) / 100.0
                } else {
                    amount
                }
            }
            None => 0.0,
        };
        let answer = Answer {
            converted: drawn.is_some(),
            donation,
            cost,
            expected_value: conversion_probability * log_mean.exp(),
            at_millis: learner_millis(world, config, served - 1),
        };
        learner.learn(segment, &decision, &answer);
        let refreshes = learner.refresh_due(streams.policy(), now_millis);

        let flow = observer.impression(&Impression {
            moment,
            flight_fraction,
            segment,
            decision,
            held_out,
            answer,
            refreshes,
        });
        let at_checkpoint = pass_checkpoints(&mut checkpoints, served);
        if stop_after(
            flow,
            at_checkpoint,
            &mut observer,
            &moment,
            pacer.as_ref(),
            last_ms,
        ) {
            break;
        }
    }
    if let Some(pacer) = &pacer {
        observer.paced(&pacer.status(last_ms));
    }
    observer.finish(learner, served);
    if world.flight.is_some() {
        learner.end_flight(streams.policy());
    }
    served
}

/// Moves past the checkpoints at or before `served`; whether one is at it. A checkpoint
/// at this impression is pushed once; one already passed (0, a repeat, one out of
/// order) is skipped rather than stopping the later ones.
fn pass_checkpoints(
    checkpoints: &mut std::iter::Peekable<impl Iterator<Item = u64>>,
    served: u64,
) -> bool {
    let mut at_checkpoint = false;
    while let Some(&at) = checkpoints.peek() {
        if at > served {
            break;
        }
        at_checkpoint |= at == served;
        checkpoints.next();
    }
    at_checkpoint
}

/// Pushes the checkpoint (with the pacer's status first) if there is one; whether the
/// run stops.
fn stop_after<L, O: Observer<L>>(
    flow: Flow,
    at_checkpoint: bool,
    observer: &mut O,
    moment: &Moment,
    pacer: Option<&Pacer>,
    now_ms: i64,
) -> bool {
    let mut flow = flow;
    if at_checkpoint {
        if let Some(pacer) = pacer {
            observer.paced(&pacer.status(now_ms));
        }
        flow = flow.and(observer.checkpoint(moment));
    }
    flow == Flow::Stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicyChoice, build_policy};
    use tla_core::design::{Interactions, Objective};

    fn small() -> World {
        World::from_json(include_str!("../../../worlds/small.json")).unwrap()
    }

    #[derive(Default)]
    struct Tally {
        impressions: Vec<Impression>,
        checkpoints: Vec<u64>,
        begun: bool,
        finished: Option<u64>,
        stop_after: Option<u64>,
    }

    impl<L> Observer<L> for Tally {
        fn begin(&mut self) {
            self.begun = true;
        }
        fn impression(&mut self, impression: &Impression) -> Flow {
            self.impressions.push(*impression);
            if Some(impression.moment.served) == self.stop_after {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        fn checkpoint(&mut self, moment: &Moment) -> Flow {
            self.checkpoints.push(moment.served);
            Flow::Continue
        }
        fn finish(&mut self, _learner: &L, served: u64) {
            self.finished = Some(served);
        }
    }

    fn policy(world: &World, seed: u64) -> crate::AnyPolicy {
        let design = world.design(Interactions::segment_only(4), Objective::Value);
        build_policy(
            PolicyChoice::FactorizedTs,
            &design,
            &Default::default(),
            seed,
        )
    }

    #[test]
    fn pushes_every_impression_and_checkpoint_and_can_be_stopped() {
        let world = small();
        let config = RunConfig {
            checkpoints: vec![10, 250, 400],
            clock: Clock::per_second(100),
            ..RunConfig::new(300)
        };
        let mut tally = Tally::default();
        let mut learner = policy(&world, 1);
        let served = run(
            &world,
            &mut Streams::new(1, &world.segment_probs),
            &mut learner,
            &config,
            &mut tally,
        );
        assert_eq!(served, 300);
        assert!(tally.begun);
        assert_eq!(tally.finished, Some(300));
        assert_eq!(tally.checkpoints, vec![10, 250]);
        let served: Vec<u64> = tally.impressions.iter().map(|i| i.moment.served).collect();
        assert_eq!(served, (1..=300).collect::<Vec<_>>());
        // The clock: 100 impressions a second, the time of the impression after `n`.
        assert_eq!(tally.impressions[0].moment.now_millis, Some(0));
        assert_eq!(tally.impressions[150].moment.now_millis, Some(1500));
        for i in &tally.impressions {
            assert!(i.decision.propensity > 0.0 && i.decision.propensity <= 1.0);
            assert_eq!(i.answer.converted, i.answer.donation > 0.0);
        }

        let mut stopping = Tally {
            stop_after: Some(42),
            ..Tally::default()
        };
        let served = run(
            &world,
            &mut Streams::new(1, &world.segment_probs),
            &mut policy(&world, 1),
            &config,
            &mut stopping,
        );
        assert_eq!(served, 42);
        assert_eq!(stopping.finished, Some(42));
        assert_eq!(stopping.checkpoints, vec![10]);
        // The same seed, the same first 42 impressions.
        assert_eq!(stopping.impressions[..], tally.impressions[..42]);
    }

    /// Common random numbers: two learners run with the same seed meet the same
    /// segments and, where they serve the same version, the same luck.
    #[test]
    fn the_same_seed_gives_every_learner_the_same_audience_and_luck() {
        let world = small();
        let design = world.design(Interactions::segment_only(4), Objective::Value);
        // The learner's own seed draws its first tables; the run's seed the streams.
        let impressions = |choice, learner_seed, run_seed| {
            let mut tally = Tally::default();
            let mut learner = build_policy(choice, &design, &Default::default(), learner_seed);
            let mut streams = Streams::new(run_seed, &world.segment_probs);
            run(
                &world,
                &mut streams,
                &mut learner,
                &RunConfig::new(2_000),
                &mut tally,
            );
            tally.impressions
        };
        let segments = |run: &[Impression]| run.iter().map(|i| i.segment).collect::<Vec<_>>();
        let uniform = impressions(PolicyChoice::Uniform, 5, 5);
        let learner = impressions(PolicyChoice::FactorizedTs, 5, 5);
        let other_learner = impressions(PolicyChoice::FactorizedTs, 6, 5);
        assert_eq!(segments(&uniform), segments(&learner));
        assert_eq!(segments(&learner), segments(&other_learner));
        let same_version: Vec<(&Impression, &Impression)> = learner
            .iter()
            .zip(&other_learner)
            .filter(|(a, b)| a.decision.version == b.decision.version)
            .collect();
        assert!(same_version.len() > 100, "{}", same_version.len());
        for (a, b) in same_version {
            assert_eq!(a.answer, b.answer);
        }
        let other_seed = impressions(PolicyChoice::FactorizedTs, 5, 6);
        assert_ne!(
            segments(&learner),
            segments(&other_seed),
            "another seed, another audience"
        );
    }

    /// Common random numbers across modes: a campaign run
    /// ([`crate::campaign::run_campaign`]) and a plain simulation of the same world
    /// (the loop [`crate::sim::simulate`] runs: a policy, [`Streams::new`] over the
    /// world's segment probabilities) at the same seed meet the same audience, and
    /// where they serve a segment the same version, the same luck.
    #[test]
    fn a_campaign_run_and_a_plain_simulation_meet_the_same_audience() {
        use crate::campaign::{CampaignRunConfig, run_campaign};
        use crate::generate::{segment_truths, world_for};
        use tla_core::spec::CampaignSpec;

        let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))
            .unwrap()
            .validate()
            .unwrap();
        let world = world_for(campaign.design(), campaign.segment_shares(), 3);
        let (impressions, seed) = (3_000, 11);
        let campaign_run = run_campaign(
            &campaign,
            &world,
            &segment_truths(&world),
            &CampaignRunConfig::new(impressions, seed),
            |_| {},
        );

        let design = world.design(Interactions::segment_only(4), Objective::Value);
        let mut learner = build_policy(PolicyChoice::Uniform, &design, &Default::default(), 1);
        let mut plain = Tally::default();
        run(
            &world,
            &mut Streams::new(seed, &world.segment_probs),
            &mut learner,
            &RunConfig::new(impressions),
            &mut plain,
        );

        let campaign_segments: Vec<usize> = campaign_run.rows.iter().map(|r| r.segment).collect();
        let plain_segments: Vec<usize> = plain.impressions.iter().map(|i| i.segment).collect();
        assert_eq!(campaign_segments.len(), 3_000);
        assert_eq!(campaign_segments, plain_segments);
        assert!(
            (0..world.segments()).all(|s| campaign_segments.contains(&s)),
            "every segment arrives"
        );

        // The same luck: the campaign run's donations are the plain run's in cents.
        let same_version: Vec<_> = campaign_run
            .rows
            .iter()
            .zip(&plain.impressions)
            .filter(|(row, i)| row.action == i.decision.version)
            .collect();
        assert!(same_version.len() > 50, "{}", same_version.len());
        for (row, i) in same_version {
            let in_cents = if i.answer.converted {
                (i.answer.donation * 100.0).round().max(1.0) / 100.0
            } else {
                0.0
            };
            assert_eq!(row.reward, in_cents);
        }
    }

    #[test]
    fn donations_in_cents_are_whole_cents() {
        let world = small();
        let config = RunConfig {
            donations_in_cents: true,
            cost_per_impression: 0.01,
            ..RunConfig::new(5_000)
        };
        let mut tally = Tally::default();
        run(
            &world,
            &mut Streams::new(2, &world.segment_probs),
            &mut policy(&world, 2),
            &config,
            &mut tally,
        );
        let donations: Vec<f64> = tally
            .impressions
            .iter()
            .filter(|i| i.answer.converted)
            .map(|i| i.answer.donation)
            .collect();
        assert!(!donations.is_empty());
        for d in donations {
            assert!(
                d >= 0.01 && ((d * 100.0).round() - d * 100.0).abs() < 1e-6,
                "{d}"
            );
        }
        assert!(tally.impressions.iter().all(|i| i.answer.cost == 0.01));
    }
}
