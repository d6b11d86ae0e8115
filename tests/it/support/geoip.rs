//! The GeoIP test databases live in the `testkit` crate, shared with the
//! unit tests and the benchmarks.
pub use testkit::geoip::*;
