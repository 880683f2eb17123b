//! The per-user brute-force defence, as a pure policy over [`LockState`].
//!
//! A progressive lockout whose failures are forgiven only by time: every `max` failures
//! lock the user, each lock of a run lasts twice as long as the one before (up to a cap),
//! and failures fade at one level (`max` failures) per 2 × the cap without a failure.
//!
//! ```text
//!        wrong code: count (less what time forgave) + 1
//!        ┌─────────┐
//!        ▼         │   count reaches k × max    ┌──────────────────────────────────────┐
//!   ┌─────────────────┐ ─────────────────────▶ │ locked for min(base × 2^(k-1), cap)  │
//!   │ open, count = n │                        │ (even the right code is refused)     │
//!   └─────────────────┘ ◀───────────────────── └──────────────────────────────────────┘
//!                         time passes: open, the count fades
//!                         by max per 2 × cap since the last failure
//!
//!   right code: changes nothing here.  operator unlock: count = 0, open.
//! ```
//!
//! A right code does not reset the count. If it did, an attacker who knows when the user
//! logs in could play the ladder up after each login (44 guesses a day, 1 in 190 over 30
//! days with one login a day), and the user would never notice. Here the user's logins
//! change nothing the attacker can use, and the attacker's pace is bounded by the fading
//! alone: [`LockoutPolicy::guess_bound`] is the most wrong guesses any attacker can have
//! checked in a span of time, whatever they know and however they pace themselves; a unit
//! test below holds the defaults to a 30-day chance below 1 in 1,000 by it, and checks it
//! against attackers that are played out.
//!
//! The price, for the real user: failures are remembered for days. After locking
//! themselves out once (five typos: 5 minutes), the count fades over 2 days; five more
//! typos within that time lock again for 5 minutes, ten for 10 more. After an attack the
//! count stays high for up to 16 days (the attacker cannot push it past 8 levels, see
//! `guess_bound`), so a few typos then lock for hours: the operator's unlock (`mfa user
//! unlock`, the admin API) clears it, and every lock is logged and counted.
//!
//! Every attempt is a compare-and-swap on the stored state it was decided on: a wrong
//! code swaps in [`LockoutPolicy::charge`]'s next state, a right code is accepted by a
//! statement that also requires the state unchanged. A request whose swap loses re-reads
//! the state and decides again. So a burst of parallel guesses can never get more than
//! `max` effective attempts per lockout period: the swap that reaches the next multiple
//! of `max` sets the lock, and every request still in flight then sees it and is refused,
//! even with the right code.

use crate::clock::UnixTime;

mod recent;
pub use recent::RecentLocks;

/// The per-user brute-force defence: `MAX_FAILED_ATTEMPTS`, `LOCKOUT_SECONDS`, `LOCKOUT_MAX_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// `MAX_FAILED_ATTEMPTS`: failures that lock the user, each time.
    pub max_failed_attempts: u32,
    /// `LOCKOUT_SECONDS`: the first lock of a run; each further lock doubles it ...
    pub lockout_seconds: u64,
    /// `LOCKOUT_MAX_SECONDS`: ... up to this (equal to `lockout_seconds`: a flat lockout).
    /// Failures fade at `max_failed_attempts` per twice this.
    pub max_lockout_seconds: u64,
}

/// A user's lockout state, as stored: the failures counted at the last one, when that
/// was, and the end of the current lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    pub failed_attempts: u32,
    pub locked_until: Option<UnixTime>,
    pub last_failed_at: Option<UnixTime>,
}

/// The span over which the brute-force goal is stated: 30 days.
pub const ATTACK_SPAN_SECONDS: u64 = 30 * 86_400;

/// The goal at the default settings: an attacker guessing for [`ATTACK_SPAN_SECONDS`] breaks
/// one user's second factor with a chance below this.
pub const TARGET_CHANCE: f64 = 1e-3;

