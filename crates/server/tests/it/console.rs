//! The web console (issue #16) against a real OpenID provider: the certified `oidc-provider`
//! package from npm (`tests/interop/oidc_provider.mjs`), started by the test with its users,
//! groups and `amr`. A browser is played by an HTTP client that keeps cookies and follows
//! redirects by hand, so every hop (and every refusal) is visible.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

const POLICIES: &str = r#"
@id("deploy") @effect("review") @approvers("group:sre") @reason("deploys need an SRE")
permit (principal, action == Action::"deploy", resource);
@id("no-big-replicas") @reason("at most 10 replicas")
forbid (principal, action == Action::"deploy", resource)
when { context.params has replicas && context.params.replicas > 10 };
@id("restart") @effect("review") @approvers("group:sre") @require_mfa
permit (principal, action == Action::"db.restart", resource);
@id("pii-export") @effect("review") @approvers("group:sre") @reveal("human:alice")
permit (principal, action == Action::"customer.export", resource);
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test IdP: a Node process running `oidc-provider`, killed on drop.
pub struct Idp {
    pub issuer: String,
    child: tokio::process::Child,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Idp {
    pub async fn start(redirect_base: &str, users: Value) -> Idp {
        let clients = json!([{
            "client_id": "console",
            "client_secret": "console-secret",
            "redirect_uris": [format!("{redirect_base}/console/callback")],
            "post_logout_redirect_uris": [format!("{redirect_base}/console/signed-out")],
        }]);
        let mut child = tokio::process::Command::new("node")
            .arg(repo().join("tests/interop/oidc_provider.mjs"))
            .env("OIDC_CLIENTS", clients.to_string())
            .env("OIDC_USERS", users.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node (tests/node_modules must hold oidc-provider: scripts/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the IdP did not start")
            .unwrap()
            .expect("the IdP exited");
        let issuer = serde_json::from_str::<Value>(&line).unwrap()["issuer"]
            .as_str()
            .unwrap()
            .to_string();
        Idp { issuer, child }
    }
}

/// People at the IdP: alice (sre, with MFA), bob (sre), dave (no groups), and `deploy-bot`,
/// which the gateway's claim rule maps to an agent.
pub fn users() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "groups": ["sre"], "amr": ["pwd", "mfa"]},
        "bob": {"email": "bob@example.com", "groups": ["sre"], "amr": ["pwd"]},
        "dave": {"email": "dave@example.com", "groups": [], "amr": ["pwd"]},
        "carol": {"email": "carol@example.com", "groups": ["admins"], "amr": ["pwd", "mfa"]},
        "deploy-bot": {"email": "bot@example.com", "groups": ["automation"], "amr": ["pwd"]},
    })
}

