//! Faults, with nothing lost: the real binary killed with `kill -9` under load, its
//! PostgreSQL stopped and started again under it, its disk full while it serves, and a full
//! disk or a read-only data directory at start-up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mfa::otp::{OtpParams, SecretBytes};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::TestApp;
use crate::helpers::{Reply, database_vars, postgres_mode};
use crate::process::{cli, mfa, mfa_via, now_code};

const KEY: (&str, &str) = ("SECRET_KEY", "faults-test-key-0123456789abcdef");
const ADMIN: &str = "faults-admin-token-0123456789";

/// The database's own integrity checks, on the test's database (the SQLite file in `dir`,
/// or its PostgreSQL database), plus the invariants of our schema. Returns what was checked.
pub async fn check_integrity(dir: &Path) -> String {
    let consistency = [
        // a sent code is whole: its hash, its send time and its expiry, or none of them
        "SELECT COUNT(*) FROM users WHERE (code_hash IS NULL) <> (code_expires_at IS NULL) \
         OR (code_hash IS NULL) <> (code_sent_at IS NULL)",
        // version byte + 12-byte nonce + at least an 80-bit secret + 16-byte tag
        "SELECT COUNT(*) FROM authenticators WHERE length(sealed_secret) < 39",
        "SELECT COUNT(*) FROM users WHERE failed_attempts < 0",
        "SELECT COUNT(*) FROM authenticators WHERE (last_step IS NOT NULL AND last_step < 0) \
         OR (kind = 'totp') <> (period IS NOT NULL) OR (kind = 'hotp') <> (counter IS NOT NULL) \
         OR (status = 'pending') <> (expires_at IS NOT NULL)",
    ];
    match database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL") {
        None => {
            let path = dir.join("data/mfa.db");
            let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut db).await.unwrap();
            assert_eq!(integrity, ["ok"], "PRAGMA integrity_check");
            let dangling = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut db).await.unwrap();
            assert!(dangling.is_empty(), "PRAGMA foreign_key_check found {} row(s)", dangling.len());
            for query in consistency {
                let bad: i64 = sqlx::query_scalar(query).fetch_one(&mut db).await.unwrap();
                assert_eq!(bad, 0, "{query}");
            }
            db.close().await.unwrap();
            "PRAGMA integrity_check = ok, foreign_key_check clean, schema invariants hold".into()
        }
        Some((_, url)) => {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            for query in consistency {
                let bad: i64 = sqlx::query_scalar(query).fetch_one(&mut db).await.unwrap();
                assert_eq!(bad, 0, "{query}");
            }
            let amcheck: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck')")
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            let checked = if amcheck {
                sqlx::query("CREATE EXTENSION IF NOT EXISTS amcheck").execute(&mut db).await.unwrap();
                // Every B-tree index of our tables against its heap, and every heap page.
                let indexes: i64 = sqlx::query_scalar(
                    "SELECT COUNT(bt_index_check(c.oid, true)) FROM pg_index i \
                     JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                     WHERE a.amname = 'btree' AND c.relnamespace = 'public'::regnamespace",
                )
                .fetch_one(&mut db)
                .await
                .unwrap();
                assert!(indexes >= 3, "the users and meta keys and the users source index were checked: {indexes}");
                let corrupt: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_class c, verify_heapam(c.oid) \
                     WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace",
                )
                .fetch_one(&mut db)
                .await
                .unwrap();
                assert_eq!(corrupt, 0, "verify_heapam found corruption");
                format!("amcheck: {indexes} B-tree indexes and every table verified, schema invariants hold")
            } else {
                eprintln!("note: the amcheck extension is not installed; only the schema invariants were checked");
                "schema invariants hold (no amcheck)".into()
            };
            db.close().await.unwrap();
            checked
        }
    }
}

/// What the load saw answered: enrollments (201) with their secrets, codes answered 200.
#[derive(Default)]
struct Answered {
    enrolled: Vec<(String, SecretBytes)>,
    accepted: Vec<(String, String)>,
    /// Requests that got no answer: the process died under them.
    cut_off: usize,
}

