//! What every handler shares: settings, the store and its write path, the
//! routing snapshot, the poller and GeoIP. Fields stay private; handlers
//! use the methods, so how the snapshot is kept fresh is decided here and
//! nowhere else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::{Mutex, Notify};

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::domain::{Clock, LocationSource, ResolvedLocation};
use crate::error::{Error, Result};
use crate::geo::{Geo, Reload};
use crate::poll::{RoundSummary, fetch::Fetcher};
use crate::routing::{Counters, Routing, Snapshot, snapshot};
use crate::store::changes::{Actor, ChangeTx, Writer};
use crate::store::{self, Pool};

/// Process-wide counters that belong to no stream.
#[derive(Debug, Default)]
pub struct Metrics {
    pub unknown_stream: AtomicU64,
    pub poll_rounds: AtomicU64,
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
    poll_lock: Mutex<()>,
    refresh_lock: Mutex<()>,
    refresh_wanted: Notify,
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
        let db = store::connect(&settings.database).await?;
        let geo = open_geo(settings.geoip.clone()).await?;
        let fetcher = Fetcher::new(settings.poll.timeout, settings.poll.max_body)?;
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
            poll_lock: Mutex::new(()),
            refresh_lock: Mutex::new(()),
            refresh_wanted: Notify::new(),
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
        crate::routing::countries::flush(&self.0.db, &self.0.counters, now).await
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
        let resolved = self.resolved();
        let grace_ms = self.0.settings.reservation_grace.as_millis() as i64;
        let snap = snapshot::load(&self.0.db, &self.0.counters, &resolved, grace_ms).await?;
        self.0.snapshot.store(Arc::new(snap));
        Ok(())
    }

    /// Asks the background refresher for a rebuild without waiting.
    pub fn request_refresh(&self) {
        self.0.refresh_wanted.notify_one();
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
        for s in summary.servers.iter().filter(|s| !s.ok) {
            if let Some(e) = snap.servers.iter().find(|e| e.name == s.name) {
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

/// Runs CPU-heavy work (password hashing) on a blocking thread, so a login
/// flood cannot slow redirects.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(anyhow::anyhow!("blocking task failed: {e}")))
}
