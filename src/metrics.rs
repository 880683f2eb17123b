//! Prometheus metrics, one registry per service (no global recorder, so two services in one
//! process, and the tests, each read only their own). Served at `GET /metrics` in the
//! OpenMetrics text format, which Prometheus scrapes.

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The labels of every request, typed: counting a request allocates only its route's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// What a verification can end in; each has its series from the start (at 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    Valid,
    Invalid,
    Replayed,
    Locked,
}

impl Verification {
    const ALL: [Self; 4] = [Self::Valid, Self::Invalid, Self::Replayed, Self::Locked];

    /// Its `outcome` label.
    fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Replayed => "replayed",
            Self::Locked => "locked",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    verifications: Family<OutcomeLabels, Counter>,
    /// The counters of [`Verification::ALL`], in its order, taken from `verifications` once:
    /// asking the family takes its lock and hashes the label on every verification.
    outcomes: [Counter; 4],
    lockouts: Counter,
    totp_offsets: Histogram,
    rate_limited: Counter,
    codes_sent: Family<Labels, Counter>,
    delivery_jobs: Family<Labels, Counter>,
    delivery_latency: Histogram,
    delivery_queue: Gauge,
    delivery_jobs_forgotten: Counter,
    deliveries: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    pool: Family<Labels, Gauge>,
    security_alerts: Family<Labels, Counter>,
}

