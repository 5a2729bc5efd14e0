//! The Slack channel end to end, HTTP mode, against a local double of Slack's Web API that
//! follows its documented JSON (`chat.postMessage`, `chat.update`, `views.open`, a
//! `response_url`): an action held for review is posted with its context (after one 429 with
//! `Retry-After`), a click signed by the official `slack_sdk` approves it, the agent's long poll
//! is released and the message is rewritten with the final state and no buttons; our blocks
//! parse with `slack_sdk.models.blocks`. Forged signatures, stale timestamps, the requester's
//! own click, an unmapped user, a double click and a click after the decision are refused, and
//! each refusal is in the audit log.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::support::{client, id, now_secs, serve, write_config, Calls, Gw};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const APP_TOKEN: &str = "xapp-1-A0APP-1234-abcdef";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";

/// Every call the double got: (method, JSON body); and every request as it came, (path, body).
#[derive(Clone, Default)]
pub(crate) struct SlackDouble {
    calls: Calls,
    pub(crate) raw: Arc<Mutex<Vec<(String, String)>>>,
    pub(crate) rate_limit_first_post: Arc<Mutex<bool>>,
    socket_url: Arc<Mutex<String>>,
}

impl SlackDouble {
    pub(crate) async fn start() -> (SlackDouble, String) {
        let d = SlackDouble {
            rate_limit_first_post: Arc::new(Mutex::new(true)),
            ..Default::default()
        };
        let me = d.clone();
        let app = axum::Router::new()
            .route(
                "/api/{method}",
                axum::routing::post(
                    move |UrlPath(method): UrlPath<String>, headers: HeaderMap, body: Bytes| {
                        let me = me.clone();
                        async move {
                            me.raw.lock().unwrap().push((
                                format!("/api/{method}"),
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            me.api(&method, &headers, &body)
                        }
                    },
                ),
            )
            .route(
                "/hooks/{name}",
                axum::routing::post({
                    let me = d.clone();
                    move |UrlPath(name): UrlPath<String>, body: Bytes| {
                        let me = me.clone();
                        async move {
                            me.raw.lock().unwrap().push((
                                format!("/hooks/{name}"),
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                            me.calls.push(&format!("hook:{name}"), v);
                            StatusCode::OK
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (d, url)
    }

    /// Slack's Web API as documented: HTTP 200 with `{"ok": true, ...}` or
    /// `{"ok": false, "error": "..."}`; 429 with `Retry-After` when rate limited.
    fn api(&self, method: &str, headers: &HeaderMap, body: &[u8]) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if method == "apps.connections.open" {
            // Called with the app-level token (connections:write), as documented.
            if auth != format!("Bearer {APP_TOKEN}") {
                return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
            }
            self.calls.push(method, Value::Null);
            let url = self.socket_url.lock().unwrap().clone();
            return axum::Json(json!({"ok": true, "url": url})).into_response();
        }
        if auth != format!("Bearer {BOT_TOKEN}") {
            return axum::Json(json!({"ok": false, "error": "not_authed"})).into_response();
        }
        if method == "users.info" {
            // A read method: form-encoded arguments, as Slack documents.
            let user = url::form_urlencoded::parse(body)
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            self.calls.push(method, json!({"user": user}));
            let reply = match user.as_str() {
                "UDAVE" => json!({"ok": true, "user": {
                    "id": "UDAVE", "name": "dave", "deleted": false, "is_bot": false,
                    "is_app_user": false, "is_email_confirmed": true,
                    "profile": {"email": "DAVE@example.com", "real_name": "Dave"}}}),
                "UUNCONFIRMED" => json!({"ok": true, "user": {
                    "id": "UUNCONFIRMED", "deleted": false, "is_bot": false,
                    "is_email_confirmed": false, "profile": {"email": "dave@example.com"}}}),
                "BOTUSER" => json!({"ok": true, "user": {
                    "id": "BOTUSER", "deleted": false, "is_bot": true,
                    "is_email_confirmed": true, "profile": {"email": "dave@example.com"}}}),
                // People from the identity provider (`people_from_the_identity_provider_...`).
                "UFRANK" | "UGINA" | "USHARED" | "UROBOT" | "USTRANGER" | "UHENRY" => {
                    let name = match user.as_str() {
                        "USTRANGER" => "nobody".to_string(),
                        u => u[1..].to_lowercase(),
                    };
                    json!({"ok": true, "user": {
                        "id": user, "name": name, "deleted": false, "is_bot": false,
                        "is_app_user": false, "is_email_confirmed": true,
                        "profile": {"email": format!("{}@Example.com", name.to_uppercase())}}})
                }
                _ => json!({"ok": false, "error": "user_not_found"}),
            };
            return axum::Json(reply).into_response();
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return axum::Json(json!({"ok": false, "error": "invalid_json"})).into_response();
        };
        if method == "chat.postMessage" {
            let mut first = self.rate_limit_first_post.lock().unwrap();
            if *first {
                *first = false;
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
            }
        }
        let mut calls = self.calls.lock();
        calls.push((method.to_string(), v.clone()));
        match method {
            "chat.postMessage" => {
                if v["channel"] != "#approvals" && v["channel"] != "C0APPROVALS" {
                    return axum::Json(json!({"ok": false, "error": "channel_not_found"}))
                        .into_response();
                }
                let n = calls
                    .iter()
                    .filter(|(m, _)| m == "chat.postMessage")
                    .count();
                let ts = format!("1700000000.{n:06}");
                axum::Json(json!({
                    "ok": true, "channel": "C0APPROVALS", "ts": ts,
                    "message": {"type": "message", "text": v["text"], "blocks": v["blocks"], "ts": ts},
                }))
                .into_response()
            }
            "chat.update" => {
                let known = calls
                    .iter()
                    .any(|(m, p)| m == "chat.postMessage" && p["channel"] == "#approvals")
                    && v["channel"] == "C0APPROVALS";
                if !known {
                    return axum::Json(json!({"ok": false, "error": "message_not_found"}))
                        .into_response();
                }
                axum::Json(
                    json!({"ok": true, "channel": v["channel"], "ts": v["ts"], "text": v["text"]}),
                )
                .into_response()
            }
            "views.open" => {
                axum::Json(json!({"ok": true, "view": {"id": "V0123", "type": "modal"}}))
                    .into_response()
            }
            _ => axum::Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
        }
    }

    pub(crate) fn calls(&self, method: &str) -> Vec<Value> {
        self.calls.of(method)
    }

    pub(crate) async fn wait_for(&self, method: &str, n: usize) -> Vec<Value> {
        self.calls.wait_until(method, |got| got.len() >= n).await
    }
}

fn python() -> String {
    std::env::var("COUNTERSIGN_PYTHON").unwrap_or_else(|_| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        root.join("target/pyenv/bin/python").display().to_string()
    })
}

/// Runs tests/interop/slack_check.py (slack_sdk) in `mode` over `input`; its output lines.
pub(crate) fn slack_sdk(mode: &str, input: &Value) -> Vec<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(input).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/slack_check.py");
    let python = python();
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(mode)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (run scripts/test once to provision it)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An interactivity request: the form body, its timestamp and slack_sdk's signature of it.
pub(crate) fn signed(payload: &Value, timestamp: i64) -> (String, String, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let sig = slack_sdk(
        "sign",
        &json!({"secret": SIGNING_SECRET, "requests": [{"timestamp": timestamp, "body": body}]}),
    )
    .remove(0);
    (body, timestamp.to_string(), sig)
}

pub(crate) fn click(user: &str, action_id: &str, action: &str, hook: &str, double: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "team": {"id": "T0TEAM", "domain": "example"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0APPROVALS", "is_ephemeral": false},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": "C0APPROVALS", "name": "approvals"},
        "response_url": format!("{double}/hooks/{hook}"),
        "actions": [{
            "type": "button", "action_id": action_id, "block_id": "countersign_vote",
            "value": action, "action_ts": "1700000001.000000",
            "text": {"type": "plain_text", "text": "Approve"},
        }],
    })
}

pub(crate) async fn post_signed(gw: &Gw, body: String, ts: &str, sig: &str) -> (u16, Value) {
    let resp = gw
        .http
        .post(format!("{}/v1/channels/slack/interactions", gw.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn start(double: &str) -> Gw {
    start_mode(double, "mode = \"http\"").await
}

async fn start_mode(double: &str, mode: &str) -> Gw {
    start_with(double, mode, "", "").await
}

/// A gateway whose Slack app talks to the double at `double`, in `mode`, with `extra` TOML
/// (tables written before `[slack]`) and `policy` (Cedar) beside the test policies.
pub(crate) async fn start_with(double: &str, mode: &str, extra: &str, policy: &str) -> Gw {
    let (dir, path) = config_with(double, mode, extra, policy);
    let (url, server) = serve(&path).await;
    Gw::from_parts(url, client(), dir, server)
}

/// [`start_with`]'s directory and configuration file, for a test that starts the server itself.
pub(crate) fn config_with(
    double: &str,
    mode: &str,
    extra: &str,
    policy: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{extra}\n[slack]\n{mode}\nbot_token_env = \"COUNTERSIGN_TEST_SLACK_TOKEN\"\n{}api_base_url = \"{double}/api/\"\ndefault_channel = \"#approvals\"\n\n[outbox]\nbackoff_base = \"50ms\"\n",
        if mode.contains("socket") {
            format!("app_token = \"{APP_TOKEN}\"\n")
        } else {
            format!("signing_secret = \"{SIGNING_SECRET}\"\n")
        }
    );
    std::env::set_var("COUNTERSIGN_TEST_SLACK_TOKEN", BOT_TOKEN);
    let path = write_config(dir.path(), &extra);
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml = toml.replace(
        "id = \"dave\"\nkind = \"human\"\n",
        "id = \"dave\"\nkind = \"human\"\nemail = \"dave@example.com\"\n",
    );
    for (who, user) in [("alice", "UALICE"), ("bob", "UBOB"), ("carol", "UCAROL")] {
        toml = toml.replace(
            &format!("id = \"{who}\"\nkind = \"human\"\n"),
            &format!("id = \"{who}\"\nkind = \"human\"\nslack_user_id = \"{user}\"\n"),
        );
    }
    std::fs::write(&path, toml).unwrap();
    if !policy.is_empty() {
        std::fs::write(dir.path().join("policies/extra.cedar"), policy).unwrap();
    }
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_click_approves_a_held_action_and_the_message_shows_the_final_state() {
    let (double, durl) = SlackDouble::start().await;
    let gw = start(&durl).await;
    let long_params = "x".repeat(3000);
    let v = gw
        .submit(
            "bot",
            json!({
                "action": "deploy", "resource": "svc/payments", "environment": "prod",
                "justification": "ship <!channel> fix 42",
                "params": {"version": "1.2.3", "notes": long_params},
            }),
        )
        .await;
    let action = id(&v);
    // The agent's long poll.
    let poll = gw.long_poll("bot", &action);
    // Posted once Slack's 429 (Retry-After: 1) has passed.
    let posted = double.wait_for("chat.postMessage", 1).await.remove(0);
    assert_eq!(posted["channel"], "#approvals");
    assert!(
        !*double.rate_limit_first_post.lock().unwrap(),
        "the first post was rate limited, then retried"
    );
    let blocks = posted["blocks"].clone();
    let all = blocks.to_string();
    for needle in [
        "deploy",
        "svc/payments",
        "prod",
        "*Requester*\\nbot",
        "ship &lt;!channel&gt; fix 42",
        "*Policy* deploy",
        "deploys need an SRE",
        "0 of 1 from group:sre",
        "Truncated: 2500 of",
        "left · action",
    ] {
        assert!(all.contains(needle), "{needle} not in {all}");
    }
    assert!(
        !all.contains("<!channel>"),
        "the requester's text is escaped"
    );
    let buttons: Vec<&str> = blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .map(|e| e["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        buttons,
        ["Approve", "Deny", "Approve with changes", "Ask a question"]
    );
    // Slack's own models parse our blocks.
    let parsed = slack_sdk("blocks", &json!([blocks]));
    assert!(parsed[0].starts_with("header,section,"), "{parsed:?}");

    // Refusals before the good click: each answered, none counted, each audited.
    let ts = now_secs();
    let (body, t, _) = signed(
        &click("UBOB", "countersign_approve", &action, "forged", &durl),
        ts,
    );
    let (other, _, other_sig) = signed(
        &click("UBOB", "countersign_deny", &action, "forged", &durl),
        ts,
    );
    assert_ne!(body, other);
    let (status, err) = post_signed(&gw, body.clone(), &t, &other_sig).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("slack_signature_invalid"))
    );
    let stale = ts - 301;
    let (body_s, t_s, sig_s) = signed(
        &click("UBOB", "countersign_approve", &action, "stale", &durl),
        stale,
    );
    let (status, err) = post_signed(&gw, body_s, &t_s, &sig_s).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("slack_timestamp_stale"))
    );
    let (b, t, s) = signed(
        &click("UNOBODY", "countersign_approve", &action, "unmapped", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:unmapped", 1).await.remove(0);
    assert_eq!(hook["response_type"], "ephemeral");
    assert!(
        hook["text"].as_str().unwrap().contains("not mapped"),
        "{hook}"
    );
    // carol is a human but not an approver of deploys (group:sre).
    let (b, t, s) = signed(
        &click("UCAROL", "countersign_approve", &action, "carol", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:carol", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );

    // bob approves.
    let (b, t, s) = signed(
        &click("UBOB", "countersign_approve", &action, "bob", &durl),
        now_secs(),
    );
    let started = Instant::now();
    assert_eq!(post_signed(&gw, b.clone(), &t, &s).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    let replay = (b, t, s);
    let done = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done["status"], "approved", "{done}");
    // The message is rewritten in place: same ts, final state, no buttons.
    let start = Instant::now();
    let last = loop {
        let updates = double.calls("chat.update");
        if let Some(u) = updates
            .iter()
            .find(|u| u["blocks"].to_string().contains("Final state: approved"))
        {
            break u.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{updates:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["channel"], "C0APPROVALS");
    assert_eq!(last["ts"], "1700000000.000001");
    assert!(
        !last["blocks"].to_string().contains("\"actions\""),
        "{last}"
    );
    assert!(
        last["blocks"].to_string().contains("bob — approve"),
        "{last}"
    );
    assert_eq!(
        double.calls("chat.postMessage").len(),
        1,
        "posted once, then updated"
    );
    slack_sdk("blocks", &json!([last["blocks"]]));

    // A click after the decision is refused and audited.
    let (b, t, s) = signed(
        &click("UBOB", "countersign_approve", &action, "late", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:late", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );
    // The very same signed request replayed (within the 5 minutes) counts nothing twice.
    assert_eq!(
        post_signed(&gw, replay.0, &replay.1, &replay.2).await.0,
        200
    );
    let hook = double.wait_for("hook:bob", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["review"]["votes"].as_array().unwrap().len(), 1, "{got}");

    let refused = gw.refusals().await;
    let by = |who: &str, code: &str| {
        refused
            .iter()
            .any(|e| e["event"]["by"] == who && e["event"]["code"] == code)
    };
    assert!(
        by("slack:unverified", "slack_signature_invalid"),
        "{refused:?}"
    );
    assert!(
        by("slack:unverified", "slack_timestamp_stale"),
        "{refused:?}"
    );
    assert!(by("slack:UNOBODY", "unmapped_chat_user"), "{refused:?}");
    assert!(
        refused.iter().any(|e| e["event"]["by"] == "carol"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .filter(|e| e["event"]["by"] == "bob" && e["event"]["code"] == "not_pending")
            .count()
            == 2,
        "the click after the decision and the replay: {refused:?}"
    );
    // No secret reached the audit log.
    let (_, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    assert!(
        !log.to_string().contains(SIGNING_SECRET) && !log.to_string().contains("pdFZKVeTuE8sk")
    );
}

/// The requester's own click and a double click are refused and audited; Deny, Approve with
/// changes and Ask open modals whose submissions vote (invalid JSON refused in the modal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refuses_self_approval_and_double_clicks_and_votes_through_modals() {
    let (double, durl) = SlackDouble::start().await;
    *double.rate_limit_first_post.lock().unwrap() = false;
    let gw = start(&durl).await;
    // alice (an SRE) asks for a deploy herself: she may not approve it.
    let own = id(&gw
        .submit(
            "alice",
            json!({"action": "deploy", "resource": "svc/a", "justification": "mine"}),
        )
        .await);
    let (b, t, s) = signed(
        &click("UALICE", "countersign_approve", &own, "self", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:self", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );
    // An export needs two of group:data: bob's second click is refused.
    let export = id(&gw
        .submit("bot", json!({"action": "db.export", "resource": "db/users", "justification": "q3", "params": {"rows": 5}}))
        .await);
    for hook in ["b1", "b2"] {
        let (b, t, s) = signed(
            &click("UBOB", "countersign_approve", &export, hook, &durl),
            now_secs(),
        );
        assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    }
    let hook = double.wait_for("hook:b2", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );
    assert!(
        double.calls("hook:b1").is_empty(),
        "the first click counted"
    );
    // carol: Approve with changes opens a modal with the parameters.
    let (b, t, s) = signed(
        &click("UCAROL", "countersign_modify", &export, "m", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let opened = double.wait_for("views.open", 1).await.remove(0);
    // The modal carries the action and the version it shows, which its vote binds to.
    let (_, before) = gw.get("bot", &format!("/v1/actions/{export}")).await;
    let old_digest = before["digest"].as_str().unwrap().to_string();
    assert_eq!(
        opened["view"]["private_metadata"],
        format!("{export} {old_digest}").as_str()
    );
    assert!(
        opened["view"]["blocks"].to_string().contains("rows"),
        "{opened}"
    );
    slack_sdk("blocks", &json!([opened["view"]["blocks"]]));
    let submit = |params: &str| {
        json!({
            "type": "view_submission",
            "user": {"id": "UCAROL"},
            "view": {
                "id": "V0123", "type": "modal", "callback_id": "countersign_modify",
                "private_metadata": opened["view"]["private_metadata"],
                "state": {"values": {
                    "params": {"value": {"type": "plain_text_input", "value": params}},
                    "comment": {"value": {"type": "plain_text_input", "value": "fewer rows"}},
                }},
            },
        })
    };
    let (b, t, s) = signed(&submit("{not json"), now_secs());
    let (status, answer) = post_signed(&gw, b, &t, &s).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(answer["errors"]["params"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    let (b, t, s) = signed(&submit("{\"rows\": 1}"), now_secs());
    let (status, answer) = post_signed(&gw, b, &t, &s).await;
    assert_eq!((status, answer), (200, Value::Null));
    let (_, got) = gw.get("bot", &format!("/v1/actions/{export}")).await;
    assert_eq!(got["params"]["rows"], 1, "{got}");
    assert_eq!(got["status"], "pending", "{got}");
    // bob's click on the message as it was before carol's change (its button carries the old
    // version's digest, as every posted button does) is refused and audited, not counted for a
    // version he did not see; the same click on the rewritten message counts (his first
    // approval was of the old version).
    let posted = double.calls("chat.update");
    let buttons = posted.last().unwrap()["blocks"].to_string();
    assert!(buttons.contains(&format!("{export} sha256:")), "{buttons}");
    let (b, t, s) = signed(
        &click(
            "UBOB",
            "countersign_approve",
            &format!("{export} {old_digest}"),
            "stale",
            &durl,
        ),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:stale", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().contains("digest_mismatch"),
        "{hook}"
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{export}")).await;
    assert_eq!(got["status"], "pending", "{got}");
    let current = got["digest"].as_str().unwrap();
    let (b, t, s) = signed(
        &click(
            "UBOB",
            "countersign_approve",
            &format!("{export} {current}"),
            "fresh",
            &durl,
        ),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let (_, got) = gw.get("bot", &format!("/v1/actions/{export}")).await;
    assert_eq!(got["status"], "approved", "{got}");

    // A click after expiry (the `quick` rule's review lasts 1 s) is refused and audited.
    let quick = id(&gw
        .submit(
            "bot",
            json!({"action": "quick", "resource": "svc/q", "justification": "q"}),
        )
        .await);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (b, t, s) = signed(
        &click("UBOB", "countersign_approve", &quick, "expired", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let hook = double.wait_for("hook:expired", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().starts_with("Refused"),
        "{hook}"
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{quick}")).await;
    assert_eq!(got["status"], "expired", "{got}");

    // Deny through its modal, with a reason; Ask through its modal (an empty question is
    // refused in the modal).
    let modal = |user: &str, callback: &str, action: &str, block: &str, value: &str| {
        json!({
            "type": "view_submission",
            "user": {"id": user},
            "view": {
                "id": "V0124", "type": "modal", "callback_id": callback,
                "private_metadata": action,
                "state": {"values": {block: {"value": {"type": "plain_text_input", "value": value}}}},
            },
        })
    };
    let d2 = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/b", "justification": "b"}),
        )
        .await);
    let (b, t, s) = signed(
        &click("UBOB", "countersign_deny", &d2, "d2", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let opened = double.wait_for("views.open", 2).await.remove(1);
    assert_eq!(opened["view"]["callback_id"], "countersign_deny");
    slack_sdk("blocks", &json!([opened["view"]["blocks"]]));
    let (b, t, s) = signed(
        &modal("UBOB", "countersign_deny", &d2, "comment", "not now"),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await, (200, Value::Null));
    let (_, got) = gw.get("bot", &format!("/v1/actions/{d2}")).await;
    assert_eq!(got["status"], "rejected", "{got}");
    let d3 = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/c", "justification": "c"}),
        )
        .await);
    let (b, t, s) = signed(
        &modal("UBOB", "countersign_ask", &d3, "question", "  "),
        now_secs(),
    );
    let (_, answer) = post_signed(&gw, b, &t, &s).await;
    assert_eq!(answer["response_action"], "errors", "{answer}");
    let (b, t, s) = signed(
        &modal("UBOB", "countersign_ask", &d3, "question", "which region?"),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await, (200, Value::Null));
    let (_, got) = gw.get("bot", &format!("/v1/actions/{d3}")).await;
    assert_eq!(got["status"], "needs_clarification", "{got}");
    let start = Instant::now();
    while !double
        .calls("chat.update")
        .iter()
        .any(|u| u["blocks"].to_string().contains("which region?"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the question is not shown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The requester's answer appears in the message's thread (and in the rewritten message).
    let (status, _) = gw
        .post(
            "bot",
            &format!("/v1/actions/{d3}/answer"),
            json!({"answer": "eu-west-1"}),
        )
        .await;
    assert_eq!(status, 200);
    let start = Instant::now();
    let reply = loop {
        if let Some(r) = double
            .calls("chat.postMessage")
            .into_iter()
            .find(|p| p.get("thread_ts").is_some())
        {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no thread reply");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply["channel"], "C0APPROVALS");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("which region?") && text.contains("eu-west-1"),
        "{text}"
    );

    // Mapping by the Slack profile's confirmed email (users.info): dave is mapped (and then
    // refused by the core: not an approver); an unconfirmed email and a bot are not.
    for (user, hook) in [
        ("UDAVE", "dave"),
        ("UUNCONFIRMED", "unconfirmed"),
        ("BOTUSER", "botuser"),
    ] {
        let (b, t, s) = signed(
            &click(user, "countersign_approve", &d3, hook, &durl),
            now_secs(),
        );
        assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
        let got = double.wait_for(&format!("hook:{hook}"), 1).await.remove(0);
        assert!(
            got["text"].as_str().unwrap().starts_with("Refused"),
            "{got}"
        );
    }

    // A cancellation from the API rewrites the message too: final state, no buttons.
    let (status, _) = gw
        .post("bot", &format!("/v1/actions/{d3}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    let start = Instant::now();
    let cancelled = loop {
        if let Some(u) = double.calls("chat.update").into_iter().find(|u| {
            let b = u["blocks"].to_string();
            b.contains("svc/c") && b.contains("Final state: cancelled")
        }) {
            break u;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no cancelled update"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!cancelled["blocks"]
        .to_string()
        .contains("countersign_approve"));

    // Hostile requests: no signature headers; a signed body that is not a payload.
    let resp = gw
        .http
        .post(format!("{}/v1/channels/slack/interactions", gw.url))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "slack_signature_missing");
    let ts = now_secs();
    let body = "token=x&payload=not-json";
    let sig = slack_sdk(
        "sign",
        &json!({"secret": SIGNING_SECRET, "requests": [{"timestamp": ts, "body": body}]}),
    )
    .remove(0);
    let (status, v) = post_signed(&gw, body.to_string(), &ts.to_string(), &sig).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    let refused = gw.refusals().await;
    let by = |who: &str, code: Option<&str>| {
        refused
            .iter()
            .any(|e| e["event"]["by"] == who && code.is_none_or(|c| e["event"]["code"] == c))
    };
    assert!(by("alice", None), "{refused:?}");
    assert!(by("bob", None), "{refused:?}");
    assert!(by("dave", None), "mapped by email: {refused:?}");
    assert!(
        refused
            .iter()
            .any(|e| e["action_id"] == quick.as_str() && e["event"]["by"] == "bob"),
        "the click after expiry: {refused:?}"
    );
    assert!(
        by("slack:UUNCONFIRMED", Some("unmapped_chat_user")),
        "{refused:?}"
    );
    assert!(
        by("slack:BOTUSER", Some("chat_user_is_a_bot")),
        "{refused:?}"
    );
}

/// Socket Mode: the gateway opens the connection (`apps.connections.open` with the app token),
/// answers `interactive` envelopes with acks after voting like the HTTP route, and opens a new
/// connection when Slack sends a `disconnect` envelope; the HTTP route is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_votes_acks_envelopes_and_reconnects_on_disconnect() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;

    let (double, durl) = SlackDouble::start().await;
    *double.rate_limit_first_post.lock().unwrap() = false;
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *double.socket_url.lock().unwrap() = format!(
        "ws://{}/link/?ticket=0123-secret-ticket&app_id=A0APP",
        ws.local_addr().unwrap()
    );
    let (conns, mut next_conn) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = ws.accept().await.unwrap();
            let conns = conns.clone();
            tokio::spawn(async move {
                if let Ok(s) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = conns.send(s);
                }
            });
        }
    });
    let gw = start_mode(&durl, "mode = \"socket\"").await;
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "applink-1", "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0APP"}});
    let mut conn = tokio::time::timeout(Duration::from_secs(20), next_conn.recv())
        .await
        .expect("the gateway connects")
        .unwrap();
    conn.send(Frame::Text(hello.to_string().into()))
        .await
        .unwrap();
    // No HTTP interactivity route in Socket Mode.
    let resp = gw
        .http
        .post(format!("{}/v1/channels/slack/interactions", gw.url))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let action = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/s", "justification": "s"}),
        )
        .await);
    double.wait_for("chat.postMessage", 1).await;
    let envelope = |eid: &str, payload: Value| json!({"envelope_id": eid, "type": "interactive", "accepts_response_payload": true, "payload": payload});
    conn.send(Frame::Text(
        envelope(
            "e1",
            click("UBOB", "countersign_approve", &action, "s1", &durl),
        )
        .to_string()
        .into(),
    ))
    .await
    .unwrap();
    let ack = loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.next())
            .await
            .unwrap()
        {
            Some(Ok(Frame::Text(t))) => break serde_json::from_str::<Value>(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ack, json!({"envelope_id": "e1"}));
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "approved", "{got}");

    // Slack refreshes the connection: a new one is opened and works.
    conn.send(Frame::Text(
        json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-1"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut conn2 = tokio::time::timeout(Duration::from_secs(20), next_conn.recv())
        .await
        .expect("the gateway reconnects")
        .unwrap();
    assert_eq!(double.calls("apps.connections.open").len(), 2);
    conn2
        .send(Frame::Text(hello.to_string().into()))
        .await
        .unwrap();
    let second = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/t", "justification": "t"}),
        )
        .await);
    conn2
        .send(Frame::Text(
            envelope(
                "e2",
                click("UNOBODY", "countersign_approve", &second, "s2", &durl),
            )
            .to_string()
            .into(),
        ))
        .await
        .unwrap();
    let ack = loop {
        match tokio::time::timeout(Duration::from_secs(10), conn2.next())
            .await
            .unwrap()
        {
            Some(Ok(Frame::Text(t))) => break serde_json::from_str::<Value>(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ack["envelope_id"], "e2");
    let hook = double.wait_for("hook:s2", 1).await.remove(0);
    assert!(
        hook["text"].as_str().unwrap().contains("not mapped"),
        "{hook}"
    );
    let refused = gw.refusals().await;
    assert!(
        refused
            .iter()
            .any(|e| e["event"]["by"] == "slack:UNOBODY"
                && e["event"]["code"] == "unmapped_chat_user"),
        "{refused:?}"
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{second}")).await;
    assert_eq!(got["status"], "pending", "{got}");
}

/// A sign-in older than a day maps nobody from chat (the groups or email it proved may have been
/// taken away since): the recorded row is aged in the database, and the person's click is
/// refused as unmapped, audited, and the review stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_older_than_a_day_maps_nobody_from_chat() {
    use crate::identity::{call, Idp};
    use reqwest::Method;
    let (double, durl) = SlackDouble::start().await;
    let idp = Idp::start().await;
    let gw = start_with(&durl, "mode = \"http\"", &idp.oidc_table(), "").await;
    let token = idp.token(
        "frank",
        &["sre"],
        json!({"email": "frank@example.com", "email_verified": true}),
    );
    let (s, v) = call(&gw, &token, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, 200, "{v}");
    let db = rusqlite::Connection::open(gw.dir.path().join("data/gw.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let aged = db
        .execute(
            "UPDATE identity_contacts SET recorded_at = recorded_at - ?1",
            [25 * 60 * 60 * 1000_i64], // more than a day (CONTACT_MAX_AGE_MS)
        )
        .unwrap();
    assert_eq!(aged, 1);
    drop(db);
    let action = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/a", "environment": "prod", "justification": "ship"}),
        )
        .await);
    let (b, t, s) = signed(
        &click("UFRANK", "countersign_approve", &action, "old", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let got = double.wait_for("hook:old", 1).await.remove(0);
    assert!(
        got["text"].as_str().unwrap().contains("not mapped"),
        "{got}"
    );
    let (_, v) = gw.get("alice", &format!("/v1/actions/{action}")).await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(
        gw.refusals()
            .await
            .iter()
            .any(|e| e["event"]["by"] == "slack:UFRANK"
                && e["event"]["code"] == "unmapped_chat_user"),
        "no audited refusal"
    );
}

/// Issue #15: a person from the identity provider who signed in before (here, one API call with
/// their OIDC token) is mapped from Slack by the verified email their token carried, and votes
/// with the groups it had. Refused, each with an ephemeral reply and an audit entry: someone
/// never seen; a person whose token said the email was not verified; an agent whose token
/// carries the email (verified); an email two people signed in with; an email a configured
/// human has and a person from the identity provider signed in with; and, once a later
/// sign-in no longer proves it, the email recorded before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_from_the_identity_provider_are_mapped_by_their_verified_email() {
    use crate::identity::{call, Idp};
    use reqwest::Method;
    let (double, durl) = SlackDouble::start().await;
    let idp = Idp::start().await;
    let gw = start_with(&durl, "mode = \"http\"", &idp.oidc_table(), "").await;
    let verified = |email: &str| json!({"email": email, "email_verified": true});
    let signs_in = |token: String| {
        let gw = &gw;
        async move {
            let (s, v) = call(gw, &token, Method::GET, "/v1/reviews", None).await;
            assert_eq!(s, 200, "{v}");
        }
    };
    signs_in(idp.token("frank", &["sre"], verified("Frank@example.COM"))).await;
    signs_in(idp.token(
        "gina",
        &["sre"],
        json!({"email": "gina@example.com", "email_verified": false}),
    ))
    .await;
    signs_in(idp.token("sam", &["sre"], verified("shared@example.com"))).await;
    signs_in(idp.token(
        "sam2",
        &["sre"],
        json!({"sub": "sub-sam-2", "email": "shared@example.com", "email_verified": "true"}),
    ))
    .await;
    // The rule makes this token an agent: its verified email maps nobody.
    signs_in(idp.token(
        "whatever",
        &["sre"],
        json!({"azp": "agent-client", "email": "robot@example.com", "email_verified": true}),
    ))
    .await;
    // The configured dave's email, signed in with by someone else at the identity provider.
    signs_in(idp.token("dave-idp", &["sre"], verified("dave@example.com"))).await;

    let deploy = |resource: &str| json!({"action": "deploy", "resource": resource, "environment": "prod", "justification": "ship"});
    let action = id(&gw.submit("bot", deploy("svc/a")).await);
    for (user, hook) in [
        ("USTRANGER", "stranger"),
        ("UGINA", "gina"),
        ("UROBOT", "robot"),
        ("USHARED", "shared"),
        ("UDAVE", "dave"),
    ] {
        let (b, t, s) = signed(
            &click(user, "countersign_approve", &action, hook, &durl),
            now_secs(),
        );
        assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
        let got = double.wait_for(&format!("hook:{hook}"), 1).await.remove(0);
        let text = got["text"].as_str().unwrap();
        assert!(text.starts_with("Refused"), "{user}: {got}");
        let (_, v) = gw.get("alice", &format!("/v1/actions/{action}")).await;
        assert_eq!(v["status"], "pending", "{user}: {v}");
    }
    // frank, an SRE at the identity provider, approves from Slack.
    let (b, t, s) = signed(
        &click("UFRANK", "countersign_approve", &action, "frank", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let start = Instant::now();
    let approved = loop {
        let (_, v) = gw.get("alice", &format!("/v1/actions/{action}")).await;
        if v["status"] != "pending" {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not approved: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(approved["status"], "approved", "{approved}");
    assert!(approved.to_string().contains("frank"), "{approved}");
    assert!(
        double.calls("hook:frank").is_empty(),
        "no refusal for frank"
    );

    // frank signs in again and the token no longer says the email is verified: the email
    // recorded before maps him no more.
    signs_in(idp.token(
        "frank",
        &["sre"],
        json!({"email": "frank@example.com", "email_verified": false}),
    ))
    .await;
    let second = id(&gw.submit("bot", deploy("svc/b")).await);
    let (b, t, s) = signed(
        &click("UFRANK", "countersign_approve", &second, "frank2", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let got = double.wait_for("hook:frank2", 1).await.remove(0);
    assert!(
        got["text"].as_str().unwrap().starts_with("Refused"),
        "{got}"
    );

    let refused = gw.refusals().await;
    let by = |who: &str, code: &str| {
        refused
            .iter()
            .any(|e| e["event"]["by"] == who && e["event"]["code"] == code)
    };
    for (who, code) in [
        ("slack:USTRANGER", "unmapped_chat_user"),
        ("slack:UGINA", "unmapped_chat_user"),
        ("slack:UROBOT", "unmapped_chat_user"),
        ("slack:USHARED", "chat_user_ambiguous"),
        ("slack:UDAVE", "chat_user_ambiguous"),
        ("slack:UFRANK", "unmapped_chat_user"),
    ] {
        assert!(by(who, code), "{who} {code}: {refused:?}");
    }
}

/// Issue #15, across restarts with another configuration: a person recorded from an issuer the
/// config later links (`oidc_subject`) votes from Slack as the configured person; once the
/// config no longer trusts that issuer, their recorded email maps nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_people_follow_the_configuration_of_their_issuer() {
    use crate::identity::{call, Idp};
    let (double, durl) = SlackDouble::start().await;
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let (dir, path) = config_with(&durl, "mode = \"http\"", &idp.oidc_table(), "");
    let base = std::fs::read_to_string(&path).unwrap();
    let restart = |toml: String| {
        std::fs::write(&path, toml).unwrap();
        let path = path.clone();
        async move {
            let (url, server) = serve(&path).await;
            Gw::from_parts(url, client(), tempfile::tempdir().unwrap(), server)
        }
    };
    let gw = restart(base.clone()).await;
    let henry = idp.token(
        "henry",
        &["sre"],
        json!({"email": "henry@example.com", "email_verified": true}),
    );
    let (s, v) = call(&gw, &henry, reqwest::Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, 200, "{v}");
    drop(gw);

    // Linked: henry's account is now the configured `henry-c` (an SRE).
    let linked = format!(
        "{base}\n[[identities]]\nid = \"henry-c\"\nkind = \"human\"\ngroups = [\"sre\"]\n\
         api_key_sha256 = \"{}\"\noidc_subject = \"{}#sub-henry\"\n",
        "ab".repeat(32),
        idp.url
    );
    let gw = restart(linked).await;
    let (action, b, t, s) = click_as_henry(&gw, "linked", &durl).await;
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let (_, v) = gw.get("alice", &format!("/v1/actions/{action}")).await;
    assert_eq!(v["status"], "approved", "{v}");
    assert!(v.to_string().contains("henry-c"), "{v}");
    assert!(double.calls("hook:linked").is_empty());
    drop(gw);

    // The issuer is no longer trusted (another one is): henry maps nobody.
    let gw = restart(base.replace(&idp.url, &other.url)).await;
    let (action, b, t, s) = click_as_henry(&gw, "untrusted", &durl).await;
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let got = double.wait_for("hook:untrusted", 1).await.remove(0);
    assert!(
        got["text"].as_str().unwrap().starts_with("Refused"),
        "{got}"
    );
    let (_, v) = gw.get("alice", &format!("/v1/actions/{action}")).await;
    assert_eq!(v["status"], "pending", "{v}");
    let refused = gw.refusals().await;
    assert!(
        refused
            .iter()
            .any(|e| e["event"]["by"] == "slack:UHENRY"
                && e["event"]["code"] == "unmapped_chat_user"),
        "{refused:?}"
    );
    drop(dir);
}

/// A new `deploy` held for review (by `bot`) and UHENRY's signed click approving it.
async fn click_as_henry(gw: &Gw, hook: &str, durl: &str) -> (String, String, String, String) {
    let action = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/h", "environment": "prod"}),
        )
        .await);
    let (b, t, s) = signed(
        &click("UHENRY", "countersign_approve", &action, hook, durl),
        now_secs(),
    );
    (action, b, t, s)
}
