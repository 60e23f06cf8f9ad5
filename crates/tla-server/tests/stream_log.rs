//! `JetStreamEventLog` against a real single-node NATS server with JetStream: the same
//! outcomes as the SQLite log for appends (duplicates and conflicts, within a batch and
//! across batches), corrections decided in stream order, a second server on the same
//! stream seeing the same log, and the refusals at open (another secret, a short one).
//! nats-server comes from scripts/nats-deps.sh; without it the test is skipped with a
//! message, unless `CI` is set. The server it starts is killed by pid when it ends.

#![cfg(unix)]

mod support;

use support::nats::{StreamFixture, stream_fixture};
use tla_server::stream_log::{JetStreamEventLog, StreamOpenError};
use tla_store::{
    AppendOutcome, CorrectionAction, CorrectionOutcome, EventKind, EventLog, NewCorrection,
    NewEvent,
};

const SECRET: &[u8] = b"stream-log-test-secret-0123456789";

fn event(id: &str, value: f64) -> NewEvent {
    NewEvent {
        campaign_id: "c_000000000001".into(),
        event_id: id.into(),
        decision_id: format!("d-{id}"),
        kind: EventKind::Conversion,
        value,
        amount_known: true,
        segment: 0,
        version: 3,
        decided_at_ms: 1_000,
        at_ms: 2_000,
    }
}

fn correction(id: &str, action: CorrectionAction) -> NewCorrection {
    NewCorrection {
        campaign_id: "c_000000000001".into(),
        event_id: id.into(),
        action,
        reason: "test".into(),
        key_id: "k".into(),
        at_ms: 3_000,
    }
}

#[test]
fn a_stream_log_answers_as_the_sqlite_log_and_two_servers_see_the_same_log() {
    let Some(fixture) = stream_fixture("stream-log", "tla_test") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let open = |secret: &[u8]| {
        JetStreamEventLog::open(
            settings.clone(),
            secret,
            runtime.handle().clone(),
            tla_store::Store::open_in_memory().unwrap(),
        )
    };
    let log = open(SECRET).expect("the stream opens");

    // One batch: new, new, an exact repeat, another content under a stored id.
    let outcomes = log
        .append(&[
            event("e1", 5.0),
            event("e2", 1.0),
            event("e1", 5.0),
            event("e1", 6.0),
        ])
        .unwrap();
    let (s1, s2) = (outcomes[0].seq(), outcomes[1].seq());
    assert!(
        s1 >= 2 && s2 > s1,
        "the genesis is sequence 1: {outcomes:?}"
    );
    assert_eq!(
        outcomes,
        [
            AppendOutcome::Appended { seq: s1 },
            AppendOutcome::Appended { seq: s2 },
            AppendOutcome::Duplicate { seq: s1 },
            AppendOutcome::Conflict { seq: s1 },
        ]
    );
    assert_eq!(
        log.append(&[event("e2", 1.0)]).unwrap(),
        [AppendOutcome::Duplicate { seq: s2 }]
    );
    let mut bad = event("e3", f64::NAN);
    bad.value = f64::NAN;
    assert!(log.append(&[event("e4", 1.0), bad]).is_err());
    let read: Vec<(u64, String)> = log
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.event_id))
        .collect();
    assert_eq!(read, [(s1, "e1".to_string()), (s2, "e2".to_string())]);
    assert_eq!(log.last_seq().unwrap(), s2);
    assert_eq!(log.read_after(s1, 10).unwrap().len(), 1);

    // Corrections, decided in stream order.
    let Ok(CorrectionOutcome::Recorded(first)) =
        log.append_correction(&correction("e1", CorrectionAction::Correct { value: 3.0 }))
    else {
        panic!("the correction is recorded");
    };
    assert_eq!(
        (first.id, first.old_value, first.event_seq),
        (1, Some(5.0), s1)
    );
    assert!(matches!(
        log.append_correction(&correction("e1", CorrectionAction::Retract)),
        Ok(CorrectionOutcome::Recorded(c)) if c.old_value == Some(3.0)
    ));
    assert!(matches!(
        log.append_correction(&correction("e1", CorrectionAction::Retract)),
        Ok(CorrectionOutcome::AlreadyRetracted(c)) if c.id == 2
    ));
    assert_eq!(
        log.append_correction(&correction("nope", CorrectionAction::Retract))
            .unwrap(),
        CorrectionOutcome::UnknownEvent
    );

    // A second server on the stream sees the same log; the stream is kept across opens.
    let other = open(SECRET).expect("a second server opens the stream");
    assert_eq!(
        other.read_after(0, 10).unwrap(),
        log.read_after(0, 10).unwrap()
    );
    assert_eq!(
        other.corrections("c_000000000001").unwrap(),
        log.corrections("c_000000000001").unwrap()
    );
    assert_eq!(
        other.append(&[event("e1", 5.0)]).unwrap(),
        [AppendOutcome::Duplicate { seq: s1 }]
    );
    let appended = other.append(&[event("e5", 2.0)]).unwrap()[0];
    assert!(matches!(appended, AppendOutcome::Appended { .. }));
    assert_eq!(
        log.find_event("c_000000000001", "e5")
            .unwrap()
            .map(|e| e.seq),
        Some(appended.seq())
    );
    let health = log.health(0);
    assert!(health.connected && !health.stale, "{health:?}");
    assert_eq!(health.replicas, 1);
    assert_eq!(health.lag, 0, "{health:?}");
    assert_eq!(health.unapplied_events, 3, "{health:?}");

    // Refusals at open.
    let refused = open(b"another-secret-0123456789").unwrap_err();
    assert!(
        matches!(refused, StreamOpenError::SecretMismatch(_)),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("another decision-id secret"),
        "{refused}"
    );
    let refused = open(b"short").unwrap_err();
    assert!(refused.to_string().contains("TLA_SECRET"), "{refused}");
}

