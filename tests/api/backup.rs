//! Backup and restore as docs/operations.md tells an operator: `mfa backup FILE` of a live
//! SQLite database and `mfa restore FILE` into a fresh data directory, and for PostgreSQL
//! pg_dump and pg_restore. The restored server has every user, and every code that was used
//! stays used, every lock holds and a pending sent code still works.

use std::path::Path;

use mfa::otp::SecretBytes;

use crate::helpers::{TEST_SECRET_KEY, TestApp, database_vars, postgres_mode, wrong};
use crate::process::cli;

/// What the users did before the backup, to be found again after the restore.
struct Before {
    alice: SecretBytes,
    alice_used: String,
    bob: SecretBytes,
    carol_sent: String,
    at: u64,
}

/// alice used a code, bob is locked, carol has a sent code pending.
async fn use_the_app(app: &TestApp) -> Before {
    let alice = app.enroll("alice", None, None).await;
    let bob = app.enroll("bob", None, None).await;
    app.enroll("carol", Some("carol@example.com"), None).await;
    let alice_used = app.totp(&alice, 0);
    assert_eq!(app.verify("alice", &alice_used).await.status, 200);
    let bob_code = app.totp(&bob, 0);
    let mut locked = false;
    for _ in 0..10 {
        if app.verify("bob", &wrong(&bob_code)).await.status == 429 {
            locked = true;
            break;
        }
    }
    assert!(locked, "bob is locked");
    assert_eq!(app.request_otp("carol").await.status, 200);
    let carol_sent = app.last_code_sent_to("carol@example.com");
    Before { alice, alice_used, bob, carol_sent, at: app.now() }
}

/// The restored app answers as the original did at the time of the backup.
async fn assert_restored(app: &TestApp, before: &Before) {
    assert_eq!(app.verify("alice", &before.alice_used).await.status, 401, "a used code stays used");
    assert_eq!(app.verify("bob", &app.totp(&before.bob, 0)).await.status, 429, "bob stays locked");
    assert_eq!(app.verify("carol", &before.carol_sent).await.status, 200, "carol's pending code works");
    assert_eq!(app.verify("zed", "123456").await.status, 404, "zed came after the backup");
    app.clock().advance(30);
    assert_eq!(app.verify("alice", &app.totp(&before.alice, 0)).await.status, 200, "alice's next code");
}

