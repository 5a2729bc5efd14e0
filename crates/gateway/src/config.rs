//! The TOML configuration file: parsed strictly (unknown keys are errors), validated as a whole,
//! with every problem naming the file, the key and what to do.

use crate::credentials::{CredentialConfig, KindConfig, Secret, SourceAddress};
use countersign_core::{Approvers, Identity, IdentityKind, Quorum};
use countersign_identity::OidcIssuerConfig;
use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// Which key and what is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database: Option<String>,
    policies: Option<String>,
    review_ttl: Option<String>,
    grant_ttl: Option<String>,
    grants_for_allowed: Option<bool>,
    default_effect: Option<String>,
    default_approvers: Option<String>,
    default_quorum: Option<u32>,
    signing_key: Option<String>,
    audit_origin: Option<String>,
    audit_key: Option<String>,
    #[serde(default)]
    identities: Vec<RawIdentity>,
    admin_group: Option<String>,
    #[serde(default)]
    oidc: Vec<OidcIssuerConfig>,
    header_read_timeout: Option<String>,
    request_body_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    metrics_token_sha256: Option<String>,
    metrics_listen: Option<String>,
    #[serde(default)]
    analysis: std::collections::BTreeMap<String, Vec<String>>,
    max_open_reviews_per_requester: Option<u32>,
    masking: Option<countersign_mask::MaskingConfig>,
    masking_key: Option<String>,
    secrets_key: Option<String>,
    #[serde(default)]
    credentials: Vec<RawCredential>,
    telemetry: Option<RawTelemetry>,
    console: Option<bool>,
    console_url: Option<String>,
    console_session_ttl: Option<String>,
    #[serde(default)]
    webhooks: Vec<crate::notify::RawWebhook>,
    outbox: Option<crate::notify::RawOutbox>,
    slack: Option<crate::notify::RawSlack>,
    teams: Option<crate::notify::RawTeams>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
}

/// One `[[credentials]]` entry as written; which keys a kind takes is checked in
/// [`credential`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    kind: String,
    env: Option<String>,
    ttl: Option<String>,
    admin_url: Option<String>,
    admin_url_env: Option<String>,
    #[serde(default)]
    member_of: Vec<String>,
    principal: Option<String>,
    ca_key: Option<String>,
    source_address: Option<Vec<String>>,
}

/// One `source_address` entry: `requester`, or an address or CIDR block, normalised.
fn source_address(at: &str, entry: &str) -> Result<SourceAddress, String> {
    if entry == "requester" {
        return Ok(SourceAddress::Requester);
    }
    let bad = || {
        format!(
            "{at}: `source_address` entry \"{entry}\" is not \"requester\", an IP address or a CIDR block like \"10.0.0.0/8\""
        )
    };
    let (addr, len) = match entry.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (entry, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max && !l.starts_with('+'))
            .ok_or_else(bad)?,
    };
    // Host bits set under the mask (`10.1.2.3/8`) are refused, as sshd refuses them.
    let host_bits = match ip {
        std::net::IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
        std::net::IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
    };
    if host_bits {
        return Err(format!(
            "{at}: `source_address` entry \"{entry}\" has host bits set under its mask"
        ));
    }
    Ok(SourceAddress::Net(format!("{ip}/{len}")))
}

