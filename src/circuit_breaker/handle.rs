//! Reading and steering breakers from outside the service stack.

use std::{fmt, hash::Hash, sync::Arc, time::Duration};

use tokio::{sync::broadcast, time::Instant};

use super::{
    Event, IllegalTransition, State,
    shared::{Breakers, Shared},
    state::Breaker,
};

/// Reads and steers the breakers of one [`CircuitBreakerLayer`](super::CircuitBreakerLayer),
/// from [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle) or
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle). Cheap to clone; every clone
/// sees the same breakers.
///
/// For an unkeyed breaker (`K = ()`) the control methods are right here
/// ([`state`](Self::state), [`force_open`](Self::force_open), …). For per-key breakers, pick
/// one with [`get`](Self::get) or [`get_or_insert`](Self::get_or_insert), or list them with
/// [`breakers`](Self::breakers).
///
/// ```
/// use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::new();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), State::Closed);
///
/// handle.force_open(); // e.g. during a backend's maintenance window
/// assert_eq!(handle.state(), State::ForcedOpen);
/// handle.reset(); // closed, with an empty window
/// assert_eq!(handle.state(), State::Closed);
/// # }
/// ```
pub struct CircuitBreakerHandle<K = ()> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for CircuitBreakerHandle<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for CircuitBreakerHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.shared.core.config.name)
            .finish_non_exhaustive()
    }
}

impl<K> CircuitBreakerHandle<K> {
    pub(crate) fn new(shared: Arc<Shared<K>>) -> Self {
        Self { shared }
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn shared(&self) -> &Arc<Shared<K>> {
        &self.shared
    }

    /// The name given with
    /// [`CircuitBreakerBuilder::name`](super::CircuitBreakerBuilder::name): the `breaker`
    /// label of the metrics.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.core.config.name
    }
}

impl<K> CircuitBreakerHandle<K>
where
    K: Clone + Hash + Eq + Send + Sync + 'static,
{
    /// The breaker for `key`, if it exists (an unkeyed layer has exactly one, for `()`).
    #[must_use]
    pub fn get(&self, key: &K) -> Option<BreakerHandle<K>> {
        match &self.shared.breakers {
            Breakers::Single(_) => Some(self.target(Target::Single)),
            Breakers::Keyed(reg) => reg.get(key).map(|b| self.target(Target::Keyed(b))),
        }
    }

    /// The breaker for `key`, made if it does not exist yet: e.g. to force a key open before
    /// any request for it. Subject to the registry's bound like any other key.
    #[must_use]
    pub fn get_or_insert(&self, key: K) -> BreakerHandle<K> {
        match &self.shared.breakers {
            Breakers::Single(_) => self.target(Target::Single),
            Breakers::Keyed(reg) => {
                let b = reg.get_or_insert(key, &self.shared.core);
                self.target(Target::Keyed(b))
            }
        }
    }

    /// Every breaker, in no particular order: e.g. to report the open ones on a readiness
    /// endpoint.
    ///
    /// ```
    /// # use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
    /// # let handle = CircuitBreakerLayer::new().handle();
    /// let open: Vec<_> = handle.breakers().into_iter().filter(|b| b.state().is_open()).collect();
    /// # assert!(open.is_empty());
    /// ```
    #[must_use]
    pub fn breakers(&self) -> Vec<BreakerHandle<K>> {
        match &self.shared.breakers {
            Breakers::Single(_) => vec![self.target(Target::Single)],
            Breakers::Keyed(reg) => reg
                .all()
                .into_iter()
                .map(|b| self.target(Target::Keyed(b)))
                .collect(),
        }
    }

    /// How many breakers exist (1 for an unkeyed layer).
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.shared.breakers {
            Breakers::Single(_) => 1,
            Breakers::Keyed(reg) => reg.len(),
        }
    }

    /// Whether there is no breaker (only possible for a keyed layer that has seen no key).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the per-key breakers unused for `idle_timeout`, except those held by hand
    /// (forced or disabled); returns how many went. This also happens by itself whenever a
    /// new key needs room.
    pub fn evict_idle(&self) -> usize {
        match &self.shared.breakers {
            Breakers::Single(_) => 0,
            Breakers::Keyed(reg) => reg.evict_idle(&self.shared.core),
        }
    }

    /// A receiver of every later [`Event`] of every breaker of this layer.
    ///
    /// The channel holds `event_capacity` events (64 by default); a receiver that falls
    /// further behind loses the oldest and is told how many with
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged). Nothing is sent, and
    /// nothing is allocated, until the first subscription.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event<K>> {
        self.shared.core.subscribe()
    }

    fn target(&self, target: Target<K>) -> BreakerHandle<K> {
        BreakerHandle {
            shared: self.shared.clone(),
            target,
        }
    }

    fn single(&self) -> BreakerHandle<K> {
        self.target(Target::Single)
    }
}

