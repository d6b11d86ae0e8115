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
    assert_eq!(d["text"]["server-1-state"], "ok");
    assert_eq!(d["class"]["server-1-state"], "state-ok");
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
    let p = b
        .post(
            "/admin/servers/new",
            &[("name", "r2"), ("url", "relay.example.com")],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains("must start with http://"), "{}", p.body);
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

/// A sold-out stream and a dead one lead the dashboard: the state in words
/// and colour, the listeners turned away, and what losing the busiest
/// relay would do; a dead relay's error in words and no latency.
#[tokio::test]
async fn a_sold_out_and_a_dead_stream_say_so() {
    let a = FakeRelay::start(&[("/live.mp3", 5, Some(5))]).await;
    let b = FakeRelay::start(&[("/live.mp3", 3, Some(3))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"a\"\nurl = \"{}\"\n[[servers]]\nname = \"b\"\nurl = \"{}\"\n\
         [[servers]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9\"\n\
         [[streams]]\nname = \"live\"\nmounts = [{{ server = \"a\", mount = \"/live.mp3\" }}, {{ server = \"b\", mount = \"/live.mp3\" }}]\n\
         [[streams]]\nname = \"dead\"\nmounts = [{{ server = \"gone\", mount = \"/dead.mp3\" }}]\n",
        a.url, b.url
    ))
    .await;
    app.poll().await;
    for stream in ["live", "live", "dead"] {
        let r = app.get(&format!("/icecast_balancer/{stream}/")).await;
        assert_eq!(r.status(), 503);
    }
    let mut br = Browser::logged_in(&app).await;
    let page = br.get("/admin/").await.body;
    assert!(
        page.contains("class=\"badge state-full\" data-live=\"stream-1-state\">full<"),
        "{page}"
    );
    assert!(page.contains("class=\"badge state-down\" data-live=\"stream-2-state\">down<"));
    assert!(page.contains("class=\"badge state-full\" data-live=\"server-1-state\">full<"));
    assert!(page.contains("class=\"badge state-down\" data-live=\"server-3-state\">down<"));
    assert!(
        page.contains("2 in the last minute, 2 in the last hour answered 503"),
        "{page}"
    );
    assert!(page.contains("1 in the last minute, 1 in the last hour answered 503"));
    assert!(page.contains(
        "If a, the busiest relay, failed, 5 of its 5 listeners would have nowhere to go."
    ));
    assert!(
        page.contains("connection refused: is Icecast running on 127.0.0.1:9?"),
        "{page}"
    );
    assert!(!page.contains("os error"), "{page}");
    assert!(
        page.contains("data-live=\"server-3-latency\">—<"),
        "no latency for a dead relay"
    );

    // Live: the same words and classes, and they follow the relays.
    let d = live(&mut br, "").await;
    assert_eq!(d["text"]["stream-1-state"], "full");
    assert_eq!(d["class"]["stream-1-state"], "state-full");
    assert_eq!(d["class"]["stream-1-turned_away"], "state-full");
    assert_eq!(d["text"]["stream-2-state"], "down");
    a.set_mounts(&[("/live.mp3", 1, Some(5))]);
    app.poll().await;
    let d = live(&mut br, "").await;
    assert_eq!(d["text"]["stream-1-state"], "ok");
    assert_eq!(d["text"]["stream-1-listeners"], "4");
    assert_eq!(d["text"]["server-1-state"], "ok");

    // The stream's own page shows the same.
    let page = br.get("/admin/streams/2/edit").await.body;
    assert!(
        page.contains("data-live=\"stream-2-state\">down<"),
        "{page}"
    );
    assert!(page.contains("1 in the last hour answered 503"));
}

/// A relay read through status-json.xsl reports no limit: it is shown as
/// not known, not as "unlimited".
#[tokio::test]
async fn a_relay_without_a_known_limit_is_not_called_unlimited() {
    let bare = FakeRelay::start(&[("/live.mp3", 3, None)]).await;
    bare.set_mode(crate::support::fake_relay::Mode::StatusJsonOnly);
    let app = TestApp::spawn().await;
    app.import(&one_stream(&bare.url)).await;
    app.poll().await;
    let mut b = Browser::logged_in(&app).await;
    let page = b.get("/admin/").await.body;
    assert!(!page.contains("unlimited"), "{page}");
    assert!(page.contains("capacity <span data-live=\"stream-1-capacity\">no known limit<"));
}

