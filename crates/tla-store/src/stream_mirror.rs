//! A server's mirror of a shared stream, kept in its own SQLite file so that a restart
//! reads the stream only after the last sequence it mirrored (docs/scale-out.md,
//! *Cold start*). The stream's events go into `events` with their stream sequences as
//! `seq` (its `UNIQUE (campaign_id, event_id)` is the index the first-copy rule needs);
//! every other record goes into `stream_records` as its raw bytes; each correction as
//! applied (its effect and old value decided in stream order) also into `corrections`,
//! where reports and the offline tools read a single server's corrections; the position
//! into `stream_mirror`. [`Store::write_mirror`] writes one batch and the position in
//! one transaction, so the position never covers rows that are not there.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::correction::StoredCorrection;
use crate::error::{StoreError, from_sql_int, to_sql_int};
use crate::event_log::StoredEvent;
use crate::group_commit::INSERT_EVENT;
use crate::store::{Store, insert_correction};

/// Where a data directory's mirror of a stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPosition {
    /// The stream it mirrors.
    pub stream: String,
    /// The last stream sequence mirrored (every record up to it is in the file).
    pub mirrored_seq: u64,
}

/// One batch of a stream as applied, written by [`Store::write_mirror`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MirrorBatch {
    /// Events (first copies only), ascending by stream sequence.
    pub events: Vec<StoredEvent>,
    /// Every other record: its stream sequence and its bytes as received.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The corrections recorded by the batch's correction records, numbered in stream
    /// order across all campaigns (`id` from 1): written into `corrections` under
    /// their ids, a row already holding an id is kept (written again after a restart).
    pub corrections: Vec<StoredCorrection>,
}

impl MirrorBatch {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.records.is_empty() && self.corrections.is_empty()
    }
}

