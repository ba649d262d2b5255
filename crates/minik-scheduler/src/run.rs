//! The plumbing around the decision: informers on pods, nodes, PersistentVolumeClaims,
//! PersistentVolumes and StorageClasses feed the bookkeeping, pending pods are tried one at a
//! time, bindings (each after the annotations of its claims) go out concurrently, and the
//! status conditions and events are written by a separate task so that a slow write never
//! holds up a decision.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::BoxStream;
use futures::FutureExt;
use futures::StreamExt;
use minik_api::k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{
    resource_of, Api, Change, InformerCache, InformerConfig, RateLimit, SharedInformers,
    Subscription,
};
use minik_client::{EventNote, EventRecorder};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::queue::Backoff;
use crate::score::Weights;
use crate::state::{Action, Clock, State, DEFAULT_SCHEDULER_NAME};
use crate::volumes::{ClaimToSelect, SELECTED_NODE_ANNOTATION};

/// Settings of the scheduler.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `schedulerName` this scheduler serves (pods with an empty one count as the default).
    pub scheduler_name: String,
    pub backoff: Backoff,
    pub weights: Weights,
    /// How many bindings may be in flight at once; the scheduler decides ahead of the binding
    /// writes (it counts what it has decided on) as long as fewer are outstanding.
    pub max_binds_in_flight: usize,
    /// How often everything is looked at again, as a safety net for missed changes.
    pub resync: Duration,
    /// How many watch changes the scheduler may fall behind before it relists from the cache.
    pub informer_buffer: usize,
    /// Status and event writes outstanding before new ones are dropped (with a warning).
    pub write_queue: usize,
    /// Status and event writes made at once.
    pub write_concurrency: usize,
    /// Status and event writes per second on average (0: no limit), as kube-scheduler's API
    /// client limits its own (50/s there by default): thousands of pods that fit nowhere, or
    /// retried at once after a node change, must not crowd out the writes of everyone else.
    /// Bindings are not limited.
    pub write_rate: u32,
    /// How many status and event writes may go at once before the rate applies.
    pub write_burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_owned(),
            backoff: Backoff::default(),
            weights: Weights::default(),
            max_binds_in_flight: 256,
            resync: Duration::from_secs(30),
            informer_buffer: 1 << 16,
            write_queue: 1 << 15,
            write_concurrency: 32,
            write_rate: 200,
            write_burst: 200,
        }
    }
}

/// How many watch changes are taken in before the next decision, so that neither starves.
const CHANGES_PER_ROUND: usize = 1024;
/// How many decisions are made before changes are looked at again.
const DECISIONS_PER_ROUND: usize = 128;
/// How many times a status or event write is tried when the server fails.
const WRITE_ATTEMPTS: u32 = 3;
/// Deferred events go out once no more than this many bindings are in flight: during a burst
/// the bindings, which start pods, have the API server to themselves.
const DEFERRED_EVENTS_BELOW: usize = 8;

/// Where a binding failed.
enum BindFailure {
    /// Writing the selected node into a claim.
    PreBind(ApiError),
    /// The binding itself.
    Bind(ApiError),
}

/// The result of one binding.
struct BindDone {
    key: String,
    uid: String,
    node: String,
    claims: Vec<ClaimToSelect>,
    result: Result<(), BindFailure>,
}

/// A change of one of the kinds a pod's volumes depend on.
enum VolumeChange {
    Claim(Change<PersistentVolumeClaim>),
    Volume(Change<PersistentVolume>),
    Class(Change<StorageClass>),
}

/// An informer's changes as a stream.
fn changes_of<K: Send + Sync + 'static>(
    subscription: Subscription<K>,
    wrap: fn(Change<K>) -> VolumeChange,
) -> BoxStream<'static, VolumeChange> {
    futures::stream::unfold(subscription, |mut s| async move {
        s.next().await.map(|change| (change, s))
    })
    .map(wrap)
    .boxed()
}

/// The caches of every informer the scheduler runs.
struct Caches {
    pods: InformerCache<PodView>,
    nodes: InformerCache<Node>,
    claims: InformerCache<PersistentVolumeClaim>,
    volumes: InformerCache<PersistentVolume>,
    classes: InformerCache<StorageClass>,
}

/// A status or event write.
enum Write {
    Status {
        namespace: String,
        name: String,
        /// The patch as JSON text: a burst of pods that fit nowhere queues one status write
        /// each (drained at `write_rate`), and the text is a seventh of the `Value`'s heap.
        patch: Box<str>,
    },
    Event(Box<EventNote>),
}

