//! Wall-clock time, injected: the server reads the system clock, tests move
//! their app's clock forward instead of sleeping through a grace period or
//! a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Unix time in milliseconds: the system clock plus an offset that only
/// [`Clock::advance`] changes. Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now_ms(&self) -> i64 {
        system_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn now_s(&self) -> u64 {
        (self.now_ms() / 1000).max(0) as u64
    }

    /// The system clock off by `ms` (either way), as a machine whose clock
    /// is wrong; for tests.
    pub fn off_by_ms(ms: i64) -> Clock {
        Clock {
            offset_ms: Arc::new(AtomicI64::new(ms)),
        }
    }

    /// Moves this clock (and its clones) forward; for tests.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The system clock in unix milliseconds (0 before 1970).
pub fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_advance_together() {
        let a = Clock::system();
        let b = a.clone();
        let before = b.now_ms();
        a.advance(Duration::from_secs(60));
        assert!(b.now_ms() >= before + 60_000);
    }
}
