//! The scheduler's view of the cluster: every node with what is already placed on it (requests,
//! host ports, pods per owner), kept up to date incrementally so that a decision never walks the
//! pods of the cluster.

use std::collections::{BTreeMap, HashMap};

use minik_api::k8s_openapi::api::core::v1::{Node, Taint};

use crate::pod::{HostPort, PodRequirements};
use crate::resources::{node_allocatable, Resources};
use crate::volumes::Volumes;

/// What the filters and scores read from a Node object.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub labels: BTreeMap<String, String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// How many pods the node takes, when it says.
    pub max_pods: Option<i64>,
}

impl NodeFacts {
    pub fn of(node: &Node) -> NodeFacts {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let (allocatable, max_pods) = node_allocatable(
            status.and_then(|s| s.allocatable.as_ref()),
            status.and_then(|s| s.capacity.as_ref()),
        );
        let spec = node.spec.as_ref();
        NodeFacts {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            ready,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            allocatable,
            max_pods,
        }
    }
}

/// What one placed pod takes from its node.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacedPod {
    pub node: String,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub owner: Option<String>,
    /// The claims it uses, as `namespace/name`.
    pub claims: Vec<String>,
}

impl PlacedPod {
    pub fn new(node: &str, pod: &PodRequirements) -> PlacedPod {
        PlacedPod {
            node: node.to_owned(),
            requests: pod.requests,
            non_zero_requests: pod.non_zero_requests,
            host_ports: pod.host_ports.clone(),
            owner: pod.owner.clone(),
            claims: pod.claim_keys(),
        }
    }
}

/// One node and what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods name a node whose Node object is unknown (not yet seen, or deleted):
    /// their usage is kept so that it is right when the node (re)appears, but the node is not
    /// a candidate.
    pub facts: Option<NodeFacts>,
    /// The sum of the requests of the pods placed here.
    pub requested: Resources,
    /// The same with scoring's defaults for pods without requests.
    pub non_zero_requested: Resources,
    pub pod_count: i64,
    /// Host ports held, with how many pods hold each (normally one).
    pub host_ports: Vec<(HostPort, u32)>,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            facts: None,
            requested: Resources::ZERO,
            non_zero_requested: Resources::ZERO,
            pod_count: 0,
            host_ports: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.facts.is_none() && self.pod_count == 0
    }
}