fn tar_entries(file: &Path) -> Vec<String> {
    let out = std::process::Command::new("tar").arg("-tf").arg(file).output().expect("tar runs");
    assert!(out.status.success(), "tar reads the backup: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test]
async fn mfa_backup_of_a_live_database_restores_into_a_working_server() {
    if postgres_mode() {
        return; // pg_dump's turn: the next test
    }
    for (secret_key, entries) in
        [(TEST_SECRET_KEY, &["backup.json", "mfa.db"][..]), ("", &["backup.json", "mfa.db", "secret.key"][..])]
    {
        let key = [("SECRET_KEY", secret_key)];
        let (live, fresh, kept) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let app = TestApp::builder().shared_dir(live.path()).envs(key).start().await;
        let before = use_the_app(&app).await;
        let file = kept.path().join("mfa-backup.tar");

        let backed_up = cli(live.path(), &key, &["backup", file.to_str().unwrap()]).await;

        assert_eq!(backed_up.code, 0, "{}", backed_up.stderr);
        assert!(backed_up.stdout.contains("backed up 3 users"), "{}", backed_up.stdout);
        assert!(backed_up.stderr.contains("using the SQLite database ./data/mfa.db"), "{}", backed_up.stderr);
        assert_eq!(tar_entries(&file), entries, "key: {secret_key:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        app.enroll("zed", None, None).await;
        let again = cli(live.path(), &key, &["backup", file.to_str().unwrap()]).await;
        assert_eq!(again.code, 1, "{}", again.stderr);
        assert!(again.stderr.contains("a backup never replaces a file"), "{}", again.stderr);

        let restored = cli(fresh.path(), &key, &["restore", file.to_str().unwrap(), "--data-dir", "data"]).await;

        assert_eq!(restored.code, 0, "{}", restored.stderr);
        assert!(restored.stdout.contains("restored 3 users"), "{}", restored.stdout);
        let twice = cli(fresh.path(), &key, &["restore", file.to_str().unwrap(), "--data-dir", "data"]).await;
        assert!(twice.code != 0 && twice.stderr.contains("restore into a fresh data directory"), "{}", twice.stderr);
        let server = TestApp::builder().shared_dir(fresh.path()).clock_at(before.at).envs(key).start().await;
        assert_restored(&server, &before).await;
    }
}

#[tokio::test]
async fn a_restore_with_other_keys_says_which_and_leaves_nothing_behind() {
    if postgres_mode() {
        return;
    }
    for (made_with, restored_with, why) in [
        (TEST_SECRET_KEY, "", "made with SECRET_KEY, which a backup does not hold"),
        (TEST_SECRET_KEY, "another-key-0123456789abcdef-0123", "made with another SECRET_KEY than the one set here"),
        ("", TEST_SECRET_KEY, "made with the key file it holds, not with SECRET_KEY"),
    ] {
        let (live, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let app = TestApp::builder().shared_dir(live.path()).envs([("SECRET_KEY", made_with)]).start().await;
        app.enroll("alice", None, None).await;
        let file = live.path().join("backup.tar");
        let backed_up = cli(live.path(), &[("SECRET_KEY", made_with)], &["backup", file.to_str().unwrap()]).await;
        assert_eq!(backed_up.code, 0, "{}", backed_up.stderr);

        let out = cli(fresh.path(), &[("SECRET_KEY", restored_with)], &["restore", file.to_str().unwrap()]).await;

        assert_ne!(out.code, 0, "{}", out.stdout);
        assert!(out.stderr.contains(why), "{}", out.stderr);
        let left: Vec<_> =
            std::fs::read_dir(fresh.path().join("data")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "nothing restored stays: {left:?}");
    }
}

#[tokio::test]
async fn restore_refuses_what_is_not_a_backup() {
    if postgres_mode() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a database").unwrap();
    let made =
        std::process::Command::new("tar").current_dir(dir.path()).args(["-cf", "other.tar", "notes.txt"]).status();
    assert!(made.unwrap().success());

    let out = cli(dir.path(), &[], &["restore", "other.tar", "--data-dir", "data"]).await;

    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not a backup that this mfa can restore: unexpected entry 'notes.txt'"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("data/mfa.db").exists());
}

/// docs/operations.md, "Backup and restore": PostgreSQL's own tools, on a live database.
#[tokio::test]
async fn the_documented_pg_dump_and_pg_restore_give_a_working_server() {
    if !postgres_mode() {
        return; // mfa backup's turn: the tests above
    }
    let (live, fresh, kept) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = TestApp::builder().shared_dir(live.path()).start().await;
    let before = use_the_app(&app).await;
    let url = |dir: &Path| database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL").unwrap().1;
    let dump = kept.path().join("mfa.dump");
    let refused = cli(live.path(), &[], &["backup", dump.to_str().unwrap()]).await;
    assert!(refused.code != 0 && refused.stderr.contains("use pg_dump"), "{}", refused.stderr);

    let dumped = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(url(live.path()))
        .status()
        .unwrap();
    assert!(dumped.success(), "pg_dump");
    app.enroll("zed", None, None).await;
    // database_vars made the fresh database, empty, as `createdb` does.
    let restored = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(url(fresh.path()))
        .arg(&dump)
        .status()
        .unwrap();
    assert!(restored.success(), "pg_restore");

    let server = TestApp::builder().shared_dir(fresh.path()).clock_at(before.at).start().await;
    assert_restored(&server, &before).await;
}
