//! The layers' hooks: what a request's route or operation is, which trace it belongs to, and
//! what kind of failure an error is. Each is a trait with a blanket impl for closures and a
//! `()` impl for the default.

use std::{fmt, marker::PhantomData};

use http::Request;

use super::{ErrorClass, LabelValue, TraceId};

/// Names a request's route (server) or operation (client) for the `route` / `operation`
/// label.
///
/// Return a value from a **bounded** set, a route template such as `/tasks/{id}` or an
/// operation name such as `get_task`, never the raw path; `None` when the request matches
/// nothing. `None` is recorded as `route="unmatched"` on the server and `operation="other"`
/// on the client.
///
/// Implemented for `()` (always `None`: every request is `unmatched` / `other`) and for
/// closures `FnMut(&Request<B>) -> Option<LabelValue>`.
///
/// With axum, the route template is the `MatchedPath` extension the router sets before it
/// calls a route's layers (so add the layer with `Router::layer`):
///
/// ```
/// use axum::{body::Body, extract::MatchedPath};
/// use http::Request;
/// use tower_bulwark::metrics::{ClassifyRequest, LabelValue};
///
/// let mut by_matched_path = |req: &Request<Body>| {
///     req.extensions().get::<MatchedPath>().map(|p| LabelValue::new(p.as_str()))
/// };
/// let req = Request::get("/tasks/42").body(Body::empty()).unwrap();
/// assert_eq!(by_matched_path.classify(&req), None); // no router ran: unmatched
/// ```
pub trait ClassifyRequest<B> {
    /// The route or operation of `request`, or `None` if it has none.
    fn classify(&mut self, request: &Request<B>) -> Option<LabelValue>;

    /// Calls `f` with the label of `request`, lent as a string slice; what the layers call.
    ///
    /// The default calls [`classify`](Self::classify). Override it when the label can be
    /// lent from the request without copying it, as [`FromExtension`] does: the layers copy
    /// a label only the first time they see it.
    fn with_label<R>(&mut self, request: &Request<B>, f: impl FnOnce(Option<&str>) -> R) -> R {
        let label = self.classify(request);
        f(label.as_ref().map(LabelValue::as_str))
    }
}

/// A [`ClassifyRequest`] reading the label from a request extension of type `T`, such as
/// axum's `MatchedPath`, lent without a copy. `None` when the request has no `T`.
///
/// ```
/// use axum::{Router, extract::MatchedPath, routing::get};
/// use prometheus_client::registry::Registry;
/// use tower_bulwark::metrics::{FromExtension, ServerMetrics};
///
/// let metrics = ServerMetrics::register(&mut Registry::default());
/// let app: Router = Router::new()
///     .route("/tasks/{id}", get(|| async { "a task" }))
///     .layer(metrics.layer().classify_route(FromExtension::new(MatchedPath::as_str)));
/// # let _ = app;
/// ```
pub struct FromExtension<T, F> {
    label: F,
    _extension: PhantomData<fn(&T)>,
}

impl<T, F> FromExtension<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> &str,
{
    /// Labels a request with `label` applied to its `T` extension.
    pub fn new(label: F) -> Self {
        Self {
            label,
            _extension: PhantomData,
        }
    }
}

impl<T, F: Clone> Clone for FromExtension<T, F> {
    fn clone(&self) -> Self {
        Self {
            label: self.label.clone(),
            _extension: PhantomData,
        }
    }
}

