//! The audit log: who changed what, when, from what to what.

use sqlx::{FromRow, SqliteConnection};

use super::now_ms;
use crate::error::Result;

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

pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub object_kind: &'a str,
    pub object_name: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl<'a> Entry<'a> {
    /// An entry without before/after texts; set those with struct update
    /// syntax where a change has them.
    pub fn new(
        actor: &'a str,
        action: &'a str,
        object_kind: &'a str,
        object_name: &'a str,
    ) -> Self {
        Entry {
            actor,
            action,
            object_kind,
            object_name,
            before: None,
            after: None,
        }
    }
}

pub async fn record(conn: &mut SqliteConnection, e: Entry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, object_kind, object_name, before, after) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now_ms())
    .bind(e.actor)
    .bind(e.action)
    .bind(e.object_kind)
    .bind(e.object_name)
    .bind(e.before)
    .bind(e.after)
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
