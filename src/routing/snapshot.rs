//! The routing snapshot: everything the redirect path needs, read from the
//! store once and then shared immutably. It is rebuilt and swapped after
//! every admin write, every poll result and every change another process
//! commits, so the redirect handler never waits on SQLite.
//!
//! Counters (reservations, redirect counts) must outlive a rebuild, so they
//! live in a [`Counters`] registry keyed by database id and the snapshot
//! holds `Arc`s to them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::sync::lock;
use crate::domain::{
    Coords, CountryCode, Health, HealthState, LocationSource, Point, Policy, ResolvedLocation,
    Secret,
};
use crate::store;
use crate::store::Result;

use super::callbacks::{CallbackBook, Tally};
use super::countries::{self, CountryTally};
use super::reservations::{Ledger, Observation};
use super::routes::{Routes, Serving};
use super::rules;

#[derive(Debug, Default)]
pub struct MountCounters {
    pub ledger: Ledger,
    pub redirects: AtomicU64,
    /// With a cluster: until this second the shared count has no slot
    /// here, whatever this instance's own count says.
    pub shared_full_until_s: AtomicU64,
    /// Listeners the relay's callbacks report here.
    pub callbacks: Tally,
    /// The relay's callbacks showed this mount serving (a listener, or a
    /// `mount_add`) and no `mount_remove` since: a mount the poll does not
    /// list (`<hidden>1</hidden>`) is live by this (see `MountEntry::hidden`).
    pub announced: AtomicBool,
}

#[derive(Debug, Default)]
pub struct ServerCounters {
    pub ledger: Ledger,
    pub redirects: AtomicU64,
    pub poll_errors: AtomicU64,
    /// Which client is on which mount, from the relay's callbacks.
    pub book: CallbackBook,
    /// Listeners the relay's callbacks report over all its mounts.
    pub callbacks: Tally,
}

/// Redirect outcomes of one stream, for /metrics.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub redirected: AtomicU64,
    pub fallback: AtomicU64,
    /// Every relay that is up is full.
    pub full: AtomicU64,
    /// No relay of the stream is up (or it has none).
    pub unavailable: AtomicU64,
    pub forbidden: AtomicU64,
    pub playlist: AtomicU64,
    /// Redirects by client country, until the next flush to the store.
    pub countries: CountryTally,
    /// Listeners answered 503 (full or unavailable), for the console.
    pub recent_refused: super::recent::Recent,
    /// Listeners sent to the stream's `fallback_url`, for the console.
    pub recent_fallback: super::recent::Recent,
}

#[derive(Debug, Default)]
pub struct Counters {
    mounts: Mutex<HashMap<i64, Arc<MountCounters>>>,
    servers: Mutex<HashMap<i64, Arc<ServerCounters>>>,
    streams: Mutex<HashMap<i64, Arc<StreamCounters>>>,
}

fn entry<T: Default>(map: &Mutex<HashMap<i64, Arc<T>>>, id: i64) -> Arc<T> {
    lock(map).entry(id).or_default().clone()
}

impl Counters {
    pub fn mount(&self, id: i64) -> Arc<MountCounters> {
        entry(&self.mounts, id)
    }
    pub fn server(&self, id: i64) -> Arc<ServerCounters> {
        entry(&self.servers, id)
    }
    pub fn stream(&self, id: i64) -> Arc<StreamCounters> {
        entry(&self.streams, id)
    }
    /// Writes the per-country redirect counts of every stream (also of
    /// streams deleted since) to the store; see [`countries::flush`].
    pub(crate) async fn flush_countries(&self, db: &store::Pool, now_ms: i64) -> Result<u64> {
        let streams = self.all_streams();
        let tallies: Vec<(i64, &CountryTally)> =
            streams.iter().map(|(id, c)| (*id, &c.countries)).collect();
        countries::flush(db, &tallies, now_ms).await
    }

    /// Every stream's counters (also of streams deleted since), by id.
    pub(crate) fn all_streams(&self) -> Vec<(i64, Arc<StreamCounters>)> {
        lock(&self.streams)
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect()
    }
}

