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
use tokio_util::sync::CancellationToken;
use tower_bulwark::{
    limit::{BodyLimitLayer, LoadShedLayer, ResponseTimeoutLayer},
    metrics::FromExtension,
    request_id::RequestIdLayer,
    stack::ServerStack,
    trace::ServerTraceLayer,
};

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
) -> anyhow::Result<Router> {
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
        sse_max_lifetime: limits.sse_max_lifetime,
    });
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
    // Each `.layer` wraps what is above it, so requests meet these from the bottom up: the
    // library's stack first, then the span handed to the MCP handler, in-flight tracking for
    // shutdown, authentication (before reading any body), the JSON-RPC envelope check and the
    // event-stream lifetime.
    let router = router
        .layer(from_fn_with_state(edge.clone(), edge::stream_lifetime))
        .layer(from_fn_with_state(edge.clone(), edge::check_body))
        .layer(from_fn_with_state(edge, edge::authenticate))
        .layer(from_fn_with_state(in_flight, crate::shutdown::track))
        // Inside the server span: hands that span to the MCP handler, which runs tool calls
        // on rmcp's own tasks where the span is not current (see `mcp::Taskman::call_tool`).
        .layer(axum::middleware::from_fn(remember_span));
    // The library's inbound order, outermost first: request ID (every response and log line
    // carries it, refusals included; no span of its own, the server span records it) → server span (W3C trace context in) → metrics (refusals
    // counted too; after routing, so the route label is the `MatchedPath` template) →
    // response timeout → body limit → load shedding (cheapest refusal, 503 at once).
    let stack = ServerStack::new()
        .request_id(RequestIdLayer::new())
        .trace(ServerTraceLayer::new().classify_route(crate::route_of))
        .maybe_metrics(metrics.as_ref().map(|metrics| {
            metrics
                .layers
                .server()
                .layer()
                .classify_route(FromExtension::new(MatchedPath::as_str))
        }))
        .timeout(ResponseTimeoutLayer::new(limits.request_timeout)?.rejection(edge::reject))
        .body_limit(BodyLimitLayer::new(limits.max_body_bytes)?.rejection(edge::reject))
        .load_shed(
            LoadShedLayer::new(limits.max_concurrent_requests)?
                .rejection(edge::reject)
                // A legacy session's standalone event stream is long-lived and idle; it must
                // not take a slot from requests that do work (its lifetime is bounded).
                .exempt(edge::is_event_stream_request::<edge::LimitedBody>),
        );
    Ok(router.layer(stack.into_layer()))
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
