//! The circuit breaker against the checklist of `shared/notes/resilience.md` §7 (one named test
//! per item, `c<NN>_…`), a model-based property test, and concurrency tests. Every timed test
//! runs on Tokio's paused clock: no real sleeps.
#![cfg(feature = "circuit-breaker")]

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use tokio::{sync::oneshot, time::Instant};
use tower::{Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_bulwark::{
    circuit_breaker::{
        CircuitBreakerBuilder, CircuitBreakerError, CircuitBreakerLayer, CircuitOpen, Event,
        EventKind, Reason, State, Window,
    },
    classify::{HttpClassifier, Outcome},
};

// ===== a scriptable backend =====

type Res = Response<()>;
type Error = CircuitBreakerError<io::Error>;

/// What the backend does with one request.
enum Call {
    /// Answers this status at once.
    Status(u16),
    /// Fails without a response at once.
    Transport,
    /// Answers this status after this long.
    After(Duration, u16),
    /// Answers when told through the channel (a dropped sender: transport error).
    Gate(oneshot::Receiver<u16>),
    /// Answers this status with this `Retry-After`.
    RetryAfter(u16, &'static str),
}

const OK: Call = Call::Status(200);
const FAIL: Call = Call::Status(500);

#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicUsize>,
}

impl Backend {
    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<Call, Response = Res, Error = io::Error, Future = BoxFuture> + Clone + Send + 'static
    {
        let calls = self.calls.clone();
        service_fn(move |call: Call| {
            calls.fetch_add(1, SeqCst);
            let fut: BoxFuture = Box::pin(async move {
                let status = match call {
                    Call::Status(s) => s,
                    Call::Transport => return Err(io::Error::other("connection reset")),
                    Call::After(d, s) => {
                        tokio::time::sleep(d).await;
                        s
                    }
                    Call::Gate(rx) => rx.await.map_err(|_| io::Error::other("dropped"))?,
                    Call::RetryAfter(s, ra) => {
                        return Ok(Response::builder()
                            .status(s)
                            .header("retry-after", ra)
                            .body(())
                            .unwrap());
                    }
                };
                Ok(Response::builder().status(status).body(()).unwrap())
            });
            fut
        })
    }
}

/// The base settings of most tests: a count window of 10, 4 calls minimum, 50 %, open 10 s,
/// 2 probes, half-open wait 60 s.
fn builder() -> CircuitBreakerBuilder {
    CircuitBreakerLayer::builder()
        .window(Window::Count(10))
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(10))
        .half_open_permits(2)
        .max_half_open_wait(Some(Duration::from_secs(60)))
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Res, io::Error>> + Send>>;
type BoxBackend =
    Box<dyn Service<Call, Response = Res, Error = io::Error, Future = BoxFuture> + Send>;
type Svc = tower_bulwark::circuit_breaker::CircuitBreaker<BoxBackend>;

fn stack(layer: &CircuitBreakerLayer, backend: &Backend) -> Svc {
    let inner: BoxBackend = Box::new(backend.service());
    tower::Layer::layer(layer, inner)
}

async fn call(svc: &mut Svc, c: Call) -> Result<Res, Error> {
    svc.ready().await?.call(c).await
}

/// `n` calls of the same kind, each completing before the next.
async fn calls(svc: &mut Svc, n: usize, status: u16) {
    for _ in 0..n {
        let _ = call(svc, Call::Status(status)).await;
    }
}

fn rejected(r: &Result<Res, Error>) -> Option<&CircuitOpen> {
    match r {
        Err(CircuitBreakerError::Open(open)) => Some(open),
        _ => None,
    }
}

/// A hook recording every event, and the list it fills.
fn recorder() -> (
    Arc<Mutex<Vec<Event>>>,
    impl Fn(&Event) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (seen, move |e: &Event| log.lock().unwrap().push(e.clone()))
}

fn transitions(events: &Mutex<Vec<Event>>) -> Vec<(State, State, Reason)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Transition {
                from, to, reason, ..
            } => Some((from, to, reason)),
            _ => None,
        })
        .collect()
}

