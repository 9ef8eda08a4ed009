use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tower::{Service, ServiceExt as _, service_fn};
use tower_layer::Layer;

use super::*;

/// What the inner service saw of one request.
#[derive(Debug, Default, Clone)]
struct Seen {
    headers: HeaderMap,
    extension: Option<RequestId>,
    current_in_call: Option<RequestId>,
    current_in_future: Option<RequestId>,
}

/// An inner service that records what it saw and answers with an empty body.
fn recording(
    seen: Arc<Mutex<Seen>>,
) -> impl Service<
    Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<()>| {
        let seen = seen.clone();
        {
            let mut s = seen.lock().unwrap();
            s.headers = req.headers().clone();
            s.extension = req.extensions().get::<RequestId>().cloned();
            s.current_in_call = RequestId::current();
        }
        async move {
            seen.lock().unwrap().current_in_future = RequestId::current();
            Ok(Response::new(String::new()))
        }
    })
}

fn request(id: Option<&[u8]>) -> Request<()> {
    let mut req = Request::new(());
    if let Some(id) = id {
        req.headers_mut()
            .insert("x-request-id", HeaderValue::from_bytes(id).unwrap());
    }
    req
}

async fn serve(req: Request<()>) -> (Seen, Response<RequestIdBody<String>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let res = RequestIdLayer::new()
        .layer(recording(seen.clone()))
        .oneshot(req)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, res)
}

#[tokio::test]
async fn keeps_a_valid_inbound_id() {
    let (seen, res) = serve(request(Some(b"abc-123"))).await;
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    assert_eq!(seen.headers["x-request-id"], "abc-123");
    assert_eq!(seen.extension.unwrap(), "abc-123");
    assert_eq!(seen.current_in_call.unwrap(), "abc-123");
    assert_eq!(seen.current_in_future.unwrap(), "abc-123");
    assert_eq!(res.body().request_id(), "abc-123");
    // The scope ends with the request.
    assert_eq!(RequestId::current(), None);
}

#[tokio::test]
async fn generates_a_uuid_when_absent() {
    let (seen, res) = serve(request(None)).await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
        4,
        "{id}"
    );
    // No header is added to the request: the ID is in its extensions and its scope.
    assert!(seen.headers.get("x-request-id").is_none());
    assert_eq!(seen.extension.unwrap(), id.as_str());
    assert_eq!(seen.current_in_call.unwrap(), id.as_str());
    assert_eq!(seen.current_in_future.unwrap(), id.as_str());
}

#[tokio::test]
async fn never_reflects_unsafe_input() {
    let long = vec![b'a'; 129];
    let unsafe_ids: &[&[u8]] = &[
        b"",
        &long,
        b"a b",
        b"\"quoted\"",
        b"<script>alert(1)</script>",
        b"a;b",
        b"a,b",
        b"a\tb",
        b"caf\xc3\xa9",
        b"\xff\xfe",
        b"${jndi:ldap://x}",
    ];
    for raw in unsafe_ids {
        let (seen, res) = serve(request(Some(raw))).await;
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "{raw:?} -> {id}");
        assert_ne!(id.as_bytes(), *raw);
        // Neither the response nor the inner service gets the rejected value, anywhere.
        for (_, v) in res.headers().iter().chain(seen.headers.iter()) {
            assert_ne!(v.as_bytes(), *raw);
        }
        assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(seen.headers["x-request-id"], id.as_str());
        assert_eq!(seen.extension.unwrap(), id.as_str());
        assert_eq!(seen.current_in_call.unwrap(), id.as_str());
    }
}

#[tokio::test]
async fn a_repeated_header_is_replaced() {
    let mut req = request(Some(b"first"));
    req.headers_mut()
        .append("x-request-id", HeaderValue::from_static("second"));
    let (seen, res) = serve(req).await;
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(seen.headers["x-request-id"], id);
}

