//! HTTP handlers of API v1: parse the request, check the key, call the state; the
//! rules of an event are in [`crate::event`], errors and their statuses in
//! [`crate::error`].

use crate::auth::Scope;
use crate::campaign::CampaignSlot;
use crate::connections::BodyTimeout;
use crate::decision_id::DecisionClaims;
use crate::decision_id::SKIPPED_VERSION;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::openapi::{
    BadRequest, BodyTimedOut, Conflict, Forbidden, Internal, NotFound, StorageFull, TooLarge,
    Unauthorized, Unavailable, UnsupportedMedia,
};
use crate::pacing::Paced;
use crate::state::AppState;
use crate::wire::{
    BudgetChangeOutcome, BudgetChangeRequest, CampaignBody, CampaignList, CorrectionRequest,
    DecisionBody, DecisionList, DecisionOut, Health, HealthStatus, IngestOutcome,
    RejectedSpendReport, RevisionBody, RevisionList, RevisionOutcome, SkipBody, SkippedDecision,
    SpendOutcome, StorageHealth, StorageStatus, VersionBody,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use rand::{Rng, RngCore};
use serde::Deserialize;
use tla_core::holdout::{self, UnitRng};
use tla_core::pacing::SkipReason;
use tla_core::policy::{Choice, Gate};
use tla_core::spec::{Campaign, CampaignSpec};
use tla_store::{AppendOutcome, DecisionRow, SpendReportOutcome};
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

/// [`authorize`], answering the key's id (for the audit of what the request changes).
fn authorize_key(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<String, ApiError> {
    state
        .authorize_key(bearer(headers), scope)
        .inspect_err(|_| {
            Metrics::add(&state.metrics().client_errors, 1);
        })
}

/// The request body, or an error in the API's shape (413 past the limit, 408 past the
/// body read timeout).
fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|rejection| {
        if let Some(timeout) = body_timeout(&rejection) {
            ApiError::request_timeout(format!(
                "{timeout}; send the whole body at once, or set body_read_timeout"
            ))
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "request body is larger than the accepted maximum (see the OpenAPI document)",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// The [`BodyTimeout`] behind a body that could not be read, if that was the cause.
fn body_timeout(rejection: &BytesRejection) -> Option<BodyTimeout> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(*timeout);
        }
        cause = error.source();
    }
    None
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", summary = "liveness and storage health (no key needed)", security(()),
    responses((status = 200, description = "serving or closing", body = Health),
        (status = 503, description = "degraded: storage cannot take writes, decisions are refused", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let backlog = state.decision_backlog();
    let limit = crate::decision_log::DECISION_BACKLOG_LIMIT;
    let storage = match state.storage_failure() {
        Some(crate::decision_log::LogFailure::Full) => StorageStatus::Full,
        Some(crate::decision_log::LogFailure::Unwritable) => StorageStatus::Unwritable,
        None if backlog >= limit => StorageStatus::Unwritable,
        None => StorageStatus::Ok,
    };
    let stream = state
        .stream()
        .map(|stream| stream.health(state.applied_seq()));
    let stale = stream.as_ref().is_some_and(|s| s.stale);
    let (code, status) = if state.closing() {
        (StatusCode::OK, HealthStatus::Closing)
    } else if storage != StorageStatus::Ok || stale {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Degraded)
    } else {
        (StatusCode::OK, HealthStatus::Ok)
    };
    let health = Health {
        status,
        applied_seq: state.applied_seq(),
        storage: StorageHealth {
            status: storage,
            decision_backlog: backlog as u64,
            decision_backlog_limit: limit as u64,
        },
        stream,
        leases: crate::lease::health(&state),
    };
    (code, Json(health))
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
    let mut text = state
        .metrics()
        .render(state.decision_backlog())
        .map_err(ApiError::internal)?;
    if let Some(stream) = state.stream() {
        text.push_str(&crate::metrics::render_stream(
            &stream.health(state.applied_seq()),
        ));
    }
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

/// The media types a spec is accepted in.
const SPEC_MEDIA: &str = "application/json or application/toml (also text/toml)";

/// A spec sent as the body of a request, in the format its `Content-Type` names, then
/// validated. Refusals say what is accepted, and a TOML body without line breaks (as
/// `curl -d @spec.toml` sends it) says how to send the file as it is.
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
            match CampaignSpec::from_toml_str(text) {
                Err(error) if !text.trim().contains('\n') && text.contains('=') => {
                    return Err(ApiError::bad_request(format!(
                        "{error}; the body has no line breaks, as `curl -d` sends a file: send it as it is with `curl --data-binary @spec.toml -H 'Content-Type: application/toml'`"
                    )));
                }
                parsed => parsed,
            }
        }
        "application/x-www-form-urlencoded" => {
            return Err(ApiError::unsupported_media(format!(
                "content type {media:?} is a form (what `curl -d` sends, without the file's line breaks); send the spec as {SPEC_MEDIA}, e.g. `curl --data-binary @spec.toml -H 'Content-Type: application/toml'`"
            )));
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "content type {other:?} is not accepted; send the spec as {SPEC_MEDIA}"
            )));
        }
    };
    spec.and_then(|s| s.validate())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The longest `Idempotency-Key` accepted, characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header, if sent: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible
/// ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let refused = || {
        ApiError::new(
            crate::error::ErrorCode::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (a UUID, say)"
            ),
        )
    };
    let text = value.to_str().map_err(|_| refused())?.trim();
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(refused());
    }
    Ok(Some(text.to_owned()))
}

/// `POST /v1/campaigns`.
#[utoipa::path(post, path = "/v1/campaigns", summary = "create a campaign from its spec; with an Idempotency-Key, a retry answers the campaign the first request made (scope admin)",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters (a UUID, say): a retry with the same key and the same spec answers the same campaign (200) instead of making another; the same key with another spec is refused (409 idempotency_key_reused)")),
    request_body(description = "the campaign spec, docs/spec.md: TOML (send the file as it is: `curl --data-binary @spec.toml -H 'Content-Type: application/toml'`) or JSON", content(
        (Object = "application/json"), (String = "application/toml"))),
    responses((status = 201, description = "created", body = CampaignBody),
        (status = 200, description = "a retry: the campaign this Idempotency-Key created, as it stands", body = CampaignBody),
        BadRequest, Unauthorized, Forbidden, BodyTimedOut, Conflict, TooLarge, UnsupportedMedia, StorageFull))]
pub async fn create_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Admin)?;
    let idempotency_key = idempotency_key(&headers)?;
    let bytes = body(bytes)?;
    let campaign = parse_spec(&headers, &bytes)?;
    let id = match (&idempotency_key, state.stream()) {
        // On a shared stream the same key names the same campaign on every server.
        (Some(key), Some(_)) => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(format!("tla campaign id\0{key}").as_bytes());
            format!("c_{}", &crate::stream_log::hex(&digest)[..12])
        }
        _ => format!("c_{:012x}", rand::rng().random::<u64>() & 0xFFFF_FFFF_FFFF),
    };
    // A retry on another server of the stream, which started the campaign from the
    // stream (without this key's record): the same spec answers the campaign.
    if state.stream().is_some() {
        if let Ok(slot) = state.campaign(&id) {
            let first = slot
                .revision(1)
                .ok_or_else(|| ApiError::internal("a campaign has revision 1"))?;
            let same = serde_json::to_string(first.campaign.spec()).ok()
                == serde_json::to_string(campaign.spec()).ok();
            if !same {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    format!(
                        "Idempotency-Key {} created campaign {id} on a server of this stream from another spec; a retry sends the same spec with the same key, a new campaign a new key",
                        crate::error::quoted(&idempotency_key.unwrap_or_default())
                    ),
                ));
            }
            return Ok((StatusCode::OK, Json(CampaignBody::new(&slot))));
        }
    }
    let state2 = state.clone();
    let (slot, created) = tokio::task::spawn_blocking(move || {
        let (slot, created) = match idempotency_key {
            Some(key) => state2.create_campaign_once(campaign, id, &key, &key_id)?,
            None => (state2.create_campaign(campaign, id)?, true),
        };
        // On a shared stream every server starts it; a retry shares it again (the
        // stream absorbs the repeat), so a failure here is safe to retry.
        if let Some(stream) = state2.stream() {
            if let Some(row) = state2.store().campaign(&slot.id)? {
                stream.share_campaign(&row)?;
            }
        }
        Ok::<_, ApiError>((slot, created))
    })
    .await??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CampaignBody::new(&slot))))
}

/// What `GET /v1/campaigns` takes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only campaigns of this status: `active`, `paused` or `archived`.
    status: Option<String>,
    /// List archived campaigns too (without `status`; default false).
    include_archived: Option<bool>,
}

/// `GET /v1/campaigns`.
#[utoipa::path(get, path = "/v1/campaigns", summary = "list campaigns, archived ones only when asked for (scope read)",
    params(ListQuery),
    responses((status = 200, description = "campaigns", body = CampaignList), BadRequest, Unauthorized, Forbidden))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let axum::extract::Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "{}; accepted: status=active|paused|archived, include_archived=true|false",
            rejection.body_text()
        ))
    })?;
    let wanted = match query.status.as_deref() {
        None => None,
        Some(name @ ("active" | "paused" | "archived")) => Some(name.to_owned()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status {} is not a campaign status; accepted: active, paused, archived",
                crate::error::quoted(other)
            )));
        }
    };
    let include_archived = query.include_archived.unwrap_or(false);
    let campaigns = state
        .campaigns()
        .iter()
        .map(|s| CampaignBody::new(s))
        .filter(|body| match &wanted {
            Some(name) => body.status.as_str() == name,
            None => include_archived || body.status != crate::wire::CampaignStatus::Archived,
        })
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
        Unauthorized, Forbidden, NotFound, Conflict, Unavailable, StorageFull))]
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set_paused(state, &headers, id, true).await
}

/// `POST /v1/campaigns/{id}/resume`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", summary = "serve decisions again (scope admin)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign", body = CampaignBody),
        Unauthorized, Forbidden, NotFound, Conflict, Unavailable, StorageFull))]
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set_paused(state, &headers, id, false).await
}

