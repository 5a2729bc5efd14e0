//! A connection's start: `SSLRequest` answered (TLS with the configured certificate, required
//! off loopback), `CancelRequest` routed, the startup packet read, the agent authenticated
//! through `Gates` (user = identity id, cleartext password = its credential), the database
//! checked and the upstream session opened.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Io;
use crate::wire::{self, Diag, WireError};
use crate::Shared;
use countersign_enforce::Gate;

/// Largest password message (an OIDC token can be large).
const MAX_PASSWORD: usize = 64 << 10;

/// A client that started up and authenticated, with its upstream session.
pub(super) struct Started {
    pub(super) io: Box<dyn Io>,
    pub(super) user: String,
    pub(super) database: String,
    pub(super) gate: Arc<dyn Gate>,
    pub(super) upstream: crate::upstream::Session,
}

pub(super) async fn fatal(io: &mut Box<dyn Io>, d: Diag) {
    let _ = io.write_all(&d.to_msg().frame()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

pub(super) async fn startup(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<Started> {
    let opts = &shared.opts;
    let mut io: Box<dyn Io> = Box::new(stream);
    let mut encrypted = false;
    let mut params = None;
    for _ in 0..3 {
        let (code, body) = match wire::read_startup(&mut io).await {
            Ok(p) => p,
            Err(WireError::Closed) => return None,
            Err(e) => {
                fatal(
                    &mut io,
                    Diag::fatal("08P01", format!("invalid startup packet: {e}")),
                )
                .await;
                return None;
            }
        };
        match code {
            wire::SSL_REQUEST if !encrypted => match &opts.tls {
                Some(config) => {
                    io.write_all(b"S").await.ok()?;
                    io.flush().await.ok()?;
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    match acceptor.accept(io).await {
                        Ok(t) => io = Box::new(t),
                        Err(e) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return None;
                        }
                    }
                    encrypted = true;
                }
                None => io.write_all(b"N").await.ok()?,
            },
            wire::GSSENC_REQUEST if !encrypted => io.write_all(b"N").await.ok()?,
            wire::CANCEL_REQUEST => {
                let mut f = wire::Fields::new(&body);
                if let (Ok(pid), Ok(secret)) = (f.i32(), f.i32()) {
                    cancel(shared, (pid, secret)).await;
                }
                return None;
            }
            c if c >> 16 == 3 => {
                let p = match wire::startup_params(&body) {
                    Ok(p) => p,
                    Err(e) => {
                        fatal(
                            &mut io,
                            Diag::fatal("08P01", format!("invalid startup packet: {e}")),
                        )
                        .await;
                        return None;
                    }
                };
                if c & 0xffff != 0 {
                    // A newer minor version or protocol options: we speak 3.0 and none.
                    let unsupported: Vec<String> = p
                        .iter()
                        .filter(|(k, _)| k.starts_with("_pq_."))
                        .map(|(k, _)| k.clone())
                        .collect();
                    io.write_all(&wire::negotiate(0, &unsupported).frame())
                        .await
                        .ok()?;
                }
                params = Some(p);
                break;
            }
            _ => {
                fatal(
                    &mut io,
                    Diag::fatal("0A000", "unsupported frontend protocol"),
                )
                .await;
                return None;
            }
        }
    }
    let Some(params) = params else {
        fatal(&mut io, Diag::fatal("08P01", "no startup packet")).await;
        return None;
    };
    if !encrypted && !peer.ip().is_loopback() {
        fatal(
            &mut io,
            Diag::fatal(
                "28000",
                "countersign: TLS is required (connect with sslmode=require)",
            ),
        )
        .await;
        return None;
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(user) = get("user").filter(|u| !u.is_empty()) else {
        fatal(
            &mut io,
            Diag::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            ),
        )
        .await;
        return None;
    };
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    if get("replication").is_some_and(|r| r != "false" && r != "off" && r != "0") {
        fatal(
            &mut io,
            Diag::fatal(
                "0A000",
                "countersign: replication connections are not relayed",
            ),
        )
        .await;
        return None;
    }
    if database != opts.upstream.database {
        fatal(
            &mut io,
            Diag::fatal("3D000", format!("database \"{database}\" does not exist")).hint(format!(
                "This proxy serves the database \"{}\".",
                opts.upstream.database
            )),
        )
        .await;
        return None;
    }
    io.write_all(&wire::auth(3).frame()).await.ok()?;
    io.flush().await.ok()?;
    let password = match wire::read_msg(&mut io, MAX_PASSWORD).await {
        Ok(m) if m.tag == b'p' => wire::Fields::new(&m.body).cstr().ok(),
        Ok(_) => None,
        Err(WireError::Closed) => return None,
        Err(_) => None,
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        fatal(&mut io, Diag::fatal("08P01", "expected a password message")).await;
        return None;
    };
    let failed = || {
        Diag::fatal(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        )
    };
    let gate = match shared.gates.gate_for(&password).await {
        Ok(g) => g,
        Err(countersign_enforce::GateError::Unauthenticated(_)) => {
            fatal(&mut io, failed()).await;
            return None;
        }
        Err(e) => {
            fatal(
                &mut io,
                Diag::fatal("08004", format!("countersign: cannot authenticate: {e}")),
            )
            .await;
            return None;
        }
    };
    // The user name must be the credential's identity, whichever gate proved it; a gate that
    // cannot say who the credential is is refused too (fail closed).
    if !gate
        .identity()
        .is_some_and(|id| countersign_core::same_id(&id, &user))
    {
        fatal(
            &mut io,
            failed().detail("The credential is not the user's."),
        )
        .await;
        return None;
    }
    let upstream = match opts.upstream.connect(&params).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open an upstream session");
            fatal(
                &mut io,
                Diag::fatal(
                    "08006",
                    format!("countersign: cannot reach the database: {e}"),
                ),
            )
            .await;
            return None;
        }
    };
    Some(Started {
        io,
        user,
        database,
        gate,
        upstream,
    })
}

/// Handles a `CancelRequest`: withdraws the held statement's review, or else cancels what the
/// session runs upstream.
async fn cancel(shared: &Shared, key: (i32, i32)) {
    let found = shared.sessions().get(&key).cloned();
    let Some(c) = found else {
        return;
    };
    let held = c.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match held {
        Some(tx) => {
            let _ = tx.send(true);
        }
        None => shared.opts.upstream.cancel(c.upstream_key).await,
    }
}
