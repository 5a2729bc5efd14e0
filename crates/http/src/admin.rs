//! Admin-only endpoints: managed API keys. The secret is in the create response only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_core::IdentityKind;
use countersign_gateway::keys::KeyRequest;
use countersign_store::{rfc3339, ManagedKey};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    identity: String,
    kind: IdentityKind,
    #[serde(default)]
    groups: Vec<String>,
    /// A duration such as `90d`.
    #[serde(default)]
    expires: Option<String>,
}

fn key_json(k: &ManagedKey) -> Value {
    json!({
        "id": k.id,
        "identity": k.identity,
        "kind": k.kind.as_str(),
        "groups": k.groups,
        "created_by": k.created_by,
        "sponsor": k.sponsor,
        "created_at": rfc3339(k.created_at),
        "expires_at": k.expires_at.map(rfc3339),
        "revoked_at": k.revoked_at.map(rfc3339),
    })
}

pub(crate) async fn create_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    let expires_in = body
        .expires
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| {
            ApiError::invalid(format!("`expires` must be a duration like \"90d\": {e}"))
        })?;
    let req = KeyRequest {
        identity: body.identity,
        kind: body.kind,
        groups: body.groups.into_iter().collect(),
        expires_in,
        // The admin creating it: set by the gateway.
        sponsor: None,
    };
    let (secret, key) = state.gateway.create_key(&who, req).await?;
    let mut out = key_json(&key);
    out["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn list_keys(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    let keys = state.gateway.list_keys(&who).await?;
    let items: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": items })).into_response())
}

pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = state.gateway.revoke_key(&who, &id).await?;
    Ok(Json(key_json(&key)).into_response())
}
