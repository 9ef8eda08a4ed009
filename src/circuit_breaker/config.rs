//! The validated configuration, its window kinds and the error naming a bad field.

use std::time::Duration;

use super::State;

/// The most calls a count-based window may hold. Rates are computed from bitsets of this many
/// bits; beyond it use a time-based window.
pub const MAX_COUNT_WINDOW: u32 = 1024;
/// The most buckets a time-based window may have.
pub const MAX_BUCKETS: u32 = 1024;
/// The most half-open permits.
pub const MAX_HALF_OPEN_PERMITS: u32 = 1024;
/// The most events buffered per subscriber.
pub const MAX_EVENT_CAPACITY: usize = 65536;

/// The window of recent calls whose failure and slow-call rates decide whether a closed
/// breaker opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last `n` recorded calls (1 to [`MAX_COUNT_WINDOW`]).
    Count(u32),
    /// The calls of the last `length`, kept in `buckets` buckets of `length / buckets` each
    /// (at least 1 ms per bucket). A call counts for between `length - length / buckets` and
    /// `length` after it was recorded: the oldest bucket is dropped whole.
    ///
    /// Each bucket counts up to 8191 calls exactly; past that its counts are halved, which
    /// keeps its rates.
    Time {
        /// How far back calls count.
        length: Duration,
        /// How many buckets `length` is cut into (1 to [`MAX_BUCKETS`]).
        buckets: u32,
    },
}

impl Window {
    /// The last `n` calls.
    #[must_use]
    pub const fn count(n: u32) -> Self {
        Self::Count(n)
    }

    /// The calls of the last `length`, in `buckets` buckets.
    #[must_use]
    pub const fn time(length: Duration, buckets: u32) -> Self {
        Self::Time { length, buckets }
    }
}

/// An invalid circuit-breaker setting: names the builder method and says what it accepts.
///
/// ```
/// use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
///
/// let err = CircuitBreakerLayer::builder().failure_rate_threshold(0.0).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid circuit breaker setting `failure_rate_threshold`: must be in (0, 100] percent",
/// );
/// ```
pub use crate::config_error::ConfigError;

/// Settings shared by every breaker of one layer (one per key when keyed).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) minimum_calls: u32,
    pub(crate) window: Window,
    pub(crate) open_duration: Duration,
    pub(crate) backoff_multiplier: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) jitter: f64,
    pub(crate) half_open_permits: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
    pub(crate) after_max_half_open_wait: State,
    pub(crate) initial_state: State,
    pub(crate) honor_retry_after: bool,
    pub(crate) max_keys: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) event_capacity: usize,
    /// Set when [`Config::max_open_duration`] was left at its default, which then follows
    /// `open_duration` up.
    pub(crate) max_open_is_default: bool,
}

/// Defaults, asserted in the tests and listed on the builder.
impl Default for Config {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            minimum_calls: 20,
            window: Window::Count(100),
            open_duration: Duration::from_secs(30),
            backoff_multiplier: 1.0,
            max_open_duration: Duration::from_secs(300),
            jitter: 0.0,
            half_open_permits: 3,
            max_half_open_wait: Some(Duration::from_secs(60)),
            after_max_half_open_wait: State::Open,
            initial_state: State::Closed,
            honor_retry_after: true,
            max_keys: 1024,
            idle_timeout: Duration::from_secs(600),
            event_capacity: 64,
            max_open_is_default: true,
        }
    }
}

const MS: Duration = Duration::from_millis(1);

