//! A single-node NATS server with JetStream on loopback for the stream tests
//! (stream_log.rs, stream_changes.rs, stream_money.rs), and a server on it ([`open`], [`stop`]), on a port below the kernel's ephemeral range (so
//! no outgoing connection holds it), killed by its pid and its store removed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The NATS server and its store directory, killed and removed when dropped.
pub struct Nats {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port in 20000-31999 (below Linux's default ephemeral range) free a moment ago.
fn free_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut port = 20_000 + ((nanos ^ std::process::id().rotate_left(16)) % 12_000) as u16;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        port = 20_000 + (port - 20_000 + 7) % 12_000;
    }
    port
}

/// Starts a single-node NATS server with JetStream, its store under the temporary
/// directory named after `name`; waits until it listens (at most 20 s).
pub fn start_nats(binary: &Path, name: &str) -> (Nats, u16) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tla-{name}-{}-{port}", std::process::id()));
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let nats = Nats { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (nats, port)
}

/// What a stream test runs on: its NATS node, a runtime for the log's tasks, and the
/// settings of stream `stream` on that node (stale after 5 s).
pub struct StreamFixture {
    pub runtime: tokio::runtime::Runtime,
    pub settings: tla_server::stream_log::StreamSettings,
    pub port: u16,
    /// Dropped last: the node outlives the runtime's connections.
    _nats: Nats,
}

/// Starts a NATS node (store named after `name`) for a test on stream `stream`; `None`,
/// with a message, when nats-server is missing and `CI` is not set (in CI a missing
/// nats-server fails the test).
pub fn stream_fixture(name: &str, stream: &str) -> Option<StreamFixture> {
    let Some(binary) = tla_server::stream_log::nats_server_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is missing: run scripts/nats-deps.sh (the README's test command does)"
        );
        eprintln!("SKIPPED: nats-server is missing; run scripts/nats-deps.sh to run this test");
        return None;
    };
    let (nats, port) = start_nats(&binary, name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = tla_server::stream_log::StreamSettings::parse(
        &format!("nats://127.0.0.1:{port}"),
        stream,
        Duration::from_secs(5),
    )
    .unwrap();
    Some(StreamFixture {
        runtime,
        settings,
        port,
        _nats: nats,
    })
}

/// One server on a stream: its state and its learner's task.
pub struct Server {
    pub state: tla_server::state::AppState,
    pub learner: tokio::task::JoinHandle<()>,
}

/// Opens a server on the stream `settings` names over `store`, with the signing
/// secret `secret`, as `tla serve --event-log` does: the stream from the changes the
/// store applied, the state, and its learner on `runtime`.
pub fn open(
    runtime: &tokio::runtime::Runtime,
    settings: &tla_server::stream_log::StreamSettings,
    store: &tla_store::Store,
    secret: &[u8],
) -> Server {
    use std::sync::Arc;
    let stream = Arc::new(
        tla_server::stream_log::JetStreamEventLog::open(
            settings.clone(),
            secret,
            runtime.handle().clone(),
            store.clone(),
        )
        .expect("the stream opens"),
    );
    stream.set_changes_through(store.stream_changes_through().unwrap());
    let log: Arc<dyn tla_store::EventLog> = stream.clone();
    let state = tla_server::state::AppState::open(
        store.clone(),
        log,
        Arc::new(tla_server::clock::SystemClock),
        secret,
        tla_server::state::ServerConfig::default(),
    )
    .expect("the state opens");
    state.attach_stream(stream);
    let learner = runtime.spawn(tla_server::learner::run(state.clone()));
    Server { state, learner }
}

/// Closes `server` and waits for its learner to finish.
pub fn stop(runtime: &tokio::runtime::Runtime, server: Server) {
    server.state.begin_close();
    runtime.block_on(server.learner).unwrap();
}
