//! `/api/v1/`: the configuration as JSON for scripts and provisioning
//! tools, and the door through which relays register themselves.
//!
//! - **Auth**: `Authorization: Bearer <token>`; tokens are made in the
//!   admin or with `icecast-balancer token add` and scoped `read`, `write`
//!   or `announce`. A change is audited as `token:<name>`.
//! - **Concurrency**: every object has a version (its `ETag`); `PUT` and
//!   `DELETE` need `If-Match` (428 without), and a stale one gets 412 with
//!   the current version, changing nothing.
//! - **Errors** are JSON (`Problem`): 422 names each invalid field as the
//!   admin forms do, 409 names the field whose value is taken.
//! - Every write goes through `store::changes` inside one change
//!   transaction, so it is audited and followed by routing and a cluster.
//!
//! The OpenAPI document (`/api/v1/openapi.json`) is derived from the
//! handlers' own types ([`openapi`]).

pub(crate) mod announce;
mod config;
mod mounts;
pub(crate) mod openapi;
mod servers;
mod streams;
mod users;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::domain::FieldErrors;
use crate::error::Error;
use crate::store::tokens::{self, Scope, TokenRow};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(openapi::router())
        .merge(servers::router())
        .merge(streams::router())
        .merge(mounts::router())
        .merge(users::router())
        .merge(config::router())
        .merge(announce::router())
}

/// One invalid field and what is wrong with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Problem {
    /// What went wrong, in words.
    pub error: String,
    /// The field whose value is taken (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every invalid field (422), named as the admin forms name them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
    /// The object's version now (412 on an object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// The current `ETag` (412).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_etag: Option<String>,
}

/// Why a request was refused; answered as a [`Problem`].
#[derive(Debug)]
pub enum ApiError {
    App(Error),
    /// `If-Match` named another version than the current one.
    Stale {
        etag: String,
        version: Option<i64>,
    },
    /// A `PUT` or `DELETE` without `If-Match`.
    IfMatchRequired,
    /// The body could not be read as the expected JSON.
    Body(StatusCode, String),
}

/// The web's errors, and the layers below through the web boundary's
/// mapping.
impl<E> From<E> for ApiError
where
    Error: From<E>,
{
    fn from(e: E) -> Self {
        ApiError::App(Error::from(e))
    }
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::App(Error::Invalid(e))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

fn problem(error: impl Into<String>) -> Problem {
    Problem {
        error: error.into(),
        ..Default::default()
    }
}

fn app_problem(e: Error) -> (StatusCode, Problem) {
    let status = e.status();
    if status.is_server_error() {
        let error = e.to_string();
        tracing::error!(error = %crate::domain::text::Escaped(&error), "API request failed");
        return (
            status,
            problem("internal error; the details are in the balancer's log"),
        );
    }
    let p = match e {
        Error::Invalid(fields) => Problem {
            fields: fields
                .0
                .iter()
                .map(|(f, m)| FieldProblem {
                    field: f.to_string(),
                    message: m.clone(),
                })
                .collect(),
            ..problem(format!("invalid input: {fields}"))
        },
        Error::Conflict { field, ref value } => Problem {
            field: Some(field.to_string()),
            ..problem(format!("{field}: {value:?} is already taken"))
        },
        other => problem(other.to_string()),
    };
    (status, p)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::App(e) => app_problem(e),
            ApiError::Stale { etag, version } => (
                StatusCode::PRECONDITION_FAILED,
                Problem {
                    current_version: version,
                    current_etag: Some(etag),
                    ..problem("If-Match does not name the current version; read the object again")
                },
            ),
            ApiError::IfMatchRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                problem("this change needs If-Match with the ETag of the object as last read"),
            ),
            ApiError::Body(status, text) => (status, problem(text)),
        };
        let mut r = (status, [(header::CACHE_CONTROL, "no-store")], Json(&body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(etag) = body
            .current_etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            r.headers_mut().insert(header::ETAG, etag);
        }
        r
    }
}

