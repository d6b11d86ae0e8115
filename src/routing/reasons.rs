//! Why each mount placed where it did in a ranking, as data: the rule that
//! decided and the numbers it compared. The explain page puts these into
//! words; routing never hands out prose or its internal arithmetic.

use std::cmp::Ordering;

use super::rules::{Excluded, Fill};
use super::select::Assessed;

/// One mount's place in a ranking (see `select::rank`). Mounts are indexes
/// into `Snapshot::mounts`; `first` is the mount ranked first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// It cannot take this listener now.
    Excluded(Excluded),
    /// First, and the only candidate.
    Only,
    /// First: the least full for its weight in the first ring with a
    /// candidate. `ring_end_km` is where that ring ends (located clients).
    LeastFull {
        fill: Fill,
        ring_end_km: Option<f64>,
    },
    /// First among candidates as full for their weight as it, as the relay
    /// in the client's country.
    TieWonByCountry { fill: Fill },
    /// First among equals, by chance.
    TieWonByChance { fill: Fill },
    /// An overflow relay (`tier` above `first`'s): used only when every
    /// relay of a lower tier is full or cannot take the client.
    Overflow {
        tier: u8,
        first: usize,
        first_tier: u8,
    },
    /// First among several: the client is in one of its ASes (`asns`).
    SameAs { fill: Fill },
    /// `first` is in the client's AS (`asns`), this one is not.
    OtherAs { first: usize },
    /// The listener came over HTTPS: relays with an `https_url` come first
    /// and `first` has one; this one does not.
    HttpsPreferred { first: usize },
    /// Outside the ring of `first`, which ends at `ring_end_km`.
    Farther {
        km: f64,
        ring: u32,
        ring_end_km: f64,
    },
    /// The relay's location is unknown: after every located relay.
    LocationUnknown,
    /// The client has only a country, and this relay is not in it.
    OtherCountry,
    /// As near, but fuller for its weight than `first`.
    FullerForWeight {
        fill: Fill,
        first: usize,
        first_fill: Fill,
    },
    /// As full for its weight as `first`, which is in the client's country.
    TieLostToCountry { first: usize },
    /// As full for its weight as `first`; chance put that one first.
    TieLostByChance { first: usize },
}

/// The reason of every mount of `ranked` (in the same order); `located`
/// says whether the client has coordinates.
pub fn reasons(ranked: &[Assessed], located: bool) -> Vec<Reason> {
    let candidates = ranked.iter().filter(|a| a.excluded.is_none()).count();
    let first = ranked.first().filter(|a| a.excluded.is_none());
    ranked
        .iter()
        .enumerate()
        .map(|(i, a)| match (a.excluded, first) {
            (Some(e), _) => Reason::Excluded(e),
            (None, Some(f)) if i > 0 => lower(a, f, located),
            (None, _) if candidates == 1 => Reason::Only,
            (None, _) => winner(a, &ranked[1..candidates]),
        })
        .collect()
}

/// Why the first candidate is first, against the others.
fn winner(a: &Assessed, others: &[Assessed]) -> Reason {
    let fill = a.standing.fill;
    if a.same_as && others.iter().any(|b| b.level == a.level && !b.same_as) {
        return Reason::SameAs { fill };
    }
    let tied = |b: &&Assessed| b.level == a.level && b.tier == a.tier && b.ring == a.ring;
    let tied: Vec<&Assessed> = others
        .iter()
        .filter(tied)
        .filter(|b| b.standing.fill.cmp_fill(&fill) == Ordering::Equal)
        .collect();
    if tied.is_empty() {
        return Reason::LeastFull {
            fill,
            ring_end_km: a.ring_end_km,
        };
    }
    if a.standing.local && tied.iter().all(|b| !b.standing.local) {
        Reason::TieWonByCountry { fill }
    } else {
        Reason::TieWonByChance { fill }
    }
}

/// Why candidate `a` comes after `first`: the first rule that tells them
/// apart.
fn lower(a: &Assessed, first: &Assessed, located: bool) -> Reason {
    if a.level > first.level {
        return Reason::Overflow {
            tier: a.level,
            first: first.mount,
            first_tier: first.level,
        };
    }
    if a.tier > first.tier {
        return Reason::HttpsPreferred { first: first.mount };
    }
    if first.same_as && !a.same_as {
        return Reason::OtherAs { first: first.mount };
    }
    if a.ring > first.ring {
        return match (located, a.distance_km) {
            (true, None) => Reason::LocationUnknown,
            (true, Some(km)) => Reason::Farther {
                km,
                ring: a.ring,
                ring_end_km: first.ring_end_km.unwrap_or(km),
            },
            (false, _) => Reason::OtherCountry,
        };
    }
    let (fill, first_fill) = (a.standing.fill, first.standing.fill);
    match fill.cmp_fill(&first_fill) {
        Ordering::Greater => Reason::FullerForWeight {
            fill,
            first: first.mount,
            first_fill,
        },
        _ if first.standing.local && !a.standing.local => {
            Reason::TieLostToCountry { first: first.mount }
        }
        _ => Reason::TieLostByChance { first: first.mount },
    }
}
