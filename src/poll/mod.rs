//! The poll job: read every enabled relay's per-mount usage, judge health,
//! and write both to the store. The caller rebuilds the routing snapshot.
//!
//! Relays are asked concurrently (at most `concurrency` at a time, so the
//! sockets open at once stay bounded whatever the number of relays) and
//! answers are written in batches as they arrive: one transaction per
//! batch, not per relay, and a relay that hangs until the timeout delays
//! nobody else's batch.

pub(crate) mod fetch;
pub mod parse;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::{Clock, Health, HealthState, MountUsage, PollSource};
use crate::store::{self, Pool, status::PollRecord};
use fetch::{FetchError, Fetcher};

/// What a poll round can fail with (a relay that does not answer is a
/// result of the round, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A batch is written when it has this many results...
const BATCH_SIZE: usize = 500;
/// ...or its first result has waited this long.
const BATCH_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PollSettings {
    pub timeout: Duration,
    pub max_body: usize,
    pub rise: u32,
    pub fall: u32,
    pub history_retention: Duration,
    /// Relays polled at the same time.
    pub concurrency: usize,
    /// Mounts a relay may list beyond its configured ones; the rest are
    /// not stored (a relay listing thousands would grow the database).
    pub max_relay_mounts: usize,
}

/// The defaults, once: `PollSettings::default` and the command line's
/// flags (`cli`) both read them.
pub mod defaults {
    pub(crate) const TIMEOUT_S: f64 = 5.0;
    pub(crate) const RISE: u32 = 2;
    pub(crate) const FALL: u32 = 1;
    pub(crate) const HISTORY_DAYS: u64 = 7;
    pub(crate) const CONCURRENCY: u64 = 256;
    pub(crate) const MAX_RELAY_MOUNTS: u64 = 200;
    /// No flag: a relay's status page larger than this is refused.
    pub(crate) const MAX_BODY: usize = 1024 * 1024;
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs_f64(defaults::TIMEOUT_S),
            max_body: defaults::MAX_BODY,
            rise: defaults::RISE,
            fall: defaults::FALL,
            history_retention: Duration::from_secs(defaults::HISTORY_DAYS * 24 * 3600),
            concurrency: defaults::CONCURRENCY as usize,
            max_relay_mounts: defaults::MAX_RELAY_MOUNTS as usize,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub name: String,
    pub enabled: bool,
    pub ok: bool,
    pub state: HealthState,
    pub latency_ms: i64,
    pub source: Option<PollSource>,
    pub mounts: usize,
    pub listeners: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    pub started_at: i64,
    pub duration_ms: i64,
    pub servers: Vec<ServerSummary>,
}

impl RoundSummary {
    pub fn failed(&self) -> usize {
        self.servers.iter().filter(|s| !s.ok).count()
    }
}

/// One relay's answer, with when it was asked and how long it took.
struct Fetched {
    id: i64,
    started_ms: i64,
    elapsed: Duration,
    result: std::result::Result<(PollSource, Vec<MountUsage>), FetchError>,
    /// The relay's cumulative `listener_connections` (load.xsl only).
    connections: Option<u64>,
}

/// Asks every server, at most `settings.concurrency` at once; each task is
/// bounded in time from when its turn comes.
fn fetch_all(
    servers: &[store::servers::ServerRow],
    fetcher: &Fetcher,
    settings: &PollSettings,
    clock: &Clock,
) -> JoinSet<Fetched> {
    let mut tasks = JoinSet::new();
    let fetcher = fetcher.for_round(servers.len());
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    // The client timeout already bounds each request; this outer bound
    // also covers the fallback request and any stall between them.
    let limit = settings.timeout * 2 + Duration::from_secs(1);
    for s in servers {
        let (fetcher, clock, permits) = (fetcher.clone(), clock.clone(), permits.clone());
        let base = s.poll_base().to_string();
        let id = s.id;
        tasks.spawn(async move {
            // Never closed, so acquiring cannot fail.
            let _turn = permits.acquire_owned().await.ok();
            let t0 = Instant::now();
            let started_ms = clock.now_ms();
            let report = match tokio::time::timeout(limit, fetcher.report(&base)).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Overran),
            };
            let connections = report.as_ref().ok().and_then(|r| r.2);
            Fetched {
                id,
                started_ms,
                elapsed: t0.elapsed(),
                result: report.map(|(s, m, _)| (s, m)),
                connections,
            }
        });
    }
    tasks
}

