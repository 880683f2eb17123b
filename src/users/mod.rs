//! User administration: enrolling, listing, changing, rotating, unlocking and removing
//! users, importing them from another system, and keeping `.env` users in step with the
//! file. The admin API (`crate::api::admin`) and the `mfa user` commands both go through
//! [`UserService`]; neither touches the store.

mod qr;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use crate::alerts::{Alert, Alerts};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keys;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::lockout::RecentLocks;
use crate::otp::{self, Algorithm, OtpParams, SecretBytes};
/// Who created a user, as the admin API and `mfa user show` tell it.
pub use crate::store::UserSource;
use crate::store::{Store, StoreError, UserProfile, UserRecord};
pub use qr::{qr_png, qr_svg};
pub use sync::{ImportReport, SyncReport};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user '{0}' already exists")]
    Exists(Username),
    #[error("no user '{0}'")]
    NotFound(Username),
    #[error("user '{username}' is defined in the environment by {var}; change it there and restart")]
    DefinedInEnv { username: Username, var: String },
    #[error(
        "user '{username}' is defined both by {var} and in the database (added with `mfa user add` or the \
         admin API); remove one of them"
    )]
    Conflict { username: Username, var: String },
    #[error(
        "the QR code is only served until the first verification, for 10 minutes after the secret was issued; \
         rotate the secret for a new one"
    )]
    QrExpired,
    /// Input that cannot be imported; the message names the line, never a secret.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// A user to enroll: the name, where sent codes go, and the code parameters (`None`: the
/// `OTP_ALGORITHM` / `OTP_DIGITS` default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<EmailAddress>,
    pub telegram: Option<TelegramChat>,
    pub algorithm: Option<Algorithm>,
    pub digits: Option<u8>,
}

/// A change of contact details: `None` keeps a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactChange {
    pub email: Option<Option<EmailAddress>>,
    pub telegram: Option<Option<TelegramChat>>,
}

/// A user as administration shows it: the stored record and, if locked now, for how long.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub record: UserRecord,
    pub locked_for: Option<u64>,
    /// The failures that still count now (they fade with time: see `crate::lockout`).
    pub failed_attempts: u32,
}

/// A new or rotated secret, shown once, with its user.
#[derive(Debug)]
pub struct Enrollment {
    pub user: UserSummary,
    pub secret: SecretBytes,
    pub otpauth_uri: String,
}

/// One page of the users, by name; `next` is where the following page starts (after it).
#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    pub next: Option<Username>,
}

/// How long after a secret is issued its QR code can be fetched again, unless the user has
/// already verified a code with it (then the app is set up and the QR is not needed).
pub const QR_WINDOW_SECONDS: u64 = 600;

/// User administration over the store. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct UserService {
    store: Arc<dyn Store>,
    keys: Arc<Keys>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    /// Shared with the verification of this process, which answers locked users from it:
    /// every change here forgets the user there.
    recent_locks: Arc<RecentLocks>,
    /// Where an unlock is told to the user (none until [`Self::with_alerts`]).
    alerts: Alerts,
}

/// How long [`UserService::close`] waits for the alerts still being sent.
const ALERTS_AT_CLOSE: Duration = Duration::from_secs(10);

