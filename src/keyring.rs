//! The keys of one database, as every `mfa` command that opens it derives them once at
//! start-up: from the record in its `meta` table of how they are derived (`kdf`) and the
//! check value that they are the right ones (`key_check`).
//!
//! | `kdf` row | `key_check` | the database | keys |
//! |---|---|---|---|
//! | none | none | new | recorded now: `$argon2id$...` with a fresh salt for a configured key, `hkdf` for the key file |
//! | none | set | made before Argon2id (v1) | HKDF only; with a configured key it is moved to Argon2id now, with the key file `hkdf` is recorded |
//! | `hkdf` | set | made with the key file | HKDF over the key file's 256 bits |
//! | `$argon2id$...` | set | made with `SECRET_KEY` | Argon2id with the recorded costs and salt, then HKDF |
//!
//! A key of the other kind than the one recorded (`SECRET_KEY` set for a database made with
//! the key file, or unset for one made with it) is a changed key, as a wrong key is.

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::crypto::{KdfParams, KeyError, Keys, MasterKey};
use crate::store::{KeyMigration, KeyRecord, Resealed, Store, StoreError};

/// The `kdf` record of a database whose keys come from the key file without stretching.
pub const DIRECT: &str = "hkdf";

/// Times the record is read again after another process wrote it first.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The key is not the one the database was made with.
    #[error("the database was encrypted with another key")]
    Mismatch,
    /// [`check`] on a database whose keys are not recorded yet.
    #[error("the database's keys are not recorded yet: start the server on it once (it records them), then try again")]
    NotRecorded,
}

/// The database's keys from `master`, recording them on a new database and moving a v1
/// database to Argon2id (see the module's table). `record` is the key record as the caller
/// read it; it is read again only when another process wrote it meanwhile.
pub async fn open(store: &Arc<dyn Store>, master: MasterKey, mut record: KeyRecord) -> Result<Keys, KeyringError> {
    let master = Arc::new(master);
    for _ in 0..ATTEMPTS {
        if let Some(keys) = try_open(store, &master, record).await? {
            return Ok(keys);
        }
        record = store.key_record().await?;
    }
    Err(StoreError::Unavailable("the key record kept changing under this process; start it again".into()).into())
}

/// The keys of a database whose record is `record`, checked against it and writing
/// nothing: for a copy of a database that must leave it as it is (`mfa backup`). A
/// database without a complete record (new, or made before Argon2id) has no keys to check
/// yet; the server's first start writes them.
pub async fn check(master: MasterKey, record: KeyRecord) -> Result<Keys, KeyringError> {
    let (Some(kdf), Some(check)) = (record.kdf, record.check) else { return Err(KeyringError::NotRecorded) };
    let master = Arc::new(master);
    let params = recorded_params(&kdf, &master)?;
    let keys = derive(&master, params).await?;
    if keys.check_value() == check { Ok(keys) } else { Err(KeyringError::Mismatch) }
}

/// `None`: another process wrote the record first; read it again.
async fn try_open(
    store: &Arc<dyn Store>,
    master: &Arc<MasterKey>,
    record: KeyRecord,
) -> Result<Option<Keys>, KeyringError> {
    let KeyRecord { kdf, check } = record;
    match (kdf, check) {
        (None, None) => {
            let (kdf, params) = if master.is_configured() {
                let params = KdfParams::generate();
                (params.to_string(), Some(params))
            } else {
                (DIRECT.to_string(), None)
            };
            let keys = derive(master, params).await?;
            Ok(store.record_keys(&kdf, keys.check_value()).await?.then_some(keys))
        }
        (Some(_), None) => Err(StoreError::Corrupt("meta holds a 'kdf' row but no 'key_check'".into()).into()),
        (None, Some(check)) => migrate_v1(store, master, &check).await,
        (Some(kdf), Some(check)) => {
            let params = recorded_params(&kdf, master)?;
            let keys = derive(master, params).await?;
            if keys.check_value() == check { Ok(Some(keys)) } else { Err(KeyringError::Mismatch) }
        }
    }
}