fn summarize(server: &store::servers::ServerRow, next: Health, f: &Fetched) -> ServerSummary {
    let usage = f.result.as_ref().ok();
    ServerSummary {
        name: server.name.clone(),
        enabled: server.enabled,
        ok: usage.is_some(),
        state: next.state,
        latency_ms: f.elapsed.as_millis() as i64,
        source: usage.map(|(s, _)| *s),
        mounts: usage.map_or(0, |(_, m)| m.len()),
        listeners: usage.map_or(0, |(_, m)| m.iter().map(|u| u64::from(u.listeners)).sum()),
        error: f.result.as_ref().err().map(ToString::to_string),
    }
}

/// A failing relay is logged when its failures start and when its health
/// changes, then at most this often while it keeps failing.
const FAILURE_LOG_EVERY_MS: i64 = 5 * 60 * 1000;

/// When each relay's ongoing failure was last logged, kept by whoever
/// runs the rounds (the server's poller), so a restart logs each failing
/// relay once again.
#[derive(Debug, Default)]
pub(crate) struct FailureLog(std::sync::Mutex<HashMap<i64, i64>>);

impl FailureLog {
    /// Whether this failure is news: the first of a run, a health change,
    /// or the first for [`FAILURE_LOG_EVERY_MS`]. A success ends the run.
    fn is_news(&self, server_id: i64, failing: bool, changed: bool, now_ms: i64) -> bool {
        let mut logged = crate::domain::sync::lock(&self.0);
        if !failing {
            logged.remove(&server_id);
            return false;
        }
        let due = logged
            .get(&server_id)
            .is_none_or(|&at| now_ms - at >= FAILURE_LOG_EVERY_MS);
        if due || changed {
            logged.insert(server_id, now_ms);
        }
        due || changed
    }
}

fn log_outcome(
    failures: &FailureLog,
    server: &store::servers::ServerRow,
    prev: Health,
    s: &ServerSummary,
    now_ms: i64,
) {
    let changed = prev.state != s.state;
    let news = failures.is_news(server.id, s.error.is_some(), changed, now_ms);
    match &s.error {
        Some(e) if news && server.enabled => {
            tracing::warn!(server = %server.name, state = s.state.as_str(), error = %e, "poll failed (logged again in 5 minutes if it keeps failing)")
        }
        Some(e) if news => {
            tracing::info!(server = %server.name, error = %e, "poll of disabled server failed")
        }
        Some(e) => {
            tracing::debug!(server = %server.name, error = %e, "poll failed again")
        }
        None => {}
    }
    if changed && s.state == HealthState::Down {
        tracing::warn!(server = %server.name, from = prev.state.as_str(), to = s.state.as_str(), "server health changed");
    } else if changed {
        tracing::info!(server = %server.name, from = prev.state.as_str(), to = s.state.as_str(), "server health changed");
    }
}

/// Keeps every configured mount the relay lists and at most `cap` others,
/// in the relay's order.
fn cap_mounts(
    server: &str,
    mounts: Vec<MountUsage>,
    configured: Option<&HashSet<String>>,
    cap: usize,
) -> Vec<MountUsage> {
    let listed = mounts.len();
    let mut others = 0;
    let kept: Vec<MountUsage> = mounts
        .into_iter()
        .filter(|m| {
            configured.is_some_and(|c| c.contains(m.mount.as_str())) || {
                others += 1;
                others <= cap
            }
        })
        .collect();
    if kept.len() < listed {
        tracing::warn!(
            server,
            listed,
            kept = kept.len(),
            "relay lists more unconfigured mounts than --max-relay-mounts; the rest are ignored"
        );
    }
    kept
}

/// Writes the results gathered so far in one transaction.
async fn write_batch(db: &Pool, batch: &mut Vec<PollRecord>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = store::write_tx(db).await?;
    for record in batch.iter() {
        store::status::record_poll(&mut tx, record).await?;
    }
    tx.commit().await?;
    batch.clear();
    Ok(())
}

