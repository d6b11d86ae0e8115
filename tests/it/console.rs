//! The admin as a live console: the live JSON behind the pages, charts by
//! range, per-country redirect counts with their CSV, and the smaller
//! fixes (errors inside the page, "—" for unknown, logout message).

use serde_json::Value;

use crate::support::admin::Browser;
use crate::support::app::TestApp;
use crate::support::fake_relay::FakeRelay;
use crate::support::geoip;

fn one_stream(url: &str) -> String {
    format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{url}\"\n[[streams]]\nname = \"live\"\nmounts = [{{ server = \"r1\", mount = \"/live.mp3\" }}]\n"
    )
}

async fn live(b: &mut Browser, query: &str) -> Value {
    let p = b.get(&format!("/admin/live{query}")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    serde_json::from_str(&p.body).unwrap()
}

#[tokio::test]
async fn live_numbers_follow_polls_and_redirects() {
    let relay = FakeRelay::start(&[("/live.mp3", 5, Some(50))]).await;
    let app = TestApp::spawn().await;
    app.import(&one_stream(&relay.url)).await;
    let anonymous = app.get("/admin/live").await;
    assert_eq!(anonymous.status(), 303, "login required");

    let mut b = Browser::logged_in(&app).await;
    app.poll().await;
    let d = live(&mut b, "").await;
    assert_eq!(d["text"]["stream-1-listeners"], "5");
    assert_eq!(d["text"]["server-1-state"], "up");
    assert_eq!(d["class"]["server-1-state"], "state-up");
    assert_eq!(d["text"]["server-1-read_via"], "load.xsl");
    assert_eq!(d["text"]["mount-1-free"], "45");
    assert_eq!(d["text"]["mount-1-live"], "live");
    assert!(
        d["html"].as_object().unwrap().is_empty(),
        "charts only when asked"
    );

    relay.set_listeners("/live.mp3", 9);
    app.poll().await;
    app.sent_to("live").await;
    let d = live(&mut b, "?charts=1&range=1h").await;
    assert_eq!(d["text"]["stream-1-listeners"], "9");
    assert_eq!(d["text"]["stream-1-reserved"], "1");
    let chart = d["html"]["chart-1"].as_str().unwrap();
    assert!(chart.contains("over the last 1 h, now 9"), "{chart}");
    assert!(chart.contains("r1 <strong>9</strong>"), "legend: {chart}");
}

#[tokio::test]
async fn dashboard_chart_ranges_and_unknown_mounts() {
    let relay = FakeRelay::start(&[("/live.mp3", 4, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&one_stream(&relay.url)).await;
    let mut b = Browser::logged_in(&app).await;
    // Never polled: no limit is known, so none is claimed.
    let page = b.get("/admin/").await.body;
    assert!(page.contains("data-live=\"mount-1-max\">—</td>"), "{page}");
    assert!(!page.contains("data-live=\"mount-1-free\">unlimited"));
    app.poll().await;
    for (range, label) in [("1h", "1 h"), ("24h", "24 h"), ("7d", "7 d")] {
        let page = b.get(&format!("/admin/?range={range}")).await.body;
        assert!(
            page.contains(&format!("over the last {label}, now 4")),
            "{range}"
        );
        assert!(page.contains(&format!("data-range=\"{range}\"")));
        assert!(page.contains("aria-current=\"page\">"));
    }
    let page = b.get("/admin/servers").await.body;
    assert!(page.contains(">load.xsl</td>"));
    assert!(!page.contains("has no load.xsl"));
}

#[tokio::test]
async fn redirects_are_counted_per_country_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    geoip::replace(&db, &geoip::world(geoip::Schema::MaxMind));
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let app = TestApp::spawn_with(move |s| {
        s.geoip = Some(db);
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.import(&one_stream(&relay.url)).await;
    app.poll().await;
    for ip in ["81.10.0.1", "81.10.0.2", "90.0.0.1", "203.0.113.9"] {
        let r = app
            .get_with("/icecast_balancer/live/", "x-forwarded-for", ip)
            .await;
        assert_eq!(r.status(), 302);
    }
    // A playlist or a HEAD is no redirect of a listener.
    app.head("/icecast_balancer/live/").await;

    let mut b = Browser::logged_in(&app).await;
    let page = b.get("/admin/countries?stream=live&days=1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("live: 4 redirects"), "{}", page.body);
    assert!(
        page.body
            .contains("<td>DE</td><td class=\"num\">2</td><td class=\"num\">50.0 %</td>")
    );
    assert!(
        page.body
            .contains("<td>unknown</td><td class=\"num\">1</td>")
    );
    assert!(page.body.contains("<svg class=\"chart\""));

    // One more after the flush lands in the same hour's row.
    app.get_with("/icecast_balancer/live/", "x-forwarded-for", "81.10.0.3")
        .await;
    let csv = app
        .client
        .get(app.url("/admin/countries.csv?stream=live"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 303, "the export needs a login");
    let p = b.get("/admin/countries.csv?stream=live&days=7").await;
    assert_eq!(p.status, 200);
    assert!(
        p.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = p.body.lines().collect();
    assert_eq!(lines[0], "hour_utc,stream,country,redirects");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(",live,DE,3") && l.contains("T") && l.contains(":00:00Z,")),
        "{}",
        p.body
    );
    assert!(
        lines.iter().any(|l| l.ends_with(",live,FR,1")),
        "{}",
        p.body
    );
    assert!(lines.iter().any(|l| l.ends_with(",live,,1")), "{}", p.body);
    assert_eq!(b.get("/admin/countries?stream=nope").await.status, 404);
}

#[tokio::test]
async fn errors_stay_inside_the_admin_layout() {
    let app = TestApp::spawn().await;
    app.import(&one_stream("http://127.0.0.1:9")).await;
    let mut b = Browser::logged_in(&app).await;
    let p = b.get("/admin/explain?stream=live&ip=nonsense").await;
    assert_eq!(p.status, 400);
    assert!(
        p.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(p.body.contains("<nav") && p.body.contains("is not an IP address"));
    assert!(p.body.contains("aria-invalid=\"true\""));

    let p = b
        .post("/admin/servers/new", &[("name", "r2"), ("url", "")])
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains("required"), "{}", p.body);
    assert!(!p.body.contains("relative URL without a base"));

    // Logging out says so, once.
    let p = b.post("/admin/logout", &[]).await;
    assert_eq!(p.location(), "/admin/login");
    let login = b.get("/admin/login").await.body;
    assert!(login.contains("You have logged out."));
    assert!(
        !b.get("/admin/login")
            .await
            .body
            .contains("You have logged out.")
    );
}
