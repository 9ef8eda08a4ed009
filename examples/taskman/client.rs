//! The outbound side: a typed client of the Task Manager REST API over a plain
//! `tower::Service<http::Request<_>>`, so that resilience and observability layers can wrap
//! the transport without the client knowing.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Serialize, de::DeserializeOwned};
use tower::{BoxError, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};
use tower_bulwark::{
    metrics::{ClientMetrics, ErrorClass, FromExtension},
    request_id::PropagateRequestIdLayer,
};

use crate::api::{ApiError, ErrorBody, Page, Project, Task};

/// Request body sent to the backend: always a complete buffer, so a request can be replayed.
pub type RequestBody = Full<Bytes>;
/// Response body as seen by the client, whatever layers sit below it.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
/// The transport stack the client talks through.
pub type BackendService =
    BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, BoxError>;

/// The largest backend answer read into memory; a bigger one is an error, not an OOM.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// hyper-util's pooled HTTP/1 client with connect and whole-request timeouts.
pub fn http_transport(config: &TransportConfig, metrics: Option<&ClientMetrics>) -> BackendService {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build::<_, RequestBody>(connector);
    let stack = ServiceBuilder::new()
        // The ID of the MCP request being served goes along to the backend.
        .layer(PropagateRequestIdLayer::new())
        // Covers connecting, sending and waiting for the response head; the bodies of this
        // API are small JSON documents, read right after and bounded in size.
        .timeout(config.request_timeout)
        .map_response(box_body)
        .service(client);
    let Some(metrics) = metrics else {
        return BoxCloneSyncService::new(stack);
    };
    // Outside the timeout, so that a timed-out call is counted as one.
    let metrics = metrics
        .layer()
        .classify_operation(FromExtension::new(operation_label))
        .classify_error(classify_error);
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(box_body)
            .layer(metrics)
            .service(stack),
    )
}

fn box_body<B>(response: Response<B>) -> Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| {
        body.map_err(|err| -> BoxError { err.into() })
            .boxed_unsync()
    })
}

fn operation_label(operation: &Operation) -> &str {
    operation.name()
}

fn classify_error(err: &BoxError) -> ErrorClass {
    if err.is::<tower::timeout::error::Elapsed>() {
        ErrorClass::Timeout
    } else {
        ErrorClass::from_error(err.as_ref())
    }
}

/// Why a backend call did not produce the expected resource.
#[derive(Debug)]
pub enum ClientError {
    /// The backend answered with an error status and (usually) a contract error body.
    Api { status: StatusCode, error: ApiError },
    /// No usable answer: connection refused or reset, timeout, unreadable body.
    Unavailable(String),
}

impl ClientError {
    fn unavailable(err: impl fmt::Display) -> Self {
        ClientError::Unavailable(err.to_string())
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Api { error, .. } => f.write_str(&error.message),
            ClientError::Unavailable(reason) => write!(f, "task backend unavailable: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The backend operation a request performs, carried in the request's extensions so that the
/// layers of the client stack can label, key and classify it without parsing URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ListTasks,
    GetTask,
    CreateTask,
    UpdateTask,
    DeleteTask,
    ListProjects,
    CreateProject,
    Health,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListTasks => "list_tasks",
            Operation::GetTask => "get_task",
            Operation::CreateTask => "create_task",
            Operation::UpdateTask => "update_task",
            Operation::DeleteTask => "delete_task",
            Operation::ListProjects => "list_projects",
            Operation::CreateProject => "create_project",
            Operation::Health => "health",
        }
    }

    fn method(self) -> Method {
        match self {
            Operation::ListTasks
            | Operation::GetTask
            | Operation::ListProjects
            | Operation::Health => Method::GET,
            Operation::CreateTask | Operation::CreateProject => Method::POST,
            Operation::UpdateTask => Method::PATCH,
            Operation::DeleteTask => Method::DELETE,
        }
    }

    /// Creates carry an `Idempotency-Key`: one per logical create, so that a retry of the
    /// request (same key, same body) can never make a second resource.
    fn creates(self) -> bool {
        matches!(self, Operation::CreateTask | Operation::CreateProject)
    }
}

/// Query of `GET /tasks`; `None` leaves a filter out.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    pub status: Option<String>,
    pub priority: Option<String>,
    pub project_id: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    pub due_before: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

impl TaskQuery {
    /// The query parameters to send, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = [
            ("status", self.status.clone()),
            ("priority", self.priority.clone()),
            ("project_id", self.project_id.clone()),
            ("tag", self.tag.clone()),
            ("q", self.q.clone()),
            ("due_before", self.due_before.clone()),
        ];
        let numbers = [("limit", self.limit), ("offset", self.offset)];
        text.into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .chain(
                numbers
                    .into_iter()
                    .filter_map(|(name, n)| n.map(|n| (name, n.to_string()))),
            )
            .collect()
    }
}

