//! The policy engine: one Cedar policy set, sliced by action name, plus each policy's role.

use cedar_policy::{
    ActionConstraint, AuthorizationError, Authorizer, Decision as CedarDecision, Entities,
    EntityUid, PolicyId, PolicySet, Request,
};
use countersign_core::{
    ActionSpec, Analysis, Approvers, Decision, Effect, Identity, Quorum, Requirement, Route,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::convert;
use crate::load::{parse_sources, read_dir, LoadError, Loaded, Problem};
use crate::rules::Rule;

/// What happens when no policy matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultEffect {
    /// Deny (the default).
    Deny,
    /// Ask these approvers.
    Review {
        /// Who may approve.
        approvers: Approvers,
        /// How many distinct people must.
        quorum: Quorum,
    },
}

/// A principal prepared for evaluation. Build it once per identity and reuse it.
#[derive(Debug, Clone)]
pub struct Principal {
    uid: EntityUid,
    entities: Entities,
}

impl Principal {
    /// Prepares `who` (its entity, kind, email and groups) for Cedar. `None` only if the id or a
    /// group name cannot be represented, which validated configuration rules out.
    pub fn new(who: &Identity) -> Option<Principal> {
        let (uid, entities) = convert::principal_entities(who)?;
        Some(Principal { uid, entities })
    }
}

/// A request to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// What would run.
    pub spec: &'a ActionSpec,
    /// The agent's justification.
    pub justification: &'a str,
    /// What the analyzers found in `spec` (`None`: nothing analyzed). Cedar sees its risk as
    /// `context.risk` (a string: `low`, `medium`, `high` or `critical`) and its tags as
    /// `context.tags` (a set of strings); nothing analyzed is `"low"` and no tags. Never the
    /// agent's own `risk` parameter, which stays in `context.params`.
    pub analysis: Option<&'a Analysis>,
}

/// A decision plus any policy evaluation errors. Unlike plain Cedar, a policy that errors does
/// not silently drop out: any error makes the decision `deny` (fail closed), naming the policy.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// `policy id: error` for each policy that failed to evaluate.
    pub errors: Vec<String>,
}

/// One loaded policy, as [`PolicyEngine::listing`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedPolicy {
    /// The policy's id (its `@id` annotation, or the generated one).
    pub id: String,
    /// `permit`, `review` or `forbid`.
    pub effect: &'static str,
    /// The Cedar text as loaded.
    pub text: String,
}

/// A loaded, validated policy set.
#[derive(Debug)]
pub struct PolicyEngine {
    full: PolicySet,
    /// Policies whose action scope names this action (plus the open-scope ones).
    slices: HashMap<String, Arc<PolicySet>>,
    /// Policies with an open action scope: the slice for any action not named anywhere.
    open: Arc<PolicySet>,
    rules: HashMap<PolicyId, Rule>,
    authorizer: Authorizer,
    default: DefaultEffect,
    hash: String,
    count: usize,
}

impl PolicyEngine {
    /// Loads every `*.cedar` file in `dir`.
    pub fn load_dir(dir: &Path, default: DefaultEffect) -> Result<Self, LoadError> {
        Self::from_sources(&read_dir(dir)?, default)
    }

