//! The HTTP connections, with bounds a slow or hostile client cannot stretch: at most
//! `max_connections` open at once (one more is closed at accept), request headers within
//! `header_timeout` and `max_header_bytes` (hyper answers 431 past the size, closes past the
//! time), and a request body that must keep arriving (`TimedBody`: a body that stalls for
//! `body_timeout` ends the request with 408). Ctrl-C stops accepting and lets open
//! connections finish their request.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections refused because `max_connections` were open.
pub static REFUSED_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Serve `app` on `listener` until Ctrl-C.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                // Out of file descriptors and the like: wait a little instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut ctrl_c => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            REFUSED_CONNECTIONS.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_headers(limits.max_headers)
                .max_header_size(limits.max_header_bytes);
            let conn = b.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Let the open connections finish their request, for a while.
    let all = limits.max_connections as u32;
    let _ = tokio::time::timeout(Duration::from_secs(5), open.acquire_many(all)).await;
    Ok(())
}

/// Middleware: the request body as a [`TimedBody`].
pub async fn timed_body(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    next.run(req.map(|b| Body::new(TimedBody::new(b, timeout))))
        .await
}

/// A request body that fails when no data comes for `timeout`.
pub struct TimedBody {
    inner: Body,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    pub fn new(inner: Body, timeout: Duration) -> TimedBody {
        TimedBody {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// How a stalled body's error begins (`routes::body` answers it with 408).
pub const STALLED: &str = "the request body stalled";

/// Why a [`TimedBody`] ended.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{STALLED}: nothing arrived for {} s", self.0.as_secs())
    }
}

impl std::error::Error for BodyTimeout {}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
