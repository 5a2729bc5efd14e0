//! One handler per endpoint: extract typed input, call the gateway, shape the output.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_api::{
    Action, AnswerRequest, CredentialFile, CredentialsRequest, ErrorCode, GetQuery, Health,
    RedeemRequest, Redeemed, ReleasedCredential, ReleasedCredentials, ResultRequest, ReviewList,
    ReviewsQuery, SubmitRequest, VoteRequest,
};
use countersign_core::{Ballot, Status, Timestamp, Verdict};
use countersign_gateway::{ActionView, Submission, Submitted};
use std::time::Duration;

use crate::error::ApiError;
use crate::extract::{Caller, JsonBody, MetricsReader, Peer};
use crate::AppState;

/// The API's view of an action the gateway returned.
pub(crate) fn action_view(view: &ActionView) -> Action<'_> {
    Action::new(&view.record, view.grant_token.as_deref())
}

fn action_response(status: StatusCode, view: &ActionView) -> Response {
    (status, Json(action_view(view))).into_response()
}

fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.len() > max => Err(ApiError::invalid(format!(
            "`{field}` is longer than {max} bytes"
        ))),
        other => Ok(other),
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::invalid("`Idempotency-Key` must be 1-255 visible ASCII characters")
                })?;
            Some(key.to_string())
        }
    };
    let submission = Submission {
        action: body.action,
        resource: body.resource,
        environment: body.environment,
        params: body.params,
        justification: bounded("justification", body.justification, 16 * 1024)?,
        on_behalf_of: body.on_behalf_of,
        idempotency_key,
        reuse_open: body.reuse_open.unwrap_or(false),
    };
    let (view, submitted) = state.gateway.submit(&who, submission).await?;
    let status = match submitted {
        Submitted::Reused => StatusCode::OK,
        Submitted::Created | Submitted::Replayed => StatusCode::CREATED,
    };
    let answer = countersign_api::Submitted::new(&view.record, view.grant_token.as_deref());
    let mut resp = (status, Json(answer)).into_response();
    if submitted == Submitted::Replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

pub(crate) async fn get_action(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let view = match q.wait {
        None => state.gateway.get(&who, &id).await?,
        Some(w) => {
            let secs: f64 = w
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| ApiError::invalid("`wait` is a number of seconds, 0 to 60"))?;
            let wait =
                Duration::from_secs_f64(secs.min(countersign_gateway::MAX_WAIT.as_secs_f64()));
            state.gateway.wait(&who, &id, wait).await?
        }
    };
    let audit = crate::audit::for_action(&state, &view, q.proof.unwrap_or(false)).await?;
    Ok((StatusCode::OK, Json(action_view(&view).with_audit(audit))).into_response())
}

