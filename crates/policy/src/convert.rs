//! Building Cedar values directly from our types (much cheaper than going through JSON).

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use countersign_core::{Identity, IdentityKind};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// A JSON value as a Cedar value. Cedar has no null and no floats: nulls are dropped from records
/// and sets, and non-integer numbers become their decimal string.
pub(crate) fn value(v: &Value) -> Option<RestrictedExpression> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(value)),
        Value::Object(map) => record(map)?,
    })
}

pub(crate) fn record(map: &Map<String, Value>) -> Option<RestrictedExpression> {
    RestrictedExpression::new_record(
        map.iter()
            .filter_map(|(k, v)| value(v).map(|v| (k.clone(), v))),
    )
    .ok()
}

pub(crate) fn context(
    environment: &str,
    risk: &BTreeSet<String>,
    params: &Map<String, Value>,
    justification: &str,
) -> Option<Context> {
    let risk = RestrictedExpression::new_set(
        risk.iter()
            .map(|r| RestrictedExpression::new_string(r.clone())),
    );
    Context::from_pairs([
        (
            "environment".to_string(),
            RestrictedExpression::new_string(environment.to_string()),
        ),
        ("risk".to_string(), risk),
        ("params".to_string(), record(params)?),
        (
            "justification".to_string(),
            RestrictedExpression::new_string(justification.to_string()),
        ),
    ])
    .ok()
}
