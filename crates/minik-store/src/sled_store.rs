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
//!
//! A full disk is a state the store lives through, not a crash. Before a group reaches sled the
//! writer checks the free space of the store's filesystem and refuses the whole group with
//! [`StoreError::NoSpace`] if it would leave less than the reserve
//! ([`StoreConfig::min_free_bytes`]); nothing changes, and writes go through again once space
//! is freed. That check is what keeps sled 0.34 away from ENOSPC, which it handles badly: a
//! failed log write poisons the instance (every later write fails, and so do reads that would
//! finish a page split on the way), a failed blob write leaks a reservation so that every
//! later flush waits forever, and a failed write in its IO pool can leave a flush waiting for a
//! wake-up that never comes.
//!
//! When the disk fills anyway (the reserve is off, or something else ate it), the writer never
//! waits on sled blindly: flushes run on a helper thread, a flush that takes too long is
//! nudged (a second flush sees a recorded error and wakes the first), and one stuck on a full
//! disk is given up. The failed group's writes and every later one are refused with `NoSpace`,
//! and reads answer the failed group's keys as they were before it. Then the writer closes the
//! failed instance, deletes the ballast (a file the store keeps next to sled's for this moment)
//! so that sled has room to open, and opens it again from the disk, which recovers exactly what
//! was durable; once there is room for the ballast and the reserve again, writes resume by
//! themselves. If the instance cannot be closed (the leaked reservation: its flushes never
//! end), it stays, for reads only, until the server is restarted. Other write failures (EIO)
//! also need a restart.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::disk::{
    available_bytes, make_ballast, mebibytes, remove_ballast, stuck_flush, Flushed, Flusher,
    BALLAST_BYTES,
};
use crate::encryption::{decode_json, form_of, Encryption, Form};
use crate::hub::{Hub, WatchEvent};
use crate::{
    is_no_space, EventType, Listing, Page, PageRequest, Result, Revision, Store, StoreError,
    Stored, WatchStream, WriteFuture,
};

/// Where the counter of revisions lives; it sorts before every object key (they start with '/').
const REVISION_KEY: &[u8] = b"\x00minik/revision";

/// How long a flush may take on a disk with room before it is given up (a disk that slow is
/// broken).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long closing a failed sled instance may take: its last flush, then dropping it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the watchdog asks a store that failed on a full disk to try to recover.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);

/// How long opening sled again waits for the failed instance to let go of its file lock (its
/// IO threads drop their handles shortly after it is dropped).
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The least free space with which the store tries to open sled when it could not at first.
const REOPEN_MIN_FREE: u64 = 2 << 20;

/// How many bytes of disk a group is assumed to need per byte of keys and values: sled logs
/// every change and rewrites the pages it lands in.
const DISK_BYTES_PER_BYTE: u64 = 2;

/// How many times a read starts over when the store fails or recovers while it waits.
const READ_ATTEMPTS: usize = 3;

/// How long a read that sled failed waits for the writer to open sled again.
const READ_FAILURE_WAIT: Duration = Duration::from_secs(10);

/// How long a page read waits for the changes up to the revision it scanned to reach the watch
/// window (they are published right after they become durable).
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// How many flushes settle a failed sled instance before it is dropped, at most.
const SETTLE_FLUSHES: usize = 8;

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
    /// The free space to keep on the store's filesystem: a group of writes that would leave
    /// less is refused with [`StoreError::NoSpace`] before sled sees it. 0 turns the check off
    /// (a full disk is then met by the kernel's ENOSPC, which the store also survives).
    pub min_free_bytes: u64,
    /// Encryption at rest of the keys it covers (Secrets): their JSON is encrypted on disk
    /// only; reads, lists and watches see plaintext. At open, every covered value not in the
    /// form new writes take is re-written in it, with its revision unchanged. `None`: values
    /// are stored as written.
    pub encryption: Option<Arc<Encryption>>,
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
            min_free_bytes: 64 << 20,
            encryption: None,
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
    /// See whether a store that failed on a full disk can open sled again (from the watchdog).
    Recover,
    /// sled failed a read in `epoch`: it is in trouble (it finishes page splits while it reads,
    /// and could not write one), and must be opened again.
    ReadFailed {
        epoch: u64,
        error: sled::Error,
    },
    /// Finish the writes queued before this and stop.
    Close,
}

/// What readers wait on: the newest durable revision, and how many times the store has failed
/// or recovered. A reader that read under an older epoch reads again: what it found may never
/// become durable, or may be gone with the sled instance it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Durable {
    revision: Revision,
    epoch: u64,
}

/// The sled instance, and why writes are refused if they are.
struct Backend {
    /// `None` only after a failure, until sled could be opened again.
    db: Option<sled::Db>,
    failure: Option<Failure>,
}

/// Why the store refuses writes after sled failed.
struct Failure {
    /// What each write is answered.
    error: StoreError,
    /// A full disk, which the store recovers from by itself once space is back.
    recoverable: bool,
    /// The instance in `Backend::db` is the failed one, which sled would not let go of.
    stuck: bool,
    /// The group that failed, while the instance it failed in is still the one reads use, or
    /// sled has not been opened again to see whether the group reached the disk after all.
    unsettled: Option<FailedGroup>,
}

/// A group whose flush failed: it may or may not be on disk (a batch is atomic, so it is
/// wholly one or the other), which only reopening sled tells.
struct FailedGroup {
    /// The durable revision before the group.
    start: Revision,
    /// The revision the group would have ended at.
    end: Revision,
    /// Its events, published if the group turns out to be on disk.
    events: Vec<Arc<WatchEvent>>,
    /// Each key the group looked at, as it was before the group: what reads answer while the
    /// failed instance (which holds the group's values in memory) serves them.
    before: HashMap<String, Option<Stored>>,
}

/// State shared by the handles, the writer thread and the watchdog.
struct Shared {
    path: PathBuf,
    cache_bytes: u64,
    min_free_bytes: u64,
    /// What covered values are encrypted with on disk.
    encryption: Option<Arc<Encryption>>,
    hub: Hub,
    /// Read-held by every use of sled; write-held only by the writer, to record a failure or to
    /// swap in a reopened instance.
    backend: RwLock<Backend>,
    /// Held for writing while a group is applied, for reading while a list scans, so a list
    /// sees whole groups only. Taken after `backend`.
    snapshot: RwLock<()>,
    /// The revision of the newest applied (not necessarily flushed) group.
    applied: AtomicU64,
    /// Whether the last space check refused writes, so the change is logged once each way.
    low_on_space: AtomicBool,
}

