//! Validation of the off-policy estimators ([`tla_core::ope`]) on simulator logs, where
//! the truth is known.
//!
//! A logging policy (the even split, or factorized Thompson sampling with its
//! exploration floor) runs online against a world for `impressions` impressions; each
//! impression's segment, version, exact propensity and drawn donation are logged. A
//! target policy (the oracle's best version per segment, one fixed version, the even
//! split, or factorized Thompson sampling trained on the first half of the log) is then
//! evaluated on the log with IPS, SNIPS and cross-fitted doubly robust, and compared
//! with its true value `sum_s P(s) sum_a pi(a|s) EV(s, a)`, computed exactly from the
//! world. Over many seeds this measures each estimator's bias, the coverage of its 95%
//! interval, the interval's width and the effective sample size.
//!
//! The target is written in the grammar every evaluation shares
//! ([`tla_core::ope::choice::EvaluationTarget`]: `oracle`, `uniform`,
//! `fixed-options:O1,O2,...` by index, `factorized-ts` with its floor); [`PreparedTarget::new`]
//! checks that it applies to a world and resolves it against the world, once for all
//! seeds.
//!
//! The trained target ([`EvaluationTarget::FactorizedTs`]) differs per seed: it is trained
//! on the first half of that seed's log (time order) and evaluated on the second half
//! only, so no estimator scores a row the target learned from; each seed is compared
//! with its own target's truth.

use crate::flight::Flight;
use crate::generate::segment_truths;
use crate::online::{self, Flow, Impression, Observer, PacingRun, RunConfig, Skip, Streams};
use crate::world::World;
use crate::{PolicyChoice, build_policy};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tla_core::design::{DEFAULT_EXACT_LIMIT, Design, Interactions, Objective};
use tla_core::ope::adaptive::{
    AdaptiveAipw, SequenceInterval, Stabilizer, StabilizerState, stabilizing_weight,
};
use tla_core::ope::choice::{EvaluationInput, EvaluationTarget};
use tla_core::ope::direct::ShrunkMeanModel;
use tla_core::ope::sequence::Sequence;
use tla_core::ope::targets::TargetProbabilities;
use tla_core::ope::{
    DirectModel, Estimate, Estimator, LoggedRow, WeightDiagnostics, doubly_robust, ips, snips,
    weight_diagnostics, weights,
};
use tla_core::policy::campaign::CampaignPolicySettings;
use tla_core::policy::{Policy, PricedPolicy};
use tla_core::target::{DEFAULT_TARGET_FLOOR, TrainedTarget, TrainedTargetSettings};

/// A target policy to evaluate.
#[derive(Debug, Clone)]
pub enum Target {
    /// The even split over every version.
    Uniform,
    /// In context `c`, the even split over `sizes[c]` versions: those that exist in the
    /// context's epoch of a flight whose options launch ([`Epochs`]).
    UniformPerContext(Vec<usize>),
    /// One fixed version per segment (deterministic).
    PerSegment(Vec<u64>),
    /// Factorized Thompson sampling trained on a log ([`TrainedTarget`]).
    Trained(Box<TrainedTarget>),
}

impl Target {
    /// `pi(version | segment)`.
    pub fn prob(&self, total: u64, segment: usize, version: u64) -> f64 {
        match self {
            Target::Uniform => 1.0 / total as f64,
            Target::UniformPerContext(sizes) => 1.0 / sizes[segment] as f64,
            Target::PerSegment(v) => {
                if v[segment] == version {
                    1.0
                } else {
                    0.0
                }
            }
            Target::Trained(target) => target.probability(segment, version),
        }
    }

    /// The contexts the target is given per: the world's segments, or, with a target
    /// per epoch of a flight with launches, `segment + segments · epoch`.
    pub fn contexts(&self, world: &World) -> usize {
        match self {
            Target::PerSegment(v) => v.len(),
            Target::UniformPerContext(sizes) => sizes.len(),
            Target::Uniform | Target::Trained(_) => world.segments(),
        }
    }

    /// The target in the core's summable form (the online direct model reads it).
    pub fn probabilities(&self, world: &World) -> TargetProbabilities<'_> {
        match self {
            Target::Uniform => TargetProbabilities::Uniform(world.space.total() as usize),
            Target::UniformPerContext(sizes) => TargetProbabilities::UniformPerContext(sizes),
            Target::PerSegment(versions) => TargetProbabilities::PerContext(versions),
            Target::Trained(target) => TargetProbabilities::Trained {
                target,
                allowed: world.space.allowed_count() as usize,
            },
        }
    }

    /// The exact value per impression: `sum_s P(s) sum_a pi(a|s) EV(s, a)`. For the
    /// trained target it computes the even split over the allowed versions with
    /// [`segment_truths`]; [`Target::true_value_with`] takes them precomputed.
    pub fn true_value(&self, world: &World) -> f64 {
        let even: Vec<f64> = match self {
            Target::Trained(_) => segment_truths(world).iter().map(|t| t.even_value).collect(),
            _ => Vec::new(),
        };
        self.true_value_with(world, &even)
    }

    /// [`Target::true_value`] given, for the trained target, the even split's exact
    /// value per segment over the allowed versions (`even_values`, unused by the other
    /// targets). The trained target's value in segment `s` is
    /// `floor · even(s) + (1 - floor) · sum_v table_s(v) EV(s, v)`.
    pub fn true_value_with(&self, world: &World, even_values: &[f64]) -> f64 {
        let per_segment: Vec<f64> = match self {
            Target::Trained(target) => {
                let mut options = vec![0u32; world.space.components()];
                (0..world.segments())
                    .map(|s| {
                        target.expectation(s, even_values[s], |v| {
                            world.space.decode_into(v, &mut options);
                            world.expected_value(s, &options)
                        })
                    })
                    .collect()
            }
            Target::Uniform => world.uniform_expected_value(),
            Target::UniformPerContext(_) => {
                unreachable!("a target per epoch has a value per opportunity (flight_values)")
            }
            Target::PerSegment(versions) => {
                let mut options = vec![0u32; world.space.components()];
                versions
                    .iter()
                    .take(world.segments())
                    .enumerate()
                    .map(|(s, &v)| {
                        world.space.decode_into(v, &mut options);
                        world.expected_value(s, &options)
                    })
                    .collect()
            }
        };
        world
            .segment_probs
            .iter()
            .zip(per_segment)
            .map(|(p, v)| p * v)
            .sum()
    }
}

/// The action of a logged row that is a skipped opportunity (a run with a budget): no
/// target chooses it, so its importance weight is 0; its reward is 0.
pub const SKIP: u64 = u64::MAX;

/// The launches of a flight cut its opportunities into epochs: epoch `e` runs from
/// `starts[e]` (0 for the first) to the next launch. A target that depends on which
/// versions exist (the oracle, the even split) is one target per epoch, given per
/// context `segment + segments · epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Epochs {
    starts: Vec<f64>,
}

impl Epochs {
    /// The epochs of `world`'s flight (one, from 0, without a flight or launches).
    pub fn of(world: &World) -> Self {
        let mut starts = vec![0.0];
        if let Some(flight) = &world.flight {
            let mut launches: Vec<f64> = flight
                .launch
                .iter()
                .flatten()
                .copied()
                .filter(|&f| f > 0.0)
                .collect();
            launches.sort_by(f64::total_cmp);
            launches.dedup();
            starts.extend(launches);
        }
        Self { starts }
    }

    /// Number of epochs.
    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// The epoch of flight fraction `f`.
    pub fn epoch(&self, f: f64) -> usize {
        self.starts[1..].iter().filter(|&&start| start <= f).count()
    }

    /// Where epoch `e` starts.
    pub fn start(&self, e: usize) -> f64 {
        self.starts[e]
    }
}

/// The direct model of the doubly robust estimator: per (segment, option of the value
/// component), conversion rate x mean donation, each shrunk toward the global value
/// (rate: [`AskModel::RATE_PSEUDO_IMPRESSIONS`] pseudo-impressions; amount:
/// [`AskModel::AMOUNT_PSEUDO_CONVERSIONS`] pseudo-conversions). Cheap for any target:
/// the target's direct value is `q` of its version's ask option, or the mean over ask
/// options for the even split (and for the trained target's floor, with its table's
/// entries weighted by their probabilities).
#[derive(Debug, Clone)]
pub struct AskModel {
    q: Vec<f64>,
    asks: usize,
    stride: u64,
    target: Vec<f64>,
}

