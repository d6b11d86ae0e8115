//! The core the web layer, the background loops and the CLI share: the
//! store and its write path, the routing state (the snapshot and the one
//! place that rebuilds it, [`routing_state`]), the [`Poller`] (the one poll
//! round), GeoIP and the cluster. Nothing here knows HTTP.
//!
//! `Engine` is cheap to clone; fields stay private, so how routing is kept
//! fresh is decided in this module and nowhere else.

pub mod announced;
mod error;
pub(crate) mod metrics;
pub(crate) mod placement;
pub(crate) mod poll_runtime;
pub(crate) mod poller;
pub(crate) mod routing_state;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::Guard;

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::domain::Clock;
use crate::domain::sync::lock;
use crate::geo::{Geo, Kind, Reload};
use crate::poll::RoundSummary;
use crate::poll::fetch::Fetcher;
use crate::routing::clients::ClientBook;
use crate::routing::tokens::Signer;
use crate::routing::{Routing, Snapshot, snapshot};
use crate::store::changes::{Actor, ChangeTx, Writer};
use crate::store::{self, Pool};

pub use error::{Error, Result};
pub(crate) use metrics::Metrics;
pub use poller::Poller;
pub(crate) use routing_state::{Reason, RoutingState};

struct Inner {
    settings: Settings,
    db: Pool,
    writer: Writer,
    clock: Clock,
    routing: Arc<RoutingState>,
    /// The ASN database (`--asn-db`); empty without one.
    asn: Arc<Geo>,
    poller: Arc<Poller>,
    metrics: Metrics,
    /// Who was recently sent where (one client, one slot).
    clients: ClientBook,
    /// When the last poll for a full stream was started.
    full_recheck_at: std::sync::Mutex<Option<Instant>>,
    /// With `--cluster`: the other instances, through Redis.
    cluster: Option<Arc<Cluster>>,
    /// Signs the redirects' tokens that relays' callbacks echo back.
    signer: Signer,
}

#[derive(Clone)]
pub struct Engine(Arc<Inner>);

impl Engine {
    /// Opens the store and GeoIP and builds the first snapshot.
    pub async fn open(settings: Settings, clock: Clock) -> anyhow::Result<Engine> {
        install_crypto();
        metrics::process_start_time();
        // GeoIP first: a start that fails on a bad --geoip must not
        // leave a new, empty database behind.
        let geo = open_geo(
            Kind::Location,
            settings.geoip.clone(),
            settings.geoip_max_bytes,
        )
        .await?;
        let asn = open_geo(Kind::Asn, settings.asn_db.clone(), settings.geoip_max_bytes).await?;
        let db = store::connect(&settings.database).await?;
        let reconcile = snapshot::Reconcile {
            grace_ms: settings.reservation_grace.as_millis() as i64,
            ttl_s: settings.reservation_ttl_s(),
        };
        let routing =
            Arc::new(RoutingState::new(db.clone(), &settings.database, geo, reconcile).await);
        let poller = Poller::new(
            db.clone(),
            settings.poll.clone(),
            clock.clone(),
            Some(routing.clone()),
        )?;
        let cluster = match &settings.cluster {
            Some(c) => Some(Cluster::new(c.clone(), clock.clone())?),
            None => None,
        };
        let engine = Engine(Arc::new(Inner {
            cluster,
            settings,
            writer: Writer::new(db.clone()),
            db,
            clock,
            routing,
            asn: Arc::new(asn),
            poller,
            metrics: Metrics::default(),
            clients: ClientBook::default(),
            full_recheck_at: std::sync::Mutex::new(None),
            signer: Signer::random(),
        }));
        engine.routing_state().rebuild(Reason::Start).done().await?;
        Ok(engine)
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// Signs and checks the redirect tokens (see `routing::tokens`).
    pub fn signer(&self) -> &Signer {
        &self.0.signer
    }

    /// For reads; configuration writes go through [`Engine::begin`].
    pub fn db(&self) -> &Pool {
        &self.0.db
    }

    pub fn writer(&self) -> &Writer {
        &self.0.writer
    }

    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn poller(&self) -> &Arc<Poller> {
        &self.0.poller
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        self.0.poller.fetcher()
    }

    pub fn geo(&self) -> &Geo {
        self.0.routing.geo()
    }

    /// What routing knows of a client at `ip`: its GeoIP location, its
    /// address (for `ip_versions`, `only_prefixes`) and its AS.
    pub fn client_geo(&self, ip: std::net::IpAddr) -> crate::domain::ClientGeo {
        crate::domain::ClientGeo {
            ip: Some(ip),
            asn: self.asn().asn(ip),
            ..self.geo().lookup(ip)
        }
    }

    /// The ASN database (`--asn-db`); answers nothing without one.
    pub fn asn(&self) -> &Geo {
        &self.0.asn
    }

    pub fn clients(&self) -> &ClientBook {
        &self.0.clients
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.cluster.as_ref()
    }

    pub fn routing_state(&self) -> &Arc<RoutingState> {
        &self.0.routing
    }

    /// The current routing snapshot.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.0.routing.snapshot()
    }

