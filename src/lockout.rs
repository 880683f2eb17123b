//! The per-user brute-force defence, as a pure policy over [`LockState`].
//!
//! A progressive lockout: every `max` failures in a row lock the user, and each lock lasts
//! twice as long as the one before, up to a cap.
//!
//! ```text
//!        wrong code: count + 1
//!        ┌─────────┐
//!        ▼         │   count + 1 = k × max    ┌──────────────────────────────────────┐
//!   ┌─────────────────┐ ─────────────────────▶ │ locked for min(base × 2^(k-1), cap)  │
//!   │ open, count = n │                        │ (even the right code is refused)     │
//!   └─────────────────┘ ◀───────────────────── └──────────────────────────────────────┘
//!                         time passes: open,
//!                         the count is kept
//!
//!   right code (when open) or operator unlock (any time): count = 0, open
//! ```
//!
//! The count of failures is only reset by a right code or by an operator (`mfa user
//! unlock`, the admin API), not by the end of a lock. So an attacker who keeps guessing
//! climbs the ladder (with the defaults: 5 min, 10 min, 20 min, … 24 h, then 24 h each
//! time), while a user who mistypes a few times and then gets it right only ever sees the
//! first, short lock. [`LockoutPolicy::attack_budget`] plays an attacker against the policy
//! to count the guesses it allows in a span of time; a unit test below holds the defaults
//! to a 30-day chance of breaking one user's second factor below 1 in 1,000.
//!
//! Every attempt is a compare-and-swap on the stored state it was decided on: a wrong
//! code swaps in [`LockoutPolicy::charge`]'s next state, a right code swaps to "no
//! failures" in the same statement that records its time step. A request whose swap loses
//! re-reads the state and decides again. So a burst of parallel guesses can never get more
//! than `max` effective attempts per lockout period: the swap that reaches the next
//! multiple of `max` sets the lock, and every request still in flight then sees it and is
//! refused, even with the right code. While locked, even the right code is refused.
//!
//! The state needs nothing beyond the two columns it always had (`failed_attempts`,
//! `locked_until`): the lock level is `failed_attempts / max`.

use crate::clock::UnixTime;

/// The per-user brute-force defence: `MAX_FAILED_ATTEMPTS`, `LOCKOUT_SECONDS`, `LOCKOUT_MAX_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// `MAX_FAILED_ATTEMPTS`: failures in a row that lock the user, each time.
    pub max_failed_attempts: u32,
    /// `LOCKOUT_SECONDS`: the first lock of a run; each further lock doubles it ...
    pub lockout_seconds: u64,
    /// `LOCKOUT_MAX_SECONDS`: ... up to this (equal to `lockout_seconds`: a flat lockout).
    pub max_lockout_seconds: u64,
}

/// A user's lockout state, as stored: the failures in a row and the end of the current lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    pub failed_attempts: u32,
    pub locked_until: Option<UnixTime>,
}

/// The span over which the brute-force goal is stated: 30 days.
pub const ATTACK_SPAN_SECONDS: u64 = 30 * 86_400;

/// The goal at the default settings: an attacker guessing for [`ATTACK_SPAN_SECONDS`] breaks
/// one user's second factor with a chance below this.
pub const TARGET_CHANCE: f64 = 1e-3;

/// What a policy lets an attacker do in a span of time (see [`LockoutPolicy::attack_budget`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttackBudget {
    /// Wrong guesses that were checked against the codes.
    pub guesses: u64,
    /// Locks those guesses set off.
    pub lockouts: u64,
}

impl LockoutPolicy {
    /// The defaults of `MAX_FAILED_ATTEMPTS`, `LOCKOUT_SECONDS` and `LOCKOUT_MAX_SECONDS`
    /// (a configuration test holds the variables' documented defaults to these).
    pub const DEFAULT: Self = Self { max_failed_attempts: 5, lockout_seconds: 300, max_lockout_seconds: 86_400 };

