//! taskman end to end: the built example on a loopback port (or over stdio), driven by rmcp's
//! own client in both protocol eras, with the embedded SQLite backend behind it.

mod support;

use std::time::Duration;

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt, Peer, ServiceError},
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};
use support::{Taskman, taskman_bin};

const TOOLS: [&str; 8] = [
    "complete_task",
    "create_project",
    "create_task",
    "delete_task",
    "get_task",
    "list_projects",
    "list_tasks",
    "update_task",
];

async fn call(
    peer: &Peer<RoleClient>,
    tool: &'static str,
    args: Value,
) -> Result<CallToolResult, ServiceError> {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object")
    };
    peer.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
}

/// Calls a tool that must succeed and returns its structured content.
async fn ok(peer: &Peer<RoleClient>, tool: &'static str, args: Value) -> Value {
    let result = call(peer, tool, args.clone())
        .await
        .unwrap_or_else(|e| panic!("{tool}({args}) failed: {e}"));
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool}({args}) returned a tool error: {result:?}"
    );
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structuredContent"));
    // The text block carries the same JSON, for clients that predate structured content.
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("text content");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("text is JSON"),
        structured
    );
    structured
}

/// Calls a tool that must fail as a tool execution error and returns its message.
async fn tool_error(peer: &Peer<RoleClient>, tool: &'static str, args: Value) -> String {
    let result = call(peer, tool, args.clone())
        .await
        .unwrap_or_else(|e| panic!("{tool}({args}): protocol error {e}"));
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool}({args}) should be a tool error: {result:?}"
    );
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("error text")
}

