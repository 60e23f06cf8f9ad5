//! [`Store`]: the database file, its connections, and the tables other than the
//! event log; [`SqliteEventLog`]: the event log over the same database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::checkpoint::Checkpointer;
use crate::correction::{
    CorrectionAction, CorrectionOutcome, NewCorrection, Standing, StoredCorrection, standing,
    validate_correction,
};
use crate::error::{StoreError, from_sql_int, to_sql_int};
use crate::event_log::{AppendOutcome, EventKind, EventLog, NewEvent, StoredEvent, validate_event};
use crate::group_commit::{EncodedDecision, EncodedEvent, GroupCommit, JobOutput, WriteJob};
use crate::money::{
    NewBudgetChange, NewSpendReport, SpendReportOutcome, StoredBudgetChange, StoredSpendReport,
    validate_budget_change, validate_spend_report,
};
use crate::rows::{CampaignRow, CampaignStatus, DecisionRow, KeyRow};
use crate::schema;

/// The name of the database file inside the data directory.
pub const DATABASE_FILE_NAME: &str = "tla.db";

/// How many snapshots are kept per campaign (the newest by `covers_seq`).
pub const SNAPSHOTS_KEPT: usize = 3;

/// `SELECT` of every column of an event, in [`RawEvent::from_row`]'s order, followed by
/// the rest of a query: the one list of the columns every event read uses.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT seq, campaign_id, event_id, decision_id, kind, value, segment, version, \
             decided_at_ms, at_ms, amount_known FROM events ",
            $rest
        )
    };
}

/// A page of one campaign's events of one kind. `INDEXED BY` makes SQLite fail rather
/// than fall back to a scan of the whole log; the index ends with the rowid (`seq`),
/// so `seq > ?3 ORDER BY seq` is a range of the index, in order.
const CAMPAIGN_EVENTS_SQL: &str = select_events!(
    "INDEXED BY events_by_campaign_kind \
     WHERE campaign_id = ?1 AND kind = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"
);

/// How many events a campaign holds, counted on the `(campaign_id, kind)` index.
const CAMPAIGN_EVENT_COUNT_SQL: &str =
    "SELECT COUNT(*) FROM events INDEXED BY events_by_campaign_kind WHERE campaign_id = ?1";

/// [`CAMPAIGN_EVENTS_SQL`] with only the columns a sum per decision needs.
const CAMPAIGN_EVENT_VALUES_SQL: &str = "SELECT seq, decision_id, value \
     FROM events INDEXED BY events_by_campaign_kind \
     WHERE campaign_id = ?1 AND kind = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4";

/// Events read per page by [`Store::value_by_decision`]; the general connection is
/// released between pages.
const EVENT_PAGE: usize = 8_192;

/// The storage layer: one SQLite database in a data directory.
///
/// Cheap to clone (an `Arc` inside) and safe to share between threads. Every method
/// blocks on disk I/O; call it from a blocking thread (`spawn_blocking`), not from
/// an async task.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) database: Arc<Database>,
}

#[derive(Debug)]
pub(crate) struct Database {
    /// The database file, or `None` in memory.
    path: Option<PathBuf>,
    /// Reads, and the rare writes (campaigns, keys, snapshots).
    general: Mutex<Connection>,
    /// The connection group-commit leaders append events and decisions with, so
    /// appends never wait behind a read. `None` in memory, where `general` is the
    /// only connection to the database.
    writer: Option<Mutex<Connection>>,
    /// The queue of appends waiting for a group commit.
    group_commit: GroupCommit,
    /// Copies the write-ahead log into the database file off the append path.
    /// `None` in memory. Declared last: dropped (stopped and joined) after the
    /// connections above are closed.
    checkpointer: Option<Checkpointer>,
}

impl Database {
    pub(crate) fn general(&self) -> MutexGuard<'_, Connection> {
        self.general.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> &Mutex<Connection> {
        self.writer.as_ref().unwrap_or(&self.general)
    }

    fn submit(&self, job: WriteJob) -> Result<JobOutput, StoreError> {
        self.group_commit.submit(job, self.writer(), |rows| {
            if let Some(checkpointer) = &self.checkpointer {
                checkpointer.note_committed_rows(rows);
            }
        })
    }
}

