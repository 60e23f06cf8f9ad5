//! Integration tests of the storage layer: round trips of every table, the event
//! log's deduplication and ordering, the SQLite log against the in-memory model,
//! concurrent group commit, and reopening a data directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use tla_store::{
    AppendOutcome, CampaignRow, CampaignStatus, CorrectionAction, CorrectionOutcome, DecisionRow,
    EventFix, EventKind, EventLog, KeyRow, MemoryEventLog, NewBudgetChange, NewCorrection,
    NewEvent, NewSpendReport, SCHEMA_VERSION, SpendReportOutcome, Store, StoreError,
    StoredCorrection, StoredEvent,
};

/// A data directory under the system temp dir, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "tla-store-test-{name}-{}-{unique}-{nanos}",
            std::process::id()
        ));
        TempDir { path }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn database(&self) -> PathBuf {
        self.path.join(tla_store::DATABASE_FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn event(campaign_id: &str, event_id: &str) -> NewEvent {
    NewEvent {
        campaign_id: campaign_id.to_owned(),
        event_id: event_id.to_owned(),
        decision_id: format!("decision-{event_id}"),
        kind: EventKind::Conversion,
        value: 25.5,
        amount_known: true,
        segment: 7,
        version: 123_456_789,
        decided_at_ms: 1_700_000_000_000,
        at_ms: 1_700_000_000_500,
    }
}

fn campaign(id: &str, created_at_ms: i64) -> CampaignRow {
    CampaignRow {
        id: id.to_owned(),
        name: format!("campaign {id}"),
        spec_json: format!(r#"{{"id":"{id}","components":[]}}"#),
        status: CampaignStatus::Active,
        created_at_ms,
    }
}

fn decision(decision_id: &str, campaign_id: &str) -> DecisionRow {
    DecisionRow {
        decision_id: decision_id.to_owned(),
        campaign_id: campaign_id.to_owned(),
        segment: 2,
        version: u64::try_from(i64::MAX).unwrap(),
        propensity: 0.125,
        model_version: 9,
        at_ms: 1_700_000_000_000,
        skip: None,
        revision: 1,
        held_out: false,
    }
}

fn key(id: &str) -> KeyRow {
    KeyRow {
        id: id.to_owned(),
        hash: [7; 32],
        scopes: vec!["decide".to_owned(), "events:write".to_owned()],
        created_at_ms: 5,
        revoked: false,
        label: format!("key {id}"),
    }
}

// ---- campaigns ------------------------------------------------------------------------

#[test]
fn campaigns_round_trip_and_duplicate_ids_conflict() {
    let store = Store::open_in_memory().unwrap();
    assert!(store.campaigns().unwrap().is_empty());
    store.insert_campaign(&campaign("b", 2)).unwrap();
    store.insert_campaign(&campaign("a", 1)).unwrap();

    let error = store.insert_campaign(&campaign("a", 3)).unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(error.to_string(), "a campaign with id \"a\" already exists");

    assert_eq!(
        store.campaigns().unwrap(),
        [campaign("a", 1), campaign("b", 2)]
    );
    assert_eq!(store.campaign("b").unwrap(), Some(campaign("b", 2)));
    assert_eq!(store.campaign("missing").unwrap(), None);

    assert!(
        store
            .set_campaign_status("a", CampaignStatus::Paused)
            .unwrap()
    );
    assert!(
        !store
            .set_campaign_status("missing", CampaignStatus::Paused)
            .unwrap()
    );
    assert_eq!(
        store.campaign("a").unwrap().unwrap().status,
        CampaignStatus::Paused
    );
    assert_eq!(
        store.campaign("b").unwrap().unwrap().status,
        CampaignStatus::Active
    );
}

// ---- decisions ------------------------------------------------------------------------

#[test]
fn a_decision_written_again_is_stored_once() {
    let store = Store::open_in_memory().unwrap();
    let first = [decision("d1", "a"), decision("d2", "a")];
    assert_eq!(store.append_decisions(&first).unwrap(), 2);
    // A retried write, and a recovered copy beside a new decision: only the new one is
    // stored; the same id in another campaign is another decision.
    let again = [
        decision("d2", "a"),
        decision("d3", "a"),
        decision("d2", "b"),
    ];
    assert_eq!(store.append_decisions(&again).unwrap(), 2);
    let stored: Vec<String> = store
        .decisions("a", 0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, row)| row.decision_id)
        .collect();
    assert_eq!(stored, ["d1", "d2", "d3"]);
    assert_eq!(store.decisions("b", 0, 10).unwrap().len(), 1);
}

#[test]
fn the_decision_log_coverage_is_kept_across_opens() {
    let dir = TempDir::new("decisions-cover");
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.decisions_cover_seq().unwrap(), 0);
        store.set_decisions_cover_seq(41).unwrap();
        store.set_decisions_cover_seq(1 << 40).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.decisions_cover_seq().unwrap(), 1 << 40);
}

#[test]
fn decisions_round_trip_and_page_by_rowid() {
    let store = Store::open_in_memory().unwrap();
    store.append_decisions(&[]).unwrap();
    let rows: Vec<DecisionRow> = (0..10)
        .map(|index| {
            decision(
                &format!("d{index}"),
                if index % 2 == 0 { "even" } else { "odd" },
            )
        })
        .collect();
    store.append_decisions(&rows).unwrap();

    assert_eq!(store.decision("d0").unwrap(), Some(rows[0].clone()));
    assert_eq!(store.decision("missing").unwrap(), None);

    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store.decisions("even", after, 2).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        for (rowid, _) in &page {
            assert!(*rowid > after, "row ids ascend");
            after = *rowid;
        }
        read.extend(page.into_iter().map(|(_, row)| row));
    }
    let expected: Vec<DecisionRow> = rows.iter().step_by(2).cloned().collect();
    assert_eq!(read, expected);
    assert_eq!(store.decisions("odd", 0, 100).unwrap().len(), 5);
    assert!(store.decisions("none", 0, 100).unwrap().is_empty());
}

#[test]
fn decisions_with_a_bad_propensity_or_oversized_number_are_refused_whole() {
    let store = Store::open_in_memory().unwrap();
    for propensity in [0.0, -0.1, 1.5, f64::NAN] {
        let mut bad = decision("bad", "c");
        bad.propensity = propensity;
        let error = store
            .append_decisions(&[decision("good", "c"), bad])
            .unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{error:?}");
        assert!(error.to_string().contains("must be in (0, 1]"), "{error}");
    }
    let mut oversized = decision("big", "c");
    oversized.model_version = u64::MAX;
    let error = store.append_decisions(&[oversized]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("model_version 18446744073709551615 is too large")
    );
    assert!(store.decisions("c", 0, 10).unwrap().is_empty());
}

// ---- keys -----------------------------------------------------------------------------

#[test]
fn keys_round_trip_conflict_and_revoke() {
    let store = Store::open_in_memory().unwrap();
    let mut second = key("k2");
    second.created_at_ms = 6;
    second.scopes = Vec::new();
    second.hash = std::array::from_fn(|index| index as u8);
    store.insert_key(&second).unwrap();
    store.insert_key(&key("k1")).unwrap();
    let error = store.insert_key(&key("k1")).unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");

    assert_eq!(store.keys().unwrap(), [key("k1"), second.clone()]);
    assert_eq!(store.key("k2").unwrap(), Some(second));
    assert_eq!(store.key("missing").unwrap(), None);

    assert!(store.revoke_key("k1").unwrap());
    assert!(store.revoke_key("k1").unwrap(), "revoking twice is fine");
    assert!(!store.revoke_key("missing").unwrap());
    assert!(store.key("k1").unwrap().unwrap().revoked);
    assert!(!store.key("k2").unwrap().unwrap().revoked);
}

