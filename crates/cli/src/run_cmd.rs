//! `countersign run [...] -- CMD ARGS...`: an approval in front of any command. A thin driver of
//! the enforcement crate (`countersign_enforce`): it submits the command as an action, holds it
//! with the crate's hold loop (a status line as the `Progress` sink, Ctrl-C as the cancellation),
//! redeems the grant, runs exactly the approved argv, and reports the result with `Gate::report`.
//! It holds no approval rule.
//!
//! Exit codes: the child's (128 + signal when a signal killed it) when it ran; 1 when the action
//! was denied, rejected, expired, cancelled or not decided within `--wait`; 130 when Ctrl-C
//! withdrew the review; 125 when countersign itself failed (gateway unreachable, a redeem that
//! failed, approved parameters that are not a command); 126/127 when the approved command could
//! not be started (not executable / not found), like `env` and `timeout`.

use clap::Args;
use countersign_core::Outcome;
use countersign_enforce::{hold, Ending, Gate, HoldPolicy, Progress, Report, Submission, Tracked};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::gate_args::GateArgs;
use std::future::Future;
use std::sync::Arc;

/// countersign itself failed: nothing ran.
const FAILED: u8 = 125;
/// Denied, rejected, expired, cancelled by review, or not decided in time: nothing ran.
const NOT_APPROVED: u8 = 1;
/// Ctrl-C while under review: the review was withdrawn, nothing ran.
const INTERRUPTED: u8 = 130;

/// `countersign run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub gate: GateArgs,
    /// The action name (default: from the program, e.g. `terraform apply` → terraform.apply,
    /// `kubectl delete` → kubectl.delete, otherwise PROGRAM.SUBCOMMAND or PROGRAM.run;
    /// with --shell: shell.run).
    #[arg(long)]
    action: Option<String>,
    /// The resource (default: exec://HOSTNAME/PROGRAM; with --shell: exec://HOSTNAME/sh).
    #[arg(long)]
    resource: Option<String>,
    /// The environment, e.g. production.
    #[arg(long = "env", value_name = "ENV")]
    environment: Option<String>,
    /// Why the command must run (shown to reviewers).
    #[arg(long)]
    justification: Option<String>,
    /// The human this agent acts for.
    #[arg(long)]
    on_behalf_of: Option<String>,
    /// Give up waiting for review after this long (e.g. 90s, 10m; a bare number is seconds):
    /// the review is withdrawn and nothing runs. Default: wait until the review closes.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    wait: Option<Duration>,
    /// Run the command line through `sh -c`: the whole line (the arguments after `--`, joined
    /// by spaces) is what is reviewed, as params.command.
    #[arg(long)]
    shell: bool,
    #[command(flatten)]
    context: crate::run_context::ContextArgs,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// What the reviewed command is: an argv run directly, or a line run by `sh -c`.
#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Argv(Vec<String>),
    Shell(String),
}

impl Cmd {
    fn program(&self) -> &str {
        match self {
            Cmd::Argv(argv) => argv.first().map_or("", String::as_str),
            Cmd::Shell(_) => "sh",
        }
    }

    /// How the command reads, for people (arguments quoted where a shell would need it).
    fn display(&self) -> String {
        match self {
            Cmd::Argv(argv) => argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
            Cmd::Shell(line) => format!("sh -c {}", quote(line)),
        }
    }
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// A name segment made of letters, digits, `_`, `-` (and `.` for a program), else `None`.
fn segment(s: &str, dots: bool) -> Option<&str> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'));
    ok.then_some(s)
}

/// The program's file name (`/usr/bin/terraform` → terraform).
fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The default action name: PROGRAM.SUBCOMMAND, where SUBCOMMAND is the first argument that is
/// not a flag, if it reads like a subcommand; else PROGRAM.run; `shell.run` for a shell line.
fn default_action(cmd: &Cmd) -> String {
    let Cmd::Argv(argv) = cmd else {
        return "shell.run".into();
    };
    let Some(program) = argv.first().and_then(|p| segment(program_name(p), true)) else {
        return "exec.run".into();
    };
    let sub = argv
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| segment(a, false))
        .unwrap_or("run");
    format!("{program}.{sub}")
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The default resource: exec://HOSTNAME/PROGRAM.
fn default_resource(cmd: &Cmd) -> String {
    format!("exec://{}/{}", hostname(), program_name(cmd.program()))
}

