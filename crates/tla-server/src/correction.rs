//! Corrections: retract a stored event, or give a conversion or a cost a new amount,
//! by its `event_id`; the campaign's model is then what a replay of the log without
//! the retracted events (and with the new amounts) gives.
//!
//! [`correct`] runs under the learner's lock, so no event is applied and no snapshot is
//! written meanwhile:
//!
//! 1. it checks the request and finds the event ([`tla_store::EventLog::find_event`]);
//! 2. it deletes the campaign's snapshots that cover the event
//!    ([`tla_store::Store::delete_snapshots_covering`]): they learned it as it was;
//! 3. it records the correction durably, with the key id, time, reason, old and new
//!    value ([`tla_store::EventLog::append_correction`]); a crash after 2 and before 3
//!    only costs a longer start, and after 3 the start applies the correction;
//! 4. it puts the campaign's corrections in force for the events the learner has not
//!    applied yet ([`CampaignSlot::fix_of`]);
//! 5. if the learner had applied the event, it rebuilds the engine ([`rebuild`]): the
//!    nearest snapshot left (one that does not cover the event), or the prior, then
//!    the campaign's events after it up to the learner's position, each as corrected,
//!    and swaps it into the slot.
//!
//! A retraction is final: retracting again answers the first retraction (`repeated`,
//! nothing recorded); correcting a retracted event is refused (`event_retracted`).

use crate::campaign::CampaignSlot;
use crate::error::{ApiError, ErrorCode};
use crate::event::{self, MAX_EVENT_ID_LEN};
use crate::learner;
use crate::state::AppState;
use crate::wire::{
    CorrectionActionName, CorrectionBody, CorrectionOutcome, CorrectionRequest, RebuildBody,
};
use rand::Rng;
use tla_core::engine::Engine;
use tla_store::{
    CorrectionAction, EventFix, EventKind, EventLog, NewCorrection, Store, StoreError,
    StoredCorrection,
};

/// Longest `reason` accepted, characters.
pub const MAX_REASON_LEN: usize = 500;

/// Checks a correction request; the action to record.
fn check_request(request: &CorrectionRequest) -> Result<CorrectionAction, ApiError> {
    if request.event_id.is_empty() || request.event_id.chars().count() > MAX_EVENT_ID_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidEventId,
            format!("event_id must be 1 to {MAX_EVENT_ID_LEN} characters"),
        ));
    }
    let reason_len = request.reason.trim().chars().count();
    if reason_len == 0 || request.reason.chars().count() > MAX_REASON_LEN {
        return Err(ApiError::bad_request(format!(
            "reason must be 1 to {MAX_REASON_LEN} characters (not only spaces): say why the event is corrected"
        )));
    }
    match (request.action, request.value) {
        (CorrectionActionName::Retract, None) => Ok(CorrectionAction::Retract),
        (CorrectionActionName::Retract, Some(_)) => Err(ApiError::bad_request(
            "a retraction takes no value; send action \"correct\" to give the event a new value",
        )),
        (CorrectionActionName::Correct, None) => Err(ApiError::bad_request(
            "action \"correct\" needs `value`: the event's new donation (conversion) or spend (cost)",
        )),
        // The amount is checked against the event's kind once the event is found.
        (CorrectionActionName::Correct, Some(value)) => Ok(CorrectionAction::Correct { value }),
    }
}

