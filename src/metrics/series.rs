//! The recording machinery shared by the server and client layers.
//!
//! Each `(method, route)` (server) or `operation` (client) gets one [`Series`]: handles to
//! its histogram and counters, fetched from the registered families once and kept, so a
//! request costs one lookup in a small table with a fast hasher instead of one SipHash
//! lookup per family. A [`Recorder`] travels with each request, from the response future
//! into the response body, and records exactly once: on completion, on failure, or (on drop)
//! as cancelled.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, OnceLock, PoisonError, RwLock},
};

use http::StatusCode;
use prometheus_client::metrics::{
    counter::Counter,
    exemplar::HistogramWithExemplars,
    family::{Family, MetricConstructor},
    gauge::Gauge,
};
use quanta::Instant;

use super::labels::{
    CallLabels, ErrorClass, ErrorKind, ErrorLabels, FxBuildHasher, LabelValue, MethodLabel, OTHER,
    OperationLabels, RequestLabels, RouteLabels, StatusLabel, TraceId, TraceLabel, UNMATCHED,
};

pub(crate) type DurationHistogram = HistogramWithExemplars<TraceLabel>;

/// Makes each series' histogram with the configured buckets.
#[derive(Clone, Debug)]
pub(crate) struct HistogramCtor(pub(crate) Arc<[f64]>);

impl MetricConstructor<DurationHistogram> for HistogramCtor {
    fn new_metric(&self) -> DurationHistogram {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

pub(crate) type DurationFamily<L> = Family<L, DurationHistogram, HistogramCtor>;

/// The server's registered families.
#[derive(Clone, Debug)]
pub(crate) struct ServerFamilies {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: DurationFamily<RouteLabels>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) in_flight: Gauge,
}

/// The client's registered families.
#[derive(Clone, Debug)]
pub(crate) struct ClientFamilies {
    pub(crate) calls: Family<CallLabels, Counter>,
    pub(crate) duration: DurationFamily<OperationLabels>,
    pub(crate) retries: Family<OperationLabels, Counter>,
}

#[derive(Clone, Debug)]
pub(crate) enum Families {
    Server(ServerFamilies),
    Client(ClientFamilies),
}

/// Ignores lock poisoning: every critical section here only pushes to a `Vec` or a map, so
/// a panic elsewhere cannot leave them inconsistent, and metrics must never take a service
/// down.
macro_rules! read {
    ($lock:expr) => {
        $lock.read().unwrap_or_else(PoisonError::into_inner)
    };
}
macro_rules! write {
    ($lock:expr) => {
        $lock.write().unwrap_or_else(PoisonError::into_inner)
    };
}

/// One route's or operation's metric handles.
pub(crate) struct Series {
    duration: DurationHistogram,
    /// Counters by status, filled in on first use. A series sees a handful of statuses, so a
    /// scan of slots that are written once and then only read: no lock on the hot path.
    statuses: [OnceLock<(StatusLabel, Counter)>; STATUS_SLOTS],
    side: Side,
}

/// Statuses cached per series; any beyond are counted through the family (slower, same
/// series).
const STATUS_SLOTS: usize = 16;

enum Side {
    Server {
        method: MethodLabel,
        route: LabelValue,
        requests: Family<RequestLabels, Counter>,
        errors_family: Family<ErrorLabels, Counter>,
        errors: [OnceLock<Counter>; ErrorKind::COUNT],
        in_flight: Gauge,
    },
    Client {
        operation: LabelValue,
        calls: Family<CallLabels, Counter>,
        retries: Counter,
    },
}

impl Series {
    fn new(families: &Families, method: Option<MethodLabel>, label: LabelValue) -> Self {
        match families {
            Families::Server(f) => {
                let method = method.unwrap_or(MethodLabel::Other);
                let duration = f.duration.get_or_create_owned(&RouteLabels {
                    method,
                    route: label.clone(),
                });
                Self {
                    duration,
                    statuses: Default::default(),
                    side: Side::Server {
                        method,
                        route: label,
                        requests: f.requests.clone(),
                        errors_family: f.errors.clone(),
                        errors: Default::default(),
                        in_flight: f.in_flight.clone(),
                    },
                }
            }
            Families::Client(f) => {
                let labels = OperationLabels { operation: label };
                Self {
                    duration: f.duration.get_or_create_owned(&labels),
                    statuses: Default::default(),
                    // Created now, so each operation shows `0` retries rather than no series.
                    side: Side::Client {
                        retries: f.retries.get_or_create_owned(&labels),
                        operation: labels.operation,
                        calls: f.calls.clone(),
                    },
                }
            }
        }
    }

