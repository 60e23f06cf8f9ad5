//! The cost of pacing, on the flight-full world (24 x 24 x 16 x 16 versions, 40
//! segments, a 14-day flight) with a policy trained on 200,000 budgeted opportunities:
//!
//! - `decide`: the plain decision (one draw from a segment's decision distribution,
//!   with the exploration floor), the anchor;
//! - `bid+decide`: the pacer's bid (traffic count, hard limits, the expected cost, the
//!   price) and the priced decision under its gate: the price-of-money step on the
//!   decision path;
//! - `replan`: one re-solve of the price of money, off the decision path (the service
//!   runs it in its learner step every 1,000 opportunities or 60 s);
//! - the whole budgeted simulation on flight-full (impressions per second).
//!
//! After criterion, the per-call latency of `decide` and `bid+decide` over 200,000
//! calls each (p50, p99, p99.9, max), measured one call at a time, and the added p99.
//!
//! `cargo bench -p tla-sim --bench pacing`

use criterion::{Criterion, Throughput, criterion_group};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::hint::black_box;
use std::time::Instant;
use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_core::pacing::{DAY_MS, Pacer, PacingConfig, PacingMode, REPLAN_OPPORTUNITIES};
use tla_core::policy::{Policy, PricedPolicy, decide_gated};
use tla_sim::online::PacingRun;
use tla_sim::sim::{SimConfig, Truth, simulate};
use tla_sim::world::World;
use tla_sim::{AnyPolicy, PolicyChoice, build_policy};

fn flight_full() -> World {
    let path = format!(
        "{}/../../worlds/flight-full.json",
        env!("CARGO_MANIFEST_DIR")
    );
    World::from_json(&std::fs::read_to_string(path).expect("world file")).expect("valid world")
}

fn budget_run(world: &World, impressions: u64) -> PacingRun {
    let flight = world.flight.as_ref().expect("a flight");
    PacingRun {
        mode: PacingMode::Value,
        budget: flight.budget(impressions, &world.segment_probs),
        daily_cap: None,
        min_roas: None,
    }
}

/// The factorized policy after `warmup` budgeted opportunities.
fn trained(world: &World, warmup: u64) -> AnyPolicy {
    let design = world.design(
        Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
        Objective::Value,
    );
    let mut policy = build_policy(
        PolicyChoice::FactorizedTs,
        &design,
        &tla_sim::default_settings(),
        1,
    );
    let config = SimConfig {
        pacing: Some(budget_run(world, warmup)),
        ..SimConfig::new(warmup, 1)
    };
    simulate(world, &Truth::new(world), &mut policy, &config, |_| {});
    policy
}

/// A pacer that has seen a day of opportunities and their costs.
fn warmed_pacer(world: &World, policy: &AnyPolicy, rng: &mut Pcg64Mcg) -> Pacer {
    let flight = world.flight.as_ref().expect("a flight");
    let config = PacingConfig {
        mode: PacingMode::Value,
        budget: flight.budget(1_000_000, &world.segment_probs),
        daily_cap: None,
        start_ms: 0,
        end_ms: flight.length_ms(),
        min_roas: None,
        hourly_traffic: flight.hour_weights.clone().try_into().ok(),
    };
    let mut pacer = Pacer::new(config, world.segments());
    let buys = |s: usize, price: f64| 1.0 - policy.skip_probability(s, price);
    for i in 0..70_000i64 {
        let ms = i * DAY_MS / 70_000;
        let segment = rng.random_range(0..world.segments());
        if pacer.replan_due(ms) {
            pacer.replan(ms, &buys);
        }
        let bid = pacer.bid(segment, ms);
        if let Some(cost) = bid.expected_cost.or(Some(1.0)) {
            pacer.settle(0.0, segment, bid.hour, cost, ms);
        }
    }
    pacer
}

