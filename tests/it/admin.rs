//! The admin over HTTP with a cookie-keeping client: login, sessions,
//! CSRF, every form, validation, escaping, audit, drain, discovery.

use crate::support::admin::{Browser, PASSWORD};
use crate::support::app::TestApp;
use crate::support::fake_relay::FakeRelay;

/// An app with one polled relay `r1` (`/live.mp3`, 3 of 10) and a
/// logged-in browser.
async fn one_polled_relay() -> (TestApp, FakeRelay, Browser) {
    let relay = FakeRelay::start(&[("/live.mp3", 3, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{}\"\n",
        relay.url
    ))
    .await;
    app.poll().await;
    let b = Browser::logged_in(&app).await;
    (app, relay, b)
}

async fn server_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM servers WHERE name = ?")
        .bind(name)
        .fetch_one(app.state.db())
        .await
        .unwrap()
}

#[tokio::test]
async fn login_redirects_back_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let p = b.get("/admin/servers").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/admin/login?next=/admin/servers");

    let p = b.login_then("admin", PASSWORD, "/admin/servers").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/admin/servers");
    let cookie = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("icb_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = b.cookies["icb_session"].clone();

    let page = b.get("/admin/servers").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.body.contains("Log out"));

    let p = b.post("/admin/logout", &[]).await;
    assert_eq!(p.status, 303);
    assert!(!b.cookies.contains_key("icb_session"));
    // The old session id is dead, not just forgotten by this client.
    b.cookies.insert("icb_session".into(), session);
    assert_eq!(b.get("/admin/").await.status, 303);
}

#[tokio::test]
async fn open_redirects_are_refused() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let p = b
        .login_then("admin", PASSWORD, "https://evil.example/")
        .await;
    assert_eq!(p.location(), "/admin/");
}

#[tokio::test]
async fn wrong_password_then_rate_limit() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    for _ in 0..5 {
        let p = b.login("admin", "wrong password").await;
        assert_eq!(p.status, 401);
        assert!(p.body.contains("Wrong user name or password"));
    }
    let p = b.login("admin", PASSWORD).await;
    assert_eq!(p.status, 429, "even the right password waits");
    let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");

    // A user that does not exist is rate-limited the same way.
    let mut other = Browser::new(&app);
    assert_eq!(other.login("nobody", "x").await.status, 429, "same address");

    let mut b = Browser::logged_in_after_reset(&app).await;
    let audit = b.get("/admin/audit").await.body;
    // One entry counts the failures of one name from one address.
    assert_eq!(audit.matches("login failed").count(), 1, "{audit}");
    assert!(audit.contains("attempts = 5"), "{audit}");
}

trait ResetExt {
    async fn logged_in_after_reset(app: &TestApp) -> Browser;
}

impl ResetExt for Browser {
    /// The limit is per address; clear it as if the window had passed.
    async fn logged_in_after_reset(app: &TestApp) -> Browser {
        sqlx::query("DELETE FROM login_attempts")
            .execute(app.state.db())
            .await
            .unwrap();
        Browser::logged_in(app).await
    }
}

#[tokio::test]
async fn session_id_is_rotated_at_login() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    b.cookies
        .insert("icb_session".into(), "planted-by-attacker".into());
    let p = b.login("admin", PASSWORD).await;
    assert_eq!(p.status, 303);
    let issued = b.cookies["icb_session"].clone();
    assert_ne!(issued, "planted-by-attacker");
    assert_eq!(issued.len(), 64);
    let mut attacker = Browser::new(&app);
    attacker
        .cookies
        .insert("icb_session".into(), "planted-by-attacker".into());
    assert_eq!(
        attacker.get("/admin/").await.status,
        303,
        "the planted id never became a session"
    );
}

