//! The redirect path's side of the cluster: a slot reserved locally is
//! kept only if the cluster's shared count allows it too.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cluster::slots::MountView;
use crate::cluster::{Cluster, Held};
use crate::routing::Snapshot;

/// Keeps the local reservation just made on `mount` only if the cluster
/// has a slot for it too. On refusal the local reservation is taken back
/// and the mount counts as full here for the rest of the second, so the
/// next choice goes elsewhere instead of asking Redis again.
pub async fn confirm(
    cluster: Option<&Arc<Cluster>>,
    snap: &Snapshot,
    mount: usize,
    now_s: u64,
    ttl_s: u64,
) -> bool {
    let Some(cluster) = cluster else {
        return true;
    };
    if cluster.take(&view(snap, mount, now_s, ttl_s)).await {
        return true;
    }
    let m = &snap.mounts[mount];
    m.counters.ledger.remove(now_s);
    snap.servers[m.server].counters.ledger.remove(now_s);
    m.counters
        .shared_full_until_s
        .fetch_max(now_s + 1, Ordering::Relaxed);
    false
}

/// What the cluster needs to know of a mount just reserved locally.
fn view(snap: &Snapshot, mount: usize, now_s: u64, ttl_s: u64) -> MountView<'_> {
    let m = &snap.mounts[mount];
    let s = &snap.servers[m.server];
    let (mount_ring, server_ring) = (m.counters.ledger.ring(), s.counters.ledger.ring());
    MountView {
        id: m.id,
        server: &s.name,
        mount: &m.path,
        mount_free: m
            .max
            .map(|max| u64::from(max).saturating_sub(u64::from(m.listeners))),
        server_free: s
            .max_listeners
            .map(|max| u64::from(max).saturating_sub(s.listeners)),
        counts_from_s: mount_ring.window_start(now_s, ttl_s),
        // Without the reservation just made.
        own_mount: mount_ring.count(now_s, ttl_s).saturating_sub(1),
        own_server: server_ring.count(now_s, ttl_s).saturating_sub(1),
    }
}

/// This instance's outstanding reservations on limited mounts, re-added to
/// the shared counters when it (re)joins.
pub fn held(snap: &Snapshot, now_s: u64, ttl_s: u64) -> Vec<Held> {
    snap.mounts
        .iter()
        .filter(|m| m.max.is_some() || snap.servers[m.server].max_listeners.is_some())
        .map(|m| Held {
            server: snap.servers[m.server].name.clone(),
            mount: m.path.clone(),
            count: m.counters.ledger.ring().count(now_s, ttl_s),
        })
        .filter(|h| h.count > 0)
        .collect()
}
