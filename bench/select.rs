//! What GeoIP proximity costs per request: a lookup in a real-size
//! database plus `select::choose` over 100 relays (`BENCH_RELAYS`), timed separately and
//! together, after a warm-up. `cargo bench --bench select`.
//!
//! The database is generated (about a million networks, like a City
//! database) so the benchmark runs anywhere; `BENCH_NETWORKS` changes the
//! size. A plain timing loop, no framework: the figures are ns per request.
#![allow(clippy::unwrap_used, reason = "a benchmark: a failure ends the run")]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use icecast_balancer::domain::ClientGeo;
use icecast_balancer::domain::CountryCode;
use icecast_balancer::domain::{Coords, LocationSource};
use icecast_balancer::domain::{Health, HealthState as State};
use icecast_balancer::geo::Geo;
use icecast_balancer::routing::reservations::Observation;
use icecast_balancer::routing::select::{self, Want};
use icecast_balancer::routing::snapshot::{
    MountCounters, MountEntry, ServerCounters, ServerEntry, Snapshot, StreamCounters, StreamEntry,
};
use mmdb_writer::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::geoip;

const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "EU"),
    ("FR", "EU"),
    ("GB", "EU"),
    ("US", "NA"),
    ("CA", "NA"),
    ("BR", "SA"),
    ("JP", "AS"),
    ("IN", "AS"),
    ("AU", "OC"),
    ("ZA", "AF"),
];
const CITIES: usize = 20_000;
const REQUESTS: usize = 1_000_000;

fn random_place(rng: &mut StdRng) -> geoip::Place {
    let (country, continent) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
    geoip::Place {
        name: "Somewhere",
        country,
        continent,
        lat: rng.random_range(-60.0..70.0),
        lon: rng.random_range(-180.0..180.0),
    }
}

/// IPv4 /24s spread over the whole space and IPv6 /48s, one in five.
fn network(i: usize, v4_step: u32) -> (String, IpAddr) {
    if i % 5 == 4 {
        let n = (i / 5) as u128;
        let base = (0x2a00_u128 << 112) | (n << 80);
        let addr = Ipv6Addr::from(base);
        (
            format!("{addr}/48"),
            IpAddr::V6(Ipv6Addr::from(base | 0x1234)),
        )
    } else {
        let n = (i - i / 5) as u32;
        let base = (n * v4_step) << 8;
        let addr = Ipv4Addr::from(base);
        (format!("{addr}/24"), IpAddr::V4(Ipv4Addr::from(base | 42)))
    }
}

fn build_database(networks: usize, rng: &mut StdRng) -> (Vec<u8>, Vec<IpAddr>) {
    let places: Vec<Value> = (0..CITIES)
        .map(|_| geoip::record(geoip::Schema::MaxMind, &random_place(rng)))
        .collect();
    let v4_networks = (networks - networks / 5).max(1) as u32;
    let v4_step = ((1u32 << 24) / v4_networks).max(1);
    let mut writer = mmdb_writer::Writer::new("Bench-City");
    let mut inside = Vec::with_capacity(networks);
    for i in 0..networks {
        let (net, addr) = network(i, v4_step);
        writer
            .insert_value(
                net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
                places[rng.random_range(0..CITIES)].clone(),
            )
            .unwrap();
        inside.push(addr);
    }
    (writer.to_bytes().unwrap(), inside)
}

fn snapshot(rng: &mut StdRng, relays: usize) -> Snapshot {
    let mut servers = Vec::new();
    let mut mounts = Vec::new();
    for i in 0..relays {
        let p = random_place(rng);
        servers.push(ServerEntry {
            id: i as i64,
            name: format!("relay-{i}"),
            url: format!("http://relay-{i}.example.com:8000"),
            https_url: None,
            country: Some(CountryCode::parse(p.country).unwrap()),
            country_source: LocationSource::Configured,
            coords: Some(Coords {
                lat: p.lat,
                lon: p.lon,
            }),
            coords_source: LocationSource::Configured,
            max_listeners: None,
            weight: 100,
            enabled: true,
            policy: Default::default(),
            bandwidth: None,
            health: Health {
                state: State::Up,
                failures: 0,
                successes: 2,
            },
            listeners: 0,
            last_poll_at: None,
            last_success_at: None,
            last_error: None,
            last_error_at: None,
            latency_ms: None,
            source: None,
            callback_token: None,
            counters: Arc::new(ServerCounters::default()),
        });
        // Unlimited mounts: a million reservations must not fill them up
        // and turn the later rounds into "everything excluded".
        mounts.push(MountEntry {
            id: i as i64,
            server: i,
            stream: 0,
            path: "/live.mp3".into(),
            live: true,
            listeners: rng.random_range(0..500),
            max: None,
            configured_max: None,
            callbacks: false,
            hidden: false,
            kbps: None,
            counters: Arc::new(MountCounters::default()),
        });
    }
    let stream = StreamEntry {
        id: 0,
        name: "live".into(),
        description: String::new(),
        fallback_url: None,
        allowed_countries: None,
        allow_unknown: true,
        require_https: false,
        bitrate_kbps: None,
        mounts: (0..relays).collect(),
        counters: Arc::new(StreamCounters::default()),
        routes: Default::default(),
    };
    Snapshot::from_parts(servers, vec![stream], mounts)
}