/// A gateway with the console, its IdP, and an agent `bot` (token `tok-bot`).
#[allow(dead_code)] // the IdP and the directory live as long as the gateway
pub struct Console {
    pub url: String,
    pub idp: Idp,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub gateway: Arc<countersign_gateway::Gateway>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No pooled connections: Node's server resets a kept-alive connection oidc-provider has
    // answered a redirect on, and each hop here is its own request anyway.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Console {
    pub async fn start(extra: &str) -> Console {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let idp = Idp::start(&url, users()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/test.cedar"), POLICIES).unwrap();
        let bot = hex(&Sha256::digest(b"tok-bot"));
        let erin = hex(&Sha256::digest(b"tok-erin"));
        let toml = format!(
            r#"database = "sqlite://gw.db"
policies = "policies"
review_ttl = "10m"
console_url = "{url}"
{extra}

[[identities]]
id = "bot"
kind = "agent"
groups = ["automation"]
api_key_sha256 = "{bot}"

[[identities]]
id = "erin"
kind = "human"
groups = ["sre"]
api_key_sha256 = "{erin}"

[[oidc]]
issuer = "{issuer}"
client_id = "console"
client_secret = "console-secret"
scopes = ["openid", "email", "groups"]
groups_claim = "groups"

[[oidc.rules]]
match = {{ sub = "deploy-bot" }}
kind = "agent"
"#,
            issuer = idp.issuer
        );
        let path = dir.path().join("countersign.toml");
        std::fs::write(&path, toml).unwrap();
        let config = countersign_gateway::config::Config::load(&path).unwrap();
        let server = countersign_server::Server::open_with(
            &config,
            countersign_server::Options {
                record_loaded: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let gateway = server.gateway().clone();
        let server = tokio::spawn(async move {
            let _ = server.serve(listener, std::future::pending()).await;
        });
        Console {
            url,
            idp,
            http: client(),
            dir,
            gateway,
            server,
        }
    }

    /// The agent submits; returns the action id.
    pub async fn submit(&self, body: Value) -> String {
        let resp = self
            .http
            .post(format!("{}/v1/actions", self.url))
            .bearer_auth("tok-bot")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let v: Value = resp.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// The audit log's `refused` entries as `(actor, code)`.
    pub async fn refusals(&self) -> Vec<(String, String)> {
        let entries = self.gateway.store().audit_entries(0, 1000).await.unwrap();
        entries
            .iter()
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&e.body).ok()?;
                (v["type"] == "refused").then(|| {
                    (
                        v["actor"].as_str().unwrap_or("").to_string(),
                        v["event"]["code"].as_str().unwrap_or("").to_string(),
                    )
                })
            })
            .collect()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A browser: cookies by name (the console and the IdP are both on 127.0.0.1, and cookies do
/// not care about ports), redirects followed by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` the console sent, for the attribute checks.
    pub set_cookies: Vec<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub url: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: client(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for c in resp.headers().get_all(header::SET_COOKIE) {
            let text = c.to_str().unwrap().to_string();
            let pair = text.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            let expired = text.to_ascii_lowercase().contains("max-age=0")
                || text
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970");
            if expired || v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
            self.set_cookies.push(text);
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let resp = req
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        Page {
            status: resp.status(),
            url: url.to_string(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    /// One GET, no redirect followed.
    pub async fn get_once(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    /// A GET, following redirects (at most 10).
    pub async fn get(&mut self, url: &str) -> Page {
        let mut page = self.get_once(url).await;
        for _ in 0..10 {
            if !page.status.is_redirection() {
                return page;
            }
            let next = absolute(&page.url, page.headers[header::LOCATION].to_str().unwrap());
            page = self.get_once(&next).await;
        }
        panic!("too many redirects");
    }

    /// A form POST, following the redirect after it.
    pub async fn post(&mut self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap();
        let mut req = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let page = self.send(req, url).await;
        if page.status.is_redirection() {
            let next = absolute(url, page.headers[header::LOCATION].to_str().unwrap());
            return self.get(&next).await;
        }
        page
    }

    /// Signs in as `login` at the IdP, starting from `start` (a console page); returns the
    /// page the console lands on.
    pub async fn sign_in(&mut self, start: &str, login: &str) -> Page {
        let mut page = self.get(start).await;
        assert!(
            page.url.contains("/interaction/"),
            "a signed-out browser goes to the IdP: {} {}",
            page.url,
            page.body
        );
        let action = absolute(
            &page.url,
            &format!("{}/login", url::Url::parse(&page.url).unwrap().path()),
        );
        page = self.post(&action, &[("login", login)], None).await;
        page
    }
}

/// The digest an action page shows (`<dt>Digest</dt><dd><code>…</code>`): what a vote binds to.
pub fn digest(body: &str) -> String {
    let mark = "<dt>Digest</dt><dd><code>";
    let at = body.find(mark).expect("an action page with its digest");
    let rest = &body[at + mark.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// The value of `<input type="hidden" name="csrf" value="…">`.
pub fn csrf(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &body[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_queue_approve_with_changes_and_the_agents_long_poll_is_released() {
    let c = Console::start("").await;
    let id = c
        .submit(
            json!({"action": "deploy", "resource": "api-service", "environment": "prod",
            "params": {"version": "1.2.3", "replicas": 3}, "justification": "release 1.2.3"}),
        )
        .await;

    // A signed-out browser is sent to the IdP, signs in, and lands on the queue.
    let mut alice = Browser::new();
    let queue = alice.sign_in(&format!("{}/console", c.url), "alice").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.url.ends_with("/console"), "{}", queue.url);
    assert!(queue.body.contains("<title>(1) Reviews"), "{}", queue.body);
    assert!(queue.body.contains(&format!("/console/actions/{id}")));
    assert!(queue.body.contains("id=\"signed-in-as\">alice<"));
    assert!(queue.body.contains(">MFA<"), "alice's sign-in showed mfa");

    // The session cookie: HttpOnly, SameSite=Lax, not Secure on loopback; the login cookie is
    // gone.
    let session = alice
        .set_cookies
        .iter()
        .find(|c| c.starts_with("cs_session=") && !c.contains("Max-Age=0"))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(!session.contains("Secure"), "loopback: {session}");
    assert!(!alice.cookies.contains_key("cs_login"));

    // Security headers on every page.
    let csp = queue.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(queue.headers["x-frame-options"], "DENY");

    // The agent waits for the decision.
    let http = c.http.clone();
    let wait_url = format!("{}/v1/actions/{id}?wait=30", c.url);
    let waiting = tokio::spawn(async move {
        let resp = http
            .get(wait_url)
            .bearer_auth("tok-bot")
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()
    });

    // The action page: full context.
    let page = alice.get(&format!("{}/console/actions/{id}", c.url)).await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "release 1.2.3",
        "api-service",
        "prod",
        "1.2.3",
        "deploys need an SRE",
        "id=\"approve\"",
    ] {
        assert!(page.body.contains(shown), "{shown} in {}", page.body);
    }
    let token = csrf(&page.body);
    let seen = digest(&page.body);

    // Approve with changes: invalid JSON is shown back, not sent.
    let url = format!("{}/console/actions/{id}/vote", c.url);
    let bad = alice
        .post(
            &url,
            &[
                ("csrf", &token),
                ("digest", &seen),
                ("decision", "modify"),
                ("params", "{\"replicas\": "),
            ],
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Not valid JSON"), "{}", bad.body);

    let done = alice
        .post(
            &url,
            &[
                ("csrf", &token),
                ("digest", &seen),
                ("decision", "modify"),
                ("params", r#"{"version": "1.2.3", "replicas": 2}"#),
                ("comment", "two is enough"),
            ],
            Some(&c.url),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("status-approved"), "{}", done.body);
    assert!(done.body.contains("Decided by alice"), "{}", done.body);
    // The diff: submitted 3, now 2.
    assert!(done.body.contains("id=\"diff\""), "{}", done.body);
    assert!(
        done.body.contains("<pre class=\"del\">3</pre>")
            && done.body.contains("<pre class=\"ins\">2</pre>")
    );
    assert!(
        !done.body.contains("id=\"approve\""),
        "no buttons once decided"
    );

    // The agent's long poll is released with the modified action.
    let v = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["params"]["replicas"], 2);

    // A stale page's submit is told "already decided", not an error page.
    let stale = alice
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.body.contains("Already decided"), "{}", stale.body);

    // The queue is empty now.
    let queue = alice.get(&format!("{}/console", c.url)).await;
    assert!(queue.body.contains("<title>(0) Reviews"));

    // Logout ends the session everywhere: the old cookie opens nothing.
    let old = alice.cookies["cs_session"].clone();
    let out = alice
        .post(
            &format!("{}/console/logout", c.url),
            &[("csrf", &token)],
            None,
        )
        .await;
    assert!(!alice.cookies.contains_key("cs_session"));
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    let mut replay = Browser::new();
    replay.cookies.insert("cs_session".into(), old);
    let again = replay.get_once(&format!("{}/console", c.url)).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_refused_and_audited() {
    let c = Console::start("").await;
    let id = c
        .submit(json!({"action": "deploy", "resource": "api-service", "params": {"replicas": 1}}))
        .await;

    // An agent identity at the IdP (a claim rule makes it one) cannot sign in.
    let mut bot = Browser::new();
    let refused = bot
        .sign_in(&format!("{}/console", c.url), "deploy-bot")
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("the console is for people"),
        "{}",
        refused.body
    );
    assert!(!bot.cookies.contains_key("cs_session"));

    // A person who is no approver sees no buttons, and a forged vote is refused by the core.
    let mut dave = Browser::new();
    dave.sign_in(&format!("{}/console", c.url), "dave").await;
    let page = dave.get(&format!("{}/console/actions/{id}", c.url)).await;
    assert!(!page.body.contains("id=\"approve\""));
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    let url = format!("{}/console/actions/{id}/vote", c.url);
    let no = dave
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN, "{}", no.body);
    assert!(no.body.contains("not_an_approver"), "{}", no.body);

    // CSRF: no token, a wrong token, another origin.
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&format!("{}/console/actions/{id}", c.url)).await;
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    let missing = bob
        .post(&url, &[("digest", &seen), ("decision", "approve")], None)
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    let wrong = bob
        .post(
            &url,
            &[
                ("csrf", &dave_token(&token)),
                ("digest", &seen),
                ("decision", "approve"),
            ],
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let cross = bob
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // A vote must name the digest the page showed: none (or a malformed one) is a bad request,
    // another one (the action changed since) is told so; neither is cast.
    for form in [vec![], vec![("digest", "sha256:nothex")]] {
        let mut fields = vec![("csrf", token.as_str()), ("decision", "approve")];
        fields.extend(form);
        let bad = bob.post(&url, &fields, None).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    }
    let other = format!("sha256:{}", "0".repeat(64));
    let stale = bob
        .post(
            &url,
            &[
                ("csrf", &token),
                ("digest", &other),
                ("decision", "approve"),
            ],
            None,
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(
        stale.body.contains("changed while you were reading"),
        "{}",
        stale.body
    );
    // Nothing was recorded as a vote.
    let view = c
        .http
        .get(format!("{}/v1/actions/{id}", c.url))
        .bearer_auth("tok-bot")
        .send()
        .await
        .unwrap();
    let v: Value = view.json().await.unwrap();
    assert_eq!(v["status"], "pending");
    assert!(v["review"]["votes"].as_array().unwrap().is_empty());

    // A tampered cookie opens nothing: sent to sign in.
    let mut forger = Browser::new();
    forger.cookies.insert("cs_session".into(), "A".repeat(43));
    let r = forger.get_once(&format!("{}/console", c.url)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = forger
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let refusals = c.refusals().await;
    for (who, code) in [
        ("deploy-bot", "agents_cannot_sign_in"),
        ("dave", "not_an_approver"),
        ("bob", "csrf_missing"),
        ("bob", "csrf_invalid"),
        ("console:anonymous", "console_session_unknown"),
    ] {
        assert!(
            refusals.iter().any(|(w, c)| w == who && c == code),
            "{who} {code} audited: {refusals:?}"
        );
    }
}

fn dave_token(token: &str) -> String {
    let mut t = token.to_string();
    let last = if t.ends_with('A') { 'B' } else { 'A' };
    t.pop();
    t.push(last);
    t
}

/// An expired session is refused (and audited), then the browser signs in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused_and_audited() {
    let c = Console::start("console_session_ttl = \"4s\"").await;
    let id = c
        .submit(json!({"action": "deploy", "resource": "api-service", "params": {"replicas": 1}}))
        .await;
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&format!("{}/console/actions/{id}", c.url)).await;
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    tokio::time::sleep(std::time::Duration::from_millis(4300)).await;
    let url = format!("{}/console/actions/{id}/vote", c.url);
    let late = bob
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{}", late.body);
    assert!(late.body.contains("session has ended"));
    assert!(c
        .refusals()
        .await
        .iter()
        .any(|(w, code)| w == "bob" && code == "console_session_expired"));
}

/// A second session's queue hears a decision made elsewhere over Server-Sent Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_elsewhere_reaches_an_open_event_stream() {
    let c = Console::start("").await;
    let id = c
        .submit(json!({"action": "deploy", "resource": "api-service", "params": {"replicas": 1}}))
        .await;
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let mut stream = bob
        .http
        .get(format!("{}/console/events", c.url))
        .header(
            header::COOKIE,
            format!("cs_session={}", bob.cookies["cs_session"]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    // Alice decides in her own session.
    let mut alice = Browser::new();
    alice.sign_in(&format!("{}/console", c.url), "alice").await;
    let page = alice.get(&format!("{}/console/actions/{id}", c.url)).await;
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    alice
        .post(
            &format!("{}/console/actions/{id}/vote", c.url),
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("event: change"));
    // Bob's queue, re-read as the script does, no longer lists it.
    let queue = bob.get(&format!("{}/console", c.url)).await;
    assert!(queue.body.contains("<title>(0) Reviews"), "{}", queue.body);
    // Signed out, there is no stream.
    let none = client()
        .get(format!("{}/console/events", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

/// `console = false` serves no console; the API is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_false_turns_it_off() {
    let c = Console::start("console = false").await;
    let r = client()
        .get(format!("{}/console", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client()
        .get(format!("{}/healthz", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// `@require_mfa`: only a console session whose sign-in showed MFA approves; a session without
/// it and an API token are refused (`mfa_required`, audited), the API's answer linking to the
/// console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_review_is_approved_only_from_an_mfa_session() {
    let c = Console::start("").await;
    let id = c
        .submit(json!({"action": "db.restart", "resource": "orders-db", "environment": "prod"}))
        .await;
    let url = format!("{}/console/actions/{id}/vote", c.url);

    // Bob signed in with a password only.
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&format!("{}/console/actions/{id}", c.url)).await;
    assert!(page.body.contains("id=\"mfa-notice\""), "{}", page.body);
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    let refused = bob
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("mfa_required"), "{}", refused.body);

    // An API vote (a configured person's token) is refused with the code and a link.
    let resp = c
        .http
        .post(format!("{}/v1/reviews/{id}/votes", c.url))
        .bearer_auth("tok-erin")
        .json(&json!({"verdict": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "mfa_required", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("/console/actions/{id}")),
        "{v}"
    );

    // Alice signed in with MFA: approved.
    let mut alice = Browser::new();
    alice.sign_in(&format!("{}/console", c.url), "alice").await;
    let page = alice.get(&format!("{}/console/actions/{id}", c.url)).await;
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    let done = alice
        .post(
            &url,
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            None,
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("status-approved"), "{}", done.body);

    let refusals = c.refusals().await;
    for who in ["bob", "erin"] {
        assert!(
            refusals
                .iter()
                .any(|(w, code)| w == who && code == "mfa_required"),
            "{who} mfa_required audited: {refusals:?}"
        );
    }
}

/// The history: filters and server-side pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_and_pages() {
    let c = Console::start("").await;
    let mut ids = Vec::new();
    for (env, replicas) in [("prod", 1), ("staging", 2), ("prod", 3), ("prod", 50)] {
        ids.push(
            c.submit(
                json!({"action": "deploy", "resource": "api-service", "environment": env,
                "params": {"replicas": replicas}}),
            )
            .await,
        );
    }
    let mut alice = Browser::new();
    alice.sign_in(&format!("{}/console", c.url), "alice").await;
    // Deny the first in the console, so it has a reviewer.
    let page = alice
        .get(&format!("{}/console/actions/{}", c.url, ids[0]))
        .await;
    assert!(page.body.contains("id=\"audit-entries\""), "{}", page.body);
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    alice
        .post(
            &format!("{}/console/actions/{}/vote", c.url, ids[0]),
            &[
                ("csrf", &token),
                ("digest", &seen),
                ("decision", "deny"),
                ("comment", "not now"),
            ],
            None,
        )
        .await;
    let count = |body: &str| body.matches("<tr data-id=").count();
    let all = alice.get(&format!("{}/console/history", c.url)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(count(&all.body), 4, "{}", all.body);
    let prod = alice
        .get(&format!("{}/console/history?environment=prod", c.url))
        .await;
    assert_eq!(count(&prod.body), 3);
    let denied = alice
        .get(&format!("{}/console/history?status=denied", c.url))
        .await;
    assert_eq!(count(&denied.body), 1, "the forbid denied replicas=50");
    assert!(denied.body.contains(&ids[3]));
    let rejected = alice
        .get(&format!(
            "{}/console/history?status=rejected&reviewer=alice",
            c.url
        ))
        .await;
    assert_eq!(count(&rejected.body), 1);
    assert!(rejected.body.contains(&ids[0]));
    let nobody = alice
        .get(&format!("{}/console/history?reviewer=bob", c.url))
        .await;
    assert_eq!(count(&nobody.body), 0);
    let future = alice
        .get(&format!("{}/console/history?from=2999-01-01", c.url))
        .await;
    assert_eq!(count(&future.body), 0);
    let bad = alice
        .get(&format!("{}/console/history?from=yesterday", c.url))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = alice
        .get(&format!("{}/console/history?after=zzz", c.url))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Keyset pages: two by two, every action once, in order.
    let who =
        countersign_core::Identity::new("alice", countersign_core::IdentityKind::Human, ["sre"]);
    let mut q = countersign_gateway::HistoryQuery {
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = c.gateway.history(&who, &q).await.unwrap();
        seen.extend(page.actions.iter().map(|v| v.record.id.clone()));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

/// The admin page: managed keys created (the secret shown once) and revoked by an admin; others
/// are refused by the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_and_revokes_a_key() {
    let c = Console::start("admin_group = \"admins\"").await;
    let mut carol = Browser::new();
    carol.sign_in(&format!("{}/console", c.url), "carol").await;
    let page = carol.get(&format!("{}/console/admin", c.url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let token = csrf(&page.body);
    let url = format!("{}/console/admin/keys", c.url);
    let created = carol
        .post(
            &url,
            &[
                ("csrf", &token),
                ("op", "create"),
                ("identity", "release-bot"),
                ("kind", "agent"),
                ("groups", "automation"),
                ("expires", "30d"),
            ],
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let at = created.body.find("id=\"key-secret\">").unwrap() + "id=\"key-secret\">".len();
    let secret = created.body[at..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("csk_"), "{secret}");
    let key_id = created
        .body
        .split("data-id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // The key works on the API.
    let submit = |key: String| {
        let http = c.http.clone();
        let url = c.url.clone();
        async move {
            http.post(format!("{url}/v1/actions"))
                .bearer_auth(key)
                .json(&json!({"action": "deploy", "resource": "r"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(submit(secret.clone()).await, StatusCode::CREATED);
    // Listed again without its secret.
    let listed = carol.get(&format!("{}/console/admin", c.url)).await;
    assert!(listed.body.contains(&key_id) && !listed.body.contains(&secret));
    // Revoked: refused from the next request on.
    let revoked = carol
        .post(
            &url,
            &[("csrf", &token), ("op", "revoke"), ("id", &key_id)],
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body.contains("revoked"));
    assert_eq!(submit(secret).await, StatusCode::UNAUTHORIZED);

    // Policy eval as a form, as a configured identity; identities listed.
    assert!(listed.body.contains("id=\"identities\"") && listed.body.contains(">erin<"));
    let eval = carol
        .post(
            &format!("{}/console/admin/eval", c.url),
            &[
                ("csrf", &token),
                ("principal", "bot"),
                ("action", "db.restart"),
                ("resource", "orders-db"),
                ("params", "{}"),
            ],
            None,
        )
        .await;
    assert_eq!(eval.status, StatusCode::OK, "{}", eval.body);
    assert!(eval.body.contains("id=\"eval-result\""), "{}", eval.body);
    assert!(
        eval.body.contains("<strong>review</strong>") && eval.body.contains("(MFA)"),
        "{}",
        eval.body
    );
    let eval = carol
        .post(
            &format!("{}/console/admin/eval", c.url),
            &[
                ("csrf", &token),
                ("principal", "bot"),
                ("action", "deploy"),
                ("resource", "r"),
                ("params", "{\"replicas\": 99}"),
            ],
            None,
        )
        .await;
    assert!(eval.body.contains("<strong>deny</strong>"), "{}", eval.body);

    // Not an admin: refused.
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&format!("{}/console/admin", c.url)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let queue = bob.get(&format!("{}/console", c.url)).await;
    let bob_token = csrf(&queue.body);
    let refused = bob
        .post(
            &url,
            &[
                ("csrf", &bob_token),
                ("op", "create"),
                ("identity", "x"),
                ("kind", "agent"),
            ],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = bob
        .post(
            &format!("{}/console/admin/eval", c.url),
            &[
                ("csrf", &bob_token),
                ("principal", "bot"),
                ("action", "deploy"),
            ],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

/// The admin page lists every loaded policy read-only: id, effect and Cedar text, escaped;
/// a signed-in person outside the admin group sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_lists_the_loaded_policies() {
    let c = Console::start("admin_group = \"admins\"").await;
    let mut carol = Browser::new();
    carol.sign_in(&format!("{}/console", c.url), "carol").await;
    let page = carol.get(&format!("{}/console/admin", c.url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let list = page
        .body
        .split("id=\"policies\"")
        .nth(1)
        .expect("a policy list");
    let list = list.split("</ul>").next().unwrap();
    for (id, effect) in [
        ("deploy", "review"),
        ("no-big-replicas", "forbid"),
        ("restart", "review"),
    ] {
        let item = list
            .split(&format!("data-id=\"{id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("{id} not listed: {list}"));
        let item = item.split("</li>").next().unwrap();
        assert!(
            item.contains(&format!("<span class=\"badge\">{effect}</span>")),
            "{item}"
        );
        assert!(item.contains("<pre class=\"cedar\">"), "{item}");
    }
    // The Cedar text as loaded, auto-escaped in a <pre>.
    assert!(
        list.contains("context.params.replicas &gt; 10") && !list.contains("replicas > 10"),
        "{list}"
    );
    assert!(list.contains("@require_mfa"), "{list}");
    assert!(!list.contains("<form"), "read-only: {list}");

    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&format!("{}/console/admin", c.url)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.body.contains("replicas &gt; 10") && !page.body.contains("id=\"policies\""));
}

/// The audit page's download: the log up to the latest checkpoint as `countersign audit export`
/// writes it, an attachment that verifies offline against the log's key; CSV and OCSF too;
/// signed-out browsers go to sign in, and an unknown format is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_downloads_an_export_that_verifies() {
    let c = Console::start("").await;
    c.submit(json!({"action": "deploy", "resource": "api-service", "params": {"replicas": 1}}))
        .await;
    c.gateway
        .audit()
        .checkpoint_if_grown(c.gateway.current_time())
        .await
        .unwrap();
    let size = c.gateway.audit().size().await.unwrap();
    let mut dave = Browser::new();
    dave.sign_in(&format!("{}/console", c.url), "dave").await;
    let page = dave.get(&format!("{}/console/audit", c.url)).await;
    assert!(
        page.body
            .contains("href=\"/console/audit/export?format=jsonl\""),
        "{}",
        page.body
    );

    let bundle = dave
        .get_once(&format!("{}/console/audit/export?format=jsonl", c.url))
        .await;
    assert_eq!(bundle.status, StatusCode::OK, "{}", bundle.body);
    assert_eq!(
        bundle.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"countersign-audit.jsonl\""
    );
    assert!(bundle.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let verified =
        countersign_audit::verify::verify_bundle(&bundle.body, c.gateway.audit().verifier(), None)
            .unwrap_or_else(|t| panic!("the bundle does not verify: {t}\n{}", bundle.body));
    assert_eq!(verified.tree_size, size);
    assert_eq!(verified.entries as u64, size);
    // (`verify_bundle` is what `countersign audit verify BUNDLE` runs.)
    // A tampered copy does not.
    let tampered = bundle.body.replacen("api-service", "api-servicf", 1);
    assert!(countersign_audit::verify::verify_bundle(
        &tampered,
        c.gateway.audit().verifier(),
        None
    )
    .is_err());

    let csv = dave
        .get_once(&format!("{}/console/audit/export?format=csv", c.url))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(csv.body.lines().count() as u64, size + 1, "{}", csv.body);
    let ocsf = dave
        .get_once(&format!("{}/console/audit/export?format=ocsf", c.url))
        .await;
    assert_eq!(ocsf.status, StatusCode::OK);
    for line in ocsf.body.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["class_uid"].is_number(), "{v}");
    }

    // Hostile or absent: an unknown format, a signed-out browser.
    for bad in ["xml", "jsonl%0d%0aX-Evil:%201", "../../etc/passwd", ""] {
        let refused = dave
            .get_once(&format!("{}/console/audit/export?format={bad}", c.url))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!refused.headers.contains_key(header::CONTENT_DISPOSITION));
    }
    let anonymous = client()
        .get(format!("{}/console/audit/export?format=jsonl", c.url))
        .send()
        .await
        .unwrap();
    assert!(anonymous.status().is_redirection());
    assert!(anonymous.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));
}

/// Without an `[[oidc]]` issuer (so nothing installed a TLS provider before the console), the
/// server starts, and `/console` explains how to set it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_id_the_console_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.cedar"), POLICIES).unwrap();
    let path = dir.path().join("countersign.toml");
    std::fs::write(
        &path,
        "database = \"sqlite://gw.db\"\npolicies = \"policies\"\n",
    )
    .unwrap();
    let config = countersign_gateway::config::Config::load(&path).unwrap();
    let server = countersign_server::Server::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    let r = client().get(format!("{url}/console")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("client_id"));
    task.abort();
}

/// `@reveal` in the console (#17): the action page offers "Reveal masked values" when masking
/// hid some; alice, whom the policy names, gets the page once with the real values (marked as
/// revealed, never cached, not re-read live) and a `revealed` entry is recorded; bob, an
/// approver the policy does not name, gets the masked page with the refusal (403, audited); a
/// post without the CSRF token is refused before anything is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_revealer_sees_the_real_values_and_others_are_refused() {
    use crate::canaries::{assert_clean, params, CANARIES};
    let c = Console::start("\n[masking]\nfields = [\"params.customer.ssn\"]\n").await;
    let id = c
        .submit(json!({
            "action": "customer.export",
            "resource": "crm://customers",
            "justification": format!("customer {} asked", CANARIES[0]),
            "params": params(),
        }))
        .await;
    let page_url = format!("{}/console/actions/{id}", c.url);
    let reveal_url = format!("{page_url}/reveal");

    // bob reads the masked page, which offers the reveal; his reveal is refused.
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let page = bob.get(&page_url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"reveal\""), "{}", page.body);
    assert_clean("the masked action page", &page.body);
    let token = csrf(&page.body);
    let refused = bob.post(&reveal_url, &[("csrf", &token)], None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("Refused (reveal_not_allowed)"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("id=\"revealed\""));
    assert_clean("the refused reveal's page", &refused.body);

    // alice, without the CSRF token: refused, nothing shown.
    let mut alice = Browser::new();
    alice.sign_in(&format!("{}/console", c.url), "alice").await;
    let missing = alice.post(&reveal_url, &[], None).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    assert_clean("a reveal without a CSRF token", &missing.body);

    // alice, with another session's token, or naming an action that does not exist: refused.
    let page = alice.get(&page_url).await;
    let token = csrf(&page.body);
    let wrong = alice
        .post(&reveal_url, &[("csrf", &dave_token(&token))], None)
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert_clean("a reveal with a wrong CSRF token", &wrong.body);
    let unknown = alice
        .post(
            &format!("{}/console/actions/nope/reveal", c.url),
            &[("csrf", &token)],
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

    // alice, with it: the real values, once.
    let shown = alice.post(&reveal_url, &[("csrf", &token)], None).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.headers[header::CACHE_CONTROL], "no-store");
    let csp = shown.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(
        !shown.body.contains("<script>") && !shown.body.contains(" style="),
        "no inline script or style: {}",
        shown.body
    );
    for real in [CANARIES[0], CANARIES[12], CANARIES[13]] {
        assert!(
            shown.body.contains(real),
            "{real} not revealed: {}",
            shown.body
        );
    }
    assert!(shown.body.contains("id=\"revealed\""), "{}", shown.body);
    assert!(shown.body.contains("Revealed: "), "{}", shown.body);
    // The pointers of the revealed values, HTML-escaped like every value on the page.
    assert!(
        shown
            .body
            .contains("<code>&#x2f;params&#x2f;customer&#x2f;ssn</code>"),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains("id=\"reveal-form\""), "{}", shown.body);
    assert!(!shown.body.contains("data-live"), "{}", shown.body);
    // Read again, the page is masked.
    let again = alice.get(&page_url).await;
    assert_clean("the action page after a reveal", &again.body);

    // The log: one `revealed` entry, by alice, naming the values (not showing them); bob's and
    // the token-less refusals.
    let entries = c.gateway.store().audit_entries(0, 1000).await.unwrap();
    let revealed: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.body).unwrap())
        .filter(|v| v["type"] == "revealed")
        .collect();
    assert_eq!(revealed.len(), 1, "{revealed:?}");
    assert_eq!(revealed[0]["event"]["by"], "alice", "{}", revealed[0]);
    assert_eq!(revealed[0]["action_id"], id.as_str(), "{}", revealed[0]);
    assert!(
        revealed[0]["event"]["values"]
            .as_array()
            .unwrap()
            .contains(&json!("/params/customer/ssn")),
        "{}",
        revealed[0]
    );
    assert_clean("the revealed entry", &revealed[0].to_string());
    let refusals = c.refusals().await;
    for (who, code) in [
        ("bob", "reveal_not_allowed"),
        ("alice", "csrf_missing"),
        ("alice", "csrf_invalid"),
    ] {
        assert!(
            refusals.iter().any(|(w, c)| w == who && c == code),
            "{who} {code} audited: {refusals:?}"
        );
    }
}
