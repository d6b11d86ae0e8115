//! GeoIP proximity over HTTP: generated databases in both schemas, fake
//! relays "placed" around the world by their configured coordinates, and
//! clients that appear from anywhere through `X-Forwarded-For` set by a
//! trusted proxy (the test client on 127.0.0.1).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::app::{ResponseExt, TestApp};
use crate::support::eventually;
use crate::support::fake_relay::FakeRelay;
use crate::support::geoip::{self, Place};
use icecast_balancer::Settings;

/// A relay of the test: where it is (configured), how full, how weighty.
struct R {
    name: &'static str,
    place: Option<Place>,
    listeners: u32,
    max: Option<u32>,
    weight: u32,
}

fn r(name: &'static str, place: Place) -> R {
    R {
        name,
        place: Some(place),
        listeners: 0,
        max: Some(100),
        weight: 100,
    }
}

const AMSTERDAM: Place = Place {
    name: "Amsterdam",
    country: "NL",
    continent: "EU",
    lat: 52.37,
    lon: 4.90,
};
const WARSAW_AT_BERLIN: Place = Place {
    name: "a Polish relay placed at Berlin",
    country: "PL",
    continent: "EU",
    lat: geoip::BERLIN.lat,
    lon: geoip::BERLIN.lon,
};
const SAO_PAULO: Place = Place {
    name: "São Paulo",
    country: "BR",
    continent: "SA",
    lat: -23.55,
    lon: -46.63,
};
const LOS_ANGELES: Place = Place {
    name: "Los Angeles",
    country: "US",
    continent: "NA",
    lat: 34.05,
    lon: -118.24,
};

struct World {
    app: TestApp,
    relays: Vec<FakeRelay>,
    /// Redirect target → relay name.
    names: HashMap<String, &'static str>,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(relays: &[R], schema: geoip::Schema, trusted: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("city.mmdb");
        geoip::replace(&db, &geoip::world(schema));
        let path = db.clone();
        let app = TestApp::spawn_with(move |s: &mut Settings| {
            s.geoip = Some(path);
            // The file watcher notices a replacement within this (2 s by
            // default).
            s.geoip_check = Duration::from_millis(100);
            if trusted {
                s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        })
        .await;
        let mut fakes = Vec::new();
        let mut names = HashMap::new();
        let mut toml = String::new();
        for rel in relays {
            let fake = FakeRelay::start(&[("/live.mp3", rel.listeners, rel.max)]).await;
            names.insert(format!("{}/live.mp3", fake.url), rel.name);
            toml.push_str(&format!(
                "[[servers]]\nname = \"{}\"\nurl = \"{}\"\nweight = {}\n",
                rel.name, fake.url, rel.weight
            ));
            if let Some(p) = rel.place {
                toml.push_str(&format!(
                    "country = \"{}\"\nlatitude = {}\nlongitude = {}\n",
                    p.country, p.lat, p.lon
                ));
            }
            fakes.push(fake);
        }
        let mounts: Vec<String> = relays
            .iter()
            .map(|rel| format!("{{ server = \"{}\", mount = \"/live.mp3\" }}", rel.name))
            .collect();
        toml.push_str(&format!(
            "[[streams]]\nname = \"live\"\ndescription = \"Live\"\nmounts = [{}]\n",
            mounts.join(", ")
        ));
        app.import(&toml).await;
        app.poll().await;
        World {
            app,
            relays: fakes,
            names,
            db,
            _dir: dir,
        }
    }

    async fn request(&self, method: reqwest::Method, path: &str, ip: &str) -> reqwest::Response {
        self.app
            .client
            .request(method, self.app.url(path))
            .header("x-forwarded-for", ip)
            .send()
            .await
            .unwrap()
    }

    /// The relay a listener at `ip` is sent to (reserving a slot).
    async fn pick(&self, ip: &str) -> &'static str {
        let r = self
            .request(reqwest::Method::GET, "/icecast_balancer/live/", ip)
            .await;
        self.names[&r.redirect_target()]
    }

    /// The relay a HEAD would name: no slot reserved, so repeatable.
    async fn peek(&self, ip: &str) -> &'static str {
        let r = self
            .request(reqwest::Method::HEAD, "/icecast_balancer/live/", ip)
            .await;
        self.names[&r.redirect_target()]
    }
}