/// `POST /v1/actions/{id}/reveal`: the action with its masked values, for a person policy names
/// (`@reveal`); audited either way.
pub(crate) async fn reveal(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let revealed = state.gateway.reveal(&who, &id).await?;
    let view = Action::new(&revealed.record, None).with_revealed(&revealed.values);
    let mut resp = (StatusCode::OK, Json(view)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// A page cursor: opaque to clients (base64url of `created_at:id`, the last action of the
/// previous page).
fn encode_cursor((at, id): &(Timestamp, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.millis()))
}

fn decode_cursor(text: &str) -> Result<(Timestamp, String), ApiError> {
    let bad = || ApiError::invalid("`cursor` is not one this server gave; start without it");
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 256 {
        return Err(bad());
    }
    Ok((Timestamp(at), id.to_string()))
}

pub(crate) async fn list_reviews(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<ReviewsQuery>,
) -> Result<Response, ApiError> {
    let mut statuses = Vec::new();
    for s in q.status.as_deref().unwrap_or("pending").split(',') {
        let st = Status::parse(s.trim())
            .ok_or_else(|| ApiError::invalid(format!("unknown status `{s}`")))?;
        statuses.push(st);
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state.gateway.reviews(&who, statuses, limit, before).await?;
    let list = ReviewList {
        reviews: page.reviews.iter().map(action_view).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    };
    Ok(Json(list).into_response())
}

pub(crate) async fn vote(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VoteRequest>,
) -> Result<Response, ApiError> {
    let comment = bounded("comment", body.comment, 4096)?;
    let ballot = match body.verdict {
        Verdict::Approve | Verdict::Deny if body.params.is_some() => {
            return Err(ApiError::invalid("`params` goes with `modify` only"))
        }
        Verdict::Approve => Ballot::Approve { comment },
        Verdict::Deny => Ballot::Deny { comment },
        Verdict::Modify => Ballot::Modify {
            params: body
                .params
                .ok_or_else(|| ApiError::invalid("`modify` needs `params`: the new parameters"))?,
            comment,
        },
        Verdict::Clarify => Ballot::Clarify {
            question: bounded("question", body.question.or(comment), 4096)?
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| ApiError::invalid("`clarify` needs a `question`"))?,
        },
    };
    let context = countersign_core::VoteContext {
        seen: body.digest,
        ..Default::default()
    };
    let view = state.gateway.vote_in(context, &who, &id, ballot).await?;
    Ok(action_response(StatusCode::OK, &view))
}

pub(crate) async fn answer(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AnswerRequest>,
) -> Result<Response, ApiError> {
    let answer = bounded("answer", Some(body.answer), 16 * 1024)?.unwrap_or_default();
    let view = state.gateway.answer(&who, &id, answer).await?;
    Ok(action_response(StatusCode::OK, &view))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.gateway.cancel(&who, &id).await?;
    Ok(action_response(StatusCode::OK, &view))
}

pub(crate) async fn redeem(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<RedeemRequest>,
) -> Result<Response, ApiError> {
    let r = state.gateway.redeem(&who, &body.token).await?;
    Ok(Json(Redeemed {
        action_id: r.action_id,
        digest: r.digest,
        action: r.spec.action,
        resource: r.spec.resource,
        environment: r.spec.environment,
        params: r.spec.params,
        credentials: r.credentials,
    })
    .into_response())
}

/// `POST /v1/actions/{id}/credentials`: the one answer that carries credential secrets.
pub(crate) async fn credentials(
    State(state): State<AppState>,
    Caller(who): Caller,
    Peer(peer): Peer,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CredentialsRequest>,
) -> Result<Response, ApiError> {
    let public_key = bounded("public_key", body.public_key, 16 * 1024)?;
    let released = state
        .gateway
        .release_credentials(&who, &id, public_key.as_deref(), peer)
        .await?;
    let credentials = released
        .credentials
        .into_iter()
        .map(|c| ReleasedCredential {
            name: c.name,
            kind: c.kind,
            env: c
                .issued
                .env
                .into_iter()
                .map(|(k, v)| (k, v.expose().to_string()))
                .collect(),
            files: c
                .issued
                .files
                .into_iter()
                .map(|f| CredentialFile {
                    env: f.env,
                    name: f.file_name,
                    contents: f.contents.expose().to_string(),
                })
                .collect(),
        })
        .collect();
    let mut resp = Json(ReleasedCredentials {
        action_id: released.action_id,
        expires_at: released.expires_at,
        credentials,
    })
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

pub(crate) async fn report(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResultRequest>,
) -> Result<Response, ApiError> {
    let detail = bounded("detail", body.detail, 16 * 1024)?;
    let view = state
        .gateway
        .report(
            &who,
            &id,
            body.outcome,
            body.exit_code,
            body.output_sha256,
            detail,
        )
        .await?;
    Ok(action_response(StatusCode::OK, &view))
}

/// `GET /v1/whoami`: who the bearer credential proves (a front checks that the name a client
/// gave is its credential's identity; an operator checks a key or token).
pub(crate) async fn whoami(Caller(who): Caller) -> Response {
    Json(countersign_api::WhoAmI {
        id: who.id.clone(),
        kind: who.kind,
        groups: who.groups.clone(),
    })
    .into_response()
}

pub(crate) async fn keys(State(state): State<AppState>) -> Response {
    Json(state.gateway.signer().jwks()).into_response()
}

pub(crate) async fn healthz() -> Response {
    Json(Health::ok()).into_response()
}

/// Readiness: 200 while the store writes; 503 `store_unavailable` with the store's last write
/// failure until a write succeeds again (liveness, `/healthz`, stays 200: restarting would not
/// make a full disk or a broken database writable).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.gateway.readiness() {
        Ok(()) => Json(Health::ready()).into_response(),
        Err(why) => ApiError::new(
            ErrorCode::StoreUnavailable,
            format!("the store cannot write: {why}"),
        )
        .into_response(),
    }
}

pub(crate) async fn metrics(_: MetricsReader, State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.gateway.render_metrics().await,
    )
        .into_response()
}

pub(crate) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI,
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see GET /openapi.json",
    )
}