/// The names (never the values) of the environment variables the command inherits, sorted.
fn env_names() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    names.sort();
    names
}

/// The action's parameters: the exact argv (or the shell line as `command`), the working
/// directory and the inherited environment variables' names.
fn params(cmd: &Cmd, cwd: &str, env: &[String]) -> Value {
    let mut p = json!({"cwd": cwd, "env": env});
    match cmd {
        Cmd::Argv(argv) => p["argv"] = json!(argv),
        Cmd::Shell(line) => p["command"] = json!(line),
    }
    p
}

/// The plan file of `terraform apply [options] PLAN`, if the command is one and names a file.
fn terraform_plan<'a>(cmd: &'a Cmd, cwd: &str) -> Option<&'a str> {
    let Cmd::Argv(argv) = cmd else {
        return None;
    };
    if program_name(argv.first()?) != "terraform" {
        return None;
    }
    let mut positional = argv.iter().skip(1).filter(|a| !a.starts_with('-'));
    if positional.next()? != "apply" {
        return None;
    }
    let plan = positional.next()?;
    std::path::Path::new(cwd)
        .join(plan)
        .is_file()
        .then_some(plan.as_str())
}

/// The SHA-256 of the file `path` (relative to `cwd`).
fn file_sha256(cwd: &str, path: &str) -> Result<String, String> {
    let bytes = std::fs::read(std::path::Path::new(cwd).join(path))
        .map_err(|e| format!("cannot read the plan file {path}: {e}"))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Context for the reviewer: for `terraform apply PLAN`, the plan file and its SHA-256
/// (`params.plan = {"file", "sha256"}`; `drive` adds the plan's summary from `terraform show
/// -json`, `run_context::terraform_plan_summary`).
fn attach_context(params: &mut Value, cmd: &Cmd, cwd: &str) -> Result<(), String> {
    if let Some(plan) = terraform_plan(cmd, cwd) {
        params["plan"] = json!({"file": plan, "sha256": file_sha256(cwd, plan)?});
    }
    Ok(())
}

/// Refuses to run a `terraform apply PLAN` whose plan file is not the one approved: the approved
/// params must carry `plan.sha256`, and the file must still hash to it.
fn check_context(approved: &Value, cmd: &Cmd, cwd: &str) -> Result<(), String> {
    let Some(plan) = terraform_plan(cmd, cwd) else {
        return Ok(());
    };
    let Some(want) = approved["plan"]["sha256"].as_str() else {
        return Err(format!(
            "the approval carries no SHA-256 of the plan file {plan}"
        ));
    };
    if approved["plan"]["file"].as_str() != Some(plan) {
        return Err(format!("the approval is for another plan file than {plan}"));
    }
    if file_sha256(cwd, plan)? != want {
        return Err(format!("the plan file {plan} changed after approval"));
    }
    Ok(())
}

/// Why approved parameters cannot be run.
#[derive(Debug, thiserror::Error)]
enum Unrunnable {
    #[error("the approved parameters are not an object")]
    NotObject,
    #[error("the approved `argv` is not a non-empty array of strings with a non-empty program")]
    BadArgv,
    #[error("the approved `command` is not a non-empty string")]
    BadCommand,
    #[error(
        "the approved parameters name a shell line but this run has no --shell (or the reverse)"
    )]
    WrongKind,
    #[error("the approved `cwd` is not a string")]
    BadCwd,
}

/// The command and working directory the approved parameters say to run. Fails closed on
/// anything else (a reviewer cannot turn a direct run into a shell line, nor the reverse).
fn approved_command(params: &Value, shell: bool) -> Result<(Cmd, String), Unrunnable> {
    let p = params.as_object().ok_or(Unrunnable::NotObject)?;
    let cwd = match p.get("cwd") {
        Some(Value::String(c)) => c.clone(),
        _ => return Err(Unrunnable::BadCwd),
    };
    let cmd = match (shell, p.get("argv"), p.get("command")) {
        (false, Some(argv), None) => {
            let argv: Vec<String> = argv
                .as_array()
                .ok_or(Unrunnable::BadArgv)?
                .iter()
                .map(|a| a.as_str().map(str::to_string).ok_or(Unrunnable::BadArgv))
                .collect::<Result<_, _>>()?;
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(Unrunnable::BadArgv);
            }
            Cmd::Argv(argv)
        }
        (true, None, Some(line)) => match line.as_str() {
            Some(l) if !l.is_empty() => Cmd::Shell(l.to_string()),
            _ => return Err(Unrunnable::BadCommand),
        },
        _ => return Err(Unrunnable::WrongKind),
    };
    Ok((cmd, cwd))
}

