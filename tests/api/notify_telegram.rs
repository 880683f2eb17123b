//! The Telegram channel against a local Bot API stand-in: success, 429 with retry_after,
//! 5xx, 400/401/403, and the bot token kept out of every answer.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::support::closed_port;
use crate::support::telegram::{BotApi, Scripted, TOKEN};

fn telegram(chat: &str, message: &str) -> serde_json::Value {
    json!({"channel": "telegram", "recipient": chat, "message": message})
}

#[tokio::test]
async fn a_message_is_sent_with_send_message() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;

    let reply = app.send(telegram("123456789", "Your code is 654321"), None).await;

    assert_eq!(reply.body, json!({"status": "sent", "channel": "telegram", "attempts": 1}));
    assert_eq!(bot.received(), vec![json!({"chat_id": "123456789", "text": "Your code is 654321"})]);
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_telegram_asks_for() {
    let bot = BotApi::start().await;
    bot.script([Scripted::RetryAfter(1)]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    let started = Instant::now();

    let reply = app.send(telegram("42", "hello"), None).await;

    assert_eq!((reply.status, reply.body["attempts"].as_u64()), (200, Some(2)));
    assert!(started.elapsed() >= Duration::from_secs(1), "waited retry_after");
    assert_eq!(bot.received().len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_at_once() {
    let bot = BotApi::start().await;
    bot.script([Scripted::RetryAfter(3600)]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    let started = Instant::now();

    let reply = app.send(telegram("42", "hello"), None).await;

    assert_eq!((reply.status, reply.body["attempts"].as_u64()), (502, Some(1)));
    assert!(reply.body["detail"].as_str().unwrap().contains("3600"), "{:?}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error"), Scripted::Error(502, "Bad Gateway")]);
    let app = TestApp::builder().envs(bot.env()).start().await;

    let reply = app.send(telegram("42", "hello"), None).await;

    assert_eq!((reply.status, reply.body["attempts"].as_u64()), (200, Some(3)));
}

#[tokio::test]
async fn chat_not_found_and_blocked_bots_are_the_callers_input_422_without_retrying() {
    let bot = BotApi::start().await;
    bot.script([
        Scripted::Error(400, "Bad Request: chat not found"),
        Scripted::Error(403, "Forbidden: bot was blocked by the user"),
    ]);
    let app = TestApp::builder().envs(bot.env()).start().await;

    let missing = app.send(telegram("42", "hello"), None).await;
    let blocked = app.send(telegram("43", "hello"), None).await;

    for reply in [&missing, &blocked] {
        assert_eq!((reply.status, reply.body["attempts"].as_u64()), (422, Some(1)), "{:?}", reply.body);
        assert_eq!(reply.body["error"], "recipient_rejected");
    }
    assert!(missing.body["detail"].as_str().unwrap().contains("chat not found"));
    assert!(blocked.body["detail"].as_str().unwrap().contains("blocked by the user"));
    assert_eq!(bot.received().len(), 2);
}

#[tokio::test]
async fn a_wrong_token_is_reported_without_showing_any_token() {
    let bot = BotApi::start().await;
    let wrong = "999999:WrongTokenValue-abc";
    let api_url = format!("http://{}", bot.addr);
    let app = TestApp::builder().env("TELEGRAM_TOKEN", wrong).env("TELEGRAM_API_URL", &api_url).start().await;

    let reply = app.send(telegram("42", "hello"), None).await;

    assert_eq!((reply.status, reply.body["attempts"].as_u64()), (502, Some(1)));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("401") && detail.contains("TELEGRAM_TOKEN"), "{detail}");
    assert!(!detail.contains(wrong) && !detail.contains("WrongTokenValue"));
}

#[tokio::test]
async fn an_unreachable_api_is_retried_and_the_token_stays_out_of_the_error() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let app = TestApp::builder()
        .envs(&[("TELEGRAM_TOKEN", TOKEN), ("TELEGRAM_API_URL", &url), ("TELEGRAM_MAX_RETRIES", "2")])
        .start()
        .await;

    let reply = app.send(telegram("42", "hello"), None).await;

    assert_eq!((reply.status, reply.body["attempts"].as_u64()), (502, Some(3)));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("cannot reach Telegram"), "{detail}");
    assert!(!detail.contains(TOKEN) && !detail.contains("AAFakeBotToken"), "{detail}");
}

/// Start-up checks the token with `getMe`, which sends nothing, and `/healthcheck` shows it.
#[tokio::test]
async fn the_token_is_checked_at_start_up_without_sending_anything() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;

    let health = app.notify_health().await;

    assert_eq!(health.body["status"], "ok", "{:?}", health.body);
    let check = &health.body["channels"]["telegram"]["check"];
    assert_eq!(check["ok"], true, "{:?}", health.body);
    assert!(check["checked_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(bot.received().is_empty(), "a check sends no message");
}

/// A wrong token shows before any code is sent: `degraded`, with why and without the
/// token; with `NOTIFY_STARTUP_CHECK=require` the service does not start.
#[tokio::test]
async fn a_wrong_token_is_found_at_start_up_and_require_refuses_to_start() {
    let bot = BotApi::start().await;
    let wrong = "999999:WrongTokenValue-abc";
    let api_url = format!("http://{}", bot.addr);
    let vars = [("TELEGRAM_TOKEN", wrong), ("TELEGRAM_API_URL", api_url.as_str())];
    let app = TestApp::builder().envs(vars).start().await;

    let health = app.notify_health().await;
    assert_eq!(health.body["status"], "degraded", "{:?}", health.body);
    let check = &health.body["channels"]["telegram"]["check"];
    assert_eq!(check["ok"], false);
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("401") && detail.contains("TELEGRAM_TOKEN"), "{detail}");
    assert!(!health.body.to_string().contains(wrong) && !health.body.to_string().contains("WrongToken"));

    let refused = TestApp::builder().envs(vars).env("NOTIFY_STARTUP_CHECK", "require").try_start().await;
    let Err(error) = refused else { panic!("a failed check with require must stop start-up") };
    let error = error.to_string();
    assert!(error.contains("the telegram channel failed its start-up check"), "{error}");
    assert!(!error.contains("WrongToken"), "{error}");
    assert!(TestApp::builder().envs(vars).env("NOTIFY_STARTUP_CHECK", "off").try_start().await.is_ok());
}

/// At most one message a second to a chat, by waiting, never by dropping; other chats are
/// not held up.
#[tokio::test]
async fn messages_to_one_chat_are_paced_to_one_a_second_and_none_is_dropped() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;
    let send = |chat: &str, i: usize| {
        let request = app.client.post(format!("http://{}/send", app.notify_addr.unwrap()));
        let body = json!({"channel": "telegram", "recipient": chat, "message": format!("message {i}")});
        async move { request.json(&body).send().await.unwrap().status().as_u16() }
    };

    let started = Instant::now();
    let (a, b, c) = tokio::join!(send("42", 0), send("43", 1), send("44", 2));
    assert_eq!((a, b, c), (200, 200, 200));
    assert!(started.elapsed() < Duration::from_millis(900), "three chats at once: {:?}", started.elapsed());

    let started = Instant::now();
    let (a, b, c) = tokio::join!(send("7", 3), send("7", 4), send("7", 5));
    let elapsed = started.elapsed();
    assert_eq!((a, b, c), (200, 200, 200), "queued, not dropped");
    assert!(elapsed >= Duration::from_millis(1900), "one chat: a second between messages, {elapsed:?}");
    assert_eq!(bot.received().len(), 6);
}
