//! User administration: enrolling, listing, changing, rotating, unlocking and removing
//! users, their authenticators and recovery codes, importing them from another system, and
//! keeping `.env` users in step with the file. The admin API (`crate::api::admin`) and the
//! `mfa user` commands both go through [`UserService`]; neither touches the store.

mod authenticators;
mod qr;
mod recovery;
mod sync;
mod telegram;

use std::sync::Arc;
use std::time::Duration;

use crate::alerts::{Alert, Alerts};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keys;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::lockout::RecentLocks;
use crate::notify::Notifier;
use crate::otp::{self, Algorithm, OtpParams, SecretBytes};
/// Who created a user, as the admin API and `mfa user show` tell it; a user's
/// authenticators, as stored.
pub use crate::store::{AuthenticatorRecord, AuthenticatorStatus, Factor, UserSource};
use crate::store::{Store, StoreError, UserProfile, UserRecord};
pub use authenticators::QR_WINDOW_SECONDS;
pub use authenticators::{
    ID_PATTERN as AUTHENTICATOR_ID_PATTERN, MAX_NAME_CHARS as AUTHENTICATOR_NAME_MAX_CHARS,
    NAME_PATTERN as AUTHENTICATOR_NAME_PATTERN, NewAuthenticator, ResyncCodes, parse_id as parse_authenticator_id,
    parse_name as parse_authenticator_name,
};
pub use qr::{qr_png, qr_svg};
pub use recovery::CODES_PER_SET as RECOVERY_CODES_PER_SET;
pub use sync::{ImportReport, SyncReport};
pub use telegram::{LINK_SECONDS as TELEGRAM_LINK_SECONDS, LinkUnavailable, TelegramLink, link_chats};

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
    #[error("user '{username}' has no authenticator '{id}'")]
    AuthenticatorNotFound { username: Username, id: String },
    #[error(
        "the two codes are not consecutive codes of this authenticator within the resynchronisation window \
         (HOTP_RESYNC_WINDOW)"
    )]
    ResyncFailed,
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
    /// No Telegram link can be made here now.
    #[error("{0}")]
    Telegram(LinkUnavailable),
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
    /// The order `OTP_DELIVERY=first` tries the channels in (`Some(None)`: the default).
    pub channels: Option<Option<Vec<crate::domain::Channel>>>,
}

/// A user as administration shows it: the stored record and, if locked now, for how long.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub record: UserRecord,
    pub locked_for: Option<u64>,
    /// The failures that still count now (they fade with time: see `crate::lockout`).
    pub failed_attempts: u32,
    /// The code parameters of the user's first active TOTP authenticator (as a user had
    /// before authenticators), else the defaults.
    pub params: OtpParams,
    /// The authenticators whose codes are accepted now (pending ones included).
    pub authenticators: usize,
}

/// A new or rotated secret, shown once, with its user and its authenticator.
#[derive(Debug)]
pub struct Enrollment {
    pub user: UserSummary,
    pub authenticator: AuthenticatorRecord,
    pub secret: SecretBytes,
    pub otpauth_uri: String,
}

/// The name of the authenticator a user is created with (and of the one each user of an
/// earlier version had).
pub const FIRST_AUTHENTICATOR_NAME: &str = "default";

/// One page of the users, by name; `next` is where the following page starts (after it).
#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    pub next: Option<Username>,
}

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
    /// Where unlocks and changes to authenticators and recovery codes are told to the user
    /// (nowhere until [`Self::with_alerts`]).
    alerts: Alerts,
    /// The notification service, for Telegram links (none until [`Self::with_notifier`]).
    notifier: Option<Arc<dyn Notifier>>,
}

/// How long [`UserService::close`] waits for the alerts still being sent.
const ALERTS_AT_CLOSE: Duration = Duration::from_secs(10);

