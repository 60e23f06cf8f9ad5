//! Times `tla_server::report::logged_rows` (a campaign's decisions joined with its
//! conversions) on a data directory, apart from rebuilding the engines:
//! `cargo run --release -p tla-cli --example time_logged_rows -- DIR CAMPAIGN_ID [RUNS]`.
//! Prints the time to open the store (read-only) and to rebuild the campaigns, then each run's time, rows and total reward, and the time of its
//! conversion read alone (`Store::value_by_decision`).

use std::time::Instant;

use tla_server::replay::{ReplayOptions, replay};
use tla_server::report::{LOG_ROWS_CAP, logged_rows};
use tla_server::{Clock, ServerConfig, SystemClock};
use tla_store::{EventKind, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(campaign)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: time_logged_rows DIR CAMPAIGN_ID [RUNS]");
    };
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let start = Instant::now();
    let store = Store::open_read_only(std::path::Path::new(&dir))?;
    println!("open store: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let options = ReplayOptions {
        seed: ServerConfig::default().seed,
        from_start: false,
        now_ms: SystemClock.now_ms(),
    };
    let replayed = replay(&store, &store.event_log(), options)?;
    println!(
        "rebuild {} campaigns: {:.3} s",
        replayed.campaigns.all().len(),
        start.elapsed().as_secs_f64()
    );
    for run in 1..=runs {
        let start = Instant::now();
        let (rows, capped) = logged_rows(&store, &campaign, LOG_ROWS_CAP)?;
        let seconds = start.elapsed().as_secs_f64();
        let reward: f64 = rows.iter().map(|r| r.reward).sum();
        let start = Instant::now();
        let rewards = store.value_by_decision(&campaign, EventKind::Conversion)?;
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
