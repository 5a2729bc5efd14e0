//! The gateway's use cases, one method each: submit, read, wait, list reviews, vote, answer,
//! cancel, redeem, report, expire. Each authenticates nothing and decides nothing itself: it
//! asks policy, hands a pure transition from the core to the store, and wakes whoever waits.
//!
//! **Architecture Invariant:** every channel (HTTP, CLI, MCP, chat) calls these methods, so a
//! rule enforced here or below holds everywhere.

use countersign_core::{
    ActionRecord, ActionSpec, Analysis, Ballot, Decision, DomainError, Effect, Event, Field,
    Identity, IdentityKind, JudgedAs, Judgement, NewAction, Outcome, Status, Submission, Timestamp,
    VoteContext,
};
use countersign_identity::{AuthError, Authenticator, OidcVerifier};
use countersign_policy::{DefaultEffect, PolicyEngine, PolicyRequest, Principal};
use countersign_store::{InsertRules, Inserted, ReviewQuery, Store, UpdateError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::audit::{AuditLog, CHECKPOINT_INTERVAL};
use crate::clock::Clock;
use crate::config::{Config, DefaultEffectConfig};
use crate::error::GatewayError;
use crate::grants::GrantSigner;
use crate::identities::Identities;
use crate::metrics::{EffectLabel, Metrics};
use crate::wakeups::Wakeups;

/// Longest wait a long poll may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new action was recorded.
    Created,
    /// The idempotency key was seen before: the first answer, again.
    Replayed,
    /// `reuse_open` found an earlier action for the same request; nothing new was recorded.
    Reused,
}

/// An action as one caller may see it: the record plus, for its requester, a usable grant token.
#[derive(Debug, Clone)]
pub struct ActionView {
    /// The record.
    pub record: ActionRecord,
    /// The grant token, shown only to the requester while the grant is usable.
    pub grant_token: Option<String>,
    /// Where masking hid values in `record` (JSON pointers: `/params/...`, `/justification`,
    /// ...); empty when it hid none.
    pub masked: Vec<String>,
}

/// An action as a person `@reveal` names sees it: the record with its real values, and the
/// JSON pointers of the values a masked view hides.
#[derive(Debug, Clone)]
pub struct Revealed {
    /// The record, unmasked.
    pub record: ActionRecord,
    /// Where the masked values are (`/params/...`, `/justification`, ...).
    pub values: Vec<String>,
}

/// A page of reviews, newest first.
#[derive(Debug, Clone)]
pub struct ReviewPage {
    /// The reviews.
    pub reviews: Vec<ActionView>,
    /// Where the next page starts (the `created_at` and id of this page's last), if there may
    /// be one.
    pub next: Option<(Timestamp, String)>,
}

/// What redeeming a grant returns: exactly what may now run.
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// The action id.
    pub action_id: String,
    /// The approved spec (with any reviewer modification).
    pub spec: ActionSpec,
    /// Its digest.
    pub digest: String,
    /// The credentials the decision releases to the redeemer (names; ask for them with
    /// [`Gateway::release_credentials`]).
    pub credentials: Vec<String>,
}

