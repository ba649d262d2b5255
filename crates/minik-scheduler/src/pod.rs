//! What the scheduler needs to know about a pod, read once from its spec: requests, host
//! ports, node selector and affinity, tolerations, and the controller that owns it.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Toleration,
};
use minik_api::podview::{ContainerView, PodView};
use minik_api::selector::Selector;

use crate::resources::{pod_non_zero_requests, pod_requests, Resources};

/// The wildcard address a host port binds when it names none.
pub const ANY_IP: &str = "0.0.0.0";

/// One port a pod takes on its node's address: `hostPort` with its protocol and `hostIP`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// A host port with Kubernetes' defaults: no address is every address, no protocol is TCP.
    pub fn new(ip: &str, protocol: &str, port: i32) -> HostPort {
        HostPort {
            ip: if ip.is_empty() { ANY_IP } else { ip }.to_owned(),
            protocol: if protocol.is_empty() { "TCP" } else { protocol }.to_owned(),
            port,
        }
    }

    /// Whether two pods could not both hold these ports on one node: same port and protocol,
    /// and the same address or either one on every address (Kubernetes' `HostPortInfo`).
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// The host ports of a pod's containers and sidecars (`hostPort` > 0).
pub fn host_ports(pod: &PodView) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c: &ContainerView| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some(HostPort::new(
                p.host_ip.as_deref().unwrap_or(""),
                p.protocol.as_deref().unwrap_or(""),
                port,
            ))
        })
        .collect()
}

/// The uid of the controller that owns the pod (the `ownerReferences` entry with
/// `controller: true`), if any.
pub fn controller_uid(pod: &PodView) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// How a `matchFields` requirement compares a node's field.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// An operator Kubernetes does not allow here: the requirement matches nothing.
    Invalid,
}

/// One `matchFields` requirement. Kubernetes supports only `metadata.name`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    key: String,
    op: FieldOp,
    values: Vec<String>,
}

impl FieldRequirement {
    fn new(r: &NodeSelectorRequirement) -> FieldRequirement {
        let op = match r.operator.as_str() {
            "In" => FieldOp::In,
            "NotIn" => FieldOp::NotIn,
            "Exists" => FieldOp::Exists,
            "DoesNotExist" => FieldOp::DoesNotExist,
            _ => FieldOp::Invalid,
        };
        FieldRequirement {
            key: r.key.clone(),
            op,
            values: r.values.clone().unwrap_or_default(),
        }
    }

    fn matches(&self, node_name: &str) -> bool {
        let value = (self.key == "metadata.name").then_some(node_name);
        match self.op {
            FieldOp::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            FieldOp::NotIn => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            FieldOp::Exists => value.is_some(),
            FieldOp::DoesNotExist => value.is_none(),
            FieldOp::Invalid => false,
        }
    }
}

/// One node selector term: its `matchExpressions` on labels and its `matchFields`, all of which
/// must hold. A term with neither, or one that does not parse, matches no node, as in
/// Kubernetes.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    labels: Option<Selector>,
    fields: Vec<FieldRequirement>,
    matches_nothing: bool,
}

impl Term {
    pub fn new(term: &NodeSelectorTerm) -> Term {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        let labels = if expressions.is_empty() {
            Ok(None)
        } else {
            Selector::from_node_selector_requirements(expressions).map(Some)
        };
        match labels {
            Ok(labels) => Term {
                labels,
                fields: fields.iter().map(FieldRequirement::new).collect(),
                matches_nothing: expressions.is_empty() && fields.is_empty(),
            },
            Err(_) => Term {
                labels: None,
                fields: Vec::new(),
                matches_nothing: true,
            },
        }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing
            && self.labels.as_ref().is_none_or(|s| s.matches(labels))
            && self.fields.iter().all(|f| f.matches(node_name))
    }
}

/// Everything the decision reads from a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRequirements {
    /// What the pod asks for (the resource filter).
    pub requests: Resources,
    /// What scoring counts for it (defaults for unnamed amounts).
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    /// `spec.nodeSelector`: every label must be on the node with this value.
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity: at least one term must match. `None` when the pod has none.
    pub required_terms: Option<Vec<Term>>,
    /// Preferred node affinity: the weights of the matching terms add up to a node's score.
    pub preferred_terms: Vec<(i64, Term)>,
    pub tolerations: Vec<Toleration>,
    /// The uid of the owning controller, for spreading.
    pub owner: Option<String>,
    /// The pod's namespace (its claims are in it).
    pub namespace: String,
    /// The names of the PersistentVolumeClaims its `persistentVolumeClaim` volumes use, each
    /// once, in the order of the volumes.
    pub claims: Vec<String>,
}

impl PodRequirements {
    pub fn of(pod: &PodView) -> PodRequirements {
        let Some(spec) = pod.spec.as_ref() else {
            return PodRequirements::default();
        };
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required_terms = node_affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|sel| sel.node_selector_terms.iter().map(Term::new).collect());
        let preferred_terms = node_affinity
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0)
            .map(|p| (i64::from(p.weight), Term::new(&p.preference)))
            .collect();
        PodRequirements {
            requests: pod_requests(spec),
            non_zero_requests: pod_non_zero_requests(spec),
            host_ports: host_ports(pod),
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            required_terms,
            preferred_terms,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            owner: controller_uid(pod),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            claims: claim_names(pod),
        }
    }

    /// The cache keys (`namespace/name`) of the pod's claims.
    pub fn claim_keys(&self) -> Vec<String> {
        self.claims
            .iter()
            .map(|c| format!("{}/{c}", self.namespace))
            .collect()
    }
}

