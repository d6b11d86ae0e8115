//! The connection layer between the listening socket and the router.
//!
//! A balancer faces its whole audience, so a client must not be able to
//! hold what others need: a request head has `header_timeout` to arrive,
//! a request with a body has `request_timeout` from its first byte until
//! its body has arrived (a route that takes no body does not wait for
//! one: hyper gives up reading it), a keep-alive connection without a
//! request is closed after `idle_timeout`, the number of open connections
//! (in all and per client network, /24 or /64) is capped well below the
//! file-handle limit so the database and the poll always find handles, and
//! after a stop signal requests in flight get `shutdown_timeout` before the
//! connections are dropped.
//!
//! Admitted connections are answered on the connection threads
//! (`workers`); the listener's own runtime only accepts, and answers the
//! admin pages (see `PerConnection`).
//!
//! The timeouts are kept here rather than by hyper because hyper's header
//! timer also runs while a keep-alive connection waits, which would make
//! the idle timeout and the head timeout one and the same.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::domain::network::network_key;
use crate::web::AppState;
use crate::web::balancer;
use crate::web::workers;

/// File handles kept free of client connections: the database pool, the
/// change watcher, the GeoIP file and one socket per relay being polled.
const RESERVED_FDS: u64 = 256;

/// What a refused connection is told, written without reading its request
/// (it may never send one).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-length: 0\r\nretry-after: 5\r\nx-content-type-options: nosniff\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish for at most `settings.shutdown_timeout`.
/// Connections from trusted proxies (which carry many clients) are not
/// counted against the per-client cap.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let settings = state.settings();
    let limits = &settings.server;
    let exempt = &settings.trusted_proxies;
    let cap = connection_cap(limits.max_connections);
    let pressure = Arc::new(Pressure {
        slots: Arc::new(Semaphore::new(cap)),
        cap,
        shed: Notify::new(),
        waiting: AtomicUsize::new(0),
    });
    let admission = Admission {
        pressure: pressure.clone(),
        per_client: Arc::new(PerClient::new(limits.max_per_client, exempt)),
    };
    let timeouts = Timeouts {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
        request: limits.request_timeout,
    };
    workers::ensure_started()?;
    let main = Handle::current();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (admitted_tx, mut admitted) = tokio::sync::mpsc::unbounded_channel();
    let mut conns = JoinSet::new();
    let mut refused = Refusals::default();
    let conn = |peer| Conn {
        peer,
        router: router.clone(),
        state: state.clone(),
        main: main.clone(),
        timeouts,
        stop: stop_rx.clone(),
        pressure: pressure.clone(),
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            Some((tcp, peer, ticket)) = admitted.recv() => {
                hand_over(&mut conns, tcp, conn(peer), ticket);
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match admission.admit(peer.ip()) {
                    Admit::Now(ticket) => hand_over(&mut conns, tcp, conn(peer), ticket),
                    Admit::Wait(place) => admission.wait(tcp, peer, place, admitted_tx.clone()),
                    Admit::Refused => {
                        let _ = tcp.try_write(REFUSAL);
                        refused.note(peer.ip());
                    }
                },
                Err(e) => accept_failed(&e).await,
            }
        }
    }
    drop(listener);
    state.mark_stopping();
    let _ = stop_tx.send(true);
    drain(conns, settings.shutdown_timeout).await;
    Ok(())
}

/// What a connection needs besides its socket.
struct Conn {
    peer: SocketAddr,
    router: Router,
    state: AppState,
    /// The runtime the admin pages are answered on (see `PerConnection`).
    main: Handle,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
    pressure: Arc<Pressure>,
}

/// Moves an admitted connection to a connection thread (`workers`). The
/// socket leaves the listener's runtime and joins the worker's, so its
/// readiness wakes the thread that answers it.
fn hand_over(conns: &mut JoinSet<()>, tcp: TcpStream, conn: Conn, ticket: Ticket) {
    let spawned = tcp.into_std().and_then(|std| {
        workers::spawn(conns, async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => connection(tcp, conn).await,
                Err(e) => tracing::warn!(error = %e, "cannot take over a connection"),
            }
            drop(ticket);
        })
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot hand a connection over");
    }
}

