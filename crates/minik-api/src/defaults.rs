//! The values Kubernetes fills in when an object is created, so that what minik stores and serves
//! reads exactly like what a Kubernetes API server would answer.
//!
//! Kubernetes spreads this work over its defaulting functions (`pkg/apis/core/v1/defaults.go`,
//! `pkg/apis/apps/v1/defaults.go`), its registry strategies (pod phase and QoS class, namespace
//! finalizers, service cluster IP bookkeeping) and a few admission plugins (Priority,
//! DefaultTolerationSeconds). minik has one place for all of them: the API server calls the
//! function for the kind on every create and on the new object of every update, before
//! validation. On an update it first carries over what the server allocated and the client may
//! have left out, with [`object_meta_update`] (and [`service_update`] for Services), as
//! Kubernetes does.
//!
//! Every function here is idempotent and never replaces a value the user set, with the two
//! exceptions Kubernetes itself makes: the `kubernetes.io/metadata.name` label of a namespace
//! always equals its name, and a `None` session affinity drops its config. Quantities are
//! rewritten in Kubernetes' canonical form (`0.5` → `500m`, `1.5Gi` → `1536Mi`), as its
//! serializer does; their values never change beyond rounding up to a thousandth.
//!
//! A pod's `serviceAccountName` is defaulted to `default` here; the token volume Kubernetes
//! mounts is added by the ServiceAccount admission step
//! ([`crate::kinds::service_account::admit_pod`]). Not done, because minik serves no such
//! objects: resolving a `priorityClassName`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, Endpoints, EphemeralContainer, Event, HTTPGetAction, LifecycleHandler, Namespace,
    NamespaceSpec, NamespaceStatus, Node, Pod, PodSecurityContext, PodSpec, PodStatus,
    PodTemplateSpec, Probe, ReplicationController, ResourceQuota, ResourceRequirements, Service,
    ServiceSpec, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod controller_revision;
mod cron_job;
mod daemon_set;
mod job;
mod pod_disruption_budget;
mod stateful_set;
pub use controller_revision::controller_revision;
pub use cron_job::cron_job;
pub use daemon_set::daemon_set;
pub use job::job;
pub use pod_disruption_budget::pod_disruption_budget;
pub use stateful_set::stateful_set;

use crate::quantity::Quantity;

/// Seconds a pod tolerates its node being not-ready or unreachable before it is evicted, as the
/// DefaultTolerationSeconds admission plugin sets it.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;
/// The grace period a pod gets when it does not say.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
pub use crate::wellknown::DEFAULT_SCHEDULER_NAME;
/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The finalizer that keeps a namespace until everything in it is deleted.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// How long a `ClientIP` session affinity lasts when the service does not say (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;

use crate::wellknown::{TAINT_NOT_READY, TAINT_UNREACHABLE};
/// The mode files projected from secrets and config maps get (0644).
const DEFAULT_VOLUME_FILE_MODE: i32 = 0o644;

/// True when a string field is absent or empty: Go, and so Kubernetes, cannot tell the two apart.
fn unset(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// Sets a string field when it is absent or empty.
fn fill(s: &mut Option<String>, value: &str) {
    if unset(s) {
        *s = Some(value.to_owned());
    }
}

/// Sets a number field when it is absent or zero (zero is Go's "unset").
fn fill_nonzero(n: &mut Option<i32>, value: i32) {
    if n.is_none_or(|n| n == 0) {
        *n = Some(value);
    }
}

/// Carries the fields the server manages from the stored object into a replacement, as
/// Kubernetes does before validating an update: the `uid` when the new object has none, the
/// creation time, the generation when the new object has none, and — once deletion started —
/// the deletion time and grace period, which an update can never remove or change. Clients can
/// then `replace` an object with a manifest that never saw those fields.
pub fn object_meta_update(new: &mut ObjectMeta, old: &ObjectMeta) {
    if unset(&new.uid) {
        new.uid.clone_from(&old.uid);
    }
    if old.creation_timestamp.is_some() {
        new.creation_timestamp.clone_from(&old.creation_timestamp);
    }
    if new.generation.is_none() {
        new.generation = old.generation;
    }
    if old.deletion_timestamp.is_some() {
        new.deletion_timestamp.clone_from(&old.deletion_timestamp);
        new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    }
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

/// Defaults a Pod: everything a pod template gets ([`pod_spec`]) plus what Kubernetes adds only
/// to real pods — requests copied from limits, `enableServiceLinks`, priority and preemption
/// policy (Priority admission), the not-ready/unreachable tolerations (DefaultTolerationSeconds
/// admission), the service account (`default` unless named; ServiceAccount admission), host ports under `hostNetwork`, and the initial status: phase `Pending` and the
/// QoS class.
pub fn pod(p: &mut Pod) {
    let spec = p.spec.get_or_insert_with(PodSpec::default);
    pod_spec(spec);

    for c in spec.containers.iter_mut() {
        requests_from_limits(c);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        requests_from_limits(c);
    }
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    if spec.host_network == Some(true) {
        host_network_ports(&mut spec.containers);
        if let Some(init) = spec.init_containers.as_mut() {
            host_network_ports(init);
        }
    }
    // The Priority admission plugin resolves `priorityClassName`; minik serves no PriorityClass,
    // so only pods without one get the global default priority.
    if unset(&spec.priority_class_name) && spec.priority.is_none() {
        spec.priority = Some(0);
    }
    fill(&mut spec.preemption_policy, "PreemptLowerPriority");
    default_tolerations(spec);
    // The ServiceAccount admission plugin: every pod runs as a service account, `default`
    // unless it names one; `serviceAccount` is the deprecated name of the same field, kept equal.
    if unset(&spec.service_account_name) {
        spec.service_account_name = spec
            .service_account
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some("default".to_owned()));
    }
    spec.service_account.clone_from(&spec.service_account_name);

    let qos = pod_qos_class(spec);
    let status = p.status.get_or_insert_with(PodStatus::default);
    fill(&mut status.phase, "Pending");
    fill(&mut status.qos_class, qos);
}

/// Defaults a pod spec the way Kubernetes defaults every pod spec, including the ones inside
/// templates: DNS and restart policy, grace period, scheduler, an empty security context, and
/// the defaults of each container, probe, volume and field reference.
pub fn pod_spec(s: &mut PodSpec) {
    fill(&mut s.dns_policy, "ClusterFirst");
    fill(&mut s.restart_policy, "Always");
    if s.security_context.is_none() {
        s.security_context = Some(PodSecurityContext::default());
    }
    if s.termination_grace_period_seconds.is_none() {
        s.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    }
    fill(&mut s.scheduler_name, DEFAULT_SCHEDULER_NAME);

    for c in s.containers.iter_mut() {
        container(c);
    }
    for c in s.init_containers.iter_mut().flatten() {
        container(c);
    }
    for c in s.ephemeral_containers.iter_mut().flatten() {
        ephemeral_container(c);
    }
    for v in s.volumes.iter_mut().flatten() {
        volume(v);
    }
    canonical_quantities(&mut s.overhead);
    if let Some(r) = s.resources.as_mut() {
        canonical_quantities(&mut r.limits);
        canonical_quantities(&mut r.requests);
    }
}

fn container(c: &mut Container) {
    if unset(&c.image_pull_policy) {
        if let Some(policy) = c.image.as_deref().and_then(pull_policy_for) {
            c.image_pull_policy = Some(policy.to_owned());
        }
    }
    fill(&mut c.termination_message_path, "/dev/termination-log");
    fill(&mut c.termination_message_policy, "File");
    let resources = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    canonical_quantities(&mut resources.limits);
    canonical_quantities(&mut resources.requests);
    for p in c.ports.iter_mut().flatten() {
        fill(&mut p.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ] {
        if let Some(probe) = probe.as_mut() {
            probe_defaults(probe);
        }
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        lifecycle_handler(&mut lifecycle.post_start);
        lifecycle_handler(&mut lifecycle.pre_stop);
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            fill(&mut field_ref.api_version, "v1");
        }
    }
}

/// Ephemeral containers share the container defaults that make sense for them; they have no
/// ports, probes or resources (validation forbids those).
fn ephemeral_container(c: &mut EphemeralContainer) {
    if unset(&c.image_pull_policy) {
        if let Some(policy) = c.image.as_deref().and_then(pull_policy_for) {
            c.image_pull_policy = Some(policy.to_owned());
        }
    }
    fill(&mut c.termination_message_path, "/dev/termination-log");
    fill(&mut c.termination_message_policy, "File");
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            fill(&mut field_ref.api_version, "v1");
        }
    }
}

