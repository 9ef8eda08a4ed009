//! Success-path cost of the retry layer over a bare echo service: a retryable `GET` (a copy of
//! the request, a clone of the service, a budget deposit) and a `POST` without an
//! `Idempotency-Key` (passed through), alone and with two threads sharing one budget.
//!
//! The echo service's future is ready at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, and the response body polled to its
//! end, all with a no-op waker. The `added` group measures the difference itself: each sample
//! alternates batches of 64 requests through the layered and the bare service and reports the
//! median (layered − bare) per request.
//!
//! ```text
//! cargo bench --bench retry --features retry -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! `two_threads/*` runs two threads, each with its own clone of the service (as two
//! connections would), sharing one layer and so one budget; the time reported is per call per
//! thread, from a common start to the slower thread's end.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use tower::{Service, service_fn};
use tower_bulwark::retry::RetryLayer;
use tower_layer::Layer;

mod support;

use support::{drive, echo};

type Req = Request<String>;

fn get() -> Req {
    Request::get("http://api.example/tasks?limit=20")
        .body(String::new())
        .unwrap()
}

fn post() -> Req {
    Request::post("http://api.example/tasks")
        .body(String::from(r#"{"title":"x"}"#))
        .unwrap()
}

/// Something a router or the request-ID layer would have put in the request's extensions.
#[derive(Clone)]
// Never read back: it only gives the extension map the size a real one has.
#[allow(dead_code)]
struct Operation(&'static str);

/// A `GET` shaped like a real client's: a few headers and an extension, all cloned into the
/// copy the layer keeps.
fn typical_get() -> Req {
    let mut req = get();
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("api.example"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-request-id",
        HeaderValue::from_static("8f14e45f-ceea-467f-a8f5-2b7d5c9e1a02"),
    );
    req.extensions_mut().insert(Operation("list_tasks"));
    req
}

/// The bare service for the threaded cases: `echo`, but `Send + Sync`.
fn echo_sync() -> impl Service<
    Req,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone
+ Send
+ Sync {
    service_fn(|req: Req| ready(Ok(Response::new(req.into_body()))))
}

/// `iters` calls on each of two threads, each with its own clone of `svc`.
fn two_threads<S>(svc: &S, iters: u64, request: fn() -> Req) -> Duration
where
    S: Service<Req, Response = Response<String>> + Clone + Send + Sync,
{
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let run = || {
            let mut svc = svc.clone();
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                drive(&mut svc, request());
            }
            start.elapsed()
        };
        let a = s.spawn(run);
        let b = s.spawn(run);
        a.join().unwrap().max(b.join().unwrap())
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alone");
    for (name, request) in [
        ("get", get as fn() -> Req),
        ("post", post),
        ("typical_get", typical_get),
    ] {
        g.bench_function(format!("bare/{name}"), |b| {
            let mut svc = echo();
            b.iter(|| drive(&mut svc, request()));
        });
        g.bench_function(format!("retry/{name}"), |b| {
            let mut svc = RetryLayer::new().layer(echo());
            b.iter(|| drive(&mut svc, request()));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("two_threads");
    g.bench_function("bare/get", |b| {
        let svc = echo_sync();
        b.iter_custom(|iters| two_threads(&svc, iters, get));
    });
    g.bench_function("retry/get", |b| {
        let svc = RetryLayer::new().layer(echo_sync());
        b.iter_custom(|iters| two_threads(&svc, iters, get));
    });
    g.finish();
}

fn bench_added(c: &mut Criterion) {
    let mut g = c.benchmark_group("added");
    for (name, request) in [
        ("get", get as fn() -> Req),
        ("post", post),
        ("typical_get", typical_get),
    ] {
        g.bench_function(name, |b| {
            let mut bare = echo();
            let mut layered = RetryLayer::new().layer(echo());
            b.iter_custom(support::added(
                move || drive(&mut bare, request()),
                move || drive(&mut layered, request()),
            ));
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
