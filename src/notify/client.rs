//! The MFA server's client of the notification service: `POST {NOTIFICATION_URL}/send`.

use std::time::Duration;

use async_trait::async_trait;

use super::wire::{SendReply, SendRequest};
use super::{Delivery, DeliveryError, FailureKind, Notifier, Why};
use crate::config::Sensitive;
use crate::http::ErrorBody;
use crate::telemetry::printable;

pub struct HttpNotifier {
    client: reqwest::Client,
    send_url: String,
    api_token: Option<Sensitive>,
}

impl HttpNotifier {
    /// `timeout` must cover the service's own retries (see `retry::RetryPolicy::worst_case`).
    pub fn new(base_url: &str, api_token: Option<Sensitive>, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: super::http_client(timeout)?,
            send_url: format!("{}/send", base_url.trim_end_matches('/')),
            api_token,
        })
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

    async fn deliver(&self, delivery: &Delivery) -> Result<u32, DeliveryError> {
        let mut request = self.client.post(&self.send_url).json(&SendRequest::from(delivery));
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
            return Ok(serde_json::from_str::<SendReply>(&text).map_or(0, |reply| reply.attempts));
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
}
