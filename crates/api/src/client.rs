//! The typed client of API v1: one method per endpoint, one timeout policy ([`Timeouts`]), and
//! errors that carry the server's stable code ([`ClientError::Api`]).

use http::StatusCode;
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

use crate::{
    Action, AnswerRequest, ConsistencyProof, ConsistencyQuery, CreateKeyRequest, CreatedKey,
    Entries, EntriesQuery, ErrorBody, ErrorCode, Health, InclusionProof, InclusionQuery, KeyList,
    ManagedKey, RedeemRequest, Redeemed, ResultRequest, ReviewList, ReviewsQuery, SubmitRequest,
    Submitted, VoteRequest,
};

/// The server's longest long poll (`wait` above it is cut to it).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long the client waits, for every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// For a whole ordinary request (send and read the answer).
    pub request: Duration,
    /// Added to a long poll's `wait` for its whole request.
    pub long_poll_margin: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            long_poll_margin: Duration::from_secs(15),
            // Below the gateway's default header_read_timeout (10 s), which also closes idle
            // keep-alive connections: a pooled connection is never reused as the server closes it.
            pool_idle: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// The whole-request timeout of a long poll waiting up to `wait` (capped at [`MAX_WAIT`]).
    pub fn long_poll(&self, wait: Duration) -> Duration {
        wait.min(MAX_WAIT) + self.long_poll_margin
    }
}

/// A call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one a client can call.
    #[error("`{url}` is not a usable gateway URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// The gateway could not be reached, or did not answer in time.
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        /// The gateway's URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what API v1 says (not JSON, or not the documented shape).
    #[error("unreadable response ({status}): {detail}")]
    Unreadable {
        /// Its HTTP status.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
    /// The gateway refused the request with a stable code.
    #[error("{code}: {message}")]
    Api {
        /// Its HTTP status.
        status: StatusCode,
        /// The stable code as sent (see [`ClientError::error_code`]).
        code: String,
        /// The server's sentence: what happened and what to do.
        message: String,
    },
}

impl ClientError {
    /// The server's stable code, if the server refused the request with one this build knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }

    /// Whether the gateway refused the request (as opposed to not answering usably).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Api { .. })
    }
}

/// What `POST /v1/actions` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitAnswer {
    /// The action.
    pub submitted: Submitted<'static>,
    /// The idempotency key was seen before: this is the first answer again.
    pub replayed: bool,
    /// `reuse_open`: an earlier open action of the same request answered (200, not 201).
    pub reused: bool,
}

/// A client of one gateway, authenticating with one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    timeouts: Timeouts,
}