/// One client of the load: enroll a user, verify its right code, a wrong one now and then;
/// until `limit` iterations or the first request the server does not answer.
async fn client_loop(addr: std::net::SocketAddr, worker: usize, limit: usize, done: Arc<AtomicUsize>) -> Answered {
    let client = crate::helpers::http_client();
    let mut answered = Answered::default();
    for i in 0..limit {
        let name = format!("w{worker}n{i}");
        let created = client
            .post(format!("http://{addr}/admin/users"))
            .bearer_auth(ADMIN)
            .json(&json!({"username": name}))
            .send();
        let Ok(Ok(created)) = tokio::time::timeout(Duration::from_secs(10), created).await else {
            answered.cut_off += 1;
            break;
        };
        let status = created.status().as_u16();
        let Ok(body) = created.json::<Value>().await else {
            answered.cut_off += 1;
            break;
        };
        assert_eq!(status, 201, "{body}");
        let secret = SecretBytes::from_base32(body["secret"].as_str().unwrap()).unwrap();
        answered.enrolled.push((name.clone(), secret.clone()));
        done.fetch_add(1, Ordering::Relaxed);

        let mut codes = vec![now_code(&secret, OtpParams::default())];
        if i % 3 == 0 {
            codes.insert(0, crate::helpers::wrong(&codes[0]));
        }
        for code in codes {
            let sent =
                client.post(format!("http://{addr}/verify")).json(&json!({"username": name, "token": code})).send();
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(r)) if r.status() == 200 => answered.accepted.push((name.clone(), code)),
                Ok(Ok(r)) => assert_eq!(r.status(), 401),
                _ => {
                    answered.cut_off += 1;
                    return answered;
                }
            }
        }
    }
    answered
}

/// `kill -9` in the middle of enrollments and verifications: after a restart every
/// enrollment that was answered 201 is there, every code that was answered 200 is refused
/// as a replay, and the database passes its integrity checks.
#[tokio::test]
async fn kill_9_under_mixed_load_loses_no_enrollment_and_no_used_code() {
    let dir = tempfile::tempdir().unwrap();
    let env = [KEY, ("ADMIN_TOKEN", ADMIN), ("RATE_LIMIT", "off"), ("MAX_FAILED_ATTEMPTS", "1000")];
    let server = crate::process::start_server(dir.path(), &env).await;
    let (workers, per_worker, kill_after) = (8, 40, 60);

    let done = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> =
        (0..workers).map(|w| tokio::spawn(client_loop(server.addr, w, per_worker, done.clone()))).collect();
    let started = Instant::now();
    while done.load(Ordering::Relaxed) < kill_after && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await; // polls the load's progress
    }
    server.kill9().await;
    let mut all = Answered::default();
    for worker in load {
        let answered = worker.await.unwrap();
        all.enrolled.extend(answered.enrolled);
        all.accepted.extend(answered.accepted);
        all.cut_off += answered.cut_off;
    }
    assert!(all.enrolled.len() >= kill_after, "enrolled {}", all.enrolled.len());
    assert!(all.cut_off > 0, "the process died under requests in flight");
    assert!(all.enrolled.len() < workers * per_worker, "the kill came before the load ended");

    let checked = check_integrity(dir.path()).await;
    let restarted = crate::process::start_server(dir.path(), &env).await;
    let listed = restarted.admin(reqwest::Method::GET, "/admin/users?limit=500", None).await;
    let users: HashSet<&str> =
        listed.body["users"].as_array().unwrap().iter().filter_map(|u| u["username"].as_str()).collect();
    for (name, _) in &all.enrolled {
        assert!(users.contains(name.as_str()), "{name} was answered 201 and is gone");
    }
    let replays = verify_all(&restarted, all.accepted.iter().map(|(n, c)| (n.clone(), c.clone()))).await;
    for ((name, code), replay) in all.accepted.iter().zip(replays) {
        assert_eq!((replay.status, replay.body["error"].as_str()), (401, Some("invalid_token")), "{name} {code}");
    }
    // The secret returned at enrollment is the one stored: a user whose code was never
    // accepted verifies with it (at most `workers` users had a verification in flight).
    let accepted: HashSet<&str> = all.accepted.iter().map(|(n, _)| n.as_str()).collect();
    let fresh: Vec<(String, String)> = all
        .enrolled
        .iter()
        .filter(|(n, _)| !accepted.contains(n.as_str()))
        .map(|(n, secret)| (n.clone(), now_code(secret, OtpParams::default())))
        .collect();
    let ok = verify_all(&restarted, fresh.iter().cloned()).await.iter().filter(|r| r.status == 200).count();
    assert!(ok + workers >= fresh.len(), "{ok} of {} users verify with the secret they were given", fresh.len());
    eprintln!(
        "kill -9 under load: {} enrollments and {} verifications answered before the kill, {} cut off; \
         all kept; {checked}",
        all.enrolled.len(),
        all.accepted.len(),
        all.cut_off
    );
}