#[tokio::test]
async fn header_name_and_generator_are_configurable() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let svc = RequestIdLayer::x_correlation_id()
        .make_request_id_with(|_: &Request<()>| RequestId::try_from("made").unwrap())
        .layer(recording(seen.clone()));

    let res = svc
        .clone()
        .oneshot(request(Some(b"ignored")))
        .await
        .unwrap();
    // `x-request-id` is not the configured header: left alone, and a fresh ID is made.
    assert_eq!(res.headers()["x-correlation-id"], "made");
    assert_eq!(seen.lock().unwrap().headers["x-request-id"], "ignored");

    let mut req = request(None);
    req.headers_mut()
        .insert("x-correlation-id", HeaderValue::from_static("kept"));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-correlation-id"], "kept");

    let custom = HeaderName::from_static("request-id");
    let svc = RequestIdLayer::new()
        .header_name(custom.clone())
        .make_request_id_with(MakeRequestUuid::v7())
        .layer(recording(seen.clone()));
    assert_eq!(svc.header_name(), &custom);
    let res = svc.oneshot(request(None)).await.unwrap();
    let id = res.headers()["request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn our_id_replaces_one_set_by_the_inner_service() {
    let svc = RequestIdLayer::new().layer(service_fn(|_: Request<()>| async {
        let mut res = Response::new(String::new());
        res.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("other"));
        Ok::<_, Infallible>(res)
    }));
    let res = svc.oneshot(request(Some(b"mine"))).await.unwrap();
    assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    assert_eq!(res.headers()["x-request-id"], "mine");
}

#[tokio::test]
async fn inner_errors_pass_through_unchanged() {
    let svc = RequestIdLayer::new().layer(service_fn(|_: Request<()>| async {
        Err::<Response<String>, _>(io::Error::other("boom"))
    }));
    let err: io::Error = svc.oneshot(request(None)).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

/// A body that records [`RequestId::current`] on each poll and yields two frames.
struct ProbeBody {
    polls: Arc<Mutex<Vec<Option<RequestId>>>>,
    left: u8,
}

impl Body for ProbeBody {
    type Data = &'static [u8];
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.polls.lock().unwrap().push(RequestId::current());
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(b"x"))))
    }
}

#[test]
fn the_scope_lasts_through_the_response_body() {
    let polls = Arc::new(Mutex::new(Vec::new()));
    let body_polls = polls.clone();
    let mut svc = RequestIdLayer::new().layer(service_fn(move |_: Request<()>| {
        let polls = body_polls.clone();
        async move { Ok::<_, Infallible>(Response::new(ProbeBody { polls, left: 2 })) }
    }));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = svc.call(request(Some(b"body-scope")));
    let Poll::Ready(Ok(res)) = pin!(fut).poll(&mut cx) else {
        panic!("service_fn future is ready at once")
    };
    // The future is gone; only the body carries the scope now.
    assert_eq!(RequestId::current(), None);
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
    assert_eq!(RequestId::current(), None);
    let polls = polls.lock().unwrap();
    assert_eq!(polls.len(), 3);
    for seen in polls.iter() {
        assert_eq!(seen.as_ref().unwrap(), "body-scope");
    }
}

