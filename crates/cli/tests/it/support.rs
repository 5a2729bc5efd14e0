//! A gateway on a random loopback port, with test identities (token `tok-<id>`) and policies.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const POLICIES: &str = r#"
@id("reads") permit (principal, action == Action::"logs.read", resource);
@id("deploy") @effect("review") @approvers("group:sre") @reason("deploys need an SRE")
permit (principal, action == Action::"deploy", resource);
@id("export") @effect("review") @approvers("group:data") @quorum("2") @reason("exports need two data owners")
permit (principal, action == Action::"db.export", resource);
@id("quick") @effect("review") @approvers("group:sre") @ttl("1s")
permit (principal, action == Action::"quick", resource);
@id("grant") @effect("review") @approvers("group:sec, human:alice")
permit (principal, action == Action::"iam.grant", resource);
@id("no-admin") @reason("admin is never granted by an agent")
forbid (principal, action == Action::"iam.grant", resource)
when { context.params has role && context.params.role == "admin" };
@id("no-drop") @reason("dropping tables is forbidden")
forbid (principal, action == Action::"db.drop", resource);
@id("pay") @effect("review") @approvers("group:sre") @executor("service:deployer")
permit (principal, action == Action::"payment.send", resource);
@id("no-big-payments") @reason("payments over 1000 are never sent by an agent")
forbid (principal, action == Action::"payment.send", resource) when { context.params.amount > 1000 };
@id("read-rows") @effect("review") @approvers("group:sre")
permit (principal, action == Action::"db.read", resource);
@id("bulk-read") @effect("review") @approvers("group:data") @quorum("2")
permit (principal, action == Action::"db.read", resource)
when { context.params has rows && context.params.rows > 1000 };
@id("sql-low") permit (principal, action == Action::"db.query", resource) when { context.risk == "low" };
@id("sql-ddl") @effect("review") @approvers("group:sre") @reason("DDL waits for an SRE")
permit (principal, action == Action::"db.query", resource) when { context.tags.contains("sql:ddl") };
"#;

const IDENTITIES: [(&str, &str, &[&str]); 7] = [
    ("bot", "agent", &["automation"]),
    ("ci", "service", &["automation", "sre"]),
    ("alice", "human", &["sre"]),
    ("bob", "human", &["sre", "data"]),
    ("carol", "human", &["data"]),
    ("dave", "human", &[]),
    ("erin", "human", &["sec"]),
];

