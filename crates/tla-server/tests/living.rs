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

/// A revision and a budget change sent with an `Idempotency-Key` to a single server:
/// a retry answers the first outcome and changes nothing, after a restart too (the key
/// is stored with the row it made); the same key with another request is refused.
#[tokio::test]
async fn a_retried_revision_or_budget_change_with_its_key_is_made_once() {
    let api = api();
    let day = 86_400_000;
    let spec = format!(
        "{SPEC}\n[flight]\nbudget = 100.0\nstart = \"{}\"\nend = \"{}\"\n",
        tla_core::timestamp::format_rfc3339(START_MS - day),
        tla_core::timestamp::format_rfc3339(START_MS + 10 * day)
    );
    let (status, body) = api.create(&spec, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let revised = with_new_headline(&spec);
    async fn put(api: &Api, id: &str, spec: &str, key: &str, reason: &str) -> (StatusCode, Value) {
        let headers = [
            ("content-type", "application/toml"),
            ("idempotency-key", key),
        ];
        let uri = format!("/v1/campaigns/{id}/spec?reason={reason}");
        api.call("PUT", &uri, &api.admin, &headers, spec.into())
            .await
    }
    async fn patch(api: &Api, id: &str, key: &str, budget: f64) -> (StatusCode, Value) {
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        let body = json!({"budget": budget, "reason": "more"}).to_string();
        let uri = format!("/v1/campaigns/{id}/budget");
        api.call("PATCH", &uri, &api.admin, &headers, body).await
    }

    let (status, first) = put(&api, &id, &revised, "rev-1", "new").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["revision"]["revision"], 2, "{first}");
    api.clock.advance(5_000);
    let (status, retry) = put(&api, &id, &revised, "rev-1", "new").await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first);
    let (status, body) = put(&api, &id, &revised, "rev-1", "another").await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "another change",
    );
    assert_eq!(api.store.revisions(&id).unwrap().len(), 1);

    let (status, first_change) = patch(&api, &id, "budget-1", 150.0).await;
    assert_eq!(status, StatusCode::OK, "{first_change}");
    api.clock.advance(5_000);
    let (status, retry) = patch(&api, &id, "budget-1", 150.0).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry, first_change);
    let (status, body) = patch(&api, &id, "budget-1", 170.0).await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "another change",
    );
    // Another key is another change.
    let (status, body) = patch(&api, &id, "budget-2", 170.0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.store.budget_changes(&id).unwrap().len(), 2);

    // After a restart the keys still answer their first outcome, nothing made again.
    let restarted = Api {
        state: open(&api.store, &api.clock),
        ..api
    };
    let (status, retry) = put(&restarted, &id, &revised, "rev-1", "new").await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["revision"], first["revision"]);
    assert_eq!(retry["summary"], first["summary"]);
    let (status, retry) = patch(&restarted, &id, "budget-1", 150.0).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["change"], first_change["change"]);
    // The budget in force is the last change's, not the retried one's.
    assert_eq!(retry["campaign"]["flight"]["budget"], 170.0, "{retry}");
    assert_eq!(restarted.store.revisions(&id).unwrap().len(), 1);
    assert_eq!(restarted.store.budget_changes(&id).unwrap().len(), 2);
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
    assert_eq!(ids(&list), [kept]);
    let (_, list) = api.get("/v1/campaigns?status=archived", &api.read).await;
    assert_eq!(ids(&list), std::slice::from_ref(&id));
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

/// Revision 2: a new headline, first in its list (every headline's index moves).
fn with_new_headline(spec: &str) -> String {
    spec.replace(
        "  { name = \"river_needs_you\"",
        "  { name = \"new_bridge\", text = \"A new bridge for the river\", asks_action = false },\n  { name = \"river_needs_you\"",
    )
}

/// Revision 3: the heron image retired.
fn with_heron_retired(spec: &str) -> String {
    spec.replace(
        "{ name = \"heron\", asset = \"assets/images/heron-at-dawn.jpg\", asks_action = false }",
        "{ name = \"heron\", asset = \"assets/images/heron-at-dawn.jpg\", asks_action = false, retired = true }",
    )
}

