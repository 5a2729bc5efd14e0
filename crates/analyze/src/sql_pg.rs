//! PostgreSQL: parsed by PostgreSQL's own parser (`pg_query`, i.e. libpg_query, the server's
//! grammar compiled as a library), so what is classified is what the server would run. A
//! statement the server's parser rejects is `sql:unparsed` (high), never guessed at.
//!
//! Besides each statement's kind, the whole tree is searched: a data-modifying `WITH` (`WITH d AS
//! (DELETE FROM t RETURNING *) SELECT * FROM d`) writes even though it starts with `SELECT`;
//! `EXPLAIN ANALYZE`, `PREPARE` and `DECLARE` run or store the statement they wrap, which is
//! classified as if it ran.

use countersign_core::Risk;
use pg_query::protobuf::{ObjectType, RawStmt};
use pg_query::{NodeEnum, NodeRef};
use std::collections::BTreeSet;

use crate::sql::{several, Summary};
use crate::{names, Findings};

/// Functions that reach outside the database or its data: files, programs, other servers,
/// other sessions, large-object export.
const DANGEROUS_FUNCTIONS: [&str; 14] = [
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_export",
    "lo_import",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "set_config",
];

/// Parses `texts` with PostgreSQL's parser and adds what the statements do to `f`.
pub(crate) fn run(texts: &[&str], f: &mut Findings) {
    let mut statements: Vec<(String, NodeEnum)> = Vec::new();
    for text in texts {
        // The crate's tree helpers assume the trees libpg_query makes; a panic in them is
        // treated as the SQL being unreadable, never as an answer.
        let parsed = std::panic::catch_unwind(|| pg_query::parse(text));
        match parsed {
            Ok(Ok(result)) => {
                for raw in result.protobuf.stmts {
                    let source = statement_text(text, &raw);
                    if let Some(node) = raw.stmt.and_then(|n| n.node) {
                        statements.push((source, node));
                    }
                }
            }
            Ok(Err(_)) | Err(_) => {
                f.flag(
                    Risk::High,
                    "sql:unparsed",
                    "PostgreSQL's parser rejects this SQL; treated as high risk",
                );
                return;
            }
        }
    }
    several(statements.len(), f);
    let mut summary = Summary::default();
    for (text, node) in &statements {
        let ts = tables(node);
        let s = Statement { text, tables: &ts };
        statement(node.to_ref(), &s, f, &mut summary);
        nested(node, &s, f, &mut summary);
    }
    summary.say(f);
}

/// The statement's own text (for impact lines), from the offsets libpg_query reports.
fn statement_text(text: &str, raw: &RawStmt) -> String {
    let start = usize::try_from(raw.stmt_location).unwrap_or(0);
    let end = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => text.len(),
        Ok(len) => start.saturating_add(len).min(text.len()),
    };
    text.get(start..end).unwrap_or(text).trim().to_string()
}

