//! The CLI client: talks to a gateway over its HTTP API, with `COUNTERSIGN_URL` and
//! `COUNTERSIGN_TOKEN`.
//!
//! Exit codes: 0 allowed/approved (or the command succeeded), 1 denied, rejected, expired or
//! cancelled (the reason is printed), 2 an error (bad input, unreachable gateway, API error),
//! 3 still pending when `--wait` ran out.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

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
        token: String,
        #[command(flatten)]
        conn: Conn,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

#[derive(Debug)]
enum ClientError {
    Usage(String),
    Transport(String),
    Api { code: String, message: String },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Usage(m) | ClientError::Transport(m) => f.write_str(m),
            ClientError::Api { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

impl Client {
    fn new(conn: &Conn) -> Result<Client, ClientError> {
        let token = conn.token.clone().ok_or_else(|| {
            ClientError::Usage("set COUNTERSIGN_TOKEN (or --token) to your API token".into())
        })?;
        // One TLS crypto library for the whole build: ring, installed here for rustls.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(75))
            // Below the gateway's default header_read_timeout (10 s), which also closes idle
            // keep-alive connections: a pooled connection is never reused as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Transport(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            url: conn.url.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.url)))?;
        let status = resp.status();
        let value: Value = resp
            .json()
            .await
            .map_err(|e| ClientError::Transport(format!("unreadable response ({status}): {e}")))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(ClientError::Api {
                code: value["error"]["code"]
                    .as_str()
                    .unwrap_or("error")
                    .to_string(),
                message: value["error"]["message"].as_str().unwrap_or("").to_string(),
            })
        }
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, path, Some(body), &[])
            .await
    }
}

fn parse_json(flag: &str, text: Option<String>) -> Result<Option<Value>, ClientError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| ClientError::Usage(format!("{flag}: invalid JSON: {e}")))
    })
    .transpose()
}

fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn status_line(v: &Value, left: Duration) -> String {
    let status = v["status"].as_str().unwrap_or("?");
    let review = &v["review"];
    let got: u64 = review["requirements"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|q| q["approvals"].as_u64())
                .min()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let approvers = review["approvers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "{status}: waiting for {approvers} ({got}/{} approvals), {}s left",
        review["quorum"].as_u64().unwrap_or(1),
        left.as_secs()
    )
}

/// Exit code for a final status, printing why when it is not a go.
fn verdict(v: &Value) -> u8 {
    let status = v["status"].as_str().unwrap_or("");
    match status {
        "allowed" | "approved" | "succeeded" => 0,
        "pending" | "needs_clarification" => 3,
        _ => {
            let reason = v["review"]["votes"]
                .as_array()
                .and_then(|votes| {
                    votes
                        .iter()
                        .rev()
                        .find(|x| x["verdict"] == "deny")
                        .and_then(|x| x["comment"].as_str())
                })
                .or_else(|| v["decision"]["reason"].as_str())
                .unwrap_or("no reason given");
            eprintln!("countersign: action {status}: {reason}");
            1
        }
    }
}

async fn wait_for(client: &Client, first: Value, secs: u64) -> Result<u8, ClientError> {
    let id = first["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let live = std::io::stderr().is_terminal();
    let mut current = first;
    let mut last_line = String::new();
    while matches!(
        current["status"].as_str(),
        Some("pending" | "needs_clarification")
    ) {
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
        let step = left.as_secs_f64().min(10.0);
        current = client
            .get(&format!("/v1/actions/{id}?wait={step:.3}"))
            .await?;
    }
    if live {
        eprintln!();
    }
    print(&current);
    Ok(verdict(&current))
}

async fn dispatch(cmd: ClientCommand) -> Result<u8, ClientError> {
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
            let client = Client::new(&conn)?;
            let mut body = json!({
                "action": action,
                "resource": resource,
                "environment": environment,
                "params": parse_json("--params", params)?,
                "justification": justification,
                "on_behalf_of": on_behalf_of,
            });
            if reuse_open {
                body["reuse_open"] = Value::Bool(true);
            }
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| vec![("Idempotency-Key", k)])
                .unwrap_or_default();
            let v = client
                .call(reqwest::Method::POST, "/v1/actions", Some(body), &headers)
                .await?;
            match wait {
                Some(secs) => wait_for(&client, v, secs).await,
                None => {
                    print(&v);
                    Ok(if v["status"] == "pending" {
                        0
                    } else {
                        verdict(&v)
                    })
                }
            }
        }
        ClientCommand::Show { id, wait, conn } => {
            let client = Client::new(&conn)?;
            let v = client.get(&format!("/v1/actions/{id}")).await?;
            match wait {
                Some(secs) => wait_for(&client, v, secs).await,
                None => {
                    print(&v);
                    Ok(0)
                }
            }
        }
        ClientCommand::Reviews { status, conn } => {
            let client = Client::new(&conn)?;
            let v = client.get(&format!("/v1/reviews?status={status}")).await?;
            print(&v);
            Ok(0)
        }
        ClientCommand::Approve {
            id,
            comment,
            params,
            conn,
        } => {
            let client = Client::new(&conn)?;
            let body = match parse_json("--params", params)? {
                Some(p) => json!({"verdict": "modify", "params": p, "comment": comment}),
                None => json!({"verdict": "approve", "comment": comment}),
            };
            print(
                &client
                    .post(&format!("/v1/reviews/{id}/votes"), body)
                    .await?,
            );
            Ok(0)
        }
        ClientCommand::Deny { id, comment, conn } => {
            let client = Client::new(&conn)?;
            let body = json!({"verdict": "deny", "comment": comment});
            print(
                &client
                    .post(&format!("/v1/reviews/{id}/votes"), body)
                    .await?,
            );
            Ok(0)
        }
        ClientCommand::Ask { id, question, conn } => {
            let client = Client::new(&conn)?;
            let body = json!({"verdict": "clarify", "question": question});
            print(
                &client
                    .post(&format!("/v1/reviews/{id}/votes"), body)
                    .await?,
            );
            Ok(0)
        }
        ClientCommand::Answer { id, answer, conn } => {
            let client = Client::new(&conn)?;
            let body = json!({ "answer": answer });
            print(
                &client
                    .post(&format!("/v1/actions/{id}/answer"), body)
                    .await?,
            );
            Ok(0)
        }
        ClientCommand::Cancel { id, conn } => {
            let client = Client::new(&conn)?;
            print(
                &client
                    .post(&format!("/v1/actions/{id}/cancel"), json!({}))
                    .await?,
            );
            Ok(0)
        }
        ClientCommand::Redeem { token, conn } => {
            let client = Client::new(&conn)?;
            print(
                &client
                    .post("/v1/grants/redeem", json!({ "token": token }))
                    .await?,
            );
            Ok(0)
        }
    }
}

/// Runs a client command and returns the exit code.
pub async fn run(cmd: ClientCommand) -> u8 {
    match dispatch(cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("countersign: {e}");
            2
        }
    }
}
