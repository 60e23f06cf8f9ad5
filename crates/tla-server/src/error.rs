//! One error type for the API, and the one place where a code becomes an HTTP status.
//!
//! Every refusal carries an [`ErrorCode`]: a request refused whole answers
//! `{"error": {"code": "...", "message": "..."}}` with the status [`ErrorCode::status`]
//! gives; an event refused inside a batch is listed with its code (see
//! [`crate::event::EventRejection`]). Client errors say what was wrong and what is
//! accepted. An internal error keeps its cause, which is logged once, when the response
//! is made; the client gets a generic message, so no internals leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tla_store::StoreError;

/// Every reason the API refuses something, each with one stable code string.
///
/// The request-level codes answer whole requests; the event codes name why one event
/// of a batch was refused (they map to a status too, for a refusal answered alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or a field is invalid.
    BadRequest,
    /// No key, or a key that does not authenticate.
    Unauthorized,
    /// A valid key without the scope the endpoint needs.
    Forbidden,
    /// An unknown campaign, version or route.
    NotFound,
    /// A known route asked with a method it does not answer.
    MethodNotAllowed,
    /// The request conflicts with the resource's state (a paused campaign, a taken id).
    Conflict,
    /// The body is larger than accepted.
    PayloadTooLarge,
    /// The body did not arrive within the body read timeout.
    RequestTimeout,
    /// A content type that is not accepted.
    UnsupportedMediaType,
    /// The service cannot serve now (shutting down).
    Unavailable,
    /// A decision was not served because the decision log is too far behind or cannot
    /// be written; retry shortly.
    DecisionLogUnavailable,
    /// The server's disk is full: nothing of the request was stored or served.
    StorageFull,
    /// The shared event log (a NATS JetStream stream) cannot be reached, or this server
    /// has not heard from it for longer than its bound: no decision is served on a
    /// model that may be stale, and events may not be stored; retry shortly (events
    /// with the same ids).
    StreamUnavailable,
    /// The server failed; the log has the cause.
    Internal,
    /// An event that is not a JSON object of the accepted fields.
    InvalidEvent,
    /// An `event_id` that is empty or longer than 128 characters.
    InvalidEventId,
    /// A `decision_id` this server did not sign.
    InvalidDecisionId,
    /// A signed `decision_id` naming a campaign that does not exist.
    UnknownCampaign,
    /// A `type` other than impression, click, conversion, cost.
    InvalidEventType,
    /// A `value` or `amount` that is not a finite number >= 0, or a cost `amount`
    /// above the amount limit (1e12).
    InvalidAmount,
    /// An impression or click carrying a `value` or `amount`.
    UnexpectedAmount,
    /// A conversion with `amount`, or a cost with `value`.
    MisplacedAmount,
    /// A cost event without `amount`.
    MissingAmount,
    /// An `at` more than 5 minutes ahead of the server's clock.
    FutureEvent,
    /// An `at` more than a minute before its decision.
    BeforeDecision,
    /// A click or conversion after its campaign's attribution window.
    OutsideAttributionWindow,
    /// An `event_id` already stored with another content (type, decision or amount).
    EventIdConflict,
    /// A correction naming an `event_id` the campaign does not hold.
    EventNotFound,
    /// A correction of an event that was retracted (a retraction is final).
    EventRetracted,
    /// A conversion `value` above its campaign's `max_value`.
    ValueAboveMax,
    /// A spend report that is not a JSON object of the accepted fields, or whose
    /// `impressions` cannot be stored.
    InvalidSpendReport,
    /// A `report_id` that is empty or longer than 128 characters.
    InvalidReportId,
    /// A spend report naming a segment its campaign does not have.
    UnknownSegment,
    /// A spend report period whose bounds are not RFC 3339, whose end is not after its
    /// start, or that is longer than 366 days.
    InvalidPeriod,
    /// A `report_id` already stored with another content (segment, period, amount or
    /// impressions).
    ReportIdConflict,
    /// A budget or daily cap outside its range (the message names the field and says
    /// what is accepted).
    InvalidBudget,
    /// A budget change of a campaign whose spec has no `[flight]`.
    NoFlight,
    /// A budget below what the campaign has already spent.
    BudgetBelowSpent,
    /// An `Idempotency-Key` already used to create a campaign from another spec.
    IdempotencyKeyReused,
    /// A malformed `Idempotency-Key` header.
    InvalidIdempotencyKey,
    /// A new spec that cannot replace the running one (the message is the core's:
    /// what changed that may not, or which served option would be removed).
    RevisionRefused,
    /// A change of an archived campaign (resume, pause, revision, budget).
    CampaignArchived,
    /// A decision request's `unit` that is empty, too long or holds a character not
    /// accepted.
    InvalidUnit,
    /// A plan request the planner refused (its settings), or a campaign without a
    /// `[flight]` asked for a plan without a budget.
    InvalidPlan,
    /// No plan with that number.
    PlanNotFound,
    /// A result row names an ad no plan of the campaign ran.
    UnknownAd,
    /// A result row's numbers are refused (negative, not whole, more clicks or
    /// conversions than impressions).
    InvalidResult,
}

