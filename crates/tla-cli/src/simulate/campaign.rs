//! `tla simulate --campaign SPEC`: a campaign served through the engine against a
//! ground truth drawn for it, its report, and the report checked against the truth
//! ([`tla_sim::campaign`]).

use super::SimulateArgs;
use anyhow::bail;
use rand::SeedableRng;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use tla_core::report::{self, ReportSettings};
use tla_sim::campaign::{
    CampaignRunConfig, LeaderCheck, LiftTruth, leader_check, lift_truth, run_campaign,
};
use tla_sim::generate::{option_truths, segment_truths, world_for};

/// Seed of the report's Monte Carlo draws (as the service's).
const REPORT_SEED: u64 = 0x5EED;

/// Most (segment, version) pairs the truth is computed over: the option truths visit
/// every one (the demo campaign's 88 million take about a second per core).
const MAX_TRUTH_PAIRS: u64 = 1_000_000_000;

/// Most impressions in one run (the decision log is held in memory, 32 bytes a row).
const MAX_IMPRESSIONS: u64 = 100_000_000;

pub fn run(spec: &Path, args: &SimulateArgs) -> anyhow::Result<()> {
    if !(args.cpm.is_finite() && args.cpm >= 0.0) {
        bail!(
            "--cpm must be a finite spend per thousand impressions >= 0; got {}",
            args.cpm
        );
    }
    if args.report_draws == 0 {
        bail!("--report-draws must be at least 1");
    }
    if args.impressions > MAX_IMPRESSIONS {
        bail!(
            "--impressions {}: at most {MAX_IMPRESSIONS} per run (the decision log is held in memory)",
            args.impressions
        );
    }
    let campaign = crate::versions::load(spec)?;
    if campaign.holdout() > 0.0 {
        bail!(
            "{}: the spec holds out {} of its units (holdout); tla simulate --campaign serves every impression through the engine and does not simulate a holdout. Remove `holdout` from the spec to run it here, or measure a holdout with tla simulate --world WORLD --holdout SHARE",
            spec.display(),
            campaign.holdout()
        );
    }
    let design = campaign.design();
    let pairs = campaign
        .total_versions()
        .saturating_mul(design.segments() as u64);
    if pairs > MAX_TRUTH_PAIRS {
        bail!(
            "{}: {} versions x {} segments = {pairs} (segment, version) pairs; the truth is computed exactly over every pair, up to {MAX_TRUTH_PAIRS}",
            spec.display(),
            campaign.total_versions(),
            design.segments()
        );
    }
    let start = Instant::now();
    let world = world_for(design, campaign.segment_shares(), args.world_seed);
    let truths = segment_truths(&world);
    let options = option_truths(&world);
    let truth_seconds = start.elapsed().as_secs_f64();

    if args.rate == 0 {
        bail!("--rate must be at least 1 impression per second");
    }
    let config = CampaignRunConfig {
        cost_per_impression: args.cpm / 1000.0,
        impressions_per_second: args.rate,
        ..CampaignRunConfig::new(args.impressions, args.seed)
    };
    let bar = super::progress_bar(args.impressions);
    let start = Instant::now();
    let run = run_campaign(&campaign, &world, &truths, &config, |done| {
        bar.set_position(done)
    });
    bar.finish_and_clear();
    let run_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(REPORT_SEED);
    let settings = ReportSettings {
        draws: args.report_draws,
        ..ReportSettings::default()
    };
    let mut report = report::build(&campaign, &run.engine, &settings, &mut rng);
    let best = report::best_versions(&run.engine, &mut rng);
    let first_half_best = report::best_versions_on_first_half(&campaign, &run.rows, &mut rng);
    report.lift = Some(report::lift(
        &run.rows,
        campaign.allowed_versions(),
        &best,
        &first_half_best,
    )?);
    let report_seconds = start.elapsed().as_secs_f64();
    let check = leader_check(&report, &options, design.objective);
    let lift_true = lift_truth(&world, &truths, &run.rows, &best, &first_half_best);

    if args.json {
        let value = serde_json::json!({
            "campaign": spec.display().to_string(),
            "versions_defined": campaign.allowed_versions(),
            "segments": design.segments(),
            "world_seed": args.world_seed,
            "seed": args.seed,
            "impressions": args.impressions,
            "cpm": args.cpm,
            "pct_of_oracle_expected": 100.0 * run.oracle_share(),
            "even_split_pct_of_oracle_expected": 100.0 * run.even_share(),
            "report": report,
            "leader_check": check,
            "option_truths": options,
            "lift_truth": lift_true,
            "seconds": {"truth": truth_seconds, "run": run_seconds, "report": report_seconds},
        });
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "campaign {} ({} versions, {} segments), ground truth seed {}, run seed {}",
        spec.display(),
        campaign.allowed_versions(),
        design.segments(),
        args.world_seed,
        args.seed
    );
    let _ = writeln!(
        out,
        "{} impressions served in {run_seconds:.1} s (truth computed in {truth_seconds:.1} s, report built in {report_seconds:.2} s)",
        args.impressions
    );
    let _ = writeln!(
        out,
        "served versions earned {:.1}% of the oracle's expected value (even split {:.1}%)\n",
        100.0 * run.oracle_share(),
        100.0 * run.even_share()
    );
    out.push_str(&crate::report::table(&report));
    out.push_str(&leader_table(&check));
    if let Some(lift) = &report.lift {
        out.push_str(&lift_table(lift, &lift_true));
    }
    crate::report::emit(&out)
}

