//! The gateway's credential use cases: release to the redeemer of a grant, revoke when the
//! action is over, and the sweeper that revokes at the end of a lifetime. The rules are the
//! core's (`ActionRecord::may_release`, `release_credentials`, `credentials_to_revoke`); this
//! file mints, records and revokes in the order that keeps a failure safe.

use countersign_core::{ActionRecord, CredentialTerms, Identity, RevokeReason, Timestamp};
use std::sync::Arc;
use std::time::Duration;

use super::{CredentialError, IssueRequest, Issued};
use crate::{Gateway, GatewayError};

/// One credential as released: its name and kind, and the secret parts.
#[derive(Debug, Clone)]
pub struct ReleasedOne {
    /// The configured name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// The secret parts for the child.
    pub issued: Issued,
}

/// What a release answers: every credential the decision names, and when they end.
#[derive(Debug, Clone)]
pub struct Release {
    /// The action.
    pub action_id: String,
    /// When the credentials' lifetime ends.
    pub expires_at: Timestamp,
    /// The credentials.
    pub credentials: Vec<ReleasedOne>,
}

impl Gateway {
    /// The configured terms of each credential `record`'s decision names; a name that is no
    /// longer configured refuses the release (fail closed).
    fn terms(&self, record: &ActionRecord) -> Result<Vec<CredentialTerms>, GatewayError> {
        record
            .decision
            .credentials
            .iter()
            .map(|name| {
                let c = self.credentials.get(name).ok_or_else(|| {
                    GatewayError::Credential(CredentialError::Unavailable {
                        name: name.clone(),
                        message: "it is no longer configured".into(),
                    })
                })?;
                Ok(CredentialTerms {
                    name: c.name.clone(),
                    kind: c.kind.kind().to_string(),
                    lifetime: c.lifetime,
                })
            })
            .collect()
    }

    /// Releases the credentials the action's decision names to `who`, the redeemer of its
    /// grant, once. The core's rule is checked before anything is minted and again, atomically,
    /// when the release is recorded; whatever was minted for a release that is then refused or
    /// fails is revoked at once. `public_key`: an SSH public key to certify (kinds that sign).
    /// `source`: the address the request came from, as this gateway's connection saw it
    /// (`None` when not over the network).
    pub async fn release_credentials(
        &self,
        who: &Identity,
        id: &str,
        public_key: Option<&str>,
        source: Option<std::net::IpAddr>,
    ) -> Result<Release, GatewayError> {
        let record = self.get(who, id).await?.record;
        let now = self.now();
        let terms = if record.decision.credentials.is_empty() {
            Vec::new()
        } else {
            self.terms(&record)?
        };
        let expires_at = match record.may_release(who, &terms, now) {
            Ok(t) => t,
            Err(e) => {
                self.refused(
                    who,
                    "credentials",
                    Some(id),
                    e.code(),
                    e.is_security_relevant(),
                )
                .await;
                return Err(e.into());
            }
        };
        let mut minted: Vec<ReleasedOne> = Vec::new();
        for t in &terms {
            let Some(c) = self.credentials.get(&t.name) else {
                continue;
            };
            let req = IssueRequest {
                action_id: &record.id,
                to: &who.id,
                spec: &record.spec,
                now,
                expires_at,
                public_key,
                source,
            };
            match c.kind.issue(&req).await {
                Ok(issued) => minted.push(ReleasedOne {
                    name: t.name.clone(),
                    kind: t.kind.clone(),
                    issued,
                }),
                Err(e) => {
                    tracing::warn!(action = %record.id, error = %e, "could not mint a credential");
                    self.revoke_minted(&record.id, &minted).await;
                    return Err(GatewayError::Credential(e));
                }
            }
        }
        let me = who.clone();
        let recorded = terms.clone();
        let result = self
            .attempt(
                who,
                "credentials",
                id,
                now,
                Box::new(move |rec| rec.release_credentials(&me, &recorded, now)),
            )
            .await;
        match result {
            Ok((record, _)) => {
                let expires_at = record
                    .credentials
                    .first()
                    .map_or(expires_at, |c| c.expires_at);
                Ok(Release {
                    action_id: record.id,
                    expires_at,
                    credentials: minted,
                })
            }
            Err(e) => {
                self.revoke_minted(&record.id, &minted).await;
                Err(e)
            }
        }
    }

