//! Configuration errors.

use std::{error::Error, fmt};

/// A configuration [`build`](super::FallbackCacheBuilder::build) refused, rather than
/// silently clamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    what: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self { what }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fallback cache configuration: {}", self.what)
    }
}

impl Error for ConfigError {}
