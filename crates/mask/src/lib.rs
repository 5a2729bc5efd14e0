//! Masking of secrets and personal data before anything a person or another system reads (issue
//! #17): API views for reviewers, the CLI, chat, the console, webhooks, logs, exports and the
//! evidence report all see what [`Masker`] leaves. The executed action is the one exception: the
//! grant's redemption returns the real values, and the digest covers the real values.
//!
//! A masked value keeps the document's shape (objects keep their keys, arrays their lengths, a
//! string stays a string) and becomes a short stable tag, `[email:3f9a]`: the kind, and the first
//! four hex digits of an HMAC-SHA256 of the value under the deployment's masking key, so a
//! reviewer can tell two values apart without seeing them and nobody without the key can test a
//! guess against the tag. Each masked value is reported as a [`MaskedValue`] with the full HMAC
//! (its commitment), which the audit log records in place of the value.
//!
//! What is masked, in order:
//! 1. field-path rules (`params.customer.ssn`, `*` for any key or index): every scalar at or under
//!    the path;
//! 2. strings under keys named like a password (`password`, `db_passwd`, `client_secret`,
//!    `private_key`...): always; under keys named like a token or key (`token`, `api_key`,
//!    `authorization`, `cookie`...): when high-entropy;
//! 3. the built-in detectors ([`detect::BUILTINS`], run together as one `RegexSet`) and the
//!    configured patterns, in any string.
//!
//! Values on the allow-list are never masked; tags are never masked again (masking is idempotent).
//!
//! Pure: no I/O, no clock, no randomness (the key is given).

mod detect;

use countersign_core::MaskedValue;
use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet};

/// A configuration the masker refuses.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// `disable` names no built-in detector.
    #[error("unknown detector `{name}` in `disable`; built-in detectors: {known}")]
    UnknownDetector {
        /// The name.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A pattern's name is not a tag kind.
    #[error("pattern name `{0}` must be 1 to 32 of a-z, 0-9 and `-`")]
    BadName(String),
    /// A pattern's expression does not compile.
    #[error("pattern `{name}`: {message}")]
    BadPattern {
        /// The pattern's name.
        name: String,
        /// What the regex crate said.
        message: String,
    },
    /// A field rule is not a dotted path.
    #[error("field rule `{0}` must be a dotted path such as `params.customer.ssn` (`*` matches any key or index)")]
    BadField(String),
    /// The key is too short to be a key.
    #[error("the masking key must be at least 32 bytes")]
    ShortKey,
}

/// `[masking]` in the gateway's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// On by default; `false` turns masking off (views and the audit log then hold real values).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Built-in detectors not to use, by name (`phone`, `email`...).
    #[serde(default)]
    pub disable: Vec<String>,
    /// Field-path rules: everything at or under each path is masked (`params.customer.ssn`).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Values never masked (exact match), e.g. a shared team address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// More detectors.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
}

fn yes() -> bool {
    true
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            enabled: true,
            disable: Vec::new(),
            fields: Vec::new(),
            allow: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// A configured detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The kind in its tags (`employee-id`).
    pub name: String,
    /// A `regex` crate expression; the whole match is masked, or its first group if it has one.
    pub regex: String,
}

struct Detector {
    kind: String,
    regex: Regex,
    group: usize,
    check: detect::Check,
}

/// One segment of a field rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Any,
    Name(String),
}

/// How a key's name makes its string values secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    Plain,
    /// Always masked.
    Password,
    /// Masked when high-entropy.
    Token,
}

