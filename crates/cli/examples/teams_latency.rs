//! Teams channel latency (issue #15): in-process doubles of Entra ID's token endpoint, the Bot
//! Connector's OpenID metadata and JWKS, and its conversation routes (send, update), as
//! documented; `CONCURRENCY` agents at a time submit a review (`kubectl.delete` on the demo
//! config) and the time from the submission's answer to the double's send activity is taken;
//! then alice clicks Approve (an `adaptiveCard/action` invoke with a Bot Connector token signed
//! by the test key, to `/v1/channels/teams/messages`) while the agent long-polls, and the times
//! from the click to the invoke's answer (the updated card), to the long poll's release and to
//! the update activity showing the final state are taken. Run by bench/teams-latency.sh:
//! `teams_latency URL DOUBLE_PORT APP_ID N CONCURRENCY`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

#[path = "common/latency.rs"]
mod latency;
use latency::{pct, until_seen, Seen};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path;
use serde_json::{json, Value};

/// The tests' Bot Connector signing key (crates/cli/tests/data).
const SIGNING_KEY: &str = include_str!("../tests/data/botframework-test-key.pem");
const PUBLIC_JWK: &str = include_str!("../tests/data/botframework-test-key.jwk.json");
const CONVERSATION: &str = "19:bench@thread.tacv2";
const ALICE_OID: &str = "00000000-0000-0000-0000-0000000a11ce";

/// The action id a card is about (its "action ID" line).
fn action_of(activity: &Value) -> String {
    let text = activity.to_string();
    let i = text
        .find("· action ")
        .map(|i| i + "· action ".len())
        .unwrap_or(0);
    text[i..]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .next()
        .unwrap_or("")
        .to_string()
}

/// The doubles' routes on `port`; what they saw goes into `seen`.
async fn doubles(port: u16, seen: Seen) {
    let base = format!("http://127.0.0.1:{port}");
    let jwks_uri = format!("{base}/v1/.well-known/keys");
    let jwk: Value = serde_json::from_str(PUBLIC_JWK).unwrap();
    let counter = Arc::new(Mutex::new(0u64));
    let app = axum::Router::new()
        .route(
            "/v1/.well-known/openidconfiguration",
            axum::routing::get(move || {
                let jwks_uri = jwks_uri.clone();
                async move {
                    axum::Json(json!({"issuer": "https://api.botframework.com", "jwks_uri": jwks_uri,
                        "id_token_signing_alg_values_supported": ["RS256"]}))
                }
            }),
        )
        .route(
            "/v1/.well-known/keys",
            axum::routing::get(move || {
                let mut k = jwk.clone();
                k["kid"] = json!("k1");
                k["use"] = json!("sig");
                k["endorsements"] = json!(["msteams"]);
                async move { axum::Json(json!({"keys": [k]})) }
            }),
        )
        .route(
            "/tenant/oauth2/v2.0/token",
            axum::routing::post(|| async {
                axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "bench-token"}))
            }),
        )
        .route(
            "/teams/v3/conversations/{c}/activities",
            axum::routing::post({
                let (s, counter) = (seen.clone(), counter.clone());
                move |body: Bytes| {
                    let (s, counter) = (s.clone(), counter.clone());
                    async move {
                        let at = Instant::now();
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        s.0.lock()
                            .unwrap()
                            .entry(format!("{}:posted", action_of(&v)))
                            .or_insert(at);
                        s.1.notify_waiters();
                        let id = {
                            let mut c = counter.lock().unwrap();
                            *c += 1;
                            format!("1:act{}", *c)
                        };
                        (axum::http::StatusCode::CREATED, axum::Json(json!({"id": id})))
                    }
                }
            }),
        )
        .route(
            "/teams/v3/conversations/{c}/activities/{a}",
            axum::routing::put({
                let s = seen.clone();
                move |Path((_, a)): Path<(String, String)>, body: Bytes| {
                    let s = s.clone();
                    async move {
                        let at = Instant::now();
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        if v.to_string().contains("Final state") {
                            s.0.lock()
                                .unwrap()
                                .entry(format!("{}:final", action_of(&v)))
                                .or_insert(at);
                            s.1.notify_waiters();
                        }
                        axum::Json(json!({"id": a}))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// One Bot Connector token for every click (signing RSA per click would time the signer).
fn token(app_id: &str, service_url: &str) -> String {
    use base64::Engine;
    let b64: String = SIGNING_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("k1".into());
    let claims = json!({"iss": "https://api.botframework.com", "aud": app_id,
        "nbf": now - 10, "exp": now + 3600, "serviceUrl": service_url});
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_rsa_der(&der)).unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let port: u16 = args[2].parse().unwrap();
    let app_id = args[3].clone();
    let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(500);
    let concurrency: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(50);
    let seen: Seen = Arc::default();
    doubles(port, seen.clone()).await;
    let service_url = format!("http://127.0.0.1:{port}/teams/");
    let token = Arc::new(token(&app_id, &service_url));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let released = Arc::new(Mutex::new(Vec::new()));
    let updated = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url, seen, gate, token, service_url) = (
            http.clone(),
            url.clone(),
            seen.clone(),
            gate.clone(),
            token.clone(),
            service_url.clone(),
        );
        let (posted, answered, released, updated) = (
            posted.clone(),
            answered.clone(),
            released.clone(),
            updated.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let v: Value = http
                .post(format!("{url}/v1/actions"))
                .bearer_auth("demo-agent-token")
                .json(&json!({"action": "kubectl.delete", "resource": format!("k8s://bench/{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let submitted = Instant::now();
            let id = v["id"].as_str().unwrap().to_string();
            let at = until_seen(&seen, &format!("{id}:posted")).await;
            posted
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(submitted));
            let poll = {
                let (http, url, id) = (http.clone(), url.clone(), id.clone());
                tokio::spawn(async move {
                    let r = http
                        .get(format!("{url}/v1/actions/{id}?wait=30"))
                        .bearer_auth("demo-agent-token")
                        .send()
                        .await
                        .unwrap();
                    let v: Value = r.json().await.unwrap();
                    (
                        Instant::now(),
                        v["status"].as_str().unwrap_or("").to_string(),
                    )
                })
            };
            // Let the long poll start waiting.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let invoke = json!({
                "type": "invoke", "name": "adaptiveCard/action", "id": format!("f:{i}"),
                "serviceUrl": service_url, "channelId": "msteams",
                "from": {"id": "29:alice", "aadObjectId": ALICE_OID},
                "conversation": {"id": CONVERSATION},
                "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {"action": id}}, "trigger": "manual"},
            });
            let clicked = Instant::now();
            let resp = http
                .post(format!("{url}/v1/channels/teams/messages"))
                .bearer_auth(token.as_str())
                .json(&invoke)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(answer["statusCode"], 200, "{answer}");
            answered.lock().unwrap().push(clicked.elapsed());
            let (at, status) = poll.await.unwrap();
            assert_eq!(status, "approved");
            released
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(clicked));
            let at = until_seen(&seen, &format!("{id}:final")).await;
            updated
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(clicked));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    pct(
        posted.lock().unwrap().clone(),
        &format!("review opened -> card sent to the Bot Connector ({concurrency} concurrent)"),
    );
    pct(
        answered.lock().unwrap().clone(),
        &format!("click -> invoke answered with the updated card ({concurrency} concurrent)"),
    );
    pct(
        released.lock().unwrap().clone(),
        &format!("click -> vote committed -> long poll released ({concurrency} concurrent)"),
    );
    pct(
        updated.lock().unwrap().clone(),
        &format!("click -> card updated in place with the final state ({concurrency} concurrent)"),
    );
}
