//! Input-size rules on `params`: nesting depth and I-JSON numbers (RFC 7493).

use countersign_core::{ActionSpec, SpecError, MAX_PARAMS_DEPTH};
use serde_json::{json, Value};

fn nested(depth: usize) -> Value {
    // `depth` levels of objects, the outermost being `params` itself.
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

fn spec(params: Value) -> Result<ActionSpec, SpecError> {
    ActionSpec::new("db.query", "db://x", "", Some(params))
}

#[test]
fn params_nest_up_to_the_limit_and_no_deeper() {
    assert!(spec(nested(MAX_PARAMS_DEPTH)).is_ok());
    assert_eq!(
        spec(nested(MAX_PARAMS_DEPTH + 1)),
        Err(SpecError::ParamsTooDeep)
    );
    // Arrays count as levels too.
    let mut v = json!([]);
    for _ in 2..MAX_PARAMS_DEPTH {
        v = json!([v]);
    }
    assert!(spec(json!({ "a": v.clone() })).is_ok());
    assert_eq!(spec(json!({ "a": [v] })), Err(SpecError::ParamsTooDeep));
    let err = SpecError::ParamsTooDeep.to_string();
    assert!(err.contains("32 levels"), "{err}");
}

#[test]
fn a_modification_obeys_the_same_limits() {
    let Ok(s) = spec(json!({})) else {
        panic!("a plain spec")
    };
    assert_eq!(
        s.with_params(nested(MAX_PARAMS_DEPTH + 1)),
        Err(SpecError::ParamsTooDeep)
    );
    assert!(matches!(
        s.with_params(json!({ "n": 9_007_199_254_740_992u64 })),
        Err(SpecError::NumberOutOfRange(_))
    ));
}

#[test]
fn integers_beyond_two_to_the_53_minus_one_are_refused() {
    for ok in [
        "9007199254740991",
        "-9007199254740991",
        "0",
        "-0",
        "1.5",
        "1e300",
        "-2.5e-300",
    ] {
        let params: Value = serde_json::from_str(&format!("{{\"n\":[{ok}]}}")).unwrap();
        assert!(spec(params).is_ok(), "{ok} should be accepted");
    }
    for bad in [
        "9007199254740992",
        "9007199254740993",
        "-9007199254740992",
        "18446744073709551615",
        "-9223372036854775808",
    ] {
        let params: Value = serde_json::from_str(&format!("{{\"x\":{{\"n\":{bad}}}}}")).unwrap();
        let err = spec(params).unwrap_err();
        assert_eq!(err, SpecError::NumberOutOfRange(bad.to_string()));
        assert!(err.to_string().contains("9007199254740991"), "{err}");
    }
}

#[test]
fn two_integers_that_would_share_a_digest_cannot_both_be_accepted() {
    // Before the limit, 2^53 + 1 was canonicalised as the double 2^53: both had one digest.
    let a: Value = serde_json::from_str(r#"{"n":9007199254740993}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"n":9007199254740992}"#).unwrap();
    assert!(spec(a).is_err());
    assert!(spec(b).is_err());
}

#[test]
fn integers_are_checked_on_the_text_where_parsing_would_round_them() {
    use countersign_core::check_json_text;
    // Beyond u64, serde_json reads an integer as the nearest double: both are 2^64 once parsed.
    let a: Value = serde_json::from_str(r#"{"n":18446744073709551617}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"n":18446744073709551616}"#).unwrap();
    assert_eq!(a, b);
    for bad in [
        r#"{"n":18446744073709551617}"#,
        r#"[1,2,{"x":[-9007199254740992]}]"#,
        r#"{"a":"\"","n":9007199254740993}"#,
        "123456789012345678901234567890",
    ] {
        assert!(
            matches!(
                check_json_text(bad.as_bytes()),
                Err(SpecError::NumberOutOfRange(_))
            ),
            "{bad}"
        );
    }
    let huge = "9".repeat(100_000);
    let err = check_json_text(huge.as_bytes()).unwrap_err().to_string();
    assert!(err.len() < 200 && err.contains("99999…"), "{err}");
    for ok in [
        r#"{"n":9007199254740991,"m":-9007199254740991,"f":1.5e300,"g":-0.0}"#,
        r#"{"s":"99999999999999999999","t":"\\","u":"\"123456789012345678901\""}"#,
        r#"{"n":1e20,"k":18446744073709551616.5}"#,
        "[]",
        "",
    ] {
        assert_eq!(check_json_text(ok.as_bytes()), Ok(()), "{ok}");
    }
}
