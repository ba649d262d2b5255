//! The machinery every controller shares: one informer per kind (so a pod is cached once, not
//! once per controller), work queues of keys with de-duplicated delayed requeues, and workers
//! that run a reconcile per key, retrying failures with rate-limited back-off: per key,
//! doubling with each consecutive failure, and per controller, a token bucket for the retries of
//! all its keys together (client-go's default controller rate limiter).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use minik_api::k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use minik_api::k8s_openapi::api::batch::v1::{CronJob, Job};
use minik_api::k8s_openapi::api::coordination::v1::Lease;
use minik_api::k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, ReplicationController,
    ResourceQuota, Service, ServiceAccount,
};
use minik_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::podview::PodView;
use minik_api::ApiError;
use minik_client::{Informer, InformerCache, RateLimit, SharedInformers, WorkQueue};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::action::Plan;
use crate::executor::{Executor, Report};
use crate::expectations::Expectations;
use crate::kinds::{self, Kind};
use crate::pods::is_active;
use crate::Config;

/// The informers of the kinds the controllers watch, each shared by all of them.
pub(crate) struct Informers {
    pub pods: Arc<Informer<PodView>>,
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub replication_controllers: Arc<Informer<ReplicationController>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub resource_quotas: Arc<Informer<ResourceQuota>>,
    /// The nodes' heartbeats (`kube-node-lease`).
    pub leases: Arc<Informer<Lease>>,
    pub service_accounts: Arc<Informer<ServiceAccount>>,
    pub claims: Arc<Informer<PersistentVolumeClaim>>,
    pub volumes: Arc<Informer<PersistentVolume>>,
    pub storage_classes: Arc<Informer<StorageClass>>,
    pub jobs: Arc<Informer<Job>>,
    pub cron_jobs: Arc<Informer<CronJob>>,
    pub daemon_sets: Arc<Informer<DaemonSet>>,
    pub stateful_sets: Arc<Informer<StatefulSet>>,
    pub controller_revisions: Arc<Informer<ControllerRevision>>,
    pub pod_disruption_budgets: Arc<Informer<PodDisruptionBudget>>,
}

/// Read-only views of the shared informers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Caches {
    pub pods: InformerCache<PodView>,
    pub replica_sets: InformerCache<ReplicaSet>,
    pub replication_controllers: InformerCache<ReplicationController>,
    pub deployments: InformerCache<Deployment>,
    pub services: InformerCache<Service>,
    pub endpoints: InformerCache<Endpoints>,
    pub nodes: InformerCache<Node>,
    pub namespaces: InformerCache<Namespace>,
    pub resource_quotas: InformerCache<ResourceQuota>,
    pub leases: InformerCache<Lease>,
    pub service_accounts: InformerCache<ServiceAccount>,
    pub claims: InformerCache<PersistentVolumeClaim>,
    pub volumes: InformerCache<PersistentVolume>,
    pub storage_classes: InformerCache<StorageClass>,
    pub jobs: InformerCache<Job>,
    pub cron_jobs: InformerCache<CronJob>,
    pub daemon_sets: InformerCache<DaemonSet>,
    pub stateful_sets: InformerCache<StatefulSet>,
    pub controller_revisions: InformerCache<ControllerRevision>,
    pub pod_disruption_budgets: InformerCache<PodDisruptionBudget>,
}

impl Informers {
    pub(crate) fn start(shared: &SharedInformers) -> Informers {
        Informers {
            pods: shared.get(),
            replica_sets: shared.get(),
            replication_controllers: shared.get(),
            deployments: shared.get(),
            services: shared.get(),
            endpoints: shared.get(),
            nodes: shared.get(),
            namespaces: shared.get(),
            resource_quotas: shared.get(),
            leases: shared.get(),
            service_accounts: shared.get(),
            claims: shared.get(),
            volumes: shared.get(),
            storage_classes: shared.get(),
            jobs: shared.get(),
            cron_jobs: shared.get(),
            daemon_sets: shared.get(),
            stateful_sets: shared.get(),
            controller_revisions: shared.get(),
            pod_disruption_budgets: shared.get(),
        }
    }

