//! The scheduler's bookkeeping, without I/O: which pods are pending, which are placed where
//! (including the ones it has decided on but whose binding is not confirmed yet — Kubernetes'
//! "assumed" pods), the queue, and what it has told users about pods that fit nowhere. Every
//! method takes the time and returns the writes to make; the runner makes them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use minik_api::k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim,
};
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::podview::PodView;
use minik_api::ApiError;
use minik_client::{cache_key, object_reference, EventNote, EventType};
use serde_json::{json, Value};

use crate::decide::schedule_with;
use crate::pod::PodRequirements;
use crate::queue::{Backoff, SchedulingQueue};
use crate::score::Weights;
use crate::snapshot::{PlacedPod, Snapshot};
use crate::volumes::ClaimToSelect;

/// The name events and the status are reported under, and the `schedulerName` served.
pub use minik_api::wellknown::DEFAULT_SCHEDULER_NAME;

/// The two clocks the bookkeeping needs: a monotonic one for back-offs and the wall clock for
/// the status's timestamps.
#[derive(Clone, Debug)]
pub struct Clock {
    pub now: Instant,
    /// RFC 3339, whole seconds, UTC, as Kubernetes writes timestamps.
    pub timestamp: String,
}

/// A write the runner makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Bind the pod through the binding subresource; report the result with
    /// [`State::on_bind_result`]. First (Kubernetes' PreBind) give each of `claims` the node in
    /// its `volume.kubernetes.io/selected-node` annotation; when one of those writes fails,
    /// report it with [`State::on_prebind_failed`] instead of binding.
    Bind {
        key: String,
        namespace: String,
        name: String,
        uid: String,
        node: String,
        claims: Vec<ClaimToSelect>,
    },
    /// Patch the pod's status with this strategic merge patch (which carries the pod's
    /// resourceVersion, so it does not apply to a pod that changed meanwhile).
    PatchStatus {
        key: String,
        namespace: String,
        name: String,
        patch: Value,
    },
    /// Record this event (the recorder turns repeats into one event with a count).
    /// `deferrable` events (`Scheduled`) may wait until the bindings of a burst are done; the
    /// others (a pod that fits nowhere) go out at once.
    Event { note: EventNote, deferrable: bool },
}

/// What the scheduler knows about one pod.
#[derive(Clone, Debug)]
enum Tracked {
    /// Waiting to be placed (it is in the queue, or being tried).
    Pending {
        pod: Arc<PodView>,
        requirements: Arc<PodRequirements>,
    },
    /// Placed by this scheduler; the bind is in flight. Counted on its node.
    Binding {
        pod: Arc<PodView>,
        placed: PlacedPod,
    },
    /// On a node: seen there by the watch, or bound by this scheduler and not seen yet. Either
    /// way a later view of the pod without a node is older than the binding and is ignored.
    Placed {
        pod: Arc<PodView>,
        placed: PlacedPod,
    },
}

#[derive(Clone, Debug)]
struct TrackedPod {
    uid: String,
    resource_version: u64,
    state: Tracked,
}

impl TrackedPod {
    fn placed(&self) -> Option<&PlacedPod> {
        match &self.state {
            Tracked::Pending { .. } => None,
            Tracked::Binding { placed, .. } | Tracked::Placed { placed, .. } => Some(placed),
        }
    }
}

/// What has been reported about a pod that fit nowhere.
#[derive(Clone, Debug, Default)]
struct Reported {
    /// The condition message last written, and the resourceVersion of the pod it was written
    /// over: it is not written again until the pod has changed.
    condition: Option<(String, u64)>,
}

/// The scheduler's state.
pub struct State {
    scheduler_name: String,
    weights: Weights,
    pub snapshot: Snapshot,
    pub queue: SchedulingQueue,
    pods: HashMap<String, TrackedPod>,
    reported: HashMap<String, Reported>,
    /// Advances after every placement, so that equal nodes take turns.
    turn: usize,
}

fn resource_version(pod: &PodView) -> u64 {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn node_name(pod: &PodView) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &PodView) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pod_scheduled_condition(pod: &PodView) -> Option<(&str, &str, &str, Option<String>)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.as_str(),
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or(""),
        c.last_transition_time
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
    ))
}

