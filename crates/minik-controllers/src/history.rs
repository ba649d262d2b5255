//! ControllerRevisions, the history of DaemonSets and StatefulSets, as Kubernetes'
//! `controller/history` keeps it: a revision holds a patch that restores its owner's pod
//! template, is named `OWNER-HASH`, carries the `controller-revision-hash` label and is
//! numbered; old revisions beyond `revisionHistoryLimit` are deleted, oldest first, unless a
//! live pod still runs them.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::apps::v1::ControllerRevision;
use minik_api::k8s_openapi::api::core::v1::PodTemplateSpec;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use crate::kinds::{controller_ref, controller_reference, created_at, labels, name, Kind};
use crate::names::safe_encode;

/// The label naming the revision a pod (and a revision) belongs to.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";

/// How many old revisions are kept when the owner does not say.
pub(crate) const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The longest owner name kept in a revision's name, so that `NAME-HASH` stays a valid name.
const MAX_PREFIX: usize = 223;

/// Kubernetes' `ControllerRevisionName`: `NAME-HASH`, the name cut to 223 characters.
pub(crate) fn revision_name(owner_name: &str, hash: &str) -> String {
    let prefix = match owner_name.char_indices().nth(MAX_PREFIX) {
        Some((at, _)) => &owner_name[..at],
        None => owner_name,
    };
    format!("{prefix}-{hash}")
}

/// FNV-1a, 32 bits.
fn fnv32a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Kubernetes' `HashControllerRevision`: FNV-1a of the revision's data (and of the collision
/// count in decimal, once there was a collision) in the safe alphabet.
pub(crate) fn hash_of(data: &Value, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(data).unwrap_or_default();
    let probe = collision_count.map(|c| c.to_string().into_bytes());
    let hash = fnv32a(json.into_iter().chain(probe.into_iter().flatten()));
    safe_encode(&hash.to_string())
}

/// The data of a DaemonSet's or StatefulSet's revision (Kubernetes' `getPatch`): a patch that
/// replaces the owner's `spec.template` with `template`.
pub(crate) fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut template {
        fields.insert("$patch".into(), Value::String("replace".into()));
    } else {
        template = json!({"$patch": "replace"});
    }
    json!({ "spec": { "template": template } })
}

/// The template a revision made by [`template_patch`] restores, if its data holds one.
pub(crate) fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Value::Object(fields) = &mut template {
        fields.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Kubernetes' `NewControllerRevision`: a revision of `owner` holding `data`, labelled with
/// `selector_labels` (upstream passes the template's labels, which the selector matches) and
/// the hash, controlled by the owner, in its namespace.
pub(crate) fn new_revision(
    owner_kind: Kind,
    owner: &ObjectMeta,
    selector_labels: &BTreeMap<String, String>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_of(&data, collision_count);
    let mut labels = selector_labels.clone();
    labels.insert(HASH_LABEL.to_owned(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(name(owner), &hash)),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_reference(owner_kind, owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The revision's `controller-revision-hash` label.
pub(crate) fn hash_label(revision: &ControllerRevision) -> Option<&str> {
    labels(&revision.metadata)
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Kubernetes' order of revisions: by number, then creation time, then name.
fn sort(revisions: &mut [&ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| created_at(&a.metadata).cmp(&created_at(&b.metadata)))
            .then_with(|| name(&a.metadata).cmp(name(&b.metadata)))
    });
}

/// The revisions controlled by the owner with `owner_uid`, oldest first.
pub(crate) fn owned_revisions<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
    owner_uid: &str,
) -> Vec<&'a ControllerRevision> {
    let mut owned: Vec<_> = revisions
        .into_iter()
        .filter(|r| controller_ref(&r.metadata).is_some_and(|o| o.uid == owner_uid))
        .collect();
    sort(&mut owned);
    owned
}

/// Kubernetes' `NextRevision`: one more than the highest revision number, 1 for none.
pub(crate) fn next_revision<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
) -> i64 {
    revisions
        .into_iter()
        .map(|r| r.revision)
        .max()
        .map_or(1, |max| max.saturating_add(1))
}

/// Kubernetes' `EqualRevision`: whether two revisions hold the same data (different hash
/// labels settle it early).
pub(crate) fn equal_data(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    if let (Some(x), Some(y)) = (hash_label(a), hash_label(b)) {
        if x != y {
            return false;
        }
    }
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// The revisions among `revisions` whose data is `data` (Kubernetes' `FindEqualRevisions`).
pub(crate) fn with_data<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
    data: &Value,
) -> Vec<&'a ControllerRevision> {
    revisions
        .into_iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(data))
        .collect()
}

