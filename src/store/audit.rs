//! The audit log: who changed what, when, from what to what.
//!
//! Configuration changes are recorded by [`super::changes`], in the same
//! transaction as the change; sign-ins and sign-outs are recorded here
//! directly, as they change no configuration.

use sqlx::{FromRow, SqliteConnection};

use super::Result;
use super::now_ms;

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What happened. The stored text is what older versions wrote, so the
/// log reads the same across an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
    PasswordChanged,
    Login,
    LoginFailed,
    Logout,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::PasswordChanged => "password changed",
            Action::Login => "login",
            Action::LoginFailed => "login failed",
            Action::Logout => "logout",
        }
    }
}

/// What it happened to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Stream,
    Mount,
    User,
    Session,
    Token,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Stream => "stream",
            Kind::Mount => "mount",
            Kind::User => "user",
            Kind::Session => "session",
            Kind::Token => "token",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub actor: String,
    pub action: Action,
    pub kind: Kind,
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Entry {
    /// An entry without before/after texts; set those with struct update
    /// syntax where a change has them.
    pub fn new(actor: &str, action: Action, kind: Kind, name: &str) -> Self {
        Entry {
            actor: actor.to_string(),
            action,
            kind,
            name: name.to_string(),
            before: None,
            after: None,
        }
    }
}

pub async fn record(conn: &mut SqliteConnection, e: &Entry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, object_kind, object_name, before, after) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now_ms())
    .bind(&e.actor)
    .bind(e.action.as_str())
    .bind(e.kind.as_str())
    .bind(&e.name)
    .bind(&e.before)
    .bind(&e.after)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn page(conn: &mut SqliteConnection, offset: i64, limit: i64) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as::<_, AuditRow>(
        "SELECT id, at, actor, action, object_kind, object_name, before, after FROM audit \
         ORDER BY id DESC LIMIT ? OFFSET ?",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?)
}

pub async fn count(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(conn)
        .await?)
}
