//! Bounded, asynchronous span export on a thread of its own.
//!
//! The SDK's `BatchSpanProcessor` is bounded too, but keeps its drop count private and logs
//! it only at shutdown. This one counts every dropped span, reports drops in the log at most
//! once a minute, and runs exports on a current-thread tokio runtime so async HTTP clients
//! (hyper's, reqwest's) work without the application's runtime.
//!
//! A request only ever pays for a `try_send` on a bounded channel: when the collector is
//! slow or down, the queue fills and further spans are dropped and counted, never waited
//! for.

use std::{
    fmt, io,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter, SpanProcessor},
};
use tracing::dispatcher::WeakDispatch;

use super::stats::{Counters, DropReporter};

const TARGET: &str = "tower_bulwark::trace::export";

/// Queue and batch settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) max_queue_size: usize,
    pub(crate) max_batch_size: usize,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl Default for Settings {
    /// The OpenTelemetry SDK's defaults (`OTEL_BSP_*`), with a shorter export timeout so a
    /// stalled collector holds the queue for less long.
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            max_batch_size: 512,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

// Spans are nearly every message; boxing them would cost an allocation per span.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Span(SpanData),
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
}

/// The span processor; see the module docs.
pub(crate) struct BoundedBatchProcessor {
    sender: SyncSender<Msg>,
    counters: Arc<Counters>,
    worker: Mutex<Option<JoinHandle<()>>>,
    is_shutdown: AtomicBool,
    timeout: Duration,
}

impl fmt::Debug for BoundedBatchProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBatchProcessor")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl BoundedBatchProcessor {
    /// Starts the export thread. `dispatch` is filled in once the subscriber exists; the
    /// thread logs through it (weakly held, so the subscriber can still be dropped).
    pub(crate) fn spawn<E>(
        exporter: E,
        settings: Settings,
        counters: Arc<Counters>,
        dispatch: Arc<OnceLock<WeakDispatch>>,
    ) -> io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (sender, receiver) = sync_channel(settings.max_queue_size.max(1));
        let worker = Worker {
            exporter,
            receiver,
            settings,
            counters: counters.clone(),
            dispatch,
            reporter: DropReporter::default(),
            last_error: None,
        };
        let handle = std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || worker.run(&runtime))?;
        Ok(Self {
            sender,
            counters,
            worker: Mutex::new(Some(handle)),
            is_shutdown: AtomicBool::new(false),
            timeout: settings.timeout,
        })
    }

    /// Sends a control message and waits for its answer, both within `timeout`. The queue
    /// may be full, so this retries rather than blocks.
    fn control(
        &self,
        make: impl Fn(SyncSender<OTelSdkResult>) -> Msg,
        timeout: Duration,
    ) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let (reply, answer) = sync_channel(1);
        let mut msg = make(reply);
        loop {
            match self.sender.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return Err(OTelSdkError::Timeout(timeout));
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(OTelSdkError::InternalFailure(
                        "the export thread has stopped".into(),
                    ));
                }
            }
        }
        match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure(
                "the export thread has stopped".into(),
            )),
        }
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.sender.try_send(Msg::Span(span)).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.is_shutdown.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        // One export may be under way, and one more is needed for what is queued.
        self.control(Msg::Flush, self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.is_shutdown.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let result = self.control(Msg::Shutdown, timeout);
        if result.is_ok()
            && let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take())
        {
            // The thread has answered and is returning; joining cannot block for long.
            let _ = handle.join();
        }
        result
    }
}

struct Worker<E> {
    exporter: E,
    receiver: Receiver<Msg>,
    settings: Settings,
    counters: Arc<Counters>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
    reporter: DropReporter,
    last_error: Option<String>,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, runtime: &tokio::runtime::Runtime) {
        // Nothing the exporter does (HTTP client spans, if any) may be traced: that would
        // feed spans back into this queue.
        let _suppressed = Context::enter_telemetry_suppressed_scope();
        let mut batch = Vec::with_capacity(self.settings.max_batch_size);
        let mut next_export = Instant::now() + self.settings.interval;
        loop {
            let wait = next_export.saturating_duration_since(Instant::now());
            let msg = self.receiver.recv_timeout(wait);
            let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
            let dispatch = dispatch.unwrap_or_default();
            let stop = tracing::dispatcher::with_default(&dispatch, || match msg {
                Ok(Msg::Span(span)) => {
                    batch.push(span);
                    if batch.len() >= self.settings.max_batch_size {
                        // Failures are counted and logged inside.
                        let _ = self.export(runtime, &mut batch);
                        next_export = Instant::now() + self.settings.interval;
                    }
                    false
                }
                Ok(Msg::Flush(reply)) => {
                    let result = self.export(runtime, &mut batch);
                    next_export = Instant::now() + self.settings.interval;
                    let _ = reply.try_send(result);
                    false
                }
                Ok(Msg::Shutdown(reply)) => {
                    let result = self.export(runtime, &mut batch);
                    let shutdown = self.exporter.shutdown_with_timeout(self.settings.timeout);
                    self.report(true);
                    let _ = reply.try_send(result.and(shutdown));
                    true
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export(runtime, &mut batch);
                    next_export = Instant::now() + self.settings.interval;
                    false
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.export(runtime, &mut batch);
                    let _ = self.exporter.shutdown_with_timeout(self.settings.timeout);
                    true
                }
            });
            if stop {
                return;
            }
            tracing::dispatcher::with_default(&dispatch, || self.report(false));
        }
    }

    /// Exports `batch` (emptying it) within the timeout. A failure drops the batch: retrying
    /// would hold the queue for a collector that is already failing.
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        batch: &mut Vec<SpanData>,
    ) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.settings.max_batch_size));
        let count = spans.len() as u64;
        let started = Instant::now();
        let timeout = self.settings.timeout;
        let result = runtime.block_on(async {
            tokio::time::timeout(timeout, self.exporter.export(spans))
                .await
                .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
        });
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(()) => {
                self.counters.exported.fetch_add(count, Ordering::Relaxed);
                tracing::debug!(target: TARGET, spans = count, elapsed_ms, "exported spans");
            }
            Err(error) => {
                self.counters
                    .export_failed
                    .fetch_add(count, Ordering::Relaxed);
                tracing::debug!(target: TARGET, spans = count, elapsed_ms, %error, "span export failed");
                self.last_error = Some(error.to_string());
            }
        }
        result
    }

    /// Logs dropped spans at most once a minute (and what is left at shutdown).
    fn report(&mut self, final_report: bool) {
        let stats = self.counters.snapshot();
        let due = self
            .reporter
            .due(Instant::now(), stats.dropped(), final_report);
        if let Some(dropped) = due {
            tracing::warn!(
                target: TARGET,
                dropped_spans = dropped,
                dropped_queue_full_total = stats.dropped_queue_full,
                dropped_export_failed_total = stats.dropped_export_failed,
                last_error = self.last_error.as_deref(),
                "spans were dropped: the trace collector is slow, down or overloaded",
            );
        }
    }
}
