//! GeoIP: where a client (or a relay) is.
//!
//! Reads MaxMind DB (`.mmdb`) files with the `maxminddb` crate into memory.
//! Not memory-mapped: `cp new.mmdb city.mmdb` overwrites the file in place,
//! and a mapping of a file that shrinks under it kills the process with
//! SIGBUS. A copy costs the file's size in heap (a City database: 60-100
//! MB) and is immune to whatever happens to the file. Only regular files
//! are opened, without blocking (a FIFO in its place must not stall the
//! reload). Callers on the async runtime load in `spawn_blocking`: reading
//! 100 MB takes a while. Two record shapes
//! are in use and both are detected when the file is opened:
//! - the MaxMind schema (GeoLite2/GeoIP2 City and Country, DB-IP Lite in
//!   MaxMind format): `country.iso_code`, `location.latitude/longitude`,
//!   `continent.code`;
//! - the flat ip-location-db schema: `country_code`, `latitude`,
//!   `longitude` at the top level, the coordinates as numbers or strings.
//!
//! The same reader, opened for ASNs (`--asn-db`), reads the
//! `autonomous_system_number` of GeoLite2-ASN and of the ip-location-db
//! (DB-IP, IPtoASN…) ASN files, whose records have the same key.
//!
//! The reader sits in an `ArcSwapOption`, so the redirect path looks up
//! without a lock while a background task (file changed) or SIGHUP swaps in
//! a new file. A new file that cannot be read leaves the old one in place.
//! Without a database every lookup is "unknown" and selection is by load
//! alone.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use maxminddb::{LookupResult, PathElement, Reader};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use crate::domain::sync::lock;
use crate::domain::{ClientGeo, Coords, CountryCode};

/// How many records to inspect when telling the schemas apart. The first
/// records of real databases carry data; a file without a recognisable
/// record in this many is not a location database.
const PROBE_RECORDS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `country.iso_code`, `location.latitude` … (MaxMind, DB-IP Lite).
    MaxMind,
    /// `country_code`, `latitude`, `longitude` (ip-location-db).
    Flat,
    /// `autonomous_system_number` (GeoLite2-ASN, ip-location-db ASN).
    Asn,
}

/// What a database file is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Where clients are (`--geoip`).
    Location,
    /// Which autonomous system a client is in (`--asn-db`).
    Asn,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Location => "GeoIP database",
            Kind::Asn => "ASN database",
        }
    }
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::MaxMind => "MaxMind City/Country",
            Schema::Flat => "ip-location-db",
            Schema::Asn => "ASN",
        }
    }
}

/// What the admin and the log say about the database in use.
#[derive(Debug, Clone)]
pub struct DatabaseInfo {
    pub path: PathBuf,
    pub database_type: String,
    pub schema: Schema,
    pub ip_version: u16,
    /// Seconds since the epoch, from the file's metadata.
    pub build_epoch: u64,
}

impl fmt::Display for DatabaseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built = time::OffsetDateTime::from_unix_timestamp(self.build_epoch as i64)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!("[year]-[month]-[day]"))
                    .ok()
            })
            .unwrap_or_else(|| "?".into());
        write!(
            f,
            "{} ({}, {} schema, IPv{}, built {built})",
            self.path.display(),
            self.database_type,
            self.schema.as_str(),
            self.ip_version
        )
    }
}

/// A lookup with the details the explain page shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Located {
    pub geo: ClientGeo,
    /// `continent.code` of the MaxMind schema, when present.
    pub continent: Option<String>,
    /// The database network the address fell into, e.g. `81.0.0.0/16`.
    pub network: Option<String>,
}

/// Identity of the file on disk, to notice a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// A rename over the file changes the inode even when size and mtime
    /// happen to match.
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

struct Database {
    reader: Reader<Vec<u8>>,
    info: DatabaseInfo,
}

/// Result of a reload attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// No database configured, or the file is as it was.
    Unchanged,
    Reloaded,
    /// The file changed but could not be used; the old data stays (logged).
    Failed,
}

/// Largest GeoIP file loaded unless configured otherwise: a City database
/// is about 70 MB, so this leaves room for growth and richer editions
/// while a wrong file (or a sparse 30 GB one) is refused before any of it
/// is read into memory.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

