//! State changes on a shared stream: one mechanism for every change of a campaign's
//! state (revisions, pause, resume, archive, budget changes) and of the API keys (made,
//! revoked), spend reports, plans and platform result imports. The format and the
//! rules are in docs/scale-out.md ("State changes").
//!
//! Without a stream nothing here runs: each route calls the function that applies the
//! change on this server, as always. With one, the route checks the request, then
//! [`submit`] publishes a [`ChangeRecord`] and waits until this server's learner has
//! applied it; the answer is the outcome decided then. Every server's learner applies
//! the change records in stream order ([`apply_next`]), through the same functions a
//! single server calls ([`crate::revise::revise_at`], [`AppState::set_paused_at`],
//! [`AppState::archive_at`], [`crate::budget::apply`], [`crate::spend::store`],
//! `Store::save_plan`, [`crate::platform::store_import`]), so an outcome that depends on
//! state (a revision's base, a pause of an archived campaign, a budget below what was
//! spent) is decided at the record's place in the stream, alike on every server.
//!
//! **Where a change meets the events.** The stream's event log answers no event after
//! a change record the state has not applied yet
//! ([`crate::stream_log::JetStreamEventLog::set_changes_through`]), so the learner (and
//! the replay at a start) applies the events before a change, then the change, then
//! the events after it. A revision takes effect after its record's sequence
//! (`from_seq`), so every server revises its model at the same point.
//!
//! **Restarts.** How far a data directory applied the changes is stored
//! ([`tla_store::Store::stream_changes_through`]); at a start the replay stops at the
//! first change after it, and the learner goes on from there. A crash between a
//! change's own write and that record re-applies the change: a revision is recognised
//! by its `from_seq` and skipped, a status change ends in the same status (its control
//! audit line is written again), a budget change is recognised by its time, key and
//! reason; keys are idempotent.
//!
//! **Keys.** `tla keys create|revoke --data DIR` writes the key into that data
//! directory; its server shares what the stream lacks at each key reload
//! ([`share_keys`]), and every server stores the keys it reads.

use crate::budget;
use crate::campaign::CampaignSlot;
use crate::error::{ApiError, ErrorCode};
use crate::revise::Revised;
use crate::state::AppState;
use crate::stream_log::{Change, ChangeRecord};
use crate::wire::{BudgetChangeBody, BudgetChangeRequest};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tla_store::KeyRow;

/// How long a route waits for its own learner to apply a change it published.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcomes kept for the routes waiting on them and for retries the stream absorbed
/// (the oldest are dropped beyond this): several of the largest batches of spend
/// reports (one record each).
const OUTCOMES_KEPT: usize = 65_536;

/// What applying a change did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// A pause, resume or archive: the campaign as it now stands.
    Campaign(Arc<CampaignSlot>),
    /// A revision in force.
    Revised(Revised),
    /// A budget change recorded and in force.
    Budget(BudgetChangeBody),
    /// A key stored or revoked.
    Key,
    /// A spend report: stored, or a duplicate or conflict of the first copy of its id.
    Spend(tla_store::SpendReportOutcome),
    /// A platform results import stored and learned.
    Results(crate::wire::ResultOutcome),
    /// A plan stored (or, applied again after a crash, found stored).
    Plan(tla_store::StoredPlan),
    /// Applied before a crash (recognised on re-applying); nothing done again.
    Already,
}

/// The changes this server applied: how far, and the outcomes routes wait for.
#[derive(Debug)]
pub(crate) struct Applier {
    /// The last change record applied (mirrors the store's record).
    through: AtomicU64,
    /// Outcome by stream sequence, for the route that published it.
    outcomes: Mutex<BTreeMap<u64, Result<Applied, ApiError>>>,
    /// The last change record applied, for waiters.
    applied: tokio::sync::watch::Sender<u64>,
}

impl Applier {
    /// Changes applied up to `through` (from the store at the start).
    pub(crate) fn new(through: u64) -> Self {
        Self {
            through: AtomicU64::new(through),
            outcomes: Mutex::default(),
            applied: tokio::sync::watch::channel(through).0,
        }
    }

