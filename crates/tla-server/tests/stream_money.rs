//! Money and retries through a shared stream (docs/scale-out.md, "State changes"):
//! two servers' states on one NATS JetStream stream, driven over HTTP.
//!
//! - A spend report sent to server A counts on server B: B refuses a budget below
//!   what A was told was spent, B's lease book counts it, and both store the same
//!   reports. The same batch re-sent to B is absorbed (duplicates), a report id with
//!   another amount is refused (`report_id_conflict`) on both.
//! - A plan made on A is stored by B as the same plan 1; a platform results import on
//!   A is stored and learned by B at the same place: the models hash the same at the
//!   same sequence; a re-import sent to B that replaces a period rebuilds both alike;
//!   a dry run publishes nothing.
//! - A revision or a budget change retried with the same `Idempotency-Key` (on the
//!   other server) applies once and answers the first outcome; the same key with
//!   another change is refused (`idempotency_key_reused`); copies stored after the
//!   deduplication window revise nothing on any server; a retry to a restarted server
//!   (which keeps no outcome) answers the stored first outcome.
//!
//! nats-server comes from scripts/nats-deps.sh; without it the tests are skipped with
//! a message, unless `CI` is set. The NATS node is killed by pid.

#![cfg(unix)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::nats::{StreamFixture, stream_fixture};
use tla_server::auth::new_key;
use tla_server::state::AppState;
use tla_store::{KeyRow, Store};
use tower::ServiceExt;

const SECRET: &[u8] = b"stream-money-test-secret-0123456789";
const SPEC: &str = include_str!("../../../examples/small.toml");
const DAY_MS: i64 = 86_400_000;

/// A store holding the admin key every server of a test shares; its token.
fn store_with_key() -> (Store, String) {
    let store = Store::open_in_memory().unwrap();
    let key = new_key([7; 22]);
    store
        .insert_key(&KeyRow {
            id: key.id.clone(),
            hash: key.hash,
            scopes: ["admin", "decide", "ingest", "read", "correct"]
                .map(String::from)
                .to_vec(),
            created_at_ms: 0,
            revoked: false,
            label: "test".into(),
        })
        .unwrap();
    (store, key.token)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    tla_core::timestamp::format_rfc3339(ms)
}

/// The example spec with a flight of `budget` from a day ago to ten days on.
fn spec_with_flight(budget: f64) -> String {
    let now = now_ms();
    format!(
        "{SPEC}\n[flight]\nbudget = {budget}\nstart = \"{}\"\nend = \"{}\"\n",
        rfc3339(now - DAY_MS),
        rfc3339(now + 10 * DAY_MS)
    )
}

/// Sends a request to `state`'s router with `headers` (the content type among them);
/// the status and the JSON body.
fn call(
    runtime: &tokio::runtime::Runtime,
    state: &AppState,
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
    let request = request.body(Body::from(body)).unwrap();
    let app = tla_server::app(state.clone());
    runtime.block_on(async move {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    })
}

fn json_call(
    runtime: &tokio::runtime::Runtime,
    state: &AppState,
    method: &str,
    uri: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Value) {
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json"));
    call(
        runtime,
        state,
        method,
        uri,
        token,
        &headers,
        body.to_string(),
    )
}

