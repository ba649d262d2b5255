//! An informer: a cache of one kind kept current by list + watch, shared by every controller
//! that needs the kind. It resumes a broken watch from the last revision it saw, lists again
//! when the server says that revision is gone (410), and tells its subscribers what changed.
//! Subscribers are level-triggered: a change is a hint to look again, and a subscriber that
//! falls behind is told to resync rather than slowing the informer down.
//!
//! [`SharedInformers`] is the one informer per kind of a process (client-go's
//! SharedInformerFactory): the scheduler and the controllers inside the server share its caches,
//! so every object is decoded and kept once. Objects are decoded from the JSON text they come as
//! (the store's own bytes, in the server), straight into their type.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use futures::StreamExt;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::resources::ResourceInfo;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};

use crate::api::{resource_of, Api, ListParams, WatchEventType};

/// What an informer tells its subscribers.
#[derive(Debug)]
pub enum Change<K> {
    /// The object was added or changed.
    Applied(Arc<K>),
    /// The object was deleted; this is its last known state.
    Deleted(Arc<K>),
    /// Look at everything again: the periodic resync, a relist, or a subscriber that fell
    /// behind.
    Resync,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(k) => Change::Applied(k.clone()),
            Change::Deleted(k) => Change::Deleted(k.clone()),
            Change::Resync => Change::Resync,
        }
    }
}

/// The cache key of an object: `namespace/name`, or `name` for cluster-scoped kinds.
pub fn cache_key(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// A read-only view of an informer's objects. Cheap to clone.
pub struct InformerCache<K> {
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    synced: watch::Receiver<bool>,
}

impl<K> Clone for InformerCache<K> {
    fn clone(&self) -> Self {
        InformerCache {
            objects: self.objects.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K> InformerCache<K> {
    /// The object at `namespace/name` (or `name`).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object in the cache.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// The objects that `keep` selects.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.read().values().filter(|k| keep(k)).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<K>>> {
        // Writers replace entries whole, so a poisoned lock still holds consistent data.
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running informer of kind `K`. Dropping it stops it.
pub struct Informer<K> {
    cache: InformerCache<K>,
    fanout: Arc<Fanout<K>>,
    resync: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
        self.fanout.close();
    }
}

/// How an informer behaves.
#[derive(Clone, Debug)]
pub struct InformerConfig {
    /// Only this namespace; `None` for all (and for cluster-scoped kinds).
    pub namespace: Option<String>,
    pub params: ListParams,
    /// How often [`Informer::subscribe`]'s subscribers are told to look at everything again.
    pub resync: Duration,
    /// How many changes a subscriber may fall behind before it is told to resync instead.
    /// Only the changes waiting are held, so a large limit costs nothing while subscribers
    /// keep up.
    pub buffer: usize,
}

impl Default for InformerConfig {
    fn default() -> Self {
        InformerConfig {
            namespace: None,
            params: ListParams::default(),
            resync: Duration::from_secs(30),
            buffer: 4096,
        }
    }
}

impl<K> Informer<K>
where
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts listing and watching `K` through `api`.
    pub fn spawn(api: Arc<dyn Api>, config: InformerConfig) -> Informer<K> {
        let objects = Arc::new(RwLock::new(HashMap::new()));
        let (synced_tx, synced_rx) = watch::channel(false);
        let fanout = Arc::new(Fanout {
            subscribers: Mutex::new(Vec::new()),
            limit: config.buffer.max(16),
        });
        let resync = config.resync;
        let run = Run {
            api,
            info: resource_of::<K>(),
            config,
            objects: objects.clone(),
            fanout: fanout.clone(),
            synced: synced_tx,
            _kind: PhantomData::<K>,
        };
        Informer {
            cache: InformerCache {
                objects,
                synced: synced_rx,
            },
            fanout,
            resync,
            task: tokio::spawn(run.run()),
        }
    }

    pub fn cache(&self) -> InformerCache<K> {
        self.cache.clone()
    }

    /// A stream of changes from now on, with a resync at the informer's period. A subscriber
    /// that lags gets `Change::Resync` (see [`Subscription::next`]).
    pub fn subscribe(&self) -> Subscription<K> {
        self.subscribe_every(self.resync)
    }

    /// [`Informer::subscribe`] with this subscriber's own resync period.
    pub fn subscribe_every(&self, resync: Duration) -> Subscription<K> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                changes: VecDeque::new(),
                resync: false,
                closed: false,
            }),
            notify: Notify::new(),
        });
        self.fanout.add(&queue);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Subscription { queue, tick }
    }
}