/// Shortcuts for an unkeyed breaker: the same as on its one [`BreakerHandle`].
impl CircuitBreakerHandle<()> {
    /// The breaker (the only one).
    #[must_use]
    pub fn breaker(&self) -> BreakerHandle<()> {
        self.single()
    }

    /// See [`BreakerHandle::state`].
    #[must_use]
    pub fn state(&self) -> State {
        self.single().state()
    }

    /// See [`BreakerHandle::stats`].
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.single().stats()
    }

    /// See [`BreakerHandle::force_open`].
    pub fn force_open(&self) {
        self.single().force_open();
    }

    /// See [`BreakerHandle::force_closed`].
    pub fn force_closed(&self) {
        self.single().force_closed();
    }

    /// See [`BreakerHandle::disable`].
    pub fn disable(&self) {
        self.single().disable();
    }

    /// See [`BreakerHandle::reset`].
    pub fn reset(&self) {
        self.single().reset();
    }

    /// See [`BreakerHandle::open`].
    pub fn open(&self) {
        self.single().open();
    }

    /// See [`BreakerHandle::open_for`].
    pub fn open_for(&self, duration: Duration) {
        self.single().open_for(duration);
    }

    /// See [`BreakerHandle::open_until`].
    pub fn open_until(&self, until: Instant) {
        self.single().open_until(until);
    }

    /// See [`BreakerHandle::transition_to`].
    ///
    /// # Errors
    ///
    /// [`IllegalTransition`] for `HalfOpen` from anything but `Open`.
    pub fn transition_to(&self, state: State) -> Result<(), IllegalTransition> {
        self.single().transition_to(state)
    }
}

enum Target<K> {
    Single,
    Keyed(Arc<Breaker<K>>),
}

/// Reads and steers one breaker (one key). Manual transitions emit events like automatic
/// ones, with [`Reason::Manual`](super::Reason::Manual); asking for the current state is a
/// no-op with no event.
pub struct BreakerHandle<K = ()> {
    shared: Arc<Shared<K>>,
    target: Target<K>,
}

impl<K> fmt::Debug for BreakerHandle<K>
where
    K: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BreakerHandle");
        if let Some(b) = self.breaker() {
            d.field("key", &b.key).field("state", &b.state());
        }
        d.finish_non_exhaustive()
    }
}

impl<K> Clone for BreakerHandle<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            target: match &self.target {
                Target::Single => Target::Single,
                Target::Keyed(b) => Target::Keyed(b.clone()),
            },
        }
    }
}

impl<K> BreakerHandle<K> {
    fn breaker(&self) -> Option<&Breaker<K>> {
        match (&self.target, &self.shared.breakers) {
            (Target::Keyed(b), _) => Some(b),
            (Target::Single, Breakers::Single(b)) => Some(b),
            (Target::Single, Breakers::Keyed(_)) => None,
        }
    }
}

