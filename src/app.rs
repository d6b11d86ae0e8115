//! Application assembly, shared by `main` and the tests: open the store,
//! build the first snapshot, bind the listener (port 0 in tests), and run
//! the server next to its supervised background tasks until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts;
use crate::config::Settings;
use crate::domain::Clock;
use crate::engine::Engine;
use crate::geo::Reload;
use crate::store;
use crate::web::AppState;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// As [`Application::build`], with a clock tests can move forward.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = AppState::new(settings, clock).await?;
        if let Some(cluster) = state.cluster() {
            cluster.note_start(state.db()).await?;
        }
        let password = state.settings().admin_password.clone();
        crate::users::ensure_admin(state.writer(), password.as_deref()).await?;
        Ok(Application { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests
    /// and stops the background tasks, each within the shutdown deadline.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let deadline = state.settings().shutdown_timeout;
        let router = crate::web::router(state.clone());
        let stop = CancellationToken::new();
        let background = supervise(state.engine().clone(), &stop);
        let addr = self.listener.local_addr()?;
        tracing::info!(
            %addr,
            admin = %format!("http://{addr}/admin/"),
            database = %state.settings().database.display(),
            "serving"
        );
        // The connection layer finishes in-flight requests within the
        // deadline after `shutdown`, then the background tasks stop.
        crate::web::serve::serve(self.listener, router, state.clone(), shutdown).await?;
        stop.cancel();
        stop_background(background, deadline).await;
        // What was counted since the last flush is not lost at a stop.
        flush_country_counts(&state).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A background loop: runs until `stop` is cancelled.
type Task = fn(Engine, CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>>;

const TASKS: &[(&str, Task)] = &[
    ("poll scheduler", |s, r| Box::pin(scheduler(s, r))),
    ("down-relay re-check", |s, r| Box::pin(quick_recheck(s, r))),
    ("routing refresher", |s, r| Box::pin(refresher(s, r))),
    ("GeoIP watcher", |s, r| Box::pin(watch_geoip(s, r))),
    ("outside-writer watcher", |s, r| {
        Box::pin(watch_other_writers(s, r))
    }),
    ("alerts", |s, r| Box::pin(alerts(s, r))),
    ("cluster heartbeat", |s, r| {
        Box::pin(cluster_heartbeat(s, r))
    }),
    ("cluster configuration", |s, r| {
        Box::pin(cluster_config(s, r))
    }),
    ("poll after a split", |s, r| {
        Box::pin(poll_after_split(s, r))
    }),
    ("country count flusher", |s, r| {
        Box::pin(country_flusher(s, r))
    }),
    ("client book sweeper", |s, r| Box::pin(client_sweeper(s, r))),
    ("announced relay expiry", |s, r| {
        Box::pin(announce_expiry(s, r))
    }),
];

/// Runs every background loop under a supervisor of its own.
fn supervise(state: Engine, stop: &CancellationToken) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for &(name, task) in TASKS {
        let state = state.clone();
        let make = move |stop| task(state.clone(), stop);
        set.spawn(supervised(name, make, stop.clone()));
    }
    set
}

/// Runs one loop: a loop that panics is logged and restarted (after a
/// pause, so a loop that panics at once cannot spin); one that returns
/// before shutdown is logged and left stopped (it had nothing to do, such
/// as the scheduler with `--poll-interval 0`).
async fn supervised<F>(
    name: &'static str,
    make: impl Fn(CancellationToken) -> F,
    stopping: CancellationToken,
) where
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let run = tokio::spawn(make(stopping.clone()));
        match run.await {
            Ok(()) => {
                if !stopping.is_cancelled() {
                    tracing::debug!(task = name, "background task finished");
                }
                return;
            }
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, "background task panicked; restarting it");
            }
            Err(_) => return,
        }
        if wait_or_stop(&stopping, RESTART_PAUSE).await {
            return;
        }
    }
}

const RESTART_PAUSE: Duration = Duration::from_secs(1);

async fn stop_background(mut set: JoinSet<()>, deadline: Duration) {
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all).await.is_err() {
        tracing::warn!(
            ?deadline,
            "background tasks still running at the shutdown deadline; aborting them"
        );
        set.abort_all();
    }
}

/// Sleeps for `d` unless told to stop first; true when stopping.
async fn wait_or_stop(stopping: &CancellationToken, d: Duration) -> bool {
    stopping.is_cancelled()
        || stopping
            .run_until_cancelled(tokio::time::sleep(d))
            .await
            .is_none()
}

