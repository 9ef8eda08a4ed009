//! Command line and environment: every setting is a flag and an environment variable.
//!
//! clap collects the raw strings (so `--help` shows each variable and its default) and
//! [`Settings::validate`] turns them into a typed [`Config`]. Validation is ours rather than
//! clap's so that a bad value gives exactly one line naming the *variable*, the value and what
//! is allowed, e.g. `OTEL_SAMPLE_RATE must be between 0 and 1, got 1.5`.

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// taskman: a Model Context Protocol server for a Task Manager REST API.
#[derive(Debug, Parser)]
#[command(name = "taskman", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub log: LogSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server (the default when no command is given).
    Serve,
    /// Run only the embedded Task Manager REST backend.
    Backend(BackendSettings),
}

/// Settings of the MCP server. Defaults are the values in `.env.example`.
#[derive(Debug, Args)]
pub struct ServerSettings {
    /// MCP transport: `http` (Streamable HTTP at /mcp) or `stdio`.
    #[arg(
        long = "transport",
        env = "TASKMAN_MCP_TRANSPORT",
        default_value = "http"
    )]
    transport: String,
    /// Serve 2025-11-25 clients without sessions and with JSON responses, so that replicas
    /// behind a load balancer are interchangeable (2026-07-28 is stateless anyway).
    #[arg(
        long = "stateless",
        env = "TASKMAN_MCP_STATELESS",
        default_value = "false"
    )]
    stateless: String,
    /// Address the HTTP server binds to.
    #[arg(long = "host", env = "TASKMAN_HTTP_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port the HTTP server listens on (0 lets the OS pick).
    #[arg(long = "port", env = "TASKMAN_HTTP_PORT", default_value = "3000")]
    port: String,
    /// SQLite file of the embedded backend (`:memory:` keeps it in memory). Unused when
    /// TASK_MANAGER_API_ENDPOINT is set.
    #[arg(long = "db", env = "TASKMAN_DB_PATH", default_value = DEFAULT_DB_PATH)]
    db: String,
    /// Base URL of an external Task Manager API, e.g. http://127.0.0.1:4000/api/v1. When
    /// unset, the embedded backend is started in-process and reached over loopback HTTP.
    #[arg(long = "api-endpoint", env = "TASK_MANAGER_API_ENDPOINT")]
    api_endpoint: Option<String>,
    /// Time allowed to open a connection to the backend, in milliseconds.
    #[arg(
        long = "api-connect-timeout-ms",
        env = "TASK_MANAGER_API_CONNECT_TIMEOUT_MS",
        default_value = "2000"
    )]
    api_connect_timeout_ms: String,
    /// Time allowed for one backend request, in milliseconds.
    #[arg(
        long = "api-timeout-ms",
        env = "TASK_MANAGER_API_TIMEOUT_MS",
        default_value = "10000"
    )]
    api_timeout_ms: String,
    /// How long in-flight requests may run after SIGINT/SIGTERM, in milliseconds.
    #[arg(
        long = "shutdown-timeout-ms",
        env = "TASKMAN_SHUTDOWN_TIMEOUT_MS",
        default_value = "10000"
    )]
    shutdown_timeout_ms: String,
    /// Bearer token required on /mcp (unset: no authentication). Never logged.
    #[arg(
        long = "auth-token",
        env = "TASKMAN_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,
    /// Require the token on /health/* and /metrics too.
    #[arg(long = "auth-ops", env = "TASKMAN_AUTH_OPS", default_value = "false")]
    auth_ops: String,
    /// Origins allowed to call /mcp from a browser, comma-separated (`:*` = any port).
    #[arg(long = "allowed-origins", env = "TASKMAN_ALLOWED_ORIGINS", default_value = DEFAULT_ORIGINS)]
    allowed_origins: String,
    /// Host header values accepted on /mcp, comma-separated (DNS-rebinding protection).
    #[arg(
        long = "allowed-hosts",
        env = "TASKMAN_ALLOWED_HOSTS",
        default_value = "localhost,127.0.0.1,::1"
    )]
    allowed_hosts: String,
    /// Largest request body, in bytes.
    #[arg(
        long = "max-body-bytes",
        env = "TASKMAN_MAX_BODY_BYTES",
        default_value = "1048576"
    )]
    max_body_bytes: String,
    /// Largest request head (request line and headers), in bytes.
    #[arg(
        long = "max-header-bytes",
        env = "TASKMAN_MAX_HEADER_BYTES",
        default_value = "16384"
    )]
    max_header_bytes: String,
    /// Time a client has to send its request head, in milliseconds.
    #[arg(
        long = "header-read-timeout-ms",
        env = "TASKMAN_HEADER_READ_TIMEOUT_MS",
        default_value = "10000"
    )]
    header_read_timeout_ms: String,
    /// Time allowed to produce a response head, in milliseconds.
    #[arg(
        long = "request-timeout-ms",
        env = "TASKMAN_REQUEST_TIMEOUT_MS",
        default_value = "30000"
    )]
    request_timeout_ms: String,
    /// Requests served at once; more are refused with 503 and Retry-After.
    #[arg(
        long = "max-concurrent-requests",
        env = "TASKMAN_MAX_CONCURRENT_REQUESTS",
        default_value = "256"
    )]
    max_concurrent_requests: String,
    /// Longest life of a server-sent event stream, in milliseconds.
    #[arg(
        long = "sse-max-lifetime-ms",
        env = "TASKMAN_SSE_MAX_LIFETIME_MS",
        default_value = "600000"
    )]
    sse_max_lifetime_ms: String,
    /// Serve Prometheus metrics and collect process metrics.
    #[arg(
        long = "metrics-enabled",
        env = "METRICS_ENABLED",
        default_value = "true"
    )]
    metrics_enabled: String,
    /// Export traces with OpenTelemetry.
    #[arg(
        long = "tracing-enabled",
        env = "TRACING_ENABLED",
        default_value = "false"
    )]
    tracing_enabled: String,
    /// OTLP/HTTP collector endpoint.
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        default_value = "http://localhost:4318"
    )]
    otlp_endpoint: String,
    /// Log OpenTelemetry exporter diagnostics.
    #[arg(long = "otel-debug", env = "OTEL_DEBUG", default_value = "false")]
    otel_debug: String,
    /// Fraction of new traces sampled, 0 to 1 (parent-based).
    #[arg(
        long = "otel-sample-rate",
        env = "OTEL_SAMPLE_RATE",
        default_value = "1"
    )]
    otel_sample_rate: String,
    /// Extra resource attributes of exported spans, `key=value` pairs separated by commas.
    #[arg(
        long = "otel-resource-attributes",
        env = "OTEL_RESOURCE_ATTRIBUTES",
        default_value = ""
    )]
    otel_resource_attributes: String,
    /// Service name reported to the tracing backend.
    #[arg(
        long = "otel-service-name",
        env = "OTEL_SERVICE_NAME",
        default_value = "taskman"
    )]
    otel_service_name: String,
    /// Protect backend calls with a circuit breaker.
    #[arg(
        long = "circuit-breaker-enabled",
        env = "CIRCUIT_BREAKER_ENABLED",
        default_value = "true"
    )]
    circuit_breaker_enabled: String,
    /// Failure rate, in percent, at which the breaker opens (1 to 100).
    #[arg(
        long = "circuit-breaker-error-threshold",
        env = "CIRCUIT_BREAKER_ERROR_THRESHOLD",
        default_value = "50"
    )]
    circuit_breaker_error_threshold: String,
    /// How long the breaker stays open before probing, in milliseconds.
    #[arg(
        long = "circuit-breaker-reset-timeout-ms",
        env = "CIRCUIT_BREAKER_RESET_TIMEOUT_MS",
        default_value = "30000"
    )]
    circuit_breaker_reset_timeout_ms: String,
    /// Calls needed in the window before the failure rate counts.
    #[arg(
        long = "circuit-breaker-volume-threshold",
        env = "CIRCUIT_BREAKER_VOLUME_THRESHOLD",
        default_value = "10"
    )]
    circuit_breaker_volume_threshold: String,
    /// Retry failed reads, and creates (they carry an Idempotency-Key), within a budget.
    #[arg(long = "retry-enabled", env = "RETRY_ENABLED", default_value = "true")]
    retry_enabled: String,
    /// Attempts per backend call, the first included (1 to 10).
    #[arg(
        long = "retry-max-attempts",
        env = "RETRY_MAX_ATTEMPTS",
        default_value = "3"
    )]
    retry_max_attempts: String,
    /// Retries allowed on top of the calls made, in percent of those calls (0 to 100).
    #[arg(
        long = "retry-budget-percent",
        env = "RETRY_BUDGET_PERCENT",
        default_value = "20"
    )]
    retry_budget_percent: String,
    /// Answer reads from the last good response when the backend fails.
    #[arg(
        long = "fallback-cache-enabled",
        env = "FALLBACK_CACHE_ENABLED",
        default_value = "true"
    )]
    fallback_cache_enabled: String,
    /// Most responses kept by the fallback cache.
    #[arg(
        long = "fallback-cache-max-size",
        env = "FALLBACK_CACHE_MAX_SIZE",
        default_value = "1000"
    )]
    fallback_cache_max_size: String,
    /// Oldest answer the fallback cache may serve, in milliseconds.
    #[arg(
        long = "fallback-cache-ttl-ms",
        env = "FALLBACK_CACHE_TTL_MS",
        default_value = "300000"
    )]
    fallback_cache_ttl_ms: String,
}

