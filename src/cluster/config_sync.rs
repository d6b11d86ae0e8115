//! Configuration shared by the instances of a cluster.
//!
//! Every configuration object (a server, a stream with its mounts, a user
//! with its password hash) is one record in Redis: `version`, the instance
//! and actor that wrote it, and its body in the import format (or a
//! tombstone). Versions come from one Redis counter, so the order of
//! writes is the same for everyone: per object, the highest version wins
//! (last writer to reach Redis), and every instance converges on it.
//!
//! Each instance keeps, in its own database, the version and body of every
//! object as last shared (`cluster_sync`). A sync round compares the local
//! configuration with that: what differs was changed here (admin page,
//! `import`, `user` commands, even from another process) and is published;
//! records with a higher version than the local one were changed elsewhere
//! and are applied through the write path, audited as
//! `<actor>@<instance>`, in the same transaction that notes their version.
//!
//! A database that has never synced takes the cluster's configuration
//! first (so a new instance receives everything and its own fresh `admin`
//! user does not override the cluster's); objects only it has are then
//! published. When Redis has lost its data (a new generation), the
//! instances publish their whole configuration again.

use std::collections::BTreeMap;

use redis::Script;
use redis::aio::ConnectionManager;
use sqlx::SqliteConnection;

use super::auth::{self, Secret};
use super::error::{Error, Result};
use crate::config_file::{self, ConfigFile};
use crate::domain::Slug;
use crate::domain::sync::lock;
use crate::domain::{ServerInput, StreamInput};
use crate::store::changes::{self, Actor, Writer};
use crate::store::{self, Pool};

/// Row of `cluster_sync` that holds how far this database has read the
/// shared log, and in which Redis generation.
const SEEN: &str = "#seen";

pub const PUBLISH_LUA: &str = r#"
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], v .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[5] .. '\n' .. ARGV[4])
redis.call('ZADD', KEYS[3], v, ARGV[1])
return v
"#;

/// A configuration object's key: `server:<name>`, `stream:<name>`, `user:<name>`.
pub type ObjectKey = String;

/// One shared record as read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub object: ObjectKey,
    pub version: i64,
    pub instance: String,
    pub actor: String,
    /// The publisher's HMAC (see [`super::auth`]); empty without a secret.
    pub tag: String,
    /// `None`: deleted.
    pub body: Option<String>,
}

/// The largest record body accepted from Redis.
pub const MAX_BODY: usize = 1 << 20;

impl Record {
    pub fn encode_value(instance: &str, actor: &str, body: Option<&str>) -> [String; 3] {
        let body = match body {
            Some(b) => format!("+{b}"),
            None => "-".into(),
        };
        [instance.replace('\n', " "), actor.replace('\n', " "), body]
    }

    /// What the tag covers: the object, who wrote it, and the stored body.
    pub fn tag_parts<'a>(
        prefix: &'a str,
        object: &'a str,
        instance: &'a str,
        actor: &'a str,
        value: &'a str,
    ) -> [&'a str; 6] {
        [prefix, "config", object, instance, actor, value]
    }

    /// Whether this record may be applied: its tag checks, and what it
    /// names and carries has the shape a balancer writes. The reason, when
    /// not, quotes nothing of the record.
    pub fn check(&self, prefix: &str, secret: Option<&Secret>) -> Result<(), &'static str> {
        let value = match &self.body {
            Some(b) => format!("+{b}"),
            None => "-".into(),
        };
        let parts = Record::tag_parts(prefix, &self.object, &self.instance, &self.actor, &value);
        if !auth::verify(secret, &parts, &self.tag) {
            return Err("its tag does not check with this cluster's secret");
        }
        if super::parse_name(&self.instance).is_err() {
            return Err("its instance name is not one");
        }
        if self.actor.len() > 200 || self.actor.chars().any(char::is_control) {
            return Err("its actor is not a name");
        }
        let Some((kind, name)) = self.object.split_once(':') else {
            return Err("it names no object");
        };
        if !["server", "stream", "user"].contains(&kind) || Slug::parse(name).is_err() {
            return Err("it names no server, stream or user");
        }
        let body = self.body.as_deref().unwrap_or("");
        if body.len() > MAX_BODY {
            return Err("it is too large");
        }
        let phc = body.starts_with("$argon2id$")
            && body.len() <= 512
            && body.bytes().all(|b| b.is_ascii_graphic());
        if kind == "user" && self.body.is_some() && !phc {
            return Err("its password hash is not an argon2id hash");
        }
        Ok(())
    }

    pub fn decode(object: &str, value: &str) -> Option<Record> {
        let mut parts = value.splitn(5, '\n');
        let version = parts.next()?.parse().ok()?;
        let instance = parts.next()?.to_string();
        let actor = parts.next()?.to_string();
        let tag = parts.next()?.to_string();
        let body = parts.next()?;
        let body = match body.strip_prefix('+') {
            Some(b) => Some(b.to_string()),
            None if body == "-" => None,
            None => return None,
        };
        Some(Record {
            object: object.to_string(),
            version,
            instance,
            actor,
            tag,
            body,
        })
    }
}

