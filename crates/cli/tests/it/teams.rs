//! The Microsoft Teams channel end to end, against local doubles of what this machine cannot
//! reach, following Microsoft's documented contracts: Entra ID's v2.0 token endpoint
//! (client credentials), the Bot Connector's OpenID metadata and JWKS (keys with
//! `endorsements`; tokens signed here with a test RSA key), and the Bot Connector's
//! conversation routes (`POST .../activities` answering one 429 with `Retry-After` first,
//! `PUT .../activities/{id}` answering one 503 first, replies). An action held for review is
//! posted as an Adaptive Card that the official `adaptivecards` package parses; a signed
//! `adaptiveCard/action` invoke approves it and is answered with the updated card; the agent's
//! long poll is released and the card is rewritten in place. Modify and ask (with the agent's
//! answer) too; the requester's own click, an unmapped user, a non-approver, a double click, a
//! replayed activity and a click after expiry are refused and audited; forged, expired,
//! misaddressed and malformed requests are 401/400/413 with stable codes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::{client, id, now_secs, serve, write_config, Calls, Gw};

pub(crate) const APP_ID: &str = "6f1c2b6e-0d1a-4c59-9d7e-2b1f3c4d5e6f";
const APP_PASSWORD: &str = "Zq8~TeStSeCrEt.aBcDeFgHiJkLmNoPqRsT";
pub(crate) const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.ConnectorAccessTokenSecret.sig";
pub(crate) const CONVERSATION: &str = "19:4a1b2c3d5e6f@thread.tacv2";
const ISSUER: &str = "https://api.botframework.com";
pub(crate) const ALICE_OID: &str = "00000000-0000-0000-0000-0000000a11ce";
pub(crate) const BOB_OID: &str = "00000000-0000-0000-0000-000000000b0b";
pub(crate) const CAROL_OID: &str = "00000000-0000-0000-0000-0000000ca201";
const STRANGER_OID: &str = "00000000-0000-0000-0000-00000000dead";

/// A test-only RSA key (2048 bits), the Bot Connector's signing key in these tests (and in
/// `examples/teams_latency.rs`), and its public JWK.
const SIGNING_KEY: &str = include_str!("../data/botframework-test-key.pem");
const PUBLIC_JWK: &str = include_str!("../data/botframework-test-key.jwk.json");

fn public_key() -> (String, String) {
    let v: Value = serde_json::from_str(PUBLIC_JWK).unwrap();
    (
        v["n"].as_str().unwrap().into(),
        v["e"].as_str().unwrap().into(),
    )
}

/// The doubles: every call they got, as (route, JSON body).
#[derive(Clone, Default)]
pub(crate) struct MsDouble {
    calls: Calls,
    /// Every request to the Bot Connector's conversation routes as it arrived (the ones answered
    /// 429 or 503 too): (route, body).
    pub(crate) raw: Arc<Mutex<Vec<(String, String)>>>,
    pub(crate) throttle_first_post: Arc<Mutex<bool>>,
    unavailable_first_put: Arc<Mutex<bool>>,
    /// Answer the next send 401 (a revoked token), once.
    unauthorized_next_send: Arc<Mutex<bool>>,
    /// When the 429 was answered and when the first send then succeeded.
    throttled: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
}

