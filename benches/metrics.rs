//! Cost per request of the server and client metrics layers over a bare service.
//!
//! The bare service's future is ready at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, and the response body polled to its
//! end (which is when the layers record), all with a no-op waker. Every request carries a
//! route-template extension, as axum's `MatchedPath` would, in every case.
//!
//! The `server` and `client` groups time each case alone: compare a case with the `bare`
//! case of its group. On a shared machine their difference is mostly noise, so the `added`
//! group measures the difference itself: each sample alternates batches of 64 requests
//! through the layered and the bare service and reports the median (layered − bare) per
//! request.
//!
//! ```text
//! cargo bench --bench metrics --features metrics -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::Arc,
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use prometheus_client::registry::Registry;
use tower::{Service, service_fn};
use tower_bulwark::metrics::{ClientMetrics, FromExtension, LabelValue, ServerMetrics, TraceId};
use tower_layer::Layer;

mod support;

use support::drive;

type Req = Request<String>;

/// What a router leaves in the request: the matched route template (like `MatchedPath`).
#[derive(Clone)]
struct Template(Arc<str>);

/// The bare service: answers with a short body.
fn answer() -> impl Service<
    Req,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_: Req| ready(Ok(Response::new(String::from("ok")))))
}

fn request(template: &Template) -> Req {
    let mut req = Request::get("/tasks/42").body(String::new()).unwrap();
    req.extensions_mut().insert(template.clone());
    req
}

/// The route from the extension, copied into a label: what a `MatchedPath` closure does.
fn copy_from_extension(req: &Req) -> Option<LabelValue> {
    req.extensions()
        .get::<Template>()
        .map(|t| LabelValue::new(&t.0))
}

fn bench(c: &mut Criterion) {
    let template = Template(Arc::from("/tasks/{id}"));
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736");

    let mut g = c.benchmark_group("server");
    g.bench_function("bare", |b| {
        let mut svc = answer();
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.bench_function("layer/static_route", |b| {
        let metrics = ServerMetrics::register(&mut Registry::default());
        let layer = metrics
            .layer()
            .classify_route(|_: &Req| Some(LabelValue::from_static("/tasks/{id}")));
        let mut svc = layer.layer(answer());
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.bench_function("layer/from_extension", |b| {
        let metrics = ServerMetrics::register(&mut Registry::default());
        let mut svc = metrics
            .layer()
            .classify_route(FromExtension::new(|t: &Template| &*t.0))
            .layer(answer());
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.bench_function("layer/closure_copying_the_route", |b| {
        let metrics = ServerMetrics::register(&mut Registry::default());
        let mut svc = metrics
            .layer()
            .classify_route(copy_from_extension)
            .layer(answer());
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.bench_function("layer/from_extension+exemplar", |b| {
        let metrics = ServerMetrics::register(&mut Registry::default());
        let mut svc = metrics
            .layer()
            .classify_route(FromExtension::new(|t: &Template| &*t.0))
            .trace_id_source(move |_: &Req| trace)
            .layer(answer());
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.finish();

    let mut g = c.benchmark_group("client");
    g.bench_function("bare", |b| {
        let mut svc = answer();
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.bench_function("layer/static_operation", |b| {
        let metrics = ClientMetrics::register(&mut Registry::default());
        let mut svc = metrics
            .layer()
            .classify_operation(|_: &Req| Some(LabelValue::from_static("get_task")))
            .layer(answer());
        b.iter(|| drive(&mut svc, request(&template)));
    });
    g.finish();
}

/// See [`support::added`]: `layered` against `bare`, on requests made from `template`.
fn added<A, AB, L, LB>(
    mut bare: A,
    mut layered: L,
    template: Template,
) -> impl FnMut(u64) -> Duration
where
    A: Service<Req, Response = Response<AB>>,
    AB: Body,
    L: Service<Req, Response = Response<LB>>,
    LB: Body,
{
    let for_layered = template.clone();
    support::added(
        move || drive(&mut bare, request(&template)),
        move || drive(&mut layered, request(&for_layered)),
    )
}

fn bench_added(c: &mut Criterion) {
    let template = Template(Arc::from("/tasks/{id}"));
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736");
    let mut g = c.benchmark_group("added");

    let metrics = ServerMetrics::register(&mut Registry::default());
    let layer = metrics
        .layer()
        .classify_route(|_: &Req| Some(LabelValue::from_static("/tasks/{id}")));
    g.bench_function("server/static_route", |b| {
        b.iter_custom(added(answer(), layer.layer(answer()), template.clone()));
    });

    let metrics = ServerMetrics::register(&mut Registry::default());
    let layer = metrics
        .layer()
        .classify_route(FromExtension::new(|t: &Template| &*t.0));
    g.bench_function("server/from_extension", |b| {
        b.iter_custom(added(answer(), layer.layer(answer()), template.clone()));
    });

    let metrics = ServerMetrics::register(&mut Registry::default());
    let layer = metrics
        .layer()
        .classify_route(FromExtension::new(|t: &Template| &*t.0))
        .trace_id_source(move |_: &Req| trace);
    g.bench_function("server/from_extension+exemplar", |b| {
        b.iter_custom(added(answer(), layer.layer(answer()), template.clone()));
    });

    let metrics = ClientMetrics::register(&mut Registry::default());
    let layer = metrics
        .layer()
        .classify_operation(|_: &Req| Some(LabelValue::from_static("get_task")));
    g.bench_function("client/static_operation", |b| {
        b.iter_custom(added(answer(), layer.layer(answer()), template.clone()));
    });
    g.finish();
}

criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
