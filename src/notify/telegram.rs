//! The Telegram channel: `sendMessage` of the Bot API.
//!
//! The bot token is part of every request URL, and reqwest's errors print their URL, so
//! every reqwest error goes through `without_url()` and every detail through `redact`:
//! the token never reaches a log line or a response.

use std::time::Duration;

use serde::Deserialize;

use super::retry::{AttemptError, RetryPolicy, with_retries};
use super::{Delivery, DeliveryError, Sent, Why};
use crate::telemetry::printable;

/// The most of a Bot API description passed on.
const DESCRIPTION_CHARS: usize = 120;
use crate::config::{Sensitive, TelegramSettings};

/// Telegram's limits for a bot: about one message a second to a chat, and 30 a second in
/// all (the Bot API FAQ). Messages past them wait their turn; none is dropped.
const PER_CHAT_PER_SECOND: u32 = 1;
const PER_BOT_PER_SECOND: u32 = 30;
/// Chats remembered by the per-chat pace before the idle ones are forgotten.
const PACED_CHATS: usize = 10_000;

pub struct TelegramChannel {
    client: reqwest::Client,
    /// The pace per chat and per bot, by waiting.
    per_chat: governor::DefaultKeyedRateLimiter<String>,
    per_bot: governor::DefaultDirectRateLimiter,
    /// `{api}/bot{token}`, to which each method's name is added: as secret as the token.
    bot_url: Sensitive,
    token: Sensitive,
    policy: RetryPolicy,
    timeout: Duration,
}

/// What `getUpdates` long-polls for, at most (Telegram allows up to 50 s; proxies between
/// often cut idle requests near a minute).
pub const POLL_SECONDS: u64 = 25;

/// The body of `sendMessage`.
#[derive(serde::Serialize)]
struct SendMessage<'a> {
    chat_id: &'a str,
    text: &'a str,
}

/// The Bot API's error shape: `{"ok":false,"error_code":429,"description":"...",
/// "parameters":{"retry_after":5}}`.
#[derive(Debug, Deserialize)]
struct ApiReply {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ApiParameters>,
    /// `getMe`: the bot.
    #[serde(default)]
    result: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ApiParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    /// A group that became a supergroup: its new chat id, where messages must go now.
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

impl TelegramChannel {
    pub fn new(settings: &TelegramSettings, retry_base: Duration) -> Result<Self, String> {
        let token = settings.token.clone();
        if token.expose().contains(['/', '?', '#', ' ']) {
            return Err("TELEGRAM_TOKEN: a bot token has no '/', '?', '#' or spaces".into());
        }
        let quota =
            |n: u32| governor::Quota::per_second(std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN));
        Ok(Self {
            per_chat: governor::RateLimiter::keyed(quota(PER_CHAT_PER_SECOND)),
            per_bot: governor::RateLimiter::direct(quota(PER_BOT_PER_SECOND)),
            client: super::http_client(settings.timeout)?,
            bot_url: Sensitive::new(format!("{}/bot{}", settings.api_url, token.expose())),
            token,
            policy: RetryPolicy::for_telegram(settings, retry_base),
            timeout: settings.timeout,
        })
    }

    fn method_url(&self, method: &str) -> String {
        format!("{}/{method}", self.bot_url.expose())
    }

    fn redact(&self, text: String) -> String {
        let token = self.token.expose();
        if token.is_empty() { text } else { text.replace(token, "<token>") }
    }

    /// One `sendMessage`; `Ok(Some(chat))` when Telegram answered that the chat moved there
    /// (a group that became a supergroup) and the message was not sent.
    async fn attempt(&self, chat: &str, text: &str) -> Result<Option<String>, AttemptError> {
        if self.per_chat.len() > PACED_CHATS {
            self.per_chat.retain_recent();
        }
        self.per_chat.until_key_ready(&chat.to_string()).await;
        self.per_bot.until_ready().await;
        let body = SendMessage { chat_id: chat, text };
        let response = self.client.post(self.method_url("sendMessage")).json(&body).send().await.map_err(|e| {
            AttemptError::transient(Why::with_upstream(
                "cannot reach Telegram",
                &self.redact(e.without_url().to_string()),
            ))
        })?;
        let status = response.status();
        let reply: Option<ApiReply> = response.json().await.ok();
        if status.is_success() && reply.as_ref().is_some_and(|r| r.ok) {
            return Ok(None);
        }
        let parameters = reply.as_ref().and_then(|r| r.parameters.as_ref());
        if let Some(moved) = parameters.and_then(|p| p.migrate_to_chat_id) {
            return Ok(Some(moved.to_string()));
        }
        // The Bot API's descriptions ("Bad Request: chat not found") are the documented
        // reason; they are passed on short, escaped and without the token.
        let description = reply.as_ref().and_then(|r| r.description.clone()).unwrap_or_else(|| status.to_string());
        let description = printable(&self.redact(description), DESCRIPTION_CHARS);
        let why = Why::plain(format!("Telegram answered {}: {description}", status.as_u16()));
        match status.as_u16() {
            429 => {
                let retry_after = parameters.and_then(|p| p.retry_after).unwrap_or(1);
                Err(AttemptError::Transient { why, retry_after: Some(Duration::from_secs(retry_after)) })
            }
            401 | 404 => Err(AttemptError::permanent(why.and(" (check TELEGRAM_TOKEN)"))),
            // The chat itself: it blocked the bot, left, or was deleted (403); it does not
            // exist or never wrote to the bot (400).
            403 => Err(AttemptError::rejected(why)),
            400 if refuses_the_chat(&description) => Err(AttemptError::rejected(why)),
            s if s >= 500 => Err(AttemptError::transient(why)),
            _ => Err(AttemptError::permanent(why)),
        }
    }