    /// Seconds until the lock ends, if `state` is locked at `now`.
    pub fn locked_for(&self, state: LockState, now: UnixTime) -> Option<u64> {
        state.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// How many locks this run of failures has earned: 0 before the first.
    pub fn level(&self, state: LockState) -> u32 {
        state.failed_attempts / self.max_failed_attempts.max(1)
    }

    /// How long the `level`-th lock of a run lasts (`level` ≥ 1): `lockout_seconds`,
    /// doubling with each level, at most `max_lockout_seconds`.
    pub fn lock_seconds(&self, level: u32) -> u64 {
        let doublings = level.saturating_sub(1);
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.lockout_seconds.saturating_mul(factor).min(self.max_lockout_seconds).max(self.lockout_seconds)
    }

    /// The state after one more failure is charged, or the remaining lock if no attempt may
    /// be made now.
    pub fn charge(&self, state: LockState, now: UnixTime) -> Result<LockState, u64> {
        if let Some(remaining) = self.locked_for(state, now) {
            return Err(remaining);
        }
        let failed = state.failed_attempts.saturating_add(1);
        // A count stuck at u32::MAX (never reached in practice) keeps locking at the cap.
        let locks = failed.is_multiple_of(self.max_failed_attempts.max(1)) || failed == u32::MAX;
        let next = LockState { failed_attempts: failed, locked_until: None };
        if locks {
            let seconds = self.lock_seconds(self.level(next).max(1));
            Ok(LockState { locked_until: Some(now.saturating_add(seconds)), ..next })
        } else {
            Ok(next)
        }
    }

    /// Plays an attacker against this policy for `span` seconds, from a clean state: every
    /// wrong guess is made the moment the policy allows it, as from any number of source
    /// addresses at once. Stops counting at `limit` guesses.
    ///
    /// Each lock is decided by [`Self::charge`] itself, so the figure is the real policy's,
    /// not a formula's. The failures between two locks change nothing but the count, so they
    /// are added at once: one loop step per lock keeps a policy that allows millions of
    /// guesses cheap to evaluate (a unit test checks this against one charge per guess).
    pub fn attack_budget(&self, span: u64, limit: u64) -> AttackBudget {
        let max = self.max_failed_attempts.max(1);
        let mut state = LockState::default();
        let mut budget = AttackBudget::default();
        let mut now: UnixTime = 0;
        while now < span && budget.guesses < limit {
            if let Some(remaining) = self.locked_for(state, now) {
                now = now.saturating_add(remaining);
                continue;
            }
            let before_lock =
                (max - 1 - state.failed_attempts % max).min((u32::MAX - 1).saturating_sub(state.failed_attempts));
            let skipped = u64::from(before_lock).min(limit - budget.guesses);
            budget.guesses += skipped;
            state = LockState { failed_attempts: state.failed_attempts + skipped as u32, locked_until: None };
            if budget.guesses == limit {
                break;
            }
            match self.charge(state, now) {
                Ok(next) => {
                    budget.guesses += 1;
                    budget.lockouts += u64::from(next.locked_until.is_some());
                    state = next;
                }
                Err(remaining) => now = now.saturating_add(remaining),
            }
        }
        budget
    }

    /// The chance that an attacker guessing for `span` seconds breaks one user's second
    /// factor (see [`break_in_chance`]).
    pub fn chance_in(&self, span: u64, digits: u8, valid_window: u16) -> f64 {
        let winning = winning_codes(valid_window);
        // Past this many guesses the chance is above 99.9%: no need to count further.
        let space = 10f64.powi(i32::from(digits));
        let enough = (7.0 * space / winning as f64).ceil() as u64;
        break_in_chance(self.attack_budget(span, enough).guesses, winning, digits)
    }
}

/// Codes that would let an attacker in at any moment: the `2 × valid_window + 1` TOTP codes
/// of the steps around the current one, plus an outstanding sent code (the attacker can make
/// the server send one, and it stays valid for `OTP_CODE_TTL`).
pub fn winning_codes(valid_window: u16) -> u64 {
    2 * u64::from(valid_window) + 1 + 1
}

/// The chance that at least one of `guesses` wrong-or-right guesses hits one of `winning`
/// codes out of `10^digits`: `1 - (1 - winning / 10^digits)^guesses`, each guess taken as
/// an independent draw (the codes change every step; this is also never more than the
/// union bound `guesses × winning / 10^digits`).
pub fn break_in_chance(guesses: u64, winning: u64, digits: u8) -> f64 {
    let p = (winning as f64 / 10f64.powi(i32::from(digits))).min(1.0);
    // 1 - (1-p)^n, computed without losing the small result to rounding.
    -((guesses as f64) * (-p).ln_1p()).exp_m1()
}

/// A chance as people read it: "1 in 1,316" below one half, a percentage above.
pub fn describe_chance(chance: f64) -> String {
    if chance <= 0.0 {
        "0".into()
    } else if chance < 0.5 {
        let n = (1.0 / chance).round() as u64;
        let digits = n.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("1 in {grouped}")
    } else {
        format!("{:.1}%", chance * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy =
        LockoutPolicy { max_failed_attempts: 3, lockout_seconds: 300, max_lockout_seconds: 300 };

    fn defaults() -> LockoutPolicy {
        LockoutPolicy::DEFAULT
    }

    #[test]
    fn the_max_th_charge_locks_and_the_lock_expires() {
        let now = 1000;
        let s1 = POLICY.charge(LockState::default(), now).unwrap();
        let s2 = POLICY.charge(s1, now).unwrap();
        assert_eq!(s2, LockState { failed_attempts: 2, locked_until: None });
        let s3 = POLICY.charge(s2, now).unwrap();
        assert_eq!(s3, LockState { failed_attempts: 3, locked_until: Some(1300) });
        assert_eq!(POLICY.charge(s3, now + 1), Err(299));
        assert_eq!(POLICY.locked_for(s3, 1299), Some(1));
        assert_eq!(POLICY.locked_for(s3, 1300), None);
        let after = POLICY.charge(s3, 1300).unwrap();
        assert_eq!(after, LockState { failed_attempts: 4, locked_until: None }, "the count goes on after a lock");
    }

    #[test]
    fn max_of_one_locks_on_every_failure() {
        let policy = LockoutPolicy { max_failed_attempts: 1, lockout_seconds: 10, max_lockout_seconds: 10 };
        let first = policy.charge(LockState::default(), 5).unwrap();
        assert_eq!(first.locked_until, Some(15));
        assert_eq!(policy.charge(first, 15).unwrap().locked_until, Some(25));
    }

    #[test]
    fn each_lock_of_a_run_doubles_up_to_the_cap() {
        let policy = LockoutPolicy { max_failed_attempts: 2, lockout_seconds: 300, max_lockout_seconds: 86_400 };
        let mut state = LockState::default();
        let mut now = 0;
        let mut locks = Vec::new();
        while locks.len() < 11 {
            match policy.charge(state, now) {
                Ok(next) => {
                    if let Some(until) = next.locked_until {
                        locks.push(until - now);
                    }
                    state = next;
                }
                Err(remaining) => now += remaining,
            }
        }
        assert_eq!(locks, [300, 600, 1200, 2400, 4800, 9600, 19_200, 38_400, 76_800, 86_400, 86_400]);
        assert_eq!(policy.level(state), 11);
    }

    #[test]
    fn a_flat_policy_never_grows() {
        assert_eq!((1..=40).map(|k| POLICY.lock_seconds(k)).max(), Some(300));
    }

    #[test]
    fn huge_levels_stay_at_the_cap() {
        let policy = defaults();
        assert_eq!(policy.lock_seconds(64), 86_400);
        assert_eq!(policy.lock_seconds(u32::MAX), 86_400);
        let worn = LockState { failed_attempts: u32::MAX - 1, locked_until: None };
        let next = policy.charge(worn, 0).unwrap();
        assert_eq!(next.locked_until, Some(86_400), "a saturated count still locks");
        assert_eq!(policy.charge(LockState { locked_until: None, ..next }, 0).unwrap().locked_until, Some(86_400));
    }

    #[test]
    fn the_attacker_of_a_flat_five_per_five_minutes_gets_43_200_guesses_a_month() {
        let flat = LockoutPolicy { max_failed_attempts: 5, lockout_seconds: 300, max_lockout_seconds: 300 };
        let budget = flat.attack_budget(ATTACK_SPAN_SECONDS, u64::MAX);
        assert_eq!(budget, AttackBudget { guesses: 43_200, lockouts: 8_640 });
        let chance = break_in_chance(budget.guesses, winning_codes(1), 6);
        assert!((0.15..0.17).contains(&chance), "about 1 in 6, was {chance}");
    }

    /// The brute-force goal of the defaults, with its arithmetic (docs/SECURITY.md repeats it).
    #[test]
    fn the_default_policy_keeps_a_30_day_attack_below_1_in_1000() {
        let policy = defaults();
        assert_eq!(policy, LockoutPolicy { max_failed_attempts: 5, lockout_seconds: 300, max_lockout_seconds: 86_400 });
        // Locks of 300 × 2^(k-1) s for k = 1..9 add up to 300 × 511 = 153,300 s (1.8 days);
        // then one 24-hour lock per 5 guesses: 29 more rounds start before day 30.
        let budget = policy.attack_budget(ATTACK_SPAN_SECONDS, u64::MAX);
        assert_eq!(budget, AttackBudget { guesses: 190, lockouts: 38 });

        let chance = policy.chance_in(ATTACK_SPAN_SECONDS, 6, 1);
        assert_eq!(chance, break_in_chance(190, 4, 6));
        assert!(chance < TARGET_CHANCE, "30-day chance {chance}");
        assert!((7.59e-4..7.61e-4).contains(&chance), "1 - (1 - 4e-6)^190 ≈ 7.6e-4, was {chance}");
        // A legitimate user who mistypes five times waits five minutes, not more.
        assert_eq!(policy.lock_seconds(1), 300);
    }

    /// The attacker of `attack_budget`, one charge per guess.
    fn attack_one_guess_at_a_time(policy: LockoutPolicy, span: u64) -> AttackBudget {
        let (mut state, mut budget, mut now) = (LockState::default(), AttackBudget::default(), 0);
        while now < span {
            match policy.charge(state, now) {
                Ok(next) => {
                    budget.guesses += 1;
                    budget.lockouts += u64::from(next.locked_until.is_some());
                    state = next;
                }
                Err(remaining) => now += remaining,
            }
        }
        budget
    }

    #[test]
    fn adding_up_the_failures_between_locks_gives_the_same_budget_as_playing_each_guess() {
        for (max, base, cap) in [(5, 300, 86_400), (5, 300, 300), (1, 60, 3_600), (3, 7, 1_000), (10, 1, 86_400)] {
            let policy = LockoutPolicy { max_failed_attempts: max, lockout_seconds: base, max_lockout_seconds: cap };
            for span in [0, 1, 299, 300, 301, 86_400, ATTACK_SPAN_SECONDS] {
                assert_eq!(
                    policy.attack_budget(span, u64::MAX),
                    attack_one_guess_at_a_time(policy, span),
                    "{policy:?} over {span} s"
                );
            }
        }
        assert_eq!(defaults().attack_budget(ATTACK_SPAN_SECONDS, 7).guesses, 7, "the limit stops the count");
    }

    #[test]
    fn the_chance_is_capped_by_the_code_space() {
        assert_eq!(break_in_chance(0, 4, 6), 0.0);
        assert!((break_in_chance(1, 4, 6) - 4e-6).abs() < 1e-15);
        assert!(break_in_chance(u64::MAX, 4, 6) > 0.999_999);
        assert_eq!(describe_chance(break_in_chance(190, 4, 6)), "1 in 1,316");
        assert_eq!(describe_chance(0.158), "1 in 6");
        assert_eq!(describe_chance(0.75), "75.0%");
        let weak = LockoutPolicy { max_failed_attempts: 1_000_000, lockout_seconds: 1, max_lockout_seconds: 1 };
        assert!(weak.chance_in(ATTACK_SPAN_SECONDS, 8, 10) > 0.999, "counting stops early and still says 'certain'");
    }
}
