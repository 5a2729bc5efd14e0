//! `countersign run`'s context providers, against a real gateway on loopback: the built-in
//! `kubectl` provider with a stand-in `kubectl` (the real one cannot be installed here) that
//! follows `kubectl diff`'s documented exit codes (0: no differences, 1: differences, more: an
//! error), and providers declared in a run config.

use crate::run::{action, finish, gateway_with, pending_review, submitted};
use serde_json::json;
use std::path::Path;
use tokio::process::{Child, Command};

/// kubectl.apply is reviewed unless the server-side diff says nothing changes: policy sees the
/// context.
const KUBECTL_POLICIES: &str = r#"
@id("k8s-apply") @effect("review") @approvers("group:sre") permit (principal, action == Action::"kubectl.apply", resource)
unless { context.params has context && context.params.context has kubectl
         && context.params.context.kubectl has changes && context.params.context.kubectl.changes == false };
@id("k8s-noop") permit (principal, action == Action::"kubectl.apply", resource)
when { context.params has context && context.params.context has kubectl
       && context.params.context.kubectl has changes && context.params.context.kubectl.changes == false };
@id("migrate") @effect("review") @approvers("group:sre") permit (principal, action == Action::"migrate.up", resource);
"#;

/// A stand-in `kubectl` in `dir/bin`: `diff` answers from the file `kubectl-state` in the
/// working directory (`changed`, `same`, else an error) and records its arguments; `apply`
/// prints its arguments.
fn fake_kubectl(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = r#"#!/bin/sh
case "$1" in
diff)
  echo "$*" > kubectl-diff-args
  case "$(cat kubectl-state 2>/dev/null)" in
  changed) printf -- '--- /tmp/LIVE/apps.v1.Deployment.prod.web\n+++ /tmp/MERGED/apps.v1.Deployment.prod.web\n@@ -6 +6 @@\n-  replicas: 1\n+  replicas: 3\n'; exit 1 ;;
  same) exit 0 ;;
  *) echo 'error: the server could not find the requested resource' >&2; exit 2 ;;
  esac ;;
apply) echo "applied $*" ;;
*) echo "unknown $1" >&2; exit 2 ;;
esac
"#;
    let path = bin.join("kubectl");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run_with_path(url: &str, cwd: &Path, path: &str, flags: &[&str], cmd: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("run")
        .args(["--gateway", url, "--token", "tok-bot"])
        .args(flags)
        .arg("--")
        .args(cmd)
        .current_dir(cwd)
        .env("PATH", path)
        .env_remove("COUNTERSIGN_RUN_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_kubectl_apply_attaches_the_server_side_diff() {
    let (gw, cwd) = gateway_with(KUBECTL_POLICIES).await;
    let path = fake_kubectl(cwd.path());
    let apply = ["kubectl", "apply", "-f", "web.yaml"];

    // Differences: the diff is attached and the review decides.
    std::fs::write(cwd.path().join("kubectl-state"), "changed").unwrap();
    let child = run_with_path(&gw.url, cwd.path(), &path, &[], &apply);
    let id = pending_review(&gw).await;
    let (_, spec) = submitted(&gw, "kubectl.apply").await;
    let k = &spec["params"]["context"]["kubectl"];
    assert_eq!(k["changes"], true, "{spec}");
    assert!(
        k["diff"].as_str().unwrap().contains("+  replicas: 3"),
        "{k}"
    );
    assert_eq!(
        k["command"],
        json!(["kubectl", "diff", "--server-side", "-f", "web.yaml"])
    );
    assert_eq!(
        std::fs::read_to_string(cwd.path().join("kubectl-diff-args")).unwrap(),
        "diff --server-side -f web.yaml\n"
    );
    // The reviewer sees it too.
    let seen = action(&gw, &id).await;
    assert_eq!(
        seen["params"]["context"]["kubectl"]["changes"], true,
        "{seen}"
    );
    gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "applied apply -f web.yaml\n");
    std::fs::remove_file(cwd.path().join("kubectl-diff-args")).unwrap();

    // No differences: policy allows it outright (it sees `changes == false`).
    std::fs::write(cwd.path().join("kubectl-state"), "same").unwrap();
    let child = run_with_path(&gw.url, cwd.path(), &path, &[], &apply);
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "applied apply -f web.yaml\n");

    // kubectl diff fails (exit 2): recorded as unavailable, the review goes on, nothing ran.
    std::fs::write(cwd.path().join("kubectl-state"), "broken").unwrap();
    let child = run_with_path(&gw.url, cwd.path(), &path, &["--wait", "1s"], &apply);
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(1), "held, then withdrawn at --wait: {err}");
    assert_eq!(out, "");
    let entries = crate::run::audit(&gw).await;
    let last = entries
        .iter()
        .map(|e| &e["entry"])
        .rfind(|e| e["type"] == "submitted")
        .unwrap();
    let k = &last["event"]["spec"]["params"]["context"]["kubectl"];
    let why = k["unavailable"].as_str().unwrap();
    assert!(
        why.contains("exited 2") && why.contains("could not find the requested resource"),
        "{k}"
    );

    // --no-context: nothing attached, kubectl diff not run.
    std::fs::remove_file(cwd.path().join("kubectl-diff-args")).unwrap();
    let child = run_with_path(
        &gw.url,
        cwd.path(),
        &path,
        &["--no-context", "--wait", "1s"],
        &apply,
    );
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(!cwd.path().join("kubectl-diff-args").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_config_providers_attach_json_and_record_failures() {
    let (gw, cwd) = gateway_with(KUBECTL_POLICIES).await;
    let dir = cwd.path();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let write = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    };
    let migrate = write("migrate", "touch ran-migrate; echo migrated");
    let pending = write(
        "pending",
        r#"printf '{"pending":["0007_add_index"],"argv":%s}' "$COUNTERSIGN_RUN_ARGV""#,
    );
    let hangs = write("hangs", "sleep 30");
    std::fs::write(
        dir.join("run.toml"),
        format!(
            r#"
[[run.context]]
name = "migrations"
program = "migrate"
subcommand = "up"
command = ["{pending}"]

[[run.context]]
name = "slow"
program = "migrate"
command = ["{hangs}"]
timeout = "500ms"
"#
        ),
    )
    .unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let started = std::time::Instant::now();
    let child = run_with_path(
        &gw.url,
        dir,
        &path,
        &["--run-config", "run.toml"],
        &[&migrate, "up"],
    );
    let id = pending_review(&gw).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the slow provider was bounded"
    );
    assert!(!dir.join("ran-migrate").exists(), "ran before approval");
    let (_, spec) = submitted(&gw, "migrate.up").await;
    let c = &spec["params"]["context"];
    assert_eq!(
        c["migrations"],
        json!({"pending": ["0007_add_index"], "argv": [migrate, "up"]}),
        "{c}"
    );
    assert!(
        c["slow"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("did not finish within 500ms"),
        "{c}"
    );
    gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    let (code, out, err) = finish(child).await;
    assert_eq!((code, out.as_str()), (Some(0), "migrated\n"), "{err}");

    // A run config that is not valid: refused before anything is submitted or run.
    std::fs::write(
        dir.join("bad.toml"),
        "[[run.context]]\nprogram = \"migrate\"\n",
    )
    .unwrap();
    let child = run_with_path(
        &gw.url,
        dir,
        &path,
        &["--run-config", "bad.toml"],
        &[&migrate, "up"],
    );
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    let submissions = crate::run::audit(&gw)
        .await
        .iter()
        .filter(|e| e["entry"]["type"] == "submitted")
        .count();
    assert_eq!(submissions, 1);
}