#[tokio::test]
async fn users_are_managed_in_the_admin() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    let page = b.get("/admin/users").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("admin <span class=\"muted\">(you)</span>")
    );
    assert!(
        page.body.contains("aria-current=\"page\">Users<"),
        "the menu marks the page"
    );
    assert!(page.body.contains("The last user cannot be removed"));

    // Add: the form keeps the name and says what is wrong.
    let p = b
        .post(
            "/admin/users",
            &[
                ("name", "bob"),
                ("password", "short"),
                ("password_again", "short"),
            ],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains("at least 8 characters") && p.body.contains("value=\"bob\""));
    let good = [
        ("name", "bob"),
        ("password", "bobs-password"),
        ("password_again", "bobs-password"),
    ];
    let p = b.post("/admin/users", &good).await;
    assert_eq!(p.status, 303, "{}", p.body);
    b.get("/admin/users").await;
    let p = b.post("/admin/users", &good).await;
    assert_eq!(p.status, 422);
    assert!(
        p.body.contains("a user named bob already exists"),
        "{}",
        p.body
    );

    // Without the CSRF token nothing changes.
    let p = b
        .post(
            "/admin/users/bob/password",
            &[
                ("csrf_token", "forged"),
                ("password", "x-password-1"),
                ("password_again", "x-password-1"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);

    // Reset bob's password: bob logs in with the new one only.
    b.get("/admin/users").await;
    let p = b
        .post(
            "/admin/users/bob/password",
            &[
                ("password", "new-bob-pass"),
                ("password_again", "new-bob-pass"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let mut bob = Browser::new(&app);
    assert_eq!(bob.login("bob", "bobs-password").await.status, 401);
    assert_eq!(bob.login("bob", "new-bob-pass").await.status, 303);

    // Removing: bob can go, the last user cannot.
    b.get("/admin/users/bob/delete").await;
    assert_eq!(b.post("/admin/users/bob/delete", &[]).await.status, 303);
    b.get("/admin/users").await;
    let p = b.post("/admin/users/admin/delete", &[]).await;
    assert_eq!(p.location(), "/admin/users");
    let page = b.get("/admin/users").await.body;
    assert!(
        page.contains("admin is the last user and cannot be removed"),
        "{page}"
    );

    // Your own password needs the current one.
    let p = b
        .post(
            "/admin/users/password",
            &[
                ("current", "wrong-one"),
                ("own_password", "brand-new-pass"),
                ("own_password_again", "brand-new-pass"),
            ],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains("this is not your current password"));
    let p = b
        .post(
            "/admin/users/password",
            &[
                ("current", crate::support::admin::PASSWORD),
                ("own_password", "brand-new-pass"),
                ("own_password_again", "brand-new-pass"),
            ],
        )
        .await;
    assert_eq!(p.location(), "/admin/login");
    let mut again = Browser::new(&app);
    assert_eq!(again.login("admin", "brand-new-pass").await.status, 303);

    let audit = again.get("/admin/audit").await.body;
    for needle in [
        "<td>admin</td><td>create</td><td>user bob</td>",
        "<td>admin</td><td>password changed</td><td>user bob</td>",
        "<td>admin</td><td>delete</td><td>user bob</td>",
        "<td>admin</td><td>password changed</td><td>user admin</td>",
    ] {
        assert!(audit.contains(needle), "missing {needle:?} in {audit}");
    }
}

/// `/` leads to the stream list; the FastAPI balancer's `/<mount>` leads
/// to the stream; other addresses and errors are pages for a browser and
/// plain text for a script, naming nothing of the request.
#[tokio::test]
async fn first_contact_and_error_pages() {
    let relay = FakeRelay::start(&[("/live.mp3", 1, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&one_stream(&relay.url)).await;
    app.poll().await;
    let r = app.get("/").await;
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/icecast_balancer/");

    // The old URL shape, query kept; then the usual redirect to a relay.
    let r = app.get("/live.mp3?token=1").await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/icecast_balancer/live/?token=1");
    assert_eq!(
        app.get("/live").await.headers()["location"],
        "/icecast_balancer/live/"
    );

    let r = app.get("/nothing-here").await;
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Streams are listed at /icecast_balancer/"),
        "{text}"
    );
    assert!(!text.contains("nothing-here"));
    let html = "text/html,application/xhtml+xml";
    let r = app.get_with("/nothing-here", "accept", html).await;
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Not Found</h1>") && page.contains("href=\"/static/style.css\""));

    // In the admin: a missing page and a missing server, in the layout.
    let mut b = Browser::logged_in(&app).await;
    b.extra.push(("accept".into(), html.into()));
    let p = b.get("/admin/servers/9999/edit").await;
    assert_eq!(p.status, 404);
    assert!(
        p.body.contains("no server with id 9999") && p.body.contains("<h1>Not Found</h1>"),
        "{}",
        p.body
    );
    assert!(p.body.contains("Back to the dashboard"));
    let p = b.get("/admin/nope").await;
    assert_eq!(p.status, 404);
    assert!(
        p.body.contains("There is no admin page at this address."),
        "{}",
        p.body
    );
}
