//! minik's TLS, in one place for the server, the node agents and the clients:
//!
//! - [`Ca`]: the cluster's certificate authority, made once under `DATA_DIR/tls/` (the key mode
//!   0600), which issues the API server's serving certificate, the agents' serving certificates
//!   (from their certificate signing requests, so their keys never leave their hosts) and
//!   client certificates;
//! - [`ServingCert`]: a serving certificate that can be replaced while connections come in
//!   (renewal), with [`renewal_due`] saying when;
//! - [`server_config`] and [`client_config`]: rustls configurations that trust only the cluster
//!   CA (clients) and accept client certificates it issued (server);
//! - [`JoinToken`]: the join token in k3s' form `K10<sha256 of the CA>::SECRET`, with which a new
//!   node checks that it talks to the right cluster before it trusts anything;
//! - [`client_identity`]: who a client certificate names, as Kubernetes reads it (CN = user,
//!   O = groups);
//! - [`accept`]: the first bytes of a connection decide between a TLS handshake and the 400
//!   that Go's servers give a plain-HTTP request on an HTTPS port.
//!
//! Keys and certificates are ECDSA P-256 (rcgen's default with ring).

mod accept;
mod ca;
mod config;
mod files;
mod identity;
mod serving;
mod token;

pub use accept::{accept, Accepted, PLAIN_HTTP_ANSWER};
pub use ca::{certificate_request, Ca, Issued, Leaf, Usage, CA_LIFETIME};
pub use config::{client_config, server_config};
pub use files::{read_pem, write_private_file};
pub use identity::{client_identity, ClientIdentity};
pub use serving::{certified_key, renewal_due, validity, ServingCert};
pub use token::{fingerprint, JoinToken};

/// Re-exported for the configurations' users.
pub use rustls;
pub use tokio_rustls;

/// What went wrong, with the file or the thing it was about.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl TlsError {
    pub(crate) fn new(message: impl Into<String>) -> TlsError {
        TlsError(message.into())
    }
}

/// The crypto provider every configuration here is built with: ring, which reqwest's rustls
/// (image pulls) already builds. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange (X25519MLKEM768, which only its aws-lc-rs provider has); moving to aws-lc-rs means
/// a C build for every minik build, a trade left for when rustls' ring provider gains it or
/// clients require it.
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Installs [`provider`] as the process' default rustls provider, once.
pub fn install_crypto_provider() {
    let _ = provider().install_default();
}
