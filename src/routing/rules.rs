//! The rules of selection, on plain values, in one place: which mounts a
//! listener may be sent to and in which tier, where a distance ring ends,
//! and how two mounts of one ring compare. `select::choose` (the redirect)
//! and `select::rank` (HEAD, playlists, explain, the dashboard) both decide
//! with these functions and nothing else, and `routes` lays out its index
//! with them; a new rule is written here once.

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::domain::Policy;

/// Relays within this factor of the nearest distance count as equally near…
pub const BAND_FACTOR: f64 = 1.25;
/// …or within this many kilometres of it, whichever is wider.
pub const BAND_KM: f64 = 300.0;

const EARTH_R: f64 = 6371.0088;

/// Where the client stands, beyond its location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    /// The request came over HTTPS.
    pub https: bool,
}

impl Want {
    /// Every kind of listener, for indexes laid out per kind.
    pub const ALL: [Want; 2] = [Want { https: false }, Want { https: true }];

    /// Position in [`Want::ALL`].
    pub fn index(self) -> usize {
        usize::from(self.https)
    }
}

/// Why a mount cannot take this listener now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// The stream may not be heard where the client is.
    GeoBlocked,
    /// The server is disabled: it gets no new listeners (draining).
    Drained,
    /// The server is down or not polled yet.
    Down,
    /// The relay's last poll did not list the mount.
    NotListed,
    /// An HTTPS listener and the stream requires HTTPS: no `https_url`.
    HttpsRequired,
    /// No free slot after reservations.
    Full,
    /// The relay's bandwidth budget (`max_mbps`) is used up.
    OverBudget,
    /// The relay cannot serve the client's address family (`ip_versions`).
    IpVersion,
    /// The relay serves only some networks (`only_asns`, `only_prefixes`),
    /// not the client's.
    OtherNetwork,
}

impl Excluded {
    /// What the admin pages say, in an operator's words.
    pub fn words(self) -> &'static str {
        match self {
            Excluded::GeoBlocked => "the stream may not be heard in the client's country",
            Excluded::Drained => "relay draining: no new listeners",
            Excluded::Down => "relay down or not polled yet",
            Excluded::NotListed => {
                "source offline, or a hidden mount? (the relay does not list it; a hidden \
                 mount is balanced only on a relay with callbacks and a configured limit)"
            }
            Excluded::HttpsRequired => "no https_url, and the stream requires HTTPS",
            Excluded::Full => "full",
            Excluded::OverBudget => "full: its bandwidth budget (max_mbps) is used up",
            Excluded::IpVersion => "the relay cannot reach the client's IP version",
            Excluded::OtherNetwork => "the relay serves only other networks",
        }
    }

    /// The API's stable text.
    pub fn reason(self) -> &'static str {
        match self {
            Excluded::GeoBlocked => "the stream may not be heard in the client's country",
            Excluded::Drained => "server disabled (draining)",
            Excluded::Down => "server down or not yet polled",
            Excluded::NotListed => "mount not listed by the last poll",
            Excluded::HttpsRequired => "no https_url, and the stream requires HTTPS",
            Excluded::Full => "no free slot",
            Excluded::OverBudget => "bandwidth budget used up",
            Excluded::IpVersion => "ip_versions excludes the client's address family",
            Excluded::OtherNetwork => "only_asns/only_prefixes exclude the client",
        }
    }
}

/// Whether a mount can take listeners at all until the next rebuild.
pub fn serving(live: bool, enabled: bool, up: bool) -> bool {
    static_exclusion(live, enabled, up).is_none()
}

/// The exclusion that holds until the next rebuild, if any.
pub fn static_exclusion(live: bool, enabled: bool, up: bool) -> Option<Excluded> {
    if !enabled {
        Some(Excluded::Drained)
    } else if !up {
        Some(Excluded::Down)
    } else if !live {
        Some(Excluded::NotListed)
    } else {
        None
    }
}

/// Why a relay cannot take this client whatever its load: the client's
/// address family (`ip_versions`) or network (`only_asns`,
/// `only_prefixes`). A client of unknown address (the admin's view) is
/// not judged.
pub fn client_exclusion(p: &Policy, ip: Option<IpAddr>, asn: Option<u32>) -> Option<Excluded> {
    let ip = ip?;
    if !p.ip_versions.admits(ip) {
        Some(Excluded::IpVersion)
    } else if !p.network_admits(ip, asn) {
        Some(Excluded::OtherNetwork)
    } else {
        None
    }
}

/// Whether the client's AS is one the relay prefers (`asns`).
pub fn same_as(p: &Policy, asn: Option<u32>) -> bool {
    asn.is_some_and(|a| p.asns.binary_search(&a).is_ok())
}

