//! The DaemonSet reconciler, pure: the DaemonSet, the nodes, the pods and revisions of its
//! namespace and `now` in; the writes of one pass out. It follows Kubernetes'
//! `DaemonSetsController.syncDaemonSet`: the history first ([`history`]: the revision of the
//! current template, whose hash labels new pods), then ([`reconcile`]) the pods claimed, a pod
//! made for each node that should run one and has none, pods removed from nodes that should
//! not run one (or that run more than one), then the rolling update replacing old pods within
//! `maxUnavailable` or `maxSurge`, the status, and the old revisions beyond the history limit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetSpec};
use minik_api::k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodSpec, PodTemplateSpec};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::selector::Selector;
use minik_api::wellknown::ANNOTATION_LAST_APPLIED;
use serde_json::{json, Value};

use super::placement::{daemon_spec, fit, pin_to_node, target_node, Fit};
use crate::action::{Action, Announce, Note, Target};
use crate::history::{self, HASH_LABEL};
use crate::kinds::{self, controller_ref, created_at, is_deleting, labels, Kind};
use crate::names::generate_prefix;
use crate::pods::{availability, is_ready, phase, Availability};

/// The component named by the controller's events.
pub(crate) const COMPONENT: &str = "daemonset-controller";
/// The label with the DaemonSet's generation a pod was made at (Kubernetes'
/// `DaemonSetTemplateGenerationKey`).
pub(crate) const GENERATION_LABEL: &str = "pod-template-generation";

/// A DaemonSet as the reconciler reads it.
pub(crate) struct Daemon<'a> {
    pub meta: &'a ObjectMeta,
    pub spec: &'a DaemonSetSpec,
    pub selector: Selector,
    /// The pod spec of its pods before pinning: the template's with the daemon tolerations.
    pub pod_spec: PodSpec,
    pub status: Value,
}

impl<'a> Daemon<'a> {
    /// The DaemonSet, or why it cannot be managed.
    pub(crate) fn of(ds: &'a DaemonSet) -> Result<Daemon<'a>, String> {
        let spec = ds.spec.as_ref().ok_or("the DaemonSet has no spec")?;
        let selector = Selector::from_label_selector(&spec.selector)?;
        Ok(Daemon {
            meta: &ds.metadata,
            spec,
            selector,
            pod_spec: daemon_spec(&spec.template),
            status: serde_json::to_value(&ds.status).unwrap_or(Value::Null),
        })
    }

    fn uid(&self) -> &str {
        kinds::uid(self.meta)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn collision_count(&self) -> Option<i32> {
        self.status
            .get("collisionCount")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
    }

    fn rolling(&self) -> bool {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .is_none_or(|t| t == "RollingUpdate")
    }

    fn rolling_value(&self, surge: bool) -> Option<&IntOrString> {
        let ru = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())?;
        if surge {
            ru.max_surge.as_ref()
        } else {
            ru.max_unavailable.as_ref()
        }
    }

    /// Kubernetes' `SurgeCount`: pods that may be made beyond one per node, of `desired`.
    fn surge(&self, desired: i32) -> i32 {
        if !self.rolling() {
            return 0;
        }
        self.rolling_value(true).map_or(0, |v| scaled(v, desired))
    }

    /// Kubernetes' `UnavailableCount`: nodes that may be without an available pod, of `desired`.
    fn unavailable(&self, desired: i32) -> i32 {
        if !self.rolling() {
            return 0;
        }
        self.rolling_value(false).map_or(0, |v| scaled(v, desired))
    }

    pub(crate) fn reference(&self) -> ObjectReference {
        kinds::object_reference(Kind::DaemonSet, self.meta)
    }
}

/// A number, or a percent of `total` rounded up (Kubernetes' `GetScaledValueFromIntOrPercent`
/// with `roundUp`); what does not parse counts as 0 (validation refuses it).
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                let value = (p * i64::from(total) + 99).div_euclid(100);
                i32::try_from(value).unwrap_or(i32::MAX)
            }),
    }
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

