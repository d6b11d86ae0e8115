//! The redirect path's side of the cluster: a slot reserved locally is
//! kept only if the cluster's lease allows it too.

use crate::cluster::slots::MountView;
use crate::cluster::{Cluster, Held};
use crate::routing::Snapshot;
use crate::routing::select;

/// Reserves a slot on `mount` locally and, with a cluster, in the shared
/// count; undoes the local reservation when the cluster says no.
pub async fn reserve(
    cluster: Option<&std::sync::Arc<Cluster>>,
    snap: &Snapshot,
    mount: usize,
    now_s: u64,
    ttl_s: u64,
) -> bool {
    if !select::try_reserve(snap, mount, now_s, ttl_s) {
        return false;
    }
    let Some(cluster) = cluster else {
        return true;
    };
    if cluster.take(&view(snap, mount, now_s, ttl_s)).await {
        return true;
    }
    let m = &snap.mounts[mount];
    m.counters.ring.remove(now_s);
    snap.servers[m.server].counters.ring.remove(now_s);
    false
}

/// What the cluster needs to know of a mount just reserved locally.
fn view(snap: &Snapshot, mount: usize, now_s: u64, ttl_s: u64) -> MountView<'_> {
    let m = &snap.mounts[mount];
    let s = &snap.servers[m.server];
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
        counts_from_s: m.counters.ring.window_start(now_s, ttl_s),
        // Without the reservation just made.
        own_mount: m.counters.ring.count(now_s, ttl_s).saturating_sub(1),
        own_server: s.counters.ring.count(now_s, ttl_s).saturating_sub(1),
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
            count: m.counters.ring.count(now_s, ttl_s),
        })
        .filter(|h| h.count > 0)
        .collect()
}
