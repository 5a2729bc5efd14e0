//! Realistic secrets and personal data, one per detector, in the places they turn up: each is
//! masked, with its kind in the tag, and nothing around it is.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_mask::{Masker, MaskingConfig, Pattern};
use serde_json::{json, Value};

fn masker(config: &MaskingConfig) -> Masker {
    Masker::new(config, &[7u8; 32]).unwrap()
}

/// (kind, canary, text around it). The canary text is what must disappear.
pub const CANARIES: &[(&str, &str)] = &[
    ("aws-access-key", "AKIAQYLPMN5HHHFPZAM2"),
    ("github-token", "ghp_R2d4X7qLmN8pQ3sT6vW9yZ1bC5eF0hJkLmNo"),
    ("github-token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV"),
    ("slack-token", "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("slack-webhook", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("stripe-key", "sk_live_51H8xYzAbCdEfGhIjKlMnOpQr"),
    ("openai-key", "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678"),
    ("gcp-api-key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("email", "jane.doe+billing@example-corp.com"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(415) 555-0132"),
];

#[test]
fn every_canary_is_masked_in_free_text_with_its_kind() {
    let m = masker(&MaskingConfig::default());
    for (kind, canary) in CANARIES {
        let text = format!("please use {canary} for this, thanks");
        let mut found = Vec::new();
        let out = m
            .text(&text, "/justification", &mut found)
            .unwrap_or_default();
        assert!(!out.contains(canary), "{kind}: {out}");
        assert!(
            out.starts_with("please use [") && out.ends_with(" for this, thanks"),
            "{kind}: {out}"
        );
        assert_eq!(found.len(), 1, "{kind}: {found:?}");
        assert_eq!(found[0].kind, *kind);
        assert!(out.contains(&found[0].tag));
        assert!(m.matches(canary, &found[0].commitment));
        assert!(!m.matches("something else", &found[0].commitment));
    }
}

#[test]
fn a_password_in_a_url_keeps_the_rest_of_the_url() {
    let m = masker(&MaskingConfig::default());
    let mut found = Vec::new();
    let out = m
        .text(
            "psql postgres://admin:S3cr3t-P4ss@db.internal:5432/app",
            "/x",
            &mut found,
        )
        .unwrap_or_default();
    assert!(
        out.starts_with("psql postgres://admin:[url-password:"),
        "{out}"
    );
    assert!(out.ends_with("]@db.internal:5432/app"), "{out}");
    assert!(!out.contains("S3cr3t"));
}

#[test]
fn private_keys_and_assignments() {
    let m = masker(&MaskingConfig::default());
    let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----";
    let mut found = Vec::new();
    let out = m
        .text(&format!("key:\n{pem}\nend"), "/x", &mut found)
        .unwrap_or_default();
    assert_eq!(found.len(), 1);
    assert!(!out.contains("b3BlbnNzaC1"), "{out}");
    let out = m
        .text(
            "PGPASSWORD=hunter2hunter psql -c 'select 1' --token=abcd1234efgh",
            "/x",
            &mut Vec::new(),
        )
        .unwrap_or_default();
    assert!(
        !out.contains("hunter2hunter") && !out.contains("abcd1234efgh"),
        "{out}"
    );
    // Not secrets: a count of tokens, a date, a version, an IP address, a plain number.
    for plain in [
        "max_tokens=4096",
        "2026-12-01",
        "v1.2.3",
        "10.0.0.1",
        "order 12345",
    ] {
        assert_eq!(m.text(plain, "/x", &mut Vec::new()), None, "{plain}");
    }
}

#[test]
fn look_alikes_are_left_alone() {
    let m = masker(&MaskingConfig::default());
    // A 16-digit number failing Luhn, an IBAN with a bad checksum.
    for s in [
        "id 4111111111111112",
        "GB82 WEST 1234 5698 7654 33",
        "ticket PROJ-1234",
    ] {
        assert_eq!(m.text(s, "/x", &mut Vec::new()), None, "{s}");
    }
}

#[test]
fn json_keys_field_rules_and_allow_list() {
    let config = MaskingConfig {
        fields: vec!["params.customer.ssn".into(), "params.rows.*.dob".into()],
        allow: vec!["oncall@example.com".into()],
        patterns: vec![Pattern {
            name: "employee-id".into(),
            regex: r"\bE[0-9]{6}\b".into(),
        }],
        ..MaskingConfig::default()
    };
    let m = masker(&config);
    let mut v = json!({
        "db": {"password": "correct horse", "user": "app"},
        "api_key": "q8Zt2LmX9vB4nR7kW1pY",
        "max_tokens": 100,
        "customer": {"ssn": "078-05-1120", "name": "Jo"},
        "rows": [{"dob": 19700101, "ok": true}, {"dob": "1970-01-01"}],
        "notify": ["oncall@example.com", "jane@example.com"],
        "who": "E123456",
    });
    let mut found = Vec::new();
    m.value("params", "/spec/params", &mut v, &mut found);
    let text = v.to_string();
    for secret in [
        "correct horse",
        "q8Zt2LmX9vB4nR7kW1pY",
        "078-05-1120",
        "19700101",
        "1970-01-01",
        "jane@example.com",
        "E123456",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(v["db"]["user"], "app");
    assert_eq!(v["max_tokens"], 100);
    assert_eq!(v["customer"]["name"], "Jo");
    assert_eq!(v["rows"][0]["ok"], true);
    assert_eq!(v["notify"][0], "oncall@example.com");
    assert!(v["who"]
        .as_str()
        .unwrap_or_default()
        .starts_with("[employee-id:"));
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"/spec/params/db/password"), "{paths:?}");
    assert!(paths.contains(&"/spec/params/rows/0/dob"), "{paths:?}");
    // The same value gets the same tag; different values, different tags.
    let mut a = json!({"x": "jane@example.com", "y": "jane@example.com", "z": "john@example.com"});
    m.value("params", "", &mut a, &mut Vec::new());
    assert_eq!(a["x"], a["y"]);
    assert_ne!(a["x"], a["z"]);
}

