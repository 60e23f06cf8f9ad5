//! Spend leases across servers (docs/scale-out.md, *Budgets across servers*): three
//! real `tla serve` processes on one NATS JetStream stream pace one campaign with a
//! small budget. Concurrent clients ask every server for decisions and report each
//! purchase's cost some requests later (so that money is committed on all three
//! servers at once),
//! until the budget is exhausted. The total spend must stay within the budget plus the
//! stated bound, servers x lease, and most of the budget must be used (not held idle by
//! leases). The test prints the figures.
//!
//! One NATS node: the bound is a function of the stream's order alone (every server
//! applies the lease records in that order), which does not depend on the replicas;
//! the chaos test (cluster.rs) covers the replicated cluster. nats-server comes from
//! scripts/nats-deps.sh; without it the test is skipped with a message, unless `CI` is
//! set: then it fails. Bounded by counts: each client sends at most [`MAX_ROUNDS`]
//! requests, every socket has a 10 s timeout, every wait a deadline, and every process
//! it starts is killed by its pid when it ends.

#![cfg(unix)]

mod common;

use common::TempDir;
use common::nats::NatsCluster;
use common::servers::{self, ADMIN, Addresses, Log, Processes, any_server};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const SERVERS: usize = 3;
const CLIENTS: usize = 6;
const STREAM: &str = "tla_leases";
const SECRET: &str = "lease-test-shared-secret-0123456789";
/// The flight budget.
const BUDGET: f64 = 40.0;
/// `--lease-share`: with a flight of less than a day the day's allowance is the
/// budget, so a lease is `LEASE_SHARE x BUDGET`.
const LEASE_SHARE: f64 = 0.05;
/// Decisions per request.
const PER_REQUEST: usize = 10;
/// A purchase's cost is reported this many of its client's requests after its
/// decision (money committed on every server before any of it is counted).
const COST_DELAY_ROUNDS: usize = 12;
/// A client's pause between its requests.
const PAUSE: Duration = Duration::from_millis(30);
/// The load stops once this many decision requests in a row (all clients) bought
/// nothing: the budget is spent...
const QUIET_REQUESTS: u64 = 600;
/// ... or when each client has sent this many.
const MAX_ROUNDS: usize = 1_000;

/// The cost of purchase `n` of client `client`: 0.02 to 0.06, fixed by the numbers.
fn cost_of(client: usize, n: u64) -> f64 {
    let x = (n.wrapping_mul(2_654_435_761) ^ (client as u64).wrapping_mul(40_503)) % 1_000;
    0.02 + 0.04 * x as f64 / 1_000.0
}

/// Counts shared by the clients.
#[derive(Default)]
struct Tally {
    purchases: AtomicU64,
    /// Decision requests in a row (all clients) that bought nothing.
    quiet: AtomicU64,
    /// Skips by reason.
    skips: Mutex<BTreeMap<String, u64>>,
    /// Every acknowledged cost event: id -> amount (a re-sent batch counts once).
    costs: Mutex<HashMap<String, f64>>,
}

