//! The connection loop: accepts HTTP/1.1 connections under a cap, serves each with
//! timeouts, and shuts down within a bound.
//!
//! A slow or silent client must not hold the service. Each connection is served by
//! hyper's HTTP/1 connection with these limits, all in [`ServerConfig`]:
//!
//! - **idle** (`idle_timeout`): a connection that sends no byte of a request for this
//!   long (a new connection, or one kept alive after a response) is closed;
//! - **head** (`header_read_timeout`): a request head (request line and headers) must
//!   arrive within this long of its first byte, or the connection is closed (a
//!   "slowloris" client that sends a header every few seconds);
//! - **body** (`body_read_timeout`): a handler reading the request body gets an error
//!   once this long has passed since it started reading, and answers 408
//!   `request_timeout`;
//! - **write** (`write_timeout`): a response that the client reads none of for this
//!   long (its writes make no progress) closes the connection;
//! - **connections** (`max_connections`): at most this many connections are open at
//!   once, and never more than the process's file limit less a reserve for the store
//!   and the listener ([`connection_cap`]). At the cap the oldest connection with no
//!   request in progress is closed to make room (a log line, at most one every
//!   [`LIMIT_LOG_EVERY`], says so); if every connection has a request in progress,
//!   new connections wait (the one just accepted, then the listen queue) until one of
//!   those requests ends (its connection is then closed to make room) or a connection
//!   closes. A connection chosen as a request begins on it answers that request, then
//!   closes;
//! - **shutdown** (`shutdown_grace`): when the shutdown signal comes, the listener
//!   closes, connections with no request in progress close (idle ones, and those still
//!   sending a request head), requests in progress may finish for this long, and then
//!   every connection still open is closed.
//!
//! The idle and head limits are one timer in hyper (its header read timeout, started
//! when the connection waits for a request); [`HeadTimer`] gives that timer the two
//! deadlines by watching when the first byte of the request arrives ([`Activity`]).
//! hyper's read buffer is not visible here: a pipelined head already read along with
//! the previous request, and stalled halfway, gets the idle deadline, not the head
//! deadline (docs/service.md, "Pipelining").

use crate::metrics::Metrics;
use crate::state::ServerConfig;
use axum::Router;
use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// File descriptors kept out of the connection cap: the SQLite file and its journal
/// for each of the store's connections, the listener, standard streams, the runtime's
/// own descriptors, and room for a snapshot or an export.
pub const FD_RESERVE: u64 = 128;

/// One connection's place under the cap: its permit, its registry entry and its count
/// in the open-connections gauge, all given back when it is dropped (also when the
/// connection's task is aborted at the end of the shutdown grace period).
struct Slot {
    registry: Arc<Registry>,
    id: u64,
    open: prometheus::IntGauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot {
    fn take(
        registry: &Arc<Registry>,
        activity: Arc<Activity>,
        open: &prometheus::IntGauge,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        open.inc();
        Self {
            registry: registry.clone(),
            id: registry.insert(activity),
            open: open.clone(),
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        self.open.dec();
    }
}

/// The "connection limit reached" log line is written at most once per this interval
/// (with the count of times the limit was reached since the last line).
pub const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The error a request body yields once `body_read_timeout` has passed; the handlers
/// answer it with 408 `request_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// The open-file limit of this process (the soft `RLIMIT_NOFILE`), if it has one.
pub fn file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The number of connections served at once: `configured`, but never more than the
/// file limit less [`FD_RESERVE`] (or half the limit, if that is larger), and at
/// least 1.
pub fn connection_cap(configured: usize, file_limit: Option<u64>) -> usize {
    let by_files = match file_limit {
        Some(limit) => limit.saturating_sub(FD_RESERVE).max(limit / 2),
        None => u64::MAX,
    };
    let by_files = usize::try_from(by_files).unwrap_or(usize::MAX);
    configured.min(by_files).max(1)
}

/// What one connection's tasks share: whether a request is in progress, when the
/// first byte of the awaited request arrived, and the signal to close it.
#[derive(Debug)]
struct Activity {
    /// Where the byte times below count from.
    base: Instant,
    /// Requests in progress: from the handler's call until its response body is done.
    in_flight: AtomicUsize,
    /// Nanoseconds after `base` (plus one) of the first byte read since the connection
    /// began to wait for a request; 0 while none has come.
    first_byte: AtomicU64,
    /// Closes the connection (at the cap, to make room): at once if no request is in
    /// progress when it wakes, else after that request.
    evict: Notify,
    /// Set when the connection is chosen to make room, so that no other is closed for
    /// the same slot while it closes.
    evicting: AtomicBool,
    /// Woken whenever a request of any connection ends, so that the accept loop waiting
    /// at the cap can look again for a connection to close ([`Registry::request_ended`]).
    request_ended: Arc<Notify>,
}

impl Activity {
    fn new(request_ended: Arc<Notify>) -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            first_byte: AtomicU64::new(0),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
            request_ended,
        }
    }

