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
use crate::domain::{Channel, Username};
use crate::lockout::LockState;
use crate::otp::{Algorithm, OtpParams};

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

/// Who a user is and where their sent codes go: what is written when a user is created or
/// redefined. How their codes are made is in their authenticators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub username: Username,
    pub email: Option<String>,
    pub telegram_id: Option<String>,
    pub source: UserSource,
}

/// A stored user: the profile, the authenticators, and the security state the server
/// keeps for the user across all of them.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub profile: UserProfile,
    /// Oldest first.
    pub authenticators: Vec<AuthenticatorRecord>,
    pub lock: LockState,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// The codes `/request-otp` sent, as stored (they may have expired).
    pub sent: SentCodes,
    /// The client addresses of the failures counted since the last lock or unlock
    /// (distinct, at most 4, oldest first), for the lockout alert.
    pub failed_from: Vec<String>,
    /// The order in which `OTP_DELIVERY=first` tries the user's channels; `None`: the
    /// default (Telegram, then email).
    pub channel_order: Option<Vec<Channel>>,
    /// When the user's Telegram chat refused the bot for good: skipped until it changes.
    pub telegram_blocked_at: Option<UnixTime>,
}

/// Whether an authenticator has been confirmed by a first code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticatorStatus {
    /// Issued, not confirmed yet: removed at `expires_at` unless a code confirms it.
    Pending,
    Active,
}

impl AuthenticatorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
        }
    }
}

/// How an authenticator's codes are made, and its replay guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// Time-based (RFC 6238).
    Totp {
        params: OtpParams,
        /// The highest time step accepted: no step is accepted twice.
        last_step: Option<u64>,
        /// The offset of the authenticator's clock in steps, learned from its codes.
        drift_steps: i64,
    },
    /// Counter-based (RFC 4226).
    Hotp {
        algorithm: Algorithm,
        digits: u8,
        /// The next counter expected: every counter before it is used.
        counter: u64,
    },
}

impl Factor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Totp { .. } => "totp",
            Self::Hotp { .. } => "hotp",
        }
    }
}

/// One of a user's authenticators, as stored: the secret sealed to the user and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorRecord {
    pub id: String,
    /// The name the user chose ("iPhone", "YubiKey").
    pub name: String,
    pub sealed_secret: Vec<u8>,
    pub factor: Factor,
    pub status: AuthenticatorStatus,
    /// A pending authenticator from a rotation: the one retired when this one is confirmed.
    pub replaces: Option<String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// When a pending authenticator is removed unless confirmed.
    pub expires_at: Option<UnixTime>,
}

impl UserRecord {
    /// The code parameters of the first active TOTP authenticator: what the user's codes
    /// were before users had several (their digits are also a sent code's).
    pub fn first_totp_params(&self) -> Option<OtpParams> {
        self.authenticators.iter().filter(|a| a.status == AuthenticatorStatus::Active).find_map(|a| match a.factor {
            Factor::Totp { params, .. } => Some(params),
            Factor::Hotp { .. } => None,
        })
    }
}

impl AuthenticatorRecord {
    /// Whether its codes are accepted at `now`: active, or pending and not expired.
    pub fn usable_at(&self, now: UnixTime) -> bool {
        self.status == AuthenticatorStatus::Active || self.expires_at.is_some_and(|at| at > now)
    }
}

/// How accepting a code moves an authenticator's replay guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// A TOTP code of `step`: the guard moves to it, if it is past the last one, and the
    /// learned drift becomes `drift_steps`.
    Totp { step: u64, drift_steps: i64 },
    /// An HOTP code: the counter moves from `expected` (as read) to `next`.
    Hotp { expected: u64, next: u64 },
}

/// A delivery job of the outbox, as stored: one code to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    pub id: String,
    pub username: Username,
    pub channel: Channel,
    pub recipient: String,
    /// The keyed hash of the code it carries: the user's newest code when it was queued.
    pub code_hash: Vec<u8>,
    /// The code, sealed to the job; `None` once the job is finished.
    pub sealed_code: Option<Vec<u8>>,
    /// The code's expiry: the job is never sent after it.
    pub expires_at: UnixTime,
    pub attempts: u32,
    pub created_at: UnixTime,
    /// When a worker may first take it; a job queued with a lease (its first attempt made
    /// by the request that queued it) is due at once.
    pub due_at: UnixTime,
    /// Queued claimed by its request, which makes the first attempt.
    pub leased: bool,
}