/// The masker: compiled once at start, shared by every sink.
pub struct Masker {
    enabled: bool,
    detectors: Vec<Detector>,
    set: RegexSet,
    tag: Regex,
    fields: Vec<Vec<Seg>>,
    allow: HashSet<String>,
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("enabled", &self.enabled)
            .field("detectors", &self.detectors.len())
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// The shape of a tag: `[kind:hhhh]`.
const TAG: &str = r"\[[a-z0-9-]{1,32}:[0-9a-f]{4}\]";

fn valid_kind(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn regex_error(name: &str, e: impl std::fmt::Display) -> MaskError {
    MaskError::BadPattern {
        name: name.to_string(),
        message: e.to_string(),
    }
}

impl Masker {
    /// Compiles `config` with the deployment's masking `key` (at least 32 bytes).
    pub fn new(config: &MaskingConfig, key: &[u8]) -> Result<Self, MaskError> {
        if key.len() < 32 {
            return Err(MaskError::ShortKey);
        }
        let known: Vec<&str> = detect::BUILTINS.iter().map(|b| b.name).collect();
        for name in &config.disable {
            if !known.contains(&name.as_str()) {
                return Err(MaskError::UnknownDetector {
                    name: name.clone(),
                    known: known.join(", "),
                });
            }
        }
        let mut detectors = Vec::new();
        for b in detect::BUILTINS {
            if config.disable.iter().any(|d| d == b.name) {
                continue;
            }
            detectors.push(Detector {
                kind: b.name.to_string(),
                regex: Regex::new(b.pattern).map_err(|e| regex_error(b.name, e))?,
                group: b.group,
                check: b.check,
            });
        }
        for p in &config.patterns {
            if !valid_kind(&p.name) {
                return Err(MaskError::BadName(p.name.clone()));
            }
            let regex = regex::RegexBuilder::new(&p.regex)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| regex_error(&p.name, e))?;
            let group = usize::from(regex.captures_len() > 1);
            detectors.push(Detector {
                kind: p.name.clone(),
                regex,
                group,
                check: detect::Check::Any,
            });
        }
        // One automaton for every detector; its lazy DFA gets room enough not to thrash (the
        // bounded repetitions of cards, IBANs and key headers make many states).
        let set = regex::RegexSetBuilder::new(detectors.iter().map(|d| d.regex.as_str()))
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(|e| regex_error("(all detectors)", e))?;
        let mut fields = Vec::new();
        for rule in &config.fields {
            let segs: Vec<Seg> = rule
                .split('.')
                .map(|s| match s {
                    "*" => Seg::Any,
                    s => Seg::Name(s.to_string()),
                })
                .collect();
            if segs
                .iter()
                .any(|s| matches!(s, Seg::Name(n) if n.is_empty()))
                || segs.len() < 2
            {
                return Err(MaskError::BadField(rule.clone()));
            }
            fields.push(segs);
        }
        let key = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| MaskError::ShortKey)?;
        Ok(Masker {
            enabled: config.enabled,
            detectors,
            set,
            tag: Regex::new(TAG).map_err(|e| regex_error("tag", e))?,
            fields,
            allow: config.allow.iter().cloned().collect(),
            key,
        })
    }

