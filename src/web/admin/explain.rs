//! `/admin/explain?stream=NAME&ip=ADDR`: why a listener at ADDR would be
//! sent where. It runs the same `select::rank` the redirect runs, on the
//! same snapshot, but reserves nothing, and puts into words what selection
//! saw of every mount: chosen, ranked lower (and why), or excluded (and why).
//!
//! The builder is a pure function so the wording is unit-tested; the
//! handler only parses input and renders. Mounted behind the admin login
//! (`admin::router(state, explain::router())`).

use std::net::IpAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde::Deserialize;

use super::Ctx;
use super::widgets::or_unlimited;
use crate::domain::ClientGeo;
use crate::error::{Error, Result};
use crate::geo::Located;
use crate::routing::reasons::{self, Reason};
use crate::routing::rules::{CapacityFrom, Fill};
use crate::routing::select::{self, Assessed, Want};
use crate::routing::snapshot::StreamEntry;
use crate::routing::{Routing, Snapshot};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/explain", get(page))
}

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    pub stream: Option<String>,
    pub ip: Option<String>,
    /// Any value: the listener came over HTTPS.
    pub https: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Chosen,
    RankedLower,
    Excluded,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Chosen => "chosen",
            Verdict::RankedLower => "ranked lower",
            Verdict::Excluded => "excluded",
        }
    }
}

/// One mount of the stream as selection saw it, in selection order.
#[derive(Debug, Clone)]
pub struct Row {
    pub position: usize,
    pub server: String,
    pub mount: String,
    pub distance_km: Option<f64>,
    /// `None` for excluded mounts: rings are drawn among candidates only.
    pub ring: Option<u32>,
    /// `None` means unlimited.
    pub free: Option<u64>,
    pub reserved: u64,
    pub weight: u32,
    pub health: &'static str,
    pub same_country: bool,
    /// Where the relay's coordinates came from (configured, geoip, unknown).
    pub located_by: &'static str,
    pub verdict: Verdict,
    /// What routing says decided this place, in words.
    pub reason: String,
}

impl Row {
    pub fn distance_text(&self) -> String {
        self.distance_km
            .map_or_else(|| "unknown".into(), |d| format!("{d:.0} km"))
    }
    pub fn ring_text(&self) -> String {
        self.ring.map_or_else(|| "–".into(), |r| r.to_string())
    }
    pub fn free_text(&self) -> String {
        or_unlimited(self.free)
    }
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub stream: String,
    pub ip: IpAddr,
    pub located: Located,
    /// The GeoIP database in use, `None` when none is configured.
    pub database: Option<String>,
    /// The listener came over HTTPS (as asked on the form).
    pub https: bool,
    /// How the choice is made for this client, in a sentence.
    pub method: String,
    /// `None` when the stream lets this client in; else the 451's reason.
    pub forbidden: Option<String>,
    pub rows: Vec<Row>,
}

impl Explanation {
    pub fn country_text(&self) -> String {
        self.located
            .geo
            .country
            .map_or_else(|| "unknown".into(), |c| c.to_string())
    }
    pub fn coords_text(&self) -> String {
        self.located.geo.coords.map_or_else(
            || "unknown".into(),
            |c| format!("{:.4}, {:.4}", c.lat, c.lon),
        )
    }
    pub fn asn_text(&self) -> String {
        self.located.geo.asn.map_or_else(
            || "unknown (no --asn-db, or not in it)".into(),
            |a| format!("AS{a}"),
        )
    }
    pub fn chosen(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.verdict == Verdict::Chosen)
    }
}

/// Who is asking, as the explain page was told.
pub struct Asker {
    pub ip: IpAddr,
    pub located: Located,
    /// The GeoIP database in use, as the page names it.
    pub database: Option<String>,
    /// The listener came over HTTPS.
    pub https: bool,
}

/// What selection would do for `who` now, without reserving a slot: the
/// same `select::rank` playlists use, and the reasons routing gives. Ties
/// are broken with `rng`, so among equals the named winner is one
/// possible pick.
pub fn explain(r: &Routing, stream: &StreamEntry, who: Asker, rng: &mut impl Rng) -> Explanation {
    explain_at(&r.snap, (r.now_s, r.ttl_s), stream, who, rng)
}