/// Judges every new routing snapshot for alerts and hands them to one
/// queue per webhook: a slow webhook delays only its own alerts; an alert
/// its full queue cannot take is dropped and counted in `/metrics`.
async fn alerts(state: Engine, stopping: CancellationToken) {
    let settings = state.settings().alerts.clone();
    if settings.webhooks.is_empty() {
        return;
    }
    let Some(outboxes) = alerts::Outboxes::start(&settings) else {
        return;
    };
    let mut watcher = alerts::Watcher::new(settings.free_percent);
    let mut last = None;
    while !wait_or_stop(&stopping, settings.check_every).await {
        let routing = state.routing();
        if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &routing.snap)) {
            continue;
        }
        for alert in watcher.observe(&routing) {
            let dropped = outboxes.send(&alert);
            state
                .metrics()
                .alerts_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        last = Some(routing.snap);
    }
    outboxes.close().await;
}

/// Without the built-in scheduler (cron polls in another process) relays
/// are placed this often instead of at every poll.
const RELOCATE_EVERY: Duration = Duration::from_secs(300);

/// Reloads the GeoIP database when its file changes and places relays
/// after a reload. With the built-in scheduler every poll (the first one
/// at start) places them too; in cron mode this task does, at start and
/// now and then.
async fn watch_geoip(state: Engine, stopping: CancellationToken) {
    if !state.geo().is_configured() && !state.asn().is_configured() {
        return;
    }
    let cron_mode = state.settings().poll_interval.is_zero();
    if cron_mode {
        state.relocate().await;
    }
    let mut placed = Instant::now();
    let every = state.settings().geoip_check;
    while !wait_or_stop(&stopping, every).await {
        let reloaded = state.reload_geoip_if_changed().await == Reload::Reloaded;
        if reloaded || (cron_mode && placed.elapsed() >= RELOCATE_EVERY) {
            state.relocate().await;
            placed = Instant::now();
        }
    }
}

/// Forgets clients whose grace has passed (`routing::clients`), on its own
/// schedule: whatever polls or does not, the book stays as large as one
/// grace window's clients.
async fn client_sweeper(state: Engine, stopping: CancellationToken) {
    let every = state.settings().client_sweep.max(Duration::from_millis(10));
    let grace_ms = state.settings().reservation_grace.as_millis() as i64;
    while !wait_or_stop(&stopping, every).await {
        state.clients().sweep(state.clock().now_ms(), grace_ms);
    }
}

/// Redirects are counted per country in memory; this writes them out.
const COUNTRY_FLUSH_EVERY: Duration = Duration::from_secs(60);

async fn country_flusher(state: Engine, stopping: CancellationToken) {
    while !wait_or_stop(&stopping, COUNTRY_FLUSH_EVERY).await {
        flush_country_counts(&state).await;
    }
}

/// Drains, then removes, relays whose announcements stopped.
async fn announce_expiry(state: Engine, stopping: CancellationToken) {
    let every = state.settings().announce.check_every;
    while !wait_or_stop(&stopping, every).await {
        if let Err(e) = crate::engine::announced::expire(&state).await {
            tracing::warn!(error = %e, "cannot expire silent announced relays; trying again later");
        }
    }
}

async fn flush_country_counts(state: &Engine) {
    if let Err(e) = state.flush_country_counts().await {
        tracing::warn!(error = %e, "cannot write per-country redirect counts; kept for the next try");
    }
}

async fn scheduler(state: Engine, stopping: CancellationToken) {
    let every = state.settings().poll_interval;
    if every.is_zero() {
        tracing::info!("built-in poll scheduler disabled (--poll-interval 0)");
        return;
    }
    let mut next = tokio::time::Instant::now();
    loop {
        if let Err(e) = state.poll_now().await {
            tracing::error!(error = %e, "poll round failed");
        }
        // A round that overran starts the next one at once, never a burst.
        next = (next + every).max(tokio::time::Instant::now());
        let pause = next.saturating_duration_since(tokio::time::Instant::now());
        if wait_or_stop(&stopping, pause).await {
            return;
        }
    }
}

/// Re-checks relays judged down every `--down-recheck` (with the built-in
/// scheduler only: in cron mode nothing polls between cron runs).
async fn quick_recheck(state: Engine, stopping: CancellationToken) {
    let every = state.settings().down_recheck;
    if every.is_zero() || state.settings().poll_interval.is_zero() {
        return;
    }
    while !wait_or_stop(&stopping, every).await {
        if let Err(e) = state.recheck_down().await {
            tracing::error!(error = %e, "re-check of down relays failed");
        }
    }
}

/// Builds routing once for each burst of requests that did not wait
/// (poll batches, outside writes): see `engine::routing_state`.
async fn refresher(state: Engine, stopping: CancellationToken) {
    tokio::select! {
        _ = state.routing_state().refresher() => {}
        _ = stopping.cancelled() => {}
    }
}

