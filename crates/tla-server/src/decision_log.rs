//! The decision log writer: every decision served is written, with its propensity, to
//! the decision log, and no decision is served that the log cannot take.
//!
//! A handler queues the decisions it answers ([`DecisionQueue::admit`]) before it
//! answers them. A dedicated task ([`run`]) is woken when rows are queued and writes
//! them in order, in transactions of at most [`DECISION_CHUNK`] rows, through the same
//! group commit as the events, so a decision reaches the disk within one or two commits
//! whatever the learner is doing. A write that fails keeps its rows at the front of the
//! queue and is retried (1 ms, doubling to 1 s); the store skips a decision id already
//! stored, so a retry never duplicates a row.
//!
//! Decisions are refused instead of served (the handler answers without serving):
//!
//! - `503 decision_log_unavailable` while the last write failed, or when serving would
//!   take the queue past [`DECISION_BACKLOG_LIMIT`];
//! - `507 storage_full` while the last write failed because the disk is full.
//!
//! The first successful retry clears the failure, and decisions are served again.
//!
//! A crash loses the queued rows (at most the backlog limit, normally one commit's
//! worth). Their ids are signed and carry everything a row holds
//! ([`crate::decision_id`]), so every decision that a stored event refers to is
//! restored from the event ([`decision_row_of`]): at start for the events stored since
//! the last recorded coverage ([`tla_store::Store::decisions_cover_seq`]), and by the
//! learner for events arriving later about decisions made before the start.

use crate::decision_id::DecisionSigner;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::state::AppState;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tla_store::{DecisionLog, DecisionRow, StoreError, StoredEvent};

/// Decisions served and not yet in the decision log beyond which new decisions are
/// refused (503 `decision_log_unavailable`) until the log catches up.
///
/// It bounds what a crash can lose and what the queue holds in memory: 50,000 rows of
/// about 250 bytes are about 12 MB, and, at the decision rate one server sustains
/// (tens of thousands a second), well under a few seconds of serving. A healthy log
/// stays far below it: the writer takes the whole queue at every commit.
pub const DECISION_BACKLOG_LIMIT: usize = 50_000;

/// Rows per decision-log transaction, so event commits interleave with a large
/// backlog.
pub const DECISION_CHUNK: usize = 10_000;

/// First wait before retrying a failed write; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(1);

/// Longest wait between retries of a failed write: decisions are served again at most
/// this long after the disk can be written.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// How often the writer looks at the queue when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Why the decision log cannot be written now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFailure {
    /// The disk is full ([`StoreError::StorageFull`]).
    Full,
    /// Another write error (an I/O error, a failed commit).
    Unwritable,
}

impl LogFailure {
    /// The failure a store error means.
    pub fn of(error: &StoreError) -> Self {
        if error.is_storage_full() {
            LogFailure::Full
        } else {
            LogFailure::Unwritable
        }
    }

    /// The refusal of a decision while the log fails this way.
    fn refusal(self) -> ApiError {
        match self {
            LogFailure::Full => ApiError::new(
                ErrorCode::StorageFull,
                "the server's disk is full, so this decision could not be logged and was not \
                 served; retry once space is freed (the server retries by itself)",
            ),
            LogFailure::Unwritable => ApiError::new(
                ErrorCode::DecisionLogUnavailable,
                "the decision log cannot be written, so this decision was not served; retry \
                 shortly (the server retries the write by itself)",
            ),
        }
    }
}