/// `POST /v1/campaigns/{id}/archive`.
#[utoipa::path(post, path = "/v1/campaigns/{id}/archive",
    summary = "archive instead of delete: stop serving for good, keep the history and the report, leave the default list (scope admin)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the campaign, archived", body = CampaignBody),
        Unauthorized, Forbidden, NotFound, Unavailable, StorageFull))]
pub async fn archive(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Admin)?;
    let slot = tokio::task::spawn_blocking(move || state.archive_by(&id, &key_id)).await??;
    Ok(Json(CampaignBody::new(&slot)))
}

/// What `PUT /v1/campaigns/{id}/spec` takes besides the spec.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviseQuery {
    /// Why (kept with the revision and listed), at most 500 characters.
    reason: Option<String>,
}

/// `PUT /v1/campaigns/{id}/spec`: replace a running campaign's spec (see
/// [`crate::revise`]).
#[utoipa::path(put, path = "/v1/campaigns/{id}/spec",
    summary = "replace a running campaign's spec: revision n+1; options and segments matched by name, what was learned kept; refused with revision_refused when it removes a served option (retire it: `retired = true`), changes the components, the objective or the ask (scope admin)",
    params(("id" = String, Path, description = "campaign id"), ReviseQuery,
        ("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters (a UUID, say), stored with the revision it makes: a retry with the same key, the same spec and the same reason answers that revision (200, the same revision and summary; the campaign as it now stands) and revises nothing, on any server of a shared stream and after a restart; the same key with another spec or reason is refused (409 idempotency_key_reused). A request that was refused stored nothing: on a single server its retry is decided again; on a shared stream it answers the first refusal, or 409 conflict where that is no longer kept")),
    request_body(description = "the whole new spec, docs/spec.md: TOML (`curl -X PUT --data-binary @spec.toml -H 'Content-Type: application/toml'`) or JSON", content(
        (Object = "application/json"), (String = "application/toml"))),
    responses((status = 200, description = "revised: the new revision is in force", body = RevisionOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, Conflict, TooLarge, UnsupportedMedia, Unavailable, StorageFull))]
pub async fn revise(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<ReviseQuery>, axum::extract::rejection::QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Admin)?;
    let axum::extract::Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!("{}; accepted: reason=TEXT", rejection.body_text()))
    })?;
    let reason = query.reason.filter(|r| !r.trim().is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > crate::correction::MAX_REASON_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "reason must be at most {} characters",
            crate::correction::MAX_REASON_LEN
        )));
    }
    let idempotency_key = idempotency_key(&headers)?;
    let slot = state.campaign(&id)?;
    let bytes = body(bytes)?;
    let next = parse_spec(&headers, &bytes)?;
    let outcome = tokio::task::spawn_blocking(move || {
        let revised = crate::revise::revise(
            &state,
            &slot,
            next,
            reason,
            &key_id,
            idempotency_key.as_deref(),
        )?;
        Ok::<_, ApiError>(RevisionOutcome {
            summary: revised.summary,
            revision: RevisionBody {
                revision: revised.revision.number,
                at: revised.revision.at_ms,
                from_seq: revised.revision.from_seq,
                reason: revised.revision.reason.clone(),
                key_id: Some(key_id),
                spec: serde_json::to_value(revised.revision.campaign.spec())
                    .map_err(ApiError::internal)?,
            },
            campaign: CampaignBody::new(&slot),
        })
    })
    .await??;
    Ok(Json(outcome))
}

/// `GET /v1/campaigns/{id}/revisions`.
#[utoipa::path(get, path = "/v1/campaigns/{id}/revisions",
    summary = "every revision of a campaign's spec, oldest first, with when, why, by which key and from which event on (scope read)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the revisions", body = RevisionList),
        Unauthorized, Forbidden, NotFound))]
pub async fn list_revisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let list = tokio::task::spawn_blocking(move || {
        let first = slot.revision(1).expect("a campaign has revision 1");
        let spec =
            |campaign: &Campaign| serde_json::to_value(campaign.spec()).map_err(ApiError::internal);
        let mut revisions = vec![RevisionBody {
            revision: 1,
            at: slot.created_at_ms,
            from_seq: 0,
            reason: None,
            key_id: None,
            spec: spec(&first.campaign)?,
        }];
        for stored in state.store().revisions(&slot.id)? {
            revisions.push(RevisionBody {
                revision: stored.revision,
                at: stored.at_ms,
                from_seq: stored.from_seq,
                reason: stored.reason,
                key_id: Some(stored.key_id),
                spec: serde_json::from_str(&stored.spec_json).map_err(ApiError::internal)?,
            });
        }
        Ok::<_, ApiError>(RevisionList { revisions })
    })
    .await??;
    Ok(Json(list))
}

/// Pause or resume (scope admin): a durable write, on a blocking thread like every
/// other store write; answers the campaign as it now stands.
async fn set_paused(
    state: AppState,
    headers: &HeaderMap,
    id: String,
    paused: bool,
) -> Result<Json<CampaignBody>, ApiError> {
    let key_id = state
        .authorize_key(bearer(headers), Scope::Admin)
        .inspect_err(|_| Metrics::add(&state.metrics().client_errors, 1))?;
    let slot =
        tokio::task::spawn_blocking(move || state.set_paused_by(&id, paused, &key_id)).await??;
    Ok(Json(CampaignBody::new(&slot)))
}

