//! Pods with PersistentVolumeClaims, after kube-scheduler's VolumeBinding and
//! VolumeRestrictions plugins: what the scheduler keeps of claims, volumes and classes (a
//! projection of each), the pod-level checks (a claim that is missing, being deleted, lost, or
//! unbound under `Immediate` binding makes the pod fit nowhere), what the pod's claims ask of
//! each node (a bound volume's node affinity, the node a `WaitForFirstConsumer` claim was given,
//! a `ReadWriteOncePod` claim another pod uses), and which claims get the node the pod goes to
//! (`volume.kubernetes.io/selected-node`) before it is bound, so that the local-path
//! provisioner makes their volumes there.
//!
//! A claim counts as bound when it names a volume (`spec.volumeName`); the scheduler does not
//! match unbound claims with existing volumes itself: the persistent volume controller binds
//! those that fit, and the claims of a `WaitForFirstConsumer` class wait for their node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use minik_api::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::validation::BETA_STORAGE_CLASS_ANNOTATION;
use minik_client::cache_key;

use crate::pod::{PodRequirements, Term};

/// The annotation that names the node of a `WaitForFirstConsumer` claim's first pod; the
/// provisioner makes the claim's volume there.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The provisioner of classes whose volumes an administrator makes by hand (no dynamic
/// provisioning).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The access mode that lets one pod only use a claim.
const READ_WRITE_ONCE_POD: &str = "ReadWriteOncePod";

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn parse_rv(rv: Option<&str>) -> u64 {
    rv.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// What the decision reads from a PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimFacts {
    pub namespace: String,
    pub name: String,
    /// `status.phase` (`Pending`, `Bound`, `Lost`; empty when unset).
    pub phase: String,
    /// `spec.volumeName`, when set.
    pub volume_name: Option<String>,
    /// The class: the beta annotation when present, else `spec.storageClassName` (empty: no
    /// class), as Kubernetes' `GetPersistentVolumeClaimClass`.
    pub storage_class: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The `volume.kubernetes.io/selected-node` annotation.
    pub selected_node: Option<String>,
    /// `spec.accessModes` has `ReadWriteOncePod`.
    pub read_write_once_pod: bool,
}

impl ClaimFacts {
    pub fn of(claim: &PersistentVolumeClaim) -> ClaimFacts {
        let meta = &claim.metadata;
        let spec = claim.spec.as_ref();
        let storage_class = match annotation(meta, BETA_STORAGE_CLASS_ANNOTATION) {
            Some(class) => class.to_owned(),
            None => spec
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default(),
        };
        ClaimFacts {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            phase: claim
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            volume_name: spec
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty()),
            storage_class,
            deleting: meta.deletion_timestamp.is_some(),
            selected_node: annotation(meta, SELECTED_NODE_ANNOTATION).map(str::to_owned),
            read_write_once_pod: spec
                .and_then(|s| s.access_modes.as_ref())
                .is_some_and(|modes| modes.iter().any(|m| m == READ_WRITE_ONCE_POD)),
        }
    }

    /// The cache key, `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the decision reads from a PersistentVolume.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeFacts {
    pub name: String,
    /// The terms of `spec.nodeAffinity.required` (one must match the node's labels); `None`
    /// when the volume may be used on every node.
    pub node_affinity: Option<Vec<Term>>,
    /// `spec.claimRef` as `namespace/name`.
    pub claim_ref: Option<String>,
}

impl VolumeFacts {
    pub fn of(pv: &PersistentVolume) -> VolumeFacts {
        let spec = pv.spec.as_ref();
        VolumeFacts {
            name: pv.metadata.name.clone().unwrap_or_default(),
            node_affinity: spec
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
                .map(|required| required.node_selector_terms.iter().map(Term::new).collect()),
            claim_ref: spec.and_then(|s| s.claim_ref.as_ref()).map(|r| {
                format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                )
            }),
        }
    }

    /// Whether the volume may be used on a node with these labels. Like Kubernetes'
    /// `CheckNodeAffinity`, only the labels count (a `matchFields` term sees no name).
    pub fn allows(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.node_affinity {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches("", labels)),
        }
    }
}

/// What the decision reads from a StorageClass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassFacts {
    pub name: String,
    /// `volumeBindingMode: WaitForFirstConsumer` (otherwise `Immediate`, its default).
    pub wait_for_first_consumer: bool,
    pub provisioner: String,
}

