//! Links, addresses and routes through netlink (the `rtnetlink` crate): the node's bridge, a
//! veth pair per pod (one end on the bridge, the other the pod's `eth0`), and the host-gateway
//! routes to other nodes' pod CIDRs. A [`Netlink`] talks to one network namespace: its socket
//! is made by a thread inside it (see `netns`), and stays there.
//!
//! The routes this module makes carry a protocol number of their own ([`ROUTE_PROTOCOL`]), so
//! it tells them from every other route and never changes or removes one it did not make.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::cidr::Cidr;
use crate::error::errno;
use crate::netns::run_in_async;
use crate::Error;

/// The protocol number of the routes to other nodes' pod CIDRs (`ip route` shows `proto 77`).
/// Not one of the numbers iproute2 names (`/etc/iproute2/rt_protos`).
pub(crate) const ROUTE_PROTOCOL: u8 = 77;

/// The name of a pod's interface inside its network namespace.
pub(crate) const POD_INTERFACE: &str = "eth0";

/// The longest interface name Linux takes (IFNAMSIZ less the NUL).
const MAX_INTERFACE_NAME: usize = 15;

const ENODEV: i32 = nix::libc::ENODEV;
const EEXIST: i32 = nix::libc::EEXIST;
const ESRCH: i32 = nix::libc::ESRCH;
const EADDRNOTAVAIL: i32 = nix::libc::EADDRNOTAVAIL;

/// FNV-1a, 64 bits: a hash that stays the same across versions and machines, so names made
/// from it do too.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The host end of pod `pod_uid`'s veth pair: `veth` and 11 hex digits of a hash of the uid
/// (15 characters, the most an interface name takes).
pub(crate) fn host_veth_name(pod_uid: &str) -> String {
    format!("veth{:011x}", fnv1a(pod_uid) >> 20)
}

/// The bridge of node `node`: `minik` and 8 hex digits of a hash of the node's name, so that
/// several nodes on one host have bridges of their own.
pub(crate) fn bridge_name(node: &str) -> String {
    format!("minik{:08x}", fnv1a(node) >> 32)
}

/// A fixed, locally administered MAC address for bridge `name`. Without one a bridge takes the
/// lowest address of its ports, which changes as pods come and go, and the pods' ARP entries
/// for their gateway go stale.
fn bridge_mac(name: &str) -> Vec<u8> {
    let hash = fnv1a(name).to_be_bytes();
    // Locally administered (bit 1), unicast (bit 0 clear).
    vec![0x02, hash[0], hash[1], hash[2], hash[3], hash[4]]
}

/// Whether `name` can name an interface.
pub(crate) fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// A route of the main table, as far as the pod network cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostRoute {
    pub dst: Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub interface: Option<u32>,
    /// Made by the pod network ([`ROUTE_PROTOCOL`]).
    pub ours: bool,
}

/// What [`plan_routes`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoutePlan {
    /// Routes to add or change: destination, via.
    pub replace: Vec<(Cidr, Ipv4Addr)>,
    /// Routes of ours nobody wants any more.
    pub delete: Vec<Cidr>,
    /// Wanted routes whose destination another route (not ours) already has: left alone.
    pub conflicts: Vec<(Cidr, Ipv4Addr)>,
}

/// Compares the routes wanted (`desired`: pod CIDR -> node address) with those of the main
/// table. Ours (inside the cluster CIDR, see [`Netlink::routes`]) that are not wanted go; a
/// wanted route is added or changed unless it is there already, or unless a route that is
/// not ours has its destination (it would be replaced: never).
pub(crate) fn plan_routes(desired: &BTreeMap<Cidr, Ipv4Addr>, existing: &[HostRoute]) -> RoutePlan {
    let mut plan = RoutePlan::default();
    for route in existing.iter().filter(|r| r.ours) {
        if !desired.contains_key(&route.dst) {
            plan.delete.push(route.dst);
        }
    }
    for (dst, via) in desired {
        let same_dst: Vec<&HostRoute> = existing.iter().filter(|r| r.dst == *dst).collect();
        if same_dst.iter().any(|r| !r.ours) {
            plan.conflicts.push((*dst, *via));
        } else if !same_dst.iter().any(|r| r.gateway == Some(*via)) {
            plan.replace.push((*dst, *via));
        }
    }
    plan.delete.sort();
    plan.delete.dedup();
    plan
}