impl Metrics {
    fn bare() -> Self {
        let verifications = Family::<OutcomeLabels, Counter>::default();
        let outcomes = Verification::ALL
            .map(|outcome| verifications.get_or_create(&OutcomeLabels { outcome: outcome.label() }).clone());
        Self {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            verifications,
            outcomes,
            lockouts: Counter::default(),
            // Whole steps, so each bucket below holds one offset (from -5 to 5) or a tail.
            totp_offsets: Histogram::new([
                -10.5, -5.5, -4.5, -3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 10.5,
            ]),
            rate_limited: Counter::default(),
            codes_sent: Family::default(),
            delivery_jobs: Family::default(),
            // From the request to the delivery, in whole seconds: 0 (within the request) to 10 minutes.
            delivery_latency: Histogram::new([0.5, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
            delivery_queue: Gauge::default(),
            delivery_jobs_forgotten: Counter::default(),
            deliveries: Family::default(),
            retries: Family::default(),
            pool: Family::default(),
            security_alerts: Family::default(),
        }
    }

    fn with_http(mut self) -> Self {
        self.registry.register("http_requests", "HTTP requests by route, method and status", self.requests.clone());
        self.registry.register("http_request_duration_seconds", "HTTP request latency by route", self.latency.clone());
        self
    }

    /// The MFA server's metrics.
    pub fn mfa() -> Self {
        let mut m = Self::bare().with_http();
        let r = &mut m.registry;
        r.register(
            "mfa_verifications",
            "verifications by outcome (valid, invalid, replayed, locked)",
            m.verifications.clone(),
        );
        r.register("mfa_lockouts", "users locked out after too many failures", m.lockouts.clone());
        r.register(
            "mfa_totp_step_offset",
            "accepted TOTP codes by their time step minus the server's (the authenticators' clock drift)",
            m.totp_offsets.clone(),
        );
        r.register("mfa_rate_limited", "requests refused by RATE_LIMIT", m.rate_limited.clone());
        r.register("mfa_codes_sent", "codes from /request-otp by channel and outcome", m.codes_sent.clone());
        r.register(
            "mfa_delivery_jobs",
            "outbox jobs by channel and outcome (queued, delivered, retried, failed_*, abandoned, abandoned_expired)",
            m.delivery_jobs.clone(),
        );
        r.register(
            "mfa_delivery_latency_seconds",
            "from a code's request to its delivery (whole seconds)",
            m.delivery_latency.clone(),
        );
        r.register(
            "mfa_delivery_queue",
            "outbox jobs still queued (at the worker's last look)",
            m.delivery_queue.clone(),
        );
        r.register(
            "mfa_delivery_jobs_forgotten",
            "outbox jobs removed a week after they ended",
            m.delivery_jobs_forgotten.clone(),
        );
        r.register("mfa_db_pool_connections", "database pool connections by state", m.pool.clone());
        r.register(
            "mfa_security_alerts",
            "security alerts to users by kind and outcome (sent, failed, suppressed, no_channel, error, dropped)",
            m.security_alerts.clone(),
        );
        m
    }

    /// The notification service's metrics.
    pub fn notifier() -> Self {
        let mut m = Self::bare().with_http();
        let r = &mut m.registry;
        r.register(
            "notify_deliveries",
            "deliveries by channel and outcome (sent, failed, rejected, not_configured)",
            m.deliveries.clone(),
        );
        r.register("notify_retries", "delivery attempts after the first, by channel", m.retries.clone());
        m
    }

    pub fn verification(&self, outcome: Verification) {
        self.outcomes[outcome as usize].inc();
    }

    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    pub fn totp_offset(&self, steps: i64) {
        self.totp_offsets.observe(steps as f64);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub fn code_sent(&self, channel: &str, outcome: &'static str) {
        self.codes_sent.get_or_create(&vec![("channel", channel.to_string()), ("outcome", outcome.to_string())]).inc();
    }

    pub fn delivery_job(&self, channel: &str, outcome: &'static str) {
        self.delivery_jobs
            .get_or_create(&vec![("channel", channel.to_string()), ("outcome", outcome.to_string())])
            .inc();
    }

    pub fn delivery_latency(&self, seconds: u64) {
        self.delivery_latency.observe(seconds as f64);
    }

    pub fn delivery_jobs_forgotten(&self, jobs: u64) {
        self.delivery_jobs_forgotten.inc_by(jobs);
    }

    pub fn set_delivery_queue(&self, jobs: u64) {
        self.delivery_queue.set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    pub fn delivery(&self, channel: &str, outcome: &'static str, attempts: u32) {
        self.deliveries.get_or_create(&vec![("channel", channel.to_string()), ("outcome", outcome.to_string())]).inc();
        let retries = u64::from(attempts.saturating_sub(1));
        self.retries.get_or_create(&vec![("channel", channel.to_string())]).inc_by(retries);
    }

    pub fn security_alert(&self, kind: &'static str, outcome: &'static str) {
        self.security_alerts.get_or_create(&vec![("kind", kind.to_string()), ("outcome", outcome.to_string())]).inc();
    }

    pub fn set_pool(&self, size: u32, idle: u32) {
        self.pool.get_or_create(&vec![("state", "idle".to_string())]).set(i64::from(idle));
        self.pool.get_or_create(&vec![("state", "active".to_string())]).set(i64::from(size.saturating_sub(idle)));
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The `/metrics` response with `text` (from [`Self::encode`]): OpenMetrics when the
    /// scraper asks for it (Prometheus does), otherwise labelled as the classic Prometheus
    /// text format, which this text also parses as.
    pub fn response(headers: &axum::http::HeaderMap, text: String) -> Response {
        let wants_openmetrics = headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/openmetrics-text"));
        let content_type = if wants_openmetrics {
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        } else {
            "text/plain; version=0.0.4; charset=utf-8"
        };
        ([("content-type", content_type)], text).into_response()
    }
}

impl Metrics {
    /// The request metrics of one route pattern, to keep and record into (`crate::http`
    /// keeps one per route).
    pub fn route(&self, route: String) -> RouteMetrics {
        let latency = self.latency.get_or_create(&RouteLabels { route: route.clone() }).clone();
        RouteMetrics { route, latency, requests: self.requests.clone(), counters: RwLock::default() }
    }
}

/// One route's handles into the request metrics. Recording through them skips hashing the
/// labels into the families (and copying the route's name) on every request: two SipHash
/// lookups and an allocation, about 700 instructions of a `/healthcheck` (callgrind).
pub struct RouteMetrics {
    route: String,
    latency: Histogram,
    requests: Family<RequestLabels, Counter>,
    /// The (method, status) pairs this route answered, with their counters.
    counters: RwLock<Vec<((&'static str, u16), Counter)>>,
}

/// More pairs than a route answers (made-up methods all count as `_OTHER`); past it, the
/// family is asked each time.
const KEPT_COUNTERS: usize = 32;

impl RouteMetrics {
    pub fn route(&self) -> &str {
        &self.route
    }

    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
        let key = (method_label(method), status.as_u16());
        let kept = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = kept.iter().find(|(k, _)| *k == key) {
            counter.inc();
            return;
        }
        drop(kept);
        let labels = RequestLabels { route: self.route.clone(), method: Cow::Borrowed(key.0), status: key.1 };
        let counter = self.requests.get_or_create(&labels).clone();
        counter.inc();
        let mut kept = self.counters.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEPT_COUNTERS && !kept.iter().any(|(k, _)| *k == key) {
            kept.push((key, counter));
        }
    }
}

/// A method as a label: the nine of RFC 9110 by name, any other as `_OTHER` (as
/// OpenTelemetry does), so that made-up methods cannot make new label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_format() {
        let m = Metrics::mfa();
        m.verification(Verification::Valid);
        m.verification(Verification::Valid);
        m.lockout();
        m.set_pool(4, 3);
        let text = m.encode();
        assert!(text.contains("mfa_verifications_total{outcome=\"valid\"} 2"), "{text}");
        assert!(text.contains("mfa_lockouts_total 1"));
        assert!(text.contains("mfa_db_pool_connections{state=\"active\"} 1"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!Metrics::notifier().encode().contains("mfa_lockouts"));
    }

    #[test]
    fn every_verification_outcome_is_counted_from_zero_and_apart() {
        let m = Metrics::mfa();
        assert!(m.encode().contains("mfa_verifications_total{outcome=\"locked\"} 0"));
        for (times, outcome) in Verification::ALL.into_iter().enumerate() {
            for _ in 0..=times {
                m.verification(outcome);
            }
        }
        let text = m.encode();
        for (times, outcome) in Verification::ALL.into_iter().enumerate() {
            let line = format!("mfa_verifications_total{{outcome=\"{}\"}} {}", outcome.label(), times + 1);
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn a_routes_kept_handles_count_as_the_families_would() {
        let m = Metrics::mfa();
        let route = m.route("/verify".into());
        // More (method, status) pairs than a route keeps handles for: the rest go through
        // the family each time, into the same series.
        for status in 200..250u16 {
            for _ in 0..3 {
                route.record(&Method::POST, StatusCode::from_u16(status).unwrap(), Duration::from_micros(50));
            }
        }
        m.route("/verify".into()).record(&Method::POST, StatusCode::OK, Duration::from_micros(50));
        let text = m.encode();
        assert!(text.contains(r#"http_requests_total{route="/verify",method="POST",status="200"} 4"#), "{text}");
        assert!(text.contains(r#"http_requests_total{route="/verify",method="POST",status="249"} 3"#), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_count{route="/verify"} 151"#), "{text}");
    }

    #[test]
    fn threads_that_meet_new_pairs_at_once_lose_no_count() {
        let m = Metrics::mfa();
        let route = m.route("/verify".into());
        std::thread::scope(|threads| {
            for _ in 0..4 {
                threads.spawn(|| {
                    for i in 0..2_000u16 {
                        route.record(
                            &Method::POST,
                            StatusCode::from_u16(200 + i % 40).unwrap(),
                            Duration::from_micros(5),
                        );
                    }
                });
            }
        });
        let text = m.encode();
        for status in 200..240 {
            let line = format!(r#"http_requests_total{{route="/verify",method="POST",status="{status}"}} 200"#);
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn made_up_methods_and_paths_share_one_label_each() {
        let m = Metrics::mfa();
        for i in 0..1000 {
            let method = Method::from_bytes(format!("X{i:06}AAAA").as_bytes()).unwrap();
            m.route("unmatched".into()).record(&method, StatusCode::NOT_FOUND, Duration::from_micros(5));
        }
        let text = m.encode();
        assert!(text.contains("method=\"_OTHER\",status=\"404\"} 1000"), "{text}");
        assert!(!text.contains("X000"), "{text}");
    }
}
