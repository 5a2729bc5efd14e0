//! The audit page: the latest signed checkpoint and its tree size, the log's entries (people
//! only: `Gateway::audit_entries` asks the core's `may_read_audit_log`), and for each entry a
//! "verify inclusion" button. `GET /console/audit/proof?index=N` hands the browser the entry's
//! bytes, its inclusion proof and the checkpoint note; the script recomputes the leaf hash and
//! the root with WebCrypto's SHA-256 (RFC 9162 §2.1.3.2) and compares it with the checkpoint's,
//! so the check does not trust this server's arithmetic, only its signed checkpoint.
//! `GET /console/audit/export` downloads the log as `countersign audit export` writes it.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_gateway::export::ExportFormat;
use countersign_gateway::GatewayError;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::session::{self, Auth};
use crate::{ConsoleError, State as Console};

/// Entries shown per page.
const PAGE: u64 = 50;

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    start: Option<u64>,
}

#[derive(Serialize)]
struct Row {
    index: u64,
    time: String,
    kind: String,
    actor: String,
    action_id: Option<String>,
    code: Option<String>,
}

fn unavailable(e: countersign_gateway::GatewayError) -> ConsoleError {
    match e {
        countersign_gateway::GatewayError::Forbidden(why) => ConsoleError::NotAPerson(why),
        other => ConsoleError::Unavailable(other.to_string()),
    }
}

/// `GET /console/audit`.
pub(crate) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let signed = match session::authenticate(&console, &headers).await {
        Ok(Auth::Signed(s)) => s,
        Ok(Auth::SignedOut) => {
            return axum::response::Redirect::to("/console/login?to=%2Fconsole%2Faudit")
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let result = async {
        let gateway = &console.gateway;
        let size = gateway.audit().size().await.map_err(unavailable)?;
        let checkpoint = gateway.audit().latest().await.map_err(unavailable)?;
        let start = q
            .start
            .unwrap_or_else(|| size.saturating_sub(PAGE))
            .min(size);
        let entries = gateway
            .audit_entries(&signed.session.identity, start, PAGE as usize)
            .await
            .map_err(unavailable)?;
        let mut rows: Vec<Row> = entries
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(&e.body).unwrap_or(Value::Null);
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                Row {
                    index: e.index,
                    time: s("time"),
                    kind: s("type"),
                    actor: s("actor"),
                    action_id: e.action_id.clone(),
                    code: v
                        .get("event")
                        .and_then(|ev| ev.get("code"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            })
            .collect();
        rows.reverse();
        console.templates.render(
            "audit.html",
            context! {
                title => "Audit log",
                size => size,
                checkpoint => checkpoint.as_ref().map(|c| c.note.clone()),
                checkpoint_size => checkpoint.as_ref().map(|c| c.size),
                rows => rows,
                older => (start > 0).then(|| start.saturating_sub(PAGE)),
                newer => (start + PAGE < size).then_some(start + PAGE),
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

#[derive(Deserialize)]
pub(crate) struct ProofQuery {
    index: u64,
}

#[derive(Serialize)]
struct ProofAnswer {
    index: u64,
    tree_size: u64,
    /// The entry's canonical bytes (what the leaf hash is over), base64.
    entry: String,
    /// The inclusion path, base64 hashes.
    hashes: Vec<String>,
    /// The signed checkpoint note the proof is against.
    checkpoint: String,
}

/// `GET /console/audit/proof?index=N`: what the browser needs to check entry N against the
/// latest checkpoint.
pub(crate) async fn proof(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<ProofQuery>,
) -> Response {
    let result = async {
        let Auth::Signed(signed) = session::authenticate(&console, &headers).await? else {
            return Err(ConsoleError::SessionEnded);
        };
        let gateway = &console.gateway;
        let cp = gateway
            .audit()
            .latest()
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ConsoleError::BadRequest("no checkpoint has been signed yet".into()))?;
        if q.index >= cp.size {
            return Err(ConsoleError::BadRequest(format!(
                "entry {} is newer than the latest checkpoint ({} entries); it will be in the next one",
                q.index, cp.size
            )));
        }
        let entry = gateway
            .audit_entries(&signed.session.identity, q.index, 1)
            .await
            .map_err(unavailable)?
            .into_iter()
            .next()
            .ok_or(ConsoleError::NotFound)?;
        let proof = gateway
            .audit()
            .inclusion(q.index, cp.size)
            .await
            .map_err(unavailable)?;
        Ok(ProofAnswer {
            index: q.index,
            tree_size: cp.size,
            entry: B64.encode(&entry.body),
            hashes: proof.hashes.iter().map(|h| B64.encode(h)).collect(),
            checkpoint: cp.note,
        })
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => (
            e.status(),
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /console/audit/export?format=jsonl|csv|ocsf`: the whole log up to its latest checkpoint
/// as `countersign audit export` writes it (`Gateway::export_audit`, the same writer), as an
/// attachment. Whoever may read the whole log may download it (people; the gateway says so).
pub(crate) async fn export(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Response {
    let signed = match session::authenticate(&console, &headers).await {
        Ok(Auth::Signed(s)) => s,
        Ok(Auth::SignedOut) => {
            return axum::response::Redirect::to("/console/login?to=%2Fconsole%2Faudit")
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let name = q.format.as_deref().unwrap_or("jsonl");
    let Some(format) = ExportFormat::parse(name) else {
        return ConsoleError::BadRequest("format: use jsonl, csv or ocsf".into()).into_response();
    };
    match console
        .gateway
        .export_audit(&signed.session.identity, format)
        .await
    {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, format.content_type().to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"countersign-audit.{}\"",
                        format.as_str()
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(GatewayError::NotFound) => ConsoleError::BadRequest(
            "no checkpoint has been signed yet: the first is signed within a second of the first entry"
                .into(),
        )
        .into_response(),
        Err(GatewayError::Forbidden(why)) => ConsoleError::Forbidden(why).into_response(),
        Err(e) => unavailable(e).into_response(),
    }
}