/// A netlink connection to one network namespace.
pub(crate) struct Netlink {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netlink {
    /// A connection to the network namespace pinned at `netns` (the caller's when `None`).
    /// Needs a tokio runtime: the connection is a task of it.
    pub(crate) async fn open(netns: Option<&Path>) -> Result<Netlink, Error> {
        let runtime = tokio::runtime::Handle::current();
        let opened = run_in_async(netns, move || {
            // The socket registers with the runtime's reactor from this thread.
            let _entered = runtime.enter();
            rtnetlink::new_connection()
        })
        .await?;
        let (connection, handle, _) = opened.map_err(|source| Error::Netns {
            action: "opening a netlink socket in",
            path: netns.map_or_else(|| "of the agent".into(), Path::to_path_buf),
            source,
        })?;
        Ok(Netlink {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The link named `name`, if there is one.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<LinkMessage>, Error> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(Error::netlink(format!("looking up link {name}"))(e)),
        }
    }

    /// The index of link `name`; an error if it is not there.
    async fn index(&self, name: &str) -> Result<u32, Error> {
        self.link(name)
            .await?
            .map(|link| link.header.index)
            .ok_or_else(|| Error::Config(format!("link {name} is not there")))
    }

    /// Sets link `name` up.
    pub(crate) async fn set_up(&self, name: &str) -> Result<(), Error> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(Error::netlink(format!("setting link {name} up")))
    }

    /// Every link: index -> name.
    pub(crate) async fn links(&self) -> Result<BTreeMap<u32, String>, Error> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(Error::netlink("listing links"))?;
        Ok(links
            .into_iter()
            .filter_map(|link| Some((link.header.index, link_name(&link)?)))
            .collect())
    }