/// Opens a breaker built from `builder()` (4 failures).
async fn tripped(svc: &mut Svc) {
    calls(svc, 4, 500).await;
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

// ===== Configuration =====

#[test]
fn c01_invalid_settings_are_rejected_naming_the_field() {
    let cases: Vec<(CircuitBreakerBuilder, &str)> = vec![
        (
            builder().failure_rate_threshold(0.0),
            "failure_rate_threshold",
        ),
        (
            builder().failure_rate_threshold(100.1),
            "failure_rate_threshold",
        ),
        (
            builder().failure_rate_threshold(f64::NAN),
            "failure_rate_threshold",
        ),
        (
            builder().failure_rate_threshold(-5.0),
            "failure_rate_threshold",
        ),
        (
            builder().slow_call_rate_threshold(0.0),
            "slow_call_rate_threshold",
        ),
        (
            builder().slow_call_duration(Duration::ZERO),
            "slow_call_duration",
        ),
        (builder().window(Window::Count(0)), "window"),
        (builder().window(Window::Count(1025)), "window"),
        (builder().window(Window::time(S(10), 0)), "window"),
        (builder().window(Window::time(MS(5), 10)), "window"),
        (builder().minimum_calls(0), "minimum_calls"),
        (builder().half_open_permits(0), "half_open_permits"),
        (builder().open_duration(Duration::ZERO), "open_duration"),
        (
            builder().open_duration(Duration::from_micros(999)),
            "open_duration",
        ),
        (builder().backoff_multiplier(0.5), "backoff_multiplier"),
        (
            builder().backoff_multiplier(f64::INFINITY),
            "backoff_multiplier",
        ),
        // Contradictory duration sources: a cap below the base.
        (builder().max_open_duration(S(5)), "max_open_duration"),
        (builder().jitter(1.5), "jitter"),
        (
            builder().max_half_open_wait(Some(Duration::ZERO)),
            "max_half_open_wait",
        ),
        (
            builder().after_max_half_open_wait(State::HalfOpen),
            "after_max_half_open_wait",
        ),
        (builder().initial_state(State::HalfOpen), "initial_state"),
        (builder().max_keys(0), "max_keys"),
        (builder().idle_timeout(Duration::ZERO), "idle_timeout"),
        (builder().event_capacity(0), "event_capacity"),
        (builder().event_capacity(usize::MAX), "event_capacity"),
    ];
    for (b, field) in cases {
        let err = b.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.to_string().contains(field));
    }
    // The edges that are valid.
    assert!(builder().failure_rate_threshold(100.0).build().is_ok());
    assert!(builder().window(Window::Count(1024)).build().is_ok());
    assert!(builder().window(Window::time(MS(10), 10)).build().is_ok());
    assert!(
        builder()
            .jitter(1.0)
            .backoff_multiplier(1.0)
            .build()
            .is_ok()
    );
    assert!(builder().max_half_open_wait(None).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn c02_minimum_calls_above_count_window_is_rejected_not_clamped_and_defaults_hold() {
    let err = builder()
        .window(Window::Count(5))
        .minimum_calls(6)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    // A time window has no such bound.
    assert!(
        builder()
            .window(Window::time(S(10), 10))
            .minimum_calls(10_000)
            .build()
            .is_ok()
    );

    // Defaults (the table on `CircuitBreakerBuilder`), observed through behaviour.
    let backend = Backend::default();
    let layer = CircuitBreakerLayer::new();
    let handle = layer.handle();
    assert_eq!(handle.name(), "default");
    assert_eq!(handle.state(), State::Closed);
    let mut svc = stack(&layer, &backend);
    // minimum_calls = 20: 19 failures do not open it, the 20th does (50 %, count window 100).
    calls(&mut svc, 19, 500).await;
    assert_eq!(handle.state(), State::Closed);
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
    // open_duration = 30 s.
    assert_eq!(handle.stats().open_for, Some(S(30)));
    tokio::time::advance(S(30)).await;
    // half_open_permits = 3: three probes pass, the fourth is rejected.
    let mut gates = Vec::new();
    let mut inflight = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        inflight.push(tokio_test::task::spawn(
            svc.ready().await.unwrap().call(Call::Gate(rx)),
        ));
        assert!(inflight.last_mut().unwrap().poll().is_pending());
    }
    let r = call(&mut svc, OK).await;
    let open = rejected(&r).expect("fourth probe rejected");
    assert_eq!(open.state(), State::HalfOpen);
    // max_half_open_wait = 60 s, then back to Open (after_max_half_open_wait = Open).
    assert_eq!(open.retry_after(), Some(S(60)));
    tokio::time::advance(S(60)).await;
    let r = call(&mut svc, OK).await;
    assert_eq!(rejected(&r).unwrap().state(), State::Open);
    // No backoff by default: open 30 s again.
    assert_eq!(handle.stats().open_for, Some(S(30)));
    drop(gates);
}

#[tokio::test(start_paused = true)]
async fn c03_extreme_durations_do_not_overflow() {
    let backend = Backend::default();
    let layer = builder()
        .open_duration(Duration::MAX)
        .max_open_duration(Duration::MAX)
        .backoff_multiplier(1e300)
        .jitter(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    assert_eq!(handle.state(), State::Open);
    let open_for = handle.stats().open_for.unwrap();
    assert!(open_for > S(100 * 365 * 24 * 3600), "{open_for:?}");
    let r = call(&mut svc, OK).await;
    assert!(rejected(&r).is_some());
    handle.open_for(Duration::MAX);
    handle.open_until(Instant::now() + S(1));
    assert_eq!(handle.stats().open_for, Some(S(1)));

    // A huge Retry-After is capped by max_open_duration.
    let layer = builder().max_open_duration(S(60)).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    for _ in 0..4 {
        let _ = call(&mut svc, Call::RetryAfter(503, "99999999999999999999999")).await;
    }
    assert_eq!(handle.stats().open_for, Some(S(60)));

    // Backoff over many reopens saturates at the cap instead of overflowing.
    let layer = builder()
        .backoff_multiplier(1000.0)
        .max_open_duration(S(3600))
        .half_open_permits(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    for _ in 0..50 {
        tokio::time::advance(handle.stats().open_for.unwrap()).await;
        let _ = call(&mut svc, FAIL).await;
        assert_eq!(handle.state(), State::Open);
    }
    assert_eq!(handle.stats().open_for, Some(S(3600)));
}

// ===== Closed =====

#[tokio::test(start_paused = true)]
async fn c04_no_trip_below_minimum_calls_and_rate_reads_unknown() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    calls(&mut svc, 3, 500).await;
    assert_eq!(handle.state(), State::Closed);
    let stats = handle.stats();
    assert_eq!(stats.failure_rate, None);
    assert_eq!(stats.slow_call_rate, None);
    assert_eq!((stats.buffered_calls, stats.buffered_failures), (3, 3));
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn c05_trips_when_the_rate_reaches_the_threshold_not_below() {
    let backend = Backend::default();
    // Exactly 50 %: 2 failures out of 4 opens it (>=).
    let layer = builder().build().unwrap();
    let mut svc = stack(&layer, &backend);
    calls(&mut svc, 2, 200).await;
    calls(&mut svc, 1, 500).await;
    assert_eq!(layer.handle().state(), State::Closed);
    calls(&mut svc, 1, 500).await;
    assert_eq!(layer.handle().state(), State::Open);

    // Just below: 2 of 6 (33.3 %) is under 34 %, and reaches 33.3 %.
    let layer = builder().failure_rate_threshold(34.0).build().unwrap();
    let mut svc = stack(&layer, &backend);
    for s in [200, 200, 500, 200, 200, 500] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(layer.handle().stats().failure_rate, Some(2.0 / 6.0));
    assert_eq!(layer.handle().state(), State::Closed, "33.3 % < 34 %");
    let layer = builder()
        .failure_rate_threshold(100.0 / 3.0)
        .build()
        .unwrap();
    let mut svc = stack(&layer, &backend);
    for s in [200, 200, 500, 200, 200, 500] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(layer.handle().state(), State::Open, "33.3 % >= 33.3 %");
}

#[tokio::test(start_paused = true)]
async fn c06_no_trip_when_the_last_call_brings_the_rate_under() {
    let backend = Backend::default();
    let layer = builder()
        .minimum_calls(5)
        .failure_rate_threshold(60.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    // 2 failures of 4 (50 %): under minimum; the 5th call, a success, makes it 40 %.
    for s in [500, 200, 500, 200, 200] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(handle.stats().failure_rate, Some(0.4));
    assert_eq!(handle.state(), State::Closed);
    // And a success that makes the minimum with the rate above the threshold does open it.
    let layer = builder()
        .minimum_calls(5)
        .failure_rate_threshold(60.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    for s in [500, 500, 500, 500, 200] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn c07_time_window_old_failures_expire_at_bucket_edges() {
    let backend = Backend::default();
    // 1 s in 4 buckets of 250 ms.
    let layer = builder()
        .window(Window::time(S(1), 4))
        .minimum_calls(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    calls(&mut svc, 3, 500).await; // t = 0, bucket 0
    tokio::time::advance(MS(999)).await; // bucket 3: bucket 0 still counts
    assert_eq!(handle.stats().buffered_calls, 3);
    tokio::time::advance(MS(1)).await; // t = 1000 ms: bucket 0 expires exactly now
    assert_eq!(handle.stats().buffered_calls, 0);
    calls(&mut svc, 1, 500).await;
    assert_eq!(
        handle.state(),
        State::Closed,
        "the old failures no longer count"
    );

    // Failures straddling a bucket edge all count while both buckets are in the window.
    tokio::time::advance(MS(240)).await; // t = 1240 (bucket 4)
    calls(&mut svc, 1, 500).await;
    tokio::time::advance(MS(20)).await; // t = 1260 (bucket 5)
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.stats().buffered_calls, 3);
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn c08_slow_successes_trip_and_slow_failures_count_in_both_rates() {
    let backend = Backend::default();
    let layer = builder()
        .slow_call_duration(MS(100))
        .slow_call_rate_threshold(75.0)
        .failure_rate_threshold(90.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    // Exactly 100 ms is not slow (strictly longer is).
    call(&mut svc, Call::After(MS(100), 200)).await.unwrap();
    assert_eq!(handle.stats().buffered_slow_calls, 0);
    // A slow failure counts in both rates.
    call(&mut svc, Call::After(MS(101), 500)).await.unwrap();
    let st = handle.stats();
    assert_eq!((st.buffered_failures, st.buffered_slow_calls), (1, 1));
    // Two slow successes: 3 slow of 4 = 75 % opens it (failure rate 25 %).
    call(&mut svc, Call::After(S(2), 200)).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    call(&mut svc, Call::After(S(2), 200)).await.unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.stats().slow_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn c09_classification_ignore_result_based_precedence_and_unwrapping() {
    let backend = Backend::default();
    // 404 ignored, 503 a failure, a transport error a failure, 200 a success. The classifier
    // is one function, so precedence is its match order: here "ignore 404" is checked first.
    let classifier = |r: Result<&Res, &io::Error>| match r {
        Ok(res) if res.status() == StatusCode::NOT_FOUND => Outcome::Ignore,
        Ok(res) if res.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Outcome::Ignore,
        Err(_) => Outcome::Failure,
    };
    let layer = builder().classifier(classifier).build().unwrap();
    let handle = layer.handle();
    let inner: BoxBackend = Box::new(backend.service());
    let mut svc = tower::Layer::layer(&layer, inner);
    for _ in 0..10 {
        svc.ready()
            .await
            .unwrap()
            .call(Call::Status(404))
            .await
            .unwrap();
    }
    let st = handle.stats();
    assert_eq!((st.buffered_calls, st.ignored), (0, 10), "ignored: neither");
    for s in [200, 200, 503] {
        svc.ready()
            .await
            .unwrap()
            .call(Call::Status(s))
            .await
            .unwrap();
    }
    assert_eq!(handle.state(), State::Closed);
    let _ = svc.ready().await.unwrap().call(Call::Transport).await;
    assert_eq!(
        handle.state(),
        State::Open,
        "5xx `Ok` responses count as failures"
    );

    // The default HTTP classifier: 4xx other than 429 are successes ("not recorded" errors
    // count as successes), 429 and 5xx failures.
    let layer = builder().build().unwrap();
    let mut svc = stack(&layer, &backend);
    for s in [400, 401, 403, 404, 409, 422] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(layer.handle().stats().buffered_failures, 0);
    calls(&mut svc, 6, 429).await;
    assert_eq!(layer.handle().state(), State::Open);

    // Wrapped errors: a classifier over `BoxError` can downcast through the box, and
    // `is_timeout` follows the source chain.
    let elapsed: tower::BoxError = tower::timeout::error::Elapsed::new().into();
    assert!(tower_bulwark::classify::is_timeout(elapsed.as_ref()));
    let layer = CircuitBreakerLayer::builder()
        .minimum_calls(1)
        .window(Window::Count(1))
        .classifier(|r: Result<&(), &tower::BoxError>| match r {
            Err(e) if e.is::<io::Error>() => Outcome::Ignore,
            Err(_) => Outcome::Failure,
            Ok(()) => Outcome::Success,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|timeout: bool| async move {
                if timeout {
                    Err::<(), tower::BoxError>(tower::timeout::error::Elapsed::new().into())
                } else {
                    Err(io::Error::other("x").into())
                }
            }));
    let _ = svc.ready().await.unwrap().call(false).await;
    assert_eq!(handle.state(), State::Closed);
    let _ = svc.ready().await.unwrap().call(true).await;
    assert_eq!(handle.state(), State::Open);
}

// ===== Open =====

#[tokio::test(start_paused = true)]
async fn c10_open_rejects_at_once_with_time_left_and_counts_rejections() {
    let backend = Backend::default();
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    let before = backend.calls();
    tokio::time::advance(MS(2500)).await;
    let r = call(&mut svc, OK).await;
    let open = rejected(&r).unwrap();
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Some(MS(7500)));
    assert_eq!(open.key(), &());
    assert_eq!(backend.calls(), before, "the backend was not called");
    assert_eq!(
        r.as_ref().unwrap_err().to_string(),
        "circuit breaker is open; retry in 7.500s"
    );
    assert_eq!(handle.stats().rejections, 1);
    let last = events.lock().unwrap().last().unwrap().kind.clone();
    assert_eq!(
        last,
        EventKind::Rejected {
            state: State::Open,
            retry_after: Some(MS(7500))
        }
    );
    // The error converts into a `BoxError` that is still recognisable.
    let boxed = call(&mut svc, OK).await.unwrap_err().into_box_error();
    assert!(boxed.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn c11_still_open_just_before_the_wait_half_open_at_it() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    tokio::time::advance(S(10) - Duration::from_nanos(1)).await;
    let r = call(&mut svc, OK).await;
    assert_eq!(
        rejected(&r).unwrap().retry_after(),
        Some(Duration::from_nanos(1))
    );
    // Lazy: still reads Open with no time left until a call comes.
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.stats().open_for, Some(Duration::ZERO));
    call(&mut svc, OK).await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn c12_open_for_open_until_backoff_jitter_and_retry_after() {
    let backend = Backend::default();
    let layer = builder()
        .backoff_multiplier(2.0)
        .max_open_duration(S(50))
        .half_open_permits(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);

    // Manual durations.
    handle.open_for(S(3));
    assert_eq!(handle.stats().open_for, Some(S(3)));
    handle.open_until(Instant::now() + S(7));
    assert_eq!(handle.stats().open_for, Some(S(7)));
    handle.reset();

    // Backoff grows with consecutive half-open failures: 10, 20, 40, then the 50 s cap.
    tripped(&mut svc).await;
    for expected in [20, 40, 50, 50] {
        tokio::time::advance(handle.stats().open_for.unwrap()).await;
        call(&mut svc, FAIL).await.unwrap(); // the probe fails
        assert_eq!(handle.stats().open_for, Some(S(expected)));
    }
    // A close resets it.
    tokio::time::advance(S(50)).await;
    call(&mut svc, OK).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    tripped(&mut svc).await;
    assert_eq!(handle.stats().open_for, Some(S(10)));

    // Jitter stays within ± its fraction.
    for _ in 0..20 {
        let layer = builder().jitter(0.5).build().unwrap();
        let mut svc = stack(&layer, &backend);
        tripped(&mut svc).await;
        let d = layer.handle().stats().open_for.unwrap();
        assert!(d >= S(5) && d <= S(15), "{d:?}");
    }

    // Retry-After on 429/503 keeps it open at least that long.
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    for _ in 0..4 {
        call(&mut svc, Call::RetryAfter(503, "120")).await.unwrap();
    }
    assert_eq!(handle.stats().open_for, Some(S(120)));
    // ... but not when turned off, and never shorter than the open duration.
    let layer = builder().honor_retry_after(false).build().unwrap();
    let mut svc = stack(&layer, &backend);
    for _ in 0..4 {
        call(&mut svc, Call::RetryAfter(429, "120")).await.unwrap();
    }
    assert_eq!(layer.handle().stats().open_for, Some(S(10)));
    let layer = builder().build().unwrap();
    let mut svc = stack(&layer, &backend);
    for _ in 0..4 {
        call(&mut svc, Call::RetryAfter(429, "1")).await.unwrap();
    }
    assert_eq!(layer.handle().stats().open_for, Some(S(10)));
}

#[tokio::test(start_paused = true)]
async fn c13_late_results_count_but_never_reopen_extend_or_close() {
    let backend = Backend::default();
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    // Five calls start while closed and are held.
    let mut gates = Vec::new();
    let mut held = Vec::new();
    for _ in 0..5 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
        assert!(t.poll().is_pending());
        held.push(t);
    }
    tripped(&mut svc).await;
    let open_for = handle.stats().open_for;
    // Late failures: counted, but no second "opened" and no longer open time.
    for (tx, t) in gates.drain(..2).zip(held.iter_mut()) {
        tx.send(500).unwrap();
        assert!(t.poll().is_ready());
    }
    assert_eq!(handle.stats().failures, 6);
    assert_eq!(handle.stats().open_for, open_for);
    // Into half-open and closed again, then late successes and failures arrive.
    tokio::time::advance(S(10)).await;
    calls(&mut svc, 2, 200).await;
    assert_eq!(handle.state(), State::Closed);
    for (tx, t) in gates.drain(..).zip(held.iter_mut().skip(2)) {
        tx.send(500).unwrap();
        assert!(t.poll().is_ready());
    }
    assert_eq!(handle.state(), State::Closed, "late failures do not reopen");
    assert_eq!(
        handle.stats().buffered_calls,
        0,
        "nor enter the fresh window"
    );
    assert_eq!(
        transitions(&events),
        [
            (State::Closed, State::Open, Reason::FailureRate),
            (State::Open, State::HalfOpen, Reason::OpenElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesPassed),
        ]
    );

    // A late success during Open does not close it.
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    let (tx, rx) = oneshot::channel();
    let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
    assert!(t.poll().is_pending());
    tripped(&mut svc).await;
    tx.send(200).unwrap();
    assert!(t.poll().is_ready());
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn c14_simultaneous_failures_make_exactly_one_open_transition() {
    let backend = Backend::default();
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    // Eight calls admitted while closed, all failing "at once".
    let mut gates = Vec::new();
    let mut held = Vec::new();
    for _ in 0..8 {
        let (tx, rx) = oneshot::channel();
        gates.push(tx);
        let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
        assert!(t.poll().is_pending());
        held.push(t);
    }
    for tx in gates {
        tx.send(500).unwrap();
    }
    for t in &mut held {
        assert!(t.poll().is_ready());
    }
    assert_eq!(
        transitions(&events),
        [(State::Closed, State::Open, Reason::FailureRate)]
    );
    assert_eq!(
        handle.breaker().transition_counts(),
        [(State::Closed, State::Open, 1)]
    );
    assert_eq!(handle.stats().open_for, Some(S(10)), "one deadline");
}

// ===== Half-open =====

#[tokio::test(start_paused = true)]
async fn c15_exactly_n_permits_and_reentering_restores_them() {
    let backend = Backend::default();
    let layer = builder().half_open_permits(4).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    for round in 0..2 {
        tokio::time::advance(handle.stats().open_for.unwrap()).await;
        let mut gates = Vec::new();
        let mut held = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            gates.push(tx);
            let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
            assert!(t.poll().is_pending());
            held.push(t);
        }
        let r = call(&mut svc, OK).await;
        assert_eq!(
            rejected(&r).unwrap().state(),
            State::HalfOpen,
            "round {round}: N+1"
        );
        // All four fail: back to open, and the next round has four permits again.
        for tx in gates {
            tx.send(500).unwrap();
        }
        for t in &mut held {
            assert!(t.poll().is_ready());
        }
        assert_eq!(handle.state(), State::Open);
    }

    // N = 1: a second caller is rejected while the probe runs.
    let layer = builder().half_open_permits(1).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    tokio::time::advance(S(10)).await;
    let (tx, rx) = oneshot::channel();
    let mut probe = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
    assert!(probe.poll().is_pending());
    let r = call(&mut svc, OK).await;
    assert!(rejected(&r).is_some());
    tx.send(200).unwrap();
    assert!(probe.poll().is_ready());
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn c16_half_open_decides_by_rate_over_the_probes() {
    let backend = Backend::default();
    // 4 probes, 50 %: one failure of four closes it, with a fresh window...
    let layer = builder().half_open_permits(4).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    tokio::time::advance(S(10)).await;
    for s in [500, 200, 200, 200] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().buffered_calls, 0);
    // ... two of four reopen it.
    tripped(&mut svc).await;
    tokio::time::advance(S(10)).await;
    for s in [200, 500, 200, 500] {
        calls(&mut svc, 1, s).await;
    }
    assert_eq!(handle.state(), State::Open);

    // The slow-call rate alone can reopen it.
    let layer = builder()
        .half_open_permits(2)
        .slow_call_duration(S(1))
        .slow_call_rate_threshold(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    tokio::time::advance(S(10)).await;
    call(&mut svc, Call::After(S(2), 200)).await.unwrap();
    call(&mut svc, OK).await.unwrap();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn c17_ignored_or_dropped_probes_release_their_permits() {
    let backend = Backend::default();
    let layer = builder()
        .half_open_permits(1)
        .classifier(|r: Result<&Res, &io::Error>| match r {
            Ok(res) if res.status() == StatusCode::NOT_FOUND => Outcome::Ignore,
            Ok(res) => HttpClassifier::classify_status(res.status()),
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let inner: BoxBackend = Box::new(backend.service());
    let mut svc = tower::Layer::layer(&layer, inner);
    for _ in 0..4 {
        let _ = svc.ready().await.unwrap().call(FAIL).await;
    }
    tokio::time::advance(S(10)).await;
    // An ignored probe gives its permit back, many times over: never stuck.
    for _ in 0..5 {
        svc.ready()
            .await
            .unwrap()
            .call(Call::Status(404))
            .await
            .unwrap();
        assert_eq!(handle.state(), State::HalfOpen);
    }
    // A dropped (cancelled) probe too.
    for _ in 0..5 {
        let (_tx, rx) = oneshot::channel();
        let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
        assert!(t.poll().is_pending());
        drop(t);
    }
    assert_eq!(handle.stats().cancelled, 5);
    // The permit is there for a real probe, which closes it.
    svc.ready().await.unwrap().call(OK).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn c18_a_hung_probe_does_not_wedge_the_breaker() {
    for after in [State::Open, State::Closed] {
        let backend = Backend::default();
        let (events, hook) = recorder();
        let layer = builder()
            .half_open_permits(1)
            .max_half_open_wait(Some(S(30)))
            .after_max_half_open_wait(after)
            .on_event(hook)
            .build()
            .unwrap();
        let handle = layer.handle();
        let mut svc = stack(&layer, &backend);
        tripped(&mut svc).await;
        tokio::time::advance(S(10)).await;
        let (_tx, rx) = oneshot::channel();
        let mut hung = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
        assert!(hung.poll().is_pending());
        tokio::time::advance(S(30) - MS(1)).await;
        let r = call(&mut svc, OK).await;
        assert_eq!(rejected(&r).unwrap().retry_after(), Some(MS(1)));
        tokio::time::advance(MS(1)).await;
        let r = call(&mut svc, OK).await;
        match after {
            State::Open => {
                assert!(rejected(&r).is_some());
                assert_eq!(handle.state(), State::Open);
            }
            _ => {
                r.unwrap();
                assert_eq!(handle.state(), State::Closed);
            }
        }
        assert_eq!(
            transitions(&events).last(),
            Some(&(State::HalfOpen, after, Reason::MaxHalfOpenWait))
        );
        // The hung probe's late end changes nothing.
        drop(hung);
        assert_eq!(handle.state(), after);
    }
}

#[tokio::test(start_paused = true)]
async fn c19_minimum_calls_does_not_gate_the_half_open_decision() {
    let backend = Backend::default();
    let layer = builder()
        .window(Window::Count(100))
        .minimum_calls(50)
        .half_open_permits(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    handle.open_for(S(1));
    tokio::time::advance(S(1)).await;
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open, "one failed probe decides");
    tokio::time::advance(handle.stats().open_for.unwrap()).await;
    calls(&mut svc, 1, 200).await;
    assert_eq!(handle.state(), State::Closed, "one good probe decides");
}

// ===== Manual and special states =====

#[tokio::test(start_paused = true)]
async fn c20_forced_open_holds_and_reset_recovers_with_clear_metrics() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    calls(&mut svc, 3, 500).await;
    handle.force_open();
    tokio::time::advance(S(24 * 3600)).await;
    let r = call(&mut svc, OK).await;
    let open = rejected(&r).unwrap();
    assert_eq!(
        (open.state(), open.retry_after()),
        (State::ForcedOpen, None)
    );
    assert_eq!(handle.state(), State::ForcedOpen);
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().buffered_calls, 0, "the window was cleared");
    calls(&mut svc, 3, 500).await;
    assert_eq!(
        handle.state(),
        State::Closed,
        "the three earlier failures are gone"
    );
    // Reset from Open too, and `transition_to(Closed)`.
    calls(&mut svc, 1, 500).await;
    assert_eq!(handle.state(), State::Open);
    handle.transition_to(State::Closed).unwrap();
    call(&mut svc, OK).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn c21_disabled_records_nothing_forced_closed_reports_once_and_never_trips() {
    let backend = Backend::default();
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    handle.disable();
    let before = events.lock().unwrap().len();
    calls(&mut svc, 20, 500).await;
    assert_eq!(handle.state(), State::Disabled);
    let st = handle.stats();
    assert_eq!((st.buffered_calls, st.failures, st.successes), (0, 0, 0));
    assert_eq!(events.lock().unwrap().len(), before, "nothing emitted");
    assert_eq!(backend.calls(), 20);

    handle.force_closed();
    calls(&mut svc, 10, 500).await;
    assert_eq!(handle.state(), State::ForcedClosed);
    assert_eq!(handle.stats().buffered_failures, 10, "recorded");
    let exceeded: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ThresholdExceeded { .. }))
        .cloned()
        .collect();
    assert_eq!(exceeded.len(), 1, "reported once");
    assert_eq!(
        exceeded[0].kind,
        EventKind::ThresholdExceeded {
            failure_rate: 1.0,
            slow_call_rate: 0.0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn c22_illegal_and_same_state_transitions_and_initial_state() {
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let err = handle.transition_to(State::HalfOpen).unwrap_err();
    assert_eq!((err.from(), err.to()), (State::Closed, State::HalfOpen));
    assert_eq!(
        err.to_string(),
        "a circuit breaker cannot move from closed to half_open"
    );
    assert_eq!(handle.state(), State::Closed);
    handle.transition_to(State::Closed).unwrap();
    handle.force_open();
    handle.force_open();
    handle.transition_to(State::ForcedOpen).unwrap();
    assert_eq!(
        transitions(&events).len(),
        1,
        "same-state requests emit nothing"
    );
    handle.open();
    handle.transition_to(State::HalfOpen).unwrap();
    assert_eq!(handle.state(), State::HalfOpen);

    for initial in [
        State::Closed,
        State::Open,
        State::ForcedOpen,
        State::ForcedClosed,
        State::Disabled,
    ] {
        let (events, hook) = recorder();
        let layer = builder()
            .initial_state(initial)
            .on_event(hook)
            .build()
            .unwrap();
        assert_eq!(layer.handle().state(), initial);
        assert!(events.lock().unwrap().is_empty(), "no event on creation");
    }
    let layer = builder().initial_state(State::Open).build().unwrap();
    assert_eq!(layer.handle().stats().open_for, Some(S(10)));
}

// ===== Events and observability =====

#[tokio::test(start_paused = true)]
async fn c23_one_event_per_transition_with_details_and_none_on_init_or_successes() {
    let backend = Backend::default();
    let (events, hook) = recorder();
    let layer = builder().on_event(hook).build().unwrap();
    let handle = layer.handle();
    let mut sub = handle.subscribe();
    let mut svc = stack(&layer, &backend);
    calls(&mut svc, 50, 200).await;
    assert!(
        events.lock().unwrap().is_empty(),
        "no close event on init or successes"
    );
    calls(&mut svc, 10, 500).await; // 6 of 10: opens at the 10th... at 5 of 10
    let evs = events.lock().unwrap().clone();
    let EventKind::Transition {
        from,
        to,
        reason,
        open_for,
        failure_rate,
        slow_call_rate,
    } = evs[0].kind.clone()
    else {
        panic!("{evs:?}")
    };
    assert_eq!(
        (from, to, reason),
        (State::Closed, State::Open, Reason::FailureRate)
    );
    assert_eq!(open_for, Some(S(10)));
    assert_eq!(failure_rate, Some(0.5));
    assert_eq!(slow_call_rate, Some(0.0));
    assert_eq!(evs[0].at, Instant::now());
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e.kind, EventKind::Transition { .. }))
            .count(),
        1
    );
    // The subscriber saw the same, in the same order.
    let first = sub.recv().await.unwrap();
    assert_eq!(first.kind, evs[0].kind);
    for e in &evs[1..] {
        assert_eq!(sub.recv().await.unwrap().kind, e.kind);
    }
}

#[tokio::test(start_paused = true)]
async fn c24_hooks_run_in_order_and_cannot_corrupt_state() {
    let backend = Backend::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    let handle_slot: Arc<Mutex<Option<tower_bulwark::circuit_breaker::CircuitBreakerHandle>>> =
        Arc::default();
    let slot = handle_slot.clone();
    let layer = builder()
        .on_event(move |e: &Event| {
            if let EventKind::Transition { to, .. } = e.kind {
                log.lock().unwrap().push(to);
                // Calling back into the breaker from its hook: skipped, no deadlock.
                if let Some(h) = slot.lock().unwrap().as_ref() {
                    h.force_closed();
                    let _ = h.stats();
                }
                if to == State::Open {
                    panic!("a faulty hook");
                }
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    *handle_slot.lock().unwrap() = Some(handle.clone());
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await; // the hook panics on Open
    assert_eq!(handle.state(), State::Open, "the transition stands");
    tokio::time::advance(S(10)).await;
    calls(&mut svc, 2, 200).await;
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(
        *order.lock().unwrap(),
        [State::Open, State::HalfOpen, State::Closed]
    );
}

#[tokio::test(start_paused = true)]
async fn c25_rejections_are_cheap_and_do_not_grow() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    // Driven by hand: a rejection is ready at the first poll, with no runtime involved.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut reject_once = |svc: &mut Svc| {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut f = std::pin::pin!(svc.call(OK));
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(Err(CircuitBreakerError::Open(open))) => open,
            _ => panic!("not rejected"),
        }
    };
    let first = reject_once(&mut svc);
    let mut last = first.clone();
    for _ in 0..100_000 {
        last = reject_once(&mut svc);
    }
    // A small plain value (no box, no backtrace, nothing accumulated): the 100 001st
    // rejection is the same as the first.
    assert!(std::mem::size_of::<CircuitOpen>() <= 32);
    assert_eq!(last.state(), first.state());
    assert_eq!(last.retry_after(), first.retry_after(), "paused clock");
    assert_eq!(last.to_string(), first.to_string());
    assert_eq!(handle.stats().rejections, 100_001);
    assert_eq!(
        backend.calls(),
        4,
        "the inner service was never called, nor its future made"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn c26_metrics_have_a_transitions_counter_and_a_one_hot_state_gauge() {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    let backend = Backend::default();
    let layer = builder().name("users").build().unwrap();
    let handle = layer.handle();
    let mut registry = Registry::default();
    handle.register(&mut registry);
    let mut svc = stack(&layer, &backend);
    tripped(&mut svc).await;
    tokio::time::advance(S(10)).await;
    calls(&mut svc, 2, 200).await; // closed again: an opening shorter than any scrape
    let _ = call(&mut svc, OK).await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let line = |s: &str| text.lines().any(|l| l == s);
    assert!(
        line(r#"circuit_breaker_state{breaker="users",key="",state="closed"} 1"#),
        "{text}"
    );
    for s in [
        "open",
        "half_open",
        "forced_open",
        "forced_closed",
        "disabled",
    ] {
        let l = format!(r#"circuit_breaker_state{{breaker="users",key="",state="{s}"}} 0"#);
        assert!(line(&l), "{l}\n{text}");
    }
    assert!(line(
        r#"circuit_breaker_transitions_total{breaker="users",key="",from="closed",to="open"} 1"#
    ));
    assert!(line(
        r#"circuit_breaker_transitions_total{breaker="users",key="",from="half_open",to="closed"} 1"#
    ));
    assert!(line(
        r#"circuit_breaker_calls_total{breaker="users",key="",outcome="failure"} 4"#
    ));
    assert!(line(
        r#"circuit_breaker_calls_total{breaker="users",key="",outcome="success"} 3"#
    ));
    assert!(
        line(r#"circuit_breaker_rejections_total{breaker="users",key="",} 0"#)
            || line(r#"circuit_breaker_rejections_total{breaker="users",key=""} 0"#)
    );
    assert!(
        line(r#"circuit_breaker_failure_rate{breaker="users",key=""} 0.0"#),
        "{text}"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn metrics_label_per_key_breakers_and_drop_evicted_keys() {
    use prometheus_client::{encoding::text::encode, registry::Registry};
    use tower_bulwark::circuit_breaker::CircuitBreakerMetrics;

    let layer = builder()
        .name("hosts")
        .per_key(|req: &Request<()>| req.uri().authority().cloned())
        .max_keys(2)
        .build()
        .unwrap();
    let other = builder().name("single").build().unwrap();
    let handle = layer.handle();
    let mut registry = Registry::default();
    let metrics = CircuitBreakerMetrics::register(&mut registry);
    metrics.track(&handle);
    metrics.track(&other.handle());
    let svc = ServiceBuilder::new().layer(layer).service(keyed_backend());
    for host in ["a.example", "b.example"] {
        let req = Request::get(format!("http://{host}/")).body(()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let scrape = |registry: &Registry| {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
    };
    let text = scrape(&registry);
    for key in ["a.example", "b.example"] {
        let l = format!(r#"circuit_breaker_state{{breaker="hosts",key="{key}",state="closed"}} 1"#);
        assert!(text.lines().any(|x| x == l), "{l}\n{text}");
    }
    assert!(text.contains(r#"circuit_breaker_state{breaker="single",key="",state="closed"} 1"#));
    assert_eq!(
        text.matches("# TYPE circuit_breaker_state gauge").count(),
        1,
        "one family"
    );
    // A third key evicts the least recently used one; its series go with it.
    tokio::time::advance(S(2)).await;
    let req = Request::get("http://b.example/").body(()).unwrap();
    svc.clone().oneshot(req).await.unwrap();
    let req = Request::get("http://c.example/").body(()).unwrap();
    svc.clone().oneshot(req).await.unwrap();
    let text = scrape(&registry);
    assert!(!text.contains(r#"key="a.example""#), "{text}");
    assert!(text.contains(r#"key="c.example""#));
    // A dropped layer's series disappear.
    drop(other);
    assert!(!scrape(&registry).contains(r#"breaker="single""#));
}

// ===== Async, cancellation, lifecycle =====

#[tokio::test(start_paused = true)]
async fn c27_cancellation_before_and_during_execution() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    // Rejected: never executed, not counted as a call.
    handle.force_open();
    let _ = call(&mut svc, OK).await;
    assert_eq!(backend.calls(), 0);
    let st = handle.stats();
    assert_eq!((st.successes, st.failures, st.cancelled), (0, 0, 0));
    handle.reset();
    // Cancelled during execution: counted as cancelled, never as a failure.
    for _ in 0..10 {
        let (_tx, rx) = oneshot::channel();
        let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(Call::Gate(rx)));
        assert!(t.poll().is_pending());
    }
    let st = handle.stats();
    assert_eq!((st.cancelled, st.failures, st.buffered_calls), (10, 0, 0));
    assert_eq!(handle.state(), State::Closed);
    // With a timeout outside the breaker, the timed-out call is cancelled, not failed.
    let mut timed = ServiceBuilder::new()
        .timeout(S(1))
        .service(stack(&layer, &backend));
    for _ in 0..10 {
        let err = timed
            .ready()
            .await
            .unwrap()
            .call(Call::After(S(5), 200))
            .await
            .unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>());
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().cancelled, 20);

    // A timeout inside the breaker, where it belongs, is a failure of the backend.
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(S(1))
        .service(backend.service());
    for _ in 0..4 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(Call::After(S(5), 200))
            .await
            .unwrap_err()
            .into_box_error();
        assert!(tower_bulwark::classify::is_timeout(err.as_ref()));
    }
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.stats().cancelled, 0);
}

#[tokio::test(start_paused = true)]
async fn c28_the_outcome_is_recorded_once_even_if_polled_again() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = stack(&layer, &backend);
    let mut t = tokio_test::task::spawn(svc.ready().await.unwrap().call(FAIL));
    assert!(t.poll().is_ready());
    // Polled again after completion: pending (not a panic, not a second record)...
    // The inner boxed future would panic if polled again, so the check is on a rejection.
    assert_eq!(handle.stats().failures, 1);
    handle.force_open();
    let mut r = tokio_test::task::spawn(svc.ready().await.unwrap().call(OK));
    assert!(r.poll().is_ready());
    assert!(r.poll().is_pending());
    assert_eq!(handle.stats().rejections, 1);
    // Cloned services record through the same breaker once per call.
    handle.reset();
    let mut a = stack(&layer, &backend);
    let mut b = stack(&layer, &backend);
    call(&mut a, FAIL).await.unwrap();
    call(&mut b, FAIL).await.unwrap();
    assert_eq!(handle.stats().buffered_failures, 2);
}

#[tokio::test(start_paused = true)]
async fn c29_shared_state_separate_layers_and_no_background_work() {
    let backend = Backend::default();
    let layer = builder().build().unwrap();
    // Two services from one layer (and a clone of the layer) share one breaker.
    let mut a = stack(&layer, &backend);
    let mut b = stack(&layer.clone(), &backend);
    calls(&mut a, 2, 500).await;
    calls(&mut b, 2, 500).await;
    assert_eq!(layer.handle().state(), State::Open);
    assert!(rejected(&call(&mut a, OK).await).is_some());
    // Another layer built from the same settings is independent.
    let other = builder().build().unwrap();
    let mut c = stack(&other, &backend);
    call(&mut c, OK).await.unwrap();
    // No timers or tasks: thousands of breakers, open and closed, spawn nothing.
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks = metrics.num_alive_tasks();
    let layers: Vec<_> = (0..2000).map(|_| builder().build().unwrap()).collect();
    for (i, l) in layers.iter().enumerate() {
        if i % 2 == 0 {
            l.handle().open_for(S(1));
        }
    }
    tokio::time::advance(S(5)).await;
    assert_eq!(metrics.num_alive_tasks(), tasks);
    drop(layers);
}

// ===== Per-key breakers =====

fn keyed_backend() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone {
    service_fn(|req: Request<()>| async move {
        let status = match req.uri().path() {
            "/fail" => 500,
            _ => 200,
        };
        Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
    })
}

#[tokio::test(start_paused = true)]
async fn per_key_breakers_are_isolated_bounded_and_evict_idle_keys_first() {
    let layer = builder()
        .per_key(|req: &Request<()>| req.uri().host().unwrap_or_default().to_owned())
        .max_keys(3)
        .idle_timeout(S(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(keyed_backend());
    let get = |host: &str, path: &str| {
        Request::get(format!("http://{host}{path}"))
            .body(())
            .unwrap()
    };
    for _ in 0..4 {
        let _ = svc.clone().oneshot(get("a", "/fail")).await;
    }
    let err = svc.clone().oneshot(get("a", "/")).await.unwrap_err();
    assert_eq!(err.as_open().unwrap().key(), "a");
    svc.clone().oneshot(get("b", "/")).await.unwrap();
    assert_eq!(handle.get(&"a".to_owned()).unwrap().state(), State::Open);
    assert_eq!(handle.get(&"b".to_owned()).unwrap().state(), State::Closed);
    assert_eq!(handle.len(), 2);

    // Held by hand: spared from eviction.
    handle.get_or_insert("c".to_owned()).force_open();
    tokio::time::advance(S(61)).await;
    svc.clone().oneshot(get("b", "/")).await.unwrap(); // b is fresh again
    // A new key at capacity evicts the idle one (a), not b (used) nor c (forced).
    svc.clone().oneshot(get("d", "/")).await.unwrap();
    assert_eq!(handle.len(), 3);
    assert!(handle.get(&"a".to_owned()).is_none());
    assert!(handle.get(&"c".to_owned()).is_some());
    // Nothing idle: the least recently used unforced key goes.
    tokio::time::advance(S(2)).await;
    svc.clone().oneshot(get("d", "/")).await.unwrap();
    svc.clone().oneshot(get("e", "/")).await.unwrap();
    assert_eq!(handle.len(), 3);
    assert!(handle.get(&"b".to_owned()).is_none());
    let mut keys: Vec<String> = handle
        .breakers()
        .iter()
        .filter_map(|b| b.key().cloned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["c", "d", "e"]);
    // Explicit sweep.
    tokio::time::advance(S(120)).await;
    assert_eq!(handle.evict_idle(), 2);
    assert_eq!(handle.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn http_503_adapter_keeps_the_inner_error_type() {
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer.http_503())
        .service(keyed_backend());
    handle.open_for(MS(1500));
    let res: Response<()> = svc
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "2");
    handle.force_open();
    let res = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.headers().get("retry-after").is_none(),
        "unknown: no header"
    );
    handle.reset();
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
}

// ===== Concurrency =====

/// Many tasks on many threads racing at the threshold: exactly one open transition; then
/// racing for half-open permits: exactly N admitted each round, none lost to cancellation.
#[test]
fn concurrent_calls_make_one_transition_and_lose_no_permit() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opens = Arc::new(AtomicUsize::new(0));
        let counter = opens.clone();
        let layer = CircuitBreakerLayer::builder()
            .window(Window::Count(100))
            .minimum_calls(50)
            .failure_rate_threshold(50.0)
            .open_duration(S(3600))
            .half_open_permits(5)
            .max_half_open_wait(None)
            .on_event(move |e: &Event| {
                if matches!(
                    e.kind,
                    EventKind::Transition {
                        to: State::Open,
                        ..
                    }
                ) {
                    counter.fetch_add(1, SeqCst);
                }
            })
            .build()
            .unwrap();
        let handle = layer.handle();
        let backend = Backend::default();

        // 200 tasks, all failing at once: the 50th recorded result crosses the threshold,
        // and many cross it at the same time.
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let mut svc = stack(&layer, &backend);
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    call(&mut svc, FAIL).await.is_err()
                })
            })
            .collect();
        let mut rejections = 0;
        for t in tasks {
            rejections += usize::from(t.await.unwrap());
        }
        assert_eq!(opens.load(SeqCst), 1, "exactly one open transition");
        assert_eq!(
            handle.breaker().transition_counts(),
            [(State::Closed, State::Open, 1)]
        );
        assert_eq!(rejections + backend.calls(), 200);
        assert!(backend.calls() >= 50);

        handle.transition_to(State::HalfOpen).unwrap();
        for round in 0..20 {
            // 64 racers for 5 permits. The admitted ones hang until they are cancelled.
            let barrier = Arc::new(tokio::sync::Barrier::new(64));
            let refused = Arc::new(AtomicUsize::new(0));
            let before = backend.calls();
            let racers: Vec<_> = (0..64)
                .map(|_| {
                    let mut svc = stack(&layer, &backend);
                    let barrier = barrier.clone();
                    let refused = refused.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let (_tx, rx) = oneshot::channel::<u16>();
                        let r = call(&mut svc, Call::Gate(rx)).await;
                        assert_eq!(rejected(&r).unwrap().state(), State::HalfOpen);
                        refused.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            // Wait (without sleeping) until every racer has been admitted or refused.
            while refused.load(SeqCst) + (backend.calls() - before) < 64 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                backend.calls() - before,
                5,
                "round {round}: exactly the permits"
            );
            assert_eq!(refused.load(SeqCst), 59, "round {round}");
            // Cancel the five hanging probes from other threads: each gives its permit back.
            for r in &racers {
                r.abort();
            }
            for r in racers {
                let _ = r.await;
            }
            assert_eq!(handle.state(), State::HalfOpen, "round {round}");
        }
        // Finally five good probes (the same five permits) close it.
        let probes: Vec<_> = (0..5)
            .map(|_| {
                let mut svc = stack(&layer, &backend);
                tokio::spawn(async move { call(&mut svc, OK).await.is_ok() })
            })
            .collect();
        for p in probes {
            assert!(p.await.unwrap());
        }
        assert_eq!(handle.state(), State::Closed);
    });
}

/// Probes cancelled mid-flight from many threads hand their permits back.
#[test]
fn concurrently_cancelled_probes_return_their_permits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = CircuitBreakerLayer::builder()
            .open_duration(S(3600))
            .half_open_permits(3)
            .max_half_open_wait(None)
            .build()
            .unwrap();
        let handle = layer.handle();
        let backend = Backend::default();
        handle.open();
        handle.transition_to(State::HalfOpen).unwrap();
        for round in 0..50 {
            let refused = Arc::new(AtomicUsize::new(0));
            let before = backend.calls();
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let mut svc = stack(&layer, &backend);
                    let refused = refused.clone();
                    tokio::spawn(async move {
                        let (_tx, rx) = oneshot::channel::<u16>();
                        // Admitted probes hang until aborted.
                        if call(&mut svc, Call::Gate(rx)).await.is_err() {
                            refused.fetch_add(1, SeqCst);
                        }
                    })
                })
                .collect();
            while refused.load(SeqCst) + (backend.calls() - before) < 16 {
                tokio::task::yield_now().await;
            }
            assert_eq!(backend.calls() - before, 3, "round {round}");
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
            assert_eq!(handle.state(), State::HalfOpen);
        }
        // All three permits are still there.
        let calls_before = backend.calls();
        let probes: Vec<_> = (0..3)
            .map(|_| {
                let mut svc = stack(&layer, &backend);
                tokio::spawn(async move { call(&mut svc, OK).await.is_ok() })
            })
            .collect();
        for p in probes {
            assert!(p.await.unwrap());
        }
        assert_eq!(backend.calls() - calls_before, 3);
        assert_eq!(handle.state(), State::Closed);
    });
}

// ===== Model-based property test =====

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Clone, Copy, Debug)]
    pub(super) enum Kind {
        Ok,
        Fail,
        Ignore,
    }

    #[derive(Clone, Debug)]
    pub(super) enum Op {
        /// A call that takes `ms` and ends as `kind`.
        Call(Kind, u64),
        /// A call that is started and held (up to 4 held at once).
        Begin,
        /// The held call `i` ends as `kind`.
        End(usize, Kind),
        /// The held call `i` is dropped.
        Drop(usize),
        /// The clock moves.
        Advance(u64),
    }

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Cfg {
        window: Option<u32>, // Some(n): count window; None: time window 1 s / 5 buckets
        min_calls: u32,
        threshold: f64,
        slow_ms: Option<u64>,
        permits: u32,
        max_wait_ms: Option<u64>,
        after_max_wait_closed: bool,
    }

    const OPEN_MS: u64 = 1000;
    const MAX_OPEN_MS: u64 = 8000;
    const BUCKET_MS: u64 = 200;
    const BUCKETS: u64 = 5;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Admit {
        Window(u64),
        Probe(u64),
    }

    /// The reference state machine, written for clarity, not speed.
    struct Model {
        cfg: Cfg,
        now: u64,
        state: State,
        generation: u64,
        /// (ms recorded at, failed, slow)
        window: VecDeque<(u64, bool, bool)>,
        open_until: u64,
        opens: u32,
        free: u32,
        probes: Vec<(bool, bool)>,
        entered: u64,
    }

    /// What a call's admission gave: `Ok` or the refusing state and retry-after in ms.
    type Decision = Result<(), (State, Option<u64>)>;

    impl Model {
        fn new(cfg: Cfg) -> Self {
            Self {
                cfg,
                now: 0,
                state: State::Closed,
                generation: 0,
                window: VecDeque::new(),
                open_until: 0,
                opens: 0,
                free: 0,
                probes: Vec::new(),
                entered: 0,
            }
        }

        fn to(&mut self, to: State) {
            self.generation += 1;
            self.state = to;
            match to {
                State::Open => {
                    let d = (OPEN_MS << self.opens.min(10)).min(MAX_OPEN_MS);
                    self.opens += 1;
                    self.open_until = self.now + d;
                }
                State::HalfOpen => {
                    self.free = self.cfg.permits;
                    self.probes.clear();
                    self.entered = self.now;
                }
                State::Closed => {
                    self.window.clear();
                    self.opens = 0;
                }
                _ => {}
            }
        }

        fn reached(&self, total: usize, fails: usize, slow: usize) -> bool {
            let t = total as f64;
            total > 0
                && (fails as f64 * 100.0 >= self.cfg.threshold * t
                    || (self.cfg.slow_ms.is_some() && slow as f64 * 100.0 >= 50.0 * t))
        }

        fn acquire(&mut self) -> (Decision, Option<Admit>) {
            loop {
                match self.state {
                    State::Closed => return (Ok(()), Some(Admit::Window(self.generation))),
                    State::Open => {
                        if self.now < self.open_until {
                            return (Err((State::Open, Some(self.open_until - self.now))), None);
                        }
                        self.to(State::HalfOpen);
                    }
                    State::HalfOpen => {
                        if let Some(max) = self.cfg.max_wait_ms
                            && self.now >= self.entered + max
                        {
                            let after = if self.cfg.after_max_wait_closed {
                                State::Closed
                            } else {
                                State::Open
                            };
                            self.to(after);
                            continue;
                        }
                        if self.free > 0 {
                            self.free -= 1;
                            return (Ok(()), Some(Admit::Probe(self.generation)));
                        }
                        let left = self.cfg.max_wait_ms.map(|m| self.entered + m - self.now);
                        return (Err((State::HalfOpen, left)), None);
                    }
                    _ => unreachable!(),
                }
            }
        }

        fn tally(&self) -> (usize, usize, usize) {
            let live: Vec<_> = match self.cfg.window {
                Some(_) => self.window.iter().collect(),
                None => {
                    let epoch = self.now / BUCKET_MS;
                    self.window
                        .iter()
                        .filter(|(at, ..)| epoch - at / BUCKET_MS < BUCKETS)
                        .collect()
                }
            };
            (
                live.len(),
                live.iter().filter(|(_, f, _)| *f).count(),
                live.iter().filter(|(_, _, s)| *s).count(),
            )
        }

        fn record(&mut self, admit: Admit, kind: Kind, took: u64) {
            let slow = self.cfg.slow_ms.is_some_and(|s| took > s);
            let fail = matches!(kind, Kind::Fail);
            match (admit, kind) {
                (Admit::Probe(g), Kind::Ignore) => {
                    if g == self.generation && self.state == State::HalfOpen {
                        self.free += 1;
                    }
                }
                (Admit::Window(_), Kind::Ignore) => {}
                (Admit::Window(g), _) => {
                    if g != self.generation {
                        return;
                    }
                    self.window.push_back((self.now, fail, slow));
                    if let Some(n) = self.cfg.window {
                        while self.window.len() > n as usize {
                            self.window.pop_front();
                        }
                    }
                    let (t, f, s) = self.tally();
                    if t >= self.cfg.min_calls as usize && self.reached(t, f, s) {
                        self.to(State::Open);
                    }
                }
                (Admit::Probe(g), _) => {
                    if g != self.generation || self.state != State::HalfOpen {
                        return;
                    }
                    self.probes.push((fail, slow));
                    if self.probes.len() == self.cfg.permits as usize {
                        let f = self.probes.iter().filter(|p| p.0).count();
                        let s = self.probes.iter().filter(|p| p.1).count();
                        if self.reached(self.probes.len(), f, s) {
                            self.to(State::Open);
                        } else {
                            self.to(State::Closed);
                        }
                    }
                }
            }
        }

        fn drop_call(&mut self, admit: Admit) {
            if let Admit::Probe(g) = admit
                && g == self.generation
                && self.state == State::HalfOpen
            {
                self.free += 1;
            }
        }
    }

    fn status(kind: Kind) -> u16 {
        match kind {
            Kind::Ok => 200,
            Kind::Fail => 500,
            Kind::Ignore => 404,
        }
    }

    fn classifier(r: Result<&Res, &io::Error>) -> Outcome {
        match r {
            Ok(res) if res.status() == StatusCode::NOT_FOUND => Outcome::Ignore,
            Ok(res) => HttpClassifier::classify_status(res.status()),
            Err(_) => Outcome::Failure,
        }
    }

    fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut b = CircuitBreakerLayer::builder()
                .classifier(classifier as fn(Result<&Res, &io::Error>) -> Outcome)
                .minimum_calls(cfg.min_calls)
                .failure_rate_threshold(cfg.threshold)
                .slow_call_rate_threshold(50.0)
                .open_duration(MS(OPEN_MS))
                .backoff_multiplier(2.0)
                .max_open_duration(MS(MAX_OPEN_MS))
                .half_open_permits(cfg.permits)
                .max_half_open_wait(cfg.max_wait_ms.map(MS))
                .after_max_half_open_wait(if cfg.after_max_wait_closed {
                    State::Closed
                } else {
                    State::Open
                })
                .window(match cfg.window {
                    Some(n) => Window::Count(n),
                    None => Window::time(MS(BUCKET_MS * BUCKETS), BUCKETS as u32),
                });
            if let Some(ms) = cfg.slow_ms {
                b = b.slow_call_duration(MS(ms));
            }
            let layer = b.build().unwrap();
            let handle = layer.handle();
            let backend = Backend::default();
            let inner: BoxBackend = Box::new(backend.service());
            let mut svc = tower::Layer::layer(&layer, inner);
            let mut model = Model::new(cfg);
            // Held calls: real task, its gate, the model's admission, when it began.
            let mut held: Vec<(_, oneshot::Sender<u16>, Admit, u64)> = Vec::new();

            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Call(kind, ms) => {
                        let (want, admit) = model.acquire();
                        let r = svc
                            .ready()
                            .await
                            .unwrap()
                            .call(Call::After(MS(ms), status(kind)))
                            .await;
                        let got = match &r {
                            Err(CircuitBreakerError::Open(o)) => {
                                Err((o.state(), o.retry_after().map(|d| d.as_millis() as u64)))
                            }
                            _ => Ok(()),
                        };
                        prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                        if let Some(admit) = admit {
                            model.now += ms;
                            model.record(admit, kind, ms);
                        }
                    }
                    Op::Begin if held.len() < 4 => {
                        let (want, admit) = model.acquire();
                        let (tx, rx) = oneshot::channel();
                        let mut t = tokio_test::task::spawn(
                            svc.ready().await.unwrap().call(Call::Gate(rx)),
                        );
                        match admit {
                            Some(admit) => {
                                prop_assert!(t.poll().is_pending(), "step {}", step);
                                held.push((t, tx, admit, model.now));
                            }
                            None => {
                                let got = match t.poll() {
                                    Poll::Ready(Err(CircuitBreakerError::Open(o))) => Err((
                                        o.state(),
                                        o.retry_after().map(|d| d.as_millis() as u64),
                                    )),
                                    _ => Ok(()),
                                };
                                prop_assert_eq!(got, want, "step {}: begin", step);
                            }
                        }
                    }
                    Op::Begin => {}
                    Op::End(i, kind) if i < held.len() => {
                        let (mut t, tx, admit, began) = held.remove(i);
                        tx.send(status(kind)).unwrap();
                        prop_assert!(t.poll().is_ready());
                        model.record(admit, kind, model.now - began);
                    }
                    Op::Drop(i) if i < held.len() => {
                        let (t, _tx, admit, _) = held.remove(i);
                        drop(t);
                        model.drop_call(admit);
                    }
                    Op::End(..) | Op::Drop(_) => {}
                    Op::Advance(ms) => {
                        tokio::time::advance(MS(ms)).await;
                        model.now += ms;
                    }
                }
                prop_assert_eq!(handle.state(), model.state, "step {}: {:?}", step, op);
                let (t, f, s) = model.tally();
                let st = handle.stats();
                prop_assert_eq!(
                    (
                        st.buffered_calls,
                        st.buffered_failures,
                        st.buffered_slow_calls
                    ),
                    (t as u64, f as u64, s as u64),
                    "step {}",
                    step
                );
            }
            Ok(())
        })
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![4 => Just(Kind::Ok), 4 => Just(Kind::Fail), 1 => Just(Kind::Ignore)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (kind(), prop_oneof![3 => Just(0u64), 1 => 0u64..400]).prop_map(|(k, ms)| Op::Call(k, ms)),
            2 => Just(Op::Begin),
            2 => (0usize..4, kind()).prop_map(|(i, k)| Op::End(i, k)),
            1 => (0usize..4).prop_map(Op::Drop),
            3 => prop_oneof![0u64..300, 900u64..2500].prop_map(Op::Advance),
        ]
    }

    fn cfg() -> impl Strategy<Value = Cfg> {
        (
            prop_oneof![Just(None), (1u32..8).prop_map(Some)],
            1u32..6,
            prop_oneof![Just(50.0), Just(100.0), Just(34.0), 1.0f64..100.0],
            prop_oneof![Just(None), Just(Some(100u64))],
            1u32..4,
            prop_oneof![Just(None), Just(Some(1500u64))],
            any::<bool>(),
        )
            .prop_map(
                |(window, min, threshold, slow_ms, permits, max_wait, closed)| Cfg {
                    window,
                    min_calls: window.map_or(min, |n| min.min(n)),
                    threshold,
                    slow_ms,
                    permits,
                    max_wait_ms: max_wait,
                    after_max_wait_closed: closed,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn breaker_matches_the_reference_model(cfg in cfg(), ops in prop::collection::vec(op(), 1..120)) {
            run(cfg, ops)?;
        }
    }
}
