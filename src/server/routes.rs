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
use super::extract::ClientIp;
use crate::domain::{OtpCode, Username};
use crate::http::AppJson;
use crate::notify::Channel;

#[derive(Debug, Deserialize)]
pub struct RequestOtpBody {
    pub username: String,
    /// Only this channel ("email" or "telegram"); all of the user's channels when absent.
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Deserialize)]
pub struct VerifyBody {
    pub username: String,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct RequestOtpResponse {
    pub status: &'static str,
    pub channels: Vec<Channel>,
    pub expires_in: u64,
}

fn parse_username(raw: &str) -> Result<Username, ApiError> {
    Username::parse(raw).map_err(ApiError::invalid)
}

/// `POST /request-otp {"username"}`: sends a fresh code to the user's channels.
pub async fn request_otp(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<RequestOtpBody>,
) -> Result<Json<RequestOtpResponse>, ApiError> {
    let username = parse_username(&body.username)?;
    let only = body.channel.as_deref().map(Channel::parse).transpose().map_err(ApiError::invalid)?;
    let span = tracing::info_span!("request_otp", username = %username, client_ip = %ip);
    let sent = state.service.request_otp(&username, only).instrument(span).await?;
    Ok(Json(RequestOtpResponse { status: "sent", channels: sent.channels, expires_in: sent.expires_in }))
}

/// `POST /verify {"username", "token"}`: 200 `{"valid":true}` or an error.
pub async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<VerifyBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let username = parse_username(&body.username)?;
    let code = OtpCode::parse(&body.token).map_err(ApiError::invalid)?;
    let span = tracing::info_span!("verify", username = %username, client_ip = %ip);
    state.service.verify(&username, &code).instrument(span).await?;
    Ok(Json(json!({"valid": true})))
}

/// `GET /metrics`: Prometheus metrics, with the database pool's state read now.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (size, idle) = state.service.store.pool_stats();
    state.service.metrics.set_pool(size, idle);
    state.service.metrics.response()
}

/// `GET /healthcheck`: 200 when the database answers, 503 when it does not. The server's
/// clock is included because a skewed clock is the usual cause of "invalid code" reports.
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
