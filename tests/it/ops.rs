//! What an operator watches: metrics (checked by promtool when installed),
//! /api/status details behind --api-token or an admin session.

use crate::support;
use crate::support::admin::Browser;
use crate::support::app::TestApp;
use crate::support::fake_relay::{FakeRelay, Mode};

fn config(a: &FakeRelay, b: &FakeRelay) -> String {
    format!(
        r#"
[[servers]]
name = "relay-a"
url = "{a}"
[[servers]]
name = "relay-b"
url = "http://public-b.example.com:8000"
poll_url = "{b}"
[[streams]]
name = "live"
mounts = [{{ server = "relay-a", mount = "/live.mp3" }}, {{ server = "relay-b", mount = "/live.mp3" }}]
[[streams]]
name = "talk"
mounts = [{{ server = "relay-b", mount = "/talk.mp3" }}]
"#,
        a = a.url,
        b = b.url
    )
}

/// relay-a up with one free slot on live, relay-b failing its polls.
async fn setup(api_token: Option<&str>) -> (TestApp, FakeRelay, FakeRelay) {
    let a = FakeRelay::start(&[("/live.mp3", 3, Some(4))]).await;
    let b = FakeRelay::start(&[("/live.mp3", 0, Some(10)), ("/talk.mp3", 0, Some(10))]).await;
    b.set_mode(Mode::Status(500));
    let token = api_token.map(String::from);
    let app = TestApp::spawn_with(|s| s.api_token = token).await;
    app.import(&config(&a, &b)).await;
    app.poll().await;
    (app, a, b)
}

fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

#[tokio::test]
async fn metrics_tell_full_from_no_relay_up() {
    let (app, _a, _b) = setup(None).await;
    app.sent_to("live").await;
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
    assert_eq!(app.get("/icecast_balancer/talk/").await.status(), 503);
    let m = app.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"icecast_balancer_redirects_total{stream="live",outcome="full"} 1"#,
        r#"icecast_balancer_redirects_total{stream="live",outcome="unavailable"} 0"#,
        r#"icecast_balancer_redirects_total{stream="talk",outcome="unavailable"} 1"#,
        r#"icecast_balancer_redirects_total{stream="talk",outcome="full"} 0"#,
        r#"icecast_balancer_server_listeners{server="relay-a"} 3"#,
        "icecast_balancer_redirect_duration_seconds_count 3",
        r#"icecast_balancer_redirect_duration_seconds_bucket{le="+Inf"} 3"#,
    ] {
        assert!(has_line(&m, line), "missing {line:?} in\n{m}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        has_line(
            &m,
            &format!(r#"icecast_balancer_build_info{{version="{version}"}} 1"#)
        ),
        "{m}"
    );
    // relay-a answered, relay-b never did.
    assert!(
        m.contains(r#"icecast_balancer_server_last_success_timestamp_seconds{server="relay-a"} 1"#),
        "{m}"
    );
    assert!(
        !m.contains(r#"icecast_balancer_server_last_success_timestamp_seconds{server="relay-b"}"#)
    );
    #[cfg(target_os = "linux")]
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let line = m
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{m}"));
        let v: f64 = line[name.len() + 1..].parse().unwrap();
        assert!(v >= 0.0, "{line}");
    }
}

/// `promtool check metrics` lints names, types, help and suffixes.
#[tokio::test]
async fn metrics_pass_promtool() {
    let Some(promtool) = support::require_binary("promtool") else {
        return;
    };
    let (app, _a, _b) = setup(None).await;
    app.sent_to("live").await;
    let r = app.get("/metrics").await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = r.text().await.unwrap();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{m}"
    );
}