/// `PATCH /v1/campaigns/{id}/budget`: change a running campaign's budget or daily cap
/// (see [`crate::budget`]).
#[utoipa::path(patch, path = "/v1/campaigns/{id}/budget",
    summary = "change a running campaign's budget and daily cap; audited, refused below what was spent, history never rewritten (scope admin)",
    params(("id" = String, Path, description = "campaign id"),
        ("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters (a UUID, say), stored with the change it makes: a retry with the same key and the same body answers that change (200, the same change; the campaign as it now stands) and changes nothing, on any server of a shared stream and after a restart; the same key with another body is refused (409 idempotency_key_reused). A request that was refused stored nothing: on a single server its retry is decided again; on a shared stream it answers the first refusal, or 409 conflict where that is no longer kept")),
    request_body = BudgetChangeRequest,
    responses((status = 200, description = "recorded and in force", body = BudgetChangeOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, Conflict, TooLarge, Internal, Unavailable, StorageFull))]
pub async fn change_budget(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Admin)?;
    let idempotency_key = idempotency_key(&headers)?;
    let slot = state.campaign(&id)?;
    // A keyed retry answers its first outcome, archived since or not (`budget::apply`).
    if idempotency_key.is_none() {
        crate::state::refuse_archived(&slot, "given a new budget")?;
    }
    let bytes = body(bytes)?;
    let request: BudgetChangeRequest = json_body(&bytes)?;
    let now = state.clock().now_ms();
    let outcome = tokio::task::spawn_blocking(move || {
        let idempotency_key = idempotency_key.as_deref();
        crate::budget::change(&state, &slot, &request, &key_id, now, idempotency_key).map(
            |change| BudgetChangeOutcome {
                change,
                campaign: CampaignBody::new(&slot),
            },
        )
    })
    .await??;
    Ok(Json(outcome))
}

/// `GET /v1/campaigns/{id}/model`: what the campaign's engine has learned, as a hash,
/// with the event sequence it covers. Two servers of one stream with the same
/// `applied_seq` must answer the same `sha256` (docs/scale-out.md).
#[utoipa::path(get, path = "/v1/campaigns/{id}/model", summary = "the learned model's hash at the applied sequence (scope read)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "the model's hash", body = crate::wire::ModelHash),
        Unauthorized, Forbidden, NotFound))]
pub async fn model_hash(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let hash = tokio::task::spawn_blocking(move || {
        // No learner step runs while the engine and the sequence are read together.
        let _learner = state.learner_state();
        let engine = slot.engine();
        let bytes = engine.snapshot();
        use sha2::Digest as _;
        crate::wire::ModelHash {
            campaign_id: slot.id.clone(),
            applied_seq: state.applied_seq(),
            events: engine.events(),
            sha256: crate::stream_log::hex(&sha2::Sha256::digest(&bytes)),
        }
    })
    .await?;
    Ok(Json(hash))
}

/// `GET /v1/campaigns/{id}/events/{event_id}`: the stored event with this id, as
/// first stored (on a stream, after this server has received every record the stream
/// held when asked).
#[utoipa::path(get, path = "/v1/campaigns/{id}/events/{event_id}", summary = "one stored event (scope read)",
    params(("id" = String, Path, description = "campaign id"),
        ("event_id" = String, Path, description = "the event's id")),
    responses((status = 200, description = "the event", body = crate::wire::StoredEventBody),
        Unauthorized, Forbidden, NotFound, Unavailable, Internal))]