    /// Whether masking is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The names of the built-in detectors.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        detect::BUILTINS.iter().map(|b| b.name)
    }

    /// HMAC-SHA256 of `value` under the masking key, lowercase hex: the commitment an auditor
    /// checks a claimed original against.
    pub fn commitment(&self, value: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        hex
    }

    /// Whether `value` is the original of a masked value with this `commitment`.
    pub fn matches(&self, value: &str, commitment: &str) -> bool {
        let mut mac = self.key.clone();
        mac.update(value.as_bytes());
        let Some(bytes) = decode_hex(commitment) else {
            return false;
        };
        mac.verify_slice(&bytes).is_ok()
    }

    fn tag_for(&self, kind: &str, value: &str, path: &str, found: &mut Vec<MaskedValue>) -> String {
        let commitment = self.commitment(value);
        let tag = format!("[{kind}:{}]", &commitment[..4]);
        found.push(MaskedValue {
            path: path.to_string(),
            kind: kind.to_string(),
            tag: tag.clone(),
            commitment,
        });
        tag
    }

    fn is_tag(&self, s: &str) -> bool {
        self.tag
            .find(s)
            .is_some_and(|m| m.start() == 0 && m.end() == s.len())
    }

    /// Masks what the detectors find in free text at `path` (a JSON pointer for the report).
    /// `None` when nothing was masked.
    pub fn text(&self, s: &str, path: &str, found: &mut Vec<MaskedValue>) -> Option<String> {
        if !self.enabled {
            return None;
        }
        // One pass says which detectors match at all (most strings: none).
        let hits = self.set.matches(s);
        if !hits.matched_any() {
            return None;
        }
        let tags: Vec<(usize, usize)> = if s.contains('[') {
            self.tag
                .find_iter(s)
                .map(|m| (m.start(), m.end()))
                .collect()
        } else {
            Vec::new()
        };
        let inside_tag = |start: usize, end: usize| {
            let i = tags.partition_point(|&(_, e)| e <= start);
            tags.get(i).is_some_and(|&(ts, _)| ts < end)
        };
        // Accepted spans by start; a candidate overlapping one accepted earlier (a detector of
        // higher priority) is dropped.
        let mut taken: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for i in hits.iter() {
            let Some(d) = self.detectors.get(i) else {
                continue;
            };
            let mut consider = |start: usize, end: usize| {
                let part = &s[start..end];
                if start == end
                    || !d.check.passes(part)
                    || inside_tag(start, end)
                    || self.allow.contains(part)
                {
                    return;
                }
                let before = taken.range(..end).next_back();
                if before.is_some_and(|(_, &(e, _))| e > start) {
                    return;
                }
                taken.insert(start, (end, i));
            };
            if d.group == 0 {
                for m in d.regex.find_iter(s) {
                    consider(m.start(), m.end());
                }
            } else {
                for c in d.regex.captures_iter(s) {
                    if let Some(m) = c.get(d.group) {
                        consider(m.start(), m.end());
                    }
                }
            }
        }
        if taken.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for (start, (end, i)) in taken {
            let kind = self.detectors.get(i).map_or("secret", |d| d.kind.as_str());
            out.push_str(&s[at..start]);
            out.push_str(&self.tag_for(kind, &s[start..end], path, found));
            at = end;
        }
        out.push_str(&s[at..]);
        Some(out)
    }

    /// Masks a JSON object in place: `rule_root` is its name in field rules (`params`),
    /// `pointer` its JSON pointer in the report (`/spec/params`).
    pub fn object(
        &self,
        rule_root: &str,
        pointer: &str,
        map: &mut Map<String, Value>,
        found: &mut Vec<MaskedValue>,
    ) {
        if !self.enabled {
            return;
        }
        let mut segs = vec![rule_root.to_string()];
        for (k, v) in map.iter_mut() {
            segs.push(k.clone());
            let ptr = format!("{pointer}/{}", escape(k));
            self.walk(v, &mut segs, &ptr, key_class(k), found);
            segs.pop();
        }
    }

    /// Undoes masking where an edit of a masked object left it as shown: `edited` was written
    /// on the masked form of `real` (what [`Masker::object`] with `rule_root` shows), and
    /// every part of it still exactly as shown, at the same place, becomes the real value
    /// there. Compared from the root down, so an unchanged subtree is restored whole; a string
    /// edited around a tag, or a tag moved elsewhere, stays as written (a real value never
    /// goes where it was not shown). A reviewer's "approve with changes" is written this way:
    /// the values the reviewer did not touch must reach the executor real, not as tags.
    pub fn restore_shown(&self, rule_root: &str, real: &Map<String, Value>, edited: &mut Value) {
        if !self.enabled {
            return;
        }
        let mut shown = real.clone();
        self.object(rule_root, "", &mut shown, &mut Vec::new());
        if let Value::Object(e) = edited {
            restore_children(&shown, real, e);
        }
    }

    /// Masks any JSON value in place (rules rooted at `rule_root`).
    pub fn value(
        &self,
        rule_root: &str,
        pointer: &str,
        v: &mut Value,
        found: &mut Vec<MaskedValue>,
    ) {
        if !self.enabled {
            return;
        }
        let mut segs = vec![rule_root.to_string()];
        self.walk(v, &mut segs, pointer, KeyClass::Plain, found);
    }

    fn field_rule_covers(&self, segs: &[String]) -> bool {
        self.fields.iter().any(|rule| {
            rule.len() <= segs.len()
                && rule.iter().zip(segs).all(|(r, s)| match r {
                    Seg::Any => true,
                    Seg::Name(n) => n == s,
                })
        })
    }

    fn walk(
        &self,
        v: &mut Value,
        segs: &mut Vec<String>,
        ptr: &str,
        class: KeyClass,
        found: &mut Vec<MaskedValue>,
    ) {
        if self.field_rule_covers(segs) {
            self.whole(v, "field", ptr, found);
            return;
        }
        match v {
            Value::String(s) => {
                let secret = match class {
                    KeyClass::Plain => None,
                    KeyClass::Password => Some("password"),
                    // What an earlier pass left (tags) is not a random-looking secret.
                    KeyClass::Token if high_entropy(s) && !self.tag.is_match(s) => Some("token"),
                    KeyClass::Token => None,
                };
                if let Some(kind) = secret {
                    if !s.is_empty() && !self.is_tag(s) && !self.allow.contains(s.as_str()) {
                        *s = self.tag_for(kind, s, ptr, found);
                        return;
                    }
                }
                if let Some(masked) = self.text(s, ptr, found) {
                    *s = masked;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    segs.push(i.to_string());
                    self.walk(item, segs, &format!("{ptr}/{i}"), class, found);
                    segs.pop();
                }
            }
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    segs.push(k.clone());
                    let child_ptr = format!("{ptr}/{}", escape(k));
                    self.walk(child, segs, &child_ptr, key_class(k), found);
                    segs.pop();
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Masks every scalar at or under `v` (a field rule): strings and numbers become tags,
    /// booleans and null stay (they say nothing a reviewer could not guess).
    fn whole(&self, v: &mut Value, kind: &str, ptr: &str, found: &mut Vec<MaskedValue>) {
        match v {
            Value::String(s) => {
                if !s.is_empty() && !self.is_tag(s) && !self.allow.contains(s.as_str()) {
                    *s = self.tag_for(kind, s, ptr, found);
                }
            }
            Value::Number(n) => {
                let text = n.to_string();
                *v = Value::String(self.tag_for(kind, &text, ptr, found));
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.whole(item, kind, &format!("{ptr}/{i}"), found);
                }
            }
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    let child_ptr = format!("{ptr}/{}", escape(k));
                    self.whole(child, kind, &child_ptr, found);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

/// RFC 6901 escaping of one reference token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// What a key's name says about its string values.
fn key_class(key: &str) -> KeyClass {
    let n: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const PASSWORD_ENDS: [&str; 6] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "privatekey",
        "pwd",
    ];
    const TOKEN_ENDS: [&str; 12] = [
        "token",
        "apikey",
        "accesskey",
        "secretkey",
        "credential",
        "credentials",
        "authorization",
        "auth",
        "cookie",
        "sessionid",
        "signature",
        "privatekeyid",
    ];
    if n.contains("password") || PASSWORD_ENDS.iter().any(|w| n.ends_with(w)) {
        KeyClass::Password
    } else if TOKEN_ENDS.iter().any(|w| n.ends_with(w)) {
        KeyClass::Token
    } else {
        KeyClass::Plain
    }
}

/// At least 12 characters after an auth scheme (`Bearer `, `Basic `, `token `) and at least 3 bits
/// of Shannon entropy per character: random-looking, not a word or a number.
fn high_entropy(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rest = ["bearer ", "basic ", "token "]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &s[p.len()..]))
        .unwrap_or(s);
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 12 {
        return false;
    }
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in &chars {
        *counts.entry(*c).or_default() += 1;
    }
    let n = chars.len() as f64;
    let bits: f64 = counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    bits >= 3.0
}