// ---- snapshots ------------------------------------------------------------------------

#[test]
fn snapshots_keep_the_latest_three_per_campaign() {
    let dir = TempDir::new("snapshots");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.latest_snapshot("a").unwrap(), None);
    for covers_seq in [10, 50, 20, 40, 30] {
        store
            .save_snapshot("a", covers_seq, &covers_seq.to_le_bytes(), 1)
            .unwrap();
    }
    store.save_snapshot("b", 5, b"b-model", 1).unwrap();
    // Same covers_seq again replaces the bytes.
    store.save_snapshot("a", 50, b"newer bytes", 2).unwrap();

    assert_eq!(
        store.latest_snapshot("a").unwrap(),
        Some((50, b"newer bytes".to_vec()))
    );
    assert_eq!(
        store.latest_snapshot("b").unwrap(),
        Some((5, b"b-model".to_vec()))
    );
    let error = store.save_snapshot("a", u64::MAX, b"", 0).unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)));

    let connection = rusqlite::Connection::open(dir.database()).unwrap();
    let kept: Vec<(String, i64)> = connection
        .prepare("SELECT campaign_id, covers_seq FROM snapshots ORDER BY campaign_id, covers_seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kept,
        [
            ("a".to_owned(), 30),
            ("a".to_owned(), 40),
            ("a".to_owned(), 50),
            ("b".to_owned(), 5)
        ]
    );
}

// ---- event log ------------------------------------------------------------------------

#[test]
fn duplicates_across_and_within_batches_report_the_stored_seq_and_are_stored_once() {
    let store = Store::open_in_memory().unwrap();
    let log = store.event_log();
    assert_eq!(log.last_seq().unwrap(), 0);
    assert!(log.append(&[]).unwrap().is_empty());

    let first = log
        .append(&[event("c", "1"), event("c", "2"), event("c", "1")])
        .unwrap();
    assert_eq!(
        first,
        [
            AppendOutcome::Appended { seq: 1 },
            AppendOutcome::Appended { seq: 2 },
            AppendOutcome::Duplicate { seq: 1 },
        ]
    );
    // Same event id in another campaign is another event.
    let second = log
        .append(&[event("c", "2"), event("other", "1"), event("c", "3")])
        .unwrap();
    assert_eq!(
        second,
        [
            AppendOutcome::Duplicate { seq: 2 },
            AppendOutcome::Appended { seq: 3 },
            AppendOutcome::Appended { seq: 4 },
        ]
    );
    assert_eq!(log.last_seq().unwrap(), 4);

    let stored = log.read_after(0, 100).unwrap();
    let ids: Vec<(&str, &str, u64)> = stored
        .iter()
        .map(|stored| {
            (
                stored.campaign_id.as_str(),
                stored.event_id.as_str(),
                stored.seq,
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("c", "1", 1),
            ("c", "2", 2),
            ("other", "1", 3),
            ("c", "3", 4)
        ]
    );
    // Every field survives.
    assert_eq!(
        stored[0],
        tla_store::StoredEvent::from_new(1, event("c", "1"))
    );
}

#[test]
fn read_after_pages_in_ascending_seq() {
    let store = Store::open_in_memory().unwrap();
    let log = store.event_log();
    let batch: Vec<NewEvent> = (0..25)
        .map(|index| event("c", &index.to_string()))
        .collect();
    log.append(&batch).unwrap();

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = log.read_after(after, 7).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        seen.extend(page.iter().map(|stored| stored.seq));
        after = page.last().unwrap().seq;
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());
    assert_eq!(log.read_after(20, 100).unwrap().len(), 5);
    assert!(log.read_after(25, 100).unwrap().is_empty());
    assert!(log.read_after(u64::MAX, 100).unwrap().is_empty());
    assert!(log.read_after(0, 0).unwrap().is_empty());
}

#[test]
fn a_batch_with_an_invalid_event_stores_nothing() {
    let store = Store::open_in_memory().unwrap();
    let log = store.event_log();
    let mut bad = event("c", "bad");
    bad.value = f64::INFINITY;
    let error = log.append(&[event("c", "good"), bad]).unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)), "{error:?}");
    let mut bad = event("c", "bad");
    bad.version = u64::MAX;
    assert!(log.append(&[event("c", "good"), bad]).is_err());
    assert_eq!(log.last_seq().unwrap(), 0);
}

/// One generated batch: `(campaign index, event index, content variant)` triples over
/// small ranges, so ids repeat within and across batches, with the same content
/// (duplicates) or another (conflicts).
fn batches_strategy() -> impl Strategy<Value = Vec<Vec<(u8, u8, u8)>>> {
    prop::collection::vec(
        prop::collection::vec((0..3u8, 0..30u8, 0..3u8), 0..20),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sqlite_log_matches_the_memory_log(batches in batches_strategy(), page in 1usize..40) {
        let store = Store::open_in_memory().unwrap();
        let sqlite = store.event_log();
        let memory = MemoryEventLog::new();
        for batch in &batches {
            let events: Vec<NewEvent> = batch
                .iter()
                .map(|(campaign, index, variant)| {
                    let mut new = event(&format!("c{campaign}"), &format!("e{index}"));
                    new.kind = EventKind::ALL[usize::from(*index) % 4];
                    new.value = f64::from(*index) * 0.25;
                    match variant {
                        // Another value, or another decision: a conflict.
                        1 => new.value += 1.0,
                        2 => new.decision_id.push('x'),
                        _ => {}
                    }
                    // The time is not part of the content.
                    new.at_ms += i64::from(*variant);
                    new
                })
                .collect();
            prop_assert_eq!(sqlite.append(&events).unwrap(), memory.append(&events).unwrap());
        }
        prop_assert_eq!(sqlite.last_seq().unwrap(), memory.last_seq().unwrap());
        let mut after = 0;
        loop {
            let from_sqlite = sqlite.read_after(after, page).unwrap();
            prop_assert_eq!(&from_sqlite, &memory.read_after(after, page).unwrap());
            let Some(last) = from_sqlite.last() else { break };
            after = last.seq;
        }
    }
}

#[test]
fn the_same_id_with_another_content_is_a_conflict_in_both_logs() {
    let store = Store::open_in_memory().unwrap();
    let sqlite = store.event_log();
    let memory = MemoryEventLog::new();
    let impression = kind_event("c", "e1", EventKind::Impression, "d1", 0.0);
    let mut later = impression.clone();
    later.at_ms += 60_000;
    let batches = [
        vec![impression.clone()],
        vec![
            // A conversion reusing the impression's id: refused, not a duplicate.
            kind_event("c", "e1", EventKind::Conversion, "d1", 10.0),
            // Another decision under the same id.
            kind_event("c", "e1", EventKind::Impression, "d2", 0.0),
            // The exact repeat, at another time: a duplicate.
            later,
            // Within one batch: the first is stored, another content after it conflicts.
            kind_event("c", "e2", EventKind::Conversion, "d1", 5.0),
            kind_event("c", "e2", EventKind::Conversion, "d1", 6.0),
            kind_event("c", "e2", EventKind::Conversion, "d1", 5.0),
        ],
    ];
    let expected = [
        vec![AppendOutcome::Appended { seq: 1 }],
        vec![
            AppendOutcome::Conflict { seq: 1 },
            AppendOutcome::Conflict { seq: 1 },
            AppendOutcome::Duplicate { seq: 1 },
            AppendOutcome::Appended { seq: 2 },
            AppendOutcome::Conflict { seq: 2 },
            AppendOutcome::Duplicate { seq: 2 },
        ],
    ];
    for (batch, expected) in batches.iter().zip(expected) {
        assert_eq!(sqlite.append(batch).unwrap(), expected);
        assert_eq!(memory.append(batch).unwrap(), expected);
    }
    assert!(AppendOutcome::Conflict { seq: 1 }.is_conflict());
    assert!(!AppendOutcome::Conflict { seq: 1 }.is_duplicate());
    // The stored events are the first ones, unchanged.
    let stored = sqlite.read_after(0, 10).unwrap();
    assert_eq!(stored, memory.read_after(0, 10).unwrap());
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], StoredEvent::from_new(1, impression));
    assert_eq!(stored[1].value, 5.0);
}

