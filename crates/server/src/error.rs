//! The one error body, and the one table from error kind to HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkhead_api::{ErrorBody, ErrorDetail};
use bulkhead_core::error::{Error, ErrorKind};

/// The current request's id, set by the request middleware for everything the request runs
/// (it lives in the request's slot, `RequestTenant`).
pub fn current_request_id() -> String {
    bulkhead_catalog::RequestTenant::current_id()
}

/// The status of an error kind (the table is `ErrorKind::status`).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The kind a bare status stands for, used to give layer-made responses (timeouts, panics) the
/// standard body.
pub fn kind_of(status: StatusCode) -> (ErrorKind, &'static str, &'static str) {
    match status.as_u16() {
        400 => (
            ErrorKind::BadRequest,
            "bad_request",
            "the request is malformed",
        ),
        401 => (
            ErrorKind::Unauthenticated,
            "unauthenticated",
            "credentials are missing or invalid",
        ),
        403 => (
            ErrorKind::Forbidden,
            "forbidden",
            "this credential may not perform this action",
        ),
        404 => (ErrorKind::NotFound, "route_not_found", "no such route"),
        405 => (
            ErrorKind::MethodNotAllowed,
            "method_not_allowed",
            "this route does not accept this method",
        ),
        408 => (
            ErrorKind::Unavailable,
            "request_timeout",
            "the request took longer than the server allows",
        ),
        413 => (
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            "the request body exceeds the size limit",
        ),
        415 => (
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        _ => (ErrorKind::Internal, "internal", "internal error"),
    }
}

/// An error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
            request_id: current_request_id(),
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    // Both mean "not now": a moving tenant's held write, a rate limit, a domain coming up.
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status.is_server_error() {
            tracing::warn!(code = %self.0.code, "request failed: {}", self.0.message);
        }
        error_response(status, &self.0.code, &self.0.message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
