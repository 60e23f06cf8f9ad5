//! The OpenAPI 3.1 document of API v1, served at `/openapi.json`.

use crate::state::ServerConfig;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The document, with the configured limits written into it.
pub fn document(config: &ServerConfig) -> Value {
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
            "/v1/campaigns/{id}/report": {"get": {"summary": "posterior summaries per option and per segment (scope read)", "parameters": [id], "responses": with(json!({"200": ok("report", json!({"type": "object"}))}), errors(&["401", "403", "404"]))}},
            "/v1/events": {"post": {"summary": "send events; each good one is acknowledged only once committed (scope ingest)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["events"], "properties": {"events": {"type": "array", "maxItems": config.max_events_per_request, "items": {"$ref": "#/components/schemas/Event"}}}}}}},
                "responses": with(json!({"200": ok("per-batch outcome; bad items are listed and nothing is stored for them", json!({"type": "object", "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "rejected": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": "integer"}, "error": {"type": "string"}}}}}}))}), errors(&["400", "401", "403", "413", "503"]))}},
        },
    })
}