// ---- corrections ----------------------------------------------------------------------

fn correction(event_id: &str, action: CorrectionAction) -> NewCorrection {
    NewCorrection {
        campaign_id: "a".to_owned(),
        event_id: event_id.to_owned(),
        action,
        reason: format!("fix {event_id}"),
        key_id: "0123456789ab".to_owned(),
        at_ms: 1_700_000_100_000,
    }
}

/// Records the same corrections in `log`, returning the outcomes.
fn correct_all(log: &impl EventLog) -> Vec<CorrectionOutcome> {
    [
        correction("c1", CorrectionAction::Correct { value: 1.0 }),
        correction("c1", CorrectionAction::Correct { value: 2.0 }),
        correction("i1", CorrectionAction::Retract),
        correction("i1", CorrectionAction::Retract),
        correction("i1", CorrectionAction::Correct { value: 3.0 }),
        correction("nope", CorrectionAction::Retract),
        correction("c2", CorrectionAction::Retract),
    ]
    .iter()
    .map(|c| log.append_correction(c).unwrap())
    .collect()
}

#[test]
fn corrections_are_recorded_alike_by_both_logs_with_old_and_new_values() {
    let store = Store::open_in_memory().unwrap();
    let sqlite = store.event_log();
    let memory = MemoryEventLog::new();
    two_campaigns(&sqlite);
    two_campaigns(&memory);
    let outcomes = correct_all(&sqlite);
    assert_eq!(outcomes, correct_all(&memory));
    let recorded: Vec<&StoredCorrection> = outcomes
        .iter()
        .filter_map(|o| match o {
            CorrectionOutcome::Recorded(c) => Some(c),
            _ => None,
        })
        .collect();
    // c1 (seq 2, value 10): 10 -> 1 -> 2; i1 (seq 1) retracted; c2 (seq 5) retracted.
    /// Id, event id, event seq, action, old value, new value.
    type Audit<'a> = (u64, &'a str, u64, &'a str, Option<f64>, Option<f64>);
    let audit: Vec<Audit<'_>> = recorded
        .iter()
        .map(|c| {
            (
                c.id,
                c.event_id.as_str(),
                c.event_seq,
                c.action.as_str(),
                c.old_value,
                c.new_value(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        [
            (1, "c1", 2, "correct", Some(10.0), Some(1.0)),
            (2, "c1", 2, "correct", Some(1.0), Some(2.0)),
            (3, "i1", 1, "retract", Some(0.0), None),
            (4, "c2", 5, "retract", Some(5.0), None),
        ]
    );
    assert_eq!(recorded[0].decision_id, "d1");
    assert_eq!(recorded[0].event_kind, EventKind::Conversion);
    assert_eq!(recorded[0].key_id, "0123456789ab");
    assert_eq!(recorded[0].reason, "fix c1");
    // A second retraction, and a correction after one, record nothing.
    assert_eq!(
        outcomes[3],
        CorrectionOutcome::AlreadyRetracted(recorded[2].clone())
    );
    assert_eq!(
        outcomes[4],
        CorrectionOutcome::AlreadyRetracted(recorded[2].clone())
    );
    assert_eq!(outcomes[5], CorrectionOutcome::UnknownEvent);
    // Listed per campaign, in order; campaign b has none.
    let listed = sqlite.corrections("a").unwrap();
    assert_eq!(listed, memory.corrections("a").unwrap());
    assert_eq!(listed.len(), 4);
    assert!(sqlite.corrections("b").unwrap().is_empty());
    let fixes = tla_store::effects(&listed);
    assert_eq!(fixes[&2], EventFix::Value(2.0));
    assert_eq!(fixes[&1], EventFix::Retracted);
    // The events themselves are unchanged.
    assert_eq!(sqlite.find_event("a", "c1").unwrap().unwrap().value, 10.0);
    assert_eq!(
        sqlite.find_event("a", "c1").unwrap(),
        memory.find_event("a", "c1").unwrap()
    );
    assert_eq!(sqlite.find_event("b", "c2").unwrap(), None);
    // A bad value is refused before anything is recorded.
    let bad = correction(
        "c1",
        CorrectionAction::Correct {
            value: f64::INFINITY,
        },
    );
    assert!(matches!(
        sqlite.append_correction(&bad),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        memory.append_correction(&bad),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(sqlite.corrections("a").unwrap().len(), 4);
}

#[test]
fn correcting_an_unknown_amount_records_the_old_value_as_unknown_not_zero() {
    let dir = TempDir::new("unknown-old-value");
    let store = Store::open(dir.path()).unwrap();
    let sqlite = store.event_log();
    let memory = MemoryEventLog::new();
    let unknown = NewEvent {
        amount_known: false,
        ..kind_event("a", "c-unknown", EventKind::Conversion, "d1", 0.0)
    };
    let actions = [
        CorrectionAction::Correct { value: 20.0 },
        CorrectionAction::Correct { value: 25.0 },
        CorrectionAction::Retract,
    ];
    for log in [&sqlite as &dyn EventLog, &memory] {
        log.append(std::slice::from_ref(&unknown)).unwrap();
        for action in actions {
            let outcome = log
                .append_correction(&correction("c-unknown", action))
                .unwrap();
            assert!(
                matches!(outcome, CorrectionOutcome::Recorded(_)),
                "{outcome:?}"
            );
        }
    }
    let listed = sqlite.corrections("a").unwrap();
    assert_eq!(listed, memory.corrections("a").unwrap());
    let old_values: Vec<Option<f64>> = listed.iter().map(|c| c.old_value).collect();
    assert_eq!(old_values, [None, Some(20.0), Some(25.0)]);
    // The unknown old value is stored as null and reads back so after reopening.
    drop((sqlite, store));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.event_log().corrections("a").unwrap(), listed);
}

#[test]
fn corrections_survive_reopening() {
    let dir = TempDir::new("corrections-reopen");
    let recorded = {
        let store = Store::open(dir.path()).unwrap();
        two_campaigns(&store.event_log());
        correct_all(&store.event_log());
        store.event_log().corrections("a").unwrap()
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.event_log().corrections("a").unwrap(), recorded);
    let read_only = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.event_log().corrections("a").unwrap(), recorded);
}

#[test]
fn snapshots_covering_a_corrected_event_are_deleted_and_earlier_ones_kept() {
    let store = Store::open_in_memory().unwrap();
    for covers in [10, 20, 30] {
        store.save_snapshot("a", covers, &[1], 0).unwrap();
    }
    store.save_snapshot("b", 30, &[2], 0).unwrap();
    assert_eq!(store.delete_snapshots_covering("a", 20).unwrap(), 2);
    assert_eq!(store.latest_snapshot("a").unwrap(), Some((10, vec![1])));
    assert_eq!(store.latest_snapshot("b").unwrap(), Some((30, vec![2])));
    assert_eq!(store.delete_snapshots_covering("a", 1).unwrap(), 1);
    assert_eq!(store.latest_snapshot("a").unwrap(), None);
}

#[test]
fn a_version_2_file_gets_the_corrections_table_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v2");
    {
        let store = Store::open(dir.path()).unwrap();
        two_campaigns(&store.event_log());
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "DROP TABLE corrections; ALTER TABLE events DROP COLUMN amount_known; \
                 DROP INDEX decisions_by_time; DROP TABLE spend_reports; DROP TABLE budget_changes; \
                 ALTER TABLE decisions DROP COLUMN skip; DROP TABLE revisions; DROP TABLE idempotency_keys; ALTER TABLE decisions DROP COLUMN revision; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 2;",
            )
            .unwrap();
    }
    // Read-only opening wants the migration first.
    let error = Store::open_read_only(dir.path()).unwrap_err();
    assert!(error.to_string().contains("schema version 2"), "{error}");
    let store = Store::open(dir.path()).unwrap();
    let log = store.event_log();
    assert_eq!(log.last_seq().unwrap(), 7);
    assert!(log.corrections("a").unwrap().is_empty());
    let outcome = log
        .append_correction(&correction("c1", CorrectionAction::Retract))
        .unwrap();
    assert!(
        matches!(outcome, CorrectionOutcome::Recorded(_)),
        "{outcome:?}"
    );
    let connection = rusqlite::Connection::open(dir.database()).unwrap();
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// Appends, from `threads` threads at once, `batches` batches of 100 events each;
/// thread `t` uses the same ids as thread `t ^ 1`, so pairs of threads race on every
/// id. Checks that each id is stored exactly once and every caller was told its seq.
fn append_concurrently(store: &Store, threads: usize, batches: usize) {
    let log = store.event_log();
    let per_thread: Vec<Vec<(String, AppendOutcome)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let log = log.clone();
                scope.spawn(move || {
                    let id_space = thread / 2;
                    let mut outcomes = Vec::new();
                    for batch in 0..batches {
                        let events: Vec<NewEvent> = (0..100)
                            .map(|index| event("c", &format!("{id_space}-{batch}-{index}")))
                            .collect();
                        let result = log.append(&events).unwrap();
                        assert_eq!(result.len(), events.len());
                        outcomes.extend(events.into_iter().map(|event| event.event_id).zip(result));
                    }
                    outcomes
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });

    let distinct = threads.div_ceil(2) * batches * 100;
    assert_eq!(log.last_seq().unwrap(), distinct as u64);
    let stored = log.read_after(0, usize::MAX).unwrap();
    assert_eq!(stored.len(), distinct);
    let seqs: Vec<u64> = stored.iter().map(|stored| stored.seq).collect();
    assert_eq!(seqs, (1..=distinct as u64).collect::<Vec<_>>());
    let seq_by_id: HashMap<&str, u64> = stored
        .iter()
        .map(|stored| (stored.event_id.as_str(), stored.seq))
        .collect();
    assert_eq!(seq_by_id.len(), distinct, "every id stored exactly once");

    let mut appended_once: HashSet<&str> = HashSet::new();
    for (event_id, outcome) in per_thread.iter().flatten() {
        assert_eq!(seq_by_id[event_id.as_str()], outcome.seq(), "{event_id}");
        if !outcome.is_duplicate() {
            assert!(appended_once.insert(event_id), "{event_id} appended twice");
        }
    }
    assert_eq!(appended_once.len(), distinct);
}

#[test]
fn eight_threads_appending_overlapping_batches_store_every_id_once() {
    let dir = TempDir::new("concurrent");
    let store = Store::open(dir.path()).unwrap();
    append_concurrently(&store, 8, 25);
}

#[test]
fn group_commit_works_on_the_single_connection_of_an_in_memory_store() {
    let store = Store::open_in_memory().unwrap();
    append_concurrently(&store, 8, 10);
}

#[test]
fn decisions_and_events_appended_concurrently_share_the_writer() {
    let dir = TempDir::new("mixed");
    let store = Store::open(dir.path()).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                for batch in 0..20 {
                    let ids: Vec<String> = (0..50)
                        .map(|index| format!("{thread}-{batch}-{index}"))
                        .collect();
                    if thread % 2 == 0 {
                        let events: Vec<NewEvent> = ids.iter().map(|id| event("c", id)).collect();
                        store.event_log().append(&events).unwrap();
                    } else {
                        let rows: Vec<DecisionRow> =
                            ids.iter().map(|id| decision(id, "c")).collect();
                        store.append_decisions(&rows).unwrap();
                    }
                    // Reads go on while others append.
                    store.event_log().read_after(0, 10).unwrap();
                }
            });
        }
    });
    assert_eq!(store.event_log().last_seq().unwrap(), 2 * 20 * 50);
    assert_eq!(
        store.decisions("c", 0, usize::MAX).unwrap().len(),
        2 * 20 * 50
    );
}

