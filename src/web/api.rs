//! Machine-readable views: the old balancer's `/status`, a full
//! `/api/status` and `/healthz` (`/metrics` is in `metrics`).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Serialize;

use super::session::session_user;
use crate::error::Result;
use crate::routing::Routing;
use crate::routing::select::{self, free_slots};
use crate::routing::snapshot::{ServerEntry, StreamEntry};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/api/status", get(api_status))
}

/// `/healthz` and `/readyz`: merged outside the request log, so a probe
/// every few seconds (and its 503 while shutting down) writes no line.
pub fn probes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
    /// Where load.xsl is read; only with details (see [`Details`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_url: Option<String>,
    /// Kept after the server recovers; `last_error_at` says when it was.
    /// Only with details: an error names internal addresses.
    last_error: Option<&'a str>,
    last_error_at: Option<i64>,
    /// Only for relays with a callback token (`listeners` is then theirs).
    #[serde(skip_serializing_if = "Option::is_none")]
    callbacks: Option<ApiCallbacks>,
}

/// A relay's URL-auth callbacks: when the last came, and what the last
/// poll found beyond what they accounted for (`drift`, listeners; 0 =
/// they agreed; the count was corrected by it).
#[derive(Serialize)]
struct ApiCallbacks {
    last_callback_at: Option<i64>,
    drift: i64,
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
    listeners: u64,
    /// The limit enforced (`null`: nobody knows one): the relay's, the
    /// configured one, or the lower of both.
    max: Option<u32>,
    /// The mount's `max_listeners` from the configuration.
    max_configured: Option<u32>,
    free: Option<u64>,
    reserved: u64,
    /// Why selection would skip this mount now; `null` if it is a candidate.
    excluded: Option<&'static str>,
    /// With callbacks: the last poll's correction of their count.
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_drift: Option<i64>,
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
    /// Whether error texts and poll addresses are shown (to the API token
    /// or an admin session); others see health only.
    details: bool,
    servers: Vec<ApiServer<'a>>,
    streams: Vec<ApiStream<'a>>,
    /// Present with `--cluster`: members, last contact, shared or split.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::Status>,
}

/// Ready when this instance can answer: the database answers, a routing
/// snapshot is loaded, and it is not shutting down. Full or down relays
/// do not make it unready: a front proxy would then drop every instance
/// during a sell-out, and listeners would lose the clear 503 and the
/// fallback. Nothing here logs above debug: a probe every few seconds
/// must not fill the log.
async fn readyz(State(state): State<AppState>) -> Response {
    let answer = |code: StatusCode, text: String| {
        (code, [(header::CACHE_CONTROL, "no-store")], text).into_response()
    };
    let unready = |why: String| {
        tracing::debug!(%why, "not ready");
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    };
    if state.is_stopping() {
        return unready("shutting down".into());
    }
    let db = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(state.db())
        .await;
    if let Err(e) = db {
        return unready(format!("the database does not answer ({e})"));
    }
    let r = state.routing();
    if r.snap.built_at_ms == 0 {
        return unready("no routing snapshot loaded yet".into());
    }
    let open = r
        .snap
        .streams
        .iter()
        .filter(|st| select::stream_totals(&r.snap, st, r.now_s, r.ttl_s).can_take_listener())
        .count();
    answer(
        StatusCode::OK,
        format!(
            "ready: {open} of {} streams can take a listener now\n",
            r.snap.streams.len()
        ),
    )
}

/// Error texts and poll addresses are for the operator: an error such as
/// "connection refused to http://10.0.0.5:8000" maps the internal network.
async fn shows_details(state: &AppState, headers: &HeaderMap) -> Result<bool> {
    if let Some(token) = &state.settings().api_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if crate::domain::secret::same(given, token) {
            return Ok(true);
        }
    }
    Ok(session_user(state, headers).await?.is_some())
}

/// Poll addresses by server name, read from the store (the snapshot has
/// no use for them).
async fn poll_urls(state: &AppState) -> Result<HashMap<String, String>> {
    let mut conn = state.db().acquire().await?;
    let rows = crate::store::servers::list(&mut conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.name.clone(), r.poll_base().to_string()))
        .collect())
}