pub struct Geo {
    kind: Kind,
    path: Option<PathBuf>,
    /// Larger files are refused before they are read.
    max_bytes: u64,
    current: ArcSwapOption<Database>,
    /// The file state last acted on, loaded or rejected, so a broken file
    /// is reported once rather than at every check.
    seen: Mutex<Option<Stamp>>,
}

impl fmt::Debug for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Geo")
            .field("database", &self.info())
            .finish()
    }
}

impl Geo {
    /// Opens the configured database; a file that cannot be used is an
    /// error naming it, never a silent start without GeoIP.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Geo> {
        Geo::open_limited(path, DEFAULT_MAX_BYTES)
    }

    /// Like [`Geo::open`], refusing files larger than `max_bytes` (at
    /// start and at every reload).
    pub fn open_limited(path: Option<&Path>, max_bytes: u64) -> anyhow::Result<Geo> {
        Geo::open_kind(Kind::Location, path, max_bytes)
    }

    /// Opens a database for `kind`; a file without records of that kind
    /// is refused.
    pub fn open_kind(kind: Kind, path: Option<&Path>, max_bytes: u64) -> anyhow::Result<Geo> {
        let geo = Geo {
            kind,
            path: path.map(Path::to_path_buf),
            max_bytes,
            current: ArcSwapOption::empty(),
            seen: Mutex::new(None),
        };
        let label = kind.label();
        if let Some(path) = path {
            let (db, st) = load(path, max_bytes, kind)
                .with_context(|| format!("cannot use {label} {}", path.display()))?;
            tracing::info!(database = %db.info, "{label} loaded");
            *lock(&geo.seen) = Some(st);
            geo.current.store(Some(Arc::new(db)));
        } else if kind == Kind::Location {
            tracing::info!("no GeoIP database configured: relays are chosen by load alone");
        }
        Ok(geo)
    }

    /// The autonomous system of `ip`, from an ASN database. Lock-free and
    /// allocation-free, like [`Geo::lookup`].
    pub fn asn(&self, ip: IpAddr) -> Option<u32> {
        let guard = self.current.load();
        let db = guard
            .as_deref()
            .filter(|db| db.info.schema == Schema::Asn)?;
        let r = db.reader.lookup(ip.to_canonical()).ok()?;
        let rec: AsnRecord = r.decode().ok()??;
        rec.autonomous_system_number
            .and_then(|n| n.0)
            .filter(|&n| n > 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0)
            .map(|n| n as u32)
    }

    pub fn is_configured(&self) -> bool {
        self.path.is_some()
    }

    pub fn info(&self) -> Option<DatabaseInfo> {
        self.current.load().as_ref().map(|db| db.info.clone())
    }

    /// Where `ip` is, as far as the database knows. Lock-free and, for
    /// well-formed records, allocation-free: this is on the redirect path.
    pub fn lookup(&self, ip: IpAddr) -> ClientGeo {
        let guard = self.current.load();
        let Some(db) = guard.as_deref() else {
            return ClientGeo::default();
        };
        match db.reader.lookup(ip.to_canonical()) {
            Ok(r) => decode(&r, db.info.schema).map_or_else(ClientGeo::default, |(g, _)| g),
            Err(_) => ClientGeo::default(),
        }
    }

    /// Like `lookup`, with the continent and the matched network.
    pub fn locate(&self, ip: IpAddr) -> Located {
        let guard = self.current.load();
        let Some(db) = guard.as_deref() else {
            return Located::default();
        };
        let Ok(r) = db.reader.lookup(ip.to_canonical()) else {
            return Located::default();
        };
        let network = r.network().ok().filter(|_| r.has_data());
        match decode(&r, db.info.schema) {
            Some((geo, continent)) => Located {
                geo,
                continent: continent.map(str::to_string),
                network: network.map(|n| n.to_string()),
            },
            None => Located {
                network: network.map(|n| n.to_string()),
                ..Located::default()
            },
        }
    }

    /// Reopens the file if it changed on disk since it was last looked at.
    pub fn reload_if_changed(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let now = stamp(path).ok();
        let mut seen = lock(&self.seen);
        if now == *seen {
            return Reload::Unchanged;
        }
        *seen = now;
        if now.is_none() {
            tracing::warn!(
                path = %path.display(),
                "{} file is gone; keeping the data loaded before",
                self.kind.label()
            );
            return Reload::Failed;
        }
        self.swap_in(path, &mut seen)
    }

    /// Reopens the file whether or not it looks changed (SIGHUP).
    pub fn reload(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let mut seen = lock(&self.seen);
        *seen = stamp(path).ok();
        self.swap_in(path, &mut seen)
    }

    fn swap_in(&self, path: &Path, seen: &mut Option<Stamp>) -> Reload {
        let label = self.kind.label();
        match load(path, self.max_bytes, self.kind) {
            Ok((db, st)) => {
                tracing::info!(database = %db.info, "{label} reloaded");
                *seen = Some(st);
                self.current.store(Some(Arc::new(db)));
                Reload::Reloaded
            }
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = format!("{e:#}"),
                    "cannot reload the {label}; keeping the data loaded before"
                );
                Reload::Failed
            }
        }
    }
}

