//! Wiring shared by every subcommand: open the store, load the keys, check that they
//! match the database, and bring `.env` users into it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{DatabaseConfig, Settings, mask_url_password};
use crate::crypto::{KeyOrigin, Keys};
use crate::metrics::Metrics;
use crate::notify::email::EmailChannel;
use crate::notify::retry::RetryPolicy;
use crate::notify::telegram::TelegramChannel;
use crate::notify::{Channels, FileNotifier, HttpNotifier, Notifier};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{KeyCheck, Store, StoreError};
use crate::users;
use crate::verify::{MfaService, Policy};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened, migrated or written at start-up; `hint` says what
    /// to check when the cause is the storage (disk full, read-only, server down).
    #[error("cannot open the database {database}: {source}{hint}")]
    Database { database: String, source: StoreError, hint: &'static str },
    #[error("{0}")]
    Keys(#[from] crate::crypto::KeyError),
    #[error(
        "the database was encrypted with another key: SECRET_KEY (or FLASK_SECRET_KEY, or data/secret.key) \
         changed since users were enrolled. Restore the old key; a new key cannot read the stored secrets"
    )]
    KeyMismatch,
    #[error("{0}")]
    Users(#[from] users::EnrollError),
    #[error("{0}")]
    Notifier(String),
}

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartupError> {
    let opened: Result<Arc<dyn Store>, StoreError> = match &settings.database {
        DatabaseConfig::Sqlite { path } => SqliteStore::open(path).await.map(|s| Arc::new(s) as _),
        DatabaseConfig::Postgres { url, max_connections, acquire_timeout } => {
            PgStore::connect(url.expose(), *max_connections, *acquire_timeout).await.map(|s| Arc::new(s) as _)
        }
    };
    opened.map_err(|e| database_error(settings, e))
}

/// A start-up failure of the database, naming it (password masked) and, when the storage
/// itself failed, what to check.
fn database_error(settings: &Settings, source: StoreError) -> StartupError {
    let (database, hint) = match &settings.database {
        DatabaseConfig::Sqlite { path } => (
            std::path::absolute(path).unwrap_or_else(|_| path.clone()).display().to_string(),
            "; check that this user can write to its directory (MFA_DATA_DIR) and that its disk has free space",
        ),
        DatabaseConfig::Postgres { url, .. } => {
            (mask_url_password(url.expose()), "; check that PostgreSQL is running, reachable and has free disk space")
        }
    };
    StartupError::Database { database, hint: if source.is_unavailable() { hint } else { "" }, source }
}

/// How long the MFA server waits for the notification service: its worst case plus slack.
fn notification_timeout(settings: &Settings) -> Duration {
    let n = &settings.notification;
    let policies = [
        n.email.as_ref().map(|e| RetryPolicy::for_email(e, n.retry_base)),
        n.telegram.as_ref().map(|t| RetryPolicy::for_telegram(t, n.retry_base)),
    ];
    let worst = policies.iter().flatten().map(RetryPolicy::worst_case).max().unwrap_or(Duration::from_secs(60));
    worst + Duration::from_secs(5)
}

/// The MFA server's way to send codes: the notification service when a channel is configured
/// or `NOTIFICATION_URL` is set (at `service_addr` when it runs in this process and no URL
/// was given), otherwise the file notifier.
pub fn mfa_notifier(settings: &Settings, service_addr: Option<SocketAddr>) -> Result<Arc<dyn Notifier>, StartupError> {
    let n = &settings.notification;
    if n.url.is_none() && !n.any_channel() {
        return Ok(Arc::new(FileNotifier::new(settings.notifications_log())));
    }
    let url = match (&n.url, service_addr) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => n.url_or_default().to_string(),
    };
    let client =
        HttpNotifier::new(&url, n.api_token.clone(), notification_timeout(settings)).map_err(StartupError::Notifier)?;
    Ok(Arc::new(client))
}

/// The notification service's channels, built once (the SMTP pool lives in them).
pub fn channels(settings: &Settings) -> Result<Channels, StartupError> {
    let n = &settings.notification;
    let email = n.email.as_ref().map(|e| EmailChannel::new(e, n.retry_base)).transpose();
    let telegram = n.telegram.as_ref().map(|t| TelegramChannel::new(t, n.retry_base)).transpose();
    Ok(Channels { email: email.map_err(StartupError::Notifier)?, telegram: telegram.map_err(StartupError::Notifier)? })
}

/// Opens everything the MFA logic needs and syncs `.env` users.
pub async fn open_service(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
) -> Result<MfaService, StartupError> {
    let store = open_store(settings).await?;
    let keys = Keys::load(settings.secret_key.as_ref().map(|k| k.expose()), &settings.key_file())?;
    if keys.origin == KeyOrigin::GeneratedFile {
        warn!(
            key_file = %settings.key_file().display(),
            "no SECRET_KEY set: generated a random key file to encrypt TOTP secrets; back it up with the \
             database, or set SECRET_KEY"
        );
    }
    if store.check_key(keys.check_value()).await.map_err(|e| database_error(settings, e))? == KeyCheck::Mismatch {
        return Err(StartupError::KeyMismatch);
    }
    let report = users::sync_env_users(store.as_ref(), &keys, settings, clock.now()).await.map_err(|e| match e {
        users::EnrollError::Store(e) => database_error(settings, e),
        other => StartupError::Users(other),
    })?;
    if report != users::SyncReport::default() {
        info!(added = ?report.added, updated = ?report.updated, removed = ?report.removed, "synced users from the environment");
    }
    Ok(MfaService {
        store,
        notifier,
        clock,
        keys: Arc::new(keys),
        policy: Arc::new(Policy::from(settings)),
        metrics: Arc::new(Metrics::mfa()),
    })
}