/// `/verify` for each (user, code), all at once; the replies in order.
async fn verify_all(server: &TestApp, attempts: impl Iterator<Item = (String, String)>) -> Vec<Reply> {
    let url = format!("http://{}/verify", server.addr);
    let tasks = attempts.map(|(name, code)| {
        let request = server.client.post(&url).json(&json!({"username": name, "token": code}));
        tokio::spawn(async move { Reply::read(request.send().await.unwrap()).await })
    });
    crate::helpers::join_all(tasks).await
}

/// A private PostgreSQL cluster (scripts/pg-test-cluster) that the test can stop and start;
/// stopped when dropped, whatever happens.
struct PrivateCluster {
    dir: tempfile::TempDir,
    url: String,
}

fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster")
}

impl PrivateCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(cluster_script())
            .args(["start"])
            .arg(dir.path().join("c"))
            // Committed means on disk: an immediate stop loses nothing that was answered.
            .env("PG_TEST_CLUSTER_OPTIONS", "-c synchronous_commit=on")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Self { dir, url }
    }

    fn run(&self, command: &str) {
        let out = std::process::Command::new(cluster_script()).arg(command).arg(self.dir.path().join("c")).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(cluster_script()).arg("stop").arg(self.dir.path().join("c")).status();
    }
}

/// PostgreSQL stops (`pg_ctl -m immediate`, as a crash) under a running server: every
/// request answers 503 within `DATABASE_TIMEOUT_SECONDS` with a clear error, the health
/// check says the database is unreachable, and once PostgreSQL is back the server serves
/// again by itself, with nothing lost.
#[tokio::test]
async fn when_postgresql_stops_requests_get_503_at_once_and_service_resumes_when_it_is_back() {
    if !postgres_mode() {
        eprintln!("skipped: needs PostgreSQL (the PostgreSQL pass of scripts/test runs it)");
        return;
    }
    let cluster = PrivateCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let timeout = 1.0;
    let timeout_var = timeout.to_string();
    let env = [
        KEY,
        ("ADMIN_TOKEN", ADMIN),
        ("DATABASE_URL", cluster.url.as_str()),
        ("DATABASE_TIMEOUT_SECONDS", timeout_var.as_str()),
    ];
    let server = crate::process::start_server(dir.path(), &env).await;
    let alice = server.admin_enroll(json!({"username": "alice"})).await;
    let bob = server.admin_enroll(json!({"username": "bob"})).await;
    let patched =
        server.admin(reqwest::Method::PATCH, "/admin/users/alice", Some(json!({"email": "alice@example.com"}))).await;
    assert_eq!(patched.status, 200);
    let used = now_code(&alice, OtpParams::default());
    assert_eq!(server.verify("alice", &used).await.status, 200);

    cluster.run("stop");
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let client = &server.client;
    let timed = |request: reqwest::RequestBuilder| async move {
        let started = Instant::now();
        let reply = Reply::read(request.send().await.unwrap()).await;
        (reply, started.elapsed())
    };
    let bob_code = now_code(&bob, OtpParams::default());
    let (verify, request_otp, health, listing) = tokio::join!(
        timed(client.post(url("/verify")).json(&json!({"username": "bob", "token": bob_code}))),
        timed(client.post(url("/request-otp")).json(&json!({"username": "alice"}))),
        timed(client.get(url("/healthcheck"))),
        timed(client.get(url("/admin/users")).bearer_auth(ADMIN)),
    );
    let bound = Duration::from_secs_f64(timeout + 1.0);
    for (what, (reply, took)) in [("verify", &verify), ("request-otp", &request_otp), ("admin", &listing)] {
        assert_eq!(reply.status, 503, "{what}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "database_unavailable", "{what}");
        assert!(reply.retry_after().is_some(), "{what}: Retry-After");
        assert!(*took < bound, "{what} took {took:?}");
    }
    let (health, health_took) = health;
    assert_eq!(health.status, 503);
    assert_eq!(
        (health.body["status"].as_str(), health.body["database"].as_str()),
        (Some("unavailable"), Some("unreachable"))
    );
    assert!(health_took < bound, "healthcheck took {health_took:?}");

    cluster.run("start");
    let back = Instant::now();
    loop {
        let health = Reply::read(client.get(url("/healthcheck")).send().await.unwrap()).await;
        if health.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "the server did not reconnect: {:?}", health.body);
        tokio::time::sleep(Duration::from_millis(100)).await; // polling the server's own recovery
    }
    let recovered = back.elapsed();

    let replay = server.verify("alice", &used).await;
    assert_eq!((replay.status, replay.body["error"].as_str()), (401, Some("invalid_token")), "nothing was lost");
    assert_eq!(server.verify("bob", &bob_code).await.status, 200, "the refused request consumed nothing");
    let logs = server.logged().await;
    server.kill9().await;
    assert!(logs.contains("database unavailable"), "the outage is logged");
    eprintln!(
        "PostgreSQL stopped: verify {:?}, request-otp {:?}, admin {:?}, healthcheck {health_took:?} (all 503, \
         DATABASE_TIMEOUT_SECONDS={timeout}); serving again {recovered:?} after PostgreSQL was back",
        verify.1, request_otp.1, listing.1
    );
}

