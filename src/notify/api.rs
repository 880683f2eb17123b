//! The notification service over HTTP: `POST /send`, `GET /healthcheck`, `GET /metrics`.
//!
//! Without `NOTIFY_API_TOKEN`, anyone who can reach `/send` can send mail and Telegram
//! messages in our name: an open relay. So the service binds to loopback by default, and
//! configuration refuses a non-loopback address without a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::wire::{
    ChannelCheck, ChannelHealth, ChannelsHealth, LinkStarts, NotifierHealth, Reachability, SendReply, SendRequest,
    SendStatus, TelegramBot,
};
use super::{Channels, DeliveryError, FailureKind, Notifier};
use crate::config::Sensitive;
use crate::domain::Channel;
use crate::http::{
    AppJson, AuthFailures, AuthRefusal, ErrorBody, ErrorCode, HttpFault, InvalidRequest, JsonReply, ServiceState,
    with_common_layers,
};
use crate::metrics::Metrics;
use crate::openapi;

const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct NotifyState {
    pub channels: Arc<Channels>,
    /// The channels' last checks (`super::check`).
    pub checks: Arc<super::check::ChannelChecks>,
    /// `ALLOWED_HOSTS`.
    pub allowed_hosts: Vec<String>,
    pub api_token: Option<Sensitive>,
    /// Failed `NOTIFY_API_TOKEN` checks, per client network.
    pub auth_failures: Arc<AuthFailures>,
    pub default_subject: String,
    pub metrics: Arc<Metrics>,
    /// The bot's incoming `/start`s, and how they arrive.
    pub updates: Arc<BotUpdates>,
}

/// What the service knows of the bot's incoming messages.
#[derive(Default)]
pub struct BotUpdates {
    /// `/start <token>`s waiting for the MFA server.
    pub starts: Arc<super::updates::LinkStarts>,
    /// Whether they are received at all (`TELEGRAM_UPDATES` is not `off`).
    pub receiving: bool,
    /// The webhook's secret, when Telegram posts them (`TELEGRAM_UPDATES=webhook`).
    pub webhook_secret: Option<Sensitive>,
    /// The bot's username, once `getMe` answered.
    pub bot_username: std::sync::OnceLock<String>,
}

impl ServiceState for NotifyState {
    type Error = NotifyError;
}

/// Every failure of the notification service.
#[derive(Debug)]
pub enum NotifyError {
    Http(HttpFault),
    /// `NOTIFY_API_TOKEN` is set and the request did not carry it.
    Unauthorized,
    /// Too many wrong tokens from this client network.
    TooManyFailures {
        retry_after: u64,
    },
    Delivery {
        channel: Channel,
        error: DeliveryError,
    },
}

impl From<HttpFault> for NotifyError {
    fn from(e: HttpFault) -> Self {
        Self::Http(e)
    }
}

impl From<InvalidRequest> for NotifyError {
    fn from(e: InvalidRequest) -> Self {
        Self::Http(HttpFault::Invalid(e))
    }
}

/// The one place that turns the notification service's failures into statuses and bodies.
impl IntoResponse for NotifyError {
    fn into_response(self) -> Response {
        use ErrorCode as Code;
        let (status, body) = match self {
            Self::Http(HttpFault::Invalid(e)) => (e.status, ErrorBody::new(Code::InvalidRequest).detail(e.detail)),
            Self::Http(HttpFault::NoRoute) => (StatusCode::NOT_FOUND, ErrorBody::new(Code::NotFound)),
            Self::Http(HttpFault::WrongMethod) => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorBody::new(Code::MethodNotAllowed))
            }
            Self::Http(HttpFault::Panicked) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::new(Code::InternalError)),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorBody::new(Code::Unauthorized)),
            Self::TooManyFailures { retry_after } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorBody::new(Code::RateLimited).retry_after(retry_after))
            }
            Self::Delivery { channel, error } => match error.kind {
                FailureKind::NotConfigured => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody { channel: Some(channel), ..ErrorBody::new(Code::ChannelNotConfigured) },
                ),
                FailureKind::Rejected => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorBody {
                        attempts: Some(error.attempts),
                        channel: Some(channel),
                        ..ErrorBody::new(Code::RecipientRejected).detail(error.why.public)
                    },
                ),
                FailureKind::Transient | FailureKind::Permanent => (
                    StatusCode::BAD_GATEWAY,
                    ErrorBody {
                        attempts: Some(error.attempts),
                        channel: Some(channel),
                        retryable: Some(error.kind == FailureKind::Transient),
                        ..ErrorBody::new(Code::DeliveryFailed).detail(error.why.public)
                    },
                ),
            },
        };
        body.respond(status)
    }
}

