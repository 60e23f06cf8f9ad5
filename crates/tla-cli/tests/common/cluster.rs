//! Helpers of the tests that run a NATS JetStream cluster and `tla serve` processes on
//! one stream (cluster.rs, leases.rs): free ports, the NATS nodes, the servers, and a
//! client that sends to any live server. Every process is started by the test and
//! killed by its pid ([`Processes`]).

use super::Http;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Every process the test started, killed by its pid (SIGKILL) when dropped.
#[derive(Default)]
pub struct Processes {
    pub nats: Vec<Option<Child>>,
    pub tla: Vec<Option<Child>>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.nats.iter_mut().chain(self.tla.iter_mut()).flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One NATS node's ports and store directory.
pub struct Node {
    pub client: u16,
    pub cluster: u16,
    pub monitor: u16,
    pub store: PathBuf,
}

/// `count` nodes on free ports, their stores under `root`.
pub fn nodes(root: &Path, count: usize) -> Vec<Node> {
    (0..count)
        .map(|i| Node {
            client: free_port(),
            cluster: free_port(),
            monitor: free_port(),
            store: root.join(format!("nats{i}")),
        })
        .collect()
}

/// The `--event-log` of the nodes' client ports.
pub fn event_log(nodes: &[Node]) -> String {
    format!(
        "nats://{}",
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Starts node `i` of the cluster `nodes` (JetStream, routes to the others; a single
/// node runs without a cluster).
pub fn start_nats(binary: &Path, nodes: &[Node], i: usize) -> Child {
    let node = &nodes[i];
    let routes: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster))
        .collect();
    let mut command = Command::new(binary);
    command
        .args(["-a", "127.0.0.1", "-p", &node.client.to_string()])
        .args(["-m", &node.monitor.to_string()])
        .args(["-n", &format!("n{i}"), "-js", "-sd"])
        .arg(&node.store);
    if !routes.is_empty() {
        command
            .args(["--cluster_name", "tla"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster)])
            .args(["--routes", &routes.join(",")]);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

/// Waits until every node's monitor says JetStream is healthy.
pub fn wait_nats_healthy(nodes: &[Node], which: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for &i in which {
        let address: SocketAddr = format!("127.0.0.1:{}", nodes[i].monitor).parse().unwrap();
        loop {
            let ok = Http::connect(address)
                .and_then(|mut http| http.request("GET", "/healthz", "-", "text/plain", b""))
                .is_ok_and(|(status, _)| status == 200);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "NATS node {i} is not healthy within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts `tla serve` on `stream` of `event_log` with the decision-id `secret`, `admin`
/// as its admin key and `extra` flags, and returns it with the address it printed.
pub fn start_tla(
    data: &Path,
    event_log: &str,
    stream: &str,
    secret: &str,
    admin: &str,
    extra: &[&str],
) -> (Child, Result<SocketAddr, String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--event-log", event_log, "--stream", stream])
        .args(extra)
        .env("TLA_SECRET", secret)
        .env("TLA_ADMIN_KEY", admin)
        .env("TLA_LOG", "warn")
        .env_remove("TLA_LISTEN")
        .env_remove("TLA_DATA")
        .env_remove("TLA_SEED")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tla binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let errors = tx.clone();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Shown with --nocapture, and with a failure.
            eprintln!("tla serve: {line}");
            text.push_str(&line);
            text.push('\n');
        }
        let _ = errors.send(Err(text));
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("tla serving on http://") {
                let address = rest.split(' ').next().unwrap_or("").parse();
                let _ = tx.send(address.map_err(|e| format!("{e}")));
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| Err("no address within 60 s".into()));
    (child, address)
}

/// The servers' addresses as the clients see them (`None` while one is down).
pub type Addresses = Arc<RwLock<Vec<Option<SocketAddr>>>>;

/// Sends one request to the live servers in turn, starting at `first`, until one
/// answers `ok`; bounded (90 s).
pub fn any_server(
    addresses: &Addresses,
    first: usize,
    mut send: impl FnMut(&mut Http) -> std::io::Result<(u16, Vec<u8>)>,
    ok: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "no server answered within 90 s; last answer: {last}"
        );
        let live = addresses.read().unwrap().clone();
        if let Some(address) = live[(first + attempt) % live.len()] {
            match Http::connect(address).and_then(|mut http| send(&mut http)) {
                Ok((status, body)) => {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if ok(status, &value) {
                        return value;
                    }
                    last = format!("{status} {value}");
                }
                Err(e) => last = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!()
}

/// `GET /healthz` of a server.
pub fn health(address: SocketAddr, token: &str) -> Value {
    let mut http = Http::connect(address).expect("connect");
    http.json("GET", "/healthz", token, &Value::Null).1
}
