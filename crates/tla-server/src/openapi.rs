//! The OpenAPI 3.1 document of API v1, served at `/openapi.json`.

use crate::state::ServerConfig;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The schemas of the report (`GET /v1/campaigns/{id}/report`); fields as in
/// `tla_core::report` and `docs/reports.md`.
fn report_schemas() -> Vec<(&'static str, Value)> {
    let number = json!({"type": "number"});
    let nullable_number = json!({"type": ["number", "null"]});
    let nullable_interval =
        json!({"oneOf": [{"$ref": "#/components/schemas/Interval"}, {"type": "null"}]});
    let counts = json!({
        "impressions": {"type": "integer", "description": "impressions served"},
        "clicks": {"type": "integer"},
        "conversions": {"type": "integer", "description": "donors"},
        "value": {"type": "number", "description": "donations, summed"},
        "spend": {"type": "number"},
        "rate": {"$ref": "#/components/schemas/Interval", "description": "posterior of the conversion (click) rate"},
        "value_per_impression": nullable_interval.clone(),
    });
    let with_counts = |extra: Value| {
        let mut map = counts.as_object().cloned().unwrap_or_default();
        if let Some(extra) = extra.as_object() {
            map.extend(extra.clone());
        }
        Value::Object(map)
    };
    let version_row = json!({"type": "object", "properties": with_counts(json!({
        "segment": {"type": "string"}, "version": {"type": "integer"}, "text": {"type": "string"},
        "asks_to_act": {"type": "boolean"},
        "p_best": {"type": ["number", "null"], "description": "P(best) among the segment's leaders (null outside them)"},
        "expected_loss": nullable_number.clone(),
    }))});
    let comparison = json!({"type": "object", "properties": {
        "estimate": {"oneOf": [{"$ref": "#/components/schemas/Estimate"}, {"type": "null"}], "description": "SNIPS estimate of the counterfactual's value per impression"},
        "lift": {"oneOf": [{"$ref": "#/components/schemas/MeanEstimate"}, {"type": "null"}], "description": "realized minus estimate"},
        "error": {"type": ["string", "null"]},
    }});
    vec![
        (
            "Interval",
            json!({"type": "object", "description": "posterior mean and 95% equal-tailed credible interval of the Monte Carlo draws", "properties": {"mean": number, "lower": number, "upper": number}}),
        ),
        (
            "MeanEstimate",
            json!({"type": "object", "description": "a value per impression with a 95% normal interval", "properties": {"value": number, "std_error": number, "lower": number, "upper": number}}),
        ),
        (
            "Estimate",
            json!({"type": "object", "properties": {"estimator": {"enum": ["ips", "snips", "doubly_robust"]}, "value": number, "std_error": number, "lower": number, "upper": number, "ess": {"type": "number", "description": "effective sample size"}, "rows": {"type": "integer"}}}),
        ),
        (
            "ReportSummary",
            json!({"type": "object", "properties": {
                "versions_defined": {"type": "integer"}, "acting_versions_defined": {"type": "integer"}, "acting_share_defined": number,
                "versions_served": {"type": "integer", "description": "distinct versions with at least one impression"},
                "acting_share_served": nullable_number, "acting_share_spend": nullable_number,
                "impressions": {"type": "integer"}, "clicks": {"type": "integer"}, "spend": number,
                "donors": {"type": "integer"}, "donations": number,
                "cost_per_donor": nullable_number, "value_per_dollar": nullable_number,
            }}),
        ),
        (
            "OptionRow",
            json!({"type": "object", "properties": with_counts(json!({
                "option": {"type": "string"}, "asks_to_act": {"type": "boolean"},
                "p_best": {"type": "number", "description": "probability of being best in its component"},
                "expected_loss": number,
            }))}),
        ),
        ("VersionRow", version_row),
        (
            "Lift",
            json!({"type": "object", "properties": {
                "rows": {"type": "integer"}, "rows_cap": {"type": ["integer", "null"]}, "capped": {"type": "boolean"},
                "realized": {"$ref": "#/components/schemas/MeanEstimate"},
                "even_split": comparison.clone(), "best_single_version": comparison,
                "best_versions": {"type": "array", "items": {"type": "integer"}},
            }}),
        ),
        (
            "Report",
            json!({"type": "object", "required": ["campaign", "name", "objective", "events_learned", "draws", "credible_level", "summary", "components", "segments", "versions", "lift"], "properties": {
                "campaign": {"type": ["string", "null"], "description": "campaign id"}, "name": {"type": "string"}, "objective": {"enum": ["value", "conversions", "clicks"]},
                "events_learned": {"type": "integer"},
                "draws": {"type": "integer", "description": "Monte Carlo draws behind every interval, P(best) and expected loss"},
                "credible_level": number,
                "summary": {"$ref": "#/components/schemas/ReportSummary"},
                "components": {"type": "array", "items": {"type": "object", "properties": {"component": {"type": "string"}, "options": {"type": "array", "items": {"$ref": "#/components/schemas/OptionRow"}}}}},
                "segments": {"type": "array", "items": {"type": "object", "properties": with_counts(json!({"segment": {"type": "string"}, "weight": number, "leaders": {"type": "array", "items": {"$ref": "#/components/schemas/VersionRow"}}}))}},
                "versions": {"type": "object", "properties": {"served_pairs": {"type": "integer"}, "cap": {"type": "integer"}, "rows": {"type": "array", "items": {"$ref": "#/components/schemas/VersionRow"}}}},
                "lift": {"oneOf": [{"$ref": "#/components/schemas/Lift"}, {"type": "null"}]},
            }}),
        ),
    ]
}

