//! The evidence report: per control of SOC 2, ISO 27001:2022 Annex A and NIST 800-53, the counts
//! and sample entries that evidence it, with charts, anchored to a verified signed checkpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::entry::Entry;
use crate::html;
use crate::svg::{hbars, stacked_bars, PALETTE};

/// The checkpoint the report is anchored to, already verified by the caller.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The log's origin line.
    pub origin: String,
    /// Tree size the checkpoint commits to.
    pub tree_size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The signed note, as served at `/v1/audit/checkpoint`.
    pub note: String,
    /// The verifier key (`name+hash+key`).
    pub key: String,
}

/// Figures computed from a window of the log.
#[derive(Debug, Default, Clone)]
pub struct Evidence {
    /// First time in the window (RFC 3339), as asked.
    pub since: Option<String>,
    /// Last time in the window, as asked.
    pub until: Option<String>,
    /// Entries in the window.
    pub entries: u64,
    /// First and last index in the window.
    pub indexes: Option<(u64, u64)>,
    /// Entries by type.
    pub by_type: BTreeMap<String, u64>,
    /// Policy decisions by day: (allow, review, deny).
    pub by_day: BTreeMap<String, [u64; 3]>,
    /// Privileged (reviewed) actions by action name.
    pub privileged_by_action: BTreeMap<String, u64>,
    /// Approved reviews.
    pub approved: u64,
    /// Approved reviews by the number of distinct people who approved them.
    pub approvals_by_people: BTreeMap<usize, u64>,
    /// Approvals in which an approver was the requester or the human it acted for (must be 0).
    pub self_approved: u64,
    /// Reviews rejected by a reviewer.
    pub rejected: u64,
    /// Reviews that expired undecided.
    pub expired: u64,
    /// Actions withdrawn by their requester.
    pub cancelled: u64,
    /// Reviewer modifications (each a new digest).
    pub modified: u64,
    /// Questions asked by reviewers.
    pub clarifications: u64,
    /// Refused attempts by code.
    pub refused: BTreeMap<String, u64>,
    /// Grants issued and redeemed.
    pub grants: (u64, u64),
    /// Grants redeemed for reviewed actions with no `approved` entry before (must be 0 when the
    /// window starts before the actions did).
    pub redeemed_unapproved: u64,
    /// Results reported: succeeded, failed.
    pub results: (u64, u64),
    /// Milliseconds from review opened to verdict, per decided review.
    pub time_to_decision_ms: Vec<i64>,
    /// Configuration loads: (time, sha256).
    pub config_loads: Vec<(String, String)>,
    /// Policy loads: (time, hash, policies).
    pub policy_loads: Vec<(String, String, u64)>,
    /// Sample entries by topic (at most 3 each), for the controls.
    samples: BTreeMap<&'static str, Vec<Entry>>,
}

