//! The poll job: read every enabled relay's per-mount usage, judge health,
//! and write both to the store. The caller rebuilds the routing snapshot.
//!
//! All relays are asked at once and each answer is written as soon as it
//! arrives, so a relay that hangs until the timeout delays nobody else.

pub mod fetch;
pub mod parse;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::domain::{Clock, Health, HealthState, MountUsage, PollSource};
use crate::error::Result;
use crate::store::{self, Pool, status::PollRecord};
use fetch::{FetchError, Fetcher};

#[derive(Debug, Clone)]
pub struct PollSettings {
    pub timeout: Duration,
    pub max_body: usize,
    pub rise: u32,
    pub fall: u32,
    pub history_retention: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
            rise: 2,
            fall: 1,
            history_retention: Duration::from_secs(7 * 24 * 3600),
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

/// Asks every server at once; each task is bounded in time.
fn fetch_all(
    servers: &[store::servers::ServerRow],
    fetcher: &Fetcher,
    settings: &PollSettings,
    clock: &Clock,
) -> JoinSet<Fetched> {
    let mut tasks = JoinSet::new();
    // The client timeout already bounds each request; this outer bound
    // also covers the fallback request and any stall between them.
    let limit = settings.timeout * 2 + Duration::from_secs(1);
    for s in servers {
        let (fetcher, clock) = (fetcher.clone(), clock.clone());
        let base = s.poll_base().to_string();
        let id = s.id;
        tasks.spawn(async move {
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

/// One round over all servers. `on_written` runs after each
/// server's result is committed (the server uses it to refresh routing).
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
    drop(conn);

    let mut tasks = fetch_all(&servers, fetcher, settings, clock);
    let mut summaries = Vec::with_capacity(servers.len());
    while let Some(joined) = tasks.join_next().await {
        let Ok(f) = joined else { continue };
        let Some(server) = servers.iter().find(|s| s.id == f.id) else {
            continue;
        };
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
        let mut tx = store::write_tx(db).await?;
        store::status::record_poll(&mut tx, &record).await?;
        tx.commit().await?;
        on_written();
        summaries.push(summary);
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));

    let retention_ms = settings.history_retention.as_millis() as i64;
    let mut conn = db.acquire().await?;
    store::status::prune_history(&mut conn, started_at - retention_ms).await?;

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
