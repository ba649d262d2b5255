//! The part of a pod that the control plane's own consumers read: the scheduler and the
//! controllers inside `minik server` cache every pod of the cluster, and a whole k8s-openapi
//! `Pod` costs 7 to 11 kB of heap (docs/benchmarks.md) for fields none of them looks at: a
//! container's image, command, environment, probes and mounts; a container status's image and
//! ids; the kubelet's volumes. [`PodView`] keeps what they read, with the same field names and
//! types as `Pod`, so code reads a view as it reads a pod; a field that is not here does not
//! compile rather than reading as absent.
//!
//! A view decodes from a pod's JSON (unknown fields are skipped, not kept), and
//! [`PodView::from`] makes one of a typed `Pod` for code that holds the whole object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ContainerState, EphemeralVolumeSource,
    PersistentVolumeClaimVolumeSource, Pod, PodCondition, PodIP, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer, Serialize};

use crate::hostports::HOST_PORTS_ANNOTATION;
use crate::wellknown::{ANNOTATION_POD_DELETION_COST, JOB_COMPLETION_INDEX};

/// The annotations of a pod that a view keeps, the only ones the server's consumers read: the
/// deletion cost (ReplicaSets), the completion index (Jobs), and the host ports a node bound
/// (Endpoints). Others (kubectl's last-applied copy, tools' notes, which can be kilobytes) are
/// dropped. Read them through [`PodView::annotation`], which checks the key is kept.
pub const KEPT_ANNOTATIONS: [&str; 3] = [
    ANNOTATION_POD_DELETION_COST,
    JOB_COMPLETION_INDEX,
    HOST_PORTS_ANNOTATION,
];

/// A pod as the control plane's caches hold it. See the module's documentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodView {
    /// The pod's metadata, without `managedFields` and with only the [`KEPT_ANNOTATIONS`]:
    /// read annotations through [`PodView::annotation`].
    #[serde(default, deserialize_with = "lean_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpecView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatusView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, deserialize_with = "tight")]
    pub containers: Vec<ContainerView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub init_containers: Option<Vec<ContainerView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub volumes: Option<Vec<VolumeView>>,
}

/// A container as far as placement, quota and Services go: its name, resources and ports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    #[serde(default)]
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `Always` on an init container makes it a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// A volume as far as claims go: which PersistentVolumeClaim it mounts, if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralVolumeSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusView {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub container_statuses: Option<Vec<ContainerStatusView>>,
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub init_container_statuses: Option<Vec<ContainerStatusView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominated_node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(
        rename = "podIPs",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tight_list"
    )]
    pub pod_ips: Option<Vec<PodIP>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}

/// A container's status as far as controllers go: readiness, restarts and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusView {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
}

/// A list without the spare capacity that growing it while decoding left: a vector of one
/// grows to room for four, and these lists live as long as the pod.
fn tight<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut list = Vec::<T>::deserialize(d)?;
    list.shrink_to_fit();
    Ok(list)
}

fn tight_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    let mut list = Option::<Vec<T>>::deserialize(d)?;
    if let Some(list) = list.as_mut() {
        list.shrink_to_fit();
    }
    Ok(list)
}

fn lean_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let mut meta = ObjectMeta::deserialize(d)?;
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| KEPT_ANNOTATIONS.contains(&key.as_str()));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.shrink_to_fit();
    }
    if let Some(finalizers) = meta.finalizers.as_mut() {
        finalizers.shrink_to_fit();
    }
    Ok(meta)
}

impl PodView {
    /// The annotation `key`, one of the [`KEPT_ANNOTATIONS`] (a view holds no other).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        debug_assert!(
            KEPT_ANNOTATIONS.contains(&key),
            "a PodView does not keep the annotation {key:?}; add it to KEPT_ANNOTATIONS"
        );
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

impl From<&Pod> for PodView {
    /// The view of a whole pod: its JSON decoded as a view, so the two never disagree on a
    /// field.
    fn from(pod: &Pod) -> PodView {
        let json = serde_json::to_vec(pod).expect("a Pod always encodes");
        serde_json::from_slice(&json).expect("a Pod's JSON always decodes as a PodView")
    }
}

impl k8s_openapi::Resource for PodView {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for PodView {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wellknown::ANNOTATION_LAST_APPLIED;
    use serde_json::json;

