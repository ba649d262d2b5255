//! The scores: how much a node that passed the filters is preferred, each on kube-scheduler's
//! 0–100 scale, computed as kube-scheduler's default plugins compute them.

use minik_api::k8s_openapi::api::core::v1::Taint;

use crate::pod::PodRequirements;
use crate::resources::Resources;
use crate::snapshot::{NodeFacts, NodeInfo};
use minik_api::wellknown::tolerates;

/// The top of every score's scale (Kubernetes' `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// How much each score counts in a node's total: kube-scheduler's default plugin weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub least_allocated: i64,
    pub balanced_allocation: i64,
    pub spreading: i64,
    pub node_affinity: i64,
    pub taint_toleration: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            least_allocated: 1,
            balanced_allocation: 1,
            spreading: 2,
            node_affinity: 2,
            taint_toleration: 3,
        }
    }
}

fn least_requested(requested: i64, allocatable: i64) -> i64 {
    if requested > allocatable {
        return 0;
    }
    let free = allocatable - requested;
    match free.checked_mul(MAX_NODE_SCORE) {
        Some(scaled) => scaled / allocatable,
        // Amounts are user input: beyond what i64 holds, the slower wide division.
        None => ((i128::from(free) * i128::from(MAX_NODE_SCORE)) / i128::from(allocatable)) as i64,
    }
}

/// Least allocated (Kubernetes' `NodeResourcesFit` with `LeastAllocated`): the share of cpu
/// and memory that stays free once the pod is placed, averaged over the resources the node has.
/// `requested` includes the pod.
pub fn least_allocated(requested: Resources, allocatable: Resources) -> i64 {
    let mut sum = 0;
    let mut resources = 0;
    for (req, alloc) in [
        (requested.milli_cpu, allocatable.milli_cpu),
        (requested.memory, allocatable.memory),
    ] {
        if alloc <= 0 {
            continue;
        }
        sum += least_requested(req, alloc);
        resources += 1;
    }
    if resources == 0 {
        0
    } else {
        sum / resources
    }
}

/// Balanced allocation (Kubernetes' `NodeResourcesBalancedAllocation`): nodes whose cpu and
/// memory would be used in similar proportions score higher; 100 minus the standard deviation
/// of the used fractions. `requested` includes the pod.
pub fn balanced_allocation(requested: Resources, allocatable: Resources) -> i64 {
    let mut fractions = [0.0f64; 2];
    let mut n = 0;
    for (req, alloc) in [
        (requested.milli_cpu, allocatable.milli_cpu),
        (requested.memory, allocatable.memory),
    ] {
        if alloc <= 0 {
            continue;
        }
        fractions[n] = (req as f64 / alloc as f64).min(1.0);
        n += 1;
    }
    let std = if n == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Spreading (Kubernetes' `SelectorSpread`, by controller owner): a node scores less the more
/// pods of the same owner it already has, relative to the node that has the most.
pub fn spreading(count: u32, max_count: u32) -> i64 {
    if max_count == 0 {
        return MAX_NODE_SCORE;
    }
    (MAX_NODE_SCORE as f64 * f64::from(max_count - count.min(max_count)) / f64::from(max_count))
        as i64
}

/// The sum of the weights of the preferred node affinity terms the node matches (before
/// normalising).
pub fn preferred_affinity(name: &str, facts: &NodeFacts, pod: &PodRequirements) -> i64 {
    pod.preferred_terms
        .iter()
        .filter(|(_, term)| term.matches(name, &facts.labels))
        .map(|(weight, _)| *weight)
        .sum()
}

/// How many `PreferNoSchedule` taints of the node the pod does not tolerate (before
/// normalising); only tolerations for that effect (or every effect) count, as in Kubernetes.
pub fn intolerable_prefer_no_schedule(taints: &[Taint], pod: &PodRequirements) -> i64 {
    let count = taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !pod.tolerations.iter().any(|tol| {
                matches!(
                    tol.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(tol, t)
            })
        })
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Kubernetes' `DefaultNormalizeScore`: scales raw scores so the largest is 100; `reverse`
/// turns "more is worse" into "more is better". With every raw score zero, nothing changes
/// (or, reversed, every node gets 100).
pub fn normalize(raw: i64, max_raw: i64, reverse: bool) -> i64 {
    if max_raw <= 0 {
        return if reverse { MAX_NODE_SCORE } else { raw };
    }
    let scaled = raw.saturating_mul(MAX_NODE_SCORE) / max_raw;
    if reverse {
        MAX_NODE_SCORE - scaled
    } else {
        scaled
    }
}

/// The raw scores of one feasible node, before normalising across nodes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawScores {
    pub least_allocated: i64,
    pub balanced_allocation: i64,
    pub owner_count: u32,
    pub preferred_affinity: i64,
    pub intolerable_taints: i64,
}

impl RawScores {
    /// The raw scores of a node that has `owner_count` pods of the pod's owner.
    pub fn of(
        node: &NodeInfo,
        facts: &NodeFacts,
        pod: &PodRequirements,
        owner_count: u32,
    ) -> RawScores {
        let least = least_allocated(
            node.non_zero_requested.plus(pod.non_zero_requests),
            facts.allocatable,
        );
        // A pod that asks for nothing has no balance to keep (Kubernetes skips it).
        let balanced = if pod.requests.is_zero() {
            0
        } else {
            balanced_allocation(node.requested.plus(pod.requests), facts.allocatable)
        };
        RawScores {
            least_allocated: least,
            balanced_allocation: balanced,
            owner_count,
            preferred_affinity: if pod.preferred_terms.is_empty() {
                0
            } else {
                preferred_affinity(&node.name, facts, pod)
            },
            intolerable_taints: if facts.taints.is_empty() {
                0
            } else {
                intolerable_prefer_no_schedule(&facts.taints, pod)
            },
        }
    }
}

/// The largest raw values over the feasible nodes, which normalising divides by.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Maxima {
    pub owner_count: u32,
    pub preferred_affinity: i64,
    pub intolerable_taints: i64,
}

