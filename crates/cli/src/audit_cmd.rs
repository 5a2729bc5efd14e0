//! `countersign audit export|verify`: offline commands over the audit log, for operators and
//! auditors. They find the store through `--config FILE` or `--database URL` and never need a
//! running gateway.

use clap::{Args, Subcommand};
use countersign_audit::merkle::{stored_hash_index, stored_hash_owner};
use countersign_audit::note::{Signer, Verifier};
use countersign_audit::verify::{self, Verified};
use countersign_audit::Hash;
use countersign_evidence::{render_html, Anchor, Entry, Evidence};
use countersign_gateway::config::{parse_database_url, Config, DatabaseUrl};
use countersign_gateway::export::{self, ExportFormat};
use countersign_store::AuditLog;
use std::path::{Path, PathBuf};

/// Where the log is.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The gateway's configuration file (database, audit key and origin).
    #[arg(long, conflicts_with = "database")]
    config: Option<PathBuf>,
    /// The database URL, e.g. sqlite://data/countersign.db or postgres://user@host/db.
    #[arg(long)]
    database: Option<String>,
}

/// `countersign audit ...`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Export the log up to its latest checkpoint as a bundle that verifies offline.
    Export {
        /// jsonl: a bundle (entries + checkpoint + proofs) that verifies offline; csv: one row
        /// per entry for spreadsheets; ocsf: OCSF 1.5.0 events (API Activity 6003, Authorize
        /// Session 3003) as JSON Lines for Security Lake and SIEMs.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Only entries at or after this RFC 3339 time (the bundle then carries proofs).
        #[arg(long)]
        since: Option<String>,
        /// Only entries at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Verify the stored log, then write an HTML evidence report (SOC 2, ISO 27001, NIST 800-53
    /// controls, with charts) for a period, anchored to the latest signed checkpoint.
    Evidence {
        /// Where to write the report.
        #[arg(long)]
        out: PathBuf,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only entries at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// The verifier key (default: the log's key file beside the database).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Verify a bundle against the log's public key, or (with --database/--config) the stored
    /// log: recompute the tree from the rows and check every signed checkpoint.
    Verify {
        /// A bundle made by `audit export` (or give --database/--config for the stored log).
        #[arg(conflicts_with_all = ["config", "database"])]
        bundle: Option<PathBuf>,
        /// The verifier key (`name+hash+key`, as served at /v1/audit/public-key) or a file
        /// holding it.
        #[arg(long)]
        key: Option<String>,
        /// An earlier checkpoint (signed note file, e.g. from /v1/audit/checkpoint) the bundle or
        /// the stored log must be consistent with: the log still holds its entries, unchanged.
        #[arg(long)]
        previous_checkpoint: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Prove that a value is the original of a masked one: reads the value on stdin (one
    /// trailing newline is dropped) and checks it against a `commitment` from an entry's
    /// `masked` list, with the deployment's masking key (named by --config). Exit 0: it is the
    /// original; 1: it is not.
    CheckMasked {
        /// The commitment (64 hex digits) from the entry's `masked` list.
        #[arg(long)]
        commitment: String,
        /// The gateway's configuration file (its `masking_key` is used).
        #[arg(long)]
        config: PathBuf,
    },
}

/// `audit check-masked`: HMAC-SHA256 of stdin under the masking key against `commitment`.
fn check_masked(commitment: &str, config: &Path) -> Result<Result<String, String>, String> {
    use std::io::Read;
    let c = Config::load(config).map_err(|e| e.to_string())?;
    let key = std::fs::read_to_string(&c.masking_key)
        .map_err(|e| format!("{}: {e}", c.masking_key.display()))?;
    let key = hex::decode(key.trim())
        .map_err(|_| format!("{}: not a masking key", c.masking_key.display()))?;
    let masker = countersign_mask::Masker::new(&c.masking, &key).map_err(|e| e.to_string())?;
    if commitment.len() != 64 || !commitment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("--commitment must be 64 hex digits (from an entry's `masked` list)".into());
    }
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| format!("stdin: {e}"))?;
    let value = value.strip_suffix('\n').unwrap_or(&value);
    Ok(if masker.matches(value, &commitment.to_ascii_lowercase()) {
        Ok("the value is the masked original".to_string())
    } else {
        Err("the value is not the masked original".to_string())
    })
}

struct Located {
    db: DatabaseUrl,
    key_file: PathBuf,
}

fn locate(args: &StoreArgs) -> Result<Located, String> {
    if let Some(path) = &args.config {
        let c = Config::load(path).map_err(|e| e.to_string())?;
        return Ok(Located {
            db: c.database,
            key_file: c.audit_key,
        });
    }
    let url = args
        .database
        .as_deref()
        .ok_or("give --config FILE or --database URL")?;
    let db = parse_database_url(url, Path::new("."))?;
    let key_file = match &db {
        DatabaseUrl::Sqlite(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".audit-log.key");
            path.with_file_name(name)
        }
        // What a config file in this directory would name.
        DatabaseUrl::Postgres(_) => PathBuf::from("countersign.audit-log.key"),
    };
    Ok(Located { key_file, db })
}

