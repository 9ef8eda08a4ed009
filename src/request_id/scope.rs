//! The task-local scope that makes the current request's ID readable anywhere.
//!
//! The scope is a thread-local slot that holds the ID only while a request's code runs: the
//! inner service's `call`, a poll of its future or of the response body. Entering moves the ID
//! from its owner (the future, the body) into the slot and leaving moves it back, restoring
//! whatever the slot held before, so scopes nest, interleaved requests on one thread never see
//! each other's ID, and no reference count changes hands on the hot path. This is what tokio's
//! `task_local!` does too, minus the clone it needs because it takes the value by value.

use std::{
    cell::Cell,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use super::RequestId;

thread_local! {
    /// The ID of the scope being run on this thread, or [`NO_ID`] outside any scope.
    static CURRENT: Cell<RequestId> = const { Cell::new(NO_ID) };
}

/// What the slot holds outside any scope: an empty ID, which validation never admits, so it
/// cannot be mistaken for a real one. Static: no allocation, no reference count.
const NO_ID: RequestId = RequestId::from_static("");

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
        CURRENT
            .try_with(|current| {
                let id = current.replace(NO_ID);
                let copy = (!id.as_header_value().is_empty()).then(|| id.clone());
                current.set(id);
                copy
            })
            .ok()
            .flatten()
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
    pub fn sync_scope<R>(mut self, f: impl FnOnce() -> R) -> R {
        let _scope = enter(&mut self);
        f()
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.request_id {
            Some(id) => {
                let _scope = enter(id);
                this.inner.poll(cx)
            }
            None => this.inner.poll(cx),
        }
    }
}

/// Enters `id`'s scope until the guard is dropped: [`RequestId::current`] returns `id` in
/// between.
///
/// Entering swaps `id` with the thread-local slot, and the guard swaps them back when it drops
/// (on return and on unwind alike): in between, the slot holds the ID and `id` holds what the
/// slot held before (an outer scope's ID, or [`NO_ID`]), which nothing reads. No reference
/// count changes and nothing is dropped. Guards live in stack frames and so drop in the reverse
/// order of creation, which is what makes the swaps restore every outer scope. During thread
/// teardown, when the slot is gone, the scope is a no-op.
#[inline]
pub(super) fn enter(id: &mut RequestId) -> Scope<'_> {
    let entered = CURRENT
        .try_with(|current| current.swap(Cell::from_mut(id)))
        .is_ok();
    Scope {
        id: entered.then_some(id),
        _not_send: PhantomData,
    }
}

/// The guard [`enter`] returns.
pub(super) struct Scope<'a> {
    /// Holds what the slot held before the scope; `None` when the scope was not entered.
    id: Option<&'a mut RequestId>,
    /// The slot is per thread: a guard must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl Drop for Scope<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(id) = self.id.as_deref_mut() {
            let _ = CURRENT.try_with(|current| current.swap(Cell::from_mut(id)));
        }
    }
}
