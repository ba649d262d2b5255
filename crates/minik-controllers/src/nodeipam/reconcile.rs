//! The node IPAM decisions, pure: which pod CIDR each Node without one gets, and which Nodes
//! hold a pod CIDR the cluster cannot accept. The ranges in use are those of the live Nodes
//! (and the assignments written but not yet seen), so a deleted Node's range is free again, and
//! a restart finds every range where it was left: on the stored Nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use minik_api::cidr::{free_subnets, Cidr};
use minik_api::k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use crate::kinds::{self, is_deleting};

/// What the allocator carves, and what it keeps clear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The cluster CIDR (`--cluster-cidr`).
    pub cluster: Cidr,
    /// The prefix length of each node's pod CIDR (`--node-cidr-mask-size`).
    pub mask: u8,
    /// The service CIDR, never handed out (Kubernetes' `filterOutServiceRange`).
    pub service: Option<Cidr>,
}

/// Why a Node's pod CIDR is left alone, or why a Node gets none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// An entry of `spec.podCIDRs` that is not an IPv4 CIDR.
    NotIpv4 { value: String },
    /// A pod CIDR outside the cluster CIDR.
    Outside { cidr: Cidr, cluster: Cidr },
    /// A pod CIDR that shares addresses with the service CIDR.
    ServiceOverlap { cidr: Cidr, service: Cidr },
    /// A pod CIDR that shares addresses with the one of a Node that had it first.
    Overlap {
        cidr: Cidr,
        node: String,
        other: Cidr,
    },
    /// No free range is left in the cluster CIDR.
    Exhausted,
}

/// An event about a Node, as upstream's `cidrAllocator` would record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// The reason of the events about pod CIDRs that cannot be had (upstream's, for exhaustion).
pub(crate) const CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";

impl Problem {
    /// The event recorded on Node `node` for this problem. Exhaustion is upstream's event as is
    /// (a Normal one: `Node <name> status is now: CIDRNotAvailable`); a pod CIDR the cluster
    /// cannot accept, which upstream only logs, is a Warning that names what is wrong.
    pub(crate) fn event(&self, node: &str) -> Event {
        let warning = |message: String| Event {
            type_: "Warning",
            reason: CIDR_NOT_AVAILABLE,
            message: format!("{message}; the node IPAM leaves it as it is"),
        };
        match self {
            Problem::Exhausted => Event {
                type_: "Normal",
                reason: CIDR_NOT_AVAILABLE,
                message: format!("Node {node} status is now: {CIDR_NOT_AVAILABLE}"),
            },
            Problem::NotIpv4 { value } => warning(format!(
                "Node {node} has pod CIDR {value:?}, which is not an IPv4 CIDR"
            )),
            Problem::Outside { cidr, cluster } => warning(format!(
                "Node {node}'s pod CIDR {cidr} is out of the range of cluster CIDR {cluster}"
            )),
            Problem::ServiceOverlap { cidr, service } => warning(format!(
                "Node {node}'s pod CIDR {cidr} overlaps the service CIDR {service}"
            )),
            Problem::Overlap {
                cidr,
                node: other_node,
                other,
            } => warning(format!(
                "Node {node}'s pod CIDR {cidr} overlaps pod CIDR {other} of node {other_node}"
            )),
        }
    }
}

/// A pod CIDR written to a Node that the cache may not show yet: the Node's uid and the range.
pub(crate) type Pending = HashMap<String, (String, Cidr)>;

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Nodes to give a pod CIDR, by name, in the order they were created.
    pub assign: Vec<(String, Cidr)>,
    /// Nodes with a problem, by name.
    pub problems: BTreeMap<String, Problem>,
}

/// A Node's pod CIDRs as written: `spec.podCIDRs`, else `spec.podCIDR`; empty when it has none.
pub(crate) fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(one)) if !one.is_empty() => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Forgets the pending assignments the cache now shows, and those of Nodes gone or replaced.
pub(crate) fn prune_pending(pending: &mut Pending, nodes: &[Arc<Node>]) {
    let live: HashMap<&str, &Node> = nodes
        .iter()
        .map(|n| (kinds::name(&n.metadata), n.as_ref()))
        .collect();
    pending.retain(|name, (uid, _)| {
        live.get(name.as_str())
            .is_some_and(|n| kinds::uid(&n.metadata) == uid && pod_cidrs(n).is_empty())
    });
}

