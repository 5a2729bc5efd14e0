//! Continuations: an approved, forwarded action whose downstream answered "I need more input"
//! (MCP 2026-07-28's `input_required`; later a SQL session's or a pipeline's next step) may be
//! continued by the caller's retry without a new decision, because it is the same action. A
//! continuation is bound to the call's key (what the caller sends again) and to the state token
//! the downstream issued, is used once, only before its deadline, and a caller holds a bounded
//! number (the oldest goes first). What is forwarded on the retry is what was decided on (a
//! reviewer's modification included), whatever the retry says.
//!
//! No I/O and no clock: the caller passes `now` (a monotonic `Instant`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// One remembered continuation.
struct Round<A> {
    arguments: A,
    action_id: String,
    state: Option<String>,
    at: Instant,
}

/// What a used continuation continues.
#[derive(Debug, Clone, PartialEq)]
pub struct Continued<A> {
    /// The arguments that were decided on and forwarded (a reviewer's modification included).
    pub arguments: A,
    /// The action the call belongs to (its result is reported once, at the end).
    pub action_id: String,
}

/// One caller's continuations, by call key.
pub struct Continuations<A> {
    rounds: Mutex<HashMap<String, Round<A>>>,
    ttl: Duration,
    max: usize,
}

impl<A> Continuations<A> {
    /// Continuations usable for `ttl` after they are made, at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Continuations {
            rounds: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
        }
    }

    fn rounds(&self) -> MutexGuard<'_, HashMap<String, Round<A>>> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that the call `key` of `action_id`, forwarded with `arguments`, may be
    /// continued; `state` is the token the downstream issued, which the retry must echo. A
    /// later continuation of the same key replaces this one.
    pub fn remember(
        &self,
        key: String,
        action_id: String,
        arguments: A,
        state: Option<String>,
        now: Instant,
    ) {
        let mut rounds = self.rounds();
        rounds.retain(|_, r| now.saturating_duration_since(r.at) < self.ttl);
        if rounds.len() >= self.max && !rounds.contains_key(&key) {
            if let Some(oldest) = rounds
                .iter()
                .min_by_key(|(_, r)| r.at)
                .map(|(k, _)| k.clone())
            {
                rounds.remove(&oldest);
            }
        }
        rounds.insert(
            key,
            Round {
                arguments,
                action_id,
                state,
                at: now,
            },
        );
    }

    /// Uses the continuation of `key`, once: `None` if there is none, it is past its deadline,
    /// or the retry's `state` is not the one issued (then it stays, for the right retry).
    pub fn take(&self, key: &str, state: Option<&str>, now: Instant) -> Option<Continued<A>> {
        let mut rounds = self.rounds();
        let round = rounds.get(key)?;
        let fresh = now.saturating_duration_since(round.at) < self.ttl;
        let state_ok = match &round.state {
            Some(s) => state == Some(s.as_str()),
            None => true,
        };
        if !(fresh && state_ok) {
            return None;
        }
        let round = rounds.remove(key)?;
        Some(Continued {
            arguments: round.arguments,
            action_id: round.action_id,
        })
    }

    /// How many are remembered (expired ones included until the next `remember`).
    pub fn len(&self) -> usize {
        self.rounds().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn a_continuation_is_used_once_and_only_with_its_state() {
        let c = Continuations::new(TTL, 8);
        let t0 = Instant::now();
        c.remember("k".into(), "a1".into(), 7, Some("s1".into()), t0);
        assert_eq!(c.take("k", Some("s2"), t0), None, "wrong state");
        assert_eq!(c.take("k", None, t0), None, "no state");
        assert_eq!(c.take("other", Some("s1"), t0), None, "another call");
        let got = c.take("k", Some("s1"), t0).unwrap();
        assert_eq!((got.arguments, got.action_id.as_str()), (7, "a1"));
        assert_eq!(c.take("k", Some("s1"), t0), None, "used once");
    }

    #[test]
    fn a_continuation_expires_and_a_caller_holds_a_bounded_number() {
        let c = Continuations::new(TTL, 2);
        let t0 = Instant::now();
        c.remember("old".into(), "a0".into(), 0, None, t0);
        assert_eq!(c.take("old", None, t0 + TTL), None, "past its deadline");
        c.remember("a".into(), "a1".into(), 1, None, t0);
        c.remember(
            "b".into(),
            "a2".into(),
            2,
            None,
            t0 + Duration::from_secs(1),
        );
        c.remember(
            "c".into(),
            "a3".into(),
            3,
            None,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.take("a", None, t0 + Duration::from_secs(3)),
            None,
            "oldest went"
        );
        assert!(c.take("b", None, t0 + Duration::from_secs(3)).is_some());
        assert!(c.take("c", None, t0 + Duration::from_secs(3)).is_some());
        assert!(c.is_empty());
    }
}
