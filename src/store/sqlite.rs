//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL`: a commit is on disk before the request is answered, so an accepted
//! code stays used (and a lockout stays in force) across a crash or power loss.
//!
//! Group commit: SQLite has one writer at a time and each commit costs an fsync, which caps
//! a naive design at about one write per millisecond. So every write goes to one writer
//! thread, which takes every write waiting (up to [`MAX_BATCH`]), runs them in order inside
//! one `BEGIN IMMEDIATE ... COMMIT`, and only then answers each caller. Every statement
//! keeps its own conditional semantics and rows-affected count; the batch only shares the
//! fsync. Nothing is answered before it is on disk. (Wrong codes: about 1,000 req/s with a
//! commit each, 3,500 with group commit, in bench/run.)
//!
//! Reads run on the calling thread, on one of a few read-only connections, through
//! rusqlite: sqlx-sqlite hands every call to a connection thread and back, two thread
//! switches per statement, which cost more than the rest of a `/verify` (about 40% of the
//! server's CPU in a `perf` profile; `/verify` went from ~15% to 30-46% of the ceiling
//! without them). WAL readers never wait for the writer. sqlx only applies the migrations.
//!
//! Several processes (server, CLI) may open the file at once; `busy_timeout` makes writers
//! wait for each other instead of failing with "database is locked", and every write is a
//! single statement (or one job's statements in a savepoint), so no transaction ever has to
//! upgrade a read lock.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::sql::{Driver, Param, SqlStore, Statement, Value, migrator};

/// Writes per group commit, at most.
pub const MAX_BATCH: usize = 256;
/// How long a batch may stay open for more writes to join it, at most. Each commit costs
/// the writer an fsync and a few thread switches whatever its size, so at a login storm a
/// batch that waits is larger and every write costs less CPU (wrong codes at 256
/// connections: 29.4k req/s without it, 32.1k with it). Like PostgreSQL's
/// `commit_delay` with `commit_siblings`, it only waits when that pays:
/// - the last batch had at least [`BUSY_BATCH`] writes (under light load a write commits
///   at once), and
/// - at least [`SPARE_READS`] more reads than the batch's writes were served since the
///   last commit: requests that are on their way to a write and keep the CPU busy
///   meanwhile. With fewer, every client is already in the batch, and waiting would only
///   leave the CPU idle during its fsync.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(1);
const BUSY_BATCH: usize = 8;
const SPARE_READS: u64 = 32;
/// While a batch is open, the writer looks again this often.
const COMMIT_SLICE: Duration = Duration::from_micros(250);
/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Checkpoints (copying the WAL's pages back into the database file, and an fsync of it)
/// run on their own thread and connection, so that the writer never stalls behind one:
/// after each commit the checkpointer is woken and copies whatever has been committed
/// since its last pass (a busy server's passes are large, an idle one's small). SQLite
/// alone (Python's sqlite3, batches of 256 random updates among 1M users): 19.5k
/// updates/s with the writer checkpointing every 1,000 pages (the default), 43k with a
/// checkpointer beside it. The writer still checkpoints by itself past this many pages,
/// should the checkpointer fall behind, so the WAL stays bounded.
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;
/// The checkpointer's rest after each pass: each pass costs an fsync of the database file,
/// which the writer's fsync of the WAL then waits behind on the disk, and a sort of the
/// WAL's new frames, so under load fewer, larger passes cost less (wrong codes at 32
/// connections: 20.9k req/s resting 10 ms, 21.9k resting 50 ms, no more at 100 ms;
/// docs/BENCHMARKS.md, finding 19).
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);
/// The WAL is cut back to this size after a checkpoint (it would otherwise keep the
/// largest size it ever had).
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;
/// Page cache per connection: the OS caches the file too, and RSS stays small.
const CACHE_KIB: i64 = 1024;

/// A job for the writer thread, with where to send the answer.
type WriteJob = (Job, oneshot::Sender<Result<Vec<u64>, StoreError>>);

enum Job {
    /// Statements that succeed or fail together (one, for the hot path).
    Write(Vec<Statement>),
    /// Answered once everything queued before it is committed; then the thread ends.
    Close,
}

