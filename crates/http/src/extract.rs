//! Typed input: the authenticated caller, and JSON bodies with precise errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use countersign_api::ErrorCode;
use countersign_core::Identity;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// The bearer credential of a request, if it carries one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// A request `/metrics` may answer: with no `metrics_token_sha256` configured, any; otherwise
/// only one whose bearer token hashes to it (compared in constant time), else 401.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(want) = state.metrics_token_sha256 else {
            return Ok(MetricsReader);
        };
        let got: [u8; 32] = match bearer(parts) {
            Some(t) => Sha256::digest(t.as_bytes()).into(),
            None => return Err(ApiError::unauthenticated()),
        };
        if bool::from(got.ct_eq(&want)) {
            Ok(MetricsReader)
        } else {
            tracing::info!("refused a /metrics token");
            Err(ApiError::unauthenticated())
        }
    }
}

/// The address of the connection a request came on (what the accept loop saw; never a header
/// such as `X-Forwarded-For`, which the client writes). `None` when the router is served
/// without the accept loop (tests calling it directly).
pub struct Peer(pub Option<std::net::IpAddr>);

/// The connection's peer address, put on each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub std::net::SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<PeerAddr>()
                .map(|p| p.0.ip().to_canonical()),
        ))
    }
}

/// The authenticated caller.
pub struct Caller(pub Arc<Identity>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthenticated)?;
        match state.gateway.authenticate(token).await {
            Ok(who) => Ok(Caller(who)),
            Err(e) => {
                // The code and why, never the credential.
                tracing::info!(
                    code = crate::error::auth_code(&e).as_str(),
                    "refused a bearer credential"
                );
                Err(ApiError::from(e))
            }
        }
    }
}

/// A JSON body of type `T`: 413 `payload_too_large` over [`MAX_BODY`], 415 for a non-JSON content
/// type, 400 `invalid_request` naming the field and position otherwise, or naming an integer
/// beyond ±(2^53 − 1) or a number beyond a double's range (I-JSON, RFC 7493).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(ct) = &content_type {
            let mime = ct.split(';').next().unwrap_or("").trim();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("send `Content-Type: application/json`, not `{mime}`"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body is over the {MAX_BODY}-byte limit"),
                )
            } else if is_timeout(&e) {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    "the request body stopped arriving; send it without pauses",
                )
            } else {
                ApiError::invalid(format!("cannot read the body: {e}"))
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        // I-JSON (RFC 7493) integers, on the text: once parsed, an integer beyond u64 is a
        // rounded double. Depth and the parsed numbers are checked where params become a spec.
        countersign_core::check_json_text(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// Whether reading the body failed because it stalled (tower-http's body timeout).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}
