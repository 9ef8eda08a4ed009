//! The metric handles: registered into a caller's [`Registry`], cheap to clone, and shared by
//! every layer and service made from them.

use std::sync::Arc;

use prometheus_client::{
    metrics::{family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::{
    ClientMetricsLayer, LabelValue, ServerMetricsLayer, TrackConnections,
    labels::{CheckLabels, sanitize_buckets},
    series::{ClientFamilies, Families, HistogramCtor, SeriesMap, ServerFamilies},
};

/// The default cap on distinct `route` or `operation` values per handle.
pub const DEFAULT_MAX_LABELS: usize = 256;

/// Server metrics: the `http_*` families, registered into a caller's [`Registry`].
///
/// Clones share the same series. Make a [`ServerMetricsLayer`] with [`layer`](Self::layer),
/// and count connections with [`track_connections`](Self::track_connections) or
/// [`connection_guard`](Self::connection_guard). See the [module docs](super) for the series
/// and their labels.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    pub(crate) series: Arc<SeriesMap>,
    connections: Gauge,
}

impl ServerMetrics {
    /// Registers the server metrics with the default buckets and cap.
    pub fn register(registry: &mut Registry) -> Self {
        Self::builder().register(registry)
    }

    /// A builder, to set the histogram buckets or the route cap before registering.
    pub fn builder() -> ServerMetricsBuilder {
        ServerMetricsBuilder::default()
    }

    /// A layer recording into these metrics.
    pub fn layer(&self) -> ServerMetricsLayer {
        ServerMetricsLayer::new(self.clone())
    }

    /// Counts one open connection in `http_active_connections` until the guard is dropped.
    ///
    /// For a hand-written accept loop: make the guard when a connection is accepted and move
    /// it into the task that serves the connection.
    ///
    /// ```
    /// # use prometheus_client::registry::Registry;
    /// # use tower_bulwark::metrics::ServerMetrics;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let metrics = ServerMetrics::register(&mut Registry::default());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let addr = listener.local_addr()?;
    /// # tokio::spawn(async move { tokio::net::TcpStream::connect(addr).await });
    /// # for _ in 0..1 {
    /// let (stream, _peer) = listener.accept().await?;
    /// let guard = metrics.connection_guard();
    /// tokio::spawn(async move {
    ///     let _guard = guard; // dropped when the connection is done
    ///     // hyper::server::conn::http1::Builder::new().serve_connection(..).await
    ///     drop(stream);
    /// });
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_guard(&self) -> ConnectionGuard {
        ConnectionGuard::new(self.connections.clone())
    }

    /// Wraps a make-service (e.g. `Router::into_make_service()` for `axum::serve`) so that
    /// every connection it serves is counted in `http_active_connections` until the
    /// connection's service, and every clone of it, is dropped: when the connection closes
    /// and its last request has finished.
    ///
    /// ```no_run
    /// # use prometheus_client::registry::Registry;
    /// # use tower_bulwark::metrics::ServerMetrics;
    /// # async fn run() -> std::io::Result<()> {
    /// # let metrics = ServerMetrics::register(&mut Registry::default());
    /// let app = axum::Router::new().layer(metrics.layer());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// axum::serve(listener, metrics.track_connections(app.into_make_service())).await
    /// # }
    /// ```
    pub fn track_connections<M>(&self, make_service: M) -> TrackConnections<M> {
        TrackConnections::new(make_service, self.connections.clone())
    }
}

/// Builder of [`ServerMetrics`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerMetricsBuilder {
    buckets: Arc<[f64]>,
    max_routes: usize,
}

impl Default for ServerMetricsBuilder {
    fn default() -> Self {
        Self {
            buckets: sanitize_buckets(super::DEFAULT_LATENCY_BUCKETS.iter().copied()),
            max_routes: DEFAULT_MAX_LABELS,
        }
    }
}

