//! Context providers for `countersign run`: commands run before submitting, whose JSON output is
//! attached to the action's parameters under `params.context.NAME`, so the reviewer, the
//! analyzers and policy see it. Declared per program (and optionally subcommand) in the run
//! config (`--run-config FILE` or `COUNTERSIGN_RUN_CONFIG`):
//!
//! ```toml
//! [run]
//! builtin_context = true          # the built-in providers (kubectl's server-side diff)
//!
//! [[run.context]]
//! name = "migrations"             # the key under params.context (default: the program)
//! program = "migrate"             # the command's program file name
//! subcommand = "up"               # optional: its first argument that is not a flag
//! command = ["./scripts/pending-migrations", "--json"]   # run with the command's argv appended
//! timeout = "10s"                 # at most 120s
//! max_bytes = 262144              # stdout limit, at most 512 KiB
//! ```
//!
//! A provider never blocks the action and never runs it: whatever goes wrong (not found, a
//! non-zero exit, a timeout, output over the limit or not JSON) is attached as
//! `{"unavailable": "why"}` and the action is submitted for review as usual. The built-in
//! `kubectl` provider runs `kubectl diff --server-side` for `kubectl apply` and attaches
//! `{"command", "changes", "diff"}` (kubectl diff exits 0: no differences, 1: differences, more:
//! an error).

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The parameter every provider's output goes under.
pub const CONTEXT_KEY: &str = "context";
/// A provider's time limit unless its config says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest time limit a provider may be given.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// A provider's stdout limit unless its config says otherwise.
const DEFAULT_MAX_BYTES: usize = 256 * 1024;
/// The largest stdout limit a provider may be given.
const MAX_MAX_BYTES: usize = 512 * 1024;
/// All providers' outputs together (the API takes 1 MiB per submission).
const MAX_TOTAL_BYTES: usize = 768 * 1024;
/// How much of a failing provider's stderr is kept in the `unavailable` reason.
const STDERR_KEPT: usize = 1024;

/// `countersign run`'s context options.
#[derive(Args, Debug, Clone)]
pub struct ContextArgs {
    /// A TOML file declaring context providers (`[[run.context]]` tables); see the README.
    #[arg(long, env = "COUNTERSIGN_RUN_CONFIG", value_name = "FILE")]
    run_config: Option<PathBuf>,
    /// Attach no context (neither configured nor built-in providers run).
    #[arg(long)]
    no_context: bool,
}

/// Why the run config cannot be used (nothing is submitted).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the run config {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the run config {0} is not valid: {1}")]
    Parse(String, String),
    #[error("the run config {path}: [[run.context]] {name:?}: {why}")]
    Provider {
        path: String,
        name: String,
        why: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    run: RunSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    #[serde(default = "yes")]
    builtin_context: bool,
    #[serde(default)]
    context: Vec<ProviderConfig>,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            builtin_context: true,
            context: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    name: Option<String>,
    program: String,
    subcommand: Option<String>,
    command: Vec<String>,
    timeout: Option<String>,
    max_bytes: Option<usize>,
}

/// What a provider runs.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A configured command: its stdout must be one JSON value.
    Command(Vec<String>),
    /// `kubectl diff --server-side` for `kubectl apply`.
    KubectlDiff,
}

/// One context provider.
#[derive(Debug, Clone, PartialEq)]
struct Provider {
    name: String,
    program: String,
    subcommand: Option<String>,
    kind: Kind,
    timeout: Duration,
    max_bytes: usize,
}

/// The providers `countersign run` may use.
#[derive(Debug, Clone, Default)]
pub struct Providers(Vec<Provider>);

/// A name: 1-64 of `[A-Za-z0-9_-]` (dots too for a program).
fn plain(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
}

fn kubectl_builtin() -> Provider {
    Provider {
        name: "kubectl".into(),
        program: "kubectl".into(),
        subcommand: Some("apply".into()),
        kind: Kind::KubectlDiff,
        timeout: DEFAULT_TIMEOUT,
        max_bytes: DEFAULT_MAX_BYTES,
    }
}

