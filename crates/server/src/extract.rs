//! Request extractors. Authentication runs from the request head, before any body is read
//! (a credential that may not write is refused before its upload is accepted), and body
//! rejections become the standard error body with a message naming the problem.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bulkhead_api::TENANT_HEADER;
use bulkhead_catalog::Ctx;
use bulkhead_core::TenantId;
use bulkhead_core::error::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use crate::AppState;
use crate::error::{ApiError, current_request_id};

/// The verified caller and the request id.
pub struct Auth(pub Ctx);

fn bearer(parts: &Parts) -> Result<Option<&str>, Error> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Two credentials: which one counts would depend on who reads the request (a proxy, a
    // log, this server), so none does.
    if values.next().is_some() {
        return Err(Error::bad_request(
            "ambiguous_credentials",
            "send one Authorization header, not several",
        ));
    }
    let value = value.to_str().map_err(|_| {
        Error::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
            "the credential is not valid",
        )
    })?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(Error::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
            "use 'Authorization: Bearer <key>'",
        )),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request_id = current_request_id();
        let token = bearer(parts)?;
        let source = parts
            .extensions
            .get::<crate::listen::Peer>()
            .map(|peer| std::sync::Arc::clone(&peer.0));
        let authenticated = state
            .catalog
            .authenticate_from(token, &request_id, source)
            .instrument(bulkhead_catalog::step_span(|| tracing::info_span!("auth")))
            .await?;
        Ok(Auth(authenticated))
    }
}

/// A caller about to write records. Credentials that can never write are refused from the
/// request head, before the body is read; the full decision is still made per tenant later.
pub struct Writer(pub Ctx);

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Auth(ctx) = Auth::from_request_parts(parts, state).await?;
        if ctx.principal.is_read_only() {
            let tenant = ctx.principal.home_tenant();
            state.catalog.audit_denied(
                ctx.principal.actor(),
                "record.write",
                parts.uri.path(),
                tenant,
                "forbidden",
                &ctx.request_id,
                None,
            );
            return Err(Error::forbidden("forbidden", "this credential may only read").into());
        }
        Ok(Writer(ctx))
    }
}

/// The tenant a platform admin names with the `Bulkhead-Tenant` header, if any.
pub struct NamedTenant(pub Option<TenantId>);

impl<S: Send + Sync> FromRequestParts<S> for NamedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(TENANT_HEADER) else {
            return Ok(NamedTenant(None));
        };
        let raw = value.to_str().map_err(|_| {
            Error::bad_request("invalid_tenant_id", "Bulkhead-Tenant header is not text")
        })?;
        Ok(NamedTenant(Some(TenantId::parse(raw.trim())?)))
    }
}

/// A JSON object body, with rejections mapped to the standard error body. Every body the API
/// takes is an object: serde would also read a struct from an array of its fields in order
/// (`[null, "x"]`), which no client means, so anything but an object is refused.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError(json_rejection(
                JsonRejection::MissingJsonContentType(Default::default()),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(json_rejection(JsonRejection::BytesRejection(e))))?;
        // A JSON value other than an object; anything else that is not JSON is left to serde,
        // whose message names the position. A record body is read as any value: the record
        // layer refuses a non-object itself (`validation_failed` at `$`).
        let any_value = std::any::TypeId::of::<T>() == std::any::TypeId::of::<serde_json::Value>();
        if let Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') =
            bytes.iter().find(|b| !b.is_ascii_whitespace())
            && !any_value
        {
            return Err(ApiError(Error::bad_request(
                "invalid_body",
                "the body must be a JSON object",
            )));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(ApiError(json_rejection(rejection))),
        }
    }
}

/// `application/json` or any `+json` type, as axum's own extractor accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_rejection(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Error::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "send the body with 'Content-Type: application/json'",
        ),
        JsonRejection::JsonSyntaxError(e) => Error::bad_request(
            "invalid_json",
            format!("body is not valid JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => Error::bad_request(
            "invalid_body",
            format!(
                "body does not match the expected shape: {}",
                source_text(&e)
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status().as_u16() == 413 => Error::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            "the request body exceeds the size limit",
        ),
        other => Error::bad_request("invalid_body", other.body_text()),
    }
}

/// serde's message (field path, line and column) without axum's prefix.
fn source_text(err: &dyn std::error::Error) -> String {
    let mut source = err.source();
    let mut text = err.to_string();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}