impl<K> BreakerHandle<K>
where
    K: Clone + Send + Sync + 'static,
{
    /// The breaker's key.
    #[must_use]
    pub fn key(&self) -> Option<&K> {
        self.breaker().map(|b| &b.key)
    }

    /// The current state. Transitions are lazy: a breaker whose open duration has passed
    /// still reads `Open` until the next call moves it to `HalfOpen`
    /// ([`Stats::open_for`] is then zero).
    #[must_use]
    pub fn state(&self) -> State {
        self.breaker().map_or(State::Closed, Breaker::state)
    }

    /// Rates and counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let core = &self.shared.core;
        let Some(b) = self.breaker() else {
            return Stats::default();
        };
        let v = b.view(core);
        let known = v.tally.total > 0 && v.tally.total >= u64::from(core.config.minimum_calls);
        Stats {
            state: v.state,
            failure_rate: known.then(|| v.tally.failure_rate()),
            slow_call_rate: known.then(|| v.tally.slow_call_rate()),
            buffered_calls: v.tally.total,
            buffered_failures: v.tally.failures,
            buffered_slow_calls: v.tally.slow,
            successes: v.totals[0],
            failures: v.totals[1],
            ignored: v.totals[2],
            cancelled: v.totals[3],
            slow_calls: v.totals[4],
            rejections: v.totals[5],
            open_for: v.open_for,
        }
    }

    /// How many times each transition happened, as `(from, to, count)` for every pair seen
    /// (the `circuit_breaker_transitions_total` metric).
    #[must_use]
    pub fn transition_counts(&self) -> Vec<(State, State, u64)> {
        self.breaker().map(Breaker::transitions).unwrap_or_default()
    }

    /// Holds the breaker open, rejecting every call, until another manual transition.
    pub fn force_open(&self) {
        self.force(State::ForcedOpen);
    }

    /// Holds the breaker closed: calls pass and are counted, it never opens, and it reports a
    /// crossed threshold once ([`EventKind::ThresholdExceeded`](super::EventKind)). Starts
    /// with an empty window.
    pub fn force_closed(&self) {
        self.force(State::ForcedClosed);
    }

    /// Switches the breaker off: calls pass, nothing is counted or emitted.
    pub fn disable(&self) {
        self.force(State::Disabled);
    }

    /// Back to `Closed` with an empty window and the backoff reset, from any state.
    pub fn reset(&self) {
        if let Some(b) = self.breaker() {
            b.reset(&self.shared.core);
        }
    }

    /// Opens now, for the open duration the breaker would pick itself (backoff included);
    /// it then half-opens as usual.
    pub fn open(&self) {
        self.force(State::Open);
    }

    /// Opens now for `duration` (or moves an open breaker's deadline); it then half-opens as
    /// usual.
    pub fn open_for(&self, duration: Duration) {
        if let Some(b) = self.breaker() {
            let core = &self.shared.core;
            let d = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
            b.open_until(core, core.now().saturating_add(d));
        }
    }

    /// Opens now until `until` (or moves an open breaker's deadline).
    pub fn open_until(&self, until: Instant) {
        if let Some(b) = self.breaker() {
            let core = &self.shared.core;
            b.open_until(core, core.nanos_at(until));
        }
    }

    /// Moves to `state` as the state machine allows: `Open` as [`open`](Self::open),
    /// `Closed` as [`reset`](Self::reset) without clearing a closed breaker's window, the
    /// held states as their methods, and `HalfOpen` only from `Open` (as if the open
    /// duration had passed). The current state is a no-op.
    ///
    /// # Errors
    ///
    /// [`IllegalTransition`] for `HalfOpen` from anything but `Open`; nothing changes.
    pub fn transition_to(&self, state: State) -> Result<(), IllegalTransition> {
        let Some(b) = self.breaker() else {
            return Ok(());
        };
        b.transition_to(&self.shared.core, state)
            .map_err(|from| IllegalTransition { from, to: state })
    }

    fn force(&self, state: State) {
        if let Some(b) = self.breaker() {
            b.force(&self.shared.core, state);
        }
    }
}

/// A snapshot of one breaker, from [`BreakerHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The state.
    pub state: State,
    /// Failures over recorded calls in the window (0 to 1); `None` below `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// Slow calls over recorded calls in the window (0 to 1); `None` below `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window (ignored ones are not recorded).
    pub buffered_calls: u64,
    /// Failures in the window.
    pub buffered_failures: u64,
    /// Slow calls in the window.
    pub buffered_slow_calls: u64,
    /// Successful calls since the breaker was made.
    pub successes: u64,
    /// Failed calls since the breaker was made (late results included).
    pub failures: u64,
    /// Ignored calls since the breaker was made.
    pub ignored: u64,
    /// Calls dropped before they finished since the breaker was made.
    pub cancelled: u64,
    /// Slow calls (successes and failures) since the breaker was made.
    pub slow_calls: u64,
    /// Rejected calls since the breaker was made.
    pub rejections: u64,
    /// For `Open`: the time left open (zero once it has passed, until the next call).
    pub open_for: Option<Duration>,
}
