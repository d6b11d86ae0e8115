//! Admin users and the record of login attempts used for rate limiting.

use sqlx::{FromRow, SqliteConnection};

use super::{Error, Result};
use super::{Pool, now_ms};

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

pub(crate) async fn set_password(
    conn: &mut SqliteConnection,
    name: &str,
    hash: &str,
) -> Result<()> {
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

/// Failed attempts are kept this long (the rate-limit window needs far
/// less); successful ones a month, to know an owner's usual addresses.
const FAILED_KEPT_MS: i64 = 24 * 3600 * 1000;
const SUCCESS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// What the rate limit decided about a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Go ahead and check the password; the attempt is already recorded
    /// as failed under this id (see [`mark_succeeded`]).
    Allowed(i64),
    /// Over a limit; the oldest counted failure, to say when it lifts.
    Limited(Option<i64>),
}

/// Limits for [`claim_attempt`], counted over `since_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub since_ms: i64,
    pub per_ip: i64,
    pub per_user: i64,
}

/// Checks the limits and records the attempt in one write transaction, so
/// concurrent attempts cannot all pass the check before any is recorded.
/// The per-name limit does not apply to an address this user logged in
/// from before: strangers guessing a name cannot lock its owner out.
pub(crate) async fn claim_attempt(
    pool: &Pool,
    ip: &str,
    username: &str,
    l: Limits,
) -> Result<Claim> {
    let mut tx = super::write_tx(pool).await?;
    let (by_ip, by_user, oldest) = recent_failures(&mut tx, ip, username, l.since_ms).await?;
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM login_attempts WHERE ok = 1 AND ip = ? AND username = ?)",
    )
    .bind(ip)
    .bind(username)
    .fetch_one(&mut *tx)
    .await?;
    if by_ip >= l.per_ip || (by_user >= l.per_user && !known) {
        return Ok(Claim::Limited(oldest));
    }
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO login_attempts (at, ip, username, ok) VALUES (?, ?, ?, 0) RETURNING id",
    )
    .bind(now)
    .bind(ip)
    .bind(username)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM login_attempts WHERE (ok = 0 AND at < ?) OR at < ?")
        .bind(now - FAILED_KEPT_MS)
        .bind(now - SUCCESS_KEPT_MS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Claim::Allowed(id))
}

/// The attempt claimed as `id` had the right password.
pub(crate) async fn mark_succeeded(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    sqlx::query("UPDATE login_attempts SET ok = 1 WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Failed attempts since `since_ms` by this IP and for this user name, and
/// the oldest of them (when the limit will lift).
async fn recent_failures(
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
