//! From a pod's container to what the runtime runs: the program (command, or the image's
//! name), arguments and environment with Kubernetes' `$(VAR)` expansion, the downward API
//! (`fieldRef`), minik's own variables (`POD_NAME`, `PORT`, ...) and Kubernetes' service
//! variables (`{SVC}_SERVICE_HOST`, ...); and the `minik.io/host-ports` annotation that tells
//! the cluster which host port each declared container port got. Pure functions.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{Container, Pod, Service};

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

/// The value of a `fieldRef` path, as Kubernetes' downward API gives it.
fn field_ref(pod: &Pod, placement: &Placement, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let quoted_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => placement.node_name.clone(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => placement.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => placement.host_ip.clone(),
        "metadata.labels" => render_map(meta.labels.as_ref()),
        "metadata.annotations" => render_map(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = quoted_key("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = quoted_key("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef path {path:?}"));
            }
        }
    };
    Ok(value)
}

/// `key="value"` lines, as the downward API renders a whole map.
fn render_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
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

/// The environment of a container: the service variables, then minik's variables, then the
/// container's `env` in order, each value expanded against the ones before it, as Kubernetes
/// does (a container's own `env` wins over both).
pub fn environment(
    pod: &Pod,
    container: &Container,
    placement: &Placement,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, name: String, value: String| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
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
    if links {
        for (name, value) in &placement.services {
            set(&mut vars, name.clone(), value.clone());
        }
    }
    set(
        &mut vars,
        "POD_NAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    set(
        &mut vars,
        "POD_NAMESPACE".into(),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
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
    for env in container.env.iter().flatten() {
        let value = match (&env.value, &env.value_from) {
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_ref(pod, placement, &field.field_path)?
                } else if from.config_map_key_ref.is_some() {
                    return Err(format!(
                        "env {}: ConfigMaps are not served by minik",
                        env.name
                    ));
                } else if from.secret_key_ref.is_some() {
                    return Err(format!("env {}: Secrets are not served by minik", env.name));
                } else {
                    return Err(format!(
                        "env {}: resourceFieldRef is not supported by minik",
                        env.name
                    ));
                }
            }
            (Some(value), None) => expand(value, &vars),
            (None, None) => String::new(),
        };
        set(&mut vars, env.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let value = vars.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect())
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
        let env = environment(&pod, container, &placement).unwrap();
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
        let env = environment(&pod, &container, &placement).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "HOSTNAME");
        assert_eq!(env[1].0, "WEB_FRONT_SERVICE_HOST");
        assert_eq!(get("URL"), Some("http://127.96.0.7"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("8080"));
        // enableServiceLinks: false leaves them out.
        pod.spec.as_mut().unwrap().enable_service_links = Some(false);
        let env = environment(&pod, &container, &placement).unwrap();
        assert!(env.iter().all(|(n, _)| n != "WEB_FRONT_SERVICE_HOST"));
    }

    #[test]
    fn host_ports_are_recorded_and_read_back() {
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
        assert_eq!(host_port_of(&pod, 8000), 31000);
        assert_eq!(host_port_of(&pod, 9090), 31001);
        // Not recorded: a declared hostPort, else the port itself.
        assert_eq!(host_port_of(&pod, 7000), 7000);
        pod.metadata.annotations = None;
        pod.spec.as_mut().unwrap().containers[0].ports = Some(vec![serde_json::from_value(
            json!({"containerPort": 8000, "hostPort": 8443}),
        )
        .unwrap()]);
        assert_eq!(host_port_of(&pod, 8000), 8443);
    }

    #[test]
    fn unsupported_sources_are_errors() {
        let mut pod = pod();
        let container = &mut pod.spec.as_mut().unwrap().containers[0];
        container.env = Some(vec![serde_json::from_value(
            json!({"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        )
        .unwrap()]);
        let container = container.clone();
        let err = environment(&pod, &container, &Placement::default()).unwrap_err();
        assert_eq!(err, "env S: Secrets are not served by minik");
    }
}
