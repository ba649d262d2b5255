//! Validation of Pods and of the pod specs inside workload templates: containers and their
//! names, volumes, restart and DNS policy, scheduling constraints (node selector, affinity,
//! tolerations), and which fields of a running pod an update may touch.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm,
    PodSpec, PodTemplateSpec, Toleration, WeightedPodAffinityTerm,
};
use serde_json::Value;

use super::common::{
    dns_label, dns_subdomain, ip_address, json, label_name, nonnegative, one_of, s,
};
use super::container::{container_common, probes_and_lifecycle, resource_requirements, PodContext};
use super::meta::{annotations_errors, object_meta, object_meta_update};
use crate::defaults::volume_has_no_source;
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::{names, selector};

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const MAX_INT32: i64 = i32::MAX as i64;

/// The fields of a pod an update may change, as Kubernetes lists them in its error.
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `Forbidden` with `message` when `spec` has ephemeral containers (only the
/// `ephemeralcontainers` subresource adds them).
fn no_ephemeral_containers(
    errs: &mut ErrorList,
    spec: &PodSpec,
    spec_path: &FieldPath,
    message: &str,
) {
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            &spec_path.child("ephemeralContainers"),
            message,
        ));
    }
}

/// Validates a Pod on create.
pub fn pod(p: &Pod) -> ErrorList {
    let mut errs = pod_metadata_and_spec(p);
    let spec_path = FieldPath::new("spec");
    let empty = PodSpec::default();
    let spec = p.spec.as_ref().unwrap_or(&empty);
    no_ephemeral_containers(&mut errs, spec, &spec_path, "cannot be set on create");
    let gated = spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty());
    if !s(&spec.node_name).is_empty() && gated {
        errs.push(FieldError::forbidden(
            &spec_path.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

/// The metadata and the whole spec, as checked on create.
fn pod_metadata_and_spec(p: &Pod) -> ErrorList {
    let mut errs = object_meta(
        &p.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    let empty = PodSpec::default();
    errs.extend(pod_spec(
        p.spec.as_ref().unwrap_or(&empty),
        &FieldPath::new("spec"),
        true,
    ));
    errs
}

/// Validates a Pod update: metadata rules, the new pod as a whole, and that the spec changes
/// only in what Kubernetes lets a running pod change — container images, a shorter
/// `activeDeadlineSeconds`, added tolerations (or a changed `tolerationSeconds`), removed
/// scheduling gates. Anything else fails with Kubernetes' `pod updates may not change fields
/// other than ...` followed by the fields that differ. Binding a pod to a node is not an update:
/// the binding subresource sets `spec.nodeName` itself.
pub fn pod_update(new: &Pod, old: &Pod) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &meta_path);
    let empty = PodSpec::default();
    errs.extend(pod_spec(
        new.spec.as_ref().unwrap_or(&empty),
        &FieldPath::new("spec"),
        true,
    ));

    let spec_path = FieldPath::new("spec");
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let old_spec = old.spec.as_ref().unwrap_or(&empty);

    let new_init = new_spec.init_containers.as_deref().unwrap_or_default();
    let old_init = old_spec.init_containers.as_deref().unwrap_or_default();
    for (new_list, old_list, field) in [
        (
            new_spec.containers.as_slice(),
            old_spec.containers.as_slice(),
            "containers",
        ),
        (new_init, old_init, "initContainers"),
    ] {
        if new_list.len() != old_list.len() {
            errs.push(FieldError::forbidden(
                &spec_path.child(field),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
    }

    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(new_deadline), _) if !(0..=MAX_INT32).contains(&new_deadline) => {
            errs.push(FieldError::invalid(
                &deadline_path,
                new_deadline,
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(new_deadline), Some(old_deadline)) if old_deadline < new_deadline => {
            errs.push(FieldError::invalid(
                &deadline_path,
                new_deadline,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            &deadline_path,
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    errs.extend(only_added_tolerations(
        new_spec.tolerations.as_deref().unwrap_or_default(),
        old_spec.tolerations.as_deref().unwrap_or_default(),
        &spec_path.child("tolerations"),
    ));

    let old_gates: BTreeSet<&str> = old_spec
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, gate) in new_spec.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(gate.name.as_str()) {
            errs.push(FieldError::forbidden(
                &spec_path.child("schedulingGates").index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    gate.name
                ),
            ));
        }
    }

    if new_spec == old_spec {
        return errs;
    }
    // Put back what may change, then anything still different may not.
    let mut munged = new_spec.clone();
    for (c, old_c) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image.clone_from(&old_c.image);
    }
    for (c, old_c) in munged.init_containers.iter_mut().flatten().zip(old_init) {
        c.image.clone_from(&old_c.image);
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged
        .scheduling_gates
        .clone_from(&old_spec.scheduling_gates);
    munged.tolerations.clone_from(&old_spec.tolerations);
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    if munged != *old_spec {
        let diff = spec_diff(&json(old_spec), &json(&munged));
        errs.push(FieldError::forbidden(
            &spec_path,
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{diff}"
            ),
        ));
    }
    errs
}

/// Tolerations of a running pod may be added to, and an existing one may only change its
/// `tolerationSeconds`.
fn only_added_tolerations(new: &[Toleration], old: &[Toleration], path: &FieldPath) -> ErrorList {
    for o in old {
        let kept = new.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            o == *n
        });
        if !kept {
            return vec![FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    ErrorList::new()
}

/// Lists where two specs differ, one `path: old -> new` line each, so the user sees what they
/// changed (Kubernetes appends a Go diff of the whole spec).
fn spec_diff(old: &Value, new: &Value) -> String {
    const MAX_LINES: usize = 20;
    let mut lines = Vec::new();
    diff_into(&mut lines, "spec", old, new);
    let more = lines.len().saturating_sub(MAX_LINES);
    lines.truncate(MAX_LINES);
    if more > 0 {
        lines.push(format!("  ... and {more} more"));
    }
    lines.join("\n")
}

fn diff_into(lines: &mut Vec<String>, at: &str, old: &Value, new: &Value) {
    if lines.len() > 100 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_into(
                    lines,
                    &format!("{at}.{k}"),
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(lines, &format!("{at}[{i}]"), x, y);
            }
        }
        _ => lines.push(format!("  {at}: {old} -> {new}")),
    }
}

/// Validates a pod spec, of a pod (`is_pod`) or of a template, with paths under `path`.
pub(super) fn pod_spec(spec: &PodSpec, path: &FieldPath, is_pod: bool) -> ErrorList {
    let mut errs = ErrorList::new();

    let grace_path = path.child("terminationGracePeriodSeconds");
    match spec.termination_grace_period_seconds {
        None => errs.push(FieldError::required(&grace_path, "")),
        // Kubernetes turns a negative grace period into 1 with a warning; minik refuses it so the
        // agent never has to guess.
        Some(g) => nonnegative(&mut errs, g, &grace_path),
    }

    let volume_names = volumes(&mut errs, spec, &path.child("volumes"));
    let ctx = PodContext {
        volumes: &volume_names,
        grace_period: spec.termination_grace_period_seconds,
        is_pod,
    };
    containers(&mut errs, spec, &ctx, path);

    if spec.host_network == Some(true) {
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let host_port = p.host_port.unwrap_or(0);
                if (is_pod || host_port != 0) && host_port != p.container_port {
                    errs.push(FieldError::invalid(
                        &path
                            .child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    one_of(
        &mut errs,
        s(&spec.restart_policy),
        &path.child("restartPolicy"),
        &["Always", "OnFailure", "Never"],
    );
    let dns_policy = s(&spec.dns_policy);
    one_of(
        &mut errs,
        dns_policy,
        &path.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    dns_config(&mut errs, spec, dns_policy, &path.child("dnsConfig"));

    if let Some(node_selector) = spec.node_selector.as_ref() {
        errs.extend(selector::validate_labels(
            node_selector,
            &path.child("nodeSelector"),
        ));
    }
    if let Some(affinity) = spec.affinity.as_ref() {
        let apath = path.child("affinity");
        if let Some(na) = affinity.node_affinity.as_ref() {
            let napath = apath.child("nodeAffinity");
            if let Some(required) = na
                .required_during_scheduling_ignored_during_execution
                .as_ref()
            {
                node_selector(
                    &mut errs,
                    required,
                    &napath.child("requiredDuringSchedulingIgnoredDuringExecution"),
                );
            }
            let ppath = napath.child("preferredDuringSchedulingIgnoredDuringExecution");
            for (i, term) in na
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .enumerate()
            {
                let idx = ppath.index(i);
                weight(&mut errs, term.weight, &idx.child("weight"));
                // Preferred terms may name label values that do not exist yet.
                node_selector_term(&mut errs, &term.preference, false, &idx.child("preference"));
            }
        }
        if let Some(pa) = affinity.pod_affinity.as_ref() {
            pod_affinity_terms(
                &mut errs,
                pa.required_during_scheduling_ignored_during_execution
                    .as_deref(),
                pa.preferred_during_scheduling_ignored_during_execution
                    .as_deref(),
                &apath.child("podAffinity"),
            );
        }
        if let Some(pa) = affinity.pod_anti_affinity.as_ref() {
            pod_affinity_terms(
                &mut errs,
                pa.required_during_scheduling_ignored_during_execution
                    .as_deref(),
                pa.preferred_during_scheduling_ignored_during_execution
                    .as_deref(),
                &apath.child("podAntiAffinity"),
            );
        }
    }

    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        label_name(
            &mut errs,
            &gate.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
        );
    }
    let mut gates = BTreeSet::new();
    for (i, gate) in spec.scheduling_gates.iter().flatten().enumerate() {
        let idx = path.child("schedulingGates").index(i);
        label_name(&mut errs, &gate.name, &idx);
        if !gates.insert(gate.name.as_str()) {
            errs.push(FieldError::duplicate(&idx, gate.name.as_str()));
        }
    }

    for (value, field) in [
        (&spec.service_account_name, "serviceAccountName"),
        (&spec.node_name, "nodeName"),
        (&spec.priority_class_name, "priorityClassName"),
    ] {
        if !s(value).is_empty() {
            dns_subdomain(&mut errs, s(value), &path.child(field));
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        if !(1..=MAX_INT32).contains(&deadline) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                deadline,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (value, field) in [(&spec.hostname, "hostname"), (&spec.subdomain, "subdomain")] {
        if !s(value).is_empty() {
            dns_label(&mut errs, s(value), &path.child(field));
        }
    }
    if let Some(tolerations) = spec.tolerations.as_ref() {
        errs.extend(tolerations_errors(tolerations, &path.child("tolerations")));
    }
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let idx = path.child("hostAliases").index(i);
        ip_address(&mut errs, &alias.ip, &idx.child("ip"));
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            dns_subdomain(&mut errs, host, &idx.child("hostnames").index(j));
        }
    }
    if let Some(policy) = spec.preemption_policy.as_deref() {
        one_of(
            &mut errs,
            policy,
            &path.child("preemptionPolicy"),
            &["PreemptLowerPriority", "Never"],
        );
    }
    if let Some(resources) = spec.resources.as_ref() {
        resource_requirements(&mut errs, resources, &path.child("resources"));
    }
    errs
}

/// Volume names are unique DNS labels, and each volume names exactly one source. Returns the
/// names, for the containers' mounts to refer to.
fn volumes(errs: &mut ErrorList, spec: &PodSpec, path: &FieldPath) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let idx = path.index(i);
        let before = errs.len();
        let name_path = idx.child("name");
        if v.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            dns_label(errs, &v.name, &name_path);
        }
        if names.contains(&v.name) {
            errs.push(FieldError::duplicate(&name_path, v.name.as_str()));
        }
        if volume_has_no_source(v) {
            errs.push(FieldError::required(&idx, "must specify a volume type"));
        } else if let Value::Object(fields) = json(v) {
            for source in fields.keys().filter(|k| *k != "name").skip(1) {
                errs.push(FieldError::forbidden(
                    &idx.child(source),
                    "may not specify more than 1 volume type",
                ));
            }
        }
        if errs.len() == before {
            names.insert(v.name.clone());
        }
    }
    names
}

/// Regular and init containers: at least one regular container, names unique across both lists,
/// host ports not used twice, probes and hooks only where they can run.
fn containers(errs: &mut ErrorList, spec: &PodSpec, ctx: &PodContext<'_>, path: &FieldPath) {
    let cpath = path.child("containers");
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let idx = cpath.index(i);
        container_common(errs, c, ctx, &mut port_names, &idx);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(&idx.child("name"), c.name.as_str()));
        }
        probes_and_lifecycle(errs, c, ctx.grace_period, &idx);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                &idx.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(errs, &spec.containers, &cpath);

    let ipath = path.child("initContainers");
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let idx = ipath.index(i);
        // Init containers run one at a time, so their port names and host ports do not clash
        // with each other.
        container_common(errs, c, ctx, &mut BTreeSet::new(), &idx);
        let restartable = c.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = c.restart_policy.as_deref().filter(|p| *p != "Always") {
            errs.push(FieldError::not_supported(
                &idx.child("restartPolicy"),
                policy,
                &["Always"],
            ));
        }
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(&idx.child("name"), c.name.as_str()));
        }
        host_port_conflicts(errs, std::slice::from_ref(c), &ipath);
        if restartable {
            probes_and_lifecycle(errs, c, ctx.grace_period, &idx);
        } else {
            for (set, field) in [
                (c.lifecycle.is_some(), "lifecycle"),
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        &idx.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// Two ports of one pod cannot claim the same host port, protocol and address.
fn host_port_conflicts(errs: &mut ErrorList, containers: &[Container], path: &FieldPath) {
    let mut seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = p.host_port.filter(|h| *h != 0) else {
                continue;
            };
            let key = format!("{}/{}/{}", s(&p.protocol), s(&p.host_ip), host_port);
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    &path.index(i).child("ports").index(j).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

fn dns_config(errs: &mut ErrorList, spec: &PodSpec, dns_policy: &str, path: &FieldPath) {
    if dns_policy == "None" {
        match spec.dns_config.as_ref() {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if c.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                errs.push(FieldError::required(
                    &path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(config) = spec.dns_config.as_ref() else {
        return;
    };
    let nameservers = config.nameservers.as_deref().unwrap_or_default();
    let too_many = "must not have more than 3 nameservers";
    at_most(errs, nameservers, 3, &path.child("nameservers"), too_many);
    for (i, ns) in nameservers.iter().enumerate() {
        ip_address(errs, ns, &path.child("nameservers").index(i));
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    let too_many = "must not have more than 32 search paths";
    at_most(errs, searches, 32, &path.child("searches"), too_many);
    for (i, search) in searches.iter().enumerate() {
        if search != "." {
            dns_subdomain(
                errs,
                search.trim_end_matches('.'),
                &path.child("searches").index(i),
            );
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if s(&option.name).is_empty() {
            errs.push(FieldError::required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

/// `Invalid`, naming the whole list, when `items` holds more than `max`.
fn at_most(errs: &mut ErrorList, items: &[String], max: usize, path: &FieldPath, message: &str) {
    if items.len() > max {
        errs.push(FieldError::invalid(path, json(items), message));
    }
}

fn weight(errs: &mut ErrorList, weight: i32, path: &FieldPath) {
    if !(1..=100).contains(&weight) {
        errs.push(FieldError::invalid(
            path,
            weight,
            "must be in the range 1-100",
        ));
    }
}

/// Kubernetes' `ValidateNodeSelector` (a pod's required node affinity, a volume's).
pub(super) fn node_selector(errs: &mut ErrorList, sel: &NodeSelector, path: &FieldPath) {
    let terms_path = path.child("nodeSelectorTerms");
    if sel.node_selector_terms.is_empty() {
        errs.push(FieldError::required(
            &terms_path,
            "must have at least one node selector term",
        ));
    }
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        node_selector_term(errs, term, true, &terms_path.index(i));
    }
}

fn node_selector_term(
    errs: &mut ErrorList,
    term: &NodeSelectorTerm,
    check_values: bool,
    path: &FieldPath,
) {
    for (i, req) in term.match_expressions.iter().flatten().enumerate() {
        node_selector_requirement(
            errs,
            req,
            check_values,
            &path.child("matchExpressions").index(i),
        );
    }
    for (i, req) in term.match_fields.iter().flatten().enumerate() {
        let idx = path.child("matchFields").index(i);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.len() != 1 => errs.push(FieldError::required(
                &idx.child("values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            other => errs.push(FieldError::invalid(
                &idx.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if req.key != "metadata.name" {
            errs.push(FieldError::invalid(
                &idx.child("key"),
                req.key.as_str(),
                "not a valid field selector key",
            ));
        } else {
            for (j, v) in values.iter().enumerate() {
                dns_subdomain(errs, v, &idx.child("values").index(j));
            }
        }
    }
}

fn node_selector_requirement(
    errs: &mut ErrorList,
    req: &NodeSelectorRequirement,
    check_values: bool,
    path: &FieldPath,
) {
    let values = req.values.as_deref().unwrap_or_default();
    let values_path = path.child("values");
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
            &values_path,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
            &values_path,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 => errs.push(FieldError::required(
            &values_path,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    label_name(errs, &req.key, &path.child("key"));
    if check_values {
        for (i, v) in values.iter().enumerate() {
            let vpath = values_path.index(i);
            for m in names::label_value(v) {
                errs.push(FieldError::invalid(&vpath, v.as_str(), m));
            }
        }
    }
}

fn pod_affinity_terms(
    errs: &mut ErrorList,
    required: Option<&[PodAffinityTerm]>,
    preferred: Option<&[WeightedPodAffinityTerm]>,
    path: &FieldPath,
) {
    let rpath = path.child("requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in required.unwrap_or_default().iter().enumerate() {
        pod_affinity_term(errs, term, &rpath.index(i));
    }
    let ppath = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in preferred.unwrap_or_default().iter().enumerate() {
        let idx = ppath.index(i);
        weight(errs, term.weight, &idx.child("weight"));
        pod_affinity_term(errs, &term.pod_affinity_term, &idx.child("podAffinityTerm"));
    }
}

fn pod_affinity_term(errs: &mut ErrorList, term: &PodAffinityTerm, path: &FieldPath) {
    if let Some(sel) = term.label_selector.as_ref() {
        errs.extend(selector::validate_label_selector(
            sel,
            &path.child("labelSelector"),
        ));
    }
    if let Some(sel) = term.namespace_selector.as_ref() {
        errs.extend(selector::validate_label_selector(
            sel,
            &path.child("namespaceSelector"),
        ));
    }
    for ns in term.namespaces.iter().flatten() {
        dns_label(errs, ns, &path.child("namespace"));
    }
    let key_path = path.child("topologyKey");
    if term.topology_key.is_empty() {
        errs.push(FieldError::required(&key_path, "can not be empty"));
    }
    label_name(errs, &term.topology_key, &key_path);
}

/// Tolerations: a valid key (or none, with `Exists`, to tolerate everything), an operator of
/// `Equal` or `Exists`, a value only with `Equal`, a known effect, and `tolerationSeconds` only
/// for `NoExecute`.
pub(super) fn tolerations_errors(tolerations: &[Toleration], path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, t) in tolerations.iter().enumerate() {
        let idx = path.index(i);
        let key = s(&t.key);
        let operator = s(&t.operator);
        let value = s(&t.value);
        let effect = s(&t.effect);
        if !key.is_empty() {
            label_name(&mut errs, key, &idx.child("key"));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &idx.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &idx.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let problems = names::label_value(value);
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(
                        &idx.child("operator"),
                        value,
                        problems.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &idx.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &idx.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &idx.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

pub(super) fn taint_effects() -> &'static [&'static str] {
    TAINT_EFFECTS
}

/// How a workload's template is checked: which kind owns it (for the messages) and whether its
/// selector picks the template's labels.
pub(super) struct TemplateOwner<'a> {
    /// `ReplicaSet` (also for Deployments, as in Kubernetes) or `ReplicationController`.
    pub kind: &'a str,
    /// `Some(false)` when a non-empty selector does not match the template's labels.
    pub selector_matches: Option<bool>,
}

/// Whether `selector` matches the labels of `template` (none when it has none).
pub(super) fn selects_template(selector: &selector::Selector, template: &PodTemplateSpec) -> bool {
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    selector.matches(&labels)
}

/// Validates the pod template of a workload: it must carry labels its selector matches, be a
/// valid pod spec, restart always (a controller replaces pods, it does not wait for them to
/// finish), and have no deadline.
pub(super) fn workload_template(
    t: &PodTemplateSpec,
    owner: &TemplateOwner<'_>,
    path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let meta = t.metadata.clone().unwrap_or_default();
    if owner.selector_matches == Some(false) {
        errs.push(FieldError::invalid(
            &path.child("metadata").child("labels"),
            json(&meta.labels.clone().unwrap_or_default()),
            "`selector` does not match template `labels`",
        ));
    }
    // Kubernetes reports problems with the template's labels and annotations under
    // `template.labels` and `template.annotations`, without `metadata`; so does minik, so that
    // messages read the same.
    if let Some(labels) = meta.labels.as_ref() {
        errs.extend(selector::validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = meta.annotations.as_ref() {
        errs.extend(annotations_errors(annotations, &path.child("annotations")));
    }
    let spec_path = path.child("spec");
    let empty = PodSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&empty);
    errs.extend(pod_spec(spec, &spec_path, false));
    no_ephemeral_containers(
        &mut errs,
        spec,
        &spec_path,
        "ephemeral containers not allowed in pod template",
    );
    let restart = s(&spec.restart_policy);
    if !restart.is_empty() && restart != "Always" {
        errs.push(FieldError::not_supported(
            &spec_path.child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            &spec_path.child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {} is not Supported", owner.kind),
        ));
    }
    errs
}
