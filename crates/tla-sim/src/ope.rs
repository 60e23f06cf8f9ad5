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

use crate::generate::segment_truths;
use crate::online::{self, Flow, Impression, Observer, RunConfig, Streams};
use crate::world::World;
use crate::{PolicyChoice, build_policy};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tla_core::design::{DEFAULT_EXACT_LIMIT, Design, Interactions, Objective};
use tla_core::ope::choice::{EvaluationInput, EvaluationTarget};
use tla_core::ope::{
    DirectModel, Estimate, Estimator, LoggedRow, WeightDiagnostics, evaluate_all,
    weight_diagnostics, weights,
};
use tla_core::policy::PricedPolicy;
use tla_core::policy::campaign::CampaignPolicySettings;
use tla_core::target::{DEFAULT_TARGET_FLOOR, TrainedTarget, TrainedTargetSettings};

/// A target policy to evaluate.
#[derive(Debug, Clone)]
pub enum Target {
    /// The even split over every version.
    Uniform,
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
            Target::PerSegment(versions) => {
                let mut options = vec![0u32; world.space.components()];
                versions
                    .iter()
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
        let segments = world.segments();
        let cells = segments * asks;
        let (mut imps, mut convs, mut amount) =
            (vec![0.0; cells], vec![0.0; cells], vec![0.0; cells]);
        for row in rows {
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
                Target::Uniform => even(&model, s),
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
}

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
    /// Share of seeds whose 95% interval contains the truth.
    pub coverage: f64,
    /// The same over the seeds [`caution`] does not flag (NaN when it flags them all).
    pub coverage_without_caution: f64,
    /// Mean width of the 95% interval.
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

/// What one seed measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// The target's true value per impression (differs per seed for a trained target).
    pub truth: f64,
    /// IPS, SNIPS and DR.
    pub estimates: [Estimate; 3],
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
    /// True value per impression of the target (mean over seeds for a trained target).
    pub truth: f64,
    /// Standard deviation of the truth across seeds (0 unless the target is trained).
    pub truth_sd: f64,
    /// One row per estimator: IPS, SNIPS, DR.
    pub estimators: Vec<EstimatorSummary>,
    /// The importance weights over all seeds.
    pub weights: WeightSummary,
    /// Per seed: truth, the three estimates, the weights.
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
        /// Its exact value per impression.
        truth: f64,
    },
    /// Factorized Thompson sampling trained on each seed's first half.
    Trained {
        /// The target's floor.
        floor: f64,
        /// The even split's exact value per segment over the allowed versions.
        even_values: Vec<f64>,
    },
}

impl PreparedTarget {
    /// Checks that `target` applies to a world and that `floor` is the floor of a
    /// trained target ([`EvaluationTarget::check_input`], [`EvaluationTarget::check_floor`]),
    /// resolves it against `world` and computes what does not depend on the seed.
    pub fn new(
        target: &EvaluationTarget,
        floor: Option<f64>,
        world: &World,
    ) -> Result<Self, String> {
        target
            .check_input(EvaluationInput::World)
            .and_then(|()| target.check_floor(floor))
            .map_err(|e| e.to_string())?;
        let fixed = match target {
            EvaluationTarget::FactorizedTs => {
                return Ok(PreparedTarget::Trained {
                    floor: floor.unwrap_or(DEFAULT_TARGET_FLOOR),
                    even_values: segment_truths(world).iter().map(|t| t.even_value).collect(),
                });
            }
            EvaluationTarget::Oracle => {
                Target::PerSegment(world.oracle().into_iter().map(|(v, _)| v).collect())
            }
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
                Target::PerSegment(vec![version; world.segments()])
            }
            EvaluationTarget::Version(_)
            | EvaluationTarget::Fixed(_)
            | EvaluationTarget::BestLogged
            | EvaluationTarget::Column(_)
            | EvaluationTarget::File(_) => {
                unreachable!("check_input refuses --target {target} on a world")
            }
        };
        let truth = fixed.true_value(world);
        Ok(PreparedTarget::Fixed {
            target: fixed,
            truth,
        })
    }
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

