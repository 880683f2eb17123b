//! Retries with exponential backoff and jitter, each attempt bounded by its own timeout.
//!
//! The bound matters more than the retries: a client waiting for a code must get an answer
//! in a stated time. Worst case for one delivery:
//! `(max_retries + 1) * attempt_timeout + base * (2^max_retries - 1) * 1.5` (+ any
//! `retry_after` a server asked for, itself capped), which is 40 s + 5.25 s with the defaults.
//! Transport libraries' own timeouts do not bound a server that accepts a connection and
//! then never answers, so the whole attempt is wrapped in `tokio::time::timeout`.

use std::future::Future;
use std::time::Duration;

use super::{DeliveryError, FailureKind, Why};
use crate::config::{EmailSettings, TelegramSettings};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub attempt_timeout: Duration,
    /// A server's `retry_after` longer than this is not waited out: the delivery fails.
    pub retry_after_max: Duration,
}

impl RetryPolicy {
    /// SMTP servers do not tell when to come back, so only backoff applies.
    pub fn for_email(settings: &EmailSettings, base: Duration) -> Self {
        Self {
            max_retries: settings.max_retries,
            base,
            attempt_timeout: settings.timeout,
            retry_after_max: Duration::ZERO,
        }
    }

    pub fn for_telegram(settings: &TelegramSettings, base: Duration) -> Self {
        Self {
            max_retries: settings.max_retries,
            base,
            attempt_timeout: settings.timeout,
            retry_after_max: settings.retry_after_max,
        }
    }

    /// The longest one delivery can take, for documentation and the client's timeout.
    pub fn worst_case(&self) -> Duration {
        let attempts = self.max_retries + 1;
        let backoff = self.base.mul_f64(f64::from(2u32.saturating_pow(self.max_retries).saturating_sub(1)) * 1.5);
        self.attempt_timeout * attempts + backoff + self.retry_after_max * self.max_retries
    }

    /// Delay before retry number `retry` (1-based): `base * 2^(retry-1)`, scaled by a random
    /// factor in [0.5, 1.5) so that many clients do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        exp.mul_f64(0.5 + rand::random::<f64>())
    }
}

/// How one attempt failed.
#[derive(Debug, Clone)]
pub enum AttemptError {
    Transient {
        why: Why,
        retry_after: Option<Duration>,
    },
    Permanent {
        why: Why,
    },
    /// The recipient was refused: no retry, and the caller's input to fix.
    Rejected {
        why: Why,
    },
}

impl AttemptError {
    pub fn transient(why: Why) -> Self {
        Self::Transient { why, retry_after: None }
    }

    pub fn permanent(why: Why) -> Self {
        Self::Permanent { why }
    }

    pub fn rejected(why: Why) -> Self {
        Self::Rejected { why }
    }

    /// Why, whichever way it failed.
    pub fn why(self) -> Why {
        match self {
            Self::Transient { why, .. } | Self::Permanent { why } | Self::Rejected { why } => why,
        }
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or the retries run out.
/// `Ok` is the number of attempts made.
pub async fn with_retries<F, Fut>(policy: RetryPolicy, mut attempt: F) -> Result<u32, DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AttemptError>>,
{
    let mut last = Why::plain("");
    for n in 1..=policy.max_retries + 1 {
        let wait = match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
            Ok(Ok(())) => return Ok(n),
            Ok(Err(AttemptError::Permanent { why })) => {
                return Err(DeliveryError { kind: FailureKind::Permanent, why, attempts: n });
            }
            Ok(Err(AttemptError::Rejected { why })) => {
                return Err(DeliveryError { kind: FailureKind::Rejected, why, attempts: n });
            }
            Ok(Err(AttemptError::Transient { why, retry_after })) => {
                if let Some(asked) = retry_after
                    && asked > policy.retry_after_max
                {
                    let why =
                        why.and(&format!("; the server asked to wait {} s, longer than allowed", asked.as_secs()));
                    return Err(DeliveryError { kind: FailureKind::Transient, why, attempts: n });
                }
                last = why;
                retry_after.unwrap_or_else(|| policy.backoff(n))
            }
            Err(_) => {
                last = Why::plain(format!("no answer within {:.1} s", policy.attempt_timeout.as_secs_f64()));
                policy.backoff(n)
            }
        };
        if n <= policy.max_retries {
            tracing::debug!(attempt = n, wait_ms = wait.as_millis() as u64, reason = %last.log, "delivery attempt failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
    Err(DeliveryError { kind: FailureKind::Transient, why: last, attempts: policy.max_retries + 1 })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(1),
            attempt_timeout: Duration::from_millis(200),
            retry_after_max: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = with_retries(policy(3), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(AttemptError::transient(Why::plain("451")))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test]
    async fn permanent_failures_stop_at_once() {
        let err = with_retries(policy(3), || async { Err(AttemptError::permanent(Why::plain("550 no such user"))) })
            .await
            .unwrap_err();
        assert_eq!((err.kind, err.attempts, err.why.log.as_str()), (FailureKind::Permanent, 1, "550 no such user"));
    }

    #[tokio::test]
    async fn retries_run_out_with_the_last_reason() {
        let err = with_retries(policy(2), || async { Err(AttemptError::transient(Why::plain("refused"))) })
            .await
            .unwrap_err();
        assert_eq!((err.kind, err.attempts, err.why.log.as_str()), (FailureKind::Transient, 3, "refused"));
    }

    #[tokio::test]
    async fn a_hung_attempt_times_out() {
        let started = tokio::time::Instant::now();
        let err = with_retries(policy(1), std::future::pending::<Result<(), AttemptError>>).await.unwrap_err();
        assert_eq!(err.attempts, 2);
        assert!(err.why.public.contains("no answer within"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_overlong_retry_after_fails_without_waiting() {
        let err = with_retries(policy(3), || async {
            Err(AttemptError::Transient { why: Why::plain("429"), retry_after: Some(Duration::from_secs(60)) })
        })
        .await
        .unwrap_err();
        assert_eq!(err.attempts, 1);
        assert!(err.why.public.contains("wait 60 s"));
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds() {
        let p = RetryPolicy { base: Duration::from_millis(100), ..policy(3) };
        for retry in 1..=4u32 {
            let d = p.backoff(retry).as_millis();
            let nominal = 100u128 << (retry - 1);
            assert!(d >= nominal / 2 && d < nominal * 3 / 2, "retry {retry}: {d} ms");
        }
    }
}
