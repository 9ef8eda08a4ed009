//! What a refused request is answered with: the [`Rejection`], the [`MakeRejection`] hook that
//! turns it into a response, and the [`ResponseBody`] carrying either answer.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request::Parts};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Why a limit layer answered instead of the inner service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No response head within `after` ([`ResponseTimeoutLayer`](super::ResponseTimeoutLayer)).
    Timeout {
        /// The layer's timeout.
        after: Duration,
    },
    /// The request declared a body longer than `limit` bytes
    /// ([`BodyLimitLayer`](super::BodyLimitLayer)).
    BodyTooLarge {
        /// The layer's limit, in bytes.
        limit: usize,
    },
    /// `max_in_flight` requests were being answered already
    /// ([`LoadShedLayer`](super::LoadShedLayer)).
    Overloaded {
        /// The layer's limit.
        max_in_flight: usize,
    },
}

impl Rejection {
    /// The status [`DefaultRejection`] answers with: `504 Gateway Timeout` for a timeout, `413
    /// Content Too Large` for a body over the limit, `503 Service Unavailable` when overloaded.
    ///
    /// A timeout is a 504, not tower-http's 408 (which says the *client* was too slow to send
    /// its request) nor a 503 (which the load shedder uses to say "come back shortly"): the
    /// server is a gateway in front of its own handler, and the handler, or the backend it
    /// waits for, did not answer in time. Metrics count 504 as `kind="timeout"`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A sentence for the client, without a final period.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { after } => write!(f, "no response within {} ms", after.as_millis()),
            Self::BodyTooLarge { limit } => {
                write!(f, "request body is larger than the limit of {limit} bytes")
            }
            Self::Overloaded { .. } => {
                f.write_str("server is at its concurrency limit; retry shortly")
            }
        }
    }
}

/// Makes the response to a refused request, e.g. in the error format of the API behind.
///
/// `request` is the refused request's head. For a [`Rejection::Timeout`] the request went to
/// the inner service long ago: only its method, URI and version are there (no headers, no
/// extensions), kept when it arrived because they are cheap to clone.
///
/// The body is `Bytes`, whatever the inner service's body type: the layers put it in their
/// [`ResponseBody`]. Implemented for closures `Fn(Rejection, &Parts) -> Response<Bytes>`; a
/// timeout layer clones its hook for each request, so keep it cheap to clone (a function, a
/// unit struct, an `Arc`).
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, header, request::Parts};
/// use tower_bulwark::limit::{LoadShedLayer, Rejection};
///
/// fn json_error(rejection: Rejection, request: &Parts) -> Response<Bytes> {
///     let body = format!(r#"{{"error":{{"path":"{}","message":"{rejection}"}}}}"#, request.uri.path());
///     Response::builder()
///         .status(rejection.status())
///         .header(header::CONTENT_TYPE, "application/json")
///         .body(Bytes::from(body))
///         .unwrap()
/// }
///
/// let shed = LoadShedLayer::new(256).unwrap().rejection(json_error);
/// # let _ = shed;
/// ```
pub trait MakeRejection {
    /// The response to `rejection` of `request`.
    fn make_rejection(&self, rejection: Rejection, request: &Parts) -> Response<Bytes>;
}

impl<F> MakeRejection for F
where
    F: Fn(Rejection, &Parts) -> Response<Bytes>,
{
    fn make_rejection(&self, rejection: Rejection, request: &Parts) -> Response<Bytes> {
        self(rejection, request)
    }
}

/// The default hook: the [status](Rejection::status) and a one-line `text/plain` body saying
/// why (`no response within 30000 ms`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRejection;

impl MakeRejection for DefaultRejection {
    fn make_rejection(&self, rejection: Rejection, _: &Parts) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(format!("{rejection}\n")));
        *response.status_mut() = rejection.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// A refusal a limit layer's future holds until it is polled, returned once.
#[derive(Debug)]
pub(super) struct Refusal(Option<Response<Bytes>>);

impl Refusal {
    pub(super) fn new(response: Response<Bytes>) -> Self {
        Self(Some(response))
    }

    /// The refusal, with its body as a [`ResponseBody`].
    ///
    /// # Panics
    ///
    /// When taken twice, i.e. when its future is polled after completion.
    pub(super) fn take<B>(&mut self) -> Response<ResponseBody<B>> {
        self.0
            .take()
            .expect("limit layer future polled after completion")
            .map(ResponseBody::rejection)
    }
}

pin_project! {
    /// Response body of the limit layers: the inner service's body, untouched, or the body of
    /// a rejection.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // `None` once sent, or from the start when empty.
        Rejection { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    #[inline]
    pub(super) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(super) fn rejection(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Rejection { data },
        }
    }

    /// Whether this is a rejection's body rather than the inner service's.
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        matches!(self.kind, Kind::Rejection { .. })
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { data } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data.into()))))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { data } => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
        }
    }
}
