//! API v1 through the router, without a socket (`tower::ServiceExt::oneshot`), over an
//! in-memory store. Every response is checked against the OpenAPI document
//! (`support::openapi_check`): its path, status and content type must be documented and
//! a JSON body must match the schema, every member included.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::OnceLock;
use support::faults::{Fault, Faults, FaultyDecisionLog, FaultyEventLog};
use support::openapi_check::OpenApiCheck;
use tla_server::auth::new_key;
use tla_server::error::{ApiError, ErrorCode};
use tla_server::event::check_raw_event;
use tla_server::{AppState, ManualClock, ServerConfig, app, learner};
use tla_store::{DecisionRow, KeyRow, Store, StoreError};
use tower::ServiceExt;

/// The document the API serves with the default configuration (the one [`api`] uses).
fn openapi() -> &'static OpenApiCheck {
    static CHECK: OnceLock<OpenApiCheck> = OnceLock::new();
    CHECK.get_or_init(|| OpenApiCheck::new(tla_server::openapi::document(&ServerConfig::default())))
}

const SPEC: &str = include_str!("../../../examples/small.toml");

/// Where the tests' manual clocks start, ms since the Unix epoch.
const START_MS: i64 = 1_790_000_000_000;

/// A state over `store` and its own event log, on `clock`.
fn open(store: Store, clock: Arc<ManualClock>, config: ServerConfig) -> AppState {
    let log = Arc::new(store.event_log());
    AppState::open(store, log, clock, b"test secret", config).unwrap()
}

struct Api {
    state: AppState,
    admin: String,
    decide: String,
    ingest: String,
    read: String,
}

fn key(store: &Store, seed: u8, scopes: &[&str]) -> String {
    let key = new_key([seed; 22]);
    store
        .insert_key(&KeyRow {
            id: key.id.clone(),
            hash: key.hash,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at_ms: 0,
            revoked: false,
            label: format!("test {}", scopes.join(",")),
        })
        .unwrap();
    key.token
}

fn api() -> Api {
    api_over(Store::open_in_memory().unwrap(), |store| {
        open(
            store,
            Arc::new(ManualClock::new(START_MS)),
            ServerConfig::default(),
        )
    })
}

/// An API with a key of each scope, over the state `open` makes of `store`.
fn api_over(store: Store, open: impl FnOnce(Store) -> AppState) -> Api {
    let admin = key(&store, 1, &["admin"]);
    let decide = key(&store, 2, &["decide"]);
    let ingest = key(&store, 3, &["ingest"]);
    let read = key(&store, 4, &["read"]);
    let state = open(store);
    Api {
        state,
        admin,
        decide,
        ingest,
        read,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if let Err(errors) = openapi().response(
            method,
            uri,
            status.as_u16(),
            content_type.as_deref(),
            &bytes,
        ) {
            panic!(
                "the response disagrees with the OpenAPI document:\n{}",
                errors.join("\n")
            );
        }
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn post(&self, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            uri,
            Some(token),
            "application/json",
            body.to_string(),
        )
        .await
    }

    async fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", uri, Some(token), "application/json", String::new())
            .await
    }

    /// The `decision_id` of one decision of campaign `id` (segment `past-donors`).
    async fn one_decision(&self, id: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &self.decide,
                json!({"segment": "past-donors"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["decisions"][0]["decision_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn campaign(&self) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/campaigns",
                Some(&self.admin),
                "application/toml",
                SPEC.into(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, fragment: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(
        message.contains(fragment),
        "{message:?} should contain {fragment:?}"
    );
}

#[tokio::test]
async fn campaign_lifecycle_decisions_and_events() {
    let api = api();
    let id = api.campaign().await;
    let (status, list) = api.get("/v1/campaigns", &api.read).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["campaigns"][0]["id"], id.as_str());
    assert_eq!(list["campaigns"][0]["versions"], 16);

    let (status, version) = api
        .get(&format!("/v1/campaigns/{id}/versions/2"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["asks_action"], false);

    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "past-donors", "count": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let decisions = body["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 5);
    for d in decisions {
        let p = d["propensity"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0);
        assert!(d["decision_id"].as_str().unwrap().len() > 40);
        assert!(d["text"].is_string() && d["options"].is_object());
    }
    let decision_id = decisions[0]["decision_id"].as_str().unwrap();
    // A decision made eight days ago, signed by this server.
    let mut old = api.state.signer().verify(decision_id).unwrap();
    old.at_ms -= 8 * 24 * 3_600_000;
    let old_id = api.state.signer().sign(&old);
    let events = json!({"events": [
        {"event_id": "e1", "decision_id": decision_id, "type": "impression"},
        {"event_id": "e2", "decision_id": decision_id, "type": "conversion", "value": 25.0},
        {"event_id": "e1", "decision_id": decision_id, "type": "impression"},
        {"event_id": "e3", "decision_id": decision_id, "type": "conversion", "value": -3},
        {"event_id": "e4", "decision_id": "forged", "type": "click"},
        {"event_id": "e5", "decision_id": decision_id, "type": "refund"},
        {"event_id": "e6", "decision_id": decision_id, "type": "cost"},
        {"event_id": "e7", "decision_id": decision_id, "type": "conversion", "value": 5, "at": 4102444800000i64},
        {"event_id": "e8", "decision_id": decision_id, "type": "click", "bogus": 1},
        {"event_id": "e9", "decision_id": old_id, "type": "conversion", "value": 5},
    ]});
    let (status, body) = api.post("/v1/events", &api.ingest, events.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    let rejected: Vec<(u64, String)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7, 8, 9]
    );
    let codes: Vec<&str> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_amount",
            "invalid_decision_id",
            "invalid_event_type",
            "missing_amount",
            "future_event",
            "invalid_event",
            "outside_attribution_window"
        ]
    );
    assert!(rejected[0].1.contains("value is -3"), "{rejected:?}");
    assert!(
        rejected[1]
            .1
            .contains("not a decision id issued by this server")
    );
    assert!(
        rejected[2]
            .1
            .contains("accepted: impression, click, conversion, cost")
    );
    assert!(rejected[3].1.contains("needs `amount`"));
    assert!(
        rejected[4].1.contains("minutes in the future"),
        "{rejected:?}"
    );
    assert!(rejected[5].1.contains("bogus"));
    assert!(
        rejected[6].1.contains("attribution window is 168 hours"),
        "{rejected:?}"
    );
    // The same batch again: everything stored is now a duplicate.
    let (_, again) = api.post("/v1/events", &api.ingest, events).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    // The learner applies the log in order.
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, true))
        .await
        .unwrap();
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["events_learned"], 2);
    assert_eq!(report["draws"], 1000);
    assert!(report["summary"]["versions_defined"].as_u64().unwrap() > 0);
    assert!(report["components"][0]["options"][0]["p_best"].is_number());
    assert_eq!(report["lift"]["rows"], 5, "{report}");
    assert_eq!(report["lift"]["rows_cap"], 2_000_000);
    let (_, metrics) = api
        .call("GET", "/metrics", Some(&api.read), "", String::new())
        .await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("tla_events_accepted_total 2"), "{metrics}");
    assert!(
        metrics.contains("tla_events_duplicate_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("tla_decisions_total 5"), "{metrics}");

    // Pause stops decisions; resume brings them back.
    let (status, _) = api
        .post(&format!("/v1/campaigns/{id}/pause"), &api.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "past-donors"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "paused");
    let (status, _) = api
        .post(&format!("/v1/campaigns/{id}/resume"), &api.admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn keys_and_scopes_are_enforced_everywhere_but_healthz() {
    let api = api();
    let id = api.campaign().await;
    let (status, _) = api.call("GET", "/healthz", None, "", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    for uri in [
        "/metrics",
        "/openapi.json",
        "/v1/campaigns",
        &format!("/v1/campaigns/{id}"),
        &format!("/v1/campaigns/{id}/report"),
    ] {
        let (status, body) = api.call("GET", uri, None, "", String::new()).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "missing API key");
        let (status, body) = api.get(uri, &api.decide).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "needs `read`");
        let (status, _) = api.get(uri, &api.admin).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.ingest,
            json!({"segment": "past-donors"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "needs `decide`");
    let (status, body) = api
        .post("/v1/events", &api.decide, json!({"events": []}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "needs `ingest`");
    let (status, body) = api
        .call(
            "POST",
            "/v1/campaigns",
            Some(&api.read),
            "application/toml",
            SPEC.into(),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "needs `admin`");
    let (status, body) = api
        .get(
            "/v1/campaigns",
            "tla_0123456789ab_0123456789abcdef0123456789abcdef",
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "unknown or revoked",
    );
    let (status, body) = api.get("/v1/campaigns", "not-a-key").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "malformed API key");
}

#[tokio::test]
async fn bad_input_gets_the_error_shape_and_stores_nothing() {
    let api = api();
    let id = api.campaign().await;
    let decisions = format!("/v1/campaigns/{id}/decisions");
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"segment": "past-donors", "count": 0}),
            StatusCode::BAD_REQUEST,
            "accepted: 1 to 100",
        ),
        (
            json!({"segment": "past-donors", "count": 1000}),
            StatusCode::BAD_REQUEST,
            "accepted: 1 to 100",
        ),
        (
            json!({"segment": "nobody"}),
            StatusCode::BAD_REQUEST,
            "is not a segment",
        ),
        (
            json!({"segment": "past-donors", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "unknown field `colour`",
        ),
    ];
    for (body, expected, fragment) in cases {
        let (status, answer) = api.post(&decisions, &api.decide, body).await;
        assert_error(status, &answer, expected, fragment);
    }
    let (status, body) = api
        .call(
            "POST",
            &decisions,
            Some(&api.decide),
            "application/json",
            "{not json".into(),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid JSON body");
    let (status, body) = api
        .post(
            "/v1/campaigns/c_nope/decisions",
            &api.decide,
            json!({"segment": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no campaign");
    let (status, body) = api
        .get(&format!("/v1/campaigns/{id}/versions/999"), &api.read)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "versions 0 to 17");
    let (status, body) = api
        .get(&format!("/v1/campaigns/{id}/versions/abc"), &api.read)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "not a whole number");
    let (status, body) = api
        .call(
            "POST",
            "/v1/campaigns",
            Some(&api.admin),
            "application/json",
            "{\"version\": 1, \"name\": \"x\", \"components\": []}".into(),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "missing field `segments`",
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/campaigns",
            Some(&api.admin),
            "text/plain",
            SPEC.into(),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json or application/toml",
    );
    let huge = format!("{{\"events\": [\"{}\"]}}", "x".repeat(2 << 20));
    let (status, body) = api
        .call(
            "POST",
            "/v1/events",
            Some(&api.ingest),
            "application/json",
            huge,
        )
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "larger than");
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [], "extra": true}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unknown field `extra`",
    );
    let (status, body) = api.get("/v1/nothing-here", &api.read).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no such endpoint");
    assert_eq!(api.state.log().last_seq().unwrap(), 0, "nothing was stored");
}

#[tokio::test]
async fn restart_restores_snapshot_and_replays_to_the_same_model() {
    let dir = std::env::temp_dir().join(format!("tla-api-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (id, token_ingest, expected) = {
        let store = Store::open(&dir).unwrap();
        let admin = key(&store, 1, &["admin"]);
        let state = open(
            store,
            Arc::new(ManualClock::new(START_MS)),
            ServerConfig::default(),
        );
        let api = Api {
            state: state.clone(),
            read: admin.clone(),
            decide: admin.clone(),
            ingest: admin.clone(),
            admin,
        };
        let id = api.campaign().await;
        for round in 0..3 {
            let (_, body) = api
                .post(
                    &format!("/v1/campaigns/{id}/decisions"),
                    &api.decide,
                    json!({"segment": "new-visitors", "count": 50}),
                )
                .await;
            let events: Vec<Value> = body["decisions"].as_array().unwrap().iter().enumerate().flat_map(|(i, d)| {
                let mut e = vec![json!({"event_id": format!("i{round}-{i}"), "decision_id": d["decision_id"], "type": "impression"})];
                if i % 7 == 0 {
                    e.push(json!({"event_id": format!("c{round}-{i}"), "decision_id": d["decision_id"], "type": "conversion", "value": 10 + i}));
                }
                e
            }).collect();
            let (status, body) = api
                .post("/v1/events", &api.ingest, json!({"events": events}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let s = state.clone();
            // A snapshot after the first round only: the rest must come from replay.
            tokio::task::spawn_blocking(move || learner::step(&s, round == 0))
                .await
                .unwrap();
        }
        let expected = state.campaign(&id).unwrap().engine().snapshot();
        (id, api.ingest, expected)
    };
    let _ = token_ingest;
    // Restart from the data directory: snapshot of round 0, then replay.
    let store = Store::open(&dir).unwrap();
    let state = open(
        store,
        Arc::new(ManualClock::new(START_MS)),
        ServerConfig::default(),
    );
    assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), expected);
    drop(state);
    // And a replay of the whole log with no snapshot gives the same model.
    {
        let store = Store::open(&dir).unwrap();
        let config = ServerConfig {
            replay_from_start: true,
            ..ServerConfig::default()
        };
        let state = open(store, Arc::new(ManualClock::new(START_MS)), config);
        assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), expected);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn out_of_order_events_are_accepted_and_learned_in_log_order() {
    let api = api();
    let id = api.campaign().await;
    let (_, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "past-donors", "count": 2}),
        )
        .await;
    let first = body["decisions"][0]["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = body["decisions"][1]["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The conversion of the first decision arrives before its impression, in another
    // batch than the second decision's events, and a click arrives last.
    let batches = [
        json!({"events": [{"event_id": "c1", "decision_id": first, "type": "conversion", "value": 40}]}),
        json!({"events": [{"event_id": "i2", "decision_id": second, "type": "impression"}]}),
        json!({"events": [{"event_id": "i1", "decision_id": first, "type": "impression"}, {"event_id": "k1", "decision_id": first, "type": "click"}]}),
    ];
    for batch in batches {
        let (status, body) = api.post("/v1/events", &api.ingest, batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["accepted"].as_u64().unwrap() >= 1, "{body}");
        assert!(body["rejected"].as_array().unwrap().is_empty(), "{body}");
    }
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, false))
        .await
        .unwrap();
    let slot = api.state.campaign(&id).unwrap();
    let engine = slot.engine();
    assert_eq!(engine.events(), 4);
    let counts = engine.segment_counts()[1];
    assert_eq!(
        (counts.impressions, counts.clicks, counts.conversions),
        (2, 1, 1)
    );
    assert_eq!(counts.value, 40.0);
}

