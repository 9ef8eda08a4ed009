//! The retry layer: over real HTTP on loopback (an axum backend that fails on cue, hyper-util's
//! client), and against a scripted backend on Tokio's paused clock for everything timed.
//! Every loopback test is bounded by a timeout; the paused-clock tests do not sleep for real.
#![cfg(feature = "retry")]

use std::{
    collections::VecDeque,
    future::{Future, Ready, ready},
    io,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::{Router, extract::State};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{
    io::AsyncReadExt as _,
    net::TcpListener,
    time::{Instant, timeout},
};
use tower::{BoxError, Layer as _, Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_bulwark::{
    circuit_breaker::{CircuitBreakerError, CircuitBreakerLayer, CircuitOpen},
    classify::{Classify, HttpClassifier, Outcome},
    retry::{RetryBudget, RetryLayer},
};

const MS: Duration = Duration::from_millis(1);
/// A bound on every loopback test.
const LIMIT: Duration = Duration::from_secs(20);

/// A budget that never gets in the way: 10,000 retries of reserve.
fn roomy() -> RetryBudget {
    RetryBudget::new(Duration::from_secs(10), 1000, 0.2).unwrap()
}

// ===== a loopback backend =====

/// What the backend saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    key: Option<String>,
    body: String,
}

#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The answer to the n-th request (from 1): status and body.
    answer: Arc<dyn Fn(usize) -> (StatusCode, String) + Send + Sync>,
}

impl Backend {
    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(backend): State<Backend>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let n = {
        let mut seen = backend.seen.lock().unwrap();
        seen.push(Seen {
            method,
            key: headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned()),
            body,
        });
        seen.len()
    };
    (backend.answer)(n)
}

/// A loopback backend answering the n-th request with `answer(n)`.
async fn backend(
    answer: impl Fn(usize) -> (StatusCode, String) + Send + Sync + 'static,
) -> (SocketAddr, Backend) {
    let backend = Backend {
        seen: Arc::default(),
        answer: Arc::new(answer),
    };
    let app = Router::new().fallback(handle).with_state(backend.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, backend)
}

