//! Upgrading from the previous release: the databases its own binary left
//! (tests/fixtures/release-0.1.0, made by its `make`) open with this version, which
//! migrates them and keeps every user, used code, lock and pending sent code.

use std::path::Path;

use mfa::otp::SecretBytes;
use serde_json::Value;

use crate::helpers::{TestApp, database_vars, postgres_mode};

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/release-0.1.0/fixture.json")).unwrap()
}

/// Loads the previous release's database for this run's backend into `dir` (as the test
/// apps find it there) and gives back that database's part of the fixture.
fn previous_release_database(dir: &Path) -> Value {
    let fixture = fixture();
    if postgres_mode() {
        let url = database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
        // pg_dump 15.14+ fences its dumps with \restrict; an older psql would stop at it.
        let sql: String = include_str!("../fixtures/release-0.1.0/postgres.sql")
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
        assert!(psql.wait().unwrap().success(), "psql loads the 0.1.0 dump");
        fixture["postgres"].clone()
    } else {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let db = rusqlite::Connection::open(dir.join("data/mfa.db")).unwrap();
        db.execute_batch(include_str!("../fixtures/release-0.1.0/sqlite.sql")).unwrap();
        fixture["sqlite"].clone()
    }
}

fn secret(db: &Value, name: &str) -> SecretBytes {
    SecretBytes::from_base32(db["secrets"][name].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_database_of_the_previous_release_keeps_its_users_used_codes_locks_and_sent_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = previous_release_database(dir.path());
    let fixture = fixture();
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
    assert_eq!(used.status, 401, "the code 0.1.0 accepted stays used: {:?}", used.body);
    let bob = app.verify("bob", &app.totp(&secret(&db, "bob"), 0)).await;
    assert_eq!(bob.status, 429, "bob stays locked, even with the right code: {:?}", bob.body);
    assert_eq!(app.verify("carol", db["sent_code"].as_str().unwrap()).await.status, 200, "the pending sent code");
    for name in ["dair", "erin"] {
        assert_eq!(app.verify(name, &app.totp(&secret(&db, name), 0)).await.status, 200, "{name}");
    }
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&secret(&db, "alice"), 0)).await.status, 200, "alice's next code");

    // Schema 5: users created here through the admin API are told apart; 0.1.0 could not.
    let created =
        app.admin(reqwest::Method::POST, "/admin/users", Some(serde_json::json!({"username": "frank"}))).await;
    assert_eq!((created.status, created.body["source"].as_str()), (201, Some("admin")), "{:?}", created.body);
    assert_eq!(app.user_sources().await, "alice:cli bob:cli carol:cli dair:env erin:cli frank:admin");
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

/// `mfa backup` of a server's database writes nothing to it, not even this version's
/// migrations: a newer binary backs up a 0.1.0 server's database as it is, and a restore
/// with this version migrates the copy.
#[tokio::test]
async fn a_backup_by_a_newer_mfa_leaves_the_previous_release_database_as_it_is() {
    if postgres_mode() {
        return; // mfa backup is for SQLite
    }
    let (live, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = previous_release_database(live.path());
    let key = fixture()["secret_key"].as_str().unwrap().to_string();
    let env = [("SECRET_KEY", key.as_str())];
    let schema = |dir: &Path| -> i64 {
        let conn = rusqlite::Connection::open(dir.join("data/mfa.db")).unwrap();
        conn.query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| r.get(0)).unwrap()
    };
    let file = live.path().join("backup.tar");

    let backed_up = crate::process::cli(live.path(), &env, &["backup", file.to_str().unwrap()]).await;

    assert_eq!(backed_up.code, 0, "{}", backed_up.stderr);
    assert!(backed_up.stdout.contains("backed up 5 users (schema 4)"), "{}", backed_up.stdout);
    assert_eq!(schema(live.path()), 4, "the live database was not migrated");
    let restored =
        crate::process::cli(fresh.path(), &env, &["restore", file.to_str().unwrap(), "--data-dir", "data"]).await;
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(schema(fresh.path()), 7, "the restore opened it as the server does");
    let made_at = db["made_at"].as_u64().unwrap();
    let app = TestApp::builder().shared_dir(fresh.path()).clock_at(made_at + 1).envs(env).start().await;
    assert_eq!(app.verify("alice", db["used_code"].as_str().unwrap()).await.status, 401, "still used");
}