/// A server's bandwidth budget and what is charged against it: each of
/// its mounts whose stream has a `bitrate_kbps`, for its listeners and
/// its reservations.
#[derive(Debug)]
pub struct Bandwidth {
    pub budget_kbps: u64,
    /// (listeners at the last poll, bitrate in kbit/s, the mount's counters).
    pub mounts: Vec<(u32, u32, Arc<MountCounters>)>,
}

impl Bandwidth {
    /// kbit/s in use: listeners and the reservations still counting, each
    /// at its stream's bitrate.
    pub fn used_kbps(&self, now_s: u64, ttl_s: u64, seen: i64) -> u64 {
        self.mounts
            .iter()
            .map(|(listeners, kbps, c)| {
                (u64::from(*listeners) + c.ledger.count_seen(now_s, ttl_s, seen)) * u64::from(*kbps)
            })
            .sum()
    }

    /// Listeners of `kbps` that still fit in the budget.
    pub fn room(&self, kbps: u32, now_s: u64, ttl_s: u64, seen: i64) -> u64 {
        let left = self
            .budget_kbps
            .saturating_sub(self.used_kbps(now_s, ttl_s, seen));
        left / u64::from(kbps.max(1))
    }
}

#[derive(Debug)]
pub struct ServerEntry {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub https_url: Option<String>,
    pub country: Option<CountryCode>,
    pub country_source: LocationSource,
    pub coords: Option<Coords>,
    pub coords_source: LocationSource,
    pub max_listeners: Option<u32>,
    pub weight: u32,
    pub enabled: bool,
    /// Tier, polling, the clients it reaches and prefers, its budget.
    pub policy: Policy,
    /// With `max_mbps`: the budget and its charges; filled in by
    /// [`Snapshot::reindex`].
    pub bandwidth: Option<Bandwidth>,
    pub health: Health,
    /// Listeners over all mounts the relay listed, configured or not.
    pub listeners: u64,
    pub last_poll_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub latency_ms: Option<i64>,
    /// How the last good poll read the relay (`load.xsl`, `status-json.xsl`).
    pub source: Option<String>,
    /// The relay's URL-auth callbacks authenticate with this; with one,
    /// its listener counts come from the callbacks (see `callbacks`).
    pub callback_token: Option<Secret>,
    pub counters: Arc<ServerCounters>,
}

impl ServerEntry {
    /// Listeners over all the relay's mounts now: the callbacks' count
    /// when the relay has a token, else the last poll's.
    pub fn listeners_now(&self) -> u64 {
        if self.callback_token.is_some() {
            self.counters.callbacks.listeners()
        } else {
            self.listeners
        }
    }
}

#[derive(Debug)]
pub struct MountEntry {
    pub id: i64,
    pub server: usize,
    pub stream: usize,
    pub path: String,
    /// Listed by the relay's last successful poll.
    pub live: bool,
    pub listeners: u32,
    /// The limit selection enforces: the relay's, the operator's
    /// (`configured_max`), or the lower of both; `None` = nobody knows.
    pub max: Option<u32>,
    pub configured_max: Option<u32>,
    /// Its relay has a callback token: `listeners_now` is the callbacks'.
    pub callbacks: bool,
    /// Live although the poll does not list it (`<hidden>1</hidden>`
    /// mounts never are): its relay has callbacks, which showed it serving
    /// (`MountCounters::announced`), and the configuration gives its limit.
    pub hidden: bool,
    /// Each listener's bitrate (the stream's `bitrate_kbps`).
    pub kbps: Option<u32>,
    pub counters: Arc<MountCounters>,
}

impl MountEntry {
    /// Listeners on the mount now: the callbacks' count when its relay
    /// has a token, else the last poll's.
    pub fn listeners_now(&self) -> u64 {
        if self.callbacks {
            self.counters.callbacks.listeners()
        } else {
            u64::from(self.listeners)
        }
    }
}

