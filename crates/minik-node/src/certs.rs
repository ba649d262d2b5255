//! The certificate of the agent's own endpoint (logs, exec, port-forward), as a kubelet's
//! serving certificate: the agent makes a key that never leaves the host, asks the API server
//! to sign a request for it (`POST /minik/v1/nodes/NAME/serving-certificate`, with the node's
//! own credential), serves HTTPS with the answer, and asks again once two thirds of its
//! validity have passed. The API server verifies it against the cluster CA on every call.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minik_api::ApiError;
use minik_client::HttpApi;
use minik_tls::rustls::sign::CertifiedKey;
use minik_tls::tokio_rustls::server::TlsStream;
use minik_tls::tokio_rustls::TlsAcceptor;
use minik_tls::ServingCert;
use serde_json::json;
use tokio::net::TcpStream;

/// How long a TLS handshake on the endpoint may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The path node `node` gets its serving certificate from.
fn path(node: &str) -> String {
    format!("/minik/v1/nodes/{node}/serving-certificate")
}

/// A new key and the server's certificate for it, for node `node` at `addresses`.
pub async fn request(
    api: &HttpApi,
    node: &str,
    addresses: &[IpAddr],
) -> Result<Arc<CertifiedKey>, ApiError> {
    let (csr, key) = minik_tls::certificate_request(&format!("system:node:{node}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let answer = api
        .post_path(
            &path(node),
            &json!({ "certificateSigningRequest": csr, "addresses": addresses }),
        )
        .await?;
    let cert = answer["certificate"]
        .as_str()
        .ok_or_else(|| ApiError::Internal("the server's answer carries no certificate".into()))?;
    minik_tls::certified_key(cert, &key).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The endpoint's certificate, kept fresh: asks for a new one when the current one is due
/// (retrying every half minute while the server cannot be reached). Runs until aborted.
pub async fn keep_renewed(
    api: HttpApi,
    node: String,
    addresses: Vec<IpAddr>,
    serving: Arc<ServingCert>,
) {
    loop {
        let due = serving.renewal_due().unwrap_or_else(|_| SystemTime::now());
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600));
        tokio::time::sleep(wait).await;
        if SystemTime::now() < due {
            continue;
        }
        match request(&api, &node, &addresses).await {
            Ok(key) => {
                serving.replace(key);
                tracing::info!(node = %node, "renewed the agent endpoint's certificate");
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "cannot renew the agent endpoint's certificate; trying again");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}

/// A listener whose connections are TLS, handshaken off the accept loop (a slow client holds
/// up only itself); plain-HTTP clients get Go's 400.
pub struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accepting: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TlsListener {
    /// Serves `serving` on `listener`.
    pub fn new(
        listener: tokio::net::TcpListener,
        serving: Arc<ServingCert>,
    ) -> Result<TlsListener, minik_tls::TlsError> {
        let local = listener
            .local_addr()
            .map_err(|e| minik_tls::TlsError(format!("the endpoint's address: {e}")))?;
        let acceptor = TlsAcceptor::from(minik_tls::server_config(serving, None)?);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "the agent endpoint cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match minik_tls::accept(stream, &acceptor, HANDSHAKE_TIMEOUT).await {
                        Ok(minik_tls::Accepted::Tls(tls)) => {
                            let _ = tx.send((*tls, peer)).await;
                        }
                        Ok(minik_tls::Accepted::Plain) => {}
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "a TLS handshake on the agent endpoint failed")
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            connections: rx,
            local,
            _accepting: AbortOnDrop(accepting),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
