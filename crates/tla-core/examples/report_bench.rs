//! Times the report of the demo-size campaign (examples/fundraising.toml) after a
//! number of impressions fed straight to the engine:
//!
//! `cargo run --release -p tla-core --example report_bench -- [IMPRESSIONS] [DRAWS]`
//!
//! Each impression is decided by the engine (factorized TS under the exploration
//! floor), learned as an impression, and converts with probability 2% (3% for the
//! first option of the first component) giving 25. Prints the time to feed, to build
//! the report, and to compute the lift from the logged rows.

use rand::{Rng, SeedableRng};
use std::time::Instant;
use tla_core::engine::{Engine, Feedback};
use tla_core::ope::LoggedRow;
use tla_core::report::{self, ReportSettings};
use tla_core::spec::CampaignSpec;

fn main() {
    let mut args = std::env::args().skip(1);
    let impressions: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let draws: usize = args.next().map_or(1000, |a| a.parse().unwrap());
    let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/fundraising.toml"))
        .unwrap()
        .validate()
        .unwrap();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let mut engine = Engine::new(&campaign, &mut rng);
    let segments = campaign.design().segments();
    let space = engine.space().clone();
    let mut rows = Vec::with_capacity(impressions as usize);
    let start = Instant::now();
    for i in 0..impressions {
        let segment = (i % segments as u64) as usize;
        let decision = engine.decide(segment, &mut rng);
        let v = decision.version;
        engine.learn(segment, v, Feedback::Impression);
        engine.learn(segment, v, Feedback::Cost { amount: 0.002 });
        let p = if space.option_of(v, 0) == 0 {
            0.03
        } else {
            0.02
        };
        let mut reward = 0.0;
        if rng.random::<f64>() < p {
            reward = 25.0;
            engine.learn(
                segment,
                v,
                Feedback::Conversion {
                    amount: Some(reward),
                },
            );
        }
        rows.push(LoggedRow {
            segment,
            action: v,
            propensity: decision.propensity,
            reward,
        });
        if i % 10_000 == 0 {
            engine.refresh_due(&mut rng, i);
        }
    }
    let feed = start.elapsed().as_secs_f64();
    let settings = ReportSettings {
        draws,
        ..ReportSettings::default()
    };
    let start = Instant::now();
    let report = report::build(&campaign, &engine, &settings, &mut rng);
    let build = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let best = report::best_versions(&engine, &mut rng);
    let first_half_best = report::best_versions_on_first_half(&campaign, &rows, &mut rng);
    let lift = report::lift(&rows, campaign.allowed_versions(), &best, &first_half_best).unwrap();
    let lift_seconds = start.elapsed().as_secs_f64();
    println!(
        "campaign: {} versions defined, {} segments; {} impressions ({} events) fed in {feed:.1} s",
        report.summary.versions_defined,
        segments,
        impressions,
        engine.events()
    );
    println!(
        "versions served: {}; (segment, version) pairs: {}",
        report.summary.versions_served, report.versions.served_pairs
    );
    println!("report build ({draws} draws): {build:.3} s");
    println!(
        "lift from {} logged rows: {lift_seconds:.3} s (realized {:.4}, even split {:?})",
        lift.rows,
        lift.realized.value,
        lift.even_split.estimate.map(|e| e.value)
    );
}
