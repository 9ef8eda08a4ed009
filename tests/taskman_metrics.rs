//! taskman's `/metrics`: what a scrape shows after real traffic, both exposition formats, and
//! `METRICS_ENABLED=false` meaning no route and no collector.

mod support;

use std::time::Duration;

use rmcp::{ServiceExt, model::CallToolRequestParams, transport::StreamableHttpClientTransport};
use serde_json::json;
use support::Taskman;

async fn scrape(server: &Taskman, accept: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", server.base_url()));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The value of the series whose line starts with `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line[series.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_scrape_shows_requests_tool_calls_backend_calls_health_and_the_process() {
    let server = Taskman::start_server(&[]);
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.mcp_url())).await.unwrap();
    client
        .call_tool(CallToolRequestParams::new("list_tasks"))
        .await
        .unwrap();
    let missing = client.call_tool(
        CallToolRequestParams::new("get_task")
            .with_arguments(json!({"id": "nope"}).as_object().unwrap().clone()),
    );
    assert_eq!(missing.await.unwrap().is_error, Some(true));
    let _ = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/health/ready", server.base_url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for probe in ["/.env", "/wp-admin/index.php", "/mcp/../../etc/passwd"] {
        let _ = http
            .get(format!("{}{probe}", server.base_url()))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // one tick of the process probe

    let (status, content_type, text) = scrape(&server, None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let expect = [
        r#"taskman_mcp_tool_executions_total{tool="list_tasks",outcome="ok"}"#,
        r#"taskman_mcp_tool_executions_total{tool="get_task",outcome="tool_error"}"#,
        r#"taskman_mcp_tool_executions_total{tool="unknown",outcome="protocol_error"}"#,
        r#"taskman_mcp_tool_duration_seconds_count{tool="list_tasks"}"#,
        r#"taskman_backend_api_calls_total{operation="list_tasks",status="200"}"#,
        r#"taskman_backend_api_calls_total{operation="get_task",status="404"}"#,
        r#"taskman_backend_api_calls_total{operation="health",status="200"}"#,
        r#"taskman_health_check_status{check="backend"}"#,
        r#"taskman_http_requests_total{method="GET",route="/health/ready",status="200"}"#,
    ];
    for series in expect {
        assert_eq!(value(&text, series), Some(1.0), "{series} in\n{text}");
    }
    let posts = value(
        &text,
        r#"taskman_http_requests_total{method="POST",route="/mcp",status="200"}"#,
    );
    assert!(
        posts.is_some_and(|n| n >= 3.0),
        "POST /mcp counted: {posts:?}\n{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"taskman_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        Some(3.0)
    );
    assert!(
        !text.contains("wp-admin") && !text.contains(".env"),
        "a raw path became a label"
    );
    assert!(value(&text, r#"taskman_memory_usage_bytes{type="rss"}"#).is_some_and(|rss| rss > 1e6));
    assert!(value(&text, "taskman_process_open_fds").is_some_and(|fds| fds > 3.0));
    assert!(
        text.contains("taskman_tokio_scheduling_lag_seconds_bucket"),
        "lag histogram"
    );
    assert!(value(&text, "taskman_http_active_connections").is_some_and(|n| n >= 1.0));

    // Prometheus asks for OpenMetrics, and gets it.
    let (status, content_type, text) =
        scrape(&server, Some("application/openmetrics-text; version=1.0.0")).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    drop(client);
}

#[tokio::test]
async fn metrics_disabled_means_no_route_and_no_collector() {
    let mut server = Taskman::start_server(&[("METRICS_ENABLED", "false")]);
    let (status, _, _) = scrape(&server, None).await;
    assert_eq!(status, 404);
    server.signal("TERM");
    let (exit, server) =
        tokio::task::spawn_blocking(move || (server.wait(Duration::from_secs(15)), server))
            .await
            .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(!server.raw_logs().contains("Stopping metrics collection"));

    let mut server = Taskman::start_server(&[]);
    server.signal("TERM");
    let (exit, server) =
        tokio::task::spawn_blocking(move || (server.wait(Duration::from_secs(15)), server))
            .await
            .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(
        server.raw_logs().contains("Stopping metrics collection"),
        "{}",
        server.raw_logs()
    );
}
