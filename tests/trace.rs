//! End-to-end tracing over real HTTP on 127.0.0.1: a client calls an axum "front" server
//! whose handler calls a "backend" server through hyper-util's client, each hop wrapped in
//! this crate's layers. Spans are exported over OTLP/HTTP to a receiver in the test that
//! decodes the protobuf with opentelemetry-proto's types; log lines are captured as JSON.
#![cfg(feature = "otlp")]

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{MatchedPath, Path, State},
    http::HeaderMap,
    routing::{get, post},
};
use http::{Request, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_bulwark::trace::{
    ClientTraceLayer, Route, ServerTraceLayer, TelemetryBuilder, TelemetryGuard,
    parse_resource_attributes,
};
use tracing::{Dispatch, Instrument as _};

/// Everything a test may take, end to end; a hung server fails the test instead of CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

// ===== the OTLP/HTTP receiver =====

/// A loopback OTLP/HTTP trace receiver on a thread and runtime of its own, so a test thread
/// blocked in `force_flush` cannot stall it.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    resource: Arc<Mutex<Vec<(String, String)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Received = (Arc<Mutex<Vec<Span>>>, Arc<Mutex<Vec<(String, String)>>>);

async fn receive(
    State((spans, resource_attributes)): State<Received>,
    body: Bytes,
) -> ([(http::HeaderName, &'static str); 1], Vec<u8>) {
    let request =
        ExportTraceServiceRequest::decode(body).expect("a valid ExportTraceServiceRequest");
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.expect("a resource");
        *resource_attributes.lock().unwrap() = resource
            .attributes
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                });
                (kv.key.clone(), value.unwrap_or_default())
            })
            .collect();
        for scope_spans in resource_spans.scope_spans {
            received.extend(scope_spans.spans);
        }
    }
    (
        [(CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

impl Receiver {
    fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let resource = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state: Received = (spans.clone(), resource.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/v1/traces", post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            addr: addr_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            spans,
            resource,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The resource's string attributes, as last received.
    fn resource(&self, key: &str) -> Option<String> {
        let resource = self.resource.lock().unwrap();
        resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Stops listening; the port then refuses connections.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match value {
        AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        } => Some(s.clone()),
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        } => Some(i.to_string()),
        AnyValue {
            value: Some(any_value::Value::ArrayValue(a)),
        } => Some(format!("{:?}", a.values)),
        other => Some(format!("{other:?}")),
    }
}

// ===== telemetry and logs =====

/// Log lines, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The lines whose message is `message`.
    fn with_message(&self, message: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }
}

/// Telemetry for one test, exporting every 50 ms.
fn telemetry(builder: TelemetryBuilder, logs: &Logs) -> (Dispatch, TelemetryGuard) {
    let logs = logs.clone();
    builder
        .filter("info")
        .export_interval(Duration::from_millis(50))
        .writer(move || logs.clone())
        .build()
        .unwrap()
}

/// Runs `test` on a current-thread runtime with `dispatch` as this thread's default, so the
/// servers and clients the test spawns all log and trace through it.
fn run<F: Future<Output = ()>>(dispatch: &Dispatch, test: F) {
    let _default = tracing::dispatcher::set_default(dispatch);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, test)
                .await
                .expect("test timed out");
        });
}

/// Flushes until `done` holds for the received spans, or fails after 10 s.
async fn wait_for_spans(
    guard: &TelemetryGuard,
    receiver: &Receiver,
    done: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Spans end when the connection tasks drop the bodies: let them run first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.force_flush().unwrap();
        let spans = receiver.spans();
        if done(&spans) {
            return spans;
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:#?}");
    }
}

// ===== the services =====

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn matched_path(req: &Request<Body>) -> Option<Route> {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| Route::new(p.as_str()))
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The backend: `GET /tasks/{id}` answers with the `traceparent` it received.
async fn backend() -> SocketAddr {
    let app = Router::new()
        .route(
            "/tasks/{id}",
            get(|headers: HeaderMap| async move {
                tracing::info!("backend handler");
                headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/baggage",
            get(|headers: HeaderMap| async move {
                headers
                    .get("baggage")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route("/slow", get(|| async { Body::new(SlowBody::default()) }))
        .layer(ServerTraceLayer::new().classify_route(matched_path));
    serve(app).await
}

/// A body whose one chunk comes 100 ms late, logging as it is produced.
#[derive(Default)]
struct SlowBody {
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.done {
            return std::task::Poll::Ready(None);
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(100))));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.done = true;
        tracing::info!("streaming");
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"late",
        )))))
    }
}

