//! SQL: PostgreSQL (the default) is parsed by PostgreSQL's own parser in `sql_pg.rs`; MySQL's
//! (when the `dialect` parameter says `mysql`/`mariadb`) with `sqlparser`, here. Statement kinds, the tables they touch, DDL, `DROP`, `TRUNCATE`,
//! `UPDATE`/`DELETE` without `WHERE`, privilege and role changes, exports, several statements in
//! one. SQL it cannot parse is `high` and `sql:unparsed`: the database might read it otherwise.

use countersign_core::Risk;
use serde_json::{Map, Value};
use sqlparser::ast::{visit_relations, CopyTarget, ObjectType, Statement};
use sqlparser::dialect::{Dialect, MySqlDialect};
use sqlparser::parser::Parser;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use crate::{count, names, Findings};

/// Deepest nesting the parser follows before giving up (then: `sql:unparsed`).
const RECURSION_LIMIT: usize = 48;

pub(crate) fn run(value: &Value, params: &Map<String, Value>, f: &mut Findings) {
    let texts: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let readable = match value {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    };
    if !readable {
        f.flag(
            Risk::High,
            "sql:unparsed",
            "the SQL parameter is not text; treated as high risk",
        );
        return;
    }
    let mysql = params
        .get("dialect")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("mysql") || d.contains("mariadb")
        });
    if !mysql {
        crate::sql_pg::run(&texts, f);
        return;
    }
    let dialect: &dyn Dialect = &MySqlDialect {};
    let mut statements = Vec::new();
    for text in texts {
        match Parser::new(dialect)
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements())
        {
            Ok(parsed) => statements.extend(parsed),
            Err(_) => {
                f.flag(
                    Risk::High,
                    "sql:unparsed",
                    "the SQL could not be parsed; treated as high risk",
                );
                return;
            }
        }
    }
    several(statements.len(), f);
    let mut summary = Summary::default();
    for statement in &statements {
        statement_findings(statement, f, &mut summary);
    }
    summary.say(f);
}

/// `sql:multi` when one parameter holds several statements (either dialect).
pub(crate) fn several(n: usize, f: &mut Findings) {
    if n > 1 {
        f.flag(
            Risk::Medium,
            "sql:multi",
            format!("runs {}", count(n, "statement", "statements")),
        );
    }
}

/// Counts of what the statements do, by verb, for the impact lines.
#[derive(Default)]
pub(crate) struct Summary {
    /// verb → objects
    lines: BTreeMap<&'static str, Objects>,
}

/// The objects of one verb, in order and once each (the set keeps thousands of distinct names
/// linear), with the noun for one and for several.
type Objects = (Vec<String>, BTreeSet<String>, &'static str, &'static str);

impl Summary {
    pub(crate) fn add(
        &mut self,
        verb: &'static str,
        one: &'static str,
        many: &'static str,
        what: Vec<String>,
    ) {
        let entry = self
            .lines
            .entry(verb)
            .or_insert_with(|| (Vec::new(), BTreeSet::new(), one, many));
        for w in what {
            if entry.1.insert(w.clone()) {
                entry.0.push(w);
            }
        }
    }

    pub(crate) fn say(self, f: &mut Findings) {
        // Most destructive first.
        const ORDER: [&str; 12] = [
            "drops",
            "truncates",
            "deletes from",
            "updates",
            "alters",
            "grants",
            "exports",
            "inserts into",
            "merges into",
            "creates",
            "reads",
            "runs",
        ];
        for verb in ORDER {
            if let Some((objects, _, one, many)) = self.lines.get(verb) {
                if objects.is_empty() {
                    continue;
                }
                f.say(format!(
                    "{verb} {}: {}",
                    count(objects.len(), one, many),
                    names(objects)
                ));
            }
        }
    }
}

