//! The shared store for several instances: PostgreSQL.
//!
//! Every guarantee that must hold across instances is a single conditional statement, so
//! the database serialises it: two instances accepting the same code race on
//! `UPDATE ... WHERE last_step < $step`, and only one row update wins.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, PgConnection, PgPool, Row, TypeInfo, ValueRef};
use tokio::time::Instant;

use super::StoreError;
use super::sql::{Driver, Param, SqlStore, Statement, Value, migrator};

/// The PostgreSQL store.
pub(crate) type PgStore = SqlStore<Postgres>;

/// PostgreSQL's connections.
pub struct Postgres {
    /// For migrations, and for opening the connections statements run on.
    pool: PgPool,
    hot: Arc<HotConnections>,
}

type BoxedStatement<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// The connections every statement runs on, kept out of the sqlx pool. sqlx pings a
/// connection each time it goes back to its pool (unconditionally, in `return_to_pool`), so
/// through the pool every statement cost two round trips and two backend wake-ups; here it
/// costs one (wrong codes at 256 connections: 5.0k req/s through the pool, 6.9k here).
/// Connections are opened through the pool (its options and timeout) and then detached
/// from it.
struct HotConnections {
    pool: PgPool,
    /// `None`: not open yet, or dropped after a connection-level error.
    slots: Vec<tokio::sync::Mutex<Option<PgConnection>>>,
    next: AtomicUsize,
    /// `DATABASE_TIMEOUT_SECONDS`: the longest wait for a free connection.
    wait: Duration,
}

impl std::fmt::Debug for HotConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotConnections").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

impl HotConnections {
    /// Runs one statement on a free connection, on a task of its own: a request dropped
    /// mid-statement (client gone, timeout) must not leave a half-read connection behind for
    /// the next one, so the statement always runs to its end. (sqlx also drains a reply
    /// left unread before its next statement; the task costs about a microsecond and does
    /// not depend on that.)
    async fn run<T, F>(self: &Arc<Self>, statement: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxedStatement<'c, T> + Send + 'static,
    {
        let hot = self.clone();
        tokio::spawn(async move { hot.run_here(statement).await })
            .await
            .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }

    async fn run_here<T, F>(&self, statement: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxedStatement<'c, T>,
    {
        let mut slot = self.free_slot().await?;
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(self.pool.acquire().await?.detach()),
        };
        let result = statement(conn).await;
        if let Err(e) = &result
            && !matches!(e, sqlx::Error::Database(_))
        {
            // Broken or out of step with the server: open a fresh one next time.
            *slot = None;
        }
        Ok(result?)
    }

    async fn free_slot(&self) -> Result<tokio::sync::MutexGuard<'_, Option<PgConnection>>, StoreError> {
        let n = self.slots.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(free) = (0..n).find_map(|i| self.slots[(first + i) % n].try_lock().ok()) {
            return Ok(free);
        }
        tokio::time::timeout(self.wait, self.slots[first % n].lock())
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))
    }

    async fn close(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.take() {
                let _ = conn.close().await;
            }
        }
    }
}

/// How long start-up keeps trying to reach a PostgreSQL that refuses connections (one
/// started alongside this process may still be starting), whatever the per-request wait.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

