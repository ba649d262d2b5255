//! The pure part of the disruption controller: from a budget, the pods of its namespace, what
//! the pods' controllers say of their scale and `now`, the status to write, the events to
//! record and when to look again (Kubernetes' `trySync`, `failSafe` and their events). The
//! arithmetic is [`minik_api::disruption`]'s.

use std::time::Duration;

use minik_api::disruption::{self, OwnerScale};
use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_api::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;

use crate::action::Note;

/// The component the controller's events come from (Kubernetes' controller manager).
const COMPONENT: &str = "controllermanager";

/// What one pass over a budget decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    /// The status to write, if the stored one is not already it.
    pub status: Option<PodDisruptionBudgetStatus>,
    pub notes: Vec<Note>,
    /// Look again then: when the earliest recorded eviction times out.
    pub requeue_after: Option<Duration>,
}

pub(crate) fn reference(pdb: &PodDisruptionBudget) -> ObjectReference {
    ObjectReference {
        api_version: Some("policy/v1".into()),
        kind: Some("PodDisruptionBudget".into()),
        namespace: pdb.metadata.namespace.clone(),
        name: pdb.metadata.name.clone(),
        uid: pdb.metadata.uid.clone(),
        resource_version: pdb.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn pod_reference(pod: &PodView) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn note(
    involved: ObjectReference,
    type_: &'static str,
    reason: &'static str,
    message: String,
) -> Note {
    Note {
        involved,
        component: COMPONENT,
        type_,
        reason,
        message,
    }
}

/// The budget's selector as kubectl prints it, for messages.
fn selector_text(pdb: &PodDisruptionBudget) -> String {
    match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => "nil".into(),
        Some(sel) => serde_json::to_value(sel)
            .map(|v| minik_api::printers::selector_string(Some(&v)))
            .unwrap_or_default(),
    }
}

/// One pass over `pdb`: `pods` are the pods of its namespace, `owner_of` tells the scale of a
/// pod's controller.
pub(crate) fn reconcile(
    pdb: &PodDisruptionBudget,
    pods: &[&PodView],
    owner_of: impl FnMut(&PodView) -> OwnerScale,
    now: Timestamp,
) -> Decision {
    let mut decision = Decision::default();
    let me = reference(pdb);
    let selector = match disruption::pod_selector(pdb) {
        Ok(s) => s,
        Err(e) => {
            decision.notes.push(note(
                me,
                "Warning",
                "NoPods",
                format!("Failed to get pods: {e}"),
            ));
            return fail_safe(pdb, &e, decision, now);
        }
    };
    let selected: Vec<&PodView> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.namespace == pdb.metadata.namespace)
        .filter(|p| {
            static NO_LABELS: std::collections::BTreeMap<String, String> =
                std::collections::BTreeMap::new();
            selector.matches(p.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
        })
        .collect();
    if selected.is_empty() {
        decision.notes.push(note(
            me.clone(),
            "Normal",
            "NoPods",
            "No matching pods found".into(),
        ));
    }
    let spec = pdb.spec.clone().unwrap_or_default();
    let expected = match disruption::expected(&spec, &selected, owner_of) {
        Ok(e) => e,
        Err(e) => {
            decision.notes.push(note(
                me,
                "Warning",
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            ));
            return fail_safe(pdb, &e, decision, now);
        }
    };
    if !expected.unmanaged.is_empty() {
        decision.notes.push(note(
            me.clone(),
            "Warning",
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                selector_text(pdb)
            ),
        ));
    }
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let disrupted = disruption::disrupted_pods(&selected, recorded, now);
    let namespace = pdb.metadata.namespace.as_deref().unwrap_or_default();
    let name = pdb.metadata.name.as_deref().unwrap_or_default();
    for overdue in &disrupted.overdue {
        if let Some(pod) = selected
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(overdue.as_str()))
        {
            decision.notes.push(note(
                pod_reference(pod),
                "Warning",
                "NotDeleted",
                format!("Pod was expected by PDB {namespace}/{name} to be deleted but it wasn't"),
            ));
        }
    }
    let healthy = disruption::current_healthy(&selected, &disrupted.pods, now);
    let status = disruption::status(pdb, healthy, &expected, disrupted.pods, now);
    if !disruption::up_to_date(pdb, &status) {
        decision.status = Some(status);
    }
    decision.requeue_after = disrupted.recheck_at.map(|at| {
        let ms = at.as_millisecond().saturating_sub(now.as_millisecond());
        // A second past the timeout, so that the entry has timed out when looked at again.
        Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 1000)
    });
    decision
}

