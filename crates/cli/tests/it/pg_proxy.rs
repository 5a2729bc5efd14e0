//! The PostgreSQL wire proxy (`countersign-pgproxy`) with real clients against the local
//! PostgreSQL (`COUNTERSIGN_TEST_POSTGRES`, the server's superuser, set by scripts/test): `psql`
//! (Debian's postgresql-client) through the proxy; reviews voted through the HTTP API while the
//! client waits.

use crate::support::{self, Gw};
use countersign_enforce::{Gates, RemoteGates};
use countersign_pgproxy::{Options, Upstream};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Reads are allowed; writes with a WHERE too; writes without WHERE and DDL wait for an SRE;
/// dropping is forbidden.
pub const PG_POLICIES: &str = r#"
@id("pg-read") permit (principal, action == Action::"sql.select", resource);
@id("pg-session") permit (principal, action == Action::"sql.other", resource)
when { context.tags.contains("sql:session") };
@id("pg-insert") permit (principal, action == Action::"sql.insert", resource);
@id("pg-copy") permit (principal, action == Action::"sql.copy", resource);
@id("pg-update") permit (principal, action == Action::"sql.update", resource)
when { !context.tags.contains("sql:no-where") };
@id("pg-delete") permit (principal, action == Action::"sql.delete", resource)
when { !context.tags.contains("sql:no-where") };
@id("pg-update-all") @effect("review") @approvers("group:sre") @reason("writes without WHERE need an SRE")
permit (principal, action == Action::"sql.update", resource) when { context.tags.contains("sql:no-where") };
@id("pg-delete-all") @effect("review") @approvers("group:sre") @reason("writes without WHERE need an SRE")
permit (principal, action == Action::"sql.delete", resource) when { context.tags.contains("sql:no-where") };
@id("pg-ddl") @effect("review") @approvers("group:sre") @reason("DDL waits for an SRE")
permit (principal, action == Action::"sql.ddl", resource);
@id("pg-no-drop") @reason("dropping tables is forbidden")
forbid (principal, action == Action::"sql.ddl", resource) when { context.tags.contains("sql:drop") };
"#;

pub fn admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES").expect(
        "COUNTERSIGN_TEST_POSTGRES must name a PostgreSQL superuser URL, e.g. postgres://postgres@127.0.0.1:5432/test (scripts/test sets it)",
    )
}

pub async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A gateway, a proxy in front of the test database and a fresh table `table` (id, v) with
/// rows 1, 2, 3.
pub struct Pg {
    pub gw: Gw,
    pub addr: SocketAddr,
    pub table: String,
    proxy: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.proxy.abort();
        // Also when a test failed before its own clean-up: no table left behind.
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", &admin_url(), "-c"])
            .arg(format!("DROP TABLE IF EXISTS {}", self.table))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn database() -> String {
    Upstream::parse(&admin_url()).unwrap().database
}

impl Pg {
    pub async fn start() -> Pg {
        let dir = tempfile::tempdir().unwrap();
        let config = support::write_config(dir.path(), "");
        std::fs::write(dir.path().join("policies/pg.cedar"), PG_POLICIES).unwrap();
        let (url, server) = support::serve(&config).await;
        let gw = Gw::from_parts(url, support::client(), dir, server);
        let gates: Arc<dyn Gates> = Arc::new(RemoteGates::new(&gw.url).unwrap());
        Pg::with_gates(gw, gates, |_| {}).await
    }

    pub async fn with_gates(
        gw: Gw,
        gates: Arc<dyn Gates>,
        configure: impl FnOnce(&mut Options),
    ) -> Pg {
        Pg::with_upstream(gw, gates, &admin_url(), configure).await
    }