async fn require_token(State(state): State<NotifyState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.api_token {
        let peer = crate::http::peer_addr(request.extensions()).map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
        if let Err(refusal) = state.auth_failures.check(peer, request.headers(), std::slice::from_ref(expected)) {
            tracing::warn!(event = "send_unauthorized", client_ip = %peer, refusal = ?refusal,
                "refused /send without a valid NOTIFY_API_TOKEN");
            return match refusal {
                AuthRefusal::Unauthorized => NotifyError::Unauthorized,
                AuthRefusal::TooManyFailures { retry_after } => NotifyError::TooManyFailures { retry_after },
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// Delivers one message, retrying transient failures within a bounded time.
#[utoipa::path(post, path = "/send", tag = "notifier", request_body = SendRequest,
    security((), ("notify_token" = [])),
    responses(
        (status = 200, body = SendReply),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: NOTIFY_API_TOKEN is set and was not sent", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong tokens from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 413, description = "invalid_request: body over 256 KiB", body = ErrorBody),
        (status = 415, description = "invalid_request: not application/json", body = ErrorBody),
        (status = 422, description = "recipient_rejected: the recipient was refused for good (no such mailbox or chat, a chat that blocked the bot); retrying cannot help", body = ErrorBody),
        (status = 502, description = "delivery_failed: an outage, or failed after its retries", body = ErrorBody),
        (status = 503, description = "channel_not_configured", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<NotifyState>,
    AppJson(body): AppJson<SendRequest>,
) -> Result<JsonReply<SendReply>, NotifyError> {
    let delivery = body.validate(&state.default_subject)?;
    let channel = delivery.channel;
    match state.channels.deliver(&delivery).await {
        Ok(sent) => {
            let attempts = sent.attempts;
            state.metrics.delivery(channel.as_str(), "sent", attempts);
            tracing::info!(event = "delivery", %channel, recipient = %delivery.recipient, outcome = "sent", attempts);
            Ok(JsonReply(SendReply { attempts, channel, recipient_moved_to: sent.moved_to, status: SendStatus::Sent }))
        }
        Err(error) => {
            let outcome = match error.kind {
                FailureKind::NotConfigured => "not_configured",
                FailureKind::Rejected => "rejected",
                FailureKind::Transient | FailureKind::Permanent => "failed",
            };
            state.metrics.delivery(channel.as_str(), outcome, error.attempts);
            tracing::warn!(
                event = "delivery", %channel, recipient = %delivery.recipient, outcome = "failed",
                attempts = error.attempts, detail = %error.why.log
            );
            Err(NotifyError::Delivery { channel, error })
        }
    }
}

fn telegram_of(state: &NotifyState) -> Result<&Arc<super::telegram::TelegramChannel>, NotifyError> {
    state.channels.telegram.as_ref().ok_or(NotifyError::Delivery {
        channel: Channel::Telegram,
        error: DeliveryError::not_configured(Channel::Telegram),
    })
}

/// The bot (from `getMe`), for the links chats open to link themselves.
#[utoipa::path(get, path = "/telegram/bot", tag = "notifier", security((), ("notify_token" = [])),
    responses(
        (status = 200, body = TelegramBot),
        (status = 401, description = "unauthorized: NOTIFY_API_TOKEN is set and was not sent", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong tokens from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 502, description = "delivery_failed: Telegram did not answer `getMe`", body = ErrorBody),
        (status = 503, description = "channel_not_configured: no TELEGRAM_TOKEN", body = ErrorBody),
    ))]
pub async fn telegram_bot(State(state): State<NotifyState>) -> Result<JsonReply<TelegramBot>, NotifyError> {
    let telegram = telegram_of(&state)?;
    let linking = state.updates.receiving;
    if let Some(username) = state.updates.bot_username.get() {
        return Ok(JsonReply(TelegramBot { linking, username: username.clone() }));
    }
    let username = telegram.check().await.map_err(|why| NotifyError::Delivery {
        channel: Channel::Telegram,
        error: DeliveryError { kind: FailureKind::Transient, why, attempts: 1 },
    })?;
    let username = state.updates.bot_username.get_or_init(|| username).clone();
    Ok(JsonReply(TelegramBot { linking, username }))
}

/// Takes the `/start <token>` messages the bot received (each is given out once, oldest
/// first, at most 100 a call; kept 10 minutes at most). The MFA server calls it every second.
#[utoipa::path(post, path = "/telegram/starts", tag = "notifier", security((), ("notify_token" = [])),
    responses(
        (status = 200, body = LinkStarts),
        (status = 401, description = "unauthorized: NOTIFY_API_TOKEN is set and was not sent", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong tokens from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "channel_not_configured: no TELEGRAM_TOKEN", body = ErrorBody),
    ))]
pub async fn take_starts(State(state): State<NotifyState>) -> Result<JsonReply<LinkStarts>, NotifyError> {
    telegram_of(&state)?;
    Ok(JsonReply(LinkStarts { starts: state.updates.starts.take() }))
}

/// Telegram's webhook (`TELEGRAM_UPDATES=webhook`): one update, which must carry the
/// secret token. Not in the OpenAPI document: Telegram is its only caller, at the path of
/// `TELEGRAM_WEBHOOK_URL`.
async fn webhook(
    State(state): State<NotifyState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (Some(telegram), Some(secret)) = (state.channels.telegram.as_ref(), state.updates.webhook_secret.as_ref())
    else {
        return NotifyError::Http(HttpFault::NoRoute).into_response();
    };
    let sent = headers.get("x-telegram-bot-api-secret-token").map(axum::http::HeaderValue::as_bytes);
    let matches = sent.is_some_and(|sent| bool::from(subtle::ConstantTimeEq::ct_eq(sent, secret.expose().as_bytes())));
    if !matches {
        tracing::warn!(event = "telegram_webhook", "refused an update without the webhook's secret token");
        return NotifyError::Unauthorized.into_response();
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(update) => {
            super::updates::handle(&update, telegram, &state.updates.starts);
            StatusCode::OK.into_response()
        }
        Err(e) => NotifyError::from(InvalidRequest::new(format!("not an update: {e}"))).into_response(),
    }
}

/// Each channel's state: configured or not, its last check, and for SMTP whether the
/// server answered at the last attempt. `degraded` when a configured channel failed its
/// last check or the SMTP server did not answer.
#[utoipa::path(get, path = "/healthcheck", tag = "monitoring",
    responses((status = 200, description = "`status` is `ok`, or `degraded` (a channel failed its check, or the SMTP server did not answer)", body = NotifierHealth)))]
