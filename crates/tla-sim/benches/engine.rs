//! Engine benchmarks on the full world (24 x 24 x 16 x 16 versions, 40 segments):
//! decide (one draw from a segment's decision distribution, with the exploration
//! floor), update (learn one event), refresh (rebuild one segment's distribution from
//! 64 Thompson draws), and the whole simulation loop on the small and full worlds.
//!
//! The `forgetting` group runs decide, update and refresh on the full world once per
//! forgetting setting (`off`, a 4-day half-life, `auto`), each learning events an
//! hour apart, so their costs compare in one run.
//!
//! `cargo bench -p tla-sim --bench engine` (`-- forgetting` for that group alone)

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::hint::black_box;
use tla_core::design::{DEFAULT_EXACT_LIMIT, Interactions, Objective};
use tla_core::model::forgetting::Forgetting;
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
    trained_forgetting(world, warmup, Forgetting::default())
}

/// [`trained`] with a forgetting setting.
fn trained_forgetting(world: &World, warmup: u64, forgetting: Forgetting) -> AnyPolicy {
    let mut settings = tla_sim::default_settings();
    settings.factorized.forgetting = forgetting;
    let design = world.design(
        Interactions::auto(&world.space, DEFAULT_EXACT_LIMIT),
        Objective::Value,
    );
    let mut policy = build_policy(PolicyChoice::FactorizedTs, &design, &settings, 1);
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

/// Decide, update and refresh on the full world under each forgetting setting.
fn forgetting(c: &mut Criterion) {
    let full = world("full");
    let segments = full.segments();
    let mut group = c.benchmark_group("forgetting");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(std::time::Duration::from_secs(3));
    for (name, setting) in [
        ("off", Forgetting::Off),
        ("4d", Forgetting::HalfLife(4 * 86_400_000)),
        ("auto", Forgetting::Auto),
    ] {
        let mut policy = trained_forgetting(&full, 50_000, setting);
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        // An hour between events, so every touched weight forgets a little.
        let mut at_millis = 1_000_000_000u64;
        group.bench_function(format!("update_{name}"), |b| {
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
                |outcome| {
                    at_millis += 3_600_000;
                    policy.observe_at(&outcome, at_millis)
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("decide_{name}"), |b| {
            b.iter(|| {
                let segment = rng.random_range(0..segments);
                black_box(policy.decide(segment, &mut rng))
            })
        });
        let floor = policy.factorized_mut().expect("built as factorized");
        group.bench_function(format!("refresh_one_segment_64_draws_{name}"), |b| {
            b.iter(|| {
                let segment = rng.random_range(0..segments);
                at_millis += 60_000;
                floor
                    .base_mut()
                    .refresh_segment(segment, &mut rng, Some(at_millis))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, engine, forgetting);
criterion_main!(benches);
