//! Bad days: what happens to the files the balancer depends on (the GeoIP
//! database replaced by garbage, a FIFO, or overwritten in place) while it
//! runs. Redirects go on and the process stays up.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::app::TestApp;
use crate::support::geoip;
use icecast_balancer::Settings;
use icecast_balancer::geo::Reload;

async fn with_geoip() -> (TestApp, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.keep().join("city.mmdb");
    geoip::replace(&mmdb, &geoip::world(geoip::Schema::MaxMind));
    let path = mmdb.clone();
    let app = TestApp::spawn_with(move |s: &mut Settings| s.geoip = Some(path)).await;
    (app, mmdb)
}

fn country(app: &TestApp, ip: &str) -> Option<String> {
    app.state
        .geo()
        .lookup(ip.parse().unwrap())
        .country
        .map(|c| c.to_string())
}

/// Every address the test database knows, looked up: touches the whole
/// file, so a mapping of a truncated file would fault here.
fn look_everywhere(app: &TestApp) -> Vec<Option<String>> {
    [
        geoip::BERLIN_V4,
        geoip::BERLIN_V6,
        geoip::PARIS_V4,
        geoip::NEW_YORK_V4,
        geoip::NEW_YORK_V6,
        geoip::SYDNEY_V4,
        geoip::SYDNEY_V6,
        geoip::TOKYO_V4,
        geoip::TOKYO_V6,
    ]
    .iter()
    .map(|ip| country(app, ip))
    .collect()
}

#[tokio::test]
async fn geoip_truncated_in_place_neither_crashes_nor_loses_data() {
    let (app, mmdb) = with_geoip().await;
    let before = look_everywhere(&app);
    assert_eq!(before[0].as_deref(), Some("DE"));
    // What `cp new.mmdb city.mmdb` does first: truncate the same inode.
    let f = std::fs::OpenOptions::new().write(true).open(&mmdb).unwrap();
    f.set_len(100).unwrap();
    drop(f);
    assert_eq!(look_everywhere(&app), before);
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(look_everywhere(&app), before);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn geoip_overwritten_in_place_is_picked_up_once_complete() {
    let (app, mmdb) = with_geoip().await;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&mmdb)
        .unwrap();
    let moved = geoip::world_moved();
    f.write_all(&moved[..moved.len() / 2]).unwrap();
    f.flush().unwrap();
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
    f.write_all(&moved[moved.len() / 2..]).unwrap();
    drop(f);
    assert_eq!(app.state.reload_geoip().await, Reload::Reloaded);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("JP"));
}

#[tokio::test]
async fn geoip_replaced_by_garbage_keeps_the_old_data() {
    let (app, mmdb) = with_geoip().await;
    geoip::replace(&mmdb, b"<html>502 Bad Gateway</html>");
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geoip_replaced_by_a_fifo_is_refused_without_stalling() {
    let (app, mmdb) = with_geoip().await;
    let fifo = mmdb.with_extension("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    std::fs::rename(&fifo, &mmdb).unwrap();
    // Before the fix the open itself blocked (no writer ever comes), so
    // this never returned.
    let r = tokio::time::timeout(Duration::from_secs(20), app.state.reload_geoip()).await;
    assert_eq!(r.expect("the reload stalled on a FIFO"), Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
    // The background check every 2 s meets the FIFO too; requests go on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        app.client.get(app.url("/healthz")).send(),
    )
    .await
    .expect("requests stalled")
    .unwrap();
    assert_eq!(r.status(), 200);
}
