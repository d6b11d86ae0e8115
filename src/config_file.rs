//! The declarative config file behind `import` and `export`.
//!
//! Import is all or nothing: every entry is parsed and cross-checked before
//! the first write, the writes run in one transaction, and any error names
//! the entry and field and leaves the database untouched. Entries create or
//! update by name and describe the whole object (an omitted optional field
//! returns to its default); servers and streams absent from the file are
//! left alone. A stream's `mounts` list, when present, is its complete set.

mod shape;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::domain::{
    MountInput, MountPath, ServerInput, ServerSpec, StreamInput, StreamSpec, TokenChange,
};
use crate::store::changes::{self, Actor, ChangeTx, MountSet, Writer};
use crate::store::{self, Pool};

/// The whole configuration: the import/export file, and the body of
/// `/api/v1/config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub servers: Vec<ServerInput>,
    #[serde(default)]
    pub streams: Vec<StreamInput>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ImportReport {
    pub servers_created: Vec<String>,
    pub servers_updated: Vec<String>,
    pub streams_created: Vec<String>,
    pub streams_updated: Vec<String>,
    pub mounts_added: Vec<String>,
    pub mounts_removed: Vec<String>,
    pub unchanged: usize,
}

impl ImportReport {
    pub fn changed(&self) -> bool {
        !(self.servers_created.is_empty()
            && self.servers_updated.is_empty()
            && self.streams_created.is_empty()
            && self.streams_updated.is_empty()
            && self.mounts_added.is_empty()
            && self.mounts_removed.is_empty())
    }
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.changed() {
            return writeln!(
                f,
                "nothing changed ({} entries already as in the file)",
                self.unchanged
            );
        }
        for (what, list) in [
            ("server created", &self.servers_created),
            ("server updated", &self.servers_updated),
            ("stream created", &self.streams_created),
            ("stream updated", &self.streams_updated),
            ("mount added", &self.mounts_added),
            ("mount removed", &self.mounts_removed),
        ] {
            for name in list {
                writeln!(f, "{what}: {name}")?;
            }
        }
        writeln!(f, "{} entries unchanged", self.unchanged)
    }
}

/// What importing or exporting a configuration file can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not TOML, or not the file's shape: every problem, each on a line
    /// starting with the file's name.
    #[error("{0}")]
    Parse(String),
    /// The file asks for something invalid; nothing was changed.
    #[error("config file rejected, nothing was changed:\n  {0}")]
    Rejected(String),
    #[error("cannot write TOML: {0}")]
    Write(#[from] toml::ser::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Store(e.into())
    }
}

pub fn parse(text: &str) -> Result<ConfigFile> {
    parse_named(text, "config file")
}

/// Parses a file called `source` in messages ("servers.toml", "standard
/// input"): a wrong key or type is reported with the entry and key, all of
/// them at once.
pub fn parse_named(text: &str, source: &str) -> Result<ConfigFile> {
    let failed = |lines: Vec<String>| {
        let lines: Vec<String> = lines.iter().map(|l| format!("{source}: {l}")).collect();
        Error::Parse(lines.join("\n"))
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| failed(vec![e.to_string()]))?;
    let problems = shape::problems(&table);
    if !problems.is_empty() {
        return Err(failed(problems));
    }
    // The shape check leaves serde nothing to refuse; its message stays
    // the fallback should the two ever part.
    toml::from_str(text).map_err(|e| failed(vec![e.to_string()]))
}

struct ParsedStream {
    spec: StreamSpec,
    mounts: Option<Vec<(String, MountPath, Option<u32>)>>,
    label: String,
}

fn entry_label(kind: &str, i: usize, name: &str) -> String {
    if name.trim().is_empty() {
        format!("{kind}[{i}]")
    } else {
        format!("{kind}[{i}] {:?}", name.trim())
    }
}

/// Checks every entry of a parsed file without applying it.
pub fn check(file: &ConfigFile) -> Result<()> {
    validate(file).map(|_| ())
}

