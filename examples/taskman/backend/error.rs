//! The `{"error":{"code":..,"message":..,"field":..}}` answers of the contract.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::StoreError;
use super::store::Refusal;
use crate::api::{ApiError, ErrorBody};
use crate::contract::{IDEMPOTENCY_KEY_HEADER, Invalid, quoted};

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The `code` of an error body; the contract allows exactly these.
#[derive(Debug, Clone, Copy)]
enum ErrorCode {
    NotFound,
    BadRequest,
    Validation,
    Conflict,
    Internal,
    Unavailable,
}

impl ErrorCode {
    fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Validation => "validation",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A non-2xx answer.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    field: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, code: ErrorCode, message: String) -> Failure {
        Failure {
            status,
            code,
            message,
            field: None,
        }
    }

    fn on_field(mut self, field: impl Into<String>) -> Failure {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn bad_request(message: String) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub(crate) fn not_found(message: String) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// A body field broke a rule: 422.
    pub(crate) fn validation(invalid: Invalid) -> Failure {
        Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Validation,
            invalid.message,
        )
        .on_field(invalid.field)
    }

    /// A query parameter or header broke a rule: 400.
    pub(crate) fn bad_input(invalid: Invalid) -> Failure {
        Failure::bad_request(invalid.message).on_field(invalid.field)
    }

    pub(crate) fn unsupported_media_type(content_type: Option<&str>) -> Failure {
        let got = content_type.map_or_else(|| "none".to_owned(), quoted);
        Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            format!("Content-Type must be application/json (got {got})"),
        )
    }

    pub(crate) fn payload_too_large(limit_bytes: usize) -> Failure {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("request body must be at most {limit_bytes} bytes"),
        )
    }

    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Failure {
        Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            format!(
                "method {method} is not allowed on {}; the Allow header lists the methods that are",
                quoted(path)
            ),
        )
    }

    /// Health check failed: whatever the cause, the storage is not usable.
    pub(crate) fn unavailable(error: &StoreError) -> Failure {
        tracing::warn!(error = %error, "storage is unavailable");
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "storage is unavailable".to_owned(),
        )
    }

    /// An unexpected failure: logged in full, answered without details (no SQL leaks out).
    fn internal(error: &dyn std::fmt::Display) -> Failure {
        tracing::error!(error = %error, "request failed");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the server log has the details".to_owned(),
        )
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        if error.is_closed() {
            Failure::unavailable(&error)
        } else {
            Failure::internal(&error)
        }
    }
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Failure {
        match refusal {
            Refusal::TaskNotFound { id } => {
                Failure::not_found(format!("no task has id {}", quoted(&id)))
            }
            Refusal::ProjectNotFound { id } => {
                Failure::not_found(format!("no project has id {}", quoted(&id)))
            }
            Refusal::UnknownProject { id } => Failure::not_found(format!(
                "project_id must name an existing project (got {})",
                quoted(&id)
            ))
            .on_field("project_id"),
            Refusal::ProjectNameTaken { name } => Failure::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!(
                    "name must be unique ignoring case (got {}, which is taken)",
                    quoted(&name)
                ),
            )
            .on_field("name"),
            Refusal::IdempotencyKeyReused => Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::Validation,
                format!(
                    "{IDEMPOTENCY_KEY_HEADER} was already used in the last 24 hours with a different body"
                ),
            )
            .on_field(IDEMPOTENCY_KEY_HEADER),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ApiError {
                code: self.code.as_str().to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        match serde_json::to_string(&body) {
            Ok(text) => json_text(self.status, text),
            // Not reachable with string fields, but an answer must go out regardless.
            Err(_) => json_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":{"code":"internal","message":"internal error"}}"#.to_owned(),
            ),
        }
    }
}

/// `value` as a JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => json_text(status, text),
        Err(error) => Failure::internal(&error).into_response(),
    }
}

/// Already serialised JSON as an answer, with the contract's content type.
pub(crate) fn json_text(status: StatusCode, text: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}
