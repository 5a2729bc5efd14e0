//! The upstream server: its address and credentials (`--upstream postgres://...`), and a session
//! the proxy opens and authenticates itself (trust, cleartext, MD5 or SCRAM-SHA-256 through
//! `postgres-protocol`). The agent never sees these credentials.

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::session::Io;
use crate::wire::{self, Fields, Msg, WireError};

/// Where the upstream server is and how the proxy logs in.
#[derive(Clone)]
pub struct Upstream {
    /// `host:port`.
    pub addr: String,
    /// The role the proxy logs in as.
    pub user: String,
    /// Its password, if any.
    password: Option<String>,
    /// The one database served.
    pub database: String,
    /// TLS to the server, if asked (`sslmode=require`, `verify-full`).
    tls: Option<Tls>,
}

/// TLS to the upstream server.
#[derive(Clone)]
struct Tls {
    config: std::sync::Arc<rustls::ClientConfig>,
    /// The name checked against the server's certificate.
    name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an upstream URL or session failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL is not one the proxy can use.
    #[error("--upstream: {0}")]
    Url(String),
    /// The server could not be reached or spoke nonsense.
    #[error("the upstream server: {0}")]
    Wire(#[from] WireError),
    /// The server refused the proxy's session.
    #[error("the upstream server refused the session: {0}")]
    Refused(String),
}

impl Upstream {
    /// Reads `postgres://user[:password]@host[:port]/database[?sslmode=...]`. `sslmode`:
    /// `disable`, `allow`, `prefer` (plain), `require` (TLS without checking the certificate,
    /// as libpq), `verify-full` (TLS, the certificate checked against `sslrootcert=FILE` and the
    /// host name). Other options are refused.
    pub fn parse(url: &str) -> Result<Upstream, UpstreamError> {
        let bad = |m: &str| UpstreamError::Url(m.to_string());
        let u = url::Url::parse(url).map_err(|e| UpstreamError::Url(e.to_string()))?;
        if u.scheme() != "postgres" && u.scheme() != "postgresql" {
            return Err(bad("the URL must start with postgres://"));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = u.port().unwrap_or(5432);
        let user = decode(u.username());
        if user.is_empty() {
            return Err(bad("no user (postgres://USER@HOST/DB)"));
        }
        let database = decode(u.path().trim_start_matches('/'));
        if database.is_empty() {
            return Err(bad("no database (postgres://USER@HOST/DB)"));
        }
        let mut mode = "prefer".to_string();
        let mut root = None;
        for (k, v) in u.query_pairs() {
            match &*k {
                "sslmode" => mode = v.into_owned(),
                "sslrootcert" => root = Some(v.into_owned()),
                _ => {
                    return Err(UpstreamError::Url(format!(
                        "the option {k} is not supported (sslmode and sslrootcert are)"
                    )))
                }
            }
        }
        let server_name = rustls_pki_types::ServerName::try_from(
            host.trim_matches(|c| c == '[' || c == ']').to_string(),
        )
        .map_err(|e| UpstreamError::Url(format!("host: {e}")))?;
        let tls = match mode.as_str() {
            "disable" | "allow" | "prefer" => None,
            "require" => Some(Tls {
                config: crate::tls::client_unverified().map_err(UpstreamError::Url)?,
                name: server_name,
            }),
            "verify-full" => {
                let root = root.ok_or_else(|| bad("sslmode=verify-full needs sslrootcert=FILE"))?;
                Some(Tls {
                    config: crate::tls::client_verified(std::path::Path::new(&root))
                        .map_err(UpstreamError::Url)?,
                    name: server_name,
                })
            }
            other => {
                return Err(UpstreamError::Url(format!(
                    "sslmode={other} is not supported (disable, prefer, require, verify-full)"
                )))
            }
        };
        let host = if host.contains(':') {
            format!("[{}]", host.trim_matches(|c| c == '[' || c == ']'))
        } else {
            host.to_string()
        };
        Ok(Upstream {
            addr: format!("{host}:{port}"),
            user,
            password: u.password().map(decode),
            database,
            tls,
        })
    }

    /// Opens and authenticates a session for `database` with the client's startup parameters
    /// `params` (only those in [`RELAYED_PARAMS`] are passed on).
    pub async fn connect(&self, params: &[(String, String)]) -> Result<Session, UpstreamError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| UpstreamError::Wire(WireError::Io(e)))?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(stream),
            Some(tls) => Box::new(self.encrypt(stream, tls).await?),
        };
        let mut stream = BufReader::new(stream);
        let mut startup: Vec<(&str, &str)> =
            vec![("user", &self.user), ("database", &self.database)];
        for (k, v) in params {
            if RELAYED_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) {
                startup.push((k, v));
            }
        }
        let mut buf = BytesMut::new();
        frontend::startup_message(startup.iter().copied(), &mut buf).map_err(wire_io)?;
        send(&mut stream, &mut buf).await?;
        let password = self.password.clone().unwrap_or_default();
        let mut scram: Option<ScramSha256> = None;
        let mut status = Vec::new();
        let mut key = (0, 0);
        loop {
            let m = wire::read_msg(&mut stream, 1 << 20).await?;
            match m.tag {
                b'R' => {
                    let mut f = Fields::new(&m.body);
                    match f.i32()? {
                        0 => {}
                        3 => {
                            frontend::password_message(password.as_bytes(), &mut buf)
                                .map_err(wire_io)?;
                            send(&mut stream, &mut buf).await?;
                        }
                        5 => {
                            let salt = f.bytes(4)?;
                            let mut s = [0u8; 4];
                            s.copy_from_slice(&salt);
                            let hash = postgres_protocol::authentication::md5_hash(
                                self.user.as_bytes(),
                                password.as_bytes(),
                                s,
                            );
                            frontend::password_message(hash.as_bytes(), &mut buf)
                                .map_err(wire_io)?;
                            send(&mut stream, &mut buf).await?;
                        }
                        10 => {
                            let mut mechanisms = Vec::new();
                            while let Ok(mech) = f.cstr() {
                                if mech.is_empty() {
                                    break;
                                }
                                mechanisms.push(mech);
                            }
                            if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                                return Err(UpstreamError::Refused(format!(
                                    "no supported SASL mechanism among {mechanisms:?}"
                                )));
                            }
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut buf)
                                .map_err(wire_io)?;
                            send(&mut stream, &mut buf).await?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or(WireError::Malformed("SASL continue without SASL"))?;
                            let rest = m.body.slice(4..);
                            s.update(&rest)
                                .map_err(|e| UpstreamError::Refused(e.to_string()))?;
                            frontend::sasl_response(s.message(), &mut buf).map_err(wire_io)?;
                            send(&mut stream, &mut buf).await?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or(WireError::Malformed("SASL final without SASL"))?;
                            s.finish(&m.body.slice(4..))
                                .map_err(|e| UpstreamError::Refused(e.to_string()))?;
                        }
                        other => {
                            return Err(UpstreamError::Refused(format!(
                                "authentication method {other} is not supported"
                            )))
                        }
                    }
                }
                b'S' => status.push(m),
                b'K' => {
                    let mut f = Fields::new(&m.body);
                    key = (f.i32()?, f.i32()?);
                }
                b'N' => {}
                b'E' => {
                    let message = wire::error_fields(&m.body)
                        .into_iter()
                        .find(|(t, _)| *t == b'M')
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                    return Err(UpstreamError::Refused(message));
                }
                b'Z' => {
                    return Ok(Session {
                        stream,
                        status,
                        key,
                    })
                }
                _ => return Err(WireError::Malformed("unexpected message during startup").into()),
            }
        }
    }

    /// `SSLRequest`, then the TLS handshake.
    async fn encrypt(
        &self,
        mut stream: TcpStream,
        tls: &Tls,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        use tokio::io::AsyncReadExt;
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        stream.write_all(&buf).await.map_err(wire_io)?;
        let answer = stream.read_u8().await.map_err(wire_io)?;
        if answer != b'S' {
            return Err(UpstreamError::Refused(
                "the server does not offer TLS".into(),
            ));
        }
        tokio_rustls::TlsConnector::from(tls.config.clone())
            .connect(tls.name.clone(), stream)
            .await
            .map_err(|e| UpstreamError::Refused(format!("TLS: {e}")))
    }

    /// Asks the server to cancel what the session with `key` is running (best effort).
    pub async fn cancel(&self, key: (i32, i32)) {
        let mut buf = BytesMut::new();
        frontend::cancel_request(key.0, key.1, &mut buf);
        if let Ok(mut s) = TcpStream::connect(&self.addr).await {
            let _ = s.write_all(&buf).await;
            let _ = s.shutdown().await;
        }
    }
}