impl Providers {
    /// The providers `args` select: none with `--no-context`; else the run config's (if any)
    /// and the built-in ones it does not turn off or replace (a configured provider named like
    /// a built-in one replaces it).
    pub fn load(args: &ContextArgs) -> Result<Providers, ConfigError> {
        if args.no_context {
            return Ok(Providers::default());
        }
        match &args.run_config {
            None => Ok(Providers(vec![kubectl_builtin()])),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(shown.clone(), e))?;
                Providers::parse(&text, &shown)
            }
        }
    }

    fn parse(text: &str, path: &str) -> Result<Providers, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(path.into(), e.to_string()))?;
        let mut out: Vec<Provider> = Vec::new();
        for p in file.run.context {
            let name = p.name.clone().unwrap_or_else(|| p.program.clone());
            let bad = |why: &str| ConfigError::Provider {
                path: path.into(),
                name: name.clone(),
                why: why.into(),
            };
            if !plain(&name, false) {
                return Err(bad("`name` must be 1-64 of A-Z a-z 0-9 _ -"));
            }
            if !plain(&p.program, true) {
                return Err(bad(
                    "`program` must be a program's file name (1-64 of A-Z a-z 0-9 . _ -)",
                ));
            }
            if p.subcommand.as_deref().is_some_and(|s| !plain(s, false)) {
                return Err(bad("`subcommand` must be 1-64 of A-Z a-z 0-9 _ -"));
            }
            if p.command.first().is_none_or(|c| c.is_empty()) {
                return Err(bad("`command` must be a non-empty array, program first"));
            }
            let timeout = match &p.timeout {
                None => DEFAULT_TIMEOUT,
                Some(t) => {
                    humantime::parse_duration(t).map_err(|e| bad(&format!("`timeout`: {e}")))?
                }
            };
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(bad("`timeout` must be more than 0 and at most 120s"));
            }
            let max_bytes = p.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
            if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
                return Err(bad("`max_bytes` must be 1 to 524288"));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(bad("two providers have this name"));
            }
            out.push(Provider {
                name,
                program: p.program,
                subcommand: p.subcommand,
                kind: Kind::Command(p.command),
                timeout,
                max_bytes,
            });
        }
        if file.run.builtin_context {
            let k = kubectl_builtin();
            if !out.iter().any(|o| o.name == k.name) {
                out.push(k);
            }
        }
        Ok(Providers(out))
    }

    /// The providers for `argv`.
    fn matching(&self, argv: &[String]) -> Vec<Provider> {
        let Some(program) = argv.first().map(|p| program_name(p)) else {
            return Vec::new();
        };
        self.0
            .iter()
            .filter(|p| p.program == program)
            .filter(|p| match (&p.subcommand, &p.kind) {
                (None, _) => true,
                (Some(s), Kind::KubectlDiff) => kubectl_subcommand(argv) == Some(s.as_str()),
                (Some(s), Kind::Command(_)) => {
                    argv.iter().skip(1).find(|a| !a.starts_with('-')) == Some(s)
                }
            })
            .cloned()
            .collect()
    }
}

/// The program's file name (`/usr/bin/kubectl` → kubectl).
fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Runs the providers that match `argv` (in `cwd`, at the same time) and attaches what each
/// gave as `params.context.NAME`. Nothing when none matches (or for a shell line, `argv` None).
pub async fn attach(params: &mut Value, argv: Option<&[String]>, cwd: &str, providers: &Providers) {
    let Some(argv) = argv else { return };
    let chosen = providers.matching(argv);
    if chosen.is_empty() {
        return;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in chosen.iter().cloned().enumerate() {
        let argv = argv.to_vec();
        let cwd = cwd.to_string();
        tasks.spawn(async move { (i, provide(&p, &argv, &cwd).await) });
    }
    let mut got: Vec<Option<Value>> = vec![None; chosen.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, v)) = done {
            if let Some(slot) = got.get_mut(i) {
                *slot = Some(v);
            }
        }
    }
    let mut context = Map::new();
    let mut total = 0usize;
    for (p, v) in chosen.iter().zip(got) {
        let mut v = v.unwrap_or_else(|| unavailable("the provider stopped unexpectedly"));
        let size = v.to_string().len();
        if total + size > MAX_TOTAL_BYTES {
            v = unavailable(&format!(
                "the providers' outputs are over {MAX_TOTAL_BYTES} bytes in all"
            ));
        } else {
            total += size;
        }
        context.insert(p.name.clone(), v);
    }
    params[CONTEXT_KEY] = Value::Object(context);
}

