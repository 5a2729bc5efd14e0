//! The size limits of the free-text fields every front accepts (the API, embedded MCP, the CLI),
//! stated once. The params' depth and number rules are in `action.rs` (`check_json`); the
//! request body's byte limit is the HTTP server's.

/// A free-text field of a request, with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The agent's justification of a submission.
    Justification,
    /// A reviewer's note on a vote.
    Comment,
    /// A reviewer's question (`clarify`).
    Question,
    /// The requester's answer to a question.
    Answer,
    /// The executor's report detail.
    Detail,
    /// A client's idempotency key.
    IdempotencyKey,
    /// An action id in a path.
    ActionId,
}

impl Field {
    /// The field's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Field::Justification => "justification",
            Field::Comment => "comment",
            Field::Question => "question",
            Field::Answer => "answer",
            Field::Detail => "detail",
            Field::IdempotencyKey => "Idempotency-Key",
            Field::ActionId => "id",
        }
    }

    /// The most bytes (UTF-8) the field may hold.
    pub fn max_bytes(self) -> usize {
        match self {
            Field::Justification | Field::Answer | Field::Detail => 16 * 1024,
            Field::Comment | Field::Question => 4096,
            Field::IdempotencyKey => 255,
            Field::ActionId => 256,
        }
    }

    /// Refuses a value longer than the field's limit.
    pub fn check(self, value: &str) -> Result<(), TooLong> {
        if value.len() > self.max_bytes() {
            Err(TooLong(self))
        } else {
            Ok(())
        }
    }
}

/// A field over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is longer than {} bytes", .0.name(), .0.max_bytes())]
pub struct TooLong(pub Field);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_takes_its_limit_and_refuses_one_byte_more() {
        for (field, max) in [
            (Field::Justification, 16384),
            (Field::Answer, 16384),
            (Field::Detail, 16384),
            (Field::Comment, 4096),
            (Field::Question, 4096),
            (Field::IdempotencyKey, 255),
            (Field::ActionId, 256),
        ] {
            assert_eq!(field.check(&"x".repeat(max)), Ok(()));
            let err = field.check(&"x".repeat(max + 1)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`{}` is longer than {max} bytes", field.name())
            );
        }
    }

    #[test]
    fn limits_count_bytes_not_characters() {
        // 4 bytes each: 1025 of them are 4100 bytes, over the comment's 4096.
        assert!(Field::Comment.check(&"😀".repeat(1024)).is_ok());
        assert!(Field::Comment.check(&"😀".repeat(1025)).is_err());
    }
}
