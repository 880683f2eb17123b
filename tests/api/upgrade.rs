//! Upgrading from an earlier release: the databases that release's own binary left
//! (tests/fixtures/release-VERSION, made by tests/fixtures/make-release) open with this
//! version, which migrates them and keeps every user, used code, lock and pending sent code;
//! a backup by this version leaves such a database as it is. Each check runs for every
//! release in [`releases!`]'s table, in a module of its own (`upgrade::release_0_1_0::…`).

use std::path::Path;

use mfa::otp::SecretBytes;
use serde_json::Value;

use crate::helpers::{TestApp, database_vars, postgres_mode};

/// A release's fixture, as tests/fixtures/make-release wrote it, and what that release's
/// schema and users' sources were.
struct Release {
    version: &'static str,
    fixture: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    /// Its newest migration.
    schema: i64,
    /// Its users' sources (`name:source`, by name): before 0.2.0 (schema 5) a user created
    /// through the admin API was recorded as `cli`.
    sources: &'static str,
}

/// One module of tests for each release; include_str! needs literal paths, hence a macro.
macro_rules! releases {
    ($($module:ident: $version:literal, schema $schema:literal, sources $sources:literal;)*) => {$(
        mod $module {
            const RELEASE: super::Release = super::Release {
                version: $version,
                fixture: include_str!(concat!("../fixtures/release-", $version, "/fixture.json")),
                sqlite: include_str!(concat!("../fixtures/release-", $version, "/sqlite.sql")),
                postgres: include_str!(concat!("../fixtures/release-", $version, "/postgres.sql")),
                schema: $schema,
                sources: $sources,
            };

            #[tokio::test]
            async fn its_database_keeps_its_users_used_codes_locks_and_sent_codes() {
                super::keeps_its_users_used_codes_locks_and_sent_codes(&RELEASE).await;
            }

            #[tokio::test]
            async fn a_backup_by_this_version_leaves_its_database_as_it_is() {
                super::a_backup_by_this_version_leaves_its_database_as_it_is(&RELEASE).await;
            }

            #[tokio::test]
            async fn its_secrets_are_sealed_again_once() {
                super::its_secrets_are_sealed_again_once(&RELEASE).await;
            }
        }
    )*};
}

releases! {
    release_0_1_0: "0.1.0", schema 4, sources "alice:cli bob:cli carol:cli dair:env erin:cli";
    release_0_2_0: "0.2.0", schema 5, sources "alice:cli bob:cli carol:cli dair:env erin:admin";
}

/// This version's newest migration (the numbered files in migrations/sqlite).
fn this_versions_schema() -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let numbers = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    numbers.filter_map(|name| name.split('_').next()?.parse().ok()).max().unwrap()
}

fn fixture(release: &Release) -> Value {
    let fixture: Value = serde_json::from_str(release.fixture).unwrap();
    assert_eq!(fixture["version"], release.version, "the fixture of release {}", release.version);
    fixture
}

/// Loads the release's database for this run's backend into `dir` (as the test apps find
/// it there) and gives back that database's part of the fixture.
fn release_database(release: &Release, dir: &Path) -> Value {
    let fixture = fixture(release);
    if postgres_mode() {
        let url = database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
        // pg_dump 15.14+ fences its dumps with \restrict; an older psql would stop at it.
        let sql: String = release
            .postgres
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut psql = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql runs");
        use std::io::Write;
        psql.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
        assert!(psql.wait().unwrap().success(), "psql loads the {} dump", release.version);
        fixture["postgres"].clone()
    } else {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let db = rusqlite::Connection::open(dir.join("data/mfa.db")).unwrap();
        db.execute_batch(release.sqlite).unwrap();
        fixture["sqlite"].clone()
    }
}

fn secret(db: &Value, name: &str) -> SecretBytes {
    SecretBytes::from_base32(db["secrets"][name].as_str().unwrap()).unwrap()
}

