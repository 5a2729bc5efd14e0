//! The admin page (people in `admin_group` only; the gateway says who): managed API keys —
//! create (the secret shown once, on the page that answers the form), list, revoke. Each form
//! carries the session's CSRF token; each change is the gateway's, with its audit entry.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use countersign_core::IdentityKind;
use countersign_gateway::keys::KeyRequest;
use countersign_gateway::GatewayError;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::session::{self, Auth, Signed};
use crate::{ConsoleError, State as Console};

#[derive(Serialize)]
struct Configured {
    id: String,
    kind: &'static str,
    groups: Vec<String>,
}

/// What `policy eval` answered, for the page.
#[derive(Serialize, Default)]
struct Evaluated {
    principal: String,
    action: String,
    resource: String,
    environment: String,
    params: String,
    effect: Option<&'static str>,
    policies: Vec<String>,
    reason: Option<String>,
    requirements: Vec<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Key {
    id: String,
    identity: String,
    kind: &'static str,
    groups: Vec<String>,
    created_by: String,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

fn refused(e: GatewayError) -> ConsoleError {
    match e {
        GatewayError::Forbidden(why) => ConsoleError::Forbidden(why),
        GatewayError::Invalid(why) => ConsoleError::BadRequest(why),
        GatewayError::KeyNotFound => ConsoleError::NotFound,
        other => ConsoleError::Unavailable(other.to_string()),
    }
}

async fn render(
    console: &Console,
    signed: &Signed,
    created: Option<(String, String)>,
    evaluated: Option<Evaluated>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let gateway = &console.gateway;
    gateway
        .require_admin(&signed.session.identity)
        .map_err(refused)?;
    let mut identities: Vec<Configured> = gateway
        .identities()
        .all()
        .map(|i| Configured {
            id: i.id.clone(),
            kind: i.kind.as_str(),
            groups: i.groups.iter().cloned().collect(),
        })
        .collect();
    identities.sort_by(|a, b| a.id.cmp(&b.id));
    let t = countersign_api::time::rfc3339;
    let keys: Vec<Key> = console
        .gateway
        .list_keys(&signed.session.identity)
        .await
        .map_err(refused)?
        .into_iter()
        .map(|k| Key {
            id: k.id,
            identity: k.identity,
            kind: k.kind.as_str(),
            groups: k.groups.into_iter().collect(),
            created_by: k.created_by,
            created_at: t(k.created_at),
            expires_at: k.expires_at.map(t),
            revoked_at: k.revoked_at.map(t),
        })
        .collect();
    let html = console.templates.render(
        "admin.html",
        context! {
            title => "Admin",
            keys => keys,
            created => created.map(|(id, secret)| context! { id => id, secret => secret }),
            identities => identities,
            policy_count => gateway.policy().len(),
            policy_hash => gateway.policy().hash(),
            policies => gateway
                .policy()
                .listing()
                .into_iter()
                .map(|p| context! { id => p.id, effect => p.effect, text => p.text })
                .collect::<Vec<_>>(),
            eval => evaluated.unwrap_or_default(),
            user => crate::pages::user_of(signed),
            csrf => &signed.csrf,
        },
    )?;
    Ok((status, Html(html)).into_response())
}

/// `GET /console/admin`.
pub(crate) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let signed = match session::authenticate(&console, &headers).await {
        Ok(Auth::Signed(s)) => s,
        Ok(Auth::SignedOut) => {
            return axum::response::Redirect::to("/console/login?to=%2Fconsole%2Fadmin")
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    render(&console, &signed, None, None, StatusCode::OK)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct KeyForm {
    #[serde(default)]
    csrf: Option<String>,
    /// `create` or `revoke`.
    op: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    id: String,
}

/// `POST /console/admin/keys`: create or revoke a managed key.
pub(crate) async fn keys(
    State(console): State<Console>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let form: KeyForm = serde_urlencoded::from_bytes(&body)
            .map_err(|_| ConsoleError::BadRequest("unreadable form".into()))?;
        let signed = session::check_form(&console, &headers, form.csrf.as_deref()).await?;
        let who = &signed.session.identity;
        match form.op.as_str() {
            "create" => {
                let kind = match form.kind.as_str() {
                    "agent" => IdentityKind::Agent,
                    "service" => IdentityKind::Service,
                    _ => {
                        return Err(ConsoleError::BadRequest(
                            "a key is for an agent or a service".into(),
                        ))
                    }
                };
                let expires_in = match form.expires.trim() {
                    "" => None,
                    e => Some(humantime::parse_duration(e).map_err(|e| {
                        ConsoleError::BadRequest(format!(
                            "expires must be a duration like 90d: {e}"
                        ))
                    })?),
                };
                let req = KeyRequest {
                    identity: form.identity.trim().to_string(),
                    kind,
                    groups: form
                        .groups
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect(),
                    expires_in,
                    sponsor: None,
                };
                let (secret, key) = console
                    .gateway
                    .create_key(who, req)
                    .await
                    .map_err(refused)?;
                render(
                    &console,
                    &signed,
                    Some((key.id, secret)),
                    None,
                    StatusCode::CREATED,
                )
                .await
            }
            "revoke" => {
                console
                    .gateway
                    .revoke_key(who, form.id.trim())
                    .await
                    .map_err(refused)?;
                Ok((
                    StatusCode::SEE_OTHER,
                    [(axum::http::header::LOCATION, "/console/admin")],
                )
                    .into_response())
            }
            _ => Err(ConsoleError::BadRequest("unknown operation".into())),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub(crate) struct EvalForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    params: String,
}

/// `POST /console/admin/eval`: what policy would decide for a configured identity's request
/// (`countersign policy eval` as a form; nothing is recorded).
pub(crate) async fn eval(
    State(console): State<Console>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let form: EvalForm = serde_urlencoded::from_bytes(&body)
            .map_err(|_| ConsoleError::BadRequest("unreadable form".into()))?;
        let signed = session::check_form(&console, &headers, form.csrf.as_deref()).await?;
        console
            .gateway
            .require_admin(&signed.session.identity)
            .map_err(refused)?;
        let mut out = Evaluated {
            principal: form.principal.clone(),
            action: form.action.clone(),
            resource: form.resource.clone(),
            environment: form.environment.clone(),
            params: form.params.clone(),
            ..Evaluated::default()
        };
        let decided = (|| {
            let who = console
                .gateway
                .identities()
                .get(form.principal.trim())
                .ok_or_else(|| format!("no configured identity `{}`", form.principal.trim()))?;
            let params = match form.params.trim() {
                "" => None,
                p => Some(serde_json::from_str(p).map_err(|e| format!("params: not JSON: {e}"))?),
            };
            let spec = countersign_core::ActionSpec::new(
                form.action.trim(),
                form.resource.trim(),
                form.environment.trim(),
                params,
            )
            .map_err(|e| e.to_string())?;
            console
                .gateway
                .decide(who, &spec, "")
                .map_err(|e| e.to_string())
        })();
        match decided {
            Ok(d) => {
                out.effect = Some(d.effect.as_str());
                out.policies = d.policies.clone();
                out.reason = d.reason.clone();
                out.requirements = d
                    .requirements
                    .iter()
                    .map(|q| {
                        format!(
                            "{}: {} of {}{}",
                            q.policy,
                            q.quorum.get(),
                            q.approvers.entries().join(", "),
                            if q.require_mfa { " (MFA)" } else { "" }
                        )
                    })
                    .collect();
            }
            Err(e) => out.error = Some(e),
        }
        render(&console, &signed, None, Some(out), StatusCode::OK).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
