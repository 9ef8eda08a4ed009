//! Cache keys of arbitrary requests. The input is text lines: the method, the URI, then up to
//! eight `name:value` headers; inputs that `http` refuses are skipped.
//!
//! Checked: key building never panics; equal requests give equal keys; the default key maker
//! leaves unsafe methods and (unless keyed) `Authorization` requests alone; a key holds the
//! request's method, URI and configured header values. Then, through a `FallbackCacheLayer`
//! around a `service_fn`: an answer stored under a request is found again (by
//! `FallbackCacheHandle::invalidate`, which goes through the store's own key hashing) under
//! the same request and under any request whose URI compares equal (scheme and authority in
//! another case), so the store's hash agrees with `CacheKey`'s equality.
#![no_main]

use std::{cell::RefCell, convert::Infallible};

use bytes::Bytes;
use http::{
    HeaderName, HeaderValue, Method, Request, Response, Uri,
    header::{ACCEPT, AUTHORIZATION},
};
use http_body_util::{BodyExt as _, Full};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceExt as _, service_fn};
use tower_bulwark::fallback_cache::{CacheKey, DefaultMakeKey, FallbackCacheLayer, MakeCacheKey};

const TENANT: HeaderName = HeaderName::from_static("x-tenant");

struct Input<'a> {
    method: &'a [u8],
    uri: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let mut lines = data.split(|&b| b == b'\n');
        let method = lines.next()?;
        let uri = lines.next()?;
        let headers = lines
            .take(8)
            .map(|line| match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]),
            })
            .collect();
        Some(Self {
            method,
            uri,
            headers,
        })
    }

    /// The request, or `None` where `http` refuses a part.
    fn request(&self, uri: &Uri) -> Option<Request<()>> {
        let mut builder = Request::builder()
            .method(Method::from_bytes(self.method).ok()?)
            .uri(uri.clone());
        for (name, value) in &self.headers {
            builder = builder.header(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
        }
        builder.body(()).ok()
    }
}

/// The same URI with its scheme and authority in upper case, if that still parses.
fn shouted(uri: &Uri) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    if let Some(scheme) = &parts.scheme {
        parts.scheme = Some(scheme.as_str().to_ascii_uppercase().parse().ok()?);
    }
    if let Some(authority) = &parts.authority {
        parts.authority = Some(authority.as_str().to_ascii_uppercase().parse().ok()?);
    }
    Uri::from_parts(parts).ok()
}

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    );
}

fn check_key(make: &DefaultMakeKey, req: &Request<()>, twin: &Request<()>, keyed: &[HeaderName]) {
    let key = make.make_key(req);
    assert_eq!(key, make.make_key(twin), "equal requests, different keys");
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let authorised = req.headers().contains_key(AUTHORIZATION) && !keyed.contains(&AUTHORIZATION);
    assert_eq!(key.is_some(), safe && !authorised, "{req:?}");
    if let Some(key) = key {
        assert_eq!(key.method(), req.method());
        assert_eq!(key.uri(), req.uri());
        assert_eq!(key.path(), req.uri().path());
        let expected: Vec<_> = keyed
            .iter()
            .map(|n| req.headers().get(n).cloned())
            .collect();
        assert_eq!(key.parts(), &expected[..]);
    }
}

/// Stores the answer to `req` in a fresh layer, then looks `key` up in the store.
fn store_and_find(req: Request<()>, key: &CacheKey) {
    let layer = FallbackCacheLayer::builder()
        .key_headers([ACCEPT, AUTHORIZATION, TENANT])
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let service = tower::Layer::layer(&layer, backend);
    RUNTIME.with(|rt| {
        rt.borrow().block_on(async {
            let res = service.oneshot(req).await.unwrap();
            res.into_body().collect().await.unwrap();
        })
    });
    match handle.len() {
        // Stored (unless the request said `Cache-Control: no-store`): found under `key`.
        1 => assert!(
            handle.invalidate(key),
            "stored, then not found under {key:?}"
        ),
        0 => assert!(!handle.invalidate(key)),
        n => panic!("one request, {n} entries"),
    }
    assert!(handle.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let Ok(uri) = Uri::try_from(input.uri) else {
        return;
    };
    let (Some(req), Some(twin)) = (input.request(&uri), input.request(&uri)) else {
        return;
    };

    check_key(&DefaultMakeKey::new(), &req, &twin, &[]);
    let keyed = [ACCEPT, AUTHORIZATION, TENANT];
    let make = DefaultMakeKey::new().headers(keyed.clone());
    check_key(&make, &req, &twin, &keyed);

    let Some(key) = make.make_key(&req) else {
        return;
    };
    store_and_find(twin, &key);
    // A request that compares equal gets an equal key, and the store finds one under the other.
    if let Some(loud) = shouted(&uri).filter(|loud| *loud == uri) {
        if let Some(loud_req) = input.request(&loud) {
            let loud_key = make.make_key(&loud_req);
            assert_eq!(loud_key.as_ref(), Some(&key), "{uri} vs {loud}");
            store_and_find(req, &loud_key.unwrap());
        }
    }
});
