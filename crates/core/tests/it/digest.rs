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

mod canonical_fast_path {
    use countersign_core::{canonical, ActionSpec};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{0,6}",
            // Non-ASCII keys, including astral ones whose UTF-16 order differs from UTF-8's.
            "[a-z\u{e9}\u{ff5e}\u{1f600}\u{10000}]{1,4}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Control characters, quotes, backslashes, DEL, line separators, astral characters.
            "[a-z\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}\u{e9}\u{1f600}]{0,8}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_canonical_json_is_exactly_serde_jcs(v in value()) {
            prop_assert_eq!(canonical::to_string(&v).unwrap(), serde_jcs::to_string(&v).unwrap());
        }

        #[test]
        fn digest_bytes_are_exactly_serde_jcs(params in prop::collection::vec((key(), value()), 0..6)) {
            let params: Map<String, Value> = params.into_iter().collect();
            let spec = match ActionSpec::new("a", "r", "e", Some(Value::Object(params.clone()))) {
                Ok(spec) => spec,
                // Integers beyond ±(2^53 - 1) are refused (I-JSON): nothing to digest.
                Err(countersign_core::SpecError::NumberOutOfRange(_)) => return Ok(()),
                Err(e) => panic!("{e}"),
            };
            let expected = serde_jcs::to_vec(&serde_json::json!({
                "action": "a", "environment": "e", "params": params, "resource": "r",
            })).unwrap();
            prop_assert_eq!(spec.canonical_bytes(), expected);
        }
    }
}
