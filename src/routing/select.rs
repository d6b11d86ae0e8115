//! Choosing a relay: a pure function of (snapshot, client location, clock,
//! reservations), so every rule here is unit-tested without I/O.
//!
//! 1. A mount is a candidate when its server is enabled and up, the last
//!    poll listed it, and it has a free slot after reservations. A listener
//!    who came over HTTPS is offered relays with an `https_url` first, and
//!    only those when the stream has `require_https`.
//! 2. Candidates are grouped into distance rings around the client: the
//!    nearest candidate opens ring 0, and every candidate within
//!    `max(1.25 × d, d + 300 km)` of that distance `d` is in the same ring;
//!    the next candidate beyond opens ring 1, and so on. Without client
//!    coordinates but with a country, same-country relays form ring 0.
//!    Without any location there is one ring (load-only choice).
//! 3. Within the first ring the mount that would be least full wins:
//!    lowest `(used + 1) / (capacity × weight)`, where `used` is listeners
//!    plus reservations and `capacity` the mount's limit (or the server's
//!    when only that is known). A mount whose limit nobody knows gets the
//!    mean capacity of the known candidates as its fair share (or 1 when no
//!    limit is known at all: then the least loaded by weight wins), so it
//!    fills alongside the others and never draws every listener. Relays of
//!    equal weight thus fill evenly by fraction at any load. Equal scores
//!    prefer the client's country, then chance decides.
//! 4. The winner's slot is reserved; if a concurrent request took the last
//!    slot first, selection runs again.
//!
//! `choose` (the redirect path) reads the stream's `routes` index (one
//! distance pass, counters only for the nearest and the first ring) and
//! allocates nothing; `rank` orders every mount for the admin,
//! playlists and the explain page by the same rules.

use std::sync::atomic::Ordering;

use rand::Rng;

use crate::domain::{ClientGeo, CountryCode, Point};

use super::routes::{Group, serving};
use super::snapshot::{MountEntry, ServerEntry, Snapshot, StreamEntry};

/// Relays within this factor of the nearest distance count as equally near…
pub const BAND_FACTOR: f64 = 1.25;
/// …or within this many kilometres of it, whichever is wider.
pub const BAND_KM: f64 = 300.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    ServerDisabled,
    ServerDown,
    NotLive,
    Full,
}

impl Excluded {
    /// What the admin pages say, in an operator's words.
    pub fn words(self) -> &'static str {
        match self {
            Excluded::ServerDisabled => "relay draining: no new listeners",
            Excluded::ServerDown => "relay down or not polled yet",
            Excluded::NotLive => "source offline? (the relay does not list this mount)",
            Excluded::Full => "full",
        }
    }

    /// The API's stable text.
    pub fn reason(self) -> &'static str {
        match self {
            Excluded::ServerDisabled => "server disabled (draining)",
            Excluded::ServerDown => "server down or not yet polled",
            Excluded::NotLive => "mount not listed by the last poll",
            Excluded::Full => "no free slot",
        }
    }
}

/// What selection saw of one mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    pub mount: usize,
    /// Free slots after reservations; `None` means unlimited.
    pub free: Option<u64>,
    pub reserved: u64,
    pub excluded: Option<Excluded>,
    pub distance_km: Option<f64>,
    pub same_country: bool,
    pub ring: u32,
    pub score: u64,
}

/// Where the ring opened by a relay `d` km away ends.
pub fn band_limit(d: f64) -> f64 {
    (d * BAND_FACTOR).max(d + BAND_KM)
}

/// Free slots of `m` on `s` after reservations (`None` = unlimited).
pub fn free_slots(m: &MountEntry, s: &ServerEntry, now_s: u64, ttl_s: u64) -> (Option<u64>, u64) {
    let seen = s.last_success_at.unwrap_or(i64::MIN);
    let reserved = m.counters.ledger.count_seen(now_s, ttl_s, seen);
    let mount_free = if m.counters.shared_full_until_s.load(Ordering::Relaxed) > now_s {
        Some(0)
    } else {
        m.max
            .map(|max| u64::from(max).saturating_sub(u64::from(m.listeners) + reserved))
    };
    let server_free = s.max_listeners.map(|max| {
        u64::from(max)
            .saturating_sub(s.listeners + s.counters.ledger.count_seen(now_s, ttl_s, seen))
    });
    let free = match (mount_free, server_free) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (free, reserved)
}

/// A stream's load, summed over its serving mounts (live, on an enabled
/// server that is up); capacity and free are `None` (unlimited) as soon as
/// one serving mount is. Reservations are counted on every mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTotals {
    pub relays: usize,
    pub listeners: u64,
    pub capacity: Option<u64>,
    pub free: Option<u64>,
    pub reserved: u64,
}

impl StreamTotals {
    /// Some relay is up, enabled and has a free slot (or no limit).
    pub fn can_take_listener(&self) -> bool {
        self.relays > 0 && self.free != Some(0)
    }
}