/// Waits for the connections to finish, up to `deadline`; what is left
/// (a client that never finishes its request) is dropped.
async fn drain(mut conns: JoinSet<()>, deadline: Duration) {
    let all_done = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all_done).await.is_err() {
        tracing::warn!(
            open = conns.len(),
            "shutdown deadline reached: closing the connections still open"
        );
        conns.abort_all();
    }
}

/// Out of file handles (or another transient accept error): waiting a
/// little lets finished connections give theirs back, where retrying at
/// once would spin.
async fn accept_failed(e: &io::Error) {
    tracing::warn!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Refusals are logged at most once per interval, with their count, so a
/// flood does not become a flood of log lines.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, ip: IpAddr) {
        self.since_log += 1;
        let due = self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                client = %ip,
                refused = self.since_log,
                "connection limit reached: refusing connections"
            );
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// How close the server is to its connection cap, and the signal that
/// asks idle connections to make room.
struct Pressure {
    slots: Arc<Semaphore>,
    cap: usize,
    /// Woken when a connection finds every slot taken: idle connections
    /// close (see `expiry`).
    shed: Notify,
    /// Connections waiting for a slot.
    waiting: AtomicUsize,
}

impl Pressure {
    /// Near the cap (under an eighth of the slots free): a connection
    /// without a request gets the head timeout, not the idle timeout.
    fn tight(&self) -> bool {
        self.slots.available_permits() < (self.cap / 8).max(1)
    }
}

/// A connection that finds every slot taken waits this long for one, while
/// idle connections are asked to close.
const SLOT_WAIT: Duration = Duration::from_millis(500);
/// An idle connection closes for a newcomer once it has been idle this long
/// (a fresh connection's request may still be on its way).
const SHED_AFTER: Duration = Duration::from_millis(250);

struct Admission {
    pressure: Arc<Pressure>,
    per_client: Arc<PerClient>,
}

/// Held for the life of a connection; gives its places back on drop.
struct Ticket {
    _slot: OwnedSemaphorePermit,
    _client: ClientPlace,
}

/// A connection's place in its network's count (none for trusted proxies).
struct ClientPlace(Option<(Arc<PerClient>, IpAddr)>);

impl Drop for ClientPlace {
    fn drop(&mut self) {
        if let Some((pc, ip)) = self.0.take() {
            pc.release(ip);
        }
    }
}

enum Admit {
    Now(Ticket),
    /// Every slot is taken: wait for one while idle connections make room.
    Wait(ClientPlace),
    Refused,
}

impl Admission {
    fn admit(&self, ip: IpAddr) -> Admit {
        let ip = ip.to_canonical();
        let place = if self.per_client.is_exempt(ip) {
            ClientPlace(None)
        } else {
            // Counted per network (/24, /64): a host's neighbouring
            // addresses are one client to this limit.
            let net = network_key(ip);
            if self.per_client.acquire(net).is_none() {
                return Admit::Refused;
            }
            ClientPlace(Some((self.per_client.clone(), net)))
        };
        match self.pressure.slots.clone().try_acquire_owned() {
            Ok(slot) => Admit::Now(Ticket {
                _slot: slot,
                _client: place,
            }),
            Err(_) => Admit::Wait(place),
        }
    }

    /// Asks idle connections to close and waits up to `SLOT_WAIT` for a
    /// slot (in turn: the semaphore is fair); refused after that, or at
    /// once when a cap's worth of connections is already waiting.
    fn wait(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        place: ClientPlace,
        admitted: tokio::sync::mpsc::UnboundedSender<(TcpStream, SocketAddr, Ticket)>,
    ) {
        let p = self.pressure.clone();
        if p.waiting.fetch_add(1, Ordering::Relaxed) >= p.cap {
            p.waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = tcp.try_write(REFUSAL);
            return;
        }
        p.shed.notify_waiters();
        tokio::spawn(async move {
            let slot = tokio::time::timeout(SLOT_WAIT, p.slots.clone().acquire_owned()).await;
            p.waiting.fetch_sub(1, Ordering::Relaxed);
            match slot {
                Ok(Ok(slot)) => {
                    let ticket = Ticket {
                        _slot: slot,
                        _client: place,
                    };
                    let _ = admitted.send((tcp, peer, ticket));
                }
                _ => {
                    let _ = tcp.try_write(REFUSAL);
                    tracing::debug!(client = %peer.ip(), "no connection slot came free: refused");
                }
            }
        });
    }
}

