//! The audit log's exports, one writer for every front: `countersign audit export` (the CLI,
//! straight from the store) and the console's download (`Gateway::export_audit`). The log up to
//! its latest checkpoint (or a time window of it) as a `jsonl` bundle that verifies offline
//! (header, checkpoint note, entries; a window's entries carry inclusion proofs), `csv` or `ocsf`
//! (`countersign-evidence`). Entries are written as stored: masked when they were written.

use countersign_audit::checkpoint::Checkpoint;
use countersign_audit::merkle::prove_record;
use countersign_audit::note::{self, Verifier};
use countersign_audit::verify;
use countersign_audit::Hash;
use countersign_evidence::{write_csv, write_ocsf, Entry};
use countersign_store::{AuditEntry, AuditLog, StoreError};
use std::io::Write;

/// What could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Nothing is signed yet.
    #[error("the log has no checkpoint yet: run the gateway for a second after the first action")]
    NoCheckpoint,
    /// The checkpoint or an entry does not read as one.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A bundle (entries, checkpoint, proofs for a window) that verifies offline.
    Jsonl,
    /// One row per entry, for spreadsheets.
    Csv,
    /// OCSF 1.5.0 events as JSON Lines.
    Ocsf,
}

impl ExportFormat {
    /// `jsonl`, `csv` or `ocsf`; anything else is none.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "jsonl" => Some(ExportFormat::Jsonl),
            "csv" => Some(ExportFormat::Csv),
            "ocsf" => Some(ExportFormat::Ocsf),
            _ => None,
        }
    }

    /// The name's extension.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
            ExportFormat::Ocsf => "ocsf.jsonl",
        }
    }

    /// The media type of a download.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl | ExportFormat::Ocsf => "application/jsonl",
        }
    }
}

/// The entries of a time window (or all) up to the latest checkpoint, with that checkpoint.
pub struct Window {
    /// The checkpoint's signed note.
    pub note: String,
    /// The checkpoint it opens to.
    pub checkpoint: Checkpoint,
    /// The entries, in index order.
    pub entries: Vec<AuditEntry>,
    /// Whether a time window was asked for (the bundle then carries proofs).
    pub partial: bool,
}

/// The window of entries at or after `since` and at or before `until` (Unix milliseconds), up
/// to the latest checkpoint, whose note must open with `key`.
pub async fn window(
    store: &dyn AuditLog,
    key: &Verifier,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Window, ExportError> {
    let cp = store
        .latest_checkpoint()
        .await?
        .ok_or(ExportError::NoCheckpoint)?;
    let opened = note::open(&cp.note, std::slice::from_ref(key))
        .map_err(|e| ExportError::Invalid(e.to_string()))?;
    let checkpoint =
        Checkpoint::parse(&opened.text).map_err(|e| ExportError::Invalid(e.to_string()))?;
    let size = checkpoint.size();
    let partial = since.is_some() || until.is_some();

    let mut entries = Vec::new();
    let mut start = 0;
    while start < size {
        let page = store.audit_entries(start, 10_000).await?;
        let Some(last) = page.last() else { break };
        start = last.index + 1;
        entries.extend(page.into_iter().filter(|e| e.index < size).filter(|e| {
            since.is_none_or(|s| e.at.millis() >= s) && until.is_none_or(|u| e.at.millis() <= u)
        }));
    }
    let (first, end) = match (entries.first(), entries.last()) {
        (Some(f), Some(l)) => (f.index, l.index + 1),
        _ => (0, 0),
    };
    // A time window is one contiguous index range: entries are numbered as they commit.
    if partial && end > first && (end - first) as usize != entries.len() {
        entries = store.audit_entries(first, (end - first) as usize).await?;
    }
    Ok(Window {
        note: cp.note,
        checkpoint,
        entries,
        partial,
    })
}

/// The entries parsed for the evidence writers.
pub fn parsed(entries: &[AuditEntry]) -> Result<Vec<Entry>, ExportError> {
    entries
        .iter()
        .map(|e| {
            Entry::parse(e.index, e.at.millis(), e.body.clone())
                .map_err(|e| ExportError::Invalid(e.to_string()))
        })
        .collect()
}

/// Writes the window in `format` to `w`; answers how many entries it wrote.
pub async fn write(
    store: &dyn AuditLog,
    window: &Window,
    format: ExportFormat,
    mut w: impl Write,
) -> Result<usize, ExportError> {
    match format {
        ExportFormat::Csv => return Ok(write_csv(&parsed(&window.entries)?, w)?),
        ExportFormat::Ocsf => {
            let origin = window.checkpoint.origin().to_string();
            return Ok(write_ocsf(&parsed(&window.entries)?, &origin, w)?);
        }
        ExportFormat::Jsonl => {}
    }
    let size = window.checkpoint.size();
    let entries = &window.entries;
    let (first, end) = match (entries.first(), entries.last()) {
        (Some(f), Some(l)) => (f.index, l.index + 1),
        _ => (0, 0),
    };
    writeln!(
        w,
        "{}",
        verify::header_line(
            window.checkpoint.origin(),
            size,
            if window.partial { first } else { 0 },
            if window.partial { end } else { size }
        )
    )?;
    writeln!(w, "{}", verify::checkpoint_line(&window.note))?;
    for e in entries {
        let proof: Option<Vec<Hash>> = if window.partial {
            let index = e.index;
            Some(
                crate::audit::with_hashes(store, |r| prove_record(size, index, r))
                    .await
                    .map_err(|e| ExportError::Invalid(e.to_string()))?,
            )
        } else {
            None
        };
        writeln!(
            w,
            "{}",
            verify::entry_line(e.index, &e.body, proof.as_deref())
        )?;
    }
    w.flush()?;
    Ok(entries.len())
}
