//! Exporters over a synthetic log that exercises every entry type the gateway writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_evidence::{render_html, to_ocsf, write_csv, write_ocsf, Anchor, Entry, Evidence};
use serde_json::{json, Value};

const DAY1: i64 = 1_795_000_000_000;

fn entry(
    index: u64,
    at_ms: i64,
    kind: &str,
    actor: Option<&str>,
    action: Option<&str>,
    event: Value,
) -> Entry {
    let body = json!({
        "action_id": action, "actor": actor, "event": event, "index": index,
        "time": time::OffsetDateTime::from_unix_timestamp(at_ms / 1000).unwrap()
            .format(&time::format_description::well_known::Rfc3339).unwrap(),
        "type": kind,
    });
    Entry::parse(index, at_ms, serde_jcs::to_vec(&body).unwrap()).unwrap()
}

fn spec(action: &str, resource: &str) -> Value {
    json!({"action": action, "resource": resource, "environment": "production", "params": {"table": "customers"}})
}

/// A reviewed export approved by two people and run; a denied action; an allowed read; refused
/// self-approval and agent vote; a rejected action with a hostile comment; an expired review.
fn log() -> Vec<Entry> {
    let mut es = Vec::new();
    let mut push = |at: i64, kind: &str, actor: Option<&str>, action: Option<&str>, ev: Value| {
        let i = es.len() as u64;
        es.push(entry(i, at, kind, actor, action, ev));
    };
    push(
        DAY1,
        "config_loaded",
        None,
        None,
        json!({"sha256": "c".repeat(64), "identities": ["alice (human)"]}),
    );
    push(
        DAY1,
        "policy_loaded",
        None,
        None,
        json!({"hash": "p".repeat(64), "policies": 7}),
    );
    push(
        DAY1 + 1_000,
        "submitted",
        Some("bot"),
        Some("a1"),
        json!({"requester": "bot", "on_behalf_of": "carol", "justification": "=monthly, \"report\"", "digest": "sha256:aa", "spec": spec("db.export", "pg://prod/customers"), "effect": "review", "policies": ["p1"], "reason": null}),
    );
    push(
        DAY1 + 1_000,
        "review_opened",
        None,
        Some("a1"),
        json!({"approvers": [["group:dba"]], "quorum": [2], "expires_at": DAY1 + 900_000}),
    );
    push(
        DAY1 + 5_000,
        "refused",
        Some("carol"),
        Some("a1"),
        json!({"by": "carol", "attempted": "vote", "code": "self_approval"}),
    );
    push(
        DAY1 + 6_000,
        "refused",
        Some("ci"),
        Some("a1"),
        json!({"by": "ci", "attempted": "vote", "code": "agents_cannot_approve"}),
    );
    push(
        DAY1 + 60_000,
        "voted",
        Some("alice"),
        Some("a1"),
        json!({"voter": "alice", "verdict": "approve", "digest": "sha256:aa", "comment": "=cmd|' /C calc'!A0"}),
    );
    push(
        DAY1 + 120_000,
        "voted",
        Some("bob"),
        Some("a1"),
        json!({"voter": "bob", "verdict": "approve", "digest": "sha256:aa", "comment": null}),
    );
    push(
        DAY1 + 120_000,
        "approved",
        None,
        Some("a1"),
        json!({"digest": "sha256:aa"}),
    );
    push(
        DAY1 + 120_000,
        "grant_issued",
        None,
        Some("a1"),
        json!({"jti": "g1", "digest": "sha256:aa", "expires_at": DAY1 + 420_000}),
    );
    push(
        DAY1 + 130_000,
        "grant_redeemed",
        Some("bot"),
        Some("a1"),
        json!({"jti": "g1", "by": "bot"}),
    );
    push(
        DAY1 + 140_000,
        "result_reported",
        Some("bot"),
        Some("a1"),
        json!({"outcome": "succeeded", "by": "bot"}),
    );
    push(
        DAY1 + 86_400_000,
        "submitted",
        Some("bot"),
        Some("a2"),
        json!({"requester": "bot", "on_behalf_of": null, "digest": "sha256:bb", "spec": spec("iam.grant", "aws://iam/admin"), "effect": "deny", "policies": ["f1"], "reason": "never in prod"}),
    );
    push(
        DAY1 + 86_400_000,
        "submitted",
        Some("bot"),
        Some("a3"),
        json!({"requester": "bot", "on_behalf_of": null, "digest": "sha256:cc", "spec": spec("logs.read", "k8s://prod"), "effect": "allow", "policies": ["r1"], "reason": null}),
    );
    push(
        DAY1 + 86_401_000,
        "submitted",
        Some("bot"),
        Some("a4"),
        json!({"requester": "bot", "on_behalf_of": null, "digest": "sha256:dd", "spec": spec("kubectl.delete", "k8s://prod/<script>alert(1)</script>"), "effect": "review", "policies": ["p2"], "reason": null}),
    );
    push(
        DAY1 + 86_401_000,
        "review_opened",
        None,
        Some("a4"),
        json!({"approvers": [["group:sre"]], "quorum": [1], "expires_at": DAY1 + 87_301_000}),
    );
    push(
        DAY1 + 86_701_000,
        "voted",
        Some("alice"),
        Some("a4"),
        json!({"voter": "alice", "verdict": "deny", "digest": "sha256:dd", "comment": "<script>alert(1)</script>"}),
    );
    push(
        DAY1 + 86_701_000,
        "rejected",
        Some("alice"),
        Some("a4"),
        json!({"by": "alice"}),
    );
    push(
        DAY1 + 86_402_000,
        "submitted",
        Some("bot"),
        Some("a5"),
        json!({"requester": "bot", "on_behalf_of": null, "digest": "sha256:ee", "spec": spec("terraform.apply", "tf://prod"), "effect": "review", "policies": ["p3"], "reason": null}),
    );
    push(
        DAY1 + 86_402_000,
        "review_opened",
        None,
        Some("a5"),
        json!({"approvers": [["group:sre"]], "quorum": [1], "expires_at": DAY1 + 90_002_000}),
    );
    push(DAY1 + 90_002_000, "expired", None, Some("a5"), json!({}));
    push(
        DAY1 + 90_003_000,
        "refused",
        Some("bot"),
        None,
        json!({"by": "bot", "attempted": "redeem", "code": "grant_invalid"}),
    );
    es
}