    /// The names of the links whose master is link `master`: a bridge's ports.
    pub(crate) async fn ports(&self, master: u32) -> Result<Vec<String>, Error> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(Error::netlink("listing links"))?;
        Ok(links
            .iter()
            .filter(|link| {
                link.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(m) if *m == master))
            })
            .filter_map(link_name)
            .collect())
    }

    /// Makes bridge `name` if it is missing, with `gateway/prefix` as its only IPv4 address
    /// and MTU `mtu`, and sets it up. Returns its index. A link of that name that is not a
    /// bridge is an error.
    pub(crate) async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<u32, Error> {
        let index = match self.link(name).await? {
            Some(link) if is_bridge(&link) => {
                if link_mtu(&link) != Some(mtu) {
                    self.handle
                        .link()
                        .set(
                            LinkUnspec::new_with_index(link.header.index)
                                .mtu(mtu)
                                .build(),
                        )
                        .execute()
                        .await
                        .map_err(Error::netlink(format!("setting the MTU of bridge {name}")))?;
                }
                link.header.index
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "link {name} exists and is not a bridge: the pod network will not take it"
                )))
            }
            None => {
                let message = LinkBridge::new(name)
                    .address(bridge_mac(name))
                    .mtu(mtu)
                    .up()
                    .build();
                match self.handle.link().add(message).execute().await {
                    Err(e) if errno(&e) != Some(EEXIST) => {
                        return Err(Error::netlink(format!("creating bridge {name}"))(e))
                    }
                    _ => self.index(name).await?,
                }
            }
        };
        self.set_up(name).await?;
        let mut has_gateway = false;
        for (address, length, message) in self.ipv4_addresses(Some(index)).await? {
            if (address, length) == (gateway, prefix) {
                has_gateway = true;
            } else {
                // Left from another pod CIDR of this node's: it would route pods wrong.
                self.handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .or_else(|e| ignore(e, &[EADDRNOTAVAIL]))
                    .map_err(Error::netlink(format!(
                        "removing address {address}/{length} from bridge {name}"
                    )))?;
            }
        }
        if !has_gateway {
            self.handle
                .address()
                .add(index, IpAddr::V4(gateway), prefix)
                .replace()
                .execute()
                .await
                .map_err(Error::netlink(format!(
                    "adding address {gateway}/{prefix} to bridge {name}"
                )))?;
        }
        Ok(index)
    }

    /// The IPv4 addresses of link `index` (of every link when `None`), with their prefix
    /// lengths and messages.
    async fn ipv4_addresses(
        &self,
        index: Option<u32>,
    ) -> Result<
        Vec<(
            Ipv4Addr,
            u8,
            rtnetlink::packet_route::address::AddressMessage,
        )>,
        Error,
    > {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let messages: Vec<_> = request
            .execute()
            .try_collect()
            .await
            .map_err(Error::netlink("listing addresses"))?;
        Ok(messages
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let address = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(a))
                    | AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
                    _ => None,
                })?;
                Some((address, m.header.prefix_len, m))
            })
            .collect())
    }

    /// Every IPv4 address of the namespace.
    pub(crate) async fn local_addresses(&self) -> Result<BTreeSet<Ipv4Addr>, Error> {
        Ok(self
            .ipv4_addresses(None)
            .await?
            .into_iter()
            .map(|(address, _, _)| address)
            .collect())
    }

    /// Removes link `name` (a veth's peer goes with it); returns whether it was there.
    pub(crate) async fn remove_link(&self, name: &str) -> Result<bool, Error> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(Error::netlink(format!("removing link {name}"))(e)),
        }
    }

    /// Connects the network namespace pinned at `netns` to bridge `bridge` (index
    /// `bridge_index`): a veth pair whose host end `host_veth` is a port of the bridge (in
    /// hairpin mode, so a pod's packets may come back to it through the bridge) and whose other
    /// end is the namespace's `eth0`, with address `pod_ip/prefix` and a default route via
    /// `gateway`; both ends have MTU `mtu`. A pair left from an earlier attempt is replaced.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn attach_pod(
        &self,
        netns: &Path,
        bridge_index: u32,
        host_veth: &str,
        pod_ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        mtu: u32,
    ) -> Result<(), Error> {
        if !valid_interface_name(host_veth) {
            return Err(Error::Config(format!(
                "{host_veth:?} cannot name an interface (1 to 15 characters, no '/', ':' or \
                 space)"
            )));
        }
        self.remove_link(host_veth).await?;
        let namespace = std::fs::File::open(netns).map_err(|source| Error::Netns {
            action: "opening",
            path: netns.to_path_buf(),
            source,
        })?;
        // One request makes both ends: the peer is born in the pod's namespace, named.
        // Not up yet: a veth end set up before its peer exists fails (ENOTCONN).
        let peer = LinkUnspec::new_with_name(POD_INTERFACE)
            .setns_by_fd(namespace.as_raw_fd())
            .mtu(mtu)
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_veth.to_string())
            .mtu(mtu)
            .controller(bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(Error::netlink(format!(
                "creating veth pair {host_veth} / {POD_INTERFACE} in {}",
                netns.display()
            )))?;
        drop(namespace);
        let configured = async {
            self.set_hairpin(host_veth).await?;
            configure_pod_side(netns, pod_ip, prefix, gateway).await
        };
        if let Err(e) = configured.await {
            let _ = self.remove_link(host_veth).await;
            return Err(e);
        }
        Ok(())
    }

    /// Sets bridge port `name` in hairpin mode.
    async fn set_hairpin(&self, name: &str) -> Result<(), Error> {
        let message = LinkUnspec::new_with_name(name)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )]))
            .build();
        self.handle
            .link()
            .set_port(message)
            .execute()
            .await
            .map_err(Error::netlink(format!("setting hairpin mode on {name}")))
    }

    /// The IPv4 routes of the main table. Ours are those with [`ROUTE_PROTOCOL`] whose
    /// destination lies in `cluster` (another cluster's on the same host are not).
    pub(crate) async fn routes(&self, cluster: Cidr) -> Result<Vec<HostRoute>, Error> {
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(Error::netlink("listing routes"))?;
        Ok(messages
            .iter()
            .filter(|m| route_table(m) == u32::from(RouteHeader::RT_TABLE_MAIN))
            .filter_map(|m| {
                let destination = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                let dst = Cidr::new(destination, m.header.destination_prefix_length).ok()?;
                let gateway = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                    _ => None,
                });
                let interface = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let ours = m.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
                    && cluster.covers(&dst);
                Some(HostRoute {
                    dst,
                    gateway,
                    interface,
                    ours,
                })
            })
            .collect())
    }

    /// Makes the main table's routes to other nodes' pod CIDRs those of `desired` (pod CIDR ->
    /// the node's address), host-gateway style: adds and changes what differs, removes routes
    /// of ours (inside `cluster`) that are not wanted. Returns the pod CIDRs that could not be
    /// routed, each with why (the others are in place).
    pub(crate) async fn set_routes(
        &self,
        desired: &BTreeMap<Cidr, Ipv4Addr>,
        cluster: Cidr,
    ) -> Result<Vec<(Cidr, Ipv4Addr, String)>, Error> {
        let plan = plan_routes(desired, &self.routes(cluster).await?);
        let mut failures: Vec<(Cidr, Ipv4Addr, String)> = plan
            .conflicts
            .iter()
            .map(|(dst, via)| (*dst, *via, format!("the host has a route to {dst} already")))
            .collect();
        for dst in &plan.delete {
            let message = route_message(*dst).build();
            self.handle
                .route()
                .del(message)
                .execute()
                .await
                .or_else(|e| ignore(e, &[ESRCH]))
                .map_err(Error::netlink(format!("removing the route to {dst}")))?;
        }
        for (dst, via) in &plan.replace {
            let message = route_message(*dst).gateway(*via).build();
            if let Err(e) = self.handle.route().add(message).replace().execute().await {
                let why = match &e {
                    rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
                    other => other.to_string(),
                };
                failures.push((*dst, *via, why));
            }
        }
        Ok(failures)
    }
}

