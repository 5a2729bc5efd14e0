//! What auditors and SIEMs read: the audit log's entries exported as CSV (spreadsheets), OCSF
//! JSON Lines (Security Lake and SIEMs), and an HTML evidence report mapped to SOC 2, ISO 27001
//! and NIST 800-53 controls.
//!
//! Pure functions over parsed entries; no I/O but the `Write` the caller hands in. The entry
//! format (`{"action_id","actor","event","index","time","type"}`) is the store's
//! (`countersign_store::entry`); this crate only reads it.

mod csv;
mod entry;
mod ocsf;
mod report;
mod svg;

pub use crate::csv::write_csv;
pub use entry::{Entry, EntryError};
pub use ocsf::{to_ocsf, write_ocsf, OCSF_VERSION};
pub use report::{render_html, Anchor, Evidence};

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
