//! Redirects per client country, counted on the redirect path with one
//! relaxed atomic add (no lock, no allocation) and drained by a background
//! task that adds them to the hourly table in SQLite.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::CountryCode;

/// Slot 0 counts clients of unknown country; then one per AA..ZZ.
const SLOTS: usize = 1 + 26 * 26;

pub struct CountryTally(Box<[AtomicU64]>);

impl Default for CountryTally {
    fn default() -> Self {
        CountryTally((0..SLOTS).map(|_| AtomicU64::new(0)).collect())
    }
}

impl fmt::Debug for CountryTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountryTally")
    }
}

fn slot(country: Option<CountryCode>) -> usize {
    let Some(c) = country else { return 0 };
    let b = c.as_str().as_bytes();
    1 + usize::from(b[0] - b'A') * 26 + usize::from(b[1] - b'A')
}

fn code(slot: usize) -> String {
    if slot == 0 {
        return String::new();
    }
    let i = slot - 1;
    let letter = |n: usize| char::from(b'A' + n as u8);
    [letter(i / 26), letter(i % 26)].iter().collect()
}

impl CountryTally {
    pub fn add(&self, country: Option<CountryCode>) {
        self.0[slot(country)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts so far (country code, "" for unknown), leaving
    /// zeros: a redirect counted meanwhile lands in the next drain.
    pub fn drain(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .filter_map(|(i, n)| {
                let taken = n.swap(0, Ordering::Relaxed);
                (taken > 0).then(|| (code(i), taken))
            })
            .collect()
    }

    /// Puts counts back (a flush that could not be written).
    pub fn restore(&self, counts: &[(String, u64)]) {
        for (c, n) in counts {
            let country = CountryCode::parse(c).ok();
            self.0[slot(country)].fetch_add(*n, Ordering::Relaxed);
        }
    }
}

/// How long hourly country counts are kept: over a year, so a yearly
/// royalty report can be drawn from them.
pub const RETENTION_MS: i64 = 400 * 24 * 3600 * 1000;

/// Adds what the tallies (by stream id) counted since the last flush to the hour of
/// `now_ms`, in one transaction, and prunes old hours. On failure the
/// counts are put back for the next try. Returns how many were written.
pub async fn flush(
    db: &crate::store::Pool,
    tallies: &[(i64, &CountryTally)],
    now_ms: i64,
) -> crate::store::Result<u64> {
    use crate::store::countries;
    let drained: Vec<_> = tallies
        .iter()
        .map(|&(id, t)| (id, t, t.drain()))
        .filter(|(_, _, counts)| !counts.is_empty())
        .collect();
    if drained.is_empty() {
        return Ok(0);
    }
    let hour = countries::hour_of(now_ms);
    let written = async {
        let mut tx = crate::store::write_tx(db).await?;
        let mut n = 0;
        for (id, _, counts) in &drained {
            for (country, count) in counts {
                countries::add(&mut tx, *id, hour, country, *count).await?;
                n += count;
            }
        }
        countries::prune(&mut tx, hour - RETENTION_MS).await?;
        tx.commit().await?;
        Ok::<u64, crate::store::Error>(n)
    }
    .await;
    if written.is_err() {
        for (_, t, counts) in &drained {
            t.restore(counts);
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_country_and_drains_to_zero() {
        let t = CountryTally::default();
        let de = CountryCode::parse("DE").ok();
        t.add(de);
        t.add(de);
        t.add(CountryCode::parse("ZZ").ok());
        t.add(CountryCode::parse("AA").ok());
        t.add(None);
        let mut got = t.drain();
        got.sort();
        let want: Vec<(String, u64)> = [("", 1), ("AA", 1), ("DE", 2), ("ZZ", 1)]
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect();
        assert_eq!(got, want);
        assert!(t.drain().is_empty());
        t.restore(&want);
        assert_eq!(t.drain().len(), 4);
    }
}