    /// Delivers with retries. A chat that moved (`migrate_to_chat_id`) is followed once, in
    /// the same attempt, and the new id is returned for the caller to store.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Sent, DeliveryError> {
        let moved_to = std::sync::Mutex::new(None::<String>);
        let attempts = with_retries(self.policy, || async {
            let chat = moved_to.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let chat = chat.unwrap_or_else(|| delivery.recipient.clone());
            match self.attempt(&chat, &delivery.message).await? {
                None => Ok(()),
                Some(new_chat) if new_chat != chat => {
                    tracing::info!(event = "telegram_chat_moved", from = %chat, to = %new_chat,
                        "the chat became a supergroup; sending to its new id");
                    *moved_to.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(new_chat.clone());
                    match self.attempt(&new_chat, &delivery.message).await? {
                        None => Ok(()),
                        Some(_) => Err(AttemptError::permanent(Why::plain("Telegram moved the chat twice"))),
                    }
                }
                Some(_) => Err(AttemptError::permanent(Why::plain("Telegram moved the chat to itself"))),
            }
        })
        .await?;
        Ok(Sent { attempts, moved_to: moved_to.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) })
    }

    /// Sends one message without retries (a reply in a chat, which nobody waits for).
    pub async fn reply(&self, chat: &str, text: &str) -> Result<(), Why> {
        match self.attempt(chat, text).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(Why::plain("the chat moved")),
            Err(e) => Err(e.why()),
        }
    }

    /// One call of a Bot API method that answers `{"ok":true,"result":...}`: the result.
    pub async fn call(&self, method: &str, body: &serde_json::Value, wait: Duration) -> Result<serde_json::Value, Why> {
        let response =
            self.client
                .post(self.method_url(method))
                .timeout(wait + self.timeout)
                .json(body)
                .send()
                .await
                .map_err(|e| Why::with_upstream("cannot reach Telegram", &self.redact(e.without_url().to_string())))?;
        let status = response.status();
        let reply: Option<ApiReply> = response.json().await.ok();
        match reply {
            Some(ApiReply { ok: true, result, .. }) if status.is_success() => Ok(result.unwrap_or_default()),
            reply => {
                let description = reply.and_then(|r| r.description).unwrap_or_else(|| status.to_string());
                let description = printable(&self.redact(description), DESCRIPTION_CHARS);
                Err(Why::plain(format!("Telegram answered {method} with {}: {description}", status.as_u16())))
            }
        }
    }

    /// Checks the token without sending anything (`getMe`); the bot's username.
    pub async fn check(&self) -> Result<String, Why> {
        let response = self
            .client
            .get(self.method_url("getMe"))
            .send()
            .await
            .map_err(|e| Why::with_upstream("cannot reach Telegram", &self.redact(e.without_url().to_string())))?;
        let status = response.status();
        let reply: Option<ApiReply> = response.json().await.ok();
        let username =
            reply.as_ref().filter(|r| r.ok).and_then(|r| r.result.as_ref()).and_then(|me| me["username"].as_str());
        match username {
            Some(name) if status.is_success() => Ok(name.to_string()),
            _ => {
                let description = reply.and_then(|r| r.description).unwrap_or_else(|| status.to_string());
                let description = printable(&self.redact(description), DESCRIPTION_CHARS);
                let why = Why::plain(format!("Telegram answered {}: {description}", status.as_u16()));
                Err(if matches!(status.as_u16(), 401 | 404) { why.and(" (check TELEGRAM_TOKEN)") } else { why })
            }
        }
    }
}

/// Whether a 400's description says the chat is the problem (the Bot API's own words).
fn refuses_the_chat(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    ["chat not found", "user not found", "peer_id_invalid", "chat_id is empty"].iter().any(|s| d.contains(s))
}

#[cfg(test)]
mod tests {
    use super::refuses_the_chat;

    #[test]
    fn a_400_about_the_chat_is_a_refused_recipient_and_others_are_not() {
        assert!(refuses_the_chat("Bad Request: chat not found"));
        assert!(refuses_the_chat("Bad Request: PEER_ID_INVALID"));
        assert!(!refuses_the_chat("Bad Request: message text is empty"));
        assert!(!refuses_the_chat("Bad Request: can't parse entities"));
    }
}
