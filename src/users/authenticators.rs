//! A user's authenticators: adding one (pending until its first code confirms it),
//! rotating (a pending one that retires the old one when confirmed), listing, removing,
//! resynchronising, and the enrollment QR code.

use super::{Enrollment, FIRST_AUTHENTICATOR_NAME, UserError, UserService, qr_png};
use crate::alerts::Alert;
use crate::domain::{OtpCode, Username};
use crate::otp::{self, Algorithm, OtpParams, SecretBytes};
use crate::store::{Advance, AuthenticatorRecord, AuthenticatorStatus, Factor, Resealed, UserRecord, UserSource};

/// How long after an authenticator is issued its QR code can be fetched again, unless a
/// code of it has been accepted already (then it is set up and the QR is not needed).
pub const QR_WINDOW_SECONDS: u64 = 600;

/// Longest authenticator name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// [`parse_name`] as a pattern: no control character, and one that is not a space.
pub const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// An authenticator id as paths carry it (the ids made here are 12 hex digits).
pub const ID_PATTERN: &str = "^[0-9a-z]{1,64}$";

/// Secrets sealed again per transaction at start-up.
const RESEAL_BATCH: u32 = 1000;

/// An authenticator to add: its kind and name, and the parameters (`None`: the defaults,
/// `OTP_ALGORITHM`, `OTP_DIGITS`, `OTP_PERIOD`, counter 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewAuthenticator {
    Totp { name: String, algorithm: Option<Algorithm>, digits: Option<u8>, period: Option<u64> },
    Hotp { name: String, algorithm: Option<Algorithm>, digits: Option<u8>, counter: Option<u64> },
}

/// Two consecutive codes of an authenticator, for a resynchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncCodes(pub [OtpCode; 2]);

/// A fresh authenticator id: 12 hex digits (48 random bits), unique among a user's.
pub(super) fn new_id() -> String {
    let bytes: [u8; 6] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

/// A name as given, without spaces around it: 1 to [`MAX_NAME_CHARS`] characters, none of
/// them a control character (what [`NAME_PATTERN`] says of the untrimmed name).
pub fn parse_name(raw: &str) -> Result<String, String> {
    if raw.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    let name = raw.trim_matches(' ');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters besides spaces around them"));
    }
    Ok(name.to_string())
}

/// An authenticator id from a path, as [`ID_PATTERN`] says.
pub fn parse_id(raw: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok { Ok(raw.to_string()) } else { Err("authenticator id: 1 to 64 lower-case letters and digits".into()) }
}

impl UserService {
    /// Adds a pending authenticator with a fresh 160-bit secret: its first accepted code
    /// confirms it; unconfirmed, it is removed after `ENROLL_CONFIRM_SECONDS`.
    pub async fn add_authenticator(&self, username: &Username, new: NewAuthenticator) -> Result<Enrollment, UserError> {
        self.changeable(username).await?;
        let defaults = self.settings.otp;
        let (name, factor) = match new {
            NewAuthenticator::Totp { name, algorithm, digits, period } => {
                let params = OtpParams {
                    algorithm: algorithm.unwrap_or(defaults.algorithm),
                    digits: digits.unwrap_or(defaults.digits),
                    period: period.unwrap_or(defaults.period),
                };
                (name, Factor::Totp { params, last_step: None, drift_steps: 0 })
            }
            NewAuthenticator::Hotp { name, algorithm, digits, counter } => {
                let factor = Factor::Hotp {
                    algorithm: algorithm.unwrap_or(Algorithm::Sha1),
                    digits: digits.unwrap_or(defaults.digits),
                    counter: counter.unwrap_or(0),
                };
                (name, factor)
            }
        };
        self.add_pending(username, name, factor, None).await
    }

