//! Choosing a relay: a pure function of (snapshot, client location, clock,
//! reservations), so every rule here is unit-tested without I/O. The rules
//! themselves are in `rules`; this module applies them twice, the same way:
//!
//! 1. A mount is a candidate when its server is enabled and up, the last
//!    poll listed it, the stream lets the client in, and it has a free slot
//!    after reservations. A listener who came over HTTPS is offered relays
//!    with an `https_url` first (tier 0), the others after (tier 1, none
//!    when the stream has `require_https`).
//! 2. Within a tier, candidates are grouped into distance rings around the
//!    client: the nearest candidate opens ring 0, and every candidate within
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
//!    equal weight thus fill evenly by fraction at any load. Equal fills
//!    prefer the client's country, then chance decides.
//! 4. The winner's slot is reserved (`capacity::Reservation`); if a
//!    concurrent request took the last slot first, selection runs again.
//!
//! `choose` (the redirect path) reads the stream's `routes` index (one
//! distance pass, counters only for the nearest and the first ring) and
//! allocates nothing; `rank` assesses every mount for playlists, HEAD, the
//! admin and the explain page. Both judge a mount with the same
//! [`Ctx::standing`], draw rings with `rules::ring_end` over the same
//! squared chords, and tier with `rules::tier`.

use std::cmp::Ordering as Order;
use std::sync::atomic::Ordering;

use rand::Rng;

use crate::domain::{ClientGeo, CountryCode, Point};

use super::capacity::Reservation;
use super::routes::Group;
use super::rules::{self, CapacityFrom, Fill, Standing};
use super::snapshot::{MountEntry, ServerEntry, Snapshot, StreamEntry};

pub use super::rules::{BAND_FACTOR, BAND_KM, Excluded, Want, band_limit};

/// What selection saw of one mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    pub mount: usize,
    /// Free slots after reservations; `None` means unlimited.
    pub free: Option<u64>,
    pub reserved: u64,
    pub excluded: Option<Excluded>,
    /// The server's tier (`tier`: 1 = own relays, higher = overflow).
    pub level: u8,
    /// The HTTPS tier ([`rules::tier`]); 0 for excluded mounts it rules out.
    pub tier: u8,
    /// The client is in one of the relay's ASes (`asns`).
    pub same_as: bool,
    /// From the client, along the great circle; `None` when either
    /// location is unknown (0 for a relay placed only by the client's
    /// country).
    pub distance_km: Option<f64>,
    /// The distance ring within the tier; 0 for excluded mounts.
    pub ring: u32,
    /// Where the mount's own ring ends, in km (located clients only).
    pub ring_end_km: Option<f64>,
    pub standing: Standing,
}

impl Assessed {
    pub fn same_country(&self) -> bool {
        self.standing.local
    }

    /// The group whose rings are drawn apart from the others', best first.
    fn group(&self) -> (u8, u8, bool) {
        (self.level, self.tier, !self.same_as)
    }

    /// Whether `self` is in the same group as `o` (`Equal`), or before it.
    pub fn cmp_group(&self, o: &Assessed) -> Order {
        self.group().cmp(&o.group())
    }

    /// The order of candidates (rules 1 to 3): the server's tier, the
    /// HTTPS tier, the client's AS, ring, standing. `Equal` means chance
    /// decides between them.
    pub fn cmp_rules(&self, o: &Assessed) -> Order {
        self.group()
            .cmp(&o.group())
            .then(self.ring.cmp(&o.ring))
            .then(self.standing.cmp_standing(&o.standing))
    }
}

/// Free slots of `m` on `s` after reservations (`None` = unlimited).
pub fn free_slots(m: &MountEntry, s: &ServerEntry, now_s: u64, ttl_s: u64) -> (Option<u64>, u64) {
    let seen = s.last_success_at.unwrap_or(i64::MIN);
    let reserved = m.counters.ledger.count_seen(now_s, ttl_s, seen);
    let mount_free = if m.counters.shared_full_until_s.load(Ordering::Relaxed) > now_s {
        Some(0)
    } else {
        m.max
            .map(|max| u64::from(max).saturating_sub(m.listeners_now() + reserved))
    };
    let server_free = s.max_listeners.map(|max| {
        u64::from(max)
            .saturating_sub(s.listeners_now() + s.counters.ledger.count_seen(now_s, ttl_s, seen))
    });
    let free = [mount_free, server_free, bandwidth_room(m, s, now_s, ttl_s)]
        .into_iter()
        .flatten()
        .min();
    (free, reserved)
}

