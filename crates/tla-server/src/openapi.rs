//! The OpenAPI 3.1 document of API v1, served at `/openapi.json`.
//!
//! Derived, not written: the paths come from the `#[utoipa::path]` attribute of each
//! handler in [`crate::routes`], the schemas from the types the handlers serialize
//! ([`crate::wire`], and the report types of tla-core through its `openapi` feature).
//! Only the configured limits are written in at serve time ([`document`]). The test
//! support of this crate checks every response of the API tests against this document.

use crate::routes;
use crate::state::ServerConfig;
use crate::wire::ErrorBody;
use serde_json::Value;
use tla_store::EventKind;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

/// Malformed request or invalid field; the message names it and says what is accepted.
#[derive(Debug, IntoResponses)]
#[response(status = 400)]
pub struct BadRequest(pub ErrorBody);

/// Missing, malformed, unknown or revoked API key.
#[derive(Debug, IntoResponses)]
#[response(status = 401)]
pub struct Unauthorized(pub ErrorBody);

/// The key lacks the scope this endpoint needs.
#[derive(Debug, IntoResponses)]
#[response(status = 403)]
pub struct Forbidden(pub ErrorBody);

/// Unknown campaign or version.
#[derive(Debug, IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);

/// Conflicts with the campaign's state (paused or archived; no flight, or a budget below
/// what was spent; a revision the running campaign cannot take), with a stored event
/// (retracted), or with an earlier request (an `Idempotency-Key` used with another
/// spec).
#[derive(Debug, IntoResponses)]
#[response(status = 409)]
pub struct Conflict(pub ErrorBody);

/// Body larger than accepted.
#[derive(Debug, IntoResponses)]
#[response(status = 413)]
pub struct TooLarge(pub ErrorBody);

/// The body did not arrive within the body read timeout.
#[derive(Debug, IntoResponses)]
#[response(status = 408)]
pub struct BodyTimedOut(pub ErrorBody);

/// Content type not accepted.
#[derive(Debug, IntoResponses)]
#[response(status = 415)]
pub struct UnsupportedMedia(pub ErrorBody);

/// Shutting down (`unavailable`), or, for a decision, the decision log is behind or
/// cannot be written (`decision_log_unavailable`), or the shared event log (a stream)
/// cannot be reached (`stream_unavailable`); retry shortly.
#[derive(Debug, IntoResponses)]
#[response(status = 503)]
pub struct Unavailable(pub ErrorBody);

/// The server failed (`internal`), for example a commit the disk refused other than
/// for lack of space; the server log has the cause. Nothing of the request was
/// acknowledged; a retry with the same event ids is safe.
#[derive(Debug, IntoResponses)]
#[response(status = 500)]
pub struct Internal(pub ErrorBody);

/// The server's disk is full (`storage_full`): nothing of the request was stored or
/// served; retry once space is freed.
#[derive(Debug, IntoResponses)]
#[response(status = 507)]
pub struct StorageFull(pub ErrorBody);

/// The schema of an event's `type`: the names [`tla_store::EventKind::from_name`]
/// accepts.
pub fn event_type_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventKind::ALL.map(EventKind::as_str)))
        .build()
}

