//! The one write path for configuration: servers, streams, mounts and
//! users. Admin handlers, `import` and the `user` commands all come here,
//! and nothing else writes these tables.
//!
//! Each function does one change and records its audit entry (typed action
//! and kind, before → after) in the caller's [`ChangeTx`], so a change and
//! its record commit together or not at all. [`Writer::commit`] then logs
//! what was done and announces it once on the "configuration changed"
//! channel, which the routing refresh (and anything else that must follow
//! the configuration) listens to.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::SqliteConnection;
use tokio::sync::broadcast;

use super::audit::{self, Action, Entry, Kind};
use super::mounts::MountRow;
use super::servers::ServerRow;
use super::streams::StreamRow;
use super::tokens::{self, Scope};
use super::{Error, Result};
use super::{Pool, mounts, servers, streams, users};
use crate::domain::text::Escaped;
use crate::domain::{MountPath, ServerSpec, Slug, StreamSpec};

/// Who makes a change, as the audit log names them: an admin user's name,
/// or `import`, `cli`, `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn new(name: &str) -> Actor {
        Actor(name.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What one commit changed, as announced after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub actor: Actor,
    pub changes: Vec<Entry>,
}

/// A write transaction that collects the audit entries of its changes.
pub struct ChangeTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    actor: Actor,
    done: Vec<Entry>,
}

impl ChangeTx {
    /// The transaction's connection, for reads that belong with the change.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    async fn record(
        &mut self,
        action: Action,
        kind: Kind,
        name: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<()> {
        let entry = Entry {
            before,
            after,
            ..Entry::new(self.actor.as_str(), action, kind, name)
        };
        audit::record(&mut self.tx, &entry).await?;
        self.done.push(entry);
        Ok(())
    }
}

/// Opens change transactions and announces their commits.
#[derive(Clone)]
pub struct Writer {
    pool: Pool,
    changed: Arc<broadcast::Sender<Arc<Committed>>>,
}

impl Writer {
    pub fn new(pool: Pool) -> Writer {
        let (changed, _) = broadcast::channel(64);
        Writer {
            pool,
            changed: Arc::new(changed),
        }
    }

    /// A change transaction made by `actor`; it takes the write lock now.
    pub async fn begin(&self, actor: Actor) -> Result<ChangeTx> {
        Ok(ChangeTx {
            tx: super::write_tx(&self.pool).await?,
            actor,
            done: Vec::new(),
        })
    }

    /// Commits, logs each change, and announces the commit when it changed
    /// anything.
    pub async fn commit(&self, ctx: ChangeTx) -> Result<Option<Arc<Committed>>> {
        ctx.tx.commit().await?;
        if ctx.done.is_empty() {
            return Ok(None);
        }
        for e in &ctx.done {
            // Display, not Debug: JSON logs would quote the quotes
            // (`"actor":"\"alice\""`); control characters are escaped.
            tracing::info!(
                actor = %Escaped(&e.actor),
                action = e.action.as_str(),
                kind = e.kind.as_str(),
                name = %Escaped(&e.name),
                "configuration changed"
            );
        }
        let committed = Arc::new(Committed {
            actor: ctx.actor,
            changes: ctx.done,
        });
        // Nobody listening (a CLI command) is fine.
        let _ = self.changed.send(committed.clone());
        Ok(Some(committed))
    }

    /// The pool, for reads that need no transaction.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Every commit from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.changed.subscribe()
    }
}

fn server_text(r: &ServerRow) -> Option<String> {
    r.spec().ok().as_ref().and_then(ServerSpec::audit_text)
}

fn stream_text(r: &StreamRow) -> Option<String> {
    r.spec().ok().as_ref().and_then(StreamSpec::audit_text)
}

pub(crate) async fn create_server(ctx: &mut ChangeTx, spec: &ServerSpec) -> Result<i64> {
    let id = servers::insert(ctx.conn(), spec).await?;
    let after = server_text(&servers::get(ctx.conn(), id).await?);
    let name = spec.name.to_string();
    ctx.record(Action::Create, Kind::Server, &name, None, after)
        .await?;
    Ok(id)
}

/// Returns the server as it was and as it is now.
pub(crate) async fn update_server(
    ctx: &mut ChangeTx,
    id: i64,
    spec: &ServerSpec,
) -> Result<(ServerRow, ServerRow)> {
    let before = servers::get(ctx.conn(), id).await?;
    servers::update(ctx.conn(), id, spec).await?;
    let after = servers::get(ctx.conn(), id).await?;
    let (b, a) = (server_text(&before), server_text(&after));
    ctx.record(Action::Update, Kind::Server, &after.name, b, a)
        .await?;
    Ok((before, after))
}

