//! The sled implementation of [`Store`].
//!
//! One writer thread owns every write. It takes whatever writes are queued (a group), checks
//! each against the current state (compare-and-swap on revisions), gives each the next
//! revision, applies the group as one atomic sled batch together with the new revision counter,
//! flushes once, and only then publishes the events and acknowledges the writers. So
//! concurrent writes share one fsync, a crash loses only writes nobody was told about, and a
//! crash can never leave half a group applied.
//!
//! Reads never return a value that is not yet durable: a read that finds a revision newer than
//! the flushed one waits for that flush, which is at most one group away.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::hub::{Hub, WatchEvent};
use crate::{
    EventType, Listing, Result, Revision, Store, StoreError, Stored, WatchStream, WriteFuture,
};

/// Where the counter of revisions lives; it sorts before every object key (they start with '/').
const REVISION_KEY: &[u8] = b"\x00minik/revision";

/// Tunables of a [`SledStore`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The directory sled keeps its files in.
    pub path: PathBuf,
    /// How many recent events a watch can resume from.
    pub history_size: usize,
    /// How many bytes of recent events are kept, at most.
    pub history_bytes: usize,
    /// How many events a watcher may have queued before it is dropped as too slow.
    pub watcher_buffer: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// The most writes one group (one fsync) takes.
    pub max_group: usize,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            history_size: 10_000,
            history_bytes: 64 << 20,
            watcher_buffer: 1_000,
            cache_bytes: 64 << 20,
            max_group: 1_024,
        }
    }
}

enum WriteKind {
    Create(Value),
    Update(Value, Option<Revision>),
    Delete(Option<Revision>),
}

struct WriteRequest {
    key: String,
    kind: WriteKind,
    reply: oneshot::Sender<Result<Stored>>,
}

/// What the writer thread is asked to do.
enum Message {
    Write(WriteRequest),
    /// Finish the writes queued before this and stop.
    Close,
}

/// State shared by the handles and the writer thread.
struct Shared {
    db: sled::Db,
    hub: Hub,
    /// Held for writing while a group is applied, for reading while a list scans, so a list
    /// sees whole groups only.
    snapshot: RwLock<()>,
    /// The revision of the newest applied (not necessarily flushed) group.
    applied: AtomicU64,
    /// Set when sled failed a write: the in-memory state can no longer be trusted to match the
    /// disk, so every later write is refused until a restart recovers from the disk.
    failed: AtomicBool,
}

/// A [`Store`] kept in sled. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct SledStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Message>,
    durable: watch::Receiver<Revision>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SledStore {
    /// Opens (or creates) the store at `config.path`, recovering the revision counter.
    pub fn open(config: StoreConfig) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Every group is flushed explicitly before it is acknowledged; a timer adds nothing.
            .flush_every_ms(None)
            .open()?;
        let revision = match db.get(REVISION_KEY)? {
            Some(v) => decode_revision(&v)
                .ok_or_else(|| StoreError::Backend("the revision counter is corrupt".into()))?,
            None => 0,
        };
        let shared = Arc::new(Shared {
            db,
            hub: Hub::new(
                revision,
                config.history_size,
                config.history_bytes,
                config.watcher_buffer,
            ),
            snapshot: RwLock::new(()),
            applied: AtomicU64::new(revision),
            failed: AtomicBool::new(false),
        });
        let (writes_tx, writes_rx) = mpsc::channel(config.max_group.max(1) * 4);
        let (durable_tx, durable_rx) = watch::channel(revision);
        let writer = {
            let shared = shared.clone();
            let max_group = config.max_group.max(1);
            std::thread::Builder::new()
                .name("minik-store-writer".into())
                .spawn(move || run_writer(shared, writes_rx, durable_tx, revision, max_group))
                .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?
        };
        Ok(SledStore {
            shared,
            writes: writes_tx,
            durable: durable_rx,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Stops the writer after the writes already queued and waits for it, so the directory can
    /// be opened again. Writes through other clones of this store fail with
    /// [`StoreError::Closed`] afterwards.
    pub async fn close(self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            if self.writes.send(Message::Close).await.is_ok() {
                let _ = tokio::task::spawn_blocking(move || writer.join()).await;
            }
        }
    }

    /// How many watchers are registered now.
    pub fn watcher_count(&self) -> usize {
        self.shared.hub.watcher_count()
    }

    fn submit(&self, key: &str, kind: WriteKind) -> WriteFuture {
        let writes = self.writes.clone();
        let key = key.to_owned();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            writes
                .send(Message::Write(WriteRequest { key, kind, reply }))
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }
}

/// Waits until `revision` is durable, or the store failed (then it never will be).
async fn wait_durable(
    shared: &Shared,
    mut durable: watch::Receiver<Revision>,
    revision: Revision,
) -> Result<()> {
    if *durable.borrow() >= revision {
        return Ok(());
    }
    durable
        .wait_for(|d| *d >= revision || shared.failed.load(Ordering::Acquire))
        .await
        .map_err(|_| StoreError::Closed)?;
    if *durable.borrow() >= revision {
        Ok(())
    } else {
        Err(StoreError::Backend(
            "the store failed to write to disk; restart the server".into(),
        ))
    }
}

impl Store for SledStore {
    fn create(&self, key: &str, object: Value) -> WriteFuture {
        self.submit(key, WriteKind::Create(object))
    }

    fn update(&self, key: &str, object: Value, expected: Option<Revision>) -> WriteFuture {
        self.submit(key, WriteKind::Update(object, expected))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> WriteFuture {
        self.submit(key, WriteKind::Delete(expected))
    }

    fn get(&self, key: &str) -> Pin<Box<dyn Future<Output = Result<Option<Stored>>> + Send>> {
        // Read the applied revision first: if the key is absent, a deletion of it may be applied
        // but not yet on disk, and must not be reported before it is.
        let applied = self.shared.applied.load(Ordering::Acquire);
        let found = self
            .shared
            .db
            .get(key)
            .map_err(StoreError::from)
            .and_then(|v| v.map(|v| decode_stored(key, &v)).transpose());
        let durable = self.durable.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let found = found?;
            let needed = found.as_ref().map_or(applied, |s| s.revision);
            wait_durable(&shared, durable, needed).await?;
            Ok(found)
        })
    }

    fn list(&self, prefix: &str) -> Pin<Box<dyn Future<Output = Result<Listing>> + Send>> {
        let shared = self.shared.clone();
        let durable = self.durable.clone();
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let scanned = shared.clone();
            let listing = tokio::task::spawn_blocking(move || scan(&scanned, &prefix))
                .await
                .map_err(|e| StoreError::Backend(format!("list task failed: {e}")))??;
            wait_durable(&shared, durable, listing.revision).await?;
            Ok(listing)
        })
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        self.shared.hub.subscribe(prefix, from)
    }

    fn revision(&self) -> Revision {
        *self.durable.borrow()
    }

    fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }
}