/// `Always` for images tagged `latest` or not tagged at all (which means `latest`),
/// `IfNotPresent` for any other tag or a digest. A container without an image (minik runs a bare
/// `command` on the node) has nothing to pull, so it gets no policy.
fn pull_policy_for(image: &str) -> Option<&'static str> {
    if image.is_empty() {
        return None;
    }
    Some(match image_tag(image) {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if image.contains('@') => "IfNotPresent",
        None => "Always",
    })
}

/// The tag of an image reference: what follows the last `:` of the last path component, before
/// any `@digest`. `localhost:5000/app` has no tag; `localhost:5000/app:v1` has `v1`.
fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_component = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_component
        .split_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty())
}

fn probe_defaults(p: &mut Probe) {
    fill_nonzero(&mut p.timeout_seconds, 1);
    fill_nonzero(&mut p.period_seconds, 10);
    fill_nonzero(&mut p.success_threshold, 1);
    fill_nonzero(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        http_get(h);
    }
}

fn lifecycle_handler(h: &mut Option<LifecycleHandler>) {
    if let Some(get) = h.as_mut().and_then(|h| h.http_get.as_mut()) {
        http_get(get);
    }
}

fn http_get(h: &mut HTTPGetAction) {
    fill(&mut h.path, "/");
    fill(&mut h.scheme, "HTTP");
}

/// A volume that names no source is an `emptyDir`; projected files get mode 0644.
fn volume(v: &mut Volume) {
    if volume_has_no_source(v) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(s) = v.config_map.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(s) = v.downward_api.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
        for item in s.items.iter_mut().flatten() {
            if let Some(field_ref) = item.field_ref.as_mut() {
                fill(&mut field_ref.api_version, "v1");
            }
        }
    }
    if let Some(s) = v.projected.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_FILE_MODE);
    }
    if let Some(s) = v.empty_dir.as_mut() {
        if let Some(q) = s.size_limit.as_mut() {
            canonical_quantity(q);
        }
    }
}

/// Whether a volume sets none of its (many) source fields. Looking at the JSON form keeps this
/// true as k8s-openapi adds sources.
pub(crate) fn volume_has_no_source(v: &Volume) -> bool {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().all(|k| k == "name"),
        _ => false,
    }
}

/// Kubernetes copies each limit into the requests when that request is missing, so a container
/// that only says `limits.cpu: 1` is scheduled as asking for one CPU.
fn requests_from_limits(c: &mut Container) {
    let Some(resources) = c.resources.as_mut() else {
        return;
    };
    let Some(limits) = resources.limits.as_ref() else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, value) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
}

/// With host networking a container port is a host port, so Kubernetes fills `hostPort`.
fn host_network_ports(containers: &mut [Container]) {
    for c in containers {
        for p in c.ports.iter_mut().flatten() {
            if p.host_port.is_none_or(|h| h == 0) {
                p.host_port = Some(p.container_port);
            }
        }
    }
}

/// Adds the not-ready and unreachable tolerations (NoExecute, 300 s) unless the pod already
/// tolerates that taint, exactly as the DefaultTolerationSeconds admission plugin does: a
/// toleration with an empty key or an empty effect counts as tolerating it.
fn default_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    add_default_tolerations(tolerations, DEFAULT_TOLERATION_SECONDS);
}

