//! One client, one slot: what each client address was recently given, so
//! a player's retry or a browser's prefetch does not take a second slot,
//! and one address cannot hold a mount full for everyone else.
//!
//! A request is a *repeat* when the same address and the same User-Agent
//! got a redirect for the same stream within the grace window: it goes to
//! the same mount without a reservation. Different User-Agents behind one
//! address (a household, an office NAT) are different listeners, up to
//! `max_per_client` reservations per stream within the window; beyond
//! that, requests are sent where the latest went, again without a slot.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::domain::sync::lock;

/// The most reservations per client and stream the book can hold.
pub const MAX_PER_CLIENT: usize = 10;
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    ip: IpAddr,
    stream: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Given {
    agent: u64,
    mount: i64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct Recent {
    given: [Given; MAX_PER_CLIENT],
    len: usize,
}

impl Recent {
    fn prune(&mut self, since_ms: i64) {
        let mut kept = 0;
        for i in 0..self.len {
            if self.given[i].at_ms >= since_ms {
                self.given[kept] = self.given[i];
                kept += 1;
            }
        }
        self.len = kept;
    }
}

/// What the book says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new listener: choose and reserve, then `record` the result.
    New,
    /// Send to this mount (database id) again, without a reservation.
    Same(i64),
}

#[derive(Debug)]
pub struct ClientBook {
    shards: Vec<Mutex<HashMap<Key, Recent>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ClientBook {
    fn default() -> Self {
        ClientBook {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

/// A cheap fingerprint of the User-Agent (FNV-1a).
pub fn agent_hash(agent: &[u8]) -> u64 {
    agent.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ClientBook {
    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Recent>> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        lock(shard)
    }

    /// Judges a request from `ip` with User-Agent fingerprint `agent`.
    pub fn judge(
        &self,
        ip: IpAddr,
        stream: i64,
        agent: u64,
        now_ms: i64,
        grace_ms: i64,
        max_per_client: usize,
    ) -> Verdict {
        let key = Key { ip, stream };
        let mut map = self.shard(&key);
        let Some(recent) = map.get_mut(&key) else {
            return Verdict::New;
        };
        recent.prune(now_ms - grace_ms);
        let given = &recent.given[..recent.len];
        if let Some(g) = given.iter().rev().find(|g| g.agent == agent) {
            return Verdict::Same(g.mount);
        }
        match given.last() {
            Some(g) if given.len() >= max_per_client.clamp(1, MAX_PER_CLIENT) => {
                Verdict::Same(g.mount)
            }
            _ => Verdict::New,
        }
    }

    /// Notes a reservation given to a new listener.
    pub fn record(&self, ip: IpAddr, stream: i64, agent: u64, mount: i64, now_ms: i64) {
        let key = Key { ip, stream };
        let mut map = self.shard(&key);
        let recent = map.entry(key).or_default();
        if recent.len == MAX_PER_CLIENT {
            recent.given.rotate_left(1);
            recent.len -= 1;
        }
        recent.given[recent.len] = Given {
            agent,
            mount,
            at_ms: now_ms,
        };
        recent.len += 1;
    }

    /// Forgets clients whose last redirect is older than the window, so
    /// the book stays as large as one grace window's clients.
    pub fn sweep(&self, now_ms: i64, grace_ms: i64) {
        for shard in &self.shards {
            let mut map = lock(shard);
            map.retain(|_, r| {
                r.prune(now_ms - grace_ms);
                r.len > 0
            });
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn a_repeat_within_the_grace_goes_to_the_same_mount() {
        let b = ClientBook::default();
        let vlc = agent_hash(b"VLC/3.0");
        assert_eq!(b.judge(IP, 1, vlc, 1000, 5000, 4), Verdict::New);
        b.record(IP, 1, vlc, 42, 1000);
        assert_eq!(b.judge(IP, 1, vlc, 5999, 5000, 4), Verdict::Same(42));
        assert_eq!(
            b.judge(IP, 2, vlc, 2000, 5000, 4),
            Verdict::New,
            "other stream"
        );
        assert_eq!(
            b.judge(IP, 1, vlc, 6001, 5000, 4),
            Verdict::New,
            "after the grace"
        );
    }

    #[test]
    fn different_players_behind_one_address_get_slots_up_to_the_limit() {
        let b = ClientBook::default();
        for i in 0..3u8 {
            let a = agent_hash(&[i]);
            assert_eq!(b.judge(IP, 1, a, 1000, 5000, 3), Verdict::New);
            b.record(IP, 1, a, i64::from(i), 1000);
        }
        assert_eq!(
            b.judge(IP, 1, agent_hash(b"fourth"), 1000, 5000, 3),
            Verdict::Same(2)
        );
        b.sweep(7000, 5000);
        assert!(b.is_empty());
    }
}