/// The local configuration as shared objects.
pub async fn local_objects(db: &Pool) -> Result<BTreeMap<ObjectKey, String>> {
    let file = config_file::export(db).await?;
    let mut out = BTreeMap::new();
    for s in &file.servers {
        out.insert(format!("server:{}", s.name), to_json(s)?);
    }
    for s in &file.streams {
        let mut s = s.clone();
        if let Some(m) = s.mounts.as_mut() {
            m.sort_by(|a, b| (&a.server, &a.mount).cmp(&(&b.server, &b.mount)));
        }
        out.insert(format!("stream:{}", s.name), to_json(&s)?);
    }
    let mut conn = db.acquire().await?;
    for u in store::users::list(&mut conn).await? {
        out.insert(format!("user:{}", u.name), u.password_hash);
    }
    Ok(out)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

/// What this database last shared: object → (version, body).
pub async fn synced(
    conn: &mut SqliteConnection,
) -> Result<BTreeMap<ObjectKey, (i64, Option<String>)>> {
    let rows: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT object, version, body FROM cluster_sync WHERE object <> ?")
            .bind(SEEN)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(o, v, b)| (o, (v, b))).collect())
}

/// (version read up to, generation), if this database has ever synced.
pub async fn seen(conn: &mut SqliteConnection) -> Result<Option<(i64, String)>> {
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, body FROM cluster_sync WHERE object = ?")
            .bind(SEEN)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(v, g)| (v, g.unwrap_or_default())))
}

async fn note(
    conn: &mut SqliteConnection,
    object: &str,
    version: i64,
    body: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_sync (object, version, body) VALUES (?1, ?2, ?3) \
         ON CONFLICT (object) DO UPDATE SET version = ?2, body = ?3",
    )
    .bind(object)
    .bind(version)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// The servers and streams a database holds (users left out): noted before
/// an instance serves, so a first join compares only what it started with.
pub async fn objects_at_start(db: &Pool) -> Result<BTreeMap<ObjectKey, String>> {
    Ok(local_objects(db)
        .await?
        .into_iter()
        .filter(|(k, _)| !k.starts_with("user:"))
        .collect())
}

/// Objects whose local state differs from what was last shared.
pub fn local_changes(
    local: &BTreeMap<ObjectKey, String>,
    synced: &BTreeMap<ObjectKey, (i64, Option<String>)>,
) -> Vec<(ObjectKey, Option<String>)> {
    let mut out: Vec<(ObjectKey, Option<String>)> = local
        .iter()
        .filter(|(k, body)| synced.get(*k).and_then(|(_, b)| b.as_ref()) != Some(*body))
        .map(|(k, b)| (k.clone(), Some(b.clone())))
        .collect();
    // Deletions last, so a stream stops naming a server before it goes.
    out.extend(
        synced
            .iter()
            .filter(|(k, (_, b))| b.is_some() && !local.contains_key(*k))
            .map(|(k, _)| (k.clone(), None)),
    );
    out
}

/// One instance's view of the shared configuration.
pub struct ConfigSync {
    prefix: String,
    instance: String,
    secret: Option<Secret>,
    publish: Script,
    /// Records refused, by (object, version): each is logged once.
    refused: std::sync::Mutex<std::collections::HashSet<(String, i64)>>,
    /// `--cluster-join-replace-local`.
    replace_local: bool,
    /// The refusal to join was logged.
    join_refused: std::sync::atomic::AtomicBool,
    /// The servers and streams this database had when the instance
    /// started: what a first join compares with the cluster's (changes
    /// made since are this cluster member's own).
    at_start: BTreeMap<ObjectKey, String>,
}

