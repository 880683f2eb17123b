//! Tests of the built `mfa` binary as an operator runs it: start-up, configuration errors,
//! the CLI next to a running server, `kill -9`, and what reaches the logs.

use std::path::Path;
use std::time::Duration;

use mfa::clock::{Clock, SystemClock};
use mfa::otp::{self, OtpParams, SecretBytes};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, Var, extract_code};

const SEED_ENV: &str = include_str!("../fixtures/seed.env");

pub(crate) fn mfa(dir: &Path, env: &[(&str, &str)]) -> Command {
    mfa_via(dir, env, &[])
}

/// `mfa` started through `wrapper` (a program and its arguments, given the binary's path
/// and the subcommand after them), in `dir` with only the database's variables and `env`.
pub(crate) fn mfa_via<I>(dir: &Path, env: I, wrapper: &[&str]) -> Command
where
    I: IntoIterator,
    I::Item: Var,
{
    let binary = env!("CARGO_BIN_EXE_mfa");
    let mut cmd = match wrapper.split_first() {
        None => Command::new(binary),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(binary);
            cmd
        }
    };
    // The tests name the data directory, as an operator would with a .env: a user command
    // in a directory without either refuses to make a database (tested apart).
    cmd.current_dir(dir)
        .env_clear()
        .env("MFA_DATA_DIR", "./data")
        .envs(crate::helpers::database_vars(dir))
        .envs(env.into_iter().map(|v| v.pair()))
        .kill_on_drop(true);
    cmd
}

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One `mfa` command in `dir`, to its end.
pub async fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let out = tokio::time::timeout(Duration::from_secs(30), mfa(dir, env).args(args).output())
        .await
        .expect("the command finishes")
        .unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mfa server` in `dir` (which the test keeps), once it listens.
pub async fn start_server(dir: &Path, env: &[(&str, &str)]) -> TestApp {
    TestApp::builder().shared_dir(dir).envs(env).start_binary("server").await
}

/// Whether `code` appears in `text` as a whole run of digits, other than the fraction of a
/// second of a timestamp: the log's `…T22:22:15.073664Z` has a six-digit run of its own,
/// which one line in a million shares with any given code.
pub(crate) fn contains_code(text: &str, code: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(code).any(|(at, _)| {
        let before = &bytes[..at];
        !before.last().is_some_and(u8::is_ascii_digit)
            && !bytes.get(at + code.len()).is_some_and(u8::is_ascii_digit)
            && !follows_clock_time(before)
    })
}

/// Whether `before` ends in `hh:mm:ss.`, as a timestamp does before its fraction of a second.
fn follows_clock_time(before: &[u8]) -> bool {
    let Some(tail) = before.len().checked_sub(9).map(|from| &before[from..]) else { return false };
    tail[8] == b'.'
        && tail[2] == b':'
        && tail[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| tail[i].is_ascii_digit())
}

#[test]
fn a_code_is_found_as_a_run_of_digits_but_not_as_a_timestamps_fraction_of_a_second() {
    assert!(contains_code("your code is 073664.", "073664"));
    assert!(contains_code(r#"{"code":"073664"}"#, "073664"));
    assert!(!contains_code("1073664 and 0736645", "073664"));
    assert!(!contains_code(r#"{"timestamp":"2026-12-06T22:22:15.073664Z"}"#, "073664"));
    assert!(!contains_code("2026-12-06T22:22:15.073664Z  INFO mfa", "073664"));
    assert!(contains_code("2026-12-06T22:22:15.000001Z  INFO code 073664", "073664"));
    assert!(contains_code("took 15.073664 s", "073664"));
}

pub fn now_code(secret: &SecretBytes, params: OtpParams) -> String {
    otp::totp_code(secret, params, SystemClock.now())
}

pub fn secret_from_cli(stdout: &str) -> SecretBytes {
    let line = stdout.lines().find(|l| l.starts_with("Secret (shown only now): ")).expect("the secret is printed");
    SecretBytes::from_base32(line.rsplit(' ').next().unwrap()).unwrap()
}

#[tokio::test]
async fn a_fresh_directory_without_env_serves_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();

    let server = start_server(dir.path(), &[]).await;

    let health = server.get("/healthcheck").await;
    assert_eq!((health.status, health.body["database"].as_str()), (200, Some("ok")));
    let logs = server.logged().await;
    assert!(logs.contains("mfa user add NAME"), "a log line tells how to enroll:\n{logs}");
    assert!(logs.contains("no SECRET_KEY set"), "{logs}");
    if !crate::helpers::postgres_mode() {
        assert!(dir.path().join("data/mfa.db").exists());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn check_config_reads_the_seed_env_verbatim_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), SEED_ENV).unwrap();

    let out = cli(dir.path(), &[], &["check-config"]).await;

    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for expected in ["200 per day", "user 'dair'", "user 'bob'", "email dair@example.com", "smtp.example.com"] {
        assert!(out.stdout.contains(expected), "missing {expected:?}:\n{}", out.stdout);
    }
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in ["base32secret3232", "your-email-password", "your-telegram-bot-token", "your-secret-key"] {
        assert!(!all.contains(secret), "{secret} was printed:\n{all}");
    }
    assert!(all.contains("user 'dair' (DAIR_SECRET) has a 80-bit secret"), "{all}");
    assert!(all.contains("user 'bob' (BOB_SECRET) has a 80-bit secret"), "{all}");
}

/// A user command says which database it opens, and makes a new one only where it was
/// asked to: not in a directory that has neither a `.env` nor a database.
#[tokio::test]
async fn a_user_command_names_its_database_and_makes_none_where_nobody_asked() {
    if crate::helpers::postgres_mode() {
        eprintln!("skipped: the PostgreSQL pass names its database by DATABASE_URL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unset = [("MFA_DATA_DIR", "")]; // empty counts as unset
    let refused = cli(dir.path(), &unset, &["user", "list"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no database at ./data/mfa.db") && refused.stderr.contains("--data-dir"),
        "{}",
        refused.stderr
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");

    let added = cli(dir.path(), &unset, &["user", "--data-dir", "srv", "add", "dair", "--no-qr"]).await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(added.stderr.contains("creating a new SQLite database srv/mfa.db"), "{}", added.stderr);
    let listed = cli(dir.path(), &[("MFA_DATA_DIR", "srv")], &["user", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stderr.contains("using the SQLite database srv/mfa.db"), "{}", listed.stderr);
    assert!(listed.stdout.contains("dair"), "{}", listed.stdout);
}

/// `mfa healthcheck` against a server that is not there names the address it tried.
#[tokio::test]
async fn the_healthcheck_command_names_the_address_it_could_not_reach() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::closed_port();
    let out = cli(dir.path(), &[("MFA_BIND", &format!("127.0.0.1:{port}"))], &["healthcheck"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&format!("not reachable at http://127.0.0.1:{port}/healthcheck")), "{}", out.stderr);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
}

/// The 80-bit warning's advice works as written: each of its two ways gives the user a
/// 160-bit secret, and neither warns again.
#[tokio::test]
async fn the_short_secret_warning_gives_advice_that_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "DAIR_SECRET=base32secret3232\nCAROL_SECRET=base32secret3232\n").unwrap();
    let warned = cli(dir.path(), &[], &["check-config"]).await;
    let all = format!("{}{}", warned.stdout, warned.stderr);
    assert!(all.contains("remove DAIR_SECRET and run `mfa user add dair`"), "{all}");
    assert!(all.contains("put a new secret in CAROL_SECRET"), "{all}");

    // One way: a new secret in the variable (as the suggested command makes one);
    let fresh = data_encoding::BASE32_NOPAD.encode(&[7u8; 20]);
    // The other: the variable removed, the user added to the database.
    std::fs::write(dir.path().join(".env"), format!("CAROL_SECRET={fresh}\n")).unwrap();
    let added = cli(dir.path(), &[], &["user", "add", "dair", "--no-qr"]).await;
    assert_eq!(added.code, 0, "{}{}", added.stdout, added.stderr);
    assert!(!added.stdout.contains("Scan the QR code"), "--no-qr prints no QR code to scan: {}", added.stdout);
    let after = cli(dir.path(), &[], &["check-config"]).await;
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(!format!("{}{}", after.stdout, after.stderr).contains("-bit secret"), "{}", after.stdout);
}

#[tokio::test]
async fn the_seed_env_serves_its_users_as_the_flask_design_did() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), SEED_ENV).unwrap();
    // The seed's channel credentials are placeholders: empty them in the environment (which
    // wins over .env) so that codes go to the file notifier.
    let env = [("RATE_LIMIT", "1000 per minute"), ("TELEGRAM_TOKEN", ""), ("EMAIL_SMTP_SERVER", "")];
    let server = start_server(dir.path(), &env).await;
    let seed_secret = SecretBytes::from_base32("base32secret3232").unwrap();

    let ok = server.verify("dair", &now_code(&seed_secret, OtpParams::default())).await;
    assert_eq!((ok.status, ok.body), (200, json!({"valid": true, "method": "totp"})));

    let sent = server.post_json("/request-otp", json!({"username": "bob"})).await;
    assert_eq!(sent.status, 200);
    assert_eq!(sent.body["channels"], json!(["email", "telegram"]));
    let log = std::fs::read_to_string(dir.path().join("data/notifications.log")).unwrap();
    assert!(log.contains("bob@example.com") && log.contains("987654321"));
}

#[tokio::test]
async fn a_bad_value_stops_start_up_with_one_message_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("RATE_LIMIT", "lots"),
        ("DAIR_SECRET", "not*base32*secret"),
        ("MFA_BIND", "127.0.0.1:70000"),
        ("OTP_ALGORITHM", "MD5"),
        ("LOG_FORMAT", "xml"),
    ];
    for (var, value) in cases {
        // A user from the process environment is one only when MFA_ENV_USERS names it.
        let named = [(var, value), ("MFA_ENV_USERS", "dair")];
        let env = if var == "DAIR_SECRET" { &named[..] } else { &named[..1] };
        let out = cli(dir.path(), env, &["server"]).await;
        assert_eq!(out.code, 2, "{var}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}: one message: {}", out.stderr);
        assert!(lines[0].starts_with(&format!("mfa: invalid configuration: {var}: ")), "{}", lines[0]);
        if var.ends_with("_SECRET") {
            assert!(!out.stderr.contains(value), "the secret was echoed: {}", out.stderr);
        }
    }
    std::fs::write(dir.path().join(".env"), "RATE_LIMIT=lots\n").unwrap();
    let from_file = cli(dir.path(), &[], &["check-config"]).await;
    assert_eq!(from_file.code, 2);
    assert!(from_file.stderr.contains("RATE_LIMIT: cannot read 'lots'"), "{}", from_file.stderr);
}

#[tokio::test]
async fn cli_enrollment_works_while_the_server_runs_and_replays_fail_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SECRET_KEY", "process-test-key-0123456789abcdef")];
    let server = start_server(dir.path(), &env).await;

    let added = cli(dir.path(), &env, &["user", "add", "alice", "--email", "alice@example.com"]).await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(added.stdout.contains("otpauth://totp/MFA:alice?secret="), "{}", added.stdout);
    assert!(added.stdout.contains('█'), "a QR code is drawn");
    let secret = secret_from_cli(&added.stdout);
    let code = now_code(&secret, OtpParams::default());

    assert_eq!(server.verify("alice", &code).await.status, 200, "no restart needed");
    server.kill9().await;
    let restarted = start_server(dir.path(), &env).await;

    let replay = restarted.verify("alice", &code).await;
    assert_eq!((replay.status, replay.body["error"].as_str()), (401, Some("invalid_token")));
}

#[tokio::test]
async fn the_user_commands_manage_users_and_protect_env_users() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DAIR_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), ("MFA_ENV_USERS", "dair")];
    let run = |args: &'static [&'static str]| cli(dir.path(), &env, args);

    let added =
        run(&["user", "add", "alice", "--telegram-id", "42", "--algorithm", "sha256", "--digits", "8", "--no-qr"])
            .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(added.stdout.contains("algorithm=SHA256") && added.stdout.contains("digits=8"), "{}", added.stdout);
    let first_secret = secret_from_cli(&added.stdout);

    let list = run(&["user", "list"]).await;
    assert!(list.stdout.contains("alice") && list.stdout.contains("dair"), "{}", list.stdout);
    assert!(list.stdout.lines().any(|l| l.starts_with("dair") && l.contains(" env ")), "{}", list.stdout);

    let show = run(&["user", "show", "alice"]).await;
    assert!(show.stdout.contains("SHA256") && show.stdout.contains("42"), "{}", show.stdout);
    assert!(!show.stdout.contains(&first_secret.to_base32()), "show never prints the secret");
    // Times as people read them, with the Unix time beside: `2026-12-02T03:41:00Z (1796182860)`.
    let created = show.stdout.lines().find(|l| l.starts_with("created at:")).expect("a creation time");
    let (readable, unix) = created["created at:".len()..].trim().split_once(" (").unwrap();
    let unix: u64 = unix.trim_end_matches(')').parse().unwrap();
    let now = mfa::clock::Clock::now(&mfa::clock::SystemClock);
    assert!(unix <= now && now - unix < 600, "{created}");
    assert_eq!(readable.len(), "2026-12-02T03:41:00Z".len(), "{created}");
    assert!(readable.ends_with('Z') && readable.as_bytes()[10] == b'T', "{created}");

    let twice = run(&["user", "add", "alice"]).await;
    assert_eq!(twice.code, 1);
    assert!(twice.stderr.contains("already exists"), "{}", twice.stderr);

    let env_remove = run(&["user", "remove", "dair"]).await;
    assert_ne!(env_remove.code, 0);
    assert!(env_remove.stderr.contains("DAIR_SECRET"), "{}", env_remove.stderr);

    let rotated = run(&["user", "rotate", "alice", "--no-qr"]).await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert_ne!(secret_from_cli(&rotated.stdout), first_secret);

    assert_eq!(run(&["user", "unlock", "alice"]).await.code, 0);
    assert_eq!(run(&["user", "remove", "alice"]).await.code, 0);
    let gone = run(&["user", "show", "alice"]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("no user 'alice'"));
    let bad_name = run(&["user", "add", "bad name!"]).await;
    assert_eq!(bad_name.code, 2);
}

#[tokio::test]
async fn a_changed_secret_key_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let first =
        cli(dir.path(), &[("SECRET_KEY", "first-key-0123456789abcdef")], &["user", "add", "alice", "--no-qr"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    let out = cli(dir.path(), &[("SECRET_KEY", "second-key-0123456789abcdef")], &["server"]).await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("encrypted with another key"), "{}", out.stderr);
}

/// With the development notifier (codes go to `data/notifications.log`, as they must), at
/// debug level: no secret, key or code in any log line. The search of everything written
/// in a session with real channels, at TRACE, is `secrets::nothing_the_process_writes_...`.
#[tokio::test]
async fn with_the_file_notifier_logs_never_contain_a_secret_or_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let key = "log-test-key-5f1e0c9a7b3d2e4f6a8b";
    let env_secret = "KRUGS4ZANFZSAYJAONSWG4TFOQQGM33SEBWG6Z3T";
    let env = [
        ("SECRET_KEY", key),
        ("DAIR_SECRET", env_secret),
        ("MFA_ENV_USERS", "dair"),
        ("DAIR_EMAIL", "dair@example.com"),
        ("OTP_DIGITS", "8"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ];
    let added = cli(dir.path(), &env, &["user", "add", "alice", "--no-qr"]).await;
    let alice = secret_from_cli(&added.stdout);
    let server = start_server(dir.path(), &env).await;
    let params = OtpParams { digits: 8, ..OtpParams::default() };

    assert_eq!(server.post_json("/request-otp", json!({"username": "dair"})).await.status, 200);
    let notes = std::fs::read_to_string(dir.path().join("data/notifications.log")).unwrap();
    let sent = extract_code(&notes);
    let dair_secret = SecretBytes::from_base32(env_secret).unwrap();
    let app_code = now_code(&dair_secret, params);
    let wrong_code = if sent == "00000000" { "11111111" } else { "00000000" };
    assert_eq!(server.verify("dair", wrong_code).await.status, 401);
    assert_eq!(server.verify("dair", &sent).await.status, 200);
    assert_eq!(server.verify("dair", &app_code).await.status, 200);
    assert_eq!(server.verify("dair", &app_code).await.status, 401);
    let alice_code = now_code(&alice, params);
    assert_eq!(server.verify("alice", &alice_code).await.status, 200);
    let logs = format!("{}{}", server.logged().await, added.stderr);
    server.kill9().await;

    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > 10, "debug logging produced output:\n{logs}");
    assert!(lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "LOG_FORMAT=json gives JSON lines");
    assert!(logs.contains("\"outcome\":\"valid\"") && logs.contains("\"outcome\":\"replayed\""), "{logs}");
    let secrets = [key.to_string(), env_secret.to_string(), alice.to_base32(), alice.to_base32().to_lowercase()];
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
    for code in [sent.as_str(), app_code.as_str(), alice_code.as_str(), wrong_code] {
        assert!(!contains_code(&logs, code), "code {code} reached the logs:\n{logs}");
    }
}

/// The whole flow of the seed's architecture in one `mfa serve` process: /request-otp, the
/// code read out of a real SMTP server's mailbox and the Bot API stand-in, /verify.
#[tokio::test]
async fn serve_delivers_a_code_by_email_and_telegram_that_verifies_once() {
    use crate::support::smtp::{PASSWORD, SmtpServer};
    use crate::support::telegram::{BotApi, TOKEN};

    let smtp = SmtpServer::start("starttls", true, &[]).await;
    let bot = BotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api_token = "notify-api-token-e2e-51c0";
    let mut env: Vec<(String, String)> = smtp.env();
    env.extend(bot.env());
    env.extend([
        ("NOTIFY_API_TOKEN".to_string(), api_token.to_string()),
        ("DAIR_SECRET".into(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()),
        ("MFA_ENV_USERS".into(), "dair".into()),
        ("DAIR_EMAIL".into(), "dair@example.com".into()),
        ("DAIR_TELEGRAM_ID".into(), "123456789".into()),
        ("RUST_LOG".into(), "debug".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestApp::builder().shared_dir(dir.path()).envs(&env).start_binary("serve").await;

    let sent = server.post_json("/request-otp", json!({"username": "dair"})).await;

    assert_eq!(sent.status, 200, "{:?}\n{}", sent.body, server.logs());
    assert_eq!(sent.body["channels"], json!(["email", "telegram"]));
    let mail = smtp.received();
    assert_eq!(mail.len(), 1);
    let code = extract_code(mail[0]["text"].as_str().unwrap());
    assert_eq!(extract_code(bot.received()[0]["text"].as_str().unwrap()), code);
    assert_eq!(server.verify("dair", &code).await.status, 200);
    assert_eq!(server.verify("dair", &code).await.status, 401);

    let logs = server.logged().await;
    server.kill9().await;
    assert!(logs.contains("notification service listening on http://"));
    for secret in [PASSWORD, TOKEN, api_token] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
    assert!(!contains_code(&logs, &code), "the code reached the logs");
}

/// SIGTERM while a request is in flight: the request still gets its answer, new
/// connections are refused, and the process exits cleanly.
#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish() {
    use crate::support::telegram::{BotApi, Scripted};

    let bot = BotApi::start().await;
    bot.script([Scripted::Delay(Duration::from_millis(1500))]);
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = bot.env();
    env.extend([("DAIR_SECRET".to_string(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".to_string())]);
    env.push(("DAIR_TELEGRAM_ID".into(), "42".into()));
    env.push(("MFA_ENV_USERS".into(), "dair".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestApp::builder().shared_dir(dir.path()).envs(&env).start_binary("serve").await;
    let url = format!("http://{}/request-otp", server.addr);
    let client = server.client.clone();
    let in_flight = tokio::spawn(async move { client.post(&url).json(&json!({"username": "dair"})).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await; // the request is now waiting on Telegram
    let addr = server.addr;

    let (code, logs) = server.terminate().await;

    let answered = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(answered.status(), 200, "{logs}");
    assert_eq!(code, 0, "{logs}");
    assert!(logs.contains("shutting down") && logs.contains("stopped"), "{logs}");
    assert!(crate::helpers::http_client().get(format!("http://{addr}/healthcheck")).send().await.is_err());
}

#[tokio::test]
async fn the_healthcheck_command_reports_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]).await;
    let url = format!("http://{}/healthcheck", server.addr);

    let up = cli(dir.path(), &[], &["healthcheck", "--url", &url]).await;
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(up.stdout.contains("\"status\":\"ok\""));

    server.kill9().await;
    let down = cli(dir.path(), &[], &["healthcheck", "--url", &url]).await;
    assert_eq!(down.code, 1);
}

#[tokio::test]
async fn users_are_imported_from_csv_with_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "username,secret,email,telegram_id\n# moved from the old system\n\
               alice,MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U,alice@example.com,\n\
               bob,KRUGS4ZANFZSAYJAONSWG4TFOQQGM33S,,42\n";
    std::fs::write(dir.path().join("users.csv"), csv).unwrap();

    let out = cli(dir.path(), &[], &["user", "import", "users.csv"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Imported 2 user(s); 0 already existed"), "{}", out.stdout);
    let again = cli(dir.path(), &[], &["user", "import", "users.csv"]).await;
    assert!(again.stdout.contains("Imported 0 user(s); 2 already existed"), "{}", again.stdout);

    let server = start_server(dir.path(), &[]).await;
    let alice = SecretBytes::from_base32("MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U").unwrap();
    assert_eq!(server.verify("alice", &now_code(&alice, OtpParams::default())).await.status, 200);
    let sent = server.post_json("/request-otp", json!({"username": "bob"})).await;
    assert_eq!(sent.body["channels"], json!(["telegram"]));

    std::fs::write(dir.path().join("bad.csv"), "carol,not*base32*at*all\n").unwrap();
    let bad = cli(dir.path(), &[], &["user", "import", "bad.csv"]).await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("line 1") && !bad.stderr.contains("not*base32"), "{}", bad.stderr);
}

/// At the default level every request has its line, but a health check or a scrape that
/// succeeds (every few seconds from a container runtime or Prometheus) has none; when one
/// fails, its line still names its path and request id. Nobody reads the log until SIGTERM
/// has been sent, so most lines are still queued in the process then: SIGTERM writes them.
#[tokio::test]
async fn routine_probes_are_logged_only_when_they_fail_and_sigterm_writes_every_line() {
    const VERIFICATIONS: usize = 1_000; // about 250 KB of lines: more than the pipe and the writer's buffer hold
    let dir = tempfile::tempdir().unwrap();
    let env = [("RUST_LOG", "info,sqlx=warn"), ("RATE_LIMIT", "off")];
    let server = TestApp::builder().shared_dir(dir.path()).envs(&env).stall_log_reader().start_binary("server").await;
    for _ in 0..3 {
        assert_eq!(server.get("/healthcheck").await.status, 200);
        assert_eq!(server.client.get(server.url("/metrics")).send().await.unwrap().status(), 200);
    }
    let refused =
        server.client.post(server.url("/healthcheck")).header("x-request-id", "probe-405").send().await.unwrap();
    assert_eq!(refused.status(), 405);
    for i in 0..VERIFICATIONS {
        assert_eq!(server.verify(&format!("nobody{i}"), "123456").await.status, 404);
    }

    let (code, logs) = server.terminate().await;
    assert_eq!(code, 0, "{logs}");
    let lines =
        |needle: &str| logs.lines().filter(|l| l.contains("finished processing request") && l.contains(needle)).count();
    assert_eq!(lines("path=/healthcheck status=200"), 0, "{logs}");
    assert_eq!(lines("path=/metrics"), 0, "{logs}");
    let failed: Vec<&str> = logs.lines().filter(|l| l.contains("probe-405")).collect();
    assert!(
        failed.len() == 1 && failed[0].contains("path=\"/healthcheck\"") && failed[0].contains("status=405"),
        "{logs}"
    );
    assert_eq!(lines("path=/verify"), VERIFICATIONS, "each verification has its line, none lost at exit:\n{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}