/// Sets or removes a server's callback token. The audit entry says only
/// whether one is set: the token itself is never written anywhere else.
/// Returns whether anything changed.
pub async fn set_callback_token(
    ctx: &mut ChangeTx,
    id: i64,
    change: &crate::domain::TokenChange,
) -> Result<bool> {
    use crate::domain::TokenChange;
    let before = servers::callback_token(ctx.conn(), id).await?;
    let after = match change {
        TokenChange::Keep => return Ok(false),
        TokenChange::Remove => None,
        TokenChange::Set(t) => Some(t),
    };
    if before.as_ref() == after {
        return Ok(false);
    }
    servers::set_callback_token(ctx.conn(), id, after).await?;
    let name = servers::get(ctx.conn(), id).await?.name;
    let text = |set: bool| {
        Some(format!(
            "callback_token = {}",
            if set { "(set)" } else { "(none)" }
        ))
    };
    let after_text = match (before.is_some(), after.is_some()) {
        (true, true) => Some("callback_token = (changed)".to_string()),
        (_, set) => text(set),
    };
    ctx.record(
        Action::Update,
        Kind::Server,
        &name,
        text(before.is_some()),
        after_text,
    )
    .await?;
    Ok(true)
}

/// Deletes a server with its mounts; each is audited.
pub async fn delete_server(ctx: &mut ChangeTx, id: i64) -> Result<(ServerRow, Vec<MountRow>)> {
    let row = servers::get(ctx.conn(), id).await?;
    let gone = mounts::for_server(ctx.conn(), id).await?;
    servers::delete(ctx.conn(), id).await?;
    ctx.record(
        Action::Delete,
        Kind::Server,
        &row.name,
        server_text(&row),
        None,
    )
    .await?;
    record_mounts_deleted(ctx, &gone).await?;
    Ok((row, gone))
}

pub(crate) async fn create_stream(ctx: &mut ChangeTx, spec: &StreamSpec) -> Result<i64> {
    let id = streams::insert(ctx.conn(), spec).await?;
    let after = stream_text(&streams::get(ctx.conn(), id).await?);
    ctx.record(
        Action::Create,
        Kind::Stream,
        spec.name.as_str(),
        None,
        after,
    )
    .await?;
    Ok(id)
}

/// Returns the stream as it was and as it is now.
pub(crate) async fn update_stream(
    ctx: &mut ChangeTx,
    id: i64,
    spec: &StreamSpec,
) -> Result<(StreamRow, StreamRow)> {
    let before = streams::get(ctx.conn(), id).await?;
    streams::update(ctx.conn(), id, spec).await?;
    let after = streams::get(ctx.conn(), id).await?;
    let (b, a) = (stream_text(&before), stream_text(&after));
    ctx.record(Action::Update, Kind::Stream, &after.name, b, a)
        .await?;
    Ok((before, after))
}

/// Deletes a stream with its mounts; each is audited.
pub(crate) async fn delete_stream(
    ctx: &mut ChangeTx,
    id: i64,
) -> Result<(StreamRow, Vec<MountRow>)> {
    let row = streams::get(ctx.conn(), id).await?;
    let gone = mounts::for_stream(ctx.conn(), id).await?;
    streams::delete(ctx.conn(), id).await?;
    ctx.record(
        Action::Delete,
        Kind::Stream,
        &row.name,
        stream_text(&row),
        None,
    )
    .await?;
    record_mounts_deleted(ctx, &gone).await?;
    Ok((row, gone))
}

pub(crate) async fn add_mount(
    ctx: &mut ChangeTx,
    stream_id: i64,
    server_id: i64,
    path: &MountPath,
) -> Result<MountRow> {
    let id = match mounts::insert(ctx.conn(), stream_id, server_id, path).await {
        Err(Error::Conflict { field, .. }) => {
            // Name the mount the way an operator reads it.
            let server = servers::get(ctx.conn(), server_id).await?.name;
            let value = format!("{path} on {server}");
            return Err(Error::Conflict { field, value });
        }
        other => other?,
    };
    let row = mounts::get(ctx.conn(), id).await?;
    let after = mounts::audit_text(&row.server_name, &row.mount);
    ctx.record(Action::Create, Kind::Mount, &row.label(), None, Some(after))
        .await?;
    Ok(row)
}

/// Sets a mount's own limit (`None`: the relay's); audited when it changes.
pub(crate) async fn set_mount_limit(
    ctx: &mut ChangeTx,
    id: i64,
    max: Option<u32>,
) -> Result<MountRow> {
    let row = mounts::get(ctx.conn(), id).await?;
    let max = max.map(i64::from);
    if row.max_listeners == max {
        return Ok(row);
    }
    mounts::set_max_listeners(ctx.conn(), id, max).await?;
    let before = mounts::audit_text_with_limit(&row.server_name, &row.mount, row.max_listeners);
    let after = mounts::audit_text_with_limit(&row.server_name, &row.mount, max);
    ctx.record(
        Action::Update,
        Kind::Mount,
        &row.label(),
        Some(before),
        Some(after),
    )
    .await?;
    mounts::get(ctx.conn(), id).await
}

