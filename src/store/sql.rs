//! The SQL both backends share, as one generic [`SqlStore`] over a [`Driver`].
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `ON CONFLICT`,
//! `excluded.`, `IS NOT DISTINCT FROM`, which SQLite has since 3.39). A driver only runs
//! statements, with values bound by number and rows returned as plain values; what a
//! statement means is written once, here.

use std::sync::LazyLock;

use async_trait::async_trait;

use super::{
    KeyMigration, KeyRecord, PreviousCode, SentCode, SentCodes, Store, StoreError, UserProfile, UserRecord, UserSource,
};
use crate::clock::UnixTime;
use crate::domain::Username;
use crate::lockout::LockState;
use crate::otp::{Algorithm, OtpParams};

/// A value bound to a statement's `$n`. NULLs are typed, as PostgreSQL wants them.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
    Bool(bool),
}

impl Param {
    fn text(s: &str) -> Self {
        Self::Text(Some(s.to_string()))
    }

    fn int(n: u64) -> Self {
        Self::Int(Some(to_i64(n)))
    }

    fn user(username: &Username) -> Self {
        Self::text(username.as_str())
    }
}

/// One column of a row as the database returned it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A statement and its parameters (`$1`, `$2`, ... in the SQL, bound in order).
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub sql: &'static str,
    pub params: Vec<Param>,
    /// If it changes no row, its job fails with [`StoreError::Conflict`] and nothing of the
    /// job is written: the condition a transaction was prepared under no longer holds.
    pub must_change: bool,
}

impl Statement {
    fn new(sql: &'static str, params: impl Into<Vec<Param>>) -> Self {
        Self { sql, params: params.into(), must_change: false }
    }

    fn must_change(self) -> Self {
        Self { must_change: true, ..self }
    }

    /// What a driver answers for this statement once it changed `rows`.
    pub(crate) fn changed(&self, rows: u64) -> Result<u64, StoreError> {
        if self.must_change && rows == 0 { Err(StoreError::Conflict) } else { Ok(rows) }
    }
}

/// What a backend provides: statements run against its connections.
#[async_trait]
pub(crate) trait Driver: Send + Sync + 'static {
    /// Every row of a query, each as its columns' values in order.
    async fn query(&self, statement: Statement) -> Result<Vec<Vec<Value>>, StoreError>;
    /// A write; the rows it changed. It is durable when this returns.
    async fn execute(&self, statement: Statement) -> Result<u64, StoreError>;
    /// Writes in one transaction, all or none; the rows each changed. A statement that
    /// [`must change`](Statement::must_change) a row and changes none rolls back them all.
    async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);
    /// The connections that serve requests: (open, idle).
    fn connection_stats(&self) -> (u32, u32);
}

/// The schema, embedded at compile time (one folder per backend under `migrations/`),
/// applied by sqlx's migrator, which records what ran in `_sqlx_migrations`.
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

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Every user column, in the order [`user_from_row`] reads them. The sent codes are in the
/// user's row, so checking a code is one primary-key lookup.
const SELECT_USERS: &str = "SELECT username, sealed_secret, algorithm, digits, period, email, telegram_id, source, \
     last_step, failed_attempts, locked_until, created_at, updated_at, secret_set_at, last_failed_at, \
     code_hash, sealed_code, code_sent_at, code_expires_at, previous_code_hash, previous_code_expires_at, \
     codes_used_at, send_tat, failed_from FROM users ";

static USER_BY_NAME: LazyLock<String> = LazyLock::new(|| format!("{SELECT_USERS}WHERE username = $1"));

/// Users by name after `$1` (all when NULL), at most `$2`.
static USERS_PAGE: LazyLock<String> =
    LazyLock::new(|| format!("{SELECT_USERS}WHERE ($1 IS NULL OR username > $1) ORDER BY username LIMIT $2"));

const INSERT_USER: &str = "INSERT INTO users (username, sealed_secret, algorithm, digits, period, email, \
     telegram_id, source, created_at, updated_at, secret_set_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9) \
     ON CONFLICT (username) DO NOTHING";

