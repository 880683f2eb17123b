//! Telegram chats linking themselves: `POST /admin/users/{u}/telegram-link`, then the chat
//! sends the bot `/start <token>` (through the Bot API stand-in's `getUpdates`, or posted
//! to the webhook), and the chat is bound and told so. Tokens work once and expire; chats
//! that became supergroups are followed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::support::closed_port;
use crate::support::telegram::{BOT_USERNAME, BotApi};

const SECRET_A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A link for `user`: the token, after checking the reply's shape.
async fn link(app: &TestApp, user: &str) -> String {
    let reply = app.admin(Method::POST, &format!("/admin/users/{user}/telegram-link"), None).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["expires_in"], 600);
    let url = reply.body["url"].as_str().unwrap();
    let token = url.strip_prefix(&format!("https://t.me/{BOT_USERNAME}?start=")).expect(url);
    assert!(
        (32..=64).contains(&token.len()) && token.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
        "a start parameter Telegram accepts: {token}"
    );
    token.to_string()
}

async fn telegram_id(app: &TestApp, user: &str) -> Value {
    app.admin(Method::GET, &format!("/admin/users/{user}"), None).await.body["telegram_id"].clone()
}

/// Waits until `chat` received a message containing `words`; all it received.
async fn replied(bot: &BotApi, chat: &str, words: &str) -> Vec<String> {
    until(&format!("a reply with '{words}' in chat {chat}"), || {
        let texts = bot.texts_to(chat);
        texts.iter().any(|t| t.contains(words)).then_some(texts)
    })
    .await
}

async fn linking_app(bot: &BotApi) -> TestApp {
    TestApp::builder().admin().envs(bot.env()).env("OTP_RESEND_SECONDS", "0").start().await
}

/// The code in a message, if it holds one (a run of 6 to 8 digits).
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| (6..=8).contains(&w.len())).map(str::to_string)
}

#[tokio::test]
async fn a_chat_links_itself_with_start_then_gets_the_codes() {
    let bot = BotApi::start().await;
    let app = linking_app(&bot).await;
    app.admin_enroll(json!({"username": "alice"})).await;
    let created = app.admin(Method::POST, "/admin/users/alice/telegram-link", None).await;
    let cache = created.headers.get("cache-control").map(|v| v.to_str().unwrap());
    assert_eq!(cache, Some("no-store"), "the link is a credential");
    let token = link(&app, "alice").await;

    bot.user_says(5551, &format!("/start {token}"));

    replied(&bot, "5551", "now linked to alice").await;
    assert_eq!(telegram_id(&app, "alice").await, "5551");
    // The polling removed any webhook first (Telegram refuses getUpdates beside one), and
    // asked for messages only.
    assert!(!bot.calls("deleteWebhook").is_empty());
    assert_eq!(bot.calls("getUpdates").last().unwrap()["allowed_updates"], json!(["message"]));
    // The user is told on their (new) channel, as of any change to their account.
    replied(&bot, "5551", "Telegram chat 5551 was linked to alice").await;

    let sent = app.request_otp("alice").await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let code = until("the code in the linked chat", || bot.texts_to("5551").iter().find_map(|t| code_in(t))).await;
    assert_eq!(app.verify("alice", &code).await.status, 200);
}