/// As [`explain`], at a given (now, reservation TTL) in seconds.
fn explain_at(
    snap: &Snapshot,
    (now_s, ttl_s): (u64, u64),
    stream: &StreamEntry,
    who: Asker,
    rng: &mut impl Rng,
) -> Explanation {
    let client = who.located.geo;
    let want = Want { https: who.https };
    let ranked = select::rank(snap, stream, &client, want, now_s, ttl_s, rng);
    let why = reasons::reasons(&ranked, client.coords.is_some());
    let method = method_text(who.database.is_some(), &client, &ranked);
    let forbidden = forbidden_text(stream, &client);
    let rows = ranked
        .iter()
        .zip(why)
        .enumerate()
        .map(|(i, (a, why))| row(snap, i, a, why))
        .collect();
    Explanation {
        stream: stream.name.clone(),
        ip: who.ip,
        located: who.located,
        database: who.database,
        https: who.https,
        method,
        forbidden,
        rows,
    }
}

const WITHIN_RING: &str = "within it the relay least full for its weight wins (listeners and \
     reservations with this listener, over the limit × weight / 100), ties go to the client's \
     country, then to chance";

/// How the choice is made for this client, in a sentence or two.
fn method_text(has_database: bool, client: &ClientGeo, ranked: &[Assessed]) -> String {
    let load_only = format!("one ring for every relay: {WITHIN_RING}.");
    if !has_database {
        return format!("No GeoIP database is configured, so {load_only}");
    }
    if let Some(c) = client.coords {
        let first = ranked.first().filter(|a| a.excluded.is_none());
        return match first.and_then(|a| a.ring_end_km.zip(a.distance_km).map(|r| (a, r))) {
            Some((a, (end, _))) => {
                let nearest = ranked
                    .iter()
                    .filter(|b| b.excluded.is_none() && b.cmp_group(a).is_eq() && b.ring == 0)
                    .filter_map(|b| b.distance_km)
                    .fold(f64::INFINITY, f64::min);
                format!(
                    "By distance from {:.2}, {:.2}: the nearest relay with a free slot is \
                     {nearest:.0} km away, so ring 0 reaches {end:.0} km (the larger of ×{} and \
                     +{} km); {WITHIN_RING}.",
                    c.lat,
                    c.lon,
                    select::BAND_FACTOR,
                    select::BAND_KM
                )
            }
            None if first.is_none() => format!(
                "By distance from {:.2}, {:.2}, but no relay can take a listener now.",
                c.lat, c.lon
            ),
            None => format!(
                "By distance, but no relay with a free slot has a known location: {load_only}"
            ),
        };
    }
    match client.country {
        Some(c) => format!(
            "The client has a country ({c}) but no coordinates: relays in {c} form the first \
             ring, the others the second; {WITHIN_RING}."
        ),
        None => format!("The client's location is unknown, so {load_only}"),
    }
}

/// Why the stream answers 451 to this client, if it does.
fn forbidden_text(stream: &StreamEntry, client: &ClientGeo) -> Option<String> {
    if select::allowed(stream, client) {
        return None;
    }
    let list = stream.allowed_list();
    Some(match client.country {
        Some(c) => format!("{c} is not among the stream's countries ({list}): 451."),
        None => format!(
            "The client's country is unknown and the stream allows only {list} \
             (allow_unknown = false): 451."
        ),
    })
}

fn row(snap: &Snapshot, i: usize, a: &Assessed, why: Reason) -> Row {
    let m = &snap.mounts[a.mount];
    let s = &snap.servers[m.server];
    let verdict = match why {
        Reason::Excluded(_) => Verdict::Excluded,
        _ if i == 0 => Verdict::Chosen,
        _ => Verdict::RankedLower,
    };
    Row {
        position: i + 1,
        server: s.name.clone(),
        mount: m.path.clone(),
        distance_km: a.distance_km,
        ring: a.excluded.is_none().then_some(a.ring),
        free: a.free,
        reserved: a.reserved,
        weight: s.weight,
        health: if s.enabled {
            s.health.state.as_str()
        } else {
            "draining"
        },
        same_country: a.same_country(),
        located_by: s.coords_source.as_str(),
        verdict,
        reason: reason_text(snap, why),
    }
}