fn leader_table(check: &LeaderCheck) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nCheck \"leaders are the oracle's options\": {} of {} components \
         (the oracle's option: carried by the segments' best versions for the most traffic)",
        check.matched,
        check.components.len()
    );
    let _ = writeln!(
        out,
        "  {:<12} {:<22} {:>7}  {:<22} {:>7}  {:<22} {:>5} {:>9}  {:<22}",
        "component",
        "report's leader",
        "P(best)",
        "oracle's option",
        "traffic",
        format!("even-split best ({})", check.by),
        "rank",
        "shortfall",
        "average-version best"
    );
    for c in &check.components {
        let _ = writeln!(
            out,
            "  {:<12} {:<22} {:>7.3}  {:<22} {:>6.1}%  {:<22} {:>5} {:>8.2}%  {:<22}{}",
            clip(&c.component, 12),
            clip(&c.leader, 22),
            c.leader_p_best,
            clip(&c.oracle_option, 22),
            100.0 * c.oracle_share,
            clip(&c.even_best, 22),
            c.even_rank,
            100.0 * c.even_shortfall,
            clip(&c.average_version_best, 22),
            if c.matched {
                ""
            } else {
                "  <- not the oracle's option"
            }
        );
    }
    let _ = writeln!(
        out,
        "  (rank and shortfall: the leader against the option with the best true value averaged over every version carrying it;\n   average-version best: the best true value at the segment-average version, what the leaderboard's model estimates)"
    );
    out.lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

fn lift_table(lift: &report::Lift, truth: &LiftTruth) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nLift estimates against the truth (per impression; realized {:.4}, true expected value of the versions served {:.4})",
        lift.realized.value, truth.realized_expected
    );
    let rows = [
        ("even split", &lift.even_split, truth.even_split),
        (
            "best single version",
            &lift.best_single_version,
            truth.best_single_version,
        ),
    ];
    for (name, comparison, true_value) in rows {
        match &comparison.estimate {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "  {name:<20} SNIPS {:.4} [{:.4}, {:.4}] (ESS {:.0}); true {true_value:.4}: {}",
                    e.value,
                    e.lower,
                    e.upper,
                    e.ess,
                    if e.covers(true_value) {
                        "inside the interval"
                    } else {
                        "OUTSIDE the interval"
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {name:<20} not estimated ({}); true {true_value:.4}",
                    comparison.error.as_deref().unwrap_or("no estimate")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "  (best single version: picked by a model of the log's first half, scored on its second half)"
    );
    let _ = writeln!(
        out,
        "  the full model's best versions: true value {:.4}; the {} rows serving them earned {:.4} (true {:.4})",
        truth.best_versions_value,
        truth.best_version_rows,
        truth.best_version_logged_mean,
        truth.best_version_true_mean
    );
    out
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut clipped: String = text.chars().take(width - 1).collect();
        clipped.push('…');
        clipped
    }
}
