//! Validation of one container — name, image or command, ports, env, resources, probes and
//! lifecycle hooks — shared by pods and pod templates of every workload.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, Probe, ResourceRequirements, SecurityContext,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::common::{
    container_resource_name, is_hugepages, is_overcommit_allowed, nonnegative, one_of, port_number,
    port_number_or_name, resource_quantity, s, PROTOCOLS,
};
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::quantity::Quantity;

/// What a container's checks need to know about the pod around it.
pub(super) struct PodContext<'a> {
    /// The names of the pod's volumes, which mounts must refer to.
    pub volumes: &'a BTreeSet<String>,
    /// The pod's grace period, which a `sleep` hook may not exceed.
    pub grace_period: Option<i64>,
    /// A real pod rather than a template: a few checks (image whitespace) apply only there.
    pub is_pod: bool,
}

/// Which probe is being checked: liveness and startup probes must succeed once to count.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// The checks every container gets, regular or init.
///
/// minik's process runtime can run a bare `command` on the node, so a container needs an `image`
/// or a `command` (Kubernetes requires the image).
pub(super) fn container_common(
    errs: &mut ErrorList,
    c: &Container,
    ctx: &PodContext<'_>,
    port_names: &mut BTreeSet<String>,
    path: &FieldPath,
) {
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        for m in names::dns1123_label(&c.name) {
            errs.push(FieldError::invalid(&name_path, c.name.as_str(), m));
        }
    }

    let image = s(&c.image);
    let has_command = c.command.as_ref().is_some_and(|cmd| !cmd.is_empty());
    if image.is_empty() && !has_command {
        errs.push(FieldError::required(
            &path.child("image"),
            "an image or a command is required",
        ));
    }
    if ctx.is_pod && image.trim() != image {
        errs.push(FieldError::invalid(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }

    one_of(
        errs,
        s(&c.termination_message_policy),
        &path.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );

    if let Some(ports) = c.ports.as_ref() {
        container_ports(errs, ports, port_names, &path.child("ports"));
    }
    if let Some(env) = c.env.as_ref() {
        env_vars(errs, env, &path.child("env"));
    }
    if let Some(env_from) = c.env_from.as_ref() {
        env_from_sources(errs, env_from, &path.child("envFrom"));
    }
    if let Some(mounts) = c.volume_mounts.as_ref() {
        volume_mounts(errs, mounts, ctx.volumes, &path.child("volumeMounts"));
    }

    // A container without an image has nothing to pull, so it needs no pull policy.
    let policy = s(&c.image_pull_policy);
    if !image.is_empty() || !policy.is_empty() {
        one_of(
            errs,
            policy,
            &path.child("imagePullPolicy"),
            &["Always", "IfNotPresent", "Never"],
        );
    }
    if let Some(resources) = c.resources.as_ref() {
        resource_requirements(errs, resources, &path.child("resources"));
    }
    if let Some(sc) = c.security_context.as_ref() {
        security_context(errs, sc, &path.child("securityContext"));
    }
}

/// The probes and hooks of a container that runs alongside the others (a regular container or a
/// restartable init container).
pub(super) fn probes_and_lifecycle(
    errs: &mut ErrorList,
    c: &Container,
    grace_period: Option<i64>,
    path: &FieldPath,
) {
    if let Some(lifecycle) = c.lifecycle.as_ref() {
        lifecycle_hooks(errs, lifecycle, grace_period, &path.child("lifecycle"));
    }
    for (probe, kind, field) in [
        (&c.liveness_probe, ProbeKind::Liveness, "livenessProbe"),
        (&c.readiness_probe, ProbeKind::Readiness, "readinessProbe"),
        (&c.startup_probe, ProbeKind::Startup, "startupProbe"),
    ] {
        if let Some(probe) = probe.as_ref() {
            probe_errors(errs, probe, kind, &path.child(field));
        }
    }
}

/// Container ports: numbers in range, a known protocol, and names that are IANA service names,
/// unique across the pod's containers (minik hands each named port to the process as
/// `PORT_<NAME>`, and Services resolve a named `targetPort` by it, so a name must mean one port;
/// Kubernetes only warns).
fn container_ports(
    errs: &mut ErrorList,
    ports: &[ContainerPort],
    seen_names: &mut BTreeSet<String>,
    path: &FieldPath,
) {
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        let name = s(&p.name);
        if !name.is_empty() {
            let name_path = idx.child("name");
            let problems = names::iana_svc_name(name);
            if !problems.is_empty() {
                for m in problems {
                    errs.push(FieldError::invalid(&name_path, name, m));
                }
            } else if !seen_names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(&name_path, name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(&idx.child("containerPort"), ""));
        } else {
            port_number(errs, p.container_port, &idx.child("containerPort"));
        }
        if let Some(host_port) = p.host_port.filter(|h| *h != 0) {
            port_number(errs, host_port, &idx.child("hostPort"));
        }
        one_of(errs, s(&p.protocol), &idx.child("protocol"), PROTOCOLS);
    }
}

