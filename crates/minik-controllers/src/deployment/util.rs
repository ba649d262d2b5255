//! The arithmetic and bookkeeping of Deployments, as Kubernetes' `deployment/util` does it:
//! surge and unavailability from numbers and percents, the pod-template hash, revision and
//! replica annotations, conditions, and the orders ReplicaSets are considered in.

use std::cmp::Ordering;

use minik_api::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet,
};
use minik_api::k8s_openapi::api::core::v1::PodTemplateSpec;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minik_api::k8s_openapi::jiff::Timestamp;

use crate::kinds::{annotation, created_at, name};
use crate::names::safe_encode;

pub(crate) use minik_api::wellknown::ANNOTATION_DEPLOYMENT_REVISION as REVISION;
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub(crate) const HASH_LABEL: &str = "pod-template-hash";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    minik_api::wellknown::ANNOTATION_LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The longest revision history annotation kept, as Kubernetes' default.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// Reasons and condition types, with Kubernetes' spelling.
pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";
pub(crate) const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub(crate) const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";

/// Kubernetes' `GetScaledValueFromIntOrPercent`: a number as is, or a percent of `total`
/// rounded up or down.
pub(crate) fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {s:?} is not a percentage")
                })?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// Kubernetes' `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas. Surge
/// rounds up and unavailability down; if both come to zero, one pod may be unavailable, or
/// the rollout could never move.
pub(crate) fn fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&quarter), desired, true).unwrap_or(0);
    let unavailable =
        scaled_value(max_unavailable.unwrap_or(&quarter), desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// FNV-1a, 32 bits: the hash Kubernetes names ReplicaSets with.
fn fnv32a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The `pod-template-hash` of a template: a hash of the template (and of the collision count,
/// once there was a collision), in Kubernetes' safe alphabet. The hash is of minik's canonical
/// JSON of the template, so its values differ from Kubernetes' but are as stable.
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let count = collision_count.map(|c| (c as u32).to_le_bytes());
    let hash = fnv32a(json.into_iter().chain(count.into_iter().flatten()));
    safe_encode(&hash.to_string())
}

/// Whether two templates are the same but for the `pod-template-hash` label.
pub(crate) fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> PodTemplateSpec {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
        if let Some(meta) = t.metadata.as_mut() {
            if meta.labels.as_ref().is_some_and(|l| l.is_empty()) {
                meta.labels = None;
            }
        }
        t
    }
    strip(a) == strip(b)
}

/// The revision of a ReplicaSet (0 when it has none).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// An integer annotation.
pub(crate) fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key).and_then(|v| v.parse().ok())
}

/// Sets the desired-replicas and max-replicas annotations; whether anything changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's own annotations, raises
/// the revision to `new_revision` (keeping the old one in the history: a rollback), and on a
/// new ReplicaSet sets the replica annotations. Whether anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    max_surge: i32,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            // Someone wrote a revision that is not a number: leave it, as Kubernetes does.
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            while total > MAX_REVISION_HISTORY_CHARS && !revisions.is_empty() {
                total -= revisions.remove(0).len() + 1;
            }
            revisions.push(&old);
            let joined = revisions.join(",");
            annotations.insert(REVISION_HISTORY.to_owned(), joined);
        }
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if !exists && set_replicas_annotations(rs, replicas, replicas.saturating_add(max_surge)) {
        changed = true;
    }
    changed
}

/// Oldest first; by name when created in the same second.
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    // One being created in this pass has no time yet and is the newest.
    let time = |rs: &ReplicaSet| created_at(&rs.metadata).unwrap_or(Timestamp::MAX);
    time(a)
        .cmp(&time(b))
        .then_with(|| name(&a.metadata).cmp(name(&b.metadata)))
}

/// Lowest revision first, then oldest.
pub(crate) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

pub(crate) fn condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: nothing changes when status and reason are the same;
/// the transition time is kept while the status stays.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = condition(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.to_owned());
        // (maxSurge, maxUnavailable, replicas) -> (surge, unavailable)
        let cases = [
            (pct("25%"), pct("25%"), 10, (3, 2)),
            (pct("25%"), pct("25%"), 4, (1, 1)),
            (pct("25%"), pct("25%"), 1, (1, 0)),
            (pct("25%"), pct("25%"), 0, (0, 1)),
            (int(1), int(0), 3, (1, 0)),
            (int(0), int(1), 3, (0, 1)),
            (int(0), pct("10%"), 5, (0, 1)),
            (pct("50%"), pct("50%"), 5, (3, 2)),
            (pct("100%"), int(0), 3, (3, 0)),
            (int(2), int(3), 1000, (2, 3)),
            (pct("1%"), pct("1%"), 1000, (10, 10)),
            (pct("33%"), pct("33%"), 7, (3, 2)),
        ];
        for (surge, unavailable, replicas, expected) in cases {
            assert_eq!(
                fenceposts(Some(&surge), Some(&unavailable), replicas),
                expected,
                "{surge:?}/{unavailable:?} of {replicas}"
            );
        }
        assert_eq!(fenceposts(None, None, 8), (2, 2), "defaults are 25%");
        assert!(scaled_value(&pct("ten"), 10, true).is_err());
    }

    #[test]
    fn template_hashes_are_stable_and_collision_counts_change_them() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h
            .bytes()
            .all(|b| minik_api::generated::ALPHABET.contains(&b)));
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv32a(*b""), 0x811c_9dc5);
        assert_eq!(fnv32a(*b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(*b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn revision_history_keeps_the_revisions_rolled_back_from() {
        let d = Deployment::default();
        let mut rs = ReplicaSet::default();
        assert!(set_new_rs_annotations(&d, &mut rs, 1, false, 1));
        assert_eq!(annotation(&rs.metadata, REVISION), Some("1"));
        assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS), Some("1"));
        assert_eq!(annotation(&rs.metadata, MAX_REPLICAS), Some("2"));
        assert!(
            !set_new_rs_annotations(&d, &mut rs, 1, true, 1),
            "nothing new"
        );
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true, 1));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true, 1));
        assert_eq!(annotation(&rs.metadata, REVISION), Some("5"));
        assert_eq!(annotation(&rs.metadata, REVISION_HISTORY), Some("1,3"));
        assert!(
            !set_new_rs_annotations(&d, &mut rs, 4, true, 1),
            "never lowered"
        );
    }
}