fn unavailable(why: &str) -> Value {
    json!({ "unavailable": why })
}

/// One provider's value: its output, or `{"unavailable": why}`.
async fn provide(p: &Provider, argv: &[String], cwd: &str) -> Value {
    match &p.kind {
        Kind::Command(command) => {
            let mut full: Vec<String> = command.clone();
            full.extend(argv.iter().cloned());
            let argv_json = Value::from(argv.to_vec()).to_string();
            match capture(&full, cwd, &[("COUNTERSIGN_RUN_ARGV", &argv_json)], p).await {
                Err(why) => unavailable(&why),
                Ok(c) if c.code != Some(0) => unavailable(&exited(&p.name, &c)),
                Ok(c) => match serde_json::from_slice::<Value>(&c.stdout) {
                    Err(e) => unavailable(&format!("{}'s output is not JSON: {e}", p.name)),
                    Ok(v) => match countersign_core::check_json(
                        &v,
                        countersign_core::MAX_PARAMS_DEPTH.saturating_sub(2),
                    ) {
                        Ok(()) => v,
                        Err(e) => unavailable(&format!("{}'s output: {e}", p.name)),
                    },
                },
            }
        }
        Kind::KubectlDiff => kubectl_diff(p, argv, cwd).await,
    }
}

fn exited(name: &str, c: &Captured) -> String {
    let how = match c.code {
        Some(n) => format!("exited {n}"),
        None => "was killed by a signal".into(),
    };
    let err = c.stderr.trim();
    if err.is_empty() {
        format!("{name} {how}")
    } else {
        format!("{name} {how}: {err}")
    }
}

/// What a provider's process did.
struct Captured {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `argv` in `cwd` with no stdin, within `p`'s time and size limits. The process is
/// killed when either is passed.
async fn capture(
    argv: &[String],
    cwd: &str,
    env: &[(&str, &str)],
    p: &Provider,
) -> Result<Captured, String> {
    let program = argv.first().map_or("", String::as_str);
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(argv.iter().skip(1))
        .current_dir(cwd)
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(format!("cannot read {program}'s output"));
    };
    let max = p.max_bytes;
    let work = async move {
        let stderr = tokio::spawn(keep_start(err, STDERR_KEPT));
        let mut stdout = Vec::new();
        let read = out
            .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut stdout)
            .await;
        if let Err(e) = read {
            stderr.abort();
            return Err(format!("cannot read {program}'s output: {e}"));
        }
        if stdout.len() > max {
            stderr.abort();
            return Err(format!("{program}'s output is over {max} bytes"));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("lost {program}: {e}"))?;
        let stderr = stderr.await.unwrap_or_default();
        Ok(Captured {
            code: status.code(),
            stdout,
            stderr,
        })
    };
    tokio::time::timeout(p.timeout, work).await.map_err(|_| {
        format!(
            "{program} did not finish within {}",
            humantime::format_duration(p.timeout)
        )
    })?
}

/// Reads `from` to its end, keeping the first `keep` bytes (as text).
async fn keep_start(mut from: impl tokio::io::AsyncRead + Unpin, keep: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// kubectl's global flags that take a value in the next argument (`-n prod`), so the
/// subcommand is found after them.
const KUBECTL_VALUE_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "--context",
    "--kubeconfig",
    "--cluster",
    "--user",
    "-s",
    "--server",
    "--token",
    "--as",
    "--as-group",
    "--as-uid",
    "--request-timeout",
    "--cache-dir",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
    "--tls-server-name",
    "-v",
    "--v",
    "--profile",
    "--profile-output",
];

/// `kubectl apply`'s flags that `kubectl diff` does not take and that do not change what is
/// applied (how to wait, print, record or validate), with whether each takes the next
/// argument as its value. They are left out of the diff.
const APPLY_ONLY_FLAGS: &[(&str, bool)] = &[
    ("--dry-run", false),
    ("--wait", false),
    ("--timeout", true),
    ("-o", true),
    ("--output", true),
    ("--template", true),
    ("--allow-missing-template-keys", false),
    ("--record", false),
    ("--validate", false),
    ("--save-config", false),
    ("--overwrite", false),
];

/// The position of kubectl's subcommand in `argv` (global flags and their values skipped).
fn kubectl_subcommand_at(argv: &[String]) -> Option<usize> {
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        if !a.starts_with('-') {
            return Some(i);
        }
        i += if KUBECTL_VALUE_FLAGS.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
    None
}

