//! Each stream's serving mounts laid out for the redirect path, built once
//! per snapshot.
//!
//! Whether a mount can serve (live, on an enabled server that is up), which
//! HTTPS tier it is in, where its relay is and the stream's fair share all
//! change only with a rebuild; only reservations change between requests.
//! So `select::choose` reads this compact index instead of walking every
//! mount's and server's entry: a distance pass over three plain arrays, then
//! the reservation counters of the few mounts in the nearest ring.

use std::collections::HashMap;

use crate::domain::{CountryCode, Point};

use super::rules::{self, Want};

/// Serving mounts of one HTTPS tier, in the stream's mount order.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Index into `Snapshot::mounts`.
    pub mounts: Vec<u32>,
    /// The relay's country, for the same-country rules.
    pub countries: Vec<Option<CountryCode>>,
    /// The relay's unit vector, one array per axis so the distance pass is
    /// a tight loop; NaN for a relay of unknown location.
    xs: Vec<f64>,
    ys: Vec<f64>,
    zs: Vec<f64>,
    /// Positions (in this group) of relays of unknown location.
    pub unlocated: Vec<u32>,
}

impl Group {
    fn push(&mut self, mount: usize, country: Option<CountryCode>, point: Option<Point>) {
        let [x, y, z] = point.map_or([f64::NAN; 3], Point::xyz);
        if point.is_none() {
            self.unlocated.push(self.mounts.len() as u32);
        }
        self.mounts.push(mount as u32);
        self.countries.push(country);
        self.xs.push(x);
        self.ys.push(y);
        self.zs.push(z);
    }

    pub fn len(&self) -> usize {
        self.mounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Writes the squared chord from `p` to every relay into `out` (NaN
    /// for relays of unknown location). It grows with the distance, so
    /// selection compares these without a square root or an arcsine per
    /// relay; computed here over the three arrays so the loop vectorizes.
    pub fn chords_from(&self, p: Point, out: &mut Vec<f64>) {
        let p = p.xyz();
        out.clear();
        out.extend(
            self.xs
                .iter()
                .zip(&self.ys)
                .zip(&self.zs)
                .map(|((&a, &b), &c)| rules::chord2(p, [a, b, c])),
        );
    }
}

/// What the index needs of one serving mount.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    /// Index into `Snapshot::mounts`.
    pub mount: usize,
    pub country: Option<CountryCode>,
    pub point: Option<Point>,
    pub has_https_url: bool,
    /// The limit of the mount, or of its server when only that is known.
    pub limit: Option<u32>,
    /// The server's tier (1 = own relays, higher = overflow).
    pub level: u8,
    /// The ASes whose clients prefer it (`asns`).
    pub asns: &'a [u32],
}

/// The serving mounts of one server tier and HTTPS tier, with those a
/// client of a given AS prefers, which it is offered first.
#[derive(Debug, Clone, Default)]
pub struct Tier {
    /// The server tier and the HTTPS tier, the order of `Routes::tiers`.
    pub key: (u8, u8),
    pub all: Group,
    pub by_asn: HashMap<u32, Group>,
}

/// A stream's serving mounts, per kind of listener ([`Want::ALL`]) and
/// tier (the server's, then [`rules::tier`]), with the fair share of a
/// mount of unknown limit.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    tiers: [Vec<Tier>; 2],
    /// Every serving mount, in the stream's mount order.
    serving: Vec<u32>,
    pub share: u64,
}

impl Routes {
    /// `serving`: the stream's mounts that can take listeners until the
    /// next rebuild ([`rules::serving`]), in the stream's mount order.
    pub fn build<'a>(
        serving: impl IntoIterator<Item = Serving<'a>>,
        require_https: bool,
    ) -> Routes {
        let mut r = Routes::default();
        let (mut sum, mut known) = (0u64, 0u64);
        for m in serving {
            if let Some(max) = m.limit {
                sum += u64::from(max);
                known += 1;
            }
            r.serving.push(m.mount as u32);
            for want in Want::ALL {
                if let Some(t) = rules::tier(m.has_https_url, require_https, want) {
                    r.tier_mut(want, (m.level, t)).push(&m);
                }
            }
        }
        for list in &mut r.tiers {
            list.sort_by_key(|t| t.key);
        }
        r.share = sum.checked_div(known).unwrap_or(1).max(1);
        r
    }

    fn tier_mut(&mut self, want: Want, key: (u8, u8)) -> &mut Tier {
        let list = &mut self.tiers[want.index()];
        let i = match list.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                list.push(Tier {
                    key,
                    ..Tier::default()
                });
                list.len() - 1
            }
        };
        &mut list[i]
    }

    /// The tiers offered to this listener, best first.
    pub fn tiers(&self, want: Want) -> &[Tier] {
        &self.tiers[want.index()]
    }

    /// Every serving mount, whatever the listener.
    pub fn serving(&self) -> &[u32] {
        &self.serving
    }
}

impl Tier {
    fn push(&mut self, m: &Serving<'_>) {
        self.all.push(m.mount, m.country, m.point);
        for &a in m.asns {
            self.by_asn
                .entry(a)
                .or_default()
                .push(m.mount, m.country, m.point);
        }
    }
}
