use std::{
    borrow::Cow,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Array, InstrumentationScope, KeyValue, StringValue, Value,
    trace::{Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::{
    common::tonic::ResourceAttributesWithSchema, trace::tonic::group_spans_by_resource_and_scope,
};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanEvents, SpanLinks},
};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

fn span(n: u64, scope: &InstrumentationScope) -> SpanData {
    let sampled = TraceFlags::SAMPLED;
    let mut events = SpanEvents::default();
    let mut links = SpanLinks::default();
    if n % 2 == 1 {
        events.events.push(Event::new(
            "tool call finished",
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n),
            vec![
                KeyValue::new("level", "INFO"),
                KeyValue::new("duration_ms", 1.25),
                KeyValue::new("ok", true),
            ],
            2,
        ));
        events
            .events
            .push(Event::new("", SystemTime::UNIX_EPOCH, vec![], 0));
        events.dropped_count = 1;
        links.links.push(Link::new(
            SpanContext::new(
                TraceId::from(0xabcdef_u128),
                SpanId::from(0x1234_u64),
                TraceFlags::default(),
                true,
                TraceState::from_key_value([("vendor", "x")]).unwrap(),
            ),
            vec![KeyValue::new("link.kind", "follows")],
            0,
        ));
    }
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128 + u128::from(n)),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64 + n),
            sampled,
            false,
            if n == 3 {
                TraceState::from_key_value([("k", "v"), ("k2", "v2")]).unwrap()
            } else {
                TraceState::default()
            },
        ),
        parent_span_id: if n == 0 {
            SpanId::INVALID
        } else {
            SpanId::from(n)
        },
        parent_span_is_remote: n == 1,
        span_kind: [
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Internal,
            SpanKind::Producer,
            SpanKind::Consumer,
        ][(n % 5) as usize]
            .clone(),
        name: if n == 4 {
            Cow::Borrowed("")
        } else {
            Cow::Owned(format!("POST /mcp {n} é"))
        },
        start_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + n),
        end_time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_500_000_000 + n),
        attributes: vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", format!("/mcp/{n}")),
            KeyValue::new("server.port", 3000 + n as i64),
            KeyValue::new("negative", -7_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("empty", ""),
            KeyValue::new("", "no key"),
            KeyValue::new("ratio", 0.0),
            KeyValue::new("off", false),
            KeyValue::new(
                "http.request.header.x",
                Value::Array(Array::String(vec![StringValue::from("a"), "b".into()])),
            ),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2, 300]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![0.5, -1e300]))),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("none", Value::Array(Array::String(vec![]))),
        ],
        dropped_attributes_count: u32::try_from(n).unwrap(),
        events,
        links,
        status: match n % 3 {
            0 => Status::Unset,
            1 => Status::error("the backend failed (503)"),
            _ => Status::Ok,
        },
        instrumentation_scope: scope.clone(),
    }
}

fn reference(resource: &Resource, spans: Vec<SpanData>) -> Vec<u8> {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    }
    .encode_to_vec()
}

#[test]
fn the_bytes_are_those_of_opentelemetry_proto() {
    let ours = InstrumentationScope::builder("tower-bulwark")
        .with_version("0.1.0")
        .build();
    let theirs = InstrumentationScope::builder("other")
        .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
        .with_attributes([KeyValue::new("scope.attr", 1_i64)])
        .build();
    let resource = Resource::builder_empty()
        .with_service_name("taskman")
        .with_attribute(KeyValue::new("service.version", "1.2.3"))
        .with_schema_url([KeyValue::new("deployment.environment.name", "prod")], "s")
        .build();
    let spans: Vec<SpanData> = (0..12)
        .map(|n| span(n, if n % 4 == 3 { &theirs } else { &ours }))
        .collect();
    let encoded = encode::export_request(
        &EncodedResource::new(&resource),
        &spans.iter().collect::<Vec<_>>(),
        &EncodedScope::default(),
        &[],
    );
    assert_eq!(encoded, reference(&resource, spans.clone()));
    // And what a collector decodes is what was sent.
    let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
    let scope_spans = &decoded.resource_spans[0].scope_spans;
    assert_eq!(scope_spans.len(), 2);
    assert_eq!(scope_spans[0].spans.len(), 9);
    assert_eq!(scope_spans[1].spans[0].name, "POST /mcp 3 é");

    // No spans, an empty resource.
    let empty = Resource::builder_empty().build();
    assert_eq!(
        encode::export_request(
            &EncodedResource::new(&empty),
            &[],
            &EncodedScope::default(),
            &[]
        ),
        reference(&empty, Vec::new())
    );
    let one = vec![span(0, &ours)];
    assert_eq!(
        encode::export_request(
            &EncodedResource::new(&empty),
            &one.iter().collect::<Vec<_>>(),
            &EncodedScope::default(),
            &[],
        ),
        reference(&empty, one.clone())
    );
}