    /// The connection begins to wait for a request head.
    fn begin_wait(&self) {
        self.first_byte.store(0, Ordering::Release);
    }

    /// `n` bytes were read.
    fn read(&self, n: usize) {
        if n == 0 || self.first_byte.load(Ordering::Acquire) != 0 {
            return;
        }
        let since = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        let _ = self
            .first_byte
            .compare_exchange(0, since + 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// When the first byte of the awaited request arrived, if it has.
    fn first_byte_at(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Acquire) {
            0 => None,
            at => Some(self.base + Duration::from_nanos(at - 1)),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// A socket that tells its [`Activity`] when bytes are read, and fails a write that
/// makes no progress for `write_timeout` (a client that stopped reading its response).
#[derive(Debug)]
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Runs while writes wait for the client to read; reset by any progress.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    /// Passes a write's outcome on, failing it once writes have waited `write_timeout`
    /// without progress.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if outcome.is_ready() {
            self.write_stall = None;
            return outcome;
        }
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the client read none of the response for {} ms",
                timeout.as_millis()
            ),
        )))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.activity.read(buf.filled().len() - before);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.stalled(cx, outcome)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.stalled(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// hyper's header-read timer for one connection, given two deadlines: the idle limit
/// until the first byte of the request, then the head limit from that byte.
///
/// hyper asks for a sleep until `now + header_read_timeout` when the connection starts
/// to wait for a request head, and polls it whenever the head is still incomplete
/// (after each read), so each poll can move the deadline once the first byte is seen.
#[derive(Debug, Clone)]
struct HeadTimer {
    activity: Arc<Activity>,
    idle: Duration,
    head: Duration,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        // hyper computes `deadline` as `now + head`; the wait started at `now`.
        let started = deadline.checked_sub(self.head).unwrap_or_else(Instant::now);
        self.activity.begin_wait();
        Box::pin(HeadDeadline {
            timer: self.clone(),
            started,
            sleep: Box::pin(tokio::time::sleep_until((started + self.idle).into())),
        })
    }
}

/// A sleep for anything other than the head wait (hyper's HTTP/1 server asks for none
/// today).
struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for PlainSleep {}

/// The deadline of one wait for a request head: `started + idle` while no byte has
/// come, `first byte + head` after.
struct HeadDeadline {
    timer: HeadTimer,
    started: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeadDeadline {
    fn due(&self) -> Instant {
        match self.timer.activity.first_byte_at() {
            None => self.started + self.timer.idle,
            Some(first) => first + self.timer.head,
        }
    }
}

impl Future for HeadDeadline {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let due = tokio::time::Instant::from(self.due());
            if self.sleep.deadline() != due {
                self.sleep.as_mut().reset(due);
            }
            ready!(self.sleep.as_mut().poll(cx));
            // The first byte may have come while the idle deadline ran out.
            if tokio::time::Instant::from(self.due()) <= tokio::time::Instant::now() {
                return Poll::Ready(());
            }
        }
    }
}

impl Sleep for HeadDeadline {}

/// A request body that fails with [`BodyTimeout`] once `timeout` has passed since it
/// was first read.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> TimedBody<B> {
    /// `inner`, to be read within `timeout` of its first read.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts as a request in progress until it is done or dropped.
struct InFlight<B> {
    inner: B,
    _guard: InFlightGuard,
}

struct InFlightGuard(Arc<Activity>);

impl InFlightGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        // The connection may now be idle: a new connection waiting at the cap can take
        // its place.
        self.0.request_ended.notify_waiters();
    }
}

impl<B> Body for InFlight<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, oldest first, for eviction at the cap.
#[derive(Debug, Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Activity>>>,
    /// Woken (all waiters) when a request of any connection ends; shared with each
    /// connection's [`Activity`].
    request_ended: Arc<Notify>,
}

