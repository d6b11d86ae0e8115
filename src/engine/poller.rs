//! The one poll round, whoever asks for it: `serve`'s scheduler, the
//! down-relay re-check, `POST /icecast_balancer/poll`, the dashboard's
//! button and the `poll` command.
//!
//! Rounds never overlap and run on the niced poll runtime
//! ([`super::poll_runtime`]). When the poller feeds a running server
//! (it was given a [`RoutingState`]) the round also places relays by
//! GeoIP, asks for a rebuild after each written batch and waits for one
//! at the end; the `poll` command gives it none and only stores results.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use super::Result;
use crate::domain::{Clock, HealthState};
use crate::poll::fetch::Fetcher;
use crate::poll::{self, FailureLog, PollSettings, RoundSummary, Which};
use crate::store::Pool;

use super::routing_state::{Reason, RoutingState};

pub struct Poller {
    db: Pool,
    fetcher: Fetcher,
    settings: PollSettings,
    clock: Clock,
    /// What the round keeps up to date when serving.
    routing: Option<Arc<RoutingState>>,
    one_round: Mutex<()>,
    rounds: AtomicU64,
    /// When each failing relay was last logged.
    failures: FailureLog,
}

impl Poller {
    pub fn new(
        db: Pool,
        settings: PollSettings,
        clock: Clock,
        routing: Option<Arc<RoutingState>>,
    ) -> anyhow::Result<Arc<Poller>> {
        super::install_crypto();
        // Half the descriptors may go to idle relay connections; the rest
        // stay for listeners, the database and the round's new sockets.
        let keep_alive_max = crate::fd_limit::current().map_or(512, |(soft, _)| soft as usize / 2);
        let fetcher = Fetcher::new(settings.timeout, settings.max_body, keep_alive_max)?;
        Ok(Arc::new(Poller {
            db,
            fetcher,
            settings,
            clock,
            routing,
            one_round: Mutex::new(()),
            rounds: AtomicU64::new(0),
            failures: FailureLog::default(),
        }))
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Full rounds run since start.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Runs one round over every relay now, after the one running (if
    /// any). A relay's GeoIP place is refreshed alongside, so a relay that
    /// moved (new DNS, new database) is placed anew at every poll.
    pub async fn poll(self: &Arc<Self>) -> Result<RoundSummary> {
        let this = self.clone();
        super::poll_runtime::run(async move { this.round().await }).await?
    }

    /// Polls only the relays judged down, so a relay's return is used
    /// within seconds; nothing when a full round is running (it asks them
    /// anyway) or none is down.
    pub async fn recheck_down(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        super::poll_runtime::run(async move { this.recheck_down_here().await }).await?
    }

    async fn round(&self) -> Result<RoundSummary> {
        let _one_round_at_a_time = self.one_round.lock().await;
        let routing = self.routing.as_deref();
        let place = async {
            if let Some(r) = routing {
                r.place_relays(self.settings.timeout).await;
            }
        };
        let (summary, ()) = tokio::join!(self.run(Which::All), place);
        let summary = summary?;
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = routing {
            r.count_poll_errors(&summary);
            r.rebuild(Reason::PollRound).done().await?;
        }
        Ok(summary)
    }

    async fn recheck_down_here(&self) -> Result<()> {
        let Some(routing) = self.routing.as_deref() else {
            return Ok(());
        };
        let any_down = routing
            .snapshot()
            .servers
            .iter()
            .any(|s| s.enabled && s.health.state == HealthState::Down);
        if !any_down {
            return Ok(());
        }
        let Ok(_one_round_at_a_time) = self.one_round.try_lock() else {
            return Ok(());
        };
        self.run(Which::Down).await?;
        routing.rebuild(Reason::PollRound).done().await
    }

    /// The round itself; each written batch but the last asks for a
    /// rebuild (the caller waits for one after the last).
    async fn run(&self, which: Which) -> Result<RoundSummary> {
        let routing = self.routing.as_deref();
        let on_written = move || {
            if let Some(r) = routing {
                drop(r.rebuild(Reason::PollBatch));
            }
        };
        let summary = poll::run_round_of(
            &self.db,
            &self.fetcher,
            &self.settings,
            &self.clock,
            &self.failures,
            &on_written,
            which,
        )
        .await?;
        Ok(summary)
    }
}
