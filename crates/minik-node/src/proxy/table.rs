//! What the proxy should listen on, as a pure function of the Services and Endpoints: one
//! frontend per address, each with the ready backends of its Service port.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};

/// What kind of Service address a frontend is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `clusterIP:port`.
    ClusterIp,
    /// `node_address:nodePort`; the nftables mode takes it on every local address.
    NodePort,
    /// `node_address:port` of a LoadBalancer Service.
    LoadBalancer,
}

/// One address the proxy listens on and where its connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frontend {
    /// `namespace/name` of the Service, and which of its ports (`name` or the number).
    pub service: String,
    pub port: String,
    pub kind: Kind,
    /// Ready endpoints, in the order the Endpoints object lists them.
    pub backends: Vec<SocketAddr>,
}

/// The frontends for `services` on a node advertising `node_address`:
/// - `clusterIP:port` for every TCP port of a Service with a cluster IP;
/// - `node_address:nodePort` for each node port (NodePort and LoadBalancer Services);
/// - `node_address:port` for LoadBalancer Services (their status lists the node addresses).
///
/// When two Services want one address, the first by `namespace/name` keeps it.
pub(crate) fn frontends(
    services: &[&Service],
    endpoints: &dyn Fn(&str) -> Option<std::sync::Arc<Endpoints>>,
    node_address: IpAddr,
) -> BTreeMap<SocketAddr, Frontend> {
    let mut sorted: Vec<&&Service> = services.iter().collect();
    sorted.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    let mut out = BTreeMap::new();
    for service in sorted {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let key = format!(
            "{}/{}",
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default()
        );
        let ep = endpoints(&key);
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port_name = port.name.clone().unwrap_or_default();
            let frontend = Frontend {
                service: key.clone(),
                port: if port_name.is_empty() {
                    port.port.to_string()
                } else {
                    port_name.clone()
                },
                kind: Kind::ClusterIp,
                backends: ep
                    .as_deref()
                    .map(|e| ready_backends(e, &port_name))
                    .unwrap_or_default(),
            };
            let mut binds = Vec::new();
            if let Some(ip) = cluster_ip {
                binds.push((SocketAddr::new(ip, port.port as u16), Kind::ClusterIp));
            }
            if matches!(type_, "NodePort" | "LoadBalancer") {
                if let Some(n) = port.node_port.filter(|n| *n > 0) {
                    binds.push((SocketAddr::new(node_address, n as u16), Kind::NodePort));
                }
            }
            if type_ == "LoadBalancer" {
                binds.push((
                    SocketAddr::new(node_address, port.port as u16),
                    Kind::LoadBalancer,
                ));
            }
            for (bind, kind) in binds {
                if bind.port() == 0 {
                    continue;
                }
                out.entry(bind).or_insert_with(|| Frontend {
                    kind,
                    ..frontend.clone()
                });
            }
        }
    }
    out
}

/// The ready addresses of the Endpoints port named `port_name` (unnamed for a Service with one
/// unnamed port), as socket addresses.
fn ready_backends(endpoints: &Endpoints, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let Some(port) = subset
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, number));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn svc(name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn frontends_cover_cluster_ips_node_ports_and_load_balancers() {
        let web = svc(
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "127.96.0.5", "ports": [
                {"name": "http", "port": 8080, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}
            ]}),
        );
        let plain = svc(
            "plain",
            json!({"type": "ClusterIP", "clusterIP": "127.96.0.6", "ports": [{"port": 9000, "protocol": "TCP"}]}),
        );
        let headless = svc(
            "db",
            json!({"clusterIP": "None", "ports": [{"port": 5432}]}),
        );
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}],
                "notReadyAddresses": [{"ip": "127.0.0.4"}],
                "ports": [{"name": "http", "port": 31000}, {"name": "dns", "port": 31001, "protocol": "UDP"}]
            }, {
                "addresses": [{"ip": "127.0.0.5"}],
                "ports": [{"name": "http", "port": 31005}]
            }]
        }))
        .unwrap();
        let ep = Arc::new(ep);
        let lookup = |key: &str| (key == "default/web").then(|| ep.clone());
        let node: IpAddr = "127.0.0.9".parse().unwrap();
        let table = frontends(&[&web, &plain, &headless], &lookup, node);
        let binds: Vec<String> = table.keys().map(|a| a.to_string()).collect();
        assert_eq!(
            binds,
            [
                "127.0.0.9:8080",
                "127.0.0.9:30080",
                "127.96.0.5:8080",
                "127.96.0.6:9000"
            ]
        );
        let http = &table[&"127.96.0.5:8080".parse().unwrap()];
        assert_eq!(http.service, "default/web");
        assert_eq!(http.port, "http");
        let backends: Vec<String> = http.backends.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            backends,
            ["127.0.0.2:31000", "127.0.0.3:31000", "127.0.0.5:31005"]
        );
        assert_eq!(http.kind, Kind::ClusterIp);
        let node_port = &table[&"127.0.0.9:30080".parse().unwrap()];
        assert_eq!(node_port.kind, Kind::NodePort);
        assert_eq!(
            (&node_port.service, &node_port.port, &node_port.backends),
            (&http.service, &http.port, &http.backends)
        );
        assert_eq!(
            table[&"127.0.0.9:8080".parse().unwrap()].kind,
            Kind::LoadBalancer
        );
        assert!(table[&"127.96.0.6:9000".parse().unwrap()]
            .backends
            .is_empty());
    }
}
