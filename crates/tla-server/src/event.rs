//! The rules of an event, in one place: parsing one event of a batch, checking it,
//! attributing it to the signed decision it names, and mapping a stored event onto
//! what its campaign's engine learns.
//!
//! `POST /v1/events` splits its body with [`parse_batch`] and calls [`check_raw_event`]
//! on each item (kept as raw JSON text, so it is parsed once); the fuzz target and the
//! property tests call the same two functions. A refused event is an
//! [`EventRejection`]: one variant per reason, one stable code each
//! ([`EventRejection::code`]), and the message the API has always answered. The learner
//! applies a stored event with [`learn`].

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::wire::RejectedEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use tla_core::engine::{Engine, Feedback};
use tla_core::spec::AMOUNT_LIMIT;
use tla_store::{EventFix, EventKind, NewEvent, StoredEvent};
use utoipa::ToSchema;

/// The indefinite article of a word: `an impression`, `a click`.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// An amount as a refusal quotes it: as sent up to 1e15, in scientific notation beyond
/// (never hundreds of digits).
fn amount_text(amount: f64) -> String {
    if amount.abs() < 1e15 {
        amount.to_string()
    } else {
        format!("{amount:e}")
    }
}

/// Longest `event_id` accepted, characters.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// How far ahead of the server's clock an event's `at` may be, ms.
pub const MAX_AHEAD_MS: i64 = 300_000;

/// How far before its decision an event's `at` may be, ms (clocks differ).
pub const MAX_BEFORE_DECISION_MS: i64 = 60_000;

/// What `POST /v1/events` takes: `{"events": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch<'a> {
    /// Each event kept as raw text, so it is parsed once, into its typed form, and a
    /// bad one is reported by index without refusing the batch. At most the configured
    /// number of events.
    #[serde(borrow)]
    #[schema(value_type = Vec<EventIn>)]
    events: Vec<&'a RawValue>,
}

/// Splits a request body `{"events": [...]}` into its events' raw JSON texts, or
/// refuses the whole request (`bad_request`): a malformed body, an unknown top-level
/// field, more than `max_events` events.
pub fn parse_batch(body: &[u8], max_events: usize) -> Result<Vec<&RawValue>, ApiError> {
    let batch: EventBatch<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if batch.events.len() > max_events {
        return Err(ApiError::bad_request(format!(
            "a batch holds {} events; accepted: at most {max_events}",
            batch.events.len()
        )));
    }
    Ok(batch.events)
}

