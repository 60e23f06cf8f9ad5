//! The learner: the task that tails the event log and applies each event to its
//! campaign's engine in sequence order, rebuilds the decision distributions that are
//! due, snapshots the models and reloads the keys. It also writes the queued decisions
//! at the start of each step (the decision writer, [`crate::decision_log::run`], does
//! so on its own cadence too), restores the decisions of earlier processes that new
//! events refer to, and records how far the decision log covers the event log. On a
//! shared stream it also applies the state changes in their place among the events
//! ([`crate::change::apply_next`]) and shares the data directory's keys
//! ([`crate::change::share_keys`]).
//!
//! Every engine is a function of the log prefix it has applied, so a restart (latest
//! snapshot, then the events after it: [`crate::replay`]) rebuilds exactly the model
//! that a replay of the whole log would. The cadences run on the state's clock
//! ([`crate::clock::Clock`]), so tests drive them with a manual clock.

use crate::campaign::{CampaignSlot, Campaigns};
use crate::metrics::Metrics;
use crate::state::AppState;
use rand_pcg::Pcg64Mcg;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tla_store::{DecisionRow, EventFix, EventLog, StoreError, StoredEvent, StoredSpendReport};

/// The one path from a stored spend report to its campaign's learner. The server
/// calls it for each report it stores (`POST /v1/campaigns/{id}/spend`), and the
/// replay of a data directory ([`crate::replay`], the server's start included) for
/// every stored report of each campaign, in the order stored, after the events.
///
/// A campaign with a flight spends it and its pacing's cost model learns it as a total
/// ([`crate::pacing::CampaignPacing::spend_report`]). Spend reports are not in the
/// event log's sequence and snapshots do not cover them: the replay calls this for all
/// of a campaign's reports at each open, then sets the spend from the store.
pub fn learn_spend_report(slot: &CampaignSlot, report: &StoredSpendReport) {
    if let Some(pacing) = &slot.pacing {
        pacing.spend_report(
            report.segment as usize,
            report.start_ms,
            report.end_ms,
            report.amount,
            report.impressions,
            report.at_ms,
        );
    }
}

/// The one path from an applied cost event to its campaign's pacing: the learner and
/// the replay call it for each cost event they apply (`value`: its amount as
/// corrected).
pub fn learn_cost(slot: &CampaignSlot, event: &StoredEvent, value: f64) {
    if let Some(pacing) = &slot.pacing {
        pacing.cost(
            &event.decision_id,
            crate::decision_id::held_out_of(&event.decision_id),
            event.segment as usize,
            event.decided_at_ms,
            value,
            event.at_ms,
        );
    }
}

/// Events read from the log per page.
pub(crate) const PAGE: usize = 8192;

/// The learner's own state, behind the state's lock: one learner step at a time.
#[derive(Debug)]
pub(crate) struct LearnerState {
    /// The engines' random stream (decision tables, new campaigns' first tables).
    pub(crate) rng: Pcg64Mcg,
    /// When the last timed snapshot round ran, ms on the state's clock.
    pub(crate) last_snapshot_ms: i64,
    /// When the keys were last reloaded, ms on the state's clock.
    pub(crate) last_key_reload_ms: i64,
    /// Decisions of earlier processes that applied events refer to, not yet written
    /// (a write failed); retried at every step.
    pub(crate) restoring: Vec<DecisionRow>,
    /// Every event up to this sequence that refers to a decision of an earlier
    /// process has that decision in the log.
    pub(crate) restored_through: u64,
    /// The coverage last recorded in the store ([`tla_store::Store::decisions_cover_seq`]).
    pub(crate) recorded_cover: u64,
    /// When the coverage was last recorded, ms on the state's clock.
    pub(crate) last_cover_ms: i64,
    /// When the rollups were last stored, ms on the state's clock.
    pub(crate) last_rollup_flush_ms: i64,
}

/// How often the learner records the decision log's coverage of the event log: after
/// a crash, the next start checks the events since then for missing decisions.
const RECORD_COVER_EVERY_MS: i64 = 1_000;

/// How often the learner stores the dashboard's rollups, ms (readers add the pending
/// ones, so this bounds the loss at a crash, not what a chart shows).
const ROLLUP_FLUSH_EVERY_MS: i64 = 5_000;

/// How far a pass over the log got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Events read from the log.
    pub read: u64,
    /// Events applied to an engine (the rest were covered by a snapshot, of an
    /// unknown campaign or outside their campaign).
    pub applied: u64,
    /// The highest sequence applied (every event up to it is in the engines).
    pub last_seq: u64,
}