impl UserService {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keys>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keys, settings, clock, recent_locks: Arc::default(), alerts: Alerts::disabled(), notifier: None }
    }

    /// Telegram links ask this notifier for the bot's name.
    #[must_use]
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Self {
        Self { notifier: Some(notifier), ..self }
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

    /// Creates a user with a fresh 160-bit secret, recording who asked (`source`). Its
    /// authenticator is active at once, as users were before authenticators had to be
    /// confirmed: a client that creates a user and verifies later keeps working.
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
        let now = self.clock.now();
        let first = self.active_totp(&new.username, &secret, params, now)?;
        let profile = UserProfile {
            username: new.username.clone(),
            email: new.email.map(|e| e.as_str().to_string()),
            telegram_id: new.telegram.map(|t| t.as_str().to_string()),
            source,
        };
        self.recent_locks.forget(new.username.as_str());
        match self.store.insert_user(&profile, &first, now).await {
            Ok(()) => self.enrollment(&new.username, first, secret).await,
            Err(StoreError::Conflict) => Err(UserError::Exists(new.username)),
            Err(e) => Err(e.into()),
        }
    }

    /// An active TOTP authenticator named [`FIRST_AUTHENTICATOR_NAME`] with this secret.
    fn active_totp(
        &self,
        username: &Username,
        secret: &SecretBytes,
        params: OtpParams,
        now: u64,
    ) -> Result<AuthenticatorRecord, UserError> {
        let id = authenticators::new_id();
        Ok(AuthenticatorRecord {
            sealed_secret: self.seal(username, &id, secret)?,
            id,
            name: FIRST_AUTHENTICATOR_NAME.to_string(),
            factor: Factor::Totp { params, last_step: None, drift_steps: 0 },
            status: AuthenticatorStatus::Active,
            replaces: None,
            created_at: now,
            last_used_at: None,
            expires_at: None,
        })
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
        let now = self.clock.now();
        let updated = self.store.update_contact(username, email.as_deref(), telegram.as_deref(), now).await?;
        if !updated {
            return Err(UserError::NotFound(username.clone()));
        }
        if let Some(order) = &change.channels
            && !self.store.set_channel_order(username, order.as_deref(), now).await?
        {
            return Err(UserError::NotFound(username.clone()));
        }
        self.find(username).await
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

    fn summary(&self, record: UserRecord) -> UserSummary {
        let (policy, now) = (self.settings.lockout, self.clock.now());
        let params = record.first_totp_params().unwrap_or(self.settings.otp);
        let authenticators = record.authenticators.iter().filter(|a| a.usable_at(now)).count();
        UserSummary {
            locked_for: policy.locked_for(record.lock, now),
            failed_attempts: policy.failures(record.lock, now),
            params,
            authenticators,
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

    fn seal(&self, username: &Username, id: &str, secret: &SecretBytes) -> Result<Vec<u8>, UserError> {
        self.keys.seal_secret(username, id, secret).map_err(|e| UserError::Internal(e.to_string()))
    }

    /// What a new secret needs to be set up in an app or token, with its user read back as
    /// stored.
    async fn enrollment(
        &self,
        username: &Username,
        authenticator: AuthenticatorRecord,
        secret: SecretBytes,
    ) -> Result<Enrollment, UserError> {
        let user = self.find(username).await?;
        let otpauth_uri = self.otpauth_uri(username, &authenticator, &secret)?;
        Ok(Enrollment { user, authenticator, secret, otpauth_uri })
    }

    /// The `otpauth://` URI of an authenticator: what its QR code holds.
    fn otpauth_uri(
        &self,
        username: &Username,
        authenticator: &AuthenticatorRecord,
        secret: &SecretBytes,
    ) -> Result<String, UserError> {
        let (issuer, account) = (&self.settings.issuer, username.as_str());
        match authenticator.factor {
            Factor::Totp { params, .. } => otp::otpauth_uri(issuer, account, secret, params),
            Factor::Hotp { algorithm, digits, counter } => {
                otp::hotp_uri(issuer, account, secret, algorithm, digits, counter)
            }
        }
        .map_err(UserError::Internal)
    }
}
