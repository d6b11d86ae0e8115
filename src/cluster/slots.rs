//! Slot reservations shared by the instances of a cluster.
//!
//! Redis holds the cluster-wide version of the local reservation ring: per
//! mount and per server, one counter per second, every second being
//! Redis's own (`TIME` inside the scripts), so instances need not agree on
//! the time. An instance may give a slot away while, by its own latest
//! poll, `free - reservations counted since that poll's release point >= 1`
//! over the whole cluster; the release point travels to Redis as an age
//! ("from 7 s ago"), never as a time of day. That is the single-instance
//! rule with every instance's reservations in the sum, so it holds whoever
//! polled when.
//!
//! Every counter lives in one hash without an expiry, next to the data
//! generation: an eviction policy that spares keys without a TTL
//! (`volatile-*`) never touches it, and one that evicts it (`allkeys-*`)
//! takes the generation too, which every instance notices at its next call
//! and treats as Redis having lost its data (a split, then a rejoin): lost
//! counters never read as free slots. The scripts delete the seconds that
//! stopped counting themselves.
//!
//! The redirect path does not ask Redis for each listener: an instance
//! leases a small block of slots at once (one Lua call checks and counts
//! them atomically) and hands them out locally. A leased slot counts from
//! the moment it is leased, and is recorded in the bucket of the second its
//! lease ends, so it never stops counting before it was handed out. Unused
//! slots of an expired lease are given back. Blocks shrink as the mount
//! fills (a quarter of what is left per member), so near the end little is
//! stranded in other instances' leases.
//!
//! Without Redis (split) an instance keeps handing out what it has leased
//! (counted already) until those leases end, and gives away only its share
//! beyond: its own reservations stay below `free / members`. Before that
//! it waits for a poll that started after every lease of the shared time
//! can have been handed out and connected (lease time + grace), so
//! reservations nobody can see any more are in that poll's listener count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::sync::lock;
pub use crate::routing::capacity::MountView;

/// How long a leased block may be handed out, in seconds.
pub const LEASE_SECONDS: u64 = 2;
/// The largest block leased at once.
pub const MAX_BLOCK: u64 = 256;
/// The smallest block worth fetching ahead.
pub const PREFETCH_FROM_BLOCK: u64 = 4;
/// Shared by the scripts that write counters: Redis's second, the seconds
/// of counters kept (130, the local ring's length and a little more), and
/// `add(prefix, bucket, n)`, which also deletes the seconds of that
/// prefix that stopped counting (`lo:`/`hi:` bound what may exist, so the
/// work stays bounded however long a mount was idle).
pub const COUNTERS_LUA: &str = r#"
local H = KEYS[1]
local now = tonumber(redis.call('TIME')[1])
local keep = 130
local function prune(p)
  local stop = now - keep
  local lo = tonumber(redis.call('HGET', H, 'lo:' .. p) or stop)
  local hi = tonumber(redis.call('HGET', H, 'hi:' .. p) or stop)
  for b = lo, math.min(stop - 1, hi) do redis.call('HDEL', H, p .. b) end
  if lo < stop then redis.call('HSET', H, 'lo:' .. p, stop) end
end
local function add(p, bucket, n)
  prune(p)
  redis.call('HINCRBY', H, p .. bucket, n)
  local hi = tonumber(redis.call('HGET', H, 'hi:' .. p) or '0')
  if bucket > hi then redis.call('HSET', H, 'hi:' .. p, bucket) end
end
"#;

