//! Unit tests of the service: which answers are stored, replaced and served.

use std::{
    future::Future,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CACHE_CONTROL};
use http_body_util::{BodyExt as _, Full};
use tower::{Service, ServiceExt as _, service_fn};
use tower_layer::Layer;

use super::*;
use crate::classify::Outcome;

type Res = Response<Full<Bytes>>;

/// A backend answering the status and body in `next`, or failing when `down`.
fn backend(
    next: Arc<Mutex<(u16, &'static str)>>,
    down: Arc<AtomicBool>,
) -> impl Service<Request<()>, Response = Res, Error = io::Error, Future = impl Send> + Clone {
    service_fn(move |_req: Request<()>| {
        let (status, body) = *next.lock().unwrap();
        let down = down.load(SeqCst);
        async move {
            if down {
                return Err(io::Error::other("down"));
            }
            Ok(Response::builder()
                .status(status)
                .header("cache-status", "origin-cdn; fwd=miss")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap())
        }
    })
}

async fn call<S, B>(svc: &mut S, req: Request<()>) -> Result<(Response<()>, Bytes), S::Error>
where
    S: Service<Request<()>, Response = Response<B>>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = svc.ready().await?.call(req).await?.into_parts();
    Ok((
        Response::from_parts(parts, ()),
        body.collect().await.unwrap().to_bytes(),
    ))
}

fn req(method: Method, uri: &str) -> Request<()> {
    Request::builder().method(method).uri(uri).body(()).unwrap()
}

#[tokio::test]
async fn head_is_its_own_entry_and_cache_status_is_appended() {
    let next = Arc::new(Mutex::new((200, "body")));
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer(backend(next, down.clone()));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(h.len(), 1);
    down.store(true, SeqCst);
    assert!(call(&mut svc, req(Method::HEAD, "/a")).await.is_err());
    let (res, body) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(body, "body");
    let statuses: Vec<_> = res.headers().get_all("cache-status").iter().collect();
    assert_eq!(
        statuses,
        [
            "origin-cdn; fwd=miss",
            "tower-bulwark; hit; detail=stale-if-error"
        ]
    );
}

#[tokio::test]
async fn only_the_configured_failures_are_answered_stale() {
    let next = Arc::new(Mutex::new((200, "good")));
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer(backend(next.clone(), Arc::default()));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();

    for status in [500, 502, 503, 504] {
        *next.lock().unwrap() = (status, "oops");
        let (res, body) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
        assert_eq!(
            (res.status(), body.as_ref()),
            (StatusCode::OK, &b"good"[..])
        );
        let stale = res.extensions().get::<StaleAnswer>().unwrap();
        assert_eq!(
            stale.reason,
            StaleReason::Status(StatusCode::from_u16(status).unwrap())
        );
    }
    // A failure outside the set (429, 501): passed through, entry kept.
    for status in [429, 501] {
        *next.lock().unwrap() = (status, "no");
        let (res, _) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(h.len(), 1);
    }
    // A newer non-failure answer that is not stored (404) removes the entry.
    *next.lock().unwrap() = (404, "gone");
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(h.len(), 0);
    *next.lock().unwrap() = (503, "oops");
    let (res, _) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(h.stats().misses, 1);
}

