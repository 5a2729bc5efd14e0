//! The one error shape of the API: `{"error": {"code", "message"}}` with a stable code and the
//! HTTP status that code always maps to.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_gateway::GatewayError;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl ApiError {
    /// A 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// A 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        ApiError {
            code: "unauthenticated",
            message: "send `Authorization: Bearer <token>` with a valid API key".into(),
        }
    }

    /// The HTTP status for this code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            "unauthenticated" | "key_revoked" | "key_expired" | "identity_conflict"
            | "identity_invalid" => StatusCode::UNAUTHORIZED,
            c if c.starts_with("token_") => StatusCode::UNAUTHORIZED,
            "identity_provider_unavailable" | "store_unavailable" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            "self_approval"
            | "not_an_approver"
            | "agents_cannot_approve"
            | "not_requester"
            | "on_behalf_of_not_allowed"
            | "modification_denied"
            | "grant_invalid"
            | "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "not_pending"
            | "already_voted"
            | "grant_already_used"
            | "grant_revoked"
            | "grant_not_redeemed"
            | "result_already_reported" => StatusCode::CONFLICT,
            "grant_expired" => StatusCode::GONE,
            "invalid_request" => StatusCode::BAD_REQUEST,
            "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "idempotency_conflict" => StatusCode::UNPROCESSABLE_ENTITY,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "request_timeout" => StatusCode::REQUEST_TIMEOUT,
            "too_many_open_reviews" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<countersign_identity::AuthError> for ApiError {
    fn from(e: countersign_identity::AuthError) -> Self {
        if let countersign_identity::AuthError::Store(inner) = &e {
            tracing::error!(error = %inner, "storage failure while checking a credential");
        }
        ApiError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let message = match &e {
            GatewayError::Store(inner) => {
                tracing::error!(error = %inner, "storage failure");
                "the gateway could not record this; nothing was changed, retry later".into()
            }
            other => other.to_string(),
        };
        ApiError {
            code: e.code(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
