//! The hold loop: a submitted action waits while people review it (with progress for the
//! client, and "pending, call again" in pending mode), is withdrawn if the client goes away, and
//! ends in a typed [`Ending`]. [`Hold`] is the loop as a state machine with no I/O: it is told
//! what the gateway said and how long it has been, and answers with the next [`Step`]. [`hold`]
//! drives it over a [`Gate`]; a front (MCP stdio or HTTP, and later the PostgreSQL proxy or
//! `countersign run`) gives the action, a [`Progress`] sink and a cancellation signal, then
//! redeems and forwards on [`Ending::Run`] and reports with [`Gate::report`].

use async_trait::async_trait;
use countersign_core::Status;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::gate::{Gate, Tracked};

/// How a held action is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// Give up waiting after this long and end with [`Ending::Parked`] (the review stays open).
    /// `None`: wait until the review closes.
    pub pending_after: Option<Duration>,
    /// How often the action is re-read and progress is reported.
    pub progress_every: Duration,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The action may run: redeem `grant` (if any) for the approved parameters, then forward.
    Run {
        /// The action the run's result is reported to.
        action_id: String,
        /// The requester's single-use grant (none for an action policy allowed outright).
        grant: Option<String>,
    },
    /// Policy denied the action.
    Denied(Tracked),
    /// The review closed without approval (rejected, expired, cancelled, or any other end).
    Closed(Tracked),
    /// Pending mode: still under review after `pending_after`; the client should call again.
    Parked(Tracked),
    /// The client went away or cancelled; the review was withdrawn.
    Cancelled(Tracked),
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Report progress number `progress` to the client, then wait up to `wait` for the action to
    /// change and [`Hold::observe`] it.
    Wait {
        /// 1, 2, 3... per report.
        progress: u64,
        /// The longest wait before the next step.
        wait: Duration,
    },
    /// Withdraw the review, then end with [`Ending::Cancelled`].
    Withdraw,
    /// Done.
    End(Ending),
}

/// One held action, as a state machine.
#[derive(Debug, Clone)]
pub struct Hold {
    tracked: Tracked,
    policy: HoldPolicy,
    progress: u64,
}

impl Hold {
    /// A hold of the action the gateway answered `first` to.
    pub fn new(first: Tracked, policy: HoldPolicy) -> Self {
        Hold {
            tracked: first,
            policy,
            progress: 0,
        }
    }

    /// The action as last seen.
    pub fn tracked(&self) -> &Tracked {
        &self.tracked
    }

    /// The gateway's latest answer about the action.
    pub fn observe(&mut self, tracked: Tracked) {
        self.tracked = tracked;
    }

    /// The next step, `elapsed` after the hold began, `cancelled` if the client asked.
    pub fn step(&mut self, elapsed: Duration, cancelled: bool) -> Step {
        if !self.tracked.waits() {
            return Step::End(self.conclusion());
        }
        if cancelled {
            return Step::Withdraw;
        }
        let mut wait = self.policy.progress_every;
        if let Some(limit) = self.policy.pending_after {
            if elapsed >= limit {
                return Step::End(Ending::Parked(self.tracked.clone()));
            }
            wait = wait.min(limit - elapsed);
        }
        self.progress += 1;
        Step::Wait {
            progress: self.progress,
            wait,
        }
    }

    /// The withdrawn hold's ending.
    pub fn withdrawn(&self) -> Ending {
        Ending::Cancelled(self.tracked.clone())
    }

    fn conclusion(&self) -> Ending {
        let t = &self.tracked;
        match t.status {
            Status::Allowed | Status::Approved => Ending::Run {
                action_id: t.id.clone(),
                grant: t.grant_token.clone(),
            },
            Status::Denied => Ending::Denied(t.clone()),
            _ => Ending::Closed(t.clone()),
        }
    }
}

/// Where a held call's progress goes (a notification to the client, a task's status message).
#[async_trait]
pub trait Progress: Send + Sync {
    /// The action is still waiting for people: the `n`th report.
    async fn waiting(&self, tracked: &Tracked, n: u64);
}

/// No progress to report.
pub struct Silent;

#[async_trait]
impl Progress for Silent {
    async fn waiting(&self, _: &Tracked, _: u64) {}
}

/// How long to wait before re-reading after a failed read.
const RETRY_READ: Duration = Duration::from_millis(500);

/// Runs a hold to its end: waits on `gate` while the action is under review, reporting to
/// `progress`, and withdraws the review when `cancelled` turns `true`.
pub async fn hold(
    gate: &dyn Gate,
    first: Tracked,
    policy: HoldPolicy,
    mut cancelled: watch::Receiver<bool>,
    progress: &dyn Progress,
) -> Ending {
    let started = Instant::now();
    let mut machine = Hold::new(first, policy);
    loop {
        let cancel = *cancelled.borrow();
        match machine.step(started.elapsed(), cancel) {
            Step::End(ending) => return ending,
            Step::Withdraw => {
                withdraw(gate, &machine.tracked().id).await;
                return machine.withdrawn();
            }
            Step::Wait { progress: n, wait } => {
                progress.waiting(machine.tracked(), n).await;
                let id = machine.tracked().id.clone();
                let waited = tokio::select! {
                    r = gate.wait(&id, wait) => r,
                    _ = cancelled.changed() => {
                        withdraw(gate, &id).await;
                        return machine.withdrawn();
                    }
                };
                match waited {
                    Ok(t) => machine.observe(t),
                    Err(e) => {
                        tracing::warn!(action = %id, error = %e, "could not read a held call; retrying");
                        tokio::time::sleep(RETRY_READ).await;
                    }
                }
            }
        }
    }
}