impl Maxima {
    pub fn add(&mut self, raw: &RawScores) {
        self.owner_count = self.owner_count.max(raw.owner_count);
        self.preferred_affinity = self.preferred_affinity.max(raw.preferred_affinity);
        self.intolerable_taints = self.intolerable_taints.max(raw.intolerable_taints);
    }
}

/// A node's total: each score normalised and weighted.
pub(crate) fn total(raw: &RawScores, max: &Maxima, w: &Weights) -> i64 {
    w.least_allocated * raw.least_allocated
        + w.balanced_allocation * raw.balanced_allocation
        + w.spreading * spreading(raw.owner_count, max.owner_count)
        + w.node_affinity * normalize(raw.preferred_affinity, max.preferred_affinity, false)
        + w.taint_toleration * normalize(raw.intolerable_taints, max.intolerable_taints, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GI: i64 = 1 << 30;

    #[test]
    fn least_allocated_prefers_free_nodes() {
        let alloc = Resources::new(4000, 8 * GI);
        let cases = [
            ("empty node", Resources::new(0, 0), 100),
            ("half used", Resources::new(2000, 4 * GI), 50),
            (
                "cpu half, memory quarter",
                Resources::new(2000, 2 * GI),
                (50 + 75) / 2,
            ),
            ("full", Resources::new(4000, 8 * GI), 0),
            (
                "over-committed counts as full",
                Resources::new(5000, 9 * GI),
                0,
            ),
            (
                "rounds down per resource",
                Resources::new(1, 0),
                (99 + 100) / 2,
            ),
        ];
        for (name, requested, want) in cases {
            assert_eq!(least_allocated(requested, alloc), want, "{name}");
        }
        assert_eq!(
            least_allocated(Resources::new(1000, 0), Resources::new(2000, 0)),
            50,
            "a resource the node does not have is left out"
        );
        assert_eq!(least_allocated(Resources::ZERO, Resources::ZERO), 0);
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let alloc = Resources::new(4000, 8 * GI);
        let cases = [
            ("even", Resources::new(2000, 4 * GI), 100),
            ("nothing used", Resources::new(0, 0), 100),
            ("cpu full, memory empty", Resources::new(4000, 0), 50),
            ("cpu half, memory quarter", Resources::new(2000, 2 * GI), 87),
            ("fractions are capped at one", Resources::new(8000, 0), 50),
        ];
        for (name, requested, want) in cases {
            assert_eq!(balanced_allocation(requested, alloc), want, "{name}");
        }
    }

    #[test]
    fn spreading_prefers_nodes_with_fewer_pods_of_the_owner() {
        let cases = [(0, 0, 100), (0, 2, 100), (1, 2, 50), (2, 2, 0), (1, 3, 66)];
        for (count, max, want) in cases {
            assert_eq!(spreading(count, max), want, "{count} of max {max}");
        }
    }

    #[test]
    fn preferred_affinity_adds_matching_weights() {
        let pod: minik_api::podview::PodView = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
                {"weight": 7, "preference": {}}
            ]}}}
        }))
        .expect("a pod");
        let pod = PodRequirements::of(&pod);
        let facts = |labels: serde_json::Value| NodeFacts {
            labels: serde_json::from_value(labels).expect("labels"),
            ready: true,
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::ZERO,
            max_pods: None,
        };
        let cases = [
            ("both", json!({"zone": "a", "disk": "ssd"}), 15),
            ("zone only", json!({"zone": "a"}), 10),
            ("disk only", json!({"disk": "hdd"}), 5),
            ("none (an empty preference matches nothing)", json!({}), 0),
        ];
        for (name, labels, want) in cases {
            assert_eq!(
                preferred_affinity("n", &facts(labels), &pod),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn prefer_no_schedule_taints_count_unless_tolerated() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": "a", "value": "1", "effect": "PreferNoSchedule"},
            {"key": "b", "value": "2", "effect": "PreferNoSchedule"},
            {"key": "c", "value": "3", "effect": "NoSchedule"}
        ]))
        .expect("taints");
        let with = |tolerations: serde_json::Value| PodRequirements {
            tolerations: serde_json::from_value(tolerations).expect("tolerations"),
            ..PodRequirements::default()
        };
        let cases = [
            ("no tolerations", json!([]), 2),
            (
                "one tolerated",
                json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]),
                1,
            ),
            (
                "empty effect tolerates too",
                json!([{"key": "b", "operator": "Exists"}]),
                1,
            ),
            (
                "a NoSchedule toleration does not count",
                json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]),
                2,
            ),
            ("everything tolerated", json!([{"operator": "Exists"}]), 0),
        ];
        for (name, tolerations, want) in cases {
            assert_eq!(
                intolerable_prefer_no_schedule(&taints, &with(tolerations)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn normalizing_scales_to_one_hundred() {
        let cases = [
            (0, 0, false, 0),
            (5, 10, false, 50),
            (10, 10, false, 100),
            (0, 0, true, 100),
            (1, 2, true, 50),
            (2, 2, true, 0),
        ];
        for (raw, max, reverse, want) in cases {
            assert_eq!(
                normalize(raw, max, reverse),
                want,
                "{raw}/{max} reverse={reverse}"
            );
        }
    }
}
