//! The decisions of the persistent volume controller, as pure functions of a claim or a volume,
//! the cached objects around it and what the node says: binding claims to volumes (Kubernetes'
//! `pkg/controller/volume/persistentvolume`), and minik's local-path provisioner (k3s's
//! `rancher.io/local-path`: a directory on the node the claim's first pod was scheduled to).

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::quantity::Quantity;
use serde_json::{json, Value};

/// The provisioner name of minik's local-path volumes (k3s's, so that manifests written for
/// k3s work unchanged).
pub(crate) const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// The StorageClass minik makes at start, the default one, as k3s does.
pub(crate) const LOCAL_PATH_CLASS: &str = "local-path";
/// The annotation the scheduler puts on a WaitForFirstConsumer claim: its pod's node.
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Which provisioner made a volume.
pub(crate) const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Marks a claim bound by this controller (Kubernetes' `pv.kubernetes.io/bind-completed`).
pub(crate) const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// A StorageClass marked as the default one.
pub(crate) const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Where a node keeps local-path volumes (its agent sets it on its Node).
pub(crate) const LOCAL_PATH_ROOT: &str = "minik.io/local-path-root";
/// The label of a local-path volume: the node its directory is on (its agent follows these).
pub(crate) const LOCAL_PATH_NODE: &str = "minik.io/local-path-node";
/// Held on a local-path volume until its node's agent has removed its directory.
pub(crate) const LOCAL_PATH_FINALIZER: &str = "minik.io/local-path";

/// A write the controller makes, or an event.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Write {
    /// A merge patch of a claim (`status`: of its status subresource).
    Claim {
        namespace: String,
        name: String,
        body: Value,
        status: bool,
    },
    /// A merge patch of a volume.
    Volume {
        name: String,
        body: Value,
        status: bool,
    },
    CreateVolume(Value),
    /// Delete a volume, if it still has this uid.
    DeleteVolume {
        name: String,
        uid: String,
    },
    /// An event about a claim (`Some(namespace)`) or a volume.
    Event {
        namespace: Option<String>,
        name: String,
        uid: String,
        kind: &'static str,
        type_: &'static str,
        reason: &'static str,
        message: String,
    },
}

/// What a claim's decision can see.
pub(crate) struct World<'a> {
    pub volumes: &'a [std::sync::Arc<PersistentVolume>],
    pub classes: &'a [std::sync::Arc<StorageClass>],
    pub nodes: &'a BTreeMap<String, std::sync::Arc<Node>>,
}

fn name_of(meta: &minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn annotation<'a>(
    meta: &'a minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The default StorageClass: the one annotated default (the newest when several are, as
/// Kubernetes picks).
pub(crate) fn default_class(classes: &[std::sync::Arc<StorageClass>]) -> Option<&StorageClass> {
    classes
        .iter()
        .filter(|c| annotation(&c.metadata, DEFAULT_CLASS) == Some("true"))
        .max_by_key(|c| {
            (
                c.metadata.creation_timestamp.as_ref().map(|t| t.0),
                name_of(&c.metadata),
            )
        })
        .map(|c| c.as_ref())
}

fn event(
    claim: &PersistentVolumeClaim,
    type_: &'static str,
    reason: &'static str,
    message: String,
) -> Write {
    Write::Event {
        namespace: claim.metadata.namespace.clone(),
        name: name_of(&claim.metadata),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
        kind: "PersistentVolumeClaim",
        type_,
        reason,
        message,
    }
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn phase_of_volume(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// What the claim requests, in bytes.
fn requested(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    let q = claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    Quantity::try_from(q).ok()
}

fn capacity(pv: &PersistentVolume) -> Option<Quantity> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    Quantity::try_from(q).ok()
}

/// Whether the volume's claim reference names this claim (by uid when the reference has one).
fn refers_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.namespace == claim.metadata.namespace
                && r.name == claim.metadata.name
                && (r.uid.is_none() || r.uid == claim.metadata.uid)
        })
}

