//! The validated settings and the error naming a bad one.

use std::time::Duration;

/// The most attempts (the first included) a request may get.
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest backoff, and so the longest `Retry-After` that is waited out.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// An invalid retry setting: names the setting and says what it accepts.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark::retry::{RetryBudget, RetryLayer};
///
/// let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_attempts");
/// assert_eq!(err.to_string(), "invalid retry setting `max_attempts`: must be 1 to 10");
///
/// let err = RetryBudget::new(Duration::from_millis(500), 10, 0.2).unwrap_err();
/// assert_eq!(err.field(), "ttl");
/// ```
pub use crate::config_error::ConfigError;

/// The per-layer settings the futures read; `Copy` so that a future holds them by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

/// Defaults, asserted in the tests and listed on the builder.
impl Default for Config {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Checks every field; the first problem found is returned.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::new("retry", "max_attempts", "must be 1 to 10"));
        }
        if self.initial_backoff < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "retry",
                "backoff",
                "the initial backoff must be at least 1 ms",
            ));
        }
        // Rejected rather than clamped: a cap below the start would silently change both.
        if self.max_backoff < self.initial_backoff {
            return Err(ConfigError::new(
                "retry",
                "backoff",
                "the maximum backoff must not be shorter than the initial one",
            ));
        }
        if self.max_backoff > MAX_BACKOFF {
            return Err(ConfigError::new(
                "retry",
                "backoff",
                "the maximum backoff must be at most 60 s",
            ));
        }
        Ok(self)
    }
}