pub fn stream_totals(
    snap: &Snapshot,
    stream: &StreamEntry,
    now_s: u64,
    ttl_s: u64,
) -> StreamTotals {
    let mut t = StreamTotals {
        relays: 0,
        listeners: 0,
        capacity: Some(0),
        free: Some(0),
        reserved: 0,
    };
    for &i in &stream.mounts {
        let m = &snap.mounts[i];
        let s = &snap.servers[m.server];
        let (free, reserved) = free_slots(m, s, now_s, ttl_s);
        t.reserved += reserved;
        if serving(m, s) {
            t.relays += 1;
            t.listeners += u64::from(m.listeners);
            t.capacity = t.capacity.zip(m.max).map(|(a, b)| a + u64::from(b));
            t.free = t.free.zip(free).map(|(a, b)| a + b);
        }
    }
    t
}

fn assess(
    snap: &Snapshot,
    idx: usize,
    client: &ClientGeo,
    client_point: Option<Point>,
    now_s: u64,
    ttl_s: u64,
    fair_share: u64,
) -> Assessed {
    let m = &snap.mounts[idx];
    let s = &snap.servers[m.server];
    let (free, reserved) = free_slots(m, s, now_s, ttl_s);
    let excluded = if !s.enabled {
        Some(Excluded::ServerDisabled)
    } else if !s.health.is_up() {
        Some(Excluded::ServerDown)
    } else if !m.live {
        Some(Excluded::NotLive)
    } else if free == Some(0) {
        Some(Excluded::Full)
    } else {
        None
    };
    let same_country = matches!((client.country, s.country), (Some(a), Some(b)) if a == b);
    let distance_km = match (client_point, snap.server_point(m.server)) {
        (Some(c), Some(sp)) => Some(c.distance_km(sp)),
        // A relay placed only by country counts as local to its country.
        (Some(_), None) if same_country => Some(0.0),
        _ => None,
    };
    let load = load_of(m, s, reserved, fair_share, now_s, ttl_s);
    Assessed {
        mount: idx,
        free,
        reserved,
        excluded,
        distance_km,
        same_country,
        ring: 0,
        score: load.score(),
    }
}

/// How full a mount would be with one more listener, as a fraction
/// `used / room` compared exactly (cross-multiplied), lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    used: u64,
    room: u64,
}

impl Load {
    fn better_than(self, o: Load) -> std::cmp::Ordering {
        (u128::from(self.used) * u128::from(o.room))
            .cmp(&(u128::from(o.used) * u128::from(self.room)))
    }

    /// A number that grows as the load shrinks, for the ordering in `rank`.
    pub fn score(self) -> u64 {
        ((u128::from(self.room) << 32) / u128::from(self.used.max(1))).min(u128::from(u64::MAX))
            as u64
    }
}

/// The capacity a mount is filled against (see rule 3), with the slot
/// the listener would take.
fn load_of(
    m: &MountEntry,
    s: &ServerEntry,
    reserved: u64,
    fair_share: u64,
    now_s: u64,
    ttl_s: u64,
) -> Load {
    let (used, capacity) = match (m.max, s.max_listeners) {
        (Some(max), _) => (u64::from(m.listeners) + reserved, u64::from(max)),
        (None, Some(max)) => (
            s.listeners
                + s.counters
                    .ledger
                    .count_seen(now_s, ttl_s, s.last_success_at.unwrap_or(i64::MIN)),
            u64::from(max),
        ),
        (None, None) => (u64::from(m.listeners) + reserved, fair_share),
    };
    Load {
        used: used + 1,
        room: capacity.max(1) * u64::from(s.weight.max(1)),
    }
}

/// Every mount of the stream, candidates first in the order they would be
/// chosen, then the excluded ones.
pub fn rank(
    snap: &Snapshot,
    stream: &StreamEntry,
    client: &ClientGeo,
    now_s: u64,
    ttl_s: u64,
    rng: &mut impl Rng,
) -> Vec<Assessed> {
    let point = client.coords.map(Point::new);
    let share = stream.routes.share;
    let mut all: Vec<(Assessed, u32)> = stream
        .mounts
        .iter()
        .map(|&i| {
            (
                assess(snap, i, client, point, now_s, ttl_s, share),
                rng.random(),
            )
        })
        .collect();

    if client.coords.is_some() {
        let mut order: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].0.excluded.is_none() && all[i].0.distance_km.is_some())
            .collect();
        order.sort_unstable_by(|&a, &b| {
            let (da, db) = (all[a].0.distance_km, all[b].0.distance_km);
            da.unwrap_or(f64::MAX).total_cmp(&db.unwrap_or(f64::MAX))
        });
        let mut ring = 0;
        let mut limit = None;
        for i in order {
            let d = all[i].0.distance_km.expect("filtered");
            match limit {
                None => limit = Some(band_limit(d)),
                Some(l) if d > l => {
                    ring += 1;
                    limit = Some(band_limit(d));
                }
                Some(_) => {}
            }
            all[i].0.ring = ring;
        }
        // Relays of unknown location come after every located one.
        for (a, _) in all.iter_mut() {
            if a.distance_km.is_none() {
                a.ring = ring + 1;
            }
        }
    } else if client.country.is_some() {
        for (a, _) in all.iter_mut() {
            a.ring = u32::from(!a.same_country);
        }
    }

    // One integer per mount holds the whole order, so the sort compares
    // integers rather than walking five fields (sorting was the largest
    // part of selection with 100 relays).
    let mut keyed: Vec<(u128, Assessed)> = all
        .into_iter()
        .map(|(a, tiebreak)| (order_key(&a, tiebreak), a))
        .collect();
    keyed.sort_unstable_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, a)| a).collect()
}

