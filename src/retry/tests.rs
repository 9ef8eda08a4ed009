//! Unit tests of the internals; behaviour is tested in `tests/retry.rs`.

use std::time::Duration;

use super::{RetryLayer, config::Config};

#[test]
fn defaults_match_the_documented_table() {
    let c = Config::default().validate().unwrap();
    assert_eq!(c.max_attempts, 3);
    assert_eq!(c.initial_backoff, Duration::from_millis(50));
    assert_eq!(c.max_backoff, Duration::from_secs(1));
    let handle = RetryLayer::new().handle();
    assert_eq!(handle.name(), "default");
    let budget = handle.budget();
    assert_eq!(budget.ttl(), Duration::from_secs(10));
    assert_eq!(budget.min_retries_per_sec(), 10);
    assert_eq!(budget.retry_ratio(), 0.2);
}

#[test]
fn invalid_settings_name_the_setting() {
    let ms = Duration::from_millis;
    let err = |b: super::RetryBuilder| b.build().unwrap_err();
    for n in [0, 11] {
        let e = err(RetryLayer::builder().max_attempts(n));
        assert_eq!((e.field(), e.reason()), ("max_attempts", "must be 1 to 10"));
    }
    let e = err(RetryLayer::builder().backoff(Duration::ZERO, ms(10)));
    assert_eq!(e.field(), "backoff");
    assert!(e.reason().contains("at least 1 ms"), "{e}");
    let e = err(RetryLayer::builder().backoff(ms(100), ms(10)));
    assert!(e.reason().contains("not be shorter"), "{e}");
    let e = err(RetryLayer::builder().backoff(ms(100), Duration::from_secs(61)));
    assert!(e.reason().contains("at most 60 s"), "{e}");
    assert_eq!(
        e.to_string(),
        "invalid retry setting `backoff`: the maximum backoff must be at most 60 s"
    );
    // The edges are accepted.
    for (n, initial, max) in [(1, ms(1), ms(1)), (10, ms(1), Duration::from_secs(60))] {
        let _ = RetryLayer::builder()
            .max_attempts(n)
            .backoff(initial, max)
            .build()
            .unwrap();
    }
}

#[test]
fn layers_share_a_budget_only_when_given_one() {
    let a = RetryLayer::new();
    let b = RetryLayer::new();
    assert!(!a.handle().budget().same_as(b.handle().budget()));
    assert!(a.handle().budget().same_as(a.clone().handle().budget()));
    let shared = super::RetryBudget::default();
    let c = RetryLayer::builder()
        .budget(shared.clone())
        .build()
        .unwrap();
    assert!(c.handle().budget().same_as(&shared));
}