fn continents() -> Vec<R> {
    vec![
        r("fra", geoip::FRANKFURT),
        r("nyc", geoip::NEW_YORK),
        r("syd", geoip::SYDNEY),
        r("tyo", geoip::TOKYO),
    ]
}

async fn nearest_for_every_continent(schema: geoip::Schema) {
    let w = World::start(&continents(), schema, true).await;
    for (ip, want) in [
        (geoip::BERLIN_V4, "fra"),
        (geoip::BERLIN_V6, "fra"),
        (geoip::PARIS_V4, "fra"),
        (geoip::NEW_YORK_V4, "nyc"),
        (geoip::NEW_YORK_V6, "nyc"),
        (geoip::SYDNEY_V4, "syd"),
        (geoip::SYDNEY_V6, "syd"),
        (geoip::TOKYO_V4, "tyo"),
        (geoip::TOKYO_V6, "tyo"),
        // IPv4-mapped IPv6 is the IPv4 client.
        ("::ffff:81.10.0.1", "fra"),
        ("::ffff:126.0.0.1", "tyo"),
    ] {
        assert_eq!(w.pick(ip).await, want, "{ip} with {schema:?}");
    }
}

#[tokio::test]
async fn nearest_relay_with_the_maxmind_schema() {
    nearest_for_every_continent(geoip::Schema::MaxMind).await;
}

#[tokio::test]
async fn nearest_relay_with_the_ip_location_db_schema() {
    nearest_for_every_continent(geoip::Schema::Flat).await;
    nearest_for_every_continent(geoip::Schema::FlatText).await;
}

#[tokio::test]
async fn spills_over_to_the_next_ring_when_the_nearest_is_full() {
    let mut relays = continents();
    relays[0].listeners = 98; // fra: 2 free slots
    let w = World::start(&relays, geoip::Schema::MaxMind, true).await;
    assert_eq!(w.pick(geoip::BERLIN_V4).await, "fra");
    assert_eq!(w.pick(geoip::BERLIN_V4).await, "fra");
    assert_eq!(w.pick(geoip::BERLIN_V4).await, "nyc", "fra is full now");
    // A New York listener is unaffected.
    assert_eq!(w.pick(geoip::NEW_YORK_V4).await, "nyc");
}

#[tokio::test]
async fn within_the_band_capacity_and_weight_decide() {
    // Berlin: Frankfurt ~424 km opens the band (up to 724 km); Amsterdam
    // ~577 km is in it, Paris ~878 km is not.
    let mut fra = r("fra", geoip::FRANKFURT);
    fra.listeners = 60;
    let ams = r("ams", AMSTERDAM);
    let par = r("par", geoip::PARIS);
    let w = World::start(&[fra, ams, par], geoip::Schema::MaxMind, true).await;
    for _ in 0..3 {
        assert_eq!(
            w.peek(geoip::BERLIN_V4).await,
            "ams",
            "emptier, in the band"
        );
    }
    // Paris is the nearest for a Paris client, however full Frankfurt is not.
    assert_eq!(w.peek(geoip::PARIS_V4).await, "par");

    // Amsterdam fills up beyond Frankfurt: Frankfurt, never Paris.
    w.relays[1].set_listeners("/live.mp3", 80);
    w.app.poll().await;
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "fra");

    // Weight: 20 free × 300 beats 40 free × 100.
    w.app
        .import(&format!(
            "[[servers]]\nname = \"ams\"\nurl = \"{}\"\nweight = 300\n\
             country = \"NL\"\nlatitude = 52.37\nlongitude = 4.90\n",
            w.relays[1].url
        ))
        .await;
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "ams");
}

#[tokio::test]
async fn ties_go_to_the_clients_country() {
    let w = World::start(
        &[r("pl", WARSAW_AT_BERLIN), r("de", geoip::BERLIN)],
        geoip::Schema::MaxMind,
        true,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(w.peek(geoip::BERLIN_V4).await, "de");
    }
}