/// The informer's subscribers, each a queue of the changes it has not taken yet. A queue that
/// reaches the limit is emptied and marked for a resync: the subscriber looks at everything
/// again instead of the informer waiting for it, and nothing it would skip stays in memory.
struct Fanout<K> {
    subscribers: Mutex<Vec<Weak<Queue<K>>>>,
    limit: usize,
}

struct Queue<K> {
    state: Mutex<QueueState<K>>,
    notify: Notify,
}

struct QueueState<K> {
    changes: VecDeque<Change<K>>,
    resync: bool,
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K> Fanout<K> {
    fn add(&self, queue: &Arc<Queue<K>>) {
        lock(&self.subscribers).push(Arc::downgrade(queue));
    }

    fn send(&self, change: Change<K>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|weak| {
            let Some(queue) = weak.upgrade() else {
                return false;
            };
            {
                let mut state = lock(&queue.state);
                if state.changes.len() >= self.limit {
                    state.changes.clear();
                    state.resync = true;
                } else if !state.resync {
                    state.changes.push_back(change.clone());
                }
            }
            queue.notify.notify_one();
            true
        });
    }

    fn close(&self) {
        for queue in lock(&self.subscribers).drain(..) {
            if let Some(queue) = queue.upgrade() {
                lock(&queue.state).closed = true;
                queue.notify.notify_one();
            }
        }
    }
}

/// One subscriber's view of an informer's changes.
pub struct Subscription<K> {
    queue: Arc<Queue<K>>,
    tick: tokio::time::Interval,
}

impl<K> Subscription<K> {
    /// The next change; `None` once the informer is gone. A subscriber that fell behind gets
    /// `Change::Resync` in place of what it missed, as it does at its resync period.
    pub async fn next(&mut self) -> Option<Change<K>>
    where
        K: Send + Sync,
    {
        loop {
            {
                let mut state = lock(&self.queue.state);
                if std::mem::take(&mut state.resync) {
                    return Some(Change::Resync);
                }
                if let Some(change) = state.changes.pop_front() {
                    return Some(change);
                }
                if state.closed {
                    return None;
                }
            }
            tokio::select! {
                _ = self.queue.notify.notified() => {}
                _ = self.tick.tick() => return Some(Change::Resync),
            }
        }
    }
}

/// One informer per kind, started on first use and shared by every caller: client-go's
/// SharedInformerFactory. Cheap to clone.
#[derive(Clone)]
pub struct SharedInformers {
    api: Arc<dyn Api>,
    config: InformerConfig,
    informers: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl SharedInformers {
    /// Informers of every namespace through `api`; `config.resync` is the period of
    /// [`Informer::subscribe`], `config.buffer` how far any subscriber may fall behind.
    pub fn new(api: Arc<dyn Api>, config: InformerConfig) -> SharedInformers {
        SharedInformers {
            api,
            config: InformerConfig {
                namespace: None,
                params: ListParams::default(),
                ..config
            },
            informers: Arc::default(),
        }
    }

    /// The API the informers list and watch through.
    pub fn api(&self) -> &Arc<dyn Api> {
        &self.api
    }

    /// The informer of `K`, started now if nobody asked for it before.
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: k8s_openapi::Resource
            + Metadata<Ty = ObjectMeta>
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let mut informers = lock(&self.informers);
        let entry = informers.entry(TypeId::of::<K>()).or_insert_with(|| {
            Arc::new(Informer::<K>::spawn(self.api.clone(), self.config.clone()))
        });
        match entry.clone().downcast::<Informer<K>>() {
            Ok(informer) => informer,
            Err(_) => unreachable!("the informers are keyed by their type"),
        }
    }
}

