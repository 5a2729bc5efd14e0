//! AWS IAM policy documents (`policy_document`, JSON or a string of JSON): wildcard actions or
//! resources, `iam:PassRole`, privilege-escalation actions, administrator access.

use countersign_core::Risk;
use serde_json::{Map, Value};

use crate::{names, Findings};

/// Actions that let their holder give themselves more (after Rhino Security Labs' list of AWS
/// privilege-escalation methods).
const ESCALATION: &[&str] = &[
    "iam:createpolicyversion",
    "iam:setdefaultpolicyversion",
    "iam:attachuserpolicy",
    "iam:attachgrouppolicy",
    "iam:attachrolepolicy",
    "iam:putuserpolicy",
    "iam:putgrouppolicy",
    "iam:putrolepolicy",
    "iam:createaccesskey",
    "iam:createloginprofile",
    "iam:updateloginprofile",
    "iam:addusertogroup",
    "iam:updateassumerolepolicy",
    "iam:createuser",
    "iam:createrole",
    "iam:putuserpermissionsboundary",
    "iam:deleteuserpermissionsboundary",
    "iam:putrolepermissionsboundary",
    "iam:deleterolepermissionsboundary",
    "lambda:updatefunctioncode",
    "lambda:createfunction",
    "glue:updatedevendpoint",
    "cloudformation:createstack",
    "sts:assumerole",
];

/// Most actions or resources one document is read for.
const MAX_ITEMS: usize = 10_000;

pub(crate) fn run(value: &Value, _params: &Map<String, Value>, f: &mut Findings) {
    let Some(doc) = crate::document(value) else {
        f.flag(
            Risk::High,
            "iam:unparsed",
            "the policy document is not JSON; treated as high risk",
        );
        return;
    };
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(s)) => s.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => {
            f.flag(
                Risk::High,
                "iam:unparsed",
                "the policy document has no `Statement`; treated as high risk",
            );
            return;
        }
    };
    f.tag(Risk::Medium, "iam:policy");
    let mut allowed = 0usize;
    let mut escalations: Vec<String> = Vec::new();
    for st in statements {
        // A missing Effect is read as Allow: the safe side for a reviewer.
        if st.get("Effect").and_then(Value::as_str) == Some("Deny") {
            continue;
        }
        allowed += 1;
        let actions = strings(st.get("Action"));
        let resources = strings(st.get("Resource"));
        if st.get("NotAction").is_some() {
            f.flag(
                Risk::Critical,
                "iam:wildcard",
                "allows every action but those listed (NotAction)",
            );
            f.tag(Risk::Critical, "iam:not-action");
        }
        if st.get("NotResource").is_some() {
            f.flag(
                Risk::High,
                "iam:wildcard",
                "allows every resource but those listed (NotResource)",
            );
        }
        let all_resources = resources.contains(&"*");
        if all_resources {
            f.flag(
                Risk::High,
                "iam:wildcard",
                "applies to every resource (`*`)",
            );
            f.tag(Risk::High, "iam:wildcard-resource");
        }
        for action in &actions {
            let lower = action.to_ascii_lowercase();
            if lower == "*" || lower == "*:*" {
                f.flag(
                    Risk::Critical,
                    "iam:admin",
                    "allows every action on every service (`*`)",
                );
                f.tag(Risk::Critical, "iam:wildcard");
            } else if lower.contains('*') || lower.contains('?') {
                f.flag(
                    Risk::High,
                    "iam:wildcard",
                    format!("allows a wildcard action: {action}"),
                );
                f.tag(Risk::High, "iam:wildcard-action");
            }
            if glob(&lower, "iam:passrole") {
                f.flag(
                    if all_resources {
                        Risk::Critical
                    } else {
                        Risk::High
                    },
                    "iam:passrole",
                    if all_resources {
                        "may pass any role to a service (iam:PassRole on `*`)"
                    } else {
                        "may pass roles to a service (iam:PassRole)"
                    },
                );
            }
            for e in ESCALATION {
                if glob(&lower, e) && !escalations.iter().any(|x| x == e) {
                    escalations.push((*e).to_string());
                }
            }
        }
    }
    if !escalations.is_empty() {
        f.flag(
            Risk::Critical,
            "iam:privesc",
            format!("allows privilege escalation: {}", names(&escalations)),
        );
    }
    if mentions_admin(&doc) {
        f.flag(
            Risk::Critical,
            "iam:admin",
            "refers to the AdministratorAccess policy",
        );
    }
    f.say(format!(
        "allows {}",
        crate::count(allowed, "statement", "statements")
    ));
}

/// A string or a list of strings (at most [`MAX_ITEMS`]).
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().take(MAX_ITEMS).filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn mentions_admin(v: &Value) -> bool {
    fn walk(v: &Value, budget: &mut usize) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match v {
            Value::String(s) => s.contains("AdministratorAccess"),
            Value::Array(a) => a.iter().any(|x| walk(x, budget)),
            Value::Object(m) => m.values().any(|x| walk(x, budget)),
            _ => false,
        }
    }
    walk(v, &mut 100_000)
}

/// Whether the IAM pattern `pattern` (`*` any run, `?` one character; lowercase) matches `name`.
/// Linear in practice: the classic greedy matcher with one backtrack point.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}