impl ConfigSync {
    pub fn new(
        prefix: &str,
        instance: &str,
        secret: Option<Secret>,
        replace_local: bool,
    ) -> ConfigSync {
        ConfigSync {
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            secret,
            publish: Script::new(PUBLISH_LUA),
            refused: Default::default(),
            replace_local,
            join_refused: Default::default(),
            at_start: BTreeMap::new(),
        }
    }

    /// A database that has never synced, joining a cluster that has a
    /// configuration: the servers and streams it had at start that the
    /// cluster does not have, or has otherwise (users do not count: a
    /// fresh database has its first-start admin, which the cluster's
    /// replaces).
    async fn differing_at_join(
        &self,
        db: &Pool,
        conn: &mut ConnectionManager,
    ) -> Result<(Vec<ObjectKey>, BTreeMap<ObjectKey, String>)> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key("objects"))
            .query_async(conn)
            .await?;
        let cluster: BTreeMap<ObjectKey, String> = all
            .iter()
            .filter_map(|(o, v)| Record::decode(o, v))
            .filter(|r| self.admit(r))
            .filter_map(|r| Some((r.object, r.body?)))
            .collect();
        if cluster.is_empty() || self.at_start.is_empty() {
            return Ok((Vec::new(), cluster));
        }
        let now = local_objects(db).await?;
        let differing = self
            .at_start
            .keys()
            .filter(|k| {
                now.get(*k)
                    .is_some_and(|body| cluster.get(*k) != Some(body))
            })
            .cloned()
            .collect();
        Ok((differing, cluster))
    }

    /// Whether a new database may join now (`None`: go on as usual); with
    /// `replace_local`, after taking the cluster's configuration, its own
    /// servers and streams that the cluster has not are removed.
    async fn join(
        &self,
        db: &Pool,
        writer: &Writer,
        conn: &mut ConnectionManager,
        generation: &str,
    ) -> Result<Option<usize>> {
        let (differing, cluster) = self.differing_at_join(db, conn).await?;
        if differing.is_empty() {
            return Ok(None);
        }
        if !self.replace_local {
            if !self
                .join_refused
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::error!(
                    objects = differing.len(),
                    "cluster: this database has servers or streams that differ from the cluster's; not taking part in the shared configuration (slots are shared still). Start with --cluster-join-replace-local to replace them with the cluster's, or start on an empty database"
                );
            }
            return Ok(Some(0));
        }
        self.forget(db, generation).await?;
        let applied = self.pull(db, writer, conn, 0, generation).await?;
        let mut own: Vec<&ObjectKey> = differing
            .iter()
            .filter(|k| !cluster.contains_key(*k))
            .collect();
        // Streams first: a server goes once no stream names it.
        own.sort_by_key(|k| !k.starts_with("stream:"));
        let mut ctx = writer.begin(Actor::new("cluster-join")).await?;
        for key in own {
            delete_object(&mut ctx, key).await?;
        }
        writer.commit(ctx).await?;
        tracing::warn!(
            replaced = differing.len(),
            "cluster: this database's own servers and streams were replaced by the cluster's (--cluster-join-replace-local)"
        );
        Ok(Some(applied))
    }

    /// Whether to apply `r`; a refusal is logged the first time only, with
    /// the object's name escaped and cut, never the record's content.
    fn admit(&self, r: &Record) -> bool {
        let Err(why) = r.check(&self.prefix, self.secret.as_ref()) else {
            return true;
        };
        let first = lock(&self.refused).insert((r.object.clone(), r.version));
        if first {
            tracing::error!(object = %auth::loggable(&r.object), version = r.version, "cluster: refused a shared configuration record: {why}");
        }
        false
    }

    fn key(&self, what: &str) -> String {
        format!("{}:config:{what}", self.prefix)
    }

    /// One round: publish local changes, apply remote ones (the other way
    /// round for a database that has never synced in this generation).
    /// Returns how many objects were published and applied.
    pub async fn round(
        &self,
        db: &Pool,
        writer: &Writer,
        conn: &mut ConnectionManager,
        generation: &str,
    ) -> Result<(usize, usize)> {
        let mut local_conn = db.acquire().await?;
        let seen = seen(&mut local_conn).await?;
        drop(local_conn);
        if seen.is_none()
            && let Some(applied) = self.join(db, writer, conn, generation).await?
        {
            return Ok((0, applied));
        }
        let fresh = match &seen {
            Some((_, g)) => g != generation,
            None => true,
        };
        let from = if fresh {
            0
        } else {
            seen.as_ref().map_or(0, |s| s.0)
        };
        if fresh {
            self.forget(db, generation).await?;
            let applied = self.pull(db, writer, conn, from, generation).await?;
            let published = self.push(db, conn).await?;
            Ok((published, applied))
        } else {
            let published = self.push(db, conn).await?;
            let applied = self.pull(db, writer, conn, from, generation).await?;
            Ok((published, applied))
        }
    }

    /// A new generation: what was shared before says nothing now.
    async fn forget(&self, db: &Pool, generation: &str) -> Result<()> {
        let mut tx = store::write_tx(db).await?;
        sqlx::query("DELETE FROM cluster_sync")
            .execute(&mut *tx)
            .await?;
        note(&mut tx, SEEN, 0, Some(generation)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn push(&self, db: &Pool, conn: &mut ConnectionManager) -> Result<usize> {
        let local = local_objects(db).await?;
        let mut c = db.acquire().await?;
        let synced = synced(&mut c).await?;
        drop(c);
        let changed = local_changes(&local, &synced);
        for (object, body) in &changed {
            let actor = last_actor(db, object).await.unwrap_or_default();
            let [instance, actor, value] =
                Record::encode_value(&self.instance, &actor, body.as_deref());
            let parts = Record::tag_parts(&self.prefix, object, &instance, &actor, &value);
            let tag = auth::tag(self.secret.as_ref(), &parts);
            let version: i64 = self
                .publish
                .key(self.key("version"))
                .key(self.key("objects"))
                .key(self.key("log"))
                .arg(object)
                .arg(instance)
                .arg(actor)
                .arg(value)
                .arg(tag)
                .invoke_async(conn)
                .await?;
            let mut c = db.acquire().await?;
            note(&mut c, object, version, body.as_deref()).await?;
        }
        Ok(changed.len())
    }

    async fn pull(
        &self,
        db: &Pool,
        writer: &Writer,
        conn: &mut ConnectionManager,
        from: i64,
        generation: &str,
    ) -> Result<usize> {
        let newer: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("log"))
            .arg(format!("({from}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        if newer.is_empty() {
            return Ok(0);
        }
        let fields: Vec<&str> = newer.iter().map(|(o, _)| o.as_str()).collect();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key("objects"))
            .arg(&fields)
            .query_async(conn)
            .await?;
        let mut records: Vec<Record> = fields
            .iter()
            .zip(values)
            .filter_map(|(o, v)| Record::decode(o, v.as_deref()?))
            .collect();
        records.sort_by_key(|r| r.version);
        let mut c = db.acquire().await?;
        let known = synced(&mut c).await?;
        drop(c);
        let mut applied = 0;
        for r in &records {
            if known.get(&r.object).is_some_and(|(v, _)| *v >= r.version) || !self.admit(r) {
                continue;
            }
            match apply(writer, r).await {
                Ok(()) => applied += 1,
                Err(e) => {
                    tracing::warn!(object = %r.object, from = %r.instance, error = %e, "cluster: cannot apply a shared change")
                }
            }
        }
        let top = newer.iter().map(|(_, v)| *v).max().unwrap_or(from);
        let mut c = db.acquire().await?;
        note(&mut c, SEEN, top, Some(generation)).await?;
        Ok(applied)
    }
}

