//! An informer: a cache of one kind kept current by list + watch, shared by every controller
//! that needs the kind. It resumes a broken watch from the last revision it saw, lists again
//! when the server says that revision is gone (410), and tells its subscribers what changed.
//! Subscribers are level-triggered: a change is a hint to look again, and a subscriber that
//! falls behind is told to resync rather than slowing the informer down.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::resources::ResourceInfo;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

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
    changes: broadcast::Sender<Change<K>>,
    task: tokio::task::JoinHandle<()>,
    _kind: PhantomData<K>,
}

impl<K> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How an informer behaves.
#[derive(Clone, Debug)]
pub struct InformerConfig {
    /// Only this namespace; `None` for all (and for cluster-scoped kinds).
    pub namespace: Option<String>,
    pub params: ListParams,
    /// How often subscribers are told to look at everything again.
    pub resync: Duration,
    /// How many changes a subscriber may fall behind before it is told to resync instead.
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
        let (changes, _) = broadcast::channel(config.buffer.max(16));
        let run = Run {
            api,
            info: resource_of::<K>(),
            config,
            objects: objects.clone(),
            changes: changes.clone(),
            synced: synced_tx,
            _kind: PhantomData::<K>,
        };
        Informer {
            cache: InformerCache {
                objects,
                synced: synced_rx,
            },
            changes,
            task: tokio::spawn(run.run()),
            _kind: PhantomData,
        }
    }

    pub fn cache(&self) -> InformerCache<K> {
        self.cache.clone()
    }

    /// A stream of changes from now on. A subscriber that lags gets `Change::Resync` (see
    /// [`Subscription::next`]).
    pub fn subscribe(&self) -> Subscription<K> {
        Subscription {
            receiver: self.changes.subscribe(),
        }
    }
}

/// One subscriber's view of an informer's changes.
pub struct Subscription<K> {
    receiver: broadcast::Receiver<Change<K>>,
}

impl<K> Subscription<K> {
    /// The next change; `None` once the informer is gone.
    pub async fn next(&mut self) -> Option<Change<K>>
    where
        K: Send + Sync,
    {
        match self.receiver.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

struct Run<K> {
    api: Arc<dyn Api>,
    info: &'static ResourceInfo,
    config: InformerConfig,
    objects: Arc<RwLock<HashMap<String, Arc<K>>>>,
    changes: broadcast::Sender<Change<K>>,
    synced: watch::Sender<bool>,
    _kind: PhantomData<K>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn resource_version(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl<K> Run<K>
where
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    fn decode(&self, object: Value) -> Option<Arc<K>> {
        match serde_json::from_value::<K>(object) {
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
        let _ = self.changes.send(change);
    }

    /// Replaces the cache with a fresh list; returns the list's revision.
    async fn relist(&self) -> Result<String, minik_api::ApiError> {
        let ns = self.config.namespace.as_deref();
        let list = self.api.list(self.info, ns, &self.config.params).await?;
        let fresh: HashMap<String, Arc<K>> = list
            .items
            .into_iter()
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
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
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
                .watch(self.info, ns, &self.config.params, revision.as_deref())
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
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    _ = resync.tick() => {
                        self.notify(Change::Resync);
                        continue;
                    }
                };
                let Some(event) = event else { break };
                match event {
                    Ok(event) => {
                        backoff = MIN_BACKOFF;
                        if let Some(rv) = resource_version(&event.object) {
                            revision = Some(rv);
                        }
                        match event.kind {
                            WatchEventType::Bookmark => {}
                            WatchEventType::Added | WatchEventType::Modified => {
                                if let Some(k) = self.decode(event.object) {
                                    self.write().insert(cache_key(k.metadata()), k.clone());
                                    self.notify(Change::Applied(k));
                                }
                            }
                            WatchEventType::Deleted => {
                                if let Some(k) = self.decode(event.object) {
                                    self.write().remove(&cache_key(k.metadata()));
                                    self.notify(Change::Deleted(k));
                                }
                            }
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
