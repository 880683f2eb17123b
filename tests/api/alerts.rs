//! Security alerts as users receive them: by email through the notification service and a
//! real SMTP server, by the Telegram stand-in, and in the file notifier's log. The lockout
//! alert with its end and the failures' addresses, the unlock alert, one alert of a kind per
//! user per hour (on the test clock), `SECURITY_ALERTS=off`, a configured template, and
//! nothing secret in any of them. Alerts are sent in the background: tests poll what the
//! receiving side got.

use mfa::alerts::utc;
use mfa::otp::SecretBytes;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::support::smtp::SmtpServer;
use crate::support::telegram::BotApi;

/// The proxy every request comes through, so that a test can say which client sent it.
const PROXY: (&str, &str) = ("TRUSTED_PROXIES", "127.0.0.1");

/// The alerts the file notifier wrote, oldest first.
fn alerts_in_file(app: &TestApp) -> Vec<Value> {
    app.notifications().into_iter().filter(|n| n["subject"].as_str().is_some_and(|s| s.contains("alert"))).collect()
}

/// Polls the file until it holds `n` alerts; gives them back.
async fn file_alerts(app: &TestApp, n: usize) -> Vec<Value> {
    until(&format!("{n} alert(s) in the notifications file"), || Some(alerts_in_file(app)).filter(|a| a.len() >= n))
        .await
}

/// Waits until the app has finished every alert raised so far (sent, suppressed or failed):
/// the barrier before checking that nothing (more) arrived.
async fn settled(app: &TestApp) {
    app.users().alerts().settled().await;
}

/// `/verify` as a request from `client`, through the trusted proxy.
async fn verify_from(app: &TestApp, user: &str, token: &str, client: &str) -> Reply {
    let request = app.client.post(app.url("/verify")).header("x-forwarded-for", client);
    Reply::read(request.json(&json!({"username": user, "token": token})).send().await.unwrap()).await
}

/// Wrong codes from each of `clients` in turn, the last one locking the user (5 failures).
async fn lock_from(app: &TestApp, user: &str, clients: &[&str]) {
    assert_eq!(clients.len(), 5, "MAX_FAILED_ATTEMPTS is 5");
    for client in clients {
        assert_eq!(verify_from(app, user, "000000", client).await.status, 401);
    }
    assert_eq!(verify_from(app, user, "000000", clients[0]).await.status, 429, "locked");
}

async fn metrics(app: &TestApp) -> String {
    app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

fn counted(text: &str, kind: &str, outcome: &str) -> u64 {
    let series = format!("mfa_security_alerts_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
}

/// No code and no secret: not the user's TOTP secret (either case), none of the codes
/// around now, and no run of 6 or more digits at all.
fn assert_nothing_secret(app: &TestApp, text: &str, secret: &SecretBytes) {
    let base32 = secret.to_base32();
    assert!(!text.contains(&base32) && !text.contains(&base32.to_lowercase()), "the secret: {text}");
    for step in -2..=2 {
        assert!(!text.contains(&app.totp(secret, step)), "a code: {text}");
    }
    let runs: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() >= 6).collect();
    assert!(runs.is_empty(), "a run of digits {runs:?}: {text}");
}

#[tokio::test]
async fn a_lockout_is_emailed_through_the_notification_service_with_its_end_and_the_addresses() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let app = TestApp::builder().envs(smtp.env()).envs([PROXY]).start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), None).await;
    let locked_at = app.now();

    lock_from(&app, "alice", &["203.0.113.9", "203.0.113.9", "198.51.100.4", "203.0.113.9", "2001:db8::7"]).await;

    let received = until("the lockout email", || smtp.received().into_iter().next()).await;
    assert_eq!(received["rcpt_tos"], json!(["alice@example.com"]));
    assert_eq!(received["subject"], "MFA security alert: sign-in locked");
    let text = received["text"].as_str().unwrap();
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains(&format!("at {}", utc(locked_at))), "{text}");
    assert!(text.contains(&format!("until {}", utc(locked_at + 300))), "the end of the lock: {text}");
    assert!(text.contains("came from: 198.51.100.4, 203.0.113.9, 2001:db8::7."), "each address once: {text}");
    assert!(text.contains("If this was not you"), "{text}");
    assert_nothing_secret(&app, text, &secret);
    assert!(!text.contains("000000"), "not the codes tried either: {text}");
    settled(&app).await;
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(counted(&metrics(&app).await, "locked_out", "sent"), 1);
}