/// The tables a statement reads or writes (anywhere in it), in order, once each.
fn tables(node: &NodeEnum) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, ..) in node.nodes() {
        if let NodeRef::RangeVar(v) = n {
            let name = if v.schemaname.is_empty() {
                v.relname.clone()
            } else {
                format!("{}.{}", v.schemaname, v.relname)
            };
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    out
}

/// Writes and dangerous calls anywhere inside a statement (data-modifying `WITH`, functions).
fn nested(node: &NodeEnum, s: &Statement<'_>, f: &mut Findings, summary: &mut Summary) {
    for (n, depth, ..) in node.nodes() {
        if depth <= 1 {
            continue;
        }
        match n {
            NodeRef::InsertStmt(_)
            | NodeRef::UpdateStmt(_)
            | NodeRef::DeleteStmt(_)
            | NodeRef::MergeStmt(_) => statement(n, s, f, summary),
            NodeRef::FuncCall(c) => {
                let name = c
                    .funcname
                    .last()
                    .and_then(|n| match &n.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.to_ascii_lowercase()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if DANGEROUS_FUNCTIONS.contains(&name.as_str()) {
                    f.flag(
                        Risk::High,
                        "sql:call",
                        format!("calls {name}(), which reaches outside the data"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn object_name(node: &pg_query::protobuf::Node) -> String {
    match &node.node {
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .filter_map(|i| match &i.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("."),
        Some(NodeEnum::String(s)) => s.sval.clone(),
        Some(NodeEnum::TypeName(t)) => t
            .names
            .iter()
            .filter_map(|i| match &i.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("."),
        _ => "?".to_string(),
    }
}

fn short(text: &str) -> String {
    crate::cut(text, 60)
}

fn grants(text: &str, summary: &mut Summary) {
    summary.add(
        "grants",
        "privilege change",
        "privilege changes",
        vec![short(text)],
    );
}

/// A top-level statement: its text and every table it names.
struct Statement<'a> {
    text: &'a str,
    tables: &'a [String],
}

/// One statement's kind (the node may be nested inside `s`).
fn statement(node: NodeRef<'_>, s: &Statement<'_>, f: &mut Findings, summary: &mut Summary) {
    let text = s.text;
    let upper = text.to_ascii_uppercase();
    match node {
        NodeRef::SelectStmt(sel) => {
            if sel.into_clause.is_some() {
                // SELECT ... INTO new_table creates a table.
                f.tag(Risk::Medium, "sql:ddl");
                f.tag(Risk::Medium, "sql:write");
                summary.add("creates", "table", "tables", s.tables.to_vec());
            } else {
                f.tag(Risk::Low, "sql:read");
                summary.add("reads", "table", "tables", s.tables.to_vec());
            }
        }
        NodeRef::InsertStmt(_) => {
            f.tag(Risk::Medium, "sql:write");
            summary.add("inserts into", "table", "tables", s.tables.to_vec());
        }
        NodeRef::MergeStmt(_) => {
            f.tag(Risk::Medium, "sql:write");
            summary.add("merges into", "table", "tables", s.tables.to_vec());
        }
        NodeRef::UpdateStmt(u) => {
            f.tag(Risk::Medium, "sql:write");
            let ts = s.tables.to_vec();
            if u.where_clause.is_none() {
                f.flag(
                    Risk::High,
                    "sql:no-where",
                    format!("updates every row of {}", names(&ts)),
                );
            }
            summary.add("updates", "table", "tables", ts);
        }
        NodeRef::DeleteStmt(d) => {
            f.tag(Risk::Medium, "sql:write");
            let ts = s.tables.to_vec();
            if d.where_clause.is_none() && d.using_clause.is_empty() {
                f.flag(
                    Risk::High,
                    "sql:no-where",
                    format!("deletes every row of {}", names(&ts)),
                );
            }
            summary.add("deletes from", "table", "tables", ts);
        }
        NodeRef::TruncateStmt(_) => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:truncate");
            summary.add("truncates", "table", "tables", s.tables.to_vec());
        }
        NodeRef::DropStmt(d) => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:drop");
            let objects: Vec<String> = d.objects.iter().map(object_name).collect();
            let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
            let (one, many) = match kind {
                ObjectType::ObjectTable | ObjectType::ObjectForeignTable => ("table", "tables"),
                ObjectType::ObjectView | ObjectType::ObjectMatview => ("view", "views"),
                ObjectType::ObjectIndex => ("index", "indexes"),
                ObjectType::ObjectSchema => ("schema", "schemas"),
                _ => ("object", "objects"),
            };
            if kind == ObjectType::ObjectSchema {
                f.tag(Risk::Critical, "sql:drop-database");
            }
            summary.add("drops", one, many, objects);
        }
        NodeRef::DropdbStmt(d) => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:drop");
            f.tag(Risk::Critical, "sql:drop-database");
            summary.add("drops", "database", "databases", vec![d.dbname.clone()]);
        }
        NodeRef::DropRoleStmt(_) => {
            f.tag(Risk::High, "sql:ddl");
            f.tag(Risk::High, "sql:drop");
            f.tag(Risk::High, "sql:grant");
            summary.add("drops", "role", "roles", vec![short(text)]);
        }
        NodeRef::CopyStmt(c) => {
            let ts = s.tables.to_vec();
            if c.is_program {
                f.flag(
                    Risk::Critical,
                    "sql:program",
                    "runs a program on the database server (COPY ... PROGRAM)",
                );
            }
            if c.is_from {
                f.tag(Risk::Medium, "sql:write");
                f.tag(Risk::Medium, "sql:import");
                summary.add("inserts into", "table", "tables", ts);
            } else {
                f.tag(Risk::High, "sql:export");
                let dest = if c.is_program {
                    "to a program"
                } else if c.filename.is_empty() {
                    "to the client"
                } else {
                    "to a file on the database server"
                };
                f.say(format!("copies {} {dest}", names(&ts)));
                summary.add("exports", "table", "tables", ts);
            }
        }
        NodeRef::GrantStmt(g) => {
            f.tag(Risk::High, "sql:grant");
            if !g.is_grant {
                f.tag(Risk::High, "sql:revoke");
            }
            grants(text, summary);
        }
        NodeRef::GrantRoleStmt(g) => {
            f.tag(Risk::High, "sql:grant");
            if !g.is_grant {
                f.tag(Risk::High, "sql:revoke");
            }
            grants(text, summary);
        }
        NodeRef::CreateRoleStmt(_)
        | NodeRef::AlterRoleStmt(_)
        | NodeRef::AlterRoleSetStmt(_)
        | NodeRef::AlterDefaultPrivilegesStmt(_)
        | NodeRef::AlterOwnerStmt(_)
        | NodeRef::ReassignOwnedStmt(_)
        | NodeRef::DropOwnedStmt(_) => {
            f.tag(Risk::High, "sql:grant");
            f.tag(Risk::High, "sql:role");
            if upper.contains("SUPERUSER") && !upper.contains("NOSUPERUSER") {
                f.flag(Risk::Critical, "sql:superuser", "makes a superuser");
            }
            grants(text, summary);
        }
        NodeRef::CreateFunctionStmt(_)
        | NodeRef::CreateTrigStmt(_)
        | NodeRef::RuleStmt(_)
        | NodeRef::CreateExtensionStmt(_)
        | NodeRef::AlterExtensionStmt(_)
        | NodeRef::CreateEventTrigStmt(_)
        | NodeRef::CreatePlangStmt(_)
        | NodeRef::AlterFunctionStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            f.flag(
                Risk::High,
                "sql:code",
                "creates or changes code that runs inside the database",
            );
            summary.add("creates", "object", "objects", vec![short(text)]);
        }
        NodeRef::DoStmt(_) => {
            f.tag(Risk::Medium, "sql:call");
            f.flag(
                Risk::High,
                "sql:code",
                "runs an anonymous code block inside the database (DO)",
            );
            summary.add("runs", "statement", "statements", vec![short(text)]);
        }
        NodeRef::AlterSystemStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            f.flag(
                Risk::High,
                "sql:system",
                "changes the server's configuration (ALTER SYSTEM)",
            );
            summary.add("alters", "object", "objects", vec![short(text)]);
        }
        NodeRef::AlterTableStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            if upper.contains(" DROP ") {
                f.tag(Risk::High, "sql:drop");
            }
            let ts = s.tables.to_vec();
            summary.add("alters", "object", "objects", ts);
        }
        NodeRef::CreateStmt(_)
        | NodeRef::IndexStmt(_)
        | NodeRef::ViewStmt(_)
        | NodeRef::CreateSchemaStmt(_)
        | NodeRef::CreatedbStmt(_)
        | NodeRef::CreateSeqStmt(_)
        | NodeRef::CompositeTypeStmt(_)
        | NodeRef::CreateEnumStmt(_)
        | NodeRef::CreateDomainStmt(_)
        | NodeRef::CreatePolicyStmt(_)
        | NodeRef::CreateTableSpaceStmt(_)
        | NodeRef::CreateForeignTableStmt(_)
        | NodeRef::CreatePublicationStmt(_)
        | NodeRef::CreateSubscriptionStmt(_)
        | NodeRef::DefineStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            let ts = s.tables.to_vec();
            let what = if ts.is_empty() { vec![short(text)] } else { ts };
            summary.add("creates", "object", "objects", what);
        }
        NodeRef::CreateTableAsStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            f.tag(Risk::Medium, "sql:write");
            summary.add("creates", "table", "tables", s.tables.to_vec());
        }
        NodeRef::RenameStmt(_)
        | NodeRef::AlterObjectSchemaStmt(_)
        | NodeRef::CommentStmt(_)
        | NodeRef::ReindexStmt(_)
        | NodeRef::ClusterStmt(_)
        | NodeRef::VacuumStmt(_)
        | NodeRef::AlterSeqStmt(_)
        | NodeRef::AlterDomainStmt(_)
        | NodeRef::AlterEnumStmt(_)
        | NodeRef::AlterPolicyStmt(_)
        | NodeRef::AlterDatabaseStmt(_)
        | NodeRef::AlterDatabaseSetStmt(_)
        | NodeRef::RefreshMatViewStmt(_)
        | NodeRef::AlterTypeStmt(_)
        | NodeRef::AlterPublicationStmt(_)
        | NodeRef::AlterSubscriptionStmt(_)
        | NodeRef::DropSubscriptionStmt(_)
        | NodeRef::DropTableSpaceStmt(_)
        | NodeRef::SecLabelStmt(_) => {
            f.tag(Risk::Medium, "sql:ddl");
            if upper.contains(" DROP ") {
                f.tag(Risk::High, "sql:drop");
            }
            let ts = s.tables.to_vec();
            let what = if ts.is_empty() { vec![short(text)] } else { ts };
            summary.add("alters", "object", "objects", what);
        }
        NodeRef::CallStmt(_) | NodeRef::ExecuteStmt(_) | NodeRef::LoadStmt(_) => {
            f.tag(Risk::Medium, "sql:call");
            summary.add("runs", "statement", "statements", vec![short(text)]);
        }
        // These run or keep the statement they wrap: judged as that statement.
        NodeRef::ExplainStmt(e) => {
            if let Some(q) = e.query.as_ref().and_then(|q| q.node.as_ref()) {
                statement(q.to_ref(), s, f, summary);
            }
        }
        NodeRef::PrepareStmt(p) => {
            if let Some(q) = p.query.as_ref().and_then(|q| q.node.as_ref()) {
                statement(q.to_ref(), s, f, summary);
            }
        }
        NodeRef::DeclareCursorStmt(d) => {
            if let Some(q) = d.query.as_ref().and_then(|q| q.node.as_ref()) {
                statement(q.to_ref(), s, f, summary);
            }
        }
        NodeRef::VariableSetStmt(_)
        | NodeRef::VariableShowStmt(_)
        | NodeRef::TransactionStmt(_)
        | NodeRef::FetchStmt(_)
        | NodeRef::ClosePortalStmt(_)
        | NodeRef::DeallocateStmt(_)
        | NodeRef::DiscardStmt(_)
        | NodeRef::ListenStmt(_)
        | NodeRef::UnlistenStmt(_)
        | NodeRef::NotifyStmt(_)
        | NodeRef::CheckPointStmt(_)
        | NodeRef::LockStmt(_)
        | NodeRef::ConstraintsSetStmt(_) => {
            f.tag(Risk::Low, "sql:session");
        }
        _ => {
            // A statement kind this table does not know: worth a look.
            f.tag(Risk::Medium, "sql:other");
            summary.add("runs", "statement", "statements", vec![short(text)]);
        }
    }
}

/// What kind of statement a PostgreSQL statement is, for a front that names actions after it
/// (the PostgreSQL wire proxy's `sql.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// Reads (`SELECT`, `TABLE`, `VALUES`, `SHOW` is `Other`).
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE` and `MERGE`.
    Update,
    /// `DELETE`.
    Delete,
    /// Schema changes: `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `SELECT INTO`, maintenance.
    Ddl,
    /// Privileges and roles: `GRANT`, `REVOKE`, `CREATE ROLE`, `ALTER ROLE`, owners.
    Grant,
    /// `COPY`, either way.
    Copy,
    /// Everything else: session and transaction control, `DO`, `CALL`, `LISTEN`, `SET`...
    Other,
}

impl SqlKind {
    /// The lower-case name (`select`, `ddl`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SqlKind::Select => "select",
            SqlKind::Insert => "insert",
            SqlKind::Update => "update",
            SqlKind::Delete => "delete",
            SqlKind::Ddl => "ddl",
            SqlKind::Grant => "grant",
            SqlKind::Copy => "copy",
            SqlKind::Other => "other",
        }
    }
}

