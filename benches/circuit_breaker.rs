//! Closed-path cost of the circuit breaker over a bare service, alone and with two threads
//! sharing one breaker.
//!
//! The bare service answers `200 OK` at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, with a no-op waker. Compare each
//! case with the `bare` case of the same group in the same run:
//!
//! ```text
//! cargo bench --bench circuit_breaker --features circuit-breaker -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! `two_threads/*` runs two threads, each with its own clone of the service (as two
//! connections would), sharing one breaker; the time reported is per call per thread, from a
//! common start to the slower thread's end.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    sync::Barrier,
    task::{Context, Poll, Waker},
    thread,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Service, service_fn};
use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Window};
use tower_layer::Layer;

type Req = Request<()>;

/// The bare service: `200 OK` at once.
fn ok() -> impl Service<
    Req,
    Response = Response<()>,
    Error = Infallible,
    Future = Ready<Result<Response<()>, Infallible>>,
> + Clone
+ Send
+ Sync {
    service_fn(|_req: Req| ready(Ok(Response::new(()))))
}

/// One request through `svc`.
fn drive<S: Service<Req>>(svc: &mut S) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let Poll::Ready(res) = pin!(svc.call(Request::new(()))).poll(&mut cx) else {
        panic!("the bare service is ready at once")
    };
    black_box(res.is_ok());
}

/// `iters` calls on each of two threads, each with its own clone of `svc`.
fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<Req> + Clone + Send + Sync,
{
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let run = || {
            let mut svc = svc.clone();
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                drive(&mut svc);
            }
            start.elapsed()
        };
        let a = s.spawn(run);
        let b = s.spawn(run);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        a.max(b)
    })
}

fn bench(c: &mut Criterion) {
    // The default breaker: count window of 100, no slow-call detection.
    let breaker = || CircuitBreakerLayer::new().layer(ok());

    let mut g = c.benchmark_group("alone");
    g.bench_function("bare", |b| {
        let mut svc = ok();
        b.iter(|| drive(&mut svc));
    });
    g.bench_function("breaker", |b| {
        let mut svc = breaker();
        b.iter(|| drive(&mut svc));
    });
    // For information: the variants that read the clock on every call.
    g.bench_function("breaker_time_window", |b| {
        let layer = CircuitBreakerLayer::builder()
            .window(Window::time(Duration::from_secs(10), 10))
            .build()
            .unwrap();
        let mut svc = layer.layer(ok());
        b.iter(|| drive(&mut svc));
    });
    g.bench_function("breaker_slow_calls", |b| {
        let layer = CircuitBreakerLayer::builder()
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut svc = layer.layer(ok());
        b.iter(|| drive(&mut svc));
    });
    g.bench_function("breaker_per_key", |b| {
        let layer = CircuitBreakerLayer::builder()
            .per_key(|req: &Req| req.method().clone())
            .build()
            .unwrap();
        let mut svc = layer.layer(ok());
        b.iter(|| drive(&mut svc));
    });
    g.finish();

    let mut g = c.benchmark_group("two_threads");
    g.bench_function("bare", |b| {
        let svc = ok();
        b.iter_custom(|iters| two_threads(&svc, iters));
    });
    g.bench_function("breaker", |b| {
        let svc = breaker();
        b.iter_custom(|iters| two_threads(&svc, iters));
    });
    g.bench_function("breaker_time_window", |b| {
        let layer = CircuitBreakerLayer::builder()
            .window(Window::time(Duration::from_secs(10), 10))
            .build()
            .unwrap();
        let svc = layer.layer(ok());
        b.iter_custom(|iters| two_threads(&svc, iters));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