/// How a delivery job ended (or did not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    Delivered,
    /// Refused for good on its channel (a permanent failure).
    Failed,
    /// Not sent: its code expired, was used, or was replaced by a newer one.
    Abandoned,
}

impl JobEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}

/// One recovery code of a user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodeRecord {
    pub hash: Vec<u8>,
    pub used_at: Option<UnixTime>,
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
/// authenticator's secret sealed again under the new keys. The store applies it in one
/// transaction, and only if the database is still as it was read (the old check value, no
/// `kdf` row, the same authenticators with the same sealed secrets), so a crash leaves the old state or the new
/// one, and of two processes moving it at once only one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMigration {
    pub kdf: String,
    pub old_check: String,
    pub new_check: String,
    /// How many authenticators there were when the secrets were read.
    pub authenticators: u64,
    pub resealed: Vec<Resealed>,
    /// Drop the sent codes: hashed with the old code key, they cannot be hashed again.
    pub drop_sent_codes: bool,
}

/// One authenticator's secret as it was read and as it is sealed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub username: Username,
    pub authenticator: String,
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
    /// Creates a user with a first authenticator; fails with [`StoreError::Conflict`] if the
    /// name is taken.
    async fn insert_user(
        &self,
        user: &UserProfile,
        first: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<(), StoreError>;
    /// Inserts many users with their first authenticators, skipping names that exist;
    /// returns how many were inserted. Each user is written with its authenticator or not
    /// at all.
    async fn insert_users(
        &self,
        users: &[(UserProfile, AuthenticatorRecord)],
        now: UnixTime,
    ) -> Result<u64, StoreError>;
    async fn delete_user(&self, username: &Username) -> Result<bool, StoreError>;

    /// Adds an authenticator. One that `replaces` another (a rotation) removes the user's
    /// earlier pending rotations. False if there is no such user.
    async fn add_authenticator(
        &self,
        username: &Username,
        authenticator: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Replaces all of a user's authenticators by `authenticator` (a `.env` user's changed
    /// secret), in one transaction. False if there is no such user.
    async fn replace_authenticators(
        &self,
        username: &Username,
        authenticator: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    async fn delete_authenticator(&self, username: &Username, id: &str) -> Result<bool, StoreError>;
    /// Removes the pending authenticators not confirmed by `now`; how many.
    async fn expire_pending(&self, now: UnixTime) -> Result<u64, StoreError>;
    /// Moves an authenticator's replay guard (a resynchronisation by an operator), if it
    /// is still as read. False if it was not.
    async fn resync_authenticator(&self, username: &Username, id: &str, advance: Advance) -> Result<bool, StoreError>;
    /// Up to `limit` secrets sealed to their user only (by an earlier version), after
    /// `after` by user and id.
    async fn user_bound_secrets(
        &self,
        after: Option<&(Username, String)>,
        limit: u32,
    ) -> Result<Vec<(Username, String, Vec<u8>)>, StoreError>;
    /// Seals secrets again (bound to their authenticator), each only if it is still as
    /// read; how many were.
    async fn reseal_secrets(&self, resealed: &[Resealed]) -> Result<u64, StoreError>;
    /// Whether a start-up has already found every secret bound to its authenticator
    /// (`meta`'s `secrets_bound` row; an older database, or one restored from an older
    /// archive, has none), so that later start-ups need not scan `authenticators`.
    async fn secrets_all_bound(&self) -> Result<bool, StoreError>;
    /// Records that no secret is left bound to its user only.
    async fn record_secrets_all_bound(&self) -> Result<(), StoreError>;

    /// Accepts a code of authenticator `id`: moves its replay guard by `advance`, records
    /// the use, confirms it if pending and removes the one it `retires` (a rotation's), all
    /// in one transaction, if the guard allows it, the authenticator is usable at `now` and
    /// the lockout state is still `expected` (a right code changes nothing else: see
    /// `crate::lockout`). False means one of these did not hold.
    async fn accept_code(
        &self,
        username: &Username,
        id: &str,
        advance: Advance,
        retires: Option<&str>,
        expected: LockState,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
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
    /// [`Store::swap_sent_codes`], and in the same transaction the delivery jobs of the
    /// new code, claimed until `lease_until` by the caller, who makes their first attempt:
    /// all written, or (when the sent codes changed first) none.
    async fn swap_sent_codes_queueing(
        &self,
        username: &Username,
        expected_sent_at: Option<UnixTime>,
        new: &SentCodes,
        jobs: &[DeliveryJob],
        now: UnixTime,
        lease_until: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Claims a queued job until `lease_until`, counting an attempt, if no other worker holds
    /// it (its lease is over, or it never had one): one conditional update, so of several
    /// workers exactly one gets it. The job, or `None`.
    async fn claim_delivery(
        &self,
        id: &str,
        now: UnixTime,
        lease_until: UnixTime,
    ) -> Result<Option<DeliveryJob>, StoreError>;
    /// Up to `limit` jobs due at `now` that no worker holds, oldest first.
    async fn due_deliveries(&self, now: UnixTime, limit: u32) -> Result<Vec<String>, StoreError>;
    /// Ends a job: its sealed code is wiped.
    async fn finish_delivery(
        &self,
        id: &str,
        end: JobEnd,
        now: UnixTime,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Puts a job back in the queue, due at `next_attempt_at`, its lease released.
    async fn retry_delivery(&self, id: &str, next_attempt_at: UnixTime, error: &str) -> Result<(), StoreError>;
    /// Jobs still queued.
    async fn queued_deliveries(&self) -> Result<u64, StoreError>;
    /// Removes at most `limit` of the jobs that ended before `before`, oldest first; how many.
    /// Ids sort in the order jobs were made, and those made before `before` sort below
    /// `ids_below`: the search reads only those, not the jobs of the last week.
    async fn forget_finished_deliveries(
        &self,
        before: UnixTime,
        ids_below: &str,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// Whether a job carrying this code of the user was delivered.
    async fn code_delivered(&self, username: &Username, code_hash: &[u8]) -> Result<bool, StoreError>;
    /// Makes the user's queued jobs of this code due at `now` (the next channel, after one
    /// failed for good).
    async fn hurry_deliveries(&self, username: &Username, code_hash: &[u8], now: UnixTime) -> Result<(), StoreError>;
    /// Marks the user's Telegram chat `chat` as refusing the bot (if it is still the user's).
    async fn mark_telegram_blocked(&self, username: &Username, chat: &str, now: UnixTime) -> Result<(), StoreError>;
    /// Sets the order of the user's channels (`None`: the default). False if there is no
    /// such user.
    /// The user's Telegram chat moved (a group became a supergroup): `from` becomes `to`.
    /// False if the user's chat is not `from`, or is set in `.env`.
    async fn move_telegram_chat(
        &self,
        username: &Username,
        from: &str,
        to: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    /// A link token (its hash) for the user, valid until `expires_at`; the user's earlier
    /// unused ones stop working, and every expired one is removed. False if no such user.
    async fn insert_telegram_link(
        &self,
        username: &Username,
        token_hash: &[u8],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Uses the link token with this hash, if unused and unexpired: its user's Telegram
    /// chat becomes `chat` (not blocked), in the same transaction. The user, or `None`.
    async fn use_telegram_link(
        &self,
        token_hash: &[u8],
        chat: &str,
        now: UnixTime,
    ) -> Result<Option<Username>, StoreError>;
    async fn set_channel_order(
        &self,
        username: &Username,
        order: Option<&[Channel]>,
        now: UnixTime,
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

    /// Replaces the user's recovery codes by these (keyed hashes). False if there is no
    /// such user.
    async fn replace_recovery_codes(
        &self,
        username: &Username,
        hashes: &[Vec<u8>],
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    async fn recovery_codes(&self, username: &Username) -> Result<Vec<RecoveryCodeRecord>, StoreError>;
    /// Marks the recovery code with this hash used, if it is unused and the lockout state is
    /// still `expected`, in one transaction.
    async fn use_recovery_code(
        &self,
        username: &Username,
        code_hash: &[u8],
        now: UnixTime,
        expected: LockState,
    ) -> Result<bool, StoreError>;

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