/// The revisions to delete to keep at most `limit` (default 10) of those not live, oldest
/// first; a live revision (the current or update one, or one a pod still runs) is never
/// deleted nor counted.
pub(crate) fn to_truncate<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
    limit: Option<i32>,
    is_live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<&'a ControllerRevision> {
    let mut history: Vec<_> = revisions.into_iter().filter(|r| !is_live(r)).collect();
    sort(&mut history);
    let keep = usize::try_from(limit.unwrap_or(DEFAULT_HISTORY_LIMIT)).unwrap_or(0);
    let excess = history.len().saturating_sub(keep);
    history.truncate(excess);
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::k8s_openapi::api::core::v1::{Container, PodSpec};

    fn owner() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    fn revision_of(image: &str, number: i64) -> ControllerRevision {
        let selector = BTreeMap::from([("app".into(), "web".into())]);
        new_revision(
            Kind::DaemonSet,
            &owner(),
            &selector,
            template_patch(&template(image)),
            number,
            None,
        )
    }

    #[test]
    fn names_cut_long_owners() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "a".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), MAX_PREFIX + 2);
    }

    #[test]
    fn hashes_are_stable_and_move_with_data_and_collisions() {
        let data = template_patch(&template("nginx:1"));
        let h = hash_of(&data, None);
        assert_eq!(h, hash_of(&data.clone(), None));
        assert_ne!(h, hash_of(&data, Some(1)));
        assert_ne!(hash_of(&data, Some(1)), hash_of(&data, Some(2)));
        assert_ne!(h, hash_of(&template_patch(&template("nginx:2")), None));
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric()));
        // A fixed value: the hash must not change between releases, or every pod would be
        // replaced on upgrade.
        assert_eq!(hash_of(&json!({"a": 1}), None), safe_encode("2342405393"));
    }

    #[test]
    fn new_revisions_are_labelled_and_controlled() {
        let r = revision_of("nginx:1", 3);
        let hash = hash_label(&r).unwrap_or_default().to_owned();
        assert_eq!(r.metadata.name.as_deref(), Some(&*format!("web-{hash}")));
        assert_eq!(r.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            labels(&r.metadata).get("app").map(String::as_str),
            Some("web")
        );
        let owner_ref = controller_ref(&r.metadata).cloned().unwrap_or_default();
        assert_eq!(
            (owner_ref.kind.as_str(), owner_ref.uid.as_str()),
            ("DaemonSet", "uid-1")
        );
        assert_eq!(r.revision, 3);
        let data = &r.data.as_ref().map(|d| d.0.clone()).unwrap_or_default();
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&r), Some(template("nginx:1")));
    }

    #[test]
    fn ownership_order_next_and_equality() {
        let a = revision_of("a", 2);
        let b = revision_of("b", 1);
        let mut stranger = revision_of("c", 5);
        stranger.metadata.owner_references = None;
        let all = [a.clone(), b.clone(), stranger];
        let owned = owned_revisions(&all, "uid-1");
        assert_eq!(
            owned.iter().map(|r| r.revision).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(next_revision(owned.iter().copied()), 3);
        assert_eq!(next_revision(&[]), 1);
        assert!(equal_data(&a, &revision_of("a", 7)));
        assert!(!equal_data(&a, &b));
        let data = template_patch(&template("b"));
        assert_eq!(with_data(&all, &data).len(), 1);
    }

    #[test]
    fn truncation_keeps_the_limit_and_live_revisions() {
        let revisions: Vec<_> = (1..=6).map(|n| revision_of(&format!("i{n}"), n)).collect();
        // Revision 1 is live (a pod runs it), 6 is current.
        let live = |r: &ControllerRevision| r.revision == 1 || r.revision == 6;
        let gone = to_truncate(&revisions, Some(2), live);
        assert_eq!(
            gone.iter().map(|r| r.revision).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(to_truncate(&revisions, None, live).is_empty());
        assert_eq!(to_truncate(&revisions, Some(0), |_| false).len(), 6);
        assert_eq!(to_truncate(&revisions, Some(-1), |_| false).len(), 6);
    }
}
