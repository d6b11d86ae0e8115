//! The listener-facing endpoints under `/icecast_balancer/`: the redirect
//! itself, playlists, the public stream list, and the cron poll hook.
//!
//! The redirect path reads only the in-memory snapshot and atomic counters.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::client_ip::{ClientInfo, client_info};
use super::stream_list::{StreamRow, stream_rows};
use crate::domain::ClientGeo;
use crate::routing::Snapshot;
use crate::routing::capacity::{self, Refusal};
use crate::routing::clients::{Verdict, agent_hash};
use crate::routing::select::{self, Want};
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
    // The parts only: a `&Request` (its body) cannot be held across the
    // wait for fresh counts.
    let (parts, _body) = req.into_parts();
    timed_answer(&state, &name, peer, &parts).await
}

/// The stream a listener's GET names when the request can be answered
/// without the router: `/icecast_balancer/{name}` or `…/{name}/`, the name
/// needing no percent-decoding. The router's routes above say the same for
/// these paths (a stream named "poll" included), so the connection layer
/// may call [`listener`] for them directly; anything else (HEAD, an
/// escaped name, the index) goes through the router.
pub fn direct_stream<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    if method != Method::GET {
        return None;
    }
    let rest = path.strip_prefix("/icecast_balancer/")?;
    let name = rest.strip_suffix('/').unwrap_or(rest);
    let plain = !name.is_empty() && !name.bytes().any(|b| b == b'/' || b == b'%');
    plain.then_some(name)
}

/// A listener's request as [`direct_stream`] accepts it, answered as the
/// router's `stream` route answers it. The routing, the extensions and the
/// owned copy of the name that the router needs cost a tenth of a
/// redirect.
pub async fn listener(state: AppState, peer: SocketAddr, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let Some(name) = direct_stream(&parts.method, parts.uri.path()) else {
        return plain(StatusCode::NOT_FOUND, "Not a stream address.\n".into());
    };
    timed_answer(&state, name, peer, &parts).await
}

/// `answer`, its time recorded in the redirect-latency histogram.
async fn timed_answer(state: &AppState, name: &str, peer: SocketAddr, req: &Parts) -> Response {
    let started = std::time::Instant::now();
    let resp = answer(state, name, peer, req).await;
    state.metrics().redirect_latency.observe(started.elapsed());
    resp
}

async fn answer(state: &AppState, name: &str, peer: SocketAddr, req: &Parts) -> Response {
    let (method, uri, headers) = (&req.method, &req.uri, &req.headers);
    let (name, format) = split_format(name);
    let snap = state.snapshot();
    let Some(stream) = snap.stream(name) else {
        return unknown_stream(state);
    };
    let client = client_info(
        peer.ip(),
        headers,
        &state.settings().trusted_proxies,
        state.settings().forwarded_header,
    );
    let geo = state.client_geo(client.ip);
    // HEAD answers what GET would, but a HEAD is not a listener: no slot.
    let reserve = method != Method::HEAD;
    let want = Want {
        https: client.https,
    };
    if format == Format::Redirect && reserve {
        let agent = headers
            .get(header::USER_AGENT)
            .map_or(&b""[..], |v| v.as_bytes());
        let listener = Listener {
            client: &client,
            geo,
            want,
            agent: agent_hash(agent),
            query: uri.query(),
        };
        let snap = arc_swap::Guard::into_inner(snap);
        return listen(state, snap, name, &listener).await;
    }
    let ask = capacity::Ask {
        client: &geo,
        want,
        clock: state.clock(),
        ttl_s: state.settings().reservation_ttl_s(),
        gate: state.cluster(),
        signer: Some(state.signer()),
    };
    let limit = if format == Format::Redirect { 1 } else { 5 };
    let chosen = match capacity::playlist(&snap, stream, &ask, limit, reserve).await {
        Ok(chosen) => chosen,
        Err(refusal) => return refused(state, &snap, stream, &geo, &client, refusal),
    };
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
            redirect(location)
        }
        Format::M3u | Format::Pls => {
            stream.counters.playlist.fetch_add(1, Ordering::Relaxed);
            let urls: Vec<String> = chosen.iter().map(|&m| url_of(m)).collect();
            playlist(format, stream, &urls)
        }
    }
}

