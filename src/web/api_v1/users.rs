//! `/api/v1/users`: admin users. Passwords go in, never out; a password
//! change ends the user's sessions; the last user cannot be removed.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use utoipa::ToSchema;

use super::{
    ApiResult, Body, CanRead, CanWrite, IfMatch, Problem, commit, etag, json, not_found, read_conn,
    tagged, versioned,
};
use crate::domain::{FieldErrors, Slug};
use crate::engine::blocking;
use crate::error::Error;
use crate::store::changes;
use crate::store::users::{self, UserRow};
use crate::store::versions::{self, Table};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{name}", get(read).put(update).delete(remove))
}

/// A user as the API shows it (no password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub name: String,
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
}

/// A new password; the user's sessions end.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

fn out(row: &UserRow, version: i64) -> UserOut {
    UserOut {
        name: row.name.clone(),
        version,
        created_at: row.created_at,
    }
}

async fn load(conn: &mut SqliteConnection, name: &str) -> ApiResult<(UserRow, i64)> {
    let row = users::find(conn, name)
        .await?
        .ok_or_else(|| not_found("user", name))?;
    let version = versions::of(conn, Table::Users, row.id)
        .await?
        .unwrap_or_default();
    Ok((row, version))
}

/// The argon2 hash of an acceptable password (off the async workers).
async fn hashed(e: &mut FieldErrors, password: String) -> ApiResult<Option<String>> {
    if let Err(m) = crate::users::check_password(&password) {
        e.push("password", m.to_string());
        return Ok(None);
    }
    let hash = blocking(move || crate::users::hash_password(&password))
        .await?
        .map_err(Error::Other)?;
    Ok(Some(hash))
}

/// Every user, by name.
#[utoipa::path(get, operation_id = "list_users", path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserOut>), (status = 401, body = Problem)),
    security(("token" = [])))]
pub async fn list(State(state): State<AppState>, _: CanRead) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let v = versions::all(&mut conn, Table::Users).await?;
    let list: Vec<UserOut> = users::list(&mut conn)
        .await?
        .iter()
        .map(|u| out(u, v.get(&u.id).copied().unwrap_or_default()))
        .collect();
    Ok(json(&list))
}

/// One user.
#[utoipa::path(get, operation_id = "get_user", path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "the user's name")),
    responses((status = 200, body = UserOut), (status = 404, body = Problem)),
    security(("token" = [])))]
pub async fn read(
    State(state): State<AppState>,
    _: CanRead,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut conn = read_conn(&state).await?;
    let (row, version) = load(&mut conn, &name).await?;
    let u = out(&row, version);
    Ok(tagged(StatusCode::OK, &etag(u.version), &u))
}

/// Adds a user.
#[utoipa::path(post, operation_id = "create_user", path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserOut), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Body(body): Body<NewUser>,
) -> ApiResult<Response> {
    let mut e = FieldErrors::default();
    let name = Slug::parse(&body.name).map_err(|m| e.push("name", m)).ok();
    let hash = hashed(&mut e, body.password).await?;
    let (Some(name), Some(hash)) = (name, hash) else {
        return Err(e.into());
    };
    let mut tx = state.begin(&caller.actor()).await?;
    changes::create_user(&mut tx, name.as_str(), &hash).await?;
    let (row, version) = load(tx.conn(), name.as_str()).await?;
    commit(&state, tx).await?;
    let u = out(&row, version);
    let location = format!("/api/v1/users/{}", u.name);
    Ok(versioned(StatusCode::CREATED, u.version, &location, &u))
}

/// Sets a user's password (and ends their sessions).
#[utoipa::path(put, operation_id = "update_user", path = "/api/v1/users/{name}", tag = "users", request_body = NewPassword,
    params(("name" = String, Path, description = "the user's name"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 200, body = UserOut), (status = 404, body = Problem),
              (status = 412, body = Problem), (status = 422, body = Problem),
              (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(name): Path<String>,
    if_match: IfMatch,
    Body(body): Body<NewPassword>,
) -> ApiResult<Response> {
    let mut e = FieldErrors::default();
    let Some(hash) = hashed(&mut e, body.password).await? else {
        return Err(e.into());
    };
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (_, version) = load(tx.conn(), &name).await?;
    if_match.check_version(version)?;
    changes::set_password(&mut tx, &name, &hash).await?;
    let (row, version) = load(tx.conn(), &name).await?;
    commit(&state, tx).await?;
    let u = out(&row, version);
    Ok(tagged(StatusCode::OK, &etag(u.version), &u))
}

/// Removes a user; the last one is refused (409).
#[utoipa::path(delete, operation_id = "delete_user", path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "the user's name"),
           ("If-Match" = String, Header, description = "the ETag as last read")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 412, body = Problem), (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    Path(name): Path<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    let (_, version) = load(tx.conn(), &name).await?;
    if_match.check_version(version)?;
    // The last user is refused (409): a rule about the current state.
    changes::delete_user(&mut tx, &name).await?;
    commit(&state, tx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
