//! Validation of StatefulSets, as Kubernetes' `ValidateStatefulSet` and
//! `ValidateStatefulSetUpdate`: pod management and update strategy, claim retention, a selector
//! that matches the template, and on update a spec of which only the replicas, ordinals,
//! template, update strategy, revision history limit, claim retention and minReadySeconds may
//! change.
//!
//! Where minik differs: Kubernetes does not validate a StatefulSet template's pod spec (its
//! volumes would lack the claim templates); minik does, with each claim template taken as a
//! volume of that name, so that a mount of an unknown volume is refused at once rather than by
//! every pod the controller tries to create.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume};

use super::common::{json, nonnegative, s};
use super::meta::{object_meta, object_meta_update};
use super::pod::{selects_template, workload_template, TemplateOwner};
use super::workloads::{
    int_or_percent, int_or_percent_value, not_more_than_100_percent, selector_terms,
};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::selector::Selector;

/// The claim retention policies Kubernetes accepts, in its order.
const RETENTION_POLICIES: &[&str] = &["Retain", "Delete"];

/// Kubernetes' message for a spec update that changes more than it may.
pub const FORBIDDEN_UPDATE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Validates a new StatefulSet: its metadata (named as a DNS label, as its pods' names and
/// hostnames derive from it) and its spec.
pub fn stateful_set(object: &StatefulSet) -> ErrorList {
    let mut errs = object_meta(
        &object.metadata,
        true,
        names::dns1123_label,
        &FieldPath::new("metadata"),
    );
    errs.extend(spec(
        &object.spec.clone().unwrap_or_default(),
        &FieldPath::new("spec"),
    ));
    errs
}

/// Validates a replacement of a StatefulSet: the metadata update, the new spec, and that only
/// the mutable fields of the spec changed (the name is not checked again, as in Kubernetes).
pub fn stateful_set_update(new: &StatefulSet, old: &StatefulSet) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let new_spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    errs.extend(spec(&new_spec, &FieldPath::new("spec")));
    if immutable_part(new_spec) != immutable_part(old_spec) {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec"),
            FORBIDDEN_UPDATE,
        ));
    }
    errs
}

/// The spec without the fields an update may change.
fn immutable_part(mut spec: StatefulSetSpec) -> serde_json::Value {
    spec.replicas = None;
    spec.ordinals = None;
    spec.template = PodTemplateSpec::default();
    spec.update_strategy = None;
    spec.revision_history_limit = None;
    spec.persistent_volume_claim_retention_policy = None;
    spec.min_ready_seconds = None;
    json(&spec)
}

