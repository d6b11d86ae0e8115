//! Machine-readable views: the old balancer's `/status`, a full
//! `/api/status`, Prometheus `/metrics`, and `/healthz`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::routing::Routing;
use crate::routing::select::{self, free_slots};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
}

/// `{"<server>": listeners, …}` of reachable servers (draining ones
/// included: they still carry listeners), fewest first — the shape the
/// FastAPI balancer answered, kept for its users' scripts.
async fn status(State(state): State<AppState>) -> Response {
    let snap = state.snapshot();
    let mut up: Vec<(&str, u64)> = snap
        .servers
        .iter()
        .filter(|s| s.health.is_up())
        .map(|s| (s.name.as_str(), s.listeners))
        .collect();
    up.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    // serde_json's map would sort by key; the order is the point here.
    let mut body = String::from("{");
    for (i, (name, listeners)) in up.iter().enumerate() {
        if i > 0 {
            body.push_str(", ");
        }
        let _ = write!(body, "{}: {listeners}", serde_json::Value::from(*name));
    }
    body.push('}');
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct ApiServer<'a> {
    name: &'a str,
    url: &'a str,
    https_url: Option<&'a str>,
    enabled: bool,
    state: &'static str,
    listeners: u64,
    max_listeners: Option<u32>,
    reserved: u64,
    weight: u32,
    country: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// Where `country` and `latitude`/`longitude` came from.
    location_source: LocationSources,
    last_poll_at: Option<i64>,
    last_success_at: Option<i64>,
    latency_ms: Option<i64>,
    /// Kept after the server recovers; `last_error_at` says when it was.
    last_error: Option<&'a str>,
    last_error_at: Option<i64>,
}

/// `"configured"` (admin/config file), `"geoip"` (looked up from the
/// server's host address) or `"unknown"`.
#[derive(Serialize)]
struct LocationSources {
    country: &'static str,
    coordinates: &'static str,
}

#[derive(Serialize)]
struct ApiMount<'a> {
    server: &'a str,
    mount: &'a str,
    live: bool,
    listeners: u32,
    /// `null` means unlimited.
    max: Option<u32>,
    free: Option<u64>,
    reserved: u64,
    /// Why selection would skip this mount now; `null` if it is a candidate.
    excluded: Option<&'static str>,
}

#[derive(Serialize)]
struct ApiStream<'a> {
    name: &'a str,
    description: &'a str,
    fallback_url: Option<&'a str>,
    listeners: u64,
    mounts: Vec<ApiMount<'a>>,
}

#[derive(Serialize)]
struct ApiStatus<'a> {
    generated_at: i64,
    servers: Vec<ApiServer<'a>>,
    streams: Vec<ApiStream<'a>>,
    /// Present with `--cluster`: members, last contact, shared or split.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::Status>,
}