    fn running_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {
                    ANNOTATION_LAST_APPLIED: "{\"a\":1}",
                    "controller.kubernetes.io/pod-deletion-cost": "5",
                    "minik.io/host-ports": "{\"80\":31000}",
                    "example.com/notes": "x".repeat(1000)
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                     "uid": "rs1", "controller": true}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "app", "image": "nginx", "command": ["nginx"],
                    "env": [{"name": "A", "value": "b"}],
                    "ports": [{"containerPort": 80, "hostPort": 8080, "name": "http"}],
                    "resources": {"requests": {"cpu": "100m"}},
                    "readinessProbe": {"httpGet": {"port": 80}}
                }],
                "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
                    {"name": "cfg", "configMap": {"name": "cfg"}}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.5", "hostIP": "127.0.0.1",
                "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 2, "image": "nginx",
                    "imageID": "sha256:abc", "containerID": "oci://x",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 3}}
                }]
            }
        })
    }

    #[test]
    fn a_view_keeps_what_consumers_read_and_drops_the_rest() {
        let view: PodView = serde_json::from_value(running_pod()).unwrap();
        let meta = &view.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-1"));
        assert_eq!(meta.managed_fields, None);
        let annotations = meta.annotations.as_ref().unwrap();
        assert!(!annotations.contains_key(ANNOTATION_LAST_APPLIED));
        assert_eq!(
            annotations["controller.kubernetes.io/pod-deletion-cost"],
            "5"
        );
        let spec = view.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        let ports = spec.containers[0].ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].container_port, ports[0].host_port),
            (80, Some(8080))
        );
        assert_eq!(
            spec.init_containers.as_ref().unwrap()[0]
                .restart_policy
                .as_deref(),
            Some("Always")
        );
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-web-1")
        );
        assert!(volumes[1].persistent_volume_claim.is_none());
        let status = view.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.0.0.5");
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!((container.ready, container.restart_count), (true, 2));
        let last = container.last_state.as_ref().unwrap();
        assert_eq!(last.terminated.as_ref().unwrap().exit_code, 3);
        // What is dropped is not serialized back either.
        let back = serde_json::to_value(&view).unwrap();
        assert!(back["spec"]["containers"][0].get("image").is_none());
        assert!(back["status"]["containerStatuses"][0]
            .get("imageID")
            .is_none());
    }

    #[test]
    fn the_view_of_a_typed_pod_is_the_view_of_its_json() {
        let pod: Pod = serde_json::from_value(running_pod()).unwrap();
        let decoded: PodView = serde_json::from_value(running_pod()).unwrap();
        assert_eq!(PodView::from(&pod), decoded);
        assert_eq!(PodView::from(&Pod::default()), PodView::default());
    }

    /// Every field of the view set: a field whose JSON name differed from the pod's would be
    /// lost on the way through a `Pod`.
    #[test]
    fn every_field_of_the_view_has_the_pods_name() {
        let full = json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "activeDeadlineSeconds": 5,
                "affinity": {"nodeAffinity": {}},
                "containers": [{"name": "c", "ports": [{"containerPort": 1}],
                                "resources": {"requests": {"cpu": "1"}}, "restartPolicy": "Always"}],
                "hostNetwork": true, "hostname": "h",
                "initContainers": [{"name": "i"}],
                "nodeName": "n", "nodeSelector": {"k": "v"}, "overhead": {"cpu": "1"},
                "priority": 3, "restartPolicy": "Never", "schedulerName": "s", "subdomain": "d",
                "tolerations": [{"key": "k"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "t",
                                               "whenUnsatisfiable": "DoNotSchedule"}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}},
                            {"name": "e", "ephemeral": {}}]
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 1,
                                       "started": true, "state": {"running": {}},
                                       "lastState": {"terminated": {"exitCode": 1}}}],
                "hostIP": "1.1.1.1",
                "initContainerStatuses": [{"name": "i", "ready": false, "restartCount": 0}],
                "nominatedNodeName": "m", "phase": "Running", "podIP": "2.2.2.2",
                "podIPs": [{"ip": "2.2.2.2"}], "reason": "r",
                "startTime": "2026-01-01T00:00:00Z"
            }
        });
        let view: PodView = serde_json::from_value(full.clone()).unwrap();
        assert_eq!(serde_json::to_value(&view).unwrap(), full);
        let pod: Pod = serde_json::from_value(full).unwrap();
        assert_eq!(PodView::from(&pod), view);
    }

    #[test]
    #[should_panic(expected = "does not keep the annotation")]
    #[cfg(debug_assertions)]
    fn reading_an_annotation_a_view_does_not_keep_is_a_bug() {
        PodView::default().annotation(ANNOTATION_LAST_APPLIED);
    }
}
