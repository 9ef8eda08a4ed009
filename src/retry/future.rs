//! The response future: attempts, waits between them, and the answer.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::{
    RetryableRequest, SafeOrIdempotent, backoff, handle::GiveUp, rejection::is_circuit_open,
    retryable::is_safe, service::Local,
};
use crate::classify::{Classify, Outcome};

pin_project! {
    #[project = StateProj]
    enum State<F> {
        /// An attempt is in flight.
        Attempting { #[pin] future: F },
        /// Waiting before the next attempt. Boxed: only a failing request pays for the timer.
        BackingOff { sleep: Pin<Box<Sleep>> },
        /// Waiting for the inner service to take the next attempt.
        Readying,
        /// Answered.
        Done,
    }
}

pin_project! {
    /// Response future of [`Retry`](super::Retry): the attempts, the waits between them, and
    /// the answer.
    ///
    /// Cancel-safe: dropping it stops everything at once, whether an attempt is in flight
    /// (the attempt's future is dropped) or it is waiting to retry (the timer is dropped and
    /// nothing more is sent).
    pub struct ResponseFuture<S, B, C, P = SafeOrIdempotent>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future>,
        // `None` for a request that is not retried.
        retry: Option<Retrying<S, B, C, P>>,
    }
}

/// What a retryable request carries between attempts.
pub(crate) struct Retrying<S, B, C, P>
where
    S: Service<Request<B>>,
{
    /// The request policy, told of each retry sent.
    retryable: P,
    /// A clone of the inner service, for the retries.
    service: S,
    /// The copy each retry is cloned from.
    request: Request<B>,
    local: Arc<Local<C>>,
    /// Attempts sent so far.
    attempts: u32,
    /// Whether failures are kept for the conservative answer: only for requests that are not
    /// safe, where the caller needs to know whether something may have changed.
    conservative: bool,
    /// The latest failure that may have reached the backend (see [`answer`]). Boxed: only
    /// a failing write pays for it; every other future stays smaller.
    held: Option<Box<Result<S::Response, S::Error>>>,
}

impl<S, B, C, P> Retrying<S, B, C, P>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(service: S, request: Request<B>, local: Arc<Local<C>>, retryable: P) -> Self {
        Self {
            retryable,
            service,
            conservative: !is_safe(request.method()),
            request,
            local,
            attempts: 1,
            held: None,
        }
    }
}

impl<S, B, C, P> ResponseFuture<S, B, C, P>
where
    S: Service<Request<B>>,
{
    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Attempting { future },
            retry: None,
        }
    }

    pub(crate) fn retrying(future: S::Future, retrying: Retrying<S, B, C, P>) -> Self {
        Self {
            state: State::Attempting { future },
            retry: Some(retrying),
        }
    }
}

impl<S, B, C, P> fmt::Debug for ResponseFuture<S, B, C, P>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Attempting { .. } => "attempting",
            State::BackingOff { .. } => "backing_off",
            State::Readying => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.retry.as_ref().map(|r| r.attempts))
            .finish_non_exhaustive()
    }
}

/// What follows an attempt.
enum Step<T> {
    Answer(T),
    Wait(Duration),
}

impl<S, B, RB, C, P> Future for ResponseFuture<S, B, C, P>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: fmt::Debug + 'static,
    B: Clone,
    C: Classify<Response<RB>, S::Error>,
    P: RetryableRequest<B>,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                // ## Attempting => (Done | BackingOff | Readying)
                StateProj::Attempting { future } => {
                    let result = ready!(future.poll(cx));
                    let Some(retry) = this.retry.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    match retry.after_attempt(result) {
                        Step::Answer(answer) => {
                            this.state.set(State::Done);
                            // Let go of the service clone, the copy and any held failure now,
                            // not whenever the caller drops this future.
                            *this.retry = None;
                            return Poll::Ready(answer);
                        }
                        Step::Wait(Duration::ZERO) => this.state.set(State::Readying),
                        Step::Wait(delay) => this.state.set(State::BackingOff {
                            sleep: Box::pin(tokio::time::sleep(delay)),
                        }),
                    }
                }
                // ## BackingOff => Readying
                StateProj::BackingOff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Readying);
                }
                // ## Readying => (Attempting | Done)
                StateProj::Readying => {
                    let Some(retry) = this.retry.as_mut() else {
                        // Unreachable: only a retrying request waits.
                        this.state.set(State::Done);
                        continue;
                    };
                    match ready!(retry.service.poll_ready(cx)) {
                        Ok(()) => {
                            retry.attempts += 1;
                            retry.retryable.on_retry(&retry.request, retry.attempts - 1);
                            let future = retry.service.call(retry.request.clone());
                            this.state.set(State::Attempting { future });
                        }
                        Err(err) => {
                            // The retry was never sent: it did not reach the backend.
                            let name = &retry.local.shared.name;
                            let answer = answer(name, &mut retry.held, Err(err), false);
                            this.state.set(State::Done);
                            *this.retry = None;
                            return Poll::Ready(answer);
                        }
                    }
                }
                // Polled after completion: stay pending rather than panic.
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

