//! The storage layer of TLA: every byte on disk lives here.
//!
//! One SQLite database, `tla.db`, in a data directory, in write-ahead-logging mode
//! with `synchronous = FULL`. It holds campaigns, the decision log (every decision
//! with its propensity), API keys (hashes only), model snapshots, and the event log.
//! [`Store`] owns the connections; it is `Clone + Send + Sync` and every method
//! blocks, so an async server calls it from `spawn_blocking`. [`Store::open_read_only`]
//! opens a data directory without writing its database or log (reports over a
//! read-only copy; with a write-ahead log present SQLite may touch `tla.db-shm`).
//!
//! The event log sits behind the [`EventLog`] trait (append a batch durably, read
//! from a position) so that a replicated stream can take SQLite's place later.
//! [`SqliteEventLog`] is the durable implementation, [`MemoryEventLog`] the one for
//! tests. An append is acknowledged only once its transaction is committed and on
//! disk; concurrent appends share one commit through leader-based group commit (one
//! caller writes everyone's queued batches in one transaction, the others wait for
//! it). A background thread per file-backed store copies the write-ahead log back
//! into the database file (checkpoints), off the append path. Events are deduplicated on `(campaign_id, event_id)`: an exact repeat is reported
//! a duplicate with the sequence number of the stored copy, another content under a
//! stored id a conflict. Corrections (a retraction, a new amount) of stored events
//! are records of the same log ([`EventLog::append_correction`], [`correction`
//! semantics](crate::StoredCorrection)); the events themselves are never rewritten. [`Store::campaign_events`] and
//! [`Store::value_by_decision`] read one campaign's events of one kind through an index,
//! without scanning the other campaigns' events; [`Store::campaign_events_reader`] reads
//! all of a campaign's events in log order the same way.
//!
//! Spend reports (spend per segment and period, not tied to a decision) and the audited
//! changes of a running campaign's budget live beside the log, append-only too
//! ([`Store::append_spend_reports`], [`Store::append_budget_change`]).
//!
//! Platform mode's plans and the results an ad platform reports per ad and period live
//! there too ([`Store::save_plan`], [`Store::import_results`]): a re-imported period
//! replaces its rows, never adds to them.
//!
//! This crate does not depend on `tla-core`: ids are strings and integers, and the
//! server maps them. The schema and the group-commit method are written down in
//! `docs/storage.md`.
//!
//! ```
//! use tla_store::{AppendOutcome, EventKind, EventLog, NewEvent, Store};
//!
//! let store = Store::open_in_memory()?;
//! let log = store.event_log();
//! let click = NewEvent {
//!     campaign_id: "spring".into(),
//!     event_id: "e-1".into(),
//!     decision_id: "d-1".into(),
//!     kind: EventKind::Click,
//!     value: 0.0,
//!     amount_known: true,
//!     segment: 3,
//!     version: 1_234,
//!     decided_at_ms: 1_700_000_000_000,
//!     at_ms: 1_700_000_004_000,
//! };
//! let outcomes = log.append(&[click.clone(), click])?;
//! assert_eq!(
//!     outcomes,
//!     [AppendOutcome::Appended { seq: 1 }, AppendOutcome::Duplicate { seq: 1 }]
//! );
//! assert_eq!(log.read_after(0, 100)?.len(), 1);
//! # Ok::<(), tla_store::StoreError>(())
//! ```

#![warn(missing_docs)]

mod checkpoint;
mod correction;
mod dashboard;
mod error;
mod event_log;
mod group_commit;
mod living;
mod money;
mod platform;
mod rows;
mod schema;
mod store;
mod stream_mirror;

pub use correction::{
    CorrectionAction, CorrectionOutcome, EventFix, NewCorrection, Standing, StoredCorrection,
    effects, standing, validate_correction,
};
pub use dashboard::{
    NewControlAudit, ROLLUP_RESOLUTIONS_MS, RollupCounts, RollupRow, StoredControlAudit,
};
pub use error::StoreError;
pub use event_log::{
    AppendOutcome, EventContent, EventKind, EventLog, MemoryEventLog, NewEvent, StoredEvent,
    is_exact_repeat, validate_event,
};
pub use living::{ChangeKey, CreateOnce, IdempotencyRow, RevisionRow};
pub use money::{
    NewBudgetChange, NewSpendReport, SpendReportOutcome, StoredBudgetChange, StoredSpendReport,
    validate_budget_change, validate_spend_report,
};
pub use platform::{
    ImportOutcome, NewPlan, NewResult, PlanAd, PlannedAd, ResultImport, StoredPlan, StoredResult,
    validate_result,
};
pub use rows::{CampaignRow, CampaignStatus, DecisionRow, KeyRow};
pub use schema::SCHEMA_VERSION;
pub use store::{
    CampaignEventsReader, DATABASE_FILE_NAME, DecisionLog, SNAPSHOTS_KEPT, SqliteEventLog, Store,
};
pub use stream_mirror::{MirrorBatch, MirrorPosition};