    pub(crate) fn caches(&self) -> Caches {
        Caches {
            pods: self.pods.cache(),
            replica_sets: self.replica_sets.cache(),
            replication_controllers: self.replication_controllers.cache(),
            deployments: self.deployments.cache(),
            services: self.services.cache(),
            endpoints: self.endpoints.cache(),
            nodes: self.nodes.cache(),
            namespaces: self.namespaces.cache(),
            resource_quotas: self.resource_quotas.cache(),
            leases: self.leases.cache(),
            service_accounts: self.service_accounts.cache(),
            claims: self.claims.cache(),
            volumes: self.volumes.cache(),
            storage_classes: self.storage_classes.cache(),
            jobs: self.jobs.cache(),
            cron_jobs: self.cron_jobs.cache(),
            daemon_sets: self.daemon_sets.cache(),
            stateful_sets: self.stateful_sets.cache(),
            controller_revisions: self.controller_revisions.cache(),
            pod_disruption_budgets: self.pod_disruption_budgets.cache(),
        }
    }
}

impl Caches {
    /// Waits until every cache holds its first list: before that, "no pods" means "not known
    /// yet", and a controller acting on it would create duplicates.
    pub(crate) async fn wait_synced(&self) {
        self.pods.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.replication_controllers.wait_synced().await;
        self.deployments.wait_synced().await;
        self.services.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.nodes.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.resource_quotas.wait_synced().await;
        self.leases.wait_synced().await;
        self.service_accounts.wait_synced().await;
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.storage_classes.wait_synced().await;
        self.jobs.wait_synced().await;
        self.cron_jobs.wait_synced().await;
        self.daemon_sets.wait_synced().await;
        self.stateful_sets.wait_synced().await;
        self.controller_revisions.wait_synced().await;
        self.pod_disruption_budgets.wait_synced().await;
    }
}

/// Takes a pod the cache shows for the owner at `key` into account in its expectations: the
/// pod's create is seen, and its delete too when it is `gone` or no longer active.
pub(crate) fn observe(expectations: &Expectations, key: &str, pod: &PodView, gone: bool) {
    expectations.created(key, kinds::name(&pod.metadata));
    if gone || !is_active(pod) {
        expectations.deleted(key, kinds::uid(&pod.metadata));
    }
}

/// Whether the owner at `key` may manage its pods again ([`Expectations::satisfied`]), its
/// expected creates and deletes judged by `pods`, the cached pods it may own.
pub(crate) fn expectations_met(
    expectations: &Expectations,
    key: &str,
    now: Instant,
    pods: &[&PodView],
) -> bool {
    let names: HashSet<&str> = pods.iter().map(|p| kinds::name(&p.metadata)).collect();
    let active_uids: HashSet<&str> = pods
        .iter()
        .filter(|p| is_active(p))
        .map(|p| kinds::uid(&p.metadata))
        .collect();
    expectations.satisfied(
        key,
        now,
        |name| names.contains(name),
        |uid| !active_uids.contains(uid),
    )
}

/// Carries out `plan` for the owner at `key`, expecting its pod creates and deletes from
/// `started` on; those the executor did not issue are not waited for.
pub(crate) async fn apply_expecting(
    executor: &Executor,
    expectations: &Expectations,
    key: &str,
    started: Instant,
    plan: Plan,
) -> Report {
    expectations.expect(
        key,
        plan.created(Kind::Pod),
        plan.deleted(Kind::Pod).into_iter().map(|t| t.uid.clone()),
        started,
    );
    let report = executor.apply(plan.actions).await;
    for name in &report.not_created {
        expectations.created(key, name);
    }
    for uid in &report.not_deleted {
        expectations.deleted(key, uid);
    }
    report
}

