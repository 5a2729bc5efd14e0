//! The Streamable HTTP front (`countersign mcp http`) against adversarial clients and servers,
//! driven with raw HTTP where the SDK cannot misbehave on purpose: a client that drops a held
//! call's stream or cancels it, malformed / batched / non-2.0 / oversized bodies, missing or
//! bad tokens, and an upstream that is dead, crashes or hangs. The upstream is the real
//! `server-everything` in Streamable HTTP mode (or a bare TCP listener that never answers).

use crate::mcp::{
    action_status, actions_on, audit_types, free_port, gateway, http_front, http_proxy,
    http_server_everything, open_review, wait_listening,
};
use crate::support::{client, Gw};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;

const PROTOCOL: &str = "2025-06-18";

/// A raw Streamable HTTP client of the proxy, as one agent (`token`) in one MCP session.
struct Agent {
    url: String,
    token: String,
    session: Option<String>,
    http: reqwest::Client,
}

/// Reads SSE events off a response as they come.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    /// The next event's JSON-RPC message; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..i + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("the proxy's SSE stream went silent");
            match chunk {
                Ok(Some(c)) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }

    /// Every remaining message, until the stream ends.
    async fn rest(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.next().await {
            out.push(v);
        }
        out
    }
}

impl Agent {
    fn new(url: &str, token: &str) -> Agent {
        Agent {
            url: url.to_string(),
            token: token.to_string(),
            session: None,
            http: client(),
        }
    }

    /// A POST of `body` with the headers a Streamable HTTP client sends.
    fn request(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL);
        }
        req
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        tokio::time::timeout(Duration::from_secs(30), self.request(body).send())
            .await
            .expect("the proxy did not answer")
            .unwrap()
    }

    /// Posts `msg`; returns the status and every JSON-RPC message of the answer (JSON or SSE).
    async fn rpc(&self, msg: &Value) -> (StatusCode, Vec<Value>) {
        let resp = self.post(msg.to_string()).await;
        messages(resp).await
    }

    /// `initialize` then `notifications/initialized`; keeps the session id.
    async fn initialize(&mut self) {
        let (s, msgs) = self
            .rpc_keeping_session(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "raw-http", "version": "0"}}}))
            .await;
        assert_eq!(s, StatusCode::OK, "{msgs:?}");
        assert!(msgs[0]["result"]["protocolVersion"].is_string(), "{msgs:?}");
        let (s, _) = self
            .rpc(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }

    async fn rpc_keeping_session(&mut self, msg: &Value) -> (StatusCode, Vec<Value>) {
        let resp = self.post(msg.to_string()).await;
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.session = Some(s.to_str().unwrap().to_string());
        }
        messages(resp).await
    }

    /// Posts a `tools/call` and returns its SSE stream (asserting the proxy answers with one).
    async fn call(&self, id: Value, tool: &str, args: Value, progress: bool) -> Events {
        let mut params = json!({"name": tool, "arguments": args});
        if progress {
            params["_meta"] = json!({"progressToken": format!("progress-{id}")});
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let resp = self.post(msg.to_string()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            content_type(&resp).starts_with("text/event-stream"),
            "{:?}",
            resp.headers()
        );
        Events {
            resp,
            buf: String::new(),
        }
    }
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The status and JSON-RPC messages of a whole answer (one JSON body or an SSE stream).
async fn messages(resp: reqwest::Response) -> (StatusCode, Vec<Value>) {
    let status = resp.status();
    if content_type(&resp).starts_with("text/event-stream") {
        let events = Events {
            resp,
            buf: String::new(),
        };
        return (status, events.rest().await);
    }
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the proxy's answer went silent")
        .unwrap();
    if text.trim().is_empty() {
        return (status, vec![]);
    }
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, vec![v])
}

/// How many entries the audit trail holds.
async fn audit_len(gw: &Gw) -> usize {
    let (_, v) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    v["entries"].as_array().unwrap().len()
}

