//! Cost per request of the request-ID layers over a bare echo service.
//!
//! The echo service's future is ready at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, and the response body polled to its
//! end, all with a no-op waker. Compare each case with the `bare` case of the same request
//! shape in the same run. On a shared machine that difference is mostly noise, so the `added`
//! group measures the difference itself: each sample alternates batches of 64 requests through
//! the layered and the bare service and reports the median (layered − bare) per request.
//!
//! ```text
//! cargo bench --bench request_id --features request-id -- --warm-up-time 1 --measurement-time 3
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use tower::{Service, util::MapResponse};
use tower_bulwark::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, RequestIdLayer,
};
use tower_layer::Layer;

mod support;

use support::{drive, echo};

type Req = Request<String>;

fn without_id() -> Req {
    Request::new(String::new())
}

fn with_id(id: &HeaderValue) -> Req {
    let mut req = Request::new(String::new());
    req.headers_mut().insert("x-request-id", id.clone());
    req
}

/// Something a router would have put in the request's extensions.
#[derive(Clone)]
// Never read back: it only gives the extension map the size a router's entry has.
#[allow(dead_code)]
struct MatchedRoute(&'static str);

fn typical_request(id: Option<&HeaderValue>) -> Req {
    let mut req = Request::new(String::new());
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(id) = id {
        headers.insert("x-request-id", id.clone());
    }
    req.extensions_mut().insert(MatchedRoute("/tasks/{id}"));
    req
}

type AddContentType = fn(Response<String>) -> Response<String>;

/// `inner`, answering with a content type as a real handler does.
fn typical<S>(inner: S) -> MapResponse<S, AddContentType> {
    MapResponse::new(inner, |mut res: Response<String>| {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    })
}

fn bench(c: &mut Criterion) {
    // Not `from_static`: a value parsed at run time is reference-counted like one hyper reads.
    let inbound = HeaderValue::from_str("8f14e45f-ceea-467f-a8f5-2b7d5c9e1a02").unwrap();
    let mut g = c.benchmark_group("request_id");

    g.bench_function("bare/no_header", |b| {
        let mut svc = echo();
        b.iter(|| drive(&mut svc, without_id()));
    });
    g.bench_function("bare/with_header", |b| {
        let mut svc = echo();
        b.iter(|| drive(&mut svc, with_id(&inbound)));
    });

    g.bench_function("inbound/valid_kept", |b| {
        let mut svc = RequestIdLayer::new().layer(echo());
        b.iter(|| drive(&mut svc, with_id(&inbound)));
    });
    g.bench_function("inbound/generated_v4", |b| {
        let mut svc = RequestIdLayer::new().layer(echo());
        b.iter(|| drive(&mut svc, without_id()));
    });
    g.bench_function("inbound/generated_v7", |b| {
        let mut svc = RequestIdLayer::new()
            .make_request_id_with(MakeRequestUuid::v7())
            .layer(echo());
        b.iter(|| drive(&mut svc, without_id()));
    });
    // No subscriber is installed, so this is the cost of a span that is switched off.
    g.bench_function("inbound/valid_kept_with_span", |b| {
        let mut svc = RequestIdLayer::new().with_span().layer(echo());
        b.iter(|| drive(&mut svc, with_id(&inbound)));
    });

    g.bench_function("outbound/in_scope", |b| {
        let mut svc = PropagateRequestIdLayer::new().layer(echo());
        let id = RequestId::new_v4();
        // The scope is entered once around the loop: it stands for the inbound request.
        id.sync_scope(|| b.iter(|| drive(&mut svc, without_id())));
    });
    g.bench_function("outbound/no_scope", |b| {
        let mut svc = PropagateRequestIdLayer::new().layer(echo());
        b.iter(|| drive(&mut svc, without_id()));
    });

    // A request and response shaped like a real server's: a few headers and an extension on
    // the request, a content type on the response. The maps are already allocated, so the
    // layer's header and extension writes cost a hash insert, not a first allocation.
    g.bench_function("typical/bare", |b| {
        let mut svc = typical(echo());
        b.iter(|| drive(&mut svc, typical_request(Some(&inbound))));
    });
    g.bench_function("typical/inbound_valid_kept", |b| {
        let mut svc = RequestIdLayer::new().layer(typical(echo()));
        b.iter(|| drive(&mut svc, typical_request(Some(&inbound))));
    });
    g.bench_function("typical/inbound_generated_v4", |b| {
        let mut svc = RequestIdLayer::new().layer(typical(echo()));
        b.iter(|| drive(&mut svc, typical_request(None)));
    });
    g.bench_function("typical/bare_no_header", |b| {
        let mut svc = typical(echo());
        b.iter(|| drive(&mut svc, typical_request(None)));
    });

    g.bench_function("make/new_v4", |b| b.iter(RequestId::new_v4));
    g.bench_function("make/new_v7", |b| b.iter(RequestId::new_v7));
    g.finish();
}

/// See [`support::added`]: `layered` against `bare`, on requests made by `request`.
fn added<A, AB, L, LB>(
    mut bare: A,
    mut layered: L,
    request: impl Fn() -> Req,
) -> impl FnMut(u64) -> Duration
where
    A: Service<Req, Response = Response<AB>>,
    AB: Body,
    L: Service<Req, Response = Response<LB>>,
    LB: Body,
{
    let request = std::rc::Rc::new(request);
    let for_layered = request.clone();
    support::added(
        move || drive(&mut bare, request()),
        move || drive(&mut layered, for_layered()),
    )
}

fn bench_added(c: &mut Criterion) {
    let inbound = HeaderValue::from_str("8f14e45f-ceea-467f-a8f5-2b7d5c9e1a02").unwrap();
    let mut g = c.benchmark_group("added");

    g.bench_function("inbound/valid_kept", |b| {
        b.iter_custom(added(echo(), RequestIdLayer::new().layer(echo()), || {
            with_id(&inbound)
        }));
    });
    g.bench_function("inbound/generated_v4", |b| {
        b.iter_custom(added(
            echo(),
            RequestIdLayer::new().layer(echo()),
            without_id,
        ));
    });
    g.bench_function("inbound/valid_kept_with_span", |b| {
        b.iter_custom(added(
            echo(),
            RequestIdLayer::new().with_span().layer(echo()),
            || with_id(&inbound),
        ));
    });
    g.bench_function("outbound/in_scope", |b| {
        // Both services run inside the scope, which stands for the inbound request.
        RequestId::new_v4().sync_scope(|| {
            b.iter_custom(added(
                echo(),
                PropagateRequestIdLayer::new().layer(echo()),
                without_id,
            ));
        });
    });
    g.bench_function("typical/inbound_valid_kept", |b| {
        b.iter_custom(added(
            typical(echo()),
            RequestIdLayer::new().layer(typical(echo())),
            || typical_request(Some(&inbound)),
        ));
    });
    g.bench_function("typical/inbound_generated_v4", |b| {
        b.iter_custom(added(
            typical(echo()),
            RequestIdLayer::new().layer(typical(echo())),
            || typical_request(None),
        ));
    });
    // The floor: only the two writes the layer cannot skip, an extension on the request and
    // a header on the response, with one reference-count clone. On this bare shape each is
    // the first entry of its map, so each allocates the map.
    g.bench_function("floor/extension_and_response_header", |b| {
        let id = RequestId::new_v4();
        let name = http::HeaderName::from_static("x-request-id");
        let header = id.as_header_value().clone();
        let with_extension = tower::util::MapRequest::new(echo(), move |mut req: Req| {
            req.extensions_mut().insert(id.clone());
            req
        });
        let svc = MapResponse::new(with_extension, move |mut res: Response<String>| {
            res.headers_mut().insert(name.clone(), header.clone());
            res
        });
        b.iter_custom(added(echo(), svc, || with_id(&inbound)));
    });
    g.finish();
}

criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
