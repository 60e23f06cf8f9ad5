//! The database schema, its version, and how a connection is set up.
//!
//! The schema version lives in SQLite's `PRAGMA user_version` (0 in a fresh file).
//! Opening checks it before writing anything: a newer version, or a file that holds
//! tables but no version, is refused and the file is left as it was. The tables are
//! described for readers in `docs/storage.md`; keep the two in step.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::StoreError;

/// The schema version this build writes and reads. Files of an older version are
/// migrated when opened (see `MIGRATIONS` in this module and `docs/storage.md`).
pub const SCHEMA_VERSION: i64 = 13;

/// How long a connection waits for another connection's write lock before failing
/// with "database is locked". Writes are short, so this is only reached when
/// something is badly wrong (another process holding the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page cache per connection, in KiB (SQLite's negative `cache_size`): the index on
/// event ids is written at many places at once, and keeping its pages in memory
/// spares a read per insert.
const CACHE_SIZE_KIB: i64 = -8_192;

/// Pages the write-ahead log may grow to before a commit of the appending connection
/// checkpoints it itself (SQLite's default is 1,000). The background checkpointer
/// copies pages long before; this one finishes the log so it can start over, and
/// bounds the file at about 32 MiB.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// Schema version 1. `STRICT` tables make SQLite reject a value of the wrong type
/// instead of storing it.
const SCHEMA_V1: &str = "
CREATE TABLE campaigns (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    spec_json     TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE decisions (
    id            INTEGER PRIMARY KEY,
    decision_id   TEXT NOT NULL,
    campaign_id   TEXT NOT NULL,
    segment       INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    propensity    REAL NOT NULL,
    model_version INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL
) STRICT;
CREATE INDEX decisions_by_campaign ON decisions (campaign_id, id);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    campaign_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    decision_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    value         REAL NOT NULL,
    segment       INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    decided_at_ms INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    UNIQUE (campaign_id, event_id)
) STRICT;

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    hash          BLOB NOT NULL,
    scopes_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked       INTEGER NOT NULL,
    label         TEXT NOT NULL
) STRICT;

CREATE TABLE snapshots (
    campaign_id   TEXT NOT NULL,
    covers_seq    INTEGER NOT NULL,
    bytes         BLOB NOT NULL,
    at_ms         INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, covers_seq)
) STRICT;

CREATE TABLE meta (
    key           TEXT PRIMARY KEY,
    value         BLOB NOT NULL
) STRICT;
";

/// Schema version 2: an index over each campaign's events of one kind, so a campaign's
/// conversions (or impressions, ...) are read without scanning the whole event log.
/// The rowid (`seq`) ends every index entry, so the entries of one (campaign, kind)
/// are in log order and an append adds at the end of its group.
const MIGRATION_V2: &str = "
CREATE INDEX events_by_campaign_kind ON events (campaign_id, kind);
";

/// Schema version 3: the corrections of stored events (a retraction or a new amount),
/// each with who asked (the key id), when, why, and the value before and after; the
/// events themselves are never rewritten. `new_value` is null for a retraction;
/// `old_value` is null when the value before was a conversion's unknown amount.
/// Looked up by event (is it retracted, what is its value now) and listed by campaign.
const MIGRATION_V3: &str = "
CREATE TABLE corrections (
    id            INTEGER PRIMARY KEY,
    campaign_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_seq     INTEGER NOT NULL,
    event_kind    TEXT NOT NULL,
    decision_id   TEXT NOT NULL,
    action        TEXT NOT NULL,
    old_value     REAL,
    new_value     REAL,
    reason        TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
) STRICT;
CREATE INDEX corrections_by_event ON corrections (campaign_id, event_id);
";

/// Schema version 4: whether an event's `value` is its amount. A conversion sent
/// without an amount has an unknown amount (stored as value 0 with `amount_known` 0),
/// not a $0 donation. Events stored before read as known (1), as they were counted.
const MIGRATION_V4: &str = "
ALTER TABLE events ADD COLUMN amount_known INTEGER NOT NULL DEFAULT 1;
";

