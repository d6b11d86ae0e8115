//! The poll job: read every enabled relay's per-mount usage, judge health,
//! and write both to the store. The caller rebuilds the routing snapshot.
//!
//! Relays are asked concurrently (at most `concurrency` at a time, so the
//! sockets open at once stay bounded whatever the number of relays) and
//! answers are written in batches as they arrive: one transaction per
//! batch, not per relay, and a relay that hangs until the timeout delays
//! nobody else's batch.

pub mod fetch;
pub mod parse;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::{Clock, Health, HealthState, MountUsage, PollSource};
use crate::error::Result;
use crate::store::{self, Pool, status::PollRecord};
use fetch::{FetchError, Fetcher};

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

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
            rise: 2,
            fall: 1,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            concurrency: 256,
            max_relay_mounts: 200,
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
            let result = match tokio::time::timeout(limit, fetcher.usage(&base)).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Overran),
            };
            Fetched {
                id,
                started_ms,
                elapsed: t0.elapsed(),
                result,
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

fn log_outcome(server: &store::servers::ServerRow, prev: Health, s: &ServerSummary) {
    match &s.error {
        Some(e) if server.enabled => {
            tracing::warn!(server = %server.name, state = s.state.as_str(), error = %e, "poll failed")
        }
        Some(e) => {
            tracing::info!(server = %server.name, error = %e, "poll of disabled server failed")
        }
        None => {}
    }
    if prev.state != s.state {
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

/// One round over all servers. `on_written` runs after each batch but the
/// last is committed (the server refreshes routing then; after the last,
/// the caller does).
pub async fn run_round(
    db: &Pool,
    fetcher: &Fetcher,
    settings: &PollSettings,
    clock: &Clock,
    on_written: &(dyn Fn() + Sync),
) -> Result<RoundSummary> {
    let round_start = Instant::now();
    let started_at = clock.now_ms();
    let mut conn = db.acquire().await?;
    // Disabled (draining) servers are polled too: they get no listeners,
    // but the admin shows their remaining listeners leaving.
    let servers = store::servers::list(&mut conn).await?;
    let health: HashMap<i64, Health> = store::status::health_all(&mut conn)
        .await?
        .into_iter()
        .map(|h| (h.server_id, h.health()))
        .collect();
    let mut configured: HashMap<i64, HashSet<String>> = HashMap::new();
    for m in store::mounts::list(&mut conn).await? {
        configured.entry(m.server_id).or_default().insert(m.mount);
    }
    drop(conn);

    let mut tasks = fetch_all(&servers, fetcher, settings, clock);
    let by_id: HashMap<i64, &store::servers::ServerRow> =
        servers.iter().map(|s| (s.id, s)).collect();
    let mut summaries = Vec::with_capacity(servers.len());
    let mut batch = Vec::with_capacity(BATCH_SIZE.min(servers.len()));
    let mut batch_due: Option<tokio::time::Instant> = None;
    loop {
        let joined = match batch_due {
            Some(due) => tokio::select! {
                j = tasks.join_next() => j,
                () = tokio::time::sleep_until(due) => {
                    write_batch(db, &mut batch).await?;
                    on_written();
                    batch_due = None;
                    continue;
                }
            },
            None => tasks.join_next().await,
        };
        let Some(joined) = joined else { break };
        let Ok(mut f) = joined else { continue };
        let Some(&server) = by_id.get(&f.id) else {
            continue;
        };
        let cap = settings.max_relay_mounts;
        f.result = f.result.map(|(source, mounts)| {
            (
                source,
                cap_mounts(&server.name, mounts, configured.get(&f.id), cap),
            )
        });
        let prev = health.get(&f.id).copied().unwrap_or_default();
        let next = prev.observe(f.result.is_ok(), settings.rise, settings.fall);
        let summary = summarize(server, next, &f);
        log_outcome(server, prev, &summary);
        let record = PollRecord {
            server_id: f.id,
            started_at: f.started_ms,
            latency_ms: summary.latency_ms,
            health: next,
            result: f.result.map_err(|e| e.to_string()),
        };
        summaries.push(summary);
        batch.push(record);
        batch_due.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_WAIT);
        if batch.len() >= BATCH_SIZE {
            write_batch(db, &mut batch).await?;
            on_written();
            batch_due = None;
        }
    }
    write_batch(db, &mut batch).await?;
    summaries.sort_by(|a, b| a.name.cmp(&b.name));

    let retention_ms = settings.history_retention.as_millis() as i64;
    let mut conn = db.acquire().await?;
    store::status::prune_history(&mut conn, started_at, started_at - retention_ms).await?;

    let summary = RoundSummary {
        started_at,
        duration_ms: round_start.elapsed().as_millis() as i64,
        servers: summaries,
    };
    tracing::info!(
        servers = summary.servers.len(),
        failed = summary.failed(),
        listeners = summary.servers.iter().map(|s| s.listeners).sum::<u64>(),
        duration_ms = summary.duration_ms,
        "poll round done"
    );
    Ok(summary)
}
