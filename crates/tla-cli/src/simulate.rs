//! `tla simulate`: run a policy online against a world file, or a campaign spec
//! against a ground truth drawn for it (`campaign`).

mod campaign;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use tla_core::design::{Interactions, Objective};
use tla_core::model::forgetting::Forgetting;
use tla_core::pacing::PacingMode;
use tla_core::plan::PlanSettings;
use tla_core::policy::campaign::CampaignPolicySettings;
use tla_core::spec::{AMOUNT_LIMIT, MAX_MIN_ROAS};
use tla_sim::online::{HoldoutRun, PacingRun};
use tla_sim::platform::{PlatformLearner, PlatformRun};
use tla_sim::sim::{
    HoldoutReport, HoldoutRuns, SimConfig, SimReport, Truth, holdout_runs, simulate,
    simulate_platform,
};
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy};

/// Policies `tla simulate` can run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// The even split: every version equally likely.
    Uniform,
    /// Independent Beta-Bernoulli Thompson sampling per (segment, version).
    IndependentTs,
    /// Factorized Thompson sampling over components, segments and interactions.
    FactorizedTs,
}

/// Arguments of `tla simulate`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Run a policy online against a simulated world file (--world), scoring it as a \
percentage of the oracle that knows the truth.\n\nWith --campaign SPEC instead: draw a ground truth \
for the campaign (--world-seed; the same kind of world `tla serve --demo` draws), serve it \
--impressions impressions through the engine the service runs (the spec's exploration floor, \
Thompson draws and refresh cadence), and print the campaign report of the run with two checks \
against the truth: \"leaders match the truth\" (per component, is the option the report ranks \
first the one with the highest true even-split value?) and the lift section's estimates against \
the true values of the even split and the best single versions."
)]
pub struct SimulateArgs {
    /// The world file (format tla-creative-world/v1).
    #[arg(long, required_unless_present = "campaign")]
    pub world: Option<std::path::PathBuf>,
    /// A campaign spec (TOML or JSON) to run against a ground truth drawn for it,
    /// instead of a world file.
    #[arg(long, conflicts_with_all = [
        "world", "policy", "interactions", "epsilon", "draws", "refresh_every",
        "exact_limit", "option_variance", "segment_interaction_variance", "pair_variance",
        "draw_scale", "argmax_gap", "forgetting",
    ])]
    pub campaign: Option<std::path::PathBuf>,
    /// With --campaign: seed of the ground truth drawn for the campaign.
    #[arg(long, default_value_t = 1, requires = "campaign")]
    pub world_seed: u64,
    /// With --campaign: spend per thousand impressions, learned as cost events.
    #[arg(long, default_value_t = 8.0, requires = "campaign")]
    pub cpm: f64,
    /// With --campaign: impressions per simulated second (the spec's time-based
    /// refresh cadence counts simulated time; the demo audience serves 500).
    #[arg(long, default_value_t = 5_000, requires = "campaign")]
    pub rate: u64,
    /// With --campaign: Monte Carlo draws of the report's posterior.
    #[arg(long, default_value_t = tla_core::report::DEFAULT_POSTERIOR_DRAWS, requires = "campaign")]
    pub report_draws: usize,
    /// The policy to run.
    #[arg(long, value_enum, default_value = "factorized-ts")]
    pub policy: PolicyArg,
    /// Impressions to simulate.
    #[arg(long, default_value_t = 200_000)]
    pub impressions: u64,
    /// Seed of the audience, the outcomes and the policy.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Which interactions the learner models: `auto` (the spec default: every
    /// component x segment, plus every component pair when the whole space has at most
    /// --exact-limit versions), `segment` (every component x segment), `all` (also
    /// every component pair), `none` (main effects only), or a list of component pairs
    /// `A:B,C:D` (added to every component x segment).
    #[arg(long, default_value = "auto")]
    pub interactions: String,
    /// Exploration floor: share of impressions drawn uniformly from the whole space.
    #[arg(long, default_value_t = tla_core::policy::campaign::DEFAULT_EXPLORATION)]
    pub epsilon: f64,
    /// Thompson draws per decision distribution.
    #[arg(long, default_value_t = tla_core::policy::campaign::DEFAULT_DRAWS as usize)]
    pub draws: usize,
    /// Rebuild a segment's decision distribution after this many of its events.
    #[arg(long, default_value_t = tla_core::policy::campaign::DEFAULT_REFRESH_EVERY_EVENTS)]
    pub refresh_every: u64,
    /// Largest block of linked components searched exactly (else coordinate ascent).
    #[arg(long, default_value_t = tla_core::design::DEFAULT_EXACT_LIMIT)]
    pub exact_limit: u64,
    /// Prior variance of each option's main effect (probit scale).
    #[arg(long, default_value_t = tla_core::model::conversion::ConversionPrior::default().option_variance)]
    pub option_variance: f64,
    /// Prior variance of each (option, segment) interaction (probit scale).
    #[arg(long, default_value_t = tla_core::model::conversion::ConversionPrior::default().segment_interaction_variance)]
    pub segment_interaction_variance: f64,
    /// Prior variance of each (option, option) interaction (probit scale).
    #[arg(long, default_value_t = tla_core::model::conversion::ConversionPrior::default().pair_interaction_variance)]
    pub pair_variance: f64,
    /// How the model forgets: `auto` (the rate chosen from the data among a few
    /// half-lives and none), `off`, or a half-life such as `36h`, `3d`, `90m`. The
    /// learner's clock is the flight's in a world with one, else one impression per
    /// simulated second. Default: what a campaign gets.
    #[arg(long, default_value_t = tla_core::model::forgetting::Forgetting::default().to_string())]
    pub forgetting: String,
    /// Scale of the posterior spread in each Thompson draw (1 = Thompson sampling).
    #[arg(long, default_value_t = tla_core::policy::factorized::FactorizedSettings::default().draw_scale)]
    pub draw_scale: f64,
    /// After the run, compare the configured argmax with the exact one on this many
    /// posterior draws per segment (factorized-ts only; the exact search enumerates
    /// each linked block, which can be slow).
    #[arg(long, default_value_t = 0)]
    pub argmax_gap: u64,
    /// A flight budget (a world with a flight only): `auto` (the world's budget_share
    /// of what buying every opportunity would cost, in expectation) or an amount. Each
    /// impression is then an opportunity, bought or skipped, and the run is scored by
    /// pct_of_budget_oracle.
    #[arg(long, conflicts_with = "campaign")]
    pub budget: Option<String>,
    /// With --budget: the most spent in one day of the flight.
    #[arg(long, requires = "budget")]
    pub daily_cap: Option<f64>,
    /// With --budget: buy only what is expected to return at least this many times its
    /// cost.
    #[arg(long, requires = "budget")]
    pub min_roas: Option<f64>,
    /// With --budget: how it is spent: `value` (the price-of-money rule), `ratio`
    /// (budgeted Thompson sampling's ratio rule), `even` (evenly over the traffic,
    /// buying at random) or `none` (everything until the budget is gone).
    #[arg(long, value_enum, default_value = "value", requires = "budget")]
    pub pacing: PacingArg,
    /// Hold out this share of the units (each impression a new unit), in (0, 0.5]:
    /// served the even split (with --budget, paced evenly on the holdout's share of the
    /// budget), and report the policy's lift against them at --looks looks, with the
    /// fixed-horizon interval and the confidence sequence valid at every look.
    #[arg(long, conflicts_with = "campaign")]
    pub holdout: Option<f64>,
    /// With --holdout: equally spaced looks at the lift.
    #[arg(long, default_value_t = tla_sim::sim::DEFAULT_LOOKS as u64, requires = "holdout")]
    pub looks: u64,
    /// With --holdout: repeat the run at seeds --seed, --seed + 1, ... and report how
    /// often each interval excluded zero at some look (with --policy uniform, an A/A
    /// check: the policy and the holdout are both the even split).
    #[arg(long, default_value_t = 1, requires = "holdout")]
    pub runs: u64,
    /// How the campaign buys: `impression` (it decides each opportunity: owned
    /// channels, or a bidder) or `plan` (an ad platform owns the impression: every
    /// --plan-every hours a plan gives each ad set (segment) a budget and
    /// --ads-per-segment ads with their shares, a simulated platform delivers it and
    /// reports aggregates, which are learned; needs --budget; docs/platform.md).
    #[arg(
        long,
        value_enum,
        default_value = "impression",
        conflicts_with = "campaign"
    )]
    pub mode: ModeArg,
    /// With --mode plan: hours between plans (the period a plan runs for).
    #[arg(long, default_value_t = 24.0)]
    pub plan_every: f64,
    /// With --mode plan: ads per ad set (K).
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_ADS_PER_SEGMENT)]
    pub ads_per_segment: usize,
    /// With --mode plan: posterior draws per ad set each plan is drawn from (M).
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_PLAN_DRAWS)]
    pub plan_draws: usize,
    /// With --mode plan: the minimum exploration share, in [0, 1]: of each ad set's
    /// impressions, spread evenly over its ads; and of the period's budget, spread evenly
    /// over the ad sets as their floor.
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_MIN_EXPLORATION_SHARE)]
    pub plan_exploration: f64,
    /// With --mode plan: scale of the posterior spread in a plan's draws (1: the
    /// posterior itself); without it, the decision tables' (--draw-scale).
    #[arg(long)]
    pub plan_draw_scale: Option<f64>,
    /// With --mode plan: the share of each ad set's impressions spread evenly over its
    /// ads, in [0, 1], apart from the budget floor; without it, --plan-exploration.
    #[arg(long)]
    pub plan_ad_exploration: Option<f64>,
    /// With --mode plan: discount of an option already in an ad set's batch, in (0, 1]
    /// (1: the K versions with most draws; below 1: ads that differ in their options).
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_OPTION_REPEAT)]
    pub plan_option_repeat: f64,
    /// With --mode plan: whether the plans' draw scale follows the flight left, from 1
    /// (the posterior's spread) while all of it is ahead to --plan-draw-scale (else
    /// --draw-scale) for the last plan (`docs/platform.md`); false: --plan-draw-scale
    /// (else --draw-scale) throughout.
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_DRAW_SCALE_SCHEDULE, action = clap::ArgAction::Set)]
    pub plan_draw_scale_schedule: bool,
    /// With --mode plan: whether the money rule's draws (the ad sets' budgets) follow
    /// the flight left as the versions' do; false: the budgets are priced with their own
    /// draws at --plan-draw-scale (else --draw-scale, the pacer's scale;
    /// `docs/platform.md`).
    #[arg(long, default_value_t = tla_core::plan::DEFAULT_BUDGET_DRAW_SCALE_SCHEDULE, action = clap::ArgAction::Set)]
    pub plan_budget_draw_scale_schedule: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How `tla simulate` buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// The campaign decides each opportunity.
    Impression,
    /// An ad platform delivers the campaign's plans.
    Plan,
}

