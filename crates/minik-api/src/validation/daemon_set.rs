//! Validation of DaemonSets, as Kubernetes' `ValidateDaemonSet` and `ValidateDaemonSetUpdate`:
//! a selector that matches the template, a template whose pods restart always, an update
//! strategy whose rolling update moves (`maxUnavailable` or `maxSurge`, not both, not neither,
//! at most 100%), and on update a selector that does not change.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{json, nonnegative, s, IMMUTABLE};
use super::meta::{object_meta, object_meta_update};
use super::pod::{selects_template, workload_template, TemplateOwner};
use super::workloads::{
    int_or_percent, int_or_percent_value, not_more_than_100_percent, selector_terms,
};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::selector::Selector;

/// The update strategies Kubernetes accepts, in its order.
const STRATEGIES: &[&str] = &["RollingUpdate", "OnDelete"];

/// Validates a new DaemonSet: its metadata and its spec.
pub fn daemon_set(object: &DaemonSet) -> ErrorList {
    let mut errs = object_meta(
        &object.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(spec(
        &object.spec.clone().unwrap_or_default(),
        &FieldPath::new("spec"),
    ));
    errs
}

/// Validates a replacement of a DaemonSet: the metadata update, a selector that stays, and
/// the new spec.
pub fn daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let new_spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    if new_spec.selector != old_spec.selector {
        errs.push(FieldError::invalid(
            &FieldPath::new("spec").child("selector"),
            json(&new_spec.selector),
            IMMUTABLE,
        ));
    }
    errs.extend(spec(&new_spec, &FieldPath::new("spec")));
    errs
}