/// The answer for a stream name we do not know. It does not repeat the
/// name: a link could make this page say anything.
const NO_SUCH_STREAM: &str =
    "No stream of that name here. Streams are listed at /icecast_balancer/.\n";

fn unknown_stream(state: &AppState) -> Response {
    state
        .metrics()
        .unknown_stream
        .fetch_add(1, Ordering::Relaxed);
    plain(StatusCode::NOT_FOUND, NO_SUCH_STREAM.into())
}

/// The answer when routing has no slot for the client.
fn refused(
    state: &AppState,
    snap: &Snapshot,
    stream: &StreamEntry,
    geo: &ClientGeo,
    client: &ClientInfo,
    why: Refusal,
) -> Response {
    match why {
        Refusal::GeoBlocked => forbidden(stream, geo, client),
        Refusal::Full => full(state, snap, stream, true),
        Refusal::Unavailable => full(state, snap, stream, false),
    }
}

/// The answer where the stream may not be heard.
fn forbidden(stream: &StreamEntry, geo: &ClientGeo, client: &ClientInfo) -> Response {
    stream.counters.forbidden.fetch_add(1, Ordering::Relaxed);
    plain(
        StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        restricted_message(stream, geo, client),
    )
}

/// A listener's request, as the redirect path needs it.
struct Listener<'a> {
    client: &'a ClientInfo,
    geo: ClientGeo,
    want: Want,
    agent: u64,
    query: Option<&'a str>,
}

/// The redirect itself: a repeat goes where the client went before, a
/// new listener gets the best mount and a reservation. When the stream
/// looks full, fresh counts are awaited (`--full-recheck`): listeners who
/// left since the last poll have freed slots the balancer cannot see yet.
/// Allocates nothing but the answer unless the stream is full.
async fn listen(
    state: &AppState,
    mut snap: Arc<Snapshot>,
    name: &str,
    l: &Listener<'_>,
) -> Response {
    let settings = state.settings();
    let grace_ms = settings.reservation_grace.as_millis() as i64;
    let now_ms = state.clock().now_ms();
    let Some(stream) = snap.stream(name) else {
        return plain(StatusCode::NOT_FOUND, NO_SUCH_STREAM.into());
    };
    if !select::allowed(stream, &l.geo) {
        return forbidden(stream, &l.geo, l.client);
    }
    let book = settings.max_reservations_per_client > 0;
    let verdict = if !book {
        Verdict::New
    } else {
        state.clients().judge(
            l.client.ip,
            stream.id,
            l.agent,
            now_ms,
            grace_ms,
            settings.max_reservations_per_client,
        )
    };
    if let Verdict::Same(id) = verdict
        && let Some(m) = serving_mount(&snap, stream, id)
    {
        stream.counters.redirected.fetch_add(1, Ordering::Relaxed);
        return redirect(mount_url(&snap, m, l.client, l.query));
    }
    let ask = capacity::Ask {
        client: &l.geo,
        want: l.want,
        clock: state.clock(),
        ttl_s: settings.reservation_ttl_s(),
        gate: state.cluster(),
        signer: Some(state.signer()),
    };
    let deadline = tokio::time::Instant::now() + settings.full_recheck;
    loop {
        let Some(stream) = snap.stream(name) else {
            return plain(StatusCode::NOT_FOUND, NO_SUCH_STREAM.into());
        };
        let why = match capacity::redirect(&snap, stream, &ask).await {
            Ok(slot) => {
                stream.counters.redirected.fetch_add(1, Ordering::Relaxed);
                stream.counters.countries.add(l.geo.country);
                if book {
                    let id = snap.mounts[slot.mount].id;
                    state
                        .clients()
                        .record(l.client.ip, stream.id, l.agent, id, now_ms);
                }
                let query = slot.query(l.query);
                let location = mount_url(&snap, slot.mount, l.client, query.as_deref());
                tracing::debug!(stream = %stream.name, client = %l.client.ip, %location, "redirect");
                return redirect(location);
            }
            Err(why) => why,
        };
        if why == Refusal::GeoBlocked || !state.await_fresh_counts(deadline).await {
            return refused(state, &snap, stream, &l.geo, l.client, why);
        }
        snap = arc_swap::Guard::into_inner(state.snapshot());
    }
}