/// The values of one row, taken out column by column.
struct Columns(std::vec::IntoIter<Value>);

impl Columns {
    fn next(&mut self) -> Result<Value, StoreError> {
        self.0.next().ok_or_else(|| StoreError::Corrupt("a column is missing".into()))
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        self.opt_int()?.ok_or_else(|| StoreError::Corrupt("a number is NULL".into()))
    }

    fn opt_int(&mut self) -> Result<Option<i64>, StoreError> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(n)),
            _ => Err(StoreError::Corrupt("expected a number".into())),
        }
    }

    fn text(&mut self) -> Result<String, StoreError> {
        self.opt_text()?.ok_or_else(|| StoreError::Corrupt("a text is NULL".into()))
    }

    fn opt_text(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            _ => Err(StoreError::Corrupt("expected text".into())),
        }
    }

    fn blob(&mut self) -> Result<Vec<u8>, StoreError> {
        self.opt_blob()?.ok_or_else(|| StoreError::Corrupt("a blob is NULL".into()))
    }

    fn opt_blob(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b)),
            _ => Err(StoreError::Corrupt("expected bytes".into())),
        }
    }
}

/// A row of [`SELECT_USERS`] as a checked [`UserRecord`].
fn user_from_row(row: Vec<Value>) -> Result<UserRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_string());
    let mut c = Columns(row.into_iter());
    let username = Username::parse(&c.text()?).map_err(|_| corrupt("username"))?;
    let sealed_secret = c.blob()?;
    let algorithm = Algorithm::parse(&c.text()?).map_err(|_| corrupt("algorithm"))?;
    let digits = u8::try_from(c.int()?).map_err(|_| corrupt("digits"))?;
    let period = to_u64(c.int()?);
    let (email, telegram_id) = (c.opt_text()?, c.opt_text()?);
    let source = match c.text()?.as_str() {
        "env" => UserSource::Env,
        "admin" => UserSource::Admin,
        _ => UserSource::Cli,
    };
    let last_step = c.opt_int()?.map(to_u64);
    let failed_attempts = u32::try_from(c.int()?).unwrap_or(u32::MAX);
    let locked_until = c.opt_int()?.map(to_u64);
    let (created_at, updated_at) = (to_u64(c.int()?), to_u64(c.int()?));
    let secret_set_at = c.opt_int()?.map(to_u64);
    let last_failed_at = c.opt_int()?.map(to_u64);
    let current = match (c.opt_blob()?, c.opt_blob()?, c.opt_int()?, c.opt_int()?) {
        (Some(hash), sealed, Some(sent_at), Some(expires_at)) => {
            Some(SentCode { hash, sealed, sent_at: to_u64(sent_at), expires_at: to_u64(expires_at) })
        }
        _ => None,
    };
    let previous = match (c.opt_blob()?, c.opt_int()?) {
        (Some(hash), Some(expires_at)) => Some(PreviousCode { hash, expires_at: to_u64(expires_at) }),
        _ => None,
    };
    let sent = SentCodes { current, previous, used_at: c.opt_int()?.map(to_u64), send_tat: c.opt_int()?.map(to_u64) };
    let failed_from = c.opt_text()?.map(|list| list.split(',').map(str::to_string).collect()).unwrap_or_default();
    Ok(UserRecord {
        profile: UserProfile {
            username,
            sealed_secret,
            params: OtpParams { algorithm, digits, period },
            email,
            telegram_id,
            source,
        },
        last_step,
        lock: LockState { failed_attempts, locked_until, last_failed_at },
        created_at,
        updated_at,
        secret_set_at,
        sent,
        failed_from,
    })
}

/// A profile's columns as `$1`..`$8`, in the order of the `users` table.
fn profile_params(user: &UserProfile) -> Vec<Param> {
    vec![
        Param::user(&user.username),
        Param::Blob(Some(user.sealed_secret.clone())),
        Param::text(user.params.algorithm.as_str()),
        Param::Int(Some(i64::from(user.params.digits))),
        Param::int(user.params.period),
        Param::Text(user.email.clone()),
        Param::Text(user.telegram_id.clone()),
        Param::text(user.source.as_str()),
    ]
}

