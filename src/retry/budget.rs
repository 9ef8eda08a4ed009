//! The retry budget: retries as a share of recent requests, plus a small reserve.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::time::Instant;

use super::ConfigError;

/// Slots the time window is cut into: a deposit counts for 90 to 100 % of the window.
const SLOTS: u32 = 10;
/// One retry, in the milli-tokens the slots count in (a ratio of 0.2 deposits 200).
const TOKEN: i64 = 1000;
/// Copies of the slots, each written by its own threads: deposits on several cores do not
/// fight over one cache line. Withdrawals, on the failure path only, read them all.
const STRIPES: usize = 8;

thread_local! {
    /// This thread's stripe, handed out round-robin.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Relaxed) % STRIPES
    };
}

fn stripe() -> usize {
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// One stripe's slots, alone on its cache lines.
#[repr(align(128))]
struct Stripe {
    /// Each slot packs the tick it counts for (high 32 bits) and its milli-tokens (low 32,
    /// signed), so that a slot is reset for a new tick and added to in one compare-and-swap.
    slots: [AtomicU64; SLOTS as usize],
}

/// Caps the retries of every service that shares it to a share of their recent requests.
///
/// Each request the layer may retry *deposits* `retry_ratio` of a retry; each retry
/// *withdraws* one; when the balance is below one retry, failed requests are answered at once
/// instead of retried. Deposits and withdrawals count for `ttl`, then expire, so the budget
/// follows recent traffic. On top of that, a reserve of `min_retries_per_sec × ttl` retries
/// lets a client that sends few requests still retry now and then. This is Finagle's
/// `RetryBudget` (and `tower::retry::budget::TpsBudget`): during an outage retries add at most
/// `retry_ratio` to the load, instead of multiplying it by the number of attempts.
///
/// | parameter | default | accepted |
/// |---|---|---|
/// | `ttl` | 10 s | 1 s to 60 s |
/// | `min_retries_per_sec` | 10 | 0 to 100 000 |
/// | `retry_ratio` | 0.2 (one retry per five requests) | 0 to 100 |
///
/// Cheap to clone: clones share one balance. A [`RetryLayer`](super::RetryLayer) makes its own
/// unless given one with [`RetryBuilder::budget`](super::RetryBuilder::budget); give several
/// layers the same budget to cap them together.
///
/// Lock-free: a deposit is a clock read and one compare-and-swap on the current slot of the
/// calling thread's stripe (threads are spread over 8 stripes, so that deposits from several
/// cores do not contend). Two withdrawals racing for the last retry may both get it: the
/// budget is a bound on load, not an exact count.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark::retry::RetryBudget;
///
/// // No reserve: only deposits pay for retries, one retry per two requests.
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5).unwrap();
/// assert!(!budget.withdraw());
/// budget.deposit();
/// budget.deposit();
/// assert_eq!(budget.available(), 1);
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ttl: Duration,
    min_retries_per_sec: u32,
    retry_ratio: f64,
    /// Milli-tokens added by one deposit.
    deposit: i32,
    /// Milli-tokens always available, before withdrawals.
    reserve: i64,
    base: Instant,
    slot_nanos: u64,
    stripes: [Stripe; STRIPES],
}

