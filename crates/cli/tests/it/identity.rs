//! Identity end to end: OIDC people and workloads, managed API keys through the admin API and
//! the CLI, separation of duties, and identity sources in the audit trail (never a credential).

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{code, id, Gw};

/// An Ed25519 OIDC issuer on loopback.
pub(crate) struct Idp {
    pub(crate) url: String,
    der: Vec<u8>,
    _server: tokio::task::JoinHandle<()>,
}

impl Idp {
    pub(crate) async fn start() -> Idp {
        Idp::start_at("").await
    }

    /// An issuer whose URL ends in `path` (e.g. `/{tenant}/v2.0`, as Entra ID's do).
    pub(crate) async fn start_at(path: &str) -> Idp {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())}]});
        let app = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(move || async move { Json(discovery) }),
            )
            .route(
                &format!("{path}/jwks"),
                get(move || async move { Json(jwks) }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            url,
            der: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            _server: server,
        }
    }

    fn config(&self) -> String {
        format!("admin_group = \"sec\"\n{}", self.oidc_table())
    }

    /// The `[[oidc]]` table trusting this issuer: people by `preferred_username`, groups from
    /// `groups`, and tokens with `azp = "agent-client"` an agent (fixed id `oidc-bot`).
    pub(crate) fn oidc_table(&self) -> String {
        format!(
            r#"[[oidc]]
issuer = "{}"
audience = "countersign"
id_claim = "preferred_username"
groups_claim = "groups"
[[oidc.rules]]
match = {{ azp = "agent-client" }}
id = "oidc-bot"
kind = "agent"
groups = ["automation"]
"#,
            self.url
        )
    }

    pub(crate) fn token(&self, user: &str, groups: &[&str], extra: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"iss": self.url, "aud": "countersign", "sub": format!("sub-{user}"),
            "preferred_username": user, "groups": groups, "exp": now + 600, "iat": now});
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(&self.der)).unwrap()
    }
}