/// Which servers a round asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    All,
    /// Only enabled servers judged down: the quick re-check that notices a
    /// relay's return within seconds without polling healthy ones more.
    Down,
}

/// One round over the servers `which` selects. `on_written` runs after
/// each batch but the last is committed (the server rebuilds routing
/// then; after the last, the caller does).
pub(crate) async fn run_round_of(
    db: &Pool,
    fetcher: &Fetcher,
    settings: &PollSettings,
    clock: &Clock,
    failures: &FailureLog,
    on_written: &(dyn Fn() + Sync),
    which: Which,
) -> Result<RoundSummary> {
    let round_start = Instant::now();
    let started_at = clock.now_ms();
    let known = Known::read(db, which).await?;
    if known.servers.is_empty() {
        return Ok(RoundSummary {
            started_at,
            duration_ms: 0,
            servers: Vec::new(),
        });
    }
    let mut batch = Batch::new(db, on_written, known.servers.len());
    let ask = Ask {
        fetcher,
        settings,
        clock,
        failures,
    };
    let servers = gather(&known, &ask, &mut batch).await?;
    if which == Which::Down {
        return Ok(RoundSummary {
            started_at,
            duration_ms: round_start.elapsed().as_millis() as i64,
            servers,
        });
    }
    let retention_ms = settings.history_retention.as_millis() as i64;
    let mut conn = db.acquire().await?;
    store::status::prune_history(&mut conn, started_at, started_at - retention_ms).await?;
    let summary = RoundSummary {
        started_at,
        duration_ms: round_start.elapsed().as_millis() as i64,
        servers,
    };
    // Every 15 s by default: routine, so debug; failures are logged above.
    tracing::debug!(
        servers = summary.servers.len(),
        failed = summary.failed(),
        listeners = summary.servers.iter().map(|s| s.listeners).sum::<u64>(),
        duration_ms = summary.duration_ms,
        "poll round done"
    );
    Ok(summary)
}

/// What a round knows before it asks: the servers it asks, their health
/// so far, and each server's configured mounts.
struct Known {
    servers: Vec<store::servers::ServerRow>,
    health: HashMap<i64, Health>,
    configured: HashMap<i64, HashSet<String>>,
    /// Servers whose last poll read load.xsl.
    served_load_xsl: HashSet<i64>,
}

impl Known {
    async fn read(db: &Pool, which: Which) -> Result<Known> {
        let mut conn = db.acquire().await?;
        // Disabled (draining) servers are polled too: they get no listeners,
        // but the admin shows their remaining listeners leaving.
        let mut servers = store::servers::list(&mut conn).await?;
        let rows = store::status::health_all(&mut conn).await?;
        let health: HashMap<i64, Health> = rows.iter().map(|h| (h.server_id, h.health())).collect();
        let served_load_xsl = rows
            .iter()
            .filter(|h| {
                h.source.as_deref() == Some(PollSource::LoadXsl.file())
                    && h.last_success_at.is_some()
                    && h.last_success_at == h.last_poll_at
            })
            .map(|h| h.server_id)
            .collect();
        let mut configured: HashMap<i64, HashSet<String>> = HashMap::new();
        for m in store::mounts::list(&mut conn).await? {
            configured.entry(m.server_id).or_default().insert(m.mount);
        }
        // Servers configured with `poll = false` (a CDN) are never asked.
        servers.retain(|s| s.poll);
        servers.retain(|s| {
            which == Which::All
                || crate::domain::health::needs_quick_recheck(s.enabled, health.get(&s.id).copied())
        });
        Ok(Known {
            servers,
            health,
            configured,
            served_load_xsl,
        })
    }
}

/// How relays are asked and their answers judged, for one round.
struct Ask<'a> {
    fetcher: &'a Fetcher,
    settings: &'a PollSettings,
    clock: &'a Clock,
    failures: &'a FailureLog,
}