/// How `tla simulate --budget` spends the budget (see tla_core::pacing).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PacingArg {
    /// The price-of-money rule: skip what is worth less than λ times its expected cost.
    Value,
    /// Budgeted Thompson sampling's ratio rule: buy when the sampled value per expected
    /// dollar is at least 1, until the budget is gone.
    Ratio,
    /// Spend evenly over the traffic, buying at random.
    Even,
    /// Buy everything until the budget is gone.
    None,
}

impl From<PacingArg> for PacingMode {
    fn from(arg: PacingArg) -> Self {
        match arg {
            PacingArg::Value => PacingMode::Value,
            PacingArg::Ratio => PacingMode::Ratio,
            PacingArg::Even => PacingMode::Even,
            PacingArg::None => PacingMode::None,
        }
    }
}

/// The run's money from `--budget`, `--daily-cap`, `--min-roas` and `--pacing`, checked
/// against the world.
fn pacing_run(args: &SimulateArgs, world: &World) -> anyhow::Result<Option<PacingRun>> {
    let Some(text) = &args.budget else {
        return Ok(None);
    };
    let budget = budget_amount(text, world, args.impressions)?;
    if let Some(cap) = args.daily_cap {
        check_amount("--daily-cap", cap)?;
    }
    if let Some(roas) = args.min_roas {
        if !(roas.is_finite() && roas > 0.0 && roas <= MAX_MIN_ROAS) {
            bail!("--min-roas must be above 0 and at most {MAX_MIN_ROAS}; got {roas}");
        }
    }
    Ok(Some(PacingRun {
        mode: args.pacing.into(),
        budget,
        daily_cap: args.daily_cap,
        min_roas: args.min_roas,
    }))
}

