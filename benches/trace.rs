//! Cost per request of the tracing layers, against a bare service and tower-http's
//! `TraceLayer`, under the subscriber a service would run: INFO, JSON lines to a sink, and
//! OpenTelemetry with every trace sampled out (`sample_rate(0.0)`; with `otlp`, an exporter
//! aimed at a closed port that never receives anything).
//!
//! The echo service's future is ready at once, so each iteration is driven by hand (no
//! runtime): `poll_ready`, `call`, one poll of the future, and the response body polled to its
//! end, all with a no-op waker. Compare each case with `bare` in the same run:
//!
//! ```text
//! cargo bench --bench trace --features trace,otlp -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    io,
    pin::pin,
    task::{Context, Poll, Waker},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use tower::{Service, service_fn};
use tower_bulwark::trace::{ClientTraceLayer, Route, ServerTraceLayer, TelemetryBuilder};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_layer::Layer;
use tracing::{Dispatch, Level};

type Req = Request<String>;

/// The bare service: answers with the request's (empty) body.
fn echo() -> impl Service<
    Req,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|req: Req| ready(Ok(Response::new(req.into_body()))))
}

/// One request through `svc`, to the end of its response body.
fn drive<S, B>(svc: &mut S, req: Req)
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let Poll::Ready(Ok(res)) = pin!(svc.call(req)).poll(&mut cx) else {
        panic!("the echo service is ready at once")
    };
    black_box(res.headers());
    let mut body = pin!(res.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}

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

criterion_group!(benches, bench);
criterion_main!(benches);
