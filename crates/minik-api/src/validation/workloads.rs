//! Validation of the controllers that keep pods running — ReplicaSet, ReplicationController and
//! Deployment: replica counts, selectors that match their templates, rollout strategy.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, ReplicaSet};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{json, nonnegative, s, IMMUTABLE};
use super::meta::{object_meta, object_meta_update};
use super::pod::{selects_template, workload_template, TemplateOwner};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::selector::{self, Selector};

/// Validates a ReplicaSet on create.
pub fn replica_set(rs: &ReplicaSet) -> ErrorList {
    let mut errs = workload_meta(&rs.metadata);
    let spec_path = FieldPath::new("spec");
    let spec = rs.spec.clone().unwrap_or_default();
    nonnegative(
        &mut errs,
        spec.replicas.unwrap_or(0).into(),
        &spec_path.child("replicas"),
    );
    nonnegative(
        &mut errs,
        spec.min_ready_seconds.unwrap_or(0).into(),
        &spec_path.child("minReadySeconds"),
    );
    // The template is a plain struct in Kubernetes' ReplicaSet, so a missing one is an empty one.
    let template = spec.template.unwrap_or_default();
    errs.extend(apps_selector_and_template(
        &spec.selector,
        &template,
        &spec_path,
    ));
    errs
}

/// Validates a ReplicaSet update: as on create, and the selector cannot change (apps/v1).
pub fn replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> ErrorList {
    let mut errs = update_errors(&new.metadata, &old.metadata, replica_set(new));
    let new_selector = new.spec.as_ref().map(|s| &s.selector);
    let old_selector = old.spec.as_ref().map(|s| &s.selector);
    immutable_selector(&mut errs, new_selector, old_selector);
    errs
}

/// Validates a ReplicationController on create.
pub fn replication_controller(rc: &ReplicationController) -> ErrorList {
    let mut errs = workload_meta(&rc.metadata);
    let spec_path = FieldPath::new("spec");
    let spec = rc.spec.clone().unwrap_or_default();
    nonnegative(
        &mut errs,
        spec.min_ready_seconds.unwrap_or(0).into(),
        &spec_path.child("minReadySeconds"),
    );
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        errs.push(FieldError::required(&spec_path.child("selector"), ""));
    }
    nonnegative(
        &mut errs,
        spec.replicas.unwrap_or(0).into(),
        &spec_path.child("replicas"),
    );
    let template_path = spec_path.child("template");
    match spec.template.as_ref() {
        None => errs.push(FieldError::required(&template_path, "")),
        Some(t) => {
            let labels = t
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            // An equality-based selector: every pair must be among the template's labels.
            let matches = selector.iter().all(|(k, v)| labels.get(k) == Some(v));
            let owner = TemplateOwner {
                kind: "ReplicationController",
                selector_matches: (!selector.is_empty()).then_some(matches),
            };
            errs.extend(workload_template(t, &owner, &template_path));
        }
    }
    errs
}

/// Validates a ReplicationController update: as on create (its selector may change).
pub fn replication_controller_update(
    new: &ReplicationController,
    old: &ReplicationController,
) -> ErrorList {
    update_errors(&new.metadata, &old.metadata, replication_controller(new))
}

