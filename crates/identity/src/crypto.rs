//! Signature verification for `jsonwebtoken` on `ring` (already in the build through rustls).
//!
//! Why: the pure-Rust `rsa` crate behind jsonwebtoken's `rust_crypto` provider verifies RS256 in
//! roughly 10x the time ring does, and an RS256 check sits on the path of every OIDC request. ring
//! also refuses RSA moduli under 2048 bits. Claims validation stays jsonwebtoken's; signing and
//! HMAC stay on `rust_crypto`.

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature as sig;
use std::sync::OnceLock;

enum Public {
    /// An SPKI-less public key ring parses itself: PKCS#1 RSAPublicKey, an uncompressed EC point,
    /// or 32 raw Ed25519 bytes.
    Unparsed(Vec<u8>),
    /// RSA modulus and exponent, big-endian (from a JWK).
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
}

struct RingVerifier {
    alg: Algorithm,
    params: &'static dyn sig::VerificationAlgorithm,
    rsa: Option<&'static sig::RsaParameters>,
    key: Public,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match (&self.key, self.rsa) {
            (Public::RsaComponents { n, e }, Some(params)) => {
                sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            (Public::Unparsed(bytes), _) => {
                sig::UnparsedPublicKey::new(self.params, bytes).verify(msg, signature)
            }
            (Public::RsaComponents { .. }, None) => Err(ring::error::Unspecified),
        };
        ok.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn ring_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let (family, params, rsa): (
        AlgorithmFamily,
        &'static dyn sig::VerificationAlgorithm,
        Option<&'static sig::RsaParameters>,
    ) = match alg {
        Algorithm::RS256 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PKCS1_2048_8192_SHA256,
            Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        ),
        Algorithm::RS384 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PKCS1_2048_8192_SHA384,
            Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        ),
        Algorithm::RS512 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PKCS1_2048_8192_SHA512,
            Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        ),
        Algorithm::PS256 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PSS_2048_8192_SHA256,
            Some(&sig::RSA_PSS_2048_8192_SHA256),
        ),
        Algorithm::PS384 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PSS_2048_8192_SHA384,
            Some(&sig::RSA_PSS_2048_8192_SHA384),
        ),
        Algorithm::PS512 => (
            AlgorithmFamily::Rsa,
            &sig::RSA_PSS_2048_8192_SHA512,
            Some(&sig::RSA_PSS_2048_8192_SHA512),
        ),
        Algorithm::ES256 => (AlgorithmFamily::Ec, &sig::ECDSA_P256_SHA256_FIXED, None),
        Algorithm::ES384 => (AlgorithmFamily::Ec, &sig::ECDSA_P384_SHA384_FIXED, None),
        Algorithm::EdDSA => (AlgorithmFamily::Ed, &sig::ED25519, None),
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    };
    if key.family() != family {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => Public::Unparsed(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => Public::RsaComponents {
            n: n.clone(),
            e: e.clone(),
        },
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        params,
        rsa,
        key,
    }))
}

/// Makes ring verify jsonwebtoken signatures in this process (first call wins; idempotent).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: ring_verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    let _ = provider.install_default();
}
