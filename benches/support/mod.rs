//! What the benches share.

use std::time::{Duration, Instant};

/// Time added per call by `layered` over `bare` (each closure makes one call), for criterion's
/// `iter_custom`: batches of each alternate, and alternate which goes first, so that load from
/// other processes hits both alike; the sample is the median of the batch pairs' differences,
/// so a pair that a context switch hit does not count.
pub(crate) fn added(
    mut bare: impl FnMut(),
    mut layered: impl FnMut(),
) -> impl FnMut(u64) -> Duration {
    const BATCH: u64 = 64;
    move |iters| {
        let pairs = iters.div_ceil(BATCH).max(1);
        let mut diffs = Vec::with_capacity(usize::try_from(pairs).unwrap_or(0));
        let time = |call: &mut dyn FnMut()| {
            let start = Instant::now();
            for _ in 0..BATCH {
                call();
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        };
        for pair in 0..pairs {
            let (l, b) = if pair % 2 == 0 {
                let l = time(&mut layered);
                (l, time(&mut bare))
            } else {
                let b = time(&mut bare);
                (time(&mut layered), b)
            };
            diffs.push(l - b);
        }
        diffs.sort_by(f64::total_cmp);
        let median = diffs[diffs.len() / 2];
        // Criterion wants a positive time; a layer cannot really make calls faster.
        Duration::from_secs_f64((median * iters as f64).max(1.0) * 1e-9)
    }
}