/// Listeners of `m`'s bitrate that still fit in its server's bandwidth
/// budget (`None`: no budget, or no bitrate to charge).
pub fn bandwidth_room(m: &MountEntry, s: &ServerEntry, now_s: u64, ttl_s: u64) -> Option<u64> {
    let (bw, kbps) = (s.bandwidth.as_ref()?, m.kbps?);
    Some(bw.room(kbps, now_s, ttl_s, s.last_success_at.unwrap_or(i64::MIN)))
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
        if rules::serving(m.live, s.enabled, s.health.is_up()) {
            t.relays += 1;
            t.listeners += m.listeners_now();
            t.capacity = t.capacity.zip(m.max).map(|(a, b)| a + u64::from(b));
            t.free = t.free.zip(free).map(|(a, b)| a + b);
        }
    }
    t
}

/// Whether the stream's geo-restriction lets this client in.
pub fn allowed(stream: &StreamEntry, client: &ClientGeo) -> bool {
    match (&stream.allowed_countries, client.country) {
        (None, _) => true,
        (Some(list), Some(c)) => list.contains(&c),
        (Some(_), None) => stream.allow_unknown,
    }
}

/// What every step of one selection reads.
struct Ctx<'a> {
    snap: &'a Snapshot,
    client: &'a ClientGeo,
    /// The capacity of a mount whose limit nobody knows (rule 3).
    share: u64,
    now_s: u64,
    ttl_s: u64,
}

impl Ctx<'_> {
    /// Free slots and reservations of a mount, `None` when it is full or
    /// cannot reach this client.
    fn room(&self, mount: usize) -> Option<(Option<u64>, u64)> {
        let m = &self.snap.mounts[mount];
        let s = &self.snap.servers[m.server];
        if self.unreachable(s).is_some() {
            return None;
        }
        let (free, reserved) = free_slots(m, s, self.now_s, self.ttl_s);
        (free != Some(0)).then_some((free, reserved))
    }

    /// Why the relay cannot take this client whatever its load.
    fn unreachable(&self, s: &ServerEntry) -> Option<Excluded> {
        rules::client_exclusion(&s.policy, self.client.ip, self.client.asn)
    }

    fn local(&self, c: Option<CountryCode>) -> bool {
        matches!((self.client.country, c), (Some(a), Some(b)) if a == b)
    }

    /// How a mount compares within its ring (rule 3), given its
    /// reservations: the one judgement both `choose` and `rank` make.
    fn standing(&self, mount: usize, reserved: u64) -> Standing {
        let m = &self.snap.mounts[mount];
        let s = &self.snap.servers[m.server];
        let (used, capacity, from) = match (m.max, s.max_listeners) {
            (Some(max), _) => (
                m.listeners_now() + reserved,
                u64::from(max),
                CapacityFrom::Mount,
            ),
            (None, Some(max)) => {
                let seen = s.last_success_at.unwrap_or(i64::MIN);
                let server_reserved = s.counters.ledger.count_seen(self.now_s, self.ttl_s, seen);
                (
                    s.listeners_now() + server_reserved,
                    u64::from(max),
                    CapacityFrom::Server,
                )
            }
            (None, None) => (
                m.listeners_now() + reserved,
                self.share,
                CapacityFrom::FairShare,
            ),
        };
        Standing {
            fill: Fill {
                used: used + 1,
                capacity: capacity.max(1),
                weight: s.weight.max(1),
                from,
            },
            local: self.local(s.country),
        }
    }

    /// Squared chord from the client to the relay of `mount` (rule 2):
    /// a relay placed only by country counts as local to it (0), other
    /// relays of unknown location as infinitely far.
    fn chord(&self, client: Point, mount: usize) -> f64 {
        let m = &self.snap.mounts[mount];
        match self.snap.server_point(m.server) {
            Some(p) => rules::chord2(client.xyz(), p.xyz()),
            None if self.local(self.snap.servers[m.server].country) => 0.0,
            None => f64::INFINITY,
        }
    }
}

