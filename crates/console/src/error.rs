//! What can go wrong in the console, and the page each failure shows. A browser gets a page
//! that says what happened and what to do, with the status that fits, never an error dump.

use axum::http::StatusCode;

/// A console failure.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The configuration cannot work (at start).
    #[error("console: {0}")]
    Config(String),
    /// Sign-in failed: the provider refused, the answer was not for this sign-in, the ID token
    /// did not verify.
    #[error("{0}")]
    SignIn(String),
    /// The identity may not use the console (an agent or a service).
    #[error("{0}")]
    NotAPerson(String),
    /// The gateway refused (not an admin, say).
    #[error("{0}")]
    Forbidden(String),
    /// A form without the session's CSRF token.
    #[error("this form is not from your console session (its security token is missing or wrong); reload the page and try again")]
    Csrf,
    /// The session ended or expired while a form was open.
    #[error("your console session has ended; sign in again")]
    SessionEnded,
    /// A request the console cannot read.
    #[error("{0}")]
    BadRequest(String),
    /// No such action (or not one this person may see).
    #[error("no such action, or not one you may see")]
    NotFound,
    /// The provider or the store is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

impl ConsoleError {
    /// The HTTP status of the page.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Config(_) | ConsoleError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ConsoleError::SignIn(_) | ConsoleError::SessionEnded => StatusCode::UNAUTHORIZED,
            ConsoleError::NotAPerson(_) | ConsoleError::Csrf | ConsoleError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// A short title for the page.
    pub fn title(&self) -> &'static str {
        match self {
            ConsoleError::Config(_) => "Console not configured",
            ConsoleError::SignIn(_) => "Sign-in failed",
            ConsoleError::NotAPerson(_) => "Not for agents or services",
            ConsoleError::Csrf => "Form refused",
            ConsoleError::Forbidden(_) => "Not allowed",
            ConsoleError::SessionEnded => "Session ended",
            ConsoleError::BadRequest(_) => "Bad request",
            ConsoleError::NotFound => "Not found",
            ConsoleError::Unavailable(_) => "Unavailable",
        }
    }
}

impl From<minijinja::Error> for ConsoleError {
    fn from(e: minijinja::Error) -> Self {
        ConsoleError::Config(format!("templates: {e}"))
    }
}

/// Text made safe for HTML.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl axum::response::IntoResponse for ConsoleError {
    fn into_response(self) -> axum::response::Response {
        if let ConsoleError::Unavailable(e) = &self {
            tracing::error!(error = %e, "console");
        }
        let again = match self {
            ConsoleError::SignIn(_) | ConsoleError::SessionEnded => {
                r#"<p><a href="/console/login">Sign in</a></p>"#
            }
            _ => r#"<p><a href="/console">Back to the console</a></p>"#,
        };
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · countersign</title>\
             <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body>\
             <main id=\"main\"><h1>{title}</h1><p class=\"notice error\" role=\"alert\" \
             id=\"message\">{message}</p>{again}</main></body></html>",
            title = escape(self.title()),
            message = escape(&self.to_string()),
        );
        (self.status(), axum::response::Html(html)).into_response()
    }
}
