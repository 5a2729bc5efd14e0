//! `countersign run`'s credentials (issue #18): after the grant is redeemed, the credentials the
//! decision names are asked for once (`Gate::credentials`) and handed to the command only:
//! environment variables of the child (never of this process), and files in a private
//! temporary directory (mode 0700, files 0600) that is removed when the command is over.
//! Nothing here prints or logs a value.

use countersign_enforce::Gate;
use std::io::Write;

/// What the child receives. Dropping it removes the temporary directory.
#[derive(Default)]
pub struct Injected {
    env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
}

impl Injected {
    /// Adds the credentials to the child's environment.
    pub fn apply(&self, command: &mut tokio::process::Command) {
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    /// Removes the temporary files now (also done on drop).
    pub fn remove(self) -> std::io::Result<()> {
        match self.dir {
            Some(dir) => dir.close(),
            None => Ok(()),
        }
    }
}

fn private_dir() -> std::io::Result<tempfile::TempDir> {
    // tempfile makes directories 0700 on Unix.
    tempfile::Builder::new()
        .prefix("countersign-credentials-")
        .tempdir()
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Asks the gateway for the credentials `names` (as the redemption listed them) of action
/// `id`; none named, nothing asked.
pub async fn fetch(gate: &dyn Gate, id: &str, names: &[String]) -> Result<Injected, String> {
    if names.is_empty() {
        return Ok(Injected::default());
    }
    let released = gate.credentials(id, None).await.map_err(|e| {
        format!(
            "the credentials ({}) could not be released: {e}",
            names.join(", ")
        )
    })?;
    let until = released
        .expires_at
        .map(countersign_api::time::rfc3339)
        .unwrap_or_default();
    let mut vars: Vec<&str> = released.env.iter().map(|(k, _)| k.as_str()).collect();
    vars.extend(released.files.iter().map(|f| f.env.as_str()));
    eprintln!(
        "countersign run: credentials {} released for this action until {until} (in {})",
        names.join(", "),
        vars.join(", ")
    );
    let mut injected = Injected {
        env: released.env,
        dir: None,
    };
    if !released.files.is_empty() {
        let dir = private_dir().map_err(|e| format!("cannot make a private directory: {e}"))?;
        for f in &released.files {
            let plain = !f.name.is_empty()
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !f.name.starts_with('.');
            if !plain {
                return Err(format!(
                    "the gateway sent a credential file named {:?}",
                    f.name
                ));
            }
            let path = dir.path().join(&f.name);
            write_private(&path, &f.contents)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            injected
                .env
                .push((f.env.clone(), path.to_string_lossy().into_owned()));
        }
        injected.dir = Some(dir);
    }
    Ok(injected)
}