/// Schema version 5: an index over each campaign's decisions by time and id, so a
/// decision is found from what its id says (campaign, time, id) in one seek: a decision
/// written twice (a retried write, or one restored from an event's signed id) is stored
/// once. Decisions are appended in time order, so an append adds near the end of its
/// campaign's entries, not at random places as an index on the id alone would.
const MIGRATION_V5: &str = "
CREATE INDEX decisions_by_time ON decisions (campaign_id, at_ms, decision_id);
";

/// Schema version 6: the money that is not in the event log. `spend_reports` holds
/// spend not tied to a decision, per segment and period (`impressions` null when the
/// channel did not say), one per `(campaign_id, report_id)`, with the key that sent it
/// and when it arrived. `budget_changes` audits each change of a running campaign's
/// budget and daily cap (a null cap is no cap), with what had been spent then; the
/// budget in force is the spec's overridden by the campaign's latest change. Both are
/// append-only: no row of them, or of the events, is ever rewritten.
const MIGRATION_V6: &str = "
CREATE TABLE spend_reports (
    id            INTEGER PRIMARY KEY,
    campaign_id   TEXT NOT NULL,
    report_id     TEXT NOT NULL,
    segment       INTEGER NOT NULL,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    amount        REAL NOT NULL,
    impressions   INTEGER,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    UNIQUE (campaign_id, report_id)
) STRICT;

CREATE TABLE budget_changes (
    id            INTEGER PRIMARY KEY,
    campaign_id   TEXT NOT NULL,
    old_budget    REAL NOT NULL,
    new_budget    REAL NOT NULL,
    old_daily_cap REAL,
    new_daily_cap REAL,
    spent         REAL NOT NULL,
    reason        TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
) STRICT;
CREATE INDEX budget_changes_by_campaign ON budget_changes (campaign_id, id);
";

/// Schema version 7: a decision may be a skip (a campaign with a budget declined the
/// opportunity: nothing shown, nothing paid). `skip` holds the reason's code (null: a
/// version was served; for a skip, `version` is 0 and means nothing). Readers of the
/// served decisions leave skips out.
const MIGRATION_V7: &str = "
ALTER TABLE decisions ADD COLUMN skip TEXT;
";

/// Schema version 8: living campaigns. `revisions` holds each accepted replacement of
/// a campaign's spec (revision 2 on; revision 1 is `campaigns.spec_json`), with the
/// event sequence it took effect after (`from_seq`: events with a higher `seq` are
/// learned under it), who asked, when and why. `decisions.revision` is the revision a
/// decision was served under (rows stored before read as 1). `idempotency_keys` maps
/// the `Idempotency-Key` of a campaign creation to the campaign it made and a digest
/// of the spec it was sent with. A campaign's `status` may now also be `archived`.
const MIGRATION_V8: &str = "
CREATE TABLE revisions (
    campaign_id   TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    spec_json     TEXT NOT NULL,
    from_seq      INTEGER NOT NULL,
    reason        TEXT,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, revision)
) STRICT;

ALTER TABLE decisions ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;

CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY NOT NULL,
    spec_digest   BLOB NOT NULL,
    campaign_id   TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
) STRICT;
";

/// Schema version 9: holdouts. `decisions.held_out` is 1 for a decision whose unit was
/// in the campaign's holdout (served the even split; its propensity is given the arm),
/// 0 otherwise (rows stored before read as 0). The unit itself is not stored.
const MIGRATION_V9: &str = "
ALTER TABLE decisions ADD COLUMN held_out INTEGER NOT NULL DEFAULT 0;
";

/// Schema version 10: platform mode (`docs/storage.md`, *Plans and platform results*).
/// `plans` holds each plan made for a campaign (its number per campaign, the spec
/// revision its versions are numbered in, the period, the budget, the plan as JSON);
/// `plan_ads` its ads, one row per (ad set, ad), with the share: the propensity of the
/// logged decision distribution the plan is. `result_imports` records each import of a
/// platform's results that changed something (the event sequence the engine had learned
/// when it was taken, and the revision in force); `platform_results` holds the results
/// in force, one row per (campaign, ad name, segment, period): a re-imported period
/// replaces its row in place, so nothing is counted twice.
const MIGRATION_V10: &str = "
CREATE TABLE plans (
    campaign_id   TEXT NOT NULL,
    plan_id       INTEGER NOT NULL,
    revision      INTEGER NOT NULL,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    budget        REAL NOT NULL,
    plan_json     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, plan_id)
) STRICT;