impl Shared {
    fn backend(&self) -> RwLockReadGuard<'_, Backend> {
        self.backend.read().unwrap_or_else(|p| p.into_inner())
    }

    fn backend_mut(&self) -> RwLockWriteGuard<'_, Backend> {
        self.backend.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a group that needs `bytes` of keys and values if the filesystem would be left
    /// with less than the reserve. Once it refused, it takes writes again only when a quarter
    /// of the reserve is free beyond it, so that a nearly full disk does not flap between
    /// refusing and taking writes (and `/readyz` with it).
    fn check_space(&self, bytes: u64) -> Result<()> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        // If the filesystem cannot be asked, let the write try: sled's own error handling
        // still stands behind it.
        let Ok(available) = available_bytes(&self.path) else {
            return Ok(());
        };
        let reserve = if self.low_on_space.load(Ordering::Relaxed) {
            self.min_free_bytes.saturating_add(self.min_free_bytes / 4)
        } else {
            self.min_free_bytes
        };
        let needed = reserve.saturating_add(bytes.saturating_mul(DISK_BYTES_PER_BYTE));
        if available >= needed {
            if self.low_on_space.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    free = available,
                    "disk space is back; the store takes writes again"
                );
            }
            return Ok(());
        }
        if !self.low_on_space.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                free = available,
                reserve = self.min_free_bytes,
                path = %self.path.display(),
                "the disk holding the store is nearly full; refusing writes until space is freed"
            );
        }
        Err(StoreError::NoSpace(format!(
            "the disk holding the store is full: {} free, {} must stay free; writes are refused \
             until space is freed (reads keep working)",
            mebibytes(available),
            mebibytes(self.min_free_bytes)
        )))
    }
}

fn open_db(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::HighThroughput)
        // Every group is flushed explicitly before it is acknowledged; a timer adds nothing.
        .flush_every_ms(None)
        .open()
}

fn read_revision(db: &sled::Db) -> Result<Revision> {
    match db.get(REVISION_KEY)? {
        Some(v) => decode_revision(&v)
            .ok_or_else(|| StoreError::Backend("the revision counter is corrupt".into())),
        None => Ok(0),
    }
}