#[tokio::test]
async fn a_used_expired_or_replaced_link_gets_a_polite_reply_and_changes_nothing() {
    let bot = BotApi::start().await;
    let app = linking_app(&bot).await;
    app.admin_enroll(json!({"username": "alice", "telegram_id": "100"})).await;
    let token = link(&app, "alice").await;
    bot.user_says(5551, &format!("/start {token}"));
    replied(&bot, "5551", "linked to alice").await;

    // Used: another chat with the same link.
    bot.user_says(6661, &format!("/start {token}"));
    replied(&bot, "6661", "expired or was already used").await;
    assert_eq!(telegram_id(&app, "alice").await, "5551");

    // Expired: ten minutes and a second later.
    let expired = link(&app, "alice").await;
    app.clock().advance(601);
    bot.user_says(7771, &format!("/start {expired}"));
    replied(&bot, "7771", "expired or was already used").await;

    // Replaced: a newer link for the same user.
    let (older, newer) = (link(&app, "alice").await, link(&app, "alice").await);
    bot.user_says(8881, &format!("/start {older}"));
    replied(&bot, "8881", "expired or was already used").await;
    assert_eq!(telegram_id(&app, "alice").await, "5551");
    bot.user_says(9991, &format!("/start {newer}"));
    replied(&bot, "9991", "linked to alice").await;
    assert_eq!(telegram_id(&app, "alice").await, "9991");

    // Made up, bare, and other messages: a refusal, a help, and nothing.
    bot.user_says(1211, "/start AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    replied(&bot, "1211", "expired or was already used").await;
    bot.user_says(1311, "/start");
    replied(&bot, "1311", "open the Telegram link you were given").await;
    bot.user_says(1411, "hello bot");
    bot.user_says(1411, "/start");
    let texts = replied(&bot, "1411", "open the Telegram link").await;
    assert_eq!(texts.len(), 1, "only /start is answered: {texts:?}");
    assert_eq!(telegram_id(&app, "alice").await, "9991");
}

/// A Bot API server that gives every update again (ignoring `offset`) and has no
/// `deleteWebhook`: the chat is still linked, and answered once.
#[tokio::test]
async fn an_update_given_again_is_handled_once() {
    let bot = BotApi::start().await;
    bot.be_careless();
    let app = linking_app(&bot).await;
    app.admin_enroll(json!({"username": "alice"})).await;
    let token = link(&app, "alice").await;
    bot.user_says(5551, &format!("/start {token}"));

    replied(&bot, "5551", "linked to alice").await;
    let polls = bot.calls("getUpdates").len();
    until("three more polls", || (bot.calls("getUpdates").len() >= polls + 3).then_some(())).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // the MFA server's next takes
    let texts = bot.texts_to("5551");
    assert_eq!(texts.iter().filter(|t| t.contains("now linked to alice")).count(), 1, "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("expired or was already used")), "{texts:?}");
}

#[tokio::test]
async fn a_link_is_refused_clearly_where_it_cannot_work() {
    // No Telegram channel.
    let plain = TestApp::builder().admin().start().await;
    plain.admin_enroll(json!({"username": "alice"})).await;
    let reply = plain.admin(Method::POST, "/admin/users/alice/telegram-link", None).await;
    assert_eq!((reply.status, reply.body["error"].as_str()), (503, Some("channel_not_configured")), "{:?}", reply.body);

    // The bot's messages read by another program.
    let bot = BotApi::start().await;
    let off = TestApp::builder().admin().envs(bot.env()).env("TELEGRAM_UPDATES", "off").start().await;
    off.admin_enroll(json!({"username": "alice"})).await;
    let reply = off.admin(Method::POST, "/admin/users/alice/telegram-link", None).await;
    assert_eq!((reply.status, reply.body["error"].as_str()), (503, Some("telegram_linking_off")), "{:?}", reply.body);
    assert!(bot.calls("getUpdates").is_empty() && bot.calls("deleteWebhook").is_empty(), "nothing was polled");

    // A user from .env, and no user.
    let app = TestApp::builder()
        .admin()
        .envs(bot.env())
        .envs([("MFA_ENV_USERS", "dair"), ("DAIR_SECRET", SECRET_A), ("DAIR_TELEGRAM_ID", "777")])
        .start()
        .await;
    let reply = app.admin(Method::POST, "/admin/users/dair/telegram-link", None).await;
    assert_eq!((reply.status, reply.body["error"].as_str()), (409, Some("defined_in_env")), "{:?}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("DAIR_TELEGRAM_ID"), "{:?}", reply.body);
    let reply = app.admin(Method::POST, "/admin/users/nobody/telegram-link", None).await;
    assert_eq!((reply.status, reply.body["error"].as_str()), (404, Some("unknown_user")));
}

#[tokio::test]
async fn the_webhook_takes_updates_that_carry_its_secret_and_no_others() {
    let bot = BotApi::start().await;
    // The public address, which a proxy forwards to the service, keeping the Host.
    let url = "https://bot.example.com/hooks/telegram".to_string();
    let app = TestApp::builder()
        .admin()
        .envs(bot.env())
        .envs([("TELEGRAM_WEBHOOK_URL", url.as_str()), ("TELEGRAM_WEBHOOK_SECRET_TOKEN", "hook-secret_0123456789")])
        .start()
        .await;
    let set = until("setWebhook", || bot.calls("setWebhook").into_iter().next()).await;
    assert_eq!(set["url"], url);
    assert_eq!(set["secret_token"], "hook-secret_0123456789");
    app.admin_enroll(json!({"username": "alice"})).await;
    let token = link(&app, "alice").await;
    let update = bot.user_says(5551, &format!("/start {token}"));

    let post = |secret: Option<&'static str>| {
        let mut request =
            app.client.post(app.notifier_url("/hooks/telegram")).header("host", "bot.example.com").json(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some("hook-secret_0123456788")).await, 401);
    assert_eq!(telegram_id(&app, "alice").await, Value::Null, "a refused post changes nothing");
    assert_eq!(post(Some("hook-secret_0123456789")).await, 200);

    replied(&bot, "5551", "linked to alice").await;
    assert_eq!(telegram_id(&app, "alice").await, "5551");
    assert!(bot.calls("getUpdates").is_empty(), "a webhook is not polled");
    // Not a route of the service otherwise, and never under the token of /send.
    let other = app.client.post(app.notifier_url("/telegram/webhook")).json(&update).send().await.unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn a_chat_that_became_a_supergroup_is_followed_and_stored() {
    let bot = BotApi::start().await;
    let app = linking_app(&bot).await;
    app.admin_enroll(json!({"username": "team", "telegram_id": "-4001"})).await;
    bot.move_chat("-4001", -1_004_001);

    let sent = app.request_otp("team").await;
    assert_eq!((sent.status, sent.body["status"].as_str()), (200, Some("sent")), "{:?}", sent.body);
    let code = until("the code in the supergroup", || bot.texts_to("-1004001").iter().find_map(|t| code_in(t))).await;
    assert_eq!(app.verify("team", &code).await.status, 200);
    until_async("the new chat id stored", || async { (telegram_id(&app, "team").await == "-1004001").then_some(()) })
        .await;

    // The next code goes to the new id at once.
    let before = bot.received().iter().filter(|m| m["chat_id"] == "-4001").count();
    assert_eq!(app.request_otp("team").await.status, 200);
    until("a second code in the supergroup", || (bot.texts_to("-1004001").len() >= 2).then_some(())).await;
    assert_eq!(bot.received().iter().filter(|m| m["chat_id"] == "-4001").count(), before);

    // /send says where the message went.
    let reply = app.send(json!({"channel": "telegram", "recipient": "-4001", "message": "hi"}), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["recipient_moved_to"], "-1004001");
}

/// `mfa notifier` and `mfa server` as two processes: the server takes the `/start`s over
/// HTTP with `NOTIFY_API_TOKEN`, as it sends codes. The link comes from the CLI.
#[tokio::test]
async fn two_processes_link_a_chat_over_the_notification_api() {
    let bot = BotApi::start().await;
    let port = closed_port();
    let mut env = bot.env();
    for (name, value) in [
        ("NOTIFY_BIND", format!("127.0.0.1:{port}")),
        ("NOTIFICATION_URL", format!("http://127.0.0.1:{port}")),
        ("NOTIFY_API_TOKEN", "notify-token-for-linking-0123".to_string()),
    ] {
        env.push((name.to_string(), value));
    }
    let notifier_dir = tempfile::tempdir().unwrap();
    let mut notifier = crate::process::mfa_via(notifier_dir.path(), &env, &[])
        .arg("notifier")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_async("the notification service", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestApp::builder().admin().shared_dir(dir.path()).envs(&env).start_binary("server").await;
    server.admin_enroll(json!({"username": "alice"})).await;
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let printed = crate::process::cli(dir.path(), &pairs, &["user", "telegram-link", "alice"]).await;
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let url = printed.stdout.lines().next().unwrap();
    let token = url.strip_prefix(&format!("https://t.me/{BOT_USERNAME}?start=")).expect(url).to_string();
    assert!(printed.stdout.contains("works once, for 10 minutes"), "{}", printed.stdout);

    bot.user_says(5551, &format!("/start {token}"));

    replied(&bot, "5551", "linked to alice").await;
    assert_eq!(telegram_id(&server, "alice").await, "5551");
    assert_eq!(bot.calls("deleteWebhook").len(), 1, "only the notification service reads the bot's messages");
    let unauthorized = server.client.post(format!("http://127.0.0.1:{port}/telegram/starts")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401, "the starts are the token holder's only");
    notifier.kill().await.unwrap();
}

/// The MFA server asks for `/start`s every second: counted in the notification service's
/// metrics, but not a log line each at the default level (where other requests have one).
#[tokio::test]
async fn taking_the_starts_every_second_does_not_fill_the_log() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start_binary("serve").await;
    let metrics = || async {
        let text = app.client.get(app.notifier_url("/metrics")).send().await.unwrap().text().await.unwrap();
        let series = r#"http_requests_total{route="/telegram/starts",method="POST",status="200"} "#;
        text.lines().find_map(|l| l.strip_prefix(series)).and_then(|n| n.parse::<u64>().ok())
    };
    until_async("three takes", || async { metrics().await.filter(|n| *n >= 3) }).await;
    let missing = app.client.get(app.notifier_url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let logs = app.logged().await;
    assert!(logs.contains("path=/nowhere"), "other requests are logged: {logs}");
    assert!(!logs.contains("/telegram/starts"), "{logs}");
}