/// Logs and evaluates once for one seed. A fixed target is evaluated on every logged
/// row; the trained target is trained on the first half (time order) and evaluated on
/// the second.
pub fn run_seed(
    world: &World,
    target: &PreparedTarget,
    config: &ValidationConfig,
    seed: u64,
) -> Result<SeedRun, String> {
    let design = learner_design(world);
    let mut policy = build_policy(config.logging, &design, &config.settings, seed);
    let rows = log_impressions(world, &mut policy, config.impressions, seed);
    let (target, truth, evaluated) = match target {
        PreparedTarget::Fixed { target, truth } => (target.clone(), *truth, &rows[..]),
        PreparedTarget::Trained { floor, even_values } => {
            let (train, evaluate) = rows.split_at(rows.len() / 2);
            let trained = train_target(world, &config.settings, *floor, train, seed)?;
            let target = Target::Trained(Box::new(trained));
            let truth = target.true_value_with(world, even_values);
            (target, truth, evaluate)
        }
    };
    let total = world.space.total();
    let prob = |s, a| target.prob(total, s, a);
    let estimates = evaluate_all(evaluated, prob, config.folds, |train| {
        AskModel::fit(world, train, &target)
    })
    .map_err(|e| e.to_string())?;
    let w = weights(evaluated, prob).map_err(|e| e.to_string())?;
    Ok(SeedRun {
        seed,
        truth,
        estimates,
        weights: weight_diagnostics(evaluated, &w),
    })
}

/// The caution rules, one place for every input of `tla evaluate`: see
/// [`tla_core::ope::diagnostics::caution`].
pub use tla_core::ope::diagnostics::{
    CAUTION_MAX_WEIGHT_SHARE, CAUTION_MEAN_WEIGHT_Z, CAUTION_MIN_REWARDED, caution,
};

/// Runs every seed (in parallel over the available cores) and summarizes.
pub fn validate(world: &World, config: &ValidationConfig) -> Result<ValidationReport, String> {
    let target = PreparedTarget::new(&config.target, config.target_floor, world)?;
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
    let n = runs.len().max(1) as f64;
    let truth = runs.iter().map(|r| r.truth).sum::<f64>() / n;
    let truth_sd = if runs.len() > 1 {
        (runs.iter().map(|r| (r.truth - truth).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let estimators = (0..3)
        .map(|k| {
            let mut summary = summarize(runs.iter().map(|r| (r.estimates[k], r.truth)), truth);
            let unflagged: Vec<&SeedRun> = runs
                .iter()
                .filter(|r| caution(&r.weights).is_none())
                .collect();
            summary.coverage_without_caution = unflagged
                .iter()
                .filter(|r| r.estimates[k].covers(r.truth))
                .count() as f64
                / unflagged.len() as f64;
            summary
        })
        .collect();
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
        evaluated_rows: match target {
            PreparedTarget::Fixed { .. } => config.impressions,
            PreparedTarget::Trained { .. } => config.impressions - config.impressions / 2,
        },
        seeds: config.seeds,
        first_seed: config.first_seed,
        folds: config.folds,
        truth,
        truth_sd,
        estimators,
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
        let fixed = PreparedTarget::new(&parse("fixed-options:0,1,2,3"), None, &world).unwrap();
        assert!(matches!(
            fixed,
            PreparedTarget::Fixed { target: Target::PerSegment(v), .. } if v == vec![0b00_01_10_11; 4]
        ));
        let error = PreparedTarget::new(&parse("fixed-options:0,9,0,0"), None, &world).unwrap_err();
        assert!(
            error.starts_with("fixed options [0, 9, 0, 0] do not name a version of this world (option counts [4, 4, 4, 4])"),
            "{error}"
        );
        let oracle = PreparedTarget::new(&parse("oracle"), None, &world).unwrap();
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
            let error = PreparedTarget::new(&parse(text), floor, &world).unwrap_err();
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
        let config =
            ValidationConfig::new(PolicyChoice::Uniform, EvaluationTarget::Oracle, 200_000, 40);
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
        let prepared = PreparedTarget::new(&config.target, config.target_floor, &world).unwrap();
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
        let config = ValidationConfig::new(
            PolicyChoice::Uniform,
            EvaluationTarget::FactorizedTs,
            200_000,
            40,
        );
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
