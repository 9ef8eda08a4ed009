//! The edge of the HTTP server: authentication, and what taskman adds to the library's limits
//! (response timeout, body limit, load shedding; see `server::app`): refusals in the shape MCP
//! clients expect, the JSON-RPC envelope check and the event-stream lifetime.
//!
//! An MCP server on a developer's machine is reachable by any page the developer opens, and
//! its input is written by a language model: every request is treated as hostile until it has
//! shown its token, stayed within its size and time budget, and found a free slot.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header, request::Parts};
use http_body::{Body as _, Frame, SizeHint};
use serde_json::json;
use tower_bulwark::limit::Rejection;

/// The request body below the library's body limit.
pub type LimitedBody = http_body_util::Limited<Body>;

/// What the edge enforces; built once from the configuration.
#[derive(Debug)]
pub struct EdgePolicy {
    /// Bearer token required on `/mcp` (and on the operational routes if `protect_ops`).
    pub token: Option<String>,
    pub protect_ops: bool,
    pub max_body_bytes: usize,
    pub sse_max_lifetime: Duration,
}

pub type Edge = Arc<EdgePolicy>;

/// The library limits' refusals (timeout 504, body too large 413, overloaded 503 with
/// `Retry-After`) in the shape the client expects, with the library's wording.
pub fn reject(rejection: Rejection, request: &Parts) -> http::Response<Bytes> {
    let (status, body) = error_body(
        request.uri.path(),
        rejection.status(),
        &rejection.to_string(),
    );
    let mut response = http::Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Requires the bearer token where one is configured. The comparison takes the same time
/// whatever the token's content, so it cannot be guessed byte by byte.
pub async fn authenticate(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let Some(expected) = edge.token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let protected = path == "/mcp"
        || path.starts_with("/mcp/")
        || (edge.protect_ops && (path.starts_with("/health") || path == "/metrics"));
    if !protected {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token));
    if presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = error(
        path,
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"taskman\""),
    );
    response
}

/// Reads the whole body before the MCP service sees it, so that a chunked message over the
/// limit (one declaring its length was refused by the library's body limit already) gets a
/// clear 413 instead of being half read, and what is not a JSON-RPC message gets its error.
pub async fn check_body(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let limit = edge.max_body_bytes;
    let is_mcp_message = request.method() == http::Method::POST && request.uri().path() == "/mcp";
    if !is_mcp_message && request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return too_large(parts.uri.path(), limit);
    };
    if is_mcp_message && let Some(refusal) = json_rpc_refusal(&bytes) {
        return refusal;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to what is not a JSON-RPC 2.0 message: the JSON-RPC error for it (-32700 for bad
/// JSON, -32600 for JSON that is not a message), where rmcp would say 415 for both. Parsing
/// is bounded: serde_json stops at 128 levels of nesting.
fn json_rpc_refusal(body: &[u8]) -> Option<Response> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        jsonrpc: String,
    }
    let refuse = |code: i64, message: &str| {
        let body =
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
        Some((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
    };
    // serde_json does not check the UTF-8 of strings it skips; JSON must be UTF-8 throughout.
    if let Err(err) = std::str::from_utf8(body) {
        let at = err.valid_up_to();
        return refuse(-32700, &format!("parse error: invalid UTF-8 at byte {at}"));
    }
    if nesting_exceeds(body, MAX_JSON_DEPTH) {
        let message = format!("parse error: nested deeper than {MAX_JSON_DEPTH} levels");
        return refuse(-32700, &message);
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) if envelope.jsonrpc == "2.0" => None,
        Ok(_) => refuse(-32600, "invalid request: jsonrpc must be \"2.0\""),
        Err(err) if err.is_data() => refuse(
            -32600,
            "invalid request: a JSON-RPC message is an object with \"jsonrpc\": \"2.0\"",
        ),
        Err(err) => refuse(-32700, &format!("parse error: {err}")),
    }
}

/// Bounds the life of an event stream: a stream that outlives its budget ends cleanly and the
/// client reconnects. (The time to the response head is the library's response timeout.)
pub async fn stream_lifetime(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return response;
    }
    let deadline = tokio::time::sleep(edge.sse_max_lifetime);
    response.map(|body| {
        Body::new(Deadline {
            body,
            deadline: Box::pin(deadline),
        })
    })
}

/// serde_json's own limit for what it parses; it does not apply it to values it skips.
const MAX_JSON_DEPTH: usize = 128;

/// Whether arrays and objects nest deeper than `limit`, brackets inside strings aside. One
/// pass, no allocation.
fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn too_large(path: &str, limit: usize) -> Response {
    error(
        path,
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// A legacy session's standalone event stream (`GET /mcp`).
pub fn is_event_stream_request<B>(request: &http::Request<B>) -> bool {
    request.method() == http::Method::GET && request.uri().path().starts_with("/mcp")
}

/// An error in the shape the client expects: a JSON-RPC error (with a null id, the request's
/// own id being unknown or unread) on the MCP endpoint, the API's error body elsewhere.
fn error(path: &str, status: StatusCode, message: &str) -> Response {
    let (status, body) = error_body(path, status, message);
    (status, axum::Json(body)).into_response()
}

fn error_body(path: &str, status: StatusCode, message: &str) -> (StatusCode, serde_json::Value) {
    let body = if path.starts_with("/mcp") {
        let code = match status {
            StatusCode::UNAUTHORIZED => -32001,
            StatusCode::PAYLOAD_TOO_LARGE => -32600,
            _ => -32603,
        };
        json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } })
    } else {
        let code = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::PAYLOAD_TOO_LARGE => "bad_request",
            _ => "unavailable",
        };
        json!({ "error": { "code": code, "message": message } })
    };
    (status, body)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Only the length can leak, and the length of a token is no secret worth keeping.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

pin_project_lite::pin_project! {
    /// A response body that ends when its deadline passes.
    struct Deadline {
        #[pin]
        body: Body,
        deadline: Pin<Box<tokio::time::Sleep>>,
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        this.body.poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