impl Store {
    /// Opens (or creates) the database `tla.db` in `dir`, creating the directory if it
    /// is missing, switching the file to write-ahead logging and creating the schema
    /// in a new file.
    ///
    /// A file with a newer schema version than this build knows, or one that is not
    /// a TLA database, is refused with [`StoreError::Schema`] before anything is
    /// written to it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::io("creating the data directory", dir, source))?;
        let path = dir.join(DATABASE_FILE_NAME);
        let shown = path.display().to_string();
        let mut general = schema::open_connection(&path)?;
        schema::check_version(&general, &shown)?;
        schema::enable_wal(&general)?;
        schema::configure(&general)?;
        schema::create_or_check(&mut general, &shown)?;
        let writer = schema::open_connection(&path)?;
        schema::configure(&writer)?;
        schema::configure_writer(&writer)?;
        let checkpoint_connection = schema::open_connection(&path)?;
        schema::configure(&checkpoint_connection)?;
        let checkpointer =
            Checkpointer::start(checkpoint_connection).map_err(|source| StoreError::Io {
                path: path.clone(),
                source: Arc::new(source),
            })?;
        Ok(Store {
            database: Arc::new(Database {
                path: Some(path),
                general: Mutex::new(general),
                writer: Some(Mutex::new(writer)),
                group_commit: GroupCommit::default(),
                checkpointer: Some(checkpointer),
            }),
        })
    }

    /// Opens the database `tla.db` in `dir` for reading only: the database and its
    /// write-ahead log are never written, so a report can run over a read-only copy of
    /// a data directory. Writes through the store fail. The one exception is below:
    /// with a write-ahead log present, SQLite may create or update its shared-memory
    /// index `tla.db-shm` (a copy that has `tla.db-wal` but no `tla.db-shm` therefore
    /// needs a writable directory, or a clean stop of its server before copying).
    ///
    /// A file with neither a write-ahead log nor its shared-memory index beside it (a
    /// server stopped cleanly, or a copy of its directory) is opened `immutable`:
    /// SQLite takes no lock and creates no file; this is decided once, at the open, so
    /// a server must not start on the directory while the reader runs. A file with either (a server running
    /// or killed) is opened `mode=ro`, which reads the commits still in the log and
    /// takes the usual read locks, so a server may go on writing; SQLite may then
    /// update the shared-memory index (`tla.db-shm`), never the database or its log.
    ///
    /// Refused with [`StoreError::Schema`]: a file that is not a TLA database, or
    /// whose schema version is not this build's (an older one needs the migration a
    /// writable open does).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE_FILE_NAME);
        std::fs::metadata(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source: Arc::new(source),
        })?;
        let beside = |suffix: &str| dir.join(format!("{DATABASE_FILE_NAME}-{suffix}")).exists();
        let mode = if beside("wal") || beside("shm") {
            "mode=ro"
        } else {
            "immutable=1"
        };
        let general = schema::open_read_only_connection(&path, mode)?;
        let shown = path.display().to_string();
        let version = schema::check_version(&general, &shown)?;
        if version != schema::SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "{shown} has schema version {version}; reading without writing needs version {}: \
                 open the directory once with a writable `tla` command (which migrates it), or use a newer copy",
                schema::SCHEMA_VERSION
            )));
        }
        Ok(Store {
            database: Arc::new(Database {
                path: Some(path),
                general: Mutex::new(general),
                writer: None,
                group_commit: GroupCommit::default(),
                checkpointer: None,
            }),
        })
    }

    /// A fresh database in memory, for tests. Same schema and semantics, no file and
    /// no durability; one connection serves reads and appends.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut connection = Connection::open_in_memory()
            .map_err(StoreError::sqlite("opening an in-memory database"))?;
        schema::configure(&connection)?;
        schema::create_or_check(&mut connection, ":memory:")?;
        Ok(Store {
            database: Arc::new(Database {
                path: None,
                general: Mutex::new(connection),
                writer: None,
                group_commit: GroupCommit::default(),
                checkpointer: None,
            }),
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.database.path.as_deref()
    }

    /// The event log over this database. Clones share the group-commit queue.
    pub fn event_log(&self) -> SqliteEventLog {
        SqliteEventLog {
            database: Arc::clone(&self.database),
        }
    }

    // ---- campaigns ----------------------------------------------------------------

    /// Stores a new campaign. An id already stored is a [`StoreError::Conflict`].
    pub fn insert_campaign(&self, campaign: &CampaignRow) -> Result<(), StoreError> {
        insert_campaign_row(&self.database.general(), campaign)
    }

    /// Every campaign, oldest first (by creation time, then id).
    pub fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, name, spec_json, status, created_at_ms FROM campaigns \
                 ORDER BY created_at_ms, id",
            )
            .map_err(StoreError::sqlite("listing campaigns"))?;
        let raw = statement
            .query_map([], RawCampaign::from_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("listing campaigns"))?;
        raw.into_iter().map(RawCampaign::decode).collect()
    }

    /// The campaign with this id, if stored.
    pub fn campaign(&self, id: &str) -> Result<Option<CampaignRow>, StoreError> {
        let raw = self
            .database
            .general()
            .prepare_cached(
                "SELECT id, name, spec_json, status, created_at_ms FROM campaigns WHERE id = ?1",
            )
            .and_then(|mut statement| statement.query_row([id], RawCampaign::from_row).optional())
            .map_err(StoreError::sqlite("reading a campaign"))?;
        raw.map(RawCampaign::decode).transpose()
    }

    /// Sets a campaign's status. Returns `false` if no campaign has this id.
    pub fn set_campaign_status(
        &self,
        id: &str,
        status: CampaignStatus,
    ) -> Result<bool, StoreError> {
        let updated = self
            .database
            .general()
            .prepare_cached("UPDATE campaigns SET status = ?2 WHERE id = ?1")
            .and_then(|mut statement| statement.execute(params![id, status.as_str()]))
            .map_err(StoreError::sqlite("updating a campaign's status"))?;
        Ok(updated > 0)
    }

    // ---- decisions ----------------------------------------------------------------

    /// Appends decisions to the decision log, durably, through the same group commit
    /// as the event log, in one transaction; returns how many were new. A decision
    /// whose id is already stored (same campaign, time and id) is skipped, so a write
    /// retried after an error, or a decision recovered from an event's signed id, is
    /// stored once.
    ///
    /// The whole batch is refused with [`StoreError::InvalidInput`] if a propensity is
    /// not in (0, 1] or a number exceeds `i64::MAX`. On any error nothing of the batch
    /// is stored; a full disk is [`StoreError::StorageFull`].
    pub fn append_decisions(&self, rows: &[DecisionRow]) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let encoded = rows
            .iter()
            .map(encode_decision)
            .collect::<Result<Vec<_>, _>>()?;
        match self.database.submit(WriteJob::Decisions(encoded))? {
            JobOutput::Decisions(stored) => Ok(stored),
            JobOutput::Events(_) => unreachable!("a decisions job yields a count"),
        }
    }

    /// The event sequence up to which every stored event's decision is known to be in
    /// the decision log (0 if never recorded): the server records it as it writes its
    /// decisions, and on opening checks only the events after it.
    pub fn decisions_cover_seq(&self) -> Result<u64, StoreError> {
        let raw: Option<Vec<u8>> = self
            .database
            .general()
            .query_row(
                "SELECT value FROM meta WHERE key = 'decisions_cover_seq'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::sqlite("reading the decision log's coverage"))?;
        let Some(raw) = raw else {
            return Ok(0);
        };
        let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| StoreError::Corrupt {
            table: "meta",
            detail: format!("decisions_cover_seq is {} bytes, not 8", raw.len()),
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Records, durably, that every event up to `seq` has its decision in the
    /// decision log (see [`Store::decisions_cover_seq`]).
    pub fn set_decisions_cover_seq(&self, seq: u64) -> Result<(), StoreError> {
        // Stored as 8 little-endian bytes: `meta` holds blobs.
        let seq = seq.to_le_bytes().to_vec();
        self.database
            .general()
            .execute(
                "INSERT INTO meta (key, value) VALUES ('decisions_cover_seq', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![seq],
            )
            .map_err(StoreError::sqlite("recording the decision log's coverage"))?;
        Ok(())
    }

    /// On a shared stream: the sequence of the last state-change record this data
    /// directory applied (0 if none). Stored in `meta` as 8 little-endian bytes.
    pub fn stream_changes_through(&self) -> Result<u64, StoreError> {
        let raw: Option<Vec<u8>> = self
            .database
            .general()
            .query_row(
                "SELECT value FROM meta WHERE key = 'stream_changes_through'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::sqlite("reading the stream's applied changes"))?;
        let Some(raw) = raw else {
            return Ok(0);
        };
        let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| StoreError::Corrupt {
            table: "meta",
            detail: format!("stream_changes_through is {} bytes, not 8", raw.len()),
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Records, durably, that every state-change record of the stream up to `seq` is
    /// applied (see [`Store::stream_changes_through`]).
    pub fn set_stream_changes_through(&self, seq: u64) -> Result<(), StoreError> {
        let seq = seq.to_le_bytes().to_vec();
        self.database
            .general()
            .execute(
                "INSERT INTO meta (key, value) VALUES ('stream_changes_through', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![seq],
            )
            .map_err(StoreError::sqlite("recording the stream's applied changes"))?;
        Ok(())
    }

    /// A campaign's served decisions (skips left out: [`Store::skips`]) with a row id
    /// greater than `after_rowid`, ascending, at most `limit`, each with its row id
    /// (pass the last one back to read the next page; start with 0).
    pub fn decisions(
        &self,
        campaign_id: &str,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<(i64, DecisionRow)>, StoreError> {
        self.decision_page(campaign_id, after_rowid, limit, false)
    }

    /// A campaign's skips (opportunities declined under its budget), paged as
    /// [`Store::decisions`], which leaves them out.
    pub fn skips(
        &self,
        campaign_id: &str,
        after_rowid: i64,
        limit: usize,
    ) -> Result<Vec<(i64, DecisionRow)>, StoreError> {
        self.decision_page(campaign_id, after_rowid, limit, true)
    }

    /// A campaign's served decisions (skips left out) in the order of their time, then
    /// their id, after the decision `after` (its time and id; `None`: from the first),
    /// at most `limit`: read through the `decisions_by_time` index, so several data
    /// directories' logs can be merged page by page in one order (`tla export` with
    /// several `--data`). Pass the last row's time and id back to read the next page.
    pub fn decisions_by_time(
        &self,
        campaign_id: &str,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        let connection = self.database.general();
        // Two statements rather than `?2 IS NULL OR ...`: each is one index range.
        let (sql, at_ms, id) = match after {
            None => (DECISIONS_BY_TIME_FIRST_SQL, None, None),
            Some((at_ms, id)) => (DECISIONS_BY_TIME_AFTER_SQL, Some(at_ms), Some(id)),
        };
        let mut statement = connection
            .prepare_cached(sql)
            .map_err(StoreError::sqlite("reading decisions by time"))?;
        let rows = |row: &rusqlite::Row<'_>| RawDecision::from_row(row, 0);
        let raw = match (at_ms, id) {
            (Some(at_ms), Some(id)) => {
                statement.query_map(params![campaign_id, sql_limit(limit), at_ms, id], rows)
            }
            _ => statement.query_map(params![campaign_id, sql_limit(limit)], rows),
        }
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(StoreError::sqlite("reading decisions by time"))?;
        raw.into_iter().map(RawDecision::decode).collect()
    }

    /// One page of a campaign's decision log: its skips or its served decisions.
    fn decision_page(
        &self,
        campaign_id: &str,
        after_rowid: i64,
        limit: usize,
        skips: bool,
    ) -> Result<Vec<(i64, DecisionRow)>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, decision_id, campaign_id, segment, version, propensity, model_version, at_ms, skip, revision, held_out \
                 FROM decisions WHERE campaign_id = ?1 AND id > ?2 AND (skip IS NOT NULL) = ?4 \
                 ORDER BY id LIMIT ?3",
            )
            .map_err(StoreError::sqlite("reading decisions"))?;
        let raw = statement
            .query_map(
                params![campaign_id, after_rowid, sql_limit(limit), skips],
                |row| Ok((row.get::<_, i64>(0)?, RawDecision::from_row(row, 1)?)),
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading decisions"))?;
        raw.into_iter()
            .map(|(rowid, decision)| Ok((rowid, decision.decode()?)))
            .collect()
    }

    /// The decision with this id, if stored. A scan of the decision log (ids are not
    /// indexed): for tests and investigation, not for the request path.
    pub fn decision(&self, decision_id: &str) -> Result<Option<DecisionRow>, StoreError> {
        let raw = self
            .database
            .general()
            .prepare_cached(
                "SELECT decision_id, campaign_id, segment, version, propensity, model_version, at_ms, skip, revision, held_out \
                 FROM decisions WHERE decision_id = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([decision_id], |row| RawDecision::from_row(row, 0))
                    .optional()
            })
            .map_err(StoreError::sqlite("reading a decision"))?;
        raw.map(RawDecision::decode).transpose()
    }

    // ---- one campaign's events -----------------------------------------------------

    /// A campaign's events of one kind with `seq > after`, ascending, at most `limit`
    /// (pass the last `seq` back to read the next page; start with 0).
    ///
    /// Read through the index on `(campaign_id, kind)`: the cost follows the number of
    /// matching events, not the size of the log (which holds every campaign).
    pub fn campaign_events(
        &self,
        campaign_id: &str,
        kind: EventKind,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(CAMPAIGN_EVENTS_SQL)
            .map_err(StoreError::sqlite("reading a campaign's events"))?;
        let raw = statement
            .query_map(
                params![campaign_id, kind.as_str(), after, sql_limit(limit)],
                RawEvent::from_row,
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading a campaign's events"))?;
        raw.into_iter().map(RawEvent::decode).collect()
    }

    /// How many events campaign `campaign_id` holds (counted on the `(campaign_id, kind)`
    /// index, without reading the events).
    pub fn campaign_event_count(&self, campaign_id: &str) -> Result<u64, StoreError> {
        let connection = self.database.general();
        let count: i64 = connection
            .prepare_cached(CAMPAIGN_EVENT_COUNT_SQL)
            .and_then(|mut statement| statement.query_row(params![campaign_id], |row| row.get(0)))
            .map_err(StoreError::sqlite("counting a campaign's events"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// A reader of all of campaign `campaign_id`'s events in log order, through the
    /// `(campaign_id, kind)` index: one cursor per kind, merged by sequence number, each
    /// event read once. Worth it when the campaign holds a small share of the log; for a
    /// large share the log's own sequential scan ([`EventLog::read_after`]) is faster
    /// (index lookups are random reads).
    pub fn campaign_events_reader<'a>(&'a self, campaign_id: &'a str) -> CampaignEventsReader<'a> {
        CampaignEventsReader {
            store: self,
            campaign_id,
            cursors: EventKind::ALL.map(|kind| KindCursor {
                kind,
                after: 0,
                buffer: std::collections::VecDeque::new(),
                exhausted: false,
            }),
        }
    }

    /// The sum of a campaign's events of one kind that happened at or after
    /// `since_ms` (their `at`), as stored: corrections are not applied. Read through
    /// the index on `(campaign_id, kind)`. What a day's spend was, for the daily cap
    /// after a restart.
    pub fn value_since(
        &self,
        campaign_id: &str,
        kind: EventKind,
        since_ms: i64,
    ) -> Result<f64, StoreError> {
        self.database
            .general()
            .prepare_cached(
                "SELECT coalesce(sum(value), 0.0) FROM events \
                 WHERE campaign_id = ?1 AND kind = ?2 AND at_ms >= ?3",
            )
            .and_then(|mut statement| {
                statement.query_row(params![campaign_id, kind.as_str(), since_ms], |row| {
                    row.get(0)
                })
            })
            .map_err(StoreError::sqlite(
                "summing a campaign's events since a time",
            ))
    }

    /// The values of a campaign's events of one kind, summed per decision id: with
    /// [`EventKind::Conversion`], each decision's donations (decisions without such an
    /// event are absent). Reads only the matching events, through the index on
    /// `(campaign_id, kind)`, a page at a time.
    pub fn value_by_decision(
        &self,
        campaign_id: &str,
        kind: EventKind,
    ) -> Result<HashMap<String, f64>, StoreError> {
        self.value_by_decision_through(campaign_id, kind, u64::MAX)
    }

    /// [`Store::value_by_decision`] of the events up to sequence `through` only (a
    /// server of a stream checks a budget change against the costs before the change's
    /// place in the stream, though its mirror may hold later ones).
    pub fn value_by_decision_through(
        &self,
        campaign_id: &str,
        kind: EventKind,
        through: u64,
    ) -> Result<HashMap<String, f64>, StoreError> {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let mut sums: HashMap<String, f64> = HashMap::new();
        let mut after: i64 = 0;
        loop {
            let page: Vec<(i64, String, f64)> = {
                let connection = self.database.general();
                let mut statement = connection
                    .prepare_cached(CAMPAIGN_EVENT_VALUES_SQL)
                    .map_err(StoreError::sqlite("reading a campaign's event values"))?;
                statement
                    .query_map(
                        params![campaign_id, kind.as_str(), after, sql_limit(EVENT_PAGE)],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(StoreError::sqlite("reading a campaign's event values"))?
            };
            let Some(&(last, _, _)) = page.last() else {
                break;
            };
            let full = page.len() == EVENT_PAGE;
            for (seq, decision_id, value) in page {
                if seq > through {
                    return Ok(sums);
                }
                *sums.entry(decision_id).or_default() += value;
            }
            if !full {
                break;
            }
            after = last;
        }
        Ok(sums)
    }

    // ---- money: spend reports and budget changes -------------------------------------

    /// Stores a batch of spend reports in one durable transaction and says, report by
    /// report in batch order, what it did: a new `(campaign_id, report_id)` is
    /// appended; an exact repeat of a stored report
    /// ([`NewSpendReport::is_exact_repeat_of`], an earlier one of the same batch
    /// included) is a duplicate; the same id with another content a conflict. Nothing is
    /// rewritten. The whole batch is refused with [`StoreError::InvalidInput`] when a
    /// report fails [`validate_spend_report`]; on any error nothing of it is stored.
    pub fn append_spend_reports(
        &self,
        batch: &[NewSpendReport],
    ) -> Result<Vec<SpendReportOutcome>, StoreError> {
        for report in batch {
            validate_spend_report(report)?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the spend report transaction"))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for report in batch {
            let stored = transaction
                .prepare_cached(&format!(
                    "{SELECT_SPEND_REPORTS} WHERE campaign_id = ?1 AND report_id = ?2"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_row(
                            params![report.campaign_id, report.report_id],
                            RawSpendReport::from_row,
                        )
                        .optional()
                })
                .map_err(StoreError::sqlite("looking up a spend report"))?
                .map(RawSpendReport::decode)
                .transpose()?;
            if let Some(stored) = stored {
                outcomes.push(if report.is_exact_repeat_of(&stored) {
                    SpendReportOutcome::Duplicate { id: stored.id }
                } else {
                    SpendReportOutcome::Conflict { id: stored.id }
                });
                continue;
            }
            let impressions = report
                .impressions
                .map(|n| to_sql_int("impressions", n))
                .transpose()?;
            transaction
                .prepare_cached(
                    "INSERT INTO spend_reports (campaign_id, report_id, segment, start_ms, end_ms, \
                     amount, impressions, key_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        report.campaign_id,
                        report.report_id,
                        report.segment,
                        report.start_ms,
                        report.end_ms,
                        report.amount,
                        impressions,
                        report.key_id,
                        report.at_ms,
                    ])
                })
                .map_err(StoreError::sqlite("storing a spend report"))?;
            let id = from_sql_int("spend_reports", "id", transaction.last_insert_rowid())?;
            outcomes.push(SpendReportOutcome::Appended { id });
        }
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing spend reports"))?;
        Ok(outcomes)
    }

    /// Every spend report of a campaign, in the order stored.
    pub fn spend_reports(&self, campaign_id: &str) -> Result<Vec<StoredSpendReport>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(&format!(
                "{SELECT_SPEND_REPORTS} WHERE campaign_id = ?1 ORDER BY id"
            ))
            .map_err(StoreError::sqlite("reading spend reports"))?;
        let raw = statement
            .query_map(params![campaign_id], RawSpendReport::from_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading spend reports"))?;
        raw.into_iter().map(RawSpendReport::decode).collect()
    }

    /// Records a change of a campaign's budget and daily cap, durably, with the
    /// `Idempotency-Key` it was asked with, if any; returns it with its position.
    /// Refused with [`StoreError::InvalidInput`] when an amount fails
    /// [`validate_budget_change`], with [`StoreError::Conflict`] when the key is already
    /// stored for the campaign. The server checks the budget rules first.
    pub fn append_budget_change(
        &self,
        change: &NewBudgetChange,
        key: Option<&crate::living::ChangeKey>,
    ) -> Result<StoredBudgetChange, StoreError> {
        validate_budget_change(change)?;
        let connection = self.database.general();
        connection
            .prepare_cached(
                "INSERT INTO budget_changes (campaign_id, old_budget, new_budget, old_daily_cap, \
                 new_daily_cap, spent, reason, key_id, at_ms, idempotency_key, request_digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    change.campaign_id,
                    change.old_budget,
                    change.new_budget,
                    change.old_daily_cap,
                    change.new_daily_cap,
                    change.spent,
                    change.reason,
                    change.key_id,
                    change.at_ms,
                    key.map(|key| key.key.as_str()),
                    key.map(|key| key.request_digest.as_slice()),
                ])
            })
            .map_err(crate::living::key_conflict(
                "budget change",
                &change.campaign_id,
                key,
            ))?;
        let id = from_sql_int("budget_changes", "id", connection.last_insert_rowid())?;
        Ok(StoredBudgetChange {
            id,
            change: change.clone(),
        })
    }

    /// The budget change of campaign `campaign_id` made with `Idempotency-Key` `key`,
    /// and the key with its request digest; `None` when none was made with that key.
    pub fn budget_change_by_key(
        &self,
        campaign_id: &str,
        key: &str,
    ) -> Result<Option<(StoredBudgetChange, crate::living::ChangeKey)>, StoreError> {
        let found = self
            .database
            .general()
            .prepare_cached(
                "SELECT id, campaign_id, old_budget, new_budget, old_daily_cap, new_daily_cap, \
                 spent, reason, key_id, at_ms, idempotency_key, request_digest FROM budget_changes \
                 WHERE campaign_id = ?1 AND idempotency_key = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![campaign_id, key], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            budget_change_of(row)?,
                            row.get::<_, Option<String>>(10)?,
                            row.get::<_, Option<Vec<u8>>>(11)?,
                        ))
                    })
                    .optional()
            })
            .map_err(StoreError::sqlite(
                "reading a budget change by its Idempotency-Key",
            ))?;
        let Some((id, change, key, digest)) = found else {
            return Ok(None);
        };
        let id = from_sql_int("budget_changes", "id", id)?;
        Ok(
            crate::living::ChangeKey::from_columns("budget_changes", key, digest)?
                .map(|key| (StoredBudgetChange { id, change }, key)),
        )
    }

    /// Every budget change of a campaign, oldest first; the last one is in force.
    pub fn budget_changes(&self, campaign_id: &str) -> Result<Vec<StoredBudgetChange>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, campaign_id, old_budget, new_budget, old_daily_cap, new_daily_cap, \
                 spent, reason, key_id, at_ms FROM budget_changes \
                 WHERE campaign_id = ?1 ORDER BY id",
            )
            .map_err(StoreError::sqlite("reading budget changes"))?;
        let raw = statement
            .query_map(params![campaign_id], |row| {
                Ok((row.get::<_, i64>(0)?, budget_change_of(row)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading budget changes"))?;
        raw.into_iter()
            .map(|(id, change)| {
                Ok(StoredBudgetChange {
                    id: from_sql_int("budget_changes", "id", id)?,
                    change,
                })
            })
            .collect()
    }

    // ---- API keys -----------------------------------------------------------------

    /// Stores a new API key. An id already stored is a [`StoreError::Conflict`].
    pub fn insert_key(&self, key: &KeyRow) -> Result<(), StoreError> {
        let scopes_json = serde_json::to_string(&key.scopes).map_err(|error| {
            StoreError::InvalidInput(format!(
                "the scopes of key {:?} do not encode: {error}",
                key.id
            ))
        })?;
        let inserted = self
            .database
            .general()
            .prepare_cached(
                "INSERT INTO api_keys (id, hash, scopes_json, created_at_ms, revoked, label) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    key.id,
                    &key.hash[..],
                    scopes_json,
                    key.created_at_ms,
                    key.revoked,
                    key.label,
                ])
            })
            .map_err(StoreError::sqlite("inserting an api key"))?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "an api key with id {:?} already exists",
                key.id
            )));
        }
        Ok(())
    }

    /// Every API key, revoked ones included, oldest first (by creation time, then id).
    pub fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, hash, scopes_json, created_at_ms, revoked, label FROM api_keys \
                 ORDER BY created_at_ms, id",
            )
            .map_err(StoreError::sqlite("listing api keys"))?;
        let raw = statement
            .query_map([], RawKey::from_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("listing api keys"))?;
        raw.into_iter().map(RawKey::decode).collect()
    }

    /// The API key with this id, if stored (revoked or not).
    pub fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        let raw = self
            .database
            .general()
            .prepare_cached(
                "SELECT id, hash, scopes_json, created_at_ms, revoked, label FROM api_keys WHERE id = ?1",
            )
            .and_then(|mut statement| statement.query_row([id], RawKey::from_row).optional())
            .map_err(StoreError::sqlite("reading an api key"))?;
        raw.map(RawKey::decode).transpose()
    }

    /// Marks a key revoked. Returns `false` if no key has this id (revoking a revoked
    /// key returns `true`).
    pub fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let updated = self
            .database
            .general()
            .prepare_cached("UPDATE api_keys SET revoked = 1 WHERE id = ?1")
            .and_then(|mut statement| statement.execute([id]))
            .map_err(StoreError::sqlite("revoking an api key"))?;
        Ok(updated > 0)
    }

    // ---- model snapshots ----------------------------------------------------------

    /// Saves a campaign's model snapshot covering the event log up to `covers_seq`
    /// (opaque bytes), replacing one with the same `covers_seq`, and deletes all but
    /// the [`SNAPSHOTS_KEPT`] newest (by `covers_seq`) of that campaign.
    pub fn save_snapshot(
        &self,
        campaign_id: &str,
        covers_seq: u64,
        bytes: &[u8],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let covers_seq = to_sql_int("covers_seq", covers_seq)?;
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the snapshot transaction"))?;
        transaction
            .prepare_cached(
                "INSERT OR REPLACE INTO snapshots (campaign_id, covers_seq, bytes, at_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut statement| {
                statement.execute(params![campaign_id, covers_seq, bytes, at_ms])
            })
            .map_err(StoreError::sqlite("saving a snapshot"))?;
        transaction
            .prepare_cached(
                "DELETE FROM snapshots WHERE campaign_id = ?1 AND covers_seq NOT IN \
                 (SELECT covers_seq FROM snapshots WHERE campaign_id = ?1 \
                  ORDER BY covers_seq DESC LIMIT ?2)",
            )
            .and_then(|mut statement| {
                statement.execute(params![campaign_id, SNAPSHOTS_KEPT as i64])
            })
            .map_err(StoreError::sqlite("deleting old snapshots"))?;
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing a snapshot"))
    }

    /// The server's secret (32 random bytes, made by SQLite's `randomblob` the first
    /// time it is asked for, then kept): the key that signs decision ids, so ids stay
    /// valid across restarts of the same data directory.
    pub fn server_secret(&self) -> Result<Vec<u8>, StoreError> {
        let connection = self.database.general();
        connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('decision_secret', randomblob(32))",
                [],
            )
            .map_err(StoreError::sqlite("creating the server secret"))?;
        connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'decision_secret'",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("reading the server secret"))
    }

    /// This data directory's server id (16 hex digits of 8 random bytes, made the first
    /// time it is asked for, then kept): what names the server on a shared stream (its
    /// spend leases), the same across restarts.
    pub fn server_id(&self) -> Result<String, StoreError> {
        let connection = self.database.general();
        connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('server_id', randomblob(8))",
                [],
            )
            .map_err(StoreError::sqlite("creating the server id"))?;
        let bytes: Vec<u8> = connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'server_id'",
                [],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("reading the server id"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Deletes a campaign's snapshots that cover event `seq` (`covers_seq >= seq`) and
    /// returns how many: a correction of that event makes them wrong (they learned the
    /// event as it was). The snapshots left cover only earlier events, or were taken
    /// after the correction. With [`SNAPSHOTS_KEPT`] per campaign, a correction of an
    /// early event can leave none (the next rebuild starts from the prior).
    pub fn delete_snapshots_covering(
        &self,
        campaign_id: &str,
        seq: u64,
    ) -> Result<usize, StoreError> {
        let seq = to_sql_int("seq", seq)?;
        self.database
            .general()
            .prepare_cached("DELETE FROM snapshots WHERE campaign_id = ?1 AND covers_seq >= ?2")
            .and_then(|mut statement| statement.execute(params![campaign_id, seq]))
            .map_err(StoreError::sqlite(
                "deleting snapshots that cover a corrected event",
            ))
    }

    /// The newest snapshot of a campaign (highest `covers_seq`) with the sequence
    /// number it covers, if any.
    pub fn latest_snapshot(&self, campaign_id: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let raw: Option<(i64, Vec<u8>)> = self
            .database
            .general()
            .prepare_cached(
                "SELECT covers_seq, bytes FROM snapshots WHERE campaign_id = ?1 \
                 ORDER BY covers_seq DESC LIMIT 1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([campaign_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(StoreError::sqlite("reading the latest snapshot"))?;
        raw.map(|(covers_seq, bytes)| {
            Ok((from_sql_int("snapshots", "covers_seq", covers_seq)?, bytes))
        })
        .transpose()
    }
}

/// Where the server writes its decisions: a [`Store`]'s decision log, or, in tests, a
/// wrapper that injects failures (a full disk, a failed commit) to check that no
/// decision is served unlogged.
pub trait DecisionLog: Send + Sync {
    /// Appends decisions durably in one transaction and returns how many were new;
    /// on an error nothing is stored. See [`Store::append_decisions`].
    fn append_decisions(&self, rows: &[DecisionRow]) -> Result<usize, StoreError>;
}

impl DecisionLog for Store {
    fn append_decisions(&self, rows: &[DecisionRow]) -> Result<usize, StoreError> {
        Store::append_decisions(self, rows)
    }
}

/// The event log stored in the `events` table of a [`Store`]'s database, appended to
/// by leader-based group commit (see the crate documentation and `docs/storage.md`).
///
/// Cheap to clone; all clones and the [`Store`] share one queue and one writer
/// connection.
#[derive(Debug, Clone)]
pub struct SqliteEventLog {
    database: Arc<Database>,
}

impl EventLog for SqliteEventLog {
    fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = batch
            .iter()
            .map(encode_event)
            .collect::<Result<Vec<_>, _>>()?;
        match self.database.submit(WriteJob::Events(encoded))? {
            JobOutput::Events(outcomes) => Ok(outcomes),
            JobOutput::Decisions(_) => unreachable!("an events job yields event outcomes"),
        }
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(select_events!("WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
            .map_err(StoreError::sqlite("reading events"))?;
        let raw = statement
            .query_map(params![after, sql_limit(limit)], RawEvent::from_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading events"))?;
        raw.into_iter().map(RawEvent::decode).collect()
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let last_seq: i64 = self
            .database
            .general()
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(StoreError::sqlite("reading the last sequence number"))?;
        from_sql_int("events", "seq", last_seq)
    }

    fn find_event(
        &self,
        campaign_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let raw = self
            .database
            .general()
            .prepare_cached(FIND_EVENT_SQL)
            .and_then(|mut statement| {
                statement
                    .query_row(params![campaign_id, event_id], RawEvent::from_row)
                    .optional()
            })
            .map_err(StoreError::sqlite("looking up an event by id"))?;
        raw.map(RawEvent::decode).transpose()
    }

    fn append_correction(
        &self,
        correction: &NewCorrection,
    ) -> Result<CorrectionOutcome, StoreError> {
        validate_correction(correction)?;
        let mut connection = self.database.general();
        // Immediate: the check (is the event retracted?) and the insert see the same
        // state; `synchronous = FULL` makes the commit durable before we return.
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the correction transaction"))?;
        let raw = transaction
            .prepare_cached(FIND_EVENT_SQL)
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![correction.campaign_id, correction.event_id],
                        RawEvent::from_row,
                    )
                    .optional()
            })
            .map_err(StoreError::sqlite("looking up the corrected event"))?;
        let Some(event) = raw.map(RawEvent::decode).transpose()? else {
            return Ok(CorrectionOutcome::UnknownEvent);
        };
        let last = transaction
            .prepare_cached(&format!(
                "{SELECT_CORRECTIONS} WHERE campaign_id = ?1 AND event_id = ?2 ORDER BY id DESC LIMIT 1"
            ))
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![correction.campaign_id, correction.event_id],
                        RawCorrection::from_row,
                    )
                    .optional()
            })
            .map_err(StoreError::sqlite("reading an event's last correction"))?
            .map(RawCorrection::decode)
            .transpose()?;
        // The last correction is all `standing` needs: a retraction is always last.
        let old_value = match standing(&event, last.as_ref()) {
            Standing::Retracted(retraction) => {
                return Ok(CorrectionOutcome::AlreadyRetracted(retraction.clone()));
            }
            Standing::Open { value } => value,
        };
        let mut stored = StoredCorrection::of(0, &event, old_value, correction);
        insert_correction(&transaction, None, &stored)?;
        stored.id = from_sql_int("corrections", "id", transaction.last_insert_rowid())?;
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing a correction"))?;
        Ok(CorrectionOutcome::Recorded(stored))
    }

    fn corrections(&self, campaign_id: &str) -> Result<Vec<StoredCorrection>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(&format!(
                "{SELECT_CORRECTIONS} WHERE campaign_id = ?1 ORDER BY id"
            ))
            .map_err(StoreError::sqlite("reading corrections"))?;
        let raw = statement
            .query_map(params![campaign_id], RawCorrection::from_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading corrections"))?;
        raw.into_iter().map(RawCorrection::decode).collect()
    }
}

