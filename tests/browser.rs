//! The admin in a real (headless) Chromium: what an operator does on first
//! use — log in, add a relay, a stream and its mount through the forms, poll,
//! read the dashboard, drain the relay, log out. Catches what HTTP-level tests cannot: forms
//! that a browser submits differently, cookies a browser refuses, a layout
//! that hides the buttons. Leaves `target/screenshots/dashboard.png`.

mod support;

use std::time::Duration;

use support::admin::PASSWORD;
use support::app::TestApp;
use support::fake_relay::FakeRelay;
use support::webdriver::{self, WebDriver};

/// Skips (with the reason) when Chromium is missing, unless the run says
/// the browser test is required.
fn browser_available() -> bool {
    match webdriver::unavailable() {
        None => true,
        Some(why) if std::env::var("ICECAST_BALANCER_E2E").as_deref() == Ok("required") => {
            panic!("ICECAST_BALANCER_E2E=required but {why}")
        }
        Some(why) => {
            eprintln!("SKIP: browser test: {why}");
            false
        }
    }
}

/// Saves a PNG of the current page under `target/screenshots/`.
async fn save_screenshot(wd: &WebDriver, name: &str) {
    // Let the layout settle after a resize.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let png = wd.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
}

#[test]
fn screenshot_decoding() {
    assert_eq!(webdriver::decode_base64("aGVsbG8="), b"hello");
    assert_eq!(webdriver::decode_base64("aGVsbG8h"), b"hello!");
    assert_eq!(webdriver::decode_base64("aGk="), b"hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_sets_up_a_stream_in_the_browser() {
    if !browser_available() {
        return;
    }
    let relay = FakeRelay::start(&[("/live.mp3", 7, Some(100))]).await;
    let app = TestApp::spawn().await;
    let wd = WebDriver::start().await;
    let base = format!("http://{}", app.addr);

    // Any admin page sends a stranger to the login form, and back after it.
    wd.goto(&format!("{base}/admin/servers")).await;
    wd.wait_for_url("/admin/login").await;
    wd.fill("#username", "admin").await;
    wd.fill("#password", PASSWORD).await;
    wd.click("form.card button[type=submit]").await;
    wd.wait_for("<h1>Servers</h1>").await;
    assert_eq!(wd.current_url().await, format!("{base}/admin/servers"));

    // A relay.
    wd.goto(&format!("{base}/admin/servers/new")).await;
    wd.fill("#name", "fra-1").await;
    wd.fill("#url", &relay.url).await;
    wd.fill("#country", "DE").await;
    wd.fill("#latitude", "50.11").await;
    wd.fill("#longitude", "8.68").await;
    wd.click("form.card button[type=submit]").await;
    wd.wait_for("Server fra-1 created").await;

    // A stream, then its mount on the relay from the stream's own page.
    wd.goto(&format!("{base}/admin/streams/new")).await;
    wd.fill("#name", "live").await;
    wd.fill("#description", "Main programme <live>").await;
    wd.click("form.card button[type=submit]").await;
    wd.wait_for("Stream live created").await;
    wd.fill("#mount", "/live.mp3").await;
    wd.click("form[action$='/mounts'] button[type=submit]")
        .await;
    wd.wait_for("Mount /live.mp3 on fra-1 added").await;

    // Poll from the dashboard's button.
    wd.goto(&format!("{base}/admin/")).await;
    wd.click("form[action='/admin/poll'] button").await;
    wd.wait_for("Polled 1 server in").await;
    let text = wd.text("main").await;
    for expected in ["fra-1", "live", "/live.mp3", "up"] {
        assert!(text.contains(expected), "{expected:?} not on:\n{text}");
    }
    assert!(wd.source().await.contains("<svg"));

    // A listener now gets the relay.
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/live.mp3", relay.url)
    );

    // Tall enough to show the whole dashboard in one picture.
    wd.resize(1280, 1400).await;
    save_screenshot(&wd, "dashboard.png").await;
    // The same on a phone, and the other pages an operator sees first,
    // for a human to look at.
    wd.resize(400, 1400).await;
    save_screenshot(&wd, "dashboard-phone.png").await;
    wd.resize(1280, 1400).await;
    wd.click("section.card h3 a").await;
    wd.wait_for("<h1>Stream live</h1>").await;
    save_screenshot(&wd, "stream.png").await;
    wd.goto(&format!("{base}/admin/servers")).await;
    save_screenshot(&wd, "servers.png").await;

    // Drain the relay from its page: no new listeners from then on.
    wd.click("td a[href$='/edit']").await;
    wd.wait_for("<h1>Server fra-1</h1>").await;
    // Where the relay is placed, and that it was typed in, not looked up.
    wd.wait_for("location: DE · 50.11, 8.68 (configured)").await;
    wd.click("input[name=enabled]").await;
    wd.click("form.card button[type=submit]").await;
    wd.wait_for("disabled (draining)").await;
    save_screenshot(&wd, "server-draining.png").await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);

    // Logging out ends the session: the admin asks for a login again.
    wd.click("nav form button").await;
    wd.wait_for("<h1>Log in</h1>").await;
    wd.goto(&format!("{base}/admin/")).await;
    wd.wait_for_url("/admin/login?next=").await;

    wd.quit().await;
}