fn kubectl_subcommand(argv: &[String]) -> Option<&str> {
    argv.get(kubectl_subcommand_at(argv)?).map(String::as_str)
}

/// `kubectl diff --server-side` with `kubectl apply ARGS`'s arguments, less the flags only
/// `apply` takes. `None`: not a `kubectl apply`.
fn kubectl_diff_argv(argv: &[String]) -> Option<Vec<String>> {
    let at = kubectl_subcommand_at(argv)?;
    if argv.get(at).map(String::as_str) != Some("apply") {
        return None;
    }
    let mut out: Vec<String> = argv.get(..at)?.to_vec();
    out.push("diff".into());
    let mut server_side = false;
    let mut rest = argv.iter().skip(at + 1);
    while let Some(a) = rest.next() {
        let flag = a.split('=').next().unwrap_or(a);
        if let Some((_, takes_value)) = APPLY_ONLY_FLAGS.iter().find(|(f, _)| *f == flag) {
            if *takes_value && !a.contains('=') {
                rest.next();
            }
            continue;
        }
        server_side |= flag == "--server-side";
        out.push(a.clone());
    }
    if !server_side {
        out.insert(at + 1, "--server-side".into());
    }
    Some(out)
}

/// The built-in kubectl provider.
async fn kubectl_diff(p: &Provider, argv: &[String], cwd: &str) -> Value {
    let Some(diff) = kubectl_diff_argv(argv) else {
        return unavailable("not a kubectl apply");
    };
    let shown = Value::from(diff.clone());
    match capture(&diff, cwd, &[], p).await {
        Err(why) => json!({"command": shown, "unavailable": why}),
        Ok(c) => match c.code {
            Some(0) => json!({"command": shown, "changes": false, "diff": ""}),
            Some(1) => json!({
                "command": shown,
                "changes": true,
                "diff": String::from_utf8_lossy(&c.stdout),
            }),
            _ => json!({"command": shown, "unavailable": exited("kubectl diff", &c)}),
        },
    }
}

/// The longest `terraform show -json` output read (a plan with its prior state and
/// configuration can be large; only its summary is sent).
const TERRAFORM_SHOW_MAX: usize = 64 * 1024 * 1024;
/// The largest plan summary sent to the reviewer (else it is `unavailable`, which the
/// analyzer treats as high risk).
const TERRAFORM_SUMMARY_MAX: usize = 512 * 1024;

