//! One breaker's state machine.
//!
//! The state and a generation number share one atomic word. The closed path reads it, records
//! into the lock-free window and compares rates: no lock. Every transition happens under the
//! breaker's mutex, bumps the generation and is published with one store, so that
//!
//! - racing calls that all see the threshold crossed make exactly one transition (the losers
//!   find the generation changed);
//! - a result from a call admitted in an earlier generation (a "late" result) is counted in
//!   the lifetime counters but never in the current window or half-open tally;
//! - the open deadline is an atomic too, so rejecting while open takes no lock either.
//!
//! Nothing runs in the background: Open → HalfOpen and the half-open deadline are checked by
//! the next call.

use std::{
    cell::Cell,
    collections::hash_map::RandomState,
    hash::BuildHasher,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release},
    },
    time::Duration,
};

use tokio::{sync::broadcast, time::Instant};

use super::{
    Event, EventKind, OnEvent, Reason, State,
    config::Config,
    window::{Count, Counters, Tally, Totals, Window},
};
use crate::classify::Outcome;

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

const fn pack(generation: u64, state: State) -> u64 {
    (generation << STATE_BITS) | state.code()
}

const fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}

const fn generation_of(word: u64) -> u64 {
    word >> STATE_BITS
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every breaker of one layer shares: settings, the clock's origin, the event sinks.
pub(crate) struct Core<K> {
    pub(crate) config: Config,
    base: Instant,
    hook: Option<Box<dyn OnEvent<K>>>,
    tx: OnceLock<broadcast::Sender<Event<K>>>,
}

thread_local! {
    /// Set while this thread runs an event hook: a hook calling back into a breaker must not
    /// try to take the lock it runs under.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn in_hook() -> bool {
    IN_HOOK.try_with(Cell::get).unwrap_or(false)
}

impl<K> Core<K> {
    /// Nanoseconds since this core was made, on Tokio's clock (paused in tests).
    pub(crate) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    pub(crate) fn nanos_at(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.base))
    }

    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.base
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.base)
    }
}

impl<K: 'static> Core<K> {
    pub(crate) fn new(config: Config, hook: Option<Box<dyn OnEvent<K>>>) -> Self {
        Self {
            config,
            base: Instant::now(),
            hook,
            tx: OnceLock::new(),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event<K>>
    where
        K: Clone,
    {
        self.tx
            .get_or_init(|| broadcast::channel(self.config.event_capacity).0)
            .subscribe()
    }

    fn wants_events(&self) -> bool {
        self.hook.is_some() || self.tx.get().is_some()
    }

    fn emit(&self, event: Event<K>)
    where
        K: Clone,
    {
        if let Some(hook) = &self.hook {
            let _ = IN_HOOK.try_with(|f| f.set(true));
            let result = catch_unwind(AssertUnwindSafe(|| hook.on_event(&event)));
            let _ = IN_HOOK.try_with(|f| f.set(false));
            if result.is_err() {
                tracing::error!(
                    breaker = %self.config.name,
                    "circuit breaker event hook panicked; the event was dropped"
                );
            }
        }
        if let Some(tx) = self.tx.get() {
            // No subscriber is not an error.
            let _ = tx.send(event);
        }
    }
}

/// How a call was let through; decides where its result is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed or ForcedClosed in this generation: record into the window.
    Window(u64),
    /// A half-open probe of this generation holding a permit.
    Probe(u64),
    /// Disabled: record nothing.
    Bypass,
}

/// A refusal: the state that refused and how long until calls may pass, when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) state: State,
    pub(crate) retry_after: Option<Duration>,
}

#[derive(Default)]
struct HalfOpen {
    free: u32,
    successes: u32,
    failures: u32,
    slow: u32,
    entered_at: u64,
}

/// What only changes under the lock.
struct Locked {
    half_open: HalfOpen,
    /// Opens since the breaker was last closed: the backoff exponent.
    opens: u32,
    transitions: [[u64; 6]; 6],
    threshold_reported: bool,
    rng: u64,
}

/// A read-only view of one breaker, for the handle and metrics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub(crate) state: State,
    pub(crate) tally: Tally,
    pub(crate) totals: Totals,
    pub(crate) open_for: Option<Duration>,
}

pub(crate) struct Breaker<K> {
    pub(crate) key: K,
    word: AtomicU64,
    open_until: AtomicU64,
    retry_hint_until: AtomicU64,
    last_used: AtomicU64,
    window: Window,
    counters: Counters,
    locked: Mutex<Locked>,
}

