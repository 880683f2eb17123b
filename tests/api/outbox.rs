//! The delivery outbox: `/request-otp` answers within `OTP_SEND_WAIT_MS` whatever the
//! channel does, and delivery goes on from the database, with backoff on the test clock,
//! across a restart, by one worker of several, and never after the code expired.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::support::HangingRelay;
use crate::support::smtp::SmtpServer;
use crate::support::telegram::{BotApi, Scripted};

fn counted(text: &str, series: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(&format!("{series} "))).map_or(0, |n| n.parse().unwrap())
}

async fn metrics(app: &TestApp) -> String {
    app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// The metrics once they show `what` (`holds`), polled for 5 s at most: the worker records
/// a job's end just after the channel answered.
async fn metrics_showing(app: &TestApp, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(app).await;
        if holds(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "the metrics never showed {what}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One attempt per `/send` (no retries inside the notification service), so that every
/// retry is the outbox's.
const ONE_TRY: (&str, &str) = ("TELEGRAM_MAX_RETRIES", "0");

#[tokio::test]
async fn a_code_the_channel_refuses_for_now_is_queued_then_delivered_with_backoff() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error"), Scripted::Error(502, "Bad Gateway")]);
    let app = TestApp::builder().envs(bot.env()).envs([ONE_TRY]).start().await;
    app.enroll("dair", None, Some("42")).await;

    let started = Instant::now();
    let reply = app.request_otp("dair").await;
    assert!(started.elapsed() < Duration::from_millis(1500), "answered within the first attempts");
    assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("queued")), "{:?}", reply.body);
    assert_eq!(reply.body["channels"], json!(["telegram"]));
    assert_eq!(bot.received().len(), 1);

    // Each retry waits its backoff on the server's clock (2 s, then 4, ±50%).
    for attempts in [2, 3] {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(bot.received().len(), attempts - 1, "not before its backoff");
        app.clock().advance(10);
        until(&format!("attempt {attempts}"), || (bot.received().len() == attempts).then_some(())).await;
    }
    let code = extract_code(bot.received()[2]["text"].as_str().unwrap());
    assert_eq!(app.verify("dair", &code).await.status, 200, "the code delivered late works");
    let text = metrics_showing(&app, "the delivery", |t| t.contains("mfa_delivery_latency_seconds_count 1")).await;
    let jobs = |outcome: &str| {
        counted(&text, &format!("mfa_delivery_jobs_total{{channel=\"telegram\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!((jobs("queued"), jobs("retried"), jobs("delivered")), (1, 2, 1), "{text}");
}

/// The SMTP relay hangs (accepts, never answers) and recovers while the code is valid:
/// `/request-otp` answered within its wait, and the code arrives afterwards.
#[tokio::test]
async fn a_code_for_a_hung_smtp_relay_is_queued_and_arrives_once_it_recovers() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let relay = HangingRelay::start(smtp.port).await;
    let port = relay.port.to_string();
    let app = TestApp::builder()
        .envs(smtp.env())
        .envs([("EMAIL_SMTP_PORT", port.as_str()), ("EMAIL_TIMEOUT_SECONDS", "0.5"), ("EMAIL_MAX_RETRIES", "0")])
        .start()
        .await;
    app.enroll("dair", Some("dair@example.com"), None).await;

    let started = Instant::now();
    let reply = app.request_otp("dair").await;
    assert!(started.elapsed() < Duration::from_millis(1500), "answered within OTP_SEND_WAIT_MS");
    assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("queued")), "{:?}", reply.body);
    assert_eq!(reply.body["channels"], json!(["email"]));

    relay.recover();
    app.clock().advance(10); // past the first backoff, well within the code's lifetime
    let received = until("the code through the recovered relay", || smtp.received().into_iter().next()).await;
    let code = extract_code(received["text"].as_str().unwrap());
    assert_eq!(app.verify("dair", &code).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.received().len(), 1, "delivered once");
}

#[tokio::test]
async fn a_job_queued_before_a_restart_is_delivered_after_it() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let app = TestApp::builder().envs(bot.env()).envs([ONE_TRY]).start().await;
    app.enroll("dair", None, Some("42")).await;
    assert_eq!(app.request_otp("dair").await.body["status"], "queued");
    let dir = app.stop().await;

    let app = TestApp::builder().dir(dir).envs(bot.env()).envs([ONE_TRY]).clock_at(START + 10).start().await;
    until("the queued job delivered by the new process", || (bot.received().len() == 2).then_some(())).await;
    let code = extract_code(bot.received()[1]["text"].as_str().unwrap());
    assert_eq!(app.verify("dair", &code).await.status, 200);
}

