//! The layer and its builder.

use std::{fmt, sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{
    ConfigError, Retry, RetryBudget, RetryHandle, SafeOrIdempotent, config::Config, handle::Shared,
    service::Local,
};
use crate::classify::HttpClassifier;

/// Applies [`Retry`] to services. See the [module docs](super).
///
/// Every service made by one layer (and every clone of them) shares the layer's
/// [`RetryBudget`] and counters.
///
/// `C` classifies each attempt ([`Classify`](crate::classify::Classify)); `P` decides which
/// requests may be retried at all ([`RetryableRequest`](super::RetryableRequest)).
#[must_use]
pub struct RetryLayer<C = HttpClassifier, P = SafeOrIdempotent> {
    config: Config,
    shared: Arc<Shared>,
    classifier: C,
    retryable: P,
}

impl<C: Clone, P: Clone> Clone for RetryLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            config: self.config,
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            retryable: self.retryable.clone(),
        }
    }
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("config", &self.config)
            .field("budget", &self.shared.budget)
            .field("classifier", &self.classifier)
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl RetryLayer {
    /// A layer with the default settings (see [`RetryBuilder`]): 3 attempts, 50 ms to 1 s of
    /// backoff, its own default [`RetryBudget`], the [`HttpClassifier`], and
    /// [`SafeOrIdempotent`] requests only.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default settings are valid")
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            name: "default".to_owned(),
            config: Config::default(),
            budget: None,
            classifier: HttpClassifier::new(),
            retryable: SafeOrIdempotent::new(),
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, P> RetryLayer<C, P> {
    /// The handle to read this layer's counters and budget.
    #[must_use]
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(self.shared.clone())
    }

    /// The request policy every service of this layer clones.
    #[must_use]
    pub fn retryable(&self) -> &P {
        &self.retryable
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for RetryLayer<C, P> {
    type Service = Retry<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(
            inner,
            Arc::new(Local {
                config: self.config,
                classifier: self.classifier.clone(),
                shared: self.shared.clone(),
            }),
            self.retryable.clone(),
        )
    }
}

/// Builds a [`RetryLayer`], checking every setting; from [`RetryLayer::builder`].
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`name`](Self::name) | `"default"` | the `retry` label of the metrics, the `retry` field of the logs |
/// | [`max_attempts`](Self::max_attempts) | 3 | attempts per request, the first included (1 to 10; 1 = never retry) |
/// | [`backoff`](Self::backoff) | 50 ms, 1 s | the ceiling of the first wait, doubled each retry up to the maximum; each wait is drawn uniformly below its ceiling |
/// | [`budget`](Self::budget) | a new [`RetryBudget::default`] | caps retries to a share of recent requests |
/// | [`classifier`](Self::classifier) | [`HttpClassifier`] | which results are failures worth retrying, and `Retry-After` |
/// | [`retryable`](Self::retryable) | [`SafeOrIdempotent`] | which requests may be retried at all |
///
/// [`build`](Self::build) rejects invalid values with a [`ConfigError`] naming the setting,
/// rather than clamping them.
#[must_use]
pub struct RetryBuilder<C = HttpClassifier, P = SafeOrIdempotent> {
    name: String,
    config: Config,
    budget: Option<RetryBudget>,
    classifier: C,
    retryable: P,
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("budget", &self.budget)
            .field("classifier", &self.classifier)
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl<C, P> RetryBuilder<C, P> {
    /// Names the layer: the `retry` label of its metrics and the `retry` field of its logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attempts per request, the first included: 1 to [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS)
    /// (10). 1 never retries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// Exponential backoff with full jitter: the wait before retry *n* is drawn uniformly
    /// from `[0, min(initial × 2^(n−1), max)]`. `initial` at least 1 ms; `max` at least
    /// `initial` and at most [`MAX_BACKOFF`](super::MAX_BACKOFF) (60 s).
    ///
    /// `max` also bounds `Retry-After`: a failure asking for a longer wait is answered at
    /// once instead of retried.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.initial_backoff = initial;
        self.config.max_backoff = max;
        self
    }

    /// The budget to draw retries from: give several layers the same one (it is cheap to
    /// clone) to cap their retries together. Without it the layer makes its own
    /// [`RetryBudget::default`].
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the classifier: an [`HttpClassifier`] by default (`5xx`, `429` and errors are
    /// retried), or any [`Classify`](crate::classify::Classify), such as an annotated
    /// closure. Only [`Outcome::Failure`](crate::classify::Outcome::Failure) is retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<C2, P> {
        RetryBuilder {
            name: self.name,
            config: self.config,
            budget: self.budget,
            classifier,
            retryable: self.retryable,
        }
    }

    /// Sets which requests may be retried: [`SafeOrIdempotent`] by default, or any
    /// [`RetryableRequest`](super::RetryableRequest), such as a `Fn(&Request<B>) -> bool`
    /// closure.
    pub fn retryable<P2>(self, retryable: P2) -> RetryBuilder<C, P2> {
        RetryBuilder {
            name: self.name,
            config: self.config,
            budget: self.budget,
            classifier: self.classifier,
            retryable,
        }
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build(self) -> Result<RetryLayer<C, P>, ConfigError> {
        let config = self.config.validate()?;
        let budget = self.budget.unwrap_or_default();
        Ok(RetryLayer {
            config,
            shared: Arc::new(Shared::new(self.name, budget)),
            classifier: self.classifier,
            retryable: self.retryable,
        })
    }
}