    fn count(&self, status: StatusLabel) {
        for slot in &self.statuses {
            if let Some((s, counter)) = slot.get() {
                if *s == status {
                    counter.inc();
                    return;
                }
                continue;
            }
            // A free slot: claim it. Slots fill in order and never change, so a status can
            // only ever land in one slot, even when requests race to add it.
            let _ = slot.set((status, self.status_counter(status)));
            if let Some((s, counter)) = slot.get()
                && *s == status
            {
                counter.inc();
                return;
            }
        }
        self.status_counter(status).inc();
    }

    /// The counter of `status` in this series, from the registered family.
    fn status_counter(&self, status: StatusLabel) -> Counter {
        match &self.side {
            Side::Server {
                method,
                route,
                requests,
                ..
            } => requests.get_or_create_owned(&RequestLabels {
                method: *method,
                route: route.clone(),
                status,
            }),
            Side::Client {
                operation, calls, ..
            } => calls.get_or_create_owned(&CallLabels {
                operation: operation.clone(),
                status,
            }),
        }
    }

    fn count_error(&self, kind: ErrorKind) {
        if let Side::Server {
            method,
            route,
            errors_family,
            errors,
            ..
        } = &self.side
        {
            errors[kind.index()]
                .get_or_init(|| {
                    errors_family.get_or_create_owned(&ErrorLabels {
                        method: *method,
                        route: route.clone(),
                        kind,
                    })
                })
                .inc();
        }
    }

    pub(crate) fn count_retry(&self) {
        if let Side::Client { retries, .. } = &self.side {
            retries.inc();
        }
    }

    fn in_flight(&self) -> Option<&Gauge> {
        match &self.side {
            Side::Server { in_flight, .. } => Some(in_flight),
            Side::Client { .. } => None,
        }
    }
}

/// One table per method (the client uses the first), so a lookup hashes the label alone.
const METHOD_SLOTS: usize = 10;

fn slot(method: Option<MethodLabel>) -> usize {
    method.map_or(0, |m| m as usize)
}

#[derive(Default)]
struct Table {
    series: [HashMap<LabelValue, Arc<Series>, FxBuildHasher>; METHOD_SLOTS],
    /// Distinct routes or operations admitted, against the cap.
    labels: HashSet<LabelValue, FxBuildHasher>,
}

/// The table of series of one server or client handle.
pub(crate) struct SeriesMap {
    table: RwLock<Table>,
    families: Families,
    max_labels: usize,
}

impl SeriesMap {
    pub(crate) fn new(families: Families, max_labels: usize) -> Self {
        Self {
            table: RwLock::default(),
            families,
            max_labels,
        }
    }

