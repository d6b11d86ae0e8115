//! Issue 9, against fake relays: a slot counted once across a poll, one
//! client one slot, HTTPS listeners kept off http:// relays, a down relay's
//! return noticed within seconds, and the mount limit in the config file.
//! Issue 21: a connection not yet counted as a listener, a busy relay's 404.

use std::time::Duration;

use crate::support::app::{self, ResponseExt, SummaryExt, TestApp};
use crate::support::eventually;
use crate::support::fake_relay::{FakeRelay, Mode};

fn one_relay_config(relay: &FakeRelay, extra: &str) -> String {
    app::one_relay_config("relay-a", &relay.url, extra)
}

fn load(listeners: u32, max: u32, connections: Option<u32>) -> String {
    let root = match connections {
        Some(c) => format!("<load listener_connections=\"{c}\">"),
        None => "<load>".into(),
    };
    format!(
        "{root}<mount name=\"/live.mp3\" listeners=\"{listeners}\" max=\"{max}\">{}</mount></load>",
        max - listeners
    )
}

async fn reserved(app: &TestApp) -> u64 {
    app.api_status().await["streams"][0]["mounts"][0]["reserved"]
        .as_u64()
        .unwrap()
}

/// A poll within the grace that already counts the redirected listeners
/// frees their reservations: the old accounting counted them twice and
/// answered 503 with a slot free.
#[tokio::test]
async fn a_poll_that_counts_the_arrivals_frees_their_reservations() {
    // With listener_connections (load.xsl of this project) and without
    // (an older load.xsl: the growth of `listeners` tells).
    for connections in [true, false] {
        let relay = FakeRelay::start(&[]).await;
        let conn = |n| connections.then_some(n);
        relay.set_mode(Mode::Body(load(0, 4, conn(10))));
        let app = TestApp::spawn().await;
        app.import(&one_relay_config(&relay, "")).await;
        app.poll().await;
        for _ in 0..3 {
            app.sent_to("live").await;
        }
        assert_eq!(reserved(&app).await, 3);
        relay.set_mode(Mode::Body(load(3, 4, conn(13))));
        app.advance(Duration::from_millis(500));
        app.poll().await;
        assert_eq!(reserved(&app).await, 0, "connections: {connections}");
        app.sent_to("live").await;
        let r = app.get("/icecast_balancer/live/").await;
        assert_eq!(r.status(), 503, "exactly the limit, never more");
    }
}

/// Of redirects the relay has not seen arrive, those within the grace
/// still count: the poll may simply have come first.
#[tokio::test]
async fn redirects_not_yet_arrived_keep_their_slots() {
    let relay = FakeRelay::start(&[]).await;
    relay.set_mode(Mode::Body(load(0, 3, Some(0))));
    let app = TestApp::spawn().await;
    app.import(&one_relay_config(&relay, "")).await;
    app.poll().await;
    app.sent_to("live").await;
    app.sent_to("live").await;
    relay.set_mode(Mode::Body(load(1, 3, Some(1))));
    app.advance(Duration::from_millis(500));
    app.poll().await;
    assert_eq!(reserved(&app).await, 1);
    app.sent_to("live").await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

/// Issue 21: Icecast-KH counts a connection (`listener_connections`)
/// before the listener (`listeners`, up to a few hundred milliseconds
/// later). A poll in that gap, like the re-poll of a stream that looks
/// full, must not free the slot the listener is taking.
#[tokio::test]
async fn a_connection_not_yet_counted_as_a_listener_keeps_its_slot() {
    let relay = FakeRelay::start(&[]).await;
    relay.set_mode(Mode::Body(load(1, 2, Some(10))));
    let app = TestApp::spawn_with(|s| s.full_recheck = Duration::ZERO).await;
    app.import(&one_relay_config(&relay, "")).await;
    app.poll().await;
    app.sent_to("live").await;
    // Connected, not yet a listener.
    relay.set_mode(Mode::Body(load(1, 2, Some(11))));
    app.advance(Duration::from_millis(300));
    app.poll().await;
    assert_eq!(reserved(&app).await, 1, "the slot is still being taken");
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    // The relay counts the listener: one slot, counted once.
    relay.set_mode(Mode::Body(load(2, 2, Some(11))));
    app.advance(Duration::from_millis(300));
    app.poll().await;
    assert_eq!(reserved(&app).await, 0);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

/// Issue 21: Icecast-KH answers 404 for a stylesheet while more than 40
/// stylesheet requests are queued. A relay that served load.xsl before is
/// busy on one such answer, not down; on a second in a row it fails as
/// before, and one that never served it fails at once.
#[tokio::test]
async fn a_404_for_load_xsl_it_served_before_is_busy_not_down() {
    use icecast_balancer::domain::HealthState;
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&one_relay_config(&relay, "")).await;
    assert!(app.poll().await.server("relay-a").ok);
    relay.set_mode(Mode::NotFound);
    let busy = app.poll().await;
    let s = busy.server("relay-a");
    assert_eq!(s.state, HealthState::Up, "{s:?}");
    assert!(
        s.error.as_deref().is_some_and(|e| e.contains("busy")),
        "{s:?}"
    );
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 302);
    let gone = app.poll().await;
    assert_eq!(gone.server("relay-a").state, HealthState::Down);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);

    let never = FakeRelay::start(&[("/live.mp3", 0, Some(10))]).await;
    never.set_mode(Mode::NotFound);
    let app = TestApp::spawn().await;
    app.import(&one_relay_config(&never, "")).await;
    let s = app.poll().await;
    assert!(
        s.server("relay-a")
            .error
            .as_deref()
            .is_some_and(|e| e.contains("install"))
    );
}

