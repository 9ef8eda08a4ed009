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
    layer::Shared,
    store::{Entry, Held, Meta, Refresh, cost},
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

/// An answer being stored as its body is read.
///
/// Either copied: the entry is allocated when the answer arrives (status, headers…) and
/// completed in place when the body ends, so the store keeps that allocation. Or, when the
/// answer arrived with the status and headers of the entry already stored under its key,
/// compared: the body is checked against the stored one as it passes, and if it is the same
/// to the end, the stored entry is renewed in place (nothing copied, allocated or dropped);
/// at the first difference the capture turns into a copy (of the stored entry's headers and
/// body so far, which are the answer's).
#[derive(Debug)]
pub(crate) struct Capture {
    shared: Arc<Shared>,
    meta: Meta,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Copy {
        /// Not shared until stored: completed with `Arc::get_mut`.
        entry: Arc<Entry>,
        buf: BytesMut,
    },
    Same {
        /// The stored entry, from `Store::find`.
        held: Held,
        /// How much of its body the answer's has matched so far.
        matched: usize,
    },
}

enum Pushed {
    Ok,
    TooBig,
    Unreadable,
}

impl Capture {
    /// Copies the answer into `entry`.
    pub(crate) fn copy(shared: Arc<Shared>, entry: Entry, meta: Meta, capacity: usize) -> Self {
        Self {
            shared,
            meta,
            mode: Mode::Copy {
                entry: Arc::new(entry),
                buf: BytesMut::with_capacity(capacity),
            },
        }
    }

    /// Compares the answer with `held`, whose status and headers are the answer's.
    pub(crate) fn same(shared: Arc<Shared>, held: Held, meta: Meta) -> Self {
        Self {
            shared,
            meta,
            mode: Mode::Same { held, matched: 0 },
        }
    }

    fn push(&mut self, data: &impl Buf) -> Pushed {
        let n = data.remaining();
        if let Mode::Same { held, matched } = &mut self.mode {
            if let Some(stored) = held.entry.body.get(*matched..*matched + n)
                && same_bytes(data, stored)
            {
                *matched += n;
                return Pushed::Ok;
            }
            self.diverge(n);
        }
        let Mode::Copy { buf, .. } = &mut self.mode else {
            unreachable!("a diverged capture copies")
        };
        if buf.len() + n > self.shared.config.max_body_bytes {
            return Pushed::TooBig;
        }
        let chunk = data.chunk();
        if chunk.len() == n {
            buf.extend_from_slice(chunk);
            return Pushed::Ok;
        }
        // A non-contiguous buffer: read it without consuming it (the caller gets the frame).
        let mut slices = [IoSlice::new(&[]); 64];
        let filled = data.chunks_vectored(&mut slices);
        if slices[..filled].iter().map(|s| s.len()).sum::<usize>() != n {
            return Pushed::Unreadable;
        }
        for s in &slices[..filled] {
            buf.extend_from_slice(s);
        }
        Pushed::Ok
    }

    /// The answer turned out different from the stored one: copy it from here on, starting
    /// with what matched (room for `more` bytes after it).
    fn diverge(&mut self, more: usize) {
        let Mode::Same {
            held: Held { entry, .. },
            matched,
        } = &self.mode
        else {
            return;
        };
        let mut buf = BytesMut::with_capacity(matched + more);
        buf.extend_from_slice(&entry.body[..*matched]);
        let entry = Entry {
            key: Arc::clone(&entry.key),
            status: entry.status,
            version: entry.version,
            headers: entry.headers.clone(),
            plain: entry.plain,
            body: Bytes::new(),
            cost: 0,
        };
        self.mode = Mode::Copy {
            entry: Arc::new(entry),
            buf,
        };
    }

    /// The body ended: store the answer.
    fn finish(mut self) {
        if let Mode::Same { held, matched } = &self.mode {
            if *matched == held.entry.body.len() {
                let mut store = self.shared.store();
                if store.refresh(held, self.meta) == Refresh::Gone {
                    // Replaced or removed since: store it anew (the entry is unchanged, and
                    // the answer's).
                    store.insert(Arc::clone(&held.entry), self.meta);
                }
                return;
            }
            // Shorter than the stored body.
            self.diverge(0);
        }
        let Self {
            shared,
            meta,
            mode: Mode::Copy { mut entry, buf },
        } = self
        else {
            return;
        };
        let Some(e) = Arc::get_mut(&mut entry) else {
            // Never shared before it is stored.
            return;
        };
        e.cost = cost(&e.key.key, &e.headers, buf.len());
        e.body = buf.freeze();
        shared.store().insert(entry, meta);
    }

    /// Longer than `max_body_bytes`: not stored, and the older entry is no longer the latest
    /// answer, so it goes too.
    fn too_big(self) {
        let key = match &self.mode {
            Mode::Copy { entry, .. } => &entry.key,
            Mode::Same { held, .. } => &held.entry.key,
        };
        self.shared.store().remove_older(key, self.meta.ticket);
    }
}

/// Whether `data` holds exactly `stored` (as long as `data`), without consuming it.
fn same_bytes(data: &impl Buf, stored: &[u8]) -> bool {
    let chunk = data.chunk();
    if chunk.len() == stored.len() {
        return chunk == stored;
    }
    let mut slices = [IoSlice::new(&[]); 64];
    let filled = data.chunks_vectored(&mut slices);
    let mut rest = stored;
    for s in &slices[..filled] {
        let Some((head, tail)) = rest.split_at_checked(s.len()) else {
            return false;
        };
        if head != &s[..] {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}