impl AskModel {
    /// Pseudo-impressions at the global conversion rate added to every cell.
    pub const RATE_PSEUDO_IMPRESSIONS: f64 = 200.0;
    /// Pseudo-conversions at the global mean donation added to every cell.
    pub const AMOUNT_PSEUDO_CONVERSIONS: f64 = 5.0;

    /// Fits the model on `rows` and precomputes the target's direct value per segment.
    pub fn fit(world: &World, rows: &[LoggedRow], target: &Target) -> Self {
        let counts = world.space.option_counts();
        let asks = counts[world.value_component] as usize;
        let stride: u64 = counts[world.value_component + 1..]
            .iter()
            .map(|&c| c as u64)
            .product();
        let segments = target.contexts(world);
        let cells = segments * asks;
        let (mut imps, mut convs, mut amount) =
            (vec![0.0; cells], vec![0.0; cells], vec![0.0; cells]);
        for row in rows.iter().filter(|r| r.action != SKIP) {
            let cell = row.segment * asks + ((row.action / stride) % asks as u64) as usize;
            imps[cell] += 1.0;
            if row.reward > 0.0 {
                convs[cell] += 1.0;
                amount[cell] += row.reward;
            }
        }
        let total_imps: f64 = imps.iter().sum();
        let total_convs: f64 = convs.iter().sum();
        let global_rate = total_convs / total_imps.max(1.0);
        let global_amount = amount.iter().sum::<f64>() / total_convs.max(1.0);
        let q: Vec<f64> = (0..cells)
            .map(|c| {
                let rate = (convs[c] + Self::RATE_PSEUDO_IMPRESSIONS * global_rate)
                    / (imps[c] + Self::RATE_PSEUDO_IMPRESSIONS);
                let mean = (amount[c] + Self::AMOUNT_PSEUDO_CONVERSIONS * global_amount)
                    / (convs[c] + Self::AMOUNT_PSEUDO_CONVERSIONS);
                rate * mean
            })
            .collect();
        let mut model = Self {
            q,
            asks,
            stride,
            target: Vec::new(),
        };
        let even = |model: &Self, s: usize| {
            model.q[s * asks..(s + 1) * asks].iter().sum::<f64>() / asks as f64
        };
        model.target = (0..segments)
            .map(|s| match target {
                Target::Uniform | Target::UniformPerContext(_) => even(&model, s),
                Target::PerSegment(v) => model.q_hat(s, v[s]),
                Target::Trained(trained) => {
                    trained.expectation(s, even(&model, s), |v| model.q_hat(s, v))
                }
            })
            .collect();
        model
    }
}

impl DirectModel for AskModel {
    fn q_hat(&self, segment: usize, action: u64) -> f64 {
        self.q[segment * self.asks + ((action / self.stride) % self.asks as u64) as usize]
    }
    fn target_value(&self, segment: usize) -> f64 {
        self.target[segment]
    }
}

/// The observer that logs every decision as the estimators read it: segment,
/// version, exact propensity, donation (0 when none).
#[derive(Debug, Clone, Default)]
pub struct RowLog {
    /// The rows, in the order the impressions were served.
    pub rows: Vec<LoggedRow>,
}

impl RowLog {
    /// An empty log with room for `impressions` rows.
    pub fn with_capacity(impressions: u64) -> Self {
        Self {
            rows: Vec::with_capacity(usize::try_from(impressions).unwrap_or(0)),
        }
    }
}

impl<L: ?Sized> Observer<L> for RowLog {
    fn impression(&mut self, impression: &Impression) -> Flow {
        self.rows.push(LoggedRow {
            segment: impression.segment,
            action: impression.decision.version,
            propensity: impression.decision.propensity,
            reward: impression.answer.donation,
        });
        Flow::Continue
    }
}

/// Runs `policy` online against `world` for `impressions` impressions
/// ([`crate::online::run`] with [`Streams::new`] at `seed`, the streams of
/// [`crate::sim::simulate`]: the same seed gives the same run) and logs every decision
/// ([`RowLog`]). To see more of the run, pass a pair of observers to
/// [`crate::online::run`], a [`RowLog`] and your own.
pub fn log_impressions<P: PricedPolicy + online::Launch>(
    world: &World,
    policy: &mut P,
    impressions: u64,
    seed: u64,
) -> Vec<LoggedRow> {
    let mut log = RowLog::with_capacity(impressions);
    online::run(
        world,
        &mut Streams::new(seed, &world.segment_probs),
        policy,
        &RunConfig::new(impressions),
        &mut log,
    );
    log.rows
}

/// How to validate.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// The logging policy: [`PolicyChoice::Uniform`] or an adaptive one (with its
    /// exploration floor, so every version keeps a positive propensity).
    pub logging: PolicyChoice,
    /// The target policy; it must apply to a world
    /// ([`EvaluationTarget::check_input`] with [`EvaluationInput::World`]).
    pub target: EvaluationTarget,
    /// The floor of the `factorized-ts` target, in `[0, 1)` (`None`:
    /// [`DEFAULT_TARGET_FLOOR`]); refused with any other target
    /// ([`EvaluationTarget::check_floor`]).
    pub target_floor: Option<f64>,
    /// Impressions logged per seed.
    pub impressions: u64,
    /// Seeds `first_seed, first_seed + 1, ...`.
    pub seeds: u64,
    /// First seed.
    pub first_seed: u64,
    /// Cross-fitting folds of the doubly robust estimator.
    pub folds: usize,
    /// Settings of an adaptive logging policy.
    pub settings: CampaignPolicySettings,
    /// Looks: at each of this many equally spaced numbers of evaluated rows, every
    /// estimator is read on the rows so far (the last look is the end). At least 1.
    pub looks: usize,
    /// Miss probability of every interval (`1 - alpha` intervals) and of the confidence
    /// sequence over all looks together, in (0, 1).
    pub alpha: f64,
    /// A budget to keep to (a world with a flight only): every impression is then an
    /// opportunity the logging policy may skip; a skip is logged as a row of reward 0
    /// that no target chooses, so the estimand is the target's value per opportunity.
    pub pacing: Option<PacingRun>,
}

pub use crate::sim::DEFAULT_LOOKS;
pub use tla_core::ope::sequence::DEFAULT_ALPHA;

impl ValidationConfig {
    /// `seeds` seeds of `impressions` each, 2 folds, default policy settings, the
    /// default target floor.
    pub fn new(
        logging: PolicyChoice,
        target: EvaluationTarget,
        impressions: u64,
        seeds: u64,
    ) -> Self {
        Self {
            logging,
            target,
            target_floor: None,
            impressions,
            seeds,
            first_seed: 1,
            folds: tla_core::ope::DEFAULT_FOLDS,
            settings: crate::default_settings(),
            looks: DEFAULT_LOOKS,
            alpha: DEFAULT_ALPHA,
            pacing: None,
        }
    }
}

/// One estimator over all seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EstimatorSummary {
    /// `ips`, `snips` or `dr`.
    pub estimator: &'static str,
    /// Mean estimate.
    pub mean_estimate: f64,
    /// Mean of `estimate - truth` (each seed against its own truth).
    pub bias: f64,
    /// `bias / mean truth`.
    pub relative_bias: f64,
    /// Standard error of the bias (sd of `estimate - truth` / sqrt(seeds)).
    pub bias_std_error: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Standard deviation of `estimate - truth` across seeds (of the estimates when the
    /// truth is the same in every seed).
    pub sd_estimate: f64,
    /// Mean reported standard error (compare with `sd_estimate`).
    pub mean_std_error: f64,
    /// Share of seeds whose `1 - alpha` interval contains the truth at the end.
    pub coverage: f64,
    /// Share of seeds whose interval contained the truth at every look.
    pub covered_at_all_looks: f64,
    /// Per look, the share of seeds whose interval contained the truth then.
    pub coverage_by_look: Vec<f64>,
    /// The same over the seeds [`caution`] does not flag (NaN when it flags them all).
    pub coverage_without_caution: f64,
    /// Mean width of the interval at the end.
    pub mean_width: f64,
    /// Mean effective sample size.
    pub mean_ess: f64,
}