#[tokio::test]
async fn an_event_with_an_out_of_range_number_is_one_rejected_item() {
    // Found by the fuzz smoke test: each event is parsed on its own, so a number that
    // does not fit an f64 refuses that event only, by index.
    let api = api();
    let id = api.campaign().await;
    let decision_id = &api.one_decision(&id).await;
    let raw = format!(
        r#"{{"events": [{{"event_id": "a", "decision_id": "{decision_id}", "type": "impression"}},
                       {{"event_id": "b", "decision_id": "{decision_id}", "type": "conversion", "value": 1e400}}]}}"#
    );
    let (status, answer) = api
        .call(
            "POST",
            "/v1/events",
            Some(&api.ingest),
            "application/json",
            raw,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert!(
        answer["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid event"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_report_of_a_one_decision_log_matches_the_openapi_document() {
    // One logged decision: every standard error of the lift section is infinite and
    // serialized as null; the document must say so (the check in `Api::call`).
    let api = api();
    let id = api.campaign().await;
    let decision_id = &api.one_decision(&id).await;
    let events = json!({"events": [
        {"event_id": "i", "decision_id": decision_id, "type": "impression"},
        {"event_id": "c", "decision_id": decision_id, "type": "conversion", "value": 25},
    ]});
    let (status, body) = api.post("/v1/events", &api.ingest, events).await;
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, true))
        .await
        .unwrap();
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["lift"]["rows"], 1, "{report}");
    assert!(
        report["lift"]["realized"]["std_error"].is_null(),
        "{report}"
    );
}

/// The check in `Api::call` can fail: an undocumented member, a wrong type, an
/// undocumented status and an unknown path are each refused.
#[test]
fn the_openapi_check_refuses_what_the_document_does_not_say() {
    let check = openapi();
    let health = |body: Value, status: u16| {
        check.response(
            "GET",
            "/healthz",
            status,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    };
    let storage = json!({"status": "ok", "decision_backlog": 0, "decision_backlog_limit": 9});
    assert!(
        health(
            json!({"status": "ok", "applied_seq": 3, "storage": storage}),
            200
        )
        .is_ok()
    );
    let full = json!({"status": "full", "decision_backlog": 5, "decision_backlog_limit": 9});
    assert!(
        health(
            json!({"status": "degraded", "applied_seq": 3, "storage": full}),
            503
        )
        .is_ok()
    );
    let refused = [
        health(
            json!({"status": "ok", "applied_seq": 3, "storage": storage, "extra": 1}),
            200,
        ),
        health(
            json!({"status": "ok", "applied_seq": -3, "storage": storage}),
            200,
        ),
        health(
            json!({"status": "fine", "applied_seq": 3, "storage": storage}),
            200,
        ),
        health(json!({"status": "ok", "storage": storage}), 200),
        health(json!({"status": "ok", "applied_seq": 3}), 200),
        health(
            json!({"status": "ok", "applied_seq": 3, "storage": {"status": "gone"}}),
            200,
        ),
        health(
            json!({"status": "ok", "applied_seq": 3, "storage": storage}),
            500,
        ),
        check.response("GET", "/v2/unknown", 200, None, b""),
    ];
    for result in refused {
        assert!(result.is_err(), "{result:?}");
    }
    let summary = json!({"mean": 1.0, "lower": 0.5, "upper": "high"});
    assert!(check.component("Interval", &summary).is_err());
    assert!(
        check
            .component(
                "Interval",
                &json!({"mean": 1.0, "lower": 0.5, "upper": 2.0})
            )
            .is_ok()
    );
}

/// Every reason an event is refused: its code in the batch answer, the message the
/// API has always given, and the status the one match in `error.rs` gives the code.
#[tokio::test]
async fn each_event_rejection_has_its_code_message_and_status() {
    let api = api();
    let id = api.campaign().await;
    let decision = &api.one_decision(&id).await;
    let mut claims = api.state.signer().verify(decision).unwrap();
    claims.campaign_id = "c_missing".into();
    let unknown = api.state.signer().sign(&claims);
    let now = api.state.clock().now_ms();
    let cases: Vec<(Value, &str, StatusCode, &str)> = vec![
        (
            json!({"event_id": "a", "decision_id": decision, "type": "click", "x": 1}),
            "invalid_event",
            StatusCode::BAD_REQUEST,
            "invalid event: unknown field `x`",
        ),
        (
            json!({"event_id": "", "decision_id": decision, "type": "click"}),
            "invalid_event_id",
            StatusCode::BAD_REQUEST,
            "event_id must be 1 to 128 characters",
        ),
        (
            json!({"event_id": "a", "decision_id": "forged", "type": "click"}),
            "invalid_decision_id",
            StatusCode::BAD_REQUEST,
            "decision_id is not a decision id issued by this server",
        ),
        (
            json!({"event_id": "a", "decision_id": unknown, "type": "click"}),
            "unknown_campaign",
            StatusCode::NOT_FOUND,
            "decision_id names campaign \"c_missing\", which does not exist",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "refund"}),
            "invalid_event_type",
            StatusCode::BAD_REQUEST,
            "type \"refund\" is not accepted; accepted: impression, click, conversion, cost",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "cost", "amount": -1.0}),
            "invalid_amount",
            StatusCode::BAD_REQUEST,
            "amount is -1; accepted: a finite number from 0 to 1000000000000",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "click", "value": 1.0}),
            "unexpected_amount",
            StatusCode::BAD_REQUEST,
            "a click event carries no value or amount",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "conversion", "amount": 1.0}),
            "misplaced_amount",
            StatusCode::BAD_REQUEST,
            "a conversion carries its donation as `value`, not `amount`",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "cost", "value": 1.0}),
            "misplaced_amount",
            StatusCode::BAD_REQUEST,
            "a cost event carries its spend as `amount`, not `value`",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "cost"}),
            "missing_amount",
            StatusCode::BAD_REQUEST,
            "a cost event needs `amount` (the spend)",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "click", "at": now + 600_000}),
            "future_event",
            StatusCode::BAD_REQUEST,
            "at is 10.0 minutes in the future; accepted: up to 5 minutes ahead of the server's clock",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "click", "at": now - 120_000}),
            "before_decision",
            StatusCode::BAD_REQUEST,
            "at is 120000 ms before its decision; events come after the decision they follow",
        ),
        (
            json!({"event_id": "a", "decision_id": decision, "type": "click", "at": now + 1}),
            "",
            StatusCode::OK,
            "",
        ),
    ];
    for (event, code, status, message) in cases {
        let checked = check_raw_event(&api.state, &event.to_string(), now);
        if status == StatusCode::OK {
            assert!(checked.is_ok(), "{event}: {checked:?}");
            continue;
        }
        let rejection = checked.expect_err(&event.to_string());
        assert_eq!(rejection.code().as_str(), code, "{event}");
        // The parser's message follows `invalid event: ...`; the others are exact.
        let said = rejection.to_string();
        assert!(
            said == message || (code == "invalid_event" && said.starts_with(message)),
            "{said:?} for {event}"
        );
        // Answered alone, the rejection's code picks the status in the one match.
        let response = axum::response::IntoResponse::into_response(ApiError::from(rejection));
        assert_eq!(response.status(), status, "{event}");
        // In a batch, the same code and message are listed by index.
        let (answer_status, answer) = api
            .post("/v1/events", &api.ingest, json!({"events": [event]}))
            .await;
        assert_eq!(answer_status, StatusCode::OK, "{answer}");
        assert_eq!(answer["rejected"][0]["code"], code, "{answer}");
        assert_eq!(answer["rejected"][0]["error"], said.as_str(), "{answer}");
        assert_eq!(answer["rejected"][0]["index"], 0, "{answer}");
    }
    // The window of a click: an event 8 days after its decision is too late.
    let mut old = api.state.signer().verify(decision).unwrap();
    old.at_ms -= 8 * 24 * 3_600_000;
    let old = api.state.signer().sign(&old);
    let late = json!({"event_id": "a", "decision_id": old, "type": "click"}).to_string();
    let rejection = check_raw_event(&api.state, &late, now).unwrap_err();
    assert_eq!(rejection.code(), ErrorCode::OutsideAttributionWindow);
    assert_eq!(ApiError::from(rejection).status(), StatusCode::BAD_REQUEST);
}