/// Whether a free (or pre-bound to this claim) volume can serve the claim: same class, the
/// access modes it asks, enough capacity, the same volume mode, the claim's selector, and —
/// for a claim waiting for its first consumer — the node its pod was put on.
fn fits(pv: &PersistentVolume, claim: &PersistentVolumeClaim, selected_node: Option<&str>) -> bool {
    let (Some(pv_spec), Some(spec)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let free = pv_spec.claim_ref.is_none() || refers_to(pv, claim);
    if !free || !matches!(phase_of_volume(pv), "Available" | "Pending") {
        return false;
    }
    let class = |c: &Option<String>| c.clone().unwrap_or_default();
    if class(&pv_spec.storage_class_name) != class(&spec.storage_class_name) {
        return false;
    }
    let modes = pv_spec.access_modes.clone().unwrap_or_default();
    if !spec
        .access_modes
        .iter()
        .flatten()
        .all(|m| modes.contains(m))
    {
        return false;
    }
    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
    if mode(&pv_spec.volume_mode) != mode(&spec.volume_mode) {
        return false;
    }
    match (capacity(pv), requested(claim)) {
        (Some(have), Some(want)) if have.as_nanos() >= want.as_nanos() => {}
        _ => return false,
    }
    if let Some(selector) = &spec.selector {
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        match minik_api::selector::Selector::from_label_selector(selector) {
            Ok(s) if s.matches(&labels) => {}
            _ => return false,
        }
    }
    if let (Some(node), Some(affinity)) = (selected_node, pv_spec.node_affinity.as_ref()) {
        if !affinity_allows(affinity, node) {
            return false;
        }
    }
    true
}

/// Whether a volume's node affinity admits node `node` by its `kubernetes.io/hostname` (the
/// only label the local-path provisioner uses; other terms are taken as satisfied — the
/// scheduler checks them against the real node).
fn affinity_allows(
    affinity: &minik_api::k8s_openapi::api::core::v1::VolumeNodeAffinity,
    node: &str,
) -> bool {
    let Some(required) = &affinity.required else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        term.match_expressions.iter().flatten().all(|e| {
            e.key != "kubernetes.io/hostname"
                || match e.operator.as_str() {
                    "In" => e.values.iter().flatten().any(|v| v == node),
                    "NotIn" => !e.values.iter().flatten().any(|v| v == node),
                    _ => true,
                }
        })
    })
}

/// The writes that bind `claim` to `pv`: the volume's claim reference and phase first, then the
/// claim's volume name and status (Kubernetes' order, so that a crash in between leaves a
/// volume pre-bound to the claim, which the next pass completes).
fn bind(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Vec<Write> {
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let name = name_of(&claim.metadata);
    let pv_name = name_of(&pv.metadata);
    let mut writes = Vec::new();
    if !refers_to(pv, claim)
        || pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.is_none())
    {
        writes.push(Write::Volume {
            name: pv_name.clone(),
            body: json!({"spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": ns, "name": name,
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            }}}),
            status: false,
        });
    }
    if phase_of_volume(pv) != "Bound" {
        writes.push(Write::Volume {
            name: pv_name.clone(),
            body: json!({"status": {"phase": "Bound"}}),
            status: true,
        });
    }
    let spec_volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    if spec_volume.as_deref() != Some(pv_name.as_str()) {
        writes.push(Write::Claim {
            namespace: ns.clone(),
            name: name.clone(),
            body: json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}},
                "spec": {"volumeName": pv_name}}),
            status: false,
        });
    }
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let status = json!({"status": {
        "phase": "Bound",
        "accessModes": pv_spec.access_modes,
        "capacity": pv_spec.capacity,
    }});
    let current = json!({"status": {
        "phase": phase_of_claim(claim),
        "accessModes": claim.status.as_ref().and_then(|s| s.access_modes.clone()),
        "capacity": claim.status.as_ref().and_then(|s| s.capacity.clone()),
    }});
    if status != current {
        writes.push(Write::Claim {
            namespace: ns,
            name,
            body: status,
            status: true,
        });
    }
    writes
}

