//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL`: a commit is on disk before the request is answered, so an accepted
//! code stays used (and a lockout stays in force) across a crash or power loss.
//! Several processes (server, CLI) may open the file at once; `busy_timeout` makes writers
//! wait for each other instead of failing with "database is locked", and every write is a
//! single statement, so no transaction ever has to upgrade a read lock.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::sql::{migrations, select_users, to_i64, to_u64};
use super::{KeyCheck, LockState, PutCode, Store, StoreError, UserProfile, UserRecord, UserSource};
use crate::clock::UnixTime;
use crate::domain::{Algorithm, Username};
use crate::otp::OtpParams;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::config::ensure_dir(dir).map_err(|e| StoreError::Corrupt(format!("{}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrations!("sqlite").run(&pool).await?;
        #[cfg(unix)]
        restrict_permissions(path);
        Ok(Self { pool })
    }
}

/// The database holds sealed secrets and code hashes: owner-only, like the key file.
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

super::sql::sql_store!(SqliteStore, sqlx::Sqlite, null_safe_eq = "IS");