/// The flight budget `--budget` names for a run of `impressions` opportunities of
/// `world` (which must have a flight): `auto` (the world's budget_share of what buying
/// every opportunity would cost, in expectation) or an amount (`tla simulate` and
/// `tla evaluate --world` read it here).
pub(crate) fn budget_amount(text: &str, world: &World, impressions: u64) -> anyhow::Result<f64> {
    let Some(flight) = &world.flight else {
        bail!(
            "--budget needs a world with a flight (format tla-creative-world/v2: days, hourly traffic, costs); {} has none",
            world.name
        );
    };
    if text == "auto" {
        return Ok(flight.budget(impressions, &world.segment_probs));
    }
    let amount: f64 = text.parse().map_err(|_| {
        anyhow::anyhow!("--budget: {text:?} is not a number; accepted: auto, or an amount above 0 and at most {AMOUNT_LIMIT:e}")
    })?;
    check_amount("--budget", amount)?;
    Ok(amount)
}

/// An amount of money given on the command line: finite, above 0, at most the amount
/// limit.
fn check_amount(flag: &str, amount: f64) -> anyhow::Result<()> {
    if !(amount.is_finite() && amount > 0.0 && amount <= AMOUNT_LIMIT) {
        bail!("{flag} must be an amount above 0 and at most {AMOUNT_LIMIT:e}; got {amount}");
    }
    Ok(())
}

