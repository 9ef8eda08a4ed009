//! Graceful shutdown: the signal, and a count of in-flight requests to wait for.
//!
//! Waiting for every connection to close is not enough for MCP: a legacy client keeps a GET
//! event stream open for as long as its session lives, so the server would always run into
//! its deadline. Instead we count requests that are being answered (their response body
//! included, since a tool result on a POST may arrive as an event stream) and wait for that
//! count to reach zero; only then are MCP sessions and their idle streams closed.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Waits for SIGINT or SIGTERM and returns its name.
pub async fn signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                name = ctrl_c => name,
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await
}

/// Shared count of requests being answered.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    state: Arc<InFlightState>,
}

#[derive(Debug, Default)]
struct InFlightState {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `deadline` passes; returns how many are left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.state.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.count()
    }

    fn enter(&self) -> Guard {
        self.state.count.fetch_add(1, Ordering::AcqRel);
        Guard {
            state: self.state.clone(),
        }
    }
}

/// Decrements the count when the request's response body is finished or dropped.
#[derive(Debug)]
struct Guard {
    state: Arc<InFlightState>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.state.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.idle.notify_waiters();
        }
    }
}

/// axum middleware: counts every request but a GET on the MCP endpoint (the long-lived
/// server-to-client event stream of a legacy session, which has nothing to finish).
pub async fn track(
    axum::extract::State(in_flight): axum::extract::State<InFlight>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response<axum::body::Body> {
    if request.method() == Method::GET && request.uri().path().starts_with("/mcp") {
        return next.run(request).await;
    }
    let guard = in_flight.enter();
    let response = next.run(request).await;
    response.map(|body| {
        axum::body::Body::new(Tracked {
            body,
            _guard: guard,
        })
    })
}

pin_project_lite::pin_project! {
    struct Tracked {
        #[pin]
        body: axum::body::Body,
        _guard: Guard,
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
