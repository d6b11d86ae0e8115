//! From store to redirect: the snapshot the redirect path reads, the pure
//! selection function, and the lock-free slot reservations.

pub mod clients;
pub mod condition;
pub mod countries;
pub mod recent;
pub mod reservations;
pub mod routes;
pub mod select;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testing;

pub use snapshot::{Counters, Snapshot};

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