struct PerClient {
    max: usize,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    fn new(max: usize, exempt: &[IpNet]) -> PerClient {
        PerClient {
            max,
            exempt: exempt.to_vec(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(&ip))
    }

    fn acquire(&self, ip: IpAddr) -> Option<()> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(())
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// The configured cap, lowered when the process may not open that many
/// files and still have `RESERVED_FDS` left for everything else.
fn connection_cap(configured: usize) -> usize {
    let Some(files) = raise_file_limit() else {
        return configured;
    };
    let room = files.saturating_sub(RESERVED_FDS).max(1) as usize;
    if room < configured {
        tracing::warn!(
            configured,
            used = room,
            file_limit = files,
            "--max-connections lowered to leave file handles for the database and polls \
             (raise LimitNOFILE to allow more)"
        );
        return room;
    }
    configured
}

/// Raises the soft open-file limit to the hard one (systemd's default soft
/// limit of 1,024 is meant to be raised by the programs that need more)
/// and returns the limit now in force.
#[cfg(unix)]
#[allow(
    unsafe_code,
    reason = "getrlimit/setrlimit have no safe wrapper in std"
)]
fn raise_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let wanted = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = wanted;
        }
    }
    // rlim_t is not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
fn raise_file_limit() -> Option<u64> {
    None
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
    /// From a request's first byte until its body has arrived.
    request: Duration,
}

