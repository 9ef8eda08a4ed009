//! Cost per request of the preset stacks with every slot off, and of the limit layers, over
//! a bare echo service.
//!
//! Each iteration is driven by hand with a no-op waker (see `support::drive`): `poll_ready`,
//! `call`, one poll of the future, the response body to its end. The `added` group measures
//! the difference itself: each sample alternates batches of 64 requests through the layered
//! and the bare service and reports the median (layered − bare) per request.
//!
//! The timeout layers make a Tokio timer per request, so the benches run inside a runtime's
//! context (entered, not blocked on: the futures are still polled by hand).
//!
//! ```text
//! cargo bench --bench stack --features full -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    convert::Infallible,
    future::{Ready, ready},
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited, combinators::UnsyncBoxBody};
use tower::{
    Service, service_fn,
    util::{BoxCloneSyncService, MapResponse},
};
use tower_bulwark::{
    limit::{BodyLimitLayer, CallTimeoutLayer, LoadShedLayer, ResponseTimeoutLayer},
    stack::{ClientStack, Optional, ServerStack},
};
use tower_layer::{Identity, Layer};

mod support;

use support::{drive, echo};

type Req = Request<String>;

fn request() -> Req {
    Request::new(String::new())
}

/// The echo service behind a body limit, whose request body is `Limited<String>`.
fn limited_echo() -> impl Service<
    Request<Limited<String>>,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_: Request<Limited<String>>| ready(Ok(Response::new(String::new()))))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut g = c.benchmark_group("stack");

    g.bench_function("bare", |b| {
        let mut svc = echo();
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("server/all_off", |b| {
        let mut svc = ServerStack::new().into_layer().layer(limited_echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("client/all_off", |b| {
        let mut svc = ClientStack::new().into_layer().layer(echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("limit/response_timeout", |b| {
        let layer = ResponseTimeoutLayer::new(Duration::from_secs(30)).unwrap();
        let mut svc = layer.layer(echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("limit/body_limit", |b| {
        let mut svc = BodyLimitLayer::new(1 << 20).unwrap().layer(limited_echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("limit/load_shed", |b| {
        let mut svc = LoadShedLayer::new(1024).unwrap().layer(echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("limit/call_timeout", |b| {
        let layer = CallTimeoutLayer::new(Duration::from_secs(10)).unwrap();
        let mut svc = layer.layer(echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.bench_function("server/limits_on", |b| {
        let mut svc = limits_on().into_layer().layer(limited_echo());
        b.iter(|| drive(&mut svc, request()));
    });
    g.finish();
}

/// The server stack with its three limits on and the rest off.
fn limits_on() -> ServerStack {
    ServerStack::new()
        .timeout(ResponseTimeoutLayer::new(Duration::from_secs(30)).unwrap())
        .body_limit(BodyLimitLayer::new(1 << 20).unwrap())
        .load_shed(LoadShedLayer::new(1024).unwrap())
}

/// See [`support::added`]: `layered` against `bare`.
fn added<A, AB, L, LB>(mut bare: A, mut layered: L) -> impl FnMut(u64) -> Duration
where
    A: Service<Req, Response = Response<AB>>,
    AB: Body,
    L: Service<Req, Response = Response<LB>>,
    LB: Body,
{
    support::added(
        move || drive(&mut bare, request()),
        move || drive(&mut layered, request()),
    )
}

fn bench_added(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut g = c.benchmark_group("added");

    g.bench_function("server/all_off", |b| {
        let layered = ServerStack::new().into_layer().layer(limited_echo());
        b.iter_custom(added(echo(), layered));
    });
    g.bench_function("client/all_off", |b| {
        let layered = ClientStack::new().into_layer().layer(echo());
        b.iter_custom(added(echo(), layered));
    });
    g.bench_function("limit/response_timeout", |b| {
        let layer = ResponseTimeoutLayer::new(Duration::from_secs(30)).unwrap();
        b.iter_custom(added(echo(), layer.layer(echo())));
    });
    g.bench_function("limit/body_limit", |b| {
        let layer = BodyLimitLayer::new(1 << 20).unwrap();
        b.iter_custom(added(echo(), layer.layer(limited_echo())));
    });
    g.bench_function("limit/body_limit_unlimited", |b| {
        b.iter_custom(added(
            echo(),
            BodyLimitLayer::unlimited().layer(limited_echo()),
        ));
    });
    g.bench_function("limit/load_shed", |b| {
        let layer = LoadShedLayer::new(1024).unwrap();
        b.iter_custom(added(echo(), layer.layer(echo())));
    });
    g.bench_function("limit/call_timeout", |b| {
        let layer = CallTimeoutLayer::new(Duration::from_secs(10)).unwrap();
        b.iter_custom(added(echo(), layer.layer(echo())));
    });
    g.bench_function("server/limits_on", |b| {
        let layered = limits_on().into_layer().layer(limited_echo());
        b.iter_custom(added(echo(), layered));
    });
    // The switch alone: six off slots whose layer adds nothing, so that nothing is larger
    // than the bare service's; against `server/all_off`, the rest is the layers' size.
    g.bench_function("optional/six_identity_off", |b| {
        type Off = Optional<Identity>;
        let layered =
            Off::off().layer(Off::off().layer(
                Off::off().layer(Off::off().layer(Off::off().layer(Off::off().layer(echo())))),
            ));
        b.iter_custom(added(echo(), layered));
    });
    // For scale: what one boxed stage costs (what a stack boxing each layer pays per layer).
    g.bench_function("boxed/one_stage", |b| {
        b.iter_custom(added(echo(), boxed(echo())));
    });
    g.finish();
}

/// `inner` boxed as a stack boxing each stage would: its future and its response body.
fn boxed<S>(
    inner: S,
) -> BoxCloneSyncService<Req, Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible>
where
    S: Service<Req, Response = Response<String>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(MapResponse::new(inner, |res: Response<String>| {
        res.map(BodyExt::boxed_unsync)
    }))
}

criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
