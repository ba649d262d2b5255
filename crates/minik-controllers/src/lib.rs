//! minik's control loops: the ReplicaSet, ReplicationController and Deployment controllers and
//! the garbage collector that follows ownerReferences. They are clients of the API like any
//! other: shared informers feed work queues of keys, and each key is reconciled by a pure
//! function of the cached state and `now` whose plan a thin executor applies through the
//! [`minik_client::Api`].

mod action;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod executor;
mod expectations;
mod gc;
mod history;
mod job;
mod kinds;
mod machinery;
mod names;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod pods;
mod quota;
mod replicaset;
mod rootca;
mod serviceaccount;
mod statefulset;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use minik_client::{Api, InformerConfig, SharedInformers};
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::machinery::Informers;

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Workers per controller: how many keys of one kind are reconciled at once.
    pub workers: usize,
    /// How often every object is looked at again even if nothing changed.
    pub resync: Duration,
    /// The most pods one ReplicaSet pass creates or deletes (Kubernetes' `burstReplicas`).
    pub burst_replicas: usize,
    /// How long unobserved creates and deletes hold an owner back before they are given up.
    pub expectations_timeout: Duration,
    /// The first retry delay of a failed reconcile; it doubles per consecutive failure.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// Retries per second of one controller's failed reconciles, all keys together, whatever
    /// their own back-off (client-go's `BucketRateLimiter`, 10/s); 0: no overall limit.
    pub retry_rate: u32,
    /// How many retries may go at once before `retry_rate` applies (client-go: 100).
    pub retry_burst: u32,
    /// How often the node lifecycle controller looks at every node (Kubernetes'
    /// `--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// How long a node's agent may stay silent before the node is marked Unknown and tainted
    /// unreachable (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How long pods without a toleration of their node being unreachable or not ready stay on
    /// it (`--pod-eviction-timeout`); a pod's `tolerationSeconds` wins.
    pub pod_eviction_timeout: Duration,
    /// Nodes per second whose pods start being evicted, per zone (`--node-eviction-rate`).
    pub node_eviction_rate: f64,
    /// The same when much of a large zone is down (`--secondary-node-eviction-rate`).
    pub secondary_node_eviction_rate: f64,
    /// The share of a zone's nodes down (with more than two down) that makes it partially
    /// disrupted (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
    /// A partially disrupted zone of at most this many nodes evicts nothing; a larger one goes
    /// at the secondary rate (`--large-cluster-size-threshold`).
    pub large_cluster_size_threshold: usize,
    /// The cluster CIDR each Node's `spec.podCIDR` is carved from (`--cluster-cidr`); `None`
    /// leaves pod CIDRs alone (no node IPAM). Check with [`Config::check`].
    pub cluster_cidr: Option<minik_api::cidr::Cidr>,
    /// The prefix length of each Node's pod CIDR (`--node-cidr-mask-size`): at least the
    /// cluster CIDR's, at most 30.
    pub node_cidr_mask: u8,
    /// The service CIDR (`--service-cidr`), which no Node's pod CIDR may overlap.
    pub service_cidr: Option<minik_api::cidr::Cidr>,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt` ConfigMap; `None` (plain HTTP): none is published.
    pub root_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            resync: Duration::from_secs(30),
            burst_replicas: 500,
            expectations_timeout: Duration::from_secs(5 * 60),
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_secs(60),
            retry_rate: 10,
            retry_burst: 100,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(5 * 60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            cluster_cidr: None,
            node_cidr_mask: minik_api::cidr::DEFAULT_NODE_MASK,
            service_cidr: None,
            root_ca: None,
        }
    }
}

/// Runs every controller until the task is aborted (or dropped), with informers of their own.
pub async fn run(api: Arc<dyn Api>, config: Config) {
    let informers = SharedInformers::new(
        api,
        InformerConfig {
            resync: config.resync,
            ..InformerConfig::default()
        },
    );
    run_shared(&informers, config).await
}

/// Runs every controller until the task is aborted (or dropped), on `shared`'s informers (and
/// its API), which other components of the process may share: their subscriptions resync at
/// `shared`'s period, not `config.resync`.
pub async fn run_shared(shared: &SharedInformers, config: Config) {
    let informers = Informers::start(shared);
    let executor = Executor::new(shared.api().clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(replicaset::controller(
        &informers,
        &informers.replica_sets,
        executor.clone(),
        &config,
    ));
    tasks.spawn(replicaset::controller(
        &informers,
        &informers.replication_controllers,
        executor.clone(),
        &config,
    ));
    tasks.spawn(deployment::controller(
        &informers,
        executor.clone(),
        &config,
    ));
    tasks.spawn(gc::controller(&informers, executor.clone(), &config));
    tasks.spawn(endpoints::controller(&informers, executor.clone(), &config));
    tasks.spawn(nodelifecycle::controller(
        &informers,
        executor.clone(),
        &config,
    ));
    tasks.spawn(nodeipam::controller(&informers, executor.clone(), &config));
    tasks.spawn(namespace::controller(&informers, executor.clone(), &config));
    tasks.spawn(quota::controller(&informers, executor.clone(), &config));
    tasks.spawn(serviceaccount::controller(
        &informers,
        executor.clone(),
        &config,
    ));
    tasks.spawn(rootca::controller(&informers, executor.clone(), &config));
    tasks.spawn(volumes::controller(&informers, executor.clone(), &config));
    tasks.spawn(job::controller(&informers, executor.clone(), &config));
    tasks.spawn(cronjob::controller(&informers, executor.clone(), &config));
    tasks.spawn(daemonset::controller(&informers, executor.clone(), &config));
    tasks.spawn(statefulset::controller(
        &informers,
        executor.clone(),
        &config,
    ));
    tasks.spawn(disruption::controller(&informers, executor, &config));
    tracing::info!("controllers started");
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a controller stopped");
        }
    }
}
