//! The plain simulation: a policy run online against a world file ([`crate::online`]'s
//! loop), scored as a percentage of the oracle that knows the truth, with its learning
//! curve.
//!
//! [`Scorer`] is the observer that keeps the score; [`simulate`] runs the loop with it.
//! With a budget ([`SimConfig::pacing`]) each impression is an opportunity the learner
//! may skip, and [`BudgetScorer`] scores the run against the budget oracle of the
//! world's flight (`pct_of_budget_oracle`, the hindsight fractional knapsack over the
//! run's own opportunities), with its spend against the budget and the daily plan.
//! Every policy run with the same seed meets the same audience and the same luck
//! ([`Streams::new`]), so the oracle's and the even split's values are the same across
//! policies and the difference between two policies is not the audience's.
//!
//! With a holdout ([`SimConfig::holdout`]) a share of the impressions is served the
//! even split, and [`HoldoutScorer`] follows the lift of the policy against it at
//! equally spaced looks, with the fixed-horizon interval and the confidence sequence of
//! [`tla_core::holdout`], and when each first excluded zero; [`holdout_runs`] repeats
//! such runs over seeds and counts the runs whose interval excluded zero at some look
//! (an A/A check when the policy is the even split too). The other scores then count
//! both arms, as a campaign with a holdout serves them.

use crate::flight::{DriftTarget, Flight, fractional_knapsack};
use crate::online::{
    self, Flow, HoldoutRun, Impression, Moment, Observer, PacingRun, Progress, RunConfig, Skip,
    Streams,
};
use crate::world::World;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use tla_core::holdout::{HoldoutLift, HoldoutTracker, LiftInterval};
use tla_core::pacing::PacingStatus;
use tla_core::policy::{Policy, PricedPolicy};

/// How to run a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Impressions to simulate.
    pub impressions: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Impression counts at which the learning curve is recorded (the last impression
    /// is always recorded).
    pub checkpoints: Vec<u64>,
    /// A budget to keep to (a world with a flight only): the impressions are then
    /// opportunities, each bought or skipped.
    pub pacing: Option<PacingRun>,
    /// A holdout served the even split, scored by a [`HoldoutScorer`].
    pub holdout: Option<HoldoutRun>,
    /// Equally spaced looks at the holdout's lift (opportunities `k T / looks`).
    pub looks: u64,
}

/// Looks unless told otherwise, at the holdout's lift in a run and at every estimator
/// in the validation of `tla evaluate --world`: a month read daily.
pub const DEFAULT_LOOKS: usize = 30;

impl SimConfig {
    /// A run of `impressions` with the default checkpoints (1k, 10k, 50k, 100k, 200k,
    /// 500k, 1M, 2M, 5M, 10M, ... below `impressions`).
    pub fn new(impressions: u64, seed: u64) -> Self {
        let mut checkpoints = Vec::new();
        let mut decade = 1_000u64;
        while decade < impressions {
            for m in [1, 2, 5] {
                let c = decade * m;
                if c < impressions && !(decade == 1_000 && m != 1) && !(decade == 10_000 && m == 2)
                {
                    checkpoints.push(c);
                }
            }
            decade = decade.saturating_mul(10);
        }
        checkpoints.push(impressions);
        checkpoints.dedup();
        Self {
            impressions,
            seed,
            checkpoints,
            pacing: None,
            holdout: None,
            looks: DEFAULT_LOOKS as u64,
        }
    }
}

/// One point of the learning curve.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checkpoint {
    /// Impressions so far.
    pub impressions: u64,
    /// Cumulative % of oracle (expected) from the first impression.
    pub pct_of_oracle_expected: f64,
    /// % of oracle (expected) over the impressions since the previous checkpoint.
    pub window_pct_of_oracle_expected: f64,
    /// With a budget: spend so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// With a budget: opportunities bought so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bought: Option<u64>,
    /// With a budget: the price of money at the checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_of_money: Option<f64>,
}

/// What a simulation measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimReport {
    /// World name.
    pub world: String,
    /// Policy name.
    pub policy: String,
    /// Impressions simulated.
    pub impressions: u64,
    /// Seed.
    pub seed: u64,
    /// `100 * sum EV(chosen) / sum EV(oracle)` over the same impressions.
    pub pct_of_oracle_expected: f64,
    /// `100 * sum donations drawn / sum EV(oracle)`.
    pub pct_of_oracle_realized: f64,
    /// The even split's expected value as % of oracle on the same impressions.
    pub uniform_pct_of_oracle_expected: f64,
    /// Conversions drawn.
    pub conversions: u64,
    /// Donations drawn, summed.
    pub value: f64,
    /// Expected value of the chosen versions, summed.
    pub expected_value: f64,
    /// Oracle's expected value on the same impressions, summed.
    pub oracle_expected_value: f64,
    /// Distinct versions served.
    pub versions_served: u64,
    /// Decision distributions rebuilt.
    pub refreshes: u64,
    /// Mean logged propensity.
    pub mean_propensity: f64,
    /// Smallest logged propensity.
    pub min_propensity: f64,
    /// Wall time of the loop, seconds (excludes oracle precomputation).
    pub seconds: f64,
    /// Impressions per second of the loop (decide + outcome + learn + refresh), one thread.
    pub impressions_per_second: f64,
    /// Bytes of model state at the end.
    pub model_bytes: usize,
    /// Learning curve.
    pub learning_curve: Vec<Checkpoint>,
    /// With a budget: the budget's score (its fields sit beside the others in JSON).
    /// The fields above then count the impressions bought: `pct_of_oracle_expected`
    /// is how good the versions bought were, against the oracle's on the same
    /// opportunities.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetScore>,
    /// In a world with a flight: how fast the share of the oracle recovered after each
    /// drift term ([`DriftRecovery`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<DriftRecovery>,
    /// With a holdout: the policy against it ([`HoldoutScorer`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutReport>,
}