/// Kubernetes' `ValidateDaemonSetSpec`.
fn spec(spec: &DaemonSetSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let sel = &spec.selector;
    let sel_path = path.child("selector");
    let selector_matches = match selector_terms(&mut errs, sel, &sel_path, "daemonset") {
        // A missing selector selects nothing, so it matches no template either.
        None => Some(false),
        Some(_) => Selector::from_label_selector(sel)
            .ok()
            .map(|parsed| selects_template(&parsed, &spec.template)),
    };
    let owner = TemplateOwner {
        kind: "DaemonSet",
        selector_matches,
    };
    errs.extend(workload_template(
        &spec.template,
        &owner,
        &path.child("template"),
    ));
    nonnegative(
        &mut errs,
        spec.min_ready_seconds.unwrap_or(0).into(),
        &path.child("minReadySeconds"),
    );
    errs.extend(update_strategy(
        &spec.update_strategy.clone().unwrap_or_default(),
        &path.child("updateStrategy"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        nonnegative(&mut errs, limit.into(), &path.child("revisionHistoryLimit"));
    }
    errs
}

/// Kubernetes' `ValidateDaemonSetUpdateStrategy`.
fn update_strategy(strategy: &DaemonSetUpdateStrategy, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    match s(&strategy.type_) {
        "OnDelete" => {}
        "RollingUpdate" => match strategy.rolling_update.as_ref() {
            None => errs.push(FieldError::required(&path.child("rollingUpdate"), "")),
            Some(ru) => errs.extend(rolling_update(ru, &path.child("rollingUpdate"))),
        },
        other => errs.push(FieldError::not_supported(
            &path.child("type"),
            other,
            STRATEGIES,
        )),
    }
    errs
}

/// Kubernetes' `ValidateRollingUpdateDaemonSet`.
fn rolling_update(ru: &RollingUpdateDaemonSet, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let zero = IntOrString::Int(0);
    let unavailable = ru.max_unavailable.as_ref().unwrap_or(&zero);
    let surge = ru.max_surge.as_ref().unwrap_or(&zero);
    let unavailable_path = path.child("maxUnavailable");
    let surge_path = path.child("maxSurge");
    int_or_percent(&mut errs, unavailable, &unavailable_path);
    int_or_percent(&mut errs, surge, &surge_path);
    not_more_than_100_percent(&mut errs, unavailable, &unavailable_path);
    not_more_than_100_percent(&mut errs, surge, &surge_path);
    let has_unavailable = int_or_percent_value(unavailable).unwrap_or(0) != 0;
    let has_surge = int_or_percent_value(surge).unwrap_or(0) != 0;
    if has_unavailable && has_surge {
        errs.push(FieldError::invalid(
            &surge_path,
            json(surge),
            "may not be set when maxUnavailable is non-zero",
        ));
    } else if !has_unavailable && !has_surge {
        errs.push(FieldError::required(
            &unavailable_path,
            "cannot be 0 when maxSurge is 0",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use serde_json::{json as j, Value};

    fn base() -> Value {
        j!({
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        })
    }

    fn with(patch: impl FnOnce(&mut Value)) -> DaemonSet {
        let mut v = base();
        patch(&mut v);
        let mut ds: DaemonSet = serde_json::from_value(v).unwrap_or_default();
        defaults::daemon_set(&mut ds);
        ds
    }

    fn rendered(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_defaulted_daemon_set_is_valid() {
        assert_eq!(rendered(daemon_set(&with(|_| {}))), Vec::<String>::new());
    }

    #[test]
    fn the_selector_must_exist_and_match_the_template() {
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["selector"] = j!({});
        })));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.selector: Required value")));
        assert!(errs
            .iter()
            .any(|e| e.contains("`selector` does not match template `labels`")));
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["selector"]["matchLabels"]["app"] = j!("other");
        })));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec.template.metadata.labels: Invalid value"));
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["selector"] = j!({"matchLabels": {}});
        })));
        assert!(errs
            .iter()
            .any(|e| e.contains("empty selector is invalid for daemonset")));
    }

    #[test]
    fn template_pods_restart_always() {
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["template"]["spec"]["restartPolicy"] = j!("OnFailure");
        })));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec.template.spec.restartPolicy: Unsupported value"));
    }

    #[test]
    fn rolling_updates_must_move_and_stay_within_bounds() {
        let strategy = |ru: Value| {
            rendered(daemon_set(&with(|v| {
                v["spec"]["updateStrategy"] = j!({"type": "RollingUpdate", "rollingUpdate": ru});
            })))
        };
        let errs = strategy(j!({"maxUnavailable": 0, "maxSurge": 0}));
        assert_eq!(
            errs,
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        let errs = strategy(j!({"maxUnavailable": 1, "maxSurge": 1}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("may not be set when maxUnavailable is non-zero"));
        let errs = strategy(j!({"maxUnavailable": "120%", "maxSurge": 0}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("must not be greater than 100%"));
        let errs = strategy(j!({"maxUnavailable": "x", "maxSurge": 0}));
        assert!(errs.iter().any(|e| e.contains("a valid percent string")));
        let errs = strategy(j!({"maxUnavailable": 0, "maxSurge": "50%"}));
        assert_eq!(errs, Vec::<String>::new());
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["updateStrategy"] = j!({"type": "Sometimes"});
        })));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec.updateStrategy.type: Unsupported value"));
        let errs = rendered(daemon_set(&with(|v| {
            v["spec"]["updateStrategy"] = j!({"type": "OnDelete"});
            v["spec"]["revisionHistoryLimit"] = j!(-1);
        })));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec.revisionHistoryLimit: Invalid value"));
    }

    #[test]
    fn the_selector_is_immutable() {
        let mut old = with(|_| {});
        old.metadata.resource_version = Some("1".into());
        let mut new = with(|v| {
            v["spec"]["selector"]["matchLabels"]["tier"] = j!("x");
            v["spec"]["template"]["metadata"]["labels"]["tier"] = j!("x");
        });
        new.metadata.resource_version = Some("1".into());
        let errs = rendered(daemon_set_update(&new, &old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec.selector: Invalid value"));
        assert!(errs[0].ends_with("field is immutable"));
        let mut same = with(|v| {
            v["spec"]["template"]["spec"]["containers"][0]["image"] = j!("busybox:2");
        });
        same.metadata.resource_version = Some("1".into());
        assert_eq!(
            rendered(daemon_set_update(&same, &old)),
            Vec::<String>::new()
        );
    }
}
