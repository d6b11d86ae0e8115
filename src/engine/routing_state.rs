//! The owner of the routing snapshot: the one place that decides when it
//! is rebuilt.
//!
//! Every trigger (a commit, a poll batch, the end of a round, a relay
//! placed anew, a commit by another process) goes through
//! [`RoutingState::rebuild`] with its [`Reason`]. Requests are numbered;
//! a build reads the number asked for when it starts and publishes it
//! when it ends, so:
//! - a caller that waits ([`Pending::done`]) is answered by the first
//!   build that *started* after it asked, its own or another's: a burst
//!   of commits makes two builds, not one each;
//! - a request that does not wait (poll batches, outside writes) is
//!   picked up by [`RoutingState::refresher`] after [`COALESCE`], one build
//!   for the whole burst;
//! - a build notes SQLite's `data_version` before it reads the rows, and
//!   [`RoutingState::check_outside_writes`] compares against it to notice
//!   commits no build has read (another process's import or cron poll).
//!
//! One async lock serialises builds and the `data_version` connection, so
//! a check never runs in the middle of a build.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use sqlx::SqliteConnection;
use tokio::sync::{Mutex, watch};

use super::Result;
use crate::domain::ResolvedLocation;
use crate::geo::Geo;
use crate::poll::RoundSummary;
use crate::routing::{Counters, Snapshot, snapshot};
use crate::store::{self, Pool};

use crate::domain::sync::lock;

use super::{blocking, placement};

/// Why a rebuild was asked for, for the log. Callers that change what
/// routing reads wait for the build ([`Pending::done`]); the rest
/// (poll batches, outside writes) leave it to the refresher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first snapshot, at start.
    Start,
    /// A configuration change by this process.
    Commit,
    /// A batch of poll results was written; more follow.
    PollBatch,
    /// A poll round finished.
    PollRound,
    /// Relays were placed anew (GeoIP reloaded or relays resolved).
    Placement,
    /// Another process committed (seen through `data_version`).
    OutsideWrite,
    /// Asked for by an operator or a test.
    Asked,
    /// A relay's callback showed a mount its poll does not list (hidden)
    /// start or stop serving.
    HiddenMount,
}

/// How long the refresher waits after a request that does not wait before
/// rebuilding, so the requests of a burst (poll batches, the watcher) make
/// one rebuild.
pub(crate) const COALESCE: Duration = Duration::from_millis(100);

/// Drops a replaced snapshot this long after the swap (see [`retire`]).
const RETIRE_AFTER: Duration = Duration::from_millis(50);

pub struct RoutingState {
    db: Pool,
    reconcile: snapshot::Reconcile,
    snapshot: ArcSwap<Snapshot>,
    /// Counters that outlive rebuilds (reservations, per-mount figures).
    counters: Arc<Counters>,
    geo: Geo,
    /// GeoIP locations of relays without configured coordinates.
    placed: std::sync::Mutex<HashMap<i64, ResolvedLocation>>,
    /// The number of the latest request; the refresher waits on it.
    asked: watch::Sender<u64>,
    /// The request number the current snapshot has read: a change means
    /// a rebuild finished (what a listener waiting for counts waits on).
    built: watch::Sender<u64>,
    /// One build at a time. It holds the connection kept for
    /// `PRAGMA data_version` (which changes when any other connection
    /// commits); `None` if that could not be opened.
    builder: Mutex<Option<SqliteConnection>>,
    /// The data_version the current snapshot was built after (-1: unknown).
    built_at_version: AtomicI64,
    rebuilds: AtomicU64,
}

/// A rebuild asked for: dropping it leaves the build to the refresher;
/// [`Pending::done`] waits for a build that has read everything committed
/// before the request.
#[must_use = "drop it to leave the build to the refresher, or await done()"]
pub struct Pending<'a> {
    owner: &'a RoutingState,
    ticket: u64,
}

impl Pending<'_> {
    pub async fn done(self) -> Result<()> {
        self.owner.build_covering(self.ticket).await
    }
}

