//! Several instances acting as one through Redis (or Valkey).
//!
//! Shared: slot reservations ([`slots`]) and who is in the cluster
//! ([`members`]). Each instance keeps its own SQLite database, its own
//! admin sessions and its own polls: every instance polls every relay, as a
//! single instance does. The shared reservation counters are compared with
//! each instance's own latest poll, so instances need not agree on when a
//! relay was polled; polling stays where it is when Redis is away, with no
//! leader to elect or fail over; and a relay answers one small request per
//! instance and interval.
//!
//! Redis is never on the redirect path of every request: slots are leased
//! in blocks. When Redis does not answer, an instance is *split*: it keeps
//! redirecting from its local copy with its share of the free slots, and
//! rejoins by itself at the next heartbeat that gets an answer.

pub mod auth;
pub(crate) mod config_sync;
mod error;
pub(crate) mod members;
pub mod slots;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde::Serialize;

use crate::domain::Clock;
use crate::domain::sync::lock;
pub use error::Error;
use error::Result as RedisResult;
use members::{Member, Members};
use slots::{Lease, Leases, MountView};

pub use crate::routing::capacity::Held;

/// Why a configuration change is refused while split.
pub const CUT_OFF: &str = "this instance cannot reach Redis, which holds the cluster's configuration: configuration changes are refused until it can (redirects keep working); try again when /api/status shows the cluster shared";

/// Heartbeats, and the rejoin attempts while split, this often.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A Redis call taking longer counts as Redis being away.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://`, `rediss://` (TLS) or `redis+unix://` / `unix://`; may
    /// hold a password, so it is never printed.
    pub url: String,
    /// Prefix of every key, so several balancers can share one Redis.
    pub prefix: String,
    /// This instance's name in the member list and the audit log.
    pub instance: String,
    /// How long a member not heard from (by Redis's clock) still counts,
    /// its share of free slots held back; an instance cut off from Redis
    /// for this long stops giving away slots of limited mounts on its own,
    /// since the others may have forgotten it.
    pub forget_after: Duration,
    /// `--cluster-secret-file`: what instances publish is authenticated
    /// with it (see [`auth`]).
    pub secret: Option<auth::Secret>,
    /// `--cluster-join-replace-local`: a database that has never synced
    /// and differs from the cluster's configuration joins anyway, its own
    /// servers and streams replaced by the cluster's (otherwise it stays
    /// out of the shared configuration).
    pub join_replace_local: bool,
}

impl ClusterSettings {
    pub fn new(url: &str, prefix: &str, instance: &str) -> ClusterSettings {
        ClusterSettings {
            url: url.to_string(),
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            forget_after: DEFAULT_FORGET_AFTER,
            secret: None,
            join_replace_local: false,
        }
    }
}

/// The default `--cluster-forget-after`: six hours, so a split holds for
/// that long.
pub const DEFAULT_FORGET_AFTER_S: u64 = 6 * 3600;
const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(DEFAULT_FORGET_AFTER_S);

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &redacted(&self.url))
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .field("forget_after", &self.forget_after)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("join_replace_local", &self.join_replace_local)
            .finish()
    }
}

/// The URL with any password replaced, for logs and the status page.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Checks a `--cluster` URL the way the client will read it.
pub fn parse_url(url: &str) -> Result<String, String> {
    Client::open(url)
        .map(|_| url.to_string())
        .map_err(|e| format!("{:?} is not a Redis URL ({e}); expected redis://[user:password@]host:port[/db], rediss://… or unix:///path/to/redis.sock", redacted(url)))
}

/// Checks a `--cluster-prefix` / `--cluster-instance` value.
pub(crate) fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: use 1 to 100 visible ASCII characters without braces"
        ))
    }
}

/// The default instance name: the host name and the listen address.
pub(crate) fn default_instance(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{listen}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Mode {
    /// Not yet in touch with Redis since start.
    Joining { since_ms: i64 },
    /// Slots are leased through Redis.
    Shared,
    /// Redis is away: each instance gives away only its share.
    Split { since_ms: i64 },
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Joining { .. } => "joining",
            Mode::Shared => "shared",
            Mode::Split { .. } => "split",
        }
    }
}