pub(crate) async fn call(
    gw: &Gw,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = gw
        .http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn entries(gw: &Gw) -> Vec<Value> {
    let (_, v) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_agents_and_people_with_separation_of_duties() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    let bot = idp.token("whatever", &[], json!({"azp": "agent-client"}));
    let frank = idp.token("frank", &["sre"], json!({}));
    let gina = idp.token("gina", &[], json!({}));
    let gina_sre = idp.token("gina", &["sre"], json!({}));
    // `on_behalf_of` names a known human: frank has signed in before.
    let (s, _) = call(&gw, &frank, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK);

    // The workload rule makes the client-credentials token an agent; it acts for frank.
    let (s, v) = call(
        &gw,
        &bot,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "deploy", "resource": "r", "on_behalf_of": "frank"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let action = id(&v);
    let (_, got) = call(
        &gw,
        &bot,
        Method::GET,
        &format!("/v1/actions/{action}"),
        None,
    )
    .await;
    assert_eq!(got["requester"], "oidc-bot");
    let path = format!("/v1/reviews/{action}/votes");

    // The agent cannot vote; frank (an SRE) is barred because it acts for him.
    let (s, r) = call(
        &gw,
        &bot,
        Method::POST,
        &path,
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::FORBIDDEN, "agents_cannot_approve")
    );
    let (s, r) = call(
        &gw,
        &frank,
        Method::POST,
        &path,
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));

    // Approver membership comes from the token presented at the vote, not at the request.
    let (s, r) = call(
        &gw,
        &gina,
        Method::POST,
        &path,
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_an_approver"));
    let (s, r) = call(
        &gw,
        &gina_sre,
        Method::POST,
        &path,
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "approved");

    // A reviewer's modification is re-checked against policy as the OIDC requester.
    let (_, v) = call(
        &gw,
        &bot,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "deploy", "resource": "r2"})),
    )
    .await;
    let (s, r) = call(
        &gw,
        &gina_sre,
        Method::POST,
        &format!("/v1/reviews/{}/votes", id(&v)),
        Some(json!({"verdict": "modify", "params": {"replicas": 2}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "approved");

    // A human may not submit on behalf of someone; an agent may not name a configured agent.
    let (s, r) = call(
        &gw,
        &gina,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "deploy", "resource": "r", "on_behalf_of": "frank"})),
    )
    .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::FORBIDDEN, "on_behalf_of_not_allowed")
    );
    let (s, r) = call(
        &gw,
        &bot,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "deploy", "resource": "r", "on_behalf_of": "ci"})),
    )
    .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));

    // The audit trail names each identity's source, and holds no token.
    let all = entries(&gw).await;
    let text = serde_json::to_string(&all).unwrap();
    for t in [&bot, &frank, &gina, &gina_sre] {
        assert!(!text.contains(t.as_str()));
    }
    let submitted = all.iter().find(|e| e["type"] == "submitted").unwrap();
    assert_eq!(
        submitted["event"]["requester_source"],
        format!("oidc:{}#sub-whatever", idp.url)
    );
    let voted = all.iter().find(|e| e["type"] == "voted").unwrap();
    assert_eq!(voted["actor"], "gina");
    assert_eq!(
        voted["event"]["voter_source"],
        format!("oidc:{}#sub-gina", idp.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_a_code_and_no_detail() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    let good = idp.token("gina", &[], json!({}));
    let expired = idp.token("gina", &[], json!({"exp": 1_000_000}));
    let wrong_aud = idp.token("gina", &[], json!({"aud": "other"}));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        good.split('.').nth(1).unwrap()
    );
    let huge = "a".repeat(17 * 1024);
    for (token, want) in [
        (expired.as_str(), "token_expired"),
        (wrong_aud.as_str(), "token_audience_invalid"),
        (none.as_str(), "token_alg_none"),
        ("x.y.z", "token_malformed"),
        (huge.as_str(), "token_too_large"),
        ("csk_unknown", "unauthenticated"),
    ] {
        let (s, r) = call(&gw, token, Method::GET, "/v1/reviews", None).await;
        assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, want));
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(!msg.contains("gina") && !msg.contains("other"), "{msg}");
    }
    let (s, _) = call(&gw, &good, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_keys_through_the_admin_api() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    let create =
        json!({"identity": "keybot", "kind": "agent", "groups": ["automation"], "expires": "90d"});
    // Only people in admin_group (`sec`: erin) manage keys.
    for who in ["bot", "alice"] {
        let (s, r) = gw.post(who, "/v1/admin/api-keys", create.clone()).await;
        assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "forbidden"), "{who}");
    }
    let (s, r) = gw
        .post(
            "erin",
            "/v1/admin/api-keys",
            json!({"identity": "mallory", "kind": "human"}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, created) = gw.post("erin", "/v1/admin/api-keys", create).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("csk_"));
    assert!(created["expires_at"].is_string());

    // The key works, and the audit trail says which key.
    let (s, v) = call(
        &gw,
        &secret,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "deploy", "resource": "r"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, got) = call(
        &gw,
        &secret,
        Method::GET,
        &format!("/v1/actions/{}", id(&v)),
        None,
    )
    .await;
    assert_eq!(got["requester"], "keybot");
    let all = entries(&gw).await;
    assert!(all
        .iter()
        .any(|e| e["event"]["requester_source"] == format!("key:{key_id}")));
    assert!(!serde_json::to_string(&all).unwrap().contains(&secret));

    // The key cannot vote, however it is grouped; the list never shows secrets.
    let (s, r) = call(
        &gw,
        &secret,
        Method::POST,
        &format!("/v1/reviews/{}/votes", id(&v)),
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::FORBIDDEN, "agents_cannot_approve")
    );
    let (s, list) = gw.get("erin", "/v1/admin/api-keys").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["keys"][0]["id"], key_id.as_str());
    assert!(!list.to_string().contains(&secret) && list["keys"][0].get("hash").is_none());

    // Revoked: refused on the very next request.
    let (s, r) = gw
        .post(
            "erin",
            &format!("/v1/admin/api-keys/{key_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["revoked_at"].is_string());
    let (s, r) = call(&gw, &secret, Method::GET, "/v1/reviews", None).await;
    assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, "key_revoked"));
    let (s, r) = gw
        .post(
            "erin",
            &format!("/v1/admin/api-keys/{key_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));

    // Creation and revocation are audit entries of their own, naming the key, never its secret.
    let all = entries(&gw).await;
    let created = all.iter().find(|e| e["type"] == "key_created").unwrap();
    assert_eq!(created["event"]["key_id"], key_id.as_str());
    assert_eq!(created["event"]["identity"], "keybot");
    assert!(created["actor"].as_str().unwrap().starts_with("erin"));
    let revoked = all.iter().find(|e| e["type"] == "key_revoked").unwrap();
    assert_eq!(revoked["event"]["key_id"], key_id.as_str());
    assert!(!serde_json::to_string(&all).unwrap().contains(&secret));

    // Admins are bound by the voting rules: erin cannot approve her own request.
    let v = gw
        .submit("erin", json!({"action": "iam.grant", "resource": "r"}))
        .await;
    let (s, r) = gw
        .vote("erin", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_list_revoke_from_the_cli() {
    let gw = Gw::start().await;
    let config = gw.dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    let run = |args: Vec<&str>| {
        let out = std::process::Command::new(crate::cli::BIN)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (rc, stdout, stderr) = run(vec![
        "keys",
        "create",
        "--config",
        config,
        "--identity",
        "deploy-bot",
        "--kind",
        "agent",
        "--groups",
        "automation,deployers",
        "--expires",
        "90d",
    ]);
    assert_eq!(rc, 0, "{stderr}");
    let secret = stdout.trim().to_string();
    assert!(secret.starts_with("csk_"), "{stdout}");
    let (rc, _, stderr) = run(vec![
        "keys",
        "create",
        "--config",
        config,
        "--identity",
        "x",
        "--kind",
        "human",
    ]);
    assert_eq!(rc, 2);
    assert!(stderr.contains("agent"), "{stderr}");
    // A key never takes a configured identity's id, nor a look-alike of it.
    for name in ["alice", "ALICE", "ci"] {
        let (rc, _, stderr) = run(vec![
            "keys",
            "create",
            "--config",
            config,
            "--identity",
            name,
        ]);
        assert_eq!(rc, 2, "{name}");
        assert!(stderr.contains("configured identity"), "{stderr}");
    }
    // `--sponsor`: the person behind the agent (who then never approves its requests: see
    // `a_sponsor_cannot_approve_their_agents_request`), recorded with the key.
    let (rc, _, stderr) = run(vec![
        "keys",
        "create",
        "--config",
        config,
        "--identity",
        "alices-bot",
        "--sponsor",
        "alice",
    ]);
    assert_eq!(rc, 0, "{stderr}");
    let (rc, listed, _) = run(vec!["keys", "list", "--config", config]);
    assert_eq!(rc, 0);
    assert!(
        listed.contains("alices-bot\tagent\t\tactive\tsponsor alice"),
        "{listed}"
    );

    // The running gateway (same database) accepts the key at once.
    let (s, r) = call(&gw, &secret, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    let (rc, listed, _) = run(vec!["keys", "list", "--config", config]);
    assert_eq!(rc, 0);
    assert!(
        listed.contains("deploy-bot\tagent\tautomation,deployers\tactive until"),
        "{listed}"
    );
    let listed = listed
        .lines()
        .find(|l| l.contains("deploy-bot"))
        .unwrap()
        .to_string();
    assert!(!listed.contains(&secret));
    let key_id = listed.split('\t').next().unwrap().to_string();
    let (rc, out, _) = run(vec!["keys", "revoke", "--config", config, &key_id]);
    assert_eq!(rc, 0);
    assert!(out.contains("revoked"));
    let (s, r) = call(&gw, &secret, Method::GET, "/v1/reviews", None).await;
    assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, "key_revoked"));
    let (rc, _, stderr) = run(vec!["keys", "revoke", "--config", config, &key_id]);
    assert_eq!(rc, 2);
    assert!(stderr.contains("keys list"), "{stderr}");
}

fn config_identity(id: &str, kind: &str, groups: &[&str], extra: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(format!("tok-{id}").as_bytes()));
    let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        "\n[[identities]]\nid = \"{id}\"\nkind = \"{kind}\"\ngroups = [{}]\napi_key_sha256 = \"{hash}\"\n{extra}\n",
        groups.join(", ")
    )
}

async fn refusals(gw: &Gw, code: &str) -> Vec<Value> {
    entries(gw)
        .await
        .into_iter()
        .filter(|e| e["type"] == "refused" && e["event"]["code"] == code)
        .collect()
}

/// Attack: an IdP user whose id equals a configured agent's (or a managed key's) was that agent:
/// they read its action, redeemed its grant and cancelled it. Now the id belongs to its source:
/// the IdP user is refused (401 `identity_conflict`), and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_user_named_like_an_agent_is_not_that_agent() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    // A configured agent's allowed action, with a grant.
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let action = id(&v);
    let grant = v["grant"]["token"].as_str().unwrap_or_default().to_string();
    let (s, created) = gw
        .post(
            "erin",
            "/v1/admin/api-keys",
            json!({"identity": "keybot", "kind": "agent"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let (s, kv) = call(
        &gw,
        &key,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "logs.read", "resource": "r"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{kv}");

    for (name, target) in [
        ("bot", &action),
        ("Bot", &action),
        ("keybot", &id(&kv)),
        ("KEYBOT", &id(&kv)),
    ] {
        let impostor = idp.token(name, &[], json!({"kind": "agent"}));
        let (s, r) = call(
            &gw,
            &impostor,
            Method::GET,
            &format!("/v1/actions/{target}"),
            None,
        )
        .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::UNAUTHORIZED, "identity_conflict"),
            "{name}: {r}"
        );
        let (s, r) = call(
            &gw,
            &impostor,
            Method::POST,
            &format!("/v1/actions/{target}/cancel"),
            Some(json!({})),
        )
        .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::UNAUTHORIZED, "identity_conflict"),
            "{name}"
        );
        let (s, r) = call(
            &gw,
            &impostor,
            Method::POST,
            "/v1/grants/redeem",
            Some(json!({"token": grant})),
        )
        .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::UNAUTHORIZED, "identity_conflict"),
            "{name}"
        );
    }
    // The agent's action is untouched; each impostor is in the audit log once, by name.
    let (_, got) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(got["status"], "allowed");
    let refused = refusals(&gw, "identity_conflict").await;
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused
        .iter()
        .any(|e| e["actor"].as_str().unwrap().contains("sub-bot")));
}

