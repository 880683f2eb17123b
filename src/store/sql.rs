//! The SQL both backends share, stamped out for each by [`sql_store!`].
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `ON CONFLICT`,
//! `excluded.`, `IS NOT DISTINCT FROM`, which SQLite has since 3.39). A
//! macro rather than generic code: sqlx's generic bounds for "any database that can bind an
//! i64, a byte slice, ..." take more lines than the queries themselves.

use super::{SentCode, StoreError, UserProfile, UserRecord, UserSource};
use crate::domain::Username;
use crate::lockout::LockState;
use crate::otp::{Algorithm, OtpParams};

/// `SELECT <every user column> FROM users <tail>` as one string literal.
macro_rules! select_users {
    ($tail:literal) => {
        concat!(
            "SELECT username, sealed_secret, algorithm, digits, period, email, telegram_id, source, last_step, ",
            "failed_attempts, locked_until, created_at, updated_at, secret_set_at, ",
            // The outstanding sent code with the user, so checking a code needs no second read
            // (one primary-key lookup in each table; `USING` keeps `username` unqualified).
            "code_hash AS sent_code_hash, expires_at AS sent_code_expires_at ",
            "FROM users LEFT JOIN sent_codes USING (username) ",
            $tail
        )
    };
}
pub(crate) use select_users;

/// A `users` row as the database holds it (the columns of [`select_users!`], in order),
/// before it is checked and turned into a [`UserRecord`]: each driver reads one of these.
pub(crate) struct RawUser {
    pub username: String,
    pub sealed_secret: Vec<u8>,
    pub algorithm: String,
    pub digits: i64,
    pub period: i64,
    pub email: Option<String>,
    pub telegram_id: Option<String>,
    pub source: String,
    pub last_step: Option<i64>,
    pub failed_attempts: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub secret_set_at: Option<i64>,
    pub sent_code_hash: Option<Vec<u8>>,
    pub sent_code_expires_at: Option<i64>,
}

impl RawUser {
    pub(crate) fn into_record(self) -> Result<UserRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(what.to_string());
        Ok(UserRecord {
            profile: UserProfile {
                username: Username::parse(&self.username).map_err(|_| corrupt("username"))?,
                sealed_secret: self.sealed_secret,
                params: OtpParams {
                    algorithm: Algorithm::parse(&self.algorithm).map_err(|_| corrupt("algorithm"))?,
                    digits: u8::try_from(self.digits).map_err(|_| corrupt("digits"))?,
                    period: to_u64(self.period),
                },
                email: self.email,
                telegram_id: self.telegram_id,
                source: if self.source == "env" { UserSource::Env } else { UserSource::Cli },
            },
            last_step: self.last_step.map(to_u64),
            lock: LockState {
                failed_attempts: u32::try_from(self.failed_attempts).unwrap_or(u32::MAX),
                locked_until: self.locked_until.map(to_u64),
            },
            created_at: to_u64(self.created_at),
            updated_at: to_u64(self.updated_at),
            secret_set_at: self.secret_set_at.map(to_u64),
            sent_code: match (self.sent_code_hash, self.sent_code_expires_at) {
                (Some(hash), Some(expires_at)) => Some(SentCode { hash, expires_at: to_u64(expires_at) }),
                _ => None,
            },
        })
    }
}

/// The schema, embedded at compile time (one file per backend under `migrations/`), applied
/// by sqlx's migrator, which records what ran in `_sqlx_migrations`.
pub(crate) fn migrator(steps: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        steps
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(version, name.into(), MigrationType::Simple, sqlx::SqlSafeStr::into_sql_str(sql), false)
            })
            .collect(),
    )
}

/// The migrations of one backend's folder, in order.
macro_rules! migrations {
    ($dir:literal) => {
        $crate::store::sql::migrator(&[
            (1, "init", include_str!(concat!("../../migrations/", $dir, "/0001_init.sql"))),
            (2, "secret_set_at", include_str!(concat!("../../migrations/", $dir, "/0002_secret_set_at.sql"))),
            (3, "env_source_index", include_str!(concat!("../../migrations/", $dir, "/0003_env_source_index.sql"))),
        ])
    };
}
pub(crate) use migrations;

/// A value bound to a statement of the hot path (see [`Statement`]).
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A NULL of type BIGINT: the hot path binds no other kind of NULL.
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<Option<u64>> for Value {
    fn from(n: Option<u64>) -> Self {
        n.map_or(Self::Null, |n| Self::Int(to_i64(n)))
    }
}

