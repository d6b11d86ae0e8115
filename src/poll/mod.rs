//! The poll job: read every enabled relay's per-mount usage, judge health,
//! and write both to the store. The caller rebuilds the routing snapshot.
//!
//! All relays are asked at once and each answer is written as soon as it
//! arrives, so a relay that hangs until the timeout delays nobody else.

pub mod fetch;
pub mod health;
pub mod parse;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::Result;
use crate::store::{self, Pool, status::PollRecord};
use fetch::Fetcher;
use health::Health;

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
    pub state: health::State,
    pub latency_ms: i64,
    pub source: Option<&'static str>,
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

/// Which servers a round asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    /// Only enabled servers judged down: the quick re-check that notices a
    /// relay's return within seconds without polling healthy ones more.
    Down,
}

/// One round over all servers. `on_written` runs after each
/// server's result is committed (the server uses it to refresh routing).
pub async fn run_round(
    db: &Pool,
    fetcher: &Fetcher,
    settings: &PollSettings,
    on_written: &(dyn Fn() + Sync),
) -> Result<RoundSummary> {
    run_round_of(db, fetcher, settings, on_written, Which::All).await
}

/// `run_round` over the servers `which` selects.
pub async fn run_round_of(
    db: &Pool,
    fetcher: &Fetcher,
    settings: &PollSettings,
    on_written: &(dyn Fn() + Sync),
    which: Which,
) -> Result<RoundSummary> {
    let round_start = Instant::now();
    let started_at = store::now_ms();
    let mut conn = db.acquire().await?;
    // Disabled (draining) servers are polled too: they get no listeners,
    // but the admin shows their remaining listeners leaving.
    let servers = store::servers::list(&mut conn).await?;
    let health: std::collections::HashMap<i64, Health> = store::status::health_all(&mut conn)
        .await?
        .into_iter()
        .map(|h| (h.server_id, h.health()))
        .collect();
    drop(conn);
    let servers: Vec<_> = servers
        .into_iter()
        .filter(|s| which == Which::All || health::needs_quick_recheck(s.enabled, health.get(&s.id).copied()))
        .collect();
    if servers.is_empty() {
        return Ok(RoundSummary {
            started_at,
            duration_ms: 0,
            servers: Vec::new(),
        });
    }

    let mut tasks = JoinSet::new();
    for s in &servers {
        let fetcher = fetcher.clone();
        let base = s.poll_base().to_string();
        let id = s.id;
        // The client timeout already bounds each request; this outer bound
        // also covers the fallback request and any stall between them.
        let limit = settings.timeout * 2 + Duration::from_secs(1);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let started = store::now_ms();
            let result = match tokio::time::timeout(limit, fetcher.report(&base)).await {
                Ok(r) => r,
                Err(_) => Err("timed out".to_string()),
            };
            (id, started, t0.elapsed(), result)
        });
    }

    let mut summaries = Vec::with_capacity(servers.len());
    while let Some(joined) = tasks.join_next().await {
        let Ok((id, started, elapsed, result)) = joined else {
            continue;
        };
        let server = servers.iter().find(|s| s.id == id).expect("spawned above");
        let prev = health.get(&id).copied().unwrap_or_default();
        let next = prev.observe(result.is_ok(), settings.rise, settings.fall);
        let latency_ms = elapsed.as_millis() as i64;
        let summary = ServerSummary {
            name: server.name.clone(),
            enabled: server.enabled,
            ok: result.is_ok(),
            state: next.state,
            latency_ms,
            source: result.as_ref().ok().map(|r| r.source),
            mounts: result.as_ref().map(|r| r.mounts.len()).unwrap_or(0),
            listeners: result
                .as_ref()
                .map(|r| r.mounts.iter().map(|u| u64::from(u.listeners)).sum())
                .unwrap_or(0),
            error: result.as_ref().err().cloned(),
        };
        match &summary.error {
            Some(e) if server.enabled => {
                tracing::warn!(server = %server.name, state = next.state.as_str(), error = %e, "poll failed")
            }
            Some(e) => {
                tracing::info!(server = %server.name, error = %e, "poll of disabled server failed")
            }
            None => {}
        }
        if prev.state != next.state {
            tracing::info!(server = %server.name, from = prev.state.as_str(), to = next.state.as_str(), "server health changed");
        }
        let record = PollRecord {
            server_id: id,
            started_at: started,
            latency_ms,
            health: next,
            connections: result.as_ref().ok().and_then(|r| r.connections),
            result: result.map(|r| (r.source, r.mounts)),
        };
        let mut tx = store::write_tx(db).await?;
        store::status::record_poll(&mut tx, &record).await?;
        tx.commit().await?;
        on_written();
        summaries.push(summary);
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));

    if which == Which::Down {
        return Ok(RoundSummary {
            started_at,
            duration_ms: round_start.elapsed().as_millis() as i64,
            servers: summaries,
        });
    }
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
