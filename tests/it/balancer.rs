//! The listener-facing HTTP contract against fake relays: redirects,
//! reservations, 503/fallback, HEAD, query strings, HTTPS, playlists, the
//! poll hook, status endpoints, and misbehaving relays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::app::{ResponseExt, SummaryExt, TestApp};
use crate::support::eventually;
use crate::support::fake_relay::{FakeRelay, Mode};

fn two_relays_config(a: &FakeRelay, b: &FakeRelay) -> String {
    format!(
        r#"
[[servers]]
name = "relay-a"
url = "{a}"
[[servers]]
name = "relay-b"
url = "{b}"
https_url = "https://b.example.com"
[[streams]]
name = "live"
description = "Main programme"
mounts = [{{ server = "relay-a", mount = "/live.mp3" }}, {{ server = "relay-b", mount = "/live.mp3" }}]
"#,
        a = a.url,
        b = b.url
    )
}

async fn setup(
    a_mounts: &[(&str, u32, Option<u32>)],
    b_mounts: &[(&str, u32, Option<u32>)],
) -> (TestApp, FakeRelay, FakeRelay) {
    let a = FakeRelay::start(a_mounts).await;
    let b = FakeRelay::start(b_mounts).await;
    let app = TestApp::spawn_with(|s| {
        s.poll_token = Some("s3cret-token".into());
        s.api_token = Some("api-token".into());
    })
    .await;
    app.import(&two_relays_config(&a, &b)).await;
    app.poll().await;
    (app, a, b)
}

#[tokio::test]
async fn redirects_to_the_relay_with_most_free_slots() {
    let (app, a, b) = setup(
        &[("/live.mp3", 90, Some(100))],
        &[("/live.mp3", 10, Some(100))],
    )
    .await;
    for path in ["/icecast_balancer/live/", "/icecast_balancer/live"] {
        let r = app.get(path).await;
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.redirect_target(), format!("{}/live.mp3", b.url));
    }
    drop(a);
}

/// A listener's plain GET is answered without the router; an escaped name
/// goes through it. Both must be the same redirect, with the same slot
/// accounting.
#[tokio::test]
async fn an_escaped_stream_name_is_the_same_stream() {
    let (app, a, b) = setup(
        &[("/live.mp3", 90, Some(100))],
        &[("/live.mp3", 10, Some(100))],
    )
    .await;
    for path in [
        "/icecast_balancer/l%69ve/",
        "/icecast_balancer/%6C%69%76%65",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.redirect_target(), format!("{}/live.mp3", b.url), "{path}");
    }
    let r = app.get("/icecast_balancer/n%6Fpe/").await;
    assert_eq!(r.status(), 404);
    // The answer does not repeat the name (a link could make it say anything).
    assert!(r.text().await.unwrap().contains("No stream of that name"));
    let m = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "icecast_balancer_redirects_total{stream=\"live\",outcome=\"redirect\"} 2",
        "icecast_balancer_redirects_total{stream=\"\",outcome=\"unknown_stream\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing in\n{m}");
    }
    drop(a);
}

#[tokio::test]
async fn query_string_is_kept() {
    let (app, _a, b) = setup(
        &[("/live.mp3", 90, Some(100))],
        &[("/live.mp3", 10, Some(100))],
    )
    .await;
    let r = app.get("/icecast_balancer/live/?token=abc&x=1").await;
    assert_eq!(
        r.redirect_target(),
        format!("{}/live.mp3?token=abc&x=1", b.url)
    );
}

#[tokio::test]
async fn unknown_stream_is_404_with_a_clear_text() {
    let (app, _a, _b) = setup(&[], &[]).await;
    let r = app.get("/icecast_balancer/nope/").await;
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("No stream of that name here")
    );
}

