//! Generated names: `minik_api::generated`'s rules with the randomness of this process.

pub(crate) use minik_api::generated::{prefix_for as generate_prefix, safe_encode};

/// Five random characters of Kubernetes' alphabet for generated names.
pub(crate) fn random_suffix() -> String {
    // A v4 uuid's bytes are random but for its version and variant bits (bytes 6 and 8).
    minik_api::generated::suffix(uuid::Uuid::new_v4().as_bytes())
}
