//! Benchmarks of several servers on one NATS JetStream stream (docs/scale-out.md,
//! *Measured*). Real processes on loopback: nats-server (scripts/nats-deps.sh) and the
//! `tla` binary of this build, every one killed by its pid when the run ends.
//!
//! ```sh
//! cargo bench -p tla-cli --bench cluster -- throughput [--secs 10] [--clients 8] [--batch 50]
//! cargo bench -p tla-cli --bench cluster -- cold-start [--events 1000000] [--tail 100000]
//! ```
//!
//! `throughput`: one 3-node NATS cluster; for 1, 2 and 3 servers, each on a new stream
//! with 3 replicas, then one server on its SQLite file (the anchor): `--clients`
//! threads, each for `--secs`, ask the servers in turn for `--batch` decisions and send
//! their impressions (and a click for every fifth) to the next server. It prints
//! decisions/s and events/s, their ratios to the 1-server figure, the CPU seconds of
//! every process (utime + stime from /proc), and the replica lag: during the 2- and
//! 3-server runs a prober sends one event to server 0 every 20 ms and pollers on the
//! other servers read `/healthz` `mirrored_seq` in a loop; the lag of a probe on a
//! server is the time from server 0's answer (after the publish ack) to the first poll
//! that shows its sequence.
//!
//! `cold-start`: one NATS node, a stream with 1 replica, a bulk publisher (pipelined
//! publishes) filling it with `--events` events copied from real ones; then the time
//! until a server is ready (`/healthz` with lag 0 and no unapplied events) (a) from its
//! snapshot and mirror plus a tail of `--tail` events and (b) from nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use common::nats::NatsCluster;
use common::servers::{self, ADMIN, Log, Processes, health};
use common::{Http, TempDir};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SPEC: &str = include_str!("../../../examples/small.toml");
const SECRET: &str = "bench-shared-secret-0123456789abcdef";
const STALE_AFTER: Duration = Duration::from_secs(10);
/// The pause between two probes of the replica lag.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Longest a server may take to start (the cold start over 10^7 events reads them all).
const START_WAIT: Duration = Duration::from_secs(3_600);

struct Args {
    what: String,
    secs: f64,
    clients: usize,
    batch: usize,
    events: u64,
    tail: u64,
}

fn args() -> Args {
    let mut args = Args {
        what: String::new(),
        secs: 10.0,
        clients: 8,
        batch: 50,
        events: 1_000_000,
        tail: 100_000,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--secs" => args.secs = value("--secs").parse().expect("--secs: seconds"),
            "--clients" => args.clients = value("--clients").parse().expect("--clients: a count"),
            "--batch" => args.batch = value("--batch").parse().expect("--batch: a count"),
            "--events" => args.events = value("--events").parse().expect("--events: a count"),
            "--tail" => args.tail = value("--tail").parse().expect("--tail: a count"),
            "throughput" | "cold-start" => args.what = arg,
            other => panic!(
                "{other:?} is not accepted; accepted: throughput [--secs S] [--clients N] [--batch N] | cold-start [--events N] [--tail N]"
            ),
        }
    }
    args
}

fn main() {
    let args = args();
    if args.what.is_empty() {
        // `cargo bench` without a name runs every bench target: this one says how to
        // run it rather than start a cluster.
        eprintln!("cluster bench: name a run: throughput | cold-start (see benches/cluster.rs)");
        return;
    }
    let Some(binary) = tla_server::stream_log::nats_server_binary() else {
        panic!("nats-server is missing: run scripts/nats-deps.sh");
    };
    println!("cluster bench {}: {}", args.what, machine());
    match args.what.as_str() {
        "throughput" => throughput(&binary, &args),
        _ => cold_start(&binary, &args),
    }
}

/// The machine and its load when the run starts.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and
    // 13th of them (fields 14 and 15 of the line).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum()
    });
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn pids(children: &[Option<Child>]) -> Vec<u32> {
    children.iter().flatten().map(Child::id).collect()
}

