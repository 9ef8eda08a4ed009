//! The outbound side: a typed client of the Task Manager REST API over a plain
//! `tower::Service<http::Request<_>>`, so that resilience and observability layers can wrap
//! the transport without the client knowing.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

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
    circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, CircuitOpen, PerKey, Window},
    classify::{Classify, HttpClassifier, Outcome},
    fallback_cache::{DefaultMakeKey, FallbackCacheLayer, StaleAnswer},
    limit::{CallTimeoutLayer, Elapsed},
    metrics::{ClientMetrics, ErrorClass, FromExtension},
    request_id::PropagateRequestIdLayer,
    retry::{RetryBudget, RetryLayer, RetryableRequest, SafeOrIdempotent},
    stack::ClientStack,
    trace::{ClientTraceLayer, Route},
};

use crate::{
    api::{ApiError, ErrorBody, Page, Project, Task},
    config::{CircuitBreakerConfig, FallbackCacheConfig, RetryConfig},
};

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

/// The resilience layers of the client stack, built before the stack so that their handles
/// can be registered in the metrics registry and read by health checks.
#[derive(Clone, Default)]
pub struct Resilience {
    pub retry: Option<RetryLayer<BackendClassifier, BackendRetries>>,
    pub breaker: Option<BreakerLayer>,
    pub cache: Option<FallbackCacheLayer<DefaultMakeKey, BackendClassifier>>,
}

/// Which backend calls may be retried: reads, and creates (they carry an `Idempotency-Key`),
/// as the library's [`SafeOrIdempotent`]. Each retry is counted per operation in
/// `backend_api_retries_total`, which the metrics layer, above the retry layer, cannot see.
#[derive(Clone, Debug, Default)]
pub struct BackendRetries {
    /// Set once the metrics exist, which is after the retry layer is built (the registry
    /// takes the layer's handle).
    metrics: Arc<OnceLock<ClientMetrics>>,
}

impl BackendRetries {
    fn count_in(&self, metrics: &ClientMetrics) {
        let _ = self.metrics.set(metrics.clone());
    }
}

impl RetryableRequest<RequestBody> for BackendRetries {
    fn is_retryable(&self, request: &Request<RequestBody>) -> bool {
        SafeOrIdempotent::new().is_retryable(request)
    }

    fn on_retry(&self, request: &Request<RequestBody>, _retry: u32) {
        if let (Some(metrics), Some(operation)) =
            (self.metrics.get(), request.extensions().get::<Operation>())
        {
            metrics.record_retry(operation.name());
        }
    }
}

/// The verdict on a backend call, shared by the cache: HTTP's (5xx, 429 and errors fail),
/// plus what taskman knows of its own stack. A call the circuit breaker refused, or whose
/// connection was refused, never reached the backend, so a write that failed that way
/// changed nothing, and the stored reads stay available while the backend is down.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendClassifier;

impl<B> Classify<Response<B>, BoxError> for BackendClassifier {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        HttpClassifier::new().classify(result)
    }

    fn retry_after(&self, result: Result<&Response<B>, &BoxError>) -> Option<Duration> {
        HttpClassifier::new().retry_after(result)
    }

    fn may_have_reached_backend(&self, result: Result<&Response<B>, &BoxError>) -> bool {
        match result {
            Ok(_) => true,
            Err(err) => {
                !err.is::<CircuitOpen<BreakerKey>>()
                    && ErrorClass::from_error(err.as_ref()) != ErrorClass::Connect
            }
        }
    }
}

/// Breakers are kept per backend operation: a failing create does not stop reads.
pub type BreakerKey = &'static str;
pub type BreakerLayer = CircuitBreakerLayer<
    HttpClassifier,
    BreakerKey,
    PerKey<fn(&Request<RequestBody>) -> BreakerKey>,
>;

