//! Cost per request of the tracing layers, against a bare service and tower-http's
//! `TraceLayer`, under the subscriber a service would run: INFO, JSON lines to a sink, and
//! OpenTelemetry with every trace sampled out (`sample_rate(0.0)`; with `otlp`, an exporter
//! aimed at a closed port that never receives anything).
//!
//! The echo service's future is ready at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, and the response body polled to its
//! end, all with a no-op waker. Compare each case with `bare` in the same run:
//!
//! On a shared machine the difference between two cases timed alone is mostly noise, so the
//! `added` group measures the difference itself: each sample alternates batches of 64
//! requests through the layered and the bare service and reports the median (layered − bare)
//! per request.
//!
//! With `otlp`, the `dead_collector` group times the same requests with every span sampled
//! (`sample_rate(1.0)`) and exported to a loopback port where nothing listens, against tracing
//! disabled (no layer, no subscriber) in the same run; before it, 1,000 calls are made
//! through that service and timed, and the export counters are printed after each part, to
//! show the queue filling and spans being dropped rather than requests being slowed.
//!
//! ```text
//! cargo bench --bench trace --features trace,otlp -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    io,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use tower::Service;
use tower_bulwark::trace::{ClientTraceLayer, Route, ServerTraceLayer, TelemetryBuilder};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_layer::Layer;
use tracing::{Dispatch, Level};

mod support;

use support::{drive, echo};

type Req = Request<String>;

/// A request shaped like a real server's, optionally with a caller's (unsampled) trace.
fn request(traceparent: Option<&HeaderValue>) -> Req {
    let mut req = Request::get("/tasks/42").body(String::new()).unwrap();
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(tp) = traceparent {
        headers.insert("traceparent", tp.clone());
    }
    req
}

/// A request for a server layer over a client layer: the client span is the server span's
/// child and `traceparent` is written on the way out.
fn proxied_request() -> Req {
    let mut req = Request::get("http://backend.internal:8080/tasks/42?fields=all")
        .body(String::new())
        .unwrap();
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("bench/1.0"));
    req
}

fn client_request() -> Req {
    Request::get("http://backend.internal:8080/tasks/42?fields=all")
        .body(String::new())
        .unwrap()
}

fn route(_: &Req) -> Option<Route> {
    Some(Route::from_static("/tasks/{id}"))
}

/// This crate's subscriber: JSON to a sink, OpenTelemetry on, nothing sampled.
fn bulwark_subscriber(opentelemetry: bool) -> (Dispatch, impl Drop) {
    let builder = TelemetryBuilder::new("bench")
        .writer(io::sink)
        .opentelemetry(opentelemetry)
        .sample_rate(0.0);
    #[cfg(feature = "otlp")]
    let builder = {
        // A port nobody listens on: were anything sampled, its export would fail.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        builder.otlp_endpoint(endpoint)
    };
    builder.build().unwrap()
}

/// tracing-subscriber's stock JSON output, as a tower-http user would set it up.
fn stock_json_subscriber() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_max_level(Level::INFO)
            .with_writer(io::sink)
            .finish(),
    )
}

