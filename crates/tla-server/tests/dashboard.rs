//! The dashboard through the router, without a socket: access (sign-in, sessions,
//! CSRF, Bearer keys), the security headers, the size of the embedded assets, the
//! rollups behind the charts (kept across a restart, counted once) and a control.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tla_server::auth::new_key;
use tla_server::dashboard::{ASSET_BUDGET_BYTES, ASSETS, CSP};
use tla_server::{AppState, ManualClock, ServerConfig, app, learner};
use tla_store::{KeyRow, Store};
use tower::ServiceExt;

const SPEC: &str = include_str!("../../../examples/small.toml");
const START_MS: i64 = 1_790_000_000_000;

fn key(store: &Store, seed: u8, scopes: &[&str]) -> String {
    let key = new_key([seed; 22]);
    store
        .insert_key(&KeyRow {
            id: key.id.clone(),
            hash: key.hash,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at_ms: 0,
            revoked: false,
            label: "test".into(),
        })
        .unwrap();
    key.token
}

fn open(store: &Store, config: ServerConfig) -> AppState {
    let log = Arc::new(store.event_log());
    AppState::open(
        store.clone(),
        log,
        Arc::new(ManualClock::new(START_MS)),
        b"test secret",
        config,
    )
    .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    headers: &[(header::HeaderName, String)],
    body: String,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer(token: &str) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {token}"))
}

fn form() -> (header::HeaderName, String) {
    (
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".into(),
    )
}