#[tokio::test]
async fn a_code_that_expires_before_the_channel_recovers_is_never_sent() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let app = TestApp::builder().envs(bot.env()).envs([ONE_TRY, ("OTP_CODE_TTL", "60")]).start().await;
    app.enroll("dair", None, Some("42")).await;
    assert_eq!(app.request_otp("dair").await.body["status"], "queued");

    app.clock().advance(61);
    let series = "mfa_delivery_jobs_total{channel=\"telegram\",outcome=\"abandoned_expired\"}";
    metrics_showing(&app, "the expired job abandoned", |t| counted(t, series) == 1).await;
    assert_eq!(bot.received().len(), 1, "only the first, failed attempt: never sent once expired");
}

#[tokio::test]
async fn two_processes_on_one_database_deliver_a_queued_job_once() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let dir = tempfile::tempdir().unwrap();
    let vars: Vec<(String, String)> =
        bot.env().into_iter().chain([(ONE_TRY.0.to_string(), ONE_TRY.1.to_string())]).collect();
    let a = TestApp::builder().shared_dir(dir.path()).envs(vars.clone()).start().await;
    let b = TestApp::builder().shared_dir(dir.path()).envs(vars).start().await;
    a.enroll("dair", None, Some("42")).await;
    assert_eq!(a.request_otp("dair").await.body["status"], "queued");

    a.clock().advance(10);
    b.clock().advance(10);
    until("the job delivered", || (bot.received().len() == 2).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // both workers have looked again
    assert_eq!(bot.received().len(), 2, "one failed attempt and one delivery: never twice");
}

/// `kill -9` of the real binary with a job queued: the next process delivers it.
#[tokio::test]
async fn a_job_queued_before_kill_9_is_delivered_by_the_next_process() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let dir = tempfile::tempdir().unwrap();
    let mut vars = bot.env();
    for (k, v) in [
        ONE_TRY,
        ("DAIR_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        ("MFA_ENV_USERS", "dair"),
        ("DAIR_TELEGRAM_ID", "42"),
    ] {
        vars.push((k.into(), v.into()));
    }
    let first = TestApp::builder().shared_dir(dir.path()).envs(vars.clone()).start_binary("serve").await;
    let queued = first.request_otp("dair").await;
    assert_eq!(queued.body["status"], "queued", "{:?}", queued.body);
    first.kill9().await;

    let second = TestApp::builder().shared_dir(dir.path()).envs(vars).start_binary("serve").await;
    until("the job delivered after the kill", || (bot.received().len() == 2).then_some(())).await;
    let code = extract_code(bot.received()[1]["text"].as_str().unwrap());
    assert_eq!(second.verify("dair", &code).await.status, 200);
}

const FIRST: (&str, &str) = ("OTP_DELIVERY", "first");

/// `OTP_DELIVERY=first`: Telegram first; when it refuses the chat for good, the email goes
/// at once; when it delivers, the email never goes.
#[tokio::test]
async fn with_first_delivery_a_refused_chat_falls_over_to_email_and_a_delivered_one_does_not() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(403, "Forbidden: bot was blocked by the user")]);
    let app = TestApp::builder().envs(smtp.env()).envs(bot.env()).envs([ONE_TRY, FIRST]).admin().start().await;
    app.enroll("dair", Some("dair@example.com"), Some("42")).await;
    let shown = app.admin(reqwest::Method::GET, "/admin/users/dair", None).await;
    assert_eq!(shown.body["channels"], json!(["telegram", "email"]), "the default order");

    let reply = app.request_otp("dair").await;
    assert_eq!((reply.body["status"].as_str(), &reply.body["channels"]), (Some("queued"), &json!(["email"])));
    until("the email after the refused chat", || (smtp.received().len() == 1).then_some(())).await;
    let code = extract_code(smtp.received()[0]["text"].as_str().unwrap());
    assert_eq!(app.verify("dair", &code).await.status, 200);
    assert_eq!(bot.received().len(), 1, "Telegram was tried first");

    // A new chat (the refused one is skipped from now on), which takes the next code.
    let patched = app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"telegram_id": "43"}))).await;
    assert_eq!(patched.status, 200);
    app.clock().advance(3_600);
    let reply = app.request_otp("dair").await;
    assert_eq!((reply.body["status"].as_str(), &reply.body["channels"]), (Some("sent"), &json!(["telegram"])));
    app.clock().advance(20); // past OTP_FAILOVER_SECONDS: the email's turn, but it was delivered
    tokio::time::sleep(Duration::from_millis(2500)).await; // two looks of the worker
    assert_eq!(smtp.received().len(), 1, "no email once Telegram delivered");
    let text = metrics(&app).await;
    assert_eq!(
        counted(&text, "mfa_delivery_jobs_total{channel=\"email\",outcome=\"abandoned\"}"),
        1,
        "the email job was abandoned: {text}"
    );
}