/// How fast the share of the oracle came back after one drift term of a flight.
///
/// The run is cut in [`RECOVERY_BUCKETS`] equal buckets of impressions. The level
/// before the drift is the % of oracle (expected) over the buckets in the
/// [`RECOVERY_WINDOW`] of the flight before the drift starts; after it, the % of oracle
/// over a trailing window of the same length is followed from the drift's start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriftRecovery {
    /// What drifted: `component[option]` or `segment[index]`.
    pub target: String,
    /// Flight fraction where the drift starts (its first point).
    pub start_fraction: f64,
    /// Flight fraction where it stops moving (its last point).
    pub end_fraction: f64,
    /// % of oracle (expected) over the window before the drift.
    pub before_pct: f64,
    /// Lowest trailing-window % of oracle from the drift's start to its recovery (or
    /// the end of the run).
    pub dip_pct: f64,
    /// Impressions from the drift's end until the trailing window regained the level
    /// before it (0 if it never fell below by then); `None`: not by the end of the run.
    pub recovered_after_impressions: Option<u64>,
}

/// Buckets the run is cut into to follow recovery after drift.
pub const RECOVERY_BUCKETS: usize = 400;
/// The window, as a flight fraction, of the level before a drift and of the trailing
/// level after it.
pub const RECOVERY_WINDOW: f64 = 0.04;

/// The observer measuring [`DriftRecovery`]: expected value and oracle per bucket.
#[derive(Debug)]
pub struct RecoveryScorer<'a> {
    truth: &'a Truth,
    impressions: u64,
    expected: Vec<f64>,
    oracle: Vec<f64>,
}

impl<'a> RecoveryScorer<'a> {
    /// A scorer of a run of `impressions` against `truth`.
    pub fn new(truth: &'a Truth, impressions: u64) -> Self {
        Self {
            truth,
            impressions: impressions.max(1),
            expected: vec![0.0; RECOVERY_BUCKETS],
            oracle: vec![0.0; RECOVERY_BUCKETS],
        }
    }

    fn bucket(&self, served: u64) -> usize {
        (((served - 1) as u128 * RECOVERY_BUCKETS as u128 / self.impressions as u128) as usize)
            .min(RECOVERY_BUCKETS - 1)
    }

    /// The recovery after each drift term of `world`'s flight (empty without one).
    pub fn into_recovery(self, world: &World) -> Vec<DriftRecovery> {
        let Some(flight) = &world.flight else {
            return Vec::new();
        };
        let per_bucket = 1.0 / RECOVERY_BUCKETS as f64;
        let window = ((RECOVERY_WINDOW / per_bucket).round() as usize).max(1);
        let pct = |from: usize, to: usize| {
            let e: f64 = self.expected[from..to].iter().sum();
            let o: f64 = self.oracle[from..to].iter().sum();
            if o > 0.0 { 100.0 * e / o } else { 0.0 }
        };
        let bucket_of = |f: f64| ((f / per_bucket).floor().max(0.0) as usize).min(RECOVERY_BUCKETS);
        flight
            .drift
            .iter()
            .map(|drift| {
                let start = drift.points[0].0;
                let end = drift.points[drift.points.len() - 1].0;
                let (b0, b1) = (bucket_of(start), bucket_of(end));
                let before_pct = pct(b0.saturating_sub(window), b0.max(1));
                let mut dip_pct = f64::INFINITY;
                let mut recovered = None;
                for b in (b0 + 1)..=RECOVERY_BUCKETS {
                    let level = pct(b.saturating_sub(window), b);
                    if b > b1 && level >= before_pct {
                        let impressions =
                            (b - b1.min(b)) as f64 * per_bucket * self.impressions as f64;
                        recovered = Some(if dip_pct >= before_pct {
                            0
                        } else {
                            impressions as u64
                        });
                        break;
                    }
                    dip_pct = dip_pct.min(level);
                }
                DriftRecovery {
                    target: match drift.target {
                        DriftTarget::Option { component, option } => {
                            format!("{}[{option}]", world.component_names[component])
                        }
                        DriftTarget::Segment(s) => format!("segment[{s}]"),
                    },
                    start_fraction: start,
                    end_fraction: end,
                    before_pct,
                    dip_pct: if dip_pct.is_finite() {
                        dip_pct
                    } else {
                        before_pct
                    },
                    recovered_after_impressions: recovered,
                }
            })
            .collect()
    }
}