    /// Issues a new TOTP secret as a pending authenticator that, once a code of it is
    /// accepted, retires the user's first active TOTP authenticator (until then that one
    /// keeps working, so a failed scan never locks the user out). A rotation not confirmed
    /// yet is replaced by this one.
    pub async fn rotate(&self, username: &Username) -> Result<Enrollment, UserError> {
        let user = self.changeable(username).await?;
        let current = user
            .authenticators
            .iter()
            .filter(|a| a.status == AuthenticatorStatus::Active)
            .find(|a| matches!(a.factor, Factor::Totp { .. }));
        let (name, params, replaces) = match current {
            Some(a @ AuthenticatorRecord { factor: Factor::Totp { params, .. }, .. }) => {
                (a.name.clone(), *params, Some(a.id.clone()))
            }
            _ => (FIRST_AUTHENTICATOR_NAME.to_string(), self.settings.otp, None),
        };
        let factor = Factor::Totp { params, last_step: None, drift_steps: 0 };
        self.add_pending(username, name, factor, replaces).await
    }

    async fn add_pending(
        &self,
        username: &Username,
        name: String,
        factor: Factor,
        replaces: Option<String>,
    ) -> Result<Enrollment, UserError> {
        let now = self.clock.now();
        let secret = SecretBytes::generate();
        let id = new_id();
        let authenticator = AuthenticatorRecord {
            sealed_secret: self.seal(username, &id, &secret)?,
            id,
            name,
            factor,
            status: AuthenticatorStatus::Pending,
            replaces,
            created_at: now,
            last_used_at: None,
            expires_at: Some(now.saturating_add(self.settings.enroll_confirm_seconds)),
        };
        if !self.store.add_authenticator(username, &authenticator, now).await? {
            return Err(UserError::NotFound(username.clone()));
        }
        self.alerts.raise(username, Alert::AuthenticatorAdded { name: authenticator.name.clone() });
        self.enrollment(username, authenticator, secret).await
    }

    /// The user's authenticators, oldest first, without the expired pending ones.
    pub async fn authenticators(&self, username: &Username) -> Result<Vec<AuthenticatorRecord>, UserError> {
        let now = self.clock.now();
        let user = self.find(username).await?.record;
        Ok(user.authenticators.into_iter().filter(|a| a.usable_at(now)).collect())
    }

    /// Removes an authenticator (`.env` users' are managed in `.env`).
    pub async fn remove_authenticator(&self, username: &Username, id: &str) -> Result<AuthenticatorRecord, UserError> {
        let user = self.changeable(username).await?;
        let found = self.usable(&user, id)?;
        self.recent_locks.forget(username.as_str());
        if !self.store.delete_authenticator(username, id).await? {
            return Err(UserError::AuthenticatorNotFound { username: username.clone(), id: id.to_string() });
        }
        self.alerts.raise(username, Alert::AuthenticatorRemoved { name: found.name.clone() });
        Ok(found)
    }

    /// Resynchronises an authenticator from two consecutive codes: an HOTP token pressed
    /// too often (its counter moves past the second code), or a TOTP app whose clock is far
    /// off (its learned drift becomes the codes' offset). Searches `HOTP_RESYNC_WINDOW`
    /// counters ahead, or steps each side.
    pub async fn resync(
        &self,
        username: &Username,
        id: &str,
        codes: &ResyncCodes,
    ) -> Result<AuthenticatorRecord, UserError> {
        let user = self.find(username).await?.record;
        let found = self.usable(&user, id)?;
        let secret = self
            .keys
            .open_secret(username, id, &found.sealed_secret)
            .map_err(|e| UserError::Internal(e.to_string()))?;
        let [first, second] = &codes.0;
        let window = self.settings.resync_window;
        let now = self.clock.now();
        let advance = match found.factor {
            Factor::Hotp { algorithm, digits, counter } => {
                let at = otp::resync_counter(&secret, algorithm, digits, [first, second], counter, window)
                    .ok_or(UserError::ResyncFailed)?;
                Advance::Hotp { expected: counter, next: at + 1 }
            }
            Factor::Totp { params, last_step, .. } => {
                let step = otp::resync_step(&secret, params, [first, second], now, window)
                    .filter(|step| last_step.is_none_or(|last| *step > last))
                    .ok_or(UserError::ResyncFailed)?;
                let origin = now / params.period.max(1);
                let drift_steps = i64::try_from(step).unwrap_or(i64::MAX) - i64::try_from(origin).unwrap_or(0);
                Advance::Totp { step, drift_steps }
            }
        };
        if !self.store.resync_authenticator(username, id, advance).await? {
            // Another request moved it meanwhile: the codes are spent or stale.
            return Err(UserError::ResyncFailed);
        }
        let user = self.find(username).await?.record;
        self.usable(&user, id)
    }