/// The pod fields an environment variable may read through `fieldRef`.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Every path Kubernetes' downward API converts, a superset of what env vars may use.
const DOWNWARD_API_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn env_vars(errs: &mut ErrorList, vars: &[EnvVar], path: &FieldPath) {
    for (i, ev) in vars.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        if ev.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            for m in names::env_var_name(&ev.name) {
                errs.push(FieldError::invalid(&name_path, ev.name.as_str(), m));
            }
        }
        let Some(from) = ev.value_from.as_ref() else {
            continue;
        };
        let from_path = idx.child("valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = from.field_ref.as_ref() {
            sources += 1;
            object_field_selector(errs, field_ref, &from_path.child("fieldRef"));
        }
        if let Some(r) = from.resource_field_ref.as_ref() {
            sources += 1;
            let rpath = from_path.child("resourceFieldRef");
            if r.resource.is_empty() {
                errs.push(FieldError::required(&rpath.child("resource"), ""));
            } else if !RESOURCE_FIELD_PATHS.contains(&r.resource.as_str())
                && !r.resource.starts_with("requests.hugepages-")
                && !r.resource.starts_with("limits.hugepages-")
            {
                errs.push(FieldError::not_supported(
                    &rpath.child("resource"),
                    r.resource.as_str(),
                    RESOURCE_FIELD_PATHS,
                ));
            }
        }
        if let Some(r) = from.config_map_key_ref.as_ref() {
            sources += 1;
            key_selector(errs, &r.name, &r.key, &from_path.child("configMapKeyRef"));
        }
        if let Some(r) = from.secret_key_ref.as_ref() {
            sources += 1;
            key_selector(errs, &r.name, &r.key, &from_path.child("secretKeyRef"));
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(&ev.value).is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

/// A `fieldRef` names a pod field Kubernetes can expose: one of [`ENV_FIELD_PATHS`], or one
/// label or annotation as `metadata.labels['key']`.
fn object_field_selector(errs: &mut ErrorList, fs: &ObjectFieldSelector, path: &FieldPath) {
    let api_version = s(&fs.api_version);
    if api_version.is_empty() {
        errs.push(FieldError::required(&path.child("apiVersion"), ""));
        return;
    }
    if fs.field_path.is_empty() {
        errs.push(FieldError::required(&path.child("fieldPath"), ""));
        return;
    }
    let field_path = fs.field_path.as_str();
    let conversion_error = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else {
        match split_subscript(field_path) {
            Some((base, _)) if base != "metadata.annotations" && base != "metadata.labels" => Some(
                format!("field label does not support subscript: {field_path}"),
            ),
            Some(_) => None,
            None if DOWNWARD_API_PATHS.contains(&field_path) || field_path == "spec.host" => None,
            None => Some(format!("field label not supported: {field_path}")),
        }
    };
    if let Some(e) = conversion_error {
        errs.push(FieldError::invalid(
            &path.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: {e}"),
        ));
        return;
    }
    match split_subscript(field_path) {
        Some(("metadata.annotations", key)) => {
            for m in names::qualified_name(&key.to_lowercase()) {
                errs.push(FieldError::invalid(path, key, m));
            }
        }
        Some((_, key)) => {
            for m in names::qualified_name(key) {
                errs.push(FieldError::invalid(path, key, m));
            }
        }
        None => {
            // `spec.host` is the old name of `spec.nodeName`.
            let internal = if field_path == "spec.host" {
                "spec.nodeName"
            } else {
                field_path
            };
            if !ENV_FIELD_PATHS.contains(&internal) {
                errs.push(FieldError::not_supported(
                    &path.child("fieldPath"),
                    internal,
                    ENV_FIELD_PATHS,
                ));
            }
        }
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// A reference to one key of a ConfigMap or Secret.
fn key_selector(errs: &mut ErrorList, name: &str, key: &str, path: &FieldPath) {
    for m in names::dns1123_subdomain(name) {
        errs.push(FieldError::invalid(&path.child("name"), name, m));
    }
    let key_path = path.child("key");
    if key.is_empty() {
        errs.push(FieldError::required(&key_path, ""));
    } else {
        for m in names::config_map_key(key) {
            errs.push(FieldError::invalid(&key_path, key, m));
        }
    }
}

fn env_from_sources(errs: &mut ErrorList, sources: &[EnvFromSource], path: &FieldPath) {
    for (i, src) in sources.iter().enumerate() {
        let idx = path.index(i);
        let prefix = s(&src.prefix);
        if !prefix.is_empty() {
            for m in names::env_var_name(prefix) {
                errs.push(FieldError::invalid(&idx.child("prefix"), prefix, m));
            }
        }
        let mut count = 0;
        for (name, field) in [
            (
                src.config_map_ref.as_ref().map(|r| r.name.as_str()),
                "configMapRef",
            ),
            (
                src.secret_ref.as_ref().map(|r| r.name.as_str()),
                "secretRef",
            ),
        ] {
            let Some(name) = name else { continue };
            count += 1;
            let name_path = idx.child(field).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(&name_path, ""));
            } else {
                for m in names::dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(&name_path, name, m));
                }
            }
        }
        if count == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn volume_mounts(
    errs: &mut ErrorList,
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    path: &FieldPath,
) {
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(&idx.child("name"), ""));
        } else if !volumes.contains(&m.name) {
            // Kubernetes reports `Not found: "name"`; minik's error kinds have no NotFound.
            errs.push(FieldError::invalid(
                &idx.child("name"),
                m.name.as_str(),
                "must match the name of a volume in `spec.volumes`",
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&idx.child("mountPath"), ""));
        } else if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                &idx.child("mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            ));
        }
        if !s(&m.sub_path).is_empty() && !s(&m.sub_path_expr).is_empty() {
            errs.push(FieldError::invalid(
                &idx.child("subPathExpr"),
                s(&m.sub_path_expr),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
    }
}

/// Resource names and amounts are valid, and each request is at most its limit (exactly its
/// limit for resources that cannot be overcommitted, which also need a limit).
pub(super) fn resource_requirements(
    errs: &mut ErrorList,
    r: &ResourceRequirements,
    path: &FieldPath,
) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let empty = BTreeMap::new();
    let limits: &BTreeMap<String, K8sQuantity> = r.limits.as_ref().unwrap_or(&empty);
    let requests: &BTreeMap<String, K8sQuantity> = r.requests.as_ref().unwrap_or(&empty);

    let mut parsed_limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    for (name, q) in limits {
        let p = lim_path.key(name);
        container_resource_name(errs, name, &p);
        if let Some(q) = resource_quantity(errs, name, q, &p) {
            parsed_limits.insert(name, q);
        }
    }
    for (name, q) in requests {
        let p = req_path.key(name);
        container_resource_name(errs, name, &p);
        let Some(request) = resource_quantity(errs, name, q, &p) else {
            continue;
        };
        match parsed_limits.get(name.as_str()) {
            Some(limit) if request != *limit && !is_overcommit_allowed(name) => {
                errs.push(FieldError::invalid(
                    &req_path,
                    request.to_string(),
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > *limit => {
                errs.push(FieldError::invalid(
                    &req_path,
                    request.to_string(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            Some(_) => {}
            None if !limits.contains_key(name) && !is_overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            None => {}
        }
    }

    let names = || limits.keys().chain(requests.keys());
    let has_cpu_or_memory = names().any(|n| n == "cpu" || n == "memory");
    if !has_cpu_or_memory && names().any(|n| is_hugepages(n)) {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
}

fn probe_errors(errs: &mut ErrorList, p: &Probe, kind: ProbeKind, path: &FieldPath) {
    let mut handlers = Handlers::default();
    handlers.add(errs, p.exec.as_ref().map(Handler::Exec), path);
    handlers.add(errs, p.http_get.as_ref().map(Handler::HttpGet), path);
    handlers.add(
        errs,
        p.tcp_socket.as_ref().map(|t| Handler::TcpSocket(&t.port)),
        path,
    );
    handlers.add(errs, p.grpc.as_ref().map(|g| Handler::Grpc(g.port)), path);
    handlers.finish(errs, path);

    // Zero means "use the default"; the API server defaults before validating, so only
    // negative values reach here as mistakes.
    for (value, field) in [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ] {
        nonnegative(errs, value.unwrap_or(0).into(), &path.child(field));
    }
    if let Some(grace) = p.termination_grace_period_seconds {
        if kind == ProbeKind::Readiness {
            errs.push(FieldError::invalid(
                &path.child("terminationGracePeriodSeconds"),
                grace,
                "must not be set for readinessProbes",
            ));
        } else if grace <= 0 {
            errs.push(FieldError::invalid(
                &path.child("terminationGracePeriodSeconds"),
                grace,
                "must be greater than 0",
            ));
        }
    }
    if kind != ProbeKind::Readiness {
        let success = p.success_threshold.unwrap_or(0);
        if success != 1 {
            errs.push(FieldError::invalid(
                &path.child("successThreshold"),
                success,
                "must be 1",
            ));
        }
    }
}

fn lifecycle_hooks(
    errs: &mut ErrorList,
    l: &Lifecycle,
    grace_period: Option<i64>,
    path: &FieldPath,
) {
    for (hook, field) in [(&l.post_start, "postStart"), (&l.pre_stop, "preStop")] {
        if let Some(hook) = hook.as_ref() {
            lifecycle_handler(errs, hook, grace_period, &path.child(field));
        }
    }
}

fn lifecycle_handler(
    errs: &mut ErrorList,
    h: &LifecycleHandler,
    grace_period: Option<i64>,
    path: &FieldPath,
) {
    let mut handlers = Handlers::default();
    handlers.add(errs, h.exec.as_ref().map(Handler::Exec), path);
    handlers.add(errs, h.http_get.as_ref().map(Handler::HttpGet), path);
    handlers.add(
        errs,
        h.tcp_socket.as_ref().map(|t| Handler::TcpSocket(&t.port)),
        path,
    );
    if let Some(sleep) = h.sleep.as_ref() {
        if handlers.count > 0 {
            errs.push(FieldError::forbidden(
                &path.child("sleep"),
                "may not specify more than 1 handler type",
            ));
        } else {
            handlers.count += 1;
            if let Some(grace) = grace_period {
                if sleep.seconds < 0 || sleep.seconds > grace {
                    errs.push(FieldError::invalid(
                        &path.child("sleep"),
                        sleep.seconds,
                        format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                        ),
                    ));
                }
            }
        }
    }
    handlers.finish(errs, path);
}

/// One way a probe or hook acts.
enum Handler<'a> {
    Exec(&'a ExecAction),
    HttpGet(&'a HTTPGetAction),
    TcpSocket(&'a k8s_openapi::apimachinery::pkg::util::intstr::IntOrString),
    Grpc(i32),
}

/// Counts handlers as they are checked: exactly one is allowed.
#[derive(Default)]
struct Handlers {
    count: usize,
}

impl Handlers {
    fn add(&mut self, errs: &mut ErrorList, handler: Option<Handler<'_>>, path: &FieldPath) {
        let Some(handler) = handler else { return };
        let field = match handler {
            Handler::Exec(_) => "exec",
            Handler::HttpGet(_) => "httpGet",
            Handler::TcpSocket(_) => "tcpSocket",
            Handler::Grpc(_) => "grpc",
        };
        let path = path.child(field);
        if self.count > 0 {
            errs.push(FieldError::forbidden(
                &path,
                "may not specify more than 1 handler type",
            ));
            return;
        }
        self.count += 1;
        match handler {
            Handler::Exec(exec) => {
                if exec.command.as_ref().is_none_or(Vec::is_empty) {
                    errs.push(FieldError::required(&path.child("command"), ""));
                }
            }
            Handler::HttpGet(get) => {
                if s(&get.path).is_empty() {
                    errs.push(FieldError::required(&path.child("path"), ""));
                }
                port_number_or_name(errs, &get.port, &path.child("port"));
                let scheme = s(&get.scheme);
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(FieldError::not_supported(
                        &path.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in get.http_headers.iter().flatten() {
                    let valid = !header.name.is_empty()
                        && header
                            .name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !valid {
                        errs.push(FieldError::invalid(
                            &path.child("httpHeaders"),
                            header.name.as_str(),
                            "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                        ));
                    }
                }
            }
            Handler::TcpSocket(port) => port_number_or_name(errs, port, &path.child("port")),
            Handler::Grpc(port) => port_number(errs, port, &path.child("port")),
        }
    }

    fn finish(&self, errs: &mut ErrorList, path: &FieldPath) {
        if self.count == 0 {
            errs.push(FieldError::required(path, "must specify a handler type"));
        }
    }
}

fn security_context(errs: &mut ErrorList, sc: &SecurityContext, path: &FieldPath) {
    for (id, field) in [
        (sc.run_as_user, "runAsUser"),
        (sc.run_as_group, "runAsGroup"),
    ] {
        if let Some(id) = id.filter(|id| !(0..=i64::from(i32::MAX)).contains(id)) {
            errs.push(FieldError::invalid(
                &path.child(field),
                id,
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
    if sc.allow_privilege_escalation == Some(false) && sc.privileged == Some(true) {
        errs.push(FieldError::invalid(
            path,
            super::common::json(sc),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
}