impl MsDouble {
    async fn start() -> (MsDouble, String) {
        let d = MsDouble {
            throttle_first_post: Arc::new(Mutex::new(true)),
            unavailable_first_put: Arc::new(Mutex::new(true)),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let jwks_uri = format!("{url}/v1/.well-known/keys");
        let (m1, m2, m3, m4, m5) = (d.clone(), d.clone(), d.clone(), d.clone(), d.clone());
        let app = axum::Router::new()
            // The Bot Connector's OpenID metadata, as documented.
            .route(
                "/v1/.well-known/openidconfiguration",
                axum::routing::get(move || {
                    let jwks_uri = jwks_uri.clone();
                    async move {
                        axum::Json(json!({
                            "issuer": ISSUER,
                            "authorization_endpoint": "https://invalid.botframework.com",
                            "jwks_uri": jwks_uri,
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        }))
                    }
                }),
            )
            // Its keys: JWKs with `endorsements` (the channel ids a key may sign for). "k2" is
            // the same key endorsed only for another channel.
            .route(
                "/v1/.well-known/keys",
                axum::routing::get(move || {
                    m1.record("keys", Value::Null);
                    let (n, e) = public_key();
                    async move {
                        axum::Json(json!({"keys": [
                            {"kty": "RSA", "use": "sig", "kid": "k1", "x5t": "k1", "n": n, "e": e,
                             "endorsements": ["msteams", "webchat"]},
                            {"kty": "RSA", "use": "sig", "kid": "k2", "x5t": "k2", "n": n, "e": e,
                             "endorsements": ["skype"]},
                        ]}))
                    }
                }),
            )
            // Entra ID's v2.0 token endpoint, client credentials.
            .route(
                "/{tenant}/oauth2/v2.0/token",
                axum::routing::post(move |UrlPath(tenant): UrlPath<String>, body: Bytes| {
                    let me = m2.clone();
                    async move { me.token(&tenant, &body) }
                }),
            )
            .route(
                "/teams/v3/conversations/{conversation}/activities",
                axum::routing::post(
                    move |UrlPath(c): UrlPath<String>, headers: HeaderMap, body: Bytes| {
                        let me = m3.clone();
                        async move { me.connector("send", &c, None, &headers, &body) }
                    },
                ),
            )
            .route(
                "/teams/v3/conversations/{conversation}/activities/{activity}",
                axum::routing::put(
                    move |UrlPath((c, a)): UrlPath<(String, String)>,
                          headers: HeaderMap,
                          body: Bytes| {
                        let me = m4.clone();
                        async move { me.connector("update", &c, Some(&a), &headers, &body) }
                    },
                )
                .post(
                    move |UrlPath((c, a)): UrlPath<(String, String)>,
                          headers: HeaderMap,
                          body: Bytes| {
                        let me = m5.clone();
                        async move { me.connector("reply", &c, Some(&a), &headers, &body) }
                    },
                ),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (d, url)
    }

    fn record(&self, route: &str, v: Value) {
        self.calls.push(route, v);
    }

    /// `POST /{tenant}/oauth2/v2.0/token`: the form of a client-credentials grant; an OAuth
    /// error body (`invalid_client`) otherwise.
    fn token(&self, tenant: &str, body: &[u8]) -> axum::response::Response {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        self.record("token", json!({"tenant": tenant, "form": form}));
        let ok = tenant == TENANT
            && form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(APP_ID)
            && form.get("client_secret").map(String::as_str) == Some(APP_PASSWORD)
            && form.get("scope").map(String::as_str)
                == Some("https://api.botframework.com/.default");
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})),
            )
                .into_response();
        }
        axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ACCESS_TOKEN}))
            .into_response()
    }

    /// The Bot Connector's conversation routes: a `ResourceResponse` (`{"id"}`) or an
    /// `ErrorResponse` (`{"error": {"code", "message"}}`).
    fn connector(
        &self,
        route: &str,
        conversation: &str,
        activity: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> axum::response::Response {
        self.raw.lock().unwrap().push((
            route.to_string(),
            String::from_utf8_lossy(body).into_owned(),
        ));
        let error = |status: StatusCode, code: &str| {
            (
                status,
                axum::Json(json!({"error": {"code": code, "message": code}})),
            )
                .into_response()
        };
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {ACCESS_TOKEN}")) {
            return error(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        if route == "send" && std::mem::take(&mut *self.unauthorized_next_send.lock().unwrap()) {
            return error(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        if conversation != CONVERSATION {
            return error(StatusCode::NOT_FOUND, "ConversationNotFound");
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return error(StatusCode::BAD_REQUEST, "BadSyntax");
        };
        if route == "send" {
            let mut first = self.throttle_first_post.lock().unwrap();
            let mut throttled = self.throttled.lock().unwrap();
            if std::mem::take(&mut *first) {
                throttled.0 = Some(Instant::now());
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
            }
            throttled.1.get_or_insert_with(Instant::now);
        }
        if route == "update" {
            let mut first = self.unavailable_first_put.lock().unwrap();
            if std::mem::take(&mut *first) {
                return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
            }
        }
        let mut calls = self.calls.lock();
        let sent = calls.iter().filter(|(r, _)| r == "send").count();
        let known = activity.is_none_or(|a| (1..=sent).any(|n| a == format!("1:act{n}")));
        if !known {
            return error(StatusCode::NOT_FOUND, "ActivityNotFound");
        }
        calls.push((route.to_string(), json!({"activity": activity, "body": v})));
        match route {
            "send" => (
                StatusCode::CREATED,
                axum::Json(json!({"id": format!("1:act{}", sent + 1)})),
            )
                .into_response(),
            "reply" => (StatusCode::CREATED, axum::Json(json!({"id": "1:reply"}))).into_response(),
            _ => axum::Json(json!({"id": activity})).into_response(),
        }
    }

    pub(crate) fn calls(&self, route: &str) -> Vec<Value> {
        self.calls.of(route)
    }

    pub(crate) async fn wait_for(&self, route: &str, what: impl Fn(&Value) -> bool) -> Value {
        let got = self
            .calls
            .wait_until(route, |got| got.iter().any(&what))
            .await;
        got.into_iter().find(|v| what(v)).unwrap()
    }
}

/// A Bot Connector token for `claims`, signed with the test key under `kid`.
fn token_with(kid: &str, alg: Algorithm, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    h.x5t = Some(kid.into());
    use base64::Engine;
    let b64: String = SIGNING_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let key = EncodingKey::from_rsa_der(&der);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn claims(service_url: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": ISSUER, "aud": APP_ID, "nbf": now - 10, "exp": now + 3600, "iat": now - 10,
        "serviceUrl": service_url,
    })
}

/// The card of the first (or `n`th) attachment of a sent activity.
pub(crate) fn card_of(call: &Value) -> Value {
    let a = &call["body"]["attachments"][0];
    assert_eq!(
        a["contentType"], "application/vnd.microsoft.card.adaptive",
        "{call}"
    );
    a["content"].clone()
}

/// Runs tests/interop/adaptive_card_check.cjs (the official `adaptivecards` package) over
/// `cards`; one summary line per card.
fn adaptivecards(cards: &[Value]) -> Vec<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(cards).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        root.join("tests/node_modules/adaptivecards").exists(),
        "tests/node_modules lacks adaptivecards: run scripts/test, which provisions it"
    );
    let out = std::process::Command::new("node")
        .arg(root.join("tests/interop/adaptive_card_check.cjs"))
        .arg(file.path())
        .output()
        .unwrap();
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

pub(crate) struct Teams {
    pub(crate) gw: Gw,
    pub(crate) double: MsDouble,
    service_url: String,
}

impl Teams {
    async fn start() -> Teams {
        Teams::start_with("app_password_env = \"COUNTERSIGN_TEST_TEAMS_PASSWORD\"").await
    }

    /// With `password` the `[teams]` line giving the client secret.
    async fn start_with(password: &str) -> Teams {
        Teams::start_configured(password, "", None).await
    }

    /// With `password` the `[teams]` line giving the client secret, `extra` more TOML and
    /// `policies` (Cedar) instead of the shared test policies.
    pub(crate) async fn start_configured(
        password: &str,
        extra: &str,
        policies: Option<&str>,
    ) -> Teams {
        let (double, durl) = MsDouble::start().await;
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "[teams]\napp_id = \"{APP_ID}\"\n{password}\ntenant_id = \"{TENANT}\"\ntoken_url = \"{durl}/{TENANT}/oauth2/v2.0/token\"\nopenid_metadata_url = \"{durl}/v1/.well-known/openidconfiguration\"\nservice_url = \"{durl}/teams/\"\ndefault_channel = \"sre-approvals\"\n\n[teams.conversations]\nsre-approvals = \"{CONVERSATION}\"\n\n[outbox]\nbackoff_base = \"50ms\"\n\n{extra}"
        );
        std::env::set_var("COUNTERSIGN_TEST_TEAMS_PASSWORD", APP_PASSWORD);
        let path = write_config(dir.path(), &extra);
        if let Some(p) = policies {
            std::fs::write(dir.path().join("policies/test.cedar"), p).unwrap();
        }
        let mut toml = std::fs::read_to_string(&path).unwrap();
        for (who, oid) in [("alice", ALICE_OID), ("bob", BOB_OID), ("carol", CAROL_OID)] {
            toml = toml.replace(
                &format!("id = \"{who}\"\nkind = \"human\"\n"),
                &format!("id = \"{who}\"\nkind = \"human\"\nteams_aad_object_id = \"{oid}\"\n"),
            );
        }
        std::fs::write(&path, toml).unwrap();
        let (url, server) = serve(&path).await;
        Teams {
            gw: Gw::from_parts(url, client(), dir, server),
            double,
            service_url: format!("{durl}/teams/"),
        }
    }

    /// Posts `body` to the messaging endpoint with `token`.
    async fn post_raw(&self, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .gw
            .http
            .post(format!("{}/v1/channels/teams/messages", self.gw.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An `adaptiveCard/action` invoke from `oid`, as Teams sends it, with a good token.
    fn invoke(&self, oid: &str, verb: &str, data: Value) -> Vec<u8> {
        json!({
            "type": "invoke", "name": "adaptiveCard/action",
            "id": format!("f:{}", rand::random::<u64>()),
            "timestamp": "2026-12-01T10:00:00.000Z", "localTimestamp": "2026-12-01T11:00:00.000+01:00",
            "serviceUrl": self.service_url, "channelId": "msteams",
            "from": {"id": format!("29:1{oid}"), "name": "Someone", "aadObjectId": oid},
            "conversation": {"isGroup": true, "conversationType": "channel", "tenantId": TENANT, "id": format!("{CONVERSATION};messageid=1")},
            "recipient": {"id": format!("28:{APP_ID}"), "name": "countersign"},
            "entities": [{"locale": "en-US", "country": "US", "platform": "Web", "timezone": "Europe/London", "type": "clientInfo"}],
            "channelData": {"tenant": {"id": TENANT}, "source": {"name": "message"}},
            "replyToId": "1:act1",
            "value": {"action": {"type": "Action.Execute", "title": verb, "verb": verb, "data": data}, "trigger": "manual"},
            "locale": "en-US",
        })
        .to_string()
        .into_bytes()
    }

    pub(crate) async fn click(&self, oid: &str, verb: &str, data: Value) -> Value {
        let body = self.invoke(oid, verb, data);
        let (status, answer) = self.post_raw(Some(&self.good_token()), body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    fn good_token(&self) -> String {
        token_with("k1", Algorithm::RS256, &claims(&self.service_url))
    }
}

pub(crate) fn refused_code(answer: &Value) -> &str {
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert_eq!(
        answer["type"], "application/vnd.microsoft.error",
        "{answer}"
    );
    answer["value"]["code"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_click_approves_a_held_action_and_the_card_shows_the_final_state() {
    let t = Teams::start().await;
    let gw = &t.gw;
    let v = gw
        .submit(
            "bot",
            json!({
                "action": "deploy", "resource": "svc/payments", "environment": "prod",
                "justification": "ship [fix](https://evil.example) 42",
                "params": {"version": "1.2.3", "notes": "x".repeat(3000)},
            }),
        )
        .await;
    let action = id(&v);
    let poll = gw.long_poll("bot", &action);
    // Posted once the Bot Connector's 429 (Retry-After: 1) has passed, with a token from the
    // client-credentials grant.
    let sent = t.double.wait_for("send", |_| true).await;
    let (throttled, ok) = *t.double.throttled.lock().unwrap();
    let waited = ok.unwrap() - throttled.unwrap();
    // The outbox's own backoff here is 50 ms; the Bot Connector asked for 1 s.
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After not honoured: {waited:?}"
    );
    let grant = t.double.calls("token").remove(0);
    assert_eq!(
        grant["form"]["scope"],
        "https://api.botframework.com/.default"
    );
    let card = card_of(&sent);
    assert_eq!(card["version"], "1.5");
    let all = card.to_string();
    for needle in [
        "Review: deploy on svc/payments",
        "prod",
        r#""text":"Requester: ","weight":"Bolder"},{"type":"TextRun","text":"bot"}"#,
        "ship [fix](https://evil.example) 42",
        "deploys need an SRE",
        "0 of 1 from group:sre",
        "Truncated: 2500 of",
        "left · action",
    ] {
        assert!(all.contains(needle), "{needle} not in {all}");
    }
    // The requester's text is a TextRun (never markdown), not a TextBlock.
    assert!(!all.contains(r#""type":"TextBlock""#), "{all}");
    let actions: Vec<&str> = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["Approve", "Deny", "Approve with changes", "Ask a question"]
    );
    // Microsoft's own object model parses it, with no warning, as 1.5 with Action.Execute.
    let parsed = adaptivecards(std::slice::from_ref(&card));
    assert!(
        parsed[0].ends_with(
            "Action.Execute,Action.ShowCard[Action.Execute],Action.ShowCard[Action.Execute],Action.ShowCard[Action.Execute]"
        ) && parsed[0].starts_with("1.5 RichTextBlock"),
        "{parsed:?}"
    );

    // Refusals before the good click: each answered with the error shape, none counted.
    let a = json!({"action": action});
    assert_eq!(
        refused_code(&t.click(STRANGER_OID, "approve", a.clone()).await),
        "unmapped_chat_user"
    );
    assert_eq!(
        refused_code(&t.click(CAROL_OID, "approve", a.clone()).await),
        "not_an_approver"
    );
    // bob, but from another tenant (another organisation's Teams): refused.
    let mut foreign: Value =
        serde_json::from_slice(&t.invoke(BOB_OID, "approve", a.clone())).unwrap();
    foreign["channelData"]["tenant"]["id"] = json!("11111111-2222-3333-4444-555555555555");
    let (status, answer) = t
        .post_raw(Some(&t.good_token()), foreign.to_string().into_bytes())
        .await;
    assert_eq!(
        (status, refused_code(&answer)),
        (200, "teams_tenant_mismatch")
    );

    // bob approves: the answer is the updated card, final, with no actions.
    let good = t.invoke(BOB_OID, "approve", a.clone());
    let started = Instant::now();
    let (status, answer) = t.post_raw(Some(&t.good_token()), good.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status, 200);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["type"], "application/vnd.microsoft.card.adaptive");
    assert!(answer["value"].get("actions").is_none(), "{answer}");
    assert!(
        answer["value"].to_string().contains("Final state"),
        "{answer}"
    );
    adaptivecards(&[answer["value"].clone()]);
    let done = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done["status"], "approved", "{done}");
    // The card is rewritten in place (after one 503 with Retry-After): same activity, final.
    let update = t
        .double
        .wait_for("update", |u| u.to_string().contains("Final state"))
        .await;
    assert_eq!(update["activity"], "1:act1");
    let final_card = card_of(&update);
    assert!(final_card.get("actions").is_none());
    assert!(
        final_card.to_string().contains("bob — approve"),
        "{final_card}"
    );
    adaptivecards(&[final_card]);

    // A double click and the very same activity replayed: refused, nothing counted twice.
    assert_eq!(
        refused_code(&t.click(BOB_OID, "approve", a.clone()).await),
        "not_pending"
    );
    let (status, answer) = t.post_raw(Some(&t.good_token()), good).await;
    assert_eq!(
        (status, refused_code(&answer)),
        (200, "teams_activity_replayed")
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["review"]["votes"].as_array().unwrap().len(), 1, "{got}");
    // One token for all of it (cached).
    assert_eq!(t.double.calls("token").len(), 1);

    let refused = gw.refusals().await;
    let by = |who: &str, code: &str| {
        refused
            .iter()
            .filter(|e| e["event"]["by"] == who && e["event"]["code"] == code)
            .count()
    };
    assert_eq!(
        by(&format!("teams:{STRANGER_OID}"), "unmapped_chat_user"),
        1,
        "{refused:?}"
    );
    assert_eq!(by("carol", "not_an_approver"), 1, "{refused:?}");
    assert_eq!(
        by(&format!("teams:{BOB_OID}"), "teams_tenant_mismatch"),
        1,
        "{refused:?}"
    );
    assert_eq!(by("bob", "not_pending"), 1, "{refused:?}");
    assert_eq!(by("bob", "teams_activity_replayed"), 1, "{refused:?}");
    // No secret reached the audit log.
    let (_, log) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let text = log.to_string();
    assert!(!text.contains(APP_PASSWORD) && !text.contains("ConnectorAccessTokenSecret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_modify_ask_answer_self_approval_and_expiry() {
    let t = Teams::start().await;
    let gw = &t.gw;
    // The requester's own click (alice asks, alice approves) is refused.
    let own = id(&gw
        .submit(
            "alice",
            json!({"action": "deploy", "resource": "svc/own", "justification": "mine"}),
        )
        .await);
    assert_eq!(
        refused_code(&t.click(ALICE_OID, "approve", json!({"action": own})).await),
        "self_approval"
    );

    // Ask a question: an empty one is refused; a real one is shown on the card.
    let d = id(&gw
        .submit("bot", json!({"action": "deploy", "resource": "svc/q", "justification": "q", "params": {"region": "?"}}))
        .await);
    assert_eq!(
        refused_code(
            &t.click(BOB_OID, "ask", json!({"action": d, "question": "  "}))
                .await
        ),
        "invalid_request"
    );
    let answer = t
        .click(
            BOB_OID,
            "ask",
            json!({"action": d, "question": "which region?", "deny_comment": ""}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(answer["value"].to_string().contains("which region?"));
    let (_, got) = gw.get("bot", &format!("/v1/actions/{d}")).await;
    assert_eq!(got["status"], "needs_clarification", "{got}");
    // The agent answers through the API: the card is rewritten and the answer is a reply to it.
    let (status, _) = gw
        .post(
            "bot",
            &format!("/v1/actions/{d}/answer"),
            json!({"answer": "eu-west-1"}),
        )
        .await;
    assert_eq!(status, 200);
    let reply = t.double.wait_for("reply", |_| true).await;
    let text = reply["body"]["text"].as_str().unwrap();
    assert!(
        text.contains("which region?") && text.contains("eu-west-1"),
        "{text}"
    );
    assert_eq!(reply["body"]["textFormat"], "plain");
    t.double
        .wait_for("update", |u| u.to_string().contains("eu-west-1"))
        .await;

    // Approve with changes: the input holds the parameters; bad JSON is refused; a JSON object
    // approves the changed action, and the agent's long poll is released with it.
    // The agent waits again, now that its answer reopened the review.
    let poll = gw.long_poll("bot", &d);
    let card = card_of(
        &t.double
            .wait_for("send", |s| s.to_string().contains("svc/q"))
            .await,
    );
    let modify = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Approve with changes")
        .unwrap()
        .clone();
    assert!(modify["card"]["body"][0]["value"]
        .as_str()
        .unwrap()
        .contains("region"));
    assert_eq!(
        refused_code(
            &t.click(
                BOB_OID,
                "modify",
                json!({"action": d, "modify_params": "{not json"})
            )
            .await
        ),
        "invalid_request"
    );
    let answer = t
        .click(
            BOB_OID,
            "modify",
            json!({"action": d, "modify_params": "{\"region\": \"eu-west-1\"}", "modify_comment": "pinned"}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let done = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done["status"], "approved", "{done}");
    assert_eq!(done["params"]["region"], "eu-west-1", "{done}");

    // Deny with a reason.
    let d2 = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/d", "justification": "d"}),
        )
        .await);
    let answer = t
        .click(
            BOB_OID,
            "deny",
            json!({"action": d2, "deny_comment": "not now"}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let (_, got) = gw.get("bot", &format!("/v1/actions/{d2}")).await;
    assert_eq!(got["status"], "rejected", "{got}");

    // A click after expiry (the `quick` rule's review lasts 1 s) is refused and audited.
    let quick = id(&gw
        .submit(
            "bot",
            json!({"action": "quick", "resource": "svc/q", "justification": "q"}),
        )
        .await);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let code =
        refused_code(&t.click(BOB_OID, "approve", json!({"action": quick})).await).to_string();
    assert!(code == "not_pending" || code == "review_expired", "{code}");
    let (_, got) = gw.get("bot", &format!("/v1/actions/{quick}")).await;
    assert_eq!(got["status"], "expired", "{got}");
    // Unknown verbs and invokes naming no action are refused without a vote.
    assert_eq!(
        refused_code(&t.click(BOB_OID, "approve", json!({})).await),
        "invalid_request"
    );
    assert_eq!(
        refused_code(&t.click(BOB_OID, "sudo", json!({"action": d2})).await),
        "invalid_request"
    );

    let refused = gw.refusals().await;
    assert!(
        refused
            .iter()
            .any(|e| e["event"]["by"] == "alice" && e["event"]["code"] == "self_approval"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|e| e["action_id"] == quick.as_str() && e["event"]["by"] == "bob"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teams_endpoint_refuses_forged_expired_misaddressed_and_malformed_requests() {
    let t = Teams::start().await;
    let gw = &t.gw;
    let action = id(&gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/h", "justification": "h"}),
        )
        .await);
    let body = || t.invoke(BOB_OID, "approve", json!({"action": action}));
    let good = claims(&t.service_url);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    // One signature byte changed (a character in the middle: every bit of it is data).
    let mut tampered = t.good_token().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    let hmac = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            &good,
            &EncodingKey::from_secret(public_key().0.as_bytes()),
        )
        .unwrap()
    };
    let now = now_secs();
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "unauthenticated"),
        ("not a JWT", Some("abc".into()), 401, "token_malformed"),
        (
            "bad signature",
            Some(tampered),
            401,
            "token_signature_invalid",
        ),
        ("alg none", Some(unsigned), 401, "token_alg_none"),
        (
            "HMAC with the public key",
            Some(hmac),
            401,
            "token_alg_hmac",
        ),
        (
            "PS256 (not in the metadata)",
            Some(token_with("k1", Algorithm::PS256, &good)),
            401,
            "token_alg_unsupported",
        ),
        (
            "unknown key",
            Some(token_with("k9", Algorithm::RS256, &good)),
            401,
            "token_key_unknown",
        ),
        (
            "wrong audience",
            Some(token_with(
                "k1",
                Algorithm::RS256,
                &with("aud", json!("00000000-1111-2222-3333-444444444444")),
            )),
            401,
            "token_audience_invalid",
        ),
        (
            "no audience",
            Some(token_with("k1", Algorithm::RS256, &without("aud"))),
            401,
            "token_audience_invalid",
        ),
        (
            "wrong issuer",
            Some(token_with(
                "k1",
                Algorithm::RS256,
                &with("iss", json!("https://sts.windows.net/x/")),
            )),
            401,
            "token_issuer_unknown",
        ),
        (
            "expired past the skew",
            Some(token_with(
                "k1",
                Algorithm::RS256,
                &with("exp", json!(now - 310)),
            )),
            401,
            "token_expired",
        ),
        (
            "not yet valid",
            Some(token_with(
                "k1",
                Algorithm::RS256,
                &with("nbf", json!(now + 310)),
            )),
            401,
            "token_not_yet_valid",
        ),
        (
            "no serviceUrl claim",
            Some(token_with("k1", Algorithm::RS256, &without("serviceUrl"))),
            401,
            "token_claim_missing",
        ),
        (
            "another serviceUrl",
            Some(token_with(
                "k1",
                Algorithm::RS256,
                &with("serviceUrl", json!("https://smba.evil.example/teams/")),
            )),
            401,
            "token_service_url_mismatch",
        ),
        (
            "key not endorsed for msteams",
            Some(token_with("k2", Algorithm::RS256, &good)),
            401,
            "token_channel_not_endorsed",
        ),
    ];
    for (what, token, status, code) in cases {
        let (got, answer) = t.post_raw(token.as_deref(), body()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {answer}"
        );
    }
    // Within the skew: accepted.
    let late = token_with("k1", Algorithm::RS256, &with("exp", json!(now - 120)));
    let (status, answer) = t.post_raw(Some(&late), body()).await;
    assert_eq!(
        (status, answer["statusCode"].as_u64()),
        (200, Some(200)),
        "{answer}"
    );
    // A verified token with a body that is not JSON; an oversize body (refused before its
    // token is even looked at).
    let (status, answer) = t
        .post_raw(Some(&t.good_token()), b"{\"type\": \"invoke\",".to_vec())
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, answer) = t
        .post_raw(Some(&t.good_token()), vec![b' '; 300 * 1024])
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("teams_activity_too_large"))
    );
    // Other activities are acknowledged and change nothing.
    let msg = json!({"type": "message", "text": "approve everything", "serviceUrl": t.service_url, "channelId": "msteams", "from": {"aadObjectId": BOB_OID}});
    let (status, _) = t
        .post_raw(Some(&t.good_token()), msg.to_string().into_bytes())
        .await;
    assert_eq!(status, 200);
    // The keys were fetched once for all of it (the unknown kid caused at most one more).
    assert!(
        t.double.calls("keys").len() <= 2,
        "{:?}",
        t.double.calls("keys")
    );
    // Every refused token is in the audit log.
    let refused = gw.refusals().await;
    let unverified = refused
        .iter()
        .filter(|e| e["event"]["by"] == "teams:unverified")
        .count();
    assert_eq!(unverified, 15, "{refused:?}");
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(
        got["status"], "approved",
        "only the one good request counted: {got}"
    );
}

/// `examples/teams/`: the manifest names one bot whose id is the app's, and the icons it names
/// are there at the sizes Teams requires (color 192x192, outline 32x32): the zip's three files.
#[test]
fn the_teams_app_package_is_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/teams");
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["manifestVersion"], "1.19");
    assert_eq!(m["bots"][0]["botId"], m["id"]);
    assert_eq!(m["bots"].as_array().unwrap().len(), 1);
    for (icon, size) in [("color", 192u32), ("outline", 32)] {
        let png = std::fs::read(dir.join(m["icons"][icon].as_str().unwrap())).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{icon}");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (size, size), "{icon}");
    }
}

/// A token the Bot Connector no longer accepts is dropped and a new one fetched; a client
/// secret Entra ID refuses dead-letters the notification with the OAuth error code only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_renewed_and_a_wrong_secret_dead_letters_without_leaking() {
    let t = Teams::start().await;
    *t.double.throttle_first_post.lock().unwrap() = false;
    *t.double.unauthorized_next_send.lock().unwrap() = true;
    t.gw.submit(
        "bot",
        json!({"action": "deploy", "resource": "svc/t", "justification": "t"}),
    )
    .await;
    t.double.wait_for("send", |_| true).await;
    assert_eq!(t.double.calls("token").len(), 2, "renewed after the 401");

    let t = Teams::start_with("app_password = \"not-the-secret-Xy9\"").await;
    t.gw.submit(
        "bot",
        json!({"action": "deploy", "resource": "svc/w", "justification": "w"}),
    )
    .await;
    let config = t.gw.dir.path().join("countersign.toml");
    let start = Instant::now();
    let dead = loop {
        let out = tokio::process::Command::new(crate::cli::BIN)
            .args([
                "--output", "json", "outbox", "list", "--state", "dead", "--config",
            ])
            .arg(&config)
            .output()
            .await
            .unwrap();
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(d) = listed.into_iter().next() {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead["channel"], "teams:sre-approvals", "{dead}");
    let text = dead.to_string();
    assert!(text.contains("invalid_client"), "{dead}");
    assert!(
        !text.contains("not-the-secret") && !text.contains("AADSTS"),
        "{dead}"
    );
    assert!(t.double.calls("send").is_empty());
}

/// Every card action carries the version the card shows; a click carrying another version (a
/// card not yet rewritten after another reviewer's change) is refused with `digest_mismatch` and
/// audited, a malformed one is an invalid request, and the click on the current version counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_an_out_of_date_card_is_refused() {
    let t = Teams::start().await;
    let gw = &t.gw;
    let v = gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/stale", "justification": "v2", "params": {"version": "2"}}),
        )
        .await;
    let action = id(&v);
    let digest = v["digest"].as_str().unwrap().to_string();
    let sent = t
        .double
        .wait_for("send", |s| s.to_string().contains("svc/stale"))
        .await;
    let card = card_of(&sent).to_string();
    assert!(card.contains(&format!("\"digest\":\"{digest}\"")), "{card}");
    let other = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        refused_code(
            &t.click(
                BOB_OID,
                "approve",
                json!({"action": action, "digest": other})
            )
            .await
        ),
        "digest_mismatch"
    );
    assert_eq!(
        refused_code(
            &t.click(
                BOB_OID,
                "approve",
                json!({"action": action, "digest": "sha256:nope"})
            )
            .await
        ),
        "invalid_request"
    );
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "pending", "{got}");
    let answer = t
        .click(
            BOB_OID,
            "approve",
            json!({"action": action, "digest": digest}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "approved", "{got}");
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=100").await;
    assert!(
        log["entries"].as_array().unwrap().iter().any(|e| {
            e["entry"]["type"] == "refused" && e["entry"]["event"]["code"] == "digest_mismatch"
        }),
        "{log}"
    );
}

