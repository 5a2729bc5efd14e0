//! Kind `ssh_certificate`: the gateway is an SSH certificate authority. For an approved
//! `ssh ... HOST COMMAND` it signs a fresh Ed25519 key (or the caller's public key) as a user
//! certificate for the configured principal, with `force-command` = exactly the approved remote
//! command and a validity that ends with the credential's lifetime. A certificate cannot be
//! taken back: it is short-lived by construction, so revoking does nothing.
//!
//! The CA key is an OpenSSH private key file (default beside the database, like the signing
//! keys), made on first start with its public key beside it (`.pub`) for sshd's
//! `TrustedUserCAKeys`.

use async_trait::async_trait;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::io::Write;
use std::path::Path;

use super::{
    CredentialError, CredentialKind, IssueRequest, Issued, IssuedFile, Secret, SourceAddress,
};
use countersign_core::Timestamp;

/// Signs user certificates for one principal.
pub struct SshCertificate {
    name: String,
    ca: PrivateKey,
    principal: String,
    source_address: Vec<SourceAddress>,
    env: String,
}

/// Options of `ssh` that take a value (`-p 22`, `-p22`), from ssh(1).
const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// The remote command of an `ssh` command line: the words after the destination, joined by
/// spaces as ssh itself joins them. `None` when the program is not `ssh` or names no command.
pub fn remote_command(argv: &[String]) -> Option<String> {
    let program = argv.first()?;
    if Path::new(program).file_name()?.to_str()? != "ssh" {
        return None;
    }
    let mut args = argv.iter().skip(1);
    let mut destination = None;
    while let Some(a) = args.next() {
        if a == "--" {
            destination = args.next();
            break;
        }
        match a.strip_prefix('-') {
            Some(flags) if !flags.is_empty() => {
                for (i, c) in flags.char_indices() {
                    if WITH_VALUE.contains(c) {
                        if i + c.len_utf8() == flags.len() {
                            args.next()?;
                        }
                        break;
                    }
                }
            }
            _ => {
                destination = Some(a);
                break;
            }
        }
    }
    destination?;
    let words: Vec<&str> = args.map(String::as_str).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Loads the CA key at `path`, or makes one (and writes its public key to `PATH.pub`).
pub fn load_or_create_ca(path: &Path) -> Result<PrivateKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text)
            .map_err(|e| format!("{}: not an OpenSSH private key ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
                .map_err(|e| format!("cannot make an SSH CA key: {e}"))?;
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("cannot encode the SSH CA key: {e}"))?;
            write_private(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
            let public = key
                .public_key()
                .to_openssh()
                .map_err(|e| format!("cannot encode the SSH CA public key: {e}"))?;
            let mut pub_path = path.as_os_str().to_owned();
            pub_path.push(".pub");
            std::fs::write(&pub_path, format!("{public}\n"))
                .map_err(|e| format!("{}: {e}", Path::new(&pub_path).display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn seconds(t: Timestamp) -> u64 {
    u64::try_from(t.millis().div_euclid(1000)).unwrap_or(0)
}

impl SshCertificate {
    /// A CA for the credential `name`, with its key at `ca_key` (made if missing).
    pub fn new(
        name: &str,
        ca_key: &Path,
        principal: &str,
        source_address: &[SourceAddress],
        env: &str,
    ) -> Result<SshCertificate, String> {
        let ca =
            load_or_create_ca(ca_key).map_err(|e| format!("[[credentials]] \"{name}\": {e}"))?;
        Ok(SshCertificate {
            name: name.to_string(),
            ca,
            principal: principal.to_string(),
            source_address: source_address.to_vec(),
            env: env.to_string(),
        })
    }

    /// The certificate's `source-address` option (sshd's comma-separated CIDR list) for a
    /// request from `source`, or `None` for no restriction. `requester` needs the request's
    /// address: without one (an embedded gateway) nothing is issued (fail closed).
    fn source_address(
        &self,
        source: Option<std::net::IpAddr>,
    ) -> Result<Option<String>, CredentialError> {
        if self.source_address.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::new();
        for entry in &self.source_address {
            let net = match entry {
                SourceAddress::Net(n) => n.clone(),
                SourceAddress::Requester => {
                    let ip = source.map(|ip| ip.to_canonical()).ok_or_else(|| {
                        self.invalid(
                            "`source_address` names \"requester\", but this request did not come \
                             over the network (an embedded gateway); use the gateway's HTTP API",
                        )
                    })?;
                    let len = if ip.is_ipv4() { 32 } else { 128 };
                    format!("{ip}/{len}")
                }
            };
            if !list.contains(&net) {
                list.push(net);
            }
        }
        Ok(Some(list.join(",")))
    }

    fn invalid(&self, message: impl Into<String>) -> CredentialError {
        CredentialError::Invalid {
            name: self.name.clone(),
            message: message.into(),
        }
    }

    fn failed(&self, e: impl std::fmt::Display) -> CredentialError {
        CredentialError::Unavailable {
            name: self.name.clone(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl CredentialKind for SshCertificate {
    fn kind(&self) -> &'static str {
        "ssh_certificate"
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued, CredentialError> {
        let argv: Vec<String> = req
            .spec
            .params
            .get("argv")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let command = remote_command(&argv).ok_or_else(|| {
            self.invalid(
                "an SSH certificate is for an approved `ssh [options] HOST COMMAND`; this action names no remote command",
            )
        })?;
        let source_address = self.source_address(req.source)?;
        let (public, private) = match req.public_key {
            Some(text) => (
                PublicKey::from_openssh(text).map_err(|e| {
                    self.invalid(format!("`public_key` is not an OpenSSH public key ({e})"))
                })?,
                None,
            ),
            None => {
                let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
                    .map_err(|e| self.failed(e))?;
                (key.public_key().clone(), Some(key))
            }
        };
        // A little slack before now for clocks that are behind; none after the lifetime.
        let valid_after = seconds(req.now).saturating_sub(30);
        let valid_before = seconds(req.expires_at);
        let mut b = Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            public.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(|e| self.failed(e))?;
        b.cert_type(CertType::User)
            .and_then(|b| b.key_id(format!("countersign:{}:{}", req.action_id, req.to)))
            .and_then(|b| b.valid_principal(self.principal.clone()))
            .and_then(|b| b.critical_option("force-command", command))
            .and_then(|b| b.extension("permit-pty", ""))
            .map_err(|e| self.failed(e))?;
        if let Some(list) = source_address {
            b.critical_option("source-address", list)
                .map_err(|e| self.failed(e))?;
        }
        let cert = b.sign(&self.ca).map_err(|e| self.failed(e))?;
        let cert_text = cert.to_openssh().map_err(|e| self.failed(e))?;
        let mut issued = Issued::default();
        match private {
            Some(key) => {
                let text = key.to_openssh(LineEnding::LF).map_err(|e| self.failed(e))?;
                issued.files.push(IssuedFile {
                    env: self.env.clone(),
                    file_name: "id_ed25519".into(),
                    contents: Secret::new(text.as_str()),
                });
                // ssh finds KEY-cert.pub beside KEY by itself.
                issued.files.push(IssuedFile {
                    env: format!("{}_CERT", self.env),
                    file_name: "id_ed25519-cert.pub".into(),
                    contents: Secret::new(format!("{cert_text}\n")),
                });
            }
            None => issued.files.push(IssuedFile {
                env: format!("{}_CERT", self.env),
                file_name: "id-cert.pub".into(),
                contents: Secret::new(format!("{cert_text}\n")),
            }),
        }
        Ok(issued)
    }

    async fn revoke(&self, _action_id: &str) -> Result<(), CredentialError> {
        Ok(())
    }

    async fn expired(&self, _now: Timestamp) -> Result<Vec<String>, CredentialError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_remote_command_is_what_follows_the_destination() {
        let cmd = |a: &[&str]| remote_command(&argv(a));
        assert_eq!(cmd(&["ssh", "host", "uptime"]).as_deref(), Some("uptime"));
        assert_eq!(
            cmd(&[
                "/usr/bin/ssh",
                "-p",
                "2222",
                "-o",
                "IdentityFile=${K}",
                "-tt",
                "root@h",
                "echo",
                "a b"
            ])
            .as_deref(),
            Some("echo a b")
        );
        assert_eq!(cmd(&["ssh", "-p2222", "h", "ls"]).as_deref(), Some("ls"));
        assert_eq!(
            cmd(&["ssh", "-vp", "2222", "h", "ls"]).as_deref(),
            Some("ls")
        );
        assert_eq!(cmd(&["ssh", "--", "h", "ls"]).as_deref(), Some("ls"));
        assert_eq!(cmd(&["ssh", "h"]), None);
        assert_eq!(cmd(&["ssh", "-p"]), None);
        assert_eq!(cmd(&["scp", "a", "b"]), None);
    }

    #[test]
    fn the_source_address_is_the_configured_list_with_the_requester_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let make = |list: Vec<SourceAddress>| {
            SshCertificate::new("box", &ca, "deploy", &list, "SSH_KEY").unwrap()
        };
        assert_eq!(make(vec![]).source_address(None).unwrap(), None);
        let both = make(vec![
            SourceAddress::Requester,
            SourceAddress::Net("10.0.0.0/8".into()),
            SourceAddress::Requester,
        ]);
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            both.source_address(Some(mapped)).unwrap().as_deref(),
            Some("127.0.0.1/32,10.0.0.0/8")
        );
        let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            both.source_address(Some(v6)).unwrap().as_deref(),
            Some("2001:db8::7/128,10.0.0.0/8")
        );
        // `requester` with no known address: nothing is issued (fail closed).
        let e = both.source_address(None).unwrap_err().to_string();
        assert!(e.contains("requester"), "{e}");
    }
}
