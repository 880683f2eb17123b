//! A local stand-in for the Telegram Bot API's `sendMessage`, with its documented request
//! and response shapes: `{"ok":true,"result":{Message}}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{"retry_after":N}}`.
//! Replies can be scripted in order; an unknown token gets 401 as from Telegram.

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

async fn send_message(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(bot): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if bot != format!("bot{TOKEN}") {
        return api_error(401, "Unauthorized", None);
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
    if bot != format!("bot{TOKEN}") {
        return api_error(401, "Unauthorized", None);
    }
    let me = json!({"id": 424242, "is_bot": true, "first_name": "MFA test", "username": BOT_USERNAME});
    (StatusCode::OK, Json(json!({"ok": true, "result": me})))
}

/// The stand-in bot's username.
pub const BOT_USERNAME: &str = "mfa_test_bot";

impl BotApi {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{bot}/sendMessage", post(send_message))
            .route("/{bot}/getMe", axum::routing::get(get_me))
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

    pub fn env(&self) -> Vec<(String, String)> {
        vec![("TELEGRAM_TOKEN".into(), TOKEN.into()), ("TELEGRAM_API_URL".into(), format!("http://{}", self.addr))]
    }
}