/// The summary of the plan file `plan` of `terraform [globals] apply ... PLAN` (`argv`), from
/// `terraform [globals] show -json PLAN` (the same program and global options, e.g. `-chdir`),
/// in Terraform's own JSON format so that the analyzer reads it: `format_version`,
/// `terraform_version` and each of `resource_changes` with its address, mode, type, name,
/// provider, `change.actions` and `action_reason`. The values before and after (large, and
/// where secrets live) are left out. Any failure gives `{"unavailable": why}`, which the
/// analyzer judges high risk, never "no changes".
pub async fn terraform_plan_summary(argv: &[String], plan: &str, cwd: &str) -> Value {
    let Some(apply_at) = argv.iter().position(|a| a == "apply") else {
        return unavailable("not a `terraform apply`");
    };
    let mut show: Vec<String> = argv.get(..apply_at).unwrap_or_default().to_vec();
    show.extend(["show".to_string(), "-json".to_string(), plan.to_string()]);
    let limits = Provider {
        name: "terraform".into(),
        program: "terraform".into(),
        subcommand: None,
        kind: Kind::Command(Vec::new()),
        timeout: MAX_TIMEOUT,
        max_bytes: TERRAFORM_SHOW_MAX,
    };
    let captured = match capture(&show, cwd, &[], &limits).await {
        Err(why) => return unavailable(&why),
        Ok(c) if c.code != Some(0) => return unavailable(&exited("terraform show", &c)),
        Ok(c) => c,
    };
    let doc: Value = match serde_json::from_slice(&captured.stdout) {
        Ok(v) => v,
        Err(e) => return unavailable(&format!("terraform show's output is not JSON: {e}")),
    };
    let mut summary = serde_json::Map::new();
    for key in ["format_version", "terraform_version"] {
        if let Some(v) = doc.get(key).filter(|v| v.is_string()) {
            summary.insert(key.into(), v.clone());
        }
    }
    if !summary.contains_key("format_version") {
        return unavailable("terraform show's output has no `format_version`: not a plan");
    }
    if let Some(changes) = doc.get("resource_changes") {
        let Some(changes) = changes.as_array() else {
            return unavailable("terraform show's `resource_changes` is not a list");
        };
        let kept: Vec<Value> = changes
            .iter()
            .map(|rc| {
                let mut one = serde_json::Map::new();
                for key in [
                    "address",
                    "module_address",
                    "mode",
                    "type",
                    "name",
                    "index",
                    "provider_name",
                    "action_reason",
                ] {
                    if let Some(v) = rc.get(key) {
                        one.insert(key.into(), v.clone());
                    }
                }
                one.insert(
                    "change".into(),
                    json!({"actions": rc.get("change").and_then(|c| c.get("actions")).cloned().unwrap_or(Value::Null)}),
                );
                Value::Object(one)
            })
            .collect();
        summary.insert("resource_changes".into(), Value::Array(kept));
    }
    let summary = Value::Object(summary);
    let size = summary.to_string().len();
    if size > TERRAFORM_SUMMARY_MAX {
        return unavailable(&format!(
            "the plan's summary is {size} bytes, over {TERRAFORM_SUMMARY_MAX}"
        ));
    }
    if let Err(e) = countersign_core::check_json(
        &summary,
        countersign_core::MAX_PARAMS_DEPTH.saturating_sub(2),
    ) {
        return unavailable(&format!("the plan's summary: {e}"));
    }
    summary
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubectl_apply_becomes_a_server_side_diff() {
        assert_eq!(
            kubectl_diff_argv(&v(&["kubectl", "apply", "-f", "x.yaml"])).unwrap(),
            v(&["kubectl", "diff", "--server-side", "-f", "x.yaml"])
        );
        assert_eq!(
            kubectl_diff_argv(&v(&[
                "/usr/bin/kubectl",
                "-n",
                "prod",
                "--context=c1",
                "apply",
                "--server-side",
                "-f",
                "x.yaml",
                "--wait",
                "--timeout",
                "5m",
                "-o=json",
                "--dry-run=server",
                "--prune",
            ]))
            .unwrap(),
            v(&[
                "/usr/bin/kubectl",
                "-n",
                "prod",
                "--context=c1",
                "diff",
                "--server-side",
                "-f",
                "x.yaml",
                "--prune",
            ])
        );
        assert_eq!(
            kubectl_diff_argv(&v(&["kubectl", "delete", "pod", "x"])),
            None
        );
        assert_eq!(kubectl_diff_argv(&v(&["kubectl", "-n", "apply"])), None);
        assert_eq!(kubectl_diff_argv(&v(&["kubectl"])), None);
    }

    #[test]
    fn providers_match_program_and_subcommand() {
        let ps = Providers::parse(
            r#"
            [[run.context]]
            program = "migrate"
            command = ["echo", "{}"]
            [[run.context]]
            name = "tf-up"
            program = "terraform"
            subcommand = "apply"
            command = ["./tf-context"]
            timeout = "3s"
            max_bytes = 1000
            "#,
            "run.toml",
        )
        .unwrap();
        let names = |argv: &[&str]| -> Vec<String> {
            ps.matching(&v(argv)).into_iter().map(|p| p.name).collect()
        };
        assert_eq!(names(&["/opt/migrate", "up"]), ["migrate"]);
        assert_eq!(names(&["terraform", "-chdir=x", "apply", "p"]), ["tf-up"]);
        assert!(names(&["terraform", "plan"]).is_empty());
        assert_eq!(
            names(&["kubectl", "-n", "x", "apply", "-f", "y"]),
            ["kubectl"]
        );
        assert!(names(&["kubectl", "delete", "pod"]).is_empty());
        let off = Providers::parse("[run]\nbuiltin_context = false\n", "r").unwrap();
        assert!(off.matching(&v(&["kubectl", "apply"])).is_empty());
    }

    #[test]
    fn a_bad_run_config_is_refused() {
        for bad in [
            "[run]\nunknown = 1\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = []\n",
            "[[run.context]]\nprogram = \"x y\"\ncommand = [\"a\"]\n",
            "[[run.context]]\nname = \"a.b\"\nprogram = \"x\"\ncommand = [\"a\"]\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\ntimeout = \"10m\"\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\ntimeout = \"0s\"\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\nmax_bytes = 0\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\nmax_bytes = 9999999\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\n[[run.context]]\nprogram = \"x\"\ncommand = [\"b\"]\n",
            "[[run.context]]\nprogram = \"x\"\ncommand = [\"a\"]\nextra = true\n",
        ] {
            assert!(Providers::parse(bad, "r").is_err(), "{bad}");
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn provider(command: Vec<String>, timeout: Duration, max_bytes: usize) -> Providers {
        Providers(vec![Provider {
            name: "p".into(),
            program: "prog".into(),
            subcommand: None,
            kind: Kind::Command(command),
            timeout,
            max_bytes,
        }])
    }

    async fn context_of(ps: &Providers, cwd: &Path) -> Value {
        let mut params = json!({"argv": ["prog", "go"]});
        let argv = v(&["prog", "go"]);
        attach(&mut params, Some(&argv), cwd.to_str().unwrap(), ps).await;
        params[CONTEXT_KEY]["p"].clone()
    }

    #[tokio::test]
    async fn a_provider_s_json_is_attached_and_its_failures_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = Duration::from_secs(5);
        let ok = script(
            d,
            "ok",
            r#"printf '{"argv":%s,"args":"%s"}' "$COUNTERSIGN_RUN_ARGV" "$*""#,
        );
        assert_eq!(
            context_of(&provider(vec![ok], t, 1000), d).await,
            json!({"argv": ["prog", "go"], "args": "prog go"})
        );
        let fails = script(d, "fails", "echo boom >&2; exit 3");
        assert_eq!(
            context_of(&provider(vec![fails], t, 1000), d).await,
            json!({"unavailable": "p exited 3: boom"})
        );
        let text = script(d, "text", "echo not json");
        let got = context_of(&provider(vec![text], t, 1000), d).await;
        assert!(
            got["unavailable"].as_str().unwrap().contains("not JSON"),
            "{got}"
        );
        let big = script(d, "big", "head -c 5000 /dev/zero | tr '\\0' 1");
        let got = context_of(&provider(vec![big], t, 1000), d).await;
        assert!(
            got["unavailable"]
                .as_str()
                .unwrap()
                .contains("over 1000 bytes"),
            "{got}"
        );
        let slow = script(d, "slow", "sleep 30; echo 1");
        let started = std::time::Instant::now();
        let got = context_of(&provider(vec![slow], Duration::from_millis(300), 1000), d).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            got["unavailable"]
                .as_str()
                .unwrap()
                .contains("did not finish"),
            "{got}"
        );
        let got = context_of(&provider(vec!["/nonexistent/x".into()], t, 1000), d).await;
        assert!(
            got["unavailable"]
                .as_str()
                .unwrap()
                .contains("cannot start"),
            "{got}"
        );
        let float = script(d, "float", "echo 1e400");
        let got = context_of(&provider(vec![float], t, 1000), d).await;
        assert!(got.get("unavailable").is_some(), "{got}");
    }

    #[tokio::test]
    async fn no_provider_no_context() {
        let mut params = json!({"argv": ["true"]});
        let argv = v(&["true"]);
        attach(
            &mut params,
            Some(&argv),
            "/",
            &Providers(vec![kubectl_builtin()]),
        )
        .await;
        attach(&mut params, None, "/", &Providers(vec![kubectl_builtin()])).await;
        assert_eq!(params, json!({"argv": ["true"]}));
    }

    #[tokio::test]
    async fn a_plan_summary_that_cannot_be_had_is_unavailable_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_str().unwrap();
        let argv = |p: &str| vec![p.to_string(), "apply".into(), "p.tfplan".into()];
        let missing =
            terraform_plan_summary(&argv("/nonexistent/terraform"), "p.tfplan", cwd).await;
        assert!(missing["unavailable"].is_string(), "{missing}");
        // Not JSON, and JSON that is not a plan.
        for (name, out) in [("a", "not json"), ("b", "{\"resource_changes\": []}")] {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho '{out}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let v = terraform_plan_summary(&argv(path.to_str().unwrap()), "p.tfplan", cwd).await;
            assert!(v["unavailable"].is_string(), "{v}");
        }
    }
}
