//! [`PodNetwork`]: one node's pod network, the whole of what the agent calls. It ties the
//! pieces together: the node's pod CIDR and its addresses on disk (`ipam`), the bridge, a veth
//! per pod and the routes to other nodes (`link`), and the nftables table (`rules`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cidr::{self, Cidr};
use crate::ipam::Ipam;
use crate::link::{self, Netlink, POD_INTERFACE};
use crate::rules::{self, HostPort, Rules};
use crate::{netns, sysctl, Error};

/// What a node's pod network is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The node's name: it names the bridge and the nftables table.
    pub node_name: String,
    /// The node's `spec.podCIDR`.
    pub pod_cidr: Cidr,
    /// The cluster CIDR the pod CIDRs of all nodes come from (`--cluster-cidr`).
    pub cluster_cidr: Cidr,
    /// The service CIDR (`--service-cidr`).
    pub service_cidr: Cidr,
    /// Whether pods may reach beyond the cluster (masqueraded). When off, such packets are
    /// dropped.
    pub egress: bool,
    /// The MTU of the bridge and the pods' interfaces, from 576 to 65535: [`DEFAULT_MTU`]
    /// unless the agent is told otherwise.
    pub mtu: u32,
    /// Where the address allocations are kept: `DATA_DIR/network/ipam` in the agent.
    pub ipam_dir: PathBuf,
    /// The network namespace the node's side lives in (bridge, host veths, routes, table):
    /// the agent's own when `None`; a test's "host" otherwise.
    pub host_netns: Option<PathBuf>,
}

/// The default MTU of the pod network: the most Linux takes, as loopback's. TCP between pods
/// then carries 64 KiB segments, and pod to pod across the bridge runs at loopback's speed
/// (about 0.95x; with 1500 about 0.57x, see the benchmark). Packets that leave the host meet
/// the uplink's smaller MTU at the host itself, which tells the pod at once (ICMP
/// "fragmentation needed", path MTU discovery), as it would a host process.
pub const DEFAULT_MTU: u32 = 65535;

/// Another node of the cluster, as far as routes go.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub node_name: String,
    /// Its `spec.podCIDR`.
    pub pod_cidr: Cidr,
    /// Its address (`InternalIP`): the gateway to its pod CIDR.
    pub address: Ipv4Addr,
}

/// One node's pod network. Made by [`PodNetwork::start`] when the agent starts; the agent
/// calls [`add_pod`](PodNetwork::add_pod) and [`remove_pod`](PodNetwork::remove_pod) as pod
/// sandboxes come and go, [`set_peers`](PodNetwork::set_peers) and
/// [`set_host_ports`](PodNetwork::set_host_ports) with the whole current lists when they change
/// (and may call them again any time: they are idempotent), and [`stop`](PodNetwork::stop)
/// when it stops for good.
pub struct PodNetwork {
    config: Config,
    bridge: String,
    bridge_index: u32,
    gateway: Ipv4Addr,
    table: String,
    host: Netlink,
    ipam: Ipam,
    bridged_traffic_filtered: bool,
    state: tokio::sync::Mutex<State>,
}

/// What the nftables table and the routes are made from, besides the configuration.
#[derive(Default)]
struct State {
    peers: Vec<Peer>,
    host_ports: BTreeSet<HostPort>,
    /// The ruleset last applied.
    applied: Option<String>,
}

