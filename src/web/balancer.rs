//! The listener-facing endpoints under `/icecast_balancer/`: the redirect
//! itself, playlists, the public stream list, and the cron poll hook.
//!
//! The redirect path reads only the in-memory snapshot and atomic counters.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use super::client_ip::{ClientInfo, client_info};
use super::or_unlimited;
use crate::domain::ClientGeo;
use crate::routing::Snapshot;
use crate::routing::select;
use crate::routing::snapshot::{ServerEntry, StreamEntry};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/icecast_balancer/", get(index))
        .route("/icecast_balancer", get(index))
        // A stream may be called "poll": GET on this path is still a listener.
        .route(
            "/icecast_balancer/poll",
            get(stream_named_poll).post(poll_now),
        )
        .route("/icecast_balancer/{stream}", get(stream))
        .route("/icecast_balancer/{stream}/", get(stream))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Redirect,
    M3u,
    Pls,
}

fn split_format(name: &str) -> (&str, Format) {
    if let Some(n) = name.strip_suffix(".m3u") {
        (n, Format::M3u)
    } else if let Some(n) = name.strip_suffix(".pls") {
        (n, Format::Pls)
    } else {
        (name, Format::Redirect)
    }
}

async fn stream_named_poll(state: State<AppState>, req: Request) -> Response {
    stream(state, Path("poll".to_string()), req).await
}

/// Takes the whole request rather than `HeaderMap`/`Uri` extractors, which
/// would clone them on every redirect.
async fn stream(State(state): State<AppState>, Path(name): Path<String>, req: Request) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no peer address\n".into(),
        );
    };
    let (method, uri, headers) = (req.method(), req.uri(), req.headers());
    let (name, format) = split_format(&name);
    let snap = state.snapshot();
    let Some(stream) = snap.stream(name) else {
        state
            .metrics()
            .unknown_stream
            .fetch_add(1, Ordering::Relaxed);
        return plain(
            StatusCode::NOT_FOUND,
            format!("No stream named {name:?} here.\n"),
        );
    };
    let client = client_info(peer.ip(), headers, &state.settings().trusted_proxies);
    let geo = state.geo().lookup(client.ip);
    if !select::allowed(stream, &geo) {
        stream.counters.forbidden.fetch_add(1, Ordering::Relaxed);
        return plain(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            restricted_message(stream, &geo, &client),
        );
    }
    // HEAD answers what GET would, but a HEAD is not a listener: no slot.
    let reserve = method != Method::HEAD;
    let now_s = state.clock().now_s();
    let ttl = state.settings().reservation_ttl_s();
    // The thread's generator must not live across the cluster's await.
    let ranked = select::rank(&snap, stream, &geo, now_s, ttl, &mut rand::rng());
    let candidates = ranked.iter().take_while(|a| a.excluded.is_none());
    let mut chosen = Vec::with_capacity(if format == Format::Redirect { 1 } else { 5 });
    for a in candidates {
        let take = !reserve
            || !chosen.is_empty()
            || super::cluster_slots::reserve(state.cluster(), &snap, a.mount, now_s, ttl).await;
        if take {
            chosen.push(a.mount);
            if format == Format::Redirect || chosen.len() == 5 {
                break;
            }
        }
    }
    if chosen.is_empty() {
        return full(&state, stream);
    }
    let first = &snap.mounts[chosen[0]];
    if reserve {
        first.counters.redirects.fetch_add(1, Ordering::Relaxed);
        snap.servers[first.server]
            .counters
            .redirects
            .fetch_add(1, Ordering::Relaxed);
    }
    let url_of = |m: usize| mount_url(&snap, m, &client, uri.query());
    match format {
        Format::Redirect => {
            stream.counters.redirected.fetch_add(1, Ordering::Relaxed);
            // Only listeners count: a HEAD is answered but not a redirect of one.
            if reserve {
                stream.counters.countries.add(geo.country);
            }
            let location = url_of(chosen[0]);
            tracing::debug!(stream = %stream.name, client = %client.ip, %location, "redirect");
            redirect(&location)
        }
        Format::M3u | Format::Pls => {
            stream.counters.playlist.fetch_add(1, Ordering::Relaxed);
            let urls: Vec<String> = chosen.iter().map(|&m| url_of(m)).collect();
            playlist(format, stream, &urls)
        }
    }
}

