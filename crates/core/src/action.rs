//! What will run: an action name, a resource, an environment and parameters, and the digest that
//! binds approvals and grants to exactly that.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Longest accepted action name, in bytes.
pub const MAX_ACTION_LEN: usize = 256;
/// Longest accepted resource or environment string, in bytes.
pub const MAX_RESOURCE_LEN: usize = 2048;
/// Deepest accepted nesting of `params`, counting the `params` object itself as level 1.
///
/// An audit entry wraps `params` in 3 more levels (entry, event, spec), and every reader of the
/// log parses with serde_json's 128-level limit: 32 keeps every entry ever written readable, with
/// a wide margin (a test asserts it).
pub const MAX_PARAMS_DEPTH: usize = 32;
/// Largest integer magnitude accepted in `params`: 2^53 − 1, the largest integer every I-JSON
/// (RFC 7493) reader, and RFC 8785's number encoding, holds exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The reviewable content of an action: exactly what will run. Two specs with the same digest are
/// the same action for every purpose (approval, grant, audit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// The action name, e.g. `db.export`, `iam.grant`, `terraform.apply`.
    pub action: String,
    /// What it acts on, e.g. `postgres://prod/customers`.
    pub resource: String,
    /// Where, e.g. `production`. Empty when the caller did not say.
    pub environment: String,
    /// Arguments, always a JSON object.
    pub params: Map<String, Value>,
}

/// Why an [`ActionSpec`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The action name is empty, too long, or contains control characters or whitespace.
    #[error("`action` must be 1-{MAX_ACTION_LEN} bytes with no whitespace or control characters")]
    BadAction,
    /// The resource is empty, too long or contains control characters.
    #[error("`resource` must be 1-{MAX_RESOURCE_LEN} bytes with no control characters")]
    BadResource,
    /// The environment is too long or contains control characters.
    #[error("`environment` must be at most {MAX_RESOURCE_LEN} bytes with no control characters")]
    BadEnvironment,
    /// `params` was not a JSON object.
    #[error("`params` must be a JSON object")]
    ParamsNotObject,
    /// `params` nests objects and arrays deeper than [`MAX_PARAMS_DEPTH`].
    #[error(
        "`params` nests objects and arrays deeper than {MAX_PARAMS_DEPTH} levels; flatten them"
    )]
    ParamsTooDeep,
    /// `params` holds an integer beyond ±[`MAX_SAFE_INTEGER`] (or a non-finite number), which
    /// I-JSON readers and the digest's RFC 8785 encoding cannot hold exactly.
    #[error(
        "the number {0} is outside ±{MAX_SAFE_INTEGER} (2^53-1, the I-JSON range of RFC 7493) \
         or not finite; send it as a string"
    )]
    NumberOutOfRange(String),
}

/// Checks a JSON value against the input-size rules every front shares: nesting at most
/// `max_depth` levels (a scalar is level 0, an object or array one more than its deepest
/// member) and integers within ±[`MAX_SAFE_INTEGER`], numbers finite. Stops as soon as it is
/// over the depth, so a hostile value is never walked deeper than `max_depth + 1`.
pub fn check_json(v: &Value, max_depth: usize) -> Result<(), SpecError> {
    let inner = || max_depth.checked_sub(1).ok_or(SpecError::ParamsTooDeep);
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(n) => check_number(n),
        Value::Array(a) => {
            let inner = inner()?;
            a.iter().try_for_each(|c| check_json(c, inner))
        }
        Value::Object(m) => {
            let inner = inner()?;
            m.values().try_for_each(|c| check_json(c, inner))
        }
    }
}