/// Logging settings, shared by every command.
#[derive(Debug, Args)]
pub struct LogSettings {
    /// Least severe level logged: trace, debug, info, warn or error.
    #[arg(
        long = "log-level",
        env = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    level: String,
    /// Log format on stderr: json or pretty.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    format: String,
}

/// Settings of `taskman backend`.
#[derive(Debug, Args)]
pub struct BackendSettings {
    /// Address the backend binds to.
    #[arg(
        long = "host",
        env = "TASKMAN_BACKEND_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// Port the backend listens on (0 lets the OS pick).
    #[arg(long = "port", env = "TASKMAN_BACKEND_PORT", default_value = "4000")]
    port: String,
    /// SQLite file (`:memory:` keeps it in memory).
    #[arg(long = "db", env = "TASKMAN_DB_PATH", default_value = DEFAULT_DB_PATH)]
    db: String,
}

pub const DEFAULT_DB_PATH: &str = "data/taskman.db";
const DEFAULT_ORIGINS: &str = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*";

/// A setting whose value is not allowed. Displays as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSetting {
    pub variable: &'static str,
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes the value and escapes control characters, so the message stays one
        // line whatever was typed; plain numbers read better unquoted.
        let printable = !self.value.is_empty()
            && self
                .value
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if printable {
            write!(
                f,
                "{} must be {}, got {}",
                self.variable, self.allowed, self.value
            )
        } else {
            write!(
                f,
                "{} must be {}, got {:?}",
                self.variable, self.allowed, self.value
            )
        }
    }
}