/// Parses every entry; the error lists every problem, each with its entry.
fn validate(file: &ConfigFile) -> Result<(Vec<ServerSpec>, Vec<ParsedStream>)> {
    let mut problems = Vec::new();
    let mut servers = Vec::new();
    let mut seen = HashSet::new();
    for (i, s) in file.servers.iter().enumerate() {
        let label = entry_label("servers", i, &s.name);
        if let Err(e) = TokenChange::parse(s.callback_token.as_ref()) {
            problems.push(format!("{label}: callback_token: {e}"));
        }
        match s.parse() {
            Ok(spec) => {
                if !seen.insert(spec.name.to_string()) {
                    problems.push(format!("{label}: name: appears twice in the file"));
                }
                servers.push(spec);
            }
            Err(e) => problems.extend(e.0.iter().map(|(f, m)| format!("{label}: {f}: {m}"))),
        }
    }
    let mut streams = Vec::new();
    let mut seen = HashSet::new();
    let mut mount_owner: HashMap<(String, MountPath), String> = HashMap::new();
    for (i, s) in file.streams.iter().enumerate() {
        let label = entry_label("streams", i, &s.name);
        let spec = match s.parse() {
            Ok(spec) => spec,
            Err(e) => {
                problems.extend(e.0.iter().map(|(f, m)| format!("{label}: {f}: {m}")));
                continue;
            }
        };
        if !seen.insert(spec.name.to_string()) {
            problems.push(format!("{label}: name: appears twice in the file"));
        }
        let mounts = s.mounts.as_ref().map(|list| {
            let mut out = Vec::new();
            for (j, m) in list.iter().enumerate() {
                let mlabel = format!("{label} mounts[{j}]");
                match MountInput::parse(m) {
                    Ok(p) => {
                        let key = (p.server.to_string(), p.mount.clone());
                        if let Some(other) = mount_owner.insert(key, spec.name.to_string()) {
                            problems.push(format!(
                                "{mlabel}: mount: {} on {} is also listed under stream {other:?}",
                                p.mount, p.server
                            ));
                        }
                        out.push((p.server.to_string(), p.mount, p.max_listeners));
                    }
                    Err(e) => {
                        problems.extend(e.0.iter().map(|(f, m)| format!("{mlabel}: {f}: {m}")))
                    }
                }
            }
            out
        });
        streams.push(ParsedStream {
            spec,
            mounts,
            label,
        });
    }
    if problems.is_empty() {
        Ok((servers, streams))
    } else {
        Err(Error::Rejected(problems.join("\n  ")))
    }
}

/// Applies the file in one transaction through the write path, which
/// audits every change (actor "import").
pub async fn apply(writer: &Writer, file: &ConfigFile) -> Result<ImportReport> {
    // Checked before the write lock is taken, so a bad file waits for nobody.
    validate(file)?;
    let mut ctx = writer.begin(Actor::new("import")).await?;
    let report = apply_in(&mut ctx, file).await?;
    writer.commit(ctx).await?;
    Ok(report)
}

/// Applies the file inside a change transaction the caller commits: the
/// cluster applies shared changes this way, under the actor that made them.
pub(crate) async fn apply_in(ctx: &mut ChangeTx, file: &ConfigFile) -> Result<ImportReport> {
    let (servers, streams) = validate(file)?;
    let mut report = ImportReport::default();
    apply_servers(ctx, &servers, &mut report).await?;
    apply_tokens(ctx, file, &mut report).await?;
    let ids = apply_streams(ctx, &streams, &mut report).await?;
    apply_mounts(ctx, &streams, &ids, &mut report).await?;
    Ok(report)
}

async fn apply_servers(
    ctx: &mut ChangeTx,
    servers: &[ServerSpec],
    report: &mut ImportReport,
) -> Result<()> {
    for spec in servers {
        let name = spec.name.to_string();
        match store::servers::find_by_name(ctx.conn(), &name).await? {
            Some(row) if row.spec().ok().as_ref() == Some(spec) => report.unchanged += 1,
            Some(row) => {
                changes::update_server(ctx, row.id, spec).await?;
                report.servers_updated.push(name);
            }
            None => {
                changes::create_server(ctx, spec).await?;
                report.servers_created.push(name);
            }
        }
    }
    Ok(())
}

/// Sets or removes the callback tokens the file names (validated already);
/// a server whose only change is its token counts as updated.
async fn apply_tokens(
    ctx: &mut ChangeTx,
    file: &ConfigFile,
    report: &mut ImportReport,
) -> Result<()> {
    for s in &file.servers {
        let change = TokenChange::parse(s.callback_token.as_ref()).map_err(|e| {
            rejected(
                &format!("servers: {name}", name = s.name.trim()),
                format!("callback_token: {e}"),
            )
        })?;
        let name = s.name.trim();
        let Some(row) = store::servers::find_by_name(ctx.conn(), name).await? else {
            continue;
        };
        if changes::set_callback_token(ctx, row.id, &change).await?
            && !report.servers_created.iter().any(|n| n == name)
            && !report.servers_updated.iter().any(|n| n == name)
        {
            report.unchanged = report.unchanged.saturating_sub(1);
            report.servers_updated.push(name.to_string());
        }
    }
    Ok(())
}

