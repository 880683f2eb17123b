//! The keys at rest against a stolen database: a configured `SECRET_KEY` is stretched with
//! Argon2id and a salt of the database's, so the stored check value (and every sealed
//! secret) confirms a guess of the key only at an Argon2id's cost; databases written
//! before that (tests/fixtures/legacy-v1.json, rows as the version before wrote them) are
//! moved on their first start, once, or keep their keys when they come from the key file.

use std::collections::BTreeMap;
use std::path::Path;

use mfa::clock::{Clock, SystemClock};
use mfa::crypto::{KdfParams, KeyOrigin, Keys, MasterKey};
use mfa::domain::Username;
use mfa::otp::{Algorithm, OtpParams, SecretBytes};
use mfa::store::{
    AuthenticatorRecord, AuthenticatorStatus, Factor, KeyMigration, KeyRecord, Resealed, UserProfile, UserSource,
};
use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{TestApp, database_vars, memory_kib, settings_for};
use crate::process::{cli, now_code, secret_from_cli, start_server};

fn legacy() -> Value {
    serde_json::from_str(include_str!("../fixtures/legacy-v1.json")).unwrap()
}

fn hex(value: &Value) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(value.as_str().unwrap().as_bytes()).unwrap()
}

fn params_of(row: &Value) -> OtpParams {
    let algorithm = Algorithm::parse(row["algorithm"].as_str().unwrap()).unwrap();
    OtpParams { algorithm, digits: row["digits"].as_u64().unwrap() as u8, period: row["period"].as_u64().unwrap() }
}