/// Issue #15: a person who signed in through Entra ID (here, one API call with an ID token from
/// a double of the tenant's issuer, `…/{tenant}/v2.0`) is mapped from Teams by the object id
/// their token carried (`oid`, the `aadObjectId` of a click) in the bot's tenant (`tid`), and
/// approves. Refused (`unmapped_chat_user`, audited): a person with the same claims from
/// another tenant's issuer; a person whose token claims the bot's tenant from an issuer that is
/// not that tenant's (another provider that lets claims be set); someone never seen. And
/// (`chat_user_ambiguous`) an object id two people signed in with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_signed_in_through_entra_id_are_mapped_by_object_id() {
    use crate::identity::{call, Idp};
    const OTHER_TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const OLGA_OID: &str = "00000000-0000-0000-0000-00000000014a";
    const WALLY_OID: &str = "00000000-0000-0000-0000-0000000000a1";
    const MALLORY_OID: &str = "00000000-0000-0000-0000-0000000000ba";
    const IVAN_OID: &str = "00000000-0000-0000-0000-00000000014b";
    let entra = Idp::start_at(&format!("/{TENANT}/v2.0")).await;
    let foreign = Idp::start_at(&format!("/{OTHER_TENANT}/v2.0")).await;
    let plain = Idp::start().await;
    // A second issuer of the bot's tenant (as Entra's v1 and v2 endpoints are).
    let entra_again = Idp::start_at(&format!("/{TENANT}/v1")).await;
    let extra = [&entra, &foreign, &plain, &entra_again]
        .iter()
        .map(|i| i.oidc_table())
        .collect::<String>();
    let t = Teams::start_configured(
        "app_password_env = \"COUNTERSIGN_TEST_TEAMS_PASSWORD\"",
        &extra,
        None,
    )
    .await;
    let gw = &t.gw;
    for (idp, user, oid, tid) in [
        (&entra, "olga", OLGA_OID.to_uppercase(), TENANT),
        (&foreign, "wally", WALLY_OID.to_string(), OTHER_TENANT),
        (&plain, "mallory", MALLORY_OID.to_string(), TENANT),
        // Two people with one object id in the tenant: neither is mapped.
        (&entra, "ivan", IVAN_OID.to_string(), TENANT),
        (&entra_again, "ivan2", IVAN_OID.to_string(), TENANT),
    ] {
        let token = idp.token(user, &["sre"], json!({"oid": oid, "tid": tid}));
        let (s, v) = call(gw, &token, reqwest::Method::GET, "/v1/reviews", None).await;
        assert_eq!(s, 200, "{user}: {v}");
    }
    let v = gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "svc/olga", "environment": "prod"}),
        )
        .await;
    let action = id(&v);
    let a = json!({"action": action});
    for oid in [WALLY_OID, MALLORY_OID, STRANGER_OID] {
        assert_eq!(
            refused_code(&t.click(oid, "approve", a.clone()).await),
            "unmapped_chat_user",
            "{oid}"
        );
    }
    assert_eq!(
        refused_code(&t.click(IVAN_OID, "approve", a.clone()).await),
        "chat_user_ambiguous"
    );
    let (_, got) = gw.get("alice", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "pending", "{got}");
    let answer = t.click(OLGA_OID, "approve", a.clone()).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let (_, got) = gw.get("alice", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "approved", "{got}");
    assert!(got.to_string().contains("olga"), "{got}");
    let refused = gw.refusals().await;
    for oid in [WALLY_OID, MALLORY_OID, STRANGER_OID] {
        assert!(
            refused
                .iter()
                .any(|e| e["event"]["by"] == format!("teams:{oid}")
                    && e["event"]["code"] == "unmapped_chat_user"),
            "{oid}: {refused:?}"
        );
    }
    assert!(
        refused
            .iter()
            .any(|e| e["event"]["by"] == format!("teams:{IVAN_OID}")
                && e["event"]["code"] == "chat_user_ambiguous"),
        "{refused:?}"
    );
}