/// Kubernetes' `failSafe`: no disruption allowed while the status cannot be computed.
fn fail_safe(
    pdb: &PodDisruptionBudget,
    error: &str,
    mut decision: Decision,
    now: Timestamp,
) -> Decision {
    let status = disruption::failed_status(pdb, error, now);
    if pdb.status.as_ref() != Some(&status) {
        decision.status = Some(status);
    }
    decision
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use minik_api::k8s_openapi::api::core::v1::PodCondition;

    use minik_api::k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, Time,
    };
    use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use minik_api::podview::PodStatusView;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn pod(name: &str, app: &str, ready: bool) -> PodView {
        PodView {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..Default::default()
            },
            status: Some(PodStatusView {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn budget(min: IntOrString) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(min),
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn scale(_: &PodView) -> OwnerScale {
        OwnerScale::Found {
            uid: "d".into(),
            replicas: 2,
        }
    }

    #[test]
    fn the_status_counts_the_selected_ready_pods() {
        let (a, b, c, other) = (
            pod("a", "web", true),
            pod("b", "web", true),
            pod("c", "web", false),
            pod("x", "db", true),
        );
        let pdb = budget(IntOrString::Int(1));
        let d = reconcile(&pdb, &[&a, &b, &c, &other], scale, at(0));
        let s = d.status.expect("a first status");
        assert_eq!(
            (
                s.expected_pods,
                s.current_healthy,
                s.desired_healthy,
                s.disruptions_allowed
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(s.observed_generation, Some(1));
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        // Written once; the next pass has nothing to write.
        let mut written = pdb.clone();
        written.status = Some(s);
        let again = reconcile(&written, &[&a, &b, &c, &other], scale, at(30));
        assert_eq!(again.status, None);
    }

    #[test]
    fn no_pods_is_an_event_and_no_disruption() {
        let pdb = budget(IntOrString::Int(0));
        let d = reconcile(&pdb, &[], scale, at(0));
        assert_eq!(d.status.unwrap().disruptions_allowed, 0);
        assert_eq!(d.notes[0].reason, "NoPods");
        assert_eq!(d.notes[0].message, "No matching pods found");
    }

    #[test]
    fn a_percentage_without_a_controller_fails_safe() {
        let a = pod("a", "web", true);
        let mut pdb = budget(IntOrString::String("50%".into()));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 3,
            observed_generation: Some(1),
            ..Default::default()
        });
        let d = reconcile(&pdb, &[&a], |_| OwnerScale::Missing, at(0));
        let s = d.status.unwrap();
        assert_eq!(s.disruptions_allowed, 0);
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("SyncFailed", "found no controllers for pod \"a\"")
        );
        assert_eq!(d.notes[0].reason, "CalculateExpectedPodCountFailed");
        // Unmanaged pods are warned about and not counted.
        let d = reconcile(&pdb, &[&a], |_| OwnerScale::Unmanaged, at(0));
        assert_eq!(d.notes[0].reason, "UnmanagedPods");
        assert!(d.notes[0].message.contains("(selector: app=web)"));
        assert_eq!(d.status.unwrap().expected_pods, 0);
    }

    #[test]
    fn evicted_pods_are_forgotten_when_deleting_or_after_two_minutes() {
        let (a, b) = (pod("a", "web", true), pod("b", "web", true));
        let mut pdb = budget(IntOrString::Int(1));
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([("a".to_owned(), Time(at(0)))])),
            observed_generation: Some(1),
            ..Default::default()
        });
        // Within two minutes: a is not counted healthy, and the pass comes back after.
        let d = reconcile(&pdb, &[&a, &b], scale, at(20));
        let s = d.status.clone().unwrap();
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        assert!(s.disrupted_pods.unwrap().contains_key("a"));
        assert_eq!(d.requeue_after, Some(Duration::from_secs(101)));
        // Past two minutes: the pod was not deleted after all; it counts again.
        let d = reconcile(&pdb, &[&a, &b], scale, at(121));
        let s = d.status.unwrap();
        assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
        assert_eq!(s.disrupted_pods, None);
        assert_eq!(d.notes[0].reason, "NotDeleted");
        // Being deleted: forgotten at once.
        let mut gone = a.clone();
        gone.metadata.deletion_timestamp = Some(Time(at(10)));
        let s = reconcile(&pdb, &[&gone, &b], scale, at(20)).status.unwrap();
        assert_eq!((s.current_healthy, s.disrupted_pods), (1, None));
    }
}
