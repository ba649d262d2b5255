//! From a pod's container to what the runtime runs: the program (command, or the image's
//! name), arguments and environment with Kubernetes' `$(VAR)` expansion, `envFrom` and
//! `valueFrom` (ConfigMaps, Secrets, the downward API's `fieldRef` and `resourceFieldRef`),
//! minik's own variables (`POD_NAME`, `PORT`, ...) and Kubernetes' service variables
//! (`{SVC}_SERVICE_HOST`, ...); the ConfigMaps and Secrets a pod refers to ([`referenced`]);
//! and the `minik.io/host-ports` annotation that tells the cluster which host port each
//! declared container port got. Pure functions.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvFromSource, EnvVar, EphemeralContainer, Pod, Secret, Service,
};
use minik_api::quantity::Quantity;

use crate::downward;

/// The executable the process runtime runs for an image with no command: the repository's
/// last path element, without tag or digest (`docker.io/library/nginx:1.16` → `nginx`).
pub fn image_program(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    (!name.is_empty()).then(|| name.to_owned())
}

/// Expands `$(VAR)` references as Kubernetes does: defined variables are replaced, `$$` is a
/// literal `$`, and references to undefined variables are left as they are.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A declared container port and the host port it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBinding {
    pub name: Option<String>,
    pub container_port: i32,
    pub host_port: u16,
}

/// What the agent knows about where a pod runs, for the downward API and minik's variables.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// Host ports given to this container's declared ports.
    pub ports: Vec<PortBinding>,
    /// The service variables of the pod's namespace ([`service_variables`]), when the pod
    /// enables service links.
    pub services: Vec<(String, String)>,
}

pub use minik_api::hostports::{host_port_of, HOST_PORTS_ANNOTATION};

/// The value of [`HOST_PORTS_ANNOTATION`] for a pod's port bindings, `None` when it declares no
/// port. The first binding of a container port wins, as a host network has one socket per port.
pub fn host_ports_annotation(ports: &[Vec<PortBinding>]) -> Option<String> {
    let mut map: BTreeMap<i32, u16> = BTreeMap::new();
    for binding in ports.iter().flatten().filter(|b| b.host_port != 0) {
        map.entry(binding.container_port)
            .or_insert(binding.host_port);
    }
    if map.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = map
        .into_iter()
        .map(|(container, host)| (container.to_string(), serde_json::json!(host)))
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}

/// The name part of service variables: upper case, `-` as `_` (`my-svc` → `MY_SVC`).
fn service_var_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Kubernetes' service variables for the given Services (those of the pod's namespace): for
/// each one with a cluster IP, `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT` (first port),
/// `{SVC}_SERVICE_PORT_{NAME}` per named port, and the Docker-link style `{SVC}_PORT`,
/// `{SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`. Headless and ExternalName services have none.
pub fn service_variables(services: &[&Service]) -> Vec<(String, String)> {
    let mut sorted: Vec<&&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut vars = Vec::new();
    for service in sorted {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = service_var_name(service.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        vars.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
        if let Some(first) = ports.first() {
            vars.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                vars.push((
                    format!("{name}_SERVICE_PORT_{}", service_var_name(port_name)),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{ip}:{}", protocol.to_ascii_lowercase(), p.port);
            let prefix = format!("{name}_PORT_{}_{}", p.port, protocol.to_ascii_uppercase());
            if i == 0 {
                vars.push((format!("{name}_PORT"), url.clone()));
            }
            vars.push((prefix.clone(), url));
            vars.push((format!("{prefix}_PROTO"), protocol.to_ascii_lowercase()));
            vars.push((format!("{prefix}_PORT"), p.port.to_string()));
            vars.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    }
    vars
}

/// The environment variable name minik gives a named port: `PORT_HTTP_ALT` for `http-alt`.
fn port_var(name: &str) -> String {
    format!(
        "PORT_{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            })
            .collect::<String>()
    )
}

/// What the agent fetched for a pod: its ConfigMaps and Secrets by name (in the pod's
/// namespace) and the node's allocatable resources. A `None` value means the agent looked and
/// the object does not exist; a name that is not in the map was not fetched and counts as not
/// found too.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// The node's `status.allocatable`, which stands in for unset CPU, memory and
    /// ephemeral-storage limits in `resourceFieldRef` ([`crate::downward::allocatable`]
    /// converts the Node's own map).
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The PersistentVolume each PersistentVolumeClaim the pod uses is bound to, by claim
    /// name, or why there is none (in the kubelet's words: `persistentvolumeclaim "x" not
    /// found`, `PVC default/x is not bound`).
    pub claims:
        BTreeMap<String, Result<minik_api::k8s_openapi::api::core::v1::PersistentVolume, String>>,
    /// The service account tokens of the pod's projected `serviceAccountToken` sources, by
    /// audience and lifetime, or why there is none.
    pub tokens: BTreeMap<crate::tokens::TokenKey, Result<String, String>>,
}

impl Sources {
    /// The ConfigMap `name`, if it was fetched and exists.
    pub fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name).and_then(Option::as_ref)
    }

    /// The Secret `name`, if it was fetched and exists.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name).and_then(Option::as_ref)
    }
}