impl RoutingState {
    /// Opens the `data_version` connection; the first snapshot is empty
    /// until the first [`Reason::Start`] rebuild.
    pub async fn new(
        db: Pool,
        database: &std::path::Path,
        geo: Geo,
        reconcile: snapshot::Reconcile,
    ) -> RoutingState {
        let version_conn = match store::watcher_connection(database).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the database for outside changes");
                None
            }
        };
        RoutingState {
            db,
            reconcile,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            counters: Arc::default(),
            geo,
            placed: Default::default(),
            asked: watch::Sender::new(0),
            built: watch::Sender::new(0),
            builder: Mutex::new(version_conn),
            built_at_version: AtomicI64::new(-1),
            rebuilds: AtomicU64::new(0),
        }
    }

    /// The current routing snapshot.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub(crate) fn snapshot_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn geo(&self) -> &Geo {
        &self.geo
    }

    /// Snapshots built since start.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// Changes each time a rebuild finishes.
    pub fn rebuilt(&self) -> watch::Receiver<u64> {
        self.built.subscribe()
    }

    /// The one way to ask for a rebuild: await [`Pending::done`] to have
    /// the next request see the change, or drop it and the refresher
    /// builds once for the burst.
    pub fn rebuild(&self, reason: Reason) -> Pending<'_> {
        let mut ticket = 0;
        self.asked.send_modify(|n| {
            *n += 1;
            ticket = *n;
        });
        tracing::trace!(?reason, ticket, "routing rebuild asked for");
        Pending {
            owner: self,
            ticket,
        }
    }

    /// Waits for the requests that do not wait and builds once for each
    /// burst of them. Runs until dropped.
    pub async fn refresher(&self) {
        let mut asked = self.asked.subscribe();
        loop {
            if asked.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(COALESCE).await;
            let wanted = *asked.borrow_and_update();
            if let Err(e) = self.build_covering(wanted).await {
                tracing::error!(error = %e, "routing refresh failed");
            }
        }
    }

    /// Asks for a rebuild if anything was committed that no build has
    /// read, above all by another process (import, cron poll, user
    /// commands). This process's own commits are followed by a rebuild
    /// anyway and do not count.
    pub(crate) async fn check_outside_writes(&self) -> Result<()> {
        if self.changed_since_snapshot().await? {
            drop(self.rebuild(Reason::OutsideWrite));
        }
        Ok(())
    }

    /// Whether anything was committed since the current snapshot was
    /// built (or started building), by this process or another.
    pub async fn changed_since_snapshot(&self) -> Result<bool> {
        let mut conn = self.builder.lock().await;
        let Some(now) = data_version(&mut conn).await else {
            return Ok(false);
        };
        Ok(now != self.built_at_version.load(Ordering::SeqCst))
    }

    /// Builds unless a build that started after request `ticket` has
    /// finished meanwhile.
    async fn build_covering(&self, ticket: u64) -> Result<()> {
        let mut conn = self.builder.lock().await;
        if *self.built.borrow() >= ticket {
            return Ok(());
        }
        // Everything asked for up to here is read below.
        let covers = *self.asked.borrow();
        // Noted before the rows are read: a commit in between makes the
        // version look newer than the snapshot, which costs one more
        // rebuild, never a missed change. A failed build forgets it, so
        // the next check asks again.
        let version = data_version(&mut conn).await;
        self.built_at_version
            .store(version.unwrap_or(-1), Ordering::SeqCst);
        let built = self.build().await;
        let Ok(built) = built else {
            self.built_at_version.store(-1, Ordering::SeqCst);
            return built.map(|_| ());
        };
        retire(self.snapshot.swap(Arc::new(built)));
        self.built.send_replace(covers);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn build(&self) -> Result<Snapshot> {
        let placed = lock(&self.placed).clone();
        let rec = self.reconcile;
        let rows = snapshot::Rows::read(&self.db).await?;
        let counters = self.counters.clone();
        blocking(move || snapshot::build(rows, &counters, &placed, rec)).await
    }

    /// Counts a failed poll on each relay the round could not read.
    pub(crate) fn count_poll_errors(&self, summary: &RoundSummary) {
        let snap = self.snapshot();
        let by_name: HashMap<&str, &snapshot::ServerEntry> =
            snap.servers.iter().map(|e| (e.name.as_str(), e)).collect();
        for s in summary.servers.iter().filter(|s| !s.ok) {
            if let Some(e) = by_name.get(s.name.as_str()) {
                e.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Looks up in GeoIP every enabled relay that lacks a configured
    /// location (see [`placement::place`]); the next build uses it.
    pub(crate) async fn place_relays(&self, dns_timeout: Duration) {
        if !self.geo.is_configured() {
            return;
        }
        let before = lock(&self.placed).clone();
        let placed = placement::place(&self.geo, &self.snapshot_full(), &before, dns_timeout).await;
        *lock(&self.placed) = placed;
    }
}

async fn data_version(conn: &mut Option<SqliteConnection>) -> Option<i64> {
    let conn = conn.as_mut()?;
    match store::data_version(conn).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "data_version check failed");
            None
        }
    }
}