impl Resilience {
    /// The breaker and the cache as configured; `base_path` is the endpoint's path
    /// (`/api/v1`), under which writes to `/tasks` invalidate every stored `GET /tasks…`.
    pub fn build(
        retry: &RetryConfig,
        breaker: &CircuitBreakerConfig,
        cache: &FallbackCacheConfig,
        base_path: &str,
    ) -> anyhow::Result<Self> {
        let retry = retry
            .enabled
            .then(|| -> Result<_, tower_bulwark::retry::ConfigError> {
                // Reads, and creates (their Idempotency-Key makes a resend harmless); never
                // a call the breaker refused. The budget keeps retries from multiplying the
                // load on a struggling backend: at most this share of the calls made, plus
                // a few per second.
                let budget = RetryBudget::new(
                    Duration::from_secs(10),
                    5,
                    f64::from(retry.budget_percent) / 100.0,
                )?;
                RetryLayer::builder()
                    .name("backend")
                    .max_attempts(retry.max_attempts)
                    // Short waits: the backend is near (loopback or LAN), the usual fault is
                    // a pooled connection closed under us, and while the backend is down a
                    // write must still fail within milliseconds.
                    .backoff(Duration::from_millis(5), Duration::from_millis(250))
                    .budget(budget)
                    .classifier(BackendClassifier)
                    .retryable(BackendRetries::default())
                    .build()
            })
            .transpose()
            .map_err(|err| anyhow::anyhow!("retry settings: {err}"))?;
        let breaker = breaker
            .enabled
            .then(|| {
                CircuitBreakerLayer::builder()
                    .name("backend")
                    .per_key(breaker_key as fn(&Request<RequestBody>) -> BreakerKey)
                    .failure_rate_threshold(f64::from(breaker.error_threshold_percent))
                    .minimum_calls(breaker.volume_threshold)
                    // The last VOLUME_THRESHOLD calls decide, so an outage opens the breaker
                    // after at most that many failures however busy the operation was before.
                    .window(Window::Count(breaker.volume_threshold))
                    .open_duration(breaker.reset_timeout)
                    // One trial call decides, as in opossum: a recovered backend is back in
                    // use one call after the reset timeout.
                    .half_open_permits(1)
                    .build()
            })
            .transpose()
            .map_err(|err| anyhow::anyhow!("circuit breaker settings: {err}"))?;
        let tasks = format!("{}/tasks", base_path.trim_end_matches('/'));
        let cache = cache
            .enabled
            .then(|| {
                FallbackCacheLayer::builder()
                    .name("backend")
                    .classifier(BackendClassifier)
                    .max_entries(cache.max_size)
                    .ttl(cache.ttl)
                    .invalidate_on_write(tasks.clone(), tasks.clone())
                    .build()
            })
            .transpose()
            .map_err(|err| anyhow::anyhow!("fallback cache settings: {err}"))?;
        Ok(Self {
            retry,
            breaker,
            cache,
        })
    }
}

fn breaker_key(request: &Request<RequestBody>) -> BreakerKey {
    request
        .extensions()
        .get::<Operation>()
        .map_or("other", |op| op.name())
}

/// The outbound stack, outermost first: request ID → trace → metrics → fallback cache →
/// circuit breaker (per operation) → timeout → hyper-util's pooled HTTP/1 client.
///
/// The cache sits outside the breaker so that a read the breaker refuses is still answered
/// from the store; the timeout sits inside both, so that a timeout counts as a failure.
pub fn http_transport(
    config: &TransportConfig,
    metrics: Option<&ClientMetrics>,
    resilience: &Resilience,
) -> anyhow::Result<BackendService> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build::<_, RequestBody>(connector);
    // A client span per call, named after the operation, that sends `traceparent` on, so the
    // backend's spans join the trace.
    let trace = ClientTraceLayer::new().classify_route(|request: &Request<RequestBody>| {
        request
            .extensions()
            .get::<Operation>()
            .map(|op| Route::from_static(op.name()))
    });
    if let (Some(metrics), Some(retry)) = (metrics, &resilience.retry) {
        retry.retryable().count_in(metrics);
    }
    let metrics = metrics.map(|metrics| {
        metrics
            .layer()
            .classify_operation(FromExtension::new(operation_label))
            .classify_error(classify_error)
    });
    // The library's outbound order: request ID → trace → metrics → retry → fallback cache →
    // circuit breaker (per operation) → timeout → hyper-util. The timeout covers connecting,
    // sending and waiting for the response head of each attempt; the bodies of this API are
    // small JSON documents, read right after and bounded in size.
    let stack = ClientStack::new()
        .request_id(PropagateRequestIdLayer::new())
        .trace(trace)
        .maybe_metrics(metrics)
        .maybe_retry(resilience.retry.clone())
        .maybe_fallback_cache(resilience.cache.clone())
        .maybe_circuit_breaker(resilience.breaker.clone())
        .timeout(
            CallTimeoutLayer::new(config.request_timeout)
                .map_err(|err| anyhow::anyhow!("backend timeout: {err}"))?,
        );
    // One box for the whole stack, so the client is a nameable, cloneable type.
    Ok(BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(box_body)
            .layer(stack.into_layer())
            .service(client),
    ))
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
    if err.is::<Elapsed>() {
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

    /// Says what a failed write did, so that the caller knows whether retrying is safe: a
    /// write that never reached the backend changed nothing; one that may have reached it
    /// (reset connection, timeout, 5xx) may have been applied.
    fn of_write(self, operation: Operation, may_have_reached_backend: bool) -> Self {
        match self {
            ClientError::Unavailable(reason) if operation.writes() => {
                let effect = if may_have_reached_backend {
                    "the change may or may not have been made: check before retrying"
                } else {
                    "nothing was changed"
                };
                ClientError::Unavailable(format!("{reason}; {effect}"))
            }
            other => other,
        }
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

    fn writes(self) -> bool {
        self.method() != Method::GET
    }

    /// Creates carry an `Idempotency-Key`: one per logical create, so that a retry of the
    /// request (same key, same body) can never make a second resource.
    fn creates(self) -> bool {
        matches!(self, Operation::CreateTask | Operation::CreateProject)
    }
}

/// A backend answer, and how old it is if it came from the fallback cache because the
/// backend failed.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub stale_age: Option<Duration>,
}

