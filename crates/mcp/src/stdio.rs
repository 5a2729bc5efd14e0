//! The stdio transport: spawn the real MCP server, relay newline-delimited JSON-RPC between our
//! stdin/stdout (the agent) and the server's, with the server's stderr passed straight through.
//!
//! Shutdown follows the MCP stdio rules: when the client closes our stdin, held reviews are
//! cancelled, the server's stdin is closed, and the server is killed if it has not exited
//! within a grace period. When the server exits first, every unanswered request gets an error.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::session::{Options, Session};
use countersign_enforce::Gate;

/// Default largest message accepted from the client.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// No server command was given.
    #[error("give the MCP server's command after `--`")]
    NoCommand,
    /// The server could not be started.
    #[error("cannot start the MCP server `{0}`: {1}")]
    Spawn(String, std::io::Error),
}

/// How one read went.
enum Line {
    Message,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its end), refusing lines longer than `max` without
/// buffering them.
async fn next_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut seen = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (seen, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Message,
            });
        }
        seen = true;
        let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + used > max + 2 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..used]);
            }
        }
        r.consume(used);
        if done {
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Message
            });
        }
    }
}

/// Writes each queued message as one line, flushing when the queue is momentarily empty, until
/// the queue closes or `stop` fires (then what is queued is still written).
async fn writer<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<String>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = &mut stop => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(msg) = msg else { break };
        let mut bytes = msg.into_bytes();
        bytes.push(b'\n');
        if out.write_all(&bytes).await.is_err() {
            return;
        }
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

/// A duplicate of one of our standard descriptors as a file, if it is a pipe.
fn std_pipe(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    file.metadata().ok()?.file_type().is_fifo().then_some(file)
}

/// Our stdin. When it is a pipe (as MCP clients start servers) it is read directly in
/// non-blocking mode: tokio's `stdin()` reads on a blocking thread, a hand-off per message.
fn client_input() -> Box<dyn AsyncRead + Send + Unpin> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    std_pipe(stdin.as_fd())
        .and_then(|f| tokio::net::unix::pipe::Receiver::from_file(f).ok())
        .map_or_else(
            || Box::new(tokio::io::stdin()) as Box<dyn AsyncRead + Send + Unpin>,
            |p| Box::new(p),
        )
}

/// Our stdout, written directly in non-blocking mode when it is a pipe of its own. Not when
/// stderr is the same pipe: non-blocking mode belongs to the pipe, and stderr (ours and the
/// server's, which inherits it) must stay blocking.
fn client_output() -> Box<dyn AsyncWrite + Send + Unpin> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let blocking = || Box::new(tokio::io::stdout()) as Box<dyn AsyncWrite + Send + Unpin>;
    let stdout = std::io::stdout();
    let Some(out) = std_pipe(stdout.as_fd()) else {
        return blocking();
    };
    let id = |f: &std::fs::File| f.metadata().ok().map(|m| (m.dev(), m.ino()));
    let stderr = std::io::stderr();
    let shared = stderr
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from)
        .is_none_or(|err| id(&err) == id(&out));
    if shared {
        return blocking();
    }
    tokio::net::unix::pipe::Sender::from_file(out).map_or_else(
        |_| blocking(),
        |p| Box::new(p) as Box<dyn AsyncWrite + Send + Unpin>,
    )
}

