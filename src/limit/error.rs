//! The error naming a bad limit setting.

use std::fmt;

/// An invalid limit setting: names the setting and says what it accepts.
///
/// ```
/// use tower_bulwark::limit::LoadShedLayer;
///
/// let err = LoadShedLayer::new(0).unwrap_err();
/// assert_eq!(err.field(), "max_in_flight");
/// assert_eq!(err.to_string(), "invalid limit setting `max_in_flight`: must be at least 1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }

    /// The constructor argument whose value is invalid: `"timeout"`, `"limit"` or
    /// `"max_in_flight"`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What the setting accepts.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid limit setting `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