/// The kubelet's text for an object that does not exist: `configmap "NAME" not found`,
/// `secret "NAME" not found` (`kind` is `configmap` or `secret`).
pub fn not_found(kind: &str, name: &str) -> String {
    format!("{kind} {} not found", downward::go_quote(name))
}

/// A Secret's values as text, as a container's environment gets them. Kubernetes uses the
/// bytes as they are; a Rust string cannot hold bytes that are not UTF-8, so those become
/// U+FFFD. `stringData` entries, which the API server folds into `data` when the Secret is
/// written, win over `data` here too, should a Secret reach the node unfolded.
pub fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        values.insert(k.clone(), v.clone());
    }
    values
}

/// One value of a Secret as text, as [`secret_strings`] gives it.
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&bytes.0).into_owned())
}

/// A Secret's values as bytes (`data`, with `stringData` folded in as the API server does).
pub fn secret_bytes(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut values: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        values.insert(k.clone(), v.clone().into_bytes());
    }
    values
}

/// Whether a name can be an environment variable, by the rule Kubernetes applies since it
/// relaxed env var names (on by default from 1.32): printable ASCII other than `=`. Since that
/// change the kubelet no longer filters `envFrom` keys (the API's ConfigMap and Secret key
/// rule and the relaxed `prefix` rule already guarantee such names); minik still skips keys
/// that break the rule, which only an object the API should have refused can have, because
/// `=` or a control character cannot be in a process's environment name.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// A container's environment and what building it skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// The variables, in order.
    pub vars: Vec<(String, String)>,
    /// One message per `envFrom` source with keys that cannot be variable names, in
    /// Kubernetes' words: the message of an `InvalidEnvironmentVariableNames` warning event
    /// (`Keys [a, b] from the EnvFrom configMap default/x were skipped since they are
    /// considered invalid environment variable names.`).
    pub skipped: Vec<String>,
}

/// The environment of a container: `HOSTNAME`, the service variables, minik's variables,
/// then the container's `envFrom` sources in order (keys with their `prefix`), then its `env`
/// in order, each literal value expanded against the variables before it, as Kubernetes does
/// (`env` wins over `envFrom`, and both over the rest). Errors are the kubelet's texts, which
/// make the container wait with reason `CreateContainerConfigError`: `configmap "NAME" not
/// found`, `couldn't find key KEY in ConfigMap NS/NAME`, `secret "NAME" not found`,
/// `couldn't find key KEY in Secret NS/NAME`, and the downward API's. An `optional` source or
/// key that is missing is left out.
pub fn environment(
    pod: &Pod,
    container: &Container,
    placement: &Placement,
    sources: &Sources,
) -> Result<Environment, String> {
    build_environment(
        pod,
        ContainerEnv {
            own: container,
            env: container.env.as_deref().unwrap_or_default(),
            env_from: container.env_from.as_deref().unwrap_or_default(),
        },
        placement,
        sources,
    )
}

/// What of a container the environment is built from; `own` answers `resourceFieldRef`s
/// without a container name.
struct ContainerEnv<'a> {
    own: &'a Container,
    env: &'a [EnvVar],
    env_from: &'a [EnvFromSource],
}

