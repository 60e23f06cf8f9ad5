//! Round trip through the real `tla` binary: a data directory filled through the HTTP
//! router (decisions, then impressions and conversions), `tla export` of decisions and
//! events to CSV (and Parquet), a logged-bandit CSV joined from the two exports,
//! `tla evaluate --log` on it; and the import's refusals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tla_server::auth::new_key;
use tla_server::{AppState, ServerConfig, SystemClock, app};
use tla_store::{KeyRow, Store};
use tower::ServiceExt;

const SPEC: &str = include_str!("../../../examples/small.toml");
const SEGMENTS: [&str; 3] = ["new-visitors", "past-donors", "volunteers"];

fn tla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tla"))
}

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tla-export-import-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: &str,
    ct: &str,
    body: String,
) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        status == StatusCode::OK || status == StatusCode::CREATED,
        "{status} {value}"
    );
    value
}

/// Donation value of a version: deterministic, so the uniform target's true value over
/// the versions served is known exactly.
fn value_of(version: u64) -> f64 {
    match version % 4 {
        0 => 0.0,
        1 => 10.0,
        2 => 25.0,
        _ => 0.0,
    }
}

/// Fills a data directory: `per_segment` decisions per segment (the model before any
/// learning, so the logging policy is close to uniform; its exact propensities are
/// logged), one impression per decision and one conversion when the version's value is
/// positive. Returns the campaign id.
async fn fill(dir: &Path, per_segment: usize) -> String {
    let store = Store::open(dir).unwrap();
    let admin = key(&store, 1, &["admin"]);
    let decide = key(&store, 2, &["decide"]);
    let ingest = key(&store, 3, &["ingest"]);
    let log = std::sync::Arc::new(store.event_log());
    let state = AppState::open(
        store,
        log,
        std::sync::Arc::new(SystemClock),
        b"test secret",
        ServerConfig::default(),
    )
    .unwrap();
    let created = call(
        &state,
        "POST",
        "/v1/campaigns",
        &admin,
        "application/toml",
        SPEC.into(),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut decisions: Vec<(String, u64)> = Vec::new();
    for segment in SEGMENTS {
        for _ in 0..per_segment / 100 {
            let body = call(
                &state,
                "POST",
                &format!("/v1/campaigns/{id}/decisions"),
                &decide,
                "application/json",
                json!({"segment": segment, "count": 100}).to_string(),
            )
            .await;
            for d in body["decisions"].as_array().unwrap() {
                decisions.push((
                    d["decision_id"].as_str().unwrap().to_string(),
                    d["version"].as_u64().unwrap(),
                ));
            }
        }
    }
    let mut events = Vec::new();
    for (i, (decision_id, version)) in decisions.iter().enumerate() {
        events.push(
            json!({"event_id": format!("i{i}"), "decision_id": decision_id, "type": "impression"}),
        );
        let value = value_of(*version);
        if value > 0.0 {
            events.push(json!({"event_id": format!("c{i}"), "decision_id": decision_id, "type": "conversion", "value": value}));
        }
    }
    // One conversion whose amount is unknown: exported with value 0, amount_known false.
    events.push(
        json!({"event_id": "unknown-amount", "decision_id": decisions[0].0, "type": "conversion"}),
    );
    for chunk in events.chunks(5_000) {
        let body = call(
            &state,
            "POST",
            "/v1/events",
            &ingest,
            "application/json",
            json!({"events": chunk}).to_string(),
        )
        .await;
        assert_eq!(
            body["accepted"].as_u64(),
            Some(chunk.len() as u64),
            "{body}"
        );
    }
    // Writes the queued decisions to the decision log.
    let s = state.clone();
    tokio::task::spawn_blocking(move || tla_server::learner::step(&s, true))
        .await
        .unwrap();
    id
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn run_err(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{command:?} should fail");
    String::from_utf8(output.stderr).unwrap()
}

fn export(dir: &Path, id: &str, what: &str, format: &str, out: &Path) {
    run_ok(
        tla()
            .args(["export", "--data"])
            .arg(dir)
            .args([
                "--campaign",
                id,
                "--what",
                what,
                "--format",
                format,
                "--out",
            ])
            .arg(out),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_join_evaluate_round_trip() {
    let root = scratch("round-trip");
    let data = root.join("data");
    let per_segment = 1_000;
    let id = fill(&data, per_segment).await;

    let decisions_csv = root.join("decisions.csv");
    let events_csv = root.join("events.csv");
    export(&data, &id, "decisions", "csv", &decisions_csv);
    export(&data, &id, "events", "csv", &events_csv);

    // Reward per decision = sum of its conversions' values.
    let mut reward: HashMap<String, f64> = HashMap::new();
    let mut impressions = 0;
    let mut reader = csv::Reader::from_path(&events_csv).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "seq",
            "event_id",
            "decision_id",
            "type",
            "value",
            "segment",
            "version",
            "decided_at_ms",
            "at_ms",
            "amount_known"
        ]
    );
    let mut unknown_amounts = 0;
    let mut conversions = 0;
    for record in reader.records() {
        let record = record.unwrap();
        assert!(
            SEGMENTS.contains(&&record[5]),
            "segment by name: {:?}",
            &record[5]
        );
        if &record[9] == "false" {
            assert_eq!((&record[1], &record[4]), ("unknown-amount", "0.0"));
            unknown_amounts += 1;
        } else {
            assert_eq!(&record[9], "true");
        }
        match &record[3] {
            "conversion" => {
                conversions += 1;
                *reward.entry(record[2].to_string()).or_default() +=
                    record[4].parse::<f64>().unwrap()
            }
            "impression" => impressions += 1,
            other => panic!("unexpected event type {other}"),
        }
    }
    assert_eq!(impressions, 3 * per_segment);
    assert_eq!(unknown_amounts, 1);

    // Join: one logged row per decision.
    let log = root.join("logged.csv");
    let mut writer = csv::Writer::from_path(&log).unwrap();
    writer.write_record(["ts", "arm", "ctx", "r", "p"]).unwrap();
    let mut reader = csv::Reader::from_path(&decisions_csv).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "decision_id",
            "campaign_id",
            "segment",
            "version",
            "propensity",
            "model_version",
            "at_ms",
            "model_seq"
        ]
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(&record[1], id.as_str());
        let version: u64 = record[3].parse().unwrap();
        let p: f64 = record[4].parse().unwrap();
        let r = reward.get(&record[0]).copied().unwrap_or(0.0);
        assert_eq!(
            r,
            value_of(version),
            "joined reward of decision {}",
            &record[0]
        );
        writer
            .write_record([
                &record[6],
                &record[3],
                &record[2],
                &r.to_string(),
                &record[4],
            ])
            .unwrap();
        rows.push((version, p, r));
    }
    writer.flush().unwrap();
    assert_eq!(rows.len(), 3 * per_segment);

    let output = run_ok(tla().args(["evaluate", "--log"]).arg(&log).args([
        "--format",
        "csv",
        "--map",
        "timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p",
        "--target",
        "uniform",
        "--json",
    ]));
    let result: Value = serde_json::from_str(output.trim()).unwrap();
    let snips = result["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == "snips")
        .unwrap();
    let (value, lower, upper, se) = (
        snips["value"].as_f64().unwrap(),
        snips["lower"].as_f64().unwrap(),
        snips["upper"].as_f64().unwrap(),
        snips["std_error"].as_f64().unwrap(),
    );
    assert!(
        value.is_finite() && lower < value && value < upper,
        "{result}"
    );

    // SNIPS by hand from the joined rows: with a uniform target, sum (r / p) / sum (1 / p).
    let served: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        result["distinct_actions"].as_u64(),
        Some(served.len() as u64)
    );
    let num: f64 = rows.iter().map(|(_, p, r)| r / p).sum();
    let den: f64 = rows.iter().map(|(_, p, _)| 1.0 / p).sum();
    assert!(
        (value - num / den).abs() < 1e-9 * (1.0 + value.abs()),
        "{value} vs {}",
        num / den
    );

    // The truth: rewards are a function of the version, so the uniform target over the
    // served versions earns the mean of their values. Within 4 standard errors.
    let truth = served.iter().map(|&v| value_of(v)).sum::<f64>() / served.len() as f64;
    assert!(
        (value - truth).abs() < 4.0 * se,
        "SNIPS {value} (s.e. {se}) is far from the true uniform value {truth}"
    );
    // With a near-uniform logging policy the logged mean reward lies in the interval.
    let logged_mean = rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64;
    assert_eq!(result["logged_mean_reward"].as_f64(), Some(logged_mean));

    // Parquet exports: well-formed files with every row.
    for (what, expected) in [
        ("decisions", rows.len()),
        ("events", impressions + conversions),
    ] {
        let path = root.join(format!("{what}.parquet"));
        export(&data, &id, what, "parquet", &path);
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let read: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(read, expected, "{what}.parquet");
    }

    // An unknown campaign is refused.
    let stderr = run_err(
        tla()
            .args(["export", "--data"])
            .arg(&data)
            .args(["--campaign", "c_nope", "--what", "events", "--out"])
            .arg(root.join("x.csv")),
    );
    assert!(stderr.contains("no campaign \"c_nope\""), "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}

fn evaluate_file(root: &Path, name: &str, text: &str, map: &str) -> String {
    let path = root.join(name);
    std::fs::write(&path, text).unwrap();
    run_err(
        tla()
            .args(["evaluate", "--log"])
            .arg(&path)
            .args(["--map", map]),
    )
}

#[test]
fn refusals_name_the_row_or_the_missing_mapping() {
    let root = scratch("refusals");
    let map = "timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p";
    let header = "ts,arm,ctx,r,p\n";

    let zero = format!("{header}1,a,x,1,0.5\n2,b,x,0,0.5\n3,a,y,2,0\n4,b,y,0,0.5\n");
    let stderr = evaluate_file(&root, "zero.csv", &zero, map);
    assert!(
        stderr.contains("data row 3") && stderr.contains("is 0"),
        "{stderr}"
    );

    let text = format!("{header}1,a,x,1,0.5\n2,b,x,0,abc\n");
    let stderr = evaluate_file(&root, "abc.csv", &text, map);
    assert!(
        stderr.contains("data row 2") && stderr.contains("\"abc\", not a number"),
        "{stderr}"
    );

    let text = format!("{header}1,a,x,1,0.5\n2,b,x,0,0.5\n3,a,y,2,\n");
    let stderr = evaluate_file(&root, "missing.csv", &text, map);
    assert!(
        stderr.contains("data row 3") && stderr.contains("missing"),
        "{stderr}"
    );

    let text = format!("{header}1,a,x,1,1.5\n");
    let stderr = evaluate_file(&root, "above.csv", &text, map);
    assert!(
        stderr.contains("data row 1") && stderr.contains("above 1"),
        "{stderr}"
    );

    let jsonl = "{\"arm\":\"a\",\"r\":1,\"p\":0.5}\n\n{\"arm\":\"b\",\"r\":0,\"p\":null}\n";
    let stderr = evaluate_file(
        &root,
        "null.jsonl",
        jsonl,
        "action=arm,reward=r,propensity=p",
    );
    assert!(
        stderr.contains("data row 2") && stderr.contains("missing"),
        "{stderr}"
    );

    let stderr = evaluate_file(&root, "nomap.csv", &zero, "action=arm,reward=r");
    assert!(
        stderr.contains("which column holds the propensity"),
        "{stderr}"
    );

    let stderr = evaluate_file(
        &root,
        "badcol.csv",
        &zero,
        "action=arm,reward=r,propensity=prob",
    );
    assert!(
        stderr.contains("propensity column \"prob\" is not in the header"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
