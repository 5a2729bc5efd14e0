//! The pages: the queue (`GET /console`), an action (`GET /console/actions/{id}`), a vote
//! (`POST /console/actions/{id}/vote`), a reveal of the masked values
//! (`POST /console/actions/{id}/reveal`) and the live-update stream (`GET /console/events`).
//! Each reads through one gateway use case as the signed-in person and shapes its view; who may
//! see, review or decide is the core's answer, never the console's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use countersign_api::Action;
use countersign_core::{Ballot, DomainError, Status, Timestamp};
use countersign_gateway::{ActionView, GatewayError};
use futures_util::StreamExt;
use minijinja::{context, Value as Ctx};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::convert::Infallible;
use std::time::Duration;

use crate::session::{self, Auth, Signed};
use crate::{ConsoleError, State as Console};

/// Most reviews the queue shows.
const QUEUE_LIMIT: usize = 1000;
/// A parameter whose formatted JSON is longer than this is folded.
const FOLD_AT: usize = 240;

/// A duration for people: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub(crate) fn human(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn gateway_error(e: GatewayError) -> ConsoleError {
    match e {
        GatewayError::NotFound => ConsoleError::NotFound,
        other => ConsoleError::Unavailable(other.to_string()),
    }
}

#[derive(Serialize)]
pub(crate) struct User<'a> {
    id: &'a str,
    mfa: bool,
}

pub(crate) fn user_of(s: &Signed) -> User<'_> {
    User {
        id: &s.session.identity.id,
        mfa: s.session.mfa,
    }
}

/// The signed-in person, or a redirect to sign in and come back to `here`.
async fn signed_in(console: &Console, headers: &HeaderMap, here: &str) -> Result<Signed, Response> {
    match session::authenticate(console, headers).await {
        Ok(Auth::Signed(s)) => Ok(*s),
        Ok(Auth::SignedOut) => {
            let to = url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>();
            let clear = session::set_cookie(console, session::session_cookie_name(console), "", 0);
            let mut resp = Redirect::to(&format!("/console/login?to={to}")).into_response();
            // A cookie that opened nothing goes, so the next sign-in starts clean.
            if session::cookie(headers, session::session_cookie_name(console)).is_some() {
                if let Ok(clear) = clear {
                    resp.headers_mut()
                        .insert(axum::http::header::SET_COOKIE, clear);
                }
            }
            Err(resp)
        }
        Err(e) => Err(e.into_response()),
    }
}

#[derive(Serialize)]
struct Row {
    id: String,
    action: String,
    resource: String,
    environment: String,
    requester: String,
    on_behalf_of: Option<String>,
    risk: Option<&'static str>,
    age: String,
    time_left: String,
}

fn risk_name(view: &ActionView) -> Option<&'static str> {
    view.record.analysis.as_ref().map(|a| match a.risk {
        countersign_core::Risk::Low => "low",
        countersign_core::Risk::Medium => "medium",
        countersign_core::Risk::High => "high",
        countersign_core::Risk::Critical => "critical",
    })
}

/// `GET /console`: the reviews I may act on, newest first.
pub(crate) async fn queue(State(console): State<Console>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&console, &headers, "/console").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match render_queue(&console, &signed).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The queue page's HTML for `signed` (also what the bench renders).
pub(crate) async fn render_queue(
    console: &Console,
    signed: &Signed,
) -> Result<String, ConsoleError> {
    let who = &signed.session.identity;
    let page = console
        .gateway
        .reviews(who, Vec::new(), QUEUE_LIMIT, None)
        .await
        .map_err(gateway_error)?;
    let now = console.gateway.current_time();
    let rows: Vec<Row> = page
        .reviews
        .iter()
        .map(|v| {
            let r = &v.record;
            Row {
                id: r.id.clone(),
                action: r.spec.action.clone(),
                resource: r.spec.resource.clone(),
                environment: r.spec.environment.clone(),
                requester: r.requester.clone(),
                on_behalf_of: r.on_behalf_of.clone(),
                risk: risk_name(v),
                age: human(now.millis() - r.created_at.millis()),
                time_left: r
                    .review
                    .as_ref()
                    .map(|rv| human(rv.expires_at.millis() - now.millis()))
                    .unwrap_or_default(),
            }
        })
        .collect();
    console.templates.render(
        "queue.html",
        context! {
            title => "Reviews",
            count => rows.len(),
            rows => rows,
            user => user_of(signed),
            csrf => &signed.csrf,
            live => "queue",
        },
    )
}

#[derive(Serialize)]
struct Param {
    name: String,
    pretty: String,
    preview: String,
    long: bool,
}

