//! Lock-free sliding windows of call outcomes, and the sharded lifetime counters.
//!
//! Both windows are written with plain atomic operations so that the closed path never takes
//! a lock. Under concurrency a rate read while another thread is mid-write may be off by that
//! one call; a single-threaded sequence of calls is counted exactly (the model test relies on
//! it).

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

use super::config::Config;

/// Counts over a window: recorded calls, failures among them, slow calls among them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) total: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Tally {
    pub(crate) fn failure_rate(self) -> f64 {
        ratio(self.failures, self.total)
    }

    pub(crate) fn slow_call_rate(self) -> f64 {
        ratio(self.slow, self.total)
    }
}

#[allow(clippy::cast_precision_loss)] // counts are far below 2^52
fn ratio(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(config: &Config) -> Self {
        match config.bucket_nanos() {
            None => {
                let size = match config.window {
                    super::Window::Count(n) => n,
                    super::Window::Time { .. } => 1,
                };
                Self::Count(CountWindow::new(size))
            }
            Some((bucket_nanos, buckets)) => Self::Time(TimeWindow::new(bucket_nanos, buckets)),
        }
    }

    /// Whether recording needs the time.
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Self::Time(_))
    }

    /// Records one call at `now` (nanoseconds; ignored by a count window). Returns `false`
    /// when the window is unchanged (a count window full of plain successes), so the rates
    /// need no fresh look.
    #[inline]
    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) -> bool {
        match self {
            Self::Count(w) => w.record(failure, slow),
            Self::Time(w) => {
                w.record(now, failure, slow);
                true
            }
        }
    }

    pub(crate) fn tally(&self, now: u64) -> Tally {
        match self {
            Self::Count(w) => w.tally(),
            Self::Time(w) => w.tally(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

/// The last `size` calls, as three bitsets over a ring of positions: present, failed, slow.
///
/// Rates are popcounts, so they always agree with the bits (no separate running totals that a
/// race could skew for good). `bad` counts the set failure and slow bits; while it is zero and
/// the ring is full, a plain success changes nothing and is not written at all: in a healthy
/// breaker the closed path only *reads* shared memory.
pub(crate) struct CountWindow {
    size: u64,
    head: AtomicU64,
    bad: AtomicU64,
    present: Box<[AtomicU64]>,
    failed: Box<[AtomicU64]>,
    slow: Box<[AtomicU64]>,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let words = size.div_ceil(64) as usize;
        let bits = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            size: u64::from(size.max(1)),
            head: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            present: bits(),
            failed: bits(),
            slow: bits(),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) -> bool {
        if !failure && !slow && self.bad.load(Relaxed) == 0 && self.head.load(Relaxed) >= self.size
        {
            return false;
        }
        let idx = self.head.fetch_add(1, Relaxed);
        let pos = idx % self.size;
        let (w, bit) = ((pos / 64) as usize, 1u64 << (pos % 64));
        if idx < self.size
            && let Some(word) = self.present.get(w)
        {
            word.fetch_or(bit, Relaxed);
        }
        self.set(&self.failed, w, bit, failure);
        self.set(&self.slow, w, bit, slow);
        true
    }

    /// Sets or clears one bit, keeping `bad` equal to the number of set bits: only the thread
    /// whose read-modify-write actually flips the bit adjusts it.
    fn set(&self, words: &[AtomicU64], w: usize, bit: u64, on: bool) {
        let Some(word) = words.get(w) else { return };
        if (word.load(Relaxed) & bit != 0) == on {
            return;
        }
        let prev = if on {
            word.fetch_or(bit, Relaxed)
        } else {
            word.fetch_and(!bit, Relaxed)
        };
        if (prev & bit != 0) != on {
            if on {
                self.bad.fetch_add(1, Relaxed);
            } else {
                self.bad.fetch_sub(1, Relaxed);
            }
        }
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for ((p, f), s) in self.present.iter().zip(&*self.failed).zip(&*self.slow) {
            let p = p.load(Relaxed);
            t.total += u64::from(p.count_ones());
            t.failures += u64::from((f.load(Relaxed) & p).count_ones());
            t.slow += u64::from((s.load(Relaxed) & p).count_ones());
        }
        // `bad` is only a hint for the fast path; a reset racing a late writer could leave it
        // off. Re-derive it when the bits say the window is clean.
        if t.failures == 0 && t.slow == 0 {
            let stray = self
                .failed
                .iter()
                .chain(&*self.slow)
                .all(|w| w.load(Relaxed) == 0);
            if stray {
                self.bad.store(0, Relaxed);
            }
        }
        t
    }

    fn reset(&self) {
        for w in self.present.iter().chain(&*self.failed).chain(&*self.slow) {
            w.store(0, Relaxed);
        }
        self.head.store(0, Relaxed);
        self.bad.store(0, Relaxed);
    }
}

/// Buckets of `bucket_nanos` each; one `u64` per bucket packs the bucket's epoch stamp with
/// its counts, so that moving a bucket to a new epoch and counting into it is one
/// compare-and-swap.
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[AtomicU64]>,
    /// The newest epoch recorded: a window idle for a whole length is cleared at once, and a
    /// stale bucket can never alias a current epoch.
    last_epoch: AtomicU64,
}

const STAMP_BITS: u32 = 24;
const COUNT_BITS: u32 = 13;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn pack(stamp: u64, total: u64, failures: u64, slow: u64) -> u64 {
    (stamp & STAMP_MASK)
        | (total << STAMP_BITS)
        | (failures << (STAMP_BITS + COUNT_BITS))
        | (slow << (STAMP_BITS + 2 * COUNT_BITS))
}

fn unpack(word: u64) -> (u64, u64, u64, u64) {
    (
        word & STAMP_MASK,
        (word >> STAMP_BITS) & COUNT_MAX,
        (word >> (STAMP_BITS + COUNT_BITS)) & COUNT_MAX,
        (word >> (STAMP_BITS + 2 * COUNT_BITS)) & COUNT_MAX,
    )
}

impl TimeWindow {
    fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            bucket_nanos: bucket_nanos.max(1),
            buckets: (0..buckets.max(1)).map(|_| AtomicU64::new(0)).collect(),
            last_epoch: AtomicU64::new(0),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn record(&self, now: u64, failure: bool, slow: bool) {
        let epoch = now / self.bucket_nanos;
        let last = self.last_epoch.load(Relaxed);
        if epoch > last {
            if epoch - last >= self.len() {
                self.clear_buckets();
            }
            self.last_epoch.fetch_max(epoch, Relaxed);
        }
        let stamp = epoch & STAMP_MASK;
        let Some(bucket) = self.buckets.get((epoch % self.len()) as usize) else {
            return;
        };
        let mut cur = bucket.load(Relaxed);
        loop {
            let (s, mut t, mut f, mut sl) = unpack(cur);
            if s != stamp {
                (t, f, sl) = (0, 0, 0);
            } else if t == COUNT_MAX {
                // Full: halve, which keeps the bucket's rates (and `f, sl <= t`).
                (t, f, sl) = (t / 2, f / 2, sl / 2);
            }
            let new = pack(stamp, t + 1, f + u64::from(failure), sl + u64::from(slow));
            match bucket.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn tally(&self, now: u64) -> Tally {
        let epoch = now / self.bucket_nanos;
        let mut t = Tally::default();
        if epoch >= self.last_epoch.load(Relaxed).saturating_add(self.len()) {
            return t;
        }
        let stamp = epoch & STAMP_MASK;
        for bucket in &*self.buckets {
            let word = bucket.load(Relaxed);
            if word == 0 {
                continue;
            }
            let (s, total, failures, slow) = unpack(word);
            let age = stamp.wrapping_sub(s) & STAMP_MASK;
            // A bucket "from the future" was just written by a thread that read the clock a
            // moment after us: it is current.
            let current = age < self.len() || age >= STAMP_MASK / 2;
            if current {
                t.total += total;
                t.failures += failures;
                t.slow += slow;
            } else {
                // Expired: zero it now so that its stamp cannot come round again.
                let _ = bucket.compare_exchange(word, 0, Relaxed, Relaxed);
            }
        }
        t
    }

    fn clear_buckets(&self) {
        for b in &*self.buckets {
            b.store(0, Relaxed);
        }
    }

    fn reset(&self) {
        self.clear_buckets();
    }
}

/// Lifetime counters (for metrics and [`Stats`](super::Stats)), sharded by thread so that two
/// threads counting calls through one breaker do not fight over one cache line.
pub(crate) struct Counters {
    shards: [Shard; SHARDS],
}

const SHARDS: usize = 4;

#[derive(Default)]
#[repr(align(128))] // two cache lines: also defeats adjacent-line prefetching
struct Shard {
    success: AtomicU64,
    failure: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
}

/// A counter of [`Counters`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Success,
    Failure,
    Ignored,
    Cancelled,
    Slow,
    Rejected,
}

/// Totals of [`Counters`], in [`Count`] order.
pub(crate) type Totals = [u64; 6];

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            shards: Default::default(),
        }
    }

    #[inline]
    pub(crate) fn add(&self, count: Count) {
        let s = &self.shards[shard_index()];
        let c = match count {
            Count::Success => &s.success,
            Count::Failure => &s.failure,
            Count::Ignored => &s.ignored,
            Count::Cancelled => &s.cancelled,
            Count::Slow => &s.slow,
            Count::Rejected => &s.rejected,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = [0u64; 6];
        for s in &self.shards {
            for (i, c) in [
                &s.success,
                &s.failure,
                &s.ignored,
                &s.cancelled,
                &s.slow,
                &s.rejected,
            ]
            .into_iter()
            .enumerate()
            {
                t[i] = t[i].wrapping_add(c.load(Relaxed));
            }
        }
        t
    }
}

