//! OCSF (Open Cybersecurity Schema Framework) events, one JSON object per line, for Amazon
//! Security Lake and SIEMs.
//!
//! Classes used (OCSF 1.5.0):
//! - **Authorize Session (3003)**, activity *Assign Privileges* (1): an action `approved`, and a
//!   single-use grant issued — the moment someone is given the right to run a privileged action.
//!   `user` is the requester; `privileges` names the action, resource and digest.
//! - **API Activity (6003)** for everything else a caller did through the gateway: submit
//!   (*Create*), votes, answers, cancels, redemptions, results (*Update*), and refused attempts
//!   (status *Failure*, severity *Medium*, `status_code` = the refusal's code). Configuration and
//!   policy loads and gateway-made transitions (review opened, expired) are *Other* (99).
//!
//! The log records no network addresses, so the required `src_endpoint` is an empty object; the
//! whole original entry is kept under `unmapped` with its index, so nothing is lost in mapping.

use serde_json::{json, Map, Value};
use std::io::{self, Write};

use crate::csv::{ActionContext, Contexts};
use crate::entry::Entry;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.5.0";

const API_ACTIVITY: u64 = 6003;
const AUTHORIZE_SESSION: u64 = 3003;

fn user(uid: &str) -> Value {
    json!({ "uid": uid, "name": uid })
}

/// Maps one entry (with its action's context) to an OCSF event.
fn map(e: &Entry, ctx: &ActionContext, origin: &str) -> Value {
    let refused = e.kind == "refused";
    let failed = refused
        || matches!(e.kind.as_str(), "rejected" | "expired")
        || (e.kind == "submitted" && e.str("effect") == Some("deny"))
        || (e.kind == "result_reported" && e.str("outcome") == Some("failed"));
    let (status_id, status) = if failed {
        (2, "Failure")
    } else {
        (1, "Success")
    };
    let (severity_id, severity) = if refused {
        (3, "Medium")
    } else {
        (1, "Informational")
    };
    let what = if ctx.action.is_empty() {
        String::new()
    } else {
        format!("{} on {}", ctx.action, ctx.resource)
    };
    let message = match (e.kind.as_str(), e.actor.as_deref()) {
        ("refused", Some(a)) => format!(
            "refused {} by {a}: {}",
            e.str("attempted").unwrap_or_default(),
            e.str("code").unwrap_or_default()
        ),
        (k, Some(a)) => format!("{k} by {a} {what}").trim_end().to_string(),
        (k, None) => format!("{k} {what}").trim_end().to_string(),
    };
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "countersign",
            "vendor_name": "countersign",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": format!("{origin}/{}", e.index),
        "log_name": origin,
        "sequence": e.index,
        "original_time": e.time,
        "event_code": e.kind,
    });
    if let Some(id) = &e.action_id {
        metadata["correlation_uid"] = json!(id);
    }
    let unmapped = json!({
        "index": e.index,
        "type": e.kind,
        "action_id": e.action_id,
        "actor": e.actor,
        "event": Value::Object(e.event.clone()),
    });
    let mut ev = Map::new();
    let grant_like = matches!(e.kind.as_str(), "approved" | "grant_issued");
    let (class_uid, category_uid, class_name, category_name, activity_id, activity_name) =
        if grant_like {
            (
                AUTHORIZE_SESSION,
                3,
                "Authorize Session",
                "Identity & Access Management",
                1,
                "Assign Privileges",
            )
        } else {
            let (id, name) = match e.kind.as_str() {
                "submitted" => (1, "Create"),
                "revealed" => (2, "Read"),
                "voted"
                | "clarification_answered"
                | "cancelled"
                | "rejected"
                | "grant_redeemed"
                | "result_reported"
                | "refused" => (3, "Update"),
                _ => (99, "Other"),
            };
            (
                API_ACTIVITY,
                6,
                "API Activity",
                "Application Activity",
                id,
                name,
            )
        };
    ev.insert("class_uid".into(), json!(class_uid));
    ev.insert("class_name".into(), json!(class_name));
    ev.insert("category_uid".into(), json!(category_uid));
    ev.insert("category_name".into(), json!(category_name));
    ev.insert("activity_id".into(), json!(activity_id));
    ev.insert("activity_name".into(), json!(activity_name));
    ev.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    ev.insert(
        "type_name".into(),
        json!(format!("{class_name}: {activity_name}")),
    );
    ev.insert("time".into(), json!(e.at_ms));
    ev.insert("severity_id".into(), json!(severity_id));
    ev.insert("severity".into(), json!(severity));
    ev.insert("status_id".into(), json!(status_id));
    ev.insert("status".into(), json!(status));
    ev.insert("message".into(), json!(message));
    if let Some(code) = e.str("code") {
        ev.insert("status_code".into(), json!(code));
    }
    if let Some(detail) = e.str("comment").or_else(|| e.str("reason")) {
        ev.insert("status_detail".into(), json!(detail));
    }
    ev.insert("metadata".into(), metadata);
    if grant_like {
        let who = if ctx.requester.is_empty() {
            "unknown"
        } else {
            &ctx.requester
        };
        ev.insert("user".into(), user(who));
        let digest = e.str("digest").unwrap_or_default();
        ev.insert(
            "privileges".into(),
            json!([format!("{what} ({digest})").trim_start()]),
        );
        if let Some(jti) = e.str("jti") {
            ev.insert("session".into(), json!({ "uid": jti }));
        }
    } else {
        let actor = match e.actor.as_deref() {
            Some(a) => json!({ "user": user(a) }),
            None => json!({ "app_name": "countersign" }),
        };
        ev.insert("actor".into(), actor);
        let operation = match e.kind.as_str() {
            "voted" => format!("vote.{}", e.str("verdict").unwrap_or_default()),
            "refused" => format!("{}.refused", e.str("attempted").unwrap_or_default()),
            k => k.to_string(),
        };
        ev.insert(
            "api".into(),
            json!({ "operation": operation, "service": { "name": "countersign" } }),
        );
        ev.insert("src_endpoint".into(), json!({}));
        if !ctx.action.is_empty() {
            let mut resource = json!({
                "uid": ctx.resource,
                "type": ctx.action,
                "name": ctx.resource,
            });
            if !ctx.environment.is_empty() {
                resource["labels"] = json!([format!("environment:{}", ctx.environment)]);
            }
            ev.insert("resources".into(), json!([resource]));
        }
    }
    ev.insert("unmapped".into(), unmapped);
    Value::Object(ev)
}

/// One entry as an OCSF event (without the context of earlier entries of its action).
pub fn to_ocsf(e: &Entry, origin: &str) -> Value {
    let ctx = Contexts::default().observe(e);
    map(e, &ctx, origin)
}

/// Writes `entries` as OCSF JSON Lines; returns how many.
pub fn write_ocsf<'a, W: Write>(
    entries: impl IntoIterator<Item = &'a Entry>,
    origin: &str,
    mut w: W,
) -> io::Result<usize> {
    let mut contexts = Contexts::default();
    let mut n = 0;
    for e in entries {
        let ctx = contexts.observe(e);
        serde_json::to_writer(&mut w, &map(e, &ctx, origin))?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}
