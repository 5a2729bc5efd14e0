//! Kind `postgres_role`: a PostgreSQL login role made for one action.
//!
//! The gateway connects with the admin URL and creates `cs_<action>_<credential>` with
//! `LOGIN`, a random password (sent as a SCRAM-SHA-256 verifier, so the plaintext is never in
//! the server's statement log), `VALID UNTIL` the end of its lifetime and membership of
//! `member_of`. The child gets a full connection URL. Revoking makes it `NOLOGIN`, terminates
//! its sessions (`pg_terminate_backend`), hands what it created to the first `member_of` role
//! (`REASSIGN OWNED`, so a migration's tables survive the role), and drops it.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};
use tokio_postgres::NoTls;

use super::{CredentialError, CredentialKind, IssueRequest, Issued, Secret};
use countersign_core::Timestamp;

/// The prefix of every role this kind makes.
const PREFIX: &str = "cs_";

/// Makes and drops login roles on one PostgreSQL server.
pub struct PostgresRole {
    name: String,
    pool: Pool,
    admin_url: Secret,
    member_of: Vec<String>,
    env: String,
    /// `_<8 hex of the credential's name>`: distinguishes two credentials on one server.
    suffix: String,
}

/// A role or other identifier, double-quoted (embedded quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The role made for `action_id` by the credential with suffix `suffix`: `cs_` and the action's
/// UUID as 32 hex digits (so an expired role names its action), or `None` for an id that is
/// not a UUID.
fn role_name(action_id: &str, suffix: &str) -> Option<String> {
    let uuid = uuid::Uuid::parse_str(action_id).ok()?;
    Some(format!("{PREFIX}{}{suffix}", uuid.simple()))
}

/// The action id a role of this credential was made for.
fn action_of(role: &str, suffix: &str) -> Option<String> {
    let hex = role.strip_prefix(PREFIX)?.strip_suffix(suffix)?;
    Some(uuid::Uuid::parse_str(hex).ok()?.hyphenated().to_string())
}

/// `admin_url` with its user and password replaced: what the child connects with.
fn child_url(admin_url: &str, user: &str, password: &str) -> Result<String, String> {
    let mut url = url::Url::parse(admin_url)
        .map_err(|e| format!("`admin_url` is not a postgres:// URL ({e})"))?;
    url.set_username(user)
        .and_then(|()| url.set_password(Some(password)))
        .map_err(|()| "`admin_url` must be a postgres:// URL with a host".to_string())?;
    Ok(url.to_string())
}

fn since_epoch(t: Timestamp) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(t.millis()).unwrap_or(0))
}