/// The importance weights over all seeds (see [`WeightDiagnostics`]).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WeightSummary {
    /// Mean number of evaluated rows per seed.
    pub mean_rows: f64,
    /// Mean number of rows with a positive weight.
    pub mean_rows_with_weight: f64,
    /// Mean number of rows with a positive weight and a donation.
    pub mean_rewarded_with_weight: f64,
    /// Mean effective number of donations ([`WeightDiagnostics::effective_rewarded`]).
    pub mean_effective_rewarded: f64,
    /// Mean over seeds of `(1/n) sum w` (expectation 1).
    pub mean_weight: f64,
    /// Smallest `(1/n) sum w` of a seed.
    pub min_mean_weight: f64,
    /// Largest weight of any seed.
    pub max_weight: f64,
    /// Smallest ESS of a seed.
    pub min_ess: f64,
    /// Mean share of `sum w r` from the top 1% of positive weights.
    pub mean_top_weight_share: f64,
    /// Seeds flagged by [`caution`].
    pub seeds_with_caution: u64,
}

/// The doubly robust confidence sequence over all seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SequenceSummary {
    /// The number of evaluated rows the sequence is tuned for (the planned rows).
    pub planned_rows: u64,
    /// Share of seeds whose sequence contains the truth at the end.
    pub coverage: f64,
    /// Share of seeds whose sequence contained the truth at every look (the sequence
    /// promises `1 - alpha`).
    pub covered_at_all_looks: f64,
    /// Per look, the share of seeds whose sequence contained the truth then.
    pub coverage_by_look: Vec<f64>,
    /// Mean width at the end.
    pub mean_width: f64,
    /// Mean over seeds of the sequence's width at the end over the fixed-horizon
    /// `aw_aipw` interval's width.
    pub width_ratio_to_aw_aipw: f64,
    /// Mean over seeds of the sequence's width at the end over the fixed-horizon normal
    /// interval of the same terms (for the weighted sequence: AW-AIPW's).
    pub width_ratio_to_fixed: f64,
}

/// One look of one seed: whether each interval contained the truth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LookRun {
    /// Evaluated rows so far.
    pub rows: usize,
    /// The truth at this look (in a flight, the mean of the truths of the opportunities
    /// so far).
    pub truth: f64,
    /// AW-AIPW's truth at this look: in a flight, the mean of the truths so far under
    /// its weights; otherwise `truth`.
    pub aw_truth: f64,
    /// Per estimator (IPS, SNIPS, DR, AW-AIPW): whether its interval contained the truth.
    pub covered: Vec<bool>,
    /// Whether the confidence sequence contained it.
    pub sequence_covered: bool,
    /// Whether the adaptively weighted sequence contained AW-AIPW's truth (true while
    /// it claims nothing).
    pub aw_sequence_covered: bool,
}

/// What one seed measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// The target's true value per impression (differs per seed for a trained target;
    /// in a flight, the mean over the evaluated opportunities).
    pub truth: f64,
    /// AW-AIPW's truth: in a flight, the mean over the evaluated opportunities under its
    /// weights; otherwise `truth`.
    pub aw_truth: f64,
    /// IPS, SNIPS, DR and AW-AIPW at the end, their intervals at `1 - alpha`.
    pub estimates: Vec<Estimate>,
    /// The doubly robust confidence sequence at the end.
    pub sequence: SequenceInterval,
    /// The adaptively weighted confidence sequence at the end (`None` when AW-AIPW has
    /// no estimate).
    pub aw_sequence: Option<SequenceInterval>,
    /// Every look, the last at the end.
    pub looks: Vec<LookRun>,
    /// The importance weights of the evaluated rows.
    pub weights: WeightDiagnostics,
}

/// What a validation measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidationReport {
    /// World name.
    pub world: String,
    /// Logging policy name.
    pub logging: String,
    /// Target label.
    pub target: String,
    /// Impressions per seed.
    pub impressions: u64,
    /// Rows evaluated per seed (all impressions, or the second half for a trained
    /// target).
    pub evaluated_rows: u64,
    /// Seeds run.
    pub seeds: u64,
    /// First seed.
    pub first_seed: u64,
    /// Cross-fitting folds.
    pub folds: usize,
    /// Miss probability of the intervals and of the sequence.
    pub alpha: f64,
    /// The evaluated rows at each look.
    pub looks: Vec<usize>,
    /// True value per impression of the target (mean over seeds for a trained target).
    pub truth: f64,
    /// Standard deviation of the truth across seeds (0 unless the target is trained).
    pub truth_sd: f64,
    /// One row per estimator: IPS, SNIPS, DR, AW-AIPW.
    pub estimators: Vec<EstimatorSummary>,
    /// The doubly robust confidence sequence (unweighted terms).
    pub sequence: SequenceSummary,
    /// The adaptively weighted confidence sequence (AW-AIPW with the same boundary).
    pub aw_sequence: SequenceSummary,
    /// The importance weights over all seeds.
    pub weights: WeightSummary,
    /// Per seed: truth, the estimates, the looks, the weights.
    pub runs: Vec<SeedRun>,
}

/// A target ready for the seeds: a fixed target with its truth, or what a trained
/// target needs to be trained and scored per seed.
#[derive(Debug, Clone)]
pub enum PreparedTarget {
    /// A target the same in every seed, and its exact value.
    Fixed {
        /// The target.
        target: Target,
        /// Its exact value per impression (per opportunity in a flight: the mean of
        /// `values`).
        truth: f64,
        /// In a world with a flight, its exact value per segment at each opportunity
        /// `t`: `V_s(f_t) = sum_a pi_t(a | s) EV(s, a, f_t)` (drift; the target of
        /// `f_t`'s epoch), so `V(f_t) = sum_s P(s) V_s(f_t)`; `None` without a flight.
        values: Option<Vec<Vec<f64>>>,
    },
    /// Factorized Thompson sampling trained on each seed's first half.
    Trained {
        /// The target's floor.
        floor: f64,
        /// The even split's exact value per segment over the allowed versions.
        even_values: Vec<f64>,
        /// In a world with a flight, the even split's exact value per segment at each
        /// opportunity of the second half (drift); `None` without a flight.
        even_at: Option<Vec<Vec<f64>>>,
    },
}

