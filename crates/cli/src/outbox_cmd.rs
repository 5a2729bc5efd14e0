//! `countersign outbox list|retry ID`: the notification outbox, by the operator, against the
//! store named by the config file. `list` shows what is queued, delivered or dead-lettered (and
//! why); `retry` queues a notification again now, attempts reset (after fixing a receiver), for
//! the running gateway's delivery worker to send.

use clap::{Args, Subcommand};
use countersign_gateway::Clock;
use countersign_store::{rfc3339, Notification, OutboxChange, OutboxFilter, OutboxState};

use crate::keys_cmd::StoreArgs;
use crate::output::{Format, Output};

/// `countersign outbox ...`.
#[derive(Subcommand)]
pub enum OutboxCommand {
    /// List notifications, oldest first: id, state, channel, kind, action, attempts, created,
    /// last error.
    List(ListArgs),
    /// Queue a notification again now, attempts reset (a dead-lettered one, once its receiver
    /// is fixed).
    Retry(RetryArgs),
}

/// `outbox list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only `queued`, `delivered` or `dead`.
    #[arg(long)]
    state: Option<String>,
    /// Only ids greater than this (the previous page's last).
    #[arg(long)]
    after: Option<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// `outbox retry`.
#[derive(Args)]
pub struct RetryArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The notification's id (from `outbox list`).
    id: i64,
}

fn json(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "state": n.state.as_str(),
        "channel": n.channel,
        "kind": n.kind,
        "action_id": n.action_id,
        "audit_index": n.audit_index,
        "attempts": n.attempts,
        "created_at": rfc3339(n.created_at),
        "next_at": rfc3339(n.next_at),
        "delivered_at": n.delivered_at.map(rfc3339),
        "last_error": n.last_error,
    })
}

async fn run_async(cmd: OutboxCommand, format: Option<Format>, clock: Clock) -> Result<(), String> {
    match cmd {
        OutboxCommand::List(a) => {
            let state =
                match a.state.as_deref() {
                    None => None,
                    Some(s) => Some(OutboxState::parse(s).ok_or_else(|| {
                        format!("--state {s}: use `queued`, `delivered` or `dead`")
                    })?),
                };
            let store = crate::keys_cmd::open(&a.store).await?;
            let listed = store
                .outbox_list(OutboxFilter {
                    state,
                    after: a.after,
                    limit: a.limit.clamp(1, 10_000),
                })
                .await
                .map_err(|e| e.to_string())?;
            if Output::json(format) {
                let list: Vec<_> = listed.iter().map(json).collect();
                let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
                println!("{text}");
                return Ok(());
            }
            for n in listed {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    n.id,
                    n.state.as_str(),
                    n.channel,
                    n.kind,
                    n.action_id,
                    n.attempts,
                    rfc3339(n.created_at),
                    n.last_error.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        OutboxCommand::Retry(a) => {
            let store = crate::keys_cmd::open(&a.store).await?;
            let n = store
                .outbox_get(a.id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("no notification {}; see `countersign outbox list`", a.id)
                })?;
            store
                .outbox_record(vec![OutboxChange::Requeue {
                    id: n.id,
                    at: clock(),
                }])
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "queued {} ({} {} of {}) again; it was {}",
                n.id,
                n.channel,
                n.kind,
                n.action_id,
                n.state.as_str()
            );
            Ok(())
        }
    }
}

/// Runs an outbox command at the time `clock` tells; returns the exit code.
pub fn run(cmd: OutboxCommand, format: Option<Format>, clock: Clock) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("countersign: {e}");
            return 2;
        }
    };
    match rt.block_on(run_async(cmd, format, clock)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign: {e}");
            2
        }
    }
}