/// The `Span` message opentelemetry-proto makes of `span`.
fn reference_span(span: &SpanData) -> opentelemetry_proto::tonic::trace::v1::Span {
    let resource = Resource::builder_empty().build();
    let request =
        ExportTraceServiceRequest::decode(reference(&resource, vec![span.clone()]).as_slice())
            .unwrap();
    request.resource_spans[0].scope_spans[0].spans[0].clone()
}

/// `span` made again as an [`EncodedSpan`], through the `Span` API.
fn replayed(span: &SpanData) -> Vec<u8> {
    use opentelemetry::trace::Span as _;
    let mut encoded = span::EncodedSpan::unqueued(
        span.span_context.clone(),
        span.parent_span_id,
        span.parent_span_is_remote,
        "to be renamed".into(),
        span.span_kind.clone(),
        span.start_time,
    );
    for (n, kv) in span.attributes.iter().enumerate() {
        match &kv.value {
            // Both ways in for strings.
            Value::String(s) if n % 2 == 0 => {
                encoded.set_str_attribute(kv.key.as_str(), s.as_str())
            }
            _ => encoded.set_attribute(kv.clone()),
        }
    }
    for event in span.events.iter() {
        encoded.add_event_with_timestamp(
            event.name.clone(),
            event.timestamp,
            event.attributes.clone(),
        );
    }
    for link in span.links.iter() {
        encoded.add_link(link.span_context.clone(), link.attributes.clone());
    }
    encoded.update_name(span.name.clone());
    encoded.set_status(Status::Unset);
    encoded.set_status(span.status.clone());
    encoded.into_message(span.end_time)
}

#[test]
fn encoded_spans_decode_to_the_sdk_spans() {
    let scope = InstrumentationScope::builder("tower-bulwark").build();
    for n in 0..6 {
        let mut span = span(n, &scope);
        // Over-limit counts come from the limits, tested below.
        span.dropped_attributes_count = 0;
        span.events.dropped_count = 0;
        for event in &mut span.events.events {
            event.dropped_attributes_count = 0;
        }
        let bytes = replayed(&span);
        let decoded =
            opentelemetry_proto::tonic::trace::v1::Span::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, reference_span(&span), "span {n}");
    }

    // In a request: their own `ScopeSpans`, after the SDK's spans.
    let resource = Resource::builder_empty()
        .with_service_name("taskman")
        .build();
    let sdk = span(2, &InstrumentationScope::builder("other").build());
    let encoded = replayed(&span(0, &scope));
    let request = encode::export_request(
        &EncodedResource::new(&resource),
        &[&sdk],
        &EncodedScope::new(&scope),
        &[&encoded, &encoded],
    );
    let decoded = ExportTraceServiceRequest::decode(request.as_slice()).unwrap();
    let scope_spans = &decoded.resource_spans[0].scope_spans;
    assert_eq!(scope_spans.len(), 2);
    assert_eq!(scope_spans[0].scope.as_ref().unwrap().name, "other");
    assert_eq!(scope_spans[1].scope.as_ref().unwrap().name, "tower-bulwark");
    assert_eq!(scope_spans[1].spans.len(), 2);
    assert_eq!(scope_spans[1].spans[0], reference_span(&span(0, &scope)));
}

