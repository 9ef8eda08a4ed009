//! Request IDs through taskman: from the MCP client's HTTP request, into every log line written
//! while serving it, on to the backend, and back on the response.

mod support;

use std::{collections::BTreeMap, time::Duration};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use support::Taskman;

/// taskman in front of a separately run backend, so that the backend's own log shows what
/// reached it.
fn start_pair() -> (Taskman, Taskman) {
    let backend = Taskman::start(&["backend", "--port", "0", "--db", ":memory:"], &[]);
    let endpoint = format!("http://{}/api/v1", backend.addr);
    let server = Taskman::start_server(&[
        ("TASK_MANAGER_API_ENDPOINT", &endpoint),
        // Room for the thousand concurrent requests below, which would otherwise be shed.
        ("TASKMAN_MAX_CONCURRENT_REQUESTS", "2000"),
    ]);
    (server, backend)
}

/// A stateless (2026-07-28) `tools/call` of create_task, with an optional `x-request-id`.
async fn create_task(
    http: &reqwest::Client,
    server: &Taskman,
    request_id: Option<HeaderValue>,
    title: &str,
) -> reqwest::Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "accept",
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2026-07-28"),
    );
    headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
    headers.insert("mcp-name", HeaderValue::from_static("create_task"));
    if let Some(id) = request_id {
        headers.insert("x-request-id", id);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "create_task",
        "arguments": {"title": title},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    }});
    let response = http
        .post(server.mcp_url())
        .headers(headers)
        .json(&body)
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status(), 200);
    response
}

fn response_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII id")
        .to_owned()
}

/// `request_id`s of the backend's request log lines for `POST /api/v1/tasks`, in order.
fn backend_create_ids(backend: &Taskman) -> Vec<String> {
    backend
        .logs()
        .iter()
        .filter(|line| line["method"] == "POST" && line["path"] == "/api/v1/tasks")
        .map(|line| line["request_id"].as_str().unwrap_or("<none>").to_owned())
        .collect()
}

async fn settle() {
    // The log reader threads run behind the processes; give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_inbound_id_reaches_the_backend_every_log_line_and_the_response() {
    let (server, backend) = start_pair();
    let http = reqwest::Client::new();
    let id = "mcp-client:run/42+a=b@c.d_e";
    settle().await;
    let before = server.logs().len();

    let response = create_task(
        &http,
        &server,
        Some(HeaderValue::from_static(id)),
        "carry the id",
    )
    .await;
    assert_eq!(response_id(&response), id);
    let body = response.text().await.unwrap();
    assert!(body.contains("carry the id"), "{body}");
    settle().await;

    let lines: Vec<Value> = server.logs().split_off(before);
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "tool call finished"),
        "the tool call is logged: {lines:#?}"
    );
    for line in &lines {
        assert!(
            line.to_string()
                .contains(&format!("\"request_id\":\"{id}\"")),
            "a log line written while serving the request lacks its id: {line}"
        );
    }
    assert_eq!(backend_create_ids(&backend), [id]);
}

#[tokio::test]
async fn unsafe_inbound_ids_are_replaced_and_never_reflected() {
    let (server, backend) = start_pair();
    let http = reqwest::Client::new();
    let unsafe_ids: Vec<(&str, HeaderValue)> = vec![
        ("empty", HeaderValue::from_static("")),
        (
            "129 characters",
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        ),
        (
            "non-ASCII",
            HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        ),
        ("space", HeaderValue::from_static("two words")),
        ("double quote", HeaderValue::from_static("say\"hi\"")),
        ("single quote", HeaderValue::from_static("it's")),
        ("tab", HeaderValue::from_bytes(b"a\tb").unwrap()),
        ("angle brackets", HeaderValue::from_static("<script>")),
        ("semicolon", HeaderValue::from_static("a;b")),
    ];
    let mut replacements = Vec::new();
    for (case, value) in &unsafe_ids {
        let response = create_task(&http, &server, Some(value.clone()), case).await;
        let replacement = response_id(&response);
        assert_ne!(
            replacement.as_bytes(),
            value.as_bytes(),
            "{case}: reflected"
        );
        assert!(
            uuid::Uuid::parse_str(&replacement).is_ok(),
            "{case}: replacement {replacement:?} is not a UUID"
        );
        replacements.push(replacement);
    }
    // An ID of exactly 128 safe characters is kept.
    let longest = "b".repeat(128);
    let response = create_task(
        &http,
        &server,
        Some(HeaderValue::from_str(&longest).unwrap()),
        "longest",
    )
    .await;
    assert_eq!(response_id(&response), longest);
    replacements.push(longest);

    settle().await;
    // The backend saw the replacements, never the unsafe values.
    assert_eq!(backend_create_ids(&backend), replacements);
    let backend_log = backend.raw_logs();
    let server_log = server.raw_logs();
    for (case, value) in &unsafe_ids[1..] {
        let text = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !backend_log.contains(text.as_ref()),
            "{case} reached the backend log"
        );
        assert!(
            !server_log.contains(&format!("\"request_id\":\"{text}\"")),
            "{case} was logged as an id"
        );
    }
}

#[tokio::test]
async fn a_thousand_concurrent_requests_keep_their_own_ids() {
    let (server, backend) = start_pair();
    let http = reqwest::Client::new();
    let server = std::sync::Arc::new(server);
    let mut calls = Vec::new();
    for n in 0..1000 {
        let (http, server) = (http.clone(), server.clone());
        calls.push(tokio::spawn(async move {
            // A mix: our own IDs, unsafe ones (replaced) and none (generated).
            let sent = match n % 3 {
                0 => Some(HeaderValue::from_str(&format!("client-{n}")).unwrap()),
                1 => Some(HeaderValue::from_static("not safe")),
                _ => None,
            };
            let title = format!("task {n}");
            let response = create_task(&http, &server, sent.clone(), &title).await;
            let id = response_id(&response);
            if n % 3 == 0 {
                assert_eq!(id, format!("client-{n}"));
            }
            let body = response.text().await.unwrap();
            assert!(
                body.contains(&format!("\\\"title\\\":\\\"{title}\\\"")),
                "call {n} got another's answer: {body}"
            );
            (n, id)
        }));
    }
    let mut ids = BTreeMap::new();
    for call in tokio::time::timeout(Duration::from_secs(120), futures_join(calls))
        .await
        .expect("bounded")
    {
        let (n, id) = call;
        assert!(
            ids.insert(id.clone(), n).is_none(),
            "id {id} was given to two requests"
        );
    }
    settle().await;

    // At the backend: each ID exactly once, and only the IDs the clients got back.
    let mut at_backend = backend_create_ids(&backend);
    at_backend.sort();
    let mut expected: Vec<String> = ids.keys().cloned().collect();
    expected.sort();
    assert_eq!(at_backend, expected);

    // In taskman's log: each tool call's line names the tool call's own ID and title's task.
    let finished: Vec<Value> = server
        .logs()
        .into_iter()
        .filter(|line| line["message"] == "tool call finished")
        .collect();
    assert_eq!(finished.len(), 1000);
    for line in &finished {
        let text = line.to_string();
        let named: Vec<&String> = ids
            .keys()
            .filter(|id| text.contains(&format!("\"request_id\":\"{id}\"")))
            .collect();
        assert_eq!(
            named.len(),
            1,
            "a log line names {} ids: {text}",
            named.len()
        );
    }
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}