/// Request-level refusals answer their code's status, in the error shape.
#[tokio::test]
async fn request_refusals_carry_their_code() {
    let api = api();
    let id = api.campaign().await;
    let cases = [
        (api.get("/v1/campaigns", "not-a-key").await, "unauthorized"),
        (api.get("/v1/campaigns", &api.ingest).await, "forbidden"),
        (
            api.get("/v1/campaigns/c_nope", &api.read).await,
            "not_found",
        ),
        (
            api.get(&format!("/v1/campaigns/{id}/versions/x"), &api.read)
                .await,
            "bad_request",
        ),
    ];
    for ((status, body), code) in cases {
        assert_eq!(body["error"]["code"], code, "{body}");
        let expected = ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap()
            .status();
        assert_eq!(status, expected, "{body}");
    }
    api.state.begin_close();
    let (status, body) = api
        .post("/v1/events", &api.ingest, json!({"events": []}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
}

/// The learner's cadences run on the state's clock: nothing is rebuilt or snapshot
/// until the manual clock passes the cadence.
#[tokio::test]
async fn a_manual_clock_drives_refresh_and_snapshot_cadences() {
    let store = Store::open_in_memory().unwrap();
    let admin = key(&store, 1, &["admin"]);
    let clock = Arc::new(ManualClock::new(START_MS));
    let config = ServerConfig {
        snapshot_every: std::time::Duration::from_secs(60),
        snapshot_every_events: u64::MAX,
        ..ServerConfig::default()
    };
    let state = open(store, clock.clone(), config);
    let api = Api {
        state: state.clone(),
        read: admin.clone(),
        decide: admin.clone(),
        ingest: admin.clone(),
        admin,
    };
    let id = api.campaign().await;
    let decide = || async {
        let (_, body) = api
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &api.decide,
                json!({"segment": "past-donors", "count": 10}),
            )
            .await;
        body["decisions"].as_array().unwrap().clone()
    };
    let (api, decide) = (&api, &decide);
    let impressions = |round: u32| async move {
        let events: Vec<Value> = decide()
            .await
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"event_id": format!("i{round}-{i}"), "decision_id": d["decision_id"], "type": "impression"}))
            .collect();
        let (status, body) = api
            .post("/v1/events", &api.ingest, json!({"events": events}))
            .await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(10))
        );
    };
    let step = |force| {
        let state = state.clone();
        async move {
            tokio::task::spawn_blocking(move || learner::step(&state, force))
                .await
                .unwrap()
        }
    };
    let snapshot = || state.store().latest_snapshot(&id).unwrap();
    // A new campaign's first tables carry no build time: its first events rebuild them.
    impressions(0).await;
    step(false).await;
    assert!(decide().await.iter().all(|d| d["model_version"] == 10));
    // Learned, but neither the refresh cadence (1 s) nor the snapshot one (60 s) is due.
    impressions(1).await;
    step(false).await;
    assert_eq!(state.campaign(&id).unwrap().engine().events(), 20);
    assert!(decide().await.iter().all(|d| d["model_version"] == 10));
    assert_eq!(snapshot(), None);
    clock.advance(1_000);
    step(false).await;
    assert!(decide().await.iter().all(|d| d["model_version"] == 20));
    assert_eq!(snapshot(), None);
    clock.advance(59_000);
    step(false).await;
    assert_eq!(snapshot().map(|(covers, _)| covers), Some(20));
}

/// Small rules of the input, as documented: the `Bearer` scheme name in any case, an
/// `event_id` counted in characters, the scope a refusal names, the article of an
/// event type.
#[tokio::test]
async fn small_input_rules_read_as_documented() {
    let api = api();
    let id = api.campaign().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = Request::builder()
            .uri("/v1/campaigns")
            .header(header::AUTHORIZATION, format!("{scheme} {}", api.read))
            .body(Body::empty())
            .unwrap();
        let response = app(api.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    // An admin-only endpoint names one scope; the others name theirs and admin.
    let (status, body) = api
        .post(&format!("/v1/campaigns/{id}/pause"), &api.read, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.ends_with("this endpoint needs `admin`"),
        "{message}"
    );
    let (status, body) = api.get("/v1/campaigns", &api.ingest).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("needs `read` (or `admin`)"), "{message}");
    // 128 two-byte characters (256 bytes) is a valid event id; 129 is not.
    let decision = &api.one_decision(&id).await;
    let now = api.state.clock().now_ms();
    let event = |event_id: String, extra: Value| {
        let mut event =
            json!({"event_id": event_id, "decision_id": decision, "type": "impression"});
        if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
            event.extend(extra.clone());
        }
        check_raw_event(&api.state, &event.to_string(), now)
    };
    assert!(event("é".repeat(128), json!({})).is_ok());
    let refused = event("é".repeat(129), json!({})).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InvalidEventId);
    let refused = event("v".into(), json!({"value": 1.0})).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "an impression event carries no value or amount"
    );
}

/// A known path asked with another method answers 405 in the error shape, with a code;
/// an unknown path answers 404 the same way.
#[tokio::test]
async fn a_wrong_method_answers_the_error_shape() {
    let api = api();
    for (method, uri, status, code) in [
        (
            "DELETE",
            "/v1/campaigns",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/events",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        ("GET", "/v1/nothing", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
            .body(Body::empty())
            .unwrap();
        let response = app(api.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), status, "{method} {uri}");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {uri}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("openapi.json")
        );
    }
}

// ---- storage faults and the decision log ------------------------------------------------

/// An API over an in-memory store whose event log and decision log fail on demand.
fn api_with_faults(faults: &Arc<Faults>) -> Api {
    api_over(Store::open_in_memory().unwrap(), |store| {
        let log = Arc::new(FaultyEventLog {
            inner: store.event_log(),
            faults: faults.clone(),
        });
        let decisions = Arc::new(FaultyDecisionLog {
            inner: store.clone(),
            faults: faults.clone(),
        });
        AppState::open_with_decision_log(
            store,
            log,
            decisions,
            Arc::new(ManualClock::new(START_MS)),
            b"test secret",
            ServerConfig::default(),
        )
        .unwrap()
    })
}

/// One write of the queued decisions, as the decision writer task does it.
async fn write_decisions(state: &AppState) -> Result<usize, StoreError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || state.write_decisions())
        .await
        .unwrap()
}

/// The decision ids in the decision log of campaign `id`, in log order.
fn logged(state: &AppState, id: &str) -> Vec<String> {
    state
        .store()
        .decisions(id, 0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|(_, row)| row.decision_id)
        .collect()
}

/// Impressions `event_ids[i]` of decisions `decision_ids[i]`.
fn impressions(event_ids: &[&str], decision_ids: &[String]) -> Value {
    let events: Vec<Value> = event_ids
        .iter()
        .zip(decision_ids)
        .map(|(event_id, decision_id)| {
            json!({"event_id": event_id, "decision_id": decision_id, "type": "impression"})
        })
        .collect();
    json!({ "events": events })
}

impl Api {
    async fn decisions(&self, id: &str, count: u32) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/campaigns/{id}/decisions"),
            &self.decide,
            json!({"segment": "past-donors", "count": count}),
        )
        .await
    }

    async fn health(&self) -> (StatusCode, Value) {
        self.call("GET", "/healthz", None, "application/json", String::new())
            .await
    }
}

fn ids_of(decisions: &Value) -> Vec<String> {
    decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_decisions_and_events_with_507_and_recovers_by_itself() {
    let faults = Arc::new(Faults::default());
    let api = api_with_faults(&faults);
    let id = api.campaign().await;
    let before = api.one_decision(&id).await;
    let (status, body) = api
        .post("/v1/events", &api.ingest, impressions(&["e0"], &[before]))
        .await;
    assert_eq!((status, &body["accepted"]), (StatusCode::OK, &json!(1)));
    assert_eq!(write_decisions(&api.state).await.unwrap(), 1);

    faults.set(Fault::DiskFull);
    // Served before a write met the full disk: kept in the queue, not dropped.
    let queued = api.one_decision(&id).await;
    assert!(
        write_decisions(&api.state)
            .await
            .unwrap_err()
            .is_storage_full()
    );
    // From then on nothing is served or acknowledged.
    let (status, body) = api.decisions(&id, 3).await;
    assert_error(
        status,
        &body,
        StatusCode::INSUFFICIENT_STORAGE,
        "disk is full",
    );
    assert_eq!(body["error"]["code"], "storage_full");
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            impressions(&["e1"], std::slice::from_ref(&queued)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::INSUFFICIENT_STORAGE,
        "nothing of this request was stored",
    );
    assert_eq!(body["error"]["code"], "storage_full");
    let (status, health) = api.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["storage"]["status"], "full");
    assert_eq!(health["storage"]["decision_backlog"], 1);
    // The learner goes on; a retry while the disk is full fails again.
    step(&api.state, false).await;
    assert!(write_decisions(&api.state).await.is_err());
    let slot = api.state.campaign(&id).unwrap();
    assert_eq!(slot.engine().events(), 1);

    // Space returns: the next retry writes the queue and decisions are served again.
    faults.set(Fault::None);
    assert_eq!(write_decisions(&api.state).await.unwrap(), 1);
    let (status, health) = api.health().await;
    assert_eq!((status, &health["status"]), (StatusCode::OK, &json!("ok")));
    let after = api.one_decision(&id).await;
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            impressions(&["e1"], std::slice::from_ref(&queued)),
        )
        .await;
    assert_eq!((status, &body["accepted"]), (StatusCode::OK, &json!(1)));
    step(&api.state, false).await;
    let (status, health) = api.health().await;
    assert_eq!(
        (status, &health["storage"]["status"]),
        (StatusCode::OK, &json!("ok"))
    );

    // Every decision served is logged, once; the engine counts exactly the acknowledged
    // events.
    let metrics = api.state.metrics();
    assert_eq!(metrics.decisions.get(), 3);
    assert_eq!(metrics.decisions_refused.get(), 3);
    assert_eq!(metrics.decisions_logged.get(), 3);
    let log = logged(&api.state, &id);
    assert_eq!(log.len(), 3);
    assert_eq!(log[1..], [queued, after]);
    assert_eq!(metrics.events_accepted.get(), 2);
    assert_eq!(slot.engine().events(), 2);
    assert!(*faults.hits.lock().unwrap() >= 3);
}

