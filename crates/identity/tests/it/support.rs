//! An OIDC issuer for tests: discovery and JWKS over loopback HTTP, keys generated here.

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The time the verifier is told it is: the same wall clock the tokens were made with.
pub fn at() -> countersign_core::Timestamp {
    countersign_core::Timestamp(now() * 1000)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub der: Vec<u8>,
    pub jwk: Value,
    /// For RSA: the public key as PEM text (the HMAC key-confusion attack uses it as a secret).
    pub public_pem: Vec<u8>,
    /// The private key as PKCS#8 PEM (for PyJWT).
    pub private_pem: String,
}

/// PKCS#1 private DER, public JWK, public PEM, private PKCS#8 PEM.
type RsaPair = (Vec<u8>, Value, Vec<u8>, String);

fn rsa_pair() -> RsaPair {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = key.to_pkcs1_der().unwrap().as_bytes().to_vec();
    let public = key.to_public_key();
    let pem = public
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
        .into_bytes();
    let jwk = json!({"kty": "RSA", "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())});
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    (der, jwk, pem, private)
}

/// RSA keys are slow to make: two per test binary, shared.
pub fn rsa_key(n: usize, kid: &str) -> TestKey {
    static KEYS: OnceLock<Vec<RsaPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| vec![rsa_pair(), rsa_pair()]);
    let (der, jwk, pem, private_pem) = keys[n].clone();
    let mut jwk = jwk;
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        der,
        jwk,
        public_pem: pem,
        private_pem,
    }
}

pub fn ec_key(kid: &str) -> TestKey {
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())});
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        der: secret.to_pkcs8_der().unwrap().as_bytes().to_vec(),
        jwk,
        public_pem: Vec::new(),
        private_pem: secret
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string(),
    }
}

/// PKCS#8 v1 (RFC 8410, no public key inside): dalek writes v2, which some parsers refuse.
fn ed_pkcs8_v1_pem(seed: &[u8; 32]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    )
}

pub fn ed_key(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
        "x": b64(key.verifying_key().as_bytes())});
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        der: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
        jwk,
        public_pem: Vec::new(),
        private_pem: ed_pkcs8_v1_pem(&key.to_bytes()),
    }
}

impl TestKey {
    pub fn encoding(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_der(&self.der),
            Algorithm::ES256 => EncodingKey::from_ec_der(&self.der),
            _ => EncodingKey::from_ed_der(&self.der),
        }
    }

    /// A token with this key's alg and kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
    }

    /// A token with a custom header.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
    }
}

/// A running issuer whose JWKS the test may change.
pub struct TestIssuer {
    pub url: String,
    pub jwks: Arc<Mutex<Vec<Value>>>,
    pub hits: Arc<AtomicU64>,
    _server: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    pub async fn start(keys: &[&TestKey]) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks: Arc<Mutex<Vec<Value>>> =
            Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()));
        let hits = Arc::new(AtomicU64::new(0));
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let (j, h) = (jwks.clone(), hits.clone());
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route(
                "/jwks",
                get(move || async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let keys = j.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIssuer {
            url,
            jwks,
            hits,
            _server: server,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Standard claims for a person, valid for an hour.
    pub fn claims(&self, sub: &str) -> Value {
        json!({"iss": self.url, "aud": "countersign", "sub": sub, "exp": now() + 3600,
               "iat": now(), "email": format!("{sub}@example.com")})
    }

    /// A config TOML for this issuer, with `extra` lines appended.
    pub fn config(&self, extra: &str) -> countersign_identity::OidcIssuerConfig {
        let text = format!(
            "issuer = \"{}\"\naudience = \"countersign\"\njwks_min_refresh = \"200ms\"\n{extra}",
            self.url
        );
        toml::from_str(&text).unwrap()
    }
}
