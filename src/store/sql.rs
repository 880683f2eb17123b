//! The SQL both backends share, as one generic [`SqlStore`] over a [`Driver`].
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `ON CONFLICT`,
//! `excluded.`, `IS NOT DISTINCT FROM`, which SQLite has since 3.39). A driver only runs
//! statements, with values bound by number and rows returned as plain values; what a
//! statement means is written once, here.

use async_trait::async_trait;

use super::{
    Advance, AuthenticatorRecord, AuthenticatorStatus, DeliveryJob, Factor, JobEnd, KeyMigration, KeyRecord,
    PreviousCode, RecoveryCodeRecord, Resealed, SentCode, SentCodes, Store, StoreError, UserProfile, UserRecord,
    UserSource,
};
use crate::clock::UnixTime;
use crate::domain::{Channel, Username};
use crate::lockout::LockState;
use crate::otp::{Algorithm, OtpParams};

/// A value bound to a statement's `$n`. NULLs are typed, as PostgreSQL wants them. Ordered
/// so that a batch of writes can be (PostgreSQL's group writers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
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
    /// Whether a statement that checks a row it does not write must lock it (`FOR NO KEY
    /// UPDATE`) to keep another transaction from changing it before the commit: on
    /// PostgreSQL, where writers run side by side. SQLite's writer holds the whole
    /// database's write lock.
    const LOCK_ROWS_READ: bool = false;
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

/// Every user column and every authenticator column, in the order [`users_from_rows`]
/// reads them: one row per authenticator (or one with NULLs for a user without any), so
/// that reading a user for a verification is one lookup. The sent codes are in the user's
/// row. A user's authenticators come in no set order and [`users_from_rows`] sorts them: an
/// `ORDER BY` made SQLite build a sorter for every read (finding 17 of docs/BENCHMARKS.md).
macro_rules! select_users {
    ($from:literal, $order:literal) => {
        concat!(
            "SELECT u.username, u.email, u.telegram_id, u.source, u.failed_attempts, u.locked_until, \
             u.created_at, u.updated_at, u.last_failed_at, u.code_hash, u.sealed_code, u.code_sent_at, \
             u.code_expires_at, u.previous_code_hash, u.previous_code_expires_at, u.codes_used_at, u.send_tat, \
             u.failed_from, u.channels, u.telegram_blocked_at,              a.id, a.kind, a.name, a.sealed_secret, a.algorithm, a.digits, a.period, a.counter, a.last_step, \
             a.drift_steps, a.status, a.replaces, a.created_at, a.last_used_at, a.expires_at FROM ",
            $from,
            " u LEFT JOIN authenticators a ON a.username = u.username",
            $order
        )
    };
}

const USER_BY_NAME: &str = select_users!("(SELECT * FROM users WHERE username = $1)", "");

/// Users by name after `$1` (all when NULL), at most `$2`.
const USERS_PAGE: &str = select_users!(
    "(SELECT * FROM users WHERE ($1 IS NULL OR username > $1) ORDER BY username LIMIT $2)",
    " ORDER BY u.username"
);

const INSERT_USER: &str = "INSERT INTO users (username, email, telegram_id, source, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (username) DO NOTHING";

const INSERT_AUTHENTICATOR: &str = "INSERT INTO authenticators (username, id, kind, name, sealed_secret, \
     algorithm, digits, period, counter, last_step, drift_steps, status, replaces, created_at, last_used_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Holds a transaction to the user's lockout state as it was read: changes nothing, but
/// changes no row (and so rolls the transaction back) if the state moved, and on
/// PostgreSQL locks the row until the commit, so no failure can be counted in between.
const LOCK_GUARD: &str = "UPDATE users SET failed_attempts = $2 WHERE username = $1 AND failed_attempts = $2 \
     AND locked_until IS NOT DISTINCT FROM $3 AND last_failed_at IS NOT DISTINCT FROM $4";

fn lock_guard(username: &Username, expected: LockState) -> Statement {
    let mut params = vec![Param::user(username)];
    params.extend(lock_params(expected));
    Statement::new(LOCK_GUARD, params).must_change()
}

