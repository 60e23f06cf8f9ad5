//! The rules of a spend report, in one place: spend not tied to a decision, reported
//! per segment and period by channels that bill that way (a daily invoice per audience,
//! say), sent to `POST /v1/campaigns/{id}/spend`.
//!
//! The batch is handled like `POST /v1/events` ([`crate::event`]): [`parse_batch`]
//! splits the body into raw items, [`check_raw_report`] parses and checks each one, a
//! refused item is a [`SpendRejection`] listed by index with its own code, and the good
//! ones are stored in one durable transaction ([`tla_store::Store::append_spend_reports`]).
//! A `report_id` names one report of its campaign: an exact repeat is a duplicate,
//! the same id with another content is refused (`report_id_conflict`). Stored spend is
//! never rewritten. What a stored report teaches the campaign's learner goes through
//! [`crate::learner::learn_spend_report`]; [`store`] is the one path from checked
//! reports to the store and the learner.
//!
//! On a shared stream each good report is published as a change record (kind
//! `spend_report`, message id `spend/<campaign>/<report id>`) and every server's
//! learner stores it through [`store`] at its place in the stream, so the first copy
//! of an id wins on every server alike (docs/scale-out.md, *State changes*).

use crate::campaign::CampaignSlot;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::wire::RejectedSpendReport;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tla_core::spec::{AMOUNT_LIMIT, MAX_FLIGHT_DAYS};
use tla_core::timestamp::{DAY_MS, parse_rfc3339};
use tla_store::{NewSpendReport, SpendReportOutcome, StoreError, StoredSpendReport};
use utoipa::ToSchema;

/// Longest `report_id` accepted, characters (as for an `event_id`).
pub const MAX_REPORT_ID_LEN: usize = crate::event::MAX_EVENT_ID_LEN;

/// Longest period one report may cover, days (as long as the longest flight).
pub const MAX_PERIOD_DAYS: i64 = MAX_FLIGHT_DAYS;

/// Parses a period of RFC 3339 bounds with an offset: the end after the start, at most
/// [`MAX_PERIOD_DAYS`] later; in ms since the Unix epoch. A refusal names the field
/// (`start` or `end`) and says what is accepted. The one rule for the periods of spend
/// reports, plans and platform results.
pub fn parse_period(start: &str, end: &str) -> Result<(i64, i64), (&'static str, String)> {
    let bound = |field: &'static str, text: &str| {
        parse_rfc3339(text).map_err(|error| (field, error.to_string()))
    };
    let start_ms = bound("start", start)?;
    let end_ms = bound("end", end)?;
    if end_ms <= start_ms {
        return Err((
            "end",
            format!(
                "{} is not after start {}; accepted: a period that ends after it starts",
                crate::error::quoted(end),
                crate::error::quoted(start)
            ),
        ));
    }
    if end_ms - start_ms > MAX_PERIOD_DAYS * DAY_MS {
        return Err((
            "end",
            format!(
                "the period is {:.1} days long; accepted: at most {MAX_PERIOD_DAYS} days (split a longer one)",
                (end_ms - start_ms) as f64 / DAY_MS as f64
            ),
        ));
    }
    Ok((start_ms, end_ms))
}

/// What `POST /v1/campaigns/{id}/spend` takes: `{"reports": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendBatch<'a> {
    /// Each report kept as raw text, parsed once into its typed form; a bad one is
    /// listed by index without refusing the batch. At most the configured number of
    /// events per batch.
    #[serde(borrow)]
    #[schema(value_type = Vec<SpendReportIn>)]
    reports: Vec<&'a RawValue>,
}

/// Splits a request body `{"reports": [...]}` into its reports' raw JSON texts, or
/// refuses the whole request (`bad_request`): a malformed body, an unknown top-level
/// field, more than `max_reports` reports.
pub fn parse_batch(body: &[u8], max_reports: usize) -> Result<Vec<&RawValue>, ApiError> {
    let batch: SpendBatch<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if batch.reports.len() > max_reports {
        return Err(ApiError::bad_request(format!(
            "a batch holds {} spend reports; accepted: at most {max_reports}",
            batch.reports.len()
        )));
    }
    Ok(batch.reports)
}

