//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by the
//! `prometheus-client` crate from what the routing snapshot and the
//! process's counters hold at scrape time, plus the redirect-latency
//! histogram and the usual `process_*` figures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::engine::metrics::process_start_time;
use crate::routing::Snapshot;
use crate::routing::select::free_slots;
use crate::routing::snapshot::ServerEntry;
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let from = state.clone();
    let rendered = state
        .renderings()
        .metrics
        .get(move || render(&from).map(Bytes::from))
        .await;
    match rendered {
        Ok(body) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = ?e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

/// The whole scrape (shared by the requests of a second: `web::shared`).
fn render(state: &AppState) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let routing = state.routing();
    let metrics = state.metrics();
    registry.register_collector(Box::new(Scrape {
        snap: routing.snap,
        now_s: routing.now_s,
        ttl: routing.ttl_s,
        unknown_stream: metrics.unknown_stream.load(Ordering::Relaxed),
        alerts_dropped: metrics.alerts_dropped.load(Ordering::Relaxed),
        poll_rounds: state.poller().rounds(),
        latency: metrics.redirect_latency.read(),
        callbacks: metrics.callbacks.read(),
    }));
    registry.register_collector(Box::new(Process));
    if let Some(c) = state.cluster() {
        registry.register_collector(Box::new(ClusterGauges(c.figures())));
    }
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Everything of the balancer itself, read once per scrape.
struct Scrape {
    snap: Arc<Snapshot>,
    now_s: u64,
    ttl: u64,
    unknown_stream: u64,
    alerts_dropped: u64,
    poll_rounds: u64,
    latency: (f64, u64, Vec<(f64, u64)>),
    /// Relay callbacks by outcome.
    callbacks: [(&'static str, u64); 7],
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One per-mount figure, from the scrape and a mount's index.
type MountValue = fn(&Scrape, usize) -> Option<u64>;

/// One metric family: `samples` of (labels, value).
fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Counts are encoded as integers (`3`), times and bytes as floats.
fn gauges<'a, N: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, N)>,
) -> std::fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(enc, name, help, MetricType::Gauge, samples)
}

fn counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> std::fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(enc, name, help, MetricType::Counter, samples)
}

fn ms_to_s(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        gauges(
            &mut enc,
            "icecast_balancer_build_info",
            "The running version (always 1)",
            [(version.to_vec(), 1u64)],
        )?;
        self.encode_redirects(&mut enc)?;
        counters(
            &mut enc,
            "icecast_balancer_alerts_dropped",
            "Alerts dropped because a webhook's queue was full (one per webhook)",
            [(Labels::new(), self.alerts_dropped)],
        )?;
        self.encode_servers(&mut enc)?;
        self.encode_mounts(&mut enc)
    }
}

impl Scrape {
    fn encode_redirects(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let mut samples = Vec::new();
        for st in &self.snap.streams {
            let c = &st.counters;
            for (outcome, v) in [
                ("redirect", &c.redirected),
                ("playlist", &c.playlist),
                ("fallback", &c.fallback),
                ("full", &c.full),
                ("unavailable", &c.unavailable),
                ("forbidden", &c.forbidden),
            ] {
                let labels = vec![("stream", st.name.as_str()), ("outcome", outcome)];
                samples.push((labels, v.load(Ordering::Relaxed)));
            }
        }
        let unknown = vec![("stream", ""), ("outcome", "unknown_stream")];
        samples.push((unknown, self.unknown_stream));
        counters(
            enc,
            "icecast_balancer_redirects",
            "Listener requests by stream and outcome (full: every relay up is full; \
             unavailable: no relay of the stream is up)",
            samples,
        )?;
        let (sum, count, buckets) = &self.latency;
        let mut metric = enc.encode_descriptor(
            "icecast_balancer_redirect_duration_seconds",
            "Time to answer a listener request, from routing to the response",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            *sum, *count, buckets, None,
        )
    }