impl Store {
    /// The mirror's position, or `None` when this file never mirrored a stream.
    pub fn mirror_position(&self) -> Result<Option<MirrorPosition>, StoreError> {
        let row: Option<(String, i64)> = self
            .database
            .general()
            .prepare_cached("SELECT stream, mirrored_seq FROM stream_mirror")
            .and_then(|mut statement| {
                statement
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(StoreError::sqlite("reading the stream mirror's position"))?;
        row.map(|(stream, seq)| {
            Ok(MirrorPosition {
                stream,
                mirrored_seq: from_sql_int("stream_mirror", "mirrored_seq", seq)?,
            })
        })
        .transpose()
    }

    /// Writes a batch of the stream `stream` and the new position `mirrored_seq` in one
    /// transaction (durable on return, `synchronous = FULL`). An event whose id is
    /// stored already is refused: the caller applies the first-copy rule before. A
    /// correction whose id is stored already is skipped (the same correction: its id
    /// is its place among the stream's corrections).
    pub fn write_mirror(
        &self,
        stream: &str,
        batch: &MirrorBatch,
        mirrored_seq: u64,
    ) -> Result<(), StoreError> {
        let position = to_sql_int("mirrored_seq", mirrored_seq)?;
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the mirror transaction"))?;
        {
            let mut insert = transaction
                .prepare_cached(INSERT_EVENT)
                .map_err(StoreError::sqlite("preparing the mirror's event insert"))?;
            for event in &batch.events {
                let inserted = insert
                    .execute(params![
                        to_sql_int("seq", event.seq)?,
                        event.campaign_id,
                        event.event_id,
                        event.decision_id,
                        event.kind.as_str(),
                        event.value,
                        event.segment,
                        to_sql_int("version", event.version)?,
                        event.decided_at_ms,
                        event.at_ms,
                        event.amount_known,
                    ])
                    .map_err(StoreError::sqlite("writing the mirror's events"))?;
                if inserted != 1 {
                    return Err(StoreError::InvalidInput(format!(
                        "event {:?} of campaign {:?} (stream sequence {}) is in the mirror already; \
                         the mirror keeps the first copy of each id",
                        event.event_id, event.campaign_id, event.seq
                    )));
                }
            }
            let mut insert = transaction
                .prepare_cached("INSERT INTO stream_records (seq, payload) VALUES (?1, ?2)")
                .map_err(StoreError::sqlite("preparing the mirror's record insert"))?;
            for (seq, payload) in &batch.records {
                insert
                    .execute(params![to_sql_int("seq", *seq)?, payload])
                    .map_err(StoreError::sqlite("writing the mirror's records"))?;
            }
        }
        for correction in &batch.corrections {
            insert_correction(&transaction, Some(correction.id), correction)?;
        }
        transaction
            .execute(
                "INSERT INTO stream_mirror (stream, mirrored_seq) VALUES (?1, ?2) \
                 ON CONFLICT (stream) DO UPDATE SET mirrored_seq = excluded.mirrored_seq",
                params![stream, position],
            )
            .map_err(StoreError::sqlite("writing the mirror's position"))?;
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing the mirror"))
    }

    /// The mirror's records other than events, ascending by stream sequence.
    pub fn mirror_records(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached("SELECT seq, payload FROM stream_records ORDER BY seq")
            .map_err(StoreError::sqlite("reading the mirror's records"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading the mirror's records"))?;
        rows.into_iter()
            .map(|(seq, payload)| Ok((from_sql_int("stream_records", "seq", seq)?, payload)))
            .collect()
    }

    /// The mirror's first record other than an event (on a stream, its genesis: the
    /// record that names the stream's secret), or `None` when it holds none.
    pub fn first_mirror_record(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .database
            .general()
            .prepare_cached("SELECT seq, payload FROM stream_records ORDER BY seq LIMIT 1")
            .and_then(|mut statement| {
                statement
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(StoreError::sqlite("reading the mirror's first record"))?;
        row.map(|(seq, payload)| Ok((from_sql_int("stream_records", "seq", seq)?, payload)))
            .transpose()
    }

    /// How many stored events have `seq > after`.
    pub fn events_after(&self, after: u64) -> Result<u64, StoreError> {
        let after = to_sql_int("seq", after)?;
        let count: i64 = self
            .database
            .general()
            .prepare_cached("SELECT count(*) FROM events WHERE seq > ?1")
            .and_then(|mut statement| statement.query_row([after], |row| row.get(0)))
            .map_err(StoreError::sqlite("counting events"))?;
        from_sql_int("events", "count", count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CorrectionAction, EventKind, EventLog, NewCorrection};

    fn stored(seq: u64, id: &str) -> StoredEvent {
        StoredEvent {
            seq,
            campaign_id: "c".into(),
            event_id: id.into(),
            decision_id: "d".into(),
            kind: EventKind::Click,
            value: 0.1 + 0.2,
            amount_known: true,
            segment: 1,
            version: 2,
            decided_at_ms: 3,
            at_ms: 4,
        }
    }

    #[test]
    fn a_batch_and_its_position_are_written_together_and_read_back() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.mirror_position().unwrap(), None);
        let batch = MirrorBatch {
            events: vec![stored(2, "e1"), stored(5, "e2")],
            records: vec![(1, b"genesis".to_vec()), (3, b"other".to_vec())],
            corrections: Vec::new(),
        };
        store.write_mirror("s", &batch, 6).unwrap();
        assert_eq!(
            store.mirror_position().unwrap(),
            Some(MirrorPosition {
                stream: "s".into(),
                mirrored_seq: 6
            })
        );
        let log = store.event_log();
        assert_eq!(log.read_after(0, 10).unwrap(), batch.events);
        assert_eq!(log.last_seq().unwrap(), 5);
        assert_eq!(store.mirror_records().unwrap(), batch.records);
        assert_eq!(
            store.first_mirror_record().unwrap(),
            Some((1, b"genesis".to_vec()))
        );
        assert_eq!(store.events_after(2).unwrap(), 1);
        // A second copy of an id is refused, and nothing of its batch is written.
        let again = MirrorBatch {
            events: vec![stored(7, "e3"), stored(8, "e1")],
            records: vec![(9, b"x".to_vec())],
            corrections: Vec::new(),
        };
        let error = store.write_mirror("s", &again, 9).unwrap_err();
        assert!(error.to_string().contains("first copy"), "{error}");
        assert_eq!(store.mirror_position().unwrap().unwrap().mirrored_seq, 6);
        assert_eq!(log.last_seq().unwrap(), 5);
        assert_eq!(store.mirror_records().unwrap().len(), 2);
    }

    #[test]
    fn corrections_are_written_under_their_ids_once_with_their_position() {
        let store = Store::open_in_memory().unwrap();
        let event = stored(2, "e1");
        let fix = |id, action, at_ms| {
            StoredCorrection::of(
                id,
                &event,
                Some(0.1 + 0.2),
                &NewCorrection {
                    campaign_id: "c".into(),
                    event_id: "e1".into(),
                    action,
                    reason: "typo".into(),
                    key_id: "k".into(),
                    at_ms,
                },
            )
        };
        let first = fix(1, CorrectionAction::Correct { value: 3.5 }, 10);
        let batch = MirrorBatch {
            events: vec![event.clone()],
            records: vec![(3, b"correction".to_vec())],
            corrections: vec![first.clone()],
        };
        store.write_mirror("s", &batch, 3).unwrap();
        let log = store.event_log();
        assert_eq!(log.corrections("c").unwrap(), vec![first.clone()]);
        // Written again (a restart that applies the batch again): still one row, the
        // first; a later correction is added under its own id.
        let second = fix(2, CorrectionAction::Retract, 11);
        let again = MirrorBatch {
            corrections: vec![first.clone(), second.clone()],
            ..MirrorBatch::default()
        };
        store.write_mirror("s", &again, 4).unwrap();
        assert_eq!(
            log.corrections("c").unwrap(),
            vec![first.clone(), second.clone()]
        );
        // Another correction under a stored id: the file is not this stream's.
        let other = MirrorBatch {
            corrections: vec![fix(2, CorrectionAction::Retract, 99)],
            ..MirrorBatch::default()
        };
        let error = store.write_mirror("s", &other, 5).unwrap_err();
        assert!(error.to_string().contains("not this stream's"), "{error}");
        assert_eq!(store.mirror_position().unwrap().unwrap().mirrored_seq, 4);
        assert_eq!(log.corrections("other").unwrap(), vec![]);
        // What the single server's log decides from the table: a retraction is final.
        let outcome = log
            .append_correction(&NewCorrection {
                campaign_id: "c".into(),
                event_id: "e1".into(),
                action: CorrectionAction::Correct { value: 1.0 },
                reason: "late".into(),
                key_id: "k".into(),
                at_ms: 12,
            })
            .unwrap();
        assert!(
            matches!(outcome, crate::CorrectionOutcome::AlreadyRetracted(ref c) if c.id == 2),
            "{outcome:?}"
        );
    }
}