/// Records a correction of an event of campaign `campaign_id`, asked by key `key_id`,
/// and brings the campaign's model in line with it (see the module documentation).
/// Blocking: run it on a blocking thread.
pub fn correct(
    state: &AppState,
    campaign_id: &str,
    request: &CorrectionRequest,
    key_id: &str,
) -> Result<CorrectionOutcome, ApiError> {
    let action = check_request(request)?;
    let slot = state.campaign(campaign_id)?;
    // One learner step at a time, and no correction during one.
    let mut learner = state.learner_state();
    let log = state.log();
    let Some(event) = log.find_event(&slot.id, &request.event_id)? else {
        return Err(unknown_event(&slot.id, &request.event_id));
    };
    if let CorrectionAction::Correct { value } = action {
        if matches!(event.kind, EventKind::Impression | EventKind::Click) {
            return Err(ApiError::new(
                ErrorCode::UnexpectedAmount,
                format!(
                    "event {} is {} {} event, which carries no value; it can be retracted, not corrected",
                    crate::error::quoted(&event.event_id),
                    event::article(event.kind.as_str()),
                    event.kind.as_str()
                ),
            ));
        }
        // The rule new events follow: a finite number, at most `max_value` for a
        // conversion.
        event::check_amount(event.kind, value, slot.current().campaign.max_value())?;
    }
    let earlier = log.corrections(&slot.id)?;
    if let tla_store::Standing::Retracted(retraction) = tla_store::standing(&event, &earlier) {
        return already_retracted(action, retraction);
    }
    state
        .store()
        .delete_snapshots_covering(&slot.id, event.seq)?;
    let new = NewCorrection {
        campaign_id: slot.id.clone(),
        event_id: event.event_id.clone(),
        action,
        reason: request.reason.clone(),
        key_id: key_id.to_owned(),
        at_ms: state.clock().now_ms(),
    };
    let recorded = match log.append_correction(&new)? {
        tla_store::CorrectionOutcome::Recorded(recorded) => recorded,
        tla_store::CorrectionOutcome::AlreadyRetracted(retraction) => {
            return already_retracted(action, &retraction);
        }
        tla_store::CorrectionOutcome::UnknownEvent => {
            return Err(unknown_event(&slot.id, &request.event_id));
        }
    };
    // Every correction of the campaign, those other servers of a stream recorded
    // meanwhile included.
    let all = log.corrections(&slot.id)?;
    let rebuild = put_in_force(state, &slot, &all, event.seq, &mut learner.rng)?;
    tracing::info!(
        campaign = %slot.id,
        event_id = %recorded.event_id,
        action = recorded.action.as_str(),
        key = %key_id,
        "event corrected"
    );
    Ok(CorrectionOutcome {
        correction: CorrectionBody::new(&recorded),
        repeated: false,
        rebuild,
    })
}

/// Puts `all` the campaign's corrections in force and, when the earliest event they
/// newly touch (`touched_seq`) is already applied, rebuilds the model as a replay of the
/// corrected log up to the applied sequence. The caller holds the learner's lock.
fn put_in_force<R: rand::Rng + ?Sized>(
    state: &AppState,
    slot: &CampaignSlot,
    all: &[StoredCorrection],
    touched_seq: u64,
    rng: &mut R,
) -> Result<Option<RebuildBody>, StoreError> {
    slot.set_fixes(all);
    let applied = state.applied_seq();
    if touched_seq > applied {
        return Ok(None);
    }
    let now_ms = state.clock().now_ms();
    let (engine, rebuilt) = rebuild(
        slot,
        state.store(),
        state.log().as_ref(),
        applied,
        rng,
        now_ms,
    )?;
    slot.replace_engine(engine);
    // A corrected cost changes what was spent.
    if let Some(pacing) = &slot.pacing {
        pacing.restore_spent(slot, state.store(), now_ms)?;
    }
    // Snapshot the rebuilt model at the next round, so a start need not redo it.
    slot.since_snapshot.store(
        rebuilt.events_replayed.max(1),
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(Some(rebuilt))
}

/// On a shared stream, brings in the corrections other servers recorded since this
/// server's fixes were set, the same way as its own ([`put_in_force`]: snapshots that
/// cover a newly corrected event are dropped, the model rebuilt), so every server's
/// model stays the same function of the stream. A learner step calls it after applying
/// the log, with the learner's lock held.
pub(crate) fn follow_stream<R: rand::Rng + ?Sized>(
    state: &AppState,
    rng: &mut R,
) -> Result<(), StoreError> {
    if state.stream().is_none() {
        return Ok(());
    }
    for slot in state.campaigns() {
        let all = state.log().corrections(&slot.id)?;
        let known = slot.corrections_in_force() as usize;
        if all.len() <= known {
            continue;
        }
        let touched = all[known..]
            .iter()
            .map(|c| c.event_seq)
            .min()
            .unwrap_or(u64::MAX);
        state.store().delete_snapshots_covering(&slot.id, touched)?;
        put_in_force(state, &slot, &all, touched, rng)?;
        tracing::info!(campaign = %slot.id, corrections = all.len() - known, "corrections from the stream put in force");
    }
    Ok(())
}

fn unknown_event(campaign_id: &str, event_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::EventNotFound,
        format!(
            "campaign {campaign_id} holds no event with event_id {}; a correction names an event already sent (and acknowledged)",
            crate::error::quoted(event_id)
        ),
    )
}

