//! The MFA server's logic, independent of HTTP: send a code, verify a code.
//!
//! Three kinds of code are accepted by one `verify`:
//! - codes of any of the user's authenticators: TOTP within `OTP_VALID_WINDOW` steps of
//!   the authenticator's learned clock drift, each step at most once (RFC 6238 §5.2, §6);
//!   HOTP within `HOTP_LOOKAHEAD` counters, each counter at most once (RFC 4226 §7.4). A
//!   pending authenticator's first code confirms it;
//! - codes sent by `request_otp`: random, valid for `OTP_CODE_TTL` seconds, stored as a
//!   keyed hash (and sealed, to be resent). A request never knocks out the code the user
//!   is typing: while the newest code has at least half its lifetime left, a request
//!   sends it again; after that, a new code, and the previous one stays valid until it
//!   expires. So at most two are valid at once, both used by the first success. Sends
//!   per user are paced by `OTP_SENDS_PER_HOUR`;
//! - recovery codes, each once.
//!
//! Wrong codes of any kind are charged against the same per-user lockout (see
//! `crate::lockout`); a code that matches but was used already (a double click, a
//! retried request) is refused as a replay and charged nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use crate::alerts::{self, Alert, Alerts};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keys;
use crate::domain::{Channel, OtpCode, RecoveryCode, Token, Username};
use crate::lockout::RecentLocks;
use crate::metrics::{Metrics, Verification};
use crate::notify::Notifier;
use crate::otp;
use crate::outbox::{Attempt, Outbox};
use crate::store::{
    Advance, AuthenticatorRecord, AuthenticatorStatus, DeliveryJob, Factor, PreviousCode, SentCode, SentCodes, Store,
    StoreError, UserRecord,
};

/// Why a code could not be sent or checked. `crate::api::error` answers each.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("unknown user")]
    UnknownUser,
    #[error("too many failed attempts; locked for {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("a code was sent less than the resend interval ago")]
    ResendTooSoon { retry_after: u64 },
    #[error("{0}")]
    NoDeliveryChannel(String),
    #[error("the code could not be delivered: {0}")]
    DeliveryFailed(String),
    #[error("wrong, expired or already used code")]
    InvalidToken,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a code was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A TOTP authenticator's code; `offset` is its step minus the server's current step.
    Totp { offset: i64 },
    /// An HOTP authenticator's code.
    Hotp,
    /// A code sent by `/request-otp`.
    SentCode,
    /// A recovery code; `remaining` unused ones are left.
    Recovery { remaining: u64 },
}

impl Accepted {
    /// The `method` `/verify` answers.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp { .. } => "totp",
            Self::Hotp => "hotp",
            Self::SentCode => "sent_code",
            Self::Recovery { .. } => "recovery",
        }
    }
}

/// A code that one of the user's authenticators made.
#[derive(Debug, Clone)]
struct OtpMatch {
    id: String,
    advance: Advance,
    /// Its step or counter was accepted before: a replay.
    used: bool,
    accepted: Accepted,
    /// It confirms a pending authenticator.
    confirms: bool,
    /// The authenticator that confirming this one retires (a rotation's).
    retires: Option<String>,
    /// Its name, for the alert that it was confirmed.
    name: String,
}

/// Why a user whose Telegram chat refused the bot gets no code.
const BLOCKED_AND_NO_EMAIL: &str = "the user's Telegram chat refused the bot (blocked it, or is gone) and there is no \
                                    email address: set another telegram_id or an email";

/// A code on its way: delivered on `channels`, or (`queued`) still being tried on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    pub channels: Vec<Channel>,
    pub expires_in: u64,
    pub queued: bool,
}

/// What `/healthcheck` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub database_reachable: bool,
    /// Which notifier sends codes (`file` or `notification-service`).
    pub notifier: &'static str,
    /// The server's clock: a skewed one is the usual cause of "my code is always invalid".
    pub time: u64,
}

/// Sending codes and checking them. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct VerifyService {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    keys: Arc<Keys>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    /// The second of the clock in which the database last answered `/healthcheck`'s probe.
    /// Within that second the answer is reused: probes and load balancers may ask
    /// thousands of times a second, and the round trip cost more than the rest of the
    /// request (SQLite: a read transaction's file locks; PostgreSQL: a network round
    /// trip). A failure is never reused: the next check probes again.
    healthy_at: Arc<AtomicU64>,
    /// Shared with the user administration of this process (see `crate::lockout::RecentLocks`).
    recent_locks: Arc<RecentLocks>,
    /// Where lockouts, confirmed authenticators and used recovery codes are told to the user
    /// (nowhere until [`Self::with_alerts`]).
    alerts: Alerts,
    /// Where sent codes go before they are delivered (`crate::outbox`).
    outbox: Arc<Outbox>,
}