fn bench(c: &mut Criterion) {
    let (ours, _guard) = bulwark_subscriber(true);
    let (plain, _plain_guard) = bulwark_subscriber(false);
    let stock = stock_json_subscriber();
    let unsampled_parent =
        HeaderValue::from_str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    let tower_http = || {
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO))
    };

    let mut g = c.benchmark_group("trace");
    tracing::dispatcher::with_default(&ours, || {
        g.bench_function("bare", |b| {
            let mut svc = echo();
            b.iter(|| drive(&mut svc, request(None)));
        });
        // Span at INFO plus its INFO "finished processing request" line.
        g.bench_function("tower_http_info", |b| {
            let mut svc = tower_http().layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
        // The span alone: the log lines a handler writes are what carry its IDs.
        g.bench_function("server", |b| {
            let mut svc = ServerTraceLayer::new().classify_route(route).layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
        // Span plus one INFO line per response: the same output as tower_http_info.
        g.bench_function("server_log_responses", |b| {
            let mut svc = ServerTraceLayer::new()
                .classify_route(route)
                .log_responses(Level::INFO)
                .layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
        g.bench_function("server_inbound_traceparent", |b| {
            let mut svc = ServerTraceLayer::new().classify_route(route).layer(echo());
            b.iter(|| drive(&mut svc, request(Some(&unsampled_parent))));
        });
        // A client span and `traceparent` written on the request.
        g.bench_function("client", |b| {
            let mut svc = ClientTraceLayer::new().classify_route(route).layer(echo());
            b.iter(|| drive(&mut svc, client_request()));
        });
    });
    // No OpenTelemetry at all: IDs from `CorrelationLayer`.
    tracing::dispatcher::with_default(&plain, || {
        g.bench_function("server_without_opentelemetry", |b| {
            let mut svc = ServerTraceLayer::new().classify_route(route).layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
    });
    // tower-http as commonly set up: tracing-subscriber's own JSON output.
    tracing::dispatcher::with_default(&stock, || {
        g.bench_function("bare_stock_json", |b| {
            let mut svc = echo();
            b.iter(|| drive(&mut svc, request(None)));
        });
        g.bench_function("tower_http_info_stock_json", |b| {
            let mut svc = tower_http().layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
    });
    g.finish();
}

/// See [`support::added`]: `layered` against `bare`, on requests made by `request`, with
/// `dispatch` as the subscriber for both.
fn added<A, AB, L, LB>(
    dispatch: Dispatch,
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
    let mut timed = support::added(
        move || drive(&mut bare, request()),
        move || drive(&mut layered, for_layered()),
    );
    move |iters| tracing::dispatcher::with_default(&dispatch, || timed(iters))
}

fn bench_added(c: &mut Criterion) {
    let (ours, _guard) = bulwark_subscriber(true);
    let tower_http = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    let server = ServerTraceLayer::new().classify_route(route);

    let mut g = c.benchmark_group("added");
    g.bench_function("server", |b| {
        b.iter_custom(added(ours.clone(), echo(), server.layer(echo()), || {
            request(None)
        }));
    });
    g.bench_function("server_log_responses", |b| {
        let layered = server.clone().log_responses(Level::INFO).layer(echo());
        b.iter_custom(added(ours.clone(), echo(), layered, || request(None)));
    });
    g.bench_function("tower_http_info", |b| {
        b.iter_custom(added(
            ours.clone(),
            echo(),
            tower_http.layer(echo()),
            || request(None),
        ));
    });
    #[cfg(feature = "otlp")]
    {
        let (dead, guard) = dead_collector_subscriber();
        g.bench_function("dead_collector/server", |b| {
            b.iter_custom(added(dead.clone(), echo(), server.layer(echo()), || {
                request(None)
            }));
        });
        g.bench_function("dead_collector/server+client", |b| {
            let layered = server.layer(ClientTraceLayer::new().layer(echo()));
            b.iter_custom(added(dead.clone(), echo(), layered, proxied_request));
        });
        report_export("added/dead_collector", &guard);
    }
    g.finish();
}

/// Every span sampled and exported to a loopback port where nothing listens. The queue is
/// smaller than the default 2048 so that the 1,000-call check overflows it too; the
/// benchmarks overflow it whatever its size.
#[cfg(feature = "otlp")]
fn dead_collector_subscriber() -> (Dispatch, tower_bulwark::trace::TelemetryGuard) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    TelemetryBuilder::new("bench")
        .writer(io::sink)
        .opentelemetry(true)
        .sample_rate(1.0)
        .otlp_endpoint(endpoint)
        .export_queue_size(256)
        .build()
        .unwrap()
}

#[cfg(feature = "otlp")]
#[allow(
    clippy::print_stdout,
    reason = "the counters are part of the bench's report"
)]
fn report_export(what: &str, guard: &tower_bulwark::trace::TelemetryGuard) {
    let stats = guard.export_stats();
    println!(
        "{what}: spans exported {}, dropped {} (queue full {}, export failed {})",
        stats.exported,
        guard.dropped_spans(),
        stats.dropped_queue_full,
        stats.dropped_export_failed,
    );
}

/// With the collector down, 1,000 calls through the server layer (and through the
/// server+client pair) complete at once; then criterion times them against tracing disabled.
#[cfg(feature = "otlp")]
#[allow(
    clippy::print_stdout,
    reason = "the counters are part of the bench's report"
)]
fn bench_dead_collector(c: &mut Criterion) {
    const CALLS: u32 = 1_000;
    let disabled = Dispatch::none();
    let server = ServerTraceLayer::new().classify_route(route);

    // The check itself: every call completes (`drive` panics otherwise), timed.
    let time_calls = |dispatch: &Dispatch, mut call: Box<dyn FnMut() + '_>| {
        tracing::dispatcher::with_default(dispatch, || {
            let start = Instant::now();
            for _ in 0..CALLS {
                call();
            }
            start.elapsed() / CALLS
        })
    };
    let (dead, guard) = dead_collector_subscriber();
    let mut bare = echo();
    let mut layered = server.layer(echo());
    let mut pair = server.layer(ClientTraceLayer::new().layer(echo()));
    let off = time_calls(&disabled, Box::new(|| drive(&mut bare, request(None))));
    let on = time_calls(&dead, Box::new(|| drive(&mut layered, request(None))));
    let on_pair = time_calls(&dead, Box::new(|| drive(&mut pair, proxied_request())));
    println!(
        "dead collector, {CALLS} calls each completed: tracing disabled {} ns/call, \
         server layer {} ns/call, server+client {} ns/call",
        off.as_nanos(),
        on.as_nanos(),
        on_pair.as_nanos(),
    );
    // Let the export thread try (and fail) to send what it holds.
    std::thread::sleep(Duration::from_millis(200));
    report_export("dead collector, 1,000-call check", &guard);

    let mut g = c.benchmark_group("dead_collector");
    tracing::dispatcher::with_default(&disabled, || {
        g.bench_function("tracing_disabled", |b| {
            let mut svc = echo();
            b.iter(|| drive(&mut svc, request(None)));
        });
    });
    tracing::dispatcher::with_default(&dead, || {
        g.bench_function("server", |b| {
            let mut svc = server.layer(echo());
            b.iter(|| drive(&mut svc, request(None)));
        });
        g.bench_function("server+client", |b| {
            let mut svc = server.layer(ClientTraceLayer::new().layer(echo()));
            b.iter(|| drive(&mut svc, proxied_request()));
        });
    });
    g.finish();
    report_export("dead_collector group", &guard);
}

#[cfg(feature = "otlp")]
criterion_group!(benches, bench, bench_added, bench_dead_collector);
#[cfg(not(feature = "otlp"))]
criterion_group!(benches, bench, bench_added);
criterion_main!(benches);
