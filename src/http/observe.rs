//! What every request of both services passes through: its id, its log span and line, its
//! metrics, the body limit, the request timeout and panic catching.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use axum::routing::future::RouteFuture;
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use tower::Service as _;
use tracing::Level;

use super::ServiceState;
use super::deadlines::BodyTooSlow;
use super::error::{HttpFault, InvalidRequest, caused_by};
use crate::metrics::{Metrics, RouteMetrics, method_label};
use crate::telemetry::printable;

/// A request that takes longer than this is answered with 408. Counted from the first time
/// its handler waits: no timer could cut off the synchronous work before that anyway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The request id header: the client's, or a new one (see [`Observe`]). A `HeaderName`,
/// not a `&str`, so that it is not parsed again on every lookup and insert.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client (a UUID is 36 characters).
pub const MAX_REQUEST_ID_LEN: usize = 64;
/// Routes whose successful answers are logged at DEBUG, not INFO: probes and scrapes that
/// come every few seconds (a container's health check, Prometheus), and the bot's `/start`s
/// that the MFA server takes every second. A line for each would bury everything else, and
/// at the default level each line cost a health check as much as the rest of its answer
/// (docs/BENCHMARKS.md, finding 30). Their failures are still logged at INFO.
const ROUTINE_ROUTES: [&str; 3] = ["/healthcheck", "/metrics", "/telegram/starts"];

/// The most of a request's path that goes into a log line.
pub const LOGGED_PATH_CHARS: usize = 128;

/// The client's request id, if it is one we may log as it is: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 - _ . : / + =` (what UUIDs, trace ids
/// and base64 ids use). Anything else gets a fresh id, so no client text reaches the log.
fn client_request_id(value: &HeaderValue) -> Option<HeaderValue> {
    let id = value.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b);
    ((1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(allowed)).then(|| value.clone())
}

thread_local! {
    /// What new request ids are drawn from. An id must be unique, not secret (a client may
    /// send its own), so each thread has a fast generator seeded from the cryptographic one
    /// instead of drawing from `ThreadRng` (ChaCha12) for every request (docs/BENCHMARKS.md,
    /// finding 29).
    static REQUEST_IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A new request id: 128 random bits in hex. Written by hand into a buffer on the stack:
/// `format!("{:032x}")` cost every request about 250 instructions more, data-encoding's
/// `encode_mut` about 150 (callgrind).
fn new_request_id() -> HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // One u128, two words of the generator: `[u8; 16]` would draw a word for every byte.
    let id: u128 = REQUEST_IDS.with_borrow_mut(|ids| ids.random());
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[usize::from((id >> (124 - 4 * i)) as u8 & 0xf)];
    }
    // Hex digits are always a valid header value; the fallback is never taken.
    HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("0"))
}

/// The layer around every route: its id (the client's `X-Request-Id`, or a new one,
/// returned in the response either way), the `http` span that every log line of the
/// request carries, one log line when it ends, the request metrics, the `Host` check, the
/// body read, the request timeout (408) and panic catching (500).
///
/// Hand-written as one tower service because each layer costs every request: axum's
/// `from_fn` boxes a clone of the routes behind it, tower-http's `Timeout` and
/// `CatchPanic` each wrap the future again. Removing them on `/healthcheck` (bench/run's
/// harness, wrk, 32 connections): 17.2 µs of server CPU per request with all of them,
/// 13.8 µs without the `from_fn` middleware, 15.0 without the other two; the ceiling 10.2.
struct ObserveLayer<S> {
    observed: Observed,
    service: PhantomData<fn() -> S>,
}

impl<S> Clone for ObserveLayer<S> {
    fn clone(&self) -> Self {
        Self { observed: self.observed.clone(), service: PhantomData }
    }
}

impl<S> tower::Layer<Route> for ObserveLayer<S> {
    type Service = Observe<S>;

    fn layer(&self, inner: Route) -> Self::Service {
        let observed = RouteObserved { service: self.observed.clone(), metrics: OnceLock::new() };
        Observe { inner, observed: Arc::new(observed), service: PhantomData }
    }
}

