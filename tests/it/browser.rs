//! The admin in a real browser: headless Chromium over WebDriver logs in,
//! creates a server, a stream and a mount through the forms, polls, sees
//! them on the dashboard, drains the relay from its page and logs out,
//! leaving screenshots of the pages under target/screenshots/.
//! Skips when Chromium is missing unless `ICECAST_BALANCER_E2E=required`.

use std::path::Path;

use crate::support::admin::PASSWORD;
use crate::support::app::{ResponseExt, TestApp};
use crate::support::fake_relay::FakeRelay;
use crate::support::webdriver::Browser;

#[tokio::test]
async fn operator_sets_up_a_stream_in_the_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let relay = FakeRelay::start(&[("/live.mp3", 12, Some(100))]).await;
    let app = TestApp::spawn().await;
    let base = format!("http://{}", app.addr);

    browser.goto(&format!("{base}/admin/")).await;
    assert!(browser.url().await.contains("/admin/login?next=/admin/"));
    browser.fill("#username", "admin").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for("<h1>Dashboard</h1>").await;
    assert_eq!(browser.url().await, format!("{base}/admin/"));

    browser.goto(&format!("{base}/admin/servers/new")).await;
    browser.fill("#name", "fra-1").await;
    browser.fill("#url", &relay.url).await;
    browser.fill("#country", "DE").await;
    browser.fill("#latitude", "50.11").await;
    browser.fill("#longitude", "8.68").await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("Server fra-1 created").await;

    browser.goto(&format!("{base}/admin/streams/new")).await;
    browser.fill("#name", "live").await;
    browser.fill("#description", "Main programme").await;
    browser.click("main form.card button[type=submit]").await;
    browser.wait_for("Stream live created").await;
    browser.fill("#mount", "/live.mp3").await;
    browser
        .click("form[action$='/mounts'] button[type=submit]")
        .await;
    // The click returns before the next page has loaded: wait for it.
    browser.wait_for("Mount /live.mp3 on fra-1 added").await;

    browser.goto(&format!("{base}/admin/")).await;
    browser.click("form[action='/admin/poll'] button").await;
    let dashboard = browser.wait_for("Polled 1 server in").await;
    assert!(dashboard.contains("fra-1"));
    assert!(dashboard.contains("/live.mp3"));
    assert!(dashboard.contains("<span class=\"stat\">12</span>"));
    assert!(dashboard.contains("<svg class=\"chart\""));
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/dashboard.png");
    browser.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    browser
        .goto(&format!("{base}/admin/explain?stream=live&ip=203.0.113.7"))
        .await;
    browser.wait_for("fra-1").await;
    browser.screenshot(&shots.join("explain.png")).await;
    browser.goto(&format!("{base}/admin/streams")).await;
    browser.click("main table a").await;
    browser.wait_for("Add a mount").await;
    browser.screenshot(&shots.join("stream.png")).await;
    // The same dashboard on a phone-sized screen.
    browser.resize(390, 844).await;
    browser.goto(&format!("{base}/admin/")).await;
    browser.wait_for("<h1>Dashboard</h1>").await;
    browser.screenshot(&shots.join("dashboard-phone.png")).await;
    browser.resize(1280, 1000).await;

    // What the browser set up is what listeners get.
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(r.redirect_target(), format!("{}/live.mp3", relay.url));

    // Drain the relay from its page: no new listeners from then on, and the
    // page says so and still shows who is connected.
    browser.goto(&format!("{base}/admin/servers")).await;
    browser.wait_for("<h1>Servers</h1>").await;
    browser.screenshot(&shots.join("servers.png")).await;
    browser.click("main table a").await;
    // Where the relay is placed, and that it was typed in, not looked up.
    browser
        .wait_for("location: DE · 50.11, 8.68 (configured)")
        .await;
    browser.click("input[name=enabled]").await;
    browser.click("main form.card button[type=submit]").await;
    let page = browser.wait_for("disabled (draining)").await;
    assert!(page.contains("<td class=\"num\">12</td>"), "{page}");
    browser.screenshot(&shots.join("server-draining.png")).await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);

    browser.click("nav form button").await;
    browser.wait_for("<h1>Log in</h1>").await;
    assert_eq!(browser.url().await, format!("{base}/admin/login"));
    browser.goto(&format!("{base}/admin/")).await;
    assert!(
        browser.url().await.contains("/admin/login"),
        "logged out for real"
    );
    browser.quit().await;
}
