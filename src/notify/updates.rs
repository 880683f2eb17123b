//! The bot's incoming messages, for chats that link themselves to a user: the MFA server
//! makes a link `https://t.me/<bot>?start=<token>`, the user opens it, and Telegram sends
//! the bot `/start <token>` from the user's chat. This service receives those messages
//! (long polling `getUpdates`, or a webhook) and keeps each `/start <token>` here until the
//! MFA server takes it (`POST /telegram/starts`), binds the chat if the token is good, and
//! replies in the chat through `/send`. The token's meaning stays on the MFA side: this
//! service has no database and never learns which user a token belongs to.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::telegram::{POLL_SECONDS, TelegramChannel};
use super::wire::LinkStart;

/// How long a `/start` waits to be taken: a link token lives no longer (10 minutes).
const KEPT: Duration = Duration::from_secs(600);
/// `/start`s kept at most; past it the oldest go (a flood of them from chats cannot grow
/// memory, and a real user's comes again when they tap the link again).
const MAX_KEPT: usize = 1_000;
/// Taken in one `POST /telegram/starts`, at most.
pub const MAX_TAKEN: usize = 100;
/// Telegram's limit on a deep link's start parameter, and its characters.
const MAX_TOKEN_CHARS: usize = 64;

/// The reply to a bare `/start`, or one whose parameter is no token of ours.
const HELP: &str = "Hello. To get your sign-in codes here, open the Telegram link you were given \
                    (it ends in ?start=...): this chat is linked when you press Start.";

/// The `/start <token>` messages received and not yet taken by the MFA server.
#[derive(Default)]
pub struct LinkStarts {
    waiting: Mutex<VecDeque<(Instant, LinkStart)>>,
}

impl LinkStarts {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, LinkStart)>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, start: LinkStart) {
        let mut waiting = self.lock();
        if waiting.len() >= MAX_KEPT {
            waiting.pop_front();
        }
        waiting.push_back((Instant::now(), start));
    }

    /// The oldest waiting ones (up to [`MAX_TAKEN`]), which are then gone from here.
    pub fn take(&self) -> Vec<LinkStart> {
        let mut waiting = self.lock();
        waiting.retain(|(at, _)| at.elapsed() < KEPT);
        let n = waiting.len().min(MAX_TAKEN);
        waiting.drain(..n).map(|(_, start)| start).collect()
    }
}

/// What a message to the bot asks, if anything we answer.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// `/start <token>` from `chat`.
    Link(LinkStart),
    /// `/start` without a token we could use: a short help in `chat`.
    Help { chat: String },
}

/// Reads one update (`{"update_id":N,"message":{"chat":{"id":N},"text":"/start x"}}`).
/// Every other message is left unanswered: the bot is not a chat partner.
fn command(update: &Value) -> Option<Command> {
    let message = &update["message"];
    let chat = match &message["chat"]["id"] {
        Value::Number(id) => id.as_i64()?.to_string(),
        _ => return None,
    };
    let text = message["text"].as_str()?.trim();
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    // `/start@our_bot` is how a group addresses one bot among several.
    if word != "/start" && !word.starts_with("/start@") {
        return None;
    }
    let token = rest.trim();
    let usable = !token.is_empty()
        && token.len() <= MAX_TOKEN_CHARS
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    Some(if usable { Command::Link(LinkStart { chat, token: token.to_string() }) } else { Command::Help { chat } })
}

/// Acts on one update: keeps a `/start <token>`, answers a bare `/start` (in the
/// background: the help needs no one to wait for it).
pub fn handle(update: &Value, telegram: &Arc<TelegramChannel>, starts: &LinkStarts) {
    match command(update) {
        Some(Command::Link(start)) => {
            info!(event = "telegram_start", chat = %start.chat, "a chat asked to be linked");
            starts.push(start);
        }
        Some(Command::Help { chat }) => {
            let telegram = telegram.clone();
            tokio::spawn(async move {
                if let Err(why) = telegram.reply(&chat, HELP).await {
                    debug!(event = "telegram_reply", %chat, detail = %why.log, "could not answer a /start");
                }
            });
        }
        None => {}
    }
}

