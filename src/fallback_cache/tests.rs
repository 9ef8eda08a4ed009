//! Unit tests of the service: which answers are stored, replaced and served.

use std::{
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
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
