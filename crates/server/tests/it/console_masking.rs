//! The masking canary over the web console (#17): actions carrying the canaries (the same corpus
//! as the CLI's canary test, `crates/cli/tests/it/canaries.rs`) in their resource, parameters
//! and justification are read, asked about, approved and approved with changes carrying a new
//! secret in the console. Every page a reviewer reads (the queue, the action pages before and
//! after the decisions, the history, the audit page, its export downloads and each entry's
//! proof) and the event
//! stream show no canary in any common encoding, while the executor's redeemed grant carries the
//! real values.

use std::sync::{Arc, Mutex};

use base64::Engine;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::canaries::{assert_clean, params, CANARIES, REVIEWER_CANARY};
use crate::console::{csrf, digest, Browser, Console};

/// The text of the `params` editor, as the reviewer's browser has it.
fn params_editor(body: &str) -> String {
    let at = body
        .find("id=\"params-editor\"")
        .expect("the params editor");
    let rest = &body[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    rest[..rest.find("</textarea>").unwrap()]
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn redeem(c: &Console, id: &str) -> Value {
    let view: Value = c
        .http
        .get(format!("{}/v1/actions/{id}", c.url))
        .bearer_auth("tok-bot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "approved", "{view}");
    let redeemed: Value = c
        .http
        .post(format!("{}/v1/grants/redeem", c.url))
        .bearer_auth("tok-bot")
        .json(&json!({"token": view["grant"]["token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    redeemed["params"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_a_console_page_or_its_event_stream() {
    let c = Console::start("\n[masking]\nfields = [\"params.customer.ssn\"]\n").await;
    let action = || {
        json!({
            "action": "deploy",
            "resource": format!("crm://customers/{}", CANARIES[7]),
            "justification": format!("customer {} asked, card {}", CANARIES[7], CANARIES[8]),
            "params": params(),
        })
    };
    let changed = c.submit(action()).await;
    let approved = c.submit(action()).await;

    // Bob keeps the live stream open while alice works.
    let mut bob = Browser::new();
    bob.sign_in(&format!("{}/console", c.url), "bob").await;
    let mut stream = bob
        .http
        .get(format!("{}/console/events", c.url))
        .header(
            header::COOKIE,
            format!("cs_session={}", bob.cookies["cs_session"]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let events = Arc::new(Mutex::new(String::new()));
    let reader = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                events
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        })
    };

    let mut alice = Browser::new();
    let queue = alice.sign_in(&format!("{}/console", c.url), "alice").await;
    assert!(queue.body.contains(&changed), "{}", queue.body);
    assert_clean("the queue", &queue.body);
    let page = alice
        .get(&format!("{}/console/actions/{changed}", c.url))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_clean("the action page", &page.body);
    assert!(page.body.contains("[email:"), "masked, not left out");

    // A question carrying a phone number, answered with an AWS key.
    let token = csrf(&page.body);
    let seen = digest(&page.body);
    let vote = |id: &str| format!("{}/console/actions/{id}/vote", c.url);
    let question = format!("is {} the customer's phone?", CANARIES[10]);
    let asked = alice
        .post(
            &vote(&changed),
            &[
                ("csrf", &token),
                ("digest", &seen),
                ("decision", "clarify"),
                ("question", &question),
            ],
            None,
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert_clean("the page after a question", &asked.body);
    let answered = c
        .http
        .post(format!("{}/v1/actions/{changed}/answer", c.url))
        .bearer_auth("tok-bot")
        .json(&json!({"answer": format!("yes; it runs as {}", CANARIES[0])}))
        .send()
        .await
        .unwrap();
    assert!(answered.status().is_success());

    // Approve with changes: the reviewer edits the masked parameters the page shows, adding a
    // new secret to one value and leaving the others as shown.
    let page = alice
        .get(&format!("{}/console/actions/{changed}", c.url))
        .await;
    assert_clean("the action page with its answer", &page.body);
    let mut edited: Value = serde_json::from_str(&params_editor(&page.body)).unwrap();
    assert!(
        edited["customer"]["email"]
            .as_str()
            .unwrap()
            .starts_with("[email:"),
        "{edited}"
    );
    edited["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    let comment = format!("bill {} instead", CANARIES[7]);
    let done = alice
        .post(
            &vote(&changed),
            &[
                ("csrf", &token),
                ("digest", &seen),
                ("decision", "modify"),
                ("params", &edited.to_string()),
                ("comment", &comment),
            ],
            Some(&c.url),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("status-approved"), "{}", done.body);
    assert!(done.body.contains("id=\"diff\""), "{}", done.body);
    assert_clean("the page after approving with changes", &done.body);
    let mut want = params();
    want["note"] = json!(format!("charge with {REVIEWER_CANARY} instead"));
    assert_eq!(
        redeem(&c, &changed).await,
        want,
        "the executor gets the reviewer's change with the real values it left as shown"
    );

    // A plain approval.
    let done = alice
        .post(
            &vote(&approved),
            &[("csrf", &token), ("digest", &seen), ("decision", "approve")],
            Some(&c.url),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_clean("the page after approving", &done.body);
    assert_eq!(redeem(&c, &approved).await, params());

    // Every page, after the decisions and the redemptions.
    c.gateway
        .audit()
        .checkpoint_if_grown(c.gateway.current_time())
        .await
        .unwrap();
    for path in [
        "/console".to_string(),
        format!("/console/actions/{changed}"),
        format!("/console/actions/{approved}"),
        "/console/history".to_string(),
        "/console/history?status=approved&reviewer=alice".to_string(),
        "/console/audit".to_string(),
        "/console/audit?start=0".to_string(),
        "/console/audit/export?format=jsonl".to_string(),
        "/console/audit/export?format=csv".to_string(),
        "/console/audit/export?format=ocsf".to_string(),
    ] {
        let page = alice.get(&format!("{}{path}", c.url)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert_clean(&path, &page.body);
    }
    let size = c.gateway.audit().size().await.unwrap();
    assert!(size >= 8, "{size}");
    for index in 0..size {
        let proof = alice
            .get(&format!("{}/console/audit/proof?index={index}", c.url))
            .await;
        assert_eq!(proof.status, StatusCode::OK, "{}", proof.body);
        assert_clean("an entry's proof", &proof.body);
        let v: Value = serde_json::from_str(&proof.body).unwrap();
        let entry = base64::engine::general_purpose::STANDARD
            .decode(v["entry"].as_str().unwrap())
            .unwrap();
        assert_clean("an entry's bytes", &String::from_utf8_lossy(&entry));
    }

    // The event stream told bob of the changes, and only that.
    reader.abort();
    let events = events.lock().unwrap().clone();
    assert!(events.contains("event: change"), "{events}");
    assert_clean("the event stream", &events);
}
