//! What policy decided for an action.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::approvers::{Approvers, Quorum};

/// The three outcomes of a policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Runs at once.
    Allow,
    /// Never runs.
    Deny,
    /// Runs only after humans approve.
    Review,
}

impl Effect {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Review => "review",
        }
    }
}

/// One review requirement: `quorum` distinct approvers from `approvers`. When several review
/// rules match an action, *all* their requirements must be met (the strictest reading), and the
/// review expires at the earliest of their TTLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The policy id that imposed it.
    pub policy: String,
    /// Who may approve.
    pub approvers: Approvers,
    /// How many distinct people must.
    pub quorum: Quorum,
    /// `@require_mfa`: approvals need a vote from a multi-factor sign-in (a console session
    /// whose ID token showed MFA), never an API token or a chat click.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_mfa: bool,
}

/// A policy decision: the effect, the policy ids that produced it, a reason for people, and for
/// reviews the requirements and how long the review may stay open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow, deny or review.
    pub effect: Effect,
    /// Ids of the policies that determined the effect (empty for the default effect).
    pub policies: Vec<String>,
    /// Shown to the agent and to reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `review`: every requirement that must be met. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<Requirement>,
    /// For `review`: the TTL a rule asked for, if any (else the configured default applies).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub review_ttl: Option<Duration>,
    /// Service ids a matching policy names (`@executor("service:ID")`) as allowed to redeem the
    /// grant besides the requester. Empty: only the requester may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<String>,
    /// Names of configured credentials a matching policy releases to the redeemer of the grant
    /// (`@credentials("prod-db")`), sorted. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Who may see the values masking hides from views (`@reveal("group:data-owners")`, the
    /// union over the matching policies); each reveal is an audit entry. `None`: nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal: Option<Approvers>,
    /// For `review`: where its notifications go (`@notify("slack:#ops, webhook:pagerduty")`,
    /// else the configuration's defaults, resolved by the gateway at submission). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Route>,
}

/// One destination of an action's notifications: a channel (`webhook:NAME`, `slack:#CHANNEL`,
/// `teams:NAME`) and, if not empty, the only notification kinds it wants
/// ([`crate::Event::notification`]). Recorded with the decision at submission, so every later
/// event of the action goes to the same places on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `kind:name`.
    pub channel: String,
    /// Notification kinds wanted; empty: every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

impl Route {
    /// A route for every kind of notification.
    pub fn all(channel: impl Into<String>) -> Route {
        Route {
            channel: channel.into(),
            events: Vec::new(),
        }
    }

    /// Whether notifications of `kind` go this way.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

impl Decision {
    /// A decision to deny, with a reason.
    pub fn deny(policies: Vec<String>, reason: impl Into<String>) -> Self {
        Decision {
            effect: Effect::Deny,
            policies,
            reason: Some(reason.into()),
            requirements: Vec::new(),
            review_ttl: None,
            executors: Vec::new(),
            credentials: Vec::new(),
            reveal: None,
            notify: Vec::new(),
        }
    }

    /// A decision to allow.
    pub fn allow(policies: Vec<String>) -> Self {
        Decision {
            effect: Effect::Allow,
            policies,
            reason: None,
            requirements: Vec::new(),
            review_ttl: None,
            executors: Vec::new(),
            credentials: Vec::new(),
            reveal: None,
            notify: Vec::new(),
        }
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