impl ServerMetricsBuilder {
    /// Sets the upper bounds, in seconds, of `http_request_duration_seconds`'s buckets
    /// (`+Inf` is implied). Non-finite bounds are dropped and the rest sorted; an empty set
    /// means the defaults, [`DEFAULT_LATENCY_BUCKETS`](super::DEFAULT_LATENCY_BUCKETS).
    pub fn duration_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.buckets = sanitize_buckets(buckets);
        self
    }

    /// Caps the distinct `route` values (default [`DEFAULT_MAX_LABELS`]); requests with a new
    /// route past the cap count under `route="other"`. `unmatched` and `other` do not count
    /// against it.
    pub fn max_routes(mut self, max_routes: usize) -> Self {
        self.max_routes = max_routes;
        self
    }

    /// Registers the families into `registry` (or a sub-registry, for a prefix) and returns
    /// the handle.
    pub fn register(self, registry: &mut Registry) -> ServerMetrics {
        calibrate_clock();
        let families = ServerFamilies {
            requests: Family::default(),
            duration: Family::new_with_constructor(HistogramCtor(self.buckets)),
            errors: Family::default(),
            in_flight: Gauge::default(),
        };
        let connections = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route template and status code or outcome",
            families.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from receiving an HTTP request to the end of its response body",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests received whose response has not finished",
            families.in_flight.clone(),
        );
        registry.register(
            "http_active_connections",
            "Open HTTP connections, where the server reports them",
            connections.clone(),
        );
        registry.register(
            "http_errors",
            "HTTP requests that failed, by method, route template and kind",
            families.errors.clone(),
        );
        ServerMetrics {
            series: Arc::new(SeriesMap::new(Families::Server(families), self.max_routes)),
            connections,
        }
    }
}

/// quanta calibrates its TSC clock on first use (about a millisecond): do it at start-up,
/// not in the first request.
fn calibrate_clock() {
    let _ = quanta::Instant::now();
}

/// Client metrics: the `backend_api_*` families, registered into a caller's [`Registry`].
///
/// Clones share the same series. Make a [`ClientMetricsLayer`] with [`layer`](Self::layer).
#[derive(Clone, Debug)]
pub struct ClientMetrics {
    pub(crate) series: Arc<SeriesMap>,
}

impl ClientMetrics {
    /// Registers the client metrics with the default buckets and cap.
    pub fn register(registry: &mut Registry) -> Self {
        Self::builder().register(registry)
    }

    /// A builder, to set the histogram buckets or the operation cap before registering.
    pub fn builder() -> ClientMetricsBuilder {
        ClientMetricsBuilder::default()
    }

    /// A layer recording into these metrics.
    pub fn layer(&self) -> ClientMetricsLayer {
        ClientMetricsLayer::new(self.clone())
    }

    /// Counts one retry of `operation` in `backend_api_retries_total`.
    ///
    /// For retry loops outside a tower stack. A tower retry policy can instead mark each
    /// resent request with [`RetryAttempt`], which the layer counts.
    pub fn record_retry(&self, operation: impl Into<LabelValue>) {
        self.series
            .get(None, operation.into().as_str())
            .count_retry();
    }
}

/// Builder of [`ClientMetrics`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientMetricsBuilder {
    buckets: Arc<[f64]>,
    max_operations: usize,
}

impl Default for ClientMetricsBuilder {
    fn default() -> Self {
        Self {
            buckets: sanitize_buckets(super::DEFAULT_LATENCY_BUCKETS.iter().copied()),
            max_operations: DEFAULT_MAX_LABELS,
        }
    }
}

impl ClientMetricsBuilder {
    /// Sets the upper bounds, in seconds, of `backend_api_duration_seconds`'s buckets, as
    /// [`ServerMetricsBuilder::duration_buckets`] does.
    pub fn duration_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        self.buckets = sanitize_buckets(buckets);
        self
    }

    /// Caps the distinct `operation` values (default [`DEFAULT_MAX_LABELS`]); calls with a
    /// new operation past the cap count under `operation="other"`.
    pub fn max_operations(mut self, max_operations: usize) -> Self {
        self.max_operations = max_operations;
        self
    }

    /// Registers the families into `registry` and returns the handle.
    pub fn register(self, registry: &mut Registry) -> ClientMetrics {
        calibrate_clock();
        let families = ClientFamilies {
            calls: Family::default(),
            duration: Family::new_with_constructor(HistogramCtor(self.buckets)),
            retries: Family::default(),
        };
        registry.register(
            "backend_api_calls",
            "Calls to backend APIs, by operation and status code or outcome",
            families.calls.clone(),
        );
        registry.register_with_unit(
            "backend_api_duration",
            "Time from sending a backend API request to the end of its response body",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "backend_api_retries",
            "Backend API requests that were retries of an earlier attempt, by operation",
            families.retries.clone(),
        );
        ClientMetrics {
            series: Arc::new(SeriesMap::new(
                Families::Client(families),
                self.max_operations,
            )),
        }
    }
}

