//! Where the oracle target's value sits in an adaptive log, by importance weight.
//!
//! For each seed, factorized Thompson sampling (with its exploration floor) logs
//! impressions against a world, exactly as `tla evaluate --logging factorized-ts` does.
//! Before each decision the logging propensity `q_i` of the oracle's version in the
//! impression's segment is recorded; the oracle target's weight on that row, if the
//! logger picks that version, is `1 / q_i`. Grouping rows by that weight:
//!
//! - `truth share`: the part of the oracle's value the rows of the group carry in
//!   expectation, `sum EV(s_i, oracle) / sum over all rows`: each row's expected IPS
//!   term is `EV(s_i, oracle)` whatever `q_i` is;
//! - `exp. donors`: the expected number of rows of the group where the logger picked the
//!   oracle's version and a donation followed, `sum q_i P(conversion | s_i, oracle)`;
//! - `seen donors` and `IPS part`: what the log actually holds.
//!
//! ```text
//! cargo run --release -p tla-sim --example ope_support -- worlds/small.json 20 200000
//! ```

use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_core::policy::Policy;
use tla_sim::online::{self, Observer, RunConfig, Streams};
use tla_sim::ope::RowLog;
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy};

/// Records, before each decision, the propensity the logging policy gives the oracle's
/// version of the impression's segment.
struct OraclePropensity<'a> {
    oracle: &'a [(u64, f64)],
    propensities: Vec<f64>,
}

impl<P: Policy> Observer<P> for OraclePropensity<'_> {
    fn before_decision(&mut self, policy: &P, segment: usize) {
        self.propensities
            .push(policy.propensity(segment, self.oracle[segment].0));
    }
}

/// Upper ends of the weight groups (the last is open).
const EDGES: [f64; 4] = [10.0, 100.0, 1000.0, f64::INFINITY];
const LABELS: [&str; 4] = ["w < 10", "10 <= w < 100", "100 <= w < 1000", "w >= 1000"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("worlds/small.json", String::as_str);
    let seeds: u64 = args.get(2).map_or(20, |s| s.parse().expect("seeds"));
    let impressions: u64 = args
        .get(3)
        .map_or(200_000, |s| s.parse().expect("impressions"));
    let text = std::fs::read_to_string(path).expect("read the world file");
    let world = World::from_json(&text).expect("a valid world");
    let oracle = world.oracle();
    let mut options = vec![0u32; world.space.components()];
    let conversion: Vec<f64> = oracle
        .iter()
        .enumerate()
        .map(|(s, &(version, _))| {
            world.space.decode_into(version, &mut options);
            world.conversion_probability(s, &options)
        })
        .collect();
    let design = world.design(
        Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
        Objective::Value,
    );
    let settings = tla_sim::default_settings();
    let group = |q: f64| EDGES.iter().position(|&edge| 1.0 / q < edge).unwrap_or(3);
    let mut totals = [[0.0f64; 4]; 4];
    println!(
        "{:>5} {:>8} {:>14} {:>14} {:>11} {:>11}",
        "seed", "IPS", "share w>=1000", "exp. donors", "seen donors", "IPS part"
    );
    for seed in 1..=seeds {
        let mut policy = build_policy(PolicyChoice::FactorizedTs, &design, &settings, seed);
        let mut log = RowLog::with_capacity(impressions);
        let mut inspect = OraclePropensity {
            oracle: &oracle,
            propensities: Vec::with_capacity(impressions as usize),
        };
        // The streams and the loop of `log_impressions`, with a second observer.
        online::run(
            &world,
            &mut Streams::new(seed, &world.segment_probs),
            &mut policy,
            &RunConfig::new(impressions),
            (&mut log, &mut inspect),
        );
        let (rows, oracle_propensity) = (log.rows, inspect.propensities);
        let n = rows.len() as f64;
        // Per group: truth carried, expected donors, seen donors, IPS part.
        let mut g = [[0.0f64; 4]; 4];
        let mut truth = 0.0;
        for (row, &q) in rows.iter().zip(&oracle_propensity) {
            let k = group(q);
            let (version, value) = oracle[row.segment];
            truth += value;
            g[0][k] += value;
            g[1][k] += q * conversion[row.segment];
            if row.action == version {
                debug_assert!((row.propensity - q).abs() < 1e-15);
                if row.reward > 0.0 {
                    g[2][k] += 1.0;
                }
                g[3][k] += row.reward / q / n;
            }
        }
        for k in 0..4 {
            g[0][k] /= truth;
            for m in 0..4 {
                totals[m][k] += g[m][k];
            }
        }
        println!(
            "{seed:>5} {:>8.4} {:>13.1}% {:>14.3} {:>11} {:>11.4}",
            g[3].iter().sum::<f64>(),
            100.0 * g[0][3],
            g[1][3],
            g[2][3],
            g[3][3]
        );
    }
    let s = seeds as f64;
    let truth: f64 = world
        .segment_probs
        .iter()
        .zip(&oracle)
        .map(|(p, (_, v))| p * v)
        .sum();
    println!("\nmeans over {seeds} seeds (oracle value {truth:.4} per impression):");
    println!(
        "{:<16} {:>12} {:>14} {:>12} {:>11} {:>14}",
        "weight group", "truth share", "E[IPS part]", "exp. donors", "seen donors", "mean IPS part"
    );
    for k in 0..4 {
        println!(
            "{:<16} {:>11.1}% {:>14.4} {:>12.3} {:>11.2} {:>14.4}",
            LABELS[k],
            100.0 * totals[0][k] / s,
            truth * totals[0][k] / s,
            totals[1][k] / s,
            totals[2][k] / s,
            totals[3][k] / s
        );
    }
}