impl PodNetwork {
    /// Builds the node's side of the pod network, or finds it in place (after an agent
    /// restart): checks the networks (the pod CIDR inside the cluster CIDR, apart from the
    /// service CIDR and the host's routes), turns on forwarding (and bridged traffic through
    /// nftables where br_netfilter is loaded), makes the bridge with the pod CIDR's gateway
    /// address, and applies the nftables table. Needs root and a tokio runtime.
    pub async fn start(config: Config) -> Result<PodNetwork, Error> {
        check_node_name(&config.node_name)?;
        if !(576..=65535).contains(&config.mtu) {
            return Err(Error::Config(format!(
                "MTU {} is not from 576 to 65535",
                config.mtu
            )));
        }
        cidr::check_cluster(config.cluster_cidr, config.service_cidr)?;
        cidr::check_pod_cidr(config.pod_cidr, config.cluster_cidr, config.service_cidr)?;
        let gateway = config.pod_cidr.gateway().ok_or_else(|| {
            Error::Config(format!("pod CIDR {} has no room for pods", config.pod_cidr))
        })?;
        let bridge = link::bridge_name(&config.node_name);
        let host_netns = config.host_netns.clone();
        let host = Netlink::open(host_netns.as_deref()).await?;

        let existing_bridge = host.link(&bridge).await?.map(|l| l.header.index);
        let names = host.links().await?;
        let foreign: Vec<(Cidr, String)> = host
            .routes(config.cluster_cidr)
            .await?
            .into_iter()
            .filter(|r| !r.ours && (r.interface.is_none() || r.interface != existing_bridge))
            .map(|r| {
                let device = r
                    .interface
                    .and_then(|i| names.get(&i))
                    .map(|name| format!(" dev {name}"))
                    .unwrap_or_default();
                (r.dst, format!("the host's route to {}{device}", r.dst))
            })
            .collect();
        cidr::check_host_routes(config.pod_cidr, config.service_cidr, &foreign)?;

        let bridged_traffic_filtered =
            netns::run_in_async(host_netns.as_deref(), || -> Result<bool, Error> {
                sysctl::set(sysctl::IP_FORWARD, "1")?;
                sysctl::set_if_present(sysctl::BRIDGE_NF_CALL_IPTABLES, "1")
            })
            .await??;
        let bridge_index = host
            .ensure_bridge(&bridge, gateway, config.pod_cidr.prefix(), config.mtu)
            .await?;
        let localnet = sysctl::route_localnet(&bridge);
        netns::run_in_async(host_netns.as_deref(), move || sysctl::set(&localnet, "1")).await??;

        let (ipam_dir, pod_cidr) = (config.ipam_dir.clone(), config.pod_cidr);
        let ipam = blocking(move || Ipam::open(&ipam_dir, pod_cidr)).await?;
        let network = PodNetwork {
            table: rules::table_name(&config.node_name),
            config,
            bridge,
            bridge_index,
            gateway,
            host,
            ipam,
            bridged_traffic_filtered,
            state: tokio::sync::Mutex::new(State::default()),
        };
        network
            .apply_rules(&mut *network.state.lock().await)
            .await?;
        Ok(network)
    }

    /// The name of the node's bridge.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The pods' gateway: the bridge's address, the first of the pod CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Whether traffic between pods of the bridge goes through nftables (the br_netfilter
    /// module is loaded). Without it, a pod's answer to another pod on the same bridge that
    /// reached it through a DNAT (a Service, a hostPort) is not translated back, and that
    /// connection fails: the agent should warn (`modprobe br_netfilter`), as kubeadm does.
    pub fn bridged_traffic_filtered(&self) -> bool {
        self.bridged_traffic_filtered
    }

    /// The name of the node's nftables table (`ip` family).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The host end of pod `pod_uid`'s veth pair.
    pub fn host_veth_name(pod_uid: &str) -> String {
        link::host_veth_name(pod_uid)
    }

    /// Connects the pod sandbox whose network namespace is pinned at `netns` (the oci
    /// runtime's `<sandbox dir>/net`): allocates it an address of the pod CIDR and gives it an
    /// `eth0` on the node's bridge with that address and a default route via the gateway.
    /// Returns the pod's IP (`status.podIP`). Idempotent: again for the same pod, it gives the
    /// same address and a fresh veth pair. An exhausted pod CIDR is [`Error::Exhausted`].
    pub async fn add_pod(&self, pod_uid: &str, netns: &Path) -> Result<Ipv4Addr, Error> {
        let owner = owner(pod_uid)?;
        let ipam = self.ipam.clone();
        let pod_ip = {
            let owner = owner.clone();
            blocking(move || ipam.allocate(&owner)).await?
        };
        let attached = self
            .host
            .attach_pod(
                netns,
                self.bridge_index,
                &link::host_veth_name(pod_uid),
                pod_ip,
                self.config.pod_cidr.prefix(),
                self.gateway,
                self.config.mtu,
            )
            .await;
        if let Err(e) = attached {
            let ipam = self.ipam.clone();
            let _ = blocking(move || ipam.release(&owner)).await;
            return Err(e);
        }
        Ok(pod_ip)
    }

