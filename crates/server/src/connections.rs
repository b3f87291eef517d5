//! The accept loop: HTTP/1.1 connections with a cap on how many are open, deadlines while a
//! connection sends nothing useful, and a graceful drain with a deadline. axum's own `serve`
//! has none of these bounds, and an idle or trickling client must not hold a socket (or a file
//! descriptor) forever.
//!
//! Each connection has a watchdog that knows its phase: waiting for a request head (from the
//! accept, or from the first byte after an idle spell), busy with requests (from the moment a
//! head is complete until the last response body is sent or dropped), or idle between
//! requests. A head must be complete within `header_timeout`; an idle keep-alive connection
//! is closed after `idle_timeout`. Generation time is never cut: a busy connection has no
//! deadline here (its body has its own, in `guard::read_body`). In any phase, a client that
//! stops reading what it is sent (a write that cannot proceed for `write_timeout`) is cut off,
//! so a stalled reader cannot keep a connection, nor the generation behind it, forever.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::ServerConfig;

/// How often each connection's watchdog looks at its phase.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Accepts until `shutdown` resolves, then drains open connections for at most
/// `config.shutdown_timeout` and closes whatever remains.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    let deadlines = Deadlines {
        header: config.header_timeout,
        idle: config.idle_timeout,
        write: config.write_timeout,
    };
    let mut open = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while open.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // keep serving the connections we have and try again shortly.
                    tracing::warn!(%err, "accept error");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let app = app.clone();
            let activity = Arc::clone(&activity);
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = activity.begin_request();
                let app = app.clone();
                async move {
                    let response = app.oneshot(request.map(Body::new)).await?;
                    Ok::<_, Infallible>(response.map(|body| Body::new(TrackedBody { body, busy })))
                }
            })
        };
        let connection = graceful.watch(http.serve_connection(io, service));
        open.spawn(async move {
            tokio::pin!(connection);
            let mut watch = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tokio::select! {
                    result = &mut connection => {
                        if let Err(err) = result {
                            tracing::debug!(%err, "connection ended with an error");
                        }
                        break;
                    }
                    _ = watch.tick() => {
                        if let Some(reason) = activity.overdue(deadlines) {
                            tracing::debug!(reason, "closing a connection");
                            break;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!(
                timeout_secs = config.shutdown_timeout.as_secs(),
                "drain deadline passed; closing the remaining connections"
            );
        }
    }
    // Dropping a connection's task closes its socket and cancels its generation.
    open.shutdown().await;
}

#[derive(Clone, Copy)]
struct Deadlines {
    header: Duration,
    idle: Duration,
    write: Duration,
}

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head { since: Instant },
    /// Requests whose responses are not yet sent.
    Busy { requests: usize },
    /// Between requests, with nothing received.
    Idle { since: Instant },
}

/// One connection's phase, shared by its socket, its service and its watchdog.
struct Activity {
    phase: Mutex<Phase>,
    /// Since when the socket has refused to take more bytes (the client stopped reading).
    write_stalled: Mutex<Option<Instant>>,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            write_stalled: Mutex::new(None),
        }
    }

    /// A write could not proceed (`Pending`) or did (anything else).
    fn wrote(&self, stalled: bool) {
        let mut since = self
            .write_stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (stalled, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn received(&self) {
        self.update(|phase| match phase {
            Phase::Idle { .. } => Phase::Head {
                since: Instant::now(),
            },
            other => other,
        });
    }

    /// A head is complete; the returned guard ends the request when dropped.
    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.update(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
        BusyGuard(Arc::clone(self))
    }

    fn end_request(&self) {
        self.update(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }

    fn overdue(&self, deadlines: Deadlines) -> Option<&'static str> {
        let stalled = *self
            .write_stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if stalled.is_some_and(|since| since.elapsed() > deadlines.write) {
            return Some("the client stopped reading");
        }
        let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Phase::Head { since } if since.elapsed() > deadlines.header => {
                Some("request head not received in time")
            }
            Phase::Idle { since } if since.elapsed() > deadlines.idle => {
                Some("idle keep-alive timeout")
            }
            _ => None,
        }
    }
}

/// Held by a request from its head to the end of its response body.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A response body that ends its request's busy phase when it is finished or dropped.
struct TrackedBody {
    body: Body,
    busy: BusyGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let _ = &self.busy;
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, reporting received bytes to the connection's [`Activity`].
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
