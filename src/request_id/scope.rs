//! The task-local scope that makes the current request's ID readable anywhere.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use super::RequestId;

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// The ID of the request being served or sent, if any.
    ///
    /// Inside [`RequestIdLayer`](super::RequestIdLayer) this is the request's ID: in the inner
    /// service's `call`, in every poll of its future and of the response body. Elsewhere it is
    /// the ID of the innermost [`RequestId::scope`] / [`in_current_scope`] being polled, or
    /// `None`. A task spawned while serving a request does **not** inherit it: wrap the task's
    /// future in [`in_current_scope`].
    ///
    /// ```
    /// use tower_bulwark::request_id::RequestId;
    ///
    /// assert_eq!(RequestId::current(), None);
    /// let id = RequestId::try_from("abc").unwrap();
    /// id.sync_scope(|| assert_eq!(RequestId::current().unwrap(), "abc"));
    /// ```
    #[must_use]
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(RequestId::clone).ok()
    }

    /// Wraps `future` so that [`RequestId::current`] returns this ID while it is polled.
    ///
    /// Use it to run background work on behalf of a request you are not serving through the
    /// layer (a queue consumer, a test). Inside a request, [`in_current_scope`] is shorter.
    pub fn scope<F: Future>(self, future: F) -> WithRequestId<F> {
        WithRequestId {
            inner: future,
            request_id: Some(self),
        }
    }

    /// Runs `f` with this ID as [`RequestId::current`].
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

/// Wraps `future` so that it sees the current request's ID (if any) as [`RequestId::current`],
/// wherever it is polled: the way to carry the ID into a spawned task.
///
/// It carries only the ID. To keep log lines of the task inside the request's span too, add
/// [`tracing::Instrument::in_current_span`]:
///
/// ```
/// use tower_bulwark::request_id::{RequestId, in_current_scope};
/// use tracing::Instrument as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # RequestId::try_from("abc").unwrap().scope(async {
/// // Inside a request handler:
/// let task = tokio::spawn(
///     in_current_scope(async { RequestId::current() }).in_current_span(),
/// );
/// assert_eq!(task.await.unwrap().unwrap(), "abc");
/// # }).await;
/// # }
/// ```
pub fn in_current_scope<F: Future>(future: F) -> WithRequestId<F> {
    WithRequestId {
        inner: future,
        request_id: RequestId::current(),
    }
}

pin_project! {
    /// A future polled with a [`RequestId`] as [`RequestId::current`]: see
    /// [`in_current_scope`] and [`RequestId::scope`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        request_id: Option<RequestId>,
    }
}

impl<F> WithRequestId<F> {
    /// The ID the future runs with; `None` when [`in_current_scope`] was called outside any
    /// request, in which case the future runs without one.
    #[must_use]
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }
}

impl<F: Future> Future for WithRequestId<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        enter(this.request_id.as_ref(), || this.inner.poll(cx))
    }
}

/// Runs `f` inside `id`'s scope, or as is when there is none.
pub(super) fn enter<R>(id: Option<&RequestId>, f: impl FnOnce() -> R) -> R {
    match id {
        // `sync_scope` takes the value and drops it on exit; a clone is a reference count.
        Some(id) => CURRENT.sync_scope(id.clone(), f),
        None => f(),
    }
}