/// [`LOCK_GUARD`]'s condition inside the write it guards, for a write whose own parameters
/// are `$1` (the user) to `$5`: the state expected is `$6` to `$8`. One statement instead of
/// four in a batch (a savepoint, the guard, the write, the release), and the user's row is
/// not written. On PostgreSQL the row is locked `FOR NO KEY UPDATE` (see
/// [`Driver::LOCK_ROWS_READ`]), the lock the guard's own update took: it holds off a
/// failure's update, and another code's acceptance, of the user until the commit. (`FOR
/// SHARE` would let two acceptances share it, and one batch that then also counted a
/// failure of that user would deadlock with the other.) The uncorrelated `EXISTS` is
/// evaluated once, before the write's scan, so the user's row is still locked before the
/// authenticator's. The caller closes the parenthesis, after the lock or not.
macro_rules! lock_state_is {
    () => {
        " AND EXISTS (SELECT 1 FROM users WHERE username = $1 AND failed_attempts = $6 \
         AND locked_until IS NOT DISTINCT FROM $7 AND last_failed_at IS NOT DISTINCT FROM $8"
    };
}

/// Fails the transaction unless the user exists (and marks the user changed).
fn user_exists(username: &Username, now: UnixTime) -> Statement {
    Statement::new("UPDATE users SET updated_at = $2 WHERE username = $1", [Param::user(username), Param::int(now)])
        .must_change()
}

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

/// The rows of [`select_users`] (each user's rows together) as checked [`UserRecord`]s,
/// with their authenticators oldest first (ties by id).
fn users_from_rows(rows: Vec<Vec<Value>>) -> Result<Vec<UserRecord>, StoreError> {
    let mut users: Vec<UserRecord> = Vec::new();
    for row in rows {
        let mut c = Columns(row.into_iter());
        let user = user_from_columns(&mut c)?;
        let authenticator = authenticator_from_columns(&mut c)?;
        let same = users.last().is_some_and(|last| last.profile.username == user.profile.username);
        if !same {
            users.push(user);
        }
        if let (Some(authenticator), Some(last)) = (authenticator, users.last_mut()) {
            last.authenticators.push(authenticator);
        }
    }
    for user in &mut users {
        user.authenticators.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    }
    Ok(users)
}

fn user_from_columns(c: &mut Columns) -> Result<UserRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_string());
    let username = Username::parse(&c.text()?).map_err(|_| corrupt("username"))?;
    let (email, telegram_id) = (c.opt_text()?, c.opt_text()?);
    let source = match c.text()?.as_str() {
        "env" => UserSource::Env,
        "admin" => UserSource::Admin,
        _ => UserSource::Cli,
    };
    let failed_attempts = u32::try_from(c.int()?).unwrap_or(u32::MAX);
    let locked_until = c.opt_int()?.map(to_u64);
    let (created_at, updated_at) = (to_u64(c.int()?), to_u64(c.int()?));
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
    let channel_order = c
        .opt_text()?
        .map(|list| list.split(',').map(Channel::parse).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(|_| corrupt("channels"))?;
    let telegram_blocked_at = c.opt_int()?.map(to_u64);
    Ok(UserRecord {
        profile: UserProfile { username, email, telegram_id, source },
        authenticators: Vec::new(),
        lock: LockState { failed_attempts, locked_until, last_failed_at },
        created_at,
        updated_at,
        sent,
        failed_from,
        channel_order,
        telegram_blocked_at,
    })
}

/// The authenticator columns of a row; `None` when the user has none (the LEFT JOIN's NULLs).
fn authenticator_from_columns(c: &mut Columns) -> Result<Option<AuthenticatorRecord>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("authenticator {what}"));
    let Some(id) = c.opt_text()? else { return Ok(None) };
    let kind = c.text()?;
    let name = c.text()?;
    let sealed_secret = c.blob()?;
    let algorithm = Algorithm::parse(&c.text()?).map_err(|_| corrupt("algorithm"))?;
    let digits = u8::try_from(c.int()?).map_err(|_| corrupt("digits"))?;
    let (period, counter, last_step) = (c.opt_int()?, c.opt_int()?, c.opt_int()?);
    let drift_steps = c.int()?;
    let factor = match kind.as_str() {
        "totp" => Factor::Totp {
            params: OtpParams { algorithm, digits, period: period.map_or(30, to_u64) },
            last_step: last_step.map(to_u64),
            drift_steps,
        },
        "hotp" => Factor::Hotp { algorithm, digits, counter: counter.map_or(0, to_u64) },
        _ => return Err(corrupt("kind")),
    };
    let status = match c.text()?.as_str() {
        "pending" => AuthenticatorStatus::Pending,
        "active" => AuthenticatorStatus::Active,
        _ => return Err(corrupt("status")),
    };
    Ok(Some(AuthenticatorRecord {
        id,
        name,
        sealed_secret,
        factor,
        status,
        replaces: c.opt_text()?,
        created_at: to_u64(c.int()?),
        last_used_at: c.opt_int()?.map(to_u64),
        expires_at: c.opt_int()?.map(to_u64),
    }))
}