/// Sends the cost events of `due` to any server until acknowledged.
fn send_costs(addresses: &Addresses, first: usize, due: Vec<(String, String, f64)>, tally: &Tally) {
    if due.is_empty() {
        return;
    }
    let events: Vec<Value> = due
        .iter()
        .map(|(event_id, decision_id, amount)| {
            json!({"event_id": event_id, "decision_id": decision_id, "type": "cost", "amount": amount})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let answer = any_server(
        addresses,
        first,
        |http| http.request("POST", "/v1/events", ADMIN, "application/json", &body),
        |status, _| status == 200,
    );
    assert_eq!(
        answer["rejected"].as_array().map_or(0, Vec::len),
        0,
        "{answer}"
    );
    let mut costs = tally.costs.lock().unwrap();
    for (event_id, _, amount) in due {
        costs.insert(event_id, amount);
    }
}

#[test]
fn three_servers_spend_a_budget_within_servers_times_lease() {
    let Some(binary) = tla_server::stream_log::nats_server_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is missing: run scripts/nats-deps.sh (the README's test command does)"
        );
        eprintln!(
            "SKIPPED three_servers_spend_a_budget_within_servers_times_lease: nats-server is \
             missing; run scripts/nats-deps.sh to run this test"
        );
        return;
    };
    let started = Instant::now();
    let root = TempDir::new("leases");
    std::fs::create_dir_all(&root.0).unwrap();
    let nats = NatsCluster::start(&binary, &root.0, 1);
    let event_log = nats.urls();
    let mut processes = Processes::default();
    let share = LEASE_SHARE.to_string();
    let mut addresses = Vec::new();
    for i in 0..SERVERS {
        let log = Log::Stream {
            event_log: &event_log,
            stream: STREAM,
            secret: SECRET,
        };
        let (child, address) = servers::start_tla(
            &root.0.join(format!("tla{i}")),
            &log,
            &["--lease-share", &share],
            Duration::from_secs(60),
        );
        processes.tla.push(Some(child));
        addresses.push(Some(address.unwrap_or_else(|e| panic!("tla serve: {e}"))));
    }

    // A flight that started a day ago and ends in 60 s: the pacer is far behind its
    // plan and buys what it is offered, so the budget goes in seconds.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let spec = format!(
        "{}\n[flight]\nbudget = {BUDGET}\nstart = \"{}\"\nend = \"{}\"\n",
        include_str!("../../../examples/small.toml"),
        tla_core::timestamp::format_rfc3339(now_ms - 23 * 3_600_000),
        tla_core::timestamp::format_rfc3339(now_ms + 60_000),
    );
    let mut http = common::Http::connect(addresses[0].unwrap()).unwrap();
    let (status, body) = http
        .request(
            "POST",
            "/v1/campaigns",
            ADMIN,
            "application/toml",
            spec.as_bytes(),
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
    let deadline = Instant::now() + Duration::from_secs(20);
    for address in addresses[1..].iter().flatten() {
        loop {
            let mut http = common::Http::connect(*address).unwrap();
            let (status, _) = http.json(
                "GET",
                &format!("/v1/campaigns/{campaign}"),
                ADMIN,
                &Value::Null,
            );
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "campaign did not reach {address} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let servers: Vec<SocketAddr> = addresses.iter().flatten().copied().collect();
    let addresses: Addresses = Arc::new(RwLock::new(addresses));

    // Load: each client asks its own server for decisions (the clients spread over the
    // three) and reports each purchase's cost COST_DELAY_ROUNDS requests later to any
    // server, until QUIET_REQUESTS requests in a row bought nothing.
    let tally = Arc::new(Tally::default());
    let load_started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addresses, tally, campaign, segments) = (
                addresses.clone(),
                tally.clone(),
                campaign.clone(),
                segments.clone(),
            );
            std::thread::spawn(move || {
                let server = client % SERVERS;
                let mut pending: VecDeque<(usize, String, String, f64)> = VecDeque::new();
                let mut n = 0u64;
                for round in 0..MAX_ROUNDS {
                    if tally.quiet.load(Ordering::SeqCst) >= QUIET_REQUESTS {
                        break;
                    }
                    let segment = &segments[round % segments.len()];
                    let request =
                        serde_json::to_vec(&json!({"segment": segment, "count": PER_REQUEST}))
                            .unwrap();
                    let answer = any_server(
                        &addresses,
                        server,
                        |http| {
                            http.request(
                                "POST",
                                &format!("/v1/campaigns/{campaign}/decisions"),
                                ADMIN,
                                "application/json",
                                &request,
                            )
                        },
                        |status, _| status == 200,
                    );
                    let mut bought = false;
                    for decision in answer["decisions"].as_array().unwrap() {
                        if let Some(reason) = decision["skip"]["reason"].as_str() {
                            *tally
                                .skips
                                .lock()
                                .unwrap()
                                .entry(reason.to_string())
                                .or_default() += 1;
                            continue;
                        }
                        bought = true;
                        tally.purchases.fetch_add(1, Ordering::SeqCst);
                        n += 1;
                        pending.push_back((
                            round + COST_DELAY_ROUNDS,
                            format!("cost-{client}-{n}"),
                            decision["decision_id"].as_str().unwrap().to_string(),
                            cost_of(client, n),
                        ));
                    }
                    if bought {
                        tally.quiet.store(0, Ordering::SeqCst);
                    } else {
                        tally.quiet.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut due = Vec::new();
                    while pending.front().is_some_and(|p| p.0 <= round) {
                        let (_, id, decision, amount) = pending.pop_front().unwrap();
                        due.push((id, decision, amount));
                    }
                    send_costs(&addresses, client, due, &tally);
                    std::thread::sleep(PAUSE);
                }
                // Every purchase's cost arrives in the end.
                let rest = pending
                    .into_iter()
                    .map(|(_, id, d, a)| (id, d, a))
                    .collect();
                send_costs(&addresses, client, rest, &tally);
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    let load_secs = load_started.elapsed().as_secs_f64();

    // Every server applies the whole stream: the same spend counted and lease book.
    let deadline = Instant::now() + Duration::from_secs(30);
    let healths = loop {
        let healths: Vec<Value> = servers.iter().map(|a| servers::health(*a)).collect();
        let caught_up = healths.iter().all(|h| {
            h["stream"]["lag"] == 0
                && h["stream"]["stream_last_seq"] == healths[0]["stream"]["stream_last_seq"]
        });
        if caught_up {
            break healths;
        }
        assert!(
            Instant::now() < deadline,
            "the servers did not catch up: {healths:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let costs = tally.costs.lock().unwrap().clone();
    let spend: f64 = costs.values().sum();
    let purchases = tally.purchases.load(Ordering::SeqCst);
    assert_eq!(
        costs.len() as u64,
        purchases,
        "every purchase's cost was reported once"
    );
    // Each server's `leases` (one campaign): its lease and the book as it applied it.
    let books: Vec<&Value> = healths.iter().map(|h| &h["leases"][0]).collect();
    let lease = LEASE_SHARE * BUDGET;
    let bound = SERVERS as f64 * lease;
    let overspend = (spend - BUDGET).max(0.0);
    let granted = books[0]["book"]["granted"].as_u64().unwrap_or(0);
    let refused = books[0]["book"]["refused"].as_u64().unwrap_or(0);
    let lease_skips: u64 = books.iter().filter_map(|b| b["skips"].as_u64()).sum();
    let skips = tally.skips.lock().unwrap().clone();
    println!(
        "leases: budget {BUDGET:.2}, spend {spend:.4} ({:.1}% of the budget), overspend {overspend:.4}, \
         bound servers x lease = {SERVERS} x {lease:.2} = {bound:.2}; {purchases} purchases, skips {skips:?} \
         ({lease_skips} for want of lease); leases granted {granted}, refused {refused}; load {load_secs:.1} s, \
         {:.1} s in all",
        100.0 * spend / BUDGET,
        started.elapsed().as_secs_f64()
    );
    assert!(
        spend <= BUDGET + bound,
        "spend {spend} is above the budget {BUDGET} plus the bound {bound}"
    );
    assert!(
        spend >= 0.9 * BUDGET,
        "only {spend} of the budget {BUDGET} was spent: leases held idle?"
    );
    for (h, book) in healths.iter().zip(&books) {
        assert_eq!(h["leases"].as_array().map(Vec::len), Some(1), "{h}");
        assert!(
            (book["lease_size"].as_f64().unwrap() - lease).abs() < 1e-9,
            "{book}"
        );
        assert_eq!(
            book["book"], books[0]["book"],
            "every server applies the same book: {books:#?}"
        );
        let counted = book["book"]["spent_counted"].as_f64().unwrap();
        assert!(
            (counted - spend).abs() < 1e-6,
            "counted {counted}, reported {spend}"
        );
    }
    let servers_seen: std::collections::HashSet<&str> = books
        .iter()
        .map(|b| b["server"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers_seen.len(),
        SERVERS,
        "each server has its own id: {books:#?}"
    );
    assert!(granted >= SERVERS as u64, "{granted} leases granted");
    drop(processes);
    drop(nats);
}
