//! The history page: every action the signed-in person may see (the core's `visible_to`),
//! filtered by status, action, requester, reviewer, environment and submission date, paged on
//! the server (`Gateway::history`). The filters are a plain GET form.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use countersign_core::{Status, Timestamp};
use countersign_gateway::HistoryQuery;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::session::{self, Auth};
use crate::{ConsoleError, State as Console};

/// Actions per page.
const PAGE: usize = 50;

/// The filters, as the form sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    requester: String,
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    environment: String,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    to: String,
    /// The cursor: `<millis>.<id>` of the previous page's last action.
    #[serde(default, skip_serializing)]
    after: String,
}

/// Midnight UTC of a `YYYY-MM-DD` date, in milliseconds.
fn day(text: &str) -> Result<Option<i64>, ConsoleError> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || ConsoleError::BadRequest(format!("`{text}` is not a date like 2026-12-01"));
    let mut parts = text.splitn(3, '-');
    let mut next = || parts.next().ok_or_else(bad);
    let (y, m, d) = (next()?, next()?, next()?);
    let (y, m, d): (i32, u8, u8) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    Ok(Some(date.midnight().assume_utc().unix_timestamp() * 1000))
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Filters {
    fn query(&self) -> Result<HistoryQuery, ConsoleError> {
        let statuses = match self.status.as_str() {
            "" => Vec::new(),
            s => vec![Status::parse(s)
                .ok_or_else(|| ConsoleError::BadRequest(format!("unknown status `{s}`")))?],
        };
        let after = match self.after.split_once('.') {
            None if self.after.is_empty() => None,
            Some((ms, id)) if !id.is_empty() => Some((
                Timestamp(
                    ms.parse()
                        .map_err(|_| ConsoleError::BadRequest("bad cursor".into()))?,
                ),
                id.to_string(),
            )),
            _ => return Err(ConsoleError::BadRequest("bad cursor".into())),
        };
        Ok(HistoryQuery {
            statuses,
            action: some(&self.action),
            requester: some(&self.requester),
            reviewer: some(&self.reviewer),
            environment: some(&self.environment),
            from: day(&self.from)?.map(Timestamp),
            // Inclusive: up to the end of that day.
            to: day(&self.to)?.map(|d| Timestamp(d + 86_400_000)),
            after,
            limit: PAGE,
        })
    }
}

#[derive(Serialize)]
struct Row {
    id: String,
    action: String,
    resource: String,
    environment: String,
    requester: String,
    status: &'static str,
    created_at: String,
    voters: Vec<String>,
}

const STATUSES: [&str; 10] = [
    "allowed",
    "denied",
    "pending",
    "needs_clarification",
    "approved",
    "rejected",
    "expired",
    "cancelled",
    "succeeded",
    "failed",
];

/// `GET /console/history`.
pub(crate) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let signed = match session::authenticate(&console, &headers).await {
        Ok(Auth::Signed(s)) => s,
        Ok(Auth::SignedOut) => {
            return axum::response::Redirect::to("/console/login?to=%2Fconsole%2Fhistory")
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let result = async {
        let q = filters.query()?;
        let page = console
            .gateway
            .history(&signed.session.identity, &q)
            .await
            .map_err(|e| ConsoleError::Unavailable(e.to_string()))?;
        let rows: Vec<Row> = page
            .actions
            .iter()
            .map(|v| {
                let r = &v.record;
                Row {
                    id: r.id.clone(),
                    action: r.spec.action.clone(),
                    resource: r.spec.resource.clone(),
                    environment: r.spec.environment.clone(),
                    requester: r.requester.clone(),
                    status: r.status.as_str(),
                    created_at: countersign_api::time::rfc3339(r.created_at),
                    voters: r
                        .review
                        .as_ref()
                        .map(|rv| rv.votes.iter().map(|v| v.voter.clone()).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let next = page.next.map(|(t, id)| {
            let mut link = serde_urlencoded::to_string(&filters).unwrap_or_default();
            let cursor = format!("{}.{id}", t.millis());
            link.push_str("&after=");
            link.push_str(
                &url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>(),
            );
            link
        });
        console.templates.render(
            "history.html",
            context! {
                title => "History",
                f => &filters,
                statuses => STATUSES,
                rows => rows,
                next => next,
                user => crate::pages::user_of(&signed),
                csrf => &signed.csrf,
            },
        )
    }
    .await;
    match result {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}
