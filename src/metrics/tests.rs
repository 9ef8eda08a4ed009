//! Unit tests of the recording rules, driving the services by hand.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::{Ready, pending, ready},
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Empty, Full};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tower::{Service, ServiceExt as _, service_fn};
use tower_layer::Layer as _;

use super::*;

/// The registry's OpenMetrics text.
fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).unwrap();
    out
}

/// The value of the sample line starting with `series ` (name and labels exactly).
fn value(registry: &Registry, series: &str) -> Option<f64> {
    let text = text(registry);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

fn route(r: &'static str) -> impl FnMut(&Request<()>) -> Option<LabelValue> + Clone {
    move |_| Some(LabelValue::from_static(r))
}

/// A body that yields the given frames, then ends; `is_end_stream` only once it has.
#[derive(Debug, Default)]
struct Frames {
    frames: VecDeque<Result<Bytes, &'static str>>,
    ended: bool,
}

impl Frames {
    fn new(frames: impl IntoIterator<Item = Result<Bytes, &'static str>>) -> Self {
        Self {
            frames: frames.into_iter().collect(),
            ended: false,
        }
    }
}

#[derive(Debug)]
struct BodyError;

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body error")
    }
}

impl std::error::Error for BodyError {}

impl Body for Frames {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.frames.pop_front() {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(_)) => Poll::Ready(Some(Err(BodyError))),
            None => {
                self.ended = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

fn answering<B: Send + 'static>(
    make: impl Fn() -> Response<B> + Clone + Send + 'static,
) -> impl Service<
    Request<()>,
    Response = Response<B>,
    Error = Infallible,
    Future = Ready<Result<Response<B>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<()>| ready(Ok(make())))
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

const REQ_200: &str = r#"http_requests_total{method="GET",route="/a",status="200"}"#;
const CANCELLED: &str = r#"http_requests_total{method="GET",route="/a",status="cancelled"}"#;
const DURATION_COUNT: &str = r#"http_request_duration_seconds_count{method="GET",route="/a"}"#;

#[tokio::test]
async fn a_streamed_response_counts_once_at_the_end_of_its_body() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let svc = metrics
        .layer()
        .classify_route(route("/a"))
        .layer(answering(|| {
            Response::new(Frames::new([Ok(Bytes::from("x")), Ok(Bytes::from("y"))]))
        }));

    let res = svc.oneshot(get("/a/1")).await.unwrap();
    // The head is here, the body is not: still in flight, not yet counted.
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(1.0));
    assert_eq!(value(&registry, REQ_200), None);

    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    assert_eq!(value(&registry, REQ_200), None);
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.is_none());
    assert_eq!(value(&registry, REQ_200), Some(1.0));
    assert_eq!(value(&registry, DURATION_COUNT), Some(1.0));
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(0.0));
    drop(body);
    // Dropping a finished body records nothing more.
    assert_eq!(value(&registry, CANCELLED), None);
    assert_eq!(value(&registry, REQ_200), Some(1.0));
}

#[tokio::test]
async fn a_body_of_known_length_counts_at_its_last_frame_and_an_empty_one_at_once() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);

    // `Full` says it has ended as soon as its one frame is taken: hyper stops polling there.
    let svc = metrics.layer().classify_route(route("/a"));
    let res = svc
        .layer(answering(|| Response::new(Full::new(Bytes::from("hello")))))
        .oneshot(get("/"))
        .await
        .unwrap();
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    assert_eq!(value(&registry, REQ_200), Some(1.0));
    drop(body);
    assert_eq!(value(&registry, CANCELLED), None);

    // An empty body (204, HEAD) may never be polled at all.
    let svc = metrics.layer().classify_route(route("/a"));
    let res = svc
        .layer(answering(|| {
            let mut res = Response::new(Empty::<Bytes>::new());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
        }))
        .oneshot(get("/"))
        .await
        .unwrap();
    let series = r#"http_requests_total{method="GET",route="/a",status="204"}"#;
    assert_eq!(value(&registry, series), Some(1.0));
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(1.0 - 1.0));
    drop(res);
    assert_eq!(value(&registry, CANCELLED), None);
}

#[tokio::test]
async fn dropping_the_future_or_the_body_counts_cancelled_once() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);

    // The response future, before the inner service answers.
    let never = service_fn(|_: Request<()>| pending::<Result<Response<Full<Bytes>>, Infallible>>());
    let mut svc = metrics.layer().classify_route(route("/a")).layer(never);
    let fut = svc.ready().await.unwrap().call(get("/"));
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(1.0));
    drop(fut);
    assert_eq!(value(&registry, CANCELLED), Some(1.0));
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(0.0));
    // Not a latency observation.
    assert_eq!(value(&registry, DURATION_COUNT), Some(0.0));

    // The body, mid-stream.
    let svc = metrics
        .layer()
        .classify_route(route("/a"))
        .layer(answering(|| {
            Response::new(Frames::new([Ok(Bytes::from("x")), Ok(Bytes::from("y"))]))
        }));
    let res = svc.oneshot(get("/")).await.unwrap();
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    drop(body);
    assert_eq!(value(&registry, CANCELLED), Some(2.0));
    assert_eq!(value(&registry, REQ_200), None);
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(0.0));
}

