//! What the benches share. Not every bench uses every helper, hence the `allow`s.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use http::{Request, Response};
use http_body::Body;
use tower::{Service, service_fn};

/// The bare service: answers with the request's (empty) body, ready at once.
#[allow(dead_code)]
pub(crate) fn echo() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|req: Request<String>| ready(Ok(Response::new(req.into_body()))))
}

/// One request through `svc`, which must answer at once, to the end of its response body.
#[allow(dead_code)]
pub(crate) fn drive<S, R, B>(svc: &mut S, req: R)
where
    S: Service<R, Response = Response<B>>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let Poll::Ready(Ok(res)) = pin!(svc.call(req)).poll(&mut cx) else {
        panic!("the service is ready at once")
    };
    black_box(res.headers());
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}

/// Time added per call by `layered` over `bare` (each closure makes one call), for criterion's
/// `iter_custom`: batches of each alternate, and alternate which goes first, so that load from
/// other processes hits both alike; the sample is the median of the batch pairs' differences,
/// so a pair that a context switch hit does not count.
pub(crate) fn added(
    mut bare: impl FnMut(),
    mut layered: impl FnMut(),
) -> impl FnMut(u64) -> Duration {
    const BATCH: u64 = 64;
    move |iters| {
        let pairs = iters.div_ceil(BATCH).max(1);
        let mut diffs = Vec::with_capacity(usize::try_from(pairs).unwrap_or(0));
        let time = |call: &mut dyn FnMut()| {
            let start = Instant::now();
            for _ in 0..BATCH {
                call();
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        };
        for pair in 0..pairs {
            let (l, b) = if pair % 2 == 0 {
                let l = time(&mut layered);
                (l, time(&mut bare))
            } else {
                let b = time(&mut bare);
                (time(&mut layered), b)
            };
            diffs.push(l - b);
        }
        diffs.sort_by(f64::total_cmp);
        let median = diffs[diffs.len() / 2];
        // Criterion wants a positive time; a layer cannot really make calls faster.
        Duration::from_secs_f64((median * iters as f64).max(1.0) * 1e-9)
    }
}