impl Registry {
    fn insert(&self, activity: Arc<Activity>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .expect("no panic holds the registry lock")
            .insert(id, activity);
        id
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .expect("no panic holds the registry lock")
            .remove(&id);
    }

    /// A new connection's [`Activity`].
    fn activity(&self) -> Arc<Activity> {
        Arc::new(Activity::new(self.request_ended.clone()))
    }

    /// Asks the oldest connection with no request in progress to close; false if
    /// every connection has one. A connection already asked (and still closing)
    /// makes the room: none other is asked.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().expect("no panic holds the registry lock");
        if open
            .values()
            .any(|activity| activity.evicting.load(Ordering::Acquire))
        {
            return true;
        }
        match open.values().find(|activity| activity.idle()) {
            Some(activity) => {
                // A request may begin between this check and the connection's wake-up;
                // the connection checks again then (see `serve_connection`).
                activity.evicting.store(true, Ordering::Release);
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The "connection limit reached" log line, at most once per [`LIMIT_LOG_EVERY`].
#[derive(Debug, Default)]
struct LimitLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl LimitLog {
    fn reached(&mut self, cap: usize, evicted: bool) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LIMIT_LOG_EVERY)
        {
            return;
        }
        let action = if evicted {
            "closing the oldest idle connection to make room"
        } else {
            "every connection has a request in progress; new connections wait until one ends"
        };
        tracing::warn!(
            cap,
            times = self.unlogged,
            "connection limit reached (max_connections, bounded by the open-file limit): {action}"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Accept errors that concern one connection (the loop goes on at once) rather than
/// the listener (the loop pauses before trying again, e.g. out of file descriptors).
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves `router` on `listener` under the limits of `config` until `shutdown`
/// resolves; then closes the listener and the idle connections, lets requests in
/// progress finish for `config.shutdown_grace`, and closes what is still open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = file_limit();
    let cap = connection_cap(config.max_connections, limit);
    if cap < config.max_connections {
        tracing::info!(
            cap,
            max_connections = config.max_connections,
            file_limit = limit,
            "connections capped below the open-file limit"
        );
    }
    let permits = Arc::new(Semaphore::new(cap));
    let registry = Arc::new(Registry::default());
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut limit_log = LimitLog::default();
    let limits = Limits::of(config);
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::error!(%error, "cannot accept a connection; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the cap, the one connection just accepted waits for a slot (the file
        // reserve covers it); the listen queue holds the others.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Listen for ends of requests before looking, so that none is missed
                // between the look and the wait.
                let request_ended = registry.request_ended.clone();
                let mut ended = std::pin::pin!(request_ended.notified());
                ended.as_mut().enable();
                let evicted = registry.evict_oldest_idle();
                limit_log.reached(cap, evicted);
                Metrics::add(&metrics.connection_limit_reached, 1);
                // Every connection had a request in progress, or the one asked to close
                // has not yet: wait for a slot, and look again each time a request ends
                // (a kept-alive connection whose request ended keeps its slot until it
                // is asked to close).
                let permit = loop {
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => {
                            break Some(permit.expect("the semaphore is never closed"));
                        }
                        () = ended.as_mut() => {
                            ended.set(request_ended.notified());
                            ended.as_mut().enable();
                            registry.evict_oldest_idle();
                        }
                        () = &mut shutdown => break None,
                    }
                };
                match permit {
                    Some(permit) => permit,
                    None => break,
                }
            }
        };
        let activity = registry.activity();
        let slot = Slot::take(
            &registry,
            activity.clone(),
            &metrics.connections_open,
            permit,
        );
        let router = router.clone();
        let closing = closing.clone();
        connections.spawn(async move {
            serve_connection(stream, router, limits, activity, closing).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_ms = config.shutdown_grace.as_millis() as u64,
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The timeouts one connection needs, copied out of the config.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    head: Duration,
    body: Duration,
    write: Duration,
}

impl Limits {
    fn of(config: &ServerConfig) -> Self {
        Self {
            idle: config.idle_timeout,
            head: config.header_read_timeout,
            body: config.body_read_timeout,
            write: config.write_timeout,
        }
    }
}

/// Serves one connection until it ends, is evicted, or (after `closing`) finishes its
/// request in progress.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    activity: Arc<Activity>,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
        write_timeout: limits.write,
        write_stall: None,
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let guard = InFlightGuard::new(service_activity.clone());
        let request = request.map(|body| TimedBody::new(body, limits.body));
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| InFlight {
                inner,
                _guard: guard,
            }))
        }
    });
    let connection = http1::Builder::new()
        .timer(HeadTimer {
            activity: activity.clone(),
            idle: limits.idle,
            head: limits.head,
        })
        .header_read_timeout(limits.head)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        () = activity.evict.notified() => {
            // The registry saw no request in progress, but one may have begun since:
            // look again, and let a request in progress finish before closing.
            if activity.idle() {
                tracing::debug!("connection closed to make room under the connection limit");
                return;
            }
            tracing::debug!(
                "connection chosen to make room while a request began: closing after it"
            );
        }
        () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
            // No request in progress (idle, or a head still arriving): nothing to
            // finish, so close at once.
            if activity.idle() {
                return;
            }
        }
    }
    // A request is in progress: finish it (hyper answers it and then closes the
    // connection), within the shutdown grace period if the server is closing.
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.as_mut().await {
        tracing::debug!(%error, "connection ended with an error while closing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        assert_eq!(
            connection_cap(10_000, Some(1024)),
            1024 - FD_RESERVE as usize
        );
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(10_000, Some(200)), 100, "half a small limit");
        assert_eq!(connection_cap(10_000, Some(0)), 1, "at least one");
        assert_eq!(connection_cap(10_000, None), 10_000);
    }

    #[test]
    fn the_limit_line_is_written_once_per_interval_with_a_count() {
        let mut log = LimitLog::default();
        log.reached(3, true);
        assert_eq!(log.unlogged, 0, "the first time is logged");
        let first = log.last.unwrap();
        log.reached(3, true);
        log.reached(3, false);
        assert_eq!(log.unlogged, 2, "counted for the next line, not logged");
        assert_eq!(log.last, Some(first));
    }

    #[test]
    fn the_first_byte_of_a_wait_is_remembered_until_the_next_wait() {
        let activity = Activity::new(Arc::default());
        assert_eq!(activity.first_byte_at(), None);
        activity.read(0);
        assert_eq!(activity.first_byte_at(), None, "an empty read is no byte");
        activity.read(3);
        let first = activity.first_byte_at().unwrap();
        activity.read(5);
        assert_eq!(
            activity.first_byte_at(),
            Some(first),
            "only the first counts"
        );
        activity.begin_wait();
        assert_eq!(activity.first_byte_at(), None);
    }
}

