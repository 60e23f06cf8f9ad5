//! The connection limits on a real socket: slow or silent clients are closed by the
//! server, others are served meanwhile, the connection cap makes room or queues and
//! logs, and shutdown ends while clients stall.
//!
//! Timeouts are configured short (a fraction of a second) and every wait has an outer
//! bound ([`GUARD`]) that only keeps a broken build from hanging: no assertion depends
//! on how fast the machine is.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tla_server::auth::new_key;
use tla_server::{AppState, ManualClock, ServerConfig};
use tla_store::{KeyRow, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Outer bound of every wait: a hang guard, far above any configured timeout.
const GUARD: Duration = Duration::from_secs(30);

/// A timeout that never fires within a test.
const NEVER: Duration = Duration::from_secs(3600);

/// What the server logged, for the tests that look for a log line.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Server {
    address: SocketAddr,
    state: AppState,
    ingest: String,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

/// A server on 127.0.0.1, port 0, over an in-memory store, with `config`.
async fn start(config: ServerConfig) -> Server {
    log();
    let store = Store::open_in_memory().unwrap();
    let key = new_key([3; 22]);
    store
        .insert_key(&KeyRow {
            id: key.id.clone(),
            hash: key.hash,
            scopes: vec!["ingest".into(), "read".into()],
            created_at_ms: 0,
            revoked: false,
            label: "test ingest and read".into(),
        })
        .unwrap();
    let event_log = Arc::new(store.event_log());
    let clock = Arc::new(ManualClock::new(1_790_000_000_000));
    let state = AppState::open(store, event_log, clock, b"test secret", config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(tla_server::run(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Server {
        address,
        state,
        ingest: key.token,
        stop: Some(stop),
        served,
    }
}

impl Server {
    /// Sends the shutdown signal and waits (under the guard) for `run` to return.
    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(GUARD, self.served)
            .await
            .expect("run returned after the shutdown signal")
            .unwrap()
            .unwrap();
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        idle_timeout: NEVER,
        header_read_timeout: NEVER,
        body_read_timeout: NEVER,
        write_timeout: NEVER,
        shutdown_grace: NEVER,
        ..ServerConfig::default()
    }
}

async fn connect(address: SocketAddr) -> TcpStream {
    TcpStream::connect(address).await.unwrap()
}

/// Reads until the server closes the connection (end of stream or reset); what it
/// sent before.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(GUARD, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One `GET /healthz` on a new connection; the response's status line.
async fn healthz(address: SocketAddr) -> String {
    let mut stream = connect(address).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = until_closed(&mut stream).await;
    response.lines().next().unwrap_or_default().to_owned()
}

/// Waits (under the guard) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(GUARD, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never: {what}");
}

/// The head of an ingest request whose body (`length` bytes) is still to come.
fn ingest_head(key: &str, length: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Sends the head of an ingest request with `Expect: 100-continue` and waits for the
/// server's `100 Continue`, which it sends once the handler reads the body: from then
/// on the request is in progress. The server closes the connection after answering.
async fn begin_ingest(stream: &mut TcpStream, key: &str, length: usize) {
    begin_ingest_on(stream, key, length, "close").await;
}

/// [`begin_ingest`] with the given `Connection` header (`keep-alive`: the connection
/// stays open after the response).
async fn begin_ingest_on(stream: &mut TcpStream, key: &str, length: usize, connection: &str) {
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nConnection: {connection}\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let expected = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut answer = vec![0u8; expected.len()];
    tokio::time::timeout(GUARD, stream.read_exact(&mut answer))
        .await
        .expect("100 Continue")
        .unwrap();
    assert_eq!(answer, expected, "{}", String::from_utf8_lossy(&answer));
}

/// Slowloris: connections that stop halfway through their headers are closed by the
/// server (the head timeout, counted from their first byte: the idle timeout never
/// fires here), and a new client is served while they stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_while_others_are_served() {
    let server = start(ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(server.address).await;
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nX-Slow: 1")
            .await
            .unwrap();
        stalled.push(stream);
    }
    assert_eq!(healthz(server.address).await, "HTTP/1.1 200 OK");
    for stream in &mut stalled {
        until_closed(stream).await;
    }
    server.shut_down().await;
}

/// A connection that sends nothing, and one kept alive after its response, are closed
/// after the idle timeout (the head timeout never fires here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_kept_alive_connections_are_closed_when_idle() {
    let server = start(ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut silent = connect(server.address).await;
    assert_eq!(until_closed(&mut silent).await, "");

    let mut kept_alive = connect(server.address).await;
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let response = until_closed(&mut kept_alive).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    server.shut_down().await;
}

/// A body that stops arriving is answered 408 `request_timeout` in the error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408() {
    let server = start(ServerConfig {
        body_read_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut stream = connect(server.address).await;
    stream
        .write_all(ingest_head(&server.ingest, 100).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"events\": [").await.unwrap();
    let response = until_closed(&mut stream).await;
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout"),
        "{response}"
    );
    assert!(
        response.contains("\"code\":\"request_timeout\"")
            && response.contains("did not arrive within 300 ms"),
        "{response}"
    );
    server.shut_down().await;
}

/// At the cap, the oldest connection with no request in progress is closed to make
/// room and a new client is served; the limit is counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let server = start(ServerConfig {
        max_connections: 3,
        ..config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect(server.address).await);
    }
    let open = &server.state.metrics().connections_open;
    eventually("three connections are open", || open.get() == 3).await;
    assert_eq!(healthz(server.address).await, "HTTP/1.1 200 OK");
    assert_eq!(until_closed(&mut idle[0]).await, "", "the oldest made room");
    assert!(server.state.metrics().connection_limit_reached.get() >= 1);
    let logged = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(
        logged.contains("connection limit reached")
            && logged.contains("closing the oldest idle connection"),
        "{logged}"
    );
    server.shut_down().await;
}