#[derive(Serialize)]
struct Changed {
    name: String,
    before: String,
    after: String,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn params_of(params: &serde_json::Map<String, Value>) -> Vec<Param> {
    params
        .iter()
        .map(|(name, v)| {
            let pretty = match v {
                Value::String(s) => s.clone(),
                other => pretty(other),
            };
            let long = pretty.len() > FOLD_AT || pretty.lines().count() > 8;
            let preview: String = pretty.chars().take(80).collect();
            Param {
                name: name.clone(),
                preview: format!("{}…", preview.replace('\n', " ")),
                pretty,
                long,
            }
        })
        .collect()
}

/// The parameters as submitted, from the action's `submitted` audit entry (masked like every
/// entry), when a reviewer changed them.
async fn submitted_params(
    console: &Console,
    signed: &Signed,
    view: &ActionView,
) -> Option<serde_json::Map<String, Value>> {
    if view.record.digest == view.record.submitted_digest {
        return None;
    }
    let first = *console.gateway.audit_indexes(view).await.ok()?.first()?;
    let entries = console
        .gateway
        .audit_entries(&signed.session.identity, first, 1)
        .await
        .ok()?;
    let body: Value = serde_json::from_slice(&entries.first()?.body).ok()?;
    if body.get("type")?.as_str()? != "submitted" {
        return None;
    }
    body.get("event")?
        .get("spec")?
        .get("params")?
        .as_object()
        .cloned()
}

fn diff(
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) -> Vec<Changed> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| Changed {
            name: n.clone(),
            before: before
                .get(n)
                .map(pretty)
                .unwrap_or_else(|| "(absent)".into()),
            after: after
                .get(n)
                .map(pretty)
                .unwrap_or_else(|| "(absent)".into()),
        })
        .collect()
}

/// Who decided a closed review, for people: the deny, or the approvals that count.
fn decided_by(view: &ActionView) -> Option<String> {
    let r = &view.record;
    let review = r.review.as_ref()?;
    let verdicts: &[countersign_core::Verdict] = match r.status {
        Status::Rejected => &[countersign_core::Verdict::Deny],
        Status::Approved | Status::Succeeded | Status::Failed => &[
            countersign_core::Verdict::Approve,
            countersign_core::Verdict::Modify,
        ],
        Status::Expired => return Some("nobody: the review expired".into()),
        Status::Cancelled => return Some(format!("{} (cancelled)", r.requester)),
        _ => return None,
    };
    let mut voters: Vec<&str> = review
        .votes
        .iter()
        .filter(|v| verdicts.contains(&v.verdict))
        .filter(|v| r.status == Status::Rejected || v.digest == r.digest)
        .map(|v| v.voter.as_str())
        .collect();
    voters.dedup();
    (!voters.is_empty()).then(|| voters.join(", "))
}

fn grant_state(view: &ActionView, now: Timestamp) -> Option<&'static str> {
    let g = view.record.grant.as_ref()?;
    Some(if g.redeemed_at.is_some() {
        "used"
    } else if now >= g.expires_at {
        "expired"
    } else if matches!(
        view.record.status,
        Status::Cancelled | Status::Expired | Status::Rejected
    ) {
        "withdrawn"
    } else {
        "unused"
    })
}