/// A [`Store`] kept in sled. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct SledStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Message>,
    durable: watch::Receiver<Durable>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SledStore {
    /// Opens (or creates) the store at `config.path`, recovering the revision counter.
    pub fn open(config: StoreConfig) -> Result<SledStore> {
        let db = open_db(&config.path, config.cache_bytes)?;
        let revision = read_revision(&db)?;
        match &config.encryption {
            Some(encryption) => reencrypt(&db, encryption, &config.path, config.min_free_bytes)?,
            None => warn_if_encrypted(&db),
        }
        if let Err(e) = make_ballast(&config.path) {
            tracing::warn!(
                error = %e,
                "cannot make the store's ballast; if the disk fills up, reads fail until space is freed"
            );
        }
        let shared = Arc::new(Shared {
            path: config.path.clone(),
            cache_bytes: config.cache_bytes,
            min_free_bytes: config.min_free_bytes,
            encryption: config.encryption.clone(),
            hub: Hub::new(
                revision,
                config.history_size,
                config.history_bytes,
                config.watcher_buffer,
            ),
            backend: RwLock::new(Backend {
                db: Some(db),
                failure: None,
            }),
            snapshot: RwLock::new(()),
            applied: AtomicU64::new(revision),
            low_on_space: AtomicBool::new(false),
        });
        let (writes_tx, writes_rx) = mpsc::channel(config.max_group.max(1) * 4);
        let (durable_tx, durable_rx) = watch::channel(Durable { revision, epoch: 0 });
        let writer = {
            let shared = shared.clone();
            let max_group = config.max_group.max(1);
            let nudges = writes_tx.downgrade();
            std::thread::Builder::new()
                .name("minik-store-writer".into())
                .spawn(move || {
                    run_writer(shared, writes_rx, nudges, durable_tx, revision, max_group)
                })
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

/// Waits until `revision` is durable; `false` if the store failed or recovered meanwhile (the
/// epoch moved on), and the read must start over.
async fn wait_durable(
    durable: &watch::Receiver<Durable>,
    revision: Revision,
    epoch: u64,
) -> Result<bool> {
    let mut durable = durable.clone();
    let now = durable
        .wait_for(|d| d.revision >= revision || d.epoch != epoch)
        .await
        .map_err(|_| StoreError::Closed)?;
    Ok(now.epoch == epoch)
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.failure.as_ref().is_some_and(|f| f.stuck) {
            // Dropping sled flushes it, and this instance's flushes never end: leave it to the
            // end of the process rather than hang the one dropping the store.
            std::mem::forget(self.db.take());
        }
    }
}

impl Backend {
    /// The failed group whose values the open instance still holds, if it does.
    fn failed_group(&self) -> Option<&FailedGroup> {
        self.failure.as_ref().and_then(|f| f.unsettled.as_ref())
    }

    /// sled, unless a failure left it closed.
    fn db(&self) -> Result<&sled::Db> {
        match (&self.db, &self.failure) {
            (Some(db), _) => Ok(db),
            (None, Some(failure)) if failure.recoverable => Err(StoreError::Backend(
                "the disk holding the store is so full that the store cannot open again after a \
                 failed write; it will once space is freed"
                    .into(),
            )),
            (None, _) => Err(StoreError::Backend(
                "the store could not open again after a failed write; restart the server".into(),
            )),
        }
    }
}

/// Why a read failed: sled itself (the writer must hear of it), or anything else.
enum ReadError {
    Sled(sled::Error),
    Store(StoreError),
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError::Store(e)
    }
}

impl From<sled::Error> for ReadError {
    fn from(e: sled::Error) -> Self {
        ReadError::Sled(e)
    }
}

/// A key as sled has it, and the revision that must be durable before it may be answered.
fn read_key(shared: &Shared, key: &str) -> Result<(Option<Stored>, Revision), ReadError> {
    let backend = shared.backend();
    let db = backend.db()?;
    // Read the applied revision first: if the key is absent, a deletion of it may be applied
    // but not yet on disk, and must not be reported before it is.
    let applied = shared.applied.load(Ordering::Acquire);
    if let Some(group) = backend.failed_group() {
        // No group is in flight after a failure: what sled holds is durable, but for the keys
        // of the failed group.
        if let Some(before) = group.before.get(key) {
            return Ok((before.clone(), 0));
        }
    }
    let encryption = shared.encryption.as_deref();
    let found = db
        .get(key)?
        .map(|v| decode_stored(encryption, key, v))
        .transpose()?;
    let needed = found.as_ref().map_or(applied, |s| s.revision);
    Ok((found, needed))
}

/// Tells the writer that sled failed a read in `epoch`, and waits (a while) for it to open
/// sled again; the error to answer if the read cannot be tried again.
async fn report_read_failure(
    shared: &Shared,
    writes: &mpsc::Sender<Message>,
    durable: &watch::Receiver<Durable>,
    epoch: u64,
    error: sled::Error,
) -> StoreError {
    let answer = StoreError::from(error.clone());
    let stays = shared
        .backend()
        .failure
        .as_ref()
        .is_some_and(|f| !f.recoverable);
    if stays {
        // The instance stays until a restart whatever it does; nothing to wait for.
        return answer;
    }
    let mut durable = durable.clone();
    let reopened = tokio::time::timeout(READ_FAILURE_WAIT, async {
        writes
            .send(Message::ReadFailed { epoch, error })
            .await
            .map_err(|_| StoreError::Closed)?;
        durable
            .wait_for(|d| d.epoch != epoch)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok::<(), StoreError>(())
    })
    .await;
    match reopened {
        Ok(Ok(())) => answer,
        Ok(Err(closed)) => closed,
        Err(_) => answer,
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
        let shared = self.shared.clone();
        let durable = self.durable.clone();
        let writes = self.writes.clone();
        let key = key.to_owned();
        Box::pin(async move {
            let mut last = None;
            for _ in 0..READ_ATTEMPTS {
                let epoch = durable.borrow().epoch;
                match read_key(&shared, &key) {
                    Ok((found, needed)) => {
                        if wait_durable(&durable, needed, epoch).await? {
                            return Ok(found);
                        }
                    }
                    Err(ReadError::Store(e)) => return Err(e),
                    Err(ReadError::Sled(e)) => {
                        last =
                            Some(report_read_failure(&shared, &writes, &durable, epoch, e).await);
                    }
                }
            }
            Err(last.unwrap_or_else(|| {
                StoreError::Backend(format!("the store kept failing while {key} was read"))
            }))
        })
    }

    fn list(&self, prefix: &str) -> Pin<Box<dyn Future<Output = Result<Listing>> + Send>> {
        let shared = self.shared.clone();
        let durable = self.durable.clone();
        let writes = self.writes.clone();
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let mut last = None;
            for _ in 0..READ_ATTEMPTS {
                let epoch = durable.borrow().epoch;
                // A short list (a namespace's quotas, its service accounts) is read right here;
                // a hop to the blocking pool and back would cost more than the read.
                let scanned = match scan(&shared, &prefix, Some(INLINE_LIST_KEYS)) {
                    Ok(None) => {
                        let (scanned, wanted) = (shared.clone(), prefix.clone());
                        tokio::task::spawn_blocking(move || scan(&scanned, &wanted, None))
                            .await
                            .map_err(|e| StoreError::Backend(format!("list task failed: {e}")))?
                    }
                    done => done,
                };
                match scanned {
                    Ok(Some(listing)) => {
                        if wait_durable(&durable, listing.revision, epoch).await? {
                            return Ok(listing);
                        }
                    }
                    Ok(None) => {
                        return Err(StoreError::Backend(format!(
                            "the list of {prefix} stopped short without a limit"
                        )))
                    }
                    Err(ReadError::Store(e)) => return Err(e),
                    Err(ReadError::Sled(e)) => {
                        last =
                            Some(report_read_failure(&shared, &writes, &durable, epoch, e).await);
                    }
                }
            }
            Err(last.unwrap_or_else(|| {
                StoreError::Backend(format!("the store kept failing while {prefix} was listed"))
            }))
        })
    }

    fn list_page(
        &self,
        prefix: &str,
        request: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page>> + Send>> {
        let shared = self.shared.clone();
        let durable = self.durable.clone();
        let writes = self.writes.clone();
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let mut last = None;
            for _ in 0..READ_ATTEMPTS {
                let epoch = durable.borrow().epoch;
                match read_page(&shared, &durable, &prefix, &request, epoch).await {
                    Ok(Some(page)) => return Ok(page),
                    Ok(None) => {}
                    Err(ReadError::Store(e)) => return Err(e),
                    Err(ReadError::Sled(e)) => {
                        last =
                            Some(report_read_failure(&shared, &writes, &durable, epoch, e).await);
                    }
                }
            }
            Err(last.unwrap_or_else(|| {
                StoreError::Backend(format!("the store kept failing while {prefix} was listed"))
            }))
        })
    }

    fn reached(
        &self,
        revision: Revision,
        patience: Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let mut durable = self.durable.clone();
        Box::pin(async move {
            let reached =
                tokio::time::timeout(patience, durable.wait_for(|d| d.revision >= revision)).await;
            matches!(reached, Ok(Ok(_)))
        })
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        self.shared.hub.subscribe(prefix, from)
    }

    fn revision(&self) -> Revision {
        self.durable.borrow().revision
    }

    fn writable(&self) -> Result<()> {
        if let Some(failure) = &self.shared.backend().failure {
            return Err(failure.error.clone());
        }
        self.shared.check_space(0)
    }
}

/// How many keys a list may have to be read on the caller's thread rather than the blocking
/// pool's.
const INLINE_LIST_KEYS: usize = 32;

