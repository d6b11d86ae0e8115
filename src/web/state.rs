//! What every handler shares: settings, the store and its write path, the
//! routing snapshot, the poller and GeoIP. Fields stay private; handlers
//! use the methods, so how the snapshot is kept fresh is decided here and
//! nowhere else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use sqlx::SqliteConnection;
use tokio::sync::{Mutex, Notify, watch};

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::domain::{Clock, LocationSource, ResolvedLocation};
use crate::error::{Error, Result};
use crate::geo::{Geo, Reload};
use crate::poll::{RoundSummary, fetch::Fetcher};
use crate::routing::clients::ClientBook;
use crate::routing::{Counters, Routing, Snapshot, snapshot};
use crate::store::changes::{Actor, ChangeTx, Writer};
use crate::store::{self, Pool};

/// Process-wide counters that belong to no stream.
#[derive(Debug, Default)]
pub struct Metrics {
    pub unknown_stream: AtomicU64,
    pub poll_rounds: AtomicU64,
    pub redirect_latency: super::metrics::LatencyHistogram,
    pub snapshot_rebuilds: AtomicU64,
}

struct Inner {
    settings: Settings,
    db: Pool,
    writer: Writer,
    clock: Clock,
    snapshot: ArcSwap<Snapshot>,
    counters: Counters,
    metrics: Metrics,
    fetcher: Fetcher,
    geo: Geo,
    /// GeoIP locations of servers without configured coordinates.
    resolved: std::sync::Mutex<HashMap<i64, ResolvedLocation>>,
    /// Who was recently sent where (one client, one slot).
    clients: ClientBook,
    poll_lock: Mutex<()>,
    refresh_lock: Mutex<()>,
    refresh_wanted: Notify,
    /// Bumped after every snapshot rebuild, for listeners awaiting counts.
    refreshed: watch::Sender<u64>,
    /// When the last poll for a full stream was started.
    full_recheck_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// A rebuild was asked for and has not started yet.
    refresh_pending: AtomicBool,
    /// A connection of its own for `PRAGMA data_version`, which changes
    /// when any other connection (ours in the pool or another process)
    /// commits; `None` if it could not be opened.
    version_conn: Mutex<Option<SqliteConnection>>,
    /// The data_version the current snapshot was built after (-1: unknown).
    built_at_version: AtomicI64,
    /// With `--cluster`: the other instances, through Redis.
    cluster: Option<Arc<Cluster>>,
}