#[tokio::test]
async fn a_repeat_from_the_same_player_takes_no_second_slot() {
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(10))]).await;
    let app = TestApp::spawn_with(|s| s.max_reservations_per_client = 2).await;
    app.import(&one_relay_config(&relay, "")).await;
    app.poll().await;
    let get = async |agent: &str| {
        let r = app
            .get_with("/icecast_balancer/live/", "user-agent", agent)
            .await;
        r.redirect_target()
    };
    let first = get("VLC/3.0.20").await;
    assert_eq!(get("VLC/3.0.20").await, first);
    assert_eq!(reserved(&app).await, 1, "a retry is not a second listener");
    get("mpv/0.38").await;
    assert_eq!(reserved(&app).await, 2, "another player behind the address");
    for i in 0..12 {
        get(&format!("flood-{i}")).await;
    }
    assert_eq!(reserved(&app).await, 2, "at most 2 per address and stream");
    // After the grace the address is a new client again.
    app.advance(Duration::from_secs(6));
    get("VLC/3.0.20").await;
    assert_eq!(reserved(&app).await, 3);
}

#[tokio::test]
async fn https_listeners_go_to_https_relays_and_never_to_http_when_required() {
    let plain = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let tls = FakeRelay::start(&[("/live.mp3", 90, Some(100))]).await;
    let config = |require: bool| {
        format!(
            "[[servers]]\nname = \"plain\"\nurl = \"{}\"\n[[servers]]\nname = \"tls\"\nurl = \"{}\"\n\
             https_url = \"https://tls.example.com\"\n[[streams]]\nname = \"live\"\n\
             require_https = {require}\nmounts = [{{ server = \"plain\", mount = \"/live.mp3\" }}, \
             {{ server = \"tls\", mount = \"/live.mp3\" }}]\n",
            plain.url, tls.url
        )
    };
    let app =
        TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    app.import(&config(false)).await;
    app.poll().await;
    let https = async || {
        app.get_with("/icecast_balancer/live/", "x-forwarded-proto", "https")
            .await
    };
    // Emptier, but http://: an https listener still goes to the https relay.
    assert_eq!(
        https().await.redirect_target(),
        "https://tls.example.com/live.mp3"
    );
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", plain.url));
    tls.set_listeners("/live.mp3", 100);
    app.poll().await;
    // Full: without the setting, http:// is better than nothing…
    assert_eq!(
        https().await.redirect_target(),
        format!("{}/live.mp3", plain.url)
    );
    // …with it, an https listener is told there is no room.
    app.import(&config(true)).await;
    assert_eq!(https().await.status(), 503);
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", plain.url));
    let exported = icecast_balancer::config_file::export(app.state.db())
        .await
        .unwrap();
    let text = icecast_balancer::config_file::to_toml(&exported).unwrap();
    assert!(text.contains("require_https = true"), "{text}");
}