fn report(what: &str, n: usize, took: Duration) {
    let ns = took.as_nanos() as f64 / n as f64;
    println!("{what:<28} {ns:>9.0} ns/op  {:>12.0} ops/s", 1e9 / ns);
}

/// Runs `f` over `inputs` once to warm up, then times a second pass.
fn measure<T>(what: &str, inputs: &[T], mut f: impl FnMut(&T)) {
    for x in inputs.iter().take(inputs.len() / 10) {
        f(x);
    }
    let start = Instant::now();
    for x in inputs {
        f(x);
    }
    report(what, inputs.len(), start.elapsed());
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too,
    // so a small size unless asked for the real thing.
    let bench = std::env::args().any(|a| a == "--bench");
    let networks: usize = std::env::var("BENCH_NETWORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 10_000 });
    let requests = if bench { REQUESTS } else { 10_000 };
    let mut rng = StdRng::seed_from_u64(2026);

    let start = Instant::now();
    let (bytes, inside) = build_database(networks, &mut rng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench-city.mmdb");
    std::fs::write(&path, &bytes).unwrap();
    println!(
        "database: {networks} networks ({} IPv4 /24, {} IPv6 /48), {:.1} MB, built in {:.1} s",
        networks - networks / 5,
        networks / 5,
        bytes.len() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    drop(bytes);
    let geo = Geo::open(Some(&path)).unwrap();
    let relays: usize = std::env::var("BENCH_RELAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let snap = snapshot(&mut rng, relays);
    let stream = &snap.streams[0];
    println!("relays: {relays}, requests per measurement: {requests}");

    // Nine in ten clients are in the database, one in ten is not.
    let ips: Vec<IpAddr> = (0..requests)
        .map(|i| {
            if i % 10 == 9 {
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>() | 0xE000_0000))
            } else {
                inside[rng.random_range(0..inside.len())]
            }
        })
        .collect();
    let clients: Vec<ClientGeo> = ips.iter().map(|&ip| geo.lookup(ip)).collect();
    let located = clients.iter().filter(|c| c.coords.is_some()).count();
    println!("located clients: {located} of {requests}");

    let now_s = 1_000_000;
    let ttl = 60;
    let mut pick_rng = StdRng::seed_from_u64(7);
    measure("lookup", &ips, |&ip| {
        black_box(geo.lookup(black_box(ip)));
    });
    // Worst case: no poll within the reservation TTL, so every free-slot
    // count reads the whole TTL of one-second buckets.
    measure("choose, no recent poll", &clients, |c| {
        black_box(
            select::choose(&snap, stream, c, Want::default(), now_s, ttl, &mut pick_rng)
                .map(|r| r.commit()),
        );
    });
    // Steady state: a poll 10 s ago (5 s grace) released what it counted.
    let poll_ms = (now_s as i64 - 10) * 1000;
    let obs = Observation {
        poll_ms,
        listeners: 0,
        connections: None,
    };
    for m in &snap.mounts {
        m.counters.ledger.reconcile(obs, 5000, ttl);
    }
    for s in &snap.servers {
        s.counters.ledger.reconcile(obs, 5000, ttl);
    }
    measure("choose, polled 10 s ago", &clients, |c| {
        black_box(
            select::choose(&snap, stream, c, Want::default(), now_s, ttl, &mut pick_rng)
                .map(|r| r.commit()),
        );
    });
    let unknown = vec![ClientGeo::default(); clients.len()];
    measure("choose, unknown client", &unknown, |c| {
        black_box(
            select::choose(&snap, stream, c, Want::default(), now_s, ttl, &mut pick_rng)
                .map(|r| r.commit()),
        );
    });
    measure("lookup + choose, polled", &ips, |&ip| {
        let c = geo.lookup(black_box(ip));
        black_box(
            select::choose(
                &snap,
                stream,
                &c,
                Want::default(),
                now_s,
                ttl,
                &mut pick_rng,
            )
            .map(|r| r.commit()),
        );
    });
}