impl PgStore {
    /// Connects and applies migrations (sqlx takes an advisory lock, so instances starting
    /// together do not race on the schema). A request waits at most `acquire_timeout` for a
    /// connection: while the database is down, requests fail fast with 503 and connections
    /// are opened again once it is back.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("mfa");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        let deadline = Instant::now() + STARTUP_WAIT.max(acquire_timeout);
        loop {
            match pool.acquire().await.map_err(StoreError::from) {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        migrator(&[
            (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
            (2, "secret_set_at", include_str!("../../migrations/postgres/0002_secret_set_at.sql")),
            (3, "env_source_index", include_str!("../../migrations/postgres/0003_env_source_index.sql")),
            (
                4,
                "fading_lockout_and_sent_codes",
                include_str!("../../migrations/postgres/0004_fading_lockout_and_sent_codes.sql"),
            ),
            (5, "admin_source", include_str!("../../migrations/postgres/0005_admin_source.sql")),
            (6, "authenticators", include_str!("../../migrations/postgres/0006_authenticators.sql")),
            (7, "security_alerts", include_str!("../../migrations/postgres/0007_security_alerts.sql")),
            (8, "delivery_outbox", include_str!("../../migrations/postgres/0008_delivery_outbox.sql")),
            (9, "channel_order", include_str!("../../migrations/postgres/0009_channel_order.sql")),
            (10, "telegram_links", include_str!("../../migrations/postgres/0010_telegram_links.sql")),
        ])
        .run(&pool)
        .await?;
        let slots = (0..max_connections.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        let hot = HotConnections { pool: pool.clone(), slots, next: AtomicUsize::new(0), wait: acquire_timeout };
        Ok(SqlStore::new(Postgres { pool, hot: Arc::new(hot) }))
    }
}

/// The statement with its parameters bound, in order.
fn bound(statement: Statement) -> Query<'static, sqlx::Postgres, PgArguments> {
    let mut query = sqlx::query(statement.sql);
    for param in statement.params {
        query = match param {
            Param::Int(n) => query.bind(n),
            Param::Text(t) => query.bind(t),
            Param::Blob(b) => query.bind(b),
        };
    }
    query
}

/// A row's columns as plain values, by the PostgreSQL type of each.
fn row_values(row: &PgRow) -> Result<Vec<Value>, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let kind = raw.type_info().name().to_string();
            Ok(match kind.as_str() {
                "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
                "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
                "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
                "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(i)?)),
                "TEXT" | "VARCHAR" | "NAME" => Value::Text(row.try_get::<String, _>(i)?),
                "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
                other => return Err(sqlx::Error::Decode(format!("a column of type {other}").into())),
            })
        })
        .collect()
}

#[async_trait]
impl Driver for Postgres {
    async fn query(&self, statement: Statement) -> Result<Vec<Vec<Value>>, StoreError> {
        self.hot
            .run(move |conn| {
                Box::pin(async move { bound(statement).fetch_all(conn).await?.iter().map(row_values).collect() })
            })
            .await
    }

    /// PostgreSQL already shares WAL flushes between concurrent commits: writes run as
    /// they come.
    async fn execute(&self, statement: Statement) -> Result<u64, StoreError> {
        let must_change = statement.must_change;
        let rows = self
            .hot
            .run(move |conn| Box::pin(async move { Ok(bound(statement).execute(conn).await?.rows_affected()) }))
            .await?;
        if must_change && rows == 0 { Err(StoreError::Conflict) } else { Ok(rows) }
    }

    async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.hot
            .run(move |conn| {
                Box::pin(async move {
                    let mut tx = conn.begin().await?;
                    let mut changed = Vec::with_capacity(statements.len());
                    for statement in statements {
                        let must_change = statement.must_change;
                        let rows = bound(statement).execute(&mut *tx).await?.rows_affected();
                        if must_change && rows == 0 {
                            tx.rollback().await?;
                            return Ok(Err(StoreError::Conflict));
                        }
                        changed.push(rows);
                    }
                    tx.commit().await?;
                    Ok(Ok(changed))
                })
            })
            .await?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hot.run(|conn| Box::pin(async move { sqlx::query("SELECT 1").execute(conn).await.map(drop) })).await
    }

    async fn close(&self) {
        self.hot.close().await;
        self.pool.close().await;
    }

    /// Open: the connections open now (one running a statement counts as open); idle: those
    /// open and not running one.
    fn connection_stats(&self) -> (u32, u32) {
        let (mut open, mut idle) = (0u32, 0u32);
        for slot in &self.hot.slots {
            match slot.try_lock() {
                Ok(conn) if conn.is_some() => {
                    open += 1;
                    idle += 1;
                }
                Ok(_) => {}
                Err(_) => open += 1,
            }
        }
        (open, idle)
    }
}