impl CaughtUp {
    /// A pass that starts after sequence `after`.
    pub fn after(after: u64) -> Self {
        Self {
            read: 0,
            applied: 0,
            last_seq: after,
        }
    }
}

/// Applies every event of `log` after `caught_up.last_seq` to its campaign's engine,
/// in order, page by page, moving `caught_up` on after each page: when a read fails,
/// `caught_up` still says how far the engines got, so no event is applied twice.
/// `covered` skips, per campaign, the events its restored snapshot holds. Each event is
/// applied with its campaign's corrections ([`CampaignSlot::fix_of`]): a retracted one
/// is skipped, a corrected one learned with its new value.
pub fn apply_log(
    campaigns: &Campaigns,
    log: &dyn EventLog,
    covered: &HashMap<String, u64>,
    caught_up: &mut CaughtUp,
) -> Result<(), StoreError> {
    apply_log_observed(
        campaigns,
        log,
        covered,
        caught_up,
        &mut crate::platform::PendingResults::default(),
        &mut |_| {},
        &mut |_| None,
    )
}

/// [`apply_log`], showing every event read to `observe` (applied or skipped), and
/// learning each of the `results` imports right after the event it was taken after
/// (before the campaign's next event applied; the caller learns those left,
/// [`crate::platform::PendingResults::rest`]). An event of a campaign `campaigns` does
/// not hold is offered to `adopt` (a campaign created on another server of a shared
/// log), and skipped when it answers `None`.
pub fn apply_log_observed(
    campaigns: &Campaigns,
    log: &dyn EventLog,
    covered: &HashMap<String, u64>,
    caught_up: &mut CaughtUp,
    results: &mut crate::platform::PendingResults,
    observe: &mut dyn FnMut(&StoredEvent),
    adopt: &mut dyn FnMut(&str) -> Option<Arc<CampaignSlot>>,
) -> Result<(), StoreError> {
    loop {
        let events = log.read_after(caught_up.last_seq, PAGE)?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let mut current: Option<Arc<CampaignSlot>> = None;
        for stored in &events {
            observe(stored);
            if covered
                .get(&stored.campaign_id)
                .is_some_and(|&c| stored.seq <= c)
            {
                continue;
            }
            let slot = match &current {
                Some(slot) if slot.id == stored.campaign_id => slot.clone(),
                _ => match campaigns
                    .get(&stored.campaign_id)
                    .or_else(|| adopt(&stored.campaign_id))
                {
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
            let fix = slot.fix_of(stored);
            if fix == Some(EventFix::Retracted) {
                continue;
            }
            let learned = {
                let mut engine = slot.engine_mut();
                results.before(&slot, &mut engine, stored.seq);
                crate::revise::learn_stored(&slot, &mut engine, stored, fix)
            };
            match learned {
                Ok(()) => {
                    let value = match fix {
                        Some(EventFix::Value(value)) => value,
                        _ => stored.value,
                    };
                    if stored.kind == tla_store::EventKind::Cost {
                        learn_cost(&slot, stored, value);
                    }
                    crate::dashboard::rollup::note(&slot, stored, value);
                    slot.since_snapshot.fetch_add(1, Ordering::Relaxed);
                    caught_up.applied += 1;
                }
                Err(error) => tracing::warn!(%error, "event skipped"),
            }
        }
        caught_up.read += events.len() as u64;
        caught_up.last_seq = last;
        if events.len() < PAGE {
            return Ok(());
        }
    }
}

/// One learner step: write queued decisions, apply new events (restoring the
/// decisions of earlier processes they refer to), rebuild due decision tables,
/// snapshot when due (or when `force_snapshot`), record the decision log's coverage,
/// reload keys when due. Blocking: run it on a blocking thread.
pub fn step(state: &AppState, force_snapshot: bool) {
    // One step at a time: two would apply the same events twice.
    let mut learner = state.learner_state();
    // Decisions first, so they never wait behind event application. After a failure
    // the decision writer retries on its own backoff; the last step writes anyway.
    if state.decisions().failure().is_none() || state.closing() {
        // A failure is kept in the queue's state and logged there.
        let _ = state.write_decisions();
    }
    let log = state.log().clone();
    let mut caught_up = CaughtUp::after(state.applied_seq());
    let opened_at_ms = state.opened_at_ms();
    let mut restoring = std::mem::take(&mut learner.restoring);
    let adopting = state.stream().is_some();
    if adopting {
        if let Err(error) = state.adopt_shared_campaigns(&mut learner.rng) {
            tracing::error!(%error, "starting the stream's campaigns failed");
        }
    }
    // On a shared stream the log answers events up to the next state change not
    // applied; apply it in its place, then the events after it ([`crate::change`]).
    loop {
        let rng = &mut learner.rng;
        let read = apply_log_observed(
            state.campaigns_set(),
            log.as_ref(),
            &HashMap::new(),
            &mut caught_up,
            // The learner learns results when they are imported.
            &mut crate::platform::PendingResults::default(),
            &mut |stored| {
                // A decision of this process is in the queue or the log; one made before
                // the start may have been lost with an earlier process.
                if stored.decided_at_ms < opened_at_ms {
                    restoring.extend(crate::decision_log::decision_row_of(state.signer(), stored));
                }
            },
            &mut |campaign_id| {
                if !adopting {
                    return None;
                }
                if let Err(error) = state.adopt_shared_campaigns(rng) {
                    tracing::error!(%error, "starting the stream's campaigns failed");
                }
                state.campaigns_set().get(campaign_id)
            },
        );
        if let Err(error) = read {
            tracing::error!(%error, "reading the event log failed");
            break;
        }
        if !adopting {
            break;
        }
        if let Err(error) = state.adopt_shared_campaigns(&mut learner.rng) {
            tracing::error!(%error, "starting the stream's campaigns failed");
        }
        if crate::change::next_seq(state).is_none() {
            break;
        }
        // Events that reached the mirror with the change and before it come first.
        match log.read_after(caught_up.last_seq, 1) {
            Ok(before) if before.is_empty() => {}
            Ok(_) => continue,
            Err(error) => {
                tracing::error!(%error, "reading the event log failed");
                break;
            }
        }
        // The models stand at the change's place: the applied sequence moves to it.
        state.set_applied_seq(caught_up.last_seq);
        let Some(seq) = crate::change::apply_next(state, &mut learner.rng) else {
            break;
        };
        caught_up.last_seq = caught_up.last_seq.max(seq);
        state.set_applied_seq(caught_up.last_seq);
    }
    restore_decisions(state, &mut learner, restoring, caught_up.last_seq);
    Metrics::add(&state.metrics().events_learned, caught_up.applied);
    state.set_applied_seq(caught_up.last_seq);
    if let Err(error) = crate::correction::follow_stream(state, &mut learner.rng) {
        tracing::error!(%error, "putting the stream's corrections in force failed; the next step retries");
    }
    let now_ms = state.clock().now_ms();
    for slot in state.campaigns() {
        if let Some(pacing) = &slot.pacing {
            pacing.replan_if_due(&slot.engine(), now_ms);
        }
        let rebuilt = slot.refresh(&mut learner.rng, now_ms.max(0) as u64);
        Metrics::add(&state.metrics().refreshes, rebuilt as u64);
    }
    // With a stream: the spend leases that are due (docs/scale-out.md).
    crate::lease::ask_due_leases(state, now_ms);
    if force_snapshot
        || now_ms.saturating_sub(learner.last_rollup_flush_ms) >= ROLLUP_FLUSH_EVERY_MS
    {
        for slot in state.campaigns() {
            if let Err(error) = crate::dashboard::rollup::flush(&slot, state.store()) {
                tracing::error!(%error, campaign = %slot.id, "storing rollups failed; kept for the next step");
            }
        }
        learner.last_rollup_flush_ms = now_ms;
    }
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
    if force_snapshot || now_ms.saturating_sub(learner.last_cover_ms) >= RECORD_COVER_EVERY_MS {
        record_cover(state, &mut learner, now_ms);
    }
    if now_ms.saturating_sub(learner.last_key_reload_ms) >= every_ms(config.key_reload) {
        if let Err(error) = state.reload_keys() {
            tracing::error!(%error, "reloading keys failed");
        }
        learner.last_key_reload_ms = now_ms;
        // Publishing waits for the stream: not under the learner's lock.
        drop(learner);
        crate::change::share_keys(state);
    }
}

/// Writes the decisions of earlier processes that the events up to `through` refer
/// to (the store skips those already logged); on a failure keeps them for the next
/// step.
fn restore_decisions(
    state: &AppState,
    learner: &mut LearnerState,
    restoring: Vec<DecisionRow>,
    through: u64,
) {
    if restoring.is_empty() {
        learner.restored_through = through;
        return;
    }
    match state.decision_log().append_decisions(&restoring) {
        Ok(restored) => {
            if restored > 0 {
                tracing::warn!(
                    restored,
                    "decisions of an earlier process missing from the decision log were restored from events"
                );
            }
            learner.restored_through = through;
        }
        Err(error) => {
            tracing::error!(%error, rows = restoring.len(), "restoring decisions from events failed; retried at the next step");
            learner.restoring = restoring;
        }
    }
}

/// Records in the store how far the decision log covers the event log: every event up
/// to the lower of the writer's and the restorer's positions refers to a logged
/// decision.
fn record_cover(state: &AppState, learner: &mut LearnerState, now_ms: i64) {
    learner.last_cover_ms = now_ms;
    let cover = state.decisions().covers_seq().min(learner.restored_through);
    if cover <= learner.recorded_cover {
        return;
    }
    match state.store().set_decisions_cover_seq(cover) {
        Ok(()) => learner.recorded_cover = cover,
        Err(error) => tracing::warn!(%error, "recording the decision log's coverage failed"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::sync::atomic::AtomicUsize;
    use tla_core::spec::CampaignSpec;
    use tla_store::{
        AppendOutcome, CampaignRow, CampaignStatus, EventKind, MemoryEventLog, NewEvent,
        StoredEvent,
    };

    /// A memory log whose `fail_at`-th read fails.
    #[derive(Debug)]
    struct FlakyLog {
        inner: MemoryEventLog,
        reads: AtomicUsize,
        fail_at: usize,
    }

    impl EventLog for FlakyLog {
        fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
            self.inner.append(batch)
        }

        fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
            if self.reads.fetch_add(1, Ordering::SeqCst) == self.fail_at {
                return Err(StoreError::WriterPanicked);
            }
            self.inner.read_after(after, limit)
        }

        fn last_seq(&self) -> Result<u64, StoreError> {
            self.inner.last_seq()
        }

        fn find_event(
            &self,
            campaign_id: &str,
            event_id: &str,
        ) -> Result<Option<StoredEvent>, StoreError> {
            self.inner.find_event(campaign_id, event_id)
        }

        fn append_correction(
            &self,
            correction: &tla_store::NewCorrection,
        ) -> Result<tla_store::CorrectionOutcome, StoreError> {
            self.inner.append_correction(correction)
        }

        fn corrections(
            &self,
            campaign_id: &str,
        ) -> Result<Vec<tla_store::StoredCorrection>, StoreError> {
            self.inner.corrections(campaign_id)
        }
    }

    #[test]
    fn a_failed_read_keeps_the_pages_applied_so_no_event_is_applied_twice() {
        let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))
            .and_then(|spec| spec.validate())
            .unwrap();
        let version = (0..).find(|&v| campaign.is_allowed(v)).unwrap();
        let row = CampaignRow {
            id: "c".into(),
            name: "c".into(),
            spec_json: String::new(),
            status: CampaignStatus::Active,
            created_at_ms: 0,
        };
        let campaigns = Campaigns::default();
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        campaigns.insert(Arc::new(CampaignSlot::new(&row, campaign, &mut rng)));
        // The second read fails: after one full page.
        let log = FlakyLog {
            inner: MemoryEventLog::new(),
            reads: AtomicUsize::new(0),
            fail_at: 1,
        };
        let events: Vec<NewEvent> = (0..PAGE + 10)
            .map(|i| NewEvent {
                campaign_id: "c".into(),
                event_id: format!("e{i}"),
                decision_id: format!("d{i}"),
                kind: EventKind::Impression,
                value: 0.0,
                amount_known: true,
                segment: 0,
                version,
                decided_at_ms: 0,
                at_ms: 0,
            })
            .collect();
        log.append(&events).unwrap();
        let mut caught_up = CaughtUp::after(0);
        let failed = apply_log(&campaigns, &log, &HashMap::new(), &mut caught_up);
        assert!(failed.is_err());
        assert_eq!(caught_up.last_seq, PAGE as u64);
        assert_eq!(caught_up.applied, PAGE as u64);
        // The next pass goes on from there.
        apply_log(&campaigns, &log, &HashMap::new(), &mut caught_up).unwrap();
        assert_eq!(caught_up.last_seq, (PAGE + 10) as u64);
        let engine_events = campaigns.get("c").unwrap().engine().events();
        assert_eq!(engine_events, (PAGE + 10) as u64);
    }
}