/// How the recorded `kdf` derives the keys from `master`; a key of the other kind than the
/// one recorded is a changed key.
fn recorded_params(kdf: &str, master: &MasterKey) -> Result<Option<KdfParams>, KeyringError> {
    match (kdf, master.is_configured()) {
        (DIRECT, false) => Ok(None),
        (DIRECT, true) => Err(KeyringError::Mismatch),
        (_, false) if kdf.starts_with("$argon2") => Err(KeyringError::Mismatch),
        (stretched, _) => Ok(Some(KdfParams::parse(stretched)?)),
    }
}

/// A database of before Argon2id: its keys came from HKDF alone. If the key is right, a
/// key-file database records `hkdf` and keeps its keys; a configured key's database gets a
/// salt and Argon2id keys, its secrets sealed again and its pending sent codes dropped
/// (they were hashed with the old code key and live minutes), all in one transaction.
async fn migrate_v1(
    store: &Arc<dyn Store>,
    master: &Arc<MasterKey>,
    check: &str,
) -> Result<Option<Keys>, KeyringError> {
    let old = master.keys(None)?;
    if old.check_value() != check {
        return Err(KeyringError::Mismatch);
    }
    if !master.is_configured() {
        let record = KeyMigration {
            kdf: DIRECT.to_string(),
            old_check: check.to_string(),
            new_check: check.to_string(),
            authenticators: store.users().await?.iter().map(|u| u.authenticators.len() as u64).sum(),
            resealed: Vec::new(),
            drop_sent_codes: false,
        };
        return Ok(store.migrate_keys(&record).await?.then_some(old));
    }
    let params = KdfParams::generate();
    let new = derive(master, Some(params.clone())).await?;
    let users = store.users().await?;
    let mut resealed = Vec::with_capacity(users.len());
    let mut unreadable = 0usize;
    for user in &users {
        let username = &user.profile.username;
        for a in &user.authenticators {
            match old.open_secret(username, &a.id, &a.sealed_secret) {
                Ok(secret) => resealed.push(Resealed {
                    username: username.clone(),
                    authenticator: a.id.clone(),
                    old: a.sealed_secret.clone(),
                    new: new.seal_secret(username, &a.id, &secret).map_err(|_| KeyError::Derive)?,
                }),
                Err(_) => {
                    // Damaged before: no key opens it, so it stays as it is (as it failed before).
                    warn!(%username, "a stored secret of this user cannot be decrypted; left as it is");
                    unreadable += 1;
                }
            }
        }
    }
    let dropped_codes = users.iter().filter(|u| u.sent.current.is_some()).count();
    let migration = KeyMigration {
        kdf: params.to_string(),
        old_check: check.to_string(),
        new_check: new.check_value().to_string(),
        authenticators: users.iter().map(|u| u.authenticators.len() as u64).sum(),
        resealed,
        drop_sent_codes: true,
    };
    if !store.migrate_keys(&migration).await? {
        return Ok(None);
    }
    info!(
        resealed = migration.resealed.len(),
        unreadable,
        dropped_sent_codes = dropped_codes,
        "moved the database's keys to Argon2id: every TOTP secret is sealed again under keys stretched from \
         SECRET_KEY; codes sent before the upgrade are void (request new ones)"
    );
    Ok(Some(new))
}

/// The keys, derived on a blocking thread: Argon2id holds a core for a tenth of a second
/// or more, which must not stall the runtime's workers.
async fn derive(master: &Arc<MasterKey>, params: Option<KdfParams>) -> Result<Keys, KeyringError> {
    let Some(params) = params else { return Ok(master.keys(None)?) };
    let master = master.clone();
    let started = Instant::now();
    let keys = tokio::task::spawn_blocking(move || master.keys(Some(&params)).map(|keys| (keys, params)))
        .await
        .map_err(|_| KeyError::Derive)??;
    let (keys, params) = keys;
    info!(
        m_kib = params.m_kib,
        t = params.t,
        p = params.p,
        ms = started.elapsed().as_millis() as u64,
        "derived the keys from SECRET_KEY with Argon2id"
    );
    Ok(keys)
}