pub async fn get_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let log = state.log().clone();
    let lookup = event_id.clone();
    let found = tokio::task::spawn_blocking(move || log.find_event(&slot.id, &lookup)).await??;
    let Some(event) = found else {
        return Err(ApiError::new(
            ErrorCode::EventNotFound,
            format!("campaign {id} holds no event with id {event_id:?}"),
        ));
    };
    let decision_model_seq = crate::decision_id::model_seq_of(&event.decision_id).unwrap_or(0);
    Ok(Json(crate::wire::StoredEventBody {
        seq: event.seq,
        event_id: event.event_id,
        decision_id: event.decision_id,
        kind: event.kind.as_str().to_owned(),
        value: event.value,
        amount_known: event.amount_known,
        decision_model_seq,
    }))
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
    let current = slot.current();
    let total = current.campaign.total_versions();
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
    if !current.campaign.is_allowed(version) {
        return Err(ApiError::not_found(format!(
            "version {version} is removed by the campaign's exclusions {:?}",
            current.campaign.violated_exclusions(version)
        )));
    }
    Ok(Json(VersionBody::new(
        &current.campaign,
        current.number,
        version,
    )))
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
    /// The person or device the impressions are for: an opaque id of 1 to 128 ASCII
    /// letters, digits, `-`, `_`, `.`, `:` or `@` (a hashed cookie, say; the server
    /// stores nothing of it). With a unit, a campaign's holdout is sticky (a salted
    /// hash of the unit decides it) and each decision's draw is seeded by the unit and
    /// the segment's decision table, so a returning unit sees the same version while
    /// the table stands. Without one, each request is held out at random with the
    /// holdout's share.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._:@-]{1,128}$"
    )]
    unit: Option<String>,
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
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, Conflict, TooLarge, Unavailable, StorageFull))]
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Decide)?;
    state.check_stream()?;
    let bytes = body(bytes)?;
    let request: DecisionRequest = json_body(&bytes)?;
    if let Some(unit) = &request.unit {
        tla_core::holdout::check_unit(unit)
            .map_err(|message| ApiError::new(ErrorCode::InvalidUnit, message))?;
    }
    let slot = state.campaign(&id)?;
    let max = state.config().max_decisions_per_request as i64;
    if request.count < 1 || request.count > max {
        return Err(ApiError::bad_request(format!(
            "count is {}; accepted: 1 to {max}",
            request.count
        )));
    }
    let in_force = slot.current();
    if !in_force.segments.contains_key(&request.segment) {
        let names = &in_force.campaign.design().segment_names;
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "segment {} is not a segment of campaign {}; it has {} segments, e.g. {}",
            crate::error::quoted(&request.segment),
            slot.id,
            names.len(),
            shown.join(", ")
        )));
    }
    if slot.is_archived() {
        return Err(ApiError::conflict(format!(
            "campaign {} is archived and serves no decisions; its history and report stay readable",
            slot.id
        )));
    }
    if slot.is_paused() {
        return Err(ApiError::conflict(format!(
            "campaign {} is paused; resume it to get decisions",
            slot.id
        )));
    }
    let at_ms = state.clock().now_ms();
    let mut rng = rand::rng();
    let flight = slot.flight();
    if let (Some(pacing), Some(_)) = (&slot.pacing, state.stream()) {
        // With a stream, money is committed only within a spend lease.
        pacing.use_leases();
    }
    // The log prefix the models had applied (the learner moves it after applying, so
    // the engine read below holds at least this prefix); signed into each id.
    let model_seq = state.applied_seq();
    // The engine and the revision it is at, read together: a revision replaces both
    // under the engine's write lock.
    let (chosen, current, segment, held_out): (Vec<Paced>, _, _, _) = {
        let engine = slot.engine();
        let current = slot.current();
        // The segment's index in the revision the engine is at (a revision made since
        // the check above may have moved it, or removed it if it had no events).
        let Some(&segment) = current.segments.get(&request.segment) else {
            return Err(ApiError::bad_request(format!(
                "segment {} was removed from campaign {} by its revision {}",
                crate::error::quoted(&request.segment),
                slot.id,
                current.number
            )));
        };
        // The unit's arm: sticky by its salted hash; without a unit, per request.
        let share = current.campaign.holdout();
        let held_out = match &request.unit {
            Some(unit) => holdout::held_out(slot.id.as_bytes(), unit.as_bytes(), share),
            None => share > 0.0 && rng.random::<f64>() < share,
        };
        // With a unit, the draw is seeded by the unit and the table in force: the
        // segment's decision table, or for the holdout the even split, which changes
        // only with a revision.
        let table = if held_out {
            u64::from(current.number)
        } else {
            engine.model_version(segment)
        };
        let chosen = (0..request.count)
            .map(|k| {
                let mut unit_rng = request.unit.as_ref().map(|unit| {
                    UnitRng::for_draw(
                        slot.id.as_bytes(),
                        unit.as_bytes(),
                        segment,
                        table,
                        k as u32,
                    )
                });
                let draw: &mut dyn RngCore = match unit_rng.as_mut() {
                    Some(unit_rng) => unit_rng,
                    None => &mut rng,
                };
                match (&slot.pacing, &flight) {
                    (Some(pacing), Some(plan)) => {
                        pacing.decide(plan, &engine, segment, at_ms, held_out, draw)
                    }
                    _ => {
                        let choice = if held_out {
                            engine.decide_held_out(segment, Gate::Open, draw)
                        } else {
                            let d = engine.decide(segment, draw);
                            Choice {
                                version: Some(d.version),
                                propensity: d.propensity,
                                model_version: d.model_version,
                            }
                        };
                        Paced {
                            choice,
                            skip: None,
                            reserve: 0.0,
                            lease: None,
                            lease_skip: false,
                        }
                    }
                }
            })
            .collect();
        (chosen, current, segment, held_out)
    };
    let mut out = Vec::with_capacity(chosen.len());
    let mut rows = Vec::with_capacity(chosen.len());
    let mut reserved = Vec::new();
    let lease_skips = chosen.iter().filter(|paced| paced.lease_skip).count();
    Metrics::add(&state.metrics().lease_skips, lease_skips as u64);
    for paced in chosen {
        let Choice {
            version,
            propensity,
            model_version,
        } = paced.choice;
        let claims = DecisionClaims {
            campaign_id: slot.id.clone(),
            segment: segment as u32,
            version: version.unwrap_or(SKIPPED_VERSION),
            model_version,
            propensity,
            at_ms,
            nonce: rng.random(),
            revision: current.number,
            held_out,
            model_seq,
        };
        let decision_id = state.signer().sign(&claims);
        match (version, paced.skip) {
            (Some(version), _) => {
                if let Some(pacing) = &slot.pacing {
                    pacing.reserve(&decision_id, paced.reserve, at_ms, held_out);
                    if let Some(lease) = paced.lease {
                        pacing.commit_to_lease(&decision_id, lease);
                    }
                    reserved.push(decision_id.clone());
                }
                out.push(DecisionOut::Served(DecisionBody {
                    version: VersionBody::new(&current.campaign, current.number, version),
                    decision_id: decision_id.clone(),
                    propensity,
                    model_version,
                    held_out,
                }));
            }
            (None, reason) => {
                let reason = reason.unwrap_or(SkipReason::Price);
                out.push(DecisionOut::Skipped(SkippedDecision {
                    skip: SkipBody {
                        reason: reason.as_str().to_string(),
                        message: reason.describe().to_string(),
                    },
                    decision_id: decision_id.clone(),
                    propensity,
                    model_version,
                    held_out,
                }));
            }
        }
        rows.push(DecisionRow {
            decision_id,
            campaign_id: slot.id.clone(),
            segment: segment as u32,
            version: version.unwrap_or(0),
            propensity,
            model_version,
            at_ms,
            skip: paced.skip.map(|reason| reason.as_str().to_string()),
            revision: current.number,
            held_out,
        });
    }
    // Queued for the decision log before they are answered; refused, not served,
    // when the log is too far behind or cannot be written.
    let served = rows.len() as u64;
    if let Err(refusal) = state.log_decisions(rows) {
        Metrics::add(&state.metrics().decisions_refused, served);
        if let Some(pacing) = &slot.pacing {
            for decision_id in &reserved {
                pacing.release(decision_id, at_ms);
            }
        }
        return Err(refusal);
    }
    Metrics::add(&state.metrics().decisions, served);
    Ok(Json(DecisionList { decisions: out }))
}

