//! What the console leads with: each stream, relay and mount in one word
//! (full, low, down, draining, ok…), the listeners it has now, and what
//! would happen if its busiest relay failed. Pure functions of a
//! [`Routing`], so every page and the live updates agree.

use super::Routing;
use super::rules;
use super::select::{Excluded, StreamTotals, free_slots};
use super::snapshot::StreamEntry;
use crate::domain::health::State as Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Ok,
    /// Free slots below the alert threshold of the capacity.
    Low,
    /// No free slot: new listeners are turned away (or sent elsewhere).
    Full,
    /// Down, or (a stream) no relay that can serve it.
    Down,
    /// Disabled by the operator: keeps its listeners, gets no new ones.
    Draining,
    /// Not polled yet.
    Unknown,
    /// A mount whose relay is up but does not list it: the source is off.
    Offline,
}

impl Condition {
    /// The CSS class suffix (`state-full`) and the word for machines.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ok => "ok",
            Condition::Low => "low",
            Condition::Full => "full",
            Condition::Down => "down",
            Condition::Draining => "draining",
            Condition::Unknown => "unknown",
            Condition::Offline => "offline",
        }
    }

    /// The word a person reads.
    pub fn words(self) -> &'static str {
        match self {
            Condition::Ok => "ok",
            Condition::Low => "low",
            Condition::Full => "full",
            Condition::Down => "down",
            Condition::Draining => "draining",
            Condition::Unknown => "not polled yet",
            Condition::Offline => "source offline?",
        }
    }
}

/// Full when no slot is free, low when fewer than `low_percent` of the
/// capacity are, from free and capacity (`None`: no limit known).
fn by_room(free: Option<u64>, capacity: Option<u64>, low_percent: u8) -> Condition {
    match (free, capacity) {
        (Some(0), _) => Condition::Full,
        (Some(f), Some(c)) if c > 0 && f * 100 < c * u64::from(low_percent) => Condition::Low,
        _ => Condition::Ok,
    }
}

/// A stream: down when no relay can serve it, else by its free slots.
pub fn stream(t: &StreamTotals, low_percent: u8) -> Condition {
    if t.relays == 0 {
        return Condition::Down;
    }
    by_room(t.free, t.capacity, low_percent)
}

/// A relay, over the mounts it lists now (and its own limit).
pub fn server(r: &Routing, idx: usize, low_percent: u8) -> Condition {
    let s = &r.snap.servers[idx];
    if !s.enabled {
        return Condition::Draining;
    }
    match s.health.state {
        Health::Unknown => return Condition::Unknown,
        Health::Down => return Condition::Down,
        Health::Up => {}
    }
    let seen = s.last_success_at.unwrap_or(i64::MIN);
    if let Some(max) = s.max_listeners {
        let used = s.listeners + s.counters.ledger.count_seen(r.now_s, r.ttl_s, seen);
        let server_free = u64::from(max).saturating_sub(used);
        if server_free == 0 {
            return Condition::Full;
        }
    }
    let (mut free, mut capacity, mut any) = (Some(0u64), Some(0u64), false);
    for m in r.snap.mounts.iter().filter(|m| m.server == idx && m.live) {
        any = true;
        let (f, _) = free_slots(m, s, r.now_s, r.ttl_s);
        free = free.zip(f).map(|(a, b)| a + b);
        capacity = capacity.zip(m.max).map(|(a, b)| a + u64::from(b));
    }
    if !any {
        return Condition::Ok;
    }
    by_room(free, capacity, low_percent)
}

/// A mount, as selection sees it for a client of unknown location.
pub fn mount(excluded: Option<Excluded>, server_health: Health) -> Condition {
    match excluded {
        None => Condition::Ok,
        Some(Excluded::Drained) => Condition::Draining,
        Some(Excluded::Down) if server_health == Health::Unknown => Condition::Unknown,
        Some(Excluded::Down) => Condition::Down,
        Some(Excluded::NotListed) => Condition::Offline,
        // Not seen by the admin's view (`select::survey`), which asks for
        // a plain listener the stream lets in.
        Some(
            Excluded::Full
            | Excluded::OverBudget
            | Excluded::GeoBlocked
            | Excluded::HttpsRequired
            | Excluded::IpVersion
            | Excluded::OtherNetwork,
        ) => Condition::Full,
    }
}

/// The stream's listeners now on each relay that is up (draining ones
/// included: they keep their listeners), by server index. The one
/// definition of "now" for the headline, the chart and the legend.
pub fn listeners_by_server(r: &Routing, st: &StreamEntry) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = Vec::new();
    for &i in &st.mounts {
        let m = &r.snap.mounts[i];
        if !m.live || !r.snap.servers[m.server].health.is_up() {
            continue;
        }
        match out.iter_mut().find(|(s, _)| *s == m.server) {
            Some((_, n)) => *n += u64::from(m.listeners),
            None => out.push((m.server, u64::from(m.listeners))),
        }
    }
    out
}

