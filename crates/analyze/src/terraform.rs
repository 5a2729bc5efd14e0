//! Terraform: the JSON of `terraform show -json PLAN`. Counts to create, update, delete and
//! replace, by resource type, from `resource_changes[].change.actions`; deletions and
//! replacements of stateful resources (databases, buckets, volumes) are called out.

use countersign_core::Risk;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::{count, names, Findings};

/// Exact resource types that hold data.
const STATEFUL: &[&str] = &[
    "aws_db_instance",
    "aws_rds_cluster",
    "aws_rds_cluster_instance",
    "aws_s3_bucket",
    "aws_ebs_volume",
    "aws_efs_file_system",
    "aws_dynamodb_table",
    "aws_elasticache_cluster",
    "aws_elasticache_replication_group",
    "aws_redshift_cluster",
    "aws_docdb_cluster",
    "aws_neptune_cluster",
    "aws_opensearch_domain",
    "aws_elasticsearch_domain",
    "aws_kinesis_stream",
    "aws_kms_key",
    "aws_secretsmanager_secret",
    "aws_backup_vault",
    "aws_fsx_lustre_file_system",
    "google_sql_database_instance",
    "google_sql_database",
    "google_storage_bucket",
    "google_compute_disk",
    "google_bigquery_dataset",
    "google_bigquery_table",
    "google_spanner_instance",
    "google_spanner_database",
    "google_bigtable_instance",
    "google_filestore_instance",
    "google_redis_instance",
    "google_kms_crypto_key",
    "azurerm_storage_account",
    "azurerm_storage_container",
    "azurerm_managed_disk",
    "azurerm_key_vault",
    "azurerm_redis_cache",
    "kubernetes_persistent_volume_claim",
    "kubernetes_persistent_volume",
    "kubernetes_namespace",
];

/// Parts of a type name that mean it holds data (`azurerm_mssql_database`,
/// `azurerm_postgresql_flexible_server`...).
const STATEFUL_PARTS: &[&str] = &[
    "database",
    "_db_",
    "_sql_",
    "mssql",
    "mysql",
    "postgresql",
    "cosmosdb",
    "_bucket",
    "_volume",
    "_disk",
    "_snapshot",
    "file_system",
];

/// Whether deleting a resource of this type loses data.
pub(crate) fn stateful(kind: &str) -> bool {
    STATEFUL.contains(&kind) || STATEFUL_PARTS.iter().any(|p| kind.contains(p))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Delete,
    Replace,
    Update,
    Create,
    /// Removed from the state, left running (`removed` with `destroy = false`, Terraform 1.7+).
    Forget,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::Delete => "deletes",
            Change::Replace => "replaces",
            Change::Update => "updates",
            Change::Create => "creates",
            Change::Forget => "forgets",
        }
    }
}

