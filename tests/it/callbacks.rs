//! Icecast URL-auth callbacks (`POST /icecast_balancer/relays/{server}/auth`)
//! from a stand-in relay: credentials, counting, tokens, reconciliation.
//! The same against real Icecast 2.4.4 and Icecast-KH is in `e2e_callbacks`.

use std::time::Duration;

use crate::support::app::{ResponseExt, TestApp};
use crate::support::fake_relay::FakeRelay;

pub const TOKEN: &str = "cb-0123456789abcdef";

/// One relay `r1` with a callback token whose `/live.mp3` (max 2, nobody
/// on it) is the stream `live`, polled once.
async fn app_with_relay(max: u32) -> (TestApp, FakeRelay) {
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(max))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{}\"\ncallback_token = \"{TOKEN}\"\n\
         [[servers]]\nname = \"r2\"\nurl = \"http://127.0.0.1:9\"\nenabled = false\n\
         [[streams]]\nname = \"live\"\nmounts = [{{ server = \"r1\", mount = \"/live.mp3\" }}]\n",
        relay.url
    ))
    .await;
    app.poll().await;
    (app, relay)
}

/// A callback as Icecast sends it: form-encoded, with basic auth when
/// `auth` is given.
pub async fn callback(
    app: &TestApp,
    server: &str,
    auth: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut req = crate::support::app::client()
        .post(app.url(&format!("/icecast_balancer/relays/{server}/auth")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    req.send().await.unwrap()
}

async fn add(app: &TestApp, client: &str, uri: &str) -> reqwest::Response {
    let fields = [
        ("action", "listener_add"),
        ("server", "127.0.0.1"),
        ("port", "8000"),
        ("client", client),
        ("mount", uri),
        ("user", ""),
        ("pass", ""),
        ("ip", "127.0.0.1"),
        ("agent", "mpg123/1.31"),
    ];
    callback(app, "r1", Some(("r1", TOKEN)), &fields).await
}

async fn remove(app: &TestApp, client: &str) -> reqwest::Response {
    let fields = [
        ("action", "listener_remove"),
        ("client", client),
        ("mount", "/live.mp3"),
        ("duration", "3"),
    ];
    callback(app, "r1", Some(("r1", TOKEN)), &fields).await
}

/// (listeners, reserved) of `r1`'s `/live.mp3` as `/api/status` says.
async fn counts(app: &TestApp) -> (u64, u64) {
    let st = app.api_status().await;
    let m = &st["streams"][0]["mounts"][0];
    (
        m["listeners"].as_u64().unwrap(),
        m["reserved"].as_u64().unwrap(),
    )
}

/// The path and query of a redirect's `Location`, as the relay echoes it.
fn uri_of(location: &str) -> String {
    let rest = location.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

#[tokio::test]
async fn callbacks_without_the_relays_own_credentials_are_refused_and_change_nothing() {
    let (app, _relay) = app_with_relay(2).await;
    let fields = [
        ("action", "listener_add"),
        ("client", "1"),
        ("mount", "/live.mp3"),
    ];
    for (server, auth) in [
        ("r1", None),
        ("r1", Some(("r1", "cb-0123456789abcdeX"))),
        ("r1", Some(("r2", TOKEN))),
        ("r1", Some(("r1x", TOKEN))),
        // r2 has no token: nothing authenticates as it.
        ("r2", Some(("r2", ""))),
        ("nosuch", Some(("nosuch", TOKEN))),
    ] {
        let r = callback(&app, server, auth, &fields).await;
        assert_eq!(r.status(), 401, "{server} {auth:?}");
        assert!(r.headers().get("icecast-auth-user").is_none());
        assert!(r.headers().contains_key("www-authenticate"));
    }
    assert_eq!(counts(&app).await, (0, 0), "nothing counted");
    let r = add(&app, "1", "/live.mp3").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["icecast-auth-user"], "1");
    assert_eq!(r.headers()["x-icecast-auth-result"], "ok");
    assert_eq!(counts(&app).await, (1, 0));
    // Garbage from an authenticated relay: a 400, nothing counted.
    let r = callback(
        &app,
        "r1",
        Some(("r1", TOKEN)),
        &[("action", "listener_add")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(counts(&app).await, (1, 0));
}

#[tokio::test]
async fn a_token_confirms_its_reservation_and_a_remove_frees_the_slot_at_once() {
    let (app, _relay) = app_with_relay(2).await;
    let first = app
        .get("/icecast_balancer/live/?player=x")
        .await
        .redirect_target();
    assert!(first.contains("/live.mp3?player=x&ibt="), "{first}");
    assert_eq!(counts(&app).await, (0, 1), "reserved until the relay says");
    assert_eq!(add(&app, "10", &uri_of(&first)).await.status(), 200);
    assert_eq!(
        counts(&app).await,
        (1, 0),
        "the reservation became the listener"
    );
    let second = app.sent_to("live").await;
    assert_eq!(counts(&app).await, (1, 1));
    // Full: one listener and one reservation on a mount of 2.
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    // The listener leaves: its slot is free now, not at the next poll.
    assert_eq!(remove(&app, "10").await.status(), 200);
    assert_eq!(counts(&app).await, (0, 1));
    let third = app.sent_to("live").await;
    assert_eq!(counts(&app).await, (0, 2));
    // The first token again (a replay) is a listener, and confirms nothing.
    add(&app, "11", &uri_of(&first)).await;
    assert_eq!(counts(&app).await, (1, 2));
    add(&app, "12", &uri_of(&second)).await;
    add(&app, "13", &uri_of(&third)).await;
    assert_eq!(counts(&app).await, (3, 0));
}

#[tokio::test]
async fn forged_or_foreign_tokens_and_relay_pulls_confirm_nothing() {
    let (app, _relay) = app_with_relay(5).await;
    let sent = app.sent_to("live").await;
    let uri = uri_of(&sent);
    let forged = format!("{}A", &uri[..uri.len() - 1]);
    let forged = if forged == uri {
        format!("{}B", &uri[..uri.len() - 1])
    } else {
        forged
    };
    add(&app, "1", &forged).await;
    assert_eq!(
        counts(&app).await,
        (1, 1),
        "a listener; the reservation stays"
    );
    add(
        &app,
        "2",
        "/live.mp3?ibt=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(counts(&app).await, (2, 1));
    let pull = [
        ("action", "listener_add"),
        ("client", "3"),
        ("mount", uri.as_str()),
        ("agent", "Icecast 2.4.4"),
    ];
    let r = callback(&app, "r1", Some(("r1", TOKEN)), &pull).await;
    assert_eq!(r.status(), 200, "a relay pulling the stream is admitted");
    assert_eq!(counts(&app).await, (2, 1), "but is no listener");
    // An expired token is a plain listener.
    app.advance(Duration::from_secs(600));
    add(&app, "4", &uri).await;
    assert_eq!(counts(&app).await.0, 3);
}

#[tokio::test]
async fn each_poll_corrects_the_callback_counts_to_the_relays_and_reports_the_drift() {
    let (app, relay) = app_with_relay(10).await;
    for c in ["1", "2", "3"] {
        add(&app, c, "/live.mp3").await;
    }
    // The relay restarted: its removes were lost, it has one listener.
    app.advance(Duration::from_secs(30));
    relay.set_listeners("/live.mp3", 1);
    app.poll().await;
    assert_eq!(counts(&app).await.0, 1);
    let st = app.api_status().await;
    assert_eq!(st["streams"][0]["mounts"][0]["callback_drift"], -2);
    assert_eq!(st["servers"][0]["callbacks"]["drift"], -2);
    assert!(st["servers"][0]["callbacks"]["last_callback_at"].is_i64());
    // Listeners nobody reported (callbacks set up after they came).
    app.advance(Duration::from_secs(30));
    relay.set_listeners("/live.mp3", 4);
    app.poll().await;
    assert_eq!(counts(&app).await.0, 4);
    // Callbacks go on from the corrected count.
    remove(&app, "1").await;
    assert_eq!(counts(&app).await.0, 3);
}

#[tokio::test]
async fn a_relay_without_a_token_is_counted_by_polls_and_redirected_as_before() {
    let relay = FakeRelay::start(&[("/live.mp3", 1, Some(5))]).await;
    let app = TestApp::spawn().await;
    app.import_one_relay(&relay.url).await;
    app.poll().await;
    let sent = app
        .get("/icecast_balancer/live/?x=1")
        .await
        .redirect_target();
    assert!(sent.ends_with("/live.mp3?x=1"), "no token: {sent}");
    let st = app.api_status().await;
    assert!(st["servers"][0].get("callbacks").is_none());
    assert_eq!(st["streams"][0]["mounts"][0]["listeners"], 1);
}

/// Everything the audit log holds, as text.
async fn audit_text(app: &TestApp) -> String {
    let mut conn = app.state.db().acquire().await.unwrap();
    let rows = icecast_balancer::store::audit::page(&mut conn, 0, 100)
        .await
        .unwrap();
    format!("{rows:?}")
}

#[tokio::test]
async fn the_callback_token_is_write_only() {
    use crate::support::admin::Browser;
    use icecast_balancer::config_file;
    let (app, _relay) = app_with_relay(2).await;
    let db = app.state.db();
    let plain = config_file::to_toml(&config_file::export(db).await.unwrap()).unwrap();
    assert!(
        !plain.contains(TOKEN) && !plain.contains("callback_token"),
        "{plain}"
    );
    let secret = config_file::to_toml(&config_file::export_with(db, true).await.unwrap()).unwrap();
    assert!(
        secret.contains(&format!("callback_token = \"{TOKEN}\"")),
        "{secret}"
    );
    // The export without it, imported back, keeps the token.
    app.import(&plain).await;
    assert_eq!(add(&app, "1", "/live.mp3").await.status(), 200);
    // A bad token is refused with its entry named, and changes nothing.
    let bad = config_file::parse(&plain.replacen(
        "name = \"r1\"",
        "name = \"r1\"\ncallback_token = \"short\"",
        1,
    ))
    .unwrap();
    let e = config_file::apply(app.state.writer(), &bad)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("servers[0] \"r1\": callback_token: must be 16"),
        "{e}"
    );
    assert_eq!(add(&app, "2", "/live.mp3").await.status(), 200);

    // The admin form never shows it, keeps it when left blank, replaces it.
    let mut b = Browser::logged_in(&app).await;
    let id = app.state.snapshot().servers[0].id;
    let page = b.get(&format!("/admin/servers/{id}/edit")).await;
    assert!(!page.body.contains(TOKEN));
    assert!(page.body.contains("A token is set"), "{}", page.body);
    let form = |token: &'static str| {
        vec![
            ("name", "r1"),
            ("url", "http://127.0.0.1:9"),
            ("weight", "100"),
            ("enabled", "on"),
            ("callback_token", token),
        ]
    };
    let saved = b
        .post(&format!("/admin/servers/{id}/edit"), &form(""))
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(add(&app, "3", "/live.mp3").await.status(), 200, "kept");
    let bad = b
        .post(&format!("/admin/servers/{id}/edit"), &form("tiny"))
        .await;
    assert_eq!(bad.status, 422);
    assert!(!bad.body.contains("tiny"), "a rejected token is not echoed");
    let new = "cb-new-0123456789abcdef";
    b.post(&format!("/admin/servers/{id}/edit"), &form(new))
        .await;
    assert_eq!(add(&app, "4", "/live.mp3").await.status(), 401, "old token");
    let fields = [
        ("action", "listener_add"),
        ("client", "5"),
        ("mount", "/live.mp3"),
    ];
    let r = callback(&app, "r1", Some(("r1", new)), &fields).await;
    assert_eq!(r.status(), 200);
    let audit = audit_text(&app).await;
    assert!(audit.contains("callback_token = (changed)"), "{audit}");
    assert!(!audit.contains(TOKEN) && !audit.contains(new), "{audit}");
}

/// A relay `r1` listing only `/other.mp3`, whose `/hidden.mp3` (max 2 in
/// the configuration) is the stream `live`; `token` gives `r1` callbacks.
async fn app_with_hidden_mount(token: bool) -> (TestApp, FakeRelay) {
    let relay = FakeRelay::start(&[("/other.mp3", 0, Some(10))]).await;
    let app = TestApp::spawn_with(|s| s.full_recheck = Duration::ZERO).await;
    let token = if token {
        format!("callback_token = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    app.import(&format!(
        "[[servers]]\nname = \"r1\"\nurl = \"{}\"\n{token}\
         [[streams]]\nname = \"live\"\n\
         mounts = [{{ server = \"r1\", mount = \"/hidden.mp3\", max_listeners = 2 }}]\n",
        relay.url
    ))
    .await;
    app.poll().await;
    (app, relay)
}

async fn mount_event(app: &TestApp, action: &str) -> reqwest::Response {
    let fields = [("action", action), ("mount", "/hidden.mp3")];
    callback(app, "r1", Some(("r1", TOKEN)), &fields).await
}

/// Issue 21, item 5: a hidden mount (`<hidden>1</hidden>`) is never in
/// load.xsl. With callbacks it is balanced once the relay shows it
/// serving: counts from the callbacks, the limit from the configuration.
#[tokio::test]
async fn a_hidden_mount_is_balanced_through_callbacks() {
    let (app, _relay) = app_with_hidden_mount(true).await;
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("hidden"));
    assert_eq!(mount_event(&app, "mount_add").await.status(), 200);
    let mut first = String::new();
    crate::support::eventually(Duration::from_secs(5), async || {
        let r = app.get("/icecast_balancer/live/").await;
        if r.status() == 302 {
            first = r.redirect_target();
        }
        r.status() == 302
    })
    .await;
    assert!(first.contains("/hidden.mp3?ibt="), "{first}");
    // The listener arrives with its token; a direct one fills the mount.
    let uri = &first[first.find("/hidden.mp3").unwrap()..];
    assert_eq!(add(&app, "1", uri).await.status(), 200);
    assert_eq!(add(&app, "2", "/hidden.mp3").await.status(), 200);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    // A poll (which cannot see the mount) does not undo the counts.
    app.advance(Duration::from_secs(2));
    app.poll().await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    // One leaves: its slot is free at once.
    assert_eq!(remove(&app, "2").await.status(), 200);
    let again = app.get("/icecast_balancer/live/").await.redirect_target();
    assert!(again.contains("/hidden.mp3?ibt="), "{again}");
    // The source goes: nobody is sent there.
    assert_eq!(mount_event(&app, "mount_remove").await.status(), 200);
    crate::support::eventually(Duration::from_secs(5), async || {
        app.get("/icecast_balancer/live/").await.status() == 503
    })
    .await;
}

/// Without callbacks a hidden mount cannot be balanced: the 503 says why
/// instead of only "full or down".
#[tokio::test]
async fn without_callbacks_the_503_names_unlisted_mounts_as_maybe_hidden() {
    let (app, _relay) = app_with_hidden_mount(false).await;
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("not listed by their relays"), "{text}");
    assert!(text.contains("<hidden>1</hidden>"), "{text}");
    assert_eq!(mount_event(&app, "mount_add").await.status(), 401);
    app.poll().await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}
