//! Credentials released by approval (issue #18), end to end against the local PostgreSQL
//! (`COUNTERSIGN_TEST_POSTGRES`, as admin): `countersign run -- psql ...` where the agent holds
//! no database password and gets a role that exists only for the action; the release rules
//! through the API, as an attacker would try them; and a grep for the secret everywhere it must
//! not be.

use crate::support::{client, code, serve, write_config, Gw};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

fn admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "COUNTERSIGN_TEST_POSTGRES is not set: the credential tests need PostgreSQL as an \
             admin, e.g. postgres://postgres@127.0.0.1:5432/test (scripts/test sets it)"
        )
    })
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A group role `cs_e2e_rw` that may read `creds_e2e.things`, made once (idempotently).
async fn database_setup() {
    let db = admin().await;
    db.batch_execute(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cs_e2e_rw') THEN
             CREATE ROLE cs_e2e_rw NOLOGIN;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$;
         CREATE SCHEMA IF NOT EXISTS creds_e2e;
         CREATE TABLE IF NOT EXISTS creds_e2e.things (id int PRIMARY KEY);
         INSERT INTO creds_e2e.things VALUES (1), (2), (3) ON CONFLICT DO NOTHING;
         GRANT USAGE ON SCHEMA creds_e2e TO cs_e2e_rw;
         GRANT SELECT ON creds_e2e.things TO cs_e2e_rw;",
    )
    .await
    .or_else(|e| {
        // Concurrent test binaries may race on the grants; what matters is that they exist.
        if e.to_string().contains("tuple concurrently updated") {
            Ok(())
        } else {
            Err(e)
        }
    })
    .unwrap();
}

