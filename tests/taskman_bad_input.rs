//! Bad input at the edge of taskman, over real HTTP: each case gets its exact status and
//! error, the server keeps serving, and the store is unchanged.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use support::Taskman;

const TOKEN: &str = "correct-horse-battery-staple";
const UNSUPPORTED_VERSION: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

fn start() -> Taskman {
    Taskman::start_server(&[
        ("TASKMAN_AUTH_TOKEN", TOKEN),
        ("TASKMAN_MAX_BODY_BYTES", "65536"),
        ("TASKMAN_MAX_HEADER_BYTES", "8192"),
        ("TASKMAN_HEADER_READ_TIMEOUT_MS", "500"),
    ])
}

/// One POST to /mcp; every header can be overridden or removed (value `None`).
struct Post {
    headers: Vec<(&'static str, Option<String>)>,
    body: Vec<u8>,
}

impl Post {
    /// A well-formed stateless (2026-07-28) request for `method`, `name` and `params`.
    fn modern(method: &str, name: Option<&str>, mut params: Value) -> Post {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let mut headers = vec![
            ("authorization", Some(format!("Bearer {TOKEN}"))),
            ("content-type", Some("application/json".to_owned())),
            (
                "accept",
                Some("application/json, text/event-stream".to_owned()),
            ),
            ("mcp-protocol-version", Some("2026-07-28".to_owned())),
            ("mcp-method", Some(method.to_owned())),
        ];
        if let Some(name) = name {
            headers.push(("mcp-name", Some(name.to_owned())));
        }
        Post {
            headers,
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn tool(name: &str, arguments: Value) -> Post {
        Post::modern(
            "tools/call",
            Some(name),
            json!({"name": name, "arguments": arguments}),
        )
    }

    fn header(mut self, name: &'static str, value: Option<&str>) -> Post {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.map(str::to_owned)));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Post {
        self.body = body.into();
        self
    }

    async fn send(self, http: &reqwest::Client, server: &Taskman) -> Answer {
        let mut request = http.post(server.mcp_url()).body(self.body);
        for (name, value) in self.headers {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.expect("POST /mcp");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            message: message_of(&text),
            text,
        }
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    /// The JSON-RPC message (from a JSON body or the event stream), or `Null`.
    message: Value,
    text: String,
}

/// The JSON-RPC message in an answer: the whole body, or the `data:` line of an event stream
/// that carries a response.
fn message_of(text: &str) -> Value {
    if let Ok(value) = serde_json::from_str(text) {
        return value;
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|value| value.get("result").is_some() || value.get("error").is_some())
        .unwrap_or(Value::Null)
}

/// What a case must produce.
enum Expect {
    /// HTTP status and JSON-RPC error code.
    RpcError(u16, i64),
    /// HTTP status only (bodies that are not JSON-RPC, e.g. rmcp's transport refusals).
    Status(u16),
    /// 200 with a tool result `isError: true` whose text contains this.
    ToolError(&'static str),
}

fn check(case: &str, answer: &Answer, expect: &Expect) -> Result<(), String> {
    let fail = |why: String| {
        Err(format!(
            "{case}: {why}; got {} {}",
            answer.status, answer.text
        ))
    };
    match expect {
        Expect::RpcError(status, code) => {
            if answer.status.as_u16() != *status {
                return fail(format!("status should be {status}"));
            }
            if answer.message["error"]["code"].as_i64() != Some(*code) {
                return fail(format!("JSON-RPC error code should be {code}"));
            }
        }
        Expect::Status(status) => {
            if answer.status.as_u16() != *status {
                return fail(format!("status should be {status}"));
            }
        }
        Expect::ToolError(text) => {
            let result = &answer.message["result"];
            if answer.status != StatusCode::OK || result["isError"] != json!(true) {
                return fail("should be a tool result with isError".to_owned());
            }
            let message = result["content"][0]["text"].as_str().unwrap_or_default();
            if !message.contains(text) {
                return fail(format!(
                    "tool error should mention {text:?}, says {message:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Every task in the store, through the MCP server.
async fn all_tasks(http: &reqwest::Client, server: &Taskman) -> Value {
    let answer = Post::tool("list_tasks", json!({"limit": 100}))
        .send(http, server)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.message["result"]["structuredContent"]["tasks"].clone()
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_battery_of_bad_requests_gets_exact_errors_and_changes_nothing() {
    let server = start();
    let http = reqwest::Client::new();
    let created = Post::tool("create_task", json!({"title": "the only task"}))
        .send(&http, &server)
        .await;
    assert_eq!(
        created.message["result"]["isError"],
        json!(false),
        "{}",
        created.text
    );
    let before = all_tasks(&http, &server).await;
    assert_eq!(before.as_array().map(Vec::len), Some(1));

    // Nested inside a message, so that only the depth is wrong.
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(&str, Post, Expect)> = vec![
        // Authentication.
        (
            "no token",
            Post::tool("list_tasks", json!({})).header("authorization", None),
            Expect::RpcError(401, -32001),
        ),
        (
            "wrong token",
            Post::tool("list_tasks", json!({}))
                .header("authorization", Some("Bearer wrong-token-wrong-token")),
            Expect::RpcError(401, -32001),
        ),
        (
            "token prefix",
            Post::tool("list_tasks", json!({}))
                .header("authorization", Some(&format!("Bearer {}", &TOKEN[..10]))),
            Expect::RpcError(401, -32001),
        ),
        (
            "basic auth",
            Post::tool("list_tasks", json!({})).header("authorization", Some("Basic dXNlcjpwYXNz")),
            Expect::RpcError(401, -32001),
        ),
        (
            "token, no scheme",
            Post::tool("list_tasks", json!({})).header("authorization", Some(TOKEN)),
            Expect::RpcError(401, -32001),
        ),
        // DNS rebinding.
        (
            "foreign origin",
            Post::tool("list_tasks", json!({})).header("origin", Some("https://evil.example")),
            Expect::Status(403),
        ),
        (
            "foreign host",
            Post::tool("list_tasks", json!({})).header("host", Some("evil.example")),
            Expect::Status(403),
        ),
        // Transport-level refusals.
        (
            "text/plain body",
            Post::tool("list_tasks", json!({})).header("content-type", Some("text/plain")),
            Expect::Status(415),
        ),
        (
            "no content type",
            Post::tool("list_tasks", json!({})).header("content-type", None),
            Expect::Status(415),
        ),
        (
            "accepts only JSON",
            Post::tool("list_tasks", json!({})).header("accept", Some("application/json")),
            Expect::Status(406),
        ),
        (
            "header and _meta versions differ",
            Post::tool("list_tasks", json!({})).header("mcp-protocol-version", Some("2025-11-25")),
            Expect::RpcError(400, -32020),
        ),
        (
            "unsupported protocol version",
            Post::tool("list_tasks", json!({}))
                .header("mcp-protocol-version", Some("1900-01-01"))
                .body(UNSUPPORTED_VERSION),
            Expect::RpcError(400, -32022),
        ),
        (
            "Mcp-Name mismatch",
            Post::tool("list_tasks", json!({})).header("mcp-name", Some("get_task")),
            Expect::RpcError(400, -32020),
        ),
        (
            "missing Mcp-Method",
            Post::tool("list_tasks", json!({})).header("mcp-method", None),
            Expect::RpcError(400, -32020),
        ),
        // Bodies.
        (
            "empty body",
            Post::tool("list_tasks", json!({})).body(""),
            Expect::RpcError(400, -32700),
        ),
        (
            "truncated JSON",
            Post::tool("list_tasks", json!({})).body("{\"jsonrpc\":\"2.0\",\"id\":1,"),
            Expect::RpcError(400, -32700),
        ),
        (
            "invalid UTF-8",
            Post::tool("list_tasks", json!({}))
                .body(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec()),
            Expect::RpcError(400, -32700),
        ),
        (
            "deeply nested JSON",
            Post::tool("list_tasks", json!({})).body(nested.clone()),
            Expect::RpcError(400, -32700),
        ),
        (
            "JSON array",
            Post::tool("list_tasks", json!({})).body("[]"),
            Expect::RpcError(400, -32600),
        ),
        (
            "a JSON string",
            Post::tool("list_tasks", json!({})).body("\"tools/list\""),
            Expect::RpcError(400, -32600),
        ),
        (
            "wrong jsonrpc version",
            Post::tool("list_tasks", json!({}))
                .body(r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#),
            Expect::RpcError(400, -32600),
        ),
        (
            "unknown method",
            Post::modern("tasks/obliterate", None, json!({})),
            Expect::RpcError(404, -32601),
        ),
        // Tools and their arguments.
        (
            "unknown tool",
            Post::tool("drop_database", json!({})),
            Expect::RpcError(200, -32602),
        ),
        // rmcp cannot read these params as a tools/call at all, and says so as for an unknown method.
        (
            "arguments not an object",
            Post::modern(
                "tools/call",
                Some("list_tasks"),
                json!({"name": "list_tasks", "arguments": [1, 2]}),
            ),
            Expect::RpcError(404, -32601),
        ),
        (
            "missing title",
            Post::tool("create_task", json!({})),
            Expect::ToolError("missing field `title`"),
        ),
        (
            "blank title",
            Post::tool("create_task", json!({"title": "   "})),
            Expect::ToolError("title must be 1 to 200 characters (got 0)"),
        ),
        (
            "title too long",
            Post::tool("create_task", json!({"title": long(201)})),
            Expect::ToolError("title must be 1 to 200 characters (got 201)"),
        ),
        (
            "title is a number",
            Post::tool("create_task", json!({"title": 42})),
            Expect::ToolError("argument title: invalid type: integer `42`, expected a string"),
        ),
        (
            "description too long",
            Post::tool(
                "create_task",
                json!({"title": "t", "description": long(10_001)}),
            ),
            Expect::ToolError("description must be at most 10000 characters (got 10001)"),
        ),
        (
            "unknown status",
            Post::tool("create_task", json!({"title": "t", "status": "finished"})),
            Expect::ToolError("argument status: unknown variant `finished`"),
        ),
        (
            "unknown priority",
            Post::tool("create_task", json!({"title": "t", "priority": "critical"})),
            Expect::ToolError("argument priority: unknown variant `critical`"),
        ),
        (
            "21 tags",
            Post::tool(
                "create_task",
                json!({"title": "t", "tags": (0..21).map(|n| n.to_string()).collect::<Vec<_>>()}),
            ),
            Expect::ToolError("tags"),
        ),
        (
            "duplicate tags",
            Post::tool("create_task", json!({"title": "t", "tags": ["a", "a"]})),
            Expect::ToolError("tags"),
        ),
        (
            "empty tag",
            Post::tool("create_task", json!({"title": "t", "tags": [""]})),
            Expect::ToolError("tags[0] must be 1 to 50 characters (got 0)"),
        ),
        (
            "tag too long",
            Post::tool("create_task", json!({"title": "t", "tags": [long(51)]})),
            Expect::ToolError("tags[0] must be 1 to 50 characters (got 51)"),
        ),
        (
            "impossible date",
            Post::tool(
                "create_task",
                json!({"title": "t", "due_date": "2026-02-30"}),
            ),
            Expect::ToolError("due_date must be a real calendar date"),
        ),
        (
            "date in words",
            Post::tool("create_task", json!({"title": "t", "due_date": "tomorrow"})),
            Expect::ToolError("due_date must be a real calendar date"),
        ),
        (
            "unknown argument",
            Post::tool("create_task", json!({"title": "t", "owner": "root"})),
            Expect::ToolError("argument owner: unknown field `owner`"),
        ),
        (
            "unknown project",
            Post::tool("create_task", json!({"title": "t", "project_id": "nope"})),
            Expect::ToolError("project"),
        ),
        (
            "empty id",
            Post::tool("get_task", json!({"id": ""})),
            Expect::ToolError("id must be 1 to 128 characters (got 0)"),
        ),
        (
            "id too long",
            Post::tool("get_task", json!({"id": long(129)})),
            Expect::ToolError("id must be 1 to 128 characters (got 129)"),
        ),
        (
            "id with control characters",
            Post::tool("get_task", json!({"id": "a\u{0}b\r\nc"})),
            Expect::ToolError("id must not contain control characters"),
        ),
        (
            "path traversal id",
            Post::tool("get_task", json!({"id": "../projects"})),
            Expect::ToolError("404 not_found"),
        ),
        (
            "update with nothing",
            Post::tool("update_task", json!({"id": "x"})),
            Expect::ToolError("nothing to update"),
        ),
        (
            "limit 0",
            Post::tool("list_tasks", json!({"limit": 0})),
            Expect::ToolError("limit must be an integer from 1 to 100 (got \"0\")"),
        ),
        (
            "limit 101",
            Post::tool("list_tasks", json!({"limit": 101})),
            Expect::ToolError("limit must be an integer from 1 to 100 (got \"101\")"),
        ),
        (
            "negative offset",
            Post::tool("list_tasks", json!({"offset": -1})),
            Expect::ToolError("argument offset: invalid value: integer `-1`, expected u64"),
        ),
        (
            "bad due_before",
            Post::tool("list_tasks", json!({"due_before": "2026-13-01"})),
            Expect::ToolError("due_before must be a real calendar date"),
        ),
        (
            "project name too long",
            Post::tool("create_project", json!({"name": long(101)})),
            Expect::ToolError("name must be 1 to 100 characters (got 101)"),
        ),
    ];
    let count = cases.len();
    let mut failures = Vec::new();
    for (case, post, expect) in cases {
        let answer = post.send(&http, &server).await;
        if let Err(why) = check(case, &answer, &expect) {
            failures.push(why);
        }
        if answer.status == StatusCode::UNAUTHORIZED
            && answer.headers.get("www-authenticate").is_none()
        {
            failures.push(format!("{case}: 401 without WWW-Authenticate"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Over raw TCP: what an HTTP client library would refuse to send.
    let addr = server.addr;
    let raw = tokio::task::spawn_blocking(move || raw_cases(addr))
        .await
        .unwrap();
    assert!(raw.is_empty(), "raw cases failed:\n{}", raw.join("\n"));

    // No secret was logged or exported: neither the right token nor a wrong one, nor a cookie.
    let metrics = http
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = Post::tool("list_tasks", json!({}))
        .header("cookie", Some("session=cookie-secret-value"))
        .send(&http, &server)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = server.raw_logs();
    for secret in [
        TOKEN,
        "wrong-token-wrong-token",
        "dXNlcjpwYXNz",
        "cookie-secret-value",
    ] {
        assert!(!logs.contains(secret), "a secret reached the log: {secret}");
        assert!(
            !metrics.contains(secret),
            "a secret reached the metrics: {secret}"
        );
    }

    // Still serving, and nothing was written.
    assert_eq!(all_tasks(&http, &server).await, before, "the store changed");
    let live = http
        .get(format!("{}/health/live", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(count + 5 >= 40, "the battery has {} cases", count + 5);
}

/// Sends `request` on a fresh connection and returns what came back before the server closed
/// it or two seconds passed.
fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn head_with_length(length: usize) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {length}\r\n\r\n"
    )
}

fn raw_cases(addr: std::net::SocketAddr) -> Vec<String> {
    let mut failures = Vec::new();
    let head = |extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 2\r\n{extra}\r\n{{}}"
        )
    };

    // A body declared larger than the limit: 413 with a JSON-RPC error, before any of it is
    // read (the head alone is sent, so nothing is left unread when the server closes).
    let answer = exchange(addr, head_with_length(70_000).as_bytes());
    if !answer.starts_with("HTTP/1.1 413") || !answer.contains("\"code\":-32600") {
        failures.push(format!("declared body over the limit: {answer:?}"));
    }

    // Oversized request head: 431.
    let answer = exchange(
        addr,
        head(&format!("x-padding: {}\r\n", long(20_000))).as_bytes(),
    );
    if !answer.starts_with("HTTP/1.1 431") {
        failures.push(format!("oversized head: {:?}", answer.lines().next()));
    }

    // A bare CR inside a header value (header injection): 400, and no injected header.
    let answer = exchange(
        addr,
        head("x-request-id: abc\rinjected: yes\r\n").as_bytes(),
    );
    if !answer.starts_with("HTTP/1.1 400") || answer.to_ascii_lowercase().contains("injected") {
        failures.push(format!("CR in a header: {:?}", answer.lines().next()));
    }

    // A slow client that never finishes its head is disconnected after the read timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .unwrap();
    let mut buffer = [0u8; 256];
    let closed = stream.read(&mut buffer).is_ok();
    let waited = started.elapsed();
    if !closed || waited > Duration::from_secs(3) || waited < Duration::from_millis(400) {
        failures.push(format!("slow client: closed {closed} after {waited:?}"));
    }

    // A request line that is not HTTP: 400.
    let answer = exchange(addr, b"HELLO\r\n\r\n");
    if !answer.starts_with("HTTP/1.1 400") {
        failures.push(format!("not HTTP: {:?}", answer.lines().next()));
    }
    failures
}

/// A backend whose task listing takes `delay`.
async fn slow_backend(delay: Duration) -> String {
    use axum::{Json, Router, routing::get};
    let app = Router::new()
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/v1/tasks",
            get(move || async move {
                tokio::time::sleep(delay).await;
                Json(json!({"items": [], "total": 0, "limit": 50, "offset": 0}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_shed_with_503_and_slow_answers_are_cut_off() {
    let endpoint = slow_backend(Duration::from_millis(1500)).await;
    let server = Taskman::start_server(&[
        ("TASK_MANAGER_API_ENDPOINT", &endpoint),
        ("TASKMAN_AUTH_TOKEN", TOKEN),
        ("TASKMAN_MAX_CONCURRENT_REQUESTS", "1"),
        ("TASKMAN_REQUEST_TIMEOUT_MS", "600"),
        ("TASKMAN_SSE_MAX_LIFETIME_MS", "600"),
    ]);
    let http = reqwest::Client::new();
    let server = std::sync::Arc::new(server);

    // The one slot is taken by a slow call...
    let busy = {
        let (http, server) = (http.clone(), server.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = Post::tool("list_tasks", json!({}))
                .send(&http, &server)
                .await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the next request is refused at once, and told when to come back.
    let started = Instant::now();
    let shed = Post::tool("list_tasks", json!({}))
        .send(&http, &server)
        .await;
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(shed.message["error"]["code"], json!(-32603));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "shedding took {:?}",
        started.elapsed()
    );

    // The slow call does not run past its budget: it ends well before the backend answers.
    let (answer, took) = busy.await.unwrap();
    assert!(
        took < Duration::from_millis(1400),
        "the slow call took {took:?}"
    );
    assert!(
        answer.status == 504 || answer.message.is_null(),
        "a cut-off answer carries no result: {} {}",
        answer.status,
        answer.text
    );

    // And once the slot is free, requests are served again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let live = http
        .get(format!("{}/health/live", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_internals_never_reach_the_client() {
    use axum::{Json, Router, http::StatusCode, routing::get};
    let leaky = Router::new().route(
        "/api/v1/tasks",
        get(|| async {
            let message = "SQLITE_ERROR near \"SELECT * FROM tasks\" in /var/lib/taskman/db.sqlite";
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"code": "internal", "message": message}})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, leaky).await });
    let server = Taskman::start_server(&[
        ("TASK_MANAGER_API_ENDPOINT", &endpoint),
        ("TASKMAN_AUTH_TOKEN", TOKEN),
    ]);
    let answer = Post::tool("list_tasks", json!({}))
        .send(&reqwest::Client::new(), &server)
        .await;
    check(
        "backend 500",
        &answer,
        &Expect::ToolError("task backend unavailable: the backend failed (500)"),
    )
    .unwrap();
    assert!(
        !answer.text.contains("SQLITE") && !answer.text.contains("/var/lib"),
        "{}",
        answer.text
    );
}
