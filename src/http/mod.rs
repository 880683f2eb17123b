//! HTTP plumbing shared by both services: the JSON extractor and its error shape, the
//! middleware stack (request ids, tracing, timeouts, panics, body limit), and serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};
use tracing::Instrument;

use crate::config::HttpLimits;

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

/// Whether a body error is the body deadline passing (`HTTP_BODY_TIMEOUT_SECONDS`).
fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl From<JsonRejection> for InvalidRequest {
    fn from(rejection: JsonRejection) -> Self {
        if is_body_timeout(&rejection) {
            return Self {
                status: StatusCode::REQUEST_TIMEOUT,
                detail: "the request body did not arrive in time".into(),
            };
        }
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

/// `Json<T>` whose rejections are [`InvalidRequest`]s, and whose body must be a JSON object.
///
/// Hostile bodies are 4xx: not JSON, invalid UTF-8, nested deeper than serde_json's
/// recursion limit (128), over the body limit (413), a field given twice (serde's derive
/// refuses duplicate fields: a body's meaning must not depend on which duplicate a parser
/// keeps, since a proxy or WAF in front may have read the other one), or an array where
/// an object belongs (serde's derive would otherwise read `["dair", "123456"]` as a struct).
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = InvalidRequest;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(ObjectOnly(value)) = Json::<ObjectOnly<T>>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: DeserializeOwned> AppJson<T> {
    /// A body's bytes read as the extractor reads them once the content type and the size
    /// have passed: the entry point of the property tests and the fuzzer (`crate::input_checks`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidRequest> {
        let Json(ObjectOnly(value)) = Json::<ObjectOnly<T>>::from_bytes(bytes)?;
        Ok(Self(value))
    }
}

/// Deserializes `T` only from a JSON object.
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);

        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(Object(std::marker::PhantomData)).map(ObjectOnly)
    }
}

/// `Query<T>` whose rejections are [`InvalidRequest`]s (400 with a JSON body).
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = InvalidRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(InvalidRequest::new(rejection.body_text())),
        }
    }
}

/// `Path<T>` whose rejections are [`InvalidRequest`]s (400 with a JSON body): a path that
/// is not valid UTF-8 once percent-decoded, for instance.
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = InvalidRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(InvalidRequest::new(rejection.body_text())),
        }
    }
}

/// The request id header: the client's, or a new one (see [`observe`]).
const REQUEST_ID: &str = "x-request-id";

/// A new request id: 128 random bits in hex.
fn new_request_id() -> HeaderValue {
    let id: u128 = rand::random();
    // Hex digits are always a valid header value; the fallback is never taken.
    HeaderValue::from_str(&format!("{id:032x}")).unwrap_or(HeaderValue::from_static("0"))
}

/// The middleware around every request: its id (the client's `X-Request-Id`, or a new one,
/// returned in the response either way), the `http` span that every log line of the
/// request carries, one log line when it ends, and the request metrics.
///
/// Hand-written because it replaces four layers: tower-http's `SetRequestId`,
/// `PropagateRequestId` and `Trace` and a metrics middleware. Each layer adds a boxed clone
/// of the routes and a larger future to every request; the four cost about 5 µs, an eighth
/// of a `/verify` (docs/BENCHMARKS.md, finding 12).
async fn observe(
    State((service, metrics)): State<(&'static str, Arc<crate::metrics::Metrics>)>,
    request: Request,
    next: Next,
) -> Response {
    let id = request.headers().get(REQUEST_ID).cloned().unwrap_or_else(new_request_id);
    // The route pattern, never the raw path (that would make a metrics label per username).
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("http", service, method = %method, path = %request.uri().path(),
        request_id = id.to_str().unwrap_or(""));
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    tracing::info!(parent: &span, status = response.status().as_u16(), latency_us = elapsed.as_micros(),
        "finished processing request");
    metrics.record_request(route, &method, response.status(), elapsed);
    response.headers_mut().insert(REQUEST_ID, id);
    response
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
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state((service, metrics), observe))
}

/// Largest request head (request line and headers) a client may send; beyond it, 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields in one request; beyond it, 431 (hyper's default, stated here).
pub const MAX_HEADERS: usize = 100;

/// A bound listener and the router it will serve.
pub struct BoundServer {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    open_connections: Arc<AtomicUsize>,
}

impl BoundServer {
    /// Binds `addr` (port 0 picks a free port), with the default [`HttpLimits`].
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            router,
            limits: HttpLimits::default(),
            open_connections: Arc::default(),
        })
    }

    /// Serves with these timeouts and connection cap instead of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The number of connections being served, kept up to date while it runs.
    pub fn open_connections(&self) -> Arc<AtomicUsize> {
        self.open_connections.clone()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    ///
    /// This is `axum::serve` written out, because axum sets neither a header read timeout
    /// nor a connection cap: each connection is served by hyper's HTTP/1 server with
    /// `header_read_timeout` (which also closes idle keep-alive connections) and bounded
    /// head size, holds one permit of a semaphore of `max_connections` (at the cap nothing is
    /// accepted; the kernel's backlog holds new connections), and every request body has a
    /// deadline (`RequestBodyDeadlineLayer`: a total, not a per-chunk, timeout).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, router, limits, open_connections } = self;
        let router = router.layer(RequestBodyDeadlineLayer::new(limits.body_timeout));
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let open = OpenConnection::count(&open_connections, permit);
            connections.spawn(serve_connection(stream, peer, router.clone(), limits, open, stopped.clone()));
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        let _ = stop.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// A connection being served: holds its permit, and counts itself open until dropped.
struct OpenConnection {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl OpenConnection {
    fn count(open: &Arc<AtomicUsize>, permit: OwnedSemaphorePermit) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self { _permit: permit, open: open.clone() }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The soft limit on open files (`ulimit -n`) where the system says (Linux's `/proc`);
/// `None` when unknown or unlimited.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// An accept error: the connection that failed is gone, but running out of file descriptors
/// (EMFILE, ENFILE) would make `accept` fail again at once, so wait a little as axum does.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused) {
        return;
    }
    tracing::error!(error = %e, "accept failed (out of file descriptors? see HTTP_MAX_CONNECTIONS and ulimit -n)");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection, until the client closes it, a timeout closes it, or shutdown (then the
/// request in flight is finished and the connection closed).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    _open: OpenConnection,
    mut stopped: watch::Receiver<bool>,
) {
    let service = router.map_request(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let stop = async move {
        // An error means the server is gone, which also means stop.
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!(client = %peer, error = %e, "connection closed with an error");
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
