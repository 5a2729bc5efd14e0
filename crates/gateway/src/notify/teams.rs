//! `[teams]`: the Microsoft Teams bot reviews are posted by (Bot Connector REST API, with a
//! client-credentials token from Entra ID) and whose Adaptive Card actions arrive at
//! `POST /v1/channels/teams/messages` (Bot Framework JWTs). `teams:NAME` routes name a
//! conversation configured under `[teams.conversations]` (DECISIONS.md, "#15 Teams
//! conversations by name").

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::credentials::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeams {
    app_id: Option<String>,
    app_password: Option<String>,
    app_password_env: Option<String>,
    tenant_id: Option<String>,
    token_url: Option<String>,
    openid_metadata_url: Option<String>,
    service_url: Option<String>,
    #[serde(default)]
    conversations: BTreeMap<String, String>,
    default_channel: Option<String>,
}

/// `[teams]`, validated.
#[derive(Debug, Clone)]
pub struct TeamsConfig {
    /// The bot's Microsoft App ID: the audience of the tokens the Bot Connector sends, and the
    /// client id of the client-credentials grant.
    pub app_id: String,
    /// The app's client secret (never printed).
    pub app_password: Secret,
    /// The Entra ID tenant the bot is registered in (single tenant).
    pub tenant_id: String,
    /// Where the client-credentials token comes from (Entra ID's v2.0 token endpoint of the
    /// tenant, unless overridden).
    pub token_url: String,
    /// The Bot Connector's OpenID metadata (its JWKS and signing algorithms).
    pub openid_metadata_url: String,
    /// The Bot Connector base URL cards are posted to, ending in `/`.
    pub service_url: String,
    /// `teams:NAME` → the conversation id cards are posted to (a channel's
    /// `19:...@thread.tacv2`, a group chat's or a personal chat's id).
    pub conversations: BTreeMap<String, String>,
    /// The conversation name reviews go to when no policy's `@notify` names a channel.
    pub default_channel: Option<String>,
}

impl TeamsConfig {
    /// The conversation id `teams:NAME` posts to.
    pub fn conversation(&self, name: &str) -> Option<&str> {
        self.conversations.get(name).map(String::as_str)
    }
}

/// Whether `id` looks like an Entra ID object id (a GUID), as `teams_aad_object_id` must.
pub fn is_guid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn url_of(key: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value)
        .map_err(|e| format!("[teams] `{key}` = \"{value}\" is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "[teams] `{key}` must be an http:// or https:// URL"
        ));
    }
    Ok(())
}

/// Validates `[teams]`; `lookup` reads `app_password_env`. No message quotes the secret.
pub(crate) fn teams(
    raw: RawTeams,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<TeamsConfig, String> {
    let app_id = raw
        .app_id
        .filter(|a| !a.trim().is_empty())
        .ok_or("[teams] `app_id` (the bot's Microsoft App ID) is required")?;
    if app_id.len() > 128 || app_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("[teams] `app_id` must be the bot's Microsoft App ID (a GUID)".into());
    }
    let app_password = match (raw.app_password, raw.app_password_env) {
        (Some(p), None) if !p.is_empty() => p,
        (None, Some(var)) => lookup(&var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("[teams] `app_password_env` = \"{var}\" is not set in the environment"))?,
        _ => {
            return Err(
                "[teams] give exactly one of `app_password` and `app_password_env` (the app's client secret)".into(),
            )
        }
    };
    let tenant_id = raw
        .tenant_id
        .filter(|t| !t.is_empty())
        .ok_or("[teams] `tenant_id` (the Entra ID tenant the bot is registered in) is required")?;
    if tenant_id.len() > 128
        || !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    {
        return Err("[teams] `tenant_id` must be a tenant id (a GUID) or a verified domain".into());
    }
    let token_url = raw.token_url.unwrap_or_else(|| {
        format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
    });
    url_of("token_url", &token_url)?;
    let openid_metadata_url = raw
        .openid_metadata_url
        .unwrap_or_else(|| countersign_identity::botframework::METADATA_URL.to_string());
    url_of("openid_metadata_url", &openid_metadata_url)?;
    let mut service_url = raw
        .service_url
        .unwrap_or_else(|| "https://smba.trafficmanager.net/teams/".to_string());
    url_of("service_url", &service_url)?;
    if !service_url.ends_with('/') {
        service_url.push('/');
    }
    for (name, id) in &raw.conversations {
        if !super::plain_name(name) {
            return Err(format!(
                "[teams.conversations] `{name}`: a name is 1-64 of letters, digits, `-`, `_` and `.` (it is what @notify(\"teams:NAME\") names)"
            ));
        }
        if id.is_empty()
            || id.len() > 512
            || id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '?' || c == '#')
        {
            return Err(format!(
                "[teams.conversations] `{name}` must be a conversation id like \"19:abc...@thread.tacv2\""
            ));
        }
    }
    if let Some(d) = &raw.default_channel {
        if !raw.conversations.contains_key(d) {
            return Err(format!(
                "[teams] `default_channel` = \"{d}\" is not a name under [teams.conversations]"
            ));
        }
    }
    Ok(TeamsConfig {
        app_id,
        app_password: Secret::new(app_password),
        tenant_id,
        token_url,
        openid_metadata_url,
        service_url,
        conversations: raw.conversations,
        default_channel: raw.default_channel,
    })
}
