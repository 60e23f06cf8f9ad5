//! The scale-out chaos test: a 3-node NATS JetStream cluster on loopback, three real
//! `tla serve` processes on one stream (3 replicas), concurrent clients asking any
//! server for decisions and sending event batches to any server (retrying a batch, with
//! the same ids, on another server until it is acknowledged). Mid-load one NATS node and
//! one TLA server are killed with SIGKILL, then both restarted. Then every acknowledged
//! event must be found on every server, no event counted twice, and the three models
//! must hash the same at the same stream sequence. A server with another secret must
//! refuse the stream. While the killed server is down, a revision is made on one server
//! (retried with one `Idempotency-Key` until answered: revision 2, once) and a pause and
//! a resume on others: every server (the restarted one too) must show them, its model
//! revised at the same point of the stream. A key made in one server's
//! data directory authenticates on the others, and once revoked there is refused there.
//!
//! nats-server comes from scripts/nats-deps.sh (the README's test command runs it
//! first). Without it the test is skipped with a message, unless `CI` is set: then it
//! fails. Bounded: a fixed number of batches, every socket with a 10 s timeout, every
//! wait with a deadline; every process it starts is killed by pid when it ends
//! ([`Processes`]).

#![cfg(unix)]

mod common;

use common::nats::NatsCluster;
use common::servers::{self, ADMIN, Addresses, Log, Processes, any_server, health};
use common::{Http, TempDir};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const SPEC: &str = include_str!("../../../examples/small.toml");
const NODES: usize = 3;
const CLIENTS: usize = 4;
/// Each client sends batches until it has sent [`AFTER_RESTART`] after both killed
/// processes are back, and at most this many in all.
const MAX_BATCHES_PER_CLIENT: usize = 60;
const AFTER_RESTART: usize = 3;
/// A pause between a client's batches, so that the load spans the kill and the restart
/// with a few thousand events.
const PAUSE: Duration = Duration::from_millis(250);
/// The pause while a NATS node and a server are down (the node's restart waits until it
/// has caught up, which takes seconds): the load goes on, a little, until the restart.
const OUTAGE_PAUSE: Duration = Duration::from_millis(1500);
const BATCH: usize = 50;
const STREAM: &str = "tla_chaos";
/// The servers' `--stream-stale-secs`.
const STALE_AFTER: Duration = Duration::from_secs(2);
const SECRET: &str = "chaos-test-shared-secret-0123456789";

/// Starts `tla serve` on the chaos test's stream.
fn start_tla(data: &Path, event_log: &str, secret: &str) -> (Child, Result<SocketAddr, String>) {
    let stale = STALE_AFTER.as_secs_f64().to_string();
    let log = Log::Stream {
        event_log,
        stream: STREAM,
        secret,
    };
    servers::start_tla(
        data,
        &log,
        &["--stream-stale-secs", &stale],
        Duration::from_secs(60),
    )
}