async fn api_status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let details = match shows_details(&state, &headers).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let body = if details {
        match poll_urls(&state).await {
            Ok(urls) => status_json(&state, true, urls)
                .map(Bytes::from)
                .map_err(|e| format!("{e}")),
            Err(e) => return e.into_response(),
        }
    } else {
        // The public answer is the same for everyone: shared (`web::shared`).
        let from = state.clone();
        state
            .renderings()
            .status
            .get(move || status_json(&from, false, HashMap::new()).map(Bytes::from))
            .await
            .map_err(|e| format!("{e:?}"))
    };
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /api/status");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `/api/status` as JSON; `details` with the poll addresses in `poll_urls`.
fn status_json(
    state: &AppState,
    details: bool,
    mut poll_urls: HashMap<String, String>,
) -> serde_json::Result<Vec<u8>> {
    let routing = state.routing();
    let servers = routing
        .snap
        .servers
        .iter()
        .map(|s| api_server(s, &routing, details, poll_urls.remove(&s.name)))
        .collect();
    let streams = routing
        .snap
        .streams
        .iter()
        .map(|st| api_stream(st, &routing))
        .collect();
    serde_json::to_vec(&ApiStatus {
        generated_at: crate::store::now_ms(),
        details,
        servers,
        streams,
        cluster: state.cluster().map(|c| {
            let mut st = c.status();
            // A Redis error names the Redis host.
            st.last_error = st.last_error.filter(|_| details);
            st
        }),
    })
}

fn api_server<'a>(
    s: &'a ServerEntry,
    routing: &Routing,
    details: bool,
    poll_url: Option<String>,
) -> ApiServer<'a> {
    ApiServer {
        name: &s.name,
        url: &s.url,
        https_url: s.https_url.as_deref(),
        enabled: s.enabled,
        state: s.health.state.as_str(),
        listeners: s.listeners_now(),
        max_listeners: s.max_listeners,
        reserved: s.counters.ledger.count(routing.now_s, routing.ttl_s),
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
        poll_url,
        last_error: s.last_error.as_deref().filter(|_| details),
        last_error_at: s.last_error_at,
        callbacks: s.callback_token.as_ref().map(|_| {
            let last = s.counters.book.last_callback_ms();
            ApiCallbacks {
                last_callback_at: (last > 0).then_some(last),
                drift: s.counters.callbacks.drift(),
            }
        }),
    }
}

/// A stream with its mounts, each with the verdict of a ranking for a
/// client of unknown location.
fn api_stream<'a>(st: &'a StreamEntry, routing: &'a Routing) -> ApiStream<'a> {
    let (snap, now_s, ttl) = (&routing.snap, routing.now_s, routing.ttl_s);
    let ranked = select::survey(snap, st, now_s, ttl);
    // By mount index, so each mount's verdict is one lookup, not a scan of
    // the ranking (which made this O(mounts²)).
    let excluded_of: HashMap<usize, Option<&'static str>> = ranked
        .iter()
        .map(|a| (a.mount, a.excluded.map(|e| e.reason())))
        .collect();
    let mounts: Vec<ApiMount> = st
        .mounts
        .iter()
        .map(|&i| {
            let m = &snap.mounts[i];
            let s = &snap.servers[m.server];
            let (free, reserved) = free_slots(m, s, now_s, ttl);
            ApiMount {
                server: &s.name,
                mount: &m.path,
                live: m.live,
                listeners: m.listeners_now(),
                max: m.max,
                max_configured: m.configured_max,
                free,
                reserved,
                excluded: excluded_of.get(&i).copied().flatten(),
                callback_drift: m.callbacks.then(|| m.counters.callbacks.drift()),
            }
        })
        .collect();
    ApiStream {
        name: &st.name,
        description: &st.description,
        fallback_url: st.fallback_url.as_deref(),
        listeners: mounts.iter().filter(|m| m.live).map(|m| m.listeners).sum(),
        mounts,
    }
}
