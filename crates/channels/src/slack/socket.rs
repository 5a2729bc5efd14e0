//! Slack Socket Mode (`[slack] mode = "socket"`): for gateways with no inbound URL, the gateway
//! opens the connection. `apps.connections.open` (app-level token) gives a WebSocket URL; Slack
//! sends `hello`, then envelopes (`{"envelope_id", "type": "interactive", "payload", ...}`),
//! each acknowledged with `{"envelope_id"}` (and a `payload` when a modal's submission is
//! refused, as the HTTP route would answer); a `disconnect` envelope (Slack refreshing the
//! connection) or a closed socket opens a new connection. Payloads are handled exactly as the
//! HTTP route's ([`super::interactions`]): the Slack user mapped, the vote through
//! `Gateway::vote`. No signature: the connection itself is authenticated by the app token over
//! TLS.

use std::sync::Arc;
use std::time::Duration;

use countersign_gateway::credentials::Secret;
use countersign_gateway::notify::SlackConfig;
use countersign_gateway::Gateway;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::interactions::{dispatch, Interactions};
use super::SlackApi;

/// The Socket Mode client.
pub struct SocketMode {
    interactions: Interactions,
    app_token: Secret,
}

/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl SocketMode {
    /// The client for `config` (its `app_token`), posting through `api`.
    pub fn new(
        gateway: Arc<Gateway>,
        config: &SlackConfig,
        api: Arc<SlackApi>,
    ) -> Result<Arc<SocketMode>, String> {
        let app_token = config
            .app_token
            .clone()
            .ok_or("[slack] Socket Mode needs `app_token`")?;
        Ok(Arc::new(SocketMode {
            interactions: Interactions::new(gateway, config, api),
            app_token,
        }))
    }

    /// Connects, handles envelopes, and reconnects, until dropped.
    pub async fn run_forever(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.connect_once().await {
                // Slack asked for a new connection (or closed this one): at once.
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "Slack Socket Mode connection failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn connect_once(&self) -> Result<(), String> {
        let url = self
            .interactions
            .api()
            .connections_open(&self.app_token)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut ws = connect(&url).await?;
        while let Some(frame) = ws.next().await {
            let text = match frame {
                Ok(Frame::Text(t)) => t.to_string(),
                Ok(Frame::Close(_)) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(format!("reading: {e}")),
            };
            let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match envelope["type"].as_str() {
                Some("hello") => continue,
                Some("disconnect") => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ => {}
            }
            let Some(id) = envelope["envelope_id"].as_str() else {
                continue;
            };
            let mut ack = json!({"envelope_id": id});
            if envelope["type"] == "interactive" {
                if let Some(answer) = dispatch(&self.interactions, &envelope["payload"]).await {
                    ack["payload"] = answer;
                }
            }
            ws.send(Frame::Text(ack.to_string().into()))
                .await
                .map_err(|e| format!("acknowledging: {e}"))?;
        }
        Ok(())
    }
}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Stream>>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Opens the WebSocket: `wss://` through rustls (the platform's roots), `ws://` for local
/// doubles.
async fn connect(url: &str) -> Result<Socket, String> {
    let parsed =
        url::Url::parse(url).map_err(|_| "the Socket Mode URL is unreadable".to_string())?;
    let host = parsed
        .host_str()
        .ok_or("the Socket Mode URL has no host")?
        .to_string();
    let tls = match parsed.scheme() {
        "wss" => true,
        "ws" => false,
        _ => return Err("the Socket Mode URL is not ws:// or wss://".into()),
    };
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("connecting: {e}"))?;
    let stream: Box<dyn Stream> = if tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| "the Socket Mode host is not a server name".to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    // The URL carries a ticket: it is never logged.
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| {
            format!(
                "WebSocket handshake: {}",
                e.to_string().replace(url, "<url>")
            )
        })?;
    Ok(ws)
}