/// One event by its id, through the `UNIQUE (campaign_id, event_id)` index.
const FIND_EVENT_SQL: &str = select_events!("WHERE campaign_id = ?1 AND event_id = ?2");

/// [`Store::decisions_by_time`]'s first page: `?1` the campaign, `?2` the limit.
const DECISIONS_BY_TIME_FIRST_SQL: &str = "SELECT decision_id, campaign_id, segment, version, propensity, \
     model_version, at_ms, skip, revision, held_out FROM decisions \
     WHERE campaign_id = ?1 AND skip IS NULL ORDER BY at_ms, decision_id LIMIT ?2";

/// [`Store::decisions_by_time`]'s next pages: after the decision of time `?3` and id `?4`.
const DECISIONS_BY_TIME_AFTER_SQL: &str = "SELECT decision_id, campaign_id, segment, version, propensity, \
     model_version, at_ms, skip, revision, held_out FROM decisions \
     WHERE campaign_id = ?1 AND skip IS NULL AND (at_ms, decision_id) > (?3, ?4) \
     ORDER BY at_ms, decision_id LIMIT ?2";

/// The columns of a correction, in [`RawCorrection::from_row`]'s order.
const SELECT_CORRECTIONS: &str = "SELECT id, campaign_id, event_id, event_seq, event_kind, decision_id, \
     action, old_value, new_value, reason, key_id, at_ms FROM corrections";