fn insert_user(user: &UserProfile, now: UnixTime) -> Statement {
    let params = vec![
        Param::user(&user.username),
        Param::Text(user.email.clone()),
        Param::Text(user.telegram_id.clone()),
        Param::text(user.source.as_str()),
        Param::int(now),
    ];
    Statement::new(INSERT_USER, params)
}

fn insert_authenticator(username: &Username, a: &AuthenticatorRecord) -> Statement {
    let (algorithm, digits, period, counter, last_step, drift) = match a.factor {
        Factor::Totp { params, last_step, drift_steps } => (
            params.algorithm,
            params.digits,
            Param::int(params.period),
            Param::Int(None),
            Param::Int(last_step.map(to_i64)),
            drift_steps,
        ),
        Factor::Hotp { algorithm, digits, counter } => {
            (algorithm, digits, Param::Int(None), Param::int(counter), Param::Int(None), 0)
        }
    };
    let params = vec![
        Param::user(username),
        Param::text(&a.id),
        Param::text(a.factor.kind()),
        Param::text(&a.name),
        Param::Blob(Some(a.sealed_secret.clone())),
        Param::text(algorithm.as_str()),
        Param::Int(Some(i64::from(digits))),
        period,
        counter,
        last_step,
        Param::Int(Some(drift)),
        Param::text(a.status.as_str()),
        Param::Text(a.replaces.clone()),
        Param::int(a.created_at),
        Param::Int(a.last_used_at.map(to_i64)),
        Param::Int(a.expires_at.map(to_i64)),
    ];
    Statement::new(INSERT_AUTHENTICATOR, params).must_change()
}

/// A TOTP code's use: the step, drift and time of use (`$3` to `$5`), if the replay guard
/// is still below the step and the authenticator active or its confirmation not expired.
macro_rules! totp_use {
    () => {
        "UPDATE authenticators SET last_step = $3, drift_steps = $4, last_used_at = $5, status = 'active', \
         expires_at = NULL, replaces = NULL WHERE username = $1 AND id = $2 AND kind = 'totp' \
         AND (last_step IS NULL OR last_step < $3) AND (status = 'active' OR expires_at > $5)"
    };
}

/// An HOTP code's use: from counter `$3` to `$4` at `$5`, under the same conditions.
macro_rules! hotp_use {
    () => {
        "UPDATE authenticators SET counter = $4, last_used_at = $5, status = 'active', expires_at = NULL, \
         replaces = NULL WHERE username = $1 AND id = $2 AND kind = 'hotp' AND counter = $3 \
         AND (status = 'active' OR expires_at > $5)"
    };
}

/// A code's use (as [`advance`] with a time of use) only while the user's lockout state is
/// still `expected`, as one statement (see [`lock_state_is`]).
fn guarded_use(
    username: &Username,
    id: &str,
    to: Advance,
    expected: LockState,
    now: UnixTime,
    lock_row: bool,
) -> Statement {
    let sql = match (to, lock_row) {
        (Advance::Totp { .. }, false) => concat!(totp_use!(), lock_state_is!(), ")"),
        (Advance::Totp { .. }, true) => concat!(totp_use!(), lock_state_is!(), " FOR NO KEY UPDATE)"),
        (Advance::Hotp { .. }, false) => concat!(hotp_use!(), lock_state_is!(), ")"),
        (Advance::Hotp { .. }, true) => concat!(hotp_use!(), lock_state_is!(), " FOR NO KEY UPDATE)"),
    };
    let mut params = advance(username, id, to, Some(now)).params;
    params.extend(lock_params(expected));
    Statement::new(sql, params).must_change()
}

