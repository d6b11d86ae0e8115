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

/// Failed logins of one user name from one address within this window
/// share one entry that counts them.
const FAILED_LOGIN_WINDOW_MS: i64 = 3_600_000;

/// At most this many failed-login entries are kept (the newest).
pub const FAILED_LOGINS_KEPT: i64 = 1_000;

/// Records a failed login of `username` from `ip`: counted on the entry of
/// the last hour for the same pair, or a new entry (the oldest beyond
/// `keep` are then deleted), so a flood cannot grow the table. Returns the
/// pair's count in the window.
pub async fn record_failed_login(
    conn: &mut SqliteConnection,
    username: &str,
    ip: &str,
    keep: i64,
) -> Result<i64> {
    let now = now_ms();
    let last: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, after FROM audit WHERE action = 'login failed' AND actor = ? \
         AND object_name = ? AND at >= ? ORDER BY id DESC LIMIT 1",
    )
    .bind(username)
    .bind(ip)
    .bind(now - FAILED_LOGIN_WINDOW_MS)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, after)) = last {
        let n = attempts(after.as_deref()) + 1;
        sqlx::query("UPDATE audit SET at = ?, after = ? WHERE id = ?")
            .bind(now)
            .bind(format!("attempts = {n}"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        return Ok(n);
    }
    let entry = Entry {
        after: Some("attempts = 1".into()),
        ..Entry::new(username, Action::LoginFailed, Kind::Session, ip)
    };
    record(conn, &entry).await?;
    sqlx::query(
        "DELETE FROM audit WHERE action = 'login failed' AND id <= (SELECT id FROM audit \
         WHERE action = 'login failed' ORDER BY id DESC LIMIT 1 OFFSET ?)",
    )
    .bind(keep)
    .execute(conn)
    .await?;
    Ok(1)
}

/// The count a failed-login entry holds (`attempts = 3`, in the audit
/// log's field form; 1 when unreadable).
fn attempts(after: Option<&str>) -> i64 {
    after
        .and_then(|a| a.strip_prefix("attempts = ")?.parse().ok())
        .unwrap_or(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_logins_are_counted_per_pair_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::connect(&dir.path().join("a.db"))
            .await
            .unwrap();
        let mut conn = db.acquire().await.unwrap();
        for _ in 0..3 {
            record_failed_login(&mut conn, "eve", "192.0.2.1", 3)
                .await
                .unwrap();
        }
        assert_eq!(count(&mut conn).await.unwrap(), 1, "one entry per pair");
        for i in 2..10 {
            let ip = format!("192.0.2.{i}");
            record_failed_login(&mut conn, "eve", &ip, 3).await.unwrap();
        }
        let kept = page(&mut conn, 0, 100).await.unwrap();
        let names: Vec<&str> = kept.iter().map(|r| r.object_name.as_str()).collect();
        assert_eq!(
            names,
            ["192.0.2.9", "192.0.2.8", "192.0.2.7"],
            "the newest kept"
        );
    }
}
