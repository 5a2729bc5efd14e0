//! Whether a store's writer can write: what a readiness probe (`/readyz`) reports.

use std::sync::{Arc, Mutex};

use crate::StoreError;

/// The writer's last storage failure, until a later write succeeds. Shared between a store and
/// its writer; cheap to read on every probe.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteHealth(Arc<Mutex<Option<String>>>);

impl WriteHealth {
    /// A write failed for a storage reason (not a domain refusal).
    pub(crate) fn failed(&self, e: &StoreError) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(e.to_string());
        }
    }

    /// A write was committed.
    pub(crate) fn succeeded(&self) {
        if let Ok(mut last) = self.0.lock() {
            if last.is_some() {
                tracing::info!("the store writes again");
            }
            *last = None;
        }
    }

    /// The last failure, if no write succeeded since. A poisoned lock reports itself.
    pub(crate) fn failure(&self) -> Option<String> {
        match self.0.lock() {
            Ok(last) => last.clone(),
            Err(_) => Some("the store's health state is poisoned".into()),
        }
    }
}
