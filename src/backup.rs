//! `mfa backup FILE` and `mfa restore FILE`: a consistent copy of a live SQLite database
//! together with what decrypts it, as one tar archive (readable with `tar -tvf` too):
//!
//! | entry | what |
//! |---|---|
//! | `backup.json` | the [`Manifest`]: format, version, schema, time, users, where the keys come from |
//! | `mfa.db` | the database, copied by SQLite's `VACUUM INTO` in one read transaction, so writes of a running server go on and none is half in the copy |
//! | `secret.key` | the key file, when the keys come from it; a `SECRET_KEY` stays in the operator's configuration, and the manifest says the restore needs it |
//!
//! PostgreSQL has its own tools for this (`pg_dump`, docs/operations.md).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{DatabaseConfig, Settings};
use crate::crypto::KeyOrigin;
use crate::files;
use crate::keyring;
use crate::startup::{self, StartupError};
use crate::store::KeyRecord;

/// The archive's layout; a later version that changes it raises this, and a restore of a
/// format it does not know stops.
const FORMAT: u32 = 1;
const MANIFEST: &str = "backup.json";
const DATABASE: &str = "mfa.db";
const KEY_FILE: &str = "secret.key";
/// A manifest or key file larger than this is not ours.
const SMALL_ENTRY: u64 = 64 * 1024;

/// What a backup holds, written first in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The version of mfa that made it.
    pub version: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The last migration the database had.
    pub schema: i64,
    pub users: u64,
    pub keys: KeySource,
}

/// Where the database's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// `SECRET_KEY` (or `FLASK_SECRET_KEY`): not in the backup; a restore needs the same.
    SecretKey,
    /// The key file, which the backup holds.
    KeyFile,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "mfa backup and restore work on a SQLite database, and DATABASE_URL names a PostgreSQL one: use pg_dump \
         and pg_restore (docs/operations.md, \"Backup and restore\")"
    )]
    Postgres,
    #[error("there is no database at {0}: run this where the server runs, or name its data directory with --data-dir")]
    NoDatabase(PathBuf),
    #[error("{0} exists: a backup never replaces a file; name a new one")]
    Exists(PathBuf),
    #[error(
        "{0} exists: restore into a fresh data directory (--data-dir DIR), or move that database and its key away \
         first"
    )]
    Occupied(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path} is not a backup that this mfa can restore: {why}")]
    NotABackup { path: PathBuf, why: String },
    /// A backup that the configured keys do not open.
    #[error("{path} cannot be restored with this configuration: {why}")]
    WrongKeys { path: PathBuf, why: &'static str },
    #[error("{0}")]
    Startup(#[from] StartupError),
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite { path: path.to_path_buf(), source }
}

fn database_path(settings: &Settings) -> Result<PathBuf, BackupError> {
    match &settings.database {
        DatabaseConfig::Sqlite { path } => Ok(path.clone()),
        DatabaseConfig::Postgres { .. } => Err(BackupError::Postgres),
    }
}

/// A file this module is writing, removed unless [`Partial::keep`] is called: a failed
/// backup or restore leaves nothing half-written behind.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn new(path: PathBuf) -> Self {
        Self { path, kept: false }
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `.NAME.WHAT-PID` beside `path`: on the same file system, so the final rename is atomic.
fn beside(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// Writes a backup of the configured SQLite database to `dest`, which must not exist,
/// after checking that the configured key (or key file) opens it. Nothing in the database
/// changes (it is not even migrated: a newer `mfa` backs up an older server's database as
/// it is).
pub async fn backup(settings: &Settings, dest: &Path, now: u64) -> Result<Manifest, BackupError> {
    let database = database_path(settings)?;
    if !database.exists() {
        return Err(BackupError::NoDatabase(database));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let record = key_record(&database)?;
    let master = startup::master_key(settings, &record)?;
    let keys = keyring::check(master, record).await.map_err(|e| startup::keyring_error(settings, e))?;
    let key_file = match keys.origin {
        KeyOrigin::Configured => None,
        KeyOrigin::ExistingFile | KeyOrigin::GeneratedFile => {
            let path = settings.key_file();
            Some(Zeroizing::new(std::fs::read(&path).map_err(io_error(&path))?))
        }
    };
    let check = keys.check_value().to_string();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || write_backup(&database, &dest, key_file, &check, now))
        .await
        .map_err(|e| BackupError::Io { path: PathBuf::from("backup"), source: io::Error::other(e) })?
}

fn write_backup(
    database: &Path,
    dest: &Path,
    key_file: Option<Zeroizing<Vec<u8>>>,
    check: &str,
    now: u64,
) -> Result<Manifest, BackupError> {
    let copy = Partial::new(beside(dest, "db-partial"));
    {
        let live =
            Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(sqlite_error(database))?;
        live.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite_error(database))?;
        let target = copy.path().to_str().ok_or_else(|| BackupError::Io {
            path: copy.path().to_path_buf(),
            source: io::Error::other("the path is not UTF-8"),
        })?;
        live.execute("VACUUM INTO ?1", [target]).map_err(sqlite_error(database))?;
    }
    let (schema, users) = check_copy(copy.path(), Some(check))?;
    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now,
        schema,
        users,
        keys: if key_file.is_some() { KeySource::KeyFile } else { KeySource::SecretKey },
    };

    let archive = Partial::new(beside(dest, "partial"));
    let file = files::create_private(archive.path()).map_err(io_error(archive.path()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let written = (|| -> io::Result<File> {
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        append(&mut tar, MANIFEST, json.len() as u64, now, json.as_slice())?;
        let db = File::open(copy.path())?;
        append(&mut tar, DATABASE, db.metadata()?.len(), now, db)?;
        if let Some(key) = &key_file {
            append(&mut tar, KEY_FILE, key.len() as u64, now, key.as_slice())?;
        }
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    })();
    written.map_err(io_error(dest))?;
    std::fs::rename(archive.path(), dest).map_err(io_error(dest))?;
    archive.keep();
    files::sync_dir(dest.parent().unwrap_or(Path::new("."))).map_err(io_error(dest))?;
    Ok(manifest)
}

/// The `meta` rows that say how the database's keys are made, read without writing.
fn key_record(database: &Path) -> Result<KeyRecord, BackupError> {
    let db = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error(database))?;
    db.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite_error(database))?;
    let row = |key: &str| -> Result<Option<String>, BackupError> {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(sqlite_error(database))
    };
    Ok(KeyRecord { kdf: row("kdf")?, check: row("key_check")? })
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, size: u64, mtime: u64, data: impl Read) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
}

