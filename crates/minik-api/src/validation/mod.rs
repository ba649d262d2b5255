//! Validation of every kind minik serves, reporting all problems at once with Kubernetes' field
//! paths and wording (`spec.containers[0].image: Required value: ...`), so that errors read as
//! they would from a Kubernetes API server.
//!
//! The API server defaults an object ([`crate::defaults`]) and then validates it, on create with
//! `kind(obj)` and on update with `kind_update(new, old)`; validation expects defaulted objects,
//! as Kubernetes' does, and reports a missing defaulted field as `Required`. Each update check
//! includes the create checks of the new object's spec. Each kind's function also checks the
//! object's `metadata` (with [`object_meta`] or [`object_meta_update`]), so callers need not
//! check it separately. Nothing here panics, whatever the input.
//!
//! Where minik differs from Kubernetes, the function's documentation says so. In short: a
//! container needs an `image` or a `command` (not necessarily an image); container port names
//! are unique across a pod's containers; a negative `terminationGracePeriodSeconds` is refused
//! (Kubernetes silently makes it 1); Endpoints may list loopback addresses; a Service's
//! health-check node port is optional; `metadata.name` may be missing when `generateName` is
//! set (the caller generates it); an ordinary Namespace update cannot change `spec.finalizers`
//! (Kubernetes silently keeps the old list); update checks treat a missing `uid` or
//! `creationTimestamp` as unchanged. Kubernetes' own path quirks are kept so that messages match:
//! taint problems are reported under `metadata.taints`, and a template's label problems under
//! `spec.template.labels`.

mod cluster;
mod common;
mod config;
mod container;
mod controller_revision;
mod cron_job;
mod daemon_set;
mod job;
mod meta;
mod pod;
mod pod_disruption_budget;
mod service;
mod stateful_set;
mod storage;
mod workloads;

#[cfg(test)]
mod tests;

pub use cluster::{
    event, event_update, lease, lease_update, namespace, namespace_finalize_update,
    namespace_update, node, node_update, resource_quota, resource_quota_update, runtime_class,
    runtime_class_update,
};
pub use config::{
    config_map, config_map_update, secret, secret_update, service_account, service_account_update,
    MAX_CONFIG_MAP_SIZE, MAX_SECRET_SIZE, SECRET_TYPE_BASIC_AUTH, SECRET_TYPE_DOCKERCFG,
    SECRET_TYPE_DOCKER_CONFIG_JSON, SECRET_TYPE_OPAQUE, SECRET_TYPE_SERVICE_ACCOUNT_TOKEN,
    SECRET_TYPE_SSH_AUTH, SECRET_TYPE_TLS, SERVICE_ACCOUNT_NAME_ANNOTATION,
};
pub use controller_revision::{controller_revision, controller_revision_update};
pub use cron_job::{cron_job, cron_job_update};
pub use daemon_set::{daemon_set, daemon_set_update};
pub use job::{job, job_update};
pub use meta::{object_meta, object_meta_update, TOTAL_ANNOTATION_SIZE_LIMIT};
pub use pod::{pod, pod_update};
pub use pod_disruption_budget::{pod_disruption_budget, pod_disruption_budget_update};
pub use service::{endpoints, endpoints_update, service, service_update, NODE_PORT_RANGE};
pub use stateful_set::{stateful_set, stateful_set_update};
pub use storage::{
    persistent_volume, persistent_volume_claim, persistent_volume_claim_update,
    persistent_volume_update, storage_class, storage_class_update, ACCESS_MODES,
    BETA_STORAGE_CLASS_ANNOTATION, MOUNT_OPTIONS_ANNOTATION, PV_RECLAIM_POLICIES,
    STORAGE_CLASS_RECLAIM_POLICIES, VOLUME_BINDING_MODES, VOLUME_MODES,
};
pub use workloads::{
    deployment, deployment_update, replica_set, replica_set_update, replication_controller,
    replication_controller_update,
};
