//! The garbage collector's decision for one object, a pure function of the object, what is
//! known of its owners, and its dependents. It follows Kubernetes' garbage collector
//! (`attemptToDeleteItem`, `processDeletingDependentsItem`, `attemptToOrphan`).

use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::request::Propagation;
use serde_json::{json, Value};

use crate::action::{Action, Plan, Target};
use crate::kinds::{self, has_finalizer, is_deleting, owner_refs, Kind};

pub(crate) const FOREGROUND: &str = "foregroundDeletion";
pub(crate) const ORPHAN: &str = "orphan";

/// An object as the garbage collector sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item<'a> {
    pub kind: Kind,
    pub meta: &'a ObjectMeta,
}

/// What is known of the target of one owner reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnerState {
    /// It exists with the referenced uid (or cannot be looked up: never collect on a guess).
    Present,
    /// It exists and is being deleted in the foreground: it waits for its dependents to go.
    DeletingDependents,
    /// Nothing with the referenced uid exists.
    Absent,
}

impl OwnerState {
    /// The state of an owner found with the right uid.
    pub(crate) fn of(meta: &ObjectMeta) -> OwnerState {
        if is_deleting(meta) && has_finalizer(meta, FOREGROUND) {
            OwnerState::DeletingDependents
        } else {
            OwnerState::Present
        }
    }
}

/// Whether deciding about `item` needs its dependents: only an owner being deleted, or an
/// object one of whose owners waits for its dependents, looks at them.
pub(crate) fn needs_dependents(item: &Item<'_>, owners: &[(&OwnerReference, OwnerState)]) -> bool {
    is_deleting(item.meta)
        || owners
            .iter()
            .any(|(_, s)| *s == OwnerState::DeletingDependents)
}

/// One pass over `item`. `owners` pairs each of its owner references with what is known of
/// the owner; `dependents` are the objects whose owner references name `item`'s uid.
pub(crate) fn reconcile(
    item: &Item<'_>,
    owners: &[(&OwnerReference, OwnerState)],
    dependents: &[Item<'_>],
) -> Plan {
    let mut plan = Plan::default();
    let uid = kinds::uid(item.meta);
    if is_deleting(item.meta) {
        if has_finalizer(item.meta, ORPHAN) {
            // Orphan: the dependents stop naming this owner, then the owner may go.
            for dep in dependents {
                let refs: Vec<OwnerReference> = owner_refs(dep.meta)
                    .iter()
                    .filter(|r| r.uid != uid)
                    .cloned()
                    .collect();
                plan.actions.push(set_owner_refs(dep, refs));
            }
            plan.actions.push(remove_finalizer(item, ORPHAN));
        } else if has_finalizer(item.meta, FOREGROUND) {
            // Foreground: the owner goes once no dependent that blocks it is left. The
            // dependents are deleted in their own passes (they see this owner waiting).
            let blocking = dependents.iter().any(|dep| {
                owner_refs(dep.meta)
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            });
            if !blocking {
                plan.actions.push(remove_finalizer(item, FOREGROUND));
            }
        }
        // Any other deletion in progress (a pod's grace period, someone else's finalizer) is
        // a one-way trip: its dependents are handled once it is gone.
        return plan;
    }
    if owners.is_empty() {
        return plan;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Present);
    let gone: Vec<&str> = owners
        .iter()
        .filter(|(_, s)| *s != OwnerState::Present)
        .map(|(r, _)| r.uid.as_str())
        .collect();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::DeletingDependents);
    if solid {
        // Some owner keeps the object alive; it stops naming the owners that are gone or
        // going, or a foreground owner would wait for it forever.
        if !gone.is_empty() {
            let refs = owner_refs(item.meta)
                .iter()
                .filter(|r| !gone.contains(&r.uid.as_str()))
                .cloned()
                .collect();
            plan.actions.push(set_owner_refs(item, refs));
        }
        return plan;
    }
    let propagation = if waiting && !dependents.is_empty() {
        // An owner waits for this object, which has dependents of its own: they go first.
        Propagation::Foreground
    } else if has_finalizer(item.meta, ORPHAN) {
        Propagation::Orphan
    } else if has_finalizer(item.meta, FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    plan.actions.push(Action::Delete {
        kind: item.kind,
        namespace: kinds::namespace(item.meta).to_owned(),
        targets: vec![Target {
            name: kinds::name(item.meta).to_owned(),
            uid: uid.to_owned(),
            // Not if it changed since it was judged (say, it was adopted meanwhile).
            resource_version: Some(kinds::resource_version(item.meta).to_owned()),
        }],
        propagation: Some(propagation),
        announce: None,
    });
    plan
}

fn set_owner_refs(item: &Item<'_>, refs: Vec<OwnerReference>) -> Action {
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(refs).unwrap_or(Value::Null)
    };
    patch_metadata(item, "ownerReferences", refs)
}

fn remove_finalizer(item: &Item<'_>, finalizer: &str) -> Action {
    let rest: Vec<&String> = item
        .meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let rest = if rest.is_empty() {
        Value::Null
    } else {
        json!(rest)
    };
    patch_metadata(item, "finalizers", rest)
}