CREATE TABLE plan_ads (
    campaign_id   TEXT NOT NULL,
    plan_id       INTEGER NOT NULL,
    segment       INTEGER NOT NULL,
    ad_name       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    share         REAL NOT NULL,
    PRIMARY KEY (campaign_id, plan_id, segment, ad_name)
) STRICT;
CREATE INDEX plan_ads_by_name ON plan_ads (campaign_id, ad_name);

CREATE TABLE result_imports (
    id              INTEGER PRIMARY KEY,
    campaign_id     TEXT NOT NULL,
    after_seq       INTEGER NOT NULL,
    engine_revision INTEGER NOT NULL,
    inserted        INTEGER NOT NULL,
    replaced        INTEGER NOT NULL,
    key_id          TEXT NOT NULL,
    at_ms           INTEGER NOT NULL
) STRICT;

CREATE TABLE platform_results (
    id              INTEGER PRIMARY KEY,
    campaign_id     TEXT NOT NULL,
    ad_name         TEXT NOT NULL,
    segment         INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    impressions     INTEGER NOT NULL,
    clicks          INTEGER NOT NULL,
    conversions     INTEGER NOT NULL,
    value           REAL NOT NULL,
    spend           REAL NOT NULL,
    import_id       INTEGER NOT NULL,
    after_seq       INTEGER NOT NULL,
    engine_revision INTEGER NOT NULL,
    UNIQUE (campaign_id, ad_name, segment, start_ms, end_ms)
) STRICT;
CREATE INDEX platform_results_by_import ON platform_results (campaign_id, import_id, id);
";

/// Schema version 11: the dashboard. `rollups` holds per-campaign counts of the events
/// learned per bucket (`resolution_ms`: 60,000 or 3,600,000) and series (`""` the
/// campaign, `held_out` its holdout, `<component>=<option>` one option);
/// `rollup_state.through_seq` is the event sequence they count through (added in the
/// same transaction, so a restart counts no event twice). `control_audits` records the
/// controls used on a campaign (pause, resume, archive), who and when.
const MIGRATION_V11: &str = "
CREATE TABLE rollups (
    campaign_id   TEXT NOT NULL,
    resolution_ms INTEGER NOT NULL,
    bucket_ms     INTEGER NOT NULL,
    series        TEXT NOT NULL,
    impressions   INTEGER NOT NULL,
    clicks        INTEGER NOT NULL,
    conversions   INTEGER NOT NULL,
    value         REAL NOT NULL,
    cost          REAL NOT NULL,
    PRIMARY KEY (campaign_id, resolution_ms, bucket_ms, series)
) STRICT;

CREATE TABLE rollup_state (
    campaign_id   TEXT PRIMARY KEY NOT NULL,
    through_seq   INTEGER NOT NULL
) STRICT;

CREATE TABLE control_audits (
    id            INTEGER PRIMARY KEY,
    campaign_id   TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
) STRICT;
CREATE INDEX control_audits_by_campaign ON control_audits (campaign_id, id);
";

/// Schema version 12: a server on a shared stream keeps its mirror of the stream here
/// (docs/scale-out.md, *Cold start*). The stream's events go into `events` with their
/// stream sequences as `seq` (the first copy of each id: the table's unique id is the
/// deduplication index); every other record (genesis, campaigns, corrections, ...)
/// goes into `stream_records` as its raw payload, replayed into memory at start;
/// `stream_mirror` holds the stream's name and the last sequence mirrored, written in
/// the same transaction as the rows it covers.
const MIGRATION_V12: &str = "
CREATE TABLE stream_records (
    seq           INTEGER PRIMARY KEY,
    payload       BLOB NOT NULL
) STRICT;

CREATE TABLE stream_mirror (
    stream        TEXT PRIMARY KEY NOT NULL,
    mirrored_seq  INTEGER NOT NULL
) STRICT;
";