impl RetryBudget {
    /// A budget allowing `retry_ratio` retries per request over the last `ttl`, plus
    /// `min_retries_per_sec × ttl` retries per `ttl` whatever the traffic (see the
    /// [type docs](Self) for the accepted ranges).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first argument out of range.
    pub fn new(
        ttl: Duration,
        min_retries_per_sec: u32,
        retry_ratio: f64,
    ) -> Result<Self, ConfigError> {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
            return Err(ConfigError::new("retry", "ttl", "must be 1 s to 60 s"));
        }
        if min_retries_per_sec > 100_000 {
            return Err(ConfigError::new(
                "retry",
                "min_retries_per_sec",
                "must be 0 to 100000",
            ));
        }
        if !(retry_ratio.is_finite() && (0.0..=100.0).contains(&retry_ratio)) {
            return Err(ConfigError::new(
                "retry",
                "retry_ratio",
                "must be in [0, 100]",
            ));
        }
        // In range by the checks above: at most 100 000 milli-tokens per deposit, and
        // 100 000 × 60 000 milli-tokens of reserve.
        #[allow(clippy::cast_possible_truncation)]
        let deposit = (retry_ratio * TOKEN as f64).round() as i32;
        let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let reserve = i64::from(min_retries_per_sec).saturating_mul(ttl_millis);
        let slot_nanos = u64::try_from((ttl / SLOTS).as_nanos()).unwrap_or(u64::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                ttl,
                min_retries_per_sec,
                retry_ratio,
                deposit,
                reserve,
                base: Instant::now(),
                slot_nanos,
                stripes: std::array::from_fn(|_| Stripe {
                    slots: std::array::from_fn(|_| AtomicU64::new(0)),
                }),
            }),
        })
    }

    /// Credits one request: `retry_ratio` of a retry, for `ttl`. The layer calls it once for
    /// every request it may retry.
    pub fn deposit(&self) {
        if self.inner.deposit != 0 {
            self.inner.add(self.inner.deposit);
        }
    }

    /// Takes one retry if the balance allows it; `false` when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        let inner = &*self.inner;
        let tick = inner.tick();
        if inner.balance(tick) >= TOKEN {
            inner.add_at(tick, -(TOKEN as i32));
            true
        } else {
            false
        }
    }

    /// How many retries the budget allows right now.
    #[must_use]
    pub fn available(&self) -> u64 {
        let inner = &*self.inner;
        u64::try_from(inner.balance(inner.tick()) / TOKEN).unwrap_or(0)
    }

    /// How long deposits and withdrawals count.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The retries per second always allowed, whatever the traffic.
    #[must_use]
    pub fn min_retries_per_sec(&self) -> u32 {
        self.inner.min_retries_per_sec
    }

    /// The retries allowed per request.
    #[must_use]
    pub fn retry_ratio(&self) -> f64 {
        self.inner.retry_ratio
    }

    /// Whether `self` and `other` share one balance.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// 10 s, 10 retries per second, a ratio of 0.2: Finagle's and tower's defaults.
impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2).expect("the defaults are valid")
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.inner.ttl)
            .field("min_retries_per_sec", &self.inner.min_retries_per_sec)
            .field("retry_ratio", &self.inner.retry_ratio)
            .field("available", &self.available())
            .finish()
    }
}

fn pack(tick: u32, value: i32) -> u64 {
    (u64::from(tick) << 32) | u64::from(value.cast_unsigned())
}

fn unpack(word: u64) -> (u32, i32) {
    #[allow(clippy::cast_possible_truncation)]
    ((word >> 32) as u32, (word as u32).cast_signed())
}

impl Inner {
    /// The current slot-length period since the budget was made, on Tokio's clock (paused
    /// in tests). Wraps after 2^32 periods (years: a slot is at least 100 ms).
    fn tick(&self) -> u32 {
        let nanos = Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos();
        let tick = u64::try_from(nanos / u128::from(self.slot_nanos)).unwrap_or(u64::MAX);
        #[allow(clippy::cast_possible_truncation)]
        let tick = tick as u32;
        tick
    }

    fn add(&self, delta: i32) {
        self.add_at(self.tick(), delta);
    }

