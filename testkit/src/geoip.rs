//! GeoIP test databases, written with `mmdb-writer` in both layouts the
//! balancer reads, with a few known places in IPv4 and IPv6. Used by the
//! unit tests in `src/geo.rs`, the integration tests and `bench/select.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mmdb_writer::{IpVersion, Value, Writer};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub name: &'static str,
    pub country: &'static str,
    pub continent: &'static str,
    pub lat: f64,
    pub lon: f64,
}

pub const BERLIN: Place = Place {
    name: "Berlin",
    country: "DE",
    continent: "EU",
    lat: 52.52,
    lon: 13.405,
};
pub const FRANKFURT: Place = Place {
    name: "Frankfurt",
    country: "DE",
    continent: "EU",
    lat: 50.11,
    lon: 8.68,
};
pub const PARIS: Place = Place {
    name: "Paris",
    country: "FR",
    continent: "EU",
    lat: 48.86,
    lon: 2.35,
};
pub const NEW_YORK: Place = Place {
    name: "New York",
    country: "US",
    continent: "NA",
    lat: 40.71,
    lon: -74.01,
};
pub const SYDNEY: Place = Place {
    name: "Sydney",
    country: "AU",
    continent: "OC",
    lat: -33.87,
    lon: 151.21,
};
pub const TOKYO: Place = Place {
    name: "Tokyo",
    country: "JP",
    continent: "AS",
    lat: 35.68,
    lon: 139.69,
};

// One address inside each network of `world`.
pub const BERLIN_V4: &str = "81.10.0.1";
pub const BERLIN_V6: &str = "2a01:4f8::1";
pub const PARIS_V4: &str = "90.0.0.1";
pub const NEW_YORK_V4: &str = "12.34.0.1";
pub const NEW_YORK_V6: &str = "2600:1000::1";
pub const SYDNEY_V4: &str = "1.128.0.1";
pub const SYDNEY_V6: &str = "2400:8000::1";
pub const TOKYO_V4: &str = "126.0.0.1";
pub const TOKYO_V6: &str = "2400:4000::1";
/// Not in any test database.
pub const UNKNOWN_V4: &str = "198.51.100.1";
pub const UNKNOWN_V6: &str = "2001:db8::1";

/// The networks of `world` and where they are. Loopback is in Frankfurt,
/// so relays started on 127.0.0.1 have a GeoIP location too.
pub const NETWORKS: &[(&str, Place)] = &[
    ("81.10.0.0/16", BERLIN),
    ("2a01:4f8::/32", BERLIN),
    ("90.0.0.0/16", PARIS),
    ("12.34.0.0/16", NEW_YORK),
    ("2600:1000::/32", NEW_YORK),
    ("1.128.0.0/16", SYDNEY),
    ("2400:8000::/32", SYDNEY),
    ("126.0.0.0/16", TOKYO),
    ("2400:4000::/32", TOKYO),
    ("127.0.0.0/8", FRANKFURT),
    ("::1/128", FRANKFURT),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// GeoLite2/GeoIP2 City, DB-IP City Lite.
    MaxMind,
    /// ip-location-db, coordinates as numbers.
    Flat,
    /// ip-location-db, coordinates as decimal strings.
    FlatText,
}

fn en(name: &str) -> Value {
    Value::map([("en", Value::from(name))])
}

/// One record for `p` in `schema`, with the extra fields real files carry
/// (names, accuracy, a city string in the flat schema) so the reader has
/// to skip them.
pub fn record(schema: Schema, p: &Place) -> Value {
    match schema {
        Schema::MaxMind => Value::map([
            ("city", Value::map([("names", en(p.name))])),
            (
                "continent",
                Value::map([
                    ("code", Value::from(p.continent)),
                    ("names", en(p.continent)),
                ]),
            ),
            (
                "country",
                Value::map([
                    ("iso_code", Value::from(p.country)),
                    ("names", en(p.country)),
                ]),
            ),
            (
                "location",
                Value::map([
                    ("accuracy_radius", Value::from(20_u16)),
                    ("latitude", Value::from(p.lat)),
                    ("longitude", Value::from(p.lon)),
                    ("time_zone", Value::from("Etc/UTC")),
                ]),
            ),
        ]),
        Schema::Flat => Value::map([
            ("city", Value::from(p.name)),
            ("country_code", Value::from(p.country)),
            ("latitude", Value::from(p.lat)),
            ("longitude", Value::from(p.lon)),
        ]),
        Schema::FlatText => Value::map([
            ("city", Value::from(p.name)),
            ("country_code", Value::from(p.country)),
            ("latitude", Value::from(p.lat.to_string())),
            ("longitude", Value::from(p.lon.to_string())),
        ]),
    }
}

