//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL`: a commit is on disk before the request is answered, so an accepted
//! code stays used (and a lockout stays in force) across a crash or power loss.
//!
//! Group commit: SQLite has one writer at a time and each commit costs an fsync, which caps
//! a naive design at about one write per millisecond. So the writes of the hot path go to
//! one writer task, which takes every write waiting (up to [`MAX_BATCH`]), runs them in
//! order inside one `BEGIN IMMEDIATE ... COMMIT`, and only then answers each caller. Every
//! statement keeps its own conditional semantics and rows-affected count; the batch only
//! shares the fsync. Nothing is answered before it is on disk.
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

/// Writes per group commit, at most.
pub const MAX_BATCH: usize = 256;

type WriteQuery = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;
type WriteJob = (WriteQuery, tokio::sync::oneshot::Sender<Result<u64, StoreError>>);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::mpsc::Sender<WriteJob>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::config::ensure_dir(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
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
        let (writer, jobs) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(group_commits(pool.clone(), jobs));
        Ok(Self { pool, writer })
    }

    /// Queues a write for the next group commit and waits until it is committed.
    async fn execute_write(&self, query: WriteQuery) -> Result<u64, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable("the database writer has stopped".into());
        self.writer.send((query, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// The writer task: one transaction, one fsync, per batch of waiting writes.
async fn group_commits(pool: SqlitePool, mut jobs: tokio::sync::mpsc::Receiver<WriteJob>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (queries, replies): (Vec<WriteQuery>, Vec<_>) = batch.into_iter().unzip();
        match commit_batch(&pool, queries).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // No transaction (the pool is closed, the disk failed): nothing was written.
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// Runs the writes in order in one transaction. A failing statement fails alone (SQLite
/// keeps the transaction); a failing commit fails them all, and nothing was written.
async fn commit_batch(
    pool: &SqlitePool,
    queries: Vec<WriteQuery>,
) -> Result<Vec<Result<u64, StoreError>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut results = Vec::with_capacity(queries.len());
    for query in queries {
        results.push(query.execute(&mut *conn).await.map(|r| r.rows_affected()).map_err(StoreError::from));
    }
    if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e);
    }
    Ok(results)
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
