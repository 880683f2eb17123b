//! A local stand-in for the Telegram Bot API's `sendMessage`, with its documented request
//! and response shapes: `{"ok":true,"result":{Message}}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{"retry_after":N}}`.
//! Replies can be scripted in order; an unknown token gets 401 as from Telegram.
//!
//! It also plays the bot's side of incoming messages: `getUpdates` (long polling, with
//! `offset` confirming earlier updates, held until an update comes or a short while
//! passes), `setWebhook` / `deleteWebhook` (recorded), and chats that moved to a
//! supergroup (`sendMessage` to the old id answers 400 with `migrate_to_chat_id`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub const TOKEN: &str = "123456:AAFakeBotTokenForTests-x9Yz";

#[derive(Debug, Clone)]
pub enum Scripted {
    Error(u16, &'static str),
    RetryAfter(u64),
    /// Answer normally, after this long: a slow request.
    Delay(std::time::Duration),
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Scripted>,
    received: Vec<Value>,
    /// Updates for `getUpdates`, each with its `update_id`.
    updates: Vec<Value>,
    /// `getUpdates`, `setWebhook` and `deleteWebhook` calls, each as `{"method":..,"body":..}`.
    calls: Vec<Value>,
    /// Chats that became supergroups: old id, new id.
    moved: std::collections::HashMap<String, i64>,
    /// The last `update_id` given.
    last_update: i64,
    /// A careless server: `getUpdates` ignores `offset`, `deleteWebhook` is not found.
    careless: bool,
}

#[derive(Clone)]
pub struct BotApi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn api_error(code: u16, description: &str, parameters: Option<Value>) -> (StatusCode, Json<Value>) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (StatusCode::from_u16(code).unwrap(), Json(body))
}

/// Telegram's answer to a path whose token is not the bot's: 401.
fn unknown_bot(bot: &str) -> Option<(StatusCode, Json<Value>)> {
    (bot != format!("bot{TOKEN}")).then(|| api_error(401, "Unauthorized", None))
}

async fn send_message(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(bot): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = unknown_bot(&bot) {
        return refused;
    }
    let next = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(body.clone());
        inner.script.pop_front()
    };
    match next {
        Some(Scripted::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Scripted::Error(code, description)) => return api_error(code, description, None),
        Some(Scripted::RetryAfter(seconds)) => {
            let description = format!("Too Many Requests: retry after {seconds}");
            return api_error(429, &description, Some(json!({"retry_after": seconds})));
        }
        None => {}
    }
    let text = body["text"].as_str().unwrap_or_default();
    let chat = body["chat_id"].as_str().map(str::to_string).unwrap_or_else(|| body["chat_id"].to_string());
    if let Some(new) = inner.lock().unwrap().moved.get(&chat) {
        let description = "Bad Request: group chat was upgraded to a supergroup chat";
        return api_error(400, description, Some(json!({"migrate_to_chat_id": new})));
    }
    if body["chat_id"].is_null() {
        return api_error(400, "Bad Request: chat_id is empty", None);
    }
    if text.is_empty() {
        return api_error(400, "Bad Request: message text is empty", None);
    }
    let message_id = inner.lock().unwrap().received.len();
    (
        StatusCode::OK,
        Json(json!({"ok": true, "result": {
            "message_id": message_id,
            "date": 1_800_000_000,
            "chat": {"id": body["chat_id"], "type": "private"},
            "text": text,
        }})),
    )
}

/// `getMe`, as the Bot API answers it: the bot, for the right token.
async fn get_me(Path(bot): Path<String>) -> (StatusCode, Json<Value>) {
    if let Some(refused) = unknown_bot(&bot) {
        return refused;
    }
    let me = json!({"id": 424242, "is_bot": true, "first_name": "MFA test", "username": BOT_USERNAME});
    (StatusCode::OK, Json(json!({"ok": true, "result": me})))
}

/// `getUpdates`: the updates from `offset` on, at once if there are any, else when one
/// comes or after a short hold (Telegram holds up to `timeout` seconds; tests need not wait).
async fn get_updates(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(bot): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = unknown_bot(&bot) {
        return refused;
    }
    let offset = body["offset"].as_i64().unwrap_or(0);
    inner.lock().unwrap().calls.push(json!({"method": "getUpdates", "body": body}));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    loop {
        let pending: Vec<Value> = {
            let mut inner = inner.lock().unwrap();
            // As Telegram does: an offset confirms every update before it, which is forgotten.
            if !inner.careless {
                inner.updates.retain(|u| u["update_id"].as_i64().unwrap() >= offset);
            }
            inner.updates.clone()
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return (StatusCode::OK, Json(json!({"ok": true, "result": pending})));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `setWebhook` and `deleteWebhook`: recorded, and answered as Telegram does.
async fn webhook_method(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, method)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = unknown_bot(&bot) {
        return refused;
    }
    let careless = {
        let mut inner = inner.lock().unwrap();
        inner.calls.push(json!({"method": method, "body": body}));
        inner.careless
    };
    if careless {
        return api_error(404, "Not Found", None);
    }
    let description = if method == "setWebhook" { "Webhook was set" } else { "Webhook was deleted" };
    (StatusCode::OK, Json(json!({"ok": true, "result": true, "description": description})))
}

/// The stand-in bot's username.
pub const BOT_USERNAME: &str = "mfa_test_bot";

impl BotApi {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{bot}/sendMessage", post(send_message))
            .route("/{bot}/getMe", axum::routing::get(get_me))
            .route("/{bot}/getUpdates", post(get_updates))
            .route("/{bot}/{method}", post(webhook_method))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inner }
    }

    /// Replies to give, in order, before answering normally again.
    pub fn script(&self, replies: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Every `sendMessage` body received (scripted failures included).
    pub fn received(&self) -> Vec<Value> {
        self.inner.lock().unwrap().received.clone()
    }

    /// A private chat's user sends the bot `text`; `getUpdates` gives it out next. The update,
    /// as Telegram shapes it.
    pub fn user_says(&self, chat: i64, text: &str) -> Value {
        let mut inner = self.inner.lock().unwrap();
        inner.last_update += 1;
        let id = 1000 + inner.last_update;
        let update = json!({"update_id": id, "message": {
            "message_id": id, "date": 1_800_000_000,
            "from": {"id": chat, "is_bot": false, "first_name": "Test"},
            "chat": {"id": chat, "type": "private", "first_name": "Test"},
            "text": text,
        }});
        inner.updates.push(update.clone());
        update
    }

    /// The `getUpdates`, `setWebhook` and `deleteWebhook` calls so far.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.inner.lock().unwrap().calls.iter().filter(|c| c["method"] == method).map(|c| c["body"].clone()).collect()
    }

    /// From now on `getUpdates` ignores `offset` (giving every update again) and
    /// `deleteWebhook` answers 404: a stand-in less complete than Telegram.
    pub fn be_careless(&self) {
        self.inner.lock().unwrap().careless = true;
    }

    /// The group chat `old` became the supergroup `new`.
    pub fn move_chat(&self, old: &str, new: i64) {
        self.inner.lock().unwrap().moved.insert(old.to_string(), new);
    }

    /// The texts sent to `chat`, in order (successful sends only).
    pub fn texts_to(&self, chat: &str) -> Vec<String> {
        let moved = self.inner.lock().unwrap().moved.clone();
        self.received()
            .iter()
            .filter(|m| m["chat_id"].as_str() == Some(chat) && !moved.contains_key(chat))
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![("TELEGRAM_TOKEN".into(), TOKEN.into()), ("TELEGRAM_API_URL".into(), format!("http://{}", self.addr))]
    }
}