/// What [`default_tolerations`] does, with another number of seconds, on a pod as a request
/// body: the API server runs it before admission when its `--pod-eviction-timeout` is not the
/// default (Kubernetes' `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`). A body whose tolerations do not decode is left
/// for validation to refuse.
pub fn pod_tolerations_json(pod: &mut serde_json::Value, seconds: i64) {
    if seconds == DEFAULT_TOLERATION_SECONDS {
        return;
    }
    let Some(spec) = pod
        .get_mut("spec")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let mut tolerations: Vec<Toleration> = match spec.get("tolerations") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(list) => match serde_json::from_value(list.clone()) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    let before = tolerations.len();
    add_default_tolerations(&mut tolerations, seconds);
    if tolerations.len() != before {
        if let Ok(list) = serde_json::to_value(tolerations) {
            spec.insert("tolerations".into(), list);
        }
    }
}

fn add_default_tolerations(tolerations: &mut Vec<Toleration>, seconds: i64) {
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let key_matches = unset(&t.key) || t.key.as_deref() == Some(key);
            let effect_matches = unset(&t.effect) || t.effect.as_deref() == Some("NoExecute");
            key_matches && effect_matches
        })
    };
    let missing: Vec<&str> = [TAINT_NOT_READY, TAINT_UNREACHABLE]
        .into_iter()
        .filter(|key| !tolerates(key))
        .collect();
    for key in missing {
        tolerations.push(Toleration {
            key: Some(key.to_owned()),
            operator: Some("Exists".to_owned()),
            effect: Some("NoExecute".to_owned()),
            toleration_seconds: Some(seconds),
            value: None,
        });
    }
}

/// The QoS class Kubernetes gives a pod: `BestEffort` when no container asks for or caps cpu or
/// memory, `Guaranteed` when every container caps both and every request equals its limit,
/// `Burstable` otherwise. Quantities that do not parse are ignored (validation rejects them).
pub fn pod_qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;

    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let resources = c.resources.as_ref();
        let positive =
            |list: Option<&BTreeMap<String, K8sQuantity>>| -> Vec<(&'static str, Quantity)> {
                let mut found = Vec::new();
                for name in ["cpu", "memory"] {
                    let q = list
                        .and_then(|l| l.get(name))
                        .and_then(|q| Quantity::try_from(q).ok());
                    if let Some(q) = q.filter(|q| *q > Quantity::ZERO) {
                        found.push((name, q));
                    }
                }
                found
            };
        for (name, q) in positive(resources.and_then(|r| r.requests.as_ref())) {
            add_to(&mut requests, name, q);
        }
        let container_limits = positive(resources.and_then(|r| r.limits.as_ref()));
        if container_limits.len() < 2 {
            guaranteed = false;
        }
        for (name, q) in container_limits {
            add_to(&mut limits, name, q);
        }
    }

    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let requests_match_limits = requests.iter().all(|(name, r)| limits.get(name) == Some(r));
    if guaranteed && requests_match_limits && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn add_to<'a>(sums: &mut BTreeMap<&'a str, Quantity>, name: &'a str, q: Quantity) {
    let sum = match sums.get(name) {
        // An overflowing sum cannot equal anything sensible; keep the larger part.
        Some(prev) => prev.checked_add(q).unwrap_or(q.max(*prev)),
        None => q,
    };
    sums.insert(name, sum);
}

/// Rewrites a quantity in canonical form, rounded up (away from zero) to a thousandth, as
/// Kubernetes stores resource lists. A quantity that does not parse is left for validation.
fn canonical_quantity(q: &mut K8sQuantity) {
    let Ok(parsed) = Quantity::try_from(&*q) else {
        return;
    };
    const NANOS_PER_MILLI: i128 = 1_000_000;
    let nanos = parsed.as_nanos();
    let rem = nanos % NANOS_PER_MILLI;
    let rounded = if rem == 0 {
        Some(parsed)
    } else {
        let step = if nanos > 0 {
            NANOS_PER_MILLI
        } else {
            -NANOS_PER_MILLI
        };
        (nanos - rem)
            .checked_add(step)
            .map(|n| Quantity::from_nanos(n).with_format(parsed.format()))
    };
    if let Some(rounded) = rounded {
        q.0 = rounded.to_string();
    }
}

fn canonical_quantities(list: &mut Option<BTreeMap<String, K8sQuantity>>) {
    for q in list.iter_mut().flat_map(|l| l.values_mut()) {
        canonical_quantity(q);
    }
}

fn pod_template(t: &mut PodTemplateSpec) {
    pod_spec(t.spec.get_or_insert_with(PodSpec::default));
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// Defaults a ReplicaSet: one replica, and its template's pod spec.
pub fn replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        pod_template(t);
    }
}

/// Defaults a ReplicationController: one replica; the selector and the controller's own labels
/// default to the template's labels when they are empty; and its template's pod spec.
pub fn replication_controller(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            rc.metadata.labels = Some(labels);
        }
    }
    if let Some(t) = spec.template.as_mut() {
        pod_template(t);
    }
}