/// Kubernetes' `ValidateStatefulSetSpec`.
fn spec(spec: &StatefulSetSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let policy_path = path.child("podManagementPolicy");
    match s(&spec.pod_management_policy) {
        "" => errs.push(FieldError::required(&policy_path, "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            &policy_path,
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    errs.extend(update_strategy(&strategy, &path.child("updateStrategy")));
    if let Some(retention) = spec.persistent_volume_claim_retention_policy.as_ref() {
        let retention_path = path.child("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [
            ("whenDeleted", &retention.when_deleted),
            ("whenScaled", &retention.when_scaled),
        ] {
            let value = s(value);
            if !RETENTION_POLICIES.contains(&value) {
                errs.push(FieldError::not_supported(
                    &retention_path.child(field),
                    value,
                    RETENTION_POLICIES,
                ));
            }
        }
    }
    nonnegative(
        &mut errs,
        spec.replicas.unwrap_or(0).into(),
        &path.child("replicas"),
    );
    nonnegative(
        &mut errs,
        spec.min_ready_seconds.unwrap_or(0).into(),
        &path.child("minReadySeconds"),
    );
    if let Some(ordinals) = spec.ordinals.as_ref() {
        nonnegative(
            &mut errs,
            ordinals.start.unwrap_or(0).into(),
            &path.child("ordinals").child("start"),
        );
    }
    if let Some(limit) = spec.revision_history_limit {
        nonnegative(&mut errs, limit.into(), &path.child("revisionHistoryLimit"));
    }

    let sel = &spec.selector;
    let sel_path = path.child("selector");
    let mut selector_matches = None;
    if let Some(n) = selector_terms(&mut errs, sel, &sel_path, "statefulset") {
        match Selector::from_label_selector(sel) {
            Ok(parsed) if n > 0 => {
                selector_matches = Some(selects_template(&parsed, &spec.template));
            }
            Ok(_) => {}
            Err(_) => errs.push(FieldError::invalid(&sel_path, json(sel), "")),
        }
    }
    let owner = TemplateOwner {
        kind: "StatefulSet",
        selector_matches,
    };
    errs.extend(workload_template(
        &with_claim_volumes(spec),
        &owner,
        &path.child("template"),
    ));
    errs
}

/// The template with a volume for each claim template it does not name itself (a claim
/// template takes precedence over a volume of the same name, as the controller does).
fn with_claim_volumes(spec: &StatefulSetSpec) -> PodTemplateSpec {
    let mut template = spec.template.clone();
    let claims = spec.volume_claim_templates.as_deref().unwrap_or_default();
    if claims.is_empty() {
        return template;
    }
    let pod = template.spec.get_or_insert_with(Default::default);
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    for claim in claims {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let volume = Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        };
        match volumes.iter_mut().find(|v| v.name == name) {
            Some(existing) => *existing = volume,
            None => volumes.push(volume),
        }
    }
    template
}

/// The update strategy: `RollingUpdate` (with a valid partition and maxUnavailable) or
/// `OnDelete` (without `rollingUpdate`).
fn update_strategy(strategy: &StatefulSetUpdateStrategy, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let rolling_path = path.child("rollingUpdate");
    match s(&strategy.type_) {
        "" => errs.push(FieldError::required(path, "")),
        "OnDelete" => {
            if let Some(rolling) = strategy.rolling_update.as_ref() {
                errs.push(FieldError::invalid(
                    &rolling_path,
                    json(rolling),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = strategy.rolling_update.as_ref() {
                errs.extend(rolling_update(rolling, &rolling_path));
            }
        }
        _ => errs.push(FieldError::invalid(
            path,
            json(strategy),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    errs
}

fn rolling_update(rolling: &RollingUpdateStatefulSetStrategy, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    nonnegative(
        &mut errs,
        rolling.partition.unwrap_or(0).into(),
        &path.child("partition"),
    );
    if let Some(max) = rolling.max_unavailable.as_ref() {
        let max_path = path.child("maxUnavailable");
        int_or_percent(&mut errs, max, &max_path);
        not_more_than_100_percent(&mut errs, max, &max_path);
        let value = int_or_percent_value(max);
        if value == Some(0) {
            errs.push(FieldError::invalid(&max_path, json(max), "cannot be 0"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json as j, Value};

    fn sts(spec: Value) -> StatefulSet {
        let mut object: StatefulSet = serde_json::from_value(j!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap();
        crate::defaults::stateful_set(&mut object);
        object
    }

    fn web() -> Value {
        j!({
            "selector": {"matchLabels": {"app": "nginx"}},
            "serviceName": "nginx",
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{
                    "name": "nginx", "image": "nginx",
                    "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}],
                }]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
            }],
        })
    }

    fn messages(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_documented_web_set_is_valid() {
        assert_eq!(messages(stateful_set(&sts(web()))), Vec::<String>::new());
    }

    #[test]
    fn selector_must_exist_and_match_the_template() {
        let mut spec = web();
        spec["selector"] = j!({"matchLabels": {"app": "other"}});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            ["spec.template.metadata.labels: Invalid value: {\"app\":\"nginx\"}: `selector` does not match template `labels`"]
        );
        let mut spec = web();
        spec["selector"] = j!({});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            ["spec.selector: Required value"]
        );
        let mut spec = web();
        spec["selector"] = j!({"matchLabels": {}});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            ["spec.selector: Invalid value: {\"matchLabels\":{}}: empty selector is invalid for statefulset"]
        );
    }

    #[test]
    fn policies_strategies_and_counts_are_checked() {
        let mut spec = web();
        spec["podManagementPolicy"] = j!("Sometimes");
        spec["updateStrategy"] = j!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        spec["persistentVolumeClaimRetentionPolicy"] =
            j!({"whenDeleted": "Keep", "whenScaled": "Delete"});
        spec["replicas"] = j!(-1);
        spec["minReadySeconds"] = j!(-2);
        spec["ordinals"] = j!({"start": -3});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            [
                "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
                "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'",
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"",
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.minReadySeconds: Invalid value: -2: must be greater than or equal to 0",
                "spec.ordinals.start: Invalid value: -3: must be greater than or equal to 0",
            ]
        );
        let mut spec = web();
        spec["updateStrategy"] = j!({"type": "Sometimes"});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            ["spec.updateStrategy: Invalid value: {\"type\":\"Sometimes\"}: must be 'RollingUpdate' or 'OnDelete'"]
        );
        let mut spec = web();
        spec["updateStrategy"] =
            j!({"type": "RollingUpdate", "rollingUpdate": {"partition": -1, "maxUnavailable": 0}});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            [
                "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0",
            ]
        );
        let mut spec = web();
        spec["updateStrategy"] =
            j!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}});
        assert_eq!(
            messages(stateful_set(&sts(spec))),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
    }

    #[test]
    fn templates_restart_always_and_mount_known_volumes() {
        let mut spec = web();
        spec["template"]["spec"]["restartPolicy"] = j!("Never");
        spec["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = j!("nope");
        let errs = messages(stateful_set(&sts(spec)));
        assert!(
            errs.contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_owned()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.template.spec.containers[0].volumeMounts[0].name: Invalid value: \"nope\": must match the name of a volume in `spec.volumes`".to_owned()),
            "{errs:?}"
        );
    }

    #[test]
    fn names_are_dns_labels() {
        let mut object = sts(web());
        object.metadata.name = Some("web.v1".into());
        let errs = messages(stateful_set(&object));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("metadata.name: Invalid value: \"web.v1\""),
            "{errs:?}"
        );
    }

    #[test]
    fn updates_change_only_the_mutable_fields() {
        let old = sts(web());
        let mut new_spec = web();
        new_spec["replicas"] = j!(5);
        new_spec["template"]["spec"]["containers"][0]["image"] = j!("nginx:2");
        new_spec["updateStrategy"] = j!({"type": "OnDelete"});
        new_spec["minReadySeconds"] = j!(3);
        new_spec["revisionHistoryLimit"] = j!(2);
        new_spec["ordinals"] = j!({"start": 1});
        new_spec["persistentVolumeClaimRetentionPolicy"] =
            j!({"whenDeleted": "Delete", "whenScaled": "Delete"});
        let new = sts(new_spec);
        assert_eq!(
            messages(stateful_set_update(&new, &old)),
            Vec::<String>::new()
        );

        for (field, value) in [
            ("serviceName", j!("other")),
            ("podManagementPolicy", j!("Parallel")),
            (
                "volumeClaimTemplates",
                j!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "2Gi"}}}}]),
            ),
        ] {
            let mut spec = web();
            spec[field] = value;
            assert_eq!(
                messages(stateful_set_update(&sts(spec), &old)),
                [format!("spec: Forbidden: {FORBIDDEN_UPDATE}")],
                "{field}"
            );
        }
    }
}
