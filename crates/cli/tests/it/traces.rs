//! OpenTelemetry traces (`[telemetry] otlp_endpoint`), checked against an OTLP/HTTP receiver
//! started here: `countersign serve` exports protobuf to `/v1/traces`, decoded with the
//! `opentelemetry-proto` types. The request span, its `policy.evaluate`, `store.commit` and
//! `long_poll.wait` children, the trace id in the JSON log lines, and, read as an attacker
//! would: no span or resource attribute carries the bearer token or a parameter value.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the receiver got: every resource attribute and span, in arrival order.
#[derive(Default)]
pub(crate) struct Received {
    pub resource: Vec<KeyValue>,
    pub spans: Vec<Span>,
    pub content_types: Vec<String>,
}

/// An OTLP/HTTP (protobuf) traces receiver on a loopback port: `(base URL, what it received)`.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Received>>) {
    async fn export(
        State(got): State<Arc<Mutex<Received>>>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        let req = ExportTraceServiceRequest::decode(body).unwrap();
        let mut got = got.lock().unwrap();
        got.content_types.push(
            headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
        );
        for rs in req.resource_spans {
            if let Some(r) = rs.resource {
                got.resource.extend(r.attributes);
            }
            for ss in rs.scope_spans {
                got.spans.extend(ss.spans);
            }
        }
        (
            [("content-type", "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }
    let got = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// `countersign serve` with traces to `otlp` and JSON logs; its stderr lines are collected.
pub(crate) struct Traced {
    pub url: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

pub(crate) async fn serve_traced(dir: &Path, otlp: &str) -> Traced {
    let config = crate::support::write_config(dir, "");
    // `[telemetry]` after the identities: a table of its own.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!("[telemetry]\notlp_endpoint = \"{otlp}\"\n");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(crate::cli::BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .env("COUNTERSIGN_LOG", "info")
        // The SDK's batch delay (5 s by default), short for the test.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server started")
        .unwrap()
        .unwrap_or_default();
    assert!(
        line.contains("listening on"),
        "{line} {:?}",
        logs.lock().unwrap()
    );
    Traced {
        url: crate::cli::listening_url(&line),
        logs,
        _child: child,
    }
}

/// Waits until `want` holds of the spans received (20 s at most).
pub(crate) async fn spans_until(
    got: &Arc<Mutex<Received>>,
    want: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    for _ in 0..200 {
        {
            let got = got.lock().unwrap();
            if want(&got.spans) {
                return got.spans.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.lock().unwrap();
    let names: Vec<&str> = got.spans.iter().map(|s| s.name.as_str()).collect();
    panic!("spans expected never arrived; got {names:?}");
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn children<'a>(spans: &'a [Span], parent: &Span, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
        .filter(|s| s.trace_id == parent.trace_id)
        .collect()
}

const SECRET_PARAM: &str = "s3cr3t-param-value";
const STOLEN_TOKEN: &str = "csk_stolen-token-never-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_with_child_spans_and_trace_ids_in_the_logs() {
    let (otlp, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_traced(dir.path(), &otlp).await;
    let http = crate::support::client();

    // An allowed action whose parameters hold a secret.
    let resp = http
        .post(format!("{}/v1/actions", server.url))
        .bearer_auth("tok-bot")
        .json(&json!({"action": "logs.read", "resource": "app",
                      "params": {"password": SECRET_PARAM}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A reviewed one, waited on (the long poll ends at its deadline).
    let v: serde_json::Value = http
        .post(format!("{}/v1/actions", server.url))
        .bearer_auth("tok-bot")
        .json(&json!({"action": "deploy", "resource": "prod", "params": {"token": SECRET_PARAM}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let resp = http
        .get(format!("{}/v1/actions/{id}?wait=1", server.url))
        .bearer_auth("tok-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A refused credential: logged (the code, not the token) inside the request's span.
    let resp = http
        .get(format!("{}/v1/actions/{id}", server.url))
        .bearer_auth(STOLEN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let spans = spans_until(&got, |spans| {
        named(spans, "POST /v1/actions").len() >= 2
            && named(spans, "GET /v1/actions/{id}").len() >= 2
            && !named(spans, "long_poll.wait").is_empty()
    })
    .await;

    // Each submission: a server span with the policy evaluation and the store commit inside.
    for request in named(&spans, "POST /v1/actions") {
        assert_eq!(request.kind, SpanKind::Server as i32);
        assert!(request.parent_span_id.is_empty(), "a root span");
        assert_eq!(
            attr_text(&request.attributes, "http.request.method").as_deref(),
            Some("POST")
        );
        assert_eq!(
            attr_text(&request.attributes, "http.route").as_deref(),
            Some("/v1/actions")
        );
        assert_eq!(
            attr_text(&request.attributes, "http.response.status_code").as_deref(),
            Some("201")
        );
        let policy = children(&spans, request, "policy.evaluate");
        assert_eq!(policy.len(), 1, "one policy evaluation per submission");
        let effect = attr_text(&policy[0].attributes, "effect").unwrap();
        assert!(effect == "allow" || effect == "review", "{effect}");
        assert_eq!(children(&spans, request, "store.commit").len(), 1);
        for child in policy {
            assert!(child.start_time_unix_nano >= request.start_time_unix_nano);
            assert!(child.end_time_unix_nano <= request.end_time_unix_nano);
        }
    }
    // The long poll: its wait, inside the GET.
    let polled = named(&spans, "GET /v1/actions/{id}")
        .into_iter()
        .find(|s| !children(&spans, s, "long_poll.wait").is_empty())
        .expect("the long poll's request span");
    let wait = children(&spans, polled, "long_poll.wait")[0];
    let waited = wait.end_time_unix_nano - wait.start_time_unix_nano;
    assert!(waited >= 900_000_000, "waited {waited} ns for a 1 s poll");

    // The refused request's log line carries its span's trace id.
    let refused = named(&spans, "GET /v1/actions/{id}")
        .into_iter()
        .find(|s| attr_text(&s.attributes, "http.response.status_code").as_deref() == Some("401"))
        .expect("the refused request's span");
    let trace_id = hex::encode(&refused.trace_id);
    let logs = server.logs.lock().unwrap().clone();
    let line = logs
        .iter()
        .find(|l| l.contains("refused a bearer credential"))
        .unwrap_or_else(|| panic!("no refusal logged: {logs:?}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    let spans_in_line = line["spans"].as_array().unwrap();
    assert!(
        spans_in_line
            .iter()
            .any(|s| s["trace_id"] == trace_id.as_str()),
        "{line}"
    );

    // Nothing secret in any span, attribute or resource: neither token nor parameter values.
    let got = got.lock().unwrap();
    let everything = format!("{:?} {:?}", got.spans, got.resource);
    for secret in [SECRET_PARAM, STOLEN_TOKEN, "tok-bot", "Bearer", "password"] {
        assert!(
            !everything.contains(secret),
            "`{secret}` exported in a span"
        );
    }
    assert!(logs
        .iter()
        .all(|l| !l.contains(STOLEN_TOKEN) && !l.contains(SECRET_PARAM)));
    assert_eq!(
        attr_text(&got.resource, "service.name").as_deref(),
        Some("countersign")
    );
    assert!(got
        .content_types
        .iter()
        .all(|c| c == "application/x-protobuf"));
}

/// `[telemetry] otlp_endpoint` is the one key of its table: traces are off without it, an
/// unknown key or a bad address is refused at start (naming the key), and the traces URL is
/// the collector's base address plus `/v1/traces`.
#[test]
fn the_telemetry_table_is_checked_at_start() {
    use countersign_gateway::config::Config;
    let parse = |extra: &str| Config::parse(extra, Path::new("/etc/countersign.toml"));
    let off = parse("").unwrap();
    assert_eq!(off.telemetry.otlp_endpoint, None);
    assert!(!off.server.traces, "traces are off by default");
    let on = parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n").unwrap();
    assert_eq!(
        on.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert!(on.server.traces);
    for (given, url) in [
        (
            "https://otel.example.com/",
            "https://otel.example.com/v1/traces",
        ),
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ("http://c:4318/prefix", "http://c:4318/prefix/v1/traces"),
    ] {
        let c = parse(&format!("[telemetry]\notlp_endpoint = \"{given}\"\n")).unwrap();
        assert_eq!(c.telemetry.otlp_endpoint.as_deref(), Some(url), "{given}");
    }
    // An empty table is allowed and leaves traces off.
    assert!(!parse("[telemetry]\n").unwrap().server.traces);
    for bad in [
        "[telemetry]\notlp_endpont = \"http://127.0.0.1:4318\"\n",
        "[telemetry]\notlp_endpoint = \"127.0.0.1:4318\"\n",
        "[telemetry]\notlp_endpoint = \"grpc://127.0.0.1:4317\"\n",
        "[telemetry]\notlp_endpoint = \"http://user:pw@127.0.0.1:4318\"\n",
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/?k=v\"\n",
        "[telemetry]\notlp_endpoint = \"http:///v1/traces\"\n",
        "[telemetry]\notlp_endpoint = \"http://a b\"\n",
        "[telemetry]\notlp_endpoint = 4318\n",
        "otlp_endpoint = \"http://127.0.0.1:4318\"\n",
    ] {
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.contains("otlp_endpo"), "{bad}: {err}");
        assert!(!err.contains("user:pw"), "credentials repeated: {err}");
    }
}

/// A caller's W3C `traceparent` makes the request span a child of the caller's span, in the
/// caller's trace, even when the caller did not sample it; a malformed one is ignored (a trace
/// of the gateway's own), never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_makes_the_request_span_its_child() {
    let (otlp, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_traced(dir.path(), &otlp).await;
    let http = crate::support::client();
    let submit = |traceparent: &'static str, resource: &'static str| {
        http.post(format!("{}/v1/actions", server.url))
            .bearer_auth("tok-bot")
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque")
            .json(&json!({"action": "logs.read", "resource": resource}))
            .send()
    };
    let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let malformed = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    for (tp, resource) in [(sampled, "a"), (unsampled, "b"), (malformed, "c")] {
        assert_eq!(submit(tp, resource).await.unwrap().status(), 201);
    }
    let spans = spans_until(&got, |s| named(s, "POST /v1/actions").len() >= 3).await;
    let requests = named(&spans, "POST /v1/actions");
    for (tp, _) in [(sampled, "a"), (unsampled, "b")] {
        let parts: Vec<&str> = tp.split('-').collect();
        let child = requests
            .iter()
            .find(|s| hex::encode(&s.trace_id) == parts[1])
            .unwrap_or_else(|| panic!("no request span in the caller's trace {}", parts[1]));
        assert_eq!(
            hex::encode(&child.parent_span_id),
            parts[2],
            "parent linkage"
        );
        assert_eq!(child.trace_state, "vendor=opaque");
        // Its own children stay in the caller's trace.
        assert_eq!(children(&spans, child, "policy.evaluate").len(), 1);
        assert_eq!(children(&spans, child, "store.commit").len(), 1);
    }
    let own = requests
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .count();
    assert_eq!(
        own, 1,
        "the malformed traceparent starts a trace of the gateway's own"
    );
}

/// The MCP proxy's Streamable HTTP front hands the agent's `traceparent` (and `tracestate`) to
/// the upstream MCP server with each message it forwards, and never the agent's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_proxy_forwards_traceparent_to_an_upstream_http_server() {
    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, bool)>>>;
    async fn mcp(
        State(seen): State<Seen>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let msg: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        let method = msg["method"].as_str().unwrap_or_default().to_string();
        seen.lock().unwrap().push((
            method.clone(),
            header("traceparent"),
            header("tracestate"),
            headers.contains_key("authorization"),
        ));
        let result = match method.as_str() {
            "initialize" => json!({"protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}}, "serverInfo": {"name": "upstream", "version": "0"}}),
            "tools/list" => json!({"tools": [{"name": "echo", "description": "echo",
                "inputSchema": {"type": "object"}}]}),
            "tools/call" => json!({"content": [{"type": "text", "text": "echoed"}]}),
            _ => return axum::http::StatusCode::ACCEPTED.into_response(),
        };
        axum::Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result})).into_response()
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/mcp", post(mcp))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let gw = crate::mcp::gateway().await;
    let (_proxy, url) = crate::mcp::http_proxy(&gw, &upstream, &[]).await;

    let http = crate::support::client();
    let post = |msg: serde_json::Value, traceparent: &'static str| {
        http.post(&url)
            .bearer_auth("tok-bot")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .header("traceparent", traceparent)
            .header("tracestate", "agent=1")
            .body(msg.to_string())
            .send()
    };
    let init_tp = "00-11111111111111111111111111111111-2222222222222222-01";
    let call_tp = "00-33333333333333333333333333333333-4444444444444444-01";
    let resp = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "0"}}}),
        init_tp,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}}}),
        call_tp,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("echoed"), "the call ran upstream: {text}");

    let seen = seen.lock().unwrap().clone();
    let find = |method: &str| {
        seen.iter()
            .find(|(m, ..)| m == method)
            .unwrap_or_else(|| panic!("no {method} upstream: {seen:?}"))
            .clone()
    };
    let (_, tp, ts, auth) = find("initialize");
    assert_eq!(tp.as_deref(), Some(init_tp));
    assert_eq!(ts.as_deref(), Some("agent=1"));
    assert!(!auth, "the agent's token stays with the proxy");
    let (_, tp, _, auth) = find("tools/call");
    assert_eq!(tp.as_deref(), Some(call_tp));
    assert!(!auth);
}

/// The allow path never waits on the collector: with a collector that accepts connections and
/// never answers (its exports hang until their timeout) and with one that refuses them, every
/// request is answered at once and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_absent_collector_does_not_slow_requests() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hung.accept().await {
            held.push(conn); // read nothing, answer nothing
        }
    });
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }; // closed again: connections are refused
    for otlp in [hung_url, refused] {
        let dir = tempfile::tempdir().unwrap();
        let server = serve_traced(dir.path(), &otlp).await;
        let http = crate::support::client();
        let started = std::time::Instant::now();
        for i in 0..200 {
            let resp = http
                .post(format!("{}/v1/actions", server.url))
                .bearer_auth("tok-bot")
                .json(&json!({"action": "logs.read", "resource": format!("r{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }
        // Several export rounds (100 ms apart) fall in this time; none is waited for.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "{otlp}: 200 requests took {took:?}"
        );
    }
}