/// The front: `GET /call/{id}` calls the backend inside a `tool.call` span, through a client
/// wrapped in the client layer.
async fn front(backend: SocketAddr) -> SocketAddr {
    let client = ServiceBuilder::new()
        .layer(
            ClientTraceLayer::new().classify_route(|_: &Request<Empty<Bytes>>| {
                Some(Route::from_static("/tasks/{id}"))
            }),
        )
        .service(http_client());
    let bag_client = client.clone();
    let app = Router::new()
        .route(
            "/call/{id}",
            get(move |Path(id): Path<u32>| {
                let client = client.clone();
                async move {
                    tracing::info!("front handler");
                    let call = async {
                        let req = Request::get(format!("http://{backend}/tasks/{id}?token=s3cret"))
                            .body(Empty::new())
                            .unwrap();
                        let res = client.oneshot(req).await.unwrap();
                        let body = res.into_body().collect().await.unwrap().to_bytes();
                        String::from_utf8(body.to_vec()).unwrap()
                    };
                    call.instrument(tracing::info_span!(
                        "tool.call",
                        gen_ai.tool.name = "get_task"
                    ))
                    .await
                }
            }),
        )
        .route(
            "/bag",
            get(move || {
                let client = bag_client.clone();
                async move {
                    let req = Request::get(format!("http://{backend}/baggage"))
                        .body(Empty::new())
                        .unwrap();
                    let res = client.oneshot(req).await.unwrap();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    String::from_utf8(body.to_vec()).unwrap()
                }
            }),
        )
        .layer(
            ServerTraceLayer::new()
                .classify_route(matched_path)
                .record_request_headers([http::header::USER_AGENT, http::header::AUTHORIZATION]),
        );
    serve(app).await
}

/// `GET url` with a plain client (no layers), returning the status and body.
async fn get_plain(url: String, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::get(url)
        .header("user-agent", "trace-test")
        .header("authorization", "Bearer s3cret");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = http_client()
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn find<'a>(spans: &'a [Span], name: &str, kind: SpanKind) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name && s.kind == kind as i32)
        .unwrap_or_else(|| panic!("no {kind:?} span {name:?} in {spans:#?}"))
}

// ===== the tests =====