#[derive(Debug)]
pub struct StreamEntry {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub fallback_url: Option<String>,
    pub allowed_countries: Option<Vec<CountryCode>>,
    pub allow_unknown: bool,
    /// Listeners who came over HTTPS go only to relays with an https_url.
    pub require_https: bool,
    /// Each listener's bitrate, charged against the relays' `max_mbps`.
    pub bitrate_kbps: Option<u32>,
    pub mounts: Vec<usize>,
    pub counters: Arc<StreamCounters>,
    /// The serving mounts as selection reads them; filled in by
    /// [`Snapshot::from_parts`] (and [`Snapshot::reindex`]).
    pub routes: Routes,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub built_at_ms: i64,
    pub servers: Vec<ServerEntry>,
    pub streams: Vec<StreamEntry>,
    pub mounts: Vec<MountEntry>,
    by_name: HashMap<String, usize>,
    servers_by_name: HashMap<String, usize>,
    /// Mounts by (server index, path).
    mounts_by_path: HashMap<(usize, String), usize>,
    /// Each server's coordinates as a unit vector, with the coordinates
    /// they were made from (the fields are public and may change).
    points: Vec<Option<(Coords, Point)>>,
}

impl StreamEntry {
    /// The countries a geo-restricted stream may be heard in, for messages.
    pub(crate) fn allowed_list(&self) -> String {
        self.allowed_countries
            .iter()
            .flatten()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Snapshot {
    pub fn stream(&self, name: &str) -> Option<&StreamEntry> {
        self.by_name.get(name).map(|&i| &self.streams[i])
    }
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.servers_by_name.get(name).copied()
    }
    /// The mount at `path` on server `server`, if a stream routes to it.
    pub fn mount_at(&self, server: usize, path: &str) -> Option<usize> {
        // A (usize, String) key cannot be looked up by &str without a
        // copy; mounts per server are few, so the copy is the cheap part.
        self.mounts_by_path
            .get(&(server, path.to_string()))
            .copied()
    }

    /// Server `i`'s location for distance computations.
    pub(crate) fn server_point(&self, i: usize) -> Option<Point> {
        let coords = self.servers[i].coords?;
        match self.points.get(i) {
            Some(Some((c, p))) if *c == coords => Some(*p),
            _ => Some(Point::new(coords)),
        }
    }

    /// Assembles a snapshot from plain parts; used by `load` and by tests
    /// that build routing situations without a database.
    pub fn from_parts(
        servers: Vec<ServerEntry>,
        streams: Vec<StreamEntry>,
        mounts: Vec<MountEntry>,
    ) -> Snapshot {
        let by_name = streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let servers_by_name = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mounts_by_path = mounts
            .iter()
            .enumerate()
            .map(|(i, m)| ((m.server, m.path.clone()), i))
            .collect();
        let mut snap = Snapshot {
            built_at_ms: store::now_ms(),
            points: Vec::new(),
            servers,
            streams,
            mounts,
            by_name,
            servers_by_name,
            mounts_by_path,
        };
        snap.reindex();
        snap
    }

    /// Recomputes what is derived from the entries (relay unit vectors and
    /// each stream's routes); for code that changed an entry in place.
    pub(crate) fn reindex(&mut self) {
        self.points = self
            .servers
            .iter()
            .map(|s| s.coords.map(|c| (c, Point::new(c))))
            .collect();
        self.charge_bandwidth();
        let mut streams = std::mem::take(&mut self.streams);
        for st in &mut streams {
            let serving = st.mounts.iter().filter_map(|&i| {
                let m = &self.mounts[i];
                let s = &self.servers[m.server];
                rules::serving(m.live, s.enabled, s.health.is_up()).then(|| Serving {
                    mount: i,
                    country: s.country,
                    point: self.server_point(m.server),
                    has_https_url: s.https_url.is_some(),
                    limit: m.max.or(s.max_listeners),
                    level: s.policy.tier,
                    asns: &s.policy.asns,
                })
            });
            st.routes = Routes::build(serving, st.require_https);
        }
        self.streams = streams;
    }
}

impl Snapshot {
    /// Gives each mount its stream's bitrate and lays out each budgeted
    /// server's charges: its mounts of streams with a bitrate.
    fn charge_bandwidth(&mut self) {
        for s in &mut self.servers {
            s.bandwidth = s.policy.max_mbps.map(|mbps| Bandwidth {
                budget_kbps: (mbps * 1000.0) as u64,
                mounts: Vec::new(),
            });
        }
        for m in &mut self.mounts {
            m.kbps = self.streams.get(m.stream).and_then(|st| st.bitrate_kbps);
            if let (Some(bw), Some(kbps)) = (&mut self.servers[m.server].bandwidth, m.kbps) {
                bw.mounts.push((m.listeners, kbps, m.counters.clone()));
            }
        }
    }
}

/// How reservations are reconciled with polls: the connect grace (a
/// redirect older than this at a poll has arrived or never will) and the
/// TTL after which an unreconciled reservation stops counting.
#[derive(Debug, Clone, Copy)]
pub struct Reconcile {
    pub grace_ms: i64,
    pub ttl_s: u64,
}

/// The snapshot from what [`Rows::read`] returned; CPU work (milliseconds
/// at thousands of relays), so the server runs it on a blocking thread
/// rather than on the workers that answer redirects. `resolved` holds GeoIP
/// locations of servers that have none configured; every mount's and
/// server's reservations are reconciled with the server's last successful
/// poll.
pub fn build(
    rows: Rows,
    counters: &Counters,
    resolved: &HashMap<i64, ResolvedLocation>,
    rec: Reconcile,
) -> Snapshot {
    let usage = UsageIndex::new(&rows.usage);
    let mut servers = Vec::with_capacity(rows.servers.len());
    let mut server_index = HashMap::new();
    for row in &rows.servers {
        let health = rows.health.get(&row.id);
        let geo = resolved.get(&row.id).copied().unwrap_or_default();
        let mut entry = server_entry(row, health, &usage, counters.server(row.id), geo);
        entry.callback_token = rows.tokens.get(&row.id).cloned();
        let hidden = hidden_listeners(&rows, &usage, counters, row.id);
        reconcile_server(&entry, health, hidden, rec);
        server_index.insert(row.id, servers.len());
        servers.push(entry);
    }
    let mut streams: Vec<StreamEntry> = rows
        .streams
        .iter()
        .map(|row| stream_entry(row, counters.stream(row.id)))
        .collect();
    let stream_index: HashMap<i64, usize> =
        streams.iter().enumerate().map(|(i, s)| (s.id, i)).collect();

    let mut mounts = Vec::with_capacity(rows.mounts.len());
    for row in &rows.mounts {
        let (Some(&server), Some(&stream)) = (
            server_index.get(&row.server_id),
            stream_index.get(&row.stream_id),
        ) else {
            continue;
        };
        let u = usage
            .by_mount
            .get(&(row.server_id, row.mount.as_str()))
            .copied();
        let polled = servers[server].policy.poll;
        let mut entry = mount_entry(row, server, stream, u, polled, counters.mount(row.id));
        entry.callbacks = servers[server].callback_token.is_some();
        if u.is_none() && entry.callbacks && entry.configured_max.is_some() {
            entry.hidden = entry.counters.announced.load(Ordering::Relaxed);
            entry.live = entry.hidden;
        }
        let connections = connections(rows.health.get(&row.server_id));
        reconcile_mount(&entry, &servers[server], &usage, connections, rec);
        streams[stream].mounts.push(mounts.len());
        mounts.push(entry);
    }
    Snapshot::from_parts(servers, streams, mounts)
}

/// Everything a snapshot is built from, read in one transaction so it is
/// consistent even while a poll or an import commits.
pub struct Rows {
    servers: Vec<store::servers::ServerRow>,
    streams: Vec<store::streams::StreamRow>,
    mounts: Vec<store::mounts::MountRow>,
    health: HashMap<i64, store::status::HealthRow>,
    usage: Vec<store::status::MountStatusRow>,
    tokens: HashMap<i64, Secret>,
}

impl Rows {
    pub async fn read(db: &store::Pool) -> Result<Rows> {
        let mut tx = db.begin().await?;
        let servers = store::servers::list(&mut tx).await?;
        let streams = store::streams::list(&mut tx).await?;
        let mounts = store::mounts::list(&mut tx).await?;
        let health = store::status::health_all(&mut tx)
            .await?
            .into_iter()
            .map(|h| (h.server_id, h))
            .collect();
        let usage = store::status::mount_status_all(&mut tx).await?;
        let tokens = store::servers::callback_tokens(&mut tx).await?;
        tx.commit().await?;
        Ok(Rows {
            servers,
            streams,
            mounts,
            health,
            usage,
            tokens,
        })
    }
}

/// The last poll's mount rows by (server, mount), and per server the
/// listeners summed over its mounts and how many mounts it reported.
struct UsageIndex<'a> {
    by_mount: HashMap<(i64, &'a str), &'a store::status::MountStatusRow>,
    server_listeners: HashMap<i64, u64>,
    server_mounts: HashMap<i64, usize>,
}

impl<'a> UsageIndex<'a> {
    fn new(usage: &'a [store::status::MountStatusRow]) -> UsageIndex<'a> {
        let mut index = UsageIndex {
            by_mount: HashMap::new(),
            server_listeners: HashMap::new(),
            server_mounts: HashMap::new(),
        };
        for u in usage {
            index.by_mount.insert((u.server_id, u.mount.as_str()), u);
            *index.server_listeners.entry(u.server_id).or_default() += u.listeners.max(0) as u64;
            *index.server_mounts.entry(u.server_id).or_default() += 1;
        }
        index
    }

    fn listeners(&self, server_id: i64) -> u64 {
        self.server_listeners.get(&server_id).copied().unwrap_or(0)
    }
}

/// The relay's `listener_connections` at the last poll, when it reported it.
fn connections(h: Option<&store::status::HealthRow>) -> Option<u64> {
    h.and_then(|h| h.listener_connections)
        .and_then(|c| u64::try_from(c).ok())
}

/// A database count as a `u32`, negative values as 0.
fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

fn server_entry(
    row: &store::servers::ServerRow,
    h: Option<&store::status::HealthRow>,
    usage: &UsageIndex,
    counters: Arc<ServerCounters>,
    geo: ResolvedLocation,
) -> ServerEntry {
    let configured_country = row
        .country
        .as_deref()
        .and_then(|c| CountryCode::parse(c).ok());
    let (country, country_source) = match (configured_country, geo.country) {
        (Some(c), _) => (Some(c), LocationSource::Configured),
        (None, Some(c)) => (Some(c), LocationSource::GeoIp),
        (None, None) => (None, LocationSource::Unknown),
    };
    let (coords, coords_source) = match (row.latitude, row.longitude, geo.coords) {
        (Some(lat), Some(lon), _) => (Some(Coords { lat, lon }), LocationSource::Configured),
        (_, _, Some(c)) => (Some(c), LocationSource::GeoIp),
        _ => (None, LocationSource::Unknown),
    };
    let policy = row.policy().unwrap_or_else(|(what, e)| {
        tracing::warn!(server = %row.name, what, error = %e, "bad routing policy in the database; using the default");
        Policy::default()
    });
    // An unpolled relay (a CDN) is taken as up: nothing could say otherwise.
    let health = match h {
        _ if !policy.poll => Health {
            state: HealthState::Up,
            failures: 0,
            successes: 0,
        },
        Some(h) => h.health(),
        None => Health::default(),
    };
    ServerEntry {
        id: row.id,
        name: row.name.clone(),
        url: row.url.clone(),
        https_url: row.https_url.clone(),
        country,
        country_source,
        coords,
        coords_source,
        max_listeners: row.max_listeners.and_then(|v| u32::try_from(v).ok()),
        weight: u32::try_from(row.weight).unwrap_or(100).max(1),
        enabled: row.enabled,
        policy,
        bandwidth: None,
        health,
        listeners: usage.listeners(row.id),
        last_poll_at: h.and_then(|h| h.last_poll_at),
        last_success_at: h.and_then(|h| h.last_success_at),
        last_error: h.and_then(|h| h.last_error.clone()),
        last_error_at: h.and_then(|h| h.last_error_at),
        latency_ms: h.and_then(|h| h.latency_ms),
        source: h.and_then(|h| h.source.clone()),
        callback_token: None,
        counters,
    }
}

/// Listeners the callbacks count on the server's configured mounts that
/// its last poll did not list (hidden ones): the poll's total lacks them.
fn hidden_listeners(rows: &Rows, usage: &UsageIndex<'_>, counters: &Counters, server: i64) -> u64 {
    if !rows.tokens.contains_key(&server) {
        return 0;
    }
    rows.mounts
        .iter()
        .filter(|m| m.server_id == server)
        .filter(|m| !usage.by_mount.contains_key(&(server, m.mount.as_str())))
        .map(|m| counters.mount(m.id).callbacks.listeners())
        .sum()
}

/// Reconciles the server's reservations with its last successful poll;
/// `hidden`: listeners of mounts the poll cannot see, per the callbacks.
fn reconcile_server(
    entry: &ServerEntry,
    h: Option<&store::status::HealthRow>,
    hidden: u64,
    rec: Reconcile,
) {
    if let Some(at) = entry.last_success_at {
        let c = &entry.counters;
        if entry.callback_token.is_some() {
            let polled = entry.listeners + hidden;
            c.book.reconcile(&c.callbacks, 0, polled, at, rec.grace_ms);
        }
        let obs = callback_free(
            entry,
            Observation {
                poll_ms: at,
                listeners: entry.listeners,
                connections: connections(h),
            },
        );
        entry
            .counters
            .ledger
            .reconcile(obs, rec.grace_ms, rec.ttl_s);
    }
}

fn stream_entry(row: &store::streams::StreamRow, counters: Arc<StreamCounters>) -> StreamEntry {
    StreamEntry {
        id: row.id,
        name: row.name.clone(),
        description: row.description.clone(),
        fallback_url: row.fallback_url.clone(),
        allowed_countries: row.allowed_countries(),
        allow_unknown: row.allow_unknown,
        require_https: row.require_https,
        bitrate_kbps: row
            .bitrate_kbps
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v > 0),
        mounts: Vec::new(),
        counters,
        routes: Routes::default(),
    }
}

fn mount_entry(
    row: &store::mounts::MountRow,
    server: usize,
    stream: usize,
    u: Option<&store::status::MountStatusRow>,
    polled: bool,
    counters: Arc<MountCounters>,
) -> MountEntry {
    let reported = u.and_then(|u| u.max_listeners).map(clamp_u32);
    let configured_max = row.max_listeners.map(clamp_u32);
    MountEntry {
        id: row.id,
        server,
        stream,
        path: row.mount.clone(),
        // An unpolled relay carries every mount it is configured with.
        live: u.is_some() || !polled,
        listeners: u.map(|u| clamp_u32(u.listeners)).unwrap_or(0),
        max: match (reported, configured_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        configured_max,
        callbacks: false,
        hidden: false,
        kbps: None,
        counters,
    }
}

/// Reconciles the mount's reservations with its server's last successful
/// poll. The server's arrivals (`connections`) are this mount's only when
/// the relay carries nothing else.
fn reconcile_mount(
    entry: &MountEntry,
    server: &ServerEntry,
    usage: &UsageIndex,
    connections: Option<u64>,
    rec: Reconcile,
) {
    let Some(at) = server.last_success_at else {
        return;
    };
    let only_mount = usage.server_mounts.get(&server.id) == Some(&1) && entry.live;
    // A hidden mount's count is the callbacks' alone: no poll lists it.
    if entry.callbacks && entry.live && !entry.hidden {
        let book = &server.counters.book;
        let polled = u64::from(entry.listeners);
        book.reconcile(
            &entry.counters.callbacks,
            entry.id,
            polled,
            at,
            rec.grace_ms,
        );
    }
    let obs = callback_free(
        server,
        Observation {
            poll_ms: at,
            listeners: u64::from(entry.listeners),
            connections: connections.filter(|_| only_mount),
        },
    );
    entry
        .counters
        .ledger
        .reconcile(obs, rec.grace_ms, rec.ttl_s);
}

/// With callbacks a redirect's reservation ends when its listener's
/// `listener_add` confirms it (or with the grace), not when the poll sees
/// listeners grow: growth is the callbacks' to count, and taking it for
/// arrivals too would free reservations twice.
fn callback_free(server: &ServerEntry, obs: Observation) -> Observation {
    if server.callback_token.is_none() {
        return obs;
    }
    Observation {
        listeners: 0,
        connections: None,
        ..obs
    }
}