impl Client {
    /// A client of the gateway at `url` (e.g. `http://127.0.0.1:8760`) with `token`.
    pub fn new(url: &str, token: &str, timeouts: Timeouts) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let base = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(bad("use an http:// or https:// URL".into()));
        }
        // One TLS crypto library for the whole build: ring, installed here for rustls.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .pool_idle_timeout(timeouts.pool_idle);
        if base.scheme() == "http" {
            // No TLS to a plain-HTTP gateway: an empty trust store instead of the platform's,
            // whose loading (every file of /etc/ssl/certs) was most of a short-lived client's
            // start-up (`countersign run`). An https redirect then fails verification: closed.
            builder = builder.tls_certs_only([]);
        }
        let http = builder.build().map_err(ClientError::Build)?;
        Ok(Client {
            http,
            base,
            token: token.to_string(),
            timeouts,
        })
    }

    /// The gateway's URL.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the base (each segment percent-encoded: an id cannot
    /// reach another path).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http
            .request(method, self.endpoint(segments))
            .bearer_auth(&self.token)
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.url().to_string(),
                source,
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })?;
        match serde_json::from_slice::<ErrorBody<'_>>(&bytes) {
            Ok(body) => Err(ClientError::Api {
                status,
                code: body.code().to_string(),
                message: body.message().to_string(),
            }),
            Err(e) => Err(ClientError::Unreadable {
                status,
                detail: format!("not an API error body: {e}"),
            }),
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })
    }

    async fn text(&self, req: RequestBuilder) -> Result<String, ClientError> {
        let resp = self.send(req).await?;
        let status = resp.status();
        resp.text().await.map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })
    }

    fn post<B: Serialize + ?Sized>(&self, segments: &[&str], body: &B) -> RequestBuilder {
        self.request(Method::POST, segments).json(body)
    }

    /// `POST /v1/actions`, with an `Idempotency-Key` when given.
    pub async fn submit(
        &self,
        body: &SubmitRequest,
        idempotency_key: Option<&str>,
    ) -> Result<SubmitAnswer, ClientError> {
        let mut req = self.post(&["v1", "actions"], body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let resp = self.send(req).await?;
        let status = resp.status();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })?;
        let submitted = serde_json::from_slice(&bytes).map_err(|e| ClientError::Unreadable {
            status,
            detail: e.to_string(),
        })?;
        Ok(SubmitAnswer {
            submitted,
            replayed,
            reused: status == StatusCode::OK,
        })
    }

    /// `GET /v1/actions/{id}`.
    pub async fn get(&self, id: &str) -> Result<Action<'static>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "actions", id]))
            .await
    }

    /// `GET /v1/actions/{id}?wait=…`: the action once it leaves review, or after `wait`
    /// (capped at [`MAX_WAIT`]), whichever is first. The request may take `wait` plus
    /// [`Timeouts::long_poll_margin`].
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Action<'static>, ClientError> {
        let wait = wait.min(MAX_WAIT);
        let req = self
            .request(Method::GET, &["v1", "actions", id])
            .query(&[("wait", format!("{:.3}", wait.as_secs_f64()))])
            .timeout(self.timeouts.long_poll(wait));
        self.json(req).await
    }

    /// `GET /v1/reviews`.
    pub async fn reviews(&self, query: &ReviewsQuery) -> Result<ReviewList<'static>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "reviews"]).query(query))
            .await
    }

    /// `POST /v1/reviews/{id}/votes`.
    pub async fn vote(&self, id: &str, vote: &VoteRequest) -> Result<Action<'static>, ClientError> {
        self.json(self.post(&["v1", "reviews", id, "votes"], vote))
            .await
    }

    /// Approve (a vote).
    pub async fn approve(
        &self,
        id: &str,
        comment: Option<String>,
    ) -> Result<Action<'static>, ClientError> {
        self.vote(id, &VoteRequest::approve(comment)).await
    }

    /// Deny (a vote; one deny rejects).
    pub async fn deny(
        &self,
        id: &str,
        comment: Option<String>,
    ) -> Result<Action<'static>, ClientError> {
        self.vote(id, &VoteRequest::deny(comment)).await
    }

    /// Approve with these parameters instead (a vote).
    pub async fn modify(
        &self,
        id: &str,
        params: Value,
        comment: Option<String>,
    ) -> Result<Action<'static>, ClientError> {
        self.vote(id, &VoteRequest::modify(params, comment)).await
    }

    /// Ask the requester a question (a vote).
    pub async fn clarify(
        &self,
        id: &str,
        question: String,
    ) -> Result<Action<'static>, ClientError> {
        self.vote(id, &VoteRequest::clarify(question)).await
    }

    /// `POST /v1/actions/{id}/answer` (the requester answers a question).
    pub async fn answer(&self, id: &str, answer: String) -> Result<Action<'static>, ClientError> {
        let body = AnswerRequest { answer };
        self.json(self.post(&["v1", "actions", id, "answer"], &body))
            .await
    }

    /// `POST /v1/actions/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Action<'static>, ClientError> {
        self.json(self.request(Method::POST, &["v1", "actions", id, "cancel"]))
            .await
    }

    /// `POST /v1/actions/{id}/reveal`: the action with its masked values shown, for a person
    /// policy names (`@reveal`); audited.
    pub async fn reveal(&self, id: &str) -> Result<Action<'static>, ClientError> {
        self.json(self.request(Method::POST, &["v1", "actions", id, "reveal"]))
            .await
    }

    /// `POST /v1/grants/redeem`: uses the grant, once.
    pub async fn redeem(&self, token: &str) -> Result<Redeemed, ClientError> {
        let body = RedeemRequest {
            token: token.to_string(),
        };
        self.json(self.post(&["v1", "grants", "redeem"], &body))
            .await
    }

    /// `POST /v1/actions/{id}/credentials`: the credentials released to the grant's redeemer,
    /// once.
    pub async fn credentials(
        &self,
        id: &str,
        body: &crate::CredentialsRequest,
    ) -> Result<crate::ReleasedCredentials, ClientError> {
        self.json(self.post(&["v1", "actions", id, "credentials"], body))
            .await
    }

    /// `POST /v1/actions/{id}/result`.
    pub async fn report(
        &self,
        id: &str,
        result: &ResultRequest,
    ) -> Result<Action<'static>, ClientError> {
        self.json(self.post(&["v1", "actions", id, "result"], result))
            .await
    }

    /// `GET /v1/keys`: the grant-signing keys (a JWKS).
    pub async fn grant_keys(&self) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, &["v1", "keys"])).await
    }

    /// `GET /v1/admin/api-keys`.
    pub async fn list_keys(&self) -> Result<KeyList, ClientError> {
        self.json(self.request(Method::GET, &["v1", "admin", "api-keys"]))
            .await
    }

    /// `POST /v1/admin/api-keys`: the secret is in the answer only.
    pub async fn create_key(&self, body: &CreateKeyRequest) -> Result<CreatedKey, ClientError> {
        self.json(self.post(&["v1", "admin", "api-keys"], body))
            .await
    }

    /// `POST /v1/admin/api-keys/{id}/revoke`.
    pub async fn revoke_key(&self, id: &str) -> Result<ManagedKey, ClientError> {
        let req = self.request(Method::POST, &["v1", "admin", "api-keys", id, "revoke"]);
        self.json(req).await
    }

    /// `GET /v1/audit/checkpoint`: the latest signed checkpoint (a C2SP signed note).
    pub async fn checkpoint(&self) -> Result<String, ClientError> {
        self.text(self.request(Method::GET, &["v1", "audit", "checkpoint"]))
            .await
    }

    /// `GET /v1/audit/public-key`: the checkpoint verifier key.
    pub async fn audit_public_key(&self) -> Result<String, ClientError> {
        self.text(self.request(Method::GET, &["v1", "audit", "public-key"]))
            .await
    }

    /// `GET /v1/audit/entries`.
    pub async fn audit_entries(&self, query: &EntriesQuery) -> Result<Entries, ClientError> {
        let req = self
            .request(Method::GET, &["v1", "audit", "entries"])
            .query(query);
        self.json(req).await
    }

    /// `GET /v1/audit/proof/inclusion`.
    pub async fn inclusion(&self, query: &InclusionQuery) -> Result<InclusionProof, ClientError> {
        let req = self
            .request(Method::GET, &["v1", "audit", "proof", "inclusion"])
            .query(query);
        self.json(req).await
    }

    /// `GET /v1/audit/proof/consistency`.
    pub async fn consistency(
        &self,
        query: &ConsistencyQuery,
    ) -> Result<ConsistencyProof, ClientError> {
        let req = self
            .request(Method::GET, &["v1", "audit", "proof", "consistency"])
            .query(query);
        self.json(req).await
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, &["healthz"])).await
    }

    /// `GET /readyz`: `Ok` while the store writes; 503 `store_unavailable` otherwise.
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, &["readyz"])).await
    }

    /// `GET /v1/whoami`: the identity this client's token proves now (a 401 for an unknown,
    /// revoked or expired credential).
    pub async fn whoami(&self) -> Result<crate::WhoAmI, ClientError> {
        self.json(self.request(Method::GET, &["v1", "whoami"]))
            .await
    }

    /// Whether the gateway accepts this client's token now: any answer but a 401 to a read of
    /// an action that does not exist. A revoked key or an expired token (401 `key_revoked`,
    /// `token_expired`) does not authenticate. `false` when the gateway cannot be reached.
    pub async fn authenticates(&self) -> bool {
        let nil = "00000000-0000-0000-0000-000000000000";
        match self.get(nil).await {
            Ok(_) => true,
            Err(ClientError::Api { status, .. }) => status != StatusCode::UNAUTHORIZED,
            Err(_) => false,
        }
    }
}
