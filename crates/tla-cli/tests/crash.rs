//! The crash test: the real `tla serve` binary, loaded by four clients sending event
//! batches, is killed with SIGKILL mid-stream. After a restart on the same data
//! directory every event of every batch answered 200 must be stored exactly once
//! (re-sent batches come back as duplicates), and the model rebuilt from the snapshot
//! plus the log tail must equal, byte for byte, the model rebuilt from the whole log.
//!
//! Bounded: the load runs ~1.5 s, every socket has a 10 s timeout, every wait for the
//! server has a deadline, and the child is killed by a drop guard if the test fails.

#![cfg(unix)]

mod common;

use common::Http;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tla_server::ServerConfig;
use tla_server::replay::{ReplayOptions, replay};
use tla_store::{EventLog, Store};

const SPEC: &str = include_str!("../../../examples/small.toml");
const CLIENTS: usize = 4;
const BATCH: usize = 50;
const LOAD_FOR: Duration = Duration::from_millis(1500);

/// Kills the server (only the child we started, by its handle) and removes the data
/// directory if the test fails half way.
struct Guard {
    data: PathBuf,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A started server: its child process (held by the guard), address and stdout lines.
struct Server {
    address: SocketAddr,
    lines: mpsc::Receiver<String>,
    printed: Vec<String>,
}

fn start_server(guard: &mut Guard, admin_key: &str) -> Server {
    assert!(guard.child.is_none(), "one server at a time");
    let child = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&guard.data)
        .env("TLA_ADMIN_KEY", admin_key)
        .env("TLA_LOG", "warn")
        .env_remove("TLA_LISTEN")
        .env_remove("TLA_DATA")
        .env_remove("TLA_SEED")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the tla binary starts");
    let child = guard.child.insert(child);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let address = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the server did not start ({e}); printed {printed:#?}"));
        printed.push(line.clone());
        if let Some(rest) = line.strip_prefix("tla serving on http://") {
            let (address, data) = rest.split_once(' ').expect("address then data dir");
            assert_eq!(data, format!("(data in {})", guard.data.display()));
            break address.parse::<SocketAddr>().expect("a socket address");
        }
    };
    assert!(address.ip().is_loopback(), "{address}");
    Server {
        address,
        lines,
        printed,
    }
}

/// Sends SIGTERM to the child and waits (bounded) for it to exit; returns its status
/// and everything it printed.
fn stop_server(guard: &mut Guard, mut server: Server) -> (ExitStatus, Vec<String>) {
    let mut child = guard.child.take().expect("a running server");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("try_wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not stop within 20 s of SIGTERM; printed {:#?}",
                server.printed
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The reader thread ends at EOF, which follows the exit.
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(5)) {
        server.printed.push(line);
    }
    (exit, server.printed)
}

/// A batch of events as sent, with its event ids.
#[derive(Clone)]
struct Batch {
    body: Vec<u8>,
    ids: Vec<String>,
}

fn make_batch(client: usize, number: usize, decisions: &[String]) -> Batch {
    let mut ids = Vec::with_capacity(BATCH);
    let mut events = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let id = format!("c{client}-b{number}-e{i}");
        let decision = &decisions[(client * 7919 + number * BATCH + i) % decisions.len()];
        let event = if i % 10 == 9 {
            json!({"event_id": id, "decision_id": decision, "type": "conversion",
                   "value": ((number + i) % 7 * 5 + 5) as f64})
        } else {
            json!({"event_id": id, "decision_id": decision, "type": "impression"})
        };
        ids.push(id);
        events.push(event);
    }
    Batch {
        body: json!({ "events": events }).to_string().into_bytes(),
        ids,
    }
}

/// What the load clients saw.
#[derive(Default)]
struct Load {
    acknowledged: Vec<Batch>,
    /// Requests answered with something other than a clean 200, before the kill.
    failures: Vec<String>,
    /// Requests cut by the kill (connection errors).
    cut: usize,
}

fn event_log_by_id(store: &Store) -> (HashMap<(String, String), u32>, u64) {
    let log = store.event_log();
    let mut counts = HashMap::new();
    let (mut after, mut expected_seq) = (0, 1);
    loop {
        let page = log.read_after(after, 10_000).expect("read the event log");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in page {
            assert_eq!(event.seq, expected_seq, "sequence numbers have a gap");
            expected_seq += 1;
            *counts
                .entry((event.campaign_id, event.event_id))
                .or_insert(0) += 1;
        }
    }
    (counts, after)
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("tla-crash-test-{}-{nanos}", std::process::id()))
}

fn admin_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tla_{:012x}_{:032x}",
        (nanos as u64) & 0xFFFF_FFFF_FFFF,
        nanos ^ 0x5DEE_CE66_D1CE_5EED_0000_0000_0000_0001
    )
}

