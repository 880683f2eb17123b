//! The notification service's own API: validation, channels not configured, the API token,
//! the health check; and `/request-otp` delivering through it.

use serde_json::json;

use crate::helpers::*;
use crate::support::smtp::SmtpServer;
use crate::support::telegram::{BotApi, Scripted};

#[tokio::test]
async fn bad_send_requests_are_400_invalid_request() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;
    let cases = [
        json!({"channel": "sms", "recipient": "42", "message": "x"}),
        json!({"channel": "telegram", "recipient": "42", "message": ""}),
        json!({"channel": "telegram", "recipient": "42", "message": "x".repeat(4097)}),
        json!({"channel": "telegram", "recipient": "not a chat", "message": "x"}),
        json!({"channel": "email", "recipient": "nobody", "message": "x"}),
        json!({"channel": "email", "recipient": "a@example.com", "message": "x", "subject": "a\r\nBcc: b@example.com"}),
        json!({"channel": "telegram", "recipient": "42"}),
        json!({"channel": 7, "recipient": "42", "message": "x"}),
    ];
    for body in cases {
        let reply = app.send(body.clone(), None).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "invalid_request");
        assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert!(bot.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_channel_without_credentials_is_503() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;

    let reply = app.send(json!({"channel": "email", "recipient": "a@example.com", "message": "x"}), None).await;

    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["error"], "channel_not_configured");
    let health = app.notify_health().await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["channels"]["email"]["configured"], false);
    assert_eq!(health.body["channels"]["telegram"]["configured"], true);
}

#[tokio::test]
async fn with_an_api_token_send_requires_it() {
    let bot = BotApi::start().await;
    let mut vars = bot.env();
    vars.push(("NOTIFY_API_TOKEN".into(), "notify-token-3c1f".into()));
    let app = TestApp::builder().envs(vars).start().await;
    let body = json!({"channel": "telegram", "recipient": "42", "message": "x"});

    let none = app.send(body.clone(), None).await;
    let wrong = app.send(body.clone(), Some("guess")).await;
    let right = app.send(body, Some("notify-token-3c1f")).await;

    assert_eq!((none.status, none.body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(wrong.status, 401);
    assert_eq!(right.status, 200);
    assert_eq!(bot.received().len(), 1);
}

#[tokio::test]
async fn request_otp_sends_the_code_by_email_and_telegram_and_it_verifies_once() {
    let smtp = SmtpServer::start("starttls", true, &[]).await;
    let bot = BotApi::start().await;
    let mut vars = smtp.env();
    vars.extend(bot.env());
    vars.push(("NOTIFY_API_TOKEN".into(), "t0k3n-for-the-mfa-server".into()));
    let app = TestApp::builder().envs(vars).start().await;
    app.enroll("dair", Some("dair@example.com"), Some("123456789")).await;

    let reply = app.request_otp("dair").await;

    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["channels"], json!(["email", "telegram"]));
    let mail = &smtp.received()[0];
    assert_eq!(mail["rcpt_tos"], json!(["dair@example.com"]));
    assert_eq!(mail["subject"], "MFA verification code");
    let code = extract_code(mail["text"].as_str().unwrap());
    assert!(mail["html"].as_str().unwrap().contains(&code));
    let chat = &bot.received()[0];
    assert_eq!(chat["chat_id"], "123456789");
    assert_eq!(extract_code(chat["text"].as_str().unwrap()), code);
    assert_eq!(app.verify("dair", &code).await.status, 200);
    assert_eq!(app.verify("dair", &code).await.status, 401);
}

#[tokio::test]
async fn request_otp_can_name_one_channel() {
    let bot = BotApi::start().await;
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let mut vars = smtp.env();
    vars.extend(bot.env());
    let app = TestApp::builder().envs(vars).start().await;
    app.enroll("dair", Some("dair@example.com"), Some("42")).await;
    app.enroll("appuser", Some("app@example.com"), None).await;

    let reply = app.post_json("/request-otp", json!({"username": "dair", "channel": "telegram"})).await;
    assert_eq!(reply.body["channels"], json!(["telegram"]));
    assert_eq!(bot.received().len(), 1);
    assert!(smtp.received().is_empty());

    let none = app.post_json("/request-otp", json!({"username": "appuser", "channel": "telegram"})).await;
    assert_eq!((none.status, none.body["error"].as_str()), (422, Some("no_delivery_channel")));
    let bad = app.post_json("/request-otp", json!({"username": "dair", "channel": "pigeon"})).await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn one_failing_channel_does_not_stop_the_other() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(403, "Forbidden: bot was blocked by the user")]);
    let mut vars = smtp.env();
    vars.extend(bot.env());
    let app = TestApp::builder().envs(vars).start().await;
    app.enroll("dair", Some("dair@example.com"), Some("42")).await;

    let reply = app.request_otp("dair").await;

    assert_eq!((reply.status, reply.body["channels"].clone()), (200, json!(["email"])));
}

