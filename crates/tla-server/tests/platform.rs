//! Platform mode over HTTP: plans out (JSON, CSV, only what changed), results in.
//! Every answer is checked against the OpenAPI document. The round trip: a plan, the
//! platform's results for its ads (one ad per ad set clearly better), the next plan
//! gives that ad more. Re-importing the same rows changes nothing; a changed row
//! replaces the stored one and the model is rebuilt without the old numbers; a batch
//! with an unknown ad, a negative number or impossible totals stores nothing; a
//! restart (from a snapshot, or from the start) has the same model.

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
const START_MS: i64 = 1_790_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn open(dir: &std::path::Path, config: ServerConfig) -> AppState {
    let store = Store::open(dir).unwrap();
    let log = Arc::new(store.event_log());
    AppState::open(
        store,
        log,
        Arc::new(ManualClock::new(START_MS)),
        b"test secret",
        config,
    )
    .unwrap()
}

fn admin_key(dir: &std::path::Path) -> String {
    let store = Store::open(dir).unwrap();
    let key = new_key([1; 22]);
    store
        .insert_key(&KeyRow {
            id: key.id.clone(),
            hash: key.hash,
            scopes: vec!["admin".into()],
            created_at_ms: 0,
            revoked: false,
            label: "test admin".into(),
        })
        .unwrap();
    key.token
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
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

async fn post(state: &AppState, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        state,
        "POST",
        uri,
        token,
        "application/json",
        body.to_string(),
    )
    .await
}

async fn get(state: &AppState, uri: &str, token: &str) -> (StatusCode, Value) {
    call(state, "GET", uri, token, "application/json", String::new()).await
}

fn rfc3339(ms: i64) -> String {
    tla_core::timestamp::format_rfc3339(ms)
}

/// The ads of a plan body: (ad set, ad name, version, share).
fn ads(plan: &Value) -> Vec<(String, String, u64, f64)> {
    plan["ad_sets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|set| {
            set["ads"].as_array().unwrap().iter().map(|ad| {
                (
                    set["ad_set"].as_str().unwrap().to_owned(),
                    ad["ad_name"].as_str().unwrap().to_owned(),
                    ad["version"].as_u64().unwrap(),
                    ad["share"].as_f64().unwrap(),
                )
            })
        })
        .collect()
}

/// The results of one day for a plan's ads: 2,000 impressions each; in each ad set the
/// ad `favoured` picks converts at 10 %, the others at 0.5 %.
fn day_results(
    plan_ads: &[(String, String, u64, f64)],
    day: i64,
    favoured: &dyn Fn(&str) -> String,
) -> Vec<Value> {
    plan_ads
        .iter()
        .map(|(set, name, _, _)| {
            let conversions = if *name == favoured(set) { 200 } else { 10 };
            json!({
                "ad_name": name, "ad_set": set,
                "start": rfc3339(START_MS + day * DAY_MS), "end": rfc3339(START_MS + (day + 1) * DAY_MS),
                "impressions": 2000, "clicks": conversions * 2, "conversions": conversions,
                "value": conversions as f64 * 25.0, "spend": 20.0,
            })
        })
        .collect()
}

async fn step(state: &AppState, snapshot: bool) {
    let state = state.clone();
    tokio::task::spawn_blocking(move || learner::step(&state, snapshot))
        .await
        .unwrap();
}

