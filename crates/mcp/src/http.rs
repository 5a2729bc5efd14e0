//! The Streamable HTTP front: listens where the agent expects its MCP server, authenticates the
//! agent by its bearer token (which decides the identity of every call), and relays each HTTP
//! request to the upstream server, except that a `tools/call` POST is answered on an SSE stream
//! of our own: progress notifications while held, then the upstream's response to the approved
//! call (or the `isError` result). The agent's token never reaches the upstream server.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_gateway::Gateway;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::calls::{Calls, Verdict};
use crate::gate::{Embedded, Remote};
use crate::jsonrpc;
use crate::session::Options;

/// Where the agents' decisions come from.
pub enum Gates {
    /// A gateway in this process: tokens are checked against its identities.
    Embedded(Arc<Gateway>),
    /// A gateway over HTTP at this URL: tokens are checked by the gateway.
    Remote(String),
}

/// The proxy's shared state.
pub struct HttpProxy {
    upstream: String,
    client: reqwest::Client,
    gates: Gates,
    opts: Options,
    max_message: usize,
    agents: Mutex<HashMap<[u8; 32], Arc<Calls>>>,
    held: Mutex<HashMap<String, Arc<watch::Sender<bool>>>>,
    /// `tools/call`s being decided, forwarded or reported.
    active: AtomicUsize,
}

/// How long a stopping proxy waits for open streams, held calls' cancellations and result
/// reports.
const GRACE: Duration = Duration::from_secs(10);

/// Rewrites one JSON-RPC message (its text) of an upstream answer.
type Hook = Box<dyn FnMut(&str) -> String + Send>;

struct RxStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for RxStream {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        jsonrpc::error(id, code, text),
    )
        .into_response()
}

fn timed_out(limit: Duration) -> String {
    format!("the MCP server did not answer within {limit:?}")
}

/// A held call's key for `notifications/cancelled`: the agent (its token's hash), the MCP
/// session and the request id, so nobody else can cancel it.
fn held_key(token: &str, headers: &HeaderMap, id: &Value) -> String {
    let agent = hex::encode(Sha256::digest(token.as_bytes()));
    format!("{agent}/{:?}/{id}", headers.get("mcp-session-id"))
}

fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

/// Hop-by-hop and credential headers are not relayed.
fn relayed(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if !matches!(
            k.as_str(),
            "authorization" | "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Splits an SSE byte stream into events and hands each event's data to `hook`.
#[derive(Default)]
struct SseSplitter {
    buf: Vec<u8>,
    fields: Vec<String>,
    data: Vec<String>,
}

impl SseSplitter {
    fn feed(&mut self, chunk: &[u8], hook: &mut dyn FnMut(&str) -> String) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                for f in self.fields.drain(..) {
                    out.extend_from_slice(f.as_bytes());
                    out.push(b'\n');
                }
                if !self.data.is_empty() {
                    let data = hook(&self.data.join("\n"));
                    self.data.clear();
                    for l in data.split('\n') {
                        out.extend_from_slice(format!("data: {l}\n").as_bytes());
                    }
                }
                out.push(b'\n');
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            } else {
                self.fields.push(line.to_string());
            }
        }
        out
    }
}