/// What the kernel tests use to make their hosts and wires.
#[cfg(test)]
impl Netlink {
    /// A veth pair: `name` here (up), `peer_name` in the namespace at `peer_netns` (down).
    pub(crate) async fn veth_into(
        &self,
        name: &str,
        peer_netns: &Path,
        peer_name: &str,
    ) -> Result<(), Error> {
        let namespace = std::fs::File::open(peer_netns).map_err(|source| Error::Netns {
            action: "opening",
            path: peer_netns.to_path_buf(),
            source,
        })?;
        let peer = LinkUnspec::new_with_name(peer_name)
            .setns_by_fd(namespace.as_raw_fd())
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.to_string())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(Error::netlink(format!(
                "creating veth pair {name} / {peer_name}"
            )))
    }

    /// Adds `address/prefix` to link `name`.
    pub(crate) async fn add_address(
        &self,
        name: &str,
        address: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), Error> {
        let index = self.index(name).await?;
        self.handle
            .address()
            .add(index, IpAddr::V4(address), prefix)
            .execute()
            .await
            .map_err(Error::netlink(format!(
                "adding {address}/{prefix} to {name}"
            )))
    }

    /// Adds a route to `dst` via `via` (protocol static: not one of ours).
    pub(crate) async fn add_route(&self, dst: Cidr, via: Ipv4Addr) -> Result<(), Error> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix())
            .gateway(via)
            .build();
        self.handle
            .route()
            .add(message)
            .execute()
            .await
            .map_err(Error::netlink(format!("adding a route to {dst} via {via}")))
    }
}

/// The name of a link message.
fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

/// The MTU of a link message.
fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// Whether a link message is a bridge's.
fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// The table of a route: the attribute when there is one (tables beyond 255), else the header.
fn route_table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

/// A main-table route of ours to `dst`.
fn route_message(dst: Cidr) -> RouteMessageBuilder<Ipv4Addr> {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix())
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
}

/// Turns the netlink errors whose errno is in `codes` into success.
fn ignore(error: rtnetlink::Error, codes: &[i32]) -> Result<(), rtnetlink::Error> {
    match errno(&error) {
        Some(code) if codes.contains(&code) => Ok(()),
        _ => Err(error),
    }
}

