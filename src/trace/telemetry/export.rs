//! Bounded, asynchronous span export on a thread of its own.
//!
//! The SDK's `BatchSpanProcessor` is bounded too, but keeps its drop count private and logs
//! it only at shutdown. This one counts every dropped span, reports drops in the log at most
//! once a minute, and runs exports on a current-thread tokio runtime so async HTTP clients
//! (hyper's, reqwest's) work without the application's runtime.
//!
//! A request only ever pays for a `try_send` on a bounded channel and an atomic add: when
//! the collector is slow or down, the queue fills and further spans are dropped and counted,
//! never waited for. The thread sleeps until a batch is full, the interval is up, or a flush
//! or shutdown asks for it, so it is woken once per batch rather than once per span.

use std::{
    fmt,
    future::Future,
    io,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{
            Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError, channel,
            sync_channel,
        },
    },
    thread::{JoinHandle, Thread},
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

impl Settings {
    /// How many queued spans wake the export thread and are exported at once: a full batch,
    /// but never more than half the queue, so that the queue does not fill while the thread
    /// waits for a batch it cannot get.
    fn wake_at(&self) -> usize {
        self.max_batch_size
            .min(self.max_queue_size.div_ceil(2))
            .max(1)
    }
}

/// A span waiting for export: the SDK's data, or one the span recorder has already written
/// in OTLP protobuf (see `otlp::EncodedSpan`).
pub(crate) enum Queued {
    /// Boxed: encoded spans, the common case, then move 24 bytes through the queue.
    Data(Box<SpanData>),
    Encoded(Vec<u8>),
}

/// What the export thread hands each batch to.
pub(crate) trait Export: Send + 'static {
    fn export(&self, batch: Vec<Queued>) -> impl Future<Output = OTelSdkResult> + Send;
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult;
}

/// Any `opentelemetry_sdk` exporter. Only the SDK's spans reach it: encoded spans are made
/// only for this crate's OTLP exporter.
pub(crate) struct SdkExporter<E>(pub(crate) E);