#[tokio::test]
async fn unknown_addresses_are_placed_by_load_alone() {
    let mut relays = continents();
    relays[0].listeners = 90;
    relays[1].listeners = 50;
    relays[2].listeners = 10;
    relays[3].listeners = 70;
    let w = World::start(&relays, geoip::Schema::MaxMind, true).await;
    assert_eq!(w.peek(geoip::UNKNOWN_V4).await, "syd");
    assert_eq!(w.peek(geoip::UNKNOWN_V6).await, "syd");
}

#[tokio::test]
async fn forwarded_chains_from_trusted_proxies() {
    let w = World::start(&continents(), geoip::Schema::MaxMind, true).await;
    let get = |h: &'static str, v: String| {
        w.app
            .client
            .head(w.app.url("/icecast_balancer/live/"))
            .header(h, v)
            .send()
    };
    // IPv6 (Forwarded syntax is covered where it is the declared header).
    let r = get("x-forwarded-for", geoip::SYDNEY_V6.to_string())
        .await
        .unwrap();
    assert_eq!(w.names[&r.redirect_target()], "syd");
    // The right-most untrusted address: the left one may be forged.
    let r = get(
        "x-forwarded-for",
        format!("{}, {}", geoip::BERLIN_V4, geoip::TOKYO_V4),
    )
    .await
    .unwrap();
    assert_eq!(w.names[&r.redirect_target()], "tyo");
    // Trusted hops are skipped.
    let r = get(
        "x-forwarded-for",
        format!("{}, 127.0.0.1", geoip::NEW_YORK_V4),
    )
    .await
    .unwrap();
    assert_eq!(w.names[&r.redirect_target()], "nyc");
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_untrusted_peers_are_ignored() {
    // No trusted proxies: the client is the peer, 127.0.0.1, which the
    // test database puts in Frankfurt. Sydney is emptier, so a load-only
    // or header-believing choice would differ.
    let mut relays = continents();
    relays[0].listeners = 50;
    let w = World::start(&relays, geoip::Schema::MaxMind, false).await;
    for (h, v) in [
        ("x-forwarded-for", geoip::SYDNEY_V4.to_string()),
        ("forwarded", format!("for={}", geoip::SYDNEY_V4)),
    ] {
        let r = w
            .app
            .client
            .head(w.app.url("/icecast_balancer/live/"))
            .header(h, v)
            .send()
            .await
            .unwrap();
        assert_eq!(w.names[&r.redirect_target()], "fra", "{h}");
    }
}

#[tokio::test]
async fn relays_without_a_configured_location_are_placed_by_geoip() {
    // "lo" has no location configured: its host, 127.0.0.1, is in
    // Frankfurt by the test database.
    let lo = R {
        name: "lo",
        place: None,
        listeners: 50,
        max: Some(100),
        weight: 100,
    };
    let w = World::start(
        &[lo, r("nyc", geoip::NEW_YORK)],
        geoip::Schema::MaxMind,
        true,
    )
    .await;
    let status = w.app.api_status().await;
    let server = |name: &str| {
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let lo = server("lo");
    assert_eq!(lo["country"], "DE");
    assert_eq!(lo["latitude"], geoip::FRANKFURT.lat);
    assert_eq!(lo["location_source"]["country"], "geoip");
    assert_eq!(lo["location_source"]["coordinates"], "geoip");
    let nyc = server("nyc");
    assert_eq!(nyc["location_source"]["coordinates"], "configured");
    assert_eq!(nyc["location_source"]["country"], "configured");
    let snap = w.app.state.snapshot();
    assert!(
        snap.servers.iter().any(|s| s.name == "lo"
            && s.coords_source == icecast_balancer::domain::LocationSource::GeoIp)
    );
    drop(snap);

    // So a Berlin listener goes to it despite the load.
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "lo");
    assert_eq!(w.peek(geoip::NEW_YORK_V4).await, "nyc");
}

