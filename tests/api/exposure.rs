//! Safe when exposed by mistake: DNS rebinding, a public bind without keys, public and
//! shared secrets, weak keys, no core dumps, no admin routes described when they are off.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::cli;
use crate::support::telegram::BotApi;

const SEED_ENV: &str = include_str!("../fixtures/seed.env");

/// A request to `url` whose `Host` header says `host`, as a browser sends it for a page
/// whose name was rebound to 127.0.0.1.
async fn with_host(app: &TestApp, method: reqwest::Method, url: &str, host: &str, body: Option<Value>) -> Reply {
    let mut request = app.client.request(method, url).header(reqwest::header::HOST, host);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_page_rebound_to_loopback_reaches_neither_service() {
    let bot = BotApi::start().await;
    let mut vars = bot.env();
    vars.push(("ALLOWED_HOSTS".into(), "mfa.example.com".into()));
    let app = TestApp::builder().envs(vars).start().await;
    app.enroll("alice", None, Some("42")).await;
    let notifier = app.notify_addr.unwrap();
    let send = json!({"channel": "telegram", "recipient": "42", "message": "rebound"});
    let send_url = format!("http://{notifier}/send");
    let post = reqwest::Method::POST;

    for host in ["attacker.example", "attacker.example:6001", "localhost.attacker.example", "127.0.0.1.nip.io"] {
        let sent = with_host(&app, post.clone(), &send_url, host, Some(send.clone())).await;
        assert_eq!((sent.status, sent.body["error"].as_str()), (421, Some("invalid_request")), "{host}");
        let otp_url = app.url("/request-otp");
        let otp = with_host(&app, post.clone(), &otp_url, host, Some(json!({"username": "alice"}))).await;
        assert_eq!(otp.status, 421, "{host}");
        let health = with_host(&app, reqwest::Method::GET, &app.url("/healthcheck"), host, None).await;
        assert_eq!(health.status, 421, "{host}");
    }
    assert!(bot.received().is_empty(), "nothing went out for a rebound page");

    // Addresses, localhost and the configured name still work, as the seed's curl examples do.
    let port = notifier.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "LOCALHOST".into(), "mfa.example.com".into()]
    {
        let sent = with_host(&app, post.clone(), &send_url, &host, Some(send.clone())).await;
        assert_eq!(sent.status, 200, "{host}: {:?}", sent.body);
    }
    let v6 = with_host(&app, reqwest::Method::GET, &app.url("/healthcheck"), "[::1]:6000", None).await;
    assert_eq!(v6.status, 200);
    assert_eq!(bot.received().len(), 4);
}

#[tokio::test]
async fn the_notification_service_answers_to_the_name_in_notification_url() {
    let bot = BotApi::start().await;
    let mut vars = bot.env();
    vars.push(("NOTIFICATION_URL".into(), "http://notifier.internal:6001".into()));
    let app = TestApp::builder().envs(vars).start().await;
    let url = format!("http://{}/send", app.notify_addr.unwrap());
    let body = json!({"channel": "telegram", "recipient": "42", "message": "x"});

    let named = with_host(&app, reqwest::Method::POST, &url, "notifier.internal:6001", Some(body.clone())).await;
    let other = with_host(&app, reqwest::Method::POST, &url, "other.internal:6001", Some(body)).await;

    assert_eq!((named.status, other.status), (200, 421));
}

#[tokio::test]
async fn check_config_refuses_what_is_unsafe_beyond_loopback_and_warns_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let open = cli(dir.path(), &[("MFA_BIND", "0.0.0.0:6000")], &["check-config"]).await;
    assert_eq!(open.code, 2);
    assert!(open.stderr.contains("MFA_BIND: 0.0.0.0:6000 is reachable from other machines but MFA_API_KEYS"));
    let guarded = cli(dir.path(), &[("MFA_BIND", "0.0.0.0:6000"), ("MFA_API_BEHIND_PROXY", "true")], &["check-config"]);
    assert_eq!(guarded.await.code, 0);

    // The seed's sample .env: a public secret shared by two users, a placeholder key.
    std::fs::write(dir.path().join(".env"), SEED_ENV).unwrap();
    let local = cli(dir.path(), &[], &["check-config"]).await;
    assert_eq!(local.code, 0, "a trial on loopback keeps working: {}", local.stderr);
    for expected in ["publicly known secret", "have the same secret", "mfa user add dair", "FLASK_SECRET_KEY is short"]
    {
        assert!(local.stdout.contains(expected), "warned of {expected:?}:\n{}", local.stdout);
    }
    let keyed = [("MFA_BIND", "0.0.0.0:6000"), ("MFA_API_KEYS", "backend-key-0123456789")];
    let exposed = cli(dir.path(), &keyed, &["check-config"]).await;
    assert_eq!(exposed.code, 2);
    for var in ["DAIR_SECRET", "BOB_SECRET", "FLASK_SECRET_KEY"] {
        assert!(exposed.stderr.contains(&format!("{var}: ")), "{var} refused:\n{}", exposed.stderr);
    }
    assert!(exposed.stderr.contains("mfa user add"), "says how to enroll: {}", exposed.stderr);
    assert!(!exposed.stderr.contains("base32secret3232") && !exposed.stderr.contains("your-secret-key"));

    // The server refuses it the same way, before it listens.
    let server = cli(dir.path(), &keyed, &["server"]).await;
    assert_eq!(server.code, 2, "{}", server.stderr);
    assert!(server.stderr.contains("DAIR_SECRET"), "{}", server.stderr);
}

