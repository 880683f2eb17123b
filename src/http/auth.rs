//! Bearer-token checks, and the count of failed ones: a client address that keeps
//! presenting wrong tokens (`MFA_API_KEYS`, `ADMIN_TOKEN`, `NOTIFY_API_TOKEN`) is refused
//! with 429 for a while, whatever it sends, so tokens cannot be guessed at line rate.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Sensitive;

/// Failed checks a client network may make at once ...
pub const AUTH_FAILURE_BURST: u32 = 10;
/// ... then one more every this long (10 a minute).
pub const AUTH_FAILURE_PERIOD: Duration = Duration::from_secs(6);

/// Why a request did not pass a token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No token, or a wrong one: 401.
    Unauthorized,
    /// Too many wrong tokens from this client network: 429, for this many seconds. A right
    /// token is refused too meanwhile, so that the answer tells a guesser nothing.
    TooManyFailures { retry_after: u64 },
}

/// The key a client is counted under: its IPv4 address, or the /64 network of its IPv6
/// address. One IPv6 host is usually given a whole /64, so keying on the address would give
/// it 2^64 quotas (and every map keyed by it an entry for each).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// Failed token checks per client network.
pub struct AuthFailures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Networks past their allowance, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    failures: AtomicUsize,
}

impl Default for AuthFailures {
    fn default() -> Self {
        let burst = NonZeroU32::new(AUTH_FAILURE_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(AUTH_FAILURE_PERIOD).map_or(Quota::per_minute(burst), |q| q.allow_burst(burst));
        Self { limiter: RateLimiter::keyed(quota), blocked: Mutex::default(), failures: AtomicUsize::new(0) }
    }
}

impl AuthFailures {
    /// Whether the request from `ip` carries one of `tokens`, and may be checked at all. A
    /// request with no token at all guesses nothing: 401, never counted.
    pub fn check(&self, ip: IpAddr, headers: &HeaderMap, tokens: &[Sensitive]) -> Result<(), AuthRefusal> {
        if presented(headers).is_none() {
            return Err(AuthRefusal::Unauthorized);
        }
        let network = client_network(ip);
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = blocked.get(&network).copied() {
            if until > now {
                return Err(AuthRefusal::TooManyFailures { retry_after: seconds(until - now) });
            }
            blocked.remove(&network);
        }
        drop(blocked);
        if has_bearer(headers, tokens) {
            return Ok(());
        }
        Err(self.failed(network, now))
    }

    fn failed(&self, network: IpAddr, now: Instant) -> AuthRefusal {
        let mut blocked = self.blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: forget what has expired now and then.
        if self.failures.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            blocked.retain(|_, until| *until > now);
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&network) {
            Ok(()) => AuthRefusal::Unauthorized,
            Err(not_until) => {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                let wait = wait.max(AUTH_FAILURE_PERIOD);
                blocked.insert(network, now + wait);
                AuthRefusal::TooManyFailures { retry_after: seconds(wait) }
            }
        }
    }
}

fn seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// Whether the request carries `Authorization: Bearer <one of tokens>`. Every token is
/// compared in constant time, and all of them are compared, so timing tells nothing about
/// which one came close.
pub fn has_bearer(headers: &HeaderMap, tokens: &[Sensitive]) -> bool {
    use subtle::ConstantTimeEq;
    let presented = presented(headers).unwrap_or("").as_bytes();
    tokens.iter().fold(subtle::Choice::from(0), |found, t| found | presented.ct_eq(t.expose().as_bytes())).into()
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn wrong_tokens_are_limited_per_network_and_then_even_a_right_one_waits() {
        let failures = AuthFailures::default();
        let tokens = [Sensitive::new("the-right-token-0123456789".into())];
        let guesser: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..AUTH_FAILURE_BURST {
            assert_eq!(failures.check(guesser, &bearer("guess"), &tokens), Err(AuthRefusal::Unauthorized));
        }
        let next = failures.check("2001:db8::2".parse().unwrap(), &bearer("guess"), &tokens);
        assert!(matches!(next, Err(AuthRefusal::TooManyFailures { retry_after: 1.. })), "{next:?}");
        let right = failures.check(guesser, &bearer("the-right-token-0123456789"), &tokens);
        assert!(matches!(right, Err(AuthRefusal::TooManyFailures { .. })), "the answer must not tell: {right:?}");
        assert_eq!(failures.check(guesser, &HeaderMap::new(), &tokens), Err(AuthRefusal::Unauthorized), "no token");
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(failures.check(other, &bearer("the-right-token-0123456789"), &tokens), Ok(()));
    }
}
