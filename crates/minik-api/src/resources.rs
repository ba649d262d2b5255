//! The table of kinds minik serves: their names in the API (group, version, plural, short
//! names), their scope, their subresources, and their rules (the kind's module in
//! [`crate::kinds`]: admission on a write — strict decode, defaults, validation — and the
//! [`Strategy`] the registry asks). Adding a kind is one entry here and one module there.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;

pub use crate::decode::FieldValidation;
pub use crate::wellknown::NODE_LEASE_NAMESPACE;

use crate::decode::DecodeError;
use crate::kinds::{self, Admission, AdmitError, Strategy};
use crate::status::ApiError;

/// One served kind and what the API server needs to know to serve it.
#[derive(Debug)]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural, lower-case name used in paths: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Subresources served, as they appear in paths: `status`, `scale`, `binding`, `eviction`.
    pub subresources: &'static [&'static str],
    /// Kubernetes' `categories`; `all` makes `get all` include the kind.
    pub categories: &'static [&'static str],
    /// The kind's decisions for the registry (its module in [`crate::kinds`]).
    pub strategy: &'static dyn Strategy,
    admit_create: fn(&Value, FieldValidation) -> Result<Value, AdmitError>,
    admit_update: fn(&Value, &Value, FieldValidation) -> Result<Value, AdmitError>,
}

