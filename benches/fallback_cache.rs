//! Cost of the fallback cache over a bare service, in one run:
//!
//! - `bare`: the service alone, answering `200 OK` with a 64-byte body;
//! - `pass_through_store`: through the layer, the answer stored as its body is read, under a
//!   key already stored: the same answer each time (the steady state of a key read again and
//!   again), so its body is compared with the stored one and the entry renewed in place;
//! - `pass_through_bypass`: through the layer, for a request it leaves alone (a `GET` with
//!   `Authorization`, not keyed by default);
//! - `stale`: the inner service fails at once and the layer answers from the store.
//!
//! Each iteration is driven by hand (no runtime): `poll_ready`, `call`, one poll of the
//! future, then the body polled to its end, with a no-op waker.
//!
//! The `fallback_cache` group times each case alone: compare a case with `bare`. On a shared
//! machine their difference is mostly noise, so the `added` group measures the difference
//! itself: each sample alternates batches of 64 requests through the layered and the bare
//! service and reports the median (layered − bare) per request. `added/stale` is against a
//! bare service that answers `200`, so it is the whole cost of a stale answer over a normal
//! one.
//!
//! ```text
//! cargo bench --bench fallback_cache --features fallback-cache -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    future::{Future, Ready, ready},
    hint::black_box,
    io,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header::CONTENT_TYPE};
use http_body::Body;
use http_body_util::Full;
use tower::{Service, service_fn};
use tower_bulwark::fallback_cache::FallbackCacheLayer;
use tower_layer::Layer;

mod support;

type Req = Request<()>;
type Res = Response<Full<Bytes>>;

const BODY: &[u8] = b"{\"id\":1,\"title\":\"write the fallback cache bench\",\"done\":false}";

fn ok()
-> impl Service<Req, Response = Res, Error = io::Error, Future = Ready<Result<Res, io::Error>>> + Clone
{
    service_fn(|_req: Req| {
        let mut res = Response::new(Full::new(Bytes::from_static(BODY)));
        res.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        ready(Ok(res))
    })
}

fn down()
-> impl Service<Req, Response = Res, Error = io::Error, Future = Ready<Result<Res, io::Error>>> + Clone
{
    service_fn(|_req: Req| ready(Err(io::Error::other("down"))))
}

/// One request through `svc`, its body read to the end. Panics (bench only) if anything is
/// not ready at once.
fn drive<S, B>(svc: &mut S, req: Req, expect_ok: bool)
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let Poll::Ready(res) = pin!(svc.call(req)).poll(&mut cx) else {
        panic!("ready at once")
    };
    match res {
        Ok(res) => {
            let mut body = pin!(res.into_body());
            while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
                black_box(frame.is_ok());
            }
        }
        Err(_) => assert!(!expect_ok),
    }
}

fn get() -> Req {
    Request::get("http://backend.internal/tasks?status=open")
        .body(())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fallback_cache");

    let mut bare = ok();
    g.bench_function("bare", |b| b.iter(|| drive(&mut bare, get(), true)));

    let layer = FallbackCacheLayer::new();
    let handle = layer.handle();
    let mut cached = layer.layer(ok());
    // One request first, so the checks below hold when a filter skips the case.
    drive(&mut cached, get(), true);
    g.bench_function("pass_through_store", |b| {
        b.iter(|| drive(&mut cached, get(), true))
    });
    assert_eq!(handle.len(), 1);

    let mut bypass = FallbackCacheLayer::new().layer(ok());
    g.bench_function("pass_through_bypass", |b| {
        b.iter(|| {
            let req = Request::get("/tasks")
                .header("authorization", "Bearer t")
                .body(())
                .unwrap();
            drive(&mut bypass, req, true)
        })
    });

    let layer = FallbackCacheLayer::new();
    let handle = layer.handle();
    drive(&mut layer.layer(ok()), get(), true);
    let mut stale = layer.layer(down());
    drive(&mut stale, get(), true);
    g.bench_function("stale", |b| b.iter(|| drive(&mut stale, get(), true)));
    assert!(handle.stats().stale_served > 0);
    assert_eq!(handle.stats().misses, 0);

    g.finish();
}

/// See [`support::added`]: `layered` against `bare`, on requests made by `req`.
fn added<A, AB, L, LB>(mut bare: A, mut layered: L, req: fn() -> Req) -> impl FnMut(u64) -> Duration
where
    A: Service<Req, Response = Response<AB>>,
    AB: Body,
    L: Service<Req, Response = Response<LB>>,
    LB: Body,
{
    support::added(
        move || drive(&mut bare, req(), true),
        move || drive(&mut layered, req(), true),
    )
}

fn bench_added(c: &mut Criterion) {
    let mut g = c.benchmark_group("added");

    let layer = FallbackCacheLayer::new();
    let handle = layer.handle();
    drive(&mut layer.layer(ok()), get(), true);
    g.bench_function("pass_through_store", |b| {
        b.iter_custom(added(ok(), layer.layer(ok()), get));
    });
    assert_eq!(handle.len(), 1);

    let layer = FallbackCacheLayer::new();
    let handle = layer.handle();
    drive(&mut layer.layer(ok()), get(), true);
    drive(&mut layer.layer(down()), get(), true);
    g.bench_function("stale", |b| {
        b.iter_custom(added(ok(), layer.layer(down()), get));
    });
    assert!(handle.stats().stale_served > 0);
    assert_eq!(handle.stats().misses, 0);

    g.finish();
}

criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