/// One statement of a query string, as PostgreSQL's parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgStatement {
    /// The statement's own text (trimmed, without the `;`).
    pub text: String,
    /// Byte offsets of the statement in the query string (`text` is `query[start..end]` trimmed).
    pub start: usize,
    /// See `start`.
    pub end: usize,
    /// What it does. A statement that writes anywhere (a data-modifying `WITH`) is its write.
    pub kind: SqlKind,
    /// The tables it names, in order, once each.
    pub tables: Vec<String>,
}

/// PostgreSQL's parser rejects the query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PostgreSQL's parser rejects this SQL: {0}")]
pub struct Unparsed(pub String);

/// Splits a query string (a simple-query message may hold several statements) into its
/// statements with PostgreSQL's own parser, each with its kind and tables. Empty statements
/// (`;;`) are not statements, as for the server.
pub fn pg_statements(query: &str) -> Result<Vec<PgStatement>, Unparsed> {
    let parsed = std::panic::catch_unwind(|| pg_query::parse(query));
    let result = match parsed {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return Err(Unparsed(e.to_string())),
        Err(_) => return Err(Unparsed("the parser failed".into())),
    };
    let mut out = Vec::new();
    for raw in result.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(query.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => query.len(),
            Ok(len) => start.saturating_add(len).min(query.len()),
        };
        let text = statement_text(query, &raw);
        let Some(node) = raw.stmt.and_then(|n| n.node) else {
            continue;
        };
        let tables = tables(&node);
        let kind = std::panic::catch_unwind(|| kind_of(&node, &text, &tables))
            .map_err(|_| Unparsed("the parser's tree could not be read".into()))?;
        out.push(PgStatement {
            text,
            start,
            end,
            kind,
            tables,
        });
    }
    Ok(out)
}

