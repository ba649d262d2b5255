//! Validation of the cluster's bookkeeping objects: Namespaces, Nodes, Events, ResourceQuotas,
//! Leases and RuntimeClasses.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event, Namespace, Node, ResourceQuota, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::common::{
    cidr, dns_label, json, label_name, quota_resource_name, resource_quantity, s, IMMUTABLE,
};
use super::container::resource_requirements;
use super::meta::{kube_finalizer_name, object_meta, object_meta_update};
use super::pod::{taint_effects, tolerations_errors};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::{names, selector};

/// Validates a Namespace on create: a DNS label name, and finalizer names Kubernetes accepts.
pub fn namespace(ns: &Namespace) -> ErrorList {
    let mut errs = object_meta(
        &ns.metadata,
        false,
        names::dns1123_label,
        &FieldPath::new("metadata"),
    );
    errs.extend(spec_finalizers(ns));
    errs
}

fn spec_finalizers(ns: &Namespace) -> ErrorList {
    let mut errs = ErrorList::new();
    // Like Kubernetes, the path names the list, not the entry.
    let path = FieldPath::new("spec").child("finalizers");
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        label_name(&mut errs, f, &path);
        errs.extend(kube_finalizer_name(f, &path));
    }
    errs
}

/// Validates a Namespace update. `spec.finalizers` cannot change through an ordinary update:
/// only the namespace controller removes the `kubernetes` finalizer, through the `finalize`
/// subresource ([`namespace_finalize_update`]). (Kubernetes silently keeps the old list; minik
/// says so.)
pub fn namespace_update(new: &Namespace, old: &Namespace) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let finalizers = |ns: &Namespace| {
        ns.spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default()
    };
    if finalizers(new) != finalizers(old) {
        errs.push(FieldError::invalid(
            &FieldPath::new("spec").child("finalizers"),
            json(&finalizers(new)),
            IMMUTABLE,
        ));
    }
    errs
}

/// Validates an update through the namespace's `finalize` subresource, which may change
/// `spec.finalizers` (to valid names).
pub fn namespace_finalize_update(new: &Namespace, old: &Namespace) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let path = FieldPath::new("spec").child("finalizers");
    for (i, f) in new
        .spec
        .iter()
        .flat_map(|s| s.finalizers.iter().flatten())
        .enumerate()
    {
        label_name(&mut errs, f, &path.index(i));
        errs.extend(kube_finalizer_name(f, &path.index(i)));
    }
    errs
}

/// Validates a Node on create: a DNS subdomain name, its taints, its pod CIDRs, and the
/// quantities it reports.
pub fn node(n: &Node) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta(&n.metadata, false, names::dns1123_subdomain, &meta_path);
    errs.extend(node_common(n));
    if let Some(cidrs) = n.spec.as_ref().and_then(|s| s.pod_cidrs.as_ref()) {
        let path = FieldPath::new("spec").child("podCIDRs");
        for (i, c) in cidrs.iter().enumerate() {
            cidr(&mut errs, c, &path.index(i));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(FieldError::duplicate(&path.index(i), c.as_str()));
            }
        }
    }
    errs
}

