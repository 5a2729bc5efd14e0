//! What masking hid from an audit entry: where, what kind of value, and a keyed commitment to it
//! (`crates/mask` computes it; the core only carries it). An auditor who is given the original
//! value and the deployment's masking key can prove it is the one that was masked; the log never
//! holds the value itself.

use serde::{Deserialize, Serialize};

/// One masked value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedValue {
    /// Where it was: an RFC 6901 JSON pointer into the entry's event (`/spec/params/db/url`,
    /// `/justification`).
    pub path: String,
    /// What the detector or rule took it for (`email`, `aws-access-key`, `field`...).
    pub kind: String,
    /// The tag that replaced it in the text (`[email:3f9a]`).
    pub tag: String,
    /// HMAC-SHA256 of the value's UTF-8 bytes under the deployment's masking key, lowercase hex.
    pub commitment: String,
}
