//! Each stream's serving mounts laid out for the redirect path, built once
//! per snapshot.
//!
//! Whether a mount can serve (live, on an enabled server that is up), which
//! HTTPS tier it is in, where its relay is and the stream's fair share all
//! change only with a rebuild; only reservations change between requests.
//! So `select::choose` reads this compact index instead of walking every
//! mount's and server's entry: a distance pass over three plain arrays, then
//! the reservation counters of the few mounts in the nearest ring.

use crate::domain::{CountryCode, Point};

use super::snapshot::{MountEntry, ServerEntry};

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
        let [x, y, z] = p.xyz();
        out.clear();
        out.extend(
            self.xs
                .iter()
                .zip(&self.ys)
                .zip(&self.zs)
                .map(|((a, b), c)| (x - a) * (x - a) + (y - b) * (y - b) + (z - c) * (z - c)),
        );
    }
}

/// A stream's serving mounts by HTTPS tier, with the fair share of a mount
/// of unknown limit (`select`'s rule 3).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Every serving mount: a plain-HTTP listener's candidates.
    pub all: Group,
    /// Those with an `https_url`: an HTTPS listener's first tier.
    pub https: Group,
    /// Those without: an HTTPS listener's second tier.
    pub plain: Group,
    pub share: u64,
}

/// Whether a mount can take listeners at all until the next rebuild.
pub fn serving(m: &MountEntry, s: &ServerEntry) -> bool {
    m.live && s.enabled && s.health.is_up()
}

impl Routes {
    pub fn build(
        mounts_of_stream: &[usize],
        mounts: &[MountEntry],
        servers: &[ServerEntry],
        point: impl Fn(usize) -> Option<Point>,
    ) -> Routes {
        let mut r = Routes::default();
        let (mut sum, mut known) = (0u64, 0u64);
        for &i in mounts_of_stream {
            let m = &mounts[i];
            let s = &servers[m.server];
            if !serving(m, s) {
                continue;
            }
            if let Some(max) = m.max.or(s.max_listeners) {
                sum += u64::from(max);
                known += 1;
            }
            let p = point(m.server);
            r.all.push(i, s.country, p);
            let tier = if s.https_url.is_some() {
                &mut r.https
            } else {
                &mut r.plain
            };
            tier.push(i, s.country, p);
        }
        r.share = sum.checked_div(known).unwrap_or(1).max(1);
        r
    }
}
