//! The CLI client: talks to a gateway over its HTTP API, with `COUNTERSIGN_URL` and
//! `COUNTERSIGN_TOKEN`.
//!
//! Exit codes: 0 allowed/approved (or the command succeeded), 1 denied, rejected, expired or
//! cancelled (the reason is printed), 2 an error (bad input, unreachable gateway, API error, an
//! id prefix that matches nothing), 3 still pending when `--wait` ran out, 4 an id prefix that
//! matches several actions (they are listed).
//!
//! Every call goes through `countersign_api::Client`; this module is the commands, their
//! output (JSON as the API answers, or the human views of `render.rs`) and their exit codes.
//! An action id may be a unique prefix (`ids.rs`).

use clap::{Args, Subcommand};
use countersign_api::{
    Action, Client, ClientError, Review, ReviewsQuery, SubmitRequest, Submitted, Timeouts,
};
use countersign_core::{Status, Timestamp};
use countersign_gateway::Clock;
use serde::Serialize;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::ids::{self, IdError};
use crate::output::Output;
use crate::render;

/// Connection settings shared by every client command.
#[derive(Args, Clone)]
pub struct Conn {
    /// Gateway URL.
    #[arg(
        long,
        env = "COUNTERSIGN_URL",
        default_value = "http://127.0.0.1:8760",
        global = true
    )]
    url: String,
    /// Bearer token.
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