fn verifier_from(text: &str) -> Option<Verifier> {
    let text = text.trim();
    Verifier::parse(text)
        .ok()
        .or_else(|| Signer::from_key_string(text).ok().map(|s| s.verifier()))
}

/// `--key` as a key string or a file; without it, the log's own key file beside the database.
fn load_key(key: Option<&str>, fallback: Option<&Path>) -> Result<Verifier, String> {
    if let Some(k) = key {
        if let Some(v) = verifier_from(k) {
            return Ok(v);
        }
        let text = std::fs::read_to_string(k)
            .map_err(|e| format!("--key {k}: neither a verifier key nor a readable file ({e})"))?;
        return verifier_from(&text)
            .ok_or_else(|| format!("--key {k}: no verifier key in the file"));
    }
    let path = fallback.ok_or("give --key (the log's public key)")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}; give --key (the log's public key)", path.display()))?;
    verifier_from(&text).ok_or_else(|| format!("{}: not an audit log key", path.display()))
}

fn parse_time(flag: &str, s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("{flag} {s}: not an RFC 3339 time ({e})"))
}

fn summary(v: &Verified) -> String {
    use base64::Engine;
    format!(
        "verified {} entries, tree size {}, root {}",
        v.entries,
        v.tree_size,
        base64::engine::general_purpose::STANDARD.encode(v.root)
    )
}

/// The entries of a time window (or all) up to the latest checkpoint, with that checkpoint.
async fn load_window(
    store: &dyn AuditLog,
    key: &Verifier,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<export::Window, String> {
    let since = since.map(|s| parse_time("--since", s)).transpose()?;
    let until = until.map(|s| parse_time("--until", s)).transpose()?;
    export::window(store, key, since, until)
        .await
        .map_err(|e| e.to_string())
}

fn parsed(entries: &[countersign_store::AuditEntry]) -> Result<Vec<Entry>, String> {
    export::parsed(entries).map_err(|e| e.to_string())
}

async fn export(
    format: &str,
    out: &Path,
    since: Option<&str>,
    until: Option<&str>,
    store_args: &StoreArgs,
) -> Result<String, String> {
    let Some(format) = ExportFormat::parse(format) else {
        return Err(format!("--format {format}: use jsonl, csv or ocsf"));
    };
    let at = locate(store_args)?;
    let key = load_key(None, Some(&at.key_file))?;
    let store = countersign_gateway::open_store(&at.db)
        .await
        .map_err(|e| e.to_string())?;
    let window = load_window(&*store, &key, since, until).await?;
    let size = window.checkpoint.size();
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let n = export::write(&*store, &window, format, std::io::BufWriter::new(file))
        .await
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(format!(
        "exported {n} entries (tree size {size}) to {}",
        out.display()
    ))
}

/// `audit evidence`: verifies the stored log, then reports on a window of it.
async fn evidence(
    out: &Path,
    since: Option<&str>,
    until: Option<&str>,
    key: Option<&str>,
    store_args: &StoreArgs,
) -> Result<Result<String, String>, String> {
    let at = locate(store_args)?;
    let key = load_key(key, Some(&at.key_file))?;
    // Evidence only from a log that verifies: figures over edited rows would prove nothing.
    let verified = match verify_database(&at, &key, None).await? {
        Ok(v) => v,
        Err(t) => return Ok(Err(format!("the log does not verify, no report made: {t}"))),
    };
    let store = countersign_gateway::open_store(&at.db)
        .await
        .map_err(|e| e.to_string())?;
    let window = load_window(&*store, &key, since, until).await?;
    let entries = parsed(&window.entries)?;
    let figures = Evidence::compute(&entries, since.map(String::from), until.map(String::from));
    use base64::Engine;
    let anchor = Anchor {
        origin: window.checkpoint.origin().to_string(),
        tree_size: window.checkpoint.size(),
        root: base64::engine::general_purpose::STANDARD.encode(window.checkpoint.root()),
        note: window.note.clone(),
        key: key.to_key_string(),
    };
    std::fs::write(out, render_html(&figures, &anchor))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(Ok(format!(
        "evidence report on {} entries (log verified: {} entries, {} checkpoints) written to {}",
        figures.entries,
        verified.entries,
        verified.checkpoints,
        out.display()
    )))
}

/// Reads the stored tables directly (not through the gateway's code) and verifies them.
/// `previous`: a signed checkpoint the stored log must be consistent with.
async fn verify_database(
    at: &Located,
    key: &Verifier,
    previous: Option<&str>,
) -> Result<Result<Verified, verify::Tamper>, String> {
    match &at.db {
        DatabaseUrl::Sqlite(path) => verify_sqlite(path, key, previous),
        DatabaseUrl::Postgres(url) => {
            let (entries, hashes, checkpoints) = crate::replicas_cmd::read_log(url).await?;
            Ok(verify_rows(entries, hashes, checkpoints, key, previous))
        }
    }
}

fn verify_sqlite(
    db: &Path,
    key: &Verifier,
    previous: Option<&str>,
) -> Result<Result<Verified, verify::Tamper>, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("{}: {e}", db.display()))?;
    let all = |sql: &str| -> Result<Vec<(u64, Vec<u8>)>, String> {
        let fail = |e: rusqlite::Error| format!("{}: {e}", db.display());
        let mut stmt = conn.prepare(sql).map_err(fail)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .map_err(fail)?
            .collect::<Result<_, _>>()
            .map_err(fail);
        rows
    };
    let entries = all("SELECT idx, body FROM audit_entries ORDER BY idx")?;
    let hashes = all("SELECT idx, hashes FROM audit_entries ORDER BY idx")?;
    let checkpoints: Vec<String> =
        all("SELECT size, CAST(note AS BLOB) FROM audit_checkpoints ORDER BY size")?
            .into_iter()
            .map(|(_, note)| String::from_utf8_lossy(&note).into_owned())
            .collect();
    Ok(verify_rows(entries, hashes, checkpoints, key, previous))
}

