//! The cluster under the faults a station meets: clocks that disagree,
//! long splits, one instance cut off, evicted or garbled Redis data. Each
//! against a real redis-server; see `bench/cluster.sh` for the flash-crowd
//! runs that do not fit a test.

use std::sync::Arc;
use std::time::Duration;

use icecast_balancer::cluster::Mode;
use icecast_balancer::cluster::auth::Secret;
use icecast_balancer::cluster::{Cluster, ClusterSettings};
use icecast_balancer::domain::{Clock, Slug};
use icecast_balancer::store::changes;
use icecast_balancer::store::tokens::Scope;
use reqwest::StatusCode;

use crate::cluster::{
    burst_over, export, join_all, member, nothing_held, now_s, reaches, relay_config, server_url,
    shared_relay, user_hash, view,
};
use crate::support::app::TestApp;
use crate::support::eventually;
use crate::support::proxy::Proxy;
use crate::support::redis::Redis;

fn instance_with(url: &str, name: &str, clock: Clock, forget_after: Duration) -> Arc<Cluster> {
    let settings = ClusterSettings {
        forget_after,
        ..ClusterSettings::new(url, "test", name)
    };
    Cluster::new(settings, clock).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Redis's own time, in ms.
fn redis_now_ms(redis: &Redis) -> i64 {
    let t: Vec<String> = redis.cmd(&["TIME"]);
    t[0].parse::<i64>().unwrap() * 1000 + t[1].parse::<i64>().unwrap() / 1000
}

/// How many of `tries` asks `c` grants on `free` slots, its own count
/// going up with each, on a poll whose window starts at `from_s`.
async fn grants(c: &Arc<Cluster>, free: u64, from_s: u64, own: &mut u64, tries: u64) -> u64 {
    let mut given = 0;
    for _ in 0..tries {
        if c.take(&view(free, *own, from_s)).await {
            *own += 1;
            given += 1;
        }
    }
    given
}

#[tokio::test]
async fn clocks_ten_seconds_apart_never_overfill() {
    let Some(redis) = Redis::start() else { return };
    let clocks = [
        Clock::off_by_ms(10_000),
        Clock::system(),
        Clock::off_by_ms(-10_000),
    ];
    let all: Vec<_> = ["ahead", "right", "behind"]
        .iter()
        .zip(&clocks)
        .map(|(n, c)| instance_with(&redis.url, n, c.clone(), HOUR))
        .collect();
    join_all(&all, 3).await;
    // Each polled 5 s ago by its own clock.
    let from: Vec<u64> = clocks.iter().map(|c| c.now_s() - 5).collect();
    let free = 200;
    let mut own = [0u64; 3];
    let mut first_no = None;
    let mut total = 0;
    for i in 0..2000 {
        let k = i % 3;
        if all[k].take(&view(free, own[k], from[k])).await {
            own[k] += 1;
            total += 1;
        } else if first_no.is_none() {
            first_no = Some(total);
        }
    }
    eprintln!("skewed clocks: {first_no:?} before the first refusal, {total} in all, {own:?}");
    assert!(total <= free, "{total} redirects into {free} free slots");
    assert!(first_no.unwrap() * 100 >= free * 95, "{first_no:?}");
    assert!(own.iter().all(|&n| n > 0), "{own:?}");
}

#[tokio::test]
async fn a_split_holds_its_share_for_hours_then_stops() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let clock = Clock::system();
    let a = instance_with(&redis.url, "a", Clock::system(), 2 * HOUR);
    let b = instance_with(&redis.url, "b", clock.clone(), 2 * HOUR);
    join_all(&[a.clone(), b.clone()], 2).await;
    redis.stop();
    b.beat(&nothing_held).await;
    assert_eq!(b.status().mode, "split");
    for (after, label) in [
        (Duration::from_secs(60), "a minute"),
        (Duration::from_secs(540), "ten minutes"),
        (Duration::from_secs(3000), "an hour"),
    ] {
        clock.advance(after);
        b.beat(&nothing_held).await;
        // A poll just now shows 20 free: b's share is 10, however long
        // since it last heard of a.
        let mut own = 0;
        let given = grants(&b, 20, clock.now_s() - 1, &mut own, 30).await;
        assert_eq!(given, 10, "after {label}: {:?}", b.status());
        assert!(!b.status().split_expired);
    }
    // Split as long as the others may take to forget it: nothing more on
    // its own, and it says so.
    clock.advance(HOUR);
    let mut own = 0;
    assert_eq!(grants(&b, 20, clock.now_s() - 1, &mut own, 5).await, 0);
    assert!(b.status().split_expired);
}