#[derive(Default)]
struct ActionState {
    requester: String,
    on_behalf_of: Option<String>,
    effect: String,
    opened_at: Option<i64>,
    approvers: BTreeSet<String>,
    approved: bool,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn duration(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

impl Evidence {
    /// Computes the figures over `entries` (oldest first).
    pub fn compute<'a>(
        entries: impl IntoIterator<Item = &'a Entry>,
        since: Option<String>,
        until: Option<String>,
    ) -> Evidence {
        let mut ev = Evidence {
            since,
            until,
            ..Evidence::default()
        };
        let mut actions: HashMap<String, ActionState> = HashMap::new();
        for e in entries {
            ev.entries += 1;
            ev.indexes = Some(match ev.indexes {
                None => (e.index, e.index),
                Some((first, _)) => (first, e.index),
            });
            *ev.by_type.entry(e.kind.clone()).or_default() += 1;
            let id = e.action_id.clone().unwrap_or_default();
            let topic: Option<&'static str> = match e.kind.as_str() {
                "submitted" => {
                    let effect = e.str("effect").unwrap_or_default().to_string();
                    let day = e.time.get(..10).unwrap_or_default().to_string();
                    let slot = match effect.as_str() {
                        "allow" => 0,
                        "review" => 1,
                        _ => 2,
                    };
                    ev.by_day.entry(day).or_default()[slot] += 1;
                    let action = e.spec("action").unwrap_or_default().to_string();
                    if effect == "review" {
                        *ev.privileged_by_action.entry(action).or_default() += 1;
                    }
                    actions.insert(
                        id,
                        ActionState {
                            requester: e.str("requester").unwrap_or_default().to_string(),
                            on_behalf_of: e.str("on_behalf_of").map(str::to_string),
                            effect: effect.clone(),
                            ..ActionState::default()
                        },
                    );
                    match effect.as_str() {
                        "review" => Some("privileged"),
                        "deny" => Some("denied"),
                        _ => Some("allowed"),
                    }
                }
                "review_opened" => {
                    if let Some(a) = actions.get_mut(&id) {
                        a.opened_at = Some(e.at_ms);
                    }
                    None
                }
                "voted" => {
                    let verdict = e.str("verdict").unwrap_or_default();
                    match verdict {
                        "modify" => ev.modified += 1,
                        "clarify" => ev.clarifications += 1,
                        _ => {}
                    }
                    if matches!(verdict, "approve" | "modify") {
                        if let (Some(a), Some(voter)) = (actions.get_mut(&id), &e.actor) {
                            a.approvers.insert(voter.clone());
                        }
                    }
                    (verdict == "modify").then_some("modified")
                }
                "approved" | "rejected" | "expired" => {
                    match e.kind.as_str() {
                        "approved" => ev.approved += 1,
                        "rejected" => ev.rejected += 1,
                        _ => ev.expired += 1,
                    }
                    if let Some(a) = actions.get_mut(&id) {
                        if let Some(opened) = a.opened_at {
                            ev.time_to_decision_ms.push(e.at_ms - opened);
                        }
                        if e.kind == "approved" {
                            a.approved = true;
                            *ev.approvals_by_people.entry(a.approvers.len()).or_default() += 1;
                            let own = a.approvers.contains(&a.requester)
                                || a.on_behalf_of
                                    .as_ref()
                                    .is_some_and(|h| a.approvers.contains(h));
                            ev.self_approved += u64::from(own);
                        }
                    }
                    match e.kind.as_str() {
                        "approved" => Some("approved"),
                        "rejected" => Some("denied"),
                        _ => None,
                    }
                }
                "cancelled" => {
                    ev.cancelled += 1;
                    None
                }
                "grant_issued" => {
                    ev.grants.0 += 1;
                    None
                }
                "grant_redeemed" => {
                    ev.grants.1 += 1;
                    if let Some(a) = actions.get(&id) {
                        if a.effect == "review" && !a.approved {
                            ev.redeemed_unapproved += 1;
                        }
                    }
                    Some("executed")
                }
                "result_reported" => {
                    if e.str("outcome") == Some("succeeded") {
                        ev.results.0 += 1;
                    } else {
                        ev.results.1 += 1;
                    }
                    Some("executed")
                }
                "refused" => {
                    let code = e.str("code").unwrap_or_default().to_string();
                    *ev.refused.entry(code.clone()).or_default() += 1;
                    Some(match code.as_str() {
                        "self_approval" => "self_approval",
                        "agents_cannot_approve" => "agent_vote",
                        _ => "refused",
                    })
                }
                "config_loaded" => {
                    ev.config_loads.push((
                        e.time.clone(),
                        e.str("sha256").unwrap_or_default().to_string(),
                    ));
                    Some("config")
                }
                "policy_loaded" => {
                    ev.policy_loads.push((
                        e.time.clone(),
                        e.str("hash").unwrap_or_default().to_string(),
                        e.event
                            .get("policies")
                            .and_then(serde_json::Value::as_u64)
                            .unwrap_or(0),
                    ));
                    Some("config")
                }
                _ => None,
            };
            if let Some(t) = topic {
                let list = ev.samples.entry(t).or_default();
                if list.len() < 3 {
                    list.push(e.clone());
                }
            }
        }
        ev.time_to_decision_ms.sort_unstable();
        ev
    }

