//! Who is in the cluster: every instance writes its last contact into a
//! Redis hash once a second, and remembers whom it has seen, so that after
//! Redis loses its data the instances that have not re-registered yet are
//! still counted (as absent, holding their share of the slots).
//!
//! Every time here is Redis's own (`TIME` inside the heartbeat script), so
//! instances whose clocks disagree still agree on who was heard from when.
//! An instance forgets a member only while it is itself in touch with
//! Redis, by Redis's clock: cut off, it keeps counting everyone it knew,
//! however long the split lasts.

use std::collections::BTreeMap;

use serde::Serialize;

/// An instance whose heartbeat is older than this is absent: it may be cut
/// off from Redis and giving away its split share on its own.
pub const PRESENT_WITHIN_MS: i64 = 3_000;

/// One heartbeat: registers this instance and reads everyone's last
/// contact, both in Redis's time, which it returns second. The generation
/// (a field of the slot counters' hash, so that losing the counters loses
/// it too) tells instances when Redis has lost their data (restart without
/// persistence, flush, eviction): a new random value then replaces the
/// missing one. An instance is a member of the current generation only
/// once it has re-added what it holds (`joined`). Entries that are not a
/// time (garbage written by someone else) are dropped, never fatal.
pub const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', KEYS[1], 'gen', ARGV[1])
local gen = redis.call('HGET', KEYS[1], 'gen')
redis.call('HSET', KEYS[2], ARGV[2], now .. ' ' .. ARGV[5])
if ARGV[4] == gen then redis.call('HSET', KEYS[3], ARGV[2], gen) end
local all = redis.call('HGETALL', KEYS[2])
local out = {gen, tostring(now)}
local oldest = now - tonumber(ARGV[3])
for i = 1, #all, 2 do
  local at = tonumber(string.match(all[i + 1], '^(%d+)'))
  if at == nil or at < oldest then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('HDEL', KEYS[3], all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
    table.insert(out, redis.call('HGET', KEYS[3], all[i]) or '')
  end
end
return out
"#;

/// One row of a heartbeat answer, checked: `(name, last contact in
/// Redis ms, tag, generation joined)`.
pub type Row = (String, i64, String, String);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    /// Last heartbeat, ms since the epoch by Redis's clock.
    pub last_contact_ms: i64,
    /// Registered in the current generation and heard from recently.
    pub present: bool,
}

/// Everyone this instance has heard of, by name, in Redis's time.
#[derive(Debug, Clone)]
pub struct Members {
    seen: BTreeMap<String, i64>,
    joined: BTreeMap<String, bool>,
    /// Redis's time at the last heartbeat answered: every age is measured
    /// from it, so nothing ages while this instance is cut off.
    redis_now_ms: i64,
    forget_after_ms: i64,
}

impl Members {
    pub fn new(forget_after_ms: i64) -> Members {
        Members {
            seen: BTreeMap::new(),
            joined: BTreeMap::new(),
            redis_now_ms: 0,
            forget_after_ms,
        }
    }

    /// Folds in a heartbeat answer given at `redis_now_ms`.
    pub fn update(&mut self, generation: &str, redis_now_ms: i64, rows: &[Row]) {
        self.redis_now_ms = self.redis_now_ms.max(redis_now_ms);
        self.joined.clear();
        for (name, at, _, joined) in rows {
            let t = self.seen.entry(name.clone()).or_insert(*at);
            *t = (*t).max(*at);
            self.joined.insert(name.clone(), joined == generation);
        }
        let oldest = self.redis_now_ms - self.forget_after_ms;
        self.seen.retain(|_, at| *at >= oldest);
    }

    /// Every member not forgotten, with whether each is present.
    pub fn list(&self) -> Vec<Member> {
        self.seen
            .iter()
            .map(|(name, at)| Member {
                name: name.clone(),
                last_contact_ms: *at,
                present: self.redis_now_ms - at <= PRESENT_WITHIN_MS
                    && self.joined.get(name).copied().unwrap_or(false),
            })
            .collect()
    }

    /// (members, of which absent other than `me`); `me` always counts, as
    /// present.
    pub fn counts(&self, me: &str) -> (u64, u64) {
        let list = self.list();
        let others = list.iter().filter(|m| m.name != me);
        let (seen, absent) = others.fold((0, 0), |(n, a), m| (n + 1, a + u64::from(!m.present)));
        (seen + 1, absent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn row(name: &str, at: i64, generation: &str) -> Row {
        (name.into(), at, String::new(), generation.into())
    }

    #[test]
    fn present_needs_a_recent_heartbeat_in_this_generation() {
        let mut m = Members::new(HOUR);
        m.update(
            "g1",
            11_000,
            &[
                row("a", 10_000, "g1"),
                row("b", 9_000, "g0"),
                row("c", 1_000, "g1"),
            ],
        );
        let list = m.list();
        let present: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.present)).collect();
        assert_eq!(present, vec![("a", true), ("b", false), ("c", false)]);
        assert_eq!(m.counts("a"), (3, 2));
    }

    #[test]
    fn members_lost_by_redis_are_remembered_as_absent_until_forgotten() {
        let mut m = Members::new(HOUR);
        m.update(
            "g1",
            10_000,
            &[row("a", 10_000, "g1"), row("b", 10_000, "g1")],
        );
        // Redis restarted: only `a` has registered again.
        m.update("g2", 11_000, &[row("a", 11_000, "g2")]);
        assert_eq!(m.counts("a"), (2, 1));
        // Redis's clock an hour on: `b` no longer counts at all.
        m.update("g2", 10_001 + HOUR, &[row("a", 10_001 + HOUR, "g2")]);
        assert_eq!(m.counts("a"), (1, 0));
    }

    #[test]
    fn nothing_is_forgotten_while_cut_off_however_long() {
        let mut m = Members::new(HOUR);
        m.update(
            "g1",
            10_000,
            &[row("a", 10_000, "g1"), row("b", 10_000, "g1")],
        );
        // No answer since: every count is as of the last one, whatever this
        // instance's own clock says (it is not read at all).
        assert_eq!(m.counts("a"), (2, 0));
        assert_eq!(m.list().len(), 2);
    }

    #[test]
    fn an_instance_alone_counts_itself() {
        assert_eq!(Members::new(HOUR).counts("me"), (1, 0));
    }
}
