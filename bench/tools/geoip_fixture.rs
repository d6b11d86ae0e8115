//! A generated GeoIP database shaped like DB-IP City Lite (the MaxMind City
//! schema with DB-IP's fields: city, continent with code, country with
//! `is_in_european_union`, location, subdivisions), with networks of mixed
//! sizes over the whole IPv4 space and part of IPv6, and a list of client
//! addresses drawn from it: most inside located networks, some in the gaps
//! between them (unknown location), one in ten IPv6.
//!
//! ```sh
//! cargo run --release --example geoip_fixture -- --out city.mmdb --addresses clients.txt \
//!     [--networks 1000000] [--clients 1000]
//! ```
//!
//! Without `--out` it prints its usage and exits.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use mmdb_writer::Value;
use mmdb_writer::ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USAGE: &str =
    "geoip_fixture --out FILE.mmdb --addresses FILE.txt [--networks N] [--clients N]";

/// (country, continent, in the EU, rough centre).
const COUNTRIES: &[(&str, &str, bool, f64, f64)] = &[
    ("DE", "EU", true, 51.0, 10.0),
    ("FR", "EU", true, 46.5, 2.5),
    ("GB", "EU", false, 53.0, -1.5),
    ("NL", "EU", true, 52.2, 5.3),
    ("PL", "EU", true, 52.0, 19.0),
    ("US", "NA", false, 39.0, -98.0),
    ("CA", "NA", false, 50.0, -100.0),
    ("MX", "NA", false, 23.0, -102.0),
    ("BR", "SA", false, -12.0, -50.0),
    ("AR", "SA", false, -34.0, -64.0),
    ("JP", "AS", false, 36.0, 138.0),
    ("IN", "AS", false, 21.0, 78.0),
    ("CN", "AS", false, 35.0, 103.0),
    ("SG", "AS", false, 1.35, 103.8),
    ("AU", "OC", false, -25.0, 134.0),
    ("NZ", "OC", false, -41.0, 174.0),
    ("ZA", "AF", false, -29.0, 24.0),
    ("NG", "AF", false, 9.0, 8.0),
];
const PLACES: usize = 20_000;

fn en(name: &str) -> Value {
    Value::map([("en", Value::from(name))])
}

fn place(rng: &mut StdRng, n: usize) -> Value {
    let (country, continent, eu, lat, lon) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
    let lat: f64 = (lat + rng.random_range(-6.0..6.0)).clamp(-85.0, 85.0);
    let lon: f64 = lon + rng.random_range(-8.0..8.0);
    Value::map([
        ("city", Value::map([("names", en(&format!("City {n}")))])),
        (
            "continent",
            Value::map([
                ("code", Value::from(continent)),
                ("geoname_id", Value::from(6_255_148_u32)),
                ("names", en(continent)),
            ]),
        ),
        (
            "country",
            Value::map([
                ("geoname_id", Value::from(2_921_044_u32)),
                ("is_in_european_union", Value::from(eu)),
                ("iso_code", Value::from(country)),
                ("names", en(country)),
            ]),
        ),
        (
            "location",
            Value::map([
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
            ]),
        ),
        (
            "subdivisions",
            Value::array([Value::map([("names", en(&format!("Region {}", n % 97)))])]),
        ),
    ])
}

fn reserved(a: u32) -> bool {
    let ip = Ipv4Addr::from(a);
    ip.is_private() || ip.is_loopback() || ip.octets()[0] == 0 || ip.octets()[0] >= 224
}

struct Options {
    out: String,
    addresses: String,
    networks: usize,
    clients: usize,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut args = std::env::args().skip(1);
    let (mut out, mut addresses, mut networks, mut clients) = (None, None, 1_000_000, 1000);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(value()?),
            "--addresses" => addresses = Some(value()?),
            "--networks" => networks = value()?.parse().map_err(|e| format!("--networks: {e}"))?,
            "--clients" => clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    match (out, addresses) {
        (Some(out), Some(addresses)) => Ok(Some(Options {
            out,
            addresses,
            networks,
            clients,
        })),
        (None, None) => Ok(None),
        _ => Err(format!("need both --out and --addresses\n{USAGE}")),
    }
}