/// The statement's kind: a write anywhere in it wins, then what the analyzer says of its top.
fn kind_of(node: &NodeEnum, text: &str, tables: &[String]) -> SqlKind {
    let top = match node {
        NodeEnum::ExplainStmt(e) => e.query.as_ref().and_then(|q| q.node.as_ref()),
        NodeEnum::PrepareStmt(p) => p.query.as_ref().and_then(|q| q.node.as_ref()),
        NodeEnum::DeclareCursorStmt(d) => d.query.as_ref().and_then(|q| q.node.as_ref()),
        other => Some(other),
    };
    let Some(top) = top else {
        return SqlKind::Other;
    };
    if let NodeEnum::CopyStmt(_) = top {
        return SqlKind::Copy;
    }
    let mut f = Findings::default();
    let mut summary = Summary::default();
    let s = Statement { text, tables };
    statement(top.to_ref(), &s, &mut f, &mut summary);
    if f.tags.contains("sql:grant") {
        return SqlKind::Grant;
    }
    if f.tags.contains("sql:ddl") {
        return SqlKind::Ddl;
    }
    let mut write = None;
    for (n, ..) in top.nodes() {
        let k = match n {
            NodeRef::DeleteStmt(_) => SqlKind::Delete,
            NodeRef::UpdateStmt(_) | NodeRef::MergeStmt(_) => SqlKind::Update,
            NodeRef::InsertStmt(_) => SqlKind::Insert,
            _ => continue,
        };
        // The most destructive write names the statement.
        write = Some(match (write, k) {
            (Some(SqlKind::Delete), _) | (_, SqlKind::Delete) => SqlKind::Delete,
            (Some(SqlKind::Update), _) | (_, SqlKind::Update) => SqlKind::Update,
            _ => SqlKind::Insert,
        });
    }
    if let Some(w) = write {
        return w;
    }
    if f.tags.contains("sql:read") {
        return SqlKind::Select;
    }
    SqlKind::Other
}

