//! status-json.xsl answers: any bytes give a list or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = icecast_balancer::poll::parse::parse_status_json(data);
});
