//! The plain simulation: a policy run online against a world file ([`crate::online`]'s
//! loop), scored as a percentage of the oracle that knows the truth, with its learning
//! curve.
//!
//! [`Scorer`] is the observer that keeps the score; [`simulate`] runs the loop with it.
//! Every policy run with the same seed meets the same audience and the same luck
//! ([`Streams::new`]), so the oracle's and the even split's values are the same across
//! policies and the difference between two policies is not the audience's.

use crate::online::{self, Flow, Impression, Moment, Observer, Progress, RunConfig, Streams};
use crate::world::World;
use std::collections::HashSet;
use std::time::Instant;
use tla_core::policy::Policy;

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
}

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
        }
    }

    /// The report of the run scored, for `policy` on `world` at `seed`.
    pub fn into_report<P: Policy>(self, world: &World, policy: &P, seed: u64) -> SimReport {
        let n = self.impressions.max(1) as f64;
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
        Flow::Continue
    }

    fn checkpoint(&mut self, moment: &Moment) -> Flow {
        self.curve.push(Checkpoint {
            impressions: moment.served,
            pct_of_oracle_expected: 100.0 * self.expected / self.oracle,
            window_pct_of_oracle_expected: 100.0 * (self.expected - self.last_expected)
                / (self.oracle - self.last_oracle),
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

/// Runs `policy` online against `world` ([`crate::online::run`] with [`Streams::new`]
/// at `config.seed`), scored by a [`Scorer`]; `progress` is called with the impressions
/// done every 65,536 impressions and at the end.
pub fn simulate<P: Policy>(
    world: &World,
    truth: &Truth,
    policy: &mut P,
    config: &SimConfig,
    progress: impl FnMut(u64),
) -> SimReport {
    let mut scorer = Scorer::new(truth, config.checkpoints.len());
    let run_config = RunConfig {
        checkpoints: config.checkpoints.clone(),
        ..RunConfig::new(config.impressions)
    };
    online::run(
        world,
        &mut Streams::new(config.seed, &world.segment_probs),
        policy,
        &run_config,
        (&mut scorer, Progress::new(65_536, progress)),
    );
    scorer.into_report(world, policy, config.seed)
}