impl ResourceInfo {
    /// The columns of the kind's table, wide ones included (its strategy's).
    pub fn columns(&self) -> &'static [crate::printers::Column] {
        self.strategy.table().columns
    }

    /// The cells of `object`'s row, one per [`ResourceInfo::columns`]; `now` is seconds since
    /// the epoch.
    pub fn cells(&self, object: &Value, now: i64) -> Vec<Value> {
        let cells = (self.strategy.table().cells)(object, now);
        debug_assert_eq!(cells.len(), self.columns().len(), "{}", self.kind);
        cells
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`: how kubectl names the resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Whether the kind declares the server-side admission step `step`.
    pub fn admits(&self, step: Admission) -> bool {
        self.strategy.admission().contains(&step)
    }

    /// The storage key of an object: `/registry/{plural}/{namespace}/{name}`, or
    /// `/registry/{plural}/{name}` for cluster-scoped kinds.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.plural),
            _ => format!("/registry/{}/{name}", self.plural),
        }
    }

    /// The storage prefix of a collection: one namespace's, or all of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.plural),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    /// Decodes, defaults and validates an object to be created; returns it in canonical JSON.
    pub fn admit_create(&self, object: &Value, fv: FieldValidation) -> Result<Value, ApiError> {
        (self.admit_create)(object, fv).map_err(|e| self.admit_error(object, e))
    }

    /// Decodes, defaults and validates a replacement of `old`; returns it in canonical JSON.
    pub fn admit_update(
        &self,
        object: &Value,
        old: &Value,
        fv: FieldValidation,
    ) -> Result<Value, ApiError> {
        (self.admit_update)(object, old, fv).map_err(|e| self.admit_error(object, e))
    }

    fn admit_error(&self, object: &Value, e: AdmitError) -> ApiError {
        match e {
            AdmitError::Decode(e) => ApiError::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: {}{e}",
                self.kind,
                self.version,
                self.kind,
                if matches!(e, DecodeError::UnknownFields(_)) {
                    "strict decoding error: "
                } else {
                    ""
                }
            )),
            AdmitError::Invalid(errors) => ApiError::Invalid {
                kind: self.kind.into(),
                group: self.group.into(),
                name: object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                errors,
            },
        }
    }
}

macro_rules! info {
    ($ty:ty, $strategy:expr, $group:expr, $plural:expr, $singular:expr, $short:expr, $namespaced:expr, $sub:expr, $cat:expr) => {
        ResourceInfo {
            group: $group,
            version: "v1",
            kind: <$ty as k8s_openapi::Resource>::KIND,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            namespaced: $namespaced,
            subresources: $sub,
            categories: $cat,
            strategy: $strategy,
            admit_create: kinds::admit_create::<$ty>,
            admit_update: kinds::admit_update::<$ty>,
        }
    };
}

/// Every served kind, in the order discovery lists them.
pub static RESOURCES: &[ResourceInfo] = &[
    info!(
        Namespace,
        kinds::NAMESPACES,
        "",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        &["status", "finalize"],
        &[]
    ),
    info!(
        Node,
        kinds::NODES,
        "",
        "nodes",
        "node",
        &["no"],
        false,
        &["status"],
        &[]
    ),
    info!(
        Pod,
        kinds::PODS,
        "",
        "pods",
        "pod",
        &["po"],
        true,
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "portforward",
            "exec",
            "attach"
        ],
        &["all"]
    ),
    info!(
        ReplicationController,
        kinds::REPLICATION_CONTROLLERS,
        "",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        &["status", "scale"],
        &["all"]
    ),
    info!(
        Service,
        kinds::SERVICES,
        "",
        "services",
        "service",
        &["svc"],
        true,
        &["status"],
        &["all"]
    ),
    info!(
        Endpoints,
        kinds::ENDPOINTS,
        "",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        &[],
        &[]
    ),
    info!(
        Event,
        kinds::EVENTS,
        "",
        "events",
        "event",
        &["ev"],
        true,
        &[],
        &[]
    ),
    info!(
        ResourceQuota,
        kinds::RESOURCE_QUOTAS,
        "",
        "resourcequotas",
        "resourcequota",
        &["quota"],
        true,
        &["status"],
        &[]
    ),
    info!(
        ConfigMap,
        kinds::CONFIG_MAPS,
        "",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        &[],
        &[]
    ),
    info!(
        Secret,
        kinds::SECRETS,
        "",
        "secrets",
        "secret",
        &[],
        true,
        &[],
        &[]
    ),
    info!(
        ServiceAccount,
        kinds::SERVICE_ACCOUNTS,
        "",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        &["token"],
        &[]
    ),
    info!(
        PersistentVolume,
        kinds::PERSISTENT_VOLUMES,
        "",
        "persistentvolumes",
        "persistentvolume",
        &["pv"],
        false,
        &["status"],
        &[]
    ),
    info!(
        PersistentVolumeClaim,
        kinds::PERSISTENT_VOLUME_CLAIMS,
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        true,
        &["status"],
        &[]
    ),
    info!(
        Deployment,
        kinds::DEPLOYMENTS,
        "apps",
        "deployments",
        "deployment",
        &["deploy"],
        true,
        &["status", "scale"],
        &["all"]
    ),
    info!(
        ReplicaSet,
        kinds::REPLICA_SETS,
        "apps",
        "replicasets",
        "replicaset",
        &["rs"],
        true,
        &["status", "scale"],
        &["all"]
    ),
    info!(
        k8s_openapi::api::batch::v1::Job,
        kinds::JOBS,
        "batch",
        "jobs",
        "job",
        &[],
        true,
        &["status"],
        &["all"]
    ),
    info!(
        k8s_openapi::api::batch::v1::CronJob,
        kinds::CRON_JOBS,
        "batch",
        "cronjobs",
        "cronjob",
        &["cj"],
        true,
        &["status"],
        &["all"]
    ),
    info!(
        k8s_openapi::api::apps::v1::DaemonSet,
        kinds::DAEMON_SETS,
        "apps",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        &["status"],
        &["all"]
    ),
    info!(
        k8s_openapi::api::apps::v1::StatefulSet,
        kinds::STATEFUL_SETS,
        "apps",
        "statefulsets",
        "statefulset",
        &["sts"],
        true,
        &["status", "scale"],
        &["all"]
    ),
    info!(
        k8s_openapi::api::apps::v1::ControllerRevision,
        kinds::CONTROLLER_REVISIONS,
        "apps",
        "controllerrevisions",
        "controllerrevision",
        &[],
        true,
        &[],
        &[]
    ),
    info!(
        k8s_openapi::api::policy::v1::PodDisruptionBudget,
        kinds::POD_DISRUPTION_BUDGETS,
        "policy",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        &["pdb"],
        true,
        &["status"],
        &[]
    ),
    info!(
        Lease,
        kinds::LEASES,
        "coordination.k8s.io",
        "leases",
        "lease",
        &[],
        true,
        &[],
        &[]
    ),
    info!(
        RuntimeClass,
        kinds::RUNTIME_CLASSES,
        "node.k8s.io",
        "runtimeclasses",
        "runtimeclass",
        &[],
        false,
        &[],
        &[]
    ),
    info!(
        StorageClass,
        kinds::STORAGE_CLASSES,
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        &["sc"],
        false,
        &[],
        &[]
    ),
];

/// The resource at `/{api|apis/group}/{version}/.../{plural}`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for a manifest's `apiVersion` and `kind`; the error names what is served.
pub fn by_kind(api_version: &str, kind: &str) -> Result<&'static ResourceInfo, String> {
    if let Some(r) = RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
    {
        return Ok(r);
    }
    let served: Vec<String> = RESOURCES
        .iter()
        .map(|r| format!("{} {}", r.api_version(), r.kind))
        .collect();
    let hint = match RESOURCES.iter().find(|r| r.kind == kind) {
        Some(r) => format!("; {kind} is served as {}", r.api_version()),
        None => String::new(),
    };
    Err(format!(
        "no kind {kind:?} is registered for version {api_version:?}{hint} (minik serves: {})",
        served.join(", ")
    ))
}

/// The resource a user names on the command line: plural, singular, short name or kind, with
/// an optional `.group` suffix (`deployments.apps`), case-insensitive.
pub fn by_user_name(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let (name, group) = match lower.split_once('.') {
        Some((n, g)) => (n.to_owned(), Some(g.to_owned())),
        None => (lower, None),
    };
    RESOURCES.iter().find(|r| {
        group.as_deref().is_none_or(|g| g == r.group)
            && (r.plural == name
                || r.singular == name
                || r.kind.eq_ignore_ascii_case(&name)
                || r.short_names.contains(&name.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_versions_are_refused_naming_what_is_served() {
        let err = by_kind("apps/v1beta2", "Deployment").unwrap_err();
        assert!(err.starts_with("no kind \"Deployment\" is registered for version \"apps/v1beta2\"; Deployment is served as apps/v1"), "{err}");
        assert!(err.contains("apps/v1 ReplicaSet"));
        assert!(by_kind("v1", "PodTemplate").is_err());
        assert!(by_kind("v1", "StorageClass").is_err());
        assert_eq!(
            by_kind("apps/v1", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
    }

    #[test]
    fn user_names_resolve_like_kubectl() {
        for (name, plural) in [
            ("po", "pods"),
            ("pod", "pods"),
            ("Pods", "pods"),
            ("deploy", "deployments"),
            ("deployments.apps", "deployments"),
            ("svc", "services"),
            ("quota", "resourcequotas"),
            ("rc", "replicationcontrollers"),
            ("ev", "events"),
            ("runtimeclass", "runtimeclasses"),
            ("cm", "configmaps"),
            ("secret", "secrets"),
            ("sa", "serviceaccounts"),
            ("pv", "persistentvolumes"),
            ("pvc", "persistentvolumeclaims"),
            ("sc", "storageclasses"),
            ("storageclasses.storage.k8s.io", "storageclasses"),
            ("runtimeclasses.node.k8s.io", "runtimeclasses"),
        ] {
            assert_eq!(by_user_name(name).map(|r| r.plural), Some(plural), "{name}");
        }
        assert!(by_user_name("deployments.batch").is_none());
    }

    #[test]
    fn keys_follow_the_registry_layout() {
        let pods = by_plural("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = by_plural("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
    }

    #[test]
    fn admission_defaults_and_reports_every_problem() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let ok = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}});
        let admitted = pods.admit_create(&ok, FieldValidation::Strict).unwrap();
        assert_eq!(admitted["spec"]["restartPolicy"], "Always");
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Web", "namespace": "default"},
                         "spec": {"containers": [{"name": "c"}]}});
        let err = pods
            .admit_create(&bad, FieldValidation::Strict)
            .unwrap_err();
        assert_eq!(err.code(), 422);
        let causes = err.to_status().details.unwrap().causes.unwrap();
        let fields: Vec<_> = causes.iter().filter_map(|c| c.field.clone()).collect();
        assert!(fields.contains(&"metadata.name".to_string()), "{fields:?}");
        assert!(
            fields.contains(&"spec.containers[0].image".to_string()),
            "{fields:?}"
        );
        let unknown = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                             "spec": {"containers": [{"name": "c", "image": "x", "imagee": "y"}]}});
        let err = pods
            .admit_create(&unknown, FieldValidation::Strict)
            .unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
        );
        assert!(pods.admit_create(&unknown, FieldValidation::Ignore).is_ok());
    }
}