/// The statement that moves an authenticator's replay guard by `advance`, if the guard is
/// still as read; with `used_at`, also records a use and confirms it.
fn advance(username: &Username, id: &str, advance: Advance, used_at: Option<UnixTime>) -> Statement {
    let (user, id) = (Param::user(username), Param::text(id));
    match (advance, used_at) {
        (Advance::Totp { step, drift_steps }, Some(now)) => {
            Statement::new(totp_use!(), [user, id, Param::int(step), Param::Int(Some(drift_steps)), Param::int(now)])
        }
        (Advance::Hotp { expected, next }, Some(now)) => {
            Statement::new(hotp_use!(), [user, id, Param::int(expected), Param::int(next), Param::int(now)])
        }
        (Advance::Totp { step, drift_steps }, None) => Statement::new(
            "UPDATE authenticators SET last_step = $3, drift_steps = $4 WHERE username = $1 AND id = $2 \
             AND kind = 'totp' AND (last_step IS NULL OR last_step < $3)",
            [user, id, Param::int(step), Param::Int(Some(drift_steps))],
        ),
        (Advance::Hotp { expected, next }, None) => Statement::new(
            "UPDATE authenticators SET counter = $4 WHERE username = $1 AND id = $2 AND kind = 'hotp' \
             AND counter = $3",
            [user, id, Param::int(expected), Param::int(next)],
        ),
    }
    .must_change()
}