/// The HTTPS tier of a relay for this listener (lower is offered first), or
/// `None` when it may not be offered at all. An HTTPS listener is offered
/// relays with an `https_url` first, and only those when the stream
/// requires HTTPS; a plain listener sees one tier.
pub fn tier(has_https_url: bool, require_https: bool, want: Want) -> Option<u8> {
    match (want.https, has_https_url, require_https) {
        (false, _, _) | (true, true, _) => Some(0),
        (true, false, false) => Some(1),
        (true, false, true) => None,
    }
}

/// Where the ring opened by a relay `d` km away ends.
pub fn band_limit(d: f64) -> f64 {
    (d * BAND_FACTOR).max(d + BAND_KM)
}

/// The squared chord between two unit vectors: grows with the distance,
/// so rings are drawn on it without a square root per relay.
#[inline]
pub fn chord2([x, y, z]: [f64; 3], [a, b, c]: [f64; 3]) -> f64 {
    (x - a) * (x - a) + (y - b) * (y - b) + (z - c) * (z - c)
}

/// Great-circle kilometres of a squared chord between unit vectors.
pub fn chord2_to_km(c2: f64) -> f64 {
    2.0 * EARTH_R * (c2.sqrt() / 2.0).min(1.0).asin()
}

fn km_to_chord2(km: f64) -> f64 {
    let half = (km / (2.0 * EARTH_R)).min(std::f64::consts::FRAC_PI_2);
    let c = 2.0 * half.sin();
    // A hair wider than exact, so a relay exactly at the bound stays in.
    c * c * (1.0 + 1e-12) + 1e-15
}

/// The squared chord up to which relays share the ring opened by a relay
/// at squared chord `opened_by`. Selection compares squared chords (no
/// square root or arcsine per relay), so both paths draw rings with this.
pub fn ring_end(opened_by: f64) -> f64 {
    km_to_chord2(band_limit(chord2_to_km(opened_by)))
}

/// Where a mount's capacity comes from, for [`Fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityFrom {
    /// The mount's limit (the relay's or the operator's).
    Mount,
    /// Only the server-wide cap is known: the server's listeners count.
    Server,
    /// Nobody knows the limit: the mean of the stream's known limits.
    FairShare,
}

/// How full a mount would be with this listener: `used` of `capacity`
/// (this listener included), scaled by the relay's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub used: u64,
    pub capacity: u64,
    pub weight: u32,
    pub from: CapacityFrom,
}

impl Fill {
    /// Lower is better: `used / (capacity × weight)`, compared exactly
    /// (cross-multiplied), so equal fractions are ties.
    pub fn cmp_fill(&self, o: &Fill) -> Ordering {
        let room = |f: &Fill| u128::from(f.capacity.max(1)) * u128::from(f.weight.max(1));
        (u128::from(self.used) * room(o)).cmp(&(u128::from(o.used) * room(self)))
    }

    /// The share in use with this listener, in percent of the capacity.
    pub fn percent(&self) -> f64 {
        self.used as f64 * 100.0 / self.capacity.max(1) as f64
    }

    /// [`Fill::percent`] per 100 of weight: what the rule compares.
    pub fn weighted_percent(&self) -> f64 {
        self.percent() * 100.0 / f64::from(self.weight.max(1))
    }
}

/// How a candidate compares with the others of its ring (rule 3): the
/// least full for its weight, then the client's country. What is still
/// equal is left to chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub fill: Fill,
    /// The relay is in the client's country.
    pub local: bool,
}

impl Standing {
    /// `Less` when `self` goes first.
    pub fn cmp_standing(&self, o: &Standing) -> Ordering {
        self.fill.cmp_fill(&o.fill).then(o.local.cmp(&self.local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(used: u64, capacity: u64, weight: u32) -> Fill {
        Fill {
            used,
            capacity,
            weight,
            from: CapacityFrom::Mount,
        }
    }

    #[test]
    fn fill_compares_exact_fractions() {
        // 1 of 2 and 2 of 4 at the same weight are a tie, not an order.
        assert_eq!(fill(1, 2, 100).cmp_fill(&fill(2, 4, 100)), Ordering::Equal);
        // Weight 150 with 10 of 10 beats weight 100 with 9 of 10.
        assert_eq!(
            fill(10, 10, 150).cmp_fill(&fill(9, 10, 100)),
            Ordering::Less
        );
        assert!((fill(10, 10, 150).weighted_percent() - 66.666).abs() < 0.01);
    }

    #[test]
    fn tiers() {
        let https = Want { https: true };
        assert_eq!(tier(false, true, Want::default()), Some(0));
        assert_eq!(tier(true, false, https), Some(0));
        assert_eq!(tier(false, false, https), Some(1));
        assert_eq!(tier(false, true, https), None);
    }

    #[test]
    fn ring_end_is_the_band_in_chords() {
        let km = 424.0;
        let end = chord2_to_km(ring_end(km_to_chord2(km)));
        assert!((end - 724.0).abs() < 1e-6, "{end}");
    }
}