/// `healthy_at` before any probe has succeeded.
const NEVER: u64 = u64::MAX;

/// Compare-and-swap retries before giving up; only reached under extreme contention.
const MAX_CAS_ROUNDS: usize = 64;

impl VerifyService {
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        keys: Arc<Keys>,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        recent_locks: Arc<RecentLocks>,
    ) -> Self {
        let healthy_at = Arc::new(AtomicU64::new(NEVER));
        let outbox = Arc::new(Outbox::new(
            store.clone(),
            notifier.clone(),
            keys.clone(),
            clock.clone(),
            settings.clone(),
            metrics.clone(),
        ));
        let alerts = Alerts::disabled();
        Self { store, notifier, clock, keys, settings, metrics, healthy_at, recent_locks, alerts, outbox }
    }

    /// The same service, telling users of their lockouts and sign-ins of note through `alerts`.
    #[must_use]
    pub fn with_alerts(self, alerts: Alerts) -> Self {
        Self { alerts, ..self }
    }

    /// The outbox, whose worker start-up runs beside the server.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// The MFA server's metrics, which the HTTP layer records requests in too.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the database answers (it did within the clock's current second, or it does
    /// now), and what else `/healthcheck` shows.
    pub async fn health(&self) -> Health {
        let now = self.clock.now();
        let database_reachable = self.healthy_at.load(Ordering::Relaxed) == now
            || match self.store.ping().await {
                Ok(()) => {
                    self.healthy_at.store(now, Ordering::Relaxed);
                    true
                }
                Err(e) => {
                    warn!(error = %e, "health check: database unreachable");
                    false
                }
            };
        Health { database_reachable, notifier: self.notifier.name(), time: now }
    }

    /// The metrics in the Prometheus text format, with the database connections read now.
    pub fn metrics_text(&self) -> String {
        let (open, idle) = self.store.pool_stats();
        self.metrics.set_pool(open, idle);
        self.metrics.encode()
    }

    async fn find_user(&self, username: &Username) -> Result<UserRecord, VerifyError> {
        self.store.user(username).await?.ok_or(VerifyError::UnknownUser)
    }

    /// Generates a fresh code, stores its hash and delivers it, in parallel, on every channel
    /// the user has (or only on `only`). Succeeds if at least one channel delivered it.
    pub async fn request_otp(&self, username: &Username, only: Option<Channel>) -> Result<CodeSent, VerifyError> {
        let user = self.find_user(username).await?;
        let now = self.clock.now();
        if let Some(retry_after) = self.settings.lockout.locked_for(user.lock, now) {
            return Err(VerifyError::TooManyAttempts { retry_after });
        }
        let mut recipients: Vec<(Channel, String)> = [
            user.profile.email.clone().map(|e| (Channel::Email, e)),
            // A chat that refused the bot is skipped, unless asked for by name.
            user.profile
                .telegram_id
                .clone()
                .filter(|_| user.telegram_blocked_at.is_none() || only == Some(Channel::Telegram))
                .map(|t| (Channel::Telegram, t)),
        ]
        .into_iter()
        .flatten()
        .filter(|(channel, _)| only.is_none_or(|o| o == *channel))
        .collect();
        if self.settings.failover_after.is_some() {
            // OTP_DELIVERY=first: the user's order, Telegram first by default.
            let order = user.channel_order.clone().unwrap_or_else(|| vec![Channel::Telegram, Channel::Email]);
            recipients.sort_by_key(|(channel, _)| order.iter().position(|c| c == channel).unwrap_or(usize::MAX));
        }
        if recipients.is_empty() {
            return Err(VerifyError::NoDeliveryChannel(match only {
                Some(channel) => format!("the user has no {channel} address or chat"),
                None if user.telegram_blocked_at.is_some() => BLOCKED_AND_NO_EMAIL.into(),
                None => "the user has no email address or Telegram id to send a code to".into(),
            }));
        }

        let (code, expires_in, before, jobs) = self.store_code(username, user, &recipients).await?;
        let (delivered, pending, failures) = self.first_attempts(jobs, code).await;
        if delivered.is_empty() && pending.is_empty() {
            // Nothing went out and nothing will: put back what was there, so the user may
            // ask again at once and this attempt counts against no limit (unless another
            // request came since).
            self.store.swap_sent_codes(username, Some(before.1), &before.0).await?;
            return Err(VerifyError::DeliveryFailed(failures.join("; ")));
        }
        let queued = delivered.is_empty();
        let channels = if queued { pending } else { delivered };
        info!(event = "otp_sent", channels = ?channels, queued, expires_in);
        Ok(CodeSent { channels, expires_in, queued })
    }

    /// The first attempt at each job, all at once, for at most `OTP_SEND_WAIT_MS`: the
    /// channels that delivered, those still being tried (retrying, or not done in time:
    /// their attempts go on), and why the others failed for good.
    async fn first_attempts(
        &self,
        jobs: Vec<DeliveryJob>,
        code: zeroize::Zeroizing<String>,
    ) -> (Vec<Channel>, Vec<Channel>, Vec<String>) {
        let mut pending: Vec<Channel> = jobs.iter().map(|j| j.channel).collect();
        let mut attempts = tokio::task::JoinSet::new();
        // The jobs queued for later (OTP_DELIVERY=first) are the workers'.
        for job in jobs.into_iter().filter(|job| job.leased) {
            let (outbox, channel, code) = (self.outbox.clone(), job.channel, code.clone());
            attempts.spawn(async move { (channel, outbox.first_attempt(job, code).await) });
        }
        let (mut delivered, mut failures) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + self.settings.send_wait;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, attempts.join_next()).await {
            let Ok((channel, outcome)) = joined else { continue };
            match outcome {
                Attempt::Delivered => {
                    self.metrics.code_sent(channel.as_str(), "sent");
                    pending.retain(|c| *c != channel);
                    delivered.push(channel);
                }
                Attempt::Failed(why) => {
                    self.metrics.code_sent(channel.as_str(), "failed");
                    pending.retain(|c| *c != channel);
                    failures.push(format!("{channel}: {why}"));
                }
                Attempt::Abandoned => pending.retain(|c| *c != channel),
                Attempt::Retrying | Attempt::NotClaimed => {}
            }
        }
        // The attempts still running go on: the JoinSet lets them finish on their own.
        attempts.detach_all();
        delivered.sort_by_key(|c| c.as_str());
        pending.sort_by_key(|c| c.as_str());
        failures.sort();
        (delivered, pending, failures)
    }

    /// Decides which code to send (the newest one again while it has half its lifetime
    /// left, else a new one that leaves the newest valid as the previous one), within the
    /// resend interval and the hourly pace, and stores that decision by a compare-and-swap
    /// on the newest code's send time, in one transaction with a delivery job per recipient.
    /// Returns the code, the seconds it has left, what was stored before with the send time
    /// written (to put it back if delivery fails), and the jobs (claimed by this process).
    async fn store_code(
        &self,
        username: &Username,
        mut user: UserRecord,
        recipients: &[(Channel, String)],
    ) -> Result<(zeroize::Zeroizing<String>, u64, (SentCodes, u64), Vec<DeliveryJob>), VerifyError> {
        let internal = |e: &dyn std::fmt::Display| VerifyError::Internal(e.to_string());
        let ttl = self.settings.code_ttl_seconds;
        let per_hour = u64::from(self.settings.sends_per_hour.max(1));
        let interval = 3_600u64.div_ceil(per_hour);
        for _ in 0..MAX_CAS_ROUNDS {
            let now = self.clock.now();
            let before = user.sent.clone();
            let current = before.current.as_ref();
            if let Some(sent) = current
                && sent.sent_at.saturating_add(self.settings.resend_seconds) > now
            {
                let retry_after = (sent.sent_at + self.settings.resend_seconds - now).max(1);
                return Err(VerifyError::ResendTooSoon { retry_after });
            }
            // GCRA: `per_hour` at once, then one every `interval` seconds.
            let tat = before.send_tat.unwrap_or(now).max(now);
            let allowance = (per_hour - 1) * interval;
            if tat - now > allowance {
                return Err(VerifyError::ResendTooSoon { retry_after: tat - now - allowance });
            }
            let unused = |c: &&SentCode| before.used_at.is_none() && c.expires_at > now;
            let resendable = current
                .filter(unused)
                .filter(|c| (c.expires_at - now).saturating_mul(2) >= ttl)
                .and_then(|c| c.sealed.as_ref().map(|sealed| (c, sealed)));
            let (code, next) = match resendable {
                Some((sent, sealed)) => {
                    let code = self.keys.open_code(username, sealed).map_err(|e| internal(&e))?;
                    let again = SentCode { sent_at: now, ..sent.clone() };
                    (code, SentCodes { current: Some(again), send_tat: Some(tat + interval), ..before.clone() })
                }
                None => {
                    let digits = user.first_totp_params().map_or(self.settings.otp.digits, |p| p.digits);
                    let code = zeroize::Zeroizing::new(otp::random_code(digits));
                    let hash = self.keys.hash_code(username, &code).map_err(|e| internal(&e))?;
                    let sealed = self.keys.seal_code(username, &code).map_err(|e| internal(&e))?;
                    let previous =
                        current.filter(unused).map(|c| PreviousCode { hash: c.hash.clone(), expires_at: c.expires_at });
                    let fresh = SentCode { hash, sealed: Some(sealed), sent_at: now, expires_at: now + ttl };
                    (code, SentCodes { current: Some(fresh), previous, used_at: None, send_tat: Some(tat + interval) })
                }
            };
            let Some(newest) = next.current.as_ref() else { return Err(internal(&"no code to send")) };
            let expires_in = newest.expires_at - now;
            // OTP_DELIVERY=first: each later channel waits its turn (the next one sooner when
            // one fails for good), and is never sent once another delivered.
            let turn = |i: usize| self.settings.failover_after.filter(|_| i > 0).map(|s| s * i as u64);
            let jobs = recipients
                .iter()
                .enumerate()
                .map(|(i, (channel, to))| {
                    self.outbox.job(username, *channel, to, &code, &newest.hash, newest.expires_at, turn(i))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| internal(&e))?;
            let expected = current.map(|c| c.sent_at);
            let lease_until = now + crate::outbox::LEASE_SECONDS;
            if self.store.swap_sent_codes_queueing(username, expected, &next, &jobs, now, lease_until).await? {
                self.outbox.queued(&jobs);
                return Ok((code, expires_in, (before, now), jobs));
            }
            user = self.find_user(username).await?; // another request stored first: decide again
        }
        Err(VerifyError::Internal("the sent codes kept changing".into()))
    }

    /// Checks a code of any kind; parallel guesses cannot outrun the lockout (see below).
    /// A right code costs one transaction; any other code one write to count the failure (and
    /// `client`, the address it came from, for the lockout alert).
    pub async fn verify(&self, username: &Username, token: &Token, client: IpAddr) -> Result<Accepted, VerifyError> {
        let now = self.clock.now();
        let locked = |retry_after| {
            info!(event = "verify", outcome = "locked", retry_after);
            self.metrics.verification(Verification::Locked);
            VerifyError::TooManyAttempts { retry_after }
        };
        // Refused before any cryptography, and while the lock was read in this second
        // without reading it again: this is the path an attacker hammers.
        if let Some(retry_after) = self.recent_locks.locked_for(username.as_str(), now) {
            return Err(locked(retry_after));
        }
        let mut user = self.find_user(username).await?;
        let policy = self.settings.lockout;
        if let Some(retry_after) = policy.locked_for(user.lock, now) {
            self.recent_locks.saw(username.as_str(), now + retry_after, now);
            return Err(locked(retry_after));
        }
        let internal = |e: &dyn std::fmt::Display| VerifyError::Internal(e.to_string());
        // Hashes only when there is something to compare them with (an HMAC: about a
        // microsecond each).
        let (code, sent_hash, recovery_hash) = match token {
            Token::Otp(code) => {
                let hash = match &user.sent.current {
                    Some(_) => Some(self.keys.hash_code(username, code.as_str()).map_err(|e| internal(&e))?),
                    None => None,
                };
                (Some(code), hash, None)
            }
            Token::Recovery(code) => (None, None, Some(self.recovery_hash(username, code)?)),
        };

        // Every outcome is decided on the lockout state read with the user, and takes
        // effect only if that state is unchanged: an accepted code in the transaction that
        // records it, any other code by swapping in one more failure. So each lock is
        // preceded by at most `max_failed_attempts` effective attempts, however many arrive
        // in parallel: a request whose swap loses re-reads the state, and once the user is
        // locked it gets 429 whatever its code was.
        let mut charged = None;
        for _ in 0..MAX_CAS_ROUNDS {
            let state = user.lock;
            let next = policy.charge(state, now).map_err(locked)?;
            if let Some(code) = code
                && let Some(found) = self.authenticator_match(&user, code, now)?
            {
                if found.used {
                    return Err(self.replayed(found.accepted.method()));
                }
                let retires = found.retires.as_deref().filter(|_| found.confirms);
                if self.store.accept_code(username, &found.id, found.advance, retires, state, now).await? {
                    return Ok(self.accepted(username, found));
                }
                user = self.find_user(username).await?; // the state or the replay guard moved
                continue;
            }
            match sent_hash.as_deref().map(|hash| sent_code_match(&user.sent, hash, now)) {
                Some(SentMatch::Unused) => {
                    let hash = sent_hash.as_deref().unwrap_or_default();
                    if self.store.use_sent_codes(username, hash, now, state).await? {
                        info!(event = "verify", outcome = "valid", method = "sent_code");
                        self.metrics.verification(Verification::Valid);
                        return Ok(Accepted::SentCode);
                    }
                    user = self.find_user(username).await?;
                    continue;
                }
                Some(SentMatch::Used) => return Err(self.replayed("sent_code")),
                Some(SentMatch::None) | None => {}
            }
            if let Some(hash) = &recovery_hash {
                let codes = self.store.recovery_codes(username).await?;
                match codes
                    .iter()
                    .find(|c| bool::from(subtle::ConstantTimeEq::ct_eq(c.hash.as_slice(), hash.as_slice())))
                {
                    Some(c) if c.used_at.is_some() => return Err(self.replayed("recovery")),
                    Some(_) => {
                        if self.store.use_recovery_code(username, hash, now, state).await? {
                            let remaining = codes.iter().filter(|c| c.used_at.is_none()).count() as u64 - 1;
                            info!(event = "verify", outcome = "valid", method = "recovery", remaining);
                            self.metrics.verification(Verification::Valid);
                            self.alerts.raise(username, Alert::RecoveryCodeUsed { remaining });
                            return Ok(Accepted::Recovery { remaining });
                        }
                        user = self.find_user(username).await?;
                        continue;
                    }
                    None => {}
                }
            }
            // The addresses of the failures since the last lock (or since time forgave them).
            let fresh = state.locked_until.is_some() || policy.failures(state, now) == 0;
            let failed_from = alerts::failure_addresses(&user.failed_from, fresh, client);
            if self.store.swap_lock(username, state, next, &failed_from).await? {
                charged = Some((next, failed_from));
                break;
            }
            user = self.find_user(username).await?;
        }
        let (charged, failed_from) =
            charged.ok_or_else(|| VerifyError::Internal("lockout state kept changing".into()))?;

        info!(event = "verify", outcome = "invalid", failed_attempts = charged.failed_attempts);
        self.metrics.verification(Verification::Invalid);
        if let Some(until) = charged.locked_until {
            self.recent_locks.saw(username.as_str(), until, now);
            self.metrics.lockout();
            warn!(
                event = "lockout",
                lock_level = policy.level(charged),
                locked_for = until.saturating_sub(now),
                failed_attempts = charged.failed_attempts,
                "user locked out after repeated failures"
            );
            self.alerts.raise(username, Alert::LockedOut { until, addresses: failed_from });
        }
        Err(VerifyError::InvalidToken)
    }

    /// The user's authenticator that made `code` at `now`, if one did. Every usable
    /// authenticator is checked, whichever matches, so the time taken does not tell which
    /// one did; a match that is not a replay wins over one that is.
    fn authenticator_match(
        &self,
        user: &UserRecord,
        code: &OtpCode,
        now: u64,
    ) -> Result<Option<OtpMatch>, VerifyError> {
        let username = &user.profile.username;
        let mut found: Option<OtpMatch> = None;
        for authenticator in user.authenticators.iter().filter(|a| a.usable_at(now)) {
            let secret = self
                .keys
                .open_secret(username, &authenticator.id, &authenticator.sealed_secret)
                .map_err(|e| VerifyError::Internal(e.to_string()))?;
            let candidate = self.code_of(authenticator, &secret, code, now);
            if let Some(candidate) = candidate
                && found.as_ref().is_none_or(|f| f.used && !candidate.used)
            {
                found = Some(candidate);
            }
        }
        Ok(found)
    }

    /// Whether `authenticator` made `code` at `now`, and how accepting it moves its guard.
    fn code_of(
        &self,
        authenticator: &AuthenticatorRecord,
        secret: &otp::SecretBytes,
        code: &OtpCode,
        now: u64,
    ) -> Option<OtpMatch> {
        let confirms = authenticator.status == AuthenticatorStatus::Pending;
        let (id, retires, name) =
            (authenticator.id.clone(), authenticator.replaces.clone(), authenticator.name.clone());
        match authenticator.factor {
            Factor::Totp { params, last_step, drift_steps } => {
                let window = self.settings.valid_window;
                let step = otp::matching_step_near(secret, params, code, now, window, drift_steps)?;
                let origin = now / params.period.max(1);
                let offset = i64::try_from(step).unwrap_or(i64::MAX) - i64::try_from(origin).unwrap_or(0);
                Some(OtpMatch {
                    id,
                    advance: Advance::Totp { step, drift_steps: offset },
                    used: last_step.is_some_and(|last| last >= step),
                    accepted: Accepted::Totp { offset },
                    confirms,
                    retires,
                    name,
                })
            }
            Factor::Hotp { algorithm, digits, counter } => {
                let lookahead = self.settings.hotp_lookahead;
                let accepted = otp::matching_counter(secret, algorithm, digits, code, counter, lookahead);
                // The counter before the expected one is the code accepted last: a replay.
                let last = counter
                    .checked_sub(1)
                    .filter(|last| otp::codes_equal(&otp::hotp_code(secret, algorithm, digits, *last), code.as_str()));
                let (matched, used) = match (accepted, last) {
                    (Some(c), _) => (c, false),
                    (None, Some(c)) => (c, true),
                    (None, None) => return None,
                };
                Some(OtpMatch {
                    id,
                    advance: Advance::Hotp { expected: counter, next: matched + 1 },
                    used,
                    accepted: Accepted::Hotp,
                    confirms,
                    retires,
                    name,
                })
            }
        }
    }

    /// Logs, counts and answers an authenticator's accepted code.
    fn accepted(&self, username: &Username, found: OtpMatch) -> Accepted {
        if let Accepted::Totp { offset } = found.accepted {
            self.metrics.totp_offset(offset);
            if offset != 0 {
                info!(event = "clock_drift", step_offset = offset, "accepted a code from a neighbouring time step");
            }
        }
        if found.confirms {
            info!(event = "authenticator_confirmed", authenticator = %found.id);
            self.alerts.raise(username, Alert::AuthenticatorConfirmed { name: found.name });
        }
        info!(event = "verify", outcome = "valid", method = found.accepted.method(), authenticator = %found.id);
        self.metrics.verification(Verification::Valid);
        found.accepted
    }

    fn recovery_hash(&self, username: &Username, code: &RecoveryCode) -> Result<Vec<u8>, VerifyError> {
        self.keys.hash_recovery_code(username, code.as_str()).map_err(|e| VerifyError::Internal(e.to_string()))
    }
}

impl VerifyService {
    /// A code that matched, but was used already: refused, and charged nothing (it is the
    /// user's own double click or retried request, or someone who saw the code used).
    fn replayed(&self, method: &'static str) -> VerifyError {
        info!(event = "verify", outcome = "replayed", method);
        self.metrics.verification(Verification::Replayed);
        VerifyError::InvalidToken
    }
}

/// Whether a presented code's hash is one of the user's sent codes still in their lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentMatch {
    None,
    Unused,
    Used,
}

fn sent_code_match(sent: &SentCodes, hash: &[u8], now: u64) -> SentMatch {
    use subtle::ConstantTimeEq;
    let current = sent.current.as_ref().map(|c| (c.hash.as_slice(), c.expires_at));
    let previous = sent.previous.as_ref().map(|p| (p.hash.as_slice(), p.expires_at));
    // Both compared, always: the time does not tell which one matched.
    let matched = [current, previous]
        .into_iter()
        .flatten()
        .fold(false, |hit, (stored, expires_at)| hit | (bool::from(stored.ct_eq(hash)) && expires_at > now));
    match (matched, sent.used_at) {
        (false, _) => SentMatch::None,
        (true, None) => SentMatch::Unused,
        (true, Some(_)) => SentMatch::Used,
    }
}