impl ClassFacts {
    pub fn of(class: &StorageClass) -> ClassFacts {
        ClassFacts {
            name: class.metadata.name.clone().unwrap_or_default(),
            wait_for_first_consumer: class.volume_binding_mode.as_deref()
                == Some("WaitForFirstConsumer"),
            provisioner: class.provisioner.clone(),
        }
    }
}

/// One claim as the scheduler knows it.
#[derive(Clone, Debug)]
struct Claim {
    facts: ClaimFacts,
    /// `metadata.resourceVersion`, for the precondition of the annotation's patch.
    resource_version: Option<String>,
    /// A node this scheduler has chosen for the claim and is writing (or has written) into its
    /// annotation, with the resourceVersion of the claim it was chosen over: it stands until
    /// a newer view of the claim shows what became of it (Kubernetes' assume cache).
    assumed: Option<(String, u64)>,
}

impl Claim {
    fn new(claim: &PersistentVolumeClaim) -> Claim {
        Claim {
            facts: ClaimFacts::of(claim),
            resource_version: claim.metadata.resource_version.clone(),
            assumed: None,
        }
    }

    /// The selected node: the annotation, or the node this scheduler is writing into it.
    fn selected_node(&self) -> Option<&str> {
        self.facts
            .selected_node
            .as_deref()
            .or(self.assumed.as_ref().map(|(node, _)| node.as_str()))
    }

    /// The facts with the selected node the decisions see.
    fn effective(&self) -> ClaimFacts {
        ClaimFacts {
            selected_node: self.selected_node().map(str::to_owned),
            ..self.facts.clone()
        }
    }

    /// Takes in a newer view of the claim; an assumption stands only while the view is not
    /// newer than the claim it was made over.
    fn update(&mut self, newer: Claim) {
        let rv = parse_rv(newer.resource_version.as_deref());
        let assumed = self.assumed.take().filter(|(_, base)| rv <= *base);
        *self = Claim { assumed, ..newer };
    }
}

/// The claims, volumes and classes the scheduler knows.
#[derive(Clone, Debug, Default)]
pub struct Volumes {
    claims: HashMap<String, Claim>,
    volumes: HashMap<String, VolumeFacts>,
    classes: HashMap<String, ClassFacts>,
}

impl Volumes {
    pub fn new() -> Volumes {
        Volumes::default()
    }

    /// Adds or updates a claim. Returns whether anything a decision reads changed.
    pub fn set_claim(&mut self, claim: &PersistentVolumeClaim) -> bool {
        let new = Claim::new(claim);
        let key = new.facts.key();
        match self.claims.get_mut(&key) {
            Some(old) => {
                let before = old.effective();
                old.update(new);
                before != old.effective()
            }
            None => {
                self.claims.insert(key, new);
                true
            }
        }
    }

    /// Forgets a claim (`namespace/name`).
    pub fn remove_claim(&mut self, key: &str) {
        self.claims.remove(key);
    }

    /// Adds or updates a volume. Returns whether anything a decision reads changed.
    pub fn set_volume(&mut self, pv: &PersistentVolume) -> bool {
        let facts = VolumeFacts::of(pv);
        if self.volumes.get(&facts.name) == Some(&facts) {
            return false;
        }
        self.volumes.insert(facts.name.clone(), facts);
        true
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }

    /// Adds or updates a class. Returns whether anything a decision reads changed.
    pub fn set_class(&mut self, class: &StorageClass) -> bool {
        let facts = ClassFacts::of(class);
        if self.classes.get(&facts.name) == Some(&facts) {
            return false;
        }
        self.classes.insert(facts.name.clone(), facts);
        true
    }

    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Takes in complete, fresh lists: whatever they lack is gone; the nodes being written
    /// into claims are kept while the lists do not show newer claims.
    pub fn resync(
        &mut self,
        claims: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
        classes: &[Arc<StorageClass>],
    ) {
        let keys: HashSet<String> = claims.iter().map(|c| cache_key(&c.metadata)).collect();
        self.claims.retain(|k, _| keys.contains(k));
        for claim in claims {
            self.set_claim(claim);
        }
        self.volumes.clear();
        for pv in volumes {
            self.set_volume(pv);
        }
        self.classes.clear();
        for class in classes {
            self.set_class(class);
        }
    }

    /// A claim by `namespace/name`.
    pub fn claim(&self, key: &str) -> Option<&ClaimFacts> {
        self.claims.get(key).map(|c| &c.facts)
    }