#[tokio::test]
async fn secure_cookie_behind_an_https_proxy() {
    let app =
        TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let mut b = Browser::new(&app);
    b.extra.push(("x-forwarded-proto".into(), "https".into()));
    b.origin = b.origin.replace("http://", "https://");
    let p = b.login("admin", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let cookie = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("icb_session="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/servers/new").await;
    let server = [
        ("name", "x1"),
        ("url", "http://x1.example.com"),
        ("weight", "100"),
        ("enabled", "on"),
    ];

    b.origin = "http://evil.example".into();
    assert_eq!(b.post("/admin/servers/new", &server).await.status, 403);
    // Same host, other port: another origin.
    b.origin = format!("http://127.0.0.1:{}", app.addr.port() + 1);
    assert_eq!(b.post("/admin/servers/new", &server).await.status, 403);

    b.origin = b.base.clone();
    b.extra.push(("sec-fetch-site".into(), "cross-site".into()));
    assert_eq!(b.post("/admin/servers/new", &server).await.status, 403);
    b.extra.clear();

    let mut with_bad_token = server.to_vec();
    with_bad_token.push(("csrf_token", "0000"));
    assert_eq!(
        b.post("/admin/servers/new", &with_bad_token).await.status,
        403
    );

    // Nothing of the above landed.
    assert!(
        !b.get("/admin/servers")
            .await
            .body
            .contains("x1.example.com")
    );

    // Same origin, port included, right token: accepted.
    b.extra
        .push(("sec-fetch-site".into(), "same-origin".into()));
    assert_eq!(b.post("/admin/servers/new", &server).await.status, 303);
    assert!(
        b.get("/admin/servers")
            .await
            .body
            .contains("x1.example.com")
    );

    // A login form posted from elsewhere is refused too.
    let mut other = Browser::new(&app);
    other.origin = "http://evil.example".into();
    assert_eq!(other.login("admin", PASSWORD).await.status, 403);
}

/// Fields submitted, the field that must show an error, and part of its text.
type ValidationCase = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[tokio::test]
async fn server_form_validation_keeps_values_and_names_fields() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/servers/new").await;
    let cases: &[ValidationCase] = &[
        (
            &[("name", "fra 1"), ("url", "http://a.example.com")],
            "name",
            "only letters",
        ),
        (
            &[("name", "a"), ("url", "ftp://a.example.com")],
            "url",
            "http:// or https://",
        ),
        (
            &[("name", "a"), ("url", "http://")],
            "url",
            "not a valid URL",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("https_url", "nohost"),
            ],
            "https_url",
            "must start with http:// or https:// (as in http://nohost)",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("country", "Germany"),
            ],
            "country",
            "two-letter",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("latitude", "91"),
                ("longitude", "0"),
            ],
            "latitude",
            "between -90 and 90",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("latitude", "0"),
                ("longitude", "181"),
            ],
            "longitude",
            "between -180 and 180",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("latitude", "north"),
            ],
            "latitude",
            "must be a number",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("max_listeners", "-5"),
            ],
            "max_listeners",
            "whole number",
        ),
        (
            &[
                ("name", "a"),
                ("url", "http://a.example.com"),
                ("weight", "0"),
            ],
            "weight",
            "from 1 to",
        ),
    ];
    for (fields, field, message) in cases {
        let p = b.post("/admin/servers/new", fields).await;
        assert_eq!(p.status, 422, "{fields:?}");
        let marker = format!("id=\"{field}-error\"");
        let at = p
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no error on {field}: {fields:?}"));
        assert!(
            p.body[at..].split("</p>").next().unwrap().contains(message),
            "{field}: {}",
            &p.body[at..at + 200]
        );
        // What was typed is still in the form.
        for (k, v) in fields.iter() {
            if !v.is_empty() && *k != "enabled" {
                assert!(
                    p.body.contains(&format!("name=\"{k}\" value=\"{v}\"")),
                    "{k} lost"
                );
            }
        }
    }
    assert!(
        !b.get("/admin/servers").await.body.contains("a.example.com"),
        "nothing saved"
    );
}

