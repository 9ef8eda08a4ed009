//! The inbound side: the HTTP application that serves MCP at `/mcp` and the health checks.

use std::net::{IpAddr, SocketAddr};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_bulwark::request_id::RequestIdLayer;

use crate::{client::BackendClient, mcp::Taskman, shutdown::InFlight};

#[derive(Clone)]
struct AppState {
    client: BackendClient,
}

/// Builds the application. `mcp_sessions` ends every MCP session and stream when cancelled.
pub fn app(
    client: BackendClient,
    bind: SocketAddr,
    mcp_sessions: CancellationToken,
    in_flight: InFlight,
) -> Router {
    let handler = Taskman::new(client.clone());
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(mcp_sessions)
        .with_allowed_hosts(allowed_hosts(bind.ip()))
        // DNS-rebinding protection (MCP "Security"): browsers send Origin; only pages served
        // from this machine may talk to us.
        .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]);
    // Legacy (2025-11-25) clients get sessions; 2026-07-28 requests are served statelessly
    // on the same endpoint by rmcp.
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        LocalSessionManager::default().into(),
        config,
    );

    // Layers run outermost last: the request ID comes first, so every log line of a request
    // (in-flight tracking, MCP handling, health checks) is written inside its span.
    Router::new()
        .nest_service("/mcp", mcp)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .with_state(AppState { client })
        .layer(axum::middleware::from_fn_with_state(
            in_flight,
            crate::shutdown::track,
        ))
        .layer(RequestIdLayer::new().with_span())
}

/// rmcp checks the Host header against this list (DNS rebinding). Loopback names always
/// work; a server bound to a specific other address also answers to that address.
fn allowed_hosts(ip: IpAddr) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !ip.is_loopback() && !ip.is_unspecified() {
        hosts.push(ip.to_string());
    }
    hosts
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready means the backend answers its health check.
async fn ready(State(state): State<AppState>) -> Response {
    match state.client.health().await {
        Ok(()) => Json(json!({ "status": "ready", "checks": { "backend": { "status": "ok" } } }))
            .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "checks": { "backend": { "status": "failing", "reason": err.to_string() } }
            })),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "code": "not_found", "message": "no such route; MCP is served at /mcp" } })),
    )
        .into_response()
}
