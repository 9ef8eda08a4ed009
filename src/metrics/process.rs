//! Process and Tokio runtime metrics, read at scrape time, and the scheduling-lag probe.

use std::{fmt, time::Duration};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType, TypedMetric, counter::ConstCounter, gauge::ConstGauge, histogram::Histogram,
    },
    registry::{Registry, Unit},
};
use tokio::{runtime::Handle, task::JoinHandle};

/// The default buckets of `tokio_scheduling_lag_seconds`, in seconds. Tokio's timer has a
/// 1 ms resolution, so a healthy runtime's ticks land in the first one or two.
pub const DEFAULT_LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A prometheus-client [`Collector`] of process and Tokio runtime metrics, read on every
/// scrape, plus the histogram of the scheduling-lag probe ([`start`](Self::start)).
///
/// | name | type | meaning |
/// |---|---|---|
/// | `process_resident_memory_bytes` | gauge | resident set size |
/// | `process_virtual_memory_bytes` | gauge | virtual memory size |
/// | `process_cpu_seconds_total` | counter | user + system CPU time |
/// | `process_open_fds` | gauge | open file descriptors |
/// | `process_max_fds` | gauge | the soft limit on open file descriptors |
/// | `process_start_time_seconds` | gauge | start time, seconds since the Unix epoch |
/// | `memory_usage_bytes{type="rss"\|"virtual"}` | gauge | the same two memory sizes; only with [`with_memory_usage_bytes`](Self::with_memory_usage_bytes) |
/// | `tokio_workers` | gauge | the runtime's worker threads |
/// | `tokio_alive_tasks` | gauge | tasks spawned and not yet finished |
/// | `tokio_global_queue_depth` | gauge | tasks waiting in the runtime's global queue |
/// | `tokio_scheduling_lag_seconds` | histogram | how late the probe's periodic tick fires |
///
/// The `process_*` metrics follow the Prometheus client conventions and come from `/proc`;
/// on other systems, or if `/proc` cannot be read, they are left out (never reported as 0).
/// The `tokio_*` ones need a runtime: the one current when the collector is made, or the
/// one given to [`with_runtime`](Self::with_runtime); without one they are left out.
///
/// Register it in the root registry for the conventional unprefixed names, or in a prefixed
/// sub-registry to prefix them too.
///
/// ```
/// use std::time::Duration;
/// use prometheus_client::registry::Registry;
/// use tower_bulwark::metrics::ProcessCollector;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut registry = Registry::default();
/// let collector = ProcessCollector::new();
/// collector.register(&mut registry);
/// let task = collector.start(Duration::from_millis(100)).expect("inside a runtime");
///
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("tokio_workers 1"));
/// # #[cfg(target_os = "linux")]
/// assert!(text.contains("process_resident_memory_bytes "));
///
/// task.stop(); // at shutdown; logs "Stopping metrics collection"
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ProcessCollector {
    runtime: Option<Handle>,
    lag: Histogram,
    memory_usage_bytes: bool,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessCollector {
    /// A collector of the current Tokio runtime, if any, with the default lag buckets.
    #[must_use]
    pub fn new() -> Self {
        Self {
            runtime: Handle::try_current().ok(),
            lag: Histogram::new(DEFAULT_LAG_BUCKETS.iter().copied()),
            memory_usage_bytes: false,
        }
    }

    /// Reports and probes `runtime` instead of the current one.
    #[must_use]
    pub fn with_runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Sets the buckets of `tokio_scheduling_lag_seconds`, in seconds (sanitised as the
    /// latency buckets are). Call before [`register`](Self::register) and
    /// [`start`](Self::start): it makes a new, empty histogram.
    #[must_use]
    pub fn lag_buckets(mut self, buckets: impl IntoIterator<Item = f64>) -> Self {
        let buckets = super::labels::sanitize_buckets(buckets);
        self.lag = Histogram::new(buckets.iter().copied());
        self
    }

    /// Also reports `memory_usage_bytes{type="rss"|"virtual"}`, for dashboards built on that
    /// older name; `process_resident_memory_bytes` and `process_virtual_memory_bytes` carry
    /// the same values and are its successors.
    #[must_use]
    pub fn with_memory_usage_bytes(mut self) -> Self {
        self.memory_usage_bytes = true;
        self
    }

    /// Registers a clone of this collector into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// Starts the scheduling-lag probe: a task that sleeps for `interval` (at least 1 ms),
    /// again and again, and observes how much later than asked it wakes. That delay is the
    /// time the runtime took to get to a ready task: the analogue of Node's event-loop lag.
    /// A busy or blocked runtime shows up in the high buckets.
    ///
    /// The probe runs until the returned [`CollectionTask`] is stopped or dropped. Fails only
    /// if there is no runtime (none given and none current); the runtime needs its time
    /// driver (`enable_all`, as `#[tokio::main]` sets up).
    pub fn start(
        &self,
        interval: Duration,
    ) -> Result<CollectionTask, tokio::runtime::TryCurrentError> {
        let runtime = match &self.runtime {
            Some(handle) => handle.clone(),
            None => Handle::try_current()?,
        };
        let interval = interval.max(Duration::from_millis(1));
        let lag = self.lag.clone();
        let task = runtime.spawn(async move {
            loop {
                let deadline = tokio::time::Instant::now() + interval;
                tokio::time::sleep_until(deadline).await;
                let late = tokio::time::Instant::now().saturating_duration_since(deadline);
                lag.observe(late.as_secs_f64());
            }
        });
        Ok(CollectionTask { task: Some(task) })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let bytes = Unit::Bytes;
        let seconds = Unit::Seconds;
        let stats = ProcStats::read();
        if let Some(v) = stats.rss_bytes {
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size",
                Some(&bytes),
                v,
            )?;
        }
        if let Some(v) = stats.virtual_bytes {
            gauge(
                &mut encoder,
                "process_virtual_memory",
                "Virtual memory size",
                Some(&bytes),
                v,
            )?;
        }
        if let Some(v) = stats.cpu_seconds {
            let metric = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&seconds),
                metric.metric_type(),
            )?;
            metric.encode(m)?;
        }
        if let Some(v) = stats.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                None,
                v,
            )?;
        }
        if let Some(v) = stats.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                v,
            )?;
        }
        if let Some(v) = stats.start_time_seconds {
            gauge(
                &mut encoder,
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(&seconds),
                v,
            )?;
        }
        if self.memory_usage_bytes && (stats.rss_bytes.is_some() || stats.virtual_bytes.is_some()) {
            let mut m = encoder.encode_descriptor(
                "memory_usage",
                "Memory usage by type (rss, virtual); succeeded by process_resident_memory_bytes and process_virtual_memory_bytes",
                Some(&bytes),
                MetricType::Gauge,
            )?;
            for (kind, value) in [("rss", stats.rss_bytes), ("virtual", stats.virtual_bytes)] {
                if let Some(v) = value {
                    let labels = [("type", kind)];
                    ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(runtime) = &self.runtime {
            let rt = runtime.metrics();
            gauge(
                &mut encoder,
                "tokio_workers",
                "Worker threads of the Tokio runtime",
                None,
                as_i64(rt.num_workers()),
            )?;
            gauge(
                &mut encoder,
                "tokio_alive_tasks",
                "Tasks alive in the Tokio runtime",
                None,
                as_i64(rt.num_alive_tasks()),
            )?;
            gauge(
                &mut encoder,
                "tokio_global_queue_depth",
                "Tasks waiting in the Tokio runtime's global queue",
                None,
                as_i64(rt.global_queue_depth()),
            )?;
        }
        let m = encoder.encode_descriptor(
            "tokio_scheduling_lag",
            "How late the scheduling-lag probe's periodic tick fired",
            Some(&seconds),
            Histogram::TYPE,
        )?;
        self.lag.encode(m)
    }
}

fn gauge<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(m)
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The running scheduling-lag probe made by [`ProcessCollector::start`]. Stopping or
/// dropping it ends the task and logs `Stopping metrics collection` at INFO.
#[derive(Debug)]
#[must_use = "dropping the handle stops the probe at once"]
pub struct CollectionTask {
    task: Option<JoinHandle<()>>,
}

impl CollectionTask {
    /// Stops the probe.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for CollectionTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            tracing::info!("Stopping metrics collection");
        }
    }
}