/// The code of a fixture user now.
fn code_of(db: &Value, name: &str) -> String {
    let row = db["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap();
    now_code(&SecretBytes::from_base32(row["totp_secret"].as_str().unwrap()).unwrap(), params_of(row))
}

/// The fixture's database made with `SECRET_KEY`, and the variables it ran with (its
/// `.env` user `dair` included).
fn configured() -> (Value, Vec<(String, String)>) {
    let db = legacy()["secret_key"].clone();
    let env = vec![
        ("SECRET_KEY".to_string(), db["secret_key"].as_str().unwrap().to_string()),
        ("DAIR_SECRET".into(), code_secret(&db, "dair")),
        ("MFA_ENV_USERS".into(), "dair".into()),
        ("DAIR_EMAIL".into(), "dair@example.com".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    (db, env)
}

fn code_secret(db: &Value, name: &str) -> String {
    let row = db["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap();
    row["totp_secret"].as_str().unwrap().to_string()
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The test's database (the SQLite file in `dir`, or its PostgreSQL database), read and
/// written as another version of the program would.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// `$body` once for each backend's connection, as `$conn`.
macro_rules! on {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            Db::Sqlite($conn) => $body,
            Db::Postgres($conn) => $body,
        }
    };
}

/// What a stolen copy holds of the keys: the `meta` rows, each user's sealed secret (and
/// its authenticator's id), and how many sent codes are pending.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    meta: BTreeMap<String, String>,
    sealed: BTreeMap<String, Vec<u8>>,
    ids: BTreeMap<String, String>,
    sent_codes: i64,
}

impl Db {
    async fn open(dir: &Path) -> Self {
        match database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL") {
            None => {
                let path = dir.join("data/mfa.db");
                Self::Sqlite(sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap())
            }
            Some((_, url)) => Self::Postgres(sqlx::PgConnection::connect(&url).await.unwrap()),
        }
    }

    async fn snapshot(&mut self) -> Snapshot {
        on!(self, conn => {
            let meta: Vec<(String, String)> =
                sqlx::query_as("SELECT key, value FROM meta").fetch_all(&mut *conn).await.unwrap();
            let rows: Vec<(String, String, Vec<u8>)> =
                sqlx::query_as("SELECT username, id, sealed_secret FROM authenticators")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
            let ids = rows.iter().map(|(name, id, _)| (name.clone(), id.clone())).collect();
            let sealed = rows.into_iter().map(|(name, _, sealed)| (name, sealed));
            let sent_codes: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE code_hash IS NOT NULL")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            Snapshot { meta: meta.into_iter().collect(), sealed: sealed.collect(), ids, sent_codes }
        })
    }

    /// Makes the database hold `db`'s rows as the version before Argon2id left them: only
    /// `key_check` in `meta`, its users with their sealed secrets, its sent codes (due to
    /// expire in 5 minutes from now).
    async fn write_v1(&mut self, db: &Value) {
        let now = SystemClock.now() as i64;
        on!(self, conn => {
            for clear in ["DELETE FROM users", "DELETE FROM meta"] {
                sqlx::query(clear).execute(&mut *conn).await.unwrap();
            }
            sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', $1)")
                .bind(db["key_check"].as_str().unwrap())
                .execute(&mut *conn)
                .await
                .unwrap();
            for u in db["users"].as_array().unwrap() {
                let text = |field: &str| u[field].as_str().map(str::to_string);
                let int = |field: &str| u[field].as_i64();
                sqlx::query(
                    "INSERT INTO users (username, email, telegram_id, source, failed_attempts, locked_until, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(text("username"))
                .bind(text("email"))
                .bind(text("telegram_id"))
                .bind(text("source"))
                .bind(int("failed_attempts"))
                .bind(int("locked_until"))
                .bind(int("created_at"))
                .bind(int("updated_at"))
                .execute(&mut *conn)
                .await
                .unwrap();
                // Its secret as migration 6 moved it: an authenticator, sealed to the user only.
                sqlx::query(
                    "INSERT INTO authenticators (username, id, kind, name, sealed_secret, algorithm, digits, period, \
                     last_step, status, created_at) VALUES ($1, '0123456789ab', 'totp', 'default', $2, $3, $4, $5, \
                     $6, 'active', $7)",
                )
                .bind(text("username"))
                .bind(hex(&u["sealed_secret"]))
                .bind(text("algorithm"))
                .bind(int("digits"))
                .bind(int("period"))
                .bind(int("last_step"))
                .bind(int("secret_set_at").or(int("created_at")))
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            for code in db["sent_codes"].as_array().unwrap() {
                // The sent codes live in the users' rows since schema 4 (the fixture's came from a table).
                sqlx::query("UPDATE users SET code_hash = $2, code_sent_at = $3, code_expires_at = $4 WHERE username = $1")
                    .bind(code["username"].as_str().unwrap())
                    .bind(hex(&code["code_hash"]))
                    .bind(now)
                    .bind(now + 300)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
        });
    }

    async fn close(self) {
        on!(self, conn => conn.close().await.unwrap());
    }
}

/// A database in `dir` as the version before Argon2id left `db`: the schema made by this
/// version (with the same key kind, `env`), then its rows replaced by the fixture's.
async fn legacy_database(dir: &Path, db: &Value, env: &[(&str, &str)]) -> Snapshot {
    let made = cli(dir, env, &["user", "list"]).await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    if let Some(key) = db["key_file"].as_str() {
        std::fs::write(dir.join("data/secret.key"), format!("{key}\n")).unwrap();
    }
    let mut conn = Db::open(dir).await;
    conn.write_v1(db).await;
    let snapshot = conn.snapshot().await;
    conn.close().await;
    assert_eq!(snapshot.meta.keys().collect::<Vec<_>>(), ["key_check"], "a v1 database has no kdf row");
    snapshot
}

async fn snapshot(dir: &Path) -> Snapshot {
    let mut conn = Db::open(dir).await;
    let snapshot = conn.snapshot().await;
    conn.close().await;
    snapshot
}

#[tokio::test]
async fn a_database_of_before_argon2id_moves_to_it_on_its_first_start_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let (db, env) = configured();
    let env = borrowed(&env);
    let v1 = legacy_database(dir.path(), &db, &env).await;
    assert_eq!(v1.sent_codes, 1);

    let server = start_server(dir.path(), &env).await;

    let stale = server.verify("alice", db["sent_code"].as_str().unwrap()).await;
    assert_eq!(stale.status, 401, "a code sent before the move was hashed with the old key: dropped");
    for name in ["alice", "dair"] {
        let ok = server.verify(name, &code_of(&db, name)).await;
        assert_eq!(ok.status, 200, "{name}: {:?}\n{}", ok.body, server.logs());
    }
    let logs = server.logged().await;
    server.kill9().await;
    assert!(logs.contains("moved the database's keys to Argon2id") && logs.contains("resealed=3"), "{logs}");
    assert!(logs.contains("dropped_sent_codes=1"), "{logs}");
    assert!(!logs.contains("synced users"), "DAIR_SECRET still matches the resealed secret:\n{logs}");
    let moved = snapshot(dir.path()).await;
    let kdf = &moved.meta["kdf"];
    assert!(kdf.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"), "{kdf}");
    assert_ne!(moved.meta["key_check"], v1.meta["key_check"]);
    assert_eq!(moved.sealed.keys().collect::<Vec<_>>(), v1.sealed.keys().collect::<Vec<_>>());
    for (name, sealed) in &moved.sealed {
        assert_ne!(sealed, &v1.sealed[name], "{name}'s secret is sealed under the new keys");
    }
    assert_eq!(moved.sent_codes, 0);

    let again = start_server(dir.path(), &env).await;
    let bob = again.verify("bob", &code_of(&db, "bob")).await;
    assert_eq!(bob.status, 200, "{:?}", bob.body);
    let logs = again.logged().await;
    again.kill9().await;
    assert!(!logs.contains("moved the database's keys"), "moved twice:\n{logs}");
    assert!(logs.contains("derived the keys from SECRET_KEY with Argon2id"), "{logs}");
    assert_eq!(snapshot(dir.path()).await, moved, "the second start wrote nothing of the keys");
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_a_database_of_before_argon2id_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, env) = configured();
    let v1 = legacy_database(dir.path(), &db, &borrowed(&env)).await;

    let wrong = cli(dir.path(), &[("SECRET_KEY", "the-wrong-key-0123456789abcdef")], &["server"]).await;
    // Without SECRET_KEY: no key file is generated for a database that has keys.
    let unset = cli(dir.path(), &[], &["user", "list"]).await;

    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("encrypted with another key"), "{}", wrong.stderr);
    assert_eq!(unset.code, 2, "{}", unset.stderr);
    assert!(
        unset.stderr.contains("made with SECRET_KEY or with the key file ./data/secret.key, and neither"),
        "{}",
        unset.stderr
    );
    assert!(!dir.path().join("data/secret.key").exists(), "no key file was made");
    assert_eq!(snapshot(dir.path()).await, v1, "nothing was written");
    let right = cli(dir.path(), &borrowed(&env), &["user", "list"]).await;
    assert_eq!(right.code, 0, "the right key still opens it: {}", right.stderr);
    assert!(right.stderr.contains("moved the database's keys to Argon2id"), "{}", right.stderr);
}

#[tokio::test]
async fn a_key_file_database_of_before_argon2id_keeps_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = legacy()["key_file"].clone();
    let v1 = legacy_database(dir.path(), &db, &[]).await;

    let server = start_server(dir.path(), &[]).await;
    let ok = server.verify("carol", &code_of(&db, "carol")).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let logs = server.logged().await;
    server.kill9().await;

    assert!(!logs.contains("Argon2id"), "256 random bits are not stretched:\n{logs}");
    let opened = snapshot(dir.path()).await;
    assert_eq!(opened.meta.get("kdf").map(String::as_str), Some("hkdf"), "recorded as a key-file database");
    assert_eq!(opened.meta["key_check"], v1.meta["key_check"], "the same keys");
    for (name, sealed) in &opened.sealed {
        let (before, after) = (v1.sealed[name][0], sealed[0]);
        assert_eq!((before, after), (1, 2), "{name}: sealed again under the same keys, bound to its authenticator");
    }
    let with_key = cli(dir.path(), &[("SECRET_KEY", "a-configured-key-0123456789abcdef")], &["user", "list"]).await;
    assert_eq!(with_key.code, 2, "{}", with_key.stderr);
    assert!(with_key.stderr.contains("encrypted with another key"), "{}", with_key.stderr);
    assert_eq!(cli(dir.path(), &[], &["user", "list"]).await.code, 0);
}

/// A database made with `SECRET_KEY` refuses the key file, and one made with the key file
/// refuses any `SECRET_KEY`, as before Argon2id.
#[tokio::test]
async fn a_database_made_with_one_kind_of_key_refuses_the_other() {
    let key = [("SECRET_KEY", "kind-test-key-0123456789abcdef")];
    for (made_with, started_with) in [(&key[..], &[][..]), (&[][..], &key[..])] {
        let dir = tempfile::tempdir().unwrap();
        let made = cli(dir.path(), made_with, &["user", "add", "alice", "--no-qr"]).await;
        assert_eq!(made.code, 0, "{}", made.stderr);
        let before = snapshot(dir.path()).await;

        let out = cli(dir.path(), started_with, &["server"]).await;

        assert_eq!(out.code, 2, "{}", out.stderr);
        let refusal = if started_with.is_empty() {
            "made with SECRET_KEY, which is not set"
        } else {
            "encrypted with another key"
        };
        assert!(out.stderr.contains(refusal), "{}", out.stderr);
        // Only the key-file database has one: none is generated for the other.
        assert_eq!(dir.path().join("data/secret.key").exists(), made_with.is_empty());
        assert_eq!(snapshot(dir.path()).await, before);
        assert_eq!(cli(dir.path(), made_with, &["user", "show", "alice"]).await.code, 0);
    }
}

/// A data directory that lost its key file (a new container's empty volume beside a shared
/// PostgreSQL, a restore without it) is told so; no second key is generated.
#[tokio::test]
async fn a_missing_key_file_is_named_and_never_replaced_by_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let made = cli(dir.path(), &[], &["user", "add", "alice", "--no-qr"]).await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    let key = std::fs::read(dir.path().join("data/secret.key")).unwrap();
    std::fs::remove_file(dir.path().join("data/secret.key")).unwrap();

    let out = cli(dir.path(), &[], &["server"]).await;

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("made with the key file ./data/secret.key, which is missing"), "{}", out.stderr);
    assert!(!dir.path().join("data/secret.key").exists(), "no new key file");
    std::fs::write(dir.path().join("data/secret.key"), key).unwrap();
    assert_eq!(cli(dir.path(), &[], &["user", "show", "alice"]).await.code, 0, "the restored key opens it");
}

