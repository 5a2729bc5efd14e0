//! One statement through the gate: submitted as `sql.<kind>`, held with `NoticeResponse`s while
//! people review it (withdrawn on `CancelRequest`, on the client's disconnect or the upstream's
//! loss), then redeemed: the verdict is what to run (a reviewer's modification included) or the
//! error the client gets.

use async_trait::async_trait;
use countersign_core::Status;
use countersign_enforce::{
    check_submission, hold, Clock, Ending, Gate, GateError, HoldPolicy, Progress, Submission,
    Tracked,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, watch};

use crate::down::Down;
use crate::wire::Diag;

/// SQLSTATE of a refused statement: insufficient_privilege.
pub const REFUSED: &str = "42501";
/// SQLSTATE of a withdrawn review: query_canceled.
pub const CANCELED: &str = "57014";
/// SQLSTATE when countersign itself could not decide: system_error.
pub const FAILED: &str = "58000";

/// One statement to decide.
pub struct Statement<'a> {
    /// `select`, `delete`, ...
    pub kind: &'static str,
    /// Its text.
    pub text: &'a str,
    /// Its bound parameters (extended protocol), as JSON.
    pub parameters: Vec<Value>,
    /// The tables it names.
    pub tables: &'a [String],
}

/// What to do with a statement.
#[derive(Debug)]
pub enum Verdict {
    /// Run it: `statement`/`parameters` are set when a reviewer changed them.
    Run {
        /// The action to report the result to.
        action_id: String,
        /// The statement to run instead, if a reviewer modified it.
        statement: Option<String>,
        /// The parameters to bind instead, if a reviewer modified them.
        parameters: Option<Vec<Value>>,
    },
    /// Do not run it; the client gets this error.
    Refuse(Diag),
}

/// A statement's cancellation, reachable by `CancelRequest` while it lives (from its submission
/// to its verdict); afterwards a `CancelRequest` goes to what runs upstream.
struct Registered<'a>(&'a Mutex<Option<watch::Sender<bool>>>);