    /// The snapshot with the clock and reservation TTL that go with it:
    /// what selection, the status API and the admin pages read.
    pub fn routing(&self) -> Routing {
        Routing {
            snap: self.0.routing.snapshot_full(),
            now_s: self.0.clock.now_s(),
            ttl_s: self.0.settings.reservation_ttl_s(),
        }
    }

    /// A configuration change by `actor`; finish it with [`Engine::commit`].
    /// In a cluster, refused while this instance is not in touch with
    /// Redis: a change made then would have to be merged later with what
    /// the others did meanwhile, so it is not made at all.
    pub async fn begin(&self, actor: &str) -> store::Result<ChangeTx> {
        if let Some(c) = &self.0.cluster
            && c.mode() != crate::cluster::Mode::Shared
        {
            return Err(store::Error::Refused(crate::cluster::CUT_OFF.into()));
        }
        self.0.writer.begin(Actor::new(actor)).await
    }

    /// Commits a change and rebuilds routing, so the next request already
    /// sees it.
    pub async fn commit(&self, ctx: ChangeTx) -> Result<()> {
        self.0.writer.commit(ctx).await?;
        self.0.routing.rebuild(Reason::Commit).done().await
    }

    /// Rebuilds routing now (after a change made around the write path,
    /// such as an import in the same process).
    pub async fn refresh(&self) -> Result<()> {
        self.0.routing.rebuild(Reason::Asked).done().await
    }

    /// Whether anything was committed that no rebuild has read yet.
    pub async fn changed_since_snapshot(&self) -> Result<bool> {
        self.0.routing.changed_since_snapshot().await
    }

    /// Adds the per-country redirect counts made since the last flush to
    /// the store; returns how many redirects were written.
    pub(crate) async fn flush_country_counts(&self) -> store::Result<u64> {
        let now = self.0.clock.now_ms();
        self.0
            .routing
            .counters()
            .flush_countries(&self.0.db, now)
            .await
    }

    /// Runs one poll round now (rounds never overlap) and rebuilds routing.
    pub async fn poll_now(&self) -> Result<RoundSummary> {
        self.0.poller.poll().await
    }

    /// Polls the relays judged down (the client book has a sweeper of its
    /// own in `app`).
    pub async fn recheck_down(&self) -> Result<()> {
        self.0.poller.recheck_down().await
    }

    /// A stream looks full: starts a poll for fresh counts (at most once
    /// per `--full-recheck`) and waits, until `deadline`, for the next
    /// snapshot rebuild. `false` when none came in time (or rechecks are
    /// off): the stream is full as far as anyone knows.
    pub(crate) async fn await_fresh_counts(&self, deadline: tokio::time::Instant) -> bool {
        let gap = self.0.settings.full_recheck;
        if gap.is_zero() || tokio::time::Instant::now() >= deadline {
            return false;
        }
        let mut seen = self.0.routing.rebuilt();
        seen.mark_unchanged();
        let start = {
            let mut at = lock(&self.0.full_recheck_at);
            let due = at.is_none_or(|t| t.elapsed() >= gap);
            if due {
                *at = Some(Instant::now());
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

    /// Reopens the GeoIP file now (SIGHUP); on success relays are placed
    /// anew. A broken file keeps the old data (and is logged). The file is
    /// read on a blocking thread, never on the async workers.
    pub async fn reload_geoip(&self) -> Reload {
        let routing = self.0.routing.clone();
        let asn = self.0.asn.clone();
        let r = tokio::task::spawn_blocking(move || {
            asn.reload();
            routing.geo().reload()
        })
        .await
        .unwrap_or(Reload::Failed);
        if r == Reload::Reloaded {
            self.relocate().await;
        }
        r
    }

    /// Reloads the GeoIP file if it changed on disk (off the async
    /// workers); the ASN file too, whose reload needs no relocation.
    pub async fn reload_geoip_if_changed(&self) -> Reload {
        let routing = self.0.routing.clone();
        let asn = self.0.asn.clone();
        tokio::task::spawn_blocking(move || {
            asn.reload_if_changed();
            routing.geo().reload_if_changed()
        })
        .await
        .unwrap_or(Reload::Failed)
    }

    /// Places relays anew (GeoIP) and rebuilds routing.
    pub(crate) async fn relocate(&self) {
        let routing = &self.0.routing;
        routing.place_relays(self.0.settings.poll.timeout).await;
        if let Err(e) = routing.rebuild(Reason::Placement).done().await {
            tracing::error!(error = %e, "routing refresh failed");
        }
    }
}

/// reqwest and the Redis client are built without a default crypto
/// provider so that only one (ring) is compiled; installing twice is
/// harmless.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens the GeoIP file on a blocking thread: a slow disk or a FIFO must
/// not stall an async worker.
async fn open_geo(
    kind: Kind,
    path: Option<std::path::PathBuf>,
    max_bytes: u64,
) -> anyhow::Result<Geo> {
    tokio::task::spawn_blocking(move || Geo::open_kind(kind, path.as_deref(), max_bytes))
        .await
        .map_err(|e| anyhow::anyhow!("GeoIP open task failed: {e}"))?
}

/// Runs CPU-heavy work (password hashing, snapshot building) on a blocking
/// thread, so a login flood or a large rebuild cannot slow redirects.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}