/// What `/api/status`, `/metrics` and the dashboard show.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub instance: String,
    pub mode: &'static str,
    /// Since when split or joining, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Last answer from Redis.
    pub last_contact_ms: Option<i64>,
    pub last_error: Option<String>,
    pub members: Vec<Member>,
    pub slots: &'static str,
    /// Split for longer than `--cluster-forget-after`: limited mounts get
    /// no listeners from this instance until it is back in touch.
    pub split_expired: bool,
    /// Why Redis as configured may lose the cluster's keys (an evicting
    /// `maxmemory-policy`), checked at every join; `None` when it cannot.
    pub redis_warning: Option<String>,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// The Redis data generation this instance has joined.
    generation: Option<String>,
    members: Members,
    last_contact_ms: Option<i64>,
    last_error: Option<String>,
    redis_warning: Option<String>,
}

/// The cluster's gauges, read once per scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Slots are shared through Redis (false: split).
    pub shared: bool,
    /// Instances seen in the last minute, this one included.
    pub members: u64,
    /// Of those, the ones not in touch with Redis now.
    pub absent: u64,
    /// Seconds since Redis last answered (-1: never).
    pub last_contact_age_s: f64,
}

pub struct Cluster {
    settings: ClusterSettings,
    /// Connects on first use; replaced by a fresh one when Redis is lost
    /// (see [`Cluster::lost`]).
    conn: Mutex<ConnectionManager>,
    client: Client,
    state: Mutex<State>,
    leases: Leases,
    heartbeat: Script,
    lease: Script,
    held: Script,
    clock: Clock,
    modes: tokio::sync::watch::Sender<Mode>,
    joining: tokio::sync::Mutex<()>,
    /// Member entries skipped, by name: each is logged once.
    skipped: Mutex<std::collections::HashSet<String>>,
    /// The servers and streams the database held before this instance
    /// served (see [`Cluster::note_start`]).
    at_start: std::sync::OnceLock<std::collections::BTreeMap<String, String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Never waits for Redis: the first heartbeat joins.
    pub fn new(settings: ClusterSettings, clock: Clock) -> anyhow::Result<Arc<Cluster>> {
        let client = Client::open(settings.url.as_str())
            .map_err(|e| anyhow::anyhow!("--cluster {}: {e}", redacted(&settings.url)))?;
        let conn = manager(&client)
            .map_err(|e| anyhow::anyhow!("--cluster {}: {e}", redacted(&settings.url)))?;
        let now = clock.now_ms();
        let forget_after_ms = ms(settings.forget_after);
        let (modes, _) = tokio::sync::watch::channel(Mode::Joining { since_ms: now });
        Ok(Arc::new(Cluster {
            modes,
            joining: tokio::sync::Mutex::new(()),
            skipped: Mutex::default(),
            at_start: std::sync::OnceLock::new(),
            settings,
            conn: Mutex::new(conn),
            client,
            state: Mutex::new(State {
                mode: Mode::Joining { since_ms: now },
                generation: None,
                members: Members::new(forget_after_ms),
                last_contact_ms: None,
                last_error: None,
                redis_warning: None,
            }),
            leases: Leases::default(),
            heartbeat: Script::new(members::HEARTBEAT_LUA),
            lease: Script::new(&format!("{}{}", slots::COUNTERS_LUA, slots::LEASE_LUA)),
            held: Script::new(&format!("{}{}", slots::COUNTERS_LUA, slots::HELD_LUA)),
            clock,
        }))
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn mode(&self) -> Mode {
        self.state().mode
    }

    /// Follows the mode: the server polls again once a split has settled.
    pub(crate) fn modes(&self) -> tokio::sync::watch::Receiver<Mode> {
        self.modes.subscribe()
    }

    /// How long after a split begins every slot leased before it has been
    /// handed out: a poll that starts this much plus the connect grace
    /// later lets the split shares begin.
    pub(crate) fn split_settles_after() -> Duration {
        Duration::from_secs(slots::LEASE_SECONDS + 1)
    }

    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.settings.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    pub fn status(&self) -> Status {
        let split_expired = self.split_expired();
        let st = self.state();
        let since_ms = match st.mode {
            Mode::Joining { since_ms } | Mode::Split { since_ms } => Some(since_ms),
            Mode::Shared => None,
        };
        Status {
            instance: self.settings.instance.clone(),
            mode: st.mode.as_str(),
            since_ms,
            last_contact_ms: st.last_contact_ms,
            last_error: st.last_error.clone(),
            members: st.members.list(),
            slots: if st.mode == Mode::Shared {
                "shared"
            } else {
                "split"
            },
            split_expired,
            redis_warning: st.redis_warning.clone(),
        }
    }

    /// What `/metrics` shows of the cluster.
    pub fn figures(&self) -> Figures {
        let st = self.status();
        let now = self.clock.now_ms();
        Figures {
            shared: st.slots == "shared",
            members: st.members.len().max(1) as u64,
            absent: st.members.iter().filter(|m| !m.present).count() as u64,
            last_contact_age_s: st
                .last_contact_ms
                .map_or(-1.0, |t| (now - t) as f64 / 1000.0),
        }
    }

    /// (members not forgotten, of which absent).
    fn member_counts(&self) -> (u64, u64) {
        self.state().members.counts(&self.settings.instance)
    }

    /// Split (or never joined) for `forget_after` by this instance's own
    /// clock: the others may have forgotten it, so its share is no longer
    /// held back for it.
    fn split_expired(&self) -> bool {
        match self.mode() {
            Mode::Shared => false,
            Mode::Split { since_ms } | Mode::Joining { since_ms } => {
                self.clock.now_ms() - since_ms >= ms(self.settings.forget_after)
            }
        }
    }

    /// The Redis data generation joined, while slots are shared.
    pub(crate) fn shared_generation(&self) -> Option<String> {
        let st = self.state();
        match st.mode {
            Mode::Shared => st.generation.clone(),
            _ => None,
        }
    }

    /// The shared connection (a cheap handle).
    pub(crate) fn connection(&self) -> ConnectionManager {
        lock(&self.conn).clone()
    }

    /// Redis did not answer: forget the connection and the leases, split.
    /// A fresh manager connects at the next use, so the first call after
    /// Redis is back succeeds (the old one would answer that call with
    /// the failure it saw and only then reconnect).
    fn lost(&self, error: Error) {
        if let Ok(fresh) = manager(&self.client) {
            *lock(&self.conn) = fresh;
        }
        // Slots leased already are counted in Redis: they may still be
        // handed out until their lease ends, unless the counts are gone.
        if matches!(error, Error::DataLost) {
            self.leases.clear();
        }
        let now = self.clock.now_ms();
        let mut st = self.state();
        if matches!(st.mode, Mode::Shared) {
            tracing::warn!(error = %error, "cluster: Redis is away; giving away only this instance's share of free slots");
            st.mode = Mode::Split { since_ms: now };
        }
        if let Mode::Joining { since_ms } = st.mode {
            st.mode = Mode::Split { since_ms };
        }
        st.generation = None;
        st.last_error = Some(error.to_string());
        let mode = st.mode;
        drop(st);
        self.modes
            .send_if_modified(|m| std::mem::replace(m, mode) != mode);
    }

    /// One heartbeat: registers, reads the members, and (re)joins when
    /// split or when Redis has lost its data, re-adding what `held` lists.
    pub async fn beat(&self, held: &(dyn Fn() -> Vec<Held> + Sync)) {
        if let Err(e) = self.try_beat(held).await {
            self.lost(e);
        }
    }

    async fn try_beat(&self, held: &(dyn Fn() -> Vec<Held> + Sync)) -> RedisResult<()> {
        let mut conn = self.connection();
        let joined = self.state().generation.clone();
        let answer = self
            .heartbeat_call(&mut conn, joined.as_deref().unwrap_or(""))
            .await?;
        if joined.as_deref() == Some(answer.generation.as_str()) {
            self.contact(answer, false);
            return Ok(());
        }
        // Joining, back from a split, or Redis lost its data: what this
        // instance gave away since its last poll counts again first.
        self.leases.clear();
        self.push_held(&mut conn, &answer.generation, &held())
            .await?;
        let warning = eviction_warning(&mut conn).await;
        if let Some(w) = &warning {
            tracing::error!("cluster: {w}");
        }
        self.state().redis_warning = warning;
        let answer = self.heartbeat_call(&mut conn, &answer.generation).await?;
        self.contact(answer, true);
        Ok(())
    }

    async fn heartbeat_call(
        &self,
        conn: &mut ConnectionManager,
        joined: &str,
    ) -> RedisResult<Heartbeat> {
        let fresh = format!("{:016x}", rand::random::<u64>());
        let mut inv = self.heartbeat.prepare_invoke();
        inv.key(self.key(&["slots"]))
            .key(self.key(&["members"]))
            .key(self.key(&["member-generation"]))
            .arg(fresh)
            .arg(&self.settings.instance)
            .arg(ms(self.settings.forget_after))
            .arg(joined)
            .arg(self.member_tag(&self.settings.instance));
        let reply: Vec<String> = tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(conn))
            .await
            .map_err(|_| Error::Timeout)??;
        let mut it = reply.into_iter();
        let generation = it.next().ok_or(Error::Answer("empty heartbeat answer"))?;
        let redis_now_ms = it
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or(Error::Answer("no time in the heartbeat answer"))?;
        let rest: Vec<String> = it.collect();
        let rows = rest
            .chunks_exact(3)
            .filter_map(|c| {
                let row = self.member_row(c);
                if row.is_none() {
                    self.skipped_once(&c[0]);
                }
                row
            })
            .collect();
        Ok(Heartbeat {
            generation,
            redis_now_ms,
            rows,
        })
    }