/// Validates a Node update: metadata rules, taints and quantities as on create, no address
/// listed twice, and `podCIDRs` and `providerID` fixed once set. Everything else about a node
/// (taints, `unschedulable`, status) may change.
pub fn node_update(new: &Node, old: &Node) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(node_common(new));

    let addresses_path = FieldPath::new("status").child("addresses");
    let mut seen = BTreeSet::new();
    for (i, a) in new
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .enumerate()
    {
        if !seen.insert((a.type_.as_str(), a.address.as_str())) {
            errs.push(FieldError::duplicate(&addresses_path.index(i), json(a)));
        }
    }

    let spec_path = FieldPath::new("spec");
    let new_spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    let old_cidrs = old_spec.pod_cidrs.unwrap_or_default();
    if !old_cidrs.is_empty() && new_spec.pod_cidrs.unwrap_or_default() != old_cidrs {
        errs.push(FieldError::forbidden(
            &spec_path.child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = s(&old_spec.provider_id);
    if !old_provider.is_empty() && s(&new_spec.provider_id) != old_provider {
        errs.push(FieldError::forbidden(
            &spec_path.child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    if new_spec.external_id != old_spec.external_id {
        errs.push(FieldError::forbidden(
            &spec_path.child("externalID"),
            "may not be updated",
        ));
    }
    errs
}

fn node_common(n: &Node) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(taints) = n.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        // Kubernetes reports taint problems under `metadata.taints`, not `spec.taints`; minik
        // does the same so that messages match.
        errs.extend(taints_errors(
            taints,
            &FieldPath::new("metadata").child("taints"),
        ));
    }
    if let Some(status) = n.status.as_ref() {
        let status_path = FieldPath::new("status");
        for (list, field) in [
            (&status.capacity, "capacity"),
            (&status.allocatable, "allocatable"),
        ] {
            let path = status_path.child(field);
            for (name, q) in list.iter().flatten() {
                resource_quantity(&mut errs, name, q, &path.child(name));
            }
        }
    }
    errs
}

/// Taints have a qualified key, a label value, a known effect, and are unique by key and effect.
fn taints_errors(taints: &[Taint], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let idx = path.index(i);
        label_name(&mut errs, &t.key, &idx.child("key"));
        let value = s(&t.value);
        let problems = names::label_value(value);
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                &idx.child("value"),
                value,
                problems.join(";"),
            ));
        }
        let effect_path = idx.child("effect");
        if t.effect.is_empty() {
            errs.push(FieldError::required(&effect_path, ""));
        } else if !taint_effects().contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                &effect_path,
                t.effect.as_str(),
                taint_effects(),
            ));
        }
        if !seen.insert((t.key.as_str(), t.effect.as_str())) {
            errs.push(FieldError::duplicate(&idx, json(t)));
        }
    }
    errs
}