/// Aborts a task when dropped, so that aborting the scheduler stops everything it started.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn clock() -> Clock {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = i64::try_from(wall.as_secs()).unwrap_or(0);
    let timestamp = Timestamp::from_second(seconds)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Clock {
        now: tokio::time::Instant::now().into_std(),
        timestamp,
    }
}

/// Runs the scheduler until the task is aborted. It never returns an error: API failures are
/// retried (the informers relist and rewatch; failed bindings go back to the queue).
pub async fn run(api: Arc<dyn Api>, config: Config) {
    let informers = SharedInformers::new(
        api,
        InformerConfig {
            resync: config.resync,
            buffer: config.informer_buffer,
            ..InformerConfig::default()
        },
    );
    run_shared(&informers, config).await
}

/// Runs the scheduler on `shared`'s informers (and its API), which other components of the
/// process may share; the scheduler resyncs at `config.resync`, and how far it may fall behind
/// is `shared`'s buffer.
pub async fn run_shared(shared: &SharedInformers, config: Config) {
    let api = shared.api().clone();
    let pods = shared.get::<PodView>();
    let nodes = shared.get::<Node>();
    let claims = shared.get::<PersistentVolumeClaim>();
    let volumes = shared.get::<PersistentVolume>();
    let classes = shared.get::<StorageClass>();
    let mut pod_changes = pods.subscribe_every(config.resync);
    let mut node_changes = nodes.subscribe_every(config.resync);
    let mut volume_changes = futures::stream::select_all([
        changes_of(claims.subscribe_every(config.resync), VolumeChange::Claim),
        changes_of(volumes.subscribe_every(config.resync), VolumeChange::Volume),
        changes_of(classes.subscribe_every(config.resync), VolumeChange::Class),
    ]);
    let (writes, write_rx) = mpsc::channel(config.write_queue.max(1));
    let _writer = AbortOnDrop(tokio::spawn(write_all(
        api.clone(),
        EventRecorder::new(api.clone()),
        write_rx,
        config.write_concurrency.max(1),
        RateLimit::new(config.write_rate, config.write_burst),
    )));

    let caches = Caches {
        pods: pods.cache(),
        nodes: nodes.cache(),
        claims: claims.cache(),
        volumes: volumes.cache(),
        classes: classes.cache(),
    };
    caches.pods.wait_synced().await;
    caches.nodes.wait_synced().await;
    caches.claims.wait_synced().await;
    caches.volumes.wait_synced().await;
    caches.classes.wait_synced().await;
    let mut runner = Runner {
        api,
        state: State::new(&config.scheduler_name, config.backoff, config.weights),
        binds: JoinSet::new(),
        writes,
        deferred: VecDeque::new(),
        max_deferred: config.write_queue.max(1),
    };
    runner.resync(&caches);
    tracing::info!(
        nodes = runner.state.snapshot.len(),
        pending = runner.state.pending(),
        "scheduler started"
    );

    let max_in_flight = config.max_binds_in_flight.max(1);
    loop {
        let mut busy = false;
        for _ in 0..CHANGES_PER_ROUND {
            match pod_changes.next().now_or_never() {
                Some(Some(change)) => runner.on_pod_change(change, &caches),
                Some(None) => return,
                None => break,
            }
            busy = true;
        }
        for _ in 0..CHANGES_PER_ROUND {
            match node_changes.next().now_or_never() {
                Some(Some(change)) => runner.on_node_change(change, &caches),
                Some(None) => return,
                None => break,
            }
            busy = true;
        }
        for _ in 0..CHANGES_PER_ROUND {
            match volume_changes.next().now_or_never() {
                Some(Some(change)) => runner.on_volume_change(change, &caches),
                Some(None) => return,
                None => break,
            }
            busy = true;
        }
        while let Some(done) = runner.binds.try_join_next() {
            runner.on_bind_done(done);
            busy = true;
        }
        for _ in 0..DECISIONS_PER_ROUND {
            if runner.binds.len() >= max_in_flight {
                break;
            }
            let Some(actions) = runner.state.schedule_next(&clock()) else {
                break;
            };
            runner.execute(actions);
            busy = true;
        }
        runner.flush_deferred();
        if busy {
            // Let the bindings, the informers and everything else on the runtime move on.
            tokio::task::yield_now().await;
            continue;
        }

        let wake = runner
            .state
            .queue
            .next_wake()
            .map(tokio::time::Instant::from_std);
        let writes = runner.writes.clone();
        let flush = runner.may_flush() && !runner.deferred.is_empty();
        tokio::select! {
            change = pod_changes.next() => match change {
                Some(change) => runner.on_pod_change(change, &caches),
                None => return,
            },
            change = node_changes.next() => match change {
                Some(change) => runner.on_node_change(change, &caches),
                None => return,
            },
            change = volume_changes.next() => match change {
                Some(change) => runner.on_volume_change(change, &caches),
                None => return,
            },
            Some(done) = runner.binds.join_next(), if !runner.binds.is_empty() => {
                runner.on_bind_done(done);
            }
            _ = sleep_until(wake), if wake.is_some() => {}
            // The write queue was full: go on when it has room.
            Ok(permit) = writes.reserve(), if flush => {
                if let Some(write) = runner.deferred.pop_front() {
                    permit.send(write);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Runner {
    api: Arc<dyn Api>,
    state: State,
    binds: JoinSet<BindDone>,
    writes: mpsc::Sender<Write>,
    /// Events that wait for the bindings in flight to be few.
    deferred: VecDeque<Write>,
    max_deferred: usize,
}

impl Runner {
    fn resync(&mut self, caches: &Caches) {
        let now = clock().now;
        self.state.resync_volumes(
            &caches.claims.list(),
            &caches.volumes.list(),
            &caches.classes.list(),
        );
        self.state
            .resync(&caches.pods.list(), &caches.nodes.list(), now);
    }

    fn on_pod_change(&mut self, change: Change<PodView>, caches: &Caches) {
        match change {
            Change::Applied(pod) => self.state.on_pod(pod, clock().now),
            Change::Deleted(pod) => self.state.on_pod_deleted(&pod, clock().now),
            Change::Resync => self.resync(caches),
        }
    }

    fn on_node_change(&mut self, change: Change<Node>, caches: &Caches) {
        match change {
            Change::Applied(node) => self.state.on_node(&node, clock().now),
            Change::Deleted(node) => self.state.on_node_deleted(&node),
            Change::Resync => self.resync(caches),
        }
    }

    fn on_volume_change(&mut self, change: VolumeChange, caches: &Caches) {
        match change {
            VolumeChange::Claim(Change::Applied(claim)) => self.state.on_claim(&claim, clock().now),
            VolumeChange::Claim(Change::Deleted(claim)) => self.state.on_claim_deleted(&claim),
            VolumeChange::Volume(Change::Applied(pv)) => self.state.on_volume(&pv, clock().now),
            VolumeChange::Volume(Change::Deleted(pv)) => self.state.on_volume_deleted(&pv),
            VolumeChange::Class(Change::Applied(class)) => self.state.on_class(&class, clock().now),
            VolumeChange::Class(Change::Deleted(class)) => self.state.on_class_deleted(&class),
            VolumeChange::Claim(Change::Resync)
            | VolumeChange::Volume(Change::Resync)
            | VolumeChange::Class(Change::Resync) => self.resync(caches),
        }
    }

    fn on_bind_done(&mut self, done: Result<BindDone, tokio::task::JoinError>) {
        match done {
            Ok(done) => {
                let actions = match done.result {
                    Err(BindFailure::PreBind(e)) => self.state.on_prebind_failed(
                        &done.key,
                        &done.uid,
                        &done.node,
                        &done.claims,
                        &e,
                        &clock(),
                    ),
                    Err(BindFailure::Bind(e)) => self.state.on_bind_result(
                        &done.key,
                        &done.uid,
                        &done.node,
                        Err(e),
                        &clock(),
                    ),
                    Ok(()) => self.state.on_bind_result(
                        &done.key,
                        &done.uid,
                        &done.node,
                        Ok(()),
                        &clock(),
                    ),
                };
                self.execute(actions);
            }
            // Binding tasks catch their panics and are only cancelled when the scheduler
            // stops, so this is not expected; the pod's assumption is cleared by the next
            // resync at the latest.
            Err(e) => tracing::error!(error = %e, "a binding task failed"),
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Bind {
                    key,
                    namespace,
                    name,
                    uid,
                    node,
                    claims,
                } => {
                    let api = self.api.clone();
                    self.binds.spawn(async move {
                        let bind = AssertUnwindSafe(bind_with_claims(
                            api.as_ref(),
                            &namespace,
                            &name,
                            &node,
                            &claims,
                        ));
                        let result = match bind.catch_unwind().await {
                            Ok(result) => result,
                            Err(_) => Err(BindFailure::Bind(ApiError::Internal(
                                "the binding panicked".into(),
                            ))),
                        };
                        BindDone {
                            key,
                            uid,
                            node,
                            claims,
                            result,
                        }
                    });
                }
                Action::PatchStatus {
                    key,
                    namespace,
                    name,
                    patch,
                } => {
                    let write = Write::Status {
                        namespace,
                        name,
                        patch: patch.to_string().into_boxed_str(),
                    };
                    if self.writes.try_send(write).is_err() {
                        tracing::warn!(pod = key, "too many writes outstanding; the pod's status is written on its next attempt");
                        self.state.status_not_written(&key);
                    }
                }
                Action::Event {
                    note,
                    deferrable: true,
                } => self.defer_event(Write::Event(Box::new(note))),
                Action::Event {
                    note,
                    deferrable: false,
                } => self.send_event(Write::Event(Box::new(note))),
            }
        }
    }

    fn defer_event(&mut self, write: Write) {
        if self.deferred.len() >= self.max_deferred {
            // Events are best effort, as in Kubernetes: under pressure the oldest go.
            self.deferred.pop_front();
            tracing::warn!("too many events outstanding; dropping one");
        }
        self.deferred.push_back(write);
    }

    fn may_flush(&self) -> bool {
        self.binds.len() < DEFERRED_EVENTS_BELOW
    }

    /// Hands the deferred events to the writer when few bindings are in flight, as many as the
    /// write queue takes.
    fn flush_deferred(&mut self) {
        if !self.may_flush() {
            return;
        }
        while let Some(write) = self.deferred.pop_front() {
            match self.writes.try_send(write) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(write)) => {
                    self.deferred.push_front(write);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    fn send_event(&mut self, write: Write) {
        // Events are best effort, as in Kubernetes: under pressure they are dropped.
        if self.writes.try_send(write).is_err() {
            tracing::warn!("too many writes outstanding; dropping an event");
        }
    }
}

/// Gives each claim the node in its selected-node annotation (a merge patch that carries the
/// resourceVersion the decision saw, so a claim that changed meanwhile is not overwritten),
/// then binds the pod.
async fn bind_with_claims(
    api: &dyn Api,
    namespace: &str,
    name: &str,
    node: &str,
    claims: &[ClaimToSelect],
) -> Result<(), BindFailure> {
    for claim in claims {
        let mut metadata = serde_json::Map::new();
        if let Some(rv) = &claim.resource_version {
            metadata.insert("resourceVersion".into(), Value::String(rv.clone()));
        }
        metadata.insert(
            "annotations".into(),
            serde_json::json!({ SELECTED_NODE_ANNOTATION: node }),
        );
        let patch = Patch {
            kind: PatchKind::Merge,
            body: serde_json::json!({ "metadata": metadata }),
        };
        api.patch(
            resource_of::<PersistentVolumeClaim>(),
            Some(&claim.namespace),
            &claim.name,
            patch,
            false,
            WriteOptions::default(),
        )
        .await
        .map_err(BindFailure::PreBind)?;
    }
    api.bind(namespace, name, node)
        .await
        .map_err(BindFailure::Bind)
}

/// Makes the status and event writes, several at a time and no faster than `limit`, until the
/// scheduler stops.
async fn write_all(
    api: Arc<dyn Api>,
    events: EventRecorder,
    mut writes: mpsc::Receiver<Write>,
    concurrency: usize,
    mut limit: RateLimit,
) {
    futures::stream::poll_fn(|cx| writes.poll_recv(cx))
        .then(|write| {
            // Taken in order, one write at a time: each waits for its token.
            let wait = limit.reserve(tokio::time::Instant::now().into_std());
            async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                write
            }
        })
        .for_each_concurrent(concurrency, |write| {
            let api = api.clone();
            let events = events.clone();
            async move { write_one(api.as_ref(), &events, write).await }
        })
        .await;
}

async fn write_one(api: &dyn Api, events: &EventRecorder, write: Write) {
    let (namespace, name, patch) = match write {
        Write::Status {
            namespace,
            name,
            patch,
        } => (namespace, name, patch),
        Write::Event(note) => {
            // The recorder tries again when the server fails.
            if let Err(e) = events.record(&note).await {
                tracing::warn!(error = %e, "a scheduler event write failed");
            }
            return;
        }
    };
    let patch: Value = match serde_json::from_str(&patch) {
        Ok(patch) => patch,
        Err(e) => {
            // It is the text of a Value, so this cannot happen.
            tracing::error!(error = %e, "a queued status patch does not parse");
            return;
        }
    };
    for attempt in 1..=WRITE_ATTEMPTS {
        let patch = Patch {
            kind: PatchKind::Strategic,
            body: patch.clone(),
        };
        let result = api
            .patch(
                resource_of::<Pod>(),
                Some(&namespace),
                &name,
                patch,
                true,
                WriteOptions::default(),
            )
            .await;
        match result {
            Ok(_) => return,
            // The pod changed (or went) since the decision: the next attempt sees it as it is.
            Err(e) if e.is_conflict() || e.is_not_found() => {
                tracing::debug!(error = %e, "a scheduler write no longer applies");
                return;
            }
            Err(e) if e.is_server_error() && attempt < WRITE_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a scheduler status write failed");
                return;
            }
        }
    }
}
