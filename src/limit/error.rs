//! The error naming a bad limit setting.

/// An invalid limit setting: names the setting and says what it accepts.
///
/// ```
/// use tower_bulwark::limit::LoadShedLayer;
///
/// let err = LoadShedLayer::new(0).unwrap_err();
/// assert_eq!(err.field(), "max_in_flight");
/// assert_eq!(err.to_string(), "invalid limit setting `max_in_flight`: must be at least 1");
/// ```
pub use crate::config_error::ConfigError;

/// `timeout` if it is more than zero: a limit that fires at once would fail every request.
pub(super) fn nonzero_timeout(
    timeout: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    if timeout.is_zero() {
        return Err(ConfigError::new(
            "limit",
            "timeout",
            "must be more than zero",
        ));
    }
    Ok(timeout)
}