fn tables(statement: &Statement) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let _ = visit_relations(statement, |name| {
        let n = name.to_string();
        if seen.insert(n.clone()) {
            out.push(n);
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

fn statement_findings(statement: &Statement, f: &mut Findings, summary: &mut Summary) {
    match statement {
        Statement::Query(q) => {
            let text = q.to_string().to_ascii_uppercase();
            if text.contains("INTO OUTFILE") || text.contains("INTO DUMPFILE") {
                f.tag(Risk::High, "sql:export");
                summary.add("exports", "table", "tables", tables(statement));
            } else if text.contains(" INTO ") && text.starts_with("SELECT") {
                // PostgreSQL's SELECT ... INTO new_table creates a table.
                f.tag(Risk::Medium, "sql:ddl");
                f.tag(Risk::Medium, "sql:write");
                summary.add("creates", "table", "tables", tables(statement));
            } else {
                f.tag(Risk::Low, "sql:read");
                summary.add("reads", "table", "tables", tables(statement));
            }
        }
        Statement::Insert(_) => {
            f.tag(Risk::Medium, "sql:write");
            summary.add("inserts into", "table", "tables", tables(statement));
        }
        Statement::Merge(_) => {
            f.tag(Risk::Medium, "sql:write");
            summary.add("merges into", "table", "tables", tables(statement));
        }
        Statement::Update(u) => {
            f.tag(Risk::Medium, "sql:write");
            let ts = tables(statement);
            if u.selection.is_none() {
                f.flag(
                    Risk::High,
                    "sql:no-where",
                    format!("updates every row of {}", names(&ts)),
                );
            }
            summary.add("updates", "table", "tables", ts);
        }
        Statement::Delete(d) => {
            f.tag(Risk::Medium, "sql:write");
            let ts = tables(statement);
            if d.selection.is_none() && d.using.is_none() {
                f.flag(
                    Risk::High,
                    "sql:no-where",
                    format!("deletes every row of {}", names(&ts)),
                );
            }
            summary.add("deletes from", "table", "tables", ts);
        }
        Statement::Truncate(t) => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:truncate");
            let ts: Vec<String> = t.table_names.iter().map(|t| t.name.to_string()).collect();
            summary.add("truncates", "table", "tables", ts);
        }
        Statement::Drop {
            object_type, names, ..
        } => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:drop");
            let objects: Vec<String> = names.iter().map(ToString::to_string).collect();
            let (one, many) = match object_type {
                ObjectType::Table => ("table", "tables"),
                ObjectType::View | ObjectType::MaterializedView => ("view", "views"),
                ObjectType::Index => ("index", "indexes"),
                ObjectType::Schema => ("schema", "schemas"),
                ObjectType::Database => ("database", "databases"),
                ObjectType::Role | ObjectType::User | ObjectType::Group => ("role", "roles"),
                _ => ("object", "objects"),
            };
            match object_type {
                ObjectType::Schema | ObjectType::Database => {
                    f.tag(Risk::Critical, "sql:drop-database");
                }
                ObjectType::Role | ObjectType::User | ObjectType::Group => {
                    f.tag(Risk::High, "sql:grant");
                }
                _ => {}
            }
            summary.add("drops", one, many, objects);
        }
        Statement::Copy { to, target, .. } => {
            let ts = tables(statement);
            if matches!(target, CopyTarget::Program { .. }) {
                f.flag(
                    Risk::Critical,
                    "sql:program",
                    "runs a program on the database server (COPY ... PROGRAM)",
                );
            }
            if *to {
                f.tag(Risk::High, "sql:export");
                let dest = match target {
                    CopyTarget::Stdout => "to the client",
                    CopyTarget::File { .. } => "to a file on the database server",
                    CopyTarget::Program { .. } => "to a program",
                    CopyTarget::Stdin => "",
                };
                f.say(
                    format!("copies {} {dest}", names(&ts))
                        .trim_end()
                        .to_string(),
                );
                summary.add("exports", "table", "tables", ts);
            } else {
                f.tag(Risk::Medium, "sql:write");
                f.tag(Risk::Medium, "sql:import");
                summary.add("inserts into", "table", "tables", ts);
            }
        }
        Statement::Directory { path, .. } => {
            f.flag(
                Risk::High,
                "sql:export",
                format!("writes query results to the directory {path}"),
            );
        }
        Statement::Unload { to, .. } => {
            f.flag(
                Risk::High,
                "sql:export",
                format!("unloads query results to {to}"),
            );
        }
        Statement::ExportData(_) => {
            f.flag(Risk::High, "sql:export", "exports query results");
        }
        Statement::Grant(_) | Statement::GrantRole(_) => {
            f.tag(Risk::High, "sql:grant");
            summary.add(
                "grants",
                "privilege change",
                "privilege changes",
                vec![short(statement)],
            );
        }
        Statement::Revoke(_) | Statement::RevokeRole(_) | Statement::Deny(_) => {
            f.tag(Risk::High, "sql:grant");
            f.tag(Risk::High, "sql:revoke");
            summary.add(
                "grants",
                "privilege change",
                "privilege changes",
                vec![short(statement)],
            );
        }
        Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_)
        | Statement::AlterDefaultPrivileges(_) => {
            f.tag(Risk::High, "sql:grant");
            f.tag(Risk::High, "sql:role");
            let text = statement.to_string().to_ascii_uppercase();
            if text.contains("SUPERUSER") && !text.contains("NOSUPERUSER") {
                f.flag(Risk::Critical, "sql:superuser", "makes a superuser");
            }
            summary.add(
                "grants",
                "privilege change",
                "privilege changes",
                vec![short(statement)],
            );
        }
        other => keyword_findings(other, f, summary),
    }
}