/// The client's startup parameters passed on to the upstream server; any other (notably
/// `options`, which can set any setting) is dropped: settings go through statements, which are
/// decided.
pub const RELAYED_PARAMS: [&str; 6] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "extra_float_digits",
    "IntervalStyle",
];

/// An authenticated upstream session, ready for queries.
pub struct Session {
    /// The connection.
    pub stream: BufReader<Box<dyn Io>>,
    /// The server's `ParameterStatus` messages, for the client.
    pub status: Vec<Msg>,
    /// The server's cancellation key.
    pub key: (i32, i32),
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn wire_io(e: std::io::Error) -> UpstreamError {
    UpstreamError::Wire(WireError::Io(e))
}

async fn send(
    stream: &mut BufReader<Box<dyn Io>>,
    buf: &mut BytesMut,
) -> Result<(), UpstreamError> {
    stream.get_mut().write_all(buf).await.map_err(wire_io)?;
    buf.advance(buf.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_upstream_url_names_server_role_and_database() {
        let u = Upstream::parse("postgres://svc:p%40ss@db.internal:6432/app").unwrap();
        assert_eq!(u.addr, "db.internal:6432");
        assert_eq!(u.user, "svc");
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.database, "app");
        assert!(!format!("{u:?}").contains("p@ss"));
        assert!(Upstream::parse("postgres://db/app").is_err());
        assert!(Upstream::parse("postgres://svc@db").is_err());
        assert!(Upstream::parse("mysql://svc@db/app").is_err());
        assert!(Upstream::parse("postgres://svc@db/app?sslmode=require")
            .unwrap()
            .tls
            .is_some());
        assert!(Upstream::parse("postgres://svc@db/app?sslmode=verify-full").is_err());
        assert!(Upstream::parse("postgres://svc@db/app?sslmode=verify-ca").is_err());
        assert!(Upstream::parse("postgres://svc@db/app?options=-c%20x%3D1").is_err());
    }
}
