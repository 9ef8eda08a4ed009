//! What every service of one layer shares, and the handle to read it.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use super::RetryBudget;

/// Why a failed request was answered without a further retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GiveUp {
    /// It had used every attempt.
    Attempts,
    /// The budget was empty.
    Budget,
    /// The backend's `Retry-After` asked for longer than the maximum backoff.
    RetryAfter,
    /// A circuit breaker refused the attempt.
    CircuitOpen,
}

impl GiveUp {
    #[cfg(feature = "metrics")]
    pub(crate) const ALL: [Self; 4] = [
        Self::Attempts,
        Self::Budget,
        Self::RetryAfter,
        Self::CircuitOpen,
    ];

    /// The `reason` label of the metrics and the `gave_up` field of the logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Attempts => "attempts_exhausted",
            Self::Budget => "budget_exhausted",
            Self::RetryAfter => "retry_after_too_long",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// The layer's name, budget and counters, shared by the layer, its services, their futures
/// and the handles. The counters move only when a request fails.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) budget: RetryBudget,
    /// Retries after a failed response, after an error.
    retries: [AtomicU64; 2],
    /// Indexed by [`GiveUp`] as `usize`.
    gave_up: [AtomicU64; 4],
}

impl Shared {
    pub(crate) fn new(name: String, budget: RetryBudget) -> Self {
        Self {
            name,
            budget,
            retries: Default::default(),
            gave_up: Default::default(),
        }
    }

    pub(crate) fn count_retry(&self, after_response: bool) {
        self.retries[usize::from(!after_response)].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_give_up(&self, reason: GiveUp) {
        self.gave_up[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn stats(&self) -> RetryStats {
        let gave_up = |r: GiveUp| self.gave_up[r as usize].load(Relaxed);
        RetryStats {
            retries_after_response: self.retries[0].load(Relaxed),
            retries_after_error: self.retries[1].load(Relaxed),
            attempts_exhausted: gave_up(GiveUp::Attempts),
            budget_exhausted: gave_up(GiveUp::Budget),
            retry_after_too_long: gave_up(GiveUp::RetryAfter),
            circuit_open: gave_up(GiveUp::CircuitOpen),
            budget_available: self.budget.available(),
        }
    }
}

/// Counters of one [`RetryLayer`](super::RetryLayer) since it was made, from
/// [`RetryHandle::stats`].
///
/// A failed request that is not retried is counted under exactly one reason; a request
/// that succeeds, or fails in a way that is not retried at all (a `4xx`, a request the
/// [predicate](super::RetryableRequest) refused), is not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries sent after a failed response (a `5xx`, a `429`, …).
    pub retries_after_response: u64,
    /// Retries sent after an error (no response: a reset connection, a timeout, …).
    pub retries_after_error: u64,
    /// Failed requests answered because they had used every attempt.
    pub attempts_exhausted: u64,
    /// Failed requests answered because the [budget](super::RetryBudget) was exhausted.
    pub budget_exhausted: u64,
    /// Failed requests answered because their `Retry-After` was longer than the maximum
    /// backoff.
    pub retry_after_too_long: u64,
    /// Failed requests answered with a circuit breaker's rejection, which is never retried.
    pub circuit_open: u64,
    /// Retries the budget allows right now.
    pub budget_available: u64,
}

impl RetryStats {
    /// Every retry sent.
    #[must_use]
    pub fn retries(&self) -> u64 {
        self.retries_after_response
            .saturating_add(self.retries_after_error)
    }
}

/// Reads one [`RetryLayer`](super::RetryLayer)'s counters and budget; from
/// [`RetryLayer::handle`](super::RetryLayer::handle) or [`Retry::handle`](super::Retry::handle).
/// Cheap to clone.
///
/// ```
/// use tower_bulwark::retry::RetryLayer;
///
/// let layer = RetryLayer::builder().name("users").build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.name(), "users");
/// assert_eq!(handle.stats().retries(), 0);
/// assert_eq!(handle.stats().budget_available, 100); // the default budget's reserve
/// ```
#[derive(Clone)]
pub struct RetryHandle {
    pub(crate) shared: Arc<Shared>,
}

impl RetryHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The layer's [name](super::RetryBuilder::name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> RetryStats {
        self.shared.stats()
    }

    /// The budget the layer draws on.
    #[must_use]
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }
}

impl fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}
