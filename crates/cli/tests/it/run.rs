//! `countersign run`: an approval in front of a command, against a real gateway on loopback. The
//! commands are real processes; a command that must not run would create a marker file.

use crate::support::{client, write_config, Gw};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tokio::process::{Child, Command};

const RUN_POLICIES: &str = r#"
@id("run-sh") permit (principal, action == Action::"sh.run", resource);
@id("run-shell") permit (principal, action == Action::"shell.run", resource);
@id("run-danger") @reason("dangerous commands are never run by an agent")
forbid (principal, action == Action::"danger.run", resource);
@id("run-deploy") @effect("review") @approvers("group:sre") @reason("deploys need an SRE")
permit (principal, action == Action::"deploy.run", resource);
"#;

/// A gateway with the run policies, and a working directory for the commands.
async fn gateway() -> (Gw, tempfile::TempDir) {
    gateway_with("").await
}

/// A gateway with the run policies and `more`.
pub(crate) async fn gateway_with(more: &str) -> (Gw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), "");
    std::fs::write(
        dir.path().join("policies/run.cedar"),
        format!("{RUN_POLICIES}\n{more}"),
    )
    .unwrap();
    let (url, server) = crate::support::serve(&config_path).await;
    (
        Gw::from_parts(url, client(), dir, server),
        tempfile::tempdir().unwrap(),
    )
}

