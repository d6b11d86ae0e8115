//! What talking to the other instances can fail with. None of it reaches
//! a listener: the redirect path falls back to this instance's share, and
//! the background loops log and retry.

use crate::{config_file, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer in time")]
    Timeout,
    /// Redis answered, but not in the shape the scripts return.
    #[error("unexpected answer from Redis: {0}")]
    Answer(&'static str),
    #[error("not joined")]
    NotJoined,
    #[error("Redis lost its data; joining anew")]
    DataLost,
    /// A shared configuration record that cannot be applied as it is.
    #[error("shared configuration record: {0}")]
    Record(String),
    #[error("cannot encode a shared configuration record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    ConfigFile(#[from] config_file::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Store(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