/// Every key under `prefix`, or `None` if there are more than `limit`.
fn scan(shared: &Shared, prefix: &str, limit: Option<usize>) -> Result<Option<Listing>, ReadError> {
    let backend = shared.backend();
    let _whole_groups = shared.snapshot.read().unwrap_or_else(|p| p.into_inner());
    let db = backend.db()?;
    let revision = shared.applied.load(Ordering::Acquire);
    let mut items = Vec::new();
    for kv in db.scan_prefix(prefix) {
        if limit.is_some_and(|limit| items.len() >= limit) {
            return Ok(None);
        }
        let (k, v) = kv?;
        let key = String::from_utf8_lossy(&k).into_owned();
        items.push(decode_stored(shared.encryption.as_deref(), &key, v)?);
    }
    if let Some(group) = backend.failed_group() {
        // The failed group's keys as they were before it.
        let mut by_key: BTreeMap<String, Stored> =
            items.into_iter().map(|s| (s.key.clone(), s)).collect();
        for (key, before) in &group.before {
            if key.starts_with(prefix) {
                match before {
                    Some(stored) => by_key.insert(key.clone(), stored.clone()),
                    None => by_key.remove(key),
                };
            }
        }
        items = by_key.into_values().collect();
    }
    Ok(Some(Listing { items, revision }))
}

/// What one scan of a page read found under the snapshot lock: sled's entries from its start
/// key on, and the keys whose values sled holds but reads must not answer yet (a failed
/// group's), all as of `applied`.
struct Chunk {
    entries: Vec<(sled::IVec, sled::IVec)>,
    /// The failed group's keys in the chunk's range, as they were before it.
    overlay: BTreeMap<String, Option<Stored>>,
    applied: Revision,
    /// Whether the chunk reaches the end of the prefix (otherwise it ends at its last entry).
    exhausted: bool,
}

/// Scans at most `max` keys under `prefix` from `start` on.
fn scan_chunk(shared: &Shared, prefix: &str, start: &str, max: usize) -> Result<Chunk, ReadError> {
    let backend = shared.backend();
    let _whole_groups = shared.snapshot.read().unwrap_or_else(|p| p.into_inner());
    let db = backend.db()?;
    let applied = shared.applied.load(Ordering::Acquire);
    let mut entries = Vec::new();
    let mut exhausted = true;
    for kv in db.range(start.as_bytes()..) {
        let (k, v) = kv?;
        if !k.starts_with(prefix.as_bytes()) {
            break;
        }
        if entries.len() == max {
            exhausted = false;
            break;
        }
        entries.push((k, v));
    }
    let mut overlay = BTreeMap::new();
    if let Some(group) = backend.failed_group() {
        let end = entries
            .last()
            .filter(|_| !exhausted)
            .map(|(k, _)| k.clone());
        for (key, before) in &group.before {
            let covered = end
                .as_ref()
                .is_none_or(|end| key.as_bytes() <= end.as_ref());
            if key.starts_with(prefix) && key.as_str() >= start && covered {
                overlay.insert(key.clone(), before.clone());
            }
        }
    }
    Ok(Chunk {
        entries,
        overlay,
        applied,
        exhausted,
    })
}

/// One item of a page before it is decoded: sled's bytes, or a state the store kept itself.
enum Entry {
    Sled(sled::IVec, sled::IVec),
    Kept(Stored),
}

impl Entry {
    fn key(&self) -> &[u8] {
        match self {
            Entry::Sled(key, _) => key,
            Entry::Kept(stored) => stored.key.as_bytes(),
        }
    }

    fn decode(self, encryption: Option<&Encryption>) -> Result<Stored> {
        match self {
            Entry::Sled(key, value) => {
                decode_stored(encryption, &String::from_utf8_lossy(&key), value)
            }
            Entry::Kept(stored) => Ok(stored),
        }
    }
}

/// The chunk's keys as of the revision `changed` was made for: sled's entries with `changed`
/// (each key's state then, where it differs from sled's) laid over them, in key order, as far
/// as the chunk reaches.
fn merge(chunk: Chunk, changed: BTreeMap<String, Option<Stored>>) -> Vec<Entry> {
    let Chunk {
        entries,
        mut overlay,
        exhausted,
        ..
    } = chunk;
    overlay.extend(changed);
    if !exhausted {
        if let Some((end, _)) = entries.last() {
            overlay.retain(|key, _| key.as_bytes() <= end.as_ref());
        }
    }
    let mut out = Vec::with_capacity(entries.len() + overlay.len());
    let mut sled = entries.into_iter().peekable();
    let mut kept = overlay.into_iter().peekable();
    loop {
        let take_kept = match (sled.peek(), kept.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((s, _)), Some((k, _))) => {
                let order = k.as_bytes().cmp(s.as_ref());
                if order == std::cmp::Ordering::Equal {
                    // The kept state stands for this key instead of sled's.
                    sled.next();
                }
                order != std::cmp::Ordering::Greater
            }
        };
        if take_kept {
            if let Some((_, Some(stored))) = kept.next() {
                out.push(Entry::Kept(stored));
            }
        } else if let Some((key, value)) = sled.next() {
            out.push(Entry::Sled(key, value));
        }
    }
    out
}

/// The first key after `key`: where a page that ended at `key` is continued.
fn key_after(key: &[u8]) -> String {
    let mut next = String::from_utf8_lossy(key).into_owned();
    next.push('\0');
    next
}