impl<S, B, RB, C, P> Retrying<S, B, C, P>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: fmt::Debug + 'static,
    C: Classify<Response<RB>, S::Error>,
{
    /// Classifies an attempt's result: the answer, or how long to wait before the next try.
    fn after_attempt(
        &mut self,
        result: Result<Response<RB>, S::Error>,
    ) -> Step<Result<Response<RB>, S::Error>> {
        let local = &*self.local;
        let classifier = &local.classifier;
        let outcome = classifier.classify(result.as_ref());
        if outcome == Outcome::Success {
            return Step::Answer(result);
        }
        // A breaker's rejection never left the process, whatever the classifier says.
        let rejected = matches!(&result, Err(e) if is_circuit_open(e));
        let reached = !rejected && classifier.may_have_reached_backend(result.as_ref());
        if outcome == Outcome::Ignore {
            return Step::Answer(answer(&local.shared.name, &mut self.held, result, reached));
        }

        let config = local.config;
        let hint = if rejected {
            None
        } else {
            classifier.retry_after(result.as_ref())
        };
        // The budget comes last: a request that gives up for another reason keeps its retry
        // for someone else.
        let give_up = if rejected {
            Some(GiveUp::CircuitOpen)
        } else if self.attempts >= config.max_attempts {
            Some(GiveUp::Attempts)
        } else if hint.is_some_and(|d| d > config.max_backoff) {
            Some(GiveUp::RetryAfter)
        } else if !local.shared.budget.withdraw() {
            Some(GiveUp::Budget)
        } else {
            None
        };
        let req = &self.request;
        if let Some(reason) = give_up {
            local.shared.count_give_up(reason);
            tracing::debug!(
                retry = %local.shared.name,
                method = %req.method(),
                host = req.uri().host().unwrap_or_default(),
                path = req.uri().path(),
                attempts = self.attempts,
                cause = %cause(&result),
                gave_up = reason.as_str(),
                retry_after_ms = hint.map(millis),
                "not retrying the failed request"
            );
            return Step::Answer(answer(&local.shared.name, &mut self.held, result, reached));
        }

        let wait = hint.unwrap_or_else(|| backoff::delay(&config, self.attempts));
        local.shared.count_retry(result.is_ok());
        tracing::debug!(
            retry = %local.shared.name,
            method = %req.method(),
            host = req.uri().host().unwrap_or_default(),
            path = req.uri().path(),
            attempt = self.attempts + 1,
            max_attempts = config.max_attempts,
            cause = %cause(&result),
            wait_ms = millis(wait),
            from_retry_after = hint.is_some(),
            "retrying the failed request"
        );
        if reached && self.conservative {
            // Replaces an older one: the latest answer from the backend is the truest.
            self.held = Some(Box::new(result));
        } else {
            // Dropped before the wait: a failed response's body (and its connection) goes
            // now.
            drop(result);
        }
        Step::Wait(wait)
    }
}

/// The answer to give: `result`, unless it did not reach the backend and an earlier attempt
/// may have. Then the earlier one: a caller told "refused, nothing was sent" would believe
/// that nothing happened, when the earlier attempt may have changed something.
fn answer<T>(name: &str, held: &mut Option<Box<T>>, result: T, reached: bool) -> T {
    match held.take() {
        Some(earlier) if !reached => {
            tracing::debug!(
                retry = %name,
                "the last attempt did not reach the backend; answering with an earlier failure \
                 that may have"
            );
            *earlier
        }
        _ => result,
    }
}

/// What failed, for the logs: the status code, or `error` (never the error's text, which
/// may quote URLs or payloads).
struct Cause(Option<StatusCode>);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(status) => f.write_str(status.as_str()),
            None => f.write_str("error"),
        }
    }
}

fn cause<RB, E>(result: &Result<Response<RB>, E>) -> Cause {
    Cause(result.as_ref().ok().map(Response::status))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