fn load(path: &Path, max_bytes: u64, kind: Kind) -> anyhow::Result<(Database, Stamp)> {
    // Stat first: if the file is replaced while we read it, the next check
    // sees a newer stamp and loads again.
    let st = stamp(path)?;
    let reader = Reader::from_source(read_regular_file(path, max_bytes)?)?;
    let schema = match kind {
        Kind::Location => detect(&reader)?,
        Kind::Asn => detect_asn(&reader)?,
    };
    let meta = reader.metadata();
    let info = DatabaseInfo {
        path: path.to_path_buf(),
        database_type: meta.database_type.clone(),
        schema,
        ip_version: meta.ip_version,
        build_epoch: meta.build_epoch,
    };
    Ok((Database { reader, info }, st))
}

/// The whole file, if it is a regular file of at most `max_bytes`. Opened
/// non-blocking so that a FIFO or device put in its place is refused at
/// once instead of waiting for a writer. The size is checked before
/// anything is read (and the read stops there, should the file grow
/// meanwhile), and the buffer is reserved fallibly: a file too large for
/// memory is an error, not an abort.
fn read_regular_file(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        anyhow::bail!("not a regular file (a FIFO, device or directory)");
    }
    let too_large = |len: u64| {
        anyhow::anyhow!(
            "the file is {} MiB, more than the limit of {} MiB (--geoip-max-mb)",
            len.div_ceil(1 << 20),
            max_bytes >> 20
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(usize::try_from(meta.len())?)
        .map_err(|e| anyhow::anyhow!("cannot allocate {} bytes: {e}", meta.len()))?;
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn has<S: AsRef<[u8]>>(r: &LookupResult<'_, S>, path: &[PathElement<'_>]) -> bool {
    matches!(r.decode_path::<IgnoredAny>(path), Ok(Some(_)))
}

fn detect(reader: &Reader<Vec<u8>>) -> anyhow::Result<Schema> {
    use PathElement::Key;
    for item in reader.networks(Default::default())?.take(PROBE_RECORDS) {
        let r = item?;
        if has(&r, &[Key("country"), Key("iso_code")])
            || has(&r, &[Key("location"), Key("latitude")])
        {
            return Ok(Schema::MaxMind);
        }
        if has(&r, &[Key("country_code")]) || has(&r, &[Key("latitude")]) {
            return Ok(Schema::Flat);
        }
    }
    anyhow::bail!(
        "no record has a location: expected country.iso_code / location.latitude \
         (MaxMind City or Country schema) or country_code / latitude \
         (ip-location-db schema); an ASN or ISP database cannot place clients"
    )
}

/// An ASN database has `autonomous_system_number` in its records.
fn detect_asn(reader: &Reader<Vec<u8>>) -> anyhow::Result<Schema> {
    for item in reader.networks(Default::default())?.take(PROBE_RECORDS) {
        if has(&item?, &[PathElement::Key("autonomous_system_number")]) {
            return Ok(Schema::Asn);
        }
    }
    anyhow::bail!(
        "no record has an autonomous_system_number: expected a GeoLite2-ASN or \
         ip-location-db ASN database"
    )
}

/// GeoLite2-ASN and the ip-location-db ASN files: the number (written as
/// a number, or as decimal text by some builds).
#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<Number>,
}

