//! Relays that register themselves: `POST /api/v1/relays/announce`.
//!
//! Opt-in per stream: an `announce` token names the streams its relays may
//! carry, and nothing else can be announced with it. A relay posts its
//! name, URLs, limits, location and mounts every minute or so (see
//! `contrib/announce/`); the first announcement creates it (audited as
//! `token:<name>`), later ones change it only when something differs, and
//! each notes when it was last heard. A relay silent for
//! `--announce-drain-after` is drained (disabled: no new listeners, polled
//! on); silent for `--announce-remove-after`, it is removed. Announcing
//! again brings a drained relay back. A server configured by hand is never
//! taken over by an announcement.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiResult, Body, Caller, CanAnnounce, Problem, commit, tagged};
use crate::domain::{FieldErrors, MountInput, MountPath, ServerInput, ServerSpec};
use crate::error::{Error, Result};
use crate::store::announced;
use crate::store::changes::{self, ChangeTx};
use crate::store::versions::{self, Table};
use crate::store::{mounts, servers, streams};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/relays/announce", post(announce))
}

/// What a relay says about itself. Fields as in the config file's
/// `[[servers]]`; `mounts` is its complete set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub name: String,
    /// Where listeners are sent.
    pub url: String,
    #[serde(default)]
    pub https_url: Option<String>,
    /// Where load.xsl is read, when not at `url`.
    #[serde(default)]
    pub poll_url: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub max_listeners: Option<i64>,
    #[serde(default)]
    pub weight: Option<i64>,
    pub mounts: Vec<AnnouncedMount>,
}

/// One stream the relay carries, at which mount.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnouncedMount {
    pub stream: String,
    pub mount: String,
    #[serde(default)]
    pub max_listeners: Option<i64>,
}

/// The answer: the relay as now configured, and when it will be drained
/// if it falls silent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnounceReply {
    pub server: String,
    pub version: i64,
    /// This announcement created the relay.
    pub created: bool,
    /// This announcement changed its configuration.
    pub changed: bool,
    /// Seconds of silence after which it is drained.
    pub drain_after_s: u64,
    /// Seconds of silence after which it is removed.
    pub remove_after_s: u64,
}

impl Announcement {
    fn server_input(&self) -> ServerInput {
        ServerInput {
            name: self.name.clone(),
            url: self.url.clone(),
            https_url: self.https_url.clone(),
            poll_url: self.poll_url.clone(),
            country: self.country.clone(),
            latitude: self.latitude,
            longitude: self.longitude,
            max_listeners: self.max_listeners,
            weight: self.weight,
            enabled: Some(true),
            callback_token: None,
            ..ServerInput::default()
        }
    }
}

/// An announced mount: (stream, path, limit).
type Wanted = Vec<(String, MountPath, Option<u32>)>;

/// The mounts, checked against the token's streams (403 for another
/// stream); field errors go into `e`.
fn parse_mounts(a: &Announcement, caller: &Caller, e: &mut FieldErrors) -> ApiResult<Wanted> {
    let allowed = caller.0.streams();
    let mut out = Vec::new();
    for (i, m) in a.mounts.iter().enumerate() {
        if !allowed.contains(&m.stream) {
            return Err(Error::Forbidden(format!(
                "token {:?} may not announce relays for stream {:?}",
                caller.0.name, m.stream
            ))
            .into());
        }
        let input = MountInput {
            server: a.name.clone(),
            mount: m.mount.clone(),
            max_listeners: m.max_listeners,
        };
        match input.parse() {
            Ok(p) => out.push((m.stream.clone(), p.mount, p.max_listeners)),
            // The server's name is reported once, under `name`.
            Err(fe) => {
                fe.0.iter()
                    .filter(|(f, _)| *f != "server")
                    .for_each(|(f, msg)| e.push("mounts", format!("[{i}] {f}: {msg}")))
            }
        }
    }
    Ok(out)
}