// ---- files ----------------------------------------------------------------------------

#[test]
fn everything_written_is_there_after_reopening() {
    let dir = TempDir::new("reopen");
    let nested = dir.path().join("nested").join("data");
    {
        let store = Store::open(&nested).unwrap();
        assert_eq!(store.path(), Some(nested.join("tla.db").as_path()));
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store
            .set_campaign_status("a", CampaignStatus::Paused)
            .unwrap();
        store.append_decisions(&[decision("d1", "a")]).unwrap();
        store.insert_key(&key("k1")).unwrap();
        store.revoke_key("k1").unwrap();
        store.save_snapshot("a", 2, b"model", 3).unwrap();
        let log = store.event_log();
        log.append(&[event("a", "1"), event("a", "2")]).unwrap();
    }
    let store = Store::open(&nested).unwrap();
    let mut paused = campaign("a", 1);
    paused.status = CampaignStatus::Paused;
    assert_eq!(store.campaigns().unwrap(), [paused]);
    assert_eq!(store.decision("d1").unwrap(), Some(decision("d1", "a")));
    let mut revoked = key("k1");
    revoked.revoked = true;
    assert_eq!(store.keys().unwrap(), [revoked]);
    assert_eq!(
        store.latest_snapshot("a").unwrap(),
        Some((2, b"model".to_vec()))
    );
    let log = store.event_log();
    assert_eq!(log.last_seq().unwrap(), 2);
    // Sequence numbers continue, and the old ids are still known.
    assert_eq!(
        log.append(&[event("a", "2"), event("a", "3")]).unwrap(),
        [
            AppendOutcome::Duplicate { seq: 2 },
            AppendOutcome::Appended { seq: 3 }
        ]
    );

    let connection = rusqlite::Connection::open(store.path().unwrap()).unwrap();
    let journal_mode: String = connection
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// The bytes of every file in a directory, by name.
fn directory_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_database_with_a_newer_schema_version_is_refused_and_left_unchanged() {
    let dir = TempDir::new("newer");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store.event_log().append(&[event("a", "1")]).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = directory_contents(dir.path());

    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::Schema(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("has schema version {}", SCHEMA_VERSION + 1))
            && message.contains(&format!("newer than version {SCHEMA_VERSION}"))
            && message.contains("the file was not changed"),
        "{message}"
    );
    assert_eq!(directory_contents(dir.path()), before);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_unchanged() {
    let dir = TempDir::new("garbage");
    std::fs::create_dir_all(dir.path()).unwrap();
    let garbage = b"this is not a sqlite database, just some text long enough to have a header...."
        .repeat(20);
    std::fs::write(dir.database(), &garbage).unwrap();
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::Schema(_)), "{error:?}");
    assert!(
        error.to_string().contains("is not a sqlite database"),
        "{error}"
    );
    assert_eq!(std::fs::read(dir.database()).unwrap(), garbage);
}