    fn skipped_once(&self, name: &str) {
        let mut skipped = lock(&self.skipped);
        // Bounded: a flood of entries is logged up to here, then counted out.
        if skipped.len() < 1000 && skipped.insert(name.to_string()) {
            tracing::error!(
                member = %auth::loggable(name),
                "cluster: skipped an entry of the members hash that no balancer of this cluster wrote"
            );
        }
    }

    fn member_tag(&self, name: &str) -> String {
        auth::tag(
            self.settings.secret.as_ref(),
            &[&self.settings.prefix, "member", name],
        )
    }

    /// One member of a heartbeat answer, `None` when it is not one that a
    /// balancer of this cluster wrote (a name that is no instance name, a
    /// value that is no time, a tag that does not check): skipped, so no
    /// stray entry can stop the heartbeats or count as a member.
    fn member_row(&self, c: &[String]) -> Option<members::Row> {
        let [name, value, joined] = c else {
            return None;
        };
        let (at, tag) = value.split_once(' ').unwrap_or((value, ""));
        let at: i64 = at.parse().ok()?;
        parse_name(name).ok()?;
        let parts = [self.settings.prefix.as_str(), "member", name];
        auth::verify(self.settings.secret.as_ref(), &parts, tag)
            .then(|| (name.clone(), at, tag.to_string(), joined.clone()))
    }