#[tokio::test]
async fn server_create_edit_duplicate_delete() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/servers/new").await;
    let p = b
        .post(
            "/admin/servers/new",
            &[
                ("name", "fra-1"),
                ("url", "http://relay1.example.com:8000/"),
                ("country", "de"),
                ("latitude", "50.11"),
                ("longitude", "8.68"),
                ("weight", "150"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let edit = p.location().to_string();
    let page = b.get(&edit).await;
    assert!(page.body.contains("Server fra-1 created"), "flash");
    assert!(
        page.body
            .contains("value=\"http://relay1.example.com:8000\"")
    );
    assert!(page.body.contains("value=\"DE\""));
    // The flash is shown once.
    assert!(!b.get(&edit).await.body.contains("Server fra-1 created"));

    b.get("/admin/servers/new").await;
    let dup = b
        .post(
            "/admin/servers/new",
            &[
                ("name", "fra-1"),
                ("url", "http://other.example.com"),
                ("weight", "100"),
            ],
        )
        .await;
    assert_eq!(dup.status, 422);
    assert!(
        dup.body
            .contains("id=\"name-error\">&#34;fra-1&#34; is already taken"),
        "{}",
        dup.body
    );

    b.get(&edit).await;
    let p = b
        .post(
            &edit,
            &[
                ("name", "fra-1"),
                ("url", "http://relay1.example.com:8000"),
                ("weight", "300"),
                ("max_listeners", "500"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let exported = icecast_balancer::config_file::to_toml(
        &icecast_balancer::config_file::export(app.state.db())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        exported.contains("weight = 300") && exported.contains("max_listeners = 500"),
        "{exported}"
    );
    assert!(!exported.contains("country"), "cleared field stays cleared");

    // A rename onto another server's name is refused on the field.
    b.get("/admin/servers/new").await;
    b.post(
        "/admin/servers/new",
        &[("name", "nyc-1"), ("url", "http://relay2.example.com")],
    )
    .await;
    b.get(&edit).await;
    let clash = b
        .post(
            &edit,
            &[
                ("name", "nyc-1"),
                ("url", "http://relay1.example.com:8000"),
                ("weight", "100"),
            ],
        )
        .await;
    assert_eq!(clash.status, 422);
    assert!(clash.body.contains("already taken"));

    let delete = edit.replace("/edit", "/delete");
    let confirm = b.get(&delete).await;
    assert!(confirm.body.contains("Delete server fra-1?"));
    assert_eq!(b.post(&delete, &[]).await.status, 303);
    let list = b.get("/admin/servers").await.body;
    assert!(list.contains("Server fra-1 deleted with 0 mounts."));
    assert!(!list.contains(">fra-1</a>") && list.contains(">nyc-1</a>"));
}

#[tokio::test]
async fn streams_and_mounts_on_the_stream_page() {
    let (app, relay, mut b) = one_polled_relay().await;
    b.get("/admin/streams/new").await;
    let p = b
        .post(
            "/admin/streams/new",
            &[
                ("name", "live"),
                ("description", "Main"),
                ("fallback_url", "https://example.com/full"),
                ("allowed_countries", "de, at"),
                ("allow_unknown", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let page_url = p.location().to_string();
    let id: i64 = page_url.split('/').nth(3).unwrap().parse().unwrap();
    b.get(&page_url).await;

    let mounts = format!("/admin/streams/{id}/mounts");
    let bad = b
        .post(&mounts, &[("server", "r1"), ("mount", "live.mp3")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.body
            .contains("id=\"mount-error\">must start with &#39;/&#39;"),
        "{}",
        bad.body
    );
    assert!(
        bad.body.contains("value=\"live.mp3\""),
        "entered value kept"
    );
    let unknown = b
        .post(&mounts, &[("server", "nope"), ("mount", "/live.mp3")])
        .await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.body.contains("no server named"));

    assert_eq!(
        b.post(&mounts, &[("server", "r1"), ("mount", "/live.mp3")])
            .await
            .status,
        303
    );
    // The redirect path sees it at once.
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", relay.url));
    let page = b.get(&page_url).await;
    assert!(page.body.contains("Mount /live.mp3 on r1 added."));
    assert!(page.body.contains("-listeners\">3</td>"), "listeners shown");

    let dup = b
        .post(&mounts, &[("server", "r1"), ("mount", "/live.mp3")])
        .await;
    assert_eq!(dup.status, 422);
    assert!(dup.body.contains("already belongs to a stream"));

    // Duplicate stream name.
    b.get("/admin/streams/new").await;
    let p = b.post("/admin/streams/new", &[("name", "live")]).await;
    assert_eq!(p.status, 422);
    assert!(
        p.body
            .contains("id=\"name-error\">&#34;live&#34; is already taken")
    );
    let p = b
        .post(
            "/admin/streams/new",
            &[("name", "x"), ("allowed_countries", "Germany")],
        )
        .await;
    assert!(p.body.contains("id=\"allowed_countries-error\""));
    let p = b
        .post(
            "/admin/streams/new",
            &[("name", "x"), ("fallback_url", "javascript:alert(1)")],
        )
        .await;
    assert!(p.body.contains("id=\"fallback_url-error\""));

    // Remove the mount, then delete the stream through its confirmation.
    let mount_id = sqlx::query_scalar::<_, i64>("SELECT id FROM mounts")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    b.get(&page_url).await;
    // Removing asks first, like deleting a server or a stream.
    let confirm = b.get(&format!("/admin/mounts/{mount_id}/delete")).await;
    assert!(
        confirm.body.contains("Delete mount /live.mp3 on r1?"),
        "{}",
        confirm.body
    );
    assert_eq!(
        b.post(&format!("/admin/mounts/{mount_id}/delete"), &[])
            .await
            .status,
        303
    );
    // No mount left: listeners go to the fallback.
    assert_eq!(app.sent_to("live").await, "https://example.com/full");
    let confirm = b.get(&format!("/admin/streams/{id}/delete")).await;
    assert!(confirm.body.contains("Delete stream live?"));
    assert_eq!(
        b.post(&format!("/admin/streams/{id}/delete"), &[])
            .await
            .status,
        303
    );
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 404);
}

#[tokio::test]
async fn deleting_a_server_names_its_mounts_first() {
    let app = TestApp::spawn().await;
    app.import("[[servers]]\nname = \"r1\"\nurl = \"http://r1.example.com\"\n[[streams]]\nname = \"live\"\nmounts = [{ server = \"r1\", mount = \"/live.mp3\" }, { server = \"r1\", mount = \"/hq.ogg\" }]\n").await;
    let mut b = Browser::logged_in(&app).await;
    let id = server_id(&app, "r1").await;
    let confirm = b.get(&format!("/admin/servers/{id}/delete")).await;
    assert!(confirm.body.contains("mount /live.mp3 of stream live"));
    assert!(confirm.body.contains("mount /hq.ogg of stream live"));
    // GET changed nothing.
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mounts")
            .fetch_one(app.state.db())
            .await
            .unwrap(),
        2
    );
    b.post(&format!("/admin/servers/{id}/delete"), &[]).await;
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mounts")
            .fetch_one(app.state.db())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn user_text_is_escaped_everywhere() {
    let app = TestApp::spawn().await;
    app.import("[[streams]]\nname = \"live\"\ndescription = \"<script>alert(1)</script>\"\n")
        .await;
    let public = app.get("/icecast_balancer/").await.text().await.unwrap();
    assert!(!public.contains("<script>alert(1)"));
    assert!(
        public.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || public.contains("&lt;script&gt;")
    );
    let mut b = Browser::logged_in(&app).await;
    for page in ["/admin/streams", "/admin/", "/admin/audit"] {
        let body = b.get(page).await.body;
        assert!(!body.contains("<script>alert(1)"), "{page}");
    }
}

#[tokio::test]
async fn audit_records_who_changed_what() {
    let app = TestApp::spawn().await;
    app.import("[[servers]]\nname = \"r1\"\nurl = \"http://r1.example.com\"\n")
        .await;
    let mut b = Browser::new(&app);
    b.login("admin", "nope-nope").await;
    let mut b = Browser::logged_in(&app).await;
    let id = server_id(&app, "r1").await;
    b.get(&format!("/admin/servers/{id}/edit")).await;
    b.post(
        &format!("/admin/servers/{id}/edit"),
        &[
            ("name", "r1"),
            ("url", "http://r1.example.com"),
            ("weight", "250"),
            ("enabled", "on"),
        ],
    )
    .await;
    b.get(&format!("/admin/servers/{id}/delete")).await;
    b.post(&format!("/admin/servers/{id}/delete"), &[]).await;
    let audit = b.get("/admin/audit").await.body;
    for needle in [
        "<td>import</td><td>create</td><td>server r1</td>",
        "<td>admin</td><td>update</td><td>server r1</td>",
        "weight: 100 → 250",
        "<td>admin</td><td>delete</td><td>server r1</td>",
        "<td>admin</td><td>login</td>",
        "<td>admin</td><td>login failed</td>",
    ] {
        assert!(
            audit.contains(needle),
            "missing {needle:?} in audit:\n{audit}"
        );
    }
    assert!(
        !audit.contains("nope-nope"),
        "a password reached the audit log"
    );
}

#[tokio::test]
async fn draining_a_server_stops_redirects_at_once_and_shows_listeners_leaving() {
    let a = FakeRelay::start(&[("/live.mp3", 40, Some(100))]).await;
    let c = FakeRelay::start(&[("/live.mp3", 80, Some(100))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"a\"\nurl = \"{}\"\n[[servers]]\nname = \"c\"\nurl = \"{}\"\n[[streams]]\nname = \"live\"\nmounts = [{{ server = \"a\", mount = \"/live.mp3\" }}, {{ server = \"c\", mount = \"/live.mp3\" }}]\n",
        a.url, c.url
    ))
    .await;
    app.poll().await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));

    let mut b = Browser::logged_in(&app).await;
    let id = server_id(&app, "a").await;
    let edit = format!("/admin/servers/{id}/edit");
    b.get(&edit).await;
    let p = b
        .post(&edit, &[("name", "a"), ("url", &a.url), ("weight", "100")])
        .await; // no "enabled"
    assert_eq!(p.status, 303);
    for _ in 0..5 {
        assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", c.url));
    }
    let page = b.get(&edit).await.body;
    assert!(page.contains("is <strong>draining</strong>"));
    assert!(page.contains(">draining</span>"), "the state word: {page}");
    assert!(page.contains("-listeners\">40</td>"), "{page}");
    a.set_listeners("/live.mp3", 12);
    app.poll().await;
    let page = b.get(&edit).await.body;
    assert!(page.contains("-listeners\">12</td>"), "{page}");
    assert!(page.contains(&format!(
        "data-live=\"server-{id}-listeners\">12</span> listeners"
    )));
}

#[tokio::test]
async fn discovered_mounts_can_be_added_to_a_stream() {
    let relay = FakeRelay::start(&[("/live.mp3", 2, Some(50)), ("/talk.aac", 0, None)]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{}\"\n[[streams]]\nname = \"live\"\n",
        relay.url
    ))
    .await;
    let mut b = Browser::logged_in(&app).await;
    let id = server_id(&app, "r1").await;
    let page = b.get(&format!("/admin/servers/{id}/discover")).await;
    assert!(page.body.contains("value=\"/live.mp3\""));
    assert!(page.body.contains("value=\"/talk.aac\""));
    assert!(page.body.contains("through load.xsl"));
    let p = b
        .post(
            &format!("/admin/servers/{id}/discover"),
            &[
                ("mount", "/live.mp3"),
                ("mount", "/talk.aac"),
                ("stream", "live"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mounts")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    assert_eq!(n, 2);
    let again = b.get(&format!("/admin/servers/{id}/discover")).await;
    assert!(
        !again.body.contains("value=\"/live.mp3\""),
        "configured mounts are not offered again"
    );

    relay.kill();
    let page = b.get(&format!("/admin/servers/{id}/discover")).await;
    assert!(page.body.contains("Could not read the relay"));
}

#[tokio::test]
async fn dashboard_shows_streams_servers_mounts_and_a_chart() {
    let relay = FakeRelay::start(&[("/live.mp3", 7, Some(20))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{}\"\n[[streams]]\nname = \"live\"\nmounts = [{{ server = \"r1\", mount = \"/live.mp3\" }}]\n",
        relay.url
    ))
    .await;
    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/").await;
    let p = b.post("/admin/poll", &[]).await;
    assert_eq!(p.status, 303);
    let page = b.get("/admin/").await.body;
    assert!(page.contains("Polled 1 server"));
    assert!(
        page.contains(
            "data-live=\"stream-1-listeners\">7</span> listeners now · capacity <span data-live=\"stream-1-capacity\">20</span> · free <span data-live=\"stream-1-free\">13</span> · reserved <span data-live=\"stream-1-reserved\">0</span>"
        ),
        "{page}"
    );
    assert!(page.contains("class=\"badge state-ok\" data-live=\"server-1-state\">ok<"));
    assert!(page.contains("class=\"badge state-ok\" data-live=\"mount-1-status\">ok<"));
    assert!(page.contains("<svg class=\"chart\""));
    assert!(page.contains("<polyline"));
    assert!(
        page.contains("capacity 20</text>"),
        "the chart's capacity line"
    );
    assert!(!page.contains("candidate"), "no jargon");
}

#[tokio::test]
async fn admin_pages_do_not_change_state_on_get() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    for path in ["/admin/logout", "/admin/poll"] {
        assert_eq!(b.get(path).await.status, 405, "{path}");
    }
    assert_eq!(b.get("/admin/").await.status, 200, "still logged in");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    let idle = icecast_balancer::web::admin::IDLE_TIMEOUT_MS + 1000;
    sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at - ?")
        .bind(idle)
        .execute(app.state.db())
        .await
        .unwrap();
    assert_eq!(b.get("/admin/").await.status, 303);
}

#[tokio::test]
async fn failed_logins_are_limited_per_user_name_across_addresses() {
    let app =
        TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let mut b = Browser::new(&app);
    // Under the per-address limit each time, over the per-name one in all.
    for i in 1..=icecast_balancer::web::admin::auth::MAX_PER_USER {
        b.extra = vec![("x-forwarded-for".into(), format!("10.0.0.{i}"))];
        assert_eq!(b.login("admin", "guess").await.status, 401);
    }
    // A fresh address, right password: the user name is locked for now.
    b.extra = vec![("x-forwarded-for".into(), "10.0.1.1".into())];
    let p = b.login("admin", PASSWORD).await;
    assert_eq!(p.status, 429);
    assert!(p.headers.contains_key("retry-after"));
    assert!(p.body.contains("Too many failed logins"));
    // Another name from a fresh address is not affected.
    b.extra = vec![("x-forwarded-for".into(), "10.0.1.2".into())];
    assert_eq!(b.login("nobody", "guess").await.status, 401);
    let ips: Vec<String> = sqlx::query_scalar("SELECT DISTINCT ip FROM login_attempts")
        .fetch_all(app.state.db())
        .await
        .unwrap();
    assert!(ips.contains(&"10.0.0.3".to_string()), "{ips:?}");
}

#[tokio::test]
async fn forwarded_proto_from_an_untrusted_peer_does_not_make_the_cookie_secure() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    b.extra.push(("x-forwarded-proto".into(), "https".into()));
    let p = b.login("admin", PASSWORD).await;
    assert_eq!(p.status, 303);
    let cookie = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("icb_session="))
        .unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn writes_without_the_session_token_are_refused() {
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/").await;
    let fields = [("name", "x1"), ("url", "http://x1.example.com")];
    let mut empty = fields.to_vec();
    empty.push(("csrf_token", ""));
    assert_eq!(b.post("/admin/servers/new", &empty).await.status, 403);
    assert_eq!(
        b.post("/admin/poll", &[("csrf_token", "")]).await.status,
        403
    );

    // No token field at all, from our own origin.
    let cookies = b
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let r = b
        .client
        .post(app.url("/admin/servers/new"))
        .header("cookie", cookies)
        .header("origin", &b.origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::support::admin::encode(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Logging out needs the token too, so a foreign page cannot log us out.
    assert_eq!(
        b.post("/admin/logout", &[("csrf_token", "x")]).await.status,
        403
    );
    assert_eq!(b.get("/admin/").await.status, 200);
}

#[tokio::test]
async fn stream_edit_rename_and_the_audit_of_streams_and_mounts() {
    let (app, _relay, mut b) = one_polled_relay().await;
    b.get("/admin/streams/new").await;
    let p = b
        .post(
            "/admin/streams/new",
            &[("name", "live"), ("allow_unknown", "on")],
        )
        .await;
    let edit = p.location().to_string();
    b.get(&edit).await;
    let id = edit.split('/').nth(3).unwrap();
    b.post(
        &format!("/admin/streams/{id}/mounts"),
        &[("server", "r1"), ("mount", "/live.mp3")],
    )
    .await;

    // Invalid edit: refused on its field, values kept, nothing changed.
    let bad = b
        .post(
            &edit,
            &[("name", "main stream"), ("description", "<b>Morning</b>")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("id=\"name-error\""));
    assert!(bad.body.contains("value=\"main stream\""));
    assert!(!bad.body.contains("<b>Morning"), "escaped when re-shown");

    let p = b
        .post(
            &edit,
            &[
                ("name", "main"),
                ("description", "<b>Morning</b>"),
                ("allowed_countries", "DE AT"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    // The rename reaches the redirect path at once.
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 404);
    let page = b.get(&edit).await.body;
    assert!(page.contains("Stream main"));
    let at = page.find("name=\"allowed_countries\"").unwrap();
    assert!(
        page[at..].starts_with("name=\"allowed_countries\" value=\"AT, DE\""),
        "{}",
        &page[at..at + 80]
    );
    assert!(!page.contains("<b>Morning"));
    let exported = icecast_balancer::config_file::to_toml(
        &icecast_balancer::config_file::export(app.state.db())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(exported.contains("name = \"main\""), "{exported}");
    assert!(exported.contains("\"AT\""), "{exported}");
    assert!(exported.contains("allow_unknown = false"), "{exported}");

    // Deleting the stream takes its mount along, and says so in the log.
    b.get(&format!("/admin/streams/{id}/delete")).await;
    b.post(&format!("/admin/streams/{id}/delete"), &[]).await;
    let audit = b.get("/admin/audit").await.body;
    for needle in [
        "<td>import</td><td>create</td><td>server r1</td>",
        "<td>admin</td><td>create</td><td>stream live</td>",
        "<td>admin</td><td>create</td><td>mount live /live.mp3 on r1</td>",
        "<td>admin</td><td>update</td><td>stream main</td>",
        "name: &#34;live&#34; → &#34;main&#34;",
        "<td>admin</td><td>delete</td><td>stream main</td>",
        "<td>admin</td><td>delete</td><td>mount main /live.mp3 on r1</td>",
    ] {
        assert!(audit.contains(needle), "missing {needle:?} in:\n{audit}");
    }
    assert!(!audit.contains("<b>Morning"));
}

#[tokio::test]
async fn audit_log_is_paged_newest_first() {
    let app = TestApp::spawn().await;
    for i in 0..60 {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, object_kind, object_name) \
             VALUES (?, 'tester', 'create', 'server', ?)",
        )
        .bind(1_000_000_i64 + i)
        .bind(format!("s{i:02}"))
        .execute(app.state.db())
        .await
        .unwrap();
    }
    let mut b = Browser::logged_in(&app).await;
    let first = b.get("/admin/audit").await.body;
    assert!(first.contains("page 1 of 2"));
    assert!(first.contains("href=\"/admin/audit?page=2\""));
    let newest = first.find("<td>login</td>").unwrap();
    let s59 = first.find("server s59").unwrap();
    let s58 = first.find("server s58").unwrap();
    assert!(newest < s59 && s59 < s58, "newest first");
    assert!(!first.contains("server s10<"), "50 to a page");
    let second = b.get("/admin/audit?page=2").await.body;
    assert!(second.contains("server s10<") && second.contains("server s00<"));
    assert!(second.contains("href=\"/admin/audit?page=1\""));
    // Out of range pages show the last one rather than failing.
    assert!(
        b.get("/admin/audit?page=99")
            .await
            .body
            .contains("page 2 of 2")
    );
}

/// The explain page says in words which rule decided, with the numbers it
/// compared: weight 150 with 1 free slot of 10 beats weight 100 with 2 free
/// (10/10 at weight 150 counts as 67%, 9/10 at weight 100 as 90%), which is
/// not "the most free capacity × weight" (150 against 200), and no internal
/// fixed-point score is shown.
#[tokio::test]
async fn explain_names_the_fill_and_weight_that_decided_never_a_raw_score() {
    let heavy = FakeRelay::start(&[("/live.mp3", 9, Some(10))]).await;
    let light = FakeRelay::start(&[("/live.mp3", 8, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"heavy\"\nurl = \"{}\"\nweight = 150\n\
         [[servers]]\nname = \"light\"\nurl = \"{}\"\nweight = 100\n\
         [[streams]]\nname = \"live\"\nmounts = [{{ server = \"heavy\", mount = \"/live.mp3\" }}, \
         {{ server = \"light\", mount = \"/live.mp3\" }}]\n",
        heavy.url, light.url
    ))
    .await;
    app.poll().await;
    let mut b = Browser::logged_in(&app).await;
    let p = b.get("/admin/explain?stream=live&ip=203.0.113.7").await;
    assert_eq!(p.status, 200, "{}", p.body);
    for text in [
        "→ <strong>heavy</strong>",
        "the least full for its weight: 10 of 10 slots with this listener (100%), \
         weight 150 counts that as 67%",
        "fuller for its weight than heavy: 9 of 10 slots with this listener (90%), \
         against 10 of 10 slots with this listener (100%), weight 150 counts that as 67%",
    ] {
        assert!(p.body.contains(text), "{text:?} missing in {}", p.body);
    }
    assert!(!p.body.contains("most free capacity"), "{}", p.body);
    let (_, table) = p.body.split_once("in selection order").unwrap();
    let long_number = table
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 7);
    assert_eq!(long_number, None, "a raw score on the page");
}
