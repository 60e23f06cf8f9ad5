//! The property of corrections: whatever the events, the learner steps, the snapshots
//! and the corrections (retractions and new values), in any order, the campaign's model
//! is the model of the event sequence without the retracted events and with the new
//! values, learned from the prior; and a restart over the same store (latest snapshot,
//! corrections, the events after it) gives it too.

use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::Arc;
use tla_core::engine::Engine;
use tla_core::spec::CampaignSpec;
use tla_server::wire::{CorrectionActionName, CorrectionRequest};
use tla_server::{AppState, ManualClock, ServerConfig, correction, event, learner};
use tla_store::{EventKind, EventLog, NewEvent, Store};

const SPEC: &str = include_str!("../../../examples/small.toml");

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Op {
    /// Send an event: its kind (index into `EventKind::ALL`), segment, version (index
    /// among the allowed ones) and value.
    Send {
        kind: usize,
        segment: u32,
        version: usize,
        value: u8,
    },
    /// A learner step, with a snapshot or not.
    Step { snapshot: bool },
    /// Retract the event sent `index`-th (modulo the number sent).
    Retract { index: usize },
    /// Give the event sent `index`-th a new value.
    Correct { index: usize, value: u8 },
    /// Open a new state over the same store (a restart).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..3u32, 0..16usize, 0..50u8).prop_map(|(kind, segment, version, value)| {
            Op::Send { kind, segment, version, value }
        }),
        2 => any::<bool>().prop_map(|snapshot| Op::Step { snapshot }),
        1 => any::<usize>().prop_map(|index| Op::Retract { index }),
        1 => (any::<usize>(), 0..50u8).prop_map(|(index, value)| Op::Correct { index, value }),
        1 => Just(Op::Restart),
    ]
}

fn open(store: &Store) -> AppState {
    AppState::open(
        store.clone(),
        Arc::new(store.event_log()),
        Arc::new(ManualClock::new(1_790_000_000_000)),
        b"secret",
        ServerConfig::default(),
    )
    .unwrap()
}

/// The model of the campaign's events as corrected, learned from the prior, built
/// here from the history alone: `events[i]` is `(event, retracted, value now)`.
fn expected_model(store: &Store, events: &[(NewEvent, bool, f64)]) -> Vec<u8> {
    let campaign = CampaignSpec::from_toml_str(SPEC)
        .and_then(|spec| spec.validate())
        .unwrap();
    let mut engine = Engine::new(&campaign, &mut rand_pcg::Pcg64Mcg::seed_from_u64(9));
    let stored = store.event_log().read_after(0, usize::MAX).unwrap();
    assert_eq!(stored.len(), events.len());
    for (mut stored, (_, retracted, value)) in stored.into_iter().zip(events) {
        if *retracted {
            continue;
        }
        stored.value = *value;
        event::learn(&mut engine, &stored).unwrap();
    }
    engine.snapshot()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_model_is_the_replay_of_the_log_without_retracted_events(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let store = Store::open_in_memory().unwrap();
        let mut state = open(&store);
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .and_then(|spec| spec.validate())
            .unwrap();
        let allowed: Vec<u64> = (0..campaign.total_versions())
            .filter(|&v| campaign.is_allowed(v))
            .collect();
        let id = state.create_campaign(campaign, "c".into()).unwrap().id.clone();
        // Every event sent, with whether it is retracted and its value now.
        let mut events: Vec<(NewEvent, bool, f64)> = Vec::new();
        for op in ops {
            match op {
                Op::Send { kind, segment, version, value } => {
                    let kind = EventKind::ALL[kind];
                    let value = match kind {
                        EventKind::Conversion | EventKind::Cost => f64::from(value),
                        EventKind::Impression | EventKind::Click => 0.0,
                    };
                    let new = NewEvent {
                        campaign_id: id.clone(),
                        event_id: format!("e{}", events.len()),
                        decision_id: format!("d{}", events.len()),
                        kind,
                        value,
                        segment,
                        version: allowed[version % allowed.len()],
                        decided_at_ms: 0,
                        at_ms: 0,
                    };
                    state.log().append(std::slice::from_ref(&new)).unwrap();
                    events.push((new, false, value));
                }
                Op::Step { snapshot } => learner::step(&state, snapshot),
                Op::Retract { index } | Op::Correct { index, .. } if events.is_empty() => {
                    let _ = index;
                }
                Op::Retract { index } => {
                    let index = index % events.len();
                    let request = CorrectionRequest {
                        event_id: events[index].0.event_id.clone(),
                        action: CorrectionActionName::Retract,
                        value: None,
                        reason: "test".into(),
                    };
                    let outcome = correction::correct(&state, &id, &request, "k").unwrap();
                    prop_assert_eq!(outcome.repeated, events[index].1);
                    events[index].1 = true;
                }
                Op::Correct { index, value } => {
                    let index = index % events.len();
                    let request = CorrectionRequest {
                        event_id: events[index].0.event_id.clone(),
                        action: CorrectionActionName::Correct,
                        value: Some(f64::from(value)),
                        reason: "test".into(),
                    };
                    let outcome = correction::correct(&state, &id, &request, "k");
                    let (new, retracted, _) = &events[index];
                    let correctable = matches!(new.kind, EventKind::Conversion | EventKind::Cost);
                    prop_assert_eq!(outcome.is_ok(), correctable && !retracted);
                    if outcome.is_ok() {
                        events[index].2 = f64::from(value);
                    }
                }
                Op::Restart => {
                    learner::step(&state, false);
                    drop(state);
                    state = open(&store);
                }
            }
        }
        learner::step(&state, false);
        let expected = expected_model(&store, &events);
        prop_assert_eq!(&state.campaign(&id).unwrap().engine().snapshot(), &expected);
        // A restart over the same store, and a replay from the start, agree.
        drop(state);
        let state = open(&store);
        prop_assert_eq!(&state.campaign(&id).unwrap().engine().snapshot(), &expected);
        let replayed = tla_server::replay::replay(
            &store,
            &store.event_log(),
            tla_server::replay::ReplayOptions { seed: 3, from_start: true, now_ms: 0 },
        )
        .unwrap();
        prop_assert_eq!(&replayed.campaigns.get(&id).unwrap().engine().snapshot(), &expected);
    }
}