/// Validates one `[[credentials]]` entry. `lookup` reads an environment variable (for
/// `admin_url_env`). Messages never quote a secret's value.
fn credential(
    raw: RawCredential,
    default_lifetime: Duration,
    lookup: &dyn Fn(&str) -> Option<String>,
    base: &Path,
    default_ca_key: PathBuf,
) -> Result<CredentialConfig, String> {
    let at = format!("[[credentials]] \"{}\"", raw.name);
    let plain = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !plain(&raw.name, 64) {
        return Err(format!(
            "{at}: `name` must be 1-64 of letters, digits, `-`, `_` and `.` (it is what @credentials(\"...\") names)"
        ));
    }
    let env = raw
        .env
        .ok_or_else(|| format!("{at}: `env` names the environment variable the command receives it in, e.g. env = \"DATABASE_URL\""))?;
    let env_ok = !env.is_empty()
        && env.len() <= 128
        && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !env.starts_with(|c: char| c.is_ascii_digit());
    if !env_ok {
        return Err(format!(
            "{at}: `env` = \"{env}\" must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    let lifetime = match raw.ttl.as_deref() {
        None => default_lifetime,
        Some(t) => duration("ttl", Some(t), "").map_err(|e| format!("{at}: {e}"))?,
    };
    let kind = match raw.kind.as_str() {
        "postgres_role" => {
            let admin_url = match (raw.admin_url, raw.admin_url_env) {
                (Some(url), None) => url,
                (None, Some(var)) => lookup(&var).ok_or_else(|| {
                    format!("{at}: `admin_url_env` = \"{var}\" is not set in the environment")
                })?,
                _ => {
                    return Err(format!(
                        "{at}: kind \"postgres_role\" needs exactly one of `admin_url` and `admin_url_env`"
                    ))
                }
            };
            if !(admin_url.starts_with("postgres://") || admin_url.starts_with("postgresql://"))
            {
                return Err(format!(
                    "{at}: the admin URL must be a postgres:// URL (its value is not shown)"
                ));
            }
            if raw.member_of.is_empty() {
                return Err(format!(
                    "{at}: kind \"postgres_role\" needs `member_of`, the roles whose privileges it gets, e.g. [\"app_rw\"]"
                ));
            }
            if let Some(r) = raw.member_of.iter().find(|r| {
                r.is_empty() || r.len() > 63 || r.chars().any(|c| c.is_control() || c == '"')
            }) {
                return Err(format!("{at}: `member_of` role `{r}` is not a role name"));
            }
            if raw.principal.is_some() || raw.ca_key.is_some() || raw.source_address.is_some() {
                return Err(format!(
                    "{at}: `principal`, `ca_key` and `source_address` are for kind \"ssh_certificate\""
                ));
            }
            KindConfig::PostgresRole {
                admin_url: Secret::new(admin_url),
                member_of: raw.member_of,
            }
        }
        "ssh_certificate" => {
            if raw.admin_url.is_some() || raw.admin_url_env.is_some() || !raw.member_of.is_empty()
            {
                return Err(format!(
                    "{at}: `admin_url`, `admin_url_env` and `member_of` are for kind \"postgres_role\""
                ));
            }
            let principal = raw.principal.ok_or_else(|| {
                format!("{at}: kind \"ssh_certificate\" needs `principal`, the remote user the certificate is for")
            })?;
            if principal.is_empty()
                || principal.len() > 256
                || principal.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
            {
                return Err(format!("{at}: `principal` = \"{principal}\" is not a user name"));
            }
            let source_address = match raw.source_address {
                None => Vec::new(),
                Some(list) if list.is_empty() => {
                    return Err(format!(
                        "{at}: `source_address` is empty; leave it out for no restriction"
                    ))
                }
                Some(list) => list
                    .iter()
                    .map(|e| source_address(&at, e))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            KindConfig::SshCertificate {
                ca_key: raw.ca_key.map_or(default_ca_key, |p| base.join(p)),
                principal,
                source_address,
            }
        }
        "static" => {
            if raw.admin_url.is_some()
                || raw.admin_url_env.is_some()
                || !raw.member_of.is_empty()
                || raw.principal.is_some()
                || raw.ca_key.is_some()
                || raw.source_address.is_some()
            {
                return Err(format!(
                    "{at}: kind \"static\" takes only `name`, `kind`, `env` and `ttl`; its value is set with `countersign credentials set {} --config FILE`",
                    raw.name
                ));
            }
            KindConfig::Static
        }
        other => {
            return Err(format!(
                "{at}: kind \"{other}\" is unknown; use \"postgres_role\", \"ssh_certificate\" or \"static\""
            ))
        }
    };
    Ok(CredentialConfig {
        name: raw.name,
        kind,
        env,
        lifetime,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    id: String,
    kind: IdentityKind,
    #[serde(default)]
    groups: Vec<String>,
    email: Option<String>,
    api_key_sha256: String,
    oidc_subject: Option<String>,
    slack_user_id: Option<String>,
    teams_aad_object_id: Option<String>,
}

/// A configured identity with the SHA-256 of its bearer token.
#[derive(Debug, Clone)]
pub struct ConfiguredIdentity {
    /// Unique id.
    pub id: String,
    /// Human, agent or service.
    pub kind: IdentityKind,
    /// Group names.
    pub groups: BTreeSet<String>,
    /// Contact address.
    pub email: Option<String>,
    /// SHA-256 of the bearer token.
    pub api_key_sha256: [u8; 32],
    /// `issuer#subject` of the OIDC user who is this (human) identity: signing in through the
    /// identity provider as that subject is acting as this identity, one person.
    pub oidc_subject: Option<String>,
    /// The Slack user (`U0123ABCD`) who is this (human) identity when clicking in Slack.
    pub slack_user_id: Option<String>,
    /// The Entra ID object id (`from.aadObjectId`, lowercase) who is this (human) identity when
    /// clicking in Teams.
    pub teams_aad_object_id: Option<String>,
}

impl ConfiguredIdentity {
    /// The identity a request authenticated by this entry acts as (source `config`).
    pub fn identity(&self) -> Identity {
        Identity {
            id: self.id.clone(),
            kind: self.kind,
            groups: self.groups.clone(),
            email: self.email.clone(),
            source: Some("config".into()),
            issuer: None,
            claims: Default::default(),
            sponsor: None,
            stable_key: Some(format!("config:{}", self.id)),
        }
    }
}

/// Where records are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://...`), shared by any number of replicas.
    Postgres(String),
}

/// What to do when no policy matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultEffectConfig {
    /// Deny.
    Deny,
    /// Ask these approvers.
    Review(Approvers, Quorum),
}

/// What the HTTP server allows each connection: slow or idle clients are cut off and the number
/// of connections is bounded, so a hostile client cannot hold the server's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client may take to send a request's headers, counted from when the server
    /// starts waiting for them (the connection's start, or the previous response): a keep-alive
    /// connection that sends nothing is closed after this long too.
    pub header_read_timeout: Duration,
    /// How long a request body may make no progress (no bytes arrive) before the request is
    /// refused with 408 `request_timeout` and the connection closed.
    pub request_body_timeout: Duration,
    /// How long the connection's socket may stay without a byte read or written while the
    /// server waits on it; longer than the longest long poll ([`crate::service::MAX_WAIT`]).
    pub idle_timeout: Duration,
    /// Most connections served at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// When set, `GET /metrics` answers only a bearer token with this SHA-256 (else 401);
    /// unset, it is open like `/healthz`.
    pub metrics_token_sha256: Option<[u8; 32]>,
    /// When set, `/metrics` is served on this address only (the API's port answers 404 for it).
    pub metrics_listen: Option<SocketAddr>,
    /// Whether each request opens a trace span (set when `[telemetry] otlp_endpoint` is): off,
    /// the request path does no tracing work at all.
    pub traces: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            metrics_token_sha256: None,
            metrics_listen: None,
            traces: false,
        }
    }
}

