//! Import files: any text gives a parsed file or an error naming the entry,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = icecast_balancer::config_file::parse(text);
    }
});