/// A work queue plus de-duplicated delayed requeues: asking to look at a key in 10 s and then
/// in 5 s waits 5 s, and asking again for later than an earlier pending wake-up does nothing.
pub(crate) struct Queue<K> {
    queue: WorkQueue<K>,
    wakeups: Arc<Mutex<HashMap<K, Instant>>>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            queue: self.queue.clone(),
            wakeups: self.wakeups.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + Debug + 'static> Queue<K> {
    /// A queue retrying failures as `config` says (`retry_base`, `retry_max`, `retry_rate`,
    /// `retry_burst`).
    pub(crate) fn new(config: &Config) -> Self {
        let overall =
            (config.retry_rate > 0).then(|| RateLimit::new(config.retry_rate, config.retry_burst));
        Queue {
            queue: WorkQueue::with_overall_limit(config.retry_base, config.retry_max, overall),
            wakeups: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub(crate) fn add(&self, key: K) {
        self.queue.add(key);
    }

    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let deadline = Instant::now() + delay;
        {
            let mut wakeups = self.wakeups.lock().unwrap_or_else(|p| p.into_inner());
            if wakeups.get(&key).is_some_and(|at| *at <= deadline) {
                return;
            }
            wakeups.insert(key.clone(), deadline);
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            // A wake-up superseded by an earlier one has nothing left to do.
            let current = {
                let mut wakeups = this.wakeups.lock().unwrap_or_else(|p| p.into_inner());
                let current = wakeups.get(&key) == Some(&deadline);
                if current {
                    wakeups.remove(&key);
                }
                current
            };
            if current {
                this.queue.add(key);
            }
        });
    }

    /// Queues `key` again after its retry back-off (see [`WorkQueue::failed`]); a wake-up
    /// already due sooner stands, so a key has one pending retry however often it failed.
    fn retry(&self, key: K) {
        let delay = self.queue.failed(&key);
        self.add_after(key, delay);
    }