/// Stops a server with SIGTERM (it snapshots its models on the way out), by its pid.
fn terminate(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Creates the campaign on the first server (with an idempotency key) and waits until
/// every other one has it; returns its id and segments.
fn create_campaign(addresses: &[SocketAddr]) -> (String, Vec<String>) {
    let mut http = Http::connect(addresses[0]).unwrap();
    let (status, body) = http
        .request_with(
            "POST",
            "/v1/campaigns",
            ADMIN,
            "application/toml",
            &[("idempotency-key", "bench-campaign")],
            SPEC.as_bytes(),
        )
        .expect("create the campaign");
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert!(status == 201 || status == 200, "{status} {created}");
    let id = created["id"].as_str().unwrap().to_string();
    let segments = created["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for address in &addresses[1..] {
        let mut http = Http::connect(*address).unwrap();
        while http
            .json("GET", &format!("/v1/campaigns/{id}"), ADMIN, &Value::Null)
            .0
            != 200
        {
            assert!(
                Instant::now() < deadline,
                "the campaign did not reach {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (id, segments)
}

/// What the clients of one run got.
#[derive(Default, Clone, Copy)]
struct Counts {
    decisions: u64,
    events: u64,
    errors: u64,
}

/// `clients` threads for `secs` each: decisions from the servers in turn, their events
/// to the next server.
fn load(
    addresses: &[SocketAddr],
    campaign: &str,
    segments: &[String],
    args: &Args,
    tag: &str,
) -> Counts {
    let deadline = Instant::now() + Duration::from_secs_f64(args.secs);
    let threads: Vec<_> = (0..args.clients)
        .map(|client| {
            let addresses = addresses.to_vec();
            let (campaign, segments, tag) = (campaign.to_owned(), segments.to_vec(), tag.to_owned());
            let batch = args.batch;
            std::thread::spawn(move || {
                let mut http: Vec<Http> = addresses
                    .iter()
                    .map(|a| Http::connect(*a).expect("connect"))
                    .collect();
                let n = addresses.len();
                let mut counts = Counts::default();
                let mut number = 0usize;
                while Instant::now() < deadline {
                    number += 1;
                    let segment = &segments[(client + number) % segments.len()];
                    let request = json!({"segment": segment, "count": batch}).to_string();
                    let to = (client + number) % n;
                    let decided = http[to].request(
                        "POST",
                        &format!("/v1/campaigns/{campaign}/decisions"),
                        ADMIN,
                        "application/json",
                        request.as_bytes(),
                    );
                    let Ok((200, body)) = decided else {
                        counts.errors += 1;
                        http[to] = Http::connect(addresses[to]).expect("connect");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let decided: Value = serde_json::from_slice(&body).unwrap();
                    let mut events = Vec::new();
                    for (i, decision) in decided["decisions"].as_array().unwrap().iter().enumerate() {
                        counts.decisions += 1;
                        let decision = decision["decision_id"].as_str().unwrap();
                        events.push(json!({"event_id": format!("{tag}-{client}-{number}-i{i}"), "decision_id": decision, "type": "impression"}));
                        if i % 5 == 0 {
                            events.push(json!({"event_id": format!("{tag}-{client}-{number}-k{i}"), "decision_id": decision, "type": "click"}));
                        }
                    }
                    let body = json!({ "events": events }).to_string();
                    let to = (to + 1) % n;
                    match http[to].request("POST", "/v1/events", ADMIN, "application/json", body.as_bytes()) {
                        Ok((200, answer)) => {
                            let answer: Value = serde_json::from_slice(&answer).unwrap();
                            counts.events += answer["accepted"].as_u64().unwrap_or(0);
                        }
                        _ => {
                            counts.errors += 1;
                            http[to] = Http::connect(addresses[to]).expect("connect");
                        }
                    }
                }
                counts
            })
        })
        .collect();
    threads.into_iter().fold(Counts::default(), |total, t| {
        let c = t.join().expect("a client thread");
        Counts {
            decisions: total.decisions + c.decisions,
            events: total.events + c.events,
            errors: total.errors + c.errors,
        }
    })
}

/// The replica lag probe: one event to server 0 every [`PROBE_EVERY`]; pollers on the others
/// record `(time, mirrored_seq)`; returns the lag of each probe on each other server.
fn lag_probe(
    addresses: &[SocketAddr],
    campaign: &str,
    segments: &[String],
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, Duration) {
    let mut http = Http::connect(addresses[0]).unwrap();
    let (_, decided) = http.json(
        "POST",
        &format!("/v1/campaigns/{campaign}/decisions"),
        ADMIN,
        &json!({"segment": segments[0], "count": 1}),
    );
    let decision = decided["decisions"][0]["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pollers: Vec<_> = addresses[1..]
        .iter()
        .map(|address| {
            let (address, stop) = (*address, stop.clone());
            std::thread::spawn(move || {
                let mut http = Http::connect(address).unwrap();
                let mut samples = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (_, body) = http.json("GET", "/healthz", ADMIN, &Value::Null);
                    if let Some(seq) = body["stream"]["mirrored_seq"].as_u64() {
                        samples.push((Instant::now(), seq));
                    }
                }
                samples
            })
        })
        .collect();
    let mut probes = Vec::new();
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let id = format!("probe-{k}");
        let body =
            json!({"events": [{"event_id": id, "decision_id": decision, "type": "impression"}]});
        let (status, _) = http.json("POST", "/v1/events", ADMIN, &body);
        let answered = Instant::now();
        if status == 200 {
            let (_, stored) = http.json(
                "GET",
                &format!("/v1/campaigns/{campaign}/events/{id}"),
                ADMIN,
                &Value::Null,
            );
            if let Some(seq) = stored["seq"].as_u64() {
                probes.push((answered, seq));
            }
        }
        std::thread::sleep(PROBE_EVERY);
    }
    let mut lags = Vec::new();
    let mut gaps = Vec::new();
    for poller in pollers {
        let samples = poller.join().expect("a poller");
        gaps.extend(samples.windows(2).map(|w| w[1].0 - w[0].0));
        for &(answered, seq) in &probes {
            if let Some(&(seen, _)) = samples.iter().find(|&&(_, s)| s >= seq) {
                lags.push(seen.saturating_duration_since(answered));
            }
        }
    }
    gaps.sort();
    let poll = gaps.get(gaps.len() / 2).copied().unwrap_or_default();
    (lags, poll)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `tla serve` on `log`, deciding again `STALE_AFTER` after it lost the stream.
fn start_tla(data: &Path, log: &Log<'_>, wait: Duration) -> (Child, Result<SocketAddr, String>) {
    let stale = STALE_AFTER.as_secs_f64().to_string();
    let extra: &[&str] = match log {
        Log::Sqlite => &[],
        Log::Stream { .. } => &["--stream-stale-secs", &stale],
    };
    servers::start_tla(data, log, extra, wait)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn throughput(binary: &Path, args: &Args) {
    let root = TempDir::new("bench-cluster");
    std::fs::create_dir_all(&root.0).unwrap();
    let mut processes = Processes::default();
    let nats = NatsCluster::start(binary, &root.0, 3);
    let event_log = nats.urls();
    println!(
        "{} clients x {} s, batches of {} decisions (+{} events each); every figure from this one run",
        args.clients,
        args.secs,
        args.batch,
        args.batch + args.batch.div_ceil(5)
    );
    let mut rows = Vec::new();
    for servers in [1usize, 2, 3, 0] {
        let stream = format!("bench_s{servers}");
        let log = if servers == 0 {
            Log::Sqlite
        } else {
            Log::Stream {
                event_log: &event_log,
                stream: &stream,
                secret: SECRET,
            }
        };
        let mut addresses = Vec::new();
        processes.tla.clear();
        for s in 0..servers.max(1) {
            let data = root.0.join(format!("tla-{servers}-{s}"));
            let (child, address) = start_tla(&data, &log, Duration::from_secs(60));
            processes.tla.push(Some(child));
            addresses.push(address.unwrap_or_else(|e| panic!("tla serve: {e}")));
        }
        let (campaign, segments) = create_campaign(&addresses);
        let watched: Vec<u32> = pids(&processes.tla)
            .into_iter()
            .chain(if servers == 0 {
                Vec::new()
            } else {
                nats.pids()
            })
            .collect();
        let before: Vec<f64> = watched.iter().map(|&p| cpu_secs(p)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let prober = (servers >= 2).then(|| {
            let (addresses, campaign, segments, stop) = (
                addresses.clone(),
                campaign.clone(),
                segments.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || lag_probe(&addresses, &campaign, &segments, stop))
        });
        let started = Instant::now();
        let counts = load(
            &addresses,
            &campaign,
            &segments,
            args,
            &format!("s{servers}"),
        );
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let lag = prober.map(|p| p.join().expect("the prober"));
        let cpu: Vec<f64> = watched
            .iter()
            .zip(&before)
            .map(|(&p, b)| cpu_secs(p) - b)
            .collect();
        if servers > 0 {
            let healths: Vec<Value> = addresses.iter().map(|a| health(*a)).collect();
            let last: Vec<u64> = healths
                .iter()
                .map(|h| h["stream"]["mirrored_seq"].as_u64().unwrap_or(0))
                .collect();
            eprintln!("mirrored_seq after the run: {last:?}");
        }
        rows.push((servers, counts, elapsed, cpu, lag));
        for child in processes.tla.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let base = rows[0].1;
    let base_secs = rows[0].2;
    println!();
    println!(
        "| servers | decisions/s | events/s | ratio (decisions) | ratio (events) | errors | CPU s: tla servers | CPU s: NATS nodes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (servers, counts, elapsed, cpu, _) in &rows {
        let d = counts.decisions as f64 / elapsed;
        let e = counts.events as f64 / elapsed;
        let name = if *servers == 0 {
            "1, SQLite (anchor)".to_string()
        } else {
            format!("{servers}, stream")
        };
        let n = (*servers).max(1);
        let show = |v: &[f64]| {
            v.iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        println!(
            "| {name} | {d:.0} | {e:.0} | {:.2} | {:.2} | {} | {} | {} |",
            d / (base.decisions as f64 / base_secs),
            e / (base.events as f64 / base_secs),
            counts.errors,
            show(&cpu[..n]),
            show(&cpu[n..]),
        );
    }
    println!();
    for (servers, _, _, _, lag) in &rows {
        if let Some((lags, poll)) = lag {
            let mut lags = lags.clone();
            lags.sort();
            println!(
                "replica lag with {servers} servers: {} probes x {} other servers, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (healthz polled every {:.2} ms, median)",
                lags.len() / (servers - 1),
                servers - 1,
                ms(percentile(&lags, 0.5)),
                ms(percentile(&lags, 0.99)),
                ms(lags.last().copied().unwrap_or_default()),
                ms(*poll)
            );
        }
    }
}

/// Waits until a server is ready: `/healthz` 200, nothing unreceived or unapplied, at
/// least at `last_seq`.
fn wait_ready(address: SocketAddr, last_seq: u64) {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let h = health(address);
        let s = &h["stream"];
        if s["lag"] == 0
            && s["unapplied_events"] == 0
            && s["mirrored_seq"].as_u64() >= Some(last_seq)
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a server on the stream and times it until it is ready.
fn timed_start(
    data: &Path,
    log: &Log<'_>,
    last_seq: u64,
) -> (Child, SocketAddr, Duration, Duration) {
    let started = Instant::now();
    let (child, address) = start_tla(data, log, START_WAIT);
    let address = address.unwrap_or_else(|e| panic!("tla serve: {e}"));
    let listening = started.elapsed();
    wait_ready(address, last_seq);
    (child, address, listening, started.elapsed())
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn cold_start(binary: &Path, args: &Args) {
    const STREAM: &str = "bench_cold";
    const POOL: usize = 1_000;
    let root = TempDir::new("bench-cold");
    std::fs::create_dir_all(&root.0).unwrap();
    let nats = NatsCluster::start(binary, &root.0, 1);
    let event_log = nats.urls();
    let log = Log::Stream {
        event_log: &event_log,
        stream: STREAM,
        secret: SECRET,
    };
    let a = root.0.join("tla-a");

    // Real events to copy: a server makes decisions and stores one impression each.
    let (mut child, address) = start_tla(&a, &log, START_WAIT);
    let address = address.unwrap_or_else(|e| panic!("tla serve: {e}"));
    let (campaign, segments) = create_campaign(&[address]);
    let mut http = Http::connect(address).unwrap();
    for k in 0..POOL / 100 {
        let (_, decided) = http.json(
            "POST",
            &format!("/v1/campaigns/{campaign}/decisions"),
            ADMIN,
            &json!({"segment": segments[k % segments.len()], "count": 100}),
        );
        let events: Vec<Value> = decided["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"event_id": format!("pool-{k}-{i}"), "decision_id": d["decision_id"], "type": if i % 5 == 0 { "click" } else { "impression" }}))
            .collect();
        let (status, answer) = http.json("POST", "/v1/events", ADMIN, &json!({ "events": events }));
        assert_eq!(status, 200, "{answer}");
    }
    terminate(&mut child);
    let pool = tla_store::Store::open_read_only(&a)
        .and_then(|store| tla_store::EventLog::read_after(&store.event_log(), 0, POOL))
        .expect("the pool of events from the server's mirror");
    assert_eq!(pool.len(), POOL);

    let head = args.events.saturating_sub(args.tail);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fill = |from: u64, to: u64| {
        let started = Instant::now();
        let last = runtime.block_on(bulk_publish(&event_log, STREAM, &pool, from, to));
        let secs = started.elapsed().as_secs_f64();
        println!(
            "filled events {from}..{to} in {secs:.1} s ({:.0} events/s); stream at sequence {last}",
            (to - from) as f64 / secs
        );
        last
    };
    let head_last = fill(POOL as u64, head);
    // The server follows the head from its small mirror, snapshots on the way out.
    let (mut child, _, _, ready) = timed_start(&a, &log, head_last);
    println!(
        "server a caught up with the first {head} events in {:.1} s",
        ready.as_secs_f64()
    );
    terminate(&mut child);
    let last = fill(head, args.events);
    let stream_bytes = dir_bytes(&nats.nodes[0].store);
    let (mut child, _, listening, ready_a) = timed_start(&a, &log, last);
    terminate(&mut child);
    let mirror_bytes = dir_bytes(&a);
    let b = root.0.join("tla-b");
    let (mut child, _, listening_b, ready_b) = timed_start(&b, &log, last);
    terminate(&mut child);
    println!();
    println!(
        "cold start over {} events (stream with 1 replica, {:.2} GB on disk; a server's data directory {:.2} GB):",
        args.events,
        stream_bytes as f64 / 1e9,
        mirror_bytes as f64 / 1e9
    );
    println!(
        "(a) snapshot + mirror + tail of {} events: ready in {:.2} s (listening after {:.2} s)",
        args.tail,
        ready_a.as_secs_f64(),
        listening.as_secs_f64()
    );
    println!(
        "(b) from nothing: ready in {:.1} s (listening after {:.1} s)",
        ready_b.as_secs_f64(),
        listening_b.as_secs_f64()
    );
}

/// Publishes events `from..to` (ids `bulk-<i>`, the rest copied from the pool) with
/// up to 4,096 acks outstanding (below the client's 5,000 in flight), as the servers would write them (`Record::Event`); returns the last stream sequence acknowledged.
async fn bulk_publish(
    servers: &str,
    stream: &str,
    pool: &[tla_store::StoredEvent],
    from: u64,
    to: u64,
) -> u64 {
    use tla_server::stream_log::Record;
    const WINDOW: usize = 4_096;
    let client = async_nats::connect(servers.trim_start_matches("nats://"))
        .await
        .expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    let subject = tla_server::stream_log::StreamSettings::parse(servers, stream, STALE_AFTER)
        .expect("the stream's settings")
        .subject();
    let mut pending = std::collections::VecDeque::with_capacity(WINDOW);
    let mut last = 0;
    for i in from..to {
        let copy = &pool[(i as usize) % pool.len()];
        let event_id = format!("bulk-{i}");
        let record = Record::Event {
            campaign_id: copy.campaign_id.clone(),
            event_id: event_id.clone(),
            decision_id: copy.decision_id.clone(),
            kind: copy.kind.as_str().to_owned(),
            value_bits: copy.value.to_bits(),
            amount_known: copy.amount_known,
            segment: copy.segment,
            version: copy.version,
            decided_at_ms: copy.decided_at_ms,
            at_ms: copy.at_ms,
        };
        // No message id: the ids are new, and the stream's deduplication would keep
        // every id of the last 2 minutes in memory.
        let ack = jetstream
            .publish(subject.clone(), serde_json::to_vec(&record).unwrap().into())
            .await
            .expect("publish");
        pending.push_back(ack);
        if pending.len() >= WINDOW {
            last = pending
                .pop_front()
                .unwrap()
                .await
                .expect("publish ack")
                .sequence;
        }
    }
    for ack in pending {
        last = ack.await.expect("publish ack").sequence;
    }
    last
}
