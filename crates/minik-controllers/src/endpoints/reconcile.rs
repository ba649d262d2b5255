//! What the Endpoints of a Service should be, as a pure function of the Service and the pods
//! of its namespace, and what to write to get there.
//!
//! As Kubernetes' endpoints controller: the pods the selector picks that have an IP, are not
//! being deleted and have not finished; ready ones as `addresses`, the others as
//! `notReadyAddresses` (all ready with `publishNotReadyAddresses`); each Service port's
//! `targetPort` resolved per pod, by number or by the name of a container port (a pod without
//! that name is left out of that port). The address is the pod's `status.podIP`. A pod with
//! an address of its own (the pod network) is reached there at the container port itself; under
//! minik's process runtime a pod shares its node's address and is reached on a host port: the
//! one its node recorded in `minik.io/host-ports`, else a declared `hostPort`, else the port
//! itself ([`host_port_of`]). Addresses with the same ports are grouped into one subset.

use std::collections::BTreeMap;

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};
use minik_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minik_api::podview::PodView;
use serde_json::{json, Value};

use crate::pods::is_ready;
use minik_api::hostports::host_port_of;

/// What to do with the Endpoints of one Service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Plan {
    Nothing,
    Create(Value),
    /// Replace the stored object; the body carries the resourceVersion it replaces.
    Update(Value),
    /// Delete the Endpoints whose uid this is.
    Delete(String),
}

/// Decides what to do for the Service at `name` in `namespace`: `service` is the Service if it
/// exists, `current` its Endpoints if they exist, `pods` the pods of the namespace.
pub(crate) fn plan(
    namespace: &str,
    name: &str,
    service: Option<&Service>,
    current: Option<&Endpoints>,
    pods: &[&PodView],
) -> Plan {
    let Some(service) = service else {
        // The Service went; its Endpoints go too.
        return match current {
            Some(ep) => Plan::Delete(ep.metadata.uid.clone().unwrap_or_default()),
            None => Plan::Nothing,
        };
    };
    // Without a selector the Endpoints are the user's to manage.
    let Some(selector) = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return Plan::Nothing;
    };
    let subsets = subsets(service, selector, pods);
    let labels = service.metadata.labels.clone().unwrap_or_default();
    let mut desired = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": subsets,
    });
    if !labels.is_empty() {
        desired["metadata"]["labels"] = json!(labels);
    }
    match current {
        None => Plan::Create(desired),
        Some(ep) => {
            let current_subsets =
                serde_json::to_value(ep.subsets.clone().unwrap_or_default()).unwrap_or(Value::Null);
            let current_labels = ep.metadata.labels.clone().unwrap_or_default();
            if current_subsets == desired["subsets"] && current_labels == labels {
                return Plan::Nothing;
            }
            let mut update = serde_json::to_value(ep).unwrap_or_else(|_| json!({}));
            update["subsets"] = desired["subsets"].clone();
            match desired["metadata"].get("labels") {
                Some(l) => update["metadata"]["labels"] = l.clone(),
                None => {
                    if let Some(m) = update["metadata"].as_object_mut() {
                        m.remove("labels");
                    }
                }
            }
            Plan::Update(update)
        }
    }
}

fn selects(selector: &BTreeMap<String, String>, pod: &PodView) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether a pod belongs in Endpoints at all: it has an IP, is not being deleted and has not
/// finished.
fn eligible(pod: &PodView) -> bool {
    let status = pod.status.as_ref();
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
    has_ip && pod.metadata.deletion_timestamp.is_none() && !matches!(phase, "Succeeded" | "Failed")
}

/// The container port a `targetPort` names in a pod: the number itself, or the port of the
/// container port with that name (and protocol).
fn container_port(pod: &PodView, target: &IntOrString, protocol: &str) -> Option<i32> {
    match target {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port),
    }
}