/// `[telemetry]`: where traces go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// The OTLP/HTTP traces URL spans are exported to (`[telemetry] otlp_endpoint`, with
    /// `/v1/traces` appended to a collector's base address); `None`, traces are off.
    pub otlp_endpoint: Option<String>,
}

/// The OTLP/HTTP traces URL for `[telemetry] otlp_endpoint` = `value`: an `http://` or
/// `https://` address of a collector (`/v1/traces` is appended unless the path already ends
/// with it), with no credentials, query or fragment in it.
pub fn otlp_traces_url(value: &str) -> Result<String, String> {
    // The value is not repeated when it holds credentials: error messages end up in logs.
    let shown = if value.contains('@') {
        "(not shown)"
    } else {
        value
    };
    let bad = |why: &str| {
        format!(
            "[telemetry] `otlp_endpoint` = \"{shown}\" {why}; give a collector's OTLP/HTTP \
             address, e.g. \"http://127.0.0.1:4318\""
        )
    };
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| bad("is not an http:// or https:// URL"))?;
    if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("has spaces or control characters"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.contains('@') {
        return Err(bad(
            "holds credentials (configure them on the collector's side)",
        ));
    }
    if path.contains('?') || path.contains('#') || authority.contains(['?', '#']) {
        return Err(bad("has a query or fragment"));
    }
    if path.trim_end_matches('/').ends_with("/v1/traces") {
        return Ok(value.trim_end_matches('/').to_string());
    }
    Ok(format!("{}/v1/traces", value.trim_end_matches('/')))
}

/// Default for [`Config::max_open_reviews_per_requester`].
pub const DEFAULT_MAX_OPEN_REVIEWS_PER_REQUESTER: u32 = 100;