/// Marks a client request as a resend: attempt `0` is the first, `1` the first retry, and so
/// on. The client layer counts a retry in `backend_api_retries_total` for every request whose
/// attempt is 1 or more.
///
/// A tower `retry::Policy` sets it in `clone_request`:
///
/// ```
/// use tower_bulwark::metrics::RetryAttempt;
///
/// let mut req = http::Request::get("http://backend/tasks").body(()).unwrap();
/// let attempt = req.extensions().get::<RetryAttempt>().map_or(0, |a| a.get());
/// req.extensions_mut().insert(RetryAttempt::new(attempt + 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetryAttempt(u32);

impl RetryAttempt {
    /// Attempt number `attempt` (0 for the first).
    #[must_use]
    pub const fn new(attempt: u32) -> Self {
        Self(attempt)
    }

    /// The attempt number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether this is a resend (attempt 1 or more).
    #[must_use]
    pub const fn is_retry(self) -> bool {
        self.0 > 0
    }
}

/// Counts one open connection in `http_active_connections` while it lives. Made by
/// [`ServerMetrics::connection_guard`].
#[derive(Debug)]
#[must_use = "the connection is counted only while the guard lives"]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl ConnectionGuard {
    pub(crate) fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The `health_check_status{check}` gauge: 1 when the check passes, 0 when it fails.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_bulwark::metrics::HealthMetrics;
///
/// let mut registry = Registry::default();
/// let health = HealthMetrics::register(&mut registry);
/// health.set("backend", true);
/// health.set("database", false);
/// ```
#[derive(Clone, Debug)]
pub struct HealthMetrics {
    status: Family<CheckLabels, Gauge>,
}

impl HealthMetrics {
    /// Registers `health_check_status` into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let status = Family::default();
        registry.register(
            "health_check_status",
            "Whether a health check passes (1) or fails (0), by check",
            status.clone(),
        );
        Self { status }
    }

    /// Records the latest result of `check` (a name from a fixed set: each is a series).
    pub fn set(&self, check: impl Into<LabelValue>, healthy: bool) {
        let labels = CheckLabels {
            check: check.into(),
        };
        self.status.get_or_create(&labels).set(i64::from(healthy));
    }
}

/// All of this module's HTTP metrics, registered under one prefix.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use tower_bulwark::metrics::Metrics;
///
/// let mut registry = Registry::default();
/// let metrics = Metrics::builder().prefix("taskman").register(&mut registry);
/// metrics.health().set("backend", true);
///
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("taskman_http_requests_in_flight 0"));
/// assert!(text.contains("taskman_health_check_status{check=\"backend\"} 1"));
/// // A family appears with its first series.
/// assert!(!text.contains("taskman_http_requests_total"));
/// ```
#[derive(Clone, Debug)]
pub struct Metrics {
    server: ServerMetrics,
    client: ClientMetrics,
    health: HealthMetrics,
}

impl Metrics {
    /// A builder, to set the prefix and the server and client options.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::default()
    }

    /// The server metrics.
    #[must_use]
    pub fn server(&self) -> &ServerMetrics {
        &self.server
    }

    /// The client metrics.
    #[must_use]
    pub fn client(&self) -> &ClientMetrics {
        &self.client
    }

    /// The health check gauge.
    #[must_use]
    pub fn health(&self) -> &HealthMetrics {
        &self.health
    }
}

/// Builder of [`Metrics`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MetricsBuilder {
    prefix: Option<String>,
    server: ServerMetricsBuilder,
    client: ClientMetricsBuilder,
}

impl MetricsBuilder {
    /// Prefixes every name with `prefix` and `_` (`taskman` gives
    /// `taskman_http_requests_total`). Empty means no prefix, the default.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// Sets the server options.
    pub fn server(mut self, server: ServerMetricsBuilder) -> Self {
        self.server = server;
        self
    }

    /// Sets the client options.
    pub fn client(mut self, client: ClientMetricsBuilder) -> Self {
        self.client = client;
        self
    }

    /// Registers everything into `registry`, under the prefix if one was set.
    pub fn register(self, registry: &mut Registry) -> Metrics {
        let registry = match &self.prefix {
            Some(prefix) => registry.sub_registry_with_prefix(prefix),
            None => registry,
        };
        Metrics {
            server: self.server.register(registry),
            client: self.client.register(registry),
            health: HealthMetrics::register(registry),
        }
    }
}
