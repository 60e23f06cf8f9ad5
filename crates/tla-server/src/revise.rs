//! Revisions of a running campaign: `PUT /v1/campaigns/{id}/spec` replaces the spec,
//! which becomes revision n + 1 ([`revise`]); and the one rule by which every engine
//! (the learner's, a restart's replay, a correction's rebuild) meets the revisions at
//! the right point of the event log.
//!
//! **Where a revision takes effect.** A revision is recorded with the event sequence
//! the learner had applied when it was accepted (`from_seq`, under the learner's lock,
//! so no event is applied meanwhile): the campaign's events up to it were learned under
//! the revisions before, those after it under this one. [`catch_up`] revises an engine
//! with every revision whose `from_seq` is below the next event's sequence, so a replay
//! of the log revises at the same points as the live service did. A revision's tables
//! are drawn from a random stream seeded by the campaign id and the revision number,
//! so a replay draws them the same way.
//!
//! **Events of older decisions.** A decision id carries the revision it was served
//! under ([`crate::decision_id`]); its segment and version are indices of that
//! revision's spec. [`learn_stored`] maps them through each revision since
//! ([`tla_core::revision::Revision::map_segment`] and `map_version`) to the engine's,
//! so the event teaches the options the decision showed, by name.
//!
//! **Snapshots.** A snapshot covering event `c` was taken under the highest revision
//! whose `from_seq` is at most `c`: accepting a revision deletes the snapshots covering
//! its `from_seq` (taken under the revision before), and the engine snapshot records its
//! revision, which restoring checks ([`engine_from_snapshot`]).

use crate::campaign::{CampaignSlot, LiveRevision};
use crate::error::{ApiError, ErrorCode};
use crate::event::{self, OutsideCampaign};
use crate::state::AppState;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tla_core::engine::Engine;
use tla_core::revision::{Revision, RevisionSummary};
use tla_core::spec::Campaign;
use tla_store::{EventFix, RevisionRow, StoredEvent};

/// The random stream a revision's decision tables are drawn from: seeded by the
/// campaign id and the revision number, so every replay draws the same tables.
pub fn revision_rng(campaign_id: &str, revision: u32) -> Pcg64Mcg {
    // FNV-1a over the id, then the revision.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in campaign_id.bytes().chain(revision.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Pcg64Mcg::seed_from_u64(hash)
}

/// Revises `engine` with each revision of `slot` it has not taken whose `from_seq` is
/// below `before_seq` (pass `u64::MAX` for every revision). A stored revision was
/// accepted by an engine at the same point of the log, so a refusal here means the
/// store and the log disagree: it is logged and the engine stays where it is.
pub fn catch_up(slot: &CampaignSlot, engine: &mut Engine, before_seq: u64) {
    catch_up_while(slot, engine, |revision| revision.from_seq < before_seq);
}

/// Revises `engine` up to the revision that was in force when a results import was
/// taken after event `after_seq` with the engine in revision `in_force`: every
/// revision made before that event, and those made at it up to `in_force`
/// ([`crate::platform`]).
pub fn catch_up_to_import(slot: &CampaignSlot, engine: &mut Engine, after_seq: u64, in_force: u32) {
    catch_up_while(slot, engine, |revision| {
        revision.from_seq < after_seq
            || (revision.from_seq == after_seq && revision.number <= in_force)
    });
}

fn catch_up_while(slot: &CampaignSlot, engine: &mut Engine, due: impl Fn(&LiveRevision) -> bool) {
    loop {
        let next = engine.revision() + 1;
        let Some(revision) = slot.revision(next) else {
            return;
        };
        if !due(&revision) {
            return;
        }
        let mut rng = revision_rng(&slot.id, next);
        if let Err(error) =
            engine.revise(&revision.campaign, &mut rng, revision.at_ms.max(0) as u64)
        {
            tracing::error!(campaign = %slot.id, revision = next, %error, "a stored revision was refused on replay");
            return;
        }
    }
}

/// The segment and version of a decision served under revision `from`, in revision
/// `to` of the campaign; `None` when a revision between removed its segment or one of
/// its options (or `from` is unknown).
pub fn map_decision(
    slot: &CampaignSlot,
    from: u32,
    to: u32,
    segment: u32,
    version: u64,
) -> Option<(u32, u64)> {
    let (mut segment, mut version) = (segment as usize, version);
    for number in from.checked_add(1)?..=to {
        let revision = slot.revision(number)?;
        let map = revision.from_previous.as_ref()?;
        segment = map.map_segment(segment)?;
        version = map.map_version(version)?;
    }
    Some((u32::try_from(segment).ok()?, version))
}

