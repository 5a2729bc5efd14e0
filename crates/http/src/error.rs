//! The one error shape of the API: `{"error": {"code", "message"}}` ([`countersign_api::ErrorBody`])
//! with a stable [`ErrorCode`] and the HTTP status that code always maps to
//! ([`ErrorCode::status`]). Every refusal of the gateway and of authentication becomes an
//! `ErrorCode` through an exhaustive match here: a new error variant does not compile until it
//! has a code, and so a status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_api::{ErrorBody, ErrorCode};
use countersign_gateway::GatewayError;
use countersign_identity::AuthError;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// A 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "send `Authorization: Bearer <token>` with a valid API key",
        )
    }

    /// The HTTP status for this code.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// The code of a refused credential.
pub fn auth_code(e: &AuthError) -> ErrorCode {
    use AuthError as A;
    match e {
        A::Unknown => ErrorCode::Unauthenticated,
        A::TooLarge => ErrorCode::TokenTooLarge,
        A::Malformed => ErrorCode::TokenMalformed,
        A::AlgNone => ErrorCode::TokenAlgNone,
        A::AlgHmac => ErrorCode::TokenAlgHmac,
        A::AlgUnsupported => ErrorCode::TokenAlgUnsupported,
        A::AlgMismatch => ErrorCode::TokenAlgMismatch,
        A::IssuerUnknown => ErrorCode::TokenIssuerUnknown,
        A::AudienceInvalid => ErrorCode::TokenAudienceInvalid,
        A::Expired => ErrorCode::TokenExpired,
        A::NotYetValid => ErrorCode::TokenNotYetValid,
        A::KidMissing => ErrorCode::TokenKidMissing,
        A::KeyUnknown => ErrorCode::TokenKeyUnknown,
        A::SignatureInvalid => ErrorCode::TokenSignatureInvalid,
        A::ClaimMissing => ErrorCode::TokenClaimMissing,
        A::NoMatchingRule => ErrorCode::TokenNoMatchingRule,
        A::ProviderUnavailable => ErrorCode::IdentityProviderUnavailable,
        A::KeyRevoked => ErrorCode::KeyRevoked,
        A::KeyExpired => ErrorCode::KeyExpired,
        A::IdentityConflict(_) => ErrorCode::IdentityConflict,
        A::IdentityInvalid(_) => ErrorCode::IdentityInvalid,
        A::Store(_) => ErrorCode::StoreUnavailable,
    }
}

/// The code of a failed use case.
pub fn gateway_code(e: &GatewayError) -> ErrorCode {
    use GatewayError as G;
    match e {
        G::Domain(d) => ErrorCode::from(d),
        G::NotFound | G::KeyNotFound => ErrorCode::NotFound,
        G::Invalid(_) => ErrorCode::InvalidRequest,
        G::Forbidden(_) => ErrorCode::Forbidden,
        G::IdempotencyConflict => ErrorCode::IdempotencyConflict,
        G::Credential(countersign_gateway::credentials::CredentialError::Unavailable {
            ..
        }) => ErrorCode::CredentialUnavailable,
        G::Credential(countersign_gateway::credentials::CredentialError::Invalid { .. }) => {
            ErrorCode::InvalidRequest
        }
        G::Store(_) | G::Startup(_) => ErrorCode::Internal,
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        if let AuthError::Store(inner) = &e {
            tracing::error!(error = %inner, "storage failure while checking a credential");
        }
        ApiError::new(auth_code(&e), e.to_string())
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
        ApiError::new(gateway_code(&e), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp =
            (status, axum::Json(ErrorBody::new(self.code, self.message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::{DomainError, SpecError, Status};
    use countersign_store::StoreError;

    /// Every variant of every error the API answers with, with the code string the crate that
    /// defines it gives (`code()`): the enum must agree with each, and answer with its status.
    #[test]
    fn every_refusal_answers_with_its_own_code_and_that_codes_status() {
        let domain = [
            DomainError::OnBehalfOfNotAllowed,
            DomainError::AgentsCannotApprove,
            DomainError::SelfApproval,
            DomainError::NotAnApprover("group:x".into()),
            DomainError::MfaRequired("act_1".into()),
            DomainError::NotRequester,
            DomainError::NotPending(Status::Approved),
            DomainError::ReviewExpired,
            DomainError::AlreadyVoted,
            DomainError::BadModification(SpecError::ParamsNotObject),
            DomainError::ModificationDenied("p".into()),
            DomainError::ModificationUnchanged,
            DomainError::NoOpenQuestion,
            DomainError::GrantMismatch,
            DomainError::GrantAlreadyUsed,
            DomainError::GrantExpired,
            DomainError::GrantRevoked(Status::Cancelled),
            DomainError::GrantNotRedeemed,
            DomainError::ResultAlreadyReported,
            DomainError::TooManyOpenReviews(3),
        ];
        let mut gateway: Vec<GatewayError> = domain.into_iter().map(GatewayError::from).collect();
        gateway.extend([
            GatewayError::NotFound,
            GatewayError::KeyNotFound,
            GatewayError::Invalid("x".into()),
            GatewayError::Forbidden("x".into()),
            GatewayError::IdempotencyConflict,
            GatewayError::Store(StoreError::Database("x".into())),
            GatewayError::Startup("x".into()),
        ]);
        for e in gateway {
            let want = e.code();
            let resp = ApiError::from(e).into_response();
            let code = ErrorCode::parse(want).expect("a known code");
            assert_eq!(resp.status(), code.status(), "{want}");
            assert_eq!(gateway_code_str(resp), want);
        }
        let auth = [
            AuthError::Unknown,
            AuthError::TooLarge,
            AuthError::Malformed,
            AuthError::AlgNone,
            AuthError::AlgHmac,
            AuthError::AlgUnsupported,
            AuthError::AlgMismatch,
            AuthError::IssuerUnknown,
            AuthError::AudienceInvalid,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::KidMissing,
            AuthError::KeyUnknown,
            AuthError::SignatureInvalid,
            AuthError::ClaimMissing,
            AuthError::NoMatchingRule,
            AuthError::ProviderUnavailable,
            AuthError::KeyRevoked,
            AuthError::KeyExpired,
            AuthError::IdentityConflict("x".into()),
            AuthError::IdentityInvalid("x".into()),
            AuthError::Store(countersign_identity::LookupError(Box::new(
                StoreError::Database("x".into()),
            ))),
        ];
        for e in auth {
            let want = e.code();
            assert_eq!(auth_code(&e).as_str(), want);
            let resp = ApiError::from(e).into_response();
            assert_eq!(resp.status(), ErrorCode::parse(want).expect(want).status());
        }
    }

    /// The code in an answer's body, read back as a client would.
    fn gateway_code_str(resp: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
            .expect("body");
        let body: ErrorBody<'_> = serde_json::from_slice(&bytes).expect("an error body");
        body.code().to_string()
    }

    #[test]
    fn unauthorized_answers_carry_www_authenticate() {
        let resp = ApiError::unauthenticated().into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
