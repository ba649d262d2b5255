//! rustls configurations: the server's (its serving certificate, client certificates of the
//! cluster CA accepted but not required) and the clients' (only the cluster CA trusted).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::TlsError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(crate::provider())
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert =
            cert.map_err(|e| TlsError::new(format!("the CA certificate is not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::new(format!("the CA certificate cannot be trusted: {e}")))?;
        any = true;
    }
    if !any {
        return Err(TlsError::new("the CA file holds no certificate"));
    }
    Ok(roots)
}

/// A server configuration serving `cert` over HTTP/1.1. With `client_ca`, clients may present a
/// certificate that CA issued (they need not: tokens authenticate too); one it did not issue,
/// or an expired one, fails the handshake.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    client_ca: Option<&str>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(format!("cannot configure TLS: {e}")))?;
    let builder = match client_ca {
        Some(pem) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pem)?), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| {
                        TlsError::new(format!("cannot configure client certificates: {e}"))
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    // Only HTTP/1.1 is served (exec and port-forward upgrade connections, which HTTP/2 cannot).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts only the CA(s) of `ca_pem`, presenting the client
/// certificate and key (PEM) of `identity` when given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(format!("cannot configure TLS: {e}")))?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            use rustls::pki_types::pem::PemObject;
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        TlsError::new(format!("the client certificate is not valid PEM: {e}"))
                    })?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| TlsError::new(format!("the client key is not valid PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::new(format!("cannot use the client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
