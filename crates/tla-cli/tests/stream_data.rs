//! A stream server's data directory, read by the reports and the offline tools
//! (docs/scale-out.md, *Corrections* and *The servers' decision logs*): two real
//! `tla serve` processes on one NATS JetStream stream (one node: what is checked here
//! does not depend on the replicas), a campaign, decisions from both, events to both,
//! a correction and a retraction.
//!
//! - The running servers' reports list the corrections and count the corrected
//!   values; after the servers stop, `tla report --data` and `tla export --data` over
//!   each data directory give the same figures as the running server did.
//! - `tla export --what decisions` over both data directories is one decision log:
//!   every decision a client got, exactly once (the second server restored some of the
//!   first one's decisions into its own log), with its exact propensity and model seq.
//!   Directories of another stream or another secret, and two rows of one id that
//!   differ, are refused.
//!
//! nats-server comes from scripts/nats-deps.sh; without it the test is skipped with a
//! message, unless `CI` is set: then it fails. Bounded: fixed counts, every wait has a
//! deadline, and every process it starts is killed by its pid when it ends.

#![cfg(unix)]

mod common;

use common::nats::NatsCluster;
use common::servers::{self, ADMIN, Log, Processes};
use common::{Http, TempDir};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const STREAM: &str = "tla_data";
const SECRET: &str = "stream-data-test-secret-0123456789";
/// Decision requests per server, and decisions per request.
const REQUESTS: usize = 4;
const PER_REQUEST: usize = 25;
/// The amount of every conversion sent.
const GIFT: f64 = 10.0;
/// The corrected amount of one conversion.
const CORRECTED: f64 = 4.0;

fn tla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(args)
        .env_remove("TLA_DATA")
        .env_remove("TLA_KEY")
        .output()
        .expect("the tla binary runs")
}