/// Every node the scheduler knows and what is placed on each.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Entries keep their index for as long as they exist (a dropped entry's slot is reused),
    /// so that the per-owner counts can refer to nodes by index.
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    free: Vec<usize>,
    /// Placed pods per controller uid, per node index. Kept per owner rather than per node so
    /// that a decision looks its owner up once, not once per node.
    owners: HashMap<String, HashMap<usize, u32>>,
    /// How many entries have a Node object (the "N" of "0/N nodes are available").
    present: usize,
    /// How many placed pods use each claim (`namespace/name`).
    claim_users: HashMap<String, u32>,
    /// The claims, volumes and classes.
    volumes: Volumes,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    fn entry(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = NodeInfo::new(name);
                i
            }
            None => {
                self.nodes.push(NodeInfo::new(name));
                self.nodes.len() - 1
            }
        };
        self.index.insert(name.to_owned(), i);
        i
    }

    /// Drops an entry that holds nothing any more; its slot is reused later.
    fn prune(&mut self, i: usize) {
        if !self.nodes[i].is_empty() {
            return;
        }
        let name = std::mem::take(&mut self.nodes[i].name);
        self.index.remove(&name);
        self.free.push(i);
    }

    /// Adds or updates a node. Returns whether anything the decision reads changed (labels,
    /// readiness, cordon, taints, allocatable): only then can a pod that did not fit fit now.
    pub fn set_node(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.as_deref() else {
            return false;
        };
        let facts = NodeFacts::of(node);
        let i = self.entry(name);
        let slot = &mut self.nodes[i];
        if slot.facts.as_ref() == Some(&facts) {
            return false;
        }
        if slot.facts.is_none() {
            self.present += 1;
        }
        slot.facts = Some(facts);
        true
    }

    /// Forgets a node; what is placed on it is kept in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].facts.take().is_some() {
            self.present -= 1;
        }
        self.prune(i);
    }

    /// Counts a pod on its node.
    pub fn add_pod(&mut self, pod: &PlacedPod) {
        let i = self.entry(&pod.node);
        let n = &mut self.nodes[i];
        n.requested = n.requested.plus(pod.requests);
        n.non_zero_requested = n.non_zero_requested.plus(pod.non_zero_requests);
        n.pod_count += 1;
        for port in &pod.host_ports {
            match n.host_ports.iter_mut().find(|(p, _)| p == port) {
                Some((_, count)) => *count += 1,
                None => n.host_ports.push((port.clone(), 1)),
            }
        }
        for claim in &pod.claims {
            *self.claim_users.entry(claim.clone()).or_insert(0) += 1;
        }
        if let Some(owner) = &pod.owner {
            *self
                .owners
                .entry(owner.clone())
                .or_default()
                .entry(i)
                .or_insert(0) += 1;
        }
    }

    /// Stops counting a pod that [`Snapshot::add_pod`] counted.
    pub fn remove_pod(&mut self, pod: &PlacedPod) {
        let Some(&i) = self.index.get(&pod.node) else {
            return;
        };
        let n = &mut self.nodes[i];
        n.requested = n.requested.minus(pod.requests);
        n.non_zero_requested = n.non_zero_requested.minus(pod.non_zero_requests);
        n.pod_count -= 1;
        for port in &pod.host_ports {
            if let Some(at) = n.host_ports.iter().position(|(p, _)| p == port) {
                n.host_ports[at].1 -= 1;
                if n.host_ports[at].1 == 0 {
                    n.host_ports.swap_remove(at);
                }
            }
        }
        for claim in &pod.claims {
            if let Some(count) = self.claim_users.get_mut(claim) {
                *count -= 1;
                if *count == 0 {
                    self.claim_users.remove(claim);
                }
            }
        }
        if let Some(owner) = &pod.owner {
            if let Some(per_node) = self.owners.get_mut(owner) {
                if let Some(count) = per_node.get_mut(&i) {
                    *count -= 1;
                    if *count == 0 {
                        per_node.remove(&i);
                    }
                }
                if per_node.is_empty() {
                    self.owners.remove(owner);
                }
            }
        }
        self.prune(i);
    }

    /// The nodes that are candidates (their Node object is known), with their facts.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeInfo, &NodeFacts)> {
        self.indexed_nodes().map(|(_, n, f)| (n, f))
    }

    /// [`Snapshot::nodes`] with each node's index (see [`Snapshot::owner_counts_by_index`]).
    pub(crate) fn indexed_nodes(&self) -> impl Iterator<Item = (usize, &NodeInfo, &NodeFacts)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.facts.as_ref().map(|f| (i, n, f)))
    }

    /// How many placed pods the controller `owner` has on the node.
    pub fn owned_by(&self, owner: &str, node: &str) -> u32 {
        let Some(i) = self.index.get(node) else {
            return 0;
        };
        self.owners
            .get(owner)
            .and_then(|per_node| per_node.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The placed pods of `owner` per node index, as a dense table (one lookup per node
    /// during a decision instead of one hash lookup); `None` when it has none.
    pub(crate) fn owner_counts_by_index(&self, owner: &str) -> Option<Vec<u32>> {
        let per_node = self.owners.get(owner)?;
        let mut counts = vec![0; self.nodes.len()];
        for (i, count) in per_node {
            if let Some(slot) = counts.get_mut(*i) {
                *slot = *count;
            }
        }
        Some(counts)
    }

    /// How many placed pods use the claim `namespace/name`.
    pub fn claim_users(&self, claim: &str) -> u32 {
        self.claim_users.get(claim).copied().unwrap_or(0)
    }

    /// The claims, volumes and classes the decisions read.
    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    /// The claims, volumes and classes, to keep them current.
    pub fn volumes_mut(&mut self) -> &mut Volumes {
        &mut self.volumes
    }

    /// A node by name, known or not.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// How many nodes are known.
    pub fn len(&self) -> usize {
        self.present
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"zone": "a"}},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .expect("a node")
    }

    fn placed(node: &str, cpu: i64, port: Option<i32>, owner: Option<&str>) -> PlacedPod {
        PlacedPod {
            node: node.into(),
            requests: Resources::new(cpu, 0),
            non_zero_requests: Resources::new(cpu.max(100), 1),
            host_ports: port
                .map(|p| HostPort::new("", "TCP", p))
                .into_iter()
                .collect(),
            owner: owner.map(str::to_owned),
            claims: Vec::new(),
        }
    }

    #[test]
    fn usage_is_added_and_removed_exactly() {
        let mut s = Snapshot::new();
        assert!(s.set_node(&node("n1")));
        assert!(
            !s.set_node(&node("n1")),
            "an unchanged node is not a change"
        );
        let a = placed("n1", 500, Some(80), Some("rs"));
        let b = placed("n1", 250, Some(80), Some("rs"));
        s.add_pod(&a);
        s.add_pod(&b);
        let n1 = s.get("n1").expect("n1");
        assert_eq!(n1.requested, Resources::new(750, 0));
        assert_eq!(n1.pod_count, 2);
        assert_eq!(n1.host_ports, vec![(HostPort::new("", "TCP", 80), 2)]);
        assert_eq!(s.owned_by("rs", "n1"), 2);
        s.remove_pod(&a);
        s.remove_pod(&b);
        let n1 = s.get("n1").expect("n1");
        assert_eq!(n1.requested, Resources::ZERO);
        assert!(n1.host_ports.is_empty());
        assert_eq!(s.owned_by("rs", "n1"), 0);
        assert!(s.owners.is_empty());
    }

    #[test]
    fn pods_on_an_unknown_node_are_kept_until_it_appears() {
        let mut s = Snapshot::new();
        s.add_pod(&placed("n2", 300, None, None));
        assert_eq!(s.len(), 0);
        assert_eq!(s.nodes().count(), 0, "not a candidate without its Node");
        s.set_node(&node("n2"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("n2").expect("n2").requested.milli_cpu, 300);
        s.remove_node("n2");
        assert_eq!(s.len(), 0);
        assert!(s.get("n2").is_some(), "its pods still count");
        s.remove_pod(&placed("n2", 300, None, None));
        assert!(s.get("n2").is_none(), "an empty unknown node is forgotten");
    }

    #[test]
    fn removed_slots_are_reused_without_mixing_up_owners() {
        let mut s = Snapshot::new();
        for n in ["a", "b", "c"] {
            s.set_node(&node(n));
        }
        s.add_pod(&placed("c", 100, None, Some("rs")));
        s.remove_node("a");
        assert_eq!(s.get("c").map(|n| n.name.as_str()), Some("c"));
        assert_eq!(s.get("b").map(|n| n.name.as_str()), Some("b"));
        assert_eq!(s.len(), 2);
        s.set_node(&node("d"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.owned_by("rs", "d"), 0);
        assert_eq!(s.owned_by("rs", "c"), 1);
        let names: Vec<&str> = s.nodes().map(|(n, _)| n.name.as_str()).collect();
        assert_eq!(names, ["d", "b", "c"], "d took a's slot");
    }
}