#[test]
fn one_trace_from_front_server_through_client_to_backend() {
    let receiver = Receiver::start();
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test")
            .service_version("1.2.3")
            .resource_attributes(parse_resource_attributes(
                "deployment.environment.name=test,service.name=overridden",
            ))
            .debug(true)
            .otlp_endpoint(receiver.endpoint()),
        &logs,
    );
    run(&dispatch, async {
        let backend_addr = backend().await;
        let front = front(backend_addr).await;
        let (status, seen_by_backend) = get_plain(format!("http://{front}/call/42"), &[]).await;
        assert_eq!(status, StatusCode::OK);

        let spans = wait_for_spans(&guard, &receiver, |s| s.len() >= 4).await;
        let server = find(&spans, "GET /call/{id}", SpanKind::Server);
        let tool = find(&spans, "tool.call", SpanKind::Internal);
        let client = find(&spans, "GET /tasks/{id}", SpanKind::Client);
        let backend = find(&spans, "GET /tasks/{id}", SpanKind::Server);

        // One trace, and each span the child of the one before.
        for span in [tool, client, backend] {
            assert_eq!(span.trace_id, server.trace_id);
        }
        assert!(
            server.parent_span_id.is_empty(),
            "a new trace starts at the front"
        );
        assert_eq!(tool.parent_span_id, server.span_id);
        assert_eq!(client.parent_span_id, tool.span_id);
        assert_eq!(backend.parent_span_id, client.span_id);
        // The backend saw the client span's context, sampled.
        assert_eq!(
            seen_by_backend,
            format!("00-{}-{}-01", hex(&client.trace_id), hex(&client.span_id))
        );

        // Semantic-convention attributes.
        assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr(server, "http.route").as_deref(), Some("/call/{id}"));
        assert_eq!(attr(server, "url.path").as_deref(), Some("/call/42"));
        assert_eq!(
            attr(server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(server, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(server, "server.port"), Some(front.port().to_string()));
        assert!(
            attr(server, "http.request.header.user-agent")
                .unwrap()
                .contains("trace-test")
        );
        assert!(
            server
                .attributes
                .iter()
                .all(|kv| !kv.key.contains("authorization")),
            "Authorization is never recorded"
        );
        assert_eq!(attr(tool, "gen_ai.tool.name").as_deref(), Some("get_task"));
        assert_eq!(
            attr(client, "url.full"),
            Some(format!("http://{backend_addr}/tasks/42?token=REDACTED"))
        );
        assert_eq!(attr(client, "url.template").as_deref(), Some("/tasks/{id}"));
        assert_eq!(
            attr(client, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(backend, "http.route").as_deref(), Some("/tasks/{id}"));

        // Every log line inside the requests names its span.
        let front_line = &logs.with_message("front handler")[0];
        assert_eq!(front_line["trace_id"], hex(&server.trace_id));
        assert_eq!(front_line["span_id"], hex(&server.span_id));
        let backend_line = &logs.with_message("backend handler")[0];
        assert_eq!(backend_line["trace_id"], hex(&server.trace_id));
        assert_eq!(backend_line["span_id"], hex(&backend.span_id));
    });
    // The resource, from the builder's arguments.
    assert_eq!(
        receiver.resource("service.name").as_deref(),
        Some("trace-test")
    );
    assert_eq!(
        receiver.resource("service.version").as_deref(),
        Some("1.2.3")
    );
    assert_eq!(
        receiver.resource("deployment.environment.name").as_deref(),
        Some("test")
    );
    assert!(receiver.resource("telemetry.sdk.name").is_some());
    // With `debug`, each export is logged.
    let exports = logs.with_message("exported spans");
    assert!(!exports.is_empty());
    assert_eq!(exports[0]["level"], "DEBUG");
    assert!(exports[0]["spans"].as_u64().unwrap() >= 1);
    guard.shutdown().unwrap();
}

#[test]
fn baggage_flows_from_the_caller_through_the_client() {
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(TelemetryBuilder::new("trace-test"), &logs);
    run(&dispatch, async {
        let front = front(backend().await).await;
        let (status, seen_by_backend) = get_plain(
            format!("http://{front}/bag"),
            &[("traceparent", PARENT), ("baggage", "tenant=acme")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen_by_backend, "tenant=acme");
        // Without a caller's baggage, none is invented.
        let (_, seen_by_backend) = get_plain(format!("http://{front}/bag"), &[]).await;
        assert_eq!(seen_by_backend, "");
    });
    guard.shutdown().unwrap();
}

#[test]
fn the_server_span_lasts_until_the_body_ends() {
    let receiver = Receiver::start();
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test").otlp_endpoint(receiver.endpoint()),
        &logs,
    );
    run(&dispatch, async {
        let backend = backend().await;
        let (status, body) = get_plain(format!("http://{backend}/slow"), &[]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "late"));
        let spans = wait_for_spans(&guard, &receiver, |s| !s.is_empty()).await;
        let span = find(&spans, "GET /slow", SpanKind::Server);
        let duration = span.end_time_unix_nano - span.start_time_unix_nano;
        assert!(duration >= 100_000_000, "{duration} ns");
        // Logs written while the body is produced belong to the request.
        let line = &logs.with_message("streaming")[0];
        assert_eq!(line["trace_id"], hex(&span.trace_id));
        assert_eq!(line["span_id"], hex(&span.span_id));
    });
    guard.shutdown().unwrap();
}

#[test]
fn an_inbound_traceparent_is_continued_and_a_malformed_one_ignored() {
    let receiver = Receiver::start();
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test").otlp_endpoint(receiver.endpoint()),
        &logs,
    );
    run(&dispatch, async {
        let backend = backend().await;
        let url = format!("http://{backend}/tasks/1");

        let (_, _) = get_plain(url.clone(), &[("traceparent", PARENT)]).await;
        let spans = wait_for_spans(&guard, &receiver, |s| !s.is_empty()).await;
        assert_eq!(spans.len(), 1);
        assert_eq!(hex(&spans[0].trace_id), PARENT_TRACE);
        assert_eq!(hex(&spans[0].parent_span_id), PARENT_SPAN);

        // Upper-case hex is malformed: a new trace, with no parent.
        let (status, _) = get_plain(url.clone(), &[("traceparent", &PARENT.to_uppercase())]).await;
        assert_eq!(status, StatusCode::OK);
        let spans = wait_for_spans(&guard, &receiver, |s| s.len() >= 2).await;
        assert_ne!(hex(&spans[1].trace_id), PARENT_TRACE);
        assert!(spans[1].parent_span_id.is_empty());

        // A caller that did not sample: continued (the log line has its trace ID) but, with
        // a parent-based sampler, not exported.
        let unsampled = PARENT.replace("-01", "-00");
        get_plain(url, &[("traceparent", &unsampled)]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        guard.force_flush().unwrap();
        assert_eq!(receiver.spans().len(), 2);
        let lines = logs.with_message("backend handler");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["trace_id"], PARENT_TRACE);
        assert_ne!(lines[1]["trace_id"], PARENT_TRACE);
        assert_eq!(lines[2]["trace_id"], PARENT_TRACE);
    });
    guard.shutdown().unwrap();
}

