//! The agent's side of the pod network (issue 19): it starts the node's [`PodNetwork`] once the
//! server has given the Node its `spec.podCIDR`, connects each pod sandbox that has a network
//! namespace of its own (the oci runtime's pods that are not `hostNetwork`) before its first
//! container starts, and disconnects it when the sandbox goes. It keeps the routes to the
//! other nodes' pod CIDRs in step with the Nodes, and the node's hostPorts in step with its
//! pods. The netlink, address and nftables work is `minik-net`'s.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use minik_api::cidr::Cidr;
use minik_api::k8s_openapi::api::core::v1::{Node, Pod};
use minik_client::{Change, Informer, InformerCache};
use minik_net::{HostPort, Peer, PodNetwork, Protocol};

/// How long the agent waits at start for the server to give its Node a pod CIDR.
const POD_CIDR_WAIT: Duration = Duration::from_secs(60);

/// What the node's pod network is made from: the cluster's networks, as the server publishes
/// them (`GET /minik/v1/network`), and the node's own choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkSettings {
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    /// The `kube-dns` Service's address: pods' resolv.conf names it and the node answers on it.
    pub cluster_dns: Option<Ipv4Addr>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Whether pods may reach beyond the cluster (masqueraded); when not, such packets drop.
    pub egress: bool,
    pub mtu: u32,
}

/// The node's pod network, as the agent uses it.
pub(crate) struct Network {
    net: PodNetwork,
    settings: PodNetworkSettings,
    /// The address of every pod connected, by uid.
    addresses: Mutex<HashMap<String, Ipv4Addr>>,
}

impl Network {
    /// Waits for the Node's pod CIDR (in `nodes`), then builds the node's side of the network
    /// (or finds it after a restart). `data_dir` keeps the address allocations.
    pub(crate) async fn start(
        node: &str,
        nodes: &Informer<Node>,
        data_dir: &Path,
        settings: PodNetworkSettings,
    ) -> Result<Network, String> {
        let pod_cidr = wait_for_pod_cidr(node, nodes).await?;
        let net = PodNetwork::start(minik_net::Config {
            node_name: node.to_owned(),
            pod_cidr,
            cluster_cidr: settings.cluster_cidr,
            service_cidr: settings.service_cidr,
            egress: settings.egress,
            mtu: settings.mtu,
            ipam_dir: data_dir.join("network").join("ipam"),
            host_netns: None,
        })
        .await
        .map_err(|e| format!("cannot build the pod network of pod CIDR {pod_cidr}: {e}"))?;
        if !net.bridged_traffic_filtered() {
            tracing::warn!(
                "bridged traffic does not go through nftables (the br_netfilter module is not loaded): a pod's connection to a Service whose endpoint is on the same node fails; run `modprobe br_netfilter`"
            );
        }
        tracing::info!(pod_cidr = %pod_cidr, bridge = net.bridge(), gateway = %net.gateway(), egress = settings.egress, "the pod network is up");
        Ok(Network {
            net,
            settings,
            addresses: Mutex::default(),
        })
    }

    pub(crate) fn settings(&self) -> &PodNetworkSettings {
        &self.settings
    }

    /// The node's address on its bridge: where its DNS server listens for pods.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        self.net.gateway()
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ipv4Addr>> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address of pod `uid` if it is connected.
    pub(crate) fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.addresses().get(uid).copied()
    }

    /// Connects pod `uid`'s sandbox, whose network namespace is `netns`, unless it is
    /// connected: `fresh` says the namespace was just made (so it has no interface yet).
    /// Answers the pod's address.
    pub(crate) async fn attach(
        &self,
        uid: &str,
        netns: &Path,
        fresh: bool,
    ) -> Result<Ipv4Addr, minik_net::Error> {
        if !fresh {
            if let Some(address) = self.address_of(uid) {
                return Ok(address);
            }
            // After an agent restart: a pod connected by the earlier agent keeps its address.
            if let Some(address) = self.net.pod_ip(uid).await? {
                self.addresses().insert(uid.to_owned(), address);
                return Ok(address);
            }
        }
        let address = self.net.add_pod(uid, netns).await?;
        self.addresses().insert(uid.to_owned(), address);
        Ok(address)
    }

    /// Disconnects pod `uid` and releases its address.
    pub(crate) async fn detach(&self, uid: &str) {
        self.addresses().remove(uid);
        if let Err(e) = self.net.remove_pod(uid).await {
            tracing::warn!(pod_uid = %uid, error = %e, "cannot disconnect a pod from the pod network");
        }
    }

    /// Finds the addresses of the pods in `uids` that an earlier agent connected (they keep
    /// them).
    pub(crate) async fn recall(&self, uids: &BTreeSet<String>) {
        for uid in uids {
            match self.net.pod_ip(uid).await {
                Ok(Some(address)) => {
                    self.addresses().insert(uid.clone(), address);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(pod_uid = %uid, error = %e, "cannot find a pod's address"),
            }
        }
    }

    /// Releases the addresses and veths of pods that are not in `live` (left by an agent
    /// killed with -9).
    pub(crate) async fn reclaim(&self, live: &BTreeSet<String>) {
        match self.net.reclaim(live).await {
            Ok(released) if !released.is_empty() => {
                tracing::info!(addresses = ?released, "released the addresses of pods that are gone")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reclaim the addresses of pods that are gone")
            }
        }
    }

    /// Publishes the hostPorts of `pods` (those connected) with DNAT.
    pub(crate) async fn publish_host_ports(&self, pods: &[std::sync::Arc<Pod>]) {
        let ports = {
            let addresses = self.addresses();
            host_ports(pods, &addresses)
        };
        if let Err(e) = self.net.set_host_ports(&ports).await {
            tracing::warn!(error = %e, "cannot publish the pods' host ports");
        }
    }

    /// Removes the node's side of the network (the agent stops for good).
    pub(crate) async fn stop(self) {
        let bridge = self.net.bridge().to_owned();
        match self.net.stop().await {
            Ok(()) => tracing::info!(bridge = %bridge, "removed the pod network"),
            Err(e) => tracing::warn!(error = %e, "cannot remove the pod network"),
        }
    }

    /// Keeps the routes to the other nodes' pod CIDRs in step with the Nodes. Runs until
    /// aborted.
    pub(crate) async fn follow_peers(
        network: std::sync::Arc<Network>,
        nodes: InformerCache<Node>,
        mut changes: minik_client::Subscription<Node>,
    ) {
        let mut last: Option<Vec<Peer>> = None;
        loop {
            let peers = peers(&nodes.list());
            if last.as_ref() != Some(&peers) {
                match network.net.set_peers(&peers).await {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot route to every node's pods"),
                }
                last = Some(peers);
            }
            match changes.next().await {
                Some(Change::Applied(_) | Change::Deleted(_) | Change::Resync) => {}
                None => return,
            }
        }
    }
}