/// The whole tool surface, through whatever transport `peer` uses.
async fn exercise_every_tool(peer: &Peer<RoleClient>) {
    // tools/list: names, annotations, schemas.
    let tools = peer.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, TOOLS);
    for tool in &tools {
        let annotations = tool
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no annotations", tool.name));
        let read_only = tool.name.starts_with("list_") || tool.name == "get_task";
        assert_eq!(
            annotations.read_only_hint,
            Some(read_only),
            "{}: read_only_hint",
            tool.name
        );
        if !read_only {
            let destructive = matches!(tool.name.as_ref(), "update_task" | "delete_task");
            assert_eq!(
                annotations.destructive_hint,
                Some(destructive),
                "{}: destructive_hint",
                tool.name
            );
        }
        assert!(
            tool.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{}: description",
            tool.name
        );
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no outputSchema", tool.name));
        assert_eq!(
            output.get("type"),
            Some(&json!("object")),
            "{}: outputSchema is an object",
            tool.name
        );
    }
    let create = tools.iter().find(|t| t.name == "create_task").unwrap();
    let title = &create.input_schema["properties"]["title"];
    assert_eq!(
        title["maxLength"],
        json!(200),
        "contract bound in the input schema: {title}"
    );
    assert!(title["description"].as_str().is_some_and(|d| !d.is_empty()));
    let list = tools.iter().find(|t| t.name == "list_tasks").unwrap();
    assert_eq!(
        list.input_schema["properties"]["limit"]["maximum"],
        json!(100)
    );

    // Projects.
    let project = ok(
        peer,
        "create_project",
        json!({"name": "Home", "description": "chores"}),
    )
    .await;
    let project_id = project["id"].as_str().expect("project id").to_owned();
    let message = tool_error(peer, "create_project", json!({"name": "home"})).await;
    assert!(
        message.contains("conflict"),
        "duplicate name, any case: {message}"
    );
    let projects = ok(peer, "list_projects", json!({})).await;
    assert_eq!(projects["total"], json!(1));
    assert_eq!(projects["projects"][0]["name"], json!("Home"));

    // Tasks: create, read back, filter, update, complete, delete.
    let task = ok(
        peer,
        "create_task",
        json!({"title": "  buy milk  ", "priority": "high", "project_id": project_id, "tags": ["shop"], "due_date": "2026-12-01"}),
    )
    .await;
    let id = task["id"].as_str().expect("task id").to_owned();
    assert_eq!(task["title"], json!("buy milk"), "title is trimmed");
    assert_eq!(task["status"], json!("todo"));
    assert_eq!(task["priority"], json!("high"));
    let other = ok(
        peer,
        "create_task",
        json!({"title": "write report", "description": "quarterly MILK numbers"}),
    )
    .await;

    assert_eq!(ok(peer, "get_task", json!({"id": id})).await, task);

    let all = ok(peer, "list_tasks", json!({})).await;
    assert_eq!(all["total"], json!(2));
    assert_eq!(all["tasks"][0]["id"], task["id"], "creation order");
    let by_project = ok(peer, "list_tasks", json!({"project_id": project_id})).await;
    assert_eq!(by_project["tasks"].as_array().unwrap().len(), 1);
    let by_text = ok(peer, "list_tasks", json!({"query": "milk"})).await;
    assert_eq!(
        by_text["total"],
        json!(2),
        "query matches title and description, ignoring case"
    );
    let by_tag = ok(
        peer,
        "list_tasks",
        json!({"tag": "shop", "priority": "high", "due_before": "2026-12-02"}),
    )
    .await;
    assert_eq!(by_tag["total"], json!(1));
    let page = ok(peer, "list_tasks", json!({"limit": 1, "offset": 1})).await;
    assert_eq!(page["tasks"][0]["id"], other["id"]);
    assert_eq!(
        (page["limit"].clone(), page["offset"].clone()),
        (json!(1), json!(1))
    );

    let updated = ok(
        peer,
        "update_task",
        json!({"id": id, "title": "buy oat milk", "due_date": null, "status": "in_progress"}),
    )
    .await;
    assert_eq!(updated["title"], json!("buy oat milk"));
    assert_eq!(updated["due_date"], Value::Null, "null clears");
    assert_eq!(
        updated["tags"],
        json!(["shop"]),
        "fields not sent keep their value"
    );
    let done = ok(peer, "complete_task", json!({"id": id})).await;
    assert_eq!(done["status"], json!("done"));
    assert!(done["completed_at"].is_string());

    let deleted = ok(peer, "delete_task", json!({"id": id})).await;
    assert_eq!(deleted, json!({"id": id, "deleted": true}));

    // Backend refusals come back as tool errors carrying the backend's message.
    let message = tool_error(peer, "get_task", json!({"id": id})).await;
    assert_eq!(message, format!("no task has id \"{id}\" (404 not_found)"));
    let message = tool_error(peer, "create_task", json!({"title": "   "})).await;
    assert!(
        message.contains("title must be 1 to 200 characters"),
        "{message}"
    );
    let message = tool_error(
        peer,
        "create_task",
        json!({"title": "x", "project_id": "no-such-project"}),
    )
    .await;
    assert!(
        message.contains("not found") || message.contains("project"),
        "{message}"
    );
    let message = tool_error(peer, "list_tasks", json!({"limit": 500})).await;
    assert!(message.contains("limit"), "{message}");

    // Unknown tools are protocol errors, not tool results.
    let err = call(peer, "no_such_tool", json!({}))
        .await
        .expect_err("unknown tool");
    assert!(matches!(err, ServiceError::McpError(_)), "{err:?}");
}

#[tokio::test]
async fn every_tool_over_streamable_http_legacy_era_with_sessions() {
    let server = Taskman::start_server(&[]);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url()))
            .await
            .expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("taskman")
    );
    exercise_every_tool(client.peer()).await;
    client.cancel().await.expect("close session");
}

