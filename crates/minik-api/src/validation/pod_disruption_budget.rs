//! Validation of PodDisruptionBudgets (policy/v1), as Kubernetes' `ValidatePodDisruptionBudget`
//! and `ValidatePodDisruptionBudgetStatusUpdate`: at most one of `minAvailable` and
//! `maxUnavailable`, each a non-negative integer or a percentage of at most 100%, a valid
//! selector, a known `unhealthyPodEvictionPolicy`, and non-negative status counts. The spec
//! may change after creation (policy/v1).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};

use super::common::{json, nonnegative};
use super::meta::{object_meta, object_meta_update};
use super::workloads::{int_or_percent, not_more_than_100_percent};
use crate::disruption::UNHEALTHY_POD_EVICTION_POLICIES;
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::selector;

/// Validates a new PodDisruptionBudget.
pub fn pod_disruption_budget(object: &PodDisruptionBudget) -> ErrorList {
    let mut errs = object_meta(
        &object.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(spec_and_status(object));
    errs
}

/// Validates a replacement of a PodDisruptionBudget (its spec or its status).
pub fn pod_disruption_budget_update(
    new: &PodDisruptionBudget,
    old: &PodDisruptionBudget,
) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(spec_and_status(new));
    errs
}

fn spec_and_status(object: &PodDisruptionBudget) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = FieldPath::new("spec");
    let spec = object.spec.clone().unwrap_or_default();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid(
            &path,
            json(&spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = &spec.min_available {
        let p = path.child("minAvailable");
        int_or_percent(&mut errs, v, &p);
        not_more_than_100_percent(&mut errs, v, &p);
    }
    if let Some(v) = &spec.max_unavailable {
        let p = path.child("maxUnavailable");
        int_or_percent(&mut errs, v, &p);
        not_more_than_100_percent(&mut errs, v, &p);
    }
    if let Some(sel) = &spec.selector {
        errs.extend(selector::validate_label_selector(
            sel,
            &path.child("selector"),
        ));
    }
    if let Some(policy) = &spec.unhealthy_pod_eviction_policy {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy.as_str()) {
            errs.push(FieldError::not_supported(
                &path.child("unhealthyPodEvictionPolicy"),
                policy.as_str(),
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
    if let Some(status) = &object.status {
        errs.extend(status_counts(status));
    }
    errs
}

/// The counts of the status are never negative (policy/v1).
fn status_counts(status: &PodDisruptionBudgetStatus) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = FieldPath::new("status");
    for (field, value) in [
        ("disruptionsAllowed", status.disruptions_allowed),
        ("currentHealthy", status.current_healthy),
        ("desiredHealthy", status.desired_healthy),
        ("expectedPods", status.expected_pods),
    ] {
        nonnegative(&mut errs, value.into(), &path.child(field));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement, ObjectMeta,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// Kubernetes' `IsValidPercent` message.
    const PERCENT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

    fn pdb(spec: PodDisruptionBudgetSpec) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_budget_with_one_bound_is_valid() {
        for v in [IntOrString::Int(0), IntOrString::String("100%".into())] {
            let spec = PodDisruptionBudgetSpec {
                min_available: Some(v.clone()),
                selector: Some(LabelSelector::default()),
                unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
                ..Default::default()
            };
            assert!(pod_disruption_budget(&pdb(spec)).is_empty());
            let spec = PodDisruptionBudgetSpec {
                max_unavailable: Some(v),
                ..Default::default()
            };
            assert!(pod_disruption_budget(&pdb(spec)).is_empty());
        }
        assert!(pod_disruption_budget(&pdb(PodDisruptionBudgetSpec::default())).is_empty());
    }

    #[test]
    fn both_bounds_are_refused() {
        let spec = PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(1)),
            ..Default::default()
        };
        let errs = pod_disruption_budget(&pdb(spec));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field.as_str(), "spec");
        let m = errs[0].to_string();
        assert!(m.starts_with("spec: Invalid value: "), "{m}");
        assert!(
            m.ends_with(": minAvailable and maxUnavailable cannot be both set"),
            "{m}"
        );
    }

    #[test]
    fn bounds_are_non_negative_integers_or_percentages_up_to_100() {
        let check = |min: IntOrString, max: IntOrString| {
            messages(&pod_disruption_budget(&pdb(PodDisruptionBudgetSpec {
                min_available: Some(min),
                ..Default::default()
            })))
            .into_iter()
            .chain(messages(&pod_disruption_budget(&pdb(
                PodDisruptionBudgetSpec {
                    max_unavailable: Some(max),
                    ..Default::default()
                },
            ))))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            check(IntOrString::Int(-1), IntOrString::String("101%".into())),
            vec![
                "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0",
                "spec.maxUnavailable: Invalid value: \"101%\": must not be greater than 100%",
            ]
        );
        assert_eq!(
            check(
                IntOrString::String("half".into()),
                IntOrString::String("-5%".into())
            ),
            vec![
                format!("spec.minAvailable: Invalid value: \"half\": {PERCENT}"),
                format!("spec.maxUnavailable: Invalid value: \"-5%\": {PERCENT}"),
            ]
        );
    }

    #[test]
    fn the_selector_and_the_policy_are_checked() {
        let spec = PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "In".into(),
                    values: None,
                }]),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("Sometimes".into()),
            ..Default::default()
        };
        assert_eq!(
            messages(&pod_disruption_budget(&pdb(spec))),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
            ]
        );
    }

    #[test]
    fn updates_may_change_the_spec_but_not_make_counts_negative() {
        let old = pdb(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            ..Default::default()
        });
        let mut new = pdb(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::String("50%".into())),
            ..Default::default()
        });
        assert!(pod_disruption_budget_update(&new, &old).is_empty());
        new.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: -1,
            ..Default::default()
        });
        assert_eq!(
            messages(&pod_disruption_budget_update(&new, &old)),
            vec![
                "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }
}
