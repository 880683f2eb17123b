//! The MFA server's endpoints: thin handlers that parse, call the service, and answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use super::extract::Admitted;
use crate::domain::Channel;
use crate::domain::{OtpCode, Username};
use crate::http::{AppJson, InvalidRequest};
use crate::openapi::{DetailedError, ErrorBody, InvalidToken, RetryLater, Valid};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestOtpBody {
    /// 1 to 64 characters of `a-z 0-9 . _ - @ +` (case-insensitive), starting with a letter or digit.
    #[schema(example = "dair", pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    pub username: String,
    /// Only this channel; all of the user's channels when absent.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerifyBody {
    /// 1 to 64 characters of `a-z 0-9 . _ - @ +` (case-insensitive), starting with a letter or digit.
    #[schema(example = "dair", pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    pub username: String,
    /// 6 to 8 digits; spaces are ignored.
    #[schema(example = "123456", pattern = "^ *(?:[0-9] *){6,8}$")]
    pub token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestOtpResponse {
    #[schema(example = "sent")]
    pub status: &'static str,
    pub channels: Vec<Channel>,
    pub expires_in: u64,
}

impl RequestOtpBody {
    /// The user and the one channel asked for (`None`: all of them), or why the body is
    /// refused. `request_otp` checks its body with this, and so do the property tests and
    /// the fuzzer (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<(Username, Option<Channel>), InvalidRequest> {
        let username = Username::parse(&self.username).map_err(InvalidRequest::new)?;
        let only = self.channel.as_deref().map(Channel::parse).transpose().map_err(InvalidRequest::new)?;
        Ok((username, only))
    }
}

impl VerifyBody {
    /// The user and the code, or why the body is refused. `verify` checks its body with
    /// this, and so do the property tests and the fuzzer (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<(Username, OtpCode), InvalidRequest> {
        let username = Username::parse(&self.username).map_err(InvalidRequest::new)?;
        let code = OtpCode::parse(&self.token).map_err(InvalidRequest::new)?;
        Ok((username, code))
    }
}

/// Sends a fresh one-time code to the user's channels (or the one named), in parallel.
#[utoipa::path(post, path = "/request-otp", tag = "mfa", request_body = RequestOtpBody,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "sent on at least one channel", body = RequestOtpResponse),
        (status = 400, description = "malformed request", body = DetailedError),
        (status = 401, description = "MFA_API_KEYS is set and no valid key was sent", body = ErrorBody),
        (status = 404, description = "unknown user", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = DetailedError),
        (status = 415, description = "not application/json", body = DetailedError),
        (status = 422, description = "the user has no channel to send to", body = DetailedError),
        (status = 429, description = "resend_too_soon, too_many_attempts or rate_limited", body = RetryLater,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 502, description = "no channel could deliver", body = DetailedError),
        (status = 503, description = "database_unavailable: the database cannot be reached or written (down, disk full, read-only)", body = RetryLater,
            headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn request_otp(
    State(state): State<AppState>,
    Admitted(ip): Admitted,
    AppJson(body): AppJson<RequestOtpBody>,
) -> Result<Json<RequestOtpResponse>, ApiError> {
    let (username, only) = body.validate()?;
    let span = tracing::info_span!("request_otp", username = %username, client_ip = %ip);
    let sent = state.service.request_otp(&username, only).instrument(span).await?;
    Ok(Json(RequestOtpResponse { status: "sent", channels: sent.channels, expires_in: sent.expires_in }))
}

/// Checks an authenticator-app code or a sent code; each is accepted once.
#[utoipa::path(post, path = "/verify", tag = "mfa", request_body = VerifyBody,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "the code is right", body = Valid),
        (status = 400, description = "malformed request", body = DetailedError),
        (status = 401, description = "wrong, expired or used code (or no valid API key: `unauthorized`)", body = InvalidToken),
        (status = 404, description = "unknown user", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = DetailedError),
        (status = 415, description = "not application/json", body = DetailedError),
        (status = 429, description = "too_many_attempts (locked out) or rate_limited", body = RetryLater,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "database_unavailable: the database cannot be reached or written (down, disk full, read-only)", body = RetryLater,
            headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    Admitted(ip): Admitted,
    AppJson(body): AppJson<VerifyBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (username, code) = body.validate()?;
    let span = tracing::info_span!("verify", username = %username, client_ip = %ip);
    state.service.verify(&username, &code).instrument(span).await?;
    Ok(Json(json!({"valid": true})))
}

/// Prometheus metrics, with the database pool's state read now.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text format (OpenMetrics when asked for)", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let (size, idle) = state.service.store.pool_stats();
    state.service.metrics.set_pool(size, idle);
    state.service.metrics.response(&headers)
}

/// 200 when the database answers, 503 when it does not. The server's clock is included
/// because a skewed clock is the usual cause of "invalid code" reports. Never rate-limited.
#[utoipa::path(get, path = "/healthcheck", tag = "monitoring",
    responses(
        (status = 200, description = "`{\"status\":\"ok\",\"database\":\"ok\",\"notifier\",\"time\",\"version\"}`", body = Object),
        (status = 503, description = "`{\"status\":\"unavailable\",\"database\":\"unreachable\",...}`", body = Object),
    ))]
pub async fn healthcheck(State(state): State<AppState>) -> Response {
    let service = &state.service;
    let database = service.store.ping().await;
    let body = |status: &str, db: &str| {
        json!({
            "status": status,
            "database": db,
            "notifier": service.notifier.name(),
            "time": service.clock.now(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    };
    match database {
        Ok(()) => (StatusCode::OK, Json(body("ok", "ok"))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(body("unavailable", "unreachable"))).into_response()
        }
    }
}
