//! What controllers need to know about pods: whether one is active, ready, available (ready for
//! minReadySeconds), and which to delete first when there are too many (Kubernetes'
//! `ActivePodsWithRanks` order).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;

use minik_api::wellknown::ANNOTATION_POD_DELETION_COST;

use crate::kinds::{created_at, is_deleting};

pub(crate) fn phase(pod: &PodView) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn node_name(pod: &PodView) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Neither finished nor being deleted: a pod that counts towards a replica count.
pub(crate) fn is_active(pod: &PodView) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_deleting(&pod.metadata)
}

/// When the pod became Ready, if it is Ready. `Some(None)` is ready with no recorded time.
fn ready_since(pod: &PodView) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub(crate) fn is_ready(pod: &PodView) -> bool {
    ready_since(pod).is_some()
}

/// Whether a pod serves as a replica yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Availability {
    NotReady,
    /// Ready, but not for minReadySeconds yet: available after this long.
    AvailableIn(Duration),
    Available,
}

/// Kubernetes' `IsPodAvailable`: ready, and ready for longer than `min_ready_seconds`.
pub(crate) fn availability(pod: &PodView, min_ready_seconds: i32, now: Timestamp) -> Availability {
    let Some(since) = ready_since(pod) else {
        return Availability::NotReady;
    };
    if min_ready_seconds <= 0 {
        return Availability::Available;
    }
    let Some(since) = since else {
        // Ready without a transition time: availability cannot be measured, as in Kubernetes.
        return Availability::NotReady;
    };
    let ready_for_ms = now.as_millisecond().saturating_sub(since.as_millisecond());
    let needed_ms = i64::from(min_ready_seconds) * 1000;
    // Kubernetes asks for strictly more than minReadySeconds.
    if ready_for_ms > needed_ms {
        Availability::Available
    } else {
        let left = (needed_ms - ready_for_ms).max(0) as u64 + 1;
        Availability::AvailableIn(Duration::from_millis(left))
    }
}

fn phase_ordinal(pod: &PodView) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &PodView) -> i64 {
    pod.annotation(ANNOTATION_POD_DELETION_COST)
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(0, i64::from)
}

fn max_restarts(pod: &PodView) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Kubernetes' `afterOrZero`: an unknown time first, then the later time first.
fn later_or_unknown_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The order in which surplus pods are deleted, first to go first: unscheduled before
/// scheduled; Pending before Unknown before Running; not ready before ready; lower deletion
/// cost first; pods doubled up on a node (higher `rank`) first; ready for less time first;
/// more container restarts first; newer first.
fn deletion_order(a: (&PodView, usize), b: (&PodView, usize)) -> Ordering {
    let ((a, rank_a), (b, rank_b)) = (a, b);
    let a_unscheduled = node_name(a).is_empty();
    let b_unscheduled = node_name(b).is_empty();
    b_unscheduled
        .cmp(&a_unscheduled)
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(ta), Some(tb)) => later_or_unknown_first(ta, tb),
            _ => Ordering::Equal,
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| later_or_unknown_first(created_at(&a.metadata), created_at(&b.metadata)))
}

