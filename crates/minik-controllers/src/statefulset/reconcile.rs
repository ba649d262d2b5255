//! The StatefulSet reconciler, pure: the set, the pods, claims and revisions of its namespace and
//! `now` in; the ordered steps of one pass and the status to write out. It follows Kubernetes'
//! `StatefulSetControl.UpdateStatefulSet`: revisions first, then the replicas in ordinal order
//! (claims before their pod; with `OrderedReady` one at a time, each Running and Ready before
//! the next), then the condemned pods highest ordinal first, then the rolling update from the
//! highest ordinal down to the partition, then the history beyond the limit.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use minik_api::k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod,
    PodTemplateSpec, Volume,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::selector::Selector;
use serde_json::{json, Value};

use crate::action::{replace_keys, Target};
use crate::history::{self, HASH_LABEL};
use crate::kinds::{self, controller_ref, is_deleting, labels, Kind};
use crate::pods::{availability, is_ready, phase, Availability};

/// The label with a pod's own name (Kubernetes' `StatefulSetPodNameLabel`).
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal (Kubernetes' `PodIndexLabel`).
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The component named by the controller's events.
pub(crate) const COMPONENT: &str = "statefulset-controller";

/// One write of a pass, carried out in order; the first that fails ends the pass.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Create a revision of the set.
    CreateRevision(Value),
    /// Renumber an old revision that is the update revision again (a rollback).
    RenumberRevision { name: String, revision: i64 },
    /// Delete a revision beyond the history limit.
    DeleteRevision(Target),
    /// Merge-patch a pod (its ownerReferences or identity labels), at the version judged.
    PatchPod { name: String, body: Value },
    /// Create the claim `object` for the pod `pod`.
    CreateClaim { object: Value, pod: String },
    /// Merge-patch a claim's ownerReferences, at the version judged.
    PatchClaim { name: String, body: Value },
    /// Delete a claim whose owner (a pod scaled away, or the set) is gone.
    DeleteClaim(Target),
    /// Create a pod.
    CreatePod(Value),
    /// Delete a pod; `warning` is recorded first (a failed pod being recreated).
    DeletePod {
        target: Target,
        warning: Option<(&'static str, String)>,
    },
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    pub steps: Vec<Step>,
    /// The status patch (`{"status": ...}`), when the status changes.
    pub status: Option<Value>,
    /// Look again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Decision {
    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |a| a.min(after)));
    }
}

/// What the reconciler is given besides the set.
pub(crate) struct Inputs<'a> {
    /// The pods of the set's namespace.
    pub pods: &'a [&'a PodView],
    /// The claims of the set's namespace, by name.
    pub claims: &'a BTreeMap<String, &'a PersistentVolumeClaim>,
    /// The revisions of the set's namespace.
    pub revisions: &'a [&'a ControllerRevision],
    pub now: Timestamp,
}

/// The spec of a set as the reconciler reads it, defaults applied.
struct Spec<'a> {
    meta: &'a ObjectMeta,
    name: &'a str,
    namespace: &'a str,
    replicas: i32,
    start: i32,
    parallel: bool,
    rolling: bool,
    partition: i32,
    min_ready_seconds: i32,
    history_limit: Option<i32>,
    service_name: &'a str,
    selector: Selector,
    match_labels: BTreeMap<String, String>,
    template: &'a PodTemplateSpec,
    claim_templates: &'a [PersistentVolumeClaim],
    delete_when_deleted: bool,
    delete_when_scaled: bool,
}

impl<'a> Spec<'a> {
    fn of(set: &'a StatefulSet) -> Result<Spec<'a>, String> {
        let spec = set.spec.as_ref().ok_or("the StatefulSet has no spec")?;
        let strategy = spec.update_strategy.as_ref();
        let retention = spec.persistent_volume_claim_retention_policy.as_ref();
        let deletes = |policy: Option<&String>| policy.is_some_and(|p| p == "Delete");
        Ok(Spec {
            meta: &set.metadata,
            name: kinds::name(&set.metadata),
            namespace: kinds::namespace(&set.metadata),
            replicas: spec.replicas.unwrap_or(1).max(0),
            start: spec
                .ordinals
                .as_ref()
                .and_then(|o| o.start)
                .unwrap_or(0)
                .max(0),
            parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
            rolling: strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete"),
            partition: strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0)
                .max(0),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            history_limit: spec.revision_history_limit,
            service_name: spec.service_name.as_deref().unwrap_or_default(),
            selector: Selector::from_label_selector(&spec.selector)?,
            match_labels: spec.selector.match_labels.clone().unwrap_or_default(),
            template: &spec.template,
            claim_templates: spec.volume_claim_templates.as_deref().unwrap_or_default(),
            delete_when_deleted: deletes(retention.and_then(|r| r.when_deleted.as_ref())),
            delete_when_scaled: deletes(retention.and_then(|r| r.when_scaled.as_ref())),
        })
    }