/// A validated configuration; every path is absolute or relative to the working directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// SHA-256 (hex) of the file's bytes, recorded in the audit log at start.
    pub sha256: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where records are stored.
    pub database: DatabaseUrl,
    /// The policy directory.
    pub policies: PathBuf,
    /// Default review TTL.
    pub review_ttl: Duration,
    /// How long a grant may wait to be redeemed.
    pub grant_ttl: Duration,
    /// Whether allowed actions also get a single-use grant (reviewed actions always do).
    pub grants_for_allowed: bool,
    /// When nothing matches.
    pub default_effect: DefaultEffectConfig,
    /// The Ed25519 grant-signing key file (PKCS#8 PEM), created on first start.
    pub signing_key: PathBuf,
    /// The audit log's name (C2SP checkpoint origin and note key name).
    pub audit_origin: String,
    /// The audit log's note signing key file, created on first start.
    pub audit_key: PathBuf,
    /// Identities with API keys.
    pub identities: Vec<ConfiguredIdentity>,
    /// People in this group may manage API keys (still bound by every voting rule).
    pub admin_group: Option<String>,
    /// Trusted OIDC issuers (`[[oidc]]`), validated.
    pub oidc: Vec<OidcIssuerConfig>,
    /// Timeouts and the connection limit of the HTTP server.
    pub server: ServerLimits,
    /// More parameter names for the analyzers (`[analysis]`, e.g. `sql = ["migration"]`).
    pub analysis: countersign_analyze::Names,
    /// What is masked before anyone reads an action (`[masking]`; on by default).
    pub masking: countersign_mask::MaskingConfig,
    /// The masking key file (32 random bytes, hex): tags and audit commitments are HMACs under it.
    pub masking_key: PathBuf,
    /// Most reviews one requester may have open at once; one more submission that policy sends
    /// to review is refused (429 `too_many_open_reviews`).
    pub max_open_reviews_per_requester: u32,
    /// Credentials released by approval (`[[credentials]]`).
    pub credentials: Vec<CredentialConfig>,
    /// The key file that seals static credentials' values in the store (32 random bytes, hex;
    /// made on first use, beside the database unless `secrets_key` names it).
    pub secrets_key: PathBuf,
    /// `[telemetry]`: OpenTelemetry traces (off unless `otlp_endpoint` is set).
    pub telemetry: Telemetry,
    /// `[[webhooks]]`: Standard Webhooks receivers of review notifications.
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// `[outbox]`: how notifications are retried.
    pub outbox: crate::notify::OutboxConfig,
    /// `[slack]`: the Slack app reviews are posted by and clicked in.
    pub slack: Option<crate::notify::SlackConfig>,
    /// `[teams]`: the Teams bot reviews are posted by and clicked in.
    pub teams: Option<crate::notify::TeamsConfig>,
    /// The web console (`console`, `console_url`, `console_session_ttl`).
    pub console: ConsoleSettings,
}

/// The web console's settings (issue #16).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Whether `serve` mounts the console at `/console` (`console = false` turns it off).
    pub enabled: bool,
    /// The URL browsers reach the gateway at (`console_url`, e.g. `https://gw.example.com`),
    /// without a trailing slash: the sign-in redirect URI is `{url}/console/callback`. Default:
    /// `http://{listen}`.
    pub url: String,
    /// How long a console session lasts from sign-in (`console_session_ttl`, default `8h`).
    pub session_ttl: Duration,
}

fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, String> {
    let text = value.unwrap_or(default);
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("`{key}` = \"{text}\" is not a duration like \"15m\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("`{key}` must be longer than zero"));
    }
    Ok(d)
}

