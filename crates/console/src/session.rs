//! Who is using the console: the session cookie (HttpOnly, SameSite=Lax, `Secure` and
//! `__Host-` unless on loopback) carries a random secret; the gateway keeps the session row
//! ([`Gateway::session`](countersign_gateway::Gateway::session)). Every state-changing form
//! carries a CSRF token derived from the secret (so it needs no row of its own and is never
//! valid for another session), checked with the request's `Origin`.
//!
//! A request with a cookie that opens no live session is refused like any unauthenticated
//! request; the refusal is audited (the expired session's owner by name; a cookie that names no
//! session as `console:anonymous`, within a per-minute budget since anyone can send one).

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_core::{Identity, IdentityKind};
use countersign_gateway::Session;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ConsoleError, State};

/// A signed-in person.
pub(crate) struct Signed {
    /// The cookie's secret.
    pub secret: String,
    pub session: Session,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

/// What the request's cookie says.
pub(crate) enum Auth {
    Signed(Box<Signed>),
    /// No live session (no cookie, or one that was refused and audited).
    SignedOut,
}

pub(crate) fn session_cookie_name(console: &crate::Console) -> &'static str {
    if console.secure {
        "__Host-cs_session"
    } else {
        "cs_session"
    }
}

pub(crate) fn login_cookie_name(console: &crate::Console) -> &'static str {
    if console.secure {
        "__Host-cs_login"
    } else {
        "cs_login"
    }
}

/// The value of cookie `name`, if the request has exactly one (two are a sign of cookie
/// injection through a sibling domain: neither is trusted).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for h in headers.get_all(header::COOKIE) {
        let Ok(text) = h.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, `Secure` unless on loopback;
/// `max_age` 0 deletes it.
pub(crate) fn set_cookie(
    console: &crate::Console,
    name: &str,
    value: &str,
    max_age: u64,
) -> Result<HeaderValue, ConsoleError> {
    let secure = if console.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .map_err(|_| ConsoleError::BadRequest("unusable cookie value".into()))
}

/// The CSRF token of the session whose secret is `secret`.
pub(crate) fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"countersign console csrf\n");
    h.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

fn anonymous() -> Identity {
    Identity::new(
        "console:anonymous",
        IdentityKind::Human,
        Vec::<String>::new(),
    )
}

/// The session the request's cookie opens. A cookie that opens none is audited (see the
/// module documentation) and the request is treated as signed out.
pub(crate) async fn authenticate(
    console: &State,
    headers: &HeaderMap,
) -> Result<Auth, ConsoleError> {
    let Some(secret) = cookie(headers, session_cookie_name(console)) else {
        return Ok(Auth::SignedOut);
    };
    let gateway = &console.gateway;
    let unavailable = |e: countersign_gateway::GatewayError| {
        ConsoleError::Unavailable(format!("cannot read sessions: {e}"))
    };
    if let Some(session) = gateway.session(secret).await.map_err(unavailable)? {
        return Ok(Auth::Signed(Box::new(Signed {
            csrf: csrf_token(secret),
            secret: secret.to_string(),
            session,
        })));
    }
    match gateway.session_row(secret).await.map_err(unavailable)? {
        Some(row) if row.ended_at.is_none() => {
            gateway
                .record_refused(&row.identity, "console", "console_session_expired")
                .await;
        }
        // A signed-out session's cookie, kept by the browser: nothing to record.
        Some(_) => {}
        None => {
            if console.refusals.take() {
                gateway
                    .record_refused(&anonymous(), "console", "console_session_unknown")
                    .await;
            }
        }
    }
    Ok(Auth::SignedOut)
}

/// A state-changing request: a live session, a CSRF token that is this session's, and (when
/// the browser says) the console's own origin. Each refusal is audited.
pub(crate) async fn check_form(
    console: &State,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<Signed, ConsoleError> {
    let Auth::Signed(signed) = authenticate(console, headers).await? else {
        return Err(ConsoleError::SessionEnded);
    };
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => o.as_bytes() == console_origin(&console.url).as_bytes(),
    };
    let token_ok = csrf.is_some_and(|t| t.as_bytes().ct_eq(signed.csrf.as_bytes()).into());
    if !(origin_ok && token_ok) {
        let code = if csrf.is_none() {
            "csrf_missing"
        } else {
            "csrf_invalid"
        };
        console
            .gateway
            .record_refused(&signed.session.identity, "console", code)
            .await;
        return Err(ConsoleError::Csrf);
    }
    Ok(*signed)
}

/// `scheme://host[:port]` of the console's URL.
pub(crate) fn console_origin(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.origin().ascii_serialization())
}
