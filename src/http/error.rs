//! The error vocabulary both services speak, and the one writer of an error response.
//!
//! Every failure a client can tell apart has a stable [`ErrorCode`] and is answered with an
//! [`ErrorBody`]. Each service picks the status and body for its failures in one function
//! (`crate::api::error` for the MFA server, `crate::notify::api` for the notification
//! service); [`ErrorBody::respond`] then writes the response and its headers.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::deadlines::BodyTooSlow;
use crate::domain::Channel;

/// The `error` of every error body: stable, machine-readable, snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RateLimited,
    InternalError,
    DatabaseUnavailable,
    UnknownUser,
    InvalidToken,
    TooManyAttempts,
    ResendTooSoon,
    NoDeliveryChannel,
    DeliveryFailed,
    UserExists,
    DefinedInEnv,
    QrExpired,
    UnknownAuthenticator,
    ResyncFailed,
    ChannelNotConfigured,
    RecipientRejected,
    TelegramLinkingOff,
}

/// The body of every error response.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `delivery_failed` from `/send`: the attempts made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// `delivery_failed` and `channel_not_configured` from `/send`: the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// What was wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "token must be a string of 6 to 8 digits")]
    pub detail: Option<String>,
    #[schema(example = "invalid_request")]
    pub error: ErrorCode,
    /// 429 and 503: seconds to wait before trying again, also sent as `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 300)]
    pub retry_after: Option<u64>,
    /// `delivery_failed` from `/send`: whether trying again later may deliver it (`false`:
    /// refused for good, e.g. an SMTP 5xx or a Telegram 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// `false`, with `invalid_token` only (for clients that read `valid` on every answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode) -> Self {
        Self { attempts: None, channel: None, detail: None, error, retry_after: None, retryable: None, valid: None }
    }

    #[must_use]
    pub fn detail(self, detail: impl Into<String>) -> Self {
        Self { detail: Some(detail.into()), ..self }
    }

    #[must_use]
    pub fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    /// The response: `status` with this body as JSON, plus `Retry-After` when the body has
    /// a `retry_after`, and `WWW-Authenticate: Bearer` for `unauthorized` (RFC 6750 §3).
    pub fn respond(self, status: StatusCode) -> Response {
        let retry_after = self.retry_after;
        let unauthorized = self.error == ErrorCode::Unauthorized;
        let mut response = super::reply::json_response(status, &self);
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Malformed input: 400, or 408, 413 or 415 for a body too slow, too large or not JSON.
#[derive(Debug)]
pub struct InvalidRequest {
    pub status: StatusCode,
    pub detail: String,
}

impl InvalidRequest {
    pub fn new(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }

    /// The 408 for a body whose deadline (`HTTP_BODY_TIMEOUT_SECONDS`) passed.
    pub(super) fn body_too_slow() -> Self {
        Self { status: StatusCode::REQUEST_TIMEOUT, detail: BodyTooSlow.to_string() }
    }
}

/// Whether `error`, or an error it wraps, is an `E`.
pub(super) fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl From<JsonRejection> for InvalidRequest {
    fn from(rejection: JsonRejection) -> Self {
        if caused_by::<BodyTooSlow>(&rejection) {
            return Self::body_too_slow();
        }
        let status = match &rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(r) if r.status().is_client_error() => r.status(),
            // axum says 422 for a well-formed body of the wrong shape; to a client both are
            // simply a bad request.
            _ => StatusCode::BAD_REQUEST,
        };
        let detail = match &rejection {
            JsonRejection::MissingJsonContentType(_) => "expected a body with Content-Type: application/json".into(),
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is too large".into()
            }
            other => other.body_text(),
        };
        Self { status, detail }
    }
}

/// What the HTTP plumbing itself refuses, around a service's handlers. Each service's
/// error type takes these in (`From<HttpFault>`), so that its one mapping answers them.
#[derive(Debug)]
pub enum HttpFault {
    Invalid(InvalidRequest),
    /// No route has this path.
    NoRoute,
    /// The path exists, the method does not.
    WrongMethod,
    /// A handler panicked (answered 500; the panic is logged).
    Panicked,
}

impl From<InvalidRequest> for HttpFault {
    fn from(e: InvalidRequest) -> Self {
        Self::Invalid(e)
    }
}
