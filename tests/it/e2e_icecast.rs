//! End to end with real Icecast 2.4.4 relays (Debian `icecast2`) carrying
//! real sources, the project's own xsl/load.xsl in their webroots, the real
//! balancer in-process, and real listeners: a player (`mpg123`) that follows
//! the redirect and decodes audio, and HTTP listeners that hold their
//! connection like a player does.
//!
//! Skips with a printed reason when icecast2 or mpg123 is missing, unless
//! `ICECAST_BALANCER_E2E=required`.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::app::{ResponseExt, SummaryExt, TestApp};
use crate::support::eventually;
use crate::support::icecast::{Icecast, skip};
use icecast_balancer::domain::PollSource;

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn skip_unless(tool: &str) -> bool {
    if have(tool) {
        return false;
    }
    skip(&format!("{tool} is not installed (apt-get install {tool})"));
    true
}

async fn balancer_for(relays: &[(&str, &Icecast)]) -> TestApp {
    // A short grace keeps the test quick; the rule is the same as with 5 s.
    let app = TestApp::spawn_with(|s| s.reservation_grace = Duration::from_secs(1)).await;
    let mut config = String::new();
    let mut mounts = Vec::new();
    for (name, relay) in relays {
        config.push_str(&format!(
            "[[servers]]\nname = \"{name}\"\nurl = \"{}\"\n",
            relay.url()
        ));
        mounts.push(format!("{{ server = \"{name}\", mount = \"/live.mp3\" }}"));
    }
    config.push_str(&format!(
        "[[streams]]\nname = \"live\"\nmounts = [{}]\n",
        mounts.join(", ")
    ));
    app.import(&config).await;
    let summary = app.poll().await;
    assert!(summary.servers.iter().all(|s| s.ok), "{summary:?}");
    app
}

/// A listener that follows the balancer's redirect and keeps reading the
/// stream until dropped. Returns the relay it ended up on.
async fn listen(app: &TestApp) -> Result<(String, tokio::task::JoinHandle<()>), u16> {
    let r = app.get("/icecast_balancer/live/").await;
    if r.status() != 302 {
        return Err(r.status().as_u16());
    }
    let target = r.redirect_target();
    let mut stream = crate::support::app::client()
        .get(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200, "relay refused {target}");
    // Wait for the first audio bytes so the relay has counted us.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("no audio within 10 s")
        .unwrap()
        .expect("stream ended");
    assert!(!first.is_empty());
    let task = tokio::spawn(async move { while let Ok(Some(_)) = stream.chunk().await {} });
    let relay = target.rsplit_once("/live.mp3").unwrap().0.to_string();
    Ok((relay, task))
}

