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
    assert!(dashboard.contains("-listeners\">12</span> listeners"));
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
    let page = browser.wait_for("is <strong>draining</strong>").await;
    assert!(page.contains("-listeners\">12</td>"), "{page}");
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

/// Where axe-core's browser build is looked for (`npm install -g axe-core`
/// puts it in the first place), unless `ICECAST_BALANCER_AXE` names it.
const AXE_PATHS: &[&str] = &[
    "/usr/lib/node_modules/axe-core/axe.min.js",
    "/usr/local/lib/node_modules/axe-core/axe.min.js",
];

fn axe_source() -> Option<String> {
    let from_env = std::env::var("ICECAST_BALANCER_AXE").ok();
    let path = from_env
        .iter()
        .map(String::as_str)
        .chain(AXE_PATHS.iter().copied())
        .find(|p| Path::new(p).exists());
    match path {
        Some(p) => Some(std::fs::read_to_string(p).unwrap()),
        None => {
            crate::support::icecast::skip(
                "axe-core is missing (npm install -g axe-core): accessibility not checked",
            );
            None
        }
    }
}

/// How far the page is wider than the window (0 when it fits), and the
/// widest element's selector-ish name, for the failure message.
const OVERFLOW: &str = r#"
const doc = document.documentElement;
const over = doc.scrollWidth - doc.clientWidth;
let widest = "";
if (over > 0) {
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.right > doc.clientWidth + 1 && !(el.parentElement && el.parentElement.closest(".table-wrap"))) {
      widest = el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + " " + (el.textContent || "").slice(0, 40);
      break;
    }
  }
}
return { over: over, width: doc.clientWidth, widest: widest };
"#;

/// axe-core's serious and critical violations on the current page.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ["violations"] }).then(function (r) {
  done(r.violations
    .filter(function (v) { return v.impact === "serious" || v.impact === "critical"; })
    .map(function (v) { return v.id + ": " + v.help + " @ " + v.nodes.map(function (n) { return n.target.join(" "); }).join(", "); }));
}, function (e) { done(["axe failed: " + e]); });
"#;

async fn check_page(
    browser: &Browser,
    shots: &Path,
    name: &str,
    window: (u32, u32),
    axe: Option<&str>,
) {
    let fit = browser.execute(OVERFLOW, serde_json::json!([])).await;
    assert_eq!(
        fit["over"], 0,
        "{name} is wider than the {} px window: {fit}",
        fit["width"]
    );
    if let Some(axe) = axe {
        browser.execute(axe, serde_json::json!([])).await;
        let found = browser.execute_async(AXE_RUN, serde_json::json!([])).await;
        assert_eq!(found, serde_json::json!([]), "{name}: axe-core found");
    }
    let suffix = if window.0 < 600 { "phone" } else { "desktop" };
    browser
        .screenshot_full(&shots.join(format!("console-{name}-{suffix}.png")))
        .await;
}