impl PreparedTarget {
    /// Checks that `target` applies to a world and that `floor` is the floor of a
    /// trained target ([`EvaluationTarget::check_input`], [`EvaluationTarget::check_floor`]),
    /// resolves it against `world` and computes what does not depend on the seed: in a
    /// world with a flight of `impressions` opportunities, the truth at each of them.
    ///
    /// In a flight whose options launch, the oracle is, in each epoch ([`Epochs`]), the
    /// best version per segment (by the world's base truth) among those that exist; the
    /// even split spans the versions that exist; a fixed version must exist from the
    /// start, and the trained target needs every launch in the first half (it is
    /// evaluated on the second); others are refused with the reason.
    pub fn new(
        target: &EvaluationTarget,
        floor: Option<f64>,
        world: &World,
        impressions: u64,
    ) -> Result<Self, String> {
        target
            .check_input(EvaluationInput::World)
            .and_then(|()| target.check_floor(floor))
            .map_err(|e| e.to_string())?;
        let epochs = Epochs::of(world);
        let segments = world.segments();
        let mut options = vec![0u32; world.space.components()];
        let fixed = match target {
            EvaluationTarget::FactorizedTs => {
                let last = epochs.start(epochs.count() - 1);
                if last > 0.5 {
                    return Err(format!(
                        "--target factorized-ts is trained on the first half and evaluated on the \
                         second; in this flight an option launches at {last} of the flight, \
                         within the second half, so the target would change while it is \
                         evaluated: use a flight whose launches are all in the first half, or \
                         another target"
                    ));
                }
                let even_at = world.flight.as_ref().map(|_| {
                    let skip = impressions / 2;
                    (skip..impressions)
                        .map(|t| {
                            let f = Flight::fraction(t, impressions);
                            (0..segments)
                                .map(|s| even_value_at(world, s, f, &mut options))
                                .collect()
                        })
                        .collect()
                });
                return Ok(PreparedTarget::Trained {
                    floor: floor.unwrap_or(DEFAULT_TARGET_FLOOR),
                    even_values: segment_truths(world).iter().map(|t| t.even_value).collect(),
                    even_at,
                });
            }
            EvaluationTarget::Oracle if epochs.count() > 1 => {
                let mut versions = Vec::with_capacity(segments * epochs.count());
                for e in 0..epochs.count() {
                    let f = epochs.start(e);
                    for s in 0..segments {
                        let mut best = (0, f64::NEG_INFINITY);
                        for v in 0..world.space.total() {
                            world.space.decode_into(v, &mut options);
                            if !world.space.is_allowed(v) || !world.available_at(&options, f) {
                                continue;
                            }
                            let ev = world.expected_value(s, &options);
                            if ev > best.1 {
                                best = (v, ev);
                            }
                        }
                        versions.push(best.0);
                    }
                }
                Target::PerSegment(versions)
            }
            EvaluationTarget::Oracle => {
                Target::PerSegment(world.oracle().into_iter().map(|(v, _)| v).collect())
            }
            EvaluationTarget::Uniform if epochs.count() > 1 => Target::UniformPerContext(
                (0..epochs.count())
                    .flat_map(|e| {
                        let f = epochs.start(e);
                        let available = (0..world.space.total())
                            .filter(|&v| {
                                world.space.decode_into(v, &mut options);
                                world.available_at(&options, f)
                            })
                            .count();
                        std::iter::repeat_n(available, segments)
                    })
                    .collect(),
            ),
            EvaluationTarget::Uniform => Target::Uniform,
            EvaluationTarget::FixedOptions(_) => {
                let options = target
                    .option_indices()
                    .expect("check_input refuses option names on a world");
                let version = world.space.try_encode(&options).map_err(|e| {
                    format!(
                        "fixed options {options:?} do not name a version of this world \
                         (option counts {:?}): {e}",
                        world.space.option_counts()
                    )
                })?;
                if !world.available_at(&options, 0.0) {
                    return Err(format!(
                        "fixed options {options:?}: an option of this version launches during \
                         the flight, so the target could not be served before; choose options \
                         that exist from the start"
                    ));
                }
                Target::PerSegment(vec![version; segments])
            }
            EvaluationTarget::Version(_)
            | EvaluationTarget::Fixed(_)
            | EvaluationTarget::BestLogged
            | EvaluationTarget::Column(_)
            | EvaluationTarget::File(_) => {
                unreachable!("check_input refuses --target {target} on a world")
            }
        };
        match &world.flight {
            None => {
                let truth = fixed.true_value(world);
                Ok(PreparedTarget::Fixed {
                    target: fixed,
                    truth,
                    values: None,
                })
            }
            Some(_) => {
                let values: Vec<Vec<f64>> = (0..impressions)
                    .map(|t| {
                        let f = Flight::fraction(t, impressions);
                        let e = epochs.epoch(f);
                        (0..segments)
                            .map(|s| {
                                let c = if fixed.contexts(world) == segments {
                                    s
                                } else {
                                    s + segments * e
                                };
                                match &fixed {
                                    Target::PerSegment(versions) => {
                                        world.space.decode_into(versions[c], &mut options);
                                        world.expected_value_at(s, &options, f)
                                    }
                                    Target::Uniform | Target::UniformPerContext(_) => {
                                        even_value_at(world, s, f, &mut options)
                                    }
                                    Target::Trained(_) => unreachable!("trained above"),
                                }
                            })
                            .collect()
                    })
                    .collect();
                let truth = values.iter().map(|v| marginal(world, v)).sum::<f64>()
                    / values.len().max(1) as f64;
                Ok(PreparedTarget::Fixed {
                    target: fixed,
                    truth,
                    values: Some(values),
                })
            }
        }
    }
}

/// `sum_s P(s) v[s]`.
fn marginal(world: &World, per_segment: &[f64]) -> f64 {
    world
        .segment_probs
        .iter()
        .zip(per_segment)
        .map(|(p, v)| p * v)
        .sum()
}

/// The even split's exact value in segment `s` at flight fraction `f`: the mean of
/// `EV(s, v, f)` over the allowed versions that exist at `f`.
fn even_value_at(world: &World, s: usize, f: f64, options: &mut [u32]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for v in 0..world.space.total() {
        world.space.decode_into(v, options);
        if world.space.is_allowed(v) && world.available_at(options, f) {
            sum += world.expected_value_at(s, options, f);
            count += 1;
        }
    }
    sum / count.max(1) as f64
}

/// The report's label of a target: its text (`oracle`, `uniform`,
/// `fixed-options:0,1,2,3`, `factorized-ts`), with `(floor F)` after `factorized-ts`
/// when the floor is not the default.
fn target_label(target: &EvaluationTarget, floor: Option<f64>) -> String {
    match (target, floor) {
        (EvaluationTarget::FactorizedTs, Some(floor)) if floor != DEFAULT_TARGET_FLOOR => {
            format!("{target} (floor {floor})")
        }
        _ => target.to_string(),
    }
}

/// The design every simulated learner is given (as in [`run_seed`]'s logging policy).
fn learner_design(world: &World) -> Design {
    let interactions = Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT);
    world.design(interactions, Objective::Value)
}

/// Seeds the trained target's Thompson draws (apart from the logging policy's stream).
const TRAINED_TARGET_STREAM: u64 = 0x2545_F491_4F6C_DD1D;

/// Trains the factorized-ts target on `rows` (the logging policy's model settings and
/// draws, the given floor), its Thompson draws seeded from `seed`.
pub fn train_target(
    world: &World,
    settings: &CampaignPolicySettings,
    floor: f64,
    rows: &[LoggedRow],
    seed: u64,
) -> Result<TrainedTarget, String> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ TRAINED_TARGET_STREAM);
    let target_settings = TrainedTargetSettings {
        floor,
        ..TrainedTargetSettings::from_policy(settings)
    };
    TrainedTarget::train(&learner_design(world), &target_settings, rows, &mut rng)
        .map_err(|e| e.to_string())
}

/// The evaluated rows at each of `looks` equally spaced looks over `rows` rows:
/// `ceil(j · rows / looks)` for `j = 1..=looks`, without repeats (fewer looks when there
/// are fewer rows than looks); the last is `rows`.
pub fn look_rows(rows: usize, looks: usize) -> Vec<usize> {
    let looks = looks.max(1);
    let mut out: Vec<usize> = (1..=looks)
        .map(|j| (j * rows).div_ceil(looks).max(1))
        .collect();
    out.dedup();
    out
}

/// The observer of a validation run: logs every opportunity as a row and, before each
/// decision, the second moment of the importance weight the logging policy is about to
/// give the target in the arriving segment, `m_t = sum_a pi(a | s_t)^2 / e_t(a | s_t)`
/// (the stabilizing weights of AW-AIPW, [`Stabilizer::Known`]; in a run with a budget
/// `e_t` is the policy's distribution before the pacer's gate, a predictable
/// approximation). The
/// per-segment sums are recomputed only when the segment's decision table (its model
/// version) or the epoch changes. A trained target is trained here on the first half as
/// soon as it is complete, so the second half's moments use it. A skipped opportunity
/// is a row with action [`SKIP`] and reward 0. With a target per epoch, each row's
/// context is `segment + segments · epoch`.
struct ValidationLog<'a> {
    world: &'a World,
    config: &'a ValidationConfig,
    seed: u64,
    rows: Vec<LoggedRow>,
    /// `m_t` of each evaluated row.
    moments: Vec<f64>,
    /// Rows before the evaluated ones (the trained target's first half; 0 otherwise).
    skip: usize,
    target: Option<Target>,
    floor: f64,
    epochs: Epochs,
    /// Whether contexts carry the epoch.
    per_epoch: bool,
    /// Per segment: the model version, the epoch and `sum_a pi(a | s)^2 / e(a | s)`.
    cache: Vec<Option<(u64, usize, f64)>>,
    error: Option<String>,
}

impl ValidationLog<'_> {
    /// The epoch of the next opportunity (0 without a flight).
    fn next_epoch(&self) -> usize {
        match self.world.flight {
            Some(_) => self.epochs.epoch(Flight::fraction(
                self.rows.len() as u64,
                self.config.impressions,
            )),
            None => 0,
        }
    }

    fn context(&self, segment: usize, epoch: usize) -> usize {
        if self.per_epoch {
            segment + self.world.segments() * epoch
        } else {
            segment
        }
    }

    fn segment_moment<P: Policy + ?Sized>(&self, learner: &P, s: usize, epoch: usize) -> f64 {
        let target = self.target.as_ref().expect("a target");
        let total = self.world.space.total();
        let c = self.context(s, epoch);
        match target {
            Target::PerSegment(versions) => 1.0 / learner.propensity(s, versions[c]),
            _ => {
                let f = self.epochs.start(epoch);
                let mut options = vec![0u32; self.world.space.components()];
                (0..total)
                    .map(|v| {
                        let pi = target.prob(total, c, v);
                        if pi <= 0.0 {
                            return 0.0;
                        }
                        self.world.space.decode_into(v, &mut options);
                        if !self.world.available_at(&options, f) {
                            return 0.0;
                        }
                        pi * pi / learner.propensity(s, v)
                    })
                    .sum()
            }
        }
    }

    fn push(&mut self, segment: usize, action: u64, propensity: f64, reward: f64, f: Option<f64>) {
        let epoch = f.map_or(0, |f| self.epochs.epoch(f));
        let context = if self.rows.len() < self.skip {
            segment
        } else {
            self.context(segment, epoch)
        };
        self.rows.push(LoggedRow {
            segment: context,
            action,
            propensity,
            reward,
        });
    }
}

