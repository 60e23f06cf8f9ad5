//! Helpers shared by the CLI's integration tests: a temporary directory removed on drop,
//! campaigns of examples/small.toml written straight through the store, and a `tla serve`
//! started and stopped by the test.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod nats;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;
use tla_core::spec::CampaignSpec;
use tla_store::{CampaignRow, CampaignStatus, DecisionRow, EventKind, EventLog, NewEvent, Store};

/// A directory under the system's temporary directory, removed with its contents when
/// dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory name (not created) unique to this process, `name` and time.
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TempDir(std::env::temp_dir().join(format!("tla-{name}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Inserts campaign `id` with the spec of examples/small.toml.
pub fn insert_small_campaign(store: &Store, id: &str) {
    insert_small_campaign_held_out(store, id, 0.0);
}

/// Inserts campaign `id` with the spec of examples/small.toml and a holdout of `share`.
pub fn insert_small_campaign_held_out(store: &Store, id: &str, share: f64) {
    let mut spec =
        CampaignSpec::from_toml_str(include_str!("../../../../examples/small.toml")).unwrap();
    spec.holdout = share;
    store
        .insert_campaign(&CampaignRow {
            id: id.into(),
            name: spec.name.clone(),
            spec_json: serde_json::to_string(&spec).unwrap(),
            status: CampaignStatus::Active,
            created_at_ms: 1_700_000_000_000,
        })
        .unwrap();
}

/// What [`fill`] writes besides an impression and a cost of 0.01 per decision.
#[derive(Clone, Copy)]
pub struct Fill {
    /// A click for decision `i` when `i % clicks_every == 0` (0: no clicks).
    pub clicks_every: u64,
    /// A conversion for decision `i` when `i % 5 == 0`, of this value for its version.
    pub conversion_value: fn(u64) -> f64,
}

/// Campaign `id` of examples/small.toml with `n` decisions cycling over its allowed
/// versions (version `allowed[7i mod 16]`, segment `i mod 3`, propensity 1/16), each
/// with an impression and a cost of 0.01, clicks and conversions as `fill` says.
pub fn fill(store: &Store, id: &str, n: u64, fill: Fill) {
    fill_held_out(store, id, n, fill, 0.0);
}

/// [`fill`] of a campaign with a holdout of `share` (in (0, 0.5]): decision `i` is held
/// out when `i % 4 == 1` (a quarter of them, whatever the share), logged with the even
/// split's propensity as every decision here.
pub fn fill_held_out(store: &Store, id: &str, n: u64, fill: Fill, share: f64) {
    insert_small_campaign_held_out(store, id, share);
    let spec =
        CampaignSpec::from_toml_str(include_str!("../../../../examples/small.toml")).unwrap();
    let campaign = spec.validate().unwrap();
    let allowed: Vec<u64> = (0..campaign.total_versions())
        .filter(|&v| campaign.is_allowed(v))
        .collect();
    let (mut decisions, mut events) = (Vec::new(), Vec::new());
    for i in 0..n {
        let version = allowed[(i as usize * 7) % allowed.len()];
        let segment = (i % 3) as u32;
        let at_ms = 1_700_000_000_000 + i as i64;
        let decision_id = format!("{id}-d{i}");
        decisions.push(DecisionRow {
            decision_id: decision_id.clone(),
            campaign_id: id.into(),
            segment,
            version,
            propensity: 1.0 / allowed.len() as f64,
            model_version: 1,
            at_ms,
            skip: None,
            revision: 1,
            held_out: share > 0.0 && i % 4 == 1,
        });
        let event = |kind, value, prefix: &str| NewEvent {
            campaign_id: id.into(),
            event_id: format!("{prefix}{i}"),
            decision_id: decision_id.clone(),
            kind,
            value,
            amount_known: true,
            segment,
            version,
            decided_at_ms: at_ms,
            at_ms: at_ms + 1_000,
        };
        events.push(event(EventKind::Impression, 0.0, "i"));
        events.push(event(EventKind::Cost, 0.01, "s"));
        if fill.clicks_every > 0 && i % fill.clicks_every == 0 {
            events.push(event(EventKind::Click, 0.0, "k"));
        }
        if i % 5 == 0 {
            events.push(event(
                EventKind::Conversion,
                (fill.conversion_value)(version),
                "c",
            ));
        }
    }
    store.append_decisions(&decisions).unwrap();
    store.event_log().append(&events).unwrap();
}

/// A `tla serve` this test started on 127.0.0.1 (a free port) over a data directory,
/// with `admin` installed as the admin key. Killed, by its own handle, if the test ends
/// before [`Server::stop`].
pub struct Server {
    child: Option<std::process::Child>,
    /// The server's standard output, kept open: the server prints to it until it stops.
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub address: String,
}

impl Server {
    /// Starts the server and waits until it prints its address.
    pub fn start(data: &std::path::Path, admin: &str) -> Server {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tla"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("TLA_ADMIN_KEY", admin)
            .env("TLA_LOG", "warn")
            .env_remove("TLA_LISTEN")
            .env_remove("TLA_DATA")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server exited before printing its address");
            };
            if let Some(rest) = line.unwrap().strip_prefix("tla serving on ") {
                break rest.split(' ').next().unwrap().to_string();
            }
        };
        Server {
            child: Some(child),
            _stdout: lines,
            address,
        }
    }

    /// Stops the server: SIGTERM by its id, then a bounded wait for it to exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Longest any socket operation of [`Http`] waits.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// A tiny HTTP/1.1 keep-alive client: enough for JSON requests to `tla serve`, every
/// socket operation bounded by [`SOCKET_TIMEOUT`].
pub struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    pub fn connect(address: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect_timeout(&address, SOCKET_TIMEOUT)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(stream),
            host: address.to_string(),
        })
    }

    /// One request; the status and the body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        self.request_with(method, path, token, content_type, &[], body)
    }

    /// [`Http::request`] with more headers.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
             content-type: {content_type}\r\ncontent-length: {}\r\n{extra}\r\n",
            self.host,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream.get_mut().write_all(&request)?;
        self.read_response()
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_response(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let status_line = self.read_line()?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {line:?}")))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad(format!("bad length {value:?}")))?,
                );
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.read_line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.stream.read_exact(&mut body[start..])?;
                self.read_line()?;
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.stream.read_exact(&mut body)?;
        }
        Ok((status, body))
    }

    pub fn json(&mut self, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, bytes) = self
            .request(method, path, token, "application/json", &bytes)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }
}