    fn add_at(&self, tick: u32, delta: i32) {
        let slot = &self.stripes[stripe()].slots[(tick % SLOTS) as usize];
        let mut current = slot.load(Relaxed);
        loop {
            let (at, value) = unpack(current);
            // Same tick: add. An older one: the slot is reused for this tick. A newer one
            // (this thread read the clock, then stalled): add to it rather than erase it.
            let next = if at == tick || ahead(at, tick) {
                pack(at, value.saturating_add(delta))
            } else {
                pack(tick, delta)
            };
            match slot.compare_exchange_weak(current, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Milli-tokens available at `tick`: the reserve plus every slot still in the window.
    fn balance(&self, tick: u32) -> i64 {
        let live: i64 = self
            .stripes
            .iter()
            .flat_map(|stripe| &stripe.slots)
            .map(|slot| unpack(slot.load(Relaxed)))
            .filter(|&(at, _)| tick.wrapping_sub(at) < SLOTS || ahead(at, tick))
            .map(|(_, value)| i64::from(value))
            .sum();
        self.reserve.saturating_add(live)
    }
}

/// Whether tick `a` is after tick `b`, allowing for wrap-around.
fn ahead(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < u32::MAX / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ttl_secs: u64, min: u32, ratio: f64) -> RetryBudget {
        RetryBudget::new(Duration::from_secs(ttl_secs), min, ratio).unwrap()
    }

    #[test]
    fn packing_round_trips() {
        for (tick, value) in [(0, 0), (7, -1000), (u32::MAX, i32::MIN), (1, i32::MAX)] {
            assert_eq!(unpack(pack(tick, value)), (tick, value));
        }
        assert!(ahead(1, 0) && ahead(0, u32::MAX) && !ahead(0, 1) && !ahead(3, 3));
    }

    #[test]
    fn validation_names_the_argument() {
        let s = Duration::from_secs;
        let field = |r: Result<RetryBudget, ConfigError>| r.unwrap_err().field();
        assert_eq!(
            field(RetryBudget::new(Duration::from_millis(999), 1, 0.2)),
            "ttl"
        );
        assert_eq!(field(RetryBudget::new(s(61), 1, 0.2)), "ttl");
        assert_eq!(
            field(RetryBudget::new(s(1), 100_001, 0.2)),
            "min_retries_per_sec"
        );
        for bad in [-0.1, 100.5, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field(RetryBudget::new(s(1), 1, bad)),
                "retry_ratio",
                "{bad}"
            );
        }
        RetryBudget::new(s(1), 0, 0.0).unwrap();
        RetryBudget::new(s(60), 100_000, 100.0).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_is_min_per_sec_times_ttl() {
        let b = budget(2, 3, 0.0);
        assert_eq!(b.available(), 6);
        for _ in 0..6 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
        // Withdrawals expire with the window: the reserve is whole again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.available(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_pay_for_a_ratio_of_retries() {
        let b = budget(10, 0, 0.2);
        for _ in 0..4 {
            b.deposit();
        }
        assert!(!b.withdraw(), "four deposits of 0.2 are not a retry");
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
        // Ratios above 1: several retries per request.
        let b = budget(10, 0, 2.5);
        b.deposit();
        b.deposit();
        assert_eq!(b.available(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_ttl() {
        let b = budget(1, 0, 1.0);
        b.deposit();
        tokio::time::advance(Duration::from_millis(850)).await;
        b.deposit();
        assert_eq!(b.available(), 2);
        // The first deposit is now more than a ttl old; the second is not.
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(b.available(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.available(), 0);
        // 7.05 s: the first deposit's slot (0 to 0.1 s) is reused, and starts from zero, not
        // from what it held.
        tokio::time::advance(Duration::from_millis(900)).await;
        b.deposit();
        assert_eq!(b.available(), 1);
        assert!(b.withdraw());
        assert_eq!(b.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_balance() {
        let a = budget(10, 0, 1.0);
        let b = a.clone();
        a.deposit();
        assert!(b.withdraw());
        assert!(!a.withdraw());
        assert!(a.same_as(&b));
        assert!(!a.same_as(&RetryBudget::default()));
    }

    #[test]
    fn concurrent_deposits_are_all_counted() {
        let b = budget(60, 0, 1.0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(b.available(), 4000);
    }

    #[test]
    fn defaults() {
        let b = RetryBudget::default();
        assert_eq!(b.ttl(), Duration::from_secs(10));
        assert_eq!(b.min_retries_per_sec(), 10);
        assert_eq!(b.retry_ratio(), 0.2);
        assert_eq!(b.available(), 100);
    }
}