    fn contact(&self, answer: Heartbeat, joined: bool) {
        let now = self.clock.now_ms();
        let Heartbeat {
            generation,
            redis_now_ms,
            rows,
        } = answer;
        let mut st = self.state();
        st.members.update(&generation, redis_now_ms, &rows);
        st.last_contact_ms = Some(now);
        st.last_error = None;
        if joined {
            if st.mode != Mode::Shared {
                tracing::info!(instance = %self.settings.instance, "cluster: joined; slots are shared");
            } else {
                tracing::warn!("cluster: Redis lost its data; joined anew");
            }
            st.generation = Some(generation);
            st.mode = Mode::Shared;
            drop(st);
            self.modes
                .send_if_modified(|m| std::mem::replace(m, Mode::Shared) != Mode::Shared);
        }
    }

    /// Re-adds this instance's outstanding reservations, counted from now
    /// to the end of a lease (by Redis's clock), so no instance gives them
    /// away again.
    async fn push_held(
        &self,
        conn: &mut ConnectionManager,
        generation: &str,
        held: &[Held],
    ) -> RedisResult<()> {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for h in held.iter().filter(|h| h.count > 0) {
            *counts
                .entry(self.mount_prefix(&h.server, &h.mount))
                .or_default() += h.count;
            *counts.entry(self.server_prefix(&h.server)).or_default() += h.count;
        }
        if counts.is_empty() {
            return Ok(());
        }
        let mut inv = self.held.prepare_invoke();
        inv.key(self.key(&["slots"]))
            .arg(generation)
            .arg(slots::LEASE_SECONDS);
        for (prefix, n) in counts {
            inv.arg(prefix).arg(n);
        }
        let bucket: i64 = tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(conn))
            .await
            .map_err(|_| Error::Timeout)??;
        if bucket < 0 {
            return Err(Error::DataLost);
        }
        Ok(())
    }

    /// Counter fields in the `slots` hash, the second appended.
    fn mount_prefix(&self, server: &str, mount: &str) -> String {
        format!("m:{server}:{mount}:")
    }

    fn server_prefix(&self, server: &str) -> String {
        format!("s:{server}:")
    }

    fn now_s(&self) -> u64 {
        (self.clock.now_ms() / 1000).max(0) as u64
    }

    /// May this instance send one more listener to this mount? Answers
    /// from the local lease when it can; otherwise leases a block (one
    /// Redis round trip, shared by concurrent requests), or when split
    /// decides from this instance's share.
    pub async fn take(self: &Arc<Self>, v: &MountView<'_>) -> bool {
        if v.is_unlimited() {
            return true;
        }
        let now_s = self.now_s();
        let entry = self.leases.of(v.id);
        let (taken, fetch_ahead) = {
            let mut l = lock(&entry.lease);
            let taken = l.take(now_s);
            (taken, taken && l.start_prefetch(now_s))
        };
        if taken {
            if fetch_ahead {
                self.prefetch(entry, slots::OwnedView::of(v));
            }
            return true;
        }
        if matches!(self.mode(), Mode::Joining { .. }) {
            self.join_now().await;
        }
        if let Some(allowed) = self.split_answer(v) {
            return allowed;
        }
        let _one_refill = entry.refill.lock().await;
        if lock(&entry.lease).take(now_s) {
            return true;
        }
        match self.refill(&entry.lease, v, now_s).await {
            Ok(()) => lock(&entry.lease).take(now_s),
            Err(e) => {
                self.lost(e);
                self.split_answer(v).unwrap_or(false)
            }
        }
    }

    /// A listener came before the first heartbeat: join now rather than
    /// refuse. Just started, this instance holds no reservations yet.
    async fn join_now(&self) {
        let _one_join = self.joining.lock().await;
        if matches!(self.mode(), Mode::Joining { .. }) {
            self.beat(&Vec::new).await;
        }
    }

    /// Leases the next block in the background while the current one
    /// still lasts, so a busy mount rarely waits for Redis.
    fn prefetch(self: &Arc<Self>, entry: Arc<slots::MountLease>, v: slots::OwnedView) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = match entry.refill.try_lock() {
                Ok(_one_refill) if this.mode() == Mode::Shared => {
                    let now_s = this.now_s();
                    this.refill(&entry.lease, &v.view(), now_s).await
                }
                // A refill is running already, or Redis is away.
                _ => Ok(()),
            };
            lock(&entry.lease).prefetching = false;
            if let Err(e) = result {
                this.lost(e);
            }
        });
    }

    /// The answer without Redis, when split or not yet joined.
    fn split_answer(&self, v: &MountView<'_>) -> Option<bool> {
        let since = match self.mode() {
            Mode::Shared => return None,
            Mode::Split { since_ms } | Mode::Joining { since_ms } => since_ms,
        };
        if self.split_expired() {
            return Some(false);
        }
        let (members, _) = self.member_counts();
        Some(slots::split_allows(v, since, members))
    }

    async fn refill(&self, lease: &Mutex<Lease>, v: &MountView<'_>, now_s: u64) -> RedisResult<()> {
        let Some(generation) = self.state().generation.clone() else {
            return Err(Error::NotJoined);
        };
        let (members, absent) = self.member_counts();
        let (mlimit, slimit) = slots::lease_limits(v, members, absent);
        let (want, old) = {
            let mut l = lock(lease);
            (slots::want(v, l.last_sum, members), l.take_expired(now_s))
        };
        let (old_bucket, old_unused) = old.unwrap_or((0, 0));
        let call = LeaseCall {
            age: now_s.saturating_sub(v.counts_from_s),
            mlimit,
            slimit,
            want,
            old_bucket,
            old_unused,
        };
        let (granted, msum, bucket) = self
            .lease_call(v.server, v.mount, &generation, call)
            .await?;
        if granted < 0 {
            return Err(Error::DataLost);
        }
        let mut l = lock(lease);
        l.names = Some((v.server.to_string(), v.mount.to_string()));
        // Handed out here a second less than Redis counts it: the two
        // clocks' seconds need not begin together.
        let end = now_s + slots::LEASE_SECONDS - 1;
        l.add(end, bucket.max(0) as u64, granted as u64);
        l.last_block = granted as u64;
        l.last_sum = Some(msum.max(0) as u64);
        Ok(())
    }

    /// One call of the lease script: (granted or -1, mount reservations,
    /// the Redis second the grant is counted in).
    async fn lease_call(
        &self,
        server: &str,
        mount: &str,
        generation: &str,
        c: LeaseCall,
    ) -> RedisResult<(i64, i64, i64)> {
        let mut conn = self.connection();
        let mut inv = self.lease.prepare_invoke();
        inv.key(self.key(&["slots"]))
            .arg(generation)
            .arg(self.mount_prefix(server, mount))
            .arg(self.server_prefix(server))
            .arg(c.age)
            .arg(slots::LEASE_SECONDS)
            .arg(c.mlimit)
            .arg(c.slimit)
            .arg(c.want)
            .arg(c.old_bucket)
            .arg(c.old_unused);
        let (granted, msum, _, bucket): (i64, i64, i64, i64) =
            tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(&mut conn))
                .await
                .map_err(|_| Error::Timeout)??;
        Ok((granted, msum, bucket))
    }

    /// Gives back the unused slots of expired leases (with the heartbeat,
    /// so an instance that stopped getting listeners does not sit on slots
    /// until the next poll releases them).
    pub(crate) async fn give_back_expired(&self) -> RedisResult<()> {
        let Some(generation) = self.state().generation.clone() else {
            return Ok(());
        };
        let now_s = self.now_s();
        for entry in self.leases.all() {
            let (expired, names) = {
                let mut l = lock(&entry.lease);
                (l.take_expired(now_s), l.names.clone())
            };
            let (Some((bucket, unused)), Some((server, mount))) = (expired, names) else {
                continue;
            };
            let call = LeaseCall {
                age: 0,
                mlimit: -1,
                slimit: -1,
                want: 0,
                old_bucket: bucket,
                old_unused: unused,
            };
            self.lease_call(&server, &mount, &generation, call).await?;
        }
        Ok(())
    }

    /// The heartbeat loop, for as long as the instance runs.
    pub async fn run(self: Arc<Self>, held: impl Fn() -> Vec<Held> + Send + Sync + 'static) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat(&held).await;
            if let Err(e) = self.give_back_expired().await {
                self.lost(e);
            }
        }
    }
}

