//! How a command prints: `--output human|json`, the default (human on a terminal, JSON when
//! stdout is a pipe or a file) and colour (only on a terminal, never with `NO_COLOR` set or
//! `TERM=dumb`).
//!
//! JSON is the scripts' contract: the client commands print exactly what they printed before
//! human output existed. Human text is for people and may change between releases.

use anstream::{AutoStream, ColorChoice};
use anstyle::{AnsiColor, Style};
use std::io::{IsTerminal, Write};

pub use countersign::Format;

/// The output of one command: its format and whether it may use colour.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Human text (else the machine format).
    pub human: bool,
    /// Escape codes may be written.
    colour: bool,
}

impl Output {
    /// `--output` as given, or the default for where stdout goes.
    pub fn resolve(flag: Option<Format>) -> Output {
        let terminal = std::io::stdout().is_terminal();
        Output {
            human: match flag {
                Some(f) => f == Format::Human,
                None => terminal,
            },
            colour: terminal && colour_allowed(|k| std::env::var_os(k)),
        }
    }

    /// Whether the machine format was asked for by name (`--output json`), not by default.
    pub fn json(flag: Option<Format>) -> bool {
        flag == Some(Format::Json)
    }

    /// Writes `text` to stdout; escape codes are removed unless colour is on.
    pub fn print(&self, text: &str) {
        let choice = if self.colour {
            ColorChoice::AlwaysAnsi
        } else {
            ColorChoice::Never
        };
        let mut out = AutoStream::new(std::io::stdout(), choice);
        // A closed pipe (`| head`) is not an error of the command.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

/// Colour unless `NO_COLOR` is set to something (no-color.org) or `TERM` is `dumb`; the caller
/// also requires a terminal.
fn colour_allowed(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    let no_color = var("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = var("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// Styles used by the human views (stripped again when colour is off).
pub mod paint {
    use super::*;

    fn with(style: Style, text: &str) -> String {
        format!("{style}{text}{style:#}")
    }

    /// Headings and labels.
    pub fn bold(text: &str) -> String {
        with(Style::new().bold(), text)
    }
    /// Secondary text (times, ids).
    pub fn dim(text: &str) -> String {
        with(Style::new().dimmed(), text)
    }
    /// A go: allowed, approved, succeeded, an approving vote.
    pub fn good(text: &str) -> String {
        with(AnsiColor::Green.on_default().bold(), text)
    }
    /// A stop: denied, rejected, failed, a denying vote.
    pub fn bad(text: &str) -> String {
        with(AnsiColor::Red.on_default().bold(), text)
    }
    /// Waiting: pending, a question.
    pub fn wait(text: &str) -> String {
        with(AnsiColor::Yellow.on_default().bold(), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_and_dumb_terminals_turn_colour_off() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(colour_allowed(env(&[])));
        assert!(colour_allowed(env(&[("TERM", "xterm-256color")])));
        assert!(colour_allowed(env(&[("NO_COLOR", "")])));
        assert!(!colour_allowed(env(&[("NO_COLOR", "1")])));
        assert!(!colour_allowed(env(&[("TERM", "dumb")])));
    }
}
