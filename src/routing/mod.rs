//! From store to redirect: the snapshot the redirect path reads, the rules
//! and the selection that applies them, and the lock-free slot
//! reservations behind one capacity seam.
//!
//! Inside, dependencies point one way: `rules`, `countries`,
//! `reservations` ← `routes` ← `snapshot` ← `select` ← `reasons`,
//! `capacity`.

pub(crate) mod callbacks;
pub mod capacity;
pub mod clients;
pub(crate) mod condition;
pub(crate) mod countries;
pub(crate) mod reasons;
pub(crate) mod recent;
pub mod reservations;
pub(crate) mod routes;
pub(crate) mod rules;
pub mod select;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokens;

pub(crate) use snapshot::Counters;
pub use snapshot::Snapshot;

use std::sync::Arc;

/// One request's view of routing: the snapshot, the time, and how long an
/// unreleased reservation counts. Built once per request, so every number
/// a page shows comes from the same instant.
#[derive(Clone)]
pub struct Routing {
    pub snap: Arc<Snapshot>,
    pub now_s: u64,
    pub ttl_s: u64,
}
