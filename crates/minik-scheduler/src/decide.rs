//! The decision: a snapshot and a pod in; the node to bind it to, or why it fits nowhere, out.
//! No I/O, no clock, no randomness — the caller passes the tie-break turn.

use std::collections::BTreeMap;
use std::fmt;

use crate::filter::{filter, Reason};
use crate::pod::PodRequirements;
use crate::score::{total, Maxima, RawScores, Weights};
use crate::snapshot::Snapshot;
use crate::volumes::{pre_filter, ClaimToSelect};

/// Where a pod goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// The winning total score.
    pub score: i64,
    /// How many nodes passed the filters.
    pub feasible: usize,
    /// The claims that get the node's name in their `volume.kubernetes.io/selected-node`
    /// annotation before the pod is bound.
    pub claims_to_select: Vec<ClaimToSelect>,
}

/// Why a pod fits no node: every known node with its reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes were considered (the "N" of "0/N nodes are available").
    pub num_nodes: usize,
    /// Each node that did not fit, with its reasons.
    pub reasons: Vec<(String, Vec<Reason>)>,
    /// Why the pod fits no node whatever the node (a claim that is missing, for one), when
    /// that is the reason: then `reasons` is empty.
    pub pre_filter: Option<String>,
}

impl FitError {
    /// How many nodes gave each reason.
    pub fn histogram(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, reasons) in &self.reasons {
            for r in reasons {
                *counts.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl fmt::Display for FitError {
    /// kube-scheduler's message: `0/3 nodes are available: 1 node(s) had untolerated taint
    /// {dedicated: db}, 2 Insufficient cpu.` — one "count reason" entry per reason, sorted as
    /// strings (so the count is part of the order, exactly as kube-scheduler's `sort.Strings`);
    /// `0/3 nodes are available: persistentvolumeclaim "data" not found.` when the pod fits no
    /// node whatever the node; `no nodes available to schedule pods` when there are no nodes at
    /// all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        if let Some(message) = &self.pre_filter {
            return write!(f, "0/{} nodes are available: {message}.", self.num_nodes);
        }
        let mut entries: Vec<String> = self
            .histogram()
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        entries.sort();
        write!(f, "0/{} nodes are available:", self.num_nodes)?;
        if !entries.is_empty() {
            write!(f, " {}.", entries.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Chooses a node for `pod`: every known node is filtered; the feasible ones are scored with
/// `weights`; among the best-scored, the `turn`-th (modulo their number) in snapshot order
/// wins, so a caller that advances `turn` after each placement uses equal nodes evenly.
pub fn schedule_with(
    snapshot: &Snapshot,
    pod: &PodRequirements,
    turn: usize,
    weights: &Weights,
) -> Result<Placement, FitError> {
    let volumes = match pre_filter(snapshot.volumes(), |c| snapshot.claim_users(c), pod) {
        Ok(volumes) => volumes,
        Err(message) => {
            return Err(FitError {
                num_nodes: snapshot.len(),
                reasons: Vec::new(),
                pre_filter: Some(message),
            })
        }
    };
    let mut feasible = Vec::with_capacity(snapshot.len());
    let mut maxima = Maxima::default();
    let owner_counts = pod
        .owner
        .as_deref()
        .and_then(|o| snapshot.owner_counts_by_index(o));
    for (i, node, facts) in snapshot.indexed_nodes() {
        if filter(node, facts, pod, &volumes).is_ok() {
            let owned = owner_counts
                .as_ref()
                .and_then(|c| c.get(i).copied())
                .unwrap_or(0);
            let raw = RawScores::of(node, facts, pod, owned);
            maxima.add(&raw);
            feasible.push((node, raw));
        }
    }
    if feasible.is_empty() {
        // Only now turn each node's failure into reasons: the common case allocates nothing.
        let reasons = snapshot
            .nodes()
            .filter_map(|(node, facts)| {
                filter(node, facts, pod, &volumes)
                    .err()
                    .map(|failure| (node.name.clone(), failure.reasons(facts)))
            })
            .collect();
        return Err(FitError {
            num_nodes: snapshot.len(),
            reasons,
            pre_filter: None,
        });
    }
    let mut best = i64::MIN;
    let mut ties = 0usize;
    let mut totals = Vec::with_capacity(feasible.len());
    for (_, raw) in &feasible {
        let t = total(raw, &maxima, weights);
        if t > best {
            best = t;
            ties = 1;
        } else if t == best {
            ties += 1;
        }
        totals.push(t);
    }
    let pick = turn % ties;
    let winner = feasible
        .iter()
        .zip(&totals)
        .filter(|(_, t)| **t == best)
        .nth(pick)
        .map(|((node, _), _)| node.name.clone())
        .unwrap_or_default();
    Ok(Placement {
        node: winner,
        score: best,
        feasible: feasible.len(),
        claims_to_select: volumes.to_select,
    })
}

/// [`schedule_with`] kube-scheduler's default weights.
pub fn schedule(
    snapshot: &Snapshot,
    pod: &PodRequirements,
    turn: usize,
) -> Result<Placement, FitError> {
    schedule_with(snapshot, pod, turn, &Weights::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::PlacedPod;
    use minik_api::k8s_openapi::api::core::v1::Node;
    use minik_api::podview::PodView;
    use serde_json::{json, Value};

    fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Node {
        let base = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        serde_json::from_value(minik_api::patch::merge_patch(&base, &extra)).expect("a node")
    }

    fn pod(spec: Value, owner: Option<&str>) -> PodRequirements {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "main"}]);
        }
        let mut meta = json!({"name": "p"});
        if let Some(uid) = owner {
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        let pod: PodView =
            serde_json::from_value(json!({"metadata": meta, "spec": spec})).expect("a pod");
        PodRequirements::of(&pod)
    }

    fn cpu(request: &str) -> Value {
        json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": request}}}]})
    }

    fn snapshot(nodes: &[Node]) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            s.set_node(n);
        }
        s
    }

    /// Schedules `pods` one after another, placing each where it went (as the scheduler's
    /// assume step does), and returns the nodes in order.
    fn place_all(s: &mut Snapshot, pods: &[PodRequirements]) -> Vec<String> {
        let mut out = Vec::new();
        for (turn, p) in pods.iter().enumerate() {
            let placement = schedule(s, p, turn).expect("fits");
            s.add_pod(&PlacedPod::new(&placement.node, p));
            out.push(placement.node);
        }
        out
    }

    #[test]
    fn the_message_reads_like_kube_scheduler() {
        let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
        let cases: Vec<(&str, Vec<Node>, Value, &str)> = vec![
            (
                "resources and a taint, sorted as strings",
                vec![
                    node("n1", "1", "1Gi", json!({})),
                    node("n2", "1", "1Gi", json!({})),
                    node("n3", "8", "8Gi", taint.clone()),
                ],
                cpu("2"),
                "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu.",
            ),
            (
                "one node short of both resources counts twice",
                vec![node("n1", "1", "1Gi", json!({}))],
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}),
                "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.",
            ),
            (
                "every kind of reason",
                vec![
                    node("a", "1", "1Gi", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
                    node("b", "1", "1Gi", json!({"spec": {"unschedulable": true}})),
                    node("c", "1", "1Gi", json!({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]}})),
                    node("d", "1", "1Gi", json!({"metadata": {"labels": {"disk": "hdd"}}})),
                    node("e", "1", "1Gi", json!({"metadata": {"labels": {"disk": "ssd"}}})),
                    node("f", "1", "100Mi", json!({"metadata": {"labels": {"disk": "ssd"}}})),
                ],
                json!({
                    "nodeSelector": {"disk": "ssd"},
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}, "ports": [{"containerPort": 80, "hostPort": 80}]}]
                }),
                "0/6 nodes are available: 1 Insufficient memory, 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were not ready, 1 node(s) were unschedulable.",
            ),
            ("no nodes at all", vec![], json!({}), "no nodes available to schedule pods"),
        ];
        for (name, nodes, spec, want) in cases {
            let mut s = snapshot(&nodes);
            // Node e holds port 80 already.
            s.add_pod(&PlacedPod {
                node: "e".into(),
                requests: Default::default(),
                non_zero_requests: Default::default(),
                host_ports: vec![crate::pod::HostPort::new("", "TCP", 80)],
                owner: None,
                claims: Vec::new(),
            });
            let err = schedule(&s, &pod(spec, None), 0).expect_err(name);
            assert_eq!(err.to_string(), want, "{name}");
        }
    }

    #[test]
    fn counts_sort_as_strings_like_kube_scheduler() {
        // "10 ..." sorts before "9 ..." because kube-scheduler sorts the formatted strings.
        let mut nodes = Vec::new();
        for i in 0..10 {
            nodes.push(node(&format!("small-{i}"), "1", "1Gi", json!({})));
        }
        for i in 0..9 {
            nodes.push(node(
                &format!("cordoned-{i}"),
                "8",
                "8Gi",
                json!({"spec": {"unschedulable": true}}),
            ));
        }
        let err = schedule(&snapshot(&nodes), &pod(cpu("2"), None), 0).expect_err("no fit");
        assert_eq!(
            err.to_string(),
            "0/19 nodes are available: 10 Insufficient cpu, 9 node(s) were unschedulable."
        );
    }

    #[test]
    fn placement_follows_the_scores() {
        struct Case {
            name: &'static str,
            nodes: Vec<Node>,
            placed: Vec<(&'static str, &'static str)>,
            pod: PodRequirements,
            want: &'static str,
        }
        let gi = "8Gi";
        let cases = vec![
            Case {
                name: "least allocated: the emptier node",
                nodes: vec![
                    node("n1", "4", gi, json!({})),
                    node("n2", "4", gi, json!({})),
                ],
                placed: vec![("n1", "2")],
                pod: pod(cpu("500m"), None),
                want: "n2",
            },
            Case {
                name: "least allocated: the bigger node",
                nodes: vec![
                    node("small", "2", gi, json!({})),
                    node("big", "16", gi, json!({})),
                ],
                placed: vec![],
                pod: pod(cpu("1"), None),
                want: "big",
            },
            Case {
                name: "balanced allocation breaks an equal least-allocated score",
                // On n1 the pod uses cpu and memory evenly; on n2 unevenly.
                nodes: vec![
                    node("n1", "4", "4Gi", json!({})),
                    node("n2", "2", "8Gi", json!({})),
                ],
                placed: vec![],
                pod: pod(
                    json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}),
                    None,
                ),
                want: "n1",
            },
            Case {
                name: "preferred affinity outweighs a little free space",
                nodes: vec![
                    node(
                        "n1",
                        "4",
                        gi,
                        json!({"metadata": {"labels": {"zone": "a"}}}),
                    ),
                    node(
                        "n2",
                        "4",
                        gi,
                        json!({"metadata": {"labels": {"zone": "b"}}}),
                    ),
                ],
                placed: vec![("n1", "500m")],
                pod: pod(
                    json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
                    ]}}}),
                    None,
                ),
                want: "n1",
            },
            Case {
                name: "a PreferNoSchedule taint is avoided",
                nodes: vec![
                    node(
                        "n1",
                        "4",
                        gi,
                        json!({"spec": {"taints": [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]}}),
                    ),
                    node("n2", "4", gi, json!({})),
                ],
                placed: vec![("n2", "500m")],
                pod: pod(json!({}), None),
                want: "n2",
            },
        ];
        for c in cases {
            let mut s = snapshot(&c.nodes);
            for (on, request) in &c.placed {
                s.add_pod(&PlacedPod::new(on, &pod(cpu(request), None)));
            }
            let got = schedule(&s, &c.pod, 0).expect(c.name);
            assert_eq!(got.node, c.want, "{}", c.name);
        }
    }

    #[test]
    fn replicas_of_one_owner_spread_over_nodes() {
        // After the first replica, least-allocated alone would already prefer the other
        // nodes; spreading keeps doing so once every node has one.
        let mut s = snapshot(&[
            node("n1", "4", "8Gi", json!({})),
            node("n2", "4", "8Gi", json!({})),
            node("n3", "4", "8Gi", json!({})),
        ]);
        let replicas: Vec<_> = (0..3).map(|_| pod(cpu("100m"), Some("rs-1"))).collect();
        let mut got = place_all(&mut s, &replicas);
        got.sort();
        assert_eq!(got, ["n1", "n2", "n3"]);
        // And with more replicas than nodes, no node gets a third before each has two.
        let more: Vec<_> = (0..3).map(|_| pod(cpu("100m"), Some("rs-1"))).collect();
        place_all(&mut s, &more);
        for n in ["n1", "n2", "n3"] {
            assert_eq!(s.owned_by("rs-1", n), 2, "{n}");
        }
    }

    #[test]
    fn equal_nodes_are_used_evenly() {
        // Pods that ask for exactly nothing (explicit zeros) leave every node's score equal;
        // the turn makes them go round.
        let nodes: Vec<Node> = (1..=4)
            .map(|i| node(&format!("n{i}"), "4", "8Gi", json!({})))
            .collect();
        let mut s = snapshot(&nodes);
        let zero = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "0", "memory": "0"}}}]}),
            None,
        );
        let pods = vec![zero; 8];
        let got = place_all(&mut s, &pods);
        for n in ["n1", "n2", "n3", "n4"] {
            assert_eq!(got.iter().filter(|g| *g == n).count(), 2, "{n} in {got:?}");
        }
    }

    #[test]
    fn only_feasible_nodes_are_chosen() {
        let mut s = snapshot(&[
            node(
                "big",
                "16",
                "32Gi",
                json!({"spec": {"unschedulable": true}}),
            ),
            node("small", "1", "1Gi", json!({})),
        ]);
        let got = schedule(&s, &pod(cpu("500m"), None), 0).expect("fits small");
        assert_eq!(got.node, "small");
        assert_eq!(got.feasible, 1);
        s.add_pod(&PlacedPod::new("small", &pod(cpu("500m"), None)));
        s.add_pod(&PlacedPod::new("small", &pod(cpu("500m"), None)));
        let err = schedule(&s, &pod(cpu("500m"), None), 0).expect_err("full");
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
        );
    }
}
