//! A NATS JetStream cluster on loopback for the scale-out tests: nodes on ports below
//! the kernel's ephemeral range, each node's output kept in a log file beside its store
//! and quoted when the node does not come up, a start retried on fresh ports, and every
//! node killed by its pid when the cluster is dropped.

use super::Http;
use serde_json::Value;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to answer its health check, at start and after a restart.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
/// Starts of the whole cluster tried, each on fresh ports, before the test fails.
const START_ATTEMPTS: usize = 3;
/// The ports handed out: below Linux's default ephemeral range (32768-60999), so
/// that no outgoing connection (a node's routes to its peers, a client's socket) can be
/// given a node's port while that node is starting or down.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// One node's ports, store directory and log file.
pub struct NatsNode {
    pub client: u16,
    pub cluster: u16,
    pub monitor: u16,
    pub store: PathBuf,
    pub log: PathBuf,
}

/// A cluster of `nats-server` processes with JetStream, started by [`NatsCluster::start`].
pub struct NatsCluster {
    binary: PathBuf,
    pub nodes: Vec<NatsNode>,
    children: Vec<Option<Child>>,
}

/// `count` distinct ports from [`PORTS`] that were free a moment ago, in an order that
/// differs between processes and calls (so concurrent test binaries rarely meet).
fn free_ports(count: usize) -> Vec<u16> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32);
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        // splitmix64: a spread of the seed, not a source of secrets.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let port = PORTS.start + (z % u64::from(PORTS.end - PORTS.start)) as u16;
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// The last lines of a node's log, for a failure message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl NatsCluster {
    /// Starts `size` nodes under `root` and waits until every one is healthy; a start
    /// that fails (a node exits or stays unhealthy) is reported on stderr with the
    /// node's log and tried again on fresh ports, [`START_ATTEMPTS`] times in all.
    pub fn start(binary: &Path, root: &Path, size: usize) -> NatsCluster {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let ports = free_ports(3 * size);
            let nodes = (0..size)
                .map(|i| NatsNode {
                    client: ports[3 * i],
                    cluster: ports[3 * i + 1],
                    monitor: ports[3 * i + 2],
                    store: root.join(format!("nats{attempt}-{i}")),
                    log: root.join(format!("nats{attempt}-{i}.log")),
                })
                .collect();
            let mut cluster = NatsCluster {
                binary: binary.to_path_buf(),
                nodes,
                children: Vec::new(),
            };
            for i in 0..size {
                let child = cluster.spawn(i);
                cluster.children.push(Some(child));
            }
            let all: Vec<usize> = (0..size).collect();
            match cluster.wait_healthy(&all) {
                Ok(()) => return cluster,
                Err(why) => {
                    eprintln!("NATS cluster, start {attempt} of {START_ATTEMPTS} failed: {why}");
                    failures.push(why);
                    // Dropping the cluster kills its nodes.
                }
            }
        }
        panic!(
            "the NATS cluster did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `nats://HOST:PORT,...` of every node's client port.
    pub fn urls(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client))
            .collect();
        format!("nats://{}", hosts.join(","))
    }

    fn spawn(&self, i: usize) -> Child {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster))
            .collect();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("the node's log file opens");
        let mut command = Command::new(&self.binary);
        command
            .args(["-a", "127.0.0.1", "-p", &node.client.to_string()])
            .args(["-m", &node.monitor.to_string()])
            .args(["-n", &format!("n{i}"), "-js", "-sd"])
            .arg(&node.store);
        if self.nodes.len() > 1 {
            command
                .args(["--cluster_name", "tla"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster)])
                .args(["--routes", &routes.join(",")]);
        }
        command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts")
    }

    /// Waits, at most [`HEALTHY_WITHIN`], until each node of `which` answers 200 on its
    /// monitor's `/healthz` (JetStream current with its meta leader) and, in a cluster,
    /// lists a route to every other node. A node that exited
    /// or stayed unhealthy is an error quoting its log.
    pub fn wait_healthy(&mut self, which: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for &i in which {
            let address: SocketAddr = format!("127.0.0.1:{}", self.nodes[i].monitor)
                .parse()
                .unwrap();
            loop {
                let get = |path: &str| {
                    Http::connect(address)
                        .and_then(|mut http| http.request("GET", path, "-", "text/plain", b""))
                };
                let healthy = get("/healthz").is_ok_and(|(status, _)| status == 200);
                // In a cluster, also routed to every other node: the first server on a
                // stream sizes its replicas by the cluster it sees.
                let routed = self.nodes.len() == 1
                    || get("/routez").is_ok_and(|(_, body)| {
                        let routez: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let peers: std::collections::HashSet<&str> = routez["routes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|r| r["remote_name"].as_str())
                            .collect();
                        peers.len() >= self.nodes.len() - 1
                    });
                if healthy && routed {
                    break;
                }
                let exited = match self.children[i].as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(format!("exited ({status})")),
                    None => Some("is not running".to_string()),
                    _ => None,
                };
                let failure = exited.or_else(|| {
                    (Instant::now() >= deadline)
                        .then(|| format!("is not healthy within {HEALTHY_WITHIN:?}"))
                });
                if let Some(failure) = failure {
                    return Err(format!(
                        "NATS node {i} (client port {}) {failure}; its log ends:\n{}",
                        self.nodes[i].client,
                        log_tail(&self.nodes[i].log)
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The pids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    /// Kills node `i` with SIGKILL and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("SIGKILL a NATS node");
            child.wait().expect("wait for a NATS node");
        }
    }

    /// Starts node `i` again on its ports and store, and waits until it is healthy
    /// (a second start if the first does not come up).
    pub fn restart(&mut self, i: usize) {
        let mut failures = Vec::new();
        for _ in 0..2 {
            self.kill(i);
            let child = self.spawn(i);
            self.children[i] = Some(child);
            match self.wait_healthy(&[i]) {
                Ok(()) => return,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "NATS node {i} did not restart:\n{}",
            failures.join("\n---\n")
        );
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
