//! The MFA server over HTTP: its routes and the per-IP rate limit.

pub mod admin;
pub mod error;
pub mod extract;
pub mod rate_limit;
pub mod routes;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Sensitive, Settings};
use crate::http::{BoundServer, with_common_layers};
use crate::openapi;
use crate::verify::MfaService;
use rate_limit::IpRateLimiter;

/// Request bodies are a few dozen bytes; anything past this is refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The handlers' shared state, behind one `Arc`: axum clones the state for every handler
/// and middleware layer of every request, and one reference count is much cheaper than a
/// dozen (the CPU profile in docs/BENCHMARKS.md showed those clones and drops at ~10%).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

pub struct SharedState {
    pub service: MfaService,
    pub limiter: Arc<IpRateLimiter>,
    pub trusted_proxies: Vec<IpAddr>,
    /// `MFA_API_KEYS`: when not empty, `/request-otp` and `/verify` need one as a bearer token.
    pub api_keys: Vec<Sensitive>,
    pub settings: Arc<Settings>,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    // /verify and /request-otp check the API key and the rate limit (`extract::Admitted`);
    // /healthcheck, /metrics and /openapi.json do not, so that probes never eat a client's
    // quota.
    let (routes, mut doc) = OpenApiRouter::with_openapi(openapi::MfaDoc::openapi())
        .routes(routes!(routes::request_otp))
        .routes(routes!(routes::verify))
        .routes(routes!(routes::healthcheck))
        .routes(routes!(routes::metrics))
        .split_for_parts();
    // The admin API is always documented, and only served with ADMIN_TOKEN.
    let (admin_routes, admin_doc) = admin::routes(state.clone()).split_for_parts();
    doc.merge(admin_doc);
    let doc = openapi::finish(doc, &format!("http://{}", state.settings.bind));
    let mut routes = routes.route("/openapi.json", get(move || async move { openapi::response(&doc) }));
    if state.settings.admin_token.is_some() {
        routes = routes.merge(admin_routes);
    }
    let metrics = state.service.metrics.clone();
    with_common_layers(routes.with_state(state), "mfa", MAX_BODY_BYTES, metrics)
}

/// Binds `settings.bind` (port 0 picks a free port) with the MFA server's routes.
pub async fn bind(settings: &Settings, service: MfaService) -> std::io::Result<BoundServer> {
    let store = service.store.clone();
    let limiter = Arc::new(IpRateLimiter::new(&settings.rate_limits));
    limiter.spawn_pruner();
    let state = AppState(Arc::new(SharedState {
        service,
        limiter,
        trusted_proxies: settings.trusted_proxies.clone(),
        api_keys: settings.api_keys.clone(),
        settings: Arc::new(settings.clone()),
    }));
    let server = BoundServer::bind(settings.bind, router(state)).await?.with_limits(settings.http);
    store.watch_load(server.open_connections());
    Ok(server)
}
