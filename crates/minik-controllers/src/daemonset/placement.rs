//! Which nodes a DaemonSet runs a pod on, and the pod it runs there, as Kubernetes'
//! `NodeShouldRunDaemonPod`, `AddOrUpdateDaemonPodTolerations` and
//! `ReplaceDaemonSetPodNodeNameNodeAffinity` decide them. A daemon pod is not bound by the
//! controller: it carries a required node affinity to its node (`matchFields` on
//! `metadata.name`) and the scheduler binds it.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Taint, Toleration,
};
use minik_api::podview::PodView;
use minik_api::selector::Selector;
use minik_api::wellknown::{tolerated, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE};

/// The field a daemon pod's node affinity names its node with.
const NAME_FIELD: &str = "metadata.name";

/// The tolerations every daemon pod gets (key, effect), so that the node lifecycle controller
/// never evicts it and node conditions or a cordon do not keep it off its node.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    (TAINT_NOT_READY, "NoExecute"),
    (TAINT_UNREACHABLE, "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    (TAINT_UNSCHEDULABLE, "NoSchedule"),
];

/// The toleration daemon pods with host networking also get.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// Whether a daemon pod belongs on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fit {
    /// A daemon pod should be created there if there is none.
    pub should_run: bool,
    /// A daemon pod already there may stay (it tolerates the node's NoExecute taints).
    pub may_continue: bool,
}

/// Kubernetes' `AddOrUpdateTolerationInPodSpec`: the toleration replaces one with the same key,
/// operator, value and effect, or is appended.
fn add_or_update(tolerations: &mut Vec<Toleration>, toleration: Toleration) {
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.effect == toleration.effect
            && t.operator.as_deref().unwrap_or("Equal")
                == toleration.operator.as_deref().unwrap_or("Equal")
            && t.value.as_deref().unwrap_or("") == toleration.value.as_deref().unwrap_or("")
    };
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

/// Kubernetes' `AddOrUpdateDaemonPodTolerations`.
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let network = host_network.then_some(NETWORK_UNAVAILABLE);
    for (key, effect) in DAEMON_TOLERATIONS.iter().copied().chain(network) {
        add_or_update(
            tolerations,
            Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some(effect.to_owned()),
                value: None,
                toleration_seconds: None,
            },
        );
    }
}

/// Whether the node satisfies the pod's `nodeSelector` and required node affinity.
pub(crate) fn fits_affinity(
    spec: &PodSpec,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affine = required.is_none_or(|selector| {
        selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node_name, labels))
    });
    selected && affine
}

/// One node selector term: all its label expressions and field requirements hold; a term with
/// neither, or one that does not parse, matches no node.
fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels_ok = expressions.is_empty()
        || Selector::from_node_selector_requirements(expressions).is_ok_and(|s| s.matches(labels));
    let fields_ok = fields.iter().all(|f| {
        let value = (f.key == NAME_FIELD).then_some(node_name);
        let listed = |v: &str| f.values.iter().flatten().any(|x| x == v);
        match f.operator.as_str() {
            "In" => value.is_some_and(listed),
            "NotIn" => !value.is_some_and(listed),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && fields_ok
}

/// The pod spec a DaemonSet's pods get: the template's with the daemon tolerations.
pub(crate) fn daemon_spec(template: &PodTemplateSpec) -> PodSpec {
    let mut spec = template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

/// Kubernetes' `NodeShouldRunDaemonPod` for a pod with `spec` (the template's, with the daemon
/// tolerations): its node name (if the template names one), node selector and required affinity
/// must fit; an untolerated NoSchedule or NoExecute taint keeps new pods off, and only an
/// untolerated NoExecute one makes a running pod go.
pub(crate) fn fit(spec: &PodSpec, node: &Node) -> Fit {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let nothing = Fit {
        should_run: false,
        may_continue: false,
    };
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return nothing;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !fits_affinity(spec, name, &labels) {
        return nothing;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .any(|t| effects.contains(&t.effect.as_str()) && !tolerated(tolerations, t))
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        Fit {
            should_run: false,
            may_continue: !untolerated(&["NoExecute"]),
        }
    } else {
        Fit {
            should_run: true,
            may_continue: true,
        }
    }
}

/// Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity
/// becomes the one term `metadata.name In [node]` (the controller has already checked the
/// template's own terms against the node); preferred terms and other affinities stay. Takes the
/// pod's `affinity`.
pub(crate) fn pin_to_node(affinity: &mut Option<Affinity>, node: &str) {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NAME_FIELD.to_owned(),
                operator: "In".to_owned(),
                values: Some(vec![node.to_owned()]),
            }]),
        }],
    };
    let affinity = affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
}

