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
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};
use tokio::time::Instant;

use super::StoreError;
use super::sql::{Driver, Param, SqlStore, Statement, Value, migrator};

/// The PostgreSQL store.
pub(crate) type PgStore = SqlStore<Postgres>;

/// PostgreSQL's connections.
pub struct Postgres {
    /// For migrations, and for opening the connections statements run on.
    pool: PgPool,
    /// Where reads run (and writes, without group writers).
    hot: Arc<HotConnections>,
    /// `None` with a single connection: writes then run on it as they come.
    writers: Option<GroupWriters>,
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

/// Writes committed in groups, as on SQLite: each writer task has a connection of its own and
/// runs every write waiting when it is free in one transaction, so one commit (one WAL flush,
/// one commit record) serves them all. PostgreSQL already shares WAL flushes between
/// concurrent commits, but each commit still costs its backend; pgbench on the benchmark's
/// cluster (a wrong code's read and conditional write, 16 clients, `synchronous_commit`
/// on): 8,600 wrong codes a second with a transaction per write, 12,900 with the writes in
/// transactions of 8 (docs/BENCHMARKS.md, finding 32). Every statement keeps its own
/// condition, so what must hold across instances still holds.
struct GroupWriters {
    jobs: mpsc::Sender<WriteJob>,
    count: usize,
    /// Writers with a connection open, and those in a batch: for `connection_stats`.
    open: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
}

enum WriteJob {
    /// Statements that succeed or fail together.
    Write(Vec<Statement>, oneshot::Sender<Result<Vec<u64>, StoreError>>),
    /// Answered when the writer that takes it has committed its batch and closed its
    /// connection; it then ends.
    Close(oneshot::Sender<()>),
}

/// Writes per transaction, at most.
const MAX_BATCH: usize = 64;
/// Writes waiting, at most, before a request waits to queue its own.
const QUEUE: usize = 4096;
/// A writer's connection unused for longer is pinged before its next batch.
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl GroupWriters {
    /// A quarter of the connections write (one to four); the rest read. More writers let
    /// more batches wait on their commits at once (wrong codes at 256 connections, a
    /// throw-away build with the writers beside 16 readers: 5.2-5.7k req/s with one writer,
    /// 9.1k with two, 9.9k with four; docs/BENCHMARKS.md, finding 32).
    fn count_for(connections: u32) -> usize {
        if connections < 2 { 0 } else { usize::try_from(connections / 4).unwrap_or(4).clamp(1, 4) }
    }

    fn start(pool: &PgPool, count: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(AsyncMutex::new(queue));
        let (open, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for _ in 0..count {
            let writer = GroupWriter {
                pool: pool.clone(),
                conn: None,
                used_at: Instant::now(),
                open: open.clone(),
                busy: busy.clone(),
            };
            tokio::spawn(writer.run(queue.clone()));
        }
        Self { jobs, count, open, busy }
    }

    async fn submit(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let stopped = || StoreError::Unavailable("the database writers have stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs.send(WriteJob::Write(statements, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Waits until every write queued before is committed and every writer has closed its
    /// connection.
    async fn close(&self) {
        let mut closed = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            let (reply, answer) = oneshot::channel();
            if self.jobs.send(WriteJob::Close(reply)).await.is_ok() {
                closed.push(answer);
            }
        }
        for answer in closed {
            let _ = answer.await;
        }
    }
}

struct GroupWriter {
    pool: PgPool,
    conn: Option<PgConnection>,
    /// When `conn` last answered.
    used_at: Instant,
    open: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
}

type Answer = oneshot::Sender<Result<Vec<u64>, StoreError>>;

impl GroupWriter {
    /// Takes every write waiting (one writer takes at a time), commits them together, and
    /// answers each; until a `Close` or the store is gone.
    async fn run(mut self, queue: Arc<AsyncMutex<mpsc::Receiver<WriteJob>>>) {
        loop {
            let mut batch = Vec::new();
            let mut close = None;
            {
                let mut queue = queue.lock().await;
                let Some(first) = queue.recv().await else { break };
                let mut next = Some(first);
                while let Some(job) = next {
                    match job {
                        WriteJob::Write(statements, answer) => batch.push((statements, answer)),
                        WriteJob::Close(answer) => {
                            close = Some(answer);
                            break;
                        }
                    }
                    next = if batch.len() < MAX_BATCH { queue.try_recv().ok() } else { None };
                }
            }
            if !batch.is_empty() {
                self.busy.fetch_add(1, Ordering::Relaxed);
                self.commit(batch).await;
                self.busy.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(answer) = close {
                if let Some(conn) = self.conn.take() {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    let _ = conn.close().await;
                }
                let _ = answer.send(());
                return;
            }
        }
        if self.conn.take().is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn commit(&mut self, mut batch: Vec<(Vec<Statement>, Answer)>) {
        // A connection that has waited may have been closed by the server meanwhile (a
        // restart, a proxy's idle timeout): asked first, so that no write fails for it. Under
        // load, batches follow each other and this costs nothing.
        if self.used_at.elapsed() > IDLE_CHECK
            && let Some(conn) = &mut self.conn
            && conn.ping().await.is_err()
        {
            self.conn = None;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            empty => match self.pool.acquire().await {
                Ok(conn) => {
                    self.open.fetch_add(1, Ordering::Relaxed);
                    empty.insert(conn.detach())
                }
                Err(e) => return fail_all(batch, &e),
            },
        };
        // In one order, so that two batches (of this process or another) that change the same
        // rows lock them in the same order and cannot deadlock: the hot path's writes name
        // their user first.
        batch.sort_by(|(a, _), (b, _)| first_param(a).cmp(&first_param(b)));
        let mut broken = false;
        let outcome = if let [(statements, _)] = batch.as_slice() {
            match run_alone(conn, statements).await {
                // The statement's own error (a constraint, a deadlock): the connection is fine.
                Err(e @ sqlx::Error::Database(_)) => Ok(vec![Err(e.into())]),
                outcome => outcome.map(|result| vec![result]),
            }
        } else {
            match run_together(conn, &batch).await {
                // A statement failed, and with it the transaction: nothing of the batch was
                // written. Each write again on its own, so that only the failing one fails.
                Err(sqlx::Error::Database(_)) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    let mut results = Vec::with_capacity(batch.len());
                    for (statements, _) in &batch {
                        results.push(match run_alone(conn, statements).await {
                            Ok(result) => result,
                            Err(e @ sqlx::Error::Database(_)) => Err(e.into()),
                            Err(e) => {
                                broken = true;
                                Err(StoreError::Unavailable(e.to_string()))
                            }
                        });
                    }
                    Ok(results)
                }
                outcome => outcome,
            }
        };
        self.used_at = Instant::now();
        // The connection broke while the batch ran again write by write: a fresh one next time.
        if broken && self.conn.take().is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        match outcome {
            Ok(results) => {
                for ((_, answer), result) in batch.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Err(e) => {
                // Broken or out of step with the server: open a fresh one next time.
                if self.conn.take().is_some() {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                }
                fail_all(batch, &e);
            }
        }
    }
}

/// Answers every write of a batch that could not run: the database is out of reach.
fn fail_all(batch: Vec<(Vec<Statement>, Answer)>, e: &sqlx::Error) {
    for (_, answer) in batch {
        let _ = answer.send(Err(StoreError::Unavailable(e.to_string())));
    }
}

/// What a batch is ordered by: its first statement's first parameter.
fn first_param(statements: &[Statement]) -> Option<&Param> {
    statements.first().and_then(|s| s.params.first())
}

/// One write in a transaction of its own (a single statement: as it is). The outer error is
/// the connection's or the database's; the inner one the write's own outcome.
async fn run_alone(
    conn: &mut PgConnection,
    statements: &[Statement],
) -> Result<Result<Vec<u64>, StoreError>, sqlx::Error> {
    if let [statement] = statements {
        let rows = bound(statement.clone()).execute(&mut *conn).await?.rows_affected();
        return Ok(statement.changed(rows).map(|rows| vec![rows]));
    }
    let mut tx = conn.begin().await?;
    let mut changed = Vec::with_capacity(statements.len());
    for statement in statements {
        let rows = bound(statement.clone()).execute(&mut *tx).await?.rows_affected();
        if statement.must_change && rows == 0 {
            tx.rollback().await?;
            return Ok(Err(StoreError::Conflict));
        }
        changed.push(rows);
    }
    tx.commit().await?;
    Ok(Ok(changed))
}

/// Every write of the batch in one transaction; a write of several statements in a
/// savepoint, so that one whose condition no longer holds is undone alone.
async fn run_together(
    conn: &mut PgConnection,
    batch: &[(Vec<Statement>, Answer)],
) -> Result<Vec<Result<Vec<u64>, StoreError>>, sqlx::Error> {
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let mut results = Vec::with_capacity(batch.len());
    for (statements, _) in batch {
        if let [statement] = statements.as_slice() {
            let rows = bound(statement.clone()).execute(&mut *conn).await?.rows_affected();
            results.push(statement.changed(rows).map(|rows| vec![rows]));
            continue;
        }
        sqlx::query("SAVEPOINT batch_write").execute(&mut *conn).await?;
        let mut changed = Vec::with_capacity(statements.len());
        for statement in statements {
            let rows = bound(statement.clone()).execute(&mut *conn).await?.rows_affected();
            if statement.must_change && rows == 0 {
                break;
            }
            changed.push(rows);
        }
        if changed.len() < statements.len() {
            sqlx::query("ROLLBACK TO SAVEPOINT batch_write").execute(&mut *conn).await?;
            results.push(Err(StoreError::Conflict));
        } else {
            results.push(Ok(changed));
        }
        sqlx::query("RELEASE SAVEPOINT batch_write").execute(&mut *conn).await?;
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(results)
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
        let writers = GroupWriters::count_for(max_connections);
        let readers = usize::try_from(max_connections.max(1)).unwrap_or(1) - writers;
        let slots = (0..readers).map(|_| AsyncMutex::new(None)).collect();
        let hot = HotConnections { pool: pool.clone(), slots, next: AtomicUsize::new(0), wait: acquire_timeout };
        let writers = (writers > 0).then(|| GroupWriters::start(&pool, writers));
        Ok(SqlStore::new(Postgres { pool, hot: Arc::new(hot), writers }))
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

impl Postgres {
    /// A write: through the group writers, or (a single connection) on it, on its own.
    async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        match &self.writers {
            Some(writers) => writers.submit(statements).await,
            None => self.hot.run(move |conn| Box::pin(async move { run_alone(conn, &statements).await })).await?,
        }
    }
}

#[async_trait]
impl Driver for Postgres {
    const LOCK_ROWS_READ: bool = true;

    async fn query(&self, statement: Statement) -> Result<Vec<Vec<Value>>, StoreError> {
        self.hot
            .run(move |conn| {
                Box::pin(async move { bound(statement).fetch_all(conn).await?.iter().map(row_values).collect() })
            })
            .await
    }

    async fn execute(&self, statement: Statement) -> Result<u64, StoreError> {
        Ok(self.write(vec![statement]).await?.first().copied().unwrap_or(0))
    }

    async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.write(statements).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.hot.run(|conn| Box::pin(async move { sqlx::query("SELECT 1").execute(conn).await.map(drop) })).await
    }

    async fn close(&self) {
        if let Some(writers) = &self.writers {
            writers.close().await;
        }
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
        if let Some(writers) = &self.writers {
            let (writing, busy) = (writers.open.load(Ordering::Relaxed), writers.busy.load(Ordering::Relaxed));
            let writing = u32::try_from(writing).unwrap_or(u32::MAX);
            open = open.saturating_add(writing);
            idle = idle.saturating_add(writing.saturating_sub(u32::try_from(busy).unwrap_or(u32::MAX)));
        }
        (open, idle)
    }
}
