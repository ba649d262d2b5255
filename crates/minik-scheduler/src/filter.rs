//! The filters: whether a pod may go on a node at all, and if not, the reason in
//! kube-scheduler's words. They run in kube-scheduler's order and the first that fails
//! decides, so every node that does not fit has one reason (or, for resources, one per
//! resource that is short).

use std::fmt;

use minik_api::k8s_openapi::api::core::v1::Taint;

use crate::pod::PodRequirements;
use crate::snapshot::{NodeFacts, NodeInfo};
use crate::volumes::PodVolumes;

use minik_api::wellknown::{tolerated, TAINT_NOT_READY, TAINT_UNSCHEDULABLE};

/// Why a pod does not fit a node, as kube-scheduler reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NotReady,
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    NodePorts,
    Insufficient(&'static str),
    TooManyPods,
    /// A `ReadWriteOncePod` claim of the pod is used by another pod (VolumeRestrictions).
    ReadWriteOncePodConflict,
    /// A bound volume's node affinity does not admit the node (VolumeBinding).
    VolumeNodeAffinityConflict,
    /// An unbound claim was given another node already.
    SelectedNodeConflict,
    /// An unbound claim has no volume and none can be provisioned (VolumeBinding).
    VolumeBindConflict,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodePorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::ReadWriteOncePodConflict => f.write_str(
                "node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod",
            ),
            Reason::VolumeNodeAffinityConflict => {
                f.write_str("node(s) had volume node affinity conflict")
            }
            Reason::SelectedNodeConflict => {
                f.write_str("node(s) didn't match the selected node of a PersistentVolumeClaim")
            }
            Reason::VolumeBindConflict => {
                f.write_str("node(s) didn't find available persistent volumes to bind")
            }
        }
    }
}

/// The first filter a node failed, without allocating: the decision runs this for every node
/// and only turns it into [`Reason`]s when no node fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    NotReady,
    Unschedulable,
    /// The index of the first untolerated taint in the node's taints.
    Taint(usize),
    NodeAffinity,
    NodePorts,
    Resources {
        cpu: bool,
        memory: bool,
        pods: bool,
    },
    ReadWriteOncePod,
    /// What of the pod's claims the node does not satisfy.
    Volumes {
        affinity: bool,
        selected_node: bool,
        unprovisionable: bool,
    },
}

impl Failure {
    /// The reasons it stands for, in the order kube-scheduler lists them for one node.
    pub fn reasons(self, facts: &NodeFacts) -> Vec<Reason> {
        match self {
            Failure::NotReady => vec![Reason::NotReady],
            Failure::Unschedulable => vec![Reason::Unschedulable],
            Failure::Taint(i) => {
                let taint = facts.taints.get(i);
                vec![Reason::UntoleratedTaint {
                    key: taint.map(|t| t.key.clone()).unwrap_or_default(),
                    value: taint.and_then(|t| t.value.clone()).unwrap_or_default(),
                }]
            }
            Failure::NodeAffinity => vec![Reason::NodeAffinity],
            Failure::NodePorts => vec![Reason::NodePorts],
            Failure::Resources { cpu, memory, pods } => {
                let mut reasons = Vec::new();
                if pods {
                    reasons.push(Reason::TooManyPods);
                }
                if cpu {
                    reasons.push(Reason::Insufficient("cpu"));
                }
                if memory {
                    reasons.push(Reason::Insufficient("memory"));
                }
                reasons
            }
            Failure::ReadWriteOncePod => vec![Reason::ReadWriteOncePodConflict],
            Failure::Volumes {
                affinity,
                selected_node,
                unprovisionable,
            } => {
                let mut reasons = Vec::new();
                if affinity {
                    reasons.push(Reason::VolumeNodeAffinityConflict);
                }
                if selected_node {
                    reasons.push(Reason::SelectedNodeConflict);
                }
                if unprovisionable {
                    reasons.push(Reason::VolumeBindConflict);
                }
                reasons
            }
        }
    }
}

fn implied_taint(key: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: "NoSchedule".to_owned(),
        value: None,
        time_added: None,
    }
}

/// The node's `Ready` condition is `True`, or the pod tolerates the not-ready taint.
pub fn check_ready(facts: &NodeFacts, pod: &PodRequirements) -> Result<(), Failure> {
    if facts.ready || tolerated(&pod.tolerations, &implied_taint(TAINT_NOT_READY)) {
        Ok(())
    } else {
        Err(Failure::NotReady)
    }
}

/// The node is not cordoned, or the pod tolerates the unschedulable taint (Kubernetes'
/// `NodeUnschedulable`).
pub fn check_unschedulable(facts: &NodeFacts, pod: &PodRequirements) -> Result<(), Failure> {
    if !facts.unschedulable || tolerated(&pod.tolerations, &implied_taint(TAINT_UNSCHEDULABLE)) {
        Ok(())
    } else {
        Err(Failure::Unschedulable)
    }
}

