//! Admin users and the record of login attempts used for rate limiting.

use sqlx::{FromRow, SqliteConnection};

use super::now_ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub created_at: i64,
}

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT id, name, password_hash, created_at FROM users ORDER BY name",
    )
    .fetch_all(conn)
    .await?)
}

pub async fn count(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(conn)
        .await?)
}

pub async fn find(conn: &mut SqliteConnection, name: &str) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT id, name, password_hash, created_at FROM users WHERE name = ?",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert(conn: &mut SqliteConnection, name: &str, hash: &str) -> Result<i64> {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(hash)
    .bind(now_ms())
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "name", name))
}

pub async fn set_password(conn: &mut SqliteConnection, name: &str, hash: &str) -> Result<()> {
    let done = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
        .bind(hash)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no user named {name:?}")));
    }
    // A new password ends every session of that user.
    sqlx::query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?)")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut SqliteConnection, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM users WHERE name = ?")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no user named {name:?}")));
    }
    Ok(())
}

pub async fn record_attempt(
    conn: &mut SqliteConnection,
    ip: &str,
    username: &str,
    ok: bool,
) -> Result<()> {
    let now = now_ms();
    sqlx::query("INSERT INTO login_attempts (at, ip, username, ok) VALUES (?, ?, ?, ?)")
        .bind(now)
        .bind(ip)
        .bind(username)
        .bind(ok)
        .execute(&mut *conn)
        .await?;
    // Old attempts only matter within the rate-limit window.
    sqlx::query("DELETE FROM login_attempts WHERE at < ?")
        .bind(now - 24 * 3600 * 1000)
        .execute(conn)
        .await?;
    Ok(())
}

/// Failed attempts since `since_ms` by this IP and for this user name, and
/// the oldest of them (when the limit will lift).
pub async fn recent_failures(
    conn: &mut SqliteConnection,
    ip: &str,
    username: &str,
    since_ms: i64,
) -> Result<(i64, i64, Option<i64>)> {
    let by_ip: (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM login_attempts WHERE ok = 0 AND ip = ? AND at >= ?",
    )
    .bind(ip)
    .bind(since_ms)
    .fetch_one(&mut *conn)
    .await?;
    let by_user: (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM login_attempts WHERE ok = 0 AND username = ? AND at >= ?",
    )
    .bind(username)
    .bind(since_ms)
    .fetch_one(conn)
    .await?;
    let oldest = match (by_ip.1, by_user.1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok((by_ip.0, by_user.0, oldest))
}
