//! minik's control loops: the ReplicaSet, ReplicationController and Deployment controllers and
//! the garbage collector that follows ownerReferences. They are clients of the API like any
//! other: shared informers feed work queues of keys, and each key is reconciled by a pure
//! function of the cached state and `now` whose plan a thin executor applies through the
//! [`minik_client::Api`].

mod action;
mod deployment;
mod executor;
mod expectations;
mod gc;
mod kinds;
mod machinery;
mod names;
mod pods;
mod replicaset;

use std::sync::Arc;
use std::time::Duration;

use minik_client::Api;
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
        }
    }
}

/// Runs every controller until the task is aborted (or dropped).
pub async fn run(api: Arc<dyn Api>, config: Config) {
    let informers = Informers::start(api.clone(), config.resync);
    let executor = Executor::new(api);
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
    tasks.spawn(gc::controller(&informers, executor, &config));
    tracing::info!("controllers started");
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a controller stopped");
        }
    }
}
