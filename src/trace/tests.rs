//! Layer tests without a network: services driven by hand under a captured subscriber.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    io,
    sync::{Arc, Mutex},
};

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use tower::{Service, ServiceExt as _, service_fn};
use tower_layer::Layer as _;
use tracing::Instrument as _;

use super::*;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn telemetry(builder: TelemetryBuilder) -> (tracing::Dispatch, TelemetryGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let (dispatch, guard) = builder.writer(move || writer.clone()).build().unwrap();
    (dispatch, guard, logs)
}

/// Answers with the `traceparent` it received, after logging a line.
fn echo_traceparent() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|req: Request<String>| {
        tracing::info!("inner");
        let tp = req
            .headers()
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        ready(Ok(Response::new(tp)))
    })
}

async fn body_of<B>(res: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_whose_span_is_filtered_out_sends_the_enclosing_context() {
    // The client layer's spans are at DEBUG, below the filter; the enclosing span is INFO.
    let (dispatch, _guard, _logs) = telemetry(TelemetryBuilder::new("t").filter("info"));
    let _default = tracing::dispatcher::set_default(&dispatch);
    let client = ClientTraceLayer::new()
        .level(tracing::Level::DEBUG)
        .layer(echo_traceparent());
    let outer = tracing::info_span!("outer");
    assert!(!outer.is_disabled());
    let outer_ids = SpanIds::of(&outer).expect("ids");
    let req = Request::get("http://backend/x")
        .body(String::new())
        .unwrap();
    let res = client.oneshot(req).instrument(outer.clone()).await.unwrap();
    let sent = body_of(res).await;
    let tp = parse_traceparent(&sent).unwrap();
    assert_eq!(tp.trace_id, outer_ids.trace_id);
    assert_eq!(tp.parent_id, outer_ids.span_id);
}

#[tokio::test(flavor = "current_thread")]
async fn text_logs_without_opentelemetry_show_ids_and_span_fields() {
    let (dispatch, _guard, logs) = telemetry(
        TelemetryBuilder::new("t")
            .opentelemetry(false)
            .format(LogFormat::Text),
    );
    let _default = tracing::dispatcher::set_default(&dispatch);
    let server = ServerTraceLayer::new()
        .classify_route(|_: &Request<String>| Some(Route::from_static("/tasks/{id}")))
        .layer(echo_traceparent());
    let req = Request::get("/tasks/1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(String::new())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    body_of(res).await;
    let text = logs.text();
    assert!(
        text.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        "{text}"
    );
    assert!(text.contains("http.route=\"/tasks/{id}\""), "{text}");
    assert!(text.contains("inner"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn service_errors_are_recorded_and_passed_on() {
    let (dispatch, _guard, logs) = telemetry(TelemetryBuilder::new("t").opentelemetry(false));
    let _default = tracing::dispatcher::set_default(&dispatch);
    let failing = service_fn(|_: Request<String>| async {
        Err::<Response<String>, _>(io::Error::other("backend down"))
    });
    let client = ClientTraceLayer::new()
        .log_responses(tracing::Level::WARN)
        .layer(failing);
    let req = Request::get("http://backend/x")
        .body(String::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    let text = logs.text();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["message"], "failed");
    assert_eq!(line["error"], "backend down");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["trace_id"].as_str().unwrap().len(), 32);
}

#[test]
fn json_lines_escape_hostile_field_values() {
    let (dispatch, _guard, logs) = telemetry(TelemetryBuilder::new("t"));
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("s", request_id = "id\"\n{");
        span.in_scope(|| {
            tracing::info!(
                level = "fake",
                weird = "a\u{0}b\r\n",
                n = 1.5f64,
                nan = f64::NAN,
                "msg \"quoted\""
            );
        });
    });
    let text = logs.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["message"], "msg \"quoted\"");
    assert_eq!(line["request_id"], "id\"\n{");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields.level"], "fake");
    assert_eq!(line["weird"], "a\u{0}b\r\n");
    assert_eq!(line["n"], 1.5);
    assert_eq!(line["nan"], "NaN");
    assert_eq!(line["span"], "s");
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        "[ -~]{0,120}".prop_map(String::into_bytes),
        Just(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the headers and URI, a request goes through both layers (with OpenTelemetry
    /// sampling everything and every header allow-listed) and gets its response.
    #[test]
    fn no_header_input_breaks_a_request(
        values in proptest::collection::vec(header_bytes(), 6),
        path in "/[a-zA-Z0-9/%._~-]{0,40}",
        query in proptest::option::of("[a-zA-Z0-9=&%._~-]{0,40}"),
    ) {
        let (dispatch, _guard, _logs) = telemetry(TelemetryBuilder::new("t"));
        let _default = tracing::dispatcher::set_default(&dispatch);
        let names = ["traceparent", "tracestate", "baggage", "host", "user-agent", "x-anything"];
        let uri = match &query {
            Some(q) => format!("http://u:p@h:1{path}?{q}"),
            None => format!("http://h{path}"),
        };
        let mut req = Request::get(uri).body(String::new()).unwrap();
        for (name, bytes) in names.iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                req.headers_mut().append(*name, value);
            }
        }
        let allow = names.iter().map(|n| http::HeaderName::from_static(n));
        let svc = ServerTraceLayer::new()
            .record_request_headers(allow.clone())
            .layer(ClientTraceLayer::new().record_request_headers(allow).layer(echo_traceparent()));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let sent = runtime.block_on(async { body_of(svc.oneshot(req).await.unwrap()).await });
        // The client always sends a well-formed parent.
        prop_assert!(parse_traceparent(&sent).is_some(), "{sent:?}");
    }
}
