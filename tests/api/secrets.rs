//! Secrets: a whole session against the real binary, with real channels and every log
//! level on, then a search of everything the process wrote for every secret and code.

use std::path::Path;

use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER, HEXUPPER};
use mfa::otp::{OtpParams, SecretBytes};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::{Reply, database_vars, extract_code, postgres_mode, until_async, wrong};
use crate::process::{cli, contains_code, now_code, secret_from_cli};
use crate::support::smtp::{LOGIN, PASSWORD, SmtpServer};
use crate::support::telegram::{BotApi, TOKEN};

const SECRET_KEY: &str = "secrets-test-key-4b7e19c2d0a85f36";
const ADMIN: &str = "secrets-admin-token-9d2c6a1f0e";
const API_KEYS: [&str; 2] = ["backend-key-one-7a3f02", "backend-key-two-c915e8"];
const NOTIFY_TOKEN: &str = "notify-token-secrets-5e8d3b";
const DAIR_SECRET: &str = "KRUGS4ZANFZSAYJAONSWG4TFOQQGM33SEBWG6Z3T";

/// Everything the session must not let out: (what it is, the bytes to search for).
#[derive(Default)]
struct Needles {
    secrets: Vec<(String, Vec<u8>)>,
    codes: Vec<String>,
}

impl Needles {
    fn secret(&mut self, what: &str, value: &str) {
        self.secrets.push((what.to_string(), value.as_bytes().to_vec()));
    }

    /// A TOTP secret in every spelling it could take: raw, base32, hex, base64.
    fn totp_secret(&mut self, who: &str, secret: &SecretBytes) {
        let raw = secret.expose();
        let base32 = secret.to_base32();
        self.secrets.push((format!("{who}'s secret (raw bytes)"), raw.to_vec()));
        for (form, text) in [
            ("base32", base32.clone()),
            ("base32, lower case", base32.to_lowercase()),
            ("hex", HEXLOWER.encode(raw)),
            ("HEX", HEXUPPER.encode(raw)),
            ("base64", BASE64.encode(raw)),
            ("base64, no padding", BASE64_NOPAD.encode(raw)),
        ] {
            self.secrets.push((format!("{who}'s secret ({form})"), text.into_bytes()));
        }
    }
}

/// Whether `code` is in `bytes` as a whole run of digits (not inside a longer number).
fn holds_code(bytes: &[u8], code: &str) -> bool {
    let code = code.as_bytes();
    bytes.windows(code.len()).enumerate().any(|(at, window)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + code.len()).copied();
        window == code && !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stored data as the database holds it: the SQLite files (database, WAL, shared
/// memory) and anything else in the data directory, or a data-only `pg_dump` (text).
async fn stored_data(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    // With PostgreSQL, a SECRET_KEY and real channels the data directory may not exist.
    for entry in std::fs::read_dir(dir.join("data")).into_iter().flatten() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    if let Some((_, url)) = database_vars(dir).into_iter().find(|(k, _)| k == "DATABASE_URL") {
        let dump = tokio::process::Command::new("pg_dump")
            .args(["--data-only", "--no-owner", "--dbname", &url])
            .output()
            .await
            .expect("pg_dump runs");
        assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
        files.push(("pg_dump --data-only".into(), dump.stdout));
    }
    files
}

struct Session<'a> {
    server: &'a TestApp,
    needles: &'a mut Needles,
}

impl Session<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let url = format!("http://{}{path}", self.server.addr);
        let mut request = self.server.client.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn verify(&mut self, user: &str, code: &str, key: &str) -> u16 {
        self.needles.codes.push(code.to_string());
        let reply = self.call(reqwest::Method::POST, "/verify", key, Some(json!({"username": user, "token": code})));
        reply.await.status
    }

    async fn request_otp(&self, user: &str) {
        let reply = self.call(reqwest::Method::POST, "/request-otp", API_KEYS[0], Some(json!({"username": user})));
        let reply = reply.await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        self.server.admin(method, path, body).await
    }
}

