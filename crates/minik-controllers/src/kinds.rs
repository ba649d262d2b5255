//! The kinds the controllers read and write, and the small accessors of object metadata they
//! all use (owner references, labels, times).

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use minik_api::k8s_openapi::api::batch::v1::{CronJob, Job};
use minik_api::k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaim, Pod, ReplicationController,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::resources::ResourceInfo;
use minik_client::resource_of;
use serde_json::{json, Value};

/// A kind the controllers work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Pod,
    ReplicaSet,
    ReplicationController,
    Deployment,
    Job,
    CronJob,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    PersistentVolumeClaim,
}

impl Kind {
    /// The kinds the garbage collector follows, as owners and as dependents.
    pub(crate) const WATCHED: [Kind; 10] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::Deployment,
        Kind::Job,
        Kind::CronJob,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::ControllerRevision,
        Kind::PersistentVolumeClaim,
    ];

    pub(crate) fn info(self) -> &'static ResourceInfo {
        match self {
            Kind::Pod => resource_of::<Pod>(),
            Kind::ReplicaSet => resource_of::<ReplicaSet>(),
            Kind::ReplicationController => resource_of::<ReplicationController>(),
            Kind::Deployment => resource_of::<Deployment>(),
            Kind::Job => resource_of::<Job>(),
            Kind::CronJob => resource_of::<CronJob>(),
            Kind::DaemonSet => resource_of::<DaemonSet>(),
            Kind::StatefulSet => resource_of::<StatefulSet>(),
            Kind::ControllerRevision => resource_of::<ControllerRevision>(),
            Kind::PersistentVolumeClaim => resource_of::<PersistentVolumeClaim>(),
        }
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::ReplicationController | Kind::PersistentVolumeClaim => "v1",
            Kind::ReplicaSet
            | Kind::Deployment
            | Kind::DaemonSet
            | Kind::StatefulSet
            | Kind::ControllerRevision => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
            Kind::Deployment => "Deployment",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    /// The watched kind an owner reference points at, if it is one. The version is not
    /// compared: an owner is the same object whichever version of its group names it.
    pub(crate) fn of_reference(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Kind::WATCHED.into_iter().find(|k| {
            k.name() == kind && k.api_version().rsplit_once('/').map_or("", |(g, _)| g) == group
        })
    }
}

/// The cache key of an object: `namespace/name`.
pub(crate) fn key_of(meta: &ObjectMeta) -> String {
    minik_client::cache_key(meta)
}

pub(crate) fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

pub(crate) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

pub(crate) fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

pub(crate) fn resource_version(meta: &ObjectMeta) -> &str {
    meta.resource_version.as_deref().unwrap_or_default()
}

pub(crate) fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub(crate) fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// The labels of an object (empty when it has none).
pub(crate) fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

pub(crate) fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The owner reference that marks the object's managing controller.
pub(crate) fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

pub(crate) fn owner_refs(meta: &ObjectMeta) -> &[OwnerReference] {
    meta.owner_references.as_deref().unwrap_or_default()
}

/// The cache key (`namespace/name`) of the `kind` controlling `meta`, if one of that kind does.
pub(crate) fn controller_key(meta: &ObjectMeta, kind: Kind) -> Option<String> {
    let r = controller_ref(meta)?;
    (r.kind == kind.name()).then(|| format!("{}/{}", namespace(meta), r.name))
}

/// A merge patch that sets an object's ownerReferences (removes them when `refs` is empty),
/// only if the object is still the version judged.
pub(crate) fn owner_refs_patch(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> Value {
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(refs).unwrap_or(Value::Null)
    };
    json!({"metadata": {
        "resourceVersion": resource_version(meta),
        "ownerReferences": refs,
    }})
}

/// The reference to an object of `kind` that events about it carry.
pub(crate) fn object_reference(kind: Kind, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(kind.api_version().into()),
        kind: Some(kind.name().into()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

pub(crate) fn created_at(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// The owner reference a controller puts on what it creates or adopts.
pub(crate) fn controller_reference(kind: Kind, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().to_owned(),
        kind: kind.name().to_owned(),
        name: name(owner).to_owned(),
        uid: uid(owner).to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The wall-clock time, the `now` reconcilers are given.
pub(crate) fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_millisecond(since_epoch.as_millis() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `now` cut to whole seconds: what a Kubernetes timestamp can hold, so that a time written
/// and read back compares equal.
pub(crate) fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_references_name_watched_kinds_by_group() {
        assert_eq!(
            Kind::of_reference("apps/v1", "ReplicaSet"),
            Some(Kind::ReplicaSet)
        );
        assert_eq!(
            Kind::of_reference("apps/v1beta2", "Deployment"),
            Some(Kind::Deployment)
        );
        assert_eq!(
            Kind::of_reference("v1", "ReplicationController"),
            Some(Kind::ReplicationController)
        );
        assert_eq!(Kind::of_reference("v1", "ReplicaSet"), None);
        assert_eq!(Kind::of_reference("batch/v1", "Job"), Some(Kind::Job));
        assert_eq!(Kind::of_reference("apps/v1", "Job"), None);
    }
}
