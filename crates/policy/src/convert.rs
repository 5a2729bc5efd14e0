//! Building Cedar values directly from our types (much cheaper than going through JSON).

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use countersign_core::{Analysis, Identity, IdentityKind, Risk};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

pub(crate) fn uid(type_name: &str, id: &str) -> Option<EntityUid> {
    let t = EntityTypeName::from_str(type_name).ok()?;
    Some(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

pub(crate) fn principal_type(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Agent => "Agent",
        IdentityKind::Service => "Service",
        IdentityKind::Human => "Human",
    }
}

/// The principal entity, its groups as parents, and attributes `kind`, `groups` (a set of names)
/// and, when known, `email`, `issuer`, `source` and `claims` (a record of configured token claims).
pub(crate) fn principal_entities(who: &Identity) -> Option<(EntityUid, Entities)> {
    let me = uid(principal_type(who.kind), &who.id)?;
    let groups: Vec<EntityUid> = who.groups.iter().filter_map(|g| uid("Group", g)).collect();
    let mut attrs = HashMap::new();
    attrs.insert(
        "kind".to_string(),
        RestrictedExpression::new_string(who.kind.as_str().to_string()),
    );
    if let Some(email) = &who.email {
        attrs.insert(
            "email".to_string(),
            RestrictedExpression::new_string(email.clone()),
        );
    }
    attrs.insert(
        "groups".to_string(),
        RestrictedExpression::new_set(
            who.groups
                .iter()
                .map(|g| RestrictedExpression::new_string(g.clone())),
        ),
    );
    if let Some(issuer) = &who.issuer {
        attrs.insert(
            "issuer".to_string(),
            RestrictedExpression::new_string(issuer.clone()),
        );
    }
    if let Some(source) = &who.source {
        attrs.insert(
            "source".to_string(),
            RestrictedExpression::new_string(source.clone()),
        );
    }
    if !who.claims.is_empty() {
        let claims = RestrictedExpression::new_record(
            who.claims
                .iter()
                .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
        )
        .ok()?;
        attrs.insert("claims".to_string(), claims);
    }
    let parents: HashSet<EntityUid> = groups.iter().cloned().collect();
    let mut all = vec![Entity::new(me.clone(), attrs, parents).ok()?];
    all.extend(groups.into_iter().map(Entity::with_uid));
    let entities = Entities::from_entities(all, None).ok()?;
    Some((me, entities))
}

/// Why a JSON value has no Cedar form. Evaluation then fails closed (the decision is `deny`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    /// A non-integer number that Cedar's `decimal` (at most 4 fractional digits, within
    /// ±922337203685477.5807) cannot hold exactly.
    #[error("the number {0} has no exact Cedar form (integers, or decimals with at most 4 fractional digits)")]
    Number(String),
    /// A record Cedar refuses (it should not happen for JSON objects).
    #[error("a parameter record cannot be represented in Cedar: {0}")]
    Record(String),
}

/// A JSON value as a Cedar value. Cedar has no null: nulls are dropped from records and sets
/// (`Ok(None)`). Integers are `Long`s; other numbers are `decimal`s when exactly representable,
/// else an error, never a string (a string compared with `>` would make a `forbid` error and not
/// apply).
pub(crate) fn value(v: &Value) -> Result<Option<RestrictedExpression>, ValueError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_decimal(decimal_text(n)?),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                set.extend(value(item)?);
            }
            RestrictedExpression::new_set(set)
        }
        Value::Object(map) => record(map)?,
    }))
}

/// The text of Cedar's `decimal` for a JSON number that is not an `i64`: the shortest decimal
/// that reads back as the same double (what the client wrote, for any sane client), if it has at
/// most four fractional digits and fits Cedar's range.
fn decimal_text(n: &serde_json::Number) -> Result<String, ValueError> {
    let bad = || ValueError::Number(n.to_string());
    let f = n.as_f64().filter(|f| f.is_finite()).ok_or_else(bad)?;
    // Display of f64 is the shortest round-trip form and never uses an exponent.
    let text = f.to_string();
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (text.clone(), "0".to_string()),
    };
    if frac.len() > 4 {
        return Err(bad());
    }
    let digits = int.trim_start_matches('-');
    // Cedar's decimal is an i64 of ten-thousandths: at most 922337203685477 whole units.
    if digits.len() > 15 || digits.parse::<u64>().map_err(|_| bad())? > 922_337_203_685_476 {
        return Err(bad());
    }
    Ok(format!("{int}.{frac}"))
}

pub(crate) fn record(map: &Map<String, Value>) -> Result<RestrictedExpression, ValueError> {
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        if let Some(v) = value(v)? {
            fields.push((k.clone(), v));
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| ValueError::Record(e.to_string()))
}

pub(crate) fn context(
    environment: &str,
    analysis: Option<&Analysis>,
    params: &Map<String, Value>,
    justification: &str,
) -> Result<Context, ValueError> {
    let risk = RestrictedExpression::new_string(
        analysis.map_or(Risk::Low, |a| a.risk).as_str().to_string(),
    );
    let tags = RestrictedExpression::new_set(
        analysis
            .into_iter()
            .flat_map(|a| &a.tags)
            .map(|t| RestrictedExpression::new_string(t.clone())),
    );
    Context::from_pairs([
        (
            "environment".to_string(),
            RestrictedExpression::new_string(environment.to_string()),
        ),
        ("risk".to_string(), risk),
        ("tags".to_string(), tags),
        ("params".to_string(), record(params)?),
        (
            "justification".to_string(),
            RestrictedExpression::new_string(justification.to_string()),
        ),
    ])
    .map_err(|e| ValueError::Record(e.to_string()))
}