#[tokio::test]
async fn failed_commits_and_half_written_batches_lose_nothing_acknowledged_and_count_nothing_twice()
{
    let faults = Arc::new(Faults::default());
    let api = api_with_faults(&faults);
    let id = api.campaign().await;
    let (status, body) = api.decisions(&id, 4).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let served = ids_of(&body);
    let batch = impressions(&["a", "b", "c", "d"], &served);

    // A failed commit (an I/O error, not a full disk): 503 for decisions, 500 for
    // events, nothing stored.
    faults.set(Fault::FailedCommit);
    let failed = write_decisions(&api.state).await.unwrap_err();
    assert!(!failed.is_storage_full(), "{failed}");
    let (status, body) = api.decisions(&id, 1).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "decision log cannot be written",
    );
    assert_eq!(body["error"]["code"], "decision_log_unavailable");
    let (status, body) = api.post("/v1/events", &api.ingest, batch.clone()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(api.state.log().last_seq().unwrap(), 0);
    let (status, health) = api.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["storage"]["status"], "unwritable");

    // A write that stops halfway through the batch: its first half is stored, the
    // request is not acknowledged.
    faults.set(Fault::FailedMidBatch);
    let (status, _) = api.post("/v1/events", &api.ingest, batch.clone()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(api.state.log().last_seq().unwrap(), 2);
    assert!(write_decisions(&api.state).await.is_err());
    assert_eq!(logged(&api.state, &id).len(), 2);
    assert_eq!(api.state.decision_backlog(), 4);

    // Healthy again: the retried decisions are stored once each, in order, and the
    // retried batch stores only what was missing.
    faults.set(Fault::None);
    assert_eq!(write_decisions(&api.state).await.unwrap(), 4);
    assert_eq!(logged(&api.state, &id), served);
    let (status, body) = api.post("/v1/events", &api.ingest, batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(2), &json!(2))
    );
    step(&api.state, false).await;
    assert_eq!(api.state.campaign(&id).unwrap().engine().events(), 4);
    assert_eq!(api.state.metrics().decisions.get(), 4);
    assert_eq!(api.state.metrics().decisions_logged.get(), 4);
}

#[tokio::test]
async fn decisions_are_refused_while_the_decision_log_is_at_its_backlog_limit() {
    let api = api();
    let id = api.campaign().await;
    let limit = tla_server::state::DECISION_BACKLOG_LIMIT;
    let filler: Vec<DecisionRow> = (0..limit)
        .map(|index| DecisionRow {
            decision_id: format!("filler-{index}"),
            campaign_id: id.clone(),
            segment: 0,
            version: 1,
            propensity: 0.5,
            model_version: 0,
            at_ms: START_MS,
            skip: None,
            revision: 1,
            held_out: false,
        })
        .collect();
    api.state.log_decisions(filler).unwrap();
    let (status, body) = api.decisions(&id, 1).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{limit} decisions behind (the limit is {limit})"),
    );
    assert_eq!(body["error"]["code"], "decision_log_unavailable");
    let (status, health) = api.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["storage"]["status"], "unwritable");
    assert_eq!(health["storage"]["decision_backlog"], limit);
    assert_eq!(write_decisions(&api.state).await.unwrap(), limit);
    let (status, body) = api.decisions(&id, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.state.metrics().decisions_refused.get(), 1);
}

#[tokio::test]
async fn after_a_crash_every_decision_an_event_refers_to_is_restored_from_its_id() {
    let store = Store::open_in_memory().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let api = api_over(store.clone(), |store| {
        open(store, clock.clone(), ServerConfig::default())
    });
    let id = api.campaign().await;
    let (status, body) = api.decisions(&id, 5).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let served = ids_of(&body);
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            impressions(&["e0", "e1", "e2"], &served),
        )
        .await;
    assert_eq!((status, &body["accepted"]), (StatusCode::OK, &json!(3)));
    // The process dies before the queue reaches the decision log.
    assert!(logged(&api.state, &id).is_empty());
    let Api {
        state,
        admin,
        decide,
        ingest,
        read,
    } = api;
    drop(state);

    // The next start writes the decisions the stored events refer to, exactly as
    // they were served.
    clock.advance(60_000);
    let state = open(store.clone(), clock.clone(), ServerConfig::default());
    assert_eq!(logged(&state, &id), served[..3]);
    for (_, row) in store.decisions(&id, 0, 10).unwrap() {
        let claims = state.signer().verify(&row.decision_id).unwrap();
        assert_eq!(
            (row.segment, row.version, row.model_version, row.at_ms),
            (
                claims.segment,
                claims.version,
                claims.model_version,
                claims.at_ms
            )
        );
        assert_eq!(row.propensity.to_bits(), claims.propensity.to_bits());
    }
    assert_eq!(store.decisions_cover_seq().unwrap(), 3);

    // An event arriving now about a lost decision of the earlier process: the learner
    // restores that decision too. The one no event refers to stays unknown.
    let api = Api {
        state,
        admin,
        decide,
        ingest,
        read,
    };
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            impressions(&["e3"], &served[3..4]),
        )
        .await;
    assert_eq!((status, &body["accepted"]), (StatusCode::OK, &json!(1)));
    step(&api.state, false).await;
    assert_eq!(logged(&api.state, &id), served[..4]);

    // Opening again restores nothing twice.
    drop(api);
    let state = open(store.clone(), clock, ServerConfig::default());
    assert_eq!(logged(&state, &id), served[..4]);
}

// ---- same event id, another content; corrections ----------------------------------------

#[tokio::test]
async fn a_reused_event_id_with_another_content_is_refused_for_that_item() {
    let api = api();
    let id = api.campaign().await;
    let decision = api.one_decision(&id).await;
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [{"event_id": "e1", "decision_id": decision, "type": "impression"}]}),
        )
        .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [
                {"event_id": "x", "decision_id": "forged", "type": "click"},
                // A conversion reusing the impression's id: refused, not a duplicate.
                {"event_id": "e1", "decision_id": decision, "type": "conversion", "value": 25},
                // The exact repeat (the time is not compared): a duplicate.
                {"event_id": "e1", "decision_id": decision, "type": "impression", "at": START_MS + 1},
                {"event_id": "e2", "decision_id": decision, "type": "conversion", "value": 25},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    let listed: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [(0, "invalid_decision_id"), (1, "event_id_conflict")]
    );
    let message = rejected[1]["error"].as_str().unwrap();
    assert!(
        message.contains("\"e1\" is already stored with another type, decision_id or amount"),
        "{message}"
    );
    // The stored event is the impression, unchanged.
    let stored = api.state.log().find_event(&id, "e1").unwrap().unwrap();
    assert_eq!(stored.kind, tla_store::EventKind::Impression);
}

/// The model a replay of the log learns when the events are taken as `effective` says:
/// built from the prior with the event rules alone, independently of the corrections
/// code.
fn reference_model(state: &AppState, id: &str) -> Vec<u8> {
    let slot = state.campaign(id).unwrap();
    let corrections = state.log().corrections(id).unwrap();
    let fixes = tla_store::effects(&corrections);
    let mut rng = <rand_pcg::Pcg64Mcg as rand::SeedableRng>::seed_from_u64(1);
    let mut engine = tla_core::engine::Engine::new(&slot.current().campaign, &mut rng);
    for mut stored in state.log().read_after(0, usize::MAX).unwrap() {
        if stored.campaign_id != id {
            continue;
        }
        match fixes.get(&stored.seq) {
            Some(tla_store::EventFix::Retracted) => continue,
            Some(tla_store::EventFix::Value(value)) => {
                stored.value = *value;
                stored.amount_known = true;
            }
            None => {}
        }
        tla_server::event::learn(&mut engine, &stored).unwrap();
    }
    engine.snapshot()
}

async fn step(state: &AppState, snapshot: bool) {
    let state = state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, snapshot))
        .await
        .unwrap();
}

