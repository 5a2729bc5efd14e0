//! The built-in detectors: one table, in priority order (secrets before personal data, so a
//! password inside a URL is masked as a password, not the URL's `user@host` as an email).
//!
//! Each is a regular expression of the `regex` crate (finite automata: linear in the input, no
//! backtracking), an optional capture group (only that part is masked: `postgres://u:[password:…]@h`)
//! and an optional check that removes look-alikes (the Luhn sum of a card number, an IBAN's
//! mod-97 checksum, the digit count of a phone number).

/// A check a match must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// None.
    Any,
    /// 13 to 19 digits with a valid Luhn sum.
    Luhn,
    /// An IBAN whose mod-97 checksum is 1.
    Iban,
    /// 8 to 15 digits.
    PhoneDigits,
    /// Not only digits, unless 8 or more (`tokens=1000` is not a secret).
    NotShortNumber,
}

/// A built-in detector.
pub(crate) struct Builtin {
    /// Its name (`[masking] disable` uses it) and the kind in its tags.
    pub name: &'static str,
    /// The expression.
    pub pattern: &'static str,
    /// The capture group that is masked (0: the whole match).
    pub group: usize,
    /// What a match must also pass.
    pub check: Check,
}

/// Every built-in detector, highest priority first.
pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "private-key",
        pattern: r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "jwt",
        pattern: r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "aws-access-key",
        pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "aws-secret-key",
        pattern: r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
        group: 1,
        check: Check::Any,
    },
    Builtin {
        name: "gcp-api-key",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "github-token",
        pattern: r"\b(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "slack-token",
        pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,250}",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "slack-webhook",
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{8,}",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "stripe-key",
        pattern: r"\b(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,247}|whsec_[A-Za-z0-9+/=]{20,})",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "openai-key",
        pattern: r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api03-|admin01-)?)?[A-Za-z0-9_-]{20,}",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "url-password",
        pattern: r#"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/?#@"'\[\]]+:([^\s/?#@"'\[\]]+)@"#,
        group: 1,
        check: Check::Any,
    },
    Builtin {
        name: "secret-assignment",
        pattern: r#"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key)[A-Za-z0-9_-]*["']?\s*[:=]\s*["']?([^\s"'&;,\[\]]{4,})"#,
        group: 1,
        check: Check::NotShortNumber,
    },
    Builtin {
        name: "email",
        pattern: r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b",
        group: 0,
        check: Check::Any,
    },
    Builtin {
        name: "card",
        pattern: r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
        group: 0,
        check: Check::Luhn,
    },
    Builtin {
        name: "iban",
        pattern: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
        group: 0,
        check: Check::Iban,
    },
    Builtin {
        name: "phone",
        pattern: r"(?:\+[1-9][0-9 ().-]{6,18}[0-9]|\(?\b[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\b)",
        group: 0,
        check: Check::PhoneDigits,
    },
];

impl Check {
    /// Whether `s` (the masked part of a match) passes.
    pub(crate) fn passes(self, s: &str) -> bool {
        match self {
            Check::Any => true,
            Check::Luhn => luhn(s),
            Check::Iban => iban(s),
            Check::PhoneDigits => {
                let n = s.bytes().filter(u8::is_ascii_digit).count();
                (8..=15).contains(&n)
            }
            Check::NotShortNumber => !(s.bytes().all(|b| b.is_ascii_digit()) && s.len() < 8),
        }
    }
}

/// 13 to 19 digits (spaces and dashes ignored) whose Luhn sum is a multiple of 10.
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: the country and check digits moved to the end, letters as 10..35, mod 97 = 1.
fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, rest) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in rest.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_iban_checks() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("0000000000000000"));
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
    }
}
