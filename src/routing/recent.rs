//! Counts of recent events (listeners turned away) over the last minute
//! and the last hour, lock-free: the redirect path bumps one slot of a
//! ring per second and one per minute; the console sums them.

use std::sync::atomic::{AtomicU64, Ordering};

/// The low bits of a slot hold its count, the high bits the unit (second
/// or minute) the count belongs to, so a slot left from an earlier lap of
/// the ring is told apart without a clock per slot.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

#[derive(Debug)]
struct Ring<const N: usize> {
    slots: [AtomicU64; N],
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> Ring<N> {
    fn add(&self, unit: u64) {
        let slot = &self.slots[(unit % N as u64) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (at, count) = (cur >> COUNT_BITS, cur & COUNT_MAX);
            let next = match at.cmp(&unit) {
                std::cmp::Ordering::Equal => (unit << COUNT_BITS) | (count + 1).min(COUNT_MAX),
                std::cmp::Ordering::Less => (unit << COUNT_BITS) | 1,
                // A later lap already took the slot: this event is too old.
                std::cmp::Ordering::Greater => return,
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Events in the `N` units ending with `now` (included).
    fn sum(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|v| {
                let at = v >> COUNT_BITS;
                at <= now && at + (N as u64) > now
            })
            .map(|v| v & COUNT_MAX)
            .sum()
    }
}

/// Events of the last minute (per second) and the last hour (per minute).
#[derive(Debug, Default)]
pub struct Recent {
    seconds: Ring<60>,
    minutes: Ring<60>,
}

impl Recent {
    pub fn add(&self, now_s: u64) {
        self.seconds.add(now_s);
        self.minutes.add(now_s / 60);
    }

    pub fn last_minute(&self, now_s: u64) -> u64 {
        self.seconds.sum(now_s)
    }

    /// The current minute and the 59 before it.
    pub fn last_hour(&self, now_s: u64) -> u64 {
        self.minutes.sum(now_s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    #[test]
    fn events_leave_the_minute_and_the_hour_as_time_passes() {
        let r = Recent::default();
        r.add(T);
        r.add(T);
        r.add(T + 30);
        assert_eq!(r.last_minute(T + 30), 3);
        assert_eq!(r.last_minute(T + 60), 1);
        assert_eq!(r.last_minute(T + 91), 0);
        assert_eq!(r.last_hour(T + 91), 3);
        assert_eq!(r.last_hour(T + 3 * 3600), 0);
    }

    #[test]
    fn a_slot_reused_a_lap_later_starts_again() {
        let r = Recent::default();
        r.add(T);
        r.add(T + 60);
        assert_eq!(r.last_minute(T + 60), 1);
        // An event older than the slot's lap is dropped, not added to it.
        r.add(T);
        assert_eq!(r.last_minute(T + 60), 1);
    }
}