async fn wait_status(gw: &Gw, id: &str, want: &str) {
    for _ in 0..200 {
        if action_status(gw, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(action_status(gw, id).await, want, "action {id}");
}

/// The one action on `mcp://everything/<tool>`, once its status is `want`.
async fn only_action(gw: &Gw, tool: &str, want: &str) -> Value {
    let resource = format!("mcp://everything/{tool}");
    for _ in 0..200 {
        let actions = actions_on(gw, &resource).await;
        assert!(actions.len() <= 1, "{actions:?}");
        if actions.first().is_some_and(|a| a["status"] == want) {
            return actions[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no action on {resource} reached `{want}`");
}

/// A TCP relay to `port` on loopback counting the bytes sent towards it: proves what the proxy
/// forwarded upstream. Returns the relay's port and the count.
async fn counting_relay(port: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let count = count.clone();
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = ri.read(&mut buf).await {
                    if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    count.fetch_add(n, Ordering::SeqCst);
                }
                let _ = wo.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ro, &mut wi).await;
                let _ = wi.shutdown().await;
            });
        }
    });
    (relay, sent)
}

/// SSE headers, then nothing.
const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// An "MCP server" that accepts connections and reads requests but answers each request's head
/// only with `answer` (nothing at all when it is empty), and never closes.
async fn fake_upstream(answer: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if !answer.is_empty() && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        seen.clear();
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Sends SIGTERM to `proxy` and asserts it exits (cleanly) within `limit`.
async fn terminate(proxy: &mut Child, limit: Duration) {
    let pid = proxy.id().expect("the proxy is running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(limit, proxy.wait())
        .await
        .expect("the proxy did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn mcp_http_dropping_a_held_calls_stream_cancels_its_review() {
    let gw = gateway().await;
    let mut front = http_front(&gw).await;
    let mut agent = Agent::new(&front.url, "tok-bot");
    agent.initialize().await;

    // No progress token: nothing is written while held, the disconnect alone must be noticed.
    let held = agent
        .call(json!(7), "get-sum", json!({"a": 1, "b": 1}), false)
        .await;
    let first = open_review(&gw).await["id"].as_str().unwrap().to_string();
    drop(held);
    wait_status(&gw, &first, "cancelled").await;
    assert_eq!(
        audit_types(&gw, &first).await,
        ["submitted", "review_opened", "cancelled"]
    );

    // With progress notifications flowing, the same.
    let mut held = agent
        .call(json!("eight"), "get-sum", json!({"a": 2, "b": 2}), true)
        .await;
    let note = held.next().await.unwrap();
    assert_eq!(note["method"], "notifications/progress", "{note}");
    let second = open_review(&gw).await["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    drop(held);
    wait_status(&gw, &second, "cancelled").await;
    assert_eq!(
        audit_types(&gw, &second).await,
        ["submitted", "review_opened", "cancelled"]
    );

    // The proxy and the session carry on.
    let echo = agent
        .call(json!(9), "echo", json!({"message": "still here"}), false)
        .await
        .rest()
        .await;
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0]["id"], 9);
    assert_eq!(echo[0]["result"]["content"][0]["text"], "Echo: still here");

    // A held call when the proxy is told to stop: its review is cancelled, the proxy exits.
    let held = agent
        .call(json!(10), "get-sum", json!({"a": 3, "b": 3}), false)
        .await;
    let third = open_review(&gw).await["id"].as_str().unwrap().to_string();
    terminate(&mut front.proxy, Duration::from_secs(15)).await;
    let rest = held.rest().await;
    assert!(rest.iter().all(|m| m.get("id").is_none()), "{rest:?}");
    wait_status(&gw, &third, "cancelled").await;
}

#[tokio::test]
async fn mcp_http_notifications_cancelled_cancels_a_held_calls_review() {
    let gw = gateway().await;
    let front = http_front(&gw).await;
    let mut agent = Agent::new(&front.url, "tok-bot");
    agent.initialize().await;
    let mut held = agent
        .call(json!("c-1"), "get-sum", json!({"a": 5, "b": 5}), true)
        .await;
    let note = held.next().await.unwrap();
    assert_eq!(note["method"], "notifications/progress", "{note}");
    let review = open_review(&gw).await["id"].as_str().unwrap().to_string();

    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": "c-1", "reason": "user pressed stop"}});
    // Another agent that learned the session id cannot cancel bot's call.
    let mut other = Agent::new(&front.url, "tok-ci");
    other.session = agent.session.clone();
    let _ = other.rpc(&cancel).await;
    // Nor can bot from another session (or none).
    let mut elsewhere = Agent::new(&front.url, "tok-bot");
    elsewhere.session = Some("not-this-session".into());
    let _ = elsewhere.rpc(&cancel).await;
    let _ = Agent::new(&front.url, "tok-bot").rpc(&cancel).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(action_status(&gw, &review).await, "pending");

    let (s, msgs) = agent.rpc(&cancel).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{msgs:?}");
    // The held POST ends without an answer (the request was cancelled).
    let rest = tokio::time::timeout(Duration::from_secs(10), held.rest())
        .await
        .expect("the held POST did not end after its cancellation");
    assert!(
        rest.iter().all(|m| m["method"] == "notifications/progress"),
        "{rest:?}"
    );
    wait_status(&gw, &review, "cancelled").await;
    assert_eq!(
        audit_types(&gw, &review).await,
        ["submitted", "review_opened", "cancelled"]
    );
    // Cancelling it again is relayed to the server like any unknown request id, harmlessly.
    let (s, _) = agent.rpc(&cancel).await;
    assert!(s.is_success(), "{s}");
}

#[tokio::test]
async fn mcp_http_malformed_batched_non_2_0_and_oversized_posts_get_json_rpc_errors() {
    let gw = gateway().await;
    let (_server, up) = http_server_everything().await;
    let (relay, forwarded) = counting_relay(up).await;
    let (_proxy, url) = http_proxy(
        &gw,
        &format!("http://127.0.0.1:{relay}/mcp"),
        &["--max-message", "2000"],
    )
    .await;
    let mut agent = Agent::new(&url, "tok-bot");
    agent.initialize().await;
    let entries = audit_len(&gw).await;
    let before = forwarded.load(Ordering::SeqCst);

    let big = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"message": "x".repeat(5000)}}});
    let cases: Vec<(String, u16, i64, Value)> = vec![
        ("{not json".into(), 400, -32700, Value::Null),
        (
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "get-env", "arguments": {}}}])
            .to_string(),
            400,
            -32600,
            Value::Null,
        ),
        (
            json!({"id": 2, "method": "tools/call", "params": {"name": "get-env"}}).to_string(),
            400,
            -32600,
            json!(2),
        ),
        (
            json!({"jsonrpc": "1.0", "id": 3, "method": "ping"}).to_string(),
            400,
            -32600,
            json!(3),
        ),
        (
            json!({"jsonrpc": "2.0"}).to_string(),
            400,
            -32600,
            Value::Null,
        ),
        (big.to_string(), 413, -32600, Value::Null),
    ];
    for (body, status, code, id) in cases {
        let resp = agent.post(body.clone()).await;
        assert_eq!(resp.status().as_u16(), status, "{body:.80}");
        assert_eq!(content_type(&resp), "application/json", "{body:.80}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        assert_eq!(v["error"]["code"], code, "{body:.80}: {v}");
        assert_eq!(v["id"], id, "{body:.80}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // A body streamed without a length is cut off at the limit just the same.
    let status = chunked_post(&url, agent.session.as_deref().unwrap(), 3, 1500).await;
    assert_eq!(status, 413);

    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        before,
        "nothing reached the server"
    );
    assert_eq!(audit_len(&gw).await, entries, "nothing was recorded");
    assert!(actions_on(&gw, "mcp://everything/get-env").await.is_empty());
    assert!(actions_on(&gw, "mcp://everything/echo").await.is_empty());

    // The session carries on.
    let echo = agent
        .call(json!(6), "echo", json!({"message": "still here"}), false)
        .await
        .rest()
        .await;
    assert_eq!(echo[0]["result"]["content"][0]["text"], "Echo: still here");
    assert!(forwarded.load(Ordering::SeqCst) > before);
    only_action(&gw, "echo", "succeeded").await;
}

#[tokio::test]
async fn mcp_http_hostile_tool_call_shapes_never_reach_the_server() {
    let gw = gateway().await;
    let (_server, up) = http_server_everything().await;
    let (relay, forwarded) = counting_relay(up).await;
    let (_proxy, url) = http_proxy(&gw, &format!("http://127.0.0.1:{relay}/mcp"), &[]).await;
    let mut agent = Agent::new(&url, "tok-bot");
    agent.initialize().await;
    let before = forwarded.load(Ordering::SeqCst);
    let call = r#""params":{"name":"get-env","arguments":{}}"#;
    let cases: Vec<(String, u16, i64, Value)> = vec![
        (format!(r#"{{"jsonrpc":"2.0","method":"tools/call",{call}}}"#), 400, -32600, Value::Null),
        (format!(r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call",{call}}}"#), 400, -32600, Value::Null),
        (format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","method":"ping",{call}}}"#), 400, -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-env","name":"echo"}}"#.into(),
            400,
            -32700,
            Value::Null,
        ),
        (format!(r#"{{"jsonrpc":"2.0","id":5,"method":"TOOLS/CALL",{call}}}"#), 200, -32601, json!(5)),
        (format!(r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call ",{call}}}"#), 200, -32601, json!(6)),
    ];
    for (body, status, code, id) in cases {
        let resp = agent.post(body.clone()).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert_eq!(v["id"], id, "{body}: {v}");
    }
    // 2026-07-28's routing headers must agree with the body the proxy decides on.
    let headed = [
        (
            "tools/call",
            "get-env",
            r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#,
        ),
        (
            "tools/call",
            "get-env",
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        ),
    ];
    for (m, name, body) in headed {
        let resp = agent
            .request(body)
            .header("mcp-method", m)
            .header("mcp-name", name)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32020, "{body}: {v}");
    }
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        before,
        "nothing reached the server"
    );
    assert!(actions_on(&gw, "mcp://everything/get-env").await.is_empty());
    assert!(actions_on(&gw, "mcp://everything/echo").await.is_empty());
    // The session carries on.
    let echo = agent
        .call(json!(7), "echo", json!({"message": "still here"}), false)
        .await
        .rest()
        .await;
    assert_eq!(echo[0]["result"]["content"][0]["text"], "Echo: still here");
}

#[tokio::test]
async fn mcp_http_a_servers_answer_to_a_held_call_never_reaches_the_agent() {
    let gw = gateway().await;
    // Every request is answered with a forged result for request 9 (a call the proxy holds),
    // then with the answer to request 1.
    let body = concat!(
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":",
        "[{\"type\":\"text\",\"text\":\"forged\"}]}}\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    );
    let answer = format!("{SSE_HEAD}{:x}\r\n{body}\r\n", body.len());
    let up = fake_upstream(Box::leak(answer.into_boxed_str())).await;
    let (_proxy, url) = http_proxy(&gw, &format!("http://127.0.0.1:{up}/mcp"), &[]).await;
    let agent = Agent::new(&url, "tok-bot");
    let mut held = agent
        .call(json!(9), "get-sum", json!({"a": 1, "b": 2}), false)
        .await;
    let review = open_review(&gw).await["id"].as_str().unwrap().to_string();
    let resp = agent
        .post(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .await;
    let mut ping = Events {
        resp,
        buf: String::new(),
    };
    let first = ping.next().await.expect("the ping's answer");
    assert_eq!(first["id"], 1, "only the ping's answer arrives: {first}");
    // The held call is still held: cancelling it withdraws its review, and no result came.
    drop(ping);
    agent
        .post(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 9}})
            .to_string(),
        )
        .await;
    wait_status(&gw, &review, "cancelled").await;
    let rest = tokio::time::timeout(Duration::from_secs(5), held.next()).await;
    if let Ok(Some(v)) = rest {
        assert_ne!(v["result"]["content"][0]["text"], "forged", "{v}");
    }
}

/// POSTs `chunks` chunks of `size` spaces with `Transfer-Encoding: chunked` (no length given) as
/// bot in `session`; returns the status code.
async fn chunked_post(url: &str, session: &str, chunks: usize, size: usize) -> u16 {
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer tok-bot\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         mcp-session-id: {session}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("no answer to a chunked POST")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer).to_string();
    line.split(' ').nth(1).unwrap_or("0").parse().unwrap()
}

#[tokio::test]
async fn mcp_http_missing_or_bad_tokens_are_refused_and_nothing_is_recorded() {
    let gw = gateway().await;
    let (_server, up) = http_server_everything().await;
    let (relay, forwarded) = counting_relay(up).await;
    let (_proxy, url) = http_proxy(&gw, &format!("http://127.0.0.1:{relay}/mcp"), &[]).await;
    let mut agent = Agent::new(&url, "tok-bot");
    agent.initialize().await;
    let entries = audit_len(&gw).await;
    let before = forwarded.load(Ordering::SeqCst);

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "get-sum", "arguments": {"a": 1, "b": 2}}})
    .to_string();
    let http = client();
    let session = agent.session.clone().unwrap();
    let attempts: Vec<Option<&str>> = vec![
        None,
        Some("Bearer tok-nobody"),
        Some("Bearer "),
        Some("Basic dG9rLWJvdDo="),
        Some("tok-bot"),
    ];
    for auth in attempts {
        for method in [reqwest::Method::POST, reqwest::Method::GET] {
            let mut req = http
                .request(method.clone(), &url)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .header("mcp-session-id", &session)
                .body(call.clone());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        before,
        "nothing reached the server"
    );
    assert_eq!(audit_len(&gw).await, entries, "nothing was recorded");
    assert!(actions_on(&gw, "mcp://everything/get-sum").await.is_empty());
}

#[tokio::test]
async fn mcp_http_a_server_that_dies_or_fails_gives_errors_and_failed_results() {
    let gw = gateway().await;
    let mut front = http_front(&gw).await;
    let mut agent = Agent::new(&front.url, "tok-bot");
    agent.initialize().await;
    front.server.kill().await.unwrap();

    let started = Instant::now();
    let (s, msgs) = agent
        .rpc(&json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{msgs:?}");
    assert_eq!(msgs[0]["error"]["code"], -32603, "{msgs:?}");
    let text = msgs[0]["error"]["message"].as_str().unwrap();
    assert!(text.contains("unreachable"), "{text}");

    let answer = agent
        .call(json!(2), "echo", json!({"message": "anyone?"}), false)
        .await
        .rest()
        .await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["id"], 2);
    assert_eq!(answer[0]["error"]["code"], -32603, "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let echo = only_action(&gw, "echo", "failed").await;
    let id = echo["id"].as_str().unwrap();
    let types = audit_types(&gw, id).await;
    assert_eq!(types.first().map(String::as_str), Some("submitted"));
    assert_eq!(types.last().map(String::as_str), Some("result_reported"));

    // An approved call whose server died while it was held fails the same way.
    let held = agent
        .call(json!(3), "get-sum", json!({"a": 1, "b": 2}), false)
        .await;
    let review = open_review(&gw).await["id"].as_str().unwrap().to_string();
    let (s, _) = gw
        .vote("alice", &review, json!({"verdict": "approve"}))
        .await;
    assert!(s.is_success());
    let answer = held.rest().await;
    assert_eq!(
        answer.last().unwrap()["error"]["code"],
        -32603,
        "{answer:?}"
    );
    wait_status(&gw, &review, "failed").await;
    assert!(audit_types(&gw, &review)
        .await
        .ends_with(&["grant_redeemed".to_string(), "result_reported".to_string()]));

    // A server that answers with an HTML error page: an error, not a success, for the call.
    let page = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 24\r\n\r\n\
                <html>bad gateway</html>";
    let up = fake_upstream(page).await;
    let (mut proxy, url) = http_proxy(&gw, &format!("http://127.0.0.1:{up}/mcp"), &[]).await;
    let agent = Agent::new(&url, "tok-bot");
    let answer = agent
        .call(json!(4), "echo", json!({"message": "html"}), false)
        .await
        .rest()
        .await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["id"], 4, "{answer:?}");
    assert_eq!(answer[0]["error"]["code"], -32603, "{answer:?}");
    let text = answer[0]["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("502") && text.contains("bad gateway"),
        "{text}"
    );
    let mut failed = None;
    for _ in 0..200 {
        failed = actions_on(&gw, "mcp://everything/echo")
            .await
            .into_iter()
            .find(|a| a["params"]["message"] == "html" && a["status"] != "allowed");
        if failed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = failed.expect("the call's result is reported");
    assert_eq!(failed["status"], "failed", "{failed}");
    terminate(&mut proxy, Duration::from_secs(15)).await;

    // Nothing listening at all, from the start.
    let dead = free_port();
    let (mut proxy, url) = http_proxy(&gw, &format!("http://127.0.0.1:{dead}/mcp"), &[]).await;
    let mut agent = Agent::new(&url, "tok-bot");
    let (s, msgs) = agent
        .rpc_keeping_session(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "raw-http", "version": "0"}}}))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{msgs:?}");
    assert_eq!(msgs[0]["error"]["code"], -32603);
    terminate(&mut proxy, Duration::from_secs(15)).await;
    terminate(&mut front.proxy, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn mcp_http_a_server_that_hangs_times_out_with_errors_and_no_hung_process() {
    let gw = gateway().await;
    for headers in [false, true] {
        let up = fake_upstream(if headers { SSE_HEAD } else { "" }).await;
        wait_listening(up).await;
        let (mut proxy, url) = http_proxy(
            &gw,
            &format!("http://127.0.0.1:{up}/mcp"),
            &["--server-timeout", "0.5"],
        )
        .await;
        let agent = Agent::new(&url, "tok-bot");
        let started = Instant::now();
        let (s, msgs) = agent
            .rpc(&json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}))
            .await;
        let last = msgs.last().cloned().unwrap_or(Value::Null);
        if headers {
            // The server's stream had begun: the error ends it.
            assert_eq!(s, StatusCode::OK, "{msgs:?}");
            assert_eq!(last["id"], "p", "{msgs:?}");
        } else {
            assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{msgs:?}");
        }
        assert_eq!(last["error"]["code"], -32603, "{msgs:?}");
        let text = last["error"]["message"].as_str().unwrap();
        assert!(text.contains("did not answer"), "{text}");

        let tag = format!("hang-{headers}");
        let answer = agent
            .call(json!(2), "echo", json!({"message": tag}), false)
            .await
            .rest()
            .await;
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0]["error"]["code"], -32603, "{answer:?}");
        assert!(
            answer[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not answer"),
            "{answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let resource = "mcp://everything/echo";
        let mut failed = None;
        for _ in 0..200 {
            failed = actions_on(&gw, resource)
                .await
                .into_iter()
                .find(|a| a["params"]["message"] == tag.as_str() && a["status"] == "failed");
            if failed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let failed = failed.expect("the timed-out call is recorded as failed");
        let types = audit_types(&gw, failed["id"].as_str().unwrap()).await;
        assert_eq!(types.last().map(String::as_str), Some("result_reported"));
        // Connections to the silent server are still open: the proxy exits anyway.
        terminate(&mut proxy, Duration::from_secs(15)).await;
    }
}

/// A gateway with the MCP policies where `erin` (group `sec`) manages API keys.
async fn gateway_with_key_admins() -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let config_path = crate::support::write_config(dir.path(), "admin_group = \"sec\"");
    std::fs::write(
        dir.path().join("policies/mcp.cedar"),
        crate::mcp::MCP_POLICIES,
    )
    .unwrap();
    let (url, server) = crate::support::serve(&config_path).await;
    Gw::from_parts(url, client(), dir, server)
}

#[tokio::test]
async fn mcp_http_a_revoked_key_is_refused_on_its_next_request() {
    let gw = gateway_with_key_admins().await;
    let front = http_front(&gw).await;
    let create = json!({"identity": "keybot", "kind": "agent", "groups": ["automation"]});
    let (s, created) = gw.post("erin", "/v1/admin/api-keys", create).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().unwrap();
    let mut agent = Agent::new(&front.url, secret);
    agent.initialize().await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (s, msgs) = agent.rpc(&list).await;
    assert_eq!(s, StatusCode::OK, "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m["result"]["tools"].is_array()),
        "{msgs:?}"
    );

    let revoke = format!(
        "/v1/admin/api-keys/{}/revoke",
        created["id"].as_str().unwrap()
    );
    let (s, r) = gw.post("erin", &revoke, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Not only `tools/call`: nothing of a revoked agent's reaches the server any more.
    let (s, msgs) = agent.rpc(&list).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{msgs:?}");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(agent.rpc(&ping).await.0, StatusCode::UNAUTHORIZED);
}
