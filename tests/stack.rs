//! The preset stacks over real HTTP on loopback: `ServerStack` around an axum `Router`,
//! `ClientStack` around hyper-util's client, every slot on and every slot off, and the order
//! of the slots seen from outside. Every test is bounded by a timeout.
#![cfg(all(
    feature = "stack",
    feature = "request-id",
    feature = "trace",
    feature = "metrics",
    feature = "retry",
    feature = "fallback-cache",
    feature = "circuit-breaker",
    feature = "limit"
))]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{MatchedPath, State},
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{net::TcpListener, sync::Notify, time::timeout};
use tower::{BoxError, Layer as _, ServiceExt as _, util::BoxCloneSyncService};
use tower_bulwark::{
    circuit_breaker::CircuitOpen,
    fallback_cache::StaleAnswer,
    limit::{Elapsed, Rejection},
    metrics::{FromExtension, Metrics},
    request_id::RequestId,
    stack::{
        CircuitBreakerSettings, ClientSettings, ClientStack, FallbackCacheSettings, RetrySettings,
        ServerSettings, ServerStack,
    },
};
use tracing_subscriber::{Layer, layer::SubscriberExt as _};

/// A bound on every test.
const LIMIT: Duration = Duration::from_secs(20);

// ===== helpers =====

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get_req(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap()
}

async fn text<B: http_body::Body>(res: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

/// The spans made while it is the default subscriber: name and `request_id` at creation.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanSeen>>>);

/// A span's name, and its `request_id` when it was made.
type SpanSeen = (&'static str, Option<String>);

impl Spans {
    fn named(&self, name: &str) -> Vec<Option<String>> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Find(Option<String>);
        impl tracing::field::Visit for Find {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "request_id" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut find = Find(None);
        attrs.record(&mut find);
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name(), find.0));
    }
}

/// Captures spans for the rest of the (current-thread) test.
fn capture_spans() -> (Spans, tracing::subscriber::DefaultGuard) {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    (spans, tracing::subscriber::set_default(subscriber))
}

// ===== server =====