/// `seconds` as a short duration: `45s`, `14m`, `2h05m`.
fn minutes(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The live status: a line updated in place on a terminal, plain lines (one per change) when
/// stderr is not a terminal.
struct StatusLine {
    tty: bool,
    /// The wall clock, for the review's time left.
    now: countersign_enforce::Clock,
    started: Instant,
    wait: Option<Duration>,
    last: Mutex<String>,
}

impl StatusLine {
    fn text(&self, t: &Tracked) -> String {
        let mut s = format!("countersign: action {} {}", t.id, t.status.as_str());
        if let Some(r) = &t.reason {
            s.push_str(&format!(" ({r})"));
        }
        if !t.approvers.is_empty() {
            s.push_str(&format!("; reviewers: {}", t.approvers.join(", ")));
        }
        if let Some(r) = &t.review {
            s.push_str(&format!("; approvals {}/{}", r.approvals, r.needed));
        }
        if let Some(c) = t.comments.last() {
            s.push_str(&format!("; {} vote(s), last: {c}", t.comments.len()));
        }
        if let Some(r) = &t.review {
            let left = r.expires_at.millis().saturating_sub((self.now)().millis()) / 1000;
            s.push_str(&format!("; review closes in {}", minutes(left)));
        }
        s
    }

    fn clock(&self) -> String {
        let waited = self.started.elapsed().as_secs();
        match self.wait {
            Some(w) => format!(
                "; waited {waited}s, {}s left",
                w.saturating_sub(self.started.elapsed()).as_secs()
            ),
            None => format!("; waited {waited}s"),
        }
    }

    /// Ends the line in place, if one is shown.
    fn finish(&self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty && !last.is_empty() {
            eprintln!();
            last.clear();
        }
    }
}

#[async_trait::async_trait]
impl Progress for StatusLine {
    async fn waiting(&self, tracked: &Tracked, _n: u64) {
        let text = self.text(tracked);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}{}", self.clock());
            let _ = err.flush();
            *last = text;
        } else if *last != text {
            let _ = writeln!(err, "{text}");
            *last = text;
        }
    }
}