impl std::error::Error for InvalidSetting {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Stdio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: tracing::Level,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub transport: Transport,
    pub stateless: bool,
    pub host: IpAddr,
    pub port: u16,
    pub db: DbLocation,
    /// `None` means: start the embedded backend.
    pub api_endpoint: Option<http::Uri>,
    pub api_connect_timeout: Duration,
    pub api_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub edge: EdgeConfig,
    pub metrics_enabled: bool,
    pub tracing: TracingConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub retry: RetryConfig,
    pub fallback_cache: FallbackCacheConfig,
}

/// Authentication and limits at the HTTP edge.
#[derive(Clone)]
pub struct EdgeConfig {
    pub auth_token: Option<String>,
    pub auth_ops: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub sse_max_lifetime: Duration,
}

// By hand, so that the token can never reach a log line through `{:?}`.
impl fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeConfig")
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("auth_ops", &self.auth_ops)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("sse_max_lifetime", &self.sse_max_lifetime)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub enabled: bool,
    pub otlp_endpoint: http::Uri,
    pub debug: bool,
    pub sample_rate: f64,
    pub service_name: String,
    pub resource_attributes: String,
}

#[derive(Debug, Clone)]
pub struct CircuitBreakerConfig {
    pub enabled: bool,
    pub error_threshold_percent: u8,
    pub reset_timeout: Duration,
    pub volume_threshold: u32,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub enabled: bool,
    pub max_attempts: u32,
    pub budget_percent: u8,
}