/// A full session against `mfa serve` with email (aiosmtpd, STARTTLS and a password) and
/// Telegram (the Bot API stand-in), logging at TRACE for every crate in JSON: users from
/// `.env`, the CLI and the admin API; codes sent, verified right, wrong and replayed;
/// secrets rotated. Then everything the processes wrote (their logs, the database files
/// or a dump of the PostgreSQL database, the data directory) is searched for every secret,
/// token, password and code of the session, in every encoding they could take. The only
/// places allowed to hold them are the encrypted column (so not in clear) and the messages
/// to the user.
#[tokio::test]
async fn nothing_the_process_writes_holds_a_secret_a_token_or_a_code() {
    let smtp = SmtpServer::start("starttls", true, &[]).await;
    let bot = BotApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api_keys = API_KEYS.join(",");
    let mut env: Vec<(String, String)> = smtp.env();
    env.extend(bot.env());
    env.extend(
        [
            ("SECRET_KEY", SECRET_KEY),
            ("ADMIN_TOKEN", ADMIN),
            ("MFA_API_KEYS", api_keys.as_str()),
            ("NOTIFY_API_TOKEN", NOTIFY_TOKEN),
            ("DAIR_SECRET", DAIR_SECRET),
            ("MFA_ENV_USERS", "dair"),
            ("DAIR_EMAIL", "dair@example.com"),
            ("DAIR_TELEGRAM_ID", "123456789"),
            ("OTP_RESEND_SECONDS", "0"),
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", "json"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut needles = Needles::default();
    for (what, value) in [
        ("SECRET_KEY", SECRET_KEY),
        ("ADMIN_TOKEN", ADMIN),
        ("an API key", API_KEYS[0]),
        ("an API key", API_KEYS[1]),
        ("NOTIFY_API_TOKEN", NOTIFY_TOKEN),
        ("the SMTP password", PASSWORD),
        ("the Telegram bot token", TOKEN),
        ("the Telegram bot token's secret part", TOKEN.split_once(':').unwrap().1),
    ] {
        needles.secret(what, value);
    }
    // The SMTP password as AUTH PLAIN and AUTH LOGIN put it on the wire.
    needles.secret("SMTP AUTH PLAIN", &BASE64.encode(format!("\0{LOGIN}\0{PASSWORD}").as_bytes()));
    needles.secret("SMTP AUTH LOGIN", &BASE64.encode(PASSWORD.as_bytes()));
    let dair = SecretBytes::from_base32(DAIR_SECRET).unwrap();
    needles.totp_secret("dair", &dair);

    // The CLI: enroll, then rotate. It prints the secret on standard output, once, by
    // design; its logs (standard error) are searched.
    let mut logs = String::new();
    let added = cli(dir.path(), &env, &["user", "add", "carol", "--email", "carol@example.com", "--no-qr"]).await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let carol_old = secret_from_cli(&added.stdout);
    let rotated = cli(dir.path(), &env, &["user", "rotate", "carol", "--no-qr"]).await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let carol = secret_from_cli(&rotated.stdout);
    needles.totp_secret("carol (before rotation)", &carol_old);
    needles.totp_secret("carol", &carol);
    logs.push_str(&added.stderr);
    logs.push_str(&rotated.stderr);

    let server = TestApp::builder().shared_dir(dir.path()).envs(&env).start_binary("serve").await;
    let mut s = Session { server: &server, needles: &mut needles };
    let key = API_KEYS[1];

    // The admin API: enroll alice, later rotate her secret.
    let body = json!({"username": "alice", "email": "alice@example.com", "telegram_id": "42"});
    let created = s.admin(reqwest::Method::POST, "/admin/users", Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let alice_old = SecretBytes::from_base32(created.body["secret"].as_str().unwrap()).unwrap();
    s.needles.totp_secret("alice (before rotation)", &alice_old);

    // A sent code: by email and Telegram; wrong, right, replayed.
    s.request_otp("alice").await;
    let sent = extract_code(smtp.received().last().unwrap()["text"].as_str().unwrap());
    assert_eq!(extract_code(bot.received().last().unwrap()["text"].as_str().unwrap()), sent);
    // (No alert has gone to alice yet: nothing about her account changed.)
    assert_eq!(s.verify("alice", &wrong(&sent), key).await, 401);
    assert_eq!(s.verify("alice", &sent, key).await, 200);
    assert_eq!(s.verify("alice", &sent, key).await, 401);

    // App codes: right, replayed, wrong.
    let app_code = now_code(&alice_old, OtpParams::default());
    assert_eq!(s.verify("alice", &app_code, key).await, 200);
    assert_eq!(s.verify("alice", &app_code, key).await, 401);
    let rotated = s.admin(reqwest::Method::POST, "/admin/users/alice/rotate", None).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let alice = SecretBytes::from_base32(rotated.body["secret"].as_str().unwrap()).unwrap();
    s.needles.totp_secret("alice", &alice);
    let new_code = now_code(&alice, OtpParams::default());
    if new_code != app_code {
        assert_eq!(s.verify("alice", &app_code, key).await, 401, "the old secret stopped working");
    }
    assert_eq!(s.verify("alice", &new_code, key).await, 200);
    let shown = s.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
    assert_eq!(shown.status, 200);

    // A Telegram chat links itself to alice: the link's token is a credential.
    let link = s.admin(reqwest::Method::POST, "/admin/users/alice/telegram-link", None).await;
    assert_eq!(link.status, 201, "{:?}", link.body);
    let token = link.body["url"].as_str().unwrap().split_once("?start=").unwrap().1.to_string();
    s.needles.secret("a Telegram link token", &token);
    bot.user_says(4242, &format!("/start {token}"));
    until_async("alice's chat linked", || async {
        let shown = s.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
        (shown.body["telegram_id"] == "4242").then_some(())
    })
    .await;

    assert_eq!(s.verify("dair", &now_code(&dair, OtpParams::default()), key).await, 200);
    s.request_otp("dair").await;
    // The newest message to dair: a security alert to alice may arrive after it.
    let to_dair = smtp.received().into_iter().rev().find(|m| m["rcpt_tos"] == json!(["dair@example.com"]));
    let dair_sent = extract_code(to_dair.unwrap()["text"].as_str().unwrap());
    assert_eq!(s.verify("dair", &dair_sent, key).await, 200);
    let carol_code = now_code(&carol, OtpParams::default());
    assert_eq!(s.verify("carol", &wrong(&carol_code), key).await, 401);
    assert_eq!(s.verify("carol", &carol_code, key).await, 200);

    logs.push_str(&server.logged().await);
    server.kill9().await; // no clean shutdown: the WAL keeps what it had
    let stored = stored_data(dir.path()).await;
    needles.codes.sort();
    needles.codes.dedup();

    // The search reads what it should: verbose logs from us and our dependencies, and the
    // users' stored data; the messages to the users did hold their codes.
    assert!(logs.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "LOG_FORMAT=json: one object a line");
    assert!(logs.contains(r#""level":"TRACE""#), "TRACE lines were written");
    assert!(logs.contains(r#""outcome":"valid""#) && logs.contains(r#""outcome":"replayed""#), "{logs}");
    let targets: std::collections::BTreeSet<&str> =
        logs.lines().filter_map(|l| l.split(r#""target":""#).nth(1)?.split([':', '"']).next()).collect();
    assert!(targets.len() >= 4, "logs from several crates: {targets:?}");
    let everything: Vec<u8> = stored.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
    assert!(holds(&everything, b"alice@example.com"), "the stored data was read");
    assert!(smtp.received().iter().any(|m| m["text"].as_str().unwrap().contains(&sent)));

    let mut found = Vec::new();
    for (what, needle) in &needles.secrets {
        if holds(logs.as_bytes(), needle) {
            found.push(format!("{what} in the logs"));
        }
        for (file, bytes) in &stored {
            if holds(bytes, needle) {
                found.push(format!("{what} in {file}"));
            }
        }
    }
    for code in &needles.codes {
        if let Some(line) = logs.lines().find(|line| contains_code(line, code)) {
            found.push(format!("code {code} in the logs: {line}"));
        }
        for (file, bytes) in &stored {
            // A dump shows binary columns as hex: a code stored as text would be its hex.
            let as_hex = HEXLOWER.encode(code.as_bytes());
            let text = strip_hex_literals(bytes);
            if holds_code(&text, code) || holds(bytes, as_hex.as_bytes()) {
                found.push(format!("code {code} in {file}"));
            }
        }
    }
    assert!(found.is_empty(), "found: {found:#?}");
    eprintln!(
        "secrets search: {} secret forms and {} codes, none in {} log lines (TRACE, from {targets:?}) or in {} \
         ({} bytes)",
        needles.secrets.len(),
        needles.codes.len(),
        logs.lines().count(),
        stored.iter().map(|(f, _)| f.rsplit('/').next().unwrap_or(f)).collect::<Vec<_>>().join(", "),
        everything.len()
    );
    if postgres_mode() {
        assert!(stored.iter().any(|(f, _)| f.starts_with("pg_dump")), "the PostgreSQL database was searched");
    }
}

/// `bytes` without pg_dump's `\x...` hex literals, whose random digits could look like a
/// code; the hex forms are searched separately.
fn strip_hex_literals(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            i += 2;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            out.push(b' ');
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