impl<L: ?Sized> Observer<L> for RecoveryScorer<'_> {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let b = self.bucket(impression.moment.served);
        self.expected[b] += impression.answer.expected_value;
        self.oracle[b] += self
            .truth
            .oracle_at(impression.segment, impression.flight_fraction);
        Flow::Continue
    }
}

/// How a run with a budget spent it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetScore {
    /// The pacing rule (`value`, `ratio`, `even`, `none`).
    pub pacing: String,
    /// `100 * sum EV(bought) / OPT(budget)`: OPT is the hindsight fractional knapsack
    /// over the run's opportunities (value: the oracle's EV at the opportunity; weight:
    /// its expected cost).
    pub pct_of_budget_oracle: f64,
    /// OPT(budget).
    pub budget_oracle_expected_value: f64,
    /// `100 * sum_{t bought} v_t / OPT(budget)`: what the opportunities bought would
    /// have earned with the oracle's versions, so how good the buying was apart from
    /// the versions chosen.
    pub bought_oracle_pct: f64,
    /// Expected value of the impressions bought, summed.
    pub bought_expected_value: f64,
    /// The flight budget.
    pub budget: f64,
    /// The daily cap, if any.
    pub daily_cap: Option<f64>,
    /// The minimum return, if any.
    pub min_roas: Option<f64>,
    /// Realized costs of the impressions bought.
    pub spend: f64,
    /// `100 * max(0, spend / budget - 1)`.
    pub overspend_pct: f64,
    /// `100 * max(0, 1 - spend / budget)`.
    pub underspend_pct: f64,
    /// Donations drawn per dollar spent.
    pub value_per_dollar: f64,
    /// Root mean square, over the flight's days, of each day's spend against the plan
    /// (the budget spread over the days in proportion to their opportunities), in % of
    /// the day's plan.
    pub pacing_rmse_pct: f64,
    /// Spend per day of the flight.
    pub daily_spend: Vec<f64>,
    /// The price of money at the end of the run.
    pub price_of_money_final: f64,
    /// Opportunities bought.
    pub bought: u64,
    /// Opportunities skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// Precomputed ground-truth summaries a run needs.
#[derive(Debug, Clone)]
pub struct Truth {
    /// Oracle expected value per segment (at the start of the flight, with every
    /// version, for a v2 world).
    pub oracle: Vec<f64>,
    /// Even split expected value per segment (same remark).
    pub uniform: Vec<f64>,
    /// The truth over the flight of a v2 world.
    pub flight: Option<FlightTruth>,
}

impl Truth {
    /// Enumerates the world once (O(versions x segments); for a v2 world, also
    /// O(versions x segments x [`UNIFORM_GRID`]) for the even split).
    pub fn new(world: &World) -> Self {
        Self {
            oracle: world.oracle().into_iter().map(|(_, ev)| ev).collect(),
            uniform: world.uniform_expected_value(),
            flight: world.flight.as_ref().map(|_| FlightTruth::new(world)),
        }
    }

    /// The oracle's expected value for `segment` at flight fraction `f` (`None`: a run
    /// without a flight).
    pub fn oracle_at(&self, segment: usize, f: Option<f64>) -> f64 {
        match (&self.flight, f) {
            (Some(flight), Some(f)) => flight.oracle_at(segment, f),
            _ => self.oracle[segment],
        }
    }

    /// The even split's expected value for `segment` at flight fraction `f`.
    pub fn uniform_at(&self, segment: usize, f: Option<f64>) -> f64 {
        match (&self.flight, f) {
            (Some(flight), Some(f)) => flight.uniform_at(segment, f),
            _ => self.uniform[segment],
        }
    }
}

/// Cells of the flight on whose midpoints the even split of a v2 world is evaluated
/// (it is a baseline only; the oracle is exact at every impression).
pub const UNIFORM_GRID: usize = 100;

/// A class of versions that drift together: the same drift terms apply, the same
/// launch, the same mean donation. Within a class the best expected value at any
/// flight fraction belongs to the version of the largest stationary log-odds.
#[derive(Debug, Clone)]
struct DriftClass {
    /// Bit `i`: drift term `i` (an option term) applies to the class.
    terms: u64,
    /// When the class's last option launches.
    launch: f64,
    /// `E[donation | conversion]`.
    mean: f64,
    /// The largest stationary log-odds in the class.
    logit: f64,
}

/// The truth of a v2 world over its flight: the exact oracle at any flight fraction
/// (over the versions that exist then) and the even split on a grid.
#[derive(Debug, Clone)]
pub struct FlightTruth {
    flight: crate::flight::Flight,
    /// Per segment, its drift classes.
    classes: Vec<Vec<DriftClass>>,
    /// `uniform[cell][segment]`: the mean expected value of the versions that exist at
    /// the cell's midpoint.
    uniform: Vec<Vec<f64>>,
}