#[test]
fn a_sqlite_file_of_another_application_is_refused() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
    }
    let error = Store::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("not a tla database"), "{error}");
}

#[test]
fn a_data_directory_path_that_is_a_file_is_an_io_error() {
    let dir = TempDir::new("file-not-dir");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let error = Store::open(&file).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert!(error.to_string().starts_with("i/o error on "), "{error}");
    assert!(!error.is_client_error());
}

#[test]
fn store_and_logs_can_be_shared_between_threads() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Store>();
    assert_shareable::<tla_store::SqliteEventLog>();
    fn assert_log<T: EventLog + 'static>() {}
    assert_log::<tla_store::SqliteEventLog>();
    assert_log::<MemoryEventLog>();
    let _: Box<dyn EventLog> = Box::new(MemoryEventLog::new());
}

#[test]
fn server_secret_is_made_once_and_kept_across_reopen() {
    let dir = std::env::temp_dir().join(format!("tla-store-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = tla_store::Store::open(&dir)
        .unwrap()
        .server_secret()
        .unwrap();
    assert_eq!(first.len(), 32);
    let store = tla_store::Store::open(&dir).unwrap();
    assert_eq!(store.server_secret().unwrap(), first);
    assert_ne!(
        tla_store::Store::open_in_memory()
            .unwrap()
            .server_secret()
            .unwrap(),
        first
    );
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- one campaign's events ------------------------------------------------------------

fn kind_event(
    campaign_id: &str,
    event_id: &str,
    kind: EventKind,
    decision: &str,
    value: f64,
) -> NewEvent {
    NewEvent {
        kind,
        value,
        decision_id: decision.to_owned(),
        ..event(campaign_id, event_id)
    }
}

/// Two campaigns' impressions and conversions, interleaved: campaign `a`'s conversions
/// are at seqs 2, 5 and 7 (decisions d1, d2, d1), campaign `b`'s at 4.
fn two_campaigns(log: &impl EventLog) {
    log.append(&[
        kind_event("a", "i1", EventKind::Impression, "d1", 0.0),
        kind_event("a", "c1", EventKind::Conversion, "d1", 10.0),
        kind_event("b", "i1", EventKind::Impression, "d1", 0.0),
        kind_event("b", "c1", EventKind::Conversion, "d1", 99.0),
        kind_event("a", "c2", EventKind::Conversion, "d2", 5.0),
        kind_event("a", "k2", EventKind::Click, "d2", 0.0),
        kind_event("a", "c3", EventKind::Conversion, "d1", 2.5),
    ])
    .unwrap();
}

#[test]
fn campaign_events_reads_one_campaigns_kind_in_log_order_and_pages() {
    let store = Store::open_in_memory().unwrap();
    two_campaigns(&store.event_log());
    let seqs = |after, limit| -> Vec<u64> {
        store
            .campaign_events("a", EventKind::Conversion, after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 10), [2, 5, 7]);
    assert_eq!(seqs(0, 2), [2, 5]);
    assert_eq!(seqs(5, 2), [7]);
    assert!(seqs(7, 10).is_empty());
    assert!(seqs(u64::MAX, 10).is_empty());
    let events = store
        .campaign_events("a", EventKind::Conversion, 0, 10)
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.campaign_id == "a" && e.kind == EventKind::Conversion)
    );
    assert_eq!(events[2].event_id, "c3");
    assert_eq!(events[2].value, 2.5);
    // The same rows the whole-log reader gives, filtered.
    let filtered: Vec<_> = store
        .event_log()
        .read_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.campaign_id == "a" && e.kind == EventKind::Conversion)
        .collect();
    assert_eq!(events, filtered);
    let b_impressions = store
        .campaign_events("b", EventKind::Impression, 0, 10)
        .unwrap();
    assert_eq!(b_impressions.len(), 1);
    assert_eq!(b_impressions[0].seq, 3);
    assert!(
        store
            .campaign_events("missing", EventKind::Conversion, 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn campaign_events_reader_reads_one_campaign_in_log_order_in_pages() {
    let store = Store::open_in_memory().unwrap();
    two_campaigns(&store.event_log());
    let whole: Vec<StoredEvent> = store
        .event_log()
        .read_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.campaign_id == "a")
        .collect();
    assert_eq!(
        whole.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 5, 6, 7]
    );
    assert_eq!(store.campaign_event_count("a").unwrap(), 5);
    assert_eq!(store.campaign_event_count("b").unwrap(), 2);
    assert_eq!(store.campaign_event_count("missing").unwrap(), 0);
    // Every page size gives the same events, in log order, each once.
    for limit in 1..=6 {
        let mut reader = store.campaign_events_reader("a");
        let mut read = Vec::new();
        loop {
            let page = reader.next_page(limit).unwrap();
            assert!(page.len() <= limit);
            if page.is_empty() {
                break;
            }
            read.extend(page);
        }
        assert_eq!(read, whole, "page size {limit}");
        assert!(reader.next_page(limit).unwrap().is_empty());
    }
    assert!(
        store
            .campaign_events_reader("missing")
            .next_page(10)
            .unwrap()
            .is_empty()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any interleaving of campaigns and kinds: the index reader gives exactly the
    /// filtered scan, whatever the page size.
    #[test]
    fn campaign_events_reader_equals_the_filtered_scan(
        events in prop::collection::vec((0usize..3, 0usize..4), 1..300),
        limit in 1usize..40,
    ) {
        let store = Store::open_in_memory().unwrap();
        let campaigns = ["a", "b", "c"];
        let batch: Vec<NewEvent> = events
            .iter()
            .enumerate()
            .map(|(i, &(c, k))| {
                kind_event(campaigns[c], &format!("e{i}"), EventKind::ALL[k], &format!("d{i}"), 1.0)
            })
            .collect();
        store.event_log().append(&batch).unwrap();
        let all = store.event_log().read_after(0, 10_000).unwrap();
        for campaign in campaigns {
            let expected: Vec<StoredEvent> =
                all.iter().filter(|e| e.campaign_id == campaign).cloned().collect();
            prop_assert_eq!(store.campaign_event_count(campaign).unwrap(), expected.len() as u64);
            let mut reader = store.campaign_events_reader(campaign);
            let mut read = Vec::new();
            loop {
                let page = reader.next_page(limit).unwrap();
                if page.is_empty() {
                    break;
                }
                read.extend(page);
            }
            prop_assert_eq!(read, expected);
        }
    }
}

#[test]
fn value_by_decision_sums_one_campaigns_conversions_per_decision() {
    let store = Store::open_in_memory().unwrap();
    two_campaigns(&store.event_log());
    let sums = store.value_by_decision("a", EventKind::Conversion).unwrap();
    assert_eq!(
        sums,
        HashMap::from([("d1".to_owned(), 12.5), ("d2".to_owned(), 5.0)])
    );
    let b = store.value_by_decision("b", EventKind::Conversion).unwrap();
    assert_eq!(b, HashMap::from([("d1".to_owned(), 99.0)]));
    assert!(
        store
            .value_by_decision("missing", EventKind::Conversion)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn value_by_decision_reads_past_one_page() {
    // More conversions than one page (8,192) of one decision, interleaved with another
    // campaign's.
    let store = Store::open_in_memory().unwrap();
    let log = store.event_log();
    let batch: Vec<NewEvent> = (0..20_000)
        .map(|i| {
            let campaign = if i % 2 == 0 { "a" } else { "b" };
            kind_event(
                campaign,
                &format!("c{i}"),
                EventKind::Conversion,
                &format!("d{}", i % 6),
                1.0,
            )
        })
        .collect();
    log.append(&batch).unwrap();
    let sums = store.value_by_decision("a", EventKind::Conversion).unwrap();
    assert_eq!(sums.len(), 3);
    assert_eq!(sums.values().sum::<f64>(), 10_000.0);
    assert_eq!(sums["d0"], 3_334.0);
    // Up to a sequence only, past the first page too: campaign a's events are the odd
    // sequences 1, 3, ..., so through 16_001 holds 8,001 of them.
    let through = store
        .value_by_decision_through("a", EventKind::Conversion, 16_001)
        .unwrap();
    assert_eq!(through.values().sum::<f64>(), 8_001.0);
    let none = store
        .value_by_decision_through("a", EventKind::Conversion, 0)
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn a_version_1_file_is_migrated_on_open_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v1");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store.append_decisions(&[decision("d1", "a")]).unwrap();
        two_campaigns(&store.event_log());
    }
    // Make it the file version 1 wrote: the same tables without the index and the
    // amount_known column.
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "DROP INDEX events_by_campaign_kind; DROP TABLE corrections; \
                 ALTER TABLE events DROP COLUMN amount_known; DROP INDEX decisions_by_time; \
                 DROP TABLE spend_reports; DROP TABLE budget_changes; ALTER TABLE decisions DROP COLUMN skip; DROP TABLE revisions; DROP TABLE idempotency_keys; ALTER TABLE decisions DROP COLUMN revision; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 1;",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
    assert_eq!(store.decision("d1").unwrap(), Some(decision("d1", "a")));
    let log = store.event_log();
    assert_eq!(log.last_seq().unwrap(), 7);
    assert_eq!(
        store.value_by_decision("a", EventKind::Conversion).unwrap(),
        HashMap::from([("d1".to_owned(), 12.5), ("d2".to_owned(), 5.0)])
    );
    // Appends go on after the migration, deduplicated as before.
    assert_eq!(
        log.append(&[kind_event("a", "c1", EventKind::Conversion, "d1", 10.0)])
            .unwrap(),
        [AppendOutcome::Duplicate { seq: 2 }]
    );
    let connection = rusqlite::Connection::open(dir.database()).unwrap();
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 13);
    let indexes: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' \
             AND name IN ('events_by_campaign_kind', 'decisions_by_time')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2);
    // A decision written again after the migration is stored once.
    assert_eq!(store.append_decisions(&[decision("d1", "a")]).unwrap(), 0);
}

#[test]
fn a_version_3_file_is_migrated_its_events_keep_known_amounts_and_unknown_ones_are_stored() {
    let dir = TempDir::new("migrate-v2");
    {
        let store = Store::open(dir.path()).unwrap();
        two_campaigns(&store.event_log());
        // Version 3 stored a conversion sent without an amount as value 0.
        store
            .event_log()
            .append(&[kind_event(
                "a",
                "c-no-value",
                EventKind::Conversion,
                "d1",
                0.0,
            )])
            .unwrap();
    }
    let before = {
        let store = Store::open(dir.path()).unwrap();
        store.event_log().read_after(0, 100).unwrap()
    };
    // Make it the file version 3 wrote: no amount_known column.
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "ALTER TABLE events DROP COLUMN amount_known; DROP INDEX decisions_by_time; \
                 DROP TABLE spend_reports; DROP TABLE budget_changes; ALTER TABLE decisions DROP COLUMN skip; DROP TABLE revisions; DROP TABLE idempotency_keys; ALTER TABLE decisions DROP COLUMN revision; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 3;",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let log = store.event_log();
    let after = log.read_after(0, 100).unwrap();
    assert_eq!(
        after, before,
        "every stored event reads back, its amount known"
    );
    assert!(after.iter().all(|event| event.amount_known));
    // Retrying that request after the upgrade sends an unknown amount: still a repeat.
    let retry = NewEvent {
        amount_known: false,
        ..kind_event("a", "c-no-value", EventKind::Conversion, "d1", 0.0)
    };
    let stored_seq = before.last().unwrap().seq;
    assert_eq!(
        log.append(std::slice::from_ref(&retry)).unwrap(),
        [AppendOutcome::Duplicate { seq: stored_seq }]
    );
    let memory = MemoryEventLog::new();
    memory
        .append(&[kind_event(
            "a",
            "c-no-value",
            EventKind::Conversion,
            "d1",
            0.0,
        )])
        .unwrap();
    assert_eq!(
        memory.append(&[retry]).unwrap(),
        [AppendOutcome::Duplicate { seq: 1 }]
    );
    let unknown = NewEvent {
        amount_known: false,
        ..kind_event("a", "c-unknown", EventKind::Conversion, "d1", 0.0)
    };
    let seq = log.append(std::slice::from_ref(&unknown)).unwrap()[0].seq();
    let stored = log.read_after(seq - 1, 1).unwrap();
    assert_eq!(stored, [StoredEvent::from_new(seq, unknown.clone())]);
    assert!(!stored[0].amount_known);
    // A value with an unknown amount is refused before anything is stored.
    let error = log
        .append(&[NewEvent {
            event_id: "c-bad".into(),
            value: 3.0,
            ..unknown
        }])
        .unwrap_err();
    assert!(error.to_string().contains("unknown amount"), "{error}");
}

// ---- read-only open -------------------------------------------------------------------

#[test]
fn a_read_only_open_reads_everything_and_changes_no_byte_of_the_directory() {
    let dir = TempDir::new("read-only");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store
            .append_decisions(&[decision("d-1", "a"), decision("d-2", "a")])
            .unwrap();
        store
            .event_log()
            .append(&[event("a", "e-1"), event("a", "e-2")])
            .unwrap();
        store.save_snapshot("a", 2, b"model", 5).unwrap();
    }
    let before = directory_contents(dir.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["tla.db"],
        "a closed store leaves no write-ahead log nor index"
    );
    {
        let store = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
        assert_eq!(store.decisions("a", 0, 10).unwrap().len(), 2);
        assert_eq!(store.event_log().read_after(0, 10).unwrap().len(), 2);
        assert_eq!(
            store.latest_snapshot("a").unwrap(),
            Some((2, b"model".to_vec()))
        );
        assert_eq!(
            store
                .value_by_decision("a", EventKind::Click)
                .unwrap()
                .len(),
            0
        );
        // Writes are refused, and the refusal writes nothing either.
        assert!(store.insert_campaign(&campaign("b", 2)).is_err());
        assert!(store.server_secret().is_err());
        assert!(store.event_log().append(&[event("a", "e-3")]).is_err());
    }
    assert_eq!(
        directory_contents(dir.path()),
        before,
        "the directory changed"
    );
}

#[test]
fn a_read_only_open_reads_commits_still_in_the_write_ahead_log() {
    let dir = TempDir::new("read-only-wal");
    let writer = Store::open(dir.path()).unwrap();
    writer.insert_campaign(&campaign("a", 1)).unwrap();
    writer.event_log().append(&[event("a", "e-1")]).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.campaigns().unwrap(), [campaign("a", 1)]);
    assert_eq!(reader.event_log().read_after(0, 10).unwrap().len(), 1);
    let database = directory_contents(dir.path())["tla.db"].clone();
    drop(reader);
    assert_eq!(directory_contents(dir.path())["tla.db"], database);
}