/// Writes `correction` into the `corrections` table: numbered by SQLite when `id` is
/// `None` (a single server's log), else under `id` (a stream's mirror, whose ids are
/// given in stream order). A row already holding `id` is kept and nothing is written
/// when it is the same correction (a batch written again after a restart); a different
/// one is refused (the table is not this stream's). Returns the rows written (0 or 1).
pub(crate) fn insert_correction(
    connection: &Connection,
    id: Option<u64>,
    correction: &StoredCorrection,
) -> Result<usize, StoreError> {
    let written = insert_correction_row(connection, id, correction)?;
    if let (0, Some(id)) = (written, id) {
        let key = to_sql_int("id", id)?;
        let stored = connection
            .prepare_cached(&format!("{SELECT_CORRECTIONS} WHERE id = ?1"))
            .and_then(|mut statement| statement.query_row([key], RawCorrection::from_row))
            .map_err(StoreError::sqlite("reading a stored correction"))?
            .decode()?;
        if stored
            != (StoredCorrection {
                id,
                ..correction.clone()
            })
        {
            return Err(StoreError::InvalidInput(format!(
                "correction {id} of the file is {stored:?}, but the stream's correction {id} is \
                 {correction:?}: the file's corrections are not this stream's"
            )));
        }
    }
    Ok(written)
}