/// One spend report as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SpendReport)]
pub struct SpendReportIn {
    /// Client-supplied, one report per id within the campaign: an exact repeat (same
    /// segment, period, amount and impressions) is stored once and counted as a
    /// duplicate; the id with another content is refused (`report_id_conflict`).
    #[schema(min_length = 1)]
    report_id: String,
    /// A segment name of the campaign.
    segment: String,
    /// Period start, RFC 3339 with an offset (`2026-12-01T00:00:00Z`).
    start: String,
    /// Period end, RFC 3339 with an offset; after `start`, at most 366 days later.
    end: String,
    /// What was spent in the period: a finite number from 0 to 1e12.
    #[schema(minimum = 0)]
    amount: f64,
    /// Impressions bought in the period, when the channel says.
    #[schema(minimum = 0)]
    impressions: Option<u64>,
}

/// Why one spend report was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpendRejection {
    /// Not a JSON object of the accepted fields (`invalid_spend_report`).
    #[error("invalid spend report: {detail}")]
    Malformed {
        /// The parser's message.
        detail: String,
    },
    /// An empty or too long `report_id` (`invalid_report_id`).
    #[error("report_id must be 1 to {MAX_REPORT_ID_LEN} characters")]
    ReportId,
    /// A segment the campaign does not have (`unknown_segment`).
    #[error(
        "segment {} is not a segment of campaign {campaign_id}; it has {count} segments, e.g. {examples}",
        crate::error::quoted(segment)
    )]
    UnknownSegment {
        /// The segment sent.
        segment: String,
        /// The campaign.
        campaign_id: String,
        /// How many segments it has.
        count: usize,
        /// The first few of them.
        examples: String,
    },
    /// A period bound that is not RFC 3339, an end not after the start, or a period
    /// longer than [`MAX_PERIOD_DAYS`] (`invalid_period`).
    #[error("{field}: {problem}")]
    Period {
        /// `start` or `end`.
        field: &'static str,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// An `amount` that is not a finite number from 0 to [`AMOUNT_LIMIT`]
    /// (`invalid_amount`).
    #[error("amount is {amount}; accepted: a finite number from 0 to {AMOUNT_LIMIT}")]
    Amount {
        /// The number sent.
        amount: f64,
    },
    /// `impressions` above what can be stored (`invalid_spend_report`).
    #[error(
        "impressions is {impressions}; accepted: a whole number from 0 to {}",
        i64::MAX
    )]
    Impressions {
        /// The number sent.
        impressions: u64,
    },
    /// A `report_id` the campaign already holds with another content
    /// (`report_id_conflict`). Found when storing.
    #[error(
        "report_id {} is already stored with another segment, period, amount or impressions (as spend report {id}); \
         a report id names one report: send this one under a new id (stored spend is never rewritten)",
        crate::error::quoted(report_id)
    )]
    IdConflict {
        /// The report id sent.
        report_id: String,
        /// The stored report's position.
        id: u64,
    },
}

impl SpendRejection {
    /// The rejection's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SpendRejection::Malformed { .. } | SpendRejection::Impressions { .. } => {
                ErrorCode::InvalidSpendReport
            }
            SpendRejection::ReportId => ErrorCode::InvalidReportId,
            SpendRejection::UnknownSegment { .. } => ErrorCode::UnknownSegment,
            SpendRejection::Period { .. } => ErrorCode::InvalidPeriod,
            SpendRejection::Amount { .. } => ErrorCode::InvalidAmount,
            SpendRejection::IdConflict { .. } => ErrorCode::ReportIdConflict,
        }
    }

    /// The item listed in a batch answer: `{"index", "code", "error"}`.
    pub fn to_batch_item(&self, index: usize) -> RejectedSpendReport {
        RejectedSpendReport {
            index,
            code: self.code().as_str(),
            error: self.to_string(),
        }
    }
}