/// [`Masker::restore_shown`] below an object: each key present in all three.
fn restore_children(
    shown: &Map<String, Value>,
    real: &Map<String, Value>,
    edited: &mut Map<String, Value>,
) {
    for (k, v) in edited.iter_mut() {
        if let (Some(s), Some(r)) = (shown.get(k), real.get(k)) {
            restore(s, r, v);
        }
    }
}

fn restore(shown: &Value, real: &Value, edited: &mut Value) {
    if edited == shown {
        if shown != real {
            edited.clone_from(real);
        }
        return;
    }
    match (shown, real, edited) {
        (Value::Object(s), Value::Object(r), Value::Object(e)) => restore_children(s, r, e),
        // Index by index only while the length is as shown: after an insertion or a removal,
        // an element at index i is not the one shown there.
        (Value::Array(s), Value::Array(r), Value::Array(e)) if s.len() == e.len() => {
            for ((s, r), v) in s.iter().zip(r).zip(e.iter_mut()) {
                restore(s, r, v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_classes() {
        assert_eq!(key_class("password"), KeyClass::Password);
        assert_eq!(key_class("DB_PASSWORD_FILE"), KeyClass::Password);
        assert_eq!(key_class("clientSecret"), KeyClass::Password);
        assert_eq!(key_class("private_key"), KeyClass::Password);
        assert_eq!(key_class("secretName"), KeyClass::Plain);
        assert_eq!(key_class("api_key"), KeyClass::Token);
        assert_eq!(key_class("Authorization"), KeyClass::Token);
        assert_eq!(key_class("max_tokens"), KeyClass::Plain);
        assert_eq!(key_class("author"), KeyClass::Plain);
    }

    #[test]
    fn entropy() {
        assert!(high_entropy("Bearer 8f3kQz9LmP2xVb7Rt"));
        assert!(!high_entropy("production"));
        assert!(!high_entropy("aaaaaaaaaaaaaaaaaaaa"));
    }
}