/// Leases `want` slots unless that would exceed a limit. Sums every
/// counter from the caller's release point (`age` seconds ago, one more
/// for the rounding between clocks) to the end of the new lease; with
/// `old_bucket` > 0 first gives back `old_unused` slots of an expired
/// lease. Returns `{granted, mount reservations, server reservations,
/// bucket}`, or `{-1, 0, 0, 0}` when Redis has lost its data since the
/// caller joined. Follows [`COUNTERS_LUA`].
pub const LEASE_LUA: &str = r#"
if redis.call('HGET', H, 'gen') ~= ARGV[1] then return {-1, 0, 0, 0} end
local mp, sp = ARGV[2], ARGV[3]
local age, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local mlimit, slimit, want = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local old, unused = tonumber(ARGV[9]), tonumber(ARGV[10])
local from, bucket = now - age - 1, now + lease
local function give_back(p)
  local v = tonumber(redis.call('HGET', H, p .. old) or '0')
  local d = math.min(v, unused)
  if d > 0 then redis.call('HINCRBY', H, p .. old, -d) end
end
if old > 0 and unused > 0 then
  give_back(mp)
  give_back(sp)
end
local function sum(p)
  local t = 0
  for s = from, bucket do
    t = t + tonumber(redis.call('HGET', H, p .. s) or '0')
  end
  return t
end
local msum, ssum = 0, 0
if mlimit >= 0 then
  msum = sum(mp)
  want = math.min(want, mlimit - msum)
end
if slimit >= 0 then
  ssum = sum(sp)
  want = math.min(want, slimit - ssum)
end
if want < 0 then want = 0 end
if want > 0 then
  add(mp, bucket, want)
  add(sp, bucket, want)
end
return {want, msum + want, ssum + want, bucket}
"#;

/// Re-adds what an instance holds when it (re)joins, counted to the end
/// of a lease from now: `ARGV` = generation, lease seconds, then pairs of
/// (counter prefix, count). `-1` when the generation is not the caller's.
/// Follows [`COUNTERS_LUA`].
pub const HELD_LUA: &str = r#"
if redis.call('HGET', H, 'gen') ~= ARGV[1] then return -1 end
local bucket = now + tonumber(ARGV[2])
for i = 3, #ARGV, 2 do add(ARGV[i], bucket, tonumber(ARGV[i + 1])) end
return bucket
"#;

/// A [`MountView`] that can move into a background task.
#[derive(Debug, Clone)]
pub struct OwnedView {
    id: i64,
    server: String,
    mount: String,
    mount_free: Option<u64>,
    server_free: Option<u64>,
    counts_from_s: u64,
    own_mount: u64,
    own_server: u64,
}

impl OwnedView {
    pub fn view(&self) -> MountView<'_> {
        MountView {
            id: self.id,
            server: &self.server,
            mount: &self.mount,
            mount_free: self.mount_free,
            server_free: self.server_free,
            counts_from_s: self.counts_from_s,
            own_mount: self.own_mount,
            own_server: self.own_server,
        }
    }
}

impl OwnedView {
    pub fn of(v: &MountView<'_>) -> OwnedView {
        OwnedView {
            id: v.id,
            server: v.server.to_string(),
            mount: v.mount.to_string(),
            mount_free: v.mount_free,
            server_free: v.server_free,
            counts_from_s: v.counts_from_s,
            own_mount: v.own_mount,
            own_server: v.own_server,
        }
    }
}

/// The fewest free slots of the mount and its server (`u64::MAX`: no limit).
fn tightest_free(v: &MountView<'_>) -> u64 {
    v.mount_free
        .into_iter()
        .chain(v.server_free)
        .min()
        .unwrap_or(u64::MAX)
}

/// Slots held back, while shared, for members that are cut off from Redis
/// (each may be giving away its split share on its own).
pub fn held_back(free: u64, members: u64, absent: u64) -> u64 {
    (free / members.max(1)).saturating_mul(absent).min(free)
}

/// How many slots to lease at once: a quarter of what is left per member,
/// at least one, at most [`MAX_BLOCK`].
pub fn block_size(remaining: u64, members: u64) -> u64 {
    (remaining / (4 * members.max(1))).clamp(1, MAX_BLOCK)
}