/// The subsets for a Service: one per distinct set of ports, addresses sorted.
fn subsets(
    service: &Service,
    selector: &BTreeMap<String, String>,
    pods: &[&PodView],
) -> Vec<Value> {
    let ns = service.metadata.namespace.as_deref().unwrap_or_default();
    let spec = service.spec.as_ref();
    let publish_not_ready = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let service_ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    // ports (as JSON) → (ready addresses, not-ready addresses), keyed by (ip, pod name).
    type Addresses = BTreeMap<(String, String), Value>;
    let mut groups: BTreeMap<String, (Value, Addresses, Addresses)> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref().unwrap_or_default() != ns
            || !selects(selector, pod)
            || !eligible(pod)
        {
            continue;
        }
        let mut ports = Vec::new();
        for sp in service_ports {
            let protocol = sp.protocol.as_deref().unwrap_or("TCP");
            let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
            let Some(port) = container_port(pod, &target, protocol) else {
                continue;
            };
            let mut p = json!({"port": host_port_of(pod, port), "protocol": protocol});
            if let Some(name) = sp.name.as_deref().filter(|n| !n.is_empty()) {
                p["name"] = json!(name);
            }
            ports.push(p);
        }
        if ports.is_empty() && !service_ports.is_empty() {
            continue;
        }
        ports.sort_by_key(|p| p["name"].as_str().unwrap_or_default().to_owned());
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut address = json!({
            "ip": ip,
            "targetRef": {
                "kind": "Pod",
                "namespace": ns,
                "name": name,
                "uid": pod.metadata.uid.clone().unwrap_or_default(),
            },
        });
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            address["nodeName"] = json!(node);
        }
        // A pod whose subdomain is this Service is named by it in DNS
        // (`hostname.subdomain.ns.svc.DOMAIN`), as upstream's controller records it.
        let pod_spec = pod.spec.as_ref();
        if let (Some(hostname), Some(subdomain)) = (
            pod_spec
                .and_then(|s| s.hostname.as_deref())
                .filter(|h| !h.is_empty()),
            pod_spec.and_then(|s| s.subdomain.as_deref()),
        ) {
            if Some(subdomain) == service.metadata.name.as_deref() {
                address["hostname"] = json!(hostname);
            }
        }
        let key = Value::Array(ports.clone()).to_string();
        let group = groups
            .entry(key)
            .or_insert_with(|| (Value::Array(ports), BTreeMap::new(), BTreeMap::new()));
        if publish_not_ready || is_ready(pod) {
            group.1.insert((ip, name), address);
        } else {
            group.2.insert((ip, name), address);
        }
    }
    groups
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready.into_values().collect::<Vec<_>>());
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready.into_values().collect::<Vec<_>>());
            }
            if ports.as_array().is_some_and(|p| !p.is_empty()) {
                subset["ports"] = ports;
            }
            subset
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::hostports::HOST_PORTS_ANNOTATION;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "spec": spec
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool, host_ports: Option<&str>) -> PodView {
        let mut annotations = json!({});
        if let Some(h) = host_ports {
            annotations[HOST_PORTS_ANNOTATION] = json!(h);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}, "annotations": annotations},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.2",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn ips_and_ports(plan: &Plan) -> Value {
        let body = match plan {
            Plan::Create(b) | Plan::Update(b) => b,
            other => panic!("expected a write, got {other:?}"),
        };
        let subsets = body["subsets"].as_array().unwrap();
        json!(subsets
            .iter()
            .map(|s| {
                let names = |key: &str| {
                    s[key]
                        .as_array()
                        .map(|a| a.iter().map(|x| x["targetRef"]["name"].clone()).collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                json!({
                    "ready": names("addresses"),
                    "notReady": names("notReadyAddresses"),
                    "ports": s["ports"].as_array().unwrap().iter().map(|p| json!([p["name"], p["port"]])).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>())
    }

    #[test]
    fn ready_and_not_ready_pods_with_their_host_ports() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
        ]}));
        let a = pod("a", true, Some(r#"{"8080":31000,"9090":31001}"#));
        let b = pod("b", false, Some(r#"{"8080":31002,"9090":31003}"#));
        let mut gone = pod("gone", true, None);
        gone.metadata.deletion_timestamp = a
            .metadata
            .creation_timestamp
            .clone()
            .or_else(|| serde_json::from_value(json!("2024-01-01T00:00:00Z")).ok());
        let mut other: PodView = pod("other", true, None);
        other.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
        let mut no_ip = pod("no-ip", true, None);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let plan = plan(
            "default",
            "web",
            Some(&svc),
            None,
            &[&a, &b, &gone, &other, &no_ip],
        );
        assert_eq!(
            ips_and_ports(&plan),
            json!([
                {"ready": ["a"], "notReady": [], "ports": [["metrics", 31001], ["web", 31000]]},
                {"ready": [], "notReady": ["b"], "ports": [["metrics", 31003], ["web", 31002]]},
            ])
        );
        let Plan::Create(body) = &plan else {
            unreachable!()
        };
        assert_eq!(body["metadata"]["labels"], json!({"team": "a"}));
        let address = &body["subsets"][0]["addresses"][0];
        assert_eq!(address["ip"], "127.0.0.2");
        assert_eq!(address["nodeName"], "n1");
        assert_eq!(address["targetRef"]["uid"], "uid-a");
    }

    #[test]
    fn a_pod_whose_subdomain_is_the_service_is_named_by_its_hostname() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None",
                                 "ports": [{"name": "web", "port": 8080}]}));
        let named = |name: &str, subdomain: &str| {
            let mut p = pod(name, true, None);
            let spec = p.spec.as_mut().unwrap();
            spec.hostname = Some(name.to_owned());
            spec.subdomain = Some(subdomain.to_owned());
            p.status.as_mut().unwrap().pod_ip = Some(format!("10.244.0.{}", name.len()));
            p
        };
        let (a, b) = (named("web-0", "web"), named("other-1", "elsewhere"));
        let plan = plan("default", "web", Some(&svc), None, &[&a, &b]);
        let Plan::Create(body) = &plan else {
            panic!("{plan:?}")
        };
        let addresses = body["subsets"][0]["addresses"].as_array().unwrap();
        let hostnames: Vec<(&str, &Value)> = addresses
            .iter()
            .map(|a| (a["targetRef"]["name"].as_str().unwrap(), &a["hostname"]))
            .collect();
        assert_eq!(
            hostnames,
            [("web-0", &json!("web-0")), ("other-1", &Value::Null)]
        );
    }

    #[test]
    fn pods_with_addresses_of_their_own_are_reached_at_their_ip_and_container_port() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
        ]}));
        // A recorded binding (left from a run on the host network) does not count once the
        // pod has an address of its own.
        let mut a = pod("a", true, Some(r#"{"8080":31000,"9090":31001}"#));
        let status = a.status.as_mut().unwrap();
        status.pod_ip = Some("10.244.1.5".into());
        status.host_ip = Some("10.0.0.1".into());
        // The process runtime's pod: the node's address, and its host ports.
        let mut b = pod("b", true, Some(r#"{"8080":31002,"9090":31003}"#));
        let status = b.status.as_mut().unwrap();
        status.pod_ip = Some("10.0.0.1".into());
        status.host_ip = Some("10.0.0.1".into());
        let plan = plan("default", "web", Some(&svc), None, &[&a, &b]);
        assert_eq!(
            ips_and_ports(&plan),
            json!([
                {"ready": ["b"], "notReady": [], "ports": [["metrics", 31003], ["web", 31002]]},
                {"ready": ["a"], "notReady": [], "ports": [["metrics", 9090], ["web", 8080]]},
            ])
        );
        let Plan::Create(body) = &plan else {
            unreachable!()
        };
        assert_eq!(body["subsets"][1]["addresses"][0]["ip"], "10.244.1.5");
        assert_eq!(body["subsets"][1]["addresses"][0]["nodeName"], "n1");
        assert_eq!(body["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
    }

    #[test]
    fn unknown_port_names_and_unrecorded_ports() {
        // A name no container port has leaves the pod out; without a recorded host port the
        // container port itself is used.
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"port": 80, "targetPort": "grpc", "protocol": "TCP"}
        ]}));
        let a = pod("a", true, None);
        assert_eq!(
            plan("default", "web", Some(&svc), None, &[&a]),
            Plan::Create(json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
                "subsets": [],
            }))
        );
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        );
        assert_eq!(
            ips_and_ports(&plan("default", "web", Some(&svc), None, &[&a])),
            json!([{"ready": ["a"], "notReady": [], "ports": [[null, 8080]]}])
        );
    }

    #[test]
    fn up_to_date_endpoints_are_left_alone_and_stale_ones_replaced() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        );
        let a = pod("a", true, Some(r#"{"8080":31000}"#));
        let Plan::Create(body) = plan("default", "web", Some(&svc), None, &[&a]) else {
            panic!("a create")
        };
        let mut stored: Endpoints = serde_json::from_value(body).unwrap();
        stored.metadata.resource_version = Some("7".into());
        stored.metadata.uid = Some("ep-uid".into());
        assert_eq!(
            plan("default", "web", Some(&svc), Some(&stored), &[&a]),
            Plan::Nothing
        );
        let b = pod("b", false, Some(r#"{"8080":31002}"#));
        let Plan::Update(update) = plan("default", "web", Some(&svc), Some(&stored), &[&a, &b])
        else {
            panic!("an update")
        };
        assert_eq!(update["metadata"]["resourceVersion"], "7");
        assert_eq!(update["subsets"].as_array().unwrap().len(), 2);

        // publishNotReadyAddresses makes every pod an address.
        let publish = service(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        );
        let out = ips_and_ports(&plan("default", "web", Some(&publish), None, &[&b]));
        assert_eq!(out[0]["ready"], json!(["b"]));
    }

    #[test]
    fn selectorless_services_are_left_alone_and_deleted_services_lose_their_endpoints() {
        let manual = service(json!({"ports": [{"port": 80, "protocol": "TCP"}]}));
        let stored: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "ep-uid"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]
        }))
        .unwrap();
        let a = pod("a", true, None);
        assert_eq!(
            plan("default", "web", Some(&manual), Some(&stored), &[&a]),
            Plan::Nothing
        );
        assert_eq!(
            plan("default", "web", Some(&manual), None, &[&a]),
            Plan::Nothing
        );
        assert_eq!(
            plan("default", "web", None, Some(&stored), &[&a]),
            Plan::Delete("ep-uid".into())
        );
        assert_eq!(plan("default", "web", None, None, &[&a]), Plan::Nothing);
    }
}