/// The wrapper that runs `mfa` as if its disk had `bytes` left for any one file: the
/// file-size limit (RLIMIT_FSIZE) makes a write past it fail with EFBIG, and SIGXFSZ is
/// ignored so that the write fails instead of killing the process.
fn disk_full_after(bytes: u64) -> Vec<String> {
    let script = "trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\"";
    vec!["/bin/sh".into(), "-c".into(), script.into(), bytes.to_string()]
}

/// The disk fills up while the server serves (SQLite): every write that cannot be made
/// answers 503 with a clear error and accepts nothing: no code is accepted without being
/// recorded, no failure goes uncounted. After a restart every code answered 200 is still
/// used, and the database is intact.
#[tokio::test]
async fn a_disk_that_fills_up_while_serving_fails_closed() {
    if postgres_mode() {
        eprintln!("skipped: the PostgreSQL pass keeps no database on the local disk");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = [KEY, ("ADMIN_TOKEN", ADMIN), ("RATE_LIMIT", "off")];
    let setup = crate::process::start_server(dir.path(), &env).await;
    let mut users = Vec::new();
    for i in 0..40 {
        let name = format!("user{i}");
        users.push((name.clone(), setup.admin_enroll(json!({"username": &name})).await));
    }
    let (code, _) = setup.terminate().await;
    assert_eq!(code, 0);
    // A WAL left behind is written again from its start, so its frames would fit in it
    // without growing the file: empty it first, so that every new write grows a file.
    let db_url = format!("sqlite://{}", dir.path().join("data/mfa.db").display());
    let mut db = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    // Room for the files as they are (the database, its WAL, the 32 KiB shared-memory
    // index), and a few more WAL frames of 4 KiB.
    let largest = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .fold(32 * 1024, u64::max);
    let limit = largest + 12 * 4120;
    let wrapper = disk_full_after(limit);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let server = TestApp::builder().shared_dir(dir.path()).envs(&env).start_binary_via("server", &wrapper).await;
    // The checkpointer copies each commit back into the database file and the WAL is
    // written again from its start, so a quiet server's writes grow no file. A reader
    // holding a snapshot (a backup, a report) keeps the WAL's frames from being reused:
    // then every write grows it, until the disk is full.
    let mut reader = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    sqlx::query("SELECT count(*) FROM users").fetch_one(&mut reader).await.unwrap();

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (name, secret) in &users {
        let code = now_code(secret, OtpParams::default());
        let reply = server.verify(name, &code).await;
        match reply.status {
            200 => {
                assert!(refused.is_empty(), "{name}: accepted after a write had failed");
                accepted.push((name.clone(), code));
            }
            503 => {
                assert_eq!(reply.body["error"], "database_unavailable", "{:?}", reply.body);
                assert!(reply.retry_after().is_some());
                refused.push(name.clone());
            }
            other => panic!("{name}: {other} {:?}\n{}", reply.body, server.logs()),
        }
        if refused.len() >= 5 {
            break;
        }
    }
    assert!(
        !accepted.is_empty() && refused.len() == 5,
        "accepted {}, refused {}\n{}",
        accepted.len(),
        refused.len(),
        server.logs()
    );
    let wrong = server.verify(&users[users.len() - 1].0, "000000").await;
    assert_eq!(wrong.status, 503, "a failure that cannot be counted is not answered 401: {:?}", wrong.body);
    reader.close().await.unwrap();
    let logs = server.logged().await;
    server.kill9().await;
    assert!(!logs.contains("panicked"), "{logs}");
    let reason = logs.lines().find(|l| l.contains("database unavailable")).expect("the failed writes are logged");
    assert!(reason.contains("disk I/O error") || reason.contains("disk is full"), "{reason}");

    let checked = check_integrity(dir.path()).await;
    let restarted = crate::process::start_server(dir.path(), &env).await;
    for (name, code) in &accepted {
        let replay = restarted.verify(name, code).await;
        assert_eq!((replay.status, replay.body["error"].as_str()), (401, Some("invalid_token")), "{name}");
    }
    eprintln!(
        "disk full while serving (file-size limit {limit} B): {} codes accepted and recorded, then {} refused \
         with 503; {checked}",
        accepted.len(),
        refused.len()
    );
}

/// Whether this process runs as root, where file modes do not stop writes.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempfile().unwrap();
    probe.metadata().unwrap().uid() == 0
}