/// How long output is still read after the command exits: a process it left behind (a daemon,
/// `cmd &`) may hold the pipes open, and must not keep `run` from reporting.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Copies `from` to `to` while hashing it, until end of file or `stop`; keeps draining (and
/// hashing) if `to` goes away.
async fn tee(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut stop: watch::Receiver<bool>,
) -> (String, u64) {
    let mut hash = Sha256::new();
    // Read into spare capacity (`read_buf`), not a zeroed buffer: pages are touched only as
    // output arrives, so a command that prints nothing costs no page faults here
    // (BENCHMARKS.md, "The front without PIE").
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut len = 0u64;
    let mut open = true;
    loop {
        buf.clear();
        let read = tokio::select! {
            r = from.read_buf(&mut buf) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hash.update(chunk);
        len += n as u64;
        if open {
            open = to.write_all(chunk).await.is_ok() && to.flush().await.is_ok();
        }
    }
    (hex::encode(hash.finalize()), len)
}

/// How the child ended.
struct Ran {
    code: u8,
    outcome: Outcome,
    detail: String,
    stdout_sha256: String,
}

/// Runs `cmd` in `cwd`: stdin inherited, stdout/stderr streamed through and hashed, SIGTERM and
/// SIGHUP forwarded (SIGINT and SIGQUIT too when stdin is not a terminal: on a terminal the
/// terminal already delivers them to the child, which shares our process group).
async fn execute(
    cmd: &Cmd,
    cwd: &str,
    injected: &crate::credentials::Injected,
) -> Result<Ran, (u8, String)> {
    let mut command = match cmd {
        Cmd::Argv(argv) => {
            let mut c = tokio::process::Command::new(argv.first().map_or("", String::as_str));
            c.args(argv.iter().skip(1));
            c
        }
        Cmd::Shell(line) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
    };
    injected.apply(&mut command);
    command
        .current_dir(cwd)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut signals = Signals::new().map_err(|e| (FAILED, e))?;
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => 127,
            _ => 126,
        };
        (code, format!("cannot start {}: {e}", cmd.program()))
    })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(nix::unistd::Pid::from_raw);
    let (stop, stopped) = watch::channel(false);
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(tee(o, tokio::io::stdout(), stopped.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(tee(e, tokio::io::stderr(), stopped.clone())));
    let forward_interrupts = !std::io::stdin().is_terminal();
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            sig = signals.next() => {
                let interrupt = matches!(sig, nix::sys::signal::Signal::SIGINT | nix::sys::signal::Signal::SIGQUIT);
                if let (Some(pid), true) = (pid, forward_interrupts || !interrupt) {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    };
    let status = status.map_err(|e| (FAILED, format!("lost the command: {e}")))?;
    let took = started.elapsed();
    let grace = tokio::spawn(async move {
        tokio::time::sleep(OUTPUT_GRACE).await;
        let _ = stop.send(true);
    });
    let (stdout_sha256, stdout_len) = match out {
        Some(t) => t.await.unwrap_or_default(),
        None => Default::default(),
    };
    let (stderr_sha256, stderr_len) = match err {
        Some(t) => t.await.unwrap_or_default(),
        None => Default::default(),
    };
    grace.abort();
    use std::os::unix::process::ExitStatusExt;
    let (code, how) = match (status.code(), status.signal()) {
        (Some(c), _) => (u8::try_from(c).unwrap_or(1), format!("\"exit_code\":{c}")),
        (None, Some(s)) => (
            u8::try_from(128 + s).unwrap_or(FAILED),
            format!("\"signal\":{s}"),
        ),
        (None, None) => (FAILED, "\"exit_code\":null".to_string()),
    };
    let detail = format!(
        "{{{how},\"duration_ms\":{},\"stdout_sha256\":\"{stdout_sha256}\",\"stdout_bytes\":{stdout_len},\"stderr_sha256\":\"{stderr_sha256}\",\"stderr_bytes\":{stderr_len}}}",
        took.as_millis()
    );
    Ok(Ran {
        code,
        outcome: if status.success() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        detail,
        stdout_sha256,
    })
}

/// The signals `run` catches: while under review they cancel it; while the child runs they are
/// forwarded.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        let on = |k: SignalKind| signal(k).map_err(|e| format!("cannot handle signals: {e}"));
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
            quit: on(SignalKind::quit())?,
        })
    }

    async fn next(&mut self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
            _ = self.quit.recv() => Signal::SIGQUIT,
        }
    }
}

/// Runs `countersign run`; exits the process with its code. `make_gate` turns `--gateway` /
/// `--config` into the gate: the front binary's knows only running gateways, the full
/// binary's can also start one in this process.
pub async fn run<F, Fut>(args: RunArgs, make_gate: F) -> u8
where
    F: FnOnce(GateArgs) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Gate>, String>>,
{
    crate::logs::init("warn");
    let code = drive(args, make_gate).await;
    // The embedded gateway's background work would otherwise hold the runtime open.
    std::process::exit(i32::from(code))
}

