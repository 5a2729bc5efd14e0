//! The headers every console response carries (a strict Content-Security-Policy with
//! `frame-ancestors 'none'`, `X-Frame-Options`, no sniffing, no referrer to other sites (`same-origin`: with `no-referrer` a browser sends `Origin: null` on our own form posts), no caching of pages),
//! whether cookies are `Secure`, and the budget that keeps refusals of anonymous requests from
//! growing the audit log without bound.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::{oidc, ConsoleError};

/// Whether session cookies must be `Secure`: always, except for a plain-http console on a
/// loopback host (a developer's machine), where a browser would not send them back.
pub(crate) fn needs_secure_cookies(console_url: &str) -> bool {
    let Ok(url) = url::Url::parse(console_url) else {
        return true;
    };
    if url.scheme() == "https" {
        return true;
    }
    !match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The policy: only this origin's script, styles, images and connections; forms may post here
/// and to the providers (RP-initiated logout redirects there after a form); no frames, no
/// plugins, no `<base>`.
pub(crate) fn content_security_policy(
    providers: &[oidc::Provider],
) -> Result<HeaderValue, ConsoleError> {
    let mut form_action = vec!["'self'".to_string()];
    for p in providers {
        let origin = p.origin();
        if !form_action.contains(&origin) {
            form_action.push(origin);
        }
    }
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
        form_action.join(" ")
    );
    HeaderValue::from_str(&csp)
        .map_err(|_| ConsoleError::Config("an issuer URL cannot go in a header".into()))
}

/// Adds the security headers to every console response.
pub(crate) async fn headers(
    State(console): State<crate::State>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, console.csp.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// At most this many audit entries a minute for refusals of requests that name no live
/// session (a forged or stale cookie): each costs the log an entry, and anyone can send them.
const ANONYMOUS_REFUSALS_PER_MINUTE: u64 = 30;

/// Counts anonymous refusals per minute.
#[derive(Default)]
pub(crate) struct RefusalBudget {
    window: Mutex<Option<Instant>>,
    used: AtomicU64,
}

impl RefusalBudget {
    /// Whether one more anonymous refusal may be audited now.
    pub(crate) fn take(&self) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        let now = Instant::now();
        if window.is_none_or(|start| now.duration_since(start).as_secs() >= 60) {
            *window = Some(now);
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < ANONYMOUS_REFUSALS_PER_MINUTE
    }
}