async fn connection(tcp: TcpStream, conn: Conn) {
    let Conn {
        peer,
        router,
        state,
        main,
        timeouts,
        mut stop,
        pressure,
    } = conn;
    // Redirects are tiny one-write answers: sent at once, not held back
    // by Nagle waiting for the client's delayed ACK.
    let _ = tcp.set_nodelay(true);
    let activity = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = PerConnection {
        router: RefCell::new(router),
        state,
        main,
        peer,
        watch: activity.clone(),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // A client that sends its request and then shuts its side
        // (`shutdown(SHUT_WR)`, as `nc -N` does) still gets its answer.
        .half_close(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let expired = expiry(&activity, timeouts, &pressure);
    tokio::pin!(expired);
    tokio::select! {
        r = conn.as_mut() => return log_end(r),
        () = expired.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    // Stopping: the request in flight finishes; an idle connection is
    // closed by hyper at once; a half-sent head still times out.
    tokio::select! {
        r = conn.as_mut() => log_end(r),
        () = expired => {}
    }
}

/// The router as one connection's hyper service, answering each request
/// where it is cheapest to answer without holding up others:
/// - a listener's GET (`balancer::direct_stream`) here on the connection's
///   worker, without the router;
/// - the rest of `/icecast_balancer/` here through the router;
/// - everything else (admin pages, API, metrics) on the main runtime,
///   where a large page or an import is stolen by an idle thread instead
///   of holding up the redirects queued behind it on this worker.
///
/// The router is held in a `RefCell` so a request borrows it instead of
/// cloning it: every connection's clone shares one reference count, and
/// bumping it twice per request from every worker thread made that cache
/// line bounce between the cores.
struct PerConnection {
    router: RefCell<Router>,
    state: AppState,
    main: Handle,
    peer: SocketAddr,
    watch: Arc<Watch>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for PerConnection {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = Some(Busy::begin(&self.watch));
        let mut req = req.map(|b| BodyWatch::wrap(b, &self.watch));
        let path = req.uri().path();
        if balancer::direct_stream(req.method(), path).is_some() {
            let inner = Box::pin(balancer::listener(self.state.clone(), self.peer, req));
            return Answer { inner, busy };
        }
        let here = path.starts_with("/icecast_balancer");
        req.extensions_mut().insert(ConnectInfo(self.peer));
        if !here {
            let handle = self.main.spawn(self.router.borrow().clone().oneshot(req));
            let inner = Box::pin(async move {
                match handle.await {
                    Ok(Ok(r)) => r,
                    Err(e) => handler_failed(&e),
                }
            });
            return Answer { inner, busy };
        }
        // Router is always ready, so calling without poll_ready is fine.
        // `call` is not re-entered (hyper calls it from the connection's
        // own task and the borrow ends before the future runs).
        let routed = self.router.borrow_mut().call(req);
        let inner = Box::pin(async move {
            let Ok(r) = routed.await;
            r
        });
        Answer { inner, busy }
    }
}

/// The answer to one request, the request marked busy until it is ready.
/// One box per request, as the router's own answers are boxed.
struct Answer {
    inner: Pin<Box<dyn Future<Output = axum::response::Response> + Send>>,
    busy: Option<Busy>,
}

impl Future for Answer {
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut r = std::task::ready!(self.inner.as_mut().poll(cx));
        // Every answer, the listener's fast path included: no browser
        // guesses a type we did not declare.
        r.headers_mut().insert(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        );
        // Idle from now on, even if hyper keeps the finished future.
        self.busy = None;
        Poll::Ready(Ok(r))
    }
}

/// A handler on the main runtime panicked: its client gets a 500 and the
/// connection stays usable.
fn handler_failed(e: &tokio::task::JoinError) -> axum::response::Response {
    tracing::error!(error = %e, "a request handler failed");
    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

fn log_end(r: hyper::Result<()>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// A connection's activity, read by its expiry timer when that fires.
///
/// Nothing wakes the timer when the activity changes: that would cost two
/// or three task wake-ups and timer resets per request, a sixth of the
/// redirect rate. Instead the timer never sleeps longer than the shorter
/// timeout and looks again when it fires. That is exact: a head that
/// starts after the timer was set has its deadline after the timer fires,
/// and an idle period that starts then ends later still.
///
/// Atomics rather than a mutex: every request updates this twice and its
/// first read once, and an uncontended lock still costs two atomic
/// read-modify-writes each time. Times are nanoseconds after `base`.
struct Watch {
    base: Instant,
    /// Requests being answered.
    busy: AtomicUsize,
    /// When the first byte of the next request head arrived, plus one
    /// (0: no head started).
    head_started: AtomicU64,
    /// When the connection last became idle.
    idle_since: AtomicU64,
    /// When the request being answered started (its head's first byte).
    request_started: AtomicU64,
    /// Request bodies still arriving (see `BodyWatch`).
    bodies: AtomicUsize,
    /// Whether a request has begun on this connection.
    served: AtomicBool,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            base: Instant::now(),
            busy: AtomicUsize::new(0),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            request_started: AtomicU64::new(0),
            bodies: AtomicUsize::new(0),
            served: AtomicBool::new(false),
        }
    }

    fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: the start of a head unless one is under way or a
    /// request is being answered (a pipelined next request waits for it).
    fn bytes_read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == 0
        {
            let at = self.since_base().saturating_add(1);
            self.head_started.store(at, Ordering::Relaxed);
        }
    }

    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        let head = self.head_started.swap(0, Ordering::Relaxed);
        let started = if head > 0 {
            head - 1
        } else {
            self.since_base()
        };
        self.request_started.store(started, Ordering::Relaxed);
    }

    fn end(&self) {
        self.idle_since.store(self.since_base(), Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    fn load(&self) -> Activity {
        let at = |ns: u64| self.base + Duration::from_nanos(ns);
        let head = self.head_started.load(Ordering::Relaxed);
        Activity {
            busy: self.busy.load(Ordering::Relaxed),
            head_started: (head > 0).then(|| at(head - 1)),
            idle_since: at(self.idle_since.load(Ordering::Relaxed)),
            request_started: at(self.request_started.load(Ordering::Relaxed)),
            bodies: self.bodies.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
        }
    }

    fn deadline(&self, t: Timeouts, tight: bool) -> Option<Instant> {
        self.load().deadline(t, tight)
    }

    /// Idle (no request under way, no head started) for at least `d`.
    fn idle_for(&self, d: Duration) -> bool {
        let a = self.load();
        a.busy == 0 && a.head_started.is_none() && a.idle_since.elapsed() >= d
    }
}

/// Where a connection is between requests, as seen from its bytes and its
/// requests.
struct Activity {
    /// Requests being answered.
    busy: usize,
    /// When the first byte of the next request head arrived.
    head_started: Option<Instant>,
    /// When the connection last became idle.
    idle_since: Instant,
    /// When the request being answered started.
    request_started: Instant,
    /// Request bodies still arriving.
    bodies: usize,
    /// Whether a request has begun on the connection.
    served: bool,
}

impl Activity {
    #[cfg(test)]
    fn new() -> Activity {
        Activity {
            busy: 0,
            head_started: None,
            idle_since: Instant::now(),
            request_started: Instant::now(),
            bodies: 0,
            served: false,
        }
    }

    /// When the connection is due to be closed. While a request is being
    /// answered that is when its body is due, or `None` once the body has
    /// arrived (the handler bounds its own time). A connection that has
    /// not sent a request yet gets no longer than a head would, and near
    /// the connection cap (`tight`) an idle keep-alive one neither.
    fn deadline(&self, t: Timeouts, tight: bool) -> Option<Instant> {
        if self.busy > 0 {
            return (self.bodies > 0).then(|| self.request_started + t.request);
        }
        let short = tight || !self.served;
        let idle = if short { t.idle.min(t.header) } else { t.idle };
        Some(match self.head_started {
            Some(at) => at + t.header,
            None => self.idle_since + idle,
        })
    }
}

/// Marks a request in flight for as long as it lives.
struct Busy(Arc<Watch>);

impl Busy {
    fn begin(watch: &Arc<Watch>) -> Busy {
        watch.begin();
        Busy(watch.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Resolves once the connection has outstayed its head, body or idle
/// timeout (see [`Watch`] for why it wakes at least every `step`), or when
/// it is idle and a newcomer finds every slot taken.
async fn expiry(watch: &Watch, t: Timeouts, pressure: &Pressure) {
    let step = t.header.min(t.idle).min(t.request);
    loop {
        let now = Instant::now();
        let next = match watch.deadline(t, pressure.tight()) {
            Some(d) if d <= now => return,
            Some(d) => d.min(now + step),
            // Busy: no deadline until the request is answered.
            None => now + step,
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = pressure.shed.notified() => {
                if watch.idle_for(SHED_AFTER) {
                    return;
                }
            }
        }
    }
}

/// A request body, counted in `Watch::bodies` until it has arrived or is
/// dropped, so a client that declares a body and then sends it slowly (or,
/// after `Expect: 100-continue` and our `100`, not at all) is cut off at
/// the request deadline. A request without a body is passed as it is.
struct BodyWatch {
    inner: Incoming,
    watch: Option<Arc<Watch>>,
}

impl BodyWatch {
    fn wrap(inner: Incoming, watch: &Arc<Watch>) -> axum::body::Body {
        if inner.is_end_stream() {
            return axum::body::Body::new(inner);
        }
        watch.bodies.fetch_add(1, Ordering::Relaxed);
        axum::body::Body::new(BodyWatch {
            inner,
            watch: Some(watch.clone()),
        })
    }

    fn arrived(&mut self) {
        if let Some(w) = self.watch.take() {
            w.bodies.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for BodyWatch {
    fn drop(&mut self) {
        self.arrived();
    }
}

impl HttpBody for BodyWatch {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.arrived();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when bytes of a new request head arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_cap_counts_and_releases() {
        let pc = Arc::new(PerClient::new(2, &["10.0.0.0/8".parse().unwrap()]));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(pc.acquire(a).is_some());
        assert!(pc.acquire(a).is_some());
        assert!(pc.acquire(a).is_none());
        pc.release(a);
        assert!(pc.acquire(a).is_some());
        assert!(pc.is_exempt("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn deadline_follows_the_connection_state() {
        let t = Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(30),
        };
        let mut a = Activity::new();
        let start = a.idle_since;
        assert_eq!(a.deadline(t, false), Some(start + t.header), "silent");
        a.served = true;
        assert_eq!(a.deadline(t, false), Some(start + t.idle));
        assert_eq!(a.deadline(t, true), Some(start + t.header));
        a.head_started = Some(start);
        assert_eq!(a.deadline(t, false), Some(start + t.header));
        a.busy = 1;
        assert_eq!(a.deadline(t, false), None);
        a.bodies = 1;
        a.request_started = start;
        assert_eq!(a.deadline(t, false), Some(start + t.request));
    }
}