/// A reason in plain words, with the numbers that decided.
fn reason_text(snap: &Snapshot, why: Reason) -> String {
    let name = |m: usize| snap.servers[snap.mounts[m].server].name.as_str();
    match why {
        Reason::Excluded(e) => e.words().into(),
        Reason::Only => "the only relay with a free slot".into(),
        Reason::LeastFull { fill, ring_end_km } => {
            let ring = ring_end_km.map_or(String::new(), |end| {
                format!("in the nearest ring (up to {end:.0} km), ")
            });
            format!("{ring}the least full for its weight: {}", fill_text(&fill))
        }
        Reason::TieWonByCountry { fill } => format!(
            "tied on fill ({}) and won as the relay in the client's country",
            fill_text(&fill)
        ),
        Reason::TieWonByChance { fill } => format!(
            "tied on fill ({}) with another relay, picked at random among equals",
            fill_text(&fill)
        ),
        Reason::Overflow {
            tier,
            first,
            first_tier,
        } => format!(
            "overflow relay (tier {tier}): used only when every relay of tier {first_tier}, \
             such as {}, is full or cannot take this client",
            name(first)
        ),
        Reason::SameAs { fill } => format!(
            "the client's network (AS in the relay's asns) comes first; {}",
            fill_text(&fill)
        ),
        Reason::OtherAs { first } => format!(
            "not in the client's network: {} lists the client's AS in asns",
            name(first)
        ),
        Reason::HttpsPreferred { first } => format!(
            "no https_url: the listener came over HTTPS, and {} has one",
            name(first)
        ),
        Reason::Farther {
            km,
            ring,
            ring_end_km,
        } => format!(
            "farther: {km:.0} km is outside ring 0 (up to {ring_end_km:.0} km), in ring {ring}"
        ),
        Reason::LocationUnknown => {
            "the relay's location is unknown: it comes after every located relay".into()
        }
        Reason::OtherCountry => "not in the client's country".into(),
        Reason::FullerForWeight {
            fill,
            first,
            first_fill,
        } => format!(
            "fuller for its weight than {}: {}, against {}",
            name(first),
            fill_text(&fill),
            fill_text(&first_fill)
        ),
        Reason::TieLostToCountry { first } => {
            format!(
                "as full for its weight as {}, which is in the client's country",
                name(first)
            )
        }
        Reason::TieLostByChance { first } => format!(
            "as full for its weight as {}; the order among equals is random",
            name(first)
        ),
    }
}