/// Registers or refreshes a relay.
#[utoipa::path(post, operation_id = "announce_relay", path = "/api/v1/relays/announce", tag = "relays", request_body = Announcement,
    responses((status = 200, body = AnnounceReply), (status = 201, body = AnnounceReply),
              (status = 403, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("token" = [])))]
pub async fn announce(
    State(state): State<AppState>,
    CanAnnounce(caller): CanAnnounce,
    Body(a): Body<Announcement>,
) -> ApiResult<Response> {
    let mut e = FieldErrors::default();
    let mounts = parse_mounts(&a, &caller, &mut e)?;
    let spec = match a.server_input().parse() {
        Ok(spec) if e.is_empty() => spec,
        Ok(_) => return Err(e.into()),
        Err(mut more) => {
            more.0.extend(e.0);
            return Err(more.into());
        }
    };
    let mut tx = state.begin(&caller.actor()).await?;
    let (id, created) = upsert_server(&mut tx, &caller, &spec).await?;
    set_mounts(&mut tx, id, &mounts).await?;
    announced::seen(tx.conn(), id, &caller.0.name, state.clock().now_ms()).await?;
    let version = versions::of(tx.conn(), Table::Servers, id)
        .await?
        .unwrap_or_default();
    let changed = commit(&state, tx).await?;
    let s = state.settings();
    let reply = AnnounceReply {
        server: spec.name.to_string(),
        version,
        created,
        changed,
        drain_after_s: s.announce.drain_after.as_secs(),
        remove_after_s: s.announce.remove_after.as_secs(),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(tagged(status, &super::etag(version), &reply))
}

/// Creates the relay, or updates it when it differs; refuses a server
/// configured by hand or announced with another token.
async fn upsert_server(
    tx: &mut ChangeTx,
    caller: &Caller,
    spec: &ServerSpec,
) -> Result<(i64, bool)> {
    let Some(row) = servers::find_by_name(tx.conn(), spec.name.as_str()).await? else {
        return Ok((changes::create_server(tx, spec).await?, true));
    };
    match announced::get(tx.conn(), row.id).await? {
        Some(a) if a.token_name == caller.0.name => {}
        Some(a) => {
            return Err(Error::Refused(format!(
                "server {:?} was announced with token {:?}, not this one",
                row.name, a.token_name
            )));
        }
        None => {
            return Err(Error::Refused(format!(
                "server {:?} is configured by hand; announcements may not change it",
                row.name
            )));
        }
    }
    if row.spec().ok().as_ref() != Some(spec) {
        changes::update_server(tx, row.id, spec).await?;
    }
    Ok((row.id, false))
}

/// Makes the announced mounts the relay's complete set, with their limits.
async fn set_mounts(tx: &mut ChangeTx, server_id: i64, wanted: &Wanted) -> ApiResult<()> {
    let mut stream_ids = Vec::new();
    for (i, (stream, ..)) in wanted.iter().enumerate() {
        match streams::find_by_name(tx.conn(), stream).await? {
            Some(s) => stream_ids.push(s.id),
            None => {
                let mut e = FieldErrors::default();
                e.push(
                    "mounts",
                    format!("[{i}] stream: no stream named {stream:?}"),
                );
                return Err(e.into());
            }
        }
    }
    let have = mounts::for_server(tx.conn(), server_id).await?;
    for m in &have {
        let kept = wanted
            .iter()
            .zip(&stream_ids)
            .any(|((_, path, _), sid)| *sid == m.stream_id && path.as_str() == m.mount);
        if !kept {
            changes::remove_mount(tx, m.id).await?;
        }
    }
    for ((_, path, max), sid) in wanted.iter().zip(&stream_ids) {
        let present = have
            .iter()
            .find(|m| m.stream_id == *sid && m.mount == path.as_str());
        let id = match present {
            Some(m) => m.id,
            None => changes::add_mount(tx, *sid, server_id, path).await?.id,
        };
        changes::set_mount_limit(tx, id, *max).await?;
    }
    Ok(())
}