/// Mount `id` of the stream, if it could take a listener now.
fn serving_mount(snap: &Snapshot, stream: &StreamEntry, id: i64) -> Option<usize> {
    (stream.routes.serving().iter())
        .map(|&m| m as usize)
        .find(|&m| snap.mounts[m].id == id)
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
    let query = query.filter(|q| !q.is_empty());
    // Sized once: the header takes this buffer as it is.
    let len = base.len() + mount.path.len() + query.map_or(0, |q| q.len() + 1);
    let mut url = String::with_capacity(len);
    url.push_str(base);
    url.push_str(&mount.path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Takes the URL by value: the header takes over its buffer, so a
/// redirect allocates nothing more than the URL itself.
fn redirect(location: String) -> Response {
    let Ok(location) = HeaderValue::try_from(location) else {
        // What axum answers for a header that cannot be sent.
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid redirect location\n".into(),
        );
    };
    let mut resp = StatusCode::FOUND.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
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

/// `any_up`: some relay is up but full (counted as `full`), else none is
/// up (`unavailable`); the listener's answer is the same.
fn full(state: &AppState, snap: &Snapshot, stream: &StreamEntry, any_up: bool) -> Response {
    let now_s = state.clock().now_s();
    if let Some(url) = &stream.fallback_url {
        stream.counters.fallback.fetch_add(1, Ordering::Relaxed);
        stream.counters.recent_fallback.add(now_s);
        return redirect(url.clone());
    }
    let counter = if any_up {
        &stream.counters.full
    } else {
        &stream.counters.unavailable
    };
    counter.fetch_add(1, Ordering::Relaxed);
    stream.counters.recent_refused.add(now_s);
    let retry = state.settings().poll_interval.as_secs().clamp(5, 60);
    let mut resp = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "No relay available at the moment: every relay of stream {:?} is full or down. \
             Please try again in {retry} seconds.\n{}",
            stream.name,
            unlisted_note(snap, stream)
        ),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        retry.to_string().parse().expect("digits"),
    );
    resp
}

/// Mounts of the stream that up relays do not list may be hidden ones
/// (`<hidden>1</hidden>`), which polls never see: say so, since "full or
/// down" would mislead whoever debugs it.
fn unlisted_note(snap: &Snapshot, stream: &StreamEntry) -> String {
    let unlisted = (stream.mounts.iter().map(|&m| &snap.mounts[m]))
        .filter(|m| !m.live && snap.servers[m.server].health.is_up())
        .count();
    if unlisted == 0 {
        return String::new();
    }
    format!(
        "{unlisted} of its mounts are not listed by their relays: a source is offline, or the \
         mount is hidden (<hidden>1</hidden>), which the balancer can use only on relays that \
         send it URL-auth callbacks and with the mount's max_listeners configured.\n"
    )
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
    if !crate::domain::secret::same(given, token) {
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
        Err(e) => crate::error::Error::from(e).into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "balancer/index.html")]
struct IndexPage {
    streams: Vec<StreamRow>,
}

async fn index(State(state): State<AppState>) -> impl IntoResponse {
    let snap = state.snapshot();
    IndexPage {
        streams: stream_rows(&state, &snap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_get_of_one_stream_skips_the_router() {
        let get = &Method::GET;
        for (path, name) in [
            ("/icecast_balancer/live", Some("live")),
            ("/icecast_balancer/live/", Some("live")),
            ("/icecast_balancer/live.m3u", Some("live.m3u")),
            // GET of "poll" is a stream named poll, as the router has it.
            ("/icecast_balancer/poll", Some("poll")),
            ("/icecast_balancer/l%69ve", None),
            ("/icecast_balancer/", None),
            ("/icecast_balancer", None),
            ("/icecast_balancer//", None),
            ("/icecast_balancer/a/b", None),
            ("/admin/login", None),
        ] {
            assert_eq!(direct_stream(get, path), name, "{path}");
        }
        assert_eq!(direct_stream(&Method::HEAD, "/icecast_balancer/live"), None);
        assert_eq!(direct_stream(&Method::POST, "/icecast_balancer/poll"), None);
    }
}