/// The SQLite store.
pub(crate) type SqliteStore = SqlStore<Sqlite>;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "secret_set_at", include_str!("../../migrations/sqlite/0002_secret_set_at.sql")),
    (3, "env_source_index", include_str!("../../migrations/sqlite/0003_env_source_index.sql")),
    (
        4,
        "fading_lockout_and_sent_codes",
        include_str!("../../migrations/sqlite/0004_fading_lockout_and_sent_codes.sql"),
    ),
    (5, "admin_source", include_str!("../../migrations/sqlite/0005_admin_source.sql")),
    (6, "authenticators", include_str!("../../migrations/sqlite/0006_authenticators.sql")),
    (7, "security_alerts", include_str!("../../migrations/sqlite/0007_security_alerts.sql")),
    (8, "delivery_outbox", include_str!("../../migrations/sqlite/0008_delivery_outbox.sql")),
    (9, "channel_order", include_str!("../../migrations/sqlite/0009_channel_order.sql")),
    (10, "telegram_links", include_str!("../../migrations/sqlite/0010_telegram_links.sql")),
];

/// SQLite's connections: read-only readers for the calling threads, one writer thread.
pub struct Sqlite {
    /// `None` once closed.
    readers: Vec<Mutex<Option<Connection>>>,
    next_reader: AtomicUsize,
    /// Reads served so far: the writer's sign of how busy the store is (see
    /// [`COMMIT_WINDOW`]).
    reads: Arc<AtomicU64>,
    writer: mpsc::Sender<WriteJob>,
    closed: AtomicBool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::files::ensure_private_dir(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut migrations = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .connect()
            .await?;
        migrator(MIGRATIONS).run(&mut migrations).await?;
        sqlx::Connection::close(migrations).await?;
        #[cfg(unix)]
        restrict_permissions(path);

        let path = path.to_path_buf();
        let sqlite = tokio::task::spawn_blocking(move || Sqlite::open(path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the database: {e}")))??;
        Ok(SqlStore::new(sqlite))
    }
}

impl Sqlite {
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
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // A database with nothing to migrate opens without a write, even on a read-only
        // volume (when the last process left its WAL behind); every verification would then
        // fail. A write lock taken and released here finds that out at start-up.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        let (writer, jobs) = mpsc::channel(4 * MAX_BATCH);
        let reads = Arc::new(AtomicU64::new(0));
        let served = reads.clone();
        let checkpointer = open_connection(&path)?;
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || checkpoints(&checkpointer, &woken))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the database checkpointer: {e}")))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let close = group_commits(&conn, jobs, &served, &wake);
                // The checkpointer ends first and the writer's connection closes last (it
                // checkpoints what is left and removes the WAL); then `close` is answered.
                drop(wake);
                let _ = checkpointer.join();
                drop(conn);
                if let Some(close) = close {
                    let _ = close.send(Ok(Vec::new()));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the database writer: {e}")))?;
        Ok(Self { readers, next_reader: AtomicUsize::new(0), reads, writer, closed: AtomicBool::new(false) })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the database is closed".into()));
        }
        Ok(())
    }

    /// Runs `read` on a free reader connection, on this thread: the first free one, so
    /// that reads stay on as few connections as there are threads reading at once. Each
    /// commit empties the page cache of every connection that reads after it, which then
    /// reads the B-tree's pages again, so the fewer connections read, the fewer refills
    /// (wrong codes, a million users: 5% more a second than taking them in turn;
    /// docs/BENCHMARKS.md, finding 16).
    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.check_open()?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let free = self.readers.iter().find_map(|reader| reader.try_lock().ok());
        let conn = match free {
            Some(conn) => conn,
            // All busy (more threads than readers): wait for one, in turn.
            None => {
                let next = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
                self.readers[next].lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        let conn = conn.as_ref().ok_or_else(|| StoreError::Unavailable("the database is closed".into()))?;
        Ok(read(conn)?)
    }

    async fn submit(&self, job: Job) -> Result<Vec<u64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        self.writer.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[async_trait]
impl Driver for Sqlite {
    async fn query(&self, statement: Statement) -> Result<Vec<Vec<Value>>, StoreError> {
        self.read(|conn| {
            let mut prepared = conn.prepare_cached(statement.sql)?;
            bind(&mut prepared, &statement.params)?;
            let columns = prepared.column_count();
            let mut rows = prepared.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((0..columns).map(|i| row.get_ref(i).map(value)).collect::<rusqlite::Result<Vec<_>>>()?);
            }
            Ok(out)
        })
    }

    async fn execute(&self, statement: Statement) -> Result<u64, StoreError> {
        self.check_open()?;
        let changed = self.submit(Job::Write(vec![statement])).await?;
        Ok(changed.first().copied().unwrap_or(0))
    }

    async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.check_open()?;
        self.submit(Job::Write(statements)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Refuses new calls, waits until every queued write is committed, then closes every
    /// connection: the last one to close checkpoints the WAL into the database file, so a
    /// stopped server leaves one self-contained file behind.
    async fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.submit(Job::Close).await;
            for reader in &self.readers {
                drop(reader.lock().unwrap_or_else(PoisonError::into_inner).take());
            }
        }
    }