fn insert_user(user: &UserProfile, now: UnixTime) -> Statement {
    let mut params = profile_params(user);
    params.push(Param::int(now));
    Statement::new(INSERT_USER, params)
}

/// A job of conditional writes: done, or not done because another process changed the
/// data first.
fn raced(result: Result<Vec<u64>, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The only value of a one-row, one-column query.
fn single(rows: Vec<Vec<Value>>) -> Option<Value> {
    rows.into_iter().next()?.into_iter().next()
}

/// The store over a backend: every statement of the [`Store`] contract.
pub(crate) struct SqlStore<D> {
    driver: D,
}

impl<D: Driver> SqlStore<D> {
    pub(crate) fn new(driver: D) -> Self {
        Self { driver }
    }

    async fn users_where(&self, statement: Statement) -> Result<Vec<UserRecord>, StoreError> {
        self.driver.query(statement).await?.into_iter().map(user_from_row).collect()
    }
}

#[async_trait]
impl<D: Driver> Store for SqlStore<D> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.driver.ping().await
    }

    async fn close(&self) {
        self.driver.close().await;
    }

    fn pool_stats(&self) -> (u32, u32) {
        self.driver.connection_stats()
    }

    async fn key_record(&self) -> Result<KeyRecord, StoreError> {
        let sql = "SELECT key, value FROM meta WHERE key IN ('kdf', 'key_check')";
        let mut record = KeyRecord::default();
        for row in self.driver.query(Statement::new(sql, [])).await? {
            let mut c = Columns(row.into_iter());
            let (key, value) = (c.text()?, c.text()?);
            match key.as_str() {
                "kdf" => record.kdf = Some(value),
                _ => record.check = Some(value),
            }
        }
        Ok(record)
    }

    async fn record_keys(&self, kdf: &str, check: &str) -> Result<bool, StoreError> {
        let insert = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let writes = vec![
            Statement::new(insert, [Param::text("kdf"), Param::text(kdf)]).must_change(),
            Statement::new(insert, [Param::text("key_check"), Param::text(check)]).must_change(),
        ];
        raced(self.driver.execute_all(writes).await)
    }

    async fn migrate_keys(&self, migration: &KeyMigration) -> Result<bool, StoreError> {
        // The `kdf` row first: a second process moving the database at the same time waits
        // on its key (PostgreSQL) or the write lock (SQLite), then finds it taken.
        let claim = "INSERT INTO meta (key, value) VALUES ('kdf', $1) ON CONFLICT (key) DO NOTHING";
        let check = "UPDATE meta SET value = $2 WHERE key = 'key_check' AND value = $1 \
                     AND (SELECT COUNT(*) FROM users) = $3";
        let reseal = "UPDATE users SET sealed_secret = $3 WHERE username = $1 AND sealed_secret = $2";
        let mut writes = vec![
            Statement::new(claim, [Param::text(&migration.kdf)]).must_change(),
            Statement::new(
                check,
                [Param::text(&migration.old_check), Param::text(&migration.new_check), Param::int(migration.users)],
            )
            .must_change(),
        ];
        writes.extend(migration.resealed.iter().map(|user| {
            let params =
                [Param::user(&user.username), Param::Blob(Some(user.old.clone())), Param::Blob(Some(user.new.clone()))];
            Statement::new(reseal, params).must_change()
        }));
        if migration.drop_sent_codes {
            let forget = "UPDATE users SET code_hash = NULL, sealed_code = NULL, code_sent_at = NULL, \
                          code_expires_at = NULL, previous_code_hash = NULL, previous_code_expires_at = NULL, \
                          codes_used_at = NULL WHERE code_hash IS NOT NULL";
            writes.push(Statement::new(forget, []));
        }
        raced(self.driver.execute_all(writes).await)
    }

    async fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users_where(Statement::new(USER_BY_NAME.as_str(), [Param::user(username)])).await?.pop())
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users_where(Statement::new(USERS_PAGE.as_str(), [Param::Text(None), Param::Int(Some(i64::MAX))])).await
    }

    async fn users_page(&self, after: Option<&Username>, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        let after = Param::Text(after.map(|name| name.as_str().to_string()));
        self.users_where(Statement::new(USERS_PAGE.as_str(), [after, Param::Int(Some(i64::from(limit)))])).await
    }

    async fn update_contact(
        &self,
        username: &Username,
        email: Option<&str>,
        telegram_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET email = $2, telegram_id = $3, updated_at = $4 WHERE username = $1";
        let params = [
            Param::user(username),
            Param::Text(email.map(str::to_string)),
            Param::Text(telegram_id.map(str::to_string)),
            Param::int(now),
        ];
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn env_usernames(&self) -> Result<Vec<Username>, StoreError> {
        let rows = self.driver.query(Statement::new("SELECT username FROM users WHERE source = 'env'", [])).await?;
        rows.into_iter()
            .map(|row| match row.into_iter().next() {
                Some(Value::Text(name)) => Username::parse(&name).map_err(StoreError::Corrupt),
                _ => Err(StoreError::Corrupt("username".into())),
            })
            .collect()
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        match single(self.driver.query(Statement::new("SELECT COUNT(*) FROM users", [])).await?) {
            Some(Value::Int(n)) => Ok(to_u64(n)),
            _ => Err(StoreError::Corrupt("the user count".into())),
        }
    }

    async fn insert_user(&self, user: &UserProfile, now: UnixTime) -> Result<(), StoreError> {
        if self.driver.execute(insert_user(user, now)).await? == 0 { Err(StoreError::Conflict) } else { Ok(()) }
    }

    async fn insert_users(&self, users: &[UserProfile], now: UnixTime) -> Result<u64, StoreError> {
        let inserts = users.iter().map(|user| insert_user(user, now)).collect();
        Ok(self.driver.execute_all(inserts).await?.into_iter().sum())
    }

    async fn replace_user(&self, user: &UserProfile, reset_last_step: bool, now: UnixTime) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET sealed_secret = $2, algorithm = $3, digits = $4, period = $5, email = $6, \
                   telegram_id = $7, source = $8, updated_at = $9, \
                   last_step = CASE WHEN $10 THEN NULL ELSE last_step END, \
                   secret_set_at = CASE WHEN $10 THEN $9 ELSE secret_set_at END WHERE username = $1";
        let mut params = profile_params(user);
        params.extend([Param::int(now), Param::Bool(reset_last_step)]);
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let delete = Statement::new("DELETE FROM users WHERE username = $1", [Param::user(username)]);
        Ok(self.driver.execute(delete).await? == 1)
    }

    async fn accept_totp_step(&self, username: &Username, step: u64, expected: LockState) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET last_step = $2 WHERE username = $1 AND (last_step IS NULL OR last_step < $2) \
                   AND failed_attempts = $3 AND locked_until IS NOT DISTINCT FROM $4 \
                   AND last_failed_at IS NOT DISTINCT FROM $5";
        let mut params = vec![Param::user(username), Param::int(step)];
        params.extend(lock_params(expected));
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn clear_lock(&self, username: &Username) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET failed_attempts = 0, locked_until = NULL, last_failed_at = NULL, \
                   failed_from = NULL WHERE username = $1";
        Ok(self.driver.execute(Statement::new(sql, [Param::user(username)])).await? == 1)
    }

    async fn swap_lock(
        &self,
        username: &Username,
        expected: LockState,
        new: LockState,
        failed_from: &[String],
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET failed_attempts = $5, locked_until = $6, last_failed_at = $7, failed_from = $8 \
                   WHERE username = $1 AND failed_attempts = $2 AND locked_until IS NOT DISTINCT FROM $3 \
                   AND last_failed_at IS NOT DISTINCT FROM $4";
        let mut params = vec![Param::user(username)];
        params.extend(lock_params(expected));
        params.extend(lock_params(new));
        params.push(Param::Text(Some(failed_from.join(",")).filter(|list| !list.is_empty())));
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn swap_sent_codes(
        &self,
        username: &Username,
        expected_sent_at: Option<UnixTime>,
        new: &SentCodes,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET code_hash = $3, sealed_code = $4, code_sent_at = $5, code_expires_at = $6, \
                   previous_code_hash = $7, previous_code_expires_at = $8, codes_used_at = $9, send_tat = $10 \
                   WHERE username = $1 AND code_sent_at IS NOT DISTINCT FROM $2";
        let current = new.current.as_ref();
        let previous = new.previous.as_ref();
        let blob = |b: Option<&Vec<u8>>| Param::Blob(b.cloned());
        let params = vec![
            Param::user(username),
            Param::Int(expected_sent_at.map(to_i64)),
            blob(current.map(|c| &c.hash)),
            blob(current.and_then(|c| c.sealed.as_ref())),
            Param::Int(current.map(|c| to_i64(c.sent_at))),
            Param::Int(current.map(|c| to_i64(c.expires_at))),
            blob(previous.map(|p| &p.hash)),
            Param::Int(previous.map(|p| to_i64(p.expires_at))),
            Param::Int(new.used_at.map(to_i64)),
            Param::Int(new.send_tat.map(to_i64)),
        ];
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn use_sent_codes(
        &self,
        username: &Username,
        code_hash: &[u8],
        now: UnixTime,
        expected: LockState,
    ) -> Result<bool, StoreError> {
        // Comparing keyed hashes in SQL leaks nothing useful through timing: without the
        // key an attacker cannot choose inputs whose hashes share a prefix.
        let sql = "UPDATE users SET codes_used_at = $3 WHERE username = $1 AND codes_used_at IS NULL \
                   AND ((code_hash = $2 AND code_expires_at > $3) \
                        OR (previous_code_hash = $2 AND previous_code_expires_at > $3)) \
                   AND failed_attempts = $4 AND locked_until IS NOT DISTINCT FROM $5 \
                   AND last_failed_at IS NOT DISTINCT FROM $6";
        let mut params = vec![Param::user(username), Param::Blob(Some(code_hash.to_vec())), Param::int(now)];
        params.extend(lock_params(expected));
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn clear_sent_codes(&self, username: &Username) -> Result<(), StoreError> {
        let sql = "UPDATE users SET code_hash = NULL, sealed_code = NULL, code_sent_at = NULL, \
                   code_expires_at = NULL, previous_code_hash = NULL, previous_code_expires_at = NULL, \
                   codes_used_at = NULL WHERE username = $1";
        self.driver.execute(Statement::new(sql, [Param::user(username)])).await?;
        Ok(())
    }

    async fn claim_alert(
        &self,
        username: &Username,
        kind: &str,
        now: UnixTime,
        cutoff: UnixTime,
    ) -> Result<bool, StoreError> {
        // Inserted, or updated only when the last one is old enough: the row changes (1) or
        // it does not (0), atomically, however many instances raise the same alert at once.
        let sql = "INSERT INTO alerts_sent (username, kind, sent_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (username, kind) DO UPDATE SET sent_at = excluded.sent_at \
                   WHERE alerts_sent.sent_at <= $4";
        let params = [Param::user(username), Param::text(kind), Param::int(now), Param::int(cutoff)];
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn release_alert(&self, username: &Username, kind: &str, sent_at: UnixTime) -> Result<(), StoreError> {
        let sql = "DELETE FROM alerts_sent WHERE username = $1 AND kind = $2 AND sent_at = $3";
        let params = [Param::user(username), Param::text(kind), Param::int(sent_at)];
        self.driver.execute(Statement::new(sql, params)).await?;
        Ok(())
    }
}

/// A lockout state as three parameters, in the order of its columns.
fn lock_params(state: LockState) -> [Param; 3] {
    [
        Param::Int(Some(i64::from(state.failed_attempts))),
        Param::Int(state.locked_until.map(to_i64)),
        Param::Int(state.last_failed_at.map(to_i64)),
    ]
}