    /// The node a claim is bound for: its annotation, or the one this scheduler is writing.
    pub fn selected_node(&self, key: &str) -> Option<&str> {
        self.claims.get(key).and_then(Claim::selected_node)
    }

    pub fn volume(&self, name: &str) -> Option<&VolumeFacts> {
        self.volumes.get(name)
    }

    pub fn class(&self, name: &str) -> Option<&ClassFacts> {
        self.classes.get(name)
    }

    /// Records that `node` is being written into the claim's annotation, so that the next
    /// decisions send the claim's other pods there too.
    pub fn assume_selected(&mut self, key: &str, node: &str) {
        if let Some(claim) = self.claims.get_mut(key) {
            let base = parse_rv(claim.resource_version.as_deref());
            claim.assumed = Some((node.to_owned(), base));
        }
    }

    /// Drops what [`Volumes::assume_selected`] recorded (the write failed).
    pub fn forget_selected(&mut self, key: &str, node: &str) {
        if let Some(claim) = self.claims.get_mut(key) {
            if claim.assumed.as_ref().is_some_and(|(n, _)| n == node) {
                claim.assumed = None;
            }
        }
    }

    fn resource_version(&self, key: &str) -> Option<String> {
        self.claims
            .get(key)
            .and_then(|c| c.resource_version.clone())
    }
}

/// A claim that gets the annotation of the pod's node before the pod is bound (Kubernetes'
/// VolumeBinding PreBind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToSelect {
    pub namespace: String,
    pub name: String,
    /// The resourceVersion the decision saw: the patch applies only to that claim.
    pub resource_version: Option<String>,
}

impl ClaimToSelect {
    /// The cache key, `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What a pod's claims ask of every node, found once per decision.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes<'a> {
    /// The volumes of the bound claims: each one's node affinity must admit the node.
    pub bound: Vec<&'a VolumeFacts>,
    /// The nodes already chosen for unbound `WaitForFirstConsumer` claims: only they fit.
    pub selected_nodes: Vec<&'a str>,
    /// An unbound `WaitForFirstConsumer` claim of a class without a provisioner: no volume
    /// can be made for it on any node.
    pub unprovisionable: bool,
    /// A `ReadWriteOncePod` claim is in use by another pod.
    pub read_write_once_pod_in_use: bool,
    /// The unbound `WaitForFirstConsumer` claims without a node yet: they get the pod's.
    pub to_select: Vec<ClaimToSelect>,
}

impl PodVolumes<'_> {
    /// Whether nothing here restricts the nodes.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
            && self.selected_nodes.is_empty()
            && !self.unprovisionable
            && !self.read_write_once_pod_in_use
    }
}