impl ErrorCode {
    /// Every code, in the order of the docs.
    pub const ALL: [ErrorCode; 47] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::DecisionLogUnavailable,
        ErrorCode::StorageFull,
        ErrorCode::StreamUnavailable,
        ErrorCode::Internal,
        ErrorCode::InvalidEvent,
        ErrorCode::InvalidEventId,
        ErrorCode::InvalidDecisionId,
        ErrorCode::UnknownCampaign,
        ErrorCode::InvalidEventType,
        ErrorCode::InvalidAmount,
        ErrorCode::UnexpectedAmount,
        ErrorCode::MisplacedAmount,
        ErrorCode::MissingAmount,
        ErrorCode::FutureEvent,
        ErrorCode::BeforeDecision,
        ErrorCode::OutsideAttributionWindow,
        ErrorCode::EventIdConflict,
        ErrorCode::EventNotFound,
        ErrorCode::EventRetracted,
        ErrorCode::ValueAboveMax,
        ErrorCode::InvalidSpendReport,
        ErrorCode::InvalidReportId,
        ErrorCode::UnknownSegment,
        ErrorCode::InvalidPeriod,
        ErrorCode::ReportIdConflict,
        ErrorCode::InvalidBudget,
        ErrorCode::NoFlight,
        ErrorCode::BudgetBelowSpent,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::RevisionRefused,
        ErrorCode::CampaignArchived,
        ErrorCode::InvalidUnit,
        ErrorCode::InvalidPlan,
        ErrorCode::PlanNotFound,
        ErrorCode::UnknownAd,
        ErrorCode::InvalidResult,
    ];

    /// The stable code string clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DecisionLogUnavailable => "decision_log_unavailable",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StreamUnavailable => "stream_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidEventId => "invalid_event_id",
            ErrorCode::InvalidDecisionId => "invalid_decision_id",
            ErrorCode::UnknownCampaign => "unknown_campaign",
            ErrorCode::InvalidEventType => "invalid_event_type",
            ErrorCode::InvalidAmount => "invalid_amount",
            ErrorCode::UnexpectedAmount => "unexpected_amount",
            ErrorCode::MisplacedAmount => "misplaced_amount",
            ErrorCode::MissingAmount => "missing_amount",
            ErrorCode::FutureEvent => "future_event",
            ErrorCode::BeforeDecision => "before_decision",
            ErrorCode::OutsideAttributionWindow => "outside_attribution_window",
            ErrorCode::EventIdConflict => "event_id_conflict",
            ErrorCode::EventNotFound => "event_not_found",
            ErrorCode::EventRetracted => "event_retracted",
            ErrorCode::ValueAboveMax => "value_above_max",
            ErrorCode::InvalidSpendReport => "invalid_spend_report",
            ErrorCode::InvalidReportId => "invalid_report_id",
            ErrorCode::UnknownSegment => "unknown_segment",
            ErrorCode::InvalidPeriod => "invalid_period",
            ErrorCode::ReportIdConflict => "report_id_conflict",
            ErrorCode::InvalidBudget => "invalid_budget",
            ErrorCode::NoFlight => "no_flight",
            ErrorCode::BudgetBelowSpent => "budget_below_spent",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::RevisionRefused => "revision_refused",
            ErrorCode::CampaignArchived => "campaign_archived",
            ErrorCode::InvalidUnit => "invalid_unit",
            ErrorCode::InvalidPlan => "invalid_plan",
            ErrorCode::PlanNotFound => "plan_not_found",
            ErrorCode::UnknownAd => "unknown_ad",
            ErrorCode::InvalidResult => "invalid_result",
        }
    }

    /// The HTTP status of a request refused with this code: the only place a status
    /// is chosen for an error.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidEvent
            | ErrorCode::InvalidEventId
            | ErrorCode::InvalidDecisionId
            | ErrorCode::InvalidEventType
            | ErrorCode::InvalidAmount
            | ErrorCode::UnexpectedAmount
            | ErrorCode::MisplacedAmount
            | ErrorCode::MissingAmount
            | ErrorCode::FutureEvent
            | ErrorCode::BeforeDecision
            | ErrorCode::OutsideAttributionWindow
            | ErrorCode::ValueAboveMax
            | ErrorCode::InvalidSpendReport
            | ErrorCode::InvalidReportId
            | ErrorCode::UnknownSegment
            | ErrorCode::InvalidPeriod
            | ErrorCode::InvalidBudget
            | ErrorCode::InvalidIdempotencyKey
            | ErrorCode::InvalidUnit
            | ErrorCode::InvalidPlan
            | ErrorCode::UnknownAd
            | ErrorCode::InvalidResult => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::UnknownCampaign => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict
            | ErrorCode::EventIdConflict
            | ErrorCode::EventRetracted
            | ErrorCode::ReportIdConflict
            | ErrorCode::NoFlight
            | ErrorCode::BudgetBelowSpent
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::RevisionRefused
            | ErrorCode::CampaignArchived => StatusCode::CONFLICT,
            ErrorCode::EventNotFound | ErrorCode::PlanNotFound => StatusCode::NOT_FOUND,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unavailable
            | ErrorCode::DecisionLogUnavailable
            | ErrorCode::StreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code of a storage error: the caller's conflicts, missing rows and values
    /// that cannot be stored are client errors; a full disk is `storage_full`;
    /// everything else is internal.
    pub fn of_store_error(error: &StoreError) -> ErrorCode {
        match error {
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::InvalidInput(_) => ErrorCode::BadRequest,
            StoreError::StorageFull { .. } => ErrorCode::StorageFull,
            StoreError::Unavailable(_) => ErrorCode::StreamUnavailable,
            StoreError::Schema(_)
            | StoreError::Corrupt { .. }
            | StoreError::Io { .. }
            | StoreError::Sqlite { .. }
            | StoreError::WriterPanicked => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cause of an internal error, kept for the log.
type Cause = Box<dyn std::fmt::Display + Send + Sync>;

/// An API error: a code and a message for the client; for an internal error, also the
/// cause, logged when the response is made.
pub struct ApiError {
    /// What went wrong, as a code.
    code: ErrorCode,
    /// What the client is told.
    message: String,
    /// The cause of an internal error (never shown to the client).
    cause: Option<Cause>,
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cause = self.cause.as_ref().map(ToString::to_string);
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("cause", &cause)
            .finish()
    }
}

impl std::fmt::Display for ApiError {
    /// `code: message`, as a client prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// A client error with `code` and a message saying what was wrong and what is
    /// accepted.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// The same code and message again (an internal error's cause is not copied): the
    /// answer to a retry of a request whose outcome is kept.
    pub fn repeated(&self) -> Self {
        Self::new(self.code, self.message.clone())
    }

    /// `bad_request`: the request is malformed or a field is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `unauthorized`: no key, or a key that does not authenticate.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `forbidden`: a valid key without the scope the endpoint needs.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `not_found`: an unknown campaign, version or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `method_not_allowed`: a known route asked with another method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MethodNotAllowed, message)
    }

    /// `conflict`: the request conflicts with the resource's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `payload_too_large`: the body is larger than accepted.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    /// `request_timeout`: the body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RequestTimeout, message)
    }

    /// `unsupported_media_type`: a content type that is not accepted.
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }

    /// `unavailable`: the service cannot serve now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `internal`: keeps `cause` for the log (written when the response is made); the
    /// client sees a generic message.
    pub fn internal(cause: impl std::fmt::Display + Send + Sync + 'static) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: "internal error; the server log has the cause".into(),
            cause: Some(Box::new(cause)),
        }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message the client is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status the error answers with.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match ErrorCode::of_store_error(&error) {
            ErrorCode::Internal => Self::internal(error),
            ErrorCode::StorageFull => Self {
                code: ErrorCode::StorageFull,
                message: "the server's disk is full; nothing of this request was stored; \
                          retry once space is freed"
                    .into(),
                cause: Some(Box::new(error)),
            },
            code => Self::new(code, error.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    /// A blocking task that panicked or was cancelled.
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(code = %self.code, %cause, "request failed");
        }
        let body = crate::wire::ErrorBody {
            error: crate::wire::ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message,
            },
        };
        (self.code.status(), Json(body)).into_response()
    }
}

