//! The accept loop: HTTP/1.1 connections with limits on the request head, so that a client
//! that is slow to send its headers, or sends too many, costs a bounded amount.
//!
//! axum's `serve` does not expose hyper's connection settings, hence this small loop; it also
//! stops accepting and drains connections gracefully, like `serve` does.

use std::{io, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_bulwark::metrics::ServerMetrics;
use tracing::debug;

/// Limits on what a connection may send before its request is handled.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Time allowed to send a whole request head; a slower client is disconnected.
    pub read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    pub max_bytes: usize,
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and waits for
/// every open connection to finish (idle keep-alive connections close at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HeadLimits,
    connections: Option<ServerMetrics>,
    stop: CancellationToken,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        // hyper refuses a smaller buffer than 8 KiB.
        .max_buf_size(limits.max_bytes.max(8192));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    debug!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        // Counts the connection in `http_active_connections` for as long as it is open.
        let guard = connections.as_ref().map(ServerMetrics::connection_guard);
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(err) = connection.await {
                debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