impl FlightTruth {
    /// Enumerates the world's versions per segment.
    ///
    /// # Panics
    /// If the world has no flight, or more than 64 drift terms.
    pub fn new(world: &World) -> Self {
        use crate::flight::DriftTarget;
        let flight = world.flight.clone().expect("a world with a flight");
        assert!(flight.drift.len() <= 64, "at most 64 drift terms");
        let mut options = vec![0u32; world.space.components()];
        let mut classes = Vec::with_capacity(world.segments());
        for s in 0..world.segments() {
            let mut found: Vec<DriftClass> = Vec::new();
            for version in 0..world.space.total() {
                world.space.decode_into(version, &mut options);
                let mut terms = 0u64;
                for (i, d) in flight.drift.iter().enumerate() {
                    if matches!(d.target, DriftTarget::Option { .. }) && d.applies(s, &options) {
                        terms |= 1 << i;
                    }
                }
                let launch = options
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| flight.launch[k][o as usize])
                    .fold(0.0, f64::max);
                let mean = world.mean_amount(s, &options);
                let logit = world.logit(s, &options);
                match found
                    .iter_mut()
                    .find(|c| c.terms == terms && c.launch == launch && c.mean == mean)
                {
                    Some(class) => class.logit = class.logit.max(logit),
                    None => found.push(DriftClass {
                        terms,
                        launch,
                        mean,
                        logit,
                    }),
                }
            }
            classes.push(found);
        }
        let uniform = (0..UNIFORM_GRID)
            .map(|cell| {
                let f = (cell as f64 + 0.5) / UNIFORM_GRID as f64;
                (0..world.segments())
                    .map(|s| {
                        let (mut sum, mut count) = (0.0, 0u64);
                        for version in 0..world.space.total() {
                            world.space.decode_into(version, &mut options);
                            if world.available_at(&options, f) {
                                sum += world.expected_value_at(s, &options, f);
                                count += 1;
                            }
                        }
                        sum / count.max(1) as f64
                    })
                    .collect()
            })
            .collect();
        Self {
            flight,
            classes,
            uniform,
        }
    }

    /// The largest expected value for `segment` at `f` over the versions that exist.
    pub fn oracle_at(&self, segment: usize, f: f64) -> f64 {
        use crate::flight::DriftTarget;
        let mut segment_delta = 0.0;
        let mut deltas = [0.0f64; 64];
        for (i, d) in self.flight.drift.iter().enumerate() {
            match d.target {
                DriftTarget::Segment(s) if s == segment => segment_delta += d.delta(f),
                DriftTarget::Segment(_) => {}
                DriftTarget::Option { .. } => deltas[i] = d.delta(f),
            }
        }
        self.classes[segment]
            .iter()
            .filter(|c| c.launch <= f)
            .map(|c| {
                let mut x = c.logit + segment_delta;
                let mut bits = c.terms;
                while bits != 0 {
                    x += deltas[bits.trailing_zeros() as usize];
                    bits &= bits - 1;
                }
                tla_core::stats::logistic(x) * c.mean
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The even split's expected value for `segment` in the grid cell of `f`.
    pub fn uniform_at(&self, segment: usize, f: f64) -> f64 {
        let cell = ((f * UNIFORM_GRID as f64) as usize).min(UNIFORM_GRID - 1);
        self.uniform[cell][segment]
    }
}

/// The observer behind [`simulate`]: scores each impression against the oracle and the
/// even split on the same audience, and records the learning curve at the run's
/// checkpoints.
#[derive(Debug)]
pub struct Scorer<'a> {
    truth: &'a Truth,
    expected: f64,
    oracle: f64,
    uniform: f64,
    value: f64,
    conversions: u64,
    refreshes: u64,
    propensity_sum: f64,
    min_propensity: f64,
    served: HashSet<u64>,
    curve: Vec<Checkpoint>,
    last_expected: f64,
    last_oracle: f64,
    started: Option<Instant>,
    seconds: f64,
    impressions: u64,
    /// Impressions bought (all of them without a budget).
    bought: u64,
    /// Spend on the impressions bought.
    spend: f64,
    /// The last pacing status pushed (a run with a budget).
    paced: Option<PacingStatus>,
}

impl<'a> Scorer<'a> {
    /// A scorer against `truth`, its learning curve sized for `checkpoints` points.
    pub fn new(truth: &'a Truth, checkpoints: usize) -> Self {
        Self {
            truth,
            expected: 0.0,
            oracle: 0.0,
            uniform: 0.0,
            value: 0.0,
            conversions: 0,
            refreshes: 0,
            propensity_sum: 0.0,
            min_propensity: f64::INFINITY,
            served: HashSet::new(),
            curve: Vec::with_capacity(checkpoints),
            last_expected: 0.0,
            last_oracle: 0.0,
            started: None,
            seconds: 0.0,
            impressions: 0,
            bought: 0,
            spend: 0.0,
            paced: None,
        }
    }

    /// The report of the run scored, for `policy` on `world` at `seed`.
    pub fn into_report<P: Policy>(self, world: &World, policy: &P, seed: u64) -> SimReport {
        let n = self.bought.max(1) as f64;
        SimReport {
            world: world.name.clone(),
            policy: policy.name().to_string(),
            impressions: self.impressions,
            seed,
            pct_of_oracle_expected: 100.0 * self.expected / self.oracle,
            pct_of_oracle_realized: 100.0 * self.value / self.oracle,
            uniform_pct_of_oracle_expected: 100.0 * self.uniform / self.oracle,
            conversions: self.conversions,
            value: self.value,
            expected_value: self.expected,
            oracle_expected_value: self.oracle,
            versions_served: self.served.len() as u64,
            refreshes: self.refreshes,
            mean_propensity: self.propensity_sum / n,
            min_propensity: self.min_propensity,
            seconds: self.seconds,
            impressions_per_second: self.impressions as f64 / self.seconds,
            model_bytes: policy.model_bytes(),
            learning_curve: self.curve,
            budget: None,
            recovery: Vec::new(),
            holdout: None,
        }
    }
}

impl<L: ?Sized> Observer<L> for Scorer<'_> {
    fn begin(&mut self) {
        self.started = Some(Instant::now());
    }

    fn impression(&mut self, impression: &Impression) -> Flow {
        let (decision, answer) = (&impression.decision, &impression.answer);
        self.propensity_sum += decision.propensity;
        self.min_propensity = self.min_propensity.min(decision.propensity);
        self.served.insert(decision.version);
        self.expected += answer.expected_value;
        let (segment, f) = (impression.segment, impression.flight_fraction);
        self.oracle += self.truth.oracle_at(segment, f);
        self.uniform += self.truth.uniform_at(segment, f);
        if answer.converted {
            self.conversions += 1;
            self.value += answer.donation;
        }
        self.refreshes += impression.refreshes as u64;
        self.bought += 1;
        self.spend += answer.cost;
        Flow::Continue
    }

    fn paced(&mut self, status: &PacingStatus) {
        self.paced = Some(*status);
    }

    fn checkpoint(&mut self, moment: &Moment) -> Flow {
        let pct = |expected: f64, oracle: f64| {
            if oracle > 0.0 {
                100.0 * expected / oracle
            } else {
                0.0
            }
        };
        let paced = self.paced;
        self.curve.push(Checkpoint {
            impressions: moment.served,
            pct_of_oracle_expected: pct(self.expected, self.oracle),
            window_pct_of_oracle_expected: pct(
                self.expected - self.last_expected,
                self.oracle - self.last_oracle,
            ),
            spend: paced.map(|_| self.spend),
            bought: paced.map(|_| self.bought),
            price_of_money: paced.map(|p| p.price_of_money),
        });
        self.last_expected = self.expected;
        self.last_oracle = self.oracle;
        Flow::Continue
    }

    fn finish(&mut self, _learner: &L, served: u64) {
        self.seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.impressions = served;
    }
}