/// Resolves `sqlite://PATH` (relative to `base`) or a bare path.
pub fn parse_database_url(url: &str, base: &Path) -> Result<DatabaseUrl, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() {
        return Err("`database` needs a path, e.g. sqlite://countersign.db".into());
    }
    Ok(DatabaseUrl::Sqlite(base.join(path)))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text as if it were the file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            file: path.display().to_string(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8760");
        let listen = listen_text.parse().map_err(|_| {
            err(format!(
                "`listen` = \"{listen_text}\" is not an address like \"127.0.0.1:8760\""
            ))
        })?;
        let database = parse_database_url(
            raw.database.as_deref().unwrap_or("sqlite://countersign.db"),
            base,
        )
        .map_err(|m| err(format!("`database`: {m}")))?;
        let policies = base.join(raw.policies.as_deref().unwrap_or("policies"));
        let review_ttl = duration("review_ttl", raw.review_ttl.as_deref(), "15m").map_err(err)?;
        let grant_ttl = duration("grant_ttl", raw.grant_ttl.as_deref(), "5m").map_err(err)?;
        let default_effect = match raw.default_effect.as_deref().unwrap_or("deny") {
            "deny" => {
                if raw.default_approvers.is_some() || raw.default_quorum.is_some() {
                    return Err(err(
                        "`default_approvers`/`default_quorum` need `default_effect = \"review\"`"
                            .into(),
                    ));
                }
                DefaultEffectConfig::Deny
            }
            "review" => {
                let approvers = raw
                    .default_approvers
                    .as_deref()
                    .ok_or_else(|| {
                        err("`default_effect = \"review\"` needs `default_approvers`, \
                             e.g. \"group:sre\""
                            .into())
                    })?
                    .parse::<Approvers>()
                    .map_err(|e| err(format!("`default_approvers`: {e}")))?;
                let quorum = Quorum::try_from(raw.default_quorum.unwrap_or(1))
                    .map_err(|e| err(format!("`default_quorum`: {e}")))?;
                DefaultEffectConfig::Review(approvers, quorum)
            }
            other => {
                return Err(err(format!(
                    "`default_effect` = \"{other}\": use \"deny\" or \"review\""
                )))
            }
        };
        let beside_db = |suffix: &str| match &database {
            DatabaseUrl::Sqlite(db) => {
                let mut name = db.file_name().unwrap_or_default().to_os_string();
                name.push(suffix);
                db.with_file_name(name)
            }
            // Replicas share one config, so they share the key files named beside it.
            DatabaseUrl::Postgres(_) => base.join(format!("countersign{suffix}")),
        };
        let signing_key = match &raw.signing_key {
            Some(p) => base.join(p),
            None => beside_db(".grant-signing.key"),
        };
        let audit_key = match &raw.audit_key {
            Some(p) => base.join(p),
            None => beside_db(".audit-log.key"),
        };
        let masking_key = match &raw.masking_key {
            Some(p) => base.join(p),
            None => beside_db(".masking.key"),
        };
        let secrets_key = match &raw.secrets_key {
            Some(p) => base.join(p),
            None => beside_db(".secrets.key"),
        };
        let audit_origin = raw
            .audit_origin
            .unwrap_or_else(|| "countersign.local/audit".to_string());
        if !countersign_audit::note::is_valid_key_name(&audit_origin) {
            return Err(err(format!(
                "`audit_origin` = \"{audit_origin}\" must be a non-empty name without spaces or `+`, \
                 e.g. \"gateway.example.com/audit\""
            )));
        }
        let mut ids = std::collections::HashMap::new();
        let mut subjects = HashSet::new();
        let mut slack_users = HashSet::new();
        let mut teams_users = HashSet::new();
        let mut keys = HashSet::new();
        let mut identities = Vec::new();
        for (n, ident) in raw.identities.into_iter().enumerate() {
            let at = format!("identities[{n}] (id \"{}\")", ident.id);
            if !valid_name(&ident.id) {
                return Err(err(format!(
                    "{at}: `id` must be 1-256 characters without spaces"
                )));
            }
            if let Err(e) = countersign_core::check_id(&ident.id) {
                return Err(err(format!("{at}: {e}")));
            }
            // Compared as people read them: `alice`, `Alice` and a Cyrillic `аlice` are one id.
            if let Some(other) = ids.insert(countersign_core::id_key(&ident.id), ident.id.clone()) {
                return Err(err(format!(
                    "{at}: duplicate identity id: `{}` is `{other}` once case and look-alike \
                     characters are ignored",
                    ident.id
                )));
            }
            if let Some(subject) = &ident.oidc_subject {
                if ident.kind != IdentityKind::Human {
                    return Err(err(format!(
                        "{at}: `oidc_subject` links a person's identity-provider account; \
                         only `kind = \"human\"` identities may have one"
                    )));
                }
                let well_formed = subject
                    .split_once('#')
                    .is_some_and(|(iss, sub)| !iss.is_empty() && !sub.is_empty());
                if !well_formed {
                    return Err(err(format!(
                        "{at}: `oidc_subject` = \"{subject}\" must be \"ISSUER#SUBJECT\", \
                         e.g. \"https://login.example.com#00u1abc\""
                    )));
                }
                if !subjects.insert(subject.clone()) {
                    return Err(err(format!(
                        "{at}: `oidc_subject` = \"{subject}\" is linked to another identity"
                    )));
                }
            }
            if let Some(user) = &ident.slack_user_id {
                if ident.kind != IdentityKind::Human {
                    return Err(err(format!(
                        "{at}: `slack_user_id` maps a Slack user who clicks to a person; \
                         only `kind = \"human\"` identities may have one"
                    )));
                }
                let well_formed = (2..=32).contains(&user.len())
                    && user.starts_with(['U', 'W'])
                    && user
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
                if !well_formed {
                    return Err(err(format!(
                        "{at}: `slack_user_id` = \"{user}\" must be a Slack user id like \"U0123ABCD\""
                    )));
                }
                if !slack_users.insert(user.clone()) {
                    return Err(err(format!(
                        "{at}: `slack_user_id` = \"{user}\" is mapped to another identity"
                    )));
                }
            }
            if let Some(oid) = &ident.teams_aad_object_id {
                if ident.kind != IdentityKind::Human {
                    return Err(err(format!(
                        "{at}: `teams_aad_object_id` maps a Teams user who clicks to a person; \
                         only `kind = \"human\"` identities may have one"
                    )));
                }
                if !crate::notify::is_guid(oid) {
                    return Err(err(format!(
                        "{at}: `teams_aad_object_id` = \"{oid}\" must be an Entra ID object id (a GUID)"
                    )));
                }
                if !teams_users.insert(oid.to_ascii_lowercase()) {
                    return Err(err(format!(
                        "{at}: `teams_aad_object_id` = \"{oid}\" is mapped to another identity"
                    )));
                }
            }
            if let Some(g) = ident.groups.iter().find(|g| !valid_name(g)) {
                return Err(err(format!("{at}: group `{g}` must have no spaces")));
            }
            let mut hash = [0u8; 32];
            let hex_ok = ident.api_key_sha256.len() == 64
                && hex::decode_to_slice(ident.api_key_sha256.to_ascii_lowercase(), &mut hash)
                    .is_ok();
            if !hex_ok {
                return Err(err(format!(
                    "{at}: `api_key_sha256` must be 64 hex digits; \
                     run `countersign keys new` to make one"
                )));
            }
            if !keys.insert(hash) {
                return Err(err(format!(
                    "{at}: `api_key_sha256` is already used by another identity"
                )));
            }
            identities.push(ConfiguredIdentity {
                id: ident.id,
                kind: ident.kind,
                groups: ident.groups.into_iter().collect(),
                email: ident.email,
                api_key_sha256: hash,
                oidc_subject: ident.oidc_subject,
                slack_user_id: ident.slack_user_id,
                teams_aad_object_id: ident.teams_aad_object_id.map(|o| o.to_ascii_lowercase()),
            });
        }
        for o in &raw.oidc {
            o.clone().validate().map_err(err)?;
            // A workload rule names an identity of its own: not a configured one, nor a
            // look-alike of one.
            for id in o.rules.iter().filter_map(|r| r.id.as_deref()) {
                let at = format!("[[oidc]] issuer \"{}\": rule id \"{id}\"", o.issuer);
                if let Err(e) = countersign_core::check_id(id) {
                    return Err(err(format!("{at}: {e}")));
                }
                if let Some(other) = ids.get(&countersign_core::id_key(id)) {
                    return Err(err(format!(
                        "{at} is the configured identity `{other}` (ids are compared ignoring \
                         case and look-alike characters); give the workload an id of its own"
                    )));
                }
            }
        }
        if let Some(g) = raw.admin_group.as_deref().filter(|g| !valid_name(g)) {
            return Err(err(format!(
                "`admin_group` = \"{g}\" must be a group name without spaces"
            )));
        }
        let telemetry = Telemetry {
            otlp_endpoint: match raw.telemetry.and_then(|t| t.otlp_endpoint) {
                None => None,
                Some(e) => Some(otlp_traces_url(&e).map_err(err)?),
            },
        };
        let defaults = ServerLimits::default();
        let timeout = |key: &str, value: Option<&str>, default: Duration| match value {
            Some(v) => duration(key, Some(v), ""),
            None => Ok(default),
        };
        let server = ServerLimits {
            header_read_timeout: timeout(
                "header_read_timeout",
                raw.header_read_timeout.as_deref(),
                defaults.header_read_timeout,
            )
            .map_err(err)?,
            request_body_timeout: timeout(
                "request_body_timeout",
                raw.request_body_timeout.as_deref(),
                defaults.request_body_timeout,
            )
            .map_err(err)?,
            idle_timeout: timeout(
                "idle_timeout",
                raw.idle_timeout.as_deref(),
                defaults.idle_timeout,
            )
            .map_err(err)?,
            max_connections: match raw.max_connections {
                Some(0) => return Err(err("`max_connections` must be at least 1".into())),
                Some(n) => n,
                None => defaults.max_connections,
            },
            metrics_token_sha256: match raw.metrics_token_sha256.as_deref() {
                None => None,
                Some(h) => {
                    let mut hash = [0u8; 32];
                    if h.len() != 64
                        || hex::decode_to_slice(h.to_ascii_lowercase(), &mut hash).is_err()
                    {
                        return Err(err("`metrics_token_sha256` must be 64 hex digits; \
                             run `countersign keys new` to make one"
                            .into()));
                    }
                    Some(hash)
                }
            },
            metrics_listen: match raw.metrics_listen.as_deref() {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    err(format!(
                        "`metrics_listen` = \"{a}\" is not an address like \"127.0.0.1:9464\""
                    ))
                })?),
            },
            traces: telemetry.otlp_endpoint.is_some(),
        };
        let max_open_reviews_per_requester = match raw.max_open_reviews_per_requester {
            Some(0) => {
                return Err(err(
                    "`max_open_reviews_per_requester` must be at least 1".into()
                ))
            }
            Some(n) => n,
            None => DEFAULT_MAX_OPEN_REVIEWS_PER_REQUESTER,
        };
        let mut analysis = countersign_analyze::Names::default();
        for (analyzer, params) in &raw.analysis {
            for p in params {
                if p.is_empty() || p.len() > 128 || p.chars().any(char::is_whitespace) {
                    return Err(err(format!(
                        "[analysis] {analyzer}: `{p}` must be a parameter name (no spaces, at most 128 bytes)"
                    )));
                }
                analysis
                    .add(analyzer, p)
                    .map_err(|e| err(format!("[analysis] {e}")))?;
            }
        }
        let masking = raw.masking.unwrap_or_default();
        // Checked here, with a stand-in key, so a mistake names the file at start.
        countersign_mask::Masker::new(&masking, &[0u8; 32])
            .map_err(|e| err(format!("[masking] {e}")))?;
        let mut credentials = Vec::new();
        for raw_credential in raw.credentials {
            let c = credential(
                raw_credential,
                grant_ttl,
                &|var| std::env::var(var).ok(),
                base,
                beside_db(".ssh-ca.key"),
            )
            .map_err(err)?;
            if credentials
                .iter()
                .any(|o: &CredentialConfig| o.name == c.name)
            {
                return Err(err(format!(
                    "[[credentials]] \"{}\": two credentials have this name",
                    c.name
                )));
            }
            credentials.push(c);
        }
        let console_url = match raw.console_url.as_deref() {
            None => format!("http://{listen}"),
            Some(u) => {
                let ok = (u.starts_with("https://") || u.starts_with("http://"))
                    && !u.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !u.contains(['?', '#']);
                if !ok {
                    return Err(err(format!(
                        "`console_url` = \"{u}\" must be the http(s) URL browsers reach this \
                         gateway at, like \"https://gw.example.com\""
                    )));
                }
                u.trim_end_matches('/').to_string()
            }
        };
        let console = ConsoleSettings {
            enabled: raw.console.unwrap_or(true),
            url: console_url,
            session_ttl: duration(
                "console_session_ttl",
                raw.console_session_ttl.as_deref(),
                "8h",
            )
            .map_err(err)?,
        };
        let webhooks =
            crate::notify::webhooks(raw.webhooks, &|var| std::env::var(var).ok()).map_err(err)?;
        let outbox = crate::notify::outbox(raw.outbox).map_err(err)?;
        let slack = raw
            .slack
            .map(|s| crate::notify::slack(s, &|var| std::env::var(var).ok()))
            .transpose()
            .map_err(err)?;
        let teams = raw
            .teams
            .map(|t| crate::notify::teams(t, &|var| std::env::var(var).ok()))
            .transpose()
            .map_err(err)?;
        Ok(Config {
            console,
            slack,
            teams,
            webhooks,
            outbox,
            credentials,
            secrets_key,
            server,
            telemetry,
            analysis,
            masking,
            masking_key,
            max_open_reviews_per_requester,
            admin_group: raw.admin_group,
            oidc: raw.oidc,
            file: path.to_path_buf(),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
            listen,
            database,
            policies,
            review_ttl,
            grant_ttl,
            grants_for_allowed: raw.grants_for_allowed.unwrap_or(false),
            default_effect,
            signing_key,
            audit_origin,
            audit_key,
            identities,
        })
    }
}