    /// The enrollment QR code as PNG of the user's newest authenticator, while it is fresh:
    /// issued less than [`QR_WINDOW_SECONDS`] ago and never used, so it cannot be read back
    /// later.
    pub async fn enrollment_qr_png(&self, username: &Username) -> Result<Vec<u8>, UserError> {
        let user = self.find(username).await?.record;
        let now = self.clock.now();
        let fresh = user.authenticators.iter().filter(|a| a.usable_at(now)).max_by_key(|a| a.created_at).filter(|a| {
            a.last_used_at.is_none()
                && now.saturating_sub(a.created_at) < QR_WINDOW_SECONDS
                && user.profile.source != UserSource::Env
        });
        let Some(authenticator) = fresh else { return Err(UserError::QrExpired) };
        let secret = self
            .keys
            .open_secret(username, &authenticator.id, &authenticator.sealed_secret)
            .map_err(|e| UserError::Internal(e.to_string()))?;
        qr_png(&self.otpauth_uri(username, authenticator, &secret)?)
    }

    /// Removes the pending authenticators whose confirmation time is over; how many.
    pub async fn expire_pending(&self) -> Result<u64, UserError> {
        Ok(self.store.expire_pending(self.clock.now()).await?)
    }

    /// Seals again, bound to their authenticator too, the secrets sealed before
    /// authenticators had ids (those of a database of an earlier version); how many.
    ///
    /// Finding none takes a scan of every authenticator, which on a cold cache also leaves
    /// those pages cached in large folios that make SQLite's later writes into them dearer
    /// (docs/BENCHMARKS.md, finding 15); so a pass that leaves none behind says so in
    /// `meta`, and later start-ups skip it. A pass that met secrets no key opens does not,
    /// so they are reported again at each start.
    pub async fn bind_secrets_to_authenticators(&self) -> Result<u64, UserError> {
        if self.store.secrets_all_bound().await? {
            return Ok(0);
        }
        let (mut done, mut after, mut damaged) = (0, None, false);
        loop {
            let found = self.store.user_bound_secrets(after.as_ref(), RESEAL_BATCH).await?;
            let Some((username, id, _)) = found.last() else { break };
            after = Some((username.clone(), id.clone()));
            let mut resealed = Vec::with_capacity(found.len());
            for (username, id, old) in found {
                match self.keys.open_secret(&username, &id, &old) {
                    Ok(secret) => {
                        let new = self.seal(&username, &id, &secret)?;
                        resealed.push(Resealed { username, authenticator: id, old, new });
                    }
                    // Damaged before: no key opens it, so it stays as it is (as it failed before).
                    Err(_) => {
                        damaged = true;
                        tracing::warn!(%username, authenticator = %id, "a stored secret cannot be decrypted");
                    }
                }
            }
            // Each only if unchanged: another process may be doing the same (and a secret
            // changed meanwhile was sealed anew, bound).
            done += self.store.reseal_secrets(&resealed).await?;
        }
        if !damaged {
            self.store.record_secrets_all_bound().await?;
        }
        Ok(done)
    }

    /// The user's authenticator `id`, if it is there and not an expired pending one.
    fn usable(&self, user: &UserRecord, id: &str) -> Result<AuthenticatorRecord, UserError> {
        let now = self.clock.now();
        user.authenticators.iter().find(|a| a.id == id && a.usable_at(now)).cloned().ok_or_else(|| {
            UserError::AuthenticatorNotFound { username: user.profile.username.clone(), id: id.to_string() }
        })
    }
}