/// Attack: config `bob` plus an IdP `BOB`, or a Cyrillic look-alike, made a quorum of two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_ids_cannot_make_a_quorum_of_two() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    let v = gw
        .submit("bot", json!({"action": "db.export", "resource": "r"}))
        .await;
    let path = format!("/v1/reviews/{}/votes", id(&v));
    let (s, r) = gw.vote("bob", &id(&v), json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Case, full-width and mixed-script twins of a configured person.
    for (twin, want) in [
        ("BOB", "identity_conflict"),
        ("ｂｏｂ", "identity_conflict"),
        ("b\u{043e}b", "identity_invalid"),
        ("bo\u{200b}b", "identity_invalid"),
    ] {
        let t = idp.token(twin, &["data"], json!({}));
        let (s, r) = call(
            &gw,
            &t,
            Method::POST,
            &path,
            Some(json!({"verdict": "approve"})),
        )
        .await;
        assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, want), "{twin}");
    }
    // A whole-script look-alike of a person seen before, from another subject: refused too.
    let ace = idp.token("ace", &["data"], json!({}));
    let (s, _) = call(&gw, &ace, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK);
    let cyrillic = idp.token("\u{0430}\u{0441}\u{0435}", &["data"], json!({}));
    let (s, r) = call(&gw, &cyrillic, Method::GET, "/v1/reviews", None).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNAUTHORIZED, "identity_conflict")
    );
    let (_, got) = gw.get("bob", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(got["status"], "pending");
    assert!(!refusals(&gw, "identity_invalid").await.is_empty());
}

