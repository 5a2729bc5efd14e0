//! Sign-in with OpenID Connect: the authorization code flow with PKCE (S256), as a relying
//! party of each `[[oidc]]` issuer that has a `client_id`.
//!
//! `GET /console/login` makes a fresh `state`, `nonce` and PKCE verifier, keeps them in a
//! short-lived HttpOnly cookie bound to this browser (so any replica can finish the sign-in)
//! and redirects to the provider. `GET /console/callback` checks `state` (and `iss` when the
//! provider sends it, RFC 9207), exchanges the code with the verifier (and the client secret
//! for a confidential client), and verifies the ID token through the gateway's own OIDC
//! machinery ([`Gateway::authenticate`](countersign_gateway::Gateway::authenticate): signature,
//! issuer, audience, times, claim mapping and the identity registry), then its `nonce` and
//! audience against this sign-in. Only people get a session: a token that maps to an agent or
//! a service is refused and audited. `amr` containing `mfa` (or an `acr` the issuer lists in
//! `mfa_acr`) marks the session as multi-factor.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_core::IdentityKind;
use countersign_identity::config::ClientSecret;
use countersign_identity::OidcIssuerConfig;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use crate::session::{self, Auth};
use crate::{ConsoleError, State as Console};

/// How long a sign-in may take at the provider.
const LOGIN_TTL_SECS: u64 = 600;
/// Largest provider answer read (discovery, token).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One provider people may sign in with.
pub(crate) struct Provider {
    pub issuer: String,
    client_id: String,
    client_secret: Option<ClientSecret>,
    discovery_url: String,
    scopes: String,
    mfa_acr: Vec<String>,
    redirect_uri: String,
    endpoints: OnceCell<Endpoints>,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// What the login cookie holds while the browser is at the provider.
#[derive(Serialize, Deserialize)]
struct Pending {
    /// Index of the provider.
    p: usize,
    state: String,
    nonce: String,
    verifier: String,
    /// Where to go after signing in (a console path).
    to: String,
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Provider {
    /// The providers of the `[[oidc]]` entries that have a `client_id`.
    pub(crate) fn all(
        configs: &[OidcIssuerConfig],
        console_url: &str,
    ) -> Result<Vec<Provider>, ConsoleError> {
        if configs.iter().all(|c| c.client_id.is_none()) {
            return Ok(Vec::new());
        }
        // reqwest is built without a crypto provider of its own: ring, as everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConsoleError::Config(format!("cannot build the HTTP client: {e}")))?;
        let providers: Vec<Provider> = configs
            .iter()
            .filter_map(|c| {
                let client_id = c.client_id.clone()?;
                let scopes = match c.scopes.to_vec() {
                    v if v.is_empty() => "openid profile email".to_string(),
                    v if v.iter().any(|s| s == "openid") => v.join(" "),
                    v => format!("openid {}", v.join(" ")),
                };
                Some(Provider {
                    discovery_url: c.discovery_url.clone().unwrap_or_else(|| {
                        format!(
                            "{}/.well-known/openid-configuration",
                            c.issuer.trim_end_matches('/')
                        )
                    }),
                    issuer: c.issuer.clone(),
                    client_id,
                    client_secret: c.client_secret.clone(),
                    scopes,
                    mfa_acr: c.mfa_acr.to_vec(),
                    redirect_uri: format!("{console_url}/console/callback"),
                    endpoints: OnceCell::new(),
                    http: http.clone(),
                })
            })
            .collect();
        Ok(providers)
    }

    /// `scheme://host[:port]` of the issuer.
    pub(crate) fn origin(&self) -> String {
        session::console_origin(&self.issuer)
    }

    async fn endpoints(&self) -> Result<&Endpoints, ConsoleError> {
        self.endpoints
            .get_or_try_init(|| async {
                let doc: Endpoints = self.get_json(&self.discovery_url).await?;
                if doc.issuer != self.issuer {
                    return Err(ConsoleError::Unavailable(format!(
                        "the provider's discovery document names issuer \"{}\", not \"{}\"",
                        doc.issuer, self.issuer
                    )));
                }
                if doc
                    .code_challenge_methods_supported
                    .as_ref()
                    .is_some_and(|m| !m.iter().any(|m| m == "S256"))
                {
                    return Err(ConsoleError::Unavailable(
                        "the provider does not support PKCE with S256".into(),
                    ));
                }
                Ok(doc)
            })
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ConsoleError> {
        let resp = self.http.get(url).send().await.map_err(|e| {
            ConsoleError::Unavailable(format!("the identity provider is unreachable: {e}"))
        })?;
        read_json(resp).await
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, ConsoleError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ConsoleError::Unavailable(format!("the identity provider's answer: {e}")))?;
    if bytes.len() > MAX_DOCUMENT {
        return Err(ConsoleError::Unavailable(
            "the identity provider's answer is too large".into(),
        ));
    }
    if !status.is_success() {
        let detail: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let error = detail.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(ConsoleError::SignIn(format!(
            "the identity provider refused ({status} {error})"
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ConsoleError::Unavailable(format!("the identity provider's answer is not JSON: {e}"))
    })
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    provider: Option<usize>,
    #[serde(default)]
    to: Option<String>,
}

/// A console path to return to after signing in, else the queue.
pub(crate) fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p)
            if (p == "/console" || p.starts_with("/console/"))
                && !p.contains("//")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            p.to_string()
        }
        _ => "/console".to_string(),
    }
}

/// `GET /console/login`: to the provider (the only one, or the one chosen), or a page to
/// choose one.
pub(crate) async fn login(
    State(console): State<Console>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ConsoleError> {
    let index = match (q.provider, console.providers.len()) {
        (Some(i), n) if i < n => i,
        (None, 1) => 0,
        (Some(_), _) => return Err(ConsoleError::BadRequest("no such provider".into())),
        (None, _) => {
            let names: Vec<&str> = console
                .providers
                .iter()
                .map(|p| p.issuer.as_str())
                .collect();
            let to = safe_return(q.to.as_deref());
            let html = console.templates.render(
                "choose.html",
                minijinja::context! { title => "Sign in", providers => names, to => to },
            )?;
            return Ok(axum::response::Html(html).into_response());
        }
    };
    let provider = &console.providers[index];
    let endpoints = provider.endpoints().await?;
    let pending = Pending {
        p: index,
        state: random(),
        nonce: random(),
        verifier: random(),
        to: safe_return(q.to.as_deref()),
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    let mut url = url::Url::parse(&endpoints.authorization_endpoint).map_err(|e| {
        ConsoleError::Unavailable(format!("the provider's authorization endpoint: {e}"))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &provider.redirect_uri)
        .append_pair("scope", &provider.scopes)
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let value = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&pending)
            .map_err(|e| ConsoleError::BadRequest(format!("sign-in state: {e}")))?,
    );
    let cookie = session::set_cookie(
        &console,
        session::login_cookie_name(&console),
        &value,
        LOGIN_TTL_SECS,
    )?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, url.as_str().to_string())],
        [(header::SET_COOKIE, cookie)],
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// `GET /console/callback`: finishes the sign-in the login cookie describes.
pub(crate) async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, ConsoleError> {
    let refused = |why: &str| ConsoleError::SignIn(format!("{why}; sign in again"));
    let pending: Pending = session::cookie(&headers, session::login_cookie_name(&console))
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused("this sign-in was not started here, or took too long"))?;
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| s.as_bytes().ct_eq(pending.state.as_bytes()).into());
    if !state_ok {
        return Err(refused(
            "the provider's answer is not for this sign-in (state)",
        ));
    }
    if let Some(error) = &q.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(ConsoleError::SignIn(format!(
            "the identity provider did not sign you in ({error})"
        )));
    }
    let provider = console
        .providers
        .get(pending.p)
        .ok_or_else(|| refused("unknown provider"))?;
    if q.iss.as_deref().is_some_and(|iss| iss != provider.issuer) {
        return Err(refused("the answer comes from another issuer"));
    }
    let code = q.code.as_deref().ok_or_else(|| refused("no code"))?;
    let endpoints = provider.endpoints().await?;
    let mut req = provider
        .http
        .post(&endpoints.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &provider.redirect_uri)
            .append_pair("code_verifier", &pending.verifier);
        match &provider.client_secret {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic.
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&provider.client_id), Some(enc(secret.expose())));
            }
            None => {
                form.append_pair("client_id", &provider.client_id);
            }
        }
        form.finish()
    };
    let resp = req.body(body).send().await.map_err(|e| {
        ConsoleError::Unavailable(format!("the identity provider is unreachable: {e}"))
    })?;
    let answer: TokenAnswer = read_json(resp).await?;
    let identity = console
        .gateway
        .authenticate(&answer.id_token)
        .await
        .map_err(|e| refused(&format!("the ID token was refused ({})", e.code())))?;
    // Verified above; read again only for what is particular to this sign-in.
    let claims = payload(&answer.id_token).ok_or_else(|| refused("unreadable ID token"))?;
    let claim = |name: &str| claims.get(name).and_then(Value::as_str);
    if claim("iss") != Some(provider.issuer.as_str())
        || identity.issuer.as_deref() != Some(provider.issuer.as_str())
    {
        return Err(refused("the ID token comes from another issuer"));
    }
    let nonce_ok =
        claim("nonce").is_some_and(|n| n.as_bytes().ct_eq(pending.nonce.as_bytes()).into());
    if !nonce_ok {
        return Err(refused("the ID token is not for this sign-in (nonce)"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&provider.client_id.as_str())
        || (audiences.len() > 1 && claim("azp") != Some(provider.client_id.as_str()))
    {
        return Err(refused(
            "the ID token was not issued to the console (audience)",
        ));
    }
    if identity.kind != IdentityKind::Human {
        console
            .gateway
            .record_refused(&identity, "console_sign_in", "agents_cannot_sign_in")
            .await;
        return Err(ConsoleError::NotAPerson(format!(
            "{} is {} identity: the console is for people; agents and services use the API",
            identity.id,
            match identity.kind {
                IdentityKind::Agent => "an agent",
                _ => "a service",
            }
        )));
    }
    let amr_mfa = claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|m| m.as_str() == Some("mfa")));
    let acr_mfa = claim("acr").is_some_and(|acr| provider.mfa_acr.iter().any(|a| a == acr));
    let secret = console
        .gateway
        .start_session((*identity).clone(), amr_mfa || acr_mfa, console.session_ttl)
        .await
        .map_err(|e| ConsoleError::Unavailable(format!("cannot start the session: {e}")))?;
    let session_cookie = session::set_cookie(
        &console,
        session::session_cookie_name(&console),
        &secret,
        console.session_ttl.as_secs(),
    )?;
    let clear_login = session::set_cookie(&console, session::login_cookie_name(&console), "", 0)?;
    tracing::info!(who = %identity.id, "console sign-in");
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, safe_return(Some(&pending.to)))],
        axum::response::AppendHeaders([
            (header::SET_COOKIE, session_cookie),
            (header::SET_COOKIE, clear_login),
        ]),
    )
        .into_response())
}