#[tokio::test]
async fn email_and_telegram_users_get_the_alert_on_each_of_their_channels() {
    let (smtp, bot) = (SmtpServer::start("plain", false, &[]).await, BotApi::start().await);
    let app = TestApp::builder().envs(smtp.env()).envs(bot.env()).envs([PROXY]).start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), Some("4242")).await;

    lock_from(&app, "alice", &["192.0.2.1"; 5]).await;

    let email = until("the email", || smtp.received().into_iter().next()).await;
    let telegram = until("the Telegram message", || bot.received().into_iter().next()).await;
    assert_eq!(telegram["chat_id"], "4242");
    let (mail_text, chat_text) = (email["text"].as_str().unwrap().trim_end(), telegram["text"].as_str().unwrap());
    assert_eq!(mail_text.replace("\r\n", "\n"), chat_text, "one text on both channels (email's lines end in CRLF)");
    assert!(chat_text.contains("came from: 192.0.2.1."), "{chat_text}");
    assert_nothing_secret(&app, chat_text, &secret);
}

#[tokio::test]
async fn the_file_notifier_gets_at_most_one_lockout_alert_an_hour() {
    let app = TestApp::builder().envs([PROXY]).start().await;
    app.enroll("alice", Some("alice@example.com"), Some("42")).await;
    let first_at = app.now();

    lock_from(&app, "alice", &["192.0.2.1"; 5]).await;

    let first = file_alerts(&app, 2).await;
    let recipients: Vec<&str> = first.iter().map(|a| a["recipient"].as_str().unwrap()).collect();
    assert!(recipients.contains(&"alice@example.com") && recipients.contains(&"42"), "{recipients:?}");
    assert_eq!(first[0]["message"], first[1]["message"]);
    assert!(first[0]["message"].as_str().unwrap().contains(&format!("until {}", utc(first_at + 300))));

    // The lock ends; a second lockout within the hour (10 minutes, the next level) ...
    app.clock().advance(300);
    lock_from(&app, "alice", &["192.0.2.2"; 5]).await;
    settled(&app).await;
    assert_eq!(alerts_in_file(&app).len(), 2, "... sends no second alert");
    assert_eq!(counted(&metrics(&app).await, "locked_out", "suppressed"), 1);

    // An hour after the first alert, the third lockout (20 minutes) is told again.
    app.clock().set(first_at + 3_600);
    lock_from(&app, "alice", &["192.0.2.3"; 5]).await;
    let third = file_alerts(&app, 4).await;
    let text = third[3]["message"].as_str().unwrap();
    assert!(text.contains(&format!("until {}", utc(first_at + 3_600 + 1_200))), "{text}");
    assert!(text.contains("came from: 192.0.2.3."), "only the failures since the last lock: {text}");
    settled(&app).await; // counted once delivered
    let text = metrics(&app).await;
    assert_eq!((counted(&text, "locked_out", "sent"), counted(&text, "locked_out", "suppressed")), (2, 1));
}

#[tokio::test]
async fn an_operator_unlock_is_told_to_the_user_and_starts_the_addresses_afresh() {
    let app = TestApp::builder().admin().envs([PROXY]).start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), None).await;
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.1", "198.51.100.3", "198.51.100.2"] {
        verify_from(&app, "alice", "000000", client).await;
    }
    let locked = file_alerts(&app, 1).await;
    let text = locked[0]["message"].as_str().unwrap();
    assert!(text.contains("came from: 198.51.100.1, 198.51.100.3, 198.51.100.2."), "latest last: {text}");

    let unlocked = app.admin(reqwest::Method::POST, "/admin/users/alice/unlock", None).await;

    assert_eq!(unlocked.status, 200);
    let alerts = file_alerts(&app, 2).await;
    assert_eq!(alerts[1]["subject"], "MFA security alert: sign-in unlocked");
    let text = alerts[1]["message"].as_str().unwrap();
    assert!(text.contains(&format!("an administrator unlocked sign-in for alice at {}", utc(app.now()))), "{text}");
    assert_nothing_secret(&app, text, &secret);

    // Unlocking a user with nothing to clear tells nobody anything.
    assert_eq!(app.admin(reqwest::Method::POST, "/admin/users/alice/unlock", None).await.status, 200);
    // After the unlock, a lockout names only the addresses of the failures since.
    app.clock().advance(3_600);
    lock_from(&app, "alice", &["192.0.2.77"; 5]).await;
    let alerts = file_alerts(&app, 3).await;
    assert!(alerts[2]["message"].as_str().unwrap().contains("came from: 192.0.2.77."), "{}", alerts[2]);
    settled(&app).await;
    assert_eq!(alerts_in_file(&app).len(), 3);
    let text = metrics(&app).await;
    assert_eq!((counted(&text, "unlocked", "sent"), counted(&text, "unlocked", "suppressed")), (1, 0), "{text}");
}

