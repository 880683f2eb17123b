//! Enrollment: creating, rotating and removing users, and keeping `.env` users in step with
//! the file. Used by the CLI (and later the admin API); the HTTP handlers never create users.

use crate::clock::UnixTime;
use crate::config::{EnvUser, Settings};
use crate::crypto::Keys;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::otp::{self, OtpParams, SecretBytes};
use crate::store::{Store, StoreError, UserProfile, UserRecord, UserSource};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("user '{0}' already exists")]
    Exists(Username),
    #[error("no user '{0}'")]
    NotFound(Username),
    #[error("user '{username}' is defined in the environment by {var}; change it there and restart")]
    DefinedInEnv { username: Username, var: String },
    #[error(
        "user '{username}' is defined both by {var} and in the database (added with `mfa user add`); \
         remove one of them"
    )]
    Conflict { username: Username, var: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

/// What a new or rotated user needs to set up an authenticator app. Shown once.
#[derive(Debug)]
pub struct Enrollment {
    pub username: Username,
    pub secret: SecretBytes,
    pub params: OtpParams,
    pub otpauth_uri: String,
}

/// Contact details and code parameters for a new user.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub username: Username,
    pub email: Option<EmailAddress>,
    pub telegram: Option<TelegramChat>,
    pub params: OtpParams,
}

fn enrollment(
    issuer: &str,
    username: Username,
    secret: SecretBytes,
    params: OtpParams,
) -> Result<Enrollment, EnrollError> {
    let otpauth_uri = otp::otpauth_uri(issuer, username.as_str(), &secret, params).map_err(EnrollError::Other)?;
    Ok(Enrollment { username, secret, params, otpauth_uri })
}

fn env_var_of(settings: &Settings, username: &Username) -> Option<String> {
    settings.users.iter().find(|u| &u.username == username).map(|u| u.var.clone())
}

/// Creates a user with a fresh 160-bit secret.
pub async fn add(
    store: &dyn Store,
    keys: &Keys,
    settings: &Settings,
    new: NewEnrollment,
    now: UnixTime,
) -> Result<Enrollment, EnrollError> {
    if let Some(var) = env_var_of(settings, &new.username) {
        return Err(EnrollError::DefinedInEnv { username: new.username, var });
    }
    let secret = SecretBytes::generate();
    let record = UserProfile {
        username: new.username.clone(),
        sealed_secret: keys.seal_secret(&new.username, &secret),
        params: new.params,
        email: new.email.map(|e| e.as_str().to_string()),
        telegram_id: new.telegram.map(|t| t.as_str().to_string()),
        source: UserSource::Cli,
    };
    match store.insert_user(&record, now).await {
        Ok(()) => enrollment(&settings.issuer, new.username, secret, new.params),
        Err(StoreError::Conflict) => Err(EnrollError::Exists(new.username)),
        Err(e) => Err(e.into()),
    }
}

async fn existing(store: &dyn Store, settings: &Settings, username: &Username) -> Result<UserRecord, EnrollError> {
    let user = store.user(username).await?.ok_or_else(|| EnrollError::NotFound(username.clone()))?;
    if user.profile.source == UserSource::Env {
        let var =
            env_var_of(settings, username).unwrap_or_else(|| format!("{}_SECRET", username.as_str().to_uppercase()));
        return Err(EnrollError::DefinedInEnv { username: username.clone(), var });
    }
    Ok(user)
}

/// Gives a user a new secret; codes of the old one stop working at once.
pub async fn rotate(
    store: &dyn Store,
    keys: &Keys,
    settings: &Settings,
    username: &Username,
    now: UnixTime,
) -> Result<Enrollment, EnrollError> {
    let current = existing(store, settings, username).await?.profile;
    let secret = SecretBytes::generate();
    let params = current.params;
    let record = UserProfile { sealed_secret: keys.seal_secret(username, &secret), ..current };
    if !store.replace_user(&record, true, now).await? {
        return Err(EnrollError::NotFound(username.clone()));
    }
    store.delete_sent_code(username).await?;
    enrollment(&settings.issuer, username.clone(), secret, params)
}

pub async fn remove(store: &dyn Store, settings: &Settings, username: &Username) -> Result<(), EnrollError> {
    existing(store, settings, username).await?;
    if store.delete_user(username).await? { Ok(()) } else { Err(EnrollError::NotFound(username.clone())) }
}

pub async fn unlock(store: &dyn Store, username: &Username) -> Result<(), EnrollError> {
    if store.clear_lock(username).await? { Ok(()) } else { Err(EnrollError::NotFound(username.clone())) }
}

/// What start-up did to bring the database in line with `<NAME>_SECRET` variables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// Makes the database's `.env` users match `settings.users`: adds new ones, updates changed
/// ones (a changed secret restarts the replay guard), removes those no longer defined.
pub async fn sync_env_users(
    store: &dyn Store,
    keys: &Keys,
    settings: &Settings,
    now: UnixTime,
) -> Result<SyncReport, EnrollError> {
    let mut report = SyncReport::default();
    for env_user in &settings.users {
        let EnvUser { username, var, secret, email, telegram } = env_user;
        let record = UserProfile {
            username: username.clone(),
            sealed_secret: keys.seal_secret(username, secret),
            params: settings.otp,
            email: email.as_ref().map(|e| e.as_str().to_string()),
            telegram_id: telegram.as_ref().map(|t| t.as_str().to_string()),
            source: UserSource::Env,
        };
        match store.user(username).await? {
            None => match store.insert_user(&record, now).await {
                Ok(()) => report.added.push(username.to_string()),
                Err(StoreError::Conflict) => {} // another instance synced it first
                Err(e) => return Err(e.into()),
            },
            Some(current) if current.profile.source == UserSource::Cli => {
                return Err(EnrollError::Conflict { username: username.clone(), var: var.clone() });
            }
            Some(UserRecord { profile: current, .. }) => {
                let secret_changed = keys.open_secret(username, &current.sealed_secret).ok().as_ref() != Some(secret);
                let changed = secret_changed
                    || current.params != record.params
                    || current.email != record.email
                    || current.telegram_id != record.telegram_id;
                if changed {
                    store.replace_user(&record, secret_changed, now).await?;
                    report.updated.push(username.to_string());
                }
            }
        }
    }
    for user in store.users().await? {
        let still_defined = settings.users.iter().any(|u| u.username == user.profile.username);
        if user.profile.source == UserSource::Env && !still_defined {
            store.delete_user(&user.profile.username).await?;
            report.removed.push(user.profile.username.to_string());
        }
    }
    Ok(report)
}
