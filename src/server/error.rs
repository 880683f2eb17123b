//! The one place that turns failures into HTTP statuses and JSON error bodies.
//!
//! Every error body has a stable machine-readable `error` code. Internal failures answer
//! `internal_error` without details; the details go to the log.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    /// Malformed input. The status is 400, or 413/415 for an oversized body or wrong type.
    InvalidRequest {
        status: StatusCode,
        detail: String,
    },
    RateLimited {
        retry_after: u64,
    },
    NotFound,
    MethodNotAllowed,
    Service(ServiceError),
}

impl ApiError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::InvalidRequest {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(r) if r.status().is_client_error() => r.status(),
            // axum says 422 for a well-formed body of the wrong shape; to a client both are
            // simply a bad request.
            _ => StatusCode::BAD_REQUEST,
        };
        let detail = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a body with Content-Type: application/json".into()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is too large".into()
            }
            other => other.body_text(),
        };
        Self::InvalidRequest { status, detail }
    }
}

fn with_retry_after(status: StatusCode, body: Value, retry_after: u64) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let plain = |status: StatusCode, body: Value| (status, Json(body)).into_response();
        match self {
            Self::InvalidRequest { status, detail } => plain(
                status,
                json!({"error": "invalid_request", "detail": detail}),
            ),
            Self::RateLimited { retry_after } => with_retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "rate_limited", "retry_after": retry_after}),
                retry_after,
            ),
            Self::NotFound => plain(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
            Self::MethodNotAllowed => plain(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method_not_allowed"}),
            ),
            Self::Service(e) => match e {
                ServiceError::UnknownUser => {
                    plain(StatusCode::NOT_FOUND, json!({"error": "unknown_user"}))
                }
                ServiceError::InvalidToken => plain(
                    StatusCode::UNAUTHORIZED,
                    json!({"valid": false, "error": "invalid_token"}),
                ),
                ServiceError::TooManyAttempts { retry_after } => with_retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "too_many_attempts", "retry_after": retry_after}),
                    retry_after,
                ),
                ServiceError::ResendTooSoon { retry_after } => with_retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "resend_too_soon", "retry_after": retry_after}),
                    retry_after,
                ),
                ServiceError::NoDeliveryChannel => plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "no_delivery_channel", "detail": e.to_string()}),
                ),
                ServiceError::DeliveryFailed => plain(
                    StatusCode::BAD_GATEWAY,
                    json!({"error": "delivery_failed", "detail": e.to_string()}),
                ),
                ServiceError::Internal(detail) => {
                    tracing::error!(error = %detail, "request failed");
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "internal_error"}),
                    )
                }
            },
        }
    }
}