    async fn revoke_minted(&self, action_id: &str, minted: &[ReleasedOne]) {
        for m in minted {
            if let Some(c) = self.credentials.get(&m.name) {
                if let Err(e) = c.kind.revoke(action_id).await {
                    tracing::error!(action = %action_id, credential = %m.name, error = %e,
                        "could not revoke a credential minted for a release that failed; it ends with its lifetime");
                }
            }
        }
    }

    /// Revokes what the core says is due for `record` (the action is over, or a lifetime
    /// ended) and records each revocation. A failure is logged; the sweeper tries again at the
    /// end of the lifetime. Returns the record as it now is.
    pub(crate) async fn revoke_credentials(&self, record: ActionRecord) -> ActionRecord {
        let now = self.now();
        let mut record = record;
        for (name, reason) in record.credentials_to_revoke(now) {
            let Some(c) = self.credentials.get(&name) else {
                continue;
            };
            if let Err(e) = c.kind.revoke(&record.id).await {
                tracing::warn!(action = %record.id, credential = %name, error = %e,
                    "could not revoke a credential; retried when its lifetime ends");
                continue;
            }
            record = self
                .record_revoked(&record.id, &name, reason, now)
                .await
                .unwrap_or(record);
        }
        record
    }

    async fn record_revoked(
        &self,
        id: &str,
        name: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Option<ActionRecord> {
        let name = name.to_string();
        match self
            .transition(
                id,
                now,
                Box::new(move |rec| Ok(rec.credential_revoked(&name, reason, now))),
            )
            .await
        {
            Ok((record, _)) => Some(record),
            Err(e) => {
                tracing::warn!(action = %id, error = %e, "could not record a revoked credential");
                None
            }
        }
    }

    /// Checks every configured credential's kind once (at start): e.g. that a static secret's
    /// stored value opens with the configured key. An error names the credential.
    pub async fn check_credentials(&self) -> Result<(), GatewayError> {
        for c in self.credentials.all() {
            c.kind.check().await.map_err(|e| {
                GatewayError::Startup(format!("[[credentials]] \"{}\": {e}", c.name))
            })?;
        }
        Ok(())
    }

    /// One pass of the credential sweeper: every kind's credentials past their lifetime are
    /// revoked and recorded. Returns how many were revoked.
    pub async fn revoke_expired_credentials(&self) -> usize {
        let now = self.now();
        let mut n = 0;
        for c in self.credentials.all() {
            let ids = match c.kind.expired(now).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(credential = %c.name, error = %e, "credential sweep failed; retrying");
                    continue;
                }
            };
            for id in ids {
                if let Err(e) = c.kind.revoke(&id).await {
                    tracing::warn!(action = %id, credential = %c.name, error = %e, "could not revoke an expired credential");
                    continue;
                }
                n += 1;
                let reason = match self.store.get(&id).await {
                    Ok(Some(rec)) => rec
                        .credentials_to_revoke(now)
                        .into_iter()
                        .find(|(name, _)| name == &c.name)
                        .map_or(RevokeReason::Expired, |(_, r)| r),
                    _ => RevokeReason::Expired,
                };
                self.record_revoked(&id, &c.name, reason, now).await;
            }
        }
        n
    }

    /// Runs the credential sweeper until the process ends (a leased worker of the server
    /// bootstrap): once a second, revokes what outlived its lifetime.
    pub async fn run_credential_sweeper(self: Arc<Self>) {
        if self.credentials.is_empty() {
            return;
        }
        loop {
            self.revoke_expired_credentials().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
