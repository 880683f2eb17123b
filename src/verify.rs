//! The MFA server's logic, independent of HTTP: send a code, verify a code.
//!
//! Two kinds of code are accepted by one `verify`:
//! - TOTP codes from an authenticator app, within `OTP_VALID_WINDOW` steps, each step at
//!   most once (RFC 6238 §5.2);
//! - codes sent by `request_otp`: random, single-use, valid for `OTP_CODE_TTL` seconds,
//!   stored only as a keyed hash, replaced by the next request.
//!
//! Both are charged against the same per-user lockout (see `crate::lockout`).

use std::sync::Arc;

use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keys;
use crate::domain::{Channel, OtpCode, Username};
use crate::metrics::Metrics;
use crate::notify::{Delivery, Notifier};
use crate::otp;
use crate::store::{PutCode, Store, StoreError, UserRecord};

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
    /// An authenticator-app code; `offset` is its step minus the server's current step.
    Totp { offset: i64 },
    /// A code sent by `/request-otp`.
    SentCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    pub channels: Vec<Channel>,
    pub expires_in: u64,
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
}

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
    ) -> Self {
        Self { store, notifier, clock, keys, settings, metrics }
    }

    /// The MFA server's metrics, which the HTTP layer records requests in too.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the database answers, and what else `/healthcheck` shows.
    pub async fn health(&self) -> Health {
        let database_reachable = match self.store.ping().await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "health check: database unreachable");
                false
            }
        };
        Health { database_reachable, notifier: self.notifier.name(), time: self.clock.now() }
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
        let recipients: Vec<(Channel, String)> = [
            user.profile.email.clone().map(|e| (Channel::Email, e)),
            user.profile.telegram_id.clone().map(|t| (Channel::Telegram, t)),
        ]
        .into_iter()
        .flatten()
        .filter(|(channel, _)| only.is_none_or(|o| o == *channel))
        .collect();
        if recipients.is_empty() {
            return Err(VerifyError::NoDeliveryChannel(match only {
                Some(channel) => format!("the user has no {channel} address or chat"),
                None => "the user has no email address or Telegram id to send a code to".into(),
            }));
        }

        let ttl = self.settings.code_ttl_seconds;
        let code = otp::random_code(user.profile.params.digits);
        let hash = self.keys.hash_code(username, &code).map_err(|e| VerifyError::Internal(e.to_string()))?;
        match self.store.put_sent_code(username, &hash, now, now + ttl, self.settings.resend_seconds).await? {
            PutCode::Stored => {}
            PutCode::TooSoon { retry_after } => return Err(VerifyError::ResendTooSoon { retry_after }),
        }

        let message = self.settings.message_template.render(&code, ttl, &self.settings.issuer, username.as_str());
        let subject = format!("{} verification code", self.settings.issuer);
        let mut tasks = tokio::task::JoinSet::new();
        for (channel, recipient) in recipients {
            let delivery = Delivery { channel, recipient, subject: subject.clone(), message: message.clone() };
            let notifier = self.notifier.clone();
            tasks.spawn(async move { (channel, notifier.deliver(&delivery).await) });
        }
        let mut delivered = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((channel, Ok(_attempts))) => {
                    self.metrics.code_sent(channel.as_str(), "sent");
                    delivered.push(channel);
                }
                Ok((channel, Err(e))) => {
                    self.metrics.code_sent(channel.as_str(), "failed");
                    warn!(event = "delivery_failed", %channel, notifier = self.notifier.name(), error = %e);
                    failures.push(format!("{channel}: {}", e.why.public));
                }
                Err(e) => {
                    warn!(event = "delivery_failed", error = %e, "a delivery task failed");
                    failures.push("a delivery task failed".to_string());
                }
            }
        }
        delivered.sort_by_key(|c| c.as_str());
        if delivered.is_empty() {
            // Nothing went out: forget the code so the user may ask again at once.
            self.store.delete_sent_code(username).await?;
            failures.sort();
            return Err(VerifyError::DeliveryFailed(failures.join("; ")));
        }
        info!(event = "otp_sent", channels = ?delivered, expires_in = ttl);
        Ok(CodeSent { channels: delivered, expires_in: ttl })
    }

    /// Checks a code of either kind; parallel guesses cannot outrun the lockout (see below).
    /// A right app code costs one write; any other code one write to count the failure.
    pub async fn verify(&self, username: &Username, code: &OtpCode) -> Result<Accepted, VerifyError> {
        let mut user = self.find_user(username).await?;
        let now = self.clock.now();
        let policy = self.settings.lockout;
        if let Some(retry_after) = policy.locked_for(user.lock, now) {
            // Refused before any cryptography: this is the path an attacker hammers.
            info!(event = "verify", outcome = "locked", retry_after);
            self.metrics.verification("locked");
            return Err(VerifyError::TooManyAttempts { retry_after });
        }
        let secret = self
            .keys
            .open_secret(username, &user.profile.sealed_secret)
            .map_err(|e| VerifyError::Internal(e.to_string()))?;
        let totp_step = otp::matching_step(&secret, user.profile.params, code, now, self.settings.valid_window);

        // Every outcome is a compare-and-swap on the lockout state read with the user: an
        // accepted code swaps it to "no failures", any other code swaps in one more failure.
        // So each lock is preceded by at most `max_failed_attempts` effective attempts, however
        // many arrive in parallel: a request whose swap loses re-reads the state, and once
        // the user is locked it gets 429 whatever its code was.
        let mut replayed = false;
        let mut charged = None;
        for _ in 0..MAX_CAS_ROUNDS {
            let state = user.lock;
            let next = policy.charge(state, now).map_err(|retry_after| {
                info!(event = "verify", outcome = "locked", retry_after);
                self.metrics.verification("locked");
                VerifyError::TooManyAttempts { retry_after }
            })?;
            if let Some(step) = totp_step.filter(|_| !replayed) {
                if self.store.accept_totp_step(username, step, state).await? {
                    let offset = i64::try_from(step).unwrap_or(i64::MAX)
                        - i64::try_from(now / user.profile.params.period).unwrap_or(0);
                    if offset != 0 {
                        info!(
                            event = "clock_drift",
                            step_offset = offset,
                            "accepted a code from a neighbouring time step"
                        );
                    }
                    info!(event = "verify", outcome = "valid", method = "totp");
                    self.metrics.verification("valid");
                    return Ok(Accepted::Totp { offset });
                }
                user = self.find_user(username).await?;
                if user.lock != state {
                    continue; // another request changed the state first: decide again
                }
                replayed = true; // same state, so the step itself was already used
            }
            if self.store.swap_lock(username, state, next).await? {
                charged = Some(next);
                break;
            }
            user = self.find_user(username).await?;
        }
        let charged = charged.ok_or_else(|| VerifyError::Internal("lockout state kept changing".into()))?;

        let hash = self.keys.hash_code(username, code.as_str()).map_err(|e| VerifyError::Internal(e.to_string()))?;
        // The sent code came with the user's row: a wrong code (the usual case, and every
        // attacker's) costs no further read or write. A match is consumed by the DELETE,
        // which decides (single use, expiry) in the database.
        let sent_code_matches = user.sent_code.as_ref().is_some_and(|sent| {
            sent.expires_at > now && bool::from(subtle::ConstantTimeEq::ct_eq(sent.hash.as_slice(), hash.as_slice()))
        });
        if sent_code_matches && self.store.take_sent_code(username, &hash, now).await? {
            self.store.clear_lock(username).await?;
            info!(event = "verify", outcome = "valid", method = "sent_code");
            self.metrics.verification("valid");
            return Ok(Accepted::SentCode);
        }

        let outcome = if replayed { "replayed" } else { "invalid" };
        info!(event = "verify", outcome, failed_attempts = charged.failed_attempts);
        self.metrics.verification(outcome);
        if let Some(until) = charged.locked_until {
            self.metrics.lockout();
            warn!(
                event = "lockout",
                lock_level = policy.level(charged),
                locked_for = until.saturating_sub(now),
                failed_attempts = charged.failed_attempts,
                "user locked out after repeated failures"
            );
        }
        Err(VerifyError::InvalidToken)
    }
}
