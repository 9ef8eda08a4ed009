//! The limit layers over real HTTP on loopback: hyper's server around a bare tower service
//! (the generic path) and axum (the usual one), hyper-util's client. Every test is bounded by
//! a timeout.
#![cfg(feature = "limit")]

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body as AxumBody, routing};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, mpsc},
    time::timeout,
};
use tower::{BoxError, ServiceBuilder, service_fn};
use tower_bulwark::limit::{
    BodyLimitLayer, DefaultRejection, Exempt, LoadShedLayer, Rejection, ResponseTimeoutLayer,
};

/// A bound on every test.
const LIMIT: Duration = Duration::from_secs(20);

// ===== helpers =====

/// Serves `svc` with hyper's HTTP/1 server, one task per connection.
async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

async fn serve_axum(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap()
}

async fn text<B: Body>(res: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sets its flag when dropped: tells whether a handler's future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A body fed through a channel, ending when the sender is dropped; its length unknown, so
/// hyper sends it chunked.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn channel_body() -> (mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody(rx))
}

/// Polls `ready` every millisecond until it holds, within `LIMIT`.
async fn eventually(mut ready: impl FnMut() -> bool) {
    timeout(LIMIT, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the condition held in time");
}

// ===== timeout =====

#[tokio::test]
async fn a_timeout_answers_the_rejection_and_drops_the_inner_future_at_once() {
    timeout(LIMIT, async {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let hangs = service_fn(move |_: Request<Incoming>| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        });
        let json = |rejection: Rejection, parts: &http::request::Parts| {
            let body = format!(r#"{{"path":"{}","error":"{rejection}"}}"#, parts.uri.path());
            Response::builder()
                .status(rejection.status())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Bytes::from(body))
                .unwrap()
        };
        let svc = ServiceBuilder::new()
            .layer(
                ResponseTimeoutLayer::new(Duration::from_millis(100))
                    .unwrap()
                    .rejection(json),
            )
            .service(hangs);
        let addr = serve(svc).await;

        let res = client().request(get(addr, "/slow")).await.unwrap();
        // Dropped when the deadline passed, before the answer was even sent.
        assert!(
            dropped.load(SeqCst),
            "the inner future is dropped at expiry"
        );
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            text(res).await,
            r#"{"path":"/slow","error":"no response within 100 ms"}"#
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_timeout_bounds_the_head_not_a_streaming_body() {
    timeout(LIMIT, async {
        // The head at once, then a body that takes three times the timeout.
        let app = Router::new().route(
            "/events",
            routing::get(|| async {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    for event in ["one\n", "two\n", "three\n"] {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        tx.send(Bytes::from(event)).await.unwrap();
                    }
                });
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(AxumBody::new(body))
                    .unwrap()
            }),
        );
        let app = app.layer(ResponseTimeoutLayer::new(Duration::from_millis(250)).unwrap());
        let addr = serve_axum(app).await;
        let res = client().request(get(addr, "/events")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "one\ntwo\nthree\n");
    })
    .await
    .unwrap();
}

// ===== body limit =====

/// A hyper service counting its calls and reading the whole (limited) body: 200 with the
/// length, or 400 naming the error.
fn reader(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Limited<Incoming>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(move |req: Request<Limited<Incoming>>| {
        calls.fetch_add(1, SeqCst);
        async move {
            let (status, text) = match req.into_body().collect().await {
                Ok(body) => (StatusCode::OK, body.to_bytes().len().to_string()),
                Err(err) => {
                    let limit = err.downcast_ref::<LengthLimitError>().is_some();
                    (
                        StatusCode::BAD_REQUEST,
                        format!("read error, limit: {limit}"),
                    )
                }
            };
            let res = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(text)))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    })
}

#[tokio::test]
async fn a_body_declared_too_long_is_refused_413_without_calling_the_inner_service() {
    timeout(LIMIT, async {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(100).unwrap())
            .service(reader(calls.clone()));
        let addr = serve(svc).await;

        let post = |len: usize| {
            Request::post(format!("http://{addr}/"))
                .body(Full::new(Bytes::from(vec![b'x'; len])))
                .unwrap()
        };
        // Full sends a Content-Length.
        let res = client().request(post(101)).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            text(res).await,
            "request body is larger than the limit of 100 bytes\n"
        );
        assert_eq!(calls.load(SeqCst), 0, "the inner service is not called");

        let res = client().request(post(100)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "100");
        assert_eq!(calls.load(SeqCst), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_read_error_for_the_inner_service() {
    timeout(LIMIT, async {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(100).unwrap())
            .service(reader(calls.clone()));
        let addr = serve(svc).await;

        let send = |chunks: usize| {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for _ in 0..chunks {
                    // Stops when the server stops reading.
                    if tx.send(Bytes::from(vec![b'x'; 40])).await.is_err() {
                        break;
                    }
                }
            });
            let req = Request::post(format!("http://{addr}/")).body(body).unwrap();
            client().request(req)
        };
        // 120 bytes, no Content-Length: the service is called, and its read fails.
        let res = send(3).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(text(res).await, "read error, limit: true");
        assert_eq!(calls.load(SeqCst), 1);
        // 80 bytes are fine.
        let res = send(2).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, "80");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn axum_extractors_answer_a_chunked_body_over_the_limit_with_413() {
    timeout(LIMIT, async {
        let app = Router::new()
            .route("/", routing::post(|body: String| async move { body }))
            .layer(BodyLimitLayer::new(10).unwrap());
        let addr = serve_axum(app).await;
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"0123456789")).await;
            let _ = tx.send(Bytes::from_static(b"abc")).await;
        });
        let req = Request::post(format!("http://{addr}/")).body(body).unwrap();
        let res = client().request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    })
    .await
    .unwrap();
}