    /// The last change record applied.
    pub(crate) fn through(&self) -> u64 {
        self.through.load(Ordering::SeqCst)
    }
}

fn outcomes(
    state: &AppState,
) -> std::sync::MutexGuard<'_, BTreeMap<u64, Result<Applied, ApiError>>> {
    state
        .change_applier()
        .outcomes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Publishes `change` of campaign `campaign_id` (empty for a key) asked by `key_id`,
/// waits until this server's learner has applied it, and answers its outcome. Call it
/// only with a stream. Blocking: on a blocking thread of the server's runtime.
///
/// With an `idempotency_key` (a revision or a budget change) the change is published
/// under the message id it names ([`ChangeRecord::message_id`]): a retry the stream
/// absorbs (within its deduplication window) answers the first request's outcome when
/// it asks the same change, and 409 `idempotency_key_reused` when it asks another; a
/// retry stored after the window is applied as a repeat of the first copy by every
/// server alike ([`apply_next`]), with the same answers.
pub fn submit(
    state: &AppState,
    campaign_id: &str,
    change: Change,
    key_id: &str,
    idempotency_key: Option<&str>,
) -> Result<Applied, ApiError> {
    let record = ChangeRecord {
        campaign_id: campaign_id.to_owned(),
        change: change.clone(),
        key_id: key_id.to_owned(),
        at_ms: 0,
        idempotency_key: idempotency_key.map(str::to_owned),
    };
    let submitted = submit_all(state, campaign_id, vec![change], key_id, idempotency_key)?
        .pop()
        .ok_or_else(|| ApiError::internal("a change submitted without its outcome"))?;
    let Some(key) = idempotency_key else {
        return submitted.outcome;
    };
    if submitted.duplicate {
        let first = state
            .stream()
            .and_then(|stream| stream.change_at(submitted.seq));
        if first.is_some_and(|first| first.change != record.change) {
            return Err(key_reused(
                campaign_id,
                key,
                &format!("stream sequence {}", submitted.seq),
            ));
        }
    }
    match submitted.outcome {
        // No longer kept here (evicted, or this server restarted): the change the key
        // made, as stored.
        Err(error) if error.code() == ErrorCode::Conflict => {
            let slot = state.campaign(campaign_id)?;
            stored_outcome(state, &slot, &record.change, key)?.ok_or(error)
        }
        outcome => outcome,
    }
}

/// A digest (SHA-256) of a keyed request: of the change as the stream carries it
/// ([`Change`] as JSON), so a server with a stream and one without compare a retry
/// alike. Stored with the row the change made ([`tla_store::ChangeKey`]).
pub(crate) fn request_digest(change: &Change) -> Result<[u8; 32], ApiError> {
    use sha2::Digest as _;
    let json = serde_json::to_vec(change).map_err(ApiError::internal)?;
    Ok(sha2::Sha256::digest(&json).into())
}

/// The one rule for an `Idempotency-Key` of a revision or a budget change of campaign
/// `slot`: when `key` made such a change before (stored with it, so after a restart
/// too), its outcome as made when `change` is the same request (its revision, with
/// the summary answered then; its budget change), 409 `idempotency_key_reused` when it
/// is another; `None` when the key made none. Called under the lock that orders the
/// campaign's changes of that kind ([`crate::revise::revise_at`],
/// [`budget::apply`]), and for a retry whose first outcome is no longer kept.
pub(crate) fn stored_outcome(
    state: &AppState,
    slot: &CampaignSlot,
    change: &Change,
    key: &str,
) -> Result<Option<Applied>, ApiError> {
    let digest = request_digest(change)?;
    let (found, what) = match change {
        Change::Revise { .. } => match state.store().revision_by_key(&slot.id, key)? {
            Some((number, stored)) => (
                Some((stored, Applied::Revised(stored_revision(slot, number)?))),
                "revision",
            ),
            None => (None, "revision"),
        },
        Change::Budget { .. } => match state.store().budget_change_by_key(&slot.id, key)? {
            Some((made, stored)) => (
                Some((stored, Applied::Budget(BudgetChangeBody::new(&made.change)))),
                "budget change",
            ),
            None => (None, "budget change"),
        },
        _ => return Ok(None),
    };
    match found {
        None => Ok(None),
        Some((stored, applied)) if stored.request_digest == digest => Ok(Some(applied)),
        Some(_) => Err(key_reused(&slot.id, key, &format!("an earlier {what}"))),
    }
}

