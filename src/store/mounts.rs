//! Mounts: a stream carried by a server at a mount path.

use sqlx::{AssertSqlSafe, FromRow, SqliteConnection};

use super::now_ms;
use super::{Error, Result};
use crate::domain::MountPath;

#[derive(Debug, Clone, FromRow)]
pub struct MountRow {
    pub id: i64,
    pub stream_id: i64,
    pub server_id: i64,
    pub mount: String,
    /// The operator's limit for this mount (`None`: the relay's own).
    pub max_listeners: Option<i64>,
    pub server_name: String,
    pub stream_name: String,
}

/// "live /live.mp3 on fra-1", as the audit log and messages name a mount.
pub fn label(stream: &str, mount: &str, server: &str) -> String {
    format!("{stream} {mount} on {server}")
}

/// A mount as the audit log's before/after text.
pub fn audit_text(server: &str, mount: &str) -> String {
    format!("server = {server:?}\nmount = {mount:?}\n")
}

/// `audit_text` with the mount's own limit, when it has one.
pub fn audit_text_with_limit(server: &str, mount: &str, max: Option<i64>) -> String {
    let mut t = audit_text(server, mount);
    if let Some(m) = max {
        t.push_str(&format!("max_listeners = {m}\n"));
    }
    t
}

impl MountRow {
    pub fn label(&self) -> String {
        label(&self.stream_name, &self.mount, &self.server_name)
    }
}

const SELECT: &str = "SELECT m.id, m.stream_id, m.server_id, m.mount, m.max_listeners, \
                      sv.name AS server_name, st.name AS stream_name \
                      FROM mounts m JOIN servers sv ON sv.id = m.server_id \
                      JOIN streams st ON st.id = m.stream_id";

pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<MountRow>> {
    Ok(sqlx::query_as::<_, MountRow>(AssertSqlSafe(format!(
        "{SELECT} ORDER BY st.name, sv.name, m.mount"
    )))
    .fetch_all(conn)
    .await?)
}

pub async fn for_stream(conn: &mut SqliteConnection, stream_id: i64) -> Result<Vec<MountRow>> {
    Ok(sqlx::query_as::<_, MountRow>(AssertSqlSafe(format!(
        "{SELECT} WHERE m.stream_id = ? ORDER BY sv.name, m.mount"
    )))
    .bind(stream_id)
    .fetch_all(conn)
    .await?)
}

pub async fn for_server(conn: &mut SqliteConnection, server_id: i64) -> Result<Vec<MountRow>> {
    Ok(sqlx::query_as::<_, MountRow>(AssertSqlSafe(format!(
        "{SELECT} WHERE m.server_id = ? ORDER BY st.name, m.mount"
    )))
    .bind(server_id)
    .fetch_all(conn)
    .await?)
}

pub async fn get(conn: &mut SqliteConnection, id: i64) -> Result<MountRow> {
    sqlx::query_as::<_, MountRow>(AssertSqlSafe(format!("{SELECT} WHERE m.id = ?")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no mount with id {id}")))
}

pub async fn insert(
    conn: &mut SqliteConnection,
    stream_id: i64,
    server_id: i64,
    mount: &MountPath,
) -> Result<i64> {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO mounts (stream_id, server_id, mount, created_at) VALUES (?, ?, ?, ?) \
         RETURNING id",
    )
    .bind(stream_id)
    .bind(server_id)
    .bind(mount.as_str())
    .bind(now_ms())
    .fetch_one(conn)
    .await
    .map_err(|e| Error::from_unique(e, "mount", mount.as_str()))
}

pub async fn set_max_listeners(
    conn: &mut SqliteConnection,
    id: i64,
    max: Option<i64>,
) -> Result<()> {
    sqlx::query("UPDATE mounts SET max_listeners = ? WHERE id = ?")
        .bind(max)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM mounts WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no mount with id {id}")));
    }
    Ok(())
}
