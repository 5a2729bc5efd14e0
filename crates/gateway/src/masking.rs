//! Masking at the gateway (issue #17): the key file, and the two places values leave for people
//! and other systems — the audit entries of a transition (masked before the store commits them,
//! with a keyed commitment per masked value) and the views of an action (masked for every
//! caller). The record itself keeps the real values: the digest covers them and the redeemed
//! grant returns them to the executor.

use countersign_core::{ActionRecord, Ballot, Event, MaskedValue};
use countersign_mask::Masker;
use rand::RngCore;
use std::path::Path;

/// Loads the masking key at `path`, or creates one there (32 random bytes as hex, mode 0600),
/// published the way the signing keys are so replicas share one.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, String> {
    let text = crate::grants::read_or_publish(path, || {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Ok(format!("{}\n", hex::encode(key)))
    })
    .map_err(|e| format!("masking key {}: {e}", path.display()))?;
    let key =
        hex::decode(text.trim()).map_err(|_| format!("masking key {}: not hex", path.display()))?;
    if key.len() < 32 {
        return Err(format!(
            "masking key {}: {} bytes, at least 32 needed",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

fn text(m: &Masker, s: &mut String, pointer: &str, found: &mut Vec<MaskedValue>) {
    if let Some(masked) = m.text(s, pointer, found) {
        *s = masked;
    }
}

/// Masks the values a person could read in `events` (parameters, resource, justification,
/// comments), recording in each entry what was masked and its commitment.
pub fn mask_events(m: &Masker, events: &mut [Event]) {
    if !m.enabled() {
        return;
    }
    for event in events {
        match event {
            Event::Submitted {
                justification,
                spec,
                masked,
                ..
            } => {
                m.object("params", "/spec/params", &mut spec.params, masked);
                text(m, &mut spec.resource, "/spec/resource", masked);
                text(m, justification, "/justification", masked);
            }
            Event::Voted {
                params,
                comment,
                masked,
                ..
            } => {
                if let Some(p) = params {
                    m.object("params", "/params", p, masked);
                }
                if let Some(c) = comment {
                    text(m, c, "/comment", masked);
                }
            }
            _ => {}
        }
    }
}

/// A reviewer's change ("approve with changes") is written on the masked view of `record`:
/// every value it leaves as that view showed it becomes the real value again
/// ([`Masker::restore_shown`], against the same masking `mask_record` applies), so the executor
/// receives real values, not tags, for what nobody changed.
pub fn restore_shown(m: &Masker, record: &ActionRecord, ballot: &mut Ballot) {
    if let Ballot::Modify { params, .. } = ballot {
        m.restore_shown("params", &record.spec.params, params);
    }
}

/// Masks what a view of `record` shows (the record is a copy made for the view), and says what
/// it masked.
pub fn mask_record(m: &Masker, record: &mut ActionRecord) -> Vec<MaskedValue> {
    let mut masked = Vec::new();
    if !m.enabled() {
        return masked;
    }
    let found = &mut masked;
    m.object("params", "/params", &mut record.spec.params, found);
    text(m, &mut record.spec.resource, "/resource", found);
    text(m, &mut record.justification, "/justification", found);
    if let Some(review) = &mut record.review {
        for v in &mut review.votes {
            if let Some(c) = &mut v.comment {
                text(m, c, "/comment", found);
            }
        }
        for c in &mut review.clarifications {
            text(m, &mut c.question, "/question", found);
            if let Some(a) = &mut c.answer {
                text(m, a, "/answer", found);
            }
        }
    }
    if let Some(result) = &mut record.result {
        if let Some(d) = &mut result.detail {
            text(m, d, "/result/detail", found);
        }
    }
    masked
}
