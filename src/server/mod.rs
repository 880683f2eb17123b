//! The MFA server over HTTP: its routes and the per-IP rate limit.

pub mod error;
pub mod extract;
pub mod rate_limit;
pub mod routes;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::config::Settings;
use crate::http::{BoundServer, with_common_layers};
use crate::service::MfaService;
use rate_limit::IpRateLimiter;

/// Request bodies are a few dozen bytes; anything past this is refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub service: MfaService,
    pub limiter: Arc<IpRateLimiter>,
    pub trusted_proxies: Arc<Vec<IpAddr>>,
}

pub fn router(state: AppState) -> Router {
    let limited = Router::new()
        .route("/request-otp", post(routes::request_otp))
        .route("/verify", post(routes::verify))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_per_ip));
    // /healthcheck is outside the rate limit so that probes never eat a client's quota.
    let routes = Router::new().merge(limited).route("/healthcheck", get(routes::healthcheck)).with_state(state);
    with_common_layers(routes, "mfa", MAX_BODY_BYTES)
}

/// Binds `settings.bind` (port 0 picks a free port) with the MFA server's routes.
pub async fn bind(settings: &Settings, service: MfaService) -> std::io::Result<BoundServer> {
    let limiter = Arc::new(IpRateLimiter::new(&settings.rate_limits));
    limiter.spawn_pruner();
    let state = AppState { service, limiter, trusted_proxies: Arc::new(settings.trusted_proxies.clone()) };
    BoundServer::bind(settings.bind, router(state)).await
}
