//! Loading and validation: problems are reported as file:line:col with what to do.

use countersign_policy::{DefaultEffect, LoadError, PolicyEngine};

fn problems(src: &str) -> Vec<String> {
    match PolicyEngine::from_sources(&[("p.cedar".into(), src.into())], DefaultEffect::Deny) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid(ps)) => ps.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let p =
        problems("permit (principal, action, resource);\n\npermit (principal, action resource);\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("p.cedar:3:"), "{p:?}");
}

#[test]
fn review_rules_need_valid_annotations() {
    let cases = [
        ("@effect(\"review\")\npermit (principal, action, resource);", "needs @approvers"),
        ("@effect(\"review\")\n@approvers(\"team:x\")\npermit (principal, action, resource);", "team:x"),
        ("@effect(\"review\")\n@approvers(\"group:a\")\n@quorum(\"0\")\npermit (principal, action, resource);", "quorum"),
        ("@effect(\"review\")\n@approvers(\"group:a\")\n@ttl(\"soon\")\npermit (principal, action, resource);", "duration"),
        ("@effect(\"maybe\")\npermit (principal, action, resource);", "unknown"),
        ("@effect(\"review\")\nforbid (principal, action, resource);", "forbid"),
        ("@approvers(\"group:a\")\npermit (principal, action, resource);", "only makes sense"),
        ("@colour(\"red\")\npermit (principal, action, resource);", "unknown annotation"),
        ("@require_mfa\npermit (principal, action, resource);", "only makes sense"),
        ("@effect(\"review\")\n@approvers(\"group:a\")\n@require_mfa(\"maybe\")\npermit (principal, action, resource);", "takes no value"),
    ];
    for (src, needle) in cases {
        let p = problems(src);
        assert_eq!(p.len(), 1, "{src}: {p:?}");
        assert!(p[0].contains(needle), "{src}: {p:?}");
        assert!(p[0].starts_with("p.cedar:"), "{p:?}");
        assert!(!p[0].starts_with("p.cedar:0:"), "a line is named: {p:?}");
    }
}

#[test]
fn duplicate_ids_across_files_are_refused() {
    let r = PolicyEngine::from_sources(
        &[
            (
                "a.cedar".into(),
                "@id(\"x\") permit (principal, action, resource);".into(),
            ),
            (
                "b.cedar".into(),
                "@id(\"x\") permit (principal, action, resource);".into(),
            ),
        ],
        DefaultEffect::Deny,
    );
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("duplicate policy id `x`") && msg.contains("a.cedar"),
        "{msg}"
    );
}

#[test]
fn ids_default_to_file_and_position() {
    let e = crate::engine("permit (principal, action == Action::\"a\", resource);\npermit (principal, action == Action::\"b\", resource);");
    let d = crate::eval(&e, &crate::agent(), "b", "", serde_json::json!({})).decision;
    assert_eq!(d.policies, vec!["test.cedar#1"]);
}

#[test]
fn the_policy_hash_changes_with_the_text() {
    let a = crate::engine("permit (principal, action, resource);");
    let b = crate::engine("permit (principal, action, resource);\n");
    assert_ne!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:"));
}