    /// The address of pod `pod_uid` if it is connected (an address allocated and its host veth
    /// in place): how an agent that restarts finds the pods it had connected, without
    /// touching them.
    pub async fn pod_ip(&self, pod_uid: &str) -> Result<Option<Ipv4Addr>, Error> {
        let owner = owner(pod_uid)?;
        let ipam = self.ipam.clone();
        let Some(address) = blocking(move || ipam.lookup(&owner)).await? else {
            return Ok(None);
        };
        let veth = self.host.link(&link::host_veth_name(pod_uid)).await?;
        Ok(veth.is_some().then_some(address))
    }

    /// Disconnects pod `pod_uid`: removes its veth pair (if its namespace is still there) and
    /// releases its address. A pod that is not connected is no error.
    pub async fn remove_pod(&self, pod_uid: &str) -> Result<(), Error> {
        let owner = owner(pod_uid)?;
        self.host
            .remove_link(&link::host_veth_name(pod_uid))
            .await?;
        let ipam = self.ipam.clone();
        blocking(move || ipam.release(&owner)).await?;
        Ok(())
    }

    /// Releases what pods not in `live_pod_uids` left (an agent killed with -9 before it
    /// removed them): their addresses and host veths. Returns the addresses released. The
    /// agent calls it once it knows its pods after a start.
    pub async fn reclaim(&self, live_pod_uids: &BTreeSet<String>) -> Result<Vec<Ipv4Addr>, Error> {
        let live_owners: BTreeSet<String> = live_pod_uids
            .iter()
            .filter_map(|uid| owner(uid).ok())
            .collect();
        let ipam = self.ipam.clone();
        let released = blocking(move || ipam.reclaim(|o| live_owners.contains(o))).await?;
        let live_veths: BTreeSet<String> = live_pod_uids
            .iter()
            .map(|uid| link::host_veth_name(uid))
            .collect();
        for port in self.host.ports(self.bridge_index).await? {
            if !live_veths.contains(&port) {
                self.host.remove_link(&port).await?;
            }
        }
        Ok(released.into_iter().map(|(address, _)| address).collect())
    }