pub(crate) fn run(value: &Value, _params: &Map<String, Value>, f: &mut Findings) {
    let Some(plan) = crate::document(value) else {
        f.flag(
            Risk::High,
            "tf:unparsed",
            "the plan is not JSON (use `terraform show -json PLAN`); treated as high risk",
        );
        return;
    };
    let Some(plan) = plan.as_object() else {
        f.flag(
            Risk::High,
            "tf:unparsed",
            "the plan is not a JSON object; treated as high risk",
        );
        return;
    };
    // Terraform's documented rule: reject an unsupported major version. A document that is
    // neither a plan (`format_version`) nor carries changes (e.g. `{"file", "sha256"}` alone, or
    // `{"unavailable": why}`) says nothing about what changes: not "no changes".
    let major = plan
        .get("format_version")
        .and_then(Value::as_str)
        .map(|v| v.split('.').next().unwrap_or(""));
    if major.is_some_and(|m| m != "1") {
        f.flag(
            Risk::High,
            "tf:unparsed",
            "the plan's `format_version` is not 1.x; treated as high risk",
        );
        return;
    }
    if major.is_none() && !plan.contains_key("resource_changes") {
        let why = plan
            .get("unavailable")
            .and_then(Value::as_str)
            .map_or(String::new(), |w| format!(" ({})", crate::cut(w, 200)));
        f.flag(
            Risk::High,
            "tf:unparsed",
            format!("no plan document (`terraform show -json PLAN`){why}; treated as high risk"),
        );
        return;
    }
    let changes = match plan.get("resource_changes") {
        None | Some(Value::Null) => {
            f.tag(Risk::Low, "tf:no-changes");
            f.say("changes no resources");
            return;
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            f.flag(
                Risk::High,
                "tf:unparsed",
                "`resource_changes` is not a list; treated as high risk",
            );
            return;
        }
    };
    // change → type → count
    let mut by: BTreeMap<Change, BTreeMap<String, usize>> = BTreeMap::new();
    let mut stateful_lost: Vec<String> = Vec::new();
    let mut unreadable = 0usize;
    for rc in changes {
        let kind = rc.get("type").and_then(Value::as_str).unwrap_or("?");
        let address = rc.get("address").and_then(Value::as_str).unwrap_or(kind);
        let Some(actions) = rc
            .get("change")
            .and_then(|c| c.get("actions"))
            .and_then(Value::as_array)
        else {
            unreadable += 1;
            continue;
        };
        let has = |a: &str| actions.iter().any(|x| x == a);
        // An action word this analyzer does not know (a newer Terraform's) is not a no-op.
        const KNOWN: &[&str] = &["no-op", "read", "create", "update", "delete", "forget"];
        if actions.is_empty()
            || actions
                .iter()
                .any(|x| !x.as_str().is_some_and(|a| KNOWN.contains(&a)))
        {
            unreadable += 1;
            continue;
        }
        let change = if has("delete") && has("create") {
            Change::Replace
        } else if has("delete") {
            Change::Delete
        } else if has("create") {
            Change::Create
        } else if has("update") {
            Change::Update
        } else if has("forget") {
            Change::Forget
        } else {
            continue; // no-op, read (a data source)
        };
        *by.entry(change)
            .or_default()
            .entry(kind.to_string())
            .or_default() += 1;
        if matches!(change, Change::Delete | Change::Replace) && stateful(kind) {
            stateful_lost.push(format!("{} {address}", change.verb()));
        }
    }
    if unreadable > 0 {
        f.flag(
            Risk::High,
            "tf:unparsed",
            format!(
                "{} without readable actions; treated as high risk",
                count(unreadable, "resource change", "resource changes")
            ),
        );
    }
    if by.is_empty() {
        f.tag(Risk::Low, "tf:no-changes");
        f.say("changes no resources");
        return;
    }
    let total = |c: Change| by.get(&c).map_or(0, |m| m.values().sum::<usize>());
    let mut parts = Vec::new();
    for c in [
        Change::Create,
        Change::Update,
        Change::Delete,
        Change::Replace,
        Change::Forget,
    ] {
        let n = total(c);
        if n > 0 {
            parts.push(format!("{} {n}", c.verb()));
        }
    }
    f.say(format!("{} resources", parts.join(", ")));
    for (c, tag, risk) in [
        (Change::Delete, "tf:delete", Risk::High),
        (Change::Replace, "tf:replace", Risk::High),
        (Change::Update, "tf:update", Risk::Medium),
        (Change::Create, "tf:create", Risk::Medium),
        (Change::Forget, "tf:forget", Risk::Medium),
    ] {
        let Some(types) = by.get(&c) else {
            continue;
        };
        f.tag(risk, tag);
        if matches!(c, Change::Delete | Change::Replace) {
            let list: Vec<String> = types.iter().map(|(t, n)| format!("{n} {t}")).collect();
            f.say(format!("{}: {}", c.verb(), names(&list)));
        }
    }
    if !stateful_lost.is_empty() {
        f.flag(
            Risk::Critical,
            "tf:stateful-delete",
            format!("destroys data: {}", names(&stateful_lost)),
        );
    }
}