/// `countersign run` as agent `bot`, in `cwd`, with `flags`, running `cmd`.
fn run(gw: &Gw, cwd: &Path, flags: &[&str], cmd: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("run")
        .args(["--gateway", &gw.url, "--token", "tok-bot"])
        .args(flags)
        .arg("--")
        .args(cmd)
        .current_dir(cwd)
        .env("RUN_CANARY_SECRET", "canary-value-5f1e0c")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub(crate) async fn finish(child: Child) -> (Option<i32>, String, String) {
    let out: Output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("countersign run did not finish")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The audit log's entries, as JSON.
pub(crate) async fn audit(gw: &Gw) -> Vec<Value> {
    let (s, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log["entries"].as_array().unwrap().clone()
}

/// The submitted spec of the only action named `action` in the audit log, and its id.
pub(crate) async fn submitted(gw: &Gw, action: &str) -> (String, Value) {
    let found: Vec<(String, Value)> = audit(gw)
        .await
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "submitted" && e["event"]["spec"]["action"] == action)
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_string(),
                e["event"]["spec"].clone(),
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// The review `alice` sees, once `run` has submitted it.
pub(crate) async fn pending_review(gw: &Gw) -> String {
    for _ in 0..200 {
        let (_, v) = gw.get("alice", "/v1/reviews").await;
        if let Some(id) = v["reviews"][0]["id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no review appeared");
}

pub(crate) async fn action(gw: &Gw, id: &str) -> Value {
    let (s, v) = gw.get("bot", &format!("/v1/actions/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_an_allowed_command_runs_and_its_exit_code_and_result_pass_through() {
    let (gw, cwd) = gateway().await;
    let child = run(&gw, cwd.path(), &[], &["sh", "-c", "echo hello; exit 3"]);
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(out, "hello\n");
    let (id, spec) = submitted(&gw, "sh.run").await;
    assert_eq!(
        spec["params"]["argv"],
        json!(["sh", "-c", "echo hello; exit 3"])
    );
    assert_eq!(
        spec["params"]["cwd"],
        json!(std::fs::canonicalize(cwd.path()).unwrap())
    );
    assert!(spec["resource"].as_str().unwrap().starts_with("exec://"));
    assert!(spec["resource"].as_str().unwrap().ends_with("/sh"));
    let a = action(&gw, &id).await;
    assert_eq!(a["status"], "failed", "{a}");
    let stdout_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello\n"));
    assert_eq!(a["result"]["output_sha256"], json!(stdout_sha), "{a}");
    assert_eq!(a["result"]["exit_code"], 3, "{a}");
    let detail: Value = serde_json::from_str(a["result"]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["exit_code"], 3);
    assert_eq!(detail["stdout_sha256"], json!(stdout_sha));
    assert!(detail["duration_ms"].is_u64());

    let child = run(&gw, cwd.path(), &["--action", "sh.run"], &["true"]);
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
}

/// Output larger than `run`'s read buffer (64 KiB), in pieces of every size the pipe gives, is
/// passed through whole and hashed whole: the buffer is reused read after read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_passes_through_and_hashes_output_larger_than_its_buffer() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "sh.run"],
        &["seq", "1", "100000"],
    );
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    let expected: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.len(), expected.len());
    assert!(
        out == expected,
        "the output was not passed through unchanged"
    );
    let (id, _) = submitted(&gw, "sh.run").await;
    let a = action(&gw, &id).await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(expected.as_bytes()));
    assert_eq!(a["result"]["output_sha256"], json!(sha), "{a}");
    let detail: Value = serde_json::from_str(a["result"]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["stdout_bytes"], json!(expected.len()));
    assert_eq!(detail["stdout_sha256"], json!(sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_denied_command_never_starts() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "danger.run"],
        &["touch", "marker"],
    );
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("dangerous commands are never run"), "{err}");
    assert!(!cwd.path().join("marker").exists());
    // A program policy does not allow is denied by default too.
    let child = run(&gw, cwd.path(), &[], &["touch", "marker"]);
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_held_command_runs_once_approved() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run", "--justification", "ship it"],
        &["touch", "marker"],
    );
    let id = pending_review(&gw).await;
    assert!(!cwd.path().join("marker").exists(), "ran before approval");
    let (s, v) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(cwd.path().join("marker").exists());
    assert!(err.contains(&id), "the status names the action: {err}");
    assert!(
        err.contains("approvals 0/1") && err.contains("review closes in"),
        "the status shows the quorum and the time left: {err}"
    );
    assert_eq!(action(&gw, &id).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_reviewers_modification_runs_the_modified_argv() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run"],
        &["touch", "original"],
    );
    let id = pending_review(&gw).await;
    let here = std::fs::canonicalize(cwd.path()).unwrap();
    let (s, v) = gw
        .vote(
            "alice",
            &id,
            json!({"verdict": "modify", "params": {"argv": ["touch", "modified"], "cwd": here, "env": []}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("modified the command"), "{err}");
    assert!(err.contains("touch modified"), "{err}");
    assert!(cwd.path().join("modified").exists());
    assert!(!cwd.path().join("original").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_modification_that_is_not_a_command_is_refused() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run"],
        &["touch", "marker"],
    );
    let id = pending_review(&gw).await;
    let (s, v) = gw
        .vote(
            "alice",
            &id,
            json!({"verdict": "modify", "params": {"argv": "touch marker", "cwd": "/"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("not run"), "{err}");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_rejected_command_exits_1_and_never_starts() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run"],
        &["touch", "marker"],
    );
    let id = pending_review(&gw).await;
    let (s, v) = gw
        .vote(
            "alice",
            &id,
            json!({"verdict": "deny", "comment": "not today"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rejected"), "{err}");
    assert!(err.contains("not today"), "{err}");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sigint_while_held_withdraws_the_review() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run"],
        &["touch", "marker"],
    );
    let id = pending_review(&gw).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(action(&gw, &id).await["status"], "cancelled");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_gives_up_and_withdraws_the_review() {
    let (gw, cwd) = gateway().await;
    let child = run(
        &gw,
        cwd.path(),
        &["--action", "deploy.run", "--wait", "1s"],
        &["touch", "marker"],
    );
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    let (id, _) = submitted(&gw, "deploy.run").await;
    assert_eq!(action(&gw, &id).await["status"], "cancelled");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shell_reviews_the_whole_line_as_command() {
    let (gw, cwd) = gateway().await;
    let child = run(&gw, cwd.path(), &["--shell"], &["echo a | tr a b"]);
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "b\n");
    let (_, spec) = submitted(&gw, "shell.run").await;
    assert_eq!(spec["params"]["command"], "echo a | tr a b");
    assert!(spec["params"].get("argv").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_environment_names_never_values() {
    let (gw, cwd) = gateway().await;
    let child = run(&gw, cwd.path(), &["--action", "sh.run"], &["true"]);
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    let (_, spec) = submitted(&gw, "sh.run").await;
    let names = spec["params"]["env"].as_array().unwrap();
    assert!(names.contains(&json!("RUN_CANARY_SECRET")), "{spec}");
    let log = serde_json::to_string(&audit(&gw).await).unwrap();
    assert!(!log.contains("canary-value-5f1e0c"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_fails_closed_when_the_gateway_is_unreachable() {
    let (gw, cwd) = gateway().await;
    let mut dead = gw.url.clone();
    dead.truncate(dead.rfind(':').unwrap());
    dead.push_str(":9");
    let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["run", "--gateway", &dead, "--token", "tok-bot", "--"])
        .args(["touch", "marker"])
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("not run"), "{err}");
    assert!(!cwd.path().join("marker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forwards_sigterm_to_the_running_command() {
    let (gw, cwd) = gateway().await;
    let script = "trap 'echo got-term; exit 7' TERM; touch started; sleep 30 & wait";
    let child = run(&gw, cwd.path(), &[], &["sh", "-c", script]);
    for _ in 0..200 {
        if cwd.path().join("started").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cwd.path().join("started").exists(),
        "the command never started"
    );
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let t0 = std::time::Instant::now();
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(7), "{err}");
    // The `sleep` it left behind holds the pipes open: `run` reports anyway.
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(out, "got-term\n");
    let (id, _) = submitted(&gw, "sh.run").await;
    assert_eq!(action(&gw, &id).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_an_embedded_gateway_runs_the_approved_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/run.cedar"), RUN_POLICIES).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--token",
            "tok-bot",
        ])
        .args(["--", "sh", "-c", "echo embedded; exit 4"])
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(4), "{err}");
    assert_eq!(out, "embedded\n");
    let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--token",
            "tok-bot",
        ])
        .args(["--action", "danger.run", "--", "touch", "marker"])
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(!cwd.path().join("marker").exists());
}

/// A stand-in `terraform` (the real one cannot be installed here): prints its arguments.
fn fake_terraform(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("terraform");
    // `terraform show -json PLAN` prints a plan document in Terraform's format (a database
    // deleted, its old values holding a password); anything else prints its arguments.
    let plan = json!({
        "format_version": "1.2",
        "terraform_version": "1.9.5",
        "resource_changes": [{
            "address": "aws_db_instance.main", "mode": "managed", "type": "aws_db_instance",
            "name": "main", "provider_name": "registry.terraform.io/hashicorp/aws",
            "change": {"actions": ["delete"], "before": {"password": "tf-before-canary"},
                       "after": null, "after_unknown": false, "before_sensitive": {},
                       "after_sensitive": false},
            "action_reason": "delete_because_no_resource_config"
        }],
        "prior_state": {"format_version": "1.0", "values": {"root_module": {}}},
        "configuration": {"root_module": {}}
    });
    std::fs::write(bin.join("plan.json"), plan.to_string()).unwrap();
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = show ] && [ \"$2\" = -json ]; then cat \"$(dirname \"$0\")/plan.json\"; exit 0; fi\necho \"terraform $*\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_terraform_apply_attaches_the_plan_hash_and_refuses_a_changed_plan() {
    let (gw, cwd) = gateway_with(
        r#"@id("tf") @effect("review") @approvers("group:sre") permit (principal, action == Action::"terraform.apply", resource);"#,
    )
    .await;
    let tf = fake_terraform(cwd.path());
    std::fs::write(cwd.path().join("plan.tfplan"), b"plan v1").unwrap();
    let plan_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"plan v1"));

    // Unchanged: runs.
    let child = run(&gw, cwd.path(), &[], &[&tf, "apply", "plan.tfplan"]);
    let id = pending_review(&gw).await;
    let (_, spec) = submitted(&gw, "terraform.apply").await;
    // The file and its hash, and the plan's summary from `terraform show -json` in Terraform's
    // format, without the values (where secrets live).
    assert_eq!(
        spec["params"]["plan"],
        json!({
            "file": "plan.tfplan", "sha256": plan_sha,
            "format_version": "1.2", "terraform_version": "1.9.5",
            "resource_changes": [{
                "address": "aws_db_instance.main", "mode": "managed", "type": "aws_db_instance",
                "name": "main", "provider_name": "registry.terraform.io/hashicorp/aws",
                "change": {"actions": ["delete"]},
                "action_reason": "delete_because_no_resource_config"
            }]
        })
    );
    // Through the analyzers: the reviewer sees a database destroyed.
    let (_, view) = gw.get("alice", &format!("/v1/actions/{id}")).await;
    assert_eq!(view["analysis"]["risk"], "critical", "{view}");
    assert!(
        view["analysis"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("tf:stateful-delete")),
        "{view}"
    );
    assert!(!view.to_string().contains("tf-before-canary"));
    gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "terraform apply plan.tfplan\n"),
        "{err}"
    );

    // Changed after approval: refused.
    let child = run(&gw, cwd.path(), &[], &[&tf, "apply", "plan.tfplan"]);
    let id = pending_review(&gw).await;
    std::fs::write(cwd.path().join("plan.tfplan"), b"plan v2").unwrap();
    gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("changed after approval"), "{err}");
    assert_eq!(out, "");
}