/// Inside the pod's namespace: `eth0` gets `pod_ip/prefix` and the default route via `gateway`.
async fn configure_pod_side(
    netns: &Path,
    pod_ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), Error> {
    let pod = Netlink::open(Some(netns)).await?;
    let link = pod.link(POD_INTERFACE).await?.ok_or_else(|| {
        Error::Config(format!(
            "{POD_INTERFACE} did not arrive in {}",
            netns.display()
        ))
    })?;
    let index = link.header.index;
    if !link.header.flags.contains(LinkFlags::Up) {
        pod.set_up(POD_INTERFACE).await?;
    }
    pod.handle
        .address()
        .add(index, IpAddr::V4(pod_ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(Error::netlink(format!(
            "adding address {pod_ip}/{prefix} to {POD_INTERFACE} in {}",
            netns.display()
        )))?;
    let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    pod.handle
        .route()
        .add(default_route)
        .replace()
        .execute()
        .await
        .map_err(Error::netlink(format!(
            "adding the default route via {gateway} in {}",
            netns.display()
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn names_are_deterministic_and_fit() {
        let uid = "6f1c2d3e-8a9b-4c5d-9e0f-112233445566";
        let name = host_veth_name(uid);
        assert_eq!(name, host_veth_name(uid));
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("veth"));
        assert!(valid_interface_name(&name));
        assert_ne!(name, host_veth_name("another uid"));
        let bridge = bridge_name("node-1");
        assert_eq!(bridge.len(), 13);
        assert!(valid_interface_name(&bridge));
        assert_ne!(bridge, bridge_name("node-2"));
        // The values themselves are part of the contract: an agent after an upgrade must find
        // the links an older one made.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        let mac = bridge_mac(&bridge);
        assert_eq!(mac.len(), 6);
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered unicast");
    }

    #[test]
    fn interface_names() {
        for good in ["eth0", "veth0123456789a", "minik1a2b3c4d", "br-x.1"] {
            assert!(valid_interface_name(good), "{good}");
        }
        for bad in ["", ".", "..", "veth0123456789ab", "a/b", "a:b", "a b"] {
            assert!(!valid_interface_name(bad), "{bad}");
        }
    }

    fn route(dst: &str, via: Option<&str>, ours: bool) -> HostRoute {
        HostRoute {
            dst: cidr(dst),
            gateway: via.map(ip),
            interface: None,
            ours,
        }
    }

    #[test]
    fn route_plan_touches_only_its_own_routes() {
        let desired: BTreeMap<Cidr, Ipv4Addr> = [
            (cidr("10.244.1.0/24"), ip("192.168.0.2")),
            (cidr("10.244.2.0/24"), ip("192.168.0.3")),
            (cidr("10.244.3.0/24"), ip("192.168.0.4")),
            (cidr("10.244.4.0/24"), ip("192.168.0.5")),
        ]
        .into();
        let existing = [
            route("0.0.0.0/0", Some("192.168.0.1"), false),
            route("192.168.0.0/24", None, false),
            // In place already.
            route("10.244.1.0/24", Some("192.168.0.2"), true),
            // Ours, via an old address.
            route("10.244.2.0/24", Some("192.168.0.9"), true),
            // Someone else's route to a wanted destination: a conflict, left alone.
            route("10.244.3.0/24", None, false),
            // Ours, a node that left.
            route("10.244.9.0/24", Some("192.168.0.7"), true),
        ];
        let plan = plan_routes(&desired, &existing);
        assert_eq!(
            plan,
            RoutePlan {
                replace: vec![
                    (cidr("10.244.2.0/24"), ip("192.168.0.3")),
                    (cidr("10.244.4.0/24"), ip("192.168.0.5")),
                ],
                delete: vec![cidr("10.244.9.0/24")],
                conflicts: vec![(cidr("10.244.3.0/24"), ip("192.168.0.4"))],
            }
        );
        // Nothing wanted: every route of ours goes, nothing else.
        let plan = plan_routes(&BTreeMap::new(), &existing);
        assert_eq!(
            plan.delete,
            vec![
                cidr("10.244.1.0/24"),
                cidr("10.244.2.0/24"),
                cidr("10.244.9.0/24")
            ]
        );
        assert!(plan.replace.is_empty() && plan.conflicts.is_empty());
    }

    proptest! {
        #[test]
        fn route_plan_never_deletes_or_replaces_a_foreign_route(
            desired in proptest::collection::btree_map(0u8..16, any::<u8>(), 0..8),
            existing in proptest::collection::vec((0u8..16, any::<u8>(), any::<bool>()), 0..12),
        ) {
            let dst = |i: u8| Cidr::new(Ipv4Addr::new(10, 244, i, 0), 24).unwrap();
            let via = |v: u8| Ipv4Addr::new(192, 168, 0, v);
            let desired: BTreeMap<Cidr, Ipv4Addr> =
                desired.into_iter().map(|(d, v)| (dst(d), via(v))).collect();
            let existing: Vec<HostRoute> = existing
                .into_iter()
                .map(|(d, v, ours)| HostRoute { dst: dst(d), gateway: Some(via(v)), interface: None, ours })
                .collect();
            let plan = plan_routes(&desired, &existing);
            let foreign: BTreeSet<Cidr> =
                existing.iter().filter(|r| !r.ours).map(|r| r.dst).collect();
            for (d, _) in &plan.replace {
                prop_assert!(!foreign.contains(d));
            }
            for d in &plan.delete {
                prop_assert!(existing.iter().any(|r| r.ours && r.dst == *d));
                prop_assert!(!desired.contains_key(d));
            }
        }
    }
}