    pub async fn with_upstream(
        gw: Gw,
        gates: Arc<dyn Gates>,
        upstream: &str,
        configure: impl FnOnce(&mut Options),
    ) -> Pg {
        let upstream = Upstream::parse(upstream).unwrap();
        let mut opts = Options::new(
            "prod-app".into(),
            upstream,
            countersign_gateway::system_clock(),
        );
        opts.progress_every = Duration::from_millis(300);
        opts.startup_timeout = Duration::from_secs(2);
        configure(&mut opts);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = tokio::spawn(countersign_pgproxy::serve(
            listener,
            gates,
            opts,
            std::future::pending(),
        ));
        let table = format!("pgp_{:08x}", rand::random::<u32>());
        admin()
            .await
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, v text); INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')"
            ))
            .await
            .unwrap();
        Pg {
            gw,
            addr,
            table,
            proxy,
        }
    }

    /// `psql` as `who` (password `tok-<who>`) running each of `commands` (`-c`, one session).
    pub fn psql(&self, who: &str, commands: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("psql");
        c.args(["-X", "-A", "-t", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.addr.port().to_string(),
                "-U",
                who,
                "-d",
                &database(),
            ])
            .env("PGPASSWORD", format!("tok-{who}"))
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for cmd in commands {
            c.args(["-c", cmd]);
        }
        c
    }

    /// Runs `psql`; returns its exit code, stdout and stderr.
    pub async fn run(&self, who: &str, commands: &[&str]) -> (i32, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.psql(who, commands).output())
            .await
            .expect("psql finished")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The ids in the table, straight from the server.
    pub async fn ids(&self) -> Vec<i32> {
        admin()
            .await
            .query(&format!("SELECT id FROM {} ORDER BY id", self.table), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The first open review for alice, once one appears.
    pub async fn review(&self) -> Value {
        for _ in 0..200 {
            let (s, list) = self.gw.get("alice", "/v1/reviews").await;
            assert_eq!(s, StatusCode::OK, "{list}");
            if let Some(r) = list["reviews"].as_array().and_then(|a| a.first()) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no review appeared");
    }

    /// The audit log's entries of `kind`.
    pub async fn entries(&self, kind: &str) -> Vec<Value> {
        let (_, log) = self
            .gw
            .get("alice", "/v1/audit/entries?start=0&limit=1000")
            .await;
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry"].clone())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// The actions of the log's `submitted` entries, with their current state.
    pub async fn actions(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for e in self.entries("submitted").await {
            let id = e["action_id"].as_str().unwrap().to_string();
            let (_, a) = self.gw.get("bot", &format!("/v1/actions/{id}")).await;
            out.push(a);
        }
        out
    }

    /// Waits until every action has left `allowed`/`approved` (its result is reported).
    pub async fn settled(&self) -> Vec<Value> {
        for _ in 0..100 {
            let a = self.actions().await;
            if a.iter()
                .all(|a| a["status"] != "allowed" && a["status"] != "approved")
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.actions().await
    }

    pub async fn drop_table(&self) {
        admin()
            .await
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_are_allowed_a_drop_is_denied_and_the_session_goes_on() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let (code, out, err) = pg
        .run(
            "bot",
            &[
                &format!("SELECT count(*) FROM {t}"),
                &format!("SELECT v FROM {t} WHERE id = 2"),
            ],
        )
        .await;
    assert_eq!((code, out.as_str()), (0, "3\nb\n"), "{err}");

    let (code, out, err) = pg
        .run("bot", &[&format!("DROP TABLE {t}"), "SELECT 42"])
        .await;
    assert_eq!(code, 0, "psql -c goes on after an error: {err}");
    assert!(
        err.contains("permission denied: dropping tables is forbidden"),
        "{err}"
    );
    assert!(err.contains("HINT:  The statement was not run."), "{err}");
    assert_eq!(out, "42\n", "the session is usable after a denial");
    assert_eq!(pg.ids().await, [1, 2, 3], "nothing was dropped");

    // Every statement is an action on postgres://prod-app/<database>, with its result.
    let actions = pg.settled().await;
    let by_status = |s: &str| actions.iter().filter(|a| a["status"] == s).count();
    assert_eq!(actions.len(), 4, "{actions:?}");
    assert_eq!(
        (by_status("succeeded"), by_status("denied")),
        (3, 1),
        "{actions:?}"
    );
    let read = &actions[0];
    assert_eq!(read["action"], "sql.select");
    assert_eq!(
        read["resource"],
        format!("postgres://prod-app/{}", database())
    );
    assert_eq!(
        read["params"]["statement"],
        format!("SELECT count(*) FROM {t}")
    );
    assert_eq!(read["params"]["tables"], json!([t]));
    assert_eq!(read["params"]["parameters"], json!([]));
    let detail: Value = serde_json::from_str(read["result"]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["command_tag"], "SELECT 1");
    assert_eq!(detail["rows"], 1);
    assert_eq!(actions[2]["action"], "sql.ddl");
    assert!(actions[2]["analysis"]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("sql:drop")));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_delete_without_where_runs_once_approved_while_psql_waits() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql("bot", &[&format!("DELETE FROM {t}")])
        .spawn()
        .unwrap();
    let review = pg.review().await;
    assert_eq!(review["action"], "sql.delete", "{review}");
    assert_eq!(review["params"]["statement"], format!("DELETE FROM {t}"));
    assert!(review["analysis"]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("sql:no-where")));
    assert_eq!(pg.ids().await, [1, 2, 3], "nothing runs while held");
    // The client waits with notices.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, r) = pg
        .gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "approve"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "DELETE 3\n", "{stderr}");
    assert!(
        stderr.contains("NOTICE:  countersign: waiting for approval by group:sre"),
        "{stderr}"
    );
    assert!(pg.ids().await.is_empty());
    let actions = pg.settled().await;
    assert_eq!(actions[0]["status"], "succeeded", "{actions:?}");
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_statement_query_stops_at_the_first_refusal_as_postgresql_would() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let q = format!(
        "INSERT INTO {t} VALUES (10, 'x'); DROP TABLE {t}; INSERT INTO {t} VALUES (11, 'y')"
    );
    let (code, _, err) = pg.run("bot", &[&q, "SELECT 1"]).await;
    assert_eq!(code, 0);
    assert!(err.contains("dropping tables is forbidden"), "{err}");
    // One implicit transaction: the first INSERT is rolled back with the refusal.
    assert_eq!(pg.ids().await, [1, 2, 3]);
    let actions = pg.settled().await;
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["sql.insert", "sql.ddl", "sql.select"],
        "decided one by one, stopping at the refusal"
    );
    assert_eq!(actions[1]["status"], "denied");
    let detail: Value =
        serde_json::from_str(actions[0]["result"]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["query_failed_later"], true, "{detail}");
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_inside_a_transaction_aborts_it_as_postgresql_would() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let (_, out, err) = pg
        .run(
            "bot",
            &[
                "BEGIN",
                &format!("INSERT INTO {t} VALUES (20, 'x')"),
                &format!("DROP TABLE {t}"),
                "SELECT 1",
                "ROLLBACK",
                "SELECT 2",
            ],
        )
        .await;
    assert!(err.contains("dropping tables is forbidden"), "{err}");
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert_eq!(out, "BEGIN\nINSERT 0 1\nROLLBACK\n2\n", "{err}");
    assert_eq!(pg.ids().await, [1, 2, 3]);
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_database_is_refused_at_startup() {
    let pg = Pg::start().await;
    let mut c = pg.psql("bot", &["SELECT 1"]);
    c.env("PGPASSWORD", "not-a-token");
    let out = c.output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("password authentication failed for user \"bot\""),
        "{err}"
    );
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.addr.port().to_string(),
            "-U",
            "bot",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", "tok-bot")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database \"postgres\" does not exist"),
        "{err}"
    );
    assert!(pg.entries("submitted").await.is_empty());
    pg.drop_table().await;
}

