//! HTTP handlers of API v1: parse the request, check the key, call the state; the
//! rules of an event are in [`crate::event`], errors and their statuses in
//! [`crate::error`].

use crate::auth::Scope;
use crate::campaign::CampaignSlot;
use crate::decision_id::DecisionClaims;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tla_core::spec::{Campaign, CampaignSpec};
use tla_store::DecisionRow;

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
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    Json(
        json!({"status": if state.closing() { "closing" } else { "ok" }, "applied_seq": state.applied_seq()}),
    )
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(state.decision_backlog()),
    ))
}

/// `GET /openapi.json`.
pub async fn openapi(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    Ok(Json(crate::openapi::document(state.config())))
}

fn campaign_json(slot: &CampaignSlot) -> Value {
    let campaign = &slot.campaign;
    let design = campaign.design();
    let engine = slot.engine();
    json!({
        "id": slot.id,
        "name": slot.name,
        "status": if slot.is_paused() { "paused" } else { "active" },
        "created_at": slot.created_at_ms,
        "objective": design.objective.as_str(),
        "versions": campaign.allowed_versions(),
        "total_versions": campaign.total_versions(),
        "versions_asking_to_act": campaign.acting_versions(),
        "components": design.component_names.iter().zip(design.space.option_counts())
            .map(|(name, &n)| json!({"name": name, "options": n})).collect::<Vec<_>>(),
        "segments": design.segment_names,
        "events_learned": engine.events(),
        "attribution_window_hours": campaign.spec().attribution_window_hours,
    })
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
    let slot = tokio::task::spawn_blocking(move || state2.create_campaign(campaign, id)).await??;
    Ok((StatusCode::CREATED, Json(campaign_json(&slot))))
}

/// `GET /v1/campaigns`.
pub async fn list_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let all: Vec<Value> = state.campaigns().iter().map(|s| campaign_json(s)).collect();
    Ok(Json(json!({"campaigns": all})))
}

/// `GET /v1/campaigns/{id}`.
pub async fn get_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    Ok(Json(campaign_json(&slot)))
}

/// `POST /v1/campaigns/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    // A durable write: on a blocking thread, like every other store write.
    let slot = tokio::task::spawn_blocking(move || state.set_paused(&id, true)).await??;
    Ok(Json(campaign_json(&slot)))
}

/// `POST /v1/campaigns/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    // A durable write: on a blocking thread, like every other store write.
    let slot = tokio::task::spawn_blocking(move || state.set_paused(&id, false)).await??;
    Ok(Json(campaign_json(&slot)))
}

fn version_json(campaign: &Campaign, version: u64) -> Value {
    let options: serde_json::Map<String, Value> = campaign
        .options_of(version)
        .into_iter()
        .map(|(component, option)| (component.to_string(), Value::String(option.to_string())))
        .collect();
    json!({
        "version": version,
        "options": options,
        "text": campaign.render(version),
        "asks_action": campaign.asks_to_act(version),
        "ask": campaign.ask_amount(version),
    })
}

/// `GET /v1/campaigns/{id}/versions/{index}`.
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
    Ok(Json(version_json(&slot.campaign, version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    segment: String,
    #[serde(default = "one")]
    count: i64,
}

fn one() -> i64 {
    1
}

/// `POST /v1/campaigns/{id}/decisions`.
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
    if slot.is_paused() {
        return Err(ApiError::conflict(format!(
            "campaign {} is paused; resume it to get decisions",
            slot.id
        )));
    }
    let at_ms = state.clock().now_ms();
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
        let mut item = version_json(&slot.campaign, decision.version);
        item["decision_id"] = Value::String(decision_id.clone());
        item["propensity"] = decision.propensity.into();
        item["model_version"] = decision.model_version.into();
        out.push(item);
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
    Ok(Json(json!({"decisions": out})))
}

/// `POST /v1/events`.
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
    let items = crate::event::parse_batch(&bytes, state.config().max_events_per_request)?;
    let now = state.clock().now_ms();
    let mut good = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match crate::event::check_raw_event(&state, item.get(), now) {
            Ok(event) => good.push(event),
            Err(rejection) => rejected.push(rejection.to_batch_item(index)),
        }
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    if !good.is_empty() {
        let log = state.log().clone();
        let started = std::time::Instant::now();
        let outcomes = tokio::task::spawn_blocking(move || log.append(&good)).await??;
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
    Ok(Json(
        json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}),
    ))
}

/// `GET /v1/campaigns/{id}/report`: the campaign report (see `docs/reports.md`):
/// summary in the story's terms, option leaderboards, segment leaders, version rows,
/// and the lift over an even split and the best single version from the decision log.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let report = tokio::task::spawn_blocking(move || {
        crate::report::campaign_report(
            &slot,
            state.store(),
            &tla_core::report::ReportSettings::default(),
            crate::report::LOG_ROWS_CAP,
        )
    })
    .await??;
    Ok(Json(report))
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /openapi.json lists them")
}