/// Fails the first `n` requests with `503`, then answers `200`.
fn fail_first(n: usize) -> impl Fn(usize) -> (StatusCode, String) + Send + Sync {
    move |i| {
        let status = if i <= n {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (status, format!("attempt {i}"))
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(
    method: Method,
    addr: SocketAddr,
    key: Option<&str>,
    body: &str,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/tasks"));
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// Fast backoff for real-time tests.
fn fast() -> tower_bulwark::retry::RetryBuilder {
    RetryLayer::builder().backoff(MS, 5 * MS).budget(roomy())
}

async fn text(res: Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

// ===== over loopback =====

#[tokio::test]
async fn get_is_retried_until_it_succeeds() {
    timeout(LIMIT, async {
        let (addr, backend) = backend(fail_first(2)).await;
        let layer = fast().max_attempts(3).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(client());

        let res = svc
            .oneshot(request(Method::GET, addr, None, ""))
            .await
            .unwrap();
        assert_eq!(text(res).await, (StatusCode::OK, "attempt 3".to_owned()));
        assert_eq!(backend.hits(), 3);
        let stats = handle.stats();
        assert_eq!(
            (stats.retries_after_response, stats.retries_after_error),
            (2, 0)
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn exhausted_attempts_return_the_last_failure() {
    timeout(LIMIT, async {
        // 500, 502, 503, …: each attempt's answer is told apart by its status and body.
        let (addr, backend) = backend(|i| {
            let status = [500, 502, 503, 504][(i - 1) % 4];
            (
                StatusCode::from_u16(status).unwrap(),
                format!("attempt {i}"),
            )
        })
        .await;
        let layer = fast().max_attempts(3).build().unwrap();
        let handle = layer.handle();
        let res = layer
            .layer(client())
            .oneshot(request(Method::GET, addr, None, ""))
            .await
            .unwrap();
        assert_eq!(
            text(res).await,
            (StatusCode::SERVICE_UNAVAILABLE, "attempt 3".to_owned())
        );
        assert_eq!(backend.hits(), 3);
        assert_eq!(handle.stats().attempts_exhausted, 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn post_without_idempotency_key_is_not_retried() {
    timeout(LIMIT, async {
        let (addr, backend) = backend(fail_first(usize::MAX)).await;
        let layer = fast().max_attempts(3).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(client());

        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let res = svc
                .clone()
                .oneshot(request(method, addr, None, "{}"))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(backend.hits(), 4, "one attempt each");
        // An empty key is no key.
        let res = svc
            .clone()
            .oneshot(request(Method::POST, addr, Some(""), "{}"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(backend.hits(), 5);
        let stats = handle.stats();
        assert_eq!(stats.retries(), 0);
        assert_eq!(stats.attempts_exhausted + stats.budget_exhausted, 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn post_with_idempotency_key_is_retried_with_the_same_key_and_body() {
    timeout(LIMIT, async {
        let (addr, backend) = backend(fail_first(2)).await;
        let svc = fast().max_attempts(3).build().unwrap().layer(client());

        let body = r#"{"title":"write the report"}"#;
        let res = svc
            .oneshot(request(Method::POST, addr, Some("create-7f3a"), body))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let seen = backend.seen();
        assert_eq!(seen.len(), 3);
        for s in &seen {
            assert_eq!(s.method, Method::POST);
            assert_eq!(s.key.as_deref(), Some("create-7f3a"));
            assert_eq!(s.body, body);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_budget_stops_retries_under_sustained_failure() {
    timeout(LIMIT, async {
        let (addr, backend) = backend(fail_first(usize::MAX)).await;
        // No reserve: only the 20 % of requests pay for retries.
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2).unwrap();
        let layer = RetryLayer::builder()
            .max_attempts(3)
            .backoff(MS, 5 * MS)
            .budget(budget.clone())
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(client());

        // A clone per request, as concurrent callers would: they share one budget.
        for _ in 0..50 {
            let res = svc
                .clone()
                .oneshot(request(Method::GET, addr, None, ""))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        // Without the budget: 150 attempts. With it: every fifth request gets one retry.
        assert_eq!(backend.hits(), 60);
        let stats = handle.stats();
        assert_eq!(stats.retries(), 10);
        assert_eq!(stats.budget_exhausted, 50);
        assert_eq!(stats.attempts_exhausted, 0);
        assert_eq!(budget.available(), 0);
    })
    .await
    .unwrap();
}

/// A backend that reads each request and hangs up without answering (the request may have
/// been applied), first opening the client's circuit breaker.
async fn hang_up_and_open(
    breaker: tower_bulwark::circuit_breaker::CircuitBreakerHandle,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, SeqCst);
            let mut head = Vec::new();
            let mut buf = [0; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            breaker.force_open();
            drop(stream);
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_write_that_may_have_happened_is_not_reported_as_refused() {
    timeout(LIMIT, async {
        let breaker = CircuitBreakerLayer::new();
        let (addr, connections) = hang_up_and_open(breaker.handle()).await;
        let retry = fast().max_attempts(3).build().unwrap();
        let handle = retry.handle();
        let svc = ServiceBuilder::new()
            .layer(retry)
            .map_err(CircuitBreakerError::<hyper_util::client::legacy::Error>::into_box_error)
            .layer(breaker.clone())
            .service(client());

        // The create reached the backend, which hung up: it may have been applied. The retry
        // is refused by the breaker, which that says nothing was sent: the caller must get
        // the first failure, not the refusal.
        let err = svc
            .clone()
            .oneshot(request(Method::POST, addr, Some("k-1"), "{}"))
            .await
            .unwrap_err();
        assert!(!err.is::<CircuitOpen>(), "{err}");
        assert!(
            err.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some(),
            "{err:?}"
        );
        assert_eq!(connections.load(SeqCst), 1);
        let stats = handle.stats();
        assert_eq!((stats.retries_after_error, stats.circuit_open), (1, 1));

        // A read in the same situation answers with the last attempt's: nothing to protect.
        breaker.handle().reset();
        let err = svc
            .clone()
            .oneshot(request(Method::GET, addr, None, ""))
            .await
            .unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err:?}");
        assert_eq!(connections.load(SeqCst), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_retried_client_boxes_like_any_tower_client() {
    // What taskman does with its stack: `Send + Sync` service, `Send` future.
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new())
        .map_err(CircuitBreakerError::<hyper_util::client::legacy::Error>::into_box_error)
        .layer(CircuitBreakerLayer::new())
        .service(client());
    let boxed = tower::util::BoxCloneSyncService::new(svc);
    let (addr, backend) = backend(fail_first(1)).await;
    let res = timeout(LIMIT, boxed.oneshot(request(Method::GET, addr, None, "")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(backend.hits(), 2);
}

// ===== a scripted backend, on the paused clock =====

/// What the scripted backend does with one request.
#[derive(Clone, Copy, Debug)]
enum Step {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// An error after the request went out: a reset connection.
    Reset,
    /// An error before it went out: a refused connection.
    Refused,
    /// A circuit breaker's rejection, boxed.
    Open,
}

/// What the backend saw of one request.
#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    key: Option<String>,
    marker: Option<&'static str>,
}

/// A request extension the caller sets, to check that it reaches each attempt.
#[derive(Clone, Debug)]
struct Marker(&'static str);

#[derive(Clone, Default)]
struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let script = Self::default();
        script.steps.lock().unwrap().extend(steps);
        script
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = BoxError,
        Future = Ready<Result<Response<String>, BoxError>>,
    > + Clone {
        let script = self.clone();
        service_fn(move |req: Request<String>| {
            script.calls.lock().unwrap().push(Call {
                at: Instant::now(),
                key: req
                    .headers()
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_owned()),
                marker: req.extensions().get::<Marker>().map(|m| m.0),
            });
            // An empty script answers 200.
            let step = script
                .steps
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Status(200));
            let n = script.calls.lock().unwrap().len();
            ready(match step {
                Step::Status(s) => Ok(Response::builder()
                    .status(s)
                    .body(format!("attempt {n}"))
                    .unwrap()),
                Step::RetryAfter(s, after) => Ok(Response::builder()
                    .status(s)
                    .header("retry-after", after)
                    .body(format!("attempt {n}"))
                    .unwrap()),
                Step::Reset => Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset").into()),
                Step::Refused => {
                    Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused").into())
                }
                Step::Open => Err(circuit_open()),
            })
        })
    }
}

/// A real rejection from a forced-open breaker, boxed.
fn circuit_open() -> BoxError {
    let breaker = CircuitBreakerLayer::new();
    breaker.handle().force_open();
    let svc = breaker.layer(service_fn(|_: ()| {
        ready(Ok::<_, io::Error>(Response::new(())))
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Err(err)) = pin!(svc.oneshot(())).poll(&mut cx) else {
        panic!("a forced-open breaker rejects at once")
    };
    err.into_box_error()
}

fn get_req() -> Request<String> {
    Request::get("http://api.example/tasks")
        .body(String::new())
        .unwrap()
}

fn post_req(key: &str) -> Request<String> {
    Request::post("http://api.example/tasks")
        .header("idempotency-key", key)
        .body(String::from("{}"))
        .unwrap()
}

fn status_and_body(res: &Response<String>) -> (u16, &str) {
    (res.status().as_u16(), res.body().as_str())
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_and_client_errors_are_not() {
    let script = Script::new([Step::Reset, Step::Status(429), Step::Status(404)]);
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .budget(roomy())
        .build()
        .unwrap();
    let handle = layer.handle();
    let res = layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap();
    // The reset and the 429 are retried; the 404 is an answer.
    assert_eq!(status_and_body(&res), (404, "attempt 3"));
    assert_eq!(script.calls().len(), 3);
    let stats = handle.stats();
    assert_eq!(
        (stats.retries_after_error, stats.retries_after_response),
        (1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn headers_and_extensions_reach_every_attempt() {
    let script = Script::new([Step::Status(500), Step::Status(500)]);
    let svc = RetryLayer::builder()
        .budget(roomy())
        .build()
        .unwrap()
        .layer(script.service());
    let mut req = post_req("k-42");
    req.extensions_mut().insert(Marker("create_task"));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let calls = script.calls();
    assert_eq!(calls.len(), 3);
    for c in calls {
        assert_eq!(c.key.as_deref(), Some("k-42"));
        assert_eq!(c.marker, Some("create_task"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_circuit_breaker_rejection_is_not_retried() {
    // Typed: the breaker right below the retry layer, forced open. Attempts are counted
    // between the two.
    let attempts = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::new();
    let script = Script::new([]);
    let retry = RetryLayer::builder().budget(roomy()).build().unwrap();
    let handle = retry.handle();
    let count = attempts.clone();
    let svc = ServiceBuilder::new()
        .layer(retry)
        .map_request(move |req: Request<String>| {
            count.fetch_add(1, SeqCst);
            req
        })
        .layer(breaker.clone())
        .service(script.service());

    breaker.handle().force_open();
    let err = svc.clone().oneshot(get_req()).await.unwrap_err();
    assert!(matches!(err, CircuitBreakerError::Open(_)), "{err:?}");
    assert_eq!(attempts.load(SeqCst), 1);
    assert!(script.calls().is_empty());
    assert_eq!(handle.stats().circuit_open, 1);

    // The same stack with the breaker closed and a failing backend does retry.
    breaker.handle().reset();
    script.steps.lock().unwrap().push_back(Step::Status(503));
    let res = svc.clone().oneshot(get_req()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts.load(SeqCst), 3);

    // Boxed, as behind `into_box_error` or a timeout layer.
    let script = Script::new([Step::Open, Step::Status(200)]);
    let retry = RetryLayer::builder().budget(roomy()).build().unwrap();
    let handle = retry.handle();
    let err = retry
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err:?}");
    assert_eq!(script.calls().len(), 1);
    assert_eq!(handle.stats().circuit_open, 1);
    assert_eq!(handle.stats().retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_out_exactly() {
    let script = Script::new([Step::RetryAfter(503, "2")]);
    let svc = RetryLayer::builder()
        .backoff(10 * MS, Duration::from_secs(3))
        .budget(roomy())
        .build()
        .unwrap()
        .layer(script.service());
    let start = Instant::now();
    let res = svc.oneshot(get_req()).await.unwrap();
    assert_eq!(res.status(), 200);
    let calls = script.calls();
    assert_eq!(calls.len(), 2);
    // Not the 10 ms backoff: the 2 s asked for.
    assert_eq!(calls[1].at - calls[0].at, Duration::from_secs(2));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_max_backoff_is_answered_at_once() {
    let script = Script::new([Step::RetryAfter(429, "120")]);
    let layer = RetryLayer::builder()
        .backoff(10 * MS, Duration::from_secs(3))
        .budget(roomy())
        .build()
        .unwrap();
    let handle = layer.handle();
    let start = Instant::now();
    let res = layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap();
    assert_eq!(status_and_body(&res), (429, "attempt 1"));
    assert_eq!(res.headers()["retry-after"], "120");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(script.calls().len(), 1);
    assert_eq!(handle.stats().retry_after_too_long, 1);
    // It kept its retry: nothing was withdrawn.
    assert_eq!(handle.stats().budget_available, roomy().available());
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_to_its_cap_with_full_jitter() {
    // 100 ms, then capped at 150 ms (not 200, 400).
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(100 * MS, 150 * MS)
        .budget(roomy())
        .build()
        .unwrap();
    let mut gaps: [Vec<f64>; 3] = Default::default();
    for _ in 0..40 {
        let script = Script::new([Step::Status(502); 4]);
        let res = layer
            .layer(script.service())
            .oneshot(get_req())
            .await
            .unwrap();
        assert_eq!(res.status(), 502);
        let calls = script.calls();
        assert_eq!(calls.len(), 4);
        for (i, pair) in calls.windows(2).enumerate() {
            gaps[i].push((pair[1].at - pair[0].at).as_secs_f64() * 1e3);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    assert!(max(&gaps[0]) <= 100.0, "{gaps:?}");
    assert!(max(&gaps[1]) <= 150.0 && max(&gaps[2]) <= 150.0, "{gaps:?}");
    // Uniform below the ceiling: means near 50 and 75 ms (standard error under 7 ms).
    assert!((30.0..70.0).contains(&mean(&gaps[0])), "{gaps:?}");
    assert!((50.0..100.0).contains(&mean(&gaps[1])), "{gaps:?}");
    assert!((50.0..100.0).contains(&mean(&gaps[2])), "{gaps:?}");
}

/// HTTP's verdicts, plus: a refused connection never reached the backend.
#[derive(Clone, Copy, Debug)]
struct KnowsRefusals;

impl Classify<Response<String>, BoxError> for KnowsRefusals {
    fn classify(&self, result: Result<&Response<String>, &BoxError>) -> Outcome {
        HttpClassifier::new().classify(result)
    }

    fn may_have_reached_backend(&self, result: Result<&Response<String>, &BoxError>) -> bool {
        !matches!(
            result,
            Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
        )
    }
}

#[tokio::test(start_paused = true)]
async fn writes_get_the_conservative_answer() {
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .classifier(KnowsRefusals)
        .budget(roomy())
        .build()
        .unwrap();

    // A reset (may have been applied), then a rejection: the reset is the answer.
    let script = Script::new([Step::Reset, Step::Open]);
    let err = layer
        .layer(script.service())
        .oneshot(post_req("k"))
        .await
        .unwrap_err();
    let io = err.downcast_ref::<io::Error>().expect("the reset");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);

    // A 503 (it reached the backend), then refused connections until the attempts run out:
    // the 503 is the answer, its body intact.
    let script = Script::new([
        Step::Status(503),
        Step::Refused,
        Step::Refused,
        Step::Refused,
    ]);
    let res = layer
        .layer(script.service())
        .oneshot(post_req("k"))
        .await
        .unwrap();
    assert_eq!(status_and_body(&res), (503, "attempt 1"));
    assert_eq!(script.calls().len(), 4);

    // The latest answer from the backend wins: 500, reset, then refused: the reset.
    let script = Script::new([Step::Status(500), Step::Reset, Step::Refused, Step::Refused]);
    let err = layer
        .layer(script.service())
        .oneshot(post_req("k"))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionReset)
    );

    // A refusal after a refusal is just a refusal; and a later answer from the backend is
    // the answer.
    let script = Script::new([Step::Reset, Step::Refused, Step::Status(502), Step::Refused]);
    let res = layer
        .layer(script.service())
        .oneshot(post_req("k"))
        .await
        .unwrap();
    assert_eq!(status_and_body(&res), (502, "attempt 3"));

    // A read gets the last attempt's answer: nothing was written either way.
    let script = Script::new([
        Step::Status(503),
        Step::Refused,
        Step::Refused,
        Step::Refused,
    ]);
    let err = layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_while_backing_off_sends_nothing_more() {
    let layer = RetryLayer::builder()
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .budget(roomy())
        .build()
        .unwrap();

    // Left alone, it retries.
    let script = Script::new([Step::Status(503); 3]);
    let res = layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(script.calls().len(), 3);

    // Dropped while waiting: no retry, ever.
    let script = Script::new([Step::Status(503); 3]);
    let mut svc = layer.layer(script.service());
    let mut dropped = tokio_test::task::spawn(svc.call(get_req()));
    assert!(dropped.poll().is_pending());
    assert!(format!("{:?}", &*dropped).contains("backing_off"));
    drop(dropped);
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let script = Script::new([Step::Status(503)]);
    let layer = RetryLayer::builder().max_attempts(1).build().unwrap();
    let before = layer.handle().budget().available();
    let res = layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(script.calls().len(), 1);
    assert_eq!(layer.handle().stats().retries(), 0);
    assert_eq!(layer.handle().budget().available(), before);
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn metrics_count_retries_and_give_ups() {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    let layer = RetryLayer::builder()
        .name("tasks")
        .max_attempts(2)
        .budget(roomy())
        .build()
        .unwrap();
    let mut registry = Registry::default();
    layer.handle().register(&mut registry);

    // One retry after a response, one after an error, attempts exhausted once, and a
    // rejection.
    let script = Script::new([Step::Status(500), Step::Status(200)]);
    layer
        .layer(script.service())
        .oneshot(get_req())
        .await
        .unwrap();
    let script = Script::new([Step::Reset, Step::Reset, Step::Open]);
    let svc = layer.layer(script.service());
    svc.clone().oneshot(get_req()).await.unwrap_err();
    svc.clone().oneshot(get_req()).await.unwrap_err();

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        r#"retry_retries_total{retry="tasks",reason="response"} 1"#,
        r#"retry_retries_total{retry="tasks",reason="error"} 1"#,
        r#"retry_given_up_total{retry="tasks",reason="attempts_exhausted"} 1"#,
        r#"retry_given_up_total{retry="tasks",reason="circuit_open"} 1"#,
        r#"retry_given_up_total{retry="tasks",reason="budget_exhausted"} 0"#,
        r#"retry_budget_available{retry="tasks"} 9998"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
