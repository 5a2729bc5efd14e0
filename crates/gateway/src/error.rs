//! Gateway errors, each with a stable machine-readable code.

use countersign_core::DomainError;
use countersign_store::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A rule of the domain refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No such action (or the caller may not see it).
    #[error("no such action")]
    NotFound,
    /// No such unrevoked managed API key.
    #[error("no such active API key; list them with GET /v1/admin/api-keys")]
    KeyNotFound,
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The idempotency key was already used for a different action.
    #[error("this Idempotency-Key was already used for a different action; use a new key")]
    IdempotencyConflict,
    /// Storage failed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// A credential could not be minted (its system failed) or the request for it is unusable.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// The gateway could not start.
    #[error("{0}")]
    Startup(String),
}

impl GatewayError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Domain(d) => d.code(),
            GatewayError::NotFound | GatewayError::KeyNotFound => "not_found",
            GatewayError::Invalid(_) => "invalid_request",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::IdempotencyConflict => "idempotency_conflict",
            GatewayError::Credential(crate::credentials::CredentialError::Unavailable {
                ..
            }) => "credential_unavailable",
            GatewayError::Credential(crate::credentials::CredentialError::Invalid { .. }) => {
                "invalid_request"
            }
            GatewayError::Store(_) | GatewayError::Startup(_) => "internal",
        }
    }
}
