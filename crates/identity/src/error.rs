//! Why a credential was refused. Each variant has a stable code; messages say what to do without
//! saying what exactly was wrong inside the token (no oracle for an attacker).

use crate::lookup::LookupError;

/// A refused credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one nobody issued.
    #[error("send `Authorization: Bearer <token>` with a valid API key or identity token")]
    Unknown,
    /// Over 16 KiB.
    #[error("the bearer token is too large")]
    TooLarge,
    /// Not a well-formed JWT (segments, base64url, JSON, required claims).
    #[error("the bearer token is malformed")]
    Malformed,
    /// `alg: none`.
    #[error("unsigned tokens are refused")]
    AlgNone,
    /// An HMAC algorithm (the key-confusion attack on asymmetric keys).
    #[error(
        "HMAC-signed tokens are refused; the identity provider must sign with its private key"
    )]
    AlgHmac,
    /// An algorithm we do not accept at all.
    #[error("the token's signing algorithm is not accepted (RS256, ES256 and EdDSA are)")]
    AlgUnsupported,
    /// An algorithm that does not fit the key it names.
    #[error("the token's algorithm does not match its key")]
    AlgMismatch,
    /// `iss` is not a configured issuer.
    #[error("the token's issuer is not trusted by this gateway")]
    IssuerUnknown,
    /// `aud` is missing or not ours.
    #[error("the token was not issued for this gateway (audience)")]
    AudienceInvalid,
    /// Past `exp` (plus skew).
    #[error("the token has expired; get a new one")]
    Expired,
    /// Before `nbf` (minus skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// No `kid` while the issuer publishes several keys.
    #[error("the token names no key (`kid`) and the issuer has several")]
    KidMissing,
    /// A `kid` the issuer does not publish (after a refresh).
    #[error("the token's signing key is not published by its issuer")]
    KeyUnknown,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    SignatureInvalid,
    /// A claim needed to name the caller is missing.
    #[error("the token lacks a claim needed to identify the caller")]
    ClaimMissing,
    /// The issuer requires a claim rule and none matched.
    #[error("no configured rule admits this workload token")]
    NoMatchingRule,
    /// The issuer's discovery document or JWKS could not be fetched.
    #[error("the identity provider could not be reached; retry later")]
    ProviderUnavailable,
    /// A managed key that was revoked.
    #[error("this API key was revoked")]
    KeyRevoked,
    /// A managed key past its expiry.
    #[error("this API key has expired")]
    KeyExpired,
    /// The id is already bound to another identity (another source, or a look-alike id). Holds
    /// who claimed it (`id (stable key)`), for the audit trail, never shown to the caller.
    #[error("this identity's id belongs to another identity (or looks like one); ask an administrator to rename one of them or to link them with `oidc_subject`")]
    IdentityConflict(String),
    /// The id mixes scripts or holds invisible characters. Holds who claimed it, for the audit
    /// trail.
    #[error("this identity's id mixes scripts or contains invisible characters; ask an administrator to change it")]
    IdentityInvalid(String),
    /// The key store failed.
    #[error("the credential could not be checked; retry later")]
    Store(#[from] LookupError),
}

impl AuthError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unknown => "unauthenticated",
            AuthError::TooLarge => "token_too_large",
            AuthError::Malformed => "token_malformed",
            AuthError::AlgNone => "token_alg_none",
            AuthError::AlgHmac => "token_alg_hmac",
            AuthError::AlgUnsupported => "token_alg_unsupported",
            AuthError::AlgMismatch => "token_alg_mismatch",
            AuthError::IssuerUnknown => "token_issuer_unknown",
            AuthError::AudienceInvalid => "token_audience_invalid",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::KidMissing => "token_kid_missing",
            AuthError::KeyUnknown => "token_key_unknown",
            AuthError::SignatureInvalid => "token_signature_invalid",
            AuthError::ClaimMissing => "token_claim_missing",
            AuthError::NoMatchingRule => "token_no_matching_rule",
            AuthError::ProviderUnavailable => "identity_provider_unavailable",
            AuthError::KeyRevoked => "key_revoked",
            AuthError::KeyExpired => "key_expired",
            AuthError::IdentityConflict(_) => "identity_conflict",
            AuthError::IdentityInvalid(_) => "identity_invalid",
            AuthError::Store(_) => "store_unavailable",
        }
    }

    /// For a refused identity (`identity_conflict`, `identity_invalid`): who claimed the id,
    /// as `id (stable key)`, for the audit trail.
    pub fn refused_identity(&self) -> Option<&str> {
        match self {
            AuthError::IdentityConflict(who) | AuthError::IdentityInvalid(who) => Some(who),
            _ => None,
        }
    }

    /// Whether the caller should retry later (the fault is ours or the IdP's, not the token's).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthError::ProviderUnavailable | AuthError::Store(_))
    }
}
