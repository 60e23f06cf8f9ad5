//! HTTP handlers of API v1. Parsing and validation live here; the state does the rest.

use crate::auth::Scope;
use crate::decision_id::DecisionClaims;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable,
    UnsupportedMedia,
};
use crate::state::{AppState, now_ms};
use crate::wire::{
    CampaignBody, CampaignList, DecisionBody, DecisionList, Health, HealthStatus, IngestOutcome,
    RejectedEvent, VersionBody,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::Ordering;
use tla_core::spec::{Campaign, CampaignSpec};
use tla_store::{DecisionRow, EventKind, NewEvent};
use utoipa::ToSchema;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Checks the key, counting refusals.
fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
    state.authorize(bearer(headers), scope).inspect_err(|_| {
        Metrics::add(&state.metrics().client_errors, 1);
    })
}

/// The request body, or an error in the API's shape (413 past the limit).
fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "request body is larger than the accepted maximum (see the OpenAPI document)",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", summary = "liveness (no key needed)", security(()),
    responses((status = 200, description = "serving or closing", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let status = if state.closing() {
        HealthStatus::Closing
    } else {
        HealthStatus::Ok
    };
    Json(Health {
        status,
        applied_seq: state.applied_seq(),
    })
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics (scope read)",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
            content_type = "text/plain", body = String),
        Unauthorized, Forbidden))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let text = state
        .metrics()
        .render(state.decision_backlog())
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", summary = "this document (scope read)",
    responses((status = 200, description = "the document", body = Object), Unauthorized, Forbidden))]
pub async fn openapi(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    Ok(Json(crate::openapi::document(state.config())))
}

