//! HTTP plumbing shared by both services: the JSON extractor and its error shape, the
//! middleware stack (request ids, tracing, timeouts, panics, body limit), and serving.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

/// A request that takes longer than this is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A JSON error response: `status` with `body`.
pub fn json_error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// A JSON error response that also tells the client when to come back.
pub fn json_error_retry_after(status: StatusCode, body: Value, retry_after: u64) -> Response {
    let mut response = json_error(status, body);
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// `401 {"error":"unauthorized"}` with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Whether the request carries `Authorization: Bearer <one of tokens>`. Every token is
/// compared in constant time, and all of them are compared, so timing tells nothing about
/// which one came close.
pub fn has_bearer(headers: &axum::http::HeaderMap, tokens: &[crate::config::Sensitive]) -> bool {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .as_bytes();
    tokens.iter().fold(subtle::Choice::from(0), |found, t| found | presented.ct_eq(t.expose().as_bytes())).into()
}

/// Malformed input: `{"error":"invalid_request","detail":...}` with 400, or 413/415 for an
/// oversized body or a wrong content type.
#[derive(Debug)]
pub struct InvalidRequest {
    pub status: StatusCode,
    pub detail: String,
}

impl InvalidRequest {
    pub fn new(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }
}

impl From<JsonRejection> for InvalidRequest {
    fn from(rejection: JsonRejection) -> Self {
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

impl IntoResponse for InvalidRequest {
    fn into_response(self) -> Response {
        json_error(self.status, json!({"error": "invalid_request", "detail": self.detail}))
    }
}

/// `Json<T>` whose rejections are [`InvalidRequest`]s.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = InvalidRequest;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Random 128-bit request ids, unless the client sent an `X-Request-Id`.
#[derive(Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        HeaderValue::from_str(&format!("{id:032x}")).ok().map(RequestId::new)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal_error"}))
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, json!({"error": "not_found"}))
}

async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "method_not_allowed"}))
}

/// Wraps a service's routes in the middleware both services share. `service` names the
/// service in every request's log span.
pub fn with_common_layers(
    router: Router,
    service: &'static str,
    max_body_bytes: usize,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track_http))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |request: &axum::http::Request<_>| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", service, method = %request.method(), path = %request.uri().path(), request_id = %id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
}

/// A bound listener and the router it will serve.
pub struct BoundServer {
    listener: TcpListener,
    router: Router,
}

impl BoundServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