#[cfg(test)]
mod credential_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(extra, Path::new("/tmp/countersign.toml"))
    }

    const GOOD: &str = r#"
[[credentials]]
name = "prod-db"
kind = "postgres_role"
admin_url = "postgres://admin:hunter2-secret@db:5432/app"
member_of = ["app_rw"]
env = "DATABASE_URL"
"#;

    #[test]
    fn a_postgres_role_is_configured_and_its_admin_url_never_printed() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.credentials.len(), 1);
        assert_eq!(c.credentials[0].lifetime, c.grant_ttl);
        assert!(!format!("{c:?}").contains("hunter2-secret"));
    }

    #[test]
    fn bad_credentials_are_refused_without_quoting_the_secret() {
        for (toml, needle) in [
            (
                GOOD.replace("env = ", "colour = \"red\"\nenv = "),
                "unknown field",
            ),
            (
                GOOD.replace("kind = \"postgres_role\"", "kind = \"vault\""),
                "unknown",
            ),
            (GOOD.replace("member_of = [\"app_rw\"]\n", ""), "member_of"),
            (GOOD.replace("env = \"DATABASE_URL\"\n", ""), "`env`"),
            (
                GOOD.replace("DATABASE_URL", "1BAD-NAME"),
                "environment variable",
            ),
            (
                GOOD.replace("admin_url =", "admin_url_env = \"X\"\nadmin_url ="),
                "exactly one",
            ),
            (
                GOOD.replace(
                    "postgres://admin:hunter2-secret",
                    "mysql://admin:hunter2-secret",
                ),
                "postgres://",
            ),
            (format!("{GOOD}{GOOD}"), "two credentials"),
            (GOOD.replace("prod-db", "prod db"), "`name`"),
        ] {
            let e = parse(&toml).expect_err(needle).to_string();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("hunter2-secret"), "{e}");
        }
        let e = parse(&GOOD.replace(
            "admin_url = \"postgres://admin:hunter2-secret@db:5432/app\"",
            "admin_url_env = \"COUNTERSIGN_TEST_UNSET_VARIABLE\"",
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("is not set"), "{e}");
    }

    const SSH: &str = r#"