/// The observer of a run with a budget: every opportunity's value to the oracle and
/// expected cost (for the budget oracle), the expected value bought, and the spend per
/// day of the flight.
#[derive(Debug)]
pub struct BudgetScorer<'a> {
    truth: &'a Truth,
    flight: &'a Flight,
    pacing: PacingRun,
    /// Per opportunity: the oracle's expected value at it.
    values: Vec<f64>,
    /// Per opportunity: its expected cost.
    weights: Vec<f64>,
    bought_expected: f64,
    bought_oracle: f64,
    value: f64,
    spend: f64,
    daily_spend: Vec<f64>,
    daily_opportunities: Vec<u64>,
    bought: u64,
    skipped: BTreeMap<String, u64>,
    status: Option<PacingStatus>,
}

impl<'a> BudgetScorer<'a> {
    /// A scorer of `pacing` on a world whose flight is `flight`, against `truth`, for a
    /// run of `opportunities`.
    pub fn new(
        truth: &'a Truth,
        flight: &'a Flight,
        pacing: PacingRun,
        opportunities: u64,
    ) -> Self {
        let capacity = usize::try_from(opportunities).unwrap_or(0);
        Self {
            truth,
            flight,
            pacing,
            values: Vec::with_capacity(capacity),
            weights: Vec::with_capacity(capacity),
            bought_expected: 0.0,
            bought_oracle: 0.0,
            value: 0.0,
            spend: 0.0,
            daily_spend: vec![0.0; flight.days],
            daily_opportunities: vec![0; flight.days],
            bought: 0,
            skipped: BTreeMap::new(),
            status: None,
        }
    }

    fn opportunity(&mut self, segment: usize, f: Option<f64>) -> usize {
        let f = f.expect("a run with a budget has a flight");
        let (day, hour) = self.flight.day_hour(f);
        self.values.push(self.truth.oracle_at(segment, Some(f)));
        self.weights.push(self.flight.expected_cost(segment, hour));
        self.daily_opportunities[day] += 1;
        day
    }

    /// The budget's score.
    pub fn into_score(self) -> BudgetScore {
        let budget = self.pacing.budget;
        let optimum = fractional_knapsack(&self.values, &self.weights, budget);
        let total: u64 = self.daily_opportunities.iter().sum();
        let (mut square, mut days) = (0.0, 0.0);
        for (spend, &n) in self.daily_spend.iter().zip(&self.daily_opportunities) {
            if n > 0 {
                let plan = budget * n as f64 / total as f64;
                square += ((spend - plan) / plan).powi(2);
                days += 1.0;
            }
        }
        let ratio = self.spend / budget;
        BudgetScore {
            pacing: self.pacing.mode.as_str().to_string(),
            pct_of_budget_oracle: if optimum > 0.0 {
                100.0 * self.bought_expected / optimum
            } else {
                0.0
            },
            budget_oracle_expected_value: optimum,
            bought_oracle_pct: if optimum > 0.0 {
                100.0 * self.bought_oracle / optimum
            } else {
                0.0
            },
            bought_expected_value: self.bought_expected,
            budget,
            daily_cap: self.pacing.daily_cap,
            min_roas: self.pacing.min_roas,
            spend: self.spend,
            overspend_pct: 100.0 * (ratio - 1.0).max(0.0),
            underspend_pct: 100.0 * (1.0 - ratio).max(0.0),
            value_per_dollar: if self.spend > 0.0 {
                self.value / self.spend
            } else {
                0.0
            },
            pacing_rmse_pct: if days > 0.0 {
                100.0 * (square / days).sqrt()
            } else {
                0.0
            },
            daily_spend: self.daily_spend,
            price_of_money_final: self.status.map_or(0.0, |s| s.price_of_money),
            bought: self.bought,
            skipped: self.skipped,
        }
    }
}

