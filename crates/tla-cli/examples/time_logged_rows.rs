//! Times `tla_server::report::logged_rows` (a campaign's decisions joined with its
//! conversions) on a data directory, apart from rebuilding the engines:
//! `cargo run --release -p tla-cli --example time_logged_rows -- DIR CAMPAIGN_ID [RUNS]`.
//! Prints the time to open the store (which applies pending schema migrations) and to
//! rebuild the state, then each run's time, rows and total reward.

use std::time::Instant;

use tla_server::report::{LOG_ROWS_CAP, logged_rows};
use tla_server::{AppState, ServerConfig};
use tla_store::Store;

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
        let (rows, capped) = logged_rows(&state, &campaign, LOG_ROWS_CAP)?;
        let seconds = start.elapsed().as_secs_f64();
        let reward: f64 = rows.iter().map(|r| r.reward).sum();
        println!(
            "run {run}: logged_rows {seconds:.3} s, {} rows (capped {capped}), total reward {reward}",
            rows.len()
        );
    }
    Ok(())
}