/// Verifies a log given its rows: `(index, entry bytes)`, `(index, stored hashes)` and the
/// signed checkpoint notes, all in order.
fn verify_rows(
    entries: Vec<(u64, Vec<u8>)>,
    hashes: Vec<(u64, Vec<u8>)>,
    checkpoints: Vec<String>,
    key: &Verifier,
    previous: Option<&str>,
) -> Result<Verified, verify::Tamper> {
    // Each entry row carries the Merkle hashes its append stored; in index order they tile the
    // stored-hash space, so concatenated they are the whole stored tree.
    let mut stored: Vec<Hash> = Vec::new();
    for (n, blob) in hashes {
        if stored_hash_index(0, n) != stored.len() as u64 {
            // A row is missing before this one: name the first missing entry.
            let (missing, _) = stored_hash_owner(stored.len() as u64);
            return Err(verify::Tamper::Deleted(missing));
        }
        if blob.len() != 32 * (1 + n.trailing_ones() as usize) {
            return Err(verify::Tamper::HashModified(stored.len() as u64));
        }
        stored.extend(
            blob.chunks_exact(32)
                .filter_map(|c| <[u8; 32]>::try_from(c).ok()),
        );
    }
    verify::verify_stored(entries, &stored, &checkpoints, key, previous)
}

/// The `--previous-checkpoint` note, read from its file.
fn read_previous(path: Option<&Path>) -> Result<Option<String>, String> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| format!("--previous-checkpoint {}: {e}", p.display()))
    })
    .transpose()
}

/// Runs an audit command; returns the exit code.
pub async fn run(cmd: AuditCommand) -> u8 {
    let result: Result<Result<String, String>, String> = match cmd {
        AuditCommand::CheckMasked { commitment, config } => check_masked(&commitment, &config),
        AuditCommand::Export {
            format,
            out,
            since,
            until,
            store,
        } => export(&format, &out, since.as_deref(), until.as_deref(), &store)
            .await
            .map(Ok),
        AuditCommand::Evidence {
            out,
            since,
            until,
            key,
            store,
        } => {
            evidence(
                &out,
                since.as_deref(),
                until.as_deref(),
                key.as_deref(),
                &store,
            )
            .await
        }
        AuditCommand::Verify {
            bundle: Some(path),
            key,
            previous_checkpoint,
            ..
        } => (|| {
            let key = load_key(key.as_deref(), None)?;
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let previous = read_previous(previous_checkpoint.as_deref())?;
            Ok(verify::verify_bundle(&text, &key, previous.as_deref())
                .map(|v| summary(&v))
                .map_err(|t| t.to_string()))
        })(),
        AuditCommand::Verify {
            bundle: None,
            key,
            previous_checkpoint,
            store,
        } => {
            async {
                let at = locate(&store)?;
                let key = load_key(key.as_deref(), Some(&at.key_file))?;
                let previous = read_previous(previous_checkpoint.as_deref())?;
                Ok(verify_database(&at, &key, previous.as_deref())
                    .await?
                    .map(|v| {
                        format!(
                            "{}, {} signed checkpoints match",
                            summary(&v),
                            v.checkpoints
                        )
                    })
                    .map_err(|t| t.to_string()))
            }
            .await
        }
    };
    match result {
        Ok(Ok(msg)) => {
            println!("{msg}");
            0
        }
        Ok(Err(tamper)) => {
            eprintln!("countersign: verification FAILED: {tamper}");
            1
        }
        Err(e) => {
            eprintln!("countersign: {e}");
            2
        }
    }
}