    /// Routes the pod CIDRs of the other nodes (`peers`: every node, this one may be among
    /// them) via their addresses, host-gateway style, and removes the routes of nodes that
    /// are gone. A node whose address is one of this host's (several nodes on one host) needs
    /// no route: its bridge is here. A pod CIDR that cannot be routed (outside the cluster
    /// CIDR, overlapping another, via an address no connected network reaches, or a
    /// destination another route has) is [`Error::Unroutable`], naming each; the rest are
    /// routed all the same.
    pub async fn set_peers(&self, peers: &[Peer]) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let local = self.host.local_addresses().await?;
        let mut failures = Vec::new();
        let mut desired: BTreeMap<Cidr, Ipv4Addr> = BTreeMap::new();
        // The pod CIDRs of the peers taken so far, routed or on this host, and those peers.
        let mut accepted: Vec<Cidr> = Vec::new();
        let mut accepted_peers: Vec<Peer> = Vec::new();
        let mut sorted = peers.to_vec();
        sorted.sort();
        for peer in &sorted {
            if peer.node_name == self.config.node_name {
                continue;
            }
            let problem = if !self.config.cluster_cidr.covers(&peer.pod_cidr) {
                Some(format!(
                    "it is outside the cluster CIDR {}",
                    self.config.cluster_cidr
                ))
            } else if peer.pod_cidr.overlaps(&self.config.pod_cidr) {
                Some(format!(
                    "it overlaps this node's pod CIDR {}",
                    self.config.pod_cidr
                ))
            } else {
                accepted
                    .iter()
                    .find(|c| c.overlaps(&peer.pod_cidr))
                    .map(|other| format!("it overlaps another node's pod CIDR {other}"))
            };
            if let Some(problem) = problem {
                failures.push(unroutable(peer, &problem));
                continue;
            }
            accepted.push(peer.pod_cidr);
            accepted_peers.push(peer.clone());
            if local.contains(&peer.address) {
                continue;
            }
            desired.insert(peer.pod_cidr, peer.address);
        }
        for (dst, via, why) in self
            .host
            .set_routes(&desired, self.config.cluster_cidr)
            .await?
        {
            if let Some(peer) = sorted
                .iter()
                .find(|p| p.pod_cidr == dst && p.address == via)
            {
                failures.push(unroutable(peer, &why));
            }
        }
        // Their addresses are the nodes' that pods may reach when egress is off.
        state.peers = accepted_peers;
        self.apply_rules(&mut state).await?;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Unroutable(failures))
        }
    }

    /// Publishes `ports` (every hostPort of the node's pods) on the node with DNAT, replacing
    /// the ones before.
    pub async fn set_host_ports(&self, ports: &[HostPort]) -> Result<(), Error> {
        if let Some(port) = ports
            .iter()
            .find(|p| !self.config.pod_cidr.contains(p.pod_ip))
        {
            return Err(Error::Config(format!(
                "hostPort {} goes to {}, which is not in this node's pod CIDR {}",
                port.host_port, port.pod_ip, self.config.pod_cidr
            )));
        }
        let mut state = self.state.lock().await;
        state.host_ports = ports.iter().copied().collect();
        self.apply_rules(&mut state).await
    }

    /// Removes the node's side of the pod network: every pod's host veth, the bridge, the
    /// routes to other nodes, the nftables table and the address allocations. (The pods'
    /// namespaces are the runtime's to remove.) Other nodes' agents sharing this host's network
    /// namespace put the routes they want back at their next [`set_peers`](Self::set_peers).
    pub async fn stop(self) -> Result<(), Error> {
        for port in self.host.ports(self.bridge_index).await? {
            self.host.remove_link(&port).await?;
        }
        self.host.remove_link(&self.bridge).await?;
        let failures = self
            .host
            .set_routes(&BTreeMap::new(), self.config.cluster_cidr)
            .await?;
        if !failures.is_empty() {
            return Err(Error::Unroutable(
                failures
                    .into_iter()
                    .map(|(dst, _, why)| format!("removing the route to {dst}: {why}"))
                    .collect(),
            ));
        }
        rules::remove(self.config.host_netns.as_deref(), &self.table).await?;
        let ipam = self.ipam.clone();
        blocking(move || ipam.remove_all()).await
    }

    /// Renders the table and applies it when it changed.
    async fn apply_rules(&self, state: &mut State) -> Result<(), Error> {
        let mut node_addresses = self.host.local_addresses().await?;
        node_addresses.extend(state.peers.iter().map(|p| p.address));
        let ruleset = rules::render(&Rules {
            table: &self.table,
            bridge: &self.bridge,
            pod_cidr: self.config.pod_cidr,
            cluster_cidr: self.config.cluster_cidr,
            service_cidr: self.config.service_cidr,
            node_addresses: &node_addresses,
            egress: self.config.egress,
            host_ports: &state.host_ports,
        });
        if state.applied.as_ref() == Some(&ruleset) {
            return Ok(());
        }
        rules::apply(self.config.host_netns.as_deref(), ruleset.clone()).await?;
        state.applied = Some(ruleset);
        Ok(())
    }
}

/// The owner of a pod's address in the IPAM: its uid and interface.
fn owner(pod_uid: &str) -> Result<String, Error> {
    if pod_uid.is_empty()
        || pod_uid.len() > 64
        || pod_uid.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::Config(format!(
            "{pod_uid:?} is not a pod uid (1 to 64 characters, no spaces)"
        )));
    }
    Ok(format!("{pod_uid} {POD_INTERFACE}"))
}

/// A node name names the nftables table: DNS-1123 characters, as Kubernetes' node names are.
fn check_node_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(Error::Config(format!(
            "{name:?} is not a node name (letters, digits, '-' and '.')"
        )));
    }
    Ok(())
}

fn unroutable(peer: &Peer, why: &str) -> String {
    format!(
        "the pod CIDR {} of node {} cannot be routed via {}: {why}",
        peer.pod_cidr, peer.node_name, peer.address
    )
}

/// Runs blocking file work (the IPAM's lock and files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            action: "allocating pod addresses (the task failed)",
            path: PathBuf::from("ipam"),
            source: std::io::Error::other(e),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_node_names() {
        assert_eq!(owner("abc-123").unwrap(), "abc-123 eth0");
        for bad in ["", "a b", "a\nb", &"x".repeat(65)] {
            assert!(owner(bad).is_err(), "{bad:?}");
        }
        assert!(check_node_name("node-1.example").is_ok());
        for bad in ["", "node_1", "node 1", "n;drop", "n\"x"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
