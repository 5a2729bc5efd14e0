//! From a verified token's claims to an [`Identity`]: id, kind, groups (Okta `groups`, Entra
//! `groups`/`roles` with object-id mapping and overage, Keycloak `realm_access.roles`), email,
//! configured claims, and workload rules.

use countersign_core::{Identity, IdentityKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{valid_name, ClaimRule, Issuer};
use crate::error::AuthError;

/// The claim at `path`: a literal key first (URLs as claim names contain dots), then a dotted path.
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn rule_matches(rule: &ClaimRule, claims: &Value) -> bool {
    rule.matches.iter().all(|(path, want)| {
        let Some(got) = claim(claims, path).and_then(as_text) else {
            return false;
        };
        match want.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => &got == want,
        }
    })
}

/// Whether Entra left groups out of the token because there were too many (the "overage"
/// signal: `_claim_names.groups`, or `hasgroups` in implicit-flow tokens).
fn entra_overage(claims: &Value) -> bool {
    claims
        .get("_claim_names")
        .and_then(|n| n.get("groups"))
        .is_some()
        || claims.get("hasgroups").and_then(Value::as_bool) == Some(true)
}

/// The identity these verified claims describe.
pub fn identity(issuer: &Issuer, iss: &str, claims: &Value) -> Result<Identity, AuthError> {
    let cfg = &issuer.config;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::ClaimMissing)?;
    let rule = cfg.rules.iter().find(|r| rule_matches(r, claims));
    if rule.is_none() && cfg.require_rule {
        return Err(AuthError::NoMatchingRule);
    }
    let (id, stable_key) = match rule.and_then(|r| r.id.clone()) {
        // The config names this workload: every token the rule admits is that one identity.
        Some(id) => {
            let key = format!("oidc:{iss}#rule:{id}");
            (id, key)
        }
        None => (
            claim(claims, cfg.id_claim.as_deref().unwrap_or("sub"))
                .and_then(as_text)
                .ok_or(AuthError::ClaimMissing)?,
            format!("oidc:{iss}#{sub}"),
        ),
    };
    if !valid_name(&id) {
        return Err(AuthError::ClaimMissing);
    }
    let kind = match rule {
        Some(r) => r.kind.unwrap_or(IdentityKind::Service),
        None => cfg.kind.unwrap_or(IdentityKind::Human),
    };
    let overage = entra_overage(claims);
    if overage {
        tracing::warn!(
            issuer = iss,
            subject = sub,
            "Entra ID group overage: the token omits the user's groups; treating them as having \
             only the roles in the token (assign app roles, or filter groups to those assigned \
             to the application)"
        );
    }
    let mut groups = BTreeSet::new();
    for path in &issuer.groups_claims {
        if overage && path == "groups" {
            continue;
        }
        for g in strings(claim(claims, path)) {
            let name = if cfg.group_names.is_empty() {
                Some(g)
            } else {
                cfg.group_names.get(&g).cloned()
            };
            if let Some(name) = name.filter(|n| valid_name(n)) {
                groups.insert(name);
            }
        }
    }
    if let Some(r) = rule {
        groups.extend(r.groups.iter().cloned());
    }
    let email = claim(claims, cfg.email_claim.as_deref().unwrap_or("email"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let copied: BTreeMap<String, String> = cfg
        .claims
        .iter()
        .filter_map(|c| claim(claims, c).and_then(as_text).map(|v| (c.clone(), v)))
        .collect();
    Ok(Identity {
        id,
        kind,
        groups,
        email,
        source: Some(format!("oidc:{iss}#{sub}")),
        issuer: Some(iss.to_string()),
        claims: copied,
        sponsor: None,
        stable_key: Some(stable_key),
    })
}