impl HttpProxy {
    /// A proxy in front of `upstream` (the server's MCP endpoint URL).
    pub fn new(upstream: String, gates: Gates, opts: Options, max_message: usize) -> Arc<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(HttpProxy {
            upstream,
            client: reqwest::Client::new(),
            gates,
            opts,
            max_message,
            agents: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
        })
    }

    /// Serves until `shutdown` resolves. Then held calls are cancelled (their reviews too),
    /// and open streams, cancellations and result reports get [`GRACE`] each to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        let (stopping, stopped) = oneshot::channel::<()>();
        let me = self.clone();
        let signal = async move {
            shutdown.await;
            let held: Vec<_> = me.lock_held().drain().map(|(_, c)| c).collect();
            for cancel in held {
                let _ = cancel.send(true);
            }
            let _ = stopping.send(());
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(signal);
        let overdue = async {
            match stopped.await {
                Ok(()) => tokio::time::sleep(GRACE).await,
                Err(_) => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = std::future::IntoFuture::into_future(serving) => r,
            () = overdue => {
                tracing::warn!("streams still open {GRACE:?} after the shutdown signal; closing them");
                Ok(())
            }
        };
        let deadline = Instant::now() + GRACE;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        result
    }

    async fn calls_for(&self, token: &str) -> Option<Arc<Calls>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(c) = self.lock_agents().get(&hash) {
            return Some(c.clone());
        }
        let calls = match &self.gates {
            Gates::Embedded(gw) => {
                let who = gw.identities().authenticate(token)?;
                Calls::new(
                    Arc::new(Embedded::new(gw.clone(), (*who).clone())),
                    self.opts.clone(),
                )
            }
            Gates::Remote(url) => {
                let remote = Remote::new(url, token.to_string()).ok()?;
                if !remote.authenticates().await {
                    return None;
                }
                Calls::new(Arc::new(remote), self.opts.clone())
            }
        };
        let calls = Arc::new(calls);
        self.lock_agents().insert(hash, calls.clone());
        Some(calls)
    }

    fn lock_agents(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Calls>>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<watch::Sender<bool>>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Relays a message upstream; `hook` may rewrite each JSON-RPC message of the answer. The
    /// upstream has `server_timeout` to start answering, and to finish answering a request
    /// (`id`).
    async fn forward(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
        id: Option<Value>,
        hook: Option<Hook>,
    ) -> Response {
        let limit = self.opts.server_timeout;
        let started = Instant::now();
        let send = self
            .client
            .request(method, &self.upstream)
            .headers(headers)
            .body(body)
            .send();
        let error_id = id.clone().unwrap_or(Value::Null);
        let resp = match tokio::time::timeout(limit, send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let text = format!("the MCP server is unreachable: {e}");
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    &error_id,
                    jsonrpc::INTERNAL_ERROR,
                    &text,
                );
            }
            Err(_) => {
                return rpc_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &error_id,
                    jsonrpc::INTERNAL_ERROR,
                    &timed_out(limit),
                );
            }
        };
        let status = resp.status();
        let mut out_headers = HeaderMap::new();
        for (k, v) in resp.headers() {
            if !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                out_headers.append(k.clone(), v.clone());
            }
        }
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let (tx, rx) = mpsc::channel(64);
        let request = id.map(|id| (id, started + limit, limit));
        tokio::spawn(pump(resp, tx, sse, hook, request));
        let mut response = Response::new(Body::from_stream(RxStream(rx)));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        response
    }

    /// A `tools/call`: answered on our own SSE stream.
    fn call(
        self: &Arc<Self>,
        calls: Arc<Calls>,
        headers: HeaderMap,
        held_key: String,
        id: Value,
        msg: Value,
    ) -> Response {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let (cancel, cancelled) = watch::channel(false);
        let cancel = Arc::new(cancel);
        self.lock_held().insert(held_key.clone(), cancel.clone());
        // The client closing the stream cancels the held call (and so its review).
        let gone = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.closed().await;
                let _ = cancel.send(true);
            })
        };
        let me = self.clone();
        me.active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let (notes_tx, mut notes_rx) = mpsc::channel::<String>(16);
            let relay = {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(n) = notes_rx.recv().await {
                        let _ = tx.send(sse_event(&n)).await;
                    }
                })
            };
            let verdict = calls.decide(&msg, cancelled, &notes_tx, None).await;
            gone.abort();
            drop(notes_tx);
            let _ = relay.await;
            let still_held = me.lock_held().remove(&held_key).is_some();
            match verdict {
                _ if !still_held || tx.is_closed() => {}
                Verdict::Answer(result) => {
                    let _ = tx.send(sse_event(&jsonrpc::result(&id, result))).await;
                }
                Verdict::Forward(msg, action_id) => {
                    let answer = async {
                        let resp = me
                            .client
                            .post(&me.upstream)
                            .headers(headers)
                            .body(msg.to_string())
                            .send()
                            .await
                            .map_err(|e| format!("the MCP server is unreachable: {e}"))?;
                        collect_response(resp, &id, &tx).await
                    };
                    let limit = me.opts.server_timeout;
                    let text = match tokio::time::timeout(limit, answer).await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => jsonrpc::error(&id, jsonrpc::INTERNAL_ERROR, &e),
                        Err(_) => jsonrpc::error(&id, jsonrpc::INTERNAL_ERROR, &timed_out(limit)),
                    };
                    let _ = tx.send(sse_event(&text)).await;
                    // The answer is complete: end the stream now, not after the report commits.
                    drop(tx);
                    if let Some(action_id) = action_id {
                        calls.report(&action_id, &text).await;
                    }
                }
            }
            me.active.fetch_sub(1, Ordering::SeqCst);
        });
        let mut response = Response::new(Body::from_stream(RxStream(rx)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Reads the upstream's answer to a forwarded call: relays any messages before the response on
/// `tx` and returns the response's text.
async fn collect_response(
    mut resp: reqwest::Response,
    id: &Value,
    tx: &mpsc::Sender<Bytes>,
) -> Result<String, String> {
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v.get("method").is_none() && v.get("id") == Some(id) {
            return Ok(text);
        }
        // An HTTP error page, or a session-level error (`id: null`): not this call's response.
        let why = match v["error"]["message"].as_str() {
            Some(m) => m.to_string(),
            None => text.chars().take(200).collect(),
        };
        return Err(format!(
            "the MCP server answered HTTP {status} without a response to this call: {why}"
        ));
    }
    let mut split = SseSplitter::default();
    let mut found: Option<String> = None;
    while let Ok(Some(chunk)) = resp.chunk().await {
        let mut events = Vec::new();
        split.feed(&chunk, &mut |data| {
            events.push(data.to_string());
            data.to_string()
        });
        for data in events {
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if v.get("method").is_none() && v.get("id") == Some(id) {
                found = Some(data);
            } else {
                let _ = tx.send(sse_event(&data)).await;
            }
        }
        if found.is_some() {
            break;
        }
    }
    found.ok_or_else(|| "the MCP server ended its stream without answering".to_string())
}

/// Relays an upstream answer on `tx`. For a `request` (its id and deadline), an answer stream
/// that has not carried the response by the deadline is closed with an error response.
async fn pump(
    resp: reqwest::Response,
    tx: mpsc::Sender<Bytes>,
    sse: bool,
    hook: Option<Hook>,
    request: Option<(Value, Instant, Duration)>,
) {
    let Some((id, deadline, limit)) = request else {
        return relay(resp, &tx, sse, hook).await;
    };
    let answered = Arc::new(AtomicBool::new(false));
    let seen = answered.clone();
    let want = id.clone();
    let mut inner = hook;
    let watching: Hook = Box::new(move |data: &str| -> String {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if v.get("method").is_none() && v.get("id") == Some(&want) {
            seen.store(true, Ordering::SeqCst);
        }
        match &mut inner {
            Some(hook) => hook(data),
            None => data.to_string(),
        }
    });
    let late = tokio::time::timeout_at(deadline, relay(resp, &tx, sse, Some(watching)))
        .await
        .is_err();
    if late && sse && !answered.load(Ordering::SeqCst) {
        let text = jsonrpc::error(&id, jsonrpc::INTERNAL_ERROR, &timed_out(limit));
        let _ = tx.send(sse_event(&text)).await;
    }
}

async fn relay(
    mut resp: reqwest::Response,
    tx: &mpsc::Sender<Bytes>,
    sse: bool,
    hook: Option<Hook>,
) {
    match hook {
        None => {
            while let Ok(Some(chunk)) = resp.chunk().await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        }
        Some(mut hook) if sse => {
            let mut split = SseSplitter::default();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let out = split.feed(&chunk, &mut *hook);
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        }
        Some(mut hook) => {
            if let Ok(text) = resp.text().await {
                let _ = tx.send(Bytes::from(hook(&text))).await;
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn handle(State(p): State<Arc<HttpProxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let token = bearer(&parts.headers).unwrap_or_default().to_string();
    let Some(calls) = (match token.as_str() {
        "" => None,
        token => p.calls_for(token).await,
    }) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "countersign: send your agent's API token as `Authorization: Bearer TOKEN`\n",
        )
            .into_response();
    };
    let bytes = match axum::body::to_bytes(body, p.max_message).await {
        Ok(b) => b,
        Err(_) => {
            let text = format!("message larger than {} bytes refused", p.max_message);
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                jsonrpc::INVALID_REQUEST,
                &text,
            );
        }
    };
    let headers = relayed(&parts.headers);
    if parts.method != Method::POST {
        return p.forward(parts.method, headers, bytes, None, None).await;
    }
    let msg: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let text = format!("parse error: {e}");
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                jsonrpc::PARSE_ERROR,
                &text,
            );
        }
    };
    if !msg.is_object() {
        let text = "a JSON-RPC message must be one object (batches are not supported)";
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            text,
        );
    }
    let id = msg.get("id").filter(|i| !i.is_null()).cloned();
    let method = msg.get("method").and_then(Value::as_str);
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
        || (method.is_none() && id.is_none())
    {
        let id = id.unwrap_or(Value::Null);
        let text = "not a JSON-RPC 2.0 message";
        return rpc_error(StatusCode::BAD_REQUEST, &id, jsonrpc::INVALID_REQUEST, text);
    }
    // A request (not a response from the client) must be answered in time.
    let request = id.clone().filter(|_| method.is_some());
    match (method, id) {
        (Some("tools/call"), Some(id)) => {
            let key = held_key(&token, &headers, &id);
            p.call(calls, headers, key, id, msg)
        }
        (Some("notifications/cancelled"), None) => {
            let key = held_key(&token, &headers, &msg["params"]["requestId"]);
            let held = p.lock_held().remove(&key);
            match held {
                Some(cancel) => {
                    let _ = cancel.send(true);
                    StatusCode::ACCEPTED.into_response()
                }
                None => p.forward(Method::POST, headers, bytes, None, None).await,
            }
        }
        (Some("tools/list"), Some(_)) => {
            let hook = Box::new(move |data: &str| -> String {
                let Ok(mut v) = serde_json::from_str::<Value>(data) else {
                    return data.to_string();
                };
                if v.get("result").is_some() {
                    calls.filter_tools(&mut v["result"]);
                    return v.to_string();
                }
                data.to_string()
            });
            p.forward(Method::POST, headers, bytes, request, Some(hook))
                .await
        }
        _ => p.forward(Method::POST, headers, bytes, request, None).await,
    }
}