/// Writes a config (plus `extra` TOML lines) and the policies into `dir`; returns the config path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.cedar"), POLICIES).unwrap();
    // Tests exercise grants on allowed actions too, unless a test sets the key itself.
    let grants = if extra.contains("grants_for_allowed") {
        ""
    } else {
        "grants_for_allowed = true\n"
    };
    let mut toml = format!(
        "database = \"sqlite://data/gw.db\"\npolicies = \"policies\"\nreview_ttl = \"10m\"\n{grants}{extra}\n"
    );
    for (id, kind, groups) in IDENTITIES {
        let hash = hex::encode(Sha256::digest(format!("tok-{id}").as_bytes()));
        let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
        toml += &format!(
            "[[identities]]\nid = \"{id}\"\nkind = \"{kind}\"\ngroups = [{}]\napi_key_sha256 = \"{hash}\"\n\n",
            groups.join(", ")
        );
    }
    let path = dir.join("countersign.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Starts the server `config_path` describes (the same bootstrap as `countersign serve`, without
/// the start-up audit entries so a test's first action is entry 0) on a loopback port.
pub async fn serve(config_path: &Path) -> (String, tokio::task::JoinHandle<()>) {
    let config = countersign_gateway::config::Config::load(config_path).unwrap();
    let options = countersign_server::Options {
        record_loaded: false,
        ..Default::default()
    };
    let server = countersign_server::Server::open_with(&config, options)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    (url, task)
}

pub struct Gw {
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The body of an unauthenticated GET of `url` (`/metrics`, the audit public key).
pub async fn get_text(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

impl Gw {
    pub async fn start() -> Gw {
        Gw::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), extra);
        let (url, server) = serve(&config_path).await;
        Gw {
            url,
            http: client(),
            dir,
            server,
        }
    }

    /// A gateway someone else started (serving at `url` until `server` ends).
    pub fn from_parts(
        url: String,
        http: reqwest::Client,
        dir: tempfile::TempDir,
        server: tokio::task::JoinHandle<()>,
    ) -> Gw {
        Gw {
            url,
            http,
            dir,
            server,
        }
    }

    pub async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if !who.is_empty() {
            req = req.bearer_auth(format!("tok-{who}"));
        }
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

    pub async fn get(&self, who: &str, path: &str) -> (StatusCode, Value) {
        self.call(who, Method::GET, path, None).await
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(who, Method::POST, path, Some(body)).await
    }

    /// Submits and asserts 201.
    pub async fn submit(&self, who: &str, body: Value) -> Value {
        let (s, v) = self.post(who, "/v1/actions", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn vote(&self, who: &str, id: &str, body: Value) -> (StatusCode, Value) {
        self.post(who, &format!("/v1/reviews/{id}/votes"), body)
            .await
    }
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// What a local double of an outside service (Slack's Web API, the Bot Connector) got, in
/// order: (method or route, JSON body). Shared by the chat channels' e2e tests.
#[derive(Clone, Default)]
pub struct Calls(std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>);

impl Calls {
    /// Every call so far, for a double that looks back at them.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Value)>> {
        self.0.lock().unwrap()
    }

    /// Records one call.
    pub fn push(&self, route: &str, body: Value) {
        self.lock().push((route.to_string(), body));
    }

    /// The bodies of the calls to `route`.
    pub fn of(&self, route: &str) -> Vec<Value> {
        self.lock()
            .iter()
            .filter(|(r, _)| r == route)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits (30 s at most) until `done` holds for the calls to `route`; their bodies.
    pub async fn wait_until(&self, route: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = std::time::Instant::now();
        loop {
            let got = self.of(route);
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "timed out waiting for {route}: {:?}",
                self.lock()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The wall clock in seconds (what an outside service stamps its requests with).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Gw {
    /// `who`'s long poll of action `id` (30 s), running until the action's next change.
    pub fn long_poll(&self, who: &str, id: &str) -> tokio::task::JoinHandle<Value> {
        let http = self.http.clone();
        let url = format!("{}/v1/actions/{id}?wait=30", self.url);
        let token = format!("tok-{who}");
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            r.json::<Value>().await.unwrap()
        })
    }

    /// The `refused` entries of the audit log (read by alice).
    pub async fn refusals(&self) -> Vec<Value> {
        let (_, log) = self
            .get("alice", "/v1/audit/entries?start=0&limit=1000")
            .await;
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry"].clone())
            .filter(|e| e["type"] == "refused")
            .collect()
    }
}

/// A pseudo-terminal (`openpty`) for a child: its three standard streams go to the terminal,
/// and what the terminal shows is read on a thread.
pub struct Terminal {
    /// The child's side, kept open (its settings can be read after the child is gone).
    pub slave: std::os::fd::OwnedFd,
    master: std::fs::File,
    shown: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    pub fn open() -> Terminal {
        use std::io::Read;
        let pty = nix::pty::openpty(None, None).unwrap();
        let master = std::fs::File::from(pty.master);
        let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let seen = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            slave: pty.slave,
            master,
            shown,
        }
    }

    /// Runs `c` with stdin, stdout and stderr on this terminal.
    pub fn attach<'a>(
        &self,
        c: &'a mut tokio::process::Command,
    ) -> &'a mut tokio::process::Command {
        let slave = || std::process::Stdio::from(self.slave.try_clone().unwrap());
        c.stdin(slave()).stdout(slave()).stderr(slave())
    }

    /// Everything the terminal has shown so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    /// Types `bytes`.
    pub fn type_in(&self, bytes: &[u8]) {
        std::io::Write::write_all(&mut &self.master, bytes).unwrap();
    }

    /// Waits (up to 30 s) until the terminal shows `want`; returns what it shows.
    pub async fn until(&self, want: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            let t = self.text();
            if t.contains(want) {
                return t;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no {want:?} on the terminal: {t}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