fn pacing(c: &mut Criterion) {
    let world = flight_full();
    let policy = trained(&world, 200_000);
    let segments = world.segments();
    let mut rng = Pcg64Mcg::seed_from_u64(9);
    let mut pacer = warmed_pacer(&world, &policy, &mut rng);
    let buys = |s: usize, price: f64| 1.0 - policy.skip_probability(s, price);

    let mut group = c.benchmark_group("flight-full");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide", |b| {
        b.iter(|| {
            let segment = rng.random_range(0..segments);
            black_box(policy.decide(segment, &mut rng))
        })
    });
    let mut ms = DAY_MS;
    group.bench_function("bid+decide", |b| {
        b.iter(|| {
            let segment = rng.random_range(0..segments);
            ms += 1_000;
            let bid = pacer.bid(segment, ms % (13 * DAY_MS) + DAY_MS);
            black_box(decide_gated(&policy, segment, bid.gate, &mut rng))
        })
    });
    group.bench_function("replan", |b| {
        b.iter(|| {
            ms += 1_000;
            pacer.replan(ms % (13 * DAY_MS) + DAY_MS, &buys);
            black_box(pacer.price_of_money())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    let impressions = 100_000;
    // The truth (the oracle at every flight fraction) is computed once, outside the
    // measured loop, as `tla simulate` does before it starts its clock.
    let truth = Truth::new(&world);
    group.throughput(Throughput::Elements(impressions));
    group.bench_function("flight-full budgeted 100k", |b| {
        b.iter(|| {
            let mut fresh = build_policy(
                PolicyChoice::FactorizedTs,
                &world.design(
                    Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
                    Objective::Value,
                ),
                &tla_sim::default_settings(),
                1,
            );
            let config = SimConfig {
                pacing: Some(budget_run(&world, impressions)),
                ..SimConfig::new(impressions, 1)
            };
            black_box(simulate(&world, &truth, &mut fresh, &config, |_| {}))
        })
    });
    group.finish();
}

/// p50, p99, p99.9 and max of per-call nanoseconds.
fn percentiles(mut nanos: Vec<u64>) -> [u64; 4] {
    nanos.sort_unstable();
    let at = |q: f64| nanos[((nanos.len() - 1) as f64 * q) as usize];
    [
        at(0.5),
        at(0.99),
        at(0.999),
        *nanos.last().expect("samples"),
    ]
}

/// Per-call latency, one call at a time, of the plain and the priced decision.
fn latency() {
    let world = flight_full();
    let policy = trained(&world, 200_000);
    let segments = world.segments();
    let mut rng = Pcg64Mcg::seed_from_u64(10);
    let mut pacer = warmed_pacer(&world, &policy, &mut rng);
    let calls = 200_000;
    let mut plain = Vec::with_capacity(calls);
    let mut priced = Vec::with_capacity(calls);
    let mut ms = DAY_MS;
    for _ in 0..calls {
        let segment = rng.random_range(0..segments);
        let start = Instant::now();
        black_box(policy.decide(segment, &mut rng));
        plain.push(start.elapsed().as_nanos() as u64);

        let segment = rng.random_range(0..segments);
        ms += 5_000;
        let start = Instant::now();
        let bid = pacer.bid(segment, ms);
        black_box(decide_gated(&policy, segment, bid.gate, &mut rng));
        priced.push(start.elapsed().as_nanos() as u64);
    }
    let [p50, p99, p999, max] = percentiles(plain);
    println!("latency decide:     p50 {p50} ns, p99 {p99} ns, p99.9 {p999} ns, max {max} ns");
    let [q50, q99, q999, qmax] = percentiles(priced);
    println!("latency bid+decide: p50 {q50} ns, p99 {q99} ns, p99.9 {q999} ns, max {qmax} ns");
    println!(
        "added by the price-of-money step: p50 {} ns, p99 {} ns ({calls} calls each; the re-solve, every {REPLAN_OPPORTUNITIES} opportunities or 60 s, is off the decision path: see replan)",
        q50 as i64 - p50 as i64,
        q99 as i64 - p99 as i64
    );
}

criterion_group!(benches, pacing);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    latency();
}