/// One try of a page read; `None` if the store failed or recovered meanwhile (read again).
///
/// Each chunk is scanned as of the newest revision; a page of an older revision takes the
/// window's changes since that revision back out of it: a key changed since is answered as it
/// was then (the window keeps every change's previous state), a key created since is left
/// out, and a key deleted since is put back. A page that needs more keys than one chunk had
/// (some were left out) scans again after the last one, as of the same revision.
async fn read_page(
    shared: &Arc<Shared>,
    durable: &watch::Receiver<Durable>,
    prefix: &str,
    request: &PageRequest,
    epoch: u64,
) -> Result<Option<Page>, ReadError> {
    let mut cursor = match &request.start {
        Some(start) if start.as_str() > prefix => start.clone(),
        _ => prefix.to_owned(),
    };
    // One more than the page, to tell whether anything follows it.
    let want = match request.limit {
        0 => usize::MAX,
        limit => limit.saturating_add(1),
    };
    let unbounded = request.limit == 0 || request.count_rest;
    let mut entries: Vec<Entry> = Vec::new();
    let mut at = request.revision;
    loop {
        let max = if unbounded {
            usize::MAX
        } else {
            want - entries.len()
        };
        let (scanned, wanted, from) = (shared.clone(), prefix.to_owned(), cursor.clone());
        let chunk = tokio::task::spawn_blocking(move || scan_chunk(&scanned, &wanted, &from, max))
            .await
            .map_err(|e| StoreError::Backend(format!("list task failed: {e}")))??;
        if !wait_durable(durable, chunk.applied, epoch).await? {
            return Ok(None);
        }
        let revision = *at.get_or_insert(chunk.applied);
        if revision > chunk.applied {
            return Err(StoreError::Backend(format!(
                "cannot list {prefix} as of revision {revision}: the store is at {}",
                chunk.applied
            ))
            .into());
        }
        if !shared.hub.published(chunk.applied, PUBLISH_WAIT).await {
            return Err(StoreError::Backend(format!(
                "the changes up to revision {} did not reach the watch window",
                chunk.applied
            ))
            .into());
        }
        let changed = shared
            .hub
            .state_before(prefix, Some(&cursor), revision, chunk.applied)?;
        let (exhausted, last) = (
            chunk.exhausted,
            chunk.entries.last().map(|(k, _)| k.clone()),
        );
        entries.extend(merge(chunk, changed));
        match last {
            Some(last) if !exhausted && entries.len() < want => cursor = key_after(&last),
            _ => break,
        }
    }
    let revision = at.unwrap_or_default();
    let rest = match request.limit {
        0 => Vec::new(),
        limit if entries.len() > limit => entries.split_off(limit),
        _ => Vec::new(),
    };
    let next = match (rest.is_empty(), entries.last()) {
        (false, Some(last)) => Some(key_after(last.key())),
        _ => None,
    };
    let remaining = request.count_rest.then_some(rest.len() as u64);
    drop(rest);
    let decoding = shared.clone();
    let items = tokio::task::spawn_blocking(move || {
        let encryption = decoding.encryption.as_deref();
        entries
            .into_iter()
            .map(|entry| entry.decode(encryption))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| StoreError::Backend(format!("list task failed: {e}")))??;
    Ok(Some(Page {
        items,
        revision,
        next,
        remaining,
    }))
}

fn decode_revision(v: &[u8]) -> Option<Revision> {
    Some(Revision::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// A sled value is the revision of the key's last change (8 bytes, big endian) and the JSON,
/// encrypted when `encryption` covers `key`.
fn encode_value(
    encryption: Option<&Encryption>,
    key: &str,
    revision: Revision,
    json: &[u8],
) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(8 + json.len());
    v.extend_from_slice(&revision.to_be_bytes());
    match encryption {
        Some(encryption) => encryption.encode_into(key, json, &mut v)?,
        None => v.extend_from_slice(json),
    }
    Ok(v)
}

/// A sled value as the store hands it out: its JSON decrypted if it was encrypted, an error
/// naming the key if it cannot be.
/// Plaintext is not copied: the bytes handed out are a view into sled's own value, so an object
/// read, listed or kept in the watch window is in memory once, in sled's cache.
fn decode_stored(encryption: Option<&Encryption>, key: &str, v: sled::IVec) -> Result<Stored> {
    let revision = decode_revision(&v)
        .ok_or_else(|| StoreError::Backend(format!("the value of {key} is corrupt")))?;
    let decrypted = match decode_json(encryption, key, v.get(8..).unwrap_or_default())? {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(json) => Some(json),
    };
    let value = match decrypted {
        Some(json) => Bytes::from(json),
        // `decode_revision` found the eight bytes of the revision.
        None => Bytes::from_owner(v).slice(8..),
    };
    Ok(Stored {
        key: key.to_owned(),
        revision,
        value,
    })
}

/// At open, before the store serves anything: re-writes every value `encryption` covers that
/// is not in the form new writes take (encrypted with another key, or plaintext, or encrypted
/// when `identity` comes first), keeping its revision: a change of storage, not of objects, so
/// no events. One batch and one flush, so a crash leaves all or nothing (and the next open does
/// it again). A value naming a key the configuration lacks stops the open: that key was removed
/// too early. A value that does not decrypt (corrupt) is left as it is, and reads of it fail.
fn reencrypt(
    db: &sled::Db,
    encryption: &Encryption,
    path: &Path,
    min_free_bytes: u64,
) -> Result<()> {
    let mut batch = sled::Batch::default();
    let (mut rewritten, mut bytes, mut corrupt) = (0usize, 0u64, 0usize);
    for prefix in encryption.prefixes() {
        for kv in db.scan_prefix(prefix) {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let data = v.get(8..).unwrap_or_default();
            let form = form_of(data);
            if !encryption.needs_rewrite(&key, &form) {
                continue;
            }
            if let Form::AesGcm(name) = form {
                if !name.is_empty() && !encryption.has_key(name) {
                    return Err(StoreError::Backend(format!(
                        "{key} is encrypted with key {name:?}, which the encryption                          configuration{} does not have; put that key back (after the key that                          encrypts) until the store has re-encrypted everything with the new one",
                        encryption.origin()
                    )));
                }
            }
            let stored = match decode_stored(Some(encryption), &key, v) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(error = %e, "a value cannot be re-encrypted; it is left as it is");
                    corrupt += 1;
                    continue;
                }
            };
            let encoded = encode_value(Some(encryption), &key, stored.revision, &stored.value)?;
            bytes += (k.len() + encoded.len()) as u64;
            batch.insert(k, encoded);
            rewritten += 1;
        }
    }
    if rewritten > 0 {
        if min_free_bytes > 0 {
            if let Ok(available) = available_bytes(path) {
                let needed =
                    min_free_bytes.saturating_add(bytes.saturating_mul(DISK_BYTES_PER_BYTE));
                if available < needed {
                    return Err(StoreError::NoSpace(format!(
                        "the disk holding the store has {} free, too little to re-encrypt                          {rewritten} values and keep {} free; free space and start again",
                        mebibytes(available),
                        mebibytes(min_free_bytes)
                    )));
                }
            }
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    let write_keys: Vec<&str> = encryption
        .prefixes()
        .map(|p| encryption.write_key(p).unwrap_or("identity"))
        .collect();
    tracing::info!(
        rewritten,
        corrupt,
        written_with = ?write_keys,
        "encryption at rest: re-wrote the values not in the configured form"
    );
    Ok(())
}

/// Without an encryption configuration: warns if Secrets on disk are encrypted (reads of them
/// will fail until the server is started with the configuration that has their key).
fn warn_if_encrypted(db: &sled::Db) {
    for kv in db.scan_prefix("/registry/secrets/") {
        let Ok((k, v)) = kv else {
            return;
        };
        if let Form::AesGcm(name) | Form::Other(name) = form_of(v.get(8..).unwrap_or_default()) {
            tracing::error!(
                key = %String::from_utf8_lossy(&k),
                key_name = name,
                "Secrets in the store are encrypted at rest, but no encryption configuration was \
                 given: reads of them fail; start the server with the configuration that has \
                 their key"
            );
            return;
        }
    }
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
    nudges: mpsc::WeakSender<Message>,
    durable: watch::Sender<Durable>,
    mut revision: Revision,
    max_group: usize,
) {
    // The watchdog stops when `stop` is dropped, at the end of this function.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("minik-store-watchdog".into())
            .spawn(move || run_watchdog(shared, nudges, stopped))
    };
    if let Err(e) = &watchdog {
        tracing::error!(error = %e, "cannot start the store's watchdog; it will not recover from a full disk by itself");
    }
    let mut writer = Writer {
        shared: &shared,
        durable: &durable,
        flusher: Flusher::default(),
    };
    let mut group = Vec::with_capacity(max_group);
    let mut open = true;
    while open {
        match messages.blocking_recv() {
            Some(Message::Write(first)) => group.push(first),
            Some(Message::Recover) => {
                revision = writer.recover(revision);
                continue;
            }
            Some(Message::ReadFailed { epoch, error }) => {
                // A report from before the last reopen is about an instance that is gone; one
                // about an instance that cannot be closed changes nothing.
                let can_reopen = shared
                    .backend()
                    .failure
                    .as_ref()
                    .is_none_or(|f| f.recoverable);
                if durable.borrow().epoch == epoch && can_reopen {
                    let answer = failure_error(&error);
                    revision = writer.fail(&error, answer, revision, None);
                }
                continue;
            }
            Some(Message::Close) | None => break,
        }
        // Give the CPU to the tasks that are about to write before taking the group: a group
        // shares its flush and the wake-ups between the writer, the flush thread and sled's
        // pool, which a write alone pays for by itself. With nothing else to run this returns
        // at once; under load it made groups about a third larger and a create's CPU a sixth
        // smaller (docs/benchmarks.md, "The writer yields before it takes a group").
        std::thread::yield_now();
        while group.len() < max_group {
            match messages.try_recv() {
                Ok(Message::Write(request)) => group.push(request),
                // Answered after this group; the watchdog asks again, and a failed read that
                // still matters fails again.
                Ok(Message::Recover | Message::ReadFailed { .. }) => {}
                Ok(Message::Close) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        revision = writer.write_group(&mut group, revision);
    }
    // Dropping the receiver makes later writes fail with Closed instead of waiting forever.
    drop(messages);
    drop(stop);
    if let Ok(watchdog) = watchdog {
        let _ = watchdog.join();
    }
    let backend = shared.backend();
    if let (Some(db), None) = (&backend.db, &backend.failure) {
        if let Err(e) = db.flush() {
            tracing::error!(error = %e, "the store's final flush failed");
        }
    }
    drop(backend);
    // Regression: a nudge still flushing kept the instance (and sled's lock on the directory)
    // after `close`, and opening the store again at once failed.
    writer.flusher.finish(CLOSE_TIMEOUT);
}

/// Asks the writer to try to recover while the store has failed on a full disk; stops when
/// `stop`'s sender is dropped.
fn run_watchdog(
    shared: Arc<Shared>,
    writes: mpsc::WeakSender<Message>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WATCHDOG_PERIOD) {
        let recoverable = shared
            .backend()
            .failure
            .as_ref()
            .is_some_and(|f| f.recoverable);
        if recoverable {
            if let Some(writes) = writes.upgrade() {
                let _ = writes.try_send(Message::Recover);
            }
        }
    }
}

/// The outcome of one request within a group, before the group is durable.
struct Pending {
    reply: oneshot::Sender<Result<Stored>>,
    outcome: Result<Stored>,
}

/// Answers every request of a group that was refused as a whole with `error`, but those that
/// failed on their own (conflicts and the like), which keep their own answer.
fn refuse(pending: Vec<Pending>, error: &StoreError) {
    for p in pending {
        let outcome = match p.outcome {
            Ok(_) => Err(error.clone()),
            Err(own) => Err(own),
        };
        let _ = p.reply.send(outcome);
    }
}

/// What writes are answered after sled failed with `e`.
fn failure_error(e: &sled::Error) -> StoreError {
    if is_no_space(e) {
        StoreError::NoSpace(
            "the disk holding the store filled up; writes are refused until space is freed \
             (reads keep working)"
                .into(),
        )
    } else {
        StoreError::Backend(format!(
            "the store failed to write to disk ({e}); restart the server"
        ))
    }
}

/// The writer thread's state besides the queue.
struct Writer<'a> {
    shared: &'a Shared,
    durable: &'a watch::Sender<Durable>,
    flusher: Flusher,
}

impl Writer<'_> {
    /// Applies one group and returns the revision after it.
    fn write_group(&mut self, group: &mut Vec<WriteRequest>, start: Revision) -> Revision {
        let shared = self.shared;
        let backend = shared.backend();
        let db = match (&backend.db, &backend.failure) {
            (Some(db), None) => db,
            (_, failure) => {
                let error = match failure {
                    Some(f) => f.error.clone(),
                    None => StoreError::Backend("the store is not open".into()),
                };
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return start;
            }
        };
        // The state of each key as this group has left it so far, so writes to one key within
        // a group see each other.
        let mut overlay: HashMap<String, Option<Stored>> = HashMap::new();
        // Each key as it was before the group, in case the group fails.
        let mut before: HashMap<String, Option<Stored>> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut pending = Vec::with_capacity(group.len());
        let mut events = Vec::new();
        let mut revision = start;
        let mut bytes = 0u64;
        let mut read_failure = None;
        let encryption = shared.encryption.as_deref();

        for request in group.drain(..) {
            let current = match overlay.get(&request.key) {
                Some(state) => Ok(state.clone()),
                // sled fails a read only when it is in trouble (it finishes page splits on the
                // way, and could not write one): the whole group fails with it.
                None => match db.get(&request.key) {
                    Ok(v) => {
                        let current = v
                            .map(|v| decode_stored(encryption, &request.key, v))
                            .transpose();
                        if let Ok(current) = &current {
                            before.insert(request.key.clone(), current.clone());
                        }
                        current
                    }
                    Err(e) => {
                        let error = StoreError::from(e.clone());
                        read_failure.get_or_insert(e);
                        Err(error)
                    }
                },
            };
            let outcome = current
                .and_then(|current| apply_one(&request.key, request.kind, current, revision + 1));
            // The bytes for disk (encrypted if the key is covered), made before the write takes
            // its revision: a write that cannot be encrypted fails alone.
            let outcome = outcome.and_then(|(stored, event_kind, prev)| match event_kind {
                EventType::Deleted => Ok((stored, event_kind, prev, None)),
                _ => encode_value(encryption, &request.key, revision + 1, &stored.value)
                    .map(|encoded| (stored, event_kind, prev, Some(encoded))),
            });
            let outcome = match outcome {
                Ok((mut stored, event_kind, prev, encoded)) => {
                    revision += 1;
                    match encoded {
                        None => {
                            bytes += (request.key.len() + stored.value.len() + 8) as u64;
                            batch.remove(request.key.as_bytes());
                            overlay.insert(request.key.clone(), None);
                        }
                        Some(encoded) => {
                            bytes += (request.key.len() + encoded.len()) as u64;
                            let encoded = sled::IVec::from(encoded);
                            if encoded.get(8..) == Some(&stored.value[..]) {
                                // Plaintext: the answer, the watch window and sled's cache
                                // share sled's copy (sled keeps the value it is given).
                                stored.value = Bytes::from_owner(encoded.clone()).slice(8..);
                            }
                            batch.insert(request.key.as_bytes(), encoded);
                            overlay.insert(request.key.clone(), Some(stored.clone()));
                        }
                    }
                    let prev_revision = prev.as_ref().map_or(0, |p| p.revision);
                    events.push(Arc::new(WatchEvent {
                        kind: event_kind,
                        key: request.key,
                        revision,
                        object: stored.value.clone(),
                        prev: prev.map(|p| p.value),
                        prev_revision,
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

        if let Some(e) = read_failure {
            drop(backend);
            // Nothing of the group reached sled.
            let error = failure_error(&e);
            for p in pending {
                let _ = p.reply.send(Err(error.clone()));
            }
            return self.fail(&e, error, start, None);
        }

        if events.is_empty() {
            for p in pending {
                let _ = p.reply.send(p.outcome);
            }
            return start;
        }

        if let Err(e) = shared.check_space(bytes) {
            refuse(pending, &e);
            return start;
        }

        batch.insert(REVISION_KEY, &revision.to_be_bytes());
        let applied = {
            let _exclusive = shared.snapshot.write().unwrap_or_else(|p| p.into_inner());
            let applied = db.apply_batch(batch);
            if applied.is_ok() {
                shared.applied.store(revision, Ordering::Release);
            }
            applied
        };
        let failed = match applied {
            Err(e) => Some((failure_error(&e), e)),
            Ok(()) => match self.flusher.flush(&shared.path, db, FLUSH_TIMEOUT) {
                Flushed::Done(Ok(_)) => None,
                Flushed::Done(Err(e)) => Some((failure_error(&e), e)),
                Flushed::Stuck => {
                    let e = stuck_flush(&shared.path);
                    Some((failure_error(&e), e))
                }
            },
        };
        drop(backend);

        if let Some((error, e)) = failed {
            // Answer first: the writers need not wait for sled to open again.
            refuse(pending, &error);
            let group = FailedGroup {
                start,
                end: revision,
                events,
                before,
            };
            return self.fail(&e, error, start, Some(group));
        }

        self.durable.send_modify(|d| d.revision = revision);
        shared.hub.publish(events);
        for p in pending {
            let _ = p.reply.send(p.outcome);
        }
        revision
    }

    /// Records that sled failed with `e` (answered as `error`) after the durable revision
    /// `start`, while writing `group` if it got that far; then closes the failed instance and
    /// opens sled again from the disk, if it can. Returns the revision the writer goes on from.
    fn fail(
        &mut self,
        e: &sled::Error,
        error: StoreError,
        start: Revision,
        group: Option<FailedGroup>,
    ) -> Revision {
        let shared = self.shared;
        let mut backend = shared.backend_mut();
        // A failure that needs a restart stays one, and a group not settled yet stays so.
        let mut earlier = backend.failure.take();
        let group = group.or_else(|| earlier.as_mut().and_then(|f| f.unsettled.take()));
        let (recoverable, error) = match earlier {
            Some(earlier) if !earlier.recoverable => (false, earlier.error),
            _ => (is_no_space(e), error),
        };
        if recoverable {
            tracing::error!(error = %e, "the disk holding the store filled up; refusing writes until space is freed");
            // Room for sled to open and for reads to finish page splits; it is made again
            // before writes resume.
            remove_ballast(&shared.path);
        } else {
            tracing::error!(error = %e, "the store failed on disk; refusing writes until a restart");
        }
        backend.failure = Some(Failure {
            error,
            recoverable,
            unsettled: group,
            stuck: false,
        });
        // Readers waiting for the failed group must not wait for it any more; from here they
        // answer its keys as they were before it.
        shared.applied.store(start, Ordering::Release);
        self.durable.send_modify(|d| d.epoch += 1);
        if !self.close_failed(&mut backend) {
            // sled keeps this instance busy forever (a flush that never ends): it stays, for
            // reads, until a restart.
            if let Some(failure) = backend.failure.as_mut() {
                failure.recoverable = false;
                failure.stuck = true;
                failure.error = StoreError::NoSpace(
                    "the disk holding the store filled up and the store cannot write any more; \
                     free space, then restart the server (reads keep working meanwhile)"
                        .into(),
                );
            }
            tracing::error!("the failed store cannot be closed; free space on its disk, then restart the server");
            return start;
        }
        reopen(shared, &mut backend, self.durable, start)
    }

    /// Flushes the failed instance until nothing is left to write or it reports its error,
    /// then drops it; `false` if it would not finish (it stays in `backend` then). Dropping an
    /// instance flushes it: that flush must find nothing to wait for.
    fn close_failed(&mut self, backend: &mut Backend) -> bool {
        let Some(db) = &backend.db else {
            return true;
        };
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        for _ in 0..SETTLE_FLUSHES {
            let patience = deadline.saturating_duration_since(Instant::now());
            match self.flusher.flush(&self.shared.path, db, patience) {
                Flushed::Done(Ok(0) | Err(_)) => break,
                Flushed::Done(Ok(_)) => {}
                Flushed::Stuck => return false,
            }
        }
        let Some(failed) = backend.db.take() else {
            return true;
        };
        let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
        let closer = std::thread::Builder::new()
            .name("minik-store-close".into())
            .spawn(move || {
                drop(failed);
                let _ = closed_tx.send(());
            });
        match closer {
            Ok(_) => {
                if closed.recv_timeout(CLOSE_TIMEOUT).is_err() {
                    tracing::warn!("the failed sled instance did not close in time");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread to close the failed sled instance")
            }
        }
        true
    }

    /// After a failure on a full disk: once there is room, opens sled if it could not be opened
    /// yet, makes the ballast again, and takes writes again. Returns the revision the writer
    /// goes on from.
    fn recover(&mut self, current: Revision) -> Revision {
        let shared = self.shared;
        // Only this thread changes the backend, so what it sees here holds until it acts.
        let (recoverable, open) = {
            let backend = shared.backend();
            let recoverable = backend.failure.as_ref().is_some_and(|f| f.recoverable);
            (recoverable, backend.db.is_some())
        };
        let free = || available_bytes(&shared.path).unwrap_or(0);
        if !recoverable || (!open && free() < REOPEN_MIN_FREE) {
            return current;
        }
        let mut revision = current;
        if !open {
            let mut backend = shared.backend_mut();
            revision = reopen(shared, &mut backend, self.durable, current);
            if backend.db.is_none() {
                return revision;
            }
        }
        // The ballast back, and the reserve free besides it: otherwise writes would only be
        // refused again at once.
        if free() < BALLAST_BYTES.saturating_add(shared.min_free_bytes) {
            return revision;
        }
        if let Err(e) = make_ballast(&shared.path) {
            tracing::debug!(error = %e, "cannot make the store's ballast yet");
            return revision;
        }
        shared.backend_mut().failure = None;
        shared.low_on_space.store(false, Ordering::Relaxed);
        tracing::info!(revision, "disk space is back; the store takes writes again");
        revision
    }
}

/// Opens sled again after a failure (the failed instance is gone) and settles the failed
/// group: on disk it is exactly as durable as the rest, so its events are published; not on
/// disk, it never happened. Returns the revision the writer goes on from (`current` if sled
/// cannot be opened yet).
fn reopen(
    shared: &Shared,
    backend: &mut Backend,
    durable: &watch::Sender<Durable>,
    current: Revision,
) -> Revision {
    let opened = open_after_failure(shared).and_then(|db| Ok((read_revision_sled(&db)?, db)));
    let (on_disk, db) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the store again yet; reads fail until it can");
            return current;
        }
    };
    backend.db = Some(db);
    let Some(failure) = backend.failure.as_mut() else {
        return on_disk;
    };
    let mut publish = Vec::new();
    if let Some(group) = failure.unsettled.take() {
        if on_disk == group.end {
            publish = group.events;
        } else if on_disk != group.start {
            // A batch is atomic, so this cannot happen; if it does, the watchers' history no
            // longer matches the disk, and only a restart makes them list again.
            tracing::error!(
                on_disk,
                start = group.start,
                end = group.end,
                "the reopened store is at an unexpected revision"
            );
            failure.recoverable = false;
            failure.error = StoreError::Backend(format!(
                "the store reopened at revision {on_disk}, expected {} or {}; restart the server",
                group.start, group.end
            ));
        }
    }
    shared.applied.store(on_disk, Ordering::Release);
    durable.send_modify(|d| {
        d.revision = on_disk;
        d.epoch += 1;
    });
    shared.hub.publish(publish);
    tracing::info!(
        revision = on_disk,
        "the store opened again from the disk; reads answer what is durable"
    );
    on_disk
}

/// The revision counter as sled has it, or sled's error.
fn read_revision_sled(db: &sled::Db) -> sled::Result<Revision> {
    let stored = db.get(REVISION_KEY)?;
    Ok(stored.as_deref().and_then(decode_revision).unwrap_or(0))
}

/// Opens sled at the store's path, waiting for the dropped instance's file lock.
fn open_after_failure(shared: &Shared) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + REOPEN_LOCK_WAIT;
    loop {
        match open_db(&shared.path, shared.cache_bytes) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// Decides one write against the key's current state; on success returns what the key holds
/// afterwards (for a deletion, its last state), the event, and the previous state.
fn apply_one(
    key: &str,
    kind: WriteKind,
    current: Option<Stored>,
    revision: Revision,
) -> Result<(Stored, EventType, Option<Stored>)> {
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
            Ok((stored(value), EventType::Modified, Some(current)))
        }
        (WriteKind::Delete(expected), Some(current)) => {
            check(expected, &current)?;
            // The deletion event carries the last state at the deletion's revision, as
            // Kubernetes' does; a value that no longer parses is passed on as it was.
            let last = match serde_json::from_slice::<Value>(&current.value) {
                Ok(object) => stamp(key, object, revision)?,
                Err(_) => current.value.clone(),
            };
            Ok((stored(last), EventType::Deleted, Some(current)))
        }
    }
}
