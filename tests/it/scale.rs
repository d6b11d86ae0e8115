//! What one relay or a large network can cost the database: the cap on
//! mounts stored per relay, history for configured mounts only and kept as
//! peaks per bucket, and pruning that gives the space back.

use crate::support::app::{TestApp, one_relay_config};
use crate::support::fake_relay::FakeRelay;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.state.db().acquire().await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

async fn one_relay(mounts: &[(&str, u32, Option<u32>)]) -> (TestApp, FakeRelay) {
    let relay = FakeRelay::start(mounts).await;
    let app = TestApp::spawn().await;
    app.import(&one_relay_config("big", &relay.url, "")).await;
    (app, relay)
}

#[tokio::test]
async fn a_relay_listing_thousands_of_mounts_stores_its_configured_one_and_a_capped_rest() {
    let names: Vec<String> = (0..3000).map(|i| format!("/extra-{i}.mp3")).collect();
    let mut listed: Vec<(&str, u32, Option<u32>)> =
        names.iter().map(|n| (n.as_str(), 1, None)).collect();
    // Listed last, so a cap that kept only the first mounts would lose it.
    listed.push(("/live.mp3", 7, Some(100)));
    let (app, relay) = one_relay(&listed).await;
    let summary = app.poll().await;
    assert!(summary.servers[0].ok, "{:?}", summary.servers[0].error);

    let stored = count(&app, "SELECT COUNT(*) FROM mount_status").await;
    let cap = app.state.settings().poll.max_relay_mounts as i64;
    assert_eq!(stored, cap + 1, "the cap plus the configured mount");
    let live = count(
        &app,
        "SELECT listeners FROM mount_status WHERE mount = '/live.mp3'",
    )
    .await;
    assert_eq!(live, 7);
    // History only for the configured mount, however many the relay lists.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_1m").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_5m").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_1h").await, 1);
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", relay.url));
}

#[tokio::test]
async fn history_keeps_the_peak_of_each_bucket_in_one_row() {
    let (app, relay) = one_relay(&[("/live.mp3", 5, None), ("/other.mp3", 9, None)]).await;
    app.poll().await;
    relay.set_listeners("/live.mp3", 30);
    app.poll().await;
    relay.set_listeners("/live.mp3", 12);
    app.poll().await;
    // Three polls within a bucket: one row per rollup, holding the peak.
    // (A poll straddling a 5-minute boundary makes two rows, both <= 30.)
    let rows = count(&app, "SELECT COUNT(*) FROM history_5m").await;
    assert!((1..=2).contains(&rows), "{rows} rows");
    assert_eq!(
        count(&app, "SELECT MAX(listeners) FROM history_5m").await,
        30
    );
    assert_eq!(
        count(&app, "SELECT MAX(listeners) FROM history_1h").await,
        30
    );
}

#[tokio::test]
async fn old_buckets_are_pruned_and_deleted_mounts_take_their_history() {
    let (app, _relay) = one_relay(&[("/live.mp3", 5, None)]).await;
    app.poll().await;
    let mut conn = app.state.db().acquire().await.unwrap();
    let now = icecast_balancer::store::now_ms();
    let day = 24 * 3600 * 1000;
    for (table, at) in [
        ("history_5m", now - 2 * day),
        ("history_1h", now - 30 * day),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (mount_id, bucket, listeners) SELECT id, {at}, 1 FROM mounts"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let gone = icecast_balancer::store::status::prune_history(&mut conn, now, now - 7 * day)
        .await
        .unwrap();
    assert_eq!(gone, 2);
    drop(conn);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_5m").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_1h").await, 1);
    // The file is in incremental-vacuum mode, so pruning returns pages.
    assert_eq!(count(&app, "PRAGMA auto_vacuum").await, 2);

    app.import("[[streams]]\nname = \"live\"\nmounts = []\n")
        .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_5m").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM history_1h").await, 0);
}

