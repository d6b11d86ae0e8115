//! `/api/v1/mounts`: one stream on one server, by id. A mount's stream,
//! server and path are what it is; only its limit changes in place (to
//! move a mount, delete it and add it again).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use utoipa::ToSchema;

use super::{
    ApiError, ApiResult, Body, CanRead, CanWrite, IfMatch, Problem, commit, json, read_conn,
    versioned,
};
use crate::domain::{FieldErrors, MountInput, MountSpec};
use crate::store::changes;
use crate::store::mounts::{self, MountRow};
use crate::store::versions::{self, Table};
use crate::store::{servers, streams};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/mounts", get(list).post(create))
        .route("/api/v1/mounts/{id}", get(read).put(update).delete(remove))
}

/// A mount: the stream it carries, the server and path it is at, and its
/// own listener limit (absent: the relay's).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountBody {
    pub stream: String,
    pub server: String,
    pub mount: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<i64>,
}

/// A mount with its id and version.
#[derive(Debug, Serialize, ToSchema)]
pub struct MountOut {
    pub id: i64,
    pub version: i64,
    #[serde(flatten)]
    pub mount: MountBody,
}

impl MountBody {
    /// Field errors as the mount form reports them (`server`, `mount`,
    /// `max_listeners`), plus `stream`.
    fn parse(&self) -> Result<MountSpec, FieldErrors> {
        let input = MountInput {
            server: self.server.clone(),
            mount: self.mount.clone(),
            max_listeners: self.max_listeners,
        };
        let mut e = FieldErrors::default();
        if self.stream.trim().is_empty() {
            e.push("stream", "required");
        }
        match input.parse() {
            Ok(spec) if e.is_empty() => Ok(spec),
            Ok(_) => Err(e),
            Err(more) => {
                e.0.extend(more.0);
                Err(e)
            }
        }
    }
}

fn out(row: MountRow, version: i64) -> MountOut {
    MountOut {
        id: row.id,
        version,
        mount: MountBody {
            stream: row.stream_name,
            server: row.server_name,
            mount: row.mount,
            max_listeners: row.max_listeners,
        },
    }
}

async fn load(conn: &mut SqliteConnection, id: i64) -> ApiResult<(MountRow, i64)> {
    let row = mounts::get(conn, id).await?;
    let version = versions::of(conn, Table::Mounts, id)
        .await?
        .unwrap_or_default();
    Ok((row, version))
}

fn answer(status: StatusCode, m: MountOut) -> Response {
    versioned(status, m.version, &format!("/api/v1/mounts/{}", m.id), &m)
}

fn field(name: &'static str, message: String) -> ApiError {
    let mut e = FieldErrors::default();
    e.push(name, message);
    e.into()
}

/// Every mount, by stream, server and path.
#[utoipa::path(get, operation_id = "list_mounts", path = "/api/v1/mounts", tag = "mounts",
    responses((status = 200, body = Vec<MountOut>), (status = 401, body = Problem)),
    security(("token" = [])))]
pub async fn list(State(state): State<AppState>, _: CanRead) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let v = versions::all(&mut conn, Table::Mounts).await?;
    let list: Vec<MountOut> = mounts::list(&mut conn)
        .await?
        .into_iter()
        .map(|m| {
            let version = v.get(&m.id).copied().unwrap_or_default();
            out(m, version)
        })
        .collect();
    Ok(json(&list))
}

/// One mount.
#[utoipa::path(get, operation_id = "get_mount", path = "/api/v1/mounts/{id}", tag = "mounts",
    params(("id" = i64, Path, description = "the mount's id")),
    responses((status = 200, body = MountOut), (status = 404, body = Problem)),
    security(("token" = [])))]
pub async fn read(
    State(state): State<AppState>,
    _: CanRead,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let (row, version) = load(&mut conn, id).await?;
    Ok(answer(StatusCode::OK, out(row, version)))
}

/// Adds a mount: a stream on a server at a path.
#[utoipa::path(post, operation_id = "create_mount", path = "/api/v1/mounts", tag = "mounts", request_body = MountBody,
    responses((status = 201, body = MountOut), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Body(body): Body<MountBody>,
) -> ApiResult<Response> {
    let spec = body.parse()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let Some(stream) = streams::find_by_name(tx.conn(), body.stream.trim()).await? else {
        return Err(field(
            "stream",
            format!("no stream named {:?}", body.stream),
        ));
    };
    let Some(server) = servers::find_by_name(tx.conn(), spec.server.as_str()).await? else {
        return Err(field(
            "server",
            format!("no server named {:?}", body.server),
        ));
    };
    let row = changes::add_mount(&mut tx, stream.id, server.id, &spec.mount).await?;
    changes::set_mount_limit(&mut tx, row.id, spec.max_listeners).await?;
    let (row, version) = load(tx.conn(), row.id).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::CREATED, out(row, version)))
}

/// Sets a mount's limit. `stream`, `server` and `mount` must be as they
/// are (422 otherwise).
#[utoipa::path(put, operation_id = "update_mount", path = "/api/v1/mounts/{id}", tag = "mounts", request_body = MountBody,
    params(("id" = i64, Path, description = "the mount's id"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 200, body = MountOut), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem),
              (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(id): Path<i64>,
    if_match: IfMatch,
    Body(body): Body<MountBody>,
) -> ApiResult<Response> {
    let spec = body.parse()?;
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (row, version) = load(tx.conn(), id).await?;
    if_match.check_version(version)?;
    let fixed = "cannot change in place; delete the mount and add it again";
    for (name, given, have) in [
        ("stream", body.stream.trim(), row.stream_name.as_str()),
        ("server", spec.server.as_str(), row.server_name.as_str()),
        ("mount", spec.mount.as_str(), row.mount.as_str()),
    ] {
        if given != have {
            return Err(field(name, format!("{fixed} (it is {have:?})")));
        }
    }
    changes::set_mount_limit(&mut tx, id, spec.max_listeners).await?;
    let (row, version) = load(tx.conn(), id).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::OK, out(row, version)))
}

/// Removes a mount.
#[utoipa::path(delete, operation_id = "delete_mount", path = "/api/v1/mounts/{id}", tag = "mounts",
    params(("id" = i64, Path, description = "the mount's id"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem),
              (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(id): Path<i64>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (_, version) = load(tx.conn(), id).await?;
    if_match.check_version(version)?;
    changes::remove_mount(&mut tx, id).await?;
    commit(&state, tx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
