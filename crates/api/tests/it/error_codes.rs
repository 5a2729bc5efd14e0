//! Every error code round-trips and answers with one status.

use countersign_api::{ErrorBody, ErrorCode};
use http::StatusCode;
use std::collections::BTreeSet;

#[test]
fn every_code_round_trips_between_text_and_enum() {
    for &code in ErrorCode::ALL {
        assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        assert_eq!(code.to_string(), code.as_str());
    }
    assert_eq!(ErrorCode::parse("no_such_code"), None);
    assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
}

#[test]
fn codes_are_distinct_snake_case_and_only_internal_is_a_500() {
    let texts: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        texts.len(),
        ErrorCode::ALL.len(),
        "a code string is used twice"
    );
    for &code in ErrorCode::ALL {
        let text = code.as_str();
        assert!(
            text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{text}"
        );
        let status = code.status();
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{text}"
        );
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(code, ErrorCode::Internal, "{text} would be a silent 500");
        }
    }
}

/// The contract as published before the enum existed: each code and its status.
#[test]
fn the_published_codes_keep_their_statuses() {
    let table: &[(u16, &[&str])] = &[
        (400, &["invalid_request"]),
        (
            401,
            &[
                "unauthenticated",
                "key_revoked",
                "key_expired",
                "identity_conflict",
                "identity_invalid",
                "token_too_large",
                "token_malformed",
                "token_alg_none",
                "token_alg_hmac",
                "token_alg_unsupported",
                "token_alg_mismatch",
                "token_issuer_unknown",
                "token_audience_invalid",
                "token_expired",
                "token_not_yet_valid",
                "token_kid_missing",
                "token_key_unknown",
                "token_signature_invalid",
                "token_claim_missing",
                "token_no_matching_rule",
            ],
        ),
        (
            403,
            &[
                "self_approval",
                "not_an_approver",
                "mfa_required",
                "agents_cannot_approve",
                "not_requester",
                "on_behalf_of_not_allowed",
                "modification_denied",
                "grant_invalid",
                "forbidden",
                "not_redeemer",
                "reveal_not_allowed",
            ],
        ),
        (404, &["not_found"]),
        (405, &["method_not_allowed"]),
        (408, &["request_timeout"]),
        (
            409,
            &[
                "not_pending",
                "already_voted",
                "digest_mismatch",
                "grant_already_used",
                "grant_revoked",
                "grant_not_redeemed",
                "result_already_reported",
                "no_credentials",
                "credentials_already_released",
            ],
        ),
        (410, &["grant_expired", "credentials_expired"]),
        (413, &["payload_too_large"]),
        (415, &["unsupported_media_type"]),
        (422, &["idempotency_conflict"]),
        (429, &["too_many_open_reviews"]),
        (500, &["internal"]),
        (
            503,
            &[
                "identity_provider_unavailable",
                "store_unavailable",
                "credential_unavailable",
            ],
        ),
    ];
    let mut seen = 0;
    for (status, codes) in table {
        for text in *codes {
            let code = ErrorCode::parse(text).unwrap_or_else(|| panic!("{text} is gone"));
            assert_eq!(code.status().as_u16(), *status, "{text}");
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        ErrorCode::ALL.len(),
        "a code is missing from this table"
    );
}

#[test]
fn the_error_body_is_the_documented_shape_and_reads_unknown_codes() {
    let body = ErrorBody::new(ErrorCode::NotFound, "no such action");
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        serde_json::json!({"error": {"code": "not_found", "message": "no such action"}})
    );
    let newer: ErrorBody<'_> =
        serde_json::from_str(r#"{"error": {"code": "some_new_code", "message": "m"}}"#).unwrap();
    assert_eq!(newer.code(), "some_new_code");
    assert_eq!(newer.error_code(), None);
    assert_eq!(newer.message(), "m");
}