/// What an `Idempotency-Key` of a revision or a budget change asks for.
pub(crate) enum Keyed {
    /// The key made this change before: its outcome ([`stored_outcome`]).
    Made(Applied),
    /// Make the change, storing this key with it (`None`: no key sent).
    Make(Option<tla_store::ChangeKey>),
}

/// [`stored_outcome`] for a request with `key` (none: [`Keyed::Make`] without a key),
/// and otherwise the key and digest to store with the change `change()` makes: the
/// check [`crate::revise::revise_at`] and [`budget::apply`] both begin with.
pub(crate) fn keyed(
    state: &AppState,
    slot: &CampaignSlot,
    key: Option<&str>,
    change: impl FnOnce() -> Change,
) -> Result<Keyed, ApiError> {
    let Some(key) = key else {
        return Ok(Keyed::Make(None));
    };
    let change = change();
    if let Some(applied) = stored_outcome(state, slot, &change, key)? {
        return Ok(Keyed::Made(applied));
    }
    Ok(Keyed::Make(Some(tla_store::ChangeKey {
        key: key.to_owned(),
        request_digest: request_digest(&change)?,
    })))
}

/// Revision `number` of `slot` as [`crate::revise::revise_at`] answered it: the
/// revision and the summary of what it changed from the one before.
fn stored_revision(slot: &CampaignSlot, number: u32) -> Result<Revised, ApiError> {
    let missing = || {
        ApiError::internal(format!(
            "campaign {} has revision {number} stored but not loaded",
            slot.id
        ))
    };
    let revision = slot.revision(number).ok_or_else(missing)?;
    let previous = slot
        .revision(number.saturating_sub(1))
        .ok_or_else(missing)?;
    let from_previous = revision.from_previous.as_ref().ok_or_else(missing)?;
    let summary = tla_core::revision::RevisionSummary {
        revision: number,
        ..from_previous.summary(&previous.campaign, &revision.campaign)
    };
    Ok(Revised { summary, revision })
}

/// One change published by [`submit_all`] and what applying it did.
#[derive(Debug)]
pub struct Submitted {
    /// Its stream sequence (the first copy's, for a repeat the stream absorbed).
    pub seq: u64,
    /// The stream absorbed it as a repeat of the message at `seq`.
    pub duplicate: bool,
    /// The outcome decided when the record at `seq` was applied.
    pub outcome: Result<Applied, ApiError>,
}

/// Publishes `changes` of campaign `campaign_id` in order (each under its message id,
/// if it has one), waits until this server's learner has applied them all, and answers
/// each one's outcome. Call it only with a stream. Blocking.
pub fn submit_all(
    state: &AppState,
    campaign_id: &str,
    changes: Vec<Change>,
    key_id: &str,
    idempotency_key: Option<&str>,
) -> Result<Vec<Submitted>, ApiError> {
    let stream = state
        .stream()
        .ok_or_else(|| ApiError::internal("a change submitted without a stream"))?;
    let at_ms = state.clock().now_ms();
    let records = changes
        .into_iter()
        .map(|change| ChangeRecord {
            campaign_id: campaign_id.to_owned(),
            change,
            key_id: key_id.to_owned(),
            at_ms,
            idempotency_key: idempotency_key.map(str::to_owned),
        })
        .collect();
    let acks = stream.publish_changes(records)?;
    let Some(last) = acks.iter().map(|&(seq, _)| seq).max() else {
        return Ok(Vec::new());
    };
    state.wake_learner();
    let mut applied = state.change_applier().applied.subscribe();
    let reached = tokio::runtime::Handle::current().block_on(async {
        tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|&through| through >= last))
            .await
            .is_ok_and(|seen| seen.is_ok())
    });
    if !reached {
        return Err(ApiError::new(
            ErrorCode::StreamUnavailable,
            format!(
                "the change is on the stream (sequence {last}) but this server has not applied it within {APPLY_TIMEOUT:?}; it takes effect on every server when applied"
            ),
        ));
    }
    let kept = outcomes(state);
    Ok(acks
        .into_iter()
        .map(|(seq, duplicate)| Submitted {
            seq,
            duplicate,
            outcome: match kept.get(&seq) {
                Some(Ok(applied)) => Ok(applied.clone()),
                Some(Err(error)) => Err(error.repeated()),
                None => Err(not_kept(seq)),
            },
        })
        .collect())
}

