//! The optional per-request span.

use http::Request;
use tracing::{Level, Span};

use super::RequestId;

/// Makes the span that [`RequestIdLayer`](super::RequestIdLayer) enters around every poll of
/// the request's future and response body.
///
/// Implemented for `()` (no span: [`Span::none`], the layer's default), for
/// [`DefaultMakeSpan`] (chosen by [`RequestIdLayer::with_span`](super::RequestIdLayer::with_span))
/// and for any `FnMut(&Request<B>, &RequestId) -> Span` closure:
///
/// ```
/// use http::Request;
/// use tower_bulwark::request_id::{RequestId, RequestIdLayer};
///
/// let layer = RequestIdLayer::new().make_span_with(|req: &Request<String>, id: &RequestId| {
///     // Your own target, so `EnvFilter` directives for your crate enable it.
///     tracing::info_span!(target: "my_app", "request", request_id = %id, method = %req.method())
/// });
/// # let _ = layer;
/// ```
pub trait MakeSpan<B> {
    /// Makes the span for `request`, whose ID is `request_id`.
    fn make_span(&mut self, request: &Request<B>, request_id: &RequestId) -> Span;
}

impl<B> MakeSpan<B> for () {
    fn make_span(&mut self, _request: &Request<B>, _request_id: &RequestId) -> Span {
        Span::none()
    }
}

impl<B, F> MakeSpan<B> for F
where
    F: FnMut(&Request<B>, &RequestId) -> Span,
{
    fn make_span(&mut self, request: &Request<B>, request_id: &RequestId) -> Span {
        self(request, request_id)
    }
}

/// A span named `request` with target `tower_bulwark::request_id`, carrying the one field
/// `request_id`, at [`Level::INFO`] unless set with [`DefaultMakeSpan::level`].
///
/// Only the ID is recorded: no URI, query or headers, which may hold secrets.
///
/// The span is only created when the subscriber enables it, and an event logged inside a
/// disabled span does not carry its fields. So the span's level and target must pass your
/// filter whenever the events you want tagged do: with `RUST_LOG=warn`, an `INFO` span is off
/// and warnings lack the ID (use `.level(Level::WARN)`, or [`Level::ERROR`] to be sure); with
/// `RUST_LOG=my_app=debug`, add `tower_bulwark=info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultMakeSpan {
    level: Level,
}

impl DefaultMakeSpan {
    /// An `INFO` span.
    #[must_use]
    pub const fn new() -> Self {
        Self { level: Level::INFO }
    }

    /// Sets the span's level.
    #[must_use]
    pub const fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}

impl Default for DefaultMakeSpan {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> MakeSpan<B> for DefaultMakeSpan {
    fn make_span(&mut self, _request: &Request<B>, request_id: &RequestId) -> Span {
        // `span!` needs a constant level, hence one arm per level.
        macro_rules! make {
            ($level:expr) => {
                tracing::span!(
                    target: "tower_bulwark::request_id",
                    $level,
                    "request",
                    request_id = request_id.as_str(),
                )
            };
        }
        match self.level {
            Level::ERROR => make!(Level::ERROR),
            Level::WARN => make!(Level::WARN),
            Level::INFO => make!(Level::INFO),
            Level::DEBUG => make!(Level::DEBUG),
            // `Level` has exactly five values; the compiler cannot see that through constants.
            _ => make!(Level::TRACE),
        }
    }
}