    fn uid(&self) -> &str {
        kinds::uid(self.meta)
    }

    fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The ordinal of a pod named `NAME-N`, if it is one of this set's names.
    fn ordinal_of(&self, pod: &str) -> Option<i32> {
        let digits = pod.strip_prefix(self.name)?.strip_prefix('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start
            && i64::from(ordinal) < i64::from(self.start) + i64::from(self.replicas)
    }

    /// The claim of `template` for the pod of `ordinal`: `TEMPLATE-NAME-ORDINAL`.
    fn claim_name(&self, template: &PersistentVolumeClaim, ordinal: i32) -> String {
        format!(
            "{}-{}",
            kinds::name(&template.metadata),
            self.pod_name(ordinal)
        )
    }
}

/// The reference events of the set are about.
pub(crate) fn reference(set: &StatefulSet) -> ObjectReference {
    kinds::object_reference(Kind::StatefulSet, &set.metadata)
}

fn is_terminating(pod: &PodView) -> bool {
    is_deleting(&pod.metadata)
}

fn is_running_and_ready(pod: &PodView) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// The pod's revision: its `controller-revision-hash` label, which for StatefulSets holds the
/// revision's name.
fn revision_of(pod: &PodView) -> &str {
    labels(&pod.metadata)
        .get(HASH_LABEL)
        .map(String::as_str)
        .unwrap_or_default()
}

fn target_of(meta: &ObjectMeta) -> Target {
    Target {
        name: kinds::name(meta).to_owned(),
        uid: kinds::uid(meta).to_owned(),
        resource_version: None,
    }
}

/// The revisions of this pass: the current one (pods below the partition are made from it) and
/// the update one (the set's template now).
struct Revisions {
    current_name: String,
    current_template: PodTemplateSpec,
    update_name: String,
    collision_count: i32,
}

/// One pass over a set.
pub(crate) fn reconcile(set: &StatefulSet, inputs: &Inputs<'_>) -> Decision {
    let mut plan = Decision::default();
    let spec = match Spec::of(set) {
        Ok(spec) => spec,
        Err(e) => {
            // The API server validated the set; nothing a retry would change.
            tracing::warn!(set = kinds::name(&set.metadata), error = %e, "cannot manage this StatefulSet");
            return plan;
        }
    };
    let status = set.status.clone().unwrap_or_default();
    let deleting = is_deleting(&set.metadata);

    // Revisions: the update revision holds the template now; an equal older one is renumbered
    // (a rollback), else a new one is made, unless its name is taken by other data (a hash
    // collision: count it and try another name on the next pass).
    let owned = history::owned_revisions(inputs.revisions.iter().copied(), spec.uid());
    let data = history::template_patch(spec.template);
    let mut collision_count = status.collision_count.unwrap_or(0);
    let next = history::next_revision(owned.iter().copied());
    let update_name = match history::with_data(owned.iter().copied(), &data).last() {
        Some(equal) => {
            if equal.revision != next - 1 {
                plan.steps.push(Step::RenumberRevision {
                    name: kinds::name(&equal.metadata).to_owned(),
                    revision: next,
                });
            }
            kinds::name(&equal.metadata).to_owned()
        }
        None => {
            let selector_labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let mut revision = history::new_revision(
                Kind::StatefulSet,
                spec.meta,
                &selector_labels,
                data.clone(),
                next,
                Some(collision_count).filter(|c| *c != 0),
            );
            // The set's annotations go with it (`kubernetes.io/change-cause` for
            // `rollout history`), as Kubernetes' `newRevision` copies them.
            revision.metadata.annotations = set.metadata.annotations.clone();
            let name = kinds::name(&revision.metadata).to_owned();
            let taken = inputs.revisions.iter().any(|r| {
                kinds::name(&r.metadata) == name
                    && kinds::namespace(&r.metadata) == spec.namespace
                    && (controller_ref(&r.metadata).is_none_or(|o| o.uid != spec.uid())
                        || r.data.as_ref().map(|d| &d.0) != Some(&data))
            });
            if taken {
                collision_count = collision_count.saturating_add(1);
                let mut new_status = serde_json::to_value(&status).unwrap_or(json!({}));
                new_status["collisionCount"] = json!(collision_count);
                plan.status = Some(json!({ "status": new_status }));
                return plan;
            }
            if !deleting {
                match serde_json::to_value(&revision) {
                    Ok(v) => plan.steps.push(Step::CreateRevision(v)),
                    Err(e) => tracing::error!(error = %e, "cannot encode a revision"),
                }
            }
            name
        }
    };
    let current = status
        .current_revision
        .as_deref()
        .and_then(|c| owned.iter().find(|r| kinds::name(&r.metadata) == c));
    let revisions = Revisions {
        current_name: current.map_or_else(
            || update_name.clone(),
            |r| kinds::name(&r.metadata).to_owned(),
        ),
        current_template: current
            .and_then(|r| history::template_of(r))
            .unwrap_or_else(|| spec.template.clone()),
        update_name,
        collision_count,
    };

    // Claim the pods: keep owned pods the selector still matches, release the others, adopt
    // matching orphans named as this set's pods.
    let mut mine: Vec<&PodView> = Vec::new();
    for pod in inputs.pods.iter().copied() {
        let matches = spec.selector.matches(labels(&pod.metadata));
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == spec.uid() => {
                if matches {
                    mine.push(pod);
                } else if !deleting && !is_terminating(pod) {
                    let refs: Vec<OwnerReference> = kinds::owner_refs(&pod.metadata)
                        .iter()
                        .filter(|r| r.uid != spec.uid())
                        .cloned()
                        .collect();
                    plan.steps.push(patch_pod_refs(pod, refs));
                }
            }
            Some(_) => {}
            None => {
                let named = spec.ordinal_of(kinds::name(&pod.metadata)).is_some();
                if matches && named && !deleting && !is_terminating(pod) {
                    let mut refs = kinds::owner_refs(&pod.metadata).to_vec();
                    refs.push(kinds::controller_reference(Kind::StatefulSet, spec.meta));
                    plan.steps.push(patch_pod_refs(pod, refs));
                    mine.push(pod);
                }
            }
        }
    }

