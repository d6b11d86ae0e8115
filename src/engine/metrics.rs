//! Counters of the redirect path that belong to no stream, kept here (not
//! in `web::metrics`, which only reads them at scrape time) so that what
//! records them and what exports them do not depend on each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Process-wide counters that belong to no stream.
#[derive(Debug, Default)]
pub struct Metrics {
    pub unknown_stream: AtomicU64,
    /// Alerts a webhook's full queue could not take (one per webhook missed).
    pub alerts_dropped: AtomicU64,
    pub redirect_latency: LatencyHistogram,
    pub callbacks: CallbackMetrics,
}

/// Relay URL-auth callbacks by outcome.
#[derive(Debug, Default)]
pub struct CallbackMetrics {
    /// `listener_add` that confirmed a redirect's reservation.
    pub confirmed: AtomicU64,
    /// `listener_add` without a usable token (a direct listener, or a
    /// forged, expired or replayed token).
    pub direct: AtomicU64,
    /// `listener_add` of another relay pulling the stream: not a listener.
    pub relay_pulls: AtomicU64,
    /// `listener_add` for a path no stream routes to (another mount, a
    /// status page): admitted, not counted.
    pub unrouted: AtomicU64,
    pub removed: AtomicU64,
    /// Wrong or missing credentials.
    pub refused: AtomicU64,
    /// Not understood (no action or client id).
    pub malformed: AtomicU64,
}

impl CallbackMetrics {
    /// Every outcome with its count, for `/metrics`.
    pub fn read(&self) -> [(&'static str, u64); 7] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("confirmed", n(&self.confirmed)),
            ("direct", n(&self.direct)),
            ("relay_pull", n(&self.relay_pulls)),
            ("unrouted", n(&self.unrouted)),
            ("removed", n(&self.removed)),
            ("refused", n(&self.refused)),
            ("malformed", n(&self.malformed)),
        ]
    }
}

/// Upper bounds of the redirect-latency buckets, in nanoseconds: a redirect
/// takes tens of microseconds; the upper buckets catch a stalled runtime.
const BOUNDS_NS: [u64; 12] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    50_000_000,
    250_000_000,
];

/// A lock-free histogram for the redirect path: an observation is a short
/// scan and two relaxed atomic adds (the crate's own histogram takes a
/// lock on every observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS_NS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket `(upper bound, count)`); the
    /// encoder makes the buckets cumulative.
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = BOUNDS_NS.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e9);
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        // The count is the buckets' total, so the two always agree even
        // while observations land during the scrape.
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

/// When this process started, as Unix seconds; taken at start-up (with
/// `ProcSubset=pid` the boot time in `/proc/stat` is not readable).
pub(crate) fn process_start_time() -> f64 {
    static STARTED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_each_observation_in_its_bucket() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(2));
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 3);
        assert!((sum - 2.000035).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.00001, 1));
        assert_eq!(buckets[1], (0.000025, 0));
        assert_eq!(buckets[2], (0.00005, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }
}
