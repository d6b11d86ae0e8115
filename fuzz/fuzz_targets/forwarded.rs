//! See `icecast_balancer::fuzzing::forwarded`: any bytes, no panic; the same body
//! runs in `cargo test` (tests/it/fuzzing.rs) on mutated inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| icecast_balancer::fuzzing::forwarded(data));