impl<K> Breaker<K> {
    /// The lock for transitions; `None` when called from inside an event hook (see
    /// [`OnEvent`]), where taking it could deadlock.
    fn lock(&self) -> Option<MutexGuard<'_, Locked>> {
        if in_hook() {
            tracing::warn!("circuit breaker called from its own event hook; the call is skipped");
            return None;
        }
        // A panic while holding the lock leaves consistent data (every write is a plain
        // store): carry on.
        Some(self.locked.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn state(&self) -> State {
        state_of(self.word.load(Acquire))
    }

    /// Marks the breaker used at `now`, for idle eviction. Written at most once a second so
    /// that a busy key does not bounce the cache line between threads.
    pub(crate) fn touch(&self, now: u64) {
        if now.saturating_sub(self.last_used.load(Relaxed)) > 1_000_000_000 {
            self.last_used.store(now, Relaxed);
        }
    }

    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Relaxed)
    }

    /// Gives back the permit of a probe that was ignored or dropped, if its half-open state
    /// is still current.
    pub(crate) fn release(&self, generation: u64) {
        let Some(mut l) = self.lock() else { return };
        if self.word.load(Acquire) == pack(generation, State::HalfOpen) {
            l.half_open.free = l.half_open.free.saturating_add(1);
        }
    }

    /// A call admitted as `admit` was dropped before it finished: counted as cancelled (not
    /// as a failure), and a probe's permit goes back.
    pub(crate) fn cancel(&self, admit: Admit) {
        match admit {
            Admit::Bypass => {}
            Admit::Window(_) => self.counters.add(Count::Cancelled),
            Admit::Probe(generation) => {
                self.counters.add(Count::Cancelled);
                self.release(generation);
            }
        }
    }
}

