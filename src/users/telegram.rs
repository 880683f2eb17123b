//! Telegram chats linking themselves: an operator (or the app, through the admin API)
//! asks for a link for a user; the user opens it and presses Start; the bot receives
//! `/start <token>` (`crate::notify::updates`), and [`link_chats`] binds that chat to the
//! user and replies in it. Tokens are 256 random bits, stored as their SHA-256, used once,
//! and expire after [`LINK_SECONDS`]; a new link replaces the user's unused one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{UserError, UserService, UserSource};
use crate::alerts::Alert;
use crate::domain::{Channel, Username};
use crate::notify::wire::LinkStart;
use crate::notify::{Delivery, DeliveryError, FailureKind, Notifier};

/// How long a link works.
pub const LINK_SECONDS: u64 = 600;

/// A link for one user's chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramLink {
    /// `https://t.me/<bot>?start=<token>`: opening it in Telegram offers Start.
    pub url: String,
    pub expires_in: u64,
}

/// Why no link could be made, besides the user's own faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkUnavailable {
    #[error("the Telegram channel is not configured (TELEGRAM_TOKEN)")]
    NotConfigured,
    #[error("the notification service does not receive the bot's messages (TELEGRAM_UPDATES=off)")]
    LinkingOff,
    #[error("the bot cannot be reached: {0}")]
    Unreachable(String),
}

/// The stored form of a link token: its SHA-256. A keyed hash (as for codes) adds nothing
/// to 256 random bits, which no one can find from their hash.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The replies in the chat.
fn linked_text(issuer: &str, username: &Username) -> String {
    format!("This chat is now linked to {username} at {issuer}: your sign-in codes will come here.")
}
const REFUSED_TEXT: &str = "This link has expired or was already used, so nothing was changed. \
                            Ask for a new link where you got this one.";

impl UserService {
    /// A new link for the user's Telegram chat; the user's earlier unused link stops working.
    pub async fn telegram_link(&self, username: &Username) -> Result<TelegramLink, UserError> {
        let user = self.store.user(username).await?.ok_or_else(|| UserError::NotFound(username.clone()))?;
        if user.profile.source == UserSource::Env {
            let var = format!("{}_TELEGRAM_ID", username.as_str().to_uppercase());
            return Err(UserError::DefinedInEnv { username: username.clone(), var });
        }
        let notifier = self.notifier.as_ref().ok_or(UserError::Telegram(LinkUnavailable::NotConfigured))?;
        let bot = notifier.telegram_bot().await.map_err(|e| {
            UserError::Telegram(match e.kind {
                FailureKind::NotConfigured => LinkUnavailable::NotConfigured,
                _ => LinkUnavailable::Unreachable(e.why.public),
            })
        })?;
        if !bot.linking {
            return Err(UserError::Telegram(LinkUnavailable::LinkingOff));
        }
        let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
        let now = self.clock.now();
        if !self.store.insert_telegram_link(username, &token_hash(&token), now, now + LINK_SECONDS).await? {
            return Err(UserError::NotFound(username.clone()));
        }
        Ok(TelegramLink { url: format!("https://t.me/{}?start={token}", bot.username), expires_in: LINK_SECONDS })
    }

    /// Binds `start.chat` to the user of `start.token`, if the token is unused and valid:
    /// the user, or `None`.
    pub async fn use_telegram_link(&self, start: &LinkStart) -> Result<Option<Username>, UserError> {
        let now = self.clock.now();
        let linked = self.store.use_telegram_link(&token_hash(&start.token), &start.chat, now).await?;
        if let Some(username) = &linked {
            self.alerts.raise(username, Alert::TelegramLinked { chat: start.chat.clone() });
        }
        Ok(linked)
    }
}

/// How often the notification service is asked for new `/start`s, and how long to wait
/// after it said the Telegram channel or linking is off, or could not be reached.
const TAKE_EVERY: Duration = Duration::from_secs(1);
const AFTER_NOT_CONFIGURED: Duration = Duration::from_secs(60);
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Takes the `/start <token>`s the bot received, binds each good one's chat, and replies
/// in every chat, until `stop`.
pub async fn link_chats(users: UserService, notifier: Arc<dyn Notifier>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let pause = match notifier.take_link_starts().await {
            Ok(starts) => {
                for start in starts {
                    link_one(&users, notifier.as_ref(), &start).await;
                }
                TAKE_EVERY
            }
            Err(DeliveryError { kind: FailureKind::NotConfigured, .. }) => AFTER_NOT_CONFIGURED,
            Err(e) => {
                warn!(event = "telegram_link", error = %e, "cannot take the bot's /start messages");
                AFTER_FAILURE
            }
        };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn link_one(users: &UserService, notifier: &dyn Notifier, start: &LinkStart) {
    let (outcome, text) = match users.use_telegram_link(start).await {
        Ok(Some(username)) => {
            info!(event = "telegram_link", chat = %start.chat, %username, outcome = "linked");
            ("linked", linked_text(&users.settings.issuer, &username))
        }
        Ok(None) => {
            info!(event = "telegram_link", chat = %start.chat, outcome = "refused", "an unknown, used or expired link");
            ("refused", REFUSED_TEXT.to_string())
        }
        Err(e) => {
            warn!(event = "telegram_link", chat = %start.chat, error = %e, "cannot link a chat");
            return;
        }
    };
    let reply =
        Delivery { channel: Channel::Telegram, recipient: start.chat.clone(), subject: String::new(), message: text };
    if let Err(e) = notifier.deliver(&reply).await {
        warn!(event = "telegram_link", chat = %start.chat, outcome, error = %e, "cannot reply in the chat");
    }
}