/// That a database copy is whole (and made with the keys `check` names, when given): its
/// schema version and user count.
fn check_copy(path: &Path, check: Option<&str>) -> Result<(i64, u64), BackupError> {
    let not_ours = |why: String| BackupError::NotABackup { path: path.to_path_buf(), why };
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error(path))?;
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(sqlite_error(path))?;
    if integrity != "ok" {
        return Err(not_ours(format!("its database fails SQLite's integrity check: {integrity}")));
    }
    let stored: String = db
        .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0))
        .map_err(|e| not_ours(format!("its database has no key record ({e})")))?;
    if check.is_some_and(|check| check != stored) {
        return Err(not_ours("its keys changed while it was copied; make the backup again".into()));
    }
    let schema: i64 =
        db.query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| r.get(0)).map_err(sqlite_error(path))?;
    let users: i64 = db.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(sqlite_error(path))?;
    Ok((schema, u64::try_from(users).unwrap_or(0)))
}

/// Restores a backup into the configured data directory, which must hold no database (and
/// no other key file), then opens it with the configured keys as the server would; if they
/// do not open it, what was restored is removed again.
pub async fn restore(settings: &Settings, src: &Path) -> Result<Manifest, BackupError> {
    let database = database_path(settings)?;
    let key_path = settings.key_file();
    for occupied in [database.clone(), PathBuf::from(format!("{}-wal", database.display()))] {
        if occupied.exists() {
            return Err(BackupError::Occupied(occupied));
        }
    }
    let (src_path, db_path, key) = (src.to_path_buf(), database.clone(), key_path.clone());
    let (manifest, placed) = tokio::task::spawn_blocking(move || unpack(&src_path, &db_path, &key))
        .await
        .map_err(|e| BackupError::Io { path: src.to_path_buf(), source: io::Error::other(e) })??;
    match startup::open_keys(settings).await {
        Ok((store, _keys)) => {
            store.close().await;
            Ok(manifest)
        }
        Err(e) => {
            let sqlite_files = ["-wal", "-shm"].map(|end| PathBuf::from(format!("{}{end}", database.display())));
            for path in placed.into_iter().chain(sqlite_files) {
                let _ = std::fs::remove_file(path);
            }
            let why = match (&e, manifest.keys) {
                (StartupError::KeyMissing(_), KeySource::SecretKey) => {
                    "its database was made with SECRET_KEY, which a backup does not hold: set the SECRET_KEY it was \
                     made with, then restore"
                }
                (StartupError::KeyMismatch, KeySource::SecretKey) => {
                    "its database was made with another SECRET_KEY than the one set here: set the one it was made \
                     with, then restore"
                }
                (StartupError::KeyMismatch, KeySource::KeyFile) => {
                    "its database was made with the key file it holds, not with SECRET_KEY: unset SECRET_KEY (and \
                     FLASK_SECRET_KEY), then restore"
                }
                _ => return Err(e.into()),
            };
            Err(BackupError::WrongKeys { path: src.to_path_buf(), why })
        }
    }
}

