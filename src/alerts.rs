//! Alerts: a JSON POST to each `--alert-webhook` when a relay goes down or
//! comes back, when a stream's free slots fall below `--alert-free-percent`
//! of its capacity or recover, and when no relay of a stream can take a
//! listener. [`Watcher`] turns successive routing snapshots into one alert
//! per change (a pure function of what it saw); [`deliver`] posts them,
//! with retries, off the redirect path, each webhook from its own bounded
//! queue ([`Outboxes`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::HealthState;
use crate::routing::Routing;
use crate::routing::select::{StreamTotals, stream_totals};

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhooks: Vec<String>,
    pub free_percent: u8,
    /// How often the routing snapshot is looked at for a new one (a
    /// pointer comparison; only new ones are judged). No flag; tests
    /// shorten it.
    pub check_every: Duration,
    /// The wait before a failed post's first retry; it doubles after
    /// each (1 + 2 + 4 + 8 s by default). No flag; tests shorten it.
    pub first_retry: Duration,
    /// Alerts waiting per webhook; beyond, new ones are dropped (and
    /// counted). No flag; tests shorten it.
    pub queue: usize,
}

/// Alert when a stream's free share falls below this (`--alert-free-percent`).
pub const DEFAULT_FREE_PERCENT: u8 = 10;

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhooks: Vec::new(),
            free_percent: DEFAULT_FREE_PERCENT,
            check_every: Duration::from_millis(500),
            first_retry: Duration::from_secs(1),
            queue: 64,
        }
    }
}

/// A stream stays "low" until its free share is this many percentage
/// points above the threshold, so reservations coming and going between
/// polls cannot make it flap.
const RECOVERY_MARGIN: u64 = 2;

/// What a webhook receives. `text` is what Slack and Mattermost show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `server_down`, `server_up`, `stream_low`, `stream_unavailable`,
    /// `stream_recovered`.
    pub event: &'static str,
    pub server: Option<String>,
    pub stream: Option<String>,
    /// Free slots and capacity of the stream (stream events; absent when unlimited).
    pub free: Option<u64>,
    pub capacity: Option<u64>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Low,
    Unavailable,
}

/// The last state seen of every enabled server and every stream.
#[derive(Debug)]
pub struct Watcher {
    free_percent: u64,
    servers: HashMap<i64, HealthState>,
    streams: HashMap<i64, Level>,
}

impl Watcher {
    pub fn new(free_percent: u8) -> Watcher {
        Watcher {
            free_percent: u64::from(free_percent),
            servers: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// The alerts for what changed since the last call. Until every server
    /// has been polled once the picture is incomplete (at start every
    /// relay looks down), so nothing is judged.
    pub fn observe(&mut self, r: &Routing) -> Vec<Alert> {
        if r.snap.servers.iter().any(|s| s.last_poll_at.is_none()) {
            return Vec::new();
        }
        let mut alerts = self.observe_servers(r);
        alerts.extend(self.observe_streams(r));
        alerts
    }

    fn observe_servers(&mut self, r: &Routing) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut seen = HashMap::new();
        for s in r.snap.servers.iter().filter(|s| s.enabled) {
            let now = s.health.state;
            seen.insert(s.id, now);
            let before = self.servers.get(&s.id).copied();
            let alert = match (before, now) {
                (b, HealthState::Down) if b != Some(HealthState::Down) => {
                    let why = s.last_error.as_deref().unwrap_or("no answer");
                    Some(("server_down", format!("relay {} is DOWN: {why}", s.name)))
                }
                (Some(HealthState::Down), HealthState::Up) => {
                    Some(("server_up", format!("relay {} is back up", s.name)))
                }
                _ => None,
            };
            if let Some((event, text)) = alert {
                alerts.push(Alert {
                    event,
                    server: Some(s.name.clone()),
                    stream: None,
                    free: None,
                    capacity: None,
                    text: chat_safe(&format!("icecast-balancer: {text}")),
                });
            }
        }
        self.servers = seen;
        alerts
    }

    fn observe_streams(&mut self, r: &Routing) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut seen = HashMap::new();
        for st in r.snap.streams.iter().filter(|st| !st.mounts.is_empty()) {
            let t = stream_totals(&r.snap, st, r.now_s, r.ttl_s);
            let before = self.streams.get(&st.id).copied();
            let now = self.level(&t, before);
            seen.insert(st.id, now);
            if let Some((event, text)) = stream_change(&st.name, before, now, &t) {
                alerts.push(Alert {
                    event,
                    server: None,
                    stream: Some(st.name.clone()),
                    free: t.free,
                    capacity: t.capacity,
                    text: chat_safe(&format!("icecast-balancer: {text}")),
                });
            }
        }
        self.streams = seen;
        alerts
    }

