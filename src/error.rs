//! The web boundary's one error type. Handlers return `Result<T>` and the
//! `IntoResponse` impl decides what the client sees: specific, actionable text
//! for what the client did wrong, and a bare 500 (details in the log only) for
//! what went wrong on our side.
//!
//! The layers below have errors of their own (`store::Error`,
//! `poll::Error`, `engine::Error`, `cluster::Error`, `config_file::Error`)
//! and know nothing of HTTP; the `From` impls here are the only place they
//! become status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::FieldErrors;
use crate::{cluster, config_file, engine, poll, store};

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
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        match e {
            store::Error::NotFound(m) => Error::NotFound(m),
            store::Error::Conflict { field, value } => Error::Conflict { field, value },
            store::Error::Refused(m) => Error::Refused(m),
            store::Error::Db(e) => Error::Db(e),
            e @ store::Error::BadRow(_) => internal(e),
        }
    }
}

impl From<poll::Error> for Error {
    fn from(e: poll::Error) -> Error {
        match e {
            poll::Error::Store(e) => e.into(),
            poll::Error::Db(e) => Error::Db(e),
        }
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        match e {
            engine::Error::Store(e) => e.into(),
            engine::Error::Poll(e) => e.into(),
            e => internal(e),
        }
    }
}

/// Parse errors and rejected entries are the uploader's to fix (400).
impl From<config_file::Error> for Error {
    fn from(e: config_file::Error) -> Error {
        match e {
            config_file::Error::Store(e) => e.into(),
            e @ (config_file::Error::Parse(_) | config_file::Error::Rejected(_)) => {
                Error::BadRequest(e.to_string())
            }
            e => internal(e),
        }
    }
}

/// Nothing the client sent: a 500, the details in the log.
impl From<cluster::Error> for Error {
    fn from(e: cluster::Error) -> Error {
        internal(e)
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Other(anyhow::Error::new(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_layers_become_status_codes_only_here() {
        let record = cluster::Error::Record("expected value at line 1".into());
        assert_eq!(
            Error::from(record).status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "a bad shared record is not the client's fault"
        );
        let taken = store::Error::Conflict {
            field: "name",
            value: "a".into(),
        };
        let e = Error::from(engine::Error::Store(taken));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.to_string(), "name: \"a\" is already taken");
        let missing = poll::Error::Store(store::Error::NotFound("no server with id 9".into()));
        assert_eq!(Error::from(missing).status(), StatusCode::NOT_FOUND);
        let rejected = config_file::Error::Rejected("server a: url: bad".into());
        assert_eq!(Error::from(rejected).status(), StatusCode::BAD_REQUEST);
        let bad_row = store::Error::BadRow("server \"a\" has a bad url".into());
        assert_eq!(
            Error::from(bad_row).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
