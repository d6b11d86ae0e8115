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
//!
//! Addresses are counted as `domain::network` groups them (an IPv6 /64 is
//! one address), and a whole network (/24, /64) may hold at most
//! `PER_NETWORK` times the per-address limit: thirty addresses of one
//! network rotating User-Agents cannot reserve a stream's free slots away
//! from real listeners.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::domain::network::{address_key, network_key};
use crate::domain::sync::lock;

/// The most reservations per client and stream the book can hold.
pub(crate) const MAX_PER_CLIENT: usize = 10;
/// A network's reservations per stream within the window, as a multiple
/// of the per-address limit.
pub(crate) const PER_NETWORK: usize = 2;
const NETWORK_CAP: usize = MAX_PER_CLIENT * PER_NETWORK;
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

#[derive(Debug)]
struct Recent<const N: usize = MAX_PER_CLIENT> {
    given: [Given; N],
    len: usize,
}

impl<const N: usize> Default for Recent<N> {
    fn default() -> Self {
        Recent {
            given: [Given::default(); N],
            len: 0,
        }
    }
}

impl<const N: usize> Recent<N> {
    /// Notes one more, forgetting the oldest when full.
    fn push(&mut self, g: Given) {
        if self.len == N {
            self.given.rotate_left(1);
            self.len -= 1;
        }
        self.given[self.len] = g;
        self.len += 1;
    }

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
pub(crate) enum Verdict {
    /// A new listener: choose and reserve, then `record` the result.
    New,
    /// Send to this mount (database id) again, without a reservation.
    Same(i64),
}

type Shards<R> = Vec<Mutex<HashMap<Key, R>>>;

#[derive(Debug)]
pub struct ClientBook {
    shards: Shards<Recent>,
    /// The same, per network (`Key::ip` is the network's address).
    networks: Shards<Recent<NETWORK_CAP>>,
    hasher: std::collections::hash_map::RandomState,
}

fn shards<R>() -> Shards<R> {
    (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()
}

impl Default for ClientBook {
    fn default() -> Self {
        ClientBook {
            shards: shards(),
            networks: shards(),
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
    fn shard<'a, R>(
        &self,
        shards: &'a Shards<R>,
        key: &Key,
    ) -> std::sync::MutexGuard<'a, HashMap<Key, R>> {
        let shard = &shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        lock(shard)
    }

    /// Judges a request from `ip` with User-Agent fingerprint `agent`.
    pub(crate) fn judge(
        &self,
        ip: IpAddr,
        stream: i64,
        agent: u64,
        now_ms: i64,
        grace_ms: i64,
        max_per_client: usize,
    ) -> Verdict {
        let max = max_per_client.clamp(1, MAX_PER_CLIENT);
        let key = Key {
            ip: address_key(ip),
            stream,
        };
        let mut map = self.shard(&self.shards, &key);
        if let Some(recent) = map.get_mut(&key) {
            recent.prune(now_ms - grace_ms);
            let given = &recent.given[..recent.len];
            if let Some(g) = given.iter().rev().find(|g| g.agent == agent) {
                return Verdict::Same(g.mount);
            }
            if let Some(g) = given.last().filter(|_| given.len() >= max) {
                return Verdict::Same(g.mount);
            }
        }
        drop(map);
        let key = Key {
            ip: network_key(ip),
            stream,
        };
        let mut nets = self.shard(&self.networks, &key);
        let Some(recent) = nets.get_mut(&key) else {
            return Verdict::New;
        };
        recent.prune(now_ms - grace_ms);
        let given = &recent.given[..recent.len];
        match given.last() {
            Some(g) if given.len() >= max * PER_NETWORK => Verdict::Same(g.mount),
            _ => Verdict::New,
        }
    }

    /// Notes a reservation given to a new listener.
    pub fn record(&self, ip: IpAddr, stream: i64, agent: u64, mount: i64, now_ms: i64) {
        let given = Given {
            agent,
            mount,
            at_ms: now_ms,
        };
        let key = Key {
            ip: address_key(ip),
            stream,
        };
        self.shard(&self.shards, &key)
            .entry(key)
            .or_default()
            .push(given);
        let key = Key {
            ip: network_key(ip),
            stream,
        };
        self.shard(&self.networks, &key)
            .entry(key)
            .or_default()
            .push(given);
    }

    /// Forgets clients whose last redirect is older than the window, so
    /// the book stays as large as one grace window's clients.
    pub fn sweep(&self, now_ms: i64, grace_ms: i64) {
        sweep(&self.shards, now_ms - grace_ms);
        sweep(&self.networks, now_ms - grace_ms);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sweep<const N: usize>(shards: &Shards<Recent<N>>, since_ms: i64) {
    for shard in shards {
        let mut map = lock(shard);
        map.retain(|_, r| {
            r.prune(since_ms);
            r.len > 0
        });
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

    #[test]
    fn one_network_gets_at_most_its_budget_whatever_its_addresses() {
        let b = ClientBook::default();
        let mut new = 0;
        for host in 1..=30u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, host));
            for ua in 0..4u8 {
                let a = agent_hash(&[ua]);
                if b.judge(ip, 1, a, 1000, 5000, 4) == Verdict::New {
                    new += 1;
                    b.record(ip, 1, a, 7, 1000);
                }
            }
        }
        assert_eq!(new, 4 * PER_NETWORK);
        // Another network is not held back by it.
        assert_eq!(b.judge(IP, 1, 1, 1000, 5000, 4), Verdict::New);
    }

    #[test]
    fn an_ipv6_64_is_one_address() {
        let b = ClientBook::default();
        for i in 0..4u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i + 1));
            assert_eq!(b.judge(ip, 1, u64::from(i), 1000, 5000, 2), {
                if i < 2 {
                    Verdict::New
                } else {
                    Verdict::Same(1)
                }
            });
            b.record(ip, 1, u64::from(i), 1, 1000);
        }
    }
}