fn parse_interactions(text: &str, world: &World, exact_limit: u64) -> anyhow::Result<Interactions> {
    let components = world.component_names.len();
    match text {
        "auto" => return Ok(Interactions::auto(&world.space, exact_limit)),
        "segment" => return Ok(Interactions::segment_only(components)),
        "all" => return Ok(Interactions::all(components)),
        "none" => return Ok(Interactions::default()),
        _ => {}
    }
    let mut interactions = Interactions::segment_only(components);
    for pair in text.split(',') {
        let Some((a, b)) = pair.split_once(':') else {
            bail!(
                "--interactions: {pair:?} is not A:B; accepted: auto, segment, all, none, or component pairs like headline:image,cta:body"
            );
        };
        let find = |name: &str| {
            world
                .component_names
                .iter()
                .position(|n| n == name.trim())
                .with_context(|| {
                    format!(
                        "--interactions: unknown component {name:?}; this world has {}",
                        world.component_names.join(", ")
                    )
                })
        };
        let (a, b) = (find(a)?, find(b)?);
        if a == b {
            bail!("--interactions: {pair:?} crosses a component with itself");
        }
        let pair = (a.min(b), a.max(b));
        if !interactions.pairs.contains(&pair) {
            interactions.pairs.push(pair);
        }
    }
    Ok(interactions)
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.epsilon) {
        bail!("--epsilon must lie in [0, 1); got {}", args.epsilon);
    }
    if args.impressions == 0 {
        bail!("--impressions must be at least 1");
    }
    if let Some(spec) = &args.campaign {
        return campaign::run(spec, &args);
    }
    let Some(world_path) = &args.world else {
        bail!("give --world FILE (a world file) or --campaign SPEC (a campaign spec)");
    };
    let text = std::fs::read_to_string(world_path)
        .with_context(|| format!("cannot read world file {}", world_path.display()))?;
    let world = World::from_json(&text).with_context(|| format!("in {}", world_path.display()))?;
    let worst = world.verify_checks()?.max(world.verify_checks_v2()?);
    if worst > 1e-9 {
        bail!(
            "{}: the world's checks are not reproduced (worst relative error {worst:e} > 1e-9)",
            world_path.display()
        );
    }
    let pacing = pacing_run(&args, &world)?;
    let interactions = parse_interactions(&args.interactions, &world, args.exact_limit)?;
    let design = world.design(interactions, Objective::Value);
    let mut settings = CampaignPolicySettings {
        exploration: args.epsilon,
        ..tla_sim::default_settings()
    };
    settings.draws = args.draws.max(1);
    settings.cadence.every_events = args.refresh_every.max(1);
    settings.factorized.exact_limit = args.exact_limit;
    settings.factorized.draw_scale = args.draw_scale;
    settings.factorized.forgetting =
        Forgetting::parse(&args.forgetting).map_err(|e| anyhow::anyhow!("--forgetting: {e}"))?;
    settings.factorized.conversion.option_variance = args.option_variance;
    settings.factorized.conversion.segment_interaction_variance = args.segment_interaction_variance;
    settings.factorized.conversion.pair_interaction_variance = args.pair_variance;
    let choice = match args.policy {
        PolicyArg::Uniform => PolicyChoice::Uniform,
        PolicyArg::IndependentTs => PolicyChoice::IndependentTs,
        PolicyArg::FactorizedTs => PolicyChoice::FactorizedTs,
    };
    let holdout = match args.holdout {
        None => None,
        Some(share) if share > 0.0 && share <= tla_core::holdout::MAX_HOLDOUT => Some(HoldoutRun {
            share,
            salt: args.seed,
        }),
        Some(share) => bail!(
            "--holdout must be a share above 0 and at most {}; got {share}",
            tla_core::holdout::MAX_HOLDOUT
        ),
    };
    if args.looks == 0 {
        bail!("--looks must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let truth = Truth::new(&world);
    let config = SimConfig {
        pacing,
        holdout,
        looks: args.looks,
        ..SimConfig::new(args.impressions, args.seed)
    };
    if args.runs > 1 {
        let bar = progress_bar(args.runs);
        let runs = holdout_runs(
            &world,
            &truth,
            |seed| build_policy(choice, &design, &settings, seed),
            &config,
            args.runs,
            |done| bar.set_position(done),
        );
        bar.finish_and_clear();
        if args.json {
            let mut value = serde_json::json!({ "holdout_runs": runs });
            value["world"] = world.name.clone().into();
            value["policy"] = format!("{:?}", args.policy).to_lowercase().into();
            println!("{}", serde_json::to_string(&value)?);
        } else {
            print_runs(&world.name, &runs);
        }
        return Ok(());
    }
    if args.mode == ModeArg::Plan {
        return run_plan(
            &args,
            &world,
            &truth,
            build_policy(choice, &design, &settings, args.seed),
            config,
        );
    }
    let mut policy = build_policy(choice, &design, &settings, args.seed);
    let bar = progress_bar(args.impressions);
    let report = simulate(&world, &truth, &mut policy, &config, |done| {
        bar.set_position(done)
    });
    bar.finish_and_clear();
    let gap = if args.argmax_gap > 0 {
        policy.argmax_gap(args.argmax_gap, args.seed)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(gap) = &gap {
            value["argmax_gap"] = serde_json::to_value(gap)?;
        }
        value["mode"] = "impression".into();
        value["interactions"] = serde_json::Value::String(args.interactions.clone());
        value["epsilon"] = args.epsilon.into();
        value["draws"] = args.draws.into();
        value["refresh_every"] = args.refresh_every.into();
        if let Some(forgetting) = policy.forgetting() {
            value["forgetting"] = serde_json::to_value(&forgetting)?;
        }
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print_table(&report);
        if let Some(f) = policy.forgetting() {
            println!(
                "  forgetting               {:>8}  (in force at the end: {}, {} switches)",
                f.setting, f.in_force, f.switches
            );
        }
        if let Some(gap) = gap {
            println!(
                "  argmax vs exact: {} draws, exact optimum found in {:.1}%, mean gap {:.3}%, max gap {:.2}%, {:.1} us vs {:.1} us per search",
                gap.draws,
                100.0 * gap.share_exact,
                gap.mean_gap_pct,
                gap.max_gap_pct,
                gap.configured_micros,
                gap.exact_micros
            );
        }
    }
    Ok(())
}

/// `--mode plan`: the run through the simulated platform, printed as a table or JSON
/// (the per-impression run's fields, with `mode`, `plan_every_hours`,
/// `ads_per_segment` and `plans`).
fn run_plan(
    args: &SimulateArgs,
    world: &World,
    truth: &Truth,
    policy: tla_sim::AnyPolicy,
    mut config: SimConfig,
) -> anyhow::Result<()> {
    let Some(pacing) = config.pacing.as_mut() else {
        bail!(
            "--mode plan needs --budget (auto or an amount): a plan gives each ad set a share of it"
        );
    };
    if config.holdout.is_some() {
        bail!("--mode plan does not take --holdout");
    }
    if !(args.plan_every.is_finite() && args.plan_every > 0.0) {
        bail!(
            "--plan-every must be a number of hours above 0; got {}",
            args.plan_every
        );
    }
    let run = PlatformRun {
        settings: PlanSettings {
            min_roas: pacing.min_roas,
            draws: args.plan_draws,
            draw_scale: args.plan_draw_scale,
            min_exploration_share: args.plan_exploration,
            ad_exploration_share: args.plan_ad_exploration,
            option_repeat: args.plan_option_repeat,
            draw_scale_schedule: args.plan_draw_scale_schedule,
            budget_draw_scale_schedule: args.plan_budget_draw_scale_schedule,
            ..PlatformRun::new(args.plan_every, args.ads_per_segment).settings
        },
        ..PlatformRun::new(args.plan_every, args.ads_per_segment)
    };
    run.settings.check().map_err(|e| {
        // The settings' field names, as the flags that set them here.
        let text = e.to_string();
        let (field, rest) = text.split_once(": ").unwrap_or((&text, ""));
        let flag = match field {
            "draws" => "plan-draws".to_owned(),
            "draw_scale" => "plan-draw-scale".to_owned(),
            "min_exploration_share" => "plan-exploration".to_owned(),
            "ad_exploration_share" => "plan-ad-exploration".to_owned(),
            "option_repeat" => "plan-option-repeat".to_owned(),
            other => other.replace('_', "-"),
        };
        anyhow::anyhow!("--{flag}: {rest}")
    })?;
    pacing.mode = PlatformLearner::PACING;
    let budget = pacing.budget;
    let mut platform =
        PlatformLearner::new(policy, world, args.impressions, budget, run, args.seed);
    let bar = progress_bar(args.impressions);
    let report = simulate_platform(world, truth, &mut platform, &config, |done| {
        bar.set_position(done)
    });
    bar.finish_and_clear();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["mode"] = "plan".into();
        value["plan_every_hours"] = args.plan_every.into();
        value["ads_per_segment"] = args.ads_per_segment.into();
        value["plans"] = platform.plans().into();
        value["plan_draws"] = args.plan_draws.into();
        value["plan_draw_scale"] = args.plan_draw_scale.into();
        value["plan_exploration"] = args.plan_exploration.into();
        value["plan_ad_exploration"] = args.plan_ad_exploration.into();
        value["plan_option_repeat"] = args.plan_option_repeat.into();
        value["plan_draw_scale_schedule"] = args.plan_draw_scale_schedule.into();
        value["plan_budget_draw_scale_schedule"] = args.plan_budget_draw_scale_schedule.into();
        value["interactions"] = serde_json::Value::String(args.interactions.clone());
        value["epsilon"] = args.epsilon.into();
        value["draws"] = args.draws.into();
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print_table(&report);
        println!(
            "  mode plan: {} plans, every {} h, {} ads per ad set",
            platform.plans(),
            args.plan_every,
            args.ads_per_segment
        );
    }
    Ok(())
}