impl Config {
    /// Checks every field and every combination; the first problem found is returned.
    pub(crate) fn validate(mut self) -> Result<Self, ConfigError> {
        let pct = |v: f64| v.is_finite() && v > 0.0 && v <= 100.0;
        if !pct(self.failure_rate_threshold) {
            return Err(ConfigError::new(
                "circuit breaker",
                "failure_rate_threshold",
                "must be in (0, 100] percent",
            ));
        }
        if !pct(self.slow_call_rate_threshold) {
            return Err(ConfigError::new(
                "circuit breaker",
                "slow_call_rate_threshold",
                "must be in (0, 100] percent",
            ));
        }
        if self.slow_call_duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "circuit breaker",
                "slow_call_duration",
                "must be greater than zero",
            ));
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new(
                "circuit breaker",
                "minimum_calls",
                "must be at least 1",
            ));
        }
        match self.window {
            Window::Count(n) => {
                if n == 0 || n > MAX_COUNT_WINDOW {
                    return Err(ConfigError::new(
                        "circuit breaker",
                        "window",
                        "a count window holds 1 to 1024 calls",
                    ));
                }
                // Rejected rather than clamped: the rate could never be computed over
                // `minimum_calls` calls, which would silently change the setting's meaning.
                if self.minimum_calls > n {
                    return Err(ConfigError::new(
                        "circuit breaker",
                        "minimum_calls",
                        "must not exceed the count window's size",
                    ));
                }
            }
            Window::Time { length, buckets } => {
                if buckets == 0 || buckets > MAX_BUCKETS {
                    return Err(ConfigError::new(
                        "circuit breaker",
                        "window",
                        "a time window has 1 to 1024 buckets",
                    ));
                }
                if length / buckets < MS {
                    return Err(ConfigError::new(
                        "circuit breaker",
                        "window",
                        "a time window's buckets must be at least 1 ms long",
                    ));
                }
            }
        }
        if self.open_duration < MS {
            return Err(ConfigError::new(
                "circuit breaker",
                "open_duration",
                "must be at least 1 ms",
            ));
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "circuit breaker",
                "backoff_multiplier",
                "must be a finite number of at least 1",
            ));
        }
        if self.max_open_is_default {
            self.max_open_duration = self.max_open_duration.max(self.open_duration);
        } else if self.max_open_duration < self.open_duration {
            return Err(ConfigError::new(
                "circuit breaker",
                "max_open_duration",
                "must not be shorter than open_duration",
            ));
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            return Err(ConfigError::new(
                "circuit breaker",
                "jitter",
                "must be in [0, 1]",
            ));
        }
        if self.half_open_permits == 0 || self.half_open_permits > MAX_HALF_OPEN_PERMITS {
            return Err(ConfigError::new(
                "circuit breaker",
                "half_open_permits",
                "must be 1 to 1024",
            ));
        }
        if self.max_half_open_wait.is_some_and(|d| d < MS) {
            return Err(ConfigError::new(
                "circuit breaker",
                "max_half_open_wait",
                "must be at least 1 ms (or None to wait for every probe)",
            ));
        }
        if !matches!(self.after_max_half_open_wait, State::Open | State::Closed) {
            return Err(ConfigError::new(
                "circuit breaker",
                "after_max_half_open_wait",
                "must be State::Open or State::Closed",
            ));
        }
        if self.initial_state == State::HalfOpen {
            return Err(ConfigError::new(
                "circuit breaker",
                "initial_state",
                "a breaker cannot start half-open",
            ));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "circuit breaker",
                "max_keys",
                "must be at least 1",
            ));
        }
        if self.idle_timeout < MS {
            return Err(ConfigError::new(
                "circuit breaker",
                "idle_timeout",
                "must be at least 1 ms",
            ));
        }
        if self.event_capacity == 0 || self.event_capacity > MAX_EVENT_CAPACITY {
            return Err(ConfigError::new(
                "circuit breaker",
                "event_capacity",
                "must be 1 to 65536",
            ));
        }
        Ok(self)
    }

    /// The length of one time-window bucket, in nanoseconds (at least 1 ms).
    pub(crate) fn bucket_nanos(&self) -> Option<(u64, u32)> {
        match self.window {
            Window::Count(_) => None,
            Window::Time { length, buckets } => {
                let len = (length / buckets).as_nanos();
                Some((u64::try_from(len).unwrap_or(u64::MAX), buckets))
            }
        }
    }
}
