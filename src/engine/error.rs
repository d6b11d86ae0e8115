//! What the core's operations can fail with: the layers below, passed on
//! typed, so the web boundary can tell a conflict from a broken store.

use crate::{poll, store};

use super::poll_runtime;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Poll(#[from] poll::Error),
    #[error(transparent)]
    Runtime(#[from] poll_runtime::Error),
    #[error("a blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