impl State {
    pub fn new(scheduler_name: &str, backoff: Backoff, weights: Weights) -> State {
        State {
            scheduler_name: scheduler_name.to_owned(),
            weights,
            snapshot: Snapshot::new(),
            queue: SchedulingQueue::new(backoff),
            pods: HashMap::new(),
            reported: HashMap::new(),
            turn: 0,
        }
    }

    /// Whether this scheduler should place the pod: not on a node, not finished, not being
    /// deleted, and asking for this scheduler (an empty `schedulerName` means the default one).
    fn is_ours(&self, pod: &PodView) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        name == self.scheduler_name && pod.metadata.deletion_timestamp.is_none()
    }

    /// Stops tracking a pod; returns whether it held anything on a node.
    fn untrack(&mut self, key: &str) -> bool {
        self.queue.remove(key);
        self.reported.remove(key);
        match self.pods.remove(key) {
            Some(t) => match t.placed() {
                Some(placed) => {
                    self.snapshot.remove_pod(placed);
                    true
                }
                None => false,
            },
            None => false,
        }
    }

    /// A pod was added or changed (or is in a fresh list).
    pub fn on_pod(&mut self, pod: Arc<PodView>, now: Instant) {
        let key = cache_key(&pod.metadata);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let rv = resource_version(&pod);
        if let Some(t) = self.pods.get(&key) {
            if t.uid == uid && (rv < t.resource_version || rv == t.resource_version && rv != 0) {
                // An older view than one already seen (a relist raced the watch), or the same
                // one again (the informer's first list, then a resync, repeat every pod).
                return;
            }
            if t.uid != uid {
                // The name was reused by a new pod.
                if self.untrack(&key) {
                    self.queue.move_all_unschedulable(now);
                }
            }
        }

        if is_terminal(&pod) {
            // A finished pod's resources are free again (kube-scheduler drops it too).
            if self.untrack(&key) {
                self.queue.move_all_unschedulable(now);
            }
            return;
        }

        if let Some(node) = node_name(&pod) {
            let placed = PlacedPod::new(node, &PodRequirements::of(&pod));
            if let Some(old) = self.pods.get(&key).and_then(|t| t.placed()) {
                if *old == placed {
                    // Our assumption (or what we had), now confirmed as it was.
                    if let Some(t) = self.pods.get_mut(&key) {
                        t.resource_version = rv;
                        t.state = Tracked::Placed { pod, placed };
                    }
                    return;
                }
                let old = old.clone();
                self.snapshot.remove_pod(&old);
            }
            self.queue.remove(&key);
            self.reported.remove(&key);
            self.snapshot.add_pod(&placed);
            self.pods.insert(
                key,
                TrackedPod {
                    uid,
                    resource_version: rv,
                    state: Tracked::Placed { pod, placed },
                },
            );
            return;
        }

        // Not on a node.
        if let Some(t) = self.pods.get(&key) {
            if t.placed().is_some() {
                // Bound (or being bound) by this scheduler: this is a view from before the bind.
                return;
            }
        }
        if !self.is_ours(&pod) {
            self.untrack(&key);
            return;
        }
        let requirements = PodRequirements::of(&pod);
        let changed = match self.pods.get(&key).map(|t| &t.state) {
            Some(Tracked::Pending {
                requirements: old, ..
            }) => **old != requirements,
            _ => true,
        };
        self.pods.insert(
            key.clone(),
            TrackedPod {
                uid,
                resource_version: rv,
                state: Tracked::Pending {
                    pod,
                    requirements: Arc::new(requirements),
                },
            },
        );
        // A change the scheduler's own status write made is not a reason to try again; a
        // change of what the pod asks for is.
        if changed || !self.queue.contains(&key) {
            self.queue.add(&key, now);
        }
    }

    /// A pod was deleted.
    pub fn on_pod_deleted(&mut self, pod: &PodView, now: Instant) {
        let key = cache_key(&pod.metadata);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.pods.get(&key).is_some_and(|t| t.uid != uid) {
            return;
        }
        if self.untrack(&key) {
            // Its node has room again.
            self.queue.move_all_unschedulable(now);
        }
    }

    /// A node was added or changed.
    pub fn on_node(&mut self, node: &Node, now: Instant) {
        if self.snapshot.set_node(node) {
            self.queue.move_all_unschedulable(now);
        }
    }

    /// A node was deleted.
    pub fn on_node_deleted(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.snapshot.remove_node(name);
        }
    }

    /// A PersistentVolumeClaim was added or changed: pods its absence or state kept from
    /// every node may fit now.
    pub fn on_claim(&mut self, claim: &PersistentVolumeClaim, now: Instant) {
        if self.snapshot.volumes_mut().set_claim(claim) {
            self.queue.move_all_unschedulable(now);
        }
    }

    /// A PersistentVolumeClaim was deleted.
    pub fn on_claim_deleted(&mut self, claim: &PersistentVolumeClaim) {
        self.snapshot
            .volumes_mut()
            .remove_claim(&cache_key(&claim.metadata));
    }

    /// A PersistentVolume was added or changed.
    pub fn on_volume(&mut self, pv: &PersistentVolume, now: Instant) {
        if self.snapshot.volumes_mut().set_volume(pv) {
            self.queue.move_all_unschedulable(now);
        }
    }

    /// A PersistentVolume was deleted.
    pub fn on_volume_deleted(&mut self, pv: &PersistentVolume) {
        if let Some(name) = pv.metadata.name.as_deref() {
            self.snapshot.volumes_mut().remove_volume(name);
        }
    }

    /// A StorageClass was added or changed.
    pub fn on_class(&mut self, class: &StorageClass, now: Instant) {
        if self.snapshot.volumes_mut().set_class(class) {
            self.queue.move_all_unschedulable(now);
        }
    }

    /// A StorageClass was deleted.
    pub fn on_class_deleted(&mut self, class: &StorageClass) {
        if let Some(name) = class.metadata.name.as_deref() {
            self.snapshot.volumes_mut().remove_class(name);
        }
    }

    /// Takes in complete, fresh lists of claims, volumes and classes (call [`State::resync`]
    /// after it: that gives the parked pods another look).
    pub fn resync_volumes(
        &mut self,
        claims: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
        classes: &[Arc<StorageClass>],
    ) {
        self.snapshot.volumes_mut().resync(claims, volumes, classes);
    }

    /// Takes in a complete, fresh view of the cluster (after a relist, a periodic resync, or
    /// falling behind the watch): whatever the view lacks is gone, everything else is applied,
    /// and the parked pods get another look.
    pub fn resync(&mut self, pods: &[Arc<PodView>], nodes: &[Arc<Node>], now: Instant) {
        let node_names: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let gone_nodes: Vec<String> = self
            .snapshot
            .nodes()
            .map(|(n, _)| n.name.clone())
            .filter(|n| !node_names.contains(n.as_str()))
            .collect();
        for name in gone_nodes {
            self.snapshot.remove_node(&name);
        }
        for node in nodes {
            self.snapshot.set_node(node);
        }
        let keys: HashSet<String> = pods.iter().map(|p| cache_key(&p.metadata)).collect();
        let gone_pods: Vec<String> = self
            .pods
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for key in gone_pods {
            self.untrack(&key);
        }
        for pod in pods {
            self.on_pod(pod.clone(), now);
        }
        self.queue.move_all_unschedulable(now);
    }

    /// Tries the next ready pod, if there is one: returns `None` when nothing is ready, else
    /// the writes the attempt calls for (a bind, or the reports of a pod that fits nowhere).
    pub fn schedule_next(&mut self, clock: &Clock) -> Option<Vec<Action>> {
        loop {
            let key = self.queue.pop(clock.now)?;
            let Some(tracked) = self.pods.get(&key) else {
                continue;
            };
            let Tracked::Pending { pod, requirements } = &tracked.state else {
                continue;
            };
            let (pod, requirements) = (pod.clone(), requirements.clone());
            return Some(self.attempt(&key, pod, &requirements, clock));
        }
    }

    fn attempt(
        &mut self,
        key: &str,
        pod: Arc<PodView>,
        requirements: &PodRequirements,
        clock: &Clock,
    ) -> Vec<Action> {
        match schedule_with(&self.snapshot, requirements, self.turn, &self.weights) {
            Ok(placement) => {
                self.turn = self.turn.wrapping_add(1);
                let placed = PlacedPod::new(&placement.node, requirements);
                // Assume the pod is there until the bind says otherwise, so that the next
                // decisions already count it; likewise the node of its claims, so that the
                // claims' other pods follow it there.
                self.snapshot.add_pod(&placed);
                for claim in &placement.claims_to_select {
                    self.snapshot
                        .volumes_mut()
                        .assume_selected(&claim.key(), &placement.node);
                }
                let Some(t) = self.pods.get_mut(key) else {
                    return Vec::new();
                };
                t.state = Tracked::Binding {
                    pod: pod.clone(),
                    placed,
                };
                vec![Action::Bind {
                    key: key.to_owned(),
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    uid: t.uid.clone(),
                    node: placement.node,
                    claims: placement.claims_to_select,
                }]
            }
            Err(fit) => {
                self.queue.unschedulable(key, clock.now);
                self.report_unschedulable(key, &pod, &fit.to_string(), clock)
            }
        }
    }

    /// An event about `pod`, from this scheduler.
    fn note(&self, pod: &PodView, type_: EventType, reason: &str, message: &str) -> EventNote {
        EventNote {
            involved: ObjectReference {
                resource_version: pod.metadata.resource_version.clone(),
                ..object_reference(pod)
            },
            component: self.scheduler_name.clone(),
            host: None,
            type_,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }

    /// The condition and the event of a pod that fits nowhere: the condition only when it
    /// changes, the event every time (the recorder counts repeats in one event, and makes a new
    /// one only when the message changes).
    fn report_unschedulable(
        &mut self,
        key: &str,
        pod: &PodView,
        message: &str,
        clock: &Clock,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let rv = resource_version(pod);
        let reported = self.reported.remove(key).unwrap_or_default();
        let mut reported = reported;

        let current = pod_scheduled_condition(pod);
        let up_to_date = current.as_ref().is_some_and(|(status, reason, msg, _)| {
            *status == "False" && *reason == "Unschedulable" && *msg == message
        });
        let already_written = reported
            .condition
            .as_ref()
            .is_some_and(|(m, at)| m == message && *at == rv);
        if !up_to_date && !already_written {
            // The transition time moves only when the status does.
            let transition = match &current {
                Some(("False", _, _, Some(t))) => t.clone(),
                _ => clock.timestamp.clone(),
            };
            actions.push(Action::PatchStatus {
                key: key.to_owned(),
                namespace: namespace.clone(),
                name: name.clone(),
                patch: json!({
                    "metadata": {"resourceVersion": pod.metadata.resource_version},
                    "status": {"conditions": [{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": null,
                        "lastTransitionTime": transition,
                    }]}
                }),
            });
            reported.condition = Some((message.to_owned(), rv));
        }

        actions.push(Action::Event {
            note: self.note(pod, EventType::Warning, "FailedScheduling", message),
            deferrable: false,
        });
        self.reported.insert(key.to_owned(), reported);
        actions
    }

    /// A status write could not be made: forget it was, so the next attempt writes it again.
    pub fn status_not_written(&mut self, key: &str) {
        if let Some(r) = self.reported.get_mut(key) {
            r.condition = None;
        }
    }

    /// The result of a [`Action::Bind`].
    pub fn on_bind_result(
        &mut self,
        key: &str,
        uid: &str,
        node: &str,
        result: Result<(), ApiError>,
        clock: &Clock,
    ) -> Vec<Action> {
        let Some(tracked) = self.pods.get(key).filter(|t| t.uid == uid) else {
            // Deleted (or replaced) while the bind was in flight.
            return Vec::new();
        };
        let (pod, placed, binding) = match &tracked.state {
            Tracked::Binding { pod, placed } => (pod.clone(), placed.clone(), true),
            Tracked::Placed { pod, placed } => (pod.clone(), placed.clone(), false),
            Tracked::Pending { .. } => return Vec::new(),
        };
        if placed.node != node {
            // Not what this bind was about (the pod was seen on another node meanwhile).
            return Vec::new();
        }
        match result {
            Ok(()) => {
                if binding {
                    if let Some(t) = self.pods.get_mut(key) {
                        t.state = Tracked::Placed {
                            pod: pod.clone(),
                            placed,
                        };
                    }
                }
                // Also when the watch showed the pod on its node before the bind answered:
                // this bind is what put it there.
                self.queue.remove(key);
                self.reported.remove(key);
                vec![self.scheduled_event(&pod, node)]
            }
            Err(_) if !binding => {
                // The watch shows the pod on this node already; the answer came late.
                Vec::new()
            }
            Err(e) => {
                self.snapshot.remove_pod(&placed);
                if e.is_conflict() || e.is_not_found() {
                    // Someone else bound it, or it is being deleted or gone: the watch tells
                    // where it is now, and a resync brings it back if it is still pending.
                    tracing::debug!(pod = key, error = %e, "binding refused; dropping the pod");
                    self.pods.remove(key);
                    self.queue.remove(key);
                    self.reported.remove(key);
                } else {
                    tracing::warn!(pod = key, node, error = %e, "binding failed; retrying");
                    let requirements = Arc::new(PodRequirements::of(&pod));
                    if let Some(t) = self.pods.get_mut(key) {
                        t.state = Tracked::Pending { pod, requirements };
                    }
                    self.queue.retry(key, clock.now);
                }
                Vec::new()
            }
        }
    }

    /// A claim's annotation could not be written before binding the pod to `node`: nothing
    /// of the decision stands, and the pod is tried again after its back-off (Kubernetes
    /// sends a pod whose PreBind failed back to the queue), with a warning event.
    pub fn on_prebind_failed(
        &mut self,
        key: &str,
        uid: &str,
        node: &str,
        claims: &[ClaimToSelect],
        error: &ApiError,
        clock: &Clock,
    ) -> Vec<Action> {
        for claim in claims {
            self.snapshot
                .volumes_mut()
                .forget_selected(&claim.key(), node);
        }
        let Some(tracked) = self.pods.get(key).filter(|t| t.uid == uid) else {
            return Vec::new();
        };
        let Tracked::Binding { pod, placed } = &tracked.state else {
            return Vec::new();
        };
        if placed.node != node {
            return Vec::new();
        }
        let (pod, placed) = (pod.clone(), placed.clone());
        self.snapshot.remove_pod(&placed);
        tracing::warn!(pod = key, node, error = %error, "setting the selected node of a claim failed; retrying");
        let requirements = Arc::new(PodRequirements::of(&pod));
        if let Some(t) = self.pods.get_mut(key) {
            t.state = Tracked::Pending {
                pod: pod.clone(),
                requirements,
            };
        }
        self.queue.retry(key, clock.now);
        let message = format!("running PreBind plugin \"VolumeBinding\": {error}");
        vec![Action::Event {
            note: self.note(&pod, EventType::Warning, "FailedScheduling", &message),
            deferrable: false,
        }]
    }

    fn scheduled_event(&self, pod: &PodView, node: &str) -> Action {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let message = format!("Successfully assigned {namespace}/{name} to {node}");
        Action::Event {
            note: self.note(pod, EventType::Normal, "Scheduled", &message),
            deferrable: true,
        }
    }

    /// How many pods are waiting to be placed.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn clock(now: Instant, second: u64) -> Clock {
        Clock {
            now: now + Duration::from_secs(second),
            timestamp: format!("2025-01-01T00:00:{second:02}Z"),
        }
    }

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .expect("a node")
    }

    fn pod(name: &str, rv: u64, cpu: &str, node: Option<&str>) -> Arc<PodView> {
        let mut spec = json!({
            "schedulerName": "default-scheduler",
            "containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}]
        });
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": rv.to_string()},
                "spec": spec,
                "status": {"phase": "Pending"}
            }))
            .expect("a pod"),
        )
    }

    fn state() -> State {
        State::new(
            DEFAULT_SCHEDULER_NAME,
            Backoff::default(),
            Weights::default(),
        )
    }

    fn binds(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Bind { name, node, .. } => Some((name.clone(), node.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn assumed_pods_count_before_the_watch_confirms_them() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("a", 1, "600m", None), t);
        s.on_pod(pod("b", 2, "600m", None), t);
        let first = s.schedule_next(&clock(t, 0)).expect("a is ready");
        assert_eq!(binds(&first), [("a".to_owned(), "n1".to_owned())]);
        // The bind has not even answered: b must not be put on the same node.
        let second = s.schedule_next(&clock(t, 0)).expect("b is ready");
        assert!(binds(&second).is_empty());
        assert!(matches!(&second[0], Action::PatchStatus { patch, .. }
            if patch["status"]["conditions"][0]["message"] == "0/1 nodes are available: 1 Insufficient cpu."));
        // An old view of a (from before the bind) does not undo the assumption.
        s.on_pod(pod("a", 1, "600m", None), t);
        assert_eq!(
            s.snapshot.get("n1").map(|n| n.requested.milli_cpu),
            Some(600)
        );
        let done = s.on_bind_result("default/a", "uid-a", "n1", Ok(()), &clock(t, 1));
        assert!(
            matches!(&done[..], [Action::Event { note, deferrable: true }]
            if note.reason == "Scheduled" && note.message == "Successfully assigned default/a to n1")
        );
        // The watch confirms; nothing is counted twice.
        s.on_pod(pod("a", 3, "600m", Some("n1")), t);
        assert_eq!(
            s.snapshot.get("n1").map(|n| n.requested.milli_cpu),
            Some(600)
        );
        // a is deleted: b is tried again after its back-off and goes on n1.
        s.on_pod_deleted(&pod("a", 4, "600m", Some("n1")), t + Duration::from_secs(1));
        let retried = s.schedule_next(&clock(t, 1)).expect("b is back");
        assert_eq!(binds(&retried), [("b".to_owned(), "n1".to_owned())]);
    }

    #[test]
    fn the_scheduled_event_comes_even_when_the_watch_is_first() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("a", 1, "600m", None), t);
        s.schedule_next(&clock(t, 0));
        s.on_pod(pod("a", 2, "600m", Some("n1")), t);
        let done = s.on_bind_result("default/a", "uid-a", "n1", Ok(()), &clock(t, 0));
        assert!(matches!(&done[..], [Action::Event { note, .. }] if note.reason == "Scheduled"));
        assert_eq!(
            s.snapshot.get("n1").map(|n| n.requested.milli_cpu),
            Some(600)
        );
    }

    #[test]
    fn a_conflict_drops_the_assumption() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("a", 1, "600m", None), t);
        s.schedule_next(&clock(t, 0));
        let conflict = ApiError::Conflict {
            target: minik_api::ObjectRef::new("", "pods", "a"),
            detail: "pod a is already assigned to node \"n2\"".into(),
        };
        assert!(s
            .on_bind_result("default/a", "uid-a", "n1", Err(conflict), &clock(t, 0))
            .is_empty());
        assert_eq!(s.snapshot.get("n1").map(|n| n.requested.milli_cpu), Some(0));
        assert_eq!(s.schedule_next(&clock(t, 60)), None, "not retried");
        // The watch shows where it went.
        s.on_pod(pod("a", 2, "600m", Some("n2")), t);
        assert_eq!(
            s.snapshot.get("n2").map(|n| n.requested.milli_cpu),
            Some(600)
        );
    }

    #[test]
    fn other_bind_errors_retry_after_a_back_off() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("a", 1, "600m", None), t);
        s.schedule_next(&clock(t, 0));
        let down = ApiError::ServiceUnavailable("the server is shutting down".into());
        s.on_bind_result("default/a", "uid-a", "n1", Err(down), &clock(t, 0));
        assert_eq!(s.snapshot.get("n1").map(|n| n.requested.milli_cpu), Some(0));
        assert_eq!(s.schedule_next(&clock(t, 0)), None, "backing off");
        let again = s.schedule_next(&clock(t, 1)).expect("retried");
        assert_eq!(binds(&again), [("a".to_owned(), "n1".to_owned())]);
    }

    #[test]
    fn every_failed_attempt_is_an_event_and_the_condition_is_written_on_change() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("big", 1, "2", None), t);
        let first = s.schedule_next(&clock(t, 0)).expect("ready");
        let [Action::PatchStatus { .. }, Action::Event { note, deferrable }] = &first[..] else {
            panic!("{first:?}")
        };
        assert!(!deferrable);
        assert_eq!(note.type_, EventType::Warning);
        assert_eq!(note.reason, "FailedScheduling");
        assert_eq!(note.message, "0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(note.component, "default-scheduler");
        assert_eq!(note.involved.name.as_deref(), Some("big"));
        assert_eq!(note.involved.uid.as_deref(), Some("uid-big"));
        // The status write lands: the pod now carries the condition.
        let mut with_condition = (*pod("big", 2, "2", None)).clone();
        with_condition.status = serde_json::from_value(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu.",
            "lastTransitionTime": "2025-01-01T00:00:00Z"
        }]}))
        .expect("status");
        s.on_pod(Arc::new(with_condition), t);
        assert_eq!(
            s.schedule_next(&clock(t, 5)),
            None,
            "our own status write is no reason to retry"
        );
        // A node change brings it back; the same message: no status write (unchanged), the
        // same event again (which the recorder counts).
        let mut relabelled = node("n1", "1");
        relabelled.metadata.labels = Some([("disk".to_owned(), "ssd".to_owned())].into());
        s.on_node(&relabelled, t + Duration::from_secs(5));
        let second = s.schedule_next(&clock(t, 5)).expect("retried");
        assert!(
            matches!(&second[..], [Action::Event { note: again, .. }] if again.message == note.message),
            "{second:?}"
        );
        // Another node: another message, so the condition changes and the event says so.
        s.on_node(&node("n2", "1"), t + Duration::from_secs(10));
        let third = s.schedule_next(&clock(t, 10)).expect("retried");
        assert!(
            matches!(&third[..], [Action::PatchStatus { .. }, Action::Event { note, .. }]
            if note.message == "0/2 nodes are available: 2 Insufficient cpu."),
            "{third:?}"
        );
    }

    #[test]
    fn pods_for_other_schedulers_or_being_deleted_are_left_alone() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        let mut other = (*pod("x", 1, "1m", None)).clone();
        other.spec.as_mut().expect("spec").scheduler_name = Some("my-scheduler".into());
        s.on_pod(Arc::new(other), t);
        let mut deleting = (*pod("y", 1, "1m", None)).clone();
        deleting.metadata.deletion_timestamp =
            serde_json::from_value(json!("2025-01-01T00:00:00Z")).expect("time");
        s.on_pod(Arc::new(deleting), t);
        assert_eq!(s.schedule_next(&clock(t, 0)), None);
        // An empty schedulerName is the default scheduler's.
        let mut empty = (*pod("z", 1, "1m", None)).clone();
        empty.spec.as_mut().expect("spec").scheduler_name = None;
        s.on_pod(Arc::new(empty), t);
        assert!(s.schedule_next(&clock(t, 0)).is_some());
    }

    #[test]
    fn finished_pods_free_their_node() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "1"), t);
        s.on_pod(pod("done", 1, "1", Some("n1")), t);
        assert_eq!(
            s.snapshot.get("n1").map(|n| n.requested.milli_cpu),
            Some(1000)
        );
        let mut finished = (*pod("done", 2, "1", Some("n1"))).clone();
        finished.status.as_mut().expect("status").phase = Some("Succeeded".into());
        s.on_pod(Arc::new(finished), t);
        assert_eq!(s.snapshot.get("n1").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn a_resync_forgets_what_is_gone_and_keeps_what_is_assumed() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "4"), t);
        s.on_node(&node("n2", "4"), t);
        s.on_pod(pod("old", 1, "1", Some("n2")), t);
        s.on_pod(pod("a", 2, "1", None), t);
        let bound = s.schedule_next(&clock(t, 0)).expect("a");
        assert_eq!(
            binds(&bound),
            [("a".to_owned(), "n1".to_owned())],
            "n2 is busier"
        );
        // The fresh view: n2 and the old pod are gone; a is still shown unassigned.
        s.resync(&[pod("a", 2, "1", None)], &[Arc::new(node("n1", "4"))], t);
        assert_eq!(s.snapshot.len(), 1);
        assert_eq!(
            s.snapshot.get("n1").map(|n| n.requested.milli_cpu),
            Some(1000)
        );
        assert!(s.snapshot.get("n2").is_none());
        assert_eq!(
            s.schedule_next(&clock(t, 0)),
            None,
            "a is not scheduled twice"
        );
    }

    fn with_claim(pod: Arc<PodView>, claim: &str) -> Arc<PodView> {
        let mut pod = (*pod).clone();
        pod.spec.as_mut().expect("spec").volumes = Some(
            serde_json::from_value(
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]),
            )
            .expect("volumes"),
        );
        Arc::new(pod)
    }

    fn claim(name: &str, rv: u64) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path"},
            "status": {"phase": "Pending"}
        }))
        .expect("a claim")
    }

    fn local_path() -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "local-path"},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"
        }))
        .expect("a class")
    }

    fn bind_claims(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .flat_map(|a| match a {
                Action::Bind { claims, .. } => claims.iter().map(|c| c.key()).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_waiting_claim_gets_the_node_first_and_its_other_pods_follow() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "4"), t);
        s.on_node(&node("n2", "4"), t);
        s.on_class(&local_path(), t);
        s.on_claim(&claim("data", 5), t);
        s.on_pod(with_claim(pod("a", 1, "500m", None), "data"), t);
        s.on_pod(with_claim(pod("b", 2, "500m", None), "data"), t);
        let first = s.schedule_next(&clock(t, 0)).expect("a");
        let [Action::Bind { node, claims, .. }] = &first[..] else {
            panic!("{first:?}")
        };
        assert_eq!(
            claims,
            &[ClaimToSelect {
                namespace: "default".into(),
                name: "data".into(),
                resource_version: Some("5".into()),
            }]
        );
        // b would go to the emptier node, but the claim's node is a's now; nothing to write.
        let second = s.schedule_next(&clock(t, 0)).expect("b");
        assert_eq!(binds(&second), [("b".to_owned(), node.clone())]);
        assert!(bind_claims(&second).is_empty());
    }

    #[test]
    fn a_failed_claim_write_puts_the_pod_back() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "4"), t);
        s.on_class(&local_path(), t);
        s.on_claim(&claim("data", 5), t);
        s.on_pod(with_claim(pod("a", 1, "1", None), "data"), t);
        let first = s.schedule_next(&clock(t, 0)).expect("a");
        let [Action::Bind { claims, .. }] = &first[..] else {
            panic!("{first:?}")
        };
        let conflict = ApiError::Conflict {
            target: minik_api::ObjectRef::new("", "persistentvolumeclaims", "data"),
            detail: "the object has been modified".into(),
        };
        let failed =
            s.on_prebind_failed("default/a", "uid-a", "n1", claims, &conflict, &clock(t, 0));
        let [Action::Event {
            note,
            deferrable: false,
        }] = &failed[..]
        else {
            panic!("{failed:?}")
        };
        assert_eq!(note.reason, "FailedScheduling");
        assert!(
            note.message
                .starts_with("running PreBind plugin \"VolumeBinding\": "),
            "{}",
            note.message
        );
        assert_eq!(s.snapshot.get("n1").map(|n| n.requested.milli_cpu), Some(0));
        assert_eq!(s.snapshot.volumes().selected_node("default/data"), None);
        assert_eq!(s.schedule_next(&clock(t, 0)), None, "backing off");
        let again = s.schedule_next(&clock(t, 1)).expect("retried");
        assert_eq!(binds(&again), [("a".to_owned(), "n1".to_owned())]);
        assert_eq!(bind_claims(&again), ["default/data"]);
    }

    #[test]
    fn a_pod_waiting_for_its_claim_is_tried_when_the_claim_appears() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "4"), t);
        s.on_class(&local_path(), t);
        s.on_pod(with_claim(pod("a", 1, "1", None), "data"), t);
        let first = s.schedule_next(&clock(t, 0)).expect("a");
        assert!(
            matches!(&first[..], [Action::PatchStatus { .. }, Action::Event { note, .. }]
            if note.message == "0/1 nodes are available: persistentvolumeclaim \"data\" not found."),
            "{first:?}"
        );
        assert_eq!(s.schedule_next(&clock(t, 5)), None, "parked");
        // The claim appears: the pod is tried again and fits.
        s.on_claim(&claim("data", 7), t + Duration::from_secs(5));
        let again = s.schedule_next(&clock(t, 5)).expect("retried");
        assert_eq!(binds(&again), [("a".to_owned(), "n1".to_owned())]);
        assert_eq!(bind_claims(&again), ["default/data"]);
    }

    #[test]
    fn a_resync_keeps_the_claims_it_still_lists() {
        let t = Instant::now();
        let mut s = state();
        s.on_node(&node("n1", "4"), t);
        s.on_class(&local_path(), t);
        s.on_claim(&claim("data", 5), t);
        s.on_claim(&claim("old", 6), t);
        s.resync_volumes(
            &[Arc::new(claim("data", 5))],
            &[],
            &[Arc::new(local_path())],
        );
        s.resync(&[], &[Arc::new(node("n1", "4"))], t);
        assert!(s.snapshot.volumes().claim("default/data").is_some());
        assert!(s.snapshot.volumes().claim("default/old").is_none());
    }
}