#[tokio::test]
async fn relay_location_falls_back_to_unknown_without_geoip_data() {
    // Without a database there is nothing to place a relay by.
    let fake = FakeRelay::start(&[("/live.mp3", 0, Some(10))]).await;
    let app = TestApp::spawn().await;
    app.import_one_relay(&fake.url).await;
    app.poll().await;
    let status = app.api_status().await;
    assert_eq!(
        status["servers"][0]["location_source"]["coordinates"],
        "unknown"
    );
    assert_eq!(
        status["servers"][0]["location_source"]["country"],
        "unknown"
    );
}

#[tokio::test]
async fn a_replaced_database_is_used_without_restart_and_garbage_is_not() {
    let w = World::start(&continents(), geoip::Schema::MaxMind, true).await;
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "fra");

    // The new file puts Berlin's network in Tokyo.
    geoip::replace(&w.db, &geoip::world_moved());
    let moved = eventually(Duration::from_secs(10), async || {
        w.peek(geoip::BERLIN_V4).await == "tyo"
    })
    .await;
    assert!(moved, "the new database was not picked up");

    // A broken download: the data loaded before stays.
    geoip::replace(&w.db, b"<html>502 Bad Gateway</html>");
    // What the file watcher does when it sees the change: try, and refuse
    // (it may have done so already: then the file is as last seen).
    let tried = w.app.state.reload_geoip_if_changed().await;
    assert_ne!(tried, icecast_balancer::geo::Reload::Reloaded);
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "tyo");
    assert_eq!(w.peek(geoip::TOKYO_V4).await, "fra");

    // And the next good file is picked up again.
    geoip::replace(&w.db, &geoip::world(geoip::Schema::Flat));
    let back = eventually(Duration::from_secs(10), async || {
        w.peek(geoip::BERLIN_V4).await == "fra"
    })
    .await;
    assert!(back);
}

#[tokio::test]
async fn forced_reload_as_on_sighup() {
    let w = World::start(&continents(), geoip::Schema::MaxMind, true).await;
    geoip::replace(&w.db, &geoip::world_moved());
    assert_eq!(
        w.app.state.reload_geoip().await,
        icecast_balancer::geo::Reload::Reloaded
    );
    assert_eq!(w.peek(geoip::BERLIN_V4).await, "tyo");
}

#[tokio::test]
async fn an_unreadable_database_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    std::fs::write(&path, b"not a database").unwrap();
    let mut settings = Settings::new(dir.path().join("t.db"));
    settings.listen = "127.0.0.1:0".into();
    settings.geoip = Some(path);
    let e = match icecast_balancer::Application::build(settings).await {
        Ok(_) => panic!("started with a broken GeoIP database"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("GeoLite2-City.mmdb"), "{e}");
    assert!(e.contains("GeoIP"), "{e}");
}

async fn restrict(w: &World, countries: &str, allow_unknown: bool) {
    let mounts: Vec<String> = w
        .names
        .values()
        .map(|n| format!("{{ server = \"{n}\", mount = \"/live.mp3\" }}"))
        .collect();
    w.app
        .import(&format!(
            "[[streams]]\nname = \"live\"\nallowed_countries = {countries}\n\
             allow_unknown = {allow_unknown}\nmounts = [{}]\n",
            mounts.join(", ")
        ))
        .await;
}

#[tokio::test]
async fn geo_restricted_streams_answer_451() {
    let w = World::start(&continents(), geoip::Schema::MaxMind, true).await;
    restrict(&w, "[\"DE\", \"AT\"]", true).await;

    assert_eq!(w.pick(geoip::BERLIN_V4).await, "fra");
    let r = w
        .request(
            reqwest::Method::GET,
            "/icecast_balancer/live/",
            geoip::NEW_YORK_V4,
        )
        .await;
    assert_eq!(r.status(), 451);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("not available in your country (US); it is available in AT, DE."),
        "{text}"
    );
    // Playlists are restricted alike.
    let r = w
        .request(
            reqwest::Method::GET,
            "/icecast_balancer/live.m3u",
            geoip::TOKYO_V6,
        )
        .await;
    assert_eq!(r.status(), 451);
    // Unknown locations are let in by default…
    let r = w
        .request(
            reqwest::Method::HEAD,
            "/icecast_balancer/live/",
            geoip::UNKNOWN_V4,
        )
        .await;
    assert_eq!(r.status(), 302);

    // …unless the stream says otherwise.
    restrict(&w, "[\"DE\", \"AT\"]", false).await;
    let r = w
        .request(
            reqwest::Method::GET,
            "/icecast_balancer/live/",
            geoip::UNKNOWN_V4,
        )
        .await;
    assert_eq!(r.status(), 451);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("is unknown") && text.contains(geoip::UNKNOWN_V4),
        "{text}"
    );
    assert_eq!(w.pick(geoip::BERLIN_V4).await, "fra");

    let metrics = w.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("icecast_balancer_redirects_total{stream=\"live\",outcome=\"forbidden\"} 3")
    );
}

