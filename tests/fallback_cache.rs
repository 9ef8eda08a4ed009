//! The fallback cache (stale-if-error): a real loopback backend that goes down, the store's
//! bounds with 100,000 keys, TTL on Tokio's paused clock, concurrency, `no-store`, and bodies
//! that fail midway.
#![cfg(feature = "fallback-cache")]

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, routing};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header::CACHE_CONTROL};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_bulwark::fallback_cache::{
    FallbackCacheHandle, FallbackCacheLayer, FreshAnswer, StaleAnswer, StaleReason,
};

const STALE: &str = "tower-bulwark; hit; detail=stale-if-error";

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// A backend that answers `200` with the path as body, or fails when `down`.
fn echo(
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = io::Error,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, SeqCst);
        let down = down.load(SeqCst);
        async move {
            if down {
                return Err(io::Error::other("backend down"));
            }
            Ok(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
        }
    })
}

async fn read<S, Q, B>(svc: &mut S, req: Request<Q>) -> Result<(Response<()>, Bytes), S::Error>
where
    S: Service<Request<Q>, Response = Response<B>>,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let res = svc.ready().await?.call(req).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Ok((Response::from_parts(parts, ()), body))
}

// ===== backend down: a real loopback server behind hyper-util's client =====

#[tokio::test(start_paused = true)]
async fn backend_down_stale_reads_with_age_unstored_reads_fail_writes_fail_and_invalidate() {
    let failing = Arc::new(AtomicBool::new(false));
    let app = {
        let failing = failing.clone();
        let tasks = move || {
            let failing = failing.load(SeqCst);
            async move {
                if failing {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (StatusCode::OK, r#"[{"id":1}]"#)
                }
            }
        };
        Router::new()
            .route(
                "/tasks",
                routing::get(tasks).post(|| async { StatusCode::CREATED }),
            )
            .route("/tasks/{id}", routing::get(|| async { r#"{"id":1}"# }))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let layer = FallbackCacheLayer::builder()
        .ttl(Duration::from_secs(600))
        .invalidate_on_write("/tasks", "/tasks")
        .build()
        .unwrap();
    let handle = layer.handle();
    // No idle connections kept: once the server stops, every call fails to connect.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let mut svc = ServiceBuilder::new().layer(layer).service(client);
    let url = |p: &str| format!("http://{addr}{p}");
    let req = |p: &str| Request::get(url(p)).body(Empty::new()).unwrap();

    let (res, body) = read(&mut svc, req("/tasks")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body, r#"[{"id":1}]"#);
    assert!(res.headers().get("cache-status").is_none());
    read(&mut svc, req("/tasks/1")).await.unwrap();
    assert_eq!(handle.len(), 2);

    // The backend answers 503: the stored answer instead, marked stale.
    failing.store(true, SeqCst);
    tokio::time::advance(Duration::from_secs(7)).await;
    let (res, body) = read(&mut svc, req("/tasks")).await.unwrap();
    assert_eq!(
        (res.status(), body.as_ref()),
        (StatusCode::OK, &br#"[{"id":1}]"#[..])
    );
    assert_eq!(res.headers()["age"], "7");
    assert_eq!(res.headers()["cache-status"], STALE);
    let stale = res.extensions().get::<StaleAnswer>().unwrap();
    assert_eq!(
        stale.reason,
        StaleReason::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(stale.age, Duration::from_secs(7));

    // The backend stops.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(35)).await;

    let (res, body) = read(&mut svc, req("/tasks/1")).await.unwrap();
    assert_eq!(
        (res.status(), body.as_ref()),
        (StatusCode::OK, &br#"{"id":1}"#[..])
    );
    assert_eq!(res.headers()["age"], "42");
    assert_eq!(res.headers()["cache-status"], STALE);
    assert_eq!(
        res.extensions().get::<StaleAnswer>().unwrap().reason,
        StaleReason::Error
    );

    // Never stored: the client's own error, untouched.
    let err = read(&mut svc, req("/tasks/2")).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // A write fails (never faked) and, its outcome unknown, invalidates /tasks and below.
    let post = Request::post(url("/tasks")).body(Empty::new()).unwrap();
    let err = svc.ready().await.unwrap().call(post).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(handle.len(), 0);
    let err = read(&mut svc, req("/tasks")).await.unwrap_err();
    assert!(err.is_connect());
    let stats = handle.stats();
    assert_eq!((stats.stale_served, stats.misses, stats.stores), (2, 2, 2));
    assert_eq!(stats.invalidations, 2);
}

// ===== bounds =====

/// Drives `n` distinct keys through `svc`, checking `check` after each.
async fn fill(
    svc: &mut (
             impl Service<
        Request<()>,
        Response = Response<impl Body<Error = Infallible>>,
        Error = io::Error,
    > + Send
         ),
    n: usize,
    check: impl Fn(),
) {
    for i in 0..n {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(get(&format!("/items/{i}?q=x")))
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
        if i % 997 == 0 {
            check();
        }
    }
    check();
}

#[tokio::test]
async fn entry_and_byte_bounds_hold_with_100_000_keys() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = echo(Arc::new(AtomicBool::new(false)), calls.clone());

    // Bounded by entries.
    let layer = FallbackCacheLayer::builder()
        .max_entries(1000)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend.clone());
    fill(&mut svc, 100_000, || assert!(h.len() <= 1000)).await;
    let s = h.stats();
    assert_eq!((s.entries, s.stores, s.evictions), (1000, 100_000, 99_000));
    let per_entry = h.bytes() / 1000;
    eprintln!(
        "entry-bound: 1000 entries, {} bytes charged, {per_entry} per entry",
        h.bytes()
    );
    // ~20-byte bodies, ~18-byte URIs, no headers: the fixed overhead dominates.
    assert!((200..1000).contains(&per_entry), "{per_entry}");

    // Bounded by bytes.
    let max_bytes = 256 * 1024;
    let layer = FallbackCacheLayer::builder()
        .max_entries(1_000_000)
        .max_bytes(max_bytes)
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);
    fill(&mut svc, 100_000, || assert!(h.bytes() <= max_bytes as u64)).await;
    let s = h.stats();
    eprintln!(
        "byte-bound: {} entries in {} of {max_bytes} bytes",
        s.entries, s.bytes
    );
    assert!(s.entries > 100 && s.entries < 2000, "{s:?}");
    assert_eq!(s.stores - s.evictions, s.entries);
    assert!(
        s.bytes + per_entry * 2 > max_bytes as u64,
        "the budget is used: {s:?}"
    );
    // Everything evicted and then cleared: the store gives its memory back.
    assert_eq!(h.clear() as u64, s.entries);
    assert_eq!((h.len(), h.bytes()), (0, 0));
    assert_eq!(calls.load(SeqCst), 200_000);
}

/// The process's resident memory in bytes (`VmRSS` in `/proc/self/status`), where there is one.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The byte bound holds in real memory, not only in the store's own accounting: filling a
/// store bounded to 8 MiB with 100,000 distinct 1 KiB answers (about 130 MB unbounded) grows
/// the process's resident memory by a small multiple of the bound at most.
#[tokio::test]
async fn byte_bound_holds_in_resident_memory_with_100_000_keys() {
    const KEYS: usize = 100_000;
    const BODY: usize = 1024;
    let Some(before) = resident_bytes() else {
        eprintln!("no /proc/self/status: resident memory not measured");
        return;
    };
    let max_bytes = 8 << 20;
    let layer = FallbackCacheLayer::builder()
        .max_entries(1_000_000)
        .max_bytes(max_bytes)
        .build()
        .unwrap();
    let h = layer.handle();
    // A static body: the store copies each answer into memory of its own, which is what is
    // measured.
    static ANSWER: [u8; BODY] = [b'.'; BODY];
    let backend = service_fn(|_: Request<()>| async {
        Ok::<_, io::Error>(Response::new(Full::new(Bytes::from_static(&ANSWER))))
    });
    let mut svc = layer.layer_service(backend);
    let started = std::time::Instant::now();
    fill(&mut svc, KEYS, || assert!(h.bytes() <= max_bytes as u64)).await;
    let elapsed = started.elapsed();
    let after = resident_bytes().unwrap();
    let s = h.stats();
    let grown = after.saturating_sub(before);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "resident memory: {:.1} MiB before, {:.1} MiB after {KEYS} keys ({elapsed:?}): grown \
         {:.1} MiB for {} entries charged {:.1} MiB of the {:.0} MiB bound ({:.2}x the charge)",
        mib(before),
        mib(after),
        mib(grown),
        s.entries,
        mib(s.bytes),
        mib(max_bytes as u64),
        grown as f64 / s.bytes as f64,
    );
    assert_eq!((s.stores, s.stores - s.evictions), (KEYS as u64, s.entries));
    assert!(
        s.bytes > max_bytes as u64 * 9 / 10,
        "the bound is reached: {s:?}"
    );
    // Unbounded, these answers would take over 100 MiB: the bound holds in real memory
    // (with room for allocator slack and the other tests of this binary running alongside).
    assert!(
        grown < 4 * max_bytes as u64 + (4 << 20),
        "resident memory grew by {grown} bytes"
    );
    drop(svc);
}

trait LayerService<S> {
    type Service;
    fn layer_service(&self, inner: S) -> Self::Service;
}
impl<S, L: tower::Layer<S>> LayerService<S> for L {
    type Service = L::Service;
    fn layer_service(&self, inner: S) -> L::Service {
        self.layer(inner)
    }
}

// ===== TTL on the paused clock =====

#[tokio::test(start_paused = true)]
async fn ttl_bounds_the_age_of_stale_answers() {
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::builder()
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer_service(echo(down.clone(), Arc::default()));
    read(&mut svc, get("/a")).await.unwrap();
    down.store(true, SeqCst);

    tokio::time::advance(Duration::from_secs(60)).await;
    let (res, _) = read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(res.headers()["age"], "60");

    tokio::time::advance(Duration::from_millis(1)).await;
    let err = read(&mut svc, get("/a")).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    let s = h.stats();
    assert_eq!(
        (s.stale_served, s.misses, s.expirations, s.entries),
        (1, 1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn ttl_counts_the_age_the_answer_arrived_with() {
    let down = Arc::new(AtomicBool::new(false));
    let backend = {
        let down = down.clone();
        service_fn(move |_req: Request<()>| {
            let down = down.load(SeqCst);
            async move {
                if down {
                    return Err(io::Error::other("down"));
                }
                Ok(Response::builder()
                    .header("age", "50")
                    .body(Full::new(Bytes::from_static(b"x")))
                    .unwrap())
            }
        })
    };
    let layer = FallbackCacheLayer::builder()
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer_service(backend);
    read(&mut svc, get("/a")).await.unwrap();
    down.store(true, SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    let (res, _) = read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(res.headers()["age"], "60");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(read(&mut svc, get("/a")).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn fresh_mode_answers_young_entries_without_asking() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = FallbackCacheLayer::builder()
        .fresh_ttl(Duration::from_secs(10))
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer_service(echo(Arc::default(), calls.clone()));
    read(&mut svc, get("/a")).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    let (res, body) = read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(body, "/a");
    assert_eq!(res.headers()["cache-status"], "tower-bulwark; hit");
    assert_eq!(res.headers()["age"], "10");
    assert_eq!(
        res.extensions().get::<FreshAnswer>().unwrap().age,
        Duration::from_secs(10)
    );
    // `no-cache` on the request: always asked.
    let req = Request::get("/a")
        .header(CACHE_CONTROL, "no-cache")
        .body(())
        .unwrap();
    read(&mut svc, req).await.unwrap();
    assert_eq!(calls.load(SeqCst), 2);
    // Past the fresh TTL: asked again.
    tokio::time::advance(Duration::from_secs(11)).await;
    read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3);
}

// ===== concurrency =====

#[tokio::test(start_paused = true)]
async fn concurrent_requests_for_one_key_keep_the_latest_answer() {
    // Request n answers "n" after (50 - n) ms: the last to start finishes first.
    let started = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let backend = {
        let (started, down) = (started.clone(), down.clone());
        service_fn(move |_req: Request<()>| {
            let n = started.fetch_add(1, SeqCst);
            let down = down.load(SeqCst);
            async move {
                if down {
                    return Err(io::Error::other("down"));
                }
                tokio::time::sleep(Duration::from_millis(50 - n as u64)).await;
                Ok(Response::new(Full::new(Bytes::from(n.to_string()))))
            }
        })
    };
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let fut = svc.ready().await.unwrap().call(get("/same"));
        tasks.spawn(async move {
            let res = fut.await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        });
    }
    let mut bodies = Vec::new();
    while let Some(body) = tasks.join_next().await {
        bodies.push(body.unwrap());
    }
    assert_eq!(bodies.len(), 50);
    assert_eq!(h.len(), 1);
    // Only the first to finish (the last to start) was stored; older answers were refused.
    assert_eq!(h.stats().stores, 1);
    down.store(true, SeqCst);
    let (_, body) = read(&mut svc, get("/same")).await.unwrap();
    assert_eq!(body, "49");
}

#[tokio::test(start_paused = true)]
async fn a_read_in_flight_during_a_write_is_not_stored() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let backend = {
        let gate = gate.clone();
        service_fn(move |req: Request<()>| {
            let gate = gate.clone();
            async move {
                if req.method() == http::Method::GET {
                    gate.notified().await;
                }
                Ok::<_, io::Error>(Response::new(Full::new(Bytes::from_static(b"old"))))
            }
        })
    };
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);
    let slow = svc.ready().await.unwrap().call(get("/slow"));
    let slow =
        tokio::spawn(async move { slow.await.unwrap().into_body().collect().await.unwrap() });
    tokio::task::yield_now().await;
    let put = Request::put("/slow").body(()).unwrap();
    svc.ready().await.unwrap().call(put).await.unwrap();
    gate.notify_one();
    slow.await.unwrap();
    assert_eq!(h.len(), 0, "the answer may predate the write");
}

// ===== what is never stored =====

#[tokio::test]
async fn no_store_private_and_authorization_are_honoured() {
    let cc = Arc::new(std::sync::Mutex::new(None::<&'static str>));
    let backend = {
        let cc = cc.clone();
        service_fn(move |_req: Request<()>| {
            let cc = *cc.lock().unwrap();
            async move {
                let mut res = Response::builder();
                if let Some(v) = cc {
                    res = res.header(CACHE_CONTROL, v);
                }
                Ok::<_, io::Error>(res.body(Full::new(Bytes::from_static(b"x"))).unwrap())
            }
        })
    };
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);

    for v in [
        "no-store",
        "private",
        "max-age=0, must-revalidate",
        "no-cache",
    ] {
        *cc.lock().unwrap() = Some(v);
        read(&mut svc, get("/a")).await.unwrap();
        assert_eq!(h.len(), 0, "{v}");
    }
    // Storable, then a newer `no-store` answer removes the older entry.
    *cc.lock().unwrap() = Some("max-age=60");
    read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(h.len(), 1);
    *cc.lock().unwrap() = Some("no-store");
    read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(h.len(), 0);

    // The request's own `no-store`.
    *cc.lock().unwrap() = None;
    let req = Request::get("/b")
        .header(CACHE_CONTROL, "no-store")
        .body(())
        .unwrap();
    read(&mut svc, req).await.unwrap();
    assert_eq!(h.len(), 0);

    // `Authorization` is bypassed unless keyed.
    let req = Request::get("/c")
        .header("authorization", "Bearer t")
        .body(())
        .unwrap();
    read(&mut svc, req).await.unwrap();
    assert_eq!(h.len(), 0);
    // Writes are never stored.
    let req = Request::post("/c").body(()).unwrap();
    read(&mut svc, req).await.unwrap();
    assert_eq!((h.len(), h.stats().stores), (0, 1));
}

#[tokio::test]
async fn keyed_authorization_stores_per_credential() {
    let down = Arc::new(AtomicBool::new(false));
    let backend = {
        let down = down.clone();
        service_fn(move |req: Request<()>| {
            let down = down.load(SeqCst);
            let user = req.headers()["authorization"].to_str().unwrap().to_owned();
            async move {
                if down {
                    return Err(io::Error::other("down"));
                }
                Ok(Response::new(Full::new(Bytes::from(user))))
            }
        })
    };
    let layer = FallbackCacheLayer::builder()
        .key_headers([http::header::AUTHORIZATION])
        .build()
        .unwrap();
    let mut svc = layer.layer_service(backend);
    let as_user = |u: &str| {
        Request::get("/me")
            .header("authorization", u)
            .body(())
            .unwrap()
    };
    read(&mut svc, as_user("a")).await.unwrap();
    read(&mut svc, as_user("b")).await.unwrap();
    down.store(true, SeqCst);
    assert_eq!(read(&mut svc, as_user("a")).await.unwrap().1, "a");
    assert_eq!(read(&mut svc, as_user("b")).await.unwrap().1, "b");
    assert!(read(&mut svc, as_user("c")).await.is_err());
}

/// A body yielding `chunks` then, if `fail`, an error.
struct Chunks {
    chunks: Vec<Bytes>,
    fail: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if !self.chunks.is_empty() {
            let c = self.chunks.remove(0);
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err(io::Error::other("reset midway"))));
        }
        Poll::Ready(None)
    }
}

#[tokio::test]
async fn a_body_that_fails_midway_is_not_stored_and_a_long_one_removes_the_entry() {
    // What the next answer's body does: 0 = fine, 1 = fails midway, 2 = too long.
    let mode = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let backend = {
        let (mode, down) = (mode.clone(), down.clone());
        service_fn(move |_req: Request<()>| {
            let (mode, down) = (mode.load(SeqCst), down.load(SeqCst));
            async move {
                if down {
                    return Err(io::Error::other("down"));
                }
                let chunks = match mode {
                    2 => vec![Bytes::from(vec![b'x'; 600]), Bytes::from(vec![b'y'; 600])],
                    _ => vec![Bytes::from_static(b"good "), Bytes::from_static(b"answer")],
                };
                let fail = mode == 1;
                Ok(Response::new(Chunks { chunks, fail }))
            }
        })
    };
    let layer = FallbackCacheLayer::builder()
        .max_body_bytes(1000)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);

    // Fails midway with nothing stored: nothing stored.
    mode.store(1, SeqCst);
    let res = svc.ready().await.unwrap().call(get("/a")).await.unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap_err().to_string(),
        "reset midway"
    );
    assert_eq!(h.len(), 0);

    // A good answer, read in two chunks, is stored whole.
    mode.store(0, SeqCst);
    read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(h.len(), 1);

    // A later answer failing midway leaves the good one in place.
    mode.store(1, SeqCst);
    let res = svc.ready().await.unwrap().call(get("/a")).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    down.store(true, SeqCst);
    assert_eq!(read(&mut svc, get("/a")).await.unwrap().1, "good answer");

    // A body dropped before its end is not stored.
    down.store(false, SeqCst);
    mode.store(0, SeqCst);
    drop(svc.ready().await.unwrap().call(get("/b")).await.unwrap());
    assert_eq!(h.len(), 1);

    // Longer than max_body_bytes (found out midway): passed through whole, not stored, and
    // the older entry goes.
    mode.store(2, SeqCst);
    let (_, body) = read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(body.len(), 1200);
    assert_eq!(h.len(), 0);
}

// ===== writes and invalidation =====

async fn fill_six<S, B>(svc: &mut S, h: &FallbackCacheHandle)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    for p in [
        "/tasks",
        "/tasks?status=open",
        "/tasks/7",
        "/tasks/7/notes",
        "/tasks/70",
        "/users",
    ] {
        read(svc, get(p)).await.unwrap();
    }
    assert_eq!(h.len(), 6);
}

#[tokio::test]
async fn writes_are_never_answered_from_the_store_and_invalidate_what_they_cover() {
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::builder()
        .invalidate_on_write("/projects", "/tasks")
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer_service(echo(down.clone(), Arc::default()));
    let write = |method: &str, p: &str| Request::builder().method(method).uri(p).body(()).unwrap();

    fill_six(&mut svc, &h).await;
    // The resource, what lies below it, and its parent collection exactly.
    read(&mut svc, write("PUT", "/tasks/7")).await.unwrap();
    let left = |h: &FallbackCacheHandle| h.len();
    assert_eq!(left(&h), 2, "/tasks/70 and /users stay");

    fill_six(&mut svc, &h).await;
    read(&mut svc, write("POST", "/tasks")).await.unwrap();
    assert_eq!(left(&h), 1, "only /users stays");

    // A configured rule: writes under /projects invalidate /tasks…
    fill_six(&mut svc, &h).await;
    read(&mut svc, write("DELETE", "/projects/3"))
        .await
        .unwrap();
    assert_eq!(left(&h), 1);

    // A failed write (the backend is down) is not answered from the store, and invalidates.
    fill_six(&mut svc, &h).await;
    down.store(true, SeqCst);
    let err = read(&mut svc, write("POST", "/users")).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    assert_eq!(left(&h), 5);
    // Handle: by exact key, by prefix.
    let key = tower_bulwark::fallback_cache::CacheKey::new(
        http::Method::GET,
        "/tasks/70".parse().unwrap(),
    );
    assert!(h.invalidate(&key));
    assert_eq!(h.invalidate_prefix("/tasks/"), 4);
    assert!(h.is_empty());
}

#[tokio::test]
async fn a_write_rejected_with_4xx_does_not_invalidate() {
    let backend = service_fn(|req: Request<()>| async move {
        let status = if req.method() == http::Method::POST {
            409
        } else {
            200
        };
        Ok::<_, io::Error>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    });
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer_service(backend);
    read(&mut svc, get("/tasks")).await.unwrap();
    read(&mut svc, Request::post("/tasks").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(h.len(), 1);
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test]
async fn an_open_circuit_is_answered_from_the_store() {
    use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
    let breaker = CircuitBreakerLayer::new();
    let breaker_handle = breaker.handle();
    let layer = FallbackCacheLayer::new();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .layer(breaker)
        .service(echo(Arc::default(), Arc::default()));
    read(&mut svc, get("/a")).await.unwrap();
    breaker_handle.force_open();
    let (res, body) = read(&mut svc, get("/a")).await.unwrap();
    assert_eq!(body, "/a");
    assert_eq!(
        res.extensions().get::<StaleAnswer>().unwrap().reason,
        StaleReason::Error
    );
    assert!(read(&mut svc, get("/b")).await.unwrap_err().is_open());
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_count_what_happened() {
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::builder()
        .name("tasks")
        .max_entries(1)
        .build()
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    layer.handle().register(&mut registry);
    let mut svc = layer.layer_service(echo(down.clone(), Arc::default()));
    read(&mut svc, get("/a")).await.unwrap();
    read(&mut svc, get("/b")).await.unwrap();
    down.store(true, SeqCst);
    read(&mut svc, get("/b")).await.unwrap();
    read(&mut svc, get("/a")).await.unwrap_err();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"fallback_cache_stale_served_total{cache="tasks"} 1"#,
        r#"fallback_cache_misses_total{cache="tasks"} 1"#,
        r#"fallback_cache_stores_total{cache="tasks"} 2"#,
        r#"fallback_cache_evictions_total{cache="tasks"} 1"#,
        r#"fallback_cache_entries{cache="tasks"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
