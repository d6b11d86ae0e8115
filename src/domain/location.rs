//! Where things are: coordinates, a client's known location, and the
//! distance between two points on the globe.

use std::net::IpAddr;

use super::CountryCode;

/// Where a server's coordinates came from, for the admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationSource {
    Configured,
    GeoIp,
    Unknown,
}

impl LocationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationSource::Configured => "configured",
            LocationSource::GeoIp => "geoip",
            LocationSource::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coords {
    pub lat: f64,
    pub lon: f64,
}

/// A server's location as GeoIP resolved it from its host name.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResolvedLocation {
    pub country: Option<CountryCode>,
    pub coords: Option<Coords>,
}

/// What routing knows of a client: where it is and on which network.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientGeo {
    pub country: Option<CountryCode>,
    pub coords: Option<Coords>,
    /// Its address (`None`: the admin's view of no client in particular).
    pub ip: Option<IpAddr>,
    /// Its autonomous system, from the ASN database.
    pub asn: Option<u32>,
}

/// Great-circle distance in km.
pub fn distance_km(a: Coords, b: Coords) -> f64 {
    Point::new(a).distance_km(Point::new(b))
}

/// A location as a unit vector. The snapshot keeps one per relay, so the
/// distance from a client to each of many relays costs a square root and
/// an arcsine rather than a full haversine (the trigonometry was most of
/// the selection time with 100 relays).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point([f64; 3]);

impl Point {
    pub fn new(c: Coords) -> Point {
        let (lat, lon) = (c.lat.to_radians(), c.lon.to_radians());
        Point([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
    }

    /// The unit vector's components.
    pub(crate) fn xyz(self) -> [f64; 3] {
        self.0
    }

    /// Through the chord: the same great-circle distance as the haversine
    /// formula, whose `h` is the squared half chord.
    pub fn distance_km(self, o: Point) -> f64 {
        const R: f64 = 6371.0088;
        let [x, y, z] = self.0;
        let [a, b, c] = o.0;
        let chord = ((x - a).powi(2) + (y - b).powi(2) + (z - c).powi(2)).sqrt();
        2.0 * R * (chord / 2.0).min(1.0).asin()
    }
}