fn insert_correction_row(
    connection: &Connection,
    id: Option<u64>,
    correction: &StoredCorrection,
) -> Result<usize, StoreError> {
    let id = id.map(|id| to_sql_int("id", id)).transpose()?;
    let event_seq = to_sql_int("event_seq", correction.event_seq)?;
    connection
        .prepare_cached(
            "INSERT INTO corrections (id, campaign_id, event_id, event_seq, event_kind, decision_id, \
             action, old_value, new_value, reason, key_id, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                id,
                correction.campaign_id,
                correction.event_id,
                event_seq,
                correction.event_kind.as_str(),
                correction.decision_id,
                correction.action.as_str(),
                correction.old_value,
                correction.new_value(),
                correction.reason,
                correction.key_id,
                correction.at_ms,
            ])
        })
        .map_err(StoreError::sqlite("recording a correction"))
}

struct RawCorrection {
    id: i64,
    campaign_id: String,
    event_id: String,
    event_seq: i64,
    event_kind: String,
    decision_id: String,
    action: String,
    old_value: Option<f64>,
    new_value: Option<f64>,
    reason: String,
    key_id: String,
    at_ms: i64,
}

impl RawCorrection {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCorrection> {
        Ok(RawCorrection {
            id: row.get(0)?,
            campaign_id: row.get(1)?,
            event_id: row.get(2)?,
            event_seq: row.get(3)?,
            event_kind: row.get(4)?,
            decision_id: row.get(5)?,
            action: row.get(6)?,
            old_value: row.get(7)?,
            new_value: row.get(8)?,
            reason: row.get(9)?,
            key_id: row.get(10)?,
            at_ms: row.get(11)?,
        })
    }

