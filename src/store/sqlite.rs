//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL`: a commit is on disk before the request is answered, so an accepted
//! code stays used (and a lockout stays in force) across a crash or power loss.
//!
//! Group commit: SQLite has one writer at a time and each commit costs an fsync, which caps
//! a naive design at about one write per millisecond. So the writes of the hot path go to
//! one writer thread, which takes every write waiting (up to [`MAX_BATCH`]), runs them in
//! order inside one `BEGIN IMMEDIATE ... COMMIT`, and only then answers each caller. Every
//! statement keeps its own conditional semantics and rows-affected count; the batch only
//! shares the fsync. Nothing is answered before it is on disk.
//! Several processes (server, CLI) may open the file at once; `busy_timeout` makes writers
//! wait for each other instead of failing with "database is locked", and every write is a
//! single statement, so no transaction ever has to upgrade a read lock.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sql::{RawUser, Statement, Value, migrations, select_users, to_i64, to_u64};
use super::{KeyCheck, PutCode, Store, StoreError, UserProfile, UserRecord};
use crate::clock::UnixTime;
use crate::domain::Username;
use crate::lockout::LockState;

/// Writes per group commit, at most.
pub const MAX_BATCH: usize = 256;
/// How long a batch may stay open for more writes to join it, at most. Each commit costs
/// the writer an fsync and a few thread switches whatever its size, so at a login storm a
/// batch that waits is two to three times larger and every write costs less CPU
/// (docs/BENCHMARKS.md, finding 10). Like PostgreSQL's `commit_delay` and
/// `commit_siblings`, it only waits when it pays:
/// - the last batch had at least [`BUSY_BATCH`] writes (under light load a write commits
///   at once), and
/// - at least [`SPARE_CONNECTIONS`] other connections are open, whose requests keep the
///   CPU busy meanwhile. With fewer, waiting would gather every client into one batch,
///   and then nothing would be left to do while its fsync runs.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(1);
const BUSY_BATCH: usize = 8;
const SPARE_CONNECTIONS: usize = 32;
/// While a batch is open, the writer looks again this often.
const COMMIT_SLICE: Duration = Duration::from_micros(250);
/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache per hot-path connection: the OS caches the file too, and RSS stays small.
const CACHE_KIB: i64 = 1024;

/// What the writer thread is asked to do, with where to send the answer.
type WriteJob = (Job, oneshot::Sender<Result<u64, StoreError>>);

enum Job {
    Write(Statement),
    /// Answered once everything queued before it is committed; then the thread ends.
    Close,
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// sqlx, for migrations and the rare calls (admin, CLI, start-up).
    pool: SqlitePool,
    hot: Arc<HotPath>,
}

/// The calls every request makes, on rusqlite rather than sqlx. sqlx-sqlite runs each
/// connection on its own thread and hands every call over a channel: two thread switches
/// per statement, which the profile in docs/BENCHMARKS.md showed to cost more than the
/// rest of a `/verify`. Here a read runs on the calling thread (a primary-key lookup in a
/// cached page takes microseconds; WAL readers never wait for the writer), and writes
/// cross to the writer thread once per batch.
struct HotPath {
    /// `None` once closed.
    readers: Vec<Mutex<Option<Connection>>>,
    next_reader: AtomicUsize,
    writer: mpsc::Sender<WriteJob>,
    closed: AtomicBool,
    /// The server's open connections, once it is serving (see [`COMMIT_WINDOW`]).
    open_connections: Arc<OnceLock<Arc<AtomicUsize>>>,
}

impl std::fmt::Debug for HotPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotPath").field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::files::ensure_private_dir(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrations!("sqlite").run(&pool).await?;
        #[cfg(unix)]
        restrict_permissions(path);

        let path = path.to_path_buf();
        let hot = tokio::task::spawn_blocking(move || HotPath::open(path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the database: {e}")))??;
        Ok(Self { pool, hot: Arc::new(hot) })
    }

    /// Queues a write for the next group commit and waits until it is committed.
    async fn execute_write(&self, write: Statement) -> Result<u64, StoreError> {
        self.hot.check_open()?;
        self.hot.submit(Job::Write(write)).await
    }

    async fn read_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = select_users!("WHERE username = $1");
        let raw = self.hot.read(|conn| {
            let mut statement = conn.prepare_cached(SQL)?;
            let mut rows = statement.query([username.as_str()])?;
            let Some(row) = rows.next()? else { return Ok(None) };
            Ok(Some(RawUser {
                username: row.get(0)?,
                sealed_secret: row.get(1)?,
                algorithm: row.get(2)?,
                digits: row.get(3)?,
                period: row.get(4)?,
                email: row.get(5)?,
                telegram_id: row.get(6)?,
                source: row.get(7)?,
                last_step: row.get(8)?,
                failed_attempts: row.get(9)?,
                locked_until: row.get(10)?,
                created_at: row.get(11)?,
                updated_at: row.get(12)?,
                secret_set_at: row.get(13)?,
                sent_code_hash: row.get(14)?,
                sent_code_expires_at: row.get(15)?,
            }))
        })?;
        raw.map(RawUser::into_record).transpose()
    }

    /// The readers and the writer are always open; idle: the readers not reading now.
    fn connection_stats(&self) -> (u32, u32) {
        let idle = self.hot.readers.iter().filter(|r| r.try_lock().is_ok_and(|conn| conn.is_some())).count();
        let open = self.hot.readers.len() + 1;
        (u32::try_from(open).unwrap_or(u32::MAX), u32::try_from(idle).unwrap_or(u32::MAX))
    }

    /// Lets the writer see how busy the server is (see [`COMMIT_WINDOW`]).
    fn watch_open_connections(&self, open_connections: Arc<AtomicUsize>) {
        let _ = self.hot.open_connections.set(open_connections);
    }

    async fn ping_database(&self) -> Result<(), StoreError> {
        self.hot.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Refuses new calls, waits until every queued write is committed, then closes every
    /// connection: the last one to close checkpoints the WAL into the database file, so a
    /// stopped server leaves one self-contained file behind.
    async fn close_database(&self) {
        if !self.hot.closed.swap(true, Ordering::AcqRel) {
            let _ = self.hot.submit(Job::Close).await;
            for reader in &self.hot.readers {
                drop(reader.lock().unwrap_or_else(PoisonError::into_inner).take());
            }
        }
        self.pool.close().await;
    }
}

