//! Shared test helpers: the app in-process on port 0 (`app`) and fake
//! relays (`fake_relay`), a real Icecast 2.4.4 (`icecast`), GeoIP test
//! databases (`geoip`), and a WebDriver client for headless Chromium
//! (`webdriver`).
#![allow(dead_code)]

pub mod admin;
pub mod app;
pub mod fake_relay;
pub mod geoip;
pub mod icecast;
pub mod webdriver;

/// A loopback port free right now, for a child process that cannot be
/// handed an already bound socket (Icecast, chromedriver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on the PATH, or `None` after a printed skip (a failure under
/// `ICECAST_BALANCER_E2E=required`).
pub fn require_binary(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        icecast::skip(&format!("{name} is not installed"));
    }
    found
}
