//! Engine benchmarks on the full world (24 x 24 x 16 x 16 versions, 40 segments):
//! decide (one draw from a segment's decision distribution, with the exploration
//! floor), update (learn one event), refresh (rebuild one segment's distribution from
//! 64 Thompson draws), and the whole simulation loop on the small and full worlds.
//!
//! `cargo bench -p tla-sim --bench engine`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::hint::black_box;
use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_core::policy::{Outcome, Policy};
use tla_sim::sim::{SimConfig, Truth, simulate};
use tla_sim::world::World;
use tla_sim::{AnyPolicy, PolicyChoice, build_policy};

fn world(name: &str) -> World {
    let path = format!("{}/../../worlds/{name}.json", env!("CARGO_MANIFEST_DIR"));
    World::from_json(&std::fs::read_to_string(path).expect("world file")).expect("valid world")
}

/// A factorized policy on `world` after `warmup` simulated impressions.
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
    if warmup > 0 {
        let truth = Truth::new(world);
        simulate(
            world,
            &truth,
            &mut policy,
            &SimConfig::new(warmup, 1),
            |_| {},
        );
    }
    policy
}

fn engine(c: &mut Criterion) {
    let full = world("full");
    let mut policy = trained(&full, 200_000);
    let segments = full.segments();
    let mut rng = Pcg64Mcg::seed_from_u64(9);

    let mut group = c.benchmark_group("full");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide", |b| {
        b.iter(|| {
            let segment = rng.random_range(0..segments);
            black_box(policy.decide(segment, &mut rng))
        })
    });
    group.bench_function("update", |b| {
        b.iter_batched(
            || {
                let segment = rng.random_range(0..segments);
                let version = full.space.sample_uniform(&mut rng);
                let converted = rng.random::<f64>() < 0.03;
                Outcome {
                    segment,
                    version,
                    clicked: converted,
                    converted,
                    value: if converted { 25.0 } else { 0.0 },
                }
            },
            |outcome| policy.observe(&outcome),
            BatchSize::SmallInput,
        )
    });
    let floor = policy.factorized_mut().expect("built as factorized");
    group.bench_function("refresh_one_segment_64_draws", |b| {
        b.iter(|| {
            let segment = rng.random_range(0..segments);
            floor.base_mut().refresh_segment(segment, &mut rng, None)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    for (name, impressions) in [("small", 200_000u64), ("full", 200_000)] {
        let world = world(name);
        let truth = Truth::new(&world);
        group.throughput(Throughput::Elements(impressions));
        group.bench_function(format!("{name}_{impressions}_impressions"), |b| {
            b.iter_batched(
                || trained(&world, 0),
                |mut policy| {
                    simulate(
                        &world,
                        &truth,
                        &mut policy,
                        &SimConfig::new(impressions, 3),
                        |_| {},
                    )
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
