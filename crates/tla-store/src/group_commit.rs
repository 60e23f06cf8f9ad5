//! Leader-based group commit: many concurrent appends share one transaction and one
//! `fsync`.
//!
//! A caller puts its job (a batch of events, or of decisions) in a shared queue and
//! gets a ticket. If no leader is writing, the caller becomes the leader: it takes
//! the queued jobs (up to [`MAX_ROWS_PER_GROUP`] rows), releases the queue lock,
//! writes them all in one immediate transaction on the dedicated writer connection,
//! commits (with `synchronous = FULL` the commit returns only once the write-ahead log
//! is on disk), then publishes every job's result under its ticket and wakes the
//! waiting callers. Callers that arrive while a leader writes queue up behind it; when
//! it finishes, one of them leads the next group. So N concurrent appends cost one
//! commit, not N.
//!
//! Jobs are checked (numbers fit, values finite) by their caller before they are
//! queued, so a bad input fails only its own call; an error while writing fails the
//! whole group, whose transaction is rolled back, and every caller in it gets the
//! error. A caller never returns success before its rows are committed.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::StoreError;
use crate::event_log::{AppendOutcome, EventContent, EventKind, is_exact_repeat};

/// The most rows one group transaction writes (it may write more when a single job is
/// larger). Bounds the latency a caller can be made to wait behind other callers'
/// work.
pub(crate) const MAX_ROWS_PER_GROUP: usize = 20_000;

/// An event checked for storage: numbers in SQLite's ranges, kind as its name.
#[derive(Debug)]
pub(crate) struct EncodedEvent {
    pub(crate) campaign_id: String,
    pub(crate) event_id: String,
    pub(crate) decision_id: String,
    pub(crate) kind: EventKind,
    pub(crate) value: f64,
    pub(crate) amount_known: bool,
    pub(crate) segment: u32,
    pub(crate) version: i64,
    pub(crate) decided_at_ms: i64,
    pub(crate) at_ms: i64,
}

/// A decision checked for storage.
#[derive(Debug)]
pub(crate) struct EncodedDecision {
    pub(crate) decision_id: String,
    pub(crate) campaign_id: String,
    pub(crate) segment: u32,
    pub(crate) version: i64,
    pub(crate) propensity: f64,
    pub(crate) model_version: i64,
    pub(crate) at_ms: i64,
    pub(crate) skip: Option<String>,
    pub(crate) revision: u32,
    pub(crate) held_out: bool,
}

/// One caller's work.
#[derive(Debug)]
pub(crate) enum WriteJob {
    /// Append events to the log, deduplicated on `(campaign_id, event_id)` (an exact
    /// repeat is a duplicate, another content a conflict).
    Events(Vec<EncodedEvent>),
    /// Append decisions, skipping a `decision_id` already stored (found through the
    /// campaign and time its id carries).
    Decisions(Vec<EncodedDecision>),
}

impl WriteJob {
    fn row_count(&self) -> usize {
        match self {
            WriteJob::Events(events) => events.len(),
            WriteJob::Decisions(decisions) => decisions.len(),
        }
    }
}

/// One caller's result.
#[derive(Debug)]
pub(crate) enum JobOutput {
    /// One outcome per event, in order.
    Events(Vec<AppendOutcome>),
    /// The decisions are stored; this many were new (an id already stored is skipped).
    Decisions(usize),
}

type JobResult = Result<JobOutput, StoreError>;

#[derive(Debug, Default)]
struct QueueState {
    /// The ticket the next job gets.
    next_ticket: u64,
    /// Jobs waiting for a leader, in arrival order.
    pending: Vec<(u64, WriteJob)>,
    /// True while a leader is writing a group (with the queue unlocked).
    leader_active: bool,
    /// Results published by leaders, taken by their callers.
    finished: HashMap<u64, JobResult>,
}