// ===== load shedding =====

/// A hyper server whose `/hold` handlers wait for `release` (counting themselves in
/// `entered`), and whose `/stream` answers at once with a body fed by the returned senders.
struct Held {
    addr: SocketAddr,
    entered: Arc<AtomicUsize>,
    release: Arc<Notify>,
    streams: mpsc::Receiver<mpsc::Sender<Bytes>>,
}

async fn held<P>(shed: LoadShedLayer<DefaultRejection, P>) -> Held
where
    P: Exempt<Incoming> + Clone + Send + Sync + 'static,
{
    let entered = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (stream_tx, streams) = mpsc::channel(16);
    let (e, r) = (entered.clone(), release.clone());
    let inner = service_fn(move |req: Request<Incoming>| {
        let (entered, release, stream_tx) = (e.clone(), r.clone(), stream_tx.clone());
        async move {
            if req.uri().path() == "/stream" {
                let (tx, body) = channel_body();
                stream_tx.send(tx).await.unwrap();
                return Ok::<_, Infallible>(Response::new(Either::Right(body)));
            }
            if req.uri().path() == "/hold" {
                entered.fetch_add(1, SeqCst);
                release.notified().await;
            }
            Ok(Response::new(Either::Left(Full::new(Bytes::from("done")))))
        }
    });
    let svc = ServiceBuilder::new().layer(shed).service(inner);
    Held {
        addr: serve(svc).await,
        entered,
        release,
        streams,
    }
}

#[tokio::test]
async fn load_shedding_refuses_exactly_when_the_limit_is_in_flight() {
    timeout(LIMIT, async {
        let shed = LoadShedLayer::new(2).unwrap();
        let probe = shed.clone();
        let server = held(shed).await;
        let addr = server.addr;
        let first = tokio::spawn(client().request(get(addr, "/hold")));
        let second = tokio::spawn(client().request(get(addr, "/hold")));
        eventually(|| server.entered.load(SeqCst) == 2).await;
        assert_eq!(probe.in_flight(), 2);

        // The third is refused at once, with Retry-After.
        let res = client().request(get(addr, "/fast")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            text(res).await,
            "server is at its concurrency limit; retry shortly\n"
        );

        // One finishes: one slot is free again, and only one.
        server.release.notify_one();
        let res = first.await.unwrap().unwrap();
        assert_eq!(text(res).await, "done");
        eventually(|| probe.in_flight() == 1).await;
        let res = client().request(get(addr, "/fast")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(probe.in_flight(), 1);

        server.release.notify_one();
        let res = second.await.unwrap().unwrap();
        assert_eq!(text(res).await, "done");
        eventually(|| probe.in_flight() == 0).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_streaming_response_holds_its_slot_until_the_body_ends_or_is_dropped() {
    timeout(LIMIT, async {
        let shed = LoadShedLayer::new(1).unwrap();
        let probe = shed.clone();
        let mut server = held(shed).await;
        let addr = server.addr;

        // Ended: the slot comes back when the body's last frame has gone.
        let res = client().request(get(addr, "/stream")).await.unwrap();
        let feed = server.streams.recv().await.unwrap();
        assert_eq!(probe.in_flight(), 1, "the head is out, the body is not");
        let refused = client().request(get(addr, "/fast")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        feed.send(Bytes::from("event\n")).await.unwrap();
        drop(feed);
        assert_eq!(text(res).await, "event\n");
        eventually(|| probe.in_flight() == 0).await;

        // Dropped: the client goes away mid-stream; hyper drops the body, and the slot.
        let res = client().request(get(addr, "/stream")).await.unwrap();
        let feed = server.streams.recv().await.unwrap();
        feed.send(Bytes::from("event\n")).await.unwrap();
        assert_eq!(probe.in_flight(), 1);
        drop(res);
        eventually(|| probe.in_flight() == 0).await;
        let res = client().request(get(addr, "/fast")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        drop(feed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn exempt_requests_pass_without_a_slot() {
    timeout(LIMIT, async {
        let shed = LoadShedLayer::new(1)
            .unwrap()
            .exempt(|req: &Request<Incoming>| req.uri().path() == "/stream");
        let probe = shed.clone();
        let mut server = held(shed).await;
        let addr = server.addr;
        let hold = tokio::spawn(client().request(get(addr, "/hold")));
        eventually(|| server.entered.load(SeqCst) == 1).await;
        // Full, yet the event stream is answered, and takes nothing.
        let res = client().request(get(addr, "/stream")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(probe.in_flight(), 1);
        let _feed = server.streams.recv().await.unwrap();
        server.release.notify_one();
        hold.await.unwrap().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_timed_out_request_gives_its_slot_back() {
    timeout(LIMIT, async {
        let shed = LoadShedLayer::new(1).unwrap();
        let probe = shed.clone();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let hangs = service_fn(move |_: Request<Incoming>| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        });
        // The recommended order: timeout outside load shedding.
        let svc = ServiceBuilder::new()
            .layer(ResponseTimeoutLayer::new(Duration::from_millis(50)).unwrap())
            .layer(shed)
            .service(hangs);
        let addr = serve(svc).await;
        let res = client().request(get(addr, "/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(dropped.load(SeqCst));
        assert_eq!(probe.in_flight(), 0);
    })
    .await
    .unwrap();
}