#[tokio::test]
async fn a_player_following_the_redirect_hears_the_stream() {
    if skip_unless("mpg123") {
        return;
    }
    let Some(relay) = Icecast::start(&[("/live.mp3", Some(10))]).await else {
        return;
    };
    let _source = relay.push_source("/live.mp3").await;
    let app = balancer_for(&[("relay-1", &relay)]).await;

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("out.wav");
    let url = app.url("/icecast_balancer/live/");
    let out = tokio::process::Command::new("mpg123")
        .args(["-q", "-n", "40", "-w"])
        .arg(&wav)
        .arg(&url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("mpg123 did not finish in 30 s")
        .unwrap();
    assert!(
        out.status.success(),
        "mpg123 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 40 decoded MPEG frames of 1152 stereo 16-bit samples, plus a header.
    let size = std::fs::metadata(&wav).unwrap().len();
    assert!(size > 40 * 1152 * 2, "only {size} bytes of audio decoded");
}

#[tokio::test]
async fn capacity_is_never_exceeded_and_a_dead_relay_gets_nobody() {
    let Some(a) = Icecast::start(&[("/live.mp3", Some(2))]).await else {
        return;
    };
    let Some(mut b) = Icecast::start(&[("/live.mp3", Some(3))]).await else {
        return;
    };
    let _sa = a.push_source("/live.mp3").await;
    let _sb = b.push_source("/live.mp3").await;
    let app = balancer_for(&[("relay-a", &a), ("relay-b", &b)]).await;

    // Five slots in all: five listeners get in, the sixth gets a 503, and
    // Icecast never has to refuse anyone.
    let mut listeners = Vec::new();
    let mut per_relay: HashMap<String, u32> = HashMap::new();
    for _ in 0..5 {
        let (relay, task) = listen(&app).await.expect("a slot was free");
        *per_relay.entry(relay).or_default() += 1;
        listeners.push(task);
    }
    assert_eq!(per_relay.get(&a.url()), Some(&2));
    assert_eq!(per_relay.get(&b.url()), Some(&3));
    assert_eq!(listen(&app).await.err(), Some(503));
    assert_eq!(a.listeners_settled("/live.mp3", 2).await, 2);
    assert_eq!(b.listeners_settled("/live.mp3", 3).await, 3);

    // After the grace a poll counts the real listeners: still full.
    app.advance(Duration::from_millis(1500));
    app.poll().await;
    assert_eq!(listen(&app).await.err(), Some(503));

    // Everyone leaves; the relays are empty again at the next poll.
    for l in listeners.drain(..) {
        l.abort();
    }
    assert_eq!(a.listeners_settled("/live.mp3", 0).await, 0);
    assert_eq!(b.listeners_settled("/live.mp3", 0).await, 0);
    app.advance(Duration::from_millis(1500));
    app.poll().await;
    let status = app.api_status().await;
    let free: Vec<u64> = status["streams"][0]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["free"].as_u64().unwrap())
        .collect();
    assert_eq!(free, [2, 3]);

    // Relay b dies: after one poll nobody is sent there, and a's two slots
    // are all that is left.
    b.kill().await;
    let summary = app.poll().await;
    let sb = summary.server("relay-b");
    assert!(!sb.ok, "{sb:?}");
    for _ in 0..2 {
        let (relay, task) = listen(&app).await.expect("relay-a has room");
        assert_eq!(relay, a.url());
        listeners.push(task);
    }
    assert_eq!(listen(&app).await.err(), Some(503));
}

#[tokio::test]
async fn a_source_that_stops_takes_its_mount_out() {
    let Some(a) = Icecast::start(&[("/live.mp3", None)]).await else {
        return;
    };
    let Some(b) = Icecast::start(&[("/live.mp3", None)]).await else {
        return;
    };
    let source_a = a.push_source("/live.mp3").await;
    let _sb = b.push_source("/live.mp3").await;
    let app = balancer_for(&[("relay-a", &a), ("relay-b", &b)]).await;
    let status = app.api_status().await;
    assert_eq!(
        status["streams"][0]["mounts"][0]["max"],
        serde_json::Value::Null,
        "unlimited"
    );

    drop(source_a);
    // Icecast drops the mount once its source is gone.
    let gone = eventually(Duration::from_secs(15), async || {
        app.poll().await;
        app.api_status().await["streams"][0]["mounts"][0]["live"] == false
    })
    .await;
    assert!(gone, "relay-a still lists /live.mp3");
    for _ in 0..5 {
        let r = app.get("/icecast_balancer/live/").await;
        assert_eq!(r.redirect_target(), format!("{}/live.mp3", b.url()));
    }
}

#[tokio::test]
async fn load_xsl_reports_listeners_limits_and_unlimited() {
    let Some(relay) = Icecast::start(&[("/live.mp3", Some(5)), ("/free.mp3", None)]).await else {
        return;
    };
    let _a = relay.push_source("/live.mp3").await;
    let _b = relay.push_source("/free.mp3").await;
    let mut listener = crate::support::app::client()
        .get(format!("{}/live.mp3", relay.url()))
        .send()
        .await
        .unwrap();
    assert!(!listener.chunk().await.unwrap().unwrap().is_empty());
    let xml = relay.load_xsl().await;
    assert!(
        xml.contains(r#"<mount name="/live.mp3" listeners="1" max="5">4</mount>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<mount name="/free.mp3" listeners="0" max="unlimited">unlimited</mount>"#),
        "{xml}"
    );
    // And the balancer's parser reads it as such.
    let parsed = icecast_balancer::poll::parse::parse_load_xsl(xml.as_bytes()).unwrap();
    assert_eq!(parsed.len(), 2);
    assert!(
        parsed
            .iter()
            .any(|m| m.mount.as_str() == "/free.mp3" && m.max.is_none())
    );
    assert!(
        parsed
            .iter()
            .any(|m| m.mount.as_str() == "/live.mp3" && m.listeners == 1 && m.max == Some(5))
    );
}

/// Issue 9's acceptance test: a relay with load.xsl and one without it
/// (polled through status-json.xsl, which hides max-listeners) whose limit
/// is in the balancer's configuration take exactly their limits in a burst
/// of real listeners, and Icecast refuses nobody.
#[tokio::test]
async fn a_burst_fills_two_real_relays_to_their_limits_one_known_only_from_the_config() {
    let Some(a) = Icecast::start(&[("/live.mp3", Some(3))]).await else {
        return;
    };
    let Some(b) = Icecast::start_with(&[("/live.mp3", Some(4))], false).await else {
        return;
    };
    let _sa = a.push_source("/live.mp3").await;
    let _sb = b.push_source("/live.mp3").await;
    let app = TestApp::spawn_with(|s| s.reservation_grace = Duration::from_secs(1)).await;
    app.import(&format!(
        "[[servers]]\nname = \"relay-a\"\nurl = \"{}\"\n\
         [[servers]]\nname = \"relay-b\"\nurl = \"{}\"\n\
         [[streams]]\nname = \"live\"\nmounts = [{{ server = \"relay-a\", mount = \"/live.mp3\" }}, \
         {{ server = \"relay-b\", mount = \"/live.mp3\", max_listeners = 4 }}]\n",
        a.url(),
        b.url()
    ))
    .await;
    let summary = app.poll().await;
    assert_eq!(summary.server("relay-a").source, Some(PollSource::LoadXsl));
    assert_eq!(
        summary.server("relay-b").source,
        Some(PollSource::StatusJson)
    );

    // Seven slots: seven listeners at once all get in, each on a relay
    // that accepts them (`listen` asserts Icecast's 200).
    let app = std::sync::Arc::new(app);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..7 {
        let app = app.clone();
        burst.spawn(async move { listen(&app).await });
    }
    let mut per_relay: HashMap<String, u32> = HashMap::new();
    let mut held = Vec::new();
    while let Some(joined) = burst.join_next().await {
        let (relay, task) = joined.unwrap().expect("a slot was free");
        *per_relay.entry(relay).or_default() += 1;
        held.push(task);
    }
    assert_eq!(per_relay.get(&a.url()), Some(&3), "{per_relay:?}");
    assert_eq!(per_relay.get(&b.url()), Some(&4), "{per_relay:?}");
    assert_eq!(a.listeners_settled("/live.mp3", 3).await, 3);
    assert_eq!(b.listeners_settled("/live.mp3", 4).await, 4);
    // The eighth is told the truth: full.
    assert_eq!(listen(&app).await.err(), Some(503));
    // A poll after the grace counts each listener once: still exactly full,
    // and one leaving frees exactly one slot, on its relay.
    app.advance(Duration::from_millis(1500));
    app.poll().await;
    assert_eq!(listen(&app).await.err(), Some(503));
    held.pop().unwrap().abort();
    let mut total = 7;
    eventually(Duration::from_secs(10), async || {
        total = a.listeners("/live.mp3").await + b.listeners("/live.mp3").await;
        total == 6
    })
    .await;
    assert_eq!(total, 6, "Icecast never saw the listener leave");
    app.advance(Duration::from_millis(1500));
    app.poll().await;
    let (_, task) = listen(&app).await.expect("the freed slot");
    held.push(task);
    assert_eq!(listen(&app).await.err(), Some(503));
}
