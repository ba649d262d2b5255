//! The ConfigMaps and Secrets the node's pods read, followed as the kubelet follows them: one
//! watch per object (`fieldSelector=metadata.name=NAME` in its namespace, which is all the node
//! authorizer lets a node read), kept while a pod on the node refers to the object
//! ([`minik_api::references`]) and dropped with the last such pod. A change of an object sends
//! every pod that refers to it to be looked at again: a container waiting for a missing key
//! starts, and ConfigMap and Secret volumes are updated in place.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use minik_api::references::{self, References};
use minik_client::{Api, Informer, InformerConfig, ListParams};
use tokio::task::JoinHandle;

use crate::spec::Sources;

/// How long a start waits for the first list of an object just being followed.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Which kind an object followed is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    ConfigMap,
    Secret,
}

/// `(kind, namespace, name)` of an object followed.
type ObjectKey = (Kind, String, String);

/// One object's watch, and the pods that refer to it.
struct Followed {
    watch: Watch,
    /// Turns changes into pod keys to look at; aborted with the watch.
    forward: JoinHandle<()>,
    pods: Arc<Mutex<BTreeSet<String>>>,
}

enum Watch {
    ConfigMap(Informer<ConfigMap>),
    Secret(Informer<Secret>),
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// What the pods of the node read, followed. Cheap to share behind an `Arc`.
pub(crate) struct Configs {
    api: Arc<dyn Api>,
    /// Sends a pod key to be looked at again.
    wake: Arc<dyn Fn(String) + Send + Sync>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    objects: HashMap<ObjectKey, Followed>,
    /// What each pod (by key) refers to, as last tracked.
    pods: HashMap<String, BTreeSet<ObjectKey>>,
}

impl Configs {
    pub(crate) fn new(api: Arc<dyn Api>, wake: Arc<dyn Fn(String) + Send + Sync>) -> Configs {
        Configs {
            api,
            wake,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows what `pod` (known as `key`) refers to now, and stops following what only its
    /// earlier version referred to. A pod that is gone is [`Configs::forget`]-ten instead.
    pub(crate) fn track(&self, key: &str, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let refs = pod
            .spec
            .as_ref()
            .map(references::of_pod_spec)
            .unwrap_or_default();
        let wanted = object_keys(&ns, &refs);
        let mut state = self.state();
        let before = state.pods.insert(key.to_owned(), wanted.clone());
        for gone in before.iter().flatten().filter(|k| !wanted.contains(*k)) {
            release(&mut state, gone, key);
        }
        for object in wanted {
            let followed = state
                .objects
                .entry(object.clone())
                .or_insert_with(|| self.follow(&object));
            followed
                .pods
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.to_owned());
        }
    }

    /// Stops following what pod `key` referred to (when nothing else refers to it).
    pub(crate) fn forget(&self, key: &str) {
        let mut state = self.state();
        if let Some(objects) = state.pods.remove(key) {
            for object in &objects {
                release(&mut state, object, key);
            }
        }
    }

    /// The objects `pod` refers to, as last seen, waiting a little for the first list of ones
    /// just followed. An object whose first list has not come is left out (it reads as not
    /// found: the container waits, and is looked at again when the list comes).
    pub(crate) async fn sources(&self, key: &str, pod: &Pod) -> Sources {
        self.track(key, pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let refs = pod
            .spec
            .as_ref()
            .map(references::of_pod_spec)
            .unwrap_or_default();
        let mut sources = Sources::default();
        for (kind, _, name) in object_keys(&ns, &refs) {
            let cache_key = format!("{ns}/{name}");
            match kind {
                Kind::ConfigMap => {
                    let cache = match self.state().objects.get(&(kind, ns.clone(), name.clone())) {
                        Some(Followed {
                            watch: Watch::ConfigMap(i),
                            ..
                        }) => i.cache(),
                        _ => continue,
                    };
                    if tokio::time::timeout(FIRST_LIST_WAIT, cache.wait_synced())
                        .await
                        .is_ok()
                    {
                        let found = cache.get(&cache_key).map(|cm| (*cm).clone());
                        sources.config_maps.insert(name, found);
                    }
                }
                Kind::Secret => {
                    let cache = match self.state().objects.get(&(kind, ns.clone(), name.clone())) {
                        Some(Followed {
                            watch: Watch::Secret(i),
                            ..
                        }) => i.cache(),
                        _ => continue,
                    };
                    if tokio::time::timeout(FIRST_LIST_WAIT, cache.wait_synced())
                        .await
                        .is_ok()
                    {
                        let found = cache.get(&cache_key).map(|s| (*s).clone());
                        sources.secrets.insert(name, found);
                    }
                }
            }
        }
        sources
    }

    /// Starts following one object.
    fn follow(&self, (kind, ns, name): &ObjectKey) -> Followed {
        let config = InformerConfig {
            namespace: Some(ns.clone()),
            params: ListParams::fields(format!("metadata.name={name}")),
            ..InformerConfig::default()
        };
        let pods: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let wake = self.wake.clone();
        let to_wake = pods.clone();
        let wake_all = move || {
            let keys: Vec<String> = to_wake
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            keys.into_iter().for_each(|k| wake(k));
        };
        let (watch, forward) = match kind {
            Kind::ConfigMap => {
                let informer = Informer::<ConfigMap>::spawn(self.api.clone(), config);
                let mut changes = informer.subscribe();
                let forward = tokio::spawn(async move {
                    while changes.next().await.is_some() {
                        wake_all();
                    }
                });
                (Watch::ConfigMap(informer), forward)
            }
            Kind::Secret => {
                let informer = Informer::<Secret>::spawn(self.api.clone(), config);
                let mut changes = informer.subscribe();
                let forward = tokio::spawn(async move {
                    while changes.next().await.is_some() {
                        wake_all();
                    }
                });
                (Watch::Secret(informer), forward)
            }
        };
        Followed {
            watch,
            forward,
            pods,
        }
    }
}

/// Drops pod `key` from the pods that refer to `object`, and the object's watch with the last.
fn release(state: &mut State, object: &ObjectKey, key: &str) {
    let unused = state.objects.get(object).is_some_and(|f| {
        let mut pods = f.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.remove(key);
        pods.is_empty()
    });
    if unused {
        state.objects.remove(object);
    }
}

/// The objects a pod in namespace `ns` with references `refs` reads.
fn object_keys(ns: &str, refs: &References) -> BTreeSet<ObjectKey> {
    let config_maps = refs
        .config_maps
        .iter()
        .map(|n| (Kind::ConfigMap, ns.to_owned(), n.clone()));
    let secrets = refs
        .secrets
        .iter()
        .map(|n| (Kind::Secret, ns.to_owned(), n.clone()));
    config_maps.chain(secrets).collect()
}