#[test]
fn a_read_only_open_refuses_a_missing_database_and_creates_nothing() {
    let dir = TempDir::new("read-only-missing");
    std::fs::create_dir_all(dir.path()).unwrap();
    let error = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert!(directory_contents(dir.path()).is_empty());
}

fn spend(report_id: &str, amount: f64) -> NewSpendReport {
    NewSpendReport {
        campaign_id: "a".into(),
        report_id: report_id.into(),
        segment: 2,
        start_ms: 1_796_083_200_000,
        end_ms: 1_796_169_600_000,
        amount,
        impressions: Some(4_000),
        key_id: "0123456789ab".into(),
        at_ms: 1_796_200_000_000,
    }
}

#[test]
fn spend_reports_are_stored_once_per_id_and_survive_a_reopen() {
    let dir = TempDir::new("spend");
    {
        let store = Store::open(dir.path()).unwrap();
        let other_campaign = NewSpendReport {
            campaign_id: "b".into(),
            ..spend("r1", 5.0)
        };
        let later_sender = NewSpendReport {
            key_id: "another-key".into(),
            at_ms: 1,
            ..spend("r1", 120.5)
        };
        let outcomes = store
            .append_spend_reports(&[
                spend("r1", 120.5),
                spend("r2", 0.0),
                later_sender,
                spend("r1", 99.0),
                other_campaign,
            ])
            .unwrap();
        assert_eq!(
            outcomes,
            [
                SpendReportOutcome::Appended { id: 1 },
                SpendReportOutcome::Appended { id: 2 },
                SpendReportOutcome::Duplicate { id: 1 },
                SpendReportOutcome::Conflict { id: 1 },
                SpendReportOutcome::Appended { id: 3 },
            ]
        );
        let no_impressions = NewSpendReport {
            impressions: None,
            ..spend("r1", 120.5)
        };
        assert_eq!(
            store.append_spend_reports(&[no_impressions]).unwrap(),
            [SpendReportOutcome::Conflict { id: 1 }]
        );
    }
    let store = Store::open(dir.path()).unwrap();
    let stored = store.spend_reports("a").unwrap();
    assert_eq!(
        stored,
        [
            spend("r1", 120.5).stored_as(1),
            spend("r2", 0.0).stored_as(2)
        ]
    );
    assert_eq!(store.spend_reports("b").unwrap().len(), 1);
    // A bad report refuses the whole batch and stores nothing.
    for bad in [
        spend("r3", f64::NAN),
        spend("r3", -1.0),
        NewSpendReport {
            end_ms: 1_796_083_200_000,
            ..spend("r3", 1.0)
        },
        NewSpendReport {
            impressions: Some(u64::MAX),
            ..spend("r3", 1.0)
        },
    ] {
        let error = store
            .append_spend_reports(&[spend("r4", 1.0), bad])
            .unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{error}");
    }
    assert_eq!(store.spend_reports("a").unwrap().len(), 2);
}

