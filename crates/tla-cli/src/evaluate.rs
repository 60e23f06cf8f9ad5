//! `tla evaluate`: off-policy evaluation validated on simulator logs (`--world`, run by
//! `tla_sim::ope::validate`), on an imported logged-bandit file (`--log`: read by
//! `import`, evaluated by `tla_core::ope::labelled`), or on a stored campaign's own
//! decisions and conversions (`--data DIR --campaign ID`: read through `tla-store`,
//! evaluated by `tla_core::ope::campaign`). `--target` is parsed once, by
//! `tla_core::ope::choice`, for every input. With `--log` and `--data`, `--alpha` sets
//! the level of every interval and `--interval bootstrap` replaces the normal intervals
//! by percentile bootstrap intervals (`tla_core::ope::bootstrap`); the weights'
//! diagnostics and warnings (`tla_core::ope::diagnostics`) are printed on every path.
//! Tables print numbers with `crate::number::significant`. This module reads and prints.

pub(crate) mod import;

use anyhow::{Context, bail};
use rand::SeedableRng;
use tla_core::ope::campaign::{check_campaign_rows, evaluate_campaign};
use tla_core::ope::choice::{EvaluationInput, EvaluationTarget};
use tla_core::ope::labelled::{LogSettings, evaluate_labelled_log};
use tla_core::ope::targets::{
    DEFAULT_ALPHA, DEFAULT_RESAMPLES, Evaluation, IntervalMethod, IntervalSettings,
};
use tla_sim::PolicyChoice;
use tla_sim::ope::{ValidationConfig, ValidationReport, caution, validate};
use tla_sim::world::World;

use crate::number::significant;
pub use import::LogFormat;

/// Logging policies `tla evaluate` can simulate.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoggingArg {
    /// The even split: every version equally likely.
    Uniform,
    /// Factorized Thompson sampling with its exploration floor (--epsilon).
    FactorizedTs,
}

/// How the intervals of --log and --data are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IntervalArg {
    /// value ± z · standard error.
    Normal,
    /// Percentile bootstrap of the rows (--bootstrap resamples, seeded by --seed).
    Bootstrap,
}