/// The revisions of a DaemonSet as one pass finds them (Kubernetes' `constructHistory`).
#[derive(Debug, PartialEq)]
pub(crate) struct History<'a> {
    /// The revision of the current template, if it exists.
    pub current: Option<&'a ControllerRevision>,
    /// The revision to create for the current template, when none exists.
    pub create: Option<ControllerRevision>,
    /// The number the current revision takes, when it is not the newest (after a rollback).
    pub renumber: Option<i64>,
    /// Other revisions of the current template, to delete.
    pub duplicates: Vec<&'a ControllerRevision>,
    /// The revisions of older templates, oldest first.
    pub old: Vec<&'a ControllerRevision>,
    /// The hash that labels pods of the current template.
    pub hash: String,
}

/// The data of the DaemonSet's revision of its current template (Kubernetes' `getPatch`).
pub(crate) fn revision_data(daemon: &Daemon<'_>) -> Value {
    history::template_patch(&daemon.spec.template)
}

/// The revision's hash: its label, or (for one made by someone else) its name.
fn hash_of(revision: &ControllerRevision) -> String {
    history::hash_label(revision)
        .map(str::to_owned)
        .unwrap_or_else(|| kinds::name(&revision.metadata).to_owned())
}

/// Sorts the DaemonSet's revisions into the current one and the old ones.
pub(crate) fn history<'a>(
    daemon: &Daemon<'_>,
    revisions: &[&'a ControllerRevision],
) -> History<'a> {
    let owned = history::owned_revisions(revisions.iter().copied(), daemon.uid());
    let data = revision_data(daemon);
    let (mut current, old): (Vec<_>, Vec<_>) = owned
        .into_iter()
        .partition(|r| r.data.as_ref().map(|d| &d.0) == Some(&data));
    let next = history::next_revision(old.iter().copied());
    // Several revisions of the current template (Kubernetes' `dedupCurHistories`): the newest
    // stays.
    let keep = current.pop();
    match keep {
        Some(kept) => History {
            current: Some(kept),
            create: None,
            renumber: (kept.revision < next).then_some(next),
            duplicates: current,
            old,
            hash: hash_of(kept),
        },
        None => {
            let template_labels = daemon
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let mut revision = history::new_revision(
                Kind::DaemonSet,
                daemon.meta,
                &template_labels,
                data,
                next,
                daemon.collision_count(),
            );
            // The DaemonSet's annotations go with the revision, so that `rollout history`
            // shows its change-cause (the applied manifest is left out: it is large and
            // says nothing a revision needs).
            let annotations: BTreeMap<String, String> = daemon
                .meta
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != ANNOTATION_LAST_APPLIED)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !annotations.is_empty() {
                revision.metadata.annotations = Some(annotations);
            }
            let hash = hash_of(&revision);
            History {
                current: None,
                create: Some(revision),
                renumber: None,
                duplicates: Vec::new(),
                old,
                hash,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

/// What the reconciler is given besides the DaemonSet and its hash.
pub(crate) struct Inputs<'a> {
    pub nodes: &'a [&'a Node],
    /// The pods of the DaemonSet's namespace.
    pub pods: &'a [&'a PodView],
    /// The old revisions ([`History::old`]), for the history limit.
    pub old_revisions: &'a [&'a ControllerRevision],
    /// No creates or deletes of earlier passes are still unobserved: pods may be made or
    /// removed, and the status may say this generation was seen.
    pub may_manage: bool,
    pub now: Timestamp,
    /// At most this many creates, and this many deletes, per pass.
    pub burst: usize,
}

/// What one pass decided, in the order it is carried out.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    /// Adoptions and releases of pods (patches of their ownerReferences), made first.
    pub claims: Vec<Action>,
    /// Warnings about the pods (failed daemon pods, pods the scheduler cannot place).
    pub notes: Vec<Note>,
    /// The pods to create (then those to delete), if any.
    pub manage: Vec<Action>,
    /// The status patch (`{"status": ...}`), when the status changes.
    pub status: Option<Value>,
    /// The old revisions beyond the history limit, to delete.
    pub truncate: Vec<Target>,
    /// Look again after this long even if nothing changes (a pod turning available).
    pub requeue_after: Option<Duration>,
}

impl Decision {
    fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |a| a.min(after)));
    }
}

/// Kubernetes' `podByCreationTimestampAndPhase`: bound pods first, then the oldest.
fn by_age(pods: &mut [&PodView]) {
    pods.sort_by(|a, b| {
        let bound = |p: &PodView| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        bound(b)
            .cmp(&bound(a))
            .then_with(|| created_at(&a.metadata).cmp(&created_at(&b.metadata)))
            .then_with(|| kinds::name(&a.metadata).cmp(kinds::name(&b.metadata)))
    });
}

