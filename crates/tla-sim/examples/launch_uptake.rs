//! How fast an option launched mid-flight gets traffic.
//!
//! Runs the factorized policy with the settings of `tla simulate` on a world whose
//! options launch during its flight, and prints, for each launched option, the share of
//! impressions holding it in consecutive windows after its launch (each window 1% of
//! the run), beside the share of traffic whose best version (the oracle's, shortly
//! after the launch) holds it and the share an even split would give it.
//!
//! ```text
//! cargo run --release -p tla-sim --example launch_uptake -- worlds/flight-small.json 200000 7
//! ```

use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_sim::online::{self, Flow, Impression, Observer, RunConfig, Streams};
use tla_sim::world::World;
use tla_sim::{PolicyChoice, build_policy};

/// Windows printed after each launch.
const WINDOWS: usize = 10;

/// One launched option's record: the impression at its launch, and per window after it
/// the impressions served and those holding the option.
type Record = (Option<u64>, Vec<(u64, u64)>);

/// Per launched option, impressions holding it in each window after its launch.
struct Uptake {
    /// (component, option, launch fraction).
    launched: Vec<(usize, u32, f64)>,
    /// Impressions per window.
    window: u64,
    /// Per launched option: the impression index at its launch, and per window the
    /// impressions served and those holding it.
    seen: Vec<Record>,
    options: Vec<u32>,
    space: tla_core::space::VersionSpace,
}

impl<L> Observer<L> for Uptake {
    fn impression(&mut self, impression: &Impression) -> Flow {
        let f = impression.flight_fraction.unwrap_or(0.0);
        let served = impression.moment.served;
        self.space
            .decode_into(impression.decision.version, &mut self.options);
        for (i, &(k, o, at)) in self.launched.iter().enumerate() {
            if f < at {
                continue;
            }
            let (start, windows) = &mut self.seen[i];
            let start = *start.get_or_insert(served);
            let w = ((served - start) / self.window) as usize;
            if w < WINDOWS {
                windows[w].0 += 1;
                windows[w].1 += u64::from(self.options[k] == o);
            }
        }
        Flow::Continue
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "worlds/flight-small.json".into());
    let impressions: u64 = args
        .next()
        .map_or(200_000, |n| n.parse().expect("impressions"));
    let seed: u64 = args.next().map_or(7, |n| n.parse().expect("seed"));
    let text = std::fs::read_to_string(&path).expect("a world file");
    let world = World::from_json(&text).expect("a valid world");
    let flight = world.flight.clone().expect("a world with a flight");
    let launched: Vec<(usize, u32, f64)> = flight
        .launch
        .iter()
        .enumerate()
        .flat_map(|(k, options)| {
            options
                .iter()
                .enumerate()
                .filter(|(_, at)| **at > 0.0)
                .map(move |(o, &at)| (k, o as u32, at))
        })
        .collect();
    let design = world.design(
        Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
        Objective::Value,
    );
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        seed,
    );
    let mut uptake = Uptake {
        seen: vec![(None, vec![(0, 0); WINDOWS]); launched.len()],
        launched: launched.clone(),
        window: (impressions / 100).max(1),
        options: vec![0; world.space.components()],
        space: world.space.clone(),
    };
    online::run(
        &world,
        &mut Streams::new(seed, &world.segment_probs),
        &mut policy,
        &RunConfig::new(impressions),
        &mut uptake,
    );
    let mut options = vec![0u32; world.space.components()];
    println!(
        "{}: {impressions} impressions, seed {seed}, windows of {} impressions after each launch",
        world.name, uptake.window
    );
    for (i, &(k, o, at)) in launched.iter().enumerate() {
        // The traffic whose best version holds the option, a little after its launch.
        let f = (at + 0.02).min(1.0);
        let mut oracle_share = 0.0;
        for (segment, &p) in world.segment_probs.iter().enumerate() {
            let mut best = (f64::NEG_INFINITY, false);
            for version in 0..world.space.total() {
                world.space.decode_into(version, &mut options);
                if !world.space.is_allowed(version) || !world.available_at(&options, f) {
                    continue;
                }
                let value = world.expected_value_at(segment, &options, f);
                if value > best.0 {
                    best = (value, options[k] == o);
                }
            }
            if best.1 {
                oracle_share += p;
            }
        }
        let shares: Vec<String> = uptake.seen[i]
            .1
            .iter()
            .map(|&(n, hit)| format!("{:.1}", 100.0 * hit as f64 / n.max(1) as f64))
            .collect();
        println!(
            "{} option {o} (launch at {at}): oracle's share {:.0}%, even split {:.1}%, served % per window: {}",
            world.component_names[k],
            100.0 * oracle_share,
            100.0 / f64::from(world.space.option_count(k)),
            shares.join(" ")
        );
    }
}