/// The sequence of the next change record of the stream this server has not applied.
pub(crate) fn next_seq(state: &AppState) -> Option<u64> {
    let through = state.change_applier().through();
    let (seq, _) = state.stream()?.changes_after(through, 1).pop()?;
    Some(seq)
}

/// Applies the next change record of the stream this server has not applied, if its
/// place has come (the learner has applied every event before it); its sequence.
/// `None` when there is none, or when it failed for a reason that may pass (a store
/// error), so the next learner step retries it. Called by the learner step with the
/// learner's lock held.
pub(crate) fn apply_next(state: &AppState, rng: &mut rand_pcg::Pcg64Mcg) -> Option<u64> {
    let stream = state.stream()?;
    let applier = state.change_applier();
    let through = applier.through.load(Ordering::SeqCst);
    let (seq, record) = stream.changes_after(through, 1).pop()?;
    let applied = match stream.first_copy_of(seq) {
        // A retry stored after the window: the first copy's outcome, nothing applied.
        Some(first) => vec![(seq, repeat(state, first, &record))],
        None if matches!(record.change, Change::SpendReport { .. }) => {
            apply_spend_reports(state, spend_run(state, seq, record))
        }
        None => vec![(seq, apply(state, seq, &record, rng))],
    };
    for (seq, outcome) in &applied {
        if let Err(error) = outcome {
            if error.status().is_server_error() {
                tracing::error!(
                    seq,
                    ?error,
                    "applying a change from the stream failed; the next learner step retries"
                );
                return None;
            }
        }
    }
    let last = applied.last().map_or(seq, |(seq, _)| *seq);
    if let Err(error) = state.store().set_stream_changes_through(last) {
        tracing::warn!(last, %error, "recording the changes applied failed; a restart re-applies the last ones");
    }
    applier.through.store(last, Ordering::SeqCst);
    stream.set_changes_through(last);
    {
        let mut kept = outcomes(state);
        kept.extend(applied);
        while kept.len() > OUTCOMES_KEPT {
            kept.pop_first();
        }
    }
    applier.applied.send_replace(last);
    Some(last)
}

/// Spend report records applied in one store transaction at most (a batch of the
/// largest size sent to `POST /v1/campaigns/{id}/spend` is 10,000 records).
const SPEND_RUN: usize = 4_096;

/// The spend report record at `seq` and the spend report records of its campaign that
/// follow it with no other change and no event between (at most [`SPEND_RUN`]): what
/// one request's batch publishes. Applying them together changes nothing a later
/// record sees (a spend report teaches no model), so every server ends alike whatever
/// runs it formed; it saves a durable transaction per report.
fn spend_run(state: &AppState, seq: u64, first: ChangeRecord) -> Vec<(u64, ChangeRecord)> {
    let Some(stream) = state.stream() else {
        return vec![(seq, first)];
    };
    let mut run = Vec::new();
    let campaign = first.campaign_id.clone();
    run.push((seq, first));
    let next_event = stream.next_event_after(seq);
    for (next, record) in stream.changes_after(seq, SPEND_RUN - 1) {
        let same = record.campaign_id == campaign
            && matches!(record.change, Change::SpendReport { .. })
            && next_event.is_none_or(|event| next < event);
        if !same {
            break;
        }
        run.push((next, record));
    }
    run
}

