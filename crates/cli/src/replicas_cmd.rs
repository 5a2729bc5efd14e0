//! `countersign migrate`, and PostgreSQL reads for the offline audit commands.

use clap::Args;
use countersign_gateway::config::{parse_database_url, Config, DatabaseUrl};
use std::path::{Path, PathBuf};

/// `countersign migrate`: apply pending schema migrations and exit.
#[derive(Args)]
pub struct MigrateArgs {
    /// The gateway's configuration file (its `database`).
    #[arg(long, conflicts_with = "database")]
    config: Option<PathBuf>,
    /// The database URL, e.g. postgres://user@host:5432/db or sqlite://PATH.
    #[arg(long)]
    database: Option<String>,
}

/// Runs `migrate`; returns the exit code.
pub async fn migrate(args: MigrateArgs) -> u8 {
    let db = match (&args.config, &args.database) {
        (Some(path), _) => Config::load(path)
            .map(|c| c.database)
            .map_err(|e| e.to_string()),
        (None, Some(url)) => parse_database_url(url, Path::new(".")),
        (None, None) => Err("give --config FILE or --database URL".to_string()),
    };
    let result = match db {
        Err(e) => Err(e),
        Ok(DatabaseUrl::Postgres(url)) => countersign_store::migrate_postgres(&url)
            .await
            .map(|(before, after)| {
                if before == after {
                    format!("schema is up to date (version {after})")
                } else {
                    format!("migrated schema from version {before} to {after}")
                }
            })
            .map_err(|e| e.to_string()),
        // SQLite creates and checks its schema whenever it is opened.
        Ok(DatabaseUrl::Sqlite(path)) => countersign_store::SqliteStore::open(&path)
            .map(|_| format!("{}: schema is up to date", path.display()))
            .map_err(|e| format!("{}: {e}", path.display())),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("countersign: migrate: {e}");
            2
        }
    }
}

type Rows = Vec<(u64, Vec<u8>)>;

/// The audit tables of a PostgreSQL database, read directly: entries, stored hashes and
/// checkpoint notes, each in order (for `audit verify --database postgres://...`).
pub async fn read_log(url: &str) -> Result<(Rows, Rows, Vec<String>), String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    let driver = tokio::spawn(conn);
    let fail = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(d) => format!("PostgreSQL: {}", d.message()),
        None => format!("PostgreSQL: {e}"),
    };
    // One snapshot for all three reads, so concurrent appends cannot tear them.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(fail)?;
    let pairs = |rows: Vec<tokio_postgres::Row>| -> Rows {
        rows.into_iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
            .collect()
    };
    let entries = pairs(
        client
            .query("SELECT idx, body FROM audit_entries ORDER BY idx", &[])
            .await
            .map_err(fail)?,
    );
    let hashes = pairs(
        client
            .query("SELECT idx, hashes FROM audit_entries ORDER BY idx", &[])
            .await
            .map_err(fail)?,
    );
    let checkpoints = client
        .query("SELECT note FROM audit_checkpoints ORDER BY size", &[])
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let _ = client.batch_execute("COMMIT").await;
    drop(client);
    let _ = driver.await;
    Ok((entries, hashes, checkpoints))
}