/// At the cap with every connection in the middle of a request, a new connection waits
/// and is served once one of them ends; the requests in progress
/// are not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_with_every_request_in_progress_new_connections_wait() {
    let server = start(ServerConfig {
        max_connections: 2,
        ..config()
    })
    .await;
    let body = br#"{"events": []}"#;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(server.address).await;
        begin_ingest(&mut stream, &server.ingest, body.len()).await;
        stream.write_all(&body[..5]).await.unwrap();
        busy.push(stream);
    }
    let metrics = server.state.metrics();
    let waiting = tokio::spawn(healthz(server.address));
    eventually("the cap was reached", || {
        metrics.connection_limit_reached.get() >= 1
    })
    .await;
    let logged = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(
        logged.contains("new connections wait until one ends"),
        "{logged}"
    );
    // The first request completes (it was not cut to make room) and its connection
    // closes; the waiting client is then served.
    let mut first = busy.remove(0);
    first.write_all(&body[5..]).await.unwrap();
    let response = until_closed(&mut first).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    drop(first);
    let status = tokio::time::timeout(GUARD, waiting).await.unwrap().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The other request in progress is still served.
    let mut second = busy.remove(0);
    second.write_all(&body[5..]).await.unwrap();
    let response = until_closed(&mut second).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    server.shut_down().await;
}

