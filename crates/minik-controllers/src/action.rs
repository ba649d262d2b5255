//! What a reconciler asks for: a plan of writes to the API and when to look again. Reconcilers
//! return plans and never do I/O; the executor carries plans out.

use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_api::request::Propagation;
use serde_json::Value;

use crate::kinds::Kind;

/// One object to delete, named with the uid (and, when set, the resourceVersion) it must still
/// have: a delete never hits a newer object of the same name, or one that changed since it was
/// judged.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Target {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

/// An event to record about an object, as `kubectl describe` shows them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Note {
    pub involved: ObjectReference,
    pub component: &'static str,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// An event recorded for each object a create or delete succeeded on: `reason` and
/// `<verb> <name>`, such as `SuccessfulCreate` / `Created pod: web-x7k2p`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Announce {
    pub involved: ObjectReference,
    pub component: &'static str,
    pub reason: &'static str,
    pub verb: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Create these objects in slow-start batches (1, 2, 4, ...), stopping at the first batch
    /// with a failure, so that a quota or a broken template costs one error, not hundreds.
    Create {
        kind: Kind,
        namespace: String,
        objects: Vec<Value>,
        announce: Option<Announce>,
    },
    /// Delete these objects, all at once.
    Delete {
        kind: Kind,
        namespace: String,
        targets: Vec<Target>,
        propagation: Option<Propagation>,
        announce: Option<Announce>,
    },
    /// Apply a JSON merge patch to an object or its status. A `metadata.resourceVersion` in the
    /// body makes it apply only to that version.
    Patch {
        kind: Kind,
        namespace: String,
        name: String,
        body: Value,
        status: bool,
    },
    /// Apply JSON merge patches to many objects of one kind, all at once: writes that do not
    /// depend on each other (a Job's finished pods letting go of its finalizer) wait for one
    /// round trip, not one each. Each applies only to the version its body names, if any.
    PatchEach {
        kind: Kind,
        patches: Vec<ObjectPatch>,
    },
    /// Record an event; a failure to record is logged, never retried.
    Record(Note),
}

/// A merge patch to one object, as part of [`Action::PatchEach`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObjectPatch {
    pub namespace: String,
    pub name: String,
    pub body: Value,
}

/// What one reconcile decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    /// Look again after this long even if nothing changes (time-based conditions such as
    /// minReadySeconds and progress deadlines).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Asks to look again after `after`, keeping the earliest of several requests.
    pub(crate) fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(match self.requeue_after {
            Some(existing) => existing.min(after),
            None => after,
        });
    }

    /// The names of the objects of `kind` the plan creates.
    pub(crate) fn created(&self, kind: Kind) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create {
                    kind: k, objects, ..
                } if *k == kind => Some(objects),
                _ => None,
            })
            .flatten()
            .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// The objects of `kind` the plan deletes.
    pub(crate) fn deleted(&self, kind: Kind) -> Vec<&Target> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete {
                    kind: k, targets, ..
                } if *k == kind => Some(targets),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The patches of objects (not statuses) of `kind`: (name, body).
    #[cfg(test)]
    pub(crate) fn patched(&self, kind: Kind) -> Vec<(&str, &Value)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch {
                    kind: k,
                    name,
                    body,
                    status: false,
                    ..
                } if *k == kind => Some(vec![(name.as_str(), body)]),
                Action::PatchEach { kind: k, patches } if *k == kind => {
                    Some(patches.iter().map(|p| (p.name.as_str(), &p.body)).collect())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The status the plan writes for an object of `kind`, if any.
    #[cfg(test)]
    pub(crate) fn status_written(&self, kind: Kind) -> Option<&Value> {
        self.actions.iter().find_map(|a| match a {
            Action::Patch {
                kind: k,
                body,
                status: true,
                ..
            } if *k == kind => body.get("status"),
            _ => None,
        })
    }

    /// The messages of the events the plan records.
    #[cfg(test)]
    pub(crate) fn notes(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Record(n) => Some(n.message.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A merge patch that sets `new` over `old` at the top level, writing `null` for the keys `new`
/// no longer has so that they are removed (Kubernetes omits empty status fields).
pub(crate) fn replace_keys(old: &Value, new: &Value) -> Value {
    let mut patch = new.clone();
    if let (Some(old), Some(patch)) = (old.as_object(), patch.as_object_mut()) {
        for key in old.keys() {
            if !patch.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaced_keys_are_nulled() {
        let old = json!({"replicas": 3, "readyReplicas": 2});
        let new = json!({"replicas": 1});
        assert_eq!(
            replace_keys(&old, &new),
            json!({"replicas": 1, "readyReplicas": null})
        );
    }

    #[test]
    fn requeue_keeps_the_earliest() {
        let mut plan = Plan::default();
        plan.requeue(Duration::from_secs(5));
        plan.requeue(Duration::from_secs(2));
        plan.requeue(Duration::from_secs(9));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(2)));
    }
}
