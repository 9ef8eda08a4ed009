//! Contract tests of the embedded Task Manager backend against `shared/spec/backend-api.md`.
//!
//! Each test runs the backend in-process on 127.0.0.1 (port 0) and talks real HTTP to it with
//! reqwest, with a per-request timeout so that no test can hang.

#[path = "../examples/taskman/api.rs"]
#[allow(dead_code, unreachable_pub)]
mod api;
#[path = "../examples/taskman/backend/mod.rs"]
#[allow(dead_code)]
mod backend;
#[path = "../examples/taskman/contract.rs"]
#[allow(dead_code)]
mod contract;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backend::Store;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_LIMIT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A backend served on 127.0.0.1, stopped when dropped.
struct Server {
    /// `http://127.0.0.1:PORT/api/v1`
    endpoint: String,
    client: Client,
    store: Store,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// One HTTP answer, read completely.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    /// `Value::Null` when the body is empty.
    body: Value,
}

async fn start() -> Server {
    serve(Store::open(":memory:").expect("open in-memory store")).await
}

async fn serve(store: Store) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    let app = backend::router(store.clone());
    let serving = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    let client = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .expect("client");
    Server {
        endpoint: format!("http://{address}/api/v1"),
        client,
        store,
        serving,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    async fn get(&self, path: &str) -> Answer {
        send(self.request(Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        send(self.request(Method::POST, path).json(body)).await
    }

    async fn patch(&self, path: &str, body: &Value) -> Answer {
        send(self.request(Method::PATCH, path).json(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        send(self.request(Method::DELETE, path)).await
    }

    /// POST with a body sent verbatim under `content_type`.
    async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Answer {
        let mut request = self.request(Method::POST, path).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        send(request).await
    }

    async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> Answer {
        send(
            self.request(Method::POST, path)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    async fn create_task(&self, body: Value) -> Value {
        self.post("/tasks", &body)
            .await
            .expect_status(StatusCode::CREATED)
            .body
    }

    async fn create_project(&self, name: &str) -> Value {
        self.post("/projects", &json!({ "name": name }))
            .await
            .expect_status(StatusCode::CREATED)
            .body
    }

    /// The ids of `GET /tasks{query}`, with the page's `total`.
    async fn task_ids(&self, query: &str) -> (Vec<String>, u64) {
        let page = self
            .get(&format!("/tasks{query}"))
            .await
            .expect_status(StatusCode::OK)
            .body;
        let ids = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|task| id_of(task).to_owned())
            .collect();
        (ids, page["total"].as_u64().expect("total"))
    }
}

async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("request completes");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
    };
    Answer {
        status,
        headers,
        text,
        body,
    }
}

impl Answer {
    #[track_caller]
    fn expect_status(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }

    /// Checks the contract's error shape exactly and returns the message.
    #[track_caller]
    fn expect_error(&self, status: StatusCode, code: &str, field: Option<&str>) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert_json_content_type(&self.headers);
        let outer = self.body.as_object().expect("error body is an object");
        assert_eq!(outer.len(), 1, "only `error` at the top: {}", self.text);
        let error = outer["error"].as_object().expect("`error` is an object");
        assert!(
            error
                .keys()
                .all(|key| ["code", "message", "field"].contains(&key.as_str())),
            "unexpected keys in {}",
            self.text
        );
        assert_eq!(error["code"], code, "code in {}", self.text);
        assert_eq!(
            error.get("field").and_then(Value::as_str),
            field,
            "field in {}",
            self.text
        );
        let message = error["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "empty message");
        message.to_owned()
    }

    #[track_caller]
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header is text"))
    }
}

#[track_caller]
fn assert_json_content_type(headers: &HeaderMap) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
}

#[track_caller]
fn id_of(resource: &Value) -> &str {
    resource["id"].as_str().expect("id is a string")
}

#[track_caller]
fn assert_rfc3339(value: &Value) -> time::OffsetDateTime {
    let text = value.as_str().expect("timestamp is a string");
    assert!(text.ends_with('Z'), "UTC timestamp: {text}");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
}

/// A unique id that no resource has.
fn unknown_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------------
// Health and lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_is_ok() {
    let server = start().await;
    let answer = server.get("/health").await.expect_status(StatusCode::OK);
    assert_json_content_type(&answer.headers);
    assert_eq!(answer.body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn closed_store_answers_503_unavailable() {
    let server = start().await;
    server.create_task(json!({ "title": "before close" })).await;
    server.store.close().await.expect("close");
    server
        .store
        .close()
        .await
        .expect("closing twice is harmless");

    server
        .get("/health")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    server
        .get("/tasks")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    server
        .post("/tasks", &json!({ "title": "after close" }))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    server.get("/projects").await.expect_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Creating tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn created_task_has_defaults_location_and_server_fields() {
    let server = start().await;
    let answer = server
        .post("/tasks", &json!({ "title": "  Write the spec \n" }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_json_content_type(&answer.headers);
    let task = &answer.body;
    let id = id_of(task);
    let uuid = uuid::Uuid::parse_str(id).expect("id is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(task["title"], "Write the spec", "stored trimmed");
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["status"], "todo");
    assert_eq!(task["priority"], "medium");
    assert_eq!(task["project_id"], Value::Null);
    assert_eq!(task["tags"], json!([]));
    assert_eq!(task["due_date"], Value::Null);
    assert_eq!(task["completed_at"], Value::Null);
    assert_rfc3339(&task["created_at"]);
    assert_eq!(task["created_at"], task["updated_at"]);
    assert_eq!(task.as_object().expect("object").len(), 11, "{task}");

    let location = answer.header("location").expect("Location header");
    assert_eq!(location, server.url(&format!("/tasks/{id}")));
    let fetched = send(server.client.get(location))
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(&fetched.body, task);
}

#[tokio::test]
async fn created_task_keeps_every_field() {
    let server = start().await;
    let project = server.create_project("Home").await;
    let body = json!({
        "title": "Paint the fence",
        "description": "White, two coats",
        "status": "in_progress",
        "priority": "urgent",
        "project_id": id_of(&project),
        "tags": ["outdoor", "weekend"],
        "due_date": "2028-02-29",
    });
    let task = server.create_task(body.clone()).await;
    for (field, value) in body.as_object().expect("object") {
        assert_eq!(&task[field], value, "field {field}");
    }
    let fetched = server
        .get(&format!("/tasks/{}", id_of(&task)))
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(fetched.body, task);
}

#[tokio::test]
async fn location_falls_back_to_a_path_when_host_is_unusable() {
    let server = start().await;
    let answer = send(
        server
            .request(Method::POST, "/tasks")
            .header(header::HOST, "user@evil.example")
            .json(&json!({ "title": "t" })),
    )
    .await
    .expect_status(StatusCode::CREATED);
    let id = id_of(&answer.body);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v1/tasks/{id}").as_str())
    );
}

/// One invalid body and what the 422 must say.
struct InvalidCase {
    body: Value,
    field: &'static str,
    message: &'static str,
}

fn invalid(body: Value, field: &'static str, message: &'static str) -> InvalidCase {
    InvalidCase {
        body,
        field,
        message,
    }
}

/// Rules shared by POST and PATCH: every body here must be refused by both.
fn task_field_rule_cases() -> Vec<InvalidCase> {
    let tags_21: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    vec![
        invalid(
            json!({ "title": "" }),
            "title",
            "title must be 1 to 200 characters (got 0)",
        ),
        invalid(
            json!({ "title": " \t " }),
            "title",
            "title must be 1 to 200 characters (got 0)",
        ),
        invalid(
            json!({ "title": "x".repeat(201) }),
            "title",
            "title must be 1 to 200 characters (got 201)",
        ),
        invalid(
            json!({ "title": 42 }),
            "title",
            "title must be a string (got a number)",
        ),
        invalid(
            json!({ "title": null }),
            "title",
            "title must be a string (got null)",
        ),
        invalid(
            json!({ "description": "d".repeat(10_001) }),
            "description",
            "description must be at most 10000 characters (got 10001)",
        ),
        invalid(
            json!({ "description": ["a"] }),
            "description",
            "description must be a string or null (got an array)",
        ),
        invalid(
            json!({ "status": "finished" }),
            "status",
            "status must be one of todo, in_progress, done (got \"finished\")",
        ),
        invalid(
            json!({ "status": "DONE" }),
            "status",
            "status must be one of todo, in_progress, done (got \"DONE\")",
        ),
        invalid(
            json!({ "status": null }),
            "status",
            "status must be one of todo, in_progress, done (got null)",
        ),
        invalid(
            json!({ "priority": "critical" }),
            "priority",
            "priority must be one of low, medium, high, urgent (got \"critical\")",
        ),
        invalid(
            json!({ "priority": 1 }),
            "priority",
            "priority must be one of low, medium, high, urgent (got a number)",
        ),
        invalid(
            json!({ "priority": null }),
            "priority",
            "priority must be one of low, medium, high, urgent (got null)",
        ),
        invalid(
            json!({ "project_id": 7 }),
            "project_id",
            "project_id must be a string or null (got a number)",
        ),
        invalid(
            json!({ "tags": "work" }),
            "tags",
            "tags must be an array of strings (got \"work\")",
        ),
        invalid(
            json!({ "tags": null }),
            "tags",
            "tags must be an array of strings (got null)",
        ),
        invalid(
            json!({ "tags": tags_21 }),
            "tags",
            "tags must have at most 20 entries (got 21)",
        ),
        invalid(
            json!({ "tags": ["ok", ""] }),
            "tags",
            "tags[1] must be 1 to 50 characters (got 0)",
        ),
        invalid(
            json!({ "tags": ["t".repeat(51)] }),
            "tags",
            "tags[0] must be 1 to 50 characters (got 51)",
        ),
        invalid(
            json!({ "tags": ["a", true] }),
            "tags",
            "tags[1] must be a string (got a boolean)",
        ),
        invalid(
            json!({ "tags": ["a", "b", "a"] }),
            "tags",
            "tags must not contain duplicates (got \"a\" more than once)",
        ),
        invalid(
            json!({ "due_date": "2026-02-30" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2026-02-30\")",
        ),
        invalid(
            json!({ "due_date": "2027-02-29" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2027-02-29\")",
        ),
        invalid(
            json!({ "due_date": "2026-13-01" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2026-13-01\")",
        ),
        invalid(
            json!({ "due_date": "2026-1-05" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2026-1-05\")",
        ),
        invalid(
            json!({ "due_date": "2026/01/05" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2026/01/05\")",
        ),
        invalid(
            json!({ "due_date": "2026-01-05T10:00:00Z" }),
            "due_date",
            "due_date must be a real calendar date as YYYY-MM-DD (got \"2026-01-05T10:00:00Z\")",
        ),
        invalid(
            json!({ "due_date": 20260105 }),
            "due_date",
            "due_date must be a string or null (got a number)",
        ),
        invalid(
            json!({ "owner": "me" }),
            "owner",
            "unknown field \"owner\" (allowed: title, description, status, priority, project_id, tags, due_date)",
        ),
        invalid(
            json!({ "id": "mine" }),
            "id",
            "unknown field \"id\" (allowed: title, description, status, priority, project_id, tags, due_date)",
        ),
        invalid(
            json!({ "completed_at": null }),
            "completed_at",
            "unknown field \"completed_at\" (allowed: title, description, status, priority, project_id, tags, due_date)",
        ),
    ]
}

#[tokio::test]
async fn create_task_refuses_each_invalid_field_with_422() {
    let server = start().await;
    let mut cases = task_field_rule_cases();
    cases.push(invalid(json!({}), "title", "title is required"));
    cases.push(invalid(
        json!({ "description": "no title" }),
        "title",
        "title is required",
    ));
    for case in cases {
        let mut body = case.body.clone();
        let object = body.as_object_mut().expect("object");
        // Every case but the title ones needs a valid title to reach its rule.
        if case.field != "title" {
            object.insert("title".to_owned(), json!("valid"));
        }
        let answer = server.post("/tasks", &body).await;
        let message = answer.expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some(case.field),
        );
        assert_eq!(message, case.message, "body {body}");
    }
    let (ids, total) = server.task_ids("").await;
    assert!(ids.is_empty() && total == 0, "nothing was created");
}

#[tokio::test]
async fn create_task_accepts_values_at_the_limits() {
    let server = start().await;
    let tags: Vec<String> = (0..20).map(|i| format!("{i:0>50}")).collect();
    let body = json!({
        "title": format!("  {}  ", "é".repeat(200)),
        "description": "ß".repeat(10_000),
        "tags": tags,
        "due_date": "2024-02-29",
    });
    let task = server.create_task(body).await;
    assert_eq!(task["title"], "é".repeat(200));
    assert_eq!(task["tags"], json!(tags));
    let empty_description = server
        .create_task(json!({ "title": "t", "description": "", "tags": ["x".repeat(50)] }))
        .await;
    assert_eq!(empty_description["description"], "");
}

#[tokio::test]
async fn create_task_with_unknown_project_is_404_on_project_id() {
    let server = start().await;
    let answer = server
        .post(
            "/tasks",
            &json!({ "title": "orphan", "project_id": unknown_id() }),
        )
        .await;
    let message = answer.expect_error(StatusCode::NOT_FOUND, "not_found", Some("project_id"));
    assert!(message.starts_with("project_id must name an existing project"));
    assert_eq!(server.task_ids("").await.1, 0);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let server = start().await;
    let json_type = Some("application/json");
    for path in ["/tasks", "/projects"] {
        for (body, expected) in [
            ("{\"title\": ", "request body is not valid JSON"),
            ("", "request body is not valid JSON"),
            ("{'title': 'x'}", "request body is not valid JSON"),
            (
                "[{\"title\": \"x\"}]",
                "request body must be a JSON object (got an array)",
            ),
            (
                "\"title\"",
                "request body must be a JSON object (got a string)",
            ),
            ("null", "request body must be a JSON object (got null)"),
        ] {
            let message = server.post_raw(path, json_type, body).await.expect_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
            );
            assert!(message.starts_with(expected), "{body:?} → {message}");
        }
        let message = server
            .post_raw(path, None, r#"{"title":"x","name":"x"}"#)
            .await
            .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_request", None);
        assert_eq!(message, "Content-Type must be application/json (got none)");
        let message = server
            .post_raw(path, Some("text/plain"), r#"{"title":"x","name":"x"}"#)
            .await
            .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_request", None);
        assert_eq!(
            message,
            "Content-Type must be application/json (got \"text/plain\")"
        );
    }
    server
        .post_raw(
            "/tasks",
            Some("Application/JSON; charset=utf-8"),
            r#"{"title":"x"}"#,
        )
        .await
        .expect_status(StatusCode::CREATED);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let server = start().await;
    let wrapper = r#"{"title":"x","description":""}"#;
    let at_limit = format!(
        r#"{{"title":"x","description":"{}"}}"#,
        "d".repeat(BODY_LIMIT - wrapper.len())
    );
    assert_eq!(at_limit.len(), BODY_LIMIT);
    // Exactly at the limit the body is read, and refused on its merits.
    server
        .post_raw("/tasks", Some("application/json"), &at_limit)
        .await
        .expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some("description"),
        );
    let over_limit = format!("{at_limit} ");
    let message = server
        .post_raw("/tasks", Some("application/json"), &over_limit)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad_request", None);
    assert_eq!(message, "request body must be at most 1048576 bytes");
}

// ---------------------------------------------------------------------------------------------
// Reading, updating, deleting tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_task_and_project_ids_are_404() {
    let server = start().await;
    let missing = unknown_id();
    let task_path = format!("/tasks/{missing}");
    for answer in [
        server.get(&task_path).await,
        server.patch(&task_path, &json!({ "title": "x" })).await,
        server.delete(&task_path).await,
        server.get(&format!("/projects/{missing}")).await,
        server.get("/tasks/not-a-uuid").await,
    ] {
        let message = answer.expect_error(StatusCode::NOT_FOUND, "not_found", None);
        assert!(message.starts_with("no "), "{message}");
    }
    let message =
        server
            .get(&task_path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(message, format!("no task has id \"{missing}\""));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = start().await;
    for path in ["/nope", "", "/tasks/a/b"] {
        server
            .get(path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found", None);
    }
    send(
        server
            .client
            .get(server.endpoint.replace("/api/v1", "/elsewhere")),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found", None);

    let answer = send(server.request(Method::PUT, "/tasks")).await;
    answer.expect_error(StatusCode::METHOD_NOT_ALLOWED, "bad_request", None);
    let allow = answer.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    send(server.request(Method::DELETE, &format!("/projects/{}", unknown_id())))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "bad_request", None);
    send(server.request(Method::POST, "/health"))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "bad_request", None);
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let server = start().await;
    let task = server
        .create_task(json!({ "title": "gone soon", "tags": ["a"] }))
        .await;
    let kept = server.create_task(json!({ "title": "stays" })).await;
    let path = format!("/tasks/{}", id_of(&task));
    let answer = server
        .delete(&path)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    assert!(answer.text.is_empty());
    server
        .get(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found", None);
    server
        .delete(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(
        server.task_ids("").await,
        (vec![id_of(&kept).to_owned()], 1)
    );
    assert_eq!(server.task_ids("?tag=a").await.1, 0, "tags went too");
}

#[tokio::test]
async fn patch_changes_only_the_fields_sent() {
    let server = start().await;
    let project = server.create_project("Work").await;
    let original = server
        .create_task(json!({
            "title": "Quarterly report",
            "description": "Numbers",
            "project_id": id_of(&project),
            "tags": ["q3"],
            "due_date": "2026-12-15",
        }))
        .await;
    let path = format!("/tasks/{}", id_of(&original));

    let updated = server
        .patch(&path, &json!({ "priority": "high" }))
        .await
        .expect_status(StatusCode::OK)
        .body;
    for (field, value) in original.as_object().expect("object") {
        match field.as_str() {
            "priority" => assert_eq!(updated[field], "high"),
            "updated_at" => assert!(
                assert_rfc3339(&updated[field]) > assert_rfc3339(value),
                "updated_at moves forward"
            ),
            _ => assert_eq!(&updated[field], value, "field {field} must not change"),
        }
    }

    let retitled = server
        .patch(
            &path,
            &json!({ "title": "  Q3 report ", "tags": ["q3", "finance"], "due_date": "2026-12-20" }),
        )
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(retitled["title"], "Q3 report");
    assert_eq!(retitled["tags"], json!(["q3", "finance"]));
    assert_eq!(retitled["due_date"], "2026-12-20");
    assert_eq!(retitled["description"], "Numbers");

    let unchanged = server
        .patch(&path, &json!({}))
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(unchanged["title"], "Q3 report");
    assert_eq!(
        server.get(&path).await.expect_status(StatusCode::OK).body,
        unchanged
    );
}

#[tokio::test]
async fn patch_null_clears_nullable_fields() {
    let server = start().await;
    let project = server.create_project("Errands").await;
    let task = server
        .create_task(json!({
            "title": "Post office",
            "description": "Parcel",
            "project_id": id_of(&project),
            "tags": ["town"],
            "due_date": "2026-12-01",
        }))
        .await;
    let path = format!("/tasks/{}", id_of(&task));
    let cleared = server
        .patch(
            &path,
            &json!({ "description": null, "project_id": null, "due_date": null, "tags": [] }),
        )
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["project_id"], Value::Null);
    assert_eq!(cleared["due_date"], Value::Null);
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(cleared["title"], "Post office");
    assert_eq!(
        server.get(&path).await.expect_status(StatusCode::OK).body,
        cleared
    );
}

#[tokio::test]
async fn patch_refuses_each_invalid_field_and_changes_nothing() {
    let server = start().await;
    let task = server.create_task(json!({ "title": "Stable" })).await;
    let path = format!("/tasks/{}", id_of(&task));
    for case in task_field_rule_cases() {
        let message = server.patch(&path, &case.body).await.expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some(case.field),
        );
        assert_eq!(message, case.message, "body {}", case.body);
    }
    // A valid field next to an invalid one is not applied either.
    server
        .patch(&path, &json!({ "title": "Changed", "status": "nope" }))
        .await
        .expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some("status"),
        );
    assert_eq!(
        server.get(&path).await.expect_status(StatusCode::OK).body,
        task
    );
}

#[tokio::test]
async fn patch_with_unknown_project_is_404_on_project_id() {
    let server = start().await;
    let task = server.create_task(json!({ "title": "Homeless" })).await;
    let path = format!("/tasks/{}", id_of(&task));
    server
        .patch(
            &path,
            &json!({ "project_id": unknown_id(), "title": "moved" }),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found", Some("project_id"));
    assert_eq!(
        server.get(&path).await.expect_status(StatusCode::OK).body,
        task
    );
}

#[tokio::test]
async fn patch_bodies_that_are_not_json_objects_are_refused() {
    let server = start().await;
    let task = server.create_task(json!({ "title": "t" })).await;
    let url = server.url(&format!("/tasks/{}", id_of(&task)));
    send(
        server
            .client
            .patch(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body("{"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request", None);
    send(
        server
            .client
            .patch(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body("[]"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request", None);
    send(server.client.patch(&url).body(r#"{"title":"u"}"#))
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_request", None);
}

#[tokio::test]
async fn completed_at_follows_the_done_status() {
    let server = start().await;
    let task = server.create_task(json!({ "title": "Finish me" })).await;
    let path = format!("/tasks/{}", id_of(&task));
    assert_eq!(task["completed_at"], Value::Null);

    let done = server
        .patch(&path, &json!({ "status": "done" }))
        .await
        .expect_status(StatusCode::OK)
        .body;
    let completed_at = assert_rfc3339(&done["completed_at"]);
    assert_eq!(done["completed_at"], done["updated_at"]);
    assert!(completed_at > assert_rfc3339(&task["created_at"]));

    let still_done = server
        .patch(&path, &json!({ "status": "done", "priority": "low" }))
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(
        still_done["completed_at"], done["completed_at"],
        "done again keeps the first completion"
    );

    let reopened = server
        .patch(&path, &json!({ "status": "in_progress" }))
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(reopened["completed_at"], Value::Null);

    let born_done = server
        .create_task(json!({ "title": "Already done", "status": "done" }))
        .await;
    assert_eq!(born_done["completed_at"], born_done["created_at"]);
}

// ---------------------------------------------------------------------------------------------
// Listing tasks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_filters_select_exactly_the_matching_tasks() {
    let server = start().await;
    let home = id_of(&server.create_project("Home").await).to_owned();
    let work = id_of(&server.create_project("Work").await).to_owned();
    let milk = server
        .create_task(json!({
            "title": "Buy milk", "priority": "low", "project_id": home,
            "tags": ["home", "errand"], "due_date": "2026-12-01",
        }))
        .await;
    let report = server
        .create_task(json!({
            "title": "Write report", "description": "Quarterly MILK-powder figures",
            "status": "in_progress", "priority": "high", "project_id": work,
            "tags": ["work"], "due_date": "2026-11-30",
        }))
        .await;
    let release = server
        .create_task(json!({
            "title": "Ship release", "status": "done", "priority": "urgent",
            "tags": ["work", "Errand"],
        }))
        .await;
    let trip = server
        .create_task(json!({
            "title": "Plan trip", "project_id": home, "due_date": "2027-01-15",
        }))
        .await;
    let [milk, report, release, trip] = [&milk, &report, &release, &trip].map(id_of);

    let cases: &[(&str, &[&str])] = &[
        ("", &[milk, report, release, trip]),
        ("?status=todo", &[milk, trip]),
        ("?status=in_progress", &[report]),
        ("?status=done", &[release]),
        ("?priority=high", &[report]),
        ("?priority=medium", &[trip]),
        (&format!("?project_id={home}"), &[milk, trip]),
        (&format!("?project_id={}", unknown_id()), &[]),
        ("?tag=work", &[report, release]),
        ("?tag=errand", &[milk]),
        ("?tag=Errand", &[release]),
        ("?tag=err", &[]),
        ("?q=milk", &[milk, report]),
        ("?q=MiLk", &[milk, report]),
        ("?q=powder", &[report]),
        ("?q=ship%20rel", &[release]),
        ("?q=", &[milk, report, release, trip]),
        ("?q=nothing-like-this", &[]),
        ("?due_before=2026-12-01", &[report]),
        ("?due_before=2026-12-02", &[milk, report]),
        ("?due_before=2099-01-01", &[milk, report, trip]),
        (&format!("?status=todo&project_id={home}&tag=home"), &[milk]),
        ("?tag=work&status=done&q=ship", &[release]),
        ("?priority=low&status=done", &[]),
    ];
    for (query, expected) in cases {
        let (ids, total) = server.task_ids(query).await;
        assert_eq!(ids, *expected, "GET /tasks{query}");
        assert_eq!(total, expected.len() as u64, "total of GET /tasks{query}");
    }
}

#[tokio::test]
async fn list_reports_total_limit_and_offset() {
    let server = start().await;
    for i in 0..3 {
        server
            .create_task(json!({ "title": format!("t{i}") }))
            .await;
    }
    let page = server
        .get("/tasks")
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(
        (&page["total"], &page["limit"], &page["offset"]),
        (&json!(3), &json!(50), &json!(0))
    );
    let page = server
        .get("/tasks?limit=2&offset=1")
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (&page["total"], &page["limit"], &page["offset"]),
        (&json!(3), &json!(2), &json!(1))
    );
    let page = server
        .get("/tasks?limit=100&offset=10")
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["total"], 3);
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let server = start().await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "/tasks?status=open",
            "status",
            "status must be one of todo, in_progress, done (got \"open\")",
        ),
        (
            "/tasks?priority=p1",
            "priority",
            "priority must be one of low, medium, high, urgent (got \"p1\")",
        ),
        (
            "/tasks?limit=0",
            "limit",
            "limit must be an integer from 1 to 100 (got \"0\")",
        ),
        (
            "/tasks?limit=101",
            "limit",
            "limit must be an integer from 1 to 100 (got \"101\")",
        ),
        (
            "/tasks?limit=ten",
            "limit",
            "limit must be an integer from 1 to 100 (got \"ten\")",
        ),
        (
            "/tasks?limit=-5",
            "limit",
            "limit must be an integer from 1 to 100 (got \"-5\")",
        ),
        (
            "/tasks?limit=",
            "limit",
            "limit must be an integer from 1 to 100 (got \"\")",
        ),
        (
            "/tasks?limit=%2B5",
            "limit",
            "limit must be an integer from 1 to 100 (got \"+5\")",
        ),
        (
            "/tasks?offset=-1",
            "offset",
            "offset must be an integer from 0 to 9223372036854775807 (got \"-1\")",
        ),
        (
            "/tasks?offset=1.5",
            "offset",
            "offset must be an integer from 0 to 9223372036854775807 (got \"1.5\")",
        ),
        (
            "/tasks?offset=99999999999999999999",
            "offset",
            "offset must be an integer from 0 to 9223372036854775807 (got \"99999999999999999999\")",
        ),
        (
            "/tasks?due_before=2026-02-30",
            "due_before",
            "due_before must be a real calendar date as YYYY-MM-DD (got \"2026-02-30\")",
        ),
        (
            "/tasks?due_before=soon",
            "due_before",
            "due_before must be a real calendar date as YYYY-MM-DD (got \"soon\")",
        ),
        (
            "/tasks?tag=",
            "tag",
            "tag must be 1 to 50 characters (got 0)",
        ),
        (
            "/tasks?project_id=",
            "project_id",
            "project_id must not be empty",
        ),
        (
            "/tasks?sort=title",
            "sort",
            "unknown query parameter \"sort\" (allowed: status, priority, project_id, tag, q, due_before, limit, offset)",
        ),
        (
            "/tasks?status=todo&status=done",
            "status",
            "query parameter status must be given at most once",
        ),
        (
            "/projects?limit=0",
            "limit",
            "limit must be an integer from 1 to 100 (got \"0\")",
        ),
        (
            "/projects?limit=500",
            "limit",
            "limit must be an integer from 1 to 100 (got \"500\")",
        ),
        (
            "/projects?offset=x",
            "offset",
            "offset must be an integer from 0 to 9223372036854775807 (got \"x\")",
        ),
        (
            "/projects?status=todo",
            "status",
            "unknown query parameter \"status\" (allowed: limit, offset)",
        ),
    ];
    for (path, parameter, expected) in cases {
        let message = server.get(path).await.expect_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(parameter),
        );
        assert_eq!(&message, expected, "GET {path}");
    }
}

#[tokio::test]
async fn pagination_is_stable_without_gaps_or_duplicates() {
    let server = Arc::new(start().await);
    // Created concurrently, so that creation times are as close together as they get.
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..25 {
        let server = Arc::clone(&server);
        creating.spawn(async move {
            server
                .create_task(json!({ "title": format!("task {i}") }))
                .await
        });
    }
    let mut created = Vec::new();
    while let Some(task) = creating.join_next().await {
        created.push(task.expect("create"));
    }

    let full = server
        .get("/tasks?limit=100")
        .await
        .expect_status(StatusCode::OK)
        .body;
    let full_items = full["items"].as_array().expect("items").clone();
    assert_eq!(full["total"], 25);
    let order: Vec<(String, String)> = full_items
        .iter()
        .map(|task| {
            (
                task["created_at"].as_str().unwrap_or_default().to_owned(),
                id_of(task).to_owned(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "ordered by created_at then id");

    let mut paged = Vec::new();
    for offset in (0..28).step_by(7) {
        let page = server
            .get(&format!("/tasks?limit=7&offset={offset}"))
            .await
            .expect_status(StatusCode::OK)
            .body;
        assert_eq!(page["total"], 25);
        let items = page["items"].as_array().expect("items");
        assert_eq!(
            items.len(),
            if offset == 21 { 4 } else { 7 },
            "page at {offset}"
        );
        paged.extend(items.iter().cloned());
    }
    assert_eq!(paged, full_items, "pages concatenate to the full listing");
    let mut ids: Vec<&str> = paged.iter().map(id_of).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 25, "no duplicates");
    let mut created_ids: Vec<&str> = created.iter().map(id_of).collect();
    created_ids.sort_unstable();
    assert_eq!(ids, created_ids, "no gaps");
}

// ---------------------------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn projects_are_created_read_and_listed() {
    let server = start().await;
    let answer = server
        .post(
            "/projects",
            &json!({ "name": "  Garden  ", "description": "Outdoor jobs" }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    let project = &answer.body;
    let id = id_of(project);
    assert_eq!(
        answer.header("location"),
        Some(server.url(&format!("/projects/{id}")).as_str())
    );
    assert_eq!(project["name"], "Garden");
    assert_eq!(project["description"], "Outdoor jobs");
    assert_rfc3339(&project["created_at"]);
    assert_eq!(project.as_object().expect("object").len(), 4);
    assert_eq!(
        &server
            .get(&format!("/projects/{id}"))
            .await
            .expect_status(StatusCode::OK)
            .body,
        project
    );

    let second = server.create_project("Kitchen").await;
    let third = server.create_project("Attic").await;
    let page = server
        .get("/projects")
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(page["total"], 3);
    assert_eq!((&page["limit"], &page["offset"]), (&json!(50), &json!(0)));
    assert_eq!(
        page["items"],
        json!([project, second, third]),
        "creation order"
    );
    let page = server
        .get("/projects?limit=1&offset=1")
        .await
        .expect_status(StatusCode::OK)
        .body;
    assert_eq!(page["items"], json!([second]));
    assert_eq!(
        (&page["total"], &page["limit"], &page["offset"]),
        (&json!(3), &json!(1), &json!(1))
    );
}

#[tokio::test]
async fn project_names_are_unique_ignoring_case() {
    let server = start().await;
    server.create_project("Home Renovation").await;
    server.create_project("Ärger").await;
    for taken in [
        "Home Renovation",
        "HOME renovation",
        "  home renovation ",
        "ärger",
        "ÄRGER",
    ] {
        let message = server
            .post("/projects", &json!({ "name": taken }))
            .await
            .expect_error(StatusCode::CONFLICT, "conflict", Some("name"));
        assert!(
            message.starts_with("name must be unique ignoring case"),
            "{message}"
        );
    }
    assert_eq!(
        server
            .get("/projects")
            .await
            .expect_status(StatusCode::OK)
            .body["total"],
        2
    );
}

#[tokio::test]
async fn create_project_refuses_each_invalid_field_with_422() {
    let server = start().await;
    let cases = [
        invalid(json!({}), "name", "name is required"),
        invalid(
            json!({ "name": "" }),
            "name",
            "name must be 1 to 100 characters (got 0)",
        ),
        invalid(
            json!({ "name": "   " }),
            "name",
            "name must be 1 to 100 characters (got 0)",
        ),
        invalid(
            json!({ "name": "n".repeat(101) }),
            "name",
            "name must be 1 to 100 characters (got 101)",
        ),
        invalid(
            json!({ "name": null }),
            "name",
            "name must be a string (got null)",
        ),
        invalid(
            json!({ "name": ["x"] }),
            "name",
            "name must be a string (got an array)",
        ),
        invalid(
            json!({ "name": "ok", "description": "d".repeat(2_001) }),
            "description",
            "description must be at most 2000 characters (got 2001)",
        ),
        invalid(
            json!({ "name": "ok", "description": 5 }),
            "description",
            "description must be a string or null (got a number)",
        ),
        invalid(
            json!({ "name": "ok", "color": "red" }),
            "color",
            "unknown field \"color\" (allowed: name, description)",
        ),
    ];
    for case in cases {
        let message = server.post("/projects", &case.body).await.expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some(case.field),
        );
        assert_eq!(message, case.message, "body {}", case.body);
    }
    let at_limits = server
        .post(
            "/projects",
            &json!({ "name": "n".repeat(100), "description": "d".repeat(2_000) }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .body;
    assert_eq!(at_limits["name"], "n".repeat(100));
    let no_description = server
        .post(
            "/projects",
            &json!({ "name": "plain", "description": null }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .body;
    assert_eq!(no_description["description"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Idempotent creation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn repeated_idempotency_key_replays_the_first_answer() {
    let server = start().await;
    let body = json!({ "title": "Once only", "tags": ["a", "b"], "priority": "high" });
    let first = server.post_with_key("/tasks", "retry-42", &body).await;
    let first = first.expect_status(StatusCode::CREATED);
    let second = server
        .post_with_key("/tasks", "retry-42", &body)
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(second.text, first.text, "same body, byte for byte");
    assert_eq!(second.header("location"), first.header("location"));
    assert!(first.header("location").is_some());
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);

    // The same JSON with its keys in another order and other white space is the same body.
    let reordered = r#"{ "priority":"high",  "tags":["a","b"], "title":"Once only" }"#;
    let third = send(
        server
            .request(Method::POST, "/tasks")
            .header("Idempotency-Key", "retry-42")
            .header(header::CONTENT_TYPE, "application/json")
            .body(reordered),
    )
    .await
    .expect_status(StatusCode::CREATED);
    assert_eq!(third.text, first.text);
    assert_eq!(server.task_ids("").await.1, 1, "one task was created");

    let message = server
        .post_with_key("/tasks", "retry-42", &json!({ "title": "Something else" }))
        .await
        .expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some("Idempotency-Key"),
        );
    assert!(message.contains("different body"), "{message}");
    assert_eq!(server.task_ids("").await.1, 1, "still one task");

    server
        .post_with_key("/tasks", "retry-43", &body)
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(server.task_ids("").await.1, 2, "another key, another task");
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_endpoint() {
    let server = start().await;
    let project = server
        .post_with_key("/projects", "shared-key", &json!({ "name": "Scoped" }))
        .await
        .expect_status(StatusCode::CREATED);
    let replay = server
        .post_with_key("/projects", "shared-key", &json!({ "name": "Scoped" }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(replay.text, project.text, "replayed, not a 409");
    server
        .post_with_key("/projects", "shared-key", &json!({ "name": "Other" }))
        .await
        .expect_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            Some("Idempotency-Key"),
        );
    server
        .post_with_key("/tasks", "shared-key", &json!({ "title": "Scoped" }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(server.task_ids("").await.1, 1);
    assert_eq!(
        server
            .get("/projects")
            .await
            .expect_status(StatusCode::OK)
            .body["total"],
        1
    );
}

#[tokio::test]
async fn failed_creation_does_not_consume_the_idempotency_key() {
    let server = start().await;
    server.create_project("Taken").await;
    let body = json!({ "name": "taken" });
    for _ in 0..2 {
        server
            .post_with_key("/projects", "k-1", &body)
            .await
            .expect_error(StatusCode::CONFLICT, "conflict", Some("name"));
    }
    server
        .post_with_key("/projects", "k-1", &json!({ "name": "Free" }))
        .await
        .expect_status(StatusCode::CREATED);
    let orphan = json!({ "title": "x", "project_id": unknown_id() });
    server
        .post_with_key("/tasks", "k-2", &orphan)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found", Some("project_id"));
    server
        .post_with_key("/tasks", "k-2", &json!({ "title": "x" }))
        .await
        .expect_status(StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let server = start().await;
    let too_long = "k".repeat(129);
    let bad_keys: [&[u8]; 5] = [
        b"",
        too_long.as_bytes(),
        b"has space",
        "caf\u{e9}".as_bytes(),
        b"tab\tinside",
    ];
    for key in bad_keys {
        for (path, body) in [
            ("/tasks", json!({ "title": "t" })),
            ("/projects", json!({ "name": "p" })),
        ] {
            let answer = send(
                server
                    .request(Method::POST, path)
                    .header(
                        "Idempotency-Key",
                        HeaderValue::from_bytes(key).expect("header"),
                    )
                    .json(&body),
            )
            .await;
            let message = answer.expect_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("Idempotency-Key"),
            );
            assert!(
                message.starts_with("Idempotency-Key must be 1 to 128 visible ASCII characters"),
                "{message}"
            );
        }
    }
    let twice = send(
        server
            .request(Method::POST, "/tasks")
            .header("Idempotency-Key", "a")
            .header("Idempotency-Key", "b")
            .json(&json!({ "title": "t" })),
    )
    .await;
    twice.expect_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("Idempotency-Key"),
    );
    assert_eq!(server.task_ids("").await.1, 0, "nothing was created");

    let longest = "~".repeat(128);
    server
        .post_with_key("/tasks", &longest, &json!({ "title": "t" }))
        .await
        .expect_status(StatusCode::CREATED);
    server
        .post_with_key("/tasks", "!", &json!({ "title": "t" }))
        .await
        .expect_status(StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// Request correlation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn well_formed_request_ids_are_echoed() {
    let server = start().await;
    let longest = "a".repeat(128);
    let valid = ["abc-123", "A.b_c:d/e+f=g@h", longest.as_str()];
    for id in valid {
        for path in ["/health", "/tasks/nope", "/no-such-route"] {
            let answer = send(server.request(Method::GET, path).header("X-Request-ID", id)).await;
            assert_eq!(answer.header("x-request-id"), Some(id), "GET {path}");
        }
    }
    let too_long = "a".repeat(129);
    for id in ["has space", "semi;colon", "quote\"", too_long.as_str()] {
        let answer = send(
            server
                .request(Method::GET, "/health")
                .header("X-Request-ID", id),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-request-id"), None, "{id:?} is not echoed");
    }
    let answer = server.get("/health").await;
    assert_eq!(answer.header("x-request-id"), None);
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Everything logged by this test binary. A global subscriber rather than a scoped one:
/// tracing caches per-callsite interest across threads, which makes scoped subscribers miss
/// events while other tests run.
fn captured_log() -> &'static CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("only global subscriber");
        log
    })
}

#[tokio::test]
async fn each_request_is_logged_once_with_correlation_fields_and_no_body() {
    let log = captured_log();
    let server = start().await;
    let created_id = format!("created-{}", uuid::Uuid::new_v4());
    let refused_id = format!("refused-{}", uuid::Uuid::new_v4());
    let secret = format!("secret-title-{}", uuid::Uuid::new_v4());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    send(
        server
            .request(Method::POST, "/tasks")
            .header("X-Request-ID", &created_id)
            .header("traceparent", traceparent)
            .json(&json!({ "title": secret })),
    )
    .await
    .expect_status(StatusCode::CREATED);
    send(
        server
            .request(Method::GET, "/tasks?status=bogus")
            .header("X-Request-ID", &refused_id),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request", Some("status"));

    let text = log.text();
    let request_lines = |request_id: &str| -> Vec<String> {
        text.lines()
            .filter(|line| {
                line.contains("request handled")
                    && line.contains(&format!("request_id=\"{request_id}\""))
            })
            .map(str::to_owned)
            .collect()
    };
    let created = request_lines(&created_id);
    assert_eq!(created.len(), 1, "one line per request:\n{text}");
    for expected in [
        " INFO ",
        "method=POST",
        "path=/api/v1/tasks",
        "status=201",
        &format!("traceparent=\"{traceparent}\""),
        "latency_ms=",
    ] {
        assert!(
            created[0].contains(expected),
            "{expected} missing in {}",
            created[0]
        );
    }
    let refused = request_lines(&refused_id);
    assert_eq!(refused.len(), 1, "one line per request:\n{text}");
    assert!(
        refused[0].contains("method=GET") && refused[0].contains("status=400"),
        "{}",
        refused[0]
    );
    assert!(!refused[0].contains("traceparent"), "none was sent");
    assert!(!text.contains(&secret), "bodies are never logged");
}

// ---------------------------------------------------------------------------------------------
// File databases
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "taskman-backend-contract-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn file_database_keeps_its_data_across_reopening() {
    let dir = TempDir::new();
    let db_path = dir.0.join("nested").join("tasks.sqlite");
    let db = db_path.to_str().expect("UTF-8 temp path").to_owned();

    let server = serve(Store::open(&db).expect("open file store")).await;
    let project = server.create_project("Persistent").await;
    let task = server
        .create_task(json!({
            "title": "Survive a restart", "project_id": id_of(&project),
            "tags": ["disk", "wal"], "due_date": "2027-03-01", "status": "done",
        }))
        .await;
    server
        .post_with_key("/tasks", "persisted-key", &json!({ "title": "keyed" }))
        .await
        .expect_status(StatusCode::CREATED);
    server.store.close().await.expect("close file store");
    server
        .get("/health")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    drop(server);
    let wal = db_path.with_file_name("tasks.sqlite-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "WAL checkpointed on close"
    );

    let reopened = serve(Store::open(&db).expect("reopen file store")).await;
    reopened.get("/health").await.expect_status(StatusCode::OK);
    assert_eq!(
        reopened
            .get(&format!("/tasks/{}", id_of(&task)))
            .await
            .expect_status(StatusCode::OK)
            .body,
        task
    );
    assert_eq!(
        reopened
            .get(&format!("/projects/{}", id_of(&project)))
            .await
            .expect_status(StatusCode::OK)
            .body,
        project
    );
    assert_eq!(reopened.task_ids("?tag=wal").await.1, 1);
    let replay = reopened
        .post_with_key("/tasks", "persisted-key", &json!({ "title": "keyed" }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(reopened.task_ids("").await.1, 2);

    // A task created after reopening sorts after the old ones.
    let newer = reopened
        .create_task(json!({ "title": "after restart" }))
        .await;
    let (ids, _) = reopened.task_ids("").await;
    assert_eq!(ids.last().map(String::as_str), Some(id_of(&newer)));
    reopened.store.close().await.expect("close again");
}

#[tokio::test]
async fn open_failure_names_the_path() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let blocker = dir.0.join("plain-file");
    std::fs::write(&blocker, b"not a directory").expect("write file");
    let db = blocker.join("sub").join("tasks.sqlite");
    let db = db.to_str().expect("UTF-8 temp path");
    let error = Store::open(db).expect_err("a file is in the way");
    let text = error.to_string();
    assert!(text.contains(db), "{text}");
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn storage_failures_are_500_internal_without_details() {
    let dir = TempDir::new();
    let db = dir.0.join("tasks.sqlite");
    let db = db.to_str().expect("UTF-8 temp path");
    let server = serve(Store::open(db).expect("open file store")).await;
    let task = server
        .create_task(json!({ "title": "t", "tags": ["x"] }))
        .await;
    // Break the schema behind the backend's back.
    rusqlite::Connection::open(db)
        .and_then(|other| other.execute_batch("DROP TABLE task_tags"))
        .expect("drop a table");

    let answer = server.get(&format!("/tasks/{}", id_of(&task))).await;
    let message = answer.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    for leak in ["task_tags", "SQL", "sqlite", "no such table", db] {
        assert!(!message.contains(leak), "{leak:?} leaked in {message:?}");
    }
    server
        .post("/tasks", &json!({ "title": "u" }))
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    // The database itself still answers, so the backend is not reported unavailable.
    server.get("/health").await.expect_status(StatusCode::OK);
    server.store.close().await.expect("close");
}

#[tokio::test]
async fn open_refuses_a_database_from_a_newer_schema() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let db = dir.0.join("future.sqlite");
    let db = db.to_str().expect("UTF-8 temp path");
    rusqlite::Connection::open(db)
        .and_then(|conn| conn.execute_batch("PRAGMA user_version = 99"))
        .expect("prepare database");
    let error = Store::open(db).expect_err("newer schema");
    let text = error.to_string();
    assert!(text.contains(db) && text.contains("99"), "{text}");
}