/// Defaults a Deployment: one replica, a RollingUpdate strategy with 25% surge and 25%
/// unavailable, ten old ReplicaSets kept, a 600 s progress deadline, and its template's pod spec.
pub fn deployment(d: &mut Deployment) {
    let spec = d.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    fill(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".to_owned()));
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".to_owned()));
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    pod_template(&mut spec.template);
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------------------------

/// Defaults a Service as Kubernetes' defaulting and service registry do: type `ClusterIP`,
/// session affinity `None`, port protocol `TCP`, `targetPort` = `port`, traffic policies
/// `Cluster`, IPv4 single stack (a headless service without selector is `RequireDualStack`, as in
/// Kubernetes; minik only has IPv4), node ports allocated for load balancers, and `clusterIP` and
/// `clusterIPs` kept in step. Allocating the cluster IP and node ports is the API server's job.
pub fn service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    fill(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let config = spec
                .session_affinity_config
                .get_or_insert_with(Default::default);
            let client_ip = config.client_ip.get_or_insert_with(Default::default);
            client_ip
                .timeout_seconds
                .get_or_insert(DEFAULT_CLIENT_IP_AFFINITY_SECONDS);
        }
        _ => {}
    }
    fill(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        fill(&mut p.protocol, "TCP");
        let target_unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if target_unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }

    let type_ = spec.type_.clone().unwrap_or_default();
    let externally_accessible = externally_accessible(spec, &type_);
    if externally_accessible {
        fill(&mut spec.external_traffic_policy, "Cluster");
    }
    let has_cluster_ip = matches!(type_.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer");
    if has_cluster_ip {
        fill(&mut spec.internal_traffic_policy, "Cluster");
    }
    if type_ == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }

    if has_cluster_ip {
        // The registry keeps the singular and plural fields in step so that clients written
        // against either see the same address.
        let ips_empty = spec.cluster_ips.as_ref().is_none_or(Vec::is_empty);
        if ips_empty && !unset(&spec.cluster_ip) {
            spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
        } else if !ips_empty && unset(&spec.cluster_ip) {
            spec.cluster_ip = spec
                .cluster_ips
                .as_ref()
                .and_then(|ips| ips.first().cloned());
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let selectorless = spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
        let policy = if headless && selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        fill(&mut spec.ip_family_policy, policy);
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            spec.ip_families = Some(vec!["IPv4".to_owned()]);
        }
    }

    if type_ == "LoadBalancer" {
        let ingress = svc
            .status
            .as_mut()
            .and_then(|s| s.load_balancer.as_mut())
            .and_then(|lb| lb.ingress.as_mut());
        for ing in ingress.into_iter().flatten() {
            if !unset(&ing.ip) {
                fill(&mut ing.ip_mode, "VIP");
            }
        }
    }
}

/// Whether a service of `type_` is reachable from outside the cluster: a node port, a load
/// balancer, or a cluster IP with external IPs.
pub(crate) fn externally_accessible(spec: &ServiceSpec, type_: &str) -> bool {
    type_ == "NodePort"
        || type_ == "LoadBalancer"
        || (type_ == "ClusterIP"
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()))
}

/// Carries the values the API server allocated for `old` into a replacement `new` that left them
/// out, as Kubernetes' service registry does, so that `kubectl apply` or `replace` of a manifest
/// without `clusterIP` or `nodePort` keeps them instead of failing validation: the cluster IPs
/// (while both versions have one), the health-check node port, and each node port whose port
/// name matches and whose number the new version does not already use.
pub fn service_update(new: &mut Service, old: &Service) {
    let (Some(new_spec), Some(old_spec)) = (new.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    let type_of = |s: &ServiceSpec| s.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    let needs_cluster_ip = |s: &ServiceSpec| type_of(s) != "ExternalName";
    let needs_node_ports = |s: &ServiceSpec| {
        let t = type_of(s);
        t == "NodePort"
            || (t == "LoadBalancer" && s.allocate_load_balancer_node_ports != Some(false))
    };

    if needs_cluster_ip(old_spec) && needs_cluster_ip(new_spec) {
        if unset(&new_spec.cluster_ip) {
            new_spec.cluster_ip.clone_from(&old_spec.cluster_ip);
        }
        if new_spec.cluster_ips.as_ref().is_none_or(Vec::is_empty)
            && old_spec
                .cluster_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty())
        {
            new_spec.cluster_ips.clone_from(&old_spec.cluster_ips);
        }
    }

    if needs_node_ports(old_spec) && needs_node_ports(new_spec) {
        let used_by = |s: &ServiceSpec| -> Vec<i32> {
            s.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port.filter(|n| *n != 0))
                .collect()
        };
        let in_new = used_by(new_spec);
        let old_by_name: BTreeMap<String, i32> = old_spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.node_port?)))
            .collect();
        for p in new_spec.ports.iter_mut().flatten() {
            if p.node_port.is_some_and(|n| n != 0) {
                continue;
            }
            let name = p.name.clone().unwrap_or_default();
            if let Some(n) = old_by_name
                .get(&name)
                .filter(|n| **n != 0 && !in_new.contains(n))
            {
                p.node_port = Some(*n);
            }
        }
    }

    let needs_health_check = |s: &ServiceSpec| {
        type_of(s) == "LoadBalancer" && s.external_traffic_policy.as_deref() == Some("Local")
    };
    if needs_health_check(old_spec)
        && needs_health_check(new_spec)
        && new_spec.health_check_node_port.is_none_or(|p| p == 0)
    {
        new_spec.health_check_node_port = old_spec.health_check_node_port;
    }
}

