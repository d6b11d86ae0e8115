//! One error type for the whole program. Handlers return `Result<T>` and the
//! `IntoResponse` impl decides what the client sees: specific, actionable text
//! for what the client did wrong, and a bare 500 (details in the log only) for
//! what went wrong on our side.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// A UNIQUE constraint: `field` already has `value`.
    #[error("{field}: {value:?} is already taken")]
    Conflict { field: &'static str, value: String },
    /// Refused by a rule about the current state (removing the last user).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } | Error::Refused(_) => StatusCode::CONFLICT,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Db(_) | Error::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a UNIQUE violation on `column` to a `Conflict` naming the field.
    pub fn from_unique(e: sqlx::Error, field: &'static str, value: &str) -> Error {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict {
                field,
                value: value.to_string(),
            },
            _ => Error::Db(e),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
            let error = self.to_string();
            tracing::error!(error = %crate::domain::text::Escaped(&error), "request failed");
            "Internal error; the details are in the balancer's log.\n".to_string()
        } else {
            format!("{self}\n")
        };
        (status, [("cache-control", "no-store")], body).into_response()
    }
}