/// `oidc_subject` links a configured human to their IdP account: one person, whichever way
/// they sign in; another subject with the same name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_subject_links_a_configured_person() {
    let idp = Idp::start().await;
    let link = format!("oidc_subject = \"{}#sub-zoe\"", idp.url);
    let config = idp.config() + &config_identity("zoe", "human", &["data"], &link);
    let gw = Gw::start_with(&config).await;
    let v = gw
        .submit("bot", json!({"action": "db.export", "resource": "r"}))
        .await;
    let zoe_oidc = idp.token("zoe", &[], json!({}));
    let path = format!("/v1/reviews/{}/votes", id(&v));
    let (s, r) = call(
        &gw,
        &zoe_oidc,
        Method::POST,
        &path,
        Some(json!({"verdict": "approve"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = gw.vote("zoe", &id(&v), json!({"verdict": "approve"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "already_voted"));
    let other = idp.token("zoe", &["data"], json!({"sub": "sub-other"}));
    let (s, r) = call(&gw, &other, Method::GET, "/v1/reviews", None).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNAUTHORIZED, "identity_conflict")
    );
}

/// Attack: the admin who minted an agent's key approved the agent's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sponsor_cannot_approve_their_agents_request() {
    let gw = Gw::start_with("admin_group = \"sec\"").await;
    let (s, created) = gw
        .post(
            "erin",
            "/v1/admin/api-keys",
            json!({"identity": "erins-bot", "kind": "agent"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["sponsor"], "erin");
    let key = created["key"].as_str().unwrap().to_string();
    let (s, v) = call(
        &gw,
        &key,
        Method::POST,
        "/v1/actions",
        Some(json!({"action": "iam.grant", "resource": "r"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, r) = gw
        .vote("erin", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));
    let (_, reviews) = gw.get("erin", "/v1/reviews").await;
    assert!(!reviews.to_string().contains(&id(&v)));
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
}

/// Attack: an admin minted a key with a configured identity's or a person's id (or a look-alike,
/// or of kind human) and so acted as them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_cannot_mint_keys_named_like_someone_else() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    let frank = idp.token("frank", &[], json!({}));
    let (s, _) = call(&gw, &frank, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK);
    for (name, kind) in [
        ("alice", "agent"),
        ("Alice", "service"),
        ("\u{0430}lice", "agent"),
        ("bot", "agent"),
        ("frank", "agent"),
        ("FRANK", "agent"),
        ("mallory", "human"),
    ] {
        let (s, r) = gw
            .post(
                "erin",
                "/v1/admin/api-keys",
                json!({"identity": name, "kind": kind}),
            )
            .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{name}"
        );
    }
    let (s, r) = gw.get("erin", "/v1/admin/api-keys").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["keys"].as_array().map(Vec::len), Some(0), "{r}");
}

/// Attack: an agent named an unknown `on_behalf_of` (anyone could later sign in with that name),
/// and an idempotent replay silently dropped a different `on_behalf_of`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_behalf_of_names_a_known_human_and_replays_must_match() {
    let idp = Idp::start().await;
    let gw = Gw::start_with(&idp.config()).await;
    for who in ["nobody", "frank", "ci", "bot"] {
        let (s, r) = gw
            .post(
                "bot",
                "/v1/actions",
                json!({"action": "deploy", "resource": "r", "on_behalf_of": who}),
            )
            .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{who}"
        );
    }
    let frank = idp.token("frank", &[], json!({}));
    let (s, _) = call(&gw, &frank, Method::GET, "/v1/reviews", None).await;
    assert_eq!(s, StatusCode::OK);
    gw.submit(
        "bot",
        json!({"action": "deploy", "resource": "r", "on_behalf_of": "frank"}),
    )
    .await;

    let submit = |obo: Value| {
        let mut body = json!({"action": "deploy", "resource": "idem"});
        if !obo.is_null() {
            body["on_behalf_of"] = obo;
        }
        gw.http
            .post(format!("{}/v1/actions", gw.url))
            .bearer_auth("tok-bot")
            .header("Idempotency-Key", "k-1")
            .json(&body)
            .send()
    };
    let first = submit(json!("alice")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = submit(json!("alice")).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "the same request replays"
    );
    for other in [json!("bob"), Value::Null] {
        let r = submit(other.clone()).await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict"),
            "{other}"
        );
    }
}

