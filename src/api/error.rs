//! The one place that turns the MFA server's failures into HTTP statuses and error bodies.
//!
//! Internal failures answer `internal_error` without details; the details go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::{ErrorBody, ErrorCode, HttpFault, InvalidRequest};
use crate::users::{LinkUnavailable, UserError};
use crate::verify::VerifyError;

/// Seconds a client is asked to wait when the database cannot be used.
pub const DATABASE_RETRY_AFTER_SECONDS: u64 = 5;

#[derive(Debug)]
pub enum ApiError {
    Http(HttpFault),
    /// No valid `MFA_API_KEYS` key, or no valid `ADMIN_TOKEN`.
    Unauthorized,
    RateLimited {
        retry_after: u64,
    },
    Verify(VerifyError),
    User(UserError),
}

impl From<HttpFault> for ApiError {
    fn from(e: HttpFault) -> Self {
        Self::Http(e)
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        Self::Http(HttpFault::Invalid(e))
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        Self::Verify(e)
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        Self::User(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ErrorCode as Code;
        // Only for the answers that carry it or log it: a wrong code or a locked user, the
        // hot paths, would format a message for nothing.
        let detail = match &self {
            Self::Verify(
                e @ (VerifyError::NoDeliveryChannel(_)
                | VerifyError::DeliveryFailed(_)
                | VerifyError::Store(_)
                | VerifyError::Internal(_)),
            ) => e.to_string(),
            Self::User(e) => e.to_string(),
            _ => String::new(),
        };
        let (status, body) = match self {
            Self::Http(HttpFault::Invalid(e)) => (e.status, ErrorBody::new(Code::InvalidRequest).detail(e.detail)),
            Self::Http(HttpFault::NoRoute) => (StatusCode::NOT_FOUND, ErrorBody::new(Code::NotFound)),
            Self::Http(HttpFault::WrongMethod) => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorBody::new(Code::MethodNotAllowed))
            }
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorBody::new(Code::Unauthorized)),
            Self::RateLimited { retry_after } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorBody::new(Code::RateLimited).retry_after(retry_after))
            }
            Self::Verify(VerifyError::UnknownUser) | Self::User(UserError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, ErrorBody::new(Code::UnknownUser))
            }
            Self::Verify(VerifyError::InvalidToken) => {
                (StatusCode::UNAUTHORIZED, ErrorBody { valid: Some(false), ..ErrorBody::new(Code::InvalidToken) })
            }
            Self::Verify(VerifyError::TooManyAttempts { retry_after }) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorBody::new(Code::TooManyAttempts).retry_after(retry_after))
            }
            Self::Verify(VerifyError::ResendTooSoon { retry_after }) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorBody::new(Code::ResendTooSoon).retry_after(retry_after))
            }
            Self::Verify(VerifyError::NoDeliveryChannel(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorBody::new(Code::NoDeliveryChannel).detail(detail))
            }
            Self::Verify(VerifyError::DeliveryFailed(_)) => {
                (StatusCode::BAD_GATEWAY, ErrorBody::new(Code::DeliveryFailed).detail(detail))
            }
            Self::User(UserError::Exists(_)) => (StatusCode::CONFLICT, ErrorBody::new(Code::UserExists).detail(detail)),
            Self::User(UserError::DefinedInEnv { .. }) => {
                (StatusCode::CONFLICT, ErrorBody::new(Code::DefinedInEnv).detail(detail))
            }
            Self::User(UserError::AuthenticatorNotFound { .. }) => {
                (StatusCode::NOT_FOUND, ErrorBody::new(Code::UnknownAuthenticator).detail(detail))
            }
            Self::User(UserError::ResyncFailed) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorBody::new(Code::ResyncFailed).detail(detail))
            }
            Self::User(UserError::Telegram(LinkUnavailable::NotConfigured)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody {
                    channel: Some(crate::domain::Channel::Telegram),
                    ..ErrorBody::new(Code::ChannelNotConfigured).detail(detail)
                },
            ),
            Self::User(UserError::Telegram(LinkUnavailable::LinkingOff)) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(Code::TelegramLinkingOff).detail(detail))
            }
            Self::User(UserError::Telegram(LinkUnavailable::Unreachable(_))) => {
                (StatusCode::BAD_GATEWAY, ErrorBody::new(Code::DeliveryFailed).detail(detail))
            }
            Self::User(UserError::QrExpired) => (StatusCode::GONE, ErrorBody::new(Code::QrExpired).detail(detail)),
            Self::Verify(VerifyError::Store(e)) | Self::User(UserError::Store(e)) if e.is_unavailable() => {
                tracing::error!(error = %e, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody::new(Code::DatabaseUnavailable).retry_after(DATABASE_RETRY_AFTER_SECONDS),
                )
            }
            Self::Http(HttpFault::Panicked)
            | Self::Verify(VerifyError::Store(_) | VerifyError::Internal(_))
            | Self::User(
                UserError::Store(_) | UserError::Internal(_) | UserError::Conflict { .. } | UserError::Invalid(_),
            ) => {
                if !detail.is_empty() {
                    tracing::error!(error = %detail, "request failed");
                }
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::new(Code::InternalError))
            }
        };
        body.respond(status)
    }
}