/// One statement of the hot path, independent of the driver: each backend runs it its own
/// way (SQLite writes in a group commit, PostgreSQL directly). Parameters are `$1`, `$2`,
/// ... in the SQL, bound by number.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub sql: &'static str,
    pub params: Vec<Value>,
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Implements [`super::Store`] for `$store { pool: Pool<$db> }`. The store's own inherent
/// methods serve the hot path, the one part the backends do differently:
/// `execute_write(Statement) -> Result<u64 rows affected, StoreError>` (SQLite batches writes
/// into group commits; PostgreSQL runs them as they come), `read_user(&Username)` and
/// `ping_database()`, `close_database()`, `watch_open_connections(..)`,
/// `connection_stats()` (the requests' connections: open, idle). The calling module imports what the body names (see `sqlite.rs`): the
/// store types, `sqlx::Row`, and this module's helpers.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Binds a profile's columns as `$1`..`$8`, in the order of the `users` table.
            pub(crate) fn bind_profile<'q>(
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                user: &'q UserProfile,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                query
                    .bind(user.username.as_str())
                    .bind(&user.sealed_secret)
                    .bind(user.params.algorithm.as_str())
                    .bind(i64::from(user.params.digits))
                    .bind(to_i64(user.params.period))
                    .bind(&user.email)
                    .bind(&user.telegram_id)
                    .bind(user.source.as_str())
            }

            pub(crate) fn user_from_row(row: &<$db as sqlx::Database>::Row) -> Result<UserRecord, StoreError> {
                RawUser {
                    username: row.try_get("username")?,
                    sealed_secret: row.try_get("sealed_secret")?,
                    algorithm: row.try_get("algorithm")?,
                    digits: row.try_get("digits")?,
                    period: row.try_get("period")?,
                    email: row.try_get("email")?,
                    telegram_id: row.try_get("telegram_id")?,
                    source: row.try_get("source")?,
                    last_step: row.try_get("last_step")?,
                    failed_attempts: row.try_get("failed_attempts")?,
                    locked_until: row.try_get("locked_until")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    secret_set_at: row.try_get("secret_set_at")?,
                    sent_code_hash: row.try_get("sent_code_hash")?,
                    sent_code_expires_at: row.try_get("sent_code_expires_at")?,
                }
                .into_record()
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                self.ping_database().await
            }

            async fn close(&self) {
                self.close_database().await;
            }

            fn pool_stats(&self) -> (u32, u32) {
                self.connection_stats()
            }

            fn watch_load(&self, open_connections: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
                self.watch_open_connections(open_connections);
            }

            async fn check_key(&self, check: &str) -> Result<KeyCheck, StoreError> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING")
                    .bind(check)
                    .execute(&self.pool)
                    .await?;
                let stored: String =
                    sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'").fetch_one(&self.pool).await?;
                Ok(if stored == check { KeyCheck::Matches } else { KeyCheck::Mismatch })
            }

            async fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
                self.read_user(username).await
            }

            async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
                const SQL: &str = select_users!("ORDER BY username");
                let rows = sqlx::query(SQL).fetch_all(&self.pool).await?;
                rows.iter().map(Self::user_from_row).collect()
            }

            async fn users_page(&self, after: Option<&Username>, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
                let rows = match after {
                    Some(after) => {
                        sqlx::query(select_users!("WHERE username > $1 ORDER BY username LIMIT $2"))
                            .bind(after.as_str())
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query(select_users!("ORDER BY username LIMIT $1"))
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.iter().map(Self::user_from_row).collect()
            }

            async fn update_contact(
                &self,
                username: &Username,
                email: Option<&str>,
                telegram_id: Option<&str>,
                now: UnixTime,
            ) -> Result<bool, StoreError> {
                let result =
                    sqlx::query("UPDATE users SET email = $2, telegram_id = $3, updated_at = $4 WHERE username = $1")
                        .bind(username.as_str())
                        .bind(email)
                        .bind(telegram_id)
                        .bind(to_i64(now))
                        .execute(&self.pool)
                        .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn env_usernames(&self) -> Result<Vec<Username>, StoreError> {
                let names: Vec<String> = sqlx::query_scalar("SELECT username FROM users WHERE source = 'env'")
                    .fetch_all(&self.pool)
                    .await?;
                names.iter().map(|n| Username::parse(n).map_err(StoreError::Corrupt)).collect()
            }

            async fn count_users(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?;
                Ok(to_u64(n))
            }

            async fn insert_user(&self, user: &UserProfile, now: UnixTime) -> Result<(), StoreError> {
                let query = sqlx::query(
                    "INSERT INTO users (username, sealed_secret, algorithm, digits, period, email, telegram_id, source, \
                     created_at, updated_at, secret_set_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9) \
                     ON CONFLICT (username) DO NOTHING",
                );
                let result = Self::bind_profile(query, user).bind(to_i64(now)).execute(&self.pool).await?;
                if result.rows_affected() == 0 { Err(StoreError::Conflict) } else { Ok(()) }
            }

            async fn insert_users(&self, users: &[UserProfile], now: UnixTime) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut inserted = 0;
                for user in users {
                    let query = sqlx::query(
                        "INSERT INTO users (username, sealed_secret, algorithm, digits, period, email, telegram_id, \
                         source, created_at, updated_at, secret_set_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9) ON CONFLICT (username) DO NOTHING",
                    );
                    inserted += Self::bind_profile(query, user).bind(to_i64(now)).execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn replace_user(&self, user: &UserProfile, reset_last_step: bool, now: UnixTime) -> Result<bool, StoreError> {
                let query = sqlx::query(
                    "UPDATE users SET sealed_secret = $2, algorithm = $3, digits = $4, period = $5, email = $6, \
                     telegram_id = $7, source = $8, updated_at = $9, \
                     last_step = CASE WHEN $10 THEN NULL ELSE last_step END, \
                     secret_set_at = CASE WHEN $10 THEN $9 ELSE secret_set_at END WHERE username = $1",
                );
                let result = Self::bind_profile(query, user).bind(to_i64(now)).bind(reset_last_step).execute(&self.pool).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
                let result =
                    sqlx::query("DELETE FROM users WHERE username = $1").bind(username.as_str()).execute(&self.pool).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn accept_totp_step(&self, username: &Username, step: u64, expected: LockState) -> Result<bool, StoreError> {
                let write = Statement {
                    sql: "UPDATE users SET last_step = $2, failed_attempts = 0, locked_until = NULL \
                          WHERE username = $1 AND (last_step IS NULL OR last_step < $2) AND failed_attempts = $3 \
                          AND locked_until IS NOT DISTINCT FROM $4",
                    params: vec![
                        Value::Text(username.as_str().to_owned()),
                        Value::Int(to_i64(step)),
                        Value::Int(i64::from(expected.failed_attempts)),
                        expected.locked_until.into(),
                    ],
                };
                Ok(self.execute_write(write).await? == 1)
            }

            async fn clear_lock(&self, username: &Username) -> Result<bool, StoreError> {
                let write = Statement {
                    sql: "UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE username = $1",
                    params: vec![Value::Text(username.as_str().to_owned())],
                };
                Ok(self.execute_write(write).await? == 1)
            }

            async fn swap_lock(&self, username: &Username, expected: LockState, new: LockState) -> Result<bool, StoreError> {
                let write = Statement {
                    sql: "UPDATE users SET failed_attempts = $4, locked_until = $5 \
                          WHERE username = $1 AND failed_attempts = $2 AND locked_until IS NOT DISTINCT FROM $3",
                    params: vec![
                        Value::Text(username.as_str().to_owned()),
                        Value::Int(i64::from(expected.failed_attempts)),
                        expected.locked_until.into(),
                        Value::Int(i64::from(new.failed_attempts)),
                        new.locked_until.into(),
                    ],
                };
                Ok(self.execute_write(write).await? == 1)
            }

            async fn put_sent_code(
                &self,
                username: &Username,
                code_hash: &[u8],
                now: UnixTime,
                expires_at: UnixTime,
                resend_seconds: u64,
            ) -> Result<PutCode, StoreError> {
                let write = Statement {
                    sql: "INSERT INTO sent_codes (username, code_hash, sent_at, expires_at) VALUES ($1, $2, $3, $4) \
                          ON CONFLICT (username) DO UPDATE SET code_hash = excluded.code_hash, \
                          sent_at = excluded.sent_at, expires_at = excluded.expires_at \
                          WHERE sent_codes.sent_at + $5 <= excluded.sent_at",
                    params: vec![
                        Value::Text(username.as_str().to_owned()),
                        Value::Blob(code_hash.to_vec()),
                        Value::Int(to_i64(now)),
                        Value::Int(to_i64(expires_at)),
                        Value::Int(to_i64(resend_seconds)),
                    ],
                };
                if self.execute_write(write).await? == 1 {
                    return Ok(PutCode::Stored);
                }
                let sent_at: Option<i64> = sqlx::query_scalar("SELECT sent_at FROM sent_codes WHERE username = $1")
                    .bind(username.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                let ready_at = sent_at.map_or(now, |t| to_u64(t).saturating_add(resend_seconds));
                Ok(PutCode::TooSoon { retry_after: ready_at.saturating_sub(now).max(1) })
            }

            async fn take_sent_code(&self, username: &Username, code_hash: &[u8], now: UnixTime) -> Result<bool, StoreError> {
                // Comparing keyed hashes in SQL leaks nothing useful through timing: without the
                // key an attacker cannot choose inputs whose hashes share a prefix.
                let write = Statement {
                    sql: "DELETE FROM sent_codes WHERE username = $1 AND code_hash = $2 AND expires_at > $3",
                    params: vec![
                        Value::Text(username.as_str().to_owned()),
                        Value::Blob(code_hash.to_vec()),
                        Value::Int(to_i64(now)),
                    ],
                };
                Ok(self.execute_write(write).await? == 1)
            }

            async fn delete_sent_code(&self, username: &Username) -> Result<(), StoreError> {
                let write = Statement {
                    sql: "DELETE FROM sent_codes WHERE username = $1",
                    params: vec![Value::Text(username.as_str().to_owned())],
                };
                self.execute_write(write).await?;
                Ok(())
            }
        }
    };
}
pub(crate) use sql_store;