/// Decides the pass: every Node's pod CIDR is checked against the cluster CIDR, the service
/// CIDR and the Nodes created before it; every Node without one (and not being deleted) gets the
/// first free range of the cluster CIDR, in the order the Nodes were created. A Node's pod CIDR
/// is never changed; one that is wrong is only reported.
pub(crate) fn reconcile(nodes: &[Arc<Node>], pending: &Pending, settings: &Settings) -> Decision {
    let mut ordered: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
    ordered.sort_by(|a, b| {
        (kinds::created_at(&a.metadata), kinds::name(&a.metadata))
            .cmp(&(kinds::created_at(&b.metadata), kinds::name(&b.metadata)))
    });

    let mut decision = Decision::default();
    // The ranges held, each with the Node holding it.
    let mut held: Vec<(Cidr, &str)> = Vec::new();
    let mut wanting: Vec<&str> = Vec::new();
    for node in ordered {
        let name = kinds::name(&node.metadata);
        let mut written = pod_cidrs(node);
        if written.is_empty() {
            match pending.get(name) {
                Some((uid, cidr)) if uid == kinds::uid(&node.metadata) => {
                    written.push(cidr.to_string())
                }
                _ => {
                    if !is_deleting(&node.metadata) {
                        wanting.push(name);
                    }
                    continue;
                }
            }
        }
        let mut problem = None;
        for value in written {
            let Ok(cidr) = value.parse::<Cidr>() else {
                problem.get_or_insert(Problem::NotIpv4 { value });
                continue;
            };
            let found = if !settings.cluster.covers(&cidr) {
                Some(Problem::Outside {
                    cidr,
                    cluster: settings.cluster,
                })
            } else if let Some(service) = settings.service.filter(|s| s.overlaps(&cidr)) {
                Some(Problem::ServiceOverlap { cidr, service })
            } else {
                held.iter()
                    .find(|(other, _)| other.overlaps(&cidr))
                    .map(|(other, owner)| Problem::Overlap {
                        cidr,
                        node: (*owner).to_owned(),
                        other: *other,
                    })
            };
            if let Some(found) = found {
                problem.get_or_insert(found);
            }
            // Held even when wrong: handing it to another Node would only add a conflict.
            held.push((cidr, name));
        }
        if let Some(problem) = problem {
            decision.problems.insert(name.to_owned(), problem);
        }
    }

    let used: Vec<Cidr> = held
        .iter()
        .map(|(cidr, _)| *cidr)
        .chain(settings.service)
        .collect();
    let mut free = free_subnets(settings.cluster, settings.mask, &used);
    for name in wanting {
        match free.next() {
            Some(cidr) => decision.assign.push((name.to_owned(), cidr)),
            None => {
                decision
                    .problems
                    .insert(name.to_owned(), Problem::Exhausted);
            }
        }
    }
    decision
}

