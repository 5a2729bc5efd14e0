//! The masking canaries (#17): realistic secrets and personal data, one per detector plus values
//! caught by key names and a field rule (`params.customer.ssn`), and the check that a text shows
//! none of them in any common encoding. Shared by the CLI's and the server's test binaries (the
//! server's `console.rs` includes this file with `#[path]`), so every path is checked against
//! the same corpus.

use base64::Engine;
use serde_json::{json, Value};

/// One canary per detector, plus values caught by key names and a field rule.
pub const CANARIES: &[&str] = &[
    "AKIAQYLPMN5HHHFPZAM2",
    "ghp_R2d4X7qLmN8pQ3sT6vW9yZ1bC5eF0hJkLmNo",
    "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_51H8xYzAbCdEfGhIjKlMnOpQr",
    "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "jane.doe+billing@example-corp.com",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "+44 20 7946 0958",
    "Tr0ub4dor-and-3",
    "q8Zt2LmX9vB4nR7kW1pY",
    "078-05-1120",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    // Only in a reviewer's change ("approve with changes"), never in a submission.
    "sk_live_51Q9zReviewerAddedKeyXyZ0123",
];

/// The canary a reviewer adds in a change (not in [`params`]).
pub const REVIEWER_CANARY: &str = CANARIES[15];

/// Parameters carrying every canary but the reviewer's.
pub fn params() -> Value {
    json!({
        "aws": {"access_key_id": CANARIES[0]},
        "env": [format!("GITHUB_TOKEN={}", CANARIES[1]), format!("SLACK={}", CANARIES[2])],
        "note": format!("charge with {} or {} / {}", CANARIES[3], CANARIES[4], CANARIES[5]),
        "session": CANARIES[6],
        "customer": {"email": CANARIES[7], "card": CANARIES[8], "iban": CANARIES[9],
                     "phone": CANARIES[10], "ssn": CANARIES[13]},
        "db": {"url": format!("postgres://admin:{}@db.internal/app", CANARIES[11])},
        "api_key": CANARIES[12],
        "tls": {"private_key": format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", CANARIES[14])},
        "rows": 3,
    })
}

/// The ways a canary could be written into an output: as is, JSON-escaped, URL-encoded (form
/// and percent), HTML-escaped, and the base64 of it at each of the three alignments it could
/// have inside a longer encoded text (the characters that depend on its neighbours left out).
pub fn encodings(canary: &str) -> Vec<String> {
    let mut out = vec![canary.to_string()];
    let json = serde_json::to_string(canary).unwrap();
    out.push(json[1..json.len() - 1].to_string());
    out.push(url::form_urlencoded::byte_serialize(canary.as_bytes()).collect());
    out.push(
        canary
            .replace(' ', "%20")
            .replace('+', "%2B")
            .replace('@', "%40"),
    );
    out.push(
        canary
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
            .replace('/', "&#x2f;"),
    );
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ] {
        for pad in 0..3 {
            let text = format!("{}{canary}", "\0".repeat(pad));
            let encoded = engine.encode(text.as_bytes());
            // Skip the characters holding the padding's bits and the last group.
            let skip = if pad == 0 { 0 } else { 4 };
            let end = encoded.len().saturating_sub(4);
            if end > skip + 8 {
                out.push(encoded[skip..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Panics, naming `what`, the canary and its encoding, if `text` shows any canary.
pub fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        for e in encodings(c) {
            assert!(
                !text.contains(&e),
                "{what} shows the canary {c} (as {e}):\n{text}"
            );
        }
    }
}

#[test]
fn every_encoding_of_a_canary_is_found() {
    let c = CANARIES[7];
    let b64 = base64::engine::general_purpose::STANDARD;
    for text in [
        format!("x{c}y"),
        serde_json::to_string(&json!({"a": c})).unwrap(),
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", c)
            .finish(),
        b64.encode(format!("ab{c}cd")),
        b64.encode(format!("a{c}")),
        b64.encode(c),
    ] {
        let caught = std::panic::catch_unwind(|| assert_clean("a test", &text));
        assert!(caught.is_err(), "{text}");
    }
    assert_clean("a masked view", "[email:3f9a] [card:01ab]");
}