#[test]
fn configuration_mistakes_are_refused() {
    let bad = |c: MaskingConfig| Masker::new(&c, &[0u8; 32]).is_err();
    assert!(bad(MaskingConfig {
        disable: vec!["emails".into()],
        ..Default::default()
    }));
    assert!(bad(MaskingConfig {
        fields: vec!["params..x".into()],
        ..Default::default()
    }));
    assert!(bad(MaskingConfig {
        fields: vec!["params".into()],
        ..Default::default()
    }));
    assert!(bad(MaskingConfig {
        patterns: vec![Pattern {
            name: "Bad Name".into(),
            regex: "x".into()
        }],
        ..Default::default()
    }));
    assert!(bad(MaskingConfig {
        patterns: vec![Pattern {
            name: "x".into(),
            regex: "(".into()
        }],
        ..Default::default()
    }));
    assert!(Masker::new(&MaskingConfig::default(), &[0u8; 16]).is_err());
    // Disabled detectors and disabled masking.
    let m = masker(&MaskingConfig {
        disable: vec!["email".into()],
        ..Default::default()
    });
    assert_eq!(m.text("a@example.com", "/x", &mut Vec::new()), None);
    let m = masker(&MaskingConfig {
        enabled: false,
        ..Default::default()
    });
    let mut v = json!({"password": "x"});
    m.value("params", "", &mut v, &mut Vec::new());
    assert_eq!(v, json!({"password": "x"}));
}

#[test]
fn a_large_document_is_masked_in_linear_time() {
    let m = masker(&MaskingConfig::default());
    // 1 MiB of near-misses for every detector: no backtracking blow-up (the regex crate is
    // linear), and the call returns.
    let chunk = "eyJa.eyJb. AKIA sk_live_ xoxb- 4111 1111 a@b -----BEGIN PRIVATE KEY----- ";
    let text = chunk.repeat((1 << 20) / chunk.len());
    let mut found = Vec::new();
    let out = m.text(&text, "/x", &mut found);
    assert!(out.is_some());
    let _: Value = json!(out);
}
