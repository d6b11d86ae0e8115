//! The core without the web layer: what the `poll` command uses.

use std::time::Duration;

use icecast_balancer::config_file;
use icecast_balancer::domain::Clock;
use icecast_balancer::engine::Poller;
use icecast_balancer::poll::PollSettings;
use icecast_balancer::store::{self, changes::Writer};

use crate::support::app::one_relay_config;
use crate::support::fake_relay::FakeRelay;

/// The `poll` command's path: a poller over a bare store (no snapshot, no
/// GeoIP, no listener, no web state) runs a round and stores what it read.
#[tokio::test]
async fn a_poller_without_routing_state_stores_its_round() {
    let relay = FakeRelay::start(&[("/live.mp3", 7, Some(100))]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = store::connect(&dir.path().join("p.db")).await.unwrap();
    let file = config_file::parse(&one_relay_config("a", &relay.url, "")).unwrap();
    config_file::apply(&Writer::new(db.clone()), &file)
        .await
        .unwrap();
    let settings = PollSettings {
        timeout: Duration::from_secs(2),
        ..PollSettings::default()
    };
    let poller = Poller::new(db.clone(), settings, Clock::system(), None).unwrap();

    let summary = poller.poll().await.unwrap();
    assert_eq!((summary.servers.len(), summary.failed()), (1, 0));
    assert_eq!(summary.servers[0].listeners, 7);
    assert_eq!(poller.rounds(), 1);
    let stored: i64 = sqlx::query_scalar("SELECT listeners FROM mount_status")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 7, "the round's results are in the store");
    // The down-relay re-check belongs to a running server: without
    // routing state there is nothing to re-check against.
    poller.recheck_down().await.unwrap();
}