async fn keeps_its_users_used_codes_locks_and_sent_codes(release: &Release) {
    let version = release.version;
    let dir = tempfile::tempdir().unwrap();
    let db = release_database(release, dir.path());
    let fixture = fixture(release);
    let made_at = db["made_at"].as_u64().unwrap();
    let dair = db["secrets"]["dair"].as_str().unwrap();

    let app = TestApp::builder()
        .shared_dir(dir.path())
        .clock_at(made_at + 1)
        .admin()
        .envs([
            ("SECRET_KEY", fixture["secret_key"].as_str().unwrap()),
            ("MFA_ENV_USERS", "dair"),
            ("DAIR_SECRET", dair),
            ("DAIR_EMAIL", "dair@example.com"),
        ])
        .start()
        .await;

    let used = app.verify("alice", db["used_code"].as_str().unwrap()).await;
    assert_eq!(used.status, 401, "the code {version} accepted stays used: {:?}", used.body);
    let bob = app.verify("bob", &app.totp(&secret(&db, "bob"), 0)).await;
    assert_eq!(bob.status, 429, "bob stays locked, even with the right code: {:?}", bob.body);
    assert_eq!(app.verify("carol", db["sent_code"].as_str().unwrap()).await.status, 200, "the pending sent code");
    for name in ["dair", "erin"] {
        assert_eq!(app.verify(name, &app.totp(&secret(&db, name), 0)).await.status, 200, "{name}");
    }
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret(&db, "alice"), 0)).await.status, 200, "alice's next code");

    // Users created here through the admin API are told apart (schema 5); every user keeps
    // the source the release recorded.
    let created =
        app.admin(reqwest::Method::POST, "/admin/users", Some(serde_json::json!({"username": "frank"}))).await;
    assert_eq!((created.status, created.body["source"].as_str()), (201, Some("admin")), "{:?}", created.body);
    assert_eq!(app.user_sources().await, format!("{} frank:admin", release.sources), "release {version}");
}

#[tokio::test]
async fn a_database_a_later_version_migrated_is_refused_with_what_to_run() {
    let app = TestApp::builder().start().await;
    let dir = app.stop().await;
    let later = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (999, 'from_a_later_version', true, x'00', 0)";
    if postgres_mode() {
        let url = database_vars(dir.path()).into_iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
        let later = later.replace("x'00'", "'\\x00'::bytea");
        let status =
            std::process::Command::new("psql").args(["-q", "-v", "ON_ERROR_STOP=1", &url, "-c", &later]).status();
        assert!(status.unwrap().success());
    } else {
        let db = rusqlite::Connection::open(dir.path().join("data/mfa.db")).unwrap();
        db.execute(later, []).unwrap();
    }

    let err = TestApp::builder().dir(dir).try_start().await.err().expect("start-up refuses");

    let message = err.to_string();
    assert!(message.contains("migrated by a later version of mfa (its migration 999"), "{message}");
}

/// The first column of the first row `sqlite` or `postgres` (whichever this run's backend
/// is) gives on the database in `dir`, as text; empty if there is no row.
fn sql(dir: &Path, sqlite: &str, postgres: &str) -> String {
    if postgres_mode() {
        let url = database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
        let out = std::process::Command::new("psql")
            .args(["-qAt", "-v", "ON_ERROR_STOP=1", &url, "-c", postgres])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "{postgres}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().next().unwrap_or("").to_string()
    } else {
        let db = rusqlite::Connection::open(dir.join("data/mfa.db")).unwrap();
        let mut statement = db.prepare(sqlite).unwrap();
        let mut rows = statement.query([]).unwrap();
        match rows.next().unwrap() {
            Some(row) => match row.get_ref(0).unwrap() {
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                other => other.as_str().unwrap().to_string(),
            },
            None => String::new(),
        }
    }
}

