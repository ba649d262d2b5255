//! Whom the tests' HTTP clients trust: the cluster CA of each `minik server` or `minik up` a
//! test started (they serve HTTPS with a CA of their own, `DATA_DIR/tls/ca.crt`), remembered
//! by the base address the process printed, so that [`crate::Http`], [`client`] and the agents
//! and client commands the tests start verify the server as any client would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static CAS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// Remembers that the server at `base` is verified with the CA in `ca_file`.
pub fn remember_ca(base: &str, ca_file: &Path) {
    CAS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(base.trim_end_matches('/').to_owned(), ca_file.to_owned());
}

/// The CA file of the server at `base` (or of a URL under it), if a test started it.
pub fn ca_for(base: &str) -> Option<PathBuf> {
    let cas = CAS.lock().unwrap_or_else(|e| e.into_inner());
    cas.iter()
        .find(|(known, _)| base.starts_with(known.as_str()))
        .map(|(_, ca)| ca.clone())
}

/// A client builder that trusts the CA of the server at `base` (none for plain HTTP).
pub fn builder(base: &str) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match ca_for(base) {
        Some(ca) => {
            let pem = std::fs::read(&ca)
                .unwrap_or_else(|e| panic!("cannot read the cluster CA {}: {e}", ca.display()));
            let cert = reqwest::Certificate::from_pem(&pem)
                .unwrap_or_else(|e| panic!("{} is not a PEM certificate: {e}", ca.display()));
            builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert)
        }
        None => builder,
    }
}

/// A client of the server at `base` with no timeout of its own, trusting its CA.
pub fn client(base: &str) -> reqwest::Client {
    builder(base).build().expect("an HTTP client")
}
