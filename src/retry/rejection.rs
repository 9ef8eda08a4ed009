//! Recognising a circuit breaker's rejection in an error of any type.

use std::{any::Any, error::Error, fmt};

/// Whether `err` is a circuit breaker's rejection (`circuit_breaker::CircuitOpen`), typed or
/// boxed.
///
/// Recognised without knowing the breaker's key type `K` (nor the inner error type of a
/// `CircuitBreakerError<E, K>`), which a downcast would need:
///
/// - `err` itself prints as `CircuitOpen { .. }` or `Open(CircuitOpen { .. })` (the `Debug`
///   of `CircuitOpen` and of `CircuitBreakerError::Open`, both this crate's, pinned by the
///   tests);
/// - `err` is a `Box<dyn Error (+ Send (+ Sync))>` (a `tower::BoxError`) and an error in its
///   [`source`](Error::source) chain prints so (at most 32 links are followed).
///
/// Only the first bytes are formatted: the check stops at the first mismatch. The type
/// itself is not needed, so this works whether or not the `circuit-breaker` feature is on.
pub(crate) fn is_circuit_open<E: fmt::Debug + 'static>(err: &E) -> bool {
    if prints_as_open(err) {
        return true;
    }
    let any: &dyn Any = err;
    let boxed: Option<&(dyn Error + 'static)> =
        if let Some(b) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
            Some(b.as_ref())
        } else if let Some(b) = any.downcast_ref::<Box<dyn Error + Send>>() {
            Some(b.as_ref())
        } else if let Some(b) = any.downcast_ref::<Box<dyn Error>>() {
            Some(b.as_ref())
        } else {
            None
        };
    // The box itself printed as its content above: start with its source.
    let mut next = boxed.and_then(Error::source);
    for _ in 0..32 {
        let Some(err) = next else { return false };
        if prints_as_open(err) {
            return true;
        }
        next = err.source();
    }
    false
}

fn prints_as_open(value: &dyn fmt::Debug) -> bool {
    debug_starts_with(value, "CircuitOpen {") || debug_starts_with(value, "Open(CircuitOpen {")
}

/// Whether `value`'s `Debug` output starts with `prefix`, without allocating.
fn debug_starts_with(value: &dyn fmt::Debug, prefix: &str) -> bool {
    struct Matcher<'a> {
        rest: &'a str,
        failed: bool,
    }
    impl fmt::Write for Matcher<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.rest.len());
            if s.as_bytes()[..n] != self.rest.as_bytes()[..n] {
                self.failed = true;
            } else {
                // A char boundary: the bytes before it are whole UTF-8, as in `s`.
                self.rest = &self.rest[n..];
            }
            // Stop formatting as soon as the answer is known.
            if self.failed || self.rest.is_empty() {
                Err(fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut m = Matcher {
        rest: prefix,
        failed: false,
    };
    let _ = fmt::write(&mut m, format_args!("{value:?}"));
    !m.failed && m.rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named;

    #[test]
    fn prefixes() {
        assert!(debug_starts_with(&"abc", "\"ab"));
        assert!(!debug_starts_with(&"abc", "\"abd"));
        assert!(!debug_starts_with(&Named, "NamedX"));
        assert!(debug_starts_with(&Named, "Named"));
        assert!(debug_starts_with(&Named, ""));
    }

    #[test]
    fn ordinary_errors_are_not_rejections() {
        let io = std::io::Error::other("connection reset");
        assert!(!is_circuit_open(&io));
        let boxed: Box<dyn Error + Send + Sync> = Box::new(io);
        assert!(!is_circuit_open(&boxed));
        assert!(!is_circuit_open(&Named));
    }

    #[cfg(feature = "circuit-breaker")]
    #[test]
    fn circuit_open_in_every_shape() {
        use std::time::Duration;

        use crate::circuit_breaker::{CircuitBreakerError, CircuitOpen, State};

        #[derive(Debug)]
        struct Wrap(Box<dyn Error + Send + Sync>);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl Error for Wrap {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(self.0.as_ref())
            }
        }

        let open = || CircuitOpen::new("users", State::Open, Some(Duration::from_secs(3)));
        // Pins the `Debug` output the check relies on.
        assert!(format!("{:?}", open()).starts_with("CircuitOpen { key: \"users\""));

        assert!(is_circuit_open(&open()));
        let typed: CircuitBreakerError<std::io::Error, &str> = CircuitBreakerError::Open(open());
        assert!(is_circuit_open(&typed));
        let inner: CircuitBreakerError<std::io::Error, &str> =
            CircuitBreakerError::Inner(std::io::Error::other("reset"));
        assert!(!is_circuit_open(&inner));
        assert!(is_circuit_open(&typed.into_box_error()));
        // Boxed whole (`map_err(Into::into)`), or behind another error.
        let boxed: Box<dyn Error + Send + Sync> =
            Box::new(CircuitBreakerError::<std::io::Error, ()>::Open(
                CircuitOpen::new((), State::ForcedOpen, None),
            ));
        assert!(is_circuit_open(&boxed));
        let wrapped: Box<dyn Error + Send + Sync> = Box::new(Wrap(Box::new(open())));
        assert!(is_circuit_open(&wrapped));
        let wrapped: Box<dyn Error> = Box::new(Wrap(Box::new(open())));
        assert!(is_circuit_open(&wrapped));
        let not: Box<dyn Error + Send> = Box::new(Wrap(Box::new(std::io::Error::other("x"))));
        assert!(!is_circuit_open(&not));
    }
}