fn scan(shared: &Shared, prefix: &str) -> Result<Listing> {
    let _whole_groups = shared.snapshot.read().unwrap_or_else(|p| p.into_inner());
    let revision = shared.applied.load(Ordering::Acquire);
    let mut items = Vec::new();
    for kv in shared.db.scan_prefix(prefix) {
        let (k, v) = kv?;
        let key = String::from_utf8_lossy(&k).into_owned();
        items.push(decode_stored(&key, &v)?);
    }
    Ok(Listing { items, revision })
}

fn decode_revision(v: &[u8]) -> Option<Revision> {
    Some(Revision::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// A sled value is the revision of the key's last change (8 bytes, big endian) and the JSON.
fn encode_value(revision: Revision, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + json.len());
    v.extend_from_slice(&revision.to_be_bytes());
    v.extend_from_slice(json);
    v
}

fn decode_stored(key: &str, v: &[u8]) -> Result<Stored> {
    let revision = decode_revision(v)
        .ok_or_else(|| StoreError::Backend(format!("the value of {key} is corrupt")))?;
    Ok(Stored {
        key: key.to_owned(),
        revision,
        value: Bytes::copy_from_slice(&v[8..]),
    })
}

/// Sets `metadata.resourceVersion` to `revision` and serializes the object.
fn stamp(key: &str, mut object: Value, revision: Revision) -> Result<Bytes> {
    let Some(map) = object.as_object_mut() else {
        return Err(StoreError::NotAnObject { key: key.into() });
    };
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(StoreError::NotAnObject { key: key.into() });
    };
    metadata.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| StoreError::Backend(format!("cannot encode {key}: {e}")))
}

