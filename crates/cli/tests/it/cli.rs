//! The binary as a user runs it: `serve`, `keys new`, `policy`, and the client commands with
//! their exit codes.

use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_countersign");

/// A `countersign serve` process on a free loopback port.
pub struct Server {
    pub url: String,
    child: Child,
}

impl Server {
    pub async fn spawn(dir: &Path) -> Server {
        let config = crate::support::write_config(dir, "");
        Server::serve(&config, &[], Stdio::null()).await
    }

    /// `countersign serve --config CONFIG` with `env` set and its stderr (the logs) to `stderr`.
    pub async fn serve(config: &Path, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server started")
            .unwrap()
            .unwrap_or_default();
        Server {
            url: listening_url(&line),
            child,
        }
    }

    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap(); // SIGKILL
        let _ = self.child.wait().await;
    }
}

/// The URL in `countersign serve`'s first line (`countersign listening on http://ADDR`). Servers
/// under test listen on port 0 and say which port they got: a port picked by the test and
/// released before the server binds it can be taken in between by another test.
pub fn listening_url(line: &str) -> String {
    let at = line
        .find("listening on http://")
        .unwrap_or_else(|| panic!("the server did not start: {line:?}"));
    let url = &line[at + "listening on ".len()..];
    url.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub async fn run(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("COUNTERSIGN_URL", url)
        .env("COUNTERSIGN_TOKEN", token)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The id of the first review alice can vote on, once one appears.
async fn first_review(http: &reqwest::Client, url: &str) -> String {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v: serde_json::Value = http
            .get(format!("{url}/v1/reviews"))
            .bearer_auth("tok-alice")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(r) = v["reviews"].as_array().and_then(|a| a.first()) {
            return r["id"].as_str().unwrap().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_exits_zero_on_approval_and_one_on_denial() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path()).await;
    let url = server.url.clone();

    let (code, out, _) = run(&["submit", "logs.read", "app://web"], &url, "tok-bot").await;
    assert_eq!(code, 0);
    assert!(out.contains("\"allowed\""));

    let (code, _, err) = run(
        &["submit", "db.drop", "pg://x", "--wait", "5"],
        &url,
        "tok-bot",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("dropping tables is forbidden"), "{err}");

    // Approve while `submit --wait` waits.
    let waiting = tokio::spawn({
        let url = url.clone();
        async move {
            run(
                &[
                    "submit",
                    "deploy",
                    "k8s://prod",
                    "--wait",
                    "30",
                    "--justification",
                    "fix",
                ],
                &url,
                "tok-bot",
            )
            .await
        }
    });
    let http = crate::support::client();
    let id = first_review(&http, &url).await;
    let (code, _, _) = run(&["approve", &id, "--comment", "go"], &url, "tok-alice").await;
    assert_eq!(code, 0);
    let (code, out, _) = waiting.await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"approved\""));

    // Denied by a reviewer: exit 1 with the reviewer's comment.
    let waiting = tokio::spawn({
        let url = url.clone();
        async move {
            run(
                &["submit", "deploy", "k8s://prod/2", "--wait", "30"],
                &url,
                "tok-bot",
            )
            .await
        }
    });
    let id = first_review(&http, &url).await;
    let (code, _, err) = run(&["approve", &id], &url, "tok-bot").await;
    assert_eq!(code, 2, "an agent cannot approve: {err}");
    assert!(err.contains("agents_cannot_approve"), "{err}");
    let (code, _, _) = run(
        &["deny", &id, "--comment", "freeze week"],
        &url,
        "tok-alice",
    )
    .await;
    assert_eq!(code, 0);
    let (code, _, err) = waiting.await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("freeze week"), "{err}");

    // Timeout while still pending: exit 3.
    let (code, _, _) = run(
        &["submit", "deploy", "k8s://prod/3", "--wait", "1"],
        &url,
        "tok-bot",
    )
    .await;
    assert_eq!(code, 3);
    let (code, _, err) = run(&["show", "nope"], &url, "tok-bot").await;
    assert_eq!(code, 2);
    assert!(err.contains("not_found"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&run(&["reviews"], &url, "tok-alice").await.1).unwrap();
    assert_eq!(v["reviews"].as_array().unwrap().len(), 1);
    let _ = json!({});
}

