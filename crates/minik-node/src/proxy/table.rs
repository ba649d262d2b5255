//! What the proxy should translate or listen on, as a pure function of the Services and
//! Endpoints: one frontend per address and protocol, each with the ready backends of its
//! Service port and what its Service says about choosing among them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};

/// The Service whose port 53 a node answers itself when it has a local DNS address
/// ([`super::ProxyOptions::local_dns`]), `namespace/name`.
pub(crate) const DNS_SERVICE: &str = "kube-system/kube-dns";

/// The port of [`DNS_SERVICE`] that goes to the local DNS address.
const DNS_PORT: i32 = 53;

/// How long a client keeps its endpoint under `sessionAffinity: ClientIP` when the Service does
/// not say (Kubernetes' default of `sessionAffinityConfig.clientIP.timeoutSeconds`: 3 hours).
pub(crate) const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

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

/// The protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The protocol of a Service port's `protocol` field (TCP when absent).
    fn of(field: Option<&str>) -> Option<Protocol> {
        match field.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name of the protocol.
    pub(crate) fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A ready endpoint of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backend {
    pub addr: SocketAddr,
    /// Whether it is on this node (its Endpoints address names this node as `nodeName`): the
    /// endpoints that `Local` traffic policies keep.
    pub local: bool,
}

/// One Service address and where its connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frontend {
    /// `namespace/name` of the Service, and which of its ports (`name` or the number).
    pub service: String,
    pub port: String,
    pub kind: Kind,
    /// Ready endpoints, in the order the Endpoints object lists them.
    pub backends: Vec<Backend>,
    /// `sessionAffinity: ClientIP`: for how many seconds after its last new connection a
    /// client's new connections go to the same endpoint.
    pub affinity: Option<u32>,
    /// `internalTrafficPolicy: Local`: connections to the ClusterIP go only to this node's
    /// endpoints.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: connections to node ports and LoadBalancer addresses
    /// from outside the node go only to its endpoints, and keep their client's address.
    pub external_local: bool,
}

/// Every frontend by protocol and address.
pub(crate) type Frontends = BTreeMap<(Protocol, SocketAddr), Frontend>;

/// The frontends for `services` on node `node`, which advertises `node_address`:
/// - `clusterIP:port` for every port of a Service with a cluster IP;
/// - `node_address:nodePort` for each node port (NodePort and LoadBalancer Services);
/// - `node_address:port` for LoadBalancer Services (their status lists the node addresses).
///
/// With `local_dns`, port 53 (UDP and TCP) of [`DNS_SERVICE`] goes there, whatever its
/// Endpoints say. When two Services want one address, the first by `namespace/name` keeps it.
pub(crate) fn frontends(
    services: &[&Service],
    endpoints: &dyn Fn(&str) -> Option<std::sync::Arc<Endpoints>>,
    node: &str,
    node_address: IpAddr,
    local_dns: Option<SocketAddr>,
) -> Frontends {
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
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let ep = endpoints(&key);
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::of(port.protocol.as_deref()) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let backends = match local_dns {
                Some(dns)
                    if key == DNS_SERVICE
                        && port.port == DNS_PORT
                        && matches!(protocol, Protocol::Udp | Protocol::Tcp) =>
                {
                    vec![Backend {
                        addr: dns,
                        local: true,
                    }]
                }
                _ => ep
                    .as_deref()
                    .map(|e| ready_backends(e, &port_name, node))
                    .unwrap_or_default(),
            };
            let frontend = Frontend {
                service: key.clone(),
                port: if port_name.is_empty() {
                    port.port.to_string()
                } else {
                    port_name.clone()
                },
                kind: Kind::ClusterIp,
                backends,
                affinity,
                internal_local,
                external_local,
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
                out.entry((protocol, bind)).or_insert_with(|| Frontend {
                    kind,
                    ..frontend.clone()
                });
            }
        }
    }
    out
}