/// A retraction again answers the first one; a correction is refused.
fn already_retracted(
    action: CorrectionAction,
    retraction: &StoredCorrection,
) -> Result<CorrectionOutcome, ApiError> {
    match action {
        CorrectionAction::Retract => Ok(CorrectionOutcome {
            correction: CorrectionBody::new(retraction),
            repeated: true,
            rebuild: None,
        }),
        CorrectionAction::Correct { .. } => Err(ApiError::new(
            ErrorCode::EventRetracted,
            format!(
                "event {} was retracted (at {} ms, by key {}); a retraction is final, so it cannot be corrected",
                crate::error::quoted(&retraction.event_id),
                retraction.at_ms,
                retraction.key_id
            ),
        )),
    }
}

/// Rebuilds the engine of `slot` up to event sequence `up_to`: from the campaign's
/// latest snapshot (the caller has deleted those that cover a corrected event) or its
/// prior, then the campaign's events after it, each as its corrections say
/// ([`CampaignSlot::fix_of`]), with its platform results ([`crate::platform`]); then draws every decision distribution with `rng` at
/// `now_ms`. The slot's engine is not touched; swap the result in.
///
/// Reads the log after the snapshot with [`EventLog::read_after`], the one read every
/// event log has, so its cost follows the log's length after the snapshot.
pub fn rebuild<R: Rng + ?Sized>(
    slot: &CampaignSlot,
    store: &Store,
    log: &dyn EventLog,
    up_to: u64,
    rng: &mut R,
    now_ms: i64,
) -> Result<(Engine, RebuildBody), StoreError> {
    let first = slot.revision(1).expect("a campaign has revision 1");
    let mut engine = Engine::new(&first.campaign, rng);
    let mut from_seq = 0;
    let mut restored = false;
    if let Some((covers, bytes)) = store.latest_snapshot(&slot.id)? {
        if covers <= up_to {
            let mut seeded = crate::revise::revision_rng(&slot.id, 0);
            if let Some(restored_engine) =
                crate::revise::engine_from_snapshot(slot, covers, &bytes, &mut seeded)
            {
                engine = restored_engine;
                from_seq = covers;
                restored = true;
            }
        }
    }
    // Platform results, each import right after the event it was taken after.
    let mut results = crate::platform::PendingResults::default();
    results.load(store, &slot.id, restored.then_some(from_seq))?;
    let mut after = from_seq;
    let mut events_replayed = 0;
    'pages: while after < up_to {
        let page = log.read_after(after, learner::PAGE)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for stored in &page {
            if stored.seq > up_to {
                break 'pages;
            }
            if stored.campaign_id != slot.id {
                continue;
            }
            let fix = slot.fix_of(stored);
            if fix == Some(EventFix::Retracted) {
                continue;
            }
            results.before(slot, &mut engine, stored.seq);
            match crate::revise::learn_stored(slot, &mut engine, stored, fix) {
                Ok(()) => events_replayed += 1,
                Err(error) => tracing::warn!(%error, "event skipped"),
            }
        }
        after = last;
    }
    // The results imported and the revisions made after the campaign's last event up
    // to `up_to`.
    results.rest(slot, &mut engine);
    crate::revise::catch_up(slot, &mut engine, u64::MAX);
    engine.refresh_all(rng, now_ms.max(0) as u64);
    Ok((
        engine,
        RebuildBody {
            from_seq,
            to_seq: up_to,
            events_replayed,
        },
    ))
}
