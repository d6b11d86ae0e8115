//! Fakes shared by icecast-balancer's tests and benchmarks, so each exists
//! once:
//!
//! - [`relay`]: what an Icecast relay answers the poller (`load.xsl`,
//!   `status-json.xsl`), and [`relay::FakeRelay`], a relay on a free port
//!   whose counts and misbehaviour a test controls;
//! - [`geoip`]: GeoIP databases in the layouts the balancer reads, a small
//!   world of known places for tests and a large DB-IP-like one for
//!   benchmarks.
//!
//! A dev-dependency only (tests, `bench/`, the unit tests in `src/`), and it
//! does not depend on the balancer.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failure here is the test's failure, and should stop it"
)]

pub mod geoip;
pub mod relay;