/// Every page at a phone's 390 px and at desktop width: no sideways
/// scrolling of the page (wide tables scroll inside their box), no serious
/// axe-core finding, a screenshot of each; and the dashboard follows a
/// relay's count without a reload.
#[tokio::test]
async fn every_page_fits_a_phone_passes_axe_and_updates_live() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let axe = axe_source();
    let relay = FakeRelay::start(&[("/live.mp3", 12, Some(100))]).await;
    let bare = FakeRelay::start(&[("/live.mp3", 3, None)]).await;
    bare.set_mode(crate::support::fake_relay::Mode::StatusJsonOnly);
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"fra-1\"\nurl = \"{}\"\ncountry = \"DE\"\nlatitude = 50.11\nlongitude = 8.68\n\
         [[servers]]\nname = \"ams-relay-with-a-long-name\"\nurl = \"{}\"\n\
         [[servers]]\nname = \"dead-1\"\nurl = \"http://127.0.0.1:9\"\n\
         [[streams]]\nname = \"live\"\ndescription = \"Main programme, all day\"\n\
         mounts = [{{ server = \"fra-1\", mount = \"/live.mp3\" }}, {{ server = \"ams-relay-with-a-long-name\", mount = \"/live.mp3\" }}, {{ server = \"dead-1\", mount = \"/live.mp3\" }}]\n",
        relay.url, bare.url
    ))
    .await;
    app.poll().await;
    for _ in 0..3 {
        app.sent_to("live").await;
    }
    let base = format!("http://{}", app.addr);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");

    browser.goto(&format!("{base}/admin/login")).await;
    browser.fill("#username", "admin").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for("<h1>Dashboard</h1>").await;

    // Live: the relay's count changes and a poll runs, the page is not
    // reloaded, and the new numbers appear.
    browser.wait_for("Live: updated").await;
    relay.set_listeners("/live.mp3", 31);
    app.poll().await;
    let page = browser
        .wait_for("data-live=\"stream-1-listeners\">34<")
        .await;
    assert!(
        page.contains("fra-1 <strong>31</strong>"),
        "legend live too"
    );
    browser.goto(&format!("{base}/admin/servers")).await;
    browser.wait_for("Live: updated").await;
    relay.set_listeners("/live.mp3", 40);
    app.poll().await;
    browser
        .wait_for("data-live=\"server-1-listeners\">40<")
        .await;

    let mount: i64 = sqlx::query_scalar("SELECT id FROM mounts ORDER BY id LIMIT 1")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    let pages = [
        ("dashboard", "/admin/".to_string()),
        ("dashboard-1h", "/admin/?range=1h".to_string()),
        ("servers", "/admin/servers".to_string()),
        ("server", "/admin/servers/1/edit".to_string()),
        ("server-no-load-xsl", "/admin/servers/2/edit".to_string()),
        ("server-new", "/admin/servers/new".to_string()),
        ("streams", "/admin/streams".to_string()),
        ("stream", "/admin/streams/1/edit".to_string()),
        ("mount-remove", format!("/admin/mounts/{mount}/delete")),
        ("countries", "/admin/countries?stream=live".to_string()),
        (
            "explain",
            "/admin/explain?stream=live&ip=203.0.113.7".to_string(),
        ),
        (
            "explain-bad-ip",
            "/admin/explain?stream=live&ip=nonsense".to_string(),
        ),
        ("audit", "/admin/audit".to_string()),
        ("users", "/admin/users".to_string()),
        ("not-found", "/admin/servers/9999/edit".to_string()),
        ("public", "/icecast_balancer/".to_string()),
        ("public-not-found", "/nothing-here".to_string()),
    ];
    for (width, height) in [(390, 844), (1280, 1000)] {
        browser.resize(width, height).await;
        for (name, path) in &pages {
            browser.goto(&format!("{base}{path}")).await;
            browser.wait_for("</main>").await;
            check_page(&browser, &shots, name, (width, height), axe.as_deref()).await;
        }
    }

    // On a phone the menu folds behind one button and opens on a tap.
    browser.resize(390, 844).await;
    browser.goto(&format!("{base}/admin/")).await;
    let shown = "return getComputedStyle(document.getElementById('admin-nav')).display";
    assert_eq!(browser.execute(shown, serde_json::json!([])).await, "none");
    browser.click("label.nav-button").await;
    assert_eq!(browser.execute(shown, serde_json::json!([])).await, "flex");
    check_page(&browser, &shots, "menu-open", (390, 844), axe.as_deref()).await;

    // Logging out says so; the login page fits the phone too.
    browser.click("nav form button").await;
    browser.wait_for("You have logged out.").await;
    check_page(&browser, &shots, "logged-out", (390, 844), axe.as_deref()).await;
    browser.quit().await;
}