    fn decode(self) -> Result<StoredCorrection, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            table: "corrections",
            detail,
        };
        let event_kind = EventKind::from_name(&self.event_kind).ok_or_else(|| {
            corrupt(format!(
                "correction {} has event kind {:?}; expected impression, click, conversion or cost",
                self.id, self.event_kind
            ))
        })?;
        let action = match (self.action.as_str(), self.new_value) {
            ("retract", None) => CorrectionAction::Retract,
            ("correct", Some(value)) => CorrectionAction::Correct { value },
            (action, new_value) => {
                return Err(corrupt(format!(
                    "correction {} has action {action:?} with new value {new_value:?}; \
                     expected \"retract\" without a value or \"correct\" with one",
                    self.id
                )));
            }
        };
        Ok(StoredCorrection {
            id: from_sql_int("corrections", "id", self.id)?,
            event_seq: from_sql_int("corrections", "event_seq", self.event_seq)?,
            campaign_id: self.campaign_id,
            event_id: self.event_id,
            event_kind,
            decision_id: self.decision_id,
            action,
            old_value: self.old_value,
            reason: self.reason,
            key_id: self.key_id,
            at_ms: self.at_ms,
        })
    }
}

/// The columns of a spend report, in [`RawSpendReport::from_row`]'s order.
const SELECT_SPEND_REPORTS: &str = "SELECT id, campaign_id, report_id, segment, start_ms, end_ms, \
     amount, impressions, key_id, at_ms FROM spend_reports";

