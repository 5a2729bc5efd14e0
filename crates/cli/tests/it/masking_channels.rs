//! The masking canary over the reviewer channels (#17): actions carrying the canaries in their
//! resource, parameters and justification are routed by `@notify` to Slack and to a webhook,
//! asked about, answered, approved with a click and approved with changes carrying a new secret.
//! Every request the Slack Web API double and the webhook receiver got (messages posted and
//! updated, the thread reply, the modal opened, the ephemeral replies, the signed events),
//! `countersign outbox list` and the server's debug log show no canary in any common encoding,
//! while the executor's redeemed grant carries the real values: the submitted ones, and for the
//! change, the reviewer's edit with every value the reviewer left as shown restored to the real
//! one. The same for Microsoft Teams: every request body the Bot Connector double got (cards
//! sent and rewritten, the reply with the question and answer) and every answer to an
//! `adaptiveCard/action` invoke.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::canaries::{assert_clean, params, CANARIES, REVIEWER_CANARY};
use crate::outbox::{outbox_cli, Receiver, SECRET};
use crate::slack::{click, config_with, post_signed, signed, slack_sdk, SlackDouble};
use crate::support::{id, now_secs, Gw};

const POLICY: &str = r#"@id("canary") @effect("review") @approvers("group:sre") @reason("exports need an SRE")
@notify("slack:#approvals, webhook:ops")
permit (principal, action == Action::"customer.export", resource);"#;

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit(gw: &Gw) -> String {
    let v = gw
        .submit(
            "bot",
            json!({
                "action": "customer.export",
                "resource": format!("crm://customers/{}", CANARIES[7]),
                "justification": format!("customer {} asked, card {}", CANARIES[7], CANARIES[8]),
                "params": params(),
            }),
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    assert_clean("the submission's answer", &v.to_string());
    id(&v)
}

/// The executor redeems the action's grant; the parameters it gets.
async fn redeem(gw: &Gw, action: &str) -> Value {
    let (_, view) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(view["status"], "approved", "{view}");
    let token = view["grant"]["token"].as_str().unwrap().to_string();
    let (status, redeemed) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert!(status.is_success(), "{redeemed}");
    redeemed["params"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_slack_or_a_webhook_and_the_executor_gets_real_values() {
    let (double, durl) = SlackDouble::start().await;
    *double.rate_limit_first_post.lock().unwrap() = false;
    let (receiver, hook) = Receiver::start(200).await;
    let extra = format!(
        "[masking]\nfields = [\"params.customer.ssn\"]\n\n\
         [[webhooks]]\nname = \"ops\"\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n"
    );
    // The server as an operator runs it, logging at debug level.
    let (dir, config) = config_with(&durl, "mode = \"http\"", &extra, POLICY);
    let log_path = dir.path().join("server.log");
    let mut server = crate::cli::Server::serve(
        &config,
        &[("COUNTERSIGN_LOG", "debug")],
        std::process::Stdio::from(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let gw = Gw::from_parts(
        server.url.clone(),
        crate::support::client(),
        dir,
        tokio::spawn(async {}),
    );

    // The first action: a question asked in a modal (carrying a phone number) and answered by
    // the requester (carrying an AWS key), then approved with a click; a reviewer the policy
    // does not name and an unmapped Slack user are refused with ephemeral replies.
    let first = submit(&gw).await;
    double.wait_for("chat.postMessage", 1).await;
    let ask = json!({
        "type": "view_submission",
        "user": {"id": "UBOB"},
        "view": {
            "id": "V0200", "type": "modal", "callback_id": "countersign_ask",
            "private_metadata": first,
            "state": {"values": {"question": {"value": {"type": "plain_text_input",
                "value": format!("is {} the customer's phone?", CANARIES[10])}}}},
        },
    });
    let (b, t, s) = signed(&ask, now_secs());
    assert_eq!(post_signed(&gw, b, &t, &s).await, (200, Value::Null));
    let (status, answered) = gw
        .post(
            "bot",
            &format!("/v1/actions/{first}/answer"),
            json!({"answer": format!("yes; the export runs as {}", CANARIES[0])}),
        )
        .await;
    assert!(status.is_success(), "{answered}");
    until("the thread reply", || {
        double
            .calls("chat.postMessage")
            .iter()
            .any(|p| p.get("thread_ts").is_some())
    })
    .await;
    for (user, hook) in [("UCAROL", "carol"), ("UNOBODY", "nobody")] {
        let (b, t, s) = signed(
            &click(user, "countersign_approve", &first, hook, &durl),
            now_secs(),
        );
        assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
        let reply = double.wait_for(&format!("hook:{hook}"), 1).await.remove(0);
        assert!(
            reply["text"].as_str().unwrap().starts_with("Refused"),
            "{reply}"
        );
    }
    let (b, t, s) = signed(
        &click("UBOB", "countersign_approve", &first, "bob", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    assert_eq!(
        redeem(&gw, &first).await,
        params(),
        "the executor gets the real values"
    );

    // The second action: approved with changes in the modal Slack opens. The reviewer sees the
    // masked parameters, adds a new secret to one of them and leaves the others as shown.
    let second = submit(&gw).await;
    double.wait_for("chat.postMessage", 3).await;
    let (b, t, s) = signed(
        &click("UALICE", "countersign_modify", &second, "modify", &durl),
        now_secs(),
    );
    assert_eq!(post_signed(&gw, b, &t, &s).await.0, 200);
    let opened = double.wait_for("views.open", 1).await.remove(0);
    slack_sdk("blocks", &json!([opened["view"]["blocks"]]));
    let shown = opened["view"]["blocks"][0]["element"]["initial_value"]
        .as_str()
        .unwrap()
        .to_string();
    let mut edited: Value = serde_json::from_str(&shown).unwrap();
    assert!(
        edited["customer"]["email"]
            .as_str()
            .unwrap()
            .starts_with("[email:"),
        "the modal shows masked values: {shown}"
    );
    edited["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    let submission = json!({
        "type": "view_submission",
        "user": {"id": "UALICE"},
        "view": {
            "id": "V0201", "type": "modal", "callback_id": "countersign_modify",
            "private_metadata": second,
            "state": {"values": {
                "params": {"value": {"type": "plain_text_input", "value": edited.to_string()}},
                "comment": {"value": {"type": "plain_text_input",
                    "value": format!("bill {} instead", CANARIES[7])}},
            }},
        },
    });
    let (b, t, s) = signed(&submission, now_secs());
    assert_eq!(post_signed(&gw, b, &t, &s).await, (200, Value::Null));
    let mut want = params();
    want["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    assert_eq!(
        redeem(&gw, &second).await,
        want,
        "the executor gets the reviewer's change with the real values it left as shown"
    );

    // Every decision reached both channels.
    for action in [&first, &second] {
        until("the decided webhook", || {
            receiver
                .accepted()
                .values()
                .any(|(k, _)| *k == format!("{action}:decided"))
        })
        .await;
        until("the final Slack message", || {
            double.calls("chat.update").iter().any(|u| {
                let b = u["blocks"].to_string();
                b.contains(action.as_str()) && b.contains("Final state: approved")
            })
        })
        .await;
    }

    // What the channels got: masked, and the masking is visible (so the checks are not vacuous).
    let slack = double.raw.lock().unwrap().clone();
    for method in [
        "/api/chat.postMessage",
        "/api/chat.update",
        "/api/views.open",
        "/hooks/carol",
        "/hooks/nobody",
    ] {
        assert!(
            slack.iter().any(|(m, _)| m == method),
            "{method}: {slack:?}"
        );
    }
    for (method, body) in &slack {
        assert_clean(&format!("Slack's {method}"), body);
    }
    let posted: String = slack
        .iter()
        .filter(|(m, _)| m.starts_with("/api/chat."))
        .map(|(_, b)| b.as_str())
        .collect();
    for tag in ["[email:", "[card:", "[phone:", "[aws-access-key:"] {
        assert!(posted.contains(tag), "{tag} in {posted}");
    }
    let hooks = receiver.raw.lock().unwrap().clone();
    assert!(hooks.len() >= 6, "{hooks:?}");
    for body in &hooks {
        assert_clean("a webhook", body);
    }
    assert!(hooks.iter().any(|b| b.contains("[email:")), "{hooks:?}");

    // The operator's view of the outbox.
    let (code, out, err) = outbox_cli(&["list"], &config).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("webhook:ops"), "{out}");
    assert_clean("`outbox list`", &format!("{out}{err}"));
    let listed = tokio::process::Command::new(crate::cli::BIN)
        .args(["--output", "json", "outbox", "list", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(listed.status.success());
    assert_clean(
        "`outbox list --output json`",
        &String::from_utf8_lossy(&listed.stdout),
    );
    server.kill9().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("DEBUG"), "logging at debug level: {log}");
    assert_clean("the server's debug log", &log);
}

const TEAMS_POLICY: &str = r#"@id("canary") @effect("review") @approvers("group:sre") @reason("exports need an SRE")
@notify("teams:sre-approvals")
permit (principal, action == Action::"customer.export", resource);"#;

/// The Teams channel: the canaries' action posted as an Adaptive Card, refused to a reviewer
/// the policy does not name, approved with an `adaptiveCard/action` invoke; a second one asked
/// about (the question and the agent's answer carrying canaries, replied to the card) and
/// approved with changes carrying a new secret. No request body the Bot Connector double got
/// (sends, updates, replies, the ones it answered 429 or 503 too) and no invoke response shows
/// a canary; the executor gets the real values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_teams_and_the_executor_gets_real_values() {
    use crate::teams::{card_of, refused_code, Teams, BOB_OID, CAROL_OID};
    let t = Teams::start_configured(
        "app_password_env = \"COUNTERSIGN_TEST_TEAMS_PASSWORD\"",
        "[masking]\nfields = [\"params.customer.ssn\"]\n",
        Some(TEAMS_POLICY),
    )
    .await;
    let gw = &t.gw;
    let mut invokes = Vec::new();

    // The first action: carol (not an SRE) is refused, bob approves with a click.
    let first = submit(gw).await;
    let sent = t
        .double
        .wait_for("send", |s| s.to_string().contains(first.as_str()))
        .await;
    assert!(
        card_of(&sent).to_string().contains("[email:"),
        "the card shows masked values: {sent}"
    );
    let answer = t
        .click(CAROL_OID, "approve", json!({"action": first}))
        .await;
    assert_eq!(refused_code(&answer), "not_an_approver");
    invokes.push(answer.to_string());
    let answer = t.click(BOB_OID, "approve", json!({"action": first})).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    invokes.push(answer.to_string());
    assert_eq!(
        redeem(gw, &first).await,
        params(),
        "the executor gets the real values"
    );

    // The second action: bob asks (with a phone number), the agent answers (with an AWS key),
    // then bob approves with changes: the masked parameters shown, a new secret added.
    let second = submit(gw).await;
    let sent = t
        .double
        .wait_for("send", |s| s.to_string().contains(second.as_str()))
        .await;
    let answer = t
        .click(
            BOB_OID,
            "ask",
            json!({"action": second, "question": format!("is {} the customer's phone?", CANARIES[10])}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    invokes.push(answer.to_string());
    let (status, answered) = gw
        .post(
            "bot",
            &format!("/v1/actions/{second}/answer"),
            json!({"answer": format!("yes; the export runs as {}", CANARIES[0])}),
        )
        .await;
    assert!(status.is_success(), "{answered}");
    let reply = t.double.wait_for("reply", |_| true).await;
    assert!(
        reply["body"]["text"]
            .as_str()
            .unwrap()
            .contains("[aws-access-key:"),
        "{reply}"
    );
    let card = card_of(&sent);
    let modify = card["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Approve with changes")
        .unwrap()
        .clone();
    let shown = modify["card"]["body"][0]["value"].as_str().unwrap();
    let mut edited: Value = serde_json::from_str(shown).unwrap();
    assert!(
        edited["customer"]["email"]
            .as_str()
            .unwrap()
            .starts_with("[email:"),
        "the card's input shows masked values: {shown}"
    );
    edited["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    let answer = t
        .click(
            BOB_OID,
            "modify",
            json!({"action": second, "modify_params": edited.to_string(),
                   "modify_comment": format!("bill {} instead", CANARIES[7])}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    invokes.push(answer.to_string());
    let mut want = params();
    want["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    assert_eq!(
        redeem(gw, &second).await,
        want,
        "the executor gets the reviewer's change with the real values it left as shown"
    );

    // Both cards are rewritten in place with the final state.
    // The double names its nth accepted send `1:act{n}`.
    let activities: Vec<Value> = t
        .double
        .calls("send")
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let s = s.to_string();
            s.contains(first.as_str()) || s.contains(second.as_str())
        })
        .map(|(n, _)| json!(format!("1:act{}", n + 1)))
        .collect();
    assert_eq!(activities.len(), 2, "{activities:?}");
    until("the final cards", || {
        let updates = t.double.calls("update");
        activities.iter().all(|a| {
            updates
                .iter()
                .any(|u| u["activity"] == *a && u.to_string().contains("Final state"))
        })
    })
    .await;

    // What the Bot Connector and Teams got: masked, and the masking is visible.
    let raw = t.double.raw.lock().unwrap().clone();
    for route in ["send", "update", "reply"] {
        assert!(raw.iter().any(|(r, _)| r == route), "{route}: {raw:?}");
    }
    for (route, body) in &raw {
        assert_clean(&format!("the Bot Connector's {route}"), body);
    }
    for answer in &invokes {
        assert_clean("an invoke's answer", answer);
    }
    let all: String = raw.iter().map(|(_, b)| b.as_str()).collect();
    for tag in ["[email:", "[card:", "[phone:", "[aws-access-key:"] {
        assert!(all.contains(tag), "{tag} in {all}");
    }
}