#[tokio::test]
async fn when_every_channel_fails_the_answer_is_502_and_the_user_may_ask_again_at_once() {
    let bot = BotApi::start().await;
    // A permanent failure that is not the chat's (a refused chat would be skipped after).
    bot.script([Scripted::Error(400, "Bad Request: can't parse entities")]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    app.enroll("dair", None, Some("42")).await;

    let failed = app.request_otp("dair").await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.body["error"], "delivery_failed");
    assert!(failed.body["detail"].as_str().unwrap().contains("can't parse entities"), "{:?}", failed.body);

    let again = app.request_otp("dair").await;
    assert_eq!(again.status, 200, "no resend wait after a failed delivery");
}

#[tokio::test]
async fn the_message_follows_otp_message_template() {
    let bot = BotApi::start().await;
    let mut vars = bot.env();
    vars.push(("OTP_MESSAGE_TEMPLATE".into(), "{username}, use {code} within {expires}.".into()));
    vars.push(("OTP_CODE_TTL".into(), "120".into()));
    let app = TestApp::builder().envs(vars).start().await;
    app.enroll("dair", None, Some("42")).await;

    app.request_otp("dair").await;

    let text = bot.received()[0]["text"].as_str().unwrap().to_string();
    let code = extract_code(&text);
    assert_eq!(text, format!("dair, use {code} within 2 minutes."));
}

#[tokio::test]
async fn with_the_notification_service_down_request_otp_answers_queued_at_once_and_verify_still_works() {
    let url = format!("http://127.0.0.1:{}", crate::support::closed_port());
    let app = TestApp::builder().envs(&[("NOTIFICATION_URL", &url)]).start().await;
    let secret = app.enroll("dair", Some("dair@example.com"), None).await;
    let started = std::time::Instant::now();

    let queued = app.request_otp("dair").await;

    assert_eq!((queued.status, queued.body["status"].as_str()), (200, Some("queued")), "{:?}", queued.body);
    assert_eq!(queued.body["channels"], json!(["email"]), "retried from the outbox until the code expires");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(app.verify("dair", &app.totp(&secret, 0)).await.status, 200);
}

/// With no channel configured, the notification service is the development notifier: a
/// message reaches `data/notifications.log` when `/send` is called directly, and when an
/// MFA server calls the service at its `NOTIFICATION_URL` (which answered 502 before).
#[tokio::test]
async fn with_no_channel_the_notification_service_writes_the_development_file() {
    let notifier = TestApp::builder().start().await;
    let sent = notifier.send(json!({"channel": "email", "recipient": "a@example.com", "message": "hello"}), None).await;
    assert_eq!((sent.status, sent.body["status"].as_str()), (200, Some("sent")), "{:?}", sent.body);
    let logged = notifier.notifications();
    assert_eq!(
        (logged[0]["recipient"].as_str(), logged[0]["message"].as_str()),
        (Some("a@example.com"), Some("hello"))
    );

    let url = format!("http://{}", notifier.notify_addr.unwrap());
    let app = TestApp::builder().env("NOTIFICATION_URL", &url).start().await;
    app.enroll("dair", Some("dair@example.com"), None).await;
    let reply = app.request_otp("dair").await;
    assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("sent")), "{:?}", reply.body);
    let code = notifier.last_code_sent_to("dair@example.com");
    assert_eq!(app.verify("dair", &code).await.status, 200);
    assert!(app.notifications().is_empty(), "the service's file, not the caller's");
}
