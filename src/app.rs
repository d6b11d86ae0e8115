//! Application assembly, shared by `main` and the tests: open the store,
//! build the first snapshot, bind the listener (port 0 in tests), and run
//! the server with its background tasks until told to stop.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify};

use crate::config::Settings;
use crate::error::Result;
use crate::geo::{Geo, Reload};
use crate::poll::{RoundSummary, fetch::Fetcher};
use crate::routing::snapshot::{self, LocationSource, ResolvedLocation};
use crate::routing::{Counters, Snapshot};
use crate::store::{self, Pool};

/// Process-wide counters that belong to no stream.
#[derive(Debug, Default)]
pub struct Metrics {
    pub unknown_stream: std::sync::atomic::AtomicU64,
    pub poll_rounds: std::sync::atomic::AtomicU64,
}

pub struct Inner {
    pub settings: Settings,
    pub db: Pool,
    pub snapshot: ArcSwap<Snapshot>,
    pub counters: Counters,
    pub metrics: Metrics,
    pub fetcher: Fetcher,
    pub geo: Geo,
    /// GeoIP locations of servers without configured coordinates.
    pub resolved: std::sync::Mutex<HashMap<i64, ResolvedLocation>>,
    poll_lock: Mutex<()>,
    refresh_lock: Mutex<()>,
    refresh_wanted: Notify,
}