/// Reads one response (head and a `Content-Length` body) from a connection that stays
/// open; its status line.
async fn one_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(GUARD, async {
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .expect("a content-length header");
                if bytes.len() >= end + 4 + length {
                    return text.lines().next().unwrap_or_default().to_owned();
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection before answering");
            bytes.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    read.expect("a whole response")
}

/// At the cap with every connection in the middle of a request on a kept-alive
/// connection, a new connection waits and is served once one of those requests ends,
/// although its connection stays open: the one whose request ended is closed to make
/// room, and the other request in progress is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_kept_alive_connection_whose_request_ends_makes_room() {
    let server = start(ServerConfig {
        max_connections: 2,
        ..config()
    })
    .await;
    let body = br#"{"events": []}"#;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(server.address).await;
        begin_ingest_on(&mut stream, &server.ingest, body.len(), "keep-alive").await;
        stream.write_all(&body[..5]).await.unwrap();
        busy.push(stream);
    }
    let metrics = server.state.metrics();
    let waiting = tokio::spawn(healthz(server.address));
    eventually("the cap was reached", || {
        metrics.connection_limit_reached.get() >= 1
    })
    .await;
    // The first request completes; its client keeps the connection open.
    let mut first = busy.remove(0);
    first.write_all(&body[5..]).await.unwrap();
    assert_eq!(one_response(&mut first).await, "HTTP/1.1 200 OK");
    let status = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the waiting client was served")
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(until_closed(&mut first).await, "", "it made room");
    let mut second = busy.remove(0);
    second.write_all(&body[5..]).await.unwrap();
    assert_eq!(one_response(&mut second).await, "HTTP/1.1 200 OK");
    server.shut_down().await;
}

/// Shutdown with stalled clients (one mid-headers, one mid-body, one silent) ends
/// after the grace period: `run` returns and every connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_while_clients_stall() {
    let server = start(ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut mid_head = connect(server.address).await;
    mid_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost")
        .await
        .unwrap();
    let mut mid_body = connect(server.address).await;
    begin_ingest(&mut mid_body, &server.ingest, 100).await;
    mid_body.write_all(b"{").await.unwrap();
    let mut silent = connect(server.address).await;
    let state = server.state.clone();
    let open = &state.metrics().connections_open;
    eventually("three connections are open", || open.get() == 3).await;
    server.shut_down().await;
    for stream in [&mut mid_head, &mut mid_body, &mut silent] {
        until_closed(stream).await;
    }
    assert_eq!(
        open.get(),
        0,
        "every connection given back, aborted ones too"
    );
}

/// A request in progress when the shutdown signal comes is finished and answered,
/// while the listener is already closed to new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_progress_finish() {
    let mut server = start(config()).await;
    let body = br#"{"events": []}"#;
    let mut stream = connect(server.address).await;
    begin_ingest(&mut stream, &server.ingest, body.len()).await;
    stream.write_all(&body[..3]).await.unwrap();
    let _ = server.stop.take().unwrap().send(());
    let address = server.address;
    eventually("the listener is closed", || {
        std::net::TcpStream::connect(address).is_err()
    })
    .await;
    stream.write_all(&body[3..]).await.unwrap();
    let response = until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    tokio::time::timeout(GUARD, server.served)
        .await
        .expect("run returned once the request was answered")
        .unwrap()
        .unwrap();
}

/// Connections with no request in progress (silent, or still sending a request head)
/// are closed at the shutdown signal, without waiting for the grace period (which
/// never ends here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_request_head() {
    let server = start(config()).await;
    let mut mid_head = connect(server.address).await;
    mid_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost")
        .await
        .unwrap();
    let mut silent = connect(server.address).await;
    let open = &server.state.metrics().connections_open;
    eventually("two connections are open", || open.get() == 2).await;
    server.shut_down().await;
    for stream in [&mut mid_head, &mut silent] {
        until_closed(stream).await;
    }
}

/// A client that sends requests and never reads the responses is disconnected once the
/// server's writes have waited the write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed() {
    let server = start(ServerConfig {
        write_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.address).await.unwrap();
    // 300 requests for the OpenAPI document (about 30 kB each): far more than the
    // socket buffers hold, so the server's writes wait for this client, which reads
    // nothing.
    let request = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
        server.ingest
    );
    stream
        .write_all(request.repeat(300).as_bytes())
        .await
        .unwrap();
    let open = &server.state.metrics().connections_open;
    eventually("the server closed the connection", || open.get() == 0).await;
    server.shut_down().await;
}