/// Applies spend report records (of one campaign) in one store transaction through
/// [`crate::spend::store`]; each record's outcome.
fn apply_spend_reports(
    state: &AppState,
    run: Vec<(u64, ChangeRecord)>,
) -> Vec<(u64, Result<Applied, ApiError>)> {
    let Some(campaign_id) = run.first().map(|(_, record)| record.campaign_id.clone()) else {
        return Vec::new();
    };
    let slot = match state.campaign(&campaign_id) {
        Ok(slot) => slot,
        Err(error) => {
            return run
                .into_iter()
                .map(|(seq, _)| (seq, Err(error.repeated())))
                .collect();
        }
    };
    let reports: Vec<tla_store::NewSpendReport> = run
        .iter()
        .filter_map(|(_, record)| spend_report_of(&slot.id, record))
        .collect();
    match crate::spend::store(state, &slot, reports) {
        Ok(stored) => run
            .into_iter()
            .zip(stored)
            .map(|((seq, _), outcome)| (seq, Ok(Applied::Spend(outcome))))
            .collect(),
        Err(error) => {
            let error = ApiError::from(error);
            run.into_iter()
                .map(|(seq, _)| (seq, Err(error.repeated())))
                .collect()
        }
    }
}

/// The report a [`Change::SpendReport`] of campaign `campaign_id` carries (`None` for
/// another change).
fn spend_report_of(campaign_id: &str, record: &ChangeRecord) -> Option<tla_store::NewSpendReport> {
    let Change::SpendReport {
        report_id,
        segment,
        start_ms,
        end_ms,
        amount_bits,
        impressions,
    } = &record.change
    else {
        return None;
    };
    Some(tla_store::NewSpendReport {
        campaign_id: campaign_id.to_owned(),
        report_id: report_id.clone(),
        segment: *segment,
        start_ms: *start_ms,
        end_ms: *end_ms,
        amount: f64::from_bits(*amount_bits),
        impressions: *impressions,
        key_id: record.key_id.clone(),
        at_ms: record.at_ms,
    })
}

/// The outcome of `record`, a later copy of the keyed change first stored at `first`:
/// the first copy's outcome when it asks the same change (`conflict` when that outcome
/// is no longer kept), 409 `idempotency_key_reused` when it asks another. Every server
/// decides it alike; nothing is applied.
fn repeat(state: &AppState, first: u64, record: &ChangeRecord) -> Result<Applied, ApiError> {
    let same = state
        .stream()
        .and_then(|stream| stream.change_at(first))
        .is_some_and(|original| original.change == record.change);
    let key = record.idempotency_key.as_deref().unwrap_or_default();
    if !same {
        return Err(key_reused(
            &record.campaign_id,
            key,
            &format!("stream sequence {first}"),
        ));
    }
    match outcomes(state).get(&first) {
        Some(Ok(applied)) => return Ok(applied.clone()),
        Some(Err(error)) => return Err(error.repeated()),
        None => {}
    }
    // The change the key made, as every server stored it (`None`: the first copy was
    // refused, so nothing was stored).
    let slot = state.campaign(&record.campaign_id)?;
    stored_outcome(state, &slot, &record.change, key)?.ok_or_else(|| not_kept(first))
}

/// 409 `idempotency_key_reused`: Idempotency-Key `key` was sent with another change of
/// campaign `campaign_id`, first made at `first` (where, in words).
fn key_reused(campaign_id: &str, key: &str, first: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        format!(
            "Idempotency-Key {} was sent with another change of campaign {campaign_id} ({first}); a retry sends the same change with the same key, a new change a new key",
            crate::error::quoted(key),
        ),
    )
}

/// 409 `conflict`: the outcome of the change at `seq` is no longer kept here (a keyed
/// revision or budget change that was made answers its stored outcome instead:
/// [`stored_outcome`]).
fn not_kept(seq: u64) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "the change at stream sequence {seq} was applied, but its outcome is no longer kept here; read the campaign to see it"
        ),
    )
}

