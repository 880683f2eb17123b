//! The MFA server's client of the notification service: `POST {NOTIFICATION_URL}/send`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{Delivery, DeliveryError, FailureKind, Notifier};
use crate::config::Sensitive;

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

fn failure(kind: FailureKind, detail: impl Into<String>, attempts: u32) -> DeliveryError {
    DeliveryError { kind, detail: detail.into(), attempts }
}

#[async_trait]
impl Notifier for HttpNotifier {
    fn name(&self) -> &'static str {
        "notification-service"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<u32, DeliveryError> {
        let body = serde_json::json!({
            "channel": delivery.channel,
            "recipient": delivery.recipient,
            "subject": delivery.subject,
            "message": delivery.message,
        });
        let mut request = self.client.post(&self.send_url).json(&body);
        if let Some(token) = &self.api_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            failure(FailureKind::Transient, format!("notification service unreachable at {}: {e}", self.send_url), 0)
        })?;
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        let attempts = reply["attempts"].as_u64().map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let detail = reply["detail"].as_str().unwrap_or_default().to_string();
        match status {
            200 => Ok(attempts),
            503 => Err(DeliveryError::not_configured(delivery.channel)),
            401 => Err(failure(FailureKind::Permanent, "the notification service refused NOTIFY_API_TOKEN", 0)),
            502 => Err(failure(FailureKind::Transient, detail, attempts)),
            other => {
                Err(failure(FailureKind::Permanent, format!("notification service answered {other}: {detail}"), 0))
            }
        }
    }
}
