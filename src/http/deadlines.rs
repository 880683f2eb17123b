//! A connection's header and body timeouts, without a timer for every request.
//!
//! hyper's `header_read_timeout` makes a new timer (a boxed `Sleep`, entered in tokio's
//! timer wheel and taken out again) each time it starts reading a request head, and
//! tower-http's `RequestBodyDeadline` made one for every request's body. With both off,
//! the bare ceiling's POST went from 100.5k to 116.0k req/s, as fast as `axum::serve`
//! (docs/BENCHMARKS.md, finding 28). So here a connection has one timer for its whole life,
//! which looks at [`Activity`] when it fires, and a body's timer is made only when the body
//! has to be waited for.

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Whether a connection has a request in the service, and since when it has not: what its
/// header timeout counts from (the connection's opening, or the end of its last request).
pub(super) struct Activity {
    opened: Instant,
    /// Nanoseconds from `opened` to the end of the last request; [`BUSY`] while one is in
    /// the service. An atomic only because the service that shares it must be `Send`: it
    /// is written and read on the connection's own task, so `Relaxed` is enough.
    idle_since: AtomicU64,
}

const BUSY: u64 = u64::MAX;

impl Activity {
    pub(super) fn new() -> Self {
        Self { opened: Instant::now(), idle_since: AtomicU64::new(0) }
    }

    /// A request head has been read and goes to the service.
    pub(super) fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// The service has answered; the next head is waited for from now.
    pub(super) fn idle(&self) {
        let since = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(BUSY - 1);
        self.idle_since.store(since, Ordering::Relaxed);
    }

    /// How long the connection has waited for a request head at `now`; `None` while a
    /// request is in the service (its body and its answer have timeouts of their own).
    pub(super) fn idle_for(&self, now: Instant) -> Option<Duration> {
        match self.idle_since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(now.saturating_duration_since(self.opened + Duration::from_nanos(since))),
        }
    }
}

/// The error of a body that did not arrive whole within `HTTP_BODY_TIMEOUT_SECONDS` of its
/// request's head (answered with 408).
#[derive(Debug)]
pub(super) struct BodyTooSlow;

impl fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl Error for BodyTooSlow {}

pin_project_lite::pin_project! {
    /// A request body that must arrive whole within a timeout of its head. Its timer is made
    /// the first time a frame has to be waited for, and the timeout counts from then: the
    /// service polls the body as soon as the head has been read, so that is microseconds
    /// after it, and a body that came with its head (nearly every one) costs neither a timer
    /// nor a reading of the clock.
    pub(super) struct DeadlineBody<B> {
        #[pin]
        body: B,
        // `None` for a body that is already complete (empty): nothing to wait for.
        timeout: Option<Duration>,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<B: Body> DeadlineBody<B> {
    /// `body`, which must arrive whole within `timeout` (its head has just been read).
    pub(super) fn new(body: B, timeout: Duration) -> Self {
        let timeout = (!body.is_end_stream()).then_some(timeout);
        Self { body, timeout, timer: None }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let mut this = self.project();
        // Once armed, the deadline is looked at first: a body that keeps trickling in is cut
        // off when it passes.
        if let Some(timer) = this.timer.as_mut().as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
        }
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let Some(timeout) = *this.timeout else { return Poll::Pending };
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(timeout)));
        }
        if let Some(timer) = this.timer.as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    use super::*;

    #[test]
    fn a_connection_is_idle_from_its_opening_busy_during_a_request_and_idle_again_after_it() {
        let activity = Activity::new();
        let later = activity.opened + Duration::from_secs(3);
        assert_eq!(activity.idle_for(later), Some(Duration::from_secs(3)));
        activity.busy();
        assert_eq!(activity.idle_for(later), None);
        activity.idle();
        let idle = activity.idle_for(Instant::now() + Duration::from_secs(1)).unwrap();
        assert!((Duration::from_secs(1)..Duration::from_secs(2)).contains(&idle), "{idle:?}");
        assert_eq!(activity.idle_for(activity.opened), Some(Duration::ZERO), "never negative");
    }

    #[tokio::test]
    async fn a_body_that_came_whole_has_no_timer_and_an_empty_one_no_deadline() {
        let mut whole = std::pin::pin!(DeadlineBody::new(Full::new(Bytes::from_static(b"{}")), Duration::from_secs(1)));
        assert!(whole.timeout.is_some());
        let frame = whole.as_mut().frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"{}"));
        assert!(whole.timer.is_none(), "a body that never had to be waited for made no timer");
        assert!(DeadlineBody::new(Empty::<Bytes>::new(), Duration::from_secs(1)).timeout.is_none());
    }

    /// A body whose first frame came with its head and whose rest never comes.
    struct Stalled {
        sent: bool,
    }

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.sent, true) {
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"user")))))
        }
    }

    #[tokio::test]
    async fn a_body_still_arriving_at_its_deadline_fails_with_body_too_slow() {
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let body = DeadlineBody::new(Stalled { sent: false }, timeout);

        let read = tokio::time::timeout(Duration::from_secs(10), body.collect()).await.expect("it never failed");

        let error = read.expect_err("the body never ended: it must fail");
        assert!(error.is::<BodyTooSlow>(), "{error}");
        let took = started.elapsed();
        assert!((timeout..timeout * 5).contains(&took), "at the deadline, not before: {took:?}");
    }
}
