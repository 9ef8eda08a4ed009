//! End-to-end request IDs over real HTTP on 127.0.0.1: a client calls an axum "front" server
//! whose handler calls a "backend" server through hyper-util's client, each hop wrapped in
//! this crate's layers; log lines are captured as JSON and checked line by line.
#![cfg(feature = "request-id")]

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension, Json, Router,
    extract::{Query, State},
    http::HeaderMap,
    routing::get,
};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_bulwark::request_id::{
    PropagateRequestId, PropagateRequestIdLayer, RequestId, RequestIdLayer, in_current_scope,
};
use tower_layer::Layer as _;
use tracing::Instrument as _;

/// Everything a test may take, end to end; a hung server fails the test instead of CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

// ===== log capture =====

/// A `MakeWriter` into one in-memory buffer shared by the whole test binary.
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

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    /// Every captured line whose `tag` field starts with `prefix`, parsed.
    fn lines_tagged(&self, prefix: &str) -> Vec<Value> {
        let buf = self.0.lock().unwrap();
        std::str::from_utf8(&buf)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|v| {
                v["fields"]["tag"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The binary-wide JSON subscriber (global, so every runtime worker thread writes to it).
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            // This binary's events and the layer's spans; nothing from hyper or axum.
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "request_id=info,tower_bulwark=info",
            ))
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

/// The `request_id` every span of a log line carries; `None` if a span lacks it, or if two
/// spans disagree.
fn line_request_id(line: &Value) -> Option<String> {
    let spans = line["spans"].as_array()?;
    let mut ids = spans.iter().map(|s| s["request_id"].as_str());
    let first = ids.next()??;
    ids.all(|id| id == Some(first)).then(|| first.to_owned())
}

// ===== servers =====

/// Serves `app` on a fresh 127.0.0.1 port.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(serde::Deserialize)]
struct Tag {
    tag: String,
}

/// Spreads requests over a few milliseconds so that many are in flight, and interleaved, at
/// once.
fn jitter(tag: &str) -> Duration {
    let n: u64 = tag.bytes().map(u64::from).sum();
    Duration::from_millis(n % 7)
}

/// The backend: answers with the ID header it received and what `RequestId::current` said.
async fn backend(Query(Tag { tag }): Query<Tag>, headers: HeaderMap) -> Json<Value> {
    tracing::info!(tag, "backend");
    tokio::time::sleep(jitter(&tag)).await;
    let received: Vec<String> = headers
        .get_all("x-request-id")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Json(json!({
        "received": received,
        "current": RequestId::current().map(|id| id.to_string()),
    }))
}

#[derive(Clone)]
struct Front {
    client: PropagateRequestId<HttpClient>,
    backend: SocketAddr,
    load: Load,
}

/// How many front requests are being served at once, and the most there were.
#[derive(Clone, Default)]
struct Load {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Load {
    fn enter(&self) -> LoadGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        LoadGuard(self.now.clone())
    }
}

struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The front: reports the ID as seen from every place a handler can look, and from the
/// backend it calls.
async fn front(
    State(front): State<Front>,
    Query(Tag { tag }): Query<Tag>,
    Extension(extension): Extension<RequestId>,
) -> Result<Json<Value>, StatusCode> {
    let _load = front.load.enter();
    tracing::info!(tag, "front: start");
    let current = RequestId::current();

    let spawned = {
        let tag = tag.clone();
        tokio::spawn(
            in_current_scope(async move {
                tokio::time::sleep(jitter(&tag)).await;
                tracing::info!(tag, "front: spawned");
                RequestId::current()
            })
            .in_current_span(),
        )
    };
    // A plain spawn does not inherit the scope: that is what `in_current_scope` is for.
    let plain = tokio::spawn(async { RequestId::current() });

    let uri = format!("http://{}/echo?tag={tag}", front.backend);
    let req = Request::get(uri).body(Empty::new()).unwrap();
    let res = front
        .client
        .clone()
        .oneshot(req)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let from_backend: Value = serde_json::from_slice(&body).unwrap();

    let spawned = spawned.await.unwrap();
    let plain = plain.await.unwrap();
    tracing::info!(tag, "front: done");
    Ok(Json(json!({
        "tag": tag,
        "current": current.map(|id| id.to_string()),
        "extension": extension.to_string(),
        "spawned": spawned.map(|id| id.to_string()),
        "plain_spawn": plain.map(|id| id.to_string()),
        "backend": from_backend,
    })))
}

/// Starts the backend and the front; returns the front's address and load.
async fn start_servers() -> (SocketAddr, Load) {
    let backend = serve(
        Router::new()
            .route("/echo", get(backend))
            .layer(RequestIdLayer::new().with_span()),
    )
    .await;
    let client = PropagateRequestIdLayer::new().layer(http_client());
    let load = Load::default();
    let front = serve(
        Router::new()
            .route("/work", get(front))
            .with_state(Front {
                client,
                backend,
                load: load.clone(),
            })
            .layer(RequestIdLayer::new().with_span()),
    )
    .await;
    (front, load)
}

// ===== the client side of a test =====

/// What one request sends as its ID.
#[derive(Clone, Debug)]
enum Sent {
    Valid(String),
    Unsafe(Vec<u8>),
    None,
}

struct Outcome {
    tag: String,
    sent: Sent,
    /// The ID on the response.
    id: String,
    body: Value,
}

async fn call(client: &HttpClient, front: SocketAddr, tag: String, sent: Sent) -> Outcome {
    let mut req = Request::get(format!("http://{front}/work?tag={tag}"));
    match &sent {
        Sent::Valid(id) => req = req.header("x-request-id", id.as_str()),
        Sent::Unsafe(raw) => {
            req = req.header("x-request-id", HeaderValue::from_bytes(raw).unwrap());
        }
        Sent::None => {}
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{tag}");
    let ids: Vec<_> = res.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{tag}: {ids:?}");
    let id = ids[0].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    Outcome {
        tag,
        sent,
        id,
        body,
    }
}

/// Checks one outcome: the ID is the sent one exactly when that was safe, and it is the ID
/// everywhere the front and the backend looked.
fn check(o: &Outcome) {
    let tag = &o.tag;
    match &o.sent {
        Sent::Valid(sent) => assert_eq!(&o.id, sent, "{tag}: a safe ID is kept"),
        Sent::Unsafe(_) | Sent::None => {
            let uuid = uuid::Uuid::parse_str(&o.id).unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert_eq!(uuid.get_version_num(), 4, "{tag}");
        }
    }
    let b = &o.body;
    assert_eq!(b["tag"], tag.as_str());
    assert_eq!(b["current"], o.id.as_str(), "{tag}: RequestId::current()");
    assert_eq!(b["extension"], o.id.as_str(), "{tag}: Extension<RequestId>");
    assert_eq!(b["spawned"], o.id.as_str(), "{tag}: in_current_scope");
    assert_eq!(b["plain_spawn"], Value::Null, "{tag}: plain tokio::spawn");
    assert_eq!(
        b["backend"]["received"],
        json!([o.id]),
        "{tag}: sent to the backend"
    );
    assert_eq!(b["backend"]["current"], o.id.as_str(), "{tag}: backend");
    if let Sent::Unsafe(raw) = &o.sent {
        let raw = String::from_utf8_lossy(raw);
        assert!(
            !b.to_string().contains(raw.as_ref()),
            "{tag}: unsafe input reflected"
        );
    }
}

/// Checks that the logs hold exactly the four expected lines per outcome (front start,
/// spawned task, backend, front done), each carrying that request's ID and no other.
fn check_logs(prefix: &str, outcomes: &[Outcome]) {
    let expected: HashMap<&str, &str> = outcomes
        .iter()
        .map(|o| (o.tag.as_str(), o.id.as_str()))
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for line in logs().lines_tagged(prefix) {
        let tag = line["fields"]["tag"].as_str().unwrap();
        let (tag, id) = expected
            .get_key_value(tag)
            .unwrap_or_else(|| panic!("unexpected tag {tag}"));
        assert_eq!(
            line_request_id(&line).as_deref(),
            Some(*id),
            "{tag}: log line without its request's ID: {line}"
        );
        *count.entry(tag).or_default() += 1;
    }
    for o in outcomes {
        assert_eq!(count.get(o.tag.as_str()), Some(&4), "{}: log lines", o.tag);
    }
}

fn unsafe_id(i: usize) -> Vec<u8> {
    match i % 5 {
        0 => format!("has space {i}").into_bytes(),
        1 => format!("<script>{i}</script>").into_bytes(),
        2 => format!("quote\"{i}").into_bytes(),
        3 => {
            let mut long = format!("long{i}-").into_bytes();
            long.resize(129, b'x');
            long
        }
        _ => format!("caf\u{e9}-{i}").into_bytes(),
    }
}

// ===== tests =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_end_to_end_over_http() {
    let logs = logs();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (front, _) = start_servers().await;
        let client = http_client();
        let cases = [
            Sent::Valid("e2e-client-id:1@edge".to_owned()),
            Sent::Unsafe(b"e2e <unsafe> id".to_vec()),
            Sent::Unsafe(b"e2e\"quote".to_vec()),
            Sent::None,
        ];
        let mut outcomes = Vec::new();
        for (i, sent) in cases.into_iter().enumerate() {
            let o = call(&client, front, format!("e2e-{i}"), sent).await;
            check(&o);
            outcomes.push(o);
        }
        check_logs("e2e-", &outcomes);
        // The unsafe inputs never reach a log line.
        let text = logs.text();
        assert!(!text.contains("<unsafe>"));
        assert!(!text.contains("e2e\\\"quote"));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_requests_stay_isolated() {
    const REQUESTS: usize = 1_000;
    logs();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (front, load) = start_servers().await;
        let client = http_client();
        // Launch every request before awaiting any, so all 1,000 are in flight together.
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let sent = match i % 3 {
                    0 => Sent::Valid(format!("iso-{i}-{}", uuid::Uuid::new_v4())),
                    1 => Sent::Unsafe(unsafe_id(i)),
                    _ => Sent::None,
                };
                let client = client.clone();
                tokio::spawn(async move { call(&client, front, format!("iso-{i}"), sent).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(REQUESTS);
        for task in tasks {
            let o = task.await.unwrap();
            check(&o);
            outcomes.push(o);
        }
        // No two requests share an ID (so none can have seen another's).
        let ids: HashSet<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids.len(), REQUESTS);
        check_logs("iso-", &outcomes);
        // They really overlapped: hundreds were inside the front handler at once.
        let peak = load.peak.load(Ordering::SeqCst);
        assert!(peak >= 100, "only {peak} requests in flight at once");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_streamable_http_service_behind_the_layer() {
    use rmcp::{
        ServerHandler,
        transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
        },
    };

    #[derive(Clone)]
    struct Mcp;
    impl ServerHandler for Mcp {}

    tokio::time::timeout(TEST_TIMEOUT, async {
        let mcp = StreamableHttpService::new(
            || Ok(Mcp),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        );
        let front =
            serve(Router::new().nest_service("/mcp", RequestIdLayer::new().with_span().layer(mcp)))
                .await;
        let initialize = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "test", "version": "0" }
            }
        });
        let client =
            Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
        let req = Request::post(format!("http://{front}/mcp"))
            .header("x-request-id", "mcp-1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(http_body_util::Full::new(Bytes::from(
                initialize.to_string(),
            )))
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-request-id"], "mcp-1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("protocolVersion"),
            "{body:?}"
        );
    })
    .await
    .expect("test timed out");
}