/// One pass over a claim: the default class for a claim that names none, binding to a volume
/// that fits (or that it is bound to), provisioning one with the local-path provisioner once
/// the claim's node is known, and the claim's phase (`Lost` when its volume is gone).
pub(crate) fn claim(claim: &PersistentVolumeClaim, world: &World<'_>) -> Vec<Write> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let name = name_of(&claim.metadata);
    let Some(spec) = claim.spec.as_ref() else {
        return Vec::new();
    };
    // Bound (or pre-bound by its author): complete the binding, or report the volume lost.
    if let Some(volume_name) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
        return match world
            .volumes
            .iter()
            .find(|pv| pv.metadata.name.as_deref() == Some(volume_name))
        {
            Some(pv)
                if pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_none()
                    || refers_to(pv, claim) =>
            {
                bind(claim, pv)
            }
            Some(_) => vec![event(
                claim,
                "Warning",
                "FailedBinding",
                format!("volume {volume_name:?} already bound to a different claim."),
            )],
            None if phase_of_claim(claim) == "Bound" => vec![
                Write::Claim {
                    namespace: ns,
                    name,
                    body: json!({"status": {"phase": "Lost"}}),
                    status: true,
                },
                event(
                    claim,
                    "Warning",
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                ),
            ],
            None => Vec::new(),
        };
    }
    // Kubernetes 1.28+: a claim without a class gets the default one, also after its creation.
    let Some(class_name) = spec.storage_class_name.clone() else {
        return match default_class(world.classes) {
            Some(class) => vec![Write::Claim {
                namespace: ns,
                name,
                body: json!({"spec": {"storageClassName": name_of(&class.metadata)}}),
                status: false,
            }],
            None => static_only(claim),
        };
    };
    let selected = annotation(&claim.metadata, SELECTED_NODE);
    if let Some(pv) = world.volumes.iter().find(|pv| fits(pv, claim, selected)) {
        return bind(claim, pv);
    }
    if class_name.is_empty() {
        return static_only(claim);
    }
    let Some(class) = world
        .classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()))
    else {
        return vec![event(
            claim,
            "Warning",
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        )];
    };
    let waits = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        return vec![event(
            claim,
            "Normal",
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        )];
    }
    match (waits, selected) {
        (false, _) => vec![event(
            claim,
            "Warning",
            "ProvisioningFailed",
            format!(
                "the local-path provisioner makes a volume on the node of the claim's first pod: storageclass {class_name:?} must have volumeBindingMode WaitForFirstConsumer"
            ),
        )],
        (true, None) => vec![event(
            claim,
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        )],
        (true, Some(node)) => provision(claim, class, node, world),
    }
}

/// A claim only static volumes can serve, none of which fits.
fn static_only(claim: &PersistentVolumeClaim) -> Vec<Write> {
    vec![event(
        claim,
        "Normal",
        "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set".into(),
    )]
}

/// The local-path volume for `claim` on `node`: `ROOT/pvc-UID_NS_NAME` on the node, where ROOT
/// is what the node's agent says ([`LOCAL_PATH_ROOT`]), with node affinity to the node.
fn provision(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    world: &World<'_>,
) -> Vec<Write> {
    let Some(root) = world
        .nodes
        .get(node)
        .and_then(|n| annotation(&n.metadata, LOCAL_PATH_ROOT))
    else {
        return vec![event(
            claim,
            "Warning",
            "ProvisioningFailed",
            format!(
                "node {node:?} does not say where its local volumes go (annotation {LOCAL_PATH_ROOT}): is it a minik node, and is it registered?"
            ),
        )];
    };
    let spec = claim.spec.clone().unwrap_or_default();
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let name = name_of(&claim.metadata);
    let pv_name = format!("pvc-{uid}");
    let path = format!("{}/{pv_name}_{ns}_{name}", root.trim_end_matches('/'));
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    let volume = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "labels": {LOCAL_PATH_NODE: node},
            "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER},
            "finalizers": [LOCAL_PATH_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": name_of(&class.metadata),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
            "claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": claim.metadata.resource_version,
            },
        },
    });
    vec![
        event(
            claim,
            "Normal",
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        ),
        Write::CreateVolume(volume),
    ]
}