#[tokio::test]
async fn every_tool_over_streamable_http_stateless_2026_era() {
    let server = Taskman::start_server(&[]);
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client = ()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(server.mcp_url()),
            lifecycle,
        )
        .await
        .expect("server/discover");
    assert_eq!(
        client.peer_info().expect("server info").protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    exercise_every_tool(client.peer()).await;
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn every_tool_over_stdio() {
    let mut command = tokio::process::Command::new(taskman_bin());
    command
        .env_clear()
        .env("TASKMAN_MCP_TRANSPORT", "stdio")
        .env("TASKMAN_DB_PATH", ":memory:")
        .env("LOG_LEVEL", "warn");
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.expect("initialize over stdio");
    exercise_every_tool(client.peer()).await;
    client.cancel().await.expect("close stdin");
}

#[tokio::test]
async fn health_endpoints_report_liveness_and_backend_readiness() {
    let server = Taskman::start_server(&[]);
    let http = reqwest::Client::new();
    let live = http
        .get(format!("{}/health/live", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], json!("ok"));
    let ready = http
        .get(format!("{}/health/ready", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["checks"]["backend"]["status"],
        json!("ok")
    );

    // Pointed at a port where nothing listens, taskman is alive but not ready, and says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}/api/v1", closed.local_addr().unwrap());
    drop(closed);
    let server = Taskman::start_server(&[("TASK_MANAGER_API_ENDPOINT", &dead_endpoint)]);
    let live = http
        .get(format!("{}/health/live", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = http
        .get(format!("{}/health/ready", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], json!("not_ready"));
    let reason = body["checks"]["backend"]["reason"].as_str().unwrap();
    assert!(reason.contains("unavailable"), "{reason}");

    // And a tool call says the backend is unavailable instead of hanging or failing the protocol.
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    let message = tokio::time::timeout(
        Duration::from_secs(20),
        tool_error(client.peer(), "list_tasks", json!({})),
    )
    .await
    .expect("bounded");
    assert!(message.contains("unavailable"), "{message}");
}

#[tokio::test]
async fn the_http_endpoint_rejects_foreign_hosts_and_origins() {
    let server = Taskman::start_server(&[]);
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"0"}}});
    let post = |origin: Option<&str>| {
        let mut request = http
            .post(server.mcp_url())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .json(&initialize);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(
        post(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    assert_eq!(
        post(Some("http://localhost:6274")).await.unwrap().status(),
        200
    );
    let rebound = http
        .post(server.mcp_url())
        .header("host", "evil.example")
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let unknown = http
        .get(format!("{}/nope", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn stateless_mode_serves_legacy_clients_without_sessions() {
    let server = Taskman::start_server(&[("TASKMAN_MCP_STATELESS", "true")]);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(server.mcp_url())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
    };
    let initialize = post(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}))
    .await
    .unwrap();
    assert_eq!(initialize.status(), 200);
    assert!(
        initialize.headers().get("mcp-session-id").is_none(),
        "no session is minted"
    );
    assert!(
        initialize.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // A tools/call without any session, as a replica that never saw the handshake gets it.
    let answer = post(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"create_task","arguments":{"title":"from any replica"}}}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body["result"]["structuredContent"]["title"],
        json!("from any replica")
    );
    // And rmcp's own client works against it.
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    let listed = call(client.peer(), "list_tasks", json!({})).await.unwrap();
    assert_eq!(listed.structured_content.unwrap()["total"], json!(1));
}

#[tokio::test]
async fn every_tool_works_with_every_layer_off_and_with_every_layer_on() {
    let off = [
        ("METRICS_ENABLED", "false"),
        ("TRACING_ENABLED", "false"),
        ("CIRCUIT_BREAKER_ENABLED", "false"),
        ("FALLBACK_CACHE_ENABLED", "false"),
        ("RETRY_ENABLED", "false"),
    ];
    let server = Taskman::start_server(&off);
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    exercise_every_tool(client.peer()).await;
    drop(client);

    // Tracing on too, exporting to a collector that is not there: nothing may fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let on = [
        ("METRICS_ENABLED", "true"),
        ("TRACING_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("CIRCUIT_BREAKER_ENABLED", "true"),
        ("FALLBACK_CACHE_ENABLED", "true"),
        ("RETRY_ENABLED", "true"),
    ];
    let server = Taskman::start_server(&on);
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    exercise_every_tool(client.peer()).await;
}