/// Picks and reserves the best mount; `None` when nothing has a free slot.
/// Reads the stream's [`Routes`](super::routes::Routes) and allocates
/// nothing (a per-thread buffer of distances is reused): the distance pass
/// touches only the relays' unit vectors, the reservation counters are read
/// for the nearest few and for the mounts of the first ring. `None` too
/// where the stream may not be heard.
pub fn choose<'s>(
    snap: &'s Snapshot,
    stream: &StreamEntry,
    client: &ClientGeo,
    want: Want,
    now_s: u64,
    ttl_s: u64,
    rng: &mut impl Rng,
) -> Option<Reservation<'s>> {
    // A concurrent request may take the winner's last slot; then the
    // winner is full and the next pass picks another (bounded: each retry
    // follows a slot someone else took).
    if !allowed(stream, client) {
        return None;
    }
    let c = Ctx {
        snap,
        client,
        share: stream.routes.share,
        now_s,
        ttl_s,
    };
    for _ in 0..8 {
        let m = c.pick(stream, want, rng)?;
        if let Some(r) = Reservation::try_new(snap, m, now_s, ttl_s) {
            return Some(r);
        }
    }
    None
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
    /// The mount `choose` would reserve, without reserving it: the first
    /// tier with a candidate decides (rule 1), and within a tier the
    /// relays of the client's AS come first.
    fn pick(&self, stream: &StreamEntry, want: Want, rng: &mut impl Rng) -> Option<usize> {
        stream.routes.tiers(want).iter().find_map(|t| {
            let own = match self.client.asn {
                Some(a) if !t.by_asn.is_empty() => t.by_asn.get(&a),
                _ => None,
            };
            own.and_then(|g| self.pick_in(g, rng))
                .or_else(|| self.pick_in(&t.all, rng))
        })
    }

    /// The best mount of `g` for this client (rules 2 and 3).
    fn pick_in(&self, g: &Group, rng: &mut impl Rng) -> Option<usize> {
        if g.is_empty() {
            return None;
        }
        match self.client.coords {
            Some(c) => CHORDS.with_borrow_mut(|d| self.pick_located(g, Point::new(c), d, rng)),
            None => {
                let local = |k: usize| self.local(g.countries[k]);
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
            let local = self.local(g.countries[k as usize]);
            d[k as usize] = if local { 0.0 } else { f64::INFINITY };
        }
        match self.nearest_with_room(g, d) {
            Some(near) => {
                let end = rules::ring_end(near);
                self.best(g, |k| d[k] <= end, rng)
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
            if self.room(g.mounts[k] as usize).is_some() {
                return Some(d[k]);
            }
            d[k] = f64::NAN;
        }
        let mut best = None;
        for (dk, &mount) in d.iter_mut().zip(&g.mounts) {
            if !dk.is_finite() || best.is_some_and(|b| *dk >= b) {
                continue;
            }
            match self.room(mount as usize) {
                Some(_) => best = Some(*dk),
                None => *dk = f64::NAN,
            }
        }
        best
    }

    /// Rule 3 among the mounts of `g` that `in_ring` admits and that have
    /// room: the best standing, then chance.
    fn best(
        &self,
        g: &Group,
        in_ring: impl Fn(usize) -> bool,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        let mut best: Option<(usize, Standing)> = None;
        let mut ties = 0u32;
        for k in (0..g.len()).filter(|&k| in_ring(k)) {
            let i = g.mounts[k] as usize;
            let Some((_, reserved)) = self.room(i) else {
                continue;
            };
            let standing = self.standing(i, reserved);
            let order = best.map_or(Order::Less, |(_, b)| standing.cmp_standing(&b));
            match order {
                Order::Less => {
                    best = Some((i, standing));
                    ties = 1;
                }
                Order::Equal => {
                    // Reservoir sampling: each of the tied mounts equally likely.
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((i, standing));
                    }
                }
                Order::Greater => {}
            }
        }
        best.map(|(i, _)| i)
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

/// Every mount of the stream, candidates first in the order [`choose`]
/// would take them (ties in random order), then the excluded ones in the
/// stream's order.
pub fn rank(
    snap: &Snapshot,
    stream: &StreamEntry,
    client: &ClientGeo,
    want: Want,
    now_s: u64,
    ttl_s: u64,
    rng: &mut impl Rng,
) -> Vec<Assessed> {
    let c = Ctx {
        snap,
        client,
        share: stream.routes.share,
        now_s,
        ttl_s,
    };
    c.rank(stream, want, allowed(stream, client), rng)
}

/// What selection sees of each mount for a plain listener of unknown
/// location, whatever the stream's geo-restriction: the admin's view.
pub fn survey(snap: &Snapshot, stream: &StreamEntry, now_s: u64, ttl_s: u64) -> Vec<Assessed> {
    let c = Ctx {
        snap,
        client: &ClientGeo::default(),
        share: stream.routes.share,
        now_s,
        ttl_s,
    };
    c.rank(stream, Want::default(), true, &mut rand::rng())
}

impl Ctx<'_> {
    fn rank(
        &self,
        stream: &StreamEntry,
        want: Want,
        open: bool,
        rng: &mut impl Rng,
    ) -> Vec<Assessed> {
        let c = self;
        let point = c.client.coords.map(Point::new);
        let mut all: Vec<(Assessed, f64, u32)> = stream
            .mounts
            .iter()
            .map(|&i| {
                let a = c.assess(stream, i, want, open);
                let d = point.map_or(f64::INFINITY, |p| c.chord(p, i));
                (a, d, rng.random())
            })
            .collect();
        let mut groups: Vec<_> = all
            .iter()
            .filter(|(a, _, _)| a.excluded.is_none())
            .map(|(a, _, _)| a.group())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            let mut members: Vec<&mut (Assessed, f64, u32)> = all
                .iter_mut()
                .filter(|(a, _, _)| a.excluded.is_none() && a.group() == group)
                .collect();
            c.draw_rings(&mut members);
        }
        // Distances are shown for every located mount, candidate or not.
        for (a, d, _) in &mut all {
            a.distance_km = d.is_finite().then(|| rules::chord2_to_km(*d));
        }
        all.sort_by(|(a, _, ta), (b, _, tb)| match (a.excluded, b.excluded) {
            (None, None) => a.cmp_rules(b).then(ta.cmp(tb)),
            (x, y) => x.is_some().cmp(&y.is_some()),
        });
        all.into_iter().map(|(a, _, _)| a).collect()
    }

    /// Candidacy (rule 1) and standing of one mount; rings come later.
    fn assess(&self, stream: &StreamEntry, i: usize, want: Want, open: bool) -> Assessed {
        let m = &self.snap.mounts[i];
        let s = &self.snap.servers[m.server];
        let (free, reserved) = free_slots(m, s, self.now_s, self.ttl_s);
        let tier = rules::tier(s.https_url.is_some(), stream.require_https, want);
        let excluded = if !open {
            Some(Excluded::GeoBlocked)
        } else if let Some(e) = rules::static_exclusion(m.live, s.enabled, s.health.is_up()) {
            Some(e)
        } else if tier.is_none() {
            Some(Excluded::HttpsRequired)
        } else if let Some(e) = self.unreachable(s) {
            Some(e)
        } else if bandwidth_room(m, s, self.now_s, self.ttl_s) == Some(0) {
            Some(Excluded::OverBudget)
        } else if free == Some(0) {
            Some(Excluded::Full)
        } else {
            None
        };
        Assessed {
            mount: i,
            free,
            reserved,
            excluded,
            level: s.policy.tier,
            tier: tier.unwrap_or(0),
            same_as: rules::same_as(&s.policy, self.client.asn),
            distance_km: None,
            ring: 0,
            ring_end_km: None,
            standing: self.standing(i, reserved),
        }
    }

    /// Rule 2 over the candidates of one tier (with their squared chords):
    /// rings outwards from the nearest for a located client, the client's
    /// country first for one known only by country, one ring otherwise.
    fn draw_rings(&self, members: &mut [&mut (Assessed, f64, u32)]) {
        if self.client.coords.is_none() {
            let by_country = self.client.country.is_some();
            for (a, _, _) in members.iter_mut() {
                a.ring = u32::from(by_country && !a.standing.local);
            }
            return;
        }
        members.sort_by(|x, y| x.1.total_cmp(&y.1));
        let (mut ring, mut end) = (0, None);
        for (a, d, _) in members.iter_mut() {
            if !d.is_finite() {
                // Relays of unknown location come after every located one.
                a.ring = ring + u32::from(end.is_some());
                continue;
            }
            match end {
                None => end = Some(rules::ring_end(*d)),
                Some(e) if *d > e => {
                    ring += 1;
                    end = Some(rules::ring_end(*d));
                }
                Some(_) => {}
            }
            a.ring = ring;
            a.ring_end_km = end.map(rules::chord2_to_km);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::domain::{Coords, CountryCode, IpVersions, distance_km};
    use crate::routing::reasons::{Reason, reasons};

    /// `choose`, the slot kept (as a redirect does).
    fn choose(
        snap: &Snapshot,
        stream: &StreamEntry,
        client: &ClientGeo,
        want: Want,
        now_s: u64,
        ttl_s: u64,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        super::choose(snap, stream, client, want, now_s, ttl_s, rng).map(|r| r.commit().mount)
    }
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
            ..ClientGeo::default()
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
            Want::default(),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        let reasons: Vec<_> = ranked.iter().map(|a| a.excluded.unwrap()).collect();
        assert!(reasons.contains(&Excluded::Down));
        assert!(reasons.contains(&Excluded::Drained));
        assert!(reasons.contains(&Excluded::NotListed));
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
                Want::default(),
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
            Want::default(),
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
            Want::default(),
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
        s.reindex();
        let st = &s.streams[0];
        assert_eq!(
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng),
            None
        );
    }

    /// A random relay: located or placed by country only, often full,
    /// sometimes down, drained or not listed, with or without a limit, an
    /// `https_url`, a weight of its own; now and then refused by the
    /// cluster for this second.
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
        r.enabled = rng.random_bool(0.9);
        r.live = rng.random_bool(0.95);
        r.https = rng.random_bool(0.5);
        r.weight = [50, 100, 150][rng.random_range(0..3)];
        let p = &mut r.policy;
        p.tier = [1, 1, 1, 2, 3][rng.random_range(0..5)];
        p.ip_versions = [IpVersions::default(), v4_only(), v6_only()][rng.random_range(0..3)];
        if rng.random_bool(0.3) {
            p.asns = vec![rng.random_range(1..4)];
        }
        if rng.random_bool(0.1) {
            p.only_asns = vec![rng.random_range(1..4)];
        }
        if rng.random_bool(0.2) {
            p.max_mbps = Some(rng.random_range(1.0..20.0));
        }
        r
    }

    fn v4_only() -> IpVersions {
        IpVersions {
            v4: true,
            v6: false,
        }
    }

    fn v6_only() -> IpVersions {
        IpVersions {
            v4: false,
            v6: true,
        }
    }

    const V4: &str = "192.0.2.10";
    const V6: &str = "2001:db8::10";

    /// A client of unknown location at `ip`, in AS `asn`.
    fn from(ip: &str, asn: Option<u32>) -> ClientGeo {
        ClientGeo {
            ip: Some(ip.parse().unwrap()),
            asn,
            ..ClientGeo::default()
        }
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
        c.ip = [None, Some(V4), Some(V6)][rng.random_range(0..3)].map(|a| a.parse().unwrap());
        c.asn = rng.random_bool(0.7).then(|| rng.random_range(1..4));
        c
    }

    /// A random stream over random relays: sometimes HTTPS-only, sometimes
    /// geo-restricted (with or without unknown clients).
    fn random_situation(rng: &mut StdRng) -> Snapshot {
        let n = rng.random_range(1..30);
        let mut s = snapshot((0..n).map(|_| random_relay(rng)).collect());
        for m in &s.mounts {
            if rng.random_bool(0.05) {
                m.counters
                    .shared_full_until_s
                    .store(NOW + 1, Ordering::Relaxed);
            }
        }
        let st = &mut s.streams[0];
        st.bitrate_kbps = rng.random_bool(0.5).then_some(128);
        st.require_https = rng.random_bool(0.3);
        if rng.random_bool(0.3) {
            st.allowed_countries = Some(vec![CountryCode::parse("DE").unwrap()]);
            st.allow_unknown = rng.random_bool(0.5);
        }
        s.reindex();
        s
    }

    #[test]
    fn choose_agrees_with_rank_on_the_ring_and_the_least_loaded() {
        // Random situations (full relays nearest, relays placed by country
        // only, relays down or drained, HTTPS and plain listeners, streams
        // that require HTTPS or are geo-restricted, clients with and
        // without coordinates): the redirect's winner is always a
        // candidate rank puts first or ties with, and when the redirect
        // finds nothing rank has no candidate either.
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..3000 {
            let s = random_situation(&mut rng);
            let client = random_client(&mut rng);
            let want = Want {
                https: rng.random_bool(0.5),
            };
            let st = &s.streams[0];
            let tiebreak = &mut StdRng::seed_from_u64(round);
            let ranked = rank(&s, st, &client, want, NOW, TTL, tiebreak);
            let first = ranked.first().filter(|a| a.excluded.is_none());
            // The reservation is released as it is dropped.
            let chosen =
                super::choose(&s, st, &client, want, NOW, TTL, &mut rng).map(|r| r.mount());
            let Some(m) = chosen else {
                assert!(
                    first.is_none(),
                    "round {round}: none chosen, rank has {first:?}"
                );
                continue;
            };
            let a = ranked.iter().find(|a| a.mount == m).unwrap();
            assert_eq!(a.excluded, None, "round {round}: chose an excluded mount");
            let first = first.unwrap();
            assert_eq!(
                a.cmp_rules(first),
                Order::Equal,
                "round {round}: {a:?} vs {first:?}"
            );
            if !allowed(st, &client) {
                panic!("round {round}: chose where the stream may not be heard");
            }
        }
    }

    #[test]
    fn rank_marks_every_mount_of_a_stream_the_client_may_not_hear() {
        let mut s = snapshot(vec![relay("a", 0, Some(10)), relay("b", 0, None)]);
        s.streams[0].allowed_countries = Some(vec![CountryCode::parse("AT").unwrap()]);
        let de = ClientGeo {
            country: Some(CountryCode::parse("DE").unwrap()),
            coords: None,
            ..ClientGeo::default()
        };
        let ranked = rank(
            &s,
            &s.streams[0],
            &de,
            Want::default(),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(
            ranked
                .iter()
                .all(|a| a.excluded == Some(Excluded::GeoBlocked))
        );
        assert_eq!(
            choose(
                &s,
                &s.streams[0],
                &de,
                Want::default(),
                NOW,
                TTL,
                &mut StdRng::seed_from_u64(1)
            ),
            None
        );
        let survey = survey(&s, &s.streams[0], NOW, TTL);
        assert!(
            survey.iter().all(|a| a.excluded.is_none()),
            "the admin's view"
        );
    }

    #[test]
    fn an_https_listener_is_ranked_as_chosen() {
        // The plain relay is emptier; an HTTPS listener goes to the https
        // one by both paths, and sees the plain one second.
        let mut s = snapshot(vec![
            relay("plain", 0, Some(100)),
            relay("tls", 60, Some(100)),
        ]);
        s.servers[1].https_url = Some("https://tls".into());
        s.reindex();
        let https = Want { https: true };
        let mut rng = StdRng::seed_from_u64(3);
        let st = &s.streams[0];
        let ranked = rank(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng);
        let order: Vec<(usize, u8)> = ranked.iter().map(|a| (a.mount, a.tier)).collect();
        assert_eq!(order, vec![(1, 0), (0, 1)]);
        assert_eq!(
            choose(&s, st, &ClientGeo::default(), https, NOW, TTL, &mut rng),
            Some(1)
        );
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
            Want::default(),
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
            ..ClientGeo::default()
        };
        for seed in 0..10 {
            let ranked = rank(
                &s,
                &s.streams[0],
                &client,
                Want::default(),
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
            ..ClientGeo::default()
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
            Want::default(),
            NOW,
            TTL,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(ranked[0].distance_km.unwrap() < 1.0);
    }

    #[test]
    fn stream_totals_count_serving_mounts_and_every_reservation() {
        let mut down = relay("down", 7, Some(10));
        down.up = false;
        let s = snapshot(vec![relay("a", 3, Some(10)), relay("b", 5, Some(20)), down]);
        Reservation::try_new(&s, 2, NOW, TTL).unwrap().commit();
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

    fn names(s: &Snapshot, ranked: &[Assessed]) -> Vec<String> {
        let name = |a: &Assessed| s.servers[s.mounts[a.mount].server].name.clone();
        ranked.iter().map(name).collect()
    }

    fn rank_for(s: &Snapshot, client: &ClientGeo) -> Vec<Assessed> {
        let mut rng = StdRng::seed_from_u64(1);
        rank(
            s,
            &s.streams[0],
            client,
            Want::default(),
            NOW,
            TTL,
            &mut rng,
        )
    }

    #[test]
    fn an_overflow_tier_is_untouched_until_every_lower_tier_is_full() {
        // The CDN (tier 2) is empty and heavy; the own relays take every
        // listener they have room for (3 + 2) first, then the CDN.
        let mut cdn = relay("cdn", 0, Some(1000));
        cdn.policy.tier = 2;
        cdn.weight = 10_000;
        let s = snapshot(vec![relay("a", 7, Some(10)), relay("b", 8, Some(10)), cdn]);
        let ranked = rank_for(&s, &ClientGeo::default());
        assert_eq!(names(&s, &ranked)[2], "cdn");
        let why = reasons(&ranked, false);
        assert!(
            matches!(
                why[2],
                Reason::Overflow {
                    tier: 2,
                    first_tier: 1,
                    ..
                }
            ),
            "{why:?}"
        );
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..5 {
            let m = choose_any(&s, &mut rng).unwrap();
            assert_ne!(s.servers[s.mounts[m].server].name, "cdn");
        }
        assert_eq!(reserved(&s), vec![3, 2, 0]);
        let m = choose_any(&s, &mut rng).unwrap();
        assert_eq!(s.servers[s.mounts[m].server].name, "cdn", "tier 1 is full");
    }

    #[test]
    fn an_overflow_tier_serves_when_the_lower_one_is_down_or_out_of_reach() {
        let mut cdn = relay("cdn", 0, Some(10));
        cdn.policy.tier = 2;
        let mut own = relay("own", 0, Some(10));
        own.up = false;
        let s = snapshot(vec![own, cdn]);
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("cdn"));
        let mut own = relay("own", 0, Some(10));
        own.policy.ip_versions = v4_only();
        let mut cdn = relay("cdn", 0, Some(10));
        cdn.policy.tier = 2;
        let s = snapshot(vec![own, cdn]);
        assert_eq!(pick(&s, &from(V6, None), 1), Some("cdn"));
        assert_eq!(pick(&s, &from(V4, None), 1), Some("own"));
    }

    #[test]
    fn a_client_never_goes_to_a_relay_of_the_other_ip_version() {
        // The IPv4-only relay is emptier; IPv6 clients still go to the
        // other, and with only IPv4 relays they get nothing.
        let mut v4 = relay("v4", 0, Some(100));
        v4.policy.ip_versions = v4_only();
        let s = snapshot(vec![v4, relay("dual", 90, Some(100))]);
        assert_eq!(pick(&s, &from(V4, None), 1), Some("v4"));
        assert_eq!(pick(&s, &from("::ffff:192.0.2.10", None), 1), Some("v4"));
        for seed in 0..5 {
            assert_eq!(pick(&s, &from(V6, None), seed), Some("dual"));
        }
        let ranked = rank_for(&s, &from(V6, None));
        assert_eq!(ranked[1].excluded, Some(Excluded::IpVersion));
        let mut v4 = relay("v4", 0, Some(100));
        v4.policy.ip_versions = v4_only();
        let s = snapshot(vec![v4]);
        assert_eq!(pick(&s, &from(V6, None), 1), None);
    }

    #[test]
    fn a_relay_for_some_networks_takes_only_their_clients() {
        let mut isp = relay("isp", 0, Some(100));
        isp.policy.only_asns = vec![3320];
        isp.policy.only_prefixes = vec!["198.51.100.0/24".parse().unwrap()];
        let s = snapshot(vec![isp, relay("public", 50, Some(100))]);
        assert_eq!(pick(&s, &from(V4, Some(3320)), 1), Some("isp"));
        assert_eq!(pick(&s, &from("198.51.100.7", None), 1), Some("isp"));
        assert_eq!(pick(&s, &from(V4, Some(1)), 1), Some("public"));
        assert_eq!(pick(&s, &from(V4, None), 1), Some("public"));
        let ranked = rank_for(&s, &from(V4, Some(1)));
        assert_eq!(ranked[1].excluded, Some(Excluded::OtherNetwork));
    }

    #[test]
    fn a_client_prefers_a_relay_of_its_own_as_however_far_or_full() {
        // Berlin client in AS 3320: the Sydney relay listing 3320 wins over
        // an empty Frankfurt relay; other clients go to Frankfurt.
        let mut syd = located("syd", "AU", -33.87, 151.21);
        syd.listeners = 90;
        syd.policy.asns = vec![3320, 8881];
        let s = snapshot(vec![located("fra", "DE", 50.11, 8.68), syd]);
        let mut client = at(52.52, 13.40);
        client.asn = Some(3320);
        assert_eq!(pick(&s, &client, 1), Some("syd"));
        let ranked = rank_for(&s, &client);
        assert_eq!(names(&s, &ranked), ["syd", "fra"]);
        let why = reasons(&ranked, true);
        assert!(matches!(why[0], Reason::SameAs { .. }), "{why:?}");
        assert!(matches!(why[1], Reason::OtherAs { .. }), "{why:?}");
        client.asn = Some(1);
        assert_eq!(pick(&s, &client, 1), Some("fra"));
        // Full, it gives way.
        let mut syd = located("syd", "AU", -33.87, 151.21);
        syd.listeners = 100;
        syd.policy.asns = vec![3320];
        let s = snapshot(vec![located("fra", "DE", 50.11, 8.68), syd]);
        client.asn = Some(3320);
        assert_eq!(pick(&s, &client, 1), Some("fra"));
    }

    #[test]
    fn a_bandwidth_budget_admits_exactly_budget_over_bitrate_listeners() {
        // 1 Mbit/s at 128 kbit/s: 7 listeners (896 kbit/s), 2 of them
        // already there; the slots of the mount (100) never matter.
        let mut a = relay("a", 2, Some(100));
        a.policy.max_mbps = Some(1.0);
        let mut s = snapshot(vec![a]);
        s.streams[0].bitrate_kbps = Some(128);
        s.reindex();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..5 {
            choose_any(&s, &mut rng).unwrap();
        }
        assert_eq!(choose_any(&s, &mut rng), None);
        let ranked = rank_for(&s, &ClientGeo::default());
        assert_eq!(ranked[0].excluded, Some(Excluded::OverBudget));
        assert_eq!(ranked[0].free, Some(0));
        // A relay of the same budget with room takes the next one.
        let mut a = relay("a", 7, Some(100));
        a.policy.max_mbps = Some(1.0);
        let mut b = relay("b", 6, Some(100));
        b.policy.max_mbps = Some(1.0);
        let mut s = snapshot(vec![a, b]);
        s.streams[0].bitrate_kbps = Some(128);
        s.reindex();
        assert_eq!(pick(&s, &ClientGeo::default(), 1), Some("b"));
        assert_eq!(pick(&s, &ClientGeo::default(), 2), None);
    }

    #[test]
    fn geo_restriction() {
        let s = snapshot(vec![relay("a", 0, None)]);
        let mut st = StreamEntry {
            bitrate_kbps: None,
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
            ..ClientGeo::default()
        };
        let fr = ClientGeo {
            country: Some(CountryCode::parse("FR").unwrap()),
            coords: None,
            ..ClientGeo::default()
        };
        assert!(allowed(&st, &de));
        assert!(!allowed(&st, &fr));
        assert!(allowed(&st, &ClientGeo::default()));
        st.allow_unknown = false;
        assert!(!allowed(&st, &ClientGeo::default()));
        assert!(allowed(&s.streams[0], &fr));
    }
}
