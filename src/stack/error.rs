//! The error naming a bad stack setting.

use std::{error::Error, fmt};

/// A setting [`ServerStack::from_settings`](super::ServerStack::from_settings) or
/// [`ClientStack::from_settings`](super::ClientStack::from_settings) refused, named by its
/// path in the settings value.
///
/// ```
/// # #[cfg(feature = "limit")] {
/// use tower_bulwark::stack::{ServerSettings, ServerStack};
///
/// let settings = ServerSettings { max_in_flight: Some(0), ..ServerSettings::default() };
/// let err = ServerStack::from_settings(&settings).unwrap_err();
/// assert_eq!(err.field(), "max_in_flight");
/// assert_eq!(err.to_string(), "invalid stack setting `max_in_flight`: must be at least 1");
/// # }
/// ```
#[derive(Debug)]
pub struct SettingsError {
    field: String,
    reason: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl SettingsError {
    #[cfg_attr(
        not(any(
            feature = "limit",
            feature = "retry",
            feature = "circuit-breaker",
            feature = "fallback-cache"
        )),
        allow(dead_code)
    )]
    pub(super) fn new(
        field: impl Into<String>,
        reason: impl Into<String>,
        source: Option<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            source,
        }
    }

    /// The setting, as a path in the settings value: `max_body_bytes`,
    /// `circuit_breaker.minimum_calls`, `retry.backoff` (either bound), …
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What the setting accepts.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid stack setting `{}`: {}", self.field, self.reason)
    }
}

impl Error for SettingsError {
    /// The layer's own configuration error, when it was the layer's builder that refused.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}
