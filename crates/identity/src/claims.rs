//! From a verified token's claims to an [`Identity`]: id, kind, groups (Okta `groups`, Entra
//! `groups`/`roles` with object-id mapping and overage, Keycloak `realm_access.roles`), email,
//! configured claims, and workload rules.

use countersign_core::{Identity, IdentityKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{valid_name, ClaimRule, Issuer};
use crate::error::AuthError;
use crate::lookup::{ContactFacts, EntraObject};

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

/// Longest email address recorded (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// What verified claims prove about how their subject is reached in chat, for
/// [`crate::Registry::record_contact`]:
/// - the `email` claim, lowercased, only when `email_verified` is `true` (a JSON boolean, or the
///   string `"true"` some providers send): the OpenID Connect flag speaks of `email` alone, so
///   the issuer's `email_claim` setting does not change which claim this is;
/// - the Entra object id (`oid`) with its tenant (`tid`), lowercased, only when the tenant is a
///   path segment of the issuer (Entra's issuers are `https://login.microsoftonline.com/{tid}/v2.0`
///   and `https://sts.windows.net/{tid}/`): another provider that lets users or admins set
///   claims named `oid` and `tid` cannot speak for an Entra tenant.
pub fn contact(iss: &str, claims: &Value) -> ContactFacts {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|_| verified)
        .map(str::to_lowercase)
        .filter(|e| plausible_email(e));
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .filter(|v| valid_name(v) && v.len() <= 128)
    };
    let entra = match (text("oid"), text("tid")) {
        (Some(oid), Some(tid)) if issuer_names_tenant(iss, &tid) => Some(EntraObject { oid, tid }),
        _ => None,
    };
    ContactFacts { email, entra }
}

/// Whether `e` looks like one address: `local@domain`, no spaces or controls, not too long.
fn plausible_email(e: &str) -> bool {
    e.len() <= MAX_EMAIL
        && valid_name(e)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}

/// Whether the tenant `tid` is a whole path segment of the issuer URL `iss`.
fn issuer_names_tenant(iss: &str, tid: &str) -> bool {
    let path = iss
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    path.split('/').any(|seg| seg.eq_ignore_ascii_case(tid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENTRA: &str =
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    #[test]
    fn an_email_is_recorded_only_when_the_token_says_it_is_verified() {
        let with = |v: Value| {
            contact(
                "https://idp.example",
                &json!({"email": "Dave@Example.COM", "email_verified": v}),
            )
        };
        assert_eq!(with(json!(true)).email.as_deref(), Some("dave@example.com"));
        assert_eq!(
            with(json!("true")).email.as_deref(),
            Some("dave@example.com")
        );
        for no in [
            json!(false),
            json!("false"),
            json!("yes"),
            json!(1),
            Value::Null,
        ] {
            assert_eq!(with(no.clone()).email, None, "{no}");
        }
        assert_eq!(
            contact("https://idp.example", &json!({"email": "dave@example.com"})).email,
            None
        );
        // Only `email`: the flag says nothing of any other claim.
        let other = json!({"upn": "dave@example.com", "email_verified": true});
        assert_eq!(contact("https://idp.example", &other).email, None);
        for bad in [
            "",
            "dave",
            "@example.com",
            "dave@",
            "da ve@example.com",
            "a@b@c",
        ] {
            let c = contact(
                "https://idp.example",
                &json!({"email": bad, "email_verified": true}),
            );
            assert_eq!(c.email, None, "{bad}");
        }
    }

    #[test]
    fn an_entra_object_id_is_recorded_only_from_its_tenants_issuer() {
        let oid = "0A1B2C3D-0000-4000-8000-000000000001";
        let c = contact(ENTRA, &json!({"oid": oid, "tid": TID.to_uppercase()}));
        assert_eq!(
            c.entra,
            Some(EntraObject {
                oid: oid.to_ascii_lowercase(),
                tid: TID.into()
            })
        );
        let v1 = format!("https://sts.windows.net/{TID}/");
        assert!(contact(&v1, &json!({"oid": oid, "tid": TID}))
            .entra
            .is_some());
        // Another provider's claims named like Entra's, or another tenant's, or half of them.
        for (iss, claims) in [
            ("https://idp.example", json!({"oid": oid, "tid": TID})),
            (
                ENTRA,
                json!({"oid": oid, "tid": "00000000-0000-0000-0000-000000000000"}),
            ),
            (
                "https://72f988bf-86f1-41af-91ab-2d7cd011db47.evil.example/x",
                json!({"oid": oid, "tid": TID}),
            ),
            (ENTRA, json!({"oid": oid})),
            (ENTRA, json!({"tid": TID})),
            (ENTRA, json!({"oid": "", "tid": TID})),
            (ENTRA, json!({"oid": oid, "tid": ""})),
        ] {
            assert_eq!(contact(iss, &claims).entra, None, "{iss} {claims}");
        }
    }
}