/// Creates the campaign on `state` (shared on the stream by the route) and waits until
/// every server of `all` runs it; its id.
fn create(
    runtime: &tokio::runtime::Runtime,
    state: &AppState,
    all: &[&AppState],
    token: &str,
    spec: String,
) -> String {
    let (status, body) = call(
        runtime,
        state,
        "POST",
        "/v1/campaigns",
        token,
        &[("content-type", "application/toml")],
        spec,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all.iter().all(|s| s.campaign(&id).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "the campaign did not reach every server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    id
}

/// What must be the same on every server for campaign `id`: the applied sequence, the
/// changes applied and the learned model.
fn model(state: &AppState, id: &str) -> (u64, u64, Vec<u8>) {
    let slot = state.campaign(id).unwrap();
    let engine = slot.engine();
    (
        state.applied_seq(),
        state.store().stream_changes_through().unwrap(),
        engine.snapshot(),
    )
}

/// Waits until every server has applied the whole stream (its changes included) and
/// the models of campaign `id` agree; the model.
fn settle(states: &[&AppState], id: &str) -> (u64, u64, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up = states.iter().all(|s| {
            let stream = s.stream().unwrap();
            let health = stream.health(s.applied_seq());
            let changes_left = stream
                .changes_after(s.store().stream_changes_through().unwrap(), 1)
                .len();
            health.lag == 0 && health.unapplied_events == 0 && changes_left == 0
        });
        if caught_up {
            let models: Vec<_> = states.iter().map(|s| model(s, id)).collect();
            if models.iter().all(|m| m == &models[0]) {
                return models[0].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the servers did not agree within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(report_id, segment, start, end, amount bits, impressions)` of each stored report.
type ReportView = Vec<(String, u32, i64, i64, u64, Option<u64>)>;

fn reports(store: &Store, id: &str) -> ReportView {
    store
        .spend_reports(id)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.report_id,
                r.segment,
                r.start_ms,
                r.end_ms,
                r.amount.to_bits(),
                r.impressions,
            )
        })
        .collect()
}

#[test]
fn a_spend_report_on_one_server_counts_on_every_server() {
    let Some(fixture) = stream_fixture("stream-money-spend", "tla_money_spend") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let ((store_a, token), (store_b, _)) = (store_with_key(), store_with_key());
    let (a, b) = (
        support::nats::open(runtime, settings, &store_a, SECRET),
        support::nats::open(runtime, settings, &store_b, SECRET),
    );
    let id = create(
        runtime,
        &a.state,
        &[&a.state, &b.state],
        &token,
        spec_with_flight(100.0),
    );
    let spend = format!("/v1/campaigns/{id}/spend");
    let day = now_ms() - now_ms() % DAY_MS;
    let report = |report_id: &str, amount: f64| {
        json!({"report_id": report_id, "segment": "new-visitors", "start": rfc3339(day - DAY_MS),
               "end": rfc3339(day), "amount": amount, "impressions": 1000})
    };
    let batch = json!({"reports": [report("r1", 30.0), report("r2", 20.0)]});

    // Two reports on A: stored on both servers.
    let (status, body) = json_call(
        runtime,
        &a.state,
        "POST",
        &spend,
        &token,
        &[],
        batch.clone(),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(0)),
        "{body}"
    );
    settle(&[&a.state, &b.state], &id);
    assert_eq!(reports(&store_b, &id).len(), 2);
    assert_eq!(reports(&store_a, &id), reports(&store_b, &id));

    // The same batch re-sent to B within the stream's window: absorbed; r1 with another
    // amount: refused, on B as on A.
    let (status, body) = json_call(runtime, &b.state, "POST", &spend, &token, &[], batch);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{body}"
    );
    let changed = json!({"reports": [report("r1", 31.0), report("r3", 5.0)]});
    let (status, body) = json_call(runtime, &b.state, "POST", &spend, &token, &[], changed);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"].as_u64(), Some(1), "{body}");
    assert_eq!(body["rejected"][0]["code"], "report_id_conflict", "{body}");
    assert_eq!(body["rejected"][0]["index"], 0, "{body}");
    settle(&[&a.state, &b.state], &id);
    let stored = reports(&store_a, &id);
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored, reports(&store_b, &id));
    let total: f64 = stored.iter().map(|r| f64::from_bits(r.4)).sum();
    assert_eq!(total, 55.0);

    // Every server's lease book counts what was reported, once.
    for state in [&a.state, &b.state] {
        let book = state.stream().unwrap().lease_book(&id);
        assert_eq!(book.spent_counted, 55.0, "{book:?}");
    }

    // B refuses a budget below what was spent (55, all of it reported to A or B).
    let budget = format!("/v1/campaigns/{id}/budget");
    let (status, body) = json_call(
        runtime,
        &b.state,
        "PATCH",
        &budget,
        &token,
        &[],
        json!({"budget": 50.0, "reason": "cut"}),
    );
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "budget_below_spent", "{body}");
    let (status, body) = json_call(
        runtime,
        &b.state,
        "PATCH",
        &budget,
        &token,
        &[],
        json!({"budget": 60.0, "reason": "cut"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    settle(&[&a.state, &b.state], &id);
    assert_eq!(
        a.state.campaign(&id).unwrap().flight().unwrap().budget,
        60.0
    );

    for server in [a, b] {
        support::nats::stop(runtime, server);
    }
}

#[test]
fn a_results_import_on_one_server_changes_every_model_alike() {
    let Some(fixture) = stream_fixture("stream-money-results", "tla_money_results") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let ((store_a, token), (store_b, _)) = (store_with_key(), store_with_key());
    let (a, b) = (
        support::nats::open(runtime, settings, &store_a, SECRET),
        support::nats::open(runtime, settings, &store_b, SECRET),
    );
    let id = create(
        runtime,
        &a.state,
        &[&a.state, &b.state],
        &token,
        spec_with_flight(1000.0),
    );
    let day = now_ms() - now_ms() % DAY_MS;
    let (status, plan) = json_call(
        runtime,
        &a.state,
        "POST",
        &format!("/v1/campaigns/{id}/plans"),
        &token,
        &[],
        json!({"start": rfc3339(day - DAY_MS), "end": rfc3339(day), "budget": 300.0, "ads_per_segment": 4}),
    );
    assert_eq!(status, StatusCode::OK, "{plan}");
    let rows: Vec<Value> = plan["ad_sets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|set| {
            set["ads"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, ad)| {
                    let conversions = if i == 0 { 150 } else { 10 };
                    json!({"ad_name": ad["ad_name"], "ad_set": set["ad_set"],
                       "start": rfc3339(day - DAY_MS), "end": rfc3339(day),
                       "impressions": 2000, "clicks": 2 * conversions, "conversions": conversions,
                       "value": conversions as f64 * 25.0, "spend": 20.0})
                })
        })
        .collect();
    assert!(rows.len() >= 3, "{plan}");
    let results = format!("/v1/campaigns/{id}/results");
    let before = settle(&[&a.state, &b.state], &id);
    let last_seq = |state: &AppState| state.stream().unwrap().health(0).stream_last_seq;
    let seq_before = last_seq(&a.state);

    // A dry run publishes nothing.
    let (status, body) = json_call(
        runtime,
        &a.state,
        "POST",
        &format!("{results}?dry_run=true"),
        &token,
        &[],
        json!({"rows": rows}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(
        last_seq(&a.state),
        seq_before,
        "a dry run publishes nothing"
    );

    // The import on A: B stores and learns it at the same place, without the plan.
    let (status, body) = json_call(
        runtime,
        &a.state,
        "POST",
        &results,
        &token,
        &[],
        json!({"rows": rows}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["inserted"].as_u64(), Some(rows.len() as u64), "{body}");
    let imported = settle(&[&a.state, &b.state], &id);
    assert_ne!(imported.2, before.2, "the import changed the model");
    // Both hold the plan, as plan 1.
    let plans = |store: &Store| {
        store
            .plans(&id)
            .unwrap()
            .into_iter()
            .map(|p| (p.plan_id, p.plan_json))
            .collect::<Vec<_>>()
    };
    assert_eq!(plans(&store_b).len(), 1);
    assert_eq!(plans(&store_a), plans(&store_b));
    assert_eq!(
        store_b.results_spend(&id).unwrap(),
        20.0 * rows.len() as f64
    );
    assert_eq!(
        store_a.results_spend(&id).unwrap(),
        store_b.results_spend(&id).unwrap()
    );
    for state in [&a.state, &b.state] {
        let book = state.stream().unwrap().lease_book(&id);
        assert_eq!(book.spent_counted, 20.0 * rows.len() as f64, "{book:?}");
    }

    // A re-import on B (of the ads of A's plan) replacing one period's row: both
    // rebuild without the old numbers and agree again; the lease book counts the new
    // spend in place of the old.
    let mut replaced = rows.clone();
    replaced[0]["conversions"] = json!(5);
    replaced[0]["clicks"] = json!(10);
    replaced[0]["value"] = json!(125.0);
    replaced[0]["spend"] = json!(35.0);
    let (status, body) = json_call(
        runtime,
        &b.state,
        "POST",
        &results,
        &token,
        &[],
        json!({"rows": replaced}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["replaced"].as_u64(), body["unchanged"].as_u64()),
        (Some(1), Some(rows.len() as u64 - 1)),
        "{body}"
    );
    assert!(body["rebuild"].is_object(), "{body}");
    let again = settle(&[&a.state, &b.state], &id);
    assert_ne!(again.2, imported.2, "the replacement changed the model");
    let spend = 20.0 * (rows.len() - 1) as f64 + 35.0;
    for state in [&a.state, &b.state] {
        assert_eq!(state.stream().unwrap().lease_book(&id).spent_counted, spend);
        assert_eq!(state.store().results_spend(&id).unwrap(), spend);
    }

    // B restarts on its data directory: the same model at the same place.
    support::nats::stop(runtime, b);
    let b = support::nats::open(runtime, settings, &store_b, SECRET);
    assert_eq!(settle(&[&a.state, &b.state], &id), again);
    for server in [a, b] {
        support::nats::stop(runtime, server);
    }
}

#[test]
fn a_retried_revision_or_budget_change_with_the_same_key_applies_once() {
    let Some(fixture) = stream_fixture("stream-money-retry", "tla_money_retry") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let ((store_a, token), (store_b, _)) = (store_with_key(), store_with_key());
    let (a, b) = (
        support::nats::open(runtime, settings, &store_a, SECRET),
        support::nats::open(runtime, settings, &store_b, SECRET),
    );
    let spec = spec_with_flight(100.0);
    let id = create(
        runtime,
        &a.state,
        &[&a.state, &b.state],
        &token,
        spec.clone(),
    );
    let spec_uri = format!("/v1/campaigns/{id}/spec?reason=retitle");
    let revised = spec.replace(
        "  { name = \"first_gift\", text = \"Make your first gift count\", asks_action = false },",
        "  { name = \"first_gift\", text = \"Make your first gift count\", asks_action = false },\n  { name = \"otter\", text = \"otter\", asks_action = false },",
    );
    assert_ne!(revised, spec);
    let put = |state: &AppState, key: &str, body: &str| {
        call(
            runtime,
            state,
            "PUT",
            &spec_uri,
            &token,
            &[
                ("Idempotency-Key", key),
                ("content-type", "application/toml"),
            ],
            body.to_owned(),
        )
    };

    // The first request on A, its retry on B: one revision, the same answer.
    let (status, first) = put(&a.state, "rev-1", &revised);
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, retry) = put(&b.state, "rev-1", &revised);
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(first["revision"]["revision"], 2, "{first}");
    assert_eq!(retry["revision"], first["revision"], "{retry}");
    // The same key with another spec is refused; a new key revises again.
    let (status, body) = put(&b.state, "rev-1", &spec);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused", "{body}");
    settle(&[&a.state, &b.state], &id);
    for state in [&a.state, &b.state] {
        assert_eq!(state.campaign(&id).unwrap().revisions().len(), 2);
    }
    let (status, body) = put(&a.state, "rev-2", &spec);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"]["revision"], 3, "{body}");

    // A retry stored after the stream's deduplication window (published here without a
    // message id, as the stream stores a repeat after 120 s): every server takes it as a
    // repeat of the first copy and revises nothing, the same change or another alike.
    let first = a
        .state
        .stream()
        .unwrap()
        .changes_after(0, 100)
        .into_iter()
        .find(|(_, record)| record.idempotency_key.as_deref() == Some("rev-1"))
        .expect("the keyed revision is on the stream")
        .1;
    let mut other = first.clone();
    if let tla_server::stream_log::Change::Revise { reason, .. } = &mut other.change {
        *reason = Some("another".into());
    }
    let late: Vec<u64> = runtime.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", fixture.port))
            .await
            .unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let mut seqs = Vec::new();
        for record in [first.clone(), other] {
            let bytes =
                serde_json::to_vec(&tla_server::stream_log::Record::Change(record)).unwrap();
            let ack = jetstream
                .publish(settings.subject(), bytes.into())
                .await
                .unwrap()
                .await
                .unwrap();
            seqs.push(ack.sequence);
        }
        seqs
    });
    settle(&[&a.state, &b.state], &id);
    for state in [&a.state, &b.state] {
        assert_eq!(state.campaign(&id).unwrap().revisions().len(), 3);
        let stream = state.stream().unwrap();
        let first_seq = stream
            .changes_after(0, 100)
            .into_iter()
            .find(|(_, record)| record == &first)
            .unwrap()
            .0;
        for seq in &late {
            assert_eq!(stream.first_copy_of(*seq), Some(first_seq));
        }
    }

    // A budget change retried with its key: one change on every server.
    let budget = format!("/v1/campaigns/{id}/budget");
    let patch = |state: &AppState, key: &str, amount: f64| {
        json_call(
            runtime,
            state,
            "PATCH",
            &budget,
            &token,
            &[("Idempotency-Key", key)],
            json!({"budget": amount, "reason": "more"}),
        )
    };
    let (status, first) = patch(&a.state, "budget-1", 150.0);
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, retry) = patch(&b.state, "budget-1", 150.0);
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["change"], first["change"], "{retry}");
    let (status, body) = patch(&a.state, "budget-1", 170.0);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused", "{body}");
    settle(&[&a.state, &b.state], &id);
    for store in [&store_a, &store_b] {
        assert_eq!(store.budget_changes(&id).unwrap().len(), 1);
        // Revisions 2 and 3 (the spec as created is not a stored revision row).
        let numbers: Vec<u32> = store
            .revisions(&id)
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(numbers, [2, 3]);
    }

    // B restarts, so it keeps no outcome: a retry there (the stream absorbs it) answers
    // the revision and the budget change each key made, as stored, not 409 `conflict`.
    let first_revision = put(&a.state, "rev-1", &revised).1;
    support::nats::stop(runtime, b);
    let b = support::nats::open(runtime, settings, &store_b, SECRET);
    let (status, retry) = put(&b.state, "rev-1", &revised);
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["revision"], first_revision["revision"], "{retry}");
    assert_eq!(retry["summary"], first_revision["summary"], "{retry}");
    assert_eq!(retry["revision"]["revision"], 2, "{retry}");
    let (status, retry) = patch(&b.state, "budget-1", 150.0);
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["change"], first["change"], "{retry}");
    let (status, body) = patch(&b.state, "budget-1", 170.0);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused", "{body}");
    settle(&[&a.state, &b.state], &id);
    for store in [&store_a, &store_b] {
        assert_eq!(store.budget_changes(&id).unwrap().len(), 1);
        assert_eq!(store.revisions(&id).unwrap().len(), 2);
    }
    for server in [a, b] {
        support::nats::stop(runtime, server);
    }
}

/// A batch of 5,000 spend reports on two servers with data directories on disk: the
/// learner applies the records of one request in runs (one durable transaction per
/// run, `change::spend_run`), so the batch is answered well within the 10 s a route
/// waits for its learner (one transaction per record took 10.6 s and answered 503).
#[test]
fn a_large_batch_of_spend_reports_is_applied_in_runs() {
    let Some(fixture) = stream_fixture("stream-money-batch", "tla_money_batch") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let dirs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| std::env::temp_dir().join(format!("tla-money-batch-{}-{i}", std::process::id())))
        .collect();
    let on_disk = |dir: &std::path::Path| {
        let _ = std::fs::remove_dir_all(dir);
        let (memory, token) = store_with_key();
        let store = Store::open(dir).unwrap();
        for key in memory.keys().unwrap() {
            store.insert_key(&key).unwrap();
        }
        (store, token)
    };
    let ((store_a, token), (store_b, _)) = (on_disk(&dirs[0]), on_disk(&dirs[1]));
    let (a, b) = (
        support::nats::open(runtime, settings, &store_a, SECRET),
        support::nats::open(runtime, settings, &store_b, SECRET),
    );
    let id = create(
        runtime,
        &a.state,
        &[&a.state, &b.state],
        &token,
        spec_with_flight(1e9),
    );
    let day = now_ms() - now_ms() % DAY_MS;
    let n = 5_000;
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            json!({"report_id": format!("r{i}"), "segment": "new-visitors",
                   "start": rfc3339(day - DAY_MS), "end": rfc3339(day), "amount": 1.0})
        })
        .collect();
    let started = Instant::now();
    let (status, body) = json_call(
        runtime,
        &a.state,
        "POST",
        &format!("/v1/campaigns/{id}/spend"),
        &token,
        &[],
        json!({ "reports": batch }),
    );
    let took = started.elapsed().as_secs_f64();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"].as_u64(), Some(n), "{body}");
    eprintln!("a batch of {n} spend reports on disk answered in {took:.2} s");
    settle(&[&a.state, &b.state], &id);
    assert_eq!(reports(&store_b, &id).len(), n as usize);
    assert_eq!(reports(&store_a, &id), reports(&store_b, &id));
    for state in [&a.state, &b.state] {
        assert_eq!(
            state.stream().unwrap().lease_book(&id).spent_counted,
            n as f64
        );
    }
    for server in [a, b] {
        support::nats::stop(runtime, server);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}
