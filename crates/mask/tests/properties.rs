//! Masking never panics, never changes a document's shape, and is idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_mask::{Masker, MaskingConfig};
use proptest::prelude::*;
use serde_json::Value;

static MASKER: std::sync::LazyLock<Masker> = std::sync::LazyLock::new(|| {
    let config = MaskingConfig {
        fields: vec!["params.a.*".into()],
        ..MaskingConfig::default()
    };
    Masker::new(&config, &[9u8; 32]).unwrap()
});

fn masker() -> &'static Masker {
    &MASKER
}

/// Strings that look like what detectors look for, and arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 @.:/+_-]{0,40}",
        "(AKIA[A-Z0-9]{16}|[a-z]{1,8}@[a-z]{1,8}\\.com|4111 1111 1111 1111|\\+44 20 7946 0958|postgres://u:[a-z]{3,9}@h/d|password=[a-z0-9]{4,12}|\\[email:[0-9a-f]{4}\\])( [a-z]{0,5})?",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("password".to_string()),
                    Just("token".to_string()),
                    Just("a".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Same containers, keys and lengths; a scalar stays a scalar.
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_shape(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn shape_is_kept_and_masking_is_idempotent(doc in json()) {
        let m = masker();
        let mut once = doc.clone();
        m.value("params", "", &mut once, &mut Vec::new());
        prop_assert!(same_shape(&doc, &once), "{doc} -> {once}");
        let mut twice = once.clone();
        let mut found = Vec::new();
        m.value("params", "", &mut twice, &mut found);
        prop_assert_eq!(&once, &twice);
        prop_assert!(found.is_empty());
    }

    #[test]
    fn free_text_never_panics_and_is_idempotent(s in text()) {
        let m = masker();
        let once = m.text(&s, "/x", &mut Vec::new()).unwrap_or_else(|| s.clone());
        let twice = m.text(&once, "/x", &mut Vec::new());
        prop_assert_eq!(twice, None, "{} -> {}", s, once);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An edit of the masked form that changes one top-level value gets back every other real
    /// value, and the changed one as written; an edit that changes nothing is the original.
    #[test]
    fn restoring_what_was_left_as_shown_gives_back_the_real_values(
        doc in prop::collection::btree_map("[a-z_]{1,10}", json(), 1..6),
        new in json(),
    ) {
        let m = masker();
        let real: serde_json::Map<String, Value> = doc.into_iter().collect();
        let mut shown = real.clone();
        m.object("params", "", &mut shown, &mut Vec::new());
        let mut untouched = Value::Object(shown.clone());
        m.restore_shown("params", &real, &mut untouched);
        prop_assert_eq!(&untouched, &Value::Object(real.clone()));

        let key = real.keys().next().unwrap().clone();
        let mut edited = shown.clone();
        edited.insert(key.clone(), new.clone());
        let mut edited = Value::Object(edited);
        m.restore_shown("params", &real, &mut edited);
        let mut want = real.clone();
        if new != shown[&key] {
            want.insert(key, new);
        }
        prop_assert_eq!(edited, Value::Object(want));
    }
}

/// A tag moved to another place, or kept inside edited text, is not turned back into the real
/// value: a real value goes only where it was shown.
#[test]
fn a_moved_or_edited_tag_stays_a_tag() {
    let m = masker();
    let real: serde_json::Map<String, Value> = serde_json::from_str(
        r#"{"to": "jane@example.com", "cc": "ops@example.com", "list": ["a@example.com", "b@example.com"]}"#,
    )
    .unwrap();
    let mut shown = real.clone();
    m.object("params", "", &mut shown, &mut Vec::new());
    let tag = shown["to"].as_str().unwrap().to_string();
    assert!(tag.starts_with("[email:"), "{tag}");
    let mut edited = serde_json::json!({
        "to": shown["to"],
        "cc": tag,
        "note": format!("was {tag}"),
        "list": [shown["list"][1]],
    });
    m.restore_shown("params", &real, &mut edited);
    assert_eq!(
        edited,
        serde_json::json!({"to": "jane@example.com", "cc": tag, "note": format!("was {tag}"), "list": [shown["list"][1]]})
    );
}