#[tokio::test]
async fn corrections_rebuild_the_model_as_a_replay_of_the_corrected_log() {
    let dir = std::env::temp_dir().join(format!("tla-api-corrections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let admin = key(&store, 1, &["admin"]);
    let corrector = key(&store, 5, &["correct"]);
    let ingest = key(&store, 3, &["ingest"]);
    let reader = key(&store, 4, &["read"]);
    let state = open(
        store.clone(),
        Arc::new(ManualClock::new(START_MS)),
        ServerConfig::default(),
    );
    let api = Api {
        state: state.clone(),
        read: admin.clone(),
        decide: admin.clone(),
        ingest: ingest.clone(),
        admin,
    };
    let id = api.campaign().await;
    let send = |round: usize, outlier: bool| {
        let api = &api;
        let id = id.clone();
        async move {
            let (_, body) = api
                .post(
                    &format!("/v1/campaigns/{id}/decisions"),
                    &api.decide,
                    json!({"segment": "past-donors", "count": 40}),
                )
                .await;
            let mut events = Vec::new();
            for (i, d) in body["decisions"].as_array().unwrap().iter().enumerate() {
                events.push(json!({"event_id": format!("i{round}-{i}"), "decision_id": d["decision_id"], "type": "impression"}));
                if i % 5 == 0 {
                    let value = if outlier && i == 0 {
                        2_400.0
                    } else {
                        10.0 + i as f64
                    };
                    events.push(json!({"event_id": format!("c{round}-{i}"), "decision_id": d["decision_id"], "type": "conversion", "value": value}));
                    events.push(json!({"event_id": format!("k{round}-{i}"), "decision_id": d["decision_id"], "type": "cost", "amount": 0.5}));
                }
            }
            let (status, body) = api
                .post("/v1/events", &api.ingest, json!({"events": events}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    // Round 0 holds the outlier; a snapshot covers it; round 1 comes after.
    send(0, true).await;
    step(&state, true).await;
    send(1, false).await;
    step(&state, true).await;
    let uri = format!("/v1/campaigns/{id}/corrections");

    // Scopes: read and ingest keys may not correct.
    let retract_outlier = json!({"event_id": "c0-0", "action": "retract", "reason": "an order number pasted as the amount"});
    for token in [&reader, &ingest] {
        let (status, body) = api.post(&uri, token, retract_outlier.clone()).await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "`correct` (or `admin`)",
        );
    }
    // Refusals, each with its code.
    let refusals: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            json!({"event_id": "nope", "action": "retract", "reason": "r"}),
            StatusCode::NOT_FOUND,
            "event_not_found",
            "holds no event with event_id \"nope\"",
        ),
        (
            json!({"event_id": "i0-1", "action": "correct", "value": 3, "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "unexpected_amount",
            "can be retracted, not corrected",
        ),
        (
            json!({"event_id": "c0-5", "action": "correct", "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "needs `value`",
        ),
        (
            json!({"event_id": "c0-5", "action": "retract", "value": 1, "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "takes no value",
        ),
        (
            json!({"event_id": "c0-5", "action": "correct", "value": -1, "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "value is -1; accepted: a finite number from 0 to 2500",
        ),
        (
            json!({"event_id": "c0-5", "action": "correct", "value": 20_000, "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "value_above_max",
            "above this campaign's max_value of 2500",
        ),
        (
            json!({"event_id": "c0-5", "action": "retract", "reason": "  "}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "reason must be 1 to 500 characters",
        ),
        (
            json!({"event_id": "c0-5", "action": "undo", "reason": "r"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "unknown variant `undo`",
        ),
    ];
    for (request, expected, code, fragment) in refusals {
        let (status, body) = api.post(&uri, &corrector, request.clone()).await;
        assert_error(status, &body, expected, fragment);
        assert_eq!(body["error"]["code"], code, "{request}");
    }
    let (status, body) = api
        .post(
            "/v1/campaigns/c_missing/corrections",
            &corrector,
            retract_outlier.clone(),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no campaign");
    assert!(state.log().corrections(&id).unwrap().is_empty());

    // Correct a round-1 conversion: the snapshot after round 0 does not cover it.
    let (status, body) = api
        .post(&uri, &corrector, json!({"event_id": "c1-5", "action": "correct", "value": 40, "reason": "the card was charged $40"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correction"]["old_value"], 15.0);
    assert_eq!(body["correction"]["new_value"], 40.0);
    let from_seq = body["rebuild"]["from_seq"].as_u64().unwrap();
    let c1_5 = state.log().find_event(&id, "c1-5").unwrap().unwrap().seq;
    assert!(
        from_seq > 0 && from_seq < c1_5,
        "rebuilt from {from_seq}, event {c1_5}"
    );
    assert_eq!(
        state.campaign(&id).unwrap().engine().snapshot(),
        reference_model(&state, &id)
    );

    // Retract the outlier: every snapshot covered it, so the rebuild starts from the prior.
    let (status, body) = api.post(&uri, &corrector, retract_outlier.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["repeated"], false);
    assert_eq!(body["correction"]["old_value"], 2_400.0);
    assert_eq!(body["correction"]["new_value"], Value::Null);
    assert_eq!(body["correction"]["event_type"], "conversion");
    assert_eq!(body["correction"]["key_id"], new_key([5; 22]).id);
    assert_eq!(body["rebuild"]["from_seq"], 0, "{body}");
    let applied = state.applied_seq();
    assert_eq!(body["rebuild"]["to_seq"], applied);
    assert_eq!(
        state.campaign(&id).unwrap().engine().snapshot(),
        reference_model(&state, &id)
    );

    // Retracting again answers the first retraction; correcting it is refused.
    let (status, body) = api.post(&uri, &corrector, retract_outlier.clone()).await;
    assert_eq!(
        (status, &body["repeated"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert_eq!(body["rebuild"], Value::Null);
    assert_eq!(
        body["correction"]["reason"],
        "an order number pasted as the amount"
    );
    let (status, body) = api
        .post(
            &uri,
            &corrector,
            json!({"event_id": "c0-0", "action": "correct", "value": 5, "reason": "r"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "a retraction is final");
    assert_eq!(body["error"]["code"], "event_retracted");

    // An event the learner has not applied yet: recorded, no rebuild, learned as corrected.
    send(2, false).await;
    let (status, body) = api
        .post(
            &uri,
            &corrector,
            json!({"event_id": "i2-3", "action": "retract", "reason": "a bot"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rebuild"], Value::Null, "{body}");
    step(&state, false).await;
    let expected = reference_model(&state, &id);
    assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), expected);

    // The report lists the corrections, oldest first, and learned without the outlier.
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let listed: Vec<(&str, &str)> = report["corrections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["event_id"].as_str().unwrap(),
                c["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("c1-5", "correct"),
            ("c0-0", "retract"),
            ("i2-3", "retract")
        ]
    );
    let raised = report["summary"]["donations"].as_f64().unwrap();
    assert!(raised < 10_000.0, "donations {raised}");

    // A restart (latest snapshot, corrections, the events after it) gives the same model.
    drop(api);
    drop(state);
    let state = open(
        Store::open(&dir).unwrap(),
        Arc::new(ManualClock::new(START_MS)),
        ServerConfig::default(),
    );
    assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), expected);
    drop(state);
    let state = open(
        Store::open(&dir).unwrap(),
        Arc::new(ManualClock::new(START_MS)),
        ServerConfig {
            replay_from_start: true,
            ..ServerConfig::default()
        },
    );
    assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), expected);
    drop(state);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- amounts: max_value, the robust value model, unknown amounts, finite reports ------

/// A campaign of three calls to action with asks 50, 25 and 10 (so `max_value` is 5000
/// by default), one segment.
const THREE_CTAS: &str = r#"
version = 1
name = "three calls to action"
objective = "value"
segments = [{ name = "everyone" }]

[[components]]
name = "cta"
options = [
  { name = "give_50", text = "Give $50", ask = 50, asks_action = true },
  { name = "give_25", text = "Give $25", ask = 25, asks_action = true },
  { name = "donate_10", text = "Donate $10", ask = 10, asks_action = true },
]
"#;

impl Api {
    /// Creates a campaign from a TOML spec; its id.
    async fn campaign_from(&self, spec: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/campaigns",
                Some(&self.admin),
                "application/toml",
                spec.into(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// The `decision_id` of one decision of campaign `id` in `segment`.
    async fn one_decision_in(&self, id: &str, segment: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &self.decide,
                json!({ "segment": segment }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["decisions"][0]["decision_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Posts `events` in batches the server accepts; every one must be accepted.
    async fn post_all(&self, events: Vec<Value>) {
        for batch in events.chunks(5_000) {
            let (status, body) = self
                .post("/v1/events", &self.ingest, json!({ "events": batch }))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(
                body["accepted"].as_u64(),
                Some(batch.len() as u64),
                "{body}"
            );
        }
    }

    /// Applies the event log and returns the campaign's report.
    async fn learned_report(&self, id: &str) -> Value {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || learner::step(&state, true))
            .await
            .unwrap();
        let (status, report) = self
            .get(&format!("/v1/campaigns/{id}/report"), &self.read)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        report
    }
}

/// Decision ids for `version` in segment 0, signed by the server as its policy's would
/// be (the test chooses the version), one per `nonce`.
fn signed_decision(api: &Api, template: &str, version: u64, nonce: u64) -> String {
    let mut claims = api.state.signer().verify(template).unwrap();
    claims.segment = 0;
    claims.version = version;
    claims.nonce = nonce;
    api.state.signer().sign(&claims)
}

/// Honest traffic on three calls to action: `impressions` each; CTA `v` converts every
/// `every[v]`-th impression, giving `base[v]` times 0.5, 0.8, 1, 1.25, 2 in turn.
/// `give_50` is best in value per impression (about 2.2, against 1.0 and 0.45).
fn honest_traffic(api: &Api, template: &str, impressions: u64) -> Vec<Value> {
    const EVERY: [u64; 3] = [25, 33, 50];
    const BASE: [f64; 3] = [50.0, 30.0, 20.0];
    const SPREAD: [f64; 5] = [0.5, 0.8, 1.0, 1.25, 2.0];
    let mut events = Vec::new();
    let mut conversions = 0;
    for version in 0..3u64 {
        for i in 0..impressions {
            let decision = signed_decision(api, template, version, version * impressions + i);
            events.push(json!({"event_id": format!("i-{version}-{i}"), "decision_id": decision, "type": "impression"}));
            if i % EVERY[version as usize] == 0 {
                let value = BASE[version as usize] * SPREAD[conversions % SPREAD.len()];
                conversions += 1;
                events.push(json!({"event_id": format!("c-{version}-{i}"), "decision_id": decision, "type": "conversion", "value": value}));
            }
        }
    }
    events
}

/// The leader of the report's only segment and the value per impression (posterior
/// mean) of each call to action.
fn leader_and_values(report: &Value) -> (u64, [f64; 3]) {
    let leader = report["segments"][0]["leaders"][0]["version"]
        .as_u64()
        .unwrap();
    let options = report["components"][0]["options"].as_array().unwrap();
    let value = |o: usize| options[o]["value_per_impression"]["mean"].as_f64().unwrap();
    (leader, [value(0), value(1), value(2)])
}

#[tokio::test]
async fn one_outlier_is_refused_above_max_value_and_one_below_it_does_not_change_the_leader() {
    let api = api();
    let id = api.campaign_from(THREE_CTAS).await;
    let (_, campaign) = api.get(&format!("/v1/campaigns/{id}"), &api.read).await;
    assert_eq!(campaign["max_value"], 5000.0, "{campaign}");
    let template = api.one_decision_in(&id, "everyone").await;
    api.post_all(honest_traffic(&api, &template, 3_000)).await;
    let before = api.learned_report(&id).await;
    let (leader, values) = leader_and_values(&before);
    assert_eq!(leader, 0, "give_50 leads on honest traffic: {values:?}");
    assert!(values[0] > 1.5 && values[0] < 3.5, "{values:?}");
    assert!(values[2] < values[1] && values[1] < values[0], "{values:?}");

    // An order number pasted as a value, on the worst call to action: refused, with the
    // limit in the message; nothing is stored.
    let worst = signed_decision(&api, &template, 2, 1 << 40);
    let (status, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [{"event_id": "order-number", "decision_id": worst, "type": "conversion", "value": 1e9}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["rejected"][0]["code"], "value_above_max", "{body}");
    let message = body["rejected"][0]["error"].as_str().unwrap();
    assert!(
        message.contains("value 1000000000 is above this campaign's max_value of 5000"),
        "{message}"
    );

    // A large gift just under the limit, and a conversion whose amount is unknown.
    api.post_all(vec![
        json!({"event_id": "big-gift", "decision_id": worst, "type": "conversion", "value": 4999.0}),
        json!({"event_id": "no-amount", "decision_id": worst, "type": "conversion"}),
    ])
    .await;
    let after = api.learned_report(&id).await;
    let (leader_after, values_after) = leader_and_values(&after);
    assert_eq!(leader_after, 0, "the leader stays: {values_after:?}");
    // One gift of 250 times the usual moves the value per impression little (the
    // Gaussian step moved these by +8% and +44%).
    assert!(
        values_after[0] > 0.95 * values[0] && values_after[0] < 1.05 * values[0],
        "the leader's value per impression stays: {values:?} -> {values_after:?}"
    );
    assert!(
        values_after[2] < 1.25 * values[2] && values_after[2] < values_after[1],
        "the worst call to action stays behind: {values:?} -> {values_after:?}"
    );
    // Raised counts the gift as sent; learned, as the model took it; the conversion
    // without amount is a donor of unknown amount, not a $0 gift.
    let summary = &after["summary"];
    let raised = summary["donations"].as_f64().unwrap();
    let learned = summary["donations_learned"].as_f64().unwrap();
    let raised_before = before["summary"]["donations"].as_f64().unwrap();
    assert_eq!(raised, raised_before + 4999.0);
    assert!(learned < raised - 4_000.0, "{summary}");
    assert_eq!(summary["donors_amount_unknown"], 1, "{summary}");
    assert_eq!(
        summary["donors"].as_u64().unwrap(),
        before["summary"]["donors"].as_u64().unwrap() + 2
    );
    let worst_row = &after["components"][0]["options"][2];
    assert_eq!(worst_row["conversions_amount_unknown"], 1, "{worst_row}");
    // Unwrapped first: `None < Some(_)` holds, so comparing the Options would pass with
    // a field missing.
    let value_learned = worst_row["value_learned"].as_f64().unwrap();
    let value = worst_row["value"].as_f64().unwrap();
    assert!(value_learned < value, "{worst_row}");

    // Correcting the conversion of unknown amount audits its old value as unknown (null),
    // not as $0; a second correction's old value is the first one's.
    let uri = format!("/v1/campaigns/{id}/corrections");
    let (status, body) = api
        .post(&uri, &api.admin, json!({"event_id": "no-amount", "action": "correct", "value": 30, "reason": "the gift was $30"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correction"]["old_value"], Value::Null, "{body}");
    assert_eq!(body["correction"]["new_value"], 30.0, "{body}");
    let (status, body) = api
        .post(
            &uri,
            &api.admin,
            json!({"event_id": "no-amount", "action": "retract", "reason": "a test gift"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["correction"]["old_value"], 30.0, "{body}");
    let report = api.learned_report(&id).await;
    let corrections = report["corrections"].as_array().unwrap();
    assert_eq!(corrections.len(), 2, "{report}");
    assert_eq!(corrections[0]["old_value"], Value::Null, "{report}");
    assert_eq!(corrections[1]["old_value"], 30.0, "{report}");
}

#[tokio::test]
async fn extreme_but_accepted_amounts_keep_every_report_field_a_number_of_the_schema() {
    let api = api();
    // The largest max_value a spec may give.
    let id = api
        .campaign_from(&format!("max_value = 1e12\n{THREE_CTAS}"))
        .await;
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "everyone", "count": 40}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut events = Vec::new();
    for (i, decision) in body["decisions"].as_array().unwrap().iter().enumerate() {
        let decision_id = decision["decision_id"].as_str().unwrap();
        events.push(
            json!({"event_id": format!("i{i}"), "decision_id": decision_id, "type": "impression"}),
        );
        events.push(json!({"event_id": format!("c{i}"), "decision_id": decision_id, "type": "conversion", "value": 1e12}));
        events.push(json!({"event_id": format!("d{i}"), "decision_id": decision_id, "type": "conversion", "value": 1e12}));
        let cost = if i % 2 == 0 { 1e12 } else { 5e-324 };
        events.push(json!({"event_id": format!("k{i}"), "decision_id": decision_id, "type": "cost", "amount": cost}));
        if i % 3 == 0 {
            events.push(json!({"event_id": format!("u{i}"), "decision_id": decision_id, "type": "conversion"}));
        }
    }
    api.post_all(events).await;
    // Above the limits: refused with their codes.
    let decision_id = body["decisions"][0]["decision_id"].as_str().unwrap();
    let (_, refused) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [
                {"event_id": "x1", "decision_id": decision_id, "type": "conversion", "value": 1.5e12},
                {"event_id": "x2", "decision_id": decision_id, "type": "cost", "amount": 1e308},
                {"event_id": "x3", "decision_id": decision_id, "type": "conversion", "value": 1e308},
            ]}),
        )
        .await;
    let codes: Vec<&str> = refused["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["value_above_max", "invalid_amount", "value_above_max"],
        "{refused}"
    );
    let messages: Vec<&str> = refused["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert!(
        messages[1].starts_with("amount is 1e308; accepted"),
        "{messages:?}"
    );
    assert!(
        messages[2].starts_with("value 1e308 is above this campaign's max_value of 1000000000000"),
        "{messages:?}"
    );
    // The report (checked against the OpenAPI document by `call`) has a finite number
    // wherever the schema does not allow null.
    let report = api.learned_report(&id).await;
    let summary = &report["summary"];
    assert_eq!(
        summary["donations"].as_f64(),
        Some(80.0 * 1e12),
        "{summary}"
    );
    assert!(
        summary["spend"].as_f64().unwrap() >= 20.0 * 1e12,
        "{summary}"
    );
    assert_eq!(summary["donors_amount_unknown"], 14, "{summary}");
    assert!(report["lift"].is_object(), "{report}");
    for segment in report["segments"].as_array().unwrap() {
        let vpi = &segment["value_per_impression"];
        for end in ["mean", "lower", "upper"] {
            assert!(vpi[end].as_f64().unwrap().is_finite(), "{segment}");
        }
    }
    assert!(report["versions"]["rows"][0]["value_learned"].is_number());
}

// ---- money: spend reports --------------------------------------------------------------

/// The id part of a key's token (`tla_<id>_<secret>`).
fn key_id(token: &str) -> String {
    tla_server::auth::parse_token(token).unwrap().0.to_owned()
}

/// A spend report of `segment` over December `first`..`last` (UTC midnights), 2026.
fn spend_report(report_id: &str, segment: &str, days: (u32, u32), amount: Value) -> Value {
    json!({
        "report_id": report_id,
        "segment": segment,
        "start": format!("2026-12-{:02}T00:00:00Z", days.0),
        "end": format!("2026-12-{:02}T00:00:00Z", days.1),
        "amount": amount,
    })
}

#[tokio::test]
async fn spend_reports_are_stored_once_and_each_refusal_has_its_code_and_message() {
    let api = api();
    let id = api.campaign().await;
    let uri = format!("/v1/campaigns/{id}/spend");
    let mut first = spend_report("r1", "past-donors", (1, 2), json!(120.5));
    first["impressions"] = json!(4_000);
    let mut conflicting = first.clone();
    conflicting["amount"] = json!(99);
    let mut unknown_field = spend_report("r8", "past-donors", (1, 2), json!(1));
    unknown_field["bogus"] = json!(1);
    let mut negative_impressions = spend_report("r9", "past-donors", (1, 2), json!(1));
    negative_impressions["impressions"] = json!(-3);
    let mut not_rfc3339 = spend_report("r4", "past-donors", (1, 2), json!(1));
    not_rfc3339["start"] = json!("2026-12-01");
    let mut too_long = spend_report("r10", "past-donors", (1, 2), json!(1));
    too_long["end"] = json!("2028-01-01T00:00:00Z");
    let batch = json!({"reports": [
        first.clone(),
        spend_report("r2", "volunteers", (1, 3), json!(80)),
        first.clone(),
        conflicting,
        spend_report("", "past-donors", (1, 2), json!(1)),
        spend_report("r3", "nobody", (1, 2), json!(1)),
        not_rfc3339,
        spend_report("r5", "past-donors", (2, 1), json!(1)),
        spend_report("r6", "past-donors", (1, 2), json!(-1)),
        spend_report("r7", "past-donors", (1, 2), json!(2e12)),
        unknown_field,
        negative_impressions,
        too_long,
    ]});
    let (status, body) = api.post(&uri, &api.ingest, batch.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    let rejected: Vec<(u64, &str, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap(),
                r["error"].as_str().unwrap(),
            )
        })
        .collect();
    let expected = [
        (
            3,
            "report_id_conflict",
            "already stored with another segment, period, amount or impressions",
        ),
        (
            4,
            "invalid_report_id",
            "report_id must be 1 to 128 characters",
        ),
        (
            5,
            "unknown_segment",
            "segment \"nobody\" is not a segment of campaign",
        ),
        (
            6,
            "invalid_period",
            "start: \"2026-12-01\" is not an RFC 3339 timestamp",
        ),
        (7, "invalid_period", "is not after start"),
        (
            8,
            "invalid_amount",
            "amount is -1; accepted: a finite number from 0 to 1000000000000",
        ),
        (
            9,
            "invalid_amount",
            "amount is 2000000000000; accepted: a finite number from 0 to 1000000000000",
        ),
        (10, "invalid_spend_report", "unknown field `bogus`"),
        (11, "invalid_spend_report", "invalid value: integer `-3`"),
        (12, "invalid_period", "accepted: at most 366 days"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{body}");
    for ((index, code, error), (want_index, want_code, says)) in rejected.iter().zip(expected) {
        assert_eq!((*index, *code), (want_index, want_code), "{body}");
        assert!(error.contains(says), "{error:?} does not say {says:?}");
    }
    // Every code's status is the one documented, for a refusal answered alone.
    for (_, code, _) in &rejected {
        let status = ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == *code)
            .unwrap()
            .status();
        let expected = if *code == "report_id_conflict" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "{code}");
    }
    // Stored once each, with who sent them and when; exact repeats are duplicates.
    let stored = api.state.store().spend_reports(&id).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (
            stored[0].report_id.as_str(),
            stored[0].segment,
            stored[0].amount
        ),
        ("r1", 1, 120.5)
    );
    assert_eq!(stored[0].impressions, Some(4_000));
    assert_eq!(stored[0].start_ms, 1_796_083_200_000);
    assert_eq!(stored[0].end_ms - stored[0].start_ms, 86_400_000);
    assert_eq!((stored[1].segment, stored[1].impressions), (2, None));
    assert_eq!(stored[0].key_id, key_id(&api.ingest));
    assert_eq!(stored[0].at_ms, START_MS);
    let (_, again) = api.post(&uri, &api.ingest, batch).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    assert_eq!(again["rejected"][0]["code"], "report_id_conflict");
    assert_eq!(api.state.store().spend_reports(&id).unwrap(), stored);

    let (_, metrics) = api
        .call("GET", "/metrics", Some(&api.read), "", String::new())
        .await;
    let metrics = metrics.as_str().unwrap().to_string();
    for line in [
        "tla_spend_reports_accepted_total 2",
        "tla_spend_reports_duplicate_total 4",
        "tla_spend_reports_rejected_total 20",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }

    // Refused whole: a campaign that does not exist, a key without ingest, a body that
    // is not a batch, the server shutting down.
    let one = json!({"reports": [spend_report("r1", "past-donors", (1, 2), json!(1))]});
    let (status, body) = api
        .post("/v1/campaigns/c_nope/spend", &api.ingest, one.clone())
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "c_nope");
    let (status, body) = api.post(&uri, &api.read, one.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "ingest");
    let (status, body) = api.post(&uri, &api.ingest, json!({"report": []})).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unknown field `report`",
    );
    let (status, body) = api.post(&uri, &api.admin, json!({"reports": []})).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{body}"
    );
    api.state.begin_close();
    let (status, body) = api.post(&uri, &api.ingest, one).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting down",
    );
}

// ---- money: budget changes -------------------------------------------------------------

/// examples/small.toml with a flight from September (the tests' clock is in it) to the
/// end of the year: budget 1000, daily cap 100.
fn spec_with_flight() -> String {
    format!(
        "{SPEC}\n[flight]\nbudget = 1000\ndaily_cap = 100\nstart = \"2026-09-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\nmin_roas = 1.5\n"
    )
}

impl Api {
    async fn campaign_of(&self, spec: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/campaigns",
                Some(&self.admin),
                "application/toml",
                spec.into(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn patch(&self, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "PATCH",
            uri,
            Some(token),
            "application/json",
            body.to_string(),
        )
        .await
    }
}

#[tokio::test]
async fn budget_changes_are_checked_audited_in_force_and_never_rewrite_history() {
    let api = api();
    let without = api.campaign().await;
    let id = api.campaign_of(&spec_with_flight()).await;
    let (_, campaign) = api
        .get(&format!("/v1/campaigns/{without}"), &api.read)
        .await;
    assert_eq!(campaign["flight"], Value::Null, "{campaign}");
    let (status, campaign) = api.get(&format!("/v1/campaigns/{id}"), &api.read).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        campaign["flight"],
        json!({"budget": 1000.0, "daily_cap": 100.0, "spec_budget": 1000.0, "spec_daily_cap": 100.0,
               "start": "2026-09-01T00:00:00Z", "end": "2027-01-01T00:00:00Z", "min_roas": 1.5}),
        "{campaign}"
    );

    // Spent: 300 in a cost event, 200 in a spend report.
    let decision_id = api.one_decision(&id).await;
    let (_, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [{"event_id": "cost-1", "decision_id": decision_id, "type": "cost", "amount": 300}]}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");
    let (_, body) = api
        .post(
            &format!("/v1/campaigns/{id}/spend"),
            &api.ingest,
            json!({"reports": [spend_report("r1", "volunteers", (1, 2), json!(200))]}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");
    let events_before = api.state.log().read_after(0, 100).unwrap();
    let reports_before = api.state.store().spend_reports(&id).unwrap();
    let spec_before = api.state.store().campaign(&id).unwrap().unwrap().spec_json;

    let uri = format!("/v1/campaigns/{id}/budget");
    let cases = [
        (
            api.patch(&uri, &api.admin, json!({"budget": 400, "reason": "cut"}))
                .await,
            StatusCode::CONFLICT,
            "budget_below_spent",
            "budget 400 is below what campaign",
        ),
        (
            api.patch(&uri, &api.admin, json!({"budget": -5, "reason": "r"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_budget",
            "budget: -5 is out of range; accepted: a positive, finite amount up to 1000000000000",
        ),
        (
            api.patch(&uri, &api.admin, json!({"budget": 2e12, "reason": "r"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_budget",
            "budget: 2000000000000 is out of range",
        ),
        (
            api.patch(&uri, &api.admin, json!({"daily_cap": 5000, "reason": "r"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_budget",
            "daily_cap: 5000 is out of range; accepted: a positive, finite amount up to the budget (1000)",
        ),
        (
            api.patch(&uri, &api.admin, json!({"budget": 50, "reason": "r"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_budget",
            "daily_cap (in force): 100 is out of range",
        ),
        (
            api.patch(&uri, &api.admin, json!({"daily_cap": 0, "reason": "r"}))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_budget",
            "daily_cap: 0 is out of range",
        ),
        (
            api.patch(&uri, &api.admin, json!({"reason": "r"})).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "nothing to change",
        ),
        (
            api.patch(&uri, &api.admin, json!({"budget": 2000, "reason": "  "}))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "reason must be 1 to 500 characters",
        ),
        (
            api.patch(&uri, &api.admin, json!({"budget": 2000})).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing field `reason`",
        ),
        (
            api.patch(&uri, &api.read, json!({"budget": 2000, "reason": "r"}))
                .await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "admin",
        ),
        (
            api.patch(
                "/v1/campaigns/c_nope/budget",
                &api.admin,
                json!({"budget": 2000, "reason": "r"}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
            "c_nope",
        ),
        (
            api.patch(
                &format!("/v1/campaigns/{without}/budget"),
                &api.admin,
                json!({"budget": 2000, "reason": "r"}),
            )
            .await,
            StatusCode::CONFLICT,
            "no_flight",
            "has no [flight] in its spec",
        ),
    ];
    for ((status, body), expected_status, code, says) in cases {
        assert_error(status, &body, expected_status, says);
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (_, below) = api
        .patch(&uri, &api.admin, json!({"budget": 400, "reason": "cut"}))
        .await;
    assert!(
        below["error"]["message"].as_str().unwrap().contains(
            "already spent: 500 (300 in cost events, 200 in spend reports, 0 in platform results); accepted: a budget of at least 500"
        ),
        "{below}"
    );
    assert!(api.state.store().budget_changes(&id).unwrap().is_empty());

    // Accepted: a larger budget without a daily cap, then a cap again.
    let (status, body) = api
        .patch(
            &uri,
            &api.admin,
            json!({"budget": 2000, "daily_cap": null, "reason": "the board approved more"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["change"],
        json!({"old_budget": 1000.0, "new_budget": 2000.0, "old_daily_cap": 100.0, "new_daily_cap": null,
               "spent": 500.0, "reason": "the board approved more", "key_id": key_id(&api.admin), "at": START_MS}),
        "{body}"
    );
    assert_eq!(body["campaign"]["flight"]["budget"], 2000.0);
    assert_eq!(body["campaign"]["flight"]["daily_cap"], Value::Null);
    assert_eq!(body["campaign"]["flight"]["spec_budget"], 1000.0);
    let (status, body) = api
        .patch(
            &uri,
            &api.admin,
            json!({"daily_cap": 150, "reason": "pace December evenly"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["change"]["old_budget"].as_f64(),
            body["change"]["new_budget"].as_f64()
        ),
        (Some(2000.0), Some(2000.0))
    );
    assert_eq!(
        (
            body["change"]["old_daily_cap"].clone(),
            body["change"]["new_daily_cap"].as_f64()
        ),
        (Value::Null, Some(150.0))
    );
    let slot = api.state.campaign(&id).unwrap();
    let flight = slot.flight().unwrap();
    assert_eq!((flight.budget, flight.daily_cap), (2000.0, Some(150.0)));
    assert_eq!(
        slot.current().campaign.flight().unwrap().budget,
        1000.0,
        "the spec is as written"
    );

    // Audited; history unchanged.
    let changes = api.state.store().budget_changes(&id).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].change.reason, "the board approved more");
    assert_eq!(changes[1].change.key_id, key_id(&api.admin));
    assert_eq!(api.state.log().read_after(0, 100).unwrap(), events_before);
    assert_eq!(
        api.state.store().spend_reports(&id).unwrap(),
        reports_before
    );
    assert_eq!(
        api.state.store().campaign(&id).unwrap().unwrap().spec_json,
        spec_before
    );

    // The report lists them, oldest first, with the budget in force.
    let (_, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    let listed = report["money"]["budget_changes"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{report}");
    assert_eq!(listed[0]["reason"], "the board approved more");
    assert_eq!(
        (
            listed[0]["old_daily_cap"].as_f64(),
            listed[0]["new_daily_cap"].clone()
        ),
        (Some(100.0), Value::Null)
    );
    assert_eq!(listed[1]["new_daily_cap"], 150.0);
    assert_eq!(
        (
            report["money"]["budget"].as_f64(),
            report["money"]["daily_cap"].as_f64()
        ),
        (Some(2000.0), Some(150.0))
    );

    // A restart puts the latest change in force again.
    let reopened = open(
        api.state.store().clone(),
        Arc::new(ManualClock::new(START_MS)),
        ServerConfig::default(),
    );
    let flight = reopened.campaign(&id).unwrap().flight().unwrap();
    assert_eq!((flight.budget, flight.daily_cap), (2000.0, Some(150.0)));
    assert!(reopened.campaign(&without).unwrap().flight().is_none());
}

// ---- money: the report -----------------------------------------------------------------

#[tokio::test]
async fn the_report_shows_spend_against_the_plan_and_per_segment() {
    let api = api();
    // A September flight: the tests' clock (START_MS) is 68.6% of the way through it.
    let spec = format!(
        "{SPEC}\n[flight]\nbudget = 1000\ndaily_cap = 100\nstart = \"2026-09-01T00:00:00Z\"\nend = \"2026-10-01T00:00:00Z\"\nmin_roas = 1.5\n"
    );
    let id = api.campaign_of(&spec).await;
    let decision_id = api.one_decision(&id).await;
    let version = api.state.signer().verify(&decision_id).unwrap().version;
    let (_, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [
                {"event_id": "i", "decision_id": decision_id, "type": "impression"},
                {"event_id": "c", "decision_id": decision_id, "type": "conversion", "value": 50},
                {"event_id": "k", "decision_id": decision_id, "type": "cost", "amount": 30},
            ]}),
        )
        .await;
    assert_eq!(body["accepted"], 3, "{body}");
    let (_, body) = api
        .post(
            &format!("/v1/campaigns/{id}/spend"),
            &api.ingest,
            json!({"reports": [spend_report("r1", "volunteers", (1, 2), json!(20))]}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, false))
        .await
        .unwrap();

    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let money = &report["money"];
    let number = |field: &str| {
        money[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field}: {money}"))
    };
    assert_eq!(number("spend"), 50.0);
    assert_eq!(number("attributed_spend"), 30.0);
    assert_eq!(number("unattributed_spend"), 20.0);
    assert_eq!(
        (number("budget"), number("daily_cap"), number("budget_left")),
        (1000.0, 100.0, 950.0)
    );
    assert_eq!(money["as_of"], START_MS);
    let elapsed = (START_MS - 1_788_220_800_000) as f64 / (30.0 * 86_400_000.0);
    assert!(
        (number("flight_elapsed") - elapsed).abs() < 1e-12,
        "{money}"
    );
    assert!(
        (number("spend_plan") - 1000.0 * elapsed).abs() < 1e-9,
        "{money}"
    );
    assert!((number("spend_vs_plan_pct") - 100.0 * 50.0 / (1000.0 * elapsed)).abs() < 1e-9);
    assert_eq!(number("min_roas"), 1.5);
    assert_eq!(number("value_per_dollar"), 1.0);
    assert_eq!(number("cost_per_donor"), 50.0);
    let acting = api
        .state
        .campaign(&id)
        .unwrap()
        .current()
        .campaign
        .asks_to_act(version);
    assert_eq!(number("acting_spend_share"), if acting { 1.0 } else { 0.0 });
    let segments: Vec<(&str, f64, f64, f64)> = money["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["segment"].as_str().unwrap(),
                s["spend"].as_f64().unwrap(),
                s["attributed_spend"].as_f64().unwrap(),
                s["unattributed_spend"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        segments,
        [
            ("new-visitors", 0.0, 0.0, 0.0),
            ("past-donors", 30.0, 30.0, 0.0),
            ("volunteers", 20.0, 0.0, 20.0)
        ]
    );

    // The plan follows the budget in force and the time: none before the flight, the
    // whole budget after it.
    let (status, _) = api
        .patch(
            &format!("/v1/campaigns/{id}/budget"),
            &api.admin,
            json!({"budget": 2000, "reason": "more"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let slot = api.state.campaign(&id).unwrap();
    let at = |now_ms: i64| {
        tla_server::report::campaign_report(
            &slot,
            api.state.store(),
            &tla_core::report::ReportSettings::default(),
            100,
            now_ms,
        )
        .unwrap()
        .money
    };
    let before = at(1_788_220_800_000 - 1);
    assert_eq!(
        (before.budget, before.flight_elapsed, before.spend_plan),
        (Some(2000.0), None, None)
    );
    assert_eq!(before.spend_vs_plan_pct, None);
    let start = at(1_788_220_800_000);
    assert_eq!(
        (start.spend_plan, start.spend_vs_plan_pct),
        (Some(0.0), None)
    );
    let after = at(1_800_000_000_000);
    assert_eq!(
        (after.spend_plan, after.spend_vs_plan_pct),
        (Some(2000.0), Some(2.5))
    );
    // A campaign without a flight has spend but no budget or plan.
    let plain = api.campaign().await;
    let (_, report) = api
        .get(&format!("/v1/campaigns/{plain}/report"), &api.read)
        .await;
    for field in [
        "budget",
        "daily_cap",
        "budget_left",
        "as_of",
        "flight_elapsed",
        "spend_plan",
        "spend_vs_plan_pct",
        "min_roas",
        "value_per_dollar",
        "cost_per_donor",
        "acting_spend_share",
    ] {
        assert_eq!(report["money"][field], Value::Null, "{field}: {report}");
    }
    assert_eq!(report["money"]["spend"], 0.0);
}

// ---- money: pacing -----------------------------------------------------------------

/// A campaign with a flight prices each decision: served versions reserve their cost,
/// a budget that cannot pay gives skips with a reason and an exact propensity, logged
/// apart from the served decisions; events naming a skip are refused; the report says
/// what the next dollar buys.
#[tokio::test]
async fn a_flight_campaign_skips_when_its_budget_cannot_pay_and_logs_the_skips() {
    let api = api();
    // A September flight (the tests' clock is in it) with a budget of 5.
    let id = api
        .campaign_of(&format!(
            "{SPEC}\n[flight]\nbudget = 5\nstart = \"2026-09-01T00:00:00Z\"\nend = \"2026-10-01T00:00:00Z\"\n"
        ))
        .await;
    let decide = |count: u32| {
        let api = &api;
        let id = id.clone();
        async move {
            let (status, body) = api
                .post(
                    &format!("/v1/campaigns/{id}/decisions"),
                    &api.decide,
                    json!({"segment": "past-donors", "count": count}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["decisions"].as_array().unwrap().clone()
        }
    };
    // Nothing is known of costs: every opportunity is bought, to learn them.
    let first = decide(10).await;
    assert!(
        first
            .iter()
            .all(|d| d["version"].is_u64() && d.get("skip").is_none()),
        "{first:?}"
    );
    // Each costs 1: five of them spend the budget.
    let events: Vec<Value> = first
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, d)| json!({"event_id": format!("c{i}"), "decision_id": d["decision_id"], "type": "cost", "amount": 1.0}))
        .collect();
    let (_, body) = api
        .post("/v1/events", &api.ingest, json!({ "events": events }))
        .await;
    assert_eq!(body["accepted"], 5, "{body}");
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, false))
        .await
        .unwrap();

    let second = decide(20).await;
    for d in &second {
        assert_eq!(d["skip"]["reason"], "budget", "{d}");
        assert!(
            d["skip"]["message"]
                .as_str()
                .unwrap()
                .contains("do not bid")
        );
        assert_eq!(d["propensity"], 1.0);
        assert!(d.get("version").is_none());
    }
    // An event naming a skip is refused, saying why.
    let (_, body) = api
        .post(
            "/v1/events",
            &api.ingest,
            json!({"events": [{"event_id": "s0", "decision_id": second[0]["decision_id"], "type": "impression"}]}),
        )
        .await;
    assert_eq!(body["rejected"][0]["code"], "invalid_decision_id", "{body}");
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("names a skip"),
        "{body}"
    );

    // Both kinds are logged; the served decisions' readers leave skips out.
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, false))
        .await
        .unwrap();
    let store = api.state.store();
    let served = store.decisions(&id, 0, 1_000).unwrap();
    assert_eq!(served.len(), 10);
    assert!(served.iter().all(|(_, d)| d.skip.is_none()));
    let skips = store.skips(&id, 0, 1_000).unwrap();
    assert_eq!(skips.len(), 20);
    assert!(
        skips
            .iter()
            .all(|(_, d)| d.skip.as_deref() == Some("budget") && d.propensity == 1.0)
    );

    // The report gives the price of money in words.
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        report["money"]["price_of_money"].is_number(),
        "{}",
        report["money"]
    );
    assert!(report["money"]["price_of_money_text"].is_string());
    assert_eq!(report["money"]["spend"], 5.0);

    // Raising the budget lifts the budget's limit at the next decision: what is
    // skipped now is skipped for its price (an impression costing 1 is worth far less
    // here), with the probability of the skip under it.
    let (status, body) = api
        .patch(
            &format!("/v1/campaigns/{id}/budget"),
            &api.admin,
            json!({"budget": 100.0, "reason": "more"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = decide(20).await;
    for d in &third {
        assert_ne!(d["skip"]["reason"], "budget", "{d}");
        let p = d["propensity"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0);
    }
}

/// Outside its flight a campaign serves nothing: each decision is a skip saying so.
#[tokio::test]
async fn a_flight_campaign_skips_before_its_flight() {
    let api = api();
    let id = api
        .campaign_of(&format!(
            "{SPEC}\n[flight]\nbudget = 1000\nstart = \"2026-12-01T00:00:00Z\"\nend = \"2027-01-01T00:00:00Z\"\n"
        ))
        .await;
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "past-donors", "count": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for d in body["decisions"].as_array().unwrap() {
        assert_eq!(d["skip"]["reason"], "before_flight", "{d}");
    }
}

/// A restart keeps what the flight and the day have spent: a day whose cap is spent
/// stays closed, taken from the store, though the costs were in a snapshot.
#[tokio::test]
async fn a_restart_keeps_the_days_spend_against_its_cap() {
    let dir = std::env::temp_dir().join(format!("tla-api-pacing-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = format!(
        "{SPEC}\n[flight]\nbudget = 100\ndaily_cap = 3\nstart = \"2026-09-01T00:00:00Z\"\nend = \"2026-10-01T00:00:00Z\"\n"
    );
    let reasons = |body: &Value| -> Vec<String> {
        body["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["skip"]["reason"].as_str().unwrap_or("served").to_string())
            .collect()
    };
    let (id, admin) = {
        let store = Store::open(&dir).unwrap();
        let admin = key(&store, 1, &["admin"]);
        let state = open(
            store,
            Arc::new(ManualClock::new(START_MS)),
            ServerConfig::default(),
        );
        let api = Api {
            state: state.clone(),
            read: admin.clone(),
            decide: admin.clone(),
            ingest: admin.clone(),
            admin: admin.clone(),
        };
        let id = api.campaign_of(&spec).await;
        let (_, body) = api
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &api.decide,
                json!({"segment": "new-visitors", "count": 3}),
            )
            .await;
        let events: Vec<Value> = body["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"event_id": format!("c{i}"), "decision_id": d["decision_id"], "type": "cost", "amount": 1.0}))
            .collect();
        let (_, body) = api
            .post("/v1/events", &api.ingest, json!({ "events": events }))
            .await;
        assert_eq!(body["accepted"], 3, "{body}");
        // Applied and snapshotted: the replay will not see these costs again.
        let s = state.clone();
        tokio::task::spawn_blocking(move || learner::step(&s, true))
            .await
            .unwrap();
        let (_, body) = api
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &api.decide,
                json!({"segment": "new-visitors", "count": 5}),
            )
            .await;
        assert!(reasons(&body).iter().all(|r| r == "daily_cap"), "{body}");
        (id, admin)
    };
    let store = Store::open(&dir).unwrap();
    let state = open(
        store,
        Arc::new(ManualClock::new(START_MS + 1_000)),
        ServerConfig::default(),
    );
    let api = Api {
        state,
        read: admin.clone(),
        decide: admin.clone(),
        ingest: admin.clone(),
        admin,
    };
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "new-visitors", "count": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(reasons(&body).iter().all(|r| r == "daily_cap"), "{body}");
    let (_, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(report["money"]["spend"], 3.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A campaign with a holdout: a unit's arm and version are sticky, a bad unit is
/// refused with its code, held-out decisions are the even split with its propensity,
/// the arm is answered, logged and signed, and the report's holdout section compares
/// the arms while the lift section reads the policy's arm only.
#[tokio::test]
async fn a_holdout_is_sticky_per_unit_logged_and_reported() {
    let api = api();
    let spec = format!("holdout = 0.3\n{SPEC}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/campaigns",
            Some(&api.admin),
            "application/toml",
            spec.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let uri = format!("/v1/campaigns/{id}/decisions");
    for bad in ["", "a b", "é", &"x".repeat(129)] {
        let (status, body) = api
            .post(
                &uri,
                &api.decide,
                json!({"segment": "past-donors", "unit": bad}),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "unit");
        assert_eq!(body["error"]["code"], "invalid_unit", "{body}");
    }
    let allowed = tla_core::spec::CampaignSpec::from_toml_str(&spec)
        .unwrap()
        .validate()
        .unwrap()
        .allowed_versions();
    let mut answers = Vec::new();
    for u in 0..200 {
        let unit = format!("person-{u}");
        let (status, body) = api
            .post(
                &uri,
                &api.decide,
                json!({"segment": "past-donors", "unit": unit}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let d = body["decisions"][0].clone();
        // The same unit again, the table unchanged: the same arm and version.
        let (_, again) = api
            .post(
                &uri,
                &api.decide,
                json!({"segment": "past-donors", "unit": unit}),
            )
            .await;
        let again = &again["decisions"][0];
        assert_eq!(again["held_out"], d["held_out"]);
        assert_eq!(
            again["version"]["index"], d["version"]["index"],
            "{d} {again}"
        );
        answers.push(d);
    }
    let held: Vec<&Value> = answers.iter().filter(|d| d["held_out"] == true).collect();
    assert!((30..=90).contains(&held.len()), "{} held out", held.len());
    for d in &held {
        let p = d["propensity"].as_f64().unwrap();
        assert!((p - 1.0 / allowed as f64).abs() < 1e-12, "{d}");
    }
    // Without a unit the request is assigned at random, and says which.
    let (_, body) = api
        .post(
            &uri,
            &api.decide,
            json!({"segment": "past-donors", "count": 3}),
        )
        .await;
    assert!(body["decisions"][0]["held_out"].is_boolean(), "{body}");
    // Conversions for every decision, so both arms have values.
    let ids: Vec<String> = answers
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, decision_id)| {
            json!({"event_id": format!("c{i}"), "decision_id": decision_id,
                   "type": "conversion", "value": 5 + (i % 7) * 5})
        })
        .collect();
    let (status, body) = api
        .post("/v1/events", &api.ingest, json!({ "events": events }))
        .await;
    assert_eq!((status, &body["accepted"]), (StatusCode::OK, &json!(200)));
    write_decisions(&api.state).await.unwrap();
    // The log and the signed id carry the arm.
    for d in &answers {
        let stored = api
            .state
            .store()
            .decision(d["decision_id"].as_str().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(Value::Bool(stored.held_out), d["held_out"]);
        let claims = api
            .state
            .signer()
            .verify(d["decision_id"].as_str().unwrap())
            .unwrap();
        assert_eq!(Value::Bool(claims.held_out), d["held_out"]);
    }
    let state = api.state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, true))
        .await
        .unwrap();
    // The holdout's table, the even split, stands while the policy's tables are
    // redrawn: a held-out unit still sees its version.
    for (u, d) in answers.iter().enumerate() {
        if d["held_out"] != true {
            continue;
        }
        let (_, again) = api
            .post(
                &uri,
                &api.decide,
                json!({"segment": "past-donors", "unit": format!("person-{u}")}),
            )
            .await;
        assert_eq!(
            again["decisions"][0]["version"]["index"],
            d["version"]["index"]
        );
    }
    let (u, d) = answers
        .iter()
        .enumerate()
        .find(|(_, d)| d["held_out"] == false)
        .unwrap();
    let (_, again) = api
        .post(
            &uri,
            &api.decide,
            json!({"segment": "past-donors", "unit": format!("person-{u}")}),
        )
        .await;
    assert_ne!(
        again["decisions"][0]["model_version"], d["model_version"],
        "the policy's tables were redrawn"
    );
    write_decisions(&api.state).await.unwrap();
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let h = &report["holdout"];
    let all = logged(&api.state, &id).len() as u64;
    let (policy, holdout) = (
        h["policy"]["decisions"].as_u64().unwrap(),
        h["holdout"]["decisions"].as_u64().unwrap(),
    );
    assert_eq!(policy + holdout, all, "{h}");
    assert!(holdout >= held.len() as u64);
    assert_eq!(report["lift"]["rows"].as_u64().unwrap(), policy, "{report}");
    assert_eq!(h["share"], 0.3);
    let p = &h["per_impression"];
    let width = |b: &Value| b["upper"].as_f64().unwrap() - b["lower"].as_f64().unwrap();
    assert!(width(&p["sequence"]) > width(&p["fixed"]), "{p}");
    assert!(
        h["sequence_validity"]
            .as_str()
            .unwrap()
            .contains("every look"),
        "{h}"
    );
    // A campaign without a holdout reports none.
    let plain = api.campaign().await;
    let (_, report) = api
        .get(&format!("/v1/campaigns/{plain}/report"), &api.read)
        .await;
    assert!(report.get("holdout").is_none(), "{report}");
}