/// Start-up seals an earlier release's secrets again, bound to their authenticators, and
/// records in `meta` that none is left; later start-ups skip that scan of every
/// authenticator, until the row is gone (a database restored from an older archive has
/// none), and then seal again what they find.
async fn its_secrets_are_sealed_again_once(release: &Release) {
    let dir = tempfile::tempdir().unwrap();
    let db = release_database(release, dir.path());
    let key = fixture(release)["secret_key"].as_str().unwrap().to_string();
    let made_at = db["made_at"].as_u64().unwrap();
    let alices_seal = sql(
        dir.path(),
        "SELECT hex(sealed_secret) FROM users WHERE username = 'alice'",
        "SELECT encode(sealed_secret, 'hex') FROM users WHERE username = 'alice'",
    );
    let versions = |dir: &Path| {
        sql(
            dir,
            "SELECT group_concat(DISTINCT unicode(substr(sealed_secret, 1, 1))) FROM authenticators",
            "SELECT string_agg(DISTINCT get_byte(sealed_secret, 0)::text, ',') FROM authenticators",
        )
    };
    let marker = |dir: &Path| {
        let sql_text = "SELECT value FROM meta WHERE key = 'secrets_bound'";
        sql(dir, sql_text, sql_text)
    };
    let start = |dir: tempfile::TempDir| {
        TestApp::builder().dir(dir).clock_at(made_at + 1).envs([("SECRET_KEY", key.as_str())]).start()
    };
    assert_eq!(marker(dir.path()), "", "release {} has no such row", release.version);

    let dir = start(dir).await.stop().await;
    assert_eq!(versions(dir.path()), "2", "every secret is bound to its authenticator");
    assert_eq!(marker(dir.path()), "authenticator");

    // A secret sealed the old way, where the row says none is left: not looked for.
    let put_back = format!("UPDATE authenticators SET sealed_secret = x'{alices_seal}' WHERE username = 'alice'");
    let put_back_pg =
        format!("UPDATE authenticators SET sealed_secret = '\\x{alices_seal}'::bytea WHERE username = 'alice'");
    sql(dir.path(), &put_back, &put_back_pg);
    let app = start(dir).await;
    let alice = app.verify("alice", &app.totp(&secret(&db, "alice"), 1)).await;
    assert_eq!(alice.status, 200, "a secret sealed the old way still opens: {:?}", alice.body);
    let dir = app.stop().await;
    assert_eq!(versions(dir.path()), "1,2", "the scan was skipped");

    let forget = "DELETE FROM meta WHERE key = 'secrets_bound'";
    sql(dir.path(), forget, forget);
    let dir = start(dir).await.stop().await;
    assert_eq!(versions(dir.path()), "2", "without the row, start-up looks again");
    assert_eq!(marker(dir.path()), "authenticator");
}

/// `mfa backup` of a server's database writes nothing to it, not even this version's
/// migrations: this binary backs up an earlier release's database as it is, and a restore
/// with this version migrates the copy.
async fn a_backup_by_this_version_leaves_its_database_as_it_is(release: &Release) {
    if postgres_mode() {
        return; // mfa backup is for SQLite
    }
    let (live, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = release_database(release, live.path());
    let key = fixture(release)["secret_key"].as_str().unwrap().to_string();
    let env = [("SECRET_KEY", key.as_str())];
    let schema = |dir: &Path| -> i64 {
        let conn = rusqlite::Connection::open(dir.join("data/mfa.db")).unwrap();
        conn.query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| r.get(0)).unwrap()
    };
    let file = live.path().join("backup.tar");

    let backed_up = crate::process::cli(live.path(), &env, &["backup", file.to_str().unwrap()]).await;

    assert_eq!(backed_up.code, 0, "{}", backed_up.stderr);
    let said = format!("backed up 5 users (schema {})", release.schema);
    assert!(backed_up.stdout.contains(&said), "{}", backed_up.stdout);
    assert_eq!(schema(live.path()), release.schema, "the live database was not migrated");
    let restored =
        crate::process::cli(fresh.path(), &env, &["restore", file.to_str().unwrap(), "--data-dir", "data"]).await;
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(schema(fresh.path()), this_versions_schema(), "the restore opened it as the server does");
    let made_at = db["made_at"].as_u64().unwrap();
    let app = TestApp::builder().shared_dir(fresh.path()).clock_at(made_at + 1).envs(env).start().await;
    assert_eq!(app.verify("alice", db["used_code"].as_str().unwrap()).await.status, 401, "still used");
}