#[test]
fn a_restart_follows_the_stream_after_its_mirror_and_a_purge_after_it_is_refused() {
    let Some(fixture) = stream_fixture("stream-log", "tla_restart") else {
        return;
    };
    let StreamFixture {
        runtime,
        settings,
        port,
        ..
    } = &fixture;
    let port = *port;
    let data =
        std::env::temp_dir().join(format!("tla-stream-mirror-{}-{port}", std::process::id()));
    let open = |dir: &std::path::Path| {
        let store = tla_store::Store::open(dir).expect("the data directory opens");
        JetStreamEventLog::open(settings.clone(), SECRET, runtime.handle().clone(), store)
    };
    let first = open(&data).expect("the stream opens");
    first.append(&[event("e1", 1.0), event("e2", 2.0)]).unwrap();
    assert!(matches!(
        first.append_correction(&correction("e1", CorrectionAction::Retract)),
        Ok(CorrectionOutcome::Recorded(_))
    ));
    let before = first.read_after(0, 10).unwrap();
    let mirrored = first.health(0).mirrored_seq;
    drop(first);

    // Another server appends while this one is down; the restart reads its mirror and
    // only the stream after it.
    let other_dir = data.join("other");
    let other = open(&other_dir).expect("another server opens");
    other.append(&[event("e3", 3.0), event("e1", 1.0)]).unwrap();
    let again = open(&data).expect("the restart opens");
    let health = again.health(0);
    assert_eq!(
        health.mirrored_seq,
        other.health(0).mirrored_seq,
        "{health:?}"
    );
    assert!(health.mirrored_seq > mirrored);
    let read = again.read_after(0, 10).unwrap();
    assert_eq!(read[..2], before[..]);
    assert_eq!(read.len(), 3, "{read:?}");
    assert_eq!(
        again.corrections("c_000000000001").unwrap(),
        other.corrections("c_000000000001").unwrap()
    );
    assert_eq!(again.corrections("c_000000000001").unwrap().len(), 1);
    assert_eq!(
        health.repeats_skipped, 0,
        "the stream absorbed the repeat: {health:?}"
    );
    let position = again.health(0).mirrored_seq;
    drop(again);

    // The stream purges what this server has not mirrored yet (and its genesis).
    other.append(&[event("e4", 4.0), event("e5", 5.0)]).unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let stream = async_nats::jetstream::new(client)
            .get_stream("tla_restart")
            .await
            .unwrap();
        stream.purge().keep(1).await.unwrap();
    });
    let refused = open(&data).unwrap_err();
    assert!(
        matches!(refused, StreamOpenError::Gap { mirrored, .. } if mirrored == position),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("cannot continue this server's mirror"),
        "{refused}"
    );
    // So does a new server: the stream no longer starts at its genesis.
    let fresh = open(&data.join("fresh")).unwrap_err();
    assert!(
        matches!(fresh, StreamOpenError::Gap { mirrored: 0, .. }),
        "{fresh}"
    );
    // A server that mirrored it all continues (its mirror holds the genesis).
    drop(other);
    let continued = open(&other_dir).expect("a server with the whole prefix continues");
    assert_eq!(continued.read_after(0, 10).unwrap().len(), 5);
    drop(continued);
    let _ = std::fs::remove_dir_all(&data);
}
