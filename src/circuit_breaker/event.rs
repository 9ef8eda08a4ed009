//! Breaker states, the events a breaker emits and the hook that receives them.

use std::{fmt, time::Duration};

use tokio::time::Instant;

/// The state of one breaker.
///
/// | state | calls | records | transitions |
/// |---|---|---|---|
/// | `Closed` | pass | yes | to `Open` when a rate reaches its threshold |
/// | `Open` | rejected | late results only (counters) | to `HalfOpen` on the first call after the open duration |
/// | `HalfOpen` | `half_open_permits` probes pass, the rest are rejected | probes | to `Closed` or `Open` once every probe has reported; by `max_half_open_wait` |
/// | `ForcedOpen` | rejected | no | only by the handle |
/// | `ForcedClosed` | pass | yes, and reports a threshold crossing once | only by the handle |
/// | `Disabled` | pass | no (no counters, no events) | only by the handle |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum State {
    /// Healthy: calls pass and are counted.
    #[default]
    Closed,
    /// Tripped: calls are rejected until the open duration has passed.
    Open,
    /// Probing: a few calls pass to test the backend.
    HalfOpen,
    /// Held open by the handle, whatever the time.
    ForcedOpen,
    /// Held closed by the handle: calls pass and are counted, but it never trips (the
    /// "metrics only" state of resilience4j).
    ForcedClosed,
    /// Switched off by the handle: calls pass, nothing is counted or emitted.
    Disabled,
}

impl State {
    /// Every state, in the order of their codes.
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::ForcedClosed,
        State::Disabled,
    ];

    /// `"closed"`, `"open"`, `"half_open"`, `"forced_open"`, `"forced_closed"` or
    /// `"disabled"`: the metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::ForcedClosed => "forced_closed",
            Self::Disabled => "disabled",
        }
    }

    /// Whether calls are rejected in this state (half-open rejects only once its permits are
    /// taken, so it is not counted here).
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::ForcedOpen)
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::ForcedClosed => 4,
            Self::Disabled => 5,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::ForcedClosed,
            _ => Self::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Closed → Open: the failure rate reached its threshold.
    FailureRate,
    /// Closed → Open: the slow-call rate reached its threshold.
    SlowCallRate,
    /// Open → HalfOpen: the open duration passed and a call arrived.
    OpenElapsed,
    /// HalfOpen → Closed: the probes' rates stayed under the thresholds.
    ProbesPassed,
    /// HalfOpen → Open: the probes' failure or slow-call rate reached its threshold.
    ProbesFailed,
    /// HalfOpen → Open or Closed: the probes did not all report within `max_half_open_wait`.
    MaxHalfOpenWait,
    /// Asked for through the handle.
    Manual,
}

impl Reason {
    /// A short snake_case name, e.g. for a log field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::OpenElapsed => "open_elapsed",
            Self::ProbesPassed => "probes_passed",
            Self::ProbesFailed => "probes_failed",
            Self::MaxHalfOpenWait => "max_half_open_wait",
            Self::Manual => "manual",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to one breaker: sent to the [`OnEvent`] hook and to
/// [subscribers](super::CircuitBreakerHandle::subscribe).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Event<K = ()> {
    /// The breaker's key (`()` for an unkeyed breaker).
    pub key: K,
    /// When it happened (Tokio's clock).
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The breaker changed state. Emitted exactly once per real change; never for a
    /// same-state request, nor on creation.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: Reason,
        /// For `to == Open`: how long it stays open (backoff, jitter and `Retry-After`
        /// included).
        open_for: Option<Duration>,
        /// The failure rate (0 to 1) over the calls that decided the change, if rates decided
        /// it.
        failure_rate: Option<f64>,
        /// The slow-call rate (0 to 1) over the same calls, if rates decided it.
        slow_call_rate: Option<f64>,
    },
    /// A call was rejected.
    Rejected {
        /// The state that rejected it: `Open`, `HalfOpen` (no permit left) or `ForcedOpen`.
        state: State,
        /// How long until calls may pass again, when known.
        retry_after: Option<Duration>,
    },
    /// A `ForcedClosed` breaker's rates reached a threshold: it would have opened. Emitted
    /// once per stay in `ForcedClosed`.
    ThresholdExceeded {
        /// The failure rate, 0 to 1.
        failure_rate: f64,
        /// The slow-call rate, 0 to 1.
        slow_call_rate: f64,
    },
}

/// Receives every [`Event`] of a breaker.
///
/// Implemented by `()` (nothing) and by every `Fn(&Event<K>) + Send + Sync` closure.
///
/// Transitions are delivered in order: the hook runs inside the breaker's transition lock, so
/// keep it quick (log, bump a counter, send to a channel). It never runs on the closed path,
/// except for the one call that trips the breaker. A panicking hook is caught and logged; it
/// cannot corrupt the breaker. Calling back into the same breaker from the hook (e.g.
/// `force_open`) cannot deadlock: such a call is skipped and logged.
pub trait OnEvent<K>: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<K>);
}

impl<K> OnEvent<K> for () {
    fn on_event(&self, _event: &Event<K>) {}
}

impl<K, F> OnEvent<K> for F
where
    F: Fn(&Event<K>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<K>) {
        self(event)
    }
}