/// The claims of a JWT whose signature was already verified.
fn payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let part = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /console/logout`: ends the session everywhere, then the provider's session when it
/// offers RP-initiated logout.
pub(crate) async fn logout(
    State(console): State<Console>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    let form: CsrfForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| ConsoleError::BadRequest("unreadable form".into()))?;
    let signed = session::check_form(&console, &headers, form.csrf.as_deref()).await?;
    console
        .gateway
        .end_session(&signed.secret)
        .await
        .map_err(|e| ConsoleError::Unavailable(format!("cannot end the session: {e}")))?;
    let clear = session::set_cookie(&console, session::session_cookie_name(&console), "", 0)?;
    let signed_out = format!("{}/console/signed-out", console.url);
    // The provider the person signed in with is not recorded; with one provider, its logout.
    let mut to = signed_out.clone();
    if let [provider] = console.providers.as_slice() {
        if let Ok(Some(end)) = provider
            .endpoints()
            .await
            .map(|e| e.end_session_endpoint.clone())
        {
            if let Ok(mut url) = url::Url::parse(&end) {
                url.query_pairs_mut()
                    .append_pair("client_id", &provider.client_id)
                    .append_pair("post_logout_redirect_uri", &signed_out);
                to = url.to_string();
            }
        }
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, to)],
        [(header::SET_COOKIE, clear)],
    )
        .into_response())
}

/// `GET /console/signed-out`.
pub(crate) async fn signed_out(
    State(console): State<Console>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Auth::Signed(_) = session::authenticate(&console, &headers).await? {
        return Ok(Redirect::to("/console").into_response());
    }
    let html = console.templates.render(
        "signed_out.html",
        minijinja::context! { title => "Signed out" },
    )?;
    Ok(axum::response::Html(html).into_response())
}