/// A client's text quoted in an error message, at most [`QUOTED_CHARS`] characters
/// of it: a refusal names what it refuses without echoing a huge input back.
pub fn quoted(text: &str) -> String {
    let count = text.chars().count();
    if count <= QUOTED_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(QUOTED_CHARS).collect();
    format!("{head:?}... ({count} characters)")
}

/// The most characters of a client's text an error message quotes.
pub const QUOTED_CHARS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_cut_to_a_readable_length() {
        assert_eq!(quoted("past-donors"), "\"past-donors\"");
        let long = "x".repeat(900_000);
        let shown = quoted(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("... (900000 characters)"), "{shown}");
    }

    /// The table of `docs/service.md`, through `IntoResponse`: every code answers its
    /// status and its code string.
    #[test]
    fn every_code_answers_its_documented_status() {
        let table = [
            ("bad_request", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("conflict", 409),
            ("payload_too_large", 413),
            ("request_timeout", 408),
            ("unsupported_media_type", 415),
            ("unavailable", 503),
            ("decision_log_unavailable", 503),
            ("storage_full", 507),
            ("stream_unavailable", 503),
            ("internal", 500),
            ("invalid_event", 400),
            ("invalid_event_id", 400),
            ("invalid_decision_id", 400),
            ("unknown_campaign", 404),
            ("invalid_event_type", 400),
            ("invalid_amount", 400),
            ("unexpected_amount", 400),
            ("misplaced_amount", 400),
            ("missing_amount", 400),
            ("future_event", 400),
            ("before_decision", 400),
            ("outside_attribution_window", 400),
            ("event_id_conflict", 409),
            ("event_not_found", 404),
            ("event_retracted", 409),
            ("value_above_max", 400),
            ("invalid_spend_report", 400),
            ("invalid_report_id", 400),
            ("unknown_segment", 400),
            ("invalid_period", 400),
            ("report_id_conflict", 409),
            ("invalid_budget", 400),
            ("no_flight", 409),
            ("budget_below_spent", 409),
            ("idempotency_key_reused", 409),
            ("invalid_idempotency_key", 400),
            ("revision_refused", 409),
            ("campaign_archived", 409),
            ("invalid_unit", 400),
            ("invalid_plan", 400),
            ("plan_not_found", 404),
            ("unknown_ad", 400),
            ("invalid_result", 400),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, (name, status)) in ErrorCode::ALL.into_iter().zip(table) {
            assert_eq!(code.as_str(), name);
            let response = ApiError::new(code, "m").into_response();
            assert_eq!(response.status().as_u16(), status, "{name}");
        }
    }

    #[test]
    fn codes_are_distinct_and_internal_causes_stay_out_of_the_body() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        let error = ApiError::internal("disk on fire at /secret/path");
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.message().contains("/secret/path"));
        assert!(format!("{error:?}").contains("/secret/path"));
        let conflict = ApiError::from(StoreError::Conflict("campaign id taken".into()));
        assert_eq!(
            (conflict.code(), conflict.message()),
            (ErrorCode::Conflict, "campaign id taken")
        );
        let invalid = ApiError::from(StoreError::InvalidInput("too large".into()));
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let full = ApiError::from(StoreError::StorageFull {
            context: "appending events",
            detail: "database or disk is full at /secret/path".into(),
        });
        assert_eq!(
            (full.code(), full.status()),
            (ErrorCode::StorageFull, StatusCode::INSUFFICIENT_STORAGE)
        );
        assert!(!full.message().contains("/secret/path"), "{full}");
        assert!(format!("{full:?}").contains("/secret/path"));
    }
}