#[test]
fn budget_changes_are_recorded_in_order_with_their_audit() {
    let store = Store::open_in_memory().unwrap();
    let change = NewBudgetChange {
        campaign_id: "a".into(),
        old_budget: 25_000.0,
        new_budget: 30_000.0,
        old_daily_cap: Some(1_500.0),
        new_daily_cap: None,
        spent: 1_234.5,
        reason: "board approved more".into(),
        key_id: "0123456789ab".into(),
        at_ms: 1_796_200_000_000,
    };
    let first = store.append_budget_change(&change, None).unwrap();
    let second_change = NewBudgetChange {
        old_budget: 30_000.0,
        new_budget: 20_000.0,
        old_daily_cap: None,
        new_daily_cap: Some(800.0),
        ..change.clone()
    };
    let second = store.append_budget_change(&second_change, None).unwrap();
    assert_eq!((first.id, second.id), (1, 2));
    assert_eq!(store.budget_changes("a").unwrap(), [first, second]);
    assert!(store.budget_changes("b").unwrap().is_empty());
    let bad = NewBudgetChange {
        new_budget: f64::INFINITY,
        ..change
    };
    let error = store.append_budget_change(&bad, None).unwrap_err();
    assert!(error.to_string().contains("new_budget"), "{error}");
    assert_eq!(store.budget_changes("a").unwrap().len(), 2);
}

#[test]
fn a_keyed_revision_or_budget_change_is_stored_once_per_campaign_and_found_after_a_restart() {
    let dir = TempDir::new("change-keys");
    let key = |key: &str, digest: u8| tla_store::ChangeKey {
        key: key.into(),
        request_digest: [digest; 32],
    };
    let revision = |campaign: &str, number| tla_store::RevisionRow {
        campaign_id: campaign.into(),
        revision: number,
        spec_json: "{}".into(),
        from_seq: 3,
        reason: None,
        key_id: "k".into(),
        at_ms: 9,
    };
    let change = |campaign: &str| NewBudgetChange {
        campaign_id: campaign.into(),
        old_budget: 100.0,
        new_budget: 200.0,
        old_daily_cap: None,
        new_daily_cap: Some(20.0),
        spent: 1.5,
        reason: "more".into(),
        key_id: "k".into(),
        at_ms: 9,
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append_revision(&revision("a", 2), Some(&key("r1", 1)))
            .unwrap();
        // Another revision without a key, and the same key on another campaign.
        store.append_revision(&revision("a", 3), None).unwrap();
        store
            .append_revision(&revision("b", 2), Some(&key("r1", 2)))
            .unwrap();
        // The same key again for campaign a: refused, nothing written.
        let error = store
            .append_revision(&revision("a", 4), Some(&key("r1", 1)))
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        assert!(error.to_string().contains("r1"), "{error}");
        assert_eq!(store.revisions("a").unwrap().len(), 2);

        let first = store
            .append_budget_change(&change("a"), Some(&key("b1", 7)))
            .unwrap();
        store.append_budget_change(&change("a"), None).unwrap();
        let error = store
            .append_budget_change(&change("a"), Some(&key("b1", 8)))
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        assert_eq!(store.budget_changes("a").unwrap().len(), 2);
        assert_eq!(
            store.budget_change_by_key("a", "b1").unwrap(),
            Some((first, key("b1", 7)))
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.revision_by_key("a", "r1").unwrap(),
        Some((2, key("r1", 1)))
    );
    assert_eq!(
        store.revision_by_key("b", "r1").unwrap(),
        Some((2, key("r1", 2)))
    );
    assert_eq!(store.revision_by_key("a", "r2").unwrap(), None);
    let (found, found_key) = store.budget_change_by_key("a", "b1").unwrap().unwrap();
    assert_eq!(
        (found.id, found.change, found_key),
        (1, change("a"), key("b1", 7))
    );
    assert_eq!(store.budget_change_by_key("b", "b1").unwrap(), None);
}

#[test]
fn a_version_5_file_gets_the_money_tables_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v5");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        two_campaigns(&store.event_log());
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "DROP TABLE spend_reports; DROP TABLE budget_changes; ALTER TABLE decisions DROP COLUMN skip; DROP TABLE revisions; DROP TABLE idempotency_keys; ALTER TABLE decisions DROP COLUMN revision; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 5;",
            )
            .unwrap();
    }
    let error = Store::open_read_only(dir.path()).unwrap_err();
    assert!(error.to_string().contains("schema version 5"), "{error}");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
    assert_eq!(store.event_log().last_seq().unwrap(), 7);
    assert!(store.spend_reports("a").unwrap().is_empty());
    assert!(store.budget_changes("a").unwrap().is_empty());
    assert_eq!(
        store.append_spend_reports(&[spend("r1", 1.0)]).unwrap(),
        [SpendReportOutcome::Appended { id: 1 }]
    );
    drop(store);
    assert_eq!(
        Store::open_read_only(dir.path())
            .unwrap()
            .spend_reports("a")
            .unwrap()
            .len(),
        1
    );
}