pub(crate) async fn remove_mount(ctx: &mut ChangeTx, id: i64) -> Result<MountRow> {
    let row = mounts::get(ctx.conn(), id).await?;
    mounts::delete(ctx.conn(), id).await?;
    record_mounts_deleted(ctx, std::slice::from_ref(&row)).await?;
    Ok(row)
}

/// A stream's mounts as a set of (server id, mount path).
pub(crate) type MountSet = BTreeSet<(i64, MountPath)>;

/// Removes the stream's mounts that are not in `keep`. Import runs this for
/// every stream before adding, so a mount can move between two streams.
pub(crate) async fn remove_mounts_except(
    ctx: &mut ChangeTx,
    stream_id: i64,
    keep: &MountSet,
) -> Result<Vec<MountRow>> {
    let mut removed = Vec::new();
    for m in mounts::for_stream(ctx.conn(), stream_id).await? {
        let key = (m.server_id, MountPath::parse(&m.mount).ok());
        let kept = key.1.is_some_and(|p| keep.contains(&(key.0, p)));
        if !kept {
            removed.push(remove_mount(ctx, m.id).await?);
        }
    }
    Ok(removed)
}

/// Makes `wanted` the stream's complete set of mounts; returns what was
/// added and what was removed.
pub(crate) async fn replace_mounts(
    ctx: &mut ChangeTx,
    stream_id: i64,
    wanted: &MountSet,
) -> Result<(Vec<MountRow>, Vec<MountRow>)> {
    let removed = remove_mounts_except(ctx, stream_id, wanted).await?;
    let have: MountSet = mounts::for_stream(ctx.conn(), stream_id)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.server_id, MountPath::parse(&m.mount).ok()?)))
        .collect();
    let mut added = Vec::new();
    for (server_id, path) in wanted.difference(&have) {
        added.push(add_mount(ctx, stream_id, *server_id, path).await?);
    }
    Ok((added, removed))
}

async fn record_mounts_deleted(ctx: &mut ChangeTx, gone: &[MountRow]) -> Result<()> {
    for m in gone {
        let before = mounts::audit_text(&m.server_name, &m.mount);
        ctx.record(Action::Delete, Kind::Mount, &m.label(), Some(before), None)
            .await?;
    }
    Ok(())
}

/// `hash` is an argon2 PHC string, never the password.
pub async fn create_user(ctx: &mut ChangeTx, name: &str, hash: &str) -> Result<i64> {
    let id = users::insert(ctx.conn(), name, hash).await?;
    ctx.record(Action::Create, Kind::User, name, None, None)
        .await?;
    Ok(id)
}

/// Also ends the user's sessions.
pub(crate) async fn set_password(ctx: &mut ChangeTx, name: &str, hash: &str) -> Result<()> {
    users::set_password(ctx.conn(), name, hash).await?;
    ctx.record(Action::PasswordChanged, Kind::User, name, None, None)
        .await
}

/// Refuses to remove the last user: nobody could log in to add another.
pub(crate) async fn delete_user(ctx: &mut ChangeTx, name: &str) -> Result<()> {
    if users::find(ctx.conn(), name).await?.is_some() && users::count(ctx.conn()).await? <= 1 {
        return Err(Error::Refused(format!(
            "{name} is the last user and cannot be removed: nobody could log in to the admin. \
             Add another user first."
        )));
    }
    users::delete(ctx.conn(), name).await?;
    ctx.record(Action::Delete, Kind::User, name, None, None)
        .await
}

/// Makes an API token; `secret` is shown to its owner once and stored
/// only as a hash.
pub async fn create_token(
    ctx: &mut ChangeTx,
    name: &Slug,
    scope: Scope,
    streams: &[String],
    secret: &str,
) -> Result<i64> {
    let id = tokens::insert(ctx.conn(), name.as_str(), scope, streams, secret).await?;
    let mut after = format!("scope = {:?}\n", scope.as_str());
    if scope == Scope::Announce {
        after.push_str(&format!("streams = {streams:?}\n"));
    }
    ctx.record(
        Action::Create,
        Kind::Token,
        name.as_str(),
        None,
        Some(after),
    )
    .await?;
    Ok(id)
}

/// Revokes a token: requests carrying it are refused from now on.
pub async fn delete_token(ctx: &mut ChangeTx, name: &str) -> Result<()> {
    tokens::delete(ctx.conn(), name).await?;
    ctx.record(Action::Delete, Kind::Token, name, None, None)
        .await
}