/// Says why, and where the stream can be heard, so a listener (or their
/// support) can tell a licence restriction from a fault.
fn restricted_message(stream: &StreamEntry, geo: &ClientGeo, client: &ClientInfo) -> String {
    let allowed = stream.allowed_list();
    match geo.country {
        Some(c) => format!(
            "Stream {:?} is not available in your country ({c}); it is available in {allowed}.\n",
            stream.name
        ),
        None => format!(
            "Stream {:?} is only available in {allowed}, and the country of your address ({}) \
             is unknown.\n",
            stream.name, client.ip
        ),
    }
}

fn mount_url(snap: &Snapshot, m: usize, client: &ClientInfo, query: Option<&str>) -> String {
    let mount = &snap.mounts[m];
    let server: &ServerEntry = &snap.servers[mount.server];
    let base = match (&server.https_url, client.https) {
        (Some(https), true) => https.as_str(),
        _ => server.url.as_str(),
    };
    let mut url = format!("{base}{}", mount.path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn full(state: &AppState, stream: &StreamEntry) -> Response {
    if let Some(url) = &stream.fallback_url {
        stream.counters.fallback.fetch_add(1, Ordering::Relaxed);
        return redirect(url);
    }
    stream.counters.full.fetch_add(1, Ordering::Relaxed);
    let retry = state.settings().poll_interval.as_secs().clamp(5, 60);
    let mut resp = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "No relay available at the moment: every relay of stream {:?} is full or down. \
             Please try again in {retry} seconds.\n",
            stream.name
        ),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        retry.to_string().parse().expect("digits"),
    );
    resp
}

fn playlist(format: Format, stream: &StreamEntry, urls: &[String]) -> Response {
    let title = if stream.description.is_empty() {
        stream.name.as_str()
    } else {
        stream.description.as_str()
    };
    // Playlist formats are line-based; a newline in a title would forge entries.
    let title: String = title
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut body = String::new();
    let content_type = match format {
        Format::M3u => {
            body.push_str("#EXTM3U\n");
            for u in urls {
                let _ = write!(body, "#EXTINF:-1,{title}\n{u}\n");
            }
            "audio/x-mpegurl"
        }
        _ => {
            body.push_str("[playlist]\n");
            for (i, u) in urls.iter().enumerate() {
                let n = i + 1;
                let _ = write!(body, "File{n}={u}\nTitle{n}={title}\nLength{n}=-1\n");
            }
            let _ = write!(body, "NumberOfEntries={}\nVersion=2\n", urls.len());
            "audio/x-scpls"
        }
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "inline; filename=\"{}.{}\"",
                    stream.name,
                    if format == Format::M3u { "m3u" } else { "pls" }
                ),
            ),
        ],
        body,
    )
        .into_response()
}

async fn poll_now(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.settings().poll_token else {
        return plain(
            StatusCode::FORBIDDEN,
            "Polling over HTTP is disabled: start the balancer with --poll-token.\n".into(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        let mut resp = plain(
            StatusCode::UNAUTHORIZED,
            "A valid 'Authorization: Bearer <poll token>' header is required.\n".into(),
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        return resp;
    }
    match state.poll_now().await {
        Ok(summary) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(summary)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub struct StreamRow {
    pub name: String,
    pub description: String,
    pub listeners: u64,
    pub free: String,
    pub relays: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "balancer/index.html")]
struct IndexPage {
    streams: Vec<StreamRow>,
}

/// Free slots and listeners per stream as selection sees them now.
pub fn stream_rows(state: &AppState, snap: &Snapshot) -> Vec<StreamRow> {
    let now_s = state.clock().now_s();
    let ttl = state.settings().reservation_ttl_s();
    snap.streams
        .iter()
        .map(|st| {
            let t = select::stream_totals(snap, st, now_s, ttl);
            StreamRow {
                name: st.name.clone(),
                description: st.description.clone(),
                listeners: t.listeners,
                free: or_unlimited(t.free),
                relays: t.relays,
            }
        })
        .collect()
}

async fn index(State(state): State<AppState>) -> impl IntoResponse {
    let snap = state.snapshot();
    IndexPage {
        streams: stream_rows(&state, &snap),
    }
}
