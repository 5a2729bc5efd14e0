//! The `[[oidc]]` configuration: one entry per trusted issuer, with the claims that name the
//! caller, its groups, and the rules that turn workload tokens into agent or service identities.

use countersign_core::IdentityKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A string or a list of strings in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// Absent.
    #[default]
    None,
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A client secret from the configuration; its `Debug` prints no value.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, for the token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(…)")
    }
}

/// One trusted OIDC issuer (`[[oidc]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The `iss` value, exactly; discovery is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values (at least one, counting `client_id`).
    #[serde(default)]
    pub audience: OneOrMany,
    /// The web console's OAuth client id at this issuer (issue #16): when set, people sign in to
    /// the console here (authorization code flow with PKCE), and ID tokens issued to this client
    /// (`aud` = `client_id`) are accepted like the `audience` values.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The console client's secret, for a confidential client (sent to the token endpoint with
    /// HTTP Basic authentication); absent for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: Option<ClientSecret>,
    /// The scopes the console asks for when people sign in (default `openid profile email`;
    /// add the scope that puts groups in the ID token where the IdP has one, e.g. `groups`).
    #[serde(default)]
    pub scopes: OneOrMany,
    /// `acr` values that prove multi-factor authentication at this issuer, for a console
    /// session (besides `amr` containing `mfa`).
    #[serde(default)]
    pub mfa_acr: OneOrMany,
    /// Kind of identities from this issuer when no rule says otherwise (default `human`).
    #[serde(default)]
    pub kind: Option<IdentityKind>,
    /// The claim whose value is the identity id (default `sub`; often `email` or
    /// `preferred_username` for people).
    #[serde(default)]
    pub id_claim: Option<String>,
    /// Claim paths holding group names, e.g. `groups`, `roles`, `realm_access.roles`.
    #[serde(default)]
    pub groups_claim: OneOrMany,
    /// The claim holding the email address (default `email`).
    #[serde(default)]
    pub email_claim: Option<String>,
    /// Group ids (e.g. Entra object ids) to names. When set, unmapped group values are dropped.
    #[serde(default)]
    pub group_names: BTreeMap<String, String>,
    /// Claims copied into the identity for policies (`principal.claims.repository`).
    #[serde(default)]
    pub claims: Vec<String>,
    /// Refuse tokens that match no rule (set it for shared issuers such as GitHub Actions, where
    /// anyone can mint a token).
    #[serde(default)]
    pub require_rule: bool,
    /// Workload rules, first match wins.
    #[serde(default)]
    pub rules: Vec<ClaimRule>,
    /// Discovery document URL, if not the standard one.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Least time between two JWKS fetches for unknown `kid`s (default `30s`).
    #[serde(default)]
    pub jwks_min_refresh: Option<String>,
}

/// Maps tokens whose claims match to an agent or service identity (`[[oidc.rules]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    /// Claim path → required value; a value ending in `*` matches by prefix. All must match.
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// The identity id (default: the issuer's `id_claim` value).
    #[serde(default)]
    pub id: Option<String>,
    /// `agent` or `service` (default `service`).
    #[serde(default)]
    pub kind: Option<IdentityKind>,
    /// Groups given to the identity.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A usable issuer configuration.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub(crate) config: OidcIssuerConfig,
    pub(crate) audience: Vec<String>,
    pub(crate) groups_claims: Vec<String>,
    pub(crate) min_refresh: Duration,
}

/// Whether a name (id or group) is usable: 1-256 characters, no whitespace or control.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl OidcIssuerConfig {
    /// Checks the entry; the error names the key and what to do.
    pub fn validate(self) -> Result<Issuer, String> {
        let at = format!("oidc (issuer \"{}\")", self.issuer);
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(format!("{at}: `issuer` must be an https:// URL"));
        }
        let mut audience = self.audience.to_vec();
        if let Some(client_id) = &self.client_id {
            if client_id.is_empty() || client_id.chars().any(char::is_control) {
                return Err(format!("{at}: `client_id` must be the console's client id"));
            }
            if !audience.contains(client_id) {
                audience.push(client_id.clone());
            }
        } else if self.client_secret.is_some() {
            return Err(format!(
                "{at}: `client_secret` needs the `client_id` it belongs to"
            ));
        }
        if audience.is_empty() || audience.iter().any(|a| a.is_empty()) {
            return Err(format!(
                "{at}: `audience` is required (the client id or API audience tokens carry)"
            ));
        }
        if let Some((_, name)) = self.group_names.iter().find(|(_, n)| !valid_name(n)) {
            return Err(format!("{at}: group name `{name}` must have no spaces"));
        }
        for (n, rule) in self.rules.iter().enumerate() {
            if rule.matches.is_empty() {
                return Err(format!(
                    "{at}: rules[{n}] needs a `match` table, e.g. {{ repository = \"acme/app\" }}"
                ));
            }
            if rule.kind == Some(IdentityKind::Human) {
                return Err(format!(
                    "{at}: rules[{n}]: rules map workloads to `agent` or `service`, never `human`"
                ));
            }
            if let Some(id) = rule.id.as_deref().filter(|id| !valid_name(id)) {
                return Err(format!("{at}: rules[{n}]: id `{id}` must have no spaces"));
            }
            if let Some(g) = rule.groups.iter().find(|g| !valid_name(g)) {
                return Err(format!("{at}: rules[{n}]: group `{g}` must have no spaces"));
            }
        }
        if self.require_rule && self.rules.is_empty() {
            return Err(format!(
                "{at}: `require_rule = true` needs at least one [[oidc.rules]]"
            ));
        }
        let text = self.jwks_min_refresh.as_deref().unwrap_or("30s");
        let min_refresh = humantime::parse_duration(text)
            .map_err(|e| format!("{at}: `jwks_min_refresh` = \"{text}\": {e}"))?;
        Ok(Issuer {
            audience,
            groups_claims: self.groups_claim.to_vec(),
            min_refresh,
            config: self,
        })
    }
}