#[tokio::test]
async fn failures_are_counted_by_status_and_kind() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let status = |code: u16| {
        answering(move || {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::from_u16(code).unwrap();
            res
        })
    };
    let layer = metrics.layer().classify_route(route("/a"));
    for code in [500, 503, 504, 408, 404] {
        let res = layer.layer(status(code)).oneshot(get("/")).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let errors = |kind: &str| {
        value(
            &registry,
            &format!(r#"http_errors_total{{method="GET",route="/a",kind="{kind}"}}"#),
        )
    };
    assert_eq!(errors("server_error"), Some(2.0));
    assert_eq!(errors("timeout"), Some(2.0));
    let s404 = r#"http_requests_total{method="GET",route="/a",status="404"}"#;
    assert_eq!(value(&registry, s404), Some(1.0));

    // A body that fails mid-stream.
    let res = layer
        .layer(answering(|| {
            Response::new(Frames::new([Ok(Bytes::from("x")), Err("boom")]))
        }))
        .oneshot(get("/"))
        .await
        .unwrap();
    assert!(res.into_body().collect().await.is_err());
    assert_eq!(errors("body_error"), Some(1.0));
    let error = r#"http_requests_total{method="GET",route="/a",status="error"}"#;
    assert_eq!(value(&registry, error), Some(1.0));

    // An error from the inner service, classified.
    let failing = service_fn(|_: Request<()>| {
        ready(Err::<Response<Full<Bytes>>, _>(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )))
    });
    let err = layer
        .clone()
        .classify_error(|e: &std::io::Error| ErrorClass::from_error(e))
        .layer(failing)
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(errors("timeout"), Some(3.0));
    let timeout = r#"http_requests_total{method="GET",route="/a",status="timeout"}"#;
    assert_eq!(value(&registry, timeout), Some(1.0));
    // Unclassified (the default hook): `error`.
    let _ = layer.layer(failing).oneshot(get("/")).await.unwrap_err();
    assert_eq!(errors("error"), Some(1.0));
    assert_eq!(value(&registry, error), Some(2.0));
    assert_eq!(value(&registry, "http_requests_in_flight"), Some(0.0));
    assert_eq!(value(&registry, DURATION_COUNT), Some(8.0));
}

#[tokio::test]
async fn methods_and_routes_are_bounded() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::builder()
        .max_routes(2)
        .register(&mut registry);
    let ok = answering(|| Response::new(Empty::<Bytes>::new()));
    let by_path = |req: &Request<()>| Some(LabelValue::new(req.uri().path()));
    let svc = metrics.layer().classify_route(by_path).layer(ok.clone());
    for path in ["/a", "/b", "/c", "/d", "/a", "/e"] {
        let _ = svc.clone().oneshot(get(path)).await.unwrap();
    }
    let count = |route: &str| {
        value(
            &registry,
            &format!(r#"http_requests_total{{method="GET",route="{route}",status="200"}}"#),
        )
    };
    assert_eq!(count("/a"), Some(2.0));
    assert_eq!(count("/b"), Some(1.0));
    assert_eq!(count("/c"), None);
    assert_eq!(count("other"), Some(3.0));

    // No route: `unmatched`, which the cap does not refuse.
    let svc = metrics.layer().layer(ok.clone());
    let purge = Request::builder()
        .method(Method::from_bytes(b"PURGE").unwrap())
        .uri("/x")
        .body(())
        .unwrap();
    let _ = svc.oneshot(purge).await.unwrap();
    let series = r#"http_requests_total{method="other",route="unmatched",status="200"}"#;
    assert_eq!(value(&registry, series), Some(1.0));
}

#[test]
fn label_values_are_escaped() {
    let mut registry = Registry::default();
    let health = HealthMetrics::register(&mut registry);
    health.set(LabelValue::new("a\"b\\c\nd"), true);
    assert!(
        text(&registry).contains(r#"health_check_status{check="a\"b\\c\nd"} 1"#),
        "{}",
        text(&registry)
    );
}

#[test]
fn label_values_compare_by_text() {
    use std::collections::HashMap;
    let mut map: HashMap<LabelValue, u8, labels::FxBuildHasher> = HashMap::default();
    map.insert(LabelValue::from_static("/tasks"), 1);
    assert_eq!(map.get(&LabelValue::new("/tasks")), Some(&1));
    assert_eq!(map.get(&LabelValue::from(String::from("/tasks"))), Some(&1));
    assert_eq!(map.get(&LabelValue::new("/tasks/")), None);
}

#[test]
fn buckets_are_sanitised() {
    assert_eq!(
        &*labels::sanitize_buckets([0.5, f64::NAN, 0.1, 0.5, f64::INFINITY]),
        &[0.1, 0.5]
    );
    assert_eq!(&*labels::sanitize_buckets([]), DEFAULT_LATENCY_BUCKETS);
}

#[tokio::test]
async fn exemplars_carry_the_trace_id_only_when_there_is_one() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::builder()
        .duration_buckets([0.5, 1.0])
        .register(&mut registry);
    let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let traced = |req: &Request<()>| req.headers().contains_key("x-traced").then_some(id);
    let svc = metrics
        .layer()
        .classify_route(route("/a"))
        .trace_id_source(traced)
        .layer(answering(|| Response::new(Empty::<Bytes>::new())));

    let _ = svc.clone().oneshot(get("/")).await.unwrap();
    let buckets = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_bucket"))
            .map(str::to_owned)
            .collect()
    };
    assert!(buckets(&text(&registry)).iter().all(|l| !l.contains('#')));

    let traced_req = Request::get("/").header("x-traced", "1").body(()).unwrap();
    let _ = svc.oneshot(traced_req).await.unwrap();
    let text = text(&registry);
    let with = buckets(&text);
    let first = with.iter().find(|l| l.contains("le=\"0.5\"")).unwrap();
    assert!(
        first.contains(r#" # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} "#),
        "{text}"
    );
    assert_eq!(with.iter().filter(|l| l.contains(" # {")).count(), 1);
}