/// Statements classified by their first keywords (as the parser prints them back).
fn keyword_findings(statement: &Statement, f: &mut Findings, summary: &mut Summary) {
    let text = statement.to_string();
    let upper = text.to_ascii_uppercase();
    let first = upper.split_whitespace().next().unwrap_or("");
    let ts = tables(statement);
    match first {
        "CREATE" | "ALTER" | "COMMENT" | "RENAME" | "REINDEX" | "CLUSTER" | "VACUUM" => {
            f.tag(Risk::Medium, "sql:ddl");
            let hides_code = [
                " FUNCTION ",
                " PROCEDURE ",
                " TRIGGER ",
                " RULE ",
                " EXTENSION ",
            ]
            .iter()
            .any(|k| upper.contains(k));
            if hides_code {
                f.flag(
                    Risk::High,
                    "sql:code",
                    "creates or changes code that runs inside the database",
                );
            }
            if first == "ALTER" && upper.contains(" DROP ") {
                f.tag(Risk::High, "sql:drop");
            }
            let verb = match first {
                "CREATE" => "creates",
                _ => "alters",
            };
            let what = if ts.is_empty() {
                vec![short(statement)]
            } else {
                ts
            };
            summary.add(verb, "object", "objects", what);
        }
        "DROP" => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:drop");
            summary.add("drops", "object", "objects", vec![short(statement)]);
        }
        "CALL" | "EXECUTE" | "DO" | "LOAD" | "INSTALL" | "ATTACH" => {
            f.tag(Risk::Medium, "sql:call");
            summary.add("runs", "statement", "statements", vec![short(statement)]);
        }
        "SET" | "SHOW" | "EXPLAIN" | "DESCRIBE" | "USE" | "BEGIN" | "START" | "COMMIT"
        | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "DECLARE" | "FETCH" | "CLOSE" | "PREPARE"
        | "DEALLOCATE" | "DISCARD" | "RESET" | "LISTEN" | "UNLISTEN" | "NOTIFY" | "ANALYZE" => {
            f.tag(Risk::Low, "sql:session");
        }
        _ => {
            // A statement kind this table does not know: worth a look.
            f.tag(Risk::Medium, "sql:other");
            summary.add("runs", "statement", "statements", vec![short(statement)]);
        }
    }
}

/// The first words of a statement, for an impact line.
fn short(statement: &Statement) -> String {
    crate::cut(&statement.to_string(), 60)
}
