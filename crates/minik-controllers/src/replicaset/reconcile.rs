//! The ReplicaSet and ReplicationController reconciler, pure functions: the owner, the pods of
//! its namespace and `now` in; the pods to adopt, release, create and delete out ([`reconcile`]),
//! then, once the outcome of those writes is known, the status to write ([`status_update`]), if
//! anything in it changed. It follows Kubernetes' `ReplicaSetController.syncReplicaSet`, whose
//! `calculateStatus` also runs after the creates or deletes, whether or not they failed.

use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::ReplicaSet;
use minik_api::k8s_openapi::api::core::v1::{
    ObjectReference, Pod, PodTemplateSpec, ReplicationController,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::selector::Selector;
use serde_json::{json, Value};

use crate::action::{replace_keys, Action, Announce, Target};
use crate::kinds::{self, controller_ref, is_deleting, labels, Kind};
use crate::names::generate_prefix;
use crate::pods::{self, availability, is_active, is_ready, Availability};

/// The replica counts of a ReplicaSet's or ReplicationController's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
    pub observed_generation: i64,
}

/// A ReplicaSet or a ReplicationController, as the reconciler sees either.
#[derive(Debug)]
pub(crate) struct Owner<'a> {
    pub kind: Kind,
    pub meta: &'a ObjectMeta,
    pub replicas: i32,
    pub selector: Selector,
    pub template: Option<&'a PodTemplateSpec>,
    pub min_ready_seconds: i32,
    pub status: Counts,
    /// The status as stored, so that a status write can clear what it no longer sets.
    pub status_json: Value,
}

/// The [`Owner`] of a ReplicaSet or a ReplicationController: their specs and statuses are
/// different types with the same fields.
macro_rules! owner {
    ($kind:expr, $object:expr, $spec:expr, $selector:expr) => {{
        let status = $object.status.as_ref();
        Owner {
            kind: $kind,
            meta: &$object.metadata,
            replicas: $spec.replicas.unwrap_or(1),
            selector: $selector,
            template: $spec.template.as_ref(),
            min_ready_seconds: $spec.min_ready_seconds.unwrap_or(0),
            status: Counts {
                replicas: status.map_or(0, |s| s.replicas),
                fully_labeled: status.and_then(|s| s.fully_labeled_replicas).unwrap_or(0),
                ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
                available: status.and_then(|s| s.available_replicas).unwrap_or(0),
                observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
            },
            status_json: serde_json::to_value(status).unwrap_or(Value::Null),
        }
    }};
}

impl<'a> Owner<'a> {
    pub(crate) fn of_replica_set(rs: &'a ReplicaSet) -> Result<Owner<'a>, String> {
        let spec = rs.spec.as_ref().ok_or("the ReplicaSet has no spec")?;
        let selector = Selector::from_label_selector(&spec.selector)?;
        Ok(owner!(Kind::ReplicaSet, rs, spec, selector))
    }

    pub(crate) fn of_replication_controller(
        rc: &'a ReplicationController,
    ) -> Result<Owner<'a>, String> {
        let spec = rc
            .spec
            .as_ref()
            .ok_or("the ReplicationController has no spec")?;
        // An absent or empty selector would select every pod of the namespace; validation
        // refuses it, and so does the controller, rather than adopting everything.
        let selector = match spec.selector.as_ref() {
            Some(s) if !s.is_empty() => Selector::from_map(s),
            _ => Selector::nothing(),
        };
        Ok(owner!(Kind::ReplicationController, rc, spec, selector))
    }

    fn uid(&self) -> &str {
        kinds::uid(self.meta)
    }

    fn component(&self) -> &'static str {
        match self.kind {
            Kind::ReplicationController => "replication-controller",
            _ => "replicaset-controller",
        }
    }

    pub(crate) fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.api_version().into()),
            kind: Some(self.kind.name().into()),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
            uid: self.meta.uid.clone(),
            resource_version: self.meta.resource_version.clone(),
            field_path: None,
        }
    }
}

/// What the reconciler is given besides the owner.
pub(crate) struct Inputs<'a, 'p> {
    /// The pods of the owner's namespace.
    pub pods: &'a [&'p PodView],
    /// No creates or deletes of earlier passes are still unobserved: the pods can be counted.
    pub may_size: bool,
    pub now: Timestamp,
    /// At most this many creates or deletes per pass (Kubernetes' `burstReplicas`).
    pub burst: usize,
}

/// What one pass decided, in the order it is carried out.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    /// Adoptions and releases of pods (patches of their ownerReferences), made first.
    pub claims: Vec<Action>,
    /// The creates or the deletes that bring the pods to the spec's count, if any.
    pub manage: Option<Action>,
    /// The counts of the pods claimed in this pass, for the status.
    pub counts: Counts,
    /// Look again after this long even if nothing changes (a pod turning available).
    pub requeue_after: Option<Duration>,
}

impl Decision {
    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |a| a.min(after)));
    }
}