impl<E: SpanExporter + 'static> Export for SdkExporter<E> {
    fn export(&self, batch: Vec<Queued>) -> impl Future<Output = OTelSdkResult> + Send {
        let spans = batch
            .into_iter()
            .filter_map(|queued| match queued {
                Queued::Data(span) => Some(*span),
                Queued::Encoded(_) => None,
            })
            .collect();
        self.0.export(spans)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// The sending end of the export queue, shared by the processor (the SDK's spans) and the
/// span recorder (encoded spans).
pub(crate) struct Enqueue {
    spans: SyncSender<Queued>,
    /// Spans sent and not yet taken by the thread (an upper bound: counted before sending).
    queued: Arc<AtomicUsize>,
    wake_at: usize,
    thread: Thread,
    counters: Arc<Counters>,
}

impl fmt::Debug for Enqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueue")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Enqueue {
    /// Queues a span without waiting: when the queue is full the span is dropped and counted.
    pub(crate) fn push(&self, span: Queued) {
        // Counted before it is sent, so that the thread, which subtracts what it takes, never
        // sees fewer than it took.
        let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        match self.spans.try_send(span) {
            Ok(()) => {
                if queued == self.wake_at {
                    // Only the span that completes a batch wakes the thread (an unpark is a
                    // system call when the thread sleeps); the others wait for it or for the
                    // interval.
                    self.thread.unpark();
                }
            }
            Err(error) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                // After a shutdown the thread is gone: spans that end then are not exported,
                // as the SDK does not export spans that end after its shutdown.
                if matches!(error, TrySendError::Full(_)) {
                    self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// What the export thread is asked besides exporting spans.
enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
    /// The processor was dropped without a shutdown: export what is queued and stop.
    Stop,
}

/// The span processor; see the module docs.
///
/// Spans go through a bounded channel that the export thread drains; the thread is woken
/// only when a batch is full (or for a flush or shutdown), and otherwise sleeps until the
/// export interval is up. Waking it for every span, as a blocking `recv` does, cost a futex
/// wake and a context switch per span: on a busy 2-core server that was a few percent of
/// all CPU time.
pub(crate) struct BoundedBatchProcessor {
    enqueue: Arc<Enqueue>,
    control: Sender<Control>,
    worker: Mutex<Option<JoinHandle<()>>>,
    is_shutdown: AtomicBool,
    timeout: Duration,
}

impl fmt::Debug for BoundedBatchProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBatchProcessor")
            .field("counters", &self.enqueue.counters)
            .finish_non_exhaustive()
    }
}

impl BoundedBatchProcessor {
    /// Starts the export thread. `dispatch` is filled in once the subscriber exists; the
    /// thread logs through it (weakly held, so the subscriber can still be dropped).
    pub(crate) fn spawn<E: Export>(
        exporter: E,
        settings: Settings,
        counters: Arc<Counters>,
        dispatch: Arc<OnceLock<WeakDispatch>>,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (spans, span_receiver) = sync_channel(settings.max_queue_size.max(1));
        let (control, control_receiver) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            exporter,
            spans: span_receiver,
            control: control_receiver,
            queued: queued.clone(),
            settings,
            export_at: settings.wake_at(),
            counters: counters.clone(),
            dispatch,
            reporter: DropReporter::default(),
            last_error: None,
        };
        let handle = std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || worker.run(&runtime))?;
        Ok(Self {
            enqueue: Arc::new(Enqueue {
                spans,
                queued,
                wake_at: settings.wake_at(),
                thread: handle.thread().clone(),
                counters,
            }),
            control,
            worker: Mutex::new(Some(handle)),
            is_shutdown: AtomicBool::new(false),
            timeout: settings.timeout,
        })
    }

    /// The queue's sending end, for spans that do not go through the SDK.
    pub(crate) fn enqueue(&self) -> Arc<Enqueue> {
        self.enqueue.clone()
    }

    /// Sends a control message and waits for its answer within `timeout`.
    fn control(
        &self,
        make: impl FnOnce(SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = sync_channel(1);
        if self.control.send(make(reply)).is_err() {
            return Err(OTelSdkError::InternalFailure(
                "the export thread has stopped".into(),
            ));
        }
        self.enqueue.thread.unpark();
        match answer.recv_timeout(timeout) {
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
        if span.span_context.is_sampled() {
            self.enqueue.push(Queued::Data(Box::new(span)));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.is_shutdown.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        // One export may be under way, and one more is needed for what is queued.
        self.control(Control::Flush, self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.is_shutdown.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let result = self.control(Control::Shutdown, timeout);
        if result.is_ok()
            && let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take())
        {
            // The thread has answered and is returning; joining cannot block for long.
            let _ = handle.join();
        }
        result
    }
}

impl Drop for BoundedBatchProcessor {
    fn drop(&mut self) {
        if !self.is_shutdown.load(Ordering::Relaxed) {
            // The thread sleeps until it is woken: tell it to finish, as the end of a
            // channel would have.
            let _ = self.control.send(Control::Stop);
            self.enqueue.thread.unpark();
        }
    }
}

struct Worker<E> {
    exporter: E,
    spans: Receiver<Queued>,
    control: Receiver<Control>,
    queued: Arc<AtomicUsize>,
    settings: Settings,
    /// A batch this big is exported at once: [`Settings::wake_at`].
    export_at: usize,
    counters: Arc<Counters>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
    reporter: DropReporter,
    last_error: Option<String>,
}

/// What the thread does after a round of work.
enum Next {
    Sleep,
    /// More than a batch is queued: export again without sleeping.
    Continue,
    Stop,
}

impl<E: Export> Worker<E> {
    fn run(mut self, runtime: &tokio::runtime::Runtime) {
        // Nothing the exporter does (HTTP client spans, if any) may be traced: that would
        // feed spans back into this queue.
        let _suppressed = Context::enter_telemetry_suppressed_scope();
        let mut batch = Vec::with_capacity(self.settings.max_batch_size);
        let mut next_export = Instant::now() + self.settings.interval;
        loop {
            let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
            let dispatch = dispatch.unwrap_or_default();
            let next = tracing::dispatcher::with_default(&dispatch, || {
                let next = self.work(runtime, &mut batch, &mut next_export);
                if !matches!(next, Next::Stop) {
                    self.report(false);
                }
                next
            });
            match next {
                Next::Stop => return,
                Next::Continue => {}
                // Woken by a full batch, a control message or the interval; a spurious
                // wake-up only costs a look at the queues.
                Next::Sleep => {
                    std::thread::park_timeout(next_export.saturating_duration_since(Instant::now()))
                }
            }
        }
    }

    /// Answers control messages, then exports a full batch, or what is queued once the
    /// interval is up.
    fn work(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        batch: &mut Vec<Queued>,
        next_export: &mut Instant,
    ) -> Next {
        loop {
            let control = match self.control.try_recv() {
                Ok(control) => control,
                Err(TryRecvError::Empty) => break,
                // Only the processor holds the sender, and it says `Stop` when dropped.
                Err(TryRecvError::Disconnected) => Control::Stop,
            };
            // Whatever was queued before the message was sent is in the channel now.
            let drained = self.drain_all(runtime, batch);
            match control {
                Control::Flush(reply) => {
                    let result = drained.and(self.export(runtime, batch));
                    *next_export = Instant::now() + self.settings.interval;
                    let _ = reply.try_send(result);
                }
                Control::Shutdown(reply) => {
                    let result = drained.and(self.export(runtime, batch));
                    let shutdown = self.exporter.shutdown_with_timeout(self.settings.timeout);
                    self.report(true);
                    let _ = reply.try_send(result.and(shutdown));
                    return Next::Stop;
                }
                Control::Stop => {
                    let _ = self.export(runtime, batch);
                    let _ = self.exporter.shutdown_with_timeout(self.settings.timeout);
                    return Next::Stop;
                }
            }
        }
        let connected = self.fill(batch);
        if batch.len() >= self.export_at {
            // Failures are counted and logged inside.
            let _ = self.export(runtime, batch);
            *next_export = Instant::now() + self.settings.interval;
            return Next::Continue;
        }
        if !connected {
            let _ = self.export(runtime, batch);
            let _ = self.exporter.shutdown_with_timeout(self.settings.timeout);
            return Next::Stop;
        }
        if Instant::now() >= *next_export {
            let _ = self.export(runtime, batch);
            *next_export = Instant::now() + self.settings.interval;
        }
        Next::Sleep
    }

    /// Moves queued spans into `batch` until it is full; `false` once the processor is gone.
    fn fill(&mut self, batch: &mut Vec<Queued>) -> bool {
        let mut taken = 0;
        let mut connected = true;
        while batch.len() < self.settings.max_batch_size {
            match self.spans.try_recv() {
                Ok(span) => {
                    batch.push(span);
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    connected = false;
                    break;
                }
            }
        }
        self.queued.fetch_sub(taken, Ordering::Relaxed);
        connected
    }

    /// Takes every queued span, exporting full batches on the way; the rest stays in `batch`.
    fn drain_all(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        batch: &mut Vec<Queued>,
    ) -> OTelSdkResult {
        let mut result = Ok(());
        loop {
            let connected = self.fill(batch);
            if batch.len() < self.export_at || !connected {
                return result;
            }
            result = result.and(self.export(runtime, batch));
        }
    }

    /// Exports `batch` (emptying it) within the timeout. A failure drops the batch: retrying
    /// would hold the queue for a collector that is already failing.
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        batch: &mut Vec<Queued>,
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use opentelemetry::{
        InstrumentationScope,
        trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// Records the size of each batch it is given.
    #[derive(Clone, Debug, Default)]
    struct Batches(Arc<Mutex<Vec<usize>>>);

    impl Batches {
        fn sizes(&self) -> Vec<usize> {
            self.0.lock().unwrap().clone()
        }

        /// Waits up to 5 s for `n` batches.
        fn wait_for(&self, n: usize) -> Vec<usize> {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.sizes().len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.sizes()
        }
    }

    impl SpanExporter for Batches {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().push(batch.len());
            Ok(())
        }
    }

    fn span(sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "s".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::default(),
        }
    }

    fn processor(queue: usize, batch: usize) -> (BoundedBatchProcessor, Batches, Arc<Counters>) {
        let batches = Batches::default();
        let counters = Arc::new(Counters::default());
        let settings = Settings {
            max_queue_size: queue,
            max_batch_size: batch,
            // Only a full batch, a flush or a shutdown can export.
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        };
        let processor = BoundedBatchProcessor::spawn(
            SdkExporter(batches.clone()),
            settings,
            counters.clone(),
            Arc::new(OnceLock::new()),
        )
        .unwrap();
        (processor, batches, counters)
    }

    #[test]
    fn a_full_batch_is_exported_at_once_the_rest_on_flush() {
        let (processor, batches, counters) = processor(64, 4);
        for _ in 0..9 {
            processor.on_end(span(true));
        }
        processor.on_end(span(false));
        assert_eq!(batches.wait_for(2), [4, 4]);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(batches.sizes(), [4, 4], "one span waits for a fuller batch");
        processor.force_flush().unwrap();
        assert_eq!(batches.sizes(), [4, 4, 1]);
        processor.on_end(span(true));
        processor
            .shutdown_with_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(batches.sizes(), [4, 4, 1, 1]);
        assert_eq!(counters.snapshot().exported, 10);
        assert_eq!(counters.snapshot().dropped(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_queue_still_exports_before_the_queue_fills() {
        let (processor, batches, counters) = processor(8, 100);
        for _ in 0..8 {
            processor.on_end(span(true));
        }
        // Woken at 4 spans (half the queue), without a flush; the thread may find more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while batches.sizes().iter().sum::<usize>() < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            batches.sizes().iter().sum::<usize>(),
            8,
            "{:?}",
            batches.sizes()
        );
        assert_eq!(counters.snapshot().dropped(), 0);
        drop(processor);
    }

    #[test]
    fn dropping_the_processor_exports_what_is_queued_and_stops_the_thread() {
        let (processor, batches, _) = processor(64, 16);
        processor.on_end(span(true));
        processor.on_end(span(true));
        let handle = processor.worker.lock().unwrap().take().unwrap();
        drop(processor);
        handle.join().unwrap();
        assert_eq!(batches.sizes(), [2]);
    }
}