impl<L: ?Sized> Observer<L> for BudgetScorer<'_> {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let day = self.opportunity(impression.segment, impression.flight_fraction);
        let answer = &impression.answer;
        self.bought_oracle += self.values[self.values.len() - 1];
        self.bought_expected += answer.expected_value;
        self.value += answer.donation;
        self.spend += answer.cost;
        self.daily_spend[day] += answer.cost;
        self.bought += 1;
        Flow::Continue
    }

    fn skip(&mut self, skip: &Skip) -> Flow {
        self.opportunity(skip.segment, skip.flight_fraction);
        *self
            .skipped
            .entry(skip.reason.as_str().to_string())
            .or_default() += 1;
        Flow::Continue
    }

    fn paced(&mut self, status: &PacingStatus) {
        self.status = Some(*status);
    }
}

/// Runs `policy` online against `world` ([`crate::online::run`] with [`Streams::new`]
/// at `config.seed`), scored by a [`Scorer`]; `progress` is called with the impressions
/// done every 65,536 impressions and at the end.
pub fn simulate<P: PricedPolicy + online::Launch>(
    world: &World,
    truth: &Truth,
    policy: &mut P,
    config: &SimConfig,
    progress: impl FnMut(u64),
) -> SimReport {
    simulate_learner(world, truth, policy, |p| p, config, progress)
}

/// [`simulate`] of the simulated ad platform (`--mode plan`, [`crate::platform`]):
/// `config.pacing` must hold the flight budget, with
/// [`crate::platform::PlatformLearner::PACING`] as its mode.
pub fn simulate_platform(
    world: &World,
    truth: &Truth,
    platform: &mut crate::platform::PlatformLearner,
    config: &SimConfig,
    progress: impl FnMut(u64),
) -> SimReport {
    simulate_learner(world, truth, platform, |p| p.policy(), config, progress)
}

/// The run of [`simulate`] for any learner; `policy` gives the policy the report
/// describes.
fn simulate_learner<L: online::Learner, P: Policy>(
    world: &World,
    truth: &Truth,
    policy_learner: &mut L,
    policy: fn(&L) -> &P,
    config: &SimConfig,
    progress: impl FnMut(u64),
) -> SimReport {
    let mut scorer = Scorer::new(truth, config.checkpoints.len());
    let run_config = RunConfig {
        checkpoints: config.checkpoints.clone(),
        pacing: config.pacing,
        holdout: config.holdout,
        ..RunConfig::new(config.impressions)
    };
    let mut streams = Streams::new(config.seed, &world.segment_probs);
    let progress = Progress::new(65_536, progress);
    let mut recovery = RecoveryScorer::new(truth, config.impressions);
    let mut holdout = config.holdout.map(|h| {
        HoldoutScorer::new(
            h.share,
            config.impressions,
            config.looks,
            world.flight.as_ref().map(|f| f.days),
        )
    });

    let budget = match (config.pacing, world.flight.as_ref()) {
        (Some(pacing), Some(flight)) => {
            let mut budget = BudgetScorer::new(truth, flight, pacing, config.impressions);
            online::run(
                world,
                &mut streams,
                policy_learner,
                &run_config,
                (
                    (
                        ((&mut scorer, &mut budget), &mut recovery),
                        holdout.as_mut(),
                    ),
                    progress,
                ),
            );
            Some(budget.into_score())
        }
        _ => {
            online::run(
                world,
                &mut streams,
                policy_learner,
                &run_config,
                (((&mut scorer, &mut recovery), holdout.as_mut()), progress),
            );
            None
        }
    };
    SimReport {
        budget,
        recovery: recovery.into_recovery(world),
        holdout: holdout.map(HoldoutScorer::into_report),
        ..scorer.into_report(world, policy(policy_learner), config.seed)
    }
}
/// The lift against the holdout at one look.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HoldoutLook {
    /// The look, from 1.
    pub look: u64,
    /// Opportunities (impressions, bought or not) so far.
    pub opportunities: u64,
    /// In a world with a flight: the day of the flight (from 0, fractional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flight_day: Option<f64>,
    /// Decisions served in the policy's arm so far.
    pub policy_decisions: u64,
    /// Decisions served in the holdout so far.
    pub holdout_decisions: u64,
    /// Value per impression, policy minus holdout, with both intervals.
    pub per_impression: Option<LiftInterval>,
    /// Value per dollar, policy minus holdout (a run with spend).
    pub per_dollar: Option<LiftInterval>,
}