/// Creates or updates each stream; returns their ids in file order.
async fn apply_streams(
    ctx: &mut ChangeTx,
    streams: &[ParsedStream],
    report: &mut ImportReport,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for p in streams {
        let name = p.spec.name.to_string();
        let id = match store::streams::find_by_name(ctx.conn(), &name).await? {
            Some(row) if row.spec().ok().as_ref() == Some(&p.spec) => {
                report.unchanged += 1;
                row.id
            }
            Some(row) => {
                changes::update_stream(ctx, row.id, &p.spec).await?;
                report.streams_updated.push(name);
                row.id
            }
            None => {
                let id = changes::create_stream(ctx, &p.spec).await?;
                report.streams_created.push(name);
                id
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

fn rejected(label: &str, what: String) -> Error {
    Error::Rejected(format!("{label}: {what}"))
}

/// The mounts a stream entry lists, by server id (servers must exist by now).
async fn wanted_mounts(ctx: &mut ChangeTx, p: &ParsedStream) -> Result<Option<MountSet>> {
    let Some(list) = &p.mounts else {
        return Ok(None);
    };
    let mut wanted = MountSet::new();
    // Server ids looked up once per server, not once per mount.
    let mut ids: HashMap<&str, i64> = HashMap::new();
    for (server, mount, _) in list {
        if let Some(&id) = ids.get(server.as_str()) {
            wanted.insert((id, mount.clone()));
            continue;
        }
        let Some(row) = store::servers::find_by_name(ctx.conn(), server).await? else {
            return Err(rejected(
                &p.label,
                format!(
                    "server: no server named {server:?} (neither in the file nor in the database)"
                ),
            ));
        };
        ids.insert(server, row.id);
        wanted.insert((row.id, mount.clone()));
    }
    Ok(Some(wanted))
}

/// Removals first, for every stream, so a mount can move between two
/// streams of the file; then the additions.
async fn apply_mounts(
    ctx: &mut ChangeTx,
    streams: &[ParsedStream],
    ids: &[i64],
    report: &mut ImportReport,
) -> Result<()> {
    let mut wanted = Vec::new();
    for (p, &id) in streams.iter().zip(ids) {
        let w = wanted_mounts(ctx, p).await?;
        if let Some(w) = &w {
            for gone in changes::remove_mounts_except(ctx, id, w).await? {
                report.mounts_removed.push(gone.label());
            }
        }
        wanted.push(w);
    }
    for ((p, &id), w) in streams.iter().zip(ids).zip(wanted) {
        let Some(w) = w else { continue };
        match changes::replace_mounts(ctx, id, &w).await {
            Ok((added, _)) => {
                report.mounts_added.extend(added.iter().map(|m| m.label()));
                apply_mount_limits(ctx, p, id).await?;
            }
            Err(store::Error::Conflict { value, .. }) => {
                return Err(rejected(
                    &p.label,
                    format!("mount: {value} already belongs to another stream"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Gives each of the stream's mounts the limit the file names (none when
/// the file names none: the file is the whole truth for its mounts).
async fn apply_mount_limits(ctx: &mut ChangeTx, p: &ParsedStream, stream_id: i64) -> Result<()> {
    let Some(list) = &p.mounts else {
        return Ok(());
    };
    let rows = store::mounts::for_stream(ctx.conn(), stream_id).await?;
    let keys = rows
        .iter()
        .map(|r| (r.id, r.server_name.as_str(), r.mount.as_str()));
    for (id, wanted) in limits_wanted(list, keys) {
        changes::set_mount_limit(ctx, id, wanted).await?;
    }
    Ok(())
}

/// For each stored mount `(id, server, mount)`, the limit the file's list
/// names for it.
fn limits_wanted<'a>(
    list: &[(String, MountPath, Option<u32>)],
    rows: impl Iterator<Item = (i64, &'a str, &'a str)>,
) -> Vec<(i64, Option<u32>)> {
    // One lookup per mount: a scan of the list per mount is quadratic,
    // and this runs under the write lock (a stream may list 300,000).
    let by_key: HashMap<(&str, &str), Option<u32>> = list
        .iter()
        .map(|(server, mount, max)| ((server.as_str(), mount.as_str()), *max))
        .collect();
    rows.map(|(id, server, mount)| (id, by_key.get(&(server, mount)).copied().flatten()))
        .collect()
}

/// The whole configuration in import format, sorted by name, without the
/// callback tokens: an export is shared and kept in places a secret should
/// not be (`export --secrets` includes them).
pub async fn export(db: &Pool) -> Result<ConfigFile> {
    export_with(db, false).await
}

/// `export`, with the callback tokens when `secrets` is set.
pub async fn export_with(db: &Pool, secrets: bool) -> Result<ConfigFile> {
    let mut conn = db.acquire().await?;
    let tokens = if secrets {
        store::servers::callback_tokens(&mut conn).await?
    } else {
        HashMap::new()
    };
    let servers = store::servers::list(&mut conn)
        .await?
        .iter()
        .map(|r| {
            r.spec().map(|s| ServerInput {
                callback_token: tokens.get(&r.id).cloned(),
                ..ServerInput::from(&s)
            })
        })
        .collect::<store::Result<Vec<_>>>()?;
    let mounts = store::mounts::list(&mut conn).await?;
    let mut streams = Vec::new();
    for row in store::streams::list(&mut conn).await? {
        let spec = row.spec()?;
        let list: Vec<MountInput> = mounts
            .iter()
            .filter(|m| m.stream_id == row.id)
            .map(|m| MountInput {
                server: m.server_name.clone(),
                mount: m.mount.clone(),
                max_listeners: m.max_listeners,
            })
            .collect();
        streams.push(StreamInput {
            description: (!spec.description.is_empty()).then(|| spec.description.clone()),
            mounts: Some(list),
            ..StreamInput::from(&spec)
        });
    }
    Ok(ConfigFile { servers, streams })
}

pub fn to_toml(file: &ConfigFile) -> Result<String> {
    Ok(toml::to_string(file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let e =
            parse("[[servers]]\nname = \"a\"\nurl = \"http://a\"\ncolour = \"red\"\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn every_bad_entry_is_named() {
        let file = parse(
            r#"
[[servers]]
name = "ok"
url = "http://ok.example.com"
[[servers]]
name = "bad"
url = "gopher://x"
latitude = 100.0
longitude = 1.0
[[servers]]
name = "ok"
url = "http://dup.example.com"
[[streams]]
name = "live"
[[streams.mounts]]
server = "ok"
mount = "no-slash"
"#,
        )
        .unwrap();
        let msg = validate(&file).err().unwrap().to_string();
        assert!(msg.contains("servers[1] \"bad\": url:"), "{msg}");
        assert!(msg.contains("servers[1] \"bad\": latitude:"), "{msg}");
        assert!(
            msg.contains("servers[2] \"ok\": name: appears twice"),
            "{msg}"
        );
        assert!(
            msg.contains("streams[0] \"live\" mounts[0]: mount:"),
            "{msg}"
        );
    }

    #[test]
    fn a_mount_in_two_streams_is_refused() {
        let file = parse(
            r#"
[[servers]]
name = "a"
url = "http://a.example.com"
[[streams]]
name = "one"
mounts = [{ server = "a", mount = "/x" }]
[[streams]]
name = "two"
mounts = [{ server = "a", mount = "/x" }]
"#,
        )
        .unwrap();
        let msg = validate(&file).err().unwrap().to_string();
        assert!(msg.contains("also listed under stream \"one\""), "{msg}");
    }

    /// Matching a stream's stored mounts to the file's is linear: eight
    /// times the mounts may take at most 24 times as long (a scan of the
    /// list per mount takes 64 times, and held the write lock for it).
    #[test]
    fn matching_limits_is_linear_in_the_mounts() {
        fn run(n: usize) -> f64 {
            let list: Vec<(String, MountPath, Option<u32>)> = (0..n)
                .map(|i| {
                    (
                        "big".to_string(),
                        MountPath::parse(&format!("/m{i}")).unwrap(),
                        Some(1),
                    )
                })
                .collect();
            let rows: Vec<(i64, String)> = (0..n).map(|i| (i as i64, format!("/m{i}"))).collect();
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let got =
                        limits_wanted(&list, rows.iter().map(|(id, m)| (*id, "big", m.as_str())));
                    assert!(got.iter().all(|(_, max)| *max == Some(1)));
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        }
        let ratio = run(32_000) / run(4_000);
        assert!(
            ratio < 24.0,
            "8 times the mounts took {ratio:.1} times as long"
        );
    }
}