#[derive(Debug, Clone)]
pub struct FallbackCacheConfig {
    pub enabled: bool,
    pub max_size: usize,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbLocation,
}

/// Where the SQLite store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    Memory,
    File(PathBuf),
}

impl DbLocation {
    pub fn as_store_path(&self) -> String {
        match self {
            DbLocation::Memory => ":memory:".to_owned(),
            DbLocation::File(path) => path.display().to_string(),
        }
    }
}

impl LogSettings {
    pub fn validate(&self) -> Result<LogConfig, InvalidSetting> {
        let level = match self.level.to_ascii_lowercase().as_str() {
            "trace" => tracing::Level::TRACE,
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warn" => tracing::Level::WARN,
            "error" => tracing::Level::ERROR,
            _ => {
                return Err(invalid(
                    "LOG_LEVEL",
                    &self.level,
                    "one of trace, debug, info, warn, error",
                ));
            }
        };
        let format = match self.format.to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            _ => return Err(invalid("LOG_FORMAT", &self.format, "one of json, pretty")),
        };
        Ok(LogConfig { level, format })
    }
}

impl ServerSettings {
    pub fn validate(&self) -> Result<ServerConfig, InvalidSetting> {
        let transport = match self.transport.to_ascii_lowercase().as_str() {
            "http" => Transport::Http,
            "stdio" => Transport::Stdio,
            _ => {
                return Err(invalid(
                    "TASKMAN_MCP_TRANSPORT",
                    &self.transport,
                    "one of http, stdio",
                ));
            }
        };
        Ok(ServerConfig {
            transport,
            stateless: boolean("TASKMAN_MCP_STATELESS", &self.stateless)?,
            host: ip("TASKMAN_HTTP_HOST", &self.host)?,
            port: port("TASKMAN_HTTP_PORT", &self.port)?,
            db: db_location("TASKMAN_DB_PATH", &self.db)?,
            api_endpoint: self
                .api_endpoint
                .as_deref()
                .map(|value| http_url("TASK_MANAGER_API_ENDPOINT", value))
                .transpose()?,
            api_connect_timeout: millis(
                "TASK_MANAGER_API_CONNECT_TIMEOUT_MS",
                &self.api_connect_timeout_ms,
            )?,
            api_timeout: millis("TASK_MANAGER_API_TIMEOUT_MS", &self.api_timeout_ms)?,
            shutdown_timeout: millis("TASKMAN_SHUTDOWN_TIMEOUT_MS", &self.shutdown_timeout_ms)?,
            edge: EdgeConfig {
                auth_token: self.auth_token.as_deref().map(token).transpose()?,
                auth_ops: boolean("TASKMAN_AUTH_OPS", &self.auth_ops)?,
                allowed_origins: list("TASKMAN_ALLOWED_ORIGINS", &self.allowed_origins, origin)?,
                allowed_hosts: list("TASKMAN_ALLOWED_HOSTS", &self.allowed_hosts, host)?,
                max_body_bytes: integer_in(
                    "TASKMAN_MAX_BODY_BYTES",
                    &self.max_body_bytes,
                    1024,
                    64 << 20,
                )? as usize,
                max_header_bytes: integer_in(
                    "TASKMAN_MAX_HEADER_BYTES",
                    &self.max_header_bytes,
                    8192,
                    1 << 20,
                )? as usize,
                header_read_timeout: millis(
                    "TASKMAN_HEADER_READ_TIMEOUT_MS",
                    &self.header_read_timeout_ms,
                )?,
                request_timeout: millis("TASKMAN_REQUEST_TIMEOUT_MS", &self.request_timeout_ms)?,
                max_concurrent_requests: integer_in(
                    "TASKMAN_MAX_CONCURRENT_REQUESTS",
                    &self.max_concurrent_requests,
                    1,
                    100_000,
                )? as usize,
                sse_max_lifetime: millis("TASKMAN_SSE_MAX_LIFETIME_MS", &self.sse_max_lifetime_ms)?,
            },
            metrics_enabled: boolean("METRICS_ENABLED", &self.metrics_enabled)?,
            tracing: TracingConfig {
                enabled: boolean("TRACING_ENABLED", &self.tracing_enabled)?,
                otlp_endpoint: http_url("OTEL_EXPORTER_OTLP_ENDPOINT", &self.otlp_endpoint)?,
                debug: boolean("OTEL_DEBUG", &self.otel_debug)?,
                sample_rate: fraction("OTEL_SAMPLE_RATE", &self.otel_sample_rate)?,
                service_name: non_empty("OTEL_SERVICE_NAME", &self.otel_service_name)?,
                resource_attributes: resource_attributes(&self.otel_resource_attributes)?,
            },
            circuit_breaker: CircuitBreakerConfig {
                enabled: boolean("CIRCUIT_BREAKER_ENABLED", &self.circuit_breaker_enabled)?,
                error_threshold_percent: integer_in(
                    "CIRCUIT_BREAKER_ERROR_THRESHOLD",
                    &self.circuit_breaker_error_threshold,
                    1,
                    100,
                )? as u8,
                reset_timeout: millis(
                    "CIRCUIT_BREAKER_RESET_TIMEOUT_MS",
                    &self.circuit_breaker_reset_timeout_ms,
                )?,
                volume_threshold: integer_in(
                    "CIRCUIT_BREAKER_VOLUME_THRESHOLD",
                    &self.circuit_breaker_volume_threshold,
                    1,
                    u64::from(u32::MAX),
                )? as u32,
            },
            retry: RetryConfig {
                enabled: boolean("RETRY_ENABLED", &self.retry_enabled)?,
                max_attempts: integer_in("RETRY_MAX_ATTEMPTS", &self.retry_max_attempts, 1, 10)?
                    as u32,
                budget_percent: integer_in(
                    "RETRY_BUDGET_PERCENT",
                    &self.retry_budget_percent,
                    0,
                    100,
                )? as u8,
            },
            fallback_cache: FallbackCacheConfig {
                enabled: boolean("FALLBACK_CACHE_ENABLED", &self.fallback_cache_enabled)?,
                max_size: integer_in(
                    "FALLBACK_CACHE_MAX_SIZE",
                    &self.fallback_cache_max_size,
                    1,
                    10_000_000,
                )? as usize,
                ttl: millis("FALLBACK_CACHE_TTL_MS", &self.fallback_cache_ttl_ms)?,
            },
        })
    }
}