/// Whether, split since `since_ms`, this instance may give away one more
/// slot on its own.
pub fn split_allows(v: &MountView<'_>, since_ms: i64, members: u64) -> bool {
    let settled_from_ms = since_ms + (LEASE_SECONDS as i64 + 1) * 1000;
    if (v.counts_from_s as i64) * 1000 < settled_from_ms {
        return false;
    }
    let share = |free: u64| free / members.max(1);
    v.mount_free.is_none_or(|f| v.own_mount < share(f))
        && v.server_free.is_none_or(|f| v.own_server < share(f))
}

/// The limits sent to Redis for a lease, `-1` meaning none.
pub fn lease_limits(v: &MountView<'_>, members: u64, absent: u64) -> (i64, i64) {
    let limit = |free: Option<u64>| {
        free.map_or(-1, |f| {
            i64::try_from(f - held_back(f, members, absent)).unwrap_or(i64::MAX)
        })
    };
    (limit(v.mount_free), limit(v.server_free))
}

/// Slots this instance holds for one mount, per lease bucket.
#[derive(Debug, Default)]
pub struct Lease {
    /// `(last second it may be handed out by the local clock, its bucket
    /// in Redis, slots left)`, oldest first.
    blocks: Vec<(u64, u64, u64)>,
    /// Reservations on the mount (cluster-wide) after the last lease.
    pub last_sum: Option<u64>,
    /// (server, mount) as named in Redis, once leased.
    pub names: Option<(String, String)>,
    /// Size of the last grant: a new block is fetched ahead when less
    /// than half of it is left.
    pub last_block: u64,
    /// A fetch ahead is on its way: one is enough.
    pub prefetching: bool,
}

impl Lease {
    /// Hands out one slot of a lease still running at `now_s`.
    pub fn take(&mut self, now_s: u64) -> bool {
        match self
            .blocks
            .iter_mut()
            .find(|(end, _, n)| *end >= now_s && *n > 0)
        {
            Some((_, _, n)) => {
                *n -= 1;
                true
            }
            None => false,
        }
    }

    pub fn available(&self, now_s: u64) -> u64 {
        self.blocks
            .iter()
            .filter(|(end, _, _)| *end >= now_s)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// Removes the first expired block that still has slots, to be given
    /// back: `(its bucket in Redis, slots left)`; drops empty expired
    /// blocks.
    pub fn take_expired(&mut self, now_s: u64) -> Option<(u64, u64)> {
        self.blocks.retain(|(end, _, n)| *end >= now_s || *n > 0);
        let i = self.blocks.iter().position(|(end, _, _)| *end < now_s)?;
        let (_, bucket, n) = self.blocks.remove(i);
        Some((bucket, n))
    }

    /// Less than half a block left. Small blocks (a mount nearly full) are
    /// not fetched ahead: a slot fetched ahead there would sit unused in
    /// this instance while another is refused for want of it.
    pub fn running_low(&self, now_s: u64) -> bool {
        self.last_block >= PREFETCH_FROM_BLOCK && self.available(now_s) * 2 < self.last_block
    }

    /// Whether to start fetching ahead now (at most one fetch at a time).
    pub fn start_prefetch(&mut self, now_s: u64) -> bool {
        let start = !self.prefetching && self.running_low(now_s);
        self.prefetching |= start;
        start
    }

    /// A grant counted in Redis's `bucket`, handed out here until the
    /// local second `end_s`.
    pub fn add(&mut self, end_s: u64, bucket: u64, n: u64) {
        if n > 0 {
            self.blocks.push((end_s, bucket, n));
        }
    }

    /// Forgets every slot (Redis went away or lost its data).
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.last_sum = None;
        self.last_block = 0;
        self.prefetching = false;
    }
}

/// One mount's lease and the lock that keeps its refills one at a time.
#[derive(Debug, Default)]
pub struct MountLease {
    pub lease: Mutex<Lease>,
    pub refill: tokio::sync::Mutex<()>,
}

/// Every mount's lease, by local mount id.
#[derive(Debug, Default)]
pub struct Leases {
    map: Mutex<HashMap<i64, Arc<MountLease>>>,
}