fn run_writer(
    shared: Arc<Shared>,
    mut messages: mpsc::Receiver<Message>,
    durable: watch::Sender<Revision>,
    mut revision: Revision,
    max_group: usize,
) {
    let mut group = Vec::with_capacity(max_group);
    let mut open = true;
    while open {
        match messages.blocking_recv() {
            Some(Message::Write(first)) => group.push(first),
            Some(Message::Close) | None => break,
        }
        while group.len() < max_group {
            match messages.try_recv() {
                Ok(Message::Write(request)) => group.push(request),
                Ok(Message::Close) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        revision = write_group(&shared, &mut group, &durable, revision);
    }
    // Dropping the receiver makes later writes fail with Closed instead of waiting forever.
    drop(messages);
    if let Err(e) = shared.db.flush() {
        tracing::error!(error = %e, "the store's final flush failed");
    }
}

/// The outcome of one request within a group, before the group is durable.
struct Pending {
    reply: oneshot::Sender<Result<Stored>>,
    outcome: Result<Stored>,
}

/// Applies one group and returns the revision after it.
fn write_group(
    shared: &Shared,
    group: &mut Vec<WriteRequest>,
    durable: &watch::Sender<Revision>,
    start: Revision,
) -> Revision {
    if shared.failed.load(Ordering::Acquire) {
        for request in group.drain(..) {
            let _ = request.reply.send(Err(StoreError::Backend(
                "an earlier write failed on disk; restart the server".into(),
            )));
        }
        return start;
    }
    // The state of each key as this group has left it so far, so writes to one key within a
    // group see each other.
    let mut overlay: HashMap<String, Option<Stored>> = HashMap::new();
    let mut batch = sled::Batch::default();
    let mut pending = Vec::with_capacity(group.len());
    let mut events = Vec::new();
    let mut revision = start;

    for request in group.drain(..) {
        let current = match overlay.get(&request.key) {
            Some(state) => Ok(state.clone()),
            None => shared
                .db
                .get(&request.key)
                .map_err(StoreError::from)
                .and_then(|v| v.map(|v| decode_stored(&request.key, &v)).transpose()),
        };
        let outcome = current
            .and_then(|current| apply_one(&request.key, request.kind, current, revision + 1));
        let outcome = match outcome {
            Ok((stored, event_kind, prev)) => {
                revision += 1;
                match event_kind {
                    EventType::Deleted => {
                        batch.remove(request.key.as_bytes());
                        overlay.insert(request.key.clone(), None);
                    }
                    _ => {
                        batch.insert(
                            request.key.as_bytes(),
                            encode_value(revision, &stored.value),
                        );
                        overlay.insert(request.key.clone(), Some(stored.clone()));
                    }
                }
                events.push(Arc::new(WatchEvent {
                    kind: event_kind,
                    key: request.key,
                    revision,
                    object: stored.value.clone(),
                    prev,
                }));
                Ok(stored)
            }
            Err(e) => Err(e),
        };
        pending.push(Pending {
            reply: request.reply,
            outcome,
        });
    }

    if events.is_empty() {
        for p in pending {
            let _ = p.reply.send(p.outcome);
        }
        return start;
    }

    batch.insert(REVISION_KEY, &revision.to_be_bytes());
    let written = {
        let _exclusive = shared.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let applied = shared.db.apply_batch(batch);
        if applied.is_ok() {
            shared.applied.store(revision, Ordering::Release);
        }
        applied
    }
    .and_then(|()| shared.db.flush().map(|_| ()));

    if let Err(e) = written {
        tracing::error!(error = %e, "a write to the store failed; refusing further writes");
        shared.failed.store(true, Ordering::Release);
        // Wake readers waiting for this group: it will never be durable.
        durable.send_modify(|_| {});
        for p in pending {
            let _ = p.reply.send(Err(StoreError::Backend(e.to_string())));
        }
        return start;
    }

    durable.send_replace(revision);
    shared.hub.publish(events);
    for p in pending {
        let _ = p.reply.send(p.outcome);
    }
    revision
}

/// Decides one write against the key's current state; on success returns what the key holds
/// afterwards (for a deletion, its last state), the event, and the previous value.
fn apply_one(
    key: &str,
    kind: WriteKind,
    current: Option<Stored>,
    revision: Revision,
) -> Result<(Stored, EventType, Option<Bytes>)> {
    let check = |expected: Option<Revision>, current: &Stored| match expected {
        Some(expected) if expected != current.revision => Err(StoreError::Conflict {
            key: key.into(),
            expected,
            actual: current.revision,
        }),
        _ => Ok(()),
    };
    let stored = |value| Stored {
        key: key.into(),
        revision,
        value,
    };
    match (kind, current) {
        (WriteKind::Create(_), Some(_)) => Err(StoreError::AlreadyExists { key: key.into() }),
        (WriteKind::Create(object), None) => Ok((
            stored(stamp(key, object, revision)?),
            EventType::Added,
            None,
        )),
        (WriteKind::Update(..) | WriteKind::Delete(_), None) => {
            Err(StoreError::NotFound { key: key.into() })
        }
        (WriteKind::Update(object, expected), Some(current)) => {
            check(expected, &current)?;
            let value = stamp(key, object, revision)?;
            Ok((stored(value), EventType::Modified, Some(current.value)))
        }
        (WriteKind::Delete(expected), Some(current)) => {
            check(expected, &current)?;
            // The deletion event carries the last state at the deletion's revision, as
            // Kubernetes' does; a value that no longer parses is passed on as it was.
            let last = match serde_json::from_slice::<Value>(&current.value) {
                Ok(object) => stamp(key, object, revision)?,
                Err(_) => current.value.clone(),
            };
            Ok((stored(last), EventType::Deleted, Some(current.value)))
        }
    }
}
