//! The MFA server's endpoints: thin handlers that parse, call the service, and answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use super::extract::Admitted;
use crate::domain::{Channel, Token, Username};
use crate::http::{AppJson, ErrorBody, InvalidRequest, JsonReply, json_bytes};
use crate::metrics::Metrics;
use crate::verify::Accepted;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RequestOtpBody {
    #[schema(value_type = Username)]
    pub username: String,
    /// Only this channel; all of the user's channels when absent.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerifyBody {
    #[schema(value_type = Username)]
    pub username: String,
    /// A one-time code of 6 to 8 digits, or a recovery code (12 letters and digits,
    /// `xxxx-xxxx-xxxx`); spaces (and a recovery code's dashes and case) are ignored.
    #[schema(example = "123456", schema_with = crate::openapi::token_schema)]
    pub token: String,
}

/// A code was sent (`sent`: on `channels`), or is still being delivered (`queued`: tried on
/// `channels` from the outbox until it is delivered or expires), and for how long it is valid.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestOtpReply {
    /// `sent` or `queued`.
    #[schema(example = "sent")]
    pub status: &'static str,
    pub channels: Vec<Channel>,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

/// The code was right.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyReply {
    #[schema(example = true)]
    pub valid: bool,
    /// What kind of code it was: `totp`, `hotp`, `sent_code` or `recovery`.
    #[schema(example = "totp")]
    pub method: &'static str,
    /// After a recovery code: how many unused ones the user has left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_remaining: Option<u64>,
}

/// The server and its database.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok`, or `unreachable`.
    #[schema(example = "ok")]
    pub database: &'static str,
    /// What delivers sent codes: `file` (development) or `notification-service`.
    #[schema(example = "notification-service")]
    pub notifier: &'static str,
    /// `ok`, or `unavailable` (with 503).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The server's clock (Unix seconds): a skewed clock makes every code look wrong.
    pub time: u64,
    pub version: &'static str,
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
    pub(crate) fn validate(self) -> Result<(Username, Token), InvalidRequest> {
        let username = Username::parse(&self.username).map_err(InvalidRequest::new)?;
        let token = Token::parse(&self.token).map_err(InvalidRequest::new)?;
        Ok((username, token))
    }
}

/// Sends a fresh one-time code to the user's channels (or the one named), in parallel,
/// through the durable outbox.
#[utoipa::path(post, path = "/request-otp", tag = "mfa", request_body = RequestOtpBody,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "`sent` on at least one channel within OTP_SEND_WAIT_MS, or `queued`: still being delivered", body = RequestOtpReply),
        (status = 400, description = "invalid_request: malformed request", body = ErrorBody),
        (status = 401, description = "unauthorized: MFA_API_KEYS is set and no valid key was sent", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 413, description = "invalid_request: body over 16 KiB", body = ErrorBody),
        (status = 415, description = "invalid_request: not application/json", body = ErrorBody),
        (status = 422, description = "no_delivery_channel: the user has no channel to send to", body = ErrorBody),
        (status = 429, description = "resend_too_soon, too_many_attempts or rate_limited", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 502, description = "delivery_failed: every channel failed for good within OTP_SEND_WAIT_MS", body = ErrorBody),
        (status = 503, description = "database_unavailable: the database cannot be reached or written (down, disk full, read-only)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn request_otp(
    State(state): State<AppState>,
    Admitted(ip): Admitted,
    AppJson(body): AppJson<RequestOtpBody>,
) -> Result<JsonReply<RequestOtpReply>, ApiError> {
    let (username, only) = body.validate()?;
    let span = tracing::info_span!("request_otp", username = %username, client_ip = %ip);
    let sent = state.verify.request_otp(&username, only).instrument(span).await?;
    let status = if sent.queued { "queued" } else { "sent" };
    Ok(JsonReply(RequestOtpReply { status, channels: sent.channels, expires_in: sent.expires_in }))
}

/// Checks a code of one of the user's authenticators, a sent code or a recovery code;
/// each is accepted once.
#[utoipa::path(post, path = "/verify", tag = "mfa", request_body = VerifyBody,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "the code is right", body = VerifyReply),
        (status = 400, description = "invalid_request: malformed request", body = ErrorBody),
        (status = 401, description = "invalid_token: wrong, expired or used code, with `\"valid\": false` (or no valid API key: `unauthorized`)", body = ErrorBody),
        (status = 404, description = "unknown_user", body = ErrorBody),
        (status = 413, description = "invalid_request: body over 16 KiB", body = ErrorBody),
        (status = 415, description = "invalid_request: not application/json", body = ErrorBody),
        (status = 429, description = "too_many_attempts (locked out) or rate_limited", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, description = "database_unavailable: the database cannot be reached or written (down, disk full, read-only)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    Admitted(ip): Admitted,
    AppJson(body): AppJson<VerifyBody>,
) -> Result<JsonReply<VerifyReply>, ApiError> {
    let (username, token) = body.validate()?;
    let span = tracing::info_span!("verify", username = %username, client_ip = %ip);
    let accepted = state.verify.verify(&username, &token, ip).instrument(span).await?;
    let recovery_codes_remaining = match accepted {
        Accepted::Recovery { remaining } => Some(remaining),
        _ => None,
    };
    Ok(JsonReply(VerifyReply { valid: true, method: accepted.method(), recovery_codes_remaining }))
}

/// Prometheus metrics, with the database connections read now.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text format (OpenMetrics when asked for)", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    Metrics::response(&headers, state.verify.metrics_text())
}

/// 200 when the database answers, 503 when it does not. The server's clock is included
/// because a skewed clock is the usual cause of "invalid code" reports. Never rate-limited.
#[utoipa::path(get, path = "/healthcheck", tag = "monitoring",
    responses(
        (status = 200, description = "the database answers", body = HealthReport),
        (status = 503, description = "the database does not answer: `\"status\":\"unavailable\",\"database\":\"unreachable\"`", body = HealthReport),
    ))]
pub async fn healthcheck(State(state): State<AppState>) -> Response {
    let health = state.verify.health().await;
    let (status, database, code) = if health.database_reachable {
        ("ok", "ok", StatusCode::OK)
    } else {
        ("unavailable", "unreachable", StatusCode::SERVICE_UNAVAILABLE)
    };
    let body = state.health_body.get_or_insert((health.time, health.database_reachable), || {
        let report = HealthReport {
            database,
            notifier: health.notifier,
            status,
            time: health.time,
            version: env!("CARGO_PKG_VERSION"),
        };
        serde_json::to_vec(&report).map(Bytes::from).unwrap_or_default()
    });
    json_bytes(code, body)
}

/// The last `/healthcheck` body, given again while the second and the answer are the same.
/// The probe is already reused within the second (`VerifyService::health`); serialising the
/// same report again was about 1,250 of the request's 28,900 instructions (callgrind).
#[derive(Default)]
pub struct HealthBody(std::sync::Mutex<Option<((u64, bool), Bytes)>>);

impl HealthBody {
    fn get_or_insert(&self, key: (u64, bool), make: impl FnOnce() -> Bytes) -> Bytes {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((at, body)) if *at == key => body.clone(),
            _ => {
                let body = make();
                *last = Some((key, body.clone()));
                body
            }
        }
    }
}
