//! The MFA server's HTTP API: `/verify`, `/request-otp`, `/healthcheck`, `/metrics`,
//! `/openapi.json`, and the admin API under `/admin/`.

pub mod admin;
pub mod error;
pub mod extract;
pub mod rate_limit;
pub mod routes;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Settings;
use crate::http::{AuthFailures, AuthRefusal, ServiceState, with_common_layers};
use crate::openapi;
use crate::users::UserService;
use crate::verify::VerifyService;
use error::ApiError;
use rate_limit::IpRateLimiter;

/// Request bodies are a few dozen bytes; anything past this is refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The handlers' shared state, behind one `Arc`: axum clones the state for every handler
/// and layer of every request, and one reference count costs less than a dozen (their
/// clones and drops were ~10% of a `/verify` in a `perf` profile).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

pub struct SharedState {
    pub verify: VerifyService,
    pub users: UserService,
    pub limiter: Arc<IpRateLimiter>,
    /// Failed `MFA_API_KEYS` and `ADMIN_TOKEN` checks, per client network.
    pub auth_failures: AuthFailures,
    /// `TRUSTED_PROXIES`, `MFA_API_KEYS`, `ADMIN_TOKEN` and `MFA_BIND`.
    pub settings: Arc<Settings>,
    pub health_body: routes::HealthBody,
}

impl AppState {
    pub fn new(verify: VerifyService, users: UserService, settings: Arc<Settings>) -> Self {
        let limiter = Arc::new(IpRateLimiter::new(&settings.rate_limits));
        limiter.spawn_pruner();
        Self(Arc::new(SharedState {
            verify,
            users,
            limiter,
            auth_failures: AuthFailures::default(),
            settings,
            health_body: routes::HealthBody::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl ServiceState for AppState {
    type Error = ApiError;
}

impl From<AuthRefusal> for ApiError {
    fn from(refusal: AuthRefusal) -> Self {
        match refusal {
            AuthRefusal::Unauthorized => Self::Unauthorized,
            AuthRefusal::TooManyFailures { retry_after } => Self::RateLimited { retry_after },
        }
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
    // The admin API is only served, and only described, with ADMIN_TOKEN.
    let (admin_routes, admin_doc) = admin::routes(state.clone()).split_for_parts();
    let mut bearers = vec![openapi::Bearer::ApiKey];
    if state.settings.admin_token.is_some() {
        doc.merge(admin_doc);
        bearers.push(openapi::Bearer::AdminToken);
    }
    let doc = openapi::finish(doc, &format!("http://{}", state.settings.bind), &bearers);
    let mut routes = routes.route("/openapi.json", get(move || async move { openapi::response(&doc) }));
    if state.settings.admin_token.is_some() {
        routes = routes.merge(admin_routes);
    }
    let metrics = state.verify.metrics().clone();
    let allowed_hosts = state.settings.allowed_hosts.clone();
    with_common_layers(routes, state, "mfa", MAX_BODY_BYTES, metrics, &allowed_hosts)
}