/// A progress bar of impressions on stderr when it is a terminal, hidden otherwise.
fn progress_bar(impressions: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(impressions), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} impressions ({per_sec}, eta {eta})")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    }
}

fn print_table(report: &SimReport) {
    println!(
        "world {}, policy {}, {} impressions, seed {}",
        report.world, report.policy, report.impressions, report.seed
    );
    println!(
        "  % of oracle (expected)   {:>8.2}",
        report.pct_of_oracle_expected
    );
    println!(
        "  % of oracle (realized)   {:>8.2}",
        report.pct_of_oracle_realized
    );
    println!(
        "  even split, % of oracle  {:>8.2}",
        report.uniform_pct_of_oracle_expected
    );
    println!("  conversions              {:>8}", report.conversions);
    println!("  donations                {:>11.2}", report.value);
    println!("  versions served          {:>8}", report.versions_served);
    println!("  decision refreshes       {:>8}", report.refreshes);
    println!(
        "  impressions per second   {:>8.0}",
        report.impressions_per_second
    );
    println!("  model bytes              {:>8}", report.model_bytes);
    if let Some(b) = &report.budget {
        println!("  pacing                   {:>8}", b.pacing);
        println!("  % of budget oracle       {:>8.2}", b.pct_of_budget_oracle);
        println!("  budget                   {:>11.2}", b.budget);
        println!("  spend                    {:>11.2}", b.spend);
        println!(
            "  over / underspend %      {:>8.2} / {:.2}",
            b.overspend_pct, b.underspend_pct
        );
        println!("  value per dollar         {:>11.3}", b.value_per_dollar);
        println!("  daily pacing RMSE %      {:>8.2}", b.pacing_rmse_pct);
        println!(
            "  price of money (end)     {:>11.3}  ({})",
            b.price_of_money_final,
            tla_core::pacing::price_in_words(b.price_of_money_final)
        );
        println!("  opportunities bought     {:>8}", b.bought);
        for (reason, n) in &b.skipped {
            println!(
                "  skipped ({reason}){:>w$}",
                n,
                w = 17usize.saturating_sub(reason.len()) + 8
            );
        }
    }
    if !report.recovery.is_empty() {
        println!(
            "  recovery after drift (% of oracle over {:.0}% of the flight):",
            100.0 * tla_sim::sim::RECOVERY_WINDOW
        );
        for r in &report.recovery {
            let recovered = match r.recovered_after_impressions {
                Some(n) => format!("recovered {n} impressions after it ended"),
                None => "not recovered by the end".to_string(),
            };
            println!(
                "    {:<14} f {:.2}-{:.2}  before {:>6.2}  dip {:>6.2}  {recovered}",
                r.target, r.start_fraction, r.end_fraction, r.before_pct, r.dip_pct
            );
        }
    }
    if let Some(h) = &report.holdout {
        print_holdout(h);
    }
    println!("  learning curve (cumulative % / window %):");
    for c in &report.learning_curve {
        match c.spend {
            Some(spend) => println!(
                "    {:>10}  {:>6.2}  {:>6.2}  spend {:>12.2}",
                c.impressions, c.pct_of_oracle_expected, c.window_pct_of_oracle_expected, spend
            ),
            None => println!(
                "    {:>10}  {:>6.2}  {:>6.2}",
                c.impressions, c.pct_of_oracle_expected, c.window_pct_of_oracle_expected
            ),
        }
    }
}