impl HotPath {
    fn open(path: PathBuf) -> Result<Self, StoreError> {
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get()).max(4);
        let readers = (0..readers)
            .map(|_| {
                let conn = open_connection(&path)?;
                // Reads only: a bug that tried to write here would fail, not bypass the batch.
                conn.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(Some(conn)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let conn = open_connection(&path)?;
        let (writer, jobs) = mpsc::channel(4 * MAX_BATCH);
        let open_connections = Arc::new(OnceLock::new());
        let load = open_connections.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || group_commits(conn, jobs, &load))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the database writer: {e}")))?;
        Ok(Self { readers, next_reader: AtomicUsize::new(0), writer, closed: AtomicBool::new(false), open_connections })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the database is closed".into()));
        }
        Ok(())
    }

    /// Runs `read` on a free reader connection, on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.check_open()?;
        let n = self.readers.len();
        let first = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let free = (0..n).find_map(|i| self.readers[(first + i) % n].try_lock().ok());
        let conn = match free {
            Some(conn) => conn,
            // All busy (more threads than readers): wait for one.
            None => self.readers[first % n].lock().unwrap_or_else(PoisonError::into_inner),
        };
        let conn = conn.as_ref().ok_or_else(|| StoreError::Unavailable("the database is closed".into()))?;
        Ok(read(conn)?)
    }

    async fn submit(&self, job: Job) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        self.writer.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A connection with the settings every connection needs (they are per connection).
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// The writer thread: one transaction, one fsync, per batch of waiting writes. It ends
/// when asked to close or when the last store handle is dropped.
fn group_commits(conn: Connection, mut jobs: mpsc::Receiver<WriteJob>, open_connections: &OnceLock<Arc<AtomicUsize>>) {
    let mut closing = false;
    let mut last_batch = 0;
    while !closing && let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        take_waiting(&mut jobs, &mut batch);
        if last_batch >= BUSY_BATCH {
            let opened = Instant::now();
            let others_busy = |batched: usize| {
                open_connections
                    .get()
                    .is_some_and(|open| open.load(Ordering::Relaxed).saturating_sub(batched) >= SPARE_CONNECTIONS)
            };
            while batch.len() < MAX_BATCH && opened.elapsed() < COMMIT_WINDOW && others_busy(batch.len() + jobs.len()) {
                #[allow(clippy::disallowed_methods, reason = "the writer's own thread, not the runtime's")]
                std::thread::sleep(COMMIT_SLICE);
                take_waiting(&mut jobs, &mut batch);
            }
        }
        last_batch = batch.len();
        let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        closing = writes.iter().any(|job| matches!(job, Job::Close));
        match commit_batch(&conn, &writes) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // No transaction (the disk failed, the file is gone): nothing was written.
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// Moves the writes already queued into `batch` (up to [`MAX_BATCH`]); returns how many.
fn take_waiting(jobs: &mut mpsc::Receiver<WriteJob>, batch: &mut Vec<WriteJob>) -> usize {
    let before = batch.len();
    while batch.len() < MAX_BATCH
        && let Ok(job) = jobs.try_recv()
    {
        batch.push(job);
    }
    batch.len() - before
}

/// Runs the writes in order in one transaction. A failing statement fails alone (SQLite
/// keeps the transaction); a failing commit fails them all, and nothing was written.
fn commit_batch(conn: &Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Result<u64, StoreError>>> {
    // Cached like every other statement: `execute_batch` would parse them on every batch.
    conn.prepare_cached("BEGIN IMMEDIATE")?.raw_execute()?;
    let results = jobs
        .iter()
        .map(|job| match job {
            Job::Write(write) => execute(conn, write),
            Job::Close => Ok(0),
        })
        .collect();
    if let Err(e) = conn.prepare_cached("COMMIT").and_then(|mut commit| commit.raw_execute()) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(results)
}

fn execute(conn: &Connection, write: &Statement) -> Result<u64, StoreError> {
    let mut statement = conn.prepare_cached(write.sql)?;
    bind(&mut statement, write)?;
    Ok(u64::try_from(statement.raw_execute()?).unwrap_or(u64::MAX))
}

/// Binds `$1`, `$2`, ... To SQLite `$n` is a named parameter, numbered by first appearance,
/// so each is bound by its name.
fn bind(statement: &mut rusqlite::Statement<'_>, write: &Statement) -> rusqlite::Result<()> {
    const NAMES: [&str; 8] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8"];
    for (i, value) in write.params.iter().enumerate() {
        let name = NAMES.get(i).ok_or_else(|| rusqlite::Error::InvalidParameterName(format!("${}", i + 1)))?;
        let index =
            statement.parameter_index(name)?.ok_or_else(|| rusqlite::Error::InvalidParameterName((*name).into()))?;
        match value {
            Value::Null => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
            Value::Int(n) => statement.raw_bind_parameter(index, n)?,
            Value::Text(t) => statement.raw_bind_parameter(index, t.as_str())?,
            Value::Blob(b) => statement.raw_bind_parameter(index, b.as_slice())?,
        }
    }
    Ok(())
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

super::sql::sql_store!(SqliteStore, sqlx::Sqlite);
