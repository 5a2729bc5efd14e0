//! The CI examples (`examples/ci/`) cannot rot: their YAML parses, every `countersign` command
//! line in their scripts is accepted by this binary's argument parser, and the gateway
//! configuration they need loads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::Cli;
use clap::Parser;
use serde_norway::Value;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ci")
        .join(name)
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(example(name)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `countersign ...` command lines of a script (continuation lines joined), as argv.
fn countersign_lines(script: &str) -> Vec<Vec<String>> {
    script
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("countersign "))
        .map(|l| shlex::split(l).unwrap_or_else(|| panic!("not a shell line: {l}")))
        .collect()
}

/// Parses `argv` as the job would run it: `COUNTERSIGN_TOKEN` is in the job's environment (the
/// ID token), so `run` gets its `--token` from there.
fn accepted(argv: &[String], file: &str) {
    let mut argv = argv.to_vec();
    if argv.get(1).map(String::as_str) == Some("run") && !argv.iter().any(|a| a == "--token") {
        argv.splice(2..2, ["--token".to_string(), "from-the-environment".into()]);
    }
    if let Err(e) = Cli::try_parse_from(&argv) {
        panic!("{file}: {argv:?} is refused: {e}");
    }
}

#[test]
fn the_github_actions_example_runs_commands_countersign_accepts() {
    let wf = yaml("github-actions.yml");
    assert_eq!(wf["permissions"]["id-token"], Value::from("write"));
    let mut lines = Vec::new();
    for (_, job) in wf["jobs"].as_mapping().unwrap() {
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(run) = step["run"].as_str() {
                lines.extend(countersign_lines(run));
            }
        }
    }
    assert!(!lines.is_empty(), "no countersign command found");
    for l in &lines {
        accepted(l, "github-actions.yml");
    }
    let text = std::fs::read_to_string(example("github-actions.yml")).unwrap();
    assert!(text.contains("ACTIONS_ID_TOKEN_REQUEST_URL") && text.contains("COUNTERSIGN_TOKEN"));
}

#[test]
fn the_gitlab_ci_example_runs_commands_countersign_accepts() {
    let ci = yaml("gitlab-ci.yml");
    let mut lines = Vec::new();
    for (_, job) in ci.as_mapping().unwrap() {
        for line in job["script"].as_sequence().into_iter().flatten() {
            lines.extend(countersign_lines(line.as_str().unwrap()));
        }
    }
    assert!(!lines.is_empty(), "no countersign command found");
    for l in &lines {
        accepted(l, "gitlab-ci.yml");
    }
    assert_eq!(
        ci["deploy"]["id_tokens"]["COUNTERSIGN_TOKEN"]["aud"],
        Value::from("countersign")
    );
}

#[test]
fn the_parser_check_would_catch_a_bad_line() {
    let bad = countersign_lines("countersign run --no-such-flag -- true\n");
    assert!(Cli::try_parse_from(&bad[0]).is_err());
}

#[test]
fn the_ci_examples_gateway_configuration_loads() {
    let path = example("countersign-oidc.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = countersign_gateway::config::Config::parse(&text, &path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let issuers: Vec<&str> = config.oidc.iter().map(|o| o.issuer.as_str()).collect();
    assert_eq!(
        issuers,
        [
            "https://token.actions.githubusercontent.com",
            "https://gitlab.com"
        ]
    );
    assert!(config
        .oidc
        .iter()
        .all(|o| o.require_rule && !o.rules.is_empty()));
}
