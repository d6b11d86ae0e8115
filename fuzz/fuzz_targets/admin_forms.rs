//! See `icecast_balancer::fuzzing::admin_forms`: any bytes, no panic; the same body
//! runs in `cargo test` (tests/it/fuzzing.rs) on mutated inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| icecast_balancer::fuzzing::admin_forms(data));