/// Validates an Event as Kubernetes validates `v1` Events: the event's namespace matches that of
/// the object it is about (events about cluster-scoped objects live in `default`), and events
/// in the newer style (with `eventTime`) name their reporter, action and reason. minik also
/// checks the event's metadata like any other object's.
pub fn event(e: &Event) -> ErrorList {
    let mut errs = object_meta(
        &e.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(legacy_event(e));
    errs
}

fn legacy_event(e: &Event) -> ErrorList {
    let mut errs = ErrorList::new();
    let event_ns = s(&e.metadata.namespace);
    let object_ns = s(&e.involved_object.namespace);
    let ns_path = FieldPath::new("involvedObject").child("namespace");
    let mismatch = if e.event_time.is_none() {
        if object_ns.is_empty() {
            // Older clients put events about cluster-scoped objects in `default`.
            !event_ns.is_empty() && event_ns != "default"
        } else {
            event_ns != object_ns
        }
    } else {
        object_ns.is_empty() && event_ns != "default" && event_ns != "kube-system"
    };
    if mismatch {
        errs.push(FieldError::invalid(
            &ns_path,
            object_ns,
            "does not match event.namespace",
        ));
    }
    if e.event_time.is_some() {
        let controller = s(&e.reporting_component);
        let controller_path = FieldPath::new("reportingController");
        if controller.is_empty() {
            errs.push(FieldError::required(&controller_path, ""));
        }
        label_name(&mut errs, controller, &controller_path);
        for (value, field, max) in [
            (s(&e.reporting_instance), "reportingInstance", 128),
            (s(&e.action), "action", 128),
            (s(&e.reason), "reason", 128),
        ] {
            let path = FieldPath::new(field);
            if value.is_empty() {
                errs.push(FieldError::required(&path, ""));
            }
            if value.len() > max {
                errs.push(FieldError::invalid(
                    &path,
                    "",
                    format!("can have at most {max} characters"),
                ));
            }
        }
        if s(&e.message).len() > 1024 {
            errs.push(FieldError::invalid(
                &FieldPath::new("message"),
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    errs
}

/// Validates an Event update: metadata rules, and the new event as on create.
pub fn event_update(new: &Event, old: &Event) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(legacy_event(new));
    errs
}

const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Validates a ResourceQuota on create: every hard limit names a resource a quota can count —
/// `pods`, `services`, `requests.cpu`, `limits.memory`, ..., `count/<resource>.<group>`, or any
/// name with a domain — with a non-negative amount (whole for object counts); scopes are known
/// and do not contradict each other.
pub fn resource_quota(q: &ResourceQuota) -> ErrorList {
    let mut errs = object_meta(
        &q.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(quota_spec(q));
    if let Some(status) = q.status.as_ref() {
        let path = FieldPath::new("status");
        quota_list(&mut errs, status.hard.as_ref(), &path.child("hard"));
        quota_list(&mut errs, status.used.as_ref(), &path.child("used"));
    }
    errs
}

fn quota_spec(q: &ResourceQuota) -> ErrorList {
    let mut errs = ErrorList::new();
    let spec_path = FieldPath::new("spec");
    let Some(spec) = q.spec.as_ref() else {
        return errs;
    };
    quota_list(&mut errs, spec.hard.as_ref(), &spec_path.child("hard"));

    let hard: Vec<&str> = spec
        .hard
        .iter()
        .flat_map(|h| h.keys())
        .map(String::as_str)
        .collect();
    let scopes = spec.scopes.as_deref().unwrap_or_default();
    let scopes_path = spec_path.child("scopes");
    for scope in scopes {
        if !QUOTA_SCOPES.contains(&scope.as_str()) {
            errs.push(FieldError::invalid(
                &scopes_path,
                json(scopes),
                "unsupported scope",
            ));
        }
        if hard.iter().any(|r| !scope_valid_for(scope, r)) {
            errs.push(FieldError::invalid(
                &scopes_path,
                json(scopes),
                "unsupported scope applied to resource",
            ));
        }
    }
    let named: Vec<&str> = scopes.iter().map(String::as_str).collect();
    if conflicting_scopes(&named) {
        errs.push(FieldError::invalid(
            &scopes_path,
            json(scopes),
            "conflicting scopes",
        ));
    }

    if let Some(sel) = spec.scope_selector.as_ref() {
        let path = spec_path.child("scopeSelector").child("matchExpressions");
        let mut named = Vec::new();
        for req in sel.match_expressions.iter().flatten() {
            let scope = req.scope_name.as_str();
            named.push(scope);
            if !QUOTA_SCOPES.contains(&scope) {
                errs.push(FieldError::invalid(
                    &path.child("scopeName"),
                    scope,
                    "unsupported scope",
                ));
            }
            if hard.iter().any(|r| !scope_valid_for(scope, r)) {
                errs.push(FieldError::invalid(
                    &path,
                    json(sel),
                    "unsupported scope applied to resource",
                ));
            }
            let values = req.values.as_deref().unwrap_or_default();
            let existence_only = [
                "BestEffort",
                "NotBestEffort",
                "Terminating",
                "NotTerminating",
                "CrossNamespacePodAffinity",
            ];
            if existence_only.contains(&scope) && req.operator != "Exists" {
                errs.push(FieldError::invalid(
                    &path.child("operator"),
                    req.operator.as_str(),
                    "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                ));
            }
            match req.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                    &path.child("values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                )),
                "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::invalid(
                    &path.child("values"),
                    json(values),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errs.push(FieldError::invalid(
                    &path.child("operator"),
                    other,
                    "not a valid selector operator",
                )),
            }
        }
        if conflicting_scopes(&named) {
            errs.push(FieldError::invalid(
                &path,
                json(scopes),
                "conflicting scopes",
            ));
        }
    }
    errs
}

fn quota_list(
    errs: &mut ErrorList,
    list: Option<&BTreeMap<String, K8sQuantity>>,
    path: &FieldPath,
) {
    for (name, q) in list.into_iter().flatten() {
        let p = path.key(name);
        quota_resource_name(errs, name, &p);
        resource_quantity(errs, name, q, &p);
    }
}

/// Scopes about pods only make sense for quotas on pods and their compute resources.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const POD_COMPUTE: &[&str] = &[
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    let standard = !resource.contains('/');
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => {
            !standard || resource == "pods" || POD_COMPUTE.contains(&resource)
        }
        "BestEffort" => !standard || resource == "pods",
        _ => true,
    }
}

fn conflicting_scopes(scopes: &[&str]) -> bool {
    let has = |s: &str| scopes.contains(&s);
    (has("BestEffort") && has("NotBestEffort")) || (has("Terminating") && has("NotTerminating"))
}

/// Validates a ResourceQuota update: metadata rules, the spec as on create, and fixed scopes.
pub fn resource_quota_update(new: &ResourceQuota, old: &ResourceQuota) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(quota_spec(new));
    let scopes = |q: &ResourceQuota| -> BTreeSet<String> {
        q.spec
            .iter()
            .flat_map(|s| s.scopes.iter().flatten())
            .cloned()
            .collect()
    };
    if scopes(new) != scopes(old) {
        let listed = new
            .spec
            .as_ref()
            .and_then(|s| s.scopes.clone())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            &FieldPath::new("spec").child("scopes"),
            json(&listed),
            IMMUTABLE,
        ));
    }
    errs
}

/// Validates a Lease on create: a DNS subdomain name and a sane spec.
pub fn lease(l: &Lease) -> ErrorList {
    let mut errs = object_meta(
        &l.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    errs.extend(lease_spec(l));
    errs
}

/// Validates a Lease update.
pub fn lease_update(new: &Lease, old: &Lease) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    errs.extend(lease_spec(new));
    errs
}

/// Kubernetes' `ValidateLeaseSpec`: positive durations, no negative transition count, and a
/// preferred holder only with a strategy.
fn lease_spec(l: &Lease) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(spec) = l.spec.as_ref() else {
        return errs;
    };
    let path = FieldPath::new("spec");
    if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
    if spec
        .preferred_holder
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && spec.strategy.as_deref().is_none_or(str::is_empty)
    {
        errs.push(FieldError::forbidden(
            &path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

/// Validates a RuntimeClass on create (Kubernetes' `ValidateRuntimeClass`): a DNS subdomain
/// name, a DNS label `handler` (an empty one is reported as an invalid label, as Kubernetes
/// does), valid `overhead.podFixed` amounts (reported under `overhead.limits`, as Kubernetes
/// checks them as a container's limits), and valid `scheduling` labels and tolerations.
pub fn runtime_class(rc: &RuntimeClass) -> ErrorList {
    let mut errs = object_meta(
        &rc.metadata,
        false,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    dns_label(&mut errs, &rc.handler, &FieldPath::new("handler"));
    if let Some(overhead) = rc.overhead.as_ref() {
        let limits = ResourceRequirements {
            limits: overhead.pod_fixed.clone(),
            ..ResourceRequirements::default()
        };
        resource_requirements(&mut errs, &limits, &FieldPath::new("overhead"));
    }
    if let Some(scheduling) = rc.scheduling.as_ref() {
        let path = FieldPath::new("scheduling");
        if let Some(node_selector) = scheduling.node_selector.as_ref() {
            errs.extend(selector::validate_labels(
                node_selector,
                &path.child("nodeSelector"),
            ));
        }
        let tolerations = scheduling.tolerations.as_deref().unwrap_or_default();
        errs.extend(unique_tolerations(tolerations, &path.child("tolerations")));
    }
    errs
}

/// Validates a RuntimeClass update: the create checks of the new object, and `handler` may
/// not change.
pub fn runtime_class_update(new: &RuntimeClass, old: &RuntimeClass) -> ErrorList {
    let mut errs = runtime_class(new);
    errs.extend(object_meta_update(
        &new.metadata,
        &old.metadata,
        &FieldPath::new("metadata"),
    ));
    if new.handler != old.handler {
        errs.push(FieldError::invalid(
            &FieldPath::new("handler"),
            new.handler.as_str(),
            IMMUTABLE,
        ));
    }
    errs
}

/// Valid tolerations, each at most once: no two with the same key, operator, value and effect.
fn unique_tolerations(tolerations: &[Toleration], path: &FieldPath) -> ErrorList {
    let mut errs = tolerations_errors(tolerations, path);
    let mut seen = BTreeSet::new();
    for (i, t) in tolerations.iter().enumerate() {
        let list_key = (s(&t.key), s(&t.operator), s(&t.value), s(&t.effect));
        if !seen.insert(list_key) {
            errs.push(FieldError::duplicate(&path.index(i), json(t)));
        }
    }
    errs
}
