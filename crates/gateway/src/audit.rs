//! The audit log as the gateway runs it: signs a checkpoint (a C2SP signed note) at least every
//! second while entries arrive, never one inconsistent with the previous checkpoint, and serves
//! entries and proofs.
//!
//! The Merkle functions of `countersign-audit` read stored hashes synchronously and ask for all
//! they need in one call; [`with_hashes`] runs such a function twice, first to learn which
//! hashes it needs, then with those hashes fetched from the (async) store.

use countersign_audit::checkpoint::Checkpoint;
use countersign_audit::merkle::{check_tree, prove_record, prove_tree, tree_hash};
use countersign_audit::note::{self, Signer, Verifier};
use countersign_audit::{Hash, HashReader, TreeError};
use countersign_core::Timestamp;
use countersign_store::{Store, StoredCheckpoint};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::GatewayError;

/// How often the checkpointer looks for new entries.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The indexes a tree function asked for (first pass).
#[derive(Debug)]
pub struct Needed(Vec<u64>);

impl std::fmt::Display for Needed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} stored hashes not fetched", self.0.len())
    }
}

impl std::error::Error for Needed {}

struct Recorder;

impl HashReader for Recorder {
    type Error = Needed;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Needed> {
        Err(Needed(indexes.to_vec()))
    }
}

struct Prefetched(HashMap<u64, Hash>);

impl HashReader for Prefetched {
    type Error = Needed;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Needed> {
        indexes
            .iter()
            .map(|i| self.0.get(i).copied().ok_or_else(|| Needed(vec![*i])))
            .collect()
    }
}

type Reader<'a> = &'a dyn HashReader<Error = Needed>;

/// Runs a tree function against the store's stored hashes.
pub async fn with_hashes<T>(
    store: &dyn countersign_store::AuditLog,
    f: impl Fn(Reader<'_>) -> Result<T, TreeError<Needed>>,
) -> Result<T, GatewayError> {
    let invalid = |e: TreeError<Needed>| GatewayError::Invalid(e.to_string());
    match f(&Recorder) {
        Ok(t) => Ok(t),
        Err(TreeError::Read(Needed(indexes))) => {
            let hashes = store.audit_hashes(&indexes).await?;
            let map = indexes.into_iter().zip(hashes).collect();
            f(&Prefetched(map)).map_err(invalid)
        }
        Err(e) => Err(invalid(e)),
    }
}

/// A problem with the audit key file.
#[derive(Debug, thiserror::Error)]
#[error("audit log key {path}: {message}")]
pub struct AuditKeyError {
    path: String,
    message: String,
}

/// The log's signing identity and the checkpointer.
pub struct AuditLog {
    store: Arc<dyn Store>,
    signer: Signer,
    verifier: Verifier,
    origin: String,
}

/// A proof with the sizes it is for.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The hashes, lowest level first.
    pub hashes: Vec<Hash>,
}

impl AuditLog {
    /// Loads the note signing key (`PRIVATE+KEY+...`) at `path`, or creates one named `origin`
    /// there (mode 0600).
    pub fn open(
        store: Arc<dyn Store>,
        path: &Path,
        origin: &str,
    ) -> Result<AuditLog, AuditKeyError> {
        let err = |message: String| AuditKeyError {
            path: path.display().to_string(),
            message,
        };
        let text = crate::grants::read_or_publish(path, || {
            note::generate_key(origin, &mut rand::rngs::OsRng)
                .map(|(signer, _)| signer.to_key_string())
                .map_err(|e| format!("`{origin}` cannot name a key: {e}"))
        })
        .map_err(err)?;
        let signer = Signer::from_key_string(text.trim()).map_err(|e| err(e.to_string()))?;
        if signer.name() != origin {
            return Err(err(format!(
                "the key is named `{}` but `audit_origin` is `{origin}`",
                signer.name()
            )));
        }
        let verifier = signer.verifier();
        Ok(AuditLog {
            store,
            signer,
            verifier,
            origin: origin.to_string(),
        })
    }

    /// The verifier key, in signed-note form (`<name>+<hash>+<key>`).
    pub fn public_key(&self) -> String {
        self.verifier.to_key_string()
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Parses and verifies one of our own checkpoints.
    pub fn open_checkpoint(&self, note_text: &str) -> Result<Checkpoint, GatewayError> {
        let opened = note::open(note_text, std::slice::from_ref(&self.verifier))
            .map_err(|e| GatewayError::Invalid(format!("stored checkpoint: {e}")))?;
        Checkpoint::parse(&opened.text)
            .map_err(|e| GatewayError::Invalid(format!("stored checkpoint: {e}")))
    }

    /// Signs a checkpoint if the log grew since the last one. Refuses (and says so loudly) when
    /// the entries are not consistent with the previous checkpoint: that means the database was
    /// changed behind the gateway's back.
    pub async fn checkpoint_if_grown(
        &self,
        now: Timestamp,
    ) -> Result<Option<StoredCheckpoint>, GatewayError> {
        let size = self.store.audit_size().await?;
        let previous = self.store.latest_checkpoint().await?;
        if previous.as_ref().is_some_and(|p| p.size >= size) {
            return Ok(None);
        }
        let store = self.store.as_ref();
        let root = with_hashes(store, |r| tree_hash(size, r)).await?;
        if let Some(prev) = &previous {
            let old = self.open_checkpoint(&prev.note)?;
            let proof = with_hashes(store, |r| prove_tree(size, old.size(), r)).await?;
            check_tree(&proof, size, &root, old.size(), old.root()).map_err(|e| {
                GatewayError::Invalid(format!(
                    "the audit log of {size} entries is not consistent with checkpoint {}: {e}; \
                     refusing to sign (run `countersign audit verify --database`)",
                    old.size()
                ))
            })?;
        }
        let text = Checkpoint::new(self.origin.clone(), size, root)
            .map_err(|e| GatewayError::Invalid(e.to_string()))?
            .to_text();
        let signed =
            note::sign(&text, &self.signer).map_err(|e| GatewayError::Invalid(e.to_string()))?;
        let cp = StoredCheckpoint {
            size,
            at: now,
            note: signed,
        };
        self.store.add_checkpoint(cp.clone()).await?;
        Ok(Some(cp))
    }

    /// How many entries the log holds.
    pub async fn size(&self) -> Result<u64, GatewayError> {
        Ok(self.store.audit_size().await?)
    }

    /// The latest checkpoint.
    pub async fn latest(&self) -> Result<Option<StoredCheckpoint>, GatewayError> {
        Ok(self.store.latest_checkpoint().await?)
    }

    /// Inclusion proof of entry `index` in the tree of `tree_size` entries.
    pub async fn inclusion(&self, index: u64, tree_size: u64) -> Result<Proof, GatewayError> {
        self.check_size(tree_size).await?;
        let hashes =
            with_hashes(self.store.as_ref(), |r| prove_record(tree_size, index, r)).await?;
        Ok(Proof { hashes })
    }

    /// Consistency proof between tree sizes `first` ≤ `second`.
    pub async fn consistency(&self, first: u64, second: u64) -> Result<Proof, GatewayError> {
        self.check_size(second).await?;
        let hashes = with_hashes(self.store.as_ref(), |r| prove_tree(second, first, r)).await?;
        Ok(Proof { hashes })
    }

    async fn check_size(&self, size: u64) -> Result<(), GatewayError> {
        let have = self.store.audit_size().await?;
        if size > have {
            return Err(GatewayError::Invalid(format!(
                "the log has {have} entries; tree size {size} does not exist yet"
            )));
        }
        Ok(())
    }
}
