//! Exponential backoff with full jitter.

use std::{
    cell::Cell,
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use super::config::Config;

thread_local! {
    /// xorshift64* state, seeded once per thread from the OS-seeded `RandomState`: plenty for
    /// spreading retries, no dependency, no contention between threads.
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

/// A uniform draw from `[0, 1)`.
fn unit() -> f64 {
    let r = RNG
        .try_with(|rng| {
            let mut x = rng.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            rng.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        })
        // Only while the thread is being torn down: any value will do.
        .unwrap_or(1 << 63);
    #[allow(clippy::cast_precision_loss)]
    let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

/// The ceiling of the wait before retry number `retry` (1 for the first retry):
/// `initial × 2^(retry − 1)`, capped at the maximum backoff.
pub(crate) fn ceiling(config: &Config, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    config
        .initial_backoff
        .saturating_mul(factor)
        .min(config.max_backoff)
}

/// The wait before retry number `retry`: uniform in `[0, ceiling]` ("full jitter"), so that
/// clients failing together do not retry together.
pub(crate) fn delay(config: &Config, retry: u32) -> Duration {
    ceiling(config, retry).mul_f64(unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let c = Config::default(); // 50 ms .. 1 s
        let ms = Duration::from_millis;
        let got: Vec<_> = (1..=7).map(|r| ceiling(&c, r)).collect();
        assert_eq!(
            got,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        assert_eq!(ceiling(&c, 40), ms(1000), "no overflow");
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        let c = Config::default();
        let cap = ceiling(&c, 3);
        let draws: Vec<_> = (0..2000).map(|_| delay(&c, 3)).collect();
        assert!(draws.iter().all(|d| *d <= cap));
        // Full jitter: both ends of the range are reached, not just the middle.
        assert!(draws.iter().any(|d| *d < cap / 10), "{draws:?}");
        assert!(draws.iter().any(|d| *d > cap * 9 / 10), "{draws:?}");
    }
}