/// A typed client of the Task Manager REST API v1.
#[derive(Clone)]
pub struct BackendClient {
    service: BackendService,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:4000/api/v1`.
    base: String,
}

impl fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BackendClient {
    pub fn new(service: BackendService, endpoint: &http::Uri) -> Self {
        let base = endpoint.to_string().trim_end_matches('/').to_owned();
        Self { service, base }
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<Page<Task>, ClientError> {
        let mut params = QueryString::default();
        for (name, value) in query.pairs() {
            params.push(name, Some(&value));
        }
        let path = format!("/tasks{}", params.finish());
        self.json(Operation::ListTasks, &path, None::<&()>).await
    }

    pub async fn get_task(&self, id: &str) -> Result<Task, ClientError> {
        let path = format!("/tasks/{}", encode(id));
        self.json(Operation::GetTask, &path, None::<&()>).await
    }

    pub async fn create_task(&self, task: &serde_json::Value) -> Result<Task, ClientError> {
        self.json(Operation::CreateTask, "/tasks", Some(task)).await
    }

    /// Sends only the fields present in `patch`; a `null` clears a nullable field.
    pub async fn update_task(
        &self,
        id: &str,
        patch: &serde_json::Value,
    ) -> Result<Task, ClientError> {
        let path = format!("/tasks/{}", encode(id));
        self.json(Operation::UpdateTask, &path, Some(patch)).await
    }

    pub async fn delete_task(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/tasks/{}", encode(id));
        self.send(Operation::DeleteTask, &path, None::<&()>)
            .await
            .map(drop)
    }

    pub async fn list_projects(
        &self,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> Result<Page<Project>, ClientError> {
        let mut params = QueryString::default();
        params.push("limit", limit.map(|n| n.to_string()).as_deref());
        params.push("offset", offset.map(|n| n.to_string()).as_deref());
        let path = format!("/projects{}", params.finish());
        self.json(Operation::ListProjects, &path, None::<&()>).await
    }

    pub async fn create_project(
        &self,
        project: &serde_json::Value,
    ) -> Result<Project, ClientError> {
        self.json(Operation::CreateProject, "/projects", Some(project))
            .await
    }

    /// `GET /health`: Ok when the backend answers 200.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.send(Operation::Health, "/health", None::<&()>)
            .await
            .map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(operation, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|err| {
            ClientError::unavailable(format!("backend answered with an unexpected body: {err}"))
        })
    }

    /// Sends one request and returns the body of a 2xx answer.
    async fn send(
        &self,
        operation: Operation,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Bytes, ClientError> {
        let mut request = Request::builder()
            .method(operation.method())
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json")
            // Read by the layers below: the metric label, the breaker's key.
            .extension(operation);
        if operation.creates() {
            let key = uuid::Uuid::new_v4().to_string();
            request = request.header(
                "idempotency-key",
                HeaderValue::from_str(&key).map_err(ClientError::unavailable)?,
            );
        }
        let payload = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(value).map_err(ClientError::unavailable)?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(ClientError::unavailable)?;

        let response = self
            .service
            .clone()
            .oneshot(request)
            .await
            .map_err(describe_transport_error)?;
        let status = response.status();
        let body = read_body(response.into_body()).await?;
        if status.is_success() {
            return Ok(body);
        }
        let error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|body| body.error)
            .unwrap_or_else(|_| ApiError {
                code: if status.is_server_error() {
                    "internal"
                } else {
                    "bad_request"
                }
                .to_owned(),
                message: format!("backend answered {status}"),
                field: None,
            });
        if status.is_server_error() {
            return Err(ClientError::Unavailable(format!(
                "{status}: {}",
                error.message
            )));
        }
        Err(ClientError::Api { status, error })
    }
}

/// Reads a whole body, refusing one over [`MAX_RESPONSE_BYTES`].
async fn read_body(mut body: ResponseBody) -> Result<Bytes, ClientError> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            ClientError::unavailable(format!("reading the backend's answer failed: {err}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::unavailable(format!(
                    "the backend's answer is larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

fn describe_transport_error(err: BoxError) -> ClientError {
    if err.is::<tower::timeout::error::Elapsed>() {
        return ClientError::Unavailable("the request timed out".to_owned());
    }
    // hyper-util's errors say little at the top level ("client error (Connect)"); the cause
    // chain says why.
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::Unavailable(reason)
}

#[derive(Default)]
struct QueryString(String);

impl QueryString {
    fn push(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.0.push(if self.0.is_empty() { '?' } else { '&' });
            self.0.push_str(name);
            self.0.push('=');
            self.0.push_str(&encode(value));
        }
    }

    fn finish(self) -> String {
        self.0
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so that an id or a search
/// term can never change the path or add a parameter.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    // "." and ".." are unreserved but still mean something in a path.
    match out.as_str() {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => out,
    }
}