/// Why the creates or the deletes of a pass failed: Kubernetes' `ReplicaFailure` condition
/// says so while they keep failing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// One pass over an owner. `suffix` makes the random part of new pod names.
pub(crate) fn reconcile(
    owner: &Owner<'_>,
    inputs: &Inputs<'_, '_>,
    suffix: &mut dyn FnMut() -> String,
) -> Decision {
    let mut plan = Decision::default();
    let owner_deleting = is_deleting(owner.meta);
    let namespace = kinds::namespace(owner.meta).to_owned();

    // Claim: keep the owned pods that still match, release the rest, adopt matching orphans.
    let mut claimed: Vec<&PodView> = Vec::new();
    for pod in inputs.pods.iter().copied().filter(|p| is_active(p)) {
        let matches = owner.selector.matches(labels(&pod.metadata));
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == owner.uid() => {
                if matches {
                    claimed.push(pod);
                } else if !owner_deleting {
                    plan.claims.push(set_owner_refs(
                        pod,
                        kinds::owner_refs(&pod.metadata)
                            .iter()
                            .filter(|r| r.uid != owner.uid())
                            .cloned()
                            .collect(),
                    ));
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting {
                    let mut refs = kinds::owner_refs(&pod.metadata).to_vec();
                    refs.push(kinds::controller_reference(owner.kind, owner.meta));
                    plan.claims.push(set_owner_refs(pod, refs));
                    claimed.push(pod);
                }
            }
        }
    }

    // An owner being deleted makes no new pods and deletes none: its dependents are the
    // garbage collector's now.
    if inputs.may_size && !owner_deleting {
        let diff = claimed.len() as i64 - i64::from(owner.replicas.max(0));
        if diff < 0 {
            let count = (diff.unsigned_abs() as usize).min(inputs.burst);
            if let Some(template) = owner.template {
                let prefix = generate_prefix(kinds::name(owner.meta));
                let objects: Vec<Value> = (0..count)
                    .filter_map(|_| pod_from_template(owner, template, &prefix, &suffix()))
                    .collect();
                plan.manage = Some(Action::Create {
                    kind: Kind::Pod,
                    namespace: namespace.clone(),
                    objects,
                    announce: Some(Announce {
                        involved: owner.reference(),
                        component: owner.component(),
                        reason: "SuccessfulCreate",
                        verb: "Created pod: ",
                    }),
                });
            }
        } else if diff > 0 {
            let count = (diff as usize).min(inputs.burst);
            let targets = pods::to_delete(&claimed, &claimed, count)
                .into_iter()
                .map(|p| Target {
                    name: kinds::name(&p.metadata).to_owned(),
                    uid: kinds::uid(&p.metadata).to_owned(),
                    resource_version: None,
                })
                .collect();
            plan.manage = Some(Action::Delete {
                kind: Kind::Pod,
                namespace: namespace.clone(),
                targets,
                propagation: None,
                announce: Some(Announce {
                    involved: owner.reference(),
                    component: owner.component(),
                    reason: "SuccessfulDelete",
                    verb: "Deleted pod: ",
                }),
            });
        }
    }

    // Status, from the pods claimed in this pass (as Kubernetes computes it).
    let template_labels = owner
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut counts = Counts {
        replicas: claimed.len() as i32,
        observed_generation: owner.meta.generation.unwrap_or(0),
        ..Counts::default()
    };
    for pod in &claimed {
        let pod_labels = labels(&pod.metadata);
        if template_labels
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
        {
            counts.fully_labeled += 1;
        }
        if is_ready(pod) {
            counts.ready += 1;
        }
        match availability(pod, owner.min_ready_seconds, inputs.now) {
            Availability::Available => counts.available += 1,
            // Nothing else will change when the pod turns available: look again then.
            Availability::AvailableIn(after) => plan.requeue(after),
            Availability::NotReady => {}
        }
    }
    plan.counts = counts;
    plan
}

/// The status write after a pass: the counts of its pods and the `ReplicaFailure` condition for
/// `failure` (the creates or deletes of the pass failing, or `None`). `None` when the stored
/// status says all that already, as Kubernetes' `updateReplicaSetStatus` skips the write then:
/// a pass that changes nothing writes nothing, however often it runs.
pub(crate) fn status_update(
    owner: &Owner<'_>,
    counts: &Counts,
    failure: Option<&Failure>,
    now: Timestamp,
) -> Option<Action> {
    let conditions = failure_conditions(&owner.status_json, failure, now);
    if *counts == owner.status && conditions.is_none() {
        return None;
    }
    let mut status = status_patch(&owner.status_json, counts);
    if let Some(conditions) = conditions {
        status["conditions"] = conditions;
    }
    Some(Action::Patch {
        kind: owner.kind,
        namespace: kinds::namespace(owner.meta).to_owned(),
        name: kinds::name(owner.meta).to_owned(),
        body: json!({ "status": status }),
        status: true,
    })
}