#[test]
fn encoded_spans_keep_the_sdk_limits_and_status_order() {
    use opentelemetry::trace::Span as _;
    let mut encoded = span::EncodedSpan::unqueued(
        SpanContext::new(
            TraceId::from(1_u128),
            SpanId::from(2_u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        SpanId::INVALID,
        false,
        "limits".into(),
        SpanKind::Internal,
        SystemTime::now(),
    );
    for n in 0..130 {
        encoded.set_attribute(KeyValue::new("n", n));
        encoded.set_str_attribute("s", "x");
    }
    let many: Vec<KeyValue> = (0..130).map(|n| KeyValue::new("a", n)).collect();
    for _ in 0..130 {
        encoded.add_event("e", many.clone());
        encoded.add_link(SpanContext::empty_context(), many.clone());
    }
    encoded.set_status(Status::error("first"));
    encoded.set_status(Status::Unset);
    let error = opentelemetry_proto::tonic::trace::v1::Span::decode(
        encoded.into_message(SystemTime::now()).as_slice(),
    )
    .unwrap();
    assert_eq!(error.attributes.len(), 128);
    assert_eq!(error.dropped_attributes_count, 260 - 128);
    assert_eq!(error.events.len(), 128);
    assert_eq!(error.dropped_events_count, 2);
    assert_eq!(error.events[0].attributes.len(), 128);
    assert_eq!(error.events[0].dropped_attributes_count, 2);
    assert_eq!(error.links.len(), 128);
    assert_eq!(error.dropped_links_count, 2);
    assert_eq!(error.links[0].dropped_attributes_count, 2);
    let status = error.status.unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "first"));

    let mut ok = span::EncodedSpan::unqueued(
        SpanContext::empty_context(),
        SpanId::INVALID,
        false,
        "ok".into(),
        SpanKind::Internal,
        SystemTime::now(),
    );
    ok.set_status(Status::Ok);
    ok.set_status(Status::error("later"));
    let ok = opentelemetry_proto::tonic::trace::v1::Span::decode(
        ok.into_message(SystemTime::now()).as_slice(),
    )
    .unwrap();
    assert_eq!(ok.status.unwrap().code, 1, "ok wins over a later error");
}

#[test]
fn batches_are_added_whole_or_up_to_the_limit() {
    use opentelemetry::trace::Span as _;
    let mut encoded = span::EncodedSpan::unqueued(
        SpanContext::empty_context(),
        SpanId::INVALID,
        false,
        "before".into(),
        SpanKind::Server,
        SystemTime::now(),
    );
    for n in 0..120 {
        encoded.set_attribute(KeyValue::new("early", n));
    }
    let mut batch = span::AttributeBatch::with_capacity(16);
    batch.str("short", "x");
    batch.str("long", &"y".repeat(300));
    batch.i64("port", 3000);
    batch.attribute(&KeyValue::new("list", Value::Array(Array::I64(vec![1, 2]))));
    for n in 0..8 {
        batch.i64("late", n);
    }
    batch.name("GET /tasks");
    batch.status(Status::error("boom"));
    encoded.append(batch);
    let mut whole = span::AttributeBatch::default();
    whole.str("after the limit", "dropped");
    encoded.append(whole);
    let decoded = opentelemetry_proto::tonic::trace::v1::Span::decode(
        encoded.into_message(SystemTime::now()).as_slice(),
    )
    .unwrap();
    assert_eq!(decoded.name, "GET /tasks");
    assert_eq!(decoded.status.unwrap().message, "boom");
    assert_eq!(decoded.attributes.len(), 128);
    assert_eq!(decoded.dropped_attributes_count, 12 - 8 + 1);
    let keys: Vec<&str> = decoded.attributes[120..]
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "short", "long", "port", "list", "late", "late", "late", "late"
        ]
    );
    let long = decoded.attributes[121].value.as_ref().unwrap();
    assert_eq!(
        long.value,
        Some(
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("y".repeat(300))
        )
    );
}

#[test]
fn heads_are_parsed() {
    let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n").unwrap();
    assert_eq!((head.status, head.keep_alive), (200, true));
    assert_eq!(head.framing, Framing::Length(2));
    let head = parse_head(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nconnection: close\r\n\
          transfer-encoding: gzip, chunked\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.status, 503);
    assert!(!head.keep_alive);
    assert_eq!(head.framing, Framing::Chunked);
    assert_eq!(head.retry_after, Some(Duration::from_secs(2)));
    let head = parse_head(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap();
    assert_eq!((head.framing, head.keep_alive), (Framing::None, false));
    let head = parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert_eq!((head.framing, head.keep_alive), (Framing::UntilClose, true));
    assert!(parse_head(b"garbage\r\n\r\n").is_err());
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
}

#[test]
fn headers_come_from_the_environment_syntax() {
    let headers = parse_headers("api-key=s3cret, x-tenant = a%20b,bad header=1,novalue");
    let shown: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        shown,
        [
            ("api-key".to_owned(), "s3cret".to_owned()),
            ("x-tenant".to_owned(), "a b".to_owned())
        ]
    );
}