pub async fn healthcheck(State(state): State<NotifyState>) -> JsonReply<NotifierHealth> {
    let smtp = state.channels.email.as_ref().map(super::email::EmailChannel::reachability);
    let health = |channel: Channel, configured: bool, smtp: Option<Reachability>| {
        let check = state.checks.last(channel).filter(|_| configured).map(ChannelCheck::from);
        ChannelHealth { configured, check, smtp }
    };
    let channels = ChannelsHealth {
        email: health(Channel::Email, smtp.is_some(), smtp),
        telegram: health(Channel::Telegram, state.channels.telegram.is_some(), None),
    };
    let failed_check = [&channels.email, &channels.telegram].iter().any(|c| c.check.as_ref().is_some_and(|c| !c.ok));
    let degraded = failed_check || smtp == Some(Reachability::Unreachable);
    JsonReply(NotifierHealth {
        channels,
        status: if degraded { "degraded" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text format (OpenMetrics when asked for)", content_type = "text/plain")))]
pub async fn metrics(State(state): State<NotifyState>, headers: axum::http::HeaderMap) -> Response {
    Metrics::response(&headers, state.metrics.encode())
}

/// The notification service's routes; `bind` is the address its OpenAPI document names.
pub fn router(state: NotifyState, bind: SocketAddr, webhook_path: Option<&str>) -> Router {
    let guarded = OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(telegram_bot))
        .routes(routes!(take_starts))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::NotifierDoc::openapi())
        .merge(guarded)
        .routes(routes!(healthcheck))
        .routes(routes!(metrics))
        .split_for_parts();
    let doc = openapi::finish(doc, &format!("http://{bind}"), &[openapi::Bearer::NotifyToken]);
    let mut routes = routes.route("/openapi.json", get(move || async move { openapi::response(&doc) }));
    if let Some(path) = webhook_path {
        routes = routes.route(path, axum::routing::post(webhook));
    }
    let metrics = state.metrics.clone();
    let allowed_hosts = state.allowed_hosts.clone();
    with_common_layers(routes, state, "notifier", MAX_BODY_BYTES, metrics, &allowed_hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(channel: &str, recipient: &str, message: &str) -> SendRequest {
        SendRequest { channel: channel.into(), recipient: recipient.into(), message: message.into(), subject: None }
    }

    fn rejected(b: SendRequest) -> String {
        b.validate("s").expect_err("a validation error").detail
    }

    #[test]
    fn requests_are_validated_per_channel() {
        assert!(body("email", "a@example.com", "hi").validate("s").is_ok());
        assert!(body("telegram", "@my_channel", "hi").validate("s").is_ok());
        assert!(rejected(body("sms", "1", "hi")).contains("unknown channel"));
        assert!(rejected(body("email", "not-an-address", "hi")).contains("not an email"));
        assert!(rejected(body("telegram", "a@example.com", "hi")).contains("Telegram"));
        assert!(rejected(body("telegram", "42", "  ")).contains("empty"));
        assert!(rejected(body("telegram", "42", &"x".repeat(4097))).contains("4096"));
        assert!(body("telegram", "42", &"é".repeat(4096)).validate("s").is_ok(), "characters, not bytes");
        let mut injected = body("email", "a@example.com", "hi");
        injected.subject = Some("Hi\r\nBcc: victim@example.com".into());
        assert!(rejected(injected).contains("subject"));
    }
}