/// What an attacker got in a span of time (see [`LockoutPolicy::attack_budget`]).
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

    fn max(&self) -> u32 {
        self.max_failed_attempts.max(1)
    }

    /// Seconds locked at `now`, if `state` is locked then.
    pub fn locked_for(&self, state: LockState, now: UnixTime) -> Option<u64> {
        state.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// How many failures `seconds` without a failure forgive: `max` per 2 × the cap.
    pub fn forgiven_in(&self, seconds: u64) -> u64 {
        let per = 2 * u128::from(self.max_lockout_seconds.max(self.lockout_seconds).max(1));
        u64::try_from(u128::from(seconds) * u128::from(self.max()) / per).unwrap_or(u64::MAX)
    }

    /// The failures that still count at `now`: the stored count less what time forgave.
    pub fn failures(&self, state: LockState, now: UnixTime) -> u32 {
        let quiet = state.last_failed_at.map_or(0, |at| now.saturating_sub(at));
        let forgiven = u32::try_from(self.forgiven_in(quiet)).unwrap_or(u32::MAX);
        state.failed_attempts.saturating_sub(forgiven)
    }

    /// How many locks the stored count has earned: 0 before the first.
    pub fn level(&self, state: LockState) -> u32 {
        state.failed_attempts / self.max()
    }

    /// How long the `level`-th lock lasts (`level` ≥ 1): `lockout_seconds`, doubling with
    /// each level, at most `max_lockout_seconds`.
    pub fn lock_seconds(&self, level: u32) -> u64 {
        let doublings = level.saturating_sub(1);
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.lockout_seconds.saturating_mul(factor).min(self.max_lockout_seconds).max(self.lockout_seconds)
    }

    /// The state after one more failure at `now`, or the remaining lock if no attempt may
    /// be made now.
    pub fn charge(&self, state: LockState, now: UnixTime) -> Result<LockState, u64> {
        if let Some(remaining) = self.locked_for(state, now) {
            return Err(remaining);
        }
        let failed = self.failures(state, now).saturating_add(1);
        // A count stuck at u32::MAX (never reached in practice) keeps locking at the cap.
        let locks = failed.is_multiple_of(self.max()) || failed == u32::MAX;
        let next = LockState { failed_attempts: failed, locked_until: None, last_failed_at: Some(now) };
        if locks {
            let seconds = self.lock_seconds(self.level(next).max(1));
            Ok(LockState { locked_until: Some(now.saturating_add(seconds)), ..next })
        } else {
            Ok(next)
        }
    }

    /// The highest count any sequence of failures reaches within `span` seconds from a
    /// clean state. Counts only grow by one, so passing `k × max` means standing on it, and
    /// that sets lock `k`; the next failure comes after that lock. From the first level
    /// whose lock forgives a failure, the count falls back before each next one and never
    /// passes that level. Below it, each level's lock must be sat out within the span.
    pub fn peak_failures(&self, span: u64) -> u64 {
        let max = u64::from(self.max());
        let mut spent = 0u64;
        let mut level = 1u32;
        loop {
            let lock = self.lock_seconds(level);
            spent = spent.saturating_add(lock);
            if self.forgiven_in(lock) >= 1 || spent > span || level == u32::MAX {
                return u64::from(level).saturating_mul(max);
            }
            level += 1;
        }
    }

    /// The most wrong guesses any attacker can have checked in `span` seconds, from a clean
    /// state, whatever they know of the user's logins and however they pace themselves:
    /// every checked guess adds one to the count, so the guesses are the count at the end
    /// (at most [`Self::peak_failures`]) plus what time forgave (at most
    /// [`Self::forgiven_in`] the whole span, since forgiving is a floor of each quiet time,
    /// and the floors add up to no more than the floor of the sum). Right codes change
    /// nothing, so the user's logins do not enter.
    pub fn guess_bound(&self, span: u64) -> u64 {
        self.peak_failures(span).saturating_add(self.forgiven_in(span))
    }

    /// Plays the greedy attacker for `span` seconds, from a clean state: every wrong guess
    /// is made the moment the policy allows it, as from any number of source addresses at
    /// once. Stops counting at `limit` guesses. Decided by [`Self::charge`] itself; the
    /// failures between two locks, all at one instant, are added at once, so one loop step
    /// per lock keeps a policy that allows millions of guesses cheap to play (a unit test
    /// checks this against one charge per guess).
    pub fn attack_budget(&self, span: u64, limit: u64) -> AttackBudget {
        let max = self.max();
        let mut state = LockState::default();
        let mut budget = AttackBudget::default();
        let mut now: UnixTime = 0;
        while now < span && budget.guesses < limit {
            match self.charge(state, now) {
                Err(remaining) => {
                    now = now.saturating_add(remaining);
                    continue;
                }
                Ok(next) => {
                    budget.guesses += 1;
                    budget.lockouts += u64::from(next.locked_until.is_some());
                    state = next;
                }
            }
            if state.locked_until.is_some() || budget.guesses == limit {
                continue;
            }
            // The guesses at this same instant up to the one that locks forgive nothing.
            let before_lock =
                (max - 1 - state.failed_attempts % max).min((u32::MAX - 1).saturating_sub(state.failed_attempts));
            let skipped = u64::from(before_lock).min(limit - budget.guesses);
            budget.guesses += skipped;
            state.failed_attempts += skipped as u32;
        }
        budget
    }

    /// The chance that an attacker guessing for `span` seconds breaks one user's second
    /// factor, at most (see [`Self::guess_bound`] and [`break_in_chance`]).
    pub fn chance_in(&self, span: u64, digits: u8, valid_window: u16) -> f64 {
        break_in_chance(self.guess_bound(span), winning_codes(valid_window), digits)
    }
}

