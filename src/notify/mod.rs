//! Delivery of messages (one-time codes) to email addresses and Telegram chats.
//!
//! The MFA server only sees [`Notifier`]. Implementations:
//! - [`FileNotifier`]: appends to a file, the development default;
//! - [`Channels`]: the notification service's real channels (SMTP via lettre, the Telegram
//!   Bot API via reqwest), each attempt bounded by a timeout and retried by [`retry`];
//! - [`HttpNotifier`]: the MFA server's client of the notification service's `POST /send`
//!   (whose request and reply types, in `wire`, both sides share).
//!
//! This module never imports the MFA side (`verify`, `users`, `store`).

pub mod api;
pub mod check;
pub mod client;
pub mod email;
mod file;
pub mod retry;
pub mod telegram;
pub mod updates;
pub mod wire;

use std::fmt;

use async_trait::async_trait;

use crate::domain::Channel;
pub use client::HttpNotifier;
pub use file::FileNotifier;

/// One message to one recipient. Its `Debug` leaves out the text, which holds a code.
#[derive(Clone)]
pub struct Delivery {
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    pub message: String,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("channel", &self.channel)
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The channel has no credentials here.
    NotConfigured,
    /// Retried until the retries ran out (connection refused, timeouts, SMTP 4xx, HTTP 5xx/429).
    Transient,
    /// Not worth retrying (SMTP 5xx, Telegram 400, bad credentials or TLS setup).
    Permanent,
    /// The recipient itself was refused, for good: no such mailbox (SMTP 550, 551, 553), no
    /// such chat (Telegram 400 "chat not found"), a chat that blocked the bot (403). The
    /// request's fault, not an outage.
    Rejected,
}

/// Why a delivery failed, said twice: `public` for whoever asked (our own words: no
/// address, URL or upstream server's text), `log` for the operator (with the upstream's
/// text, truncated and escaped). Neither ever holds a password, a token or the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    pub public: String,
    pub log: String,
}

/// Upstream text kept in a log line, at most.
const UPSTREAM_LOG_CHARS: usize = 300;
/// Upstream text passed on to the caller (a refused recipient's reason), at most.
const UPSTREAM_PUBLIC_CHARS: usize = 120;

impl Why {
    /// Our own words, which both may read.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        Self { log: text.clone(), public: text }
    }

    /// Our words for the caller; for the log, followed by what the upstream said.
    pub fn with_upstream(public: impl Into<String>, upstream: &str) -> Self {
        let public = public.into();
        let log = format!("{public}: {}", crate::telemetry::printable(upstream, UPSTREAM_LOG_CHARS));
        Self { public, log }
    }

    /// The upstream's own short reason for both, escaped and cut to a line: for a refused
    /// recipient, which the caller must fix and so must be told.
    pub fn upstream_reason(ours: &str, upstream: &str) -> Self {
        let short = crate::telemetry::printable(upstream, UPSTREAM_PUBLIC_CHARS);
        Self::with_upstream(format!("{ours}: {short}"), upstream)
    }

    /// The same, with `more` added to both.
    #[must_use]
    pub fn and(self, more: &str) -> Self {
        Self { public: format!("{}{more}", self.public), log: format!("{}{more}", self.log) }
    }
}

/// A delivery made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub attempts: u32,
    /// The Telegram chat moved (a group became a supergroup) and the message went to this
    /// new id, which the caller should store in place of the old one.
    pub moved_to: Option<String>,
}

impl Sent {
    pub fn after(attempts: u32) -> Self {
        Self { attempts, moved_to: None }
    }
}

/// A failed delivery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", why.log)]
pub struct DeliveryError {
    pub kind: FailureKind,
    pub why: Why,
    pub attempts: u32,
}

impl DeliveryError {
    pub fn not_configured(channel: Channel) -> Self {
        Self {
            kind: FailureKind::NotConfigured,
            why: Why::plain(format!("the {channel} channel is not configured")),
            attempts: 0,
        }
    }
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// A short name for logs and the health check.
    fn name(&self) -> &'static str;
    /// Delivers one message.
    async fn deliver(&self, delivery: &Delivery) -> Result<Sent, DeliveryError>;

    /// The Telegram bot, for links a chat opens to link itself (`crate::users`).
    async fn telegram_bot(&self) -> Result<wire::TelegramBot, DeliveryError> {
        Err(DeliveryError::not_configured(Channel::Telegram))
    }

    /// The `/start <token>` messages the bot received since the last call (each once).
    async fn take_link_starts(&self) -> Result<Vec<wire::LinkStart>, DeliveryError> {
        Err(DeliveryError::not_configured(Channel::Telegram))
    }
}

/// The notification service's channels; a channel without credentials is `None`. With
/// none at all, `file` (the development notifier): every message goes to
/// `data/notifications.log`, whether the MFA server runs in the same process or calls
/// this service at a `NOTIFICATION_URL`.
pub struct Channels {
    pub email: Option<email::EmailChannel>,
    pub telegram: Option<std::sync::Arc<telegram::TelegramChannel>>,
    pub file: Option<FileNotifier>,
}

#[async_trait]
impl Notifier for Channels {
    fn name(&self) -> &'static str {
        "channels"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Sent, DeliveryError> {
        if let Some(file) = &self.file {
            return file.deliver(delivery).await;
        }
        match delivery.channel {
            Channel::Email => match &self.email {
                Some(email) => email.deliver(delivery).await.map(Sent::after),
                None => Err(DeliveryError::not_configured(Channel::Email)),
            },
            Channel::Telegram => match &self.telegram {
                Some(telegram) => telegram.deliver(delivery).await,
                None => Err(DeliveryError::not_configured(Channel::Telegram)),
            },
        }
    }
}

/// An HTTP client with rustls on the `ring` provider (reqwest is built without one, to
/// avoid compiling aws-lc as well; installing it twice is harmless).
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}