/// The wait after the `n`th failure in a row: 1 s doubling to a minute.
fn pause_after(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

/// Calls `method` until Telegram accepts it (or `stop`): the webhook's setting or removal,
/// which the updates depend on.
async fn until_accepted(
    telegram: &TelegramChannel,
    method: &str,
    body: &Value,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> bool {
    let mut failures = 0;
    loop {
        match telegram.call(method, body, Duration::ZERO).await {
            Ok(_) => return true,
            Err(why) => {
                warn!(event = "telegram_updates", method, detail = %why.log, "Telegram refused; trying again");
                failures += 1;
            }
        }
        tokio::select! {
            () = &mut *stop => return false,
            () = tokio::time::sleep(pause_after(failures)) => {}
        }
    }
}

/// Removes the bot's webhook, if any (Telegram refuses `getUpdates` while one is set). Best
/// effort: a failure is logged, and polling goes on (a webhook still set shows as 409).
async fn delete_webhook(telegram: &TelegramChannel) {
    if let Err(why) = telegram.call("deleteWebhook", &json!({"drop_pending_updates": false}), Duration::ZERO).await {
        warn!(event = "telegram_updates", detail = %why.log, "could not remove the bot's webhook; polling anyway");
    }
}

/// Long polls `getUpdates` until `stop`, after removing any webhook. Each update is
/// confirmed by the next call's `offset`, and one seen already is never handled again
/// (a server that ignored the offset would otherwise make the bot answer it each time).
pub async fn poll(telegram: Arc<TelegramChannel>, starts: Arc<LinkStarts>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    delete_webhook(&telegram).await;
    info!(event = "telegram_updates", mode = "poll", "receiving the bot's messages by long polling getUpdates");
    let mut offset: Option<i64> = None;
    let mut failures = 0;
    loop {
        let body = json!({"offset": offset, "timeout": POLL_SECONDS, "allowed_updates": ["message"]});
        let started = Instant::now();
        let wait = Duration::from_secs(POLL_SECONDS);
        let pause = tokio::select! {
            () = &mut stop => return,
            answer = telegram.call("getUpdates", &body, wait) => match answer {
                Ok(Value::Array(updates)) => {
                    failures = 0;
                    for update in &updates {
                        let Some(id) = update["update_id"].as_i64() else { continue };
                        if offset.is_some_and(|o| id < o) {
                            continue;
                        }
                        offset = Some(id + 1);
                        handle(update, &telegram, &starts);
                    }
                    // A server that does not hold the poll (answering at once) is not asked
                    // more than once a second.
                    if updates.is_empty() { Duration::from_secs(1).saturating_sub(started.elapsed()) } else { Duration::ZERO }
                }
                Ok(other) => {
                    failures += 1;
                    warn!(event = "telegram_updates", answer = %crate::telemetry::printable(&other.to_string(), 100),
                        "getUpdates answered something other than a list");
                    pause_after(failures)
                }
                Err(why) => {
                    failures += 1;
                    // 409: another program polls this bot, or a webhook was set since.
                    warn!(event = "telegram_updates", detail = %why.log, failures, "getUpdates failed; polling again");
                    if why.log.contains("webhook") {
                        delete_webhook(&telegram).await;
                    }
                    pause_after(failures)
                }
            },
        };
        if !pause.is_zero() {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Points the bot's webhook at `url`, with `secret` in every post.
pub async fn set_webhook(telegram: Arc<TelegramChannel>, url: String, secret: String, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let body = json!({"url": url, "secret_token": secret, "allowed_updates": ["message"]});
    if until_accepted(&telegram, "setWebhook", &body, &mut stop).await {
        info!(event = "telegram_updates", mode = "webhook", %url, "Telegram posts the bot's messages to the webhook");
    }
}

/// A webhook secret made at start-up when `TELEGRAM_WEBHOOK_SECRET_TOKEN` is not set: 43
/// characters of the URL-safe base64 alphabet, which Telegram accepts.
pub fn random_secret() -> String {
    data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(chat: i64, text: &str) -> Value {
        json!({"update_id": 7, "message": {"message_id": 1, "chat": {"id": chat, "type": "private"}, "text": text}})
    }

    fn link(chat: &str, token: &str) -> Option<Command> {
        Some(Command::Link(LinkStart { chat: chat.into(), token: token.into() }))
    }

    #[test]
    fn start_with_a_token_links_and_everything_else_is_help_or_nothing() {
        assert_eq!(command(&update(42, "/start abc_DEF-123")), link("42", "abc_DEF-123"));
        assert_eq!(command(&update(-1001, "/start@mfa_bot tok")), link("-1001", "tok"));
        assert_eq!(command(&update(42, "  /start   tok  ")), link("42", "tok"));
        assert_eq!(command(&update(42, "/start")), Some(Command::Help { chat: "42".into() }));
        assert_eq!(command(&update(42, "/start a b")), Some(Command::Help { chat: "42".into() }));
        assert_eq!(
            command(&update(42, &format!("/start {}", "x".repeat(65)))),
            Some(Command::Help { chat: "42".into() })
        );
        assert_eq!(command(&update(42, "/start tök")), Some(Command::Help { chat: "42".into() }));
        assert_eq!(command(&update(42, "hello")), None);
        assert_eq!(command(&update(42, "/starter tok")), None);
        assert_eq!(command(&json!({"update_id": 1, "edited_message": {}})), None);
        assert_eq!(command(&json!({"update_id": 1, "message": {"chat": {"id": "x"}, "text": "/start t"}})), None);
    }

    #[test]
    fn starts_are_taken_once_oldest_first_and_bounded() {
        let starts = LinkStarts::default();
        for n in 0..MAX_KEPT + 5 {
            starts.push(LinkStart { chat: n.to_string(), token: "t".into() });
        }
        let first = starts.take();
        assert_eq!(first.len(), MAX_TAKEN);
        assert_eq!(first[0].chat, "5", "the oldest beyond the bound went first");
        let mut rest = 0;
        loop {
            let taken = starts.take();
            if taken.is_empty() {
                break;
            }
            rest += taken.len();
        }
        assert_eq!(rest, MAX_KEPT - MAX_TAKEN);
    }

    #[test]
    fn pauses_grow_to_a_minute() {
        assert_eq!(pause_after(1), Duration::from_secs(2));
        assert_eq!(pause_after(30), Duration::from_secs(60));
    }
}
