//! Unit tests of the internals; behaviour is tested in `tests/circuit_breaker.rs`.

use std::time::Duration;

use super::{State, Window, config::Config};

#[test]
fn defaults_match_the_documented_table() {
    let c = Config::default().validate().unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.failure_rate_threshold, 50.0);
    assert_eq!(c.minimum_calls, 20);
    assert_eq!(c.window, Window::Count(100));
    assert_eq!(c.slow_call_duration, None);
    assert_eq!(c.slow_call_rate_threshold, 100.0);
    assert_eq!(c.open_duration, Duration::from_secs(30));
    assert_eq!(c.backoff_multiplier, 1.0);
    assert_eq!(c.max_open_duration, Duration::from_secs(300));
    assert_eq!(c.jitter, 0.0);
    assert_eq!(c.half_open_permits, 3);
    assert_eq!(c.max_half_open_wait, Some(Duration::from_secs(60)));
    assert_eq!(c.after_max_half_open_wait, State::Open);
    assert_eq!(c.initial_state, State::Closed);
    assert!(c.honor_retry_after);
    assert_eq!(c.max_keys, 1024);
    assert_eq!(c.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.event_capacity, 64);
}

#[test]
fn the_default_cap_follows_a_longer_open_duration() {
    let c = Config {
        open_duration: Duration::from_secs(600),
        ..Config::default()
    }
    .validate()
    .unwrap();
    assert_eq!(c.max_open_duration, Duration::from_secs(600));
}

#[test]
fn state_codes_round_trip() {
    for s in State::ALL {
        assert_eq!(State::from_code(s.code()), s);
        assert!(s.code() < 8, "fits the state bits");
    }
    assert_eq!(State::default(), State::Closed);
    assert!(State::Open.is_open() && State::ForcedOpen.is_open());
    assert!(!State::HalfOpen.is_open());
}

#[test]
fn time_window_bucket_length() {
    let c = Config {
        window: Window::time(Duration::from_secs(10), 4),
        ..Config::default()
    };
    assert_eq!(c.bucket_nanos(), Some((2_500_000_000, 4)));
    assert_eq!(Config::default().bucket_nanos(), None);
}
