//! The stable error codes of API v1 and the one error body, `{"error": {"code", "message"}}`.
//!
//! Each code is a contract: its string never changes and it always answers with the same HTTP
//! status. Both live here, once: [`ErrorCode::as_str`] and [`ErrorCode::status`] are exhaustive
//! matches, so a new code cannot exist without a status (no silent 500).

use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable machine-readable error code of API v1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            /// The code for a wire string; `None` for a code this build does not know.
            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text {
                    $($text => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The request is malformed (a field, the JSON, a query parameter).
    InvalidRequest = "invalid_request",
    /// No bearer credential, or an unknown one.
    Unauthenticated = "unauthenticated",
    /// A managed key that was revoked.
    KeyRevoked = "key_revoked",
    /// A managed key past its expiry.
    KeyExpired = "key_expired",
    /// The caller's id belongs to another identity.
    IdentityConflict = "identity_conflict",
    /// The caller's id mixes scripts or holds invisible characters.
    IdentityInvalid = "identity_invalid",
    /// An OIDC token over 16 KiB.
    TokenTooLarge = "token_too_large",
    /// An OIDC token that is not a well-formed JWT.
    TokenMalformed = "token_malformed",
    /// An unsigned token.
    TokenAlgNone = "token_alg_none",
    /// An HMAC-signed token.
    TokenAlgHmac = "token_alg_hmac",
    /// A signing algorithm that is not accepted.
    TokenAlgUnsupported = "token_alg_unsupported",
    /// An algorithm that does not fit its key.
    TokenAlgMismatch = "token_alg_mismatch",
    /// An issuer this gateway does not trust.
    TokenIssuerUnknown = "token_issuer_unknown",
    /// A token not issued for this gateway.
    TokenAudienceInvalid = "token_audience_invalid",
    /// A token past `exp`.
    TokenExpired = "token_expired",
    /// A token before `nbf`.
    TokenNotYetValid = "token_not_yet_valid",
    /// A token naming no key where the issuer has several.
    TokenKidMissing = "token_kid_missing",
    /// A token signed by a key its issuer does not publish.
    TokenKeyUnknown = "token_key_unknown",
    /// A token whose signature does not verify.
    TokenSignatureInvalid = "token_signature_invalid",
    /// A token lacking a claim needed to name the caller.
    TokenClaimMissing = "token_claim_missing",
    /// A workload token no configured rule admits.
    TokenNoMatchingRule = "token_no_matching_rule",
    /// The identity provider's keys could not be fetched.
    IdentityProviderUnavailable = "identity_provider_unavailable",
    /// The credential could not be checked against the store.
    StoreUnavailable = "store_unavailable",
    /// The requester (or whom it acts for, or its key's sponsor) tried to vote.
    SelfApproval = "self_approval",
    /// The voter is not an approver of the review.
    NotAnApprover = "not_an_approver",
    /// The review needs a multi-factor sign-in (`@require_mfa`): approve it in the web console.
    MfaRequired = "mfa_required",
    /// An agent or service tried to vote.
    AgentsCannotApprove = "agents_cannot_approve",
    /// A requester-only operation by someone else.
    NotRequester = "not_requester",
    /// Only agents and services may act on behalf of a human.
    OnBehalfOfNotAllowed = "on_behalf_of_not_allowed",
    /// Policy denies the modified action.
    ModificationDenied = "modification_denied",
    /// A grant that does not match the action it names.
    GrantInvalid = "grant_invalid",
    /// The caller may not do this.
    Forbidden = "forbidden",
    /// No such action, key or endpoint (or the caller may not see it).
    NotFound = "not_found",
    /// The method is not allowed on this path.
    MethodNotAllowed = "method_not_allowed",
    /// The action is not in a state that allows this.
    NotPending = "not_pending",
    /// The voter already voted on this version of the action.
    AlreadyVoted = "already_voted",
    /// The vote named a digest the action no longer has: it changed since the voter read it.
    DigestMismatch = "digest_mismatch",
    /// The grant was already redeemed.
    GrantAlreadyUsed = "grant_already_used",
    /// The action was withdrawn after its grant was issued.
    GrantRevoked = "grant_revoked",
    /// A result reported before the grant was redeemed.
    GrantNotRedeemed = "grant_not_redeemed",
    /// A result was already reported.
    ResultAlreadyReported = "result_already_reported",
    /// The grant expired before it was redeemed.
    GrantExpired = "grant_expired",
    /// The body is not JSON.
    UnsupportedMediaType = "unsupported_media_type",
    /// The idempotency key was used for a different action.
    IdempotencyConflict = "idempotency_conflict",
    /// The body is over the size limit.
    PayloadTooLarge = "payload_too_large",
    /// The body stopped arriving.
    RequestTimeout = "request_timeout",
    /// The requester has the most open reviews it may have.
    TooManyOpenReviews = "too_many_open_reviews",
    /// The action's decision releases no credentials.
    NoCredentials = "no_credentials",
    /// Credentials go only to the identity that redeemed the grant.
    NotRedeemer = "not_redeemer",
    /// The credentials were already released for this grant.
    CredentialsAlreadyReleased = "credentials_already_released",
    /// The credentials' lifetime has ended.
    CredentialsExpired = "credentials_expired",
    /// The caller may not see the action's masked values (`@reveal`).
    RevealNotAllowed = "reveal_not_allowed",
    /// The system behind a credential could not mint it; nothing was released.
    CredentialUnavailable = "credential_unavailable",
    /// The gateway failed; nothing was changed.
    Internal = "internal",
}

impl ErrorCode {
    /// The HTTP status this code always answers with.
    pub const fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidRequest => StatusCode::BAD_REQUEST,
            Unauthenticated
            | KeyRevoked
            | KeyExpired
            | IdentityConflict
            | IdentityInvalid
            | TokenTooLarge
            | TokenMalformed
            | TokenAlgNone
            | TokenAlgHmac
            | TokenAlgUnsupported
            | TokenAlgMismatch
            | TokenIssuerUnknown
            | TokenAudienceInvalid
            | TokenExpired
            | TokenNotYetValid
            | TokenKidMissing
            | TokenKeyUnknown
            | TokenSignatureInvalid
            | TokenClaimMissing
            | TokenNoMatchingRule => StatusCode::UNAUTHORIZED,
            IdentityProviderUnavailable | StoreUnavailable | CredentialUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SelfApproval | NotAnApprover | MfaRequired | AgentsCannotApprove | NotRequester
            | OnBehalfOfNotAllowed | ModificationDenied | GrantInvalid | Forbidden
            | NotRedeemer | RevealNotAllowed => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotPending
            | AlreadyVoted
            | DigestMismatch
            | GrantAlreadyUsed
            | GrantRevoked
            | GrantNotRedeemed
            | ResultAlreadyReported
            | NoCredentials
            | CredentialsAlreadyReleased => StatusCode::CONFLICT,
            GrantExpired | CredentialsExpired => StatusCode::GONE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            TooManyOpenReviews => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        ErrorCode::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{text}`")))
    }
}

impl From<&countersign_core::DomainError> for ErrorCode {
    fn from(e: &countersign_core::DomainError) -> Self {
        use countersign_core::DomainError as D;
        match e {
            D::OnBehalfOfNotAllowed => ErrorCode::OnBehalfOfNotAllowed,
            D::AgentsCannotApprove => ErrorCode::AgentsCannotApprove,
            D::SelfApproval => ErrorCode::SelfApproval,
            D::NotAnApprover(_) => ErrorCode::NotAnApprover,
            D::MfaRequired(_) => ErrorCode::MfaRequired,
            D::NotRequester => ErrorCode::NotRequester,
            D::NotPending(_) | D::ReviewExpired | D::NoOpenQuestion => ErrorCode::NotPending,
            D::AlreadyVoted => ErrorCode::AlreadyVoted,
            D::DigestMismatch(_) => ErrorCode::DigestMismatch,
            D::BadModification(_) | D::ModificationUnchanged => ErrorCode::InvalidRequest,
            D::ModificationDenied(_) => ErrorCode::ModificationDenied,
            D::GrantMismatch => ErrorCode::GrantInvalid,
            D::GrantAlreadyUsed => ErrorCode::GrantAlreadyUsed,
            D::GrantExpired => ErrorCode::GrantExpired,
            D::GrantRevoked(_) => ErrorCode::GrantRevoked,
            D::GrantNotRedeemed => ErrorCode::GrantNotRedeemed,
            D::ResultAlreadyReported => ErrorCode::ResultAlreadyReported,
            D::TooManyOpenReviews(_) => ErrorCode::TooManyOpenReviews,
            D::NoCredentials => ErrorCode::NoCredentials,
            D::NotRedeemer => ErrorCode::NotRedeemer,
            D::CredentialsAlreadyReleased => ErrorCode::CredentialsAlreadyReleased,
            D::CredentialsExpired => ErrorCode::CredentialsExpired,
            D::RevealNotAllowed(_) => ErrorCode::RevealNotAllowed,
        }
    }
}

/// The body of every error answer: `{"error": {"code", "message"}}`. Built from an
/// [`ErrorCode`] only; a client reads a code it may not know yet as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ErrorDetail<'a> {
    code: Cow<'a, str>,
    message: Cow<'a, str>,
}

impl<'a> ErrorBody<'a> {
    /// The body for `code` with a human sentence saying what to do.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'a, str>>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: Cow::Borrowed(code.as_str()),
                message: message.into(),
            },
        }
    }

    /// The code as sent (a newer server may send one this build does not know).
    pub fn code(&self) -> &str {
        &self.error.code
    }

    /// The code, if this build knows it.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.error.code)
    }

    /// The human sentence.
    pub fn message(&self) -> &str {
        &self.error.message
    }
}