#[cfg(test)]
mod statements_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kinds(q: &str) -> Vec<&'static str> {
        pg_statements(q)
            .unwrap()
            .iter()
            .map(|s| s.kind.as_str())
            .collect()
    }

    #[test]
    fn a_query_string_splits_into_its_statements_with_their_kinds() {
        let q = "SELECT * FROM a; delete from b where id = 1;;UPDATE c SET x = 1; DROP TABLE d";
        let st = pg_statements(q).unwrap();
        assert_eq!(kinds(q), ["select", "delete", "update", "ddl"]);
        assert_eq!(st[1].text, "delete from b where id = 1");
        assert_eq!(st[1].tables, ["b"]);
        assert_eq!(&q[st[3].start..st[3].end].trim(), &"DROP TABLE d");
        assert_eq!(
            kinds("GRANT SELECT ON a TO x; COPY a TO STDOUT; BEGIN; SET x = 1; TRUNCATE a"),
            ["grant", "copy", "other", "other", "ddl"]
        );
        assert_eq!(
            kinds("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d; INSERT INTO a VALUES (1); MERGE INTO a USING b ON true WHEN MATCHED THEN DELETE"),
            ["delete", "insert", "update"]
        );
        assert_eq!(
            kinds("EXPLAIN ANALYZE DELETE FROM a; CREATE ROLE r SUPERUSER"),
            ["delete", "grant"]
        );
        assert_eq!(kinds("  ; -- nothing\n"), Vec::<&str>::new());
        assert!(pg_statements("SELEC 1").is_err());
    }
}