impl UserService {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keys, settings, clock, recent_locks: Arc::default(), alerts: Alerts::disabled() }
    }

    /// The same service, telling users of changes to their accounts through `alerts`.
    #[must_use]
    pub fn with_alerts(self, alerts: Alerts) -> Self {
        Self { alerts, ..self }
    }

    /// The alerts this service raises.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The locks recently seen by this process, for its `VerifyService`.
    pub fn recent_locks(&self) -> Arc<RecentLocks> {
        self.recent_locks.clone()
    }

    /// Creates a user with a fresh 160-bit secret, recording who asked (`source`).
    pub async fn add(&self, new: NewUser, source: UserSource) -> Result<Enrollment, UserError> {
        if let Some(var) = self.env_var_of(&new.username) {
            return Err(UserError::DefinedInEnv { username: new.username, var });
        }
        let defaults = self.settings.otp;
        let params = OtpParams {
            algorithm: new.algorithm.unwrap_or(defaults.algorithm),
            digits: new.digits.unwrap_or(defaults.digits),
            period: defaults.period,
        };
        let secret = SecretBytes::generate();
        let profile = UserProfile {
            username: new.username.clone(),
            sealed_secret: self.seal(&new.username, &secret)?,
            params,
            email: new.email.map(|e| e.as_str().to_string()),
            telegram_id: new.telegram.map(|t| t.as_str().to_string()),
            source,
        };
        self.recent_locks.forget(new.username.as_str());
        match self.store.insert_user(&profile, self.clock.now()).await {
            Ok(()) => self.enrollment(&new.username, secret).await,
            Err(StoreError::Conflict) => Err(UserError::Exists(new.username)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find(&self, username: &Username) -> Result<UserSummary, UserError> {
        let record = self.store.user(username).await?.ok_or_else(|| UserError::NotFound(username.clone()))?;
        Ok(self.summary(record))
    }

    /// Every user, by name.
    pub async fn all(&self) -> Result<Vec<UserSummary>, UserError> {
        Ok(self.store.users().await?.into_iter().map(|r| self.summary(r)).collect())
    }

    /// Up to `limit` users after `after`, by name.
    pub async fn page(&self, after: Option<&Username>, limit: u32) -> Result<UserPage, UserError> {
        let users: Vec<UserSummary> =
            self.store.users_page(after, limit).await?.into_iter().map(|r| self.summary(r)).collect();
        let full = users.len() == limit as usize;
        let next = users.last().filter(|_| full).map(|u| u.record.profile.username.clone());
        Ok(UserPage { users, next })
    }

    pub async fn count(&self) -> Result<u64, UserError> {
        Ok(self.store.count_users().await?)
    }

    /// Closes the database: the last call of a command that opened it (after the alerts it
    /// raised are sent, for a while at most).
    pub async fn close(&self) {
        self.alerts.settled_within(ALERTS_AT_CLOSE).await;
        self.store.close().await;
    }

    /// Changes a CLI/API user's email and Telegram id.
    pub async fn update_contact(&self, username: &Username, change: ContactChange) -> Result<UserSummary, UserError> {
        let current = self.changeable(username).await?.profile;
        let email = change.email.map_or(current.email, |e| e.map(|e| e.as_str().to_string()));
        let telegram = change.telegram.map_or(current.telegram_id, |t| t.map(|t| t.as_str().to_string()));
        let updated =
            self.store.update_contact(username, email.as_deref(), telegram.as_deref(), self.clock.now()).await?;
        if !updated {
            return Err(UserError::NotFound(username.clone()));
        }
        self.find(username).await
    }

    /// Gives a user a new secret; codes of the old one stop working at once.
    pub async fn rotate(&self, username: &Username) -> Result<Enrollment, UserError> {
        let current = self.changeable(username).await?.profile;
        let secret = SecretBytes::generate();
        let profile = UserProfile { sealed_secret: self.seal(username, &secret)?, ..current };
        self.recent_locks.forget(username.as_str());
        if !self.store.replace_user(&profile, true, self.clock.now()).await? {
            return Err(UserError::NotFound(username.clone()));
        }
        self.store.clear_sent_codes(username).await?;
        self.enrollment(username, secret).await
    }

    pub async fn remove(&self, username: &Username) -> Result<(), UserError> {
        self.changeable(username).await?;
        self.recent_locks.forget(username.as_str());
        if self.store.delete_user(username).await? { Ok(()) } else { Err(UserError::NotFound(username.clone())) }
    }

    /// Clears failed attempts and any lockout (`.env` users too). A user who had any is
    /// told (an unlock alert).
    pub async fn unlock(&self, username: &Username) -> Result<UserSummary, UserError> {
        let before = self.store.user(username).await?.map(|u| u.lock);
        let cleared = self.store.clear_lock(username).await?;
        self.recent_locks.forget(username.as_str());
        if !cleared {
            return Err(UserError::NotFound(username.clone()));
        }
        if before.is_some_and(|lock| lock.failed_attempts > 0 || lock.locked_until.is_some()) {
            self.alerts.raise(username, Alert::Unlocked);
        }
        self.find(username).await
    }

    /// The enrollment QR code as PNG, while the secret is fresh: issued less than
    /// [`QR_WINDOW_SECONDS`] ago and not used yet, so it cannot be read back later.
    pub async fn enrollment_qr_png(&self, username: &Username) -> Result<Vec<u8>, UserError> {
        let user = self.find(username).await?.record;
        let now = self.clock.now();
        let fresh = user.last_step.is_none()
            && user.secret_set_at.is_some_and(|at| now.saturating_sub(at) < QR_WINDOW_SECONDS)
            && user.profile.source != UserSource::Env;
        if !fresh {
            return Err(UserError::QrExpired);
        }
        let p = &user.profile;
        let secret =
            self.keys.open_secret(username, &p.sealed_secret).map_err(|e| UserError::Internal(e.to_string()))?;
        qr_png(&self.otpauth_uri(username, &secret, p.params)?)
    }

    fn summary(&self, record: UserRecord) -> UserSummary {
        let (policy, now) = (self.settings.lockout, self.clock.now());
        UserSummary {
            locked_for: policy.locked_for(record.lock, now),
            failed_attempts: policy.failures(record.lock, now),
            record,
        }
    }

    fn env_var_of(&self, username: &Username) -> Option<String> {
        self.settings.users.iter().find(|u| &u.username == username).map(|u| u.var.clone())
    }

    /// A user that the CLI and the admin API may change: not one defined in `.env`.
    async fn changeable(&self, username: &Username) -> Result<UserRecord, UserError> {
        let user = self.store.user(username).await?.ok_or_else(|| UserError::NotFound(username.clone()))?;
        if user.profile.source == UserSource::Env {
            let var =
                self.env_var_of(username).unwrap_or_else(|| format!("{}_SECRET", username.as_str().to_uppercase()));
            return Err(UserError::DefinedInEnv { username: username.clone(), var });
        }
        Ok(user)
    }

    fn seal(&self, username: &Username, secret: &SecretBytes) -> Result<Vec<u8>, UserError> {
        self.keys.seal_secret(username, secret).map_err(|e| UserError::Internal(e.to_string()))
    }

    fn otpauth_uri(&self, username: &Username, secret: &SecretBytes, params: OtpParams) -> Result<String, UserError> {
        otp::otpauth_uri(&self.settings.issuer, username.as_str(), secret, params).map_err(UserError::Internal)
    }

    /// What a new or rotated user needs to set up an authenticator app, read back as stored.
    async fn enrollment(&self, username: &Username, secret: SecretBytes) -> Result<Enrollment, UserError> {
        let user = self.find(username).await?;
        let otpauth_uri = self.otpauth_uri(username, &secret, user.record.profile.params)?;
        Ok(Enrollment { user, secret, otpauth_uri })
    }
}