#[tokio::test]
async fn burst_never_overfills_and_then_503() {
    // 3 + 5 free slots: exactly 8 listeners are placed, each relay filled
    // to its max, and everyone after that gets a 503 with Retry-After.
    let (app, a, b) = setup(&[("/live.mp3", 7, Some(10))], &[("/live.mp3", 5, Some(10))]).await;
    let mut per_relay: HashMap<String, u32> = HashMap::new();
    let mut unavailable = 0;
    let requests = (0..30).map(|_| app.client.get(app.url("/icecast_balancer/live/")).send());
    for r in futures_join_all(requests).await {
        let r = r.unwrap();
        match r.status().as_u16() {
            302 => {
                let loc = r.redirect_target();
                *per_relay.entry(loc).or_default() += 1;
            }
            503 => {
                assert!(r.headers().contains_key("retry-after"));
                assert!(
                    r.text()
                        .await
                        .unwrap()
                        .contains("No relay available at the moment")
                );
                unavailable += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(per_relay.get(&format!("{}/live.mp3", a.url)), Some(&3));
    assert_eq!(per_relay.get(&format!("{}/live.mp3", b.url)), Some(&5));
    assert_eq!(unavailable, 22);

    let status = app.api_status().await;
    let reserved: u64 = status["streams"][0]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reserved"].as_u64().unwrap())
        .sum();
    assert_eq!(reserved, 8);
}

async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn reservations_are_released_by_a_later_poll() {
    let (app, a, _b) = setup(&[("/live.mp3", 0, Some(2))], &[]).await;
    let target = format!("{}/live.mp3", a.url);
    assert_eq!(app.sent_to("live").await, target);
    assert_eq!(app.sent_to("live").await, target);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    // Only one of the two actually connected. A poll that starts after the
    // connect grace counts it and drops both reservations.
    a.set_listeners("/live.mp3", 1);
    assert_eq!(
        app.state.settings().reservation_grace,
        Duration::from_secs(5)
    );
    app.advance(Duration::from_millis(6100));
    app.poll().await;
    assert_eq!(app.sent_to("live").await, target);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

#[tokio::test]
async fn a_poll_within_the_grace_keeps_reservations() {
    let (app, a, _b) = setup(&[("/live.mp3", 0, Some(1))], &[]).await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
    // The listener may not have connected yet: this poll cannot tell.
    app.poll().await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

#[tokio::test]
async fn fallback_url_when_full() {
    let a = FakeRelay::start(&[("/live.mp3", 10, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        r#"
[[servers]]
name = "a"
url = "{}"
[[streams]]
name = "live"
fallback_url = "https://example.com/full.html"
mounts = [{{ server = "a", mount = "/live.mp3" }}]
"#,
        a.url
    ))
    .await;
    app.poll().await;
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(r.redirect_target(), "https://example.com/full.html");
}

#[tokio::test]
async fn head_answers_like_get_without_reserving() {
    let (app, a, _b) = setup(&[("/live.mp3", 0, Some(1))], &[]).await;
    for _ in 0..3 {
        let r = app.head("/icecast_balancer/live/").await;
        assert_eq!(r.redirect_target(), format!("{}/live.mp3", a.url));
    }
    // The one slot is still free for a real listener.
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
    let r = app.head("/icecast_balancer/live/").await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn https_url_only_for_https_requests_from_trusted_proxies() {
    let b = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let config = format!(
        r#"
[[servers]]
name = "b"
url = "{}"
https_url = "https://b.example.com"
[[streams]]
name = "live"
mounts = [{{ server = "b", mount = "/live.mp3" }}]
"#,
        b.url
    );
    let untrusted = TestApp::spawn().await;
    untrusted.import(&config).await;
    untrusted.poll().await;
    let r = untrusted
        .get_with("/icecast_balancer/live/", "x-forwarded-proto", "https")
        .await;
    assert_eq!(r.redirect_target(), format!("{}/live.mp3", b.url));

    let trusted =
        TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    trusted.import(&config).await;
    trusted.poll().await;
    let r = trusted
        .get_with("/icecast_balancer/live/?a=b", "x-forwarded-proto", "https")
        .await;
    assert_eq!(r.redirect_target(), "https://b.example.com/live.mp3?a=b");
    // Forwarded is not what this proxy was declared to write.
    let r = trusted
        .get_with(
            "/icecast_balancer/live/",
            "forwarded",
            "for=203.0.113.5;proto=https",
        )
        .await;
    assert_eq!(r.redirect_target(), format!("{}/live.mp3", b.url));

    let forwarded = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.forwarded_header = icecast_balancer::config::ForwardedHeader::Forwarded;
    })
    .await;
    forwarded.import(&config).await;
    forwarded.poll().await;
    let r = forwarded
        .get_with(
            "/icecast_balancer/live/",
            "forwarded",
            "for=203.0.113.5;proto=https",
        )
        .await;
    assert_eq!(r.redirect_target(), "https://b.example.com/live.mp3");
}

/// The redirect and the playlist are the same choice: an HTTPS listener
/// (through a trusted proxy) is sent to the relay with an https_url even
/// when a plain-HTTP one is emptier, and the .m3u, .pls and HEAD list that
/// relay first too.
#[tokio::test]
async fn an_https_listener_gets_the_same_first_relay_from_every_answer() {
    let (app, _a, _b) = {
        let a = FakeRelay::start(&[("/live.mp3", 10, Some(100))]).await;
        let b = FakeRelay::start(&[("/live.mp3", 60, Some(100))]).await;
        let app = TestApp::spawn_with(|s| {
            s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        })
        .await;
        app.import(&two_relays_config(&a, &b)).await;
        app.poll().await;
        (app, a, b)
    };
    let proto = [("x-forwarded-proto", "https")];
    let m3u = app
        .get_with_headers("/icecast_balancer/live.m3u", &proto)
        .await
        .text()
        .await
        .unwrap();
    let first = m3u.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(first, "https://b.example.com/live.mp3", "{m3u}");
    let pls = app
        .get_with_headers("/icecast_balancer/live.pls", &proto)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        pls.contains("File1=https://b.example.com/live.mp3"),
        "{pls}"
    );
    let head = app
        .client
        .head(app.url("/icecast_balancer/live/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(head.redirect_target(), "https://b.example.com/live.mp3");
    let r = app
        .get_with_headers("/icecast_balancer/live/", &proto)
        .await;
    assert_eq!(r.redirect_target(), "https://b.example.com/live.mp3");
}

#[tokio::test]
async fn playlists_list_relays_best_first() {
    let (app, a, b) = setup(
        &[("/live.mp3", 50, Some(100))],
        &[("/live.mp3", 10, Some(100))],
    )
    .await;
    let r = app.get("/icecast_balancer/live.m3u").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/x-mpegurl");
    let body = r.text().await.unwrap();
    let urls: Vec<&str> = body.lines().filter(|l| l.starts_with("http")).collect();
    assert_eq!(
        urls,
        [format!("{}/live.mp3", b.url), format!("{}/live.mp3", a.url)]
    );
    assert!(body.starts_with("#EXTM3U\n#EXTINF:-1,Main programme\n"));

    let r = app.get("/icecast_balancer/live.pls").await;
    assert_eq!(r.headers()["content-type"], "audio/x-scpls");
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("File1={}/live.mp3", b.url)),
        "{body}"
    );
    assert!(body.contains("NumberOfEntries=2"));
}

#[tokio::test]
async fn poll_hook_needs_the_token() {
    let (app, _a, _b) = setup(&[("/live.mp3", 1, Some(10))], &[]).await;
    let url = app.url("/icecast_balancer/poll");
    let r = app.client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app
        .client
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    assert_eq!(v["servers"][0]["name"], "relay-a");
    assert_eq!(v["servers"][0]["ok"], true);

    // Without a configured token the hook is refused outright.
    let plain = TestApp::spawn().await;
    let r = plain
        .client
        .post(plain.url("/icecast_balancer/poll"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_stream_called_poll_is_still_reachable() {
    let a = FakeRelay::start(&[("/poll.mp3", 0, Some(5))]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"a\"\nurl = \"{}\"\n[[streams]]\nname = \"poll\"\nmounts = [{{ server = \"a\", mount = \"/poll.mp3\" }}]\n",
        a.url
    ))
    .await;
    app.poll().await;
    assert_eq!(
        app.get("/icecast_balancer/poll").await.redirect_target(),
        format!("{}/poll.mp3", a.url)
    );
}

#[tokio::test]
async fn status_lists_reachable_servers_ascending() {
    let (app, a, _b) = setup(
        &[("/live.mp3", 30, Some(100)), ("/other", 5, None)],
        &[("/live.mp3", 12, Some(100))],
    )
    .await;
    let body = app.get("/status").await.text().await.unwrap();
    assert_eq!(body, r#"{"relay-b": 12, "relay-a": 35}"#);
    a.kill();
    app.poll().await;
    let body = app.get("/status").await.text().await.unwrap();
    assert_eq!(body, r#"{"relay-b": 12}"#);
}

#[tokio::test]
async fn api_status_shows_servers_and_mounts() {
    let (app, a, _b) = setup(&[("/live.mp3", 30, Some(100))], &[("/live.mp3", 12, None)]).await;
    a.set_mode(Mode::Status(500));
    app.poll().await;
    let v = app.api_status().await;
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers[0]["name"], "relay-a");
    assert_eq!(servers[0]["state"], "down");
    // Error texts are for the API token or an admin (tests/ops.rs).
    assert_eq!(servers[0]["last_error"], serde_json::Value::Null);
    assert_eq!(servers[1]["state"], "up");
    assert_eq!(servers[1]["listeners"], 12);
    let mounts = v["streams"][0]["mounts"].as_array().unwrap();
    assert_eq!(mounts[0]["excluded"], "server down or not yet polled");
    assert_eq!(mounts[1]["max"], serde_json::Value::Null);
    assert_eq!(mounts[1]["free"], serde_json::Value::Null);
    assert_eq!(mounts[1]["excluded"], serde_json::Value::Null);
}

#[tokio::test]
async fn metrics_and_healthz() {
    let (app, _a, b) = setup(&[("/live.mp3", 3, Some(4))], &[]).await;
    b.set_mode(Mode::Status(500));
    app.poll().await;
    app.sent_to("live").await;
    app.get("/icecast_balancer/live/").await; // 503: full
    app.get("/icecast_balancer/missing/").await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let m = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "icecast_balancer_redirects_total{stream=\"live\",outcome=\"redirect\"} 1",
        "icecast_balancer_redirects_total{stream=\"live\",outcome=\"full\"} 1",
        "icecast_balancer_redirects_total{stream=\"\",outcome=\"unknown_stream\"} 1",
        "icecast_balancer_server_up{server=\"relay-a\"} 1",
        "icecast_balancer_server_up{server=\"relay-b\"} 0",
        "icecast_balancer_mount_listeners{stream=\"live\",server=\"relay-a\",mount=\"/live.mp3\"} 3",
        "icecast_balancer_mount_reserved{stream=\"live\",server=\"relay-a\",mount=\"/live.mp3\"} 1",
        "icecast_balancer_mount_free{stream=\"live\",server=\"relay-a\",mount=\"/live.mp3\"} 0",
        "icecast_balancer_poll_errors_total{server=\"relay-b\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(m.contains("# TYPE icecast_balancer_poll_duration_seconds gauge"));
}

#[tokio::test]
async fn index_lists_streams() {
    let (app, _a, _b) = setup(&[("/live.mp3", 3, Some(10))], &[("/live.mp3", 1, Some(10))]).await;
    let r = app.get("/icecast_balancer/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Main programme"));
    assert!(
        html.contains("<td class=\"num\">16</td>"),
        "free slots 7 + 9:\n{html}"
    );
}

#[tokio::test]
async fn dead_relay_gets_no_listeners_after_one_poll_and_rise_brings_it_back() {
    let (app, a, b) = setup(
        &[("/live.mp3", 0, Some(100))],
        &[("/live.mp3", 50, Some(100))],
    )
    .await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
    a.set_mode(Mode::Status(503));
    app.poll().await;
    for _ in 0..5 {
        assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
    }
    // rise = 2: one good poll is not enough to trust it again.
    a.set_mode(Mode::LoadXsl);
    app.poll().await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
    app.poll().await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
}

#[tokio::test]
async fn a_mount_the_relay_stops_listing_is_not_used() {
    let (app, a, b) = setup(
        &[("/live.mp3", 0, Some(100))],
        &[("/live.mp3", 50, Some(100))],
    )
    .await;
    a.set_mounts(&[("/other.mp3", 0, Some(100))]);
    app.poll().await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
}

#[tokio::test]
async fn status_json_fallback_when_load_xsl_is_missing() {
    let (app, a, b) = setup(&[("/live.mp3", 3, None)], &[("/live.mp3", 50, Some(60))]).await;
    a.set_mode(Mode::StatusJsonOnly);
    let summary = app.poll().await;
    let sa = summary.server("relay-a");
    assert!(sa.ok, "{sa:?}");
    assert_eq!(
        sa.source,
        Some(icecast_balancer::domain::PollSource::StatusJson)
    );
    // Unlimited (status-json has no per-mount max) beats 10 free slots.
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
    drop(b);
}

#[tokio::test]
async fn hanging_relay_times_out_without_delaying_others() {
    let a = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let b = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let app = TestApp::spawn_with(|s| s.poll.timeout = Duration::from_millis(800)).await;
    app.import(&two_relays_config(&a, &b)).await;
    a.set_mode(Mode::Hang);
    let started = Instant::now();
    let summary = app.poll().await;
    let elapsed = started.elapsed();
    let sa = summary.server("relay-a");
    assert!(!sa.ok);
    assert!(sa.error.as_deref().unwrap().contains("timed out"), "{sa:?}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    // b's result was usable even while a was still hanging.
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
}

#[tokio::test]
async fn oversized_and_broken_answers_are_errors_that_change_nothing_else() {
    let (app, a, b) = setup(
        &[("/live.mp3", 0, Some(100))],
        &[("/live.mp3", 5, Some(100))],
    )
    .await;
    a.set_mode(Mode::Huge(10 * 1024 * 1024));
    let s = app.poll().await;
    let sa = s.server("relay-a");
    assert!(
        sa.error.as_deref().unwrap().contains("byte limit"),
        "{sa:?}"
    );
    let sb = s.server("relay-b");
    assert!(sb.ok);

    for body in [
        "<load><mount name=\"/live.mp3\" listeners=\"1\"",
        "<html>oops</html>",
        "",
    ] {
        a.set_mode(Mode::Body(body.into()));
        let s = app.poll().await;
        let sa = s.server("relay-a");
        assert!(!sa.ok, "accepted {body:?}");
    }
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
}

#[tokio::test]
async fn disabled_server_is_drained_at_once() {
    let (app, a, b) = setup(
        &[("/live.mp3", 0, Some(100))],
        &[("/live.mp3", 50, Some(100))],
    )
    .await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", a.url));
    app.import(&format!(
        "[[servers]]\nname = \"relay-a\"\nurl = \"{}\"\nenabled = false\n",
        a.url
    ))
    .await;
    assert_eq!(app.sent_to("live").await, format!("{}/live.mp3", b.url));
}

#[tokio::test]
async fn another_process_writing_the_database_reaches_the_server() {
    let (app, a, b) = setup(
        &[("/live.mp3", 0, Some(100))],
        &[("/live.mp3", 50, Some(100))],
    )
    .await;
    // A second pool on the same file stands in for `icecast-balancer import`.
    let other = icecast_balancer::store::connect(&app.state.settings().database)
        .await
        .unwrap();
    let file = icecast_balancer::config_file::parse(&format!(
        "[[servers]]\nname = \"relay-a\"\nurl = \"{}\"\nenabled = false\n",
        a.url
    ))
    .unwrap();
    icecast_balancer::config_file::apply(
        &icecast_balancer::store::changes::Writer::new(other.clone()),
        &file,
    )
    .await
    .unwrap();
    let seen = eventually(Duration::from_secs(2), async || {
        app.sent_to("live").await == format!("{}/live.mp3", b.url)
    })
    .await;
    assert!(seen, "change not seen within 2 s");
}

#[tokio::test]
async fn server_wide_cap_counts_all_mounts() {
    let a = FakeRelay::start(&[("/live.mp3", 5, None), ("/talk.mp3", 4, None)]).await;
    let app = TestApp::spawn().await;
    app.import(&format!(
        "[[servers]]\nname = \"a\"\nurl = \"{}\"\nmax_listeners = 10\n[[streams]]\nname = \"live\"\nmounts = [{{ server = \"a\", mount = \"/live.mp3\" }}]\n",
        a.url
    ))
    .await;
    app.poll().await;
    app.sent_to("live").await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

#[tokio::test]
async fn history_is_recorded_per_mount() {
    let (app, _a, _b) = setup(
        &[("/live.mp3", 4, Some(100))],
        &[("/live.mp3", 6, Some(100))],
    )
    .await;
    app.poll().await;
    let mut conn = app.state.db().acquire().await.unwrap();
    let stream = icecast_balancer::store::streams::find_by_name(&mut conn, "live")
        .await
        .unwrap()
        .unwrap();
    let h = icecast_balancer::store::status::stream_history(&mut conn, stream.id, 0, 60_000)
        .await
        .unwrap();
    assert!(!h.is_empty());
    assert_eq!(h.last().unwrap().listeners, 10);
}

#[tokio::test]
async fn the_last_error_is_kept_after_recovery() {
    let (app, a, _b) = setup(&[("/live.mp3", 0, Some(10))], &[]).await;
    a.set_mode(Mode::Body("<html>proxy error</html>".into()));
    app.poll().await;
    a.set_mode(Mode::LoadXsl);
    app.poll().await;
    app.poll().await;
    let v = app.api_status_detailed().await;
    let s = &v["servers"][0];
    assert_eq!(s["state"], "up");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("expected <load>"),
        "{s}"
    );
    assert!(s["last_error_at"].as_i64().unwrap() < s["last_success_at"].as_i64().unwrap());
}
