//! Relays that registered themselves: which servers were announced, by
//! which token, and when last. Times come from the injected clock, as
//! they decide routing (a silent relay is drained, then removed).

use sqlx::{FromRow, SqliteConnection};

use super::Result;

#[derive(Debug, Clone, FromRow)]
pub struct AnnouncedRow {
    pub server_id: i64,
    pub server_name: String,
    pub token_name: String,
    pub last_seen_at: i64,
    pub drained_at: Option<i64>,
}

const SELECT: &str = "SELECT a.server_id, s.name AS server_name, a.token_name, a.last_seen_at, \
                      a.drained_at FROM announced_relays a JOIN servers s ON s.id = a.server_id";

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<AnnouncedRow>> {
    Ok(
        sqlx::query_as::<_, AnnouncedRow>(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY s.name")))
            .fetch_all(conn)
            .await?,
    )
}

pub async fn get(conn: &mut SqliteConnection, server_id: i64) -> Result<Option<AnnouncedRow>> {
    Ok(
        sqlx::query_as::<_, AnnouncedRow>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE a.server_id = ?"
        )))
        .bind(server_id)
        .fetch_optional(conn)
        .await?,
    )
}

/// Notes an announcement (and that the relay is no longer drained).
pub async fn seen(
    conn: &mut SqliteConnection,
    server_id: i64,
    token: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO announced_relays (server_id, token_name, last_seen_at) VALUES (?, ?, ?) \
         ON CONFLICT (server_id) DO UPDATE SET token_name = excluded.token_name, \
         last_seen_at = excluded.last_seen_at, drained_at = NULL",
    )
    .bind(server_id)
    .bind(token)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_drained(conn: &mut SqliteConnection, server_id: i64, at_ms: i64) -> Result<()> {
    sqlx::query("UPDATE announced_relays SET drained_at = ? WHERE server_id = ?")
        .bind(at_ms)
        .bind(server_id)
        .execute(conn)
        .await?;
    Ok(())
}