fn parse_spec(headers: &HeaderMap, bytes: &[u8]) -> Result<Campaign, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("the spec is not UTF-8 text"))?;
    let spec = match media.as_str() {
        "application/json" => CampaignSpec::from_json_str(text),
        "application/toml" | "text/toml" | "application/x-toml" => {
            CampaignSpec::from_toml_str(text)
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "content type {other:?} is not accepted; send the spec as application/json or application/toml"
            )));
        }
    };
    spec.and_then(|s| s.validate())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST /v1/campaigns`.
#[utoipa::path(post, path = "/v1/campaigns", summary = "create a campaign from its spec (scope admin)",
    request_body(description = "the campaign spec, docs/spec.md", content(
        (Object = "application/json"), (String = "application/toml"))),
    responses((status = 201, description = "created", body = CampaignBody),
        BadRequest, Unauthorized, Forbidden, TooLarge, UnsupportedMedia))]
pub async fn create_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    let bytes = body(bytes)?;
    let campaign = parse_spec(&headers, &bytes)?;
    let id = format!("c_{:012x}", rand::rng().random::<u64>() & 0xFFFF_FFFF_FFFF);
    let state2 = state.clone();
    let slot = tokio::task::spawn_blocking(move || state2.create_campaign(campaign, id))
        .await
        .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(CampaignBody::new(&slot))))
}

/// `GET /v1/campaigns`.
#[utoipa::path(get, path = "/v1/campaigns", summary = "list campaigns (scope read)",
    responses((status = 200, description = "campaigns", body = CampaignList), Unauthorized, Forbidden))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let campaigns = state
        .campaigns()
        .iter()
        .map(|s| CampaignBody::new(s))
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

/// `GET /v1/campaigns/{id}`.
#[utoipa::path(get, path = "/v1/campaigns/{id}", summary = "one campaign (scope read)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign", body = CampaignBody),
        Unauthorized, Forbidden, NotFound))]
pub async fn get_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    Ok(Json(CampaignBody::new(&slot)))
}

/// `POST /v1/campaigns/{id}/pause`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", summary = "stop serving decisions (scope admin)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign", body = CampaignBody),
        Unauthorized, Forbidden, NotFound))]
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    let slot = state.set_paused(&id, true)?;
    Ok(Json(CampaignBody::new(&slot)))
}

/// `POST /v1/campaigns/{id}/resume`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", summary = "serve decisions again (scope admin)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign", body = CampaignBody),
        Unauthorized, Forbidden, NotFound))]
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    let slot = state.set_paused(&id, false)?;
    Ok(Json(CampaignBody::new(&slot)))
}

/// `GET /v1/campaigns/{id}/versions/{index}`.
#[utoipa::path(get, path = "/v1/campaigns/{id}/versions/{index}", summary = "one version (scope read)",
    params(("id" = String, Path, description = "campaign id"),
        ("index" = u64, Path, description = "version index")),
    responses((status = 200, description = "the version", body = VersionBody),
        BadRequest, Unauthorized, Forbidden, NotFound))]
pub async fn get_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let total = slot.campaign.total_versions();
    let version: u64 = index.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "version index {index:?} is not a whole number; accepted: 0 to {}",
            total - 1
        ))
    })?;
    if version >= total {
        return Err(ApiError::not_found(format!(
            "version {version} does not exist; this campaign has versions 0 to {}",
            total - 1
        )));
    }
    if !slot.campaign.is_allowed(version) {
        return Err(ApiError::not_found(format!(
            "version {version} is removed by the campaign's exclusions {:?}",
            slot.campaign.violated_exclusions(version)
        )));
    }
    Ok(Json(VersionBody::new(&slot.campaign, version)))
}

/// What `POST /v1/campaigns/{id}/decisions` asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// A segment name of the campaign.
    segment: String,
    /// Impressions to decide for (the maximum is the configured limit).
    #[serde(default = "one")]
    #[schema(minimum = 1, default = 1)]
    count: i64,
}

fn one() -> i64 {
    1
}

/// `POST /v1/campaigns/{id}/decisions`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/decisions",
    summary = "choose versions for impressions of a segment (scope decide)",
    params(("id" = String, Path, description = "campaign id")),
    request_body = DecisionRequest,
    responses((status = 200, description = "decisions", body = DecisionList),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge))]
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Decide)?;
    let bytes = body(bytes)?;
    let request: DecisionRequest = json_body(&bytes)?;
    let slot = state.campaign(&id)?;
    let max = state.config().max_decisions_per_request as i64;
    if request.count < 1 || request.count > max {
        return Err(ApiError::bad_request(format!(
            "count is {}; accepted: 1 to {max}",
            request.count
        )));
    }
    let Some(&segment) = slot.segments.get(&request.segment) else {
        let names = &slot.campaign.design().segment_names;
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "segment {:?} is not a segment of campaign {}; it has {} segments, e.g. {}",
            request.segment,
            slot.id,
            names.len(),
            shown.join(", ")
        )));
    };
    if slot.paused.load(Ordering::SeqCst) {
        return Err(ApiError::conflict(format!(
            "campaign {} is paused; resume it to get decisions",
            slot.id
        )));
    }
    let at_ms = now_ms();
    let mut rng = rand::rng();
    let chosen: Vec<_> = {
        let engine = slot.engine();
        (0..request.count)
            .map(|_| engine.decide(segment, &mut rng))
            .collect()
    };
    let mut out = Vec::with_capacity(chosen.len());
    let mut rows = Vec::with_capacity(chosen.len());
    for decision in chosen {
        let claims = DecisionClaims {
            campaign_id: slot.id.clone(),
            segment: segment as u32,
            version: decision.version,
            model_version: decision.model_version,
            propensity: decision.propensity,
            at_ms,
            nonce: rng.random(),
        };
        let decision_id = state.signer().sign(&claims);
        out.push(DecisionBody {
            version: VersionBody::new(&slot.campaign, decision.version),
            decision_id: decision_id.clone(),
            propensity: decision.propensity,
            model_version: decision.model_version,
        });
        rows.push(DecisionRow {
            decision_id,
            campaign_id: slot.id.clone(),
            segment: segment as u32,
            version: decision.version,
            propensity: decision.propensity,
            model_version: decision.model_version,
            at_ms,
        });
    }
    Metrics::add(&state.metrics().decisions, rows.len() as u64);
    state.log_decisions(rows);
    Ok(Json(DecisionList { decisions: out }))
}

/// What `POST /v1/events` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch<'a> {
    /// Each event kept as raw text, so it is parsed once, into its typed form, and a
    /// bad one is reported by index without refusing the batch. At most the configured
    /// number of events.
    #[serde(borrow)]
    #[schema(value_type = Vec<EventIn>)]
    events: Vec<&'a serde_json::value::RawValue>,
}

/// One event as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub struct EventIn {
    /// Client-supplied; a repeated id is stored once and counted as a duplicate.
    #[schema(min_length = 1, max_length = 128)]
    event_id: String,
    /// The `decision_id` of the decision the event follows.
    decision_id: String,
    /// `impression`, `click`, `conversion` or `cost`.
    #[serde(rename = "type")]
    #[schema(schema_with = crate::openapi::event_type_schema)]
    kind: String,
    /// Donation amount, conversions only.
    #[schema(minimum = 0)]
    value: Option<f64>,
    /// Spend, cost events only (required there).
    #[schema(minimum = 0)]
    amount: Option<f64>,
    /// Milliseconds since the Unix epoch; default now. Clicks and conversions must fall
    /// within the campaign's attribution window after the decision.
    at: Option<i64>,
}

/// Parses and checks one event of a batch against the signed decision it names.
pub fn check_event(state: &AppState, item: Value, now: i64) -> Result<NewEvent, String> {
    let event: EventIn = serde_json::from_value(item).map_err(|e| format!("invalid event: {e}"))?;
    check_parsed_event(state, event, now)
}

/// [`check_event`] on one event's raw JSON text (the batch path: parsed once).
pub fn check_raw_event(state: &AppState, raw: &str, now: i64) -> Result<NewEvent, String> {
    let event: EventIn = serde_json::from_str(raw).map_err(|e| format!("invalid event: {e}"))?;
    check_parsed_event(state, event, now)
}

fn check_parsed_event(state: &AppState, event: EventIn, now: i64) -> Result<NewEvent, String> {
    if event.event_id.is_empty() || event.event_id.len() > 128 {
        return Err("event_id must be 1 to 128 characters".into());
    }
    let claims = state
        .signer()
        .verify(&event.decision_id)
        .map_err(|reason| format!("decision_id {reason}"))?;
    let slot = state.campaign(&claims.campaign_id).map_err(|_| {
        format!(
            "decision_id names campaign {:?}, which does not exist",
            claims.campaign_id
        )
    })?;
    let Some(kind) = EventKind::from_name(&event.kind) else {
        return Err(format!(
            "type {:?} is not accepted; accepted: impression, click, conversion, cost",
            event.kind
        ));
    };
    let check_amount = |name: &str, amount: f64| {
        if amount.is_finite() && amount >= 0.0 {
            Ok(amount)
        } else {
            Err(format!(
                "{name} is {amount}; accepted: a finite number >= 0"
            ))
        }
    };
    let value = match kind {
        EventKind::Impression | EventKind::Click => {
            if event.value.is_some() || event.amount.is_some() {
                return Err(format!(
                    "a {} event carries no value or amount",
                    kind.as_str()
                ));
            }
            0.0
        }
        EventKind::Conversion => {
            if event.amount.is_some() {
                return Err("a conversion carries its donation as `value`, not `amount`".into());
            }
            check_amount("value", event.value.unwrap_or(0.0))?
        }
        EventKind::Cost => {
            if event.value.is_some() {
                return Err("a cost event carries its spend as `amount`, not `value`".into());
            }
            let Some(amount) = event.amount else {
                return Err("a cost event needs `amount` (the spend)".into());
            };
            check_amount("amount", amount)?
        }
    };
    let at_ms = event.at.unwrap_or(now);
    if at_ms > now + 300_000 {
        return Err(format!(
            "at is {:.1} minutes in the future; accepted: up to 5 minutes ahead of the server's clock",
            (at_ms - now) as f64 / 60_000.0
        ));
    }
    if at_ms < claims.at_ms - 60_000 {
        return Err(format!(
            "at is {} ms before its decision; events come after the decision they follow",
            claims.at_ms - at_ms
        ));
    }
    if kind != EventKind::Impression
        && kind != EventKind::Cost
        && at_ms - claims.at_ms > slot.attribution_window_ms
    {
        return Err(format!(
            "this {} came {:.1} hours after its decision; the campaign's attribution window is {} hours",
            kind.as_str(),
            (at_ms - claims.at_ms) as f64 / 3_600_000.0,
            slot.attribution_window_ms / 3_600_000
        ));
    }
    Ok(NewEvent {
        campaign_id: claims.campaign_id,
        event_id: event.event_id,
        decision_id: event.decision_id,
        kind,
        value,
        segment: claims.segment,
        version: claims.version,
        decided_at_ms: claims.at_ms,
        at_ms,
    })
}

/// `POST /v1/events`.
#[utoipa::path(post, path = "/v1/events",
    summary = "send events; each good one is acknowledged only once committed (scope ingest)",
    request_body = EventBatch<'_>,
    responses((status = 200, description = "per-batch outcome; bad items are listed and nothing is stored for them",
            body = IngestOutcome),
        BadRequest, Unauthorized, Forbidden, TooLarge, Unavailable))]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Ingest)?;
    if state.closing() {
        return Err(ApiError::unavailable(
            "the server is shutting down; retry against another instance or later",
        ));
    }
    let bytes = body(bytes)?;
    let batch: EventBatch<'_> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let max = state.config().max_events_per_request;
    if batch.events.len() > max {
        return Err(ApiError::bad_request(format!(
            "a batch holds {} events; accepted: at most {max}",
            batch.events.len()
        )));
    }
    let now = now_ms();
    let mut good = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    for (index, item) in batch.events.into_iter().enumerate() {
        match check_raw_event(&state, item.get(), now) {
            Ok(event) => good.push(event),
            Err(error) => rejected.push(RejectedEvent { index, error }),
        }
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    if !good.is_empty() {
        let log = state.log().clone();
        let started = std::time::Instant::now();
        let outcomes = tokio::task::spawn_blocking(move || log.append(&good))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)?;
        state
            .metrics()
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for outcome in outcomes {
            if outcome.is_duplicate() {
                duplicates += 1;
            } else {
                accepted += 1;
            }
        }
        state.wake_learner();
    }
    let metrics = state.metrics();
    Metrics::add(&metrics.events_accepted, accepted);
    Metrics::add(&metrics.events_duplicate, duplicates);
    Metrics::add(&metrics.events_rejected, rejected.len() as u64);
    Ok(Json(IngestOutcome {
        accepted,
        duplicates,
        rejected,
    }))
}

/// `GET /v1/campaigns/{id}/report`: the campaign report (see `docs/reports.md`):
/// summary in the story's terms, option leaderboards, segment leaders, version rows,
/// and the lift over an even split and the best single version from the decision log.
#[utoipa::path(get, path = "/v1/campaigns/{id}/report",
    summary = "the campaign report: summary, option leaderboards, segment leaders, versions served, lift from the decision log; see docs/reports.md (scope read)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "report", body = tla_core::report::Report),
        Unauthorized, Forbidden, NotFound))]
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    state.campaign(&id)?;
    let report = tokio::task::spawn_blocking(move || {
        crate::report::campaign_report(
            &state,
            &id,
            &tla_core::report::ReportSettings::default(),
            crate::report::LOG_ROWS_CAP,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(report))
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /openapi.json lists them")
}