/// A skip is logged like a decision with its reason; the served decisions' readers
/// leave it out and `skips` reads it.
#[test]
fn skips_are_logged_apart_from_the_served_decisions() {
    let store = Store::open_in_memory().unwrap();
    store.insert_campaign(&campaign("a", 1)).unwrap();
    let skip = DecisionRow {
        skip: Some("budget".into()),
        version: 0,
        ..decision("s1", "a")
    };
    store
        .append_decisions(&[decision("d1", "a"), skip.clone()])
        .unwrap();
    let served = store.decisions("a", 0, 10).unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].1, decision("d1", "a"));
    let skips = store.skips("a", 0, 10).unwrap();
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].1, skip);
    assert_eq!(store.decision("s1").unwrap(), Some(skip));
}

/// Version 7 to 8: the revisions and idempotency keys tables, and a decision's
/// revision (1 for the decisions stored before).
#[test]
fn a_version_7_file_gets_revisions_and_its_decisions_read_as_revision_one() {
    let dir = TempDir::new("migrate-v7");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store.append_decisions(&[decision("d1", "a")]).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP TABLE revisions; DROP TABLE idempotency_keys; ALTER TABLE decisions DROP COLUMN revision; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 7;",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let stored = store.decision("d1").unwrap().unwrap();
    assert_eq!(stored.revision, 1);
    assert!(store.revisions("a").unwrap().is_empty());
    let revision = tla_store::RevisionRow {
        campaign_id: "a".into(),
        revision: 2,
        spec_json: "{}".into(),
        from_seq: 0,
        reason: None,
        key_id: "k".into(),
        at_ms: 2,
    };
    store.append_revision(&revision, None).unwrap();
    assert_eq!(store.revisions("a").unwrap(), [revision]);
}

/// Version 8 to 9: a decision's arm (decisions stored before read as not held out),
/// stored and read back.
#[test]
fn a_version_8_file_gets_held_out_and_its_decisions_read_as_not_held_out() {
    let dir = TempDir::new("migrate-v8");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store.append_decisions(&[decision("d1", "a")]).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch("DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP INDEX revisions_by_idempotency_key; ALTER TABLE revisions DROP COLUMN idempotency_key; ALTER TABLE revisions DROP COLUMN request_digest; ALTER TABLE decisions DROP COLUMN held_out; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 8;")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.decision("d1").unwrap().unwrap().held_out);
    let held = DecisionRow {
        held_out: true,
        ..decision("d2", "a")
    };
    store.append_decisions(std::slice::from_ref(&held)).unwrap();
    assert_eq!(store.decision("d2").unwrap(), Some(held));
    let page = store.decisions("a", 0, 10).unwrap();
    assert_eq!(
        page.iter().map(|(_, d)| d.held_out).collect::<Vec<_>>(),
        [false, true]
    );
}

#[test]
fn a_version_9_file_gets_the_platform_tables_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v9");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch("DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP INDEX revisions_by_idempotency_key; ALTER TABLE revisions DROP COLUMN idempotency_key; ALTER TABLE revisions DROP COLUMN request_digest; DROP TABLE plans; DROP TABLE plan_ads; DROP TABLE result_imports; DROP TABLE platform_results; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 9;")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
    assert!(store.plans("a").unwrap().is_empty());
    assert!(store.results("a", None).unwrap().is_empty());
}

#[test]
fn a_version_11_file_gets_the_stream_mirror_tables_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v11");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch(
                "DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP INDEX revisions_by_idempotency_key; ALTER TABLE revisions DROP COLUMN idempotency_key; ALTER TABLE revisions DROP COLUMN request_digest; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 11;",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
    assert_eq!(store.mirror_position().unwrap(), None);
    assert!(store.mirror_records().unwrap().is_empty());
}

/// Version 12 to 13: revisions and budget changes stored before have no key; keyed
/// ones are stored and found after.
#[test]
fn a_version_12_file_gets_the_change_keys_and_keeps_its_rows() {
    let dir = TempDir::new("migrate-v12");
    let change = NewBudgetChange {
        campaign_id: "a".into(),
        old_budget: 100.0,
        new_budget: 200.0,
        old_daily_cap: None,
        new_daily_cap: None,
        spent: 0.0,
        reason: "more".into(),
        key_id: "k".into(),
        at_ms: 9,
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
        store.append_budget_change(&change, None).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch("DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP INDEX revisions_by_idempotency_key; ALTER TABLE revisions DROP COLUMN idempotency_key; ALTER TABLE revisions DROP COLUMN request_digest; PRAGMA user_version = 12;")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.budget_changes("a").unwrap().len(), 1);
    assert_eq!(store.budget_change_by_key("a", "x").unwrap(), None);
    let key = tla_store::ChangeKey {
        key: "x".into(),
        request_digest: [3; 32],
    };
    let second = store.append_budget_change(&change, Some(&key)).unwrap();
    assert_eq!(
        store.budget_change_by_key("a", "x").unwrap(),
        Some((second, key))
    );
}

#[test]
fn a_version_10_file_gets_the_dashboard_tables_and_keeps_its_data() {
    let dir = TempDir::new("migrate-v10");
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_campaign(&campaign("a", 1)).unwrap();
    }
    {
        let connection = rusqlite::Connection::open(dir.database()).unwrap();
        connection
            .execute_batch("DROP INDEX budget_changes_by_idempotency_key; ALTER TABLE budget_changes DROP COLUMN idempotency_key; ALTER TABLE budget_changes DROP COLUMN request_digest; DROP INDEX revisions_by_idempotency_key; ALTER TABLE revisions DROP COLUMN idempotency_key; ALTER TABLE revisions DROP COLUMN request_digest; DROP TABLE rollups; DROP TABLE rollup_state; DROP TABLE control_audits; DROP TABLE stream_records; DROP TABLE stream_mirror; PRAGMA user_version = 10;")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.campaigns().unwrap(), [campaign("a", 1)]);
    assert!(store.plans("a").unwrap().is_empty());
    assert_eq!(store.rollup_through("a").unwrap(), 0);
    assert!(store.controls("a").unwrap().is_empty());
    let version: i64 = rusqlite::Connection::open(dir.database())
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// `decisions_by_time` pages a campaign's served decisions in (time, id) order, skips
/// and other campaigns left out, whatever order they were written in.
#[test]
fn decisions_by_time_page_in_time_then_id_order() {
    let store = Store::open_in_memory().unwrap();
    store.insert_campaign(&campaign("a", 1)).unwrap();
    store.insert_campaign(&campaign("b", 1)).unwrap();
    let at = |id: &str, campaign: &str, at_ms: i64| DecisionRow {
        at_ms,
        ..decision(id, campaign)
    };
    let skip = DecisionRow {
        skip: Some("budget".into()),
        version: 0,
        ..at("s", "a", 2)
    };
    store
        .append_decisions(&[
            at("d3", "a", 3),
            at("d2b", "a", 2),
            at("x", "b", 2),
            skip,
            at("d2a", "a", 2),
            at("d1", "a", 1),
        ])
        .unwrap();
    let mut read = Vec::new();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store
            .decisions_by_time("a", after.as_ref().map(|(t, id)| (*t, id.as_str())), 2)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.at_ms, last.decision_id.clone()));
        read.extend(page.into_iter().map(|d| d.decision_id));
    }
    assert_eq!(read, ["d1", "d2a", "d2b", "d3"]);
}
