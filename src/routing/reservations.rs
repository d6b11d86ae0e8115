//! Slot reservations between polls, lock-free.
//!
//! Each redirect reserves a slot on its mount and its server, so a burst of
//! listeners between two polls spreads over the relays instead of all going
//! to the one that looked emptiest at the last poll.
//!
//! A [`Ledger`] keeps the count exact across polls. It counts every
//! reservation (`issued`) and, at each poll of the relay, reconciles: of the
//! redirects sent since the previous poll (plus those still pending then),
//! the ones the relay reports as arrived are now in its `listeners` and stop
//! counting; the rest stay pending, but only if they were made within
//! `grace` before the poll (older ones never came). Arrivals are read from
//! Icecast's cumulative `listener_connections` when `load.xsl` reports it,
//! else bounded from below by the growth of the mount's `listeners` (which
//! never overstates arrivals, so the count stays conservative). Relays
//! count a connection before its listener (Icecast-KH by up to a few
//! hundred milliseconds), so connections beyond the growth of `listeners`
//! never free the reservations of the last second: those wait for
//! `listeners` to show them. A slot is
//! thus counted once: as a reservation until the relay counts it, then as
//! a listener.
//!
//! Between polls a reservation's count is `pending + issued - base`: three
//! atomic loads, whatever the load. When polls stop (relay down, cron gone)
//! the one-second ring below takes over, so reservations expire after the
//! TTL instead of piling up.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::sync::lock;

/// Ring length in seconds: the longest TTL the ring can represent.
pub(crate) const SLOTS: u64 = 128;

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

fn pack(second: u64, count: u64) -> u64 {
    (second << COUNT_BITS) | (count & COUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> COUNT_BITS, v & COUNT_MASK)
}

#[derive(Debug)]
pub struct ReservationRing {
    slots: [AtomicU64; SLOTS as usize],
    /// First second whose reservations still count after the last poll.
    released_before: AtomicU64,
}

impl Default for ReservationRing {
    fn default() -> Self {
        ReservationRing {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            released_before: AtomicU64::new(0),
        }
    }
}

