//! Living campaigns through the API (no socket, in-memory store): decisions that carry
//! what rendering needs, idempotent creation, archive instead of delete, and revisions
//! of a running campaign. Every response is checked against the OpenAPI document.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use support::openapi_check::OpenApiCheck;
use tla_server::auth::new_key;
use tla_server::{AppState, ManualClock, ServerConfig, app, learner};
use tla_store::{KeyRow, Store};
use tower::ServiceExt;

fn openapi() -> &'static OpenApiCheck {
    static CHECK: OnceLock<OpenApiCheck> = OnceLock::new();
    CHECK.get_or_init(|| OpenApiCheck::new(tla_server::openapi::document(&ServerConfig::default())))
}

const SPEC: &str = include_str!("../../../examples/small.toml");

/// Where the tests' manual clocks start, ms since the Unix epoch.
const START_MS: i64 = 1_790_000_000_000;

struct Api {
    state: AppState,
    store: Store,
    clock: Arc<ManualClock>,
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

fn open(store: &Store, clock: &Arc<ManualClock>) -> AppState {
    let log = Arc::new(store.event_log());
    AppState::open(
        store.clone(),
        log,
        clock.clone(),
        b"test secret",
        ServerConfig::default(),
    )
    .unwrap()
}

fn api() -> Api {
    let store = Store::open_in_memory().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let admin = key(&store, 1, &["admin"]);
    let decide = key(&store, 2, &["decide"]);
    let ingest = key(&store, 3, &["ingest"]);
    let read = key(&store, 4, &["read"]);
    let state = open(&store, &clock);
    Api {
        state,
        store,
        clock,
        admin,
        decide,
        ingest,
        read,
    }
}

impl Api {
    /// A request through the router; the response is checked against the document.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app(self.state.clone())
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if let Err(errors) = openapi().response(
            method,
            uri.split('?').next().unwrap(),
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
            token,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    async fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", uri, token, &[], String::new()).await
    }

    /// Creates a campaign from a TOML spec; answers its body.
    async fn create(&self, spec: &str, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let mut headers = vec![("content-type", "application/toml")];
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key", key));
        }
        self.call("POST", "/v1/campaigns", &self.admin, &headers, spec.into())
            .await
    }