impl Pg {
    /// Starts `tests/interop/pg_client.py SCENARIO` against the proxy.
    pub fn driver(&self, scenario: &str) -> tokio::process::Child {
        tokio::process::Command::new(crate::mcp::python())
            .arg(crate::mcp::root().join("tests/interop/pg_client.py"))
            .args([
                scenario,
                &self.addr.port().to_string(),
                &database(),
                &self.table,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Waits for a driver; returns its JSON lines by step.
    pub async fn lines(child: tokio::process::Child) -> std::collections::HashMap<String, Value> {
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the driver finished")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the driver failed: {stderr}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["step"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_modified_statement_runs_instead_with_a_notice() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql("bot", &[&format!("UPDATE {t} SET v = 'z'")])
        .spawn()
        .unwrap();
    let review = pg.review().await;
    let modified = format!("UPDATE {t} SET v = 'z' WHERE id = 1");
    let (s, r) = pg
        .gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "modify", "params": {"statement": modified, "parameters": [], "tables": [t]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout, "UPDATE 1\n", "{stderr}");
    assert!(
        stderr.contains("a reviewer modified the statement"),
        "{stderr}"
    );
    assert!(stderr.contains(&modified), "{stderr}");
    let rows = admin()
        .await
        .query(&format!("SELECT v FROM {t} ORDER BY id"), &[])
        .await
        .unwrap();
    let vs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(vs, ["z", "b", "c"]);
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_psql_cancels_the_review() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql("bot", &[&format!("DELETE FROM {t}")])
        .spawn()
        .unwrap();
    let review = pg.review().await;
    // psql's Ctrl-C: SIGINT makes it send a CancelRequest on a new connection.
    let pid = child.id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert_eq!(pg.ids().await, [1, 2, 3]);
    let (_, a) = pg
        .gw
        .get(
            "bot",
            &format!("/v1/actions/{}", review["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(a["status"], "cancelled", "{a}");
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_inside_a_transaction_runs_in_it_once_approved() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql(
            "bot",
            &[
                "BEGIN",
                &format!("INSERT INTO {t} VALUES (4, 'd')"),
                &format!("DELETE FROM {t}"),
                &format!("SELECT count(*) FROM {t}"),
                "COMMIT",
            ],
        )
        .spawn()
        .unwrap();
    let review = pg.review().await;
    // The transaction is open upstream, uncommitted: the server still shows the old rows.
    assert_eq!(pg.ids().await, [1, 2, 3]);
    pg.gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "approve"}),
        )
        .await;
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "BEGIN\nINSERT 0 1\nDELETE 4\n0\nCOMMIT\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pg.ids().await.is_empty());
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepared_statements_binary_parameters_denials_and_transactions() {
    let pg = Pg::start().await;
    let got = Pg::lines(pg.driver("psycopg_basic")).await;
    assert_eq!(got["select"]["v"], "c", "{got:?}");
    assert_eq!(got["text-param-binary-result"]["ids"], json!([2]));
    assert_eq!(got["drop"]["sqlstate"], "42501", "{got:?}");
    assert!(got["drop"]["message"]
        .as_str()
        .unwrap()
        .contains("dropping tables is forbidden"));
    assert_eq!(got["after"]["v"], 42);
    assert_eq!(got["insert"]["rowcount"], 1);
    assert_eq!(got["tx-drop"]["sqlstate"], "42501");
    assert_eq!(
        got["ids"]["ids"],
        json!([1, 2, 3, 7]),
        "the transaction rolled back"
    );
    // Decided at Execute with the bound parameters (binary int4 read as a number).
    let actions = pg.settled().await;
    let select = actions
        .iter()
        .find(|a| a["params"]["parameters"] == json!([2]))
        .unwrap_or_else(|| panic!("{actions:?}"));
    assert_eq!(select["action"], "sql.select");
    assert_eq!(select["status"], "succeeded");
    assert!(select["params"]["statement"]
        .as_str()
        .unwrap()
        .contains("WHERE id = $1"));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_held_update_modified_by_the_reviewer_with_new_parameters() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg.driver("psycopg_held");
    let review = pg.review().await;
    assert_eq!(review["params"]["parameters"], json!(["z"]), "{review}");
    let (s, r) = pg
        .gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "modify", "params": {
                "statement": format!("UPDATE {t} SET v = $1 WHERE id = $2"),
                "parameters": ["m", 2], "tables": [t]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let got = Pg::lines(child).await;
    assert_eq!(got["update"]["rowcount"], 1, "{got:?}");
    assert!(got["notices"]["notices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n
            .as_str()
            .unwrap()
            .contains("a reviewer modified the statement")));
    assert_eq!(got["rows"]["rows"], json!([[1, "a"], [2, "m"], [3, "c"]]));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_extended_protocol_throughout() {
    let pg = Pg::start().await;
    let got = Pg::lines(pg.driver("asyncpg_basic")).await;
    assert_eq!(got["fetchval"]["v"], "b", "{got:?}");
    assert_eq!(got["prepared"]["ids"], json!([2, 3]));
    assert_eq!(got["executemany"]["ok"], true);
    assert_eq!(got["drop"]["sqlstate"], "42501");
    assert_eq!(
        got["two-in-parse"]["sqlstate"], "42601",
        "the server refuses two statements in one Parse"
    );
    assert_eq!(got["after"]["v"], 42);
    assert_eq!(got["cursor"]["ids"], json!([1, 2, 3, 4, 5]), "{got:?}");
    assert_eq!(pg.ids().await, [1, 2, 3, 4, 5]);
    let actions = pg.settled().await;
    let cursor: Vec<&Value> = actions
        .iter()
        .filter(|a| {
            a["params"]["statement"]
                .as_str()
                .unwrap()
                .contains("WHERE id > $1")
        })
        .collect();
    assert_eq!(
        cursor.len(),
        1,
        "one decision for the cursor's three fetches: {cursor:?}"
    );
    assert_eq!(cursor[0]["status"], "succeeded");
    assert_eq!(got["abandoned"]["vs"], json!(["a", "b"]));
    let left = actions
        .iter()
        .find(|a| {
            a["params"]["statement"]
                .as_str()
                .unwrap()
                .contains("WHERE id < $1")
        })
        .unwrap();
    assert_eq!(left["status"], "succeeded", "{left}");
    assert!(left["result"]["detail"]
        .as_str()
        .unwrap()
        .contains("portal_closed_before_its_end"));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_held_delete_inside_a_transaction_is_approved_and_committed() {
    let pg = Pg::start().await;
    let child = pg.driver("asyncpg_held_in_transaction");
    let review = pg.review().await;
    assert_eq!(review["action"], "sql.delete");
    pg.gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "approve"}),
        )
        .await;
    let got = Pg::lines(child).await;
    assert_eq!(got["delete-where"]["status"], "DELETE 4", "{got:?}");
    assert_eq!(got["delete-all"]["status"], "DELETE 0");
    assert_eq!(got["committed"]["count"], 0);
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asyncpg_statement_timeout_cancels_the_review() {
    let pg = Pg::start().await;
    let got = Pg::lines(pg.driver("asyncpg_cancel")).await;
    assert_eq!(got["update"]["timeout"], true, "{got:?}");
    assert_eq!(got["after"]["v"], 3, "the session goes on");
    let n: i64 = admin()
        .await
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE v = 'q'", pg.table),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing ran");
    let actions = pg.settled().await;
    let update = actions
        .iter()
        .find(|a| a["action"] == "sql.update")
        .unwrap();
    assert_eq!(update["status"], "cancelled", "{update}");
    assert_eq!(update["params"]["parameters"], json!(["q"]));
    pg.drop_table().await;
}

/// A hand-written client, for what no driver would send.
pub struct Raw {
    pub s: tokio::net::TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        Raw { s }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let _ = self.s.write_all(bytes).await;
    }

    /// A typed message.
    pub async fn msg(&mut self, tag: u8, body: &[u8]) {
        let mut b = vec![tag];
        b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        b.extend_from_slice(body);
        self.send(&b).await;
    }

    pub async fn startup(&mut self, user: &str, database: &str) {
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", database)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut b = (body.len() as i32 + 4).to_be_bytes().to_vec();
        b.extend_from_slice(&body);
        self.send(&b).await;
    }

    /// The next message (tag, body), or `None` at end of stream.
    pub async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let read = async {
            let tag = self.s.read_u8().await.ok()?;
            let len = self.s.read_i32().await.ok()?;
            let mut body = vec![0; usize::try_from(len - 4).ok()?];
            self.s.read_exact(&mut body).await.ok()?;
            Some((tag, body))
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the proxy answered or closed")
    }

    /// Messages up to and including one of type `until` (or the end).
    pub async fn until(&mut self, until: u8) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(m) = self.read().await {
            let done = m.0 == until;
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Logs in as `bot`; panics unless the session is ready.
    pub async fn login(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.startup("bot", &database()).await;
        assert_eq!(r.read().await.unwrap(), (b'R', vec![0, 0, 0, 3]));
        r.msg(b'p', b"tok-bot\0").await;
        let m = r.until(b'Z').await;
        assert_eq!(m.last().unwrap().0, b'Z', "{m:?}");
        r
    }

    /// Whether the proxy closed the connection (after any messages still to read).
    pub async fn closed(&mut self) -> bool {
        while self.read().await.is_some() {}
        true
    }
}

/// The SQLSTATE and message of an `ErrorResponse` body.
pub fn error_of(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for field in body.split(|b| *b == 0) {
        match field.first() {
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into_owned(),
            Some(b'M') => message = String::from_utf8_lossy(&field[1..]).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

fn fatal_of(msgs: &[(u8, Vec<u8>)]) -> (String, String) {
    let e = msgs
        .iter()
        .find(|m| m.0 == b'E')
        .unwrap_or_else(|| panic!("no error among {msgs:?}"));
    error_of(&e.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_get_a_fatal_error_and_the_connection_closes() {
    let pg = Pg::start().await;
    // A length too small, one over the startup limit, an unknown protocol, no user.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0, 0, 0, 3], "08P01"),
        (
            [&20_000i32.to_be_bytes()[..], &196_608i32.to_be_bytes()].concat(),
            "08P01",
        ),
        (
            [&8i32.to_be_bytes()[..], &(2i32 << 16).to_be_bytes()].concat(),
            "0A000",
        ),
        (
            [&9i32.to_be_bytes()[..], &196_608i32.to_be_bytes(), &[0]].concat(),
            "28000",
        ),
        // Parameters without their terminator.
        (
            [
                &13i32.to_be_bytes()[..],
                &196_608i32.to_be_bytes(),
                b"user\0",
            ]
            .concat(),
            "08P01",
        ),
    ];
    for (bytes, code) in cases {
        let mut r = Raw::connect(pg.addr).await;
        r.send(&bytes).await;
        let msgs = r.until(0).await;
        assert_eq!(fatal_of(&msgs).0, code, "{bytes:?}: {msgs:?}");
        assert!(r.closed().await);
    }
    // A client that says nothing is not waited for forever: covered by `startup_timeout`; one
    // that leaves mid-packet just goes.
    let mut r = Raw::connect(pg.addr).await;
    r.send(&[0, 0, 0, 40, 0, 3]).await;
    drop(r);
    // A password message of the wrong type, and an empty one.
    for (tag, body) in [(b'Q', &b"SELECT 1\0"[..]), (b'p', &b"\0"[..])] {
        let mut r = Raw::connect(pg.addr).await;
        r.startup("bot", &database()).await;
        r.read().await.unwrap();
        r.msg(tag, body).await;
        let msgs = r.until(0).await;
        assert_eq!(fatal_of(&msgs).0, "08P01", "{msgs:?}");
    }
    assert!(pg.entries("submitted").await.is_empty());
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_end_the_session_with_a_clear_error() {
    let pg = Pg::start().await;
    let cases: Vec<(u8, Vec<u8>, &str)> = vec![
        // A query without its terminating NUL, not UTF-8, a Bind cut short, an Execute with
        // extra bytes, a Describe of neither statement nor portal, an unknown message type.
        (b'Q', b"SELECT 1".to_vec(), "08P01"),
        (b'Q', vec![0xff, 0xfe, 0], "08P01"),
        (b'B', b"\0\0\0\x01".to_vec(), "08P01"),
        (b'E', b"\0\0\0\0\0\xff".to_vec(), "08P01"),
        (b'D', b"X\0".to_vec(), "08P01"),
        (b'z', Vec::new(), "08P01"),
    ];
    for (tag, body, code) in cases {
        let mut r = Raw::login(pg.addr).await;
        r.msg(tag, &body).await;
        let msgs = r.until(0).await;
        assert_eq!(fatal_of(&msgs).0, code, "{}: {msgs:?}", tag as char);
        assert!(r.closed().await);
    }
    // A length that lies: shorter than its own header.
    let mut r = Raw::login(pg.addr).await;
    r.send(&[b'Q', 0, 0, 0, 1]).await;
    assert_eq!(fatal_of(&r.until(0).await).0, "08P01");
    // Over the message limit (64 MiB by default): refused from the header, before the body.
    let mut r = Raw::login(pg.addr).await;
    r.send(&[&[b'Q'][..], &(1i32 << 30).to_be_bytes()].concat())
        .await;
    let (code, message) = fatal_of(&r.until(0).await);
    assert_eq!(code, "54000");
    assert!(message.contains("over the"), "{message}");
    assert!(r.closed().await);
    // The function-call message would bypass every decision: refused, the session goes on.
    let mut r = Raw::login(pg.addr).await;
    r.msg(b'F', &[0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]).await;
    let msgs = r.until(b'Z').await;
    assert_eq!(fatal_of(&msgs).0, "0A000", "{msgs:?}");
    r.msg(b'Q', b"SELECT 7\0").await;
    let msgs = r.until(b'Z').await;
    assert!(msgs.iter().any(|m| m.0 == b'D'), "{msgs:?}");
    assert!(
        pg.entries("submitted").await.len() == 1,
        "only SELECT 7 was submitted"
    );
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_while_held_withdraws_its_review() {
    let pg = Pg::start().await;
    let mut r = Raw::login(pg.addr).await;
    r.msg(b'Q', format!("DELETE FROM {}\0", pg.table).as_bytes())
        .await;
    let review = pg.review().await;
    let notice = r.read().await.unwrap();
    assert_eq!(notice.0, b'N', "a notice while held");
    drop(r);
    let id = review["id"].as_str().unwrap().to_string();
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, a) = pg.gw.get("bot", &format!("/v1/actions/{id}")).await;
        status = a["status"].clone();
        if status == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled", "the review was withdrawn and recorded");
    assert_eq!(pg.ids().await, [1, 2, 3]);
    pg.drop_table().await;
}

async fn terminate(app: &str) {
    let admin = admin().await;
    for _ in 0..100 {
        let n = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .len();
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no upstream session named {app}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_dies_ends_the_session_clearly_and_withdraws_a_held_review() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    // Killed while a statement is held: the review is withdrawn, the client told.
    let app = format!("victim_{}", rand::random::<u32>());
    let mut c = pg.psql("bot", &[&format!("DELETE FROM {t}")]);
    c.env("PGAPPNAME", &app);
    let child = c.spawn().unwrap();
    let review = pg.review().await;
    terminate(&app).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("terminating connection"), "{stderr}");
    let id = review["id"].as_str().unwrap().to_string();
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, a) = pg.gw.get("bot", &format!("/v1/actions/{id}")).await;
        status = a["status"].clone();
        if status == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled");
    assert_eq!(pg.ids().await, [1, 2, 3]);

    // Killed while a statement runs: the client gets the server's FATAL, the action a result.
    let app = format!("victim_{}", rand::random::<u32>());
    let mut c = pg.psql("bot", &["SELECT pg_sleep(30)"]);
    c.env("PGAPPNAME", &app);
    let child = c.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&app).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("terminating connection"), "{stderr}");
    let actions = pg.settled().await;
    let sleep = actions
        .iter()
        .find(|a| a["params"]["statement"] == "SELECT pg_sleep(30)")
        .unwrap();
    assert_eq!(sleep["status"], "failed", "{sleep}");
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_both_ways_and_unparsable_sql_is_refused() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let mut c = pg.psql("bot", &[&format!("COPY {t} FROM STDIN")]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"4\td\n5\te\n\\.\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "COPY 2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, err) = pg.run("bot", &[&format!("COPY {t} TO STDOUT")]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\ta\n2\tb\n3\tc\n4\td\n5\te\n");
    // What PostgreSQL's parser rejects is never allowed by default.
    let (_, _, err) = pg.run("bot", &["SELEC 1"]).await;
    assert!(err.contains("permission denied"), "{err}");
    let actions = pg.settled().await;
    let copies: Vec<&Value> = actions
        .iter()
        .filter(|a| a["action"] == "sql.copy")
        .collect();
    assert_eq!(copies.len(), 2);
    for (a, tag) in copies.iter().zip(["COPY 2", "COPY 5"]) {
        assert_eq!(a["status"], "succeeded", "{a}");
        let d: Value = serde_json::from_str(a["result"]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(d["command_tag"], tag);
    }
    let bad = actions.iter().find(|a| a["action"] == "sql.other").unwrap();
    assert_eq!(bad["status"], "denied");
    assert!(bad["analysis"]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("sql:unparsed")));
    pg.drop_table().await;
}

/// `countersign pg` as a user runs it: TLS from PEM files, the gateway over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pg_command_serves_tls_and_refuses_plain_text_off_loopback() {
    let pg = Pg::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let bin = env!("CARGO_BIN_EXE_countersign");
    // Off loopback without TLS: refused at start.
    let out = tokio::process::Command::new(bin)
        .args([
            "pg",
            "--listen",
            "0.0.0.0:0",
            "--server-name",
            "prod-app",
            "--gateway",
            &pg.gw.url,
        ])
        .args(["--upstream", &admin_url()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));

    let mut proxy = tokio::process::Command::new(bin)
        .args([
            "pg",
            "--listen",
            "127.0.0.1:0",
            "--server-name",
            "prod-app",
            "--gateway",
            &pg.gw.url,
        ])
        .env("COUNTERSIGN_PG_UPSTREAM", admin_url())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(proxy.stderr.take().unwrap()));
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "bot",
            "-d",
            &database(),
        ])
        .args([
            "-c",
            "\\conninfo",
            "-c",
            &format!("SELECT count(*) FROM {}", pg.table),
        ])
        .env("PGPASSWORD", "tok-bot")
        .env("PGSSLMODE", "require")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("3\n"), "{stdout}");
    let _ = proxy.kill().await;
    pg.drop_table().await;
}

/// The embedded gate (`countersign pg --config`): the gateway in the proxy's process.
async fn embedded() -> Pg {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/pg.cedar"), PG_POLICIES).unwrap();
    let config = countersign_gateway::config::Config::load(&config).unwrap();
    let options = countersign_server::Options {
        record_loaded: false,
        ..Default::default()
    };
    let server = countersign_server::Server::open_with(&config, options)
        .await
        .unwrap();
    let gates: Arc<dyn Gates> = Arc::new(countersign_gateway::gate::EmbeddedGates(
        server.gateway().clone(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    Pg::with_gates(
        Gw::from_parts(url, support::client(), dir, task),
        gates,
        |_| {},
    )
    .await
}

/// The user name must be the credential's identity: bot's token works as `bot` (compared
/// normalised, as ids are), and as `alice` it is refused before anything is submitted.
async fn the_user_must_be_the_credentials_identity(pg: Pg) {
    let (code, out, err) = pg
        .run("bot", &[&format!("SELECT count(*) FROM {}", pg.table)])
        .await;
    assert_eq!((code, out.as_str()), (0, "3\n"), "{err}");
    let mut c = pg.psql("BOT", &[&format!("SELECT count(*) FROM {}", pg.table)]);
    c.env("PGPASSWORD", "tok-bot");
    let out = c.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // alice's name with bot's token: refused before anything is submitted.
    let mut c = pg.psql("alice", &["SELECT 1"]);
    c.env("PGPASSWORD", "tok-bot");
    let out = c.output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    assert_eq!(pg.entries("submitted").await.len(), 2);
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_embedded_gate_the_user_must_be_the_credentials_identity() {
    the_user_must_be_the_credentials_identity(embedded().await).await;
}

/// With `--gateway URL` the proxy learns the token's identity from `GET /v1/whoami`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_remote_gateway_the_user_must_be_the_credentials_identity() {
    the_user_must_be_the_credentials_identity(Pg::start().await).await;
}

/// pgbench (Debian) through the proxy in all three query modes: simple, extended and prepared
/// (named statements), with its default TPC-B-like script (BEGIN, UPDATE ... WHERE, SELECT,
/// INSERT, END) and select-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_proxy_in_every_query_mode() {
    let pg = Pg::start().await;
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", &admin_url()])
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        for script in [&["-S"][..], &[][..]] {
            let out = tokio::process::Command::new("pgbench")
                .args(["-n", "-M", mode, "-c", "2", "-t", "5"])
                .args(script)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.addr.port().to_string(),
                    "-U",
                    "bot",
                    &database(),
                ])
                .env("PGPASSWORD", "tok-bot")
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success()
                    && stdout.contains("number of transactions actually processed: 10/10"),
                "{mode} {script:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let actions = pg.settled().await;
    let updates = actions
        .iter()
        .filter(|a| a["action"] == "sql.update" && a["status"] == "succeeded")
        .count();
    assert_eq!(
        updates,
        3 * 3 * 10,
        "three updates per TPC-B-like transaction, each reported"
    );
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-I", "d", &admin_url()])
        .output()
        .await
        .unwrap();
    assert!(init.status.success());
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_columns_and_detected_values_are_masked_in_results() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/pg.cedar"), PG_POLICIES).unwrap();
    let (url, server) = support::serve(&config).await;
    let gw = Gw::from_parts(url, support::client(), dir, server);
    let gates: Arc<dyn Gates> = Arc::new(RemoteGates::new(&gw.url).unwrap());
    let masker =
        countersign_mask::Masker::new(&countersign_mask::MaskingConfig::default(), &[9u8; 32])
            .unwrap();
    // The rule names the table: the fresh table's name is known once Pg made it, so the rule
    // is a column-name pattern here and the table rule is checked by the unit test.
    let mask = countersign_pgproxy::mask::ResultMask::new(masker, &["v".into()], true);
    let pg = Pg::with_gates(gw, gates, |o| o.mask = Some(Arc::new(mask))).await;
    let t = pg.table.clone();
    let (code, out, err) = pg
        .run(
            "bot",
            &[
                &format!("SELECT id, v FROM {t} WHERE id = 1"),
                "SELECT 'write to bob@example.com' AS note",
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("1|[column:"), "{out}");
    assert!(!out.contains("bob@example.com"), "{out}");
    assert!(lines[1].starts_with("write to [email:"), "{out}");
    // The extended protocol too (psycopg: Describe portal, then Execute).
    let got = Pg::lines(pg.driver("psycopg_select")).await;
    assert!(
        got["rows"]["rows"][0][1]
            .as_str()
            .unwrap()
            .starts_with("[column:"),
        "{got:?}"
    );
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_review_fails_the_statement_and_a_silent_client_is_not_waited_for() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql("bot", &[&format!("DELETE FROM {t}"), "SELECT 5"])
        .spawn()
        .unwrap();
    let review = pg.review().await;
    pg.gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "deny", "comment": "not today"}),
        )
        .await;
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("the statement was not approved"),
        "{stderr}"
    );
    assert!(stderr.contains("rejected"), "{stderr}");
    assert!(stderr.contains("not today"), "{stderr}");
    assert_eq!(stdout, "5\n", "the session goes on");
    assert_eq!(pg.ids().await, [1, 2, 3]);
    // A client that connects and says nothing is dropped after the startup timeout.
    let mut r = Raw::connect(pg.addr).await;
    let started = std::time::Instant::now();
    assert!(r.closed().await);
    assert!(started.elapsed() < Duration::from_secs(15));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_listen_and_notifications_are_relayed() {
    let pg = Pg::start().await;
    let (code, out, err) = pg
        .run(
            "bot",
            &[
                "SET application_name = 'agent-x'",
                "SHOW application_name",
                "LISTEN countersign_ch",
                "NOTIFY countersign_ch, 'hello'",
            ],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("agent-x"), "{out}");
    assert!(
        out.contains("Asynchronous notification \"countersign_ch\" with payload \"hello\""),
        "{out} {err}"
    );
    let actions = pg.settled().await;
    assert_eq!(actions.len(), 4);
    assert!(actions
        .iter()
        .all(|a| a["action"] == "sql.other" && a["status"] == "succeeded"));
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/pg.cedar"), PG_POLICIES).unwrap();
    let (url, server) = support::serve(&config).await;
    let gw = Gw::from_parts(url, support::client(), dir, server);
    let gates: Arc<dyn Gates> = Arc::new(RemoteGates::new(&gw.url).unwrap());
    let pg = Pg::with_gates(gw, gates, |o| o.max_connections = 1).await;
    let _first = Raw::login(pg.addr).await;
    let mut second = Raw::connect(pg.addr).await;
    let msgs = second.until(0).await;
    assert_eq!(fatal_of(&msgs).0, "53300", "{msgs:?}");
    drop(_first);
    // The slot is free again once the first session has ended.
    for _ in 0..100 {
        let mut r = Raw::connect(pg.addr).await;
        r.startup("bot", &database()).await;
        if r.read().await.map(|m| m.0) == Some(b'R') {
            pg.drop_table().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the slot was not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_statement_has_it_cancelled_and_reported() {
    let pg = Pg::start().await;
    let app = format!("orphan_{}", rand::random::<u32>());
    let mut c = pg.psql("bot", &["SELECT pg_sleep(60)"]);
    c.env("PGAPPNAME", &app);
    let mut child = c.spawn().unwrap();
    let admin = admin().await;
    let running = || async {
        admin
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                &[&app],
            )
            .await
            .unwrap()
            .len()
    };
    for _ in 0..100 {
        if running().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    // Cancelled upstream within seconds, not after the minute.
    let started = std::time::Instant::now();
    while running().await > 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let actions = pg.settled().await;
    assert_eq!(actions[0]["status"], "failed", "{actions:?}");
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_session_can_be_tls() {
    for (mode, works) in [
        ("sslmode=require", true),
        // The local server's certificate names its host, not 127.0.0.1: refused, clearly.
        (
            "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
            false,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = support::write_config(dir.path(), "");
        std::fs::write(dir.path().join("policies/pg.cedar"), PG_POLICIES).unwrap();
        let (url, server) = support::serve(&config).await;
        let gw = Gw::from_parts(url, support::client(), dir, server);
        let gates: Arc<dyn Gates> = Arc::new(RemoteGates::new(&gw.url).unwrap());
        let upstream = format!("{}?{mode}", admin_url());
        let pg = Pg::with_upstream(gw, gates, &upstream, |_| {}).await;
        let app = format!("tls_{}", rand::random::<u32>());
        let mut c = pg.psql(
            "bot",
            &["SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        );
        c.env("PGAPPNAME", &app);
        let out = c.output().await.unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if works {
            assert_eq!(stdout, "t\n", "{stderr}");
        } else {
            assert!(
                stderr.contains("cannot reach the database") && stderr.contains("TLS"),
                "{stderr}"
            );
        }
        pg.drop_table().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cannot_hold_prepared_statements_without_limit() {
    let pg = Pg::start().await;
    let mut r = Raw::login(pg.addr).await;
    let mut batch = Vec::new();
    for i in 0..10_001 {
        let body = format!("s{i}\0SELECT 1\0\0\0");
        batch.push(b'P');
        batch.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        batch.extend_from_slice(body.as_bytes());
    }
    r.send(&batch).await;
    let msgs = r.until(0).await;
    let (code, message) = fatal_of(&msgs);
    assert_eq!(code, "54000", "{message}");
    assert!(
        message.contains("at most 10000 prepared statements"),
        "{message}"
    );
    pg.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_statement_must_stay_one_statement_of_its_kind() {
    let pg = Pg::start().await;
    let t = pg.table.clone();
    let child = pg
        .psql("bot", &[&format!("UPDATE {t} SET v = 'z'")])
        .spawn()
        .unwrap();
    let review = pg.review().await;
    let smuggled = format!("UPDATE {t} SET v = 'z' WHERE id = 1; DROP TABLE {t}");
    pg.gw
        .vote(
            "alice",
            review["id"].as_str().unwrap(),
            json!({"verdict": "modify", "params": {"statement": smuggled, "parameters": [], "tables": [t]}}),
        )
        .await;
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not one sql.update statement"),
        "{stderr}"
    );
    assert_eq!(
        pg.ids().await,
        [1, 2, 3],
        "the table is still there, unchanged"
    );
    pg.drop_table().await;
}