#[tokio::test]
async fn security_alerts_off_sends_nothing() {
    let app = TestApp::builder().admin().envs([PROXY, ("SECURITY_ALERTS", "off")]).start().await;
    app.enroll("alice", Some("alice@example.com"), Some("42")).await;

    lock_from(&app, "alice", &["192.0.2.1"; 5]).await;
    assert_eq!(app.admin(reqwest::Method::POST, "/admin/users/alice/unlock", None).await.status, 200);
    assert_eq!(app.request_otp("alice").await.status, 200, "codes are still sent");

    settled(&app).await;
    assert!(alerts_in_file(&app).is_empty(), "{:?}", app.notifications());
    assert_eq!(app.notifications().len(), 2, "the code, on its two channels, and nothing else");
    assert!(!metrics(&app).await.contains("mfa_security_alerts_total{"));
}

#[tokio::test]
async fn a_configured_template_is_used_for_subject_and_text() {
    let template = "Subject: {issuer}: Anmeldung gesperrt\nDie Anmeldung von {username} ist bis {until} gesperrt.\n\
                    Fehlversuche von: {addresses}.";
    let app =
        TestApp::builder().envs([PROXY, ("ALERT_TEMPLATE_LOCKED_OUT", template), ("OTP_ISSUER", "Acme")]).start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    let locked_at = app.now();

    lock_from(&app, "alice", &["192.0.2.5"; 5]).await;

    let alert = until("the alert", || app.notifications().into_iter().next()).await;
    assert_eq!(alert["subject"], "Acme: Anmeldung gesperrt");
    let expected =
        format!("Die Anmeldung von alice ist bis {} gesperrt.\nFehlversuche von: 192.0.2.5.", utc(locked_at + 300));
    assert_eq!(alert["message"], expected);
}

#[tokio::test]
async fn a_template_with_a_code_placeholder_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ALERT_TEMPLATE_UNLOCKED", "Your code is {code}")];

    let out = crate::process::cli(dir.path(), &env, &["check-config"]).await;

    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("ALERT_TEMPLATE_UNLOCKED: unknown placeholder {code}"), "{}", out.stderr);
    assert!(out.stderr.contains("never carries a code or a secret"), "{}", out.stderr);
}

#[tokio::test]
async fn a_user_without_a_channel_gets_no_alert_and_codes_still_go_to_the_others() {
    let app = TestApp::builder().envs([PROXY]).start().await;
    app.enroll("carol", None, None).await;

    lock_from(&app, "carol", &["192.0.2.1"; 5]).await;

    settled(&app).await;
    assert!(app.notifications().is_empty());
    assert_eq!(counted(&metrics(&app).await, "locked_out", "no_channel"), 1);
}

/// Two servers on one database (the SQLite file, or PostgreSQL in the second pass) share
/// the hour: a lockout told by one is not told again by the other within it.
#[tokio::test]
async fn two_instances_on_one_database_send_one_alert_an_hour_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestApp::builder().shared_dir(dir.path()).envs([PROXY]).start().await;
    let b = TestApp::builder().shared_dir(dir.path()).envs([PROXY]).start().await;
    a.enroll("alice", Some("alice@example.com"), None).await;

    lock_from(&a, "alice", &["192.0.2.1"; 5]).await;
    file_alerts(&a, 1).await;
    for app in [&a, &b] {
        app.clock().advance(300);
    }
    lock_from(&b, "alice", &["192.0.2.2"; 5]).await;
    settled(&b).await;

    assert_eq!(alerts_in_file(&a).len(), 1, "b found the hour taken");
    assert_eq!(counted(&metrics(&b).await, "locked_out", "suppressed"), 1);
    for app in [&a, &b] {
        app.clock().advance(3_600);
    }
    lock_from(&b, "alice", &["192.0.2.3"; 5]).await;
    file_alerts(&a, 2).await;
}