/// A JSON body; a malformed one is answered as a [`Problem`] (422 for
/// JSON of the wrong shape, naming the field serde names).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rej) => Err(ApiError::Body(rej.status(), rej.body_text())),
        }
    }
}

/// The token a request carries, resolved.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenRow);

impl Caller {
    /// Who the audit log says acted.
    pub fn actor(&self) -> String {
        self.0.actor()
    }

    async fn resolve(parts: &Parts, state: &AppState, needed: Scope) -> ApiResult<Caller> {
        let secret = bearer(&parts.headers).ok_or_else(|| {
            Error::Unauthorized("an API token is needed: Authorization: Bearer <token>".into())
        })?;
        let mut conn = state.db().acquire().await.map_err(Error::from)?;
        let token = tokens::find_by_secret(&mut conn, secret)
            .await?
            .ok_or_else(|| Error::Unauthorized("unknown or revoked API token".into()))?;
        let scope = token.scope()?;
        if !scope.allows(needed) {
            return Err(Error::Forbidden(format!(
                "token {:?} has scope {}; this needs {}",
                token.name,
                scope.as_str(),
                needed.as_str()
            ))
            .into());
        }
        Ok(Caller(token))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A caller whose token may read the configuration (who it is does not
/// matter to a read).
pub struct CanRead;
/// A caller whose token may change the configuration.
pub struct CanWrite(pub Caller);
/// A caller whose token may announce relays.
pub struct CanAnnounce(pub Caller);

impl FromRequestParts<AppState> for CanRead {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Caller::resolve(parts, state, Scope::Read)
            .await
            .map(|_| CanRead)
    }
}

impl FromRequestParts<AppState> for CanWrite {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Caller::resolve(parts, state, Scope::Write)
            .await
            .map(CanWrite)
    }
}

impl FromRequestParts<AppState> for CanAnnounce {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Caller::resolve(parts, state, Scope::Announce)
            .await
            .map(CanAnnounce)
    }
}

/// The `If-Match` header as sent (absent: `None`).
pub struct IfMatch(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(
            parts
                .headers
                .get(header::IF_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

impl IfMatch {
    /// 428 when absent: checked before the write lock is taken.
    pub fn required(&self) -> ApiResult<()> {
        match self.0 {
            Some(_) => Ok(()),
            None => Err(ApiError::IfMatchRequired),
        }
    }

    /// Whether the header names `etag` (or is `*`); 412 otherwise.
    pub fn check(&self, etag: &str, version: Option<i64>) -> ApiResult<()> {
        let Some(given) = &self.0 else {
            return Err(ApiError::IfMatchRequired);
        };
        let matches = given
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag);
        if matches {
            Ok(())
        } else {
            Err(ApiError::Stale {
                etag: etag.to_string(),
                version,
            })
        }
    }

    /// [`IfMatch::check`] for an object's version.
    pub fn check_version(&self, version: i64) -> ApiResult<()> {
        self.check(&etag(version), Some(version))
    }
}

/// The strong `ETag` of an object version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A JSON answer with its `ETag`.
pub fn tagged<T: Serialize>(status: StatusCode, etag: &str, body: &T) -> Response {
    let mut r = (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// A versioned object's answer: its `ETag`, and the `Location` of a new one.
pub fn versioned<T: Serialize>(
    status: StatusCode,
    version: i64,
    location: &str,
    body: &T,
) -> Response {
    let mut r = tagged(status, &etag(version), body);
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(location)
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A pooled connection for a read, its error mapped like any other.
pub async fn read_conn(state: &AppState) -> ApiResult<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
    Ok(state.db().acquire().await.map_err(Error::from)?)
}

/// A JSON answer without one (lists).
pub fn json<T: Serialize>(body: &T) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// Commits a change and rebuilds routing when it changed anything.
pub async fn commit(state: &AppState, tx: crate::store::changes::ChangeTx) -> ApiResult<bool> {
    let changed = state.writer().commit(tx).await?.is_some();
    if changed {
        state.refresh().await?;
    }
    Ok(changed)
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::App(Error::NotFound(format!("no {what} named {name:?}")))
}
