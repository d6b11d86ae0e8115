//! What the store can fail with. The web layer maps these to HTTP
//! (`crate::error`); nothing here knows about status codes.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No row with that id or name.
    #[error("{0}")]
    NotFound(String),
    /// A UNIQUE constraint: `field` already has `value`.
    #[error("{field}: {value:?} is already taken")]
    Conflict { field: &'static str, value: String },
    /// Refused by a rule about the current state (removing the last
    /// user), not by bad input.
    #[error("{0}")]
    Refused(String),
    /// A row that does not parse back into its value types (edited by
    /// hand into something invalid); reported rather than used.
    #[error("{0}")]
    BadRow(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps a UNIQUE violation to a `Conflict` naming the field.
    pub(crate) fn from_unique(e: sqlx::Error, field: &'static str, value: &str) -> Error {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict {
                field,
                value: value.to_string(),
            },
            _ => Error::Db(e),
        }
    }
}