/// What a thief of the database can test a guess of `SECRET_KEY` against: the check value
/// and the sealed secrets answer only through an Argon2id at the recorded costs, with a
/// salt of that database's; the HKDF of the guess, which confirmed it before, says nothing.
#[tokio::test]
async fn the_stored_data_confirms_a_guess_of_the_key_only_through_argon2id() {
    let key = "your-secret-key";
    let mut salts = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let added = cli(dir.path(), &[("SECRET_KEY", key)], &["user", "add", "alice", "--no-qr"]).await;
        assert_eq!(added.code, 0, "{}", added.stderr);
        let secret = secret_from_cli(&added.stdout);
        let stolen = snapshot(dir.path()).await;
        let check = &stolen.meta["key_check"];
        let sealed = &stolen.sealed["alice"];
        let id = &stolen.ids["alice"];
        let alice = Username::parse("alice").unwrap();

        let fast = Keys::direct(key.as_bytes(), KeyOrigin::Configured).unwrap();
        assert_ne!(fast.check_value(), check, "an HKDF of the right key no longer matches");
        assert!(fast.open_secret(&alice, id, sealed).is_err());

        let params = KdfParams::parse(&stolen.meta["kdf"]).unwrap();
        assert_eq!((params.m_kib, params.t, params.p, params.salt().len()), (65536, 3, 1, 16));
        let stretched = MasterKey::configured(key).keys(Some(&params)).unwrap();
        assert_eq!(stretched.check_value(), check, "the right key, through Argon2id, matches");
        assert_eq!(stretched.open_secret(&alice, id, sealed).unwrap(), secret);
        let wrong = MasterKey::configured("your-secret-kez").keys(Some(&params)).unwrap();
        assert_ne!(wrong.check_value(), check);
        salts.push(params.salt().to_vec());
    }
    assert_ne!(salts[0], salts[1], "each database has its own salt: no guess is tried on two at once");
}