/// Candidates before excluded mounts, then nearer rings, more free
/// capacity × weight, the client's country, and chance; as one number.
fn order_key(a: &Assessed, tiebreak: u32) -> u128 {
    (u128::from(a.excluded.is_some()) << 127)
        | (u128::from(a.ring.min((1 << 31) - 1)) << 96)
        | (u128::from(u64::MAX - a.score) << 32)
        | (u128::from(!a.same_country) << 31)
        | u128::from(tiebreak >> 1)
}

/// Reserves a slot on the mount and its server unless that would exceed a
/// limit; checking after the increment makes concurrent reservations safe.
pub fn try_reserve(snap: &Snapshot, mount: usize, now_s: u64, ttl_s: u64) -> bool {
    let m = &snap.mounts[mount];
    let s = &snap.servers[m.server];
    let seen = s.last_success_at.unwrap_or(i64::MIN);
    m.counters.ledger.add(now_s);
    s.counters.ledger.add(now_s);
    let mount_ok = m.max.is_none_or(|max| {
        u64::from(m.listeners) + m.counters.ledger.count_seen(now_s, ttl_s, seen) <= u64::from(max)
    });
    let server_ok = s.max_listeners.is_none_or(|max| {
        s.listeners + s.counters.ledger.count_seen(now_s, ttl_s, seen) <= u64::from(max)
    });
    if mount_ok && server_ok {
        true
    } else {
        m.counters.ledger.remove(now_s);
        s.counters.ledger.remove(now_s);
        false
    }
}

/// Where the client stands, for `choose`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// The request came over HTTPS.
    pub https: bool,
}

/// Picks and reserves the best mount; `None` when nothing has a free slot.
/// Reads the stream's [`Routes`] and allocates nothing (a per-thread buffer
/// of distances is reused): the distance pass touches only the relays'
/// unit vectors, the reservation counters are read for the nearest few and
/// for the mounts of the first ring.
pub fn choose(
    snap: &Snapshot,
    stream: &StreamEntry,
    client: &ClientGeo,
    want: Want,
    now_s: u64,
    ttl_s: u64,
    rng: &mut impl Rng,
) -> Option<usize> {
    // A concurrent request may take the winner's last slot; then the
    // winner is full and the next pass picks another (bounded: each retry
    // follows a slot someone else took).
    let c = Ctx {
        snap,
        client,
        share: stream.routes.share,
        now_s,
        ttl_s,
    };
    for _ in 0..8 {
        let m = c.pick(stream, want, rng)?;
        if try_reserve(snap, m, now_s, ttl_s) {
            return Some(m);
        }
    }
    None
}

/// What every step of one pick reads.
struct Ctx<'a> {
    snap: &'a Snapshot,
    client: &'a ClientGeo,
    share: u64,
    now_s: u64,
    ttl_s: u64,
}

/// Full mounts looked at one by one, nearest first, before the rest are
/// checked in one pass: a few full relays nearby cost a few cheap scans of
/// the distances, a region full of them costs one pass over the counters.
const NEAREST_TRIES: usize = 8;

