//! Serving a router: the accept loop, with the connection cap and timeouts that
//! `axum::serve` does not have, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::Extensions;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use super::deadlines::{Activity, DeadlineBody};
use crate::config::HttpLimits;

/// Largest request head (request line and headers) a client may send; beyond it, 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields in one request; beyond it, 431 (hyper's default, stated here).
pub const MAX_HEADERS: usize = 100;

tokio::task_local! {
    /// The TCP peer of the connection being served, for [`peer_addr`]. A task-local, not
    /// axum's `ConnectInfo` in each request's extensions: inserting it there cost every
    /// request a boxed value and a larger extension map (docs/BENCHMARKS.md, finding 29).
    /// hyper's HTTP/1 server polls a request's service future on its connection's task, so
    /// every handler and layer sees its own connection's peer.
    static PEER: SocketAddr;
}

/// The TCP peer of the request being served: its connection's, or, for a request given to
/// a router directly rather than over a connection (the tests), a `ConnectInfo` extension.
pub fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    PEER.try_with(|peer| *peer).ok().or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
}

/// A router and the listener it will be served on, already bound (so port 0 has become a
/// real port before anything runs).
pub struct BoundRouter {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
}

impl BoundRouter {
    /// Binds `addr` (port 0 picks a free port), with the default [`HttpLimits`].
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, router, limits: HttpLimits::default() })
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

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    ///
    /// This is `axum::serve` written out, because axum sets neither a header read timeout
    /// nor a connection cap: each connection is served by hyper's HTTP/1 server with a
    /// bounded head size, is closed when it has waited `header_timeout` for a complete
    /// request head (which also closes idle keep-alive connections), holds one permit of a
    /// semaphore of `max_connections` (at the cap nothing is accepted; the kernel's backlog
    /// holds new connections), and every request body has a deadline (a total, not a
    /// per-chunk, timeout). The two timeouts are `crate::http::deadlines`', not hyper's and
    /// tower-http's, which cost a timer per request.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, router, limits } = self;
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
            let connection = serve_connection(stream, peer, router.clone(), limits, permit, stopped.clone());
            connections.spawn(PEER.scope(peer, connection));
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        let _ = stop.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
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

/// What `SO_SNDBUF` is set to on each accepted connection (see `serve_connection`).
const SEND_BUFFER_BYTES: usize = 32 * 1024;

/// One connection, until the client closes it, a timeout closes it, or shutdown (then the
/// request in flight is finished and the connection closed).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    _permit: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let (started, answered) = (activity.clone(), activity.clone());
    let body_timeout = limits.body_timeout;
    let service = router
        .map_request(move |request: Request<hyper::body::Incoming>| {
            started.busy();
            request.map(|body| DeadlineBody::new(body, body_timeout))
        })
        .map_response(move |response| {
            answered.idle();
            response
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer for hyper: its header timeout would make one for every request (the connection's
    // own, below, replaces it), and without a timer its default of 30 s must be turned off.
    builder.header_read_timeout(None).max_header_size(MAX_HEADER_BYTES).max_headers(MAX_HEADERS);
    // A write that makes no progress for `write_timeout` (a client that stopped reading its
    // responses) fails, and the connection with it: hyper has no such timeout. Until the
    // socket's send buffer is full, though, writes make progress: with Linux's default
    // (up to 4 MiB on loopback) a client that pipelines slow requests (each a database
    // query) and reads nothing held its slot for over 10 s on PostgreSQL. 64 KiB (the
    // kernel doubles what is asked) holds hundreds of our responses, enough for any
    // client that reads, and fills in well under a second for one that does not.
    if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!(client = %peer, error = %e, "cannot set the send buffer size");
    }
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_timeout));
    let connection = builder.serve_connection(TokioIo::new(Box::pin(stream)), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let stop = async move {
        // An error means the server is gone, which also means stop.
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    // The connection's one timer: when it rings, the connection has waited `header_timeout`
    // for a request head since it opened or since its last answer, or it is put off to when
    // it will have. It keeps ringing during shutdown, which a connection still sending its
    // head would otherwise hold up.
    let header_timeout = limits.header_timeout;
    let timer = tokio::time::sleep(header_timeout);
    let mut timer = std::pin::pin!(timer);
    let watch = Arc::new(Watch::default());
    let watch_waker = Waker::from(watch.clone());
    let outcome = loop {
        // The connection first, then the timer and the stop, but those two only when one of
        // them woke the task: `tokio::select!` polled both at every wake-up of the
        // connection, a few times a request (about 420 instructions of each, callgrind;
        // docs/BENCHMARKS.md, finding 34). They are polled with `watch_waker`, which marks
        // them woken before it wakes the task.
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(outcome) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Closed(outcome));
            }
            watch.task.register(cx.waker());
            if watch.woken.swap(false, Ordering::AcqRel) {
                let mut own = Context::from_waker(&watch_waker);
                if !stopping && stop.as_mut().poll(&mut own).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                if timer.as_mut().poll(&mut own).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Closed(outcome) => break outcome,
            Event::Stop => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            Event::Timer => {
                let now = Instant::now();
                match activity.idle_for(now.into_std()) {
                    Some(idle) if idle >= header_timeout => {
                        tracing::debug!(client = %peer, "closed a connection that sent no complete request head in time");
                        return;
                    }
                    Some(idle) => timer.as_mut().reset(now + (header_timeout - idle)),
                    None => timer.as_mut().reset(now + header_timeout),
                }
            }
        }
        // What just happened is looked at again at once: the connection after a graceful
        // shutdown, and a timer that was reset registers itself when it is next polled.
        watch.woken.store(true, Ordering::Release);
    };
    if let Err(e) = outcome {
        tracing::debug!(client = %peer, error = %e, "connection closed with an error");
    }
}

/// What woke a connection's loop.
enum Event<T> {
    Closed(T),
    Stop,
    Timer,
}

/// Whether a connection's timer or stop has woken its task since they were last polled.
struct Watch {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for Watch {
    /// Woken: the first poll registers them.
    fn default() -> Self {
        Self { woken: AtomicBool::new(true), task: AtomicWaker::new() }
    }
}

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    // A signal that cannot be listened for never arrives: serving must not stop for it.
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
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
