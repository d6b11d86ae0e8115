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
pub mod redis;
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
