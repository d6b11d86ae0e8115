//! `POST /icecast_balancer/relays/{server}/auth`: Icecast's URL-auth
//! callbacks, as Icecast 2.4.x, Icecast-KH and Icecast 2.5 send them.
//!
//! The relay asks before it admits each listener (`listener_add`) and
//! says when one leaves (`listener_remove`), so its counts are exact (see
//! `routing::callbacks`). The balancer is no gatekeeper: every listener
//! is admitted; the answer only has to be fast, because the relay holds
//! its listener until it comes. It is answered on the connection's worker
//! from the in-memory snapshot, like a redirect; what a callback means for
//! the counts is `routing::capacity`'s to decide.
//!
//! Authenticated by HTTP basic auth: user = the server's name, password =
//! its callback token. Anything else is a 401 and changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::engine::Reason;
use crate::routing::capacity::{self, Arrival};
use crate::routing::snapshot::ServerEntry;
use crate::web::AppState;

/// A callback is a few hundred bytes; Icecast-KH may add client headers.
const MAX_BODY: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/icecast_balancer/relays/{server}/auth",
        post(auth).layer(DefaultBodyLimit::max(MAX_BODY)),
    )
}

/// The fields the balancer reads; Icecast sends more (server, port, user,
/// pass, ip, duration, KH's listeners and sent, 2.5's server-instance).
#[derive(Debug, Default, PartialEq)]
struct Callback {
    action: String,
    client: Option<u64>,
    /// The listener's request URI, query included (`listener_add`).
    mount: String,
    agent: String,
}

fn parse(body: &[u8]) -> Callback {
    let mut c = Callback::default();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "action" => c.action = v.into_owned(),
            "client" => c.client = v.trim().parse().ok(),
            "mount" => c.mount = v.into_owned(),
            "agent" => c.agent = v.into_owned(),
            _ => {}
        }
    }
    c
}

async fn auth(
    State(state): State<AppState>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let metrics = &state.metrics().callbacks;
    let snap = state.snapshot();
    let Some(si) = snap.server_index(&server) else {
        return refused(&metrics.refused);
    };
    if !authenticated(&snap.servers[si], &headers) {
        return refused(&metrics.refused);
    }
    let cb = parse(&body);
    let now_ms = state.clock().now_ms();
    let mut revealed = false;
    match (cb.action.as_str(), cb.client) {
        ("listener_add", Some(client)) => {
            let caller = capacity::Caller {
                client,
                uri: &cb.mount,
                agent: &cb.agent,
            };
            let ttl_s = state.settings().reservation_ttl_s();
            let outcome = capacity::listener_add(&snap, state.signer(), si, &caller, now_ms, ttl_s);
            revealed = outcome.revealed;
            let counter = match outcome.arrival {
                Arrival::Confirmed => &metrics.confirmed,
                Arrival::Direct => &metrics.direct,
                Arrival::RelayPull => &metrics.relay_pulls,
                Arrival::Unrouted => &metrics.unrouted,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        ("listener_remove", Some(client)) => {
            capacity::listener_remove(&snap, si, client, now_ms);
            metrics.removed.fetch_add(1, Ordering::Relaxed);
        }
        ("mount_add", _) => revealed = capacity::announce(&snap, si, &cb.mount, true),
        ("mount_remove", _) => revealed = capacity::announce(&snap, si, &cb.mount, false),
        // Other actions (stream_auth…) need no answer but yes.
        (a, _) if !a.starts_with("listener_") => {}
        _ => {
            metrics.malformed.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, "action and client are required\n").into_response();
        }
    }
    if revealed {
        // Not awaited: the refresher builds once for a burst.
        drop(state.routing_state().rebuild(Reason::HiddenMount));
    }
    admitted()
}

/// HTTP basic auth `{server}:{callback_token}`, compared in constant time.
fn authenticated(relay: &ServerEntry, headers: &HeaderMap) -> bool {
    let Some(token) = &relay.callback_token else {
        return false;
    };
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some((user, pass)) = decoded.split_at_checked(relay.name.len()) else {
        return false;
    };
    let Some(pass) = pass.strip_prefix(b":") else {
        return false;
    };
    let user_ok = user.ct_eq(relay.name.as_bytes());
    let pass_ok = pass.ct_eq(token.expose().as_bytes());
    bool::from(user_ok & pass_ok)
}

fn refused(counter: &AtomicU64) -> Response {
    counter.fetch_add(1, Ordering::Relaxed);
    let mut resp = (StatusCode::UNAUTHORIZED, "callback credentials required\n").into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"icecast-balancer relay callbacks\""),
    );
    resp
}

/// Icecast 2.4 and KH admit on `icecast-auth-user: 1`, 2.5 on
/// `x-icecast-auth-result: ok`.
fn admitted() -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert("icecast-auth-user", HeaderValue::from_static("1"));
    h.insert("x-icecast-auth-result", HeaderValue::from_static("ok"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_icecast_sends() {
        let c = parse(
            b"action=listener_add&server=r1&port=8000&client=17&mount=%2Flive.mp3%3Fa%3D1%26ibt%3DXY\
              &user=&pass=&ip=127.0.0.1&agent=mpg123%2F1.31&listeners=3",
        );
        assert_eq!(c.action, "listener_add");
        assert_eq!(c.client, Some(17));
        assert_eq!(c.mount, "/live.mp3?a=1&ibt=XY");
        assert_eq!(c.agent, "mpg123/1.31");
        assert_eq!(parse(b"action=listener_remove&client=x").client, None);
    }
}