    // Slots in ordinal order, and the condemned (out of range or misnamed), highest first.
    let mut replicas: Vec<Option<&PodView>> =
        vec![None; usize::try_from(spec.replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &PodView)> = Vec::new();
    for pod in &mine {
        match spec.ordinal_of(kinds::name(&pod.metadata)) {
            Some(ordinal) if spec.in_range(ordinal) => {
                let slot = (ordinal - spec.start) as usize;
                replicas[slot] = Some(pod);
            }
            ordinal => condemned.push((ordinal.unwrap_or(-1), pod)),
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    plan.status = status_patch(set, &spec, &mine, &revisions, inputs.now, &mut plan);

    if deleting {
        // The set's dependents are the garbage collector's now.
        return plan;
    }

    // Claims' owners follow the retention policy, before any pod goes.
    for pod in &mine {
        if let Some(ordinal) = spec.ordinal_of(kinds::name(&pod.metadata)) {
            claim_owners(&spec, ordinal, pod, inputs, &mut plan);
        }
    }

    manage_pods(&spec, &replicas, &condemned, &revisions, inputs, &mut plan);

    // Claims whose pods were scaled away under `whenScaled: Delete` go with them.
    let pod_uids: HashSet<&str> = inputs
        .pods
        .iter()
        .map(|p| kinds::uid(&p.metadata))
        .collect();
    for claim in inputs.claims.values() {
        let of_this_set = spec.claim_templates.iter().any(|t| {
            kinds::name(&claim.metadata)
                .strip_prefix(kinds::name(&t.metadata))
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|pod| spec.ordinal_of(pod))
                .is_some_and(|ordinal| !spec.in_range(ordinal))
        });
        if of_this_set
            && orphaned(&claim.metadata, |r| {
                r.kind == "Pod" && !pod_uids.contains(r.uid.as_str())
            })
        {
            plan.steps
                .push(Step::DeleteClaim(target_of(&claim.metadata)));
        }
    }

    // History beyond the limit, but never a revision a pod still runs.
    let live: HashSet<&str> = mine
        .iter()
        .map(|p| revision_of(p))
        .chain([
            revisions.current_name.as_str(),
            revisions.update_name.as_str(),
        ])
        .collect();
    for old in history::to_truncate(owned.iter().copied(), spec.history_limit, |r| {
        live.contains(kinds::name(&r.metadata))
    }) {
        plan.steps
            .push(Step::DeleteRevision(target_of(&old.metadata)));
    }
    plan
}

/// The creates and deletes of pods of a pass: the replicas in ordinal order, then the
/// condemned, then the rolling update. Returns where a pass must wait.
fn manage_pods(
    spec: &Spec<'_>,
    replicas: &[Option<&PodView>],
    condemned: &[(i32, &PodView)],
    revisions: &Revisions,
    inputs: &Inputs<'_>,
    plan: &mut Decision,
) {
    let healthy = |pod: &PodView| {
        is_running_and_ready(pod)
            && !is_terminating(pod)
            && match availability(pod, spec.min_ready_seconds, inputs.now) {
                Availability::Available => true,
                Availability::AvailableIn(_) | Availability::NotReady => false,
            }
    };
    let first_unhealthy = replicas
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, p)| p))
        .find(|p| !healthy(p))
        .map(|p| kinds::name(&p.metadata).to_owned());

    // The replicas, in ordinal order.
    let monotonic = !spec.parallel;
    for (slot, pod) in replicas.iter().enumerate() {
        let ordinal = spec.start + slot as i32;
        let pod_name = spec.pod_name(ordinal);
        match pod {
            None => {
                let waiting = ensure_claims(spec, ordinal, None, inputs, plan);
                if waiting {
                    plan.requeue(Duration::from_secs(1));
                } else {
                    let below_partition = spec.rolling && ordinal < spec.start + spec.partition;
                    let (template, revision) = if below_partition {
                        (&revisions.current_template, &revisions.current_name)
                    } else {
                        (spec.template, &revisions.update_name)
                    };
                    if let Some(object) = new_pod(spec, template, revision, ordinal) {
                        plan.steps.push(Step::CreatePod(object));
                    }
                }
                if monotonic {
                    return;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") && !is_terminating(pod) => {
                let reason = if phase(pod) == "Failed" {
                    "RecreatingFailedPod"
                } else {
                    "RecreatingTerminatedPod"
                };
                let message = format!(
                    "StatefulSet {}/{} is recreating {} Pod {pod_name}",
                    spec.namespace,
                    spec.name,
                    if phase(pod) == "Failed" {
                        "failed"
                    } else {
                        "terminated"
                    },
                );
                plan.steps.push(Step::DeletePod {
                    target: target_of(&pod.metadata),
                    warning: Some((reason, message)),
                });
                if monotonic {
                    return;
                }
            }
            Some(pod) => {
                // A live pod: its claims and identity labels are made whole.
                ensure_claims(spec, ordinal, Some(pod), inputs, plan);
                if let Some(body) = identity_patch(spec, pod, ordinal) {
                    plan.steps.push(Step::PatchPod {
                        name: pod_name.clone(),
                        body,
                    });
                }
                if is_terminating(pod) {
                    if monotonic {
                        return;
                    }
                    continue;
                }
                if !is_running_and_ready(pod) {
                    if monotonic {
                        return;
                    }
                    continue;
                }
                if let Availability::AvailableIn(after) =
                    availability(pod, spec.min_ready_seconds, inputs.now)
                {
                    plan.requeue(after);
                    if monotonic {
                        return;
                    }
                }
            }
        }
    }

    // The condemned, highest ordinal first: one at a time with OrderedReady, waiting for each
    // to be gone and for the others to be healthy; all at once with Parallel.
    for (_, pod) in condemned {
        if is_terminating(pod) {
            if monotonic {
                return;
            }
            continue;
        }
        let name = kinds::name(&pod.metadata).to_owned();
        if monotonic && !healthy(pod) && first_unhealthy.as_deref() != Some(name.as_str()) {
            return;
        }
        plan.steps.push(Step::DeletePod {
            target: target_of(&pod.metadata),
            warning: None,
        });
        if monotonic {
            return;
        }
    }
    if !condemned.is_empty() && monotonic {
        return;
    }

    // The rolling update: the highest pod not at the update revision goes, down to the
    // partition, one at a time, each replacement healthy before the next.
    if spec.rolling {
        let lowest = usize::try_from(spec.partition).unwrap_or(0);
        for slot in (lowest..replicas.len()).rev() {
            let Some(pod) = replicas[slot] else {
                return;
            };
            if revision_of(pod) != revisions.update_name && !is_terminating(pod) {
                plan.steps.push(Step::DeletePod {
                    target: target_of(&pod.metadata),
                    warning: None,
                });
                return;
            }
            if !healthy(pod) {
                return;
            }
        }
    }
}

