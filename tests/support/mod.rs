//! Shared test helpers: the app in-process on port 0 (`app`) and fake
//! relays (`fake_relay`), a real Icecast 2.4.4 (`icecast`), and GeoIP test
//! databases (`geoip`).
#![allow(dead_code)]

pub mod admin;
pub mod app;
pub mod fake_relay;
pub mod geoip;
pub mod icecast;
