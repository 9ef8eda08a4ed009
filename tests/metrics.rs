//! The metrics layers over real HTTP on loopback: an axum server with the server layer, and a
//! hyper-util client with the client layer calling a second loopback server.
#![cfg(feature = "metrics")]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    error_handling::HandleErrorLayer,
    extract::{MatchedPath, Path},
    routing::get,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use prometheus_client::registry::Registry;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tower::{BoxError, ServiceBuilder, ServiceExt as _, timeout::TimeoutLayer};
use tower_bulwark::metrics::{
    ErrorClass, ExpositionFormat, LabelValue, Metrics, ProcessCollector, RetryAttempt, TraceId,
    TraceParent, encode,
};

// ===== helpers =====

fn scrape(registry: &Registry) -> String {
    encode(registry, ExpositionFormat::OpenMetrics).unwrap()
}

/// Every sample line, `name{labels}` → value (exemplars dropped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.split(" # ").next()?;
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(registry: &Registry, series: &str) -> Option<f64> {
    samples(&scrape(registry)).get(series).copied()
}

/// Waits (up to 5 s) until `series` has `want`: what a server does after a client hangs up
/// happens on the server's own time.
async fn eventually(registry: &Registry, series: &str, want: f64) {
    for _ in 0..500 {
        if sample(registry, series) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{series} never became {want}; now {:?}\n{}",
        sample(registry, series),
        scrape(registry)
    );
}

/// A body that sends `chunks` chunks, one every `every`.
struct SlowBody {
    chunks: usize,
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl SlowBody {
    fn new(chunks: usize, every: Duration) -> Self {
        Self {
            chunks,
            every,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.chunks -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b'x'; 1024])))))
    }
}

async fn spawn_server(make: impl FnOnce(TcpListener) -> tokio::task::JoinHandle<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    make(listener);
    addr
}

fn route_of(req: &Request<Body>) -> Option<LabelValue> {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| LabelValue::new(p.as_str()))
}

/// The front server: routes for each outcome, the server layer on all of them, connections
/// counted.
fn front(metrics: &Metrics) -> Router {
    let timed_out = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: BoxError| async {
            StatusCode::REQUEST_TIMEOUT
        }))
        .layer(TimeoutLayer::new(Duration::from_millis(100)));
    Router::new()
        .route(
            "/tasks/{id}",
            get(|Path(id): Path<u32>| async move { format!("task {id}") }),
        )
        .route("/bad", get(|| async { (StatusCode::BAD_REQUEST, "bad") }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            })
            .layer(timed_out),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route(
            "/stream",
            get(|| async { Body::new(SlowBody::new(50, Duration::from_millis(20))) }),
        )
        .layer(
            metrics
                .server()
                .layer()
                .classify_route(route_of)
                .trace_id_source(TraceParent),
        )
}

async fn serve_front(metrics: &Metrics) -> SocketAddr {
    let app = front(metrics);
    let make = metrics.server().track_connections(app.into_make_service());
    spawn_server(|l| tokio::spawn(async move { axum::serve(l, make).await.unwrap() })).await
}

