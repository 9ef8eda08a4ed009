//! Unit tests: the settings' validation and defaults. The stacks at work over real HTTP are in
//! `tests/stack.rs`.

use std::time::Duration;

use super::*;

/// A setting's path, and how to spoil it.
type Case<S> = (&'static str, fn(&mut S));

#[test]
fn server_settings_refuse_zero_limits_naming_the_field() {
    let cases: [Case<ServerSettings>; 3] = [
        ("timeout", |s| s.timeout = Some(Duration::ZERO)),
        ("max_body_bytes", |s| s.max_body_bytes = Some(0)),
        ("max_in_flight", |s| s.max_in_flight = Some(0)),
    ];
    for (field, spoil) in cases {
        let mut settings = ServerSettings::default();
        spoil(&mut settings);
        let err = ServerStack::from_settings(&settings).unwrap_err();
        assert_eq!(err.field(), field);
        assert!(
            err.to_string()
                .starts_with(&format!("invalid stack setting `{field}`: must be ")),
            "{err}"
        );
        // The limit layer's own error is the source.
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.is::<crate::limit::ConfigError>());
    }
    assert!(ServerStack::from_settings(&ServerSettings::default()).is_ok());
    assert!(ServerStack::from_settings(&ServerSettings::off()).is_ok());
}

#[test]
fn client_settings_refuse_bad_values_naming_the_field() {
    let cases: [Case<ClientSettings>; 8] = [
        ("timeout", |s| s.timeout = Some(Duration::ZERO)),
        ("retry.max_attempts", |s| {
            s.retry.as_mut().unwrap().max_attempts = 0;
        }),
        ("retry.backoff", |s| {
            s.retry.as_mut().unwrap().initial_backoff = Duration::ZERO;
        }),
        ("retry.retry_ratio", |s| {
            s.retry.as_mut().unwrap().retry_ratio = -1.0;
        }),
        ("circuit_breaker.minimum_calls", |s| {
            s.circuit_breaker.as_mut().unwrap().minimum_calls = 0;
        }),
        ("circuit_breaker.failure_rate_threshold", |s| {
            s.circuit_breaker.as_mut().unwrap().failure_rate_threshold = 0.0;
        }),
        ("fallback_cache.max_entries", |s| {
            s.fallback_cache = Some(FallbackCacheSettings {
                max_entries: 0,
                ..FallbackCacheSettings::default()
            });
        }),
        ("fallback_cache.ttl", |s| {
            s.fallback_cache = Some(FallbackCacheSettings {
                ttl: Duration::ZERO,
                ..FallbackCacheSettings::default()
            });
        }),
    ];
    for (field, spoil) in cases {
        let mut settings = ClientSettings::default();
        spoil(&mut settings);
        let err = ClientStack::from_settings(&settings).unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid stack setting `{field}`: ")),
            "{err}"
        );
    }
    let mut settings = ClientSettings {
        fallback_cache: Some(FallbackCacheSettings::default()),
        ..ClientSettings::default()
    };
    settings.name = "not a token".to_owned();
    let err = ClientStack::from_settings(&settings).unwrap_err();
    assert_eq!(err.field(), "name");
    assert!(ClientStack::from_settings(&ClientSettings::default()).is_ok());
    assert!(ClientStack::from_settings(&ClientSettings::off()).is_ok());
}

#[test]
fn defaults_are_the_recommended_stacks_and_off_is_off() {
    let on = ClientStack::from_settings(&ClientSettings::default()).unwrap();
    assert!(on.retry_handle().is_some());
    assert!(on.circuit_breaker_handle().is_some());
    // Stale answers are opt-in.
    assert!(on.fallback_cache_handle().is_none());
    let off = ClientStack::from_settings(&ClientSettings::off()).unwrap();
    assert!(off.retry_handle().is_none());
    assert!(off.circuit_breaker_handle().is_none());

    let settings = ServerSettings::default();
    assert!(settings.request_id && settings.trace);
    assert_eq!(settings.timeout, Some(Duration::from_secs(30)));
    assert_eq!(settings.max_body_bytes, Some(2 << 20));
    assert_eq!(settings.max_in_flight, Some(1024));
    assert!(settings.metrics.is_none());
}

#[test]
fn optional_reports_its_position() {
    let on = Optional::on(crate::limit::CallTimeoutLayer::new(Duration::from_secs(1)).unwrap());
    assert!(on.is_on());
    assert_eq!(on.get().unwrap().timeout(), Duration::from_secs(1));
    let off: Optional<()> = Optional::default();
    assert!(!off.is_on());
    assert!(Optional::from(Some(())).is_on());
    assert!(Optional::on(1).map(|n| n + 1).into_inner() == Some(2));
}