#[test]
fn interleaved_requests_on_one_thread_see_their_own_ids() {
    // Futures that yield once, so the two requests interleave poll by poll.
    let mut svc = RequestIdLayer::new().layer(service_fn(|_: Request<()>| async {
        let before = RequestId::current();
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        assert_eq!(before, RequestId::current());
        Ok::<_, Infallible>(Response::new(
            before.map(|id| id.to_string()).unwrap_or_default(),
        ))
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut a = pin!(svc.call(request(Some(b"a"))));
    let mut b = pin!(svc.call(request(Some(b"b"))));
    assert!(a.as_mut().poll(&mut cx).is_pending());
    assert!(b.as_mut().poll(&mut cx).is_pending());
    let Poll::Ready(Ok(res_b)) = b.as_mut().poll(&mut cx) else {
        panic!("b is ready on its second poll")
    };
    let Poll::Ready(Ok(res_a)) = a.as_mut().poll(&mut cx) else {
        panic!("a is ready on its second poll")
    };
    assert_eq!(res_a.body().get_ref(), "a");
    assert_eq!(res_b.body().get_ref(), "b");
}

/// An outbound "client" that answers with the `x-request-id` it was sent, if any.
fn echo_client() -> impl Service<
    Request<()>,
    Response = Option<HeaderValue>,
    Error = Infallible,
    Future = impl Future<Output = Result<Option<HeaderValue>, Infallible>>,
> + Clone {
    service_fn(|req: Request<()>| async move {
        assert!(req.headers().get_all("x-request-id").iter().count() <= 1);
        Ok(req.headers().get("x-request-id").cloned())
    })
}

#[tokio::test]
async fn propagates_the_ambient_id() {
    let client = PropagateRequestIdLayer::new().layer(echo_client());
    let id = RequestId::try_from("ambient").unwrap();
    let sent = id
        .scope(client.clone().oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(sent.unwrap(), "ambient");
    // No scope, no extension: no header.
    assert_eq!(client.oneshot(Request::new(())).await.unwrap(), None);
}

#[tokio::test]
async fn never_overwrites_an_existing_outbound_header() {
    let client = PropagateRequestIdLayer::new().layer(echo_client());
    let mut req = Request::new(());
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("explicit"));
    req.extensions_mut()
        .insert(RequestId::try_from("extension").unwrap());
    let sent = RequestId::try_from("ambient")
        .unwrap()
        .scope(client.oneshot(req))
        .await
        .unwrap();
    assert_eq!(sent.unwrap(), "explicit");
}

#[tokio::test]
async fn extensions_win_over_the_ambient_scope() {
    let client = PropagateRequestIdLayer::new().layer(echo_client());
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(RequestId::try_from("extension").unwrap());
    let sent = RequestId::try_from("ambient")
        .unwrap()
        .scope(client.oneshot(req))
        .await
        .unwrap();
    assert_eq!(sent.unwrap(), "extension");
}

#[tokio::test]
async fn outbound_header_name_is_configurable() {
    let client = PropagateRequestIdLayer::new()
        .header_name(HeaderName::from_static("x-trace"))
        .layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().clone())
        }));
    assert_eq!(client.header_name(), "x-trace");
    let sent = RequestId::try_from("abc")
        .unwrap()
        .scope(client.oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(sent["x-trace"], "abc");
    assert!(sent.get("x-request-id").is_none());
}

#[tokio::test]
async fn an_inbound_server_forwards_its_id_outbound() {
    // A gateway: the inbound layer's scope reaches the client call in the handler.
    let client = PropagateRequestIdLayer::new().layer(echo_client());
    let svc = RequestIdLayer::new().layer(service_fn(move |_: Request<()>| {
        let client = client.clone();
        async move {
            let sent = client.oneshot(Request::new(())).await?;
            Ok::<_, Infallible>(Response::new(sent))
        }
    }));
    let res = svc.oneshot(request(Some(b"gateway"))).await.unwrap();
    assert_eq!(res.body().get_ref().as_ref().unwrap(), "gateway");
}

#[tokio::test]
async fn in_current_scope_carries_the_id_into_spawned_tasks() {
    let id = RequestId::try_from("spawned").unwrap();
    let (plain, carried) = id
        .scope(async {
            let plain = tokio::spawn(async { RequestId::current() });
            let carried = tokio::spawn(in_current_scope(async { RequestId::current() }));
            (plain.await.unwrap(), carried.await.unwrap())
        })
        .await;
    assert_eq!(plain, None);
    assert_eq!(carried.unwrap(), "spawned");

    let outside = in_current_scope(async { RequestId::current() });
    assert_eq!(outside.request_id(), None);
    assert_eq!(outside.await, None);
}

/// A `MakeWriter` into a shared buffer, for reading JSON log lines back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// The current span's `request_id` of each line whose message is `message`.
    fn request_ids_of(&self, message: &str) -> Vec<Option<String>> {
        let buf = self.0.lock().unwrap();
        std::str::from_utf8(&buf)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|v| v["fields"]["message"] == message)
            .map(|v| v["span"]["request_id"].as_str().map(str::to_owned))
            .collect()
    }
}

fn json_subscriber(out: Captured) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(out)
        .with_max_level(tracing::Level::INFO)
        .finish()
}

#[test]
fn with_span_tags_every_line_of_the_request_and_its_body() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(json_subscriber(out.clone()));

    let mut svc = RequestIdLayer::new()
        .with_span()
        .layer(service_fn(|_: Request<()>| {
            tracing::info!("in call");
            async {
                tracing::info!("in future");
                Ok::<_, Infallible>(Response::new(String::from("x")))
            }
        }));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(res)) = pin!(svc.call(request(Some(b"logged")))).poll(&mut cx) else {
        panic!("ready at once")
    };
    tracing::info!("outside");
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}

    assert_eq!(out.request_ids_of("in call"), [Some("logged".to_owned())]);
    assert_eq!(out.request_ids_of("in future"), [Some("logged".to_owned())]);
    assert_eq!(out.request_ids_of("outside"), [None]);
}

