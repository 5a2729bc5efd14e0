//! The CLI for people and for scripts: JSON when piped (and with `--output json`), tables and
//! summaries on a real pseudo-terminal (util-linux `script`), colour only without `NO_COLOR`,
//! ids by unique prefix, shell completions and the man page.

use crate::cli::{run, BIN};
use crate::support::{id, Gw};
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::process::Command;

/// `arg` quoted for `sh`.
fn quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs the binary with `args` on a pseudo-terminal (stdout is a terminal), with `env` set and
/// `NO_COLOR` unset unless `env` sets it; returns the exit code and everything it wrote.
async fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let line: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(quoted)
        .collect();
    let mut cmd = Command::new("script");
    // -q: no banner; -e: the child's exit code; -c: the command; /dev/null: no typescript file.
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .expect("util-linux `script` runs the binary on a pseudo-terminal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn conn<'a>(gw: &'a Gw, who: &'a str) -> [(&'a str, &'a str); 2] {
    [
        ("COUNTERSIGN_URL", gw.url.as_str()),
        ("COUNTERSIGN_TOKEN", who),
    ]
}

/// Two open reviews carol can vote on (quorum 2 each), and their ids.
async fn two_exports(gw: &Gw) -> (String, String) {
    let a = gw
        .submit(
            "bot",
            json!({"action": "db.export", "resource": "pg://prod/customers",
                   "environment": "production", "params": {"rows": 10, "cols": ["a", "b"]},
                   "justification": "quarterly report"}),
        )
        .await;
    let b = gw
        .submit(
            "bot",
            json!({"action": "db.export", "resource": "pg://prod/orders"}),
        )
        .await;
    (id(&a), id(&b))
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    &a[..n]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_output_is_the_api_json_and_output_json_is_the_same_on_a_terminal() {
    let gw = Gw::start().await;
    let (a, _) = two_exports(&gw).await;
    let (code, piped, err) = run(&["show", &a], &gw.url, "tok-carol").await;
    assert_eq!(code, 0, "{err}");
    let (_, asked, _) = run(&["show", &a, "--output", "json"], &gw.url, "tok-carol").await;
    assert_eq!(piped, asked, "piped output is `--output json`");
    // Exactly the API's body, pretty-printed: what `show` has always printed.
    let (_, body) = gw.get("carol", &format!("/v1/actions/{a}")).await;
    assert_eq!(
        piped,
        format!("{}\n", serde_json::to_string_pretty(&body).unwrap())
    );
    let (_, reviews, _) = run(&["reviews"], &gw.url, "tok-carol").await;
    let v: Value = serde_json::from_str(&reviews).unwrap();
    assert_eq!(v["reviews"].as_array().unwrap().len(), 2);

    // On a terminal, `--output json` is still the JSON, without an escape code.
    let (code, text) = on_terminal(&["reviews", "--output", "json"], &conn(&gw, "tok-carol")).await;
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["reviews"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_reviews_is_a_table_and_show_a_summary_coloured_unless_no_color() {
    let gw = Gw::start().await;
    let (a, _) = two_exports(&gw).await;
    let (s, v) = gw
        .vote(
            "bob",
            &a,
            json!({"verdict": "approve", "comment": "row count is fine"}),
        )
        .await;
    assert!(s.is_success(), "{v}");

    let (code, coloured) = on_terminal(&["reviews"], &conn(&gw, "tok-carol")).await;
    assert_eq!(code, 0, "{coloured}");
    for column in [
        "ID",
        "ACTION",
        "RESOURCE",
        "ENV",
        "REQUESTER",
        "AGE",
        "LEFT",
        "QUORUM",
    ] {
        assert!(coloured.contains(column), "{column}: {coloured}");
    }
    assert!(
        coloured.contains('\x1b'),
        "colour on a terminal: {coloured:?}"
    );

    for no_colour in [[("NO_COLOR", "1")], [("TERM", "dumb")]] {
        let env: Vec<(&str, &str)> = conn(&gw, "tok-carol")
            .into_iter()
            .chain(no_colour)
            .collect();
        let (code, plain) = on_terminal(&["reviews"], &env).await;
        assert_eq!(code, 0, "{plain}");
        assert!(!plain.contains('\x1b'), "{no_colour:?}: {plain:?}");
        let row = plain
            .lines()
            .find(|l| l.contains("pg://prod/customers"))
            .unwrap_or_else(|| panic!("{plain}"));
        for cell in [&a[..8], "db.export", "production", "bot", "1/2"] {
            assert!(row.contains(cell), "{cell}: {row}");
        }
        assert!(plain.contains("0/2"), "the other review: {plain}");
    }

    let env: Vec<(&str, &str)> = conn(&gw, "tok-carol")
        .into_iter()
        .chain([("NO_COLOR", "1")])
        .collect();
    let (code, shown) = on_terminal(&["show", &a], &env).await;
    assert_eq!(code, 0, "{shown}");
    for part in [
        "db.export pg://prod/customers  pending",
        "exports need two data owners",
        "quarterly report",
        "\"rows\": 10,",
        "Votes",
        "bob",
        "approve: \"row count is fine\"",
        "1/2 approvals",
    ] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
    assert!(!shown.contains('\x1b'), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_is_a_table_on_a_terminal_and_json_on_request() {
    let gw = Gw::start().await;
    let config = gw.dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    let (code, _, err) = run(
        &[
            "keys",
            "create",
            "--config",
            config,
            "--identity",
            "report-bot",
            "--groups",
            "automation",
        ],
        "",
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, table) =
        on_terminal(&["keys", "list", "--config", config], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{table}");
    for part in [
        "IDENTITY",
        "KIND",
        "GROUPS",
        "STATE",
        "report-bot",
        "automation",
        "active",
    ] {
        assert!(table.contains(part), "{part}: {table}");
    }
    assert!(!table.contains('\x1b'), "{table:?}");
    let (code, out, _) = run(
        &["keys", "list", "--config", config, "--output", "json"],
        "",
        "",
    )
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"][0]["identity"], "report-bot");
    assert_eq!(v["keys"][0]["kind"], "agent");
    assert!(v["keys"][0].get("hash").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_resolve_by_unique_prefix_and_never_by_a_guess() {
    let gw = Gw::start().await;
    let (mut a, mut b) = two_exports(&gw).await;
    // UUIDv7 ids begin with their time: two made together share their first characters (a pair
    // made across a 65-second boundary may not; then make another).
    for _ in 0..3 {
        if common_prefix(&a, &b).len() >= 8 {
            break;
        }
        (a, b) = two_exports(&gw).await;
    }
    assert!(common_prefix(&a, &b).len() >= 8, "{a} {b}");
    let shared = common_prefix(&a, &b).to_string();

    // Ambiguous: exit 4, both candidates named, nothing done.
    let (code, out, err) = run(&["approve", &shared], &gw.url, "tok-carol").await;
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("ambiguous_id") && err.contains(&a) && err.contains(&b),
        "{err}"
    );
    let (_, v) = gw.get("carol", &format!("/v1/actions/{a}")).await;
    assert_eq!(v["review"]["votes"], json!([]), "no vote was cast");

    // Unique: the one action, by a prefix of it (hyphens and case do not matter).
    let unique = &a[..shared.len() + 1];
    let (code, out, err) = run(
        &["approve", &unique.to_uppercase(), "--comment", "ok"],
        &gw.url,
        "tok-carol",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], a.as_str());
    assert_eq!(v["review"]["votes"][0]["voter"], "carol");
    let (code, out, _) = run(&["show", &unique.replace('-', "")], &gw.url, "tok-carol").await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        a.as_str()
    );

    // Too short, unknown, and not among what the caller can see.
    let (code, _, err) = run(&["show", &a[..3]], &gw.url, "tok-carol").await;
    assert_eq!(code, 2);
    assert!(err.contains("at least 4"), "{err}");
    let (code, _, err) = run(&["deny", "ffffffff"], &gw.url, "tok-carol").await;
    assert_eq!(code, 2);
    assert!(err.contains("not_found"), "{err}");
    let (code, _, err) = run(&["show", &a[..13]], &gw.url, "tok-alice").await;
    assert_eq!(code, 2, "alice reviews deploys, not exports");
    assert!(err.contains("not_found"), "{err}");

    // A whole id is used as given: the requester reads its own action without a listing.
    let (code, out, err) = run(&["show", &b], &gw.url, "tok-bot").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        b.as_str()
    );

    // `redeem TOKEN`: the positional is the grant, not the bearer `--token` (their clap ids
    // clashed).
    let (code, _, err) = run(&["redeem", "not-a-grant"], &gw.url, "tok-bot").await;
    assert_eq!(code, 2);
    assert!(err.contains("grant_invalid"), "{err}");
}

#[tokio::test]
async fn completions_and_the_man_page_come_from_the_command_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell], "", "").await;
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["countersign", "reviews", "approve", "submit", "keys"] {
            assert!(out.contains(word), "{shell} completions name {word}");
        }
    }
    let (code, _, _) = run(&["completions", "tcsh"], "", "").await;
    assert_eq!(code, 2, "an unknown shell is a usage error");
    let (code, page, err) = run(&["man"], "", "").await;
    assert_eq!(code, 0, "{err}");
    // roff: clap_mangen's string definitions, then the title macro and the sections.
    let title = page
        .lines()
        .position(|l| l.starts_with(".TH countersign 1"));
    let name = page.lines().position(|l| l == ".SH NAME");
    assert!(
        matches!((title, name), (Some(t), Some(n)) if t < n),
        "{}",
        &page[..page.len().min(300)]
    );
    for word in ["countersign", "reviews", "\\-\\-output"] {
        assert!(page.contains(word), "the man page names {word}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_sees_the_analysis_risk_tags_and_impact() {
    let gw = Gw::start().await;
    let a = gw
        .submit(
            "bot",
            json!({"action": "db.query", "resource": "pg://prod/app",
                   "params": {"sql": "DROP TABLE users; DROP TABLE orders"}}),
        )
        .await;
    let a = id(&a);
    let env: Vec<(&str, &str)> = conn(&gw, "tok-alice")
        .into_iter()
        .chain([("NO_COLOR", "1")])
        .collect();
    let (code, table) = on_terminal(&["reviews"], &env).await;
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("RISK"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("db.query"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("high") || row.contains("critical"), "{row}");
    let (code, shown) = on_terminal(&["show", &a], &env).await;
    assert_eq!(code, 0, "{shown}");
    for part in ["Risk", "sql:ddl", "sql:drop", "users"] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
}
