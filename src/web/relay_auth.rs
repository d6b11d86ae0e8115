//! `POST /icecast_balancer/relays/{server}/auth`: Icecast's URL-auth
//! callbacks, as Icecast 2.4.x, Icecast-KH and Icecast 2.5 send them.
//!
//! The relay asks before it admits each listener (`listener_add`) and
//! says when one leaves (`listener_remove`), so its counts are exact (see
//! `routing::callbacks`). The balancer is no gatekeeper: every listener
//! is admitted; the answer only has to be fast, because the relay holds
//! its listener until it comes. It is answered on the connection's worker
//! from the in-memory snapshot, like a redirect.
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

use crate::routing::Snapshot;
use crate::routing::callbacks::MountRef;
use crate::routing::snapshot::ServerEntry;
use crate::routing::tokens;
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
    let relay = &snap.servers[si];
    if !authenticated(relay, &headers) {
        return refused(&metrics.refused);
    }
    let cb = parse(&body);
    let now_ms = state.clock().now_ms();
    match (cb.action.as_str(), cb.client) {
        ("listener_add", Some(client)) => listener_add(&state, &snap, si, client, &cb, now_ms),
        ("listener_remove", Some(client)) => {
            relay
                .counters
                .book
                .remove(&relay.counters.callbacks, client, now_ms);
            metrics.removed.fetch_add(1, Ordering::Relaxed);
        }
        // Other actions (mount_add, stream_auth…) need no answer but yes.
        (a, _) if !a.starts_with("listener_") => {}
        _ => {
            metrics.malformed.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, "action and client are required\n").into_response();
        }
    }
    admitted()
}

/// Counts the listener on its mount; a valid token in its URI confirms
/// the redirect that sent it (the reservation becomes this listener).
fn listener_add(
    state: &AppState,
    snap: &Snapshot,
    si: usize,
    client: u64,
    cb: &Callback,
    now_ms: i64,
) {
    let metrics = &state.metrics().callbacks;
    if is_relay(&cb.agent) {
        metrics.relay_pulls.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let relay = &snap.servers[si];
    let path = cb
        .mount
        .split_once('?')
        .map_or(cb.mount.as_str(), |(p, _)| p);
    // Icecast 2.4 with `<mount type="default">` asks about every request,
    // its status pages included: only mounts of a stream are counted (the
    // poll accounts for the relay's other mounts).
    let Some(m) = snap.mount_at(si, path) else {
        metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mref = MountRef {
        id: snap.mounts[m].id,
        counters: &snap.mounts[m].counters,
    };
    relay
        .counters
        .book
        .add(&relay.counters.callbacks, client, mref, now_ms);
    let confirmed = confirm(state, snap, m, &cb.mount);
    let counter = if confirmed {
        &metrics.confirmed
    } else {
        &metrics.direct
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Ends the reservation the token in `uri` names, if the token is valid,
/// unused and for mount `m`.
fn confirm(state: &AppState, snap: &Snapshot, m: usize, uri: &str) -> bool {
    let Some(token) = tokens::from_uri(uri) else {
        return false;
    };
    let now_s = state.clock().now_s();
    let ttl = state.settings().reservation_ttl_s();
    let signer = state.signer();
    let Some(claim) = signer.verify(token, now_s, ttl) else {
        return false;
    };
    let mount = &snap.mounts[m];
    if claim.mount != mount.id || !signer.redeem(claim, now_s, ttl) {
        return false;
    }
    mount.counters.ledger.remove(claim.issued_s);
    snap.servers[mount.server]
        .counters
        .ledger
        .remove(claim.issued_s);
    true
}

/// Icecast relaying a stream from another identifies itself by its own
/// User-Agent ("Icecast 2.4.4", "icecast-kh 2.4.0-kh22").
fn is_relay(agent: &str) -> bool {
    let a = agent.trim_start().as_bytes();
    a.len() >= 7 && a[..7].eq_ignore_ascii_case(b"icecast")
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

    #[test]
    fn relays_are_told_by_their_user_agent() {
        assert!(is_relay("Icecast 2.4.4"));
        assert!(is_relay("icecast-kh 2.4.0-kh22"));
        assert!(!is_relay("VLC/3.0.18 LibVLC/3.0.18"));
        assert!(!is_relay(""));
    }
}