#[tokio::test]
async fn one_instance_cut_off_for_an_hour_then_a_burst_never_overfills() {
    let Some(redis) = Redis::start_tcp() else {
        return;
    };
    let proxy = Proxy::start(&redis.url).await;
    let b_clock = Clock::system();
    let a = instance_with(&redis.url, "a", Clock::system(), 2 * HOUR);
    let b = instance_with(&proxy.url, "b", b_clock.clone(), 2 * HOUR);
    join_all(&[a.clone(), b.clone()], 2).await;
    proxy.cut();
    b.beat(&nothing_held).await;
    assert_eq!(b.status().mode, "split");
    // An hour passes on every clock: b's last heartbeat in Redis is that
    // old by Redis's time, and b's own clock has moved on as much.
    let hour_ago = redis_now_ms(&redis) - 3_540_000;
    let _: () = redis.cmd(&["HSET", "test:members", "b", &format!("{hour_ago} ")]);
    b_clock.advance(Duration::from_secs(3540));
    // `a` restarted meanwhile: all it knows of `b` is what Redis says.
    drop(a);
    let a = instance_with(&redis.url, "a", Clock::system(), 2 * HOUR);
    a.beat(&nothing_held).await;
    a.beat(&nothing_held).await;
    let (a_status, b_status) = (a.status(), b.status());
    assert_eq!(a_status.mode, "shared", "{a_status:?}");
    assert_eq!(a_status.members.len(), 2, "{a_status:?}");
    assert!(a_status.members.iter().any(|m| m.name == "b" && !m.present));
    // A burst after polls on both sides showing 20 free.
    let (mut own_a, mut own_b) = (0, 0);
    let mut total = 0;
    for _ in 0..30 {
        total += grants(&a, 20, now_s() - 1, &mut own_a, 1).await;
        total += grants(&b, 20, b_clock.now_s() - 1, &mut own_b, 1).await;
    }
    eprintln!("after an hour cut off: a {own_a}, b {own_b}; {b_status:?}");
    assert!(
        total <= 20,
        "{total} into 20 free slots (a {own_a}, b {own_b})"
    );
    assert_eq!((own_a, own_b), (10, 10));
}

#[tokio::test]
async fn leased_slots_are_still_handed_out_when_redis_goes_away() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = instance_with(&redis.url, "a", Clock::system(), HOUR);
    let b = instance_with(&redis.url, "b", Clock::system(), HOUR);
    join_all(&[a.clone(), b.clone()], 2).await;
    let from = now_s() - 5;
    let mut own = 0;
    assert_eq!(grants(&a, 200, from, &mut own, 1).await, 1);
    redis.stop();
    // The lease (a block of 25 of 200 among 2) is counted everywhere
    // already: handed out with no window of refusals.
    let more = grants(&a, 200, from, &mut own, 40).await;
    assert_eq!(a.status().mode, "split", "{:?}", a.status());
    assert!(more >= 10, "only {more} from the lease after the split");
    assert!(more < 40, "past its lease before a fresh poll: {more}");
}

#[tokio::test]
async fn counters_never_expire_and_losing_them_is_a_split_not_free_slots() {
    let Some(redis) = Redis::start() else { return };
    let a = instance_with(&redis.url, "a", Clock::system(), HOUR);
    let b = instance_with(&redis.url, "b", Clock::system(), HOUR);
    join_all(&[a.clone(), b.clone()], 2).await;
    assert_eq!(a.status().redis_warning, None, "noeviction by default");
    let from = now_s() - 5;
    let mut own = 0;
    assert_eq!(grants(&a, 10, from, &mut own, 3).await, 3);
    // A volatile-* policy evicts only keys with an expiry: there are none.
    let keys: Vec<String> = redis.cmd(&["KEYS", "test:*"]);
    assert!(keys.contains(&"test:slots".to_string()), "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis.cmd(&["TTL", k]);
        assert_eq!(ttl, -1, "{k} expires");
    }
    // An allkeys-* policy may evict the counters; they take the
    // generation with them, so the loss is noticed: a split, never free.
    let _: () = redis.cmd(&["DEL", "test:slots"]);
    assert!(!b.take(&view(10, 0, from)).await);
    assert_eq!(b.status().mode, "split");
    // An instance joining a Redis that may evict says so.
    let _: () = redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let c = instance_with(&redis.url, "c", Clock::system(), HOUR);
    c.beat(&nothing_held).await;
    let warning = c.status().redis_warning.unwrap_or_default();
    assert!(warning.contains("allkeys-lru"), "{warning:?}");
}

