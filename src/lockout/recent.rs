//! The lockouts this process has seen in the current second, so that a locked user
//! hammered with codes (the path an attacker drives) is refused without a database read.
//!
//! Only refusals are answered from here, never an acceptance: an entry can only make a
//! request fail with 429 that the database would have refused too, or, after an operator
//! unlocked the user from another process or instance, for at most the rest of the
//! clock's second in which the lock was read. An unlock, rotation, removal or `.env` sync
//! through this process forgets the user at once. Bounded: past [`CAPACITY`] locked users
//! the least useful entries are dropped, and a dropped user is read from the database
//! again.

use quick_cache::sync::Cache;

use crate::clock::UnixTime;

/// Users remembered at most (a few dozen bytes each).
pub const CAPACITY: usize = 10_000;

/// `locked_until` and the second it was read in, per username.
pub struct RecentLocks {
    seen: Cache<String, (UnixTime, UnixTime)>,
}

impl Default for RecentLocks {
    fn default() -> Self {
        Self { seen: Cache::new(CAPACITY) }
    }
}

impl std::fmt::Debug for RecentLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentLocks").field("len", &self.seen.len()).finish()
    }
}

impl RecentLocks {
    /// Seconds until `username`'s lock ends, if it was seen locked in this second of `now`.
    pub fn locked_for(&self, username: &str, now: UnixTime) -> Option<u64> {
        let (until, seen_at) = self.seen.get(username)?;
        (seen_at == now && until > now).then(|| until - now)
    }

    /// Remembers that `username` was read (or made) locked until `until`, at `now`.
    pub fn saw(&self, username: &str, until: UnixTime, now: UnixTime) {
        if until > now {
            self.seen.insert(username.to_string(), (until, now));
        }
    }

    /// After any change to the user through this process.
    pub fn forget(&self, username: &str) {
        self.seen.remove(username);
    }

    /// After a change to many users at once (the `.env` sync).
    pub fn forget_all(&self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_reused_only_within_the_second_it_was_read_and_while_it_lasts() {
        let locks = RecentLocks::default();
        locks.saw("alice", 1_060, 1_000);
        assert_eq!(locks.locked_for("alice", 1_000), Some(60));
        assert_eq!(locks.locked_for("alice", 1_001), None, "read again in the next second");
        assert_eq!(locks.locked_for("bob", 1_000), None);
        locks.saw("alice", 1_060, 1_059);
        assert_eq!(locks.locked_for("alice", 1_059), Some(1));
        locks.saw("carol", 1_000, 1_000);
        assert_eq!(locks.locked_for("carol", 1_000), None, "an ended lock is not remembered");
    }

    #[test]
    fn forgetting_takes_effect_at_once() {
        let locks = RecentLocks::default();
        locks.saw("alice", 2_000, 1_000);
        locks.saw("bob", 2_000, 1_000);
        locks.forget("alice");
        assert_eq!(locks.locked_for("alice", 1_000), None);
        assert_eq!(locks.locked_for("bob", 1_000), Some(1_000));
        locks.forget_all();
        assert_eq!(locks.locked_for("bob", 1_000), None);
    }

    #[test]
    fn it_stays_bounded_however_many_users_are_locked() {
        let locks = RecentLocks::default();
        for i in 0..(4 * CAPACITY) {
            locks.saw(&format!("user{i}"), 2_000, 1_000);
        }
        assert!(locks.seen.len() <= CAPACITY + CAPACITY / 10, "{} entries", locks.seen.len());
    }
}