/// The account's lifecycle, told to the user as it happens: an authenticator added,
/// confirmed and removed (by its name), recovery codes generated and used (how many are
/// left), each kind at most once an hour, and none carrying a secret or a code.
#[tokio::test]
async fn authenticator_and_recovery_code_changes_are_told_once_an_hour_without_secrets() {
    let app = TestApp::builder().admin().start().await;
    let created = app
        .admin(reqwest::Method::POST, "/admin/users", Some(json!({"username": "dair", "email": "dair@example.com"})))
        .await;
    let first = SecretBytes::from_base32(created.body["secret"].as_str().unwrap()).unwrap();
    let added = app
        .admin(
            reqwest::Method::POST,
            "/admin/users/dair/authenticators",
            Some(json!({"kind": "totp", "name": "Pixel 9"})),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let phone = SecretBytes::from_base32(added.body["secret"].as_str().unwrap()).unwrap();
    let subject_of = |n: &Value| n["subject"].as_str().unwrap().to_string();

    let told = file_alerts(&app, 1).await;
    assert_eq!(subject_of(&told[0]), "MFA security alert: authenticator added");
    assert!(told[0]["message"].as_str().unwrap().contains("Pixel 9"), "{told:?}");
    assert_eq!(app.verify("dair", &app.totp(&phone, 0)).await.status, 200);
    let told = file_alerts(&app, 2).await;
    assert_eq!(subject_of(&told[1]), "MFA security alert: authenticator confirmed");
    assert!(told[1]["message"].as_str().unwrap().contains("Pixel 9"));

    let made = app.admin(reqwest::Method::POST, "/admin/users/dair/recovery-codes", None).await;
    let codes: Vec<String> =
        made.body["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    let told = file_alerts(&app, 3).await;
    assert_eq!(subject_of(&told[2]), "MFA security alert: new recovery codes");
    assert_eq!(app.verify("dair", &codes[0]).await.status, 200);
    let told = file_alerts(&app, 4).await;
    assert_eq!(subject_of(&told[3]), "MFA security alert: recovery code used");
    assert!(told[3]["message"].as_str().unwrap().contains("; 9 remain."), "how many remain: {:?}", told[3]);

    let id = added.body["id"].as_str().unwrap();
    let removed = app.admin(reqwest::Method::DELETE, &format!("/admin/users/dair/authenticators/{id}"), None).await;
    assert_eq!(removed.status, 204);
    let told = file_alerts(&app, 5).await;
    assert_eq!(subject_of(&told[4]), "MFA security alert: authenticator removed");
    assert!(told[4]["message"].as_str().unwrap().contains("Pixel 9"));

    // Within the hour: a second authenticator, more codes, another used: nothing more.
    let again = app
        .admin(reqwest::Method::POST, "/admin/users/dair/authenticators", Some(json!({"kind": "hotp", "name": "Key"})))
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(app.verify("dair", &codes[1]).await.status, 200);
    settled(&app).await;
    let told = alerts_in_file(&app);
    assert_eq!(told.len(), 5, "one of a kind an hour: {told:?}");
    for alert in &told {
        let text = alert["message"].as_str().unwrap();
        assert_nothing_secret(&app, text, &first);
        assert_nothing_secret(&app, text, &phone);
        for code in &codes {
            assert!(!text.contains(code.as_str()) && !text.contains(&code.replace('-', "")), "{text}");
        }
    }
    app.clock().advance(3_600);
    assert_eq!(app.verify("dair", &codes[2]).await.status, 200);
    let told = file_alerts(&app, 6).await;
    assert_eq!(subject_of(&told[5]), "MFA security alert: recovery code used", "an hour later, again");
}
