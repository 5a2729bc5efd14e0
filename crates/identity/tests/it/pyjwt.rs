//! Interop: tokens minted by PyJWT (an independent implementation, from PyPI) against our
//! verifier, for RS256, ES256 and EdDSA, plus the attacks PyJWT will produce (alg none, expired,
//! wrong audience). scripts/test installs PyJWT into target/pyenv (tests/requirements.txt).

use countersign_identity::OidcVerifier;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

fn python() -> PathBuf {
    let path = std::env::var_os("COUNTERSIGN_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs tests/requirements.txt into target/pyenv",
        path.display()
    );
    path
}

fn mint(alg: &str, key: Option<&TestKey>, kid: Option<&str>, claims: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = match key {
        Some(k) => {
            let p = dir.path().join("key.pem");
            std::fs::write(&p, &k.private_pem).unwrap();
            p.to_str().unwrap().to_string()
        }
        None => "-".into(),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mint_pyjwt.py");
    let out = Command::new(python())
        .args([
            script,
            alg,
            &keyfile,
            kid.unwrap_or("-"),
            &claims.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn tokens_minted_by_pyjwt_verify_and_its_attacks_are_refused() {
    let (rsa, ec, ed) = (rsa_key(0, "r1"), ec_key("e1"), ed_key("d1"));
    let idp = TestIssuer::start(&[&rsa, &ec, &ed]).await;
    let v = OidcVerifier::new(vec![idp.config("groups_claim = \"groups\"")]).unwrap();
    let mut claims = idp.claims("alice");
    claims["groups"] = json!(["sre"]);
    for (alg, key) in [("RS256", &rsa), ("ES256", &ec), ("EdDSA", &ed)] {
        let token = mint(alg, Some(key), Some(&key.kid), &claims);
        let who = v
            .verify(&token, at())
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(who.id, "alice");
        assert!(who.groups.contains("sre"));

        let mut expired = claims.clone();
        expired["exp"] = json!(now() - 3600);
        let token = mint(alg, Some(key), Some(&key.kid), &expired);
        assert_eq!(
            v.verify(&token, at()).await.unwrap_err().code(),
            "token_expired"
        );

        let mut other = claims.clone();
        other["aud"] = json!("another-api");
        let token = mint(alg, Some(key), Some(&key.kid), &other);
        assert_eq!(
            v.verify(&token, at()).await.unwrap_err().code(),
            "token_audience_invalid"
        );
    }
    let unsigned = mint("none", None, Some("r1"), &claims);
    assert_eq!(
        v.verify(&unsigned, at()).await.unwrap_err().code(),
        "token_alg_none"
    );
    // PyJWT with the right key but a kid the issuer never published.
    let token = mint("RS256", Some(&rsa), Some("elsewhere"), &claims);
    assert_eq!(
        v.verify(&token, at()).await.unwrap_err().code(),
        "token_key_unknown"
    );
}