/// What the action page shows besides the action.
#[derive(Default)]
struct Extra {
    notice: Option<(String, &'static str)>,
    params_text: Option<String>,
    params_error: Option<String>,
    /// The page shows the real values (`Gateway::reveal`): where masking would hide them.
    revealed: Option<Vec<String>>,
}

async fn render_action(
    console: &Console,
    signed: &Signed,
    view: &ActionView,
    extra: Extra,
) -> Result<String, ConsoleError> {
    let now = console.gateway.current_time();
    let r = &view.record;
    let api = Action::new(r, None);
    let before = submitted_params(console, signed, view).await;
    let audit = console
        .gateway
        .audit_indexes(view)
        .await
        .unwrap_or_default();
    // The submitted parameters come from the (masked) audit log: beside revealed values every
    // masked one would look changed, so a revealed page shows no diff.
    let changed = before
        .as_ref()
        .filter(|_| extra.revealed.is_none())
        .map(|b| diff(b, &r.spec.params));
    let (notice, notice_kind) = extra.notice.map_or((None, ""), |(n, k)| (Some(n), k));
    let params_text = extra
        .params_text
        .unwrap_or_else(|| pretty(&Value::Object(r.spec.params.clone())));
    console.templates.render(
        "action.html",
        context! {
            title => &r.spec.action,
            a => Ctx::from_serialize(&api),
            params => params_of(&r.spec.params),
            diff => changed,
            age => human(now.millis() - r.created_at.millis()),
            time_left => r.review.as_ref().filter(|_| r.status.is_open_review())
                .map(|rv| human(rv.expires_at.millis() - now.millis())),
            decided_by => decided_by(view),
            grant => grant_state(view, now),
            can_vote => r.reviewable_by(&signed.session.identity, now),
            requires_mfa => r.requires_mfa(),
            audit => audit,
            session_mfa => signed.session.mfa,
            params_text => params_text,
            params_error => extra.params_error,
            notice => notice,
            notice_kind => notice_kind,
            can_reveal => !view.masked.is_empty() && extra.revealed.is_none(),
            revealed => extra.revealed,
            user => user_of(signed),
            csrf => &signed.csrf,
            // A revealed page is not re-read live: the re-read would be the masked view.
            live => extra.revealed.is_none().then_some("action"),
        },
    )
}

/// `GET /console/actions/{id}`.
pub(crate) async fn action(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let here = format!(
        "/console/actions/{}",
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    let signed = match signed_in(&console, &headers, &here).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let result = async {
        let view = console
            .gateway
            .get(&signed.session.identity, &id)
            .await
            .map_err(gateway_error)?;
        render_action(&console, &signed, &view, Extra::default()).await
    }
    .await;
    match result {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A vote form.
#[derive(Deserialize)]
pub(crate) struct VoteForm {
    #[serde(default)]
    csrf: Option<String>,
    decision: String,
    /// The digest the page showed: a vote on a page that is out of date is not cast.
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    params: Option<String>,
    #[serde(default)]
    question: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `POST /console/actions/{id}/vote`: approve, deny, approve with changes, or ask.
pub(crate) async fn vote(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match cast(&console, &headers, &id, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn cast(
    console: &Console,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let form: VoteForm = serde_urlencoded::from_bytes(body)
        .map_err(|_| ConsoleError::BadRequest("unreadable form".into()))?;
    let signed = session::check_form(console, headers, form.csrf.as_deref()).await?;
    let who = &signed.session.identity;
    let view = console.gateway.get(who, id).await.map_err(gateway_error)?;
    let page = |view: &ActionView, extra: Extra, status: StatusCode| {
        let view = view.clone();
        let signed = &signed;
        async move {
            let html = render_action(console, signed, &view, extra).await?;
            Ok::<Response, ConsoleError>((status, Html(html)).into_response())
        }
    };
    let already = |view: &ActionView| Extra {
        notice: Some((
            format!(
                "Already decided: this action is {}{}. Your vote was not recorded.",
                view.record.status.as_str().replace('_', " "),
                decided_by(view)
                    .map(|b| format!(", decided by {b}"))
                    .unwrap_or_default()
            ),
            "info",
        )),
        ..Extra::default()
    };
    if !view.record.status.is_open_review() {
        return page(&view, already(&view), StatusCode::CONFLICT).await;
    }
    // The digest the page showed is required and binds the vote inside the core's transition
    // (a form without one is not one this console rendered).
    let seen: countersign_core::ActionDigest = form
        .digest
        .as_deref()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| ConsoleError::BadRequest("the vote names no digest".into()))?;
    let changed = || Extra {
        notice: Some((
            "The action changed while you were reading it (another reviewer modified it). \
             Review it again; your vote was not recorded."
                .into(),
            "info",
        )),
        ..Extra::default()
    };
    let comment = non_empty(form.comment);
    let ballot = match form.decision.as_str() {
        "approve" => Ballot::Approve { comment },
        "deny" => Ballot::Deny { comment },
        "clarify" => Ballot::Clarify {
            question: non_empty(form.question)
                .ok_or_else(|| ConsoleError::BadRequest("a question needs text".into()))?,
        },
        "modify" => {
            let text = form.params.unwrap_or_default();
            match serde_json::from_str::<Value>(&text) {
                Ok(params @ Value::Object(_)) => Ballot::Modify { params, comment },
                Ok(_) | Err(_) => {
                    let why = match serde_json::from_str::<Value>(&text) {
                        Err(e) => format!("Not valid JSON: {e}"),
                        Ok(_) => {
                            "The parameters must be a JSON object, like {\"name\": \"value\"}."
                                .into()
                        }
                    };
                    let extra = Extra {
                        params_error: Some(why),
                        params_text: Some(text),
                        ..Extra::default()
                    };
                    return page(&view, extra, StatusCode::BAD_REQUEST).await;
                }
            }
        }
        _ => return Err(ConsoleError::BadRequest("unknown decision".into())),
    };
    let context = countersign_core::VoteContext {
        mfa: signed.session.mfa,
        seen: Some(seen),
    };
    match console.gateway.vote_in(context, who, id, ballot).await {
        Ok(_) => Ok((
            StatusCode::SEE_OTHER,
            [(
                axum::http::header::LOCATION,
                format!(
                    "/console/actions/{}",
                    url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
                ),
            )],
        )
            .into_response()),
        Err(GatewayError::Domain(DomainError::NotPending(_) | DomainError::ReviewExpired)) => {
            let view = console.gateway.get(who, id).await.map_err(gateway_error)?;
            page(&view, already(&view), StatusCode::CONFLICT).await
        }
        Err(GatewayError::Domain(DomainError::DigestMismatch(_))) => {
            let view = console.gateway.get(who, id).await.map_err(gateway_error)?;
            page(&view, changed(), StatusCode::CONFLICT).await
        }
        Err(GatewayError::Domain(DomainError::MfaRequired(_))) => {
            let extra = Extra {
                notice: Some((
                    "Refused (mfa_required): approving this action needs a multi-factor \
                     sign-in, and this session's sign-in did not use one. Sign out, sign in \
                     again with multi-factor authentication, and approve it then."
                        .into(),
                    "error",
                )),
                ..Extra::default()
            };
            page(&view, extra, StatusCode::FORBIDDEN).await
        }
        Err(GatewayError::Domain(e)) => {
            let status = match e {
                DomainError::SelfApproval
                | DomainError::AgentsCannotApprove
                | DomainError::NotAnApprover(_)
                | DomainError::MfaRequired(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            let extra = Extra {
                notice: Some((format!("Refused ({}): {e}", e.code()), "error")),
                ..Extra::default()
            };
            page(&view, extra, status).await
        }
        Err(GatewayError::Invalid(why)) => {
            let extra = Extra {
                notice: Some((format!("Refused: {why}"), "error")),
                ..Extra::default()
            };
            page(&view, extra, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(gateway_error(e)),
    }
}

/// A reveal form: only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct RevealForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /console/actions/{id}/reveal`: the action page once with the values masking hides,
/// for a person a policy names with `@reveal` (`Gateway::reveal`, which records a `revealed`
/// entry); anyone else gets the masked page with the refusal (403), recorded as `refused`.
/// Never cached, never re-read live.
pub(crate) async fn reveal(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match show_revealed(&console, &headers, &id, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn show_revealed(
    console: &Console,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let form: RevealForm = serde_urlencoded::from_bytes(body)
        .map_err(|_| ConsoleError::BadRequest("unreadable form".into()))?;
    let signed = session::check_form(console, headers, form.csrf.as_deref()).await?;
    let who = &signed.session.identity;
    let mut view = console.gateway.get(who, id).await.map_err(gateway_error)?;
    let (extra, status) = match console.gateway.reveal(who, id).await {
        Ok(revealed) => {
            let count = revealed.values.len();
            let extra = Extra {
                notice: Some((
                    format!(
                        "Revealed: this page shows the real values masking hides ({count}                          value{}). Your reveal is recorded in the audit log. This page is not                          kept; reload it to mask them again.",
                        if count == 1 { "" } else { "s" }
                    ),
                    "warn",
                )),
                revealed: Some(revealed.values),
                ..Extra::default()
            };
            view.record = revealed.record;
            (extra, StatusCode::OK)
        }
        Err(GatewayError::Domain(e @ DomainError::RevealNotAllowed(_))) => (
            Extra {
                notice: Some((format!("Refused ({}): {e}", e.code()), "error")),
                ..Extra::default()
            },
            StatusCode::FORBIDDEN,
        ),
        Err(e) => return Err(gateway_error(e)),
    };
    let html = render_action(console, &signed, &view, extra).await?;
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// `GET /console/events`: one `change` event whenever actions change (several changes close
/// together make one event), until the session ends. The event carries no id: the page
/// re-reads itself through the gateway, which decides what this person may see.
pub(crate) async fn events(State(console): State<Console>, headers: HeaderMap) -> Response {
    let signed = match session::authenticate(&console, &headers).await {
        Ok(Auth::Signed(s)) => s,
        Ok(Auth::SignedOut) => return ConsoleError::SessionEnded.into_response(),
        Err(e) => return e.into_response(),
    };
    let Some(rx) = console.gateway.changes() else {
        return ConsoleError::Unavailable("this store has no change feed".into()).into_response();
    };
    let left = signed.session.expires_at.millis() - console.gateway.current_time().millis();
    let until = tokio::time::sleep(Duration::from_millis(
        u64::try_from(left.max(0)).unwrap_or(0),
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        match rx.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {
                // Coalesce what is already queued.
                while !matches!(
                    rx.try_recv(),
                    Err(TryRecvError::Empty | TryRecvError::Closed)
                ) {}
                // Not empty: a browser drops an event whose data is empty.
                let event = Event::default().event("change").data("changed");
                Some((Ok::<Event, Infallible>(event), rx))
            }
            Err(RecvError::Closed) => None,
        }
    })
    .take_until(until);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