impl<T> Fetched<T> {
    fn into_value(self) -> T {
        self.value
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
    breakers: Option<CircuitBreakerHandle<BreakerKey>>,
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
    pub fn new(service: BackendService, endpoint: &http::Uri, resilience: &Resilience) -> Self {
        let base = endpoint.to_string().trim_end_matches('/').to_owned();
        let breakers = resilience.breaker.as_ref().map(CircuitBreakerLayer::handle);
        Self {
            service,
            breakers,
            base,
        }
    }

    /// The operations whose circuit breaker is open now.
    pub fn open_breakers(&self) -> Vec<BreakerKey> {
        let Some(breakers) = &self.breakers else {
            return Vec::new();
        };
        breakers
            .breakers()
            .iter()
            .filter(|breaker| breaker.state().is_open())
            .filter_map(|breaker| breaker.key().copied())
            .collect()
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<Fetched<Page<Task>>, ClientError> {
        let mut params = QueryString::default();
        for (name, value) in query.pairs() {
            params.push(name, Some(&value));
        }
        let path = format!("/tasks{}", params.finish());
        self.json(Operation::ListTasks, &path, None::<&()>).await
    }

    pub async fn get_task(&self, id: &str) -> Result<Fetched<Task>, ClientError> {
        let path = format!("/tasks/{}", encode(id));
        self.json(Operation::GetTask, &path, None::<&()>).await
    }

    pub async fn create_task(&self, task: &serde_json::Value) -> Result<Task, ClientError> {
        self.json(Operation::CreateTask, "/tasks", Some(task))
            .await
            .map(Fetched::into_value)
    }

    /// Sends only the fields present in `patch`; a `null` clears a nullable field.
    pub async fn update_task(
        &self,
        id: &str,
        patch: &serde_json::Value,
    ) -> Result<Task, ClientError> {
        let path = format!("/tasks/{}", encode(id));
        self.json(Operation::UpdateTask, &path, Some(patch))
            .await
            .map(Fetched::into_value)
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
    ) -> Result<Fetched<Page<Project>>, ClientError> {
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
            .map(Fetched::into_value)
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
    ) -> Result<Fetched<T>, ClientError> {
        let answer = self.send(operation, path, body).await?;
        let value = serde_json::from_slice(&answer.value).map_err(|err| {
            ClientError::unavailable(format!("backend answered with an unexpected body: {err}"))
                .of_write(operation, true)
        })?;
        Ok(Fetched {
            value,
            stale_age: answer.stale_age,
        })
    }

    /// Sends one request and returns the body of a 2xx answer.
    async fn send(
        &self,
        operation: Operation,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Fetched<Bytes>, ClientError> {
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

        let response = match self.service.clone().oneshot(request).await {
            Ok(response) => response,
            Err(err) => {
                let reached =
                    Classify::<Response<ResponseBody>, BoxError>::may_have_reached_backend(
                        &BackendClassifier,
                        Err(&err),
                    );
                return Err(describe_transport_error(err).of_write(operation, reached));
            }
        };
        let status = response.status();
        // Set by the fallback cache when the backend failed and a stored answer stood in.
        let stale_age = response
            .extensions()
            .get::<StaleAnswer>()
            .map(|stale| stale.age);
        let body = read_body(response.into_body())
            .await
            .map_err(|err| err.of_write(operation, true))?;
        if status.is_success() {
            return Ok(Fetched {
                value: body,
                stale_age,
            });
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
            // The backend's own words about its failure may name internals (SQL, paths): they
            // go to the log, and the client is told only that the backend failed.
            tracing::warn!(
                operation = operation.name(),
                status = status.as_u16(),
                message = %error.message,
                "backend failed"
            );
            return Err(ClientError::Unavailable(format!(
                "the backend failed ({})",
                status.as_u16()
            ))
            .of_write(operation, true));
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
    if let Some(open) = err.downcast_ref::<CircuitOpen<BreakerKey>>() {
        let retry = open.retry_after().map_or(String::new(), |wait| {
            format!("; retry in {} s", wait.as_secs().max(1))
        });
        return ClientError::Unavailable(format!(
            "its circuit breaker for {} is open after repeated failures{retry}",
            open.key()
        ));
    }
    if err.is::<Elapsed>() {
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