/// `POST /v1/events`.
#[utoipa::path(post, path = "/v1/events",
    summary = "send events; each good one is acknowledged only once committed (scope ingest)",
    request_body = crate::event::EventBatch<'_>,
    responses((status = 200, description = "per-batch outcome; bad items (an event_id stored with another content among them) are listed and nothing is stored for them",
            body = IngestOutcome),
        BadRequest, Unauthorized, Forbidden, BodyTimedOut, TooLarge, Internal, Unavailable, StorageFull))]
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
    // The batch index of each good event, to list a conflict found at the append.
    let mut good_index = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match crate::event::check_raw_event(&state, item.get(), now) {
            Ok(event) => {
                good.push(event);
                good_index.push(index);
            }
            Err(rejection) => rejected.push(rejection.to_batch_item(index)),
        }
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    if !good.is_empty() {
        let log = state.log().clone();
        let started = std::time::Instant::now();
        let (good, appended) = tokio::task::spawn_blocking(move || {
            let outcomes = log.append(&good);
            (good, outcomes)
        })
        .await?;
        state.note_event_append(appended.as_ref().map(|_| ()));
        // Nothing of a failed append is acknowledged or counted (507 on a full disk).
        let outcomes = appended?;
        state
            .metrics()
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for ((outcome, event), index) in outcomes.into_iter().zip(good).zip(good_index) {
            match outcome {
                AppendOutcome::Appended { .. } => accepted += 1,
                AppendOutcome::Duplicate { .. } => duplicates += 1,
                AppendOutcome::Conflict { seq } => {
                    let rejection = crate::event::EventRejection::IdConflict {
                        event_id: event.event_id,
                        seq,
                    };
                    rejected.push(rejection.to_batch_item(index));
                }
            }
        }
        rejected.sort_by_key(|item| item.index);
        state.wake_learner();
    }
    let metrics = state.metrics();
    Metrics::add(&metrics.events_accepted, accepted);
    Metrics::add(&metrics.events_duplicate, duplicates);
    for item in &rejected {
        metrics.note_rejected(item.code);
    }
    Ok(Json(IngestOutcome {
        accepted,
        duplicates,
        rejected,
    }))
}

/// `POST /v1/campaigns/{id}/spend`: spend reports, per segment and period, not tied to
/// a decision (see [`crate::spend`]).
#[utoipa::path(post, path = "/v1/campaigns/{id}/spend",
    summary = "report spend per segment and period, not tied to a decision; each good report is acknowledged only once committed (scope ingest)",
    params(("id" = String, Path, description = "campaign id")),
    request_body = crate::spend::SpendBatch<'_>,
    responses((status = 200, description = "per-batch outcome; bad reports (a report_id stored with another content among them) are listed and nothing is stored for them",
            body = SpendOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, TooLarge, Internal, Unavailable, StorageFull))]
