//! Slot reservations between polls, lock-free.
//!
//! Each redirect reserves a slot on its mount and its server, so a burst of
//! listeners between two polls spreads over the relays instead of all going
//! to the one that looked emptiest at the last poll. A reservation lives in a
//! one-second bucket of a ring of atomics and stops counting when either
//! - a poll that started at least `grace` after the bucket ended has counted
//!   the server (the listener is in `listeners` now, or never came), or
//! - it is older than the TTL (polling stopped).
//!
//! Counting is conservative: a listener may be counted both as listener and
//! as reservation for up to `grace`, never as neither.

use std::sync::atomic::{AtomicU64, Ordering};

/// Ring length in seconds: the longest TTL the ring can represent.
pub const SLOTS: u64 = 128;

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
    pub fn window_start(&self, now_s: u64, ttl_s: u64) -> u64 {
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

    /// A poll that started at `poll_started_ms` counted this server:
    /// reservations from buckets that ended `grace_ms` before it are done.
    pub fn release_counted(&self, poll_started_ms: i64, grace_ms: i64) {
        let first_live = (poll_started_ms - grace_ms).max(0) as u64 / 1000;
        self.released_before.fetch_max(first_live, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