/// Watches the database file itself: deleted or replaced under the running
/// server, its open connections go on writing to the old, unlinked file,
/// whose content is lost at the next restart. Redirects go on (they never
/// touch the database); the log says so loudly, once a minute, until the
/// file is back.
struct FileWatch {
    path: std::path::PathBuf,
    identity: Option<(u64, u64)>,
    last_warned: Option<Instant>,
}

const FILE_WARN_EVERY: Duration = Duration::from_secs(60);

impl FileWatch {
    fn new(path: &std::path::Path) -> FileWatch {
        FileWatch {
            path: path.to_path_buf(),
            identity: store::file_identity(path),
            last_warned: None,
        }
    }

    fn check(&mut self) {
        let now = store::file_identity(&self.path);
        if now == self.identity {
            if self.last_warned.take().is_some() {
                tracing::info!(path = %self.path.display(), "the database file is back");
            }
            return;
        }
        if self
            .last_warned
            .is_some_and(|t| t.elapsed() < FILE_WARN_EVERY)
        {
            return;
        }
        self.last_warned = Some(Instant::now());
        let what = if now.is_none() {
            "was deleted"
        } else {
            "was replaced by another file"
        };
        tracing::error!(
            path = %self.path.display(),
            "the database file {what} while the balancer runs: changes now go to the old \
             file and are lost at restart; put the file back (or restore a backup made with \
             sqlite3 .backup) and restart the balancer"
        );
    }
}

/// Notices commits no rebuild has read yet, above all by other processes
/// (import, cron poll, user commands), through SQLite's data_version, and
/// asks for a rebuild within a second. The server's own commits are
/// followed by a rebuild anyway and do not count.
async fn watch_other_writers(state: Engine, stopping: CancellationToken) {
    let mut file = FileWatch::new(&state.settings().database);
    let every = state.settings().outside_writer_check;
    while !wait_or_stop(&stopping, every).await {
        file.check();
        if let Err(e) = state.routing_state().check_outside_writes().await {
            tracing::warn!(error = %e, "data_version check failed");
        }
    }
}

/// Heartbeats while the instance runs (with `--cluster`); on (re)joining
/// this instance's outstanding reservations are counted again first.
async fn cluster_heartbeat(state: Engine, stopping: CancellationToken) {
    let Some(cluster) = state.cluster().cloned() else {
        return;
    };
    let s = state.clone();
    let held = move || {
        let r = s.routing();
        crate::routing::capacity::held(&r.snap, r.now_s, r.ttl_s)
    };
    tokio::select! {
        _ = cluster.run(held) => {}
        _ = stopping.cancelled() => {}
    }
}

/// Keeps the configuration in step with the other instances.
async fn cluster_config(state: Engine, stopping: CancellationToken) {
    let Some(cluster) = state.cluster().cloned() else {
        return;
    };
    let run = cluster.run_config(state.db().clone(), state.writer().clone());
    tokio::select! {
        _ = run => {}
        _ = stopping.cancelled() => {}
    }
}

/// When Redis goes away, the split shares start with the first poll that
/// began after every shared lease could have been used and connected: this
/// runs that poll then rather than at the next scheduled round.
async fn poll_after_split(state: Engine, stopping: CancellationToken) {
    let Some(cluster) = state.cluster().cloned() else {
        return;
    };
    let mut modes = cluster.modes();
    let settle =
        crate::cluster::Cluster::split_settles_after() + state.settings().reservation_grace;
    loop {
        tokio::select! {
            changed = modes.changed() => if changed.is_err() { return },
            _ = stopping.cancelled() => return,
        }
        let split = matches!(*modes.borrow(), crate::cluster::Mode::Split { .. });
        if !split {
            continue;
        }
        // A little past the second boundary the counters are kept in.
        if wait_or_stop(&stopping, settle + Duration::from_millis(1100)).await {
            return;
        }
        if matches!(cluster.mode(), crate::cluster::Mode::Split { .. }) {
            tracing::info!(
                "cluster: polling now so this instance's share of free slots can be used"
            );
            if let Err(e) = state.poll_now().await {
                tracing::error!(error = %e, "poll round failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_stops_on_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        let counted = runs.clone();
        let make = move |stopping: CancellationToken| {
            let counted = counted.clone();
            async move {
                if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("deliberate");
                }
                stopping.cancelled().await;
            }
        };
        let sup = tokio::spawn(supervised("test", make, stopping));
        tokio::time::sleep(RESTART_PAUSE * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after each panic");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), sup)
            .await
            .expect("supervisor stops on shutdown")
            .unwrap();
    }
}
