//! `tla evaluate`: off-policy evaluation validated on simulator logs.

use anyhow::{Context, bail};
use tla_sim::PolicyChoice;
use tla_sim::ope::{TargetChoice, ValidationConfig, ValidationReport, validate};
use tla_sim::world::World;

/// Logging policies `tla evaluate` can simulate.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoggingArg {
    /// The even split: every version equally likely.
    Uniform,
    /// Factorized Thompson sampling with its exploration floor (--epsilon).
    FactorizedTs,
}

/// Arguments of `tla evaluate`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Validate the off-policy estimators (IPS, self-normalized IPS, doubly robust with a \
cross-fitted direct model) on simulator logs where the truth is known: for each seed, a logging \
policy runs against the world and every decision's segment, version, exact propensity and \
donation is logged; the target policy's value is estimated from the log and compared with its \
exact value computed from the world. Prints bias, 95% interval coverage, mean interval width and \
effective sample size per estimator.\n\nEvaluating a stored campaign's log or an imported CSV / \
JSON-lines log is not implemented yet (it comes with the import work of issue 4)."
)]
pub struct EvaluateArgs {
    /// The world file (format tla-creative-world/v1).
    #[arg(long)]
    pub world: std::path::PathBuf,
    /// The logging policy.
    #[arg(long, value_enum, default_value = "uniform")]
    pub logging: LoggingArg,
    /// The target policy: `oracle` (the best version per segment), `uniform`, or
    /// `fixed-options:0,1,2,3` (one option per component, in every segment).
    #[arg(long, default_value = "oracle")]
    pub target: String,
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
    #[arg(long, default_value_t = tla_sim::PolicySettings::default().epsilon)]
    pub epsilon: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_target(text: &str) -> anyhow::Result<TargetChoice> {
    match text {
        "oracle" => Ok(TargetChoice::Oracle),
        "uniform" => Ok(TargetChoice::Uniform),
        _ => {
            let Some(list) = text.strip_prefix("fixed-options:") else {
                bail!("--target: {text:?}; accepted: oracle, uniform, fixed-options:0,1,2,3");
            };
            let options = list
                .split(',')
                .map(|o| o.trim().parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--target: {list:?} is not a list of option indices"))?;
            Ok(TargetChoice::FixedOptions(options))
        }
    }
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    if args.impressions < 2 {
        bail!("--impressions must be at least 2");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !(0.0..1.0).contains(&args.epsilon)
        || (args.epsilon == 0.0 && matches!(args.logging, LoggingArg::FactorizedTs))
    {
        bail!(
            "--epsilon must lie in (0, 1) so every version keeps a positive propensity; got {}",
            args.epsilon
        );
    }
    let target = parse_target(&args.target)?;
    let text = std::fs::read_to_string(&args.world)
        .with_context(|| format!("cannot read world file {}", args.world.display()))?;
    let world = World::from_json(&text).with_context(|| format!("in {}", args.world.display()))?;
    let mut config = ValidationConfig::new(
        match args.logging {
            LoggingArg::Uniform => PolicyChoice::Uniform,
            LoggingArg::FactorizedTs => PolicyChoice::FactorizedTs,
        },
        target,
        args.impressions,
        args.seeds,
    );
    config.first_seed = args.first_seed;
    config.folds = args.folds;
    config.settings.epsilon = args.epsilon;
    let start = std::time::Instant::now();
    let report = validate(&world, &config).map_err(anyhow::Error::msg)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["seconds"] = seconds.into();
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print_table(&report, seconds);
    }
    Ok(())
}

fn print_table(report: &ValidationReport, seconds: f64) {
    println!(
        "world {}, logging {}, target {}: {} seeds x {} impressions, {} folds ({seconds:.1} s)",
        report.world, report.logging, report.target, report.seeds, report.impressions, report.folds
    );
    println!("truth (exact value per impression): {:.4}", report.truth);
    println!(
        "{:<9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>9} {:>11} {:>10}",
        "estimator",
        "mean",
        "bias",
        "rel.bias",
        "bias s.e.",
        "sd(est)",
        "mean s.e.",
        "coverage",
        "mean width",
        "mean ESS"
    );
    for s in &report.estimators {
        println!(
            "{:<9} {:>10.4} {:>+10.4} {:>+8.1}% {:>10.4} {:>10.4} {:>10.4} {:>9.2} {:>11.4} {:>10.1}",
            s.estimator,
            s.mean_estimate,
            s.bias,
            100.0 * s.relative_bias,
            s.bias_std_error,
            s.sd_estimate,
            s.mean_std_error,
            s.coverage,
            s.mean_width,
            s.mean_ess
        );
    }
}