/// One event as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub struct EventIn {
    /// Client-supplied, one event per id: an exact repeat (same type, decision_id and
    /// amount) is stored once and counted as a duplicate; the id with another content is
    /// refused (`event_id_conflict`).
    #[schema(min_length = 1)]
    event_id: String,
    /// The `decision_id` of the decision the event follows.
    decision_id: String,
    /// `impression`, `click`, `conversion` or `cost`.
    #[serde(rename = "type")]
    #[schema(schema_with = crate::openapi::event_type_schema)]
    kind: String,
    /// Donation amount, conversions only; at most the campaign's `max_value`. A
    /// conversion without it has an unknown amount (counted as a conversion, not as $0).
    #[schema(minimum = 0)]
    value: Option<f64>,
    /// Spend, cost events only (required there); at most 1e12.
    #[schema(minimum = 0)]
    amount: Option<f64>,
    /// Milliseconds since the Unix epoch; default now. Clicks and conversions must fall
    /// within the campaign's attribution window after the decision.
    at: Option<i64>,
}

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventRejection {
    /// Not a JSON object of the accepted fields (`invalid_event`).
    #[error("invalid event: {detail}")]
    Malformed {
        /// The parser's message.
        detail: String,
    },
    /// An empty or too long `event_id` (`invalid_event_id`).
    #[error("event_id must be 1 to {MAX_EVENT_ID_LEN} characters")]
    EventId,
    /// A `decision_id` this server did not sign (`invalid_decision_id`).
    #[error("decision_id {reason}")]
    DecisionId {
        /// Why the id was refused.
        reason: &'static str,
    },
    /// A signed decision id naming a campaign that does not exist (`unknown_campaign`).
    #[error("decision_id names campaign {campaign_id:?}, which does not exist")]
    UnknownCampaign {
        /// The campaign the id names.
        campaign_id: String,
    },
    /// An unknown `type` (`invalid_event_type`).
    #[error("type {kind:?} is not accepted; accepted: impression, click, conversion, cost")]
    EventType {
        /// The type sent.
        kind: String,
    },
    /// A `value` or `amount` that is not a finite number >= 0, or a cost `amount` above
    /// [`AMOUNT_LIMIT`] (`invalid_amount`).
    #[error(
        "{field} is {}; accepted: a finite number from 0 to {}",
        amount_text(*amount),
        amount_text(*max)
    )]
    Amount {
        /// `value` or `amount`.
        field: &'static str,
        /// The number sent.
        amount: f64,
        /// The largest accepted: the campaign's `max_value` for a conversion's `value`,
        /// [`AMOUNT_LIMIT`] for a cost's `amount`.
        max: f64,
    },
    /// An impression or click with a `value` or `amount` (`unexpected_amount`).
    #[error("{} {} event carries no value or amount", article(kind.as_str()), kind.as_str())]
    UnexpectedAmount {
        /// The event's type.
        kind: EventKind,
    },
    /// A conversion with `amount`, or a cost with `value` (`misplaced_amount`).
    #[error("{}", misplaced_message(*kind))]
    MisplacedAmount {
        /// The event's type: conversion or cost.
        kind: EventKind,
    },
    /// A conversion `value` above its campaign's `max_value` (`value_above_max`).
    #[error(
        "value {} is above this campaign's max_value of {max_value}; accepted: a conversion value from 0 to {max_value} \
         (a larger gift needs a larger max_value in the campaign's spec)",
        amount_text(*value)
    )]
    ValueAboveMax {
        /// The value sent.
        value: f64,
        /// The campaign's `max_value`.
        max_value: f64,
    },
    /// A cost without `amount` (`missing_amount`).
    #[error("a cost event needs `amount` (the spend)")]
    MissingAmount,
    /// An `at` too far ahead of the server's clock (`future_event`).
    #[error(
        "at is {:.1} minutes in the future; accepted: up to {} minutes ahead of the server's clock",
        *ahead_ms as f64 / 60_000.0,
        MAX_AHEAD_MS / 60_000
    )]
    Future {
        /// How far ahead, ms.
        ahead_ms: i64,
    },
    /// An `at` before its decision (`before_decision`).
    #[error("at is {before_ms} ms before its decision; events come after the decision they follow")]
    BeforeDecision {
        /// How far before, ms.
        before_ms: i64,
    },
    /// An `event_id` the campaign already holds with another content: another type,
    /// decision or amount (`event_id_conflict`). Found when appending.
    #[error(
        "event_id {} is already stored with another type, decision_id or amount (as event {seq}); \
         an event id names one event: send this one under a new id, or correct the stored one \
         (POST /v1/campaigns/{{id}}/corrections)",
        crate::error::quoted(event_id)
    )]
    IdConflict {
        /// The event id sent.
        event_id: String,
        /// The sequence number of the stored event with this id.
        seq: u64,
    },
    /// A click or conversion after the attribution window (`outside_attribution_window`).
    #[error(
        "this {} came {:.1} hours after its decision; the campaign's attribution window is {} hours",
        kind.as_str(),
        *after_ms as f64 / 3_600_000.0,
        window_ms / 3_600_000
    )]
    OutsideAttributionWindow {
        /// The event's type.
        kind: EventKind,
        /// How long after its decision, ms.
        after_ms: i64,
        /// The campaign's window, ms.
        window_ms: i64,
    },
}

fn misplaced_message(kind: EventKind) -> &'static str {
    if kind == EventKind::Cost {
        "a cost event carries its spend as `amount`, not `value`"
    } else {
        "a conversion carries its donation as `value`, not `amount`"
    }
}