/// Runs the proxy until the client or the server goes away. Returns the process exit code:
/// 0 when the client closed the session, 1 when the server exited first.
pub async fn run(
    gate: Arc<dyn Gate>,
    opts: Options,
    command: &[String],
    max_message: usize,
) -> Result<u8, StdioError> {
    let (program, args) = command.split_first().ok_or(StdioError::NoCommand)?;
    // The server and everything it starts live in a process group that goes when we go.
    let group = ServerGroup::start();
    let mut server = Command::new(program);
    server
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    group.join(&mut server);
    let mut child = server
        .spawn()
        .map_err(|e| StdioError::Spawn(program.clone(), e))?;
    let group = group.with_server(child.id());
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(StdioError::Spawn(
            program.clone(),
            std::io::Error::other("no pipes"),
        ));
    };

    let (to_client, client_rx) = mpsc::channel(1024);
    let (to_server, server_rx) = mpsc::channel(1024);
    let (stop_client, client_stop) = oneshot::channel();
    let (stop_server, server_stop) = oneshot::channel();
    let client_writer = tokio::spawn(writer(client_output(), client_rx, client_stop));
    let server_writer = tokio::spawn(writer(server_in, server_rx, server_stop));
    let session = Session::new(gate, opts, to_client, to_server);

    let from_server = {
        let session = session.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, server_out);
            let mut buf = Vec::new();
            loop {
                match next_line(&mut r, &mut buf, 4 * max_message).await {
                    Ok(Line::Message) if buf.is_empty() => {}
                    Ok(Line::Message) => match std::str::from_utf8(&buf) {
                        Ok(text) => session.from_server(text).await,
                        Err(_) => tracing::warn!("the MCP server sent a line that is not UTF-8"),
                    },
                    Ok(Line::TooLong) => {
                        tracing::warn!("the MCP server sent an oversized message; dropped")
                    }
                    Ok(Line::Eof) | Err(_) => return,
                }
            }
        })
    };
    let from_client = {
        let session = session.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, client_input());
            let mut buf = Vec::new();
            loop {
                match next_line(&mut r, &mut buf, max_message).await {
                    Ok(Line::Message) if buf.is_empty() => {}
                    Ok(Line::Message) => {
                        let text = String::from_utf8_lossy(&buf);
                        session.from_client(&text).await;
                    }
                    Ok(Line::TooLong) => session.oversized(max_message).await,
                    Ok(Line::Eof) | Err(_) => return,
                }
            }
        })
    };

    let code = tokio::select! {
        _ = from_client => {
            // The client is done: withdraw its held calls, then let the server finish.
            session.client_gone().await;
            session.settle(Duration::from_secs(10)).await;
            0
        }
        _ = from_server => {
            eprintln!("countersign: the MCP server closed its output; ending the session");
            session.server_gone().await;
            session.client_gone().await;
            session.settle(Duration::from_secs(10)).await;
            1
        }
    };
    drop(session);
    // The writers drain what is queued, then close the server's stdin and flush our stdout.
    let _ = stop_server.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server_writer).await;
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        eprintln!("countersign: the MCP server did not exit after its input closed; killing it");
        let _ = child.kill().await;
    }
    // What the server started goes too (a child that ignores its closed stdin, say).
    group.kill();
    let _ = stop_client.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), client_writer).await;
    Ok(code)
}

/// The process group the MCP server runs in, and its watchdog.
///
/// The group's leader is a watchdog (`sh` reading a pipe only this process holds): however
/// this process ends, SIGKILL included, the pipe closes, and the watchdog kills its whole
/// group, the server's own children with it. While it lives the group id cannot be reused, so
/// [`ServerGroup::kill`] never signals a stranger. The server also gets a parent-death signal
/// (Linux), in case the watchdog could not start.
struct ServerGroup {
    /// The watchdog, holding the group; `None` if it could not start.
    watchdog: Option<tokio::process::Child>,
    /// The group's id: the watchdog's pid, else the server's own group.
    pgid: Option<i32>,
}

impl ServerGroup {
    fn start() -> Self {
        let spawned = Command::new("/bin/sh")
            .args(["-c", "read line; kill -9 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => {
                let pgid = child.id().and_then(|p| i32::try_from(p).ok());
                ServerGroup {
                    watchdog: Some(child),
                    pgid,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the MCP server's watchdog (/bin/sh); the server's own children may outlive a killed proxy");
                ServerGroup {
                    watchdog: None,
                    pgid: None,
                }
            }
        }
    }

    /// Puts `server` in the group (or a group of its own) with a parent-death signal.
    fn join(&self, server: &mut Command) {
        server.process_group(self.pgid.unwrap_or(0));
        parent_death_signal(server);
    }

    /// Without a watchdog the group is the server's own.
    fn with_server(mut self, server: Option<u32>) -> Self {
        if self.watchdog.is_none() {
            self.pgid = server.and_then(|p| i32::try_from(p).ok());
        }
        self
    }

    /// Kills every process of the group (the watchdog too).
    fn kill(mut self) {
        if let Some(pgid) = self.pgid.filter(|p| *p > 1) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.start_kill();
        }
    }
}

/// Linux: the server is killed when this process dies, whatever kills it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // The workspace's one unsafe block (tidy test `unsafe_code_is_allowed_once`).
fn parent_death_signal(server: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: prctl(2) and getppid(2) are system calls that
    // allocate nothing and take no lock.
    unsafe {
        server.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died before the signal was armed.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the proxy exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn parent_death_signal(_server: &mut Command) {}
