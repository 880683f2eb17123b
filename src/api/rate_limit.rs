//! `RATE_LIMIT` per client IP, in process memory (GCRA through `governor`).
//!
//! Flask-Limiter counts in fixed windows; GCRA spreads the same quota evenly instead: with
//! `200 per day` a client gets a burst of 200, then one request every 432 s, and never the
//! 400-requests-across-a-window-boundary burst of a fixed window. Each limit of a
//! `RATE_LIMIT` list must allow the request.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::config::RateLimit;
use crate::http::client_network;

pub struct IpRateLimiter {
    limiters: Vec<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl IpRateLimiter {
    pub fn new(limits: &[RateLimit]) -> Self {
        let limiters = limits
            .iter()
            .filter_map(|limit| {
                let count = NonZeroU32::new(limit.count)?;
                let interval = (limit.per / limit.count).max(Duration::from_nanos(1));
                Some(RateLimiter::keyed(Quota::with_period(interval)?.allow_burst(count)))
            })
            .collect();
        Self { limiters, clock: DefaultClock::default() }
    }

    /// `Err(seconds)` until the client may try again.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let key = client_network(ip);
        let mut wait = Duration::ZERO;
        for limiter in &self.limiters {
            if let Err(not_until) = limiter.check_key(&key) {
                wait = wait.max(not_until.wait_time_from(self.clock.now()));
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait.as_secs_f64().ceil().max(1.0) as u64) }
    }

    /// Forgets clients whose quota has fully refilled, so the map does not grow forever.
    pub fn prune(&self) {
        for limiter in &self.limiters {
            limiter.retain_recent();
        }
    }

    /// Prunes every minute for as long as the limiter lives.
    pub fn spawn_pruner(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limiter) => limiter.prune(),
                    None => break,
                }
            }
        });
    }
}

/// Charges a request from `ip` to its quota; the refusal (429) when the quota is spent.
pub fn check(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    state.limiter.check(ip).map_err(|retry_after| {
        tracing::info!(event = "rate_limited", client_ip = %ip, retry_after);
        state.verify.metrics().rate_limited();
        ApiError::RateLimited { retry_after }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ip_has_its_own_quota_and_every_limit_applies() {
        let limits = crate::config::rate_limit::parse_rate_limits("3 per minute; 100 per day").unwrap();
        let limiter = IpRateLimiter::new(&limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(limiter.check(b).is_ok());
    }

    proptest::proptest! {
        /// Whatever `RATE_LIMIT` parses to lets a new client's first request through.
        #[test]
        fn any_limit_lets_a_new_clients_first_request_through(
            raw in proptest::prop_oneof![crate::strategies::any_text(), "[0-9a-z /;,|]{0,30}"]
        ) {
            if let Ok(limits) = crate::config::rate_limit::parse_rate_limits(&raw) {
                let limiter = IpRateLimiter::new(&limits);
                proptest::prop_assert_eq!(limiter.check(IpAddr::from([127, 0, 0, 1])), Ok(()));
            }
        }
    }

    #[test]
    fn an_ipv6_network_shares_one_quota() {
        let limits = crate::config::rate_limit::parse_rate_limits("2 per minute").unwrap();
        let limiter = IpRateLimiter::new(&limits);
        let host = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, n, n, n, n]);
        assert!(limiter.check(host(1)).is_ok() && limiter.check(host(2)).is_ok());
        assert!(limiter.check(host(3)).is_err(), "another address of the same /64");
        assert!(limiter.check(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])).is_ok(), "another /64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_network(mapped), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn no_limits_means_no_limit() {
        let limiter = IpRateLimiter::new(&[]);
        for _ in 0..1000 {
            assert!(limiter.check("192.0.2.1".parse().unwrap()).is_ok());
        }
    }
}