#[tokio::test]
async fn custom_statuses_classifier_and_key() {
    let next = Arc::new(Mutex::new((200, "good")));
    // 429 answered stale too; 418 counted as a failure by a custom classifier.
    let layer = FallbackCacheLayer::builder()
        .stale_on_statuses([StatusCode::TOO_MANY_REQUESTS, StatusCode::IM_A_TEAPOT])
        .classifier(|r: Result<&Res, &io::Error>| match r {
            Ok(res) if res.status() == 418 || res.status() == 429 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        // Keyed by path only: the query is ignored.
        .make_key(|req: &Request<()>| {
            Some(CacheKey::new(
                req.method().clone(),
                req.uri().path().parse().ok()?,
            ))
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(backend(next.clone(), Arc::default()));
    call(&mut svc, req(Method::GET, "/a?x=1")).await.unwrap();
    for status in [418, 429] {
        *next.lock().unwrap() = (status, "no");
        let (res, body) = call(&mut svc, req(Method::GET, "/a?y=2")).await.unwrap();
        assert_eq!(
            (res.status(), body.as_ref()),
            (StatusCode::OK, &b"good"[..])
        );
    }
    // 500 is not a failure for this classifier: passed through, and it replaces nothing.
    *next.lock().unwrap() = (500, "fine?");
    let (res, _) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(res.status(), 500);
}

#[test]
fn debug_output_hides_key_parts() {
    let key = CacheKey::new(Method::GET, "/me".parse().unwrap())
        .with_part(Some(http::HeaderValue::from_static("Bearer secret")));
    let printed = format!("{key:?}");
    assert!(!printed.contains("secret"), "{printed}");
    let layer = FallbackCacheLayer::new();
    assert!(format!("{layer:?}").contains("FallbackCacheLayer"));
    assert!(format!("{:?}", layer.handle()).contains("tower-bulwark"));
    assert!(format!("{:?}", FallbackBody::<Full<Bytes>>::stored(Bytes::new())).contains("stored"));
}

#[tokio::test]
async fn request_no_cache_still_gets_stale_answers() {
    // `no-cache` only skips fresh hits; a failed call may still be answered stale.
    let next = Arc::new(Mutex::new((200, "good")));
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::new();
    let mut svc = layer.layer(backend(next, down.clone()));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    down.store(true, SeqCst);
    let r = Request::get("/a")
        .header(CACHE_CONTROL, "no-cache")
        .body(())
        .unwrap();
    assert_eq!(call(&mut svc, r).await.unwrap().1, "good");
}

// ===== an answer fetched again: renewed in place when identical =====

/// What [`Answer`]'s backend answers next.
#[derive(Clone)]
struct Answer {
    headers: Vec<(&'static str, &'static str)>,
    chunks: Vec<&'static str>,
    /// The body fails after its chunks.
    fail: bool,
}

impl Answer {
    fn ok(chunks: &[&'static str]) -> Self {
        Self {
            headers: vec![("content-type", "application/json")],
            chunks: chunks.to_vec(),
            fail: false,
        }
    }
}

/// A body yielding chunks, then an error if asked to.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    fail: bool,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if let Some(c) = self.chunks.pop_front() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(c))));
        }
        if std::mem::take(&mut self.fail) {
            return std::task::Poll::Ready(Some(Err(io::Error::other("reset"))));
        }
        std::task::Poll::Ready(None)
    }
}

/// A backend answering `next`, or failing when `down`.
fn answering(
    next: Arc<Mutex<Answer>>,
    down: Arc<AtomicBool>,
) -> impl Service<
    Request<()>,
    Response = Response<Chunks>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<Response<Chunks>>> + Send,
> + Clone {
    service_fn(move |_req: Request<()>| {
        let answer = next.lock().unwrap().clone();
        let down = down.load(SeqCst);
        async move {
            if down {
                return Err(io::Error::other("down"));
            }
            let mut res = Response::builder();
            for (n, v) in answer.headers {
                res = res.header(n, v);
            }
            let body = Chunks {
                chunks: answer
                    .chunks
                    .iter()
                    .map(|c| Bytes::from_static(c.as_bytes()))
                    .collect(),
                fail: answer.fail,
            };
            Ok(res.body(body).unwrap())
        }
    })
}

/// The entry stored under `GET uri`.
fn stored(h: &FallbackCacheHandle, uri: &str) -> Option<Arc<store::Entry>> {
    let key = CacheKey::new(Method::GET, uri.parse().unwrap());
    let found = h.shared.store().find(&h.shared.hashed(&key));
    found.map(|held| held.entry)
}

/// The stale answer to `GET uri` (the backend down): its age in seconds and body.
async fn stale<S, B>(svc: &mut S, down: &AtomicBool, uri: &str) -> Option<(u64, Bytes)>
where
    S: Service<Request<()>, Response = Response<B>, Error = io::Error>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    down.store(true, SeqCst);
    let res = call(svc, req(Method::GET, uri)).await;
    down.store(false, SeqCst);
    let (res, body) = res.ok()?;
    let age = res.extensions().get::<StaleAnswer>().unwrap().age.as_secs();
    Some((age, body))
}

#[tokio::test(start_paused = true)]
async fn an_identical_answer_renews_the_entry_in_place() {
    let next = Arc::new(Mutex::new(Answer::ok(&["[1,", "2]"])));
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::new();
    let h = layer.handle();
    let mut svc = layer.layer(answering(next.clone(), down.clone()));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    let first = stored(&h, "/a").unwrap();
    let bytes = h.bytes();

    // The same answer, even cut differently: the same entry, its age from zero.
    tokio::time::advance(Duration::from_secs(30)).await;
    *next.lock().unwrap() = Answer::ok(&["[", "1,2", "]"]);
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &stored(&h, "/a").unwrap()));
    assert_eq!((h.len(), h.bytes(), h.stats().stores), (1, bytes, 2));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        stale(&mut svc, &down, "/a").await,
        Some((5, "[1,2]".into()))
    );

    // The same but for an `Age` from further in: renewed too, with that age.
    next.lock().unwrap().headers.push(("age", "20"));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &stored(&h, "/a").unwrap()));
    assert_eq!(
        stale(&mut svc, &down, "/a").await,
        Some((20, "[1,2]".into()))
    );

    // A body failing midway, even one matching so far: the entry is not renewed.
    tokio::time::advance(Duration::from_secs(3)).await;
    *next.lock().unwrap() = Answer {
        fail: true,
        ..Answer::ok(&["[1,2]"])
    };
    let res = svc.ready().await.unwrap().call(req(Method::GET, "/a"));
    assert!(res.await.unwrap().into_body().collect().await.is_err());
    assert!(Arc::ptr_eq(&first, &stored(&h, "/a").unwrap()));
    assert_eq!(
        stale(&mut svc, &down, "/a").await,
        Some((23, "[1,2]".into()))
    );
    assert_eq!(h.stats().stores, 3);
}