/// The status fields this controller owns, zeros left out as Kubernetes leaves them out.
fn status_patch(old: &Value, counts: &Counts) -> Value {
    let mut new = json!({"replicas": counts.replicas});
    for (key, value) in [
        ("fullyLabeledReplicas", counts.fully_labeled),
        ("readyReplicas", counts.ready),
        ("availableReplicas", counts.available),
    ] {
        if value != 0 {
            new[key] = json!(value);
        }
    }
    if counts.observed_generation != 0 {
        new["observedGeneration"] = json!(counts.observed_generation);
    }
    // Only the counters are ours: conditions and anything else stay as they are.
    let mut old_counters = json!({});
    for key in [
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ] {
        if let Some(v) = old.get(key) {
            old_counters[key] = v.clone();
        }
    }
    replace_keys(&old_counters, &new)
}

/// A patch that sets a pod's ownerReferences, only if the pod is still the version judged.
fn set_owner_refs(pod: &PodView, refs: Vec<OwnerReference>) -> Action {
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(refs).unwrap_or(Value::Null)
    };
    Action::Patch {
        kind: Kind::Pod,
        namespace: kinds::namespace(&pod.metadata).to_owned(),
        name: kinds::name(&pod.metadata).to_owned(),
        body: json!({"metadata": {
            "resourceVersion": kinds::resource_version(&pod.metadata),
            "ownerReferences": refs,
        }}),
        status: false,
    }
}

/// A pod made from the owner's template (Kubernetes' `GetPodFromTemplate`).
fn pod_from_template(
    owner: &Owner<'_>,
    template: &PodTemplateSpec,
    prefix: &str,
    suffix: &str,
) -> Option<Value> {
    let template_meta = template.metadata.clone().unwrap_or_default();
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}{suffix}")),
            generate_name: Some(prefix.to_owned()),
            namespace: owner.meta.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![kinds::controller_reference(owner.kind, owner.meta)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    match serde_json::to_value(pod) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a pod");
            None
        }
    }
}

/// The status conditions after a pass whose creates or deletes failed with `failure` (or
/// succeeded, when `None`): Kubernetes' `ReplicaFailure` condition, set while they fail and
/// removed once they stop failing. As Kubernetes' `SetCondition`, a condition whose status and
/// reason stay is left as it is: its message is the first failure's, not each new pod name's.
/// `None` when the conditions stay as they are.
pub(crate) fn failure_conditions(
    status: &Value,
    failure: Option<&Failure>,
    now: Timestamp,
) -> Option<Value> {
    let conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = conditions.iter().find(|c| c["type"] == "ReplicaFailure");
    let others = || {
        conditions
            .iter()
            .filter(|c| c["type"] != "ReplicaFailure")
            .cloned()
            .collect::<Vec<_>>()
    };
    match failure {
        Some(failure) => {
            let failing = existing.filter(|c| c["status"] == "True");
            if failing.is_some_and(|c| c["reason"] == failure.reason) {
                return None;
            }
            let since = failing
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_else(|| json!(kinds::whole_seconds(now).to_string()));
            let mut list = others();
            list.push(json!({
                "type": "ReplicaFailure", "status": "True", "reason": failure.reason,
                "message": failure.message, "lastTransitionTime": since,
            }));
            Some(json!(list))
        }
        None => {
            existing?;
            let list = others();
            Some(if list.is_empty() {
                Value::Null
            } else {
                json!(list)
            })
        }
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    fn quota_refusal(pod: &str) -> Failure {
        Failure {
            reason: "FailedCreate",
            message: format!("pods \"{pod}\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
        }
    }

    #[test]
    fn replica_failure_is_set_while_creates_fail_and_removed_after() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let first = quota_refusal("web-x");
        let set = failure_conditions(&json!({"replicas": 1}), Some(&first), now).unwrap();
        assert_eq!(
            set,
            json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                    "message": first.message, "lastTransitionTime": "2024-01-01T00:00:00Z"}])
        );
        let status = json!({"conditions": set});
        assert_eq!(failure_conditions(&status, None, now), Some(Value::Null));
        assert_eq!(failure_conditions(&json!({}), None, now), None);
    }

    /// Regression (issue 23): each refused create names a new random pod, and the condition
    /// was rewritten with every new name, over a thousand status writes a second.
    #[test]
    fn the_same_failure_with_another_pod_name_leaves_the_condition_alone() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let set = failure_conditions(&json!({}), Some(&quota_refusal("web-x")), now).unwrap();
        let status = json!({"conditions": set});
        let later: Timestamp = "2024-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(
            failure_conditions(&status, Some(&quota_refusal("web-y")), later),
            None,
            "same status and reason: unchanged"
        );
        // Another cause (the deletes failing now) is worth saying, still failing since then.
        let deletes = Failure {
            reason: "FailedDelete",
            message: "conflict".into(),
        };
        let other = failure_conditions(&status, Some(&deletes), later).unwrap();
        assert_eq!(other[0]["reason"], "FailedDelete");
        assert_eq!(other[0]["message"], "conflict");
        assert_eq!(other[0]["lastTransitionTime"], "2024-01-01T00:00:00Z");
    }
}