/// The roles countersign made for `action_id` that still exist.
async fn roles_of(action_id: &str) -> Vec<String> {
    let hex = action_id.replace('-', "");
    admin()
        .await
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
            &[&format!("cs_{hex}_%")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const POLICIES: &str = r#"
@id("migrate") @effect("review") @approvers("group:sre") @credentials("test-db")
permit (principal, action == Action::"db.migrate", resource);
@id("query") @credentials("test-db")
permit (principal, action == Action::"db.query.prod", resource);
@id("brief") @credentials("brief-db")
permit (principal, action == Action::"db.brief", resource);
"#;

fn credentials_toml() -> String {
    format!(
        r#"
[[credentials]]
name = "test-db"
kind = "postgres_role"
admin_url = "{url}"
member_of = ["cs_e2e_rw"]
env = "DATABASE_URL"
ttl = "1m"

[[credentials]]
name = "brief-db"
kind = "postgres_role"
admin_url_env = "CS_TEST_ADMIN_URL"
member_of = ["cs_e2e_rw"]
env = "DATABASE_URL"
ttl = "2s"
"#,
        url = admin_url()
    )
}

fn write_gateway(dir: &Path) -> std::path::PathBuf {
    std::env::set_var("CS_TEST_ADMIN_URL", admin_url());
    let config = write_config(dir, &credentials_toml());
    std::fs::write(dir.join("policies/creds.cedar"), POLICIES).unwrap();
    config
}

async fn gateway() -> Gw {
    database_setup().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_gateway(dir.path());
    let (url, server) = serve(&config).await;
    Gw::from_parts(url, client(), dir, server)
}

async fn audit_text(gw: &Gw) -> String {
    let (s, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log.to_string()
}

/// What the gateway says of action `id` that must never hold a credential's value: the audit
/// log, and the action as its requester and as a reviewer read it.
async fn where_a_secret_must_not_be(gw: &Gw, id: &str) -> Vec<(&'static str, String)> {
    let path = format!("/v1/actions/{id}");
    let action = |who: &'static str| gw.get(who, &path);
    vec![
        ("audit entries", audit_text(gw).await),
        ("the action (requester)", action("bot").await.1.to_string()),
        ("the action (reviewer)", action("alice").await.1.to_string()),
    ]
}

fn entries_of<'a>(log: &'a Value, id: &str, kind: &str) -> Vec<&'a Value> {
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action_id"] == id && e["type"] == kind)
        .collect()
}

/// The password in a connection URL.
fn password_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.password().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_psql_gets_a_role_for_the_approved_action_only() {
    let gw = gateway().await;
    let cwd = tempfile::tempdir().unwrap();
    // The agent has no database password: its environment names no database at all. The
    // command writes what it received where the test can read it, to grep for it afterwards.
    let script = r#"printf %s "$DATABASE_URL" > received-url
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "select current_user, count(*) from creds_e2e.things""#;
    let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["run", "--gateway", &gw.url, "--token", "tok-bot"])
        .args(["--action", "db.migrate", "--resource", "postgres://test"])
        .args(["--", "sh", "-c", script])
        .current_dir(cwd.path())
        .env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env("COUNTERSIGN_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Held for review: nothing is minted yet.
    let id = loop {
        let (_, v) = gw.get("alice", "/v1/reviews").await;
        if let Some(id) = v["reviews"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(roles_of(&id).await.is_empty());
    // The reviewer sees what an approval hands out.
    let (_, pending) = gw.get("alice", &format!("/v1/actions/{id}")).await;
    assert_eq!(pending["decision"]["credentials"], json!(["test-db"]));
    let (s, v) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let hex = id.replace('-', "");
    assert!(
        stdout.starts_with(&format!("cs_{hex}_")) && stdout.trim_end().ends_with("|3"),
        "the command ran as the minted role and read the table: {stdout}"
    );
    // Gone after the action reported.
    assert!(
        roles_of(&id).await.is_empty(),
        "the role outlived the action"
    );
    let url = std::fs::read_to_string(cwd.path().join("received-url")).unwrap();
    let password = password_of(&url);
    assert!(password.len() >= 32);
    let role = url::Url::parse(&url).unwrap().username().to_string();
    let status = std::process::Command::new("psql")
        .arg(&url)
        .args(["-Atc", "select 1"])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "the role still logs in after the action"
    );
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Recorded: which credential, to whom, until when; revoked when the action reported.
    let (_, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let released = entries_of(&log, &id, "credential_released");
    assert_eq!(released.len(), 1, "{log}");
    assert_eq!(released[0]["event"]["credential"], "test-db");
    assert_eq!(released[0]["event"]["to"], "bot");
    assert!(released[0]["event"]["expires_at"].is_number());
    let revoked = entries_of(&log, &id, "credential_revoked");
    assert_eq!(revoked.len(), 1, "{log}");
    assert_eq!(revoked[0]["event"]["reason"], "reported");
    assert_eq!(
        gw.get("bot", &format!("/v1/actions/{id}")).await.1["status"],
        "succeeded"
    );

    // The secret is in no audit entry or API answer but the release.
    let mut haystacks = where_a_secret_must_not_be(&gw, &id).await;
    haystacks.push(("run's stderr", stderr));
    for (what, text) in &haystacks {
        assert!(!text.contains(&password), "the password is in {what}");
        assert!(
            !text.contains(&role) || *what == "run's stderr",
            "{what} names the role"
        );
    }
}

/// The grep, like the masking canary: with the gateway in `run`'s own process (`--config`) and
/// debug logs on, the password the command received is in no log line, audit entry, export,
/// API answer or file beside the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_value_in_logs_audit_exports_or_answers() {
    database_setup().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_gateway(dir.path());
    let cwd = tempfile::tempdir().unwrap();
    let script = r#"printf %s "$DATABASE_URL" > received-url
psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -Atc "select count(*) from creds_e2e.things""#;
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--token",
            "tok-bot",
        ])
        .args(["--action", "db.query.prod", "--", "sh", "-c", script])
        .current_dir(cwd.path())
        .env("COUNTERSIGN_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "3\n");
    let url = std::fs::read_to_string(cwd.path().join("received-url")).unwrap();
    let password = password_of(&url);
    // A gateway on the same database signs a checkpoint over what `run` recorded (exports go
    // up to the latest checkpoint), and answers the API.
    let (api, server) = serve(&config).await;
    let gw = Gw::from_parts(api, client(), tempfile::tempdir().unwrap(), server);
    let id = loop {
        let log = audit_text(&gw).await;
        if log.contains("credential_revoked") {
            let v: Value = serde_json::from_str(&log).unwrap();
            break v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["entry"]["type"] == "credential_revoked")
                .unwrap()["entry"]["action_id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bundle = cwd.path().join("bundle.jsonl");
    let csv = cwd.path().join("bundle.csv");
    for (format, out_file) in [("jsonl", &bundle), ("csv", &csv)] {
        let (code_, _, err) = crate::cli::run(
            &[
                "audit",
                "export",
                "--config",
                config.to_str().unwrap(),
                "--format",
                format,
                "--out",
                out_file.to_str().unwrap(),
            ],
            "",
            "",
        )
        .await;
        assert_eq!(code_, 0, "{err}");
    }
    let exported = std::fs::read_to_string(&bundle).unwrap();
    assert!(exported.contains("credential_released"), "{exported}");
    assert!(exported.contains("credential_revoked"), "{exported}");
    let mut haystacks = vec![
        ("run's stderr (trace logs)", stderr),
        ("audit entries", audit_text(&gw).await),
        (
            "the action",
            gw.get("bot", &format!("/v1/actions/{id}"))
                .await
                .1
                .to_string(),
        ),
        ("the JSON Lines export", exported),
        ("the CSV export", std::fs::read_to_string(&csv).unwrap()),
    ];
    for file in walk(dir.path()) {
        haystacks.push((
            "a file beside the gateway",
            String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned(),
        ));
    }
    for (what, text) in &haystacks {
        assert!(!text.contains(&password), "the password is in {what}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Submits `action` as bot; returns its id and grant token.
async fn allowed(gw: &Gw, action: &str) -> (String, String) {
    let v = gw
        .submit(
            "bot",
            json!({"action": action, "resource": "postgres://test"}),
        )
        .await;
    assert_eq!(v["status"], "allowed", "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["grant"]["token"].as_str().unwrap().to_string(),
    )
}

async fn ask(gw: &Gw, who: &str, id: &str) -> (StatusCode, Value) {
    gw.post(who, &format!("/v1/actions/{id}/credentials"), json!({}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_once_to_the_redeemer_of_the_grant_only() {
    let gw = gateway().await;
    // No credential named by the decision.
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "x"}))
        .await;
    let (s, e) = ask(&gw, "bot", v["id"].as_str().unwrap()).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "no_credentials"));

    let (id, token) = allowed(&gw, "db.query.prod").await;
    // Not redeemed yet.
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "grant_not_redeemed"));
    assert!(roles_of(&id).await.is_empty());
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["credentials"], json!(["test-db"]));
    // Another agent cannot see the action; a person who can see it is not the redeemer.
    let (s, e) = ask(&gw, "ci", &id).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "not_found"), "{e}");
    let (s, e) = ask(&gw, "alice", &id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::FORBIDDEN, "not_redeemer"),
        "{e}"
    );
    assert!(
        roles_of(&id).await.is_empty(),
        "a refused caller minted a role"
    );
    // The redeemer: once.
    let (s, c) = ask(&gw, "bot", &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let url = c["credentials"][0]["env"]["DATABASE_URL"].as_str().unwrap();
    assert_eq!(c["credentials"][0]["name"], "test-db");
    assert_eq!(c["credentials"][0]["kind"], "postgres_role");
    assert_eq!(roles_of(&id).await.len(), 1);
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "credentials_already_released")
    );
    assert_eq!(
        roles_of(&id).await.len(),
        1,
        "a second release minted again"
    );
    // Malformed bodies.
    let (s, e) = gw
        .post(
            "bot",
            &format!("/v1/actions/{id}/credentials"),
            json!({"x": 1}),
        )
        .await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"));
    // The role works; the report drops it; asking afterwards is refused.
    let (pg, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let n: i64 = pg
        .query_one("select count(*) from creds_e2e.things", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{id}/result"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(roles_of(&id).await.is_empty());
    // Its open session was terminated.
    assert!(pg.query_one("select 1", &[]).await.is_err());
    drop(driver);
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "credentials_already_released")
    );

    // Cancelled before redemption: revoked, nothing minted.
    let (id, _) = allowed(&gw, "db.query.prod").await;
    let (s, _) = gw
        .post("bot", &format!("/v1/actions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "grant_revoked"));

    // The refusals that matter are in the audit log.
    let log = audit_text(&gw).await;
    assert!(log.contains("not_redeemer"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_is_dropped_and_its_sessions_ended_when_its_lifetime_ends() {
    let gw = gateway().await;
    let (id, token) = allowed(&gw, "db.brief").await;
    let (s, _) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, c) = ask(&gw, "bot", &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let url = c["credentials"][0]["env"]["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // A long query outlives the 2 s lifetime: the sweeper ends it and drops the role.
    let started = std::time::Instant::now();
    let r = pg.query_one("select pg_sleep(20)", &[]).await;
    assert!(r.is_err(), "the session survived its credential");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The sweeper drops the role first and records the revocation next (a failed record is
    // retried; a failed drop must not be recorded): wait for both.
    let mut log = Value::Null;
    for _ in 0..50 {
        log = gw
            .get("alice", "/v1/audit/entries?start=0&limit=1000")
            .await
            .1;
        if roles_of(&id).await.is_empty() && !entries_of(&log, &id, "credential_revoked").is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(roles_of(&id).await.is_empty());
    let revoked = entries_of(&log, &id, "credential_revoked");
    assert_eq!(revoked.len(), 1, "{log}");
    assert_eq!(revoked[0]["event"]["reason"], "expired");
    // Past the lifetime, nothing more is released.
    let (id, token) = allowed(&gw, "db.brief").await;
    gw.post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!((s, code(&e)), (StatusCode::GONE, "credentials_expired"));
    assert!(roles_of(&id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_naming_an_unconfigured_credential_is_refused_at_start_and_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::write(
        dir.path().join("policies/creds.cedar"),
        r#"@credentials("nope") permit (principal, action == Action::"x", resource);"#,
    )
    .unwrap();
    let c = countersign_gateway::config::Config::load(&config).unwrap();
    let err = countersign_server::Server::open_with(&c, Default::default())
        .await
        .err()
        .expect("the gateway started with an unknown credential");
    assert!(err.to_string().contains("`nope`"), "{err}");
    let (code_, _, err) = crate::cli::run(
        &["policy", "validate", "--config", config.to_str().unwrap()],
        "",
        "",
    )
    .await;
    assert_eq!(code_, 1, "{err}");
    assert!(err.contains("`nope`"), "{err}");
}

/// A real sshd (Debian's openssh-server) on a free loopback port with its own host key, trusting
/// the gateway's SSH CA (`TrustedUserCAKeys`) and nothing else (no authorized keys, no
/// passwords). Killed when dropped.
struct Sshd {
    port: u16,
    _child: tokio::process::Child,
}

async fn sshd(dir: &Path, ca_pub: &Path) -> Sshd {
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "/usr/sbin/sshd is missing: install openssh-server (scripts/test does)"
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("host_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .status()
        .unwrap();
    assert!(st.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nTrustedUserCAKeys {}\n\
             PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAuthorizedKeysFile none\n\
             PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            host_key.display(),
            ca_pub.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Sshd {
                port,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sshd did not start on port {port}");
}

fn user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn ssh_argv(port: u16, identity: &str, command: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "ssh",
        "-o",
        identity,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(port.to_string());
    argv.push(format!("{}@127.0.0.1", user()));
    argv.extend(command.iter().map(|s| s.to_string()));
    argv
}

async fn ssh_gateway() -> (Gw, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[credentials]]
name = "box"
kind = "ssh_certificate"
principal = "{user}"
env = "SSH_KEY"
ttl = "1m"

[[credentials]]
name = "box-brief"
kind = "ssh_certificate"
principal = "{user}"
env = "SSH_KEY"
ttl = "3s"
"#,
            user = user()
        ),
    );
    std::fs::write(
        dir.path().join("policies/ssh.cedar"),
        r#"
@id("ssh") @credentials("box") permit (principal, action == Action::"ssh.run", resource);
@id("ssh-brief") @credentials("box-brief") permit (principal, action == Action::"ssh.brief", resource);
"#,
    )
    .unwrap();
    let (url, server) = serve(&config).await;
    let ca_pub = dir.path().join("data/gw.db.ssh-ca.key.pub");
    assert!(
        ca_pub.exists(),
        "the CA's public key is written beside its key"
    );
    (Gw::from_parts(url, client(), dir, server), ca_pub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ssh_gets_a_certificate_sshd_accepts_for_the_approved_command() {
    let (gw, ca_pub) = ssh_gateway().await;
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = sshd(sshd_dir.path(), &ca_pub).await;
    let cwd = tempfile::tempdir().unwrap();
    // ssh itself expands ${SSH_KEY} in IdentityFile: no shell between run and ssh.
    let argv = ssh_argv(
        sshd.port,
        "IdentityFile=${SSH_KEY}",
        &["echo", "approved-ran"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["run", "--gateway", &gw.url, "--token", "tok-bot"])
        .args(["--action", "ssh.run", "--"])
        .args(&argv)
        .current_dir(cwd.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "approved-ran\n");
    // Without the certificate, sshd lets nobody in.
    let key = cwd.path().join("nokey");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    let plain = std::process::Command::new(&argv[0])
        .args(
            &ssh_argv(
                sshd.port,
                &format!("IdentityFile={}", key.display()),
                &["echo", "approved-ran"],
            )[1..],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert!(plain.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_certificate_runs_only_the_approved_command_and_expires() {
    let (gw, ca_pub) = ssh_gateway().await;
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = sshd(sshd_dir.path(), &ca_pub).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let identity = format!("IdentityFile={}", key.display());
    let argv = ssh_argv(sshd.port, &identity, &["echo", "approved-ran"]);
    let v = gw
        .submit(
            "bot",
            json!({"action": "ssh.brief", "resource": "ssh://box", "params": {"argv": argv}}),
        )
        .await;
    assert_eq!(v["status"], "allowed", "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, _) = gw
        .post(
            "bot",
            "/v1/grants/redeem",
            json!({"token": v["grant"]["token"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, c) = ask(&gw, "bot", &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["credentials"][0]["kind"], "ssh_certificate");
    for f in c["credentials"][0]["files"].as_array().unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let path = keys.path().join(f["name"].as_str().unwrap());
        std::fs::write(&path, f["contents"].as_str().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ssh = |command: &[&str]| {
        std::process::Command::new("ssh")
            .args(&ssh_argv(sshd.port, &identity, command)[1..])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let ok = ssh(&["echo", "approved-ran"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "approved-ran\n");
    // Another command: sshd runs the forced (approved) one, never the other.
    let other = ssh(&[
        "touch",
        "/tmp/countersign-ssh-other-ran",
        ";",
        "echo",
        "other",
    ]);
    assert!(!String::from_utf8_lossy(&other.stdout).contains("other"));
    assert!(!Path::new("/tmp/countersign-ssh-other-ran").exists());
    // An interactive login is the forced command too.
    let login = ssh(&[]);
    assert!(!String::from_utf8_lossy(&login.stdout).contains('#'));
    // After the lifetime (3 s from the redemption), sshd refuses the certificate.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let late = ssh(&["echo", "approved-ran"]);
    assert!(!late.status.success());
    assert!(late.stdout.is_empty());
}

const STATIC_TOML: &str = r#"
[[credentials]]
name = "api-token"
kind = "static"
env = "API_TOKEN"
ttl = "1m"

[[credentials]]
name = "unset-token"
kind = "static"
env = "OTHER_TOKEN"
"#;

const STATIC_POLICIES: &str = r#"
@id("api") @credentials("api-token") permit (principal, action == Action::"api.call", resource);
@id("unset") @credentials("unset-token") permit (principal, action == Action::"api.unset", resource);
"#;

fn static_gateway_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), STATIC_TOML);
    std::fs::write(dir.path().join("policies/static.cedar"), STATIC_POLICIES).unwrap();
    (dir, config)
}

/// `countersign credentials set NAME --config CONFIG` with `value` on stdin and trace logs;
/// returns the exit code and stderr.
async fn set_static(config: &Path, name: &str, value: &str) -> (i32, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["credentials", "set", name, "--config"])
        .arg(config)
        .env("COUNTERSIGN_LOG", "trace")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `countersign run` (trace logs) of the allowed `api.call` whose command writes the
/// `API_TOKEN` it was given to a file: its working directory, what it received, its stderr.
async fn run_api_call(url: &str) -> (tempfile::TempDir, String, String) {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["run", "--gateway", url, "--token", "tok-bot"])
        .args(["--action", "api.call", "--resource", "api://payments"])
        .args(["--", "sh", "-c", r#"printf %s "$API_TOKEN" > received"#])
        .current_dir(cwd.path())
        .env_remove("API_TOKEN")
        .env("COUNTERSIGN_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let received = std::fs::read_to_string(cwd.path().join("received")).unwrap();
    (cwd, received, stderr)
}

/// On a terminal, `credentials set` reads one line with echo off: the typed value never appears
/// on the screen (the prompt comes only once echo is off, so nothing typed after it can be
/// echoed), the terminal's echo is restored afterwards, and the line is the value stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_set_on_a_terminal_does_not_echo_the_value() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let (_dir, config) = static_gateway_dir();
    let secret = canary();
    let term = crate::support::Terminal::open();
    let echoes = || {
        tcgetattr(&term.slave)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ECHO)
    };
    assert!(echoes(), "a new terminal echoes");
    let mut child = term
        .attach(
            Command::new(env!("CARGO_BIN_EXE_countersign"))
                .args(["credentials", "set", "api-token", "--config"])
                .arg(&config)
                .kill_on_drop(true),
        )
        .spawn()
        .unwrap();
    term.until("Value (not shown), then Enter: ").await;
    term.type_in(format!("{secret}\n").as_bytes());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("credentials set did not finish")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the last output reaches the reader
    let shown = term.text();
    assert_eq!(status.code(), Some(0), "{shown}");
    assert!(!shown.contains(&secret), "the value was echoed: {shown}");
    assert!(echoes(), "echo was not restored");
    // The typed line (without its newline) is the value a run receives.
    let server = crate::cli::Server::serve(&config, &[], std::process::Stdio::null()).await;
    let (_cwd, received, _) = run_api_call(&server.url).await;
    assert_eq!(received, secret);
}

/// A fresh canary secret value.
fn canary() -> String {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    format!("cs-static-canary-{}", hex::encode(b))
}

/// Kind `static`: an operator sets the value from stdin (never argv); it is stored sealed (no
/// file beside the gateway holds it in clear), `countersign run` gets it in the child's
/// environment once per grant, and no log line, audit entry, export or API answer holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_secret_is_set_from_stdin_sealed_at_rest_and_released_once() {
    let (dir, config) = static_gateway_dir();
    let secret = canary();
    // Refused before reading anything: unknown names and kinds without a stored value.
    let (c, err) = set_static(&config, "nope", "x").await;
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("no [[credentials]] named \"nope\""), "{err}");
    let (c, err) = set_static(&config, "api-token", "\n").await;
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("empty"), "{err}");
    // Set, then replaced: the newest value is the one released.
    let (c, first_set) = set_static(&config, "api-token", "an-older-value\n").await;
    assert_eq!(c, 0, "{first_set}");
    let (c, set_log) = set_static(&config, "api-token", &format!("{secret}\n")).await;
    assert_eq!(c, 0, "{set_log}");
    assert!(set_log.contains("sealed with key"), "{set_log}");

    // A `countersign serve` process with debug logs to a file.
    let log_path = dir.path().join("server.log");
    let server = crate::cli::Server::serve(
        &config,
        &[("COUNTERSIGN_LOG", "debug")],
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let gw = Gw::from_parts(
        server.url.clone(),
        client(),
        tempfile::tempdir().unwrap(),
        tokio::spawn(async {}),
    );
    let (cwd, received, run_stderr) = run_api_call(&gw.url).await;
    assert_eq!(
        received, secret,
        "the command did not receive the stored value"
    );

    // Released once: a second ask for the same grant is refused.
    let (_, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let released: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "credential_released")
        .collect();
    assert_eq!(released.len(), 1, "{log}");
    assert_eq!(released[0]["event"]["credential"], "api-token");
    assert_eq!(released[0]["event"]["kind"], "static");
    let id = released[0]["action_id"].as_str().unwrap().to_string();
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "credentials_already_released")
    );
    // Each set is audited, by whom, under which key: never the value.
    let sets: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "secret_set")
        .collect();
    assert_eq!(sets.len(), 2, "{log}");
    assert_eq!(sets[1]["event"]["credential"], "api-token");
    assert!(sets[1]["actor"].as_str().unwrap().starts_with("operator:"));
    assert_eq!(sets[1]["event"]["key_id"].as_str().unwrap().len(), 16);

    // The grep.
    tokio::time::sleep(Duration::from_millis(1500)).await; // a checkpoint for the export
    let bundle = cwd.path().join("bundle.jsonl");
    let (c, _, err) = crate::cli::run(
        &[
            "audit",
            "export",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "jsonl",
            "--out",
            bundle.to_str().unwrap(),
        ],
        "",
        "",
    )
    .await;
    assert_eq!(c, 0, "{err}");
    let exported = std::fs::read_to_string(&bundle).unwrap();
    assert!(exported.contains("secret_set"), "{exported}");
    let mut haystacks = where_a_secret_must_not_be(&gw, &id).await;
    haystacks.extend([
        ("`credentials set`'s output (trace logs)", set_log),
        ("run's stderr (trace logs)", run_stderr),
        ("the JSON Lines export", exported),
    ]);
    drop(server); // its log is complete
    for file in walk(dir.path()) {
        haystacks.push((
            "a file beside the gateway (database, WAL, keys, server log)",
            String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned(),
        ));
    }
    assert!(haystacks
        .iter()
        .any(|(_, t)| t.contains("credential_released")));
    for (what, text) in &haystacks {
        assert!(!text.contains(&secret), "the secret is in {what}");
        assert!(
            !text.contains("an-older-value"),
            "the old value is in {what}"
        );
    }
}

/// A stored value the configured key cannot open stops the gateway at start, saying which key
/// sealed it and which file is configured; a static credential never set refuses the release
/// (503 `credential_unavailable`) saying how to set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secrets_key_file_is_refused_clearly_and_an_unset_value_is_unavailable() {
    let (dir, config) = static_gateway_dir();
    let (c, err) = set_static(&config, "api-token", "value-under-the-first-key").await;
    assert_eq!(c, 0, "{err}");
    // An unset static credential: the gateway starts; the release says what to do.
    let (url, server) = serve(&config).await;
    let gw = Gw::from_parts(url, client(), tempfile::tempdir().unwrap(), server);
    let v = gw
        .submit("bot", json!({"action": "api.unset", "resource": "api://x"}))
        .await;
    assert_eq!(v["status"], "allowed", "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, _) = gw
        .post(
            "bot",
            "/v1/grants/redeem",
            json!({"token": v["grant"]["token"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = ask(&gw, "bot", &id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::SERVICE_UNAVAILABLE, "credential_unavailable"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("countersign credentials set unset-token"),
        "{e}"
    );
    drop(gw);

    // Another key file in place of the one the value was sealed with.
    let key_file = dir.path().join("data/gw.db.secrets.key");
    let first = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let c = countersign_gateway::config::Config::load(&config).unwrap();
    let err = countersign_server::Server::open_with(&c, Default::default())
        .await
        .err()
        .expect("the gateway started with the wrong secrets key")
        .to_string();
    assert!(err.contains("\"api-token\""), "{err}");
    assert!(err.contains("sealed under key"), "{err}");
    assert!(err.contains("gw.db.secrets.key"), "{err}");
    assert!(!err.contains("value-under-the-first-key"), "{err}");
    // `countersign run --config` (an embedded gateway) refuses before running anything.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--token",
            "tok-bot",
        ])
        .args(["--action", "api.call", "--", "touch", "ran"])
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("sealed under key"), "{stderr}");
    assert!(!cwd.path().join("ran").exists());
    // A key file that is not a key.
    std::fs::write(&key_file, "not a key\n").unwrap();
    let err = countersign_server::Server::open_with(&c, Default::default())
        .await
        .err()
        .expect("the gateway started with a broken secrets key")
        .to_string();
    assert!(
        err.contains("secrets key") && err.contains("not hex"),
        "{err}"
    );
    // The right key back: it starts.
    std::fs::write(&key_file, first).unwrap();
    assert!(
        countersign_server::Server::open_with(&c, Default::default())
            .await
            .is_ok()
    );
}

/// `source_address`: a certificate restricted to a network the client is not in is refused by
/// the real sshd; one restricted to the address the release request came from (`requester`,
/// here 127.0.0.1) is accepted, and carries that restriction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_certificate_carries_its_source_address_and_sshd_enforces_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[credentials]]
name = "box-far"
kind = "ssh_certificate"
principal = "{user}"
env = "SSH_KEY"
source_address = ["192.0.2.0/24"]

[[credentials]]
name = "box-here"
kind = "ssh_certificate"
principal = "{user}"
env = "SSH_KEY"
source_address = ["requester"]
"#,
            user = user()
        ),
    );
    std::fs::write(
        dir.path().join("policies/ssh.cedar"),
        r#"
@id("far") @credentials("box-far") permit (principal, action == Action::"ssh.far", resource);
@id("here") @credentials("box-here") permit (principal, action == Action::"ssh.here", resource);
"#,
    )
    .unwrap();
    let (url, server) = serve(&config).await;
    let ca_pub = dir.path().join("data/gw.db.ssh-ca.key.pub");
    let gw = Gw::from_parts(url, client(), dir, server);
    let sshd_dir = tempfile::tempdir().unwrap();
    let sshd = sshd(sshd_dir.path(), &ca_pub).await;
    for (action, accepted, option) in [
        ("ssh.far", false, "source-address 192.0.2.0/24"),
        ("ssh.here", true, "source-address 127.0.0.1/32"),
    ] {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("id_ed25519");
        let identity = format!("IdentityFile={}", key.display());
        let argv = ssh_argv(sshd.port, &identity, &["echo", "approved-ran"]);
        let v = gw
            .submit(
                "bot",
                json!({"action": action, "resource": "ssh://box", "params": {"argv": argv}}),
            )
            .await;
        assert_eq!(v["status"], "allowed", "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let (s, _) = gw
            .post(
                "bot",
                "/v1/grants/redeem",
                json!({"token": v["grant"]["token"]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, c) = ask(&gw, "bot", &id).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        for f in c["credentials"][0]["files"].as_array().unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let path = keys.path().join(f["name"].as_str().unwrap());
            std::fs::write(&path, f["contents"].as_str().unwrap()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let shown = std::process::Command::new("ssh-keygen")
            .arg("-Lf")
            .arg(keys.path().join("id_ed25519-cert.pub"))
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains(option), "{action}: {shown}");
        let out = std::process::Command::new("ssh")
            .args(&argv[1..])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            accepted,
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = if accepted { "approved-ran\n" } else { "" };
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{action}");
    }
}