#[derive(Deserialize)]
struct MaxMindRecord<'a> {
    #[serde(borrow)]
    country: Option<Coded<'a>>,
    /// Where the network is registered: a fallback for records (anycast,
    /// some mobile ranges) without a `country`.
    #[serde(borrow)]
    registered_country: Option<Coded<'a>>,
    #[serde(borrow)]
    continent: Option<Coded<'a>>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Coded<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<Number>,
    longitude: Option<Number>,
}

#[derive(Deserialize)]
struct FlatRecord<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<Number>,
    longitude: Option<Number>,
}

/// A coordinate stored as a number or as decimal text (some ip-location-db
/// builds); an empty or unparsable text is "unknown".
struct Number(Option<f64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a decimal string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(Some(v)))
            }
            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Number, E> {
                Ok(Number(Some(f64::from(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number(v.trim().parse().ok()))
            }
        }
        d.deserialize_any(V)
    }
}

fn country(code: Option<&str>) -> Option<CountryCode> {
    let c = code?;
    // "ZZ" is the conventional "unknown"; checking the shape first keeps
    // the parser's error message (an allocation) off the redirect path.
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) || c.eq_ignore_ascii_case("ZZ") {
        return None;
    }
    CountryCode::parse(c).ok()
}

fn coords(lat: Option<Number>, lon: Option<Number>) -> Option<Coords> {
    let (lat, lon) = (lat?.0?, lon?.0?);
    let valid = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
    // (0, 0) is how some builds write "unknown"; no listener sits in the
    // Gulf of Guinea.
    (valid && !(lat == 0.0 && lon == 0.0)).then_some(Coords { lat, lon })
}