/// Cheap to clone; handlers get it through axum's `State`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub async fn new(settings: Settings) -> anyhow::Result<AppState> {
        // reqwest is built without a default crypto provider so that only
        // one (ring) is compiled; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = store::connect(&settings.database).await?;
        let path = settings.geoip.clone();
        let geo = tokio::task::spawn_blocking(move || Geo::open(path.as_deref())).await??;
        let fetcher = Fetcher::new(settings.poll.timeout, settings.poll.max_body)?;
        let state = AppState(Arc::new(Inner {
            settings,
            db,
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

    /// Rebuilds the routing snapshot from the store and swaps it in. Admin
    /// handlers await this so the next request already sees their change.
    pub async fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let resolved = self.resolved.lock().expect("poisoned").clone();
        let grace_ms = self.settings.reservation_grace.as_millis() as i64;
        let snap = snapshot::load(&self.db, &self.counters, &resolved, grace_ms).await?;
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    /// Asks the background refresher for a rebuild without waiting.
    pub fn request_refresh(&self) {
        self.refresh_wanted.notify_one();
    }

    /// Runs one poll round now (rounds never overlap) and refreshes. The
    /// GeoIP locations of relays are refreshed alongside, so a relay that
    /// moved (new DNS, new database) is placed anew at every poll.
    pub async fn poll_now(&self) -> Result<RoundSummary> {
        let _one_round_at_a_time = self.poll_lock.lock().await;
        let this = self.clone();
        let on_written = move || this.request_refresh();
        let (summary, ()) = tokio::join!(
            crate::poll::run_round(&self.db, &self.fetcher, &self.settings.poll, &on_written),
            self.resolve_server_locations()
        );
        let summary = summary?;
        self.metrics
            .poll_rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snap = self.snapshot.load();
        for s in summary.servers.iter().filter(|s| !s.ok) {
            if let Some(e) = snap.servers.iter().find(|e| e.name == s.name) {
                e.counters
                    .poll_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        if !self.geo.is_configured() {
            return;
        }
        let snap = self.snapshot.load_full();
        let wanted = snap.servers.iter().filter(|s| {
            s.enabled
                && (s.coords_source != LocationSource::Configured
                    || s.country_source != LocationSource::Configured)
        });
        let limit = self.settings.poll.timeout;
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
        let before = self.resolved.lock().expect("poisoned").clone();
        let mut resolved = HashMap::new();
        while let Some(joined) = lookups.join_next().await {
            let Ok((id, url, addr)) = joined else {
                continue;
            };
            match addr {
                Ok(ip) => {
                    let g = self.geo.lookup(ip);
                    resolved.insert(
                        id,
                        ResolvedLocation {
                            country: g.country,
                            coords: g.coords,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "cannot resolve a relay's host for GeoIP");
                    if let Some(old) = before.get(&id) {
                        resolved.insert(id, *old);
                    }
                }
            }
        }
        *self.resolved.lock().expect("poisoned") = resolved;
    }

    /// Reopens the GeoIP file now (SIGHUP); on success relays are placed
    /// anew. A broken file keeps the old data (and is logged).
    pub async fn reload_geoip(&self) -> Reload {
        let this = self.clone();
        let r = tokio::task::spawn_blocking(move || this.geo.reload())
            .await
            .unwrap_or(Reload::Failed);
        if r == Reload::Reloaded {
            self.relocate().await;
        }
        r
    }

    async fn relocate(&self) {
        self.resolve_server_locations().await;
        if let Err(e) = self.refresh().await {
            tracing::error!(error = %e, "routing refresh failed");
        }
    }

    pub fn now_s(&self) -> u64 {
        (store::now_ms() / 1000) as u64
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = AppState::new(settings).await?;
        crate::users::ensure_admin(&state.db, state.settings.admin_password.as_deref()).await?;
        Ok(Application { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let router = crate::web::router(state.clone());
        let background = tokio::spawn(background_tasks(state.clone()));
        tracing::info!(addr = %self.listener.local_addr()?, "serving");
        crate::web::serve::serve(
            self.listener,
            router,
            &state.settings.server,
            &state.settings.trusted_proxies,
            shutdown,
        )
        .await?;
        background.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

async fn background_tasks(state: AppState) {
    tokio::join!(
        scheduler(state.clone()),
        refresher(state.clone()),
        watch_geoip(state.clone()),
        watch_other_writers(state)
    );
}

/// How often the GeoIP file is checked for a replacement: a `stat`, cheap.
const GEOIP_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Without the built-in scheduler (cron polls in another process) relays
/// are placed this often instead of at every poll.
const RELOCATE_EVERY: Duration = Duration::from_secs(300);

/// Reloads the GeoIP database when its file changes and places relays
/// after a reload. With the built-in scheduler every poll (the first one
/// at start) places them too; in cron mode this task does, at start and
/// now and then.
async fn watch_geoip(state: AppState) {
    if !state.geo.is_configured() {
        return;
    }
    let cron_mode = state.settings.poll_interval.is_zero();
    if cron_mode {
        state.relocate().await;
    }
    let mut placed = Instant::now();
    let mut tick = tokio::time::interval(GEOIP_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let this = state.clone();
        // Off the runtime: a reload reads the whole file.
        let reloaded = tokio::task::spawn_blocking(move || this.geo.reload_if_changed())
            .await
            .is_ok_and(|r| r == Reload::Reloaded);
        if reloaded || (cron_mode && placed.elapsed() >= RELOCATE_EVERY) {
            state.relocate().await;
            placed = Instant::now();
        }
    }
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

async fn scheduler(state: AppState) {
    let every = state.settings.poll_interval;
    if every.is_zero() {
        tracing::info!("built-in poll scheduler disabled (--poll-interval 0)");
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = state.poll_now().await {
            tracing::error!(error = %e, "poll round failed");
        }
    }
}

async fn refresher(state: AppState) {
    loop {
        state.refresh_wanted.notified().await;
        if let Err(e) = state.refresh().await {
            tracing::error!(error = %e, "routing refresh failed");
        }
    }
}

/// Notices commits by other processes (import, cron poll, user commands)
/// through SQLite's data_version and refreshes within a second.
async fn watch_other_writers(state: AppState) {
    let mut conn = match store::watcher_connection(&state.settings.database).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the database for outside changes");
            return;
        }
    };
    let mut last = store::data_version(&mut conn).await.ok();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match store::data_version(&mut conn).await {
            Ok(v) if Some(v) != last => {
                last = Some(v);
                if let Err(e) = state.refresh().await {
                    tracing::error!(error = %e, "routing refresh failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "data_version check failed"),
        }
    }
}
