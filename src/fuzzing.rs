//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, nightly), kept
//! here so a normal test can run them too (`tests/it/fuzzing.rs` feeds
//! each a few thousand mutated inputs from a seeded generator). Each takes
//! any bytes and panics only when the parser broke its promise: a panic
//! inside a parser, or an accepted answer that is not what it says.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};

use crate::config::ForwardedHeader;

/// load.xsl: a list or an error, never a mount listed twice.
pub fn load_xsl(data: &[u8]) {
    if let Ok((mounts, _)) = crate::poll::parse::parse_load(data) {
        let mut names: Vec<&str> = mounts.iter().map(|m| m.mount.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a mount listed twice was accepted");
    }
}

/// status-json.xsl: a list or an error, never a mount listed twice.
pub fn status_json(data: &[u8]) {
    if let Ok(mounts) = crate::poll::parse::parse_status_json(data) {
        let mut names: Vec<&str> = mounts.iter().map(|m| m.mount.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a mount listed twice was accepted");
    }
}

/// An import file: parsed and checked entry by entry, or an error.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(file) = crate::config_file::parse(text)
    {
        let _ = crate::config_file::check(&file);
    }
}

/// The admin's server and stream forms as a browser posts them.
pub fn admin_forms(data: &[u8]) {
    if let Ok(form) = serde_urlencoded::from_bytes::<crate::web::admin::servers::ServerForm>(data) {
        let _ = form.parse();
    }
    if let Ok(form) = serde_urlencoded::from_bytes::<crate::web::admin::streams::StreamForm>(data) {
        let _ = form.input().parse();
    }
}

/// A trusted proxy's forwarding headers, in each of the three forms.
pub fn forwarded(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let proxy: IpAddr = [127, 0, 0, 1].into();
    let trusted = ["127.0.0.0/8".parse().expect("a valid network")];
    for (name, header) in [
        ("forwarded", ForwardedHeader::Forwarded),
        ("x-forwarded-for", ForwardedHeader::XForwardedFor),
        ("x-real-ip", ForwardedHeader::XRealIp),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.clone());
        let _ = crate::web::client_ip::client_info(proxy, &headers, &trusted, header);
    }
}
