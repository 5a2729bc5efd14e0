//! Audit entries as they are hashed into the log and shown to auditors: RFC 8785 canonical JSON
//! `{"action_id","actor","event","index","time","type"}`, one per state change.
//!
//! Everything but the index is canonicalised by the caller, off the writer thread; the writer,
//! which assigns indexes, only splices the number in (JCS orders keys, so `index` always sits
//! between `event` and `time`).

use countersign_core::{Event, Timestamp};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::StoreError;

/// An entry with every field but its index, ready to be numbered.
#[derive(Debug, Clone)]
pub(crate) struct EntryParts {
    head: String,
    tail: String,
}

/// RFC 3339 in UTC (what entries and the API show).
pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// RFC 8785 encoding of a string or null: serde_json's string escaping is JCS's.
fn jcs<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("canonical JSON: {e}")))
}

impl EntryParts {
    /// Canonicalises an event of `action_id` (if any) at `at`.
    pub(crate) fn new(
        action_id: Option<&str>,
        at: Timestamp,
        event: &Event,
    ) -> Result<Self, StoreError> {
        let mut payload = serde_json::to_value(event)
            .map_err(|e| StoreError::Database(format!("encoding an event: {e}")))?;
        if let Value::Object(map) = &mut payload {
            map.remove("type");
        }
        let head = format!(
            "{{\"action_id\":{},\"actor\":{},\"event\":{},\"index\":",
            jcs(&action_id)?,
            jcs(&event.actor())?,
            countersign_core::canonical::to_string(&payload)
                .map_err(|e| StoreError::Database(format!("canonical JSON: {e}")))?
        );
        let tail = format!(
            ",\"time\":{},\"type\":{}}}",
            jcs(&rfc3339(at))?,
            jcs(event.kind())?
        );
        Ok(EntryParts { head, tail })
    }

    /// Canonicalises standalone events (`Actions::record_events`), each with its action id if any.
    pub(crate) fn standalone(
        at: Timestamp,
        events: &[(Option<String>, Event)],
    ) -> Result<Vec<(Option<String>, EntryParts)>, StoreError> {
        events
            .iter()
            .map(|(id, e)| Ok((id.clone(), EntryParts::new(id.as_deref(), at, e)?)))
            .collect()
    }

    /// The entry's canonical bytes at log position `index`.
    pub(crate) fn bytes(&self, index: u64) -> Vec<u8> {
        format!("{}{index}{}", self.head, self.tail).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::ActionSpec;

    #[test]
    fn spliced_entries_are_exactly_rfc8785() {
        let digest = ActionSpec::new("a", "r", "", None).map(|s| s.digest());
        let events = [
            Event::Expired,
            Event::Voted {
                voter: "al\u{e9}\"x".into(),
                voter_source: Some("oidc:https://idp.example#al\u{e9}".into()),
                verdict: "approve".into(),
                digest: digest.clone().unwrap_or_else(|_| unreachable!()),
                params: None,
                analysis: None,
                comment: Some("line\nbreak \u{1f600}".into()),
                masked: Vec::new(),
            },
            Event::Voted {
                voter: "bob".into(),
                voter_source: None,
                verdict: "modify".into(),
                digest: digest.clone().unwrap_or_else(|_| unreachable!()),
                params: serde_json::json!({"z": 1.5e3, "a": ["\u{2028}", null, -0.0], "é": {}})
                    .as_object()
                    .cloned(),
                analysis: None,
                comment: None,
                masked: Vec::new(),
            },
            Event::Cancelled { by: "bot".into() },
        ];
        for (i, e) in events.iter().enumerate() {
            for (id, index) in [(Some("act-1"), 0u64), (None, 9_007_199_254_740_991)] {
                let parts =
                    EntryParts::new(id, Timestamp(1_795_273_591_940 + i as i64), e).unwrap();
                let got = parts.bytes(index);
                let mut payload = serde_json::to_value(e).unwrap();
                payload.as_object_mut().unwrap().remove("type");
                let whole = serde_json::json!({
                    "index": index, "time": rfc3339(Timestamp(1_795_273_591_940 + i as i64)),
                    "type": e.kind(), "actor": e.actor(), "action_id": id, "event": payload,
                });
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    serde_jcs::to_string(&whole).unwrap()
                );
            }
        }
    }
}