/// Validates a Deployment on create.
pub fn deployment(d: &Deployment) -> ErrorList {
    let mut errs = workload_meta(&d.metadata);
    let spec_path = FieldPath::new("spec");
    let spec = d.spec.clone().unwrap_or_default();
    nonnegative(
        &mut errs,
        spec.replicas.unwrap_or(0).into(),
        &spec_path.child("replicas"),
    );
    errs.extend(apps_selector_and_template(
        &spec.selector,
        &spec.template,
        &spec_path,
    ));
    errs.extend(strategy(
        &spec.strategy.unwrap_or_default(),
        &spec_path.child("strategy"),
    ));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    nonnegative(
        &mut errs,
        min_ready.into(),
        &spec_path.child("minReadySeconds"),
    );
    if let Some(limit) = spec.revision_history_limit {
        nonnegative(
            &mut errs,
            limit.into(),
            &spec_path.child("revisionHistoryLimit"),
        );
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        let path = spec_path.child("progressDeadlineSeconds");
        nonnegative(&mut errs, deadline.into(), &path);
        if deadline <= min_ready {
            errs.push(FieldError::invalid(
                &path,
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// Validates a Deployment update: as on create, and the selector cannot change (apps/v1).
pub fn deployment_update(new: &Deployment, old: &Deployment) -> ErrorList {
    let mut errs = update_errors(&new.metadata, &old.metadata, deployment(new));
    let new_selector = new.spec.as_ref().map(|s| &s.selector);
    let old_selector = old.spec.as_ref().map(|s| &s.selector);
    immutable_selector(&mut errs, new_selector, old_selector);
    errs
}

/// The metadata check every workload starts with on create: namespaced, named as a DNS subdomain.
fn workload_meta(meta: &ObjectMeta) -> ErrorList {
    object_meta(
        meta,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    )
}

/// An update's errors: the metadata update rules, then the create-time errors less the metadata
/// ones (already checked by `object_meta_update`).
fn update_errors(new: &ObjectMeta, old: &ObjectMeta, create: ErrorList) -> ErrorList {
    let mut errs = object_meta_update(new, old, &FieldPath::new("metadata"));
    errs.extend(create.into_iter().filter(|e| !is_metadata_create_only(e)));
    errs
}

/// On update, the metadata was already checked by `object_meta_update`; drop the create-time
/// metadata errors so they are not reported twice.
fn is_metadata_create_only(e: &FieldError) -> bool {
    e.field.as_str().starts_with("metadata.")
}

fn immutable_selector(
    errs: &mut ErrorList,
    new: Option<&LabelSelector>,
    old: Option<&LabelSelector>,
) {
    if new != old {
        errs.push(FieldError::invalid(
            &FieldPath::new("spec").child("selector"),
            json(&new),
            IMMUTABLE,
        ));
    }
}

/// The checks of an apps/v1 workload's selector before it is matched: it is required, valid
/// and not empty (`empty selector is invalid for {kind}`). Answers its number of terms, `None`
/// when it is missing.
pub(super) fn selector_terms(
    errs: &mut ErrorList,
    sel: &LabelSelector,
    path: &FieldPath,
    kind: &str,
) -> Option<usize> {
    if sel.match_labels.is_none() && sel.match_expressions.is_none() {
        errs.push(FieldError::required(path, ""));
        return None;
    }
    errs.extend(selector::validate_label_selector(sel, path));
    let terms = sel.match_labels.as_ref().map_or(0, |m| m.len())
        + sel.match_expressions.as_ref().map_or(0, |m| m.len());
    if terms == 0 {
        errs.push(FieldError::invalid(
            path,
            json(sel),
            format!("empty selector is invalid for {kind}"),
        ));
    }
    Some(terms)
}

/// The selector of an apps/v1 workload is required and not empty, and its template must carry
/// labels the selector matches.
fn apps_selector_and_template(
    sel: &LabelSelector,
    template: &PodTemplateSpec,
    spec_path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let sel_path = spec_path.child("selector");
    let mut selector_matches = None;
    // Kubernetes says "deployment" for ReplicaSets too.
    if let Some(terms) = selector_terms(&mut errs, sel, &sel_path, "deployment") {
        if terms > 0 {
            match Selector::from_label_selector(sel) {
                Ok(parsed) => selector_matches = Some(selects_template(&parsed, template)),
                Err(_) => errs.push(FieldError::invalid(
                    &sel_path,
                    json(sel),
                    "invalid label selector",
                )),
            }
        }
    }
    let owner = TemplateOwner {
        kind: "ReplicaSet",
        selector_matches,
    };
    errs.extend(workload_template(
        template,
        &owner,
        &spec_path.child("template"),
    ));
    errs
}

fn strategy(st: &DeploymentStrategy, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let rolling_path = path.child("rollingUpdate");
    match s(&st.type_) {
        "Recreate" => {
            if st.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    &rolling_path,
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match st.rolling_update.as_ref() {
            None => errs.push(FieldError::required(
                &rolling_path,
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let zero = IntOrString::Int(0);
                let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let max_surge = ru.max_surge.as_ref().unwrap_or(&zero);
                let unavailable_path = rolling_path.child("maxUnavailable");
                int_or_percent(&mut errs, max_unavailable, &unavailable_path);
                int_or_percent(&mut errs, max_surge, &rolling_path.child("maxSurge"));
                if int_or_percent_value(max_unavailable) == Some(0)
                    && int_or_percent_value(max_surge) == Some(0)
                {
                    errs.push(FieldError::invalid(
                        &unavailable_path,
                        json(max_unavailable),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(&mut errs, max_unavailable, &unavailable_path);
            }
        },
        other => errs.push(FieldError::not_supported(
            &path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

/// `50%` → 50; `None` when not a percent.
pub(super) fn percent(s: &str) -> Option<u64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly long numbers are still a valid spelling; they saturate.
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// The number or the percent; `None` for a string that is not a percent.
pub(super) fn int_or_percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::Int(n) => Some((*n).into()),
        IntOrString::String(p) => percent(p).map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
    }
}

/// Kubernetes' `ValidatePositiveIntOrPercent`.
pub(super) fn int_or_percent(errs: &mut ErrorList, v: &IntOrString, path: &FieldPath) {
    match v {
        IntOrString::Int(n) => nonnegative(errs, (*n).into(), path),
        IntOrString::String(p) => {
            if percent(p).is_none() {
                errs.push(FieldError::invalid(
                    path,
                    p.as_str(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
    }
}

/// Kubernetes' `IsNotMoreThan100Percent`.
pub(super) fn not_more_than_100_percent(errs: &mut ErrorList, v: &IntOrString, path: &FieldPath) {
    if let IntOrString::String(p) = v {
        if percent(p).is_some_and(|p| p > 100) {
            errs.push(FieldError::invalid(
                path,
                p.as_str(),
                "must not be greater than 100%",
            ));
        }
    }
}