impl EventRejection {
    /// The rejection's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EventRejection::Malformed { .. } => ErrorCode::InvalidEvent,
            EventRejection::EventId => ErrorCode::InvalidEventId,
            EventRejection::DecisionId { .. } => ErrorCode::InvalidDecisionId,
            EventRejection::UnknownCampaign { .. } => ErrorCode::UnknownCampaign,
            EventRejection::EventType { .. } => ErrorCode::InvalidEventType,
            EventRejection::Amount { .. } => ErrorCode::InvalidAmount,
            EventRejection::UnexpectedAmount { .. } => ErrorCode::UnexpectedAmount,
            EventRejection::MisplacedAmount { .. } => ErrorCode::MisplacedAmount,
            EventRejection::MissingAmount => ErrorCode::MissingAmount,
            EventRejection::ValueAboveMax { .. } => ErrorCode::ValueAboveMax,
            EventRejection::Future { .. } => ErrorCode::FutureEvent,
            EventRejection::BeforeDecision { .. } => ErrorCode::BeforeDecision,
            EventRejection::OutsideAttributionWindow { .. } => ErrorCode::OutsideAttributionWindow,
            EventRejection::IdConflict { .. } => ErrorCode::EventIdConflict,
        }
    }

    /// The item listed in a batch answer: `{"index", "code", "error"}`.
    pub fn to_batch_item(&self, index: usize) -> RejectedEvent {
        RejectedEvent {
            index,
            code: self.code().as_str(),
            error: self.to_string(),
        }
    }
}

impl From<EventRejection> for ApiError {
    /// A rejection answered alone, with its own code.
    fn from(rejection: EventRejection) -> Self {
        ApiError::new(rejection.code(), rejection.to_string())
    }
}

/// Parses one event's raw JSON text and checks it against the signed decision it
/// names, at server time `now_ms`; the event to append, or why it is refused.
pub fn check_raw_event(
    state: &AppState,
    raw: &str,
    now_ms: i64,
) -> Result<NewEvent, EventRejection> {
    let event: EventIn = serde_json::from_str(raw).map_err(|e| EventRejection::Malformed {
        detail: e.to_string(),
    })?;
    check_parsed_event(state, event, now_ms)
}

fn check_parsed_event(
    state: &AppState,
    event: EventIn,
    now_ms: i64,
) -> Result<NewEvent, EventRejection> {
    // Characters, as the message and the OpenAPI document say (not bytes).
    if event.event_id.is_empty() || event.event_id.chars().count() > MAX_EVENT_ID_LEN {
        return Err(EventRejection::EventId);
    }
    let claims = state
        .signer()
        .verify(&event.decision_id)
        .map_err(|reason| EventRejection::DecisionId { reason })?;
    if claims.version == crate::decision_id::SKIPPED_VERSION {
        return Err(EventRejection::DecisionId {
            reason: "names a skip: the campaign declined that opportunity, nothing was shown, so no event follows it",
        });
    }
    let slot =
        state
            .campaign(&claims.campaign_id)
            .map_err(|_| EventRejection::UnknownCampaign {
                campaign_id: claims.campaign_id.clone(),
            })?;
    let Some(kind) = EventKind::from_name(&event.kind) else {
        return Err(EventRejection::EventType { kind: event.kind });
    };
    // `None`: a conversion of unknown amount, stored as value 0 with the amount unknown.
    let current = slot.current();
    let max_value = current.campaign.max_value();
    let value = match kind {
        EventKind::Impression | EventKind::Click => {
            if event.value.is_some() || event.amount.is_some() {
                return Err(EventRejection::UnexpectedAmount { kind });
            }
            Some(0.0)
        }
        EventKind::Conversion => {
            if event.amount.is_some() {
                return Err(EventRejection::MisplacedAmount { kind });
            }
            match event.value {
                None => None,
                Some(value) => Some(check_amount(kind, value, max_value)?),
            }
        }
        EventKind::Cost => {
            if event.value.is_some() {
                return Err(EventRejection::MisplacedAmount { kind });
            }
            let Some(amount) = event.amount else {
                return Err(EventRejection::MissingAmount);
            };
            Some(check_amount(kind, amount, max_value)?)
        }
    };
    let at_ms = event.at.unwrap_or(now_ms);
    if at_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Err(EventRejection::Future {
            ahead_ms: at_ms.saturating_sub(now_ms),
        });
    }
    if at_ms < claims.at_ms.saturating_sub(MAX_BEFORE_DECISION_MS) {
        return Err(EventRejection::BeforeDecision {
            before_ms: claims.at_ms.saturating_sub(at_ms),
        });
    }
    let after_ms = at_ms.saturating_sub(claims.at_ms);
    if kind != EventKind::Impression
        && kind != EventKind::Cost
        && after_ms > current.attribution_window_ms
    {
        return Err(EventRejection::OutsideAttributionWindow {
            kind,
            after_ms,
            window_ms: current.attribution_window_ms,
        });
    }
    Ok(NewEvent {
        campaign_id: claims.campaign_id,
        event_id: event.event_id,
        decision_id: event.decision_id,
        kind,
        value: value.unwrap_or(0.0),
        amount_known: value.is_some(),
        segment: claims.segment,
        version: claims.version,
        decided_at_ms: claims.at_ms,
        at_ms,
    })
}

