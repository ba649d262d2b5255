//! Who a client certificate names, as Kubernetes' x509 authenticator reads it: the subject's
//! common name is the user, each organization a group.

use rustls::pki_types::CertificateDer;

/// The user and groups of a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The identity a (verified) client certificate names; `None` when it names no user (no
/// common name) or cannot be read.
pub fn client_identity(cert: &CertificateDer<'_>) -> Option<ClientIdentity> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some(ClientIdentity { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_are_no_identity_or_one_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_identity(&CertificateDer::from(bytes));
        }
    }
}