#[tokio::test]
async fn a_value_with_a_control_character_stops_start_up_instead_of_failing_every_send() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("OTP_ISSUER", "ACME\r\nBcc x@example.com"),
        ("OTP_ISSUER", "ACME\u{1b}[31m"),
        ("OTP_MESSAGE_TEMPLATE", "Your code {code}\r\nBcc: x@example.com"),
        ("NOTIFICATION_URL", "http://127.0.0.1:1/\u{7f}"),
        ("ALLOWED_HOSTS", "mfa.example.com\u{1}"),
    ];
    for (var, value) in cases {
        let out = cli(dir.path(), &[(var, value)], &["server"]).await;
        assert_eq!(out.code, 2, "{var}={value:?}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("{var}: ")) && out.stderr.contains("control character"), "{}", out.stderr);
        assert!(!out.stderr.contains(|c: char| c.is_control() && c != '\n'), "echoed raw: {:?}", out.stderr);
    }
    // A value quoted in an error stays on one line.
    let quoted = cli(dir.path(), &[("RATE_LIMIT", "lots\r\nmfa: all good\u{1b}[2J")], &["server"]).await;
    assert_eq!(quoted.stderr.lines().count(), 1, "{:?}", quoted.stderr);
    assert!(quoted.stderr.contains("lots\\r\\nmfa: all good\\u{1b}[2J"), "{:?}", quoted.stderr);

    let smtp = [
        ("EMAIL_SMTP_SERVER", "127.0.0.1"),
        ("EMAIL_SMTP_PORT", "2525"),
        ("EMAIL_SENDER", "mfa@example.com"),
        ("EMAIL_PASSWORD", "relay-password"),
    ];
    let clear = cli(dir.path(), &smtp, &["check-config"]).await;
    assert_eq!(clear.code, 2);
    assert!(clear.stderr.contains("EMAIL_SMTP_SECURITY: "), "{}", clear.stderr);
    let mut asked = smtp.to_vec();
    asked.push(("EMAIL_SMTP_SECURITY", "none"));
    let allowed = cli(dir.path(), &asked, &["check-config"]).await;
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(allowed.stdout.contains("travels in clear"), "{}", allowed.stdout);
    assert!(!format!("{}{}", allowed.stdout, allowed.stderr).contains("relay-password"));
}

#[tokio::test]
async fn the_server_writes_no_core_dump_whatever_its_limit_was() {
    let dir = tempfile::tempdir().unwrap();
    // Started with core dumps allowed, as a shell with `ulimit -c unlimited` would.
    let server = TestApp::builder()
        .shared_dir(dir.path())
        .start_binary_via("server", &["prlimit", "--core=unlimited:unlimited"])
        .await;

    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

#[tokio::test]
async fn openapi_describes_the_admin_routes_only_when_they_are_served() {
    let without = TestApp::builder().start().await;
    let doc = without.get("/openapi.json").await.body;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(paths.iter().all(|p| !p.starts_with("/admin")), "{paths:?}");
    assert!(paths.iter().any(|p| *p == "/verify"));
    assert_eq!(without.get("/admin/users").await.status, 404);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_key") && !schemes.contains_key("admin_token"), "{schemes:?}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"]["421"].is_object(), "{method} {path} documents 421");
        }
    }

    let with = TestApp::builder().admin().start().await;
    let doc = with.get("/openapi.json").await.body;
    assert!(doc["paths"].as_object().unwrap().keys().any(|p| p.starts_with("/admin/users")));
}