impl Leases {
    pub fn of(&self, id: i64) -> Arc<MountLease> {
        let mut map = lock(&self.map);
        map.entry(id).or_default().clone()
    }

    pub fn all(&self) -> Vec<Arc<MountLease>> {
        let map = lock(&self.map);
        map.values().cloned().collect()
    }

    pub fn clear(&self) {
        for l in self.all() {
            lock(&l.lease).clear();
        }
    }
}

/// How much to ask for: enough for a while, little when the mount is
/// nearly full.
pub fn want(v: &MountView<'_>, last_sum: Option<u64>, members: u64) -> u64 {
    let remaining = tightest_free(v).saturating_sub(last_sum.unwrap_or(0));
    block_size(remaining, members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(free: Option<u64>, own: u64, from_s: u64) -> MountView<'static> {
        MountView {
            id: 1,
            server: "a",
            mount: "/m",
            mount_free: free,
            server_free: None,
            counts_from_s: from_s,
            own_mount: own,
            own_server: own,
        }
    }

    #[test]
    fn split_waits_for_a_poll_after_the_last_leases() {
        let since_ms = 100_000;
        // A poll whose window starts before every lease ended: nothing.
        assert!(!split_allows(&view(Some(10), 0, 102), since_ms, 2));
        // Window from 103 s on: every shared slot is in its listener count.
        assert!(split_allows(&view(Some(10), 0, 103), since_ms, 2));
    }

    #[test]
    fn split_gives_away_only_the_share() {
        let since_ms = 0;
        assert!(split_allows(&view(Some(10), 4, 10), since_ms, 2));
        assert!(!split_allows(&view(Some(10), 5, 10), since_ms, 2));
        // 10 free among 3: 3 each, 9 at most together.
        assert!(!split_allows(&view(Some(10), 3, 10), since_ms, 3));
        assert!(split_allows(&view(None, 1_000, 10), since_ms, 3));
        let mut capped = view(None, 0, 10);
        capped.server_free = Some(1);
        assert!(
            !split_allows(&capped, since_ms, 2),
            "share of 1 among 2 is 0"
        );
    }

    #[test]
    fn shares_never_add_up_to_more_than_free() {
        for free in 0..50u64 {
            for members in 1..6u64 {
                let per = (0..)
                    .take_while(|&own| split_allows(&view(Some(free), own, 10), 0, members))
                    .count() as u64;
                assert!(per * members <= free, "{free} {members}");
            }
        }
    }

    #[test]
    fn absent_members_shares_are_held_back() {
        assert_eq!(held_back(10, 2, 1), 5);
        assert_eq!(held_back(10, 3, 0), 0);
        assert_eq!(held_back(3, 2, 5), 3, "never more than free");
        let v = view(Some(100), 0, 0);
        assert_eq!(lease_limits(&v, 4, 1), (75, -1));
    }

    #[test]
    fn blocks_shrink_as_the_mount_fills() {
        assert_eq!(block_size(100_000_000, 2), MAX_BLOCK);
        assert_eq!(block_size(80, 2), 10);
        assert_eq!(block_size(3, 3), 1);
        assert_eq!(block_size(0, 1), 1);
        let v = view(Some(100), 0, 0);
        assert_eq!(want(&v, Some(60), 2), 5);
    }

    #[test]
    fn a_lease_hands_out_until_it_ends() {
        let mut l = Lease::default();
        l.add(10, 1010, 2);
        l.add(12, 1012, 1);
        assert_eq!(l.available(10), 3);
        assert!(l.take(10));
        assert!(l.take(11), "the block ending at 10 is over; the next one");
        assert!(!l.take(11));
        assert_eq!(l.take_expired(11), Some((1010, 1)));
        assert_eq!(l.take_expired(11), None);
        l.add(20, 1020, 0);
        assert_eq!(l.available(0), 0, "an empty grant adds nothing");
    }
}