impl ReservationRing {
    pub fn add(&self, now_s: u64) {
        let slot = &self.slots[(now_s % SLOTS) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (sec, count) = unpack(cur);
            let next = if sec == now_s {
                pack(now_s, count + 1)
            } else {
                // The slot holds a second at least SLOTS old: start afresh.
                pack(now_s, 1)
            };
            match slot.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes back a reservation made by `add(now_s)`.
    pub fn remove(&self, now_s: u64) {
        let slot = &self.slots[(now_s % SLOTS) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (sec, count) = unpack(cur);
            if sec != now_s || count == 0 {
                return;
            }
            match slot.compare_exchange_weak(
                cur,
                pack(sec, count - 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The first second whose reservations still count at `now_s`.
    pub(crate) fn window_start(&self, now_s: u64, ttl_s: u64) -> u64 {
        let ttl = ttl_s.clamp(1, SLOTS);
        (now_s + 1)
            .saturating_sub(ttl)
            .max(self.released_before.load(Ordering::Acquire))
    }

    /// Reservations that still count at `now_s`.
    pub fn count(&self, now_s: u64, ttl_s: u64) -> u64 {
        let oldest = self.window_start(now_s, ttl_s);
        let mut total = 0;
        for s in oldest..=now_s {
            let (sec, count) = unpack(self.slots[(s % SLOTS) as usize].load(Ordering::Acquire));
            if sec == s {
                total += count;
            }
        }
        total
    }

    /// Reservations in the buckets of seconds `from..=to`, whatever polls
    /// released (the ledger's reconciliation reads raw history).
    pub(crate) fn count_range(&self, from: u64, to: u64) -> u64 {
        let from = from.max(to.saturating_sub(SLOTS - 1));
        let mut total = 0;
        for s in from..=to {
            let (sec, count) = unpack(self.slots[(s % SLOTS) as usize].load(Ordering::Acquire));
            if sec == s {
                total += count;
            }
        }
        total
    }

    /// A poll that started at `poll_started_ms` counted this server:
    /// reservations from buckets that ended `grace_ms` before it are done.
    pub(crate) fn release_counted(&self, poll_started_ms: i64, grace_ms: i64) {
        let first_live = (poll_started_ms - grace_ms).max(0) as u64 / 1000;
        self.released_before.fetch_max(first_live, Ordering::AcqRel);
    }
}

/// How much later than its connection a relay may count a listener:
/// Icecast-KH up to 365 ms was measured (`listener_connections` rises
/// first), Icecast 2.4 less.
const LISTENER_LAG_MS: i64 = 1_000;

const PENDING_BITS: u32 = 24;
const PENDING_MASK: u64 = (1 << PENDING_BITS) - 1;

/// What one poll of the relay said, for reconciling a [`Ledger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Start of the poll (ms since the epoch).
    pub poll_ms: i64,
    /// Listeners the relay reported (the mount's, or the server's sum).
    pub listeners: u64,
    /// The relay's cumulative `listener_connections`, when it reports it
    /// and it may be attributed to this ledger (one mount per server).
    pub connections: Option<u64>,
}

/// Exact reservations of one mount or server; see the module comment.
#[derive(Debug, Default)]
pub struct Ledger {
    ring: ReservationRing,
    issued: AtomicU64,
    /// `base << PENDING_BITS | pending`, swapped as one so a reader never
    /// sees the base of one poll with the pending count of another.
    state: AtomicU64,
    /// The state before the last reconcile, and the poll that reconcile
    /// folded in: a snapshot built before it (whose listener counts are the
    /// older poll's) must be read with the older state, or a request in
    /// between would see the arrivals neither as listeners nor reserved.
    prev_state: AtomicU64,
    state_poll_ms: std::sync::atomic::AtomicI64,
    /// Until this second `pending + issued - base` is within the TTL;
    /// afterwards (no poll for a while) the ring's count is used. 0 = never
    /// reconciled.
    fast_until_s: AtomicU64,
    last: std::sync::Mutex<Option<Observation>>,
}

impl Ledger {
    pub fn add(&self, now_s: u64) {
        self.ring.add(now_s);
        self.issued.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes back a reservation made by `add(now_s)`.
    pub fn remove(&self, now_s: u64) {
        self.ring.remove(now_s);
        self.issued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Reservations that still count at `now_s`, as of the latest poll.
    pub fn count(&self, now_s: u64, ttl_s: u64) -> u64 {
        self.count_seen(now_s, ttl_s, i64::MAX)
    }

    /// Reservations that still count at `now_s` for a reader whose
    /// listener counts come from the poll that started at `seen_poll_ms`.
    pub(crate) fn count_seen(&self, now_s: u64, ttl_s: u64, seen_poll_ms: i64) -> u64 {
        if now_s >= self.fast_until_s.load(Ordering::SeqCst) {
            return self.ring.count(now_s, ttl_s);
        }
        let issued = self.issued.load(Ordering::SeqCst);
        let packed = loop {
            let poll = self.state_poll_ms.load(Ordering::SeqCst);
            let v = if seen_poll_ms >= poll {
                self.state.load(Ordering::SeqCst)
            } else {
                self.prev_state.load(Ordering::SeqCst)
            };
            if self.state_poll_ms.load(Ordering::SeqCst) == poll {
                break v;
            }
        };
        let (base, pending) = unpack_state(packed);
        pending + issued.saturating_sub(base)
    }

    /// The per-second reservations, released only by a poll's grace: the
    /// conservative count a cluster shares (see `cluster::slots`).
    pub fn ring(&self) -> &ReservationRing {
        &self.ring
    }

    /// Every reservation ever made (minus those taken back).
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    /// Folds in a poll of the relay. Redirects made in the poll's own
    /// second are treated as made after it (they may not be counted yet).
    /// An observation not newer than the last one changes nothing.
    pub fn reconcile(&self, obs: Observation, grace_ms: i64, ttl_s: u64) {
        let mut last = lock(&self.last);
        if last.is_some_and(|l| l.poll_ms >= obs.poll_ms) {
            return;
        }
        let poll_s = (obs.poll_ms.max(0) / 1000) as u64;
        let grace_start_s = ((obs.poll_ms - grace_ms).max(0) / 1000) as u64;
        let now_issued = self.issued.load(Ordering::Acquire);
        let after = self.ring.count_range(poll_s, poll_s + SLOTS - 1);
        let issued_at_poll = now_issued.saturating_sub(after);
        let recent = if poll_s > grace_start_s {
            self.ring.count_range(grace_start_s, poll_s - 1)
        } else {
            0
        };
        let (base, pending) = unpack_state(self.state.load(Ordering::Acquire));
        let candidates = pending + issued_at_poll.saturating_sub(base);
        let arrived = match *last {
            Some(prev) => {
                let grown = obs.listeners.saturating_sub(prev.listeners);
                let connected = match (prev.connections, obs.connections) {
                    (Some(a), Some(b)) if b >= a => b - a,
                    _ => 0,
                };
                // A connection the relay has not yet counted as a listener
                // may be one of the redirects of the last moments, about to
                // take its slot: those stay reserved until `listeners`
                // shows them (older connections not in `listeners` left).
                let lag_start_s = ((obs.poll_ms - LISTENER_LAG_MS).max(0) / 1000) as u64;
                let just_sent = after
                    + if poll_s > lag_start_s {
                        self.ring.count_range(lag_start_s, poll_s - 1)
                    } else {
                        0
                    };
                let uncounted = connected.saturating_sub(grown).min(just_sent);
                grown.max(connected - uncounted)
            }
            None => 0,
        };
        let still_pending = candidates.saturating_sub(arrived).min(recent);
        // More arrivals than candidates: redirects of the poll's own second
        // that were made before it started (and counted) are among them;
        // they move to before the base instead of counting on.
        let early = arrived.saturating_sub(candidates).min(after);
        // Readers go by `state_poll_ms`: the old state stays readable for
        // snapshots of the older poll (see `count_seen`).
        self.prev_state
            .store(self.state.load(Ordering::SeqCst), Ordering::SeqCst);
        self.state_poll_ms.store(obs.poll_ms, Ordering::SeqCst);
        self.state.store(
            ((issued_at_poll + early) << PENDING_BITS) | still_pending.min(PENDING_MASK),
            Ordering::SeqCst,
        );
        self.ring.release_counted(obs.poll_ms, grace_ms);
        // The older state may still be read: keep the fast path only while
        // both are within the TTL.
        let fast_until = (grace_start_s + ttl_s.clamp(1, SLOTS)).max(poll_s + 1);
        let fast_until = match *last {
            Some(prev) => fast_until
                .min(((prev.poll_ms - grace_ms).max(0) / 1000) as u64 + ttl_s.clamp(1, SLOTS)),
            None => fast_until,
        };
        self.fast_until_s.store(fast_until, Ordering::SeqCst);
        *last = Some(obs);
    }
}

fn unpack_state(v: u64) -> (u64, u64) {
    (v >> PENDING_BITS, v & PENDING_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(poll_ms: i64, listeners: u64, connections: Option<u64>) -> Observation {
        Observation {
            poll_ms,
            listeners,
            connections,
        }
    }

    #[test]
    fn ledger_counts_each_reservation_until_a_poll_sees_it_arrive() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 0, Some(0)), 5000, 60);
        for _ in 0..3 {
            l.add(1002);
        }
        assert_eq!(l.count(1003, 60), 3);
        // Poll at 1004.0, within the grace of all three: the relay counted
        // 3 new connections, so none is pending (the double count).
        l.reconcile(obs(1_004_000, 3, Some(3)), 5000, 60);
        assert_eq!(l.count(1004, 60), 0);
        l.add(1004);
        assert_eq!(l.count(1005, 60), 1, "made in the poll's second: kept");
    }

    #[test]
    fn ledger_counts_once_a_redirect_made_in_the_polls_own_second() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 0, Some(0)), 5000, 60);
        // Two redirects at 1004.1 s, both connected before a poll at
        // 1004.6 s: the poll counts them, so they stop counting as
        // reservations even though they share the poll's second.
        l.add(1004);
        l.add(1004);
        l.reconcile(obs(1_004_600, 2, Some(2)), 5000, 60);
        assert_eq!(l.count(1005, 60), 0);
        // A third in that second that had not arrived keeps counting.
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 0, Some(0)), 5000, 60);
        for _ in 0..3 {
            l.add(1004);
        }
        l.reconcile(obs(1_004_600, 2, Some(2)), 5000, 60);
        assert_eq!(l.count(1005, 60), 1);
    }

