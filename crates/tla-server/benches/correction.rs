//! Retraction of one event in a campaign of 1,000,000 events: the time to record it and
//! rebuild the campaign's model, and the check that the rebuilt model equals a replay
//! of the whole log from the prior with the retraction (engine snapshot bytes).
//!
//! The log is built as a live server builds it: events appended in batches through the
//! SQLite event log, the learner applying them, a snapshot every 200,000 events (the
//! default; the store keeps the newest 3). Two retractions are measured:
//!
//! - a recent event (seq 990,000): the snapshot covering it is deleted and the rebuild
//!   starts from the nearest earlier one (covers 800,000);
//! - an early event (seq 100): every snapshot covers it, the rebuild starts from the
//!   prior and replays the whole log.
//!
//! `cargo bench -p tla-server --bench correction` (a release build). The data directory
//! is created under the system temp dir and removed at the end (about 250 MB).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tla_core::spec::CampaignSpec;
use tla_server::replay::{ReplayOptions, replay};
use tla_server::wire::{CorrectionActionName, CorrectionRequest};
use tla_server::{AppState, ManualClock, ServerConfig, correction, learner};
use tla_store::{CampaignRow, CampaignStatus, EventKind, EventLog, NewEvent, Store};

const EVENTS: u64 = 1_000_000;
const BATCH: u64 = 10_000;
/// Events appended between two learner steps.
const STEP_EVERY: u64 = 100_000;
const START_MS: i64 = 1_790_000_000_000;

/// Removes the benchmark's data directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Event `n` of the campaign: decisions cycle over the allowed versions and the
/// segments; per decision an impression, every 10th a click, every 20th a conversion.
fn event(n: u64, allowed: &[u64]) -> NewEvent {
    let decision = n / 2;
    let kind = match n % 2 {
        0 => EventKind::Impression,
        _ if decision % 10 == 0 => EventKind::Conversion,
        _ => EventKind::Click,
    };
    let value = if kind == EventKind::Conversion {
        10.0 + (decision % 41) as f64
    } else {
        0.0
    };
    NewEvent {
        campaign_id: "c_bench".into(),
        event_id: format!("e{n}"),
        decision_id: format!("d{decision}"),
        kind,
        value,
        segment: (decision % 3) as u32,
        version: allowed[(decision as usize * 7) % allowed.len()],
        decided_at_ms: START_MS,
        at_ms: START_MS + 1_000,
    }
}

fn retract(state: &AppState, event_id: &str) -> (f64, tla_server::wire::CorrectionOutcome) {
    let request = CorrectionRequest {
        event_id: event_id.into(),
        action: CorrectionActionName::Retract,
        value: None,
        reason: "benchmark".into(),
    };
    let started = Instant::now();
    let outcome = correction::correct(state, "c_bench", &request, "0123456789ab").unwrap();
    (started.elapsed().as_secs_f64(), outcome)
}

/// A replay of the whole log from the prior (corrections applied): its time and the
/// campaign's model bytes.
fn full_replay(store: &Store) -> (f64, Vec<u8>) {
    let started = Instant::now();
    let replayed = replay(
        store,
        &store.event_log(),
        ReplayOptions {
            seed: 1,
            from_start: true,
            now_ms: START_MS,
        },
    )
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let bytes = replayed
        .campaigns
        .get("c_bench")
        .unwrap()
        .engine()
        .snapshot();
    (seconds, bytes)
}

fn main() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("tla-correction-bench-{}", std::process::id())));
    let spec_text = include_str!("../../../examples/small.toml");
    let campaign = CampaignSpec::from_toml_str(spec_text)
        .and_then(|spec| spec.validate())
        .unwrap();
    let allowed: Vec<u64> = (0..campaign.total_versions())
        .filter(|&v| campaign.is_allowed(v))
        .collect();
    let store = Store::open(&dir.0).unwrap();
    store
        .insert_campaign(&CampaignRow {
            id: "c_bench".into(),
            name: campaign.spec().name.clone(),
            spec_json: serde_json::to_string(campaign.spec()).unwrap(),
            status: CampaignStatus::Active,
            created_at_ms: START_MS,
        })
        .unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let state = AppState::open(
        store.clone(),
        Arc::new(store.event_log()),
        clock,
        b"bench secret",
        ServerConfig::default(),
    )
    .unwrap();
    let log = store.event_log();
    let started = Instant::now();
    let mut n = 0;
    while n < EVENTS {
        let batch: Vec<NewEvent> = (n..n + BATCH).map(|i| event(i, &allowed)).collect();
        log.append(&batch).unwrap();
        n += BATCH;
        if n % STEP_EVERY == 0 {
            learner::step(&state, false);
        }
    }
    learner::step(&state, true);
    println!(
        "built: {} events appended and learned, {} snapshots kept, in {:.1} s",
        log.last_seq().unwrap(),
        tla_store::SNAPSHOTS_KEPT,
        started.elapsed().as_secs_f64()
    );

    for (label, seq) in [("recent", 990_000u64), ("early", 100)] {
        // Event ids are e{n} for seq n + 1.
        let event_id = format!("e{}", seq - 1);
        let (seconds, outcome) = retract(&state, &event_id);
        let rebuild = outcome.rebuild.expect("the learner had applied the event");
        let rebuilt = state.campaign("c_bench").unwrap().engine().snapshot();
        let (replay_seconds, replayed) = full_replay(&store);
        let from = match rebuild.from_seq {
            0 => "from the prior".to_owned(),
            covers => format!("from the snapshot covering seq {covers}"),
        };
        println!(
            "{label} event (seq {seq}): retraction recorded and model rebuilt in {:.3} s \
             ({from}, {} events replayed up to seq {}); \
             full replay from the prior {:.3} s; models equal: {}",
            seconds,
            rebuild.events_replayed,
            rebuild.to_seq,
            replay_seconds,
            rebuilt == replayed
        );
        assert_eq!(
            rebuilt, replayed,
            "the rebuilt model differs from the replay"
        );
        // Snapshot the rebuilt model, as the next learner round would.
        learner::step(&state, true);
    }
}
