//! Checkpoints (C2SP `tlog-checkpoint`): the text a log signs to commit to its tree head, the
//! log's origin, its size and its root hash, one per line, optionally followed by extension lines:
//!
//! ```text
//! example.com/behind-the-sofa
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//! ```
//!
//! This module owns that text, both ways, and nothing else: signing it is [`crate::note::sign`],
//! opening a signed one is [`crate::note::open`] then [`Checkpoint::parse`]. Parsing is strict (a
//! checkpoint has exactly one spelling), so two parties never disagree on what was signed.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// A log's signed statement of its tree head. Exists only valid: the origin is non-empty and, like
/// extension lines, has no control characters, so [`Checkpoint::to_text`] always parses back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// Why a checkpoint text, or a checkpoint's parts, were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The origin is empty or has control characters.
    #[error("checkpoint origin must be non-empty, on one line, without control characters")]
    InvalidOrigin,
    /// The size line is not a decimal number without leading zeros that fits in 64 bits.
    #[error("checkpoint tree size must be a decimal number without leading zeros (`0` for empty)")]
    InvalidSize,
    /// The root line is not the standard base64 encoding of 32 bytes.
    #[error("checkpoint root hash must be the padded standard base64 of 32 bytes")]
    InvalidRoot,
    /// An extension line is empty or has control characters.
    #[error("checkpoint extension lines must be non-empty, without control characters")]
    InvalidExtension,
    /// Fewer than three lines, or no final newline.
    #[error("checkpoint must be at least three lines (origin, size, root hash), each ending in a newline")]
    Malformed,
}

impl CheckpointError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            CheckpointError::InvalidOrigin => "checkpoint_origin_invalid",
            CheckpointError::InvalidSize => "checkpoint_size_invalid",
            CheckpointError::InvalidRoot => "checkpoint_root_invalid",
            CheckpointError::InvalidExtension => "checkpoint_extension_invalid",
            CheckpointError::Malformed => "checkpoint_malformed",
        }
    }
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        if !is_valid_line(&origin) {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The same checkpoint with these extension lines. C2SP advises against them (monitors cannot
    /// audit them); they exist here so that other logs' checkpoints round-trip.
    pub fn with_extensions<I, S>(mut self, lines: I) -> Result<Self, CheckpointError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let lines: Vec<String> = lines.into_iter().map(Into::into).collect();
        if !lines.iter().all(|l| is_valid_line(l)) {
            return Err(CheckpointError::InvalidExtension);
        }
        self.extensions = lines;
        Ok(self)
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree of [`Checkpoint::size`] leaves.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines, usually none.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text to sign.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint text (the text of an opened note).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed)?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed);
        };
        let checkpoint = Self::new(origin, parse_size(size)?, parse_root(root)?)?;
        checkpoint.with_extensions(lines)
    }
}

/// Decimal, ASCII digits only (no sign, no spaces), no leading zero except `0` itself.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::InvalidSize);
    }
    s.parse().map_err(|_| CheckpointError::InvalidSize)
}

/// Padded standard base64 of exactly 32 bytes. The decoder refuses non-zero trailing bits, so
/// each root has one spelling.
fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let bytes = BASE64.decode(s).map_err(|_| CheckpointError::InvalidRoot)?;
    bytes.try_into().map_err(|_| CheckpointError::InvalidRoot)
}

/// Non-empty, without control characters (which include newline, so it stays one line).
fn is_valid_line(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}