/// Deletes a local server or stream, if it is there.
async fn delete_object(ctx: &mut changes::ChangeTx, key: &str) -> Result<()> {
    match key.split_once(':') {
        Some(("stream", name)) => {
            if let Some(row) = store::streams::find_by_name(ctx.conn(), name).await? {
                changes::delete_stream(ctx, row.id).await?;
            }
        }
        Some(("server", name)) => {
            if let Some(row) = store::servers::find_by_name(ctx.conn(), name).await? {
                changes::delete_server(ctx, row.id).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Who last changed an object here, as the audit log says (for a stream,
/// its mounts' entries count too: `<stream> <mount> on <server>`).
async fn last_actor(db: &Pool, object: &str) -> Option<String> {
    let (kind, name) = object.split_once(':')?;
    let mut c = db.acquire().await.ok()?;
    sqlx::query_scalar(
        "SELECT actor FROM audit WHERE (object_kind = ?1 AND object_name = ?2) \
         OR (?1 = 'stream' AND object_kind = 'mount' AND substr(object_name, 1, length(?2) + 1) = ?2 || ' ') \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(kind)
    .bind(name)
    .fetch_optional(&mut *c)
    .await
    .ok()
    .flatten()
}

/// Applies one remote record through the write path, noting its version
/// in the same transaction.
async fn apply(writer: &Writer, r: &Record) -> Result<()> {
    let actor = Actor::new(&format!("{}@{}", r.actor, r.instance));
    let mut ctx = writer.begin(actor).await?;
    let (kind, name) = r.object.split_once(':').unwrap_or(("", ""));
    match (kind, r.body.as_deref()) {
        ("server", Some(body)) => {
            let s: ServerInput = serde_json::from_str(body).map_err(bad)?;
            let file = ConfigFile {
                servers: vec![s],
                streams: vec![],
            };
            config_file::apply_in(&mut ctx, &file).await?;
        }
        ("stream", Some(body)) => {
            let s: StreamInput = serde_json::from_str(body).map_err(bad)?;
            let file = ConfigFile {
                servers: vec![],
                streams: vec![s],
            };
            config_file::apply_in(&mut ctx, &file).await?;
        }
        ("server", None) => {
            if let Some(row) = store::servers::find_by_name(ctx.conn(), name).await? {
                changes::delete_server(&mut ctx, row.id).await?;
            }
        }
        ("stream", None) => {
            if let Some(row) = store::streams::find_by_name(ctx.conn(), name).await? {
                changes::delete_stream(&mut ctx, row.id).await?;
            }
        }
        ("user", Some(hash)) => match store::users::find(ctx.conn(), name).await? {
            Some(u) if u.password_hash == hash => {}
            Some(_) => changes::set_password(&mut ctx, name, hash).await?,
            None => {
                changes::create_user(&mut ctx, name, hash).await?;
            }
        },
        ("user", None) => {
            if store::users::find(ctx.conn(), name).await?.is_some() {
                changes::delete_user(&mut ctx, name).await?;
            }
        }
        _ => return Err(bad(format!("unknown object {:?}", r.object))),
    }
    note(ctx.conn(), &r.object, r.version, r.body.as_deref()).await?;
    writer.commit(ctx).await?;
    Ok(())
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Record(e.to_string())
}

/// How often the shared configuration is compared when nothing signals a
/// change (commits by other processes, changes on other instances).
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl super::Cluster {
    /// Keeps the configuration in step with the cluster for as long as the
    /// instance runs: a round after every local commit and twice a second.
    pub async fn run_config(self: std::sync::Arc<Self>, db: Pool, writer: Writer) {
        let settings = self.settings();
        let mut sync = ConfigSync::new(
            &settings.prefix,
            &settings.instance,
            settings.secret.clone(),
            settings.join_replace_local,
        );
        if let Err(e) = self.note_start(&db).await {
            tracing::error!(error = %e, "cluster: cannot read the configuration; not syncing it");
            return;
        }
        sync.at_start = self.at_start.get().cloned().unwrap_or_default();
        let mut committed = writer.subscribe();
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = committed.recv() => {}
            }
            let Some(generation) = self.shared_generation() else {
                continue;
            };
            let mut conn = self.connection();
            match sync.round(&db, &writer, &mut conn, &generation).await {
                Ok((0, 0)) => {}
                Ok((published, applied)) => {
                    tracing::info!(published, applied, "cluster: configuration synced")
                }
                Err(e) => tracing::warn!(error = %e, "cluster: configuration sync failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> (Pool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = store::connect(&dir.path().join("c.db")).await.unwrap();
        (db, dir)
    }

    fn record(object: &str, body: Option<&str>) -> Record {
        Record {
            object: object.into(),
            version: 3,
            instance: "fra-1".into(),
            actor: "admin".into(),
            tag: String::new(),
            body: body.map(String::from),
        }
    }

    #[tokio::test]
    async fn a_bad_shared_record_is_a_cluster_error_and_changes_nothing() {
        let (db, _dir) = database().await;
        let writer = Writer::new(db.clone());
        for r in [
            record("server:x", Some("{not json")),
            record("gadget:x", Some("{}")),
        ] {
            let e = apply(&writer, &r).await.unwrap_err();
            assert!(matches!(e, Error::Record(_)), "{e:?}");
        }
        let mut c = db.acquire().await.unwrap();
        assert!(synced(&mut c).await.unwrap().is_empty());
        assert_eq!(store::servers::list(&mut c).await.unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_new_database_can_note_shared_records_without_setup() {
        // The table comes from a migration: no cluster-only setup step.
        let (db, _dir) = database().await;
        let writer = Writer::new(db.clone());
        let body = r#"{"name":"x","url":"http://10.0.0.1:8000"}"#;
        apply(&writer, &record("server:x", Some(body)))
            .await
            .unwrap();
        let mut c = db.acquire().await.unwrap();
        let known = synced(&mut c).await.unwrap();
        assert_eq!(known.get("server:x"), Some(&(3, Some(body.to_string()))));
    }

    #[test]
    fn records_are_refused_unless_tagged_and_well_formed() {
        let secret = Secret::new(b"0123456789abcdef0123");
        let signed = |object: &str, instance: &str, actor: &str, body: Option<&str>| {
            let [i, a, v] = Record::encode_value(instance, actor, body);
            let tag = secret.tag(&Record::tag_parts("p", object, &i, &a, &v));
            let mut r = record(object, body);
            (r.instance, r.actor, r.tag) = (i, a, tag);
            r
        };
        let good = signed("server:x", "fra-1", "admin", Some("{}"));
        assert_eq!(good.check("p", Some(&secret)), Ok(()));
        assert!(good.check("other-prefix", Some(&secret)).is_err());
        let mut forged = good.clone();
        forged.body = Some(r#"{"url":"http://evil"}"#.into());
        assert!(forged.check("p", Some(&secret)).is_err(), "body changed");
        assert!(
            record("server:x", Some("{}"))
                .check("p", Some(&secret))
                .is_err(),
            "no tag"
        );
        assert_eq!(record("server:x", Some("{}")).check("p", None), Ok(()));
        for bad in [
            signed("user:eve", "fra-1", "admin", Some("plaintext")),
            signed("user:eve", "fra-1", "admin", Some("$argon2id$\u{1b}[2J")),
            signed("server:a b", "fra-1", "admin", Some("{}")),
            signed("gadget:x", "fra-1", "admin", Some("{}")),
            signed("server:x", "fra 1", "admin", Some("{}")),
            signed("server:x", "fra-1", "ad\u{7}min", Some("{}")),
            signed(
                "server:x",
                "fra-1",
                "admin",
                Some(&"x".repeat(MAX_BODY + 1)),
            ),
        ] {
            assert!(bad.check("p", Some(&secret)).is_err(), "{:?}", bad.object);
        }
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        assert_eq!(
            signed("user:eve", "fra-1", "cli", Some(hash)).check("p", Some(&secret)),
            Ok(())
        );
    }

    #[test]
    fn records_round_trip() {
        let [i, a, v] = Record::encode_value("fra-1", "admin", Some("{\"x\":\"a\nb\"}"));
        let value = format!("7\n{i}\n{a}\n\n{v}");
        let r = Record::decode("server:x", &value).unwrap();
        assert_eq!(r.version, 7);
        assert_eq!((r.instance.as_str(), r.actor.as_str()), ("fra-1", "admin"));
        assert_eq!(r.body.as_deref(), Some("{\"x\":\"a\nb\"}"));
        let [i, a, v] = Record::encode_value("b", "", None);
        let r = Record::decode("user:u", &format!("9\n{i}\n{a}\nt\n{v}")).unwrap();
        assert_eq!(r.tag, "t");
        assert_eq!(r.body, None);
        assert_eq!(Record::decode("x", "nonsense"), None);
    }

    #[test]
    fn local_changes_are_what_differs_from_the_last_shared_state() {
        let local: BTreeMap<_, _> = [("server:a", "1"), ("server:b", "2"), ("stream:s", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let synced: BTreeMap<_, _> = [
            ("server:a", (1, Some("1"))),
            ("server:b", (2, Some("old"))),
            ("server:gone", (3, Some("x"))),
            ("user:was-deleted", (4, None)),
        ]
        .into_iter()
        .map(|(k, (v, b))| (k.to_string(), (v, b.map(str::to_string))))
        .collect();
        let changed = local_changes(&local, &synced);
        assert_eq!(
            changed,
            vec![
                ("server:b".to_string(), Some("2".to_string())),
                ("stream:s".to_string(), Some("3".to_string())),
                ("server:gone".to_string(), None),
            ]
        );
    }
}