/// Waits for node `node`'s `spec.podCIDR`, which the server's node IPAM controller gives it
/// once it is registered.
async fn wait_for_pod_cidr(node: &str, nodes: &Informer<Node>) -> Result<Cidr, String> {
    let cache = nodes.cache();
    let mut changes = nodes.subscribe();
    let deadline = tokio::time::Instant::now() + POD_CIDR_WAIT;
    loop {
        if let Some(found) = cache.get(node) {
            if let Some(text) = found.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                return text
                    .parse::<Cidr>()
                    .map_err(|e| format!("the Node's spec.podCIDR {text:?}: {e}"));
            }
        }
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err("the watch of Nodes ended".into()),
            Err(_) => {
                return Err(format!(
                    "the server gave node {node:?} no spec.podCIDR within {}s (is the server's --cluster-cidr full, or \"none\"?)",
                    POD_CIDR_WAIT.as_secs()
                ))
            }
        }
    }
}

/// The nodes that have a pod CIDR and an address, as routes need them.
fn peers(nodes: &[std::sync::Arc<Node>]) -> Vec<Peer> {
    let mut peers: Vec<Peer> = nodes
        .iter()
        .filter_map(|node| {
            let pod_cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            let address = node
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some(Peer {
                node_name: node.metadata.name.clone()?,
                pod_cidr,
                address,
            })
        })
        .collect();
    peers.sort();
    peers
}

/// The declared hostPorts of the connected pods among `pods`.
fn host_ports(
    pods: &[std::sync::Arc<Pod>],
    addresses: &HashMap<String, Ipv4Addr>,
) -> Vec<HostPort> {
    let mut ports = Vec::new();
    for pod in pods {
        let Some(pod_ip) = pod
            .metadata
            .uid
            .as_deref()
            .and_then(|uid| addresses.get(uid))
        else {
            continue;
        };
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        for port in containers.flat_map(|c| c.ports.iter().flatten()) {
            let (Some(host_port), Ok(container_port)) = (
                port.host_port
                    .filter(|p| *p > 0)
                    .and_then(|p| u16::try_from(p).ok()),
                u16::try_from(port.container_port),
            ) else {
                continue;
            };
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            ports.push(HostPort {
                protocol,
                host_ip: port
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
                host_port,
                pod_ip: *pod_ip,
                container_port,
            });
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_need_a_pod_cidr_and_an_internal_address() {
        let node = |name: &str, cidr: Option<&str>, ip: Option<&str>| -> std::sync::Arc<Node> {
            let mut n =
                json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": []}});
            if let Some(c) = cidr {
                n["spec"]["podCIDR"] = json!(c);
            }
            if let Some(ip) = ip {
                n["status"]["addresses"] = json!([{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]);
            }
            std::sync::Arc::new(serde_json::from_value(n).unwrap())
        };
        let peers = peers(&[
            node("b", Some("10.244.1.0/24"), Some("192.168.0.2")),
            node("a", Some("10.244.0.0/24"), Some("192.168.0.1")),
            node("c", None, Some("192.168.0.3")),
            node("d", Some("10.244.3.0/24"), None),
        ]);
        let names: Vec<&str> = peers.iter().map(|p| p.node_name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(peers[1].address, Ipv4Addr::new(192, 168, 0, 2));
    }

    #[test]
    fn host_ports_of_connected_pods() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.2"},
                {"containerPort": 9090},
            ]}]},
        }))
        .unwrap();
        let other: Pod = serde_json::from_value(json!({
            "metadata": {"name": "other", "uid": "u2"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8081}]}]},
        }))
        .unwrap();
        let addresses = HashMap::from([("u1".to_owned(), Ipv4Addr::new(10, 244, 0, 5))]);
        let ports = host_ports(&[pod.into(), other.into()], &addresses);
        assert_eq!(
            ports,
            [
                HostPort {
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    pod_ip: Ipv4Addr::new(10, 244, 0, 5),
                    container_port: 80
                },
                HostPort {
                    protocol: Protocol::Udp,
                    host_ip: Some(Ipv4Addr::new(127, 0, 0, 2)),
                    host_port: 5353,
                    pod_ip: Ipv4Addr::new(10, 244, 0, 5),
                    container_port: 53
                },
            ]
        );
    }
}
