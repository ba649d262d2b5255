//! Where a pod's container port is reached. The process runtime shares the host network, so a
//! declared container port gets a free host port; the node agent records the bindings in the
//! pod's `minik.io/host-ports` annotation (container port → host port, as a JSON object, e.g.
//! `{"8080":31234}`), which the Endpoints controller and the Service proxy read. Kubernetes has
//! no field for this. A pod with a network namespace of its own (the `oci` runtime on the pod
//! network) has an address of its own and is reached there at the container port itself, as on
//! Kubernetes.

use std::collections::BTreeMap;

use crate::podview::PodView;

/// The annotation in which a node agent records the host port of each declared container port.
pub const HOST_PORTS_ANNOTATION: &str = "minik.io/host-ports";

/// The port a pod's container port is reached on at the pod's IP (`status.podIP`). A pod with
/// an address of its own ([`has_own_address`]) is reached at the container port itself.
/// Otherwise (a pod on the host's network) it is the host port: the recorded binding, else a
/// declared `hostPort`, else the port itself (a pod that listens on a fixed port of the host).
pub fn host_port_of(pod: &PodView, container_port: i32) -> i32 {
    if has_own_address(pod) {
        return container_port;
    }
    let recorded = pod
        .annotation(HOST_PORTS_ANNOTATION)
        .and_then(|v| serde_json::from_str::<BTreeMap<String, i32>>(v).ok())
        .and_then(|m| m.get(&container_port.to_string()).copied());
    let declared = || {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.container_port == container_port)
            .and_then(|p| p.host_port)
            .filter(|h| *h != 0)
    };
    recorded.or_else(declared).unwrap_or(container_port)
}

/// Whether `pod` has a network namespace, and so an address, of its own: it is not a
/// `hostNetwork` pod and its `status.podIP` is known and differs from its node's
/// (`status.hostIP`). The process runtime's pods, whose pod IP is the node's, do not; neither
/// does a pod whose addresses are not reported yet.
pub fn has_own_address(pod: &PodView) -> bool {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let status = pod.status.as_ref();
    let pod_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty());
    let host_ip = status
        .and_then(|s| s.host_ip.as_deref())
        .filter(|ip| !ip.is_empty());
    match (pod_ip, host_ip) {
        (Some(pod_ip), Some(host_ip)) => !host_network && pod_ip != host_ip,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod declaring container ports 8080 (hostPort 8443) and 9090, with 8080 and 9090
    /// recorded at host ports 31000 and 31001.
    fn pod(host_network: bool, pod_ip: Option<&str>, host_ip: Option<&str>) -> PodView {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {
                HOST_PORTS_ANNOTATION: r#"{"8080":31000,"9090":31001}"#
            }},
            "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "image": "x",
                "ports": [{"containerPort": 8080, "hostPort": 8443}, {"containerPort": 9090}]}]},
            "status": {"podIP": pod_ip, "hostIP": host_ip},
        }))
        .unwrap()
    }

    #[test]
    fn pods_on_the_host_network_are_reached_at_their_host_ports() {
        for pod in [
            // The process runtime: the pod's IP is the node's.
            pod(false, Some("127.0.0.1"), Some("127.0.0.1")),
            pod(true, Some("10.0.0.5"), Some("10.0.0.5")),
            // hostNetwork, whatever the addresses say.
            pod(true, Some("10.244.1.5"), Some("10.0.0.5")),
            // Addresses not reported yet.
            pod(false, None, None),
            pod(false, Some("10.244.1.5"), None),
            pod(false, Some(""), Some("10.0.0.5")),
        ] {
            assert!(!has_own_address(&pod), "{:?}", pod.status);
            assert_eq!(host_port_of(&pod, 8080), 31000);
            assert_eq!(host_port_of(&pod, 9090), 31001);
            assert_eq!(host_port_of(&pod, 7000), 7000);
        }
        let mut unrecorded = pod(false, Some("10.0.0.5"), Some("10.0.0.5"));
        unrecorded.metadata.annotations = None;
        assert_eq!(host_port_of(&unrecorded, 8080), 8443);
        assert_eq!(host_port_of(&unrecorded, 9090), 9090);
    }

    #[test]
    fn pods_with_an_address_of_their_own_are_reached_at_the_container_port() {
        let pod = pod(false, Some("10.244.1.5"), Some("10.0.0.5"));
        assert!(has_own_address(&pod));
        // Neither the recorded binding nor the declared hostPort (published on the node, not
        // the way to the pod's own address).
        assert_eq!(host_port_of(&pod, 8080), 8080);
        assert_eq!(host_port_of(&pod, 9090), 9090);
        assert_eq!(host_port_of(&pod, 7000), 7000);
    }
}