/// When an interval first excluded zero.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FirstExclusion {
    /// The look, from 1.
    pub look: u64,
    /// Opportunities then.
    pub opportunities: u64,
    /// The day of the flight then, in a world with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flight_day: Option<f64>,
}

/// The first look at which each interval excluded zero (null: at none).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FirstExclusions {
    /// The confidence sequence of the lift per impression.
    pub sequence_per_impression: Option<FirstExclusion>,
    /// The fixed-horizon interval of the lift per impression.
    pub fixed_per_impression: Option<FirstExclusion>,
    /// The confidence sequence of the lift per dollar.
    pub sequence_per_dollar: Option<FirstExclusion>,
    /// The fixed-horizon interval of the lift per dollar.
    pub fixed_per_dollar: Option<FirstExclusion>,
}

/// The policy against its holdout over a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HoldoutReport {
    /// The share of units (impressions) held out.
    pub share: f64,
    /// Looks taken.
    pub looks: u64,
    /// The lift at the end of the run (the report's holdout section).
    pub lift: HoldoutLift,
    /// The truth: the mean expected value per impression of the versions each arm
    /// served, policy minus holdout.
    pub true_lift_per_impression: Option<f64>,
    /// The truth per dollar: expected value over spend in each arm, policy minus
    /// holdout (a run with spend).
    pub true_lift_per_dollar: Option<f64>,
    /// When each interval first excluded zero.
    pub first_excluded_zero: FirstExclusions,
    /// The lift at each look.
    pub series: Vec<HoldoutLook>,
}

/// The observer of a run with a holdout: both arms' value and spend, the lift at
/// equally spaced looks (opportunity `k T / looks` for `k = 1..=looks`), and when its
/// intervals first excluded zero.
#[derive(Debug)]
pub struct HoldoutScorer {
    share: f64,
    tracker: HoldoutTracker,
    opportunities: u64,
    looks: u64,
    days: Option<usize>,
    seen: u64,
    last_fraction: Option<f64>,
    /// Per arm (policy, holdout): expected value and spend of the impressions bought.
    expected: [f64; 2],
    spend: [f64; 2],
    served: [u64; 2],
    first: FirstExclusions,
    series: Vec<HoldoutLook>,
}

impl HoldoutScorer {
    /// A scorer of a holdout of `share` over a run of `opportunities`, looked at
    /// `looks` times; `days`: the flight's, in a world with one. The sequence is tuned
    /// for the run's length.
    pub fn new(share: f64, opportunities: u64, looks: u64, days: Option<usize>) -> Self {
        Self {
            share,
            tracker: HoldoutTracker::new(
                share,
                tla_core::ope::sequence::DEFAULT_ALPHA,
                opportunities.max(1) as f64,
            ),
            opportunities,
            looks: looks.clamp(1, opportunities.max(1)),
            days,
            seen: 0,
            last_fraction: None,
            expected: [0.0; 2],
            spend: [0.0; 2],
            served: [0; 2],
            first: FirstExclusions::default(),
            series: Vec::new(),
        }
    }

    /// Counts one opportunity and takes a look when it is due.
    fn opportunity(&mut self, flight_fraction: Option<f64>) {
        self.seen += 1;
        self.last_fraction = flight_fraction;
        let k = self.series.len() as u64 + 1;
        if k <= self.looks && self.seen == k * self.opportunities / self.looks {
            self.look(k);
        }
    }

    fn look(&mut self, k: u64) {
        let lift = self.tracker.lift();
        let flight_day = match (self.days, self.last_fraction) {
            (Some(days), Some(f)) => Some(f * days as f64),
            _ => None,
        };
        let at = FirstExclusion {
            look: k,
            opportunities: self.seen,
            flight_day,
        };
        let first = &mut self.first;
        if let Some(p) = &lift.per_impression {
            if p.sequence_excludes_zero && first.sequence_per_impression.is_none() {
                first.sequence_per_impression = Some(at);
            }
            if p.fixed_excludes_zero && first.fixed_per_impression.is_none() {
                first.fixed_per_impression = Some(at);
            }
        }
        if let Some(d) = &lift.per_dollar {
            if d.sequence_excludes_zero && first.sequence_per_dollar.is_none() {
                first.sequence_per_dollar = Some(at);
            }
            if d.fixed_excludes_zero && first.fixed_per_dollar.is_none() {
                first.fixed_per_dollar = Some(at);
            }
        }
        self.series.push(HoldoutLook {
            look: k,
            opportunities: self.seen,
            flight_day,
            policy_decisions: lift.policy.decisions,
            holdout_decisions: lift.holdout.decisions,
            per_impression: lift.per_impression,
            per_dollar: lift.per_dollar,
        });
    }

    /// The holdout's report of the run.
    pub fn into_report(self) -> HoldoutReport {
        let mean = |arm: usize| self.expected[arm] / self.served[arm] as f64;
        let per_dollar = |arm: usize| self.expected[arm] / self.spend[arm];
        let both = self.served[0] > 0 && self.served[1] > 0;
        HoldoutReport {
            share: self.share,
            looks: self.series.len() as u64,
            lift: self.tracker.lift(),
            true_lift_per_impression: both.then(|| mean(0) - mean(1)),
            true_lift_per_dollar: (both && self.spend[0] > 0.0 && self.spend[1] > 0.0)
                .then(|| per_dollar(0) - per_dollar(1)),
            first_excluded_zero: self.first,
            series: self.series,
        }
    }
}

