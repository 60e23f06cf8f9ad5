//! Durable append throughput of the SQLite event log under concurrency: 16 threads,
//! each appending batches of 100 events, every append acknowledged only after its
//! group's commit is on disk (`synchronous = FULL`). Reported as events per second.
//!
//! The database is a real file in a fresh directory under the system temp dir,
//! removed at the end. It grows over the run, as a production log does.
//!
//! `cargo bench -p tla-store`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tla_store::{EventKind, EventLog, NewEvent, Store};

const THREADS: usize = 16;
const BATCHES_PER_THREAD: usize = 50;
const BATCH_SIZE: usize = 100;

/// Removes the benchmark's data directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The batches of one round: `[thread][batch][event]`, with ids unique across rounds
/// and shaped like UUIDs (36 characters), as clients send them.
fn round_batches(round: u64) -> Vec<Vec<Vec<NewEvent>>> {
    (0..THREADS)
        .map(|thread| {
            (0..BATCHES_PER_THREAD)
                .map(|batch| {
                    (0..BATCH_SIZE)
                        .map(|index| NewEvent {
                            campaign_id: "bench-campaign".to_owned(),
                            event_id: format!(
                                "{round:08x}-{thread:04x}-{batch:04x}-{index:04x}-000000000000"
                            ),
                            decision_id: format!(
                                "{round:08x}-{thread:04x}-{batch:04x}-{index:04x}-111111111111"
                            ),
                            kind: EventKind::ALL[index % 4],
                            value: if index % 4 == 2 { 25.0 } else { 0.0 },
                            amount_known: true,
                            segment: (index % 8) as u32,
                            version: (index * 7_919) as u64,
                            decided_at_ms: 1_700_000_000_000,
                            at_ms: 1_700_000_000_100,
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn durable_append(criterion: &mut Criterion) {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "tla-store-bench-append-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )));
    let store = Store::open(&dir.0).unwrap();
    let log = store.event_log();
    let mut round = 0u64;

    let mut group = criterion.benchmark_group("event_log");
    group.throughput(Throughput::Elements(
        (THREADS * BATCHES_PER_THREAD * BATCH_SIZE) as u64,
    ));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("durable_append_16_threads_batches_of_100", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                round += 1;
                let batches = round_batches(round);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for thread_batches in &batches {
                        let log = &log;
                        scope.spawn(move || {
                            for batch in thread_batches {
                                let outcomes = log.append(batch).unwrap();
                                assert_eq!(outcomes.len(), batch.len());
                            }
                        });
                    }
                });
                elapsed += start.elapsed();
            }
            elapsed
        });
    });
    group.finish();
    assert_eq!(
        log.last_seq().unwrap(),
        round * (THREADS * BATCHES_PER_THREAD * BATCH_SIZE) as u64
    );
}

criterion_group!(benches, durable_append);
criterion_main!(benches);