impl BackendSettings {
    pub fn validate(&self) -> Result<BackendConfig, InvalidSetting> {
        Ok(BackendConfig {
            host: ip("TASKMAN_BACKEND_HOST", &self.host)?,
            port: port("TASKMAN_BACKEND_PORT", &self.port)?,
            db: db_location("TASKMAN_DB_PATH", &self.db)?,
        })
    }
}

fn invalid(variable: &'static str, value: &str, allowed: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        variable,
        value: value.to_owned(),
        allowed: allowed.into(),
    }
}

fn boolean(variable: &'static str, value: &str) -> Result<bool, InvalidSetting> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "true or false")),
    }
}

fn integer_in(
    variable: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<u64, InvalidSetting> {
    let allowed = || format!("an integer between {min} and {max}");
    let parsed: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, allowed()))?;
    if (min..=max).contains(&parsed) {
        Ok(parsed)
    } else {
        Err(invalid(variable, value, allowed()))
    }
}

/// A positive duration in milliseconds, at most a day: a longer timeout is a typo.
fn millis(variable: &'static str, value: &str) -> Result<Duration, InvalidSetting> {
    integer_in(variable, value, 1, 86_400_000).map(Duration::from_millis)
}

fn port(variable: &'static str, value: &str) -> Result<u16, InvalidSetting> {
    integer_in(variable, value, 0, u64::from(u16::MAX)).map(|port| port as u16)
}