#[test]
fn sample_rate_zero_exports_nothing_yet_log_lines_carry_trace_ids() {
    let receiver = Receiver::start();
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test")
            .otlp_endpoint(receiver.endpoint())
            .sample_rate(0.0),
        &logs,
    );
    run(&dispatch, async {
        let front = front(backend().await).await;
        for _ in 0..3 {
            let (status, seen_by_backend) = get_plain(format!("http://{front}/call/7"), &[]).await;
            assert_eq!(status, StatusCode::OK);
            // The backend still joins the (unsampled) trace.
            assert!(seen_by_backend.ends_with("-00"), "{seen_by_backend}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        guard.force_flush().unwrap();

        let fronts = logs.with_message("front handler");
        let backends = logs.with_message("backend handler");
        assert_eq!((fronts.len(), backends.len()), (3, 3));
        for (front, backend) in fronts.iter().zip(&backends) {
            let trace_id = front["trace_id"].as_str().unwrap();
            assert_eq!(trace_id.len(), 32);
            assert_ne!(trace_id, "0".repeat(32));
            assert_eq!(front["span_id"].as_str().unwrap().len(), 16);
            // Front and backend log lines of one call name the same trace.
            assert_eq!(backend["trace_id"], trace_id);
            assert_ne!(backend["span_id"], front["span_id"]);
        }
        assert_ne!(fronts[0]["trace_id"], fronts[1]["trace_id"]);
    });
    assert!(receiver.spans().is_empty(), "nothing is exported");
    assert_eq!(guard.export_stats().exported, 0);
    guard.shutdown().unwrap();
}

/// 1,000 calls against a front server whose collector is gone: every call succeeds, in
/// bounded time, and the lost spans are counted and reported once.
fn thousand_calls_with_a_broken_collector(
    builder: TelemetryBuilder,
) -> (TelemetryGuard, Logs, Dispatch) {
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        builder
            .export_queue_size(64)
            .export_batch_size(16)
            // OTLP's own retries (100, 200 ms… with jitter) stop at this deadline too.
            .export_timeout(Duration::from_millis(300)),
        &logs,
    );
    run(&dispatch, async {
        let backend = backend().await;
        let client = http_client();
        let started = Instant::now();
        for i in 0..1_000 {
            let req = Request::get(format!("http://{backend}/tasks/{i}"))
                .body(Empty::new())
                .unwrap();
            let res = client.request(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.into_body().collect().await.unwrap();
        }
        let elapsed = started.elapsed();
        eprintln!("1000 calls with a broken collector: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    });
    // The export thread logs through `dispatch`: keep it alive while the caller waits.
    (guard, logs, dispatch)
}

/// The drop reports logged so far, once the first is there (or after 10 s).
fn drop_reports(logs: &Logs) -> Vec<Value> {
    const REPORT: &str = "spans were dropped: the trace collector is slow, down or overloaded";
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs.with_message(REPORT).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    logs.with_message(REPORT)
}

#[test]
fn a_stopped_collector_never_fails_or_slows_a_request() {
    let mut receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    receiver.stop();
    let (guard, logs, _dispatch) = thousand_calls_with_a_broken_collector(
        TelemetryBuilder::new("trace-test").otlp_endpoint(endpoint),
    );
    let stats = guard.export_stats();
    assert_eq!(stats.exported, 0);
    assert!(stats.dropped() > 0, "{stats:?}");
    assert!(guard.dropped_spans() <= 1_000);
    // Reported once, then not again within the minute (the thread has failed more batches
    // by now).
    let reports = drop_reports(&logs);
    std::thread::sleep(Duration::from_millis(500));
    assert!(guard.export_stats().dropped_export_failed > 16);
    let reports_later = drop_reports(&logs);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports_later.len(), 1, "{reports_later:#?}");
    assert_eq!(reports[0]["level"], "WARN");
    assert!(reports[0]["last_error"].as_str().is_some());

    #[cfg(feature = "metrics")]
    {
        let mut registry = prometheus_client::registry::Registry::default();
        guard.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("otel_spans_dropped_total{reason=\"export_failed\"}"),
            "{text}"
        );
        assert!(text.contains("otel_spans_exported_total 0"), "{text}");
    }
    let _ = guard.shutdown();
}

#[test]
fn a_collector_that_never_answers_never_slows_a_request() {
    // Accepts connections and never answers: every export times out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let (guard, _logs, _dispatch) = thousand_calls_with_a_broken_collector(
        TelemetryBuilder::new("trace-test").otlp_endpoint(endpoint),
    );
    let stats = guard.export_stats();
    assert_eq!(stats.exported, 0);
    // The queue (64) filled while exports hung.
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    let _ = guard.shutdown();
}

#[test]
fn shutdown_flushes_what_is_queued() {
    let receiver = Receiver::start();
    let (dispatch, guard) = TelemetryBuilder::new("trace-test")
        .otlp_endpoint(receiver.endpoint())
        // Long enough that only the shutdown can have sent the spans.
        .export_interval(Duration::from_secs(3600))
        .writer(io::sink)
        .build()
        .unwrap();
    run(&dispatch, async {
        let backend = backend().await;
        get_plain(format!("http://{backend}/tasks/1"), &[]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    assert!(receiver.spans().is_empty());
    guard.shutdown().unwrap();
    assert_eq!(receiver.spans().len(), 1);
}

#[test]
fn without_opentelemetry_log_lines_keep_their_ids_and_traceparent_still_flows() {
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test").opentelemetry(false),
        &logs,
    );
    assert!(guard.tracer_provider().is_none());
    run(&dispatch, async {
        let front = front(backend().await).await;
        let (status, seen_by_backend) =
            get_plain(format!("http://{front}/call/1"), &[("traceparent", PARENT)]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            seen_by_backend.starts_with(&format!("00-{PARENT_TRACE}-")),
            "{seen_by_backend}"
        );
        assert!(
            seen_by_backend.ends_with("-01"),
            "the caller's sampling decision is passed on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let front = &logs.with_message("front handler")[0];
    let backend = &logs.with_message("backend handler")[0];
    assert_eq!(front["trace_id"], PARENT_TRACE);
    assert_eq!(backend["trace_id"], PARENT_TRACE);
    assert_eq!(front["span_id"].as_str().unwrap().len(), 16);
    assert_ne!(front["span_id"], backend["span_id"]);
    guard.shutdown().unwrap();
}

#[cfg(feature = "request-id")]
#[test]
fn log_lines_and_spans_carry_the_request_id() {
    use tower_bulwark::request_id::RequestIdLayer;

    let receiver = Receiver::start();
    let logs = Logs::default();
    let (dispatch, guard) = telemetry(
        TelemetryBuilder::new("trace-test").otlp_endpoint(receiver.endpoint()),
        &logs,
    );
    run(&dispatch, async {
        // Request ID outside the trace layer (the extension is there when the span is made)
        // on one route, inside it (recorded on the span afterwards) on the other.
        let app = Router::new()
            .route("/outside", get(|| async { tracing::info!("outside") }))
            .layer(ServerTraceLayer::new().classify_route(matched_path))
            .layer(RequestIdLayer::new());
        let inside = Router::new()
            .route("/inside", get(|| async { tracing::info!("inside") }))
            .layer(RequestIdLayer::new())
            .layer(ServerTraceLayer::new().classify_route(matched_path));
        let addr = serve(app.merge(inside)).await;
        for (path, id) in [("outside", "req-out"), ("inside", "req-in")] {
            let req = Request::get(format!("http://{addr}/{path}"))
                .header("x-request-id", id)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = http_client().request(req).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let spans = wait_for_spans(&guard, &receiver, |s| s.len() >= 2).await;
        for (name, id) in [("GET /outside", "req-out"), ("GET /inside", "req-in")] {
            let span = find(&spans, name, SpanKind::Server);
            assert_eq!(attr(span, "request_id").as_deref(), Some(id), "{name}");
        }
    });
    assert_eq!(logs.with_message("outside")[0]["request_id"], "req-out");
    assert_eq!(logs.with_message("inside")[0]["request_id"], "req-in");
    guard.shutdown().unwrap();
}