/// The document, with the configured limits written into it.
pub fn document(config: &ServerConfig) -> Value {
    let mut doc = document_paths(config);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in report_schemas() {
            schemas.insert(name.into(), schema);
        }
    }
    doc
}

fn document_paths(config: &ServerConfig) -> Value {
    let errors = |codes: &[&str]| -> Value {
        let mut map = serde_json::Map::new();
        for code in codes {
            let text = match *code {
                "400" => {
                    "malformed request or invalid field; the message names it and says what is accepted"
                }
                "401" => "missing, malformed, unknown or revoked API key",
                "403" => "the key lacks the scope this endpoint needs",
                "404" => "unknown campaign or version",
                "409" => "conflicts with the campaign's state (paused)",
                "413" => "body larger than accepted",
                "415" => "content type not accepted",
                "503" => "shutting down",
                _ => "error",
            };
            map.insert((*code).into(), error_response(text));
        }
        Value::Object(map)
    };
    let with = |mut responses: Value, extra: Value| {
        if let (Some(r), Some(e)) = (responses.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                r.insert(k.clone(), v.clone());
            }
        }
        responses
    };
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "TLA API",
            "version": "1",
            "description": format!(
                "Test, Learn, Adapt: decisions with exact propensities, durable idempotent events. Every endpoint but /healthz needs `Authorization: Bearer tla_<id>_<secret>` with the scope named in its description (admin holds every scope). Limits: body {} bytes, {} decisions per request, {} events per batch.",
                config.max_body_bytes, config.max_decisions_per_request, config.max_events_per_request
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Campaign": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "status": {"enum": ["active", "paused"]},
                    "created_at": {"type": "integer", "description": "ms since the Unix epoch"},
                    "objective": {"enum": ["value", "conversions", "clicks"]},
                    "versions": {"type": "integer", "description": "allowed versions"},
                    "total_versions": {"type": "integer"}, "versions_asking_to_act": {"type": "integer"},
                    "components": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "options": {"type": "integer"}}}},
                    "segments": {"type": "array", "items": {"type": "string"}},
                    "events_learned": {"type": "integer"}, "attribution_window_hours": {"type": "integer"}}},
                "Version": {"type": "object", "properties": {
                    "version": {"type": "integer"}, "options": {"type": "object", "additionalProperties": {"type": "string"}},
                    "text": {"type": "string"}, "asks_action": {"type": "boolean"}, "ask": {"type": ["number", "null"]}}},
                "Decision": {"allOf": [{"$ref": "#/components/schemas/Version"}, {"type": "object", "properties": {
                    "decision_id": {"type": "string", "description": "signed; carries what the event join needs"},
                    "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "exact probability the policy chose this version for this segment"},
                    "model_version": {"type": "integer"}}}]},
                "Event": {"type": "object", "additionalProperties": false, "required": ["event_id", "decision_id", "type"], "properties": {
                    "event_id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "client-supplied; a repeated id is stored once and counted as a duplicate"},
                    "decision_id": {"type": "string"},
                    "type": {"enum": ["impression", "click", "conversion", "cost"]},
                    "value": {"type": "number", "minimum": 0, "description": "donation amount, conversions only"},
                    "amount": {"type": "number", "minimum": 0, "description": "spend, cost events only (required there)"},
                    "at": {"type": "integer", "description": "ms since the Unix epoch; default now. Clicks and conversions must fall within the campaign's attribution window after the decision"}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"security": [], "summary": "liveness", "responses": {"200": ok("ok", json!({"type": "object"}))}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (scope read)", "responses": with(json!({"200": {"description": "Prometheus text", "content": {"text/plain": {}}}}), errors(&["401", "403"]))}},
            "/openapi.json": {"get": {"summary": "this document (scope read)", "responses": with(json!({"200": ok("the document", json!({"type": "object"}))}), errors(&["401", "403"]))}},
            "/v1/campaigns": {
                "post": {"summary": "create a campaign from its spec (scope admin)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "description": "the campaign spec, docs/spec.md"}}, "application/toml": {}}},
                    "responses": with(json!({"201": ok("created", json!({"$ref": "#/components/schemas/Campaign"}))}), errors(&["400", "401", "403", "413", "415"]))},
                "get": {"summary": "list campaigns (scope read)", "responses": with(json!({"200": ok("campaigns", json!({"type": "object", "properties": {"campaigns": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}}}}))}), errors(&["401", "403"]))},
            },
            "/v1/campaigns/{id}": {"get": {"summary": "one campaign (scope read)", "parameters": [id], "responses": with(json!({"200": ok("the campaign", json!({"$ref": "#/components/schemas/Campaign"}))}), errors(&["401", "403", "404"]))}},
            "/v1/campaigns/{id}/pause": {"post": {"summary": "stop serving decisions (scope admin)", "parameters": [id], "responses": with(json!({"200": ok("the campaign", json!({"$ref": "#/components/schemas/Campaign"}))}), errors(&["401", "403", "404"]))}},
            "/v1/campaigns/{id}/resume": {"post": {"summary": "serve decisions again (scope admin)", "parameters": [id], "responses": with(json!({"200": ok("the campaign", json!({"$ref": "#/components/schemas/Campaign"}))}), errors(&["401", "403", "404"]))}},
            "/v1/campaigns/{id}/versions/{index}": {"get": {"summary": "one version (scope read)", "parameters": [id, {"name": "index", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}], "responses": with(json!({"200": ok("the version", json!({"$ref": "#/components/schemas/Version"}))}), errors(&["400", "401", "403", "404"]))}},
            "/v1/campaigns/{id}/decisions": {"post": {"summary": "choose versions for impressions of a segment (scope decide)", "parameters": [id],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["segment"], "properties": {"segment": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "maximum": config.max_decisions_per_request, "default": 1}}}}}},
                "responses": with(json!({"200": ok("decisions", json!({"type": "object", "properties": {"decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}}}))}), errors(&["400", "401", "403", "404", "409", "413"]))}},
            "/v1/campaigns/{id}/report": {"get": {"summary": "the campaign report: summary, option leaderboards, segment leaders, versions served, lift from the decision log; see docs/reports.md (scope read)", "parameters": [id], "responses": with(json!({"200": ok("report", json!({"$ref": "#/components/schemas/Report"}))}), errors(&["401", "403", "404"]))}},
            "/v1/events": {"post": {"summary": "send events; each good one is acknowledged only once committed (scope ingest)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["events"], "properties": {"events": {"type": "array", "maxItems": config.max_events_per_request, "items": {"$ref": "#/components/schemas/Event"}}}}}}},
                "responses": with(json!({"200": ok("per-batch outcome; bad items are listed and nothing is stored for them", json!({"type": "object", "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "rejected": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": "integer"}, "error": {"type": "string"}}}}}}))}), errors(&["400", "401", "403", "413", "503"]))}},
        },
    })
}