/// One pass over a volume: `Available` once created without a claim, `Released` when its
/// claim is gone, then deleted when its reclaim policy says `Delete` (a local-path volume's
/// node removes the directory before the volume goes).
pub(crate) fn volume(
    pv: &PersistentVolume,
    claims: &BTreeMap<String, std::sync::Arc<PersistentVolumeClaim>>,
) -> Vec<Write> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let name = name_of(&pv.metadata);
    let spec = pv.spec.clone().unwrap_or_default();
    let phase = phase_of_volume(pv);
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return if phase == "Available" {
            Vec::new()
        } else {
            vec![Write::Volume {
                name,
                body: json!({"status": {"phase": "Available"}}),
                status: true,
            }]
        };
    };
    let key = format!(
        "{}/{}",
        claim_ref.namespace.as_deref().unwrap_or_default(),
        claim_ref.name.as_deref().unwrap_or_default()
    );
    let claim = claims.get(&key);
    let claim_gone = match (claim, claim_ref.uid.as_deref()) {
        (None, _) => true,
        (Some(c), Some(uid)) => c.metadata.uid.as_deref() != Some(uid),
        (Some(_), None) => false,
    };
    if !claim_gone {
        return Vec::new();
    }
    // A volume made for a claim the cache has not seen yet is not released: only one that was
    // bound (its phase says so) is.
    if phase != "Bound" && phase != "Released" {
        return Vec::new();
    }
    let mut writes = Vec::new();
    if phase != "Released" {
        writes.push(Write::Volume {
            name: name.clone(),
            body: json!({"status": {"phase": "Released"}}),
            status: true,
        });
    }
    if spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") {
        writes.push(Write::DeleteVolume {
            name,
            uid: pv.metadata.uid.clone().unwrap_or_default(),
        });
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn claim_of(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn pvc(extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "db", "uid": "c1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        merge(&mut v, extra);
        claim_of(v)
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn local_path() -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "local-path",
            "annotations": {DEFAULT_CLASS: "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"}))
            .unwrap(),
        )
    }

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {LOCAL_PATH_ROOT: format!("/var/lib/minik/{name}/storage")}}}))
            .unwrap(),
        )
    }

    fn reasons(writes: &[Write]) -> Vec<&'static str> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Event { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn claims_without_a_class_get_the_default_one() {
        let classes = [local_path()];
        let nodes = BTreeMap::new();
        let world = World {
            volumes: &[],
            classes: &classes,
            nodes: &nodes,
        };
        let writes = claim(&pvc(json!({})), &world);
        assert_eq!(
            writes,
            vec![Write::Claim {
                namespace: "db".into(),
                name: "data".into(),
                body: json!({"spec": {"storageClassName": "local-path"}}),
                status: false
            }]
        );
        // No default class: only static volumes could serve it.
        let world = World {
            volumes: &[],
            classes: &[],
            nodes: &nodes,
        };
        assert_eq!(reasons(&claim(&pvc(json!({})), &world)), ["FailedBinding"]);
    }

    #[test]
    fn local_path_claims_wait_for_their_node_then_get_a_volume_there() {
        let classes = [local_path()];
        let nodes = BTreeMap::from([("n2".to_owned(), node("n2"))]);
        let world = World {
            volumes: &[],
            classes: &classes,
            nodes: &nodes,
        };
        let waiting = pvc(json!({"spec": {"storageClassName": "local-path"}}));
        assert_eq!(reasons(&claim(&waiting, &world)), ["WaitForFirstConsumer"]);
        let selected = pvc(json!({"metadata": {"annotations": {SELECTED_NODE: "n2"}},
            "spec": {"storageClassName": "local-path"}}));
        let writes = claim(&selected, &world);
        assert_eq!(reasons(&writes), ["Provisioning"]);
        let Some(Write::CreateVolume(pv)) = writes.last() else {
            panic!("{writes:?}")
        };
        assert_eq!(pv["metadata"]["name"], "pvc-c1");
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/var/lib/minik/n2/storage/pvc-c1_db_data"
        );
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(pv["spec"]["claimRef"]["uid"], "c1");
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"],
            json!(["n2"])
        );
        assert_eq!(pv["metadata"]["labels"][LOCAL_PATH_NODE], "n2");
        // A node that does not say where volumes go.
        let world = World {
            volumes: &[],
            classes: &classes,
            nodes: &BTreeMap::new(),
        };
        assert_eq!(reasons(&claim(&selected, &world)), ["ProvisioningFailed"]);
    }

    #[test]
    fn a_provisioned_volume_is_bound_volume_first() {
        let classes = [local_path()];
        let nodes = BTreeMap::from([("n2".to_owned(), node("n2"))]);
        let selected = pvc(json!({"metadata": {"annotations": {SELECTED_NODE: "n2"}},
            "spec": {"storageClassName": "local-path"}}));
        let Some(Write::CreateVolume(pv)) = claim(
            &selected,
            &World {
                volumes: &[],
                classes: &classes,
                nodes: &nodes,
            },
        )
        .pop() else {
            panic!()
        };
        let pv: Arc<PersistentVolume> = Arc::new(serde_json::from_value(pv).unwrap());
        let volumes = [pv];
        let world = World {
            volumes: &volumes,
            classes: &classes,
            nodes: &nodes,
        };
        let writes = claim(&selected, &world);
        assert!(
            matches!(&writes[0], Write::Volume { status: true, body, .. } if body["status"]["phase"] == "Bound"),
            "{writes:?}"
        );
        assert!(
            matches!(&writes[1], Write::Claim { status: false, body, .. } if body["spec"]["volumeName"] == "pvc-c1")
        );
        assert!(matches!(&writes[2], Write::Claim { status: true, body, .. }
            if body["status"]["phase"] == "Bound" && body["status"]["capacity"]["storage"] == "1Gi"));
    }

    #[test]
    fn static_volumes_bind_when_they_fit() {
        let pv = |name: &str, size: &str, modes: Value, class: &str| -> Arc<PersistentVolume> {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                    "hostPath": {"path": "/srv"}},
                "status": {"phase": "Available"}})).unwrap())
        };
        let volumes = [
            pv("small", "500Mi", json!(["ReadWriteOnce"]), "manual"),
            pv("ro", "5Gi", json!(["ReadOnlyMany"]), "manual"),
            pv("other-class", "5Gi", json!(["ReadWriteOnce"]), "fast"),
            pv(
                "good",
                "2Gi",
                json!(["ReadWriteOnce", "ReadOnlyMany"]),
                "manual",
            ),
        ];
        let nodes = BTreeMap::new();
        let world = World {
            volumes: &volumes,
            classes: &[],
            nodes: &nodes,
        };
        let c = pvc(json!({"spec": {"storageClassName": "manual"}}));
        let writes = claim(&c, &world);
        assert!(
            matches!(&writes[0], Write::Volume { name, status: false, body }
            if name == "good" && body["spec"]["claimRef"]["uid"] == "c1"),
            "{writes:?}"
        );
        // A class nobody provisions and no volume: an external provisioner is waited for.
        let c = pvc(json!({"spec": {"storageClassName": "nosuch"}}));
        assert_eq!(reasons(&claim(&c, &world)), ["ProvisioningFailed"]);
    }

    #[test]
    fn bound_claims_whose_volume_went_are_lost() {
        let nodes = BTreeMap::new();
        let world = World {
            volumes: &[],
            classes: &[],
            nodes: &nodes,
        };
        let c = pvc(json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Bound"}}));
        let writes = claim(&c, &world);
        assert_eq!(reasons(&writes), ["ClaimLost"]);
    }

    #[test]
    fn released_volumes_follow_their_reclaim_policy() {
        let pv = |policy: &str, phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "pv1", "uid": "v1"},
                "spec": {"persistentVolumeReclaimPolicy": policy,
                    "claimRef": {"namespace": "db", "name": "data", "uid": "c1"}},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let none = BTreeMap::new();
        assert_eq!(
            volume(&pv("Delete", "Bound"), &none),
            vec![
                Write::Volume {
                    name: "pv1".into(),
                    body: json!({"status": {"phase": "Released"}}),
                    status: true
                },
                Write::DeleteVolume {
                    name: "pv1".into(),
                    uid: "v1".into()
                },
            ]
        );
        assert_eq!(
            volume(&pv("Retain", "Bound"), &none),
            vec![Write::Volume {
                name: "pv1".into(),
                body: json!({"status": {"phase": "Released"}}),
                status: true
            }]
        );
        assert_eq!(volume(&pv("Retain", "Released"), &none), vec![]);
        // Its claim is there: nothing to do. A claim of the same name but another uid: gone.
        let claims = BTreeMap::from([("db/data".to_owned(), Arc::new(pvc(json!({}))))]);
        assert_eq!(volume(&pv("Delete", "Bound"), &claims), vec![]);
        let other = BTreeMap::from([(
            "db/data".to_owned(),
            Arc::new(pvc(json!({"metadata": {"uid": "c2"}}))),
        )]);
        assert_eq!(volume(&pv("Delete", "Bound"), &other).len(), 2);
        // Not yet bound (made for a claim the cache has not seen): left alone.
        assert_eq!(volume(&pv("Delete", "Pending"), &none), vec![]);
        // A volume without a claim is Available.
        let free: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv2"}, "spec": {}})).unwrap();
        assert_eq!(
            volume(&free, &none),
            vec![Write::Volume {
                name: "pv2".into(),
                body: json!({"status": {"phase": "Available"}}),
                status: true
            }]
        );
    }
}
