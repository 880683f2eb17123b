//! Persistence behind one trait, so the MFA logic never knows which database it runs on.
//! One implementation, `sql::SqlStore`, holds the SQL; `sqlite` and `postgres` are the
//! drivers it runs on.
//!
//! Every security-relevant change is a single conditional statement, atomic in the
//! database: the replay guard only moves the last step forward, the lockout state is
//! compare-and-swapped, a sent code is consumed by a delete that must hit. That keeps the
//! guarantees when several processes (the server and the CLI, or several servers) share
//! one database.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::config::DatabaseConfig;
use crate::domain::Username;
use crate::lockout::LockState;
use crate::otp::OtpParams;

/// Opens the configured database (creating and migrating it if needed).
pub async fn open(database: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match database {
        DatabaseConfig::Sqlite { path } => Arc::new(sqlite::SqliteStore::open(path).await?),
        DatabaseConfig::Postgres { url, max_connections, acquire_timeout } => {
            Arc::new(postgres::PgStore::connect(url.expose(), *max_connections, *acquire_timeout).await?)
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is taken. (Inside the store also: a statement that had to change a row
    /// changed none, so its transaction was rolled back; the store's methods say what that
    /// means before it reaches a caller.)
    #[error("user already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A later version migrated the database past what this binary knows.
    #[error(
        "the database was migrated by a later version of mfa (its migration {0} is unknown here): run that \
         version or a later one; an older binary cannot use it (docs/operations.md, Upgrading)"
    )]
    NewerSchema(i64),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => Self::NewerSchema(version),
            other => Self::Migrate(other),
        }
    }
}

impl StoreError {
    /// Whether the database could not be reached or written (as opposed to a bad query or
    /// bad data): the request may succeed later, so it is a 503, not a 500. That covers a
    /// PostgreSQL that is down, restarting or out of disk, and a SQLite file whose disk is
    /// full, read-only or failing; in each case nothing was written.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(e) => unavailable(e),
            Self::Migrate(
                sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => unavailable(e),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => sqlite_unavailable(i64::from(e.extended_code)),
            _ => false,
        }
    }
}

fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code().and_then(|c| c.parse().ok()).is_some_and(sqlite_unavailable)
            } else if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_unavailable(pg.code())
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLite's primary result codes (the low byte of the extended code) for storage that
/// cannot be used now: BUSY and LOCKED (past `busy_timeout`), READONLY, IOERR (a failed
/// write or fsync, also a file-size limit), FULL, CANTOPEN. One list for both drivers:
/// sqlx reports the code as text, rusqlite as a number.
fn sqlite_unavailable(extended_code: i64) -> bool {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    matches!(extended_code & 0xff, BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
}

/// SQLSTATE classes 08 (connection), 53 (insufficient resources: disk full, out of memory,
/// too many connections), 57P (shutting down, crashed, starting up), 58030 (I/O error), and
/// 25006 (read-only transaction: a standby after a failover).
fn postgres_unavailable(sqlstate: &str) -> bool {
    ["08", "53", "57P"].iter().any(|class| sqlstate.starts_with(class)) || matches!(sqlstate, "58030" | "25006")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_unavailable_and_logic_errors_are_not() {
        for code in [5, 6, 8, 1544, 10, 778, 13, 14] {
            assert!(sqlite_unavailable(code), "SQLite {code}");
        }
        for code in [1, 11, 19, 2067, 26] {
            assert!(!sqlite_unavailable(code), "SQLite {code}");
        }
        let full = rusqlite::ffi::Error::new(13);
        assert!(StoreError::Sqlite(rusqlite::Error::SqliteFailure(full, None)).is_unavailable());
        let constraint = rusqlite::ffi::Error::new(2067);
        assert!(!StoreError::Sqlite(rusqlite::Error::SqliteFailure(constraint, None)).is_unavailable());
        for state in ["08006", "08001", "53100", "53300", "57P01", "57P03", "58030", "25006"] {
            assert!(postgres_unavailable(state), "SQLSTATE {state}");
        }
        for state in ["23505", "42P01", "22001", "57014", "40001"] {
            assert!(!postgres_unavailable(state), "SQLSTATE {state}");
        }
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Corrupt("x".into()).is_unavailable());
        assert!(!StoreError::Conflict.is_unavailable());
    }
}

/// Where a user was defined: `.env` users are kept in step with the file at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    /// Defined by `<NAME>_SECRET` in `.env`, and managed there.
    Env,
    /// Created by `mfa user add` or `mfa user import`.
    Cli,
    /// Created through `POST /admin/users`.
    Admin,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::Cli => "cli",
            Self::Admin => "admin",
        }
    }
}

/// Who a user is and how their codes are made: what is written when a user is created or
/// redefined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub username: Username,
    pub sealed_secret: Vec<u8>,
    pub params: OtpParams,
    pub email: Option<String>,
    pub telegram_id: Option<String>,
    pub source: UserSource,
}

/// A stored user: the profile plus the security state the server keeps for it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub profile: UserProfile,
    pub last_step: Option<u64>,
    pub lock: LockState,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// When the current secret was issued; `None` for rows older than this column.
    pub secret_set_at: Option<UnixTime>,
    /// The codes `/request-otp` sent, as stored (they may have expired).
    pub sent: SentCodes,
    /// The client addresses of the failures counted since the last lock or unlock
    /// (distinct, at most 4, oldest first), for the lockout alert.
    pub failed_from: Vec<String>,
}

/// The sent-code state of a user: the newest code, the one before it (valid until its own
/// expiry), whether they were used, and the pace of sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentCodes {
    pub current: Option<SentCode>,
    pub previous: Option<PreviousCode>,
    /// When one of them was accepted: both are then used, and a resubmission is a replay.
    pub used_at: Option<UnixTime>,
    /// The per-user send limit's theoretical arrival time (GCRA), kept across codes.
    pub send_tat: Option<UnixTime>,
}

