//! Times `tla_server::report::logged_rows` (a campaign's decisions joined with its
//! conversions) on a data directory, apart from rebuilding the engines:
//! `cargo run --release -p tla-cli --example time_logged_rows -- DIR CAMPAIGN_ID [RUNS]`.
//! Prints the time to open the store (which applies pending schema migrations) and to
//! rebuild the state, then each run's time, rows and total reward, and the time of its
//! conversion read alone (`Store::value_by_decision`).

use std::time::Instant;

use tla_server::report::{LOG_ROWS_CAP, logged_rows};
use tla_server::{AppState, ServerConfig};
use tla_store::{EventKind, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(campaign)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: time_logged_rows DIR CAMPAIGN_ID [RUNS]");
    };
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let start = Instant::now();
    let store = Store::open(std::path::Path::new(&dir))?;
    println!("open store: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let state = AppState::open(store, b"timing only", ServerConfig::default())?;
    println!("rebuild state: {:.3} s", start.elapsed().as_secs_f64());
    for run in 1..=runs {
        let start = Instant::now();
        let (rows, capped) = logged_rows(state.store(), &campaign, LOG_ROWS_CAP)?;
        let seconds = start.elapsed().as_secs_f64();
        let reward: f64 = rows.iter().map(|r| r.reward).sum();
        let start = Instant::now();
        let rewards = state
            .store()
            .value_by_decision(&campaign, EventKind::Conversion)?;
        let conversions = start.elapsed().as_secs_f64();
        println!(
            "run {run}: logged_rows {seconds:.3} s, {} rows (capped {capped}), total reward {reward}; \
             value_by_decision alone {conversions:.3} s ({} decisions with conversions)",
            rows.len(),
            rewards.len()
        );
    }
    Ok(())
}
