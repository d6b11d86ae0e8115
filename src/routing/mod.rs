//! From store to redirect: the snapshot the redirect path reads, the pure
//! selection function, and the lock-free slot reservations.

pub mod countries;
pub mod reservations;
pub mod select;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testing;

pub use select::ClientGeo;
pub use snapshot::{Counters, Snapshot};