/// The newest sent code: its keyed hash, the code sealed (so a resend can repeat it;
/// `None` for codes stored before that), when it was sent and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCode {
    pub hash: Vec<u8>,
    pub sealed: Option<Vec<u8>>,
    pub sent_at: UnixTime,
    pub expires_at: UnixTime,
}

/// The code sent before the newest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousCode {
    pub hash: Vec<u8>,
    pub expires_at: UnixTime,
}

/// The rows of `meta` that say how the database's keys are derived (`kdf`) and check
/// that the key is the one it was made with (`key_check`). A new database has neither; one
/// made before Argon2id only the check value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRecord {
    pub kdf: Option<String>,
    pub check: Option<String>,
}

/// Moving a database to another key derivation: the new record and check value, and every
/// user's secret sealed again under the new keys. The store applies it in one transaction,
/// and only if the database is still as it was read (the old check value, no `kdf` row,
/// the same users with the same sealed secrets), so a crash leaves the old state or the new
/// one, and of two processes moving it at once only one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMigration {
    pub kdf: String,
    pub old_check: String,
    pub new_check: String,
    /// How many users there were when the secrets were read.
    pub users: u64,
    pub resealed: Vec<Resealed>,
    /// Drop the sent codes: hashed with the old code key, they cannot be hashed again.
    pub drop_sent_codes: bool,
}

/// One user's secret as it was read and as it is sealed under the new keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub username: Username,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for `/healthcheck`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the connections; later calls fail.
    async fn close(&self);
    /// The connections that serve requests: (open, idle).
    fn pool_stats(&self) -> (u32, u32);

    /// How the keys are derived and checked, as recorded.
    async fn key_record(&self) -> Result<KeyRecord, StoreError>;
    /// Records a new database's key derivation and check value together. False (nothing
    /// written) if another process recorded either first: read them again.
    async fn record_keys(&self, kdf: &str, check: &str) -> Result<bool, StoreError>;
    /// Applies `migration` in one transaction. False (nothing written) if the database is no
    /// longer as it was read: another process moved it, or changed a user, first.
    async fn migrate_keys(&self, migration: &KeyMigration) -> Result<bool, StoreError>;

    async fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError>;
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Up to `limit` users after `after`, by name: a page of a listing.
    async fn users_page(&self, after: Option<&Username>, limit: u32) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces a user's email and Telegram id (`None` clears). False if there is no such user.
    async fn update_contact(
        &self,
        username: &Username,
        email: Option<&str>,
        telegram_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Names of the users defined by `.env` (indexed: start-up stays fast with many users).
    async fn env_usernames(&self) -> Result<Vec<Username>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Fails with [`StoreError::Conflict`] if the name is taken.
    async fn insert_user(&self, user: &UserProfile, now: UnixTime) -> Result<(), StoreError>;
    /// Inserts many users in one transaction, skipping names that exist; returns how many
    /// were inserted.
    async fn insert_users(&self, users: &[UserProfile], now: UnixTime) -> Result<u64, StoreError>;
    /// Rewrites a user's secret, parameters, contacts and source. With `reset_last_step`
    /// (a new secret) the replay guard starts afresh. False if there is no such user.
    async fn replace_user(&self, user: &UserProfile, reset_last_step: bool, now: UnixTime) -> Result<bool, StoreError>;
    async fn delete_user(&self, username: &Username) -> Result<bool, StoreError>;

    /// Accepts a TOTP code of time step `step`: moves the replay guard to it, in one
    /// statement, if `step` is past the last accepted one and the lockout state is still
    /// `expected` (a right code changes nothing else: see `crate::lockout`). False means one
    /// of the two did not hold.
    async fn accept_totp_step(&self, username: &Username, step: u64, expected: LockState) -> Result<bool, StoreError>;
    /// Clears failures and any lock (by an operator).
    async fn clear_lock(&self, username: &Username) -> Result<bool, StoreError>;
    /// Sets the lockout state, and the addresses its failures came from, if the state is
    /// still `expected`. False means another request changed it first; read again and retry.
    async fn swap_lock(
        &self,
        username: &Username,
        expected: LockState,
        new: LockState,
        failed_from: &[String],
    ) -> Result<bool, StoreError>;

    /// Replaces the sent-code state if the newest code's `sent_at` is still `expected`
    /// (`None`: no code stored). False means another request changed it first.
    async fn swap_sent_codes(
        &self,
        username: &Username,
        expected_sent_at: Option<UnixTime>,
        new: &SentCodes,
    ) -> Result<bool, StoreError>;
    /// Marks the user's sent codes used, if one of them has this hash, has not expired, the
    /// codes were not used yet, and the lockout state is still `expected`: one statement.
    async fn use_sent_codes(
        &self,
        username: &Username,
        code_hash: &[u8],
        now: UnixTime,
        expected: LockState,
    ) -> Result<bool, StoreError>;
    /// Forgets the user's sent codes (a new secret); the pace of sends stays.
    async fn clear_sent_codes(&self, username: &Username) -> Result<(), StoreError>;

    /// Claims the user's alert of `kind` for the hour: records `now` as its send time, in
    /// one conditional statement, unless one was recorded after `cutoff`. False: one went
    /// since `cutoff` (from this or another instance), so this one is not sent.
    async fn claim_alert(
        &self,
        username: &Username,
        kind: &str,
        now: UnixTime,
        cutoff: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Gives back a claim made at `sent_at` whose alert went out on no channel, unless a
    /// later claim replaced it.
    async fn release_alert(&self, username: &Username, kind: &str, sent_at: UnixTime) -> Result<(), StoreError>;
}