struct RawSpendReport {
    id: i64,
    campaign_id: String,
    report_id: String,
    segment: i64,
    start_ms: i64,
    end_ms: i64,
    amount: f64,
    impressions: Option<i64>,
    key_id: String,
    at_ms: i64,
}

impl RawSpendReport {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawSpendReport> {
        Ok(RawSpendReport {
            id: row.get(0)?,
            campaign_id: row.get(1)?,
            report_id: row.get(2)?,
            segment: row.get(3)?,
            start_ms: row.get(4)?,
            end_ms: row.get(5)?,
            amount: row.get(6)?,
            impressions: row.get(7)?,
            key_id: row.get(8)?,
            at_ms: row.get(9)?,
        })
    }

    fn decode(self) -> Result<StoredSpendReport, StoreError> {
        Ok(StoredSpendReport {
            id: from_sql_int("spend_reports", "id", self.id)?,
            segment: to_u32("spend_reports", "segment", self.segment)?,
            impressions: self
                .impressions
                .map(|n| from_sql_int("spend_reports", "impressions", n))
                .transpose()?,
            campaign_id: self.campaign_id,
            report_id: self.report_id,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            amount: self.amount,
            key_id: self.key_id,
            at_ms: self.at_ms,
        })
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn encode_event(event: &NewEvent) -> Result<EncodedEvent, StoreError> {
    let version = validate_event(event)?;
    Ok(EncodedEvent {
        campaign_id: event.campaign_id.clone(),
        event_id: event.event_id.clone(),
        decision_id: event.decision_id.clone(),
        kind: event.kind,
        value: event.value,
        amount_known: event.amount_known,
        segment: event.segment,
        version,
        decided_at_ms: event.decided_at_ms,
        at_ms: event.at_ms,
    })
}

fn encode_decision(decision: &DecisionRow) -> Result<EncodedDecision, StoreError> {
    if !(decision.propensity > 0.0 && decision.propensity <= 1.0) {
        return Err(StoreError::InvalidInput(format!(
            "decision {:?} has propensity {}; a propensity must be in (0, 1]",
            decision.decision_id, decision.propensity
        )));
    }
    Ok(EncodedDecision {
        decision_id: decision.decision_id.clone(),
        campaign_id: decision.campaign_id.clone(),
        segment: decision.segment,
        version: to_sql_int("version", decision.version)?,
        propensity: decision.propensity,
        model_version: to_sql_int("model_version", decision.model_version)?,
        at_ms: decision.at_ms,
        skip: decision.skip.clone(),
        revision: decision.revision,
        held_out: decision.held_out,
    })
}

fn to_u32(table: &'static str, field: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("{field} {value} is not in 0..=4294967295"),
    })
}

/// Columns as SQLite returns them, decoded into a row outside the query callback so
/// a bad value becomes [`StoreError::Corrupt`] rather than a SQLite error.
struct RawCampaign {
    id: String,
    name: String,
    spec_json: String,
    status: String,
    created_at_ms: i64,
}

impl RawCampaign {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCampaign> {
        Ok(RawCampaign {
            id: row.get(0)?,
            name: row.get(1)?,
            spec_json: row.get(2)?,
            status: row.get(3)?,
            created_at_ms: row.get(4)?,
        })
    }

    fn decode(self) -> Result<CampaignRow, StoreError> {
        let status =
            CampaignStatus::from_name(&self.status).ok_or_else(|| StoreError::Corrupt {
                table: "campaigns",
                detail: format!(
                    "campaign {:?} has status {:?}; expected \"active\", \"paused\" or \"archived\"",
                    self.id, self.status
                ),
            })?;
        Ok(CampaignRow {
            id: self.id,
            name: self.name,
            spec_json: self.spec_json,
            status,
            created_at_ms: self.created_at_ms,
        })
    }
}

struct RawDecision {
    decision_id: String,
    campaign_id: String,
    segment: i64,
    version: i64,
    propensity: f64,
    model_version: i64,
    at_ms: i64,
    skip: Option<String>,
    revision: i64,
    held_out: bool,
}

impl RawDecision {
    /// Reads the ten decision columns starting at column `first`.
    fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RawDecision> {
        Ok(RawDecision {
            decision_id: row.get(first)?,
            campaign_id: row.get(first + 1)?,
            segment: row.get(first + 2)?,
            version: row.get(first + 3)?,
            propensity: row.get(first + 4)?,
            model_version: row.get(first + 5)?,
            at_ms: row.get(first + 6)?,
            skip: row.get(first + 7)?,
            revision: row.get(first + 8)?,
            held_out: row.get(first + 9)?,
        })
    }

    fn decode(self) -> Result<DecisionRow, StoreError> {
        Ok(DecisionRow {
            segment: to_u32("decisions", "segment", self.segment)?,
            version: from_sql_int("decisions", "version", self.version)?,
            model_version: from_sql_int("decisions", "model_version", self.model_version)?,
            decision_id: self.decision_id,
            campaign_id: self.campaign_id,
            propensity: self.propensity,
            at_ms: self.at_ms,
            skip: self.skip,
            revision: to_u32("decisions", "revision", self.revision)?,
            held_out: self.held_out,
        })
    }
}

struct RawKey {
    id: String,
    hash: Vec<u8>,
    scopes_json: String,
    created_at_ms: i64,
    revoked: bool,
    label: String,
}

impl RawKey {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawKey> {
        Ok(RawKey {
            id: row.get(0)?,
            hash: row.get(1)?,
            scopes_json: row.get(2)?,
            created_at_ms: row.get(3)?,
            revoked: row.get(4)?,
            label: row.get(5)?,
        })
    }

    fn decode(self) -> Result<KeyRow, StoreError> {
        let hash: [u8; 32] = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt {
                table: "api_keys",
                detail: format!(
                    "key {:?} has a hash of {} bytes; expected 32",
                    self.id,
                    self.hash.len()
                ),
            })?;
        let scopes: Vec<String> =
            serde_json::from_str(&self.scopes_json).map_err(|error| StoreError::Corrupt {
                table: "api_keys",
                detail: format!(
                    "key {:?} has scopes {:?}, not a json array of strings: {error}",
                    self.id, self.scopes_json
                ),
            })?;
        Ok(KeyRow {
            id: self.id,
            hash,
            scopes,
            created_at_ms: self.created_at_ms,
            revoked: self.revoked,
            label: self.label,
        })
    }
}