#[tokio::test]
async fn garbage_in_the_members_hash_cannot_split_the_cluster() {
    let Some(redis) = Redis::start() else { return };
    let a = instance_with(&redis.url, "a", Clock::system(), HOUR);
    let b = instance_with(&redis.url, "b", Clock::system(), HOUR);
    join_all(&[a.clone(), b.clone()], 2).await;
    for (field, value) in [("x", "notanumber"), ("y\u{1b}[31m", "1"), ("", "")] {
        let _: () = redis.cmd(&["HSET", "test:members", field, value]);
    }
    for c in [&a, &b] {
        c.beat(&nothing_held).await;
        let st = c.status();
        assert_eq!(st.mode, "shared", "{st:?}");
        assert_eq!(st.members.len(), 2, "{st:?}");
    }
    // Shared still: 10 free are 10 redirects, not 2 × a share.
    let from = now_s() - 5;
    let (mut own_a, mut own_b) = (0, 0);
    let mut total = 0;
    for _ in 0..20 {
        total += grants(&a, 10, from, &mut own_a, 1).await;
        total += grants(&b, 10, from, &mut own_b, 1).await;
    }
    assert_eq!(total, 10);
}

async fn member_with(redis: &Redis, name: &str, secret: Option<Secret>) -> TestApp {
    let cluster = ClusterSettings {
        secret,
        ..ClusterSettings::new(&redis.url, "it", name)
    };
    TestApp::spawn_with(move |s| s.cluster = Some(cluster)).await
}

/// Writes a configuration record straight into Redis, as anyone with
/// write access to it could.
fn forge(redis: &Redis, object: &str, body: &str) {
    let v: i64 = redis.cmd(&["INCR", "it:config:version"]);
    let value = format!("{v}\nmallory\nadmin\n\n+{body}");
    let _: () = redis.cmd(&["HSET", "it:config:objects", object, &value]);
    let _: () = redis.cmd(&["ZADD", "it:config:log", &v.to_string(), object]);
}

#[tokio::test]
async fn records_forged_in_redis_are_refused_with_a_cluster_secret() {
    let Some(redis) = Redis::start() else { return };
    let secret = Secret::new(b"a cluster secret, long enough");
    let (a, b) = tokio::join!(
        member_with(&redis, "a", Some(secret.clone())),
        member_with(&redis, "b", Some(secret))
    );
    a.import(&relay_config("relay", "http://192.0.2.1:8000"))
        .await;
    reaches(&b, "the relay", |f| server_url(f, "relay").is_some()).await;
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    forge(&redis, "user:eve", hash);
    forge(
        &redis,
        "server:relay",
        r#"{"name":"relay","url":"http://203.0.113.66:8000"}"#,
    );
    // A change made after them reaches b: b has read past them.
    a.import(&relay_config("relay-2", "http://192.0.2.2:8000"))
        .await;
    reaches(&b, "the later change", |f| {
        server_url(f, "relay-2").is_some()
    })
    .await;
    for app in [&a, &b] {
        assert_eq!(user_hash(app, "eve").await, None, "{}", app.addr);
        let url = server_url(&export(app).await, "relay");
        assert_eq!(url.as_deref(), Some("http://192.0.2.1:8000"));
    }
}

async fn in_mode(app: &TestApp, shared: bool) {
    let c = app.state.cluster().unwrap().clone();
    let ok = eventually(Duration::from_secs(10), async || {
        (c.mode() == Mode::Shared) == shared
    });
    assert!(ok.await, "{:?}", c.status());
}