#[tokio::test]
async fn plans_out_results_in_the_next_plan_favours_what_won_and_a_restart_keeps_the_model() {
    let dir = std::env::temp_dir().join(format!("tla-platform-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let admin = admin_key(&dir);
    let state = open(&dir, ServerConfig::default());
    let (status, body) = call(
        &state,
        "POST",
        "/v1/campaigns",
        &admin,
        "application/toml",
        SPEC.into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let plans = format!("/v1/campaigns/{id}/plans");
    let results = format!("/v1/campaigns/{id}/results");

    // A campaign without a [flight] must give the budget.
    let period = |day: i64| json!({"start": rfc3339(START_MS + day * DAY_MS), "end": rfc3339(START_MS + (day + 1) * DAY_MS)});
    let (status, body) = post(&state, &plans, &admin, period(0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_plan");
    let mut request = period(0);
    request["budget"] = json!(300.0);
    // Every version runs in the first plan, so the next one learns of each.
    request["ads_per_segment"] = json!(16);
    let (status, first) = post(&state, &plans, &admin, request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["plan_id"], 1);
    let first_ads = ads(&first);
    let sets = first["ad_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 3, "one ad set per segment: {first}");
    for set in sets {
        let shares: f64 = set["ads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["share"].as_f64().unwrap())
            .sum();
        assert!((shares - 1.0).abs() < 1e-9, "{set}");
        assert_eq!(set["ads"].as_array().unwrap().len(), 16, "{set}");
    }
    let budgets: f64 = sets.iter().map(|s| s["budget"].as_f64().unwrap()).sum();
    assert!((budgets - 300.0).abs() < 1e-6, "{budgets}");
    for (_, name, version, _) in &first_ads {
        assert_eq!(*name, format!("tla-{id}-1-{version}"));
    }

    // The export: CSV with the upload columns, and "changed" of a first plan is all of it.
    let (status, sheet) = get(&state, &format!("{plans}/1?format=csv"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    let sheet = sheet.as_str().unwrap().to_owned();
    let header = sheet.lines().next().unwrap();
    assert!(
        header.starts_with("plan_id,period_start,period_end,ad_set,ad_set_budget,ad_name,version,share,change,text,"),
        "{header}"
    );
    assert_eq!(sheet.lines().count(), first_ads.len() + 1);
    let (_, changed) = get(&state, &format!("{plans}/1?changed=true"), &admin).await;
    assert_eq!(changed["rows"].as_array().unwrap().len(), first_ads.len());
    assert!(
        changed["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["change"] == "added")
    );
    let (status, body) = get(&state, &format!("{plans}/9"), &admin).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("plan_not_found"))
    );

    // In each ad set the ad that ran with the smallest share wins clearly.
    let favoured: HashMapOfSets =
        first_ads
            .iter()
            .fold(Default::default(), |mut m, (set, name, _, share)| {
                let entry = m.entry(set.clone()).or_insert((name.clone(), *share));
                if *share < entry.1 {
                    *entry = (name.clone(), *share);
                }
                m
            });
    let favoured_of = |set: &str| favoured[set].0.clone();
    let rows = day_results(&first_ads, 0, &favoured_of);

    // Refused batches store nothing: an unknown ad, a negative number, more
    // conversions than impressions.
    let model_before = state.campaign(&id).unwrap().engine().snapshot();
    let mut bad = rows.clone();
    bad[0]["ad_name"] = json!(format!("tla-{id}-1-999999"));
    bad[1]["clicks"] = json!(-3);
    bad[2]["conversions"] = json!(2001);
    let (status, body) = post(&state, &results, &admin, json!({"rows": bad})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    let codes: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (0, "unknown_ad"),
            (1, "invalid_result"),
            (2, "invalid_result")
        ],
        "{body}"
    );
    assert!(
        rejected[2]["error"]
            .as_str()
            .unwrap()
            .contains("more than the 2000 impressions"),
        "{body}"
    );
    assert_eq!(
        (body["inserted"].as_u64(), body["replaced"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(state.store().results(&id, None).unwrap().is_empty());
    assert_eq!(
        state.campaign(&id).unwrap().engine().snapshot(),
        model_before
    );

    // A dry run checks and stores nothing; the import stores and learns.
    let (_, body) = post(
        &state,
        &format!("{results}?dry_run=true"),
        &admin,
        json!({"rows": rows}),
    )
    .await;
    assert_eq!(
        (body["dry_run"].as_bool(), body["inserted"].as_u64()),
        (Some(true), Some(0)),
        "{body}"
    );
    assert!(state.store().results(&id, None).unwrap().is_empty());
    let (_, body) = post(&state, &results, &admin, json!({"rows": rows})).await;
    assert_eq!(body["inserted"].as_u64(), Some(rows.len() as u64), "{body}");
    assert_ne!(
        state.campaign(&id).unwrap().engine().snapshot(),
        model_before
    );
    let learned = state.campaign(&id).unwrap().engine().snapshot();
    // The same rows again: nothing changes.
    let (_, body) = post(&state, &results, &admin, json!({"rows": rows})).await;
    assert_eq!(
        (body["inserted"].as_u64(), body["unchanged"].as_u64()),
        (Some(0), Some(rows.len() as u64)),
        "{body}"
    );
    assert_eq!(state.campaign(&id).unwrap().engine().snapshot(), learned);
    assert_eq!(state.store().results(&id, None).unwrap().len(), rows.len());
    step(&state, true).await;

    // The next plan gives each ad set's winner the largest share.
    let mut request = period(1);
    request["budget"] = json!(300.0);
    request["ads_per_segment"] = json!(4);
    let (status, second) = post(&state, &plans, &admin, request).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second_ads = ads(&second);
    for (set, (winner, first_share)) in &favoured {
        let share = second_ads
            .iter()
            .find(|(s, name, _, _)| s == set && name == winner)
            .map_or(0.0, |a| a.3);
        let top = second_ads
            .iter()
            .filter(|a| &a.0 == set)
            .map(|a| a.3)
            .fold(0.0, f64::max);
        assert!(
            share > *first_share && share == top,
            "{set}: {winner} had {first_share}, now {share} (top {top})"
        );
    }
    let (_, changed) = get(
        &state,
        &format!("{plans}/2?changed=true&format=json"),
        &admin,
    )
    .await;
    assert_eq!(changed["previous_plan_id"], 1);
    assert!(!changed["rows"].as_array().unwrap().is_empty());

    // A changed row replaces the stored one: counted once, the model rebuilt from the
    // snapshot before the first import, as a replay of the stored rows gives.
    let mut changed_rows = rows.clone();
    changed_rows[0]["conversions"] = json!(0);
    changed_rows[0]["clicks"] = json!(0);
    changed_rows[0]["value"] = json!(0.0);
    let day_two = day_results(&second_ads, 1, &favoured_of);
    let mut batch = vec![changed_rows[0].clone()];
    batch.extend(day_two.iter().cloned());
    let (_, body) = post(&state, &results, &admin, json!({"rows": batch})).await;
    assert_eq!(
        (
            body["inserted"].as_u64(),
            body["replaced"].as_u64(),
            body["unchanged"].as_u64()
        ),
        (Some(day_two.len() as u64), Some(1), Some(0)),
        "{body}"
    );
    assert!(body["rebuild"].is_object(), "{body}");
    let stored = state.store().results(&id, None).unwrap();
    assert_eq!(stored.len(), rows.len() + day_two.len());
    assert_eq!(stored.iter().filter(|r| r.row.conversions == 0).count(), 1);
    // More rows after a snapshot: a restart restores it and learns the rest.
    step(&state, true).await;
    let day_three = day_results(&second_ads, 2, &favoured_of);
    let (_, body) = post(&state, &results, &admin, json!({"rows": day_three})).await;
    assert_eq!(
        body["inserted"].as_u64(),
        Some(day_three.len() as u64),
        "{body}"
    );
    let expected = state.campaign(&id).unwrap().engine().snapshot();
    drop(state);
    let restarted = open(&dir, ServerConfig::default());
    assert_eq!(
        restarted.campaign(&id).unwrap().engine().snapshot(),
        expected
    );
    drop(restarted);
    let from_start = open(
        &dir,
        ServerConfig {
            replay_from_start: true,
            ..ServerConfig::default()
        },
    );
    assert_eq!(
        from_start.campaign(&id).unwrap().engine().snapshot(),
        expected
    );
    drop(from_start);
    std::fs::remove_dir_all(&dir).unwrap();
}

type HashMapOfSets = std::collections::HashMap<String, (String, f64)>;

/// A flight campaign in platform mode: the platform's spend counts against the flight's
/// budget (the next period's budget is what is left, spread over what is left; a budget
/// below it is refused, naming the platform results), once for a re-imported period,
/// and the same after a restart.
#[tokio::test]
async fn platform_spend_counts_against_the_flight_budget_once() {
    let dir = std::env::temp_dir().join(format!("tla-platform-spend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let admin = admin_key(&dir);
    let state = open(&dir, ServerConfig::default());
    let spec = format!(
        "{SPEC}\n[flight]\nbudget = 1000\nstart = \"{}\"\nend = \"{}\"\n",
        rfc3339(START_MS),
        rfc3339(START_MS + 10 * DAY_MS)
    );
    let (status, body) = call(
        &state,
        "POST",
        "/v1/campaigns",
        &admin,
        "application/toml",
        spec,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let plans = format!("/v1/campaigns/{id}/plans");
    let period = |day: i64| json!({"start": rfc3339(START_MS + day * DAY_MS), "end": rfc3339(START_MS + (day + 1) * DAY_MS)});
    let budget_of = |plan: &Value| -> f64 {
        plan["ad_sets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|set| set["budget"].as_f64().unwrap())
            .sum()
    };
    let (status, first) = post(&state, &plans, &admin, period(0)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!((budget_of(&first) - 100.0).abs() < 1e-6, "{first}");
    let first_ads = ads(&first);
    let rows = day_results(&first_ads, 0, &|_| String::new());
    let spent = 20.0 * rows.len() as f64;
    let (status, body) = post(
        &state,
        &format!("/v1/campaigns/{id}/results"),
        &admin,
        json!({"rows": rows.clone()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same period again: counted once.
    let (status, _) = post(
        &state,
        &format!("/v1/campaigns/{id}/results"),
        &admin,
        json!({"rows": rows}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let left = (1000.0 - spent) / 9.0;
    let (status, second) = post(&state, &plans, &admin, period(1)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert!(
        (budget_of(&second) - left).abs() < 1e-6,
        "spent {spent}: expected {left}, planned {}",
        budget_of(&second)
    );
    let (status, refused) = call(
        &state,
        "PATCH",
        &format!("/v1/campaigns/{id}/budget"),
        &admin,
        "application/json",
        json!({"budget": spent - 1.0, "reason": "cut"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{spent} in platform results")),
        "{message}"
    );
    // The plans priced with what the results taught of costs; a restart knows the same.
    let status_before = state
        .campaign(&id)
        .unwrap()
        .pacing
        .as_ref()
        .unwrap()
        .status(START_MS);
    drop(state);
    let restarted = open(&dir, ServerConfig::default());
    let slot = restarted.campaign(&id).unwrap();
    let status_after = slot.pacing.as_ref().unwrap().status(START_MS);
    assert_eq!(status_after.spent, status_before.spent);
    assert!(
        (status_after.spent - spent).abs() < 1e-9,
        "{status_after:?}"
    );
    let costs = slot
        .pacing
        .as_ref()
        .unwrap()
        .with_knowledge(|costs, _| costs.observations());
    assert_eq!(costs, 2000.0 * first_ads.len() as f64);
    drop(slot);
    drop(restarted);
    std::fs::remove_dir_all(&dir).unwrap();
}
