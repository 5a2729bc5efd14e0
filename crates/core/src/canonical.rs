//! RFC 8785 (JCS) canonical JSON, fast for the common case.
//!
//! `serde_jcs` is exact but slow (it re-parses and re-sorts what it serialises). For a value
//! whose numbers are all integers of magnitude ≤ 2^53 and whose object keys are all ASCII, JCS is
//! simple: keys sorted (byte order equals JCS's UTF-16 order for ASCII), `serde_json`'s string
//! escaping (which is JSON.stringify's), and integers as they are. [`to_string`] writes such a
//! value directly and hands anything else to `serde_jcs`. It sorts keys itself: a `serde_json`
//! map is in insertion order when any crate in the build enables `preserve_order`. A property
//! test checks the two paths agree.

use serde_json::{Map, Value};

const MAX_SAFE: u64 = 1 << 53;

/// Whether `v` takes the fast path: integers of magnitude ≤ 2^53 only, ASCII keys only.
pub fn is_plain(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(i64::unsigned_abs))
            .is_some_and(|m| m <= MAX_SAFE),
        Value::Array(a) => a.iter().all(is_plain),
        Value::Object(m) => is_plain_map(m),
    }
}

/// Appends the RFC 8785 encoding of a plain value (see [`is_plain`]) to `out`.
pub fn write_plain(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        Value::Object(m) => write_plain_map(m, out)?,
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_plain(v, out)?;
            }
            out.push(b']');
        }
        leaf => serde_json::to_writer(&mut *out, leaf)?,
    }
    Ok(())
}

/// Whether every key of `m` is ASCII and every value plain.
pub fn is_plain_map(m: &Map<String, Value>) -> bool {
    m.iter().all(|(k, v)| k.is_ascii() && is_plain(v))
}

/// Appends the RFC 8785 encoding of a plain object (see [`is_plain_map`]) to `out`.
pub fn write_plain_map(m: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut fields: Vec<(&String, &Value)> = m.iter().collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k)?;
        out.push(b':');
        write_plain(v, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// The RFC 8785 encoding of `v`.
pub fn to_string(v: &Value) -> Result<String, serde_json::Error> {
    if is_plain(v) {
        let mut out = Vec::with_capacity(128);
        write_plain(v, &mut out)?;
        // Only UTF-8 was written: serde_json's output and ASCII punctuation.
        String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
    } else {
        serde_jcs::to_string(v)
    }
}
