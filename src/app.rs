//! Wiring shared by every subcommand: open the store, load the keys, check that they
//! match the database, and bring `.env` users into it.

use std::sync::Arc;

use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{DatabaseConfig, Settings};
use crate::crypto::{KeyOrigin, Keys};
use crate::notify::{FileNotifier, Notifier};
use crate::service::{MfaService, Policy};
use crate::store::sqlite::SqliteStore;
use crate::store::{KeyCheck, Store};
use crate::users;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Database(#[from] crate::store::StoreError),
    #[error("{0}")]
    Keys(#[from] crate::crypto::KeyError),
    #[error(
        "the database was encrypted with another key: SECRET_KEY (or FLASK_SECRET_KEY, or data/secret.key) \
         changed since users were enrolled. Restore the old key; a new key cannot read the stored secrets"
    )]
    KeyMismatch,
    #[error("{0}")]
    Users(#[from] users::EnrollError),
}

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartupError> {
    match &settings.database {
        DatabaseConfig::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path).await?)),
    }
}

/// Opens everything the MFA logic needs and syncs `.env` users.
pub async fn open_service(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> Result<MfaService, StartupError> {
    let store = open_store(settings).await?;
    let keys = Keys::load(
        settings.secret_key.as_ref().map(|k| k.expose()),
        &settings.key_file(),
    )?;
    if keys.origin == KeyOrigin::GeneratedFile {
        warn!(
            key_file = %settings.key_file().display(),
            "no SECRET_KEY set: generated a random key file to encrypt TOTP secrets; back it up with the \
             database, or set SECRET_KEY"
        );
    }
    if store.check_key(keys.check_value()).await? == KeyCheck::Mismatch {
        return Err(StartupError::KeyMismatch);
    }
    let report = users::sync_env_users(store.as_ref(), &keys, settings, clock.now()).await?;
    if report != users::SyncReport::default() {
        info!(added = ?report.added, updated = ?report.updated, removed = ?report.removed, "synced users from the environment");
    }
    let notifier: Arc<dyn Notifier> = Arc::new(FileNotifier::new(settings.notifications_log()));
    Ok(MfaService {
        store,
        notifier,
        clock,
        keys: Arc::new(keys),
        policy: Policy::from(settings),
    })
}
