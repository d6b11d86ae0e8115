//! Object versions for optimistic concurrency (`ETag` / `If-Match` in
//! /api/v1). Triggers bump a row's `version` on every update, whoever
//! writes it, so this module only reads them.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::Result;

/// A table whose rows carry a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Servers,
    Streams,
    Mounts,
    Users,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Servers => "servers",
            Table::Streams => "streams",
            Table::Mounts => "mounts",
            Table::Users => "users",
        }
    }
}

/// The version of row `id`, `None` when there is no such row.
pub async fn of(conn: &mut SqliteConnection, table: Table, id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {} WHERE id = ?",
        table.name()
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Every row's version, by id.
pub async fn all(conn: &mut SqliteConnection, table: Table) -> Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, version FROM {}",
        table.name()
    )))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