#[test]
fn records_the_id_on_an_outer_span_that_declares_it() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(json_subscriber(out.clone()));

    let outer = tracing::info_span!("outer", request_id = tracing::field::Empty);
    let mut svc = RequestIdLayer::new().layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    {
        let _entered = outer.enter();
        drop(svc.call(request(Some(b"recorded"))));
        tracing::info!("after call");
    }
    assert_eq!(
        out.request_ids_of("after call"),
        [Some("recorded".to_owned())]
    );

    // A span without the field is left alone (and nothing panics).
    let other = tracing::info_span!("other");
    let _entered = other.enter();
    drop(svc.call(request(Some(b"ignored"))));
    tracing::info!("no field");
    assert_eq!(out.request_ids_of("no field"), [None]);
}

#[test]
fn default_span_level_is_configurable_and_filtered() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(json_subscriber(out.clone()));
    // A DEBUG span is disabled under an INFO filter, so the line goes untagged: the caveat
    // documented on `DefaultMakeSpan`.
    for (level, expect) in [
        (tracing::Level::DEBUG, None),
        (tracing::Level::ERROR, Some("lvl".to_owned())),
    ] {
        let mut svc = RequestIdLayer::new()
            .make_span_with(DefaultMakeSpan::new().level(level))
            .layer(service_fn(|_: Request<()>| async {
                tracing::info!("level probe");
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            pin!(svc.call(request(Some(b"lvl"))))
                .poll(&mut cx)
                .is_ready()
        );
        assert_eq!(out.request_ids_of("level probe").pop().unwrap(), expect);
    }
}

#[test]
fn layers_keep_the_inner_error_type() {
    fn error_of<S: Service<Request<()>, Error = E>, E>(_: &S) {}
    let inbound = RequestIdLayer::new().layer(recording(Default::default()));
    error_of::<_, Infallible>(&inbound);
    let outbound = PropagateRequestIdLayer::new().layer(echo_client());
    error_of::<_, Infallible>(&outbound);
}

#[test]
fn accessors_reach_the_inner_service() {
    let mut svc = RequestIdLayer::new().layer(7_u8);
    assert_eq!(*svc.get_ref(), 7);
    *svc.get_mut() = 8;
    assert_eq!(svc.into_inner(), 8);
    let mut svc = PropagateRequestIdLayer::default().layer(7_u8);
    *svc.get_mut() += 1;
    assert_eq!(*svc.get_ref(), 8);
    assert_eq!(svc.into_inner(), 8);
}

#[test]
fn scopes_nest_and_are_left_on_unwind() {
    let outer = RequestId::try_from("outer").unwrap();
    let inner = RequestId::try_from("inner").unwrap();
    outer.sync_scope(|| {
        assert_eq!(RequestId::current().unwrap(), "outer");
        inner.clone().sync_scope(|| {
            assert_eq!(RequestId::current().unwrap(), "inner");
        });
        assert_eq!(RequestId::current().unwrap(), "outer");
        // A panic inside a scope still restores the outer one.
        let unwound = std::panic::catch_unwind(|| {
            inner.sync_scope(|| {
                assert_eq!(RequestId::current().unwrap(), "inner");
                panic!("unwinding out of the scope");
            })
        });
        assert!(unwound.is_err());
        assert_eq!(RequestId::current().unwrap(), "outer");
    });
    assert_eq!(RequestId::current(), None);
}

#[test]
fn a_panicking_inner_service_leaves_no_scope_behind() {
    let mut svc = RequestIdLayer::new().layer(service_fn(|_: Request<()>| {
        assert_eq!(RequestId::current().unwrap(), "boom");
        panic!("inner call panics");
        #[allow(unreachable_code)]
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    }));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call(request(Some(b"boom"))));
    }));
    assert!(unwound.is_err());
    assert_eq!(RequestId::current(), None);
}
