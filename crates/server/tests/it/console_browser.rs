//! The web console in real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by scripts/test) through WebDriver, driven by Selenium from
//! `tests/interop/console_browser.py`: sign-in through the real `oidc-provider`, the queue, an
//! action, approve with changes, a second session's queue updated live, refusals, and axe-core
//! on every console page. Screenshots go to `target/console-screenshots/`, and to `docs/` with
//! `COUNTERSIGN_UPDATE_SCREENSHOTS=1` (the README shows those).

use serde_json::{json, Value};

use crate::console::{Browser, Console};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let python = root().join("target/pyenv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test",
        python.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "chromium-driver is missing: run scripts/test, which installs it"
    );
    let c = Console::start("admin_group = \"sre\"").await;
    // Alice has signed in once before (so an agent may act on her behalf).
    let mut first = Browser::new();
    first.sign_in(&format!("{}/console", c.url), "alice").await;
    let action = c
        .submit(
            json!({"action": "deploy", "resource": "api-service", "environment": "prod",
            "params": {"version": "1.2.3", "replicas": 3}, "justification": "release 1.2.3"}),
        )
        .await;
    let mine = c
        .submit(
            json!({"action": "deploy", "resource": "api-service", "environment": "staging",
            "params": {"version": "1.2.4", "replicas": 1}, "on_behalf_of": "alice",
            "justification": "alice asked for it"}),
        )
        .await;
    let step_up = c
        .submit(json!({"action": "db.restart", "resource": "orders-db", "environment": "prod"}))
        .await;
    // A session that ends while its page is open (bob's, started here with a short life).
    let bob =
        countersign_core::Identity::new("bob", countersign_core::IdentityKind::Human, ["sre"]);
    // Long enough for a browser to start and load the page on a loaded machine.
    let life = std::time::Duration::from_secs(15);
    let short = c.gateway.start_session(bob, false, life).await.unwrap();
    let short_ends = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + life.as_secs_f64();
    let http = c.http.clone();
    let wait_url = format!("{}/v1/actions/{action}?wait=60", c.url);
    let waiting = tokio::spawn(async move {
        let resp = http
            .get(wait_url)
            .bearer_auth("tok-bot")
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()
    });
    let shots = if std::env::var_os("COUNTERSIGN_UPDATE_SCREENSHOTS").is_some() {
        root().join("docs")
    } else {
        root().join("target/console-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let args = json!({
        "url": c.url,
        "action": action,
        "mine": mine,
        "step_up": step_up,
        "short_session": short,
        "short_ends": short_ends,
        "axe": root().join("tests/node_modules/axe-core/axe.min.js"),
        "shots": shots,
    });
    let out = tokio::process::Command::new(&python)
        .arg(root().join("tests/interop/console_browser.py"))
        .arg(args.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(results["live"], true);
    assert_eq!(results["inclusion_verified"], true);
    assert!(
        results["axe_pages"].as_array().unwrap().len() >= 5,
        "{results}"
    );

    // The agent's long poll was released with the approved, modified action.
    let v = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["params"]["replicas"], 2);

    // Every refusal the browser met is in the audit log.
    let refusals = c.refusals().await;
    for (who, code) in [
        ("alice", "self_approval"),
        ("alice", "csrf_missing"),
        ("console:anonymous", "console_session_unknown"),
        ("deploy-bot", "agents_cannot_sign_in"),
        ("bob", "mfa_required"),
        ("bob", "console_session_expired"),
    ] {
        assert!(
            refusals.iter().any(|(w, c)| w == who && c == code),
            "{who} {code} audited: {refusals:?}"
        );
    }
}
