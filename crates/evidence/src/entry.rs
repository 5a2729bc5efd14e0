//! One audit entry, parsed once for every exporter.

use serde_json::{Map, Value};

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The bytes are not a JSON object.
    #[error("entry {index} is not a JSON object: {message}")]
    NotJson {
        /// The entry's index.
        index: u64,
        /// What the parser said.
        message: String,
    },
    /// A required field is missing or of the wrong type.
    #[error("entry {index} has no valid `{field}`")]
    Field {
        /// The entry's index.
        index: u64,
        /// The field.
        field: &'static str,
    },
}

/// An audit entry: its position, when it was recorded (Unix milliseconds, as stored) and its
/// canonical body's fields.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in the log.
    pub index: u64,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// The RFC 3339 time written in the entry.
    pub time: String,
    /// Event type (`submitted`, `voted`, `refused`, ...).
    pub kind: String,
    /// Who caused it, if a person or agent did.
    pub actor: Option<String>,
    /// The action it belongs to, if any.
    pub action_id: Option<String>,
    /// The event's own fields.
    pub event: Map<String, Value>,
    /// The canonical bytes (what the Merkle tree hashes).
    pub raw: Vec<u8>,
}

impl Entry {
    /// Parses an entry's canonical bytes.
    pub fn parse(index: u64, at_ms: i64, raw: Vec<u8>) -> Result<Entry, EntryError> {
        let v: Value = serde_json::from_slice(&raw).map_err(|e| EntryError::NotJson {
            index,
            message: e.to_string(),
        })?;
        let Value::Object(mut map) = v else {
            return Err(EntryError::NotJson {
                index,
                message: "not an object".into(),
            });
        };
        let text = |map: &Map<String, Value>, field: &'static str| {
            map.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(EntryError::Field { index, field })
        };
        let optional = |map: &Map<String, Value>, field: &'static str| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(EntryError::Field { index, field }),
        };
        let kind = text(&map, "type")?;
        let time = text(&map, "time")?;
        let actor = optional(&map, "actor")?;
        let action_id = optional(&map, "action_id")?;
        let event = match map.remove("event") {
            Some(Value::Object(e)) => e,
            _ => {
                return Err(EntryError::Field {
                    index,
                    field: "event",
                })
            }
        };
        Ok(Entry {
            index,
            at_ms,
            time,
            kind,
            actor,
            action_id,
            event,
            raw,
        })
    }

    /// A string field of the event.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.event.get(field).and_then(Value::as_str)
    }

    /// A field of the submitted action's spec (`action`, `resource`, `environment`).
    pub fn spec(&self, field: &str) -> Option<&str> {
        self.event
            .get("spec")
            .and_then(|s| s.get(field))
            .and_then(Value::as_str)
    }
}