fn reseal(r: &Resealed) -> Statement {
    let sql = "UPDATE authenticators SET sealed_secret = $4 WHERE username = $1 AND id = $2 AND sealed_secret = $3";
    let params = [
        Param::user(&r.username),
        Param::text(&r.authenticator),
        Param::Blob(Some(r.old.clone())),
        Param::Blob(Some(r.new.clone())),
    ];
    Statement::new(sql, params)
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
        users_from_rows(self.driver.query(statement).await?)
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
                     AND (SELECT COUNT(*) FROM authenticators) = $3";
        let mut writes = vec![
            Statement::new(claim, [Param::text(&migration.kdf)]).must_change(),
            Statement::new(
                check,
                [
                    Param::text(&migration.old_check),
                    Param::text(&migration.new_check),
                    Param::int(migration.authenticators),
                ],
            )
            .must_change(),
        ];
        writes.extend(migration.resealed.iter().map(|r| reseal(r).must_change()));
        if migration.drop_sent_codes {
            let forget = "UPDATE users SET code_hash = NULL, sealed_code = NULL, code_sent_at = NULL, \
                          code_expires_at = NULL, previous_code_hash = NULL, previous_code_expires_at = NULL, \
                          codes_used_at = NULL WHERE code_hash IS NOT NULL";
            writes.push(Statement::new(forget, []));
            writes.push(Statement::new("DELETE FROM recovery_codes", []));
        }
        raced(self.driver.execute_all(writes).await)
    }

    async fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users_where(Statement::new(USER_BY_NAME, [Param::user(username)])).await?.pop())
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users_where(Statement::new(USERS_PAGE, [Param::Text(None), Param::Int(Some(i64::MAX))])).await
    }

    async fn users_page(&self, after: Option<&Username>, limit: u32) -> Result<Vec<UserRecord>, StoreError> {
        let after = Param::Text(after.map(|name| name.as_str().to_string()));
        self.users_where(Statement::new(USERS_PAGE, [after, Param::Int(Some(i64::from(limit)))])).await
    }

    async fn update_contact(
        &self,
        username: &Username,
        email: Option<&str>,
        telegram_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // A new chat is not blocked (yet).
        let sql = "UPDATE users SET email = $2, telegram_id = $3, updated_at = $4, telegram_blocked_at = CASE \
                   WHEN telegram_id IS NOT DISTINCT FROM $3 THEN telegram_blocked_at END WHERE username = $1";
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

    async fn insert_user(
        &self,
        user: &UserProfile,
        first: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let writes = vec![insert_user(user, now).must_change(), insert_authenticator(&user.username, first)];
        self.driver.execute_all(writes).await.map(|_| ())
    }

    async fn insert_users(
        &self,
        users: &[(UserProfile, AuthenticatorRecord)],
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        let pair = |(user, first): &(UserProfile, AuthenticatorRecord)| {
            [insert_user(user, now).must_change(), insert_authenticator(&user.username, first)]
        };
        // All at once; if a name exists, the batch is rolled back and each user is then
        // written on its own, those that exist skipped.
        match self.driver.execute_all(users.iter().flat_map(pair).collect()).await {
            Ok(_) => return Ok(users.len() as u64),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
        let mut inserted = 0;
        for user in users {
            if raced(self.driver.execute_all(pair(user).to_vec()).await)? {
                inserted += 1;
            }
        }
        Ok(inserted)
    }

    async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let delete = Statement::new("DELETE FROM users WHERE username = $1", [Param::user(username)]);
        Ok(self.driver.execute(delete).await? == 1)
    }

    async fn add_authenticator(
        &self,
        username: &Username,
        authenticator: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut writes = vec![user_exists(username, now)];
        if authenticator.replaces.is_some() {
            let earlier = "DELETE FROM authenticators WHERE username = $1 AND status = 'pending' \
                           AND replaces IS NOT NULL";
            writes.push(Statement::new(earlier, [Param::user(username)]));
        }
        writes.push(insert_authenticator(username, authenticator));
        raced(self.driver.execute_all(writes).await)
    }

    async fn replace_authenticators(
        &self,
        username: &Username,
        authenticator: &AuthenticatorRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let writes = vec![
            user_exists(username, now),
            Statement::new("DELETE FROM authenticators WHERE username = $1", [Param::user(username)]),
            insert_authenticator(username, authenticator),
        ];
        raced(self.driver.execute_all(writes).await)
    }

    async fn delete_authenticator(&self, username: &Username, id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM authenticators WHERE username = $1 AND id = $2";
        Ok(self.driver.execute(Statement::new(sql, [Param::user(username), Param::text(id)])).await? == 1)
    }

    async fn expire_pending(&self, now: UnixTime) -> Result<u64, StoreError> {
        let sql = "DELETE FROM authenticators WHERE status = 'pending' AND expires_at <= $1";
        self.driver.execute(Statement::new(sql, [Param::int(now)])).await
    }

    async fn resync_authenticator(&self, username: &Username, id: &str, to: Advance) -> Result<bool, StoreError> {
        raced(self.driver.execute_all(vec![advance(username, id, to, None)]).await)
    }

    async fn user_bound_secrets(
        &self,
        after: Option<&(Username, String)>,
        limit: u32,
    ) -> Result<Vec<(Username, String, Vec<u8>)>, StoreError> {
        // The first byte is the seal's version (`crate::crypto`).
        let sql = "SELECT username, id, sealed_secret FROM authenticators WHERE substr(sealed_secret, 1, 1) = $1 \
                   AND ($2 IS NULL OR (username, id) > ($2, $3)) ORDER BY username, id LIMIT $4";
        let params = [
            Param::Blob(Some(vec![crate::crypto::USER_BOUND_SEAL])),
            Param::Text(after.map(|(name, _)| name.as_str().to_string())),
            Param::Text(after.map(|(_, id)| id.clone())),
            Param::Int(Some(i64::from(limit))),
        ];
        let rows = self.driver.query(Statement::new(sql, params)).await?;
        rows.into_iter()
            .map(|row| {
                let mut c = Columns(row.into_iter());
                let name = Username::parse(&c.text()?).map_err(StoreError::Corrupt)?;
                Ok((name, c.text()?, c.blob()?))
            })
            .collect()
    }

    async fn reseal_secrets(&self, resealed: &[Resealed]) -> Result<u64, StoreError> {
        Ok(self.driver.execute_all(resealed.iter().map(reseal).collect()).await?.into_iter().sum())
    }

    async fn secrets_all_bound(&self) -> Result<bool, StoreError> {
        let sql = "SELECT 1 FROM meta WHERE key = 'secrets_bound'";
        Ok(!self.driver.query(Statement::new(sql, [])).await?.is_empty())
    }

    async fn record_secrets_all_bound(&self) -> Result<(), StoreError> {
        let sql =
            "INSERT INTO meta (key, value) VALUES ('secrets_bound', 'authenticator') ON CONFLICT (key) DO NOTHING";
        self.driver.execute_all(vec![Statement::new(sql, [])]).await?;
        Ok(())
    }

    async fn accept_code(
        &self,
        username: &Username,
        id: &str,
        to: Advance,
        retires: Option<&str>,
        expected: LockState,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let Some(retired) = retires else {
            let write = guarded_use(username, id, to, expected, now, D::LOCK_ROWS_READ);
            return raced(self.driver.execute_all(vec![write]).await);
        };
        let retire = "DELETE FROM authenticators WHERE username = $1 AND id = $2";
        let writes = vec![
            lock_guard(username, expected),
            Statement::new(retire, [Param::user(username), Param::text(retired)]),
            // Last: if the guard moved (another request accepted this code first, or
            // confirmed this authenticator), nothing of it is written.
            advance(username, id, to, Some(now)),
        ];
        raced(self.driver.execute_all(writes).await)
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
        Ok(self.driver.execute(swap_sent_codes(username, expected_sent_at, new)).await? == 1)
    }

    async fn swap_sent_codes_queueing(
        &self,
        username: &Username,
        expected_sent_at: Option<UnixTime>,
        new: &SentCodes,
        jobs: &[DeliveryJob],
        now: UnixTime,
        lease_until: UnixTime,
    ) -> Result<bool, StoreError> {
        // Claimed at once by the request that queues it, which makes the first attempt
        // itself: no worker takes the job until that attempt is recorded or, should the
        // process die first, its lease is over.
        let insert = "INSERT INTO deliveries (id, username, channel, recipient, code_hash, sealed_code, expires_at, \
                      state, next_attempt_at, created_at, lease_until, attempts) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $10, $8, $9, $11)";
        let mut writes = vec![swap_sent_codes(username, expected_sent_at, new).must_change()];
        writes.extend(jobs.iter().map(|job| {
            let params = vec![
                Param::text(&job.id),
                Param::user(&job.username),
                Param::text(job.channel.as_str()),
                Param::text(&job.recipient),
                Param::Blob(Some(job.code_hash.clone())),
                Param::Blob(job.sealed_code.clone()),
                Param::int(job.expires_at),
                Param::int(now),
                Param::Int(job.leased.then_some(to_i64(lease_until))),
                Param::int(job.due_at),
                Param::int(u64::from(job.attempts)),
            ];
            Statement::new(insert, params).must_change()
        }));
        raced(self.driver.execute_all(writes).await)
    }

    async fn claim_delivery(
        &self,
        id: &str,
        now: UnixTime,
        lease_until: UnixTime,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        let claim = "UPDATE deliveries SET lease_until = $3, attempts = attempts + 1 WHERE id = $1 \
                     AND state = 'queued' AND (lease_until IS NULL OR lease_until <= $2)";
        let claimed = Statement::new(claim, [Param::text(id), Param::int(now), Param::int(lease_until)]);
        if self.driver.execute(claimed).await? == 0 {
            return Ok(None);
        }
        let read = "SELECT id, username, channel, recipient, code_hash, sealed_code, expires_at, attempts, created_at \
                    FROM deliveries WHERE id = $1";
        let Some(row) = self.driver.query(Statement::new(read, [Param::text(id)])).await?.pop() else {
            return Ok(None);
        };
        let mut c = Columns(row.into_iter());
        let corrupt = |what: &str| StoreError::Corrupt(format!("delivery {what}"));
        Ok(Some(DeliveryJob {
            id: c.text()?,
            username: Username::parse(&c.text()?).map_err(|_| corrupt("username"))?,
            channel: Channel::parse(&c.text()?).map_err(|_| corrupt("channel"))?,
            recipient: c.text()?,
            code_hash: c.blob()?,
            sealed_code: c.opt_blob()?,
            expires_at: to_u64(c.int()?),
            attempts: u32::try_from(c.int()?).unwrap_or(u32::MAX),
            created_at: to_u64(c.int()?),
            due_at: now,
            leased: true,
        }))
    }

    async fn due_deliveries(&self, now: UnixTime, limit: u32) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM deliveries WHERE state = 'queued' AND next_attempt_at <= $1 \
                   AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2";
        let rows =
            self.driver.query(Statement::new(sql, [Param::int(now), Param::Int(Some(i64::from(limit)))])).await?;
        rows.into_iter().map(|row| Columns(row.into_iter()).text()).collect()
    }

    async fn finish_delivery(
        &self,
        id: &str,
        end: JobEnd,
        now: UnixTime,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE deliveries SET state = $2, sealed_code = NULL, lease_until = NULL, finished_at = $3, \
                   last_error = $4 WHERE id = $1";
        let params =
            [Param::text(id), Param::text(end.as_str()), Param::int(now), Param::Text(error.map(str::to_string))];
        self.driver.execute(Statement::new(sql, params)).await.map(|_| ())
    }

    async fn retry_delivery(&self, id: &str, next_attempt_at: UnixTime, error: &str) -> Result<(), StoreError> {
        let sql = "UPDATE deliveries SET lease_until = NULL, next_attempt_at = $2, last_error = $3 \
                   WHERE id = $1 AND state = 'queued'";
        let params = [Param::text(id), Param::int(next_attempt_at), Param::text(error)];
        self.driver.execute(Statement::new(sql, params)).await.map(|_| ())
    }

    async fn code_delivered(&self, username: &Username, code_hash: &[u8]) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM deliveries WHERE username = $1 AND code_hash = $2 AND state = 'delivered'";
        let params = [Param::user(username), Param::Blob(Some(code_hash.to_vec()))];
        Ok(matches!(single(self.driver.query(Statement::new(sql, params)).await?), Some(Value::Int(n)) if n > 0))
    }

    async fn hurry_deliveries(&self, username: &Username, code_hash: &[u8], now: UnixTime) -> Result<(), StoreError> {
        let sql = "UPDATE deliveries SET next_attempt_at = $3 WHERE username = $1 AND code_hash = $2 \
                   AND state = 'queued' AND next_attempt_at > $3";
        let params = [Param::user(username), Param::Blob(Some(code_hash.to_vec())), Param::int(now)];
        self.driver.execute(Statement::new(sql, params)).await.map(|_| ())
    }

    async fn mark_telegram_blocked(&self, username: &Username, chat: &str, now: UnixTime) -> Result<(), StoreError> {
        let sql = "UPDATE users SET telegram_blocked_at = $3 WHERE username = $1 AND telegram_id = $2";
        self.driver.execute(Statement::new(sql, [Param::user(username), Param::text(chat), Param::int(now)])).await?;
        Ok(())
    }

    async fn move_telegram_chat(
        &self,
        username: &Username,
        from: &str,
        to: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET telegram_id = $3, updated_at = $4 WHERE username = $1 AND telegram_id = $2 \
                   AND source <> 'env'";
        let params = [Param::user(username), Param::text(from), Param::text(to), Param::int(now)];
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn insert_telegram_link(
        &self,
        username: &Username,
        token_hash: &[u8],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let insert =
            "INSERT INTO telegram_links (token_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        let writes = vec![
            user_exists(username, now),
            Statement::new("DELETE FROM telegram_links WHERE expires_at <= $1", [Param::int(now)]),
            Statement::new(
                "DELETE FROM telegram_links WHERE username = $1 AND used_at IS NULL",
                [Param::user(username)],
            ),
            Statement::new(
                insert,
                [
                    Param::Blob(Some(token_hash.to_vec())),
                    Param::user(username),
                    Param::int(now),
                    Param::int(expires_at),
                ],
            )
            .must_change(),
        ];
        raced(self.driver.execute_all(writes).await)
    }

    async fn use_telegram_link(
        &self,
        token_hash: &[u8],
        chat: &str,
        now: UnixTime,
    ) -> Result<Option<Username>, StoreError> {
        let hash = || Param::Blob(Some(token_hash.to_vec()));
        let claim = "UPDATE telegram_links SET used_at = $2, chat = $3 WHERE token_hash = $1 AND used_at IS NULL \
                     AND expires_at > $2";
        let bind = "UPDATE users SET telegram_id = $2, telegram_blocked_at = NULL, updated_at = $3 WHERE username = \
                    (SELECT username FROM telegram_links WHERE token_hash = $1) AND source <> 'env'";
        let writes = vec![
            Statement::new(claim, [hash(), Param::int(now), Param::text(chat)]).must_change(),
            Statement::new(bind, [hash(), Param::text(chat), Param::int(now)]).must_change(),
        ];
        if !raced(self.driver.execute_all(writes).await)? {
            return Ok(None);
        }
        let rows =
            self.driver.query(Statement::new("SELECT username FROM telegram_links WHERE token_hash = $1", [hash()]));
        match single(rows.await?) {
            Some(Value::Text(name)) => Username::parse(&name).map(Some).map_err(StoreError::Corrupt),
            _ => Err(StoreError::Corrupt("a used link's user".into())),
        }
    }

    async fn set_channel_order(
        &self,
        username: &Username,
        order: Option<&[Channel]>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let list = order.map(|o| o.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","));
        let sql = "UPDATE users SET channels = $2, updated_at = $3 WHERE username = $1";
        let params = [Param::user(username), Param::Text(list), Param::int(now)];
        Ok(self.driver.execute(Statement::new(sql, params)).await? == 1)
    }

    async fn queued_deliveries(&self) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) FROM deliveries WHERE state = 'queued'";
        match single(self.driver.query(Statement::new(sql, [])).await?) {
            Some(Value::Int(n)) => Ok(to_u64(n)),
            _ => Err(StoreError::Corrupt("the queue's length".into())),
        }
    }

    async fn forget_finished_deliveries(
        &self,
        before: UnixTime,
        ids_below: &str,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // A job that ended before `before` was made before it: the key's range bounds the
        // search to the old jobs (a full scan, each hour on the writer, took 60 ms with
        // 724,000 recent jobs), and id order is the order they were made in.
        let sql = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE id < $3 \
                   AND state <> 'queued' AND finished_at < $1 ORDER BY id LIMIT $2)";
        let params = [Param::int(before), Param::int(u64::from(limit)), Param::text(ids_below)];
        self.driver.execute(Statement::new(sql, params)).await
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

    async fn replace_recovery_codes(
        &self,
        username: &Username,
        hashes: &[Vec<u8>],
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let insert = "INSERT INTO recovery_codes (username, code_hash, created_at) VALUES ($1, $2, $3)";
        let mut writes = vec![
            user_exists(username, now),
            Statement::new("DELETE FROM recovery_codes WHERE username = $1", [Param::user(username)]),
        ];
        writes.extend(hashes.iter().map(|hash| {
            Statement::new(insert, [Param::user(username), Param::Blob(Some(hash.clone())), Param::int(now)])
                .must_change()
        }));
        raced(self.driver.execute_all(writes).await)
    }

    async fn recovery_codes(&self, username: &Username) -> Result<Vec<RecoveryCodeRecord>, StoreError> {
        let sql = "SELECT code_hash, used_at FROM recovery_codes WHERE username = $1";
        let rows = self.driver.query(Statement::new(sql, [Param::user(username)])).await?;
        rows.into_iter()
            .map(|row| {
                let mut c = Columns(row.into_iter());
                Ok(RecoveryCodeRecord { hash: c.blob()?, used_at: c.opt_int()?.map(to_u64) })
            })
            .collect()
    }

    async fn use_recovery_code(
        &self,
        username: &Username,
        code_hash: &[u8],
        now: UnixTime,
        expected: LockState,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE recovery_codes SET used_at = $3 WHERE username = $1 AND code_hash = $2 AND used_at IS NULL";
        let params = [Param::user(username), Param::Blob(Some(code_hash.to_vec())), Param::int(now)];
        let writes = vec![lock_guard(username, expected), Statement::new(sql, params).must_change()];
        raced(self.driver.execute_all(writes).await)
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

/// Replaces the sent-code state if the newest code's `sent_at` is still `expected_sent_at`.
fn swap_sent_codes(username: &Username, expected_sent_at: Option<UnixTime>, new: &SentCodes) -> Statement {
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
    Statement::new(sql, params)
}

/// A lockout state as three parameters, in the order of its columns.
fn lock_params(state: LockState) -> [Param; 3] {
    [
        Param::Int(Some(i64::from(state.failed_attempts))),
        Param::Int(state.locked_until.map(to_i64)),
        Param::Int(state.last_failed_at.map(to_i64)),
    ]
}
