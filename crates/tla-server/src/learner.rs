//! The learner: the task that tails the event log and applies each event to its
//! campaign's engine in sequence order, rebuilds the decision distributions that are
//! due, writes the queued decisions, snapshots the models and reloads the keys.
//!
//! Every engine is a function of the log prefix it has applied, so a restart (latest
//! snapshot, then the events after it: [`crate::replay`]) rebuilds exactly the model
//! that a replay of the whole log would. The cadences run on the state's clock
//! ([`crate::clock::Clock`]), so tests drive them with a manual clock.

use crate::campaign::{CampaignSlot, Campaigns};
use crate::event;
use crate::metrics::Metrics;
use crate::state::AppState;
use rand_pcg::Pcg64Mcg;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tla_store::{EventLog, StoreError};

/// Events read from the log per page.
const PAGE: usize = 8192;

/// The learner's own state, behind the state's lock: one learner step at a time.
#[derive(Debug)]
pub(crate) struct LearnerState {
    /// The engines' random stream (decision tables, new campaigns' first tables).
    pub(crate) rng: Pcg64Mcg,
    /// When the last timed snapshot round ran, ms on the state's clock.
    pub(crate) last_snapshot_ms: i64,
    /// When the keys were last reloaded, ms on the state's clock.
    pub(crate) last_key_reload_ms: i64,
}

/// What one pass over the log did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Events read from the log.
    pub read: u64,
    /// Events applied to an engine (the rest were covered by a snapshot, of an
    /// unknown campaign or outside their campaign).
    pub applied: u64,
    /// The highest sequence read, or the starting one when the log had nothing new.
    pub last_seq: u64,
}

/// Applies every event of `log` after sequence `after` to its campaign's engine, in
/// order. `covered` skips, per campaign, the events its restored snapshot holds.
pub fn apply_log(
    campaigns: &Campaigns,
    log: &dyn EventLog,
    after: u64,
    covered: &HashMap<String, u64>,
) -> Result<CaughtUp, StoreError> {
    let mut caught_up = CaughtUp {
        read: 0,
        applied: 0,
        last_seq: after,
    };
    loop {
        let events = log.read_after(caught_up.last_seq, PAGE)?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(caught_up);
        };
        let mut current: Option<Arc<CampaignSlot>> = None;
        for stored in &events {
            if covered
                .get(&stored.campaign_id)
                .is_some_and(|&c| stored.seq <= c)
            {
                continue;
            }
            let slot = match &current {
                Some(slot) if slot.id == stored.campaign_id => slot.clone(),
                _ => match campaigns.get(&stored.campaign_id) {
                    Some(slot) => {
                        current = Some(slot.clone());
                        slot
                    }
                    None => {
                        tracing::warn!(seq = stored.seq, campaign = %stored.campaign_id, "event of an unknown campaign skipped");
                        continue;
                    }
                },
            };
            match event::learn(&mut slot.engine_mut(), stored) {
                Ok(()) => {
                    slot.since_snapshot.fetch_add(1, Ordering::Relaxed);
                    caught_up.applied += 1;
                }
                Err(error) => tracing::warn!(%error, "event skipped"),
            }
        }
        caught_up.read += events.len() as u64;
        caught_up.last_seq = last;
        if events.len() < PAGE {
            return Ok(caught_up);
        }
    }
}

/// One learner step: apply new events, rebuild due decision tables, write queued
/// decisions, snapshot when due (or when `force_snapshot`), reload keys when due.
/// Blocking: run it on a blocking thread.
pub fn step(state: &AppState, force_snapshot: bool) {
    // One step at a time: two would apply the same events twice.
    let mut learner = state.learner_state();
    let log = state.log().clone();
    let after = state.applied_seq();
    match apply_log(state.campaigns_set(), log.as_ref(), after, &HashMap::new()) {
        Ok(caught_up) => {
            Metrics::add(&state.metrics().events_learned, caught_up.read);
            state.set_applied_seq(caught_up.last_seq);
        }
        Err(error) => tracing::error!(%error, "reading the event log failed"),
    }
    let now_ms = state.clock().now_ms();
    for slot in state.campaigns() {
        let rebuilt = slot.refresh(&mut learner.rng, now_ms.max(0) as u64);
        Metrics::add(&state.metrics().refreshes, rebuilt as u64);
    }
    state.flush_decisions();
    let config = state.config();
    let every_ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let snapshot_due =
        now_ms.saturating_sub(learner.last_snapshot_ms) >= every_ms(config.snapshot_every);
    for slot in state.campaigns() {
        let since = slot.since_snapshot.load(Ordering::Relaxed);
        if since > 0 && (force_snapshot || snapshot_due || since >= config.snapshot_every_events) {
            snapshot(state, &slot, now_ms);
        }
    }
    if snapshot_due || force_snapshot {
        learner.last_snapshot_ms = now_ms;
    }
    if now_ms.saturating_sub(learner.last_key_reload_ms) >= every_ms(config.key_reload) {
        if let Err(error) = state.reload_keys() {
            tracing::error!(%error, "reloading keys failed");
        }
        learner.last_key_reload_ms = now_ms;
    }
}

/// Saves a snapshot of one campaign's engine with the sequence it covers.
fn snapshot(state: &AppState, slot: &CampaignSlot, now_ms: i64) {
    // The engine is read under its lock together with the sequence it covers.
    let (bytes, covers) = {
        let engine = slot.engine();
        (engine.snapshot(), state.applied_seq())
    };
    match state
        .store()
        .save_snapshot(&slot.id, covers, &bytes, now_ms)
    {
        Ok(()) => {
            slot.since_snapshot.store(0, Ordering::Relaxed);
            Metrics::add(&state.metrics().snapshots, 1);
        }
        Err(error) => tracing::error!(campaign = %slot.id, %error, "snapshot failed"),
    }
}

/// Runs the learner until the state is closing, then a last step with snapshots.
pub async fn run(state: AppState) {
    loop {
        let tick = state.config().learner_tick;
        tokio::select! {
            () = state.learner_woken() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let closing = state.closing();
        let stepping = state.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || step(&stepping, closing)).await {
            tracing::error!(%error, "learner step failed");
        }
        if closing {
            return;
        }
    }
}
