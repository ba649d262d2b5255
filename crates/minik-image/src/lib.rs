//! minik's image service: what a node needs to turn `image: nginx` into layers on its disk.
//!
//! - [`Reference`]: image names as Docker Hub spells them, normalised (`nginx` →
//!   `docker.io/library/nginx:latest`).
//! - [`RegistriesConfig`]: k3s's `registries.yaml` (mirrors, auth, TLS).
//! - [`RegistryClient`]: the OCI distribution protocol (manifests, indexes, blobs, bearer tokens).
//! - [`Store`]: content-addressed blobs, layers unpacked once each for overlayfs, image records,
//!   garbage collection; safe against a crash at any point.
//! - [`ImageService`]: pulls (one download per layer however many pulls want it), imports.

mod archive;
mod auth;
mod client;
mod digest;
mod error;
mod manifest;
mod reference;
mod registries;
mod service;
mod store;
mod unpack;

pub use auth::{parse_www_authenticate, Challenge, Credential, DockerConfig, Scheme};
pub use client::{RegistryClient, Resolved, Source};
pub use digest::{Digest, Verifier};
pub use error::ImageError;
pub use manifest::{
    Compression, Descriptor, ImageConfig, Manifest, Platform, PlatformEntry, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST,
};
pub use reference::{default_pull_policy, Reference, DEFAULT_REGISTRY};
pub use registries::{Endpoint, RegistriesConfig, TlsConfig};
pub use service::{ImageService, PullOutcome, PullPolicy, PullStats};
pub use store::{FsStats, GcPolicy, GcReport, ImageRecord, LayerInfo, Removed, Store};
