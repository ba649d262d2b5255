//! Where a pod's container port is reached on the host. The process runtime shares the host
//! network, so a declared container port gets a free host port; the node agent records the
//! bindings in the pod's `minik.io/host-ports` annotation (container port → host port, as a
//! JSON object, e.g. `{"8080":31234}`), which the Endpoints controller and the Service proxy
//! read. Kubernetes has no field for this.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The annotation in which a node agent records the host port of each declared container port.
pub const HOST_PORTS_ANNOTATION: &str = "minik.io/host-ports";

/// The host port a pod's container port is reached on: the recorded binding, else a declared
/// `hostPort`, else the port itself (a pod that listens on a fixed port of the host).
pub fn host_port_of(pod: &Pod, container_port: i32) -> i32 {
    let recorded = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOST_PORTS_ANNOTATION))
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