    fn level(&self, t: &StreamTotals, before: Option<Level>) -> Level {
        if !t.can_take_listener() {
            return Level::Unavailable;
        }
        let (Some(free), Some(capacity)) = (t.free, t.capacity) else {
            return Level::Ok;
        };
        let threshold = match before {
            Some(Level::Low) => self.free_percent + RECOVERY_MARGIN,
            _ => self.free_percent,
        };
        if capacity > 0 && free * 100 < capacity * threshold {
            Level::Low
        } else {
            Level::Ok
        }
    }
}

/// `text` as plain words in Slack, Mattermost or Discord: `&`, `<`, `>`
/// escaped (so a relay's `<!channel>` or `<@U123>` is shown, not acted
/// on) and every `@` followed by a zero-width space (so `@here` or
/// `@everyone` notifies nobody).
fn chat_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@\u{200b}"),
            c => out.push(c),
        }
    }
    out
}

fn stream_change(
    name: &str,
    before: Option<Level>,
    now: Level,
    t: &StreamTotals,
) -> Option<(&'static str, String)> {
    let slots = match (t.free, t.capacity) {
        (Some(f), Some(c)) => format!("{f} of {c} slots free"),
        _ => "no limit".to_string(),
    };
    match (before, now) {
        (b, n) if b == Some(n) => None,
        (_, Level::Unavailable) => Some((
            "stream_unavailable",
            format!("stream {name}: NO relay can take a listener (every relay full or down)"),
        )),
        (_, Level::Low) => Some((
            "stream_low",
            format!("stream {name} is running low: {slots}"),
        )),
        (Some(_), Level::Ok) => Some((
            "stream_recovered",
            format!("stream {name} has room again: {slots}"),
        )),
        (None, Level::Ok) => None,
    }
}

/// Attempts per alert and webhook; the waits between them double from
/// `first_retry`.
const ATTEMPTS: u32 = 5;

/// One bounded queue and one delivery task per webhook, so a webhook that
/// hangs or fails delays and drops only its own alerts.
#[derive(Debug)]
pub struct Outboxes {
    queues: Vec<mpsc::Sender<Alert>>,
    tasks: tokio::task::JoinSet<()>,
}

impl Outboxes {
    /// Starts a delivery task per webhook; `None` if no HTTP client can be
    /// built (logged: alerts are off).
    pub fn start(settings: &AlertSettings) -> Option<Outboxes> {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the alert webhook client; alerts are off");
                return None;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        let queues = settings
            .webhooks
            .iter()
            .map(|url| {
                let (queue, queued) = mpsc::channel(settings.queue.max(1));
                tasks.spawn(deliver(
                    client.clone(),
                    url.clone(),
                    settings.first_retry,
                    queued,
                ));
                queue
            })
            .collect();
        Some(Outboxes { queues, tasks })
    }

    /// Queues `alert` for every webhook; returns how many queues were full
    /// (the alert is dropped for those webhooks).
    pub fn send(&self, alert: &Alert) -> u64 {
        tracing::info!(event = alert.event, text = %alert.text, "alert");
        let mut dropped = 0;
        for (i, queue) in self.queues.iter().enumerate() {
            if queue.try_send(alert.clone()).is_err() {
                // The URL may carry a secret (chat webhooks do): name its place.
                tracing::error!(
                    webhook = i + 1,
                    event = alert.event,
                    "alert queue full (webhook failing?); alert dropped"
                );
                dropped += 1;
            }
        }
        dropped
    }

    /// Closes the queues and lets each task finish what is queued.
    pub async fn close(self) {
        let Outboxes { queues, mut tasks } = self;
        drop(queues);
        while tasks.join_next().await.is_some() {}
    }
}

/// Posts each queued alert to `url`, in order, retrying a failed post (no
/// answer, 429 or 5xx) with backoff from `first_retry`. Ends when the
/// queue closes.
async fn deliver(
    client: reqwest::Client,
    url: String,
    first_retry: Duration,
    mut alerts: mpsc::Receiver<Alert>,
) {
    while let Some(alert) = alerts.recv().await {
        post_with_retries(&client, &url, &alert, first_retry).await;
    }
}