/// Pauses between attempts to withdraw a review.
const WITHDRAW_BACKOFF: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Withdraws a review nobody is waiting for any more, retrying a failed cancellation (each
/// failure logged with the action id); if every attempt fails, logs an error naming the review
/// left open (its deadline still closes it). Returns whether it was withdrawn.
pub async fn withdraw(gate: &dyn Gate, id: &str) -> bool {
    let mut attempt = 0;
    loop {
        match gate.cancel(id).await {
            Ok(()) => return true,
            Err(e) => {
                let Some(pause) = WITHDRAW_BACKOFF.get(attempt) else {
                    tracing::error!(action = %id, error = %e, "could not withdraw a review nobody waits for; it stays open until a reviewer or its deadline closes it");
                    return false;
                };
                tracing::warn!(action = %id, error = %e, attempt = attempt + 1, "could not withdraw a review; retrying");
                tokio::time::sleep(*pause).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::gate::{Approved, GateError, Report, Submission};
    use countersign_core::{ActionSpec, Effect};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tracked(status: Status) -> Tracked {
        Tracked {
            id: "a1".into(),
            status,
            reason: None,
            approvers: vec![],
            comments: vec![],
            grant_token: Some("g".into()),
            review: None,
            question: None,
        }
    }

    const EVERY: Duration = Duration::from_secs(5);

    #[test]
    fn an_allowed_or_approved_action_runs_with_its_grant() {
        for s in [Status::Allowed, Status::Approved] {
            let mut h = Hold::new(
                tracked(s),
                HoldPolicy {
                    pending_after: None,
                    progress_every: EVERY,
                },
            );
            assert_eq!(
                h.step(Duration::ZERO, true),
                Step::End(Ending::Run {
                    action_id: "a1".into(),
                    grant: Some("g".into())
                })
            );
        }
    }

    #[test]
    fn a_review_is_waited_for_with_progress_then_concluded() {
        let policy = HoldPolicy {
            pending_after: None,
            progress_every: EVERY,
        };
        let mut h = Hold::new(tracked(Status::Pending), policy);
        assert_eq!(
            h.step(Duration::ZERO, false),
            Step::Wait {
                progress: 1,
                wait: EVERY
            }
        );
        h.observe(tracked(Status::NeedsClarification));
        assert_eq!(
            h.step(EVERY, false),
            Step::Wait {
                progress: 2,
                wait: EVERY
            }
        );
        h.observe(tracked(Status::Rejected));
        assert!(
            matches!(h.step(EVERY * 2, false), Step::End(Ending::Closed(t)) if t.status == Status::Rejected)
        );
        let mut h = Hold::new(tracked(Status::Denied), policy);
        assert!(matches!(
            h.step(Duration::ZERO, false),
            Step::End(Ending::Denied(_))
        ));
    }

    #[test]
    fn pending_mode_parks_after_its_limit_and_cancelling_withdraws() {
        let limit = Duration::from_secs(2);
        let policy = HoldPolicy {
            pending_after: Some(limit),
            progress_every: EVERY,
        };
        let mut h = Hold::new(tracked(Status::Pending), policy);
        assert_eq!(
            h.step(Duration::ZERO, false),
            Step::Wait {
                progress: 1,
                wait: limit
            }
        );
        assert_eq!(
            h.step(Duration::from_secs(1), false),
            Step::Wait {
                progress: 2,
                wait: Duration::from_secs(1)
            }
        );
        assert!(matches!(h.step(limit, false), Step::End(Ending::Parked(_))));
        assert_eq!(h.step(Duration::ZERO, true), Step::Withdraw);
    }

    /// A gate whose cancellations fail `failures` times.
    struct Flaky {
        failures: usize,
        cancels: AtomicUsize,
    }

    #[async_trait]
    impl Gate for Flaky {
        async fn submit(&self, _: Submission) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn wait(&self, _: &str, wait: Duration) -> Result<Tracked, GateError> {
            tokio::time::sleep(wait).await;
            Ok(tracked(Status::Pending))
        }
        async fn cancel(&self, _: &str) -> Result<(), GateError> {
            let n = self.cancels.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(GateError::Unreachable("down".into()))
            } else {
                Ok(())
            }
        }
        async fn answer(&self, _: &str, _: String) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn redeem(&self, _: &str) -> Result<Approved, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn report(&self, _: &str, _: Report) -> Result<(), GateError> {
            Ok(())
        }
        async fn refused(&self, _: &str) -> bool {
            false
        }
        fn preview(&self, _: &ActionSpec) -> Option<Effect> {
            None
        }
    }

    #[tokio::test]
    async fn a_failed_cancellation_is_retried() {
        let gate = Flaky {
            failures: 2,
            cancels: AtomicUsize::new(0),
        };
        assert!(withdraw(&gate, "a1").await);
        assert_eq!(gate.cancels.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_cancelled_hold_withdraws_its_review_even_when_the_gateway_stumbles() {
        let gate = Flaky {
            failures: 1,
            cancels: AtomicUsize::new(0),
        };
        let (tx, rx) = watch::channel(false);
        let policy = HoldPolicy {
            pending_after: None,
            progress_every: Duration::from_millis(20),
        };
        let run = hold(&gate, tracked(Status::Pending), policy, rx, &Silent);
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(true).unwrap();
        };
        let (ending, ()) = tokio::join!(run, cancel);
        assert!(matches!(ending, Ending::Cancelled(_)));
        assert_eq!(
            gate.cancels.load(Ordering::SeqCst),
            2,
            "retried after the failure"
        );
    }
}