/// The pod-level checks (Kubernetes' VolumeRestrictions and VolumeBinding PreFilter): `Err`
/// with Kubernetes' message when the pod's claims let it on no node at all. `users` tells how
/// many placed pods use a claim (by `namespace/name`).
pub fn pre_filter<'a>(
    volumes: &'a Volumes,
    users: impl Fn(&str) -> u32,
    pod: &PodRequirements,
) -> Result<PodVolumes<'a>, String> {
    let mut out = PodVolumes::default();
    if pod.claims.is_empty() {
        return Ok(out);
    }
    let mut found = Vec::with_capacity(pod.claims.len());
    for name in &pod.claims {
        let key = format!("{}/{name}", pod.namespace);
        let Some(claim) = volumes.claim(&key) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.phase == "Lost" {
            return Err(format!(
                "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{}\"",
                claim.volume_name.as_deref().unwrap_or_default()
            ));
        }
        if claim.deleting {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        found.push((key, claim));
    }
    let mut unbound_immediate = false;
    let mut missing_volume = None;
    for (key, claim) in &found {
        if let Some(pv_name) = &claim.volume_name {
            match volumes.volume(pv_name) {
                Some(pv) => out.bound.push(pv),
                None => {
                    missing_volume.get_or_insert_with(|| {
                        format!(
                            "pvc {}/{} bound to non-existent pv {pv_name}",
                            claim.namespace, claim.name
                        )
                    });
                }
            }
            continue;
        }
        let class = Some(claim.storage_class.as_str())
            .filter(|c| !c.is_empty())
            .and_then(|c| volumes.class(c))
            .filter(|c| c.wait_for_first_consumer);
        let Some(class) = class else {
            // No class, an unknown one, or Immediate binding: it should be bound already.
            unbound_immediate = true;
            continue;
        };
        match volumes.selected_node(key) {
            Some(node) => out.selected_nodes.push(node),
            None if class.provisioner == NO_PROVISIONER => out.unprovisionable = true,
            None => out.to_select.push(ClaimToSelect {
                namespace: claim.namespace.clone(),
                name: claim.name.clone(),
                resource_version: volumes.resource_version(key),
            }),
        }
    }
    if unbound_immediate {
        return Err("pod has unbound immediate PersistentVolumeClaims".to_owned());
    }
    if let Some(message) = missing_volume {
        return Err(message);
    }
    out.read_write_once_pod_in_use = found
        .iter()
        .any(|(key, claim)| claim.read_write_once_pod && users(key) > 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::schedule;
    use crate::snapshot::{PlacedPod, Snapshot};
    use minik_api::k8s_openapi::api::core::v1::Node;
    use minik_api::podview::PodView;
    use serde_json::{json, Value};

    fn node(name: &str, extra: Value) -> Node {
        let base = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a node")
    }

    fn claim(name: &str, extra: Value) -> PersistentVolumeClaim {
        let base = json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "10"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}
        });
        serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a claim")
    }

    fn volume(name: &str, extra: Value) -> PersistentVolume {
        let base = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/tmp/x"}}
        });
        serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a volume")
    }

    fn on_node(node: &str) -> Value {
        json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
        ]}}}})
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "provisioner": provisioner,
            "volumeBindingMode": mode
        }))
        .expect("a class")
    }

    fn pod(claims: &[&str]) -> PodRequirements {
        let volumes: Vec<Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "main"}], "volumes": volumes}
        }))
        .expect("a pod");
        PodRequirements::of(&pod)
    }

    /// Three nodes, the `local-path` (WaitForFirstConsumer), `fast` (Immediate) and `manual`
    /// (no provisioner, WaitForFirstConsumer) classes, and these claims and volumes.
    fn cluster(claims: &[PersistentVolumeClaim], volumes: &[PersistentVolume]) -> Snapshot {
        let mut s = Snapshot::new();
        for n in ["n1", "n2", "n3"] {
            s.set_node(&node(n, json!({})));
        }
        let v = s.volumes_mut();
        v.set_class(&class(
            "local-path",
            "WaitForFirstConsumer",
            "rancher.io/local-path",
        ));
        v.set_class(&class("fast", "Immediate", "example.com/fast"));
        v.set_class(&class("manual", "WaitForFirstConsumer", NO_PROVISIONER));
        for c in claims {
            v.set_claim(c);
        }
        for pv in volumes {
            v.set_volume(pv);
        }
        s
    }

    fn message(s: &Snapshot, pod: &PodRequirements) -> String {
        schedule(s, pod, 0).expect_err("no fit").to_string()
    }

    #[test]
    fn claims_that_let_the_pod_on_no_node() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let cases: Vec<(&str, Vec<PersistentVolumeClaim>, Vec<PersistentVolume>, &str)> = vec![
            (
                "a missing claim",
                vec![],
                vec![],
                "0/3 nodes are available: persistentvolumeclaim \"data\" not found.",
            ),
            (
                "a claim in another namespace is not the pod's",
                vec![claim("data", json!({"metadata": {"namespace": "other"}}))],
                vec![],
                "0/3 nodes are available: persistentvolumeclaim \"data\" not found.",
            ),
            (
                "a claim being deleted",
                vec![claim("data", deleting)],
                vec![],
                "0/3 nodes are available: persistentvolumeclaim \"data\" is being deleted.",
            ),
            (
                "a lost claim",
                vec![claim(
                    "data",
                    json!({"spec": {"volumeName": "pv-1"}, "status": {"phase": "Lost"}}),
                )],
                vec![],
                "0/3 nodes are available: persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"pv-1\".",
            ),
            (
                "an unbound claim of an Immediate class",
                vec![claim("data", json!({"spec": {"storageClassName": "fast"}}))],
                vec![],
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            ),
            (
                "an unbound claim without a class",
                vec![claim("data", json!({"spec": {"storageClassName": null}}))],
                vec![],
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            ),
            (
                "an unbound claim of an unknown class",
                vec![claim("data", json!({"spec": {"storageClassName": "gold"}}))],
                vec![],
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            ),
            (
                "the beta annotation names the class before the spec",
                vec![claim(
                    "data",
                    json!({"metadata": {"annotations": {BETA_STORAGE_CLASS_ANNOTATION: "fast"}}}),
                )],
                vec![],
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            ),
            (
                "a claim bound to a volume that does not exist",
                vec![claim(
                    "data",
                    json!({"spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
                )],
                vec![],
                "0/3 nodes are available: pvc default/data bound to non-existent pv pv-1.",
            ),
        ];
        for (name, claims, volumes, want) in cases {
            let s = cluster(&claims, &volumes);
            assert_eq!(message(&s, &pod(&["data"])), want, "{name}");
        }
    }

    #[test]
    fn the_first_claim_in_volume_order_that_fails_is_reported() {
        let s = cluster(
            &[claim(
                "b",
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            )],
            &[],
        );
        assert_eq!(
            message(&s, &pod(&["b", "a"])),
            "0/3 nodes are available: persistentvolumeclaim \"b\" is being deleted."
        );
        assert_eq!(
            message(&s, &pod(&["a", "b"])),
            "0/3 nodes are available: persistentvolumeclaim \"a\" not found."
        );
    }

    #[test]
    fn no_nodes_at_all_comes_first() {
        let s = Snapshot::new();
        assert_eq!(
            message(&s, &pod(&["data"])),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn a_waiting_claim_fits_every_node_and_is_selected_for_the_chosen_one() {
        let s = cluster(&[claim("data", json!({}))], &[]);
        let placement = schedule(&s, &pod(&["data"]), 0).expect("fits");
        assert_eq!(placement.feasible, 3);
        assert_eq!(
            placement.claims_to_select,
            vec![ClaimToSelect {
                namespace: "default".into(),
                name: "data".into(),
                resource_version: Some("10".into()),
            }]
        );
    }

    #[test]
    fn a_selected_node_is_the_only_one_that_fits() {
        let selected = |node: &str| {
            claim(
                "data",
                json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}}),
            )
        };
        let s = cluster(&[selected("n2")], &[]);
        let placement = schedule(&s, &pod(&["data"]), 0).expect("fits n2");
        assert_eq!(placement.node, "n2");
        assert_eq!(placement.feasible, 1);
        assert!(placement.claims_to_select.is_empty(), "nothing to write");
        // The selected node is cordoned: the pod waits for it.
        let mut s = cluster(&[selected("n2")], &[]);
        s.set_node(&node("n2", json!({"spec": {"unschedulable": true}})));
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match the selected node of a PersistentVolumeClaim."
        );
        // A node that does not exist.
        let s = cluster(&[selected("gone")], &[]);
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 3 node(s) didn't match the selected node of a PersistentVolumeClaim."
        );
    }

    #[test]
    fn a_bound_volume_keeps_the_pod_on_its_nodes() {
        let bound = claim(
            "data",
            json!({"spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
        );
        let s = cluster(
            std::slice::from_ref(&bound),
            &[volume("pv-1", on_node("n2"))],
        );
        for turn in 0..3 {
            let placement = schedule(&s, &pod(&["data"]), turn).expect("fits n2");
            assert_eq!(placement.node, "n2");
            assert!(placement.claims_to_select.is_empty());
        }
        let mut s = cluster(
            std::slice::from_ref(&bound),
            &[volume("pv-1", on_node("n2"))],
        );
        s.set_node(&node(
            "n2",
            json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
        ));
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 node(s) had volume node affinity conflict."
        );
        // A volume without node affinity goes anywhere; matchFields see no node name, as in
        // Kubernetes' CheckNodeAffinity.
        let s = cluster(std::slice::from_ref(&bound), &[volume("pv-1", json!({}))]);
        assert_eq!(schedule(&s, &pod(&["data"]), 0).map(|p| p.feasible), Ok(3));
        let by_name = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]}}}});
        let s = cluster(&[bound], &[volume("pv-1", by_name)]);
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 3 node(s) had volume node affinity conflict."
        );
    }

    #[test]
    fn bound_and_waiting_claims_both_count_per_node() {
        let s = cluster(
            &[
                claim(
                    "a",
                    json!({"spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
                ),
                claim(
                    "b",
                    json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n3"}}}),
                ),
            ],
            &[volume("pv-1", on_node("n1"))],
        );
        assert_eq!(
            message(&s, &pod(&["a", "b"])),
            // n1: the claim's node is n3; n2: both; n3: the volume is on n1.
            "0/3 nodes are available: 2 node(s) didn't match the selected node of a PersistentVolumeClaim, 2 node(s) had volume node affinity conflict."
        );
    }

    #[test]
    fn a_class_without_a_provisioner_makes_no_volume() {
        let s = cluster(
            &[claim(
                "data",
                json!({"spec": {"storageClassName": "manual"}}),
            )],
            &[],
        );
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind."
        );
    }

    #[test]
    fn a_read_write_once_pod_claim_takes_one_pod() {
        let rwop = claim(
            "data",
            json!({"spec": {"accessModes": ["ReadWriteOncePod"], "volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
        );
        let mut s = cluster(&[rwop], &[volume("pv-1", json!({}))]);
        let first = pod(&["data"]);
        let placed = PlacedPod::new("n1", &first);
        assert_eq!(placed.claims, ["default/data"]);
        s.add_pod(&placed);
        assert_eq!(s.claim_users("default/data"), 1);
        assert_eq!(
            message(&s, &pod(&["data"])),
            "0/3 nodes are available: 3 node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod."
        );
        s.remove_pod(&placed);
        assert_eq!(s.claim_users("default/data"), 0);
        assert!(schedule(&s, &pod(&["data"]), 0).is_ok());
        // ReadWriteOnce claims are shared freely.
        let mut s = cluster(
            &[claim("data", json!({"spec": {"volumeName": "pv-1"}}))],
            &[volume("pv-1", json!({}))],
        );
        s.add_pod(&placed);
        assert!(schedule(&s, &pod(&["data"]), 0).is_ok());
    }

    #[test]
    fn pods_without_claims_are_not_affected() {
        let s = cluster(&[], &[]);
        let placement = schedule(&s, &pod(&[]), 0).expect("fits");
        assert_eq!(placement.feasible, 3);
        assert!(placement.claims_to_select.is_empty());
    }

    #[test]
    fn an_assumed_node_stands_until_a_newer_claim_shows_up() {
        let mut v = Volumes::new();
        assert!(v.set_claim(&claim("data", json!({}))));
        assert!(!v.set_claim(&claim("data", json!({}))), "no change");
        v.assume_selected("default/data", "n2");
        assert_eq!(v.selected_node("default/data"), Some("n2"));
        // The same view again (a resync) keeps it.
        assert!(!v.set_claim(&claim("data", json!({}))));
        assert_eq!(v.selected_node("default/data"), Some("n2"));
        // The written annotation arrives: the same node, no change for the decisions.
        let written = claim(
            "data",
            json!({"metadata": {"resourceVersion": "11", "annotations": {SELECTED_NODE_ANNOTATION: "n2"}}}),
        );
        assert!(!v.set_claim(&written));
        assert_eq!(v.selected_node("default/data"), Some("n2"));
        // The provisioner took it away again (it could not make the volume there).
        let reset = claim("data", json!({"metadata": {"resourceVersion": "12"}}));
        assert!(v.set_claim(&reset));
        assert_eq!(v.selected_node("default/data"), None);
        // A failed write is forgotten; another node's failure does not touch it.
        v.assume_selected("default/data", "n1");
        v.forget_selected("default/data", "n3");
        assert_eq!(v.selected_node("default/data"), Some("n1"));
        v.forget_selected("default/data", "n1");
        assert_eq!(v.selected_node("default/data"), None);
    }

    #[test]
    fn changes_are_reported_only_when_the_decision_reads_them() {
        let mut v = Volumes::new();
        assert!(v.set_volume(&volume("pv-1", json!({}))));
        assert!(!v.set_volume(&volume(
            "pv-1",
            json!({"spec": {"capacity": {"storage": "2Gi"}}})
        )));
        assert!(v.set_volume(&volume("pv-1", on_node("n1"))));
        assert!(v.set_volume(&volume(
            "pv-1",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}})
        )));
        assert_eq!(
            v.volume("pv-1").and_then(|pv| pv.claim_ref.as_deref()),
            Some("default/data")
        );
        let local = class(
            "local-path",
            "WaitForFirstConsumer",
            "rancher.io/local-path",
        );
        assert!(v.set_class(&local));
        assert!(!v.set_class(&local));
        assert!(v.set_claim(&claim("data", json!({}))));
        assert!(!v.set_claim(&claim(
            "data",
            json!({"metadata": {"resourceVersion": "11", "labels": {"a": "b"}}})
        )));
        assert!(v.set_claim(&claim(
            "data",
            json!({"metadata": {"resourceVersion": "12"}, "status": {"phase": "Bound"}})
        )));
        v.resync(&[], &[], &[Arc::new(local)]);
        assert!(v.claim("default/data").is_none());
        assert!(v.volume("pv-1").is_none());
        assert!(v.class("local-path").is_some());
    }
}