    /// The series of `(method, label)`, made on first use. Past `max_labels` distinct labels,
    /// new labels go to `other`, so a misbehaving classifier cannot grow the series count
    /// (nor this table) without bound.
    pub(crate) fn get(&self, method: Option<MethodLabel>, label: &str) -> Arc<Series> {
        let slot = slot(method);
        let table = read!(self.table);
        if let Some(series) = table.series[slot].get(label) {
            return Arc::clone(series);
        }
        let reserved = label == UNMATCHED || label == OTHER;
        let mut label = label;
        if !reserved && !table.labels.contains(label) && table.labels.len() >= self.max_labels {
            label = OTHER;
            if let Some(series) = table.series[slot].get(label) {
                return Arc::clone(series);
            }
        }
        drop(table);

        let mut table = write!(self.table);
        let table = &mut *table;
        // Re-checked under the write lock: another request may have filled the slot.
        if let Some(series) = table.series[slot].get(label) {
            return Arc::clone(series);
        }
        let value = match label {
            UNMATCHED => LabelValue::from_static(UNMATCHED),
            OTHER => LabelValue::from_static(OTHER),
            _ if table.labels.contains(label) => LabelValue::new(label),
            _ if table.labels.len() >= self.max_labels => LabelValue::from_static(OTHER),
            _ => {
                let value = LabelValue::new(label);
                table.labels.insert(value.clone());
                value
            }
        };
        let families = &self.families;
        let series = table.series[slot]
            .entry(value)
            .or_insert_with_key(|label| Arc::new(Series::new(families, method, label.clone())));
        Arc::clone(series)
    }
}

impl fmt::Debug for SeriesMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = read!(self.table);
        f.debug_struct("SeriesMap")
            .field(
                "series",
                &table.series.iter().map(HashMap::len).sum::<usize>(),
            )
            .field("max_labels", &self.max_labels)
            .finish_non_exhaustive()
    }
}

/// One request's measurement: records exactly once, and keeps the in-flight gauge up while
/// it lives.
pub(crate) struct Recorder {
    series: Arc<Series>,
    start: Instant,
    trace_id: Option<TraceId>,
    status: Option<StatusCode>,
    done: bool,
}

impl Recorder {
    pub(crate) fn start(series: Arc<Series>, trace_id: Option<TraceId>) -> Self {
        if let Some(gauge) = series.in_flight() {
            gauge.inc();
        }
        Self {
            series,
            start: Instant::now(),
            trace_id,
            status: None,
            done: false,
        }
    }

    /// The response head arrived; the request completes with the end of its body.
    pub(crate) fn on_response(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    /// The body was read to its end: the request counts under its status code.
    pub(crate) fn complete(&mut self) {
        match self.status {
            Some(status) => {
                self.finish(StatusLabel::code(status), ErrorKind::of_status(status));
            }
            // Not reachable through the layers (the head always comes first); still counted.
            None => self.finish(StatusLabel::ERROR, Some(ErrorKind::Error)),
        }
    }

    /// The inner service failed without a response.
    pub(crate) fn fail(&mut self, class: ErrorClass) {
        self.finish(
            StatusLabel::of_error(class),
            Some(ErrorKind::of_error(class)),
        );
    }

    /// The body failed after the head was sent.
    pub(crate) fn body_failed(&mut self) {
        self.finish(StatusLabel::ERROR, Some(ErrorKind::BodyError));
    }

    fn finish(&mut self, status: StatusLabel, error: Option<ErrorKind>) {
        if self.done {
            return;
        }
        self.done = true;
        let seconds = Instant::now().duration_since(self.start).as_secs_f64();
        // No exemplar timestamp: prometheus-client panics encoding one before 1970, and
        // Prometheus uses the scrape time instead.
        let exemplar = self.trace_id.take().map(|trace_id| TraceLabel { trace_id });
        self.series.duration.observe(seconds, exemplar, None);
        self.series.count(status);
        if let Some(kind) = error {
            self.series.count_error(kind);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before completing: the caller went away. Not observed in the latency
            // histogram, whose meaning is "time to serve a response".
            self.done = true;
            self.series.count(StatusLabel::CANCELLED);
        }
        if let Some(gauge) = self.series.in_flight() {
            gauge.dec();
        }
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("start", &self.start)
            .field("trace_id", &self.trace_id)
            .field("status", &self.status)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
