//! Changing a running campaign's budget and daily cap: `PATCH /v1/campaigns/{id}/budget`.
//!
//! The spec's `[flight]` gives the first budget and daily cap; each change is checked by
//! the spec's own rules ([`tla_core::spec::check_budget`],
//! [`tla_core::spec::check_daily_cap`]), refused below what the campaign has already
//! spent (cost events as corrected, spend reports and platform results:
//! [`crate::report::stored_spend`]),
//! recorded durably with who asked (the key's id), when, why, the values before and
//! after and the spend then ([`tla_store::Store::append_budget_change`]), and put in
//! force ([`crate::campaign::CampaignSlot::flight`]). The spec as stored, the stored
//! spend and the events are never rewritten; a restart (and `tla report --data`) puts
//! the latest change in force again ([`in_force`]).

use crate::campaign::CampaignSlot;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::wire::{BudgetChangeBody, BudgetChangeRequest};
use std::sync::PoisonError;
use tla_core::spec::{FlightPlan, check_budget, check_daily_cap};
use tla_store::{EventLog, NewBudgetChange, Store, StoreError};

/// Longest `reason` accepted, characters (as for a correction).
pub const MAX_REASON_LEN: usize = crate::correction::MAX_REASON_LEN;

/// The flight in force for a campaign whose spec gives `spec_flight`: the spec's, with
/// the budget and daily cap of its latest stored change. Read at the server's start and
/// by `tla report --data`.
pub fn in_force(
    store: &Store,
    campaign_id: &str,
    spec_flight: Option<FlightPlan>,
) -> Result<Option<FlightPlan>, StoreError> {
    let Some(flight) = spec_flight else {
        return Ok(None);
    };
    let latest = store.budget_changes(campaign_id)?.pop();
    Ok(Some(match latest {
        Some(stored) => flight.with_budget(stored.change.new_budget, stored.change.new_daily_cap),
        None => flight,
    }))
}

/// Checks, records and applies a budget change asked for by key `key_id` at `now_ms`;
/// answers the change as recorded. On a shared stream the change is published and
/// decided when every server applies it, in stream order ([`crate::change`]); else it
/// is applied here ([`apply`]). Blocking.
///
/// An `idempotency_key` (the request's `Idempotency-Key`) is stored with the change it
/// makes: a retry with it answers that change and makes none, the same key with another
/// request is refused (409 `idempotency_key_reused`; [`crate::change::stored_outcome`]).
/// With a stream it also names the change on the stream (`budget/<campaign>/<key>`),
/// and every server stores it.
pub fn change(
    state: &AppState,
    slot: &CampaignSlot,
    request: &BudgetChangeRequest,
    key_id: &str,
    now_ms: i64,
    idempotency_key: Option<&str>,
) -> Result<BudgetChangeBody, ApiError> {
    check_request(request)?;
    if state.stream().is_some() {
        let change = crate::change::budget_change_of(request);
        return match crate::change::submit(state, &slot.id, change, key_id, idempotency_key)? {
            crate::change::Applied::Budget(body) => Ok(body),
            other => Err(ApiError::internal(format!(
                "a budget change applied as {other:?}"
            ))),
        };
    }
    apply(
        state,
        slot,
        request,
        key_id,
        now_ms,
        u64::MAX,
        idempotency_key,
    )
}

/// The checks of a request that need no campaign state: a reason, something to change.
fn check_request(request: &BudgetChangeRequest) -> Result<(), ApiError> {
    let reason_len = request.reason.trim().chars().count();
    if reason_len == 0 || request.reason.chars().count() > MAX_REASON_LEN {
        return Err(ApiError::bad_request(format!(
            "reason must be 1 to {MAX_REASON_LEN} characters (not only spaces): say why the budget changes"
        )));
    }
    if request.budget.is_none() && request.daily_cap.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give `budget`, `daily_cap` (a number, or null for no daily cap), or both",
        ));
    }
    Ok(())
}

