//! Several instances on one real redis-server: shared slot leases, the
//! split when Redis goes away, and rejoining when it returns.

mod support;

use std::sync::Arc;

use icecast_balancer::cluster::slots::MountView;
use icecast_balancer::cluster::{Cluster, ClusterSettings, Held};
use icecast_balancer::store::now_ms;
use support::redis::Redis;

fn instance(redis: &Redis, name: &str) -> Arc<Cluster> {
    let settings = ClusterSettings {
        url: redis.url.clone(),
        prefix: "test".into(),
        instance: name.into(),
    };
    Cluster::new(settings, now_ms).unwrap()
}

fn nothing_held() -> Vec<Held> {
    Vec::new()
}

/// A mount with `free` slots by the last poll, as one instance sees it
/// after `own` redirects of its own.
fn view(free: u64, own: u64, counts_from_s: u64) -> MountView<'static> {
    MountView {
        id: 1,
        server: "relay-1",
        mount: "/live.mp3",
        mount_free: Some(free),
        server_free: None,
        counts_from_s,
        own_mount: own,
        own_server: own,
    }
}

fn now_s() -> u64 {
    (now_ms() / 1000) as u64
}

async fn joined(names: &[&str], redis: &Redis) -> Vec<Arc<Cluster>> {
    let all: Vec<_> = names.iter().map(|n| instance(redis, n)).collect();
    // Twice: the second round sees every member registered.
    for _ in 0..2 {
        for c in &all {
            c.beat(&nothing_held).await;
        }
    }
    for c in &all {
        assert_eq!(c.status().mode, "shared", "{:?}", c.status());
        assert_eq!(c.status().members.len(), names.len());
    }
    all
}

/// Round-robin over the instances until one says no; returns the
/// redirects each gave before that and whether any gave more afterwards.
async fn burst(all: &[Arc<Cluster>], free: u64, from_s: u64, own: &mut [u64]) -> u64 {
    let mut given = 0;
    for i in 0.. {
        let k = i % all.len();
        if !all[k].take(&view(free, own[k], from_s)).await {
            break;
        }
        own[k] += 1;
        given += 1;
    }
    given
}

#[tokio::test]
async fn a_burst_over_three_instances_uses_the_free_slots_and_never_more() {
    let Some(redis) = Redis::start() else { return };
    let all = joined(&["a", "b", "c"], &redis).await;
    let free = 200;
    let from = now_s().saturating_sub(5);
    let mut own = vec![0; 3];
    let before_first_no = burst(&all, free, from, &mut own).await;
    // Keep asking everywhere: nothing more may be given.
    let mut later = 0;
    for _ in 0..50 {
        for (k, c) in all.iter().enumerate() {
            if c.take(&view(free, own[k], from)).await {
                own[k] += 1;
                later += 1;
            }
        }
    }
    let total = before_first_no + later;
    eprintln!(
        "burst: {before_first_no} of {free} before the first refusal, {total} in all, per instance {own:?}"
    );
    assert!(total <= free, "{total} redirects into {free} free slots");
    assert!(
        before_first_no * 100 >= free * 95,
        "only {before_first_no} of {free} before the first refusal"
    );
    assert!(own.iter().all(|&n| n > 0));
}

#[tokio::test]
async fn one_busy_instance_may_use_nearly_everything() {
    let Some(redis) = Redis::start() else { return };
    let all = joined(&["a", "b"], &redis).await;
    let from = now_s().saturating_sub(5);
    let mut own = vec![0; 1];
    let given = burst(&all[..1], 50, from, &mut own).await;
    assert_eq!(given, 50, "the idle instance holds no slots");
}

#[tokio::test]
async fn without_redis_each_instance_gives_only_its_share_and_rejoins_by_itself() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let all = joined(&["a", "b"], &redis).await;
    let free = 20;
    let from = now_s().saturating_sub(5);
    let mut own = vec![0; 2];
    for k in [0, 1, 0, 1] {
        assert!(all[k].take(&view(free, own[k], from)).await);
        own[k] += 1;
    }
    redis.stop();
    // The next lease fails: split. Still on the poll from before the split,
    // no instance may give anything more on its own.
    for c in &all {
        c.beat(&nothing_held).await;
        assert_eq!(c.status().mode, "split");
        assert!(c.status().last_error.is_some());
    }
    assert!(!all[0].take(&view(free, own[0], from)).await);
    // A poll that started after every lease ended: 20 - 4 free by it, 8 each.
    let since_ms = all
        .iter()
        .map(|c| c.status().since_ms.unwrap())
        .max()
        .unwrap();
    let fresh = (since_ms as u64 + 3000).div_ceil(1000);
    let polled_free = 16;
    let mut split_own = vec![0; 2];
    let mut given = 0;
    for _ in 0..20 {
        for (k, c) in all.iter().enumerate() {
            if c.take(&view(polled_free, split_own[k], fresh)).await {
                split_own[k] += 1;
                given += 1;
            }
        }
    }
    assert_eq!(split_own, vec![8, 8]);
    assert_eq!(given, 16);

    // Redis is back (empty): each instance re-adds what it holds, then
    // leases again against the shared count.
    redis.restart();
    let held = |n: u64| {
        move || {
            vec![Held {
                server: "relay-1".into(),
                mount: "/live.mp3".into(),
                count: n,
            }]
        }
    };
    all[0].beat(&held(8)).await;
    all[1].beat(&held(8)).await;
    for c in &all {
        c.beat(&nothing_held).await;
        assert_eq!(c.status().mode, "shared", "{:?}", c.status());
    }
    // 20 free at a poll before all that: the 16 re-added leave 4.
    let mut after = 0;
    for _ in 0..10 {
        for (k, c) in all.iter().enumerate() {
            if c.take(&view(20, split_own[k], from)).await {
                split_own[k] += 1;
                after += 1;
            }
        }
    }
    assert_eq!(after, 4);
}

#[tokio::test]
async fn redis_losing_its_data_is_noticed_and_joined_anew() {
    let Some(redis) = Redis::start() else { return };
    let all = joined(&["a", "b"], &redis).await;
    let from = now_s().saturating_sub(5);
    assert!(all[0].take(&view(10, 0, from)).await);
    let _: () = redis.cmd(&["FLUSHALL"]);
    // The next lease sees a new generation: no slot from the lost count.
    assert!(!all[1].take(&view(10, 0, from)).await);
    assert_eq!(all[1].status().mode, "split");
    all[1].beat(&nothing_held).await;
    assert_eq!(all[1].status().mode, "shared");
    // `a` has not registered again yet: its share (5 of 10) is held back.
    let mut given = 0;
    while all[1].take(&view(10, given, from)).await {
        given += 1;
    }
    assert_eq!(given, 5);
}

#[tokio::test]
async fn a_tcp_url_works_too() {
    let Some(redis) = Redis::start_tcp() else {
        return;
    };
    assert!(redis.url.starts_with("redis://127.0.0.1:"));
    let all = joined(&["a"], &redis).await;
    assert!(all[0].take(&view(1, 0, now_s())).await);
    assert!(!all[0].take(&view(1, 1, now_s())).await);
}