/// Applies one stored event of `slot` to `engine` as its correction says: first the
/// revisions that took effect before it ([`catch_up`]), then the event, its decision's
/// segment and version mapped to the engine's revision ([`map_decision`]). The one
/// path from the log to an engine, for the learner, a replay and a rebuild.
pub fn learn_stored(
    slot: &CampaignSlot,
    engine: &mut Engine,
    stored: &StoredEvent,
    fix: Option<EventFix>,
) -> Result<(), OutsideCampaign> {
    catch_up(slot, engine, stored.seq);
    let served_under = crate::decision_id::revision_of(&stored.decision_id).unwrap_or(1);
    let in_force = engine.revision();
    if served_under == in_force {
        return event::learn_fixed(engine, stored, fix);
    }
    let outside = OutsideCampaign {
        seq: stored.seq,
        segment: stored.segment,
        version: stored.version,
    };
    let (segment, version) =
        map_decision(slot, served_under, in_force, stored.segment, stored.version)
            .ok_or(outside)?;
    let mapped = StoredEvent {
        segment,
        version,
        ..stored.clone()
    };
    event::learn_fixed(engine, &mapped, fix)
}

/// The revision a snapshot covering event `covers` was taken under: the highest
/// revision of `slot` whose `from_seq` is at most `covers`.
fn revision_at(slot: &CampaignSlot, covers: u64) -> Arc<LiveRevision> {
    let revisions = slot.revisions();
    revisions
        .iter()
        .rev()
        .find(|revision| revision.from_seq <= covers)
        .unwrap_or(&revisions[0])
        .clone()
}

/// An engine restored from a snapshot of `slot` covering event `covers`: built from
/// the spec of the revision it was taken under and checked against it; the revision
/// before is tried too (a crash between recording a revision and deleting the
/// snapshots it outdated leaves one). `None` when the snapshot is refused.
pub fn engine_from_snapshot(
    slot: &CampaignSlot,
    covers: u64,
    bytes: &[u8],
    rng: &mut Pcg64Mcg,
) -> Option<Engine> {
    let newest = revision_at(slot, covers);
    let mut candidates = vec![newest.clone()];
    candidates.extend(slot.revision(newest.number.saturating_sub(1)));
    let mut refusal = None;
    for revision in candidates {
        let mut engine = Engine::new(&revision.campaign, rng);
        match engine.restore_revision(bytes, revision.number) {
            Ok(()) => return Some(engine),
            Err(error) => refusal = Some(error),
        }
    }
    if let Some(error) = refusal {
        tracing::warn!(campaign = %slot.id, %error, "snapshot refused; replaying from the prior");
    }
    None
}

/// The server's own rules for a revision, beside the core's
/// ([`Revision::between`]): the `[flight]` stays as it is (its budget and daily cap
/// change through `PATCH /v1/campaigns/{id}/budget`), and so do the segments of a
/// campaign with a flight (its pacing keeps one forecast per segment).
fn check_service_rules(current: &Campaign, next: &Campaign) -> Result<(), ApiError> {
    let refused = |message: String| ApiError::new(ErrorCode::RevisionRefused, message);
    if current.spec().flight != next.spec().flight {
        return Err(refused(
            "flight: a revision keeps the campaign's [flight] as it is; change the budget or the daily cap with PATCH /v1/campaigns/{id}/budget (`tla campaigns budget`)".into(),
        ));
    }
    if current.flight().is_some() && current.design().segment_names != next.design().segment_names {
        return Err(refused(
            "segments: a campaign with a [flight] keeps its segments, in order, across revisions (its pacing forecasts each one)".into(),
        ));
    }
    Ok(())
}

/// What an accepted revision answers.
#[derive(Debug, Clone)]
pub struct Revised {
    /// What changed, by name (the core's summary).
    pub summary: RevisionSummary,
    /// The revision now in force.
    pub revision: Arc<LiveRevision>,
}

