//! The cluster's certificate authority and the certificates it issues.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

use crate::files::{read_pem, write_private_file, write_public_file};
use crate::TlsError;

/// How long the cluster CA is valid: ten years, as kubeadm's and k3s' CAs.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (the API server, an agent's endpoint).
    Server,
    /// A TLS client (an administrator's client certificate).
    Client,
}

/// The subject and names of a certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name (a client certificate's user).
    pub common_name: String,
    /// The subject's organization (a client certificate's group), if any.
    pub organization: Option<String>,
    /// DNS names (subject alternative names).
    pub dns_names: Vec<String>,
    /// IP addresses (subject alternative names).
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
}

/// A certificate and its new private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// The cluster CA: its certificate (PEM, as clients get it) and what signs with its key.
pub struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    /// The CA as rcgen signs with it (its name and key identifier).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::new(format!("{what}: {e}"))
}

/// A fresh random serial number (RFC 5280: positive, at most 20 bytes).
fn serial() -> Result<SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::new("no randomness for a certificate serial number"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// How far back a certificate's validity starts, for clocks a little behind: a minute, or a
/// tenth of a short lifetime.
fn backdate(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

impl Ca {
    /// The CA kept in `dir` (`ca.crt`, `ca.key`), made there first if neither file exists.
    /// Only one of the two is an error that names the missing one: a CA is never made anew
    /// over an existing key or certificate.
    pub fn load_or_create(dir: &Path) -> Result<Ca, TlsError> {
        let cert_file = dir.join("ca.crt");
        let key_file = dir.join("ca.key");
        match (cert_file.exists(), key_file.exists()) {
            (true, true) => Ca::load(&cert_file, &key_file),
            (false, false) => {
                create_private_dir(dir)?;
                let ca = Ca::generate("minik-ca", SystemTime::now())?;
                write_private_file(&key_file, &ca.key.serialize_pem()).map_err(|e| {
                    TlsError::new(format!("cannot write {}: {e}", key_file.display()))
                })?;
                write_public_file(&cert_file, &ca.pem).map_err(|e| {
                    TlsError::new(format!("cannot write {}: {e}", cert_file.display()))
                })?;
                Ok(ca)
            }
            (true, false) => Err(TlsError::new(format!(
                "{} exists but its key {} does not: restore the key, or remove both to make a new CA (every node must then join again)",
                cert_file.display(),
                key_file.display()
            ))),
            (false, true) => Err(TlsError::new(format!(
                "{} exists but its certificate {} does not: restore the certificate, or remove both to make a new CA",
                key_file.display(),
                cert_file.display()
            ))),
        }
    }

    /// The CA of a certificate and key file.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Ca, TlsError> {
        let pem = read_pem(cert_file, "CA certificate")?;
        let key_pem = read_pem(key_file, "CA key")?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| {
            TlsError::new(format!(
                "{} is not a private key in PEM: {e}",
                key_file.display()
            ))
        })?;
        let params = CertificateParams::from_ca_cert_pem(&pem).map_err(|e| {
            TlsError::new(format!(
                "{} is not a CA certificate in PEM: {e}",
                cert_file.display()
            ))
        })?;
        let der = first_certificate(&pem)
            .map_err(|e| TlsError::new(format!("{}: {e}", cert_file.display())))?;
        if der_public_key(&der)? != key.public_key_raw() {
            return Err(TlsError::new(format!(
                "the key {} is not the key of the certificate {}",
                key_file.display(),
                cert_file.display()
            )));
        }
        let issuer = params
            .self_signed(&key)
            .map_err(rcgen_error("cannot use the CA"))?;
        Ok(Ca {
            pem,
            der,
            issuer,
            key,
        })
    }

    /// A new CA named `name`, valid from `now` for [`CA_LIFETIME`].
    pub fn generate(name: &str, now: SystemTime) -> Result<Ca, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error("cannot make the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - backdate(CA_LIFETIME)).into();
        params.not_after = (now + CA_LIFETIME).into();
        params.serial_number = Some(serial()?);
        let issuer = params
            .self_signed(&key)
            .map_err(rcgen_error("cannot make the CA certificate"))?;
        let pem = issuer.pem();
        let der = issuer.der().clone();
        Ok(Ca {
            pem,
            der,
            issuer,
            key,
        })
    }

    /// The CA certificate in PEM, as clients and nodes get it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The SHA-256 of the CA certificate's PEM, hex: what join tokens carry.
    pub fn fingerprint(&self) -> String {
        crate::token::fingerprint(&self.pem)
    }

    fn params(
        &self,
        leaf: &Leaf,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<CertificateParams, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.as_str());
        if let Some(o) = &leaf.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, o.as_str());
        }
        for name in &leaf.dns_names {
            let ia5 = name.as_str().try_into().map_err(|e| {
                TlsError::new(format!("{name:?} cannot be a certificate's DNS name: {e}"))
            })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in &leaf.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match leaf.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - backdate(lifetime)).into();
        params.not_after = (now + lifetime).into();
        params.serial_number = Some(serial()?);
        Ok(params)
    }

    /// Whether this CA signed `cert` (a certificate of an earlier CA, or of another, was not).
    pub fn issued(&self, cert: &CertificateDer<'_>) -> bool {
        use x509_parser::prelude::FromDer;
        let Ok((_, parsed)) = x509_parser::certificate::X509Certificate::from_der(cert) else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::certificate::X509Certificate::from_der(&self.der) else {
            return false;
        };
        parsed.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// A new key and a certificate for it, valid from `now` for `lifetime`.
    pub fn issue(
        &self,
        leaf: &Leaf,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error("cannot make a key"))?;
        let cert = self
            .params(leaf, lifetime, now)?
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(rcgen_error("cannot sign the certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for the key of a certificate signing request (PEM), with the subject and
    /// names of `leaf` — never the ones the request asks for.
    pub fn sign_request(
        &self,
        request_pem: &str,
        leaf: &Leaf,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<String, TlsError> {
        let request = CertificateSigningRequestParams::from_pem(request_pem).map_err(|e| {
            TlsError::new(format!(
                "the certificate signing request is not a valid PEM request: {e}"
            ))
        })?;
        let cert = self
            .params(leaf, lifetime, now)?
            .signed_by(&request.public_key, &self.issuer, &self.key)
            .map_err(rcgen_error("cannot sign the certificate"))?;
        Ok(cert.pem())
    }
}

/// A new key and a certificate signing request for it (both PEM), named `common_name`.
pub fn certificate_request(common_name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(rcgen_error("cannot make a key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(rcgen_error("cannot make the certificate signing request"))?;
    Ok((request, key.serialize_pem()))
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError::new(format!("cannot create {}: {e}", dir.display())))
}

/// The first certificate of a PEM text.
pub(crate) fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::new(format!("no certificate in PEM: {e}")))
}

/// The subject public key (SubjectPublicKeyInfo's key bits) of a certificate.
fn der_public_key(der: &CertificateDer<'_>) -> Result<Vec<u8>, TlsError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| TlsError::new(format!("not an X.509 certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_leaf() -> Leaf {
        Leaf {
            common_name: "minik-apiserver".into(),
            organization: None,
            dns_names: vec!["localhost".into(), "kubernetes.default.svc".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            usage: Usage::Server,
        }
    }

    #[test]
    fn a_ca_is_made_once_with_a_private_key_and_loaded_after() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let made = Ca::load_or_create(&tls).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tls.join("ca.key")), 0o600);
        assert_eq!(mode(&tls), 0o700);
        let loaded = Ca::load_or_create(&tls).unwrap();
        assert_eq!(made.pem(), loaded.pem());
        assert_eq!(made.fingerprint(), loaded.fingerprint());
        assert_eq!(made.fingerprint().len(), 64);
        // What the loaded CA issues verifies against the CA as first written.
        let issued = loaded
            .issue(&server_leaf(), Duration::from_secs(3600), SystemTime::now())
            .unwrap();
        let config = crate::client_config(made.pem(), None).unwrap();
        drop(config);
        assert!(issued.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(issued.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn half_a_ca_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.key") && err.contains("does not"), "{err}");
        let other = tempfile::tempdir().unwrap();
        let b = Ca::load_or_create(other.path()).unwrap();
        drop(b);
        std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not the key of the certificate"), "{err}");
        std::fs::write(dir.path().join("ca.crt"), "garbage").unwrap();
        let err = Ca::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a CA certificate"), "{err}");
    }

    #[test]
    fn a_request_gets_the_names_the_ca_chooses_not_the_ones_it_asks_for() {
        let ca = Ca::generate("test-ca", SystemTime::now()).unwrap();
        let (request, _key) = certificate_request("system:node:evil").unwrap();
        let leaf = Leaf {
            common_name: "system:node:n1".into(),
            organization: Some("system:nodes".into()),
            dns_names: vec!["n1".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            usage: Usage::Server,
        };
        let pem = ca
            .sign_request(&request, &leaf, Duration::from_secs(60), SystemTime::now())
            .unwrap();
        let der = first_certificate(&pem).unwrap();
        let who = crate::client_identity(&der).unwrap();
        assert_eq!(who.user, "system:node:n1");
        assert_eq!(who.groups, vec!["system:nodes".to_owned()]);
        let err = ca
            .sign_request(
                "not a request",
                &leaf,
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a valid PEM request"), "{err}");
    }

    #[test]
    fn names_that_cannot_be_dns_names_are_refused() {
        let ca = Ca::generate("test-ca", SystemTime::now()).unwrap();
        let mut leaf = server_leaf();
        leaf.dns_names.push("naïve".into());
        let err = ca
            .issue(&leaf, Duration::from_secs(60), SystemTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("\"naïve\""), "{err}");
    }
}