/// The ready addresses of the Endpoints port named `port_name` (unnamed for a Service with one
/// unnamed port), as socket addresses, each marked whether it is on node `node`.
fn ready_backends(endpoints: &Endpoints, port_name: &str, node: &str) -> Vec<Backend> {
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
                out.push(Backend {
                    addr: SocketAddr::new(ip, number),
                    local: address.node_name.as_deref() == Some(node),
                });
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

    fn svc(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        )
        .unwrap()
    }

    fn key(protocol: Protocol, addr: &str) -> (Protocol, SocketAddr) {
        (protocol, addr.parse().unwrap())
    }

    fn addrs(backends: &[Backend]) -> Vec<String> {
        backends.iter().map(|b| b.addr.to_string()).collect()
    }

    #[test]
    fn frontends_cover_cluster_ips_node_ports_and_load_balancers() {
        let web = svc(
            "default",
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "127.96.0.5", "ports": [
                {"name": "http", "port": 8080, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}
            ]}),
        );
        let plain = svc(
            "default",
            "plain",
            json!({"type": "ClusterIP", "clusterIP": "127.96.0.6", "ports": [{"port": 9000, "protocol": "TCP"}]}),
        );
        let headless = svc(
            "default",
            "db",
            json!({"clusterIP": "None", "ports": [{"port": 5432}]}),
        );
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "127.0.0.2", "nodeName": "n1"}, {"ip": "127.0.0.3", "nodeName": "n2"}],
                "notReadyAddresses": [{"ip": "127.0.0.4", "nodeName": "n1"}],
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
        let table = frontends(&[&web, &plain, &headless], &lookup, "n1", node, None);
        let binds: Vec<String> = table
            .keys()
            .map(|(p, a)| format!("{}/{a}", p.nft()))
            .collect();
        assert_eq!(
            binds,
            [
                "tcp/127.0.0.9:8080",
                "tcp/127.0.0.9:30080",
                "tcp/127.96.0.5:8080",
                "tcp/127.96.0.6:9000",
                "udp/127.0.0.9:53",
                "udp/127.0.0.9:30053",
                "udp/127.96.0.5:53",
            ]
        );
        let http = &table[&key(Protocol::Tcp, "127.96.0.5:8080")];
        assert_eq!(http.service, "default/web");
        assert_eq!(http.port, "http");
        assert_eq!(
            addrs(&http.backends),
            ["127.0.0.2:31000", "127.0.0.3:31000", "127.0.0.5:31005"]
        );
        // Only the address that names this node is local.
        let local: Vec<bool> = http.backends.iter().map(|b| b.local).collect();
        assert_eq!(local, [true, false, false]);
        assert_eq!(http.kind, Kind::ClusterIp);
        assert_eq!(
            (http.affinity, http.internal_local, http.external_local),
            (None, false, false)
        );
        let node_port = &table[&key(Protocol::Tcp, "127.0.0.9:30080")];
        assert_eq!(node_port.kind, Kind::NodePort);
        assert_eq!(
            (&node_port.service, &node_port.port, &node_port.backends),
            (&http.service, &http.port, &http.backends)
        );
        assert_eq!(
            table[&key(Protocol::Tcp, "127.0.0.9:8080")].kind,
            Kind::LoadBalancer
        );
        let dns = &table[&key(Protocol::Udp, "127.96.0.5:53")];
        assert_eq!(
            (dns.port.as_str(), addrs(&dns.backends)),
            (
                "dns",
                vec!["127.0.0.2:31001".to_owned(), "127.0.0.3:31001".to_owned()]
            )
        );
        assert!(table[&key(Protocol::Tcp, "127.96.0.6:9000")]
            .backends
            .is_empty());
    }

    #[test]
    fn affinity_and_traffic_policies_come_from_the_service() {
        let sticky = svc(
            "default",
            "sticky",
            json!({"type": "NodePort", "clusterIP": "10.96.0.7", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                   "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                   "ports": [{"port": 80, "nodePort": 30007}]}),
        );
        // Without a timeout, Kubernetes' default.
        let defaulted = svc(
            "default",
            "defaulted",
            json!({"clusterIP": "10.96.0.8", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}),
        );
        let none = |_: &str| None;
        let node: IpAddr = "10.0.0.1".parse().unwrap();
        let table = frontends(&[&sticky, &defaulted], &none, "n1", node, None);
        for addr in ["10.96.0.7:80", "10.0.0.1:30007"] {
            let f = &table[&key(Protocol::Tcp, addr)];
            assert_eq!(
                (f.affinity, f.internal_local, f.external_local),
                (Some(60), true, true)
            );
        }
        let f = &table[&key(Protocol::Tcp, "10.96.0.8:80")];
        assert_eq!(
            (f.affinity, f.internal_local, f.external_local),
            (Some(DEFAULT_AFFINITY_SECONDS), false, false)
        );
    }

    #[test]
    fn the_cluster_dns_service_goes_to_the_local_dns_address_when_there_is_one() {
        let dns = svc(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.96.0.10", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"}
            ]}),
        );
        // The same name in another namespace is just a Service.
        let other = svc(
            "default",
            "kube-dns",
            json!({"clusterIP": "10.96.0.11", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        );
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "subsets": [{"addresses": [{"ip": "10.244.0.9"}],
                         "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"},
                                   {"name": "metrics", "port": 9153}]}]
        }))
        .unwrap();
        let ep = Arc::new(ep);
        let lookup = |key: &str| (key == DNS_SERVICE).then(|| ep.clone());
        let node: IpAddr = "10.0.0.1".parse().unwrap();
        let local_dns: SocketAddr = "10.244.1.1:53".parse().unwrap();

        let table = frontends(&[&dns, &other], &lookup, "n1", node, Some(local_dns));
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let f = &table[&key(protocol, "10.96.0.10:53")];
            assert_eq!(
                f.backends,
                [Backend {
                    addr: local_dns,
                    local: true
                }]
            );
        }
        // Its other ports, and other Services, go by their Endpoints.
        assert_eq!(
            addrs(&table[&key(Protocol::Tcp, "10.96.0.10:9153")].backends),
            ["10.244.0.9:9153"]
        );
        assert!(table[&key(Protocol::Udp, "10.96.0.11:53")]
            .backends
            .is_empty());

        // Without a local DNS address, the Endpoints (none for the TCP port here).
        let table = frontends(&[&dns, &other], &lookup, "n1", node, None);
        assert_eq!(
            addrs(&table[&key(Protocol::Udp, "10.96.0.10:53")].backends),
            ["10.244.0.9:5353"]
        );
        assert!(table[&key(Protocol::Tcp, "10.96.0.10:53")]
            .backends
            .is_empty());
    }
}