/// Applies one change record at stream sequence `seq` through the functions a single
/// server uses (`rng`: the learner's, for a rebuild).
fn apply(
    state: &AppState,
    seq: u64,
    record: &ChangeRecord,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> Result<Applied, ApiError> {
    let (key_id, at_ms) = (record.key_id.as_str(), record.at_ms);
    match &record.change {
        Change::KeyCreated {
            id,
            hash,
            scopes,
            label,
            created_at_ms,
        } => {
            let hash = decode_hash(hash).ok_or_else(|| {
                ApiError::bad_request(format!("key {id}: the hash is not 64 hex digits"))
            })?;
            if !state.store().keys()?.iter().any(|k| &k.id == id) {
                // A revocation is final: one the stream holds already stands.
                let revoked = state
                    .stream()
                    .is_some_and(|stream| stream.shared_keys().get(id) == Some(&true));
                state.store().insert_key(&KeyRow {
                    id: id.clone(),
                    hash,
                    scopes: scopes.clone(),
                    created_at_ms: *created_at_ms,
                    revoked,
                    label: label.clone(),
                })?;
            }
            state.reload_keys()?;
            Ok(Applied::Key)
        }
        Change::KeyRevoked { id } => {
            state.store().revoke_key(id)?;
            state.reload_keys()?;
            Ok(Applied::Key)
        }
        Change::Revise { spec_json, reason } => {
            let slot = state.campaign(&record.campaign_id)?;
            if slot
                .revisions()
                .iter()
                .any(|r| r.number > 1 && r.from_seq == seq)
            {
                return Ok(Applied::Already);
            }
            let next = tla_core::spec::CampaignSpec::from_json_str(spec_json)
                .and_then(|spec| spec.validate())
                .map_err(|e| ApiError::new(ErrorCode::RevisionRefused, e.to_string()))?;
            crate::revise::revise_at(
                state,
                &slot,
                next,
                reason.clone(),
                key_id,
                seq,
                at_ms,
                record.idempotency_key.as_deref(),
            )
            .map(Applied::Revised)
        }
        Change::Pause | Change::Resume => state
            .set_paused_at(
                &record.campaign_id,
                matches!(record.change, Change::Pause),
                key_id,
                at_ms,
            )
            .map(Applied::Campaign),
        Change::Archive => state
            .archive_at(&record.campaign_id, key_id, at_ms)
            .map(Applied::Campaign),
        Change::Budget { .. } => {
            let slot = state.campaign(&record.campaign_id)?;
            let request = budget_request_of(&record.change)
                .ok_or_else(|| ApiError::internal("a budget change without its fields"))?;
            let repeated = state
                .store()
                .budget_changes(&slot.id)?
                .iter()
                .any(|stored| {
                    stored.change.at_ms == at_ms
                        && stored.change.key_id == key_id
                        && stored.change.reason == request.reason
                });
            if repeated {
                return Ok(Applied::Already);
            }
            // Against the costs before the change's place in the stream.
            let key = record.idempotency_key.as_deref();
            budget::apply(state, &slot, &request, key_id, at_ms, seq, key).map(Applied::Budget)
        }
        Change::SpendReport { .. } => {
            // Applied in runs by `apply_next`; one alone the same way.
            apply_spend_reports(state, vec![(seq, record.clone())])
                .pop()
                .map_or_else(
                    || {
                        Err(ApiError::internal(
                            "a spend report applied without its outcome",
                        ))
                    },
                    |(_, outcome)| outcome,
                )
        }
        Change::Plan { .. } => {
            let slot = state.campaign(&record.campaign_id)?;
            let plan = record
                .change
                .to_plan(&slot.id, key_id, at_ms)
                .ok_or_else(|| ApiError::internal("a plan without its fields"))?;
            // Applied again after a crash: the plan stored then.
            let stored = state.store().plans(&slot.id)?.into_iter().find(|stored| {
                stored.at_ms == at_ms
                    && stored.key_id == key_id
                    && stored.plan_json == plan.plan_json
            });
            match stored {
                Some(stored) => Ok(Applied::Plan(stored)),
                None => Ok(Applied::Plan(state.store().save_plan(&plan)?)),
            }
        }
        Change::ResultImport { rows } => {
            let slot = state.campaign(&record.campaign_id)?;
            let rows = rows
                .iter()
                .map(crate::stream_log::ResultRow::to_new)
                .collect();
            // Learned right after this record, on every server alike.
            crate::platform::store_import(state, &slot, rows, key_id, at_ms, seq, rng)
                .map(Applied::Results)
        }
    }
}

/// The [`Change::Budget`] of a request.
pub fn budget_change_of(request: &BudgetChangeRequest) -> Change {
    Change::Budget {
        budget_bits: request.budget.map(f64::to_bits),
        sets_daily_cap: request.daily_cap.is_some(),
        daily_cap_bits: request.daily_cap.flatten().map(f64::to_bits),
        reason: request.reason.clone(),
    }
}

/// The request a [`Change::Budget`] carries (`None` for another change).
fn budget_request_of(change: &Change) -> Option<BudgetChangeRequest> {
    let Change::Budget {
        budget_bits,
        sets_daily_cap,
        daily_cap_bits,
        reason,
    } = change
    else {
        return None;
    };
    Some(BudgetChangeRequest {
        budget: budget_bits.map(f64::from_bits),
        daily_cap: sets_daily_cap.then(|| daily_cap_bits.map(f64::from_bits)),
        reason: reason.clone(),
    })
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

/// Publishes the keys of this data directory the stream lacks, and the revocations
/// it has not seen (`tla keys create|revoke --data DIR`, `TLA_ADMIN_KEY`, the first
/// admin key), so every server of the stream authenticates the same keys. The learner
/// calls it at each key reload, without its lock. Blocking.
pub(crate) fn share_keys(state: &AppState) {
    let Some(stream) = state.stream() else {
        return;
    };
    let shared = stream.shared_keys();
    let keys = match state.store().keys() {
        Ok(keys) => keys,
        Err(error) => {
            tracing::error!(%error, "reading the keys to share failed");
            return;
        }
    };
    for key in keys {
        let mut changes = Vec::new();
        if !shared.contains_key(&key.id) {
            changes.push(Change::KeyCreated {
                id: key.id.clone(),
                hash: crate::stream_log::hex(&key.hash),
                scopes: key.scopes.clone(),
                label: key.label.clone(),
                created_at_ms: key.created_at_ms,
            });
        }
        if key.revoked && shared.get(&key.id) != Some(&true) {
            changes.push(Change::KeyRevoked { id: key.id.clone() });
        }
        for change in changes {
            let published = stream.publish_change(ChangeRecord {
                campaign_id: String::new(),
                change,
                key_id: String::new(),
                at_ms: state.clock().now_ms(),
                idempotency_key: None,
            });
            match published {
                Ok(seq) => tracing::info!(key = %key.id, seq, "key shared on the stream"),
                Err(error) => {
                    tracing::warn!(key = %key.id, %error, "sharing a key on the stream failed; retried at the next reload");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_change_round_trips_through_its_record() {
        for daily_cap in [None, Some(None), Some(Some(12.5))] {
            let request = BudgetChangeRequest {
                budget: Some(0.1 + 0.2),
                daily_cap,
                reason: "why".into(),
            };
            let change = budget_change_of(&request);
            let json = serde_json::to_string(&change).unwrap();
            let back: Change = serde_json::from_str(&json).unwrap();
            let again = budget_request_of(&back).unwrap();
            assert_eq!(again.budget, request.budget);
            assert_eq!(again.daily_cap, request.daily_cap);
            assert_eq!(again.reason, request.reason);
        }
        assert!(budget_request_of(&Change::Pause).is_none());
    }

    #[test]
    fn a_key_hash_decodes_from_its_hex_only() {
        let hash = [0xab; 32];
        assert_eq!(decode_hash(&crate::stream_log::hex(&hash)), Some(hash));
        assert_eq!(decode_hash("ab"), None);
        assert_eq!(decode_hash(&"zz".repeat(32)), None);
    }
}