/// The patch that gives a Node its pod CIDR (upstream's `PatchNodeCIDRs`).
pub(crate) fn assign_patch(cidr: Cidr) -> Value {
    json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn settings() -> Settings {
        Settings {
            cluster: cidr("10.244.0.0/16"),
            mask: 24,
            service: Some(cidr("10.96.0.0/12")),
        }
    }

    /// Node `name`, created `second` seconds after the epoch, with these pod CIDRs.
    fn node(name: &str, second: i64, cidrs: &[&str]) -> Arc<Node> {
        let created = minik_api::k8s_openapi::jiff::Timestamp::from_second(second)
            .unwrap()
            .to_string();
        let mut spec = json!({});
        if !cidrs.is_empty() {
            spec = json!({"podCIDR": cidrs[0], "podCIDRs": cidrs});
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created},
                "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn assigned(decision: &Decision) -> Vec<(&str, String)> {
        decision
            .assign
            .iter()
            .map(|(n, c)| (n.as_str(), c.to_string()))
            .collect()
    }

    #[test]
    fn new_nodes_get_the_first_free_ranges_in_creation_order() {
        let nodes = [
            node("c", 3, &[]),
            node("a", 1, &["10.244.1.0/24"]),
            node("b", 2, &[]),
            node("d", 3, &[]),
        ];
        let decision = reconcile(&nodes, &Pending::new(), &settings());
        assert_eq!(
            assigned(&decision),
            [
                ("b", "10.244.0.0/24".to_owned()),
                ("c", "10.244.2.0/24".to_owned()),
                ("d", "10.244.3.0/24".to_owned()),
            ]
        );
        assert!(decision.problems.is_empty());
    }

    #[test]
    fn a_deleted_nodes_range_is_free_again() {
        let before = [
            node("a", 1, &["10.244.0.0/24"]),
            node("b", 2, &["10.244.1.0/24"]),
        ];
        assert!(reconcile(&before, &Pending::new(), &settings())
            .assign
            .is_empty());
        // a is gone; c comes.
        let after = [node("b", 2, &["10.244.1.0/24"]), node("c", 3, &[])];
        assert_eq!(
            assigned(&reconcile(&after, &Pending::new(), &settings())),
            [("c", "10.244.0.0/24".to_owned())]
        );
    }

    #[test]
    fn pending_assignments_hold_their_range_until_the_cache_shows_them() {
        let nodes = [node("a", 1, &[]), node("b", 2, &[])];
        let mut pending = Pending::new();
        pending.insert("a".into(), ("uid-a".into(), cidr("10.244.0.0/24")));
        assert_eq!(
            assigned(&reconcile(&nodes, &pending, &settings())),
            [("b", "10.244.1.0/24".to_owned())]
        );
        // Another Node of the same name (a new uid) is a new Node.
        pending.insert("a".into(), ("uid-old".into(), cidr("10.244.0.0/24")));
        assert_eq!(
            assigned(&reconcile(&nodes, &pending, &settings())),
            [
                ("a", "10.244.0.0/24".to_owned()),
                ("b", "10.244.1.0/24".to_owned())
            ]
        );

        let mut pending = Pending::new();
        pending.insert("a".into(), ("uid-a".into(), cidr("10.244.0.0/24")));
        pending.insert("b".into(), ("uid-b".into(), cidr("10.244.1.0/24")));
        pending.insert("gone".into(), ("uid-gone".into(), cidr("10.244.2.0/24")));
        let seen = [node("a", 1, &["10.244.0.0/24"]), node("b", 2, &[])];
        prune_pending(&mut pending, &seen);
        assert_eq!(pending.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn wrong_pod_cidrs_are_reported_and_kept() {
        let nodes = [
            node("a", 1, &["10.244.0.0/23"]),
            node("b", 2, &["10.244.1.0/24"]),
            node("c", 3, &["10.245.0.0/24"]),
            node("d", 4, &["fd00::/64"]),
            node("e", 5, &[]),
        ];
        let decision = reconcile(&nodes, &Pending::new(), &settings());
        assert_eq!(
            decision.problems,
            BTreeMap::from([
                (
                    "b".to_owned(),
                    Problem::Overlap {
                        cidr: cidr("10.244.1.0/24"),
                        node: "a".into(),
                        other: cidr("10.244.0.0/23"),
                    }
                ),
                (
                    "c".to_owned(),
                    Problem::Outside {
                        cidr: cidr("10.245.0.0/24"),
                        cluster: cidr("10.244.0.0/16"),
                    }
                ),
                (
                    "d".to_owned(),
                    Problem::NotIpv4 {
                        value: "fd00::/64".into()
                    }
                ),
            ])
        );
        // Nobody's range changes; the new node gets one clear of them all.
        assert_eq!(assigned(&decision), [("e", "10.244.2.0/24".to_owned())]);
        assert_eq!(
            decision.problems["b"].event("b"),
            Event {
                type_: "Warning",
                reason: "CIDRNotAvailable",
                message: "Node b's pod CIDR 10.244.1.0/24 overlaps pod CIDR 10.244.0.0/23 of \
                          node a; the node IPAM leaves it as it is"
                    .into(),
            }
        );
        assert_eq!(
            decision.problems["c"].event("c").message,
            "Node c's pod CIDR 10.245.0.0/24 is out of the range of cluster CIDR \
             10.244.0.0/16; the node IPAM leaves it as it is"
        );
    }

    #[test]
    fn the_service_cidr_is_never_handed_out() {
        let settings = Settings {
            cluster: cidr("10.0.0.0/8"),
            mask: 12,
            service: Some(cidr("10.0.0.0/12")),
        };
        let nodes = [node("a", 1, &[]), node("b", 2, &["10.0.1.0/24"])];
        let decision = reconcile(&nodes, &Pending::new(), &settings);
        assert_eq!(assigned(&decision), [("a", "10.16.0.0/12".to_owned())]);
        assert_eq!(
            decision.problems["b"],
            Problem::ServiceOverlap {
                cidr: cidr("10.0.1.0/24"),
                service: cidr("10.0.0.0/12")
            }
        );
    }

    #[test]
    fn an_exhausted_cluster_cidr_leaves_the_rest_waiting() {
        let settings = Settings {
            cluster: cidr("10.244.0.0/23"),
            mask: 24,
            service: None,
        };
        let deleting: Arc<Node> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "z", "uid": "uid-z",
                "deletionTimestamp": "2026-01-01T00:00:00Z"}}))
            .unwrap(),
        );
        let nodes = [
            node("a", 1, &[]),
            node("b", 2, &[]),
            node("c", 3, &[]),
            deleting,
        ];
        let decision = reconcile(&nodes, &Pending::new(), &settings);
        assert_eq!(
            assigned(&decision),
            [
                ("a", "10.244.0.0/24".to_owned()),
                ("b", "10.244.1.0/24".to_owned())
            ]
        );
        // A Node being deleted gets nothing, and is no problem.
        assert_eq!(
            decision.problems,
            BTreeMap::from([("c".to_owned(), Problem::Exhausted)])
        );
        assert_eq!(
            Problem::Exhausted.event("c"),
            Event {
                type_: "Normal",
                reason: "CIDRNotAvailable",
                message: "Node c status is now: CIDRNotAvailable".into(),
            }
        );
    }

    #[test]
    fn the_singular_pod_cidr_counts_when_the_list_is_empty() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "a"},
            "spec": {"podCIDR": "10.244.9.0/24"}}))
        .unwrap();
        assert_eq!(pod_cidrs(&n), ["10.244.9.0/24"]);
        assert_eq!(
            assign_patch(cidr("10.244.3.0/24")),
            json!({"spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}})
        );
    }
}