/// If the stream's busiest relay failed: its listeners, and how many of
/// them the other serving relays could not take (`None`: some relay's
/// limit is not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    pub relay: String,
    pub listeners: u64,
    pub stranded: Option<u64>,
}

impl Headroom {
    pub fn sentence(&self) -> String {
        let (relay, n) = (&self.relay, self.listeners);
        match self.stranded {
            Some(0) => format!(
                "If {relay}, the busiest relay, failed, the other relays have room for its {n} listeners."
            ),
            Some(k) => format!(
                "If {relay}, the busiest relay, failed, {k} of its {n} listeners would have nowhere to go."
            ),
            None => format!(
                "If {relay}, the busiest relay, failed, its {n} listeners would go to relays whose limit is not known."
            ),
        }
    }
}

pub fn headroom(r: &Routing, st: &StreamEntry) -> Option<Headroom> {
    let serving: Vec<(usize, u64, Option<u64>)> = st
        .mounts
        .iter()
        .filter_map(|&i| {
            let m = &r.snap.mounts[i];
            let s = &r.snap.servers[m.server];
            rules::serving(m.live, s.enabled, s.health.is_up()).then(|| {
                let (free, _) = free_slots(m, s, r.now_s, r.ttl_s);
                (m.server, u64::from(m.listeners), free)
            })
        })
        .collect();
    let busiest = listeners_by_server(r, st)
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))?;
    let others_free = serving
        .iter()
        .filter(|(s, _, _)| *s != busiest.0)
        .try_fold(0u64, |sum, (_, _, free)| free.map(|f| sum + f));
    Some(Headroom {
        relay: r.snap.servers[busiest.0].name.clone(),
        listeners: busiest.1,
        stranded: others_free.map(|f| busiest.1.saturating_sub(f)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(relays: usize, free: Option<u64>, capacity: Option<u64>) -> StreamTotals {
        StreamTotals {
            relays,
            listeners: 0,
            capacity,
            free,
            reserved: 0,
        }
    }

    #[test]
    fn a_stream_is_down_full_low_or_ok() {
        assert_eq!(stream(&totals(0, Some(0), Some(0)), 10), Condition::Down);
        assert_eq!(stream(&totals(2, Some(0), Some(8)), 10), Condition::Full);
        assert_eq!(stream(&totals(2, Some(9), Some(100)), 10), Condition::Low);
        assert_eq!(stream(&totals(2, Some(10), Some(100)), 10), Condition::Ok);
        assert_eq!(stream(&totals(1, None, None), 10), Condition::Ok);
    }

    fn routing(relays: Vec<crate::routing::testing::Relay>) -> Routing {
        use crate::routing::testing::{NOW, TTL, snapshot};
        Routing {
            snap: std::sync::Arc::new(snapshot(relays)),
            now_s: NOW,
            ttl_s: TTL,
        }
    }

    #[test]
    fn headroom_is_what_the_other_relays_cannot_take() {
        use crate::routing::testing::relay;
        let r = routing(vec![relay("a", 8, Some(10)), relay("b", 3, Some(5))]);
        let h = headroom(&r, &r.snap.streams[0]).unwrap();
        assert_eq!(
            (h.relay.as_str(), h.listeners, h.stranded),
            ("a", 8, Some(6))
        );
        // A draining relay keeps its listeners but takes no one else's.
        let mut b = relay("b", 3, Some(50));
        b.enabled = false;
        let r = routing(vec![relay("a", 8, Some(10)), b]);
        assert_eq!(headroom(&r, &r.snap.streams[0]).unwrap().stranded, Some(8));
        // A relay without a known limit: nobody can say.
        let r = routing(vec![relay("a", 8, Some(10)), relay("b", 1, None)]);
        assert_eq!(headroom(&r, &r.snap.streams[0]).unwrap().stranded, None);
        // Nobody listening: nothing to lose.
        let r = routing(vec![relay("a", 0, Some(10))]);
        assert_eq!(headroom(&r, &r.snap.streams[0]), None);
    }

    #[test]
    fn relays_are_full_low_down_or_draining() {
        use crate::routing::testing::relay;
        let mut down = relay("d", 0, Some(10));
        down.up = false;
        let mut draining = relay("x", 0, Some(10));
        draining.enabled = false;
        let r = routing(vec![
            relay("full", 10, Some(10)),
            relay("low", 95, Some(100)),
            relay("ok", 1, Some(100)),
            down,
            draining,
        ]);
        let got: Vec<Condition> = (0..5).map(|i| server(&r, i, 10)).collect();
        use Condition::*;
        assert_eq!(got, vec![Full, Low, Ok, Down, Draining]);
    }

    #[test]
    fn headroom_reads_as_a_sentence() {
        let h = |stranded| Headroom {
            relay: "fra-1".into(),
            listeners: 12,
            stranded,
        };
        assert!(
            h(Some(5))
                .sentence()
                .contains("5 of its 12 listeners would have nowhere to go")
        );
        assert!(h(Some(0)).sentence().contains("have room for its 12"));
        assert!(h(None).sentence().contains("not known"));
    }
}