/// What `/proc` tells about this process; `None` for whatever could not be read.
#[derive(Debug, Default, PartialEq)]
struct ProcStats {
    rss_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl ProcStats {
    #[cfg(target_os = "linux")]
    fn read() -> Self {
        use std::fs::{read_dir, read_to_string};
        let status = read_to_string("/proc/self/status").ok();
        let stat = read_to_string("/proc/self/stat").ok();
        let boot = read_to_string("/proc/stat").ok();
        let times = stat.as_deref().and_then(parse_stat_times);
        let boot_time = boot.as_deref().and_then(parse_boot_time);
        Self {
            rss_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmRSS:"))
                .map(|k| k * 1024),
            virtual_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmSize:"))
                .map(|k| k * 1024),
            cpu_seconds: times.map(|t| t.cpu_ticks as f64 / USER_HZ),
            start_time_seconds: times
                .zip(boot_time)
                .map(|(t, boot)| boot as f64 + t.start_ticks as f64 / USER_HZ),
            open_fds: read_dir("/proc/self/fd").ok().map(|d| as_i64(d.count())),
            max_fds: read_to_string("/proc/self/limits")
                .ok()
                .as_deref()
                .and_then(parse_max_fds),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Self {
        Self::default()
    }
}

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux architecture
/// Rust targets (reading `sysconf(_SC_CLK_TCK)` would need `unsafe` FFI).
#[cfg(any(target_os = "linux", test))]
const USER_HZ: f64 = 100.0;

#[cfg(any(target_os = "linux", test))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct StatTimes {
    cpu_ticks: u64,
    start_ticks: u64,
}

/// `utime + stime` and `starttime` from `/proc/self/stat`. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from the last `)`.
#[cfg(any(target_os = "linux", test))]
fn parse_stat_times(stat: &str) -> Option<StatTimes> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTimes {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

#[cfg(any(target_os = "linux", test))]
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
#[cfg(any(target_os = "linux", test))]
fn status_kib(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` if unlimited.
#[cfg(any(target_os = "linux", test))]
fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    8 0 123456 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat_times(stat),
            Some(StatTimes {
                cpu_ticks: 300,
                start_ticks: 123456
            })
        );
        assert_eq!(parse_stat_times("garbage"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        let status = "Name:\tx\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSize:"), Some(123_456));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds("Max open files  unlimited unlimited files\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let stats = ProcStats::read();
        assert!(stats.rss_bytes.is_some_and(|v| v > 0));
        assert!(stats.virtual_bytes >= stats.rss_bytes);
        assert!(stats.open_fds.is_some_and(|v| v >= 3));
        assert!(stats.cpu_seconds.is_some());
        let start = stats.start_time_seconds.unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        assert!(
            start > 1.0e9 && start <= now + 1.0,
            "start {start}, now {now}"
        );
    }

    #[tokio::test]
    async fn lag_probe_observes_and_stops() {
        let collector = ProcessCollector::new().lag_buckets([0.001, 0.5]);
        let mut registry = Registry::default();
        collector.register(&mut registry);
        let task = collector.start(Duration::from_millis(5)).unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let count = |registry: &Registry| -> u64 {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("tokio_scheduling_lag_seconds_count "))
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        let ticks = count(&registry);
        assert!(ticks >= 3, "{ticks} ticks");
        task.stop();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(count(&registry), ticks, "the probe stopped");
    }

    #[test]
    fn without_runtime_start_fails_and_encode_skips_tokio() {
        let collector = ProcessCollector::new();
        assert!(collector.start(Duration::from_millis(10)).is_err());
        let mut registry = Registry::default();
        collector.with_memory_usage_bytes().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("tokio_workers"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("memory_usage_bytes{type=\"rss\"} "), "{text}");
    }
}
