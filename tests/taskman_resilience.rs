//! taskman when its backend goes away: stored reads are answered stale and say so, the
//! circuit breakers open per operation, writes fail fast with a clear tool error, and
//! `/health/ready` and `/metrics` tell the operator.

mod support;

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::Peer,
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use support::Taskman;

async fn call(peer: &Peer<RoleClient>, tool: &'static str, args: Value) -> CallToolResult {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object")
    };
    peer.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .expect(tool)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_outage_degrades_reads_and_fails_writes_fast() {
    let backend = Taskman::start(&["backend", "--port", "0", "--db", ":memory:"], &[]);
    let endpoint = format!("http://{}/api/v1", backend.addr);
    let server = Taskman::start_server(&[
        ("TASK_MANAGER_API_ENDPOINT", &endpoint),
        ("CIRCUIT_BREAKER_VOLUME_THRESHOLD", "2"),
        ("CIRCUIT_BREAKER_ERROR_THRESHOLD", "50"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT_MS", "60000"),
        ("FALLBACK_CACHE_TTL_MS", "60000"),
    ]);
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    let peer = client.peer();

    // While the backend is up: a task, and reads whose answers are stored.
    let created = call(peer, "create_task", json!({"title": "survive the outage"})).await;
    let task = created.structured_content.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let listed = call(peer, "list_tasks", json!({}))
        .await
        .structured_content
        .unwrap();
    assert_eq!(listed["total"], json!(1));
    assert!(
        listed.get("stale").is_none(),
        "a fresh answer is not marked: {listed}"
    );
    let fetched = call(peer, "get_task", json!({"id": id}))
        .await
        .structured_content
        .unwrap();
    assert_eq!(fetched, task);

    drop(backend); // kills the process: connections are now refused

    // Stored reads are answered from the store, and say so.
    let stale_list = call(peer, "list_tasks", json!({})).await;
    assert_ne!(stale_list.is_error, Some(true), "{stale_list:?}");
    let stale_list = stale_list.structured_content.unwrap();
    assert_eq!(stale_list["stale"], json!(true));
    assert!(
        stale_list["age_seconds"]
            .as_u64()
            .is_some_and(|age| age < 60)
    );
    assert_eq!(stale_list["tasks"][0]["id"], json!(id));
    let stale_task = call(peer, "get_task", json!({"id": id}))
        .await
        .structured_content
        .unwrap();
    assert_eq!(stale_task["stale"], json!(true));
    assert_eq!(stale_task["title"], json!("survive the outage"));

    // A read that was never stored fails with a clear error.
    let projects = call(peer, "list_projects", json!({})).await;
    assert_eq!(projects.is_error, Some(true));
    assert!(
        text(&projects).contains("task backend unavailable"),
        "{}",
        text(&projects)
    );

    // Writes fail; after the volume threshold the create breaker opens and rejects at once,
    // saying when to retry.
    for _ in 0..2 {
        let failed = call(peer, "create_task", json!({"title": "lost"})).await;
        assert_eq!(failed.is_error, Some(true));
        assert!(
            text(&failed).contains("task backend unavailable"),
            "{}",
            text(&failed)
        );
    }
    let rejected = call(peer, "create_task", json!({"title": "rejected"})).await;
    assert_eq!(rejected.is_error, Some(true));
    let message = text(&rejected);
    assert!(
        message.contains("circuit breaker for create_task is open") && message.contains("retry in"),
        "{message}"
    );

    // Those writes never reached the backend (refused connection, open breaker), so they
    // changed nothing there and the stored listings are still served.
    let after_write = call(peer, "list_tasks", json!({})).await;
    assert_ne!(after_write.is_error, Some(true), "{after_write:?}");
    assert_eq!(
        after_write.structured_content.unwrap()["stale"],
        json!(true)
    );

    // The operator sees it.
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/health/ready", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    let open = ready["circuit_breakers"]["open"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(open.contains(&json!("create_task")), "{ready}");
    let metrics = http
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"taskman_circuit_breaker_state{breaker="backend",key="create_task",state="open"} 1"#
        ),
        "{metrics}"
    );
    let stale_served = metrics
        .lines()
        .find(|line| line.starts_with("taskman_fallback_cache_stale"))
        .unwrap_or_else(|| panic!("no stale counter in\n{metrics}"));
    assert!(!stale_served.ends_with(" 0"), "{stale_served}");
}