/// The queue of decisions served and not yet written, and the state of its writes.
#[derive(Debug, Default)]
pub struct DecisionQueue {
    /// Queued rows, the write in progress, and the last write's failure.
    pending: Mutex<Pending>,
    /// Held by the one writer: rows are written in queue order, one chunk at a time.
    writing: Mutex<()>,
    /// Woken when rows are queued, or at shutdown.
    wake: tokio::sync::Notify,
    /// Every stored event up to this sequence whose decision was made by this process
    /// refers to a decision that is in the log.
    covers_seq: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Rows waiting, oldest first.
    rows: VecDeque<DecisionRow>,
    /// Rows taken by the writer and not yet committed.
    in_flight: usize,
    /// Why the last write failed; `None` once one succeeds.
    failure: Option<LogFailure>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DecisionQueue {
    /// A queue whose log covers every event up to `covers_seq` (the events the state
    /// opened with).
    pub fn new(covers_seq: u64) -> Self {
        let queue = Self::default();
        queue.covers_seq.store(covers_seq, Ordering::SeqCst);
        queue
    }

    /// Queues the rows of decisions about to be served, or refuses them: while the last
    /// write failed (507 `storage_full` for a full disk, else 503
    /// `decision_log_unavailable`), or when they would take the queue past
    /// [`DECISION_BACKLOG_LIMIT`] (503). Refused rows must not be served.
    pub fn admit(&self, rows: Vec<DecisionRow>) -> Result<(), ApiError> {
        let mut pending = lock(&self.pending);
        if let Some(failure) = pending.failure {
            return Err(failure.refusal());
        }
        let backlog = pending.rows.len() + pending.in_flight;
        if backlog + rows.len() > DECISION_BACKLOG_LIMIT {
            return Err(ApiError::new(
                ErrorCode::DecisionLogUnavailable,
                format!(
                    "the decision log is {backlog} decisions behind (the limit is \
                     {DECISION_BACKLOG_LIMIT}), so this decision was not served; retry shortly"
                ),
            ));
        }
        pending.rows.extend(rows);
        drop(pending);
        self.wake.notify_one();
        Ok(())
    }

    /// Decisions served and not yet written.
    pub fn backlog(&self) -> usize {
        let pending = lock(&self.pending);
        pending.rows.len() + pending.in_flight
    }

    /// Why the last write failed, or `None` if it succeeded.
    pub fn failure(&self) -> Option<LogFailure> {
        lock(&self.pending).failure
    }

    /// The event sequence up to which every event about a decision of this process
    /// refers to a logged decision.
    pub fn covers_seq(&self) -> u64 {
        self.covers_seq.load(Ordering::SeqCst)
    }

    /// Wakes the writer.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Writes the queue to `log` in order until it is empty or a write fails; returns
    /// the rows written. A failed chunk goes back to the front of the queue and the
    /// failure is kept (decisions are refused) until a write succeeds. `last_seq` is
    /// the event log's last sequence, read before the queue is taken: once the queue
    /// is empty, every event stored by then refers to a logged decision.
    pub fn write(
        &self,
        log: &dyn DecisionLog,
        last_seq: Option<u64>,
        metrics: &Metrics,
        now_ms: impl Fn() -> i64,
    ) -> Result<usize, StoreError> {
        let _writing = lock(&self.writing);
        let mut written = 0;
        loop {
            let chunk: Vec<DecisionRow> = {
                let mut pending = lock(&self.pending);
                let count = pending.rows.len().min(DECISION_CHUNK);
                if count == 0 {
                    break;
                }
                pending.in_flight = count;
                pending.rows.drain(..count).collect()
            };
            match log.append_decisions(&chunk) {
                Ok(_) => {
                    let recovered = {
                        let mut pending = lock(&self.pending);
                        pending.in_flight = 0;
                        pending.failure.take()
                    };
                    if let Some(failure) = recovered {
                        tracing::info!(
                            ?failure,
                            "the decision log is written again; decisions are served"
                        );
                    }
                    let oldest_ms = chunk.iter().map(|row| row.at_ms).min().unwrap_or(0);
                    let lag_ms = now_ms().saturating_sub(oldest_ms).max(0);
                    metrics
                        .decision_log_lag_seconds
                        .observe(lag_ms as f64 / 1000.0);
                    Metrics::add(&metrics.decisions_logged, chunk.len() as u64);
                    written += chunk.len();
                }
                Err(error) => {
                    let failure = LogFailure::of(&error);
                    let mut pending = lock(&self.pending);
                    pending.in_flight = 0;
                    for row in chunk.into_iter().rev() {
                        pending.rows.push_front(row);
                    }
                    if pending.failure.is_none() {
                        tracing::error!(
                            %error,
                            backlog = pending.rows.len(),
                            "decision log write failed; decisions are refused until a retry succeeds"
                        );
                    }
                    pending.failure = Some(failure);
                    return Err(error);
                }
            }
        }
        if let Some(seq) = last_seq {
            self.covers_seq.fetch_max(seq, Ordering::SeqCst);
        }
        Ok(written)
    }
}

/// The decision-log row an event's signed decision id stands for, or `None` if the id
/// does not verify (it did when the event was stored; a changed secret would do it).
pub fn decision_row_of(signer: &DecisionSigner, event: &StoredEvent) -> Option<DecisionRow> {
    match signer.verify(&event.decision_id) {
        Ok(claims) => Some(DecisionRow {
            decision_id: event.decision_id.clone(),
            campaign_id: claims.campaign_id,
            segment: claims.segment,
            version: claims.version,
            propensity: claims.propensity,
            model_version: claims.model_version,
            at_ms: claims.at_ms,
            skip: None,
            revision: claims.revision,
            held_out: claims.held_out,
        }),
        Err(reason) => {
            tracing::warn!(
                seq = event.seq,
                reason,
                "an event's decision id does not verify; its decision is not restored"
            );
            None
        }
    }
}

/// Writes, through `decisions`, the decision of every event of `log` after `after` up
/// to `through` that is not in the decision log yet (the store skips those that are),
/// page by page. Returns how many were restored.
pub fn restore_from_events(
    log: &dyn tla_store::EventLog,
    decisions: &dyn DecisionLog,
    signer: &DecisionSigner,
    after: u64,
    through: u64,
) -> Result<usize, StoreError> {
    const PAGE: usize = 8192;
    let mut position = after;
    let mut restored = 0;
    while position < through {
        let events = log.read_after(position, PAGE)?;
        let Some(last) = events.last().map(|event| event.seq) else {
            break;
        };
        let rows: Vec<DecisionRow> = events
            .iter()
            .filter(|event| event.seq <= through)
            .filter_map(|event| decision_row_of(signer, event))
            .collect();
        restored += decisions.append_decisions(&rows)?;
        position = last;
    }
    Ok(restored)
}

/// Runs the writer until the state is closing: woken when decisions are queued, it
/// writes them; after a failure it retries with a doubling wait (1 ms to 1 s). While
/// the event log's last append failed it also probes the store once a second
/// ([`AppState::probe_storage`]), so `/healthz` recovers when space returns.
pub async fn run(state: AppState) {
    let mut retry = RETRY_FIRST;
    loop {
        let wait = if state.storage_failure().is_some() {
            retry
        } else {
            IDLE_TICK
        };
        tokio::select! {
            () = state.decisions().wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        let closing = state.closing();
        let writing = state.clone();
        let healthy = tokio::task::spawn_blocking(move || {
            writing.write_decisions().is_ok() && writing.probe_storage()
        });
        match healthy.await {
            Ok(true) => retry = RETRY_FIRST,
            Ok(false) => retry = (retry * 2).min(RETRY_MAX),
            Err(error) => tracing::error!(%error, "decision log writer failed"),
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A decision log that records what it stored and fails while `failing` is set.
    #[derive(Default)]
    struct Recording {
        stored: Mutex<Vec<String>>,
        failing: AtomicBool,
    }

    impl DecisionLog for Recording {
        fn append_decisions(&self, rows: &[DecisionRow]) -> Result<usize, StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::StorageFull {
                    context: "appending decisions",
                    detail: "test".into(),
                });
            }
            let mut stored = lock(&self.stored);
            stored.extend(rows.iter().map(|row| row.decision_id.clone()));
            Ok(rows.len())
        }
    }

    fn rows(ids: std::ops::Range<usize>) -> Vec<DecisionRow> {
        ids.map(|index| DecisionRow {
            decision_id: format!("d{index}"),
            campaign_id: "c".into(),
            segment: 0,
            version: 0,
            propensity: 1.0,
            model_version: 0,
            at_ms: 0,
            revision: 1,
            held_out: false,
            skip: None,
        })
        .collect()
    }

    #[test]
    fn a_failed_write_keeps_its_rows_in_order_and_refuses_until_a_retry_succeeds() {
        let queue = DecisionQueue::new(0);
        let log = Recording::default();
        let metrics = Metrics::default();
        queue.admit(rows(0..3)).unwrap();
        log.failing.store(true, Ordering::SeqCst);
        let error = queue.write(&log, Some(7), &metrics, || 0).unwrap_err();
        assert!(error.is_storage_full());
        assert_eq!(queue.failure(), Some(LogFailure::Full));
        assert_eq!(queue.backlog(), 3);
        let refused = queue.admit(rows(3..4)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::StorageFull);
        // The coverage moves only once the queue is written.
        assert_eq!(queue.covers_seq(), 0);

        log.failing.store(false, Ordering::SeqCst);
        assert_eq!(queue.write(&log, Some(7), &metrics, || 0).unwrap(), 3);
        assert_eq!(queue.failure(), None);
        queue.admit(rows(3..5)).unwrap();
        assert_eq!(queue.write(&log, Some(9), &metrics, || 0).unwrap(), 2);
        assert_eq!(*lock(&log.stored), ["d0", "d1", "d2", "d3", "d4"]);
        assert_eq!((queue.backlog(), queue.covers_seq()), (0, 9));
        assert_eq!(metrics.decisions_logged.get(), 5);
    }

    #[test]
    fn the_backlog_limit_refuses_a_request_that_would_pass_it() {
        let queue = DecisionQueue::new(0);
        queue.admit(rows(0..DECISION_BACKLOG_LIMIT - 1)).unwrap();
        let refused = queue.admit(rows(0..2)).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::DecisionLogUnavailable);
        assert!(
            refused.message().contains("49999 decisions behind"),
            "{}",
            refused.message()
        );
        queue.admit(rows(0..1)).unwrap();
        assert_eq!(queue.backlog(), DECISION_BACKLOG_LIMIT);
    }
}
