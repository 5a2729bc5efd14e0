//! Result masking: values of configured columns, and what the masking detectors
//! (`countersign_mask`) find in text values, are replaced in the `DataRow`s sent to the agent.
//! A column rule is `table.column` (the column's output name, when the statement names the
//! table) or a column name, `*` matching any run of characters (`*ssn*`). Rules see output
//! names: an alias (`SELECT ssn AS x`) is not the column, which is why the detectors run too.

use bytes::{BufMut, Bytes, BytesMut};
use countersign_mask::Masker;

use crate::wire::{Fields, Msg};

/// What to mask in results.
#[derive(Debug)]
pub struct ResultMask {
    masker: Masker,
    columns: Vec<(Option<String>, String)>,
    values: bool,
}

impl ResultMask {
    /// Masks the columns `rules` name (and, with `values`, what the detectors find anywhere).
    pub fn new(masker: Masker, rules: &[String], values: bool) -> Self {
        let columns = rules
            .iter()
            .map(|r| match r.rsplit_once('.') {
                Some((t, c)) => (Some(t.to_ascii_lowercase()), c.to_ascii_lowercase()),
                None => (None, r.to_ascii_lowercase()),
            })
            .collect();
        ResultMask {
            masker,
            columns,
            values,
        }
    }

    fn rule_matches(&self, column: &str, tables: &[String]) -> bool {
        let column = column.to_ascii_lowercase();
        self.columns.iter().any(|(t, c)| {
            glob(c, &column)
                && t.as_ref().is_none_or(|t| {
                    tables.iter().any(|n| {
                        let n = n.to_ascii_lowercase();
                        n == *t || n.rsplit('.').next() == Some(t.as_str())
                    })
                })
        })
    }

    /// Which columns of a `RowDescription` the rules mask, and whether each is in text format.
    pub fn columns(&self, description: &Bytes, tables: &[String]) -> Vec<(bool, bool)> {
        let mut f = Fields::new(description);
        let Ok(n) = f.count() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Ok(name) = f.cstr() else {
                return Vec::new();
            };
            // table oid, attnum, type oid, typlen, typmod: skipped; then the format.
            if f.bytes(4 + 2 + 4 + 2 + 4).is_err() {
                return Vec::new();
            }
            let text = f.i16().map(|x| x == 0).unwrap_or(false);
            out.push((self.rule_matches(&name, tables), text));
        }
        out
    }

    /// The `DataRow` with its values masked, or `None` if nothing changed. `columns` is what
    /// [`ResultMask::columns`] said of the rows' description (empty: unknown).
    pub fn row(&self, body: &Bytes, columns: &[(bool, bool)]) -> Option<Msg> {
        if !self.values && !columns.iter().any(|c| c.0) {
            return None;
        }
        let mut f = Fields::new(body);
        let n = f.count().ok()?;
        let mut out = BytesMut::with_capacity(body.len() + 16);
        out.put_i16(i16::try_from(n).ok()?);
        let mut changed = false;
        let mut found = Vec::new();
        for i in 0..n {
            let len = f.i32().ok()?;
            let (rule, text) = columns.get(i).copied().unwrap_or((false, true));
            let Ok(len) = usize::try_from(len) else {
                out.put_i32(-1);
                continue;
            };
            let v = f.bytes(len).ok()?;
            let masked = match (rule, text) {
                // A binary value cannot take a tag: withheld as NULL.
                (true, false) => {
                    changed = true;
                    out.put_i32(-1);
                    continue;
                }
                (true, true) => {
                    let s = String::from_utf8_lossy(&v);
                    Some(format!("[column:{}]", &self.masker.commitment(&s)[..4]))
                }
                (false, true) if self.values => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| self.masker.text(s, "", &mut found)),
                _ => None,
            };
            match masked {
                Some(m) => {
                    changed = true;
                    out.put_i32(i32::try_from(m.len()).ok()?);
                    out.put_slice(m.as_bytes());
                }
                None => {
                    out.put_i32(i32::try_from(len).ok()?);
                    out.put_slice(&v);
                }
            }
        }
        changed.then(|| crate::wire::msg(b'D', out.freeze()))
    }
}

/// Whether `name` matches `pattern` (`*`: any run of characters).
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*ssn*", "customer_ssn_hash"));
        assert!(glob("email", "email"));
        assert!(!glob("email", "emails"));
        assert!(glob("e*l", "email"));
        assert!(!glob("a*b*c", "acb"));
    }

    #[test]
    fn a_row_is_masked_by_rule_and_by_detector() {
        let masker = Masker::new(&countersign_mask::MaskingConfig::default(), &[7u8; 32]).unwrap();
        let m = ResultMask::new(masker, &["users.ssn".into()], true);
        let mut d = BytesMut::new();
        d.put_i16(2);
        for name in ["ssn", "note"] {
            d.put_slice(name.as_bytes());
            d.put_u8(0);
            d.put_slice(&[0; 16]);
            d.put_i16(0);
        }
        let cols = m.columns(&d.freeze(), &["public.users".into()]);
        assert_eq!(cols, [(true, true), (false, true)]);
        let mut r = BytesMut::new();
        r.put_i16(2);
        for v in ["123-45-6789", "mail bob@example.com"] {
            r.put_i32(v.len() as i32);
            r.put_slice(v.as_bytes());
        }
        let out = m.row(&r.freeze(), &cols).unwrap();
        let text = String::from_utf8_lossy(&out.body);
        assert!(text.contains("[column:"), "{text}");
        assert!(!text.contains("123-45-6789"));
        assert!(!text.contains("bob@example.com"), "{text}");
    }
}