impl<L: ?Sized> Observer<L> for HoldoutScorer {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let answer = &impression.answer;
        let arm = usize::from(impression.held_out);
        self.tracker
            .push(impression.held_out, answer.donation, answer.cost);
        self.expected[arm] += answer.expected_value;
        self.spend[arm] += answer.cost;
        self.served[arm] += 1;
        self.opportunity(impression.flight_fraction);
        Flow::Continue
    }

    fn skip(&mut self, skip: &Skip) -> Flow {
        self.opportunity(skip.flight_fraction);
        Flow::Continue
    }
}

/// Runs of a policy with a holdout, over seeds: how often each interval excluded zero
/// at some look.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HoldoutRuns {
    /// Runs (seeds `seed`, `seed + 1`, ...).
    pub runs: u64,
    /// The first seed.
    pub seed: u64,
    /// Opportunities per run.
    pub impressions: u64,
    /// Looks per run.
    pub looks: u64,
    /// The share held out.
    pub share: f64,
    /// Miss probability of both intervals.
    pub alpha: f64,
    /// Runs whose confidence sequence of the lift per impression excluded zero at some
    /// look.
    pub sequence_excluded_zero: u64,
    /// Their share of the runs.
    pub sequence_rate: f64,
    /// Runs whose fixed-horizon interval excluded zero at some look.
    pub fixed_excluded_zero: u64,
    /// Their share of the runs.
    pub fixed_rate: f64,
    /// Runs whose fixed-horizon interval excluded zero at the last look only counted
    /// (the one look it is made for).
    pub fixed_excluded_zero_at_end: u64,
    /// The same per dollar (runs with spend), sequence then fixed; null without spend.
    pub per_dollar_sequence_excluded_zero: Option<u64>,
    /// Runs whose fixed-horizon interval per dollar excluded zero at some look.
    pub per_dollar_fixed_excluded_zero: Option<u64>,
    /// The mean over runs of the true lift per impression (0 in an A/A run).
    pub mean_true_lift_per_impression: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// `runs` runs of the policy `policy(seed)` at seeds `config.seed`, `config.seed + 1`,
/// ..., each with the holdout of `config` salted by its seed ([`simulate`]); `progress`
/// is called with the runs done. With the even split as the policy this is the A/A
/// check of `docs/reports.md`: no real difference, so an interval valid at every look
/// should exclude zero at some look in at most about `alpha` of the runs.
///
/// # Panics
/// If `config.holdout` is `None`.
pub fn holdout_runs<P: PricedPolicy + online::Launch>(
    world: &World,
    truth: &Truth,
    policy: impl Fn(u64) -> P,
    config: &SimConfig,
    runs: u64,
    mut progress: impl FnMut(u64),
) -> HoldoutRuns {
    let holdout = config.holdout.expect("holdout runs need a holdout");
    let started = Instant::now();
    let (mut sequence, mut fixed, mut fixed_end) = (0, 0, 0);
    let (mut dollar_sequence, mut dollar_fixed, mut with_spend) = (0, 0, false);
    let mut true_lift = 0.0;
    for run in 0..runs {
        let seed = config.seed.wrapping_add(run);
        let run_config = SimConfig {
            seed,
            holdout: Some(HoldoutRun {
                salt: seed,
                ..holdout
            }),
            checkpoints: vec![config.impressions],
            ..config.clone()
        };
        let report = simulate(world, truth, &mut policy(seed), &run_config, |_| {});
        let h = report.holdout.expect("a run with a holdout reports it");
        let first = h.first_excluded_zero;
        sequence += u64::from(first.sequence_per_impression.is_some());
        fixed += u64::from(first.fixed_per_impression.is_some());
        fixed_end += u64::from(h.lift.per_impression.is_some_and(|p| p.fixed_excludes_zero));
        if h.lift.per_dollar.is_some() {
            with_spend = true;
        }
        dollar_sequence += u64::from(first.sequence_per_dollar.is_some());
        dollar_fixed += u64::from(first.fixed_per_dollar.is_some());
        true_lift += h.true_lift_per_impression.unwrap_or(0.0);
        progress(run + 1);
    }
    let rate = |k: u64| k as f64 / runs.max(1) as f64;
    HoldoutRuns {
        runs,
        seed: config.seed,
        impressions: config.impressions,
        looks: config.looks,
        share: holdout.share,
        alpha: tla_core::ope::sequence::DEFAULT_ALPHA,
        sequence_excluded_zero: sequence,
        sequence_rate: rate(sequence),
        fixed_excluded_zero: fixed,
        fixed_rate: rate(fixed),
        fixed_excluded_zero_at_end: fixed_end,
        per_dollar_sequence_excluded_zero: with_spend.then_some(dollar_sequence),
        per_dollar_fixed_excluded_zero: with_spend.then_some(dollar_fixed),
        mean_true_lift_per_impression: true_lift / runs.max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    }
}
