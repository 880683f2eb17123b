//! The per-user brute-force defence, as a pure policy over [`LockState`].
//!
//! ```text
//!            wrong code (count + 1 < max)
//!           ┌──────────────┐
//!           ▼              │
//!   ┌─────────────────┐    │   count + 1 == max    ┌──────────────────────────┐
//!   │ open, count = n │────┴──────────────────────▶│ locked until now+lockout │
//!   └─────────────────┘                            └──────────────────────────┘
//!      ▲        │  right code: count = 0                   │ time passes
//!      └────────┴──────────────────────────────────────────┘ (count starts at 0)
//! ```
//!
//! Every attempt is a compare-and-swap on the stored state it was decided on: a wrong
//! code swaps in [`LockoutPolicy::charge`]'s next state, a right code swaps to "no
//! failures" in the same statement that records its time step. A request whose swap loses
//! re-reads the state and decides again. So a burst of parallel guesses can never get more
//! than `max` effective attempts per lockout period: the swap that reaches `max` sets the
//! lock, and every request still in flight then sees it and is refused, even with the right
//! code. While locked, even the right code is refused.

use crate::clock::UnixTime;
pub use crate::config::LockoutPolicy;
pub use crate::store::LockState;

impl LockoutPolicy {
    /// Seconds until the lock ends, if `state` is locked at `now`.
    pub fn locked_for(&self, state: LockState, now: UnixTime) -> Option<u64> {
        state.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// The state after one more attempt is charged, or the remaining lock if none may be made.
    pub fn charge(&self, state: LockState, now: UnixTime) -> Result<LockState, u64> {
        if let Some(remaining) = self.locked_for(state, now) {
            return Err(remaining);
        }
        let failed = if state.locked_until.is_some() { 1 } else { state.failed_attempts.saturating_add(1) };
        if failed >= self.max_failed_attempts {
            Ok(LockState { failed_attempts: 0, locked_until: Some(now.saturating_add(self.lockout_seconds)) })
        } else {
            Ok(LockState { failed_attempts: failed, locked_until: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy { max_failed_attempts: 3, lockout_seconds: 300 };

    #[test]
    fn the_max_th_charge_locks_and_the_lock_expires() {
        let now = 1000;
        let s1 = POLICY.charge(LockState::default(), now).unwrap();
        let s2 = POLICY.charge(s1, now).unwrap();
        assert_eq!(s2, LockState { failed_attempts: 2, locked_until: None });
        let s3 = POLICY.charge(s2, now).unwrap();
        assert_eq!(s3.locked_until, Some(1300));
        assert_eq!(POLICY.charge(s3, now + 1), Err(299));
        assert_eq!(POLICY.locked_for(s3, 1299), Some(1));
        assert_eq!(POLICY.locked_for(s3, 1300), None);
        let after = POLICY.charge(s3, 1300).unwrap();
        assert_eq!(after, LockState { failed_attempts: 1, locked_until: None });
    }

    #[test]
    fn max_of_one_locks_on_the_first_failure() {
        let policy = LockoutPolicy { max_failed_attempts: 1, lockout_seconds: 10 };
        assert_eq!(policy.charge(LockState::default(), 5).unwrap().locked_until, Some(15));
    }
}