#[tokio::test(start_paused = true)]
async fn a_different_answer_replaces_the_entry() {
    let next = Arc::new(Mutex::new(Answer::ok(&["[1,2]"])));
    let down = Arc::new(AtomicBool::new(false));
    let layer = FallbackCacheLayer::builder()
        .max_body_bytes(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(answering(next.clone(), down.clone()));
    let changes: [(Answer, &str); 6] = [
        // Differs in the last byte, in a later chunk.
        (Answer::ok(&["[1,", "3]"]), "[1,3]"),
        // Shorter, longer, empty.
        (Answer::ok(&["[1,"]), "[1,"),
        (Answer::ok(&["[1,", "2,3]"]), "[1,2,3]"),
        (Answer::ok(&[]), ""),
        // The same body, another header value, or one more header.
        (
            Answer {
                headers: vec![("content-type", "text/plain")],
                ..Answer::ok(&[])
            },
            "",
        ),
        (
            Answer {
                headers: vec![
                    ("content-type", "text/plain"),
                    ("cache-status", "origin; hit"),
                ],
                ..Answer::ok(&[])
            },
            "",
        ),
    ];
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    for (i, (answer, body)) in changes.into_iter().enumerate() {
        let before = stored(&h, "/a").unwrap();
        let headers = answer.headers.clone();
        *next.lock().unwrap() = answer;
        call(&mut svc, req(Method::GET, "/a")).await.unwrap();
        let after = stored(&h, "/a").unwrap();
        assert!(!Arc::ptr_eq(&before, &after), "{i}");
        assert_eq!(after.body, body, "{i}");
        let (_, got) = stale(&mut svc, &down, "/a").await.unwrap();
        assert_eq!(got, body, "{i}");
        down.store(true, SeqCst);
        let (res, _) = call(&mut svc, req(Method::GET, "/a")).await.unwrap();
        down.store(false, SeqCst);
        for (n, v) in headers {
            assert_eq!(res.headers()[n], v, "{i}");
        }
        assert_eq!(h.stats().stores, i as u64 + 2);
    }
    // Matching so far, then past `max_body_bytes`: not stored, and the older entry goes.
    *next.lock().unwrap() = Answer::ok(&["", "0123456789", "x"]);
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    *next.lock().unwrap() = Answer::ok(&["0123456789"]);
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(h.len(), 1);
    *next.lock().unwrap() = Answer::ok(&["0123456789", "x"]);
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    assert_eq!(h.len(), 0);
}

#[tokio::test]
async fn an_identical_answer_in_flight_during_an_invalidation_is_not_stored() {
    let next = Arc::new(Mutex::new(Answer::ok(&["same"])));
    let layer = FallbackCacheLayer::builder()
        .max_entries(1)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(answering(next.clone(), Arc::default()));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();

    // Invalidated while the request is in flight: its (identical) answer may predate the
    // write, so it does not bring the entry back.
    let res = svc.ready().await.unwrap().call(req(Method::GET, "/a"));
    assert_eq!(h.invalidate_prefix("/a"), 1);
    res.await.unwrap().into_body().collect().await.unwrap();
    assert_eq!(h.len(), 0);

    // Evicted (not invalidated) meanwhile: stored again, as any answer would be.
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    let entry = stored(&h, "/a").unwrap();
    let res = svc.ready().await.unwrap().call(req(Method::GET, "/a"));
    call(&mut svc, req(Method::GET, "/b")).await.unwrap();
    assert!(stored(&h, "/a").is_none());
    res.await.unwrap().into_body().collect().await.unwrap();
    assert!(Arc::ptr_eq(&entry, &stored(&h, "/a").unwrap()));
    assert_eq!((h.len(), h.stats().evictions), (1, 2));

    // An older request's identical answer does not renew a newer one.
    let older = svc.ready().await.unwrap().call(req(Method::GET, "/a"));
    call(&mut svc, req(Method::GET, "/a")).await.unwrap();
    let stores = h.stats().stores;
    older.await.unwrap().into_body().collect().await.unwrap();
    assert_eq!(h.stats().stores, stores);
}