pub async fn report_spend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Ingest)?;
    if state.closing() {
        return Err(ApiError::unavailable(
            "the server is shutting down; retry against another instance or later",
        ));
    }
    let slot = state.campaign(&id)?;
    let bytes = body(bytes)?;
    let items = crate::spend::parse_batch(&bytes, state.config().max_events_per_request)?;
    let now = state.clock().now_ms();
    let mut good = Vec::with_capacity(items.len());
    // The batch index of each good report, to list a conflict found when storing.
    let mut good_index = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match crate::spend::check_raw_report(&slot, item.get(), &key_id, now) {
            Ok(report) => {
                good.push(report);
                good_index.push(index);
            }
            Err(rejection) => rejected.push(rejection.to_batch_item(index)),
        }
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    if !good.is_empty() {
        let state2 = state.clone();
        let (good, stored) = tokio::task::spawn_blocking(move || {
            let outcomes = store_spend_reports(&state2, &slot, &good, &key_id);
            (good, outcomes)
        })
        .await?;
        for ((outcome, report), index) in stored?.into_iter().zip(good).zip(good_index) {
            match outcome {
                Ok(SpendReportOutcome::Appended { .. }) => accepted += 1,
                Ok(SpendReportOutcome::Duplicate { .. }) => duplicates += 1,
                Ok(SpendReportOutcome::Conflict { id }) => {
                    let rejection = crate::spend::SpendRejection::IdConflict {
                        report_id: report.report_id,
                        id,
                    };
                    rejected.push(rejection.to_batch_item(index));
                }
                Err(error) => rejected.push(RejectedSpendReport {
                    index,
                    code: error.code().as_str(),
                    error: error.message().to_owned(),
                }),
            }
        }
        rejected.sort_by_key(|item| item.index);
    }
    let metrics = state.metrics();
    Metrics::add(&metrics.spend_reports_accepted, accepted);
    Metrics::add(&metrics.spend_reports_duplicate, duplicates);
    Metrics::add(&metrics.spend_reports_rejected, rejected.len() as u64);
    Ok(Json(SpendOutcome {
        accepted,
        duplicates,
        rejected,
    }))
}

/// Stores the checked spend reports `good` of campaign `slot` ([`crate::spend::store`]),
/// or with a stream publishes each as a `spend_report` change and answers what every
/// server's learner did with it at its place (a repeat the stream absorbed is a
/// duplicate or a conflict of the stored first copy). Blocking.
fn store_spend_reports(
    state: &AppState,
    slot: &CampaignSlot,
    good: &[tla_store::NewSpendReport],
    key_id: &str,
) -> Result<Vec<Result<SpendReportOutcome, ApiError>>, ApiError> {
    if state.stream().is_none() {
        let stored = crate::spend::store(state, slot, good.to_vec())?;
        return Ok(stored.into_iter().map(Ok).collect());
    }
    let changes = good
        .iter()
        .map(crate::stream_log::Change::spend_report)
        .collect();
    let submitted = crate::change::submit_all(state, &slot.id, changes, key_id, None)?;
    // The stored first copies, read once for all the repeats of the request.
    let mut first_copies = None;
    submitted
        .into_iter()
        .zip(good)
        .map(|(submitted, report)| {
            if submitted.duplicate {
                if first_copies.is_none() {
                    first_copies = Some(crate::spend::stored_by_id(state, &slot.id)?);
                }
                let first = first_copies
                    .as_ref()
                    .and_then(|stored| stored.get(&report.report_id));
                return match (first, submitted.outcome) {
                    (Some(first), _) => Ok(Ok(crate::spend::repeat_outcome(report, first))),
                    // The first copy was refused where it was applied: its refusal.
                    (None, Err(error)) => Ok(Err(error)),
                    (None, Ok(_)) => Err(ApiError::internal(format!(
                        "spend report {} is on the stream (sequence {}) but not stored here",
                        report.report_id, submitted.seq
                    ))),
                };
            }
            Ok(match submitted.outcome {
                Ok(crate::change::Applied::Spend(outcome)) => Ok(outcome),
                Ok(other) => Err(ApiError::internal(format!(
                    "a spend report applied as {other:?}"
                ))),
                Err(error) => Err(error),
            })
        })
        .collect()
}

/// `POST /v1/campaigns/{id}/corrections`: retract a stored event or give it a new
/// value; the campaign's model is rebuilt as if the log had held it so (see
/// [`crate::correction`] and `docs/service.md`).
#[utoipa::path(post, path = "/v1/campaigns/{id}/corrections",
    summary = "retract a stored event, or correct a conversion's or a cost's value; audited, and the model is rebuilt as a replay of the corrected log (scope correct)",
    params(("id" = String, Path, description = "campaign id")),
    request_body = CorrectionRequest,
    responses((status = 200, description = "recorded (or, for a repeated retraction, the earlier one)",
            body = crate::wire::CorrectionOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, Conflict, TooLarge, StorageFull))]
pub async fn correct(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Correct)?;
    let bytes = body(bytes)?;
    let request: CorrectionRequest = json_body(&bytes)?;
    state.campaign(&id)?;
    let outcome = tokio::task::spawn_blocking(move || {
        crate::correction::correct(&state, &id, &request, &key_id)
    })
    .await??;
    Ok(Json(outcome))
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
    let slot = state.campaign(&id)?;
    let now = state.clock().now_ms();
    let report = tokio::task::spawn_blocking(move || {
        crate::report::campaign_report(
            &slot,
            state.store(),
            &tla_core::report::ReportSettings::default(),
            crate::report::LOG_ROWS_CAP,
            now,
        )
    })
    .await??;
    Ok(Json(report))
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /openapi.json lists them")
}

/// Any known path asked with a method it does not answer: the error shape, not an
/// empty body.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::method_not_allowed(format!(
        "this endpoint does not answer {method}; GET /openapi.json lists the methods of each path"
    ))
}

// ---- platform mode: plans and results (`crate::platform`) ----------------------------