#[tokio::test]
async fn client_counts_calls_and_retries() {
    let mut registry = Registry::default();
    let metrics = ClientMetrics::register(&mut registry);
    let op = |req: &Request<()>| (req.uri().path() == "/tasks").then(|| "list_tasks".into());
    let svc = metrics
        .layer()
        .classify_operation(op)
        .layer(answering(|| Response::new(Full::new(Bytes::from("[]")))));

    let res = svc.clone().oneshot(get("/tasks")).await.unwrap();
    res.into_body().collect().await.unwrap();
    let mut retry = get("/tasks");
    retry.extensions_mut().insert(RetryAttempt::new(1));
    let res = svc.clone().oneshot(retry).await.unwrap();
    res.into_body().collect().await.unwrap();
    let _ = svc.oneshot(get("/unknown")).await.unwrap(); // body dropped unread
    metrics.record_retry("list_tasks");

    let calls = r#"backend_api_calls_total{operation="list_tasks",status="200"}"#;
    assert_eq!(value(&registry, calls), Some(2.0));
    let retries = r#"backend_api_retries_total{operation="list_tasks"}"#;
    assert_eq!(value(&registry, retries), Some(2.0));
    let other = r#"backend_api_calls_total{operation="other",status="cancelled"}"#;
    assert_eq!(value(&registry, other), Some(1.0));
    let duration = r#"backend_api_duration_seconds_count{operation="list_tasks"}"#;
    assert_eq!(value(&registry, duration), Some(2.0));
    // No server metrics on a client handle.
    assert!(!text(&registry).contains("in_flight"));
}

#[tokio::test]
async fn connections_are_counted_until_the_last_clone_is_dropped() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let make = service_fn(|_: ()| ready(Ok::<_, Infallible>(answering(|| Response::new(())))));
    let mut make = metrics.track_connections(make);
    let conn = make.ready().await.unwrap().call(()).await.unwrap();
    let conn2 = make.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(value(&registry, "http_active_connections"), Some(2.0));
    let clone = conn.clone();
    drop(conn);
    assert_eq!(value(&registry, "http_active_connections"), Some(2.0));
    drop(clone);
    drop(conn2);
    assert_eq!(value(&registry, "http_active_connections"), Some(0.0));

    let guard = metrics.connection_guard();
    assert_eq!(value(&registry, "http_active_connections"), Some(1.0));
    drop(guard);
    assert_eq!(value(&registry, "http_active_connections"), Some(0.0));
}

#[tokio::test]
async fn prefix_and_names() {
    let mut registry = Registry::default();
    let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
    // Families with no series yet are left out of the exposition.
    assert!(!text(&registry).contains("taskman_http_requests_total"));
    let svc = metrics.server().layer().layer(answering(|| {
        Response::builder()
            .status(500)
            .body(Empty::<Bytes>::new())
            .unwrap()
    }));
    let _ = svc.oneshot(get("/")).await.unwrap();
    let svc = metrics
        .client()
        .layer()
        .layer(answering(|| Response::new(Empty::<Bytes>::new())));
    let _ = svc.oneshot(get("/")).await.unwrap();
    metrics.health().set("backend", true);
    let text = text(&registry);
    for line in [
        "# TYPE taskman_http_requests counter",
        "# TYPE taskman_http_request_duration_seconds histogram",
        "# UNIT taskman_http_request_duration_seconds seconds",
        "# TYPE taskman_http_requests_in_flight gauge",
        "# TYPE taskman_http_active_connections gauge",
        "# TYPE taskman_http_errors counter",
        "# TYPE taskman_backend_api_calls counter",
        "# TYPE taskman_backend_api_duration_seconds histogram",
        "# TYPE taskman_backend_api_retries counter",
        "# TYPE taskman_health_check_status gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));

    let mut bare = Registry::default();
    let _metrics = Metrics::builder().prefix("").register(&mut bare);
    assert!(self::text(&bare).contains("\nhttp_requests_in_flight 0\n"));
}