/// Checks, records and applies a budget change at `now_ms`: the one place a change is
/// applied, here or from the stream. The spend it must not go below counts the cost
/// events and their corrections up to sequence `spent_through` (`u64::MAX`: all; from
/// the stream: the change's own sequence). Changes of one campaign are serialized (the flight's lock
/// is held from the check to the swap). With an `idempotency_key` that made a change of
/// the campaign before, answers that change and changes nothing (one with another
/// request: 409 `idempotency_key_reused`); else the key is stored with the change.
/// Blocking.
pub(crate) fn apply(
    state: &AppState,
    slot: &CampaignSlot,
    request: &BudgetChangeRequest,
    key_id: &str,
    now_ms: i64,
    spent_through: u64,
    idempotency_key: Option<&str>,
) -> Result<BudgetChangeBody, ApiError> {
    check_request(request)?;
    let mut flight = slot
        .flight_lock()
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let key = match crate::change::keyed(state, slot, idempotency_key, || {
        crate::change::budget_change_of(request)
    })? {
        crate::change::Keyed::Made(crate::change::Applied::Budget(body)) => return Ok(body),
        crate::change::Keyed::Made(other) => {
            return Err(ApiError::internal(format!(
                "a stored budget change answered as {other:?}"
            )));
        }
        crate::change::Keyed::Make(key) => key,
    };
    crate::state::refuse_archived(slot, "given a new budget")?;
    let Some(current) = *flight else {
        return Err(ApiError::new(
            ErrorCode::NoFlight,
            format!(
                "campaign {} has no [flight] in its spec, so it has no budget to change; \
                 a budget is set by the spec's [flight] table (budget, start, end) when the campaign is created",
                slot.id
            ),
        ));
    };
    let invalid = |error: tla_core::spec::SpecError| {
        ApiError::new(ErrorCode::InvalidBudget, error.to_string())
    };
    let new_budget = match request.budget {
        Some(budget) => check_budget("budget", budget).map_err(invalid)?,
        None => current.budget,
    };
    let new_daily_cap = match request.daily_cap {
        Some(Some(cap)) => Some(check_daily_cap("daily_cap", cap, new_budget).map_err(invalid)?),
        Some(None) => None,
        // The cap in force stays, and must still fit under the new budget.
        None => current
            .daily_cap
            .map(|cap| check_daily_cap("daily_cap (in force)", cap, new_budget))
            .transpose()
            .map_err(invalid)?,
    };
    // From the stream: the corrections before the change's place, as for the costs.
    let corrections = match state.stream() {
        Some(stream) if spent_through < u64::MAX => {
            stream.corrections_through(&slot.id, spent_through)
        }
        _ => state.store().event_log().corrections(&slot.id)?,
    };
    let spent =
        crate::report::stored_spend_through(slot, state.store(), spent_through, &corrections)?;
    if new_budget < spent.total() {
        return Err(ApiError::new(
            ErrorCode::BudgetBelowSpent,
            format!(
                "budget {new_budget} is below what campaign {} has already spent: {} ({} in cost events, {} in spend reports, {} in platform results); \
                 accepted: a budget of at least {} (spend is never rewritten)",
                slot.id,
                spent.total(),
                spent.cost_events,
                spent.reports,
                spent.platform_results,
                spent.total()
            ),
        ));
    }
    let change = NewBudgetChange {
        campaign_id: slot.id.clone(),
        old_budget: current.budget,
        new_budget,
        old_daily_cap: current.daily_cap,
        new_daily_cap,
        spent: spent.total(),
        reason: request.reason.clone(),
        key_id: key_id.to_owned(),
        at_ms: now_ms,
    };
    state.store().append_budget_change(&change, key.as_ref())?;
    *flight = Some(current.with_budget(new_budget, new_daily_cap));
    crate::metrics::Metrics::add(&state.metrics().budget_changes, 1);
    Ok(BudgetChangeBody::new(&change))
}
