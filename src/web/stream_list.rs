//! Per-stream listeners and free slots as selection sees them now: the
//! public stream list (`balancer`) and the admin's streams page show the
//! same numbers.

use super::or_unlimited;
use crate::routing::Snapshot;
use crate::routing::select;
use crate::web::AppState;

/// One stream's line.
pub struct StreamRow {
    pub name: String,
    pub description: String,
    pub listeners: u64,
    pub free: String,
    pub relays: usize,
}

/// Free slots and listeners per stream as selection sees them now.
pub fn stream_rows(state: &AppState, snap: &Snapshot) -> Vec<StreamRow> {
    let now_s = state.clock().now_s();
    let ttl = state.settings().reservation_ttl_s();
    snap.streams
        .iter()
        .map(|st| {
            let t = select::stream_totals(snap, st, now_s, ttl);
            StreamRow {
                name: st.name.clone(),
                description: st.description.clone(),
                listeners: t.listeners,
                free: or_unlimited(t.free),
                relays: t.relays,
            }
        })
        .collect()
}
