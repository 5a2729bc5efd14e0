//! The history of actions a person may see (the web console's history page, issue #16):
//! filtered by status (in the store's query), action, requester, reviewer, environment and
//! time, oldest first, keyset-paged. Which actions a caller may see is the core's
//! `visible_to`; each one shown is a view made by `Gateway::view` (masked).

use countersign_core::{same_id, Identity, Status, Timestamp};
use countersign_store::ListFilter;

use crate::{ActionView, Gateway, GatewayError};

/// Rows read from the store per round while filling a page.
const ROUND: usize = 200;
/// Most rows one page request reads before it answers with what it found (and a cursor).
const MAX_SCAN: usize = 5_000;

/// What the history shows.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// Only this action name.
    pub action: Option<String>,
    /// Only this requester (or the human it acted for).
    pub requester: Option<String>,
    /// Only actions this person voted on.
    pub reviewer: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Submitted at or after.
    pub from: Option<Timestamp>,
    /// Submitted before.
    pub to: Option<Timestamp>,
    /// After this `(created_at, id)`: the previous page's [`HistoryPage::next`].
    pub after: Option<(Timestamp, String)>,
    /// At most this many.
    pub limit: usize,
}

/// One page of the history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The actions, oldest first.
    pub actions: Vec<ActionView>,
    /// Where the next page starts, if there may be one.
    pub next: Option<(Timestamp, String)>,
}

impl HistoryQuery {
    fn matches(&self, r: &countersign_core::ActionRecord) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.action, &r.spec.action)
            && eq(&self.environment, &r.spec.environment)
            && self.requester.as_deref().is_none_or(|w| {
                same_id(w, &r.requester) || r.on_behalf_of.as_deref().is_some_and(|o| same_id(w, o))
            })
            && self.reviewer.as_deref().is_none_or(|w| {
                r.review
                    .as_ref()
                    .is_some_and(|rv| rv.votes.iter().any(|v| same_id(w, &v.voter)))
            })
            && self.from.is_none_or(|t| r.created_at >= t)
            && self.to.is_none_or(|t| r.created_at < t)
    }
}

impl Gateway {
    /// A page of the actions `who` may see that match `q`.
    pub async fn history(
        &self,
        who: &Identity,
        q: &HistoryQuery,
    ) -> Result<HistoryPage, GatewayError> {
        let limit = q.limit.clamp(1, 500);
        let mut after = q.after.clone().or_else(|| {
            q.from
                .map(|t| (Timestamp(t.millis().saturating_sub(1)), String::new()))
        });
        let mut actions = Vec::new();
        let mut scanned = 0;
        loop {
            let rows = self
                .store
                .list(ListFilter {
                    statuses: q.statuses.clone(),
                    limit: ROUND,
                    after: after.clone(),
                })
                .await?;
            let full = rows.len() == ROUND;
            for r in rows {
                scanned += 1;
                after = Some((r.created_at, r.id.clone()));
                if q.to.is_some_and(|t| r.created_at >= t) {
                    return Ok(HistoryPage {
                        actions,
                        next: None,
                    });
                }
                if q.matches(&r) && r.visible_to(who) {
                    actions.push(self.view(who, r));
                    if actions.len() == limit {
                        return Ok(HistoryPage {
                            actions,
                            next: after,
                        });
                    }
                }
            }
            if !full {
                return Ok(HistoryPage {
                    actions,
                    next: None,
                });
            }
            if scanned >= MAX_SCAN {
                return Ok(HistoryPage {
                    actions,
                    next: after,
                });
            }
        }
    }
}