/// The queue shared by all appenders of one database.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<QueueState>,
    /// Signalled when a leader publishes results or steps down.
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data: the queue is only
    // changed in whole steps, and a connection's open transaction is rolled back when
    // it is dropped during the unwind.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupCommit {
    /// Queues `job`, takes part in group commit until its result is published, and
    /// returns it. `writer` is the connection leaders write with.
    ///
    /// A leader calls `after_commit` with the number of rows it committed, after it
    /// has published the results (so no caller waits for it).
    pub(crate) fn submit(
        &self,
        job: WriteJob,
        writer: &Mutex<Connection>,
        after_commit: impl Fn(usize),
    ) -> JobResult {
        let mut state = lock(&self.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, job));
        loop {
            if let Some(result) = state.finished.remove(&ticket) {
                return result;
            }
            if !state.leader_active {
                // Our job is still queued: a leader that had taken it would either
                // still be active or have published its result.
                state.leader_active = true;
                let group = take_group(&mut state.pending);
                drop(state);
                let mut guard = LeaderGuard {
                    queue: self,
                    tickets: group.iter().map(|(ticket, _)| *ticket).collect(),
                };
                let committed_rows: usize = group.iter().map(|(_, job)| job.row_count()).sum();
                let results = write_group(writer, group);
                let committed = results.iter().all(|(_, result)| result.is_ok());
                state = lock(&self.state);
                guard.tickets.clear();
                state.finished.extend(results);
                state.leader_active = false;
                self.wake.notify_all();
                if committed {
                    drop(state);
                    after_commit(committed_rows);
                    state = lock(&self.state);
                }
                continue;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Takes jobs from the front of the queue until [`MAX_ROWS_PER_GROUP`] rows (at least
/// one job).
fn take_group(pending: &mut Vec<(u64, WriteJob)>) -> Vec<(u64, WriteJob)> {
    let mut rows = 0;
    let mut count = 0;
    for (_, job) in pending.iter() {
        if count > 0 && rows + job.row_count() > MAX_ROWS_PER_GROUP {
            break;
        }
        rows += job.row_count();
        count += 1;
    }
    pending.drain(..count).collect()
}

/// Releases leadership if the leader unwinds (a panic inside SQLite or this crate), so
/// that its followers get an error instead of waiting forever.
struct LeaderGuard<'queue> {
    queue: &'queue GroupCommit,
    /// Tickets of the group being written; emptied once results are published.
    tickets: Vec<u64>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.tickets.is_empty() {
            return;
        }
        let mut state = lock(&self.queue.state);
        for ticket in self.tickets.drain(..) {
            state
                .finished
                .insert(ticket, Err(StoreError::WriterPanicked));
        }
        state.leader_active = false;
        self.queue.wake.notify_all();
    }
}

/// Writes a group in one transaction and returns each job's result under its ticket.
fn write_group(writer: &Mutex<Connection>, group: Vec<(u64, WriteJob)>) -> Vec<(u64, JobResult)> {
    let mut connection = lock(writer);
    match write_group_transaction(&mut connection, &group) {
        Ok(outputs) => group
            .iter()
            .map(|(ticket, _)| *ticket)
            .zip(outputs.into_iter().map(Ok))
            .collect(),
        Err(error) => group
            .iter()
            .map(|(ticket, _)| (*ticket, Err(error.clone())))
            .collect(),
    }
}

pub(crate) const INSERT_EVENT: &str = "INSERT INTO events \
     (seq, campaign_id, event_id, decision_id, kind, value, segment, version, decided_at_ms, at_ms, amount_known) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
     ON CONFLICT (campaign_id, event_id) DO NOTHING";
const SELECT_STORED_EVENT: &str = "SELECT seq, kind, decision_id, value, amount_known FROM events WHERE campaign_id = ?1 AND event_id = ?2";
/// Inserts a decision unless its id is stored: one seek in `decisions_by_time`
/// (campaign, time, id).
const INSERT_DECISION: &str = "INSERT INTO decisions \
     (decision_id, campaign_id, segment, version, propensity, model_version, at_ms, skip, revision, held_out) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE NOT EXISTS \
     (SELECT 1 FROM decisions WHERE campaign_id = ?2 AND at_ms = ?7 AND decision_id = ?1)";

fn write_group_transaction(
    connection: &mut Connection,
    group: &[(u64, WriteJob)],
) -> Result<Vec<JobOutput>, StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sqlite("starting the append transaction"))?;
    let mut outputs = Vec::with_capacity(group.len());
    {
        // Sequence numbers are assigned here rather than by SQLite's rowid so that
        // an event that turns out to be a duplicate consumes none.
        let last_seq: i64 = transaction
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(StoreError::sqlite("reading the last sequence number"))?;
        let mut next_seq = last_seq + 1;
        for (_, job) in group {
            match job {
                WriteJob::Events(events) => {
                    let mut insert = transaction
                        .prepare_cached(INSERT_EVENT)
                        .map_err(StoreError::sqlite("preparing the event insert"))?;
                    let mut lookup = transaction
                        .prepare_cached(SELECT_STORED_EVENT)
                        .map_err(StoreError::sqlite("preparing the duplicate lookup"))?;
                    let mut outcomes = Vec::with_capacity(events.len());
                    for event in events {
                        let inserted = insert
                            .execute(params![
                                next_seq,
                                event.campaign_id,
                                event.event_id,
                                event.decision_id,
                                event.kind.as_str(),
                                event.value,
                                event.segment,
                                event.version,
                                event.decided_at_ms,
                                event.at_ms,
                                event.amount_known,
                            ])
                            .map_err(StoreError::sqlite("appending events"))?;
                        if inserted == 1 {
                            // `next_seq` starts at 1 and only grows: the cast is exact.
                            outcomes.push(AppendOutcome::Appended {
                                seq: next_seq as u64,
                            });
                            next_seq += 1;
                            continue;
                        }
                        let stored: Option<(i64, String, String, f64, bool)> = lookup
                            .query_row(params![event.campaign_id, event.event_id], |row| {
                                Ok((
                                    row.get(0)?,
                                    row.get(1)?,
                                    row.get(2)?,
                                    row.get(3)?,
                                    row.get(4)?,
                                ))
                            })
                            .optional()
                            .map_err(StoreError::sqlite("looking up a duplicate event"))?;
                        let Some((
                            stored_seq,
                            stored_kind,
                            stored_decision,
                            stored_value,
                            stored_known,
                        )) = stored
                        else {
                            return Err(StoreError::Corrupt {
                                table: "events",
                                detail: format!(
                                    "event {:?} of campaign {:?} was neither inserted nor found",
                                    event.event_id, event.campaign_id
                                ),
                            });
                        };
                        let stored_seq = crate::error::from_sql_int("events", "seq", stored_seq)?;
                        let Some(stored_kind) = EventKind::from_name(&stored_kind) else {
                            return Err(StoreError::Corrupt {
                                table: "events",
                                detail: format!(
                                    "event {:?} of campaign {:?} has kind {stored_kind:?}, which is not an event kind",
                                    event.event_id, event.campaign_id
                                ),
                            });
                        };
                        let repeat = is_exact_repeat(
                            EventContent {
                                kind: event.kind,
                                decision_id: &event.decision_id,
                                value: event.value,
                                amount_known: event.amount_known,
                            },
                            EventContent {
                                kind: stored_kind,
                                decision_id: &stored_decision,
                                value: stored_value,
                                amount_known: stored_known,
                            },
                        );
                        outcomes.push(if repeat {
                            AppendOutcome::Duplicate { seq: stored_seq }
                        } else {
                            AppendOutcome::Conflict { seq: stored_seq }
                        });
                    }
                    outputs.push(JobOutput::Events(outcomes));
                }
                WriteJob::Decisions(decisions) => {
                    let mut insert = transaction
                        .prepare_cached(INSERT_DECISION)
                        .map_err(StoreError::sqlite("preparing the decision insert"))?;
                    let mut stored = 0;
                    for decision in decisions {
                        stored += insert
                            .execute(params![
                                decision.decision_id,
                                decision.campaign_id,
                                decision.segment,
                                decision.version,
                                decision.propensity,
                                decision.model_version,
                                decision.at_ms,
                                decision.skip,
                                decision.revision,
                                decision.held_out,
                            ])
                            .map_err(StoreError::sqlite("appending decisions"))?;
                    }
                    outputs.push(JobOutput::Decisions(stored));
                }
            }
        }
    }
    transaction
        .commit()
        .map_err(StoreError::sqlite("committing appended events"))?;
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(count: usize) -> WriteJob {
        WriteJob::Decisions(
            (0..count)
                .map(|index| EncodedDecision {
                    decision_id: index.to_string(),
                    campaign_id: String::new(),
                    segment: 0,
                    version: 0,
                    propensity: 1.0,
                    model_version: 0,
                    at_ms: 0,
                    skip: None,
                    revision: 1,
                    held_out: false,
                })
                .collect(),
        )
    }

    #[test]
    fn a_group_stops_at_the_row_cap_but_always_takes_one_job() {
        let mut pending = vec![(0, decisions(MAX_ROWS_PER_GROUP + 5)), (1, decisions(1))];
        let group = take_group(&mut pending);
        assert_eq!(group.len(), 1);
        assert_eq!(pending.len(), 1);

        let mut pending = vec![
            (0, decisions(MAX_ROWS_PER_GROUP / 2)),
            (1, decisions(MAX_ROWS_PER_GROUP / 2)),
            (2, decisions(1)),
        ];
        let group = take_group(&mut pending);
        assert_eq!(group.len(), 2);
        assert_eq!(pending[0].0, 2);
    }
}