/// A stream selling out and a stream losing its only relay show as such
/// on the open dashboard at the next live refresh, without a reload: the
/// state word and its class, and the listeners turned away. Then the
/// users page end to end. Screenshots of both states at both widths.
#[tokio::test]
async fn sold_out_and_dead_streams_show_live_and_users_work() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let relay = FakeRelay::start(&[("/live.mp3", 2, Some(5))]).await;
    let doomed = FakeRelay::start(&[("/talk.mp3", 1, Some(50))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"fra-1\"\nurl = \"{}\"\n[[servers]]\nname = \"ams-1\"\nurl = \"{}\"\n\
         [[streams]]\nname = \"live\"\nmounts = [{{ server = \"fra-1\", mount = \"/live.mp3\" }}]\n\
         [[streams]]\nname = \"talk\"\nmounts = [{{ server = \"ams-1\", mount = \"/talk.mp3\" }}]\n",
        relay.url, doomed.url
    ))
    .await;
    app.poll().await;
    let base = format!("http://{}", app.addr);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    browser.goto(&format!("{base}/admin/login")).await;
    browser.fill("#username", "admin").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let page = browser.wait_for("Live: updated").await;
    assert!(
        page.contains("class=\"badge state-ok\" data-live=\"stream-1-state\">ok<"),
        "{page}"
    );
    browser
        .screenshot_full(&shots.join("console-states-ok-desktop.png"))
        .await;

    // Marks this page load: a reload would lose it.
    browser
        .execute("window.sameLoad = 1; return 1", serde_json::json!([]))
        .await;
    relay.set_listeners("/live.mp3", 5);
    doomed.kill();
    app.poll().await;
    for _ in 0..2 {
        assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    }
    browser
        .wait_for("class=\"badge state-full\" data-live=\"stream-1-state\">full<")
        .await;
    let page = browser
        .wait_for("class=\"badge state-down\" data-live=\"stream-2-state\">down<")
        .await;
    assert!(
        page.contains("class=\"badge state-full\" data-live=\"server-1-state\">full<"),
        "{page}"
    );
    assert!(
        page.contains("class=\"badge state-down\" data-live=\"server-2-state\">down<"),
        "{page}"
    );
    let page = browser
        .wait_for("2 in the last minute, 2 in the last hour answered 503")
        .await;
    assert!(
        page.contains("class=\"state-full\" data-live=\"stream-1-turned_away\""),
        "{page}"
    );
    let same = browser
        .execute("return window.sameLoad || 0", serde_json::json!([]))
        .await;
    assert_eq!(same, 1, "the page was reloaded, not updated live");
    browser
        .screenshot_full(&shots.join("console-states-full-down-desktop.png"))
        .await;
    browser.resize(390, 844).await;
    browser.goto(&format!("{base}/admin/")).await;
    browser.wait_for("</main>").await;
    browser
        .screenshot_full(&shots.join("console-states-full-down-phone.png"))
        .await;
    browser.resize(1280, 1000).await;

    // Users: add one, see it, remove it; the last user has no Remove.
    browser.goto(&format!("{base}/admin/users")).await;
    browser.wait_for("<h1>Users</h1>").await;
    browser.fill("#name", "bob").await;
    browser.fill("#password", "bobs-password").await;
    browser.fill("#password_again", "bobs-password").await;
    browser
        .click("form[action='/admin/users'] button[type=submit]")
        .await;
    let page = browser.wait_for("User bob added.").await;
    assert!(page.contains("href=\"/admin/users/bob/delete\""), "{page}");
    browser
        .screenshot_full(&shots.join("console-users-desktop.png"))
        .await;
    browser.click("a[href='/admin/users/bob/delete']").await;
    browser.wait_for("Delete user bob?").await;
    browser.click("main form button.danger").await;
    let page = browser.wait_for("User bob removed.").await;
    assert!(
        !page.contains("/admin/users/admin/delete"),
        "the last user cannot be removed"
    );
    browser.quit().await;
}