/// The claims of a pod's `persistentVolumeClaim` volumes, each once, in volume order.
pub fn claim_names(pod: &PodView) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        if let Some(claim) = &v.persistent_volume_claim {
            if !names.contains(&claim.claim_name) {
                names.push(claim.claim_name.clone());
            }
        }
    }
    names
}

impl Default for PodRequirements {
    fn default() -> Self {
        PodRequirements {
            requests: Resources::ZERO,
            non_zero_requests: Resources::ZERO,
            host_ports: Vec::new(),
            node_selector: Vec::new(),
            required_terms: None,
            preferred_terms: Vec::new(),
            tolerations: Vec::new(),
            owner: None,
            namespace: String::new(),
            claims: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(v: serde_json::Value) -> Term {
        Term::new(&serde_json::from_value(v).expect("a node selector term"))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_selector_terms_match_like_kubernetes() {
        let node = labels(&[("zone", "a"), ("gen", "5"), ("disk", "ssd")]);
        let expr = |key: &str, op: &str, values: &[&str]| json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]});
        let cases = [
            ("In matches", expr("zone", "In", &["a", "b"]), true),
            ("In misses", expr("zone", "In", &["b"]), false),
            ("In on a missing label", expr("rack", "In", &["1"]), false),
            ("NotIn passes", expr("zone", "NotIn", &["b"]), true),
            (
                "NotIn on a missing label passes",
                expr("rack", "NotIn", &["1"]),
                true,
            ),
            ("NotIn fails", expr("zone", "NotIn", &["a"]), false),
            ("Exists", expr("disk", "Exists", &[]), true),
            ("Exists missing", expr("gpu", "Exists", &[]), false),
            ("DoesNotExist", expr("gpu", "DoesNotExist", &[]), true),
            (
                "DoesNotExist present",
                expr("disk", "DoesNotExist", &[]),
                false,
            ),
            ("Gt", expr("gen", "Gt", &["4"]), true),
            ("Gt equal fails", expr("gen", "Gt", &["5"]), false),
            ("Lt", expr("gen", "Lt", &["6"]), true),
            ("Lt fails", expr("gen", "Lt", &["5"]), false),
            (
                "Gt on a non-integer label fails",
                expr("zone", "Gt", &["1"]),
                false,
            ),
            (
                "an unknown operator matches nothing",
                expr("zone", "Near", &["a"]),
                false,
            ),
            (
                "expressions are ANDed",
                json!({"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]},
                    {"key": "disk", "operator": "In", "values": ["hdd"]}
                ]}),
                false,
            ),
            ("an empty term matches nothing", json!({}), false),
            (
                "matchFields on metadata.name",
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                "matchFields NotIn",
                json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
                false,
            ),
            (
                "matchFields on another field",
                json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}),
                false,
            ),
            (
                "expressions and fields are ANDed",
                json!({
                    "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}],
                    "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
                }),
                false,
            ),
        ];
        for (name, t, want) in cases {
            assert_eq!(term(t).matches("n1", &node), want, "{name}");
        }
    }

    #[test]
    fn host_ports_take_defaults_and_conflict_like_kubernetes() {
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "ports": [{"containerPort": 9000, "hostPort": 9000}]},
                    {"name": "setup", "ports": [{"containerPort": 9100, "hostPort": 9100}]}
                ],
                "containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"containerPort": 81}
                ]}]
            }
        }))
        .expect("a pod");
        assert_eq!(
            host_ports(&pod),
            vec![
                HostPort::new("", "TCP", 8080),
                HostPort::new("127.0.0.1", "UDP", 53),
                HostPort::new("0.0.0.0", "", 9000),
            ]
        );
        let cases = [
            (("", "TCP", 80), ("", "TCP", 80), true),
            (("", "TCP", 80), ("", "UDP", 80), false),
            (("", "TCP", 80), ("", "TCP", 81), false),
            (("10.0.0.1", "TCP", 80), ("", "TCP", 80), true),
            (("10.0.0.1", "TCP", 80), ("10.0.0.1", "TCP", 80), true),
            (("10.0.0.1", "TCP", 80), ("10.0.0.2", "TCP", 80), false),
        ];
        for (a, b, want) in cases {
            let a = HostPort::new(a.0, a.1, a.2);
            let b = HostPort::new(b.0, b.1, b.2);
            assert_eq!(a.conflicts_with(&b), want, "{a:?} vs {b:?}");
            assert_eq!(b.conflicts_with(&a), want, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn the_controller_owner_is_the_one_marked_controller() {
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u2", "controller": true}
            ]}
        }))
        .expect("a pod");
        assert_eq!(controller_uid(&pod).as_deref(), Some("u2"));
    }
}