#[tokio::test]
async fn api_status_shows_error_details_only_to_the_token_or_an_admin() {
    let (app, _a, b) = setup(Some("api-s3cret")).await;
    let relay_b = |v: &serde_json::Value| v["servers"][1].clone();

    let anonymous = app.api_status().await;
    assert_eq!(anonymous["details"], false);
    assert_eq!(relay_b(&anonymous)["state"], "down");
    assert_eq!(relay_b(&anonymous)["last_error"], serde_json::Value::Null);
    assert!(relay_b(&anonymous).get("poll_url").is_none());
    let text = anonymous.to_string();
    assert!(!text.contains(&b.url), "the poll address leaked: {text}");

    let wrong = app
        .get_with("/api/status", "authorization", "Bearer nope")
        .await;
    let wrong: serde_json::Value = serde_json::from_str(&wrong.text().await.unwrap()).unwrap();
    assert_eq!(wrong["details"], false);

    let with_token = app
        .get_with("/api/status", "authorization", "Bearer api-s3cret")
        .await;
    let with_token: serde_json::Value =
        serde_json::from_str(&with_token.text().await.unwrap()).unwrap();
    assert_eq!(with_token["details"], true);
    assert!(
        relay_b(&with_token)["last_error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert_eq!(relay_b(&with_token)["poll_url"], b.url.as_str());

    let mut admin = Browser::logged_in(&app).await;
    let page = admin.get("/api/status").await;
    let v: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(v["details"], true);
    assert!(relay_b(&v)["last_error"].as_str().unwrap().contains("500"));
}

/// The shipped unit stays hardened: `systemd-analyze security` rates it.
#[test]
fn systemd_unit_exposure_is_at_most_3() {
    let Some(analyze) = support::require_binary("systemd-analyze") else {
        return;
    };
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/icecast-balancer.service"
    );
    let out = std::process::Command::new(analyze)
        .args(["security", "--offline=true", unit])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && said.is_empty() {
        // systemd before 250 has no offline analysis.
        support::icecast::skip(&format!(
            "systemd-analyze cannot rate unit files offline: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let overall = said
        .lines()
        .find_map(|l| {
            l.split("exposure level for icecast-balancer.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no overall rating in\n{said}"));
    let level: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    assert!(level <= 3.0, "exposure {overall}\n{said}");
}

/// Ready means "this instance can answer": relays that are full or down
/// do not make it 503 (a front proxy would drop every instance during a
/// sell-out), shutting down does.
#[tokio::test]
async fn readyz_says_whether_this_instance_can_answer() {
    let app = TestApp::spawn().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200, "no stream yet is no reason to take it out");
    assert_eq!(
        r.text().await.unwrap(),
        "ready: 0 of 0 streams can take a listener now\n"
    );

    let a = FakeRelay::start(&[("/live.mp3", 3, Some(4))]).await;
    let b = FakeRelay::start(&[("/live.mp3", 0, Some(10)), ("/talk.mp3", 0, Some(10))]).await;
    app.import(&config(&a, &b)).await;
    app.poll().await;
    app.poll().await; // rise 2
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "ready: 2 of 2 streams can take a listener now\n"
    );

    // Every relay full or down: still ready, and listeners get the 503.
    a.set_mode(Mode::Status(500));
    b.kill();
    app.poll().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "ready: 0 of 2 streams can take a listener now\n"
    );
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);

    // Shutting down: 503, and the probe logs nothing at warning or error.
    let (log, _guard) = crate::faults::capture_log();
    app.state.mark_stopping();
    let probe = axum::http::Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = tower::ServiceExt::oneshot(icecast_balancer::web::router(app.state.clone()), probe)
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"not ready: shutting down\n");
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    assert!(
        !logged.contains("ERROR") && !logged.contains("WARN"),
        "{logged}"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "alive all the same"
    );
}

/// A webhook receiver that fails its first request (500), as a flaky
/// chat server would, and keeps the JSON bodies it accepted.
struct Receiver {
    url: String,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (acc, reqs) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                };
                let Some(body) = body else { continue };
                let first = reqs.fetch_add(1, Ordering::SeqCst) == 0;
                let status = if first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                if !first {
                    acc.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                }
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        Receiver {
            url,
            accepted,
            requests,
        }
    }

    fn events(&self) -> Vec<String> {
        let accepted = self.accepted.lock().unwrap();
        accepted
            .iter()
            .map(|v| v["event"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn alerts_reach_the_webhook_once_per_change_and_are_retried() {
    use std::time::Duration;
    let hook = Receiver::start().await;
    let a = FakeRelay::start(&[("/live.mp3", 10, Some(100))]).await;
    let b = FakeRelay::start(&[("/live.mp3", 10, Some(100)), ("/talk.mp3", 0, Some(10))]).await;
    let url = hook.url.clone();
    let app = TestApp::spawn_with(|s| {
        s.alerts.webhooks = vec![url];
        s.alerts.check_every = Duration::from_millis(50);
        s.alerts.first_retry = Duration::from_millis(50);
        s.poll.rise = 1;
    })
    .await;
    app.import(&config(&a, &b)).await;
    app.poll().await;
    // Six looks at the snapshot: an alert due would have been posted.
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;
    assert_eq!(
        hook.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "all well: silence"
    );

    b.set_mode(Mode::Status(500));
    app.poll().await;
    let arrived =
        support::eventually(Duration::from_secs(10), async || hook.events().len() == 2).await;
    assert!(arrived, "{:?}", hook.events());
    // talk has only relay-b: it is out at once.
    let mut got = hook.events();
    got.sort();
    assert_eq!(got, ["server_down", "stream_unavailable"]);
    assert!(
        hook.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the refused post was retried"
    );
    let down = hook
        .accepted
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["event"] == "server_down")
        .cloned()
        .unwrap();
    assert_eq!(down["server"], "relay-b");
    assert!(
        down["text"]
            .as_str()
            .unwrap()
            .contains("relay relay-b is DOWN"),
        "{down}"
    );

    app.poll().await; // still down: nothing new
    a.set_listeners("/live.mp3", 95);
    app.poll().await;
    let arrived =
        support::eventually(Duration::from_secs(10), async || hook.events().len() == 3).await;
    assert!(arrived, "{:?}", hook.events());
    assert_eq!(hook.events()[2], "stream_low");

    b.set_mode(Mode::LoadXsl);
    app.poll().await;
    let arrived =
        support::eventually(Duration::from_secs(10), async || hook.events().len() == 6).await;
    assert!(arrived, "{:?}", hook.events());
    let mut last: Vec<String> = hook.events()[3..].to_vec();
    last.sort();
    assert_eq!(last, ["server_up", "stream_recovered", "stream_recovered"]);
    app.poll().await;
    settle().await;
    assert_eq!(hook.events().len(), 6, "no repeats: {:?}", hook.events());
}

/// Every metric the shipped Grafana dashboard queries is one we export.
#[tokio::test]
async fn grafana_dashboard_queries_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/icecast-balancer.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (app, _a, _b) = setup(None).await;
    app.sent_to("live").await;
    let m = app.get("/metrics").await.text().await.unwrap();
    let exported: std::collections::HashSet<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("icecast_balancer_") || word.starts_with("process_") {
                    assert!(
                        exported.contains(word),
                        "{:?} queries {word}, not exported",
                        panel["title"]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "{checked}");
}