/// Replaces the spec of campaign `slot` with `next`, as revision n + 1 (see the module
/// documentation). On a shared stream the revision is published and decided when every
/// server applies it, in stream order ([`crate::change`]); else it is applied here,
/// under the learner's lock, in force after the sequence the learner has applied
/// ([`revise_at`]). Blocking.
///
/// An `idempotency_key` (the request's `Idempotency-Key`) is stored with the revision
/// it makes: a retry with it answers that revision and makes none, the same key with
/// another spec or reason is refused (409 `idempotency_key_reused`;
/// [`crate::change::stored_outcome`]). With a stream it also names the revision on the
/// stream (`revise/<campaign>/<key>`), and every server stores it.
pub fn revise(
    state: &AppState,
    slot: &CampaignSlot,
    next: Campaign,
    reason: Option<String>,
    key_id: &str,
    idempotency_key: Option<&str>,
) -> Result<Revised, ApiError> {
    // A keyed retry answers its first outcome, archived since or not (`revise_at`).
    if idempotency_key.is_none() {
        crate::state::refuse_archived(slot, "revised")?;
    }
    if state.stream().is_some() {
        let spec_json = serde_json::to_string(next.spec()).map_err(ApiError::internal)?;
        let change = crate::stream_log::Change::Revise { spec_json, reason };
        return match crate::change::submit(state, &slot.id, change, key_id, idempotency_key)? {
            crate::change::Applied::Revised(revised) => Ok(revised),
            other => Err(ApiError::internal(format!(
                "a revision applied as {other:?}"
            ))),
        };
    }
    // No event is applied, no snapshot written and no other revision made meanwhile.
    let _learner = state.learner_state();
    let at_ms = state.clock().now_ms();
    revise_at(
        state,
        slot,
        next,
        reason,
        key_id,
        state.applied_seq(),
        at_ms,
        idempotency_key,
    )
}

/// Revision n + 1 of `slot`, in force after event sequence `from_seq`, made at `at_ms`.
/// The caller holds the learner's lock: the engine is revised on a copy (the refusals
/// are the core's, [`tla_core::engine::Engine::revise`], with the server's
/// `check_service_rules`), the revision is recorded durably with the sequence it takes
/// effect after, the snapshots it outdates are deleted, and the revised engine and the
/// revision are swapped in together under the engine's write lock. A refused revision
/// changes nothing. With an `idempotency_key` that made a revision of the campaign
/// before, answers that revision and changes nothing (one with another request: 409
/// `idempotency_key_reused`); else the key is stored with the revision. Blocking.
#[allow(clippy::too_many_arguments)]
pub(crate) fn revise_at(
    state: &AppState,
    slot: &CampaignSlot,
    next: Campaign,
    reason: Option<String>,
    key_id: &str,
    from_seq: u64,
    at_ms: i64,
    idempotency_key: Option<&str>,
) -> Result<Revised, ApiError> {
    let spec_json = serde_json::to_string(next.spec()).map_err(ApiError::internal)?;
    let key = match crate::change::keyed(state, slot, idempotency_key, || {
        crate::stream_log::Change::Revise {
            spec_json: spec_json.clone(),
            reason: reason.clone(),
        }
    })? {
        crate::change::Keyed::Made(crate::change::Applied::Revised(revised)) => return Ok(revised),
        crate::change::Keyed::Made(other) => {
            return Err(ApiError::internal(format!(
                "a stored revision answered as {other:?}"
            )));
        }
        crate::change::Keyed::Make(key) => key,
    };
    crate::state::refuse_archived(slot, "revised")?;
    let current = slot.current();
    check_service_rules(&current.campaign, &next)?;
    let from_previous = Revision::between(&current.campaign, &next)
        .map_err(|error| ApiError::new(ErrorCode::RevisionRefused, error.to_string()))?;
    let number = current.number + 1;
    let mut engine = slot.engine().clone();
    // The engine may lag the revisions only in a replay; the learner's is at the last.
    debug_assert_eq!(engine.revision(), current.number);
    let summary = engine
        .revise(
            &next,
            &mut revision_rng(&slot.id, number),
            at_ms.max(0) as u64,
        )
        .map_err(|error| ApiError::new(ErrorCode::RevisionRefused, error.to_string()))?;
    state.store().append_revision(
        &RevisionRow {
            campaign_id: slot.id.clone(),
            revision: number,
            spec_json,
            from_seq,
            reason: reason.clone(),
            key_id: key_id.to_owned(),
            at_ms,
        },
        key.as_ref(),
    )?;
    // Snapshots covering `from_seq` were taken under the revision before.
    if let Err(error) = state.store().delete_snapshots_covering(&slot.id, from_seq) {
        tracing::warn!(campaign = %slot.id, %error, "deleting the snapshots a revision outdated failed; a restart checks each snapshot's revision");
    }
    let revision = Arc::new(LiveRevision::new(
        number,
        next,
        from_seq,
        at_ms,
        reason,
        Some(from_previous),
    ));
    {
        let mut in_force = slot.engine_mut();
        *in_force = engine;
        slot.push_revision(revision.clone());
    }
    // Snapshot the new revision at the next round.
    slot.since_snapshot.fetch_add(1, Ordering::Relaxed);
    tracing::info!(campaign = %slot.id, revision = number, key = %key_id, "campaign revised");
    Ok(Revised { summary, revision })
}
