//! The integration tests: one binary, so the crate is linked once.
//!
//! Each module drives the real application in-process (port 0) over HTTP;
//! `support` holds the shared helpers. Server logs are hidden unless
//! `TEST_LOG=1` is set.
#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic is the test failing with its reason"
)]

mod support;

mod admin;
mod api_v1;
mod balancer;
mod browser;
mod callbacks;
mod capacity;
mod changes;
mod cli;
mod cluster;
mod cluster_faults;
mod console;
mod e2e_callbacks;
mod e2e_icecast;
mod engine;
mod faults;
mod fuzzing;
mod geo;
mod hostile;
mod netroute;
mod ops;
mod scale;