    #[test]
    fn a_connection_the_relay_has_not_counted_as_a_listener_keeps_its_slot() {
        // Icecast-KH counts a connection 1-14 ms after the listener
        // arrives, the listener 93-365 ms later: a poll in between (the
        // re-poll of a stream that looks full) must not free the slot.
        for (made, poll_ms) in [(1010, 1_010_500), (1009, 1_010_200)] {
            let l = Ledger::default();
            l.reconcile(obs(1_000_000, 1, Some(10)), 1000, 60);
            l.add(made);
            l.reconcile(obs(poll_ms, 1, Some(11)), 1000, 60);
            assert_eq!(
                l.count(1011, 60),
                1,
                "redirect at {made}, poll at {poll_ms}"
            );
            // The next poll sees the listener: the slot counts as one.
            l.reconcile(obs(1_012_000, 2, Some(11)), 1000, 60);
            assert_eq!(l.count(1012, 60), 0);
        }
        // An older connection the relay has not counted as a listener
        // either (it left again) is an arrival as before.
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 1, Some(10)), 1000, 60);
        l.add(1005);
        l.reconcile(obs(1_010_500, 1, Some(11)), 5000, 60);
        assert_eq!(l.count(1011, 60), 0);
    }

    #[test]
    fn ledger_keeps_recent_no_shows_pending_and_drops_old_ones() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 10, Some(100)), 5000, 60);
        l.add(1001); // older than the grace at the next poll
        l.add(1008);
        l.add(1008);
        // One connection arrived: it takes the oldest; of the two left,
        // only the two made within the grace can still come.
        l.reconcile(obs(1_010_000, 11, Some(101)), 5000, 60);
        assert_eq!(l.count(1010, 60), 2);
        // Nothing more arrived by a poll long after: nothing is pending.
        l.reconcile(obs(1_020_000, 11, Some(101)), 5000, 60);
        assert_eq!(l.count(1020, 60), 0);
    }

    #[test]
    fn ledger_without_connections_trusts_only_listener_growth() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 10, None), 5000, 60);
        for _ in 0..4 {
            l.add(1008);
        }
        // Listeners grew by 1 (others may have left): 3 stay pending.
        l.reconcile(obs(1_010_000, 11, None), 5000, 60);
        assert_eq!(l.count(1010, 60), 3);
    }

    #[test]
    fn ledger_falls_back_to_the_ring_when_polls_stop() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 0, None), 5000, 30);
        l.add(1001);
        assert_eq!(l.count(1020, 30), 1);
        assert_eq!(l.count(1040, 30), 0, "expired with the TTL");
        l.add(1040);
        assert_eq!(l.count(1041, 30), 1);
    }

    #[test]
    fn a_snapshot_of_the_older_poll_reads_the_older_state() {
        let l = Ledger::default();
        l.reconcile(obs(1_000_000, 0, Some(0)), 5000, 60);
        l.add(1002);
        l.add(1002);
        // The poll at 1004 s counted both; a request still holding the
        // snapshot of the poll at 1000 s (0 listeners) must see them as
        // reserved, the new snapshot (2 listeners) not.
        l.reconcile(obs(1_004_000, 2, Some(2)), 5000, 60);
        assert_eq!(l.count_seen(1004, 60, 1_000_000), 2);
        assert_eq!(l.count_seen(1004, 60, 1_004_000), 0);
    }

    #[test]
    fn ledger_ignores_an_older_observation() {
        let l = Ledger::default();
        l.reconcile(obs(1_010_000, 0, Some(5)), 5000, 60);
        l.add(1011);
        l.reconcile(obs(1_000_000, 0, Some(0)), 5000, 60);
        assert_eq!(l.count(1012, 60), 1);
    }

    #[test]
    fn counts_within_ttl() {
        let r = ReservationRing::default();
        r.add(1000);
        r.add(1000);
        r.add(1005);
        assert_eq!(r.count(1005, 60), 3);
        assert_eq!(r.count(1059, 60), 3);
        assert_eq!(r.count(1060, 60), 1, "the two from second 1000 expired");
        assert_eq!(r.count(1065, 60), 0);
    }

    #[test]
    fn released_by_a_poll_after_the_grace() {
        let r = ReservationRing::default();
        r.add(1000);
        r.add(1003);
        // Poll at 1005.5 s with 5 s grace: only buckets ending by 1000.5 go,
        // and bucket 1000 ends at 1001, so nothing is released yet.
        r.release_counted(1_005_500, 5000);
        assert_eq!(r.count(1006, 60), 2);
        // Poll at 1006.0: bucket 1000 ended at 1001 = 1006 - 5.
        r.release_counted(1_006_000, 5000);
        assert_eq!(r.count(1006, 60), 1);
        // An older poll result never brings reservations back.
        r.release_counted(1_000_000, 5000);
        assert_eq!(r.count(1006, 60), 1);
    }

    #[test]
    fn remove_undoes_add() {
        let r = ReservationRing::default();
        r.add(50);
        r.add(50);
        r.remove(50);
        assert_eq!(r.count(50, 60), 1);
        r.remove(49); // nothing reserved then: no effect
        assert_eq!(r.count(50, 60), 1);
    }

    #[test]
    fn slot_reuse_after_a_full_turn() {
        let r = ReservationRing::default();
        r.add(10);
        r.add(10 + SLOTS);
        assert_eq!(r.count(10 + SLOTS, SLOTS), 1);
    }

    #[test]
    fn concurrent_adds_are_all_counted() {
        let r = std::sync::Arc::new(ReservationRing::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        r.add(77);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.count(77, 60), 40_000);
    }
}
