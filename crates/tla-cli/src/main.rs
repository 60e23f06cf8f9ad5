//! `tla`: the command line of TLA (Test, Learn, Adapt).
//!
//! `tla versions` inspects the version space of a campaign spec; `tla simulate` runs a
//! policy against a simulated world file (or a campaign spec against a drawn world);
//! `tla evaluate` estimates off-policy what a target policy would have earned, on
//! simulator logs, an imported log file or a stored campaign's own log; `tla report` and
//! `tla export` read a campaign straight from a data directory (or `report` from a
//! running server); `tla serve` runs the HTTP service (with `--demo`, against a
//! simulated audience), `tla keys` manages its API keys, `tla events` retracts or
//! corrects a stored event of a running server, `tla spend report` sends it spend
//! reports, `tla campaigns` creates, lists, shows, revises, pauses, resumes and
//! archives a running server's campaigns and changes their budgets, and `tla plan` and
//! `tla results import` drive a campaign on an ad platform (plans out, results in).
//!
//! The binary is the shell around the library crates: it parses flags and input files
//! (world files, CSV and JSON-lines logs, specs), opens data directories through
//! `tla-store`, calls `tla-core`, `tla-sim` and `tla-server`, and prints tables, CSV,
//! Parquet and JSON. The statistics live in those crates: the estimators, the evaluated
//! targets, their `--target` grammar and the direct model in `tla_core::ope`, the
//! models, policies and reports elsewhere in `tla-core`, the simulations in `tla-sim`.

mod campaigns;
mod client;
use tla_server::csv_text;
mod demo;
mod evaluate;
mod events;
mod export;
mod number;
mod platform_io;
mod report;
mod serve;
mod simulate;
mod spend;
mod versions;

use clap::{Parser, Subcommand};

/// Test, Learn, Adapt: choose ad versions, learn which parts work for whom, adapt.
#[derive(Debug, Parser)]
#[command(name = "tla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count, show, sample or list the versions of a campaign spec.
    Versions(versions::VersionsArgs),
    /// Run a policy online against a simulated world file.
    Simulate(simulate::SimulateArgs),
    /// Off-policy evaluation (IPS, SNIPS, DR, AW-AIPW): validate on simulator logs, or evaluate
    /// an imported log of decisions with propensities, or a stored campaign's own log.
    Evaluate(evaluate::EvaluateArgs),
    /// Export a campaign's decisions or events to CSV or Parquet.
    Export(export::ExportArgs),
    /// Report a campaign (or compare two) straight from a data directory.
    Report(report::ReportArgs),
    /// Serve the HTTP API on an embedded data directory.
    Serve(serve::ServeArgs),
    /// Create, list and revoke API keys of a data directory.
    Keys(serve::KeysArgs),
    /// Retract or correct a stored event of a running server (audited; the model is
    /// rebuilt as a replay of the corrected log).
    Events(events::EventsArgs),
    /// Send spend reports (spend per segment and period, not tied to a decision) to a
    /// running server.
    Spend(spend::SpendArgs),
    /// Campaigns of a running server: create (with an idempotency key), list, show,
    /// revise, pause, resume, archive, change the budget.
    Campaigns(campaigns::CampaignsArgs),
    /// Ask a running server for a plan of a period (per ad set its budget and the ads
    /// to run with their shares) and write its bulk-upload sheet (CSV or JSON).
    Plan(platform_io::PlanArgs),
    /// Send an ad platform's results per ad and day (or hour) to a running server.
    Results(platform_io::ResultsArgs),
}

/// Logs to stderr; `TLA_LOG` sets the level (error, warn, info, debug, trace).
fn init_logging() {
    let level = std::env::var("TLA_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    // Colour codes only on a terminal, never in a log file or a pipe.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(terminal)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Versions(args) => versions::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => {
            init_logging();
            serve::run(args)
        }
        Command::Keys(args) => serve::run_keys(args),
        Command::Events(args) => events::run(args),
        Command::Spend(args) => spend::run(args),
        Command::Campaigns(args) => campaigns::run(args),
        Command::Plan(args) => platform_io::run_plan(args),
        Command::Results(args) => platform_io::run_results(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