/// Whether a claim (not being deleted) has owners and all of them are `gone`: the garbage
/// collector's rule, which minik's collector does not apply to claims.
pub(crate) fn orphaned(claim: &ObjectMeta, gone: impl Fn(&OwnerReference) -> bool) -> bool {
    let refs = kinds::owner_refs(claim);
    !is_deleting(claim) && !refs.is_empty() && refs.iter().all(gone)
}

/// A patch that sets a pod's ownerReferences, only if the pod is still the version judged.
fn patch_pod_refs(pod: &PodView, refs: Vec<OwnerReference>) -> Step {
    Step::PatchPod {
        name: kinds::name(&pod.metadata).to_owned(),
        body: kinds::owner_refs_patch(&pod.metadata, refs),
    }
}

/// The identity labels a live pod lacks, as a patch.
fn identity_patch(spec: &Spec<'_>, pod: &PodView, ordinal: i32) -> Option<Value> {
    let have = labels(&pod.metadata);
    let want = [
        (POD_NAME_LABEL, spec.pod_name(ordinal)),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ];
    let missing: serde_json::Map<String, Value> = want
        .into_iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    (!missing.is_empty()).then(|| json!({"metadata": {"labels": missing}}))
}

/// Queues the creates of the claims of `ordinal` that do not exist; `true` when one of them is
/// being deleted, so the pod must wait for it to go and be made anew.
fn ensure_claims(
    spec: &Spec<'_>,
    ordinal: i32,
    pod: Option<&PodView>,
    inputs: &Inputs<'_>,
    plan: &mut Decision,
) -> bool {
    let mut waiting = false;
    for template in spec.claim_templates {
        let name = spec.claim_name(template, ordinal);
        match inputs.claims.get(&name) {
            Some(claim) => waiting |= is_deleting(&claim.metadata),
            None => {
                let mut meta = ObjectMeta {
                    name: Some(name),
                    namespace: Some(spec.namespace.to_owned()),
                    labels: template.metadata.labels.clone(),
                    annotations: template.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                };
                let claim_labels = meta.labels.get_or_insert_with(BTreeMap::new);
                claim_labels.extend(spec.match_labels.clone());
                let refs = wanted_claim_refs(spec, ordinal, pod, &[]);
                if !refs.is_empty() {
                    meta.owner_references = Some(refs);
                }
                let claim = PersistentVolumeClaim {
                    metadata: meta,
                    spec: template.spec.clone(),
                    status: None,
                };
                match serde_json::to_value(claim) {
                    Ok(object) => plan.steps.push(Step::CreateClaim {
                        object,
                        pod: spec.pod_name(ordinal),
                    }),
                    Err(e) => tracing::error!(error = %e, "cannot encode a claim"),
                }
            }
        }
    }
    waiting
}