#[tokio::test]
async fn a_server_stack_with_every_slot_on_identifies_traces_and_counts() {
    let (spans, _guard) = capture_spans();
    timeout(LIMIT, async {
        let mut registry = Registry::default();
        let metrics = Metrics::builder().register(&mut registry);
        let settings = ServerSettings {
            metrics: Some(metrics.server().clone()),
            ..ServerSettings::default()
        };
        // A slot tuned through its layer's own builder: routes labelled by their template.
        let stack = ServerStack::from_settings(&settings).unwrap().metrics(
            metrics
                .server()
                .layer()
                .classify_route(FromExtension::new(MatchedPath::as_str)),
        );
        let app = Router::new()
            .route(
                "/tasks/{id}",
                get(|| async { RequestId::current().unwrap().to_string() }),
            )
            .layer(stack.into_layer());
        let addr = serve(app).await;

        let res = client().request(get_req(addr, "/tasks/7")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        // The handler runs inside the request's scope.
        assert_eq!(text(res).await, id);
        // The server span was made inside the request ID layer: it has the ID from the start.
        assert_eq!(spans.named("http.server.request"), [Some(id)]);
        let scrape = scrape(&registry);
        assert!(
            scrape.contains(
                r#"http_requests_total{method="GET",route="/tasks/{id}",status="200"} 1"#
            ),
            "{scrape}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_stack_with_every_slot_off_is_the_bare_service() {
    let (spans, _guard) = capture_spans();
    timeout(LIMIT, async {
        let app = Router::new()
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            // axum's own 2 MB default for `Bytes` aside.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(
                ServerStack::from_settings(&ServerSettings::off())
                    .unwrap()
                    .into_layer(),
            );
        let addr = serve(app).await;
        // Far over the default 2 MiB: no limit when off.
        let big = Request::post(format!("http://{addr}/echo"))
            .body(Full::new(Bytes::from(vec![b'x'; 3 << 20])))
            .unwrap();
        let res = client().request(big).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("x-request-id"));
        assert_eq!(text(res).await, (3 << 20).to_string());
        assert!(spans.named("http.server.request").is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refusals_happen_inside_the_observability_layers() {
    timeout(LIMIT, async {
        let mut registry = Registry::default();
        let metrics = Metrics::builder().register(&mut registry);
        let settings = ServerSettings {
            metrics: Some(metrics.server().clone()),
            timeout: Some(Duration::from_millis(100)),
            max_body_bytes: Some(16),
            max_in_flight: Some(1),
            ..ServerSettings::default()
        };
        let json = |rejection: Rejection, _: &Parts| {
            Response::builder()
                .status(rejection.status())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Bytes::from(format!(r#"{{"error":"{rejection}"}}"#)))
                .unwrap()
        };
        let stack = ServerStack::from_settings(&settings)
            .unwrap()
            .rejection(json)
            .metrics(
                metrics
                    .server()
                    .layer()
                    .classify_route(FromExtension::new(MatchedPath::as_str)),
            );
        let entered = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let app = Router::new()
            .route(
                "/hold",
                get(
                    |State((entered, release)): State<(Arc<AtomicUsize>, Arc<Notify>)>| async move {
                        entered.fetch_add(1, SeqCst);
                        release.notified().await;
                        "released"
                    },
                ),
            )
            .route("/slow", get(std::future::pending::<&'static str>))
            .route("/echo", post(|body: Bytes| async move { body }))
            .with_state((entered.clone(), release.clone()))
            .layer(stack.into_layer());
        let addr = serve(app).await;

        let hold = tokio::spawn(client().request(get_req(addr, "/hold")));
        timeout(LIMIT, async {
            while entered.load(SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();

        // Load shed, with a request ID on the refusal.
        let res = client().request(get_req(addr, "/hold")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("x-request-id"));
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");

        // Still full, yet a body too large is a 413, not a 503: the body limit comes first.
        let big = Request::post(format!("http://{addr}/echo"))
            .body(Full::new(Bytes::from(vec![b'x'; 17])))
            .unwrap();
        let res = client().request(big).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(res.headers().contains_key("x-request-id"));
        assert_eq!(
            text(res).await,
            r#"{"error":"request body is larger than the limit of 16 bytes"}"#
        );

        release.notify_one();
        assert_eq!(text(hold.await.unwrap().unwrap()).await, "released");

        // Timed out: 504 with its request ID, and the slot back for the next request.
        let res = client().request(get_req(addr, "/slow")).await.unwrap();
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(res.headers().contains_key("x-request-id"));
        let _ = text(res).await;
        let small = Request::post(format!("http://{addr}/echo"))
            .body(Full::new(Bytes::from("fits")))
            .unwrap();
        let res = client().request(small).await.unwrap();
        assert_eq!(text(res).await, "fits");

        // Every refusal was counted, by route.
        let scrape = scrape(&registry);
        for line in [
            r#"http_requests_total{method="GET",route="/hold",status="503"} 1"#,
            r#"http_requests_total{method="POST",route="/echo",status="413"} 1"#,
            r#"http_requests_total{method="GET",route="/slow",status="504"} 1"#,
            r#"http_errors_total{method="GET",route="/slow",kind="timeout"} 1"#,
            r#"http_requests_total{method="POST",route="/echo",status="200"} 1"#,
        ] {
            assert!(scrape.contains(line), "{line} in\n{scrape}");
        }
    })
    .await
    .unwrap();
}

// ===== client =====

/// A loopback backend: `/slow` never answers in time; anything else answers `answer()` and
/// echoes the `x-request-id` it got.
#[derive(Clone)]
struct Backend {
    hits: Arc<AtomicUsize>,
    status: Arc<Mutex<StatusCode>>,
}

async fn backend() -> (SocketAddr, Backend) {
    let backend = Backend {
        hits: Arc::default(),
        status: Arc::new(Mutex::new(StatusCode::OK)),
    };
    let handle = |State(b): State<Backend>, headers: HeaderMap| async move {
        b.hits.fetch_add(1, SeqCst);
        let id = headers
            .get("x-request-id")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        (*b.status.lock().unwrap(), id)
    };
    let slow = |State(b): State<Backend>| async move {
        b.hits.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    };
    let app = Router::new()
        .route("/slow", get(slow))
        .fallback(handle)
        .with_state(backend.clone());
    (serve(app).await, backend)
}

type ClientService = BoxCloneSyncService<
    Request<Full<Bytes>>,
    Response<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>,
    BoxError,
>;

fn boxed<S, B>(svc: S) -> ClientService
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .map_response(|res: Response<B>| res.map(|b| b.map_err(Into::into).boxed_unsync()))
            .service(svc),
    )
}

/// Every slot on; the breaker opens when the last two calls both failed.
fn all_on(metrics: &Metrics) -> ClientSettings {
    ClientSettings {
        metrics: Some(metrics.client().clone()),
        retry: Some(RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetrySettings::default()
        }),
        fallback_cache: Some(FallbackCacheSettings::default()),
        circuit_breaker: Some(CircuitBreakerSettings {
            failure_rate_threshold: 100.0,
            minimum_calls: 2,
            window: 2,
            ..CircuitBreakerSettings::default()
        }),
        timeout: Some(Duration::from_millis(100)),
        ..ClientSettings::default()
    }
}

#[tokio::test]
async fn a_client_stack_with_every_slot_on_in_the_documented_order() {
    let (spans, _guard) = capture_spans();
    timeout(LIMIT, async {
        let (addr, backend) = backend().await;
        let mut registry = Registry::default();
        let metrics = Metrics::builder().register(&mut registry);
        let stack = ClientStack::from_settings(&all_on(&metrics)).unwrap();
        let breakers = stack.circuit_breaker_handle().unwrap();
        let client = boxed(stack.into_layer().layer(client()));

        // Request ID: the request's own, sent on; one client span carrying it.
        let mut req = get_req(addr, "/a");
        let id = RequestId::try_from("req-42").unwrap();
        req.extensions_mut().insert(id);
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "req-42");
        assert_eq!(spans.named("http.client.request"), [Some("req-42".into())]);
        assert_eq!(backend.hits.load(SeqCst), 1);

        // The backend fails. A stored read is answered stale, and not retried: the cache is
        // below the retry layer.
        *backend.status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
        let res = client.clone().oneshot(get_req(addr, "/a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<StaleAnswer>().is_some());
        assert_eq!(text(res).await, "req-42");
        assert_eq!(backend.hits.load(SeqCst), 2);

        // An unstored read: its failure opens the breaker (the last two calls failed), and the
        // retry meets the open breaker, which ends it: the breaker is below the retry layer.
        let err = client
            .clone()
            .oneshot(get_req(addr, "/b"))
            .await
            .unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err:?}");
        assert_eq!(backend.hits.load(SeqCst), 3);
        assert!(breakers.breakers().iter().any(|b| b.state().is_open()));

        // The breaker refuses the stored read too; the cache above it answers.
        let res = client.clone().oneshot(get_req(addr, "/a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<StaleAnswer>().is_some());
        assert_eq!(text(res).await, "req-42");
        assert_eq!(backend.hits.load(SeqCst), 3);

        // Metrics above it all: one count per call, whatever happened below.
        let scrape = scrape(&registry);
        for line in [
            r#"backend_api_calls_total{operation="other",status="200"} 3"#,
            r#"backend_api_calls_total{operation="other",status="error"} 1"#,
        ] {
            assert!(scrape.contains(line), "{line} in\n{scrape}");
        }
        assert_eq!(spans.named("http.client.request").len(), 4);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_client_timeout_bounds_each_attempt() {
    let (spans, _guard) = capture_spans();
    timeout(LIMIT, async {
        let (addr, backend) = backend().await;
        let mut registry = Registry::default();
        let metrics = Metrics::builder().register(&mut registry);
        let settings = ClientSettings {
            circuit_breaker: None,
            ..all_on(&metrics)
        };
        let client = boxed(
            ClientStack::from_settings(&settings)
                .unwrap()
                .into_layer()
                .layer(client()),
        );
        let err = client.oneshot(get_req(addr, "/slow")).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err:?}");
        // Three attempts, each cut at 100 ms; one call as seen from above.
        assert_eq!(backend.hits.load(SeqCst), 3);
        assert_eq!(spans.named("http.client.request").len(), 1);
        let scrape = scrape(&registry);
        let calls = scrape
            .lines()
            .filter(|l| l.starts_with("backend_api_calls_total{"))
            .collect::<Vec<_>>();
        assert_eq!(calls.len(), 1, "{scrape}");
        assert!(calls[0].ends_with(" 1"), "{scrape}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_stack_with_every_slot_off_passes_through_with_boxed_errors() {
    let (spans, _guard) = capture_spans();
    timeout(LIMIT, async {
        let (addr, backend) = backend().await;
        let stack = ClientStack::from_settings(&ClientSettings::off()).unwrap();
        assert!(stack.circuit_breaker_handle().is_none());
        let client = boxed(stack.into_layer().layer(client()));
        let mut req = get_req(addr, "/a");
        req.extensions_mut()
            .insert(RequestId::try_from("req-1").unwrap());
        let res = client.clone().oneshot(req).await.unwrap();
        // Nothing propagated, no span.
        assert_eq!(text(res).await, "none");
        assert!(spans.named("http.client.request").is_empty());
        // No retry.
        *backend.status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
        let res = client.clone().oneshot(get_req(addr, "/a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(backend.hits.load(SeqCst), 2);
        // The client's own error, boxed, downcasts to itself.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let err = client.oneshot(get_req(dead, "/")).await.unwrap_err();
        assert!(err.is::<hyper_util::client::legacy::Error>(), "{err:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slots_are_switched_one_by_one_at_run_time() {
    timeout(LIMIT, async {
        let (addr, backend) = backend().await;
        *backend.status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
        for retry_on in [false, true] {
            backend.hits.store(0, SeqCst);
            let retry = retry_on.then(|| {
                tower_bulwark::retry::RetryLayer::builder()
                    .max_attempts(2)
                    .backoff(Duration::from_millis(1), Duration::from_millis(1))
                    .build()
                    .unwrap()
            });
            let client = boxed(
                ClientStack::new()
                    .maybe_retry(retry)
                    .into_layer()
                    .layer(client()),
            );
            let res = client.oneshot(get_req(addr, "/a")).await.unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(backend.hits.load(SeqCst), if retry_on { 2 } else { 1 });
        }
        // The same for a server slot: the request ID layer, on then off.
        for on in [true, false] {
            let stack = ServerStack::new()
                .maybe_request_id(on.then(tower_bulwark::request_id::RequestIdLayer::new));
            // With `limit`, the service gets a `Limited` body, even with the limit off.
            let inner = |_: Request<http_body_util::Limited<Full<Bytes>>>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            };
            let svc = stack.into_layer().layer(tower::service_fn(inner));
            let res = svc.oneshot(Request::new(Full::default())).await.unwrap();
            assert_eq!(res.headers().contains_key("x-request-id"), on);
        }
    })
    .await
    .unwrap();
}