/// A patch of one metadata field of `item`, at the resourceVersion it was read at.
fn patch_metadata(item: &Item<'_>, field: &str, value: Value) -> Action {
    Action::Patch {
        kind: item.kind,
        namespace: kinds::namespace(item.meta).to_owned(),
        name: kinds::name(item.meta).to_owned(),
        body: json!({"metadata": {
            "resourceVersion": kinds::resource_version(item.meta),
            field: value,
        }}),
        status: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::pods::testing::at;

    fn meta(
        name: &str,
        owners: &[(&str, bool)],
        finalizers: &[&str],
        deleting: bool,
    ) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("5".into()),
            owner_references: (!owners.is_empty()).then(|| {
                owners
                    .iter()
                    .map(|(owner, block)| OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: (*owner).into(),
                        uid: format!("uid-{owner}"),
                        controller: Some(true),
                        block_owner_deletion: Some(*block),
                    })
                    .collect()
            }),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            deletion_timestamp: deleting.then(|| Time(at(0))),
            ..ObjectMeta::default()
        }
    }

    fn item(m: &ObjectMeta) -> Item<'_> {
        Item {
            kind: Kind::Pod,
            meta: m,
        }
    }

    /// A compact description of a plan: `delete <name> <policy>`, `refs <name> [uids]`,
    /// `unfinalize <name> [rest]`.
    fn describe(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Delete {
                    targets,
                    propagation,
                    ..
                } => format!(
                    "delete {} {}",
                    targets[0].name,
                    propagation.map_or("-", |p| p.as_str())
                ),
                Action::Patch { name, body, .. } => {
                    if let Some(refs) = body.pointer("/metadata/ownerReferences") {
                        let uids: Vec<&str> = refs
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|r| r["uid"].as_str())
                            .collect();
                        format!("refs {name} {uids:?}")
                    } else {
                        format!("unfinalize {name} {}", body["metadata"]["finalizers"])
                    }
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn dependents_follow_their_owners() {
        use OwnerState::*;
        let plain = meta("p", &[("rs", true)], &[], false);
        let two = meta("p", &[("rs", true), ("other", false)], &[], false);
        let orphaning = meta("p", &[("rs", true)], &[ORPHAN], false);
        type Case<'a> = (
            &'a str,
            &'a ObjectMeta,
            Vec<OwnerState>,
            usize,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("owner present", &plain, vec![Present], 0, vec![]),
            (
                "owner gone: background",
                &plain,
                vec![Absent],
                0,
                vec!["delete p Background"],
            ),
            (
                "owner waits, no dependents: background",
                &plain,
                vec![DeletingDependents],
                0,
                vec!["delete p Background"],
            ),
            (
                "owner waits, has dependents: foreground",
                &plain,
                vec![DeletingDependents],
                2,
                vec!["delete p Foreground"],
            ),
            (
                "one owner gone, one present: the reference goes",
                &two,
                vec![Absent, Present],
                0,
                vec![r#"refs p ["uid-other"]"#],
            ),
            (
                "a waiting owner beside a present one is dropped",
                &two,
                vec![Present, DeletingDependents],
                0,
                vec![r#"refs p ["uid-rs"]"#],
            ),
            (
                "its own orphan finalizer is honoured",
                &orphaning,
                vec![Absent],
                0,
                vec!["delete p Orphan"],
            ),
        ];
        for (case, m, states, n_dependents, expected) in cases {
            let refs = owner_refs(m);
            let owners: Vec<(&OwnerReference, OwnerState)> =
                refs.iter().zip(states.iter().copied()).collect();
            let dep_metas: Vec<ObjectMeta> = (0..n_dependents)
                .map(|i| meta(&format!("d{i}"), &[("p", true)], &[], false))
                .collect();
            let deps: Vec<Item> = dep_metas.iter().map(item).collect();
            let plan = reconcile(&item(m), &owners, &deps);
            assert_eq!(describe(&plan), expected, "{case}");
        }
    }

    #[test]
    fn deleting_owners_wait_for_or_release_their_dependents() {
        let fg = meta("rs", &[], &[FOREGROUND], true);
        let orphan = meta("rs", &[], &[ORPHAN, "example.com/keep"], true);
        let graceful = meta("rs", &[], &[], true);
        let blocking = meta("a", &[("rs", true)], &[], false);
        let not_blocking = meta("b", &[("rs", false)], &[], false);
        let shared = meta("c", &[("rs", true), ("other", true)], &[], false);
        let cases: Vec<(&str, &ObjectMeta, Vec<&ObjectMeta>, Vec<&str>)> = vec![
            ("foreground, dependents left", &fg, vec![&blocking], vec![]),
            (
                "foreground, only non-blocking dependents",
                &fg,
                vec![&not_blocking],
                vec!["unfinalize rs null"],
            ),
            (
                "foreground, none left",
                &fg,
                vec![],
                vec!["unfinalize rs null"],
            ),
            (
                "orphan: references removed, then the finalizer",
                &orphan,
                vec![&blocking, &shared],
                vec![
                    "refs a []",
                    r#"refs c ["uid-other"]"#,
                    r#"unfinalize rs ["example.com/keep"]"#,
                ],
            ),
            (
                "other deletions are left alone",
                &graceful,
                vec![&blocking],
                vec![],
            ),
        ];
        for (case, m, deps, expected) in cases {
            let deps: Vec<Item> = deps.into_iter().map(item).collect();
            let plan = reconcile(&item(m), &[], &deps);
            assert_eq!(describe(&plan), expected, "{case}");
        }
    }

    #[test]
    fn deletes_are_conditional_on_what_was_judged() {
        let m = meta("p", &[("rs", true)], &[], false);
        let refs = owner_refs(&m);
        let plan = reconcile(&item(&m), &[(&refs[0], OwnerState::Absent)], &[]);
        assert_eq!(
            plan.deleted(Kind::Pod),
            vec![&Target {
                name: "p".into(),
                uid: "uid-p".into(),
                resource_version: Some("5".into())
            }]
        );
    }
}
