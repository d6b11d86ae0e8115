//! `/api/v1/servers`: the relays, in the config file's shape.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    ApiResult, Body, CanRead, CanWrite, IfMatch, Problem, commit, json, not_found, read_conn,
    versioned,
};
use crate::domain::ServerInput;
use crate::store::changes;
use crate::store::servers::{self, ServerRow};
use crate::store::versions::{self, Table};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/servers", get(list).post(create))
        .route(
            "/api/v1/servers/{name}",
            get(read).put(update).delete(remove),
        )
}

/// A server as the config file writes it, with its id and version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerOut {
    pub id: i64,
    /// Changes with every update; the `ETag` is this number in quotes.
    pub version: i64,
    #[serde(flatten)]
    pub server: ServerInput,
}

fn out(row: &ServerRow, version: i64) -> ApiResult<ServerOut> {
    Ok(ServerOut {
        id: row.id,
        version,
        server: ServerInput::from(&row.spec()?),
    })
}

async fn load(conn: &mut sqlx::SqliteConnection, name: &str) -> ApiResult<(ServerRow, i64)> {
    let row = servers::find_by_name(conn, name)
        .await?
        .ok_or_else(|| not_found("server", name))?;
    let version = versions::of(conn, Table::Servers, row.id)
        .await?
        .unwrap_or_default();
    Ok((row, version))
}

fn answer(status: StatusCode, s: ServerOut) -> Response {
    let location = format!("/api/v1/servers/{}", s.server.name);
    versioned(status, s.version, &location, &s)
}

/// Every server, by name.
#[utoipa::path(get, operation_id = "list_servers", path = "/api/v1/servers", tag = "servers",
    responses((status = 200, body = Vec<ServerOut>), (status = 401, body = Problem)),
    security(("token" = [])))]
pub async fn list(State(state): State<AppState>, _: CanRead) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let v = versions::all(&mut conn, Table::Servers).await?;
    let rows = servers::list(&mut conn).await?;
    let list = rows
        .iter()
        .map(|r| out(r, v.get(&r.id).copied().unwrap_or_default()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(json(&list))
}

/// One server; its `ETag` is its version.
#[utoipa::path(get, operation_id = "get_server", path = "/api/v1/servers/{name}", tag = "servers",
    params(("name" = String, Path, description = "the server's name")),
    responses((status = 200, body = ServerOut), (status = 404, body = Problem)),
    security(("token" = [])))]
pub async fn read(
    State(state): State<AppState>,
    _: CanRead,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let (row, version) = load(&mut conn, &name).await?;
    Ok(answer(StatusCode::OK, out(&row, version)?))
}

/// Adds a server.
#[utoipa::path(post, operation_id = "create_server", path = "/api/v1/servers", tag = "servers", request_body = ServerInput,
    responses((status = 201, body = ServerOut), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Body(input): Body<ServerInput>,
) -> ApiResult<Response> {
    let spec = input.parse()?;
    let mut tx = state.begin(&caller.actor()).await?;
    changes::create_server(&mut tx, &spec).await?;
    let (row, version) = load(tx.conn(), spec.name.as_str()).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::CREATED, out(&row, version)?))
}

/// Replaces a server's settings (an omitted optional field returns to its
/// default, as in the config file); may rename it.
#[utoipa::path(put, operation_id = "update_server", path = "/api/v1/servers/{name}", tag = "servers", request_body = ServerInput,
    params(("name" = String, Path, description = "the server's name"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 200, body = ServerOut), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 412, body = Problem),
              (status = 422, body = Problem), (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(name): Path<String>,
    if_match: IfMatch,
    Body(input): Body<ServerInput>,
) -> ApiResult<Response> {
    let spec = input.parse()?;
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (row, version) = load(tx.conn(), &name).await?;
    if_match.check_version(version)?;
    changes::update_server(&mut tx, row.id, &spec).await?;
    let (row, version) = load(tx.conn(), spec.name.as_str()).await?;
    commit(&state, tx).await?;
    Ok(answer(StatusCode::OK, out(&row, version)?))
}

/// Removes a server with its mounts.
#[utoipa::path(delete, operation_id = "delete_server", path = "/api/v1/servers/{name}", tag = "servers",
    params(("name" = String, Path, description = "the server's name"),
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
    changes::delete_server(&mut tx, row.id).await?;
    commit(&state, tx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