[[credentials]]
name = "box"
kind = "ssh_certificate"
principal = "deploy"
env = "SSH_KEY"
"#;

    #[test]
    fn a_static_credential_takes_only_its_env_and_ttl() {
        let c = parse(
            "[[credentials]]\nname = \"api\"\nkind = \"static\"\nenv = \"API_TOKEN\"\nttl = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(c.credentials[0].kind, KindConfig::Static);
        assert_eq!(c.credentials[0].lifetime, Duration::from_secs(120));
        assert_eq!(c.secrets_key, Path::new("/tmp/countersign.db.secrets.key"));
        let e = parse(
            "[[credentials]]\nname = \"api\"\nkind = \"static\"\nenv = \"T\"\nprincipal = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("takes only") && e.contains("credentials set api"),
            "{e}"
        );
        let c = parse("secrets_key = \"keys/s.key\"\n").unwrap();
        assert_eq!(c.secrets_key, Path::new("/tmp/keys/s.key"));
    }

    #[test]
    fn source_addresses_are_requester_or_cidr_blocks() {
        let with = |list: &str| parse(&format!("{SSH}source_address = {list}\n"));
        let c = with(r#"["requester", "10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]"#).unwrap();
        let KindConfig::SshCertificate { source_address, .. } = &c.credentials[0].kind else {
            panic!("not ssh")
        };
        assert_eq!(
            source_address,
            &vec![
                SourceAddress::Requester,
                SourceAddress::Net("10.0.0.0/8".into()),
                SourceAddress::Net("192.0.2.7/32".into()),
                SourceAddress::Net("2001:db8::/32".into()),
            ]
        );
        let KindConfig::SshCertificate { source_address, .. } =
            &parse(SSH).unwrap().credentials[0].kind
        else {
            panic!("not ssh")
        };
        assert!(source_address.is_empty());
        for (bad, needle) in [
            ("[]", "is empty"),
            (r#"["anywhere"]"#, "not \"requester\""),
            (r#"["10.0.0.0/33"]"#, "CIDR"),
            (r#"["10.0.0.0/+8"]"#, "CIDR"),
            (r#"["10.1.2.3/8"]"#, "host bits"),
            (r#"["10.0.0.1,10.0.0.2"]"#, "CIDR"),
        ] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let e = parse(&GOOD.replace("env =", "source_address = [\"requester\"]\nenv ="))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssh_certificate"), "{e}");
    }
}
