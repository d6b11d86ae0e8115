//! The web admin. Every page needs a login; every state change is a POST
//! that must come from our own origin and carry the session's CSRF token.
//!
//! One middleware guards the whole `/admin` tree: it refuses cross-site
//! writes, resolves the session cookie into an [`AdminUser`] (or redirects
//! to the login page and back), and carries one-shot flash messages.

pub(crate) mod audit;
pub mod auth;
pub(crate) mod chart;
pub(crate) mod countries;
pub(crate) mod dashboard;
pub(crate) mod explain;
pub(crate) mod live;
pub(crate) mod servers;
pub(crate) mod streams;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod widgets;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, SameSite};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use tower_http::set_header::SetResponseHeaderLayer;

use super::client_ip::{ClientInfo, client_info};
use super::csrf;
pub(crate) use super::session::{AdminUser, SESSION_COOKIE, session_user};
pub use super::session::{IDLE_TIMEOUT_MS, cookie};
use crate::error::{Error, Result};
use crate::store;
use crate::users::hex;
use crate::web::AppState;

const FLASH_COOKIE: &str = "icb_flash";

/// What every admin page shows around its content.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub user: String,
    pub csrf: String,
    pub flash: Option<String>,
    pub flash_error: bool,
    /// The request's path, so the menu can mark the current page.
    pub path: String,
}