/// The holdout section of the table: the lift at the end, when each interval first
/// excluded zero, and the lift at each look.
fn print_holdout(h: &HoldoutReport) {
    let interval = |i: &tla_core::holdout::LiftInterval| {
        format!(
            "{:+.5}  fixed [{:+.5}, {:+.5}]  sequence [{:+.5}, {:+.5}]",
            i.lift, i.fixed.lower, i.fixed.upper, i.sequence.lower, i.sequence.upper
        )
    };
    let lift = &h.lift;
    println!(
        "  holdout {:.0}%: policy {} decisions, holdout {} decisions",
        100.0 * h.share,
        lift.policy.decisions,
        lift.holdout.decisions
    );
    if let Some(p) = &lift.per_impression {
        println!("    lift per impression    {}", interval(p));
    }
    if let Some(d) = &lift.per_dollar {
        println!("    lift per dollar        {}", interval(d));
    }
    if let Some(t) = h.true_lift_per_impression {
        println!("    true lift per impression {t:+.5}");
    }
    if let Some(t) = h.true_lift_per_dollar {
        println!("    true lift per dollar     {t:+.5}");
    }
    let first = |f: &Option<tla_sim::sim::FirstExclusion>| match f {
        Some(f) => match f.flight_day {
            Some(day) => format!(
                "look {} ({} opportunities, flight day {:.1})",
                f.look, f.opportunities, day
            ),
            None => format!("look {} ({} opportunities)", f.look, f.opportunities),
        },
        None => "never".to_string(),
    };
    let f = &h.first_excluded_zero;
    println!(
        "    sequence first excluded zero: per impression {}, per dollar {}",
        first(&f.sequence_per_impression),
        first(&f.sequence_per_dollar)
    );
    println!(
        "    fixed interval first excluded zero: per impression {}, per dollar {}",
        first(&f.fixed_per_impression),
        first(&f.fixed_per_dollar)
    );
    println!("    {}", lift.sequence_validity);
}