/// Writes the archive's database and key file into place; gives back what was placed.
fn unpack(src: &Path, database: &Path, key_path: &Path) -> Result<(Manifest, Vec<PathBuf>), BackupError> {
    let not_ours = |why: String| BackupError::NotABackup { path: src.to_path_buf(), why };
    let mut archive = tar::Archive::new(File::open(src).map_err(io_error(src))?);
    let mut manifest: Option<Manifest> = None;
    let mut key: Option<Zeroizing<Vec<u8>>> = None;
    let dir = database.parent().unwrap_or(Path::new("."));
    files::ensure_private_dir(dir).map_err(io_error(dir))?;
    let copy = Partial::new(beside(database, "restoring"));
    let mut has_database = false;
    for entry in archive.entries().map_err(|e| not_ours(e.to_string()))? {
        let mut entry = entry.map_err(|e| not_ours(e.to_string()))?;
        let name = entry.path().map_err(|e| not_ours(e.to_string()))?.to_string_lossy().into_owned();
        match name.as_str() {
            MANIFEST if manifest.is_none() => {
                let mut json = Vec::new();
                entry.by_ref().take(SMALL_ENTRY).read_to_end(&mut json).map_err(io_error(src))?;
                let found: Manifest =
                    serde_json::from_slice(&json).map_err(|e| not_ours(format!("its {MANIFEST} is not ours: {e}")))?;
                if found.format > FORMAT {
                    return Err(not_ours(format!(
                        "it was made by mfa {} in backup format {}; this version reads format {FORMAT}: restore with \
                         that version or a later one",
                        found.version, found.format
                    )));
                }
                manifest = Some(found);
            }
            DATABASE if manifest.is_some() && !has_database => {
                let mut out = files::create_private(copy.path()).map_err(io_error(copy.path()))?;
                io::copy(&mut entry, &mut out).map_err(io_error(copy.path()))?;
                out.sync_all().map_err(io_error(copy.path()))?;
                has_database = true;
            }
            KEY_FILE if manifest.is_some() && key.is_none() => {
                let mut bytes = Zeroizing::new(Vec::new());
                entry.by_ref().take(SMALL_ENTRY).read_to_end(&mut bytes).map_err(io_error(src))?;
                key = Some(bytes);
            }
            other => return Err(not_ours(format!("unexpected entry '{other}' (expected {MANIFEST} first)"))),
        }
    }
    let manifest = manifest.ok_or_else(|| not_ours(format!("no {MANIFEST}")))?;
    if !has_database {
        return Err(not_ours(format!("no {DATABASE}")));
    }
    if manifest.keys == KeySource::KeyFile && key.is_none() {
        return Err(not_ours(format!("its manifest names a key file, but there is no {KEY_FILE}")));
    }
    check_copy(copy.path(), None)?;

    let mut placed = Vec::new();
    if let Some(key) = &key {
        match std::fs::read(key_path) {
            Ok(existing) if existing.as_slice() == key.as_slice() => {}
            Ok(_) => return Err(BackupError::Occupied(key_path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut out = files::create_private(key_path).map_err(io_error(key_path))?;
                out.write_all(key).and_then(|()| out.sync_all()).map_err(io_error(key_path))?;
                placed.push(key_path.to_path_buf());
            }
            Err(e) => return Err(io_error(key_path)(e)),
        }
    }
    std::fs::rename(copy.path(), database).map_err(io_error(database))?;
    copy.keep();
    placed.push(database.to_path_buf());
    files::sync_dir(dir).map_err(io_error(dir))?;
    Ok((manifest, placed))
}
