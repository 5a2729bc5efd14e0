//! The audit log's endpoints: the signed checkpoint and its key (public, to be gossiped), the
//! entries (people only), and inclusion and consistency proofs.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_api::{
    ActionAudit, ConsistencyProof, ConsistencyQuery, Entries, EntriesQuery, Entry, EntryProof,
    ErrorCode, InclusionProof, InclusionQuery,
};
use countersign_audit::merkle::leaf_hash;
use countersign_audit::Hash;
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::AppState;

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub(crate) async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.gateway.audit().latest().await? {
        Some(cp) => Ok(text(cp.note)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            "no checkpoint yet: the first is signed within a second of the first entry",
        )),
    }
}

pub(crate) async fn public_key(State(state): State<AppState>) -> Response {
    text(format!("{}\n", state.gateway.audit().public_key()))
}

pub(crate) async fn entries(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<EntriesQuery>,
) -> Result<Response, ApiError> {
    let entries = state
        .gateway
        .audit_entries(
            &who,
            q.start.unwrap_or(0),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let entries = entries
        .iter()
        .map(|e| {
            // Writers keep entries far inside the parser's limits; should one still not parse
            // (a row edited in the database), show the bytes that were hashed, never hide them.
            let (entry, entry_text) = match serde_json::from_slice::<Value>(&e.body) {
                Ok(entry) => (entry, None),
                Err(_) => (
                    Value::Null,
                    Some(String::from_utf8_lossy(&e.body).into_owned()),
                ),
            };
            Entry {
                index: e.index,
                leaf_hash: B64.encode(leaf_hash(&e.body)),
                entry,
                entry_text,
            }
        })
        .collect();
    Ok(Json(Entries { entries }).into_response())
}

pub(crate) async fn inclusion(
    State(state): State<AppState>,
    Caller(_who): Caller,
    Query(q): Query<InclusionQuery>,
) -> Result<Response, ApiError> {
    let proof = state
        .gateway
        .audit()
        .inclusion(q.index, q.tree_size)
        .await?;
    Ok(Json(InclusionProof {
        index: q.index,
        tree_size: q.tree_size,
        hashes: b64(&proof.hashes),
    })
    .into_response())
}

pub(crate) async fn consistency(
    State(state): State<AppState>,
    Caller(_who): Caller,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    if q.first > q.second {
        return Err(ApiError::invalid(
            "`first` must not be larger than `second`",
        ));
    }
    let proof = state.gateway.audit().consistency(q.first, q.second).await?;
    Ok(Json(ConsistencyProof {
        first: q.first,
        second: q.second,
        hashes: b64(&proof.hashes),
    })
    .into_response())
}

/// The `audit` member of an action: its entry indexes and, with `proof`, inclusion proofs against
/// the latest checkpoint (entries newer than it are listed as pending).
pub(crate) async fn for_action(
    state: &AppState,
    view: &countersign_gateway::ActionView,
    proof: bool,
) -> Result<ActionAudit, ApiError> {
    let gateway = &state.gateway;
    let indexes = gateway.audit_indexes(view).await?;
    let mut audit = ActionAudit {
        indexes,
        checkpoint: None,
        tree_size: None,
        proofs: None,
        pending: None,
    };
    if !proof {
        return Ok(audit);
    }
    let Some(cp) = gateway.audit().latest().await? else {
        audit.pending = Some(audit.indexes.clone());
        return Ok(audit);
    };
    let size = gateway.audit().open_checkpoint(&cp.note)?.size();
    let mut proofs = Vec::new();
    let mut pending = Vec::new();
    for &i in &audit.indexes {
        if i < size {
            let p = gateway.audit().inclusion(i, size).await?;
            proofs.push(EntryProof {
                index: i,
                hashes: b64(&p.hashes),
            });
        } else {
            pending.push(i);
        }
    }
    audit.checkpoint = Some(cp.note);
    audit.tree_size = Some(size);
    audit.proofs = Some(proofs);
    audit.pending = Some(pending);
    Ok(audit)
}