/// `9 of 10 slots with this listener (90%)`, and for a weight other than
/// 100 what the weight makes of it: `…, weight 150 counts that as 60%`.
fn fill_text(f: &Fill) -> String {
    let of = match f.from {
        CapacityFrom::Mount => format!("{} of {} slots", f.used, f.capacity),
        CapacityFrom::Server => format!("{} of the server's {} slots", f.used, f.capacity),
        CapacityFrom::FairShare => format!(
            "{} of a fair share of {} (its limit is unknown)",
            f.used, f.capacity
        ),
    };
    let mut text = format!("{of} with this listener ({:.0}%)", f.percent());
    if f.weight != 100 {
        text += &format!(
            ", weight {} counts that as {:.0}%",
            f.weight,
            f.weighted_percent()
        );
    }
    text
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/explain.html")]
pub struct ExplainPage {
    pub ctx: Ctx,
    pub streams: Vec<String>,
    pub stream: String,
    pub ip: String,
    pub https: bool,
    /// Why the question could not be answered (bad address, no such
    /// stream), shown on the form.
    pub error: Option<String>,
    pub explanation: Option<Explanation>,
}

/// Accepts what an admin pastes: `203.0.113.7`, `2001:db8::1`,
/// `[2001:db8::1]`, with stray spaces.
fn parse_ip(raw: &str) -> Result<IpAddr> {
    let t = raw.trim();
    let bare = t
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(t);
    bare.parse().map_err(|_| {
        Error::BadRequest(format!(
            "ip: {raw:?} is not an IP address; give one such as 203.0.113.7 or 2001:db8::1"
        ))
    })
}

pub async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ExplainQuery>,
) -> Response {
    let routing = state.routing();
    let snap = &routing.snap;
    let stream = q.stream.unwrap_or_default().trim().to_string();
    let ip = q.ip.unwrap_or_default().trim().to_string();
    let https = q.https.is_some();
    let answer = if stream.is_empty() || ip.is_empty() {
        // Just the form.
        Ok(None)
    } else {
        snap.stream(&stream)
            .ok_or_else(|| Error::NotFound(format!("No stream named {stream:?}.")))
            .and_then(|entry| Ok((entry, parse_ip(&ip)?)))
            .map(|(entry, addr)| {
                let mut located = state.geo().locate(addr);
                located.geo = crate::domain::ClientGeo {
                    country: located.geo.country,
                    coords: located.geo.coords,
                    ..state.client_geo(addr)
                };
                let who = Asker {
                    ip: addr,
                    located,
                    database: state.geo().info().map(|i| i.to_string()),
                    https,
                };
                Some(explain(&routing, entry, who, &mut rand::rng()))
            })
    };
    let (status, explanation, error) = match answer {
        Ok(e) => (StatusCode::OK, e, None),
        Err(e) => (e.status(), None, Some(e.to_string())),
    };
    let page = ExplainPage {
        ctx,
        streams: snap.streams.iter().map(|s| s.name.clone()).collect(),
        stream,
        ip,
        https,
        error,
        explanation,
    };
    (status, page).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::domain::Coords;
    use crate::domain::CountryCode;
    use crate::routing::testing::{NOW, TTL, located, relay, snapshot};

    fn at(lat: f64, lon: f64, country: &str) -> Located {
        Located {
            geo: ClientGeo {
                country: Some(CountryCode::parse(country).unwrap()),
                coords: Some(Coords { lat, lon }),
                ..ClientGeo::default()
            },
            continent: Some("EU".into()),
            network: Some("81.10.0.0/16".into()),
        }
    }

    fn run(snap: &Snapshot, who: Located, db: bool) -> Explanation {
        let asker = Asker {
            ip: "81.10.0.1".parse().unwrap(),
            located: who,
            database: db.then(|| "test.mmdb".to_string()),
            https: false,
        };
        explain_at(
            snap,
            (NOW, TTL),
            &snap.streams[0],
            asker,
            &mut StdRng::seed_from_u64(7),
        )
    }

    fn row<'a>(e: &'a Explanation, server: &str) -> &'a Row {
        e.rows.iter().find(|r| r.server == server).unwrap()
    }

    #[test]
    fn every_mount_gets_a_verdict_and_a_reason() {
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 60;
        let ams = located("ams", "NL", 52.37, 4.90);
        let nyc = located("nyc", "US", 40.71, -74.0);
        let mut full = located("muc", "DE", 48.14, 11.58);
        full.listeners = 100;
        let mut down = located("ber", "DE", 52.52, 13.40);
        down.up = false;
        let nowhere = relay("nowhere", 0, Some(100));
        let s = snapshot(vec![fra, ams, nyc, full, down, nowhere]);
        let e = run(&s, at(52.52, 13.40, "DE"), true);

        assert_eq!(e.rows.len(), 6);
        assert_eq!(e.chosen().unwrap().server, "ams");
        assert!(e.chosen().unwrap().reason.contains("nearest ring"));
        assert_eq!(row(&e, "ams").position, 1);
        let fra = row(&e, "fra");
        assert_eq!(fra.verdict, Verdict::RankedLower);
        assert!(
            fra.reason
                .starts_with("fuller for its weight than ams: 61 of 100 slots"),
            "{}",
            fra.reason
        );
        assert_eq!(fra.ring, Some(0));
        let nyc = row(&e, "nyc");
        assert!(nyc.reason.starts_with("farther"), "{}", nyc.reason);
        assert_eq!(nyc.ring, Some(1));
        assert!(row(&e, "nowhere").reason.contains("location is unknown"));
        assert_eq!(row(&e, "muc").verdict, Verdict::Excluded);
        assert_eq!(row(&e, "muc").reason, "full");
        assert_eq!(row(&e, "ber").health, "down");
        assert!(row(&e, "ber").reason.contains("down"));
        assert!(e.method.contains("ring 0 reaches"), "{}", e.method);
        assert_eq!(e.forbidden, None);
        assert_eq!(e.country_text(), "DE");
        assert_eq!(row(&e, "ams").distance_text(), "576 km");
    }

    #[test]
    fn explaining_reserves_nothing() {
        let s = snapshot(vec![located("fra", "DE", 50.11, 8.68)]);
        for _ in 0..3 {
            let e = run(&s, at(52.52, 13.40, "DE"), true);
            assert_eq!(e.chosen().unwrap().reserved, 0);
        }
        assert_eq!(s.mounts[0].counters.ledger.count(NOW, TTL), 0);
    }

    #[test]
    fn unknown_client_and_no_database_are_load_only() {
        let s = snapshot(vec![relay("a", 10, Some(100)), relay("b", 50, Some(100))]);
        let e = run(&s, Located::default(), true);
        assert!(e.method.contains("location is unknown"));
        assert_eq!(e.chosen().unwrap().server, "a");
        assert!(row(&e, "b").reason.contains("fuller for its weight than a"));
        let e = run(&s, Located::default(), false);
        assert!(e.method.contains("No GeoIP database"));
        assert_eq!(e.country_text(), "unknown");
        assert_eq!(e.coords_text(), "unknown");
    }

    #[test]
    fn ties_name_the_country_rule() {
        let vie = located("vie", "AT", 48.21, 16.37);
        let bts = located("bts", "SK", 48.15, 17.11);
        let s = snapshot(vec![vie, bts]);
        let e = run(&s, at(48.18, 16.7, "SK"), true);
        assert_eq!(e.chosen().unwrap().server, "bts");
        assert!(e.chosen().unwrap().reason.contains("client's country"));
        assert!(row(&e, "vie").reason.contains("in the client's country"));
    }

    #[test]
    fn a_restricted_stream_says_451() {
        let mut s = snapshot(vec![relay("a", 0, None)]);
        s.streams[0].allowed_countries = Some(vec![CountryCode::parse("AT").unwrap()]);
        let e = run(&s, at(52.52, 13.40, "DE"), true);
        assert!(e.forbidden.as_deref().unwrap().contains("DE is not among"));
        s.streams[0].allow_unknown = false;
        let e = run(&s, Located::default(), true);
        assert!(
            e.forbidden
                .as_deref()
                .unwrap()
                .contains("allow_unknown = false")
        );
    }

    #[test]
    fn ip_input_is_forgiving_but_not_silent() {
        assert_eq!(
            parse_ip(" 203.0.113.7 ").unwrap().to_string(),
            "203.0.113.7"
        );
        assert_eq!(
            parse_ip("[2001:db8::1]").unwrap().to_string(),
            "2001:db8::1"
        );
        let e = parse_ip("example.com").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(
            e.to_string()
                .contains("\"example.com\" is not an IP address")
        );
    }

    async fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::Settings::new(dir.path().join("t.db"));
        let state = AppState::new(settings, crate::domain::Clock::system())
            .await
            .unwrap();
        let file = crate::config_file::parse(
            r#"
[[servers]]
name = "fra"
url = "http://127.0.0.1:9"
latitude = 50.11
longitude = 8.68
[[streams]]
name = "live"
mounts = [{ server = "fra", mount = "/live.mp3" }]
"#,
        )
        .unwrap();
        crate::config_file::apply(state.writer(), &file)
            .await
            .unwrap();
        state.refresh().await.unwrap();
        (state, dir)
    }

    async fn get(state: &AppState, stream: &str, ip: &str) -> (StatusCode, String) {
        let q = ExplainQuery {
            stream: Some(stream.into()),
            ip: Some(ip.into()),
            https: None,
        };
        let ctx = Ctx {
            user: "admin".into(),
            csrf: "token".into(),
            flash: None,
            flash_error: false,
            path: "/admin/explain".into(),
        };
        let resp = page(State(state.clone()), ctx, Query(q)).await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn handler_renders_and_rejects_bad_input() {
        let (state, _dir) = state().await;
        let (status, html) = get(&state, "live", "198.51.100.1").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("198.51.100.1"), "{html}");
        assert!(html.contains("/live.mp3"));
        assert!(html.contains("relay down or not polled yet"));
        assert!(html.contains("No GeoIP database"));

        // Bad input is answered inside the page, on the form.
        let (status, html) = get(&state, "nope", "198.51.100.1").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            html.contains("No stream named &#34;nope&#34;")
                || html.contains("No stream named &quot;nope&quot;"),
            "{html}"
        );
        assert!(html.contains("<h1>Explain a choice</h1>"));

        let (status, html) = get(&state, "live", "not-an-ip").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("is not an IP address"));
        assert!(html.contains("aria-invalid=\"true\""));

        // Without both inputs: the form, with the streams to pick from.
        let (_, html) = get(&state, "", "").await;
        assert!(html.contains("<form") && html.contains("live"));
    }
}
