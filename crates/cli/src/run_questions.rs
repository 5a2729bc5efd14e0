//! Reviewers' questions while `countersign run` waits. A [`Progress`] sink around the status
//! line: when a reviewer asks the requester something (the action `needs_clarification`), on a
//! terminal (stdin and stderr) it shows the question and sends the line the requester types as
//! the answer (`POST /v1/actions/{id}/answer` through [`Gate::answer`]); otherwise it prints the
//! question as plain lines and how to answer it with `countersign answer`.
//!
//! stdin is read only while a question is shown, only when it has a line ready (`poll` first),
//! and never after the hold ends ([`Inline::close`]), so the approved command gets all of its
//! input.

use countersign_core::Status;
use countersign_enforce::{Gate, Progress, Question, Tracked};
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex};

/// The longest answer read from the terminal (the API takes 16 KiB).
const MAX_LINE: usize = 16 * 1024;
/// How often the reading thread checks it should stop.
const POLL_EVERY: u16 = 100;

/// The status line, with reviewers' questions shown and answered.
pub struct Inline<'a> {
    gate: &'a dyn Gate,
    status: &'a dyn Progress,
    interactive: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The question last shown (its index in the review's questions).
    shown: Option<usize>,
    /// Reading the answer from the terminal.
    reader: Option<Reader>,
}

/// A thread waiting for a line on stdin.
struct Reader {
    stop: Arc<AtomicBool>,
    line: oneshot::Receiver<Option<String>>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    fn start() -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, line) = oneshot::channel();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(read_line(&stopped));
        });
        Reader { stop, line, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// One line from stdin once one is ready; `None` at end of input, on an error or when `stop`.
fn read_line(stop: &AtomicBool) -> Option<String> {
    use nix::poll::{poll, PollFd, PollFlags};
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, POLL_EVERY) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(_) => return None,
        }
    }
    // A terminal in canonical mode gives one line per read.
    let mut buf = vec![0u8; MAX_LINE + 2];
    match nix::unistd::read(fd, &mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()),
    }
}

impl<'a> Inline<'a> {
    /// Questions on `gate`'s action shown around `status`; answered from the terminal when
    /// `interactive` (stdin and stderr are terminals).
    pub fn new(gate: &'a dyn Gate, status: &'a dyn Progress, interactive: bool) -> Self {
        Inline {
            gate,
            status,
            interactive,
            state: Mutex::new(State::default()),
        }
    }

    /// Stops reading the terminal (call when the hold ends, before the command runs).
    pub async fn close(&self) {
        if let Some(r) = self.state.lock().await.reader.take() {
            r.stop();
            // End the prompt's line.
            eprintln!();
        }
    }

    fn how_to_answer(id: &str) -> String {
        format!(
            "countersign run: answer with: countersign answer {id} 'YOUR ANSWER' (with this run's gateway URL and token)"
        )
    }

    fn show(&self, id: &str, q: &Question) {
        let mut err = std::io::stderr().lock();
        if self.interactive {
            let _ = writeln!(
                err,
                "\r\x1b[2Kcountersign run: {} asks (action {id}):\n  {}",
                q.asked_by,
                q.text.replace('\n', "\n  ")
            );
            let _ = write!(
                err,
                "Type your answer and press Enter (an empty line answers later): "
            );
            let _ = err.flush();
        } else {
            let _ = writeln!(
                err,
                "countersign run: {} asks (action {id}): {}",
                q.asked_by,
                q.text.replace('\n', " ")
            );
            let _ = writeln!(err, "{}", Self::how_to_answer(id));
        }
    }

    /// What to do with a line typed for the question of action `id`: `true` if it was sent.
    async fn answer(&self, id: &str, line: Option<String>) -> bool {
        let text = line
            .as_deref()
            .map(|l| l.trim_end_matches(['\n', '\r']))
            .unwrap_or_default();
        if text.trim().is_empty() {
            eprintln!("{}", Self::how_to_answer(id));
            return true;
        }
        match self.gate.answer(id, text.to_string()).await {
            Ok(_) => {
                eprintln!("countersign run: answer sent");
                true
            }
            Err(e) => {
                eprint!("countersign run: the answer was not sent ({e}); type it again: ");
                false
            }
        }
    }
}

#[async_trait::async_trait]
impl Progress for Inline<'_> {
    async fn waiting(&self, tracked: &Tracked, n: u64) {
        let mut st = self.state.lock().await;
        let open = tracked
            .question
            .as_ref()
            .filter(|_| tracked.status == Status::NeedsClarification);
        let Some(q) = open else {
            if let Some(r) = st.reader.take() {
                // Answered elsewhere (the API, `countersign answer`), or the review closed.
                r.stop();
                eprintln!();
            }
            drop(st);
            return self.status.waiting(tracked, n).await;
        };
        if st.shown != Some(q.index) {
            if let Some(r) = st.reader.take() {
                r.stop();
            }
            self.show(&tracked.id, q);
            st.shown = Some(q.index);
            if self.interactive {
                st.reader = Some(Reader::start());
            }
        } else if let Some(r) = st.reader.as_mut() {
            let got = match r.line.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => None,
                Ok(line) => Some(line),
                Err(oneshot::error::TryRecvError::Closed) => Some(None),
            };
            if let Some(line) = got {
                if let Some(r) = st.reader.take() {
                    r.stop();
                }
                if !self.answer(&tracked.id, line).await {
                    st.reader = Some(Reader::start());
                }
            }
        }
        let reading = st.reader.is_some();
        drop(st);
        if !reading {
            self.status.waiting(tracked, n).await;
        }
    }
}