fn open_models(data: &Path, campaign: &str) -> (Vec<u8>, Vec<u8>, u64, u64) {
    let store = Store::open(data).expect("open the data dir");
    let log = store.event_log();
    let options = |from_start| ReplayOptions {
        seed: ServerConfig::default().seed,
        from_start,
        now_ms: 1_790_000_000_000,
    };
    let normal = replay(&store, &log, options(false)).expect("replay from the snapshot");
    let replayed = replay(&store, &log, options(true)).expect("replay of the whole log");
    let a = normal
        .campaigns
        .get(campaign)
        .expect("campaign after restart");
    let b = replayed
        .campaigns
        .get(campaign)
        .expect("campaign after replay");
    let (a, b) = (a.engine(), b.engine());
    (a.snapshot(), b.snapshot(), a.events(), b.events())
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    let started = Instant::now();
    let admin = admin_key();
    let mut guard = Guard {
        data: temp_dir(),
        child: None,
    };

    // 1. Start, create the campaign, get ~500 decisions.
    let server = start_server(&mut guard, &admin);
    let address = server.address;
    let mut http = Http::connect(address).expect("connect");
    let (status, body) = http
        .request(
            "POST",
            "/v1/campaigns",
            &admin,
            "application/toml",
            SPEC.as_bytes(),
        )
        .expect("create the campaign");
    let created: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 201, "{created}");
    let campaign = created["id"].as_str().expect("an id").to_string();
    let segments: Vec<String> = created["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s.as_str().expect("a name").to_string())
        .collect();
    let mut decisions = Vec::new();
    for round in 0..5 {
        let segment = &segments[round % segments.len()];
        let (status, body) = http.json(
            "POST",
            &format!("/v1/campaigns/{campaign}/decisions"),
            &admin,
            &json!({"segment": segment, "count": 100}),
        );
        assert_eq!(status, 200, "{body}");
        for decision in body["decisions"].as_array().expect("decisions") {
            decisions.push(decision["decision_id"].as_str().expect("id").to_string());
        }
    }
    assert_eq!(decisions.len(), 500);

    // A few batches, then a clean stop: its snapshot covers them, so the restart after
    // the crash restores a snapshot and replays only the tail after it.
    let mut warm_up = Vec::new();
    for number in 0..10 {
        let batch = make_batch(CLIENTS, number, &decisions);
        let (status, body) = http
            .request(
                "POST",
                "/v1/events",
                &admin,
                "application/json",
                &batch.body,
            )
            .expect("warm-up batch");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        warm_up.push(batch);
    }
    drop(http);
    let (exit, printed) = stop_server(&mut guard, server);
    assert!(exit.success(), "exit {exit:?}; printed {printed:#?}");
    let server = start_server(&mut guard, &admin);
    let address = server.address;
    let decisions = Arc::new(decisions);

    // 2. Four clients send batches of 50 as fast as they can; SIGKILL after ~1.5 s.
    let load = Arc::new(Mutex::new(Load::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (decisions, load, killed, admin) = (
                decisions.clone(),
                load.clone(),
                killed.clone(),
                admin.clone(),
            );
            std::thread::spawn(move || {
                let mut http = match Http::connect(address) {
                    Ok(http) => http,
                    Err(e) => {
                        load.lock().unwrap().failures.push(format!("connect: {e}"));
                        return;
                    }
                };
                // Bounded even if the kill never comes.
                for number in 0..100_000 {
                    let batch = make_batch(client, number, &decisions);
                    let answer = http.request(
                        "POST",
                        "/v1/events",
                        &admin,
                        "application/json",
                        &batch.body,
                    );
                    let mut load = load.lock().unwrap();
                    match answer {
                        Ok((200, body)) => {
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let clean = body["accepted"] == BATCH
                                && body["duplicates"] == 0
                                && body["rejected"].as_array().is_some_and(Vec::is_empty);
                            if !clean {
                                load.failures
                                    .push(format!("200 but not all accepted: {body}"));
                            }
                            // A 200 means every good event in it is committed.
                            load.acknowledged.push(batch);
                        }
                        Ok((status, body)) => {
                            load.failures.push(format!(
                                "status {status}: {}",
                                String::from_utf8_lossy(&body)
                            ));
                            return;
                        }
                        Err(e) => {
                            if !killed.load(Ordering::SeqCst) {
                                load.failures.push(format!("before the kill: {e}"));
                            }
                            load.cut += 1;
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(LOAD_FOR);
    let before_kill = load.lock().unwrap().acknowledged.len();
    {
        let child = guard.child.as_mut().expect("running");
        killed.store(true, Ordering::SeqCst);
        // `Child::kill` is SIGKILL on Unix, sent to this child's pid only.
        child.kill().expect("SIGKILL the server");
        let exit = child.wait().expect("wait for the killed server");
        assert!(
            !exit.success(),
            "the server should die of SIGKILL: {exit:?}"
        );
        guard.child = None;
    }
    drop(server);
    for client in clients {
        client.join().expect("client thread");
    }
    let mut load = Arc::try_unwrap(load)
        .ok()
        .expect("clients done")
        .into_inner()
        .unwrap();
    load.acknowledged.extend(warm_up);
    assert!(
        load.failures.is_empty(),
        "failures before the kill: {:#?}",
        load.failures
    );
    assert!(before_kill > 0, "no batch was acknowledged before the kill");
    // Right after the crash: the warm-up snapshot plus the tail of the log, and the
    // whole log, give the same model.
    let covers = Store::open(&guard.data)
        .and_then(|store| store.latest_snapshot(&campaign))
        .expect("read the latest snapshot")
        .map(|(covers, _)| covers);
    assert_eq!(covers, Some((10 * BATCH) as u64), "the warm-up snapshot");
    let (tail, whole, tail_events, whole_events) = open_models(&guard.data, &campaign);
    assert_eq!(tail_events, whole_events);
    assert!(
        whole_events >= (before_kill * BATCH) as u64,
        "{whole_events} events learned, {before_kill} batches acknowledged"
    );
    assert!(
        tail == whole,
        "after the crash, snapshot + tail ({} bytes) differs from a replay of the whole log ({} bytes)",
        tail.len(),
        whole.len()
    );
    let acknowledged: HashSet<(String, String)> = load
        .acknowledged
        .iter()
        .flat_map(|b| b.ids.iter().map(|id| (campaign.clone(), id.clone())))
        .collect();
    assert_eq!(acknowledged.len(), load.acknowledged.len() * BATCH);

    // 3. Restart on the same data; re-sent acknowledged batches are all duplicates.
    let server = start_server(&mut guard, &admin);
    let mut http = Http::connect(server.address).expect("connect after restart");
    let step = (load.acknowledged.len() / 40).max(1);
    let (mut resent, mut duplicates) = (0, 0);
    for batch in load.acknowledged.iter().step_by(step) {
        let (status, body) = http
            .request(
                "POST",
                "/v1/events",
                &admin,
                "application/json",
                &batch.body,
            )
            .expect("re-send");
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 0, "a re-sent acknowledged batch: {body}");
        assert_eq!(body["duplicates"], BATCH, "{body}");
        resent += 1;
        duplicates += body["duplicates"].as_u64().unwrap();
    }
    assert!(resent > 0);
    let (status, after_restart) = http.json(
        "GET",
        &format!("/v1/campaigns/{campaign}"),
        &admin,
        &Value::Null,
    );
    assert_eq!(status, 200, "{after_restart}");
    let (status, health) = http.json("GET", "/healthz", &admin, &Value::Null);
    assert_eq!(status, 200, "{health}");
    drop(http);
    let (exit, printed) = stop_server(&mut guard, server);
    assert!(exit.success(), "exit {exit:?}; printed {printed:#?}");
    assert_eq!(
        printed.last().map(String::as_str),
        Some("tla stopped cleanly"),
        "{printed:#?}"
    );

    // 4. Every acknowledged event is stored exactly once; nothing is stored twice.
    let store = Store::open(&guard.data).expect("open the data dir");
    let (stored, last_seq) = event_log_by_id(&store);
    drop(store);
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let found = acknowledged
        .iter()
        .filter(|k| stored.contains_key(*k))
        .count();
    let lost = acknowledged.len() - found;
    let campaign_events = stored.keys().filter(|(c, _)| *c == campaign).count() as u64;
    assert_eq!(campaign_events, last_seq, "one campaign holds every event");
    assert!(campaign_events >= acknowledged.len() as u64);
    // What the restarted server had learned: every stored event (nothing new came).
    assert_eq!(
        after_restart["events_learned"], campaign_events,
        "{after_restart}"
    );
    assert_eq!(health["applied_seq"], last_seq, "{health}");

    // 5. Snapshot + tail and a replay of the whole log give the same model.
    let (normal, replayed, normal_events, replayed_events) = open_models(&guard.data, &campaign);
    assert_eq!(normal_events, campaign_events);
    assert_eq!(replayed_events, campaign_events);
    assert!(
        normal == replayed,
        "the model restored from its snapshot ({} bytes) differs from a replay of the whole log ({} bytes)",
        normal.len(),
        replayed.len()
    );

    println!(
        "crash test: acknowledged {}, found after restart {found}, duplicates on resend {duplicates}, lost {lost}",
        acknowledged.len()
    );
    eprintln!(
        "  ({} batches acknowledged, {} requests cut by the kill, {} events stored, {resent} batches re-sent, {:.1} s)",
        load.acknowledged.len(),
        load.cut,
        campaign_events,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0, "acknowledged events lost after SIGKILL");
}
