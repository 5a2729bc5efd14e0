//! Action ids by unique prefix, as `git` does with commits.
//!
//! A whole id (a UUID in its canonical form) is used as given, without a look-up. Anything else
//! is a prefix of at least [`MIN_PREFIX`] characters (hyphens and case do not matter), looked up
//! among the actions the caller can see through the API (`GET /v1/reviews`, every status, every
//! page): exactly one match is used; none is `not_found`; several is [`IdError::Ambiguous`], which
//! names them. Never a guess: when the list cannot be read whole, the command fails.

use countersign_api::{Action, Client, ClientError, ReviewsQuery};

/// The fewest characters (hyphens not counted) a prefix must have.
pub const MIN_PREFIX: usize = 4;

/// Every status a listed action may have.
const EVERY_STATUS: &str =
    "pending,needs_clarification,approved,rejected,expired,cancelled,succeeded,failed,allowed,denied";

/// Page size of the look-up, and the most pages read (then the command fails closed).
const PAGE: usize = 1000;
const MAX_PAGES: usize = 50;

/// Why an id could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// Too short to look up.
    #[error("`{0}` is too short: give at least {MIN_PREFIX} characters of the action id")]
    TooShort(String),
    /// Nothing the caller can see starts with it.
    #[error(
        "not_found: no action you can see has an id starting with `{0}` (a prefix is looked up \
         among the reviews you can vote on or voted on; otherwise give the whole id)"
    )]
    NotFound(String),
    /// More than one action starts with it.
    #[error("ambiguous_id: `{prefix}` starts {} action ids; give more characters:\n{}",
        candidates.len(),
        candidates.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n"))]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// One line per match: id, status, action, resource.
        candidates: Vec<String>,
    },
    /// More actions than the look-up reads.
    #[error("more than {most} actions to search for `{0}`: give the whole id", most = PAGE * MAX_PAGES)]
    TooMany(String),
    /// The list could not be read.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Whether `id` is a whole action id: a UUID, 8-4-4-4-12 hexadecimal digits.
pub fn is_whole(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The comparable form of an id or prefix: lower case, without hyphens.
fn key(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The ids among `ids` that start with `prefix`.
#[cfg(test)]
fn matches<'a>(prefix: &str, ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let want = key(prefix);
    ids.into_iter()
        .filter(|id| key(id).starts_with(&want))
        .collect()
}

/// The whole id `given` names: itself when whole, else the one visible action it is a prefix of.
pub async fn resolve(client: &Client, given: &str) -> Result<String, IdError> {
    if is_whole(given) {
        return Ok(given.to_string());
    }
    if key(given).chars().count() < MIN_PREFIX {
        return Err(IdError::TooShort(given.to_string()));
    }
    let mut found: Vec<Action<'static>> = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .reviews(&ReviewsQuery {
                status: Some(EVERY_STATUS.to_string()),
                limit: Some(PAGE),
                cursor: cursor.take(),
            })
            .await?;
        let want = key(given);
        found.extend(
            page.reviews
                .into_iter()
                .filter(|a| key(a.id()).starts_with(&want)),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return one(given, found),
        }
    }
    Err(IdError::TooMany(given.to_string()))
}

fn one(given: &str, mut found: Vec<Action<'static>>) -> Result<String, IdError> {
    found.sort_by(|a, b| a.id().cmp(b.id()));
    found.dedup_by(|a, b| a.id() == b.id());
    match found.as_slice() {
        [] => Err(IdError::NotFound(given.to_string())),
        [only] => Ok(only.id().to_string()),
        many => Err(IdError::Ambiguous {
            prefix: given.to_string(),
            candidates: many
                .iter()
                .map(|a| {
                    format!(
                        "{}  {}  {} {}",
                        a.id(),
                        a.status().as_str(),
                        a.action(),
                        a.resource()
                    )
                })
                .collect(),
        }),
    }
}

/// The shortest prefix of `id` (at least `min` characters) that starts no other id of `all`:
/// what a listing shows, to be typed back.
pub fn shortest_unique<'a>(id: &'a str, all: &[&str], min: usize) -> &'a str {
    let mut end = min.min(id.len());
    while end < id.len() {
        let prefix = &id[..end];
        if !prefix.ends_with('-') && all.iter().filter(|o| o.starts_with(prefix)).count() <= 1 {
            return prefix;
        }
        end = id[end..]
            .char_indices()
            .nth(1)
            .map_or(id.len(), |(i, _)| end + i);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0192f1a3-7b2c-7abc-8def-000000000001";
    const B: &str = "0192f1a3-7b2c-7abd-8def-000000000002";
    const C: &str = "0193aaaa-0000-7000-8000-000000000003";

    #[test]
    fn whole_ids_are_uuids() {
        assert!(is_whole(A));
        assert!(!is_whole(&A[..35]));
        assert!(!is_whole(&A.replace('-', "")));
        assert!(!is_whole("nope"));
    }

    #[test]
    fn prefixes_ignore_hyphens_and_case() {
        let all = [A, B, C];
        assert_eq!(matches("0192F1A37B2C7ABC", all), vec![A]);
        assert_eq!(matches("0192f1a3-7b2c", all), vec![A, B]);
        assert_eq!(matches("0193", all), vec![C]);
        assert!(matches("ffff", all).is_empty());
    }

    #[test]
    fn a_listing_shows_the_shortest_unique_prefix() {
        let all = [A, B, C];
        assert_eq!(shortest_unique(C, &all, 8), "0193aaaa");
        assert_eq!(shortest_unique(A, &all, 8), "0192f1a3-7b2c-7abc");
        assert_eq!(shortest_unique(A, &[A], 8), "0192f1a3");
        assert_eq!(shortest_unique("abc", &["abc"], 8), "abc");
    }

    #[test]
    fn no_match_is_not_found() {
        let err = one("0192", Vec::new()).unwrap_err();
        assert!(matches!(err, IdError::NotFound(_)));
    }
}
