//! Wake-ups for long polls: a waiter on an action is released the moment its record changes,
//! not on a polling tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Per-action notification points, created while someone waits and dropped after.
#[derive(Debug, Default)]
pub struct Wakeups {
    waiters: Mutex<HashMap<String, (usize, Arc<Notify>)>>,
}

/// A registration to be woken when an action changes. Dropping it unregisters.
pub struct Subscription<'a> {
    owner: &'a Wakeups,
    id: String,
    notify: Arc<Notify>,
}

impl Subscription<'_> {
    /// The notification point; create and `enable()` a `notified()` future *before* reading the
    /// record, so a change between the read and the wait is not missed.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.owner.waiters.lock() {
            if let Some((count, _)) = map.get_mut(&self.id) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&self.id);
                }
            }
        }
    }
}

impl Wakeups {
    /// Registers interest in `id`.
    pub fn subscribe(&self, id: &str) -> Subscription<'_> {
        let notify = match self.waiters.lock() {
            Ok(mut map) => {
                let entry = map
                    .entry(id.to_string())
                    .or_insert_with(|| (0, Arc::new(Notify::new())));
                entry.0 += 1;
                entry.1.clone()
            }
            // A poisoned map only loses wake-ups; waiters still time out and re-read.
            Err(_) => Arc::new(Notify::new()),
        };
        Subscription {
            owner: self,
            id: id.to_string(),
            notify,
        }
    }

    /// Wakes everyone waiting on anything (after changes may have been missed).
    pub fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = match self.waiters.lock() {
            Ok(m) => m.values().map(|(_, n)| n.clone()).collect(),
            Err(_) => return,
        };
        for n in all {
            n.notify_waiters();
        }
    }

    /// Wakes everyone waiting on `id`.
    pub fn wake(&self, id: &str) {
        let notify = self
            .waiters
            .lock()
            .ok()
            .and_then(|m| m.get(id).map(|(_, n)| n.clone()));
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}