/// The ownerReferences a claim of `ordinal` should have under the retention policy (Kubernetes'
/// `updateClaimOwnerRefForSetAndPod`), from those it has: the set owns it when
/// `whenDeleted: Delete` (and it is not condemned under `whenScaled: Delete`); its pod owns it
/// when the pod is condemned and `whenScaled: Delete`. References to others are kept.
fn wanted_claim_refs(
    spec: &Spec<'_>,
    ordinal: i32,
    pod: Option<&PodView>,
    existing: &[OwnerReference],
) -> Vec<OwnerReference> {
    let pod_uid = pod.map(|p| kinds::uid(&p.metadata)).unwrap_or_default();
    let pod_name = spec.pod_name(ordinal);
    let condemned = !spec.in_range(ordinal);
    // References to the set and to any pod of this ordinal (an earlier one too) are ours.
    let mut refs: Vec<OwnerReference> = existing
        .iter()
        .filter(|r| !(r.uid == spec.uid() || (r.kind == "Pod" && r.name == pod_name)))
        .cloned()
        .collect();
    let set_owns = spec.delete_when_deleted && !(spec.delete_when_scaled && condemned);
    let pod_owns = spec.delete_when_scaled && condemned && pod.is_some();
    if set_owns {
        refs.push(OwnerReference {
            api_version: Kind::StatefulSet.api_version().into(),
            kind: Kind::StatefulSet.name().into(),
            name: spec.name.to_owned(),
            uid: spec.uid().to_owned(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    if pod_owns {
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name,
            uid: pod_uid.to_owned(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    refs
}

/// Patches of the claims of a pod whose owners differ from what the retention policy wants.
fn claim_owners(
    spec: &Spec<'_>,
    ordinal: i32,
    pod: &PodView,
    inputs: &Inputs<'_>,
    plan: &mut Decision,
) {
    for template in spec.claim_templates {
        let name = spec.claim_name(template, ordinal);
        let Some(claim) = inputs.claims.get(&name) else {
            continue;
        };
        if is_deleting(&claim.metadata) {
            continue;
        }
        let existing = kinds::owner_refs(&claim.metadata);
        let wanted = wanted_claim_refs(spec, ordinal, Some(pod), existing);
        if wanted.as_slice() != existing {
            plan.steps.push(Step::PatchClaim {
                name,
                body: kinds::owner_refs_patch(&claim.metadata, wanted),
            });
        }
    }
}

/// The pod of `ordinal` (Kubernetes' `newVersionedStatefulSetPod`): the template's, named
/// `NAME-ORDINAL`, with its identity labels, hostname and subdomain, and each claim template's
/// volume pointing at the ordinal's claim.
fn new_pod(
    spec: &Spec<'_>,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Option<Value> {
    let name = spec.pod_name(ordinal);
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut pod_labels = template_meta.labels.unwrap_or_default();
    pod_labels.insert(POD_NAME_LABEL.into(), name.clone());
    pod_labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    pod_labels.insert(HASH_LABEL.into(), revision.to_owned());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if !spec.service_name.is_empty() {
        pod_spec.subdomain = Some(spec.service_name.to_owned());
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.claim_templates {
        let volume_name = kinds::name(&claim.metadata).to_owned();
        let volume = Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: spec.claim_name(claim, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        };
        match volumes.iter_mut().find(|v| v.name == volume_name) {
            Some(existing) => *existing = volume,
            None => volumes.push(volume),
        }
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(spec.namespace.to_owned()),
            labels: Some(pod_labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![kinds::controller_reference(
                Kind::StatefulSet,
                spec.meta,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
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

/// The status of the set from its pods (Kubernetes' `computeReplicaStatus` and
/// `completeRollingUpdate`), as a patch of the stored status; `None` when it is unchanged.
fn status_patch(
    set: &StatefulSet,
    spec: &Spec<'_>,
    pods: &[&PodView],
    revisions: &Revisions,
    now: Timestamp,
    plan: &mut Decision,
) -> Option<Value> {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if !phase(pod).is_empty() {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            match availability(pod, spec.min_ready_seconds, now) {
                Availability::Available => available += 1,
                Availability::AvailableIn(after) => plan.requeue(after),
                Availability::NotReady => {}
            }
        }
        if !phase(pod).is_empty() && !is_terminating(pod) {
            if revision_of(pod) == revisions.current_name {
                current += 1;
            }
            if revision_of(pod) == revisions.update_name {
                updated += 1;
            }
        }
    }
    let mut current_name = revisions.current_name.clone();
    if updated == replicas && ready == replicas {
        current = updated;
        current_name = revisions.update_name.clone();
    }
    let mut new = json!({
        "replicas": replicas,
        "availableReplicas": available,
        "currentRevision": current_name,
        "updateRevision": revisions.update_name,
        "collisionCount": revisions.collision_count,
    });
    for (key, value) in [
        ("readyReplicas", ready),
        ("currentReplicas", current),
        ("updatedReplicas", updated),
    ] {
        if value != 0 {
            new[key] = json!(value);
        }
    }
    if let Some(generation) = set.metadata.generation {
        new["observedGeneration"] = json!(generation);
    }
    let old = set
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    // Only these keys are ours: conditions stay as they are.
    let mut old_owned = json!({});
    for key in [
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "currentReplicas",
        "updatedReplicas",
        "currentRevision",
        "updateRevision",
        "collisionCount",
        "observedGeneration",
    ] {
        if let Some(v) = old.get(key) {
            old_owned[key] = v.clone();
        }
    }
    if old_owned == new {
        return None;
    }
    Some(json!({ "status": replace_keys(&old_owned, &new) }))
}