fn is_available(daemon: &Daemon<'_>, pod: &PodView, now: Timestamp) -> bool {
    availability(pod, daemon.min_ready_seconds(), now) == Availability::Available
}

/// Kubernetes' `IsPodUpdated`: the pod has the current hash.
fn is_updated(pod: &PodView, hash: &str) -> bool {
    !hash.is_empty() && labels(&pod.metadata).get(HASH_LABEL).map(String::as_str) == Some(hash)
}

/// A patch that sets a pod's ownerReferences, only if the pod is still the version judged.
fn set_owner_refs(pod: &PodView, refs: Vec<OwnerReference>) -> Action {
    Action::Patch {
        kind: Kind::Pod,
        namespace: kinds::namespace(&pod.metadata).to_owned(),
        name: kinds::name(&pod.metadata).to_owned(),
        body: kinds::owner_refs_patch(&pod.metadata, refs),
        status: false,
    }
}

/// Kubernetes' `ClaimPods`: the pods the DaemonSet controls and still selects, with the
/// adoptions of selected orphans and the releases of owned pods it no longer selects.
fn claim<'p>(daemon: &Daemon<'_>, pods: &[&'p PodView], plan: &mut Decision) -> Vec<&'p PodView> {
    let deleting = is_deleting(daemon.meta);
    let mut claimed = Vec::new();
    for pod in pods.iter().copied() {
        let matches = daemon.selector.matches(labels(&pod.metadata));
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == daemon.uid() => {
                if matches {
                    claimed.push(pod);
                } else if !deleting && !is_deleting(&pod.metadata) {
                    let refs = kinds::owner_refs(&pod.metadata)
                        .iter()
                        .filter(|r| r.uid != daemon.uid())
                        .cloned()
                        .collect();
                    plan.claims.push(set_owner_refs(pod, refs));
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && !is_deleting(&pod.metadata) {
                    let mut refs = kinds::owner_refs(&pod.metadata).to_vec();
                    refs.push(kinds::controller_reference(Kind::DaemonSet, daemon.meta));
                    plan.claims.push(set_owner_refs(pod, refs));
                    claimed.push(pod);
                }
            }
        }
    }
    claimed
}

/// Kubernetes' `getNodesToDaemonPods`: the claimed pods by the node they are on or meant for,
/// oldest first, leaving out finished pods being deleted.
fn by_node<'p>(claimed: &[&'p PodView]) -> BTreeMap<String, Vec<&'p PodView>> {
    let mut map: BTreeMap<String, Vec<&'p PodView>> = BTreeMap::new();
    for pod in claimed {
        let finished = matches!(phase(pod), "Succeeded" | "Failed");
        if finished && is_deleting(&pod.metadata) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            map.entry(node.to_owned()).or_default().push(pod);
        }
    }
    for pods in map.values_mut() {
        by_age(pods);
    }
    map
}

/// What manage and the rolling update decided for the pods.
#[derive(Default)]
struct Changes<'p> {
    create_on: Vec<String>,
    delete: Vec<&'p PodView>,
}

impl<'p> Changes<'p> {
    fn delete(&mut self, pod: &'p PodView) {
        let uid = kinds::uid(&pod.metadata);
        if !self.delete.iter().any(|p| kinds::uid(&p.metadata) == uid) {
            self.delete.push(pod);
        }
    }
}

