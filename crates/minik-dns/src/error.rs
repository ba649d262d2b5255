//! The one error type of the crate.

/// What can go wrong setting up or running the DNS server. Bad packets are not errors: they
/// get FORMERR or are dropped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The cluster domain is not a DNS name.
    #[error("invalid cluster domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why it was refused.
        reason: String,
    },
    /// A socket of the server failed.
    #[error("DNS server: {what}: {source}")]
    Io {
        /// What the server was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