/// The service of [`ObserveLayer`] around one route (`Router::layer` makes one for each),
/// with that route's metric handles, made at its first request.
struct Observe<S> {
    inner: Route,
    observed: Arc<RouteObserved>,
    service: PhantomData<fn() -> S>,
}

impl<S> Clone for Observe<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), observed: self.observed.clone(), service: PhantomData }
    }
}

/// What [`Observe`] needs for one route: the service's part, and the route's metric handles.
/// One `Arc`: axum clones the route's service for every request.
struct RouteObserved {
    service: Observed,
    metrics: OnceLock<RouteMetrics>,
}

impl<S: ServiceState> tower::Service<Request> for Observe<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Route` is always ready: its own `poll_ready` answers `Ready` without looking.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let RouteObserved { service: observed, metrics: route_metrics } = &*self.observed;
        let ObservedService { service, metrics, max_body_bytes, allowed_hosts, .. } = &**observed;
        let Headers { request_id, host, declared_length } = Headers::of(request.headers());
        let id = request_id.and_then(client_request_id).unwrap_or_else(new_request_id);
        let host_known = host_allowed(host, allowed_hosts);
        // The route pattern, never the raw path (that would make a metrics label per username).
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let kept = route_metrics.get_or_init(|| metrics.route(route.to_owned()));
        // Each route has its own `Observe`; should one ever see two patterns, the other counts apart.
        let other_route = (kept.route() != route).then(|| metrics.route(route.to_owned()));
        let method = request.method().clone();
        macro_rules! http_span {
            ($level:expr) => {
                tracing::span!($level, "http", service, method = method_label(&method),
                    path = %printable(request.uri().path(), LOGGED_PATH_CHARS), request_id = id.to_str().unwrap_or(""))
            };
        }
        // A routine route's span only at DEBUG: at INFO, making and formatting it cost a
        // health check a quarter of its CPU (7.7 → 5.8 µs), for lines it rarely has (finding 30).
        let routine = ROUTINE_ROUTES.iter().copied().find(|routine| *routine == route);
        let span = if routine.is_some() { http_span!(Level::DEBUG) } else { http_span!(Level::INFO) };
        let started = Instant::now();
        let state = {
            let _entered = span.enter();
            if !host_known {
                State::Answered { response: Some(refuse_host::<S>(&request)) }
            } else if request.body().size_hint().exact() == Some(0) {
                // Nothing to read (every GET): the route is called now, without a clone of it.
                State::Handling { handler: self.inner.call(request), timeout: None }
            } else if declared_length.is_some_and(|length| length > *max_body_bytes as u64) {
                // Refused at once, without inviting the body of an `Expect: 100-continue`.
                State::Answered { response: Some(refuse_body::<S>(too_large())) }
            } else {
                // The whole body is read before the route is called, so that every request
                // leaves its connection ready for the next one, whatever the handler does
                // with the body (a refusal by the API-key gate or the rate limit never reads it).
                State::Reading {
                    request: Some(request),
                    read: BodyBytes::default(),
                    limit: *max_body_bytes,
                    route: self.inner.clone(),
                }
            }
        };
        ObserveFuture {
            state,
            observed: self.observed.clone(),
            other_route,
            method,
            span,
            routine,
            id: Some(id),
            started,
            service: PhantomData,
        }
    }
}

/// The 421 for a `Host` that is not ours, logged.
fn refuse_host<S: ServiceState>(request: &Request) -> Response {
    let host = request.headers().get(header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    tracing::warn!(event = "unknown_host", host = %printable(host.as_deref().unwrap_or(""), 64),
        "refused a request for a host name not in ALLOWED_HOSTS (DNS rebinding, or a name to add there)");
    let refused = InvalidRequest {
        status: StatusCode::MISDIRECTED_REQUEST,
        detail: "the Host header names neither an address of this server nor one of ALLOWED_HOSTS".into(),
    };
    S::Error::from(HttpFault::Invalid(refused)).into_response()
}

pin_project_lite::pin_project! {
    /// One request through [`Observe`]. Written by hand, not as an `async` block: the block
    /// was boxed once more on top of axum's box, moved the request and the route's future from
    /// state to state, and cloned the route even without a body to wait for. Callgrind on the
    /// ceiling's routes behind these layers (docs/BENCHMARKS.md, finding 23): a GET 20,575 →
    /// 19,379 instructions a request, a POST 29,633 → 28,149 (bare: 16,214 and 24,242).
    #[project = ObserveFutureProjection]
    struct ObserveFuture<S> {
        #[pin]
        state: State,
        observed: Arc<RouteObserved>,
        other_route: Option<RouteMetrics>,
        method: Method,
        span: tracing::Span,
        // The pattern of a route in `ROUTINE_ROUTES` (its span is at DEBUG), else `None`.
        routine: Option<&'static str>,
        id: Option<HeaderValue>,
        started: Instant,
        service: PhantomData<fn() -> S>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State {
        /// The request's body is being read into `read` (at most `limit` bytes); the route
        /// waits for it. Not with http-body-util's `Collect`, which put even a body of one
        /// frame into a new list of frames and copied it out again (docs/BENCHMARKS.md,
        /// finding 27), nor split into its parts and a `Limited` body, which moved the
        /// parts twice (finding 34).
        Reading { request: Option<Request>, read: BodyBytes, limit: usize, route: Route },
        /// The route is answering; `timeout` is armed the first time it has to wait.
        Handling { #[pin] handler: RouteFuture<Infallible>, #[pin] timeout: Option<tokio::time::Sleep> },
        /// Answered without the route (or already given out).
        Answered { response: Option<Response> },
    }
}

impl<S: ServiceState> Future for ObserveFuture<S> {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = loop {
            let this = self.as_mut().project();
            let _entered = this.span.enter();
            match this.state.project() {
                StateProjection::Reading { request, read, limit, route } => {
                    // Never `None`: the request is taken only below, as the state leaves `Reading`.
                    let Some(body) = request.as_mut().map(Request::body_mut) else { return Poll::Pending };
                    let next = match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) if read.len().saturating_add(data.len()) > *limit => {
                                State::Answered { response: Some(refuse_body::<S>(too_large())) }
                            }
                            Ok(data) => {
                                read.push(data);
                                continue;
                            }
                            Err(_trailers) => continue,
                        },
                        Some(Err(error)) => State::Answered { response: Some(refuse_body::<S>(unread(&error))) },
                        None => match request.take() {
                            Some(mut request) => {
                                *request.body_mut() = Body::from(std::mem::take(read).into_bytes());
                                State::Handling { handler: route.call(request), timeout: None }
                            }
                            None => return Poll::Pending,
                        },
                    };
                    drop(_entered);
                    self.as_mut().project().state.set(next);
                }
                StateProjection::Handling { handler, mut timeout } => {
                    let request_timeout = this.observed.service.request_timeout;
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.poll(cx))) {
                        Ok(Poll::Ready(Ok(response))) => break response,
                        Ok(Poll::Ready(Err(never))) => match never {},
                        Err(_panic) => {
                            tracing::error!("a request handler panicked");
                            break S::Error::from(HttpFault::Panicked).into_response();
                        }
                        Ok(Poll::Pending) => {}
                    }
                    if timeout.is_none() {
                        timeout.set(Some(tokio::time::sleep(request_timeout)));
                    }
                    let Some(timeout) = timeout.as_pin_mut() else { return Poll::Pending };
                    std::task::ready!(timeout.poll(cx));
                    let late = InvalidRequest {
                        status: StatusCode::REQUEST_TIMEOUT,
                        detail: format!("the request was not answered within {} s", request_timeout.as_secs()),
                    };
                    break S::Error::from(HttpFault::Invalid(late)).into_response();
                }
                StateProjection::Answered { response } => match response.take() {
                    Some(response) => break response,
                    // Polled again after it answered, which no caller does: it never answers twice.
                    None => return Poll::Pending,
                },
            }
        };
        Poll::Ready(Ok(self.project().finish(response)))
    }
}

impl<S> ObserveFutureProjection<'_, S> {
    /// The request's log line and metrics, and its id on the answer.
    fn finish(self, mut response: Response) -> Response {
        let elapsed = self.started.elapsed();
        // The route's handles, set in `call` before this future was made.
        let route = self.other_route.as_ref().or(self.observed.metrics.get());
        let status = response.status().as_u16();
        let latency_us = elapsed.as_micros();
        match *self.routine {
            Some(_) if status == 200 => {
                tracing::debug!(parent: &*self.span, status, latency_us, "finished processing request");
            }
            // A routine route's failure, at INFO without its DEBUG span: the span's fields in
            // the line itself (its path is its pattern, which has no parameters).
            Some(path) if self.span.is_disabled() => {
                let request_id = self.id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("");
                tracing::info!(
                    service = self.observed.service.service,
                    method = method_label(self.method),
                    path,
                    request_id,
                    status,
                    latency_us,
                    "finished processing request"
                );
            }
            _ => tracing::info!(parent: &*self.span, status, latency_us, "finished processing request"),
        }
        if let Some(route) = route {
            route.record(self.method, response.status(), elapsed);
        }
        if let Some(id) = self.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        response
    }
}

/// What [`Observe`] needs: the service's name for the log, its metrics, its body limit and
/// host names. One `Arc`: it is cloned for every request.
type Observed = Arc<ObservedService>;

struct ObservedService {
    service: &'static str,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    allowed_hosts: Arc<[String]>,
    /// [`REQUEST_TIMEOUT`] (shorter in the tests).
    request_timeout: Duration,
}

/// Whether the request's `Host` is one this server answers to: an IP address, `localhost`,
/// or one of `ALLOWED_HOSTS`. A web page that rebinds its own name to 127.0.0.1 still sends
/// that name, so it cannot reach a service on loopback. (No `Host` at all: HTTP/1.0, which
/// a browser never sends.)
fn host_allowed(host: Option<&HeaderValue>, allowed: &[String]) -> bool {
    let Some(host) = host else { return true };
    let Ok(host) = host.to_str() else { return false };
    if host.starts_with('[') {
        return host.split_once(']').is_some_and(|(ip, _)| ip[1..].parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.as_bytes().iter().rposition(|b| *b == b':') {
        Some(colon) if host.as_bytes()[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    };
    is_ipv4(name.as_bytes())
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether `name` is an IPv4 address as `std::net::Ipv4Addr` reads one: four decimal
/// octets of at most 255, 1 to 3 digits each, none with a leading zero. By hand because
/// std's parser, every request, cost more than the rest of the `Host` check together
/// (170 instructions for `127.0.0.1`, callgrind); a property test holds it to std's.
fn is_ipv4(name: &[u8]) -> bool {
    // The dots seen, and the current octet's digits and value.
    let (mut dots, mut digits, mut value) = (0, 0, 0u16);
    for &b in name {
        match b {
            b'0'..=b'9' => {
                if digits > 0 && value == 0 {
                    return false; // a leading zero
                }
                digits += 1;
                value = value * 10 + u16::from(b - b'0');
                if value > 255 {
                    return false;
                }
            }
            b'.' if digits > 0 && dots < 3 => (dots, digits, value) = (dots + 1, 0, 0),
            _ => return false,
        }
    }
    dots == 3 && digits > 0
}

/// The request headers every request's layer reads, found in one pass over them instead of
/// a hashed lookup each (three lookups cost a POST about 370 instructions, callgrind). The
/// first value of each, as `HeaderMap::get` gives it.
struct Headers<'a> {
    request_id: Option<&'a HeaderValue>,
    host: Option<&'a HeaderValue>,
    /// `Content-Length`, when it is a number.
    declared_length: Option<u64>,
}

impl<'a> Headers<'a> {
    fn of(headers: &'a axum::http::HeaderMap) -> Self {
        let (mut request_id, mut host, mut length) = (None, None, None);
        for (name, value) in headers {
            let slot = if *name == header::HOST {
                &mut host
            } else if *name == header::CONTENT_LENGTH {
                &mut length
            } else if *name == REQUEST_ID {
                &mut request_id
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        let declared_length = length.and_then(|v: &HeaderValue| v.to_str().ok()?.parse::<u64>().ok());
        Self { request_id, host, declared_length }
    }
}

/// A body's bytes, gathered as its frames come: the first frame as it is (most bodies are
/// one, and it is not copied), later ones into one buffer that grows by doubling, so that a
/// body sent in thousands of tiny chunks costs a copy of its length, not of its length
/// squared.
#[derive(Default)]
pub(super) struct BodyBytes {
    first: Bytes,
    joined: Vec<u8>,
}

impl BodyBytes {
    pub(super) fn push(&mut self, data: Bytes) {
        if self.joined.is_empty() && self.first.is_empty() {
            self.first = data;
            return;
        }
        if self.joined.is_empty() {
            self.joined.extend_from_slice(&std::mem::take(&mut self.first));
        }
        self.joined.extend_from_slice(&data);
    }

    pub(super) fn len(&self) -> usize {
        if self.joined.is_empty() { self.first.len() } else { self.joined.len() }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        if self.joined.is_empty() { self.first } else { Bytes::from(self.joined) }
    }
}

fn too_large() -> InvalidRequest {
    InvalidRequest { status: StatusCode::PAYLOAD_TOO_LARGE, detail: "the request body is too large".into() }
}

/// Why a body could not be read: too slow (408) or broken (400).
fn unread(error: &(dyn std::error::Error + 'static)) -> InvalidRequest {
    if caused_by::<BodyTooSlow>(error) {
        InvalidRequest::body_too_slow()
    } else {
        InvalidRequest::new("the request body could not be read")
    }
}

/// The answer to a body that was not read: part of it is still unread, so the connection
/// cannot carry another request.
fn refuse_body<S: ServiceState>(refused: InvalidRequest) -> Response {
    let mut response = S::Error::from(HttpFault::Invalid(refused)).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A service's routes with its state and the layers both services share. `service` names
/// the service in every request's log span.
pub fn with_common_layers<S: ServiceState>(
    routes: Router<S>,
    state: S,
    service: &'static str,
    max_body_bytes: usize,
    metrics: Arc<Metrics>,
    allowed_hosts: &[String],
) -> Router {
    let observed = ObservedService {
        service,
        metrics,
        max_body_bytes,
        allowed_hosts: allowed_hosts.into(),
        request_timeout: REQUEST_TIMEOUT,
    };
    with_state_and_layers(routes, state, observed)
}

/// One layer only: each `Router::layer` boxes every route's service and future once more.
/// (No `DefaultBodyLimit` either: `Observe` has read the whole body, within the limit,
/// before any extractor sees it.)
fn with_state_and_layers<S: ServiceState>(routes: Router<S>, state: S, observed: ObservedService) -> Router {
    routes
        .fallback(|| async { S::Error::from(HttpFault::NoRoute) })
        .method_not_allowed_fallback(|| async { S::Error::from(HttpFault::WrongMethod) })
        .with_state(state)
        .layer(ObserveLayer::<S> { observed: Arc::new(observed), service: PhantomData })
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn a_body_of_one_frame_is_kept_as_it_is_and_more_frames_are_joined_in_order() {
        let frame = Bytes::from_static(br#"{"username":"alice"}"#);
        let mut one = BodyBytes::default();
        one.push(frame.clone());
        let whole = one.into_bytes();
        assert_eq!((whole.as_ptr(), whole.len()), (frame.as_ptr(), frame.len()), "not copied");

        let text: String = (0..5_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut many = BodyBytes::default();
        many.push(Bytes::new());
        for piece in text.as_bytes().chunks(3) {
            many.push(Bytes::copy_from_slice(piece));
            many.push(Bytes::new());
        }
        assert_eq!(many.into_bytes(), text.as_bytes());
        assert!(BodyBytes::default().into_bytes().is_empty());
    }

    #[derive(Clone)]
    struct Plain;

    #[derive(Debug)]
    struct Fault(StatusCode);

    impl From<HttpFault> for Fault {
        fn from(fault: HttpFault) -> Self {
            Self(match fault {
                HttpFault::Invalid(invalid) => invalid.status,
                HttpFault::NoRoute => StatusCode::NOT_FOUND,
                HttpFault::WrongMethod => StatusCode::METHOD_NOT_ALLOWED,
                HttpFault::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
            })
        }
    }

    impl IntoResponse for Fault {
        fn into_response(self) -> Response {
            self.0.into_response()
        }
    }

    impl ServiceState for Plain {
        type Error = Fault;
    }

    async fn panics() -> &'static str {
        panic!("a bug")
    }

    const TIMEOUT: Duration = Duration::from_millis(50);

    fn app() -> Router {
        let routes = Router::<Plain>::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/panics", get(panics))
            .route("/hangs", get(std::future::pending::<&'static str>));
        let observed = ObservedService {
            service: "test",
            metrics: Arc::new(Metrics::mfa()),
            max_body_bytes: 1024,
            allowed_hosts: Arc::new([]),
            request_timeout: TIMEOUT,
        };
        with_state_and_layers(routes, Plain, observed)
    }

    async fn status(path: &str) -> (StatusCode, bool) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        (response.status(), response.headers().contains_key(REQUEST_ID))
    }

    #[tokio::test]
    async fn every_answer_carries_a_request_id() {
        assert_eq!(status("/ok").await, (StatusCode::OK, true));
        assert_eq!(status("/nowhere").await, (StatusCode::NOT_FOUND, true));
    }

    #[test]
    fn new_request_ids_are_32_hex_digits_and_differ_across_threads() {
        let draw = || (0..1_000).map(|_| new_request_id().to_str().unwrap().to_owned()).collect::<Vec<_>>();
        let mut ids = draw();
        ids.extend(std::thread::spawn(draw).join().unwrap());
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{:?}", &ids[..3]);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "each thread's generator is seeded apart");
    }

    #[test]
    fn the_host_check_takes_addresses_localhost_and_the_allowed_names_with_or_without_a_port() {
        let allowed: [String; 1] = ["mfa.example.com".into()];
        let check = |host: &[u8]| host_allowed(Some(&HeaderValue::from_bytes(host).unwrap()), &allowed);
        // An empty port is the URI syntax's too (RFC 3986 §3.2.3).
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.0.0.255:1",
            "1.2.3.4:",
            "localhost",
            "LocalHost:7000",
            "[::1]",
            "[::1]:80",
            "mfa.example.com",
            "MFA.example.com:443",
        ] {
            assert!(check(host.as_bytes()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:80",
            "mfa.example.com.evil",
            "127.0.0.1:80x",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "[::1",
            "[zz]:80",
            "",
        ] {
            assert!(!check(host.as_bytes()), "{host}");
        }
        assert!(!check(b"caf\xc3\xa9.example"), "not visible ASCII");
        assert!(host_allowed(None, &allowed), "HTTP/1.0 sends no Host");
    }

    #[test]
    fn the_headers_read_in_one_pass_are_the_first_of_each_as_a_lookup_gives_them() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append(header::HOST, HeaderValue::from_static("first"));
        headers.append(header::HOST, HeaderValue::from_static("second"));
        headers.append(REQUEST_ID, HeaderValue::from_static("id-1"));
        headers.append(REQUEST_ID, HeaderValue::from_static("id-2"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        let read = Headers::of(&headers);
        assert_eq!(read.host, headers.get(header::HOST));
        assert_eq!(read.request_id, headers.get(REQUEST_ID));
        assert_eq!(read.declared_length, Some(42));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4x"));
        assert_eq!(Headers::of(&headers).declared_length, None);
        let empty = axum::http::HeaderMap::new();
        let none = Headers::of(&empty);
        assert!(none.host.is_none() && none.request_id.is_none() && none.declared_length.is_none());
    }

    proptest::proptest! {
        #[test]
        fn is_ipv4_reads_what_the_standard_library_reads(
            name in proptest::prop_oneof![
                r"(0|[1-9][0-9]{0,3}|0[0-9]{1,2}|[0-9a-f]{1,3})(\.(0|[1-9][0-9]{0,3}|0[0-9]{1,2}|)){0,5}",
                r"[0-9.]{0,16}",
                r"[ -~]{0,16}",
            ]
        ) {
            proptest::prop_assert_eq!(is_ipv4(name.as_bytes()), name.parse::<std::net::Ipv4Addr>().is_ok(), "{}", name);
        }
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500() {
        assert_eq!(status("/panics").await, (StatusCode::INTERNAL_SERVER_ERROR, true));
    }

    #[tokio::test]
    async fn a_handler_that_never_answers_is_answered_408_after_the_request_timeout() {
        let started = std::time::Instant::now();
        assert_eq!(status("/hangs").await, (StatusCode::REQUEST_TIMEOUT, true));
        assert!(started.elapsed() >= TIMEOUT);
    }
}
