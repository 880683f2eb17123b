//! The email channel against a real SMTP server (aiosmtpd): plain, STARTTLS and implicit
//! TLS with AUTH, what the server receives, and failures with their retries and bounds.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::support::smtp::{LOGIN, SENDER, SmtpServer};
use crate::support::{closed_port, silent_server};

fn email(to: &str, message: &str) -> serde_json::Value {
    json!({"channel": "email", "recipient": to, "subject": "Your code", "message": message})
}

#[tokio::test]
async fn a_plain_smtp_server_with_auth_receives_subject_both_bodies_and_headers() {
    let smtp = SmtpServer::start("plain", true, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;

    let reply = app.send(email("dair@example.com", "Your code is 123456 <b>now</b>"), None).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"status": "sent", "channel": "email", "attempts": 1}));
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m["mail_from"], SENDER);
    assert_eq!(m["rcpt_tos"], json!(["dair@example.com"]));
    assert_eq!(m["from"], SENDER);
    assert_eq!(m["subject"], "Your code");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["text"].as_str().unwrap().trim_end(), "Your code is 123456 <b>now</b>");
    assert!(m["html"].as_str().unwrap().contains("Your code is 123456 &lt;b&gt;now&lt;/b&gt;"), "{m}");
    assert!(m["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(m["message_id"].as_str().is_some_and(|id| id.starts_with('<') && id.ends_with("@example.com>")), "{m}");
    assert_eq!(m["helo"], "example.com", "greeted with the sender's domain, which this relay requires");
    assert_eq!(m["auth_login"], LOGIN);
    assert_eq!(m["tls"], false);
}

/// The test relay refuses a greeting that is not fully qualified, as Postfix with
/// `reject_non_fqdn_helo_hostname` does: every email test goes through it. A sender with a
/// display name keeps the bare address as the envelope sender and the login.
#[tokio::test]
async fn a_display_name_and_a_chosen_greeting_reach_a_strict_relay() {
    let smtp = SmtpServer::start("plain", true, &[]).await;
    let mut env = smtp.env();
    env.retain(|(name, _)| name != "EMAIL_SENDER");
    env.push(("EMAIL_SENDER".into(), format!("Acme Login <{SENDER}>")));
    env.push(("EMAIL_HELO_NAME".into(), "mail.example.org".into()));
    let app = TestApp::builder().envs(env).start().await;

    let reply = app.send(email("dair@example.com", "Your code is 123456"), None).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let m = &smtp.received()[0];
    assert_eq!(m["from"], format!("Acme Login <{SENDER}>"));
    assert_eq!(m["mail_from"], SENDER);
    assert_eq!(m["auth_login"], LOGIN);
    assert_eq!(m["helo"], "mail.example.org");

    let short = TestApp::builder()
        .envs(smtp.env())
        .env("EMAIL_HELO_NAME", "mailhost")
        .start()
        .await
        .send(email("dair@example.com", "Your code is 123456"), None)
        .await;
    assert_eq!(short.status, 502, "a short name is refused by such a relay: {:?}", short.body);
    assert!(short.body["detail"].as_str().unwrap().contains("504"), "{:?}", short.body);
}

#[tokio::test]
async fn starttls_is_used_and_email_username_overrides_the_login() {
    let smtp = SmtpServer::start("starttls", false, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;
    assert_eq!(app.send(email("dair@example.com", "hello"), None).await.status, 200);
    assert_eq!(smtp.received()[0]["tls"], true);

    let with_auth = SmtpServer::start("starttls", true, &[]).await;
    let mut vars = with_auth.env();
    vars.push(("EMAIL_USERNAME".into(), "relay-user".into()));
    let app = TestApp::builder().envs(vars).start().await;
    let refused = app.send(email("dair@example.com", "hello"), None).await;
    assert_eq!(refused.status, 502, "the relay only knows {LOGIN}");
    assert_eq!(refused.body["attempts"], 1, "a refused login is permanent: {:?}", refused.body);
    assert!(refused.body["detail"].as_str().unwrap().contains("535"), "{:?}", refused.body);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let smtp = SmtpServer::start("tls", true, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;

    let reply = app.send(email("dair@example.com", "over TLS"), None).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let m = &smtp.received()[0];
    assert_eq!((m["tls"].as_bool(), m["auth_login"].as_str()), (Some(true), Some(LOGIN)));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_without_retries() {
    let smtp = SmtpServer::start("tls", true, &[]).await;
    let vars: Vec<(String, String)> = smtp.env().into_iter().filter(|(k, _)| k != "EMAIL_SMTP_CA_FILE").collect();
    let app = TestApp::builder().envs(vars).start().await;

    let reply = app.send(email("dair@example.com", "x"), None).await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.body["attempts"], 1, "{:?}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("TLS"), "{:?}", reply.body);
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn an_unknown_mailbox_is_the_callers_input_422_with_the_servers_reason() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;

    let reply = app.send(email("unknown@example.com", "x"), None).await;

    assert_eq!(reply.status, 422, "not an outage: {:?}", reply.body);
    assert_eq!(reply.body["error"], "recipient_rejected");
    assert_eq!((reply.body["attempts"].as_u64(), reply.body["channel"].as_str()), (Some(1), Some("email")));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("550") && detail.contains("No such user here"), "the server's own reason: {detail}");
    assert!(!detail.contains(crate::support::smtp::PASSWORD));
    let metrics = app.client.get(format!("http://{}/metrics", app.notify_addr.unwrap())).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains(r#"notify_deliveries_total{channel="email",outcome="rejected"} 1"#), "{text}");
}

#[tokio::test]
async fn a_server_that_answers_451_twice_then_accepts_gets_the_message_on_the_third_attempt() {
    let smtp = SmtpServer::start("plain", false, &["--fail-first", "2"]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;

    let reply = app.send(email("dair@example.com", "third time lucky"), None).await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["attempts"], 3);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_then_reported_within_a_bounded_time() {
    let port = closed_port().to_string();
    let app = TestApp::builder()
        .envs(&[
            ("EMAIL_SMTP_SERVER", "127.0.0.1"),
            ("EMAIL_SMTP_PORT", &port),
            ("EMAIL_SMTP_SECURITY", "none"),
            ("EMAIL_SENDER", SENDER),
            ("EMAIL_MAX_RETRIES", "2"),
        ])
        .start()
        .await;
    let started = Instant::now();

    let reply = app.send(email("dair@example.com", "x"), None).await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.body["attempts"], 3, "connection refused is transient: 1 + 2 retries");
    assert!(reply.body["detail"].as_str().unwrap().contains("cannot reach the SMTP server"), "{:?}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.notify_health().await.body["channels"]["email"]["smtp"], "unreachable");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_each_attempt() {
    let hung = silent_server().await;
    let port = hung.port().to_string();
    let app = TestApp::builder()
        .envs(&[
            ("EMAIL_SMTP_SERVER", "127.0.0.1"),
            ("EMAIL_SMTP_PORT", &port),
            ("EMAIL_SMTP_SECURITY", "none"),
            ("EMAIL_SENDER", SENDER),
            ("EMAIL_TIMEOUT_SECONDS", "0.5"),
            ("EMAIL_MAX_RETRIES", "1"),
        ])
        .start()
        .await;
    let started = Instant::now();

    let reply = app.send(email("dair@example.com", "x"), None).await;

    let elapsed = started.elapsed();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body["attempts"], 2);
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn connections_to_the_smtp_server_are_reused() {
    let smtp = SmtpServer::start("plain", true, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).start().await;
    for i in 0..3 {
        assert_eq!(app.send(email("dair@example.com", &format!("message {i}")), None).await.status, 200);
    }
    let peers: Vec<_> = smtp.received().iter().map(|m| m["peer"].clone()).collect();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| *p == peers[0]), "one pooled connection: {peers:?}");
    assert_eq!(app.notify_health().await.body["channels"]["email"]["smtp"], "reachable");
}

/// Start-up checks the relay (connect, greeting, AUTH) without sending: a wrong password
/// shows in `/healthcheck` before any code is sent, and `require` refuses to start.
#[tokio::test]
async fn a_wrong_smtp_password_is_found_at_start_up_and_require_refuses_to_start() {
    let smtp = SmtpServer::start("plain", true, &[]).await;
    let right = TestApp::builder().envs(smtp.env()).start().await;
    let health = right.notify_health().await;
    assert_eq!(
        (health.body["status"].as_str(), &health.body["channels"]["email"]["check"]["ok"]),
        (Some("ok"), &json!(true))
    );

    let wrong: Vec<(String, String)> = smtp
        .env()
        .into_iter()
        .map(|(k, v)| if k == "EMAIL_PASSWORD" { (k, "not-the-password".into()) } else { (k, v) })
        .collect();
    let app = TestApp::builder().envs(wrong.clone()).start().await;
    let health = app.notify_health().await;
    assert_eq!(health.body["status"], "degraded", "{:?}", health.body);
    let check = &health.body["channels"]["email"]["check"];
    assert_eq!(check["ok"], false);
    assert!(check["detail"].as_str().unwrap().contains("535"), "the relay's refusal: {check}");
    assert!(!health.body.to_string().contains("not-the-password"));
    assert!(smtp.received().is_empty(), "a check sends no message");

    let refused = TestApp::builder().envs(wrong).env("NOTIFY_STARTUP_CHECK", "require").try_start().await;
    let Err(error) = refused else { panic!("a failed check with require must stop start-up") };
    assert!(error.to_string().contains("the email channel failed its start-up check"), "{error}");
    assert!(!error.to_string().contains("not-the-password"));

    let down = closed_port();
    let unreachable = TestApp::builder()
        .envs(&[
            ("EMAIL_SMTP_SERVER", "127.0.0.1"),
            ("EMAIL_SMTP_PORT", &down.to_string()),
            ("EMAIL_SMTP_SECURITY", "none"),
            ("EMAIL_SENDER", SENDER),
        ])
        .start()
        .await;
    let health = unreachable.notify_health().await;
    assert_eq!(health.body["status"], "degraded");
    assert!(
        health.body["channels"]["email"]["check"]["detail"].as_str().unwrap().contains("cannot reach"),
        "{:?}",
        health.body
    );
}