/// `POST /v1/campaigns/{id}/plans`: a plan for a period (see [`crate::platform`]).
#[utoipa::path(post, path = "/v1/campaigns/{id}/plans",
    summary = "draw and store a plan for a period: per ad set (segment) its budget and the ads to run with their shares, by batch Thompson sampling priced by the money rule; see docs/service.md, Platform mode (scope admin)",
    params(("id" = String, Path, description = "campaign id")),
    request_body = crate::wire::PlanRequestBody,
    responses((status = 200, description = "the plan as stored", body = crate::wire::PlanBody),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, Conflict, TooLarge, Internal, Unavailable, StorageFull))]
pub async fn make_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Admin)?;
    let slot = state.campaign(&id)?;
    let bytes = body(bytes)?;
    let request: crate::wire::PlanRequestBody = json_body(&bytes)?;
    let plan = tokio::task::spawn_blocking(move || {
        crate::platform::make(&state, &slot, &request, &key_id)
    })
    .await??;
    Ok(Json(plan))
}

/// `GET /v1/campaigns/{id}/plans`.
#[utoipa::path(get, path = "/v1/campaigns/{id}/plans", summary = "every plan of the campaign, oldest first (scope read)",
    params(("id" = String, Path, description = "campaign id")),
    responses((status = 200, description = "plans", body = crate::wire::PlanList),
        Unauthorized, Forbidden, NotFound, Internal))]
pub async fn list_plans(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let slot = state.campaign(&id)?;
    let plans =
        tokio::task::spawn_blocking(move || crate::platform::list(state.store(), &slot)).await??;
    Ok(Json(crate::wire::PlanList { plans }))
}

/// What `GET /v1/campaigns/{id}/plans/{plan}` takes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// `json` (default) or `csv` (a bulk-upload sheet: `text/csv`).
    format: Option<String>,
    /// Only the ads added, removed or changed (share or ad set budget) since the plan
    /// before it (default false).
    changed: Option<bool>,
}

/// `GET /v1/campaigns/{id}/plans/{plan}`: a plan's rows for upload.
#[utoipa::path(get, path = "/v1/campaigns/{id}/plans/{plan}",
    summary = "a plan's rows for a bulk-upload sheet: ad name, ad set and its budget, share, rendered texts and asset references, period; JSON or CSV; all rows or only what changed since the plan before (scope read)",
    params(("id" = String, Path, description = "campaign id"),
        ("plan" = u64, Path, description = "plan number, from 1"), PlanQuery),
    responses((status = 200, description = "the rows", content(
            (crate::wire::PlanExport = "application/json"), (String = "text/csv"))),
        BadRequest, Unauthorized, Forbidden, NotFound, Internal))]
pub async fn get_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, plan)): Path<(String, String)>,
    query: Result<axum::extract::Query<PlanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let axum::extract::Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "{}; accepted: format=json|csv, changed=true|false",
            rejection.body_text()
        ))
    })?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {}; accepted: json, csv",
                crate::error::quoted(other)
            )));
        }
    };
    let slot = state.campaign(&id)?;
    let plan_id: u64 = plan.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::PlanNotFound,
            format!(
                "plan {}: plans are numbered from 1",
                crate::error::quoted(&plan)
            ),
        )
    })?;
    let changed = query.changed.unwrap_or(false);
    let export = {
        let slot = slot.clone();
        tokio::task::spawn_blocking(move || {
            crate::platform::export(state.store(), &slot, plan_id, changed)
        })
        .await??
    };
    if csv {
        let text = crate::platform::csv(&slot, &export)?;
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
    } else {
        Ok(Json(export).into_response())
    }
}

/// What `POST /v1/campaigns/{id}/results` takes besides the rows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// Only check the rows; store nothing (default false).
    dry_run: Option<bool>,
}

/// `POST /v1/campaigns/{id}/results`: a platform's results per ad, ad set and period.
#[utoipa::path(post, path = "/v1/campaigns/{id}/results",
    summary = "import a platform's results per ad, ad set and period; a re-imported period replaces its row (never counted twice); a batch with any refused row stores nothing (scope ingest)",
    params(("id" = String, Path, description = "campaign id"), ResultsQuery),
    request_body = crate::wire::ResultBatch,
    responses((status = 200, description = "stored and learned, or every refused row listed with nothing stored", body = crate::wire::ResultOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTimedOut, TooLarge, Internal, Unavailable, StorageFull))]
pub async fn import_results(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let key_id = authorize_key(&state, &headers, Scope::Ingest)?;
    let axum::extract::Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "{}; accepted: dry_run=true|false",
            rejection.body_text()
        ))
    })?;
    if state.closing() {
        return Err(ApiError::unavailable(
            "the server is shutting down; retry against another instance or later",
        ));
    }
    let slot = state.campaign(&id)?;
    let bytes = body(bytes)?;
    let batch: crate::wire::ResultBatch = json_body(&bytes)?;
    let limit = state.config().max_events_per_request;
    if batch.rows.len() > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} rows in one request; accepted: at most {limit} (send the rest in further requests)",
                batch.rows.len()
            ),
        ));
    }
    let dry_run = query.dry_run.unwrap_or(false);
    let outcome = tokio::task::spawn_blocking(move || {
        crate::platform::import(&state, &slot, &batch, &key_id, dry_run)
    })
    .await??;
    Ok(Json(outcome))
}