/// Kubernetes' `podsShouldBeOnNode` for one node.
#[allow(clippy::too_many_arguments)]
fn pods_on_node<'p>(
    daemon: &Daemon<'_>,
    node: &str,
    fits: Fit,
    pods: Option<&Vec<&'p PodView>>,
    hash: &str,
    now: Timestamp,
    changes: &mut Changes<'p>,
    notes: &mut Vec<Note>,
) {
    let exists = pods.is_some_and(|p| !p.is_empty());
    let pods: &[&'p PodView] = pods.map(Vec::as_slice).unwrap_or_default();
    if fits.should_run && !exists {
        changes.create_on.push(node.to_owned());
    } else if fits.may_continue {
        let mut running: Vec<&'p PodView> = Vec::new();
        for pod in pods.iter().copied() {
            if is_deleting(&pod.metadata) {
                continue;
            }
            match phase(pod) {
                "Failed" => {
                    notes.push(Note {
                        involved: daemon.reference(),
                        component: COMPONENT,
                        type_: "Warning",
                        reason: "FailedDaemonPod",
                        message: format!(
                            "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                            kinds::namespace(&pod.metadata),
                            kinds::name(&pod.metadata)
                        ),
                    });
                    changes.delete(pod);
                }
                "Succeeded" => changes.delete(pod),
                _ => running.push(pod),
            }
        }
        if running.len() <= 1 {
            return;
        }
        // `running` is oldest first.
        if daemon.surge(1) <= 0 {
            for pod in &running[1..] {
                changes.delete(pod);
            }
            return;
        }
        // With surge, an old and a new pod may overlap while the new one turns available.
        let mut oldest_new: Option<&'p PodView> = None;
        let mut oldest_old: Option<&'p PodView> = None;
        for pod in running {
            let slot = if is_updated(pod, hash) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                changes.delete(pod);
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            if !is_ready(old) || is_available(daemon, new, now) {
                changes.delete(old);
            }
        }
    } else if exists {
        for pod in pods {
            if !is_deleting(&pod.metadata) {
                changes.delete(pod);
            }
        }
    }
}

/// Kubernetes' `findUpdatedPodsOnNode`: the node's new and old pod, or `None` when it has more
/// than one of either (manage deals with that first).
fn updated_and_old<'p>(
    pods: &[&'p PodView],
    hash: &str,
) -> Option<(Option<&'p PodView>, Option<&'p PodView>)> {
    let mut new = None;
    let mut old = None;
    for pod in pods.iter().copied().filter(|p| !is_deleting(&p.metadata)) {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// Kubernetes' `rollingUpdate`: old pods replaced within `maxUnavailable` (deleted, manage
/// makes the new one next pass) or `maxSurge` (a new pod made beside the old, which goes once
/// the new one is available).
fn rolling_update<'p>(
    daemon: &Daemon<'_>,
    nodes: &BTreeMap<String, (Fit, Option<Vec<&'p PodView>>)>,
    hash: &str,
    now: Timestamp,
    changes: &mut Changes<'p>,
) {
    let desired = nodes.values().filter(|(f, _)| f.should_run).count() as i32;
    let mut max_surge = daemon.surge(desired);
    let mut max_unavailable = daemon.unavailable(desired);
    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    max_surge = max_surge.max(0);
    let available = |p: &PodView| is_available(daemon, p, now);
    // Nodes that should run a pod and those that have some.
    let considered = nodes
        .iter()
        .filter(|(_, (f, pods))| f.should_run || pods.is_some());
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace: Vec<&'p PodView> = Vec::new();
        let mut candidates: Vec<&'p PodView> = Vec::new();
        for (_, (_, pods)) in considered {
            let pods = pods.as_deref().unwrap_or_default();
            let Some((new, old)) = updated_and_old(pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replace.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        for pod in replace.into_iter().chain(candidates.into_iter().take(room)) {
            changes.delete(pod);
        }
        return;
    }
    let mut to_delete: Vec<&'p PodView> = Vec::new();
    let mut should_not_run: Vec<&'p PodView> = Vec::new();
    let mut allowed: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let mut surging = 0;
    let mut available_count = 0;
    for (node, (fits, pods)) in considered {
        let pods = pods.as_deref().unwrap_or_default();
        let Some((new, old)) = updated_and_old(pods, hash) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.or(new) {
            if available(p) {
                available_count += 1;
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    if fits.should_run {
                        allowed.push(node.clone());
                    } else {
                        to_delete.push(old);
                    }
                } else if !fits.should_run {
                    should_not_run.push(old);
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    to_delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes that should no longer run one go only as other nodes' pods turn available.
    let deletable = (available_count - desired).max(0) as usize;
    to_delete.extend(should_not_run.into_iter().take(deletable));
    let room = (max_surge - surging).max(0) as usize;
    for pod in to_delete {
        changes.delete(pod);
    }
    changes
        .create_on
        .extend(allowed.into_iter().chain(candidates.into_iter().take(room)));
}

/// The pod made for `node` (Kubernetes' `CreatePodTemplate` and `GetPodFromTemplate`): the
/// template's labels with the revision hash and generation, the daemon tolerations, and a
/// required node affinity to the node for the scheduler.
fn daemon_pod(
    daemon: &Daemon<'_>,
    hash: &str,
    node: &str,
    name: &str,
    prefix: &str,
) -> Option<Value> {
    let template: &PodTemplateSpec = &daemon.spec.template;
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut pod_labels = template_meta.labels.unwrap_or_default();
    pod_labels.insert(HASH_LABEL.to_owned(), hash.to_owned());
    if let Some(generation) = daemon.meta.generation {
        pod_labels.insert(GENERATION_LABEL.to_owned(), generation.to_string());
    }
    let mut spec = daemon.pod_spec.clone();
    pin_to_node(&mut spec.affinity, node);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            generate_name: Some(prefix.to_owned()),
            namespace: daemon.meta.namespace.clone(),
            labels: Some(pod_labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![kinds::controller_reference(
                Kind::DaemonSet,
                daemon.meta,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
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

/// The pod's `PodScheduled=False` message, when the scheduler cannot place it.
fn unschedulable(pod: &PodView) -> Option<&str> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.as_deref().unwrap_or_default())
}

/// The status counts of a pass (Kubernetes' `updateDaemonSetStatus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

/// One pass over a DaemonSet whose current revision has `hash`. `suffix` makes the random part
/// of new pod names.
pub(crate) fn reconcile(
    daemon: &Daemon<'_>,
    hash: &str,
    inputs: &Inputs<'_>,
    suffix: &mut dyn FnMut() -> String,
) -> Decision {
    let mut plan = Decision::default();
    let now = inputs.now;
    let claimed = claim(daemon, inputs.pods, &mut plan);
    let mut on_node = by_node(&claimed);

    // Every node with how the DaemonSet fits it and its pods; then nodes that are gone.
    let mut nodes: BTreeMap<String, (Fit, Option<Vec<&PodView>>)> = BTreeMap::new();
    for node in inputs.nodes {
        let name = kinds::name(&node.metadata).to_owned();
        let pods = on_node.remove(&name);
        nodes.insert(name, (fit(&daemon.pod_spec, node), pods));
    }
    let gone: Vec<&PodView> = on_node.into_values().flatten().collect();

    let mut changes = Changes::default();
    let deleting = is_deleting(daemon.meta);
    if inputs.may_manage && !deleting {
        for (name, (fits, pods)) in &nodes {
            pods_on_node(
                daemon,
                name,
                *fits,
                pods.as_ref(),
                hash,
                now,
                &mut changes,
                &mut plan.notes,
            );
        }
        // Pods meant for nodes that no longer exist never run (Kubernetes'
        // `getUnscheduledPodsWithoutNode`); minik also removes those bound to a node that was
        // deleted, having no pod garbage collector.
        for pod in &gone {
            if !is_deleting(&pod.metadata) {
                changes.delete(pod);
            }
        }
        // Kubernetes rolls only once the creates and deletes of manage are seen.
        if changes.create_on.is_empty() && changes.delete.is_empty() && daemon.rolling() {
            rolling_update(daemon, &nodes, hash, now, &mut changes);
        }
    }

    // Warnings about daemon pods the scheduler cannot place on their node.
    for (name, (fits, pods)) in &nodes {
        if !fits.should_run {
            continue;
        }
        for pod in pods.iter().flatten() {
            if let Some(message) = unschedulable(pod) {
                plan.notes.push(Note {
                    involved: daemon.reference(),
                    component: COMPONENT,
                    type_: "Warning",
                    reason: "FailedPlacement",
                    message: format!("failed to place pod on {name:?}: {message}"),
                });
            }
        }
    }

    let namespace = kinds::namespace(daemon.meta).to_owned();
    if !changes.create_on.is_empty() {
        let prefix = generate_prefix(kinds::name(daemon.meta));
        let objects: Vec<Value> = changes
            .create_on
            .iter()
            .take(inputs.burst)
            .filter_map(|node| {
                daemon_pod(
                    daemon,
                    hash,
                    node,
                    &format!("{prefix}{}", suffix()),
                    &prefix,
                )
            })
            .collect();
        plan.manage.push(Action::Create {
            kind: Kind::Pod,
            namespace: namespace.clone(),
            objects,
            announce: Some(Announce {
                involved: daemon.reference(),
                component: COMPONENT,
                reason: "SuccessfulCreate",
                verb: "Created pod: ",
            }),
        });
    }
    if !changes.delete.is_empty() {
        let targets = changes
            .delete
            .iter()
            .take(inputs.burst)
            .map(|p| Target {
                name: kinds::name(&p.metadata).to_owned(),
                uid: kinds::uid(&p.metadata).to_owned(),
                resource_version: None,
            })
            .collect();
        plan.manage.push(Action::Delete {
            kind: Kind::Pod,
            namespace: namespace.clone(),
            targets,
            propagation: None,
            announce: Some(Announce {
                involved: daemon.reference(),
                component: COMPONENT,
                reason: "SuccessfulDelete",
                verb: "Deleted pod: ",
            }),
        });
    }

    // Status, from the pods as this pass found them.
    let mut counts = Counts::default();
    let mut live_hashes: BTreeSet<&str> = BTreeSet::new();
    for (fits, pods) in nodes.values() {
        let pods = pods.as_deref().unwrap_or_default();
        for pod in pods {
            if let Some(h) = labels(&pod.metadata).get(HASH_LABEL) {
                live_hashes.insert(h);
            }
        }
        if !fits.should_run {
            if !pods.is_empty() {
                counts.misscheduled += 1;
            }
            continue;
        }
        counts.desired += 1;
        let Some(pod) = pods.first() else { continue };
        counts.current += 1;
        if is_ready(pod) {
            counts.ready += 1;
            match availability(pod, daemon.min_ready_seconds(), now) {
                Availability::Available => counts.available += 1,
                Availability::AvailableIn(after) => plan.requeue(after),
                Availability::NotReady => {}
            }
        }
        if is_updated(pod, hash) {
            counts.updated += 1;
        }
    }
    for pod in &gone {
        if let Some(h) = labels(&pod.metadata).get(HASH_LABEL) {
            live_hashes.insert(h);
        }
    }
    let generation = daemon.meta.generation.unwrap_or(0);
    plan.status = status_patch(
        &daemon.status,
        &counts,
        inputs.may_manage.then_some(generation),
    );

    // The history beyond its limit, never a revision a pod still runs.
    if inputs.may_manage && !deleting {
        plan.truncate = history::to_truncate(
            inputs.old_revisions.iter().copied(),
            daemon.spec.revision_history_limit,
            |r| live_hashes.contains(hash_of(r).as_str()),
        )
        .into_iter()
        .map(|r| Target {
            name: kinds::name(&r.metadata).to_owned(),
            uid: kinds::uid(&r.metadata).to_owned(),
            resource_version: None,
        })
        .collect();
    }
    plan
}

/// The status patch for `counts` (and `observed`, the generation seen, when the pass could
/// manage pods), or `None` when the stored status says that already.
pub(crate) fn status_patch(old: &Value, counts: &Counts, observed: Option<i64>) -> Option<Value> {
    let mut new = serde_json::Map::new();
    let mut set = |key: &str, value: i64, omit_zero: bool| {
        new.insert(
            key.to_owned(),
            if omit_zero && value == 0 {
                Value::Null
            } else {
                json!(value)
            },
        );
    };
    set("desiredNumberScheduled", counts.desired.into(), false);
    set("currentNumberScheduled", counts.current.into(), false);
    set("numberMisscheduled", counts.misscheduled.into(), false);
    set("numberReady", counts.ready.into(), false);
    set("updatedNumberScheduled", counts.updated.into(), true);
    set("numberAvailable", counts.available.into(), true);
    set(
        "numberUnavailable",
        (counts.desired - counts.available).into(),
        true,
    );
    if let Some(generation) = observed {
        let seen = old
            .get("observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if generation > seen {
            set("observedGeneration", generation, false);
        }
    }
    let unchanged = new.iter().all(|(k, v)| match v {
        Value::Null => old.get(k).is_none_or(|o| o.is_null() || o == &json!(0)),
        v => old.get(k) == Some(v),
    });
    (!unchanged).then(|| json!({ "status": Value::Object(new) }))
}
