//! The masking canary (#17): actions carrying realistic secrets and personal data go through
//! every path that exists — the API (requester's and reviewer's views, the review list), the CLI
//! (`submit`, `show`, `reviews`, human and JSON), a reviewer's modify, the server's logs at debug
//! level, the three export formats and the evidence report — and none of them shows a canary,
//! while the executor's redeemed grant carries the real values.

use serde_json::{json, Value};
use std::process::Stdio;
use tokio::process::Command;

use crate::canaries::{assert_clean, params, CANARIES};
use crate::cli::{run, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_a_person_or_another_system_and_the_executor_gets_real_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(
        dir.path(),
        "[masking]\nfields = [\"params.customer.ssn\"]\n",
    );
    let log_path = dir.path().join("server.log");
    let mut server = crate::cli::Server::serve(
        &config,
        &[("COUNTERSIGN_LOG", "debug")],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let url = server.url.clone();
    let justification = format!("customer {} asked, card {}", CANARIES[7], CANARIES[8]);

    // Submitted through the CLI: its own output is the server's masked view.
    let p = params().to_string();
    let (code, out, err) = run(
        &[
            "submit",
            "deploy",
            "app://web",
            "--params",
            &p,
            "--justification",
            &justification,
            "--output",
            "json",
        ],
        &url,
        "tok-bot",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_clean("`submit`", &format!("{out}{err}"));
    let submitted: Value = serde_json::from_str(&out).unwrap();
    let id = submitted["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["status"], "pending");

    // The API: requester, reviewer, the review list.
    let http = crate::support::client();
    let get = |path: String, token: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let as_bot = get(format!("/v1/actions/{id}"), "tok-bot").await;
    assert_clean("the requester's view", &as_bot);
    let as_alice = get(format!("/v1/actions/{id}"), "tok-alice").await;
    assert_clean("the reviewer's view", &as_alice);
    let view: Value = serde_json::from_str(&as_alice).unwrap();
    assert!(
        view["params"]["customer"]["email"]
            .as_str()
            .unwrap()
            .starts_with("[email:"),
        "{view}"
    );
    assert!(
        view["params"]["customer"]["ssn"]
            .as_str()
            .unwrap()
            .starts_with("[field:"),
        "{view}"
    );
    assert_eq!(
        view["params"]["rows"], 3,
        "what is not secret is shown as sent"
    );
    assert_clean(
        "the review list",
        &get("/v1/reviews".into(), "tok-alice").await,
    );

    // The CLI, for people and for scripts.
    for args in [
        vec!["show", id.as_str()],
        vec!["show", id.as_str(), "--output", "json"],
        vec!["reviews"],
        vec!["reviews", "--output", "json"],
    ] {
        let (code, out, err) = run(&args, &url, "tok-alice").await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_clean(&format!("`{}`", args.join(" ")), &format!("{out}{err}"));
    }

    // A reviewer's change carrying a secret (it approves the new action); the views stay masked and the
    // executor's redemption gets the real values of what was approved.
    let mut changed = params();
    changed["note"] = json!(format!("use {} instead", CANARIES[3]));
    let voted = http
        .post(format!("{url}/v1/reviews/{id}/votes"))
        .bearer_auth("tok-alice")
        .json(&json!({"verdict": "modify", "params": changed, "comment": format!("mail {}", CANARIES[7])}))
        .send()
        .await
        .unwrap();
    assert!(voted.status().is_success());
    let voted = voted.text().await.unwrap();
    assert_clean("the modify's answer", &voted);
    // The modify is the reviewer's approval of the new action (quorum 1).
    assert_eq!(
        serde_json::from_str::<Value>(&voted).unwrap()["status"],
        "approved",
        "{voted}"
    );
    let after = get(format!("/v1/actions/{id}"), "tok-bot").await;
    assert_clean("the approved view", &after);
    let token = serde_json::from_str::<Value>(&after).unwrap()["grant"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let redeemed: Value = http
        .post(format!("{url}/v1/grants/redeem"))
        .bearer_auth("tok-bot")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        redeemed["params"], changed,
        "the executor gets the real, approved values"
    );

    // The audit log: masked entries with commitments that the masking key proves.
    let entries = get("/v1/audit/entries?start=0&limit=100".into(), "tok-alice").await;
    assert_clean("the audit entries", &entries);
    let entries: Value = serde_json::from_str(&entries).unwrap();
    let submitted_entry = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "submitted")
        .unwrap()
        .clone();
    let masked = submitted_entry["event"]["masked"].as_array().unwrap();
    let key = std::fs::read_to_string(dir.path().join("data/gw.db.masking.key")).unwrap();
    let masker = countersign_mask::Masker::new(
        &countersign_mask::MaskingConfig::default(),
        &hex::decode(key.trim()).unwrap(),
    )
    .unwrap();
    let email = masked
        .iter()
        .find(|m| m["path"] == "/spec/params/customer/email")
        .unwrap();
    assert!(masker.matches(CANARIES[7], email["commitment"].as_str().unwrap()));
    assert!(!masker.matches(
        "someone@else.example",
        email["commitment"].as_str().unwrap()
    ));
    // The same proof from the CLI, for whoever holds the key.
    for (value, want) in [(CANARIES[7], 0), ("someone@else.example", 1)] {
        let mut child = Command::new(BIN)
            .args(["audit", "check-masked", "--config"])
            .arg(&config)
            .args(["--commitment", email["commitment"].as_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{value}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        assert_eq!(child.wait().await.unwrap().code(), Some(want), "{value}");
    }

    // Server logs at debug level.
    server.kill9().await;
    assert_clean(
        "the server's debug log",
        &std::fs::read_to_string(&log_path).unwrap(),
    );

    // The exports and the evidence report; the masked log still verifies.
    let config_s = config.to_str().unwrap();
    for (format, file) in [
        ("jsonl", "log.jsonl"),
        ("csv", "log.csv"),
        ("ocsf", "log.ocsf"),
    ] {
        let out_path = dir.path().join(file);
        let (code, _, err) = run(
            &[
                "audit",
                "export",
                "--config",
                config_s,
                "--format",
                format,
                "--out",
                out_path.to_str().unwrap(),
            ],
            &url,
            "",
        )
        .await;
        assert_eq!(code, 0, "{format}: {err}");
        assert_clean(format, &std::fs::read_to_string(&out_path).unwrap());
    }
    let (code, _, err) = run(&["audit", "verify", "--config", config_s], &url, "").await;
    assert_eq!(code, 0, "{err}");
    let report = dir.path().join("report.html");
    let (code, _, err) = run(
        &[
            "audit",
            "evidence",
            "--config",
            config_s,
            "--out",
            report.to_str().unwrap(),
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &url,
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_clean(
        "the evidence report",
        &std::fs::read_to_string(&report).unwrap(),
    );
}

/// The MCP proxy: a tool call carrying canaries reaches the MCP server with the real values (the
/// echo comes back whole), while the gateway's views and audit entries of it show none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_arguments_are_masked_for_people_but_reach_the_server_whole() {
    let gw = crate::mcp::gateway().await;
    let message = format!(
        "deploy with {} and mail {} card {}",
        CANARIES[1], CANARIES[7], CANARIES[8]
    );
    let mut c = crate::mcp::SdkClient::start(
        &gw,
        &[],
        json!([{"op": "call", "tool": "echo", "args": {"message": message}}]),
    );
    let echoed = c.next("call").await;
    assert_eq!(echoed["isError"], false, "{echoed}");
    assert_eq!(
        echoed["text"],
        format!("Echo: {message}"),
        "the server got the real values"
    );
    c.finish().await;
    let actions = crate::mcp::actions_on(&gw, "mcp://everything/echo").await;
    assert_eq!(actions.len(), 1);
    assert_clean("the MCP call's view", &actions[0].to_string());
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=100").await;
    assert_clean("the MCP call's audit entries", &log.to_string());
}

/// `@reveal` (#17): the people a policy names see the real values, through the API and the CLI,
/// each time recorded in the audit log; a reviewer the policy does not name, the requesting
/// agent and an action without the annotation are refused, and the refusals are recorded too.
/// Every other view stays masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_shows_real_values_only_to_the_people_policy_names_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(dir.path(), "");
    std::fs::write(
        dir.path().join("policies/reveal.cedar"),
        r#"@id("pii-export") @effect("review") @approvers("group:sre") @reveal("group:data")
permit (principal, action == Action::"customer.export", resource);"#,
    )
    .unwrap();
    let (url, _server) = crate::support::serve(&config).await;
    let http = crate::support::client();
    let email = CANARIES[7];
    let submit = |action: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let v: Value = http
                .post(format!("{url}/v1/actions"))
                .bearer_auth("tok-bot")
                .json(&json!({"action": action, "resource": "crm://customers",
                              "params": {"customer": {"email": email}, "rows": 3}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["status"], "pending", "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let id = submit("customer.export").await;
    let reveal = |id: String, token: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let resp = http
                .post(format!("{url}/v1/actions/{id}/reveal"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let cache = resp
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_string());
            (status, cache, resp.json::<Value>().await.unwrap())
        }
    };

    // A data owner sees the real values; the view says where they were masked.
    let (status, cache, shown) = reveal(id.clone(), "tok-carol").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(shown["params"]["customer"]["email"], email, "{shown}");
    assert_eq!(shown["revealed"], json!(["/params/customer/email"]));
    assert_eq!(shown["decision"]["reveal"], json!(["group:data"]));
    // The same from the CLI.
    let (code, out, err) = run(&["reveal", &id, "--output", "json"], &url, "tok-carol").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(email), "{out}");

    // The reviewer (not a data owner), the requesting agent, and anyone on an action whose
    // policy names nobody: refused with a stable code.
    let other = submit("deploy").await;
    for (id, token) in [
        (id.clone(), "tok-alice"),
        (id.clone(), "tok-bot"),
        (other.clone(), "tok-carol"),
    ] {
        let (status, _, body) = reveal(id, token).await;
        assert_eq!(status, 403, "{token}: {body}");
        assert_eq!(body["error"]["code"], "reveal_not_allowed", "{body}");
        assert_clean("a refused reveal", &body.to_string());
    }
    // Views stay masked for everyone, the data owner included.
    for token in ["tok-alice", "tok-carol", "tok-bot"] {
        let view = http
            .get(format!("{url}/v1/actions/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_clean("a view after a reveal", &view);
    }

    // Each reveal and each refusal is in the audit log, which never holds the values.
    let entries = http
        .get(format!("{url}/v1/audit/entries?start=0&limit=100"))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_clean("the audit entries", &entries);
    let entries: Value = serde_json::from_str(&entries).unwrap();
    let events: Vec<&Value> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .collect();
    let revealed: Vec<&&Value> = events.iter().filter(|e| e["type"] == "revealed").collect();
    assert_eq!(revealed.len(), 2, "API and CLI: {events:?}");
    for e in &revealed {
        assert_eq!(e["event"]["by"], "carol", "{e}");
        assert_eq!(
            e["event"]["values"],
            json!(["/params/customer/email"]),
            "{e}"
        );
        assert_eq!(e["action_id"], id.as_str(), "{e}");
    }
    let refused: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "refused" && e["event"]["attempted"] == "reveal")
        .map(|e| {
            assert_eq!(e["event"]["code"], "reveal_not_allowed", "{e}");
            (
                e["event"]["by"].as_str().unwrap().to_string(),
                e["action_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("alice".to_string(), id.clone()),
            ("bot".to_string(), id.clone()),
            ("carol".to_string(), other.clone())
        ]
    );
}
