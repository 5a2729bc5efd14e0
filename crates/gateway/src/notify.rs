//! Where reviews are announced (issue #15): the `[[webhooks]]` and `[outbox]` configuration,
//! the routes a review gets when its policy names none (`@notify`), the start-up check that
//! every channel a policy names is configured, and what the delivery worker needs from the
//! gateway (the masked view a message is built from). Delivery itself (HTTP, signatures,
//! retries) is the adapter crate `countersign-channels`'; the outbox rows are written by the
//! store's write path in the transaction of each change.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use countersign_core::{Event, Identity, IdentityKind, Route};
use serde::Deserialize;

use crate::credentials::Secret;
use crate::{ActionView, Gateway, GatewayError};

mod teams;
pub use teams::{is_guid, TeamsConfig};
pub(crate) use teams::{teams, RawTeams};

/// One `[[webhooks]]` entry: a Standard Webhooks receiver.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// What `@notify("webhook:NAME")` names.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The signing key: the bytes of the base64 after `whsec_`.
    pub key: Secret,
    /// Only these notification kinds (empty: all), for reviews routed by default.
    pub events: Vec<String>,
}

/// `[outbox]`: how the delivery worker retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Attempts before a notification is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each later one doubles, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    /// The longest delay between attempts (a `Retry-After` may ask for more, up to an hour).
    pub backoff_max: Duration,
    /// How long one delivery request may take.
    pub timeout: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    name: String,
    url: String,
    secret: Option<String>,
    secret_env: Option<String>,
    events: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbox {
    max_attempts: Option<u32>,
    backoff_base: Option<String>,
    backoff_max: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    mode: Option<String>,
    bot_token: Option<String>,
    bot_token_env: Option<String>,
    signing_secret: Option<String>,
    signing_secret_env: Option<String>,
    app_token: Option<String>,
    app_token_env: Option<String>,
    api_base_url: Option<String>,
    default_channel: Option<String>,
}

/// How the Slack app receives clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// Interactivity requests at `POST /v1/channels/slack/interactions` (signing secret).
    Http,
    /// Socket Mode: a WebSocket the gateway opens (`apps.connections.open`, app token), for
    /// gateways with no inbound URL.
    Socket,
}

/// `[slack]`: the Slack app that posts review messages (Web API, bot token) and receives their
/// clicks (HTTP interactivity, signing secret; or Socket Mode, app token).
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// HTTP or Socket Mode.
    pub mode: SlackMode,
    /// The bot token (`xoxb-...`) the Web API is called with.
    pub bot_token: Secret,
    /// The signing secret interactivity requests are verified with (HTTP mode).
    pub signing_secret: Secret,
    /// The app-level token (`xapp-...`) Socket Mode connects with.
    pub app_token: Option<Secret>,
    /// The Web API's base URL, ending in `/` (`https://slack.com/api/`).
    pub api_base_url: String,
    /// Where reviews go when no policy's `@notify` names a channel (`#approvals` or an id).
    pub default_channel: Option<String>,
}

/// Whether `name` is a Slack channel as `@notify("slack:...")` may name it: `#name` (lowercase
/// letters, digits, `-`, `_`, at most 80) or a channel id (`C0123ABCD`).
pub fn slack_channel_name(name: &str) -> bool {
    match name.strip_prefix('#') {
        Some(n) => {
            !n.is_empty()
                && n.len() <= 80
                && n.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                })
        }
        None => {
            (2..=32).contains(&name.len())
                && name.starts_with(['C', 'G', 'D'])
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }
    }
}