#[test]
fn evidence_counts_what_each_control_needs() {
    let es = log();
    let ev = Evidence::compute(&es, None, None);
    assert_eq!(ev.entries, es.len() as u64);
    assert_eq!(ev.approved, 1);
    assert_eq!(ev.rejected, 1);
    assert_eq!(ev.expired, 1);
    assert_eq!(ev.self_approved, 0);
    assert_eq!(ev.redeemed_unapproved, 0);
    assert_eq!(
        ev.approvals_by_people.get(&2),
        Some(&1),
        "two distinct approvers"
    );
    assert_eq!(ev.refused.get("self_approval"), Some(&1));
    assert_eq!(ev.refused.get("agents_cannot_approve"), Some(&1));
    assert_eq!(ev.refused.get("grant_invalid"), Some(&1));
    assert_eq!(ev.grants, (1, 1));
    assert_eq!(ev.results, (1, 0));
    assert_eq!(ev.by_day.len(), 2);
    assert_eq!(
        ev.by_day.values().map(|d| d[2]).sum::<u64>(),
        1,
        "one policy denial"
    );
    // a1 decided after 119 s, a4 after 300 s, a5 expired after 3600 s.
    assert_eq!(ev.time_to_decision_ms, vec![119_000, 300_000, 3_600_000]);
    assert_eq!(ev.ttd_percentile(50.0), Some(300_000));
    assert_eq!(ev.config_loads.len(), 1);
    assert_eq!(ev.policy_loads[0].2, 7);
}

