//! OIDC verification against a real issuer on loopback: every attack refused with its code,
//! key rotation, the refresh rate limit, and claim mapping for Okta/Entra/Keycloak/GitHub.

use countersign_core::IdentityKind;
use countersign_identity::{AuthError, OidcVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::*;

fn verifier(cfg: countersign_identity::OidcIssuerConfig) -> OidcVerifier {
    OidcVerifier::new(vec![cfg]).unwrap()
}

fn code(r: Result<countersign_core::Identity, AuthError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm_authenticate() {
    let (rsa, ec, ed) = (rsa_key(0, "r1"), ec_key("e1"), ed_key("d1"));
    let idp = TestIssuer::start(&[&rsa, &ec, &ed]).await;
    let v =
        verifier(idp.config(
            "id_claim = \"email\"\ngroups_claim = \"realm_access.roles\"\nclaims = [\"azp\"]",
        ));
    for key in [&rsa, &ec, &ed] {
        let mut claims = idp.claims("alice");
        claims["realm_access"] = json!({"roles": ["sre", "dba"]});
        claims["azp"] = json!("console");
        let who = v.verify(&key.sign(&claims), at()).await.unwrap();
        assert_eq!(who.id, "alice@example.com");
        assert_eq!(who.kind, IdentityKind::Human);
        assert_eq!(who.groups.iter().collect::<Vec<_>>(), ["dba", "sre"]);
        assert_eq!(who.issuer.as_deref(), Some(idp.url.as_str()));
        assert_eq!(who.source, Some(format!("oidc:{}#alice", idp.url)));
        assert_eq!(who.claims.get("azp").map(String::as_str), Some("console"));
    }
    assert_eq!(idp.hits(), 1, "one fetch serves every known kid");
}

#[tokio::test]
async fn every_attack_is_refused_with_its_code() {
    let (rsa, rsa2) = (rsa_key(0, "r1"), rsa_key(1, "r2"));
    let ec = ec_key("e1");
    let idp = TestIssuer::start(&[&rsa, &rsa2, &ec]).await;
    let v = verifier(idp.config(""));
    let good = idp.claims("alice");
    assert_eq!(code(v.verify(&rsa.sign(&good), at()).await), "ok");

    // alg none: header and claims, empty signature.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"r1"}"#),
        b64(good.to_string().as_bytes())
    );
    assert_eq!(code(v.verify(&none, at()).await), "token_alg_none");
    let none_upper = format!(
        "{}.{}.",
        b64(br#"{"alg":"NONE"}"#),
        b64(good.to_string().as_bytes())
    );
    assert_eq!(code(v.verify(&none_upper, at()).await), "token_alg_none");

    // Key confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("r1".into());
    let hmac = jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&rsa.public_pem)).unwrap();
    assert_eq!(code(v.verify(&hmac, at()).await), "token_alg_hmac");

    // An RSA kid with an EC algorithm, and an EC kid with RS256.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("r1".into());
    assert_eq!(
        code(v.verify(&ec.sign_with(h, &good), at()).await),
        "token_alg_mismatch"
    );
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("e1".into());
    assert_eq!(
        code(v.verify(&rsa.sign_with(h, &good), at()).await),
        "token_alg_mismatch"
    );

    // Wrong issuer and wrong or missing audience.
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_issuer_unknown"
    );
    let mut c = good.clone();
    c["iss"] = json!(format!("{}/", idp.url));
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_issuer_unknown"
    );
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_issuer_unknown"
    );
    let mut c = good.clone();
    c["aud"] = json!("someone-else");
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_audience_invalid"
    );
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_audience_invalid"
    );

    // Time: 60 s of skew either way, no more.
    let mut c = good.clone();
    c["exp"] = json!(now() - 120);
    assert_eq!(code(v.verify(&rsa.sign(&c), at()).await), "token_expired");
    c["exp"] = json!(now() - 30);
    assert_eq!(code(v.verify(&rsa.sign(&c), at()).await), "ok");
    let mut c = good.clone();
    c["nbf"] = json!(now() + 120);
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "token_not_yet_valid"
    );
    c["nbf"] = json!(now() + 30);
    assert_eq!(code(v.verify(&rsa.sign(&c), at()).await), "ok");
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(code(v.verify(&rsa.sign(&c), at()).await), "token_malformed");

    // No kid while the JWKS has several keys.
    let nokid = rsa.sign_with(Header::new(Algorithm::RS256), &good);
    assert_eq!(code(v.verify(&nokid, at()).await), "token_kid_missing");

    // A signature by another key under this key's kid; a tampered payload.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("r1".into());
    assert_eq!(
        code(v.verify(&rsa2.sign_with(h, &good), at()).await),
        "token_signature_invalid"
    );
    let token = rsa.sign(&good);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut c = good.clone();
    c["sub"] = json!("mallory");
    let forged = b64(c.to_string().as_bytes());
    parts[1] = &forged;
    assert_eq!(
        code(v.verify(&parts.join("."), at()).await),
        "token_signature_invalid"
    );

    // Malformed in every way we could think of.
    for bad in [
        "a.b",
        "a.b.c.d",
        "!!!.e30.x",
        &format!("{}.e30.x", b64(b"not json")),
        &format!("{}.!!!.x", b64(br#"{"alg":"RS256","kid":"r1"}"#)),
        &format!(
            "{}.{}.x",
            b64(br#"{"kid":"r1"}"#),
            b64(good.to_string().as_bytes())
        ),
    ] {
        assert_eq!(code(v.verify(bad, at()).await), "token_malformed", "{bad}");
    }
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("r1".into());
    let mut c = good.clone();
    c["pad"] = json!("x".repeat(17 * 1024));
    assert_eq!(
        code(v.verify(&rsa.sign_with(h, &c), at()).await),
        "token_too_large"
    );
    let unsupported = format!("{}.{}.x", b64(br#"{"alg":"XS999"}"#), b64(b"{}"));
    assert_eq!(
        code(v.verify(&unsupported, at()).await),
        "token_alg_unsupported"
    );
}

#[tokio::test]
async fn a_single_key_needs_no_kid() {
    let rsa = rsa_key(0, "only");
    let idp = TestIssuer::start(&[&rsa]).await;
    let v = verifier(idp.config(""));
    let nokid = rsa.sign_with(Header::new(Algorithm::RS256), &idp.claims("alice"));
    assert_eq!(code(v.verify(&nokid, at()).await), "ok");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_once() {
    let rsa = rsa_key(0, "r1");
    let idp = TestIssuer::start(&[&rsa]).await;
    let mut cfg = idp.config("");
    cfg.jwks_min_refresh = Some("1h".into());
    let v = verifier(cfg);
    assert_eq!(
        code(v.verify(&rsa.sign(&idp.claims("a")), at()).await),
        "ok"
    );
    for i in 0..200 {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(format!("bogus-{i}"));
        let t = rsa.sign_with(h, &idp.claims("a"));
        assert_eq!(code(v.verify(&t, at()).await), "token_key_unknown");
    }
    assert!(idp.hits() <= 2, "{} JWKS fetches", idp.hits());
    for _ in 0..100 {
        assert_eq!(
            code(v.verify(&rsa.sign(&idp.claims("a")), at()).await),
            "ok"
        );
    }
    assert!(idp.hits() <= 2, "a known kid never fetches");
}

#[tokio::test]
async fn key_rotation_new_key_after_one_refresh_old_key_until_removed() {
    let (old, new) = (rsa_key(0, "2026-old"), rsa_key(1, "2026-new"));
    let idp = TestIssuer::start(&[&old]).await;
    let v = verifier(idp.config(""));
    assert_eq!(
        code(v.verify(&old.sign(&idp.claims("a")), at()).await),
        "ok"
    );
    assert_eq!(idp.hits(), 1);

    // The issuer publishes the new key next to the old one and starts signing with it.
    idp.set_keys(&[&old, &new]);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(
        code(v.verify(&new.sign(&idp.claims("a")), at()).await),
        "ok"
    );
    assert_eq!(idp.hits(), 2, "one refresh");
    assert_eq!(
        code(v.verify(&old.sign(&idp.claims("a")), at()).await),
        "ok"
    );

    // The old key leaves the JWKS: gone at the next refresh.
    idp.set_keys(&[&new]);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("2026-next".into());
    let unknown = new.sign_with(h, &idp.claims("a"));
    assert_eq!(code(v.verify(&unknown, at()).await), "token_key_unknown");
    assert_eq!(
        code(v.verify(&old.sign(&idp.claims("a")), at()).await),
        "token_key_unknown"
    );
    assert_eq!(
        code(v.verify(&new.sign(&idp.claims("a")), at()).await),
        "ok"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_not_unauthenticated() {
    let rsa = rsa_key(0, "r1");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let cfg = toml::from_str(&format!("issuer = \"{url}\"\naudience = \"countersign\"")).unwrap();
    let v = verifier(cfg);
    let mut c = json!({"aud": "countersign", "sub": "a", "exp": now() + 60});
    c["iss"] = json!(url);
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at()).await),
        "identity_provider_unavailable"
    );
}

#[tokio::test]
async fn github_actions_tokens_map_to_services_by_rule() {
    let key = ec_key("gh");
    let idp = TestIssuer::start(&[&key]).await;
    let v = verifier(idp.config(
        r#"kind = "service"
require_rule = true
claims = ["repository", "ref", "environment", "workflow"]
[[rules]]
match = { repository = "acme/app", ref = "refs/heads/main", environment = "prod" }
id = "ci:acme/app"
groups = ["deployers"]
[[rules]]
match = { repository = "acme/*" }
id = "ci:acme"
kind = "agent"
"#,
    ));
    let gh = |repo: &str, r#ref: &str, env: &str| {
        let mut c = idp.claims(&format!("repo:{repo}:environment:{env}"));
        c["repository"] = json!(repo);
        c["ref"] = json!(r#ref);
        c["environment"] = json!(env);
        c["workflow"] = json!("deploy");
        c
    };
    let who = v
        .verify(&key.sign(&gh("acme/app", "refs/heads/main", "prod")), at())
        .await
        .unwrap();
    assert_eq!(who.id, "ci:acme/app");
    assert_eq!(who.kind, IdentityKind::Service);
    assert!(who.groups.contains("deployers"));
    assert_eq!(
        who.claims.get("workflow").map(String::as_str),
        Some("deploy")
    );
    assert_eq!(
        who.claims.get("environment").map(String::as_str),
        Some("prod")
    );
    let who = v
        .verify(
            &key.sign(&gh("acme/app", "refs/heads/feature", "prod")),
            at(),
        )
        .await
        .unwrap();
    assert_eq!(
        (who.id.as_str(), who.kind),
        ("ci:acme", IdentityKind::Agent)
    );
    let stranger = key.sign(&gh("evil/app", "refs/heads/main", "prod"));
    assert_eq!(
        code(v.verify(&stranger, at()).await),
        "token_no_matching_rule"
    );
}

#[tokio::test]
async fn entra_groups_are_mapped_and_overage_leaves_only_roles() {
    let key = rsa_key(0, "entra");
    let idp = TestIssuer::start(&[&key]).await;
    let v = verifier(idp.config(
        r#"id_claim = "preferred_username"
groups_claim = ["groups", "roles"]
[group_names]
"0c9e6a54-0000-4000-8000-000000000001" = "sre"
"Approver" = "approvers"
"#,
    ));
    let mut c = idp.claims("oid-1");
    c["preferred_username"] = json!("alice@contoso.com");
    c["groups"] = json!(["0c9e6a54-0000-4000-8000-000000000001", "ffffffff-unmapped"]);
    c["roles"] = json!(["Approver"]);
    let who = v.verify(&key.sign(&c), at()).await.unwrap();
    assert_eq!(who.groups.iter().collect::<Vec<_>>(), ["approvers", "sre"]);

    c["_claim_names"] = json!({"groups": "src1"});
    c["_claim_sources"] = json!({"src1": {"endpoint": "https://graph.microsoft.com/..."}});
    let who = v.verify(&key.sign(&c), at()).await.unwrap();
    assert_eq!(who.groups.iter().collect::<Vec<_>>(), ["approvers"]);
}

#[tokio::test]
async fn okta_groups_and_missing_id_claims() {
    let key = ed_key("okta");
    let idp = TestIssuer::start(&[&key]).await;
    let v = verifier(idp.config("id_claim = \"email\"\ngroups_claim = \"groups\""));
    let mut c = idp.claims("00u1");
    c["groups"] = json!(["Everyone", "sre"]);
    let who = v.verify(&key.sign(&c), at()).await.unwrap();
    assert_eq!(who.id, "00u1@example.com");
    assert!(who.groups.contains("sre"));
    c.as_object_mut().unwrap().remove("email");
    assert_eq!(
        code(v.verify(&key.sign(&c), at()).await),
        "token_claim_missing"
    );
}

#[test]
fn configuration_mistakes_are_refused() {
    for (text, want) in [
        ("issuer = \"https://x\"\naudience = []", "`audience` is required"),
        ("issuer = \"ftp://x\"\naudience = \"a\"", "https://"),
        (
            "issuer = \"https://x\"\naudience = \"a\"\nrequire_rule = true",
            "needs at least one",
        ),
        (
            "issuer = \"https://x\"\naudience = \"a\"\n[[rules]]\nmatch = { a = \"b\" }\nkind = \"human\"",
            "never `human`",
        ),
    ] {
        let cfg: countersign_identity::OidcIssuerConfig = toml::from_str(text).unwrap();
        let err = OidcVerifier::new(vec![cfg]).err().unwrap();
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn rsa_keys_under_2048_bits_are_refused() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let public = small.to_public_key();
    let key = TestKey {
        kid: "weak".into(),
        alg: Algorithm::RS256,
        der: small.to_pkcs1_der().unwrap().as_bytes().to_vec(),
        jwk: json!({"kty": "RSA", "kid": "weak", "n": b64(&public.n().to_bytes_be()),
                    "e": b64(&public.e().to_bytes_be())}),
        public_pem: Vec::new(),
        private_pem: String::new(),
    };
    let idp = TestIssuer::start(&[&key]).await;
    let v = verifier(idp.config(""));
    assert_eq!(
        code(v.verify(&key.sign(&idp.claims("a")), at()).await),
        "token_signature_invalid"
    );
}

/// `exp`, `nbf` and `iat` are judged at the `now` the caller passes, not by the system clock: a
/// test clock moves a token in and out of its validity without sleeping.
#[tokio::test]
async fn token_times_are_judged_at_the_time_passed_in() {
    let rsa = rsa_key(0, "r1");
    let idp = TestIssuer::start(&[&rsa]).await;
    let v = verifier(idp.config(""));
    let t0: i64 = 1_700_000_000;
    let at = |s: i64| countersign_core::Timestamp(s * 1000);
    let mut c = idp.claims("alice");
    c["exp"] = json!(t0 + 300);
    c["nbf"] = json!(t0);
    c["iat"] = json!(t0);
    let token = rsa.sign(&c);
    // Long expired by the wall clock, yet valid at t0.
    assert_eq!(code(v.verify(&token, at(t0)).await), "ok");
    assert_eq!(code(v.verify(&token, at(t0 + 300 + 60)).await), "ok");
    assert_eq!(
        code(v.verify(&token, at(t0 + 300 + 61)).await),
        "token_expired"
    );
    assert_eq!(code(v.verify(&token, at(t0 - 60)).await), "ok");
    assert_eq!(
        code(v.verify(&token, at(t0 - 61)).await),
        "token_not_yet_valid"
    );
    // Issued in the future (beyond the skew), even without `nbf`.
    c.as_object_mut().unwrap().remove("nbf");
    c["iat"] = json!(t0 + 120);
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at(t0)).await),
        "token_not_yet_valid"
    );
    // A non-numeric `iat` is ignored, as it always was; a non-numeric `exp` is malformed.
    c["iat"] = json!("yesterday");
    assert_eq!(code(v.verify(&rsa.sign(&c), at(t0)).await), "ok");
    c["exp"] = json!("tomorrow");
    assert_eq!(
        code(v.verify(&rsa.sign(&c), at(t0)).await),
        "token_malformed"
    );
}