async fn create(state: &AppState, admin: &str) -> String {
    let reply = call(
        state,
        "POST",
        "/v1/campaigns",
        &[
            bearer(admin),
            (header::CONTENT_TYPE, "application/toml".into()),
        ],
        SPEC.into(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    serde_json::from_str::<Value>(&reply.text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Serves `n` decisions of `id` and sends an impression for each (one conversion of
/// 10 for the first); returns how many were accepted.
async fn traffic(state: &AppState, key: &str, id: &str, n: usize, tag: &str) -> u64 {
    let reply = call(
        state,
        "POST",
        &format!("/v1/campaigns/{id}/decisions"),
        &[
            bearer(key),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        json!({"segment": "new-visitors", "count": n}).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let decisions: Value = serde_json::from_str(&reply.text).unwrap();
    let mut events: Vec<Value> = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"event_id": format!("{tag}-{i}"), "decision_id": d["decision_id"], "type": "impression"}))
        .collect();
    events.push(json!({"event_id": format!("{tag}-c"), "decision_id": decisions["decisions"][0]["decision_id"], "type": "conversion", "value": 10.0}));
    let reply = call(
        state,
        "POST",
        "/v1/events",
        &[
            bearer(key),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        json!({ "events": events }).to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    serde_json::from_str::<Value>(&reply.text).unwrap()["accepted"]
        .as_u64()
        .unwrap()
}

/// The session cookie a sign-in answers, as `name=value`.
async fn sign_in(state: &AppState, token: &str) -> String {
    let reply = call(
        state,
        "POST",
        "/signin",
        &[form()],
        format!("key={token}&next=%2F"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.headers[header::LOCATION], "/");
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 32].to_owned()
}

#[test]
fn the_scripts_and_styles_fit_the_budget() {
    let total: usize = ASSETS.iter().map(|(_, _, bytes)| bytes.len()).sum();
    assert!(
        total <= ASSET_BUDGET_BYTES,
        "scripts and styles weigh {total} bytes, over {ASSET_BUDGET_BYTES}"
    );
    assert!(CSP.contains("default-src 'self'") && CSP.contains("script-src 'self'"));
    assert!(!CSP.contains("unsafe"));
}

#[tokio::test]
async fn without_a_key_there_is_no_campaign_data() {
    let store = Store::open_in_memory().unwrap();
    let admin = key(&store, 1, &["admin"]);
    let state = open(&store, ServerConfig::default());
    let id = create(&state, &admin).await;
    let reply = call(&state, "GET", "/", &[], String::new()).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/signin?next=/");
    assert_eq!(reply.headers[header::CONTENT_SECURITY_POLICY], CSP);
    for uri in [
        format!("/campaigns/{id}/series.json"),
        format!("/campaigns/{id}/live"),
    ] {
        let reply = call(&state, "GET", &uri, &[], String::new()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(!reply.text.contains("headline"), "{uri}: {}", reply.text);
    }
    let reply = call(
        &state,
        "GET",
        &format!("/campaigns/{id}"),
        &[(header::COOKIE, "tla_session=forged".into())],
        String::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = call(&state, "GET", "/signin", &[], String::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text.contains("<script>"), "no inline script");
    let reply = call(
        &state,
        "POST",
        "/signin",
        &[form()],
        "key=tla_000000000000_00000000000000000000000000000000".into(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    assert!(reply.text.contains("unknown or revoked API key"));
}

#[tokio::test]
async fn a_session_views_and_an_admin_session_acts_with_its_csrf_token() {
    let store = Store::open_in_memory().unwrap();
    let admin = key(&store, 1, &["admin"]);
    let read = key(&store, 2, &["read"]);
    let state = open(&store, ServerConfig::default());
    let id = create(&state, &admin).await;
    let reader = sign_in(&state, &read).await;
    let list = call(
        &state,
        "GET",
        "/",
        &[(header::COOKIE, reader.clone())],
        String::new(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(&id), "{}", list.text);
    // The report is computed off the request path; a page waits for it a little, then
    // renders without it and says so.
    let mut tries = 0;
    let page = loop {
        let page = call(
            &state,
            "GET",
            &format!("/campaigns/{id}"),
            &[(header::COOKIE, reader.clone())],
            String::new(),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if page.text.contains("Leaderboards") {
            break page;
        }
        assert!(
            page.text.contains("The report is being computed"),
            "{}",
            page.text
        );
        tries += 1;
        assert!(tries < 100, "the report was not computed in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(page.headers[header::CONTENT_SECURITY_POLICY], CSP);
    assert!(page.text.contains("Leaderboards") && page.text.contains("Health"));
    assert!(!page.text.contains("<script>") && !page.text.contains("style=\""));
    // A read key views but does not act, CSRF token or not.
    let csrf = csrf_of(&page.text);
    let pause = format!("/campaigns/{id}/controls/pause");
    let reply = call(
        &state,
        "POST",
        &pause,
        &[(header::COOKIE, reader), form()],
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    // An admin session acts only with its own token.
    let admin_cookie = sign_in(&state, &admin).await;
    for wrong in ["", &csrf] {
        let reply = call(
            &state,
            "POST",
            &pause,
            &[(header::COOKIE, admin_cookie.clone()), form()],
            format!("csrf={wrong}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        assert!(reply.text.contains("CSRF"), "{}", reply.text);
    }
    let page = call(
        &state,
        "GET",
        &format!("/campaigns/{id}"),
        &[(header::COOKIE, admin_cookie.clone())],
        String::new(),
    )
    .await;
    let reply = call(
        &state,
        "POST",
        &pause,
        &[(header::COOKIE, admin_cookie.clone()), form()],
        format!("csrf={}", csrf_of(&page.text)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert!(
        state
            .campaign(&id)
            .unwrap()
            .paused
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    // The same audit as the API's pause; a Bearer key needs no CSRF token.
    let reply = call(
        &state,
        "POST",
        &format!("/v1/campaigns/{id}/resume"),
        &[bearer(&admin)],
        String::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = call(
        &state,
        "POST",
        &pause,
        &[bearer(&admin), form()],
        String::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let actions: Vec<String> = store
        .controls(&id)
        .unwrap()
        .into_iter()
        .map(|c| c.audit.action)
        .collect();
    assert_eq!(actions, ["pause", "resume", "pause"]);
    let series = call(
        &state,
        "GET",
        &format!("/campaigns/{id}/series.json"),
        &[bearer(&read)],
        String::new(),
    )
    .await;
    let series: Value = serde_json::from_str(&series.text).unwrap();
    assert_eq!(series["markers"].as_array().unwrap().len(), 3, "{series}");
    // Signing out ends the session.
    let reply = call(
        &state,
        "POST",
        "/signout",
        &[(header::COOKIE, admin_cookie.clone()), form()],
        format!("csrf={}", csrf_of(&page.text)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = call(
        &state,
        "GET",
        "/",
        &[(header::COOKIE, admin_cookie)],
        String::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn rollups_feed_the_charts_and_survive_a_restart_counted_once() {
    let store = Store::open_in_memory().unwrap();
    let admin = key(&store, 1, &["admin"]);
    let state = open(&store, ServerConfig::default());
    let id = create(&state, &admin).await;
    assert_eq!(traffic(&state, &admin, &id, 40, "a").await, 41);
    learner::step(&state, false);
    let series = |state: AppState| {
        let id = id.clone();
        let admin = admin.clone();
        async move {
            let reply = call(
                &state,
                "GET",
                &format!("/campaigns/{id}/series.json"),
                &[bearer(&admin)],
                String::new(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            let s: Value = serde_json::from_str(&reply.text).unwrap();
            let impressions: u64 = s["total"]["impressions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum();
            let by_option: u64 = s["components"][0]["impressions"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|col| col.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
                .sum();
            (impressions, by_option, s["total"]["raised"].clone())
        }
    };
    // Learned, not yet stored: the chart shows it already.
    assert_eq!(series(state.clone()).await, (40, 40, json!([10.0])));
    assert_eq!(store.rollup_through(&id).unwrap(), 0);
    learner::step(&state, true);
    assert!(store.rollup_through(&id).unwrap() > 0);
    assert_eq!(traffic(&state, &admin, &id, 5, "b").await, 6);
    learner::step(&state, false);
    assert_eq!(series(state.clone()).await.0, 45);
    // A restart replaying every event from the start counts none twice.
    let reopened = open(
        &store,
        ServerConfig {
            replay_from_start: true,
            ..ServerConfig::default()
        },
    );
    learner::step(&reopened, true);
    assert_eq!(series(reopened.clone()).await, (45, 45, json!([20.0])));
    // The page's health lists refused events by code.
    let reply = call(
        &reopened,
        "POST",
        "/v1/events",
        &[
            bearer(&admin),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        json!({"events": [{"event_id": "bad", "decision_id": "forged", "type": "impression"}]})
            .to_string(),
    )
    .await;
    let code = serde_json::from_str::<Value>(&reply.text).unwrap()["rejected"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = call(
        &reopened,
        "GET",
        &format!("/campaigns/{id}"),
        &[bearer(&admin)],
        String::new(),
    )
    .await;
    assert!(
        page.text.contains(&format!("<code>{code}</code> 1")),
        "{code}"
    );
}

#[tokio::test]
async fn assets_are_served_from_the_binary() {
    let store = Store::open_in_memory().unwrap();
    let state = open(&store, ServerConfig::default());
    for (name, media, bytes) in ASSETS {
        let reply = call(
            &state,
            "GET",
            &format!("/assets/{name}"),
            &[],
            String::new(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers[header::CONTENT_TYPE], media);
        assert_eq!(reply.text.len(), bytes.len());
    }
    let reply = call(&state, "GET", "/assets/nope.js", &[], String::new()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