/// Arguments of `tla evaluate`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Validate the off-policy estimators (IPS, self-normalized IPS, doubly robust with a \
cross-fitted direct model, and aw_aipw, adaptively weighted AIPW with an online direct model, which \
keeps its coverage under adaptive logging) and the doubly robust confidence sequence on simulator \
logs where the truth is known: for each seed, a logging policy runs against the world and every \
decision's segment, version, exact propensity and donation is logged; the target policy's value is \
estimated from the log and compared with its exact value computed from the world, at the end and \
at each of --looks equally spaced looks. Prints bias, 95% interval coverage at the end and at every \
look, mean interval width and effective sample size per estimator, the sequence's coverage and \
width, a summary of the importance weights, and a caution when a seed's weights say its normal \
interval may be too narrow. A v2 world (a flight) is accepted: the truth is the average over the \
logged opportunities of the drifted value at their time, targets follow launches, and --budget \
logs skipped opportunities as rows of reward 0 (the estimand is the value per opportunity). --target factorized-ts trains factorized \
Thompson sampling on the first half of each seed's log (each row an impression, and a conversion \
when it carries a donation), draws its decision tables, and evaluates that policy on the second \
half against its own exact value.\n\nWith --log FILE instead of --world: import a logged-bandit \
file (CSV or TSV with a header row, JSON lines, each possibly gzip-compressed, or Parquet) \
through a column mapping, e.g. --map timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p, \
and print the IPS, SNIPS, doubly \
robust and aw_aipw estimates of the target's value per row (intervals at \
level 1 - --alpha, normal or --interval bootstrap; effective sample size), the importance \
weights' diagnostics and any warning. Propensities that are missing, zero, above 1 or not numbers \
are refused with the 1-based data-row number. Targets with --log: uniform (over the distinct \
actions of the log, or --actions N), fixed:ACTION, best-logged (the action with the highest SNIPS \
value on the first half, evaluated on the second half), factorized-ts (the factorized model, one \
component of the log's actions and its contexts as segments, trained on the first --train-share \
of the rows and evaluated on the rest), column:NAME (a column holding the target's probability of \
each row's logged action; IPS and SNIPS), file:PATH (a file of the target's probabilities per \
context and action: the context columns, action, probability; any stochastic, contextual or \
per-position policy). See docs/import-export.md.\n\nWith --data DIR --campaign ID: evaluate on a \
stored campaign's own log: its decisions, each with the exact propensity it was served with, joined \
with its conversion events (reward = sum of the conversion values of each decision). The data \
directory is only read: the campaign's spec, decisions and conversions (no engine is rebuilt); it \
is opened read-only, so a read-only copy works, and while a server runs on it the log read is what it \
has committed so far. Targets with --data: uniform \
(the even split over the campaign's allowed versions), version:INDEX (one version everywhere), \
fixed-options:O1,O2,... (one option per component, by index or name), best-logged (the version with \
the highest SNIPS value on the first half of the decisions, evaluated on the second half). See \
docs/evaluation.md."
)]
pub struct EvaluateArgs {
    /// The world file (format tla-creative-world/v1, or v2 with a flight: drift,
    /// launches, costs; see --budget).
    #[arg(long, required_unless_present_any = ["log", "data"], conflicts_with_all = ["log", "data"])]
    pub world: Option<std::path::PathBuf>,
    /// A logged-bandit file to import and evaluate on (instead of --world).
    #[arg(long, conflicts_with = "data")]
    pub log: Option<std::path::PathBuf>,
    /// A data directory (holding tla.db) whose campaign's own log to evaluate on, with
    /// --campaign. Opened read-only, as `tla report --data` opens it.
    #[arg(long, requires = "campaign")]
    pub data: Option<std::path::PathBuf>,
    /// The campaign of --data.
    #[arg(long, requires = "data")]
    pub campaign: Option<String>,
    /// Most decisions of the campaign read with --data (the first ones, in log order).
    #[arg(long, requires = "data", default_value_t = tla_server::report::LOG_ROWS_CAP)]
    pub max_decisions: usize,
    /// Format of --log (default from the name, after any .gz: jsonl for .jsonl /
    /// .ndjson, tsv for .tsv, parquet for .parquet, csv otherwise). CSV, TSV and JSON
    /// lines may be gzip-compressed (recognized by their first bytes).
    #[arg(long, value_enum, requires = "log")]
    pub format: Option<LogFormat>,
    /// Column mapping of --log: KEY=COLUMN,... with keys timestamp, action, reward,
    /// propensity (action, reward and propensity required), segment, slot, position.
    #[arg(long, requires = "log")]
    pub map: Option<String>,
    /// Column holding the slot or position (part of the context).
    #[arg(long, requires = "log")]
    pub slot: Option<String>,
    /// Further context columns, comma-separated.
    #[arg(long, requires = "log", value_delimiter = ',')]
    pub context: Vec<String>,
    /// Size of the uniform target's action space (default: distinct actions of --log).
    #[arg(long, requires = "log")]
    pub actions: Option<usize>,
    /// The logging policy.
    #[arg(long, value_enum, default_value = "uniform")]
    pub logging: LoggingArg,
    /// The target policy, one grammar for every input (`tla_core::ope::choice`):
    /// `oracle` (--world; the best version per segment, the default there), `uniform`
    /// (every input; the default with --log and --data), `factorized-ts` (--world,
    /// --data: factorized Thompson sampling trained on the first half of the log,
    /// evaluated on the second half), `fixed-options:O1,O2,...` (one option per
    /// component: indices with --world, indices or names with --data), `version:INDEX`
    /// (--data), `fixed:ACTION` (--log), `best-logged` (--log, --data),
    /// `column:NAME` (--log: the target's probability of each row's logged action),
    /// `file:PATH` (--log: the target's probabilities per context and action). A value
    /// that does not apply to the input is refused with this list.
    #[arg(long)]
    pub target: Option<String>,
    /// Floor of the factorized-ts target: the share of its probability spread evenly
    /// over the allowed versions, in [0, 1) (default 0.02, the engine's exploration
    /// floor: the target is then the policy a campaign would serve after learning the
    /// log; 0 gives the pure Thompson table).
    #[arg(long)]
    pub target_floor: Option<f64>,
    /// Also print one line per seed: truth, estimates, and the importance weights (rows
    /// with a positive weight, effective number of donations, mean weight and its
    /// standard error, largest weight, ESS, share of the estimate from the top 1% of
    /// weights).
    #[arg(long, conflicts_with = "log")]
    pub per_seed: bool,
    /// Impressions logged per seed.
    #[arg(long, default_value_t = 200_000)]
    pub impressions: u64,
    /// Number of seeds (1, 2, ... from --first-seed).
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Cross-fitting folds of the doubly robust estimator.
    #[arg(long, default_value_t = tla_core::ope::DEFAULT_FOLDS)]
    pub folds: usize,
    /// Exploration floor of the factorized-ts logging policy.
    #[arg(long, default_value_t = tla_core::policy::campaign::DEFAULT_EXPLORATION)]
    pub epsilon: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Intervals at level 1 - alpha, alpha in (0, 0.5] (every input; with --world the
    /// fixed intervals and the confidence sequences are checked at this level).
    #[arg(long, default_value_t = DEFAULT_ALPHA)]
    pub alpha: f64,
    /// How the intervals of --log and --data are computed: normal (value ± z · standard
    /// error) or bootstrap (percentile intervals of --bootstrap resamples of the rows,
    /// which treats rows as exchangeable).
    #[arg(long, value_enum, default_value = "normal")]
    pub interval: IntervalArg,
    /// Resamples of --interval bootstrap (at least 2).
    #[arg(long, default_value_t = DEFAULT_RESAMPLES)]
    pub bootstrap: usize,
    /// Seed of the factorized-ts target's Thompson draws (--log, --data) and of the
    /// bootstrap's resamples (drawn from the stream seed + 1): the same seed gives the
    /// same output.
    #[arg(long, default_value_t = TRAINED_TARGET_SEED)]
    pub seed: u64,
    /// Share of the rows of --log, in time order, the factorized-ts target is trained
    /// on, in (0, 1); it is evaluated on the rest.
    #[arg(long, requires = "log")]
    pub train_share: Option<f64>,
    /// Looks of --world: at each of this many equally spaced numbers of evaluated rows,
    /// every estimator and the confidence sequence are read on the rows so far and
    /// checked against the truth (coverage at every look).
    #[arg(long, conflicts_with_all = ["log", "data"], default_value_t = tla_sim::ope::DEFAULT_LOOKS)]
    pub looks: usize,
    /// A flight budget for --world (a v2 world only), as in `tla simulate`: `auto` (the
    /// world's budget_share of what buying every opportunity would cost) or an amount.
    /// Each impression is then an opportunity the logging policy may skip (the pacing
    /// rule `value`); a skip is a logged row of reward 0 no target chooses, so the
    /// estimand is the target's value per opportunity.
    #[arg(long, conflicts_with_all = ["log", "data"])]
    pub budget: Option<String>,
}

/// Default `--seed`: the factorized-ts target's Thompson draws with --log and --data,
/// and the bootstrap's resamples; the same log gives the same output.
const TRAINED_TARGET_SEED: u64 = 0x7A26_E7ED;

/// The intervals `--alpha`, `--interval` and `--bootstrap` ask for, checked.
fn interval_settings(args: &EvaluateArgs) -> anyhow::Result<IntervalSettings> {
    let settings = IntervalSettings {
        alpha: args.alpha,
        method: match args.interval {
            IntervalArg::Normal => IntervalMethod::Normal,
            IntervalArg::Bootstrap => IntervalMethod::Bootstrap {
                resamples: args.bootstrap,
            },
        },
    };
    settings.check()?;
    Ok(settings)
}

/// Applies the intervals to an evaluation; the bootstrap draws from the stream `--seed`
/// + 1 (the trained target draws from `--seed`).
fn set_intervals(evaluation: &mut Evaluation, args: &EvaluateArgs) -> anyhow::Result<()> {
    let settings = interval_settings(args)?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(args.seed.wrapping_add(1));
    evaluation.set_intervals(settings, &mut rng)?;
    Ok(())
}

/// The `--target` of `input` (its default when none is given), checked against the input
/// and `--target-floor`: one grammar for every input ([`tla_core::ope::choice`]).
fn target_for(args: &EvaluateArgs, input: EvaluationInput) -> anyhow::Result<EvaluationTarget> {
    let target = match &args.target {
        Some(text) => text.parse::<EvaluationTarget>()?,
        None => input.default_target(),
    };
    target.check_input(input)?;
    target.check_floor(args.target_floor)?;
    Ok(target)
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    if let Some(log) = &args.log {
        return run_log(log, &args);
    }
    if let (Some(data), Some(id)) = (&args.data, &args.campaign) {
        return run_campaign(data, id, &args);
    }
    if args.interval == IntervalArg::Bootstrap {
        bail!(
            "--interval bootstrap is for --log and --data; the validation on a world reports normal intervals"
        );
    }
    let Some(world_path) = &args.world else {
        bail!(
            "give --world FILE (simulator validation), --log FILE (an imported log) or --data DIR --campaign ID (a stored campaign's log)"
        );
    };
    if args.impressions < 2 {
        bail!("--impressions must be at least 2");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if args.looks == 0 {
        bail!("--looks must be at least 1 (the last look is the end of the log)");
    }
    if !(0.0..1.0).contains(&args.epsilon)
        || (args.epsilon == 0.0 && matches!(args.logging, LoggingArg::FactorizedTs))
    {
        bail!(
            "--epsilon must lie in (0, 1) so every version keeps a positive propensity; got {}",
            args.epsilon
        );
    }
    let target = target_for(&args, EvaluationInput::World)?;
    let text = std::fs::read_to_string(world_path)
        .with_context(|| format!("cannot read world file {}", world_path.display()))?;
    let world = World::from_json(&text).with_context(|| format!("in {}", world_path.display()))?;
    let pacing = match &args.budget {
        Some(text) => Some(tla_sim::online::PacingRun {
            mode: tla_core::pacing::PacingMode::Value,
            budget: crate::simulate::budget_amount(text, &world, args.impressions)?,
            daily_cap: None,
            min_roas: None,
        }),
        None => None,
    };
    let mut config = ValidationConfig::new(
        match args.logging {
            LoggingArg::Uniform => PolicyChoice::Uniform,
            LoggingArg::FactorizedTs => PolicyChoice::FactorizedTs,
        },
        target,
        args.impressions,
        args.seeds,
    );
    config.target_floor = args.target_floor;
    config.first_seed = args.first_seed;
    config.folds = args.folds;
    config.settings.exploration = args.epsilon;
    config.looks = args.looks;
    config.alpha = interval_settings(&args)?.alpha;
    config.pacing = pacing;
    let start = std::time::Instant::now();
    let report = validate(&world, &config).map_err(anyhow::Error::msg)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["seconds"] = seconds.into();
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print_table(&report, seconds, args.per_seed);
    }
    Ok(())
}

fn print_table(report: &ValidationReport, seconds: f64, per_seed: bool) {
    println!(
        "world {}, logging {}, target {}: {} seeds x {} impressions, {} folds ({seconds:.1} s)",
        report.world, report.logging, report.target, report.seeds, report.impressions, report.folds
    );
    if report.evaluated_rows != report.impressions {
        println!(
            "the target is trained on the first {} rows of each seed and evaluated on the last {}",
            report.impressions - report.evaluated_rows,
            report.evaluated_rows
        );
        println!(
            "truth (exact value per impression of each seed's target): mean {}, sd {} across seeds",
            significant(report.truth),
            significant(report.truth_sd)
        );
    } else {
        println!(
            "truth (exact value per impression): {}",
            significant(report.truth)
        );
    }
    let level = format!("{:.0}%", 100.0 * (1.0 - report.alpha));
    println!(
        "{:<9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>9} {:>10} {:>11} {:>10}",
        "estimator",
        "mean",
        "bias",
        "rel.bias",
        "bias s.e.",
        "sd(est)",
        "mean s.e.",
        "coverage",
        "all looks",
        "mean width",
        "mean ESS"
    );
    for s in &report.estimators {
        println!(
            "{:<9} {:>10} {:>10} {:>+8.1}% {:>10} {:>10} {:>10} {:>9.3} {:>10.3} {:>11} {:>10.1}",
            s.estimator,
            significant(s.mean_estimate),
            significant(s.bias),
            100.0 * s.relative_bias,
            significant(s.bias_std_error),
            significant(s.sd_estimate),
            significant(s.mean_std_error),
            s.coverage,
            s.covered_at_all_looks,
            significant(s.mean_width),
            s.mean_ess
        );
    }
    for (name, q) in [
        ("sequence", &report.sequence),
        ("aw_seq", &report.aw_sequence),
    ] {
        println!(
            "{:<9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>9.3} {:>10.3} {:>11}",
            name,
            "",
            "",
            "",
            "",
            "",
            "",
            q.coverage,
            q.covered_at_all_looks,
            significant(q.mean_width)
        );
    }
    let q = &report.sequence;
    println!(
        "coverage = {level} interval at the end; all looks = share of seeds covered at each of {} looks \
         (rows {}); sequence = doubly robust confidence sequence of the unweighted terms, aw_seq = \
         the adaptively weighted one, both tuned for {} rows and valid at every look; their widths \
         at the end are {:.2}x and {:.2}x the aw_aipw interval's ({:.2}x the fixed interval of the \
         sequence's own terms)",
        report.looks.len(),
        looks_text(&report.looks),
        q.planned_rows,
        q.width_ratio_to_aw_aipw,
        report.aw_sequence.width_ratio_to_aw_aipw,
        q.width_ratio_to_fixed
    );
    let w = &report.weights;
    println!(
        "weights: {:.1} of {:.0} rows with weight > 0 ({:.1} with a donation, {:.1} effective), mean weight {:.4} \
         (min over seeds {:.4}; 1 expected), max weight {:.1}, min ESS {:.1}, top 1% of weights \
         give {:.1}% of the estimate",
        w.mean_rows_with_weight,
        w.mean_rows,
        w.mean_rewarded_with_weight,
        w.mean_effective_rewarded,
        w.mean_weight,
        w.min_mean_weight,
        w.max_weight,
        w.min_ess,
        100.0 * w.mean_top_weight_share
    );
    if per_seed {
        println!(
            "{:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>10} {:>10} {:>7}",
            "seed",
            "truth",
            "ips",
            "snips",
            "dr",
            "aw_aipw",
            "rows w>0",
            "eff.don",
            "mean w",
            "s.e. w",
            "max w",
            "ESS",
            "top 1%"
        );
        for run in &report.runs {
            let w = &run.weights;
            println!(
                "{:>5} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8} {:>7.1} {:>7.4} {:>9.4} {:>10.1} {:>10.1} {:>6.1}%",
                run.seed,
                run.truth,
                run.estimates[0].value,
                run.estimates[1].value,
                run.estimates[2].value,
                run.estimates[3].value,
                w.rows_with_weight,
                w.effective_rewarded,
                w.mean_weight,
                w.mean_weight_std_error,
                w.max_weight,
                w.ess,
                100.0 * w.top_weight_share
            );
        }
    }
    if w.seeds_with_caution > 0 {
        println!(
            "caution: in {} of {} seeds the 95% intervals may be too narrow (heavy-tailed weights); first flagged:",
            w.seeds_with_caution, report.seeds
        );
        if let Some((run, why)) = report
            .runs
            .iter()
            .find_map(|run| caution(&run.weights).map(|why| (run, why)))
        {
            println!("  seed {}: {why}", run.seed);
        }
        if w.seeds_with_caution < report.seeds {
            println!(
                "  coverage on the {} seeds without caution: {}",
                report.seeds - w.seeds_with_caution,
                report
                    .estimators
                    .iter()
                    .map(|s| format!("{} {:.2}", s.estimator, s.coverage_without_caution))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

/// The looks' row counts, shortened when there are many: `a, b, c, ..., z`.
fn looks_text(looks: &[usize]) -> String {
    let show: Vec<String> = looks.iter().map(|n| n.to_string()).collect();
    if show.len() <= 4 {
        show.join(", ")
    } else {
        format!(
            "{}, {}, {}, ..., {}",
            show[0],
            show[1],
            show[2],
            show[show.len() - 1]
        )
    }
}

fn run_log(path: &std::path::Path, args: &EvaluateArgs) -> anyhow::Result<()> {
    let Some(map) = &args.map else {
        bail!(
            "--log needs --map: say which columns hold the action, reward and propensity, e.g. --map action=arm,reward=r,propensity=p"
        );
    };
    let mut mapping = import::Mapping::parse(map, args.slot.as_deref(), &args.context)?;
    let target = target_for(args, EvaluationInput::Log)?;
    if args.train_share.is_some() && target != EvaluationTarget::FactorizedTs {
        bail!(
            "--train-share is the training share of --target factorized-ts; --target {target} trains nothing"
        );
    }
    interval_settings(args)?;
    if let EvaluationTarget::Column(name) = &target {
        mapping.target = Some(name.clone());
    }
    let format = args.format.unwrap_or_else(|| LogFormat::of_path(path));
    let start = std::time::Instant::now();
    let log = import::read_log(path, format, &mapping)
        .with_context(|| format!("refusing {}", path.display()))?;
    let table = match &target {
        EvaluationTarget::File(file) => {
            Some(import::read_target_file(std::path::Path::new(file), &log)?)
        }
        _ => None,
    };
    let read_seconds = start.elapsed().as_secs_f64();
    let settings = LogSettings {
        actions: args.actions,
        folds: args.folds,
        train_share: args
            .train_share
            .unwrap_or(tla_core::ope::labelled::DEFAULT_TRAIN_SHARE),
        target_floor: args.target_floor,
        table: table.as_ref(),
    };
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(args.seed);
    let mut evaluation = evaluate_labelled_log(&log, &target, &settings, &mut rng)?;
    set_intervals(&mut evaluation, args)?;
    let seconds = start.elapsed().as_secs_f64();
    let row_name = |i: usize| log.row_name(i);
    if args.json {
        let value = serde_json::json!({
            "log": path.display().to_string(),
            "format": format!("{format:?}").to_lowercase(),
            "rows": log.rows.len(),
            "distinct_actions": log.actions.len(),
            "action_space": evaluation.action_space,
            "contexts": log.contexts(),
            "context_columns": log.context_columns,
            "target": evaluation.target,
            "target_spec": target.to_string(),
            "training_rows": evaluation.training_rows,
            "evaluated_rows": evaluation.evaluated_rows,
            "logged_mean_reward": evaluation.logged_mean,
            "alpha": evaluation.interval.alpha,
            "interval": interval_json(&evaluation, args),
            "estimates": estimates_json(&evaluation),
            "weights": weights_json(&evaluation, &row_name),
            "warnings": evaluation.warnings(row_name),
            "notes": evaluation.notes,
            "read_seconds": read_seconds,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!(
        "log {} ({}): {} rows, {} distinct actions, {} contexts ({}), read in {read_seconds:.2} s, evaluated in {:.2} s",
        path.display(),
        format!("{format:?}").to_lowercase(),
        log.rows.len(),
        log.actions.len(),
        log.contexts(),
        if mapping.context.is_empty() {
            "no context columns mapped".to_string()
        } else {
            format!("columns {}", mapping.context.join(", "))
        },
        seconds - read_seconds
    );
    print_estimates(&evaluation, &row_name);
    Ok(())
}

/// The `interval` object of `--json`: method, level, resamples and seed.
fn interval_json(evaluation: &Evaluation, args: &EvaluateArgs) -> serde_json::Value {
    match evaluation.interval.method {
        IntervalMethod::Normal => serde_json::json!({
            "method": "normal",
            "alpha": evaluation.interval.alpha,
        }),
        IntervalMethod::Bootstrap { resamples } => serde_json::json!({
            "method": "bootstrap",
            "alpha": evaluation.interval.alpha,
            "resamples": resamples,
            "seed": args.seed,
        }),
    }
}

/// The estimates as JSON objects (the `estimates` array of `--json`).
fn estimates_json(evaluation: &Evaluation) -> Vec<serde_json::Value> {
    evaluation
        .estimates
        .iter()
        .map(|e| {
            serde_json::json!({
                "estimator": e.estimator.name(),
                "value": e.value,
                "std_error": e.std_error,
                "lower": e.lower,
                "upper": e.upper,
                "ess": e.ess,
                "rows": e.rows,
            })
        })
        .collect()
}

/// The `weights` object of `--json`: the diagnostics of the evaluated rows' importance
/// weights (`tla_core::ope::diagnostics::WeightReport`).
fn weights_json(evaluation: &Evaluation, row_name: &dyn Fn(usize) -> String) -> serde_json::Value {
    let r = &evaluation.weights;
    let d = &r.diagnostics;
    serde_json::json!({
        "rows": d.rows,
        "rows_with_weight": d.rows_with_weight,
        "rewarded_with_weight": d.rewarded_with_weight,
        "effective_rewarded": d.effective_rewarded,
        "mean_weight": d.mean_weight,
        "mean_weight_std_error": d.mean_weight_std_error,
        "max_weight": d.max_weight,
        "max_weight_share": d.max_weight_share,
        "ess": d.ess,
        "top_weight_share_of_estimate": d.top_weight_share,
        "top_rows_weight_share": r.top_rows_weight_share,
        "heaviest_row": r.heaviest_row.map(|h| row_name(evaluation.first_evaluated + h)),
        "heaviest_propensity": r.heaviest_row.map(|_| r.heaviest_propensity),
        "min_propensity": r.heaviest_row.map(|_| r.min_propensity),
    })
}

/// The target, the rows, the table of estimates, the weights, notes and warnings.
fn print_estimates(evaluation: &Evaluation, row_name: &dyn Fn(usize) -> String) {
    println!("target: {}", evaluation.target);
    if evaluation.training_rows > 0 {
        println!(
            "rows: {} to train or pick the target, {} evaluated",
            evaluation.training_rows, evaluation.evaluated_rows
        );
    }
    println!(
        "logged mean reward on the evaluated rows: {}",
        significant(evaluation.logged_mean)
    );
    let level = evaluation.interval.describe();
    println!("intervals: {level}");
    let percent = level.split(' ').next().unwrap_or("");
    println!(
        "{:<9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "estimator",
        "value",
        "std.err",
        format!("{percent} low"),
        format!("{percent} high"),
        "ESS",
        "rows"
    );
    for e in &evaluation.estimates {
        println!(
            "{:<9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9}",
            e.estimator.name(),
            significant(e.value),
            significant(e.std_error),
            significant(e.lower),
            significant(e.upper),
            significant(e.ess),
            e.rows
        );
    }
    let r = &evaluation.weights;
    let d = &r.diagnostics;
    let heaviest = match r.heaviest_row {
        Some(h) => format!(
            " ({}, propensity {}, {}% of the total weight)",
            row_name(evaluation.first_evaluated + h),
            significant(r.heaviest_propensity),
            significant(100.0 * d.max_weight_share)
        ),
        None => String::new(),
    };
    println!(
        "weights: {} of {} rows with weight > 0 ({} with a reward, {} effective), mean weight {} \
         (s.e. {}; 1 expected), max weight {}{heaviest}, ESS {}, the top 1% of rows hold {}% of \
         the weight and give {}% of the estimate",
        d.rows_with_weight,
        d.rows,
        d.rewarded_with_weight,
        significant(d.effective_rewarded),
        significant(d.mean_weight),
        significant(d.mean_weight_std_error),
        significant(d.max_weight),
        significant(d.ess),
        significant(100.0 * r.top_rows_weight_share),
        significant(100.0 * d.top_weight_share)
    );
    for note in &evaluation.notes {
        println!("note: {note}");
    }
    for warning in evaluation.warnings(row_name) {
        println!("warning: {warning}");
    }
}

fn run_campaign(data: &std::path::Path, id: &str, args: &EvaluateArgs) -> anyhow::Result<()> {
    use tla_store::{DATABASE_FILE_NAME, Store};

    if args.actions.is_some() {
        bail!(
            "--actions is for --log; with --data the uniform target spans the campaign's allowed versions"
        );
    }
    let target = target_for(args, EvaluationInput::Campaign)?;
    interval_settings(args)?;
    if args.per_seed {
        bail!("--per-seed is for --world (simulator seeds); a campaign's log is one run");
    }
    if !data.join(DATABASE_FILE_NAME).is_file() {
        bail!(
            "{} holds no {DATABASE_FILE_NAME}: not a TLA data directory (give the directory `tla serve --data` used)",
            data.display()
        );
    }
    let start = std::time::Instant::now();
    // Reads only: the same read-only open as `tla report --data` and `tla export`.
    let store = Store::open_read_only(data)
        .with_context(|| format!("cannot open the data directory {}", data.display()))?;
    let Some(row) = store.campaign(id)? else {
        let ids: Vec<String> = store.campaigns()?.into_iter().map(|c| c.id).collect();
        bail!(
            "no campaign {id:?} in {} (campaigns: {})",
            data.display(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        );
    };
    // Only the spec and the log are needed: no engine is rebuilt (no replay), and
    // nothing is written (no server secret is created).
    let campaign = tla_core::spec::CampaignSpec::from_json_str(&row.spec_json)
        .and_then(|spec| spec.validate())
        .with_context(|| format!("the stored spec of campaign {id} does not validate"))?;
    let (rows, capped) = tla_server::report::logged_rows(&store, id, args.max_decisions)
        .with_context(|| format!("cannot read the log of campaign {id}"))?;
    if rows.is_empty() {
        bail!(
            "campaign {id} has no logged decisions in {}: nothing to evaluate",
            data.display()
        );
    }
    let distinct = check_campaign_rows(&campaign, &rows)?;
    let read_seconds = start.elapsed().as_secs_f64();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(args.seed);
    let mut evaluation = evaluate_campaign(
        &campaign,
        &rows,
        &target,
        args.folds,
        args.target_floor,
        &mut rng,
    )?;
    set_intervals(&mut evaluation, args)?;
    let seconds = start.elapsed().as_secs_f64();
    let row_name = |i: usize| format!("decision {}", i + 1);
    let segments = campaign.design().segments();
    if args.json {
        let value = serde_json::json!({
            "data": data.display().to_string(),
            "campaign": id,
            "rows": rows.len(),
            "capped": capped,
            "max_decisions": args.max_decisions,
            "distinct_actions": distinct,
            "action_space": evaluation.action_space,
            "contexts": segments,
            "target": evaluation.target,
            "target_spec": target.to_string(),
            "training_rows": evaluation.training_rows,
            "evaluated_rows": evaluation.evaluated_rows,
            "logged_mean_reward": evaluation.logged_mean,
            "alpha": evaluation.interval.alpha,
            "interval": interval_json(&evaluation, args),
            "estimates": estimates_json(&evaluation),
            "weights": weights_json(&evaluation, &row_name),
            "warnings": evaluation.warnings(row_name),
            "notes": evaluation.notes,
            "read_seconds": read_seconds,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!(
        "campaign {id} in {}: {} decisions{}, {distinct} distinct versions served of {} allowed, {segments} segments, read in {read_seconds:.2} s, evaluated in {:.2} s",
        data.display(),
        rows.len(),
        if capped {
            format!(" (the first {}; --max-decisions)", args.max_decisions)
        } else {
            String::new()
        },
        evaluation.action_space,
        seconds - read_seconds
    );
    print_estimates(&evaluation, &row_name);
    Ok(())
}
