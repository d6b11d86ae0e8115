//! Admin sessions. The cookie holds a random token; the table holds its
//! SHA-256, the user, the session's CSRF token and when it was last used.

use sha2::{Digest, Sha256};
use sqlx::{FromRow, SqliteConnection};

use super::Result;
use super::now_ms;

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub user_name: String,
    pub csrf_token: String,
    pub last_seen_at: i64,
}

pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

pub async fn create(
    conn: &mut SqliteConnection,
    token: &str,
    user_id: i64,
    csrf_token: &str,
) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(hash(token))
    .bind(user_id)
    .bind(csrf_token)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The live session for `token`, touching its last-seen time; sessions idle
/// longer than `idle_ms` are removed instead.
pub async fn find(
    conn: &mut SqliteConnection,
    token: &str,
    idle_ms: i64,
) -> Result<Option<SessionRow>> {
    let now = now_ms();
    let h = hash(token);
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT u.name AS user_name, s.csrf_token, s.last_seen_at \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
    )
    .bind(&h)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) if now - r.last_seen_at > idle_ms => {
            delete(conn, token).await?;
            Ok(None)
        }
        Some(r) => {
            // One write a minute is enough to keep an active session alive.
            if now - r.last_seen_at > 60_000 {
                sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?")
                    .bind(now)
                    .bind(&h)
                    .execute(conn)
                    .await?;
            }
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

pub async fn delete(conn: &mut SqliteConnection, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(hash(token))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn prune(conn: &mut SqliteConnection, idle_ms: i64) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE last_seen_at < ?")
        .bind(now_ms() - idle_ms)
        .execute(conn)
        .await?;
    Ok(())
}