    /// Decided reviews' time to decision at the `p`th percentile.
    pub fn ttd_percentile(&self, p: f64) -> Option<i64> {
        percentile(&self.time_to_decision_ms, p)
    }

    fn refused_code(&self, code: &str) -> u64 {
        self.refused.get(code).copied().unwrap_or(0)
    }

    fn decisions(&self) -> [u64; 3] {
        self.by_day.values().fold([0; 3], |mut acc, d| {
            for i in 0..3 {
                acc[i] += d[i];
            }
            acc
        })
    }

    fn multi_person(&self) -> u64 {
        self.approvals_by_people
            .iter()
            .filter(|(n, _)| **n >= 2)
            .map(|(_, c)| c)
            .sum()
    }
}

struct Control {
    framework: &'static str,
    id: &'static str,
    title: &'static str,
    evidence: String,
    samples: &'static [&'static str],
}

fn controls(ev: &Evidence) -> Vec<Control> {
    let [allow, review, deny] = ev.decisions();
    let self_blocked = ev.refused_code("self_approval");
    let agent_blocked = ev.refused_code("agents_cannot_approve");
    let refused_total: u64 = ev.refused.values().sum();
    let grant_refusals: u64 = ev
        .refused
        .iter()
        .filter(|(c, _)| c.starts_with("grant_"))
        .map(|(_, n)| n)
        .sum();
    let decided = ev.approved + ev.rejected;
    let p50 = ev.ttd_percentile(50.0).map_or("n/a".into(), duration);
    let p95 = ev.ttd_percentile(95.0).map_or("n/a".into(), duration);
    let loads = ev.config_loads.len() + ev.policy_loads.len();
    let separation = format!(
        "{self_blocked} self-approval attempt(s) and {agent_blocked} agent/service vote(s) were \
         refused; {} of {} approvals were made by someone other than the requester and the \
         human it acted for ({} self-approved).",
        ev.approved - ev.self_approved.min(ev.approved),
        ev.approved,
        ev.self_approved
    );
    let privileged = format!(
        "{review} privileged action(s) were held for human review ({decided} decided: {} approved, \
         {} rejected; {} expired undecided); {deny} forbidden action(s) denied by policy; {allow} \
         routine action(s) allowed.",
        ev.approved, ev.rejected, ev.expired
    );
    let change = format!(
        "{} approved change(s) ran through single-use grants ({} issued, {} redeemed; {} redeemed \
         without approval); {} reviewer modification(s), each a new digest re-checked by policy; \
         {grant_refusals} refused grant use(s) (reused, forged, expired or revoked).",
        ev.approved, ev.grants.0, ev.grants.1, ev.redeemed_unapproved, ev.modified
    );
    let logging = format!(
        "{} entries in this period, {} event types, each with index, RFC 3339 time, type, actor \
         and action id; hashed into an RFC 6962 Merkle tree.",
        ev.entries,
        ev.by_type.len()
    );
    let integrity = "Every entry is a leaf of an RFC 6962 Merkle tree; the tree head is signed \
        (Ed25519, C2SP signed note) at least every second; this report's figures were computed \
        only after the log verified against the checkpoint below. Votes name the digest they \
        applied to."
        .to_string();
    let config = format!(
        "{loads} configuration/policy load(s) recorded with their SHA-256 hashes; {change_count} \
         privileged change(s) approved before they ran.",
        change_count = ev.approved
    );
    vec![
        Control { framework: "SOC 2", id: "CC6.1", title: "Logical access security", evidence: format!("Every action an agent proposed was decided by policy as code before it ran. {privileged}"), samples: &["privileged", "denied"] },
        Control { framework: "SOC 2", id: "CC6.3", title: "Role-based access, least privilege", evidence: format!("Approvers are named by group in policy and checked at the moment of the vote. {separation}"), samples: &["approved", "self_approval"] },
        Control { framework: "SOC 2", id: "CC7.2", title: "Monitoring for anomalies", evidence: format!("{refused_total} refused attempt(s) that matter to security were logged; {} review(s) expired undecided.", ev.expired), samples: &["self_approval", "agent_vote", "refused"] },
        Control { framework: "SOC 2", id: "CC8.1", title: "Change management", evidence: change.clone(), samples: &["approved", "modified", "executed"] },
        Control { framework: "ISO 27001:2022", id: "A.5.15", title: "Access control", evidence: privileged.clone(), samples: &["privileged", "denied"] },
        Control { framework: "ISO 27001:2022", id: "A.5.18", title: "Access rights", evidence: format!("Rights to run a privileged action are granted per action, bound to its digest, single use and time-limited: {} grant(s) issued, {} redeemed, {grant_refusals} refused.", ev.grants.0, ev.grants.1), samples: &["approved", "executed"] },
        Control { framework: "ISO 27001:2022", id: "A.8.2", title: "Privileged access rights", evidence: format!("{review} privileged action(s) required a human countersignature. Median time to decision {p50}, 95th percentile {p95}."), samples: &["privileged", "approved"] },
        Control { framework: "ISO 27001:2022", id: "A.8.15", title: "Logging", evidence: logging.clone(), samples: &["privileged", "refused"] },
        Control { framework: "ISO 27001:2022", id: "A.8.32", title: "Change management", evidence: format!("{change} {config}"), samples: &["approved", "config"] },
        Control { framework: "NIST 800-53", id: "AC-3(2)", title: "Dual authorization", evidence: format!("{} of {} approval(s) had two or more distinct approvers (quorum counts distinct people, once each).", ev.multi_person(), ev.approved), samples: &["approved"] },
        Control { framework: "NIST 800-53", id: "AC-5", title: "Separation of duties", evidence: separation.clone(), samples: &["self_approval", "agent_vote"] },
        Control { framework: "NIST 800-53", id: "AC-6(9)", title: "Log use of privileged functions", evidence: format!("Every privileged action was logged from request to result: {review} reviewed, {} result(s) reported ({} succeeded, {} failed).", ev.results.0 + ev.results.1, ev.results.0, ev.results.1), samples: &["privileged", "executed"] },
        Control { framework: "NIST 800-53", id: "AU-2", title: "Event logging", evidence: format!("Logged event types: {}.", ev.by_type.iter().map(|(k, n)| format!("{k} ({n})")).collect::<Vec<_>>().join(", ")), samples: &["privileged"] },
        Control { framework: "NIST 800-53", id: "AU-3", title: "Content of audit records", evidence: "Each entry records what happened (type and event: action, resource, environment, parameters, digest), when (RFC 3339), who (actor), to which action (id), and the outcome (effect, verdict, result).".to_string(), samples: &["privileged"] },
        Control { framework: "NIST 800-53", id: "AU-9(3)", title: "Cryptographic protection of audit information", evidence: integrity.clone(), samples: &[] },
        Control { framework: "NIST 800-53", id: "AU-10", title: "Non-repudiation", evidence: format!("{integrity} Votes, redemptions and results name the authenticated identity that made them."), samples: &["approved"] },
        Control { framework: "NIST 800-53", id: "CM-3", title: "Configuration change control", evidence: config, samples: &["config", "approved"] },
    ]
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}\
.card b{display:block;font-size:1.6em}table{border-collapse:collapse;width:100%}\
td,th{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}th{background:#f4f4f4}\
pre{white-space:pre-wrap;word-break:break-all;background:#f8f8f8;padding:8px;font-size:12px}\
.chart{width:100%;height:auto;margin:8px 0}.ok{color:#007a3d}.bad{color:#b00020;font-weight:bold}\
@media print{h2{page-break-before:auto}details{display:block}}";

fn sample_line(e: &Entry) -> String {
    let what = match (e.spec("action"), e.spec("resource")) {
        (Some(a), Some(r)) => format!(" {a} on {r}"),
        _ => String::new(),
    };
    let detail = match e.kind.as_str() {
        "voted" => format!(" verdict {}", e.str("verdict").unwrap_or_default()),
        "refused" => format!(
            " {} refused: {}",
            e.str("attempted").unwrap_or_default(),
            e.str("code").unwrap_or_default()
        ),
        "submitted" => match e.str("justification").filter(|j| !j.is_empty()) {
            Some(why) => format!(
                " effect {}, because: {why}",
                e.str("effect").unwrap_or_default()
            ),
            None => format!(" effect {}", e.str("effect").unwrap_or_default()),
        },
        _ => String::new(),
    };
    format!(
        "<a href=\"#e{i}\">#{i}</a> {t} <code>{k}</code> by {a}{w}{d}",
        i = e.index,
        t = html(&e.time),
        k = html(&e.kind),
        a = html(e.actor.as_deref().unwrap_or("the gateway")),
        w = html(&what),
        d = html(&detail)
    )
}

/// Renders the report as one self-contained HTML page.
pub fn render_html(ev: &Evidence, anchor: &Anchor) -> String {
    let [allow, review, deny] = ev.decisions();
    let window = format!(
        "{} to {}",
        ev.since.as_deref().unwrap_or("the beginning"),
        ev.until.as_deref().unwrap_or("the latest checkpoint")
    );
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>countersign evidence report — {}</title><style>{STYLE}</style></head><body>\
         <h1>Evidence report</h1><p>Log <code>{}</code>, period {}. Entries {} (indexes {}). \
         Anchored to a signed checkpoint of tree size {} that this log verified against when the \
         report was made.</p>",
        html(&anchor.origin),
        html(&anchor.origin),
        html(&window),
        ev.entries,
        ev.indexes
            .map_or("none".into(), |(a, b)| format!("{a}–{b}")),
        anchor.tree_size
    );
    let p50 = ev.ttd_percentile(50.0).map_or("n/a".into(), duration);
    let p95 = ev.ttd_percentile(95.0).map_or("n/a".into(), duration);
    let self_class = if ev.self_approved == 0 { "ok" } else { "bad" };
    let unapproved_class = if ev.redeemed_unapproved == 0 {
        "ok"
    } else {
        "bad"
    };
    out += "<h2>Summary</h2><div class=\"cards\">";
    for (label, value, class) in [
        (
            "actions decided by policy",
            (allow + review + deny).to_string(),
            "",
        ),
        ("privileged, held for review", review.to_string(), ""),
        ("approved", ev.approved.to_string(), ""),
        (
            "denied (policy + reviewers)",
            (deny + ev.rejected).to_string(),
            "",
        ),
        (
            "self-approvals blocked",
            ev.refused_code("self_approval").to_string(),
            "",
        ),
        (
            "agent votes blocked",
            ev.refused_code("agents_cannot_approve").to_string(),
            "",
        ),
        (
            "approved by their requester",
            ev.self_approved.to_string(),
            self_class,
        ),
        (
            "run without approval",
            ev.redeemed_unapproved.to_string(),
            unapproved_class,
        ),
        ("time to decision p50", p50.clone(), ""),
        ("time to decision p95", p95.clone(), ""),
    ] {
        out += &format!(
            "<div class=\"card\"><b class=\"{class}\">{}</b>{}</div>",
            html(&value),
            html(label)
        );
    }
    out += "</div><h2>Charts</h2>";
    let days: Vec<String> = ev.by_day.keys().cloned().collect();
    let series = [
        ("allowed", ev.by_day.values().map(|d| d[0]).collect()),
        (
            "held for review",
            ev.by_day.values().map(|d| d[1]).collect(),
        ),
        ("denied", ev.by_day.values().map(|d| d[2]).collect()),
    ];
    out += &stacked_bars("Policy decisions per day", &days, &series);
    let buckets: [(i64, &str); 7] = [
        (60_000, "< 1 min"),
        (300_000, "1–5 min"),
        (900_000, "5–15 min"),
        (3_600_000, "15–60 min"),
        (14_400_000, "1–4 h"),
        (86_400_000, "4–24 h"),
        (i64::MAX, "> 1 day"),
    ];
    let mut hist = vec![0u64; buckets.len()];
    for ms in &ev.time_to_decision_ms {
        if let Some(i) = buckets.iter().position(|(lim, _)| ms < lim) {
            hist[i] += 1;
        }
    }
    let rows: Vec<(String, u64)> = buckets
        .iter()
        .zip(hist)
        .map(|((_, l), n)| (l.to_string(), n))
        .collect();
    out += &hbars("Time from review opened to decision", &rows, PALETTE[0]);
    let refused: Vec<(String, u64)> = ev.refused.iter().map(|(k, v)| (k.clone(), *v)).collect();
    out += &hbars("Refused attempts by reason", &refused, PALETTE[2]);
    let people: Vec<(String, u64)> = ev
        .approvals_by_people
        .iter()
        .map(|(n, c)| (format!("{n} distinct approver(s)"), *c))
        .collect();
    out += &hbars(
        "Approvals by number of distinct approvers",
        &people,
        PALETTE[3],
    );
    let privileged: Vec<(String, u64)> = ev
        .privileged_by_action
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    out += &hbars("Privileged actions by action", &privileged, PALETTE[1]);

    out += "<h2>Controls</h2><table><tr><th>Framework</th><th>Control</th><th>Evidence</th>\
            <th>Sample entries</th></tr>";
    for c in controls(ev) {
        let samples: Vec<String> = c
            .samples
            .iter()
            .flat_map(|t| ev.samples.get(t).into_iter().flatten().take(2))
            .map(sample_line)
            .collect();
        out += &format!(
            "<tr id=\"{id}\"><td>{f}</td><td><b>{id}</b><br>{t}</td><td>{e}</td><td>{s}</td></tr>",
            id = html(c.id),
            f = html(c.framework),
            t = html(c.title),
            e = html(&c.evidence),
            s = if samples.is_empty() {
                "see the checkpoint below".into()
            } else {
                samples.join("<br>")
            }
        );
    }
    out += "</table>";

    out += "<h2>Configuration and policy loads</h2><table><tr><th>Time</th><th>What</th><th>SHA-256</th></tr>";
    for (t, h) in &ev.config_loads {
        out += &format!(
            "<tr><td>{}</td><td>configuration</td><td><code>{}</code></td></tr>",
            html(t),
            html(h)
        );
    }
    for (t, h, n) in &ev.policy_loads {
        out += &format!(
            "<tr><td>{}</td><td>policy set ({n} policies)</td><td><code>{}</code></td></tr>",
            html(t),
            html(h)
        );
    }
    out += "</table><h2>Sample entries</h2><p>Each is the exact canonical JSON hashed into the \
            log; check any with <code>GET /v1/audit/proof/inclusion</code> or an exported \
            bundle.</p>";
    let mut shown = BTreeSet::new();
    for list in ev.samples.values() {
        for e in list {
            if shown.insert(e.index) {
                out += &format!(
                    "<details id=\"e{i}\"><summary>#{i} {k}</summary><pre>{b}</pre></details>",
                    i = e.index,
                    k = html(&e.kind),
                    b = html(&String::from_utf8_lossy(&e.raw))
                );
            }
        }
    }
    out += &format!(
        "<h2>Anchor</h2><p>Tree size {}, root <code>{}</code>. Verify offline with \
         <code>countersign audit verify BUNDLE --key {}</code>.</p><pre>{}</pre>",
        anchor.tree_size,
        html(&anchor.root),
        html(&anchor.key),
        html(&anchor.note)
    );
    out += "</body></html>\n";
    out
}