/// Schema version 13: the `Idempotency-Key` of a revision or a budget change is stored
/// with the row it made (`idempotency_key`, null when none was sent) and a digest
/// (SHA-256) of the request it came with (`request_digest`), so a retry with the key
/// answers that row, after a restart too; a partial unique index keeps one row per
/// campaign and key (docs/storage.md).
const MIGRATION_V13: &str = "
ALTER TABLE revisions ADD COLUMN idempotency_key TEXT;
ALTER TABLE revisions ADD COLUMN request_digest BLOB;
CREATE UNIQUE INDEX revisions_by_idempotency_key ON revisions (campaign_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE budget_changes ADD COLUMN idempotency_key TEXT;
ALTER TABLE budget_changes ADD COLUMN request_digest BLOB;
CREATE UNIQUE INDEX budget_changes_by_idempotency_key ON budget_changes (campaign_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

/// The migrations, in order: `MIGRATIONS[i]` takes a file from version `i + 1` to
/// version `i + 2`. A new file gets [`SCHEMA_V1`] and then every migration.
const MIGRATIONS: [&str; 12] = [
    MIGRATION_V2,
    MIGRATION_V3,
    MIGRATION_V4,
    MIGRATION_V5,
    MIGRATION_V6,
    MIGRATION_V7,
    MIGRATION_V8,
    MIGRATION_V9,
    MIGRATION_V10,
    MIGRATION_V11,
    MIGRATION_V12,
    MIGRATION_V13,
];

/// Opens a connection to the database file with a busy timeout. Writes nothing and
/// reads nothing: call [`check_version`] next, then [`configure`].
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(StoreError::sqlite("opening the database"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting the busy timeout"))?;
    Ok(connection)
}

/// Opens a read-only connection to the database file through a URI with `params`
/// (`mode=ro` or `immutable=1`), refusing every write (`query_only`).
pub(crate) fn open_read_only_connection(
    path: &Path,
    params: &str,
) -> Result<Connection, StoreError> {
    let uri = format!("file:{}?{params}", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(uri, flags)
        .map_err(StoreError::sqlite("opening the database read-only"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting the busy timeout"))?;
    connection
        .pragma_update(None, "query_only", true)
        .map_err(StoreError::sqlite("setting query_only"))?;
    connection
        .pragma_update(None, "cache_size", CACHE_SIZE_KIB)
        .map_err(StoreError::sqlite("setting the page cache size"))?;
    Ok(connection)
}

/// A path as the path part of an SQLite URI: every byte but unreserved characters
/// and `/` percent-encoded (so `?`, `#` and `%` in a directory name stay in the path).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Per-connection settings. `synchronous = FULL` makes every commit wait for the
/// write-ahead log to reach the disk (`fsync`), which is what lets the event log
/// acknowledge a batch only once it is durable.
pub(crate) fn configure(connection: &Connection) -> Result<(), StoreError> {
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting the busy timeout"))?;
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(StoreError::sqlite("setting synchronous = full"))?;
    connection
        .pragma_update(None, "cache_size", CACHE_SIZE_KIB)
        .map_err(StoreError::sqlite("setting the page cache size"))?;
    Ok(())
}

/// Settings of the connection that appends: its automatic checkpoint is the
/// fallback that lets the log file start over (see `checkpoint.rs`).
pub(crate) fn configure_writer(connection: &Connection) -> Result<(), StoreError> {
    connection
        .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(StoreError::sqlite("setting the checkpoint interval"))?;
    Ok(())
}

/// Reads the schema version and refuses files this build cannot use, before anything
/// is written. Returns the version found (0 for a new, empty file).
pub(crate) fn check_version(connection: &Connection, path: &str) -> Result<i64, StoreError> {
    let version: i64 = match connection.pragma_query_value(None, "user_version", |row| row.get(0)) {
        Ok(version) => version,
        Err(error) if is_not_a_database(&error) => {
            return Err(StoreError::Schema(format!(
                "{path} is not a sqlite database; point the data directory at a tla data directory or an empty one"
            )));
        }
        Err(error) => return Err(StoreError::sqlite("reading the schema version")(error)),
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "{path} has schema version {version}, newer than version {SCHEMA_VERSION} that this build of tla supports; \
             run a newer tla, or use another data directory (the file was not changed)"
        )));
    }
    if version < 0 {
        return Err(StoreError::Schema(format!(
            "{path} has schema version {version}; tla writes versions 1 to {SCHEMA_VERSION} (the file was not changed)"
        )));
    }
    if version == 0 {
        let objects: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|error| {
                if is_not_a_database(&error) {
                    StoreError::Schema(format!(
                        "{path} is not a sqlite database; point the data directory at a tla data directory or an empty one"
                    ))
                } else {
                    StoreError::sqlite("reading the schema")(error)
                }
            })?;
        if objects > 0 {
            return Err(StoreError::Schema(format!(
                "{path} holds {objects} tables or indexes but no tla schema version; it is not a tla database \
                 (the file was not changed)"
            )));
        }
    }
    Ok(version)
}

fn is_not_a_database(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    )
}

/// Switches a file database to write-ahead logging, so readers do not block the
/// writer and a commit appends to the log instead of rewriting pages in place.
pub(crate) fn enable_wal(connection: &Connection) -> Result<(), StoreError> {
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(StoreError::sqlite("switching to write-ahead logging"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Schema(format!(
            "the database refused write-ahead logging (journal mode stayed {mode:?})"
        )));
    }
    Ok(())
}

/// Creates the tables in an empty database, or migrates an older file to the current
/// version, and sets the schema version. Does nothing when the version is already
/// current. Runs in one immediate transaction (a failed migration leaves the file as
/// it was), and checks the version again inside it in case another process created or
/// migrated the schema first. Migrations add to the schema; they change no stored row.
pub(crate) fn create_or_check(connection: &mut Connection, path: &str) -> Result<(), StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sqlite("starting the schema transaction"))?;
    let version = check_version(&transaction, path)?;
    if version == SCHEMA_VERSION {
        return transaction
            .commit()
            .map_err(StoreError::sqlite("committing the schema"));
    }
    if version == 0 {
        transaction
            .execute_batch(SCHEMA_V1)
            .map_err(StoreError::sqlite("creating the schema"))?;
    }
    // Version 0 got version 1's tables above; migrate from there.
    let from = version.max(1);
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let to = index as i64 + 2;
        if to > from {
            transaction
                .execute_batch(migration)
                .map_err(StoreError::sqlite("migrating the schema"))?;
        }
    }
    transaction
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(StoreError::sqlite("setting the schema version"))?;
    transaction
        .commit()
        .map_err(StoreError::sqlite("committing the schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_gets_the_current_version_and_every_table() {
        let mut connection = Connection::open_in_memory().unwrap();
        create_or_check(&mut connection, ":memory:").unwrap();
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mut tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.sort();
        assert_eq!(
            tables,
            [
                "api_keys",
                "budget_changes",
                "campaigns",
                "control_audits",
                "corrections",
                "decisions",
                "events",
                "idempotency_keys",
                "meta",
                "plan_ads",
                "plans",
                "platform_results",
                "result_imports",
                "revisions",
                "rollup_state",
                "rollups",
                "snapshots",
                "spend_reports",
                "stream_mirror",
                "stream_records"
            ]
        );
        let indexes: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "budget_changes_by_campaign",
                "budget_changes_by_idempotency_key",
                "control_audits_by_campaign",
                "corrections_by_event",
                "decisions_by_campaign",
                "decisions_by_time",
                "events_by_campaign_kind",
                "plan_ads_by_name",
                "platform_results_by_import",
                "revisions_by_idempotency_key"
            ]
        );
        // A second call is a no-op.
        create_or_check(&mut connection, ":memory:").unwrap();
    }

    #[test]
    fn a_database_with_foreign_tables_is_refused() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE other (x)").unwrap();
        let error = create_or_check(&mut connection, "x.db").unwrap_err();
        assert!(matches!(error, StoreError::Schema(_)));
        assert!(error.to_string().contains("not a tla database"), "{error}");
    }
}