impl<'a> Registered<'a> {
    fn new(slot: &'a Mutex<Option<watch::Sender<bool>>>, cancel: watch::Sender<bool>) -> Self {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel);
        Registered(slot)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// What a session decides with.
pub struct Decider {
    pub gate: Arc<dyn Gate>,
    pub resource: String,
    pub progress_every: Duration,
    pub clock: Clock,
    /// Notices for the client.
    pub down: mpsc::UnboundedSender<Down>,
    /// The cancellation of the statement held now, for `CancelRequest`.
    pub held: Arc<Mutex<Option<watch::Sender<bool>>>>,
    /// Turns `true` when the upstream session is lost.
    pub ended: watch::Receiver<bool>,
}

impl Decider {
    /// Decides `s`. `client` is watched while the statement is held: its end withdraws the
    /// review (bytes it sends meanwhile stay buffered for later).
    pub async fn decide<R: AsyncBufRead + Unpin>(
        &self,
        s: &Statement<'_>,
        client: &mut R,
    ) -> Verdict {
        let params = json!({
            "statement": s.text,
            "parameters": s.parameters,
            "tables": s.tables,
        });
        let sub = Submission {
            action: format!("sql.{}", s.kind),
            resource: self.resource.clone(),
            params: Some(params.clone()),
            ..Submission::default()
        };
        if let Err(e) = check_submission(&sub) {
            return Verdict::Refuse(gate_failed(&e));
        }
        // A `CancelRequest` reaches this statement from its submission on, not only once it is
        // held: its review is visible (and the client's Ctrl-C may come) before the hold starts.
        let (cancel, cancelled) = watch::channel(false);
        let _registered = Registered::new(&self.held, cancel.clone());
        let first = match self.gate.submit(sub).await {
            Ok(t) => t,
            Err(e) => return Verdict::Refuse(gate_failed(&e)),
        };
        let ending = if first.waits() {
            self.held(first, client, cancel, cancelled).await
        } else {
            let ending = hold::hold(
                self.gate.as_ref(),
                first,
                self.policy(),
                watch::channel(false).1,
                &countersign_enforce::Silent,
            )
            .await;
            // Cancelled while being submitted: not run, as PostgreSQL cancels a statement.
            if let Ending::Run { action_id, .. } = &ending {
                if *cancelled.borrow() {
                    let why = "the client cancelled the statement".to_string();
                    return self.not_run(action_id, CANCELED, why).await;
                }
            }
            ending
        };
        match ending {
            Ending::Run { action_id, grant } => self.run(action_id, grant, &params, s.kind).await,
            Ending::Denied(t) => Verdict::Refuse(
                Diag::error(
                    REFUSED,
                    format!(
                        "countersign: permission denied: {}",
                        t.reason
                            .as_deref()
                            .unwrap_or("no policy allows this statement")
                    ),
                )
                .detail(format!("action {}", t.id))
                .hint(
                    "The statement was not run. Ask for a policy change, or do this another way.",
                ),
            ),
            Ending::Cancelled(t) => Verdict::Refuse(
                Diag::error(CANCELED, "canceling statement due to user request").detail(format!(
                    "countersign: the review of action {} was withdrawn",
                    t.id
                )),
            ),
            Ending::Closed(t) | Ending::Parked(t) => {
                let mut d = Diag::error(
                    REFUSED,
                    format!(
                        "countersign: the statement was not approved (action {} {})",
                        t.id,
                        t.status.as_str()
                    ),
                )
                .hint("The statement was not run.");
                if !t.comments.is_empty() {
                    d = d.detail(t.comments.join("; "));
                }
                Verdict::Refuse(d)
            }
        }
    }

    fn policy(&self) -> HoldPolicy {
        HoldPolicy {
            pending_after: None,
            progress_every: self.progress_every,
        }
    }

    /// Holds a statement under review: progress as notices, withdrawn on a `CancelRequest`, the
    /// client's end or the upstream's loss.
    async fn held<R: AsyncBufRead + Unpin>(
        &self,
        first: Tracked,
        client: &mut R,
        cancel: watch::Sender<bool>,
        cancelled: watch::Receiver<bool>,
    ) -> Ending {
        let notices = Notices {
            down: self.down.clone(),
            clock: self.clock.clone(),
        };
        let run = hold::hold(
            self.gate.as_ref(),
            first,
            self.policy(),
            cancelled,
            &notices,
        );
        tokio::pin!(run);
        let mut ended = self.ended.clone();
        let mut watching = true;
        let mut upstream = true;
        loop {
            tokio::select! {
                e = &mut run => break e,
                gone = client_gone(client), if watching => {
                    watching = false;
                    if gone {
                        let _ = cancel.send(true);
                    }
                }
                _ = ended.wait_for(|e| *e), if upstream => {
                    upstream = false;
                    let _ = cancel.send(true);
                }
            }
        }
    }

    /// Refuses a redeemed action, reporting that it did not run (its trail ends there).
    async fn not_run(&self, action_id: &str, code: &'static str, why: String) -> Verdict {
        let mut r = countersign_enforce::Report::new(countersign_core::Outcome::Failed);
        r.detail = Some(json!({ "not_run": why }).to_string());
        if let Err(e) = self.gate.report(action_id, r).await {
            tracing::warn!(action = %action_id, error = %e, "could not report a statement that was not run");
        }
        Verdict::Refuse(
            Diag::error(code, format!("countersign: {why}")).hint("The statement was not run."),
        )
    }

    async fn run(
        &self,
        action_id: String,
        grant: Option<String>,
        asked: &Value,
        kind: &str,
    ) -> Verdict {
        let Some(token) = grant else {
            return Verdict::Run {
                action_id,
                statement: None,
                parameters: None,
            };
        };
        let approved = match self.gate.redeem(&token).await {
            Ok(a) if a.action_id == action_id => a,
            Ok(a) => {
                return Verdict::Refuse(Diag::error(
                    FAILED,
                    format!(
                        "countersign: the grant is for action {}, not {action_id}",
                        a.action_id
                    ),
                ))
            }
            Err(e) => return Verdict::Refuse(gate_failed(&e)),
        };
        let statement = approved.params.get("statement").and_then(Value::as_str);
        let Some(statement) = statement else {
            let why = format!("the approved action {action_id} has no statement");
            return self.not_run(&action_id, FAILED, why).await;
        };
        let parameters = match approved.params.get("parameters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                let why = format!("the approved parameters of action {action_id} are not a list");
                return self.not_run(&action_id, FAILED, why).await;
            }
        };
        let same_statement = asked.get("statement").and_then(Value::as_str) == Some(statement);
        let same_parameters = asked.get("parameters") == Some(&Value::Array(parameters.clone()));
        // Policy judged the reviewer's version as this action, `sql.<kind>`: it must be one
        // statement of that kind (not a second statement smuggled after the first).
        if !same_statement {
            let one = countersign_analyze::pg_statements(statement)
                .is_ok_and(|s| s.len() == 1 && s.iter().all(|s| s.kind.as_str() == kind));
            if !one {
                let why = format!(
                    "the reviewer's statement (action {action_id}) is not one sql.{kind} statement"
                );
                return self.not_run(&action_id, REFUSED, why).await;
            }
        }
        if !same_statement || !same_parameters {
            let _ = self.down.send(Down::Notice(
                Diag::notice(format!(
                    "countersign: a reviewer modified the statement (action {action_id}); running: {statement}"
                ))
                .to_msg(),
            ));
        }
        Verdict::Run {
            action_id,
            statement: (!same_statement).then(|| statement.to_string()),
            parameters: (!same_parameters).then_some(parameters),
        }
    }
}

/// Whether the client is gone (`true`) or sent more (`false`, the bytes stay buffered).
async fn client_gone<R: AsyncBufRead + Unpin>(client: &mut R) -> bool {
    match client.fill_buf().await {
        Ok(b) => b.is_empty(),
        Err(_) => true,
    }
}

fn gate_failed(e: &GateError) -> Diag {
    match e {
        GateError::Refused { code, message }
            if code == "invalid_request" || code == "payload_too_large" =>
        {
            Diag::error(
                "54000",
                format!("countersign: the statement cannot be submitted: {message}"),
            )
        }
        GateError::Unauthenticated(m) => Diag::error(
            "28000",
            format!("countersign: the credential is no longer valid: {m}"),
        ),
        other => Diag::error(FAILED, format!("countersign: could not decide: {other}"))
            .hint("The statement was not run."),
    }
}

/// Progress as `NoticeResponse`s.
struct Notices {
    down: mpsc::UnboundedSender<Down>,
    clock: Clock,
}

#[async_trait]
impl Progress for Notices {
    async fn waiting(&self, t: &Tracked, _n: u64) {
        let mut text = String::from("countersign: waiting for approval");
        if !t.approvers.is_empty() {
            text.push_str(&format!(" by {}", t.approvers.join(", ")));
        }
        text.push_str(&format!(" (action {}", t.id));
        if let Some(r) = &t.review {
            text.push_str(&format!(", approvals {}/{}", r.approvals, r.needed));
            let left = r
                .expires_at
                .millis()
                .saturating_sub((self.clock)().millis())
                / 1000;
            text.push_str(&format!(", {}m{:02}s left", left / 60, left % 60));
        }
        text.push(')');
        if t.status == Status::NeedsClarification {
            if let Some(q) = &t.question {
                text.push_str(&format!("; {} asks: {}", q.asked_by, q.text));
            }
        }
        if let Some(r) = &t.reason {
            text.push_str(&format!("; {r}"));
        }
        let _ = self.down.send(Down::Notice(Diag::notice(text).to_msg()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use countersign_core::{ActionSpec, Effect};
    use countersign_enforce::{Approved, Report, Tracked};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A gate whose `submit` answers `status`, and during which the client's `CancelRequest`
    /// arrives (as `session/startup.rs::cancel` delivers it: through the session's slot).
    struct CancelDuringSubmit {
        status: Status,
        slot: Arc<Mutex<Option<watch::Sender<bool>>>>,
        withdrawn: AtomicUsize,
        reports: Mutex<Vec<Report>>,
    }

    #[async_trait]
    impl Gate for CancelDuringSubmit {
        async fn submit(&self, _: Submission) -> Result<Tracked, GateError> {
            // The review is committed (visible to the API, to the client's operator) and the
            // cancel arrives before the proxy holds the statement.
            let registered = self.slot.lock().unwrap().clone();
            let tx = registered.expect("a statement being submitted can be cancelled");
            tx.send(true).unwrap();
            Ok(Tracked {
                id: "a1".into(),
                status: self.status,
                reason: None,
                approvers: vec!["group:dba".into()],
                comments: vec![],
                grant_token: None,
                review: None,
                question: None,
            })
        }
        async fn wait(&self, _: &str, wait: Duration) -> Result<Tracked, GateError> {
            tokio::time::sleep(wait).await;
            Err(GateError::Unreachable("the hold must not wait".into()))
        }
        async fn cancel(&self, _: &str) -> Result<(), GateError> {
            self.withdrawn.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn answer(&self, _: &str, _: String) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn redeem(&self, _: &str) -> Result<Approved, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn report(&self, _: &str, report: Report) -> Result<(), GateError> {
            self.reports.lock().unwrap().push(report);
            Ok(())
        }
        async fn refused(&self, _: &str) -> bool {
            false
        }
        fn preview(&self, _: &ActionSpec) -> Option<Effect> {
            None
        }
    }

    async fn decide_cancelled_during_submit(status: Status) -> (Verdict, Arc<CancelDuringSubmit>) {
        let slot = Arc::new(Mutex::new(None));
        let gate = Arc::new(CancelDuringSubmit {
            status,
            slot: Arc::clone(&slot),
            withdrawn: AtomicUsize::new(0),
            reports: Mutex::new(Vec::new()),
        });
        let (down, _notices) = mpsc::unbounded_channel();
        let (_upstream, ended) = watch::channel(false);
        let decider = Decider {
            gate: gate.clone(),
            resource: "postgres://prod/app".into(),
            progress_every: Duration::from_secs(5),
            clock: countersign_enforce::system_clock(),
            down,
            held: Arc::clone(&slot),
            ended,
        };
        // A client that neither sends nor leaves while its statement is decided.
        let (_peer, client) = tokio::io::duplex(64);
        let mut client = tokio::io::BufReader::new(client);
        let tables = vec!["t".to_string()];
        let s = Statement {
            kind: "delete",
            text: "DELETE FROM t",
            parameters: vec![],
            tables: &tables,
        };
        let verdict =
            tokio::time::timeout(Duration::from_secs(10), decider.decide(&s, &mut client))
                .await
                .expect("a cancelled statement is not held");
        assert!(
            slot.lock().unwrap().is_none(),
            "unregistered after its verdict"
        );
        (verdict, gate)
    }

    fn assert_cancelled(verdict: &Verdict) {
        match verdict {
            Verdict::Refuse(d) => assert_eq!(d.code, CANCELED, "{d:?}"),
            v => panic!("{v:?}"),
        }
    }

    /// The race CI once lost: psql's Ctrl-C reached the proxy after the review was committed
    /// but before the statement was held, and was sent upstream instead (where nothing ran), so
    /// the client waited for a review nobody would close. Now the review is withdrawn.
    #[tokio::test]
    async fn a_cancel_between_the_submission_and_the_hold_withdraws_the_review() {
        let (verdict, gate) = decide_cancelled_during_submit(Status::Pending).await;
        assert_cancelled(&verdict);
        assert_eq!(gate.withdrawn.load(Ordering::SeqCst), 1);
    }

    /// A statement allowed outright but cancelled while it was being submitted is not run
    /// (as PostgreSQL cancels a statement), and its action is told it did not run.
    #[tokio::test]
    async fn a_statement_cancelled_while_being_allowed_is_not_run() {
        let (verdict, gate) = decide_cancelled_during_submit(Status::Allowed).await;
        assert_cancelled(&verdict);
        let reports = gate.reports.lock().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].outcome, countersign_core::Outcome::Failed);
        assert!(reports[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("cancelled"));
    }
}