/// Every `NoSchedule` and `NoExecute` taint of the node is tolerated (`PreferNoSchedule` only
/// lowers the score).
pub fn check_taints(facts: &NodeFacts, pod: &PodRequirements) -> Result<(), Failure> {
    match facts.taints.iter().position(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
    }) {
        Some(i) => Err(Failure::Taint(i)),
        None => Ok(()),
    }
}

/// The node has every label of `nodeSelector`, and matches one of the required node affinity
/// terms when there are some.
pub fn check_node_affinity(
    name: &str,
    facts: &NodeFacts,
    pod: &PodRequirements,
) -> Result<(), Failure> {
    let selected = pod
        .node_selector
        .iter()
        .all(|(k, v)| facts.labels.get(k) == Some(v));
    let affine = pod
        .required_terms
        .as_ref()
        .is_none_or(|terms| terms.iter().any(|t| t.matches(name, &facts.labels)));
    if selected && affine {
        Ok(())
    } else {
        Err(Failure::NodeAffinity)
    }
}

/// None of the pod's host ports is held on the node already.
pub fn check_ports(node: &NodeInfo, pod: &PodRequirements) -> Result<(), Failure> {
    let taken = pod.host_ports.iter().any(|want| {
        node.host_ports
            .iter()
            .any(|(held, _)| want.conflicts_with(held))
    });
    if taken {
        Err(Failure::NodePorts)
    } else {
        Ok(())
    }
}

/// The pod's requests fit in what is allocatable minus what is already requested, and the
/// node takes one more pod. A pod that asks for no cpu (or no memory) fits any node on that
/// account, even an over-committed one, as in Kubernetes.
pub fn check_resources(
    node: &NodeInfo,
    facts: &NodeFacts,
    pod: &PodRequirements,
) -> Result<(), Failure> {
    let free = facts.allocatable.minus(node.requested);
    let cpu = pod.requests.milli_cpu > 0 && pod.requests.milli_cpu > free.milli_cpu;
    let memory = pod.requests.memory > 0 && pod.requests.memory > free.memory;
    let pods = facts.max_pods.is_some_and(|max| node.pod_count + 1 > max);
    if cpu || memory || pods {
        Err(Failure::Resources { cpu, memory, pods })
    } else {
        Ok(())
    }
}

/// No other pod uses a `ReadWriteOncePod` claim of the pod (Kubernetes' VolumeRestrictions).
pub fn check_volume_restrictions(volumes: &PodVolumes<'_>) -> Result<(), Failure> {
    if volumes.read_write_once_pod_in_use {
        Err(Failure::ReadWriteOncePod)
    } else {
        Ok(())
    }
}

/// The node suits the pod's claims (Kubernetes' VolumeBinding): every bound volume's node
/// affinity admits it, it is the node every unbound `WaitForFirstConsumer` claim was given
/// (when one was), and a volume can be made for the others.
pub fn check_volume_binding(
    name: &str,
    facts: &NodeFacts,
    volumes: &PodVolumes<'_>,
) -> Result<(), Failure> {
    let affinity = !volumes.bound.iter().all(|pv| pv.allows(&facts.labels));
    let selected_node = !volumes.selected_nodes.iter().all(|n| *n == name);
    let unprovisionable = volumes.unprovisionable;
    if affinity || selected_node || unprovisionable {
        Err(Failure::Volumes {
            affinity,
            selected_node,
            unprovisionable,
        })
    } else {
        Ok(())
    }
}

