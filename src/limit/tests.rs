//! Unit tests: the constructors' validation and the rejection responses. The layers at work
//! over real HTTP are in `tests/limit.rs`.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use tower::{Layer as _, Service as _, ServiceExt as _, service_fn};

use super::*;

#[test]
fn zero_limits_are_refused_naming_the_field() {
    let err = ResponseTimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "timeout");
    assert_eq!(
        err.to_string(),
        "invalid limit setting `timeout`: must be more than zero"
    );
    let err = CallTimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "timeout");
    let err = BodyLimitLayer::new(0).unwrap_err();
    assert_eq!(err.field(), "limit");
    assert_eq!(
        err.to_string(),
        "invalid limit setting `limit`: must be at least 1 byte"
    );
    let err = LoadShedLayer::new(0).unwrap_err();
    assert_eq!(err.field(), "max_in_flight");
    let err = LoadShedLayer::new(usize::MAX).unwrap_err();
    assert_eq!(err.field(), "max_in_flight");
    assert_eq!(
        err.reason(),
        "must be at most tokio's Semaphore::MAX_PERMITS"
    );
    // The smallest valid values are accepted.
    assert!(ResponseTimeoutLayer::new(Duration::from_nanos(1)).is_ok());
    assert_eq!(BodyLimitLayer::new(1).unwrap().limit(), Some(1));
    assert_eq!(BodyLimitLayer::unlimited().limit(), None);
    assert_eq!(LoadShedLayer::new(1).unwrap().max_in_flight(), 1);
}

#[test]
fn default_rejections_say_why_in_plain_text() {
    let (parts, ()) = Request::new(()).into_parts();
    let cases = [
        (
            Rejection::Timeout {
                after: Duration::from_millis(1500),
            },
            StatusCode::GATEWAY_TIMEOUT,
            "no response within 1500 ms\n",
        ),
        (
            Rejection::BodyTooLarge { limit: 10 },
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than the limit of 10 bytes\n",
        ),
        (
            Rejection::Overloaded { max_in_flight: 3 },
            StatusCode::SERVICE_UNAVAILABLE,
            "server is at its concurrency limit; retry shortly\n",
        ),
    ];
    for (rejection, status, text) in cases {
        let res = DefaultRejection.make_rejection(rejection, &parts);
        assert_eq!(res.status(), status);
        assert_eq!(rejection.status(), status);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(res.body(), text);
    }
}

fn counting_echo(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<http_body_util::Limited<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<http_body_util::Limited<Full<Bytes>>>| {
        calls.fetch_add(1, SeqCst);
        async move {
            let body = req.into_body().collect().await;
            let status = if body.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    })
}

#[tokio::test]
async fn a_body_that_knows_it_is_too_long_is_refused_without_a_content_length() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = BodyLimitLayer::new(4)
        .unwrap()
        .layer(counting_echo(calls.clone()));
    // `Full` knows its size exactly; no header says it.
    let req = Request::post("/")
        .body(Full::new(Bytes::from("12345")))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.body().is_rejection());
    assert_eq!(calls.load(SeqCst), 0);
    let req = Request::post("/")
        .body(Full::new(Bytes::from("1234")))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.body().is_rejection());
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test]
async fn an_unlimited_layer_lets_everything_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = BodyLimitLayer::unlimited().layer(counting_echo(calls.clone()));
    let req = Request::post("/")
        .header(header::CONTENT_LENGTH, u64::MAX.to_string())
        .body(Full::new(Bytes::from(vec![b'x'; 1 << 16])))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test]
async fn a_hook_retry_after_is_kept_and_a_missing_one_added() {
    let hook = |rejection: Rejection, _: &http::request::Parts| {
        Response::builder()
            .status(rejection.status())
            .header(header::RETRY_AFTER, "7")
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    };
    let never = service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    for (layer_hook, expected) in [(true, "7"), (false, "1")] {
        let layer = LoadShedLayer::new(1).unwrap();
        let mut svc = if layer_hook {
            tower::util::Either::Left(layer.rejection(hook).layer(never))
        } else {
            tower::util::Either::Right(layer.layer(never))
        };
        let _held = svc.ready().await.unwrap().call(Request::new(()));
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], expected);
    }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_answers_504_and_the_head_in_time_is_kept() {
    let slow = service_fn(|req: Request<()>| async move {
        let wait = if req.uri().path() == "/slow" { 10 } else { 1 };
        tokio::time::sleep(Duration::from_secs(wait)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
    });
    let svc = ResponseTimeoutLayer::new(Duration::from_secs(5))
        .unwrap()
        .layer(slow);
    let res = svc
        .clone()
        .oneshot(Request::get("/slow").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "no response within 5000 ms\n");
    let res = svc
        .oneshot(Request::get("/fast").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "done");
}

#[tokio::test(start_paused = true)]
async fn a_call_timeout_fails_with_elapsed_and_passes_inner_errors_through() {
    let svc = service_fn(|fail: bool| async move {
        if fail {
            return Err(std::io::Error::other("refused"));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(())
    });
    let svc = CallTimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(svc);
    let err = svc.clone().oneshot(false).await.unwrap_err();
    assert!(err.is::<Elapsed>());
    assert_eq!(format!("{err:?}"), "Elapsed(())");
    let err = svc.oneshot(true).await.unwrap_err();
    assert!(err.is::<std::io::Error>());
}