/// Checks every integer written in a JSON text against ±[`MAX_SAFE_INTEGER`], on the text
/// itself: serde_json reads an integer beyond `u64` as the nearest double, so once parsed,
/// `18446744073709551617` and `18446744073709551616` are the same value and neither is seen as
/// an integer. Fronts that hold the raw text of a request call this as well as [`check_json`].
/// Strings are skipped; the text is assumed to be valid JSON (parse it first).
pub fn check_json_text(text: &[u8]) -> Result<(), SpecError> {
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while let Some(&c) = text.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while text
                    .get(i)
                    .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
                if integer {
                    let digits = token.strip_prefix(b"-").unwrap_or(token);
                    let within = digits.len() <= 16
                        && std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| d.parse::<u64>().ok())
                            .is_some_and(|n| n <= MAX_SAFE_INTEGER);
                    if !within {
                        // Named, but not echoed whole: it may be a megabyte of digits.
                        let shown = String::from_utf8_lossy(&token[..token.len().min(32)]);
                        let more = if token.len() > 32 { "…" } else { "" };
                        return Err(SpecError::NumberOutOfRange(format!("{shown}{more}")));
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn check_number(n: &serde_json::Number) -> Result<(), SpecError> {
    let ok = if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        n.as_f64().is_some_and(f64::is_finite)
    };
    if ok {
        Ok(())
    } else {
        Err(SpecError::NumberOutOfRange(n.to_string()))
    }
}

impl ActionSpec {
    /// Validates and builds a spec. `params` of `None` or `null` means `{}`.
    pub fn new(
        action: impl Into<String>,
        resource: impl Into<String>,
        environment: impl Into<String>,
        params: Option<Value>,
    ) -> Result<Self, SpecError> {
        let action = action.into();
        let resource = resource.into();
        let environment = environment.into();
        if action.is_empty()
            || action.len() > MAX_ACTION_LEN
            || action.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(SpecError::BadAction);
        }
        if resource.is_empty()
            || resource.len() > MAX_RESOURCE_LEN
            || resource.chars().any(char::is_control)
        {
            return Err(SpecError::BadResource);
        }
        if environment.len() > MAX_RESOURCE_LEN || environment.chars().any(char::is_control) {
            return Err(SpecError::BadEnvironment);
        }
        let params = match params {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                // The object itself is level 1.
                let inner = MAX_PARAMS_DEPTH - 1;
                m.values().try_for_each(|v| check_json(v, inner))?;
                m
            }
            Some(_) => return Err(SpecError::ParamsNotObject),
        };
        Ok(ActionSpec {
            action,
            resource,
            environment,
            params,
        })
    }

    /// The same action with its parameters replaced (a reviewer's modification).
    pub fn with_params(&self, params: Value) -> Result<Self, SpecError> {
        ActionSpec::new(
            self.action.clone(),
            self.resource.clone(),
            self.environment.clone(),
            Some(params),
        )
    }

    /// The canonical bytes that are hashed: the RFC 8785 (JCS) encoding of
    /// `{"action","environment","params","resource"}`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canon<'a> {
            action: &'a str,
            environment: &'a str,
            params: &'a Map<String, Value>,
            resource: &'a str,
        }
        let canon = Canon {
            action: &self.action,
            environment: &self.environment,
            params: &self.params,
            resource: &self.resource,
        };
        // Plain params (see `canonical`): write the object directly, keys in order.
        if crate::canonical::is_plain_map(&self.params) {
            let mut out = Vec::with_capacity(96 + self.resource.len());
            let written = (|| {
                out.extend_from_slice(b"{\"action\":");
                serde_json::to_writer(&mut out, &self.action)?;
                out.extend_from_slice(b",\"environment\":");
                serde_json::to_writer(&mut out, &self.environment)?;
                out.extend_from_slice(b",\"params\":");
                crate::canonical::write_plain_map(&self.params, &mut out)?;
                out.extend_from_slice(b",\"resource\":");
                serde_json::to_writer(&mut out, &self.resource)?;
                out.push(b'}');
                Ok::<(), serde_json::Error>(())
            })();
            if written.is_ok() {
                return out;
            }
        }
        // Serialising plain strings and a JSON map cannot fail; fall back to serde_json (which
        // is already canonical for everything but exotic numbers) rather than panic.
        serde_jcs::to_vec(&canon)
            .or_else(|_| serde_json::to_vec(&canon))
            .unwrap_or_default()
    }

    /// The digest that approvals and grants are bound to.
    pub fn digest(&self) -> ActionDigest {
        ActionDigest(Sha256::digest(self.canonical_bytes()).into())
    }
}

/// `sha256:<hex>` of an action's canonical encoding. Existing means well-formed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionDigest([u8; 32]);

impl ActionDigest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ActionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On every response and record: format on the stack, without allocating.
        let mut buf = [0u8; 7 + 64];
        buf[..7].copy_from_slice(b"sha256:");
        hex::encode_to_slice(self.0, &mut buf[7..]).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ActionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a digest is `sha256:` followed by 64 lowercase hex digits")]
pub struct DigestParseError;

impl FromStr for ActionDigest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").ok_or(DigestParseError)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(DigestParseError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestParseError)?;
        Ok(ActionDigest(out))
    }
}

impl Serialize for ActionDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActionDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
