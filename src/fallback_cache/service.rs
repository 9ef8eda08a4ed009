//! The service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::{
    DefaultMakeKey, FallbackBody, FreshAnswer, MakeCacheKey, ResponseFuture,
    future::{Mode, Read, Target, from_store, has_directive},
    key::StoreKey,
    layer::Shared,
    store::Lookup,
};
use crate::classify::{Classify, HttpClassifier};

/// Answers failed reads with the last good answer. Made by
/// [`FallbackCacheLayer`](super::FallbackCacheLayer); see the [module docs](super).
pub struct FallbackCache<S, K = DefaultMakeKey, C = HttpClassifier> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) make_key: K,
    pub(crate) classifier: C,
}

impl<S: Clone, K: Clone, C: Clone> Clone for FallbackCache<S, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            make_key: self.make_key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, C: fmt::Debug> fmt::Debug for FallbackCache<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCache")
            .field("inner", &self.inner)
            .field("name", &self.shared.config.name)
            .field("make_key", &self.make_key)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S, K, C> FallbackCache<S, K, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle on the store (the same as the layer's).
    #[must_use]
    pub fn handle(&self) -> super::FallbackCacheHandle {
        super::FallbackCacheHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K, C, ReqB, ResB> Service<Request<ReqB>> for FallbackCache<S, K, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    K: MakeCacheKey<ReqB>,
    C: Classify<Response<ResB>, S::Error> + Clone,
    ResB: Body,
    ResB::Data: From<Bytes>,
{
    type Response = Response<FallbackBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let classifier = self.classifier.clone();
        if !req.method().is_safe() {
            let mode = Mode::Write {
                shared: Arc::clone(&self.shared),
                uri: req.uri().clone(),
            };
            return ResponseFuture::call(self.inner.call(req), mode, classifier);
        }
        // Borrowed until it is known whether a new entry needs it: most keys are stored
        // already, and the key is then only looked up, never moved.
        let key = self.make_key.make_key(&req);
        let Some(hashed) = key.as_ref().map(|k| self.shared.hashed(k)) else {
            return ResponseFuture::call(self.inner.call(req), Mode::Bypass, classifier);
        };
        if let Some(fresh_ttl) = self.shared.config.fresh_ttl
            && !has_directive(req.headers(), &["no-cache"])
        {
            let now = Instant::now();
            // Looked up with the full TTL, so a merely stale entry is kept for failures.
            let hit = {
                let mut store = self.shared.store();
                match store.get(&hashed, None, now, self.shared.config.ttl) {
                    Lookup::Hit(entry, age) if age <= fresh_ttl => {
                        store.stats.fresh_hits += 1;
                        Some((entry, age))
                    }
                    _ => None,
                }
            };
            if let Some((entry, age)) = hit {
                let mut res = from_store(&entry, age, Some(&self.shared.fresh_status));
                res.extensions_mut().insert(FreshAnswer { age });
                // The inner service was polled ready but is not called: like `LoadShed`,
                // a reservation it made is released on its next call or drop.
                return ResponseFuture::ready(res, classifier);
            }
        }
        // The entry already stored, if any, found now while the key is at hand: the answer is
        // compared with it, a failure answered from it, and the store's own copy of the key
        // serves, so this one is neither kept nor allocated.
        let found = self.shared.store().find(&hashed);
        let hash = hashed.hash;
        let target = match found {
            Some(held) => Target::Stored(held),
            None => Target::New(Arc::new(StoreKey::from_hashed(
                hash,
                key.unwrap_or_else(|| unreachable!("hashed above")),
            ))),
        };
        let read = Read {
            shared: Arc::clone(&self.shared),
            target,
            ticket: self.shared.ticket(),
            // RFC 9111 §5.2.1.5: a request's `no-store` forbids storing its response.
            may_store: !has_directive(req.headers(), &["no-store"]),
        };
        ResponseFuture::call(self.inner.call(req), Mode::Read(read), classifier)
    }
}
