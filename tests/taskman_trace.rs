//! One trace through taskman: an MCP `tools/call` that arrives with a `traceparent` gives an
//! inbound server span, a tool span, a backend client span and the embedded backend's server
//! span, all in the caller's trace with the right parents, exported over OTLP/HTTP to a real
//! receiver; and the log lines of the call carry the trace ID.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    trace::v1::Span,
};
use prost::Message as _;
use serde_json::json;
use support::Taskman;

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on loopback that keeps every span it is sent.
async fn receiver() -> (SocketAddr, Spans) {
    async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export request");
        let mut kept = spans.lock().unwrap();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                kept.extend(scope.spans);
            }
        }
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tool_call_is_one_trace_from_the_client_to_the_backend() {
    let (collector, spans) = receiver().await;
    let collector = format!("http://{collector}");
    let mut server = Taskman::start_server(&[
        ("TRACING_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
        ("OTEL_SAMPLE_RATE", "1"),
    ]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "create_task", "arguments": {"title": "traced"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let response = reqwest::Client::new()
        .post(server.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "create_task")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("traced"));

    // Shutdown flushes the export queue.
    server.signal("TERM");
    let (status, server) =
        tokio::task::spawn_blocking(move || (server.wait(Duration::from_secs(20)), server))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.raw_logs());

    let spans: Vec<Span> = spans
        .lock()
        .unwrap()
        .iter()
        .filter(|span| hex(&span.trace_id) == trace_id)
        .cloned()
        .collect();
    let named = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                panic!("no span {name:?} in the trace; it has {names:?}")
            })
            .clone()
    };
    let inbound = named("POST /mcp");
    let tool = named("tools/call create_task");
    let outbound = named("POST create_task");
    let backend = named("POST /api/v1/tasks");
    assert_eq!(
        hex(&inbound.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(
        tool.parent_span_id, inbound.span_id,
        "tool span under the inbound span"
    );
    assert_eq!(
        outbound.parent_span_id, tool.span_id,
        "client span under the tool span"
    );
    assert_eq!(
        backend.parent_span_id, outbound.span_id,
        "backend continues the client span"
    );
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    assert!(attribute(&tool, "gen_ai.tool.name").is_some(), "{tool:?}");
    assert!(attribute(&tool, "mcp.method.name").is_some(), "{tool:?}");

    // The log lines written for the call carry the trace ID.
    let finished = server
        .logs()
        .into_iter()
        .find(|line| line["message"] == "tool call finished")
        .expect("the tool call's log line");
    assert_eq!(finished["trace_id"], json!(trace_id));
}
