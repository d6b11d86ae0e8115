//! The fake relay lives in the `testkit` crate, shared with the benchmarks.
pub use testkit::relay::*;