/// Configured identities and managed keys are checked against each other at start: a clash
/// refuses to start, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_reuses_a_managed_keys_id_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        crate::support::write_config(dir.path(), &config_identity("KeyBot", "agent", &[], ""));
    let config = countersign_gateway::config::Config::load(&path).unwrap();
    let store = countersign_gateway::open_store(&config.database)
        .await
        .unwrap();
    let req = countersign_gateway::keys::KeyRequest {
        identity: "keybot".into(),
        kind: countersign_core::IdentityKind::Agent,
        groups: Default::default(),
        expires_in: None,
        sponsor: None,
    };
    countersign_gateway::keys::create(
        &*store,
        &Default::default(),
        req,
        "operator:test",
        countersign_core::Timestamp(1),
    )
    .await
    .unwrap();
    drop(store);
    let err = match countersign_server::Server::open(&config).await {
        Ok(_) => panic!("started with a clashing identity"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("keybot") && err.contains("KeyBot"), "{err}");

    // Two configured ids that differ only in case or script do not even parse.
    let twins = config_identity("Alice", "human", &[], "");
    let err = crate::support::write_config(dir.path(), &twins);
    let err = countersign_gateway::config::Config::load(&err).unwrap_err();
    assert!(err.to_string().contains("duplicate identity id"), "{err}");

    // Nor does a workload rule that names a configured identity (or a look-alike of one).
    let idp = Idp::start().await;
    let rule_twin = idp.config().replace("id = \"oidc-bot\"", "id = \"BOT\"");
    let path = crate::support::write_config(dir.path(), &rule_twin);
    let err = countersign_gateway::config::Config::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("configured identity `bot`"),
        "{err}"
    );
}

/// A person who signed in through the IdP holds their id: a config that later names the same id
/// does not start, unless it links that very account with `oidc_subject`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_may_claim_a_seen_persons_id_only_by_linking_them() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let open = |extra: String| {
        let path = crate::support::write_config(dir.path(), &(idp.config() + &extra));
        let config = countersign_gateway::config::Config::load(&path).unwrap();
        async move { countersign_server::Server::open(&config).await }
    };
    let gw = open(String::new()).await.unwrap();
    let zoe = idp.token("zoe", &[], json!({}));
    assert_eq!(gw.gateway().authenticate(&zoe).await.unwrap().id, "zoe");
    drop(gw);

    let err = match open(config_identity("Zoe", "human", &[], "")).await {
        Ok(_) => panic!("a config took a person's id"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("Zoe") && err.contains("sub-zoe"), "{err}");
    let link = format!("oidc_subject = \"{}#sub-zoe\"", idp.url);
    let gw = open(config_identity("zoe", "human", &["data"], &link))
        .await
        .unwrap();
    let me = gw.gateway().authenticate(&zoe).await.unwrap();
    assert_eq!((me.id.as_str(), me.groups.contains("data")), ("zoe", true));
}
