//! The response body: passed through, passed through while copied into the store, or
//! replayed from the store.

use std::{
    io::IoSlice,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{
    key::StoreKey,
    layer::Shared,
    store::{Entry, cost},
};

pin_project! {
    /// The body of a response from a [`FallbackCache`](super::FallbackCache).
    ///
    /// Either the inner service's body, passed through untouched (and, for an answer being
    /// stored, copied chunk by chunk as the caller reads it: the caller never waits for the
    /// whole body), or a stored body replayed as one data frame.
    ///
    /// A copied answer is stored when the body ends. It is not stored if the body fails
    /// midway, is dropped before its end, or grows past `max_body_bytes`. Trailers pass
    /// through but are not stored.
    pub struct FallbackBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(crate) enum Kind<B> {
        Inner { #[pin] body: B },
        Capture { #[pin] body: B, capture: Option<Capture> },
        Stored { data: Option<Bytes> },
    }
}

impl<B> FallbackBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn capture(body: B, capture: Capture) -> Self {
        Self {
            kind: Kind::Capture {
                body,
                capture: Some(capture),
            },
        }
    }

    pub(crate) fn stored(data: Bytes) -> Self {
        Self {
            kind: Kind::Stored {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// Whether this body is replayed from the store.
    #[must_use]
    pub fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Stored { .. })
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for FallbackBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } | Kind::Capture { body, .. } => {
                f.debug_tuple("FallbackBody").field(body).finish()
            }
            Kind::Stored { data } => f
                .debug_struct("FallbackBody")
                .field("stored_bytes", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for FallbackBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Stored { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into()))))
            }
            KindProj::Capture { mut body, capture } => match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let (Some(data), Some(cap)) = (frame.data_ref(), capture.as_mut()) {
                        match cap.push(data) {
                            Pushed::Ok => {}
                            Pushed::TooBig => {
                                if let Some(cap) = capture.take() {
                                    cap.too_big();
                                }
                            }
                            Pushed::Unreadable => *capture = None,
                        }
                    }
                    // Some callers (hyper) stop polling once the body says it has ended.
                    if body.is_end_stream()
                        && let Some(cap) = capture.take()
                    {
                        cap.finish();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => {
                    // A body that fails midway is not stored; the older entry stays.
                    *capture = None;
                    Poll::Ready(Some(Err(e)))
                }
                None => {
                    if let Some(cap) = capture.take() {
                        cap.finish();
                    }
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } | Kind::Capture { body, .. } => body.is_end_stream(),
            Kind::Stored { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } | Kind::Capture { body, .. } => body.size_hint(),
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// An answer being copied into the store as its body is read.
///
/// The entry is allocated when the answer arrives (status, headers, ticket…) and completed in
/// place when the body ends: the store keeps that allocation, nothing is moved or boxed again.
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: Arc<StoreKey>,
    /// Not shared until stored: completed with `Arc::get_mut`.
    pub(crate) entry: Arc<Entry>,
    pub(crate) buf: BytesMut,
}

enum Pushed {
    Ok,
    TooBig,
    Unreadable,
}

impl Capture {
    fn push(&mut self, data: &impl Buf) -> Pushed {
        let n = data.remaining();
        if self.buf.len() + n > self.shared.config.max_body_bytes {
            return Pushed::TooBig;
        }
        let chunk = data.chunk();
        if chunk.len() == n {
            self.buf.extend_from_slice(chunk);
            return Pushed::Ok;
        }
        // A non-contiguous buffer: read it without consuming it (the caller gets the frame).
        let mut slices = [IoSlice::new(&[]); 64];
        let filled = data.chunks_vectored(&mut slices);
        if slices[..filled].iter().map(|s| s.len()).sum::<usize>() != n {
            return Pushed::Unreadable;
        }
        for s in &slices[..filled] {
            self.buf.extend_from_slice(s);
        }
        Pushed::Ok
    }

    /// The body ended: store the answer.
    fn finish(self) {
        let Self {
            shared,
            key,
            mut entry,
            buf,
        } = self;
        let Some(e) = Arc::get_mut(&mut entry) else {
            // Never shared before it is stored.
            return;
        };
        e.cost = cost(&key.key, &e.headers, buf.len());
        e.body = buf.freeze();
        shared.store().insert(key, entry);
    }

    /// Longer than `max_body_bytes`: not stored, and the older entry is no longer the latest
    /// answer, so it goes too.
    fn too_big(self) {
        self.shared
            .store()
            .remove_older(&self.key, self.entry.ticket);
    }
}