/// The table of `--runs`: how often each interval excluded zero at some look.
fn print_runs(world: &str, r: &HoldoutRuns) {
    println!(
        "world {world}, {} runs from seed {}, {} opportunities and {} looks each, holdout {:.0}%",
        r.runs,
        r.seed,
        r.impressions,
        r.looks,
        100.0 * r.share
    );
    println!(
        "  confidence sequence excluded zero at some look   {:>5} runs  ({:.1}%)",
        r.sequence_excluded_zero,
        100.0 * r.sequence_rate
    );
    println!(
        "  fixed-horizon interval excluded zero at some look {:>5} runs  ({:.1}%)",
        r.fixed_excluded_zero,
        100.0 * r.fixed_rate
    );
    println!(
        "  fixed-horizon interval excluded zero at the end   {:>5} runs  ({:.1}%)",
        r.fixed_excluded_zero_at_end,
        100.0 * r.fixed_excluded_zero_at_end as f64 / r.runs as f64
    );
    if let (Some(sequence), Some(fixed)) = (
        r.per_dollar_sequence_excluded_zero,
        r.per_dollar_fixed_excluded_zero,
    ) {
        println!(
            "  per dollar: sequence excluded zero in {sequence} runs ({:.1}%), fixed interval in {fixed} ({:.1}%)",
            100.0 * sequence as f64 / r.runs as f64,
            100.0 * fixed as f64 / r.runs as f64
        );
    }
    println!(
        "  mean true lift per impression {:+.6}; alpha {}; {:.1} s",
        r.mean_true_lift_per_impression, r.alpha, r.seconds
    );
}