impl<T, F> fmt::Debug for FromExtension<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromExtension")
            .field("extension", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<B, T, F> ClassifyRequest<B> for FromExtension<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> &str,
{
    fn classify(&mut self, request: &Request<B>) -> Option<LabelValue> {
        let extension = request.extensions().get::<T>()?;
        Some(LabelValue::new((self.label)(extension)))
    }

    fn with_label<R>(&mut self, request: &Request<B>, f: impl FnOnce(Option<&str>) -> R) -> R {
        f(request.extensions().get::<T>().map(|e| (self.label)(e)))
    }
}

impl<B> ClassifyRequest<B> for () {
    fn classify(&mut self, _: &Request<B>) -> Option<LabelValue> {
        None
    }
}

impl<F, B> ClassifyRequest<B> for F
where
    F: FnMut(&Request<B>) -> Option<LabelValue>,
{
    fn classify(&mut self, request: &Request<B>) -> Option<LabelValue> {
        self(request)
    }
}

/// Finds the trace a request belongs to, so its latency observation carries the trace ID as
/// an OpenMetrics exemplar.
///
/// Called once per request, when the layer's service is called (inside whatever span an
/// outer tracing layer has entered), and the ID is kept until the observation. Return `None`
/// unless the trace is **sampled**: an exemplar pointing at a trace that was never exported
/// leads nowhere.
///
/// Implemented for `()` (no exemplars), for [`TraceParent`] (the W3C `traceparent` header)
/// and for closures `FnMut(&Request<B>) -> Option<TraceId>`, e.g. one that reads the
/// current span's OpenTelemetry context.
pub trait TraceIdSource<B> {
    /// The sampled trace `request` belongs to, if any.
    fn trace_id(&mut self, request: &Request<B>) -> Option<TraceId>;
}

impl<B> TraceIdSource<B> for () {
    fn trace_id(&mut self, _: &Request<B>) -> Option<TraceId> {
        None
    }
}

impl<F, B> TraceIdSource<B> for F
where
    F: FnMut(&Request<B>) -> Option<TraceId>,
{
    fn trace_id(&mut self, request: &Request<B>) -> Option<TraceId> {
        self(request)
    }
}

/// A [`TraceIdSource`] reading the W3C `traceparent` header: the trace ID when the
/// `sampled` flag is set, `None` otherwise or when the header is malformed.
///
/// On a server this is the caller's trace, which a parent-based sampler continues; on a
/// client, put this layer inside the one that injects `traceparent`.
///
/// ```
/// use http::Request;
/// use tower_bulwark::metrics::{TraceIdSource, TraceParent};
///
/// let req = Request::get("/")
///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .body(())
///     .unwrap();
/// let id = TraceParent.trace_id(&req).unwrap();
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceParent;

impl<B> TraceIdSource<B> for TraceParent {
    fn trace_id(&mut self, request: &Request<B>) -> Option<TraceId> {
        let value = request.headers().get("traceparent")?.to_str().ok()?;
        parse_traceparent(value)
    }
}

/// `version-traceid-parentid-flags`; version `ff` is invalid, and version `00` has exactly
/// these four fields (later versions may append more).
fn parse_traceparent(value: &str) -> Option<TraceId> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") || !hex(parent_id, 16) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(flags, 2) || u8::from_str_radix(flags, 16).ok()? & 1 == 0 {
        return None;
    }
    if parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    TraceId::from_hex(trace_id)
}

/// Decides what kind of failure an inner service's error is ([`ErrorClass`]).
///
/// Implemented for `()` (every error is [`ErrorClass::Other`], label `error`) and for
/// closures `FnMut(&E) -> ErrorClass`. The closure is cloned into each response future, so it
/// should be cheap to clone (one capturing nothing is free).
///
/// With `tower::timeout` inside the layer (its error type is `BoxError`):
///
/// ```
/// use tower::BoxError;
/// use tower_bulwark::metrics::{ClassifyError, ErrorClass};
///
/// let mut classify = |e: &BoxError| {
///     if e.is::<tower::timeout::error::Elapsed>() {
///         ErrorClass::Timeout
///     } else {
///         ErrorClass::from_error(&**e)
///     }
/// };
/// let err: BoxError = tower::timeout::error::Elapsed::new().into();
/// assert_eq!(classify.classify_error(&err), ErrorClass::Timeout);
/// ```
pub trait ClassifyError<E> {
    /// The class of `error`.
    fn classify_error(&mut self, error: &E) -> ErrorClass;
}

impl<E> ClassifyError<E> for () {
    fn classify_error(&mut self, _: &E) -> ErrorClass {
        ErrorClass::Other
    }
}

impl<F, E> ClassifyError<E> for F
where
    F: FnMut(&E) -> ErrorClass,
{
    fn classify_error(&mut self, error: &E) -> ErrorClass {
        self(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ok = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(
            parse_traceparent(&ok).map(|t| t.to_string()),
            Some(id.into())
        );
        // Not sampled.
        assert_eq!(
            parse_traceparent(&format!("00-{id}-00f067aa0ba902b7-00")),
            None
        );
        // Zero trace ID, zero parent, bad version, bad lengths, extra fields on version 00.
        assert_eq!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            parse_traceparent(&format!("00-{id}-0000000000000000-01")),
            None
        );
        assert_eq!(
            parse_traceparent(&format!("ff-{id}-00f067aa0ba902b7-01")),
            None
        );
        assert_eq!(
            parse_traceparent(&format!("00-{id}-00f067aa0ba902b-01")),
            None
        );
        assert_eq!(
            parse_traceparent(&format!("00-{id}-00f067aa0ba902b7-01-x")),
            None
        );
        // A later version may append fields.
        assert!(parse_traceparent(&format!("01-{id}-00f067aa0ba902b7-03-x")).is_some());
        assert_eq!(parse_traceparent(""), None);
    }
}