/// Client commands.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Submit an action; with --wait, wait for the decision.
    Submit {
        /// Action name, e.g. db.export.
        action: String,
        /// Resource, e.g. postgres://prod/customers.
        resource: String,
        /// Environment, e.g. production.
        #[arg(long = "env")]
        environment: Option<String>,
        /// Parameters as a JSON object.
        #[arg(long)]
        params: Option<String>,
        /// Why the action is needed.
        #[arg(long)]
        justification: Option<String>,
        /// The human this agent acts for.
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// Idempotency key: retries return the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// If you already have this exact request under review, or approved and not yet used,
        /// answer with that action instead of opening another review.
        #[arg(long)]
        reuse_open: bool,
        /// Wait up to SECONDS for a decision, showing a live status line.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an action.
    Show {
        /// Action id.
        id: String,
        /// Wait up to SECONDS for it to leave `pending`.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List reviews you can vote on.
    Reviews {
        /// Status filter (comma-separated).
        #[arg(long, default_value = "pending")]
        status: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Approve an action.
    Approve {
        /// Action id.
        id: String,
        /// Comment.
        #[arg(long)]
        comment: Option<String>,
        /// Approve with these parameters instead (a JSON object).
        #[arg(long)]
        params: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deny an action.
    Deny {
        /// Action id.
        id: String,
        /// Reason, shown to the agent.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Ask the requester a question.
    Ask {
        /// Action id.
        id: String,
        /// The question.
        question: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Answer a reviewer's question (requester only).
    Answer {
        /// Action id.
        id: String,
        /// The answer.
        answer: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an action with its masked values (only people its policy names with `@reveal`;
    /// each reveal is recorded in the audit log).
    Reveal {
        /// Action id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel your action.
    Cancel {
        /// Action id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Redeem a grant token (once) and print what may run.
    Redeem {
        /// The grant token.
        #[arg(id = "grant_token", value_name = "TOKEN")]
        token: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Why a command failed (exit code 2).
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Id(#[from] IdError),
}

impl CommandError {
    /// 4 for an ambiguous id prefix, 2 for every other error.
    fn exit_code(&self) -> u8 {
        match self {
            CommandError::Id(IdError::Ambiguous { .. }) => 4,
            _ => 2,
        }
    }
}

/// Where output goes, and the clock human views tell relative times by.
struct Out {
    output: Output,
    clock: Clock,
}

impl Out {
    /// An answer: the API's JSON, or the human view `human` makes of it.
    fn show<T: Serialize>(&self, answer: &T, human: impl Fn(&T, Timestamp) -> String) {
        if self.output.human {
            self.output.print(&human(answer, (self.clock)()));
        } else {
            print(answer);
        }
    }
}

fn connect(conn: &Conn) -> Result<Client, CommandError> {
    let token = conn.token.as_deref().ok_or_else(|| {
        CommandError::Usage("set COUNTERSIGN_TOKEN (or --token) to your API token".into())
    })?;
    Ok(Client::new(&conn.url, token, Timeouts::default())?)
}

fn parse_json(flag: &str, text: Option<String>) -> Result<Option<Value>, CommandError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| CommandError::Usage(format!("{flag}: invalid JSON: {e}")))
    })
    .transpose()
}

/// Prints an answer as the server's JSON, pretty.
fn print(answer: &impl Serialize) {
    let text = serde_json::to_value(answer)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default();
    println!("{text}");
}

/// The last answer about the action being waited for: the submission's, then each read's.
enum Current {
    Submitted(Box<Submitted<'static>>),
    Action(Box<Action<'static>>),
}

impl Current {
    fn id(&self) -> &str {
        match self {
            Current::Submitted(s) => s.id(),
            Current::Action(a) => a.id(),
        }
    }
    fn status(&self) -> Status {
        match self {
            Current::Submitted(s) => s.status(),
            Current::Action(a) => a.status(),
        }
    }
    fn review(&self) -> Option<&Review<'static>> {
        match self {
            Current::Submitted(s) => s.review(),
            Current::Action(a) => a.review(),
        }
    }
    fn reason(&self) -> Option<&str> {
        match self {
            Current::Submitted(s) => s.decision().reason(),
            Current::Action(a) => a.decision().reason(),
        }
    }
    fn print(&self, out: &Out) {
        match self {
            Current::Submitted(s) => out.show(&**s, render::submitted),
            Current::Action(a) => out.show(&**a, render::action),
        }
    }
}

fn status_line(current: &Current, left: Duration) -> String {
    let review = current.review();
    format!(
        "{}: waiting for {} ({}/{} approvals), {}s left",
        current.status().as_str(),
        review.map(|r| r.approvers().join(", ")).unwrap_or_default(),
        review.map_or(0, Review::least_approvals),
        review.map_or(1, Review::quorum),
        left.as_secs()
    )
}

/// Exit code for a final status, printing why when it is not a go.
fn verdict(current: &Current) -> u8 {
    let status = current.status();
    match status {
        Status::Allowed | Status::Approved | Status::Succeeded => 0,
        Status::Pending | Status::NeedsClarification => 3,
        _ => {
            let reason = current
                .review()
                .and_then(Review::denial_comment)
                .or_else(|| current.reason())
                .unwrap_or("no reason given");
            eprintln!("countersign: action {}: {reason}", status.as_str());
            1
        }
    }
}

async fn wait_for(
    client: &Client,
    first: Current,
    secs: u64,
    out: &Out,
) -> Result<u8, CommandError> {
    let id = first.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let live = std::io::stderr().is_terminal();
    let mut current = first;
    let mut last_line = String::new();
    while current.status().is_open_review() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = status_line(&current, left);
        if live {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if line.split(',').next() != last_line.split(',').next() {
            eprintln!("{line}");
        }
        last_line = line;
        if left.is_zero() {
            break;
        }
        let step = left.min(Duration::from_secs(10));
        current = Current::Action(Box::new(client.wait(&id, step).await?));
    }
    if live {
        eprintln!();
    }
    current.print(out);
    Ok(verdict(&current))
}

async fn dispatch(cmd: ClientCommand, out: &Out) -> Result<u8, CommandError> {
    match cmd {
        ClientCommand::Submit {
            action,
            resource,
            environment,
            params,
            justification,
            on_behalf_of,
            idempotency_key,
            reuse_open,
            wait,
            conn,
        } => {
            let client = connect(&conn)?;
            let body = SubmitRequest {
                action,
                resource,
                environment,
                params: parse_json("--params", params)?,
                justification,
                on_behalf_of,
                reuse_open: reuse_open.then_some(true),
            };
            let answer = client.submit(&body, idempotency_key.as_deref()).await?;
            let current = Current::Submitted(Box::new(answer.submitted));
            match wait {
                Some(secs) => wait_for(&client, current, secs, out).await,
                None => {
                    current.print(out);
                    Ok(if current.status() == Status::Pending {
                        0
                    } else {
                        verdict(&current)
                    })
                }
            }
        }
        ClientCommand::Show { id, wait, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            let current = Current::Action(Box::new(client.get(&id).await?));
            match wait {
                Some(secs) => wait_for(&client, current, secs, out).await,
                None => {
                    current.print(out);
                    Ok(0)
                }
            }
        }
        ClientCommand::Reviews { status, conn } => {
            let query = ReviewsQuery {
                status: Some(status),
                ..ReviewsQuery::default()
            };
            out.show(&connect(&conn)?.reviews(&query).await?, render::reviews);
            Ok(0)
        }
        ClientCommand::Approve {
            id,
            comment,
            params,
            conn,
        } => {
            let client = connect(&conn)?;
            let params = parse_json("--params", params)?;
            let id = ids::resolve(&client, &id).await?;
            let voted = match params {
                Some(p) => client.modify(&id, p, comment).await?,
                None => client.approve(&id, comment).await?,
            };
            out.show(&voted, render::action);
            Ok(0)
        }
        ClientCommand::Deny { id, comment, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            out.show(&client.deny(&id, comment).await?, render::action);
            Ok(0)
        }
        ClientCommand::Ask { id, question, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            out.show(&client.clarify(&id, question).await?, render::action);
            Ok(0)
        }
        ClientCommand::Answer { id, answer, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            out.show(&client.answer(&id, answer).await?, render::action);
            Ok(0)
        }
        ClientCommand::Reveal { id, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            out.show(&client.reveal(&id).await?, render::action);
            Ok(0)
        }
        ClientCommand::Cancel { id, conn } => {
            let client = connect(&conn)?;
            let id = ids::resolve(&client, &id).await?;
            out.show(&client.cancel(&id).await?, render::action);
            Ok(0)
        }
        ClientCommand::Redeem { token, conn } => {
            // What may run, as JSON in both formats: it is read by the program that runs it.
            print(&connect(&conn)?.redeem(&token).await?);
            Ok(0)
        }
    }
}

/// Runs a client command, printing as `output` says, and returns the exit code.
pub async fn run(cmd: ClientCommand, output: Output, clock: Clock) -> u8 {
    let out = Out { output, clock };
    match dispatch(cmd, &out).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("countersign: {e}");
            e.exit_code()
        }
    }
}
