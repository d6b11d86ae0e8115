//! First contact and errors: `GET /` goes to the public stream list, the
//! FastAPI predecessor's `GET /<mount>` is sent to the stream that carries
//! that mount, any other unknown address gets a page that says where to
//! go, and errors read by a browser are pages in the site's layout.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Redirect::to("/icecast_balancer/") }))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    /// Under /admin/: a way back to the dashboard.
    admin: bool,
}

/// Error bodies longer than this are passed through as they are.
const MAX_ERROR_BODY: usize = 16 * 1024;

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn is_plain(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"))
}

/// The error as a page in the site's layout, the text escaped.
fn page(status: StatusCode, message: &str, admin: bool) -> Response {
    let html = ErrorPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message: message.trim(),
        admin,
    }
    .render()
    .unwrap_or_else(|_| message.to_string());
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A browser's request (it accepts HTML) that ends in a plain-text error
/// gets the same text as a page; scripts and players keep the text.
pub async fn error_pages(req: Request, next: Next) -> Response {
    let html = wants_html(req.headers());
    let admin = req.uri().path().starts_with("/admin");
    let resp = next.run(req).await;
    let status = resp.status();
    if !html || !(status.is_client_error() || status.is_server_error()) || !is_plain(&resp) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return (parts, Body::empty()).into_response();
    };
    let mut styled = page(status, &String::from_utf8_lossy(&bytes), admin);
    // Keep what the handler said beyond the body (Retry-After, cookies).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            styled.headers_mut().append(name, value.clone());
        }
    }
    styled
}

/// What an unknown address gets. The FastAPI balancer answered
/// `GET /<path>` with a redirect to `<relay>/<path>`, its listeners' URLs
/// being `/<mount>`: such a request goes to the one stream with that mount
/// (or that name). Nothing of the request is echoed back.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    let html = wants_html(req.headers());
    let admin = req.uri().path().starts_with("/admin");
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && let Some(stream) = old_shape(&state, req.uri().path())
    {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Redirect::temporary(&format!("/icecast_balancer/{stream}/{query}")).into_response();
    }
    let text = if admin {
        "There is no admin page at this address."
    } else {
        "There is nothing at this address. Streams are listed at /icecast_balancer/; \
         a stream is played from /icecast_balancer/NAME/."
    };
    if html {
        page(StatusCode::NOT_FOUND, text, admin)
    } else {
        (StatusCode::NOT_FOUND, format!("{text}\n")).into_response()
    }
}

/// The stream a one-segment path names: a stream of that name, or the
/// only stream with a mount of that path.
fn old_shape(state: &AppState, path: &str) -> Option<String> {
    let segment = path.strip_prefix('/')?;
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    let snap = state.snapshot();
    if let Some(st) = snap.streams.iter().find(|st| st.name == segment) {
        return Some(st.name.clone());
    }
    let mut streams: Vec<&str> = snap
        .mounts
        .iter()
        .filter(|m| m.path == path)
        .map(|m| snap.streams[m.stream].name.as_str())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    match streams.as_slice() {
        [one] => Some((*one).to_string()),
        _ => None,
    }
}