async fn drive<F, Fut>(args: RunArgs, make_gate: F) -> u8
where
    F: FnOnce(GateArgs) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Gate>, String>>,
{
    let fail = |m: String| {
        eprintln!("countersign run: {m}; the command was not run");
        FAILED
    };
    let cmd = if args.shell {
        Cmd::Shell(args.command.join(" "))
    } else {
        Cmd::Argv(args.command.clone())
    };
    if cmd.program().is_empty() {
        return fail("the command is empty".into());
    }
    let cwd = match std::env::current_dir() {
        Ok(d) => match d.into_os_string().into_string() {
            Ok(s) => s,
            Err(_) => return fail("the working directory is not UTF-8".into()),
        },
        Err(e) => return fail(format!("cannot read the working directory: {e}")),
    };
    let mut asked = params(&cmd, &cwd, &env_names());
    if let Err(e) = attach_context(&mut asked, &cmd, &cwd) {
        return fail(e);
    }
    // The plan's summary beside its file and hash, where the analyzer reads a plan.
    if let (Cmd::Argv(argv), Some(plan)) = (&cmd, terraform_plan(&cmd, &cwd)) {
        let summary = crate::run_context::terraform_plan_summary(argv, plan, &cwd).await;
        if let (Some(into), Value::Object(summary)) = (asked["plan"].as_object_mut(), summary) {
            into.extend(summary);
        }
    }
    let providers = match crate::run_context::Providers::load(&args.context) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let argv = match &cmd {
        Cmd::Argv(a) => Some(a.as_slice()),
        Cmd::Shell(_) => None,
    };
    crate::run_context::attach(&mut asked, argv, &cwd, &providers).await;
    // Ctrl-C, SIGTERM or SIGHUP from here on withdraw the review instead of killing us.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (cancel, cancelled) = watch::channel(false);
    let interrupts = tokio::spawn(async move {
        let _ = signals.next().await;
        let _ = cancel.send(true);
        // Keep the handlers installed (and the sender alive) until the review is withdrawn.
        std::future::pending::<()>().await;
    });
    let gate = match make_gate(args.gate.clone()).await {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let sub = Submission {
        action: args.action.clone().unwrap_or_else(|| default_action(&cmd)),
        resource: args
            .resource
            .clone()
            .unwrap_or_else(|| default_resource(&cmd)),
        environment: args.environment.clone(),
        params: Some(asked.clone()),
        justification: args.justification.clone(),
        on_behalf_of: args.on_behalf_of.clone(),
        idempotency_key: None,
        reuse_open: false,
    };
    let first = match gate.submit(sub).await {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot submit the action: {e}")),
    };
    let status = StatusLine {
        tty: std::io::stderr().is_terminal(),
        now: countersign_enforce::system_clock(),
        started: Instant::now(),
        wait: args.wait,
        last: Mutex::new(String::new()),
    };
    let policy = HoldPolicy {
        pending_after: args.wait,
        progress_every: if status.tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        },
    };
    let interactive = status.tty && std::io::stdin().is_terminal();
    let inline = crate::run_questions::Inline::new(gate.as_ref(), &status, interactive);
    let ending = hold::hold(gate.as_ref(), first, policy, cancelled.clone(), &inline).await;
    inline.close().await;
    status.finish();
    let interrupted = *cancelled.borrow();
    let (action_id, grant) = match ending {
        Ending::Run { .. } if interrupted => {
            eprintln!("countersign run: interrupted; the command was not run");
            return INTERRUPTED;
        }
        Ending::Run { action_id, grant } => (action_id, grant),
        Ending::Cancelled(t) => {
            eprintln!(
                "countersign run: interrupted; review {} withdrawn; the command was not run",
                t.id
            );
            return INTERRUPTED;
        }
        Ending::Parked(t) => {
            hold::withdraw(gate.as_ref(), &t.id).await;
            eprintln!(
                "countersign run: action {} was not decided within --wait; review withdrawn; the command was not run",
                t.id
            );
            return NOT_APPROVED;
        }
        Ending::Denied(t) => {
            let why = t.reason.as_deref().unwrap_or("no policy allows it");
            eprintln!(
                "countersign run: denied (action {}): {why}; the command was not run",
                t.id
            );
            return NOT_APPROVED;
        }
        Ending::Closed(t) => {
            eprintln!(
                "countersign run: {} by review (action {}); the command was not run",
                t.status.as_str(),
                t.id
            );
            for c in &t.comments {
                eprintln!("  {c}");
            }
            return NOT_APPROVED;
        }
    };
    interrupts.abort();
    let mut credentials = Vec::new();
    let approved = match grant {
        None => asked.clone(),
        Some(token) => match gate.redeem(&token).await {
            Ok(a) if a.action_id == action_id => {
                credentials = a.credentials;
                a.params
            }
            Ok(a) => {
                return fail(format!(
                    "the grant is for action {}, not {action_id}",
                    a.action_id
                ))
            }
            Err(e) => return fail(format!("the approval could not be used ({e})")),
        },
    };
    let (to_run, run_in) = match approved_command(&approved, args.shell) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (action {action_id})")),
    };
    if to_run != cmd || run_in != cwd {
        eprintln!(
            "countersign run: a reviewer modified the command (action {action_id}); running: {} (in {run_in})",
            to_run.display()
        );
    }
    if let Err(e) = check_context(&approved, &to_run, &run_in) {
        return fail(format!("{e} (action {action_id})"));
    }
    let injected = match crate::credentials::fetch(gate.as_ref(), &action_id, &credentials).await {
        Ok(i) => i,
        Err(e) => return fail(format!("{e} (action {action_id})")),
    };
    let ran = execute(&to_run, &run_in, &injected).await;
    if let Err(e) = injected.remove() {
        eprintln!("countersign run: could not remove the credential files: {e}");
    }
    let ran = match ran {
        Ok(r) => r,
        Err((code, m)) => {
            let failed = Report {
                detail: Some(m.clone()),
                ..Report::new(Outcome::Failed)
            };
            report(gate.as_ref(), &action_id, failed).await;
            eprintln!("countersign run: {m}");
            return code;
        }
    };
    let done = Report {
        outcome: ran.outcome,
        exit_code: Some(i32::from(ran.code)),
        output_sha256: Some(ran.stdout_sha256),
        detail: Some(ran.detail),
    };
    report(gate.as_ref(), &action_id, done).await;
    ran.code
}