/// Cheap to clone; handlers get it through axum's `State`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub async fn new(settings: Settings, clock: Clock) -> anyhow::Result<AppState> {
        // reqwest is built without a default crypto provider so that only
        // one (ring) is compiled; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        super::metrics::process_start_time();
        let db = store::connect(&settings.database).await?;
        let geo = open_geo(settings.geoip.clone()).await?;
        // Half the descriptors may go to idle relay connections; the rest
        // stay for listeners, the database and the round's new sockets.
        let keep_alive_max = crate::fd_limit::current().map_or(512, |(soft, _)| soft as usize / 2);
        let fetcher = Fetcher::new(
            settings.poll.timeout,
            settings.poll.max_body,
            keep_alive_max,
        )?;
        let version_conn = match store::watcher_connection(&settings.database).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the database for outside changes");
                None
            }
        };
        let cluster = match &settings.cluster {
            Some(c) => Some(Cluster::new(c.clone(), clock.clone())?),
            None => None,
        };
        let state = AppState(Arc::new(Inner {
            cluster,
            settings,
            writer: Writer::new(db.clone()),
            db,
            clock,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            counters: Counters::default(),
            metrics: Metrics::default(),
            fetcher,
            geo,
            resolved: Default::default(),
            clients: ClientBook::default(),
            poll_lock: Mutex::new(()),
            refresh_lock: Mutex::new(()),
            refresh_wanted: Notify::new(),
            refreshed: watch::Sender::new(0),
            full_recheck_at: std::sync::Mutex::new(None),
            refresh_pending: AtomicBool::new(false),
            version_conn: Mutex::new(version_conn),
            built_at_version: AtomicI64::new(-1),
        }));
        state.refresh().await?;
        Ok(state)
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// For reads; configuration writes go through [`AppState::begin`].
    pub fn db(&self) -> &Pool {
        &self.0.db
    }

    pub fn writer(&self) -> &Writer {
        &self.0.writer
    }

    /// Adds the per-country redirect counts made since the last flush to
    /// the store; returns how many redirects were written.
    pub async fn flush_country_counts(&self) -> Result<u64> {
        let now = self.0.clock.now_ms();
        self.0.counters.flush_countries(&self.0.db, now).await
    }

    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.0.fetcher
    }

    pub fn geo(&self) -> &Geo {
        &self.0.geo
    }

    pub fn clients(&self) -> &ClientBook {
        &self.0.clients
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.cluster.as_ref()
    }

    /// The current routing snapshot.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.0.snapshot.load()
    }

    /// The snapshot with the clock and reservation TTL that go with it:
    /// what selection, the status API and the admin pages read.
    pub fn routing(&self) -> Routing {
        Routing {
            snap: self.0.snapshot.load_full(),
            now_s: self.0.clock.now_s(),
            ttl_s: self.0.settings.reservation_ttl_s(),
        }
    }

    /// A configuration change by `actor`; finish it with [`AppState::commit`].
    pub async fn begin(&self, actor: &str) -> Result<ChangeTx> {
        self.0.writer.begin(Actor::new(actor)).await
    }

    /// Commits a change and rebuilds routing, so the next request already
    /// sees it.
    pub async fn commit(&self, ctx: ChangeTx) -> Result<()> {
        self.0.writer.commit(ctx).await?;
        self.refresh().await
    }

    /// Rebuilds the routing snapshot from the store and swaps it in.
    pub async fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.0.refresh_lock.lock().await;
        // Whatever was asked for before this point is read below.
        self.0.refresh_pending.store(false, Ordering::SeqCst);
        // Read before the snapshot: a commit in between makes the version
        // look newer than the snapshot, which costs one more rebuild, never
        // a missed change.
        // Noted before the build, not after: the watcher asks whether
        // anything was committed that no rebuild has read *or is reading*;
        // noted after, a check during the build saw this rebuild's own
        // commits as news and asked for one more. Read before the rows: a
        // commit in between costs one more rebuild, never a missed change.
        // A failed build forgets it, so the next check asks again.
        let version = self.data_version().await;
        self.0
            .built_at_version
            .store(version.unwrap_or(-1), Ordering::SeqCst);
        let built = self.build_snapshot().await;
        if built.is_err() {
            self.0.built_at_version.store(-1, Ordering::SeqCst);
        }
        let old = self.0.snapshot.swap(Arc::new(built?));
        retire(old);
        self.0.refreshed.send_modify(|n| *n += 1);
        self.0
            .metrics
            .snapshot_rebuilds
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn build_snapshot(&self) -> Result<Snapshot> {
        let resolved = self.resolved();
        let rec = snapshot::Reconcile {
            grace_ms: self.0.settings.reservation_grace.as_millis() as i64,
            ttl_s: self.0.settings.reservation_ttl_s(),
        };
        let rows = snapshot::Rows::read(&self.0.db).await?;
        let this = self.clone();
        blocking(move || snapshot::build(rows, &this.0.counters, &resolved, rec)).await
    }

    /// Rebuilds if a rebuild was asked for and none has started since: the
    /// background refresher waits a moment after a request and then builds
    /// once for every request that came in meanwhile.
    pub async fn refresh_if_requested(&self) -> Result<()> {
        if self.0.refresh_pending.load(Ordering::SeqCst) {
            self.refresh().await?;
        }
        Ok(())
    }

    /// A stream looks full: starts a poll for fresh counts (at most once
    /// per `--full-recheck`) and waits, until `deadline`, for the next
    /// snapshot rebuild. `false` when none came in time (or rechecks are
    /// off): the stream is full as far as anyone knows.
    pub async fn await_fresh_counts(&self, deadline: tokio::time::Instant) -> bool {
        let gap = self.0.settings.full_recheck;
        if gap.is_zero() || tokio::time::Instant::now() >= deadline {
            return false;
        }
        let mut seen = self.0.refreshed.subscribe();
        seen.mark_unchanged();
        let start = {
            let mut at = match self.0.full_recheck_at.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let due = at.is_none_or(|t| t.elapsed() >= gap);
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.poll_now().await {
                    tracing::warn!(error = %e, "poll for a full stream failed");
                }
            });
        }
        matches!(
            tokio::time::timeout_at(deadline, seen.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Polls only the relays judged down, so a relay's return is used
    /// within seconds.
    pub async fn recheck_down(&self) -> Result<()> {
        let this = self.clone();
        crate::background::run(async move { this.recheck_down_here().await }).await?
    }

    async fn recheck_down_here(&self) -> Result<()> {
        let inner = &self.0;
        let any_down = self
            .snapshot()
            .servers
            .iter()
            .any(|s| s.enabled && s.health.state == crate::domain::HealthState::Down);
        if !any_down {
            return Ok(());
        }
        let Ok(_one_round_at_a_time) = inner.poll_lock.try_lock() else {
            return Ok(()); // a full round is running: it asks them anyway
        };
        let this = self.clone();
        let on_written = move || this.request_refresh();
        let which = crate::poll::Which::Down;
        let poll = &inner.settings.poll;
        crate::poll::run_round_of(
            &inner.db,
            &inner.fetcher,
            poll,
            &inner.clock,
            &on_written,
            which,
        )
        .await?;
        self.refresh().await
    }

    /// Asks the background refresher for a rebuild without waiting.
    pub fn request_refresh(&self) {
        self.0.refresh_pending.store(true, Ordering::SeqCst);
        self.0.refresh_wanted.notify_one();
    }

    /// Whether anything was committed since the current snapshot was
    /// built, by this process or another (import, cron poll, user
    /// commands). Our own commits are covered by the rebuild that follows
    /// them, so this only fires for changes no rebuild has read yet.
    pub async fn changed_since_snapshot(&self) -> Result<bool> {
        let Some(now) = self.data_version().await else {
            return Ok(false);
        };
        Ok(now != self.0.built_at_version.load(Ordering::SeqCst))
    }

    async fn data_version(&self) -> Option<i64> {
        let mut guard = self.0.version_conn.lock().await;
        let conn = guard.as_mut()?;
        match store::data_version(conn).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "data_version check failed");
                None
            }
        }
    }

    /// Waits for the next [`AppState::request_refresh`].
    pub async fn refresh_requested(&self) {
        self.0.refresh_wanted.notified().await;
    }

    fn resolved(&self) -> HashMap<i64, ResolvedLocation> {
        match self.0.resolved.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_resolved(&self, r: HashMap<i64, ResolvedLocation>) {
        match self.0.resolved.lock() {
            Ok(mut g) => *g = r,
            Err(poisoned) => *poisoned.into_inner() = r,
        }
    }

    /// Runs one poll round now (rounds never overlap) and refreshes. The
    /// GeoIP locations of relays are refreshed alongside, so a relay that
    /// moved (new DNS, new database) is placed anew at every poll.
    pub async fn poll_now(&self) -> Result<RoundSummary> {
        let this = self.clone();
        crate::background::run(async move { this.poll_round().await }).await?
    }

    async fn poll_round(&self) -> Result<RoundSummary> {
        let _one_round_at_a_time = self.0.poll_lock.lock().await;
        let this = self.clone();
        let on_written = move || this.request_refresh();
        let inner = &self.0;
        let (summary, ()) = tokio::join!(
            crate::poll::run_round(
                &inner.db,
                &inner.fetcher,
                &inner.settings.poll,
                &inner.clock,
                &on_written
            ),
            self.resolve_server_locations()
        );
        let summary = summary?;
        inner.metrics.poll_rounds.fetch_add(1, Ordering::Relaxed);
        let snap = self.snapshot();
        let by_name: HashMap<&str, &crate::routing::snapshot::ServerEntry> =
            snap.servers.iter().map(|e| (e.name.as_str(), e)).collect();
        for s in summary.servers.iter().filter(|s| !s.ok) {
            if let Some(e) = by_name.get(s.name.as_str()) {
                e.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.refresh().await?;
        Ok(summary)
    }

    /// Looks up in GeoIP the host of every enabled server that lacks a
    /// configured location or country (the snapshot falls back to this).
    /// An IP literal needs no DNS; a name that does not resolve now keeps
    /// what it resolved to before. Never on the redirect path.
    pub async fn resolve_server_locations(&self) {
        if !self.0.geo.is_configured() {
            return;
        }
        let snap = self.0.snapshot.load_full();
        let wanted = snap.servers.iter().filter(|s| {
            s.enabled
                && (s.coords_source != LocationSource::Configured
                    || s.country_source != LocationSource::Configured)
        });
        let limit = self.0.settings.poll.timeout;
        let mut lookups = tokio::task::JoinSet::new();
        for s in wanted {
            let (id, url) = (s.id, s.url.clone());
            lookups.spawn(async move {
                let addr = tokio::time::timeout(limit, host_address(&url))
                    .await
                    .unwrap_or_else(|_| Err(format!("no DNS answer within {limit:?}")));
                (id, url, addr)
            });
        }
        let before = self.resolved();
        let mut resolved = HashMap::new();
        while let Some(joined) = lookups.join_next().await {
            let Ok((id, url, addr)) = joined else {
                continue;
            };
            match addr {
                Ok(ip) => {
                    let g = self.0.geo.lookup(ip);
                    let loc = ResolvedLocation {
                        country: g.country,
                        coords: g.coords,
                    };
                    resolved.insert(id, loc);
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "cannot resolve a relay's host for GeoIP");
                    if let Some(old) = before.get(&id) {
                        resolved.insert(id, *old);
                    }
                }
            }
        }
        self.set_resolved(resolved);
    }

    /// Reopens the GeoIP file now (SIGHUP); on success relays are placed
    /// anew. A broken file keeps the old data (and is logged). The file is
    /// read on a blocking thread, never on the async workers.
    pub async fn reload_geoip(&self) -> Reload {
        let this = self.clone();
        let r = tokio::task::spawn_blocking(move || this.0.geo.reload())
            .await
            .unwrap_or(Reload::Failed);
        if r == Reload::Reloaded {
            self.relocate().await;
        }
        r
    }

    /// Reloads the GeoIP file if it changed on disk (off the async workers).
    pub async fn reload_geoip_if_changed(&self) -> Reload {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.0.geo.reload_if_changed())
            .await
            .unwrap_or(Reload::Failed)
    }

    /// Places relays anew (GeoIP) and rebuilds routing.
    pub async fn relocate(&self) {
        self.resolve_server_locations().await;
        if let Err(e) = self.refresh().await {
            tracing::error!(error = %e, "routing refresh failed");
        }
    }
}

/// Opens the GeoIP file on a blocking thread: a slow disk or a FIFO must
/// not stall an async worker.
async fn open_geo(path: Option<std::path::PathBuf>) -> anyhow::Result<Geo> {
    tokio::task::spawn_blocking(move || Geo::open(path.as_deref()))
        .await
        .map_err(|e| anyhow::anyhow!("GeoIP open task failed: {e}"))?
}

/// The address a server URL's host stands for (the first DNS answer).
async fn host_address(url: &str) -> std::result::Result<IpAddr, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("the URL has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("{bare} has no address"))
}

/// Drops a replaced snapshot on a blocking thread once the requests that
/// loaded it are done: freeing thousands of entries takes milliseconds,
/// which the last redirect holding it would otherwise pay.
fn retire(old: Arc<Snapshot>) {
    tokio::task::spawn_blocking(move || {
        // A request holds a snapshot for microseconds; this is plenty.
        std::thread::sleep(RETIRE_AFTER);
        drop(old);
    });
}

const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs CPU-heavy work (password hashing, snapshot building) on a blocking
/// thread, so a login flood or a large rebuild cannot slow redirects.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(anyhow::anyhow!("blocking task failed: {e}")))
}
