//! `/api/v1/streams`: streams with their mounts, in the config file's shape.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sqlx::SqliteConnection;
use utoipa::ToSchema;

use super::{
    ApiResult, Body, CanRead, CanWrite, IfMatch, Problem, commit, json, not_found, read_conn,
    versioned,
};
use crate::domain::{FieldErrors, MountInput, StreamInput};
use crate::store::changes::{self, ChangeTx, MountSet};
use crate::store::streams::{self, StreamRow};
use crate::store::versions::{self, Table};
use crate::store::{mounts, servers};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams", get(list).post(create))
        .route(
            "/api/v1/streams/{name}",
            get(read).put(update).delete(remove),
        )
}

/// A stream as the config file writes it (mounts included), with its id
/// and version. The version is the stream's own: its mounts have theirs.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamOut {
    pub id: i64,
    pub version: i64,
    #[serde(flatten)]
    pub stream: StreamInput,
}

async fn out(conn: &mut SqliteConnection, row: &StreamRow, version: i64) -> ApiResult<StreamOut> {
    let spec = row.spec()?;
    let list = mounts::for_stream(conn, row.id)
        .await?
        .into_iter()
        .map(|m| MountInput {
            server: m.server_name,
            mount: m.mount,
            max_listeners: m.max_listeners,
        })
        .collect();
    Ok(StreamOut {
        id: row.id,
        version,
        stream: StreamInput {
            mounts: Some(list),
            ..StreamInput::from(&spec)
        },
    })
}

async fn load(conn: &mut SqliteConnection, name: &str) -> ApiResult<(StreamRow, i64)> {
    let row = streams::find_by_name(conn, name)
        .await?
        .ok_or_else(|| not_found("stream", name))?;
    let version = versions::of(conn, Table::Streams, row.id)
        .await?
        .unwrap_or_default();
    Ok((row, version))
}

async fn load_out(conn: &mut SqliteConnection, name: &str) -> ApiResult<StreamOut> {
    let (row, version) = load(conn, name).await?;
    out(conn, &row, version).await
}

fn answer(status: StatusCode, s: StreamOut) -> Response {
    let location = format!("/api/v1/streams/{}", s.stream.name);
    versioned(status, s.version, &location, &s)
}

/// Makes `list` the stream's complete set of mounts, with their limits.
/// Errors name the field `mounts` and the entry.
async fn set_mounts(tx: &mut ChangeTx, stream_id: i64, list: &[MountInput]) -> ApiResult<()> {
    let mut e = FieldErrors::default();
    let mut parsed = Vec::new();
    for (i, m) in list.iter().enumerate() {
        match m.parse() {
            Ok(p) => parsed.push(p),
            Err(fe) => {
                fe.0.iter()
                    .for_each(|(f, msg)| e.push("mounts", format!("[{i}] {f}: {msg}")))
            }
        }
    }
    let mut wanted = MountSet::new();
    for (i, p) in parsed.iter().enumerate() {
        match servers::find_by_name(tx.conn(), p.server.as_str()).await? {
            Some(s) => {
                wanted.insert((s.id, p.mount.clone()));
            }
            None => e.push(
                "mounts",
                format!("[{i}] server: no server named {:?}", p.server.as_str()),
            ),
        }
    }
    if !e.is_empty() {
        return Err(e.into());
    }
    changes::replace_mounts(tx, stream_id, &wanted).await?;
    for row in mounts::for_stream(tx.conn(), stream_id).await? {
        let max = parsed
            .iter()
            .find(|p| p.server.as_str() == row.server_name && p.mount.as_str() == row.mount)
            .and_then(|p| p.max_listeners);
        changes::set_mount_limit(tx, row.id, max).await?;
    }
    Ok(())
}

/// Every stream with its mounts, by name.
#[utoipa::path(get, operation_id = "list_streams", path = "/api/v1/streams", tag = "streams",
    responses((status = 200, body = Vec<StreamOut>), (status = 401, body = Problem)),
    security(("token" = [])))]
pub async fn list(State(state): State<AppState>, _: CanRead) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let v = versions::all(&mut conn, Table::Streams).await?;
    let mut list = Vec::new();
    for row in streams::list(&mut conn).await? {
        let version = v.get(&row.id).copied().unwrap_or_default();
        list.push(out(&mut conn, &row, version).await?);
    }
    Ok(json(&list))
}

/// One stream with its mounts.
#[utoipa::path(get, operation_id = "get_stream", path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "the stream's name")),
    responses((status = 200, body = StreamOut), (status = 404, body = Problem)),
    security(("token" = [])))]
pub async fn read(
    State(state): State<AppState>,
    _: CanRead,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    Ok(answer(StatusCode::OK, load_out(&mut conn, &name).await?))
}

/// Adds a stream; `mounts`, when given, are its mounts.
#[utoipa::path(post, operation_id = "create_stream", path = "/api/v1/streams", tag = "streams", request_body = StreamInput,
    responses((status = 201, body = StreamOut), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Body(input): Body<StreamInput>,
) -> ApiResult<Response> {
    let spec = input.parse()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let id = changes::create_stream(&mut tx, &spec).await?;
    if let Some(list) = &input.mounts {
        set_mounts(&mut tx, id, list).await?;
    }
    let s = load_out(tx.conn(), spec.name.as_str()).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::CREATED, s))
}

/// Replaces a stream's settings; `mounts`, when given, become its complete
/// set (absent: its mounts stay as they are). May rename it.
#[utoipa::path(put, operation_id = "update_stream", path = "/api/v1/streams/{name}", tag = "streams", request_body = StreamInput,
    params(("name" = String, Path, description = "the stream's name"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 200, body = StreamOut), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 412, body = Problem),
              (status = 422, body = Problem), (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(name): Path<String>,
    if_match: IfMatch,
    Body(input): Body<StreamInput>,
) -> ApiResult<Response> {
    let spec = input.parse()?;
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (row, version) = load(tx.conn(), &name).await?;
    if_match.check_version(version)?;
    changes::update_stream(&mut tx, row.id, &spec).await?;
    if let Some(list) = &input.mounts {
        set_mounts(&mut tx, row.id, list).await?;
    }
    let s = load_out(tx.conn(), spec.name.as_str()).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::OK, s))
}

/// Removes a stream with its mounts.
#[utoipa::path(delete, operation_id = "delete_stream", path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "the stream's name"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem),
              (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(name): Path<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (row, version) = load(tx.conn(), &name).await?;
    if_match.check_version(version)?;
    changes::delete_stream(&mut tx, row.id).await?;
    commit(&state, tx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
