//! load.xsl answers: any bytes give a list or an error, never a panic, and
//! a list never holds one mount twice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mounts) = icecast_balancer::poll::parse::parse_load_xsl(data) {
        let mut names: Vec<_> = mounts.iter().map(|m| m.mount.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a mount listed twice was accepted");
    }
});