/// Adds the bearer scheme every endpoint but `/healthz` requires.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document without the configured limits.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "TLA API", version = "1"),
    paths(
        routes::healthz,
        routes::metrics,
        routes::openapi,
        routes::create_campaign,
        routes::list_campaigns,
        routes::get_campaign,
        routes::pause,
        routes::resume,
        routes::archive,
        routes::revise,
        routes::list_revisions,
        routes::get_version,
        routes::model_hash,
        routes::get_event,
        routes::decide,
        routes::report,
        routes::ingest,
        routes::correct,
        routes::report_spend,
        routes::change_budget,
        routes::make_plan,
        routes::list_plans,
        routes::get_plan,
        routes::import_results,
    ),
    // Schemas named only by the error responses (IntoResponses types) are not
    // collected from the paths.
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The document, with the limits written into it from their one definition: the
/// configured body size and per-request maxima in the description, `count`'s maximum in
/// the decision request, `events`' `maxItems` in the event batch; the lengths of
/// `event_id` and `reason` and the cost amount limit from their constants.
pub fn document(config: &ServerConfig) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let description = format!(
        "Test, Learn, Adapt: decisions with exact propensities, durable idempotent events. Every endpoint but /healthz needs `Authorization: Bearer tla_<id>_<secret>` with the scope named in its summary (admin holds every scope). Limits: body {} bytes, {} decisions per request, {} events per batch.",
        config.max_body_bytes, config.max_decisions_per_request, config.max_events_per_request
    );
    let limits = [
        ("/info/description", Value::from(description)),
        (
            "/components/schemas/DecisionRequest/properties/count/maximum",
            Value::from(config.max_decisions_per_request),
        ),
        (
            "/components/schemas/EventBatch/properties/events/maxItems",
            Value::from(config.max_events_per_request),
        ),
        (
            "/components/schemas/Event/properties/event_id/maxLength",
            Value::from(crate::event::MAX_EVENT_ID_LEN),
        ),
        (
            "/components/schemas/Event/properties/amount/maximum",
            Value::from(tla_core::spec::AMOUNT_LIMIT),
        ),
        (
            "/components/schemas/CorrectionRequest/properties/event_id/maxLength",
            Value::from(crate::event::MAX_EVENT_ID_LEN),
        ),
        (
            "/components/schemas/BudgetChangeRequest/properties/reason/maxLength",
            Value::from(crate::budget::MAX_REASON_LEN),
        ),
        (
            "/components/schemas/SpendBatch/properties/reports/maxItems",
            Value::from(config.max_events_per_request),
        ),
        (
            "/components/schemas/SpendReport/properties/report_id/maxLength",
            Value::from(crate::spend::MAX_REPORT_ID_LEN),
        ),
        (
            "/components/schemas/SpendReport/properties/amount/maximum",
            Value::from(tla_core::spec::AMOUNT_LIMIT),
        ),
        (
            "/components/schemas/PlanRequestBody/properties/ads_per_segment/maximum",
            Value::from(crate::platform::MAX_ADS_PER_SEGMENT),
        ),
        (
            "/components/schemas/ResultBatch/properties/rows/maxItems",
            Value::from(config.max_events_per_request),
        ),
        (
            "/components/schemas/CorrectionRequest/properties/reason/maxLength",
            Value::from(crate::correction::MAX_REASON_LEN),
        ),
    ];
    for (pointer, value) in limits {
        set(&mut doc, pointer, value);
    }
    // `security(())` on the handler writes `[{}]` (a key is optional); `/healthz`
    // takes none at all.
    set(
        &mut doc,
        "/paths/~1healthz/get/security",
        Value::Array(Vec::new()),
    );
    doc
}

/// Sets the member at `pointer` (its parent must exist).
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(object) = doc.pointer_mut(parent).and_then(Value::as_object_mut) {
        object.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_limits_are_written_in() {
        let config = ServerConfig {
            max_body_bytes: 12_345,
            max_decisions_per_request: 77,
            max_events_per_request: 99,
            ..ServerConfig::default()
        };
        let doc = document(&config);
        let description = doc["info"]["description"].as_str().unwrap();
        assert!(description.contains("body 12345 bytes"), "{description}");
        assert!(description.contains("77 decisions"), "{description}");
        assert!(description.contains("99 events"), "{description}");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["DecisionRequest"]["properties"]["count"]["maximum"],
            77
        );
        assert_eq!(
            schemas["EventBatch"]["properties"]["events"]["maxItems"],
            99
        );
        // The limits that are constants reach their schemas (a renamed schema or
        // property would leave them out silently otherwise).
        for (schema, property, keyword, value) in [
            (
                "Event",
                "event_id",
                "maxLength",
                Value::from(crate::event::MAX_EVENT_ID_LEN),
            ),
            (
                "Event",
                "amount",
                "maximum",
                Value::from(tla_core::spec::AMOUNT_LIMIT),
            ),
            (
                "CorrectionRequest",
                "event_id",
                "maxLength",
                Value::from(crate::event::MAX_EVENT_ID_LEN),
            ),
            (
                "CorrectionRequest",
                "reason",
                "maxLength",
                Value::from(crate::correction::MAX_REASON_LEN),
            ),
            ("SpendBatch", "reports", "maxItems", Value::from(99)),
            (
                "SpendReport",
                "report_id",
                "maxLength",
                Value::from(crate::spend::MAX_REPORT_ID_LEN),
            ),
            (
                "SpendReport",
                "amount",
                "maximum",
                Value::from(tla_core::spec::AMOUNT_LIMIT),
            ),
        ] {
            assert_eq!(
                schemas[schema]["properties"][property][keyword], value,
                "{schema}.{property}"
            );
        }
        assert_eq!(
            doc["paths"]["/healthz"]["get"]["security"],
            serde_json::json!([])
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document(&ServerConfig::default());
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for path in [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/campaigns",
            "/v1/campaigns/{id}",
            "/v1/campaigns/{id}/pause",
            "/v1/campaigns/{id}/resume",
            "/v1/campaigns/{id}/archive",
            "/v1/campaigns/{id}/spec",
            "/v1/campaigns/{id}/revisions",
            "/v1/campaigns/{id}/versions/{index}",
            "/v1/campaigns/{id}/decisions",
            "/v1/campaigns/{id}/report",
            "/v1/events",
            "/v1/campaigns/{id}/corrections",
            "/v1/campaigns/{id}/spend",
            "/v1/campaigns/{id}/budget",
            "/v1/campaigns/{id}/plans",
            "/v1/campaigns/{id}/plans/{plan}",
            "/v1/campaigns/{id}/results",
            "/v1/campaigns/{id}/model",
            "/v1/campaigns/{id}/events/{event_id}",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        assert_eq!(paths.len(), 22, "{paths:?}");
    }
}