impl<K: Clone + 'static> Breaker<K> {
    pub(crate) fn new(key: K, core: &Core<K>) -> Self {
        let now = core.now();
        let b = Self {
            key,
            word: AtomicU64::new(pack(0, State::Closed)),
            open_until: AtomicU64::new(0),
            retry_hint_until: AtomicU64::new(0),
            last_used: AtomicU64::new(now),
            window: Window::new(&core.config),
            counters: Counters::new(),
            locked: Mutex::new(Locked {
                half_open: HalfOpen::default(),
                opens: 0,
                transitions: [[0; 6]; 6],
                threshold_reported: false,
                rng: RandomState::new().hash_one(now) | 1,
            }),
        };
        // The initial state is set silently: no event, no transition counted.
        let initial = core.config.initial_state;
        if initial == State::Open
            && let Some(mut l) = b.lock()
        {
            let until = now.saturating_add(b.open_nanos(core, &mut l));
            b.open_until.store(until, Relaxed);
        }
        b.word.store(pack(0, initial), Release);
        b
    }

    // ===== admission =====

    /// Lets a call through or refuses it. Closed: one atomic load.
    #[inline]
    pub(crate) fn acquire(&self, core: &Core<K>) -> Result<Admit, Refusal> {
        let word = self.word.load(Acquire);
        let generation = generation_of(word);
        match state_of(word) {
            State::Closed | State::ForcedClosed => Ok(Admit::Window(generation)),
            State::Disabled => Ok(Admit::Bypass),
            State::ForcedOpen => Err(self.refuse(core, State::ForcedOpen, None)),
            State::Open => {
                let now = core.now();
                let until = self.open_until.load(Acquire);
                if now < until {
                    Err(self.refuse(core, State::Open, Some(Duration::from_nanos(until - now))))
                } else {
                    self.acquire_locked(core, now)
                }
            }
            State::HalfOpen => self.acquire_locked(core, core.now()),
        }
    }

    fn acquire_locked(&self, core: &Core<K>, now: u64) -> Result<Admit, Refusal> {
        let Some(mut l) = self.lock() else {
            return Err(Refusal {
                state: self.state(),
                retry_after: None,
            });
        };
        let mut word = self.word.load(Acquire);
        // ## Open => (Open | HalfOpen)
        //
        // The first call at or after the deadline moves to half-open and takes a permit.
        if state_of(word) == State::Open {
            let until = self.open_until.load(Acquire);
            if now < until {
                drop(l);
                return Err(self.refuse(
                    core,
                    State::Open,
                    Some(Duration::from_nanos(until - now)),
                ));
            }
            self.transition(
                core,
                &mut l,
                State::HalfOpen,
                Reason::OpenElapsed,
                now,
                None,
            );
            word = self.word.load(Acquire);
        }
        // ## HalfOpen => (HalfOpen | Open | Closed)
        //
        // Probes that have not all reported within `max_half_open_wait` (hung, or held by a
        // caller that never polls them) end the half-open state, so it cannot wedge.
        if state_of(word) == State::HalfOpen {
            if let Some(max) = core.config.max_half_open_wait {
                let deadline = l.half_open.entered_at.saturating_add(nanos(max));
                if now >= deadline {
                    let to = core.config.after_max_half_open_wait;
                    self.transition(core, &mut l, to, Reason::MaxHalfOpenWait, now, None);
                    word = self.word.load(Acquire);
                } else if l.half_open.free > 0 {
                    l.half_open.free -= 1;
                    return Ok(Admit::Probe(generation_of(word)));
                } else {
                    drop(l);
                    let left = Duration::from_nanos(deadline - now);
                    return Err(self.refuse(core, State::HalfOpen, Some(left)));
                }
            } else if l.half_open.free > 0 {
                l.half_open.free -= 1;
                return Ok(Admit::Probe(generation_of(word)));
            } else {
                drop(l);
                return Err(self.refuse(core, State::HalfOpen, None));
            }
        }
        drop(l);
        // The state moved on while we waited for the lock (or just above): decide afresh.
        match state_of(word) {
            State::Closed | State::ForcedClosed => Ok(Admit::Window(generation_of(word))),
            State::Disabled => Ok(Admit::Bypass),
            State::Open => {
                let until = self.open_until.load(Acquire);
                let left = Duration::from_nanos(until.saturating_sub(now));
                Err(self.refuse(core, State::Open, Some(left)))
            }
            state => Err(self.refuse(core, state, None)),
        }
    }

    fn refuse(&self, core: &Core<K>, state: State, retry_after: Option<Duration>) -> Refusal {
        self.counters.add(Count::Rejected);
        if core.wants_events() {
            core.emit(Event {
                key: self.key.clone(),
                at: Instant::now(),
                kind: EventKind::Rejected { state, retry_after },
            });
        }
        Refusal { state, retry_after }
    }

    // ===== recording =====

    /// Records the result of a call admitted as `admit`. `slow` says whether it took longer
    /// than `slow_call_duration`; `retry_after` is the backend's hint on a failure.
    #[inline]
    pub(crate) fn record(
        &self,
        core: &Core<K>,
        admit: Admit,
        outcome: Outcome,
        slow: bool,
        retry_after: Option<Duration>,
    ) {
        if admit == Admit::Bypass {
            return;
        }
        self.counters.add(match outcome {
            Outcome::Success => Count::Success,
            Outcome::Failure => Count::Failure,
            Outcome::Ignore => Count::Ignored,
        });
        if outcome == Outcome::Ignore {
            if let Admit::Probe(generation) = admit {
                self.release(generation);
            }
            return;
        }
        if slow {
            self.counters.add(Count::Slow);
        }
        if outcome == Outcome::Failure
            && core.config.honor_retry_after
            && let Some(ra) = retry_after.filter(|d| !d.is_zero())
        {
            let cap = nanos(core.config.max_open_duration);
            let until = core.now().saturating_add(nanos(ra).min(cap));
            self.retry_hint_until.fetch_max(until, Relaxed);
        }
        let failure = outcome == Outcome::Failure;
        match admit {
            Admit::Window(generation) => self.record_window(core, generation, failure, slow),
            Admit::Probe(generation) => self.record_probe(core, generation, failure, slow),
            Admit::Bypass => {}
        }
    }

    #[inline]
    fn record_window(&self, core: &Core<K>, generation: u64, failure: bool, slow: bool) {
        let word = self.word.load(Acquire);
        if generation_of(word) != generation {
            // Late: admitted before a transition. Counted above, but it must not re-open,
            // extend or close anything.
            return;
        }
        let now = if self.window.is_timed() {
            core.now()
        } else {
            0
        };
        if !self.window.record(now, failure, slow) {
            return;
        }
        let tally = self.window.tally(now);
        let Some(reason) = self.exceeded(core, tally) else {
            return;
        };
        match state_of(word) {
            State::Closed => self.trip(core, generation, reason, tally),
            State::ForcedClosed => self.report_threshold(core, generation, tally),
            _ => {}
        }
    }

    /// Which threshold `tally` reaches, if any. Rates count from `minimum_calls` on, and
    /// reaching a threshold (`>=`) is enough.
    fn exceeded(&self, core: &Core<K>, tally: Tally) -> Option<Reason> {
        let cfg = &core.config;
        if tally.total == 0 || tally.total < u64::from(cfg.minimum_calls) {
            return None;
        }
        reached(cfg, tally)
    }

    fn trip(&self, core: &Core<K>, generation: u64, reason: Reason, tally: Tally) {
        let Some(mut l) = self.lock() else { return };
        // ## Closed => (Closed | Open)
        //
        // Only the first of the racing callers finds its generation still current.
        if self.word.load(Acquire) != pack(generation, State::Closed) {
            return;
        }
        let now = core.now();
        self.transition(core, &mut l, State::Open, reason, now, Some(tally));
    }

    fn report_threshold(&self, core: &Core<K>, generation: u64, tally: Tally) {
        let Some(mut l) = self.lock() else { return };
        if self.word.load(Acquire) != pack(generation, State::ForcedClosed) || l.threshold_reported
        {
            return;
        }
        l.threshold_reported = true;
        drop(l);
        tracing::warn!(
            breaker = %core.config.name,
            failure_rate = tally.failure_rate(),
            slow_call_rate = tally.slow_call_rate(),
            "circuit breaker held closed has crossed its threshold"
        );
        core.emit(Event {
            key: self.key.clone(),
            at: Instant::now(),
            kind: EventKind::ThresholdExceeded {
                failure_rate: tally.failure_rate(),
                slow_call_rate: tally.slow_call_rate(),
            },
        });
    }

    fn record_probe(&self, core: &Core<K>, generation: u64, failure: bool, slow: bool) {
        let Some(mut l) = self.lock() else { return };
        if self.word.load(Acquire) != pack(generation, State::HalfOpen) {
            return;
        }
        let h = &mut l.half_open;
        if failure {
            h.failures += 1;
        } else {
            h.successes += 1;
        }
        h.slow += u32::from(slow);
        let permits = core.config.half_open_permits;
        if h.failures + h.successes < permits {
            return;
        }
        // ## HalfOpen => (Open | Closed)
        //
        // Every permit has reported: the same thresholds decide, over the probes alone
        // (`minimum_calls` does not apply).
        let tally = Tally {
            total: u64::from(permits),
            failures: u64::from(h.failures),
            slow: u64::from(h.slow),
        };
        let now = core.now();
        if reached(&core.config, tally).is_some() {
            self.transition(
                core,
                &mut l,
                State::Open,
                Reason::ProbesFailed,
                now,
                Some(tally),
            );
        } else {
            self.transition(
                core,
                &mut l,
                State::Closed,
                Reason::ProbesPassed,
                now,
                Some(tally),
            );
        }
    }

    // ===== transitions =====

    /// Moves to `to`, under the lock. A same-state request is a no-op with no event.
    fn transition(
        &self,
        core: &Core<K>,
        l: &mut Locked,
        to: State,
        reason: Reason,
        now: u64,
        tally: Option<Tally>,
    ) {
        let word = self.word.load(Acquire);
        let from = state_of(word);
        if from == to {
            return;
        }
        let mut open_for = None;
        // Prepare the new state's data before publishing it.
        match to {
            State::Open => {
                let d = self.open_nanos(core, l);
                let mut until = now.saturating_add(d);
                if core.config.honor_retry_after {
                    // Stay open at least as long as the backend asked, up to the cap.
                    let cap = now.saturating_add(nanos(core.config.max_open_duration));
                    until = until.max(self.retry_hint_until.load(Relaxed).min(cap));
                }
                self.open_until.store(until, Release);
                open_for = Some(Duration::from_nanos(until - now));
            }
            State::HalfOpen => {
                l.half_open = HalfOpen {
                    free: core.config.half_open_permits,
                    entered_at: now,
                    ..HalfOpen::default()
                };
            }
            State::Closed | State::ForcedClosed => {
                // A fresh window: the failures that opened the breaker must not re-open it.
                self.window.reset();
                l.threshold_reported = false;
                l.opens = 0;
            }
            State::ForcedOpen | State::Disabled => {}
        }
        self.word
            .store(pack(generation_of(word).wrapping_add(1), to), Release);
        let count = &mut l.transitions[from.code() as usize][to.code() as usize];
        *count = count.saturating_add(1);

        match to {
            State::Open | State::ForcedOpen => tracing::warn!(
                breaker = %core.config.name,
                %from, %to, %reason, ?open_for,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                breaker = %core.config.name,
                %from, %to, %reason,
                "circuit breaker changed state"
            ),
        }
        if core.wants_events() {
            core.emit(Event {
                key: self.key.clone(),
                at: core.instant_at(now),
                kind: EventKind::Transition {
                    from,
                    to,
                    reason,
                    open_for,
                    failure_rate: tally.map(Tally::failure_rate),
                    slow_call_rate: tally.map(Tally::slow_call_rate),
                },
            });
        }
    }

    /// How long the next open lasts: `open_duration * backoff_multiplier ^ opens`, jittered,
    /// capped at `max_open_duration`. Counts this open.
    fn open_nanos(&self, core: &Core<K>, l: &mut Locked) -> u64 {
        let cfg = &core.config;
        let max = cfg.max_open_duration.as_secs_f64();
        let exp = i32::try_from(l.opens).unwrap_or(i32::MAX);
        let mut secs =
            (cfg.open_duration.as_secs_f64() * cfg.backoff_multiplier.powi(exp)).min(max);
        if cfg.jitter > 0.0 {
            // xorshift64*: plenty for spreading reopen times, no dependency.
            l.rng ^= l.rng >> 12;
            l.rng ^= l.rng << 25;
            l.rng ^= l.rng >> 27;
            let r = l.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            #[allow(clippy::cast_precision_loss)]
            let unit = (r >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            secs *= 1.0 + cfg.jitter * (2.0 * unit - 1.0);
            // Not `clamp`, which panics on NaN bounds: this cannot.
            secs = secs.max(0.001).min(max);
        }
        l.opens = l.opens.saturating_add(1);
        let d = Duration::try_from_secs_f64(secs).unwrap_or(cfg.max_open_duration);
        nanos(d).max(1)
    }

    // ===== manual control =====

    /// A manual transition to `to`; `Open` uses the computed open duration.
    pub(crate) fn force(&self, core: &Core<K>, to: State) {
        let Some(mut l) = self.lock() else { return };
        let now = core.now();
        self.transition(core, &mut l, to, Reason::Manual, now, None);
    }

    /// A manual transition that the state machine allows: HalfOpen only from Open (as if
    /// the open duration had passed).
    pub(crate) fn transition_to(&self, core: &Core<K>, to: State) -> Result<(), State> {
        let from = self.state();
        if to == State::HalfOpen && from != State::Open && from != State::HalfOpen {
            return Err(from);
        }
        self.force(core, to);
        Ok(())
    }

    /// Opens until `until` (nanos), replacing any open deadline. No event when already open.
    pub(crate) fn open_until(&self, core: &Core<K>, until: u64) {
        let Some(mut l) = self.lock() else { return };
        let now = core.now();
        if self.state() == State::Open {
            self.open_until.store(until, Release);
            return;
        }
        self.transition(core, &mut l, State::Open, Reason::Manual, now, None);
        self.open_until.store(until, Release);
    }

    /// Back to Closed with an empty window and no backoff.
    pub(crate) fn reset(&self, core: &Core<K>) {
        let Some(mut l) = self.lock() else { return };
        let now = core.now();
        if self.state() == State::Closed {
            self.window.reset();
            l.opens = 0;
        } else {
            self.transition(core, &mut l, State::Closed, Reason::Manual, now, None);
        }
        self.retry_hint_until.store(0, Relaxed);
    }

    // ===== observation =====

    pub(crate) fn view(&self, core: &Core<K>) -> View {
        let word = self.word.load(Acquire);
        let state = state_of(word);
        let now = core.now();
        let open_for = (state == State::Open)
            .then(|| Duration::from_nanos(self.open_until.load(Acquire).saturating_sub(now)));
        View {
            state,
            tally: self.window.tally(now),
            totals: self.counters.totals(),
            open_for,
        }
    }

    /// The transitions counted so far, as `(from, to, count)` for each pair seen.
    pub(crate) fn transitions(&self) -> Vec<(State, State, u64)> {
        // From inside a hook the lock is taken (by this thread): report nothing.
        if in_hook() {
            return Vec::new();
        }
        let l = self.locked.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for from in State::ALL {
            for to in State::ALL {
                let n = l.transitions[from.code() as usize][to.code() as usize];
                if n > 0 {
                    out.push((from, to, n));
                }
            }
        }
        out
    }
}

/// Which threshold a tally reaches (ignoring `minimum_calls`).
fn reached(cfg: &Config, tally: Tally) -> Option<Reason> {
    #[allow(clippy::cast_precision_loss)]
    let (total, failures, slow) = (tally.total as f64, tally.failures as f64, tally.slow as f64);
    if tally.total == 0 {
        return None;
    }
    if failures * 100.0 >= cfg.failure_rate_threshold * total {
        return Some(Reason::FailureRate);
    }
    if cfg.slow_call_duration.is_some() && slow * 100.0 >= cfg.slow_call_rate_threshold * total {
        return Some(Reason::SlowCallRate);
    }
    None
}