/// Why Redis may lose the cluster's keys, if it may: any
/// `maxmemory-policy` but `noeviction` (whatever `maxmemory` is now: it can
/// be set at run time), or a policy that cannot be read (`CONFIG` renamed
/// or refused).
async fn eviction_warning(conn: &mut ConnectionManager) -> Option<String> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let answer = tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<Vec<String>>(conn)).await;
    let Some(policy) = answer
        .ok()
        .and_then(Result::ok)
        .and_then(|v| v.get(1).cloned())
    else {
        return Some("cannot read Redis's maxmemory-policy (CONFIG GET refused): make sure it is noeviction, or shared slot counts may be lost under memory pressure".into());
    };
    (policy != "noeviction").then(|| {
        format!("Redis's maxmemory-policy is {policy:?}: under memory pressure it may evict the cluster's keys (lost counts are noticed and handled as a split, at a cost in free slots); set maxmemory-policy noeviction")
    })
}

/// What a heartbeat answers: the data generation, Redis's time, members.
struct Heartbeat {
    generation: String,
    redis_now_ms: i64,
    rows: Vec<members::Row>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A connection manager that connects on first use, one attempt per use:
/// while Redis is away a request falls back to the split share at once
/// rather than waiting out retries.
fn manager(client: &Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// Arguments of one lease script call; limits of `-1` mean none.
struct LeaseCall {
    /// Seconds since the caller's release point, by its own clock.
    age: u64,
    mlimit: i64,
    slimit: i64,
    want: u64,
    old_bucket: u64,
    old_unused: u64,
}
/// The redirect path asks the cluster through routing's capacity seam.
impl crate::routing::capacity::SharedGate for Arc<Cluster> {
    fn admit(&self, v: &MountView<'_>) -> impl Future<Output = bool> + Send {
        self.take(v)
    }
}

impl Cluster {
    /// Notes the servers and streams the database holds before this
    /// instance serves; a first join compares only these with the
    /// cluster's, never a change made here after start (an import racing
    /// the first sync would otherwise keep the instance out for good).
    /// Later calls keep the first note.
    pub async fn note_start(&self, db: &crate::store::Pool) -> error::Result<()> {
        if self.at_start.get().is_none() {
            let objects = config_sync::objects_at_start(db).await?;
            let _ = self.at_start.set(objects);
        }
        Ok(())
    }
}