/// Several processes starting at once on a database of before Argon2id (the CLI and
/// servers, or instances on one PostgreSQL): one moves it, the others open it moved.
#[tokio::test]
async fn instances_starting_together_move_a_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, env) = configured();
    let env = borrowed(&env);
    legacy_database(dir.path(), &db, &env).await;

    let start = || cli(dir.path(), &env, &["user", "list"]);
    let (a, b, c) = tokio::join!(start(), start(), start());
    let outs = [a, b, c];

    for out in &outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("alice") && out.stdout.contains("dair"), "{}", out.stdout);
    }
    let moved = outs.iter().filter(|o| o.stderr.contains("moved the database's keys to Argon2id")).count();
    assert_eq!(moved, 1, "{:#?}", outs.iter().map(|o| &o.stderr).collect::<Vec<_>>());
    let server = start_server(dir.path(), &env).await;
    assert_eq!(server.verify("bob", &code_of(&db, "bob")).await.status, 200);
}

/// The store's half of the move: every write of it happens in one transaction, or none
/// does when the database is not as it was read.
#[tokio::test]
async fn a_key_migration_is_written_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(dir.path(), [("RUST_LOG", "warn")]);
    let store = mfa::store::open(&settings.database).await.unwrap();
    assert!(store.record_keys("kdf-a", "check-a").await.unwrap());
    assert!(!store.record_keys("kdf-b", "check-b").await.unwrap(), "recorded once");
    let recorded = KeyRecord { kdf: Some("kdf-a".into()), check: Some("check-a".into()) };
    assert_eq!(store.key_record().await.unwrap(), recorded);
    let alice = Username::parse("alice").unwrap();
    let profile = UserProfile { username: alice.clone(), email: None, telegram_id: None, source: UserSource::Cli };
    let first = AuthenticatorRecord {
        id: "a1".into(),
        name: "default".into(),
        sealed_secret: vec![1; 40],
        factor: Factor::Totp { params: OtpParams::default(), last_step: None, drift_steps: 0 },
        status: AuthenticatorStatus::Active,
        replaces: None,
        created_at: 1,
        last_used_at: None,
        expires_at: None,
    };
    store.insert_user(&profile, &first, 1).await.unwrap();
    let mut conn = Db::open(dir.path()).await;
    on!(&mut conn, c => {
        sqlx::query("DELETE FROM meta WHERE key = 'kdf'").execute(&mut *c).await.unwrap();
    });
    let v1 = KeyRecord { kdf: None, check: Some("check-a".into()) };
    let move_to = |old: Vec<u8>, authenticators: u64, old_check: &str| KeyMigration {
        kdf: "kdf-new".into(),
        old_check: old_check.into(),
        new_check: "check-new".into(),
        authenticators,
        resealed: vec![Resealed { username: alice.clone(), authenticator: "a1".into(), old, new: vec![2; 40] }],
        drop_sent_codes: true,
    };

    for stale in [move_to(vec![9; 40], 1, "check-a"), move_to(vec![1; 40], 2, "check-a"), move_to(vec![1; 40], 1, "x")]
    {
        assert!(!store.migrate_keys(&stale).await.unwrap(), "{stale:?}");
        assert_eq!(store.key_record().await.unwrap(), v1, "the kdf row written first was rolled back");
        assert_eq!(conn.snapshot().await.sealed["alice"], vec![1; 40]);
    }
    assert!(store.migrate_keys(&move_to(vec![1; 40], 1, "check-a")).await.unwrap());
    let moved = KeyRecord { kdf: Some("kdf-new".into()), check: Some("check-new".into()) };
    assert_eq!(store.key_record().await.unwrap(), moved);
    assert_eq!(conn.snapshot().await.sealed["alice"], vec![2; 40]);
    assert!(!store.migrate_keys(&move_to(vec![2; 40], 1, "check-new")).await.unwrap(), "moved once");
    conn.close().await;
    store.close().await;
}

/// The binary (with its allocator, mimalloc) gives Argon2id's 64 MiB back soon after it
/// listens: its peak shows the derivation ran, its resident size falls back within seconds.
#[tokio::test]
async fn the_memory_argon2id_used_leaves_the_rss_soon_after_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestApp::builder()
        .shared_dir(dir.path())
        .env("SECRET_KEY", "rss-test-key-0123456789abcdef")
        .start_binary("server")
        .await;
    let started = std::time::Instant::now();
    let (mut rss, mut peak) = memory_kib(server.pid());
    while rss + 48 * 1024 > peak && started.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        (rss, peak) = memory_kib(server.pid());
    }
    eprintln!("RSS {rss} KiB {:?} after listening, peak {peak} KiB", started.elapsed());
    assert!(peak > 64 * 1024, "the 64 MiB of Argon2id were in use: peak {peak} KiB");
    assert!(rss + 48 * 1024 <= peak, "RSS {rss} KiB is still near the peak {peak} KiB after 5 s");
}
