//! A NATS JetStream cluster on loopback and `tla serve` processes on a stream, for the
//! chaos test (`tests/cluster.rs`) and the cluster benchmarks (`benches/cluster.rs`).
//! Every process started is killed by its pid (SIGKILL) when its [`Processes`] is
//! dropped.

use super::Http;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin key the servers are started with.
pub const ADMIN: &str = "tla_0123456789ab_0123456789abcdef0123456789abcdef";

/// Every process started, killed by its pid (SIGKILL) when dropped.
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

impl Node {
    /// Free ports and a store directory under `root`.
    pub fn new(root: &Path, i: usize) -> Node {
        Node {
            client: free_port(),
            cluster: free_port(),
            monitor: free_port(),
            store: root.join(format!("nats{i}")),
        }
    }
}

/// `--event-log` for these nodes.
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

/// Starts node `i` (routes to the others; alone, no cluster).
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
    if nodes.len() > 1 {
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

/// Waits until every node's monitor says JetStream is healthy and, in a cluster, the
/// node has routes to every other (the first server on a stream sizes its replicas by
/// the cluster it sees).
pub fn wait_nats_healthy(nodes: &[Node], which: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for &i in which {
        let address: SocketAddr = format!("127.0.0.1:{}", nodes[i].monitor).parse().unwrap();
        loop {
            let get = |path: &str| {
                Http::connect(address)
                    .and_then(|mut http| http.request("GET", path, "-", "text/plain", b""))
            };
            let healthy = get("/healthz").is_ok_and(|(status, _)| status == 200);
            let routed = nodes.len() == 1
                || get("/routez").is_ok_and(|(_, body)| {
                    let routez: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let peers: std::collections::HashSet<&str> = routez["routes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["remote_name"].as_str())
                        .collect();
                    peers.len() >= nodes.len() - 1
                });
            if healthy && routed {
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

/// Where a `tla serve` keeps its event log.
pub enum Log<'a> {
    /// The data directory's SQLite file.
    Sqlite,
    /// A stream: `--event-log`, `--stream`, `--stream-stale-secs`.
    Stream {
        event_log: &'a str,
        stream: &'a str,
        stale_after: Duration,
    },
}

/// Starts `tla serve` and returns it with the address it printed (or what it said on
/// stderr when it printed none within `wait`).
pub fn start_tla(
    data: &Path,
    log: &Log<'_>,
    secret: &str,
    wait: Duration,
) -> (Child, Result<SocketAddr, String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tla"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    if let Log::Stream {
        event_log,
        stream,
        stale_after,
    } = log
    {
        command
            .args(["--event-log", event_log, "--stream", stream])
            .args([
                "--stream-stale-secs",
                &stale_after.as_secs_f64().to_string(),
            ])
            .env("TLA_SECRET", secret);
    }
    let mut child = command
        .env("TLA_ADMIN_KEY", ADMIN)
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
        .recv_timeout(wait)
        .unwrap_or_else(|_| Err(format!("no address within {wait:?}")));
    (child, address)
}

pub fn health(address: SocketAddr) -> Value {
    let mut http = Http::connect(address).expect("connect");
    http.json("GET", "/healthz", ADMIN, &Value::Null).1
}
