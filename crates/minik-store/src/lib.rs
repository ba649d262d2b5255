//! minik's object store: a versioned key-value store of JSON objects with watch, kept durable in
//! sled. Only this crate touches sled; everything above it sees the [`Store`] trait.
//!
//! The model is etcd's, which is what Kubernetes' API machinery expects:
//! - one cluster-wide revision counter; every successful write takes the next revision, which
//!   becomes the object's `metadata.resourceVersion`;
//! - writes are compare-and-swap on that revision and are acknowledged only once on disk;
//! - a watch from revision N sees every change after N exactly once, in order, as long as N is
//!   inside the kept history window;
//! - a list can be read in pages, all as of the revision of the first: a page of an older
//!   revision is the current keys with the window's later changes taken back out (the window
//!   keeps each change's previous state), as long as that revision is inside the window.

mod disk;
mod encryption;
mod hub;
mod sled_store;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

pub use encryption::{
    Encryption, EncryptionConfigError, AESGCM_PREFIX, ENCRYPTED_PREFIX, KEY_BYTES,
};
pub use hub::{WatchEvent, WatchStream, DEFAULT_WATCH_BUFFER_BYTES};
pub use sled_store::{SledStore, StoreConfig};

/// A revision of the store: the value of the cluster-wide counter after some write.
pub type Revision = u64;

/// What a watch event reports about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The Kubernetes watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// An object as stored: its key, the revision of its last change, and its JSON bytes (whose
/// `metadata.resourceVersion` is that revision).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub key: String,
    pub revision: Revision,
    pub value: Bytes,
}

/// A list of objects under a prefix, consistent as of `revision`.
#[derive(Clone, Debug)]
pub struct Listing {
    pub items: Vec<Stored>,
    pub revision: Revision,
}

/// Which part of a list [`Store::list_page`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The first key to read: keys under the prefix that sort before it are skipped. `None`
    /// reads from the prefix's first key.
    pub start: Option<String>,
    /// The revision to read the keys as of; `None` for the newest. An older one is rebuilt from
    /// the watch window, and fails with [`StoreError::Compacted`] once the window no longer
    /// reaches back to it.
    pub revision: Option<Revision>,
    /// The most items to return; 0 for every one.
    pub limit: usize,
    /// Also count the items that follow the page ([`Page::remaining`]), which walks their keys.
    pub count_rest: bool,
}

/// Part of a list under a prefix, consistent as of `revision`.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    pub revision: Revision,
    /// Where the next page starts (a [`PageRequest::start`]), if any items follow this one.
    pub next: Option<String>,
    /// How many items follow this page, if [`PageRequest::count_rest`] asked.
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} has revision {actual}, the write expected {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// A watch from a revision older than the kept history; the client must list again.
    #[error("too old resource version: {requested} ({oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// A watcher fell too far behind the writers and was dropped; it must list again.
    #[error("the watch fell too far behind and was closed; list again")]
    Lagged,
    #[error("the value for {key} is not a JSON object")]
    NotAnObject { key: String },
    /// The disk holding the store is full, or too full to take the write without eating into
    /// the reserve: the write changed nothing; writes resume once space is freed, reads work.
    #[error("{0}")]
    NoSpace(String),
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("the store is shut down")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Whether sled failed because the filesystem is full (or the user's quota is spent).
fn is_no_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A write's future: resolves once the write is durable (or has failed).
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<Stored>> + Send>>;

/// A durable, versioned store of JSON objects with watch.
///
/// Writes take the object as a JSON value; the store sets `metadata.resourceVersion` to the
/// revision the write gets, so the bytes it keeps and hands out are final.
pub trait Store: Send + Sync + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it is there.
    fn create(&self, key: &str, object: serde_json::Value) -> WriteFuture;

    /// Replaces `key`, which must exist; with `expected` set, only if its revision is that one.
    fn update(
        &self,
        key: &str,
        object: serde_json::Value,
        expected: Option<Revision>,
    ) -> WriteFuture;

    /// Removes `key`; with `expected` set, only if its revision is that one. Resolves to the
    /// last state of the object, stamped with the revision of the deletion.
    fn delete(&self, key: &str, expected: Option<Revision>) -> WriteFuture;

    /// Reads `key`.
    fn get(&self, key: &str) -> Pin<Box<dyn Future<Output = Result<Option<Stored>>> + Send>>;

    /// Lists every key under `prefix`, as of one revision.
    fn list(&self, prefix: &str) -> Pin<Box<dyn Future<Output = Result<Listing>> + Send>>;

    /// Lists part of the keys under `prefix`, in key order, as of the newest revision or an
    /// older one: the pages of one list read with the same revision fit together exactly,
    /// whatever was written between them.
    fn list_page(
        &self,
        prefix: &str,
        request: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page>> + Send>>;

    /// Waits until `revision` is durable, for at most `patience`; whether it is.
    fn reached(
        &self,
        revision: Revision,
        patience: Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>>;

    /// Streams every change under `prefix` after revision `from`.
    fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// The newest durable revision.
    fn revision(&self) -> Revision;

    /// Whether writes can be taken now: [`StoreError::NoSpace`] while the disk is too full
    /// (until space is freed), [`StoreError::Backend`] after a write failed on disk for another
    /// reason (until a restart). Reads work either way.
    fn writable(&self) -> Result<()>;
}