/// Runs `mfa server` to its exit: (exit code, standard error).
async fn start_up(cmd: &mut tokio::process::Command) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.arg("server").output())
        .await
        .unwrap_or_else(|_| panic!("mfa server did not exit within 30 s: {cmd:?}"))
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_clear_line(code: i32, stderr: &str, starts: &str, mentions: &str) {
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mfa: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "the error is the last line: {stderr}");
    assert!(errors[0].starts_with(starts) && errors[0].contains(mentions), "{}", errors[0]);
}

/// A read-only data directory or a full disk at start-up: one clear line that names the
/// file and what to check, exit code 1, no panic. With SQLite it is the database file that
/// cannot be written; with PostgreSQL the generated key file (no SECRET_KEY), and a key
/// file that could not be written whole is not left behind to fail the next start.
#[tokio::test]
async fn a_read_only_data_directory_or_a_full_disk_stops_start_up_with_one_clear_line() {
    use std::os::unix::fs::PermissionsExt;
    let root = running_as_root();
    let wrapper = disk_full_after(40);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let pg = postgres_mode();
    let env: &[(&str, &str)] = if pg { &[] } else { &[KEY] };
    let (starts, hint) = if pg {
        ("mfa: cannot read or create the key file", "secret.key")
    } else {
        ("mfa: cannot open the database", "check that this user can write to its directory (MFA_DATA_DIR)")
    };

    // A full disk.
    let full = tempfile::tempdir().unwrap();
    let (code, stderr) = start_up(&mut mfa_via(full.path(), env, &wrapper)).await;
    assert_one_clear_line(code, &stderr, starts, hint);
    if pg {
        assert!(stderr.contains("File too large"), "{stderr}");
        assert!(!full.path().join("data/secret.key").exists(), "no half-written key file is left");
        let server = crate::process::start_server(full.path(), env).await;
        server.kill9().await; // with room again, it starts
    }

    // A read-only data directory: its owner cannot write to it (root can, so as root the
    // server runs as `nobody`, the data directory being nobody's).
    let ro = tempfile::tempdir().unwrap();
    let data = ro.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut cmd = mfa(ro.path(), env);
    if root {
        std::fs::set_permissions(ro.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
    let (code, stderr) = start_up(&mut cmd).await;
    assert_one_clear_line(code, &stderr, starts, hint);
    let file = if pg { "data/secret.key".to_string() } else { data.join("mfa.db").display().to_string() };
    assert!(stderr.contains(&file), "names the file: {stderr}");

    if !pg {
        // A database that exists, on a volume that became read-only: neither the
        // directory nor the files in it can be written.
        let existing = tempfile::tempdir().unwrap();
        let added = cli(existing.path(), env, &["user", "add", "alice", "--no-qr"]).await;
        assert_eq!(added.code, 0, "{}", added.stderr);
        let data = existing.path().join("data");
        let mut cmd = mfa(existing.path(), env);
        if root {
            std::fs::set_permissions(existing.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
            cmd.uid(65534).gid(65534);
        }
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            if root {
                std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o500)).unwrap();
        let (code, stderr) = start_up(&mut cmd).await;
        assert_one_clear_line(code, &stderr, starts, hint);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
}