thread_local! {
    /// Squared chords from the client to each relay of a group; reused so
    /// the redirect path allocates nothing once a thread has seen its
    /// largest stream.
    static CHORDS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Ctx<'_> {
    /// The mount `choose` would reserve, without reserving it. An HTTPS
    /// listener's candidates are the relays with an `https_url` while one
    /// of them has room, then (unless the stream requires HTTPS) the others.
    fn pick(&self, stream: &StreamEntry, want: Want, rng: &mut impl Rng) -> Option<usize> {
        let r = &stream.routes;
        let tiers: [Option<&Group>; 2] = match (want.https, stream.require_https) {
            (false, _) => [Some(&r.all), None],
            (true, true) => [Some(&r.https), None],
            (true, false) => [Some(&r.https), Some(&r.plain)],
        };
        tiers
            .into_iter()
            .flatten()
            .find_map(|g| self.pick_in(g, rng))
    }

    fn free(&self, mount: u32) -> Option<(Option<u64>, u64)> {
        let m = &self.snap.mounts[mount as usize];
        let s = &self.snap.servers[m.server];
        let (free, reserved) = free_slots(m, s, self.now_s, self.ttl_s);
        (free != Some(0)).then_some((free, reserved))
    }

    fn same_country(&self, c: Option<CountryCode>) -> bool {
        matches!((self.client.country, c), (Some(a), Some(b)) if a == b)
    }

    /// The best mount of `g` for this client (rules 2 and 3).
    fn pick_in(&self, g: &Group, rng: &mut impl Rng) -> Option<usize> {
        if g.is_empty() {
            return None;
        }
        match self.client.coords {
            Some(c) => CHORDS.with_borrow_mut(|d| self.pick_located(g, Point::new(c), d, rng)),
            None => {
                let local = |k: usize| self.same_country(g.countries[k]);
                if self.client.country.is_some()
                    && let Some(m) = self.best(g, local, rng)
                {
                    return Some(m);
                }
                self.best(g, |_| true, rng)
            }
        }
    }

    /// Rule 2 for a located client: ring 0 is opened by the nearest relay
    /// with room. `d` ends up NaN for relays found full, infinite for those
    /// of unknown location outside the client's country.
    fn pick_located(
        &self,
        g: &Group,
        p: Point,
        d: &mut Vec<f64>,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        g.chords_from(p, d);
        for &k in &g.unlocated {
            // A relay placed only by country counts as local to it.
            let local = self.same_country(g.countries[k as usize]);
            d[k as usize] = if local { 0.0 } else { f64::INFINITY };
        }
        match self.nearest_with_room(g, d) {
            Some(near) => {
                let limit = km_to_chord2(band_limit(chord2_to_km(near)));
                self.best(g, |k| d[k] <= limit, rng)
            }
            // No located relay has room: the rest form one ring.
            None => self.best(g, |k| !d[k].is_nan(), rng),
        }
    }

    /// The squared chord to the nearest located relay with room, marking
    /// the full ones it meets NaN.
    fn nearest_with_room(&self, g: &Group, d: &mut [f64]) -> Option<f64> {
        for _ in 0..NEAREST_TRIES {
            let k = nearest(d)?;
            if self.free(g.mounts[k]).is_some() {
                return Some(d[k]);
            }
            d[k] = f64::NAN;
        }
        let mut best = None;
        for (dk, &mount) in d.iter_mut().zip(&g.mounts) {
            if !dk.is_finite() || best.is_some_and(|b| *dk >= b) {
                continue;
            }
            match self.free(mount) {
                Some(_) => best = Some(*dk),
                None => *dk = f64::NAN,
            }
        }
        best
    }

    /// Rule 3 among the mounts of `g` that `in_ring` admits and that have
    /// room: the least loaded, then the client's country, then chance.
    fn best(
        &self,
        g: &Group,
        in_ring: impl Fn(usize) -> bool,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        let mut best: Option<(usize, Load, bool)> = None;
        let mut ties = 0u32;
        for k in (0..g.len()).filter(|&k| in_ring(k)) {
            let Some((_, reserved)) = self.free(g.mounts[k]) else {
                continue;
            };
            let i = g.mounts[k] as usize;
            let m = &self.snap.mounts[i];
            let s = &self.snap.servers[m.server];
            let load = load_of(m, s, reserved, self.share, self.now_s, self.ttl_s);
            let local = self.same_country(g.countries[k]);
            let order = match best {
                None => std::cmp::Ordering::Less,
                Some((_, l, c)) => load.better_than(l).then(c.cmp(&local)),
            };
            match order {
                std::cmp::Ordering::Less => {
                    best = Some((i, load, local));
                    ties = 1;
                }
                std::cmp::Ordering::Equal => {
                    // Reservoir sampling: each of the tied mounts equally likely.
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((i, load, local));
                    }
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// Position of the smallest finite value.
fn nearest(d: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (k, &v) in d.iter().enumerate() {
        if v.is_finite() && best.is_none_or(|(_, b)| v < b) {
            best = Some((k, v));
        }
    }
    best.map(|(k, _)| k)
}

const EARTH_R: f64 = 6371.0088;

fn chord2_to_km(c2: f64) -> f64 {
    2.0 * EARTH_R * (c2.sqrt() / 2.0).min(1.0).asin()
}

fn km_to_chord2(km: f64) -> f64 {
    let half = (km / (2.0 * EARTH_R)).min(std::f64::consts::FRAC_PI_2);
    let c = 2.0 * half.sin();
    // A hair wider than exact, so a relay exactly at the bound stays in.
    c * c * (1.0 + 1e-12) + 1e-15
}

/// Whether the stream's geo-restriction lets this client in.
pub fn allowed(stream: &StreamEntry, client: &ClientGeo) -> bool {
    match (&stream.allowed_countries, client.country) {
        (None, _) => true,
        (Some(list), Some(c)) => list.contains(&c),
        (Some(_), None) => stream.allow_unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::domain::{Coords, CountryCode, distance_km};
    use crate::routing::snapshot::StreamCounters;
    use crate::routing::testing::{NOW, TTL, located, relay, snapshot};

    fn pick<'a>(snap: &'a Snapshot, client: &ClientGeo, seed: u64) -> Option<&'a str> {
        let mut rng = StdRng::seed_from_u64(seed);
        choose(
            snap,
            &snap.streams[0],
            client,
            Want::default(),
            NOW,
            TTL,
            &mut rng,
        )
        .map(|m| snap.servers[snap.mounts[m].server].name.as_str())
    }

    /// A slot on the first stream for a client of unknown location.
    fn choose_any(snap: &Snapshot, rng: &mut StdRng) -> Option<usize> {
        let (client, want) = (ClientGeo::default(), Want::default());
        choose(snap, &snap.streams[0], &client, want, NOW, TTL, rng)
    }

    /// Reservations held on each mount.
    fn reserved(snap: &Snapshot) -> Vec<u64> {
        let count = |m: &MountEntry| m.counters.ledger.count(NOW, TTL);
        snap.mounts.iter().map(count).collect()
    }

    fn at(lat: f64, lon: f64) -> ClientGeo {
        ClientGeo {
            country: None,
            coords: Some(Coords { lat, lon }),
        }
    }

    #[test]
    fn most_free_slots_wins() {
        let s = snapshot(vec![relay("a", 90, Some(100)), relay("b", 10, Some(100))]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("b"));
    }

    #[test]
    fn weight_scales_the_fill_target() {
        // Weight 300 at 20% full counts as 7% of its weighted capacity,
        // against 11% for the other at 10%.
        let mut a = relay("a", 20, Some(100));
        a.weight = 300;
        let s = snapshot(vec![a, relay("b", 10, Some(100))]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("a"));
        let mut a = relay("a", 50, Some(100));
        a.weight = 300;
        let s = snapshot(vec![a, relay("b", 10, Some(100))]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("b"));
    }

    #[test]
    fn excluded_mounts_are_never_chosen() {
        let mut down = relay("down", 0, Some(100));
        down.up = false;
        let mut off = relay("off", 0, Some(100));
        off.enabled = false;
        let mut gone = relay("gone", 0, Some(100));
        gone.live = false;
        let s = snapshot(vec![down, off, gone, relay("full", 100, Some(100))]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), None);
        let ranked = rank(
            &s,
            &s.streams[0],
            &ClientGeo::default(),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        let reasons: Vec<_> = ranked.iter().map(|a| a.excluded.unwrap()).collect();
        assert!(reasons.contains(&Excluded::ServerDown));
        assert!(reasons.contains(&Excluded::ServerDisabled));
        assert!(reasons.contains(&Excluded::NotLive));
        assert!(reasons.contains(&Excluded::Full));
    }

    #[test]
    fn reservations_spread_a_burst_and_never_overfill() {
        // 3 + 5 free slots: a burst of 20 gets exactly 8 redirects, each
        // relay filled exactly to its max.
        let s = snapshot(vec![relay("a", 7, Some(10)), relay("b", 5, Some(10))]);
        let mut counts = std::collections::HashMap::new();
        let mut refused = 0;
        for seed in 0..20 {
            match pick(&s, &ClientGeo::default(), seed) {
                Some(n) => *counts.entry(n).or_insert(0) += 1,
                None => refused += 1,
            }
        }
        assert_eq!(counts.get("a"), Some(&3));
        assert_eq!(counts.get("b"), Some(&5));
        assert_eq!(refused, 12);
    }

    #[test]
    fn server_wide_cap_applies_to_unlimited_mounts() {
        let mut a = relay("a", 8, None);
        a.server_max = Some(10);
        let s = snapshot(vec![a]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("a"));
        assert_eq!(pick(&s, &ClientGeo::default(), 2), Some("a"));
        assert_eq!(pick(&s, &ClientGeo::default(), 3), None);
    }

    #[test]
    fn unlimited_everywhere_sends_to_the_least_loaded() {
        let s = snapshot(vec![relay("a", 40, None), relay("b", 30, None)]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("b"));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let s = snapshot(vec![relay("a", 0, None), relay("b", 0, None)]);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..40 {
            let ranked = rank(
                &s,
                &s.streams[0],
                &ClientGeo::default(),
                NOW,
                TTL,
                &mut StdRng::seed_from_u64(seed),
            );
            seen.insert(ranked[0].mount);
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn nearest_ring_wins_over_more_free_slots() {
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 90;
        let nyc = located("nyc", "US", 40.71, -74.0);
        let s = snapshot(vec![fra, nyc]);
        // A listener in Berlin goes to Frankfurt despite it being busier.
        assert_eq!(pick(&s, &at(52.52, 13.40), 1), Some("fra"));
        assert_eq!(pick(&s, &at(42.36, -71.06), 1), Some("nyc"));
    }

    #[test]
    fn relays_within_the_band_share_by_capacity() {
        // Berlin client: Frankfurt ~424 km, Amsterdam ~577 km; within
        // 424 + 300 km, so the emptier Amsterdam wins.
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 50;
        let ams = located("ams", "NL", 52.37, 4.90);
        let s = snapshot(vec![fra, ams]);
        assert_eq!(pick(&s, &at(52.52, 13.40), 1), Some("ams"));
        let ranked = rank(
            &s,
            &s.streams[0],
            &at(52.52, 13.40),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(ranked.iter().all(|a| a.ring == 0));
    }

    #[test]
    fn a_relay_beyond_the_band_is_in_the_next_ring_however_empty() {
        // Berlin client: Frankfurt ~424 km opens ring 0, which ends at
        // max(1.25 × 424, 424 + 300) = 724 km; Paris (~878 km) is beyond.
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 95;
        let par = located("par", "FR", 48.86, 2.35);
        let s = snapshot(vec![fra, par]);
        let berlin = at(52.52, 13.40);
        assert_eq!(pick(&s, &berlin, 1), Some("fra"));
        let ranked = rank(
            &s,
            &s.streams[0],
            &berlin,
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        let ring_of = |name: &str| {
            ranked
                .iter()
                .find(|a| s.servers[s.mounts[a.mount].server].name == name)
                .unwrap()
                .ring
        };
        assert_eq!((ring_of("fra"), ring_of("par")), (0, 1));
        assert_eq!(band_limit(424.0), 724.0);
        assert_eq!(band_limit(2000.0), 2500.0);
    }

    #[test]
    fn weight_decides_within_a_ring_but_not_across_rings() {
        // Frankfurt and Amsterdam share Berlin's ring; Amsterdam's weight
        // wins there. New York's larger weight cannot pull Berlin over.
        let fra = located("fra", "DE", 50.11, 8.68);
        let mut ams = located("ams", "NL", 52.37, 4.90);
        ams.weight = 300;
        let mut nyc = located("nyc", "US", 40.71, -74.0);
        nyc.weight = 10_000;
        let s = snapshot(vec![fra, ams, nyc]);
        let mut got = std::collections::HashMap::new();
        for seed in 0..40 {
            *got.entry(pick(&s, &at(52.52, 13.40), seed).unwrap())
                .or_insert(0) += 1;
        }
        // Three to one, as the weights say; none across the ocean.
        assert!((29..=31).contains(&got["ams"]), "{got:?}");
        assert_eq!(got.get("nyc"), None);
    }

    #[test]
    fn known_limits_fill_evenly_by_fraction_at_every_load() {
        let limits = [20, 50, 50, 100, 200];
        let s = snapshot(limits.iter().map(|&m| relay("r", 0, Some(m))).collect());
        let mut rng = StdRng::seed_from_u64(5);
        for n in 1..=420 {
            choose_any(&s, &mut rng).unwrap();
            let fill: Vec<f64> = s
                .mounts
                .iter()
                .map(|m| m.counters.ledger.count(NOW, TTL) as f64 / f64::from(m.max.unwrap()))
                .collect();
            let spread =
                fill.iter().cloned().fold(0.0, f64::max) - fill.iter().cloned().fold(1.0, f64::min);
            assert!(spread <= 0.10 + 1e-9, "after {n}: {fill:?}");
        }
        let none = choose_any(&s, &mut rng);
        assert_eq!(none, None, "exactly the capacity, then nothing");
    }

    #[test]
    fn unknown_limit_takes_a_fair_share_not_everything() {
        // Two known relays of 100 and one whose limit nobody knows: it is
        // filled as if it had 100, so 300 listeners split about evenly.
        let s = snapshot(vec![
            relay("a", 0, Some(100)),
            relay("b", 0, Some(100)),
            relay("u", 0, None),
        ]);
        let mut rng = StdRng::seed_from_u64(6);
        for _ in 0..150 {
            choose_any(&s, &mut rng).unwrap();
        }
        let counts = reserved(&s);
        assert!(counts.iter().all(|&c| (49..=51).contains(&c)), "{counts:?}");
        // Once the known ones are full, the unknown one takes the rest.
        for _ in 0..200 {
            choose_any(&s, &mut rng).unwrap();
        }
        let counts = reserved(&s);
        assert_eq!(counts, vec![100, 100, 150]);
    }

    #[test]
    fn https_listeners_prefer_https_relays_and_may_be_kept_off_http() {
        let mut s = snapshot(vec![
            relay("plain", 0, Some(100)),
            relay("tls", 90, Some(100)),
        ]);
        s.servers[1].https_url = Some("https://tls".into());
        s.reindex();
        let mut rng = StdRng::seed_from_u64(7);
        let https = Want { https: true };
        let st = &s.streams[0];
        assert_eq!(
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng),
            Some(1)
        );
        assert_eq!(
            choose(
                &s,
                st,
                &ClientGeo::default(),
                Want::default(),
                NOW,
                TTL,
                &mut rng
            ),
            Some(0)
        );
        for _ in 0..9 {
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng).unwrap();
        }
        // The https relay is full: http is the fallback, unless forbidden.
        assert_eq!(
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng),
            Some(0)
        );
        s.streams[0].require_https = true;
        let st = &s.streams[0];
        assert_eq!(
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng),
            None
        );
    }

    /// A random relay: located or placed by country only, often full,
    /// sometimes down, with or without a limit.
    fn random_relay(rng: &mut StdRng) -> crate::routing::testing::Relay {
        let country = ["DE", "FR", "US"][rng.random_range(0..3)];
        let mut r = located(
            "x",
            country,
            rng.random_range(-60.0..60.0),
            rng.random_range(-180.0..180.0),
        );
        if rng.random_bool(0.2) {
            r.coords = None;
        }
        r.max = rng.random_bool(0.9).then_some(100);
        r.listeners = if rng.random_bool(0.5) {
            100
        } else {
            rng.random_range(0..100)
        };
        r.up = rng.random_bool(0.9);
        r
    }

    fn random_client(rng: &mut StdRng) -> ClientGeo {
        let mut c = at(
            rng.random_range(-60.0..60.0),
            rng.random_range(-180.0..180.0),
        );
        c.country = rng
            .random_bool(0.7)
            .then(|| CountryCode::parse(["DE", "FR", "US"][rng.random_range(0..3)]).unwrap());
        if rng.random_bool(0.2) {
            c.coords = None;
        }
        c
    }

    #[test]
    fn choose_agrees_with_rank_on_the_ring_and_the_least_loaded() {
        // Random situations (full relays nearest, relays placed by country
        // only, relays down, clients with and without coordinates): the
        // winner is always a candidate rank puts first or ties with.
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..2000 {
            let n = rng.random_range(1..30);
            let s = snapshot((0..n).map(|_| random_relay(&mut rng)).collect());
            let client = random_client(&mut rng);
            let ranked = rank(
                &s,
                &s.streams[0],
                &client,
                NOW,
                TTL,
                &mut StdRng::seed_from_u64(round),
            );
            let first = ranked.first().filter(|a| a.excluded.is_none());
            let key = |a: &Assessed| (a.ring, a.score, a.same_country);
            let c = Ctx {
                snap: &s,
                client: &client,
                share: s.streams[0].routes.share,
                now_s: NOW,
                ttl_s: TTL,
            };
            let chosen = c.pick(&s.streams[0], Want::default(), &mut rng);
            let Some(m) = chosen else {
                assert!(
                    first.is_none(),
                    "round {round}: none chosen, rank has {first:?}"
                );
                continue;
            };
            let a = ranked.iter().find(|a| a.mount == m).unwrap();
            assert!(
                a.excluded.is_none(),
                "round {round}: chose an excluded mount"
            );
            assert_eq!(key(a), key(first.unwrap()), "round {round}");
        }
    }

    #[test]
    fn rings_keep_counting_outwards() {
        // Berlin client: Frankfurt (ring 0), New York (ring 1), Sydney (ring 2).
        let s = snapshot(vec![
            located("syd", "AU", -33.87, 151.21),
            located("nyc", "US", 40.71, -74.0),
            located("fra", "DE", 50.11, 8.68),
        ]);
        let ranked = rank(
            &s,
            &s.streams[0],
            &at(52.52, 13.40),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(3),
        );
        let order: Vec<(&str, u32)> = ranked
            .iter()
            .map(|a| (s.servers[s.mounts[a.mount].server].name.as_str(), a.ring))
            .collect();
        assert_eq!(order, vec![("fra", 0), ("nyc", 1), ("syd", 2)]);
    }

    #[test]
    fn unknown_client_is_load_only_whatever_the_distances() {
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 50;
        let syd = located("syd", "AU", -33.87, 151.21);
        let s = snapshot(vec![fra, syd]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("syd"));
    }

    #[test]
    fn spills_over_to_the_next_ring_when_near_is_full() {
        let mut fra = located("fra", "DE", 50.11, 8.68);
        fra.listeners = 99;
        let nyc = located("nyc", "US", 40.71, -74.0);
        let s = snapshot(vec![fra, nyc]);
        let berlin = at(52.52, 13.40);
        assert_eq!(pick(&s, &berlin, 1), Some("fra"));
        assert_eq!(pick(&s, &berlin, 2), Some("nyc"), "fra is full now");
    }

    #[test]
    fn same_country_wins_ties() {
        let vie = located("vie", "AT", 48.21, 16.37);
        let bts = located("bts", "SK", 48.15, 17.11);
        let s = snapshot(vec![vie, bts]);
        let client = ClientGeo {
            country: Some(CountryCode::parse("SK").unwrap()),
            coords: Some(Coords {
                lat: 48.18,
                lon: 16.7,
            }),
        };
        for seed in 0..10 {
            let ranked = rank(
                &s,
                &s.streams[0],
                &client,
                NOW,
                TTL,
                &mut StdRng::seed_from_u64(seed),
            );
            assert_eq!(s.servers[ranked[0].mount].name, "bts");
        }
    }

    #[test]
    fn country_only_client_prefers_its_country() {
        let mut de = relay("de", 50, Some(100));
        de.country = Some("DE");
        let mut us = relay("us", 0, Some(100));
        us.country = Some("US");
        let s = snapshot(vec![de, us]);
        let client = ClientGeo {
            country: Some(CountryCode::parse("DE").unwrap()),
            coords: None,
        };
        assert_eq!(pick(&s, &client, 1), Some("de"));
    }

    #[test]
    fn unlocated_relays_come_last_for_located_clients() {
        let far = located("syd", "AU", -33.87, 151.21);
        let nowhere = relay("nowhere", 0, Some(1000));
        let s = snapshot(vec![far, nowhere]);
        assert_eq!(pick(&s, &at(52.52, 13.40), 1), Some("syd"));
    }

    #[test]
    fn distances() {
        let berlin = Coords {
            lat: 52.52,
            lon: 13.40,
        };
        let paris = Coords {
            lat: 48.86,
            lon: 2.35,
        };
        let d = distance_km(berlin, paris);
        assert!((870.0..890.0).contains(&d), "{d}");
        assert_eq!(distance_km(berlin, berlin), 0.0);
    }

    #[test]
    fn chord_distance_matches_the_haversine_formula() {
        fn haversine(a: Coords, b: Coords) -> f64 {
            let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
            let dlat = la2 - la1;
            let dlon = (b.lon - a.lon).to_radians();
            let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
            2.0 * 6371.0088 * h.sqrt().min(1.0).asin()
        }
        let places = [
            (52.52, 13.40),
            (-33.87, 151.21),
            (40.71, -74.0),
            (0.0, 179.9),
            (0.0, -179.9),
            (89.9, 0.0),
            (-52.52, -166.6),
        ];
        for &(a1, o1) in &places {
            for &(a2, o2) in &places {
                let (a, b) = (Coords { lat: a1, lon: o1 }, Coords { lat: a2, lon: o2 });
                let (fast, slow) = (distance_km(a, b), haversine(a, b));
                // Within a metre: near antipodes both formulas lose digits in asin.
                assert!((fast - slow).abs() < 1e-3, "{a:?} {b:?}: {fast} vs {slow}");
            }
        }
    }

    #[test]
    fn a_changed_server_location_is_not_served_from_the_cache() {
        let mut s = snapshot(vec![located("fra", "DE", 50.11, 8.68)]);
        s.servers[0].coords = Some(Coords {
            lat: -33.87,
            lon: 151.21,
        });
        let ranked = rank(
            &s,
            &s.streams[0],
            &at(-33.87, 151.21),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(ranked[0].distance_km.unwrap() < 1.0);
    }

    #[test]
    fn the_order_key_sorts_like_the_rules_say() {
        use std::cmp::Ordering;
        let rules = |(a, ra): &(Assessed, u32), (b, rb): &(Assessed, u32)| -> Ordering {
            a.excluded
                .is_some()
                .cmp(&b.excluded.is_some())
                .then(a.ring.cmp(&b.ring))
                .then(b.score.cmp(&a.score))
                .then(b.same_country.cmp(&a.same_country))
                .then((ra >> 1).cmp(&(rb >> 1)))
        };
        let mut rng = StdRng::seed_from_u64(42);
        let items: Vec<(Assessed, u32)> = (0..500)
            .map(|i| {
                let a = Assessed {
                    mount: i,
                    free: None,
                    reserved: 0,
                    excluded: rng.random_bool(0.2).then_some(Excluded::Full),
                    distance_km: None,
                    same_country: rng.random(),
                    ring: rng.random_range(0..4),
                    score: [0, 1, 5000, u64::MAX][rng.random_range(0..4)],
                };
                (a, rng.random_range(0..8))
            })
            .collect();
        for x in &items {
            for y in &items {
                let by_key = order_key(&x.0, x.1).cmp(&order_key(&y.0, y.1));
                assert_eq!(by_key, rules(x, y), "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn stream_totals_count_serving_mounts_and_every_reservation() {
        let mut down = relay("down", 7, Some(10));
        down.up = false;
        let s = snapshot(vec![relay("a", 3, Some(10)), relay("b", 5, Some(20)), down]);
        try_reserve(&s, 2, NOW, TTL);
        let t = stream_totals(&s, &s.streams[0], NOW, TTL);
        assert_eq!(
            t,
            StreamTotals {
                relays: 2,
                listeners: 8,
                capacity: Some(30),
                free: Some(22),
                reserved: 1,
            }
        );
        let s = snapshot(vec![relay("a", 3, Some(10)), relay("u", 1, None)]);
        let t = stream_totals(&s, &s.streams[0], NOW, TTL);
        assert_eq!((t.capacity, t.free), (None, None), "one unlimited mount");
    }

    #[test]
    fn geo_restriction() {
        let s = snapshot(vec![relay("a", 0, None)]);
        let mut st = StreamEntry {
            allowed_countries: Some(vec![CountryCode::parse("DE").unwrap()]),
            allow_unknown: true,
            require_https: false,
            mounts: vec![],
            counters: Arc::new(StreamCounters::default()),
            id: 1,
            name: "x".into(),
            description: String::new(),
            fallback_url: None,
            routes: Default::default(),
        };
        let de = ClientGeo {
            country: Some(CountryCode::parse("DE").unwrap()),
            coords: None,
        };
        let fr = ClientGeo {
            country: Some(CountryCode::parse("FR").unwrap()),
            coords: None,
        };
        assert!(allowed(&st, &de));
        assert!(!allowed(&st, &fr));
        assert!(allowed(&st, &ClientGeo::default()));
        st.allow_unknown = false;
        assert!(!allowed(&st, &ClientGeo::default()));
        assert!(allowed(&s.streams[0], &fr));
    }
}