/// The order is the user's: set through the admin API, it puts email first.
#[tokio::test]
async fn with_first_delivery_the_users_own_order_is_followed() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(smtp.env()).envs(bot.env()).envs([ONE_TRY, FIRST]).admin().start().await;
    app.enroll("dair", Some("dair@example.com"), Some("42")).await;
    let set =
        app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"channels": ["email", "telegram"]}))).await;
    assert_eq!((set.status, &set.body["channels"]), (200, &json!(["email", "telegram"])), "{:?}", set.body);
    let twice =
        app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"channels": ["email", "email"]}))).await;
    assert_eq!(twice.status, 400);

    let reply = app.request_otp("dair").await;
    assert_eq!((reply.body["status"].as_str(), &reply.body["channels"]), (Some("sent"), &json!(["email"])));
    assert_eq!(smtp.received().len(), 1);
    assert!(bot.received().is_empty());
    let reset = app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"channels": null}))).await;
    assert_eq!(reset.body["channels"], json!(["telegram", "email"]));
}

/// A chat that blocked the bot is marked (the admin API shows it), skipped by later codes,
/// and cleared when the user's Telegram id changes.
#[tokio::test]
async fn a_chat_that_blocked_the_bot_is_marked_and_skipped_until_it_changes() {
    let smtp = SmtpServer::start("plain", false, &[]).await;
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(403, "Forbidden: bot was blocked by the user")]);
    let app = TestApp::builder().envs(smtp.env()).envs(bot.env()).envs([ONE_TRY]).admin().start().await;
    app.enroll("dair", Some("dair@example.com"), Some("42")).await;

    let reply = app.request_otp("dair").await;
    assert_eq!((reply.body["status"].as_str(), &reply.body["channels"]), (Some("sent"), &json!(["email"])));
    let shown = app.admin(reqwest::Method::GET, "/admin/users/dair", None).await;
    assert_eq!(shown.body["telegram_blocked"], true, "{:?}", shown.body);

    app.clock().advance(3_600);
    assert_eq!(app.request_otp("dair").await.body["channels"], json!(["email"]), "the chat is skipped");
    assert_eq!(bot.received().len(), 1);

    let changed = app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"telegram_id": "43"}))).await;
    assert_eq!(changed.body["telegram_blocked"], false, "a new chat");
    app.clock().advance(3_600);
    assert_eq!(app.request_otp("dair").await.body["channels"], json!(["email", "telegram"]));
    assert_eq!(bot.received().len(), 2);
}

/// A job that ended is kept a week, then removed by the hourly sweep; a younger one stays.
#[tokio::test]
async fn jobs_that_ended_over_a_week_ago_are_removed_and_younger_ones_kept() {
    const WEEK: u64 = 7 * 86_400;
    let app = TestApp::builder().start().await;
    let forgotten = "mfa_delivery_jobs_forgotten_total";
    for name in ["dair", "ezra"] {
        app.enroll(name, Some(&format!("{name}@example.com")), None).await;
    }
    assert_eq!(app.request_otp("dair").await.body["status"], "sent");
    let delivered = "mfa_delivery_jobs_total{channel=\"email\",outcome=\"delivered\"}";
    metrics_showing(&app, "dair's job ended", |t| counted(t, delivered) == 1).await;

    app.clock().advance(WEEK - 60);
    assert_eq!(app.request_otp("ezra").await.body["status"], "sent");
    metrics_showing(&app, "ezra's job ended", |t| counted(t, delivered) == 2).await;
    // The sweep after an hour: dair's job ended a week and an hour ago, ezra's 59 minutes ago.
    app.clock().advance(3_601);
    // (Both at once would take the count from 0 to 2, never showing 1.)
    metrics_showing(&app, "dair's job removed, ezra's kept", |t| counted(t, forgotten) == 1).await;
    app.clock().advance(WEEK);
    metrics_showing(&app, "ezra's job removed", |t| counted(t, forgotten) == 2).await;
}
