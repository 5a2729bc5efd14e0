//! Where reviewers hear of reviews (issue #15). The store's write path queues one outbox row
//! per notification and channel in the transaction of each change; this crate delivers them:
//! [`Deliverer::deliver_forever`] is the delivery worker (one replica at a time: the server
//! registers it among its leased workers), [`backoff`] says when to try again, and each channel
//! ([`webhook`]: Standard Webhooks; [`slack`]: the Block Kit review message, its clicks over HTTP
//! interactivity or Socket Mode; [`teams`]: the Adaptive Card posted through the Bot Connector,
//! its `Action.Execute` clicks at the Bot Framework messaging endpoint) turns a notification
//! into a request.
//!
//! **Architecture Invariant:** a channel builds what it sends only from the action's masked
//! view (`Gateway::notification_view`) and its masked audit entry; it holds no rule and never
//! reads a record itself. Chat clicks ([`slack::interactions`], [`slack::socket`],
//! [`teams::activities`]) go through `Gateway::vote` like the API's (`chat.rs`, shared).

pub mod backoff;
mod chat;
mod deliver;
pub mod slack;
pub mod teams;
pub mod webhook;

pub use deliver::{Channel, Channels, Deliverer, Message, Outcome};