fn build_environment(
    pod: &Pod,
    container: ContainerEnv<'_>,
    placement: &Placement,
    sources: &Sources,
) -> Result<Environment, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, name: String, value: String| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    // What every container on Kubernetes sees: its pod's hostname.
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    set(&mut vars, "HOSTNAME".into(), hostname);
    // Without service links only the `kubernetes` Service's variables (the API server's
    // address), as the kubelet does.
    for (name, value) in &placement.services {
        if links || name.starts_with("KUBERNETES_") {
            set(&mut vars, name.clone(), value.clone());
        }
    }
    set(
        &mut vars,
        "POD_NAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    set(&mut vars, "POD_NAMESPACE".into(), namespace.to_owned());
    set(&mut vars, "POD_IP".into(), placement.pod_ip.clone());
    set(&mut vars, "NODE_NAME".into(), placement.node_name.clone());
    for (i, port) in placement.ports.iter().enumerate() {
        let host_port = port.host_port.to_string();
        if i == 0 {
            set(&mut vars, "PORT".into(), host_port.clone());
        }
        if let Some(name) = &port.name {
            set(&mut vars, port_var(name), host_port.clone());
        }
        set(
            &mut vars,
            format!("PORT_{}", port.container_port),
            host_port,
        );
    }
    for from in container.env_from {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (kind, name, values) = if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name) {
                Some(cm) => ("configMap", &r.name, cm.data.clone().unwrap_or_default()),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("configmap", &r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name) {
                Some(secret) => ("secret", &r.name, secret_strings(secret)),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("secret", &r.name)),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in values {
            let var = format!("{prefix}{key}");
            if is_env_var_name(&var) {
                set(&mut vars, var, value);
            } else {
                invalid.push(var);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            skipped.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they \
                 are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for env in container.env {
        let value = match (
            env.value.as_deref().filter(|v| !v.is_empty()),
            &env.value_from,
        ) {
            (Some(value), _) => expand(value, &vars),
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    downward::field_ref(pod, placement, field)?
                } else if let Some(selector) = &from.resource_field_ref {
                    let named = selector.container_name.as_deref().unwrap_or_default();
                    if named.is_empty() {
                        downward::container_resource(
                            container.own,
                            selector,
                            &sources.node_allocatable,
                        )?
                    } else {
                        downward::resource_field_ref(
                            pod,
                            named,
                            selector,
                            &sources.node_allocatable,
                        )?
                    }
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(cm) = sources.config_map(&r.name) else {
                        if optional {
                            continue;
                        }
                        return Err(not_found("configmap", &r.name));
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(value) => value.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(secret) = sources.secret(&r.name) else {
                        if optional {
                            continue;
                        }
                        return Err(not_found("secret", &r.name));
                    };
                    match secret_value(secret, &r.key) {
                        Some(value) => value,
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut vars, env.name.clone(), value);
    }
    let vars = order
        .into_iter()
        .map(|name| {
            let value = vars.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect();
    Ok(Environment { vars, skipped })
}

/// The environment of an ephemeral container (`kubectl debug`), built as [`environment`]'s;
/// such a container has no resources of its own, so its limits are the node's allocatable.
pub fn ephemeral_environment(
    pod: &Pod,
    container: &EphemeralContainer,
    placement: &Placement,
    sources: &Sources,
) -> Result<Environment, String> {
    let own = Container {
        name: container.name.clone(),
        ..Container::default()
    };
    build_environment(
        pod,
        ContainerEnv {
            own: &own,
            env: container.env.as_deref().unwrap_or_default(),
            env_from: container.env_from.as_deref().unwrap_or_default(),
        },
        placement,
        sources,
    )
}

/// The program and arguments of a container: `command` + `args`, expanded against its
/// environment; without a command, the image names the program.
pub fn command_line(
    container: &Container,
    env: &[(String, String)],
) -> Result<(String, Vec<String>), String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &vars))
        .collect();
    let args = container.args.iter().flatten().map(|a| expand(a, &vars));
    match command.split_first() {
        Some((program, rest)) => Ok((program.clone(), rest.iter().cloned().chain(args).collect())),
        None => {
            let program = container
                .image
                .as_deref()
                .and_then(image_program)
                .ok_or_else(|| "the container has neither a command nor an image".to_owned())?;
            Ok((program, args.collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_name_programs() {
        for (image, program) in [
            ("busybox:1.36", "busybox"),
            ("docker.io/library/nginx:1.16", "nginx"),
            ("localhost:5000/team/app:1", "app"),
            ("redis@sha256:abcd", "redis"),
            ("python", "python"),
        ] {
            assert_eq!(image_program(image).as_deref(), Some(program), "{image}");
        }
        assert_eq!(image_program(""), None);
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars: BTreeMap<String, String> = [
            ("A".to_string(), "1".to_string()),
            ("B".into(), "two".into()),
        ]
        .into();
        for (input, expected) in [
            ("$(A)", "1"),
            ("x$(A)y$(B)z", "x1ytwoz"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("$(A", "$(A"),
            ("cost: $5", "cost: $5"),
            ("$", "$"),
            ("$$", "$"),
        ] {
            assert_eq!(expand(input, &vars), expected, "{input}");
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "c", "image": "python:3",
                "command": ["python3", "-m", "http.server", "$(PORT)"],
                "args": ["--bind", "$(POD_IP)"],
                "env": [
                    {"name": "GREETING", "value": "hi $(POD_NAME)"},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "LATER", "value": "$(GREETING)!"}
                ],
                "ports": [{"name": "http", "containerPort": 8000}]
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn environment_and_command_line() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let placement = Placement {
            node_name: "n1".into(),
            host_ip: "127.0.0.1".into(),
            pod_ip: "127.0.0.1".into(),
            ports: vec![PortBinding {
                name: Some("http".into()),
                container_port: 8000,
                host_port: 31000,
            }],
            services: vec![],
        };
        let env = environment(&pod, container, &placement, &Sources::default())
            .unwrap()
            .vars;
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_NAME"), Some("web-1"));
        assert_eq!(get("POD_NAMESPACE"), Some("shop"));
        assert_eq!(get("PORT"), Some("31000"));
        assert_eq!(get("PORT_HTTP"), Some("31000"));
        assert_eq!(get("PORT_8000"), Some("31000"));
        assert_eq!(get("GREETING"), Some("hi web-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("LATER"), Some("hi web-1!"));
        let (program, args) = command_line(container, &env).unwrap();
        assert_eq!(program, "python3");
        assert_eq!(args, ["-m", "http.server", "31000", "--bind", "127.0.0.1"]);
    }

    fn svc(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn service_variables_follow_kubernetes() {
        let web = svc(json!({"metadata": {"name": "web-front"}, "spec": {
            "clusterIP": "127.96.0.7",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]
        }}));
        let headless = svc(
            json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
        );
        let vars = service_variables(&[&headless, &web]);
        let expected: Vec<(String, String)> = [
            ("WEB_FRONT_SERVICE_HOST", "127.96.0.7"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_SERVICE_PORT_DNS_UDP", "53"),
            ("WEB_FRONT_PORT", "tcp://127.96.0.7:80"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://127.96.0.7:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "127.96.0.7"),
            ("WEB_FRONT_PORT_53_UDP", "udp://127.96.0.7:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_53_UDP_PORT", "53"),
            ("WEB_FRONT_PORT_53_UDP_ADDR", "127.96.0.7"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected);

        // In the environment, before the container's own env, which may use and override them.
        let mut pod = pod();
        let container = &mut pod.spec.as_mut().unwrap().containers[0];
        container.env = Some(vec![
            serde_json::from_value(
                json!({"name": "URL", "value": "http://$(WEB_FRONT_SERVICE_HOST)"}),
            )
            .unwrap(),
            serde_json::from_value(json!({"name": "WEB_FRONT_SERVICE_PORT", "value": "8080"}))
                .unwrap(),
        ]);
        let container = container.clone();
        let placement = Placement {
            services: vars,
            ..Placement::default()
        };
        let env = environment(&pod, &container, &placement, &Sources::default())
            .unwrap()
            .vars;
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "HOSTNAME");
        assert_eq!(env[1].0, "WEB_FRONT_SERVICE_HOST");
        assert_eq!(get("URL"), Some("http://127.96.0.7"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("8080"));
        // enableServiceLinks: false leaves them out, but for the API server's.
        pod.spec.as_mut().unwrap().enable_service_links = Some(false);
        let mut placement = placement;
        placement
            .services
            .push(("KUBERNETES_SERVICE_HOST".into(), "127.96.0.1".into()));
        let env = environment(&pod, &container, &placement, &Sources::default())
            .unwrap()
            .vars;
        assert!(env.iter().all(|(n, _)| n != "WEB_FRONT_SERVICE_HOST"));
        assert!(env
            .iter()
            .any(|(n, v)| n == "KUBERNETES_SERVICE_HOST" && v == "127.96.0.1"));
    }

    #[test]
    fn host_ports_are_recorded_and_read_back() {
        // The agent's pods are whole; the shared helper reads the server's cached view.
        let port_of = |pod: &Pod, port| host_port_of(&minik_api::podview::PodView::from(pod), port);
        let bindings = vec![
            vec![
                PortBinding {
                    name: Some("http".into()),
                    container_port: 8000,
                    host_port: 31000,
                },
                PortBinding {
                    name: None,
                    container_port: 9090,
                    host_port: 31001,
                },
            ],
            vec![PortBinding {
                name: None,
                container_port: 8000,
                host_port: 31002,
            }],
        ];
        let value = host_ports_annotation(&bindings).unwrap();
        assert_eq!(value, r#"{"8000":31000,"9090":31001}"#);
        assert_eq!(host_ports_annotation(&[vec![]]), None);
        let mut pod = pod();
        pod.metadata.annotations = Some([(HOST_PORTS_ANNOTATION.to_owned(), value)].into());
        assert_eq!(port_of(&pod, 8000), 31000);
        assert_eq!(port_of(&pod, 9090), 31001);
        // Not recorded: a declared hostPort, else the port itself.
        assert_eq!(port_of(&pod, 7000), 7000);
        pod.metadata.annotations = None;
        pod.spec.as_mut().unwrap().containers[0].ports = Some(vec![serde_json::from_value(
            json!({"containerPort": 8000, "hostPort": 8443}),
        )
        .unwrap()]);
        assert_eq!(port_of(&pod, 8000), 8443);
    }

    fn sources() -> Sources {
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"MODE": "fast", "1st": "x", "db.url": "postgres://db", "log level": "debug"},
            "binaryData": {"BLOB": "AP8="}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "shop"},
            // "hunter2", and the bytes 61 ff 62 (not UTF-8).
            "data": {"PASSWORD": "aHVudGVyMg==", "RAW": "Yf9i", "bad=key": "eA=="}
        }))
        .unwrap();
        Sources {
            config_maps: [
                ("settings".to_owned(), Some(config_map)),
                ("gone".to_owned(), None),
            ]
            .into(),
            secrets: [("creds".to_owned(), Some(secret))].into(),
            claims: BTreeMap::new(),
            tokens: BTreeMap::new(),
            node_allocatable: [
                ("cpu".to_owned(), Quantity::parse("4").unwrap()),
                ("memory".to_owned(), Quantity::parse("8Gi").unwrap()),
            ]
            .into(),
        }
    }

    fn env_of(container: serde_json::Value, sources: &Sources) -> Result<Environment, String> {
        let mut pod = pod();
        let mut container: Container = serde_json::from_value(container).unwrap();
        container.name = "c".into();
        pod.spec.as_mut().unwrap().containers = vec![container.clone()];
        environment(&pod, &container, &Placement::default(), sources)
    }

    fn var<'a>(env: &'a Environment, name: &str) -> Option<&'a str> {
        env.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_from_comes_before_env_with_prefixes() {
        let env = env_of(
            json!({
                "envFrom": [
                    {"configMapRef": {"name": "settings"}},
                    {"prefix": "S_", "secretRef": {"name": "creds"}},
                    {"configMapRef": {"name": "gone", "optional": true}},
                    {"secretRef": {"name": "never-fetched", "optional": true}}
                ],
                "env": [
                    {"name": "MODE", "value": "slow"},
                    {"name": "URL", "value": "$(db.url)/$(S_PASSWORD)"}
                ]
            }),
            &sources(),
        )
        .unwrap();
        assert_eq!(var(&env, "MODE"), Some("slow"));
        assert_eq!(var(&env, "1st"), Some("x"));
        assert_eq!(var(&env, "log level"), Some("debug"));
        assert_eq!(var(&env, "db.url"), Some("postgres://db"));
        // envFrom takes data only, not binaryData.
        assert_eq!(var(&env, "BLOB"), None);
        assert_eq!(var(&env, "S_PASSWORD"), Some("hunter2"));
        assert_eq!(var(&env, "S_RAW"), Some("a\u{fffd}b"));
        assert_eq!(var(&env, "URL"), Some("postgres://db/hunter2"));
        assert_eq!(
            env.skipped,
            [
                "Keys [S_bad=key] from the EnvFrom secret shop/creds were skipped since they are \
              considered invalid environment variable names."
            ]
        );
        // The order: minik's variables, then envFrom's (each source's keys sorted), then env.
        let names: Vec<&str> = env.vars.iter().map(|(n, _)| n.as_str()).collect();
        let first = names.iter().position(|n| *n == "1st").unwrap();
        assert_eq!(names[first - 1], "NODE_NAME");
        assert_eq!(names.last(), Some(&"URL"));
    }

    #[test]
    fn invalid_names_are_skipped_and_reported() {
        let mut sources = sources();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "odd"},
            "data": {"b=1": "x", "a\u{1}": "y", "OK": "z"}
        }))
        .unwrap();
        sources.config_maps.insert("odd".into(), Some(cm));
        let env = env_of(
            json!({"envFrom": [{"configMapRef": {"name": "odd"}}]}),
            &sources,
        )
        .unwrap();
        assert_eq!(var(&env, "OK"), Some("z"));
        assert_eq!(
            env.skipped,
            ["Keys [a\u{1}, b=1] from the EnvFrom configMap shop/odd were skipped since they are \
              considered invalid environment variable names."]
        );
        for (name, valid) in [
            ("PATH", true),
            ("my.env-name", true),
            ("1abc", true),
            ("a b", true),
            ("", false),
            ("a=b", false),
            ("caf\u{e9}", false),
            ("tab\t", false),
        ] {
            assert_eq!(is_env_var_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn missing_sources_are_kubernetes_errors() {
        let cases = [
            (
                json!({"envFrom": [{"configMapRef": {"name": "gone"}}]}),
                "configmap \"gone\" not found",
            ),
            (
                json!({"envFrom": [{"secretRef": {"name": "never-fetched"}}]}),
                "secret \"never-fetched\" not found",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}),
                "configmap \"gone\" not found",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}),
                "couldn't find key k in ConfigMap shop/settings",
            ),
            (
                // binaryData is not looked at for env.
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "BLOB"}}}]}),
                "couldn't find key BLOB in ConfigMap shop/settings",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}),
                "secret \"nope\" not found",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}),
                "couldn't find key k in Secret shop/creds",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]}),
                "field label not supported: spec.containers",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}),
                "unsupported container resource : limits.gpu",
            ),
        ];
        for (container, error) in cases {
            assert_eq!(
                env_of(container.clone(), &sources()),
                Err(error.to_owned()),
                "{container}"
            );
        }
    }

    #[test]
    fn optional_refs_leave_the_variable_out() {
        let env = env_of(
            json!({"env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": true}}},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": true}}},
                {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE", "optional": true}}},
                {"name": "F", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                {"name": "G"}
            ]}),
            &sources(),
        )
        .unwrap();
        for name in ["A", "B", "C", "D"] {
            assert_eq!(var(&env, name), None, "{name}");
        }
        assert_eq!(var(&env, "E"), Some("fast"));
        assert_eq!(var(&env, "F"), Some("hunter2"));
        assert_eq!(var(&env, "G"), Some(""));
        assert!(env.skipped.is_empty());
    }

    #[test]
    fn resource_field_refs_in_env() {
        let container = json!({
            "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "100Mi"}},
            "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                {"name": "NAMED", "valueFrom": {"resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "OTHER", "valueFrom": {"resourceFieldRef": {"containerName": "x", "resource": "limits.cpu"}}}
            ]
        });
        assert_eq!(
            env_of(container.clone(), &sources()),
            Err("container x not found".to_owned())
        );
        let mut container = container;
        container["env"].as_array_mut().unwrap().pop();
        let env = env_of(container, &sources()).unwrap();
        assert_eq!(var(&env, "CPU"), Some("1"));
        assert_eq!(var(&env, "CPU_M"), Some("500"));
        assert_eq!(var(&env, "MEM"), Some("8192"));
        assert_eq!(var(&env, "REQ"), Some("100"));
        assert_eq!(var(&env, "NAMED"), Some("500"));
    }

    #[test]
    fn ephemeral_containers_have_no_resources() {
        let pod = pod();
        let debug: EphemeralContainer = serde_json::from_value(json!({
            "name": "debug",
            "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}}]
        }))
        .unwrap();
        let env = ephemeral_environment(&pod, &debug, &Placement::default(), &sources()).unwrap();
        assert_eq!(var(&env, "MEM"), Some("8"));
    }
}