#[tokio::test]
async fn submit_reuse_open_answers_with_the_open_review_of_the_same_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path()).await;
    let url = server.url.clone();
    let submit = |extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut args = vec!["submit", "deploy", "k8s://prod/9", "--params", r#"{"v":2}"#];
            args.extend_from_slice(extra);
            let (code, out, err) = run(&args, &url, "tok-bot").await;
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let first = submit(&[]).await;
    assert_eq!(submit(&["--reuse-open"]).await, first, "the same review");
    assert_ne!(submit(&[]).await, first, "without the flag: a new review");
}

#[tokio::test]
async fn keys_new_prints_a_token_and_its_hash() {
    let (code, out, _) = run(&["keys", "new"], "", "").await;
    assert_eq!(code, 0);
    let token = out.lines().next().unwrap().strip_prefix("token: ").unwrap();
    let hash = out.lines().nth(1).unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    assert_eq!(hash, format!("api_key_sha256 = \"{want}\""));
    assert!(token.len() > 40);
}

#[tokio::test]
async fn policy_validate_and_eval() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (code, out, _) = run(
        &[
            "policy",
            "validate",
            examples.join("policies").to_str().unwrap(),
        ],
        "",
        "",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.cedar"),
        "permit (principal, action, resource);\npermit (principal action);\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["policy", "validate", dir.path().to_str().unwrap()],
        "",
        "",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("bad.cedar:2:"), "{err}");
    let (code, out, _) = run(
        &[
            "policy",
            "eval",
            "--config",
            examples.join("countersign.toml").to_str().unwrap(),
            "--principal",
            "deploy-bot",
            "--action",
            "terraform.apply",
            "--resource",
            "tf://prod",
            "--environment",
            "production",
        ],
        "",
        "",
    )
    .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["effect"], "review");
    assert_eq!(v["decision"]["policies"], json!(["terraform-apply-prod"]));
    // --groups would be ignored for an identity from --config: refused instead.
    let (code, _, err) = run(
        &[
            "policy",
            "eval",
            "--config",
            examples.join("countersign.toml").to_str().unwrap(),
            "--principal",
            "deploy-bot",
            "--groups",
            "admins",
            "--action",
            "terraform.apply",
            "--resource",
            "tf://prod",
        ],
        "",
        "",
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("--groups applies to a KIND:ID principal"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_refuses_bad_config_naming_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let base = crate::support::write_config(dir.path(), "");
    let good = std::fs::read_to_string(&base).unwrap();
    let cases = [
        (format!("colour = \"red\"\n{good}"), "colour"),
        (
            good.replace("review_ttl = \"10m\"", "review_ttl = \"ten minutes\""),
            "review_ttl",
        ),
        (
            format!(
                "{good}[[identities]]\nid = \"bot\"\nkind = \"agent\"\napi_key_sha256 = \"{}\"\n",
                "0".repeat(64)
            ),
            "duplicate identity id",
        ),
        (
            good.replace("kind = \"agent\"", "kind = \"robot\""),
            "robot",
        ),
        (
            format!("default_effect = \"review\"\n{good}"),
            "default_approvers",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        assert!(
            err.contains("bad.toml") && err.contains(needle),
            "{needle}: {err}"
        );
    }
}

/// `COUNTERSIGN_LOG_FORMAT=json` writes one JSON object per log line; an unknown format is
/// refused at start (status 2), not ignored.
#[tokio::test]
async fn logs_can_be_json_lines_and_an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(dir.path(), "");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("COUNTERSIGN_LOG_FORMAT", "yaml")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COUNTERSIGN_LOG_FORMAT"));

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .env("COUNTERSIGN_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("a log line within 30 s")
        .unwrap()
        .expect("a log line");
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
    child.kill().await.unwrap();
}