#[tokio::test]
async fn playlists_list_five_relays_best_first_and_reserve_only_the_first() {
    // From Berlin: Frankfurt (ring 0), New York (ring 1), Tokyo, Los
    // Angeles and São Paulo (ring 2, 8,900–10,000 km), Sydney (ring 3).
    let relays = vec![
        r("syd", geoip::SYDNEY),
        r("sao", SAO_PAULO),
        r("lax", LOS_ANGELES),
        r("tyo", geoip::TOKYO),
        r("nyc", geoip::NEW_YORK),
        r("fra", geoip::FRANKFURT),
    ];
    let w = World::start(&relays, geoip::Schema::MaxMind, true).await;

    let r = w
        .request(
            reqwest::Method::GET,
            "/icecast_balancer/live.m3u",
            geoip::BERLIN_V4,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/x-mpegurl");
    let body = r.text().await.unwrap();
    let m3u: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("http"))
        .map(|u| w.names[u])
        .collect();
    assert_eq!(m3u.len(), 5, "{body}");
    assert_eq!(&m3u[..2], ["fra", "nyc"]);
    let mut far: Vec<&str> = m3u[2..].to_vec();
    far.sort();
    assert_eq!(far, ["lax", "sao", "tyo"]);

    let r = w
        .request(
            reqwest::Method::GET,
            "/icecast_balancer/live.pls",
            geoip::SYDNEY_V6,
        )
        .await;
    assert_eq!(r.headers()["content-type"], "audio/x-scpls");
    let body = r.text().await.unwrap();
    assert!(body.contains("NumberOfEntries=5"), "{body}");
    let first = body.lines().find_map(|l| l.strip_prefix("File1=")).unwrap();
    assert_eq!(w.names[first], "syd");

    // One reservation per playlist, on its first entry only.
    let status = w.app.api_status().await;
    let reserved: HashMap<String, u64> = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["reserved"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: HashMap<String, u64> = [
        ("fra", 1),
        ("syd", 1),
        ("nyc", 0),
        ("tyo", 0),
        ("lax", 0),
        ("sao", 0),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .collect();
    assert_eq!(reserved, expected);
}

#[tokio::test]
async fn explain_page_behind_the_admin_login() {
    use crate::support::admin::Browser;
    let mut relays = continents();
    relays[1].listeners = 100; // nyc full
    let w = World::start(&relays, geoip::Schema::MaxMind, true).await;

    let anonymous = w.app.get("/admin/explain?stream=live&ip=81.10.0.1").await;
    assert_eq!(anonymous.status(), 303, "login required");

    let mut b = Browser::logged_in(&w.app).await;
    let p = b
        .get(&format!(
            "/admin/explain?stream=live&ip={}",
            geoip::BERLIN_V4
        ))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    for text in [
        "52.5200, 13.4050",
        "81.10.0.0/16",
        "GeoLite2-City",
        "ring 0 reaches",
        "in the nearest ring",
        ">full<",
        "farther",
    ] {
        assert!(p.body.contains(text), "{text:?} missing");
    }
    // Explaining reserves nothing.
    let status = w.app.api_status().await;
    assert!(
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["reserved"] == 0)
    );

    let p = b.get("/admin/explain?stream=live&ip=nonsense").await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("is not an IP address"));
    let p = b.get("/admin/explain?stream=nope&ip=1.2.3.4").await;
    assert_eq!(p.status, 404);
    let p = b.get("/admin/explain").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("<form"));
}
