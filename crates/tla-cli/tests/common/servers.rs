//! The `tla serve` processes of the tests and benchmarks that run several servers on
//! one NATS JetStream stream (cluster.rs, leases.rs, benches/cluster.rs; the NATS nodes
//! are [`super::nats`]'s): their
//! start, the client that sends to any live one, and their list, killed by pid
//! ([`Processes`]).

use super::Http;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Every `tla serve` the test started, killed by its pid (SIGKILL) when dropped (the
/// NATS nodes are [`super::nats::NatsCluster`]'s).
#[derive(Default)]
pub struct Processes {
    pub tla: Vec<Option<Child>>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.tla.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The admin key the servers of these tests are started with (`TLA_ADMIN_KEY`).
pub const ADMIN: &str = "tla_0123456789ab_0123456789abcdef0123456789abcdef";

/// Where a `tla serve` keeps its event log.
pub enum Log<'a> {
    /// The data directory's SQLite file (the default).
    Sqlite,
    /// `--event-log EVENT_LOG --stream STREAM`, with the decision-id secret.
    Stream {
        event_log: &'a str,
        stream: &'a str,
        secret: &'a str,
    },
}

/// Starts `tla serve` on `data` with `log`, [`ADMIN`] as its admin key and `extra`
/// flags, and returns it with the address it printed (or what it said on stderr when
/// it printed none within `wait`).
pub fn start_tla(
    data: &Path,
    log: &Log<'_>,
    extra: &[&str],
    wait: Duration,
) -> (Child, Result<SocketAddr, String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tla"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    if let Log::Stream {
        event_log,
        stream,
        secret,
    } = log
    {
        command
            .args(["--event-log", event_log, "--stream", stream])
            .env("TLA_SECRET", secret);
    }
    let mut child = command
        .args(extra)
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

/// `GET /healthz` of a server, as [`ADMIN`].
pub fn health(address: SocketAddr) -> Value {
    let mut http = Http::connect(address).expect("connect");
    http.json("GET", "/healthz", ADMIN, &Value::Null).1
}