#[test]
fn only_plain_http_endpoints_are_accepted() {
    assert!(OtlpHttpExporter::with_headers("https://collector:4318/v1/traces", "").is_err());
    assert!(OtlpHttpExporter::with_headers("collector:4318", "").is_err());
    let exporter = OtlpHttpExporter::with_headers("http://u:p@collector/v1/traces", "").unwrap();
    assert_eq!(exporter.endpoint.address, "collector:80");
    assert_eq!(exporter.endpoint.authority, "collector");
    assert_eq!(exporter.endpoint.path_and_query, "/v1/traces");
}

/// Each request's head and body, as the collector received them.
type Received = Arc<StdMutex<Vec<(String, Vec<u8>)>>>;

/// A collector on loopback that answers each request with the next of `answers` (raw
/// HTTP), recording each request's head and body.
struct Collector {
    url: String,
    requests: Received,
    connections: Arc<StdMutex<usize>>,
}

async fn collector(answers: Vec<&'static str>) -> Collector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let requests = Arc::new(StdMutex::new(Vec::new()));
    let connections = Arc::new(StdMutex::new(0));
    let (seen, count) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            *count.lock().unwrap() += 1;
            // Requests on this connection until it is closed.
            loop {
                let mut buffer = Vec::new();
                let head_end = loop {
                    if let Some(end) = find(&buffer, b"\r\n\r\n") {
                        break end + 4;
                    }
                    let mut chunk = [0; 4096];
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break 0;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                };
                if head_end == 0 {
                    break;
                }
                let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                let mut body = buffer[head_end..].to_vec();
                while body.len() < length {
                    let mut chunk = [0; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk[..n]);
                }
                seen.lock().unwrap().push((head, body));
                let answer = answers
                    .next()
                    .unwrap_or("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                stream.write_all(answer.as_bytes()).await.unwrap();
                if answer.contains("close") {
                    break;
                }
            }
        }
    });
    Collector {
        url,
        requests,
        connections,
    }
}

fn exporter(url: &str) -> OtlpHttpExporter {
    let mut exporter = OtlpHttpExporter::with_headers(url, "authorization=Bearer%20t").unwrap();
    exporter.set_resource(&Resource::builder_empty().with_service_name("s").build());
    exporter
}

fn batch() -> Vec<Queued> {
    vec![Queued::Data(Box::new(span(
        0,
        &InstrumentationScope::builder("t").build(),
    )))]
}

#[tokio::test]
async fn exports_reuse_the_connection_and_read_every_framing() {
    let collector = collector(vec![
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
    ])
    .await;
    let exporter = exporter(&collector.url);
    for _ in 0..4 {
        exporter.export(batch()).await.unwrap();
    }
    let requests = collector.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 4);
    let (head, body) = &requests[0];
    assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf\r\n"),
        "{head}"
    );
    assert!(head.contains("authorization: Bearer t\r\n"), "{head}");
    let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 1);
    // Kept alive through the first three, a new connection after the `close`.
    assert_eq!(*collector.connections.lock().unwrap(), 2);
}

#[tokio::test]
async fn retryable_failures_are_retried_and_others_are_not() {
    let collector = collector(vec![
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nnope!",
    ])
    .await;
    let exporter = exporter(&collector.url);
    exporter.export(batch()).await.unwrap();
    assert_eq!(collector.requests.lock().unwrap().len(), 3);
    let error = exporter.export(batch()).await.unwrap_err().to_string();
    assert!(error.contains("HTTP status 400"), "{error}");
    assert_eq!(collector.requests.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_collector_that_is_gone_fails_after_the_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    drop(listener);
    let error = exporter(&url)
        .export(batch())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&url), "{error}");
}
