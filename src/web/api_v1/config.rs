//! `/api/v1/config`: the whole configuration in the import/export file's
//! shape. `PUT` applies it as `import` does (create or update by name, a
//! stream's `mounts` its complete set, objects absent from the body left
//! alone), all or nothing, under `If-Match` with the `ETag` of a `GET`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, Body, CanRead, CanWrite, IfMatch, Problem, commit, tagged};
use crate::config_file::{self, ConfigFile, ImportReport};
use crate::error::Error;
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/config", get(read).put(replace))
}

/// What a `PUT` changed, as `import` reports it.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ConfigReport {
    pub servers_created: Vec<String>,
    pub servers_updated: Vec<String>,
    pub streams_created: Vec<String>,
    pub streams_updated: Vec<String>,
    pub mounts_added: Vec<String>,
    pub mounts_removed: Vec<String>,
    /// Entries already as in the body.
    pub unchanged: usize,
}

impl From<ImportReport> for ConfigReport {
    fn from(r: ImportReport) -> Self {
        ConfigReport {
            servers_created: r.servers_created,
            servers_updated: r.servers_updated,
            streams_created: r.streams_created,
            streams_updated: r.streams_updated,
            mounts_added: r.mounts_added,
            mounts_removed: r.mounts_removed,
            unchanged: r.unchanged,
        }
    }
}

/// The configuration's `ETag`: a digest of its JSON, so any change to any
/// object changes it.
fn etag_of(file: &ConfigFile) -> ApiResult<String> {
    let bytes = serde_json::to_vec(file).map_err(|e| Error::Other(e.into()))?;
    let digest = Sha256::digest(&bytes);
    Ok(format!("\"{}\"", crate::users::hex(&digest[..16])))
}

/// The whole configuration (servers, streams with their mounts).
#[utoipa::path(get, operation_id = "get_config", path = "/api/v1/config", tag = "config",
    responses((status = 200, body = ConfigFile), (status = 401, body = Problem)),
    security(("token" = [])))]
pub async fn read(State(state): State<AppState>, _: CanRead) -> ApiResult<Response> {
    let file = config_file::export(state.db()).await?;
    Ok(tagged(StatusCode::OK, &etag_of(&file)?, &file))
}

/// Applies a configuration as `import` does, if nothing changed since the
/// `GET` whose `ETag` is in `If-Match`.
#[utoipa::path(put, operation_id = "put_config", path = "/api/v1/config", tag = "config", request_body = ConfigFile,
    params(("If-Match" = String, Header, description = "the ETag of the configuration as last read")),
    responses((status = 200, body = ConfigReport), (status = 412, body = Problem),
              (status = 422, body = Problem), (status = 428, body = Problem)),
    security(("token" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    CanWrite(caller): CanWrite,
    if_match: IfMatch,
    Body(file): Body<ConfigFile>,
) -> ApiResult<Response> {
    if_match.required()?;
    let mut tx = state.begin(&caller.actor()).await?;
    // Read while this transaction holds the write lock: nobody can change
    // the configuration between this check and the write.
    let current = config_file::export(state.db()).await?;
    if_match.check(&etag_of(&current)?, None)?;
    let report = match config_file::apply_in(&mut tx, &file).await {
        // Import reports every bad entry and field in one message.
        Err(e @ config_file::Error::Rejected(_)) => {
            return Err(ApiError::Body(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
            ));
        }
        other => other?,
    };
    commit(&state, tx).await?;
    let now = config_file::export(state.db()).await?;
    Ok(tagged(
        StatusCode::OK,
        &etag_of(&now)?,
        &ConfigReport::from(report),
    ))
}