/// Codes that would let an attacker in at any moment: the `2 × valid_window + 1` TOTP codes
/// of the steps around the current one, plus the sent codes that can be valid at once (the
/// attacker can make the server send them: a new one while the previous one, past half its
/// lifetime, stays valid; see `crate::verify`).
pub fn winning_codes(valid_window: u16) -> u64 {
    2 * u64::from(valid_window) + 1 + MAX_VALID_SENT_CODES
}

/// Sent codes valid at once, at most: the newest, and the one before it.
pub const MAX_VALID_SENT_CODES: u64 = 2;

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

    fn state(failed_attempts: u32, locked_until: Option<UnixTime>, last_failed_at: UnixTime) -> LockState {
        LockState { failed_attempts, locked_until, last_failed_at: Some(last_failed_at) }
    }

    #[test]
    fn the_max_th_charge_locks_and_the_lock_expires() {
        let now = 1000;
        let s1 = POLICY.charge(LockState::default(), now).unwrap();
        let s2 = POLICY.charge(s1, now).unwrap();
        assert_eq!(s2, state(2, None, now));
        let s3 = POLICY.charge(s2, now).unwrap();
        assert_eq!(s3, state(3, Some(1300), now));
        assert_eq!(POLICY.charge(s3, now + 1), Err(299));
        assert_eq!(POLICY.locked_for(s3, 1299), Some(1));
        assert_eq!(POLICY.locked_for(s3, 1300), None);
        // 300 quiet seconds forgave 3 × 300 / 600 = 1 failure: 3 - 1 + 1 locks again.
        assert_eq!(POLICY.failures(s3, 1300), 2);
        assert_eq!(POLICY.charge(s3, 1300).unwrap(), state(3, Some(1600), 1300), "the count goes on after a lock");
    }

    #[test]
    fn failures_fade_by_max_per_twice_the_cap_and_never_below_zero() {
        let policy = defaults(); // 5 per 2 × 86,400 s: one per 34,560 s
        let five = state(5, None, 0);
        assert_eq!(policy.failures(five, 34_559), 5);
        assert_eq!(policy.failures(five, 34_560), 4);
        assert_eq!(policy.failures(five, 172_800), 0);
        assert_eq!(policy.failures(five, u64::MAX), 0);
        assert_eq!(policy.failures(LockState { failed_attempts: 7, ..LockState::default() }, 10_000_000), 7, "no time");
        let after = policy.charge(five, 2 * 34_560).unwrap();
        assert_eq!(after, state(4, None, 69_120), "faded to 3, then one more");
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
        assert_eq!(policy.level(state), 10, "a 24-hour lock forgives one failure: the level holds at 10");
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
        let worn = state(u32::MAX - 1, None, 0);
        let next = policy.charge(worn, 0).unwrap();
        assert_eq!(next.locked_until, Some(86_400), "a saturated count still locks");
        assert_eq!(policy.charge(LockState { locked_until: None, ..next }, 0).unwrap().locked_until, Some(86_400));
    }

    /// Plays an attacker who picks the time of each next guess (never before the policy
    /// allows one) for `span` seconds from a clean state.
    fn play(policy: LockoutPolicy, span: u64, mut next: impl FnMut(LockState, UnixTime) -> UnixTime) -> AttackBudget {
        let (mut state, mut budget, mut now) = (LockState::default(), AttackBudget::default(), 0);
        loop {
            now = next(state, now).max(now);
            if let Some(remaining) = policy.locked_for(state, now) {
                now += remaining;
            }
            if now >= span {
                return budget;
            }
            let charged = policy.charge(state, now).unwrap();
            budget.guesses += 1;
            budget.lockouts += u64::from(charged.locked_until.is_some());
            state = charged;
        }
    }

    /// The moment the next failure fades, after `now`.
    fn next_fade(policy: LockoutPolicy, state: LockState, now: UnixTime) -> UnixTime {
        let at = state.last_failed_at.unwrap_or(now);
        let forgiven = policy.failures(LockState { failed_attempts: u32::MAX, ..state }, now);
        let mut t = now;
        while policy.failures(LockState { failed_attempts: u32::MAX, ..state }, t) == forgiven && t - at < 1 << 40 {
            t += 1 + (t - at) / 64; // coarse, then exact enough: overshooting only hurts the attacker
        }
        t
    }

    /// Attackers that pace themselves in every way we could think of, each against the bound.
    fn attackers(policy: LockoutPolicy, span: u64) -> Vec<(String, AttackBudget)> {
        let max = policy.max_failed_attempts;
        let mut played = vec![("greedy".to_string(), play(policy, span, |_, now| now))];
        for period in [1, 60, 300, 3_600, 34_560, 38_400, 43_200, 86_400] {
            played.push((format!("one guess every {period} s"), play(policy, span, |_, now| now + period)));
        }
        // Never set off a lock after the first ones: the user notices nothing.
        played.push((
            "stealthy".into(),
            play(policy, span, |state, now| {
                if (policy.failures(state, now) + 1).is_multiple_of(max) && state.last_failed_at.is_some() {
                    next_fade(policy, state, now)
                } else {
                    now
                }
            }),
        ));
        // Climb greedily to just below the highest count, then guess only at the moment a
        // failure fades, so that no lock stops the guessing again.
        let peak = u32::try_from(policy.peak_failures(span)).unwrap_or(u32::MAX);
        played.push((
            "climb, then ride the fade".into(),
            play(policy, span, |state, now| {
                if policy.failures(state, now) + 1 < peak { now } else { next_fade(policy, state, now) }
            }),
        ));
        played
    }

    #[test]
    fn no_attacker_we_can_play_beats_the_bound_and_the_best_comes_close() {
        for (max, base, cap) in [(5, 300, 86_400), (5, 300, 300), (3, 60, 3_600), (10, 1, 86_400), (1, 60, 86_400)] {
            let policy = LockoutPolicy { max_failed_attempts: max, lockout_seconds: base, max_lockout_seconds: cap };
            for span in [3_600, 86_400, ATTACK_SPAN_SECONDS] {
                let bound = policy.guess_bound(span);
                let played = attackers(policy, span);
                for (who, budget) in &played {
                    assert!(
                        budget.guesses <= bound,
                        "{who} got {} > {bound} against {policy:?} over {span} s",
                        budget.guesses
                    );
                }
                let best = played.iter().map(|(_, b)| b.guesses).max().unwrap();
                if span == ATTACK_SPAN_SECONDS {
                    assert!(best * 10 >= bound * 7, "{policy:?}: the bound {bound} is loose, best {best}");
                }
            }
        }
    }

    #[test]
    fn the_attacker_of_a_flat_five_per_five_minutes_gets_about_17_000_guesses_a_month() {
        let flat = LockoutPolicy { max_failed_attempts: 5, lockout_seconds: 300, max_lockout_seconds: 300 };
        // Each 5-minute lock forgives 5 × 300 / 600 = 2 failures (a floor): 2 guesses per
        // lock after the first 5, and the bound adds the floor of the whole span's fading.
        assert_eq!(flat.attack_budget(ATTACK_SPAN_SECONDS, u64::MAX).guesses, 5 + 2 * 8_639);
        assert_eq!(flat.guess_bound(ATTACK_SPAN_SECONDS), 5 + 21_600);
        let chance = flat.chance_in(ATTACK_SPAN_SECONDS, 6, 1);
        assert!((0.10..0.11).contains(&chance), "about 1 in 9, was {chance}");
    }

    /// The brute-force goal of the defaults, with its arithmetic (docs/SECURITY.md repeats it).
    #[test]
    fn the_default_policy_keeps_a_30_day_attack_below_1_in_1000() {
        let policy = defaults();
        assert_eq!(policy, LockoutPolicy { max_failed_attempts: 5, lockout_seconds: 300, max_lockout_seconds: 86_400 });
        // The locks of levels 1..7 (300 × 2^(k-1) s, up to 19,200 s) forgive nothing; the
        // 8th (38,400 s) forgives one, so the count never passes 40. 30 days forgive
        // 2,592,000 × 5 / 172,800 = 75 failures.
        assert_eq!(policy.peak_failures(ATTACK_SPAN_SECONDS), 40);
        assert_eq!(policy.forgiven_in(ATTACK_SPAN_SECONDS), 75);
        assert_eq!(policy.guess_bound(ATTACK_SPAN_SECONDS), 115);
        let chance = policy.chance_in(ATTACK_SPAN_SECONDS, 6, 1);
        assert_eq!(chance, break_in_chance(115, 5, 6));
        assert!(chance < TARGET_CHANCE, "30-day chance {chance}");
        assert_eq!(describe_chance(chance), "1 in 1,740");
        // The greedy attacker: 40 to climb, then one guess per 38,400-second lock.
        assert_eq!(policy.attack_budget(ATTACK_SPAN_SECONDS, u64::MAX), AttackBudget { guesses: 106, lockouts: 74 });
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
        assert_eq!(break_in_chance(0, 5, 6), 0.0);
        assert!((break_in_chance(1, 5, 6) - 5e-6).abs() < 1e-15);
        assert!(break_in_chance(u64::MAX, 5, 6) > 0.999_999);
        assert_eq!(describe_chance(0.158), "1 in 6");
        assert_eq!(describe_chance(0.75), "75.0%");
        let weak = LockoutPolicy { max_failed_attempts: 1_000_000, lockout_seconds: 1, max_lockout_seconds: 1 };
        assert!(weak.chance_in(ATTACK_SPAN_SECONDS, 8, 10) > 0.999);
    }
}
