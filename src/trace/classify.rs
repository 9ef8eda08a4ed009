//! The layers' hook: the route template of a request.

use std::{borrow::Cow, fmt};

use http::Request;

/// Names a request's route: the template it matched, such as `/tasks/{id}` on a server, or
/// the operation it performs, such as `/tasks/{id}` or `get_task`, on a client.
///
/// It becomes `http.route` (server) or `url.template` (client) and the second half of the
/// span name, `{method} {route}`. Return a template from a **bounded** set, never the raw
/// path: span names are grouped by backends and must stay low-cardinality. Return `None`
/// when there is none; the span is then named `{method}` alone, as the OpenTelemetry HTTP
/// conventions say.
///
/// Implemented for `()` (always `None`) and for closures
/// `FnMut(&Request<B>) -> Option<Route>`. With axum, read the `MatchedPath` extension the
/// router sets before it calls a route's layers (so add the layer with `Router::layer`);
/// this crate does not depend on axum:
///
/// ```
/// use axum::{body::Body, extract::MatchedPath};
/// use http::Request;
/// use tower_bulwark::trace::{ClassifyRoute, Route};
///
/// let mut by_matched_path = |req: &Request<Body>| {
///     req.extensions().get::<MatchedPath>().map(|p| Route::new(p.as_str()))
/// };
/// let req = Request::get("/tasks/42").body(Body::empty()).unwrap();
/// assert_eq!(by_matched_path.route(&req), None); // no router ran
/// ```
pub trait ClassifyRoute<B> {
    /// The route template of `request`, or `None`.
    fn route(&mut self, request: &Request<B>) -> Option<Route>;
}

impl<B> ClassifyRoute<B> for () {
    fn route(&mut self, _: &Request<B>) -> Option<Route> {
        None
    }
}

impl<F, B> ClassifyRoute<B> for F
where
    F: FnMut(&Request<B>) -> Option<Route>,
{
    fn route(&mut self, request: &Request<B>) -> Option<Route> {
        self(request)
    }
}

/// A route template or operation name, as returned by [`ClassifyRoute`].
///
/// ```
/// use tower_bulwark::trace::Route;
///
/// let fixed = Route::from_static("/tasks/{id}"); // no allocation
/// let owned = Route::new(String::from("/tasks/{id}"));
/// assert_eq!(fixed, owned);
/// assert_eq!(fixed.as_str(), "/tasks/{id}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route(Cow<'static, str>);

impl Route {
    /// A route from a string constant.
    #[must_use]
    pub const fn from_static(route: &'static str) -> Self {
        Self(Cow::Borrowed(route))
    }

    /// A route from any string.
    #[must_use]
    pub fn new(route: impl Into<String>) -> Self {
        Self(Cow::Owned(route.into()))
    }

    /// The route as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Route {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Route {
    fn from(route: &'static str) -> Self {
        Self::from_static(route)
    }
}

impl From<String> for Route {
    fn from(route: String) -> Self {
        Self(Cow::Owned(route))
    }
}