    async fn campaign(&self) -> String {
        let (status, body) = self.create(SPEC, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn decisions(&self, id: &str, segment: &str, count: u32) -> Vec<Value> {
        let (status, body) = self
            .post(
                &format!("/v1/campaigns/{id}/decisions"),
                &self.decide,
                json!({"segment": segment, "count": count}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["decisions"].as_array().unwrap().clone()
    }

    async fn learn(&self) {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || learner::step(&state, false))
            .await
            .unwrap();
    }
}

fn assert_error(
    status: StatusCode,
    body: &Value,
    expected: StatusCode,
    code: &str,
    fragment: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(fragment),
        "{message:?} should contain {fragment:?}"
    );
}

#[tokio::test]
async fn decisions_carry_each_options_text_or_asset_and_the_rendered_text() {
    let api = api();
    let id = api.campaign().await;
    for decision in api.decisions(&id, "past-donors", 20).await {
        assert_eq!(decision["revision"], 1, "{decision}");
        let parts = decision["parts"].as_array().unwrap();
        let names: Vec<&str> = parts
            .iter()
            .map(|p| p["component"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["headline", "image", "cta"]);
        // Text options carry their text, the image its asset reference.
        assert!(parts[0]["text"].is_string() && parts[0]["asset"].is_null());
        let asset = parts[1]["asset"].as_str().unwrap();
        assert!(asset.starts_with("assets/images/"), "{asset}");
        assert!(parts[1]["text"].is_null());
        assert_eq!(parts[1]["shown"], asset);
        // The template "{headline} [{cta}]" rendered.
        let expected = format!(
            "{} [{}]",
            parts[0]["text"].as_str().unwrap(),
            parts[2]["text"].as_str().unwrap()
        );
        assert_eq!(decision["text"], expected.as_str());
        // Today's fields are kept.
        assert_eq!(
            decision["options"]["image"], parts[1]["option"],
            "{decision}"
        );
        assert!(decision["decision_id"].is_string() && decision["propensity"].is_number());
    }
    let (status, version) = api
        .get(&format!("/v1/campaigns/{id}/versions/0"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["revision"], 1);
    assert_eq!(version["parts"][0]["option"], "river_needs_you");
    assert_eq!(version["text"], "The river needs you [Donate $10]");

    // Without a template, the parts are joined in component order.
    let untemplated = SPEC.replace("template = \"{headline} [{cta}]\"\n", "");
    let (status, body) = api.create(&untemplated, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let other = body["id"].as_str().unwrap();
    let (_, version) = api
        .get(&format!("/v1/campaigns/{other}/versions/0"), &api.read)
        .await;
    assert_eq!(
        version["text"],
        "The river needs you | assets/images/volunteers-canoe.jpg | Donate $10"
    );
}

#[tokio::test]
async fn a_retried_create_with_its_idempotency_key_makes_one_campaign() {
    let api = api();
    let (status, first) = api.create(SPEC, Some("create-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The same spec again, as JSON this time: the same campaign, 200.
    let spec_json =
        serde_json::to_string(&tla_core::spec::CampaignSpec::from_toml_str(SPEC).unwrap()).unwrap();
    let (status, again) = api
        .call(
            "POST",
            "/v1/campaigns",
            &api.admin,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "create-1"),
            ],
            spec_json,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    // The same key with another spec is refused, and stores nothing.
    let renamed = SPEC.replace("spring appeal", "autumn appeal");
    let (status, body) = api.create(&renamed, Some("create-1")).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "from another spec",
    );
    // Another key makes another campaign; a malformed key is refused.
    let (status, _) = api.create(SPEC, Some("create-2")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api.create(SPEC, Some("bad key")).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        "visible ASCII",
    );
    assert_eq!(api.store.campaigns().unwrap().len(), 2);
    // The key survives a restart.
    let restarted = Api {
        state: open(&api.store, &api.clock),
        ..api
    };
    let (status, body) = restarted.create(SPEC, Some("create-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], first["id"]);
}

#[tokio::test]
async fn a_spec_sent_as_curl_d_sends_it_is_refused_with_how_to_send_it() {
    let api = api();
    // `curl -d @spec.toml` drops the line breaks and sends a form.
    let flattened: String = SPEC.lines().filter(|l| !l.starts_with('#')).collect();
    let (status, body) = api
        .call(
            "POST",
            "/v1/campaigns",
            &api.admin,
            &[("content-type", "application/x-www-form-urlencoded")],
            flattened.clone(),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "--data-binary @spec.toml",
    );
    let (status, body) = api.create(&flattened, None).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "no line breaks",
    );
}

#[tokio::test]
async fn an_archived_campaign_serves_nothing_keeps_its_report_and_leaves_the_list() {
    let api = api();
    let id = api.campaign().await;
    let kept = api.campaign().await;
    let decision = api.decisions(&id, "past-donors", 1).await[0]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/archive"),
            &api.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "archived");
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/decisions"),
            &api.decide,
            json!({"segment": "past-donors"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict", "archived");
    let (status, body) = api
        .post(&format!("/v1/campaigns/{id}/resume"), &api.admin, json!({}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "campaign_archived",
        "cannot be resumed",
    );
    // Events for its earlier decisions are still taken; the report stays readable.
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
    api.learn().await;
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["events_learned"], 1);
    // Hidden from the default list, shown when asked for.
    let ids = |list: &Value| -> Vec<String> {
        list["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, list) = api.get("/v1/campaigns", &api.read).await;
    assert_eq!(ids(&list), [kept.clone()]);
    let (_, list) = api.get("/v1/campaigns?status=archived", &api.read).await;
    assert_eq!(ids(&list), [id.clone()]);
    let (_, list) = api
        .get("/v1/campaigns?include_archived=true", &api.read)
        .await;
    assert_eq!(ids(&list).len(), 2);
    let (status, body) = api.get("/v1/campaigns?status=gone", &api.read).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "accepted: active, paused, archived",
    );
    // Archived across a restart.
    let restarted = open(&api.store, &api.clock);
    assert!(restarted.campaign(&id).unwrap().is_archived());
}
