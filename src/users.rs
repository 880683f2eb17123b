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

/// Replaces a CLI/API user's email and Telegram id (`None` clears one).
pub async fn update_contact(
    store: &dyn Store,
    settings: &Settings,
    username: &Username,
    email: Option<&EmailAddress>,
    telegram: Option<&TelegramChat>,
    now: UnixTime,
) -> Result<UserRecord, EnrollError> {
    existing(store, settings, username).await?;
    let updated = store
        .update_contact(username, email.map(EmailAddress::as_str), telegram.map(TelegramChat::as_str), now)
        .await?;
    if !updated {
        return Err(EnrollError::NotFound(username.clone()));
    }
    store.user(username).await?.ok_or_else(|| EnrollError::NotFound(username.clone()))
}

/// How long after a secret is issued its QR code can be fetched again, unless the user has
/// already verified a code with it (then the app is set up and the QR is not needed).
pub const QR_WINDOW_SECONDS: u64 = 600;

/// The otpauth URI of a user whose secret was issued less than [`QR_WINDOW_SECONDS`] ago and
/// has not been used yet; `None` otherwise, so the secret cannot be read back later.
pub fn fresh_enrollment_uri(
    keys: &Keys,
    settings: &Settings,
    user: &UserRecord,
    now: UnixTime,
) -> Result<Option<String>, EnrollError> {
    let fresh =
        user.last_step.is_none() && user.secret_set_at.is_some_and(|at| now.saturating_sub(at) < QR_WINDOW_SECONDS);
    if !fresh || user.profile.source == UserSource::Env {
        return Ok(None);
    }
    let p = &user.profile;
    let secret = keys.open_secret(&p.username, &p.sealed_secret).map_err(|e| EnrollError::Other(e.to_string()))?;
    otp::otpauth_uri(&settings.issuer, p.username.as_str(), &secret, p.params).map(Some).map_err(EnrollError::Other)
}

/// The QR code of `uri` as an SVG document.
pub fn qr_svg(uri: &str) -> Result<String, EnrollError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| EnrollError::Other(e.to_string()))?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(240, 240).build())
}

/// The QR code of `uri` as a grayscale PNG: 8 pixels a module, a 4-module quiet zone.
pub fn qr_png(uri: &str) -> Result<Vec<u8>, EnrollError> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let other = |e: String| EnrollError::Other(e);
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| other(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = ((i % modules + QUIET) * SCALE, (i / modules + QUIET) * SCALE);
            for row in pixels.chunks_mut(side).skip(y).take(SCALE) {
                row.iter_mut().skip(x).take(SCALE).for_each(|p| *p = 0);
            }
        }
    }
    let mut out = Vec::new();
    let size = u32::try_from(side).map_err(|e| other(e.to_string()))?;
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| other(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| other(e.to_string()))?;
    writer.finish().map_err(|e| other(e.to_string()))?;
    Ok(out)
}

pub async fn unlock(store: &dyn Store, username: &Username) -> Result<(), EnrollError> {
    if store.clear_lock(username).await? { Ok(()) } else { Err(EnrollError::NotFound(username.clone())) }
}

/// What `import` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub existing: u64,
}

/// Users per transaction when importing.
const IMPORT_BATCH: usize = 1000;

/// Imports users from CSV lines `username,base32secret[,email[,telegram_id]]` (blank lines,
/// `#` comments and a `username,...` header are skipped), for moving users with their
/// existing secrets from another system. The whole input is checked before anything is
/// written; an error names the line, never the secret.
pub async fn import(
    store: &dyn Store,
    keys: &Keys,
    settings: &Settings,
    text: &str,
    now: UnixTime,
) -> Result<ImportReport, EnrollError> {
    let mut profiles = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("username,") {
            continue;
        }
        let bad = |what: String| EnrollError::Other(format!("line {}: {what}", index + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (name, secret) = match fields.as_slice() {
            [name, secret, ..] if fields.len() <= 4 => (*name, *secret),
            _ => return Err(bad("expected username,secret[,email[,telegram_id]]".into())),
        };
        let username = Username::parse(name).map_err(bad)?;
        if settings.users.iter().any(|u| u.username == username) {
            return Err(bad(format!("user '{username}' is defined in the environment")));
        }
        let secret = SecretBytes::from_base32(secret).map_err(|e| bad(format!("the secret {e}")))?;
        let optional = |i: usize| fields.get(i).copied().filter(|s| !s.is_empty());
        let email = optional(2).map(EmailAddress::parse).transpose().map_err(bad)?;
        let telegram = optional(3).map(TelegramChat::parse).transpose().map_err(bad)?;
        profiles.push(UserProfile {
            sealed_secret: keys.seal_secret(&username, &secret),
            username,
            params: settings.otp,
            email: email.map(|e| e.as_str().to_string()),
            telegram_id: telegram.map(|t| t.as_str().to_string()),
            source: UserSource::Cli,
        });
    }
    let mut report = ImportReport::default();
    for batch in profiles.chunks(IMPORT_BATCH) {
        let inserted = store.insert_users(batch, now).await?;
        report.imported += inserted;
        report.existing += batch.len() as u64 - inserted;
    }
    Ok(report)
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
    for username in store.env_usernames().await? {
        if !settings.users.iter().any(|u| u.username == username) {
            store.delete_user(&username).await?;
            report.removed.push(username.to_string());
        }
    }
    Ok(report)
}
