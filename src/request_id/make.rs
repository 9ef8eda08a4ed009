//! How fresh request IDs are made.

use http::Request;

use super::RequestId;

/// Makes a fresh [`RequestId`] for a request that arrived without a valid one.
///
/// Implemented for [`MakeRequestUuid`] (the default) and for any
/// `FnMut(&Request<B>) -> RequestId` closure, so a custom scheme is one closure away:
///
/// ```
/// use std::sync::{
///     Arc,
///     atomic::{AtomicU64, Ordering},
/// };
///
/// use http::Request;
/// use tower_bulwark::request_id::{RequestId, RequestIdLayer};
///
/// let counter = Arc::new(AtomicU64::new(0));
/// let layer = RequestIdLayer::new().make_request_id_with(move |_: &Request<String>| {
///     let n = counter.fetch_add(1, Ordering::Relaxed);
///     // Text built from digits and `-` is always valid; fall back anyway rather than panic.
///     RequestId::try_from(format!("req-{n}")).unwrap_or_else(|_| RequestId::new_v4())
/// });
/// # let _ = layer;
/// ```
///
/// The layer calls it once per request that needs an ID, with the request as received (which
/// may still carry the rejected header).
pub trait MakeRequestId<B> {
    /// Makes an ID for `request`.
    fn make_request_id(&mut self, request: &Request<B>) -> RequestId;
}

impl<B, F> MakeRequestId<B> for F
where
    F: FnMut(&Request<B>) -> RequestId,
{
    fn make_request_id(&mut self, request: &Request<B>) -> RequestId {
        self(request)
    }
}

/// The default [`MakeRequestId`]: a random UUID (version 4), or a time-ordered one
/// (version 7) with [`MakeRequestUuid::v7`].
///
/// ```
/// use tower_bulwark::request_id::{MakeRequestUuid, RequestIdLayer};
///
/// let layer = RequestIdLayer::new().make_request_id_with(MakeRequestUuid::v7());
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MakeRequestUuid {
    version: UuidVersion,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum UuidVersion {
    #[default]
    V4,
    V7,
}

impl MakeRequestUuid {
    /// Random UUIDs (version 4), the default; same as [`MakeRequestUuid::v4`].
    #[must_use]
    pub const fn new() -> Self {
        Self::v4()
    }

    /// Random UUIDs (version 4): see [`RequestId::new_v4`].
    #[must_use]
    pub const fn v4() -> Self {
        Self {
            version: UuidVersion::V4,
        }
    }

    /// Time-ordered UUIDs (version 7): see [`RequestId::new_v7`].
    #[must_use]
    pub const fn v7() -> Self {
        Self {
            version: UuidVersion::V7,
        }
    }
}

impl<B> MakeRequestId<B> for MakeRequestUuid {
    fn make_request_id(&mut self, _request: &Request<B>) -> RequestId {
        match self.version {
            UuidVersion::V4 => RequestId::new_v4(),
            UuidVersion::V7 => RequestId::new_v7(),
        }
    }
}