impl Ctx {
    /// Whether the menu entry `href` is the page shown (or a page under
    /// it: a server's page is under Servers).
    pub(crate) fn is_current(&self, href: &str) -> bool {
        match href {
            "/admin/" => self.path == "/admin/",
            _ => {
                self.path == href
                    || self
                        .path
                        .strip_prefix(href)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// A one-shot message carried to the next page in a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Something was done as asked.
    Done(String),
    /// Something was refused or failed; shown as an error.
    Problem(String),
}

impl Notice {
    /// The cookie form: a kind letter, then the text.
    fn encode(&self) -> String {
        match self {
            Notice::Done(t) => format!("d{t}"),
            Notice::Problem(t) => format!("p{t}"),
        }
    }

    fn decode(s: &str) -> Option<Notice> {
        match s.split_at_checked(1)? {
            ("d", t) => Some(Notice::Done(t.to_string())),
            ("p", t) => Some(Notice::Problem(t.to_string())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Flash(pub Option<Notice>);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let user = AdminUser::from_request_parts(parts, state).await?;
        let flash = parts
            .extensions
            .get::<Flash>()
            .cloned()
            .unwrap_or_default()
            .0;
        let flash_error = matches!(flash, Some(Notice::Problem(_)));
        Ok(Ctx {
            user: user.name,
            csrf: user.csrf_token,
            flash: flash.map(|(Notice::Done(t) | Notice::Problem(t))| t),
            flash_error,
            path: parts.uri.path().to_string(),
        })
    }
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || s.len() > 2000 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The key flash cookies are signed with, drawn once per process: a notice
/// is shown only if this process wrote it, so a cookie planted by someone
/// else (a sibling subdomain, a script) shows nothing.
fn flash_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// HMAC-SHA-256 of `msg` under the flash key.
fn flash_tag(msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let (mut inner, mut outer) = ([0x36u8; 64], [0x5cu8; 64]);
    for (i, k) in flash_key().iter().enumerate() {
        inner[i] ^= k;
        outer[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(inner)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(outer)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A flash cookie's value: the text in hex, a dot, its tag in hex.
fn sealed(text: &str) -> String {
    format!(
        "{}.{}",
        hex(text.as_bytes()),
        hex(&flash_tag(text.as_bytes()))
    )
}

/// The text of a flash cookie this process wrote; `None` for anything else.
fn unsealed(value: &str) -> Option<String> {
    use subtle::ConstantTimeEq;
    let (text, tag) = value.split_once('.')?;
    let text = unhex(text)?;
    let expected = hex(&flash_tag(text.as_bytes()));
    bool::from(tag.as_bytes().ct_eq(expected.as_bytes())).then_some(text)
}

/// `Set-Cookie` for an admin cookie: HttpOnly, SameSite=Strict, Path=/,
/// Secure when the request came over HTTPS. `None` deletes it.
pub(crate) fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((name, value.unwrap_or_default()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    if value.is_none() {
        c = c.max_age(time::Duration::ZERO);
    }
    HeaderValue::from_str(&c.build().to_string()).expect("cookie values are hex")
}

/// Redirects with a message for the next page.
pub(crate) fn redirect_with_flash(to: &str, message: &str) -> Response {
    redirect_with(to, Notice::Done(message.to_string()))
}

/// Redirects with an error message for the next page.
pub(crate) fn redirect_with_problem(to: &str, message: &str) -> Response {
    redirect_with(to, Notice::Problem(message.to_string()))
}

fn redirect_with(to: &str, notice: Notice) -> Response {
    let value = sealed(&notice.encode());
    let mut r = Redirect::to(to).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(FLASH_COOKIE, Some(&value), false),
    );
    r
}

/// Who sent the request (through trusted proxies) and whether over HTTPS.
pub fn client(state: &AppState, req: &Request) -> Option<ClientInfo> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| {
            client_info(
                peer.ip(),
                req.headers(),
                &state.settings().trusted_proxies,
                state.settings().forwarded_header,
            )
        })
}

pub(crate) fn is_https(state: &AppState, req: &Request) -> bool {
    client(state, req).is_some_and(|c| c.https)
}

/// What stays as it is in the `next` parameter: an unreserved path.
const NEXT_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Only local absolute paths, so `next` cannot send anyone off-site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        // Visible ASCII only: a CR or LF would make the Location header
        // invalid after the login already succeeded.
        Some(n)
            if n.starts_with("/admin")
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/admin/".to_string(),
    }
}

async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let https = is_https(&state, &req);
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        && let Err(why) = csrf::same_origin(req.headers(), https)
    {
        return (StatusCode::FORBIDDEN, format!("Refused: {why}.\n")).into_response();
    }
    let path = req.uri().path().to_string();
    let public = path == "/admin/login";
    let user = match session_user(&state, req.headers()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match user {
        Some(u) => {
            req.extensions_mut().insert(u);
        }
        None if public => {}
        None if matches!(*req.method(), Method::GET | Method::HEAD) => {
            let target = match req.uri().path_and_query() {
                Some(pq) => pq.as_str().to_string(),
                None => path.clone(),
            };
            let next = percent_encode(target.as_bytes(), NEXT_KEEPS);
            return Redirect::to(&format!("/admin/login?next={next}")).into_response();
        }
        None => {
            return (
                StatusCode::UNAUTHORIZED,
                "Your session has ended; log in again.\n",
            )
                .into_response();
        }
    }
    let flash = cookie(req.headers(), FLASH_COOKIE)
        .and_then(|v| unsealed(&v))
        .and_then(|v| Notice::decode(&v));
    let had_flash = flash.is_some();
    req.extensions_mut().insert(Flash(flash));
    let mut resp = next.run(req).await;
    // Admin pages are per-user: never cache them anywhere.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if had_flash && !resp.headers().contains_key(header::SET_COOKIE) {
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, None, https));
    }
    resp
}

/// The admin routes; `extra` are further pages (e.g. explain) that get the
/// same login and CSRF protection.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .merge(auth::router())
        .merge(dashboard::router())
        .merge(live::router())
        .merge(countries::router())
        .merge(servers::router())
        .merge(streams::router())
        .merge(audit::router())
        .merge(explain::router())
        .merge(users::router())
        .merge(tokens::router())
        .layer(middleware::from_fn_with_state(state, guard))
        // No admin page may be framed by another site (clickjacking).
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
}

/// A UNIQUE violation becomes a message on its form field; anything else
/// stays an error.
pub(crate) fn conflict_to_field(
    e: crate::store::Error,
) -> std::result::Result<crate::domain::FieldErrors, Error> {
    match e {
        crate::store::Error::Conflict { field, value } => {
            let mut f = crate::domain::FieldErrors::default();
            f.push(field, format!("{value:?} is already taken"));
            Ok(f)
        }
        other => Err(other.into()),
    }
}

/// "1 mount", "3 mounts": flash messages read as sentences.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Formats unix milliseconds as UTC for the admin.
pub fn when(ms: i64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "-".into())
}

/// "12 s ago", for health tables.
pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "never".into() };
    let s = (store::now_ms() - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_round_trip() {
        assert_eq!(
            unhex(&hex("Server “fra-1” saved".as_bytes())).unwrap(),
            "Server “fra-1” saved"
        );
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/admin/servers")), "/admin/servers");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "/elsewhere",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin/");
        }
    }
}
