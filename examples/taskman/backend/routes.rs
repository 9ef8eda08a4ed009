//! The HTTP surface: router, handlers, the JSON body extractor and request correlation.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use super::Store;
use super::error::{Failure, json, json_text};
use super::store::{CreateContext, Created, IdempotencyKey};
use crate::contract::{self as validate, json_type, quoted};

const API_PREFIX: &str = "/api/v1";
const BODY_LIMIT_BYTES: usize = 1024 * 1024;
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Set on a 201 that repeats an earlier answer for the same `Idempotency-Key`.
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// All routes of the contract nested under `/api/v1` (so the endpoint is `http://HOST:PORT/api/v1`),
/// including `GET /api/v1/health`.
pub fn router(store: Store) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/tasks", get(list_tasks).post(create_task))
        .route(
            "/tasks/{id}",
            get(get_task).patch(update_task).delete(delete_task),
        )
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{id}", get(get_project))
        // Applies to the routes above only, hence after them.
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(store);
    Router::new()
        .nest(API_PREFIX, api)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(correlate))
}

async fn health(State(store): State<Store>) -> Response {
    match store.health().await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Err(error) => Failure::unavailable(&error).into_response(),
    }
}

async fn list_tasks(State(store): State<Store>, query: QueryPairs) -> Result<Response, Failure> {
    let filter = validate::task_filter(&query.0).map_err(Failure::bad_input)?;
    Ok(json(StatusCode::OK, &store.list_tasks(filter).await?))
}

async fn create_task(
    State(store): State<Store>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, Failure> {
    let key = validate::idempotency_key(&headers).map_err(Failure::bad_input)?;
    let task = validate::new_task(&body).map_err(Failure::validation)?;
    let context = create_context(&headers, "tasks", key, body);
    Ok(created(store.create_task(task, context).await??))
}

async fn get_task(
    State(store): State<Store>,
    ResourceId(id): ResourceId,
) -> Result<Response, Failure> {
    Ok(json(StatusCode::OK, &store.task(id).await??))
}

async fn update_task(
    State(store): State<Store>,
    ResourceId(id): ResourceId,
    JsonObject(body): JsonObject,
) -> Result<Response, Failure> {
    let patch = validate::task_patch(&body).map_err(Failure::validation)?;
    Ok(json(StatusCode::OK, &store.update_task(id, patch).await??))
}

async fn delete_task(
    State(store): State<Store>,
    ResourceId(id): ResourceId,
) -> Result<StatusCode, Failure> {
    store.delete_task(id).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_projects(State(store): State<Store>, query: QueryPairs) -> Result<Response, Failure> {
    let page = validate::page_request(&query.0).map_err(Failure::bad_input)?;
    Ok(json(StatusCode::OK, &store.list_projects(page).await?))
}

async fn create_project(
    State(store): State<Store>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, Failure> {
    let key = validate::idempotency_key(&headers).map_err(Failure::bad_input)?;
    let project = validate::new_project(&body).map_err(Failure::validation)?;
    let context = create_context(&headers, "projects", key, body);
    Ok(created(store.create_project(project, context).await??))
}

async fn get_project(
    State(store): State<Store>,
    ResourceId(id): ResourceId,
) -> Result<Response, Failure> {
    Ok(json(StatusCode::OK, &store.project(id).await??))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Failure {
    Failure::method_not_allowed(method.as_str(), uri.path())
}

async fn unknown_route(OriginalUri(uri): OriginalUri) -> Failure {
    Failure::not_found(format!(
        "no resource at {}; the API lives under {API_PREFIX}",
        quoted(uri.path())
    ))
}

fn create_context(
    headers: &HeaderMap,
    collection: &str,
    key: Option<String>,
    body: Map<String, Value>,
) -> CreateContext {
    CreateContext {
        location_prefix: format!("{}/{collection}/", endpoint(headers)),
        idempotency: key.map(|key| IdempotencyKey {
            key,
            request_body: Value::Object(body),
        }),
    }
}

/// `http://{Host}/api/v1`, or just `/api/v1` when the Host header is missing or not a plain
/// `host[:port]` (it ends up in a Location header, so it must not carry anything else).
fn endpoint(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@'));
    match host {
        Some(authority) => format!("http://{authority}{API_PREFIX}"),
        None => API_PREFIX.to_owned(),
    }
}

fn created(created: Created) -> Response {
    let mut response = json_text(StatusCode::CREATED, created.body);
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(created.location) {
        headers.insert(header::LOCATION, location);
    }
    if created.replayed {
        headers.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// A JSON object body: Content-Type checked (415), size capped (413), syntax checked (400).
struct JsonObject(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_json_media_type) {
            return Err(Failure::unsupported_media_type(content_type.as_deref()));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Failure::payload_too_large(BODY_LIMIT_BYTES)
                } else {
                    Failure::bad_request(format!(
                        "cannot read the request body: {}",
                        rejection.body_text()
                    ))
                }
            })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(object)) => Ok(JsonObject(object)),
            Ok(other) => Err(Failure::bad_request(format!(
                "request body must be a JSON object (got {})",
                json_type(&other)
            ))),
            Err(error) => Err(Failure::bad_request(format!(
                "request body is not valid JSON: {error}"
            ))),
        }
    }
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The query string as name/value pairs, kept in order so repeats and unknown names can be
/// refused by `validate`.
struct QueryPairs(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| QueryPairs(pairs))
            .map_err(|rejection: QueryRejection| {
                Failure::bad_request(format!(
                    "query string cannot be decoded: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// The `{id}` path segment.
struct ResourceId(String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| ResourceId(id))
            .map_err(|rejection| {
                Failure::bad_request(format!("invalid id in path: {}", rejection.body_text()))
            })
    }
}

/// Echoes a well-formed `X-Request-ID`, and logs one line per request with both correlation
/// ids. Other log lines of the request carry them too, through the span.
async fn correlate(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = header_text(request.headers(), &REQUEST_ID).filter(|id| is_request_id(id));
    let traceparent =
        header_text(request.headers(), &TRACEPARENT).filter(|value| is_traceparent(value));
    // No span of its own: the server trace span and the request-ID scope around this (see
    // `traced` in main.rs) already put the trace context and the ID on every line.
    let mut response = next.run(request).await;

    if let Some(id) = request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        response.headers_mut().insert(REQUEST_ID.clone(), id);
    }
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        request_id = request_id.as_deref(),
        traceparent = traceparent.as_deref(),
        latency_ms = started.elapsed().as_secs_f64() * 1_000.0,
        "request handled"
    );
    response
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// 1..=128 characters of `[A-Za-z0-9-_.:/+=@]`: safe to echo and to log.
/// The request-ID rule of the `request_id` layer (1 to 128 of `[A-Za-z0-9-_.:/+=@]`).
fn is_request_id(id: &str) -> bool {
    tower_bulwark::request_id::RequestId::try_from(id).is_ok()
}

/// W3C Trace Context `version-traceid-parentid-flags`, as the `trace` layer parses it.
fn is_traceparent(value: &str) -> bool {
    tower_bulwark::trace::parse_traceparent(value).is_some()
}