struct RawEvent {
    seq: i64,
    campaign_id: String,
    event_id: String,
    decision_id: String,
    kind: String,
    value: f64,
    segment: i64,
    version: i64,
    decided_at_ms: i64,
    at_ms: i64,
    amount_known: bool,
}

impl RawEvent {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
        Ok(RawEvent {
            seq: row.get(0)?,
            campaign_id: row.get(1)?,
            event_id: row.get(2)?,
            decision_id: row.get(3)?,
            kind: row.get(4)?,
            value: row.get(5)?,
            segment: row.get(6)?,
            version: row.get(7)?,
            decided_at_ms: row.get(8)?,
            at_ms: row.get(9)?,
            amount_known: row.get(10)?,
        })
    }

    fn decode(self) -> Result<StoredEvent, StoreError> {
        let kind = EventKind::from_name(&self.kind).ok_or_else(|| StoreError::Corrupt {
            table: "events",
            detail: format!(
                "event at seq {} has kind {:?}; expected impression, click, conversion or cost",
                self.seq, self.kind
            ),
        })?;
        Ok(StoredEvent {
            seq: from_sql_int("events", "seq", self.seq)?,
            segment: to_u32("events", "segment", self.segment)?,
            version: from_sql_int("events", "version", self.version)?,
            campaign_id: self.campaign_id,
            event_id: self.event_id,
            decision_id: self.decision_id,
            kind,
            value: self.value,
            amount_known: self.amount_known,
            decided_at_ms: self.decided_at_ms,
            at_ms: self.at_ms,
        })
    }
}

/// One kind's cursor of a [`CampaignEventsReader`].
#[derive(Debug)]
struct KindCursor {
    kind: EventKind,
    /// Last sequence number read from the store for this kind.
    after: u64,
    /// Read, not yet handed out.
    buffer: std::collections::VecDeque<StoredEvent>,
    /// The store holds no more events of this kind.
    exhausted: bool,
}

/// All of one campaign's events in log order, a page at a time
/// ([`Store::campaign_events_reader`]).
#[derive(Debug)]
pub struct CampaignEventsReader<'a> {
    store: &'a Store,
    campaign_id: &'a str,
    cursors: [KindCursor; 4],
}

impl CampaignEventsReader<'_> {
    /// The next at most `limit` events (ascending sequence numbers); empty at the end.
    pub fn next_page(&mut self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut page = Vec::with_capacity(limit.min(1 << 16));
        while page.len() < limit {
            for cursor in &mut self.cursors {
                if cursor.buffer.is_empty() && !cursor.exhausted {
                    let read = self.store.campaign_events(
                        self.campaign_id,
                        cursor.kind,
                        cursor.after,
                        limit.max(1),
                    )?;
                    match read.last() {
                        Some(last) => cursor.after = last.seq,
                        None => cursor.exhausted = true,
                    }
                    cursor.buffer.extend(read);
                }
            }
            // Every non-exhausted cursor has a head now: the smallest is next in the log.
            let next = self
                .cursors
                .iter_mut()
                .filter(|c| !c.buffer.is_empty())
                .min_by_key(|c| c.buffer.front().map_or(u64::MAX, |e| e.seq));
            match next.and_then(|c| c.buffer.pop_front()) {
                Some(event) => page.push(event),
                None => break,
            }
        }
        Ok(page)
    }
}

/// Inserts a campaign row on `connection` (a transaction derefs to one); a campaign
/// with the same id is refused as a conflict and nothing is written.
pub(crate) fn insert_campaign_row(
    connection: &rusqlite::Connection,
    campaign: &CampaignRow,
) -> Result<(), StoreError> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO campaigns (id, name, spec_json, status, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                campaign.id,
                campaign.name,
                campaign.spec_json,
                campaign.status.as_str(),
                campaign.created_at_ms,
            ])
        })
        .map_err(StoreError::sqlite("inserting a campaign"))?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a campaign with id {:?} already exists",
            campaign.id
        )));
    }
    Ok(())
}

/// A budget change from a row whose columns 1 to 9 are `campaign_id, old_budget,
/// new_budget, old_daily_cap, new_daily_cap, spent, reason, key_id, at_ms`.
fn budget_change_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<NewBudgetChange> {
    Ok(NewBudgetChange {
        campaign_id: row.get(1)?,
        old_budget: row.get(2)?,
        new_budget: row.get(3)?,
        old_daily_cap: row.get(4)?,
        new_daily_cap: row.get(5)?,
        spent: row.get(6)?,
        reason: row.get(7)?,
        key_id: row.get(8)?,
        at_ms: row.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_status_in_the_file_is_reported_corrupt() {
        let store = Store::open_in_memory().unwrap();
        store
            .database
            .general()
            .execute(
                "INSERT INTO campaigns VALUES ('c', 'n', '{}', 'deleted', 0)",
                [],
            )
            .unwrap();
        let error = store.campaign("c").unwrap_err();
        assert_eq!(
            error.to_string(),
            "corrupt row in table `campaigns`: campaign \"c\" has status \"deleted\"; expected \"active\", \"paused\" or \"archived\""
        );
    }

    #[test]
    fn campaign_event_reads_are_index_ranges_without_a_sort() {
        let store = Store::open_in_memory().unwrap();
        let connection = store.database.general();
        for sql in [CAMPAIGN_EVENTS_SQL, CAMPAIGN_EVENT_VALUES_SQL] {
            let plan: Vec<String> = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params!["c", "conversion", 0, 10], |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                plan,
                [
                    "SEARCH events USING INDEX events_by_campaign_kind (campaign_id=? AND kind=? AND rowid>?)"
                ],
                "{sql}"
            );
        }
    }

    #[test]
    fn decisions_by_time_are_index_ranges_without_a_sort() {
        let store = Store::open_in_memory().unwrap();
        let connection = store.database.general();
        for (sql, expected) in [
            (
                DECISIONS_BY_TIME_FIRST_SQL,
                "SEARCH decisions USING INDEX decisions_by_time (campaign_id=?)",
            ),
            (
                DECISIONS_BY_TIME_AFTER_SQL,
                "SEARCH decisions USING INDEX decisions_by_time (campaign_id=? AND (at_ms,decision_id)>(?,?))",
            ),
        ] {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let parameters: Vec<rusqlite::types::Value> = vec![
                "c".to_owned().into(),
                10_i64.into(),
                0_i64.into(),
                "d".to_owned().into(),
            ];
            let count = statement.parameter_count();
            let plan: Vec<String> = statement
                .query_map(rusqlite::params_from_iter(&parameters[..count]), |row| {
                    row.get(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(plan, [expected], "{sql}");
        }
    }

    #[test]
    fn a_short_key_hash_in_the_file_is_reported_corrupt() {
        let store = Store::open_in_memory().unwrap();
        store
            .database
            .general()
            .execute(
                "INSERT INTO api_keys VALUES ('k', x'0102', '[]', 0, 0, '')",
                [],
            )
            .unwrap();
        let error = store.keys().unwrap_err();
        assert!(
            error.to_string().contains("hash of 2 bytes; expected 32"),
            "{error}"
        );
    }
}