/// What a stored event teaches its campaign's engine.
pub fn feedback(event: &StoredEvent) -> Feedback {
    match event.kind {
        EventKind::Impression => Feedback::Impression,
        EventKind::Click => Feedback::Click,
        EventKind::Conversion => Feedback::Conversion {
            amount: event.amount_known.then_some(event.value),
        },
        EventKind::Cost => Feedback::Cost {
            amount: event.value,
        },
    }
}

/// A stored event that names a segment or version outside its campaign (a log
/// written by another build or edited by hand): skipped, never learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {seq} names segment {segment}, version {version}, outside its campaign")]
pub struct OutsideCampaign {
    /// The event's sequence number.
    pub seq: u64,
    /// Its segment.
    pub segment: u32,
    /// Its version.
    pub version: u64,
}

/// The amount rule, one place for events and corrections: a conversion's `value` is a
/// finite number from 0 to the campaign's `max_value`; a cost's `amount` a finite
/// number from 0 to [`AMOUNT_LIMIT`]; an impression or a click carries none.
pub fn check_amount(kind: EventKind, amount: f64, max_value: f64) -> Result<f64, EventRejection> {
    let (field, max) = match kind {
        EventKind::Impression | EventKind::Click => {
            return Err(EventRejection::UnexpectedAmount { kind });
        }
        EventKind::Conversion => ("value", max_value),
        EventKind::Cost => ("amount", AMOUNT_LIMIT),
    };
    if !(amount.is_finite() && amount >= 0.0) || (kind == EventKind::Cost && amount > AMOUNT_LIMIT)
    {
        return Err(EventRejection::Amount { field, amount, max });
    }
    if kind == EventKind::Conversion && amount > max_value {
        return Err(EventRejection::ValueAboveMax {
            value: amount,
            max_value,
        });
    }
    Ok(amount)
}

/// Applies one stored event to its campaign's engine as its correction says: not at
/// all when retracted (`Ok`), with the new value (now a known amount) when corrected, as
/// stored otherwise.
pub fn learn_fixed(
    engine: &mut Engine,
    event: &StoredEvent,
    fix: Option<EventFix>,
) -> Result<(), OutsideCampaign> {
    match fix {
        None => learn(engine, event),
        Some(EventFix::Retracted) => Ok(()),
        Some(EventFix::Value(value)) => learn(
            engine,
            &StoredEvent {
                value,
                amount_known: true,
                ..event.clone()
            },
        ),
    }
}

/// Applies one stored event to its campaign's engine, or says why it cannot.
pub fn learn(engine: &mut Engine, event: &StoredEvent) -> Result<(), OutsideCampaign> {
    let segment = event.segment as usize;
    if segment >= engine.segment_counts().len() || !engine.space().is_allowed(event.version) {
        return Err(OutsideCampaign {
            seq: event.seq,
            segment: event.segment,
            version: event.version,
        });
    }
    // The event's time drives forgetting; a time before the epoch counts as 0.
    let at_millis = u64::try_from(event.at_ms).unwrap_or(0);
    engine.learn_at(segment, event.version, feedback(event), at_millis);
    Ok(())
}