/// The `count` pods of `pods` to delete first. A pod's rank is how many of `related` (the pods
/// of the same workload) share its node, so that scaling down evens pods out over nodes.
pub(crate) fn to_delete<'a>(
    pods: &[&'a PodView],
    related: &[&PodView],
    count: usize,
) -> Vec<&'a PodView> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let mut ranked: Vec<(&PodView, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| deletion_order(*a, *b));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pods for tests, built the way the API server and a node would leave them.

    use minik_api::k8s_openapi::api::core::v1::PodCondition;
    use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ObjectMeta, OwnerReference, Time,
    };
    use minik_api::k8s_openapi::jiff::Timestamp;
    use minik_api::podview::{PodSpecView, PodStatusView, PodView};

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid time")
    }

    /// A pending, unscheduled pod labelled `app=web`, created at `at(created)`.
    pub(crate) fn pod(name: &str, created: i64) -> PodView {
        PodView {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("7".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(PodSpecView::default()),
            status: Some(PodStatusView {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        }
    }

    pub(crate) fn on_node(mut pod: PodView, node: &str) -> PodView {
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.into());
        }
        pod
    }

    /// Running and Ready since `at(since)`.
    pub(crate) fn ready(mut pod: PodView, since: i64) -> PodView {
        pod.status = Some(PodStatusView {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(since))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    pub(crate) fn running(mut pod: PodView) -> PodView {
        pod.status = Some(PodStatusView {
            phase: Some("Running".into()),
            ..Default::default()
        });
        pod
    }

    pub(crate) fn owned_by(mut pod: PodView, kind: &str, name: &str, uid: &str) -> PodView {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: if kind == "ReplicationController" {
                "v1"
            } else {
                "apps/v1"
            }
            .into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        pod
    }

    pub(crate) fn labelled(mut pod: PodView, key: &str, value: &str) -> PodView {
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn names(pods: &[&PodView]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn deletion_prefers_unscheduled_then_pending_then_not_ready_then_newest() {
        let cases: Vec<(&str, Vec<PodView>, usize, Vec<&str>)> = vec![
            (
                "unscheduled before scheduled",
                vec![ready(on_node(pod("a", 0), "n1"), 1), pod("b", 0)],
                1,
                vec!["b"],
            ),
            (
                "pending before running",
                vec![
                    running(on_node(pod("a", 0), "n1")),
                    on_node(pod("b", 0), "n1"),
                ],
                1,
                vec!["b"],
            ),
            (
                "not ready before ready",
                vec![
                    ready(on_node(pod("a", 0), "n1"), 5),
                    running(on_node(pod("b", 9), "n1")),
                ],
                1,
                vec!["b"],
            ),
            (
                "ready for less time first",
                vec![
                    ready(on_node(pod("a", 0), "n1"), 5),
                    ready(on_node(pod("b", 0), "n2"), 9),
                    ready(on_node(pod("c", 0), "n3"), 1),
                ],
                2,
                vec!["b", "a"],
            ),
            (
                "newest first when otherwise equal",
                vec![
                    ready(on_node(pod("a", 1), "n1"), 10),
                    ready(on_node(pod("b", 3), "n2"), 10),
                    ready(on_node(pod("c", 2), "n3"), 10),
                ],
                2,
                vec!["b", "c"],
            ),
            (
                "doubled-up nodes first",
                vec![
                    ready(on_node(pod("a", 1), "n1"), 10),
                    ready(on_node(pod("b", 1), "n2"), 10),
                    ready(on_node(pod("c", 1), "n2"), 10),
                ],
                1,
                vec!["b"],
            ),
            (
                "all of them",
                vec![pod("a", 0), pod("b", 0)],
                5,
                vec!["a", "b"],
            ),
        ];
        for (case, pods, count, expected) in cases {
            let refs: Vec<&PodView> = pods.iter().collect();
            let chosen = to_delete(&refs, &refs, count);
            assert_eq!(names(&chosen), expected, "{case}");
        }
    }

    #[test]
    fn deletion_cost_is_honoured() {
        let mut cheap = ready(on_node(pod("cheap", 0), "n1"), 1);
        cheap.metadata.annotations =
            Some([(ANNOTATION_POD_DELETION_COST.to_owned(), "-5".to_owned())].into());
        let pods = [ready(on_node(pod("new", 9), "n2"), 9), cheap];
        let refs: Vec<&PodView> = pods.iter().collect();
        assert_eq!(names(&to_delete(&refs, &refs, 1)), vec!["cheap"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = ready(pod("a", 0), 10);
        assert_eq!(availability(&p, 0, at(10)), Availability::Available);
        assert_eq!(
            availability(&p, 5, at(12)),
            Availability::AvailableIn(Duration::from_millis(3001))
        );
        assert_eq!(
            availability(&p, 5, at(15)),
            Availability::AvailableIn(Duration::from_millis(1))
        );
        assert_eq!(availability(&p, 5, at(16)), Availability::Available);
        assert_eq!(
            availability(&pod("b", 0), 0, at(16)),
            Availability::NotReady
        );
    }

    #[test]
    fn finished_and_deleting_pods_are_not_active() {
        let mut done = pod("a", 0);
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert!(!is_active(&done));
        let mut going = pod("b", 0);
        going.metadata.deletion_timestamp =
            Some(minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
        assert!(!is_active(&going));
        assert!(is_active(&pod("c", 0)));
    }
}