#[test]
fn three_servers_on_a_replicated_stream_survive_sigkill_of_a_nats_node_and_a_server() {
    let Some(binary) = tla_server::stream_log::nats_server_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is missing: run scripts/nats-deps.sh (the README's test command does)"
        );
        eprintln!(
            "SKIPPED three_servers_on_a_replicated_stream...: nats-server is missing; \
             run scripts/nats-deps.sh to run this test"
        );
        return;
    };
    let started = Instant::now();
    let root = TempDir::new("cluster");
    std::fs::create_dir_all(&root.0).unwrap();
    let mut processes = Processes::default();
    let mut nats = NatsCluster::start(&binary, &root.0, NODES);
    let event_log = nats.urls();
    let data: Vec<PathBuf> = (0..NODES).map(|i| root.0.join(format!("tla{i}"))).collect();
    let mut addresses = Vec::new();
    for dir in &data {
        let (child, address) = start_tla(dir, &event_log, SECRET);
        processes.tla.push(Some(child));
        addresses.push(Some(address.unwrap_or_else(|e| panic!("tla serve: {e}"))));
    }
    let first = health(addresses[0].unwrap());
    assert_eq!(first["stream"]["replicas"], 3, "{first}");

    // The campaign is created on one server and reaches the others through the stream;
    // a retry with the same Idempotency-Key on another server answers the same campaign.
    let create = |address: SocketAddr| {
        let mut http = Http::connect(address).unwrap();
        let (status, body) = http
            .request_with(
                "POST",
                "/v1/campaigns",
                ADMIN,
                "application/toml",
                &[("idempotency-key", "chaos-campaign")],
                SPEC.as_bytes(),
            )
            .expect("create the campaign");
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let (status, created) = create(addresses[0].unwrap());
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let segments: Vec<String> = created["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for address in addresses[1..].iter().flatten() {
        loop {
            let mut http = Http::connect(*address).unwrap();
            let (status, body) =
                http.json("GET", &format!("/v1/campaigns/{id}"), ADMIN, &Value::Null);
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "campaign {id} did not reach server {address} within 20 s: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (status, again) = create(addresses[2].unwrap());
    assert_eq!((status, &again["id"]), (200, &created["id"]), "{again}");
    let campaign = id;
    let addresses: Addresses = Arc::new(RwLock::new(addresses));

    // Load: each client asks any server for decisions and sends their impressions (and
    // a click for every fifth) to any server, re-sending a batch until acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let answers = Arc::new(Mutex::new((0u64, 0u64)));
    let restarted = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addresses, acknowledged, answers, campaign, segments, restarted, outage) = (
                addresses.clone(),
                acknowledged.clone(),
                answers.clone(),
                campaign.clone(),
                segments.clone(),
                restarted.clone(),
                outage.clone(),
            );
            std::thread::spawn(move || {
                let mut after_restart = 0;
                for number in 0..MAX_BATCHES_PER_CLIENT {
                    if restarted.load(Ordering::SeqCst) {
                        after_restart += 1;
                        if after_restart > AFTER_RESTART {
                            break;
                        }
                    }
                    std::thread::sleep(if outage.load(Ordering::SeqCst) {
                        OUTAGE_PAUSE
                    } else {
                        PAUSE
                    });
                    let segment = &segments[(client + number) % segments.len()];
                    let request = json!({"segment": segment, "count": BATCH}).to_string();
                    let decided = any_server(
                        &addresses,
                        client + number,
                        |http| {
                            http.request(
                                "POST",
                                &format!("/v1/campaigns/{campaign}/decisions"),
                                ADMIN,
                                "application/json",
                                request.as_bytes(),
                            )
                        },
                        |status, _| status == 200,
                    );
                    let mut events = Vec::new();
                    let mut ids = Vec::new();
                    for (i, decision) in decided["decisions"].as_array().unwrap().iter().enumerate()
                    {
                        let decision = decision["decision_id"].as_str().unwrap();
                        let id = format!("c{client}-b{number}-i{i}");
                        events.push(
                            json!({"event_id": id, "decision_id": decision, "type": "impression"}),
                        );
                        ids.push(id);
                        if i % 5 == 0 {
                            let id = format!("c{client}-b{number}-k{i}");
                            events.push(
                                json!({"event_id": id, "decision_id": decision, "type": "click"}),
                            );
                            ids.push(id);
                        }
                    }
                    let body = json!({ "events": events }).to_string();
                    let sent = events.len() as u64;
                    let answer = any_server(
                        &addresses,
                        client + number + 1,
                        |http| {
                            http.request(
                                "POST",
                                "/v1/events",
                                ADMIN,
                                "application/json",
                                body.as_bytes(),
                            )
                        },
                        |status, body| {
                            status == 200 && body["rejected"].as_array().is_some_and(Vec::is_empty)
                        },
                    );
                    let accepted = answer["accepted"].as_u64().unwrap();
                    let duplicates = answer["duplicates"].as_u64().unwrap();
                    assert_eq!(accepted + duplicates, sent, "{answer}");
                    let mut totals = answers.lock().unwrap();
                    totals.0 += accepted;
                    totals.1 += duplicates;
                    acknowledged.lock().unwrap().extend(ids);
                }
            })
        })
        .collect();

    // Chaos: SIGKILL NATS node 1 and TLA server 2 mid-load, then restart both.
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = acknowledged.lock().unwrap().len();
    outage.store(true, Ordering::SeqCst);
    addresses.write().unwrap()[2] = None;
    nats.kill(1);
    let mut child = processes.tla[2].take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    nats.restart(1);
    // State changes while server 2 is down: a revision on server 0, a pause on server 1
    // and a resume on server 0 (retried on another server until one answers).
    let changed_while_down = change_state(&addresses, &campaign);
    let restarting = Instant::now();
    let (child, address) = start_tla(&data[2], &event_log, SECRET);
    let restart_secs = restarting.elapsed().as_secs_f64();
    processes.tla[2] = Some(child);
    addresses.write().unwrap()[2] =
        Some(address.unwrap_or_else(|e| panic!("tla serve after SIGKILL: {e}")));
    let restarted_at = acknowledged.lock().unwrap().len();
    outage.store(false, Ordering::SeqCst);
    restarted.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a client failed");
    }

    // Every server catches up to the same stream sequence.
    let live: Vec<SocketAddr> = addresses
        .read()
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let healths: Vec<Value> = live.iter().map(|a| health(*a)).collect();
        let lasts: HashSet<u64> = healths
            .iter()
            .map(|h| h["stream"]["stream_last_seq"].as_u64().unwrap())
            .collect();
        let settled = lasts.len() == 1
            && healths
                .iter()
                .all(|h| h["stream"]["lag"] == 0 && h["stream"]["unapplied_events"] == 0);
        if settled {
            break *lasts.iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the servers did not catch up within 60 s: {healths:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // Every acknowledged event is found on every server.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let distinct: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "ids are unique per send"
    );
    let looking = Instant::now();
    let acknowledged = Arc::new(acknowledged);
    let found: Vec<usize> = live
        .iter()
        .enumerate()
        .map(|(server, address)| {
            let (address, acknowledged, campaign) =
                (*address, acknowledged.clone(), campaign.clone());
            std::thread::spawn(move || {
                let mut http = Http::connect(address).unwrap();
                for id in acknowledged.iter() {
                    let (status, body) = http.json(
                        "GET",
                        &format!("/v1/campaigns/{campaign}/events/{id}"),
                        ADMIN,
                        &Value::Null,
                    );
                    assert_eq!(status, 200, "event {id} on server {server}: {body}");
                }
                acknowledged.len()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|lookups| lookups.join().expect("an acknowledged event is missing"))
        .collect();

    // No event counted twice, and the same model everywhere at the same sequence.
    let models: Vec<Value> = live
        .iter()
        .map(|address| {
            let mut http = Http::connect(*address).unwrap();
            let (status, body) = http.json(
                "GET",
                &format!("/v1/campaigns/{campaign}/model"),
                ADMIN,
                &Value::Null,
            );
            assert_eq!(status, 200, "{body}");
            body
        })
        .collect();
    for model in &models {
        assert_eq!(model["events"], acknowledged.len() as u64, "{models:#?}");
        assert_eq!(
            model["applied_seq"], models[0]["applied_seq"],
            "{models:#?}"
        );
        assert_eq!(model["sha256"], models[0]["sha256"], "{models:#?}");
    }
    let (accepted, duplicates) = *answers.lock().unwrap();
    let lookup_secs = looking.elapsed().as_secs_f64();

    // The changes made while server 2 was down are on every server, the restarted one
    // too: the same revisions (from the same stream sequence) and the same status.
    let revisions: Vec<Value> = live
        .iter()
        .map(|address| {
            let mut http = Http::connect(*address).unwrap();
            let (status, body) = http.json(
                "GET",
                &format!("/v1/campaigns/{campaign}/revisions"),
                ADMIN,
                &Value::Null,
            );
            assert_eq!(status, 200, "{body}");
            body["revisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!([r["revision"], r["from_seq"], r["spec"]["name"], r["key_id"]]))
                .collect()
        })
        .collect();
    assert_eq!(
        revisions[0].as_array().unwrap().len(),
        2,
        "the revision is listed, once: {revisions:#?}"
    );
    for (server, listed) in revisions.iter().enumerate() {
        assert_eq!(listed, &revisions[0], "server {server}: {revisions:#?}");
        let mut http = Http::connect(live[server]).unwrap();
        let (_, body) = http.json(
            "GET",
            &format!("/v1/campaigns/{campaign}"),
            ADMIN,
            &Value::Null,
        );
        assert_eq!(body["status"], "active", "server {server}: {body}");
        assert_eq!(
            body["revision"],
            revisions[0].as_array().unwrap().len(),
            "{body}"
        );
        assert_eq!(
            body["components"][0]["options"], 4,
            "server {server}: {body}"
        );
    }

    // A key made in server 0's data directory authenticates on the others; revoked
    // there, it is refused on the others.
    let (key_seen_secs, revoke_seen_secs) = key_across_servers(&data[0], &live, &campaign);

    // A server with another secret refuses the stream, saying why.
    let (mut other, refused) = start_tla(
        &root.0.join("other"),
        &event_log,
        "another-secret-0123456789abcdef",
    );
    let status = other.wait().expect("the refused server exits");
    assert!(!status.success());
    let said = refused.expect_err("no address from a refused server");
    assert!(said.contains("another decision-id secret"), "{said}");

    // Retractions sent to the three servers in turn reach every server's model.
    const RETRACTED: usize = 12;
    let retracted: Vec<&String> = acknowledged.iter().step_by(37).take(RETRACTED).collect();
    for (k, id) in retracted.iter().enumerate() {
        let mut http = Http::connect(live[k % live.len()]).unwrap();
        let (status, body) = http.json(
            "POST",
            &format!("/v1/campaigns/{campaign}/corrections"),
            ADMIN,
            &json!({"event_id": id, "action": "retract", "reason": "chaos test"}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let corrected = loop {
        let models: Vec<Value> = live
            .iter()
            .map(|address| {
                let mut http = Http::connect(*address).unwrap();
                http.json(
                    "GET",
                    &format!("/v1/campaigns/{campaign}/model"),
                    ADMIN,
                    &Value::Null,
                )
                .1
            })
            .collect();
        let expected = (acknowledged.len() - RETRACTED) as u64;
        if models
            .iter()
            .all(|m| m["events"] == expected && m["sha256"] == models[0]["sha256"])
        {
            break models;
        }
        assert!(
            Instant::now() < deadline,
            "the retractions did not reach every model within 30 s: {models:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // A server that loses the whole stream stops deciding once the bound has passed.
    for i in 0..NODES {
        nats.kill(i);
    }
    std::thread::sleep(STALE_AFTER + Duration::from_secs(2));
    let mut http = Http::connect(live[0]).unwrap();
    let (status, refused) = http.json(
        "POST",
        &format!("/v1/campaigns/{campaign}/decisions"),
        ADMIN,
        &json!({"segment": segments[0], "count": 1}),
    );
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "stream_unavailable", "{refused}");
    let (status, degraded) = http.json("GET", "/healthz", ADMIN, &Value::Null);
    assert_eq!(status, 503, "{degraded}");
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    assert_eq!(degraded["stream"]["stale"], true, "{degraded}");

    eprintln!(
        "cluster: {} events acknowledged ({accepted} accepted, {duplicates} duplicates of \
         re-sent batches; {killed_at} acknowledged before the kill, {restarted_at} by the \
         restart), found on every server: {found:?}, lost: 0, counted twice: 0 (each model \
         learned {} events); models at applied_seq {} of stream sequence {last}: sha256 {} \
         on all {} servers; after {RETRACTED} retractions sent to the servers in turn, \
         each model learned {} events, sha256 {} on all; while the server was down {changed_while_down}; \
         a key made on server 0 authenticated on servers 1 and 2 after {key_seen_secs:.2} s and, revoked, \
         was refused there after {revoke_seen_secs:.2} s; the killed server restarted in {restart_secs:.1} s, the \
         lookups took {lookup_secs:.1} s; {:.1} s in all",
        acknowledged.len(),
        models[0]["events"],
        models[0]["applied_seq"],
        models[0]["sha256"],
        live.len(),
        corrected[0]["events"],
        corrected[0]["sha256"],
        started.elapsed().as_secs_f64()
    );
}

/// The campaign's name after the revision the test makes.
const REVISED_NAME: &str = "Northfield River Alliance: spring appeal, revised";

/// Makes a revision (a new name and a new headline) on server 0, a pause on server 1
/// and a resume on server 0, each retried on the next live server until one answers;
/// says what was done.
fn change_state(addresses: &Addresses, campaign: &str) -> String {
    let revised = SPEC
        .replace(
            "name = \"Northfield River Alliance: spring appeal\"",
            &format!("name = \"{REVISED_NAME}\""),
        )
        .replace(
            "  { name = \"first_gift\", text = \"Make your first gift count\", asks_action = false },",
            "  { name = \"first_gift\", text = \"Make your first gift count\", asks_action = false },\n  { name = \"clean_water\", text = \"Clean water starts here\", asks_action = false },",
        );
    assert_ne!(revised, SPEC);
    let started = Instant::now();
    // An attempt that timed out (503) may still be on the stream: its retries carry the
    // same Idempotency-Key, so the stream absorbs them and they answer the first
    // outcome; the revision is made once (the retries span far less than the stream's
    // 120 s deduplication window).
    let refused = std::cell::RefCell::new(Vec::<String>::new());
    let answer = any_server(
        addresses,
        0,
        |http| {
            http.request_with(
                "PUT",
                &format!("/v1/campaigns/{campaign}/spec?reason=chaos"),
                ADMIN,
                "application/toml",
                &[("Idempotency-Key", "chaos-revision")],
                revised.as_bytes(),
            )
        },
        |status, body| {
            if status != 200 {
                refused
                    .borrow_mut()
                    .push(format!("{status} {}", body["error"]["code"]));
            }
            status == 200
        },
    );
    let revision = answer["revision"]["revision"].clone();
    assert_eq!(
        revision, 2,
        "one revision however often it was retried: {answer}"
    );
    let paused = any_server(
        addresses,
        1,
        |http| {
            http.request(
                "POST",
                &format!("/v1/campaigns/{campaign}/pause"),
                ADMIN,
                "application/json",
                b"",
            )
        },
        |status, _| status == 200,
    );
    assert_eq!(paused["status"], "paused", "{paused}");
    // Server 0 sees the pause made on server 1 (its own follower applied it).
    let seen_paused = any_server(
        addresses,
        0,
        |http| {
            http.request(
                "GET",
                &format!("/v1/campaigns/{campaign}"),
                ADMIN,
                "application/json",
                b"",
            )
        },
        |status, body| status == 200 && body["status"] == "paused",
    );
    assert_eq!(seen_paused["revision"], revision, "{seen_paused}");
    assert_eq!(seen_paused["components"][0]["options"], 4, "{seen_paused}");
    let resumed = any_server(
        addresses,
        0,
        |http| {
            http.request(
                "POST",
                &format!("/v1/campaigns/{campaign}/resume"),
                ADMIN,
                "application/json",
                b"",
            )
        },
        |status, _| status == 200,
    );
    assert_eq!(resumed["status"], "active", "{resumed}");
    let refused = refused.into_inner();
    let codes: std::collections::BTreeSet<&String> = refused.iter().collect();
    format!(
        "revision {revision} ({} attempts refused before: {codes:?}), a pause and a resume were made in {:.1} s",
        refused.len(),
        started.elapsed().as_secs_f64()
    )
}

/// Runs `tla keys ARGS --data DIR` and answers its standard output.
fn tla_keys(data: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .arg("keys")
        .args(["--data"])
        .arg(data)
        .args(args)
        .env_remove("TLA_DATA")
        .output()
        .expect("tla keys runs");
    assert!(
        output.status.success(),
        "tla keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Makes a read key in the data directory `data` (of the first server in `live`),
/// waits until every other server accepts it, revokes it there and waits until every
/// other server refuses it (401); the two waits in seconds.
fn key_across_servers(data: &Path, live: &[SocketAddr], campaign: &str) -> (f64, f64) {
    let made = Instant::now();
    let token = tla_keys(data, &["create", "--scopes", "read", "--label", "chaos"])
        .trim()
        .to_string();
    let (id, _) = token
        .strip_prefix("tla_")
        .and_then(|rest| rest.split_once('_'))
        .expect("a token tla_<id>_<secret>");
    let id = id.to_string();
    let status_on = |address: SocketAddr| {
        let mut http = Http::connect(address).unwrap();
        http.json(
            "GET",
            &format!("/v1/campaigns/{campaign}"),
            &token,
            &Value::Null,
        )
        .0
    };
    let wait_for = |want: u16, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        for address in &live[1..] {
            loop {
                let status = status_on(*address);
                if status == want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the key {what} on server 0 is not seen by {address} within 20 s: {status}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    wait_for(200, "made");
    let seen = made.elapsed().as_secs_f64();
    let revoking = Instant::now();
    tla_keys(data, &["revoke", &id]);
    wait_for(401, "revoked");
    (seen, revoking.elapsed().as_secs_f64())
}
