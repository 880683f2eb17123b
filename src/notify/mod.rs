//! Delivery of one-time codes to a user's channels.
//!
//! The MFA server only sees [`Notifier`]. Today's implementation is [`FileNotifier`], the
//! development default (like Authelia's filesystem notifier); the notification service
//! (email, Telegram) plugs in behind the same trait.

mod file;

use std::fmt;

use async_trait::async_trait;
pub use file::FileNotifier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Telegram => "telegram",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// A short name for logs and the health check.
    fn name(&self) -> &'static str;
    async fn deliver(&self, delivery: &Delivery) -> Result<(), DeliveryError>;
}