/// The database's bytes, one address inside each network, and addresses
/// in the gaps left between networks (unknown location).
struct Built {
    bytes: Vec<u8>,
    inside: Vec<String>,
    gaps: Vec<String>,
}

fn build(opts: &Options, rng: &mut StdRng) -> Result<Built, String> {
    let places: Vec<Value> = (0..PLACES).map(|n| place(rng, n)).collect();
    let mut w = mmdb_writer::Writer::new("DBIP-City-Lite");
    let (mut inside, mut gaps) = (Vec::new(), Vec::new());
    let v6 = opts.networks / 10;
    // IPv4: aligned blocks of /16 to /28 walked up the space, one in
    // twenty skipped and left unknown, the way ranges tile a real file.
    let mut a: u64 = 1 << 24;
    let mut placed = 0;
    while placed < opts.networks - v6 && a < (224u64 << 24) {
        let mut prefix = rng.random_range(16..=28u8);
        while !a.is_multiple_of(1u64 << (32 - prefix)) {
            prefix += 1;
        }
        let size = 1u64 << (32 - prefix);
        let base = a as u32;
        a += size;
        if reserved(base) {
            continue;
        }
        let host = base + rng.random_range(0..size as u32);
        if rng.random_range(0..20) == 0 {
            gaps.push(Ipv4Addr::from(host).to_string());
            continue;
        }
        let net = Ipv4Net::new(Ipv4Addr::from(base), prefix).map_err(|e| e.to_string())?;
        let p = places[rng.random_range(0..PLACES)].clone();
        w.insert_value(IpNet::V4(net), p)
            .map_err(|e| e.to_string())?;
        inside.push(Ipv4Addr::from(host).to_string());
        placed += 1;
    }
    for i in 0..v6 {
        let base = (0x2a00_u128 << 112) | ((i as u128) << 80);
        let net = Ipv6Net::new(Ipv6Addr::from(base), 48).map_err(|e| e.to_string())?;
        let p = places[rng.random_range(0..PLACES)].clone();
        w.insert_value(IpNet::V6(net), p)
            .map_err(|e| e.to_string())?;
        inside.push(Ipv6Addr::from(base | rng.random_range(1..u64::MAX) as u128).to_string());
    }
    let bytes = w.to_bytes().map_err(|e| e.to_string())?;
    Ok(Built {
        bytes,
        inside,
        gaps,
    })
}

/// Nine in ten clients located (one in ten of those IPv6), the rest in
/// gaps, shuffled together.
fn clients(rng: &mut StdRng, n: usize, inside: &[String], gaps: &[String]) -> Vec<String> {
    let (v4_end, located) = (inside.len() - inside.len() / 11, n - n / 10);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pick = if i >= located && !gaps.is_empty() {
            &gaps[rng.random_range(0..gaps.len())]
        } else if i % 10 == 9 && v4_end < inside.len() {
            &inside[rng.random_range(v4_end..inside.len())]
        } else {
            &inside[rng.random_range(0..v4_end.max(1))]
        };
        out.push(pick.clone());
    }
    for i in (1..out.len()).rev() {
        out.swap(i, rng.random_range(0..=i));
    }
    out
}

fn run(opts: &Options) -> Result<(), String> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(2026);
    let Built {
        bytes,
        inside,
        gaps,
    } = build(opts, &mut rng)?;
    std::fs::write(&opts.out, &bytes).map_err(|e| format!("{}: {e}", opts.out))?;
    let list = clients(&mut rng, opts.clients, &inside, &gaps);
    std::fs::write(&opts.addresses, list.join("\n") + "\n")
        .map_err(|e| format!("{}: {e}", opts.addresses))?;
    println!(
        "geoip: {} networks, {:.1} MB, {} client addresses, {:.1} s",
        inside.len(),
        bytes.len() as f64 / 1e6,
        list.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    match parse_args() {
        Ok(Some(o)) => {
            if let Err(e) = run(&o) {
                eprintln!("geoip_fixture: {e}");
                std::process::exit(1);
            }
        }
        Ok(None) => println!("usage: {USAGE}"),
        Err(e) => {
            eprintln!("geoip_fixture: {e}");
            std::process::exit(2);
        }
    }
}