/// Collects every server's answer as it comes, writing the results in
/// batches; the summaries come back sorted by name.
async fn gather(known: &Known, ask: &Ask<'_>, batch: &mut Batch<'_>) -> Result<Vec<ServerSummary>> {
    let mut tasks = fetch_all(&known.servers, ask.fetcher, ask.settings, ask.clock);
    let by_id: HashMap<i64, &store::servers::ServerRow> =
        known.servers.iter().map(|s| (s.id, s)).collect();
    let mut summaries = Vec::with_capacity(known.servers.len());
    loop {
        let joined = match batch.due {
            Some(due) => tokio::select! {
                j = tasks.join_next() => j,
                () = tokio::time::sleep_until(due) => {
                    batch.write().await?;
                    continue;
                }
            },
            None => tasks.join_next().await,
        };
        let Some(joined) = joined else { break };
        let Ok(f) = joined else { continue };
        let Some(&server) = by_id.get(&f.id) else {
            continue;
        };
        let (summary, record) = judge(f, server, known, ask);
        summaries.push(summary);
        if batch.push(record) {
            batch.write().await?;
        }
    }
    // The last batch: the caller refreshes routing after it.
    write_batch(batch.db, &mut batch.records).await?;
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

/// One relay's answer judged: mounts capped, health moved, the outcome
/// logged; its summary and the record to store.
fn judge(
    mut f: Fetched,
    server: &store::servers::ServerRow,
    known: &Known,
    ask: &Ask<'_>,
) -> (ServerSummary, PollRecord) {
    let settings = ask.settings;
    let cap = settings.max_relay_mounts;
    f.result = f.result.map(|(source, mounts)| {
        let configured = known.configured.get(&f.id);
        (source, cap_mounts(&server.name, mounts, configured, cap))
    });
    let prev = known.health.get(&f.id).copied().unwrap_or_default();
    // A 404 right after a good read of load.xsl is a busy relay (see
    // `FetchError::Busy`); a second in a row fails as before.
    let busy =
        matches!(f.result, Err(FetchError::NotInstalled)) && known.served_load_xsl.contains(&f.id);
    let next = if busy {
        // Not down: health stays as it was, the last counts stand.
        f.result = Err(FetchError::Busy);
        prev
    } else {
        prev.observe(f.result.is_ok(), settings.rise, settings.fall)
    };
    let summary = summarize(server, next, &f);
    log_outcome(ask.failures, server, prev, &summary, ask.clock.now_ms());
    let record = PollRecord {
        server_id: f.id,
        started_at: f.started_ms,
        latency_ms: summary.latency_ms,
        health: next,
        connections: f.connections,
        result: f.result.map_err(|e| e.to_string()),
    };
    (summary, record)
}

/// Results waiting to be written, and when they are due at the latest.
struct Batch<'a> {
    db: &'a Pool,
    on_written: &'a (dyn Fn() + Sync),
    records: Vec<PollRecord>,
    due: Option<tokio::time::Instant>,
}

impl<'a> Batch<'a> {
    fn new(db: &'a Pool, on_written: &'a (dyn Fn() + Sync), servers: usize) -> Batch<'a> {
        Batch {
            db,
            on_written,
            records: Vec::with_capacity(BATCH_SIZE.min(servers)),
            due: None,
        }
    }

    /// Adds a result; true when the batch is full.
    fn push(&mut self, record: PollRecord) -> bool {
        self.records.push(record);
        self.due
            .get_or_insert_with(|| tokio::time::Instant::now() + BATCH_WAIT);
        self.records.len() >= BATCH_SIZE
    }

    /// Writes what is gathered and tells `on_written`.
    async fn write(&mut self) -> Result<()> {
        write_batch(self.db, &mut self.records).await?;
        (self.on_written)();
        self.due = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_relay_is_logged_at_start_on_change_and_every_five_minutes() {
        let log = FailureLog::default();
        let id = 42;
        let min = 60 * 1000;
        assert!(log.is_news(id, true, false, 0));
        assert!(!log.is_news(id, true, false, min));
        assert!(
            log.is_news(id, true, true, 2 * min),
            "a health change is news"
        );
        assert!(!log.is_news(id, true, false, 6 * min));
        assert!(log.is_news(id, true, false, 7 * min));
        assert!(!log.is_news(id, false, false, 8 * min));
        assert!(
            log.is_news(id, true, false, 8 * min + 1),
            "a new run of failures"
        );
    }
}