#[tokio::test]
async fn a_relay_that_comes_back_is_used_within_seconds_not_intervals() {
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(10))]).await;
    relay.set_mode(Mode::Status(500));
    let app = TestApp::spawn_with(|s| {
        // One regular round at start, the next in an hour: only the quick
        // re-check can notice the return.
        s.poll_interval = Duration::from_secs(3600);
        s.down_recheck = RECHECK;
    })
    .await;
    app.import(&one_relay_config(&relay, "")).await;
    app.poll().await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    let hits = relay.hits();
    relay.set_mode(Mode::LoadXsl);
    let back = eventually(Duration::from_secs(20), async || {
        app.get("/icecast_balancer/live/").await.status() == 302
    })
    .await;
    assert!(back, "the relay's return was not noticed");
    // Healthy now: the quick re-check leaves it alone.
    let after = relay.hits();
    assert!(after > hits);
    app.state.recheck_down().await.unwrap();
    assert_eq!(relay.hits(), after, "a healthy relay is re-checked");
    tokio::time::sleep(RECHECK * 4).await;
    assert_eq!(
        relay.hits(),
        after,
        "the re-check loop asked a healthy relay"
    );
}

const RECHECK: Duration = Duration::from_millis(100);

#[tokio::test]
async fn a_mount_limit_in_the_config_applies_when_the_relay_reports_none() {
    // status-json.xsl hides max-listeners: the configured 2 is the limit.
    let relay = FakeRelay::start(&[("/live.mp3", 0, None)]).await;
    relay.set_mode(Mode::StatusJsonOnly);
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"relay-a\"\nurl = \"{}\"\n[[streams]]\nname = \"live\"\n\
         mounts = [{{ server = \"relay-a\", mount = \"/live.mp3\", max_listeners = 2 }}]\n",
        relay.url
    ))
    .await;
    app.poll().await;
    app.sent_to("live").await;
    app.sent_to("live").await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    let status = app.api_status().await;
    let mount = &status["streams"][0]["mounts"][0];
    assert_eq!(mount["max"], 2);
    assert_eq!(mount["max_configured"], 2);
    let exported = icecast_balancer::config_file::export(app.state.db())
        .await
        .unwrap();
    let text = icecast_balancer::config_file::to_toml(&exported).unwrap();
    assert!(text.contains("max_listeners = 2"), "{text}");
    // A bad limit is refused, naming the entry, and changes nothing.
    let bad = icecast_balancer::config_file::parse(&format!(
        "[[servers]]\nname = \"relay-a\"\nurl = \"{}\"\n[[streams]]\nname = \"live\"\n\
         mounts = [{{ server = \"relay-a\", mount = \"/live.mp3\", max_listeners = 0 }}]\n",
        relay.url
    ));
    let refused = match bad {
        Err(e) => e.to_string(),
        Ok(f) => icecast_balancer::config_file::apply(app.state.writer(), &f)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(refused.contains("max_listeners"), "{refused}");
    let again = icecast_balancer::config_file::export(app.state.db())
        .await
        .unwrap();
    assert_eq!(
        icecast_balancer::config_file::to_toml(&again).unwrap(),
        text
    );
}

/// The per-client book forgets clients once their grace has passed, on
/// its own schedule: also in cron mode (`--poll-interval 0`) and without
/// the down-relay re-check (`--down-recheck 0`), which used to be the only
/// sweeper, so every new client stayed in memory for ever.
#[tokio::test]
async fn the_client_book_is_swept_without_polls_or_rechecks() {
    let relay = FakeRelay::start(&[("/live.mp3", 0, Some(1000))]).await;
    let app = TestApp::spawn_with(|s| {
        s.poll_interval = Duration::ZERO;
        s.down_recheck = Duration::ZERO;
        s.max_reservations_per_client = 2;
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.client_sweep = Duration::from_millis(50);
    })
    .await;
    app.import(&one_relay_config(&relay, "")).await;
    app.poll().await;
    for i in 0..20 {
        // Each in a network of its own: a network has a budget too.
        let ip = format!("10.{i}.0.7");
        let r = app
            .get_with("/icecast_balancer/live/", "x-forwarded-for", &ip)
            .await;
        assert_eq!(r.status(), 302);
    }
    assert_eq!(app.state.clients().len(), 20);
    // Within the grace they are kept: a retry must find them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.state.clients().len(), 20);
    app.advance(Duration::from_secs(6));
    let swept = eventually(Duration::from_secs(5), async || {
        app.state.clients().is_empty()
    })
    .await;
    assert!(swept, "{} clients left", app.state.clients().len());
}
