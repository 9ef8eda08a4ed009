//! Graceful shutdown: on SIGTERM taskman stops accepting, lets the requests it is answering
//! finish within the deadline, closes its store and exits 0, logging each step.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, routing::get};
use rmcp::{ServiceExt, model::CallToolRequestParams, transport::StreamableHttpClientTransport};
use serde_json::json;
use support::Taskman;

/// A Task Manager backend on loopback whose task listing takes `delay`; counts requests.
async fn slow_backend(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let app = Router::new()
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/v1/tasks",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(delay).await;
                    Json(json!({"items": [], "total": 0, "limit": 50, "offset": 0}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, started)
}

async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn messages(server: &Taskman) -> Vec<String> {
    server
        .logs()
        .iter()
        .filter_map(|line| line["message"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_in_flight_completes_after_sigterm_and_the_process_exits_0() {
    let (endpoint, started) = slow_backend(Duration::from_millis(1500)).await;
    let mut server = Taskman::start_server(&[("TASK_MANAGER_API_ENDPOINT", &endpoint)]);
    // A legacy client: it also holds a session and its long-lived event stream open, which
    // must not keep the server from stopping.
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url()))
            .await
            .expect("initialize");
    let peer = client.peer().clone();
    let call = tokio::spawn(async move {
        peer.call_tool(CallToolRequestParams::new("list_tasks"))
            .await
    });
    wait_until("the backend call", Duration::from_secs(10), || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    server.signal("TERM");
    // New connections are refused as soon as the server has stopped accepting.
    let addr = server.addr;
    wait_until("the listener to close", Duration::from_secs(5), || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;

    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("bounded")
        .unwrap();
    let result = result.expect("the in-flight tool call completes");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(
        result.structured_content,
        Some(json!({"tasks": [], "total": 0, "limit": 50, "offset": 0}))
    );

    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait(Duration::from_secs(15));
        (status, server)
    })
    .await
    .unwrap();
    let (status, server) = status;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; log:\n{}",
        server.raw_logs()
    );
    let steps = messages(&server);
    let expected = [
        "shutdown signal received",
        "stopped accepting connections; waiting for in-flight requests",
        "in-flight requests finished",
        "MCP sessions closed",
        "HTTP server stopped",
        "shutdown complete",
    ];
    let mut position = 0;
    for step in expected {
        let found = steps[position..].iter().position(|m| m == step);
        let found =
            found.unwrap_or_else(|| panic!("missing or out of order: {step:?}; log: {steps:#?}"));
        position += found + 1;
    }
    let signal_line = server
        .logs()
        .into_iter()
        .find(|l| l["message"] == "shutdown signal received")
        .unwrap();
    assert_eq!(signal_line["signal"], json!("SIGTERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_shutdown_when_a_request_hangs() {
    let (endpoint, started) = slow_backend(Duration::from_secs(60)).await;
    let mut server = Taskman::start_server(&[
        ("TASK_MANAGER_API_ENDPOINT", &endpoint),
        ("TASKMAN_SHUTDOWN_TIMEOUT_MS", "300"),
        ("TASK_MANAGER_API_TIMEOUT_MS", "60000"),
    ]);
    let lifecycle = rmcp::service::ClientLifecycleMode::Discover {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
    };
    let client = rmcp::service::ClientServiceExt::serve_with_lifecycle(
        (),
        StreamableHttpClientTransport::from_uri(server.mcp_url()),
        lifecycle,
    )
    .await
    .expect("discover");
    let peer = client.peer().clone();
    let _call = tokio::spawn(async move {
        peer.call_tool(CallToolRequestParams::new("list_tasks"))
            .await
    });
    wait_until("the backend call", Duration::from_secs(10), || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    let signalled = Instant::now();
    server.signal("TERM");
    let (status, server) =
        tokio::task::spawn_blocking(move || (server.wait(Duration::from_secs(15)), server))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.raw_logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    let abandoned = server
        .logs()
        .into_iter()
        .find(|l| l["message"] == "shutdown deadline reached; abandoning in-flight requests");
    assert_eq!(abandoned.expect("deadline log line")["abandoned"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_embedded_backend_and_closes_the_store() {
    let dir = std::env::temp_dir().join(format!("taskman-shutdown-{}", std::process::id()));
    let db = dir.join("nested").join("taskman.db");
    let db_path = db.to_str().unwrap().to_owned();
    let mut server = Taskman::start(
        &[],
        &[("TASKMAN_HTTP_PORT", "0"), ("TASKMAN_DB_PATH", &db_path)],
    );
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    let mut args = serde_json::Map::new();
    args.insert("title".into(), json!("survives a restart"));
    let created = client
        .call_tool(CallToolRequestParams::new("create_task").with_arguments(args))
        .await
        .unwrap();
    assert_ne!(created.is_error, Some(true));
    drop(client);

    server.signal("INT");
    let (status, server) =
        tokio::task::spawn_blocking(move || (server.wait(Duration::from_secs(15)), server))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.raw_logs());
    let steps = messages(&server);
    for step in [
        "embedded backend stopped",
        "store closed",
        "shutdown complete",
    ] {
        assert!(
            steps.iter().any(|m| m == step),
            "missing {step:?}: {steps:#?}"
        );
    }

    // The task was written to the file and is there after a restart.
    let server = Taskman::start(
        &[],
        &[("TASKMAN_HTTP_PORT", "0"), ("TASKMAN_DB_PATH", &db_path)],
    );
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    let listed = client
        .call_tool(CallToolRequestParams::new("list_tasks"))
        .await
        .unwrap();
    let structured = listed.structured_content.unwrap();
    assert_eq!(structured["tasks"][0]["title"], json!("survives a restart"));
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
