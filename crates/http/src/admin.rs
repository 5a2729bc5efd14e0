//! Admin-only endpoints: managed API keys. The secret is in the create response only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_api::{CreateKeyRequest, CreatedKey, KeyList, ManagedKey};
use countersign_gateway::keys::KeyRequest;

use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::AppState;

/// The API's view of a stored key: everything but its hash (the admin endpoints and `countersign
/// keys list` show the same).
pub fn key_view(k: countersign_store::ManagedKey) -> ManagedKey {
    ManagedKey {
        id: k.id,
        identity: k.identity,
        kind: k.kind,
        groups: k.groups,
        created_by: k.created_by,
        sponsor: k.sponsor,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
    }
}

pub(crate) async fn create_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<CreateKeyRequest>,
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
    let created = CreatedKey {
        key: key_view(key),
        secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn list_keys(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    let keys = state.gateway.list_keys(&who).await?;
    let keys = keys.into_iter().map(key_view).collect();
    Ok(Json(KeyList { keys }).into_response())
}

pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = state.gateway.revoke_key(&who, &id).await?;
    Ok(Json(key_view(key)).into_response())
}
