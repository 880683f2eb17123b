//! The one place that turns MFA failures into HTTP statuses and JSON error bodies.
//!
//! Every error body has a stable machine-readable `error` code. Internal failures answer
//! `internal_error` without details; the details go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::{InvalidRequest, json_error, json_error_retry_after};
use crate::verify::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    /// Malformed input: 400, or 413/415 for an oversized body or a wrong content type.
    InvalidRequest(InvalidRequest),
    RateLimited {
        retry_after: u64,
    },
    Service(ServiceError),
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        Self::InvalidRequest(e)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let plain = json_error;
        match self {
            Self::InvalidRequest(e) => e.into_response(),
            Self::RateLimited { retry_after } => json_error_retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "rate_limited", "retry_after": retry_after}),
                retry_after,
            ),
            Self::Service(e) => match e {
                ServiceError::UnknownUser => plain(StatusCode::NOT_FOUND, json!({"error": "unknown_user"})),
                ServiceError::InvalidToken => {
                    plain(StatusCode::UNAUTHORIZED, json!({"valid": false, "error": "invalid_token"}))
                }
                ServiceError::TooManyAttempts { retry_after } => json_error_retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "too_many_attempts", "retry_after": retry_after}),
                    retry_after,
                ),
                ServiceError::ResendTooSoon { retry_after } => json_error_retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "resend_too_soon", "retry_after": retry_after}),
                    retry_after,
                ),
                ServiceError::NoDeliveryChannel(_) => plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "no_delivery_channel", "detail": e.to_string()}),
                ),
                ServiceError::DeliveryFailed(_) => {
                    plain(StatusCode::BAD_GATEWAY, json!({"error": "delivery_failed", "detail": e.to_string()}))
                }
                ServiceError::Unavailable(detail) => {
                    tracing::error!(error = %detail, "database unavailable");
                    json_error_retry_after(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "database_unavailable", "retry_after": 5}),
                        5,
                    )
                }
                ServiceError::Internal(detail) => {
                    tracing::error!(error = %detail, "request failed");
                    plain(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal_error"}))
                }
            },
        }
    }
}