/// Every filter, in kube-scheduler's order; the first that fails decides. `volumes` is what
/// the pod's claims ask ([`crate::volumes::pre_filter`]).
pub fn filter(
    node: &NodeInfo,
    facts: &NodeFacts,
    pod: &PodRequirements,
    volumes: &PodVolumes<'_>,
) -> Result<(), Failure> {
    check_ready(facts, pod)?;
    check_unschedulable(facts, pod)?;
    check_taints(facts, pod)?;
    check_node_affinity(&node.name, facts, pod)?;
    check_ports(node, pod)?;
    check_resources(node, facts, pod)?;
    if volumes.is_empty() {
        return Ok(());
    }
    check_volume_restrictions(volumes)?;
    check_volume_binding(&node.name, facts, volumes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::HostPort;
    use crate::resources::Resources;
    use crate::snapshot::{PlacedPod, Snapshot};
    use minik_api::k8s_openapi::api::core::v1::Node;
    use minik_api::podview::PodView;
    use serde_json::{json, Value};

    fn node_json(extra: Value) -> Node {
        let base = json!({
            "metadata": {"name": "n1", "labels": {"zone": "a", "disk": "ssd"}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a node")
    }

    fn pod(spec: Value) -> PodRequirements {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "main"}]);
        }
        let pod: PodView = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("a pod");
        PodRequirements::of(&pod)
    }

    /// A snapshot with one node `n1` and some pods placed on it.
    fn one_node(node: Node, placed: &[PlacedPod]) -> Snapshot {
        let mut s = Snapshot::new();
        s.set_node(&node);
        for p in placed {
            s.add_pod(p);
        }
        s
    }

    fn run(node: Node, placed: &[PlacedPod], pod: &PodRequirements) -> Result<(), Vec<String>> {
        let s = one_node(node, placed);
        let (info, facts) = s.nodes().next().expect("n1");
        filter(info, facts, pod, &PodVolumes::default())
            .map_err(|f| f.reasons(facts).iter().map(|r| r.to_string()).collect())
    }

    fn using(cpu: i64, memory: i64, ports: &[i32]) -> PlacedPod {
        PlacedPod {
            node: "n1".into(),
            requests: Resources::new(cpu, memory),
            non_zero_requests: Resources::new(cpu, memory),
            host_ports: ports.iter().map(|p| HostPort::new("", "TCP", *p)).collect(),
            owner: None,
            claims: Vec::new(),
        }
    }

    fn fails(reasons: &[&str]) -> Result<(), Vec<String>> {
        Err(reasons.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn readiness_and_cordon() {
        let cases = [
            ("ready node", json!({}), json!({}), Ok(())),
            (
                "not ready",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                json!({}),
                fails(&["node(s) were not ready"]),
            ),
            (
                "ready unknown",
                json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                json!({}),
                fails(&["node(s) were not ready"]),
            ),
            (
                "no conditions at all",
                json!({"status": {"conditions": null}}),
                json!({}),
                fails(&["node(s) were not ready"]),
            ),
            (
                "not ready but the pod tolerates it",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                json!({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}),
                Ok(()),
            ),
            (
                "the default NoExecute toleration does not let a pod onto a not-ready node",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                json!({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}),
                fails(&["node(s) were not ready"]),
            ),
            (
                "cordoned",
                json!({"spec": {"unschedulable": true}}),
                json!({}),
                fails(&["node(s) were unschedulable"]),
            ),
            (
                "cordoned but tolerated",
                json!({"spec": {"unschedulable": true}}),
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
                Ok(()),
            ),
            (
                "not ready is reported before cordoned",
                json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                json!({}),
                fails(&["node(s) were not ready"]),
            ),
        ];
        for (name, node, spec, want) in cases {
            assert_eq!(run(node_json(node), &[], &pod(spec)), want, "{name}");
        }
    }

    #[test]
    fn taints_and_tolerations() {
        let tainted = |taints: Value| node_json(json!({"spec": {"taints": taints}}));
        let db = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        let cases = [
            (
                "untolerated NoSchedule",
                db.clone(),
                json!({}),
                fails(&["node(s) had untolerated taint {dedicated: db}"]),
            ),
            (
                "untolerated NoExecute",
                json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
                json!({}),
                fails(&["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]),
            ),
            (
                "PreferNoSchedule does not filter",
                json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
                json!({}),
                Ok(()),
            ),
            (
                "Equal with the same value",
                db.clone(),
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
                Ok(()),
            ),
            (
                "operator defaults to Equal",
                db.clone(),
                json!({"tolerations": [{"key": "dedicated", "value": "db"}]}),
                Ok(()),
            ),
            (
                "Equal with another value",
                db.clone(),
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]}),
                fails(&["node(s) had untolerated taint {dedicated: db}"]),
            ),
            (
                "Exists ignores the value",
                db.clone(),
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                Ok(()),
            ),
            (
                "empty key with Exists tolerates everything",
                db.clone(),
                json!({"tolerations": [{"operator": "Exists"}]}),
                Ok(()),
            ),
            (
                "empty effect matches every effect",
                json!([{"key": "dedicated", "value": "db", "effect": "NoExecute"}]),
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                Ok(()),
            ),
            (
                "another effect does not tolerate",
                db.clone(),
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}),
                fails(&["node(s) had untolerated taint {dedicated: db}"]),
            ),
            (
                "the first untolerated taint is reported",
                json!([
                    {"key": "a", "value": "1", "effect": "NoSchedule"},
                    {"key": "b", "value": "2", "effect": "NoSchedule"}
                ]),
                json!({"tolerations": [{"key": "a", "operator": "Exists"}]}),
                fails(&["node(s) had untolerated taint {b: 2}"]),
            ),
        ];
        for (name, taints, spec, want) in cases {
            assert_eq!(run(tainted(taints), &[], &pod(spec)), want, "{name}");
        }
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let required = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let miss = fails(&["node(s) didn't match Pod's node affinity/selector"]);
        let cases = [
            ("no selector", json!({}), Ok(())),
            (
                "selector matches",
                json!({"nodeSelector": {"zone": "a", "disk": "ssd"}}),
                Ok(()),
            ),
            (
                "selector value differs",
                json!({"nodeSelector": {"zone": "b"}}),
                miss.clone(),
            ),
            (
                "selector label missing",
                json!({"nodeSelector": {"gpu": "true"}}),
                miss.clone(),
            ),
            (
                "terms are ORed",
                required(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
                ])),
                Ok(()),
            ),
            (
                "no term matches",
                required(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
                ])),
                miss.clone(),
            ),
            (
                "no terms at all matches nothing",
                required(json!([])),
                miss.clone(),
            ),
            (
                "matchFields on the node name",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                Ok(()),
            ),
            (
                "selector and affinity must both hold",
                {
                    let mut spec = required(
                        json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]),
                    );
                    spec["nodeSelector"] = json!({"disk": "hdd"});
                    spec
                },
                miss.clone(),
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(run(node_json(json!({})), &[], &pod(spec)), want, "{name}");
        }
    }

    #[test]
    fn host_ports() {
        let with_port = |port: Value| json!({"containers": [{"name": "a", "ports": [port]}]});
        let busy = fails(&["node(s) didn't have free ports for the requested pod ports"]);
        let cases = [
            (
                "free port",
                vec![8080],
                with_port(json!({"containerPort": 80, "hostPort": 80})),
                Ok(()),
            ),
            (
                "held port",
                vec![80],
                with_port(json!({"containerPort": 80, "hostPort": 80})),
                busy.clone(),
            ),
            (
                "another protocol",
                vec![80],
                with_port(json!({"containerPort": 80, "hostPort": 80, "protocol": "UDP"})),
                Ok(()),
            ),
            (
                "a specific address under a wildcard one",
                vec![80],
                with_port(json!({"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"})),
                busy.clone(),
            ),
            (
                "container ports without host ports never conflict",
                vec![80],
                with_port(json!({"containerPort": 80})),
                Ok(()),
            ),
        ];
        for (name, held, spec, want) in cases {
            assert_eq!(
                run(node_json(json!({})), &[using(0, 0, &held)], &pod(spec)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn resources_fit() {
        let asking = |cpu: &str, memory: &str| json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
        let gi = 1i64 << 30;
        let cases = [
            ("fits an empty node", vec![], asking("2", "4Gi"), Ok(())),
            (
                "fits what is left",
                vec![using(1500, 3 * gi, &[])],
                asking("500m", "1Gi"),
                Ok(()),
            ),
            (
                "cpu short",
                vec![using(1500, 0, &[])],
                asking("600m", "1Gi"),
                fails(&["Insufficient cpu"]),
            ),
            (
                "memory short",
                vec![using(0, 3 * gi, &[])],
                asking("100m", "2Gi"),
                fails(&["Insufficient memory"]),
            ),
            (
                "both short",
                vec![using(2000, 4 * gi, &[])],
                asking("1m", "1Mi"),
                fails(&["Insufficient cpu", "Insufficient memory"]),
            ),
            (
                "a pod without requests fits a full node",
                vec![using(2000, 4 * gi, &[])],
                json!({}),
                Ok(()),
            ),
            (
                "pod count limit",
                vec![using(0, 0, &[]), using(0, 0, &[]), using(0, 0, &[])],
                json!({}),
                fails(&["Too many pods"]),
            ),
        ];
        for (name, placed, spec, want) in cases {
            assert_eq!(
                run(node_json(json!({})), &placed, &pod(spec)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn filters_run_in_kube_scheduler_order() {
        // A cordoned, tainted, unselected, full node: the first filter in order is reported.
        let node = node_json(json!({
            "spec": {"unschedulable": true, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}
        }));
        let spec = json!({"nodeSelector": {"zone": "b"}});
        assert_eq!(
            run(node.clone(), &[], &pod(spec.clone())),
            fails(&["node(s) were unschedulable"])
        );
        let uncordoned = node_json(
            json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            run(uncordoned, &[], &pod(spec.clone())),
            fails(&["node(s) had untolerated taint {k: v}"])
        );
        assert_eq!(
            run(
                node_json(json!({})),
                &[using(0, 0, &[80])],
                &pod({
                    let mut s = spec;
                    s["containers"] =
                        json!([{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]);
                    s
                })
            ),
            fails(&["node(s) didn't match Pod's node affinity/selector"])
        );
    }
}
