//! taskman's metrics: the library's server, client and process metrics plus the MCP tool
//! metrics, in one registry under the `taskman` prefix, served at `/metrics`.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};
use tower_bulwark::metrics::{
    CollectionTask, DEFAULT_LATENCY_BUCKETS, ExpositionFormat, Metrics, ProcessCollector, encode,
};

/// The metric names' prefix, kept from the TypeScript plan (`taskman_http_requests_total`, …).
pub const PREFIX: &str = "taskman";

/// Every metric handle of taskman; cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskmanMetrics {
    registry: Arc<Registry>,
    pub layers: Metrics,
    pub tools: ToolMetrics,
    process: ProcessCollector,
}

impl TaskmanMetrics {
    /// `register_more` adds other layers' metrics (the trace exporter's) to the registry.
    pub fn new(register_more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let layers = Metrics::builder().prefix(PREFIX).register(&mut registry);
        let prefixed = registry.sub_registry_with_prefix(PREFIX);
        // Every value of the `tool` label: the tools' names, and "unknown" for any other.
        let tool_names = crate::mcp::TOOLS.iter().map(|(name, _)| *name);
        let tools = ToolMetrics::register(prefixed, tool_names.chain(["unknown"]));
        // `taskman_memory_usage_bytes{type}` is the TypeScript plan's name; the standard
        // `process_*` gauges come with it.
        let process = ProcessCollector::new().with_memory_usage_bytes();
        process.register(prefixed);
        register_more(prefixed);
        Self {
            registry: Arc::new(registry),
            layers,
            tools,
            process,
        }
    }

    /// Starts the process and runtime probe (scheduling lag); stopping the returned task
    /// logs "Stopping metrics collection".
    pub fn start_collection(&self) -> Option<CollectionTask> {
        self.process.start(std::time::Duration::from_secs(1)).ok()
    }

    /// `GET /metrics`: OpenMetrics (with exemplars) for Prometheus, the classic text format
    /// for everything else.
    pub async fn serve(State(metrics): State<TaskmanMetrics>, headers: HeaderMap) -> Response {
        let format = ExpositionFormat::negotiate(headers.get(header::ACCEPT));
        match encode(&metrics.registry, format) {
            Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// `mcp_tool_executions_total{tool,outcome}` and `mcp_tool_duration_seconds{tool}`.
#[derive(Clone, Debug)]
pub struct ToolMetrics {
    executions: Family<[Label; 2], Counter>,
    duration: Family<[Label; 1], Histogram, fn() -> Histogram>,
    /// Each series' handle once it exists: a `Family` lookup hashes the labels (SipHash) and
    /// takes a lock on every call, while a handle shares the series' storage. Series still
    /// appear on their first use only.
    handles: Arc<[ToolHandles]>,
}

/// A label pair; fixed-size arrays of them, unlike a `Vec`, cost no allocation per call.
type Label = (&'static str, &'static str);

/// The outcomes, the only values of the `outcome` label.
const OUTCOMES: [&str; 3] = ["ok", "tool_error", "protocol_error"];

#[derive(Debug)]
struct ToolHandles {
    tool: &'static str,
    executions: [OnceLock<Counter>; OUTCOMES.len()],
    duration: OnceLock<Histogram>,
}

impl ToolMetrics {
    fn register(registry: &mut Registry, tools: impl Iterator<Item = &'static str>) -> Self {
        let executions = Family::default();
        registry.register(
            "mcp_tool_executions",
            "MCP tool calls, by tool and outcome (ok, tool_error, protocol_error)",
            executions.clone(),
        );
        let duration = Family::new_with_constructor(
            (|| Histogram::new(DEFAULT_LATENCY_BUCKETS.iter().copied())) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "mcp_tool_duration",
            "Time to answer an MCP tool call",
            Unit::Seconds,
            duration.clone(),
        );
        let handles = tools
            .map(|tool| ToolHandles {
                tool,
                executions: Default::default(),
                duration: OnceLock::new(),
            })
            .collect();
        Self {
            executions,
            duration,
            handles,
        }
    }

    /// Records one call. `tool` must be one of the server's tool names (or "unknown"), and
    /// `outcome` one of `ok`, `tool_error` and `protocol_error`, so the label sets stay
    /// bounded whatever clients send.
    pub fn record(&self, tool: &'static str, outcome: &'static str, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        let handles = self.handles.iter().find(|h| h.tool == tool);
        let outcome_index = OUTCOMES.iter().position(|o| *o == outcome);
        match (handles, outcome_index) {
            (Some(handles), Some(index)) => {
                handles.executions[index]
                    .get_or_init(|| self.execution_series(tool, outcome))
                    .inc();
                handles
                    .duration
                    .get_or_init(|| self.duration_series(tool))
                    .observe(elapsed);
            }
            _ => {
                self.execution_series(tool, outcome).inc();
                self.duration_series(tool).observe(elapsed);
            }
        }
    }

    fn execution_series(&self, tool: &'static str, outcome: &'static str) -> Counter {
        self.executions
            .get_or_create(&[("tool", tool), ("outcome", outcome)])
            .clone()
    }

    fn duration_series(&self, tool: &'static str) -> Histogram {
        self.duration.get_or_create(&[("tool", tool)]).clone()
    }
}