fn stdout_of(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asks `address` for `PER_REQUEST` decisions of each segment in turn, `REQUESTS`
/// times: decision id -> (propensity, segment name).
fn decide(
    address: SocketAddr,
    campaign: &str,
    segments: &[String],
    into: &mut HashMap<String, f64>,
) {
    for round in 0..REQUESTS {
        let mut http = Http::connect(address).unwrap();
        let (status, answer) = http.json(
            "POST",
            &format!("/v1/campaigns/{campaign}/decisions"),
            ADMIN,
            &json!({"segment": segments[round % segments.len()], "count": PER_REQUEST}),
        );
        assert_eq!(status, 200, "{answer}");
        for decision in answer["decisions"].as_array().unwrap() {
            let id = decision["decision_id"].as_str().unwrap().to_string();
            let propensity = decision["propensity"].as_f64().unwrap();
            assert!(into.insert(id, propensity).is_none(), "a decision id twice");
        }
    }
}

/// Waits until both servers applied the whole stream (the same last sequence, no lag,
/// nothing unapplied).
fn settle(addresses: &[SocketAddr]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healths: Vec<Value> = addresses.iter().map(|a| servers::health(*a)).collect();
        let lasts: HashSet<u64> = healths
            .iter()
            .map(|h| h["stream"]["stream_last_seq"].as_u64().unwrap())
            .collect();
        if lasts.len() == 1
            && healths
                .iter()
                .all(|h| h["stream"]["lag"] == 0 && h["stream"]["unapplied_events"] == 0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the servers did not catch up within 60 s: {healths:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tla report ID --format json` of a running server.
fn served_report(address: SocketAddr, campaign: &str) -> Value {
    let url = format!("http://{address}");
    let out = tla(&[
        "report", campaign, "--format", "json", "--server", &url, "--key", ADMIN,
    ]);
    serde_json::from_str(&stdout_of(&out, "tla report --server")).unwrap()
}

/// `tla report ID --format json --data DIR`.
fn offline_report(data: &Path, campaign: &str) -> Value {
    let out = tla(&[
        "report",
        campaign,
        "--format",
        "json",
        "--data",
        data.to_str().unwrap(),
    ]);
    serde_json::from_str(&stdout_of(&out, "tla report --data")).unwrap()
}

/// Stops a server: SIGTERM by its pid, then a bounded wait.
fn stop(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "a server did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of a report's options' `value` (every component's options: each counts the
/// campaign's donations once per component).
fn option_values(report: &Value) -> f64 {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["options"].as_array().unwrap())
        .map(|o| o["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn a_stream_servers_data_directory_reports_its_corrections_and_merges_its_decisions() {
    let Some(binary) = tla_server::stream_log::nats_server_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is missing: run scripts/nats-deps.sh (the README's test command does)"
        );
        eprintln!(
            "SKIPPED a_stream_servers_data_directory_reports_its_corrections_and_merges_its_decisions: \
             nats-server is missing; run scripts/nats-deps.sh to run this test"
        );
        return;
    };
    let root = TempDir::new("stream-data");
    std::fs::create_dir_all(&root.0).unwrap();
    let nats = NatsCluster::start(&binary, &root.0, 1);
    let event_log = nats.urls();
    let log = Log::Stream {
        event_log: &event_log,
        stream: STREAM,
        secret: SECRET,
    };
    let dirs = [root.0.join("tla0"), root.0.join("tla1")];
    let mut processes = Processes::default();
    let start = |dir: &Path, processes: &mut Processes| {
        let (child, address) = servers::start_tla(dir, &log, &[], Duration::from_secs(60));
        processes.tla.push(Some(child));
        address.unwrap_or_else(|e| panic!("tla serve: {e}"))
    };

    // Server 0 alone: the campaign and its first decisions.
    let first = start(&dirs[0], &mut processes);
    let mut http = Http::connect(first).unwrap();
    let (status, body) = http
        .request(
            "POST",
            "/v1/campaigns",
            ADMIN,
            "application/toml",
            include_bytes!("../../../examples/small.toml"),
        )
        .unwrap();
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{created}");
    let campaign = created["id"].as_str().unwrap().to_string();
    let segments: Vec<String> = created["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let mut decided = HashMap::new();
    decide(first, &campaign, &segments, &mut decided);

    // Server 1 starts after them, so the events about them make it restore them into
    // its own decision log (the same rows the merge must count once).
    let second = start(&dirs[1], &mut processes);
    let addresses = [first, second];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Http::connect(second)
        .unwrap()
        .json(
            "GET",
            &format!("/v1/campaigns/{campaign}"),
            ADMIN,
            &Value::Null,
        )
        .0
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the campaign did not reach server 1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    decide(second, &campaign, &segments, &mut decided);

    // An impression for every decision and a conversion of GIFT for every fourth, the
    // batches to the two servers in turn.
    let mut ids: Vec<&String> = decided.keys().collect();
    ids.sort();
    let mut conversions = Vec::new();
    for (batch, chunk) in ids.chunks(20).enumerate() {
        let mut events = Vec::new();
        for (i, decision) in chunk.iter().enumerate() {
            let n = batch * 20 + i;
            events.push(
                json!({"event_id": format!("i{n}"), "decision_id": decision, "type": "impression"}),
            );
            if n % 4 == 0 {
                events.push(json!({"event_id": format!("c{n}"), "decision_id": decision, "type": "conversion", "value": GIFT}));
                conversions.push(format!("c{n}"));
            }
        }
        let mut http = Http::connect(addresses[batch % 2]).unwrap();
        let (status, answer) = http.json("POST", "/v1/events", ADMIN, &json!({ "events": events }));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], events.len(), "{answer}");
    }
    settle(&addresses);
    let before = served_report(first, &campaign);
    let donations = GIFT * conversions.len() as f64;
    assert_eq!(before["summary"]["donations"], donations);
    assert!(before.get("corrections").is_none(), "{before}");

    // A new amount through server 1, a retraction through server 0.
    for (address, body) in [
        (
            second,
            json!({"event_id": conversions[0], "action": "correct", "value": CORRECTED, "reason": "charged less"}),
        ),
        (
            first,
            json!({"event_id": conversions[1], "action": "retract", "reason": "a test order"}),
        ),
    ] {
        let mut http = Http::connect(address).unwrap();
        let (status, answer) = http.json(
            "POST",
            &format!("/v1/campaigns/{campaign}/corrections"),
            ADMIN,
            &body,
        );
        assert_eq!(status, 200, "{answer}");
    }
    settle(&addresses);
    let corrected = donations - (GIFT - CORRECTED) - GIFT;
    let mut reports = Vec::new();
    for address in addresses {
        let report = served_report(address, &campaign);
        let listed = report["corrections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(listed.len(), 2, "the report of {address} lists {listed:?}");
        assert_eq!(listed[0]["action"], "correct");
        assert_eq!(listed[0]["old_value"], GIFT);
        assert_eq!(listed[0]["new_value"], CORRECTED);
        assert_eq!(listed[1]["action"], "retract");
        assert_eq!(listed[1]["event_id"], conversions[1].as_str());
        assert_eq!(report["summary"]["donations"], corrected, "{address}");
        assert_eq!(
            report["summary"]["donors"],
            conversions.len() as u64 - 1,
            "{address}"
        );
        reports.push(report);
    }
    // The same figures on both (the lift is each server's own: it reads its own
    // decision log).
    for field in [
        "summary",
        "components",
        "segments",
        "corrections",
        "events_learned",
    ] {
        assert_eq!(reports[0][field], reports[1][field], "{field} differs");
    }

    // Stopped, each data directory gives the running server's report.
    let mut children: Vec<Child> = processes
        .tla
        .iter_mut()
        .map(|c| c.take().unwrap())
        .collect();
    for child in &mut children {
        stop(child);
    }
    for (dir, report) in dirs.iter().zip(&reports) {
        let offline = offline_report(dir, &campaign);
        assert_eq!(&offline, report, "tla report --data {}", dir.display());
        // The report table export counts the corrected values too.
        let out_file = root.0.join("options.csv");
        let out = tla(&[
            "export",
            "--data",
            dir.to_str().unwrap(),
            "--campaign",
            &campaign,
            "--what",
            "report-options",
            "--format",
            "csv",
            "--out",
            out_file.to_str().unwrap(),
        ]);
        stdout_of(&out, "tla export --what report-options");
        let mut reader = csv::Reader::from_path(&out_file).unwrap();
        let headers = reader.headers().unwrap().clone();
        let value_at = headers.iter().position(|h| h == "value").unwrap();
        let exported: f64 = reader
            .records()
            .map(|r| r.unwrap()[value_at].parse::<f64>().unwrap())
            .sum();
        assert!(
            (exported - option_values(&reports[0])).abs() < 1e-9,
            "{exported} against {}",
            option_values(&reports[0])
        );
    }

    // The two servers' decision logs, merged into one.
    let export_decisions = |data: &[&Path], format: &str, out: &Path| {
        let mut args = vec!["export".to_string()];
        for dir in data {
            args.push("--data".into());
            args.push(dir.to_str().unwrap().into());
        }
        for arg in [
            "--campaign",
            &campaign,
            "--what",
            "decisions",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ] {
            args.push(arg.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tla(&args)
    };
    let csv_rows = |path: &Path| -> Vec<csv::StringRecord> {
        let mut reader = csv::Reader::from_path(path).unwrap();
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
        reader.records().map(Result::unwrap).collect()
    };
    // Each server's own log: server 1's holds the decisions of server 0 it restored.
    let mut single = Vec::new();
    for dir in &dirs {
        let out = root.0.join("single.csv");
        stdout_of(
            &export_decisions(&[dir], "csv", &out),
            "tla export --what decisions",
        );
        single.push(csv_rows(&out).len());
    }
    let merged_csv = root.0.join("merged.csv");
    let out = export_decisions(&[&dirs[0], &dirs[1]], "csv", &merged_csv);
    stdout_of(&out, "tla export --what decisions over both directories");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let merged = csv_rows(&merged_csv);
    assert_eq!(merged.len(), decided.len(), "{said}");
    assert!(
        single[0] + single[1] > merged.len(),
        "no decision was in both logs ({single:?}), so the merge was not put to the test"
    );
    let mut seen = HashSet::new();
    let mut previous: Option<(i64, String)> = None;
    for row in &merged {
        let id = row[0].to_string();
        assert!(seen.insert(id.clone()), "decision {id} twice in the merge");
        let propensity: f64 = row[4].parse().unwrap();
        let got = decided
            .get(&id)
            .unwrap_or_else(|| panic!("decision {id} in the merge, but no client got it"));
        assert_eq!(
            propensity.to_bits(),
            got.to_bits(),
            "decision {id}: {propensity} against {got}"
        );
        let model_seq: u64 = row[7].parse().unwrap();
        assert_eq!(Some(model_seq), tla_server::decision_id::model_seq_of(&id));
        let key = (row[6].parse::<i64>().unwrap(), id);
        assert!(
            previous.as_ref().is_none_or(|p| *p < key),
            "out of order at {key:?}"
        );
        previous = Some(key);
    }
    // Parquet carries the same rows and the model seq column.
    let merged_parquet = root.0.join("merged.parquet");
    stdout_of(
        &export_decisions(&[&dirs[1], &dirs[0]], "parquet", &merged_parquet),
        "tla export --what decisions --format parquet over both directories",
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&merged_parquet).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut parquet_rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().field(7).name(), "model_seq");
        parquet_rows += batch.num_rows();
    }
    assert_eq!(parquet_rows, decided.len());

    // Refused: a directory twice, one that mirrors no stream, another stream, another
    // secret, two different rows under one decision id, a merge of something else.
    let genesis = |secret: &str| {
        serde_json::to_vec(&tla_server::stream_log::Record::Genesis {
            format: tla_server::stream_log::STREAM_FORMAT,
            secret_check: tla_server::stream_log::secret_check(secret.as_bytes()),
        })
        .unwrap()
    };
    let made = |name: &str, stream: Option<(&str, &str)>| {
        let dir = root.0.join(name);
        let store = tla_store::Store::open(&dir).unwrap();
        let row = tla_store::Store::open_read_only(&dirs[0])
            .unwrap()
            .campaign(&campaign)
            .unwrap()
            .unwrap();
        store.insert_campaign(&row).unwrap();
        if let Some((stream, secret)) = stream {
            let batch = tla_store::MirrorBatch {
                records: vec![(1, genesis(secret))],
                ..Default::default()
            };
            store.write_mirror(stream, &batch, 1).unwrap();
        }
        (dir, store)
    };
    let (sqlite, _) = made("sqlite", None);
    let (other_stream, _) = made("other-stream", Some(("tla_other", SECRET)));
    let (other_secret, _) = made("other-secret", Some((STREAM, "another-secret-0123456789")));
    let (conflict, store) = made("conflict", Some((STREAM, SECRET)));
    let mut changed = tla_store::Store::open_read_only(&dirs[0])
        .unwrap()
        .decisions(&campaign, 0, 1)
        .unwrap()[0]
        .1
        .clone();
    changed.propensity /= 2.0;
    store.append_decisions(&[changed.clone()]).unwrap();
    drop(store);
    let out_file = root.0.join("refused.csv");
    for (data, expected) in [
        (vec![&dirs[0], &dirs[0]], "is given twice".to_string()),
        (vec![&dirs[0], &sqlite], "mirrors none".to_string()),
        (
            vec![&dirs[0], &other_stream],
            "stream \"tla_data\" and".to_string(),
        ),
        (
            vec![&dirs[1], &other_secret],
            "different decision-id secrets".to_string(),
        ),
        (
            vec![&dirs[0], &dirs[1], &conflict],
            format!("decision {} differs between", changed.decision_id),
        ),
    ] {
        let data: Vec<&Path> = data.iter().map(|d| d.as_path()).collect();
        let out = export_decisions(&data, "csv", &out_file);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{data:?} was merged");
        assert!(said.contains(&expected), "{data:?}: {said}");
    }
    let out = tla(&[
        "export",
        "--data",
        dirs[0].to_str().unwrap(),
        "--data",
        dirs[1].to_str().unwrap(),
        "--campaign",
        &campaign,
        "--what",
        "events",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only --what decisions merges"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(nats);
}