    fn encode_servers(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let servers = &self.snap.servers;
        fn each<'s, N>(
            servers: &'s [ServerEntry],
            f: impl Fn(&ServerEntry) -> Option<N>,
        ) -> Vec<(Labels<'s>, N)> {
            servers
                .iter()
                .filter_map(|s| f(s).map(|v| (vec![("server", s.name.as_str())], v)))
                .collect()
        }
        let flag = |b: bool| u64::from(b);
        gauges(
            enc,
            "icecast_balancer_server_up",
            "Whether the server is up (1) by rise/fall health",
            each(servers, |s| Some(flag(s.health.is_up()))),
        )?;
        gauges(
            enc,
            "icecast_balancer_server_enabled",
            "Whether the server takes new listeners",
            each(servers, |s| Some(flag(s.enabled))),
        )?;
        gauges(
            enc,
            "icecast_balancer_server_listeners",
            "Listeners on the server's mounts at the last poll",
            each(servers, |s| Some(s.listeners)),
        )?;
        gauges(
            enc,
            "icecast_balancer_server_last_success_timestamp_seconds",
            "When the server last answered a poll (Unix time)",
            each(servers, |s| s.last_success_at.map(ms_to_s)),
        )?;
        gauges(
            enc,
            "icecast_balancer_server_last_poll_timestamp_seconds",
            "When the server was last polled, answered or not (Unix time)",
            each(servers, |s| s.last_poll_at.map(ms_to_s)),
        )?;
        gauges(
            enc,
            "icecast_balancer_poll_duration_seconds",
            "Duration of the last poll of a server",
            each(servers, |s| s.latency_ms.map(ms_to_s)),
        )?;
        let errors = servers.iter().map(|s| {
            let v = s.counters.poll_errors.load(Ordering::Relaxed);
            (vec![("server", s.name.as_str())], v)
        });
        counters(
            enc,
            "icecast_balancer_poll_errors",
            "Failed polls of a server by this process",
            errors,
        )?;
        counters(
            enc,
            "icecast_balancer_poll_rounds",
            "Poll rounds run by this process",
            [(Vec::new(), self.poll_rounds)],
        )?;
        self.encode_callbacks(enc)
    }

    fn encode_callbacks(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let with_token = self
            .snap
            .servers
            .iter()
            .filter(|s| s.callback_token.is_some());
        gauges(
            enc,
            "icecast_balancer_server_callback_drift",
            "Listeners the last poll found beyond what the relay's callbacks accounted for \
             (negative: fewer); the count was corrected by it",
            with_token.map(|s| {
                (
                    vec![("server", s.name.as_str())],
                    s.counters.callbacks.drift(),
                )
            }),
        )?;
        counters(
            enc,
            "icecast_balancer_relay_callbacks",
            "Relay URL-auth callbacks by outcome (confirmed: a redirect's listener arrived; \
             direct: a listener without a valid token; refused: bad credentials)",
            self.callbacks
                .iter()
                .map(|(o, v)| (vec![("outcome", *o)], *v)),
        )
    }

    fn encode_mounts(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let snap = &self.snap;
        let families: [(&str, &str, MountValue); 4] = [
            (
                "listeners",
                "Listeners on a mount at the last poll",
                |sc, m| Some(u64::from(sc.snap.mounts[m].listeners)),
            ),
            (
                "free",
                "Free slots on a mount after reservations (absent when unlimited)",
                |sc, m| sc.free_reserved(m).0,
            ),
            (
                "reserved",
                "Slots reserved by redirects since the last poll",
                |sc, m| Some(sc.free_reserved(m).1),
            ),
            (
                "max_listeners",
                "Max listeners of a mount (absent when unlimited)",
                |sc, m| sc.snap.mounts[m].max.map(u64::from),
            ),
        ];
        for (name, help, value) in families {
            let samples = (0..snap.mounts.len()).filter_map(|i| {
                let m = &snap.mounts[i];
                let labels = vec![
                    ("stream", snap.streams[m.stream].name.as_str()),
                    ("server", snap.servers[m.server].name.as_str()),
                    ("mount", m.path.as_str()),
                ];
                value(self, i).map(|v| (labels, v))
            });
            gauges(
                enc,
                &format!("icecast_balancer_mount_{name}"),
                help,
                samples,
            )?;
        }
        Ok(())
    }

    fn free_reserved(&self, m: usize) -> (Option<u64>, u64) {
        let mount = &self.snap.mounts[m];
        free_slots(
            mount,
            &self.snap.servers[mount.server],
            self.now_s,
            self.ttl,
        )
    }
}

/// With `--cluster`: whether slots are shared, members, last contact.
#[derive(Debug)]
struct ClusterGauges(crate::cluster::Figures);

impl Collector for ClusterGauges {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let f = self.0;
        let one = |v: u64| [(Labels::new(), v)];
        let name = |n: &str| format!("icecast_balancer_cluster_{n}");
        let gauge = |enc: &mut DescriptorEncoder, n: &str, help: &str, v: u64| {
            gauges(enc, &name(n), help, one(v))
        };
        gauge(
            &mut enc,
            "shared",
            "1 while slots are shared through Redis, 0 while split",
            u64::from(f.shared),
        )?;
        gauge(
            &mut enc,
            "members",
            "Instances seen in the last minute, this one included",
            f.members,
        )?;
        gauge(
            &mut enc,
            "members_absent",
            "Instances seen in the last minute that are not in touch with Redis now",
            f.absent,
        )?;
        gauges(
            &mut enc,
            &name("last_contact_age_seconds"),
            "Seconds since Redis last answered (-1: never)",
            [(Labels::new(), f.last_contact_age_s)],
        )
    }
}

/// `process_*` as the Prometheus client libraries name them, read from
/// `/proc/self` (absent where there is none).
#[derive(Debug)]
struct Process;

/// `/proc` reports CPU time in clock ticks of this fixed rate (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        fn one<N>(v: N) -> [(Labels<'static>, N); 1] {
            [(Vec::new(), v)]
        }
        if let Some((cpu, virt)) = proc_stat() {
            let cpu = [(Vec::<(&str, &str)>::new(), ConstCounter::new(cpu))];
            family(
                &mut enc,
                "process_cpu_seconds",
                "User and system CPU time spent in seconds",
                MetricType::Counter,
                cpu,
            )?;
            gauges(
                &mut enc,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                one(virt),
            )?;
        }
        if let Some(rss) = proc_status_kb("VmRSS:") {
            gauges(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                one(rss * 1024.0),
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let open = fds.count() as u64;
            gauges(
                &mut enc,
                "process_open_fds",
                "Number of open file descriptors",
                one(open),
            )?;
        }
        if let Some(max) = max_open_files() {
            let max = max as u64;
            gauges(
                &mut enc,
                "process_max_fds",
                "Maximum number of open file descriptors",
                one(max),
            )?;
        }
        gauges(
            &mut enc,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            one(process_start_time()),
        )
    }
}

/// (CPU seconds, virtual memory bytes) from `/proc/self/stat`.
fn proc_stat() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself hold spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Numbered from the state field (3 in proc(5)): utime 14, stime 15, vsize 23.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(((field(14)? + field(15)?) / TICKS_PER_SECOND, field(23)?))
}

fn proc_status_kb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_read_from_proc() {
        let (cpu, virt) = proc_stat().unwrap();
        assert!(cpu >= 0.0 && virt > 1e6, "{cpu} {virt}");
        assert!(proc_status_kb("VmRSS:").unwrap() > 100.0);
        assert!(max_open_files().unwrap() >= 64.0);
    }
}
