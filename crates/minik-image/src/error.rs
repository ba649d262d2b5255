//! The one error type of the image service. Every variant names the image, the registry, the
//! blob or the file it is about, because each ends as a waiting message or an event a user reads.

use std::path::PathBuf;

use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Kubernetes' waiting reason for this is `InvalidImageName`.
    #[error("invalid reference format {reference:?}: {why}")]
    InvalidReference { reference: String, why: String },
    #[error("invalid digest {digest:?}: {why}")]
    InvalidDigest { digest: String, why: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A configuration file (registries.yaml, a dockerconfigjson Secret) that does not parse.
    #[error("{source_name}: {why}")]
    Config { source_name: String, why: String },
    #[error("{image}: not found: manifest unknown")]
    ManifestUnknown { image: String },
    #[error("{image}: blob {digest} not found: blob unknown")]
    BlobUnknown { image: String, digest: Digest },
    #[error("{image}: {registry} refused the credentials: {message}")]
    Unauthorized {
        image: String,
        registry: String,
        message: String,
    },
    #[error("{registry}: 429 Too Many Requests{}", retry_after.map(|s| format!(" (retry after {s}s)")).unwrap_or_default())]
    TooManyRequests {
        registry: String,
        retry_after: Option<u64>,
    },
    #[error("{registry}: unexpected answer {status}: {message}")]
    Registry {
        registry: String,
        status: u16,
        message: String,
    },
    #[error("{registry}: {error}")]
    Unreachable { registry: String, error: String },
    /// Every endpoint of a registry (mirrors, then the upstream) was tried and failed: what each
    /// said, in the order they were tried.
    #[error("{image}: {}", attempts.iter().map(|(endpoint, e)| format!("{endpoint}: {e}")).collect::<Vec<_>>().join("; "))]
    Attempts {
        image: String,
        attempts: Vec<(String, ImageError)>,
    },
    #[error("{image}: bad manifest: {why}")]
    BadManifest { image: String, why: String },
    #[error("{image}: no image for platform {platform} (the index has: {available})")]
    NoMatchingPlatform {
        image: String,
        platform: String,
        available: String,
    },
    /// A layer tarball refused while unpacking: what entry and why. Nothing was written outside
    /// the layer's own directory.
    #[error("layer {layer}: entry {entry:?}: {why}")]
    Unpack {
        layer: String,
        entry: String,
        why: String,
    },
    #[error("{}: {why}", file.display())]
    Archive { file: PathBuf, why: String },
    /// `imagePullPolicy: Never` and the image is not on the node (`ErrImageNeverPull`).
    #[error("container image {image:?} is not present with pull policy of Never")]
    NeverPull { image: String },
    #[error("image {image:?} not found on this node")]
    NotPresent { image: String },
    #[error("image {image:?} is used by a container: {by}")]
    InUse { image: String, by: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }
}