struct Run<K> {
    api: Arc<dyn Api>,
    info: &'static ResourceInfo,
    config: InformerConfig,
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    fanout: Arc<Fanout<K>>,
    synced: watch::Sender<bool>,
    _kind: PhantomData<K>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The resourceVersion of a BOOKMARK's object, which holds little more.
fn bookmark_revision(object: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Bookmark {
        metadata: Option<Meta>,
    }
    serde_json::from_slice::<Bookmark>(object)
        .ok()?
        .metadata?
        .resource_version
}

impl<K> Run<K>
where
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    fn decode(&self, object: &Bytes) -> Option<Arc<K>> {
        match serde_json::from_slice::<K>(object) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                tracing::warn!(kind = self.info.kind, error = %e, "skipping an object that does not decode");
                None
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<K>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, change: Change<K>) {
        // No subscriber is not an error: the cache is still kept.
        self.fanout.send(change);
    }

    /// Replaces the cache with a fresh list; returns the list's revision.
    async fn relist(&self) -> Result<String, minik_api::ApiError> {
        let ns = self.config.namespace.as_deref();
        let list = self
            .api
            .list_raw(self.info, ns, &self.config.params)
            .await?;
        let fresh: HashMap<String, Arc<K>> = list
            .items
            .iter()
            .filter_map(|item| self.decode(item))
            .map(|k| (cache_key(k.metadata()), k))
            .collect();
        let gone: Vec<Arc<K>> = {
            let mut objects = self.write();
            let gone = objects
                .iter()
                .filter(|(key, _)| !fresh.contains_key(*key))
                .map(|(_, k)| k.clone())
                .collect();
            *objects = fresh.clone();
            gone
        };
        for k in gone {
            self.notify(Change::Deleted(k));
        }
        for k in fresh.into_values() {
            self.notify(Change::Applied(k));
        }
        self.notify(Change::Resync);
        self.synced.send_replace(true);
        Ok(list.resource_version)
    }

    async fn run(self) {
        let mut revision: Option<String> = None;
        let mut backoff = MIN_BACKOFF;
        loop {
            if revision.is_none() {
                match self.relist().await {
                    Ok(rv) => {
                        revision = Some(rv);
                        backoff = MIN_BACKOFF;
                    }
                    Err(e) => {
                        tracing::warn!(kind = self.info.kind, error = %e, "list failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let ns = self.config.namespace.as_deref();
            let stream = self
                .api
                .watch_raw(self.info, ns, &self.config.params, revision.as_deref())
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    if e.is_gone() {
                        revision = None;
                    } else {
                        tracing::warn!(kind = self.info.kind, error = %e, "watch failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    continue;
                }
            };
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        backoff = MIN_BACKOFF;
                        if event.kind == WatchEventType::Bookmark {
                            if let Some(rv) = bookmark_revision(&event.object) {
                                revision = Some(rv);
                            }
                            continue;
                        }
                        let Some(k) = self.decode(&event.object) else {
                            continue;
                        };
                        if let Some(rv) = k.metadata().resource_version.clone() {
                            revision = Some(rv);
                        }
                        let key = cache_key(k.metadata());
                        if event.kind == WatchEventType::Deleted {
                            self.write().remove(&key);
                            self.notify(Change::Deleted(k));
                        } else {
                            self.write().insert(key, k.clone());
                            self.notify(Change::Applied(k));
                        }
                    }
                    Err(e) if e.is_gone() => {
                        revision = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(kind = self.info.kind, error = %e, "watch broke; resuming");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
            }
        }
    }
}
