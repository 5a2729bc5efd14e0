//! The action digest: RFC 8785 canonical JSON, SHA-256, `sha256:<hex>`.

use countersign_core::{ActionDigest, ActionSpec};
use serde_json::json;

#[test]
fn canonical_bytes_follow_rfc8785_key_order_and_number_form() {
    let spec = ActionSpec::new(
        "db.export",
        "pg://x",
        "prod",
        Some(json!({"b": 1, "a": [1.0, 1e21, "\u{20ac}"], "c": {"z": null, "y": true}})),
    )
    .unwrap();
    let text = String::from_utf8(spec.canonical_bytes()).unwrap();
    assert_eq!(
        text,
        r#"{"action":"db.export","environment":"prod","params":{"a":[1,1e+21,"€"],"b":1,"c":{"y":true,"z":null}},"resource":"pg://x"}"#
    );
}

#[test]
fn digest_ignores_key_order_and_whitespace_but_not_values() {
    let a = ActionSpec::new("x", "r", "e", Some(json!({"a": 1, "b": 2}))).unwrap();
    let b: serde_json::Value = serde_json::from_str("{ \"b\" : 2 ,\n \"a\":1 }").unwrap();
    let b = ActionSpec::new("x", "r", "e", Some(b)).unwrap();
    assert_eq!(a.digest(), b.digest());
    let c = ActionSpec::new("x", "r", "e", Some(json!({"a": 1, "b": 3}))).unwrap();
    assert_ne!(a.digest(), c.digest());
    let d = ActionSpec::new("x", "r", "other", Some(json!({"a": 1, "b": 2}))).unwrap();
    assert_ne!(a.digest(), d.digest());
}

#[test]
fn digest_round_trips_and_rejects_malformed_text() {
    let d = ActionSpec::new("x", "r", "", None).unwrap().digest();
    let text = d.to_string();
    assert!(text.starts_with("sha256:") && text.len() == 71);
    assert_eq!(text.parse::<ActionDigest>().unwrap(), d);
    for bad in [
        "",
        "sha256:",
        "sha1:00",
        &text.to_uppercase(),
        &text[..70],
        "sha256:zz",
    ] {
        assert!(bad.parse::<ActionDigest>().is_err(), "{bad}");
    }
}

#[test]
fn spec_validation_rejects_bad_fields() {
    assert!(ActionSpec::new("", "r", "", None).is_err());
    assert!(ActionSpec::new("has space", "r", "", None).is_err());
    assert!(ActionSpec::new("x", "", "", None).is_err());
    assert!(ActionSpec::new("x", "r\n", "", None).is_err());
    assert!(ActionSpec::new("x", "r", "", Some(json!([1]))).is_err());
    assert!(ActionSpec::new("x", "r", "", Some(json!(null))).is_ok());
}