async fn api_status(State(state): State<AppState>) -> Response {
    let Routing {
        snap,
        now_s,
        ttl_s: ttl,
    } = state.routing();
    let servers = snap
        .servers
        .iter()
        .map(|s| ApiServer {
            name: &s.name,
            url: &s.url,
            https_url: s.https_url.as_deref(),
            enabled: s.enabled,
            state: s.health.state.as_str(),
            listeners: s.listeners,
            max_listeners: s.max_listeners,
            reserved: s.counters.ring.count(now_s, ttl),
            weight: s.weight,
            country: s.country.map(|c| c.to_string()),
            latitude: s.coords.map(|c| c.lat),
            longitude: s.coords.map(|c| c.lon),
            location_source: LocationSources {
                country: s.country_source.as_str(),
                coordinates: s.coords_source.as_str(),
            },
            last_poll_at: s.last_poll_at,
            last_success_at: s.last_success_at,
            latency_ms: s.latency_ms,
            last_error: s.last_error.as_deref(),
            last_error_at: s.last_error_at,
        })
        .collect();
    let mut rng = rand::rng();
    let streams = snap
        .streams
        .iter()
        .map(|st| {
            let ranked = select::rank(&snap, st, &Default::default(), now_s, ttl, &mut rng);
            let mounts: Vec<ApiMount> = st
                .mounts
                .iter()
                .map(|&i| {
                    let m = &snap.mounts[i];
                    let s = &snap.servers[m.server];
                    let (free, reserved) = free_slots(m, s, now_s, ttl);
                    let excluded = ranked
                        .iter()
                        .find(|a| a.mount == i)
                        .and_then(|a| a.excluded)
                        .map(|e| e.reason());
                    ApiMount {
                        server: &s.name,
                        mount: &m.path,
                        live: m.live,
                        listeners: m.listeners,
                        max: m.max,
                        free,
                        reserved,
                        excluded,
                    }
                })
                .collect();
            ApiStream {
                name: &st.name,
                description: &st.description,
                fallback_url: st.fallback_url.as_deref(),
                listeners: mounts
                    .iter()
                    .filter(|m| m.live)
                    .map(|m| u64::from(m.listeners))
                    .sum(),
                mounts,
            }
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(ApiStatus {
            generated_at: crate::store::now_ms(),
            servers,
            streams,
            cluster: state.cluster().map(|c| c.status()),
        }),
    )
        .into_response()
}

/// Prometheus label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Routing {
        snap,
        now_s,
        ttl_s: ttl,
    } = state.routing();
    let mut out = String::new();

    out.push_str(
        "# HELP icecast_balancer_redirects_total Listener requests by stream and outcome.\n",
    );
    out.push_str("# TYPE icecast_balancer_redirects_total counter\n");
    for st in &snap.streams {
        let c = &st.counters;
        for (outcome, v) in [
            ("redirect", &c.redirected),
            ("playlist", &c.playlist),
            ("fallback", &c.fallback),
            ("full", &c.full),
            ("forbidden", &c.forbidden),
        ] {
            let _ = writeln!(
                out,
                "icecast_balancer_redirects_total{{stream=\"{}\",outcome=\"{outcome}\"}} {}",
                label(&st.name),
                v.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "icecast_balancer_redirects_total{{stream=\"\",outcome=\"unknown_stream\"}} {}",
        state.metrics().unknown_stream.load(Ordering::Relaxed)
    );

    out.push_str(
        "# HELP icecast_balancer_server_up Whether the server is up (1) by rise/fall health.\n",
    );
    out.push_str("# TYPE icecast_balancer_server_up gauge\n");
    for s in &snap.servers {
        let _ = writeln!(
            out,
            "icecast_balancer_server_up{{server=\"{}\"}} {}",
            label(&s.name),
            u8::from(s.health.is_up())
        );
    }
    out.push_str(
        "# HELP icecast_balancer_server_enabled Whether the server takes new listeners.\n",
    );
    out.push_str("# TYPE icecast_balancer_server_enabled gauge\n");
    for s in &snap.servers {
        let _ = writeln!(
            out,
            "icecast_balancer_server_enabled{{server=\"{}\"}} {}",
            label(&s.name),
            u8::from(s.enabled)
        );
    }
    out.push_str(
        "# HELP icecast_balancer_poll_duration_seconds Duration of the last poll of a server.\n",
    );
    out.push_str("# TYPE icecast_balancer_poll_duration_seconds gauge\n");
    for s in &snap.servers {
        if let Some(ms) = s.latency_ms {
            let _ = writeln!(
                out,
                "icecast_balancer_poll_duration_seconds{{server=\"{}\"}} {:.3}",
                label(&s.name),
                ms as f64 / 1000.0
            );
        }
    }
    out.push_str(
        "# HELP icecast_balancer_poll_errors_total Failed polls of a server by this process.\n",
    );
    out.push_str("# TYPE icecast_balancer_poll_errors_total counter\n");
    for s in &snap.servers {
        let _ = writeln!(
            out,
            "icecast_balancer_poll_errors_total{{server=\"{}\"}} {}",
            label(&s.name),
            s.counters.poll_errors.load(Ordering::Relaxed)
        );
    }
    out.push_str("# HELP icecast_balancer_poll_rounds_total Poll rounds run by this process.\n");
    out.push_str("# TYPE icecast_balancer_poll_rounds_total counter\n");
    let _ = writeln!(
        out,
        "icecast_balancer_poll_rounds_total {}",
        state.metrics().poll_rounds.load(Ordering::Relaxed)
    );

    for (name, help) in [
        ("listeners", "Listeners on a mount at the last poll."),
        (
            "free",
            "Free slots on a mount after reservations (absent when unlimited).",
        ),
        (
            "reserved",
            "Slots reserved by redirects since the last poll.",
        ),
        (
            "max_listeners",
            "Max listeners of a mount (absent when unlimited).",
        ),
    ] {
        let _ = writeln!(out, "# HELP icecast_balancer_mount_{name} {help}");
        let _ = writeln!(out, "# TYPE icecast_balancer_mount_{name} gauge");
        for m in &snap.mounts {
            let s = &snap.servers[m.server];
            let (free, reserved) = free_slots(m, s, now_s, ttl);
            let v = match name {
                "listeners" => Some(u64::from(m.listeners)),
                "free" => free,
                "reserved" => Some(reserved),
                _ => m.max.map(u64::from),
            };
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "icecast_balancer_mount_{name}{{stream=\"{}\",server=\"{}\",mount=\"{}\"}} {v}",
                    label(&snap.streams[m.stream].name),
                    label(&s.name),
                    label(&m.path)
                );
            }
        }
    }
    if let Some(c) = state.cluster() {
        out.push_str(&c.metrics());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