/// Defaults Endpoints: port protocol `TCP`.
pub fn endpoints(ep: &mut Endpoints) {
    for subset in ep.subsets.iter_mut().flatten() {
        for p in subset.ports.iter_mut().flatten() {
            fill(&mut p.protocol, "TCP");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster objects
// ---------------------------------------------------------------------------------------------

/// Defaults a Namespace: the `kubernetes.io/metadata.name` label always equals the name (as in
/// Kubernetes, which overwrites it); the phase starts `Active`; and the `kubernetes` finalizer is
/// added unless the namespace is already being deleted — the namespace controller removes it
/// once the namespace is empty, and an update must not bring it back.
pub fn namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
    if ns.metadata.deletion_timestamp.is_none() {
        let finalizers = ns
            .spec
            .get_or_insert_with(NamespaceSpec::default)
            .finalizers
            .get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
            finalizers.push(NAMESPACE_FINALIZER.to_owned());
        }
    }
    fill(
        &mut ns.status.get_or_insert_with(NamespaceStatus::default).phase,
        "Active",
    );
}

/// Defaults a Node: allocatable equals capacity when the node reports only capacity.
pub fn node(n: &mut Node) {
    let Some(status) = n.status.as_mut() else {
        return;
    };
    canonical_quantities(&mut status.capacity);
    canonical_quantities(&mut status.allocatable);
    if status.allocatable.is_none() {
        status.allocatable.clone_from(&status.capacity);
    }
}

/// Events have no defaults in Kubernetes' `v1` API (not even `type: Normal`); this exists so that
/// every served kind is handled the same way.
pub fn event(_e: &mut Event) {}

/// Leases have no defaults.
pub fn lease(_l: &mut k8s_openapi::api::coordination::v1::Lease) {}

/// RuntimeClasses have no defaults; their overhead is written in canonical quantities.
pub fn runtime_class(rc: &mut k8s_openapi::api::node::v1::RuntimeClass) {
    if let Some(overhead) = rc.overhead.as_mut() {
        canonical_quantities(&mut overhead.pod_fixed);
    }
}

/// ConfigMaps have no defaults.
pub fn config_map(_cm: &mut k8s_openapi::api::core::v1::ConfigMap) {}

/// A Secret's `stringData` is merged into `data` (its values win) and dropped: it is write-only,
/// as in Kubernetes. The type defaults to `Opaque`.
pub fn secret(s: &mut k8s_openapi::api::core::v1::Secret) {
    if let Some(strings) = s.string_data.take() {
        let data = s.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in strings {
            data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
        }
    }
    if s.type_.is_none() {
        s.type_ = Some(crate::validation::SECRET_TYPE_OPAQUE.to_owned());
    }
}

/// ServiceAccounts have no defaults.
pub fn service_account(_sa: &mut k8s_openapi::api::core::v1::ServiceAccount) {}

/// ResourceQuotas have no defaults; their quantities are written in canonical form.
pub fn resource_quota(q: &mut ResourceQuota) {
    if let Some(spec) = q.spec.as_mut() {
        canonical_quantities(&mut spec.hard);
    }
    if let Some(status) = q.status.as_mut() {
        canonical_quantities(&mut status.hard);
        canonical_quantities(&mut status.used);
    }
}

/// Defaults a PersistentVolume as Kubernetes' `SetDefaults_PersistentVolume`: reclaim policy
/// `Retain`, volume mode `Filesystem`, phase `Pending` until a controller says otherwise, and a
/// `hostPath`'s `type` `""` (no check). Its capacity is written in canonical form.
/// `volumeAttributesClassName` is dropped, as Kubernetes 1.33 drops it with its
/// VolumeAttributesClass feature off (by default).
pub fn persistent_volume(pv: &mut k8s_openapi::api::core::v1::PersistentVolume) {
    let spec = pv.spec.get_or_insert_with(Default::default);
    fill(&mut spec.persistent_volume_reclaim_policy, "Retain");
    spec.volume_mode
        .get_or_insert_with(|| "Filesystem".to_owned());
    spec.volume_attributes_class_name = None;
    if let Some(host_path) = spec.host_path.as_mut() {
        host_path.type_.get_or_insert_with(String::new);
    }
    canonical_quantities(&mut spec.capacity);
    fill(
        &mut pv.status.get_or_insert_with(Default::default).phase,
        "Pending",
    );
}

/// Defaults a PersistentVolumeClaim as Kubernetes does: volume mode `Filesystem`, phase
/// `Pending` until it is bound. Its quantities are written in canonical form, and
/// `volumeAttributesClassName` is dropped (see [`persistent_volume`]).
pub fn persistent_volume_claim(pvc: &mut k8s_openapi::api::core::v1::PersistentVolumeClaim) {
    let spec = pvc.spec.get_or_insert_with(Default::default);
    spec.volume_mode
        .get_or_insert_with(|| "Filesystem".to_owned());
    spec.volume_attributes_class_name = None;
    if let Some(resources) = spec.resources.as_mut() {
        canonical_quantities(&mut resources.requests);
        canonical_quantities(&mut resources.limits);
    }
    let status = pvc.status.get_or_insert_with(Default::default);
    fill(&mut status.phase, "Pending");
    canonical_quantities(&mut status.capacity);
    canonical_quantities(&mut status.allocated_resources);
}

/// Defaults a StorageClass as Kubernetes' `SetDefaults_StorageClass`: reclaim policy `Delete`
/// and binding mode `Immediate` when unset.
pub fn storage_class(sc: &mut k8s_openapi::api::storage::v1::StorageClass) {
    sc.reclaim_policy.get_or_insert_with(|| "Delete".to_owned());
    sc.volume_binding_mode
        .get_or_insert_with(|| "Immediate".to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    /// Deserializes `input`, applies `default`, and returns the result as JSON after checking
    /// that a second pass changes nothing.
    fn defaulted<T>(input: Value, default: fn(&mut T)) -> Value
    where
        T: DeserializeOwned + Serialize,
    {
        let mut obj: T = serde_json::from_value(input).expect("test input must deserialize");
        default(&mut obj);
        let once = serde_json::to_value(&obj).expect("serialize");
        default(&mut obj);
        let twice = serde_json::to_value(&obj).expect("serialize");
        assert_eq!(once, twice, "defaulting is not idempotent");
        once
    }

    /// One case of a table: the object, the JSON pointer looked at after defaulting, and the
    /// value expected there (`Value::Null` for "absent").
    struct Case {
        name: &'static str,
        input: Value,
        pointer: &'static str,
        want: Value,
    }

    fn check_table<T>(cases: Vec<Case>, default: fn(&mut T))
    where
        T: DeserializeOwned + Serialize,
    {
        for case in cases {
            let out = defaulted(case.input, default);
            let got = out.pointer(case.pointer).cloned().unwrap_or(Value::Null);
            assert_eq!(
                got, case.want,
                "case {:?}: {} in {out:#}",
                case.name, case.pointer
            );
        }
    }

    fn pod_with_container(container: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [container]}})
    }

    #[test]
    fn minimal_pod_reads_like_kubernetes() {
        let out = defaulted::<Pod>(
            pod_with_container(json!({"name": "web", "image": "nginx:1.25"})),
            pod,
        );
        let want = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "web",
                    "image": "nginx:1.25",
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "default",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
                "tolerations": [
                    {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                    {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
                ]
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"}
        });
        assert_eq!(out, want);
    }

    #[test]
    fn pod_defaults() {
        let c = pod_with_container;
        check_table::<Pod>(
            vec![
                Case {
                    name: "latest tag pulls always",
                    input: c(json!({"name": "a", "image": "nginx:latest"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("Always"),
                },
                Case {
                    name: "no tag means latest",
                    input: c(json!({"name": "a", "image": "nginx"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("Always"),
                },
                Case {
                    name: "registry port is not a tag",
                    input: c(json!({"name": "a", "image": "localhost:5000/app"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("Always"),
                },
                Case {
                    name: "tag after registry port",
                    input: c(json!({"name": "a", "image": "localhost:5000/app:v2"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("IfNotPresent"),
                },
                Case {
                    name: "digest",
                    input: c(json!({"name": "a", "image": "app@sha256:abcd"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("IfNotPresent"),
                },
                Case {
                    name: "no image, no pull policy",
                    input: c(json!({"name": "a", "command": ["sleep", "1"]})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: Value::Null,
                },
                Case {
                    name: "user pull policy kept",
                    input: c(json!({"name": "a", "image": "nginx", "imagePullPolicy": "Never"})),
                    pointer: "/spec/containers/0/imagePullPolicy",
                    want: json!("Never"),
                },
                Case {
                    name: "port protocol",
                    input: c(
                        json!({"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}),
                    ),
                    pointer: "/spec/containers/0/ports/0/protocol",
                    want: json!("TCP"),
                },
                Case {
                    name: "port protocol kept",
                    input: c(
                        json!({"name": "a", "image": "x:1", "ports": [{"containerPort": 53, "protocol": "UDP"}]}),
                    ),
                    pointer: "/spec/containers/0/ports/0/protocol",
                    want: json!("UDP"),
                },
                Case {
                    name: "probe defaults",
                    input: c(
                        json!({"name": "a", "image": "x:1", "livenessProbe": {"httpGet": {"port": 8080}}}),
                    ),
                    pointer: "/spec/containers/0/livenessProbe",
                    want: json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
                },
                Case {
                    name: "probe values kept",
                    input: c(
                        json!({"name": "a", "image": "x:1", "readinessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 2, "failureThreshold": 7}}),
                    ),
                    pointer: "/spec/containers/0/readinessProbe",
                    want: json!({"tcpSocket": {"port": 1}, "timeoutSeconds": 1, "periodSeconds": 2, "successThreshold": 1, "failureThreshold": 7}),
                },
                Case {
                    name: "zero probe period is unset",
                    input: c(
                        json!({"name": "a", "image": "x:1", "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0}}),
                    ),
                    pointer: "/spec/containers/0/startupProbe/periodSeconds",
                    want: json!(10),
                },
                Case {
                    name: "fieldRef apiVersion",
                    input: c(
                        json!({"name": "a", "image": "x:1", "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
                    ),
                    pointer: "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
                    want: json!("v1"),
                },
                Case {
                    name: "requests from limits",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}}}),
                    ),
                    pointer: "/spec/containers/0/resources/requests",
                    want: json!({"cpu": "100m", "memory": "128Mi"}),
                },
                Case {
                    name: "quantities canonical",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "0.5", "memory": "1.5Gi"}}}),
                    ),
                    pointer: "/spec/containers/0/resources/limits",
                    want: json!({"cpu": "500m", "memory": "1536Mi"}),
                },
                Case {
                    name: "sub-milli rounds up",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"requests": {"cpu": "0.0001"}}}),
                    ),
                    pointer: "/spec/containers/0/resources/requests/cpu",
                    want: json!("1m"),
                },
                Case {
                    name: "bad quantity left for validation",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"requests": {"cpu": "lots"}}}),
                    ),
                    pointer: "/spec/containers/0/resources/requests/cpu",
                    want: json!("lots"),
                },
                Case {
                    name: "guaranteed",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}),
                    ),
                    pointer: "/status/qosClass",
                    want: json!("Guaranteed"),
                },
                Case {
                    name: "burstable",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"requests": {"cpu": "1"}}}),
                    ),
                    pointer: "/status/qosClass",
                    want: json!("Burstable"),
                },
                Case {
                    name: "burstable when request below limit",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}),
                    ),
                    pointer: "/status/qosClass",
                    want: json!("Burstable"),
                },
                Case {
                    name: "other resources do not count",
                    input: c(
                        json!({"name": "a", "image": "x:1", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}),
                    ),
                    pointer: "/status/qosClass",
                    want: json!("BestEffort"),
                },
                Case {
                    name: "status phase kept",
                    input: json!({"spec": {"containers": []}, "status": {"phase": "Running"}}),
                    pointer: "/status/phase",
                    want: json!("Running"),
                },
                Case {
                    name: "restart policy kept",
                    input: json!({"spec": {"containers": [], "restartPolicy": "Never"}}),
                    pointer: "/spec/restartPolicy",
                    want: json!("Never"),
                },
                Case {
                    name: "grace period kept",
                    input: json!({"spec": {"containers": [], "terminationGracePeriodSeconds": 0}}),
                    pointer: "/spec/terminationGracePeriodSeconds",
                    want: json!(0),
                },
                Case {
                    name: "service links kept",
                    input: json!({"spec": {"containers": [], "enableServiceLinks": false}}),
                    pointer: "/spec/enableServiceLinks",
                    want: json!(false),
                },
                Case {
                    name: "priority class keeps priority unset",
                    input: json!({"spec": {"containers": [], "priorityClassName": "high"}}),
                    pointer: "/spec/priority",
                    want: Value::Null,
                },
                Case {
                    name: "host network ports",
                    input: json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 8080}]}]}}),
                    pointer: "/spec/containers/0/ports/0/hostPort",
                    want: json!(8080),
                },
                Case {
                    name: "volume without source is emptyDir",
                    input: json!({"spec": {"containers": [], "volumes": [{"name": "scratch"}]}}),
                    pointer: "/spec/volumes/0",
                    want: json!({"name": "scratch", "emptyDir": {}}),
                },
                Case {
                    name: "secret volume mode",
                    input: json!({"spec": {"containers": [], "volumes": [{"name": "s", "secret": {"secretName": "x"}}]}}),
                    pointer: "/spec/volumes/0/secret/defaultMode",
                    want: json!(420),
                },
                Case {
                    name: "missing spec is created",
                    input: json!({"metadata": {"name": "p"}}),
                    pointer: "/spec/dnsPolicy",
                    want: json!("ClusterFirst"),
                },
            ],
            pod,
        );
    }

    #[test]
    fn pod_tolerations() {
        let with =
            |tolerations: Value| json!({"spec": {"containers": [], "tolerations": tolerations}});
        check_table::<Pod>(
            vec![
                Case {
                    name: "user toleration of not-ready kept, unreachable added",
                    input: with(
                        json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]),
                    ),
                    pointer: "/spec/tolerations",
                    want: json!([
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                    ]),
                },
                Case {
                    name: "tolerate everything adds nothing",
                    input: with(json!([{"operator": "Exists"}])),
                    pointer: "/spec/tolerations",
                    want: json!([{"operator": "Exists"}]),
                },
                Case {
                    name: "NoSchedule toleration does not count",
                    input: with(
                        json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]),
                    ),
                    pointer: "/spec/tolerations/1/key",
                    want: json!("node.kubernetes.io/not-ready"),
                },
            ],
            pod,
        );
    }

    #[test]
    fn template_gets_pod_spec_defaults_but_not_pod_only_ones() {
        let d = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1"}}}]}}
        }});
        let out = defaulted::<Deployment>(d, deployment);
        let spec = &out["spec"];
        assert_eq!(spec["replicas"], json!(1));
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
        assert_eq!(spec["progressDeadlineSeconds"], json!(600));
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let t = &spec["template"]["spec"];
        assert_eq!(t["restartPolicy"], json!("Always"));
        assert_eq!(t["containers"][0]["imagePullPolicy"], json!("Always"));
        // Pod-only defaults stay out of templates, as in Kubernetes.
        assert_eq!(t.get("tolerations"), None);
        assert_eq!(t.get("enableServiceLinks"), None);
        assert_eq!(t["containers"][0]["resources"].get("requests"), None);
    }

    #[test]
    fn workload_defaults() {
        check_table::<Deployment>(
            vec![
                Case {
                    name: "recreate has no rolling update",
                    input: json!({"spec": {"selector": {}, "template": {}, "strategy": {"type": "Recreate"}}}),
                    pointer: "/spec/strategy",
                    want: json!({"type": "Recreate"}),
                },
                Case {
                    name: "user surge kept",
                    input: json!({"spec": {"selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": 0}}}}),
                    pointer: "/spec/strategy/rollingUpdate",
                    want: json!({"maxSurge": 0, "maxUnavailable": "25%"}),
                },
                Case {
                    name: "zero replicas kept",
                    input: json!({"spec": {"replicas": 0, "selector": {}, "template": {}}}),
                    pointer: "/spec/replicas",
                    want: json!(0),
                },
            ],
            deployment,
        );
        check_table::<ReplicaSet>(
            vec![Case {
                name: "one replica",
                input: json!({"spec": {"selector": {}}}),
                pointer: "/spec/replicas",
                want: json!(1),
            }],
            replica_set,
        );
        let rc = |spec: Value| json!({"metadata": {"name": "rc"}, "spec": spec});
        check_table::<ReplicationController>(
            vec![
                Case {
                    name: "selector from template",
                    input: rc(json!({"template": {"metadata": {"labels": {"app": "a"}}}})),
                    pointer: "/spec/selector",
                    want: json!({"app": "a"}),
                },
                Case {
                    name: "labels from template",
                    input: rc(json!({"template": {"metadata": {"labels": {"app": "a"}}}})),
                    pointer: "/metadata/labels",
                    want: json!({"app": "a"}),
                },
                Case {
                    name: "selector kept",
                    input: rc(
                        json!({"selector": {"x": "y"}, "template": {"metadata": {"labels": {"app": "a"}}}}),
                    ),
                    pointer: "/spec/selector",
                    want: json!({"x": "y"}),
                },
                Case {
                    name: "replicas",
                    input: rc(json!({})),
                    pointer: "/spec/replicas",
                    want: json!(1),
                },
            ],
            replication_controller,
        );
    }

    #[test]
    fn service_defaults() {
        let svc = |spec: Value| json!({"metadata": {"name": "s"}, "spec": spec});
        let out = defaulted::<Service>(
            svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
            service,
        );
        assert_eq!(
            out["spec"],
            json!({
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"]
            })
        );
        check_table::<Service>(
            vec![
                Case {
                    name: "named target port kept",
                    input: svc(json!({"ports": [{"port": 80, "targetPort": "http"}]})),
                    pointer: "/spec/ports/0/targetPort",
                    want: json!("http"),
                },
                Case {
                    name: "zero target port defaulted",
                    input: svc(json!({"ports": [{"port": 80, "targetPort": 0}]})),
                    pointer: "/spec/ports/0/targetPort",
                    want: json!(80),
                },
                Case {
                    name: "node port external policy",
                    input: svc(json!({"type": "NodePort", "ports": [{"port": 80}]})),
                    pointer: "/spec/externalTrafficPolicy",
                    want: json!("Cluster"),
                },
                Case {
                    name: "cluster ip no external policy",
                    input: svc(json!({"ports": [{"port": 80}]})),
                    pointer: "/spec/externalTrafficPolicy",
                    want: Value::Null,
                },
                Case {
                    name: "external IPs make it external",
                    input: svc(json!({"externalIPs": ["10.0.0.1"], "ports": [{"port": 80}]})),
                    pointer: "/spec/externalTrafficPolicy",
                    want: json!("Cluster"),
                },
                Case {
                    name: "load balancer node ports",
                    input: svc(json!({"type": "LoadBalancer", "ports": [{"port": 80}]})),
                    pointer: "/spec/allocateLoadBalancerNodePorts",
                    want: json!(true),
                },
                Case {
                    name: "external name has no families",
                    input: svc(json!({"type": "ExternalName", "externalName": "example.com"})),
                    pointer: "/spec/ipFamilies",
                    want: Value::Null,
                },
                Case {
                    name: "headless selectorless",
                    input: svc(json!({"clusterIP": "None"})),
                    pointer: "/spec/ipFamilyPolicy",
                    want: json!("RequireDualStack"),
                },
                Case {
                    name: "cluster IPs follow cluster IP",
                    input: svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})),
                    pointer: "/spec/clusterIPs",
                    want: json!(["10.96.0.10"]),
                },
                Case {
                    name: "cluster IP follows cluster IPs",
                    input: svc(json!({"clusterIPs": ["10.96.0.10"], "ports": [{"port": 53}]})),
                    pointer: "/spec/clusterIP",
                    want: json!("10.96.0.10"),
                },
                Case {
                    name: "client IP affinity timeout",
                    input: svc(json!({"sessionAffinity": "ClientIP"})),
                    pointer: "/spec/sessionAffinityConfig/clientIP/timeoutSeconds",
                    want: json!(10800),
                },
                Case {
                    name: "None affinity drops config",
                    input: svc(
                        json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}),
                    ),
                    pointer: "/spec/sessionAffinityConfig",
                    want: Value::Null,
                },
                Case {
                    name: "user policy kept",
                    input: svc(json!({"type": "NodePort", "externalTrafficPolicy": "Local"})),
                    pointer: "/spec/externalTrafficPolicy",
                    want: json!("Local"),
                },
            ],
            service,
        );
    }

    #[test]
    fn service_update_keeps_allocations() {
        let old: Service = serde_json::from_value(json!({"spec": {
            "type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]
        }}))
        .expect("old");
        let mut new: Service = serde_json::from_value(json!({"spec": {
            "type": "NodePort",
            "ports": [{"name": "http", "port": 8080}, {"name": "https", "port": 443, "nodePort": 30080}]
        }}))
        .expect("new");
        service_update(&mut new, &old);
        let spec = new.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.5"));
        assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.5".to_owned()]));
        let ports = spec.ports.expect("ports");
        // 30080 is taken by the new https port, so http does not get it back.
        assert_eq!(ports[0].node_port, None);
        assert_eq!(ports[1].node_port, Some(30080));
    }

    #[test]
    fn cluster_object_defaults() {
        check_table::<Namespace>(
            vec![
                Case {
                    name: "name label",
                    input: json!({"metadata": {"name": "dev"}}),
                    pointer: "/metadata/labels",
                    want: json!({"kubernetes.io/metadata.name": "dev"}),
                },
                Case {
                    name: "name label overwritten",
                    input: json!({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "prod", "team": "a"}}}),
                    pointer: "/metadata/labels",
                    want: json!({"kubernetes.io/metadata.name": "dev", "team": "a"}),
                },
                Case {
                    name: "finalizer",
                    input: json!({"metadata": {"name": "dev"}}),
                    pointer: "/spec/finalizers",
                    want: json!(["kubernetes"]),
                },
                Case {
                    name: "finalizer appended",
                    input: json!({"metadata": {"name": "dev"}, "spec": {"finalizers": ["example.com/x"]}}),
                    pointer: "/spec/finalizers",
                    want: json!(["example.com/x", "kubernetes"]),
                },
                Case {
                    name: "terminating keeps finalizers",
                    input: json!({"metadata": {"name": "dev", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"finalizers": []}}),
                    pointer: "/spec/finalizers",
                    want: json!([]),
                },
                Case {
                    name: "phase",
                    input: json!({"metadata": {"name": "dev"}}),
                    pointer: "/status/phase",
                    want: json!("Active"),
                },
                Case {
                    name: "phase kept",
                    input: json!({"metadata": {"name": "dev"}, "status": {"phase": "Terminating"}}),
                    pointer: "/status/phase",
                    want: json!("Terminating"),
                },
            ],
            namespace,
        );
        check_table::<Node>(
            vec![
                Case {
                    name: "allocatable from capacity",
                    input: json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}}),
                    pointer: "/status/allocatable",
                    want: json!({"cpu": "4", "memory": "8Gi"}),
                },
                Case {
                    name: "allocatable kept",
                    input: json!({"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "3500m"}}}),
                    pointer: "/status/allocatable",
                    want: json!({"cpu": "3500m"}),
                },
            ],
            node,
        );
        check_table::<Endpoints>(
            vec![Case {
                name: "port protocol",
                input: json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
                pointer: "/subsets/0/ports/0/protocol",
                want: json!("TCP"),
            }],
            endpoints,
        );
        check_table::<Event>(
            vec![Case {
                name: "no type default",
                input: json!({"involvedObject": {"kind": "Pod", "name": "p"}}),
                pointer: "/type",
                want: Value::Null,
            }],
            event,
        );
        check_table::<ResourceQuota>(
            vec![Case {
                name: "canonical hard",
                input: json!({"spec": {"hard": {"requests.cpu": "0.5", "pods": "10"}}}),
                pointer: "/spec/hard",
                want: json!({"pods": "10", "requests.cpu": "500m"}),
            }],
            resource_quota,
        );
    }
}