/// Parses one report's raw JSON text and checks it against campaign `slot`; the report
/// to store (sent with key `key_id`, received at `now_ms`), or why it is refused.
pub fn check_raw_report(
    slot: &CampaignSlot,
    raw: &str,
    key_id: &str,
    now_ms: i64,
) -> Result<NewSpendReport, SpendRejection> {
    let report: SpendReportIn =
        serde_json::from_str(raw).map_err(|e| SpendRejection::Malformed {
            detail: e.to_string(),
        })?;
    if report.report_id.is_empty() || report.report_id.chars().count() > MAX_REPORT_ID_LEN {
        return Err(SpendRejection::ReportId);
    }
    let current = slot.current();
    let Some(&segment) = current.segments.get(&report.segment) else {
        let names = &current.campaign.design().segment_names;
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        return Err(SpendRejection::UnknownSegment {
            segment: report.segment,
            campaign_id: slot.id.clone(),
            count: names.len(),
            examples: shown.join(", "),
        });
    };
    let (start_ms, end_ms) = parse_period(&report.start, &report.end)
        .map_err(|(field, problem)| SpendRejection::Period { field, problem })?;
    if !(report.amount.is_finite() && report.amount >= 0.0 && report.amount <= AMOUNT_LIMIT) {
        return Err(SpendRejection::Amount {
            amount: report.amount,
        });
    }
    if let Some(impressions) = report.impressions.filter(|&n| i64::try_from(n).is_err()) {
        return Err(SpendRejection::Impressions { impressions });
    }
    Ok(NewSpendReport {
        campaign_id: slot.id.clone(),
        report_id: report.report_id,
        segment: segment as u32,
        start_ms,
        end_ms,
        amount: report.amount,
        impressions: report.impressions,
        key_id: key_id.to_owned(),
        at_ms: now_ms,
    })
}

/// Stores checked reports of campaign `slot` in one durable transaction and teaches
/// its learner each one stored now ([`crate::learner::learn_spend_report`]); what
/// storing each did. The one path for the route of a single server and for the
/// learner applying a stream's `spend_report` record. Blocking.
pub fn store(
    state: &AppState,
    slot: &CampaignSlot,
    reports: Vec<NewSpendReport>,
) -> Result<Vec<SpendReportOutcome>, StoreError> {
    let outcomes = state.store().append_spend_reports(&reports)?;
    for (outcome, report) in outcomes.iter().zip(reports) {
        if let SpendReportOutcome::Appended { id } = *outcome {
            crate::learner::learn_spend_report(slot, &report.stored_as(id));
        }
    }
    Ok(outcomes)
}

/// The stored spend reports of campaign `campaign_id` by report id: what the reports
/// of a request the stream absorbed as repeats are answered from ([`repeat_outcome`]),
/// read once per request.
pub fn stored_by_id(
    state: &AppState,
    campaign_id: &str,
) -> Result<HashMap<String, StoredSpendReport>, StoreError> {
    Ok(state
        .store()
        .spend_reports(campaign_id)?
        .into_iter()
        .map(|stored| (stored.report_id.clone(), stored))
        .collect())
}

/// What a report the stream absorbed as a repeat of its id's first copy `stored` is: a
/// duplicate of it when it is an exact repeat ([`NewSpendReport::is_exact_repeat_of`],
/// the store's rule), else a conflict.
pub fn repeat_outcome(report: &NewSpendReport, stored: &StoredSpendReport) -> SpendReportOutcome {
    if report.is_exact_repeat_of(stored) {
        SpendReportOutcome::Duplicate { id: stored.id }
    } else {
        SpendReportOutcome::Conflict { id: stored.id }
    }
}