impl<L: Policy + ?Sized> Observer<L> for ValidationLog<'_> {
    fn before_decision(&mut self, learner: &L, segment: usize) {
        if self.error.is_some() || self.rows.len() < self.skip {
            return;
        }
        if self.target.is_none() {
            // Skipped opportunities show nothing to learn from.
            let served: Vec<LoggedRow> = self.rows[..self.skip]
                .iter()
                .filter(|r| r.action != SKIP)
                .copied()
                .collect();
            match train_target(
                self.world,
                &self.config.settings,
                self.floor,
                &served,
                self.seed,
            ) {
                Ok(trained) => self.target = Some(Target::Trained(Box::new(trained))),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        let epoch = self.next_epoch();
        let version = learner.model_version(segment);
        let m = match self.cache[segment] {
            Some((v, e, c)) if v == version && e == epoch => c,
            _ => {
                let c = self.segment_moment(learner, segment, epoch);
                self.cache[segment] = Some((version, epoch, c));
                c
            }
        };
        self.moments.push(m);
    }

    fn impression(&mut self, impression: &Impression) -> Flow {
        self.push(
            impression.segment,
            impression.decision.version,
            impression.decision.propensity,
            impression.answer.donation,
            impression.flight_fraction,
        );
        Flow::Continue
    }

    fn skip(&mut self, skip: &Skip) -> Flow {
        self.push(
            skip.segment,
            SKIP,
            skip.propensity,
            0.0,
            skip.flight_fraction,
        );
        Flow::Continue
    }
}

/// Logs and evaluates once for one seed. A fixed target is evaluated on every logged
/// row; the trained target is trained on the first half (time order) and evaluated on
/// the second. At each look ([`look_rows`]) every estimator is read on the evaluated
/// rows so far: IPS, SNIPS and cross-fitted DR recomputed on the prefix, AW-AIPW and the
/// confidence sequence read from their running sums (one pass). In a world with a
/// flight the truth at a look is the mean of the per-opportunity truths so far, and
/// AW-AIPW's is their mean under its weights `h_t` (what it estimates when the truth
/// drifts).
pub fn run_seed(
    world: &World,
    prepared: &PreparedTarget,
    config: &ValidationConfig,
    seed: u64,
) -> Result<SeedRun, String> {
    let design = learner_design(world);
    let mut policy = build_policy(config.logging, &design, &config.settings, seed);
    let impressions = usize::try_from(config.impressions).map_err(|e| e.to_string())?;
    let (fixed, skip, floor) = match prepared {
        PreparedTarget::Fixed { target, .. } => (Some(target.clone()), 0, 0.0),
        PreparedTarget::Trained { floor, .. } => (None, impressions / 2, *floor),
    };
    let per_epoch = fixed
        .as_ref()
        .is_some_and(|t| t.contexts(world) != world.segments());
    let mut log = ValidationLog {
        world,
        config,
        seed,
        rows: Vec::with_capacity(impressions),
        moments: Vec::with_capacity(impressions - skip),
        skip,
        target: fixed,
        floor,
        epochs: Epochs::of(world),
        per_epoch,
        cache: vec![None; world.segments()],
        error: None,
    };
    let run_config = RunConfig {
        pacing: config.pacing,
        ..RunConfig::new(config.impressions)
    };
    online::run(
        world,
        &mut Streams::new(seed, &world.segment_probs),
        &mut policy,
        &run_config,
        &mut log,
    );
    if let Some(error) = log.error {
        return Err(error);
    }
    let target = log.target.expect("a target: fixed, or trained at the half");
    let evaluated = &log.rows[skip..];
    assert_eq!(
        log.moments.len(),
        evaluated.len(),
        "one moment per evaluated row"
    );
    // The truth per segment at each evaluated opportunity in a flight, or the one truth.
    let (truth, values): (f64, Option<Vec<Vec<f64>>>) = match prepared {
        PreparedTarget::Fixed { truth, values, .. } => (*truth, values.clone()),
        PreparedTarget::Trained {
            even_values,
            even_at,
            ..
        } => match (even_at, &target) {
            (Some(even_at), Target::Trained(trained)) => {
                let mut options = vec![0u32; world.space.components()];
                let values: Vec<Vec<f64>> = (skip..impressions)
                    .map(|t| {
                        let f = Flight::fraction(t as u64, config.impressions);
                        (0..world.segments())
                            .map(|s| {
                                trained.expectation(s, even_at[t - skip][s], |v| {
                                    world.space.decode_into(v, &mut options);
                                    world.expected_value_at(s, &options, f)
                                })
                            })
                            .collect()
                    })
                    .collect();
                let truth = values.iter().map(|v| marginal(world, v)).sum::<f64>()
                    / values.len().max(1) as f64;
                (truth, Some(values))
            }
            _ => (target.true_value_with(world, even_values), None),
        },
    };
    // A fixed target's values cover every opportunity; a trained target's the second
    // half.
    let offset = match prepared {
        PreparedTarget::Fixed { .. } => skip,
        PreparedTarget::Trained { .. } => 0,
    };
    let total = world.space.total();
    let prob = |s, a| {
        if a == SKIP {
            0.0
        } else {
            target.prob(total, s, a)
        }
    };
    let looks = look_rows(evaluated.len(), config.looks);
    let sequence = Sequence::tuned(config.alpha, evaluated.len() as f64);
    let mut aipw = AdaptiveAipw::new(ShrunkMeanModel::online(
        target.contexts(world),
        target.probabilities(world),
    ));
    let mut state = StabilizerState::new(Stabilizer::Known(&log.moments));
    let mut look_runs = Vec::with_capacity(looks.len());
    let mut pushed = 0;
    // Sums of the truths so far: plain, and per context under AW-AIPW's weights (its
    // strata are the contexts: segment, and epoch with a target per epoch).
    let segments = world.segments();
    let contexts = target.contexts(world);
    let mut sum_v = 0.0;
    let (mut sum_h, mut sum_hv) = (vec![0.0; contexts], vec![0.0; contexts]);
    // Per context: rows so far in its epoch, and the sum of its segment's truth over them.
    let (mut epoch_rows, mut epoch_v) = (vec![0.0; contexts], vec![0.0; contexts]);
    let mut end = None;
    for (j, &k) in looks.iter().enumerate() {
        while pushed < k {
            let row = &evaluated[pushed];
            let pi = prob(row.segment, row.action);
            let moment = state
                .moment(pushed, row.segment)
                .map_err(|e| e.to_string())?;
            let h = stabilizing_weight(moment);
            aipw.push(pushed, row, pi, moment)
                .map_err(|e| e.to_string())?;
            state.learn(row.segment, pi);
            if let Some(values) = &values {
                let v = &values[offset + pushed];
                let (c, epoch) = (row.segment, row.segment / segments);
                sum_v += marginal(world, v);
                sum_h[c] += h;
                sum_hv[c] += h * v[c % segments];
                for (s, &value) in v.iter().enumerate() {
                    epoch_rows[s + segments * epoch] += 1.0;
                    epoch_v[s + segments * epoch] += value;
                }
            }
            pushed += 1;
        }
        // AW-AIPW's truth: per context, the mean of its segment's truths under its
        // weights (the plain mean over its epoch where every weight is 0 so far),
        // combined by the context's expected share P(s) · (rows of its epoch) / k.
        let (plain_truth, aw_truth) = match &values {
            Some(_) => {
                let plain = sum_v / k as f64;
                let aw = (0..contexts)
                    .filter(|&c| epoch_rows[c] > 0.0)
                    .map(|c| {
                        let context_truth = if sum_h[c] > 0.0 {
                            sum_hv[c] / sum_h[c]
                        } else {
                            epoch_v[c] / epoch_rows[c]
                        };
                        world.segment_probs[c % segments] * epoch_rows[c] / k as f64 * context_truth
                    })
                    .sum();
                (plain, aw)
            }
            None => (truth, truth),
        };
        let last = j + 1 == looks.len();
        let prefix = &evaluated[..k];
        // Before the end an estimator that cannot answer yet (no overlap, too few rows
        // for the folds) claims nothing: an unbounded interval.
        let answer = |result: Result<Estimate, tla_core::ope::OpeError>, estimator| match result {
            Ok(e) => Ok(e.at_level(config.alpha)),
            Err(e) if last => Err(e.to_string()),
            Err(_) => Ok(unbounded(estimator, k)),
        };
        let estimates = vec![
            answer(ips(prefix, prob), Estimator::Ips)?,
            answer(snips(prefix, prob), Estimator::Snips)?,
            answer(
                doubly_robust(prefix, prob, config.folds, |train| {
                    AskModel::fit(world, train, &target)
                }),
                Estimator::DoublyRobust,
            )?,
            answer(aipw.estimate(), Estimator::AwAipw)?,
        ];
        let seq = aipw.sequence(&sequence);
        let aw_seq = aipw.weighted_sequence(&sequence).ok();
        look_runs.push(LookRun {
            rows: k,
            truth: plain_truth,
            aw_truth,
            covered: estimates
                .iter()
                .map(|e| {
                    e.covers(if e.estimator == Estimator::AwAipw {
                        aw_truth
                    } else {
                        plain_truth
                    })
                })
                .collect(),
            sequence_covered: seq.covers(plain_truth),
            aw_sequence_covered: aw_seq.is_none_or(|s| s.covers(aw_truth)),
        });
        end = Some((estimates, seq, aw_seq, plain_truth, aw_truth));
    }
    let (estimates, sequence, aw_sequence, truth, aw_truth) = end.expect("at least one look");
    let w = weights(evaluated, prob).map_err(|e| e.to_string())?;
    Ok(SeedRun {
        seed,
        truth,
        aw_truth,
        estimates,
        sequence,
        aw_sequence,
        looks: look_runs,
        weights: weight_diagnostics(evaluated, &w),
    })
}

/// An estimate that claims nothing: value NaN, interval the whole line.
fn unbounded(estimator: Estimator, rows: usize) -> Estimate {
    Estimate {
        estimator,
        value: f64::NAN,
        std_error: f64::INFINITY,
        lower: f64::NEG_INFINITY,
        upper: f64::INFINITY,
        ess: 0.0,
        rows,
    }
}

/// The caution rules, one place for every input of `tla evaluate`: see
/// [`tla_core::ope::diagnostics::caution`].
pub use tla_core::ope::diagnostics::{
    CAUTION_MAX_WEIGHT_SHARE, CAUTION_MEAN_WEIGHT_Z, CAUTION_MIN_REWARDED, caution,
};

/// Runs every seed (in parallel over the available cores) and summarizes.
pub fn validate(world: &World, config: &ValidationConfig) -> Result<ValidationReport, String> {
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(format!("alpha must lie in (0, 1); got {}", config.alpha));
    }
    if config.looks == 0 {
        return Err("looks must be at least 1".into());
    }
    if config.pacing.is_some() && world.flight.is_none() {
        return Err(format!(
            "a budget needs a world with a flight (format tla-creative-world/v2); {} has none",
            world.name
        ));
    }
    let target = PreparedTarget::new(
        &config.target,
        config.target_floor,
        world,
        config.impressions,
    )?;
    let seeds: Vec<u64> = (0..config.seeds).map(|k| config.first_seed + k).collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(seeds.len().max(1));
    let chunk = seeds.len().div_ceil(threads).max(1);
    let results: Vec<Result<SeedRun, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .chunks(chunk)
            .map(|part| {
                let target = &target;
                scope.spawn(move || {
                    part.iter()
                        .map(|&seed| run_seed(world, target, config, seed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("validation thread panicked"))
            .collect()
    });
    let runs = results
        .into_iter()
        .zip(&seeds)
        .map(|(r, seed)| r.map_err(|e| format!("seed {seed}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let evaluated_rows = match target {
        PreparedTarget::Fixed { .. } => config.impressions,
        PreparedTarget::Trained { .. } => config.impressions - config.impressions / 2,
    };
    let n = runs.len().max(1) as f64;
    let truth = runs.iter().map(|r| r.truth).sum::<f64>() / n;
    let truth_sd = if runs.len() > 1 {
        (runs.iter().map(|r| (r.truth - truth).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let looks = runs.first().map(|r| r.looks.len()).unwrap_or(0);
    let share = |f: &dyn Fn(&SeedRun) -> bool| runs.iter().filter(|r| f(r)).count() as f64 / n;
    let estimators = (0..runs.first().map_or(0, |r| r.estimates.len()))
        .map(|k| {
            // Each estimator against its own truth (AW-AIPW's differs in a flight).
            let truth_of = |r: &SeedRun| {
                if r.estimates[k].estimator == Estimator::AwAipw {
                    r.aw_truth
                } else {
                    r.truth
                }
            };
            let mut summary = summarize(runs.iter().map(|r| (r.estimates[k], truth_of(r))), truth);
            summary.covered_at_all_looks = share(&|r| r.looks.iter().all(|l| l.covered[k]));
            summary.coverage_by_look = (0..looks)
                .map(|j| share(&|r| r.looks[j].covered[k]))
                .collect();
            let unflagged: Vec<&SeedRun> = runs
                .iter()
                .filter(|r| caution(&r.weights).is_none())
                .collect();
            summary.coverage_without_caution = unflagged
                .iter()
                .filter(|r| r.estimates[k].covers(truth_of(r)))
                .count() as f64
                / unflagged.len() as f64;
            summary
        })
        .collect();
    let z = tla_core::stats::normal_quantile(1.0 - config.alpha / 2.0);
    let aw_width = |r: &SeedRun| {
        r.estimates
            .iter()
            .find(|e| e.estimator == Estimator::AwAipw)
            .map_or(f64::NAN, |e| e.width())
    };
    let sequence = SequenceSummary {
        planned_rows: evaluated_rows,
        coverage: share(&|r| r.sequence.covers(r.truth)),
        covered_at_all_looks: share(&|r| r.looks.iter().all(|l| l.sequence_covered)),
        coverage_by_look: (0..looks)
            .map(|j| share(&|r| r.looks[j].sequence_covered))
            .collect(),
        mean_width: runs.iter().map(|r| r.sequence.width()).sum::<f64>() / n,
        width_ratio_to_aw_aipw: runs
            .iter()
            .map(|r| r.sequence.width() / aw_width(r))
            .sum::<f64>()
            / n,
        width_ratio_to_fixed: runs
            .iter()
            .map(|r| r.sequence.width() / (2.0 * z * r.sequence.std_error))
            .sum::<f64>()
            / n,
    };
    let aw_sequence_width = |r: &SeedRun| r.aw_sequence.map_or(f64::INFINITY, |s| s.width());
    let aw_sequence = SequenceSummary {
        planned_rows: evaluated_rows,
        coverage: share(&|r| r.aw_sequence.is_none_or(|s| s.covers(r.aw_truth))),
        covered_at_all_looks: share(&|r| r.looks.iter().all(|l| l.aw_sequence_covered)),
        coverage_by_look: (0..looks)
            .map(|j| share(&|r| r.looks[j].aw_sequence_covered))
            .collect(),
        mean_width: runs.iter().map(aw_sequence_width).sum::<f64>() / n,
        width_ratio_to_aw_aipw: runs
            .iter()
            .map(|r| aw_sequence_width(r) / aw_width(r))
            .sum::<f64>()
            / n,
        width_ratio_to_fixed: runs
            .iter()
            .map(|r| aw_sequence_width(r) / aw_width(r))
            .sum::<f64>()
            / n,
    };
    let mean =
        |f: &dyn Fn(&WeightDiagnostics) -> f64| runs.iter().map(|r| f(&r.weights)).sum::<f64>() / n;
    let fold = |f: &dyn Fn(&WeightDiagnostics) -> f64, init: f64, pick: fn(f64, f64) -> f64| {
        runs.iter().map(|r| f(&r.weights)).fold(init, pick)
    };
    let weights = WeightSummary {
        mean_rows: mean(&|w| w.rows as f64),
        mean_rows_with_weight: mean(&|w| w.rows_with_weight as f64),
        mean_rewarded_with_weight: mean(&|w| w.rewarded_with_weight as f64),
        mean_effective_rewarded: mean(&|w| w.effective_rewarded),
        mean_weight: mean(&|w| w.mean_weight),
        min_mean_weight: fold(&|w| w.mean_weight, f64::INFINITY, f64::min),
        max_weight: fold(&|w| w.max_weight, 0.0, f64::max),
        min_ess: fold(&|w| w.ess, f64::INFINITY, f64::min),
        mean_top_weight_share: mean(&|w| w.top_weight_share),
        seeds_with_caution: runs
            .iter()
            .filter(|r| caution(&r.weights).is_some())
            .count() as u64,
    };
    Ok(ValidationReport {
        world: world.name.clone(),
        logging: match config.logging {
            PolicyChoice::Uniform => "uniform",
            PolicyChoice::IndependentTs => "independent-ts",
            PolicyChoice::FactorizedTs => "factorized-ts",
        }
        .into(),
        target: target_label(&config.target, config.target_floor),
        impressions: config.impressions,
        evaluated_rows,
        seeds: config.seeds,
        first_seed: config.first_seed,
        folds: config.folds,
        alpha: config.alpha,
        looks: look_rows(evaluated_rows as usize, config.looks),
        truth,
        truth_sd,
        estimators,
        sequence,
        aw_sequence,
        weights,
        runs,
    })
}

fn summarize(
    estimates: impl Iterator<Item = (Estimate, f64)>,
    mean_truth: f64,
) -> EstimatorSummary {
    let estimates: Vec<(Estimate, f64)> = estimates.collect();
    let n = estimates.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Estimate, f64) -> f64| {
        estimates.iter().map(|(e, t)| f(e, *t)).sum::<f64>() / n
    };
    let mean_estimate = mean(&|e, _| e.value);
    let bias = mean(&|e, truth| e.value - truth);
    let sd_estimate = if estimates.len() > 1 {
        (estimates
            .iter()
            .map(|(e, truth)| (e.value - truth - bias).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt()
    } else {
        f64::NAN
    };
    let estimator = estimates
        .first()
        .map(|(e, _)| e.estimator)
        .unwrap_or(Estimator::Ips);
    EstimatorSummary {
        estimator: estimator.name(),
        mean_estimate,
        bias,
        relative_bias: bias / mean_truth,
        bias_std_error: sd_estimate / n.sqrt(),
        rmse: mean(&|e, truth| (e.value - truth).powi(2)).sqrt(),
        sd_estimate,
        mean_std_error: mean(&|e, _| e.std_error),
        coverage: mean(&|e, truth| if e.covers(truth) { 1.0 } else { 0.0 }),
        covered_at_all_looks: f64::NAN,
        coverage_by_look: Vec::new(),
        coverage_without_caution: f64::NAN,
        mean_width: mean(&|e, _| e.width()),
        mean_ess: mean(&|e, _| e.ess),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> World {
        World::from_json(include_str!("../../../worlds/small.json")).unwrap()
    }

    #[test]
    fn truths_match_the_world() {
        let world = small();
        let oracle = Target::PerSegment(world.oracle().into_iter().map(|(v, _)| v).collect());
        let want: f64 = world
            .segment_probs
            .iter()
            .zip(world.oracle())
            .map(|(p, (_, ev))| p * ev)
            .sum();
        assert!((oracle.true_value(&world) - want).abs() < 1e-12);
        // worlds/small.json's summary: uniform EV per impression 0.88094...
        assert!((Target::Uniform.true_value(&world) - 0.880_941_628_885_77).abs() < 1e-9);
        let fixed =
            PreparedTarget::new(&parse("fixed-options:0,1,2,3"), None, &world, 1000).unwrap();
        assert!(matches!(
            fixed,
            PreparedTarget::Fixed { target: Target::PerSegment(v), .. } if v == vec![0b00_01_10_11; 4]
        ));
        let error =
            PreparedTarget::new(&parse("fixed-options:0,9,0,0"), None, &world, 1000).unwrap_err();
        assert!(
            error.starts_with("fixed options [0, 9, 0, 0] do not name a version of this world (option counts [4, 4, 4, 4])"),
            "{error}"
        );
        let oracle = PreparedTarget::new(&parse("oracle"), None, &world, 1000).unwrap();
        assert!(
            matches!(oracle, PreparedTarget::Fixed { truth, .. } if (truth - want).abs() < 1e-12)
        );
    }

    fn parse(text: &str) -> EvaluationTarget {
        text.parse().unwrap()
    }

    /// The validation checks the target it is given as every evaluation does: a form
    /// that does not apply to a world, option names, and a floor on a target without
    /// one are refused with the grammar's messages.
    #[test]
    fn targets_that_do_not_apply_to_a_world_are_refused() {
        let world = small();
        for (text, floor, fragment) in [
            ("best-logged", None, "does not apply to --world"),
            ("version:1", None, "does not apply to --world"),
            ("fixed:a", None, "does not apply to --world"),
            ("fixed-options:0,heron", None, "options are given by index"),
            ("uniform", Some(0.1), "--target uniform has none"),
            ("factorized-ts", Some(1.0), "is not in [0, 1)"),
        ] {
            let error = PreparedTarget::new(&parse(text), floor, &world, 1000).unwrap_err();
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn labels_name_the_target_and_a_floor_that_is_not_the_default() {
        assert_eq!(target_label(&parse("oracle"), None), "oracle");
        assert_eq!(
            target_label(&parse("fixed-options: 3, 2,1 ,0"), None),
            "fixed-options:3,2,1,0"
        );
        let trained = parse("factorized-ts");
        assert_eq!(target_label(&trained, None), "factorized-ts");
        assert_eq!(
            target_label(&trained, Some(DEFAULT_TARGET_FLOOR)),
            "factorized-ts"
        );
        assert_eq!(
            target_label(&trained, Some(0.1)),
            "factorized-ts (floor 0.1)"
        );
    }

    #[test]
    fn uniform_logging_logs_exact_propensities() {
        let world = small();
        let design = world.design(Interactions::segment_only(4), Objective::Value);
        let mut policy = build_policy(PolicyChoice::Uniform, &design, &Default::default(), 3);
        let rows = log_impressions(&world, &mut policy, 1000, 3);
        assert_eq!(rows.len(), 1000);
        assert!(rows.iter().all(|r| r.propensity == 1.0 / 256.0));
        assert!(rows.iter().any(|r| r.reward > 0.0));
    }

    /// The log of a seed is the run `simulate` makes at that seed: the same loop and
    /// streams, another observer.
    #[test]
    fn a_seeds_log_is_the_simulated_run_of_that_seed() {
        let world = small();
        let design = learner_design(&world);
        let settings = crate::default_settings();
        let mut logged = build_policy(PolicyChoice::FactorizedTs, &design, &settings, 11);
        let rows = log_impressions(&world, &mut logged, 30_000, 11);
        let mut simulated = build_policy(PolicyChoice::FactorizedTs, &design, &settings, 11);
        let truth = crate::sim::Truth::new(&world);
        let config = crate::sim::SimConfig::new(30_000, 11);
        let report = crate::sim::simulate(&world, &truth, &mut simulated, &config, |_| {});
        let donations: Vec<f64> = rows.iter().map(|r| r.reward).filter(|&r| r > 0.0).collect();
        assert_eq!(donations.len() as u64, report.conversions);
        let value = donations.iter().fold(0.0, |sum, d| sum + d);
        assert_eq!(value.to_bits(), report.value.to_bits());
        let mean_propensity = rows.iter().map(|r| r.propensity).sum::<f64>() / 30_000.0;
        assert_eq!(mean_propensity.to_bits(), report.mean_propensity.to_bits());
    }

    /// The estimators' acceptance check: over 40 seeds of 200k impressions of the even
    /// split on the small world, SNIPS and DR intervals cover the oracle's true value in
    /// at least 90% of seeds.
    #[test]
    fn snips_and_dr_cover_the_truth() {
        let world = small();
        let mut config =
            ValidationConfig::new(PolicyChoice::Uniform, EvaluationTarget::Oracle, 200_000, 40);
        // Coverage at the end; one look keeps the debug build fast.
        config.looks = 1;
        let report = validate(&world, &config).unwrap();
        for s in &report.estimators {
            eprintln!("{s:?}");
        }
        for s in &report.estimators[1..] {
            assert!(
                s.coverage >= 0.9,
                "{}: coverage {}",
                s.estimator,
                s.coverage
            );
        }
    }

    /// The trained target's truth and its direct value are the brute-force sums over
    /// every version: `sum_s P(s) sum_v pi(v | s) EV(s, v)` and `sum_v pi(v | s) q(s, v)`.
    #[test]
    fn trained_target_truth_is_the_sum_over_every_version() {
        let world = small();
        let design = learner_design(&world);
        let mut policy = build_policy(PolicyChoice::Uniform, &design, &Default::default(), 4);
        let rows = log_impressions(&world, &mut policy, 20_000, 4);
        for floor in [0.0, DEFAULT_TARGET_FLOOR, 0.3] {
            let trained =
                train_target(&world, &crate::default_settings(), floor, &rows, 4).unwrap();
            let target = Target::Trained(Box::new(trained));
            let total = world.space.total();
            let mut options = vec![0u32; world.space.components()];
            let mut brute = 0.0;
            for s in 0..world.segments() {
                let mut mass = 0.0;
                for v in 0..total {
                    world.space.decode_into(v, &mut options);
                    let pi = target.prob(total, s, v);
                    mass += pi;
                    brute += world.segment_probs[s] * pi * world.expected_value(s, &options);
                }
                assert!((mass - 1.0).abs() < 1e-12, "segment {s}: mass {mass}");
            }
            let truth = target.true_value(&world);
            assert!(
                (truth - brute).abs() < 1e-9,
                "floor {floor}: {truth} vs {brute}"
            );
            let model = AskModel::fit(&world, &rows, &target);
            for s in 0..world.segments() {
                let direct: f64 = (0..total)
                    .map(|v| target.prob(total, s, v) * model.q_hat(s, v))
                    .sum();
                assert!((model.target_value(s) - direct).abs() < 1e-9);
            }
            // The learner beats the even split on this log.
            assert!(truth > Target::Uniform.true_value(&world));
        }
    }

    /// The trained target learns the first half of the log and is scored on the second.
    #[test]
    fn trained_target_is_scored_on_rows_it_did_not_learn() {
        let world = small();
        let config = ValidationConfig::new(
            PolicyChoice::Uniform,
            EvaluationTarget::FactorizedTs,
            10_001,
            1,
        );
        let prepared = PreparedTarget::new(
            &config.target,
            config.target_floor,
            &world,
            config.impressions,
        )
        .unwrap();
        let run = run_seed(&world, &prepared, &config, 9).unwrap();
        assert_eq!(run.weights.rows, 5_001);
        assert_eq!(run.estimates[0].rows, 5_001);
        let mut policy = build_policy(
            PolicyChoice::Uniform,
            &learner_design(&world),
            &config.settings,
            9,
        );
        let rows = log_impressions(&world, &mut policy, 10_001, 9);
        let trained = train_target(
            &world,
            &config.settings,
            DEFAULT_TARGET_FLOOR,
            &rows[..5_000],
            9,
        )
        .unwrap();
        assert_eq!(trained.rows_learned(), 5_000);
        let truth = Target::Trained(Box::new(trained)).true_value(&world);
        assert_eq!(run.truth, truth);
    }

    #[test]
    fn looks_are_equally_spaced_and_end_at_the_last_row() {
        assert_eq!(look_rows(4000, 4), vec![1000, 2000, 3000, 4000]);
        assert_eq!(look_rows(10, 3), vec![4, 7, 10]);
        // Fewer rows than looks: each row once.
        assert_eq!(look_rows(3, 5), vec![1, 2, 3]);
        assert_eq!(look_rows(7, 1), vec![7]);
    }

    /// A flight whose headline option 3 launches halfway: two epochs; before the launch
    /// the oracle and the even split use only the versions that exist, and the truth at
    /// each opportunity is the drifted value of that epoch's target.
    #[test]
    fn flight_targets_are_given_per_epoch_with_the_drifted_truth() {
        let world = World::from_json(include_str!("../../../worlds/flight-small.json")).unwrap();
        let epochs = Epochs::of(&world);
        assert_eq!((epochs.count(), epochs.start(1)), (2, 0.5));
        assert_eq!((epochs.epoch(0.49), epochs.epoch(0.5)), (0, 1));
        let t = 1000;
        let PreparedTarget::Fixed {
            target: Target::PerSegment(versions),
            truth,
            values: Some(values),
        } = PreparedTarget::new(&parse("oracle"), None, &world, t).unwrap()
        else {
            panic!("the oracle per epoch")
        };
        let segments = world.segments();
        assert_eq!(versions.len(), 2 * segments);
        let mut options = vec![0u32; world.space.components()];
        for (c, &v) in versions.iter().enumerate() {
            world.space.decode_into(v, &mut options);
            assert!(
                world.available_at(&options, epochs.start(c / segments)),
                "{c}"
            );
        }
        for &i in &[0usize, 499, 500, 999] {
            let f = Flight::fraction(i as u64, t);
            let e = epochs.epoch(f);
            for s in 0..segments {
                world
                    .space
                    .decode_into(versions[s + segments * e], &mut options);
                let want = world.expected_value_at(s, &options, f);
                assert!((values[i][s] - want).abs() < 1e-12);
            }
        }
        let mean: f64 = values.iter().map(|v| marginal(&world, v)).sum::<f64>() / t as f64;
        assert!((truth - mean).abs() < 1e-12);
        let PreparedTarget::Fixed {
            target: Target::UniformPerContext(sizes),
            ..
        } = PreparedTarget::new(&parse("uniform"), None, &world, t).unwrap()
        else {
            panic!("the even split per epoch")
        };
        // 4 x 4 x 4 x 4 versions; before the launch headline has 3 options.
        assert_eq!(sizes, [vec![192; segments], vec![256; segments]].concat());
    }

    /// The coverage smoke test: adaptive logging, the oracle target, 12 seeds of 20,000
    /// impressions on the small world, 5 looks. AW-AIPW must cover at the end and the
    /// sequence at every look in most seeds, where IPS does not (so the check can fail:
    /// IPS's coverage here is far lower).
    #[test]
    fn adaptive_estimators_cover_under_adaptive_logging() {
        let world = small();
        let mut config = ValidationConfig::new(
            PolicyChoice::FactorizedTs,
            EvaluationTarget::Oracle,
            20_000,
            12,
        );
        config.looks = 5;
        let report = validate(&world, &config).unwrap();
        let by_name = |name: &str| {
            report
                .estimators
                .iter()
                .find(|e| e.estimator == name)
                .unwrap()
                .clone()
        };
        let (ips, aw) = (by_name("ips"), by_name("aw_aipw"));
        eprintln!("ips {ips:?}\naw {aw:?}\nsequence {:?}", report.sequence);
        assert!(aw.coverage >= 0.8, "aw_aipw: {}", aw.coverage);
        assert!(
            report.sequence.covered_at_all_looks >= 0.8,
            "sequence: {}",
            report.sequence.covered_at_all_looks
        );
        assert!(ips.covered_at_all_looks < aw.covered_at_all_looks);
        assert!((report.sequence.width_ratio_to_fixed - 1.55).abs() < 0.1);
    }

    /// Factorized TS trained on the log, under uniform logging (small world, 40 seeds
    /// of 200k impressions, the target trained on the first half of each): no
    /// detectable bias, and coverage close to nominal. Measured over 200 seeds
    /// (`docs/evaluation.md`), coverage is 0.88 for all three estimators at 200k
    /// impressions and 0.92-0.93 at 1M, the misses almost all on the low side (the
    /// right skew of donations), so this asserts 0.8, not 0.9; these 40 seeds measure
    /// 0.90 (IPS), 0.925 (SNIPS), 0.90 (DR).
    #[test]
    fn trained_target_is_estimated_without_bias() {
        let world = small();
        let mut config = ValidationConfig::new(
            PolicyChoice::Uniform,
            EvaluationTarget::FactorizedTs,
            200_000,
            40,
        );
        config.looks = 1;
        let report = validate(&world, &config).unwrap();
        for s in &report.estimators {
            eprintln!("{s:?}");
        }
        assert!(report.truth_sd > 0.0, "each seed trains its own target");
        for s in &report.estimators {
            assert!(
                s.bias.abs() < 3.0 * s.bias_std_error,
                "{}: bias {} (s.e. {})",
                s.estimator,
                s.bias,
                s.bias_std_error
            );
            assert!(
                s.coverage >= 0.8,
                "{}: coverage {}",
                s.estimator,
                s.coverage
            );
        }
        assert!(report.weights.seeds_with_caution <= 2);
    }
}