/// The backend the client layer calls.
async fn serve_backend() -> SocketAddr {
    let app = Router::new()
        .route("/tasks", get(|| async { "[]" }))
        .route(
            "/tasks/{id}",
            get(|Path(id): Path<String>| async move {
                if id == "missing" {
                    (StatusCode::NOT_FOUND, "no such task")
                } else {
                    (StatusCode::OK, "a task")
                }
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/stream",
            get(|| async { Body::new(SlowBody::new(50, Duration::from_millis(20))) }),
        );
    spawn_server(|l| tokio::spawn(async move { axum::serve(l, app).await.unwrap() })).await
}

fn plain_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get_status(client: &Client<HttpConnector, Empty<Bytes>>, url: String) -> StatusCode {
    let res = client.get(url.parse().unwrap()).await.unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

fn server_series(route: &str, status: &str) -> String {
    format!(r#"taskman_http_requests_total{{method="GET",route="{route}",status="{status}"}}"#)
}

fn error_series(route: &str, kind: &str) -> String {
    format!(r#"taskman_http_errors_total{{method="GET",route="{route}",kind="{kind}"}}"#)
}

// ===== server =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_counts_each_outcome_over_http() {
    let mut registry = Registry::default();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    let addr = serve_front(&metrics).await;
    let client = plain_client();

    // Success, 4xx, 5xx, a timeout inside the layer (408), an unknown path.
    assert_eq!(
        get_status(&client, format!("http://{addr}/tasks/1")).await,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/tasks/2")).await,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/bad")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/boom")).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/slow")).await,
        StatusCode::REQUEST_TIMEOUT
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/wp-login.php")).await,
        StatusCode::NOT_FOUND
    );

    let s = samples(&scrape(&registry));
    assert_eq!(s.get(&server_series("/tasks/{id}", "200")), Some(&2.0));
    assert_eq!(s.get(&server_series("/bad", "400")), Some(&1.0));
    assert_eq!(s.get(&server_series("/boom", "500")), Some(&1.0));
    assert_eq!(s.get(&server_series("/slow", "408")), Some(&1.0));
    assert_eq!(s.get(&server_series("unmatched", "404")), Some(&1.0));
    assert_eq!(s.get(&error_series("/boom", "server_error")), Some(&1.0));
    assert_eq!(s.get(&error_series("/slow", "timeout")), Some(&1.0));
    // A 4xx is the client's error, not the server's.
    assert_eq!(s.get(&error_series("/bad", "server_error")), None);
    let count = r#"taskman_http_request_duration_seconds_count{method="GET",route="/tasks/{id}"}"#;
    assert_eq!(s.get(count), Some(&2.0));
    let slow_sum = r#"taskman_http_request_duration_seconds_sum{method="GET",route="/slow"}"#;
    assert!(s.get(slow_sum).is_some_and(|&v| v >= 0.1), "{s:?}");
    assert_eq!(s.get("taskman_http_requests_in_flight"), Some(&0.0));
    // The pooled keep-alive connections are open (one, or two if a request went out before
    // the previous one's connection was back in the pool).
    let pooled = s["taskman_http_active_connections"];
    assert!(pooled >= 1.0, "{s:?}");

    // Cancelled while the handler runs: the client sends a request and hangs up.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    eventually(&registry, "taskman_http_requests_in_flight", 1.0).await;
    drop(conn);
    eventually(&registry, &server_series("/hang", "cancelled"), 1.0).await;
    eventually(&registry, "taskman_http_requests_in_flight", 0.0).await;

    // Cancelled mid-body: the client reads the head and a chunk, then hangs up.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 2048];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    drop(conn);
    eventually(&registry, &server_series("/stream", "cancelled"), 1.0).await;
    eventually(&registry, "taskman_http_requests_in_flight", 0.0).await;
    // Counted once: never also as a 200.
    assert_eq!(sample(&registry, &server_series("/stream", "200")), None);
    // Cancellations are not latency observations, nor errors.
    let hang = r#"taskman_http_request_duration_seconds_count{method="GET",route="/hang"}"#;
    assert_eq!(sample(&registry, hang), Some(0.0));
    assert!(!scrape(&registry).contains(r#"kind="cancelled""#));

    // Both raw connections closed; the pooled ones are still open.
    eventually(&registry, "taskman_http_active_connections", pooled).await;
    drop(client);
    eventually(&registry, "taskman_http_active_connections", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_paths_add_no_series() {
    let mut registry = Registry::default();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    let app = front(&metrics);
    let addr = serve_front(&metrics).await;
    let client = plain_client();

    // Warm up: one unmatched request of each method used, so its series exist.
    let _ = app
        .clone()
        .oneshot(Request::get("/warm").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let post = Request::post("/warm").body(Body::empty()).unwrap();
    let _ = app.clone().oneshot(post).await.unwrap();
    assert_eq!(
        get_status(&client, format!("http://{addr}/warm")).await,
        StatusCode::NOT_FOUND
    );
    let before = samples(&scrape(&registry));

    // A cheap PRNG (xorshift): paths no router has heard of, scanner style.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..10_000 {
        let path = format!("/{:x}/{:x}?q={i}", next(), next());
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        res.into_body().collect().await.unwrap();
    }
    for _ in 0..20 {
        let url = format!("http://{addr}/.env.{:x}", next());
        assert_eq!(get_status(&client, url).await, StatusCode::NOT_FOUND);
    }

    let after = samples(&scrape(&registry));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no new series"
    );
    let get_404 = server_series("unmatched", "404");
    assert_eq!(after[&get_404] - before[&get_404], 5_000.0 + 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_link_latency_to_sampled_traces() {
    let mut registry = Registry::default();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    let addr = serve_front(&metrics).await;
    let client = plain_client();

    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let unsampled = Request::get(format!("http://{addr}/tasks/1"))
        .header("traceparent", format!("00-{id}-00f067aa0ba902b7-00"))
        .body(Empty::new())
        .unwrap();
    client
        .request(unsampled)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let text = scrape(&registry);
    assert!(
        !text.contains("trace_id"),
        "not sampled, no exemplar:\n{text}"
    );

    let sampled = Request::get(format!("http://{addr}/tasks/1"))
        .header("traceparent", format!("00-{id}-00f067aa0ba902b7-01"))
        .body(Empty::new())
        .unwrap();
    client
        .request(sampled)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let text = scrape(&registry);
    let exemplars: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
    assert_eq!(exemplars.len(), 1, "{text}");
    assert!(exemplars[0].starts_with(r#"taskman_http_request_duration_seconds_bucket{le="#));
    assert!(exemplars[0].contains(&format!(r#" # {{trace_id="{id}"}} "#)));

    // The client side, with a closure source.
    let backend = serve_backend().await;
    let trace = TraceId::from_hex(id).unwrap();
    let client = ServiceBuilder::new()
        .layer(
            metrics
                .client()
                .layer()
                .classify_operation(|_: &Request<Empty<Bytes>>| Some("list_tasks".into()))
                .trace_id_source(move |_: &Request<Empty<Bytes>>| Some(trace)),
        )
        .service(plain_client());
    let req = Request::get(format!("http://{backend}/tasks"))
        .body(Empty::new())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();
    let text = scrape(&registry);
    let client_exemplar = text
        .lines()
        .find(|l| {
            l.starts_with("taskman_backend_api_duration_seconds_bucket") && l.contains(" # {")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(client_exemplar.contains(&format!(r#"trace_id="{id}""#)));
}

// ===== client =====

type TestClient = tower::util::BoxCloneSyncService<
    Request<Empty<Bytes>>,
    Response<tower_bulwark::metrics::ResponseBody<hyper::body::Incoming>>,
    BoxError,
>;

fn operation(req: &Request<Empty<Bytes>>) -> Option<LabelValue> {
    let path = req.uri().path();
    match path.strip_prefix("/tasks") {
        Some("") => Some("list_tasks".into()),
        Some(_) => Some("get_task".into()),
        None if path == "/fail" => Some("fail".into()),
        None if path == "/slow" => Some("slow".into()),
        None if path == "/stream" => Some("stream".into()),
        None => None,
    }
}

fn classify(e: &BoxError) -> ErrorClass {
    if e.is::<tower::timeout::error::Elapsed>() {
        ErrorClass::Timeout
    } else {
        ErrorClass::from_error(&**e)
    }
}

fn metered_client(metrics: &Metrics) -> TestClient {
    let svc = ServiceBuilder::new()
        .layer(
            metrics
                .client()
                .layer()
                .classify_operation(operation)
                .classify_error(classify),
        )
        // Inside the metrics layer, so a timeout is an error it records.
        .layer(TimeoutLayer::new(Duration::from_millis(300)))
        .map_err(BoxError::from)
        .service(plain_client());
    tower::util::BoxCloneSyncService::new(svc)
}

fn client_series(operation: &str, status: &str) -> String {
    format!(r#"taskman_backend_api_calls_total{{operation="{operation}",status="{status}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_counts_each_outcome_over_http() {
    let mut registry = Registry::default();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    let backend = serve_backend().await;
    let client = metered_client(&metrics);
    let call = |path: &str| {
        let req = Request::get(format!("http://{backend}{path}"))
            .body(Empty::new())
            .unwrap();
        client.clone().oneshot(req)
    };

    for path in ["/tasks", "/tasks/1", "/tasks/missing", "/fail"] {
        let res = call(path).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let err = call("/slow").await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());

    // Cancelled: the caller gives up on the response future.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call("/slow"))
            .await
            .is_err()
    );
    // Cancelled: the caller drops the body mid-stream.
    let res = call("/stream").await.unwrap();
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    drop(body);

    // A retry marked by a retry policy, and one counted by hand.
    let mut req = Request::get(format!("http://{backend}/tasks"))
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(RetryAttempt::new(1));
    let res = client.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();
    metrics.client().record_retry("get_task");

    // Nothing listening: a connection error.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let req = Request::get(format!("http://{closed_addr}/tasks"))
        .body(Empty::new())
        .unwrap();
    assert!(client.clone().oneshot(req).await.is_err());

    let s = samples(&scrape(&registry));
    assert_eq!(s.get(&client_series("list_tasks", "200")), Some(&2.0));
    assert_eq!(s.get(&client_series("get_task", "200")), Some(&1.0));
    assert_eq!(s.get(&client_series("get_task", "404")), Some(&1.0));
    assert_eq!(s.get(&client_series("fail", "503")), Some(&1.0));
    assert_eq!(s.get(&client_series("slow", "timeout")), Some(&1.0));
    assert_eq!(s.get(&client_series("slow", "cancelled")), Some(&1.0));
    assert_eq!(s.get(&client_series("stream", "cancelled")), Some(&1.0));
    assert_eq!(s.get(&client_series("stream", "200")), None);
    assert_eq!(
        s.get(&client_series("list_tasks", "connect_error")),
        Some(&1.0)
    );
    let retries = |op: &str| {
        s.get(&format!(
            r#"taskman_backend_api_retries_total{{operation="{op}"}}"#
        ))
    };
    assert_eq!(retries("list_tasks"), Some(&1.0));
    assert_eq!(retries("get_task"), Some(&1.0));
    assert_eq!(retries("fail"), Some(&0.0));
    let slow_sum = r#"taskman_backend_api_duration_seconds_sum{operation="slow"}"#;
    assert!(s.get(slow_sum).is_some_and(|&v| v >= 0.3), "{s:?}");
    let slow_count = r#"taskman_backend_api_duration_seconds_count{operation="slow"}"#;
    assert_eq!(
        s.get(slow_count),
        Some(&1.0),
        "the cancelled call is not observed"
    );
}

// ===== exposition =====

/// Checks the OpenMetrics text format as far as this crate produces it: metadata before
/// samples, one family at a time, sample names matching the family's type, label syntax,
/// cumulative buckets ending in `+Inf` equal to `_count`, units as name suffixes, `# EOF`
/// last.
fn check_openmetrics(text: &str) -> Result<(), String> {
    let body = text.strip_suffix("# EOF\n").ok_or("no trailing # EOF")?;
    if body.contains("# EOF") {
        return Err("# EOF before the end".into());
    }
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in body.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let name = name.ok_or(format!("bad metadata {line}"))?.to_owned();
            match kind {
                Some("HELP") => {}
                Some("TYPE") => {
                    if !["counter", "gauge", "histogram", "info", "unknown"].contains(&rest) {
                        return Err(format!("bad type {line}"));
                    }
                    if families.insert(name.clone(), rest.to_owned()).is_some() {
                        return Err(format!("family {name} twice"));
                    }
                    current = Some((name, rest.to_owned()));
                }
                Some("UNIT") => {
                    if !name.ends_with(&format!("_{rest}")) {
                        return Err(format!("unit {rest} not a suffix of {name}"));
                    }
                }
                _ => return Err(format!("bad metadata {line}")),
            }
            continue;
        }
        let (family, kind) = current
            .as_ref()
            .ok_or(format!("sample before TYPE: {line}"))?;
        let (sample, exemplar) = match line.split_once(" # ") {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        let (series, value) = sample.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
        let value: f64 = value.parse().map_err(|_| format!("bad value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').ok_or(format!("bad labels: {line}"))?),
            None => (series, ""),
        };
        let labels = parse_labels(labels).ok_or(format!("bad labels: {line}"))?;
        let suffix = name
            .strip_prefix(family.as_str())
            .ok_or(format!("{name} outside {family}"))?;
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &["", "_info"],
        };
        if !allowed.contains(&suffix) {
            return Err(format!("{name} is not a {kind} sample"));
        }
        if exemplar.is_some() && !matches!(suffix, "_bucket" | "_total") {
            return Err(format!("exemplar on {name}"));
        }
        if let Some(e) = exemplar {
            let (labels, rest) = e
                .strip_prefix('{')
                .and_then(|e| e.split_once("} "))
                .ok_or(format!("bad exemplar: {line}"))?;
            parse_labels(labels).ok_or(format!("bad exemplar labels: {line}"))?;
            rest.split(' ')
                .try_for_each(|v| v.parse::<f64>().map(drop))
                .map_err(|_| format!("bad exemplar value: {line}"))?;
        }
        let mut key: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        key.sort();
        let key = format!("{family}{key:?}");
        match suffix {
            "_bucket" => {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or(format!("bucket without le: {line}"))?;
                let le = if le.1 == "+Inf" {
                    f64::INFINITY
                } else {
                    le.1.parse().map_err(|_| line.to_owned())?
                };
                buckets.entry(key).or_default().push((le, value));
            }
            "_count" => {
                counts.insert(key, value);
            }
            _ => {}
        }
    }
    for (key, b) in &buckets {
        if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
            return Err(format!("{key}: buckets not increasing"));
        }
        match b.last() {
            Some((le, v)) if le.is_infinite() && counts.get(key) == Some(v) => {}
            _ => return Err(format!("{key}: +Inf bucket missing or not equal to _count")),
        }
    }
    Ok(())
}

/// `name="value",...` with OpenMetrics escapes; `None` if malformed.
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (i, '"') => break i,
                (_, '\n') => return None,
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_is_valid_openmetrics() {
    let mut registry = Registry::default();
    let collector = ProcessCollector::new().with_memory_usage_bytes();
    collector.register(&mut registry);
    let lag = collector.start(Duration::from_millis(5)).unwrap();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    metrics.health().set("backend", true);
    metrics
        .health()
        .set(LabelValue::new("odd \"name\"\\"), false);
    let addr = serve_front(&metrics).await;
    let client = plain_client();
    for path in ["/tasks/1", "/bad", "/boom", "/nope"] {
        get_status(&client, format!("http://{addr}{path}")).await;
    }
    let traced = Request::get(format!("http://{addr}/tasks/1"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Empty::new())
        .unwrap();
    client
        .request(traced)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let backend = serve_backend().await;
    let metered = metered_client(&metrics);
    let req = Request::get(format!("http://{backend}/tasks"))
        .body(Empty::new())
        .unwrap();
    metered
        .oneshot(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;

    let text = scrape(&registry);
    check_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for line in [
        "# TYPE taskman_http_requests counter",
        "# TYPE taskman_http_request_duration_seconds histogram",
        "# UNIT taskman_http_request_duration_seconds seconds",
        "# TYPE taskman_backend_api_duration_seconds histogram",
        "# TYPE tokio_scheduling_lag_seconds histogram",
        "# TYPE tokio_workers gauge",
        "tokio_workers 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    #[cfg(target_os = "linux")]
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        // CPU time is counted in 10 ms ticks: a short test may not have used one yet.
        let floor = if name == "process_cpu_seconds_total" {
            0.0
        } else {
            1.0
        };
        assert!(
            samples(&text).get(name).is_some_and(|&v| v >= floor),
            "{name}:\n{text}"
        );
    }
    drop(lag);

    // The classic format, for everything but Prometheus itself.
    let classic = encode(&registry, ExpositionFormat::Prometheus).unwrap();
    assert!(!classic.contains("# EOF") && !classic.contains("# UNIT") && !classic.contains(" # {"));
    assert!(classic.contains("# TYPE taskman_http_requests_total counter\n"));
    assert_eq!(
        samples(&classic).keys().collect::<Vec<_>>(),
        samples(&text).keys().collect::<Vec<_>>(),
        "the same series in both formats"
    );
    promtool_check(&classic);
}

/// `promtool check metrics` (Debian package `prometheus`) when it is installed; skipped
/// otherwise. Its parser knows only the classic Prometheus text format.
fn promtool_check(text: &str) {
    use std::{
        io::Write as _,
        process::{Command, Stdio},
    };
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed: skipped");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_checker_rejects_broken_expositions() {
    let ok = "# TYPE a counter\na_total 1\n# EOF\n";
    assert_eq!(check_openmetrics(ok), Ok(()));
    for bad in [
        "# TYPE a counter\na_total 1\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a gauge\na{x=\"1} 1\n# EOF\n",
        "# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_count 1\n# EOF\n",
        "# TYPE a histogram\na_bucket{le=\"1\"} 1\na_count 1\n# EOF\n",
        "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n",
    ] {
        assert!(check_openmetrics(bad).is_err(), "accepted:\n{bad}");
    }
}