#[tokio::test]
async fn a_round_over_many_relays_rebuilds_routing_a_few_times_not_once_per_relay() {
    let mut relays = Vec::new();
    let mut config = String::new();
    for i in 0..40 {
        let r = FakeRelay::start(&[("/live.mp3", i, None)]).await;
        config.push_str(&format!(
            "[[servers]]\nname = \"r{i}\"\nurl = \"{}\"\n",
            r.url
        ));
        relays.push(r);
    }
    let mounts: Vec<String> = (0..40)
        .map(|i| format!("{{ server = \"r{i}\", mount = \"/live.mp3\" }}"))
        .collect();
    config.push_str(&format!(
        "[[streams]]\nname = \"live\"\nmounts = [{}]\n",
        mounts.join(", ")
    ));
    let app = TestApp::spawn_with(|s| s.outside_writer_check = WATCH).await;
    app.import(&config).await;
    // A watcher check that met the import's commit before its rebuild asks
    // for one more: let it happen before counting.
    tokio::time::sleep(WATCH * 6).await;

    let rebuilds = || app.state.routing_state().rebuilds();
    let before = rebuilds();
    let summary = app.poll().await;
    assert_eq!(summary.failed(), 0);
    let during = rebuilds() - before;
    assert!(
        (1..=4).contains(&during),
        "{during} rebuilds for one round over 40 relays"
    );
    // The rebuild at the end of the round has read all its commits: the
    // watcher's question has the answer "nothing new"...
    assert!(
        !app.state.changed_since_snapshot().await.unwrap(),
        "the round's own commits look like outside changes"
    );
    // ...and in six of its checks (and the refresher's coalescing wait) no
    // rebuild follows.
    tokio::time::sleep(WATCH * 6).await;
    assert_eq!(
        rebuilds() - before,
        during,
        "the watcher rebuilt after our own commits"
    );
}

/// The outside-writer watcher's interval in these tests (500 ms by default).
const WATCH: std::time::Duration = std::time::Duration::from_millis(50);

#[tokio::test]
async fn a_stream_history_gives_each_relay_its_peaks_in_time_order() {
    let (app, _relay) = one_relay(&[("/live.mp3", 5, None)]).await;
    let mut conn = app.state.db().acquire().await.unwrap();
    let five = 5 * 60 * 1000;
    let base = 100 * 2 * five;
    // Inserted out of order; two 5-minute peaks fall in each 10-minute bucket.
    for (at, listeners) in [
        (base + 3 * five, 4),
        (base, 5),
        (base + five, 9),
        (base + 2 * five, 3),
    ] {
        sqlx::query(
            "INSERT INTO history_5m (mount_id, bucket, listeners) SELECT id, ?, ? FROM mounts",
        )
        .bind(at)
        .bind(listeners)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let stream: i64 = sqlx::query_scalar("SELECT id FROM streams")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let points =
        icecast_balancer::store::status::stream_history_by_server(&mut conn, stream, 0, 2 * five)
            .await
            .unwrap();
    let got: Vec<(i64, i64)> = points.iter().map(|p| (p.at, p.listeners)).collect();
    assert_eq!(got, vec![(base, 9), (base + 2 * five, 4)]);
}

/// A million distinct clients (10,000 new ones a second for 100 s, the
/// default 5 s grace, a sweep every 2 s as the sweeper loop does): the
/// per-client book never holds more than one grace window and one sweep
/// interval of clients. (`cargo bench --bench client_book` measures the
/// bytes it holds.)
#[test]
fn the_client_book_stays_flat_over_a_million_clients() {
    use icecast_balancer::routing::clients::{ClientBook, agent_hash};
    use std::net::{IpAddr, Ipv6Addr};

    const PER_SECOND: u64 = 10_000;
    const GRACE_MS: i64 = 5_000;
    const SWEEP_MS: i64 = 2_000;
    let book = ClientBook::default();
    let agent = agent_hash(b"VLC/3.0.20");
    let mut peak = 0;
    for n in 0..1_000_000u64 {
        let now_ms = (n * 1000 / PER_SECOND) as i64;
        let ip = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n)));
        book.record(ip, 1, agent, 7, now_ms);
        if (n + 1) % (PER_SECOND * SWEEP_MS as u64 / 1000) == 0 {
            peak = peak.max(book.len());
            book.sweep(now_ms, GRACE_MS);
        }
    }
    // The clients of the grace window (its first millisecond included)
    // and of one sweep interval.
    let window = (PER_SECOND * (GRACE_MS + SWEEP_MS + 1) as u64 / 1000) as usize;
    assert!(peak <= window, "{peak} > {window}");
    book.sweep(i64::MAX / 2, GRACE_MS);
    assert!(book.is_empty());
}