/// Revision 4: one version pinned for the volunteers ("stop and ship").
fn with_volunteers_pinned(spec: &str) -> String {
    format!(
        "{spec}\n[[pins]]\nsegment = \"volunteers\"\noptions = [\"headline.new_bridge\", \"image.canoe\", \"cta.donate_10\"]\n"
    )
}

impl Api {
    async fn revise(&self, id: &str, spec: &str, reason: &str) -> (StatusCode, Value) {
        self.call(
            "PUT",
            &format!("/v1/campaigns/{id}/spec?reason={reason}"),
            &self.admin,
            &[("content-type", "application/toml")],
            spec.into(),
        )
        .await
    }
}

/// One served decision, as the test keeps it.
#[derive(Debug, Clone)]
struct Served {
    decision_id: String,
    revision: u64,
    /// `(component, option)` names.
    options: Vec<(String, String)>,
}

fn served(decision: &Value) -> Served {
    Served {
        decision_id: decision["decision_id"].as_str().unwrap().to_owned(),
        revision: decision["revision"].as_u64().unwrap(),
        options: decision["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["component"].as_str().unwrap().to_owned(),
                    p["option"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

/// The must-show test of living campaigns: three revisions (a new headline, a retired
/// image, a version pinned for a segment) while decisions and events flow. No request
/// fails; a retired option is never served after its revision, nor anything but the
/// pinned version to the pinned segment; every propensity is in (0, 1]; events for
/// decisions of every revision, the oldest last, are accepted and teach the options
/// the decisions showed, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_revisions_while_decisions_and_events_flow() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let api = Arc::new(api());
    let id = api.campaign().await;
    // Revisions confirmed by their answer: a decision asked after that is served
    // under it or a later one.
    let confirmed = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let decided: Arc<Mutex<Vec<(String, Served)>>> = Arc::default();
    let mut deciders = Vec::new();
    for segment in ["new-visitors", "past-donors", "volunteers"] {
        let (api, id, confirmed, stop, decided) = (
            api.clone(),
            id.clone(),
            confirmed.clone(),
            stop.clone(),
            decided.clone(),
        );
        deciders.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let at_least = confirmed.load(Ordering::SeqCst);
                for decision in api.decisions(&id, segment, 5).await {
                    let propensity = decision["propensity"].as_f64().unwrap();
                    assert!(propensity > 0.0 && propensity <= 1.0, "{decision}");
                    let served = served(&decision);
                    assert!(served.revision >= at_least, "{decision}");
                    let option = |component: &str| {
                        served
                            .options
                            .iter()
                            .find(|(c, _)| c == component)
                            .unwrap()
                            .1
                            .clone()
                    };
                    if served.revision >= 3 {
                        assert_ne!(option("image"), "heron", "{decision}");
                    }
                    if served.revision >= 4 && segment == "volunteers" {
                        assert_eq!(
                            (option("headline"), option("image"), option("cta")),
                            ("new_bridge".into(), "canoe".into(), "donate_10".into()),
                            "{decision}"
                        );
                        assert_eq!(propensity, 1.0);
                    }
                    decided.lock().unwrap().push((segment.to_owned(), served));
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Events for what was decided, as it is decided; the learner applies them as they
    // come. The decisions of revision 1 are kept for the end.
    let sent: Arc<Mutex<Vec<Served>>> = Arc::default();
    let kept_for_last: Arc<Mutex<Vec<Served>>> = Arc::default();
    let sender = {
        let (api, stop, decided, sent, kept) = (
            api.clone(),
            stop.clone(),
            decided.clone(),
            sent.clone(),
            kept_for_last.clone(),
        );
        tokio::spawn(async move {
            let mut batch_number = 0;
            loop {
                let stopping = stop.load(Ordering::SeqCst);
                let batch: Vec<Served> = decided
                    .lock()
                    .unwrap()
                    .drain(..)
                    .map(|(_, served)| served)
                    .collect();
                let (old, now): (Vec<Served>, Vec<Served>) = batch
                    .into_iter()
                    .partition(|s| s.revision == 1 && batch_number % 2 == 0);
                kept.lock().unwrap().extend(old);
                if !now.is_empty() {
                    send_impressions(&api, &now, batch_number).await;
                    sent.lock().unwrap().extend(now);
                }
                batch_number += 1;
                let state = api.state.clone();
                tokio::task::spawn_blocking(move || learner::step(&state, false))
                    .await
                    .unwrap();
                if stopping {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    // Waits until `count` decisions had their events sent; a failed task (its
    // assertion) ends the wait, and the test, at once.
    let failed = {
        let stop = stop.clone();
        move |tasks: &[tokio::task::JoinHandle<()>]| {
            let failed = tasks.iter().any(|t| t.is_finished()) && !stop.load(Ordering::SeqCst);
            assert!(
                !failed,
                "a decision or event task failed; see its panic above"
            );
        }
    };
    let wait_for = |count: usize, tasks: &[tokio::task::JoinHandle<()>]| {
        while sent.lock().unwrap().len() < count {
            failed(tasks);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    let rev2 = with_new_headline(SPEC);
    let rev3 = with_heron_retired(&rev2);
    let rev4 = with_volunteers_pinned(&rev3);
    let mut expected_revision = 1;
    for (spec, reason, retired) in [
        (&rev2, "new-headline", 0),
        (&rev3, "retire-heron", 1),
        (&rev4, "pin-volunteers", 0),
    ] {
        let goal = sent.lock().unwrap().len() + 60;
        tokio::task::block_in_place(|| wait_for(goal, &deciders));
        api.clock.advance(1_000);
        let (status, body) = api.revise(&id, spec, reason).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        expected_revision += 1;
        assert_eq!(body["revision"]["revision"], expected_revision, "{body}");
        assert_eq!(body["campaign"]["revision"], expected_revision);
        assert_eq!(body["revision"]["reason"], reason);
        assert_eq!(
            body["summary"]["retired_options"].as_array().unwrap().len(),
            retired
        );
        confirmed.store(expected_revision, Ordering::SeqCst);
    }
    let goal = sent.lock().unwrap().len() + 60;
    tokio::task::block_in_place(|| wait_for(goal, &deciders));
    stop.store(true, Ordering::SeqCst);
    for decider in deciders {
        decider.await.unwrap();
    }
    sender.await.unwrap();
    // The oldest decisions' events, last: they still attribute.
    let rest: Vec<Served> = decided
        .lock()
        .unwrap()
        .drain(..)
        .map(|(_, s)| s)
        .chain(kept_for_last.lock().unwrap().drain(..))
        .collect();
    assert!(rest.iter().any(|s| s.revision == 1));
    send_impressions(&api, &rest, 1_000_000).await;
    sent.lock().unwrap().extend(rest);
    api.learn().await;

    // Every impression taught the options its decision showed, by name.
    let sent = sent.lock().unwrap().clone();
    let revisions: std::collections::BTreeSet<u64> = sent.iter().map(|s| s.revision).collect();
    assert_eq!(revisions.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
    let slot = api.state.campaign(&id).unwrap();
    let current = slot.current();
    let engine = slot.engine().clone();
    assert_eq!(engine.revision(), 4);
    assert_eq!(engine.events(), sent.len() as u64);
    for (k, component) in current.campaign.spec().components.iter().enumerate() {
        for (o, option) in component.options.iter().enumerate() {
            let expected = sent
                .iter()
                .filter(|s| s.options[k] == (component.name.clone(), option.name.clone()))
                .count() as u64;
            assert_eq!(
                engine.option_counts()[k][o].impressions,
                expected,
                "{}.{}",
                component.name,
                option.name
            );
        }
    }
    // The revisions are listed, and a restart (replay of the log through them) ends at
    // the same counts.
    let (status, list) = api
        .get(&format!("/v1/campaigns/{id}/revisions"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let numbers: Vec<u64> = list["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    let restarted = open(&api.store, &api.clock);
    let slot_after = restarted.campaign(&id).unwrap();
    assert_eq!(slot_after.current().number, 4);
    assert_eq!(slot_after.engine().revision(), 4);
    assert_eq!(
        slot_after.engine().option_counts(),
        slot.engine().option_counts()
    );
    let (status, report) = api
        .get(&format!("/v1/campaigns/{id}/report"), &api.read)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
}

/// Sends one impression for each decision; every one must be accepted.
async fn send_impressions(api: &Api, decisions: &[Served], batch: usize) {
    let events: Vec<Value> = decisions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"event_id": format!("i{batch}-{i}"), "decision_id": s.decision_id, "type": "impression"})
        })
        .collect();
    let (status, body) = api
        .post("/v1/events", &api.ingest, json!({ "events": events }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["accepted"].as_u64(),
        Some(decisions.len() as u64),
        "{body}"
    );
    assert!(body["rejected"].as_array().unwrap().is_empty(), "{body}");
}

/// A revision that removes an option that was served and has events is refused with
/// the core's message (retire it instead), and nothing stored or in force changes.
#[tokio::test]
async fn a_refused_revision_changes_nothing() {
    let api = api();
    let id = api.campaign().await;
    let decisions = api.decisions(&id, "past-donors", 20).await;
    let events: Vec<Value> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"event_id": format!("e{i}"), "decision_id": d["decision_id"], "type": "impression"}))
        .collect();
    let (status, _) = api
        .post("/v1/events", &api.ingest, json!({ "events": events }))
        .await;
    assert_eq!(status, StatusCode::OK);
    api.learn().await;
    let served_image = decisions[0]["options"]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = if served_image == "heron" {
        "  { name = \"heron\", asset = \"assets/images/heron-at-dawn.jpg\", asks_action = false },\n"
    } else {
        "  { name = \"canoe\", asset = \"assets/images/volunteers-canoe.jpg\", asks_action = false },\n"
    };
    let without = SPEC.replace(line, "");
    assert_ne!(without, SPEC);
    let before = {
        let slot = api.state.campaign(&id).unwrap();
        let engine = slot.engine().clone();
        (
            engine.revision(),
            engine.events(),
            engine.option_counts().to_vec(),
        )
    };
    let (status, body) = api.revise(&id, &without, "drop-an-image").await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "revision_refused",
        "retire it instead",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&served_image),
        "{body}"
    );
    // Components changed: refused too, naming them.
    let renamed = SPEC.replace("name = \"image\"", "name = \"picture\"");
    let (status, body) = api.revise(&id, &renamed, "rename").await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "revision_refused",
        "components",
    );
    // Nothing stored, nothing in force changed.
    assert!(api.store.revisions(&id).unwrap().is_empty());
    let slot = api.state.campaign(&id).unwrap();
    assert_eq!(slot.current().number, 1);
    let engine = slot.engine().clone();
    assert_eq!(
        (
            engine.revision(),
            engine.events(),
            engine.option_counts().to_vec()
        ),
        before
    );
    let (_, campaign) = api.get(&format!("/v1/campaigns/{id}"), &api.read).await;
    assert_eq!(campaign["revision"], 1);
    let (_, list) = api
        .get(&format!("/v1/campaigns/{id}/revisions"), &api.read)
        .await;
    assert_eq!(list["revisions"].as_array().unwrap().len(), 1);
    // An archived campaign takes no revision.
    let (status, _) = api
        .post(
            &format!("/v1/campaigns/{id}/archive"),
            &api.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.revise(&id, &with_new_headline(SPEC), "late").await;
    assert_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "campaign_archived",
        "cannot be revised",
    );
}

/// An old decision's event sent after a restart is learned under the revision in
/// force, by name; versions show the revision they belong to.
#[tokio::test]
async fn an_old_decision_still_attributes_after_a_revision_and_a_restart() {
    let api = api();
    let id = api.campaign().await;
    let old = served(&api.decisions(&id, "volunteers", 1).await[0]);
    assert_eq!(old.revision, 1);
    let (status, body) = api.revise(&id, &with_new_headline(SPEC), "new").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["summary"]["added_options"],
        json!(["headline.new_bridge"])
    );
    let (_, version) = api
        .get(&format!("/v1/campaigns/{id}/versions/0"), &api.read)
        .await;
    assert_eq!(version["revision"], 2);
    assert_eq!(version["parts"][0]["option"], "new_bridge");
    let restarted = Api {
        state: open(&api.store, &api.clock),
        ..api
    };
    let (status, body) = restarted
        .post(
            "/v1/events",
            &restarted.ingest,
            json!({"events": [{"event_id": "late", "decision_id": old.decision_id, "type": "conversion", "value": 10}]}),
        )
        .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    restarted.learn().await;
    let slot = restarted.state.campaign(&id).unwrap();
    let engine = slot.engine().clone();
    let spec = slot.current().campaign.spec().clone();
    for (k, (component, option)) in old.options.iter().enumerate() {
        assert_eq!(&spec.components[k].name, component);
        let o = spec.components[k]
            .options
            .iter()
            .position(|x| &x.name == option)
            .unwrap();
        assert_eq!(
            engine.option_counts()[k][o].conversions,
            1,
            "{component}.{option}"
        );
    }
    // The new headline learned nothing.
    assert_eq!(engine.option_counts()[0][0].conversions, 0);
}

/// Snapshots and corrections meet the revisions at their point of the log: a snapshot
/// taken under revision 1, a revision, more events and a snapshot under revision 2; a
/// restart from the snapshots, a replay of the whole log and a correction's rebuild
/// (a retraction of an event of revision 1, learned before the revision) all end at
/// the engine the learner holds, at revision 2.
#[tokio::test]
async fn snapshots_replays_and_corrections_re_apply_revisions_at_their_point() {
    let api = api();
    let id = api.campaign().await;
    let step = |force: bool| {
        let state = api.state.clone();
        async move {
            tokio::task::spawn_blocking(move || learner::step(&state, force))
                .await
                .unwrap()
        }
    };
    let first = api.decisions(&id, "new-visitors", 30).await;
    send_impressions(&api, &first.iter().map(served).collect::<Vec<_>>(), 1).await;
    step(true).await;
    let (status, body) = api.revise(&id, &with_new_headline(SPEC), "news").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = api.decisions(&id, "new-visitors", 30).await;
    // Old and new decisions' events after the revision.
    let mixed: Vec<Served> = second.iter().chain(&first[..10]).map(served).collect();
    send_impressions(&api, &mixed, 2).await;
    step(true).await;
    let counts = |state: &AppState| {
        let slot = state.campaign(&id).unwrap();
        let engine = slot.engine().clone();
        (
            engine.revision(),
            engine.events(),
            engine.option_counts().to_vec(),
        )
    };
    let live = counts(&api.state);
    assert_eq!((live.0, live.1), (2, 70));
    // A restart from the snapshots, and a replay of the whole log.
    assert_eq!(counts(&open(&api.store, &api.clock)), live);
    let from_start = AppState::open(
        api.store.clone(),
        Arc::new(api.store.event_log()),
        api.clock.clone(),
        b"test secret",
        ServerConfig {
            replay_from_start: true,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    assert_eq!(counts(&from_start), live);
    // A correction of an event of revision 1 rebuilds through the revision.
    let corrector = key(&api.store, 5, &["correct"]);
    api.state.reload_keys().unwrap();
    let (status, body) = api
        .post(
            &format!("/v1/campaigns/{id}/corrections"),
            &corrector,
            json!({"event_id": "i1-0", "action": "retract", "reason": "a test impression"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rebuild"].is_object(), "{body}");
    let rebuilt = counts(&api.state);
    assert_eq!((rebuilt.0, rebuilt.1), (2, 69));
    assert_eq!(counts(&open(&api.store, &api.clock)), rebuilt);
}
