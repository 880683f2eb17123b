//! The notification service over HTTP: `POST /send` and `GET /healthcheck`.
//!
//! Without `NOTIFY_API_TOKEN`, anyone who can reach `/send` can send mail and Telegram
//! messages in our name: an open relay. So the service binds to loopback by default, and
//! configuration refuses a non-loopback address without a token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::email::Reachability;
use super::{Channel, Channels, Delivery, DeliveryError, FailureKind, Notifier};
use crate::config::Sensitive;
use crate::domain::{EmailAddress, TelegramChat};
use crate::http::{AppJson, BoundServer, InvalidRequest, has_bearer, json_error, unauthorized, with_common_layers};
use crate::metrics::Metrics;
use crate::openapi::{self, DeliveryFailed, DetailedError, ErrorBody};

/// Telegram's limit for one message's text.
pub const TELEGRAM_MAX_CHARS: usize = 4096;
/// Our limit for an email body: codes and short notices, not newsletters.
pub const EMAIL_MAX_CHARS: usize = 32 * 1024;
pub const SUBJECT_MAX_CHARS: usize = 255;
const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct NotifyState {
    pub channels: Arc<Channels>,
    pub api_token: Option<Sensitive>,
    pub default_subject: String,
    pub metrics: Arc<Metrics>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SendBody {
    /// `email` or `telegram`
    #[schema(example = "telegram")]
    pub channel: String,
    /// An email address, or a Telegram chat id / `@channel`.
    #[schema(example = "123456789")]
    pub recipient: String,
    /// At most 4096 characters for Telegram, 32768 for email.
    #[schema(example = "Your code is 123456")]
    pub message: String,
    /// Email subject (one line); default "<OTP_ISSUER> notification".
    #[serde(default)]
    pub subject: Option<String>,
}

/// The body of `POST /send` as its schema states it: the recipient's form and the longest
/// message depend on the channel. (Requests are read as [`SendBody`] and checked by
/// [`validate`]; this type only documents them, and schemathesis holds the two together.)
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "channel", rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SendRequest {
    /// An email: `recipient` is an address.
    Email {
        #[schema(schema_with = crate::openapi::email_schema)]
        recipient: String,
        /// At most 32768 characters, at least one of them visible (not a space or control).
        #[schema(
            pattern = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
            max_length = 32768,
            example = "Your code is 123456"
        )]
        message: String,
        /// One line of at most 255 characters; default "<OTP_ISSUER> notification".
        #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", max_length = 255)]
        #[serde(default)]
        subject: Option<String>,
    },
    /// A Telegram message: `recipient` is a chat id or `@channel`.
    Telegram {
        #[schema(pattern = r"^(?:-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$", example = "123456789")]
        recipient: String,
        /// At most 4096 characters, at least one of them visible (not a space or control).
        #[schema(
            pattern = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
            max_length = 4096,
            example = "Your code is 123456"
        )]
        message: String,
        /// Not used by Telegram; checked as for email.
        #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", max_length = 255)]
        #[serde(default)]
        subject: Option<String>,
    },
}

/// `{"status": "sent", "channel", "attempts"}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON `send` builds
pub struct Sent {
    #[schema(example = "sent")]
    status: String,
    channel: Channel,
    #[schema(example = 1)]
    attempts: u32,
}

/// Every failure of `/send`, mapped to its status and body in one place.
pub enum NotifyError {
    Invalid(InvalidRequest),
    Delivery { channel: Channel, error: DeliveryError },
}

impl From<InvalidRequest> for NotifyError {
    fn from(e: InvalidRequest) -> Self {
        Self::Invalid(e)
    }
}

impl IntoResponse for NotifyError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(e) => e.into_response(),
            Self::Delivery { channel, error } => match error.kind {
                FailureKind::NotConfigured => json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "channel_not_configured", "channel": channel}),
                ),
                FailureKind::Transient | FailureKind::Permanent => json_error(
                    StatusCode::BAD_GATEWAY,
                    json!({"error": "delivery_failed", "channel": channel, "detail": error.detail, "attempts": error.attempts}),
                ),
            },
        }
    }
}

fn invalid(detail: impl Into<String>) -> NotifyError {
    NotifyError::Invalid(InvalidRequest::new(detail))
}

/// Checks a request's fields; returns the delivery to make.
pub fn validate(body: SendBody, default_subject: &str) -> Result<Delivery, NotifyError> {
    let channel = Channel::parse(&body.channel).map_err(invalid)?;
    let recipient = match channel {
        Channel::Email => EmailAddress::parse(&body.recipient).map_err(invalid)?.as_str().to_string(),
        Channel::Telegram => TelegramChat::parse(&body.recipient).map_err(invalid)?.as_str().to_string(),
    };
    let limit = if channel == Channel::Telegram { TELEGRAM_MAX_CHARS } else { EMAIL_MAX_CHARS };
    let length = body.message.chars().count();
    if !body.message.chars().any(|c| !c.is_whitespace() && !c.is_control()) {
        return Err(invalid("message must not be empty (it has no visible character)"));
    }
    if length > limit {
        return Err(invalid(format!("message is {length} characters; the {channel} limit is {limit}")));
    }
    let subject = body.subject.unwrap_or_else(|| default_subject.to_string());
    if subject.chars().count() > SUBJECT_MAX_CHARS || subject.chars().any(char::is_control) {
        return Err(invalid(format!("subject must be one line of at most {SUBJECT_MAX_CHARS} characters")));
    }
    Ok(Delivery { channel, recipient, subject, message: body.message })
}