#[test]
fn evidence_report_names_every_control_escapes_input_and_draws_charts() {
    let es = log();
    let ev = Evidence::compute(&es, Some("2026-11-19T00:00:00Z".into()), None);
    let anchor = Anchor {
        origin: "countersign.local/audit".into(),
        tree_size: 22,
        root: "cm9vdA==".into(),
        note: "countersign.local/audit\n22\ncm9vdA==\n\n— countersign.local/audit abc=\n".into(),
        key: "countersign.local/audit+01234567+AAAA".into(),
    };
    let page = render_html(&ev, &anchor);
    // A submission's sample names why it was asked for (escaped: the requester wrote it).
    assert!(
        page.contains("effect review, because: =monthly, &quot;report&quot;"),
        "{page}"
    );
    for control in [
        "CC6.1", "CC6.3", "CC7.2", "CC8.1", "A.5.15", "A.5.18", "A.8.2", "A.8.15", "A.8.32",
        "AC-3(2)", "AC-5", "AC-6(9)", "AU-2", "AU-3", "AU-9(3)", "AU-10", "CM-3",
    ] {
        assert!(
            page.contains(&format!("<tr id=\"{control}\">")),
            "{control} missing"
        );
    }
    assert!(page.matches("<svg").count() >= 4, "charts are inline SVG");
    assert!(!page.contains("<script>"), "entry text is escaped");
    assert!(page.contains("&lt;script&gt;"));
    assert!(page.contains("1 of 1 approval(s) had two or more distinct approvers"));
    assert!(page.contains("1 self-approval attempt(s) and 1 agent/service vote(s) were refused"));
    assert!(page.contains("Tree size 22"));
    assert!(page.contains("countersign.local/audit+01234567+AAAA"));
    assert!(
        !page.contains("http://") || page.contains("http://www.w3.org/2000/svg"),
        "no external resources"
    );
}

#[test]
fn csv_has_one_row_per_entry_with_context_and_defused_formulas() {
    let es = log();
    let mut out = Vec::new();
    assert_eq!(write_csv(&es, &mut out).unwrap(), es.len());
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), es.len() + 1);
    assert!(rows[0].starts_with("index,time,type,action_id,actor,action,resource,environment"));
    // The vote row repeats the action's name and resource from its submission.
    let vote = rows.iter().find(|r| r.starts_with("6,")).unwrap();
    assert!(
        vote.contains(
            ",db.export,pg://prod/customers,production,bot,\"'=monthly, \"\"report\"\"\",sha256:aa,approve,"
        ),
        "{vote}"
    );
    // The reviewer's comment cannot run as a spreadsheet formula.
    assert!(vote.contains("'=cmd|"), "{vote}");
    assert!(!vote.contains(",=cmd"), "{vote}");
}

#[test]
fn ocsf_events_carry_their_class_required_fields() {
    let es = log();
    let mut out = Vec::new();
    write_ocsf(&es, "countersign.local/audit", &mut out).unwrap();
    let events: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), es.len());
    for (e, src) in events.iter().zip(&es) {
        let class = e["class_uid"].as_u64().unwrap();
        let activity = e["activity_id"].as_u64().unwrap();
        assert_eq!(e["type_uid"].as_u64().unwrap(), class * 100 + activity);
        assert_eq!(e["category_uid"].as_u64().unwrap(), class / 1000);
        assert_eq!(e["time"].as_i64().unwrap(), src.at_ms);
        for field in ["severity_id", "status_id", "metadata"] {
            assert!(!e[field].is_null(), "{field} in {e}");
        }
        assert_eq!(e["metadata"]["version"], "1.5.0");
        assert_eq!(e["metadata"]["product"]["name"], "countersign");
        assert_eq!(e["metadata"]["sequence"].as_u64().unwrap(), src.index);
        assert_eq!(e["unmapped"]["type"], src.kind.as_str());
        match class {
            6003 => {
                for field in ["actor", "api", "src_endpoint"] {
                    assert!(e[field].is_object(), "API Activity needs {field}: {e}");
                }
            }
            3003 => {
                assert!(e["user"]["uid"].is_string(), "{e}");
                assert!(
                    e["privileges"].as_array().is_some_and(|p| !p.is_empty()),
                    "{e}"
                );
            }
            other => panic!("unexpected class {other}"),
        }
    }
    let approved = &events[8];
    assert_eq!(approved["class_uid"], 3003);
    assert_eq!(
        approved["user"]["uid"], "bot",
        "the requester was given the privilege"
    );
    assert!(approved["privileges"][0]
        .as_str()
        .unwrap()
        .contains("db.export on pg://prod/customers"));
    let refused = &events[4];
    assert_eq!(
        (
            refused["status_id"].as_u64(),
            refused["severity_id"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(refused["status_code"], "self_approval");
    assert_eq!(refused["actor"]["user"]["uid"], "carol");
    let denied = &events[12];
    assert_eq!(
        (denied["activity_id"].as_u64(), denied["status_id"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(denied["status_detail"], "never in prod");
    assert_eq!(
        denied["resources"][0]["labels"][0],
        "environment:production"
    );
    // Standalone mapping of one entry agrees on the class.
    assert_eq!(to_ocsf(&es[2], "o")["class_uid"], 6003);
}