    /// Runs `workers` workers that call `sync` for each key until the task is aborted. `sync`
    /// answers when to look at the key again; an error retries it after a back-off that grows
    /// with each consecutive failure of that key, and no sooner than the controller's overall
    /// retry limit allows.
    pub(crate) async fn run_workers<F, Fut>(
        &self,
        controller: &'static str,
        workers: usize,
        sync: F,
    ) where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Duration>, ApiError>> + Send + 'static,
    {
        let sync = Arc::new(sync);
        let mut set = JoinSet::new();
        for _ in 0..workers.max(1) {
            let this = self.clone();
            let sync = sync.clone();
            set.spawn(async move {
                loop {
                    let key = this.queue.next().await;
                    // A panic in one reconcile must not take the key (or the worker) with it.
                    let outcome = AssertUnwindSafe(sync(key.clone())).catch_unwind().await;
                    match outcome {
                        Ok(Ok(requeue)) => {
                            this.queue.forget(&key);
                            if let Some(after) = requeue {
                                this.add_after(key.clone(), after);
                            }
                        }
                        Ok(Err(e)) => {
                            // A conflict means the cache was behind, and a namespace being
                            // deleted refuses new objects until it is gone: both are expected,
                            // and the retry sees more.
                            let expected = e.is_conflict()
                                || e.is_already_exists()
                                || matches!(&e, ApiError::Forbidden(m) if m.contains("being terminated"));
                            if expected {
                                tracing::debug!(controller, ?key, error = %e, "sync failed; retrying");
                            } else {
                                tracing::warn!(controller, ?key, error = %e, "sync failed; retrying");
                            }
                            this.retry(key.clone());
                        }
                        Err(_) => {
                            tracing::error!(controller, ?key, "sync panicked; retrying");
                            this.retry(key.clone());
                        }
                    }
                    this.queue.done(&key);
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// What every queue-driven controller does once its watch loops (`tasks`) run: wait for the
/// caches, let `seed` queue the objects already there, then run `workers` workers that call
/// `sync(ctx, key)` for each key of `queue` (see [`Queue::run_workers`]). Returns when every task
/// has ended.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_controller<C, K, F, Fut>(
    name: &'static str,
    workers: usize,
    mut tasks: JoinSet<()>,
    caches: &Caches,
    queue: &Queue<K>,
    ctx: Arc<C>,
    seed: impl FnOnce(&C),
    sync: F,
) where
    C: Send + Sync + 'static,
    K: Clone + Eq + Hash + Send + Sync + Debug + 'static,
    F: Fn(Arc<C>, K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, ApiError>> + Send + 'static,
{
    caches.wait_synced().await;
    seed(&ctx);
    let queue = queue.clone();
    tasks.spawn(async move {
        queue
            .run_workers(name, workers, move |key| sync(ctx.clone(), key))
            .await
    });
    while tasks.join_next().await.is_some() {}
}

/// Queues every cached namespace's name (controllers keyed by namespace).
pub(crate) fn enqueue_namespaces(caches: &Caches, queue: &Queue<String>) {
    for ns in caches.namespaces.list() {
        queue.add(crate::kinds::name(&ns.metadata).to_owned());
    }
}

/// Queues a namespace's name when it appears or changes, and every namespace at a resync.
pub(crate) async fn watch_namespaces(
    mut changes: minik_client::Subscription<Namespace>,
    queue: Queue<String>,
    caches: Caches,
) {
    while let Some(change) = changes.next().await {
        match change {
            minik_client::Change::Applied(ns) => {
                queue.add(crate::kinds::name(&ns.metadata).to_owned())
            }
            minik_client::Change::Deleted(_) => {}
            minik_client::Change::Resync => enqueue_namespaces(&caches, &queue),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn queue<K: Clone + Eq + Hash + Send + Sync + Debug + 'static>(
        retry_base: Duration,
        retry_max: Duration,
    ) -> Queue<K> {
        Queue::new(&Config {
            retry_base,
            retry_max,
            ..Config::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_requeues_keep_the_earliest() {
        let queue: Queue<&str> = queue(Duration::from_millis(5), Duration::from_secs(1));
        let start = Instant::now();
        queue.add_after("k", Duration::from_secs(10));
        queue.add_after("k", Duration::from_secs(5));
        queue.add_after("k", Duration::from_secs(20));
        assert_eq!(queue.queue.next().await, "k");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        queue.queue.done(&"k");
        // The 10 s wake-up was superseded, the 20 s one never scheduled: nothing else comes
        // until a new request.
        queue.add_after("k", Duration::from_secs(30));
        assert_eq!(queue.queue.next().await, "k");
        assert_eq!(start.elapsed(), Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn workers_retry_failures_with_back_off_and_survive_panics() {
        let queue: Queue<&'static str> = queue(Duration::from_millis(100), Duration::from_secs(10));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let start = Instant::now();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let runner = queue.clone();
        let workers = tokio::spawn(async move {
            runner
                .run_workers("test", 2, move |key| {
                    let seen = seen.clone();
                    let done_tx = done_tx.clone();
                    async move {
                        match seen.fetch_add(1, Ordering::SeqCst) {
                            0 => Err(ApiError::conflict(minik_api::ObjectRef::new(
                                "", "pods", key,
                            ))),
                            1 => panic!("a bug in a reconciler"),
                            _ => {
                                let _ = done_tx.send(Instant::now());
                                Ok(None)
                            }
                        }
                    }
                })
                .await
        });
        queue.add("k");
        let finished = done_rx.recv().await.expect("the key is synced at last");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // One failure (100 ms), then one panic (200 ms): back-off doubles per failure.
        assert_eq!(finished - start, Duration::from_millis(300));
        workers.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn many_failing_keys_are_retried_at_the_overall_rate() {
        // 200 keys that always fail, for one second: alone, each key's back-off (5 ms, 10 ms,
        // ...) would allow about 8 retries of each, 1,600 in all; the overall bucket lets 100
        // through at once and 10 more per second.
        let queue: Queue<usize> = Queue::new(&Config {
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_secs(60),
            retry_rate: 10,
            retry_burst: 100,
            ..Config::default()
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let runner = queue.clone();
        let workers = tokio::spawn(async move {
            runner
                .run_workers("test", 2, move |key| {
                    let seen = seen.clone();
                    async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        Err(ApiError::Forbidden(format!("key {key} refused")))
                    }
                })
                .await
        });
        for key in 0..200 {
            queue.add(key);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = calls.load(Ordering::SeqCst);
        assert!(
            (300..=311).contains(&calls),
            "200 first tries and 100 to 110 retries, not {calls}"
        );
        workers.abort();
    }
}