async fn report(gate: &dyn Gate, id: &str, done: Report) {
    if let Err(e) = gate.report(id, done).await {
        eprintln!("countersign run: could not report the result to action {id}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn time_left_reads_short() {
        assert_eq!(minutes(-5), "0s");
        assert_eq!(minutes(45), "45s");
        assert_eq!(minutes(14 * 60 + 59), "14m");
        assert_eq!(minutes(2 * 3600 + 5 * 60), "2h05m");
    }

    fn argv(a: &[&str]) -> Cmd {
        Cmd::Argv(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn default_action_names_come_from_the_program() {
        assert_eq!(
            default_action(&argv(&["terraform", "apply", "plan.tfplan"])),
            "terraform.apply"
        );
        assert_eq!(
            default_action(&argv(&["/usr/bin/kubectl", "delete", "pod", "x"])),
            "kubectl.delete"
        );
        assert_eq!(
            default_action(&argv(&["terraform", "-chdir=infra", "apply"])),
            "terraform.apply"
        );
        assert_eq!(default_action(&argv(&["rm", "-rf", "/tmp/x"])), "rm.run");
        assert_eq!(default_action(&argv(&["true"])), "true.run");
        assert_eq!(default_action(&argv(&["my prog", "x"])), "exec.run");
        assert_eq!(default_action(&Cmd::Shell("ls | wc".into())), "shell.run");
    }

    #[test]
    fn approved_params_must_be_a_command() {
        let ok = json!({"argv": ["echo", "hi"], "cwd": "/tmp", "env": []});
        assert_eq!(
            approved_command(&ok, false).unwrap(),
            (argv(&["echo", "hi"]), "/tmp".to_string())
        );
        for bad in [
            json!([]),
            json!({"argv": "echo hi", "cwd": "/"}),
            json!({"argv": ["echo", 1], "cwd": "/"}),
            json!({"argv": [], "cwd": "/"}),
            json!({"argv": [""], "cwd": "/"}),
            json!({"argv": ["echo"]}),
            json!({"command": "echo hi", "cwd": "/"}),
            json!({"argv": ["echo"], "command": "x", "cwd": "/"}),
        ] {
            assert!(approved_command(&bad, false).is_err(), "{bad}");
        }
        assert!(approved_command(&json!({"argv": ["echo"], "cwd": "/"}), true).is_err());
        assert_eq!(
            approved_command(&json!({"command": "ls | wc", "cwd": "/"}), true)
                .unwrap()
                .0,
            Cmd::Shell("ls | wc".into())
        );
    }

    #[test]
    fn a_terraform_plan_must_be_the_approved_one() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("p.tfplan"), b"v1").unwrap();
        let cmd = argv(&[
            "/opt/terraform",
            "-chdir=.",
            "apply",
            "-lock=false",
            "p.tfplan",
        ]);
        assert_eq!(terraform_plan(&cmd, cwd), Some("p.tfplan"));
        assert_eq!(
            terraform_plan(&argv(&["terraform", "apply", "nope"]), cwd),
            None
        );
        assert_eq!(
            terraform_plan(&argv(&["terraform", "plan", "p.tfplan"]), cwd),
            None
        );
        let mut asked = json!({});
        attach_context(&mut asked, &cmd, cwd).unwrap();
        assert!(check_context(&asked, &cmd, cwd).is_ok());
        assert!(
            check_context(&json!({}), &cmd, cwd).is_err(),
            "no plan hash approved"
        );
        let mut other = asked.clone();
        other["plan"]["file"] = json!("q.tfplan");
        assert!(check_context(&other, &cmd, cwd).is_err(), "another file");
        std::fs::write(dir.path().join("p.tfplan"), b"v2").unwrap();
        assert!(check_context(&asked, &cmd, cwd).is_err(), "changed");
    }

    #[test]
    fn commands_read_as_a_shell_would_take_them() {
        assert_eq!(
            argv(&["echo", "a b", "it's"]).display(),
            r#"echo 'a b' 'it'\''s'"#
        );
    }
}