/// A database of `networks` in `schema`.
pub fn build(schema: Schema, networks: &[(&str, Place)]) -> Vec<u8> {
    let mut w = Writer::new(match schema {
        Schema::MaxMind => "GeoLite2-City",
        _ => "ip-location-db-city",
    });
    for (net, p) in networks {
        w.insert_value(
            net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
            record(schema, p),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// The standard test world.
pub fn world(schema: Schema) -> Vec<u8> {
    build(schema, NETWORKS)
}

/// The standard world with every place moved to Tokyo and Tokyo to Berlin:
/// a different good file for reload tests.
pub fn world_moved() -> Vec<u8> {
    let moved: Vec<(&str, Place)> = NETWORKS
        .iter()
        .map(|(n, p)| (*n, if *p == TOKYO { BERLIN } else { TOKYO }))
        .collect();
    build(Schema::MaxMind, &moved)
}

/// An IPv4-only database (ip_version 4) of the world's IPv4 networks.
pub fn world_v4_only() -> Vec<u8> {
    let mut w = Writer::builder("GeoLite2-City")
        .ip_version(IpVersion::V4)
        .build();
    for (net, p) in NETWORKS.iter().filter(|(n, _)| !n.contains(':')) {
        w.insert_value(
            net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
            record(Schema::MaxMind, p),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// A GeoLite2-Country-like database: countries, no coordinates.
pub fn country_only() -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-Country");
    for (net, p) in NETWORKS {
        w.insert_value(
            net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
            Value::map([(
                "country",
                Value::map([("iso_code", Value::from(p.country))]),
            )]),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// A valid MaxMind DB that places nobody (an ASN database).
pub fn asn_only() -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-ASN");
    w.insert_value(
        "81.10.0.0/16".parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
        Value::map([("autonomous_system_number", Value::from(64_512_u32))]),
    )
    .unwrap();
    w.to_bytes().unwrap()
}

/// Autonomous systems of the test world: Berlin's networks are in AS
/// 3320, New York's in AS 7018, the rest unknown.
pub const BERLIN_AS: u32 = 3320;
pub const NEW_YORK_AS: u32 = 7018;
pub const AS_NETWORKS: &[(&str, u32, &str)] = &[
    ("81.10.0.0/16", BERLIN_AS, "Deutsche Telekom AG"),
    ("2a01:4f8::/32", BERLIN_AS, "Deutsche Telekom AG"),
    ("12.34.0.0/16", NEW_YORK_AS, "AT&T Services, Inc."),
    ("2600:1000::/32", NEW_YORK_AS, "AT&T Services, Inc."),
];

/// The layouts of ASN databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsnSchema {
    /// GeoLite2-ASN: the number as a uint32.
    GeoLite2,
    /// ip-location-db (DB-IP ASN lite and others): the same keys; the
    /// number written as decimal text by some builds.
    IpLocationDb,
}

/// An ASN database of [`AS_NETWORKS`] in `schema`.
pub fn asn_world(schema: AsnSchema) -> Vec<u8> {
    let mut w = Writer::new(match schema {
        AsnSchema::GeoLite2 => "GeoLite2-ASN",
        AsnSchema::IpLocationDb => "ip-location-db-asn",
    });
    for (net, asn, org) in AS_NETWORKS {
        let number = match schema {
            AsnSchema::GeoLite2 => Value::from(*asn),
            AsnSchema::IpLocationDb => Value::from(asn.to_string()),
        };
        w.insert_value(
            net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
            Value::map([
                ("autonomous_system_number", number),
                ("autonomous_system_organization", Value::from(*org)),
            ]),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// Replaces `path` atomically (write aside, rename over), the way
/// geoipupdate does and the balancer expects.
pub fn replace(path: &Path, bytes: &[u8]) {
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