    /// The readers and the writer are always open; idle: the readers not reading now.
    fn connection_stats(&self) -> (u32, u32) {
        let idle = self.readers.iter().filter(|r| r.try_lock().is_ok_and(|conn| conn.is_some())).count();
        let open = self.readers.len() + 1;
        (u32::try_from(open).unwrap_or(u32::MAX), u32::try_from(idle).unwrap_or(u32::MAX))
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        // No column of ours holds a float; read as text, it is refused as corrupt.
        ValueRef::Real(f) => Value::Text(f.to_string()),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
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

/// The writer thread: one transaction, one fsync, per batch of waiting writes, and a wake-up
/// for the checkpointer after each. It ends when asked to close (returning where to answer
/// that, once the connections are closed) or when the last store handle is dropped.
fn group_commits(
    conn: &Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    reads: &AtomicU64,
    checkpointer: &std::sync::mpsc::SyncSender<()>,
) -> Option<oneshot::Sender<Result<Vec<u64>, StoreError>>> {
    let mut closing = None;
    let mut last_batch = 0;
    let mut reads_at_commit = reads.load(Ordering::Relaxed);
    while closing.is_none()
        && let Some(first) = jobs.blocking_recv()
    {
        let mut batch = vec![first];
        take_waiting(&mut jobs, &mut batch);
        if last_batch >= BUSY_BATCH {
            let opened = Instant::now();
            let others_busy = |batched: usize| {
                let since_commit = reads.load(Ordering::Relaxed).saturating_sub(reads_at_commit);
                since_commit.saturating_sub(batched as u64) >= SPARE_READS
            };
            while batch.len() < MAX_BATCH && opened.elapsed() < COMMIT_WINDOW && others_busy(batch.len() + jobs.len()) {
                #[expect(clippy::disallowed_methods, reason = "the writer's own thread, not the runtime's")]
                std::thread::sleep(COMMIT_SLICE);
                take_waiting(&mut jobs, &mut batch);
            }
        }
        last_batch = batch.len();
        let (writes, mut replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        if let Some(at) = writes.iter().position(|job| matches!(job, Job::Close)) {
            closing = Some(replies.remove(at));
        }
        match commit_batch(conn, &writes) {
            Ok(results) => {
                // Full or not, the checkpointer's next pass takes this commit too.
                let _ = checkpointer.try_send(());
                let results = results.into_iter().zip(&writes).filter(|(_, job)| !matches!(job, Job::Close));
                for (reply, (result, _)) in replies.into_iter().zip(results) {
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
        reads_at_commit = reads.load(Ordering::Relaxed);
    }
    closing
}

/// The checkpointer thread: a passive checkpoint (it never waits for a lock, and never
/// blocks the writer or a reader) each time the writer has committed since the last pass.
fn checkpoints(conn: &Connection, woken: &std::sync::mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "database checkpoint failed; the writer will checkpoint instead");
        }
        #[expect(clippy::disallowed_methods, reason = "the checkpointer's own thread, not the runtime's")]
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// Moves the writes already queued into `batch` (up to [`MAX_BATCH`]).
fn take_waiting(jobs: &mut mpsc::Receiver<WriteJob>, batch: &mut Vec<WriteJob>) {
    while batch.len() < MAX_BATCH
        && let Ok(job) = jobs.try_recv()
    {
        batch.push(job);
    }
}

/// Runs the jobs in order in one transaction. A failing job fails alone (its statements
/// are rolled back to its savepoint; SQLite keeps the transaction); a failing commit fails
/// them all, and nothing was written.
fn commit_batch(conn: &Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Result<Vec<u64>, StoreError>>> {
    // Cached like every other statement: `execute_batch` would parse them on every batch.
    conn.prepare_cached("BEGIN IMMEDIATE")?.raw_execute()?;
    let results = jobs
        .iter()
        .map(|job| match job {
            Job::Write(statements) if statements.len() == 1 => statements.iter().map(|s| execute(conn, s)).collect(),
            Job::Write(statements) => in_savepoint(conn, statements),
            Job::Close => Ok(Vec::new()),
        })
        .collect();
    if let Err(e) = conn.prepare_cached("COMMIT").and_then(|mut commit| commit.raw_execute()) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(results)
}

/// Several statements that succeed or fail together inside the batch's transaction.
fn in_savepoint(conn: &Connection, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
    conn.prepare_cached("SAVEPOINT job")?.raw_execute()?;
    let results: Result<Vec<u64>, StoreError> = statements.iter().map(|s| execute(conn, s)).collect();
    let end = if results.is_ok() { "RELEASE job" } else { "ROLLBACK TO job" };
    conn.prepare_cached(end)?.raw_execute()?;
    if results.is_err() {
        conn.prepare_cached("RELEASE job")?.raw_execute()?;
    }
    results
}

fn execute(conn: &Connection, write: &Statement) -> Result<u64, StoreError> {
    let mut statement = conn.prepare_cached(write.sql)?;
    bind(&mut statement, &write.params)?;
    write.changed(u64::try_from(statement.raw_execute()?).unwrap_or(u64::MAX))
}

/// Binds `$1`, `$2`, ... To SQLite `$n` is a named parameter, numbered by first appearance,
/// so each is bound by its name.
fn bind(statement: &mut rusqlite::Statement<'_>, params: &[Param]) -> rusqlite::Result<()> {
    const NAMES: [&str; 16] =
        ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];
    for (i, param) in params.iter().enumerate() {
        let name = NAMES.get(i).ok_or_else(|| rusqlite::Error::InvalidParameterName(format!("${}", i + 1)))?;
        let index =
            statement.parameter_index(name)?.ok_or_else(|| rusqlite::Error::InvalidParameterName((*name).into()))?;
        match param {
            Param::Int(n) => statement.raw_bind_parameter(index, n)?,
            Param::Text(t) => statement.raw_bind_parameter(index, t.as_deref())?,
            Param::Blob(b) => statement.raw_bind_parameter(index, b.as_deref())?,
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
        if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %std::path::Path::new(&p).display(), error = %e, "cannot make the database owner-only");
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row};

    use super::*;

    /// `.cargo/config.toml` compiles the bundled SQLite with the options that keep its page
    /// caches apart and allocated once (docs/BENCHMARKS.md, finding 13); a build without them
    /// still works, about a fifth slower on a wrong code.
    #[test]
    fn sqlite_is_built_with_separate_page_caches_allocated_once() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut options = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = options.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        assert!(options.iter().any(|o| o == "DEFAULT_PCACHE_INITSZ=-1024"), "{options:?}");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }

    /// A database of the previous schema keeps its outstanding code and its failures.
    #[tokio::test]
    async fn migration_4_moves_the_sent_code_into_the_users_row_and_starts_the_fading() {
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        migrator(&MIGRATIONS[..3]).run(&mut db).await.unwrap();
        for sql in [
            "INSERT INTO users (username, sealed_secret, algorithm, digits, period, source, created_at, updated_at, \
             failed_attempts) VALUES ('alice', x'01', 'SHA1', 6, 30, 'cli', 1, 1, 3), \
             ('bob', x'01', 'SHA1', 6, 30, 'cli', 1, 1, 0)",
            "INSERT INTO sent_codes (username, code_hash, sent_at, expires_at) VALUES ('alice', x'abcd', 10, 310)",
        ] {
            sqlx::query(sql).execute(&mut db).await.unwrap();
        }

        migrator(MIGRATIONS).run(&mut db).await.unwrap();

        let rows = sqlx::query(
            "SELECT username, code_hash, code_sent_at, code_expires_at, sealed_code, last_failed_at, failed_attempts \
             FROM users ORDER BY username",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let alice = &rows[0];
        assert_eq!(alice.get::<Vec<u8>, _>(1), [0xab, 0xcd]);
        assert_eq!((alice.get::<i64, _>(2), alice.get::<i64, _>(3)), (10, 310));
        assert_eq!(alice.get::<Option<Vec<u8>>, _>(4), None, "an old code cannot be resent, only replaced");
        assert!(alice.get::<i64, _>(5) > 1_700_000_000, "its failures fade from now");
        assert_eq!(alice.get::<i64, _>(6), 3);
        let bob = &rows[1];
        assert_eq!((bob.get::<Option<Vec<u8>>, _>(1), bob.get::<Option<i64>, _>(5)), (None, None));
        let table: Option<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'sent_codes'")
            .fetch_optional(&mut db)
            .await
            .unwrap();
        assert_eq!(table, None);
    }
}