#[cfg(test)]
mod eviction_race {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Hang guard of every wait; no assertion depends on it.
    const GUARD: Duration = Duration::from_secs(30);
    const NEVER: Duration = Duration::from_secs(3600);

    /// The registry saw the connection idle and asked it to close, and a request began
    /// before the connection woke up: the request is answered, then the connection
    /// closes.
    ///
    /// The race is staged in order on a current-thread runtime: the request is in
    /// progress (its handler waits for `release`), the eviction's wake-up comes, the
    /// test yields so that the connection's task (woken) runs and sees it, and only
    /// then may the handler answer. Without the second look at `idle()` the
    /// connection's task drops the request at that wake-up and the client reads no
    /// response.
    #[tokio::test]
    async fn a_request_begun_as_its_connection_is_chosen_to_make_room_is_answered() {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let router = Router::new().route(
            "/slow",
            axum::routing::get({
                let started = started.clone();
                let release = release.clone();
                move || async move {
                    started.notify_one();
                    release.notified().await;
                    "answered"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _peer) = listener.accept().await.unwrap();
        let activity = Arc::new(Activity::new(Arc::default()));
        let (_closing_tx, closing) = watch::channel(false);
        let limits = Limits {
            idle: NEVER,
            head: NEVER,
            body: NEVER,
            write: NEVER,
        };
        let served = tokio::spawn(serve_connection(
            stream,
            router,
            limits,
            activity.clone(),
            closing,
        ));
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(GUARD, started.notified())
            .await
            .expect("the handler started");
        assert!(!activity.idle(), "the request is in progress");

        activity.evicting.store(true, Ordering::Release);
        activity.evict.notify_one();
        tokio::task::yield_now().await;
        release.notify_one();

        let mut response = Vec::new();
        tokio::time::timeout(GUARD, client.read_to_end(&mut response))
            .await
            .expect("the connection closed after the response")
            .unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200 OK") && response.ends_with("answered"),
            "{response}"
        );
        tokio::time::timeout(GUARD, served)
            .await
            .expect("the connection's task ended")
            .unwrap();
    }
}
