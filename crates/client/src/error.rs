//! What can go wrong when talking to the server, in a form a person can read: the server's own
//! error code and message when it answered, a transport or decoding failure otherwise.

use std::fmt;

use bulkhead_api::ErrorBody;

/// How much of a non-standard error body is kept as the message.
const MAX_BODY_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    #[error("{}", ApiDisplay { status: *status, code, message, request_id })]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// The request never got an answer (connection refused, reset, timed out, ...).
    #[error("{0}")]
    Transport(String),
    /// The server answered 2xx with a body that is not what the route promises.
    #[error("{0}")]
    Decode(String),
    /// The base URL or a path given to the client cannot form a request.
    #[error("{0}")]
    InvalidUrl(String),
}

/// `{message} ({code}, HTTP {status}, request {request_id})`; the request part is left out when
/// the server sent no request id, so the line never ends in a dangling "request ".
struct ApiDisplay<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
}

impl fmt::Display for ApiDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, HTTP {}", self.message, self.code, self.status)?;
        if !self.request_id.is_empty() {
            write!(f, ", request {}", self.request_id)?;
        }
        f.write_str(")")
    }
}

impl ClientError {
    /// The server's error code (`not_found`, `quota_exceeded`, ...), when the server answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Builds the error for a non-2xx answer. A body in the documented
    /// `{"error":{"code","message","request_id"}}` shape is used as is; anything else (a proxy's
    /// HTML page, an empty body) becomes code `http_<status>` with the body text, truncated.
    /// `header_request_id` (from `x-request-id`) fills in when the body carries none.
    pub fn from_response(status: u16, body: &[u8], header_request_id: Option<&str>) -> Self {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            let mut request_id = parsed.error.request_id;
            if request_id.is_empty() {
                request_id = header_request_id.unwrap_or_default().to_owned();
            }
            return ClientError::Api {
                status,
                code: parsed.error.code,
                message: parsed.error.message,
                request_id,
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no response body")
                .to_owned()
        } else {
            truncate_chars(text, MAX_BODY_MESSAGE_CHARS)
        };
        ClientError::Api {
            status,
            code: format!("http_{status}"),
            message,
            request_id: header_request_id.unwrap_or_default().to_owned(),
        }
    }

    /// A transport failure with its whole cause chain: reqwest's top-level message alone
    /// ("error sending request") hides the useful part ("connection refused").
    pub(crate) fn transport(err: &reqwest::Error) -> Self {
        ClientError::Transport(error_chain(err))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their inner error's text; do not print it twice.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_error_body_is_parsed_and_displayed_for_humans() {
        let body = br#"{"error":{"code":"not_found","message":"tenant 'acme' not found","request_id":"r-1"}}"#;
        let err = ClientError::from_response(404, body, Some("ignored"));
        assert_eq!(err.code(), Some("not_found"));
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            err.to_string(),
            "tenant 'acme' not found (not_found, HTTP 404, request r-1)"
        );
    }

    #[test]
    fn an_unexpected_body_becomes_an_http_status_code_with_truncated_text() {
        let body = format!("<html>{}</html>", "x".repeat(1000));
        let err = ClientError::from_response(502, body.as_bytes(), Some("r-9"));
        assert_eq!(err.code(), Some("http_502"));
        let ClientError::Api {
            message,
            request_id,
            ..
        } = &err
        else {
            panic!("expected an api error, got {err:?}");
        };
        assert!(message.starts_with("<html>xxx"));
        assert_eq!(message.chars().count(), MAX_BODY_MESSAGE_CHARS + 1);
        assert_eq!(request_id, "r-9");
    }

    #[test]
    fn an_empty_body_uses_the_status_reason_and_omits_a_missing_request_id() {
        let err = ClientError::from_response(503, b"", None);
        assert_eq!(err.to_string(), "Service Unavailable (http_503, HTTP 503)");
    }

    #[test]
    fn non_api_errors_have_no_code_or_status() {
        let err = ClientError::Decode("bad".into());
        assert_eq!(err.code(), None);
        assert_eq!(err.status(), None);
        assert_eq!(err.to_string(), "bad");
    }
}