async fn require_token(State(state): State<NotifyState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.api_token
        && !has_bearer(request.headers(), std::slice::from_ref(expected))
    {
        tracing::warn!(event = "send_unauthorized", "refused /send without a valid NOTIFY_API_TOKEN");
        return unauthorized();
    }
    next.run(request).await
}

/// Delivers one message, retrying transient failures within a bounded time.
#[utoipa::path(post, path = "/send", tag = "notifier", request_body = SendRequest,
    security((), ("notify_token" = [])),
    responses(
        (status = 200, body = Sent),
        (status = 400, description = "invalid_request", body = DetailedError),
        (status = 401, description = "NOTIFY_API_TOKEN is set and was not sent", body = ErrorBody),
        (status = 413, body = DetailedError), (status = 415, body = DetailedError),
        (status = 502, description = "failed after its retries", body = DeliveryFailed),
        (status = 503, description = "channel_not_configured", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<NotifyState>,
    AppJson(body): AppJson<SendBody>,
) -> Result<Json<serde_json::Value>, NotifyError> {
    let delivery = validate(body, &state.default_subject)?;
    let channel = delivery.channel;
    match state.channels.deliver(&delivery).await {
        Ok(attempts) => {
            state.metrics.delivery(channel.as_str(), "sent", attempts);
            tracing::info!(event = "delivery", %channel, recipient = %delivery.recipient, outcome = "sent", attempts);
            Ok(Json(json!({"status": "sent", "channel": channel, "attempts": attempts})))
        }
        Err(error) => {
            let outcome = if error.kind == FailureKind::NotConfigured { "not_configured" } else { "failed" };
            state.metrics.delivery(channel.as_str(), outcome, error.attempts);
            tracing::warn!(
                event = "delivery", %channel, recipient = %delivery.recipient, outcome = "failed",
                attempts = error.attempts, detail = %error.detail
            );
            Err(NotifyError::Delivery { channel, error })
        }
    }
}

/// Each channel's state; for SMTP, whether the server answered at the last attempt.
#[utoipa::path(get, path = "/healthcheck", tag = "monitoring",
    responses((status = 200, description = "`{\"status\":\"ok\"|\"degraded\",\"channels\":{...}}`", body = Object)))]
pub async fn healthcheck(State(state): State<NotifyState>) -> Json<serde_json::Value> {
    let email = match &state.channels.email {
        Some(e) => json!({"configured": true, "smtp": e.reachability()}),
        None => json!({"configured": false}),
    };
    let degraded = state.channels.email.as_ref().is_some_and(|e| e.reachability() == Reachability::Unreachable);
    Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "channels": {"email": email, "telegram": {"configured": state.channels.telegram.is_some()}},
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text format (OpenMetrics when asked for)", content_type = "text/plain")))]
pub async fn metrics(State(state): State<NotifyState>, headers: axum::http::HeaderMap) -> Response {
    state.metrics.response(&headers)
}

pub fn router(state: NotifyState, bind: SocketAddr) -> Router {
    let guarded = OpenApiRouter::new()
        .routes(routes!(send))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::NotifierDoc::openapi())
        .merge(guarded)
        .routes(routes!(healthcheck))
        .routes(routes!(metrics))
        .split_for_parts();
    let doc = openapi::finish(doc, &format!("http://{bind}"));
    let routes = routes.route("/openapi.json", get(move || async move { openapi::response(&doc) }));
    let metrics = state.metrics.clone();
    with_common_layers(routes.with_state(state), "notifier", MAX_BODY_BYTES, metrics)
}

/// Binds the notification service's routes to `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr, state: NotifyState) -> std::io::Result<BoundServer> {
    BoundServer::bind(addr, router(state, addr)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(channel: &str, recipient: &str, message: &str) -> SendBody {
        SendBody { channel: channel.into(), recipient: recipient.into(), message: message.into(), subject: None }
    }

    fn rejected(b: SendBody) -> String {
        match validate(b, "s") {
            Err(NotifyError::Invalid(e)) => e.detail,
            _ => panic!("expected a validation error"),
        }
    }

    #[test]
    fn requests_are_validated_per_channel() {
        assert!(validate(body("email", "a@example.com", "hi"), "s").is_ok());
        assert!(validate(body("telegram", "@my_channel", "hi"), "s").is_ok());
        assert!(rejected(body("sms", "1", "hi")).contains("unknown channel"));
        assert!(rejected(body("email", "not-an-address", "hi")).contains("not an email"));
        assert!(rejected(body("telegram", "a@example.com", "hi")).contains("Telegram"));
        assert!(rejected(body("telegram", "42", "  ")).contains("empty"));
        assert!(rejected(body("telegram", "42", &"x".repeat(4097))).contains("4096"));
        assert!(validate(body("telegram", "42", &"é".repeat(4096)), "s").is_ok(), "characters, not bytes");
        let mut injected = body("email", "a@example.com", "hi");
        injected.subject = Some("Hi\r\nBcc: victim@example.com".into());
        assert!(rejected(injected).contains("subject"));
    }
}
