//! The notification service checks its own channels without sending anything: the SMTP
//! relay (connect, greeting, STARTTLS or TLS, AUTH) and the Telegram token (`getMe`). At
//! start-up (`NOTIFY_STARTUP_CHECK`) and then every `NOTIFY_CHECK_SECONDS`; the last
//! result of each channel is in `/healthcheck`, so a wrong password or a dead relay shows
//! before the first user waits for a code.

use std::sync::Mutex;

use super::{Channels, Why};
use crate::clock::{Clock, SystemClock};
use crate::domain::Channel;

/// One channel's last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Unix seconds.
    pub checked_at: u64,
    /// Why it failed, in our words (never a password, token or URL); `None`: it passed.
    pub failure: Option<String>,
}

/// The last check of each channel; `None` until one ran.
#[derive(Debug, Default)]
pub struct ChannelChecks {
    email: Mutex<Option<CheckResult>>,
    telegram: Mutex<Option<CheckResult>>,
}

impl ChannelChecks {
    pub fn last(&self, channel: Channel) -> Option<CheckResult> {
        self.slot(channel).lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn slot(&self, channel: Channel) -> &Mutex<Option<CheckResult>> {
        match channel {
            Channel::Email => &self.email,
            Channel::Telegram => &self.telegram,
        }
    }

    /// Checks every configured channel, at once, and records the results; the failures,
    /// with the operator's words (which may hold the upstream's text).
    pub async fn run(&self, channels: &Channels) -> Vec<(Channel, Why)> {
        let email = async {
            match &channels.email {
                Some(email) => Some(email.check().await),
                None => None,
            }
        };
        let telegram = async {
            match &channels.telegram {
                Some(telegram) => Some(telegram.check().await.map(|bot| tracing::debug!(bot = %bot, "Telegram bot"))),
                None => None,
            }
        };
        let (email, telegram) = tokio::join!(email, telegram);
        // The checks' times are for operators reading `/healthcheck`: the system's clock.
        let now = SystemClock.now();
        let mut failures = Vec::new();
        for (channel, outcome) in [(Channel::Email, email), (Channel::Telegram, telegram)] {
            let Some(outcome) = outcome else { continue };
            let failure = outcome.err();
            *self.slot(channel).lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(CheckResult { checked_at: now, failure: failure.as_ref().map(|why| why.public.clone()) });
            match failure {
                Some(why) => {
                    tracing::warn!(event = "channel_check", %channel, outcome = "failed", detail = %why.log);
                    failures.push((channel, why));
                }
                None => tracing::info!(event = "channel_check", %channel, outcome = "ok"),
            }
        }
        failures
    }
}