/// Kubernetes' `GetTargetNodeName`: the node a daemon pod is bound to, or, before it is bound,
/// the one its `metadata.name` node affinity names.
pub(crate) fn target_node(pod: &PodView) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == NAME_FIELD && f.operator == "In")
        .and_then(|f| match f.values.as_deref() {
            Some([only]) => Some(only.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(extra: serde_json::Value) -> Node {
        let mut base = json!({"metadata": {"name": "n1", "labels": {"disk": "ssd"}}, "spec": {}});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if let (Some(bo), Some(eo)) =
                    (b.get_mut(k).and_then(|x| x.as_object_mut()), v.as_object())
                {
                    bo.extend(eo.clone());
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::from_value(base).expect("a node")
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut template: PodTemplateSpec =
            serde_json::from_value(json!({"spec": v})).expect("a template");
        if let Some(s) = template.spec.as_mut() {
            if s.containers.is_empty() {
                s.containers = vec![Default::default()];
            }
        }
        daemon_spec(&template)
    }

    const RUN: Fit = Fit {
        should_run: true,
        may_continue: true,
    };
    const NEVER: Fit = Fit {
        should_run: false,
        may_continue: false,
    };
    const STAY: Fit = Fit {
        should_run: false,
        may_continue: true,
    };

    #[test]
    fn daemon_tolerations_are_added_once_and_updated() {
        let s = spec(json!({"hostNetwork": true, "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "custom", "operator": "Exists"}
        ]}));
        let tolerations = s.tolerations.unwrap_or_default();
        assert_eq!(tolerations.len(), 8, "{tolerations:?}");
        assert_eq!(tolerations[0].toleration_seconds, None, "updated in place");
        assert!(tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable")));
        let again = spec(json!({}));
        assert_eq!(again.tolerations.map(|t| t.len()), Some(6));
    }

    #[test]
    fn selectors_affinity_and_node_names_decide() {
        let n = node(json!({}));
        assert_eq!(fit(&spec(json!({})), &n), RUN);
        assert_eq!(
            fit(&spec(json!({"nodeSelector": {"disk": "ssd"}})), &n),
            RUN
        );
        assert_eq!(
            fit(&spec(json!({"nodeSelector": {"disk": "hdd"}})), &n),
            NEVER
        );
        assert_eq!(fit(&spec(json!({"nodeName": "n2"})), &n), NEVER);
        let affinity = |terms: serde_json::Value| {
            spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert_eq!(
            fit(
                &affinity(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}])
                ),
                &n
            ),
            RUN
        );
        assert_eq!(
            fit(
                &affinity(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}])
                ),
                &n
            ),
            NEVER
        );
        assert_eq!(
            fit(
                &affinity(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
                                 {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
                ),
                &n
            ),
            RUN
        );
        assert_eq!(fit(&affinity(json!([])), &n), NEVER);
        assert_eq!(fit(&affinity(json!([{}])), &n), NEVER);
    }

    #[test]
    fn taints_keep_new_pods_off_and_no_execute_evicts() {
        let tainted = |effect: &str| {
            node(
                json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": effect}]}}),
            )
        };
        assert_eq!(fit(&spec(json!({})), &tainted("NoSchedule")), STAY);
        assert_eq!(fit(&spec(json!({})), &tainted("NoExecute")), NEVER);
        assert_eq!(fit(&spec(json!({})), &tainted("PreferNoSchedule")), RUN);
        let tolerant = spec(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}),
        );
        assert_eq!(fit(&tolerant, &tainted("NoExecute")), RUN);
        // The daemon tolerations cover cordons, not-ready and unreachable nodes.
        for (key, effect) in [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ] {
            let n = node(
                json!({"spec": {"unschedulable": true, "taints": [{"key": key, "effect": effect}]}}),
            );
            assert_eq!(fit(&spec(json!({})), &n), RUN, "{key}");
        }
        let no_network = node(
            json!({"spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(fit(&spec(json!({})), &no_network), STAY);
        assert_eq!(fit(&spec(json!({"hostNetwork": true})), &no_network), RUN);
    }

    #[test]
    fn pods_are_pinned_through_affinity_and_found_again() {
        let mut s = spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]
        }}}));
        pin_to_node(&mut s.affinity, "n7");
        let affinity = s
            .affinity
            .clone()
            .unwrap_or_default()
            .node_affinity
            .unwrap_or_default();
        assert_eq!(
            serde_json::to_value(&affinity.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default(),
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]})
        );
        assert!(affinity
            .preferred_during_scheduling_ignored_during_execution
            .is_some());
        assert_eq!(s.node_name, None);
        let mut pod = PodView::from(&minik_api::k8s_openapi::api::core::v1::Pod {
            spec: Some(s),
            ..Default::default()
        });
        assert_eq!(target_node(&pod), Some("n7"));
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some("n8".into());
        }
        assert_eq!(target_node(&pod), Some("n8"));
        assert_eq!(target_node(&PodView::default()), None);
    }
}