    /// Builds an engine from `(name, text)` sources.
    pub fn from_sources(
        sources: &[(String, String)],
        default: DefaultEffect,
    ) -> Result<Self, LoadError> {
        let loaded = parse_sources(sources)?;
        let mut hasher = Sha256::new();
        for (name, text) in sources {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        let hash = format!("sha256:{}", hex::encode(hasher.finalize()));
        Self::build(loaded, default, hash)
    }

    fn build(loaded: Vec<Loaded>, default: DefaultEffect, hash: String) -> Result<Self, LoadError> {
        let invalid = |message: String| {
            LoadError::Invalid(vec![Problem {
                file: "<policies>".into(),
                line: 0,
                column: 0,
                message,
            }])
        };
        let count = loaded.len();
        let mut full = PolicySet::new();
        let mut open = PolicySet::new();
        let mut named: HashMap<String, Vec<cedar_policy::Policy>> = HashMap::new();
        let mut rules = HashMap::new();
        for Loaded { policy, rule } in loaded {
            rules.insert(policy.id().clone(), rule);
            match policy.action_constraint() {
                ActionConstraint::Eq(a) => named
                    .entry(a.id().unescaped().to_string())
                    .or_default()
                    .push(policy.clone()),
                ActionConstraint::In(list) => {
                    for a in list {
                        named
                            .entry(a.id().unescaped().to_string())
                            .or_default()
                            .push(policy.clone());
                    }
                }
                ActionConstraint::Any => open
                    .add(policy.clone())
                    .map_err(|e| invalid(e.to_string()))?,
            }
            full.add(policy).map_err(|e| invalid(e.to_string()))?;
        }
        let mut slices = HashMap::new();
        for (action, policies) in named {
            let mut slice = open.clone();
            for p in policies {
                if slice.policy(p.id()).is_none() {
                    slice.add(p).map_err(|e| invalid(e.to_string()))?;
                }
            }
            slices.insert(action, Arc::new(slice));
        }
        Ok(PolicyEngine {
            full,
            slices,
            open: Arc::new(open),
            rules,
            authorizer: Authorizer::new(),
            default,
            hash,
            count,
        })
    }

    /// `sha256:<hex>` over the file names and texts, for the audit trail.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Every credential name a policy's `@credentials` annotation names, with the id of the
    /// first policy naming it: the gateway refuses to start (and `policy validate` reports)
    /// when one is not configured.
    pub fn credential_names(&self) -> Vec<(String, String)> {
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        let mut ids: Vec<&PolicyId> = self.rules.keys().collect();
        ids.sort();
        for id in ids {
            let names = match self.rules.get(id) {
                Some(Rule::Permit { credentials, .. } | Rule::Review { credentials, .. }) => {
                    credentials
                }
                _ => continue,
            };
            for n in names {
                seen.entry(n.clone()).or_insert_with(|| id.to_string());
            }
        }
        seen.into_iter().collect()
    }

    /// Every channel a review rule's `@notify` annotation names, with the id of the first
    /// policy naming it: the gateway refuses to start (and `policy validate` reports) when one
    /// is not configured.
    pub fn notify_channels(&self) -> Vec<(String, String)> {
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        let mut ids: Vec<&PolicyId> = self.rules.keys().collect();
        ids.sort();
        for id in ids {
            if let Some(Rule::Review { notify, .. }) = self.rules.get(id) {
                for c in notify {
                    seen.entry(c.clone()).or_insert_with(|| id.to_string());
                }
            }
        }
        seen.into_iter().collect()
    }

    /// The loaded policies, sorted by id, for read-only display: each one's id, its effect as
    /// this gateway applies it (`permit`, `review` or `forbid`) and its Cedar text as loaded.
    pub fn listing(&self) -> Vec<LoadedPolicy> {
        let mut out: Vec<LoadedPolicy> = self
            .full
            .policies()
            .map(|p| LoadedPolicy {
                id: p.id().to_string(),
                effect: match self.rules.get(p.id()) {
                    Some(Rule::Permit { .. }) => "permit",
                    Some(Rule::Review { .. }) => "review",
                    Some(Rule::Forbid { .. }) => "forbid",
                    None => match p.effect() {
                        cedar_policy::Effect::Permit => "permit",
                        cedar_policy::Effect::Forbid => "forbid",
                    },
                },
                text: p.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Decides, evaluating only the slice of policies that can match the action.
    pub fn decide(&self, req: PolicyRequest<'_>) -> Decision {
        self.evaluate(req).decision
    }

    /// Decides and reports policy evaluation errors.
    pub fn evaluate(&self, req: PolicyRequest<'_>) -> Evaluation {
        let slice = self
            .slices
            .get(&req.spec.action)
            .unwrap_or(&self.open)
            .as_ref();
        self.evaluate_with(req, slice)
    }

    /// Decides against the whole policy set, without slicing. Only for tests and tooling: it is
    /// what slicing must always agree with.
    pub fn evaluate_unsliced(&self, req: PolicyRequest<'_>) -> Evaluation {
        self.evaluate_with(req, &self.full)
    }

    fn evaluate_with(&self, req: PolicyRequest<'_>, set: &PolicySet) -> Evaluation {
        let fail = |msg: String| Evaluation {
            decision: Decision::deny(Vec::new(), msg.clone()),
            errors: vec![msg],
        };
        let Some(action) = convert::uid("Action", &req.spec.action) else {
            return fail("the action name cannot be represented in Cedar".into());
        };
        let Some(resource) = convert::uid("Resource", &req.spec.resource) else {
            return fail("the resource cannot be represented in Cedar".into());
        };
        let context = match convert::context(
            &req.spec.environment,
            req.analysis,
            &req.spec.params,
            req.justification,
        ) {
            Ok(c) => c,
            Err(e) => return fail(format!("the parameters cannot be evaluated: {e}")),
        };
        let request = match Request::new(req.principal.uid.clone(), action, resource, context, None)
        {
            Ok(r) => r,
            Err(e) => return fail(format!("invalid policy request: {e}")),
        };
        let response = self
            .authorizer
            .is_authorized(&request, set, &req.principal.entities);
        // Fail closed: Cedar skips a policy whose condition errors, so a `forbid` that errors
        // would not apply. Any error in a policy that could apply denies, naming it.
        let mut failed: Vec<(&PolicyId, String)> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(e) => {
                    (e.policy_id(), e.inner().to_string())
                }
            })
            .collect();
        if !failed.is_empty() {
            failed.sort();
            let errors: Vec<String> = failed
                .iter()
                .map(|(id, e)| format!("policy `{id}` failed to evaluate: {e}"))
                .collect();
            let reason = format!(
                "denied because a policy could not be evaluated (fail closed): {}",
                errors.join("; ")
            );
            return Evaluation {
                decision: Decision::deny(
                    failed.iter().map(|(id, _)| id.to_string()).collect(),
                    reason,
                ),
                errors,
            };
        }
        let mut matched: Vec<&PolicyId> = response.diagnostics().reason().collect();
        matched.sort();
        let decision = match response.decision() {
            CedarDecision::Deny if matched.is_empty() => self.default_decision(),
            CedarDecision::Deny => {
                let reasons: Vec<&str> = matched
                    .iter()
                    .filter_map(|id| match self.rules.get(*id) {
                        Some(Rule::Forbid { reason }) => reason.as_deref(),
                        _ => None,
                    })
                    .collect();
                let reason = if reasons.is_empty() {
                    "forbidden by policy".to_string()
                } else {
                    reasons.join("; ")
                };
                Decision::deny(matched.iter().map(ToString::to_string).collect(), reason)
            }
            CedarDecision::Allow => self.allow_or_review(&matched),
        };
        Evaluation {
            decision,
            errors: Vec::new(),
        }
    }

    fn allow_or_review(&self, matched: &[&PolicyId]) -> Decision {
        let mut requirements = Vec::new();
        let mut reasons = Vec::new();
        let mut ttl: Option<Duration> = None;
        let mut policies = Vec::new();
        let mut executors = BTreeSet::new();
        let mut credentials = BTreeSet::new();
        let mut reveal: Option<Approvers> = None;
        let mut add_reveal = |named: &Option<Approvers>| {
            if let Some(named) = named {
                match &mut reveal {
                    Some(all) => {
                        all.groups.extend(named.groups.iter().cloned());
                        all.humans.extend(named.humans.iter().cloned());
                    }
                    None => reveal = Some(named.clone()),
                }
            }
        };
        let mut notify: Vec<String> = Vec::new();
        for id in matched {
            match self.rules.get(*id) {
                Some(Rule::Review {
                    approvers,
                    quorum,
                    ttl: rule_ttl,
                    reason,
                    executors: named,
                    credentials: released,
                    reveal: revealers,
                    require_mfa,
                    notify: channels,
                }) => {
                    add_reveal(revealers);
                    policies.push(id.to_string());
                    for c in channels {
                        if !notify.contains(c) {
                            notify.push(c.clone());
                        }
                    }
                    requirements.push(Requirement {
                        policy: id.to_string(),
                        approvers: approvers.clone(),
                        quorum: *quorum,
                        require_mfa: *require_mfa,
                    });
                    reasons.extend(reason.clone());
                    ttl = match (ttl, rule_ttl) {
                        (Some(a), Some(b)) => Some(a.min(*b)),
                        (a, b) => a.or(*b),
                    };
                    executors.extend(named.iter().cloned());
                    credentials.extend(released.iter().cloned());
                }
                Some(Rule::Permit {
                    executors: named,
                    credentials: released,
                    reveal: revealers,
                }) => {
                    add_reveal(revealers);
                    executors.extend(named.iter().cloned());
                    credentials.extend(released.iter().cloned());
                }
                _ => {}
            }
        }
        let executors: Vec<String> = executors.into_iter().collect();
        let credentials: Vec<String> = credentials.into_iter().collect();
        if requirements.is_empty() {
            let mut d = Decision::allow(matched.iter().map(ToString::to_string).collect());
            d.executors = executors;
            d.credentials = credentials;
            d.reveal = reveal;
            return d;
        }
        Decision {
            effect: Effect::Review,
            policies,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
            requirements,
            review_ttl: ttl,
            executors,
            credentials,
            reveal,
            notify: notify.into_iter().map(Route::all).collect(),
        }
    }

    fn default_decision(&self) -> Decision {
        match &self.default {
            DefaultEffect::Deny => Decision::deny(Vec::new(), "no policy permits this action"),
            DefaultEffect::Review { approvers, quorum } => Decision {
                effect: Effect::Review,
                policies: Vec::new(),
                reason: Some("no policy matched; the default is to ask for review".into()),
                requirements: vec![Requirement {
                    policy: "default".into(),
                    approvers: approvers.clone(),
                    quorum: *quorum,
                    require_mfa: false,
                }],
                review_ttl: None,
                executors: Vec::new(),
                credentials: Vec::new(),
                reveal: None,
                notify: Vec::new(),
            },
        }
    }
}
