//! The inbound side: the HTTP application that serves MCP at `/mcp` and the health checks.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Json, Router,
    extract::MatchedPath,
    extract::State,
    http::StatusCode,
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_bulwark::request_id::RequestIdLayer;

use tower_bulwark::{metrics::FromExtension, trace::ServerTraceLayer};

use crate::{
    client::BackendClient,
    config::EdgeConfig,
    edge::{self, Edge, EdgePolicy},
    mcp::Taskman,
    observability::TaskmanMetrics,
    shutdown::InFlight,
};

#[derive(Clone)]
struct AppState {
    client: BackendClient,
    metrics: Option<TaskmanMetrics>,
}

/// Builds the application. `mcp_sessions` ends every MCP session and stream when cancelled.
pub fn app(
    client: BackendClient,
    bind: SocketAddr,
    limits: &EdgeConfig,
    stateless: bool,
    mcp_sessions: CancellationToken,
    in_flight: InFlight,
    metrics: Option<TaskmanMetrics>,
) -> Router {
    let handler = Taskman::new(client.clone(), metrics.as_ref().map(|m| m.tools.clone()));
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(mcp_sessions)
        // DNS-rebinding protection (MCP "Security"): the Host header must name this server,
        // and a browser's Origin must be on the list (by default: pages served from here).
        .with_allowed_hosts(allowed_hosts(&limits.allowed_hosts, bind.ip()))
        .with_allowed_origins(limits.allowed_origins.clone())
        .with_max_request_body_bytes(limits.max_body_bytes)
        // Stateless: no session for legacy clients either, and one JSON answer per POST.
        .with_legacy_session_mode(!stateless)
        .with_json_response(stateless);
    // Legacy (2025-11-25) clients get sessions; 2026-07-28 requests are served statelessly
    // on the same endpoint by rmcp.
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        LocalSessionManager::default().into(),
        config,
    );

    let edge: Edge = Arc::new(EdgePolicy {
        token: limits.auth_token.clone(),
        protect_ops: limits.auth_ops,
        max_body_bytes: limits.max_body_bytes,
        request_timeout: limits.request_timeout,
        sse_max_lifetime: limits.sse_max_lifetime,
        slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
    });
    // Each `.layer` wraps what is above it, so requests meet these from the bottom up: the
    // request ID first (every log line of a request carries it, refusals included), then
    // in-flight tracking, load shedding (cheapest refusal), authentication (before reading
    // any body), the body limit and the time limits.
    let mut router = Router::new()
        .nest_service("/mcp", mcp)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(not_found)
        .with_state(AppState {
            client,
            metrics: metrics.clone(),
        });
    // With METRICS_ENABLED=false there is no route and nothing is recorded.
    if let Some(metrics) = &metrics {
        router = router.route(
            "/metrics",
            get(TaskmanMetrics::serve).with_state(metrics.clone()),
        );
    }
    let router = router
        .layer(from_fn_with_state(edge.clone(), edge::time_limits))
        .layer(from_fn_with_state(edge.clone(), edge::limit_body))
        .layer(from_fn_with_state(edge.clone(), edge::authenticate))
        .layer(from_fn_with_state(edge, edge::shed_load))
        .layer(from_fn_with_state(in_flight, crate::shutdown::track));
    // Outside the edge, so that refusals (401, 413, 503) are counted too; after routing
    // (`Router::layer`), so that the route label is the template from `MatchedPath`.
    // Inside the server span: hands that span to the MCP handler, which runs tool calls on
    // rmcp's own tasks where the span is not current (see `mcp::Taskman::call_tool`).
    let router = router.layer(axum::middleware::from_fn(remember_span));
    let router = match &metrics {
        Some(metrics) => router.layer(
            metrics
                .layers
                .server()
                .layer()
                .classify_route(FromExtension::new(MatchedPath::as_str)),
        ),
        None => router,
    };
    // The request's server span (W3C trace context in, OpenTelemetry conventions) inside the
    // request ID, so that the span records the ID.
    router
        .layer(ServerTraceLayer::new().classify_route(crate::route_of))
        .layer(RequestIdLayer::new().with_span())
}

/// The span of the HTTP request, for work done on its behalf on other tasks.
#[derive(Clone, Debug)]
pub struct RequestSpan(pub tracing::Span);

async fn remember_span(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request
        .extensions_mut()
        .insert(RequestSpan(tracing::Span::current()));
    next.run(request).await
}

/// rmcp checks the Host header against this list (DNS rebinding). Loopback names always
/// work; a server bound to a specific other address also answers to that address.
fn allowed_hosts(configured: &[String], ip: IpAddr) -> Vec<String> {
    let mut hosts = configured.to_vec();
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
    let health = state.client.health().await;
    if let Some(metrics) = &state.metrics {
        metrics.layers.health().set("backend", health.is_ok());
    }
    // Open breakers are reported, not fatal: reads may still be answered from the cache.
    let open_breakers = state.client.open_breakers();
    let breakers = json!({ "open": open_breakers });
    match health {
        Ok(()) => Json(json!({
            "status": "ready",
            "checks": { "backend": { "status": "ok" } },
            "circuit_breakers": breakers,
        }))
        .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "checks": { "backend": { "status": "failing", "reason": err.to_string() } },
                "circuit_breakers": breakers,
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