/// This thread's shard: threads are dealt shards round-robin on first use.
#[inline]
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|i| {
            let mut v = i.get();
            if v == usize::MAX {
                v = NEXT.fetch_add(1, Relaxed) % SHARDS;
                i.set(v);
            }
            v
        })
        // During thread teardown: any shard will do.
        .unwrap_or(0)
        % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_is_exact_single_threaded() {
        let w = CountWindow::new(5);
        assert_eq!(w.tally(), Tally::default());
        w.record(true, false);
        w.record(false, true);
        w.record(false, false);
        assert_eq!(
            w.tally(),
            Tally {
                total: 3,
                failures: 1,
                slow: 1
            }
        );
        for _ in 0..2 {
            w.record(false, false);
        }
        assert_eq!(w.tally().total, 5);
        // The failure and the slow call are pushed out by two more successes.
        assert!(w.record(false, false));
        assert!(w.record(false, false));
        assert_eq!(
            w.tally(),
            Tally {
                total: 5,
                failures: 0,
                slow: 0
            }
        );
        // Full of successes: a success is not even written.
        assert!(!w.record(false, false));
        w.reset();
        assert_eq!(w.tally(), Tally::default());
    }

    #[test]
    fn count_window_spans_words() {
        let w = CountWindow::new(130);
        for i in 0..300 {
            w.record(i % 3 == 0, i % 5 == 0);
        }
        let t = w.tally();
        assert_eq!(t.total, 130);
        let last: Vec<u32> = (170..300).collect();
        assert_eq!(
            t.failures,
            last.iter().filter(|i| *i % 3 == 0).count() as u64
        );
        assert_eq!(t.slow, last.iter().filter(|i| *i % 5 == 0).count() as u64);
    }

    #[test]
    fn time_window_expires_whole_buckets() {
        let ms = 1_000_000;
        // 4 buckets of 250 ms.
        let w = TimeWindow::new(250 * ms, 4);
        w.record(0, true, false);
        w.record(100 * ms, false, false);
        assert_eq!(w.tally(999 * ms).total, 2);
        // The first bucket expires at exactly 1 s.
        assert_eq!(w.tally(1000 * ms).total, 0);
        w.record(1100 * ms, true, true);
        let t = w.tally(1100 * ms);
        assert_eq!((t.total, t.failures, t.slow), (1, 1, 1));
        // Idle for longer than the window: empty.
        assert_eq!(w.tally(5000 * ms).total, 0);
        w.record(5000 * ms, false, false);
        assert_eq!(w.tally(5000 * ms).total, 1);
    }

    #[test]
    fn time_window_halves_a_full_bucket() {
        let w = TimeWindow::new(1_000_000_000, 1);
        for i in 0..(COUNT_MAX + 10) {
            w.record(0, i % 2 == 0, false);
        }
        let t = w.tally(0);
        assert!(t.total <= COUNT_MAX && t.total > COUNT_MAX / 2, "{t:?}");
        let rate = t.failure_rate();
        assert!((rate - 0.5).abs() < 0.01, "{rate}");
    }

    #[test]
    fn time_window_stamps_wrap_without_aliasing() {
        let w = TimeWindow::new(1, 3);
        w.record(5, true, false);
        // Exactly one stamp period later: the old bucket must not count.
        let later = 5 + (1 << STAMP_BITS);
        w.record(later + 1, false, false);
        assert_eq!(w.tally(later + 1).failures, 0);
    }

    #[test]
    fn counters_sum_over_shards() {
        let c = std::sync::Arc::new(Counters::new());
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(Count::Success);
                    }
                    c.add(Count::Rejected);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = c.totals();
        assert_eq!(t[0], 6000);
        assert_eq!(t[5], 6);
    }
}