#[tokio::test]
async fn configuration_changes_wait_for_redis_instead_of_being_merged_later() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = member_with(&redis, "a", None).await;
    in_mode(&a, true).await;
    let secret = icecast_balancer::users::api_token_secret();
    let mut tx = a.state.begin("test").await.unwrap();
    let name = Slug::parse("deploy").unwrap();
    changes::create_token(&mut tx, &name, Scope::Write, &[], &secret)
        .await
        .unwrap();
    a.state.commit(tx).await.unwrap();
    let create = async || {
        let body = r#"{"name": "fra-1", "url": "http://192.0.2.1:8000"}"#;
        let r = a
            .client
            .post(a.url("/api/v1/servers"))
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    redis.stop();
    in_mode(&a, false).await;
    let (status, body) = create().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("cannot reach Redis"), "{body}");
    assert!(export(&a).await.servers.is_empty(), "nothing written");
    redis.restart();
    in_mode(&a, true).await;
    let (status, body) = create().await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn the_split_share_follows_the_polls_after_a_burst_that_never_arrived() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = tokio::join!(member(&redis, "a"), member(&redis, "b"));
    let relay = shared_relay(&[&a, &b], 20).await;
    let (_, reserved) = burst_over(&[&a, &b], 15).await;
    assert_eq!(reserved, 20);
    redis.stop();
    for app in [&a, &b] {
        in_mode(app, false).await;
    }
    // None of the 20 came: polls after the grace show 20 free again, for
    // longer than a minute (members are not forgotten meanwhile).
    relay.set_listeners("/live.mp3", 0);
    for _ in 0..4 {
        for app in [&a, &b] {
            app.advance(Duration::from_secs(20));
            app.poll().await;
        }
    }
    for app in [&a, &b] {
        let status = app.api_status().await;
        assert_eq!(status["cluster"]["slots"], "split", "{status}");
    }
    let (_, split) = burst_over(&[&a, &b], 30).await;
    assert_eq!(split, 20, "half each of the 20 free by the polls, no more");
}

/// A database that has already been used on its own: `servers` imported.
async fn used_database(dir: &tempfile::TempDir, servers: &str) -> std::path::PathBuf {
    let path = dir.path().join("own.db");
    let db = icecast_balancer::store::connect(&path).await.unwrap();
    let writer = changes::Writer::new(db.clone());
    let file = icecast_balancer::config_file::parse(servers).unwrap();
    icecast_balancer::config_file::apply(&writer, &file)
        .await
        .unwrap();
    db.close().await;
    path
}

async fn joining(
    redis: &Redis,
    name: &str,
    database: std::path::PathBuf,
    replace: bool,
) -> TestApp {
    let cluster = ClusterSettings {
        join_replace_local: replace,
        ..ClusterSettings::new(&redis.url, "it", name)
    };
    TestApp::spawn_with(move |s| {
        s.database = database;
        s.cluster = Some(cluster);
    })
    .await
}

#[tokio::test]
async fn a_new_instance_with_its_own_configuration_joins_only_when_told_which_wins() {
    let Some(redis) = Redis::start() else { return };
    let a = member_with(&redis, "a", None).await;
    a.import(&relay_config("fra", "http://192.0.2.1:8000"))
        .await;
    let shared = eventually(Duration::from_secs(10), async || {
        redis.cmd::<bool>(&["HEXISTS", "it:config:objects", "server:fra"])
    });
    assert!(shared.await);
    let own = format!(
        "{}{}",
        relay_config("own", "http://192.0.2.7:8000"),
        relay_config("fra", "http://192.0.2.99:8000")
    );
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let refused = joining(&redis, "refused", used_database(&d1, &own).await, false).await;
    in_mode(&refused, true).await;
    // Told to let the cluster win, another such instance takes the
    // cluster's configuration and drops its own.
    let replaced = joining(&redis, "replaced", used_database(&d2, &own).await, true).await;
    let cluster = export(&a).await;
    reaches(&replaced, "the cluster's configuration", |f| {
        f.servers == cluster.servers
    })
    .await;
    // Neither pushed its own objects to the others.
    let after = export(&a).await;
    assert_eq!(server_url(&after, "own"), None, "{after:?}");
    assert_eq!(
        server_url(&after, "fra").as_deref(),
        Some("http://192.0.2.1:8000")
    );
    // The refused one kept its own configuration, untouched.
    let kept = export(&refused).await;
    assert_eq!(
        server_url(&kept, "fra").as_deref(),
        Some("http://192.0.2.99:8000")
    );
    assert!(server_url(&kept, "own").is_some());
}
