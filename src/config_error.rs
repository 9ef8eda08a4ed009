//! The error of a layer setting out of range, shared by the layers' validating builders.

use std::fmt;

/// An invalid setting: names the layer and the setting, and says what the setting accepts.
///
/// Each layer re-exports it (`circuit_breaker::ConfigError`, `retry::ConfigError`,
/// `limit::ConfigError`); its examples show the settings it checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    layer: &'static str,
    field: &'static str,
    reason: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(
        layer: &'static str,
        field: &'static str,
        reason: &'static str,
    ) -> Self {
        Self {
            layer,
            field,
            reason,
        }
    }

    /// The layer the setting belongs to: `"circuit breaker"`, `"retry"` or `"limit"`.
    #[must_use]
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// The invalid setting: the builder method or constructor argument, e.g.
    /// `"minimum_calls"`, `"max_attempts"`, `"max_in_flight"`.
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
        write!(
            f,
            "invalid {} setting `{}`: {}",
            self.layer, self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}