/// Drops a replaced snapshot on a blocking thread once the requests that
/// loaded it are done: freeing thousands of entries takes milliseconds,
/// which the last redirect holding it would otherwise pay.
fn retire(old: Arc<Snapshot>) {
    tokio::task::spawn_blocking(move || {
        // A request holds a snapshot for microseconds; this is plenty.
        std::thread::sleep(RETIRE_AFTER);
        drop(old);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn owner() -> (Arc<RoutingState>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = store::connect(&path).await.unwrap();
        let geo = Geo::open(None).unwrap();
        let rec = snapshot::Reconcile {
            grace_ms: 10_000,
            ttl_s: 60,
        };
        (Arc::new(RoutingState::new(db, &path, geo, rec).await), dir)
    }

    #[tokio::test]
    async fn many_waiting_triggers_at_once_make_few_rebuilds() {
        let (routing, _dir) = owner().await;
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let r = routing.clone();
            waiting.spawn(async move { r.rebuild(Reason::Commit).done().await });
        }
        while let Some(done) = waiting.join_next().await {
            done.unwrap().unwrap();
        }
        let n = routing.rebuilds();
        // The first build starts at once; every request made while it
        // runs is read by the one after it (and requests that arrive after
        // a build started need the next), so a burst costs a handful.
        assert!((1..=5).contains(&n), "{n} rebuilds for 50 commits");
    }

    #[tokio::test]
    async fn a_waiting_trigger_always_gets_a_build_that_started_after_it() {
        let (routing, _dir) = owner().await;
        routing.rebuild(Reason::Start).done().await.unwrap();
        routing.rebuild(Reason::Commit).done().await.unwrap();
        assert_eq!(
            routing.rebuilds(),
            2,
            "a later request is never answered by an earlier build"
        );
    }

    #[tokio::test]
    async fn requests_that_do_not_wait_make_one_rebuild_per_burst() {
        let (routing, _dir) = owner().await;
        let refresher = tokio::spawn({
            let r = routing.clone();
            async move { r.refresher().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..200 {
            drop(routing.rebuild(Reason::PollBatch));
        }
        assert_eq!(
            routing.rebuilds(),
            0,
            "nobody waits, nothing is built at once"
        );
        let mut rebuilt = routing.rebuilt();
        tokio::time::timeout(COALESCE * 20, rebuilt.changed())
            .await
            .expect("the refresher builds within its coalescing wait")
            .unwrap();
        tokio::time::sleep(COALESCE * 5).await;
        assert_eq!(routing.rebuilds(), 1);
        refresher.abort();
    }

    #[tokio::test]
    async fn an_outside_commit_is_noticed_and_our_rebuild_reads_it() {
        let (routing, dir) = owner().await;
        routing.rebuild(Reason::Start).done().await.unwrap();
        assert!(!routing.changed_since_snapshot().await.unwrap());
        let other = store::connect(&dir.path().join("t.db")).await.unwrap();
        sqlx::query(
            "INSERT INTO streams (name, created_at, updated_at) VALUES ('elsewhere', 0, 0)",
        )
        .execute(&other)
        .await
        .unwrap();
        assert!(routing.changed_since_snapshot().await.unwrap());
        routing.rebuild(Reason::OutsideWrite).done().await.unwrap();
        assert!(!routing.changed_since_snapshot().await.unwrap());
        assert!(routing.snapshot().stream("elsewhere").is_some());
    }
}