async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    alert: &Alert,
    first_retry: Duration,
) {
    let body = match serde_json::to_vec(alert) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an alert");
            return;
        }
    };
    let mut wait = first_retry;
    for attempt in 1..=ATTEMPTS {
        let request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        let failure = match request.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                format!("answered {}", r.status())
            }
            Ok(r) => {
                tracing::warn!(%url, status = %r.status(), event = alert.event, "alert webhook refused the alert; not retrying");
                return;
            }
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            tracing::error!(%url, error = %failure, event = alert.event, "alert webhook failed {ATTEMPTS} times; alert dropped");
            return;
        }
        tracing::warn!(%url, error = %failure, attempt, "alert webhook failed; retrying");
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::testing::*;

    fn events(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.event).collect()
    }

    #[test]
    fn streams_alert_once_per_change_with_hysteresis() {
        let t = |free, capacity| StreamTotals {
            relays: 1,
            listeners: 0,
            capacity: Some(capacity),
            free: Some(free),
            reserved: 0,
        };
        let w = Watcher::new(10);
        assert_eq!(w.level(&t(50, 100), None), Level::Ok);
        assert_eq!(w.level(&t(9, 100), Some(Level::Ok)), Level::Low);
        assert_eq!(
            w.level(&t(11, 100), Some(Level::Low)),
            Level::Low,
            "within the margin"
        );
        assert_eq!(w.level(&t(12, 100), Some(Level::Low)), Level::Ok);
        assert_eq!(w.level(&t(0, 100), Some(Level::Ok)), Level::Unavailable);
        let full = t(0, 100);
        assert!(stream_change("live", Some(Level::Low), Level::Low, &full).is_none());
        assert_eq!(
            stream_change("live", Some(Level::Unavailable), Level::Ok, &t(50, 100)).map(|c| c.0),
            Some("stream_recovered")
        );
        assert!(stream_change("live", None, Level::Ok, &full).is_none());
    }

    fn routing(relays: Vec<Relay>, polled: bool) -> Routing {
        let mut snap = snapshot(relays);
        for s in &mut snap.servers {
            s.last_poll_at = polled.then_some(1);
        }
        Routing {
            snap: std::sync::Arc::new(snap),
            now_s: NOW,
            ttl_s: TTL,
        }
    }

    fn down(mut r: Relay) -> Relay {
        r.up = false;
        r
    }

    #[test]
    fn nothing_is_judged_before_every_server_was_polled() {
        let mut w = Watcher::new(10);
        let all_down = || vec![down(relay("a", 0, Some(10)))];
        assert!(w.observe(&routing(all_down(), false)).is_empty());
        assert_eq!(
            events(&w.observe(&routing(all_down(), true))),
            ["server_down", "stream_unavailable"],
            "news once the picture is complete"
        );
    }

    #[test]
    fn one_alert_per_change() {
        let mut w = Watcher::new(10);
        let ok = || vec![relay("a", 10, Some(100)), relay("b", 10, Some(100))];
        assert!(
            w.observe(&routing(ok(), true)).is_empty(),
            "all well at start: silence"
        );
        let b_down = || vec![relay("a", 10, Some(100)), down(relay("b", 10, Some(100)))];
        let alerts = w.observe(&routing(b_down(), true));
        assert_eq!(events(&alerts), ["server_down"]);
        assert_eq!(alerts[0].server.as_deref(), Some("b"));
        assert!(
            alerts[0].text.contains("relay b is DOWN"),
            "{}",
            alerts[0].text
        );
        assert!(w.observe(&routing(b_down(), true)).is_empty(), "no repeat");
        let crowded = || vec![relay("a", 95, Some(100)), down(relay("b", 10, Some(100)))];
        let alerts = w.observe(&routing(crowded(), true));
        assert_eq!(events(&alerts), ["stream_low"]);
        assert_eq!((alerts[0].free, alerts[0].capacity), (Some(5), Some(100)));
        let full = vec![relay("a", 100, Some(100)), down(relay("b", 10, Some(100)))];
        assert_eq!(
            events(&w.observe(&routing(full, true))),
            ["stream_unavailable"]
        );
        assert_eq!(
            events(&w.observe(&routing(ok(), true))),
            ["server_up", "stream_recovered"]
        );
        assert!(w.observe(&routing(ok(), true)).is_empty());
    }
}