/// The client location and continent code of a record; `None` when the
/// database has no data for the address or the record is malformed.
fn decode<'a, S: AsRef<[u8]>>(
    r: &LookupResult<'a, S>,
    schema: Schema,
) -> Option<(ClientGeo, Option<&'a str>)> {
    match schema {
        Schema::MaxMind => {
            let rec: MaxMindRecord<'a> = r.decode().ok()??;
            let code = |c: &Option<Coded<'a>>| c.as_ref().and_then(|c| c.iso_code);
            let geo = ClientGeo {
                country: country(code(&rec.country)).or(country(code(&rec.registered_country))),
                coords: rec.location.and_then(|l| coords(l.latitude, l.longitude)),
                ..ClientGeo::default()
            };
            Some((geo, rec.continent.and_then(|c| c.code)))
        }
        Schema::Asn => None,
        Schema::Flat => {
            let rec: FlatRecord<'a> = r.decode().ok()??;
            let geo = ClientGeo {
                country: country(rec.country_code),
                coords: coords(rec.latitude, rec.longitude),
                ..ClientGeo::default()
            };
            Some((geo, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test databases the integration tests use too.
    use gen_db::{BERLIN, NEW_YORK, SYDNEY, TOKYO};
    use testkit::geoip as gen_db;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn near(g: ClientGeo, p: &gen_db::Place) -> bool {
        g.coords
            .is_some_and(|c| (c.lat - p.lat).abs() < 1e-6 && (c.lon - p.lon).abs() < 1e-6)
            && g.country.map(|c| c.to_string()).as_deref() == Some(p.country)
    }

    fn open(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (Geo, PathBuf) {
        let path = dir.path().join(name);
        gen_db::replace(&path, bytes);
        (Geo::open(Some(&path)).unwrap(), path)
    }

    fn check_world(geo: &Geo) {
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &BERLIN));
        assert!(near(geo.lookup(ip(gen_db::NEW_YORK_V4)), &NEW_YORK));
        assert!(near(geo.lookup(ip(gen_db::SYDNEY_V6)), &SYDNEY));
        assert!(near(geo.lookup(ip(gen_db::TOKYO_V6)), &TOKYO));
        // IPv4-mapped IPv6 is the IPv4 address.
        let mapped = format!("::ffff:{}", gen_db::BERLIN_V4);
        assert!(near(geo.lookup(ip(&mapped)), &BERLIN));
        assert_eq!(geo.lookup(ip(gen_db::UNKNOWN_V4)), ClientGeo::default());
        assert_eq!(geo.lookup(ip(gen_db::UNKNOWN_V6)), ClientGeo::default());
    }

    #[test]
    fn maxmind_schema() {
        let dir = tempfile::tempdir().unwrap();
        let (geo, _) = open(&dir, "city.mmdb", &gen_db::world(gen_db::Schema::MaxMind));
        assert_eq!(geo.info().unwrap().schema, Schema::MaxMind);
        check_world(&geo);
        let l = geo.locate(ip(gen_db::BERLIN_V4));
        assert_eq!(l.continent.as_deref(), Some("EU"));
        assert!(l.network.unwrap().contains('/'));
    }

    #[test]
    fn flat_schema_with_numbers_and_with_strings() {
        let dir = tempfile::tempdir().unwrap();
        for (name, schema) in [
            ("flat.mmdb", gen_db::Schema::Flat),
            ("flat-text.mmdb", gen_db::Schema::FlatText),
        ] {
            let (geo, _) = open(&dir, name, &gen_db::world(schema));
            assert_eq!(geo.info().unwrap().schema, Schema::Flat, "{name}");
            check_world(&geo);
        }
    }

    #[test]
    fn country_only_records() {
        let dir = tempfile::tempdir().unwrap();
        let (geo, _) = open(&dir, "country.mmdb", &gen_db::country_only());
        let g = geo.lookup(ip(gen_db::BERLIN_V4));
        assert_eq!(g.country.unwrap().as_str(), "DE");
        assert_eq!(g.coords, None);
    }

    #[test]
    fn ipv6_lookup_in_an_ipv4_database_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let (geo, _) = open(&dir, "v4.mmdb", &gen_db::world_v4_only());
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &BERLIN));
        assert_eq!(geo.lookup(ip(gen_db::SYDNEY_V6)), ClientGeo::default());
    }

    #[test]
    fn no_database_means_unknown() {
        let geo = Geo::open(None).unwrap();
        assert!(!geo.is_configured());
        assert_eq!(geo.lookup(ip(gen_db::BERLIN_V4)), ClientGeo::default());
        assert_eq!(geo.reload_if_changed(), Reload::Unchanged);
    }

    #[test]
    fn unreadable_file_at_start_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.mmdb");
        let e = format!("{:#}", Geo::open(Some(&missing)).unwrap_err());
        assert!(e.contains("nope.mmdb") && e.contains("No such file"), "{e}");

        let garbage = dir.path().join("garbage.mmdb");
        std::fs::write(&garbage, b"this is not a database").unwrap();
        let e = format!("{:#}", Geo::open(Some(&garbage)).unwrap_err());
        assert!(e.contains("garbage.mmdb"), "{e}");

        let asn = dir.path().join("asn.mmdb");
        gen_db::replace(&asn, &gen_db::asn_only());
        let e = format!("{:#}", Geo::open(Some(&asn)).unwrap_err());
        assert!(e.contains("no record has a location"), "{e}");
    }

    #[test]
    fn reload_picks_up_a_new_file_and_keeps_the_old_on_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let (geo, path) = open(&dir, "city.mmdb", &gen_db::world(gen_db::Schema::MaxMind));
        assert_eq!(geo.reload_if_changed(), Reload::Unchanged);

        gen_db::replace(&path, &gen_db::world_moved());
        assert_eq!(geo.reload_if_changed(), Reload::Reloaded);
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &TOKYO));
        assert_eq!(geo.reload_if_changed(), Reload::Unchanged);

        gen_db::replace(&path, b"garbage, half a download");
        assert_eq!(geo.reload_if_changed(), Reload::Failed);
        assert!(
            near(geo.lookup(ip(gen_db::BERLIN_V4)), &TOKYO),
            "old data kept"
        );
        // Reported once, not at every check.
        assert_eq!(geo.reload_if_changed(), Reload::Unchanged);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(geo.reload_if_changed(), Reload::Failed);
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &TOKYO));

        gen_db::replace(&path, &gen_db::world(gen_db::Schema::Flat));
        assert_eq!(geo.reload_if_changed(), Reload::Reloaded);
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &BERLIN));
        assert_eq!(geo.info().unwrap().schema, Schema::Flat);
    }

    fn open_asn(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (Geo, PathBuf) {
        let path = dir.path().join(name);
        gen_db::replace(&path, bytes);
        (
            Geo::open_kind(Kind::Asn, Some(&path), DEFAULT_MAX_BYTES).unwrap(),
            path,
        )
    }

    #[test]
    fn asn_databases_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        for (name, schema) in [
            ("GeoLite2-ASN.mmdb", gen_db::AsnSchema::GeoLite2),
            ("dbip-asn.mmdb", gen_db::AsnSchema::IpLocationDb),
        ] {
            let (asn, _) = open_asn(&dir, name, &gen_db::asn_world(schema));
            assert_eq!(asn.info().unwrap().schema, Schema::Asn, "{name}");
            assert_eq!(asn.asn(ip(gen_db::BERLIN_V4)), Some(gen_db::BERLIN_AS));
            assert_eq!(asn.asn(ip(gen_db::BERLIN_V6)), Some(gen_db::BERLIN_AS));
            let mapped = format!("::ffff:{}", gen_db::NEW_YORK_V4);
            assert_eq!(asn.asn(ip(&mapped)), Some(gen_db::NEW_YORK_AS));
            assert_eq!(asn.asn(ip(gen_db::TOKYO_V4)), None);
            // An ASN database places nobody.
            assert_eq!(asn.lookup(ip(gen_db::BERLIN_V4)), ClientGeo::default());
        }
    }

    #[test]
    fn a_city_database_is_no_asn_database_and_asn_reloads_like_city() {
        let dir = tempfile::tempdir().unwrap();
        let city = dir.path().join("city.mmdb");
        gen_db::replace(&city, &gen_db::world(gen_db::Schema::MaxMind));
        let e = format!(
            "{:#}",
            Geo::open_kind(Kind::Asn, Some(&city), DEFAULT_MAX_BYTES).unwrap_err()
        );
        assert!(
            e.contains("ASN database") && e.contains("autonomous_system_number"),
            "{e}"
        );
        // Too large for the limit: refused before it is read.
        let e = format!(
            "{:#}",
            Geo::open_kind(Kind::Asn, Some(&city), 10).unwrap_err()
        );
        assert!(e.contains("limit"), "{e}");

        let (asn, path) = open_asn(&dir, "asn.mmdb", &gen_db::asn_only());
        assert_eq!(asn.asn(ip(gen_db::BERLIN_V4)), Some(64_512));
        gen_db::replace(&path, &gen_db::asn_world(gen_db::AsnSchema::GeoLite2));
        assert_eq!(asn.reload_if_changed(), Reload::Reloaded);
        assert_eq!(asn.asn(ip(gen_db::BERLIN_V4)), Some(gen_db::BERLIN_AS));
        gen_db::replace(&path, &gen_db::world(gen_db::Schema::MaxMind));
        assert_eq!(asn.reload_if_changed(), Reload::Failed);
        assert_eq!(
            asn.asn(ip(gen_db::BERLIN_V4)),
            Some(gen_db::BERLIN_AS),
            "kept"
        );
    }

    #[test]
    fn forced_reload_reopens_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let (geo, path) = open(&dir, "city.mmdb", &gen_db::world(gen_db::Schema::MaxMind));
        assert_eq!(geo.reload(), Reload::Reloaded);
        // Never truncate a mapped file in place (SIGBUS): replace it.
        gen_db::replace(&path, b"");
        assert_eq!(geo.reload(), Reload::Failed);
        assert!(near(geo.lookup(ip(gen_db::BERLIN_V4)), &BERLIN));
    }

    #[test]
    fn odd_values_are_unknown_not_errors() {
        assert_eq!(country(Some("ZZ")), None);
        assert_eq!(country(Some("A1")), None);
        assert_eq!(country(Some("de")).unwrap().as_str(), "DE");
        assert_eq!(
            coords(Some(Number(Some(0.0))), Some(Number(Some(0.0)))),
            None
        );
        assert_eq!(
            coords(Some(Number(Some(91.0))), Some(Number(Some(0.5)))),
            None
        );
        assert_eq!(coords(Some(Number(None)), Some(Number(Some(1.0)))), None);
        assert!(coords(Some(Number(Some(-33.9))), Some(Number(Some(151.2)))).is_some());
    }
}