fn fraction(variable: &'static str, value: &str) -> Result<f64, InvalidSetting> {
    match value.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(invalid(variable, value, "between 0 and 1")),
    }
}

fn ip(variable: &'static str, value: &str) -> Result<IpAddr, InvalidSetting> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, "an IP address such as 127.0.0.1 or ::1"))
}

fn non_empty(variable: &'static str, value: &str) -> Result<String, InvalidSetting> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
        return Err(invalid(
            variable,
            value,
            "a non-empty name without control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

fn http_url(variable: &'static str, value: &str) -> Result<http::Uri, InvalidSetting> {
    let allowed = "an http:// URL with a host, such as http://127.0.0.1:4000/api/v1";
    let uri: http::Uri = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, allowed))?;
    let is_http = uri.scheme_str() == Some("http");
    if !is_http || uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
        return Err(invalid(variable, value, allowed));
    }
    Ok(uri)
}

/// `key=value[,key=value…]`, as OpenTelemetry defines `OTEL_RESOURCE_ATTRIBUTES`.
fn resource_attributes(value: &str) -> Result<String, InvalidSetting> {
    let valid = value.trim().is_empty()
        || value.split(',').all(|pair| {
            pair.split_once('=').is_some_and(|(key, _)| {
                !key.trim().is_empty() && !pair.chars().any(char::is_control)
            })
        });
    if valid {
        Ok(value.trim().to_owned())
    } else {
        Err(invalid(
            "OTEL_RESOURCE_ATTRIBUTES",
            value,
            "comma-separated key=value pairs",
        ))
    }
}

/// A bearer token: visible ASCII, long enough not to be guessed. The value is never echoed.
fn token(value: &str) -> Result<String, InvalidSetting> {
    let ok = value.len() >= 16 && value.len() <= 512 && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(InvalidSetting {
            variable: "TASKMAN_AUTH_TOKEN",
            value: "<redacted>".to_owned(),
            allowed: "16 to 512 visible ASCII characters".to_owned(),
        })
    }
}

/// A comma-separated list whose every item passes `item`.
fn list(
    variable: &'static str,
    value: &str,
    item: fn(&str) -> Option<String>,
) -> Result<Vec<String>, InvalidSetting> {
    let items: Option<Vec<String>> = value.split(',').map(|part| item(part.trim())).collect();
    match items {
        Some(items) if !items.is_empty() => Ok(items),
        _ => Err(invalid(
            variable,
            value,
            match variable {
                "TASKMAN_ALLOWED_ORIGINS" => {
                    "a comma-separated list of origins such as http://localhost:*"
                }
                _ => "a comma-separated list of host names or IP addresses",
            },
        )),
    }
}

/// `scheme://host[:port|:*]`, nothing more.
fn origin(value: &str) -> Option<String> {
    let (scheme, rest) = value.split_once("://")?;
    let valid_scheme = scheme == "http" || scheme == "https";
    let valid_rest = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]*".contains(c));
    (valid_scheme && valid_rest).then(|| value.to_owned())
}

fn host(value: &str) -> Option<String> {
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    valid.then(|| value.to_owned())
}

fn db_location(variable: &'static str, value: &str) -> Result<DbLocation, InvalidSetting> {
    match value {
        ":memory:" => Ok(DbLocation::Memory),
        "" => Err(invalid(variable, value, "a file path or :memory:")),
        path if path.chars().any(char::is_control) => Err(invalid(
            variable,
            value,
            "a file path without control characters, or :memory:",
        )),
        path => Ok(DbLocation::File(PathBuf::from(path))),
    }
}