/// The gateway: policy, store, grants, wake-ups and metrics behind one set of use cases.
pub struct Gateway {
    policy: Arc<PolicyEngine>,
    principals: Arc<HashMap<String, Arc<Principal>>>,
    identities: Identities,
    pub(crate) auth: Authenticator,
    pub(crate) admin_group: Option<String>,
    pub(crate) store: Arc<dyn Store>,
    signer: GrantSigner,
    audit: AuditLog,
    pub(crate) wakeups: Wakeups,
    sweeper: Notify,
    /// Told when this process committed a change that queued notifications.
    pub(crate) outbox: Notify,
    metrics: Metrics,
    clock: Clock,
    review_ttl: Duration,
    grant_ttl: Duration,
    grants_for_allowed: bool,
    max_open_reviews: u32,
    analysis_names: Arc<countersign_analyze::Names>,
    masker: Arc<countersign_mask::Masker>,
    pub(crate) credentials: crate::credentials::Credentials,
    notify_defaults: Vec<countersign_core::Route>,
    /// Identities already refused (and audited) by this process: each claimer is recorded once,
    /// so a valid token replayed in a loop cannot grow the audit log.
    refused_identities: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// How the gateway is put together; [`Gateway::with_store`] builds one from a config file.
pub struct Parts {
    /// The policy engine.
    pub policy: PolicyEngine,
    /// Known identities.
    pub identities: Identities,
    /// Trusted OIDC issuers.
    pub oidc: OidcVerifier,
    /// The admin group, if any.
    pub admin_group: Option<String>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The grant signer.
    pub signer: GrantSigner,
    /// The audit log (sharing `store`).
    pub audit: AuditLog,
    /// The clock.
    pub clock: Clock,
    /// Default review TTL.
    pub review_ttl: Duration,
    /// Grant TTL.
    pub grant_ttl: Duration,
    /// Whether allowed actions get a grant too.
    pub grants_for_allowed: bool,
    /// Most reviews one requester may have open at once.
    pub max_open_reviews_per_requester: u32,
    /// More parameter names for the analyzers.
    pub analysis: countersign_analyze::Names,
    /// What views and audit entries mask.
    pub masker: Arc<countersign_mask::Masker>,
    /// Credentials released by approval (`[[credentials]]`).
    pub credentials: crate::credentials::Credentials,
    /// Where a review goes when its policies name no `@notify` channel.
    pub notify_defaults: Vec<countersign_core::Route>,
}

/// The policy engine's default effect for a config.
pub fn default_effect(config: &Config) -> DefaultEffect {
    match &config.default_effect {
        DefaultEffectConfig::Deny => DefaultEffect::Deny,
        DefaultEffectConfig::Review(approvers, quorum) => DefaultEffect::Review {
            approvers: approvers.clone(),
            quorum: *quorum,
        },
    }
}

/// The core's size limit of a free-text field, for every front (not only the API's).
fn within(field: Field, value: Option<&str>) -> Result<(), GatewayError> {
    match value.map(|v| field.check(v)) {
        Some(Err(e)) => Err(GatewayError::Invalid(e.to_string())),
        _ => Ok(()),
    }
}

/// What the analyzers find in an action's parameters, reading the parameter names `names`
/// adds too (`None`: no analyzer applies).
pub fn analyze(spec: &ActionSpec, names: &countersign_analyze::Names) -> Option<Analysis> {
    countersign_analyze::analyze_with(&spec.params, names)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Gateway {
    /// Loads policies and the signing keys named by `config` around an opened store.
    pub fn with_store(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let policy = PolicyEngine::load_dir(&config.policies, default_effect(config))
            .map_err(|e| GatewayError::Startup(e.to_string()))?;
        crate::credentials::check_policy_names(&policy.credential_names(), &config.credentials)
            .map_err(|e| GatewayError::Startup(format!("{}: {e}", config.policies.display())))?;
        crate::notify::check_policy_channels(
            &policy.notify_channels(),
            &config.webhooks,
            config.slack.as_ref(),
            config.teams.as_ref(),
        )
        .map_err(|e| GatewayError::Startup(format!("{}: {e}", config.policies.display())))?;
        let credentials = crate::credentials::Credentials::from_config(
            &config.credentials,
            &store,
            &config.secrets_key,
        )
        .map_err(GatewayError::Startup)?;
        let signer = GrantSigner::load_or_create(&config.signing_key)
            .map_err(|e| GatewayError::Startup(e.to_string()))?;
        let audit = AuditLog::open(store.clone(), &config.audit_key, &config.audit_origin)
            .map_err(|e| GatewayError::Startup(e.to_string()))?;
        let masking_key = crate::masking::load_or_create_key(&config.masking_key)
            .map_err(GatewayError::Startup)?;
        let masker = countersign_mask::Masker::new(&config.masking, &masking_key)
            .map_err(|e| GatewayError::Startup(format!("[masking] {e}")))?;
        Ok(Gateway::new(Parts {
            masker: Arc::new(masker),
            policy,
            identities: Identities::from_config(&config.identities),
            oidc: OidcVerifier::new(config.oidc.clone()).map_err(GatewayError::Startup)?,
            admin_group: config.admin_group.clone(),
            store,
            signer,
            audit,
            clock,
            review_ttl: config.review_ttl,
            grant_ttl: config.grant_ttl,
            grants_for_allowed: config.grants_for_allowed,
            max_open_reviews_per_requester: config.max_open_reviews_per_requester,
            analysis: config.analysis.clone(),
            credentials,
            notify_defaults: crate::notify::default_routes(
                &config.webhooks,
                config.slack.as_ref(),
                config.teams.as_ref(),
            ),
        }))
    }

    /// Assembles a gateway from its parts.
    pub fn new(parts: Parts) -> Arc<Gateway> {
        let principals = Arc::new(
            parts
                .identities
                .all()
                .filter_map(|i| Some((i.id.clone(), Arc::new(Principal::new(i)?))))
                .collect(),
        );
        let auth = Authenticator::with_links(
            parts.identities.by_token_hash(),
            Arc::new(crate::lookup::StoreLookup(parts.store.clone())),
            parts.oidc,
            parts.identities.linked(),
        );
        let metrics = Metrics::new();
        let commits = metrics.store_commit_duration.clone();
        // One observer per store: a second gateway over the same store (tests) keeps the first.
        parts
            .store
            .writer()
            .observe_commits(move |d| commits.observe(d.as_secs_f64()));
        Arc::new(Gateway {
            policy: Arc::new(parts.policy),
            principals,
            identities: parts.identities,
            auth,
            admin_group: parts.admin_group,
            store: parts.store,
            signer: parts.signer,
            audit: parts.audit,
            wakeups: Wakeups::default(),
            sweeper: Notify::new(),
            outbox: Notify::new(),
            metrics,
            clock: parts.clock,
            review_ttl: parts.review_ttl,
            grant_ttl: parts.grant_ttl,
            grants_for_allowed: parts.grants_for_allowed,
            max_open_reviews: parts.max_open_reviews_per_requester,
            analysis_names: Arc::new(parts.analysis),
            masker: parts.masker,
            credentials: parts.credentials,
            notify_defaults: parts.notify_defaults,
            refused_identities: Default::default(),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether this gateway can record decisions: `Err` with why its store cannot write (the
    /// last write failed and none succeeded since). What `/readyz` reports.
    pub fn readiness(&self) -> Result<(), String> {
        self.store.write_failure().map_or(Ok(()), Err)
    }

    /// The identities.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// The identity a bearer credential proves (config token, managed key or OIDC token). An
    /// identity refused because its id belongs to another source (or looks like one), or is
    /// unreadable, is recorded in the audit log.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let result = self.auth.authenticate(token, self.now()).await;
        if let Err(e) = &result {
            if let Some(claimer) = e.refused_identity() {
                let first = self.refused_identities.lock().map_or(true, |mut seen| {
                    // Bounded: past this many distinct claimers, start over (each is then
                    // recorded again, at most once per round).
                    if seen.len() >= 10_000 {
                        seen.clear();
                    }
                    seen.insert(format!("{}:{claimer}", e.code()))
                });
                if first {
                    let who = Identity::new(claimer, IdentityKind::Agent, Vec::<String>::new());
                    self.refused(&who, "authenticate", None, e.code(), true)
                        .await;
                }
            }
        }
        result
    }

    /// The grant signer (for `GET /v1/keys`).
    pub fn signer(&self) -> &GrantSigner {
        &self.signer
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Indexes of the audit entries of an action the caller has already read (through `get` or
    /// `wait`, which checked it may see it): no second read of the record.
    pub async fn audit_indexes(&self, view: &ActionView) -> Result<Vec<u64>, GatewayError> {
        Ok(self.store.action_audit_indexes(&view.record.id).await?)
    }

    /// Audit entries from `start` (humans only: entries describe everyone's actions).
    pub async fn audit_entries(
        &self,
        who: &Identity,
        start: u64,
        limit: usize,
    ) -> Result<Vec<countersign_store::AuditEntry>, GatewayError> {
        if !who.may_read_audit_log() {
            return Err(GatewayError::Forbidden(
                "only people may read the whole audit log; agents may read their own actions' entries with proofs".into(),
            ));
        }
        Ok(self.store.audit_entries(start, limit.min(1000)).await?)
    }

    /// The whole log up to its latest checkpoint as an export (`crate::export`, the same writer
    /// as `countersign audit export`), for the people who may read the whole log
    /// (`audit_entries`' rule). Entries are as stored, masked when written.
    pub async fn export_audit(
        &self,
        who: &Identity,
        format: crate::export::ExportFormat,
    ) -> Result<Vec<u8>, GatewayError> {
        if !who.may_read_audit_log() {
            return Err(GatewayError::Forbidden(
                "only people may export the whole audit log".into(),
            ));
        }
        let failed = |e: crate::export::ExportError| match e {
            crate::export::ExportError::Store(e) => GatewayError::from(e),
            crate::export::ExportError::NoCheckpoint => GatewayError::NotFound,
            other => GatewayError::Invalid(other.to_string()),
        };
        let store: &dyn countersign_store::AuditLog = self.store.as_ref();
        let window = crate::export::window(store, self.audit.verifier(), None, None)
            .await
            .map_err(failed)?;
        let mut out = Vec::new();
        crate::export::write(store, &window, format, &mut out)
            .await
            .map_err(failed)?;
        Ok(out)
    }

    /// Signs a checkpoint at least every second while entries arrive, until the process ends.
    pub async fn run_checkpointer(self: Arc<Self>) {
        loop {
            if let Err(e) = self.audit.checkpoint_if_grown(self.now()).await {
                tracing::error!(error = %e, "could not sign an audit checkpoint");
            }
            tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        }
    }

    /// The loaded policy set.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    pub(crate) fn now(&self) -> Timestamp {
        (self.clock)()
    }

    pub(crate) fn now_ts(&self) -> Timestamp {
        self.now()
    }

    fn principal(&self, who: &Identity) -> Result<Arc<Principal>, GatewayError> {
        // The prepared principal only for the config identity itself: an OIDC user or a managed
        // key with the same id has its own groups and attributes.
        if who.source.as_deref().is_none_or(|s| s == "config") {
            if let Some(p) = self.principals.get(&who.id) {
                return Ok(p.clone());
            }
        }
        Principal::new(who)
            .map(Arc::new)
            .ok_or_else(|| GatewayError::Invalid("identity cannot be used in policy".into()))
    }

    pub(crate) fn view(&self, who: &Identity, mut record: ActionRecord) -> ActionView {
        let grant_token = record
            .usable_grant(who, self.now())
            .map(|g| self.signer.sign(&record.id, g));
        let masked = crate::masking::mask_record(&self.masker, &mut record)
            .into_iter()
            .map(|m| m.path)
            .collect();
        ActionView {
            record,
            grant_token,
            masked,
        }
    }

    /// Evaluates policy for a hypothetical request (no store access), with what the analyzers
    /// find in `spec`.
    pub fn decide(
        &self,
        who: &Identity,
        spec: &ActionSpec,
        justification: &str,
    ) -> Result<Decision, GatewayError> {
        let analysis = analyze(spec, &self.analysis_names);
        self.decide_analyzed(who, spec, justification, analysis.as_ref())
    }

    /// Evaluates policy with an analysis already made: Cedar sees it as `context.risk` and
    /// `context.tags`.
    fn decide_analyzed(
        &self,
        who: &Identity,
        spec: &ActionSpec,
        justification: &str,
        analysis: Option<&Analysis>,
    ) -> Result<Decision, GatewayError> {
        let span = tracing::debug_span!("policy.evaluate", effect = tracing::field::Empty);
        let _entered = span.enter();
        let principal = self.principal(who)?;
        let decision = self.policy.decide(PolicyRequest {
            principal: &principal,
            spec,
            justification,
            analysis,
        });
        // The effect only: never a parameter (they may hold secrets) nor the policy's reason.
        span.record("effect", decision.effect.as_str());
        Ok(decision)
    }

    /// Submits an action: policy decides, the record is durably stored, then the answer returns.
    /// A repeated idempotency key returns the first record (and never opens a second review);
    /// so does `reuse_open` for an identical request still open (see [`Submission::reuse_open`]).
    /// Policy decides every submission afresh: only one it sends to review may be answered by an
    /// earlier review.
    pub async fn submit(
        &self,
        who: &Identity,
        sub: Submission,
    ) -> Result<(ActionView, Submitted), GatewayError> {
        within(Field::Justification, sub.justification.as_deref())?;
        within(Field::IdempotencyKey, sub.idempotency_key.as_deref())?;
        let spec = ActionSpec::new(
            sub.action,
            sub.resource,
            sub.environment.unwrap_or_default(),
            sub.params,
        )
        .map_err(|e| GatewayError::Invalid(e.to_string()))?;
        if let Some(h) = &sub.on_behalf_of {
            // A configured human, or a person from the identity provider seen before: an
            // unknown name could later be claimed by anyone, who would then be barred from
            // voting in the requester's stead (or the real person would not be).
            let known = self
                .auth
                .registry()
                .known_human(h)
                .await
                .map_err(|e| match e {
                    AuthError::Store(s) => GatewayError::Store(crate::lookup::store_error(s)),
                    other => GatewayError::Invalid(other.to_string()),
                })?;
            if known.is_none() {
                return Err(GatewayError::Invalid(format!(
                    "`on_behalf_of` must name a known human (configured, or signed in before); \
                     `{h}` is not one"
                )));
            }
        }
        let justification = sub.justification.unwrap_or_default();
        let on_behalf_of = sub.on_behalf_of.clone();
        // Analyzed once, here: policy sees it, the record and its `submitted` entry keep it.
        let analysis = analyze(&spec, &self.analysis_names);
        let mut decision = self.decide_analyzed(who, &spec, &justification, analysis.as_ref())?;
        if decision.effect == Effect::Review && decision.notify.is_empty() {
            decision.notify = self.notify_defaults.clone();
        }
        let now = self.now();
        let submitted = ActionRecord::submit(
            who,
            NewAction {
                id: new_id(),
                grant_jti: new_id(),
                spec,
                justification,
                on_behalf_of: sub.on_behalf_of,
                idempotency_key: sub.idempotency_key,
                decision,
                default_review_ttl: self.review_ttl,
                grant_ttl: self.grant_ttl,
                grant_on_allow: self.grants_for_allowed,
                analysis,
            },
            now,
        );
        let (record, events) = match submitted {
            Ok((record, mut events)) => {
                crate::masking::mask_events(&self.masker, &mut events);
                (record, events)
            }
            Err(e) => {
                self.refused(who, "submit", None, e.code(), e.is_security_relevant())
                    .await;
                return Err(e.into());
            }
        };
        let digest = record.digest;
        let rules = InsertRules {
            reuse_open: sub.reuse_open && record.decision.effect == Effect::Review,
            max_open_reviews: Some(self.max_open_reviews),
        };
        match self.store.insert_ruled(record, events, rules).await? {
            Inserted::Created(record) => {
                self.metrics
                    .decisions
                    .get_or_create(&EffectLabel {
                        effect: record.decision.effect.as_str().to_string(),
                    })
                    .inc();
                if record.decision.effect == Effect::Review {
                    self.sweeper.notify_one();
                    if !record.decision.notify.is_empty() {
                        self.outbox.notify_one();
                    }
                }
                Ok((self.view(who, record), Submitted::Created))
            }
            Inserted::Existing(record) if record.replayed_by(&digest, on_behalf_of.as_deref()) => {
                Ok((self.view(who, record), Submitted::Replayed))
            }
            Inserted::Existing(_) => Err(GatewayError::IdempotencyConflict),
            Inserted::Reused(record) => Ok((self.view(who, record), Submitted::Reused)),
            Inserted::Refused(e) => {
                self.refused(who, "submit", None, e.code(), e.is_security_relevant())
                    .await;
                Err(e.into())
            }
        }
    }

    /// Reads an action.
    pub async fn get(&self, who: &Identity, id: &str) -> Result<ActionView, GatewayError> {
        let record = self.store.get(id).await?.ok_or(GatewayError::NotFound)?;
        if !record.visible_to(who) {
            return Err(GatewayError::NotFound);
        }
        Ok(self.view(who, record))
    }

    /// Shows `who` the action with the values masking hides (issue #17's `@reveal`): the core's
    /// `may_reveal` decides inside the store's transaction, which records a `revealed` entry
    /// naming the values shown; a refusal is a `refused` entry. The one unmasked view (tidy:
    /// `every_view_and_every_entry_is_masked`).
    pub async fn reveal(&self, who: &Identity, id: &str) -> Result<Revealed, GatewayError> {
        let record = self.store.get(id).await?.ok_or(GatewayError::NotFound)?;
        if !record.visible_to(who) {
            return Err(GatewayError::NotFound);
        }
        let now = self.now();
        let me = who.clone();
        let masker = self.masker.clone();
        let (record, events) = self
            .attempt(
                who,
                "reveal",
                id,
                now,
                Box::new(move |rec| {
                    let mut copy = rec.clone();
                    let values = crate::masking::mask_record(&masker, &mut copy)
                        .into_iter()
                        .map(|m| m.path)
                        .collect();
                    rec.reveal(&me, values)
                }),
            )
            .await?;
        let values = events
            .into_iter()
            .find_map(|e| match e {
                Event::Revealed { values, .. } => Some(values),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Revealed { record, values })
    }

    /// Reads an action, waiting up to `wait` for it to leave `pending`. Released by the change
    /// itself (not a polling tick).
    pub async fn wait(
        &self,
        who: &Identity,
        id: &str,
        wait: Duration,
    ) -> Result<ActionView, GatewayError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let sub = self.wakeups.subscribe(id);
        let waiting = async {
            loop {
                let notified = sub.notify().notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let view = self.get(who, id).await?;
                if view.record.status != Status::Pending {
                    return Ok(view);
                }
                // Released by the change itself; the periodic re-read only covers a lost
                // notification (e.g. while another replica's LISTEN connection reconnects).
                let recheck =
                    (tokio::time::Instant::now() + crate::replicas::SAFETY_RECHECK).min(deadline);
                if tokio::time::timeout_at(recheck, notified).await.is_err() && recheck >= deadline
                {
                    return Ok(view);
                }
            }
        };
        waiting
            .instrument(tracing::debug_span!("long_poll.wait"))
            .await
    }

    /// One page of the reviews `who` may act on, newest first: open reviews they could vote on
    /// now (not their own; they are an approver), or, asked for closed statuses, the reviews
    /// they could have voted on. The store finds the page through its index of approver
    /// entries; the core's [`ActionRecord::listed_for_reviewer`] confirms each one. `before` is
    /// the previous page's [`ReviewPage::next`].
    pub async fn reviews(
        &self,
        who: &Identity,
        statuses: Vec<Status>,
        limit: usize,
        before: Option<(Timestamp, String)>,
    ) -> Result<ReviewPage, GatewayError> {
        let now = self.now();
        let statuses = if statuses.is_empty() {
            vec![Status::Pending]
        } else {
            statuses
        };
        let records = self
            .store
            .reviews_for(ReviewQuery {
                approver_keys: countersign_core::Approvers::keys_of(who),
                statuses,
                reviewer: who.id.clone(),
                before,
                limit,
            })
            .await?;
        // A full page may have more after it; the cursor is the last row the store gave, even
        // one the core then left out, so the next page starts after it.
        let next = (records.len() >= limit)
            .then(|| records.last().map(|r| (r.created_at, r.id.clone())))
            .flatten();
        let reviews = records
            .into_iter()
            .filter(|r| r.listed_for_reviewer(who, now))
            .map(|r| self.view(who, r))
            .collect();
        Ok(ReviewPage { reviews, next })
    }

    /// A transition attempted by `who`: as [`Self::transition`], and a refusal that matters to
    /// security is recorded in the audit log (after the refused transition wrote nothing).
    pub(crate) async fn attempt(
        &self,
        who: &Identity,
        attempted: &'static str,
        id: &str,
        now: Timestamp,
        f: countersign_store::Transition,
    ) -> Result<(ActionRecord, Vec<Event>), GatewayError> {
        let result = self.transition(id, now, f).await;
        if let Err(GatewayError::Domain(e)) = &result {
            self.refused(who, attempted, Some(id), e.code(), e.is_security_relevant())
                .await;
        }
        result
    }

    /// Records a refused attempt when it matters to security. The refusal is what the caller
    /// gets either way; a failure to record it is logged, not turned into a different answer.
    pub(crate) async fn refused(
        &self,
        who: &Identity,
        attempted: &'static str,
        action: Option<&str>,
        code: &str,
        relevant: bool,
    ) {
        if !relevant {
            return;
        }
        let event = Event::Refused {
            by: who.id.clone(),
            attempted: attempted.into(),
            code: code.into(),
        };
        self.metrics.refusals.inc();
        if let Err(e) = self
            .store
            .record_events(self.now(), vec![(action.map(str::to_string), event)])
            .await
        {
            tracing::error!(error = %e, code, "could not record a refused attempt in the audit log");
        }
    }

    /// Records an attempt an adapter refused before it became an action (the MCP proxy's
    /// malformed or unknown messages): an audit entry `refused` by `who`, like the refusals
    /// of the core's rules.
    pub async fn record_refused(&self, who: &Identity, attempted: &'static str, code: &str) {
        self.refused(who, attempted, None, code, true).await;
    }

    /// Records an attempt on action `action` that a chat channel refused or saw refused (an
    /// unmapped Slack user's click, a double click): an audit entry `refused` by `who`.
    pub async fn record_refused_on(
        &self,
        who: &Identity,
        attempted: &'static str,
        action: &str,
        code: &str,
    ) {
        self.refused(who, attempted, Some(action), code, true).await;
    }

    /// Records in the audit log which configuration and policy set this process runs with.
    pub async fn record_loaded(&self, config_sha256: &str) -> Result<(), GatewayError> {
        let identities = self
            .identities
            .all()
            .map(|i| format!("{} ({})", i.id, i.kind.as_str()))
            .collect();
        self.store
            .record_events(
                self.now(),
                vec![
                    (
                        None,
                        Event::ConfigLoaded {
                            sha256: config_sha256.to_string(),
                            identities,
                        },
                    ),
                    (
                        None,
                        Event::PolicyLoaded {
                            hash: self.policy.hash().to_string(),
                            policies: self.policy.len(),
                        },
                    ),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn transition(
        &self,
        id: &str,
        now: Timestamp,
        f: countersign_store::Transition,
    ) -> Result<(ActionRecord, Vec<Event>), GatewayError> {
        // Every transition's entries are masked before the store commits them.
        let masker = self.masker.clone();
        let f: countersign_store::Transition = Box::new(move |rec| {
            f(rec).map(|mut events| {
                crate::masking::mask_events(&masker, &mut events);
                events
            })
        });
        let (record, events) = self.store.update(id, now, f).await.map_err(|e| match e {
            UpdateError::NotFound => GatewayError::NotFound,
            UpdateError::Domain(d) => GatewayError::Domain(d),
            UpdateError::Store(s) => GatewayError::Store(s),
        })?;
        if !events.is_empty() {
            self.observe(&record, &events, now);
            self.wakeups.wake(id);
            if !record.decision.notify.is_empty()
                && events.iter().any(|e| e.notification().is_some())
            {
                self.outbox.notify_one();
            }
        }
        Ok((record, events))
    }

    fn observe(&self, record: &ActionRecord, events: &[Event], now: Timestamp) {
        let closed = events.iter().any(|e| {
            matches!(
                e,
                Event::Approved { .. } | Event::Rejected { .. } | Event::Expired
            ) || (matches!(e, Event::Cancelled { .. })
                && record.review.is_some()
                && record.grant.is_none())
        });
        if closed && record.decision.effect == Effect::Review {
            let secs = (now.millis() - record.created_at.millis()).max(0) as f64 / 1000.0;
            self.metrics.time_to_decision.observe(secs);
        }
    }

    /// A reviewer votes. Every rule (humans only, no self-approval, approvers at the moment of
    /// the vote, one vote per digest, one deny rejects, modify = new digest that policy must not
    /// deny) is enforced by the core inside the store's transaction.
    pub async fn vote(
        &self,
        who: &Identity,
        id: &str,
        ballot: Ballot,
    ) -> Result<ActionView, GatewayError> {
        self.vote_in(VoteContext::default(), who, id, ballot).await
    }

    /// [`Self::vote`] through a channel that proves more about how the voter signed in (the web
    /// console: multi-factor authentication); the core decides what that allows.
    pub async fn vote_in(
        &self,
        context: VoteContext,
        who: &Identity,
        id: &str,
        ballot: Ballot,
    ) -> Result<ActionView, GatewayError> {
        match &ballot {
            Ballot::Approve { comment }
            | Ballot::Deny { comment }
            | Ballot::Modify { comment, .. } => within(Field::Comment, comment.as_deref())?,
            Ballot::Clarify { question } => within(Field::Question, Some(question))?,
        }
        let now = self.now();
        let voter = who.clone();
        let jti = new_id();
        let ttl = self.grant_ttl;
        let policy = self.policy.clone();
        let principals = self.principals.clone();
        let names = self.analysis_names.clone();
        let masker = self.masker.clone();
        let mut ballot = ballot;
        let (record, _) = self
            .attempt(
                who,
                "vote",
                id,
                now,
                Box::new(move |rec| {
                    // A change was written on the masked view: what it left as shown is real.
                    crate::masking::restore_shown(&masker, rec, &mut ballot);
                    let justification = rec.justification.clone();
                    // As the requester (the core's rule says which form of them).
                    let requester = match rec.modify_judged_as() {
                        JudgedAs::Recorded(who) => Principal::new(who).map(Arc::new),
                        JudgedAs::Configured(id) => principals.get(id).cloned(),
                    };
                    rec.vote_in(context, &voter, ballot, now, jti, ttl, |spec| {
                        // Judged as a fresh submission by the requester would be (analyzed
                        // afresh): the core refuses a denied edit and adds whatever review the
                        // new action needs.
                        let analysis = analyze(spec, &names);
                        let Some(principal) = requester.as_deref() else {
                            return Judgement {
                                decision: Decision::deny(
                                    Vec::new(),
                                    "the requester is no longer known",
                                ),
                                analysis,
                            };
                        };
                        let decision = policy.decide(PolicyRequest {
                            principal,
                            spec,
                            justification: &justification,
                            analysis: analysis.as_ref(),
                        });
                        Judgement { decision, analysis }
                    })
                }),
            )
            .await?;
        Ok(self.view(who, record))
    }

    /// The requester answers a reviewer's question.
    pub async fn answer(
        &self,
        who: &Identity,
        id: &str,
        answer: String,
    ) -> Result<ActionView, GatewayError> {
        within(Field::Answer, Some(&answer))?;
        let now = self.now();
        let me = who.clone();
        let (record, _) = self
            .attempt(
                who,
                "answer",
                id,
                now,
                Box::new(move |rec| rec.answer(&me, answer, now)),
            )
            .await?;
        Ok(self.view(who, record))
    }

    /// The requester cancels.
    pub async fn cancel(&self, who: &Identity, id: &str) -> Result<ActionView, GatewayError> {
        let now = self.now();
        let me = who.clone();
        let (record, _) = self
            .attempt(
                who,
                "cancel",
                id,
                now,
                Box::new(move |rec| rec.cancel(&me, now)),
            )
            .await?;
        Ok(self.view(who, record))
    }

    /// Redeems a grant token, once.
    pub async fn redeem(&self, who: &Identity, token: &str) -> Result<Redeemed, GatewayError> {
        let (claims, digest) = match self.signer.verify(token) {
            Ok(verified) => verified,
            Err(_) => {
                // A forged or mangled token: nothing in it can be trusted, not even its action id.
                let e = DomainError::GrantMismatch;
                self.refused(who, "redeem", None, e.code(), true).await;
                return Err(GatewayError::Domain(e));
            }
        };
        let now = self.now();
        let me = who.clone();
        let jti = claims.jti.clone();
        let (record, _) = self
            .attempt(
                who,
                "redeem",
                &claims.action_id,
                now,
                Box::new(move |rec| rec.redeem(&me, &jti, &digest, now)),
            )
            .await
            .map_err(|e| match e {
                GatewayError::NotFound => GatewayError::Domain(DomainError::GrantMismatch),
                other => other,
            })?;
        Ok(Redeemed {
            action_id: record.id,
            digest: record.digest.to_string(),
            spec: record.spec,
            credentials: record.decision.credentials,
        })
    }

    /// The executor reports the result.
    #[allow(clippy::too_many_arguments)]
    pub async fn report(
        &self,
        who: &Identity,
        id: &str,
        outcome: Outcome,
        exit_code: Option<i32>,
        output_sha256: Option<String>,
        detail: Option<String>,
    ) -> Result<ActionView, GatewayError> {
        within(Field::Detail, detail.as_deref())?;
        if let Some(h) = &output_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(GatewayError::Invalid(
                    "`output_sha256` must be 64 hex digits".into(),
                ));
            }
        }
        let now = self.now();
        let me = who.clone();
        let (record, _) = self
            .attempt(
                who,
                "report",
                id,
                now,
                Box::new(move |rec| {
                    rec.report(&me, outcome, exit_code, output_sha256, detail, now)
                }),
            )
            .await?;
        // The action is over: what was released for it goes now, not at the end of its lifetime.
        let record = self.revoke_credentials(record).await;
        Ok(self.view(who, record))
    }

    /// Records `expired` on every open review past its deadline. Returns how many expired.
    pub async fn expire_due(&self) -> Result<usize, GatewayError> {
        let now = self.now();
        let due = self.store.due_for_expiry(now, 1000).await?;
        let mut n = 0;
        for id in due {
            let (_, events) = self
                .transition(&id, now, Box::new(move |rec| Ok(rec.expire(now))))
                .await?;
            n += usize::from(!events.is_empty());
        }
        Ok(n)
    }

    /// Runs the expiry sweeper until the process ends: sleeps until the earliest deadline (at
    /// most a second), or until a new review opens.
    pub async fn run_sweeper(self: Arc<Self>) {
        loop {
            if let Err(e) = self.expire_due().await {
                tracing::warn!(error = %e, "expiry sweep failed; retrying");
            }
            let now = self.now();
            let sleep = match self.store.next_expiry().await {
                Ok(Some(t)) => {
                    Duration::from_millis((t.millis() - now.millis()).clamp(0, 1000) as u64)
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.sweeper.notified() => {}
            }
        }
    }

    /// The metrics, with the open-review gauge read from the store: it counts every replica's
    /// reviews, and is right after a restart without bookkeeping.
    pub async fn render_metrics(&self) -> String {
        match self.store.open_reviews().await {
            Ok(n) => {
                self.metrics.reviews_open.set(n as i64);
            }
            Err(e) => tracing::warn!(error = %e, "cannot count open reviews for the metrics"),
        }
        match self.store.outbox_counts().await {
            Ok(counts) => {
                self.metrics.outbox_notifications.clear();
                for (state, channel, n) in counts {
                    self.metrics
                        .outbox_notifications
                        .get_or_create(&crate::metrics::OutboxLabels {
                            channel,
                            state: state.as_str().to_string(),
                        })
                        .set(n as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot count outbox notifications"),
        }
        self.metrics.render()
    }
}
