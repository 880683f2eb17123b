//! The MFA server's client of the notification service: `POST {NOTIFICATION_URL}/send`.

use std::time::Duration;

use async_trait::async_trait;

use super::wire::{LinkStart, LinkStarts, SendReply, SendRequest, TelegramBot};
use super::{Delivery, DeliveryError, FailureKind, Notifier, Sent, Why};
use crate::config::Sensitive;
use crate::http::ErrorBody;
use crate::telemetry::printable;

pub struct HttpNotifier {
    client: reqwest::Client,
    base_url: String,
    send_url: String,
    api_token: Option<Sensitive>,
}

/// How long the small Telegram calls (`/telegram/bot`, `/telegram/starts`) may take.
const TELEGRAM_CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl HttpNotifier {
    /// `timeout` must cover the service's own retries (see `retry::RetryPolicy::worst_case`).
    pub fn new(base_url: &str, api_token: Option<Sensitive>, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: super::http_client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            send_url: format!("{}/send", base_url.trim_end_matches('/')),
            api_token,
        })
    }

    /// One of the notification service's Telegram calls: its JSON reply, or the failure
    /// (503: Telegram is not configured there).
    async fn telegram_call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, DeliveryError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.client.request(method, &url).timeout(TELEGRAM_CALL_TIMEOUT);
        if let Some(token) = &self.api_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            let why =
                Why::with_upstream("the notification service is unreachable", &format!("{url}: {}", e.without_url()));
            failure(FailureKind::Transient, why, 0)
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match status {
            200 => serde_json::from_str(&text).map_err(|e| {
                failure(FailureKind::Permanent, Why::plain(format!("the notification service's {path} reply: {e}")), 0)
            }),
            503 => Err(DeliveryError::not_configured(crate::domain::Channel::Telegram)),
            401 => {
                Err(failure(FailureKind::Permanent, Why::plain("the notification service refused NOTIFY_API_TOKEN"), 0))
            }
            other => {
                let detail = serde_json::from_str::<ErrorBody>(&text).ok().and_then(|e| e.detail).unwrap_or_default();
                let why =
                    Why::with_upstream(format!("the notification service answered {other}"), &printable(&detail, 300));
                Err(failure(if other == 404 { FailureKind::NotConfigured } else { FailureKind::Transient }, why, 0))
            }
        }
    }
}

fn failure(kind: FailureKind, why: Why, attempts: u32) -> DeliveryError {
    DeliveryError { kind, why, attempts }
}

#[async_trait]
impl Notifier for HttpNotifier {
    fn name(&self) -> &'static str {
        "notification-service"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Sent, DeliveryError> {
        let mut request = self.client.post(&self.send_url).json(&SendRequest::from(delivery));
        // (the reply's handling below is /send's own: 422, 502 with `retryable`, ...)
        if let Some(token) = &self.api_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            let why = Why::with_upstream("the notification service is unreachable", &format!("{}: {e}", self.send_url));
            failure(FailureKind::Transient, why, 0)
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status == 200 {
            let reply = serde_json::from_str::<SendReply>(&text).ok();
            return Ok(
                reply.map_or_else(Sent::default, |r| Sent { attempts: r.attempts, moved_to: r.recipient_moved_to })
            );
        }
        let error: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let attempts = error.as_ref().and_then(|e| e.attempts).unwrap_or(0);
        let retryable = error.as_ref().and_then(|e| e.retryable).unwrap_or(true);
        // The service's own public reason, read as any upstream text is.
        let detail = printable(&error.and_then(|e| e.detail).unwrap_or_default(), 300);
        match status {
            503 => Err(DeliveryError::not_configured(delivery.channel)),
            401 => {
                Err(failure(FailureKind::Permanent, Why::plain("the notification service refused NOTIFY_API_TOKEN"), 0))
            }
            502 if !retryable => Err(failure(FailureKind::Permanent, Why::plain(detail), attempts)),
            502 => Err(failure(FailureKind::Transient, Why::plain(detail), attempts)),
            422 => Err(failure(FailureKind::Rejected, Why::plain(detail), attempts)),
            other => Err(failure(
                FailureKind::Permanent,
                Why::with_upstream(format!("the notification service answered {other}"), &detail),
                0,
            )),
        }
    }

    async fn telegram_bot(&self) -> Result<TelegramBot, DeliveryError> {
        self.telegram_call(reqwest::Method::GET, "/telegram/bot").await
    }

    async fn take_link_starts(&self) -> Result<Vec<LinkStart>, DeliveryError> {
        self.telegram_call::<LinkStarts>(reqwest::Method::POST, "/telegram/starts").await.map(|s| s.starts)
    }
}