/// Validates `[slack]`; `lookup` reads the `*_env` keys. No message quotes a secret.
pub(crate) fn slack(
    raw: RawSlack,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<SlackConfig, String> {
    let mode = match raw.mode.as_deref().unwrap_or("http") {
        "http" => SlackMode::Http,
        "socket" => SlackMode::Socket,
        other => {
            return Err(format!(
                "[slack] `mode` = \"{other}\": expected \"http\" or \"socket\""
            ))
        }
    };
    let secret = |key: &str, value: Option<String>, env: Option<String>| match (value, env) {
        (Some(v), None) if !v.is_empty() => Ok(Some(v)),
        (None, Some(var)) => lookup(&var)
            .filter(|v| !v.is_empty())
            .map(Some)
            .ok_or_else(|| {
                format!("[slack] `{key}_env` = \"{var}\" is not set in the environment")
            }),
        (None, None) => Ok(None),
        _ => Err(format!(
            "[slack] give exactly one of `{key}` and `{key}_env`"
        )),
    };
    let bot_token = secret("bot_token", raw.bot_token, raw.bot_token_env)?
        .ok_or("[slack] give exactly one of `bot_token` and `bot_token_env`")?;
    if !bot_token.starts_with("xoxb-") {
        return Err("[slack] the bot token must be a bot token (it starts with \"xoxb-\")".into());
    }
    let signing_secret = secret("signing_secret", raw.signing_secret, raw.signing_secret_env)?;
    let app_token = secret("app_token", raw.app_token, raw.app_token_env)?;
    let signing_secret = match (mode, signing_secret, &app_token) {
        (SlackMode::Http, Some(s), None) => s,
        (SlackMode::Http, None, _) => {
            return Err(
                "[slack] give exactly one of `signing_secret` and `signing_secret_env` (HTTP mode verifies every click with it)".into(),
            )
        }
        (SlackMode::Http, Some(_), Some(_)) => {
            return Err(
                "[slack] `app_token` is for Socket Mode (`mode = \"socket\"`); HTTP mode does not use it".into(),
            )
        }
        (SlackMode::Socket, s, Some(t)) => {
            if !t.starts_with("xapp-") {
                return Err(
                    "[slack] the app token must be an app-level token (it starts with \"xapp-\")".into(),
                );
            }
            s.unwrap_or_default()
        }
        (SlackMode::Socket, _, None) => {
            return Err(
                "[slack] Socket Mode needs an app-level token with connections:write: give exactly one of `app_token` and `app_token_env`".into(),
            )
        }
    };
    let mut api_base_url = raw
        .api_base_url
        .unwrap_or_else(|| "https://slack.com/api/".into());
    let url = url::Url::parse(&api_base_url)
        .map_err(|e| format!("[slack] `api_base_url` = \"{api_base_url}\" is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("[slack] `api_base_url` must be an http:// or https:// URL".into());
    }
    if !api_base_url.ends_with('/') {
        api_base_url.push('/');
    }
    if let Some(c) = &raw.default_channel {
        if !slack_channel_name(c) {
            return Err(format!(
                "[slack] `default_channel` = \"{c}\" must be \"#name\" (lowercase) or a channel id like \"C0123ABCD\""
            ));
        }
    }
    Ok(SlackConfig {
        mode,
        bot_token: Secret::new(bot_token),
        signing_secret: Secret::new(signing_secret),
        app_token: app_token.map(Secret::new),
        api_base_url,
        default_channel: raw.default_channel,
    })
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Validates the `[[webhooks]]` entries; `lookup` reads `secret_env`. No message quotes a secret.
pub(crate) fn webhooks(
    raw: Vec<RawWebhook>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WebhookConfig>, String> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for w in raw {
        let at = format!("[[webhooks]] \"{}\"", w.name);
        if !plain_name(&w.name) {
            return Err(format!(
                "{at}: `name` must be 1-64 of letters, digits, `-`, `_` and `.` (it is what @notify(\"webhook:NAME\") names)"
            ));
        }
        if out.iter().any(|o| o.name == w.name) {
            return Err(format!("{at}: two webhooks have this name"));
        }
        let url = url::Url::parse(&w.url)
            .map_err(|e| format!("{at}: `url` = \"{}\" is not a URL ({e})", w.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("{at}: `url` must be an http:// or https:// URL"));
        }
        let secret = match (w.secret, w.secret_env) {
            (Some(s), None) => s,
            (None, Some(var)) => lookup(&var).ok_or_else(|| {
                format!("{at}: `secret_env` = \"{var}\" is not set in the environment")
            })?,
            _ => {
                return Err(format!(
                    "{at}: give exactly one of `secret` and `secret_env` (a Standard Webhooks secret, \"whsec_\" and base64)"
                ))
            }
        };
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|k| (24..=64).contains(&k.len()))
            .ok_or_else(|| {
                format!(
                    "{at}: the secret must be \"whsec_\" followed by the base64 of 24 to 64 random bytes"
                )
            })?;
        let events = w.events.unwrap_or_default();
        if let Some(e) = events
            .iter()
            .find(|e| !Event::NOTIFICATIONS.contains(&e.as_str()))
        {
            return Err(format!(
                "{at}: `events` names `{e}`; known: {}",
                Event::NOTIFICATIONS.join(", ")
            ));
        }
        out.push(WebhookConfig {
            name: w.name,
            url: w.url,
            // Kept as base64 text inside `Secret` so it never prints.
            key: Secret::new(base64::engine::general_purpose::STANDARD.encode(key)),
            events,
        });
    }
    Ok(out)
}

/// Validates `[outbox]`.
pub(crate) fn outbox(raw: Option<RawOutbox>) -> Result<OutboxConfig, String> {
    let d = OutboxConfig::default();
    let Some(raw) = raw else { return Ok(d) };
    let dur = |key: &str, v: Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(t) => humantime::parse_duration(&t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("[outbox] `{key}` = \"{t}\" is not a duration like \"1s\"")),
    };
    let c = OutboxConfig {
        max_attempts: match raw.max_attempts {
            Some(0) => return Err("[outbox] `max_attempts` must be at least 1".into()),
            Some(n) => n,
            None => d.max_attempts,
        },
        backoff_base: dur("backoff_base", raw.backoff_base, d.backoff_base)?,
        backoff_max: dur("backoff_max", raw.backoff_max, d.backoff_max)?,
        timeout: dur("timeout", raw.timeout, d.timeout)?,
    };
    if c.backoff_max < c.backoff_base {
        return Err("[outbox] `backoff_max` must be at least `backoff_base`".into());
    }
    Ok(c)
}

/// The routes of a review whose policies name none: `[slack] default_channel` and
/// `[teams] default_channel` if set, and every webhook (with its `events` list).
pub fn default_routes(
    webhooks: &[WebhookConfig],
    slack: Option<&SlackConfig>,
    teams: Option<&TeamsConfig>,
) -> Vec<Route> {
    let chat = |channel: String| Route {
        channel,
        events: Vec::new(),
    };
    slack
        .and_then(|s| s.default_channel.as_ref())
        .map(|c| chat(format!("slack:{c}")))
        .into_iter()
        .chain(
            teams
                .and_then(|t| t.default_channel.as_ref())
                .map(|c| chat(format!("teams:{c}"))),
        )
        .chain(webhooks.iter().map(|w| Route {
            channel: format!("webhook:{}", w.name),
            events: w.events.clone(),
        }))
        .collect()
}

/// The start-up (and `policy validate`) check that every channel a policy's `@notify` names
/// is configured: `named` is `(channel, first policy naming it)`.
pub fn check_policy_channels(
    named: &[(String, String)],
    webhooks: &[WebhookConfig],
    slack: Option<&SlackConfig>,
    teams: Option<&TeamsConfig>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (channel, policy) in named {
        match channel.split_once(':') {
            Some(("slack", name)) if !slack_channel_name(name) => problems.push(format!(
                "`{channel}` (policy `{policy}`): a Slack channel is \"slack:#name\" (lowercase) or \"slack:C0123ABCD\""
            )),
            Some(("slack", _)) if slack.is_some() => {}
            Some(("slack", _)) => problems.push(format!(
                "`{channel}` (policy `{policy}`) needs the Slack app configured; add a [slack] section"
            )),
            Some(("webhook", name)) if webhooks.iter().any(|w| w.name == name) => {}
            Some(("webhook", _)) => problems.push(format!(
                "`{channel}` (policy `{policy}`) is not configured; add a [[webhooks]] entry with that name"
            )),
            Some(("teams", name)) => match teams {
                Some(t) if t.conversation(name).is_some() => {}
                Some(_) => problems.push(format!(
                    "`{channel}` (policy `{policy}`) is not configured; add `{name} = \"CONVERSATION_ID\"` under [teams.conversations]"
                )),
                None => problems.push(format!(
                    "`{channel}` (policy `{policy}`) needs the Teams bot configured; add a [teams] section"
                )),
            },
            _ => problems.push(format!(
                "`{channel}` (policy `{policy}`): a channel is slack:#CHANNEL, teams:NAME or webhook:NAME"
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "@notify names unknown channels: {}",
            problems.join("; ")
        ))
    }
}

/// Who a notification is written for: a service that reviews nothing and requested nothing, so
/// its view of an action is the masked view any reviewer gets, with no grant token.
fn channel_reader() -> Identity {
    Identity::new("countersign:channels", IdentityKind::Service, [""; 0])
}

impl Gateway {
    /// An action as a channel shows it: the masked view ([`Gateway::view`]) a message or an
    /// event is built from. `None` if the action does not exist.
    pub async fn notification_view(
        self: &Arc<Self>,
        action_id: &str,
    ) -> Result<Option<ActionView>, GatewayError> {
        let record = self.store.get(action_id).await?;
        Ok(record.map(|r| self.view(&channel_reader(), r)))
    }
}

impl Gateway {
    /// Returns when this process next commits a change that queued notifications (at once if
    /// one did since the last call): what wakes the delivery worker without a poll. Other
    /// processes' commits reach it through the store's change feed.
    pub async fn notifications_queued(&self) {
        self.outbox.notified().await
    }

    /// The gateway's clock's time (what the delivery worker dates attempts and backoffs by).
    pub fn time(&self) -> countersign_core::Timestamp {
        self.now()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::config::Config;
    use std::path::Path;

    const HOOK: &str = r#"
[[webhooks]]
name = "pagerduty"
url = "https://events.example.com/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
events = ["decided", "expired"]
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/tmp/countersign.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn webhooks_and_the_outbox_are_configured_and_secrets_never_printed() {
        let c = parse(&format!(
            "{HOOK}\n[outbox]\nmax_attempts = 3\nbackoff_base = \"50ms\"\n"
        ))
        .unwrap();
        assert_eq!(c.webhooks.len(), 1);
        assert_eq!(c.webhooks[0].events, ["decided", "expired"]);
        assert_eq!(c.outbox.max_attempts, 3);
        assert_eq!(c.outbox.backoff_base, std::time::Duration::from_millis(50));
        assert!(!format!("{c:?}").contains("MfKQ9r8GKYqr"));
        let routes = super::default_routes(&c.webhooks, None, None);
        assert_eq!(routes[0].channel, "webhook:pagerduty");
        assert!(routes[0].wants("decided") && !routes[0].wants("voted"));
        assert_eq!(parse("").unwrap().outbox, super::OutboxConfig::default());
    }

    #[test]
    fn bad_webhooks_are_refused_without_quoting_the_secret() {
        for (toml, needle) in [
            (HOOK.replace("whsec_MfKQ9r8GKYqr", "MfKQ9r8GKYqr"), "whsec_"),
            (HOOK.replace("LaSw\"", "La!!\""), "whsec_"),
            (HOOK.replace("https://events", "ftp://events"), "http://"),
            (
                HOOK.replace("\"decided\"", "\"approved\""),
                "`events` names `approved`",
            ),
            (HOOK.replace("pagerduty", "pager duty"), "`name`"),
            (format!("{HOOK}{HOOK}"), "two webhooks"),
            (
                HOOK.replace("secret =", "secret_env = \"X\"\nsecret ="),
                "exactly one",
            ),
            (
                HOOK.replace("events =", "colour = \"red\"\nevents ="),
                "unknown field",
            ),
            ("[outbox]\nmax_attempts = 0\n".to_string(), "max_attempts"),
            (
                "[outbox]\nbackoff_base = \"1m\"\nbackoff_max = \"1s\"\n".to_string(),
                "backoff_max",
            ),
        ] {
            let e = parse(&toml).expect_err(needle);
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains("MfKQ9r8GKYqr"), "{e}");
        }
    }

    #[test]
    fn every_channel_a_policy_names_must_be_configured() {
        let c = parse(HOOK).unwrap();
        let named = |c: &str| vec![(c.to_string(), "p1".to_string())];
        let check = |c: &Config, n: &str| {
            super::check_policy_channels(&named(n), &c.webhooks, c.slack.as_ref(), c.teams.as_ref())
        };
        assert!(check(&c, "webhook:pagerduty").is_ok());
        let e = check(&c, "webhook:opsgenie").unwrap_err();
        assert!(e.contains("`webhook:opsgenie` (policy `p1`)"), "{e}");
        let e = check(&c, "slack:#ops").unwrap_err();
        assert!(e.contains("add a [slack] section"), "{e}");
        let e = check(&c, "teams:sre").unwrap_err();
        assert!(e.contains("add a [teams] section"), "{e}");
        let e = check(&c, "msteams:sre").unwrap_err();
        assert!(e.contains("a channel is"), "{e}");
        let s = parse(&format!("{HOOK}{SLACK}")).unwrap();
        assert!(check(&s, "slack:#ops").is_ok());
        assert!(check(&s, "slack:C0123ABCD").is_ok());
        let e = check(&s, "slack:#Ops Room").unwrap_err();
        assert!(e.contains("a Slack channel is"), "{e}");
    }

    const TEAMS: &str = r#"
[teams]
app_id = "6f1c2b6e-0d1a-4c59-9d7e-2b1f3c4d5e6f"
app_password = "Zq8~TeStSeCrEt.aBcDeF"
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
default_channel = "sre-approvals"

[teams.conversations]
sre-approvals = "19:4a1b2c3d5e6f@thread.tacv2"
"#;

    #[test]
    fn teams_is_configured_routed_and_its_secret_never_printed() {
        let c = parse(TEAMS).unwrap();
        let t = c.teams.as_ref().unwrap();
        assert_eq!(
            t.token_url,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
        assert_eq!(
            t.openid_metadata_url,
            "https://login.botframework.com/v1/.well-known/openidconfiguration"
        );
        assert_eq!(t.service_url, "https://smba.trafficmanager.net/teams/");
        assert_eq!(
            t.conversation("sre-approvals"),
            Some("19:4a1b2c3d5e6f@thread.tacv2")
        );
        assert!(!format!("{c:?}").contains("TeStSeCrEt"));
        let routes = super::default_routes(&c.webhooks, None, c.teams.as_ref());
        assert_eq!(routes[0].channel, "teams:sre-approvals");
        let check = |n: &str| {
            super::check_policy_channels(
                &[(n.to_string(), "p1".to_string())],
                &c.webhooks,
                None,
                c.teams.as_ref(),
            )
        };
        assert!(check("teams:sre-approvals").is_ok());
        let e = check("teams:ops").unwrap_err();
        assert!(e.contains("under [teams.conversations]"), "{e}");
        // An identity's Teams user: a GUID, a person's, one identity's.
        let oid = "00000000-0000-0000-0000-0000000A11CE";
        let ident = |id: &str, kind: &str, key: &str| {
            format!("[[identities]]\nid = \"{id}\"\nkind = \"{kind}\"\napi_key_sha256 = \"{}\"\nteams_aad_object_id = \"{oid}\"\n", key.repeat(32))
        };
        let c = parse(&format!("{TEAMS}\n{}", ident("alice", "human", "ab"))).unwrap();
        assert_eq!(
            c.identities[0].teams_aad_object_id.as_deref(),
            Some("00000000-0000-0000-0000-0000000a11ce")
        );
        for (toml, needle) in [
            (
                format!("{TEAMS}\n{}", ident("bot", "agent", "ab")),
                "only `kind = \"human\"`",
            ),
            (
                format!(
                    "{TEAMS}\n{}",
                    ident("al", "human", "ab").replace(oid, "alice")
                ),
                "a GUID",
            ),
            (
                format!(
                    "{TEAMS}\n{}{}",
                    ident("al", "human", "ab"),
                    ident("bo", "human", "cd")
                ),
                "mapped to another identity",
            ),
        ] {
            let e = parse(&toml).expect_err(needle);
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn bad_teams_configs_are_refused_without_quoting_the_secret() {
        for (toml, needle) in [
            (
                TEAMS.replace("app_id = \"6f1c2b6e-0d1a-4c59-9d7e-2b1f3c4d5e6f\"\n", ""),
                "`app_id`",
            ),
            (
                TEAMS.replace(
                    "tenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"",
                    "tenant_id = \"a/b\"",
                ),
                "`tenant_id`",
            ),
            (
                TEAMS.replace("app_password =", "app_password_env = \"X\"\napp_password ="),
                "exactly one of `app_password`",
            ),
            (
                TEAMS.replace(
                    "app_password = \"Zq8~TeStSeCrEt.aBcDeF\"",
                    "app_password_env = \"COUNTERSIGN_UNSET_TEAMS_VAR\"",
                ),
                "is not set in the environment",
            ),
            (
                TEAMS.replace(
                    "default_channel = \"sre-approvals\"",
                    "default_channel = \"ops\"",
                ),
                "default_channel",
            ),
            (
                TEAMS.replace("sre-approvals = \"19:", "\"sre approvals\" = \"19:"),
                "a name is",
            ),
            (
                TEAMS.replace("19:4a1b2c3d5e6f@thread.tacv2", "19:a/../b"),
                "conversation id",
            ),
            (
                TEAMS.replace(
                    "default_channel =",
                    "service_url = \"ftp://x\"\ndefault_channel =",
                ),
                "service_url",
            ),
            (
                TEAMS.replace("default_channel =", "colour = \"red\"\ndefault_channel ="),
                "unknown field",
            ),
        ] {
            let e = parse(&toml).expect_err(needle);
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains("TeStSeCrEt"), "{e}");
        }
    }

    const SLACK: &str = r##"
[slack]
mode = "http"
bot_token = "xoxb-1111-2222-SeCrEtToKeN"
signing_secret = "8f742231b10e8888abcd99yyyzzz85a5"
api_base_url = "http://127.0.0.1:9/api"
default_channel = "#approvals"
"##;

    #[test]
    fn slack_is_configured_and_its_secrets_never_printed() {
        let c = parse(SLACK).unwrap();
        let s = c.slack.as_ref().unwrap();
        assert_eq!(s.api_base_url, "http://127.0.0.1:9/api/");
        assert_eq!(s.bot_token.expose(), "xoxb-1111-2222-SeCrEtToKeN");
        let printed = format!("{c:?}");
        assert!(!printed.contains("SeCrEtToKeN") && !printed.contains("abcd99yyy"));
        let routes = super::default_routes(&c.webhooks, c.slack.as_ref(), None);
        assert_eq!(routes[0].channel, "slack:#approvals");
        // The default is Slack's own API.
        let d = parse(&SLACK.replace("api_base_url = \"http://127.0.0.1:9/api\"\n", "")).unwrap();
        assert_eq!(d.slack.unwrap().api_base_url, "https://slack.com/api/");
        // Socket Mode: an app token, no signing secret needed.
        let sock = parse(&SLACK.replace(
            "mode = \"http\"",
            "mode = \"socket\"\napp_token = \"xapp-1-A0-SeCrEtToKeN\"",
        ))
        .unwrap();
        let s = sock.slack.unwrap();
        assert_eq!(s.mode, super::SlackMode::Socket);
        assert_eq!(s.app_token.unwrap().expose(), "xapp-1-A0-SeCrEtToKeN");
    }

    #[test]
    fn bad_slack_configs_are_refused_without_quoting_secrets() {
        for (toml, needle) in [
            (SLACK.replace("\"http\"", "\"socket\""), "needs an app-level token"),
            (
                SLACK.replace("mode = \"http\"", "mode = \"socket\"\napp_token = \"xoxb-nope\""),
                "app-level token",
            ),
            (SLACK.replace("\"http\"", "\"smoke\""), "expected \"http\""),
            (SLACK.replace("xoxb-", "xoxp-"), "bot token"),
            (
                SLACK.replace("signing_secret =", "signing_secret_env = \"X\"\nsigning_secret ="),
                "exactly one of `signing_secret`",
            ),
            (
                SLACK.replace("mode =", "colour = \"red\"\nmode ="),
                "unknown field",
            ),
            (
                SLACK.replace("mode = \"http\"\n", "app_token = \"xapp-1\"\n"),
                "is for Socket Mode",
            ),
            (
                SLACK.replace("signing_secret =", "signing_secret_env = \"COUNTERSIGN_UNSET_SLACK_VAR\"\n#"),
                "is not set in the environment",
            ),
            (SLACK.replace("#approvals", "#Approvals Room"), "default_channel"),
            (SLACK.replace("http://127.0.0.1:9/api", "ftp://x"), "api_base_url"),
            (
                format!("{SLACK}\n[[identities]]\nid = \"bot\"\nkind = \"agent\"\napi_key_sha256 = \"{}\"\nslack_user_id = \"U0123ABCD\"\n", "ab".repeat(32)),
                "only `kind = \"human\"`",
            ),
            (
                format!("{SLACK}\n[[identities]]\nid = \"al\"\nkind = \"human\"\napi_key_sha256 = \"{}\"\nslack_user_id = \"alice\"\n", "ab".repeat(32)),
                "Slack user id",
            ),
        ] {
            let e = parse(&toml).expect_err(needle);
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(!e.contains("SeCrEtToKeN") && !e.contains("abcd99yyy"), "{e}");
        }
    }
}