impl PostgresRole {
    /// A kind for the credential `name`; connects to nothing until used.
    pub fn new(
        name: &str,
        admin_url: &Secret,
        member_of: &[String],
        env: &str,
    ) -> Result<PostgresRole, String> {
        let config = tokio_postgres::Config::from_str(admin_url.expose()).map_err(|e| {
            format!("[[credentials]] \"{name}\": `admin_url` is not a PostgreSQL URL ({e})")
        })?;
        // Checked now so that minting cannot fail on it later.
        child_url(admin_url.expose(), "u", "p")
            .map_err(|e| format!("[[credentials]] \"{name}\": {e}"))?;
        let mgr = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(4)
            .build()
            .map_err(|e| format!("[[credentials]] \"{name}\": {e}"))?;
        let digest = Sha256::digest(name.as_bytes());
        Ok(PostgresRole {
            name: name.to_string(),
            pool,
            admin_url: admin_url.clone(),
            member_of: member_of.to_vec(),
            env: env.to_string(),
            suffix: format!("_{}", hex::encode(&digest[..4])),
        })
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> CredentialError {
        CredentialError::Unavailable {
            name: self.name.clone(),
            message: e.to_string(),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, CredentialError> {
        self.pool.get().await.map_err(|e| self.unavailable(e))
    }

    async fn drop_role(&self, role: &str) -> Result<(), CredentialError> {
        let client = self.client().await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(|e| self.unavailable(e))?
            .is_some();
        if !exists {
            return Ok(());
        }
        let quoted = quote_ident(role);
        // No new sessions, then end the open ones, then drop.
        client
            .batch_execute(&format!("ALTER ROLE {quoted} NOLOGIN"))
            .await
            .map_err(|e| self.unavailable(e))?;
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&role],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let heir = self
            .member_of
            .first()
            .map_or_else(|| "CURRENT_USER".to_string(), |r| quote_ident(r));
        client
            .batch_execute(&format!(
                "REASSIGN OWNED BY {quoted} TO {heir}; DROP OWNED BY {quoted}; DROP ROLE IF EXISTS {quoted}"
            ))
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }
}

#[async_trait]
impl CredentialKind for PostgresRole {
    fn kind(&self) -> &'static str {
        "postgres_role"
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued, CredentialError> {
        let role = role_name(req.action_id, &self.suffix).ok_or_else(|| {
            self.unavailable("the action id is not a UUID; a role cannot be named after it")
        })?;
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let password = hex::encode(bytes);
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let until = humantime::format_rfc3339_millis(since_epoch(req.expires_at)).to_string();
        // INHERIT: the role has its groups' privileges without `SET ROLE`.
        let mut sql = format!(
            "CREATE ROLE {} LOGIN INHERIT PASSWORD '{verifier}' VALID UNTIL '{until}'",
            quote_ident(&role)
        );
        if !self.member_of.is_empty() {
            let roles: Vec<String> = self.member_of.iter().map(|r| quote_ident(r)).collect();
            sql.push_str(&format!(" IN ROLE {}", roles.join(", ")));
        }
        // Not waiting for the commit's flush: a role lost in a database crash is a credential
        // that does not work (fail closed), and the flush was a third of the minting time.
        // Dropping (revoke) stays synchronous. One simple query is one implicit transaction:
        // `SET LOCAL` ends with it, and an error rolls it back and leaves the pooled session clean.
        let sql = format!("SET LOCAL synchronous_commit TO OFF; {sql}");
        let client = self.client().await?;
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| self.unavailable(e))?;
        let url = child_url(self.admin_url.expose(), &role, &password)
            .map_err(|e| self.unavailable(e))?;
        Ok(Issued {
            env: vec![(self.env.clone(), Secret::new(url))],
            files: Vec::new(),
        })
    }

    async fn revoke(&self, action_id: &str) -> Result<(), CredentialError> {
        match role_name(action_id, &self.suffix) {
            Some(role) => self.drop_role(&role).await,
            None => Ok(()),
        }
    }

    async fn expired(&self, now: Timestamp) -> Result<Vec<String>, CredentialError> {
        let client = self.client().await?;
        let pattern = format!("{PREFIX}%{}", self.suffix);
        let rows = client
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 AND rolvaliduntil <= $2",
                &[&pattern, &since_epoch(now)],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| action_of(r.get::<_, &str>(0), &self.suffix))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn roles_are_named_after_their_action_and_back() {
        let id = "01900000-0000-7000-8000-000000000abc";
        let role = role_name(id, "_deadbeef").unwrap();
        assert_eq!(role, "cs_01900000000070008000000000000abc_deadbeef");
        assert!(role.len() <= 63);
        assert_eq!(action_of(&role, "_deadbeef").as_deref(), Some(id));
        assert_eq!(action_of(&role, "_other"), None);
        assert_eq!(role_name("not-a-uuid", "_x"), None);
    }

    #[test]
    fn the_child_url_swaps_the_user_and_password() {
        let u = child_url(
            "postgres://admin:hunter2@db:5432/app?sslmode=disable",
            "cs_x",
            "pw",
        )
        .unwrap();
        assert_eq!(u, "postgres://cs_x:pw@db:5432/app?sslmode=disable");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
