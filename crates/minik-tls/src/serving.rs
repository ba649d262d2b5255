//! Serving certificates that are replaced while the server runs, and when to replace them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// A certificate chain and key (PEM) ready for rustls.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::new(format!("the certificate is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::new("the certificate file holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::new(format!("the private key is not valid PEM: {e}")))?;
    let provider = crate::provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| TlsError::new(format!("the key does not fit the certificate: {e}")))?;
    Ok(Arc::new(certified))
}

/// When a certificate's validity begins and ends.
pub fn validity(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), TlsError> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|e| TlsError::new(format!("not an X.509 certificate: {e}")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let seconds = t.timestamp();
        if seconds >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok((
        at(parsed.validity().not_before),
        at(parsed.validity().not_after),
    ))
}

/// When a certificate valid from `not_before` to `not_after` is renewed: once two thirds of
/// its validity have passed (a year-long certificate four months before it expires; one of 30
/// seconds at 20 seconds).
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let span = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + span * 2 / 3
}

/// The serving certificate of a TLS server, which can be replaced while it serves: new
/// handshakes get the new one; open connections keep theirs.
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

impl ServingCert {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<ServingCert> {
        Arc::new(ServingCert {
            current: RwLock::new(key),
        })
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the certificate served now is due for renewal.
    pub fn renewal_due(&self) -> Result<SystemTime, TlsError> {
        let current = self.current();
        let leaf = current
            .cert
            .first()
            .ok_or_else(|| TlsError::new("the serving certificate has no certificate"))?;
        let (not_before, not_after) = validity(leaf)?;
        Ok(renewal_due(not_before, not_after))
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, Leaf, Usage};

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_validity() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            renewal_due(t0, t0 + Duration::from_secs(30)),
            t0 + Duration::from_secs(20)
        );
        assert_eq!(renewal_due(t0, t0 - Duration::from_secs(1)), t0);
    }

    #[test]
    fn a_served_certificate_is_replaced_and_its_validity_read() {
        let ca = Ca::generate("ca", SystemTime::now()).unwrap();
        let leaf = Leaf {
            common_name: "s".into(),
            organization: None,
            dns_names: vec!["localhost".into()],
            ips: vec![],
            usage: Usage::Server,
        };
        let now = SystemTime::now();
        let a = ca.issue(&leaf, Duration::from_secs(300), now).unwrap();
        let b = ca.issue(&leaf, Duration::from_secs(600), now).unwrap();
        let serving = ServingCert::new(certified_key(&a.cert_pem, &a.key_pem).unwrap());
        let first = serving.renewal_due().unwrap();
        serving.replace(certified_key(&b.cert_pem, &b.key_pem).unwrap());
        let second = serving.renewal_due().unwrap();
        assert!(second > first);
        let (nb, na) = validity(&serving.current().cert[0]).unwrap();
        assert!(nb <= now && na >= now + Duration::from_secs(599));
        let err = certified_key(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert!(certified_key("", &a.key_pem).is_err());
        assert!(certified_key(&a.cert_pem, "junk").is_err());
    }
}
