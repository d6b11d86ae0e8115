//! Who is in the cluster: every instance writes its last contact into a
//! Redis hash once a second, and remembers whom it has seen, so that after
//! Redis loses its data the instances that have not re-registered yet are
//! still counted (as absent, holding their share of the slots).

use std::collections::BTreeMap;

use serde::Serialize;

/// An instance whose heartbeat is older than this is absent: it may be cut
/// off from Redis and giving away its split share on its own.
pub const PRESENT_WITHIN_MS: i64 = 3_000;
/// Instances seen within this window count when free slots are split.
pub const SEEN_WITHIN_MS: i64 = 60_000;
/// Entries older than this are removed from the shared hash.
pub const FORGET_AFTER_MS: i64 = 3_600_000;

/// One heartbeat: registers this instance and reads everyone's last
/// contact. The generation key tells instances when Redis has lost its
/// data (restart without persistence, flush): a new random value then
/// replaces the missing one. An instance is a member of the current
/// generation only once it has re-added what it holds (`joined`).
pub const HEARTBEAT_LUA: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local gen = redis.call('GET', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[5] == gen then redis.call('HSET', KEYS[3], ARGV[2], gen) end
local all = redis.call('HGETALL', KEYS[2])
local out = {gen}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < tonumber(ARGV[4]) then
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    /// Last heartbeat, ms since the epoch.
    pub last_contact_ms: i64,
    /// Registered in the current generation and heard from recently.
    pub present: bool,
}

/// Everyone this instance has heard of, by name.
#[derive(Debug, Default, Clone)]
pub struct Members {
    seen: BTreeMap<String, i64>,
    joined: BTreeMap<String, bool>,
}

impl Members {
    /// Folds in a heartbeat answer: `(name, last contact, generation joined)`.
    pub fn update(&mut self, generation: &str, rows: &[(String, i64, String)]) {
        self.joined.clear();
        for (name, at, joined) in rows {
            let t = self.seen.entry(name.clone()).or_insert(*at);
            *t = (*t).max(*at);
            self.joined.insert(name.clone(), joined == generation);
        }
    }

    /// Members seen within the last minute, with whether each is present.
    pub fn list(&self, now_ms: i64) -> Vec<Member> {
        self.seen
            .iter()
            .filter(|(_, at)| now_ms - **at <= SEEN_WITHIN_MS)
            .map(|(name, at)| Member {
                name: name.clone(),
                last_contact_ms: *at,
                present: now_ms - at <= PRESENT_WITHIN_MS
                    && self.joined.get(name).copied().unwrap_or(false),
            })
            .collect()
    }

    /// (members seen in the last minute, of which absent other than `me`);
    /// `me` always counts, as present.
    pub fn counts(&self, now_ms: i64, me: &str) -> (u64, u64) {
        let list = self.list(now_ms);
        let others = list.iter().filter(|m| m.name != me);
        let (seen, absent) = others.fold((0, 0), |(n, a), m| (n + 1, a + u64::from(!m.present)));
        (seen + 1, absent)
    }

    pub fn forget_old(&mut self, now_ms: i64) {
        self.seen.retain(|_, at| now_ms - *at <= FORGET_AFTER_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, at: i64, generation: &str) -> (String, i64, String) {
        (name.into(), at, generation.into())
    }

    #[test]
    fn present_needs_a_recent_heartbeat_in_this_generation() {
        let mut m = Members::default();
        m.update(
            "g1",
            &[
                row("a", 10_000, "g1"),
                row("b", 9_000, "g0"),
                row("c", 1_000, "g1"),
            ],
        );
        let list = m.list(11_000);
        let present: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.present)).collect();
        assert_eq!(present, vec![("a", true), ("b", false), ("c", false)]);
        assert_eq!(m.counts(11_000, "a"), (3, 2));
    }

    #[test]
    fn members_lost_by_redis_are_remembered_as_absent() {
        let mut m = Members::default();
        m.update("g1", &[row("a", 10_000, "g1"), row("b", 10_000, "g1")]);
        // Redis restarted: only `a` has registered again.
        m.update("g2", &[row("a", 11_000, "g2")]);
        assert_eq!(m.counts(11_500, "a"), (2, 1));
        // A minute later `b` no longer counts at all.
        assert_eq!(m.counts(10_000 + SEEN_WITHIN_MS + 1, "a"), (1, 0));
    }

    #[test]
    fn an_instance_alone_counts_itself() {
        assert_eq!(Members::default().counts(0, "me"), (1, 0));
    }
}
